//! The notification service's events, as published on the outbox and served by
//! `WatchEvents`: a notification was delivered, or given up (DEAD).
//!
//! The outbox payload is a prost-encoded `Event` without its position fields;
//! [`kc_runtime::outbox::decode_response`] fills in cursor, event id and time from the
//! outbox row.

use kc_proto::notification::{self as pb, event::Payload};
use kc_runtime::outbox::EncodedEvent;

use crate::domain::{Notification, State};

/// The event of a notification that reached a final state: `NotificationDelivered` when
/// DELIVERED, `NotificationDead` otherwise (DEAD).
pub(crate) fn outcome(notification: &Notification) -> EncodedEvent {
    let proto = Some(pb::Notification::from(notification));
    let (event_type, payload) = match notification.state {
        State::Delivered => (
            "notification.delivered",
            Payload::NotificationDelivered(pb::NotificationDelivered {
                notification: proto,
            }),
        ),
        _ => (
            "notification.dead",
            Payload::NotificationDead(pb::NotificationDead {
                notification: proto,
            }),
        ),
    };
    let event = pb::Event {
        payload: Some(payload),
        ..Default::default()
    };
    EncodedEvent::new(event_type, notification.notification_id.to_string(), &event)
}
