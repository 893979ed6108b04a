//! Delivery: the workers that send stored notifications (N3: at least once, every attempt
//! recorded).
//!
//! Each replica runs five tasks:
//! - a **listener** on the Postgres channel [`DUE_CHANNEL`], woken when notifications are
//!   created or revived (with a fallback poll every `--poll-interval`);
//! - a **dispatcher** that claims up to as many due notifications as it has free sending
//!   slots (`--send-concurrency`) in one statement, under a lease of `--lease`
//!   (`FOR UPDATE SKIP LOCKED`: replicas never claim one row together), and sends each on
//!   its own task through the transport;
//! - a **recorder** that writes the outcomes in batches: one transaction records the
//!   attempts, the new states (DELIVERED, FAILED with its next attempt time, DEAD) and the
//!   outbox events of the DELIVERED and DEAD ones; a mail carrying a one-time code (rules
//!   I1, I2) is emptied in that transaction as it becomes DELIVERED or DEAD;
//! - a **code sweeper** that, every `--code-sweep-interval`, empties the mails whose
//!   one-time code expired before that, giving up (DEAD, with its event) those not sent
//!   yet. A worker that claims a code mail whose code expired gives it up unsent;
//! - a **backlog sampler** that, while metrics are collected (`--metrics-listen`), sets
//!   [`NOTIFICATION_BACKLOG`] from a count by state every [`BACKLOG_INTERVAL`].
//!
//! Issue: secrets at rest: no code is left readable in this service's tables after it was
//! mailed, given up, or expired (identity withdraws its own sealed copy likewise).
//!
//! A lease that runs out (the worker died, or stalled past `--lease`) makes the row due
//! again: another worker takes it over and records the abandoned attempt. The e-mail keeps
//! its `Message-ID`, so a copy sent twice after a crash is recognisable.

pub(crate) mod sent;
pub(crate) mod smtp;
pub(crate) mod transport;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use sqlx::postgres::PgListener;
use sqlx::{PgConnection, PgPool};
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio::task::{JoinHandle, JoinSet};
use uuid::Uuid;

pub(crate) use transport::{Mailer, SmtpSettings, Transport, TransportSettings};

use crate::domain::retry::{RetryPolicy, random_jitter};
use crate::domain::{Notification, Outcome, State};
use crate::events;
use crate::storage::notifications::{self, Claimed, Recorded};
use crate::storage::{self, DUE_CHANNEL};
use kc_runtime::Shutdown;
use kc_runtime::backoff::Backoff;
use sent::Sent;

/// Most outcomes written in one transaction.
const RECORD_BATCH: usize = 256;

/// Most code mails the sweeper empties in one transaction.
const SWEEP_BATCH: u32 = 500;

/// Settings of the delivery workers.
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    /// Where mail goes.
    pub transport: TransportSettings,
    /// The `From`.
    pub mailer: Mailer,
    /// Backoff and attempts.
    pub retry: RetryPolicy,
    /// How long a worker holds a notification.
    pub lease: Duration,
    /// Longest time of one attempt.
    pub smtp_timeout: Duration,
    /// Most e-mails in flight.
    pub send_concurrency: u32,
    /// Fallback poll when no notification arrives.
    pub poll_interval: Duration,
    /// How often the sweeper looks for code mails whose code expired.
    pub code_sweep_interval: Duration,
}

/// What the tasks share.
#[derive(Debug)]
struct Context {
    pool: PgPool,
    transport: Transport,
    settings: DeliverySettings,
    /// This replica's lease owner id.
    owner: Uuid,
}

/// One finished attempt, on its way to the recorder.
struct Finished {
    claimed: Claimed,
    sent: Sent,
}

/// Starts the workers; they run until `shutdown`, then finish the e-mails in flight and
/// record their outcomes.
pub(crate) fn spawn(
    pool: PgPool,
    settings: DeliverySettings,
    shutdown: &Shutdown,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let transport = Transport::new(&settings.transport)?;
    let context = Arc::new(Context {
        pool,
        transport,
        owner: Uuid::new_v4(),
        settings,
    });
    tracing::info!(owner = %context.owner, "delivery workers started");
    let wake = Arc::new(Notify::new());
    let capacity = context.settings.send_concurrency as usize;
    let (finished_tx, finished_rx) = mpsc::channel(capacity * 4);
    Ok(vec![
        tokio::spawn(listen(
            context.pool.clone(),
            Arc::clone(&wake),
            shutdown.clone(),
        )),
        tokio::spawn(dispatch(
            Arc::clone(&context),
            wake,
            finished_tx,
            shutdown.clone(),
        )),
        tokio::spawn(sweep_codes(
            context.pool.clone(),
            context.settings.code_sweep_interval,
            shutdown.clone(),
        )),
        tokio::spawn(sample_backlog(context.pool.clone(), shutdown.clone())),
        tokio::spawn(record_outcomes(context, finished_rx)),
    ])
}

/// Wakes the dispatcher on every notification of [`DUE_CHANNEL`] (and after reconnecting,
/// since notifications sent meanwhile were lost), until `shutdown`.
async fn listen(pool: PgPool, wake: Arc<Notify>, shutdown: Shutdown) {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
    loop {
        let connected = tokio::select! {
            () = shutdown.wait() => return,
            connected = connect_listener(&pool) => connected,
        };
        let mut listener = match connected {
            Ok(listener) => {
                backoff.reset();
                wake.notify_one();
                listener
            }
            Err(sqlx::Error::PoolClosed) => return,
            Err(error) => {
                tracing::warn!(error = %error, "delivery listener cannot connect; polling meanwhile");
                if backoff.wait_or(shutdown.wait()).await {
                    return;
                }
                continue;
            }
        };
        loop {
            let received = tokio::select! {
                () = shutdown.wait() => return,
                received = listener.try_recv() => received,
            };
            match received {
                Ok(Some(_)) => {
                    while listener.next_buffered().is_some() {}
                    wake.notify_one();
                }
                // The connection was lost and re-established by sqlx.
                Ok(None) => wake.notify_one(),
                Err(sqlx::Error::PoolClosed) => return,
                Err(error) => {
                    tracing::warn!(error = %error, "delivery listener failed, reconnecting");
                    wake.notify_one();
                    break;
                }
            }
        }
    }
}

async fn connect_listener(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(DUE_CHANNEL).await?;
    Ok(listener)
}

/// Claims due notifications while sending slots are free, and sends each on its own task.
async fn dispatch(
    context: Arc<Context>,
    wake: Arc<Notify>,
    finished: mpsc::Sender<Finished>,
    shutdown: Shutdown,
) {
    let capacity = context.settings.send_concurrency as usize;
    // Claim in batches: wait for a quarter of the slots before claiming again, so that a
    // busy worker makes one claim per many e-mails rather than one per e-mail.
    let low_water = (capacity / 4).max(1);
    let slots = Arc::new(Semaphore::new(capacity));
    let freed = Arc::new(Notify::new());
    let mut sending = JoinSet::new();
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        while sending.try_join_next().is_some() {}
        let free = slots.available_permits();
        if free < low_water {
            tokio::select! {
                () = shutdown.wait() => break,
                () = freed.notified() => continue,
            }
        }
        let Ok(mut permits) = Arc::clone(&slots).acquire_many_owned(free as u32).await else {
            break;
        };
        let claimed = tokio::select! {
            () = shutdown.wait() => break,
            claimed = notifications::claim(
                &context.pool,
                context.owner,
                context.settings.lease,
                free as u32,
            ) => claimed,
        };
        let claimed = match claimed {
            Ok(claimed) => {
                backoff.reset();
                claimed
            }
            Err(error) => {
                drop(permits);
                tracing::warn!(error = %error, "claiming due notifications failed");
                if backoff.wait_or(shutdown.wait()).await {
                    break;
                }
                continue;
            }
        };
        let full = claimed.len() == free;
        for row in claimed {
            let Some(permit) = permits.split(1) else {
                break;
            };
            let context = Arc::clone(&context);
            let finished = finished.clone();
            let freed = Arc::clone(&freed);
            sending.spawn(async move {
                let sent = send_one(&context, &row).await;
                drop(permit);
                freed.notify_one();
                // The recorder only stops once every sender is gone.
                let _ = finished.send(Finished { claimed: row, sent }).await;
            });
        }
        drop(permits);
        if full {
            continue;
        }
        tokio::select! {
            () = shutdown.wait() => break,
            () = wake.notified() => {}
            () = tokio::time::sleep(context.settings.poll_interval) => {}
        }
    }
    // Finish the e-mails in flight (each bounded by --smtp-timeout) so their outcomes are
    // recorded; the recorder stops once they are.
    while sending.join_next().await.is_some() {}
    context.transport.shutdown().await;
    tracing::info!(owner = %context.owner, "delivery dispatcher stopped");
}

/// Sends one claimed notification. Past the round's last attempt it gives up unsent: only a
/// takeover gets there (abandoned attempts count in the round), so a notification whose
/// workers keep stopping while they send it goes DEAD instead of round forever.
async fn send_one(context: &Context, claimed: &Claimed) -> Sent {
    let max_attempts = context.settings.retry.max_attempts;
    if u32::try_from(claimed.attempt_in_round).is_ok_and(|attempt| attempt > max_attempts) {
        return Sent::permanent(
            0,
            format!(
                "not sent: the {max_attempts} attempts of this round ran out, the last abandoned by a worker that stopped"
            ),
        );
    }
    if claimed.code_expired {
        // Issue: secrets at rest. The code cannot be used any more: the mail is given up
        // and its record empties it.
        return Sent::permanent(0, notifications::CODE_EXPIRED_DETAIL.to_owned());
    }
    let message = match context.settings.mailer.message(claimed) {
        Ok(message) => message,
        Err(reason) => return Sent::permanent(0, reason),
    };
    context.transport.send(&message, claimed).await
}

/// The record of one finished attempt, with the state it leads to.
fn recorded(retry: &RetryPolicy, finished: &Finished) -> Recorded {
    let attempt_in_round = u32::try_from(finished.claimed.attempt_in_round.max(1)).unwrap_or(1);
    let next = retry.after(finished.sent.outcome, attempt_in_round, random_jitter());
    Recorded {
        notification_id: finished.claimed.notification_id,
        attempt: finished.claimed.attempt,
        attempt_time: finished.claimed.attempt_time,
        outcome: finished.sent.outcome,
        smtp_code: finished.sent.smtp_code,
        detail: finished.sent.detail.chars().take(1000).collect(),
        state: next.state,
        retry_in: next.retry_in,
    }
}

/// Counter of recorded delivery attempts, by `result`: `delivered`, `retry` (failed, to be
/// tried again), `dead` (given up: the notification is DEAD) or `dropped` (recorded by
/// another worker that took the lease over).
pub(crate) const DELIVERY_ATTEMPTS: &str = "keycontacts_notification_delivery_attempts_total";

/// Gauge of the notifications in each state of [`notifications::BACKLOG_STATES`], by
/// `state`: `pending`, `sending`, `failed` (waiting for its retry) and `dead` (given up).
pub(crate) const NOTIFICATION_BACKLOG: &str = "keycontacts_notification_backlog";

/// How often the backlog sampler counts the notifications by state.
pub(crate) const BACKLOG_INTERVAL: Duration = Duration::from_secs(15);

/// The `state` label of a state of the backlog.
fn backlog_label(state: State) -> &'static str {
    match state {
        State::Pending => "pending",
        State::Sending => "sending",
        State::Delivered => "delivered",
        State::Failed => "failed",
        State::Dead => "dead",
    }
}

/// Sets [`NOTIFICATION_BACKLOG`] every [`BACKLOG_INTERVAL`] until `shutdown`; counts
/// nothing while no metrics are collected.
async fn sample_backlog(pool: PgPool, shutdown: Shutdown) {
    metrics::describe_gauge!(
        NOTIFICATION_BACKLOG,
        "Notifications by state: pending, sending, failed (waiting for a retry) and dead."
    );
    let mut interval = tokio::time::interval(BACKLOG_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.wait() => return,
            _ = interval.tick() => {}
        }
        if !kc_runtime::metrics::enabled() {
            continue;
        }
        let counted = tokio::select! {
            () = shutdown.wait() => return,
            counted = notifications::backlog(&pool) => counted,
        };
        match counted {
            Ok(counts) => {
                for (state, count) in counts {
                    metrics::gauge!(NOTIFICATION_BACKLOG, "state" => backlog_label(state))
                        .set(count as f64);
                }
            }
            Err(sqlx::Error::PoolClosed) => return,
            Err(error) => {
                tracing::warn!(error = %error, "counting the notification backlog failed");
            }
        }
    }
}

/// Records finished attempts in batches until every sender is gone.
async fn record_outcomes(context: Arc<Context>, mut finished: mpsc::Receiver<Finished>) {
    let mut batch = Vec::with_capacity(RECORD_BATCH);
    while finished.recv_many(&mut batch, RECORD_BATCH).await > 0 {
        let outcomes: Vec<Recorded> = batch
            .iter()
            .map(|f| recorded(&context.settings.retry, f))
            .collect();
        batch.clear();
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        loop {
            match write(&context, &outcomes).await {
                Ok(()) => break,
                Err(error) => {
                    // Past the lease the rows are another worker's: its record wins.
                    let oldest = outcomes.iter().map(|o| o.attempt_time).min();
                    let lease = chrono::Duration::from_std(context.settings.lease)
                        .unwrap_or(chrono::Duration::MAX);
                    if oldest.is_some_and(|time| Utc::now() > time + lease) {
                        tracing::error!(
                            error = format!("{error:#}"),
                            outcomes = outcomes.len(),
                            "recording delivery outcomes failed past the lease; left to the takeover"
                        );
                        break;
                    }
                    tracing::warn!(
                        error = format!("{error:#}"),
                        "recording delivery outcomes failed; retrying"
                    );
                    tokio::time::sleep(backoff.next_delay()).await;
                }
            }
        }
    }
    tracing::debug!(owner = %context.owner, "delivery recorder stopped");
}

/// One transaction: the attempts, the states, and the events of the final states.
async fn write(context: &Context, outcomes: &[Recorded]) -> anyhow::Result<()> {
    let mut tx = context.pool.begin().await?;
    let kept: HashSet<Uuid> = notifications::record(&mut tx, context.owner, outcomes)
        .await?
        .into_iter()
        .collect();
    let final_ids: Vec<Uuid> = outcomes
        .iter()
        .filter(|o| matches!(o.state, State::Delivered | State::Dead))
        .filter(|o| kept.contains(&o.notification_id))
        .map(|o| o.notification_id)
        .collect();
    publish_outcomes(&mut tx, &final_ids).await?;
    tx.commit().await?;
    for outcome in outcomes {
        let lost = !kept.contains(&outcome.notification_id);
        let result = match (outcome.outcome, outcome.state) {
            _ if lost => "dropped",
            (Outcome::Delivered, _) => "delivered",
            (_, State::Dead) => "dead",
            _ => "retry",
        };
        metrics::counter!(DELIVERY_ATTEMPTS, "result" => result).increment(1);
        match (outcome.outcome, outcome.state) {
            _ if lost => tracing::warn!(
                notification_id = %outcome.notification_id,
                attempt = outcome.attempt,
                "delivery outcome dropped: the lease was taken over"
            ),
            (Outcome::Delivered, _) => tracing::debug!(
                notification_id = %outcome.notification_id,
                attempt = outcome.attempt,
                smtp_code = outcome.smtp_code,
                "notification delivered"
            ),
            (_, State::Dead) => tracing::warn!(
                notification_id = %outcome.notification_id,
                attempt = outcome.attempt,
                smtp_code = outcome.smtp_code,
                outcome = outcome.outcome.number(),
                "notification given up (DEAD)"
            ),
            _ => tracing::info!(
                notification_id = %outcome.notification_id,
                attempt = outcome.attempt,
                smtp_code = outcome.smtp_code,
                retry_in_ms = outcome.retry_in.map_or(0, |d| d.as_millis() as u64),
                "delivery failed; will retry"
            ),
        }
    }
    Ok(())
}

/// Empties, every `interval` until `shutdown`, the code mails whose code expired (issue:
/// secrets at rest), a batch per transaction, at once again while batches come full.
async fn sweep_codes(pool: PgPool, interval: Duration, shutdown: Shutdown) {
    loop {
        let swept = tokio::select! {
            () = shutdown.wait() => return,
            swept = sweep_expired_codes(&pool) => swept,
        };
        match swept {
            Ok(count) if count >= SWEEP_BATCH as usize => continue,
            Ok(_) => {}
            Err(error) => {
                if matches!(
                    error.downcast_ref::<sqlx::Error>(),
                    Some(sqlx::Error::PoolClosed)
                ) {
                    return;
                }
                tracing::warn!(
                    error = format!("{error:#}"),
                    "sweeping expired codes failed; retrying at the next sweep"
                );
            }
        }
        tokio::select! {
            () = shutdown.wait() => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}

/// Appends, in the caller's transaction and in one statement, the event of each of the
/// notifications `ids` that reached a final state (DELIVERED or DEAD); returns them.
async fn publish_outcomes(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> Result<Vec<Notification>, sqlx::Error> {
    let finals = storage::notifications::get_many(&mut *conn, ids).await?;
    let outcomes: Vec<_> = finals.iter().map(events::outcome).collect();
    kc_runtime::outbox::append_all(conn, &outcomes).await?;
    Ok(finals)
}

/// One transaction of the sweep: empties up to a batch of code mails whose code expired,
/// and publishes the `NotificationDead` event of those it gave up unsent. Returns how many
/// it emptied.
pub(crate) async fn sweep_expired_codes(pool: &PgPool) -> anyhow::Result<usize> {
    let mut tx = pool.begin().await?;
    let redacted = notifications::redact_expired(&mut tx, SWEEP_BATCH).await?;
    let given_up: Vec<Uuid> = redacted
        .iter()
        .filter(|r| r.given_up)
        .map(|r| r.notification_id)
        .collect();
    let dead = publish_outcomes(&mut tx, &given_up).await?;
    tx.commit().await?;
    for notification in &dead {
        tracing::info!(
            notification_id = %notification.notification_id,
            kind = notification.kind.number(),
            "code mail given up unsent: its code expired (DEAD, emptied)"
        );
    }
    if !redacted.is_empty() {
        tracing::debug!(
            emptied = redacted.len(),
            given_up = dead.len(),
            "code mails emptied after their code expired"
        );
    }
    Ok(redacted.len())
}
