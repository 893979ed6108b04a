//! The `contacts` table: one row per role held by one user on one site.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::{Contact, ContactDetails, ContactRole};

/// The columns of a [`Contact`], for `concat!` into static SQL.
macro_rules! columns {
    () => {
        "contact_id, site_id, user_id, role, phone, job_title, notification_email, version, \
         create_time, update_time"
    };
}

#[derive(sqlx::FromRow)]
struct ContactRow {
    contact_id: Uuid,
    site_id: Uuid,
    user_id: Uuid,
    role: i16,
    phone: Option<String>,
    job_title: Option<String>,
    notification_email: Option<String>,
    version: i64,
    create_time: DateTime<Utc>,
    update_time: DateTime<Utc>,
}

impl TryFrom<ContactRow> for Contact {
    type Error = sqlx::Error;

    fn try_from(row: ContactRow) -> Result<Self, Self::Error> {
        Ok(Contact {
            contact_id: row.contact_id,
            site_id: row.site_id,
            user_id: row.user_id,
            role: ContactRole::from_number(i32::from(row.role))
                .ok_or_else(|| sqlx::Error::Decode("contacts.role has an unknown value".into()))?,
            details: ContactDetails {
                phone: row.phone,
                job_title: row.job_title,
                notification_email: row.notification_email,
            },
            version: row.version,
            create_time: row.create_time,
            update_time: row.update_time,
        })
    }
}

fn contacts(rows: Vec<ContactRow>) -> Result<Vec<Contact>, sqlx::Error> {
    rows.into_iter().map(Contact::try_from).collect()
}

/// Inserts a role. Fails with the unique violation of `contacts_one_role_per_user` when the
/// user holds the role already, or of `contacts_single_holder` when someone else holds a
/// single-holder role.
pub async fn insert(
    conn: &mut PgConnection,
    site_id: Uuid,
    user_id: Uuid,
    role: ContactRole,
    details: &ContactDetails,
) -> Result<Contact, sqlx::Error> {
    let row: ContactRow = sqlx::query_as(concat!(
        "INSERT INTO contacts (contact_id, site_id, user_id, role, phone, job_title, notification_email) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING ",
        columns!()
    ))
    .bind(Uuid::now_v7())
    .bind(site_id)
    .bind(user_id)
    .bind(role.number())
    .bind(&details.phone)
    .bind(&details.job_title)
    .bind(&details.notification_email)
    .fetch_one(conn)
    .await?;
    row.try_into()
}

/// The contact with this id.
pub async fn get(
    conn: &mut PgConnection,
    contact_id: Uuid,
) -> Result<Option<Contact>, sqlx::Error> {
    let row: Option<ContactRow> = sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM contacts WHERE contact_id = $1"
    ))
    .bind(contact_id)
    .fetch_optional(conn)
    .await?;
    row.map(Contact::try_from).transpose()
}

/// A contact by id, only when it belongs to `site_id` (any site when `None`): a caller
/// authorised on one site never reaches another site's contact.
pub async fn get_in_site(
    conn: &mut PgConnection,
    contact_id: Uuid,
    site_id: Option<Uuid>,
) -> Result<Option<Contact>, sqlx::Error> {
    let row: Option<ContactRow> = sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM contacts WHERE contact_id = $1 AND ($2::uuid IS NULL OR site_id = $2)"
    ))
    .bind(contact_id)
    .bind(site_id)
    .fetch_optional(conn)
    .await?;
    row.map(Contact::try_from).transpose()
}

/// Every contact of a site, in display order (role, then creation).
pub async fn of_site(conn: &mut PgConnection, site_id: Uuid) -> Result<Vec<Contact>, sqlx::Error> {
    let rows: Vec<ContactRow> = sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM contacts WHERE site_id = $1 ORDER BY role, contact_id"
    ))
    .bind(site_id)
    .fetch_all(conn)
    .await?;
    contacts(rows)
}

/// Up to `limit` contacts of a site with one of `roles` (all roles when empty), after the
/// key `(role, contact_id)`, in display order.
pub async fn page_of_site(
    conn: &mut PgConnection,
    site_id: Uuid,
    roles: &[i16],
    after: Option<(i16, Uuid)>,
    limit: i64,
) -> Result<Vec<Contact>, sqlx::Error> {
    let rows: Vec<ContactRow> = sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM contacts WHERE site_id = $1 \
           AND (cardinality($2::smallint[]) = 0 OR role = ANY($2)) \
           AND ($3::smallint IS NULL OR (role, contact_id) > ($3, $4)) \
         ORDER BY role, contact_id LIMIT $5"
    ))
    .bind(site_id)
    .bind(roles)
    .bind(after.map(|(role, _)| role))
    .bind(after.map(|(_, id)| id))
    .bind(limit)
    .fetch_all(conn)
    .await?;
    contacts(rows)
}

/// Up to `limit` contacts of a user after `after`, in contact-id order.
pub async fn page_of_user(
    conn: &mut PgConnection,
    user_id: Uuid,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Contact>, sqlx::Error> {
    let rows: Vec<ContactRow> = sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM contacts WHERE user_id = $1 AND ($2::uuid IS NULL OR contact_id > $2) \
         ORDER BY contact_id LIMIT $3"
    ))
    .bind(user_id)
    .bind(after)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    contacts(rows)
}

/// The holders of `role` on a site.
pub async fn holders(
    conn: &mut PgConnection,
    site_id: Uuid,
    role: ContactRole,
) -> Result<Vec<Contact>, sqlx::Error> {
    let rows: Vec<ContactRow> = sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM contacts WHERE site_id = $1 AND role = $2 ORDER BY contact_id"
    ))
    .bind(site_id)
    .bind(role.number())
    .fetch_all(conn)
    .await?;
    contacts(rows)
}

/// Replaces a contact's details and bumps its version.
pub async fn update_details(
    conn: &mut PgConnection,
    contact_id: Uuid,
    details: &ContactDetails,
) -> Result<Contact, sqlx::Error> {
    let row: ContactRow = sqlx::query_as(concat!(
        "UPDATE contacts SET phone = $2, job_title = $3, notification_email = $4, \
         version = version + 1, update_time = now() WHERE contact_id = $1 RETURNING ",
        columns!()
    ))
    .bind(contact_id)
    .bind(&details.phone)
    .bind(&details.job_title)
    .bind(&details.notification_email)
    .fetch_one(conn)
    .await?;
    row.try_into()
}

/// Gives the role of a contact to another user, in place: the role is never unheld, not even
/// inside the transaction (C8 for PRIMARY).
pub async fn set_holder(
    conn: &mut PgConnection,
    contact_id: Uuid,
    user_id: Uuid,
    details: &ContactDetails,
) -> Result<Contact, sqlx::Error> {
    let row: ContactRow = sqlx::query_as(concat!(
        "UPDATE contacts SET user_id = $2, phone = $3, job_title = $4, notification_email = $5, \
         version = version + 1, update_time = now() WHERE contact_id = $1 RETURNING ",
        columns!()
    ))
    .bind(contact_id)
    .bind(user_id)
    .bind(&details.phone)
    .bind(&details.job_title)
    .bind(&details.notification_email)
    .fetch_one(conn)
    .await?;
    row.try_into()
}

/// Deletes a contact.
pub async fn delete(conn: &mut PgConnection, contact_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM contacts WHERE contact_id = $1")
        .bind(contact_id)
        .execute(conn)
        .await?;
    Ok(())
}
