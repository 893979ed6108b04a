//! The transactional outbox against a real Postgres: commit-ordered streaming, live follow,
//! cursors ([`streams`]), and the exactly-once consumer ([`consumers`]). This module holds
//! the fixtures they share and the tests of concurrent writers and of a store that fails.

use std::collections::HashSet;
use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, Stream, StreamExt};
use kc_runtime::outbox::{
    self, AwaitCursorError, Consumer, Cursor, EncodedEvent, InvalidCursor, NewEvent, OutboxWatcher,
    StoredEvent, WatchOptions, watch_response,
};
use kc_testkit::outbox::watch_source;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::{Notify, mpsc};
use tokio::time::timeout;
use uuid::Uuid;

/// Upper bound for anything that should happen: generous, only reached on failure.
const PATIENCE: Duration = Duration::from_secs(30);

/// A fresh database with the given schemas, and a pool bound to each (outbox installed).
async fn schemas<const N: usize>(names: [&str; N]) -> [PgPool; N] {
    let db = kc_testkit::test_database().await;
    let mut admin = PgConnection::connect(&db.url)
        .await
        .expect("connect as admin");
    let mut pools = Vec::with_capacity(N);
    for name in names {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {name}")))
            .execute(&mut admin)
            .await
            .expect("create schema");
        let options = PgConnectOptions::from_str(&db.url)
            .expect("test database url")
            .options([("search_path", name)]);
        let pool = PgPoolOptions::new()
            .max_connections(24)
            .connect_with(options)
            .await
            .expect("connect pool");
        let mut conn = pool.acquire().await.expect("acquire");
        outbox::install(&mut conn).await.expect("install");
        outbox::install(&mut conn)
            .await
            .expect("install again (idempotent)");
        drop(conn);
        pools.push(pool);
    }
    admin.close().await.expect("close admin connection");
    pools.try_into().expect("one pool per schema")
}

/// An event about `aggregate`, with a payload naming it.
fn event(aggregate: &str) -> NewEvent<'_> {
    NewEvent {
        event_type: "thing.changed",
        aggregate_id: aggregate,
        payload: aggregate.as_bytes(),
    }
}

/// Appends one event per aggregate, each in its own committed transaction.
async fn append_committed(pool: &PgPool, aggregates: &[&str]) -> Vec<Uuid> {
    let mut ids = Vec::with_capacity(aggregates.len());
    for aggregate in aggregates {
        let mut tx = pool.begin().await.expect("begin");
        ids.push(
            outbox::append(&mut tx, event(aggregate))
                .await
                .expect("append"),
        );
        tx.commit().await.expect("commit");
    }
    ids
}

/// Ten events `{prefix}-1` to `{prefix}-10`, each committed in its own transaction and
/// readable: their ids and stored forms, and a watcher of the producer.
async fn ten_events(
    producer: &PgPool,
    prefix: &str,
) -> (Vec<Uuid>, Vec<StoredEvent>, OutboxWatcher) {
    let names: Vec<String> = (1..=10).map(|i| format!("{prefix}-{i}")).collect();
    let ids = append_committed(
        producer,
        &names.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .await;
    let events = read_committed(producer, Cursor::START, ids.len()).await;
    let watcher = OutboxWatcher::start(producer.clone())
        .await
        .expect("start watcher");
    (ids, events, watcher)
}

/// Everything currently readable after `after`.
async fn read_all(pool: &PgPool, after: Cursor) -> Vec<StoredEvent> {
    let mut conn = pool.acquire().await.expect("acquire");
    outbox::read_batch(&mut conn, after, 10_000)
        .await
        .expect("read batch")
}

/// The `count` committed events after `after`, once readable.
///
/// Transactions of concurrent tests in the same cluster may hold the snapshot horizon back
/// for a moment, so committed events can take a little while to become readable.
async fn read_committed(pool: &PgPool, after: Cursor, count: usize) -> Vec<StoredEvent> {
    let read = timeout(PATIENCE, async {
        loop {
            let events = read_all(pool, after).await;
            assert!(events.len() <= count, "more events than written");
            if events.len() == count {
                return events;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    read.expect("committed events become readable")
}

/// The next item of `stream`, failing the test if none comes in time.
async fn next_within<S: Stream + Unpin>(stream: &mut S) -> S::Item {
    timeout(PATIENCE, stream.next())
        .await
        .expect("timed out waiting for the next event")
        .expect("stream ended")
}

/// Polls `condition` until it holds, failing the test after [`PATIENCE`].
async fn wait_until<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let waited = timeout(PATIENCE, async {
        while !condition().await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "timed out waiting until {what}");
}

/// Creates the projection table the test consumers write to.
async fn create_projection(pool: &PgPool) {
    sqlx::raw_sql(
        "CREATE TABLE applied (n bigserial PRIMARY KEY, event_id uuid NOT NULL, consumer text)",
    )
    .execute(pool)
    .await
    .expect("create projection table");
}

/// Applies an event by recording its id in the projection table.
async fn record(conn: &mut PgConnection, event_id: Uuid) -> anyhow::Result<()> {
    sqlx::query("INSERT INTO applied (event_id) VALUES ($1)")
        .bind(event_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Gives a closure the higher-ranked signature [`Consumer::run`] wants for `apply`.
fn apply_fn<F>(apply: F) -> F
where
    F: for<'c> FnMut(&'c mut PgConnection, StoredEvent) -> BoxFuture<'c, anyhow::Result<()>>,
{
    apply
}

/// An apply function that records every event.
fn recorder()
-> impl for<'c> FnMut(&'c mut PgConnection, StoredEvent) -> BoxFuture<'c, anyhow::Result<()>> {
    apply_fn(|conn, event| Box::pin(record(conn, event.event_id)))
}

/// An apply function that records every event but fails on `poison` (after recording it,
/// so that only a rollback undoes it) until `allow` is set; each failure is sent on the
/// returned channel.
fn failing_until_allowed(
    poison: Uuid,
    allow: Arc<AtomicBool>,
) -> (
    impl for<'c> FnMut(&'c mut PgConnection, StoredEvent) -> BoxFuture<'c, anyhow::Result<()>>,
    mpsc::UnboundedReceiver<Uuid>,
) {
    let (failed_tx, failed) = mpsc::unbounded_channel();
    let apply = apply_fn(move |conn, event| {
        let fail = event.event_id == poison && !allow.load(Ordering::SeqCst);
        let failed_tx = failed_tx.clone();
        Box::pin(async move {
            record(conn, event.event_id).await?;
            if fail {
                let _ = failed_tx.send(event.event_id);
                anyhow::bail!("projection rejected event {}", event.event_id);
            }
            Ok(())
        })
    });
    (apply, failed)
}

/// Ids recorded in the projection, in apply order.
async fn applied(pool: &PgPool) -> Vec<Uuid> {
    sqlx::query_scalar("SELECT event_id FROM applied ORDER BY n")
        .fetch_all(pool)
        .await
        .expect("read projection")
}

/// Number of events recorded in the projection.
async fn applied_count(pool: &PgPool) -> usize {
    applied(pool).await.len()
}

/// Asserts that `consumer` applied the events before the one at `failing` (of `ids`, stored
/// as `events`), and only them, and stored the cursor of the last of them: the failing
/// event's transaction was rolled back and the cursor did not move past it.
async fn assert_applied_before(
    pool: &PgPool,
    consumer: &str,
    ids: &[Uuid],
    events: &[StoredEvent],
    failing: usize,
) {
    assert_eq!(
        applied(pool).await,
        ids[..failing],
        "the failed apply was rolled back"
    );
    let mut conn = pool.acquire().await.expect("acquire");
    assert_eq!(
        outbox::load_cursor(&mut conn, consumer)
            .await
            .expect("load cursor"),
        Some(events[failing - 1].cursor.to_string()),
        "the cursor did not move past the failed event"
    );
}

/// Waits until the consumer applied `count` events in `pool`, then stops its `task` with
/// `stop` and waits for it.
async fn stop_once_applied(
    pool: &PgPool,
    count: usize,
    stop: &Notify,
    task: tokio::task::JoinHandle<()>,
) {
    wait_until(&format!("the consumer applied {count} events"), || async {
        applied_count(pool).await >= count
    })
    .await;
    stop.notify_one();
    timeout(PATIENCE, task)
        .await
        .expect("consumer stops")
        .expect("consumer task");
}

/// A shutdown signal for a consumer and the handle that fires it.
fn shutdown_signal() -> (Arc<Notify>, impl Future<Output = ()> + Send + 'static) {
    let notify = Arc::new(Notify::new());
    let waiter = Arc::clone(&notify);
    (notify, async move { waiter.notified().await })
}

mod consumers;
mod streams;

#[tokio::test]
async fn concurrent_writers_are_all_delivered_once() {
    const WRITERS: usize = 20;
    const EVENTS_PER_WRITER: usize = 25;
    const TOTAL: usize = WRITERS * EVENTS_PER_WRITER;

    let [producer, consumer_pool] = schemas(["busy_producer", "busy_consumer"]).await;
    create_projection(&consumer_pool).await;
    let watcher = OutboxWatcher::start(producer.clone())
        .await
        .expect("start watcher");
    let (stop, shutdown) = shutdown_signal();
    let consumer = tokio::spawn(
        Consumer::new(consumer_pool.clone(), "test.busy")
            .with_backoff(Duration::from_millis(10), Duration::from_millis(200))
            .run(watch_source(watcher.clone()), recorder(), shutdown),
    );
    let mut stream = Box::pin(watcher.watch(Cursor::START));

    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let pool = producer.clone();
            tokio::spawn(async move {
                let mut ids = Vec::with_capacity(EVENTS_PER_WRITER);
                for i in 0..EVENTS_PER_WRITER {
                    let aggregate = format!("writer-{writer}-{i}");
                    let mut tx = pool.begin().await.expect("begin");
                    ids.push(
                        outbox::append(&mut tx, event(&aggregate))
                            .await
                            .expect("append"),
                    );
                    // Keep the transaction open a random while so commits interleave.
                    let delay = getrandom::u64().expect("random") % 8;
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                    tx.commit().await.expect("commit");
                }
                ids
            })
        })
        .collect();

    let mut streamed = Vec::with_capacity(TOTAL);
    while streamed.len() < TOTAL {
        let event = next_within(&mut stream).await.expect("event");
        streamed.push(event);
    }
    let mut written = HashSet::with_capacity(TOTAL);
    for writer in writers {
        written.extend(writer.await.expect("writer task"));
    }
    assert_eq!(written.len(), TOTAL);

    let streamed_ids: HashSet<Uuid> = streamed.iter().map(|e| e.event_id).collect();
    assert_eq!(streamed_ids.len(), TOTAL, "no duplicates in the stream");
    assert_eq!(streamed_ids, written);
    assert!(
        streamed.windows(2).all(|w| w[0].cursor < w[1].cursor),
        "cursors strictly increase"
    );

    stop_once_applied(&consumer_pool, TOTAL, &stop, consumer).await;
    let applied_ids = applied(&consumer_pool).await;
    assert_eq!(applied_ids.len(), TOTAL, "no event applied twice");
    assert_eq!(applied_ids.into_iter().collect::<HashSet<_>>(), written);
}

#[tokio::test]
async fn watch_response_reports_an_unavailable_store() {
    let [pool] = schemas(["closing"]).await;
    let ids = append_committed(&pool, &["x"]).await;
    let watcher = OutboxWatcher::start(pool.clone())
        .await
        .expect("start watcher");
    let mut response = watch_response(&watcher, Cursor::START, |event| Ok(event.event_id));
    assert_eq!(next_within(&mut response).await.expect("event"), ids[0]);

    // Closing the pool also stops the listener, which would otherwise keep a connection.
    timeout(PATIENCE, pool.close()).await.expect("pool closes");
    let status = next_within(&mut response)
        .await
        .expect_err("the store is gone");
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert_eq!(status.message(), "event store unavailable");
    assert!(
        timeout(PATIENCE, response.next())
            .await
            .expect("stream ends")
            .is_none()
    );
}
