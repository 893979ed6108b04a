//! The load generator: N concurrent calls over M HTTP/2 connections, a warm-up that is
//! discarded, then a measured window.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures::future::BoxFuture;
use hdrhistogram::Histogram;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

/// One call of a scenario, made on the given channel; resolves to its outcome.
///
/// Cloned into every load task; each call gets its own clone of the channel (cheap: a handle).
pub(crate) type CallFn =
    Arc<dyn Fn(Channel) -> BoxFuture<'static, Result<(), tonic::Status>> + Send + Sync>;

/// Waits until the scenario lets one more call start: flow control (e.g. at most so many
/// e-mails waiting for delivery) or pacing (e.g. 100 calls a second, an open loop). The time
/// a call waits here is not part of its latency.
pub(crate) type AdmitFn = Arc<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>;

/// Admits calls at `rate` a second, an open loop: call `n` may start at `start + n / rate`,
/// `start` being the first admission. A call whose time has passed starts at once, so that the
/// schedule catches up and the rate does not depend on how long calls take (as long as the
/// load generator's concurrency covers the calls in flight).
pub(crate) fn paced(rate: f64) -> AdmitFn {
    let schedule: Arc<std::sync::Mutex<Option<(Instant, u64)>>> = Arc::default();
    Arc::new(move || {
        let at = {
            let mut schedule = schedule.lock().expect("the pacer's lock is never poisoned");
            let (start, next) = schedule.get_or_insert_with(|| (Instant::now(), 0));
            let at = slot(*start, *next, rate);
            *next += 1;
            at
        };
        Box::pin(tokio::time::sleep_until(at))
    })
}

/// When call `n` of a schedule at `rate` a second from `start` may start.
fn slot(start: Instant, n: u64, rate: f64) -> Instant {
    start + Duration::from_secs_f64(n as f64 / rate)
}

/// Longest a single call may take before it counts as an error.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Highest latency the histograms track, in microseconds (beyond: clamped).
const MAX_LATENCY_US: u64 = 120_000_000;

/// How load is driven.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Settings {
    /// Discarded time before the measured window.
    pub warmup: Duration,
    /// Measured window.
    pub duration: Duration,
    /// Calls in flight at once (one task each).
    pub concurrency: usize,
    /// HTTP/2 connections the tasks are spread over.
    pub connections: usize,
}

/// The measured window of one run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    /// End of the warm-up, start of the measured window.
    pub from: Instant,
    /// End of the measured window: no call starts after it.
    pub until: Instant,
}

impl Window {
    /// The window of a run starting now with `settings`.
    pub(crate) fn starting_now(settings: &Settings) -> Self {
        let from = Instant::now() + settings.warmup;
        Self {
            from,
            until: from + settings.duration,
        }
    }
}

/// The instants of a run's calls, each with what the call was about (a user id, an e-mail),
/// recorded as the calls commit and read back for the outcome of the measured window.
#[derive(Debug, Default)]
pub(crate) struct Stamps(std::sync::Mutex<Vec<(String, Instant)>>);

impl Stamps {
    /// Records the call about `key` at `at`.
    pub(crate) fn push(&self, key: String, at: Instant) {
        self.0
            .lock()
            .expect("the stamps' lock is never poisoned")
            .push((key, at));
    }

    /// The calls stamped within `window`, in the order they were recorded.
    pub(crate) fn within(&self, window: Window) -> Vec<(String, Instant)> {
        self.0
            .lock()
            .expect("the stamps' lock is never poisoned")
            .iter()
            .filter(|(_, at)| *at >= window.from && *at < window.until)
            .cloned()
            .collect()
    }
}

/// What one run measured: the calls that completed within the window.
#[derive(Debug)]
pub(crate) struct Measurement {
    /// Length of the measured window.
    pub window: Duration,
    /// Calls that succeeded.
    pub ok: u64,
    /// Calls that failed, by gRPC code name.
    pub errors: BTreeMap<String, u64>,
    /// Latency of the successful calls, in microseconds.
    pub latency: Histogram<u64>,
}

impl Measurement {
    /// Completed calls per second, failures included.
    pub(crate) fn rps(&self) -> f64 {
        let calls = self.ok + self.error_count();
        calls as f64 / self.window.as_secs_f64()
    }

    /// Failed calls.
    pub(crate) fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Latency of successful calls at `quantile` (0..=1), in milliseconds; `None` without any.
    pub(crate) fn quantile_ms(&self, quantile: f64) -> Option<f64> {
        (!self.latency.is_empty()).then(|| us_to_ms(self.latency.value_at_quantile(quantile)))
    }

    /// Highest latency of a successful call, in milliseconds; `None` without any.
    pub(crate) fn max_ms(&self) -> Option<f64> {
        (!self.latency.is_empty()).then(|| us_to_ms(self.latency.max()))
    }
}

/// What a run's calls set off beyond their answers, counted where it arrives: e.g. the e-mails
/// an SMTP sink accepted during the window, and how long each took from the call that caused
/// it.
#[derive(Debug)]
pub(crate) struct Deliveries {
    /// What is counted, plural: `e-mails`.
    pub unit: &'static str,
    /// Where it is counted: `accepted by the SMTP sink`.
    pub counted_at: &'static str,
    /// Deliveries counted.
    pub count: u64,
    /// The time they were counted over.
    pub window: Duration,
    /// Time from the call that set each delivery off to its arrival, in microseconds, when
    /// the scenario measures it.
    pub latency: Option<Histogram<u64>>,
    /// Deliveries set off within the window that had not arrived when the run stopped
    /// waiting (they are in `latency` with the time waited, a lower bound).
    pub missing: u64,
}

impl Deliveries {
    /// Deliveries per second.
    pub(crate) fn rate(&self) -> f64 {
        self.count as f64 / self.window.as_secs_f64()
    }

    /// Delivery latency at `quantile` (0..=1), in milliseconds; `None` when not measured.
    pub(crate) fn quantile_ms(&self, quantile: f64) -> Option<f64> {
        self.latency
            .as_ref()
            .filter(|latency| !latency.is_empty())
            .map(|latency| us_to_ms(latency.value_at_quantile(quantile)))
    }

    /// Highest delivery latency, in milliseconds; `None` when not measured.
    pub(crate) fn max_ms(&self) -> Option<f64> {
        self.latency
            .as_ref()
            .filter(|latency| !latency.is_empty())
            .map(|latency| us_to_ms(latency.max()))
    }
}

/// An empty latency histogram, in microseconds, with the bounds of the load generator's.
pub(crate) fn latency_histogram() -> anyhow::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).context("could not create a latency histogram")
}

fn us_to_ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// Opens `connections` channels to `url`, each over its own HTTP/2 connection.
pub(crate) async fn connect(url: &str, connections: usize) -> anyhow::Result<Vec<Channel>> {
    let endpoint = Endpoint::from_shared(url.to_owned())
        .with_context(|| format!("bad url {url}"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(CALL_TIMEOUT)
        .tcp_nodelay(true);
    let mut channels = Vec::with_capacity(connections);
    for _ in 0..connections {
        // Each `connect` dials its own connection; clones of a channel would share one.
        let channel = endpoint
            .connect()
            .await
            .with_context(|| format!("could not connect to {url}"))?;
        channels.push(channel);
    }
    Ok(channels)
}

/// Runs `concurrency` tasks, spread round-robin over `channels`, each making `call` after
/// `call` until `window.until`, each call once `admit` lets it start (when given); counts the
/// calls that complete within the window.
pub(crate) async fn drive(
    channels: &[Channel],
    call: &CallFn,
    admit: Option<&AdmitFn>,
    concurrency: usize,
    window: Window,
) -> anyhow::Result<Measurement> {
    anyhow::ensure!(!channels.is_empty(), "no connection to drive load over");
    // Dropping the set (e.g. on Ctrl-C) aborts the tasks.
    let mut tasks = JoinSet::new();
    for index in 0..concurrency {
        let channel = channels[index % channels.len()].clone();
        let call = Arc::clone(call);
        let admit = admit.map(Arc::clone);
        tasks.spawn(worker(channel, call, admit, window));
    }
    let mut total = Tally::new()?;
    while let Some(joined) = tasks.join_next().await {
        total.merge(joined.context("a load task failed")??)?;
    }
    Ok(Measurement {
        window: window.until - window.from,
        ok: total.ok,
        errors: total.errors,
        latency: total.latency,
    })
}

/// What one task counted.
struct Tally {
    ok: u64,
    errors: BTreeMap<String, u64>,
    latency: Histogram<u64>,
}

impl Tally {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            ok: 0,
            errors: BTreeMap::new(),
            latency: latency_histogram()?,
        })
    }

    fn merge(&mut self, other: Tally) -> anyhow::Result<()> {
        self.ok += other.ok;
        for (code, count) in other.errors {
            *self.errors.entry(code).or_default() += count;
        }
        self.latency
            .add(&other.latency)
            .context("could not merge latency histograms")
    }
}

/// One task: calls until the window ends; counts calls that complete inside it.
async fn worker(
    channel: Channel,
    call: CallFn,
    admit: Option<AdmitFn>,
    window: Window,
) -> anyhow::Result<Tally> {
    let mut tally = Tally::new()?;
    loop {
        if let Some(admit) = &admit {
            tokio::select! {
                () = admit() => {}
                () = tokio::time::sleep_until(window.until) => return Ok(tally),
            }
        }
        let started = Instant::now();
        if started >= window.until {
            return Ok(tally);
        }
        let outcome = call(channel.clone()).await;
        let done = Instant::now();
        if done < window.from || done >= window.until {
            continue;
        }
        match outcome {
            Ok(()) => {
                tally.ok += 1;
                let us = u64::try_from((done - started).as_micros()).unwrap_or(u64::MAX);
                tally.latency.saturating_record(us.max(1));
            }
            Err(status) => {
                *tally
                    .errors
                    .entry(format!("{:?}", status.code()))
                    .or_default() += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measurement_summarises_the_histogram() {
        let mut latency = Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).unwrap();
        for us in 1..=1000 {
            latency.record(us * 10).unwrap();
        }
        let measurement = Measurement {
            window: Duration::from_secs(2),
            ok: 1000,
            errors: BTreeMap::from([("Unavailable".to_owned(), 10)]),
            latency,
        };
        assert_eq!(measurement.error_count(), 10);
        assert!((measurement.rps() - 505.0).abs() < 1e-9);
        let p50 = measurement.quantile_ms(0.5).unwrap();
        assert!((p50 - 5.0).abs() < 0.01, "{p50}");
        let max = measurement.max_ms().unwrap();
        assert!((max - 10.0).abs() < 0.01, "{max}");
    }

    #[test]
    fn the_pace_spaces_calls_evenly() {
        let start = Instant::now();
        assert_eq!(slot(start, 0, 100.0), start);
        assert_eq!(slot(start, 1, 100.0), start + Duration::from_millis(10));
        assert_eq!(slot(start, 3000, 100.0), start + Duration::from_secs(30));
    }

    #[test]
    fn deliveries_summarise_their_latency() {
        let mut latency = latency_histogram().unwrap();
        for ms in 1..=100 {
            latency.record(ms * 1000).unwrap();
        }
        let deliveries = Deliveries {
            unit: "e-mails",
            counted_at: "accepted by the SMTP sink",
            count: 100,
            window: Duration::from_secs(4),
            latency: Some(latency),
            missing: 0,
        };
        assert!((deliveries.rate() - 25.0).abs() < 1e-9);
        let p99 = deliveries.quantile_ms(0.99).unwrap();
        assert!((p99 - 99.0).abs() < 0.1, "{p99}");
        let unmeasured = Deliveries {
            latency: None,
            ..deliveries
        };
        assert_eq!(unmeasured.quantile_ms(0.5), None);
        assert_eq!(unmeasured.max_ms(), None);
    }

    #[test]
    fn no_successful_call_means_no_latency() {
        let measurement = Measurement {
            window: Duration::from_secs(1),
            ok: 0,
            errors: BTreeMap::new(),
            latency: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).unwrap(),
        };
        assert_eq!(measurement.quantile_ms(0.99), None);
        assert_eq!(measurement.max_ms(), None);
        assert_eq!(measurement.rps(), 0.0);
    }
}
