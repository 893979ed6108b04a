//! The shape of the services' background sweeps (access management's request expiry and
//! grant starts and ends, T9; the registry's S&S reminders and lapses): each item is handled
//! in its own transaction by a function that says whether there was one, in batches of a
//! bounded size, batch after batch while they come full, every tick of an interval.
//!
//! Replicas sweep concurrently: each item's transaction locks it (or skips what another
//! transaction holds) and re-checks it under the lock, and a unique key or a state change
//! makes a second handling of the same item do nothing. A failure is logged and the sweep
//! retried at the next tick.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use tokio::time::{Interval, MissedTickBehavior};

use crate::Shutdown;

/// The ticks of a sweep: the first at once, then every `interval`; a late tick delays the
/// next ones rather than bursting to catch up.
pub fn sweep_ticks(interval: Duration) -> Interval {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticks
}

/// Waits for the next of `ticks`: `true` when it is time to sweep, `false` once `shutdown`
/// triggers (checked first, so a due tick never delays a shutdown).
pub async fn next_sweep(ticks: &mut Interval, shutdown: &Shutdown) -> bool {
    tokio::select! {
        biased;
        () = shutdown.wait() => false,
        _ = ticks.tick() => true,
    }
}

/// Runs `one` (one item of a sweep, in its own transaction: whether there was one) until it
/// finds none or `limit` are done; logs how many as `done`. Returns how many.
pub async fn one_by_one<E, F, Fut>(done: &'static str, limit: usize, mut one: F) -> Result<usize, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool, E>>,
{
    let mut count = 0;
    while count < limit && one().await? {
        count += 1;
    }
    if count > 0 {
        tracing::info!(count, "{done}");
    }
    Ok(count)
}

/// Runs `batch` (a batch of at most `limit` items: how many it found) until a batch is not
/// full, `shutdown` triggers or it fails (logged as `what`; retried at the next sweep).
pub async fn in_batches<E, F, Fut>(shutdown: &Shutdown, what: &'static str, limit: usize, batch: F)
where
    E: Display,
    F: Fn() -> Fut,
    Fut: Future<Output = Result<usize, E>>,
{
    loop {
        match batch().await {
            Ok(found) if found >= limit && !shutdown.is_triggered() => continue,
            Ok(_) => break,
            Err(error) => {
                tracing::warn!(
                    error = %error,
                    sweep = what,
                    "sweep failed; retrying at the next sweep"
                );
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    #[tokio::test]
    async fn one_by_one_stops_at_the_limit_or_when_none_is_left() {
        let left = Cell::new(5);
        let one = || {
            let found = left.get() > 0;
            if found {
                left.set(left.get() - 1);
            }
            std::future::ready(Ok::<_, String>(found))
        };
        assert_eq!(one_by_one("done", 3, one).await, Ok(3));
        assert_eq!(one_by_one("done", 3, one).await, Ok(2));
        assert_eq!(one_by_one("done", 3, one).await, Ok(0));
        let failing = || std::future::ready(Err::<bool, _>("down".to_owned()));
        assert_eq!(one_by_one("done", 3, failing).await, Err("down".to_owned()));
    }

    #[tokio::test]
    async fn batches_run_while_full_and_stop_on_failure() {
        let shutdown = Shutdown::new();
        let sizes = Cell::new(vec![3, 3, 1, 3]);
        let batch = || {
            let mut left = sizes.take();
            let size = left.remove(0);
            sizes.set(left);
            std::future::ready(Ok::<_, String>(size))
        };
        in_batches(&shutdown, "test", 3, batch).await;
        assert_eq!(
            sizes.take(),
            vec![3],
            "stopped after the batch that was not full"
        );
        let calls = Cell::new(0);
        let failing = || {
            calls.set(calls.get() + 1);
            std::future::ready(Err::<usize, _>("down".to_owned()))
        };
        in_batches(&shutdown, "test", 3, failing).await;
        assert_eq!(
            calls.get(),
            1,
            "a failure ends the sweep until the next tick"
        );
    }
}
