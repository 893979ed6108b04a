//! The background task that expires access requests left PENDING past their expiry time
//! (A6; 30 days after submission by default, `--request-max-age`).
//!
//! Every `--sweep-interval` (and once at start) it expires due requests in batches, one
//! transaction per batch, each with its audit record and `AccessRequestExpired` event.
//! Replicas sweep concurrently without stepping on each other: a batch skips requests
//! another transaction holds, and a decision that raced the sweeper finds the request
//! decided (A6). A failure is logged and retried at the next tick.

use std::time::Duration;

use kc_runtime::Shutdown;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::domain::Access;
use crate::domain::service::EXPIRY_BATCH;

/// Starts the sweeper; it runs until `shutdown` triggers.
pub(crate) fn spawn(access: Access, interval: Duration, shutdown: Shutdown) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = shutdown.wait() => break,
                _ = ticks.tick() => {}
            }
            loop {
                match access.expire_due().await {
                    Ok(found) if found >= EXPIRY_BATCH && !shutdown.is_triggered() => continue,
                    Ok(_) => break,
                    Err(error) => {
                        tracing::warn!(
                            error = %error,
                            "expiring access requests failed; retrying at the next sweep"
                        );
                        break;
                    }
                }
            }
        }
        tracing::debug!("request sweeper stopped");
    })
}
