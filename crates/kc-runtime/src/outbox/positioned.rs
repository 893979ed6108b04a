//! The position fields every service's event message carries (cursor, event id, time),
//! filled in from the outbox row when `WatchEvents` serves the event.

use super::{Position, StoredEvent, decode_event};

/// A service's event message, written to the outbox without its position, and the
/// `WatchEventsResponse` that carries one.
pub trait PositionedEvent: prost::Message + Default {
    /// The service's `WatchEventsResponse`.
    type Response;

    /// Sets the position fields: `cursor`, `event_id` and `create_time`.
    fn set_position(&mut self, position: Position);

    /// The response carrying this event.
    fn into_response(self) -> Self::Response;
}

/// The `WatchEvents` response of an outbox row written by
/// [`EncodedEvent::append`](super::EncodedEvent::append): its message with its position
/// filled in. An undecodable payload is logged and reported as an internal error.
pub fn decode_response<E: PositionedEvent>(
    stored: StoredEvent,
) -> Result<E::Response, tonic::Status> {
    let (mut event, position) = decode_event::<E>(stored)?;
    event.set_position(position);
    Ok(event.into_response())
}

/// Implements [`PositionedEvent`] for the `Event` of each named kc-proto package.
macro_rules! positioned_events {
    ($($package:ident),+) => {$(
        impl PositionedEvent for kc_proto::$package::Event {
            type Response = kc_proto::$package::WatchEventsResponse;

            fn set_position(&mut self, position: Position) {
                self.cursor = position.cursor;
                self.event_id = position.event_id;
                self.create_time = Some(position.create_time);
            }

            fn into_response(self) -> Self::Response {
                kc_proto::$package::WatchEventsResponse { event: Some(self) }
            }
        }
    )+};
}

positioned_events!(identity, contacts, access, notification);

#[cfg(test)]
mod tests {
    use chrono::DateTime;
    use kc_proto::contacts;
    use prost::Message;
    use uuid::Uuid;

    use super::*;
    use crate::outbox::Cursor;

    #[test]
    fn the_response_carries_the_message_with_the_rows_position() {
        let message = contacts::Event {
            actor_id: "someone".to_owned(),
            ..Default::default()
        };
        let create_time = DateTime::from_timestamp(1_700_000_000, 7).expect("a time");
        let stored = StoredEvent {
            cursor: Cursor::new(12, 34),
            event_id: Uuid::from_u128(5),
            event_type: "site.updated".to_owned(),
            aggregate_id: "site".to_owned(),
            payload: message.encode_to_vec(),
            create_time,
        };
        let response = decode_response::<contacts::Event>(stored).expect("decodable");
        let event = response.event.expect("an event");
        assert_eq!(event.actor_id, "someone");
        assert_eq!(event.cursor, Cursor::new(12, 34).to_string());
        assert_eq!(event.event_id, Uuid::from_u128(5).to_string());
        assert_eq!(
            event.create_time,
            Some(crate::values::timestamp(create_time))
        );
    }

    #[test]
    fn an_undecodable_payload_is_an_internal_error() {
        let stored = StoredEvent {
            cursor: Cursor::new(1, 1),
            event_id: Uuid::from_u128(1),
            event_type: "site.updated".to_owned(),
            aggregate_id: "site".to_owned(),
            payload: vec![0xff, 0xff, 0xff],
            create_time: DateTime::from_timestamp(0, 0).expect("a time"),
        };
        let error = decode_response::<contacts::Event>(stored).expect_err("undecodable");
        assert_eq!(error.code(), tonic::Code::Internal);
    }
}
