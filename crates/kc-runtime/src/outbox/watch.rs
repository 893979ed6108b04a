//! Live, commit-ordered event streams: one `LISTEN` connection per process, fanned out.
//!
//! **Reads of the tail are shared.** Every stream of a process that is caught up wakes on the
//! same commit and wants the same page (the events after the same cursor): the consumers of
//! other services and every process's revocation stream follow one outbox. The first stream
//! to ask starts a read of it (on a task of its own, so that a stream its client stopped
//! reading holds nobody up); the others that ask for the same cursor take its page, provided
//! the read was started at or after the wake-up they answer (so it sees every commit they were
//! woken for), and only a read started after the last one they took (a stream polling for
//! events held back never gets an older page than it had) and after the stream opened (a
//! new stream sees what was committed before it, notified yet or not). A read that failed is not shared
//! with the streams that come after it. At most 8 recent reads are kept, one per cursor.
//! `keycontacts_outbox_page_reads_total` counts the reads made and
//! `keycontacts_outbox_page_reads_shared_total` the pages taken from another stream's read.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::future::{BoxFuture, Shared};
use futures::{FutureExt, Stream, StreamExt};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::Cursor;
use super::read::{Page, StoredEvent, read_page};
use crate::backoff::Backoff;

/// Counter: pages of events the streams of a process read from its outbox, by `schema`.
pub const OUTBOX_PAGE_READS: &str = "keycontacts_outbox_page_reads_total";
/// Counter: pages a stream took from a read another stream of the process made, by `schema`.
pub const OUTBOX_PAGE_READS_SHARED: &str = "keycontacts_outbox_page_reads_shared_total";

/// Recent reads kept for the streams that ask for the same cursor (one per cursor).
const SHARED_READS_KEPT: usize = 8;

/// One read of the page after a cursor: made once, on a task of its own (so that it ends
/// whichever stream is polled), its result taken by every stream that may use it.
type SharedPage = Shared<BoxFuture<'static, Result<Arc<Page>, Arc<sqlx::Error>>>>;

/// The recent reads of a watcher's outbox.
#[derive(Debug, Default)]
struct SharedReads {
    /// The id of the next read.
    next_id: u64,
    /// At most [`SHARED_READS_KEPT`], one per cursor, the newest last.
    recent: VecDeque<SharedRead>,
}

/// A recent read of the page after `after`, for the streams woken no later than `generation`.
#[derive(Debug)]
struct SharedRead {
    /// Tells the reads apart, in the order they were registered: a stream only takes a read
    /// registered after the last it took.
    id: u64,
    /// The cursor the page follows.
    after: Cursor,
    /// The wake-up count its reader had seen before the read began.
    generation: u64,
    /// The page, once read.
    page: SharedPage,
}

/// A boxed stream of `WatchEvents` responses, the type tonic wants for a server stream.
pub type EventStream<T> = Pin<Box<dyn Stream<Item = Result<T, tonic::Status>> + Send + 'static>>;

/// Tuning of the streams an [`OutboxWatcher`] serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatchOptions {
    /// Events read per query (at least 1).
    pub batch_size: u32,
    /// How often a caught-up stream looks again while committed events are held back by an
    /// older transaction still running (its end sends no notification).
    pub held_back_poll: Duration,
    /// How often a caught-up stream looks again without any notification: a safety net only,
    /// new commits wake streams at once.
    pub idle_poll: Duration,
}

impl Default for WatchOptions {
    fn default() -> Self {
        Self {
            batch_size: 500,
            held_back_poll: Duration::from_millis(250),
            idle_poll: Duration::from_secs(5),
        }
    }
}

/// Serves live event streams from the outbox of one service schema.
///
/// Start one per process with [`OutboxWatcher::start`] and clone it freely (clones share
/// everything). It keeps one `LISTEN` connection for the whole process (reconnecting after
/// failures) and wakes every stream when an event commits; streams hold no connection while
/// they wait. The listener stops when the pool is closed or when the last clone and the last
/// stream are dropped.
#[derive(Clone, Debug)]
pub struct OutboxWatcher {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The service's pool, bound to its schema.
    pool: PgPool,
    /// The service schema, for logs.
    schema: String,
    /// Counts wake-ups; streams wait for it to change.
    wakeups: watch::Receiver<u64>,
    /// Stream tuning.
    options: WatchOptions,
    /// The listener task, aborted when the last user goes away.
    listener: JoinHandle<()>,
    /// Recent reads of the tail, shared by the streams (see the module).
    reads: Mutex<SharedReads>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

impl OutboxWatcher {
    /// Starts watching the outbox of the pool's schema (the first schema of its `search_path`)
    /// with the default [`WatchOptions`].
    ///
    /// The listener holds one connection of `pool` for as long as it runs. Fails when the
    /// database cannot be reached or the pool has no current schema.
    pub async fn start(pool: PgPool) -> Result<Self, sqlx::Error> {
        Self::start_with(pool, WatchOptions::default()).await
    }

    /// Like [`OutboxWatcher::start`], with explicit stream tuning.
    pub async fn start_with(pool: PgPool, options: WatchOptions) -> Result<Self, sqlx::Error> {
        let (schema, channel): (Option<String>, Option<String>) =
            sqlx::query_as(concat!("SELECT current_schema(), ", channel_sql!()))
                .fetch_one(&pool)
                .await?;
        let (Some(schema), Some(channel)) = (schema, channel) else {
            return Err(sqlx::Error::Configuration(
                "the pool has no current schema: set its search_path to the service schema".into(),
            ));
        };
        let listener = listen(&pool, &channel).await?;
        let (wakeups_tx, wakeups) = watch::channel(0_u64);
        let listener = tokio::spawn(run_listener(
            pool.clone(),
            schema.clone(),
            channel,
            listener,
            wakeups_tx,
        ));
        tracing::debug!(schema = %schema, "outbox watcher started");
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                schema,
                wakeups,
                options,
                listener,
                reads: Mutex::new(SharedReads::default()),
            }),
        })
    }

    /// The schema whose outbox this watcher serves.
    pub fn schema(&self) -> &str {
        &self.inner.schema
    }

    /// Streams the events after `after`, in commit-safe order, and then follows new events
    /// forever.
    ///
    /// Reads in batches; once caught up it waits, holding no connection, for a commit
    /// notification or a poll interval (see [`WatchOptions`]). The stream never skips an
    /// event, but an event only becomes visible once every transaction that started before
    /// its own has finished (see the [module documentation](super)). On a database error the
    /// stream yields that error and ends: resume from the last cursor received.
    pub fn watch(
        &self,
        after: Cursor,
    ) -> impl Stream<Item = Result<StoredEvent, sqlx::Error>> + Send + 'static {
        // Only reads registered after the stream opened: an earlier one may predate a commit
        // made before it opened whose notification has not arrived yet, or a change of a
        // stored event (a code emptied), which sends none.
        let first_usable = self
            .inner
            .reads
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .next_id;
        let state = WatchState {
            wakeups: self.inner.wakeups.clone(),
            inner: Arc::clone(&self.inner),
            after,
            buffer: VecDeque::new(),
            first_usable,
            done: false,
            listener_gone: false,
            caught_up: false,
        };
        futures::stream::unfold(state, WatchState::next)
    }
}

/// Serves a `WatchEvents` RPC: streams the events after `after`, converted to the service's
/// proto message by `convert`.
///
/// A database error is logged once here and sent as `UNAVAILABLE` ("event store
/// unavailable"), without internal detail; the stream ends after the first error, whether
/// from the database or from `convert`. Clients resume from the last cursor they received.
pub fn watch_response<T, F>(watcher: &OutboxWatcher, after: Cursor, convert: F) -> EventStream<T>
where
    T: Send + 'static,
    F: Fn(StoredEvent) -> Result<T, tonic::Status> + Send + 'static,
{
    let schema = watcher.schema().to_owned();
    let stream = watcher.watch(after).map(move |item| match item {
        Ok(event) => convert(event),
        Err(error) => {
            tracing::error!(schema = %schema, error = %error, "reading the outbox failed");
            Err(tonic::Status::unavailable("event store unavailable"))
        }
    });
    Box::pin(end_after_first_error(stream))
}

/// Ends `stream` right after its first error (the error itself is passed on): a watch
/// stream that failed is not resumed in place; clients open it again from their cursor.
pub fn end_after_first_error<T, S>(stream: S) -> impl Stream<Item = Result<T, tonic::Status>>
where
    S: Stream<Item = Result<T, tonic::Status>>,
{
    stream.scan(false, |failed, item| {
        let next = if *failed {
            None
        } else {
            *failed = item.is_err();
            Some(item)
        };
        futures::future::ready(next)
    })
}

/// Connects a listener on `channel`.
async fn listen(pool: &PgPool, channel: &str) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(channel).await?;
    Ok(listener)
}

/// Turns notifications on `channel` into wake-ups until the pool closes.
///
/// Every reconnection also wakes the streams, since notifications sent while the connection
/// was down are lost.
async fn run_listener(
    pool: PgPool,
    schema: String,
    channel: String,
    mut listener: PgListener,
    wakeups: watch::Sender<u64>,
) {
    let wake = || wakeups.send_modify(|count| *count = count.wrapping_add(1));
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
    loop {
        match listener.try_recv().await {
            Ok(Some(_)) => {
                // Coalesce whatever else already arrived into the same wake-up.
                while listener.next_buffered().is_some() {}
                wake();
            }
            Ok(None) => {
                tracing::warn!(schema = %schema, "outbox listener connection lost, reconnected");
                wake();
            }
            Err(sqlx::Error::PoolClosed) => break,
            Err(error) => {
                tracing::warn!(schema = %schema, error = %error, "outbox listener failed, reconnecting");
                drop(listener);
                wake();
                listener = loop {
                    let delay = backoff.next_delay();
                    tokio::time::sleep(delay).await;
                    match listen(&pool, &channel).await {
                        Ok(listener) => break listener,
                        Err(sqlx::Error::PoolClosed) => {
                            tracing::debug!(schema = %schema, "outbox listener stopped: pool closed");
                            return;
                        }
                        Err(error) => tracing::warn!(
                            schema = %schema,
                            error = %error,
                            retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                            "outbox listener reconnect failed"
                        ),
                    }
                };
                backoff.reset();
                tracing::info!(schema = %schema, "outbox listener reconnected");
                wake();
            }
        }
    }
    tracing::debug!(schema = %schema, "outbox listener stopped: pool closed");
}

impl Inner {
    /// The page of up to `limit` events after `after`, for a stream that has seen the
    /// wake-ups up to `generation` and may take reads from the id `first_usable` on: another
    /// stream's read of the same page when one was registered at that wake-up or later with
    /// such an id (ids grow: a stream never takes a read again, nor one older than its last),
    /// else a read of its own, which the other streams may take (see the module).
    /// `first_usable` becomes the id after the read used. A failed read is forgotten, so that the streams that
    /// come after it read again.
    async fn read_shared(
        &self,
        after: Cursor,
        generation: u64,
        limit: u32,
        first_usable: &mut u64,
    ) -> Result<Arc<Page>, sqlx::Error> {
        let (id, page, read_here) = {
            let mut reads = self.reads.lock().unwrap_or_else(PoisonError::into_inner);
            let usable = reads.recent.iter().find(|read| {
                read.after == after && read.generation >= generation && read.id >= *first_usable
            });
            match usable {
                Some(read) => (read.id, read.page.clone(), false),
                None => {
                    let id = reads.next_id;
                    reads.next_id += 1;
                    let pool = self.pool.clone();
                    let task = tokio::spawn(async move {
                        read_page(&pool, after, limit)
                            .await
                            .map(Arc::new)
                            .map_err(Arc::new)
                    });
                    let page = async move {
                        task.await
                            .unwrap_or_else(|failed| Err(Arc::new(read_failed(failed))))
                    }
                    .boxed()
                    .shared();
                    reads.recent.retain(|read| read.after != after);
                    reads.recent.push_back(SharedRead {
                        id,
                        after,
                        generation,
                        page: page.clone(),
                    });
                    if reads.recent.len() > SHARED_READS_KEPT {
                        reads.recent.pop_front();
                    }
                    (id, page, true)
                }
            }
        };
        if crate::metrics::enabled() {
            static DESCRIBED: std::sync::Once = std::sync::Once::new();
            DESCRIBED.call_once(|| {
                ::metrics::describe_counter!(
                    OUTBOX_PAGE_READS,
                    "Pages of events the event streams of the process read from its outbox."
                );
                ::metrics::describe_counter!(
                    OUTBOX_PAGE_READS_SHARED,
                    "Pages an event stream took from a read another stream of the process made."
                );
            });
            let counted = if read_here {
                OUTBOX_PAGE_READS
            } else {
                OUTBOX_PAGE_READS_SHARED
            };
            ::metrics::counter!(counted, "schema" => self.schema.clone()).increment(1);
        }
        *first_usable = id + 1;
        page.await.map_err(|error| {
            let mut reads = self.reads.lock().unwrap_or_else(PoisonError::into_inner);
            reads.recent.retain(|read| read.id != id);
            // The error of a read shared by several streams is passed on as its text.
            Arc::try_unwrap(error).unwrap_or_else(|shared| read_failed(shared.to_string()))
        })
    }
}

/// A read of the outbox that failed where its own error cannot be passed on (a read task
/// that panicked, or an error several streams share), as an I/O error with `cause`.
fn read_failed(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::other(cause))
}

/// State of one [`OutboxWatcher::watch`] stream.
struct WatchState {
    /// Keeps the listener alive while the stream lives.
    inner: Arc<Inner>,
    /// This stream's view of the wake-up counter.
    wakeups: watch::Receiver<u64>,
    /// Cursor of the last event yielded.
    after: Cursor,
    /// Events read but not yet yielded.
    buffer: VecDeque<StoredEvent>,
    /// The first id of a read the stream may take: none registered before it opened, nor
    /// one older than its last.
    first_usable: u64,
    /// Set after an error: the stream ends.
    done: bool,
    /// Set once the listener has stopped: no more wake-ups will come.
    listener_gone: bool,
    /// Set when the last read returned all there was to deliver (fewer events than a batch,
    /// none held back): once they are yielded, the stream waits for the next commit instead
    /// of reading an empty page first, halving the reads of a stream that keeps up.
    caught_up: bool,
}

impl WatchState {
    /// Yields the next event, reading and waiting as needed.
    async fn next(mut self) -> Option<(Result<StoredEvent, sqlx::Error>, Self)> {
        if self.done {
            return None;
        }
        loop {
            if let Some(event) = self.buffer.pop_front() {
                self.after = event.cursor;
                return Some((Ok(event), self));
            }
            let options = self.inner.options;
            if std::mem::take(&mut self.caught_up) {
                // Wake-ups were marked seen before that read: a commit since wakes this wait.
                self.wait(options.idle_poll).await;
            }
            // Mark wake-ups seen before reading: a commit after this point wakes the next wait.
            let generation = *self.wakeups.borrow_and_update();
            let batch_size = options.batch_size.max(1);
            let read = self
                .inner
                .read_shared(self.after, generation, batch_size, &mut self.first_usable)
                .await;
            match read {
                Err(error) => {
                    self.done = true;
                    return Some((Err(error), self));
                }
                Ok(page) if !page.events.is_empty() => {
                    self.caught_up = !page.held_back
                        && u32::try_from(page.events.len()).is_ok_and(|read| read < batch_size);
                    self.buffer.extend(page.events.iter().cloned());
                }
                Ok(page) => {
                    let poll = if page.held_back {
                        options.held_back_poll
                    } else {
                        options.idle_poll
                    };
                    self.wait(poll).await;
                }
            }
        }
    }

    /// Waits for a wake-up newer than the last marked seen, or `poll`.
    async fn wait(&mut self, poll: std::time::Duration) {
        if self.listener_gone {
            tokio::time::sleep(poll).await;
            return;
        }
        tokio::select! {
            changed = self.wakeups.changed() => {
                // The listener only stops when the pool closes: read once more (which
                // reports it), and from then on poll.
                self.listener_gone = changed.is_err();
            }
            () = tokio::time::sleep(poll) => {}
        }
    }
}
