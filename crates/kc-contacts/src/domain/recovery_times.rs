//! How long a primary recovery (C12) waits before it can be attested, and how long it stays
//! open: the registry's settings, apart from the recovery's state machine so that the
//! registry can hold them without depending on it.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// Default waiting period before an operator may attest (C12).
pub const DEFAULT_WAITING_PERIOD: Duration = Duration::from_secs(72 * 3600);
/// Default lifetime of an open request (as an access request's, A6).
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);

/// How long a recovery waits before it can be attested, and how long it stays open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryTimes {
    waiting_period: Duration,
    max_age: Duration,
}

impl Default for RecoveryTimes {
    fn default() -> Self {
        Self {
            waiting_period: DEFAULT_WAITING_PERIOD,
            max_age: DEFAULT_MAX_AGE,
        }
    }
}

impl RecoveryTimes {
    /// A waiting period longer than zero, and a lifetime longer than it (so that every
    /// request has time to be attested); the error says which is wrong.
    pub fn new(waiting_period: Duration, max_age: Duration) -> Result<Self, String> {
        if waiting_period.is_zero() {
            return Err("the waiting period must be longer than zero".into());
        }
        if max_age <= waiting_period {
            return Err("the lifetime must be longer than the waiting period".into());
        }
        chrono::Duration::from_std(max_age)
            .map_err(|_| "the lifetime is out of range".to_owned())?;
        Ok(Self {
            waiting_period,
            max_age,
        })
    }

    /// The end of the waiting period and the expiry of a request asked at `now`.
    pub fn deadlines(self, now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
        // Both fit: `new` checked the longer one.
        let waiting = chrono::Duration::from_std(self.waiting_period).unwrap_or_default();
        let max_age = chrono::Duration::from_std(self.max_age).unwrap_or_default();
        (now + waiting, now + max_age)
    }
}
