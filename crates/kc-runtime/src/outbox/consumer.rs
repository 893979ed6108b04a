//! Following another service's event stream into a projection, exactly once in effect.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::{FutureExt, Stream, StreamExt};
use sqlx::{PgConnection, PgExecutor, PgPool};
use tokio::sync::watch;

use super::Cursor;
use super::lag::{EventTime, Lag, SAMPLE_INTERVAL};
use crate::backoff::Backoff;

/// Reads the cursor a consumer stored, `None` when it never applied an event.
///
/// Reads `event_cursors` in the connection's `search_path` schema (the consumer's own).
pub async fn load_cursor(
    conn: &mut PgConnection,
    consumer: &str,
) -> Result<Option<String>, sqlx::Error> {
    fetch_cursor(conn, consumer).await
}

/// Reads a stored cursor through any executor.
async fn fetch_cursor<'e>(
    executor: impl PgExecutor<'e>,
    consumer: &str,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT cursor FROM event_cursors WHERE consumer = $1")
        .bind(consumer)
        .fetch_optional(executor)
        .await
}

/// Why [`await_cursor`] did not see the consumer reach its target.
#[derive(Debug, thiserror::Error)]
pub enum AwaitCursorError {
    /// The target is not a cursor of the followed stream.
    #[error("not an event cursor of the followed stream")]
    InvalidTarget,
    /// The consumer had not applied the target when the time was up.
    #[error("the projection has not reached the revision yet")]
    Behind,
    /// The database failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// First and largest step of the backoff between two reads of the stored cursor in
/// [`await_cursor`]. The consumer's commits in this process end a wait at once, so the
/// database is read for what another replica applied: such a wait ends 100 to 250 ms after
/// that replica's commit. At 20 ms, the reads were 3.5 a row of the benchmark's bulk import,
/// whose waits for this process's own commits outlast 20 ms under load.
const AWAIT_POLL: (Duration, Duration) = (Duration::from_millis(100), Duration::from_millis(250));

/// The cursor a [`Consumer`] of this process last knew stored, published once its
/// transaction committed and when it resumed from the stored cursor ([`Consumer::applied`]):
/// lets [`await_cursor`] see an apply of its own process without reading the database. It
/// names its consumer, so a wait cannot follow the wrong one. Clones share one value.
#[derive(Clone, Debug)]
pub struct AppliedCursor {
    /// The consumer's name, the key of its stored cursor.
    consumer: Arc<str>,
    /// The last cursor known stored; empty for the start of the stream.
    stored: Arc<watch::Sender<String>>,
}

impl AppliedCursor {
    fn new(consumer: &str) -> Self {
        Self {
            consumer: consumer.into(),
            stored: Arc::new(watch::Sender::new(String::new())),
        }
    }

    /// The consumer whose cursor this is.
    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    /// Records that `cursor` is stored (committed).
    fn publish(&self, cursor: &str) {
        self.stored.send_replace(cursor.to_owned());
    }

    /// The last cursor published, if it is at or past `target`.
    fn reached(&self, target: Cursor) -> Option<String> {
        let stored = self.stored.borrow();
        (position(&stored) >= target).then(|| stored.clone())
    }
}

/// Where a stored cursor stands: one this code wrote always parses; anything else counts as
/// the start.
fn position(stored: &str) -> Cursor {
    stored.parse().unwrap_or(Cursor::START)
}

/// Waits until the consumer of `applied` (in `pool`'s schema) has applied the event at
/// `target` of the stream it follows, for at most `timeout`; returns the cursor it stored.
///
/// Streams are in cursor order, so a stored cursor at or past `target` means the event at
/// `target` is applied. This is how a write in one service is made visible to the next
/// decision of another (T8): the writer returns its event's cursor as a revision, and
/// whoever depends on it awaits that revision before going on. The empty target is the start
/// of the stream and is reached at once.
///
/// A commit of this process's instance of the consumer ([`AppliedCursor`]) ends the wait at
/// once. The stored cursor, which every replica of the consumer shares, is read every 100 to
/// 250 ms (jittered) for what another replica applied, and once more at the deadline before
/// giving up: under load a wait reads the database a few times at most.
pub async fn await_cursor(
    pool: &PgPool,
    applied: &AppliedCursor,
    target: &str,
    timeout: Duration,
) -> Result<String, AwaitCursorError> {
    let target: Cursor = target
        .parse()
        .map_err(|_| AwaitCursorError::InvalidTarget)?;
    let start = Instant::now();
    let give_up = start + timeout;
    let mut pause = Backoff::new(AWAIT_POLL.0, AWAIT_POLL.1);
    let mut published = applied.stored.subscribe();
    // The local commit has the first step; no read is planned past the deadline, which
    // always has one.
    let mut next_read = (start + pause.next_delay()).min(give_up);
    loop {
        if let Some(reached) = applied.reached(target) {
            return Ok(reached);
        }
        if Instant::now() >= next_read {
            let stored = fetch_cursor(pool, applied.consumer())
                .await?
                .unwrap_or_default();
            if position(&stored) >= target {
                return Ok(stored);
            }
            let now = Instant::now();
            if now >= give_up {
                return Err(AwaitCursorError::Behind);
            }
            next_read = (now + pause.next_delay()).min(give_up);
        }
        // `applied` keeps its sender alive: `changed` never fails.
        tokio::select! {
            _ = published.changed() => {}
            () = tokio::time::sleep_until(next_read.into()) => {}
        }
    }
}

/// Follows another service's event stream and applies each event to a projection in the
/// consumer's own schema, exactly once in effect.
///
/// Events are applied in a transaction that also stores the last one's cursor in
/// `event_cursors` under the consumer's name; the consumer resumes after the stored cursor.
/// So events' effects and the cursor move together: nothing is lost or applied twice across
/// crashes, restarts and reconnects. With [`Consumer::with_batch`], when an event arrives,
/// the events the stream has already delivered behind it join the same transaction, in
/// order: under load one commit and one lock of the cursor serve many events, and a lone
/// event is applied at once. Several replicas may run the same consumer: each transaction's
/// first statement moves the cursor only from the one the replica expects, and locks its
/// row, so a replica that fell behind discards its transaction and resumes from the stored
/// cursor instead of applying twice.
///
/// When the stream fails or ends, or an apply fails (its transaction is rolled back, the
/// cursor stays put, and the next attempt applies the events before the failing one
/// without it), the consumer reconnects from the stored cursor after an exponential
/// backoff with jitter. An event that always fails therefore blocks the consumer, logged at
/// each attempt: that is the price of never skipping one.
///
/// It reports how far behind it is as `keycontacts_outbox_consumer_lag_seconds` and counts
/// its events as `keycontacts_outbox_consumer_events_applied_total` (see [`EventTime`]).
#[derive(Clone, Debug)]
pub struct Consumer {
    /// The consumer's own pool, bound to its schema.
    pool: PgPool,
    /// The consumer's name, the key of its cursor.
    name: String,
    /// First reconnect delay.
    initial_backoff: Duration,
    /// Largest reconnect delay.
    max_backoff: Duration,
    /// Most events applied in one transaction ([`Consumer::with_batch`]).
    batch: usize,
    /// Where it publishes each cursor it knows stored ([`Consumer::applied`]).
    applied: AppliedCursor,
}

/// Most events a [`Consumer`] may apply in one transaction ([`Consumer::with_batch`]).
pub const MAX_BATCH: usize = 64;

/// How long the stream stays quiet before the cursor of events passed over is stored on its
/// own ([`Consumer::run_filtered`]).
pub const QUIET_STORE: Duration = Duration::from_millis(500);

/// Longest the cursor of events passed over waits to be stored while only such events come
/// (so that a restart reads a bounded stretch again).
const LONGEST_UNSTORED: Duration = Duration::from_secs(5);

/// Completes at `at`, or never when there is nothing to wait for.
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// What became of a batch of received events.
enum Applied {
    /// The first `count` were applied and committed with the last one's `cursor`.
    Committed {
        /// How many.
        count: usize,
        /// The last one's cursor, now stored.
        cursor: String,
    },
    /// Another instance of the consumer moved the cursor first: nothing was applied.
    CursorMoved,
}

impl Consumer {
    /// A consumer named `name` (e.g. `"contacts.identity-users"`) that keeps its cursor in
    /// `pool`'s schema. Reconnects back off from 100 ms up to 10 s.
    pub fn new(pool: PgPool, name: impl Into<String>) -> Self {
        let name = name.into();
        Self {
            pool,
            applied: AppliedCursor::new(&name),
            name,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            batch: 1,
        }
    }

    /// What the consumer applied, for [`await_cursor`] in the same process: each cursor it
    /// stored, once committed, and the stored cursor it resumes from.
    pub fn applied(&self) -> AppliedCursor {
        self.applied.clone()
    }

    /// Lets the consumer apply up to `max` events (at most [`MAX_BATCH`]) in one
    /// transaction: the events the stream has already delivered when one arrives. Only for
    /// an apply that takes no lock another transaction may take in another order (a row or
    /// advisory lock shared with writers or other consumers): a transaction that holds
    /// several events' locks can deadlock where one event's could not. One at a time by
    /// default.
    pub fn with_batch(mut self, max: usize) -> Self {
        self.batch = max.clamp(1, MAX_BATCH);
        self
    }

    /// Sets the reconnect backoff: the first delay and the largest one.
    pub fn with_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_backoff = initial;
        self.max_backoff = max;
        self
    }

    /// The consumer's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs the consumer until `shutdown` completes.
    ///
    /// - `source(after)` opens the other service's stream of `(cursor, event)` after the
    ///   cursor string `after` (empty: from the start), typically its `WatchEvents` RPC.
    /// - `apply(conn, event)` applies one event through `conn`, which is inside the
    ///   transaction that also stores the cursor; an `Err` rolls everything back.
    ///
    /// `shutdown` is checked while waiting (for the stream, the source, the database and
    /// between retries), never in the middle of an event: the event being applied is
    /// committed or rolled back first.
    ///
    /// Events tell their creation time through [`EventTime`], for the lag metric.
    ///
    /// Write `apply` inline in the call (or pass it through a function with the same bound) so
    /// that Rust infers its higher-ranked signature:
    ///
    /// ```ignore
    /// consumer
    ///     .run(source, |conn, event: UserEvent| Box::pin(project_user(conn, event)), shutdown)
    ///     .await;
    /// ```
    pub async fn run<E, S, SFut, St, A>(
        self,
        source: S,
        apply: A,
        shutdown: impl Future<Output = ()>,
    ) where
        S: FnMut(String) -> SFut,
        SFut: Future<Output = Result<St, tonic::Status>>,
        St: Stream<Item = Result<(String, E), tonic::Status>>,
        E: EventTime,
        A: for<'c> FnMut(&'c mut PgConnection, E) -> BoxFuture<'c, anyhow::Result<()>>,
    {
        self.run_filtered(source, |_: &E| true, apply, shutdown)
            .await;
    }

    /// Like [`Consumer::run`], for a projection that `relevant` says most events of the
    /// stream do not touch: an event it is not relevant to is passed over, not applied.
    ///
    /// Events passed over cost no transaction of their own: their cursor is stored with the
    /// next event applied, or on its own once the stream has been quiet for [`QUIET_STORE`]
    /// (and at the latest 5 s after the first of them, however busy the stream).
    /// Until then the stored cursor (and what [`await_cursor`] sees) stays at the last event
    /// stored, and a restart reads the events passed over again (and passes over them again).
    /// So a consumer whose cursor others await for revisions (T8) should not pass over the
    /// events they await.
    pub async fn run_filtered<E, S, SFut, St, R, A>(
        self,
        source: S,
        relevant: R,
        apply: A,
        shutdown: impl Future<Output = ()>,
    ) where
        S: FnMut(String) -> SFut,
        SFut: Future<Output = Result<St, tonic::Status>>,
        St: Stream<Item = Result<(String, E), tonic::Status>>,
        E: EventTime,
        R: Fn(&E) -> bool,
        A: for<'c> FnMut(&'c mut PgConnection, E) -> BoxFuture<'c, anyhow::Result<()>>,
    {
        self.drive(
            source,
            relevant,
            Applier::<A, ApplyAll<E>>::Each(apply),
            shutdown,
        )
        .await;
    }

    /// Like [`Consumer::run_filtered`], for a projection that applies the events of a
    /// transaction together, in fewer statements than one each: `apply_all(conn, events)`
    /// gets the relevant events of the transaction, in stream order. Meant with
    /// [`Consumer::with_batch`].
    ///
    /// When it fails, the transaction is rolled back and the next ones take one event each,
    /// as many as the failed one had, so the events before the failing one commit without it
    /// and only an event that always fails blocks the consumer. Shutdown is checked between transactions.
    pub async fn run_batches<E, S, SFut, St, R, B>(
        self,
        source: S,
        relevant: R,
        apply_all: B,
        shutdown: impl Future<Output = ()>,
    ) where
        S: FnMut(String) -> SFut,
        SFut: Future<Output = Result<St, tonic::Status>>,
        St: Stream<Item = Result<(String, E), tonic::Status>>,
        E: EventTime,
        R: Fn(&E) -> bool,
        B: for<'c> FnMut(&'c mut PgConnection, Vec<E>) -> BoxFuture<'c, anyhow::Result<()>>,
    {
        self.drive(
            source,
            relevant,
            Applier::<ApplyEach<E>, B>::All(apply_all),
            shutdown,
        )
        .await;
    }

    /// Runs [`Consumer::follow`] beside the lag sampler until `shutdown` completes.
    async fn drive<E, S, SFut, St, R, A, B>(
        self,
        mut source: S,
        relevant: R,
        mut applier: Applier<A, B>,
        shutdown: impl Future<Output = ()>,
    ) where
        S: FnMut(String) -> SFut,
        SFut: Future<Output = Result<St, tonic::Status>>,
        St: Stream<Item = Result<(String, E), tonic::Status>>,
        E: EventTime,
        R: Fn(&E) -> bool,
        A: for<'c> FnMut(&'c mut PgConnection, E) -> BoxFuture<'c, anyhow::Result<()>>,
        B: for<'c> FnMut(&'c mut PgConnection, Vec<E>) -> BoxFuture<'c, anyhow::Result<()>>,
    {
        let lag = Lag::new(&self.name);
        let sampler = async {
            let mut interval = tokio::time::interval(SAMPLE_INTERVAL);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                lag.sample();
            }
        };
        tokio::select! {
            biased;
            () = self.follow(&mut source, &relevant, &mut applier, shutdown, &lag) => {}
            () = sampler => {}
        }
    }

    /// The loop of [`Consumer::run`].
    async fn follow<E, S, SFut, St, R, A, B>(
        &self,
        source: &mut S,
        relevant: &R,
        applier: &mut Applier<A, B>,
        shutdown: impl Future<Output = ()>,
        lag: &Lag,
    ) where
        S: FnMut(String) -> SFut,
        SFut: Future<Output = Result<St, tonic::Status>>,
        St: Stream<Item = Result<(String, E), tonic::Status>>,
        E: EventTime,
        R: Fn(&E) -> bool,
        A: for<'c> FnMut(&'c mut PgConnection, E) -> BoxFuture<'c, anyhow::Result<()>>,
        B: for<'c> FnMut(&'c mut PgConnection, Vec<E>) -> BoxFuture<'c, anyhow::Result<()>>,
    {
        let consumer = self.name.as_str();
        let mut backoff = Backoff::new(self.initial_backoff, self.max_backoff);
        // Most events of the next transaction: after a failure, the events before the one
        // that failed, so that they commit without it on the next attempt.
        let mut limit = self.batch;
        // Transactions still to take one event each after a failure of [`Applier::All`],
        // which does not tell which event failed: those of the failed batch.
        let mut singles_left: usize = 0;
        let mut shutdown = std::pin::pin!(shutdown);
        tracing::info!(consumer, "event consumer started");
        'connect: loop {
            let loaded = tokio::select! {
                biased;
                () = &mut shutdown => break 'connect,
                loaded = fetch_cursor(&self.pool, consumer) => loaded,
            };
            let mut cursor = match loaded {
                Ok(cursor) => {
                    let cursor = cursor.unwrap_or_default();
                    // Stored, so applied: possibly by another replica, which this one follows.
                    self.applied.publish(&cursor);
                    cursor
                }
                Err(error) => {
                    tracing::warn!(consumer, error = %error, "loading the event cursor failed");
                    if wait_or_shutdown(&mut backoff, &mut shutdown, consumer).await {
                        break 'connect;
                    }
                    continue 'connect;
                }
            };
            let opened = tokio::select! {
                biased;
                () = &mut shutdown => break 'connect,
                opened = source(cursor.clone()) => opened,
            };
            let stream = match opened {
                Ok(stream) => stream,
                Err(status) => {
                    tracing::warn!(
                        consumer,
                        cursor = %cursor,
                        code = ?status.code(),
                        message = status.message(),
                        "opening the event stream failed"
                    );
                    if wait_or_shutdown(&mut backoff, &mut shutdown, consumer).await {
                        break 'connect;
                    }
                    continue 'connect;
                }
            };
            let opened_at = Instant::now();
            tracing::debug!(consumer, cursor = %cursor, "following the event stream");
            let mut stream = std::pin::pin!(stream);
            lag.listening();
            // The cursor stored as far as this replica knows; behind `cursor` while the events
            // after it were all passed over ([`Consumer::run_filtered`]).
            let mut stored = cursor.clone();
            // Since when events passed over wait for their cursor to be stored.
            let mut unstored_since: Option<Instant> = None;
            loop {
                let store_at = unstored_since
                    .map(|since| (Instant::now() + QUIET_STORE).min(since + LONGEST_UNSTORED));
                let item = tokio::select! {
                    biased;
                    () = &mut shutdown => break 'connect,
                    () = sleep_until_some(store_at) => {
                        match self.store_passed_over(&cursor, &stored).await {
                            Ok(true) => {
                                stored = cursor.clone();
                                unstored_since = None;
                                continue;
                            }
                            Ok(false) => tracing::info!(
                                consumer,
                                cursor = %stored,
                                "event cursor moved by another instance, resuming from it"
                            ),
                            Err(error) => tracing::warn!(
                                consumer,
                                error = %error,
                                "storing the cursor of events passed over failed"
                            ),
                        }
                        break;
                    }
                    item = stream.next() => item,
                };
                let first = match item {
                    Some(Ok(first)) => first,
                    ended => {
                        log_stream_end(consumer, &cursor, ended.and_then(Result::err));
                        break;
                    }
                };
                lag.received();
                // The events the stream has already delivered join the same transaction.
                let mut batch = vec![first];
                let mut after_batch = None;
                while batch.len() < limit {
                    match stream.next().now_or_never() {
                        Some(Some(Ok(more))) => {
                            lag.received();
                            batch.push(more);
                        }
                        Some(ended) => {
                            after_batch = Some(ended.and_then(Result::err));
                            break;
                        }
                        None => break,
                    }
                }
                // Shutdown is checked between the events of a batch, never during one.
                let mut stopping = false;
                let mut stop = || {
                    stopping = stopping || shutdown.as_mut().now_or_never().is_some();
                    stopping
                };
                let created: Vec<_> = batch.iter().map(|(_, event)| event.create_time()).collect();
                if !batch.iter().any(|(_, event)| relevant(event)) {
                    // Nothing to apply: the cursor moves on here and is stored later.
                    for created in &created {
                        lag.applied(*created);
                    }
                    if let Some((last, _)) = batch.pop() {
                        cursor = last;
                        unstored_since.get_or_insert_with(Instant::now);
                    }
                    if stop() {
                        break 'connect;
                    }
                    if let Some(failure) = after_batch {
                        log_stream_end(consumer, &cursor, failure);
                        break;
                    }
                    continue;
                }
                match self
                    .apply_batch(&stored, batch, relevant, applier, &mut stop)
                    .await
                {
                    Ok(Applied::Committed {
                        count,
                        cursor: last,
                    }) => {
                        for created in &created[..count] {
                            lag.applied(*created);
                        }
                        cursor = last;
                        stored = cursor.clone();
                        unstored_since = None;
                        tracing::trace!(consumer, cursor = %cursor, events = count, "events applied");
                        backoff.reset();
                        singles_left = singles_left.saturating_sub(count);
                        limit = if singles_left > 0 { 1 } else { self.batch };
                        if stopping {
                            break 'connect;
                        }
                    }
                    Ok(Applied::CursorMoved) => {
                        tracing::info!(
                            consumer,
                            cursor = %cursor,
                            "event cursor moved by another instance, resuming from it"
                        );
                        if stopping {
                            break 'connect;
                        }
                        break;
                    }
                    Err(BatchFailed {
                        at,
                        unlocated,
                        cursor: failed,
                        error,
                    }) => {
                        if let Some(one_by_one) = error.downcast_ref::<ApplyOneByOne>() {
                            tracing::info!(
                                consumer,
                                cursor = %failed,
                                reason = one_by_one.reason,
                                "events rolled back to be applied one a transaction"
                            );
                        } else {
                            tracing::error!(
                                consumer,
                                cursor = %failed,
                                error = format!("{error:#}"),
                                "applying an event failed, rolled back; retrying"
                            );
                        }
                        // The stream delivers the same events again: the ones before the
                        // failing one commit on their own (with the cursor of any passed
                        // over since the last commit), so only an event that always fails
                        // blocks the consumer.
                        limit = at.max(1);
                        if unlocated {
                            singles_left = singles_left.max(created.len());
                        }
                        if stopping {
                            break 'connect;
                        }
                        break;
                    }
                }
                if let Some(failure) = after_batch {
                    log_stream_end(consumer, &cursor, failure);
                    break;
                }
            }
            lag.disconnected();
            // A stream that stayed up for a while was healthy: start the backoff afresh.
            if opened_at.elapsed() >= self.max_backoff {
                backoff.reset();
            }
            if wait_or_shutdown(&mut backoff, &mut shutdown, consumer).await {
                break 'connect;
            }
        }
        tracing::info!(consumer, "event consumer stopped");
    }

    /// Applies the events of `batch` (in stream order, each with its cursor; not empty) and
    /// stores the last applied one's cursor, in one transaction, provided the stored cursor
    /// is still `expected`. Before each event after the first it asks `stop`; once that says
    /// yes, the events applied so far are committed without the rest.
    async fn apply_batch<E, R, A, B>(
        &self,
        expected: &str,
        batch: Vec<(String, E)>,
        relevant: &R,
        applier: &mut Applier<A, B>,
        stop: &mut impl FnMut() -> bool,
    ) -> Result<Applied, BatchFailed>
    where
        R: Fn(&E) -> bool,
        A: for<'c> FnMut(&'c mut PgConnection, E) -> BoxFuture<'c, anyhow::Result<()>>,
        B: for<'c> FnMut(&'c mut PgConnection, Vec<E>) -> BoxFuture<'c, anyhow::Result<()>>,
    {
        let first = batch
            .first()
            .map(|(cursor, _)| cursor.clone())
            .unwrap_or_default();
        let database = |error: sqlx::Error| BatchFailed {
            at: 0,
            unlocated: false,
            cursor: first.clone(),
            error: error.into(),
        };
        let intended = batch
            .last()
            .map(|(cursor, _)| cursor.clone())
            .unwrap_or_default();
        let mut tx = self.pool.begin().await.map_err(database)?;
        // Moving the cursor first locks its row, so replicas of this consumer apply one at a
        // time, and finds out in the same statement whether another replica moved it since
        // (then nothing is applied): one statement where a locking read and a write were two.
        if !self
            .store_cursor(&mut tx, &intended, expected)
            .await
            .map_err(database)?
        {
            return Ok(Applied::CursorMoved);
        }
        let mut count = 0;
        let mut last = String::new();
        match applier {
            Applier::Each(apply) => {
                for (at, (cursor, event)) in batch.into_iter().enumerate() {
                    if at > 0 && stop() {
                        break;
                    }
                    if relevant(&event)
                        && let Err(error) = apply(&mut tx, event).await
                    {
                        return Err(BatchFailed {
                            at,
                            unlocated: false,
                            cursor,
                            error,
                        });
                    }
                    count += 1;
                    last = cursor;
                }
            }
            Applier::All(apply_all) => {
                count = batch.len();
                last = intended.clone();
                let events = batch
                    .into_iter()
                    .filter_map(|(_, event)| relevant(&event).then_some(event))
                    .collect();
                if let Err(error) = apply_all(&mut tx, events).await {
                    return Err(BatchFailed {
                        at: 0,
                        unlocated: true,
                        cursor: first.clone(),
                        error,
                    });
                }
            }
        }
        if last != intended {
            // Stopped before the end of the batch: the cursor is that of the last applied.
            // The row is this transaction's, locked: it cannot have moved.
            let stored = self
                .store_cursor(&mut tx, &last, &intended)
                .await
                .map_err(database)?;
            if !stored {
                return Err(BatchFailed {
                    at: 0,
                    unlocated: false,
                    cursor: first.clone(),
                    error: anyhow::anyhow!("the locked cursor row changed under its lock"),
                });
            }
        }
        tx.commit().await.map_err(database)?;
        self.applied.publish(&last);
        Ok(Applied::Committed {
            count,
            cursor: last,
        })
    }

    /// Stores `cursor`, that of events passed over, on its own (one statement), provided the
    /// stored one is still `expected`; says whether it did.
    async fn store_passed_over(&self, cursor: &str, expected: &str) -> Result<bool, sqlx::Error> {
        let mut conn = self.pool.acquire().await?;
        let stored = self.store_cursor(&mut conn, cursor, expected).await?;
        if stored {
            self.applied.publish(cursor);
        }
        Ok(stored)
    }

    /// Stores `cursor` as this consumer's in the caller's transaction, provided the stored one
    /// is still `expected`; says whether it did. An empty `expected` is the start of the
    /// stream: the first transaction of the consumer inserts its row (a replica that inserted
    /// it concurrently makes this one wait, then fail). Otherwise the row must exist: one
    /// deleted by hand makes the consumer resume from the start, as a missing row always did.
    /// The row stays locked until the transaction ends.
    async fn store_cursor(
        &self,
        conn: &mut PgConnection,
        cursor: &str,
        expected: &str,
    ) -> Result<bool, sqlx::Error> {
        let statement = if expected.is_empty() {
            // The WHERE also catches a replica that inserted the first cursor concurrently.
            "INSERT INTO event_cursors (consumer, cursor, update_time) VALUES ($1, $2, now()) \
             ON CONFLICT (consumer) DO UPDATE \
             SET cursor = EXCLUDED.cursor, update_time = EXCLUDED.update_time \
             WHERE event_cursors.cursor = $3"
        } else {
            "UPDATE event_cursors SET cursor = $2, update_time = now() \
             WHERE consumer = $1 AND cursor = $3"
        };
        let stored = sqlx::query(statement)
            .bind(&self.name)
            .bind(cursor)
            .bind(expected)
            .execute(conn)
            .await?;
        Ok(stored.rows_affected() == 1)
    }
}

/// How a consumer applies the relevant events of a transaction: one at a time
/// ([`Consumer::run_filtered`]) or all together ([`Consumer::run_batches`]).
enum Applier<A, B> {
    Each(A),
    All(B),
}

/// The type of the apply a consumer that applies events together does not have.
type ApplyEach<E> = for<'c> fn(&'c mut PgConnection, E) -> BoxFuture<'c, anyhow::Result<()>>;
/// The type of the apply a consumer that applies events one at a time does not have.
type ApplyAll<E> = for<'c> fn(&'c mut PgConnection, Vec<E>) -> BoxFuture<'c, anyhow::Result<()>>;

/// What an `apply_all` of [`Consumer::run_batches`] answers when its events must not go
/// together this time (a lock it only tries is busy, say): the transaction rolls back and
/// the consumer applies the same events one a transaction, as after a failure, but logs it
/// as the expected turn it is (info) rather than as an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{reason}; the events are applied one a transaction")]
pub struct ApplyOneByOne {
    /// Why, in a few lowercase words.
    pub reason: &'static str,
}

/// A batch rolled back, nothing of it applied.
struct BatchFailed {
    /// The index in the batch of the event whose apply failed; 0 when the database failed.
    at: usize,
    /// Whether the failing event is not known ([`Applier::All`]): the events of the batch
    /// are then retried one a transaction.
    unlocated: bool,
    /// That event's cursor.
    cursor: String,
    /// What failed.
    error: anyhow::Error,
}

/// Logs why the stream gives no more events: it ended (`None`) or failed.
fn log_stream_end(consumer: &str, cursor: &str, failure: Option<tonic::Status>) {
    match failure {
        None => tracing::info!(consumer, cursor = %cursor, "event stream ended, reconnecting"),
        Some(status) => tracing::warn!(
            consumer,
            cursor = %cursor,
            code = ?status.code(),
            message = status.message(),
            "event stream failed, reconnecting"
        ),
    }
}

/// Waits out the next backoff delay; `true` when `shutdown` completed first.
async fn wait_or_shutdown<F>(
    backoff: &mut Backoff,
    shutdown: &mut std::pin::Pin<&mut F>,
    consumer: &str,
) -> bool
where
    F: Future<Output = ()>,
{
    let delay = backoff.next_delay();
    tracing::debug!(
        consumer,
        retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
        "event consumer waiting before reconnecting"
    );
    tokio::select! {
        biased;
        () = shutdown.as_mut() => true,
        () = tokio::time::sleep(delay) => false,
    }
}
