//! The append-only audit trail (L1, T5) of the services that keep one (the contact registry
//! and access management): the `audit_records` table in the service's schema, appended in
//! the transaction of the change it records, listed per site newest first with keyset
//! paging, and its one wire form, `keycontacts.audit.v1.AuditRecord`.
//!
//! The table (created by each service's migrations, which also make it append-only):
//! `audit_id bigserial`, `site_id uuid`, `actor_id uuid` (nullable where the service makes
//! changes itself), `via_service uuid`, `action text`, `resource_id text`, `before jsonb`,
//! `after jsonb`, `reason text` and `create_time timestamptz`. All SQL uses unqualified
//! names: the pool's `search_path` selects the service schema.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::grpc::{decode_single_key, id, next_page_token, page_size_or_status};
use crate::paging::Page;
use crate::values::timestamp;

/// Default and largest page sizes of `ListAuditRecords`.
const PAGE: (u32, u32) = (100, 1000);

/// A record to append.
#[derive(Debug)]
pub struct NewRecord<'a> {
    /// Site concerned.
    pub site_id: Uuid,
    /// Person responsible; `None` for changes the service makes itself.
    pub actor_id: Option<Uuid>,
    /// Service account it acted through.
    pub via_service: Option<Uuid>,
    /// What happened, e.g. `contact.assigned` or `access.tools_set`.
    pub action: &'a str,
    /// Changed resource: a site, contact or user id, a request id or a domain.
    pub resource_id: String,
    /// Before, as JSON.
    pub before: Option<serde_json::Value>,
    /// After, as JSON.
    pub after: Option<serde_json::Value>,
    /// Why (T5); empty when the change needs no reason.
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

/// One appended audit record (L1, T5).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct AuditRecord {
    /// Id (increasing).
    pub audit_id: i64,
    /// Site concerned.
    pub site_id: Uuid,
    /// Person responsible; `None` for changes the service made itself.
    pub actor_id: Option<Uuid>,
    /// Service account it acted through, if any.
    pub via_service: Option<Uuid>,
    /// What happened, e.g. `contact.assigned` or `access.tools_set`.
    pub action: String,
    /// Changed resource: a site, contact or user id, a request id or a domain.
    pub resource_id: String,
    /// Before, as JSON.
    pub before: Option<serde_json::Value>,
    /// After, as JSON.
    pub after: Option<serde_json::Value>,
    /// Why, as the actor gave it (T5); empty when the change needs no reason.
    pub reason: String,
    /// When.
    pub create_time: DateTime<Utc>,
}

/// Up to `limit` records of a site older than the record `before` (from the newest when
/// `None`), newest first.
pub async fn page_of_site(
    conn: &mut PgConnection,
    site_id: Uuid,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<AuditRecord>, sqlx::Error> {
    sqlx::query_as(
        "SELECT audit_id, site_id, actor_id, via_service, action, resource_id, before, after, \
           reason, create_time \
         FROM audit_records WHERE site_id = $1 AND ($2::bigint IS NULL OR audit_id < $2) \
         ORDER BY audit_id DESC LIMIT $3",
    )
    .bind(site_id)
    .bind(before)
    .bind(limit)
    .fetch_all(conn)
    .await
}

impl AuditRecord {
    /// The record on the wire: ids as strings (empty when absent), JSON as text.
    pub fn to_proto(&self) -> kc_proto::audit::AuditRecord {
        let id = |id: Option<Uuid>| id.map(|id| id.to_string()).unwrap_or_default();
        let json = |value: &Option<serde_json::Value>| {
            value.as_ref().map(|v| v.to_string()).unwrap_or_default()
        };
        kc_proto::audit::AuditRecord {
            audit_id: self.audit_id.to_string(),
            site_id: self.site_id.to_string(),
            actor_id: id(self.actor_id),
            via_service: id(self.via_service),
            action: self.action.clone(),
            resource_id: self.resource_id.clone(),
            before_json: json(&self.before),
            after_json: json(&self.after),
            reason: self.reason.clone(),
            create_time: Some(timestamp(self.create_time)),
        }
    }
}

/// The body of a `ListAuditRecords` handler once the caller is authorised: parses the
/// request's `site_id`, `page_size` (100 when 0, at most 1000) and `page_token`, reads the
/// page with `list(site_id, before, size)` (the service's domain call, whose error becomes
/// a status), and returns the records on the wire with the next page token.
pub async fn list_records<F, Fut, E>(
    site_id: &str,
    page_size: i32,
    page_token: &str,
    list: F,
) -> Result<(Vec<kc_proto::audit::AuditRecord>, String), tonic::Status>
where
    F: FnOnce(Uuid, Option<i64>, u32) -> Fut,
    Fut: Future<Output = Result<Page<AuditRecord>, E>>,
    tonic::Status: From<E>,
{
    let site_id = id("site_id", site_id)?;
    let size = page_size_or_status(page_size, PAGE)?;
    let before = decode_single_key(page_token, |key| key.parse::<i64>().ok())?;
    let page = list(site_id, before, size).await?;
    let next = next_page_token(&page, |record| vec![record.audit_id.to_string()]);
    Ok((page.items.iter().map(AuditRecord::to_proto).collect(), next))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_form_leaves_absent_ids_and_json_empty() {
        let create_time = DateTime::from_timestamp(1_700_000_000, 5).expect("a time");
        let record = AuditRecord {
            audit_id: 42,
            site_id: Uuid::from_u128(1),
            actor_id: None,
            via_service: Some(Uuid::from_u128(2)),
            action: "request.approved".to_owned(),
            resource_id: "example.com".to_owned(),
            before: None,
            after: Some(serde_json::json!({"tools": ["a"]})),
            reason: "renewal".to_owned(),
            create_time,
        };
        let proto = record.to_proto();
        assert_eq!(proto.audit_id, "42");
        assert_eq!(proto.site_id, Uuid::from_u128(1).to_string());
        assert_eq!(proto.actor_id, "");
        assert_eq!(proto.via_service, Uuid::from_u128(2).to_string());
        assert_eq!(proto.before_json, "");
        assert_eq!(proto.after_json, r#"{"tools":["a"]}"#);
        assert_eq!(proto.reason, "renewal");
        assert_eq!(proto.create_time, Some(timestamp(create_time)));
    }
}
