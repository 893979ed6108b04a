//! Commit-ordered streaming, live watchers and cursors.

use super::*;

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
