//! Checks shared by the services' test suites: waiting for what happens asynchronously
//! (projections, deliveries), and whether an error message cites a rule of DOMAIN.md.

use std::future::Future;
use std::time::Duration;

/// Longest [`eventually`] waits: generous, only reached when the test fails.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Pause between two attempts of [`eventually`].
const POLL: Duration = Duration::from_millis(20);

/// Polls `attempt` until it returns `Ok`, failing the test after [`PATIENCE`] with the last
/// `Err` it returned (what was observed instead).
pub async fn eventually<T, F, Fut>(what: &str, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match attempt().await {
            Ok(value) => return value,
            Err(last) => assert!(
                tokio::time::Instant::now() < deadline,
                "timed out after {PATIENCE:?} waiting until {what}; last seen: {last}"
            ),
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Whether `text` cites `rule` as `rule T4` or `T4:` or `(T4)`.
pub fn cites(text: &str, rule: &str) -> bool {
    text.contains(&format!("rule {rule}"))
        || text.contains(&format!("{rule}:"))
        || text.contains(&format!("({rule})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn citations_take_three_forms() {
        assert!(cites(
            "rule C6: a site may have at most 4 secondary contacts",
            "C6"
        ));
        assert!(cites("C5: the STC is required", "C5"));
        assert!(cites("denied (T4)", "T4"));
        assert!(!cites("rule C60 is not C6", "C5"));
    }

    #[tokio::test]
    async fn eventually_returns_the_first_success() {
        let mut tries = 0;
        let value = eventually("the third try", || {
            tries += 1;
            let now = tries;
            async move {
                if now < 3 {
                    Err(format!("try {now}"))
                } else {
                    Ok(now)
                }
            }
        })
        .await;
        assert_eq!(value, 3);
    }
}
