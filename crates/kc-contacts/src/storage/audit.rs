//! The append-only `audit_records` table (L1).

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::AuditRecord;

/// A record to append.
#[derive(Debug)]
pub struct NewRecord<'a> {
    /// Site.
    pub site_id: Uuid,
    /// Person responsible.
    pub actor_id: Uuid,
    /// Service account it acted through.
    pub via_service: Option<Uuid>,
    /// What happened, e.g. `contact.assigned`.
    pub action: &'a str,
    /// Changed resource.
    pub resource_id: Uuid,
    /// Before, as JSON.
    pub before: Option<serde_json::Value>,
    /// After, as JSON.
    pub after: Option<serde_json::Value>,
}

/// Appends a record in the caller's transaction.
pub async fn append(conn: &mut PgConnection, record: &NewRecord<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO audit_records (site_id, actor_id, via_service, action, resource_id, before, after) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(record.site_id)
    .bind(record.actor_id)
    .bind(record.via_service)
    .bind(record.action)
    .bind(record.resource_id.to_string())
    .bind(&record.before)
    .bind(&record.after)
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct RecordRow {
    audit_id: i64,
    site_id: Uuid,
    actor_id: Uuid,
    via_service: Option<Uuid>,
    action: String,
    resource_id: String,
    before: Option<serde_json::Value>,
    after: Option<serde_json::Value>,
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
        "SELECT audit_id, site_id, actor_id, via_service, action, resource_id, before, after, create_time \
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
            create_time: row.create_time,
        })
        .collect())
}
