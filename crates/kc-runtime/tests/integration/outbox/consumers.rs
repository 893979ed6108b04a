//! The exactly-once consumer: restarts, failures, batches, filters, replicas and awaits.

use super::*;

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
