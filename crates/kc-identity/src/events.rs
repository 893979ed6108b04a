//! The identity events, as published on the outbox and served by `WatchEvents`.
//!
//! The outbox payload is a prost-encoded `Event` without its position fields;
//! [`kc_runtime::outbox::decode_response`] fills in cursor, event id and time from the
//! outbox row. Codes travel only sealed to notification's key, and [`drop_sealed_codes`]
//! rewrites an event once its code is over.

use chrono::{DateTime, Utc};
use kc_proto::identity::{self as pb, event::Payload};
use kc_runtime::outbox::{self, Cursor, EncodedEvent, StoredEvent};
use kc_runtime::values::timestamp;
use prost::Message;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::codes::Purpose;
use crate::domain::{Revocation, User};

/// An event ready to append.
pub(crate) type PendingEvent = EncodedEvent;

/// Type of the events that carry a sealed code.
pub(crate) const VERIFICATION_REQUESTED: &str = "user.email_verification_requested";
/// Type of the events that revoke access tokens.
pub(crate) const TOKENS_REVOKED: &str = "user.tokens_revoked";

fn event(event_type: &'static str, user_id: Option<Uuid>, payload: Payload) -> PendingEvent {
    let user_id = user_id.map(|id| id.to_string()).unwrap_or_default();
    let event = pb::Event {
        user_id: user_id.clone(),
        payload: Some(payload),
        ..Default::default()
    };
    EncodedEvent::new(event_type, user_id, &event)
}

/// A user registered or was created.
pub(crate) fn registered(user: &User) -> PendingEvent {
    event(
        "user.registered",
        Some(user.user_id),
        Payload::UserRegistered(pb::UserRegistered {
            user: Some(user.into()),
        }),
    )
}

/// A code must be mailed to `email`: `sealed_code` is the code sealed to notification's key.
/// The mail greets `user` by its stored name and language, never by what a claimant typed.
pub(crate) fn verification_requested(
    user: &User,
    email: &str,
    sealed_code: Vec<u8>,
    expire_time: DateTime<Utc>,
    purpose: Purpose,
) -> PendingEvent {
    event(
        VERIFICATION_REQUESTED,
        Some(user.user_id),
        Payload::EmailVerificationRequested(pb::EmailVerificationRequested {
            email: email.to_owned(),
            locale: user.locale.clone(),
            display_name: user.display_name.clone(),
            expire_time: Some(timestamp(expire_time)),
            sealed_code,
            purpose: pb::VerificationPurpose::from(purpose) as i32,
        }),
    )
}

/// Someone tried to register an address that has a proven account (I2): the address is
/// told, in the account's name and language.
pub(crate) fn registration_taken(account: &User) -> PendingEvent {
    event(
        "user.registration_attempted",
        Some(account.user_id),
        Payload::RegistrationAttempted(pb::RegistrationAttempted {
            email: account.email.clone(),
            locale: account.locale.clone(),
            display_name: account.display_name.clone(),
            refusal: pb::RegistrationRefusal::AddressTaken as i32,
        }),
    )
}

/// Someone tried to register an address that looks like another account's (I3): the
/// address is told it cannot be used, in the language asked for; no account is involved.
pub(crate) fn registration_confusable(email: &str, locale: &str) -> PendingEvent {
    event(
        "user.registration_attempted",
        None,
        Payload::RegistrationAttempted(pb::RegistrationAttempted {
            email: email.to_owned(),
            locale: locale.to_owned(),
            display_name: String::new(),
            refusal: pb::RegistrationRefusal::AddressConfusable as i32,
        }),
    )
}

/// A user asked to change its login e-mail to `new_email`: its current address is told.
pub(crate) fn email_change_requested(user: &User, new_email: &str) -> PendingEvent {
    event(
        "user.email_change_requested",
        Some(user.user_id),
        Payload::EmailChangeRequested(pb::EmailChangeRequested {
            email: user.email.clone(),
            locale: user.locale.clone(),
            display_name: user.display_name.clone(),
            new_email: new_email.to_owned(),
        }),
    )
}

/// Access tokens were revoked (I4).
pub(crate) fn tokens_revoked(revocation: &Revocation) -> PendingEvent {
    event(
        TOKENS_REVOKED,
        Some(revocation.user_id),
        Payload::TokensRevoked(pb::TokensRevoked {
            revocation: Some(revocation.into()),
        }),
    )
}

/// The revocation a stored event carries: `None` unless it is a [`TOKENS_REVOKED`] event
/// with one; an undecodable payload is an internal error.
pub(crate) fn revocation_in(
    stored: StoredEvent,
) -> Option<Result<pb::TokenRevocation, tonic::Status>> {
    if stored.event_type != TOKENS_REVOKED {
        return None;
    }
    match outbox::decode_response::<pb::Event>(stored) {
        Ok(pb::WatchEventsResponse {
            event:
                Some(pb::Event {
                    payload:
                        Some(Payload::TokensRevoked(pb::TokensRevoked {
                            revocation: Some(revocation),
                        })),
                    ..
                }),
        }) => Some(Ok(revocation)),
        Ok(_) => None,
        Err(status) => Some(Err(status)),
    }
}

/// A user's profile or state changed.
pub(crate) fn updated(user: &User) -> PendingEvent {
    event(
        "user.updated",
        Some(user.user_id),
        Payload::UserUpdated(pb::UserUpdated {
            user: Some(user.into()),
        }),
    )
}

/// A user was disabled.
pub(crate) fn disabled(user: &User) -> PendingEvent {
    event(
        "user.disabled",
        Some(user.user_id),
        Payload::UserDisabled(pb::UserDisabled {
            user: Some(user.into()),
        }),
    )
}

/// A user was enabled.
pub(crate) fn enabled(user: &User) -> PendingEvent {
    event(
        "user.enabled",
        Some(user.user_id),
        Payload::UserEnabled(pb::UserEnabled {
            user: Some(user.into()),
        }),
    )
}

/// Appends `event` in the caller's transaction; returns its event id.
pub(crate) async fn append(
    conn: &mut PgConnection,
    event: &PendingEvent,
) -> Result<Uuid, sqlx::Error> {
    event.append(conn).await
}

/// Appends `event` in the caller's transaction; returns its cursor, the revision of the
/// write that appends it (access management awaits it, rule T8).
pub(crate) async fn append_revision(
    conn: &mut PgConnection,
    event: &PendingEvent,
) -> Result<Cursor, sqlx::Error> {
    event.append_revision(conn).await
}

/// Appends `events` in the caller's transaction, in order, in one statement; returns their
/// event ids in that order.
pub(crate) async fn append_all(
    conn: &mut PgConnection,
    events: &[PendingEvent],
) -> Result<Vec<Uuid>, sqlx::Error> {
    outbox::append_all(conn, events).await
}

/// Drops the sealed code from the outbox events `event_ids` (their code was used, replaced,
/// withdrawn or expired), so that nothing readable of it remains.
pub(crate) async fn drop_sealed_codes(
    conn: &mut PgConnection,
    event_ids: &[Uuid],
) -> Result<(), sqlx::Error> {
    for event_id in event_ids {
        outbox::rewrite_event::<pb::Event>(conn, *event_id, |event| match &mut event.payload {
            Some(Payload::EmailVerificationRequested(requested))
                if !requested.sealed_code.is_empty() =>
            {
                requested.sealed_code.clear();
                true
            }
            _ => false,
        })
        .await?;
    }
    Ok(())
}

/// The sealed code an outbox event still carries (`None` when the event is gone, is not a
/// code's, or its sealed code was dropped), locked with the event until the transaction
/// ends. Identity cannot open it: it only copies the bytes into a new mail of the same code.
pub(crate) async fn sealed_code(
    conn: &mut PgConnection,
    event_id: Uuid,
) -> Result<Option<Vec<u8>>, sqlx::Error> {
    let payload: Option<Vec<u8>> =
        sqlx::query_scalar("SELECT payload FROM outbox_events WHERE event_id = $1 FOR UPDATE")
            .bind(event_id)
            .fetch_optional(&mut *conn)
            .await?;
    let Some(Ok(event)) = payload.map(|payload| pb::Event::decode(payload.as_slice())) else {
        return Ok(None);
    };
    Ok(match event.payload {
        Some(Payload::EmailVerificationRequested(requested))
            if !requested.sealed_code.is_empty() =>
        {
            Some(requested.sealed_code)
        }
        _ => None,
    })
}

/// The cursor of the last event every reader can already see: streaming after it misses
/// nothing that commits later. Empty (the start) when there is none.
pub(crate) async fn current_cursor(conn: &mut PgConnection) -> Result<String, sqlx::Error> {
    let row: Option<(String, i64)> = sqlx::query_as(
        "SELECT txid::text, seq FROM outbox_events \
         WHERE txid < pg_snapshot_xmin(pg_current_snapshot()) \
         ORDER BY txid DESC, seq DESC LIMIT 1",
    )
    .fetch_optional(conn)
    .await?;
    Ok(match row {
        Some((txid, seq)) => {
            let txid: u64 = txid.parse().unwrap_or_default();
            format!("{txid:016x}{seq:016x}")
        }
        None => String::new(),
    })
}
