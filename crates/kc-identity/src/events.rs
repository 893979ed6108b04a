//! The identity events, as published on the outbox and served by `WatchEvents`.
//!
//! The outbox payload is a prost-encoded `Event` without its position fields; `decode`
//! fills in cursor, event id and time from the outbox row.

use chrono::{DateTime, Utc};
use kc_proto::identity::{self as pb, event::Payload};
use kc_runtime::outbox::{self, NewEvent, StoredEvent};
use prost::Message;
use sqlx::PgConnection;

use crate::domain::User;
use crate::grpc::{timestamp, user_to_proto};

/// An event ready to append.
#[derive(Debug)]
pub struct PendingEvent {
    event_type: &'static str,
    aggregate_id: String,
    payload: Vec<u8>,
}

fn event(event_type: &'static str, user: &User, payload: Payload) -> PendingEvent {
    let event = pb::Event {
        user_id: user.user_id.to_string(),
        payload: Some(payload),
        ..Default::default()
    };
    PendingEvent {
        event_type,
        aggregate_id: user.user_id.to_string(),
        payload: event.encode_to_vec(),
    }
}

/// A user registered or was created.
pub fn registered(user: &User) -> PendingEvent {
    event(
        "user.registered",
        user,
        Payload::UserRegistered(pb::UserRegistered {
            user: Some(user_to_proto(user)),
        }),
    )
}

/// A user must verify its e-mail with `code`.
pub fn verification_requested(user: &User, code: &str, expire_time: DateTime<Utc>) -> PendingEvent {
    event(
        "user.email_verification_requested",
        user,
        Payload::EmailVerificationRequested(pb::EmailVerificationRequested {
            email: user.email.clone(),
            locale: user.locale.clone(),
            display_name: user.display_name.clone(),
            code: code.to_owned(),
            expire_time: Some(timestamp(expire_time)),
        }),
    )
}

/// A user's profile or state changed.
pub fn updated(user: &User) -> PendingEvent {
    event(
        "user.updated",
        user,
        Payload::UserUpdated(pb::UserUpdated {
            user: Some(user_to_proto(user)),
        }),
    )
}

/// A user was disabled.
pub fn disabled(user: &User) -> PendingEvent {
    event(
        "user.disabled",
        user,
        Payload::UserDisabled(pb::UserDisabled {
            user: Some(user_to_proto(user)),
        }),
    )
}

/// A user was enabled.
pub fn enabled(user: &User) -> PendingEvent {
    event(
        "user.enabled",
        user,
        Payload::UserEnabled(pb::UserEnabled {
            user: Some(user_to_proto(user)),
        }),
    )
}

/// Appends `event` in the caller's transaction.
pub async fn append(conn: &mut PgConnection, event: &PendingEvent) -> Result<(), sqlx::Error> {
    outbox::append(
        conn,
        NewEvent {
            event_type: event.event_type,
            aggregate_id: &event.aggregate_id,
            payload: &event.payload,
        },
    )
    .await?;
    Ok(())
}

/// The published event of an outbox row.
pub fn decode(stored: StoredEvent) -> Result<pb::WatchEventsResponse, tonic::Status> {
    let mut event = pb::Event::decode(stored.payload.as_slice()).map_err(|error| {
        tracing::error!(event_id = %stored.event_id, error = %error, "undecodable outbox event");
        tonic::Status::internal("internal error")
    })?;
    event.cursor = stored.cursor.to_string();
    event.event_id = stored.event_id.to_string();
    event.create_time = Some(timestamp(stored.create_time));
    Ok(pb::WatchEventsResponse { event: Some(event) })
}
