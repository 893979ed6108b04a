//! `access_grants`: the projection of access management's explicit grants (T8), one row per
//! user and site, levels stored as their proto numbers (see [`Grants::numbers`]).

use kc_rights::rights::Grants;
use sqlx::PgConnection;
use uuid::Uuid;

/// The grants of a row's levels, as stored: the seven tools in the rights model's order,
/// then the support level (see [`Grants::numbers`]).
pub(crate) fn grants(levels: &[i16]) -> Result<Grants, sqlx::Error> {
    let unknown = || sqlx::Error::Decode("access_grants holds an unknown level".into());
    let [tools @ .., support] = levels else {
        return Err(unknown());
    };
    let tools: [i32; 7] = tools
        .iter()
        .map(|level| i32::from(*level))
        .collect::<Vec<_>>()
        .try_into()
        .map_err(|_| unknown())?;
    Grants::from_numbers(tools, i32::from(*support)).ok_or_else(unknown)
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
