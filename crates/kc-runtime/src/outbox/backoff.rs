//! Exponential backoff with jitter for reconnect loops.

use std::time::Duration;

/// Exponential backoff with "equal jitter": each delay is drawn uniformly from the upper half
/// of the current step, and the step doubles up to a maximum.
#[derive(Clone, Debug)]
pub(crate) struct Backoff {
    /// First step.
    initial: Duration,
    /// Largest step.
    max: Duration,
    /// Step of the next delay.
    current: Duration,
}

impl Backoff {
    /// A backoff starting at `initial` and growing to `max`.
    pub(crate) fn new(initial: Duration, max: Duration) -> Self {
        let initial = initial.min(max);
        Self {
            initial,
            max,
            current: initial,
        }
    }

    /// The next delay to wait, then grows the step.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let step = self.current;
        self.current = self.current.saturating_mul(2).min(self.max);
        let half = step / 2;
        let spread = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
        // Without entropy the delay is the full step: still bounded, just not spread.
        let jitter = match getrandom::u64() {
            Ok(random) if spread > 0 => Duration::from_nanos(random % (spread + 1)),
            _ => half,
        };
        step - half + jitter
    }

    /// Starts again from the initial step, after a success.
    pub(crate) fn reset(&mut self) {
        self.current = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_within_bounds_and_resets() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        let mut step = Duration::from_millis(100);
        for _ in 0..20 {
            let delay = backoff.next_delay();
            assert!(
                delay >= step / 2 && delay <= step,
                "{delay:?} outside {step:?}"
            );
            step = (step * 2).min(Duration::from_secs(10));
        }
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(100));
    }
}
