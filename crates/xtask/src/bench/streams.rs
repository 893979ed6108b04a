//! Waiting for a service to apply the event streams it follows, so that catching up does not
//! take CPU from a measurement.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sqlx::Connection;

use super::scenarios::Env;

/// Longest a consumer may take to catch up with the streams it follows.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(600);

/// Waits until the consumers of service `consumer` have applied every event published so far
/// on the streams they follow: `streams` holds each publishing service (short name) and the
/// name under which `consumer` stores its cursor of that stream (`access.contacts`). Returns a
/// note when there was something to wait for.
pub async fn wait_until_applied(
    env: &Env,
    consumer: &str,
    streams: &[(&str, &str)],
) -> anyhow::Result<Option<String>> {
    let started = Instant::now();
    let mut reported = started;
    let mut waited = false;
    let publishers: Vec<&str> = streams.iter().map(|(publisher, _)| *publisher).collect();
    loop {
        let mut behind = Vec::new();
        for (publisher, cursor_name) in streams {
            let Some(last) = last_event_cursor(env, publisher).await? else {
                continue;
            };
            let mut conn = env.database(consumer).await?;
            let applied: Option<String> =
                sqlx::query_scalar("SELECT cursor FROM event_cursors WHERE consumer = $1")
                    .bind(cursor_name)
                    .fetch_optional(&mut conn)
                    .await
                    .with_context(|| format!("could not read the cursors of {consumer}"))?;
            conn.close().await?;
            // Encoded cursors are fixed-width hex: they sort in stream order.
            if applied.is_none_or(|applied| applied < last) {
                behind.push(*publisher);
            }
        }
        if behind.is_empty() {
            return Ok(waited.then(|| {
                format!(
                    "waited {:.1} s for {consumer} to apply the events of {}",
                    started.elapsed().as_secs_f64(),
                    publishers.join(", ")
                )
            }));
        }
        if started.elapsed() > CATCH_UP_TIMEOUT {
            bail!(
                "{consumer} did not catch up with the events of {} within {} s",
                behind.join(" and "),
                CATCH_UP_TIMEOUT.as_secs()
            );
        }
        if !waited || reported.elapsed() >= Duration::from_secs(10) {
            eprintln!(
                "xtask: waiting for {consumer} to apply the events of {}",
                behind.join(" and ")
            );
            reported = Instant::now();
        }
        waited = true;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The cursor of the last event in the outbox of service `publisher`, as its WatchEvents
/// encodes it (`None` when it published nothing).
async fn last_event_cursor(env: &Env, publisher: &str) -> anyhow::Result<Option<String>> {
    let mut conn = env.database(publisher).await?;
    let last: Option<(String, i64)> = sqlx::query_as(
        // Ordered by the column, not by its text (which `ORDER BY txid` would name here, and
        // which sorts 9999 after 10000).
        "SELECT e.txid::text AS txid_text, e.seq FROM outbox_events e \
         ORDER BY e.txid DESC, e.seq DESC LIMIT 1",
    )
    .fetch_optional(&mut conn)
    .await
    .with_context(|| format!("could not read the outbox of {publisher}"))?;
    conn.close().await?;
    last.map(|(txid, seq)| {
        let txid: u64 = txid.parse().context("bad transaction id in the outbox")?;
        let seq = u64::try_from(seq).context("bad sequence number in the outbox")?;
        Ok(encode_cursor(txid, seq))
    })
    .transpose()
}

/// A stream position as `kc_runtime::outbox::Cursor` prints it: transaction id, then sequence
/// number, each as 16 hex digits.
fn encode_cursor(txid: u64, seq: u64) -> String {
    format!("{txid:016x}{seq:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_encode_like_the_outbox() {
        assert_eq!(encode_cursor(1, 2), "00000000000000010000000000000002");
        assert!(encode_cursor(2, 1) > encode_cursor(1, 2));
    }
}
