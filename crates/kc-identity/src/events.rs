//! The identity events, as published on the outbox and served by `WatchEvents`.
//!
//! The outbox payload is a prost-encoded `Event` without its position fields; `decode`
//! fills in cursor, event id and time from the outbox row.

use chrono::{DateTime, Utc};
use kc_proto::identity::{self as pb, event::Payload};
use kc_runtime::outbox::{self, EncodedEvent, StoredEvent};
use sqlx::PgConnection;

use crate::domain::User;
use crate::grpc::{timestamp, user_to_proto};

/// An event ready to append.
pub type PendingEvent = EncodedEvent;

fn event(event_type: &'static str, user: &User, payload: Payload) -> PendingEvent {
    let event = pb::Event {
        user_id: user.user_id.to_string(),
        payload: Some(payload),
        ..Default::default()
    };
    EncodedEvent::new(event_type, user.user_id.to_string(), &event)
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
    event.append(conn).await.map(drop)
}

/// The published event of an outbox row.
pub fn decode(stored: StoredEvent) -> Result<pb::WatchEventsResponse, tonic::Status> {
    let (mut event, position) = outbox::decode_event::<pb::Event>(stored)?;
    event.cursor = position.cursor;
    event.event_id = position.event_id;
    event.create_time = Some(position.create_time);
    Ok(pb::WatchEventsResponse { event: Some(event) })
}
