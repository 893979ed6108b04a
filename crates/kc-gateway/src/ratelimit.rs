//! The per-caller rate limit of the public session RPCs: a token bucket per peer IP
//! address (`--session-rate-limit`, `--session-rate-burst`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most addresses tracked at once; past it, buckets that refilled are forgotten (they
/// behave exactly like new ones), and if that is not enough every bucket is.
const MAX_TRACKED: usize = 100_000;

/// A sustained rate: `tokens` per `per`, or no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rate {
    /// No limit.
    Off,
    /// At most `tokens` calls per `per` on average.
    Limit {
        /// Calls allowed per period.
        tokens: u32,
        /// The period.
        per: Duration,
    },
}

/// Parses `20/min`, `5/s`, `100/h` (also `sec`, `second`, `m`, `minute`, `hour`), or `off`.
pub fn parse_rate(text: &str) -> Result<Rate, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("off") {
        return Ok(Rate::Off);
    }
    let bad = || format!("`{text}` is not a rate like 20/min, 5/s, 100/h or off");
    let (count, unit) = text.split_once('/').ok_or_else(bad)?;
    let tokens: u32 = count.trim().parse().map_err(|_| bad())?;
    let per = match unit.trim() {
        "s" | "sec" | "second" => Duration::from_secs(1),
        "m" | "min" | "minute" => Duration::from_secs(60),
        "h" | "hour" => Duration::from_secs(3600),
        _ => return Err(bad()),
    };
    if tokens == 0 {
        return Err(format!("`{text}`: the rate must be more than 0 (or off)"));
    }
    Ok(Rate::Limit { tokens, per })
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Token buckets by caller address.
#[derive(Debug)]
pub struct RateLimiter {
    /// Tokens added per second; `None` when there is no limit.
    refill_per_second: Option<f64>,
    /// Bucket size: the calls allowed in a burst.
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

impl RateLimiter {
    /// A limiter allowing `rate` on average and bursts of `burst` calls (at least 1).
    pub fn new(rate: Rate, burst: u32) -> Self {
        let refill_per_second = match rate {
            Rate::Off => None,
            Rate::Limit { tokens, per } => Some(f64::from(tokens) / per.as_secs_f64()),
        };
        Self {
            refill_per_second,
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token for `address` now; `Err(wait)` says how long until one is free.
    pub fn acquire(&self, address: IpAddr) -> Result<(), Duration> {
        self.acquire_at(address, Instant::now())
    }

    /// Takes a token for `address` at `now`; `Err(wait)` says how long until one is free.
    pub fn acquire_at(&self, address: IpAddr, now: Instant) -> Result<(), Duration> {
        let Some(refill) = self.refill_per_second else {
            return Ok(());
        };
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if buckets.len() >= MAX_TRACKED && !buckets.contains_key(&address) {
            let burst = self.burst;
            buckets.retain(|_, bucket| level(bucket, refill, burst, now) < burst);
            if buckets.len() >= MAX_TRACKED {
                tracing::warn!(
                    tracked = buckets.len(),
                    "session rate limiter full; forgetting every bucket"
                );
                buckets.clear();
            }
        }
        let bucket = buckets.entry(address).or_insert(Bucket {
            tokens: self.burst,
            updated: now,
        });
        bucket.tokens = level(bucket, refill, self.burst, now);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / refill))
        }
    }
}

/// The tokens in `bucket` at `now`, refilled since its last update, at most `burst`.
fn level(bucket: &Bucket, refill: f64, burst: f64, now: Instant) -> f64 {
    let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
    (bucket.tokens + elapsed * refill).min(burst)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    #[test]
    fn rates_parse() {
        assert_eq!(
            parse_rate("20/min"),
            Ok(Rate::Limit {
                tokens: 20,
                per: Duration::from_secs(60)
            })
        );
        assert_eq!(
            parse_rate(" 5/s "),
            Ok(Rate::Limit {
                tokens: 5,
                per: Duration::from_secs(1)
            })
        );
        assert_eq!(parse_rate("OFF"), Ok(Rate::Off));
        for bad in ["20", "x/min", "20/day", "0/min", "-1/s"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_burst_passes_then_the_rate_refills_one_at_a_time() {
        let limiter = RateLimiter::new(parse_rate("20/min").unwrap(), 10);
        let start = Instant::now();
        for _ in 0..10 {
            limiter.acquire_at(ip(1), start).expect("within the burst");
        }
        let wait = limiter.acquire_at(ip(1), start).expect_err("burst used up");
        assert_eq!(wait, Duration::from_secs(3));
        // Another address has its own bucket.
        limiter.acquire_at(ip(2), start).expect("other address");
        // One token every 3 seconds.
        limiter
            .acquire_at(ip(1), start + Duration::from_secs(3))
            .expect("refilled one");
        assert!(
            limiter
                .acquire_at(ip(1), start + Duration::from_secs(4))
                .is_err()
        );
        // A long pause refills the bucket, never beyond the burst.
        let later = start + Duration::from_secs(3600);
        for _ in 0..10 {
            limiter.acquire_at(ip(1), later).expect("full again");
        }
        assert!(limiter.acquire_at(ip(1), later).is_err());
    }

    #[test]
    fn off_never_limits() {
        let limiter = RateLimiter::new(Rate::Off, 1);
        let now = Instant::now();
        for _ in 0..1000 {
            limiter.acquire_at(ip(1), now).expect("no limit");
        }
    }
}
