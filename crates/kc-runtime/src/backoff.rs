//! The one exponential backoff of the suite, for every loop that retries or reconnects:
//! event consumers, the outbox and cache listeners, the revocation follower, the delivery
//! workers.

use std::future::Future;
use std::time::Duration;

/// Exponential backoff with "equal jitter": each delay is drawn uniformly from the upper half
/// of the current step, and the step doubles up to a maximum.
///
/// ```
/// # async fn example(shutdown: kc_runtime::Shutdown) {
/// use std::time::Duration;
/// use kc_runtime::backoff::Backoff;
///
/// let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
/// loop {
///     if try_once().await {
///         backoff.reset();
///         break;
///     }
///     if backoff.wait_or(shutdown.wait()).await {
///         break; // shut down while waiting
///     }
/// }
/// # }
/// # async fn try_once() -> bool { true }
/// ```
#[derive(Clone, Debug)]
pub struct Backoff {
    /// First step.
    initial: Duration,
    /// Largest step.
    max: Duration,
    /// Step of the next delay.
    current: Duration,
}

impl Backoff {
    /// A backoff starting at `initial` and growing to `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        let initial = initial.min(max);
        Self {
            initial,
            max,
            current: initial,
        }
    }

    /// The next delay to wait, then grows the step.
    pub fn next_delay(&mut self) -> Duration {
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
    pub fn reset(&mut self) {
        self.current = self.initial;
    }

    /// Waits out the [next delay](Self::next_delay), unless `stop` completes first (e.g.
    /// [`Shutdown::wait`](crate::Shutdown::wait)): `true` when it did.
    pub async fn wait_or(&mut self, stop: impl Future<Output = ()>) -> bool {
        let delay = self.next_delay();
        tokio::select! {
            biased;
            () = stop => true,
            () = tokio::time::sleep(delay) => false,
        }
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
