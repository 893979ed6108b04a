//! The deadline of one gateway call: the caller's `grpc-timeout` (else the configured
//! default, and never more than the server's own request timeout), minus a small margin so
//! that the gateway answers before its caller gives up. Every internal call gets what is
//! left of it.

use std::time::{Duration, Instant};

/// Largest margin kept for the gateway's own work after the internal calls.
const MAX_MARGIN: Duration = Duration::from_millis(50);

/// Part of the budget kept as margin when the budget is small (1/10).
const MARGIN_DIVISOR: u32 = 10;

/// When one gateway call must be finished with its internal calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Deadline {
    /// The instant the internal calls must be done by.
    pub at: Instant,
    /// Whether the caller set it (`grpc-timeout`), rather than the gateway's default.
    pub from_caller: bool,
}

impl Deadline {
    /// The deadline of a call that started at `now` with the caller's `grpc-timeout` header
    /// value `header` (if any), the gateway's `default` and the server's `cap`.
    pub(crate) fn compute(
        now: Instant,
        header: Option<&str>,
        default: Duration,
        cap: Duration,
    ) -> Deadline {
        let caller = header.and_then(parse_grpc_timeout);
        let budget = caller.unwrap_or(default).min(cap);
        Deadline {
            at: now + budget.saturating_sub(margin(budget)),
            from_caller: caller.is_some(),
        }
    }

    /// What is left at `now`; `None` once the deadline has passed.
    pub(crate) fn remaining_at(&self, now: Instant) -> Option<Duration> {
        self.at
            .checked_duration_since(now)
            .filter(|left| !left.is_zero())
    }

    /// What is left now; `None` once the deadline has passed.
    pub(crate) fn remaining(&self) -> Option<Duration> {
        self.remaining_at(Instant::now())
    }
}

/// The margin kept out of `budget`: a tenth of it, at most `MAX_MARGIN`.
pub(crate) fn margin(budget: Duration) -> Duration {
    (budget / MARGIN_DIVISOR).min(MAX_MARGIN)
}

/// Parses a `grpc-timeout` header value (the suite's one parser, in kc-runtime).
pub(crate) use kc_runtime::grpc::parse_grpc_timeout;

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT: Duration = Duration::from_secs(5);
    const CAP: Duration = Duration::from_secs(30);

    #[test]
    fn grpc_timeout_values() {
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse_grpc_timeout("3S"), Some(Duration::from_secs(3)));
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(
            parse_grpc_timeout("99999999u"),
            Some(Duration::from_micros(99_999_999))
        );
        assert_eq!(parse_grpc_timeout("10n"), Some(Duration::from_nanos(10)));
        for bad in [
            "",
            "S",
            "5",
            "5s",
            "123456789S",
            "-5S",
            "5 S",
            "1.5S",
            "é5S",
        ] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_callers_timeout_wins_minus_a_margin() {
        let now = Instant::now();
        let deadline = Deadline::compute(now, Some("2S"), DEFAULT, CAP);
        assert!(deadline.from_caller);
        assert_eq!(deadline.at - now, Duration::from_millis(1950));
        // A short budget keeps a tenth as margin.
        let short = Deadline::compute(now, Some("100m"), DEFAULT, CAP);
        assert_eq!(short.at - now, Duration::from_millis(90));
    }

    #[test]
    fn without_a_valid_timeout_the_default_applies() {
        let now = Instant::now();
        for header in [None, Some("soon")] {
            let deadline = Deadline::compute(now, header, DEFAULT, CAP);
            assert!(!deadline.from_caller);
            assert_eq!(deadline.at - now, Duration::from_millis(4950));
        }
    }

    #[test]
    fn the_server_timeout_caps_the_budget() {
        let now = Instant::now();
        let deadline = Deadline::compute(now, Some("1H"), DEFAULT, CAP);
        assert_eq!(deadline.at - now, CAP - MAX_MARGIN);
    }

    #[test]
    fn remaining_time_runs_out() {
        let now = Instant::now();
        let deadline = Deadline::compute(now, Some("1S"), DEFAULT, CAP);
        assert_eq!(
            deadline.remaining_at(now + Duration::from_millis(450)),
            Some(Duration::from_millis(500))
        );
        assert_eq!(deadline.remaining_at(deadline.at), None);
        assert_eq!(deadline.remaining_at(deadline.at + DEFAULT), None);
        let zero = Deadline::compute(now, Some("0S"), DEFAULT, CAP);
        assert_eq!(zero.remaining_at(now), None);
    }
}
