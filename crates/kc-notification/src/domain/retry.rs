//! When a failed delivery is tried again, and when the service gives up (N3: every notice is
//! delivered at least once, or given up visibly as DEAD).

use std::time::Duration;

use super::{Outcome, State};

/// Exponential backoff with jitter, and the attempts a notification gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Delay after the first failed attempt (before jitter).
    pub base: Duration,
    /// Largest delay (before jitter).
    pub max: Duration,
    /// Attempts of one round (a RetryNotification starts a new round).
    pub max_attempts: u32,
}

/// What becomes of a notification after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Next {
    /// Its new state: DELIVERED, FAILED or DEAD.
    pub state: State,
    /// For FAILED, how long until the next attempt.
    pub retry_in: Option<Duration>,
}

impl RetryPolicy {
    /// The delay before attempt `failed + 1`, after `failed` failed attempts of the round
    /// (from 1): `base · 2^(failed-1)` capped at `max`, scaled by `jitter` (clamped to
    /// `[0.5, 1]`, "full jitter in the upper half": replicas that failed together spread out,
    /// never retry sooner than half the step).
    pub fn delay(&self, failed: u32, jitter: f64) -> Duration {
        let exponent = failed.saturating_sub(1);
        let step = if exponent >= 31 {
            self.max
        } else {
            self.base
                .checked_mul(1_u32 << exponent)
                .unwrap_or(self.max)
                .min(self.max)
        };
        step.mul_f64(jitter.clamp(0.5, 1.0))
    }

    /// The state after attempt `attempt_in_round` (from 1) ended with `outcome`, with the
    /// jitter of [`RetryPolicy::delay`].
    ///
    /// Delivered → DELIVERED; permanent → DEAD at once; transient → FAILED with a delay, or
    /// DEAD once the round's attempts are spent. An abandoned attempt is never an outcome
    /// a worker records.
    pub fn after(&self, outcome: Outcome, attempt_in_round: u32, jitter: f64) -> Next {
        match outcome {
            Outcome::Delivered => Next {
                state: State::Delivered,
                retry_in: None,
            },
            Outcome::PermanentFailure | Outcome::Abandoned => Next {
                state: State::Dead,
                retry_in: None,
            },
            Outcome::TransientFailure if attempt_in_round >= self.max_attempts => Next {
                state: State::Dead,
                retry_in: None,
            },
            Outcome::TransientFailure => Next {
                state: State::Failed,
                retry_in: Some(self.delay(attempt_in_round, jitter)),
            },
        }
    }
}

/// A random jitter factor in `[0.5, 1]`; without entropy, 1 (still bounded, just not spread).
pub(crate) fn random_jitter() -> f64 {
    match getrandom::u64() {
        Ok(random) => 0.5 + (random >> 11) as f64 / (1_u64 << 53) as f64 / 2.0,
        Err(_) => 1.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RetryPolicy = RetryPolicy {
        base: Duration::from_secs(5),
        max: Duration::from_secs(900),
        max_attempts: 10,
    };

    #[test]
    fn doubles_up_to_the_maximum() {
        assert_eq!(POLICY.delay(1, 1.0), Duration::from_secs(5));
        assert_eq!(POLICY.delay(2, 1.0), Duration::from_secs(10));
        assert_eq!(POLICY.delay(3, 1.0), Duration::from_secs(20));
        assert_eq!(POLICY.delay(8, 1.0), Duration::from_secs(640));
        assert_eq!(POLICY.delay(9, 1.0), Duration::from_secs(900));
        assert_eq!(POLICY.delay(40, 1.0), Duration::from_secs(900));
        assert_eq!(POLICY.delay(u32::MAX, 1.0), Duration::from_secs(900));
        assert_eq!(POLICY.delay(0, 1.0), Duration::from_secs(5));
    }

    #[test]
    fn jitter_stays_in_the_upper_half() {
        for failed in 1..=12 {
            let full = POLICY.delay(failed, 1.0);
            for _ in 0..50 {
                let delay = POLICY.delay(failed, random_jitter());
                assert!(delay >= full / 2 && delay <= full, "{delay:?} vs {full:?}");
            }
            assert_eq!(POLICY.delay(failed, 0.0), full / 2);
            assert_eq!(POLICY.delay(failed, 7.0), full);
        }
        for _ in 0..1000 {
            let jitter = random_jitter();
            assert!((0.5..=1.0).contains(&jitter), "{jitter}");
        }
    }

    #[test]
    fn outcomes_decide_the_state() {
        let delivered = POLICY.after(Outcome::Delivered, 1, 1.0);
        assert_eq!(
            (delivered.state, delivered.retry_in),
            (State::Delivered, None)
        );
        // a 5xx is given up at once
        assert_eq!(
            POLICY.after(Outcome::PermanentFailure, 1, 1.0).state,
            State::Dead
        );
        let failed = POLICY.after(Outcome::TransientFailure, 1, 1.0);
        assert_eq!(failed.state, State::Failed);
        assert_eq!(failed.retry_in, Some(Duration::from_secs(5)));
        assert_eq!(
            POLICY.after(Outcome::TransientFailure, 9, 1.0).state,
            State::Failed
        );
        assert_eq!(
            POLICY.after(Outcome::TransientFailure, 10, 1.0).state,
            State::Dead
        );
        let once = RetryPolicy {
            max_attempts: 1,
            ..POLICY
        };
        assert_eq!(
            once.after(Outcome::TransientFailure, 1, 1.0).state,
            State::Dead
        );
    }
}
