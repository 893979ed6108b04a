//! Coalescing of checks: the checks of concurrent calls go to access management together,
//! in one `BatchCheck`. The gateway keeps two batchers: one for the `AuthorizationService`'s
//! checks that carry no consistency token, one for its own admission of customers' calls
//! (the permissions of [`crate::policy`] asked on each site-scoped call), so that relying
//! applications flooding checks do not hold up people's calls.
//!
//! A relying application checks one `(user, site, permission)` per request, at high rates
//! and from many requests at once, and every site-scoped call of a person asks its
//! permissions first; one internal call per check costs the gateway and access management
//! more than the check itself (a loopback HTTP/2 round trip, its headers and the token
//! admission on both sides). Here a check joins a queue; at most
//! [`BATCHES_IN_FLIGHT`] `BatchCheck`s are in flight, and each takes every check queued when
//! it starts, up to [`MAX_CHECKS_PER_BATCH`] (access management's limit). Nothing waits for a
//! batch to fill: under light load a batch is the one check that came, at once; under load,
//! the checks that arrive while the batches are in flight go together in the next.
//!
//! What a check answers does not change: access management's rights cache decides each item
//! as it would alone, the gateway asks with its own token as before (every caller was
//! admitted first: a service account with the scope `authz`, or a person whose own
//! permissions are asked), and each check waits no longer than its own call's deadline. A
//! failed batch fails each of its checks with its error. A batch is traced as part of the
//! call of its first check (its span in access management is a child of that call's). The
//! gateway's read cache is not used by the batches (they do not repeat); an admission
//! consults it before it queues ([`crate::clients::Clients::batch_check_sent_by`]).

use std::sync::Arc;

use kc_proto::access;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tracing::Instrument;

use crate::clients::{Clients, Ctx, Svc};
use crate::error::GatewayError;

/// `BatchCheck`s in flight at once, at most.
const BATCHES_IN_FLIGHT: usize = 2;

/// Checks in one `BatchCheck`, at most (access management's `MAX_BATCH_CHECKS`).
const MAX_CHECKS_PER_BATCH: usize = 100;

/// Checks queued and not yet sent, at most; a check that finds the queue full waits.
const QUEUE: usize = 4 * MAX_CHECKS_PER_BATCH;

/// One check waiting for its batch.
struct Queued {
    ctx: Ctx,
    /// The span of the call that asked: a batch is traced as part of its first check's call.
    span: tracing::Span,
    check: access::CheckRequest,
    answer: oneshot::Sender<Result<access::CheckResponse, GatewayError>>,
}

/// The queue of the checks to coalesce (see the module).
#[derive(Debug)]
pub(crate) struct CheckBatcher {
    queue: mpsc::Sender<Queued>,
}

impl CheckBatcher {
    /// Starts the task that sends the batches through `clients`; it ends when the batcher
    /// is dropped. Needs a tokio runtime.
    pub(crate) fn start(clients: Clients) -> Self {
        let (queue, queued) = mpsc::channel(QUEUE);
        tokio::spawn(send_batches(clients, queued));
        Self { queue }
    }

    /// Access management's answer to `check`, asked within `ctx` (as the gateway) together
    /// with the checks of other calls. Waits no longer than the deadline of `ctx`, whatever
    /// the batch's.
    pub(crate) async fn check(
        &self,
        ctx: &Ctx,
        check: access::CheckRequest,
    ) -> Result<access::CheckResponse, GatewayError> {
        let remaining = ctx
            .deadline
            .remaining()
            .ok_or(GatewayError::DeadlineExceeded)?;
        let (answer, answered) = oneshot::channel();
        let queued = Queued {
            ctx: ctx.as_gateway(),
            span: tracing::Span::current(),
            check,
            answer,
        };
        let stopped = || GatewayError::Internal(anyhow::anyhow!("the check batcher stopped"));
        let asked = async {
            self.queue.send(queued).await.map_err(|_| stopped())?;
            answered.await.map_err(|_| stopped())?
        };
        tokio::time::timeout(remaining, asked)
            .await
            .unwrap_or(Err(GatewayError::Timeout {
                service: Svc::Access,
                caller_deadline: ctx.deadline.from_caller,
            }))
    }

    /// Access management's answers to `checks`, in order, each asked as [`CheckBatcher::check`]
    /// (together with other calls' checks); the first failure fails them all.
    pub(crate) async fn check_all(
        &self,
        ctx: &Ctx,
        checks: Vec<access::CheckRequest>,
    ) -> Result<access::BatchCheckResponse, GatewayError> {
        let results =
            futures::future::try_join_all(checks.into_iter().map(|check| self.check(ctx, check)))
                .await?;
        Ok(access::BatchCheckResponse { results })
    }
}

/// Takes the queued checks in batches and sends each, [`BATCHES_IN_FLIGHT`] at most at once.
async fn send_batches(clients: Clients, mut queued: mpsc::Receiver<Queued>) {
    let in_flight = Arc::new(Semaphore::new(BATCHES_IN_FLIGHT));
    loop {
        // A free place first, then the checks: while every place is taken, checks queue up
        // and the next batch takes them all.
        let Ok(place) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = queued.recv().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < MAX_CHECKS_PER_BATCH {
            match queued.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let clients = clients.clone();
        tokio::spawn(async move {
            send(&clients, batch).await;
            drop(place);
        });
    }
}

/// Sends one batch and gives each check its answer. The checks whose caller went away or
/// whose deadline passed while they queued are left out; the batch gets the latest deadline
/// of the others, so that no check is cut short by another's (each caller waits only for its
/// own, [`CheckBatcher::check`]).
async fn send(clients: &Clients, batch: Vec<Queued>) {
    let (batch, late): (Vec<Queued>, Vec<Queued>) = batch
        .into_iter()
        .filter(|queued| !queued.answer.is_closed())
        .partition(|queued| queued.ctx.deadline.remaining().is_some());
    for queued in late {
        let _ = queued.answer.send(Err(GatewayError::DeadlineExceeded));
    }
    let Some(latest) = batch
        .iter()
        .map(|queued| queued.ctx.deadline)
        .max_by_key(|d| d.at)
    else {
        return;
    };
    let mut ctx = batch[0].ctx.clone();
    ctx.deadline = latest;
    let checks = batch.iter().map(|queued| queued.check.clone()).collect();
    let answered = clients
        .batch_check_uncached(&ctx, access::BatchCheckRequest { checks })
        .instrument(batch[0].span.clone())
        .await
        .and_then(|response| {
            if response.results.len() == batch.len() {
                Ok(response.results)
            } else {
                Err(GatewayError::Internal(anyhow::anyhow!(
                    "access answered {} of {} checks",
                    response.results.len(),
                    batch.len()
                )))
            }
        });
    match answered {
        Ok(results) => {
            for (queued, result) in batch.into_iter().zip(results) {
                // Err: the caller went away.
                let _ = queued.answer.send(Ok(result));
            }
        }
        Err(error) => {
            for queued in batch {
                let _ = queued.answer.send(Err(error.duplicate()));
            }
        }
    }
}
