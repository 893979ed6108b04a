//! The projections the compliance report reads besides the registry's own tables (see
//! [`crate::domain::compliance`]), each followed by a [`Consumer`] with this service's own
//! account ([`ServiceToken`]), its cursor stored with its effects in one transaction:
//!
//! - [`IDENTITY_CONSUMER`] follows `IdentityService/WatchEvents` into `user_states`: every
//!   event that carries a user (registered, updated, disabled, enabled) upserts its state,
//!   login e-mail and display name. A primary contact disabled (I4) or invited and unproven
//!   (I1) is a gap; a page of a site's people shows the names and states without asking
//!   identity (`ListSiteContacts` with `with_people`).
//! - [`NOTIFICATION_CONSUMER`] follows `NotificationService/WatchEvents` into
//!   `failing_addresses`: a notification given up (DEAD) whose last attempt got a permanent
//!   5xx reply marks its address failing; a notification delivered to an address clears it.
//!   A contact whose notices go to a failing address is a gap.
//!
//! Both apply idempotently (upserts and deletes keyed by user or address), so an event
//! applied twice changes nothing; events of a newer source are skipped. Each table has no
//! other writer and takes no other lock, so both apply the events their stream has already
//! delivered in one transaction ([`Consumer::with_batch`]), in one statement each: the users'
//! states of a transaction are upserted together, and the addresses its deliveries clear are
//! cleared together ([`Consumer::run_batches`]).

use anyhow::Context;
use chrono::{DateTime, Utc};
use kc_proto::identity::identity_service_client::IdentityServiceClient;
use kc_proto::identity::{self as identity_pb};
use kc_proto::notification::notification_service_client::NotificationServiceClient;
use kc_proto::notification::{self as notification_pb};
use kc_runtime::Shutdown;
use kc_runtime::client::ServiceToken;
use kc_runtime::outbox::{Consumer, MAX_BATCH, identity_event_user, watch_source};
use sqlx::{PgConnection, PgPool};
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use uuid::Uuid;

use crate::storage::compliance;

/// Name (and cursor key) of the consumer of identity's stream.
pub const IDENTITY_CONSUMER: &str = "contacts.identity";
/// Name (and cursor key) of the consumer of notification's stream.
pub const NOTIFICATION_CONSUMER: &str = "contacts.notification";

/// Starts the consumer of identity's stream, and of notification's when `notification` is
/// given; they run until `shutdown` triggers.
pub fn spawn(
    pool: &PgPool,
    token: &ServiceToken,
    identity: Channel,
    notification: Option<Channel>,
    shutdown: &Shutdown,
) -> Vec<JoinHandle<()>> {
    let mut tasks = vec![tokio::spawn(
        // The events that carry no user (mails, revocations) are passed over without a
        // transaction; nobody awaits this consumer's cursor.
        Consumer::new(pool.clone(), IDENTITY_CONSUMER)
            .with_batch(MAX_BATCH)
            .run_batches(
                watch_source(IdentityServiceClient::new(identity), token.clone()),
                |event: &identity_pb::Event| identity_event_user(event).is_some(),
                |conn, events: Vec<identity_pb::Event>| {
                    Box::pin(async move { apply_identity_events(conn, &events).await })
                },
                shutdown.wait_owned(),
            ),
    )];
    if let Some(notification) = notification {
        tasks.push(tokio::spawn(
            Consumer::new(pool.clone(), NOTIFICATION_CONSUMER)
                .with_batch(MAX_BATCH)
                .run_batches(
                    watch_source(NotificationServiceClient::new(notification), token.clone()),
                    |_: &notification_pb::Event| true,
                    |conn, events: Vec<notification_pb::Event>| {
                        Box::pin(async move { apply_notification_events(conn, &events).await })
                    },
                    shutdown.wait_owned(),
                ),
        ));
    }
    tasks
}

/// Applies identity events to `user_states`, in one statement: for each user the last of
/// its events wins, as applying them one by one in order would leave it.
pub async fn apply_identity_events(
    conn: &mut PgConnection,
    events: &[identity_pb::Event],
) -> anyhow::Result<()> {
    let mut states: Vec<compliance::UserState> = Vec::with_capacity(events.len());
    for event in events {
        let Some(user) = identity_event_user(event) else {
            continue;
        };
        let state = match identity_pb::UserState::try_from(user.state) {
            Ok(
                state @ (identity_pb::UserState::Active
                | identity_pb::UserState::Invited
                | identity_pb::UserState::Disabled),
            ) => state as i16,
            _ => {
                tracing::warn!(
                    user_id = %user.user_id,
                    state = user.state,
                    "identity event with an unknown user state; skipped"
                );
                continue;
            }
        };
        let user_id = Uuid::parse_str(&user.user_id)
            .with_context(|| format!("user id `{}` is not a UUID", user.user_id))?;
        states.retain(|earlier| earlier.user_id != user_id);
        states.push(compliance::UserState {
            user_id,
            email: user.email.trim().to_lowercase(),
            display_name: user.display_name.clone(),
            state,
        });
    }
    compliance::upsert_user_states(conn, &states).await?;
    Ok(())
}

/// The permanent (5xx) reply code of a dead notification's last attempt, if it got one.
fn permanent_reply(notification: &notification_pb::Notification) -> Option<i32> {
    let last = notification.attempts.last()?;
    (last.outcome == notification_pb::AttemptOutcome::PermanentFailure as i32
        && (500..600).contains(&last.smtp_code))
    .then_some(last.smtp_code)
}

/// Applies notification events to `failing_addresses`, in order: the addresses delivered to
/// in a row are cleared in one statement, before the next address that failed is marked.
pub async fn apply_notification_events(
    conn: &mut PgConnection,
    events: &[notification_pb::Event],
) -> anyhow::Result<()> {
    use notification_pb::event::Payload;
    let mut delivered: Vec<String> = Vec::new();
    for event in events {
        match &event.payload {
            Some(Payload::NotificationDelivered(delivered_event)) => {
                let notification = delivered_event
                    .notification
                    .as_ref()
                    .context("NotificationDelivered without its notification")?;
                delivered.push(notification.email.clone());
            }
            Some(Payload::NotificationDead(dead)) => {
                let notification = dead
                    .notification
                    .as_ref()
                    .context("NotificationDead without its notification")?;
                // Given up for other reasons (attempts used up on transient failures) says
                // nothing certain of the address.
                let Some(smtp_code) = permanent_reply(notification) else {
                    continue;
                };
                let notification_id =
                    Uuid::parse_str(&notification.notification_id).with_context(|| {
                        format!(
                            "notification id `{}` is not a UUID",
                            notification.notification_id
                        )
                    })?;
                let fail_time = event
                    .create_time
                    .and_then(|time| {
                        DateTime::<Utc>::from_timestamp(time.seconds, time.nanos.max(0) as u32)
                    })
                    .unwrap_or_else(Utc::now);
                // A delivery before the failure must not clear it.
                compliance::addresses_delivered(conn, &std::mem::take(&mut delivered)).await?;
                compliance::address_failed(
                    conn,
                    &notification.email,
                    notification_id,
                    smtp_code,
                    fail_time,
                )
                .await?;
            }
            // Payloads of a newer notification.
            None => {}
        }
    }
    compliance::addresses_delivered(conn, &delivered).await?;
    Ok(())
}
