//! How far a [`Consumer`](super::Consumer) is behind its stream, as Prometheus metrics:
//!
//! - `keycontacts_outbox_consumer_lag_seconds{consumer,stream}` (gauge): now minus the
//!   `create_time` of the last event the consumer applied; 0 while it is caught up (its
//!   stream is open and has had nothing more to give for [`IDLE_AFTER`]). While the stream
//!   is down or an event keeps failing, it grows from the later of the last applied event's
//!   time and the last moment the consumer was caught up. Set at each applied event and
//!   every [`SAMPLE_INTERVAL`]; absent until the consumer applied an event or caught up once.
//! - `keycontacts_outbox_consumer_events_applied_total{consumer}` (counter): events applied
//!   and committed with their cursor.
//!
//! "Caught up" is as far as the stream can tell: events held back behind a long-running
//! transaction (see the module documentation of [`outbox`](super)) are not visible to it.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use kc_proto::{access, contacts, identity, notification};

use super::StoredEvent;

/// Gauge: seconds between now and the creation of the last event a consumer applied.
pub const CONSUMER_LAG_SECONDS: &str = "keycontacts_outbox_consumer_lag_seconds";
/// Counter: events a consumer applied (committed with its cursor).
pub const CONSUMER_EVENTS_APPLIED: &str = "keycontacts_outbox_consumer_events_applied_total";

/// How often the lag gauge is refreshed between events.
pub(crate) const SAMPLE_INTERVAL: Duration = Duration::from_secs(5);

/// How long an open stream must stay silent before the consumer counts as caught up.
pub(crate) const IDLE_AFTER: Duration = Duration::from_secs(1);

/// An event of a stream a [`Consumer`](super::Consumer) follows, with the time it was
/// written, for the lag metric.
pub trait EventTime {
    /// When the event was written to its outbox; `None` when it does not say.
    fn create_time(&self) -> Option<DateTime<Utc>>;
}

impl EventTime for StoredEvent {
    fn create_time(&self) -> Option<DateTime<Utc>> {
        Some(self.create_time)
    }
}

/// The time of a proto timestamp, `None` when absent or out of range.
fn proto_time(timestamp: Option<&prost_types::Timestamp>) -> Option<DateTime<Utc>> {
    let timestamp = timestamp?;
    DateTime::from_timestamp(timestamp.seconds, u32::try_from(timestamp.nanos).ok()?)
}

impl EventTime for identity::Event {
    fn create_time(&self) -> Option<DateTime<Utc>> {
        proto_time(self.create_time.as_ref())
    }
}

impl EventTime for contacts::Event {
    fn create_time(&self) -> Option<DateTime<Utc>> {
        proto_time(self.create_time.as_ref())
    }
}

impl EventTime for access::Event {
    fn create_time(&self) -> Option<DateTime<Utc>> {
        proto_time(self.create_time.as_ref())
    }
}

impl EventTime for notification::Event {
    fn create_time(&self) -> Option<DateTime<Utc>> {
        proto_time(self.create_time.as_ref())
    }
}

/// The `stream` label of a consumer: its name after the first `.` (`access.identity` follows
/// `identity`), or the whole name when it has none.
pub fn stream_label(consumer: &str) -> &str {
    consumer
        .split_once('.')
        .map_or(consumer, |(_, stream)| stream)
        .trim()
}

/// Where a consumer stands, shared by its loop and its sampler.
#[derive(Debug, Default)]
struct State {
    /// The consumer is known to be current up to this time: the creation of the last event
    /// it applied, or the last moment it was caught up.
    current_until: Option<DateTime<Utc>>,
    /// Since when the open stream has been silent with nothing applied pending; `None`
    /// while an event is on its way or the stream is down.
    silent_since: Option<Instant>,
}

/// The lag metrics of one consumer.
#[derive(Debug)]
pub(crate) struct Lag {
    lag: ::metrics::Gauge,
    applied: ::metrics::Counter,
    state: Mutex<State>,
}

impl Lag {
    /// The metrics of the consumer `consumer` (no-ops without a recorder).
    pub(crate) fn new(consumer: &str) -> Self {
        ::metrics::describe_gauge!(
            CONSUMER_LAG_SECONDS,
            ::metrics::Unit::Seconds,
            "Now minus the creation time of the last event the consumer applied; 0 while it is caught up."
        );
        ::metrics::describe_counter!(
            CONSUMER_EVENTS_APPLIED,
            "Events the consumer applied and committed with its cursor."
        );
        let stream = stream_label(consumer).to_owned();
        Self {
            lag: ::metrics::gauge!(
                CONSUMER_LAG_SECONDS,
                "consumer" => consumer.to_owned(),
                "stream" => stream,
            ),
            applied: ::metrics::counter!(CONSUMER_EVENTS_APPLIED, "consumer" => consumer.to_owned()),
            state: Mutex::new(State::default()),
        }
    }

    fn with_state<T>(&self, change: impl FnOnce(&mut State) -> T) -> T {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        change(&mut state)
    }

    /// The stream opened, or gave an event and it was dealt with: it is silent from now.
    pub(crate) fn listening(&self) {
        self.with_state(|state| state.silent_since = Some(Instant::now()));
    }

    /// An event arrived: the consumer is busy until it is applied.
    pub(crate) fn received(&self) {
        self.with_state(|state| {
            if Self::caught_up(state) {
                state.current_until = Some(Utc::now());
            }
            state.silent_since = None;
        });
    }

    /// The stream went down (ended, failed, or the consumer stopped following it).
    pub(crate) fn disconnected(&self) {
        self.with_state(|state| {
            if Self::caught_up(state) {
                state.current_until = Some(Utc::now());
            }
            state.silent_since = None;
        });
        self.sample();
    }

    /// An event written at `created` was applied and committed.
    pub(crate) fn applied(&self, created: Option<DateTime<Utc>>) {
        self.applied.increment(1);
        self.with_state(|state| {
            if let Some(created) = created {
                state.current_until = Some(created);
            }
        });
        self.listening();
        self.sample();
    }

    /// Sets the gauge to what the consumer's state says now.
    pub(crate) fn sample(&self) {
        let lag = self.with_state(|state| {
            if Self::caught_up(state) {
                state.current_until = Some(Utc::now());
                return Some(0.0);
            }
            let behind = Utc::now().signed_duration_since(state.current_until?);
            Some(behind.to_std().unwrap_or_default().as_secs_f64())
        });
        if let Some(lag) = lag {
            self.lag.set(lag);
        }
    }

    /// Whether the stream has been open and silent for [`IDLE_AFTER`].
    fn caught_up(state: &State) -> bool {
        state
            .silent_since
            .is_some_and(|since| since.elapsed() >= IDLE_AFTER)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_label_is_the_name_after_the_service() {
        assert_eq!(stream_label("access.identity"), "identity");
        assert_eq!(stream_label("notification.contacts"), "contacts");
        assert_eq!(stream_label("plain"), "plain");
    }

    #[test]
    fn proto_times_convert_and_reject_nonsense() {
        let time = proto_time(Some(&prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 5,
        }))
        .expect("valid time");
        assert_eq!(time.timestamp(), 1_700_000_000);
        assert_eq!(time.timestamp_subsec_nanos(), 5);
        assert_eq!(proto_time(None), None);
        assert_eq!(
            proto_time(Some(&prost_types::Timestamp {
                seconds: 0,
                nanos: -1
            })),
            None
        );
    }
}
