//! The projection of the contact registry: sites (number, name, language) and contacts
//! (who holds which role, with the contact's notification e-mail, C9).

use std::collections::HashMap;

use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use crate::domain::{Role, Site};

/// A contact as the registry's events describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProjectedContact {
    /// Contact id.
    pub contact_id: Uuid,
    /// Site.
    pub site_id: Uuid,
    /// User.
    pub user_id: Uuid,
    /// Role.
    pub role: Role,
    /// Notification e-mail; empty for the login e-mail.
    pub notification_email: String,
}

/// Inserts or refreshes a site (and so locks its row until the transaction ends).
pub(crate) async fn upsert(conn: &mut PgConnection, site: &Site) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO sites (site_id, site_number, name, language) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (site_id) DO UPDATE SET site_number = EXCLUDED.site_number, \
           name = EXCLUDED.name, language = EXCLUDED.language, update_time = now()",
    )
    .bind(site.site_id)
    .bind(&site.site_number)
    .bind(&site.name)
    .bind(&site.language)
    .execute(conn)
    .await?;
    Ok(())
}

/// Inserts or refreshes a contact.
pub(crate) async fn upsert_contact(
    conn: &mut PgConnection,
    contact: &ProjectedContact,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO site_contacts (contact_id, site_id, user_id, role, notification_email) \
         VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (contact_id) DO UPDATE SET site_id = EXCLUDED.site_id, \
           user_id = EXCLUDED.user_id, role = EXCLUDED.role, \
           notification_email = EXCLUDED.notification_email",
    )
    .bind(contact.contact_id)
    .bind(contact.site_id)
    .bind(contact.user_id)
    .bind(contact.role.number())
    .bind(&contact.notification_email)
    .execute(conn)
    .await?;
    Ok(())
}

/// Removes a contact (idempotent).
pub(crate) async fn delete_contact(
    conn: &mut PgConnection,
    contact_id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM site_contacts WHERE contact_id = $1")
        .bind(contact_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Removes the contacts holding `role` on a site except those of `keep` (after a primary
/// transfer: the previous primary's PRIMARY contact).
pub(crate) async fn delete_role_holders_except(
    conn: &mut PgConnection,
    site_id: Uuid,
    role: Role,
    keep: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM site_contacts WHERE site_id = $1 AND role = $2 AND user_id <> $3")
        .bind(site_id)
        .bind(role.number())
        .bind(keep)
        .execute(conn)
        .await?;
    Ok(())
}

/// The site of `site_id`, if the projection has seen it.
pub(crate) async fn get<'e>(
    executor: impl PgExecutor<'e>,
    site_id: Uuid,
) -> Result<Option<Site>, sqlx::Error> {
    let row: Option<(String, String, String)> =
        sqlx::query_as("SELECT site_number, name, language FROM sites WHERE site_id = $1")
            .bind(site_id)
            .fetch_optional(executor)
            .await?;
    Ok(row.map(|(site_number, name, language)| Site {
        site_id,
        site_number,
        name,
        language,
    }))
}

/// The notification e-mails (C9) the contacts of `users` set on a site: for a user with
/// several roles, the one of its highest role (PRIMARY first) that has one.
pub(crate) async fn notification_emails(
    conn: &mut PgConnection,
    site_id: Uuid,
    users: &[Uuid],
) -> Result<HashMap<Uuid, String>, sqlx::Error> {
    let rows: Vec<(Uuid, String)> = sqlx::query_as(
        "SELECT DISTINCT ON (user_id) user_id, notification_email FROM site_contacts \
         WHERE site_id = $1 AND user_id = ANY($2) AND notification_email <> '' \
         ORDER BY user_id, role",
    )
    .bind(site_id)
    .bind(users)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().collect())
}
