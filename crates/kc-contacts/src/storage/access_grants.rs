//! `access_grants`: the projection of access management's explicit grants (T8), one row per
//! user and site, levels stored as their proto numbers (see [`Grants::numbers`]).

use kc_rights::rights::Grants;
use sqlx::PgConnection;
use uuid::Uuid;

#[derive(sqlx::FromRow)]
struct GrantsRow {
    software: i16,
    reporting: i16,
    entitlements: i16,
    account_management: i16,
    manage_access: i16,
    contact_updates: i16,
    account_documents: i16,
    support: i16,
}

impl TryFrom<GrantsRow> for Grants {
    type Error = sqlx::Error;

    fn try_from(row: GrantsRow) -> Result<Self, Self::Error> {
        let tools = [
            row.software,
            row.reporting,
            row.entitlements,
            row.account_management,
            row.manage_access,
            row.contact_updates,
            row.account_documents,
        ]
        .map(i32::from);
        Grants::from_numbers(tools, i32::from(row.support))
            .ok_or_else(|| sqlx::Error::Decode("access_grants holds an unknown level".into()))
    }
}

/// The explicit grants of `user_id` on `site_id`; nothing granted when the projection has
/// no row.
pub(crate) async fn get(
    conn: &mut PgConnection,
    site_id: Uuid,
    user_id: Uuid,
) -> Result<Grants, sqlx::Error> {
    let row: Option<GrantsRow> = sqlx::query_as(
        "SELECT software, reporting, entitlements, account_management, manage_access, \
         contact_updates, account_documents, support \
         FROM access_grants WHERE site_id = $1 AND user_id = $2",
    )
    .bind(site_id)
    .bind(user_id)
    .fetch_optional(conn)
    .await?;
    row.map(Grants::try_from)
        .transpose()
        .map(|grants| grants.unwrap_or(Grants::NONE))
}

/// Stores the explicit grants of `user_id` on `site_id` as access management now has them.
pub(crate) async fn upsert(
    conn: &mut PgConnection,
    site_id: Uuid,
    user_id: Uuid,
    grants: &Grants,
) -> Result<(), sqlx::Error> {
    // Proto numbers of levels are small (at most 5): they fit a smallint.
    let (tools, support) = grants.numbers();
    let levels = tools.map(|number| number as i16);
    sqlx::query(
        "INSERT INTO access_grants (site_id, user_id, software, reporting, entitlements, \
         account_management, manage_access, contact_updates, account_documents, support) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT (site_id, user_id) DO UPDATE SET software = EXCLUDED.software, \
         reporting = EXCLUDED.reporting, entitlements = EXCLUDED.entitlements, \
         account_management = EXCLUDED.account_management, \
         manage_access = EXCLUDED.manage_access, contact_updates = EXCLUDED.contact_updates, \
         account_documents = EXCLUDED.account_documents, support = EXCLUDED.support",
    )
    .bind(site_id)
    .bind(user_id)
    .bind(levels[0])
    .bind(levels[1])
    .bind(levels[2])
    .bind(levels[3])
    .bind(levels[4])
    .bind(levels[5])
    .bind(levels[6])
    .bind(support as i16)
    .execute(conn)
    .await?;
    Ok(())
}
