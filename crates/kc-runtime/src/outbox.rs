//! Transactional outbox, commit-ordered `WatchEvents` streaming and the event consumer.
//!
//! Every data service publishes its domain events through an outbox table in its own schema:
//! [`append`] writes an event inside the transaction that changes the data, so the event
//! exists if and only if the change committed. The service serves its events with a
//! server-streaming `WatchEvents(after_cursor)` RPC built on [`OutboxWatcher`] and
//! [`watch_response`]; other services follow that stream with a [`Consumer`] and keep a
//! projection in their own schema.
//!
//! All SQL here uses unqualified names: the pool's `search_path` selects the service schema.
//!
//! # Wiring
//!
//! - In the service's migrations, call [`install`] (idempotent DDL) under the migration
//!   advisory lock, before the service's own migrations.
//! - At boot, start one [`OutboxWatcher`] with the service pool and share it with the gRPC
//!   handlers; `WatchEvents` parses `after_cursor` as a [`Cursor`] (mapping [`InvalidCursor`]
//!   with [`InvalidCursor::to_status`]) and returns [`watch_response`], each event decoded
//!   by [`decode_response`] (the service's event message with its position filled in).
//! - A service that follows another spawns [`Consumer::run`] with its own pool, its
//!   `source` from [`watch_source`] (the other service's generated client, an [`EventFeed`],
//!   called with this service's own token).
//!
//! # Commit order
//!
//! A sequence number alone cannot serve as a cursor: sequence values are taken when rows are
//! inserted, but transactions commit in any order, so a reader could see sequence 8 while 7
//! is still uncommitted, move its cursor past 7 and skip it forever once it commits.
//!
//! Each row therefore records the id of its transaction (`txid xid8`, from
//! `pg_current_xact_id()`), and readers only return rows whose transaction id is below the
//! horizon of their snapshot, `pg_snapshot_xmin(pg_current_snapshot())`: every transaction
//! with a lower id has finished (committed or rolled back), and a transaction that has not
//! yet taken an id will get a higher one. Below the horizon the set of rows is final, so
//! streaming in `(txid, seq)` order with the cursor `(txid, seq)` of the last event never
//! skips an event. Events of one transaction keep their append order.
//!
//! The trade-off: the horizon is cluster-wide. While any transaction in the database
//! cluster is running, no event written by a transaction that took its id later is
//! delivered, even if it committed long ago. A long-running transaction (a slow report, a
//! forgotten `BEGIN` in psql, a prepared transaction) therefore holds the stream back for as
//! long as it runs; nothing is lost, delivery resumes when it ends. Keep transactions short
//! and watch `pg_stat_activity.backend_xid` / `xact_start` if streams lag.

/// SQL expression naming the notification channel of the current schema's outbox.
///
/// `kc_outbox_<schema>`, or `kc_outbox_<md5 of schema>` when that would exceed the 63 bytes
/// Postgres allows in a channel name. `NULL` when there is no current schema.
macro_rules! channel_sql {
    () => {
        "CASE WHEN octet_length(current_schema()) <= 53 \
         THEN 'kc_outbox_' || current_schema() \
         ELSE 'kc_outbox_' || md5(current_schema()) END"
    };
}

mod consumer;
mod cursor;
mod feed;
mod lag;
mod positioned;
mod read;
mod watch;

use sqlx::PgConnection;
use uuid::Uuid;

pub use consumer::{
    AppliedCursor, ApplyOneByOne, AwaitCursorError, Consumer, MAX_BATCH, QUIET_STORE, await_cursor,
    load_cursor,
};
pub use cursor::{Cursor, InvalidCursor};
pub use feed::{
    EventFeed, EventItems, OpenedEvents, OpenedResponses, apply_all_fn, apply_fn,
    identity_event_user, watch_source,
};
pub use lag::{CONSUMER_EVENTS_APPLIED, CONSUMER_LAG_SECONDS, EventTime, stream_label};
pub use positioned::{PositionedEvent, decode_response};
pub use read::{StoredEvent, read_batch};
pub use watch::{
    EventStream, OUTBOX_PAGE_READS, OUTBOX_PAGE_READS_SHARED, OutboxWatcher, WatchOptions,
    end_after_first_error, watch_response,
};

/// Creates the outbox table and the consumer cursor table in the connection's schema.
const INSTALL: &str = r#"
CREATE TABLE IF NOT EXISTS outbox_events (
    seq          bigserial   PRIMARY KEY,
    txid         xid8        NOT NULL DEFAULT pg_current_xact_id(),
    event_id     uuid        NOT NULL UNIQUE,
    event_type   text        NOT NULL,
    aggregate_id text        NOT NULL,
    payload      bytea       NOT NULL,
    create_time  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS outbox_events_txid_seq_idx ON outbox_events (txid, seq);
CREATE TABLE IF NOT EXISTS event_cursors (
    consumer    text        PRIMARY KEY,
    cursor      text        NOT NULL,
    update_time timestamptz NOT NULL DEFAULT now()
);
"#;

/// Creates the outbox (`outbox_events`) and consumer cursor (`event_cursors`) tables in the
/// connection's current schema, if they do not exist yet.
///
/// Idempotent, but not safe to run concurrently with itself: call it under the migration
/// advisory lock, before the service's own migrations (which may then reference the tables).
pub async fn install(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(INSTALL).execute(conn).await?;
    Ok(())
}

/// An event to write to the outbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewEvent<'a> {
    /// Service-specific event type, e.g. `contact.created`.
    pub event_type: &'a str,
    /// Id of the resource the event is about.
    pub aggregate_id: &'a str,
    /// Service-specific payload, typically a prost-encoded message.
    pub payload: &'a [u8],
}

/// Inserts the event and wakes the schema's watchers at commit.
const APPEND: &str = concat!(
    "WITH inserted AS ( \
         INSERT INTO outbox_events (event_id, event_type, aggregate_id, payload) \
         VALUES ($1, $2, $3, $4) \
         RETURNING event_id, txid, seq \
     ) \
     SELECT inserted.event_id, inserted.txid::text, inserted.seq FROM inserted, pg_notify(",
    channel_sql!(),
    ", '')"
);

/// Writes an event to the outbox of the connection's schema and returns its new id.
///
/// Call it inside the transaction that makes the change the event reports: the event is
/// published exactly when that transaction commits, and never if it rolls back. It also
/// notifies the schema's [`OutboxWatcher`]s, which Postgres delivers at commit (once per
/// transaction, however many events it appends).
pub async fn append(conn: &mut PgConnection, event: NewEvent<'_>) -> Result<Uuid, sqlx::Error> {
    append_positioned(conn, event)
        .await
        .map(|appended| appended.event_id)
}

/// What a write returns, with its revision: the cursor its last event will have in the
/// service's stream (`WatchEvents`) once it commits, `None` when it appended no event
/// (nothing changed). Another service that follows the stream awaits the revision before its
/// next decision on what the write did (T8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revised<T> {
    /// What the write returns.
    pub value: T,
    /// The cursor of the write's last event; `None` when it appended none.
    pub revision: Option<Cursor>,
}

impl<T> Revised<T> {
    /// A result that changed nothing, so has no revision.
    pub fn unchanged(value: T) -> Self {
        Self {
            value,
            revision: None,
        }
    }

    /// The `revision` field of the write's response: its cursor, empty when it appended no
    /// event.
    pub fn revision_text(&self) -> String {
        revision_text(self.revision)
    }
}

/// The `revision` field of a write's response: the cursor, empty for none.
pub fn revision_text(revision: Option<Cursor>) -> String {
    revision
        .map(|cursor| cursor.to_string())
        .unwrap_or_default()
}

/// An event written to the outbox: its id and where it will sit in the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    /// Its new id.
    pub event_id: Uuid,
    /// Its cursor in the stream once its transaction commits: the revision a write returns
    /// so that a consumer can be awaited up to it ([`await_cursor`]).
    pub cursor: Cursor,
}

/// Like [`append`], returning the event's cursor too.
pub async fn append_positioned(
    conn: &mut PgConnection,
    event: NewEvent<'_>,
) -> Result<Appended, sqlx::Error> {
    let (event_id, txid, seq): (Uuid, String, i64) = sqlx::query_as(APPEND)
        .bind(Uuid::now_v7())
        .bind(event.event_type)
        .bind(event.aggregate_id)
        .bind(event.payload)
        .fetch_one(conn)
        .await?;
    let txid = txid
        .parse::<u64>()
        .map_err(|error| sqlx::Error::Decode(Box::new(error)))?;
    let seq = u64::try_from(seq).map_err(|error| sqlx::Error::Decode(Box::new(error)))?;
    Ok(Appended {
        event_id,
        cursor: Cursor::new(txid, seq),
    })
}

/// Inserts many events, in the order given, and wakes the schema's watchers at commit.
const APPEND_ALL: &str = concat!(
    "WITH inserted AS ( \
         INSERT INTO outbox_events (event_id, event_type, aggregate_id, payload) \
         SELECT e.event_id, e.event_type, e.aggregate_id, e.payload \
         FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bytea[]) WITH ORDINALITY \
           AS e (event_id, event_type, aggregate_id, payload, ordinality) \
         ORDER BY e.ordinality \
         RETURNING event_id \
     ) \
     SELECT count(*) FROM inserted, pg_notify(",
    channel_sql!(),
    ", '')"
);

/// Writes `events` to the outbox of the connection's schema in one statement, in the order
/// given (their cursors follow that order), and returns their new ids in that order. The
/// same as [`EncodedEvent::append`] for each in turn, one round trip instead of one each.
pub async fn append_all(
    conn: &mut PgConnection,
    events: &[EncodedEvent],
) -> Result<Vec<Uuid>, sqlx::Error> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = events.iter().map(|_| Uuid::now_v7()).collect();
    let types: Vec<&str> = events.iter().map(|event| event.event_type).collect();
    let aggregates: Vec<&str> = events
        .iter()
        .map(|event| event.aggregate_id.as_str())
        .collect();
    let payloads: Vec<&[u8]> = events
        .iter()
        .map(|event| event.payload.as_slice())
        .collect();
    let inserted: i64 = sqlx::query_scalar(APPEND_ALL)
        .bind(&ids)
        .bind(&types)
        .bind(&aggregates)
        .bind(&payloads)
        .fetch_one(conn)
        .await?;
    if usize::try_from(inserted).ok() != Some(events.len()) {
        return Err(sqlx::Error::Protocol(format!(
            "outbox: {inserted} of {} events inserted",
            events.len()
        )));
    }
    Ok(ids)
}

/// Rewrites the message of the outbox event `event_id` in the caller's transaction: `edit`
/// changes the decoded message and says whether it changed anything; only then is the row
/// written back. For what must not stay readable in the stream once it is over (e.g. a
/// sealed one-time code that was used): the event keeps its place and id. A missing event
/// is left alone; an undecodable one is logged and left as is.
pub async fn rewrite_event<E: prost::Message + Default>(
    conn: &mut PgConnection,
    event_id: Uuid,
    edit: impl FnOnce(&mut E) -> bool,
) -> Result<(), sqlx::Error> {
    let payload: Option<Vec<u8>> =
        sqlx::query_scalar("SELECT payload FROM outbox_events WHERE event_id = $1 FOR UPDATE")
            .bind(event_id)
            .fetch_optional(&mut *conn)
            .await?;
    let Some(payload) = payload else {
        return Ok(());
    };
    let Ok(mut message) = E::decode(payload.as_slice()) else {
        tracing::error!(event_id = %event_id, "undecodable outbox event left as is");
        return Ok(());
    };
    if !edit(&mut message) {
        return Ok(());
    }
    sqlx::query("UPDATE outbox_events SET payload = $2 WHERE event_id = $1")
        .bind(event_id)
        .bind(message.encode_to_vec())
        .execute(conn)
        .await?;
    Ok(())
}

/// A service event encoded ahead of its transaction: its type, the id of the resource it is
/// about, and its prost-encoded message (without the position fields the stream fills in).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedEvent {
    event_type: &'static str,
    aggregate_id: String,
    payload: Vec<u8>,
}

impl EncodedEvent {
    /// Encodes `message` as an event of `event_type` about `aggregate_id`.
    pub fn new(
        event_type: &'static str,
        aggregate_id: impl Into<String>,
        message: &impl prost::Message,
    ) -> Self {
        Self {
            event_type,
            aggregate_id: aggregate_id.into(),
            payload: message.encode_to_vec(),
        }
    }

    /// Its type, e.g. `contact.assigned`.
    pub fn event_type(&self) -> &'static str {
        self.event_type
    }

    /// Appends it in the caller's transaction (see [`append`]).
    pub async fn append(&self, conn: &mut PgConnection) -> Result<Uuid, sqlx::Error> {
        self.append_positioned(conn)
            .await
            .map(|appended| appended.event_id)
    }

    /// Appends it in the caller's transaction, returning its cursor once the transaction
    /// commits: the revision of the write that appends it (T8).
    pub async fn append_revision(&self, conn: &mut PgConnection) -> Result<Cursor, sqlx::Error> {
        self.append_positioned(conn)
            .await
            .map(|appended| appended.cursor)
    }

    /// Appends it in the caller's transaction, returning its cursor too (see
    /// [`append_positioned`]).
    pub async fn append_positioned(
        &self,
        conn: &mut PgConnection,
    ) -> Result<Appended, sqlx::Error> {
        append_positioned(
            conn,
            NewEvent {
                event_type: self.event_type,
                aggregate_id: &self.aggregate_id,
                payload: &self.payload,
            },
        )
        .await
    }
}

/// Where a published event sits in its stream, for the position fields of the service's
/// event message.
#[derive(Clone, Debug, PartialEq)]
pub struct Position {
    /// Cursor to resume after the event.
    pub cursor: String,
    /// Unique id of the event.
    pub event_id: String,
    /// When it was written.
    pub create_time: prost_types::Timestamp,
}

/// Decodes the message of an outbox row written by [`EncodedEvent::append`], with its
/// position. An undecodable payload is logged and reported as an internal error.
pub fn decode_event<E: prost::Message + Default>(
    stored: StoredEvent,
) -> Result<(E, Position), tonic::Status> {
    let message = E::decode(stored.payload.as_slice()).map_err(|error| {
        tracing::error!(event_id = %stored.event_id, error = %error, "undecodable outbox event");
        tonic::Status::internal("internal error")
    })?;
    Ok((
        message,
        Position {
            cursor: stored.cursor.to_string(),
            event_id: stored.event_id.to_string(),
            create_time: crate::values::timestamp(stored.create_time),
        },
    ))
}
