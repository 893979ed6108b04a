//! The append-only `audit_records` table (L1, T5).

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::AuditRecord;

/// A record to append.
#[derive(Debug)]
pub struct NewRecord<'a> {
    /// Site.
    pub site_id: Uuid,
    /// Person responsible; `None` for changes the service makes itself.
    pub actor_id: Option<Uuid>,
    /// Service account it acted through.
    pub via_service: Option<Uuid>,
    /// What happened, e.g. `access.tools_set`.
    pub action: &'a str,
    /// Changed resource: a user id, a request id or a domain.
    pub resource_id: String,
    /// Before, as JSON.
    pub before: Option<serde_json::Value>,
    /// After, as JSON.
    pub after: Option<serde_json::Value>,
    /// Why (T5).
    pub reason: &'a str,
}

/// Appends a record in the caller's transaction.
pub async fn append(conn: &mut PgConnection, record: &NewRecord<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO audit_records (site_id, actor_id, via_service, action, resource_id, before, \
           after, reason) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(record.site_id)
    .bind(record.actor_id)
    .bind(record.via_service)
    .bind(record.action)
    .bind(&record.resource_id)
    .bind(&record.before)
    .bind(&record.after)
    .bind(record.reason)
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct RecordRow {
    audit_id: i64,
    site_id: Uuid,
    actor_id: Option<Uuid>,
    via_service: Option<Uuid>,
    action: String,
    resource_id: String,
    before: Option<serde_json::Value>,
    after: Option<serde_json::Value>,
    reason: String,
    create_time: DateTime<Utc>,
}

/// Up to `limit` records of a site older than `before`, newest first.
pub async fn page_of_site(
    conn: &mut PgConnection,
    site_id: Uuid,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<AuditRecord>, sqlx::Error> {
    let rows: Vec<RecordRow> = sqlx::query_as(
        "SELECT audit_id, site_id, actor_id, via_service, action, resource_id, before, after, \
           reason, create_time \
         FROM audit_records WHERE site_id = $1 AND ($2::bigint IS NULL OR audit_id < $2) \
         ORDER BY audit_id DESC LIMIT $3",
    )
    .bind(site_id)
    .bind(before)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| AuditRecord {
            audit_id: row.audit_id,
            site_id: row.site_id,
            actor_id: row.actor_id,
            via_service: row.via_service,
            action: row.action,
            resource_id: row.resource_id,
            before: row.before,
            after: row.after,
            reason: row.reason,
            create_time: row.create_time,
        })
        .collect())
}
