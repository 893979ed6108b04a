//! The background task that expires access requests left PENDING past their expiry time
//! (A6; 30 days after submission by default, `--request-max-age`), starts the grants whose
//! start came, announces the grants that end within 7 days and ends the grants whose end
//! came (T9).
//!
//! Every `--sweep-interval` (and once at start) it expires due requests in batches, one
//! transaction per batch, each with its audit record and `AccessRequestExpired` event; then
//! records the starts that came (`access.started`, a `RightsChanged`), announces near ends (one `GrantEndingSoon` each, the grant marked announced in the same
//! transaction) and ends due grants (each removed with its audit record and a
//! `RightsChanged` event marked `ended`), one transaction per grant. Checks do not wait for
//! the sweeper: a grant counts from its start and stops at its end to the second (T9); the
//! sweeper makes the start and the end recorded, published changes.
//! Replicas sweep concurrently without stepping on each other: a batch skips requests
//! another transaction holds, and a decision that raced the sweeper finds the request
//! decided (A6). A failure is logged and retried at the next tick.

use std::time::Duration;

use kc_runtime::Shutdown;
use kc_runtime::sweep::{in_batches, next_sweep, sweep_ticks};
use tokio::task::JoinHandle;

use crate::domain::Access;
use crate::domain::service::EXPIRY_BATCH;

/// Runs one kind of sweep in batches of [`EXPIRY_BATCH`] until a batch is not full,
/// shutdown triggers or it fails (logged; retried at the next tick).
async fn sweep<F, Fut>(shutdown: &Shutdown, what: &'static str, batch: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = crate::domain::Result<usize>>,
{
    in_batches(shutdown, what, EXPIRY_BATCH, batch).await;
}

/// Starts the sweeper; it runs until `shutdown` triggers.
pub(crate) fn spawn(access: Access, interval: Duration, shutdown: Shutdown) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = sweep_ticks(interval);
        while next_sweep(&mut ticks, &shutdown).await {
            sweep(&shutdown, "expiring access requests", || {
                access.expire_due()
            })
            .await;
            sweep(&shutdown, "starting grants", || access.start_due()).await;
            sweep(&shutdown, "announcing grant ends", || {
                access.announce_ending()
            })
            .await;
            sweep(&shutdown, "ending grants", || access.end_due()).await;
        }
        tracing::debug!("request sweeper stopped");
    })
}
