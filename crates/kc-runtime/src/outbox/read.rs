//! Commit-ordered reads of the outbox.

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgExecutor, Row};
use uuid::Uuid;

use super::Cursor;

/// An event read back from the outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEvent {
    /// Position of this event: resuming after it continues with the next event.
    pub cursor: Cursor,
    /// Unique id of the event, assigned by [`append`](super::append).
    pub event_id: Uuid,
    /// Service-specific event type, e.g. `contact.created`.
    pub event_type: String,
    /// Id of the resource the event is about.
    pub aggregate_id: String,
    /// Service-specific payload (a prost-encoded message).
    pub payload: Vec<u8>,
    /// When the event was written (the start time of its transaction).
    pub create_time: DateTime<Utc>,
}

/// One read of the outbox: the events after a cursor, and whether more are held back.
#[derive(Debug)]
pub(crate) struct Page {
    /// Events after the cursor, below the snapshot horizon, in stream order.
    pub(crate) events: Vec<StoredEvent>,
    /// Whether committed events exist that are still above the snapshot horizon: they become
    /// readable once the older transactions still running finish, which sends no notification.
    pub(crate) held_back: bool,
}

/// Events after a cursor, in stream order, skipping none.
///
/// A row is returned only when its transaction id is below the horizon of the statement's
/// snapshot (`pg_snapshot_xmin(pg_current_snapshot())`): every transaction with a lower id has
/// finished, so no event can later appear before the returned ones. The horizon and the
/// held-back flag come from the same statement, hence the same snapshot; both the flag (the
/// highest visible `txid`) and the page are index scans on `(txid, seq)`.
const READ_PAGE: &str = r#"
SELECT h.held_back,
       e.txid::text AS txid, e.seq, e.event_id, e.event_type, e.aggregate_id, e.payload,
       e.create_time
FROM (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS horizon) AS s
CROSS JOIN LATERAL (
    SELECT coalesce(
        (SELECT txid FROM outbox_events ORDER BY txid DESC LIMIT 1) >= s.horizon,
        false
    ) AS held_back
) AS h
LEFT JOIN LATERAL (
    SELECT txid, seq, event_id, event_type, aggregate_id, payload, create_time
    FROM outbox_events
    WHERE (txid, seq) > ($1::text::xid8, $2::int8)
      AND txid < s.horizon
    ORDER BY txid, seq
    LIMIT $3
) AS e ON true
ORDER BY e.txid, e.seq
"#;

/// Reads up to `limit` events after `after`, in commit-safe stream order.
///
/// Only events whose transaction is below the snapshot horizon are returned, so an event
/// written by a transaction that is still running (or by one that started before such a
/// transaction) is not returned yet, even when later events already committed: a consumer
/// resuming after the last returned cursor never skips an event. An empty result means the
/// reader is caught up for now.
///
/// Reads the outbox of the connection's `search_path` schema. Meant for tools and tests;
/// services stream with [`OutboxWatcher::watch`](super::OutboxWatcher::watch).
pub async fn read_batch(
    conn: &mut PgConnection,
    after: Cursor,
    limit: u32,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    Ok(read_page(conn, after, limit).await?.events)
}

/// Reads up to `limit` events after `after`, and whether more are held back by the horizon.
pub(crate) async fn read_page<'e>(
    executor: impl PgExecutor<'e>,
    after: Cursor,
    limit: u32,
) -> Result<Page, sqlx::Error> {
    let rows = sqlx::query(READ_PAGE)
        .bind(after.txid_text())
        .bind(after.seq_i64())
        .bind(i64::from(limit))
        .fetch_all(executor)
        .await?;
    let held_back = match rows.first() {
        Some(row) => row.try_get("held_back")?,
        None => false,
    };
    let mut events = Vec::with_capacity(rows.len());
    for row in &rows {
        if let Some(event) = decode_event(row)? {
            events.push(event);
        }
    }
    Ok(Page { events, held_back })
}

/// Decodes the event columns of a page row; `None` for the row of an empty page.
fn decode_event(row: &PgRow) -> Result<Option<StoredEvent>, sqlx::Error> {
    let Some(txid) = row.try_get::<Option<String>, _>("txid")? else {
        return Ok(None);
    };
    let txid = txid.parse::<u64>().map_err(|e| sqlx::Error::ColumnDecode {
        index: "txid".to_owned(),
        source: Box::new(e),
    })?;
    let seq: i64 = row.try_get("seq")?;
    let seq = u64::try_from(seq).map_err(|e| sqlx::Error::ColumnDecode {
        index: "seq".to_owned(),
        source: Box::new(e),
    })?;
    Ok(Some(StoredEvent {
        cursor: Cursor::new(txid, seq),
        event_id: row.try_get("event_id")?,
        event_type: row.try_get("event_type")?,
        aggregate_id: row.try_get("aggregate_id")?,
        payload: row.try_get("payload")?,
        create_time: row.try_get("create_time")?,
    }))
}
