//! The append-only `audit_records` table (L1): the suite's shared audit store, with the
//! registry's records, which always name their actor and need no reason.

use sqlx::PgConnection;
use uuid::Uuid;

pub(crate) use kc_runtime::audit::page_of_site;

/// A record to append.
#[derive(Debug)]
pub(crate) struct NewRecord<'a> {
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
pub(crate) async fn append(
    conn: &mut PgConnection,
    record: &NewRecord<'_>,
) -> Result<(), sqlx::Error> {
    kc_runtime::audit::append(
        conn,
        &kc_runtime::audit::NewRecord {
            site_id: record.site_id,
            actor_id: Some(record.actor_id),
            via_service: record.via_service,
            action: record.action,
            resource_id: record.resource_id.to_string(),
            before: record.before.clone(),
            after: record.after.clone(),
            reason: "",
        },
    )
    .await
}
