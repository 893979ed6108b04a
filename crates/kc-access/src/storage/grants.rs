//! The `grants` table: the explicit tool levels and support level of a user on a site.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::Grants;

/// Writes the explicit grants of a user on a site (a revocation writes all NONE, keeping the
/// row so its version keeps counting) and bumps the version. `updated_by` is `None` when a
/// domain policy granted (A7). Returns the new version and time.
pub async fn write(
    conn: &mut PgConnection,
    site_id: Uuid,
    user_id: Uuid,
    grants: &Grants,
    updated_by: Option<Uuid>,
) -> Result<(i64, DateTime<Utc>), sqlx::Error> {
    let ranks = super::ranks_of(grants);
    sqlx::query_as(
        "INSERT INTO grants (site_id, user_id, software, reporting, entitlements, \
           account_management, manage_access, contact_updates, account_documents, support, \
           updated_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         ON CONFLICT (site_id, user_id) DO UPDATE SET software = EXCLUDED.software, \
           reporting = EXCLUDED.reporting, entitlements = EXCLUDED.entitlements, \
           account_management = EXCLUDED.account_management, \
           manage_access = EXCLUDED.manage_access, contact_updates = EXCLUDED.contact_updates, \
           account_documents = EXCLUDED.account_documents, support = EXCLUDED.support, \
           updated_by = EXCLUDED.updated_by, version = grants.version + 1, update_time = now() \
         RETURNING version, update_time",
    )
    .bind(site_id)
    .bind(user_id)
    .bind(ranks[0])
    .bind(ranks[1])
    .bind(ranks[2])
    .bind(ranks[3])
    .bind(ranks[4])
    .bind(ranks[5])
    .bind(ranks[6])
    .bind(ranks[7])
    .bind(updated_by)
    .fetch_one(conn)
    .await
}
