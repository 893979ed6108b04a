//! The transactional outbox against a real Postgres: commit-ordered streaming, live follow,
//! cursors, and the exactly-once consumer.

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

#[tokio::test]
async fn out_of_order_commits_are_delivered_once_in_commit_safe_order() {
    let [producer, consumer_pool] = schemas(["producer", "consumer"]).await;
    create_projection(&consumer_pool).await;
    let watcher = OutboxWatcher::start(producer.clone())
        .await
        .expect("start watcher");
    let mut stream = Box::pin(watcher.watch(Cursor::START));
    let (stop, shutdown) = shutdown_signal();
    let consumer = tokio::spawn(
        Consumer::new(consumer_pool.clone(), "test.ordering")
            .with_backoff(Duration::from_millis(10), Duration::from_millis(200))
            .run(watch_source(watcher.clone()), recorder(), shutdown),
    );

    // A takes the lower transaction id and sequence; B commits first.
    let mut tx_a = producer.begin().await.expect("begin a");
    let id_a = outbox::append(&mut tx_a, event("a"))
        .await
        .expect("append a");
    let mut tx_b = producer.begin().await.expect("begin b");
    let id_b = outbox::append(&mut tx_b, event("b"))
        .await
        .expect("append b");
    tx_b.commit().await.expect("commit b");

    // A naive `seq > last` reader sees B alone and would move past A's sequence number.
    let visible: Vec<(i64, Uuid)> =
        sqlx::query_as("SELECT seq, event_id FROM outbox_events ORDER BY seq")
            .fetch_all(&producer)
            .await
            .expect("naive read");
    assert_eq!(visible.len(), 1, "only b is committed");
    let (seq_b, naive_id) = visible[0];
    assert_eq!(naive_id, id_b);

    // The commit-ordered reads hold B back while A may still commit before it.
    assert!(read_all(&producer, Cursor::START).await.is_empty());
    assert!(
        timeout(Duration::from_millis(600), stream.next())
            .await
            .is_err(),
        "watch must not deliver b while a is open"
    );
    assert_eq!(applied_count(&consumer_pool).await, 0);

    tx_a.commit().await.expect("commit a");

    // Once A commits, the naive cursor has skipped it for good.
    let naive_after: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox_events WHERE seq > $1")
        .bind(seq_b)
        .fetch_one(&producer)
        .await
        .expect("naive resume");
    assert_eq!(naive_after, 0, "a naive cursor would never see a");

    let first = next_within(&mut stream).await.expect("first event");
    let second = next_within(&mut stream).await.expect("second event");
    assert_eq!((first.event_id, second.event_id), (id_a, id_b));
    assert_eq!(first.aggregate_id, "a");
    assert_eq!(first.payload, b"a");
    assert!(first.cursor < second.cursor);
    assert!(
        timeout(Duration::from_millis(300), stream.next())
            .await
            .is_err(),
        "each event is delivered once"
    );

    stop_once_applied(&consumer_pool, 2, &stop, consumer).await;
    assert_eq!(applied(&consumer_pool).await, vec![id_a, id_b]);
    let mut conn = consumer_pool.acquire().await.expect("acquire");
    assert_eq!(
        outbox::load_cursor(&mut conn, "test.ordering")
            .await
            .expect("load cursor"),
        Some(second.cursor.to_string())
    );
}

/// A watcher of `pool` whose idle streams look again only after an hour: within a test, only
/// a commit's notification wakes them.
async fn idle_watcher(pool: &PgPool) -> OutboxWatcher {
    let options = WatchOptions {
        idle_poll: Duration::from_secs(3600),
        ..WatchOptions::default()
    };
    OutboxWatcher::start_with(pool.clone(), options)
        .await
        .expect("start watcher")
}

#[tokio::test]
async fn live_watchers_wake_on_commit() {
    // The second schema name is too long for a plain channel name and takes the hashed one.
    let long = "a_service_schema_with_a_name_long_enough_for_a_hashed_channel";
    for schema in ["live", long] {
        let [pool] = schemas([schema]).await;
        append_committed(&pool, &["old-1", "old-2"]).await;
        let end = read_committed(&pool, Cursor::START, 2)
            .await
            .last()
            .expect("events written")
            .cursor;

        let watcher = idle_watcher(&pool).await;
        assert_eq!(watcher.schema(), schema);
        let (sender, mut received) = mpsc::unbounded_channel();
        let mut stream = Box::pin(watcher.watch(end));
        let follower = tokio::spawn(async move {
            while let Some(item) = stream.next().await {
                if sender.send(item).is_err() {
                    break;
                }
            }
        });
        // Each round commits once the stream has delivered the previous event, so the stream
        // is (almost always) idle at the commit: only the notification can wake it in time.
        for round in ["new-1", "new-2", "new-3"] {
            let ids = append_committed(&pool, &[round]).await;
            let delivered = timeout(PATIENCE, received.recv())
                .await
                .expect("the commit wakes the stream")
                .expect("stream alive")
                .expect("event");
            assert_eq!(delivered.event_id, ids[0]);
            assert_eq!(delivered.aggregate_id, round);
        }
        follower.abort();
    }
}

/// The value of the counter `name` of `schema` in the recorder's text (0 before it counts).
fn schema_counter(
    handle: &metrics_exporter_prometheus::PrometheusHandle,
    schema: &str,
    name: &str,
) -> f64 {
    kc_testkit::metrics::sample(&handle.render(), name, &[("schema", schema)]).unwrap_or(0.0)
}

#[tokio::test]
async fn streams_at_the_tail_share_their_reads_and_each_gets_every_event_in_order() {
    const STREAMS: usize = 8;
    const ROUNDS: usize = 20;
    let handle = kc_runtime::metrics::install().expect("recorder");
    const SCHEMA: &str = "shared_tail";
    let [pool] = schemas([SCHEMA]).await;
    let watcher = idle_watcher(&pool).await;
    let (sender, mut received) = mpsc::unbounded_channel();
    let followers: Vec<_> = (0..STREAMS)
        .map(|follower| {
            let mut stream = Box::pin(watcher.watch(Cursor::START));
            let sender = sender.clone();
            tokio::spawn(async move {
                while let Some(item) = stream.next().await {
                    if sender.send((follower, item)).is_err() {
                        break;
                    }
                }
            })
        })
        .collect();
    // Each round commits once every stream delivered the previous event: the streams are
    // all caught up at the same cursor, woken by the same commit.
    let mut delivered = vec![Vec::new(); STREAMS];
    let mut written = Vec::new();
    for round in 0..ROUNDS {
        let name = format!("round-{round}");
        written.extend(append_committed(&pool, &[name.as_str()]).await);
        for _ in 0..STREAMS {
            let (follower, event) = timeout(PATIENCE, received.recv())
                .await
                .expect("the commit reaches every stream")
                .expect("streams alive");
            delivered[follower].push(event.expect("event").event_id);
        }
    }
    for events in &delivered {
        assert_eq!(
            events, &written,
            "every stream gets every event once, in order"
        );
    }
    let reads = schema_counter(&handle, SCHEMA, kc_runtime::outbox::OUTBOX_PAGE_READS);
    let shared = schema_counter(
        &handle,
        SCHEMA,
        kc_runtime::outbox::OUTBOX_PAGE_READS_SHARED,
    );
    // Without sharing, each stream reads at least once a round.
    assert!(
        reads < (STREAMS * ROUNDS / 2) as f64,
        "{reads} reads for {STREAMS} streams over {ROUNDS} commits ({shared} shared)"
    );
    assert!(shared > 0.0, "{reads} reads, none shared");
    for follower in followers {
        follower.abort();
    }
}

#[tokio::test]
async fn streams_held_back_by_a_silent_transaction_read_again_without_a_commit() {
    let [pool] = schemas(["held_back_shared"]).await;
    let watcher = idle_watcher(&pool).await;
    let mut first_stream = Box::pin(watcher.watch(Cursor::START));
    let mut second_stream = Box::pin(watcher.watch(Cursor::START));
    // An older transaction with an id and no event holds the horizon: its end sends no
    // notification.
    let mut silent = pool.begin().await.expect("begin");
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut *silent)
        .await
        .expect("take a transaction id");
    let ids = append_committed(&pool, &["after-the-silent-one"]).await;
    // Both streams read (and share) the held-back page, then poll on their own.
    let (first, second) = futures::join!(
        timeout(Duration::from_millis(400), first_stream.next()),
        timeout(Duration::from_millis(400), second_stream.next()),
    );
    assert!(
        first.is_err() && second.is_err(),
        "held back while the older one runs"
    );
    silent.rollback().await.expect("end the silent transaction");
    for stream in [&mut first_stream, &mut second_stream] {
        let event = next_within(stream).await.expect("event");
        assert_eq!(event.event_id, ids[0]);
    }
}

#[tokio::test]
async fn a_stream_woken_by_a_later_commit_takes_no_read_made_before_it() {
    let [pool] = schemas(["later_wakeup"]).await;
    let watcher = idle_watcher(&pool).await;
    let mut early = Box::pin(watcher.watch(Cursor::START));
    // The early stream reads the empty outbox, then waits (and is not polled again).
    assert!(
        timeout(Duration::from_millis(300), early.next())
            .await
            .is_err()
    );
    let ids = append_committed(&pool, &["later"]).await;
    // Time for the commit's notification to reach the watcher: the late stream then answers
    // a later wake-up than the early stream's read, which cannot show the event.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut late = Box::pin(watcher.watch(Cursor::START));
    let event = next_within(&mut late).await.expect("event");
    assert_eq!(event.event_id, ids[0]);
}

// A stream takes no read made before it opened: what was committed before it, a change
// of a stored event included (identity empties a used code in place, and notifies nobody),
// is what it reads first.
#[tokio::test]
async fn a_stream_takes_no_read_made_before_it_opened() {
    let [pool] = schemas(["opened_after"]).await;
    let ids = append_committed(&pool, &["sealed"]).await;
    read_committed(&pool, Cursor::START, 1).await;
    let watcher = idle_watcher(&pool).await;
    let mut early = Box::pin(watcher.watch(Cursor::START));
    let seen = next_within(&mut early).await.expect("event");
    assert_eq!(seen.payload, b"sealed");
    sqlx::query("UPDATE outbox_events SET payload = '' WHERE event_id = $1")
        .bind(ids[0])
        .execute(&pool)
        .await
        .expect("empty the event's payload, as identity does with a used code");
    let mut late = Box::pin(watcher.watch(Cursor::START));
    let event = next_within(&mut late).await.expect("event");
    assert_eq!(event.event_id, ids[0]);
    assert!(
        event.payload.is_empty(),
        "the late stream reads the event as it is now"
    );
}

#[tokio::test]
async fn a_stream_its_client_stopped_polling_holds_up_no_other_stream() {
    let [pool] = schemas(["unpolled_stream"]).await;
    let ids = append_committed(&pool, &["only"]).await;
    read_committed(&pool, Cursor::START, 1).await;
    let watcher = idle_watcher(&pool).await;
    let mut stalled = Box::pin(watcher.watch(Cursor::START));
    let mut other = Box::pin(watcher.watch(Cursor::START));
    // The first stream starts the read of the page, then nobody polls it again.
    assert!(
        stalled.next().now_or_never().is_none(),
        "the read takes a moment"
    );
    let event = next_within(&mut other).await.expect("event");
    assert_eq!(event.event_id, ids[0]);
}

#[tokio::test]
async fn events_appended_together_keep_their_order_and_wake_the_watchers() {
    let [pool] = schemas(["appended_together"]).await;
    let watcher = idle_watcher(&pool).await;
    let mut stream = Box::pin(watcher.watch(Cursor::START));
    let events: Vec<EncodedEvent> = ["first", "second", "third"]
        .into_iter()
        .map(|name| {
            // A `google.protobuf.StringValue`'s wire form: any message does.
            EncodedEvent::new("thing.changed", name, &name.to_owned())
        })
        .collect();
    let mut tx = pool.begin().await.expect("begin");
    let ids = outbox::append_all(&mut tx, &events)
        .await
        .expect("append all");
    assert!(
        outbox::append_all(&mut tx, &[])
            .await
            .expect("none")
            .is_empty()
    );
    tx.commit().await.expect("commit");

    // An idle stream looks again only after an hour: the commit's notification wakes it.
    let mut delivered = Vec::new();
    for _ in 0..3 {
        delivered.push(next_within(&mut stream).await.expect("event"));
    }
    let names: Vec<&str> = delivered.iter().map(|e| e.aggregate_id.as_str()).collect();
    assert_eq!(names, ["first", "second", "third"]);
    let delivered_ids: Vec<Uuid> = delivered.iter().map(|e| e.event_id).collect();
    assert_eq!(delivered_ids, ids);
    assert!(
        delivered
            .windows(2)
            .all(|pair| pair[0].cursor < pair[1].cursor),
        "cursors follow the order given"
    );
}

#[tokio::test]
async fn cursors_round_trip_and_resume_after_the_given_event() {
    let [pool] = schemas(["cursors"]).await;
    let ids = append_committed(&pool, &["1", "2", "3", "4", "5"]).await;
    let events = read_committed(&pool, Cursor::START, ids.len()).await;
    assert_eq!(
        events.iter().map(|e| e.event_id).collect::<Vec<_>>(),
        ids,
        "sequential commits stream in commit order"
    );

    assert_eq!(Cursor::START.to_string(), "");
    assert_eq!("".parse::<Cursor>(), Ok(Cursor::START));
    for event in &events {
        let text = event.cursor.to_string();
        assert!(!text.is_empty());
        assert_eq!(text.parse::<Cursor>(), Ok(event.cursor));
    }
    for invalid in ["nope", "0", "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz", "-1"] {
        assert_eq!(invalid.parse::<Cursor>(), Err(InvalidCursor));
    }
    let status = InvalidCursor.to_status("after_cursor");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("after_cursor"));

    // Resuming after the second event returns the third onwards, by batch and by watch.
    let after: Cursor = events[1].cursor.to_string().parse().expect("cursor");
    let rest = read_committed(&pool, after, 3).await;
    assert_eq!(
        rest.iter().map(|e| e.event_id).collect::<Vec<_>>(),
        ids[2..]
    );
    let mut conn = pool.acquire().await.expect("acquire");
    let limited = outbox::read_batch(&mut conn, after, 2).await.expect("read");
    assert_eq!(
        limited.iter().map(|e| e.event_id).collect::<Vec<_>>(),
        ids[2..4]
    );
    let last = events.last().expect("events").cursor;
    assert!(
        outbox::read_batch(&mut conn, last, 10)
            .await
            .expect("read")
            .is_empty()
    );
    drop(conn);

    let watcher = OutboxWatcher::start(pool.clone())
        .await
        .expect("start watcher");
    let mut stream = Box::pin(watcher.watch(after));
    for id in &ids[2..] {
        assert_eq!(next_within(&mut stream).await.expect("event").event_id, *id);
    }
}

#[tokio::test]
async fn consumer_applies_each_event_once_across_restarts_and_failures() {
    let [producer, consumer_pool] = schemas(["source_svc", "projection_svc"]).await;
    create_projection(&consumer_pool).await;
    let (ids, events, watcher) = ten_events(&producer, "agg").await;
    let consumer = || {
        Consumer::new(consumer_pool.clone(), "test.restart")
            .with_backoff(Duration::from_millis(10), Duration::from_millis(200))
    };
    let mut conn = consumer_pool.acquire().await.expect("acquire");
    assert_eq!(
        outbox::load_cursor(&mut conn, "test.restart")
            .await
            .expect("load cursor"),
        None
    );

    // First run: stop right after the fifth event.
    let (stop, shutdown) = shutdown_signal();
    let seen = Arc::new(AtomicUsize::new(0));
    let apply = {
        let seen = Arc::clone(&seen);
        let stop = Arc::clone(&stop);
        apply_fn(move |conn, event| {
            if seen.fetch_add(1, Ordering::SeqCst) + 1 == 5 {
                stop.notify_one();
            }
            Box::pin(record(conn, event.event_id))
        })
    };
    timeout(
        PATIENCE,
        consumer().run(watch_source(watcher.clone()), apply, shutdown),
    )
    .await
    .expect("first run stops");
    assert_eq!(applied(&consumer_pool).await, ids[..5]);
    assert_eq!(
        outbox::load_cursor(&mut conn, "test.restart")
            .await
            .expect("load cursor"),
        Some(events[4].cursor.to_string())
    );

    // Second run: the seventh event fails until allowed, and is retried without moving on.
    let allow = Arc::new(AtomicBool::new(false));
    let (apply, mut failed) = failing_until_allowed(ids[6], Arc::clone(&allow));
    let (stop, shutdown) = shutdown_signal();
    let running = tokio::spawn(consumer().run(watch_source(watcher.clone()), apply, shutdown));
    for _ in 0..2 {
        let failed_id = timeout(PATIENCE, failed.recv())
            .await
            .expect("the poisoned event is tried")
            .expect("consumer alive");
        assert_eq!(failed_id, ids[6]);
        assert_applied_before(&consumer_pool, "test.restart", &ids, &events, 6).await;
    }
    allow.store(true, Ordering::SeqCst);
    stop_once_applied(&consumer_pool, ids.len(), &stop, running).await;
    assert_eq!(applied(&consumer_pool).await, ids);
    assert_eq!(
        outbox::load_cursor(&mut conn, "test.restart")
            .await
            .expect("load cursor"),
        Some(events[9].cursor.to_string())
    );
}

// Events the stream has already delivered are applied together: a burst costs a few
// transactions (each of at most `MAX_BATCH` events), each event still once and in order.
#[tokio::test]
async fn a_burst_of_events_is_applied_in_few_transactions_each_once_in_order() {
    const EVENTS: usize = 200;
    let [producer, consumer_pool] = schemas(["burst_producer", "burst_consumer"]).await;
    create_projection(&consumer_pool).await;
    sqlx::raw_sql("ALTER TABLE applied ADD COLUMN tx bigint NOT NULL DEFAULT txid_current()")
        .execute(&consumer_pool)
        .await
        .expect("record each apply's transaction");
    let names: Vec<String> = (0..EVENTS).map(|i| format!("burst-{i}")).collect();
    let ids = append_committed(
        &producer,
        &names.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .await;
    read_committed(&producer, Cursor::START, EVENTS).await;
    let watcher = OutboxWatcher::start(producer.clone())
        .await
        .expect("start watcher");
    let (stop, shutdown) = shutdown_signal();
    let consumer = tokio::spawn(
        Consumer::new(consumer_pool.clone(), "test.burst")
            .with_batch(outbox::MAX_BATCH)
            .run(watch_source(watcher.clone()), recorder(), shutdown),
    );
    stop_once_applied(&consumer_pool, EVENTS, &stop, consumer).await;
    assert_eq!(applied(&consumer_pool).await, ids, "each once, in order");
    let transactions: i64 = sqlx::query_scalar("SELECT count(DISTINCT tx) FROM applied")
        .fetch_one(&consumer_pool)
        .await
        .expect("count transactions");
    assert!(
        (EVENTS.div_ceil(outbox::MAX_BATCH) as i64..EVENTS as i64 / 4).contains(&transactions),
        "{EVENTS} events in {transactions} transactions"
    );
}

// A consumer that most events do not concern passes over them without a transaction of
// its own: their cursor goes with the next event applied, or is stored alone once the
// stream is quiet. Every cursor the consumer writes is recorded by a trigger.
#[tokio::test]
async fn events_passed_over_cost_no_transaction_and_their_cursor_is_stored_once_quiet() {
    let [producer, consumer_pool] = schemas(["passed_producer", "passed_consumer"]).await;
    create_projection(&consumer_pool).await;
    sqlx::raw_sql(
        "CREATE TABLE cursor_writes (n bigserial PRIMARY KEY, cursor text NOT NULL); \
         CREATE FUNCTION record_cursor() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN INSERT INTO cursor_writes (cursor) VALUES (NEW.cursor); RETURN NEW; END $$; \
         CREATE TRIGGER record_cursor AFTER INSERT OR UPDATE ON event_cursors \
         FOR EACH ROW EXECUTE FUNCTION record_cursor();",
    )
    .execute(&consumer_pool)
    .await
    .expect("record every cursor written");
    let names = ["keep-1", "skip-2", "skip-3", "keep-4", "skip-5", "skip-6"];
    let ids = append_committed(&producer, &names).await;
    let events = read_committed(&producer, Cursor::START, names.len()).await;
    let watcher = OutboxWatcher::start(producer.clone())
        .await
        .expect("start watcher");
    let (stop, shutdown) = shutdown_signal();
    let started = std::time::Instant::now();
    let consumer = tokio::spawn(
        Consumer::new(consumer_pool.clone(), "test.passed").run_filtered(
            watch_source(watcher.clone()),
            |event: &StoredEvent| event.aggregate_id.starts_with("keep"),
            recorder(),
            shutdown,
        ),
    );
    let last = events[5].cursor.to_string();
    wait_until(
        "the cursor of the last events passed over is stored",
        || {
            let pool = consumer_pool.clone();
            let last = last.clone();
            async move {
                let mut conn = pool.acquire().await.expect("acquire");
                outbox::load_cursor(&mut conn, "test.passed")
                    .await
                    .expect("load cursor")
                    == Some(last)
            }
        },
    )
    .await;
    assert!(
        started.elapsed() >= outbox::QUIET_STORE,
        "stored only once the stream was quiet"
    );
    stop.notify_one();
    timeout(PATIENCE, consumer)
        .await
        .expect("consumer stops")
        .expect("consumer task");
    assert_eq!(
        applied(&consumer_pool).await,
        [ids[0], ids[3]],
        "only the events it concerns are applied"
    );
    let written: Vec<String> = sqlx::query_scalar("SELECT cursor FROM cursor_writes ORDER BY n")
        .fetch_all(&consumer_pool)
        .await
        .expect("read the cursors written");
    assert_eq!(
        written,
        [
            events[0].cursor.to_string(),
            events[3].cursor.to_string(),
            last
        ],
        "one write for each event applied and one for the quiet stream's last events: none \
         for an event passed over"
    );
}

// Two replicas of one consumer follow the same stream at once, with batches: whichever
// moves the shared cursor first applies, the other finds it moved and resumes after it, so
// every event is applied once, in order, whatever their race.
#[tokio::test]
async fn replicas_of_a_consumer_apply_each_event_once_in_order() {
    const EVENTS: usize = 300;
    let [producer, consumer_pool] = schemas(["replicas_producer", "replicas_consumer"]).await;
    create_projection(&consumer_pool).await;
    let watcher = OutboxWatcher::start(producer.clone())
        .await
        .expect("start watcher");
    let mut stops = Vec::new();
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let (stop, shutdown) = shutdown_signal();
        stops.push(stop);
        replicas.push(tokio::spawn(
            Consumer::new(consumer_pool.clone(), "test.replicas")
                .with_batch(7)
                .run(watch_source(watcher.clone()), recorder(), shutdown),
        ));
    }
    // Bursts while both follow, so that both see the same events at once.
    let names: Vec<String> = (0..EVENTS).map(|i| format!("replicated-{i}")).collect();
    let mut ids = Vec::new();
    for burst in names.chunks(30) {
        ids.extend(
            append_committed(
                &producer,
                &burst.iter().map(String::as_str).collect::<Vec<_>>(),
            )
            .await,
        );
    }
    wait_until("the replicas applied every event", || async {
        applied_count(&consumer_pool).await >= EVENTS
    })
    .await;
    for (stop, replica) in stops.iter().zip(replicas) {
        stop.notify_one();
        timeout(PATIENCE, replica)
            .await
            .expect("replica stops")
            .expect("replica task");
    }
    assert_eq!(applied(&consumer_pool).await, ids, "each once, in order");
}

// A projection that applies a transaction's events together gets them in one call, in
// order; when that call fails, the events before the failing one commit one at a time
// without it, and it blocks only itself.
#[tokio::test]
async fn events_applied_together_arrive_in_one_call_and_a_failure_blocks_only_its_event() {
    let [producer, consumer_pool] = schemas(["together_producer", "together_consumer"]).await;
    create_projection(&consumer_pool).await;
    let (ids, events, watcher) = ten_events(&producer, "together").await;
    let poison = ids[6];
    let allow = Arc::new(AtomicBool::new(false));
    let calls: Arc<std::sync::Mutex<Vec<usize>>> = Arc::default();
    let apply_all = {
        let (allow, calls) = (Arc::clone(&allow), Arc::clone(&calls));
        outbox::apply_all_fn(move |conn, events: Vec<StoredEvent>| {
            let fail = !allow.load(Ordering::SeqCst)
                && events.iter().any(|event| event.event_id == poison);
            calls.lock().expect("calls").push(events.len());
            let ids: Vec<Uuid> = events.iter().map(|event| event.event_id).collect();
            Box::pin(async move {
                sqlx::query("INSERT INTO applied (event_id) SELECT * FROM unnest($1::uuid[])")
                    .bind(ids)
                    .execute(&mut *conn)
                    .await?;
                anyhow::ensure!(!fail, "projection rejected event {poison}");
                Ok(())
            })
        })
    };
    let (stop, shutdown) = shutdown_signal();
    let running = tokio::spawn(
        Consumer::new(consumer_pool.clone(), "test.together")
            .with_batch(outbox::MAX_BATCH)
            .with_backoff(Duration::from_millis(10), Duration::from_millis(100))
            .run_batches(
                watch_source(watcher.clone()),
                |_: &StoredEvent| true,
                apply_all,
                shutdown,
            ),
    );
    wait_until("the events before the poisoned one are applied", || async {
        applied_count(&consumer_pool).await >= 6
    })
    .await;
    // The poisoned event keeps failing on its own: nothing after it is applied.
    wait_until("the poisoned event was tried on its own", || async {
        calls.lock().expect("calls").ends_with(&[1, 1])
    })
    .await;
    assert_applied_before(&consumer_pool, "test.together", &ids, &events, 6).await;
    allow.store(true, Ordering::SeqCst);
    stop_once_applied(&consumer_pool, ids.len(), &stop, running).await;
    assert_eq!(applied(&consumer_pool).await, ids, "each once, in order");
    let calls = calls.lock().expect("calls").clone();
    assert!(
        calls.first().is_some_and(|&first| first > 1),
        "the first transaction's events arrived in one call: {calls:?}"
    );
    assert_eq!(
        calls.get(1..7),
        Some(&[1; 6][..]),
        "after the failure, the events before the poisoned one came one a call: {calls:?}"
    );
}

// T8: a wait for a revision ends on the commit of this process's own instance of the
// consumer (its AppliedCursor), and on the stored cursor that another replica wrote.
#[tokio::test]
async fn an_await_ends_on_this_process_s_commit_or_on_the_stored_cursor() {
    let [producer, consumer_pool] = schemas(["local_producer", "local_consumer"]).await;
    create_projection(&consumer_pool).await;
    let ids = append_committed(&producer, &["local-1", "local-2", "local-3"]).await;
    let last = read_committed(&producer, Cursor::START, 3)
        .await
        .last()
        .expect("three events")
        .cursor
        .to_string();
    let watcher = OutboxWatcher::start(producer.clone())
        .await
        .expect("start watcher");
    let consumer = Consumer::new(consumer_pool.clone(), "test.local");
    let published = consumer.applied();
    // Started before the consumer runs: the wait ends once it committed the last event.
    let waiting = tokio::spawn({
        let (pool, published, last) = (consumer_pool.clone(), published.clone(), last.clone());
        async move {
            let reached = outbox::await_cursor(&pool, &published, &last, PATIENCE).await;
            // T8: what the wait answered for is readable at once.
            (reached, applied_count(&pool).await)
        }
    });
    let (stop, shutdown) = shutdown_signal();
    let consumer = tokio::spawn(consumer.run(watch_source(watcher.clone()), recorder(), shutdown));
    let (reached, visible) = timeout(PATIENCE, waiting)
        .await
        .expect("the wait ends")
        .expect("wait task");
    assert_eq!(reached.expect("the revision is reached"), last);
    assert_eq!(visible, ids.len(), "every event applied when the wait ends");
    stop_once_applied(&consumer_pool, ids.len(), &stop, consumer).await;
    assert_eq!(applied(&consumer_pool).await, ids, "each once, in order");

    // The producer's schema stores no cursor of this consumer: only the published one can
    // answer there.
    let short = Duration::from_millis(200);
    let local = outbox::await_cursor(&producer, &published, &last, short)
        .await
        .expect("reached through this process's consumer");
    assert_eq!(local, last);
    // Another replica of the consumer, that applied nothing in this process.
    let replica = Consumer::new(consumer_pool.clone(), "test.local").applied();
    assert_eq!(replica.consumer(), "test.local");
    let unread = outbox::await_cursor(&producer, &replica, &last, short).await;
    assert!(
        matches!(unread, Err(AwaitCursorError::Behind)),
        "{unread:?}"
    );
    // Where the consumer stores its cursor, the stored cursor answers for it.
    let stored = outbox::await_cursor(&consumer_pool, &replica, &last, PATIENCE)
        .await
        .expect("reached through the stored cursor");
    assert_eq!(stored, last);
}

// A batch whose seventh event fails is rolled back; the six before it are applied on their
// own, and the consumer stays before the failing event until it applies.
#[tokio::test]
async fn a_failing_event_in_a_batch_blocks_only_itself() {
    let [producer, consumer_pool] = schemas(["poison_producer", "poison_consumer"]).await;
    create_projection(&consumer_pool).await;
    let (ids, events, watcher) = ten_events(&producer, "poison").await;
    let allow = Arc::new(AtomicBool::new(false));
    let (apply, mut failed) = failing_until_allowed(ids[6], Arc::clone(&allow));
    let (stop, shutdown) = shutdown_signal();
    let running = tokio::spawn(
        Consumer::new(consumer_pool.clone(), "test.poison")
            .with_batch(outbox::MAX_BATCH)
            .with_backoff(Duration::from_millis(10), Duration::from_millis(200))
            .run(watch_source(watcher.clone()), apply, shutdown),
    );
    let failed_id = timeout(PATIENCE, failed.recv())
        .await
        .expect("the poisoned event is tried")
        .expect("consumer alive");
    assert_eq!(failed_id, ids[6]);
    wait_until("the events before the failing one are applied", || async {
        applied(&consumer_pool).await == ids[..6]
    })
    .await;
    let mut conn = consumer_pool.acquire().await.expect("acquire");
    // Tried again, still failing: nothing past it moves.
    timeout(PATIENCE, failed.recv())
        .await
        .expect("the poisoned event is tried again")
        .expect("consumer alive");
    assert_eq!(applied(&consumer_pool).await, ids[..6]);
    assert_eq!(
        outbox::load_cursor(&mut conn, "test.poison")
            .await
            .expect("load cursor"),
        Some(events[5].cursor.to_string())
    );
    allow.store(true, Ordering::SeqCst);
    stop_once_applied(&consumer_pool, ids.len(), &stop, running).await;
    assert_eq!(applied(&consumer_pool).await, ids, "each once, in order");
}

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
