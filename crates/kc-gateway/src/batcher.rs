//! Coalescing of concurrent internal calls of one kind into batch calls.
//!
//! Many calls of the gateway each make one small internal call of the same kind at the same
//! moment (a check of a permission, an invitation of an address); one internal call each
//! costs the gateway and the service more than the item itself (a loopback HTTP/2 round
//! trip, its headers, the token admission on both sides, and in the service a transaction
//! each). Here an item joins a queue; at most [`BatchCall::IN_FLIGHT`] batches are in flight,
//! and each takes every item queued when it starts, up to [`BatchCall::MAX_ITEMS`]. Nothing
//! waits for a batch to fill: under light load a batch is the one item that came, at once;
//! under load, the items that arrive while the batches are in flight go together in the next.
//! A kind of call can hold the next batch back while another is in flight
//! ([`BatchCall::OVERLAP_AFTER`]): answered quickly, the batch in flight comes back first and
//! the next one takes more items; a slow one does not hold up the rest longer than that.
//!
//! Each item waits no longer than its own call's deadline, and one that runs out of time
//! fails as any internal call of the gateway does ([`GatewayError::Timeout`]); a batch gets
//! the latest deadline of its items, so that none is cut short by another's. An item whose caller went away or
//! whose deadline passed while it queued is not sent. A failed batch fails each of its items
//! with its error. A batch is traced as part of the call of its first item.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, oneshot};
use tracing::Instrument;

use crate::clients::{Ctx, Svc};
use crate::error::GatewayError;

/// A kind of internal batch call the gateway coalesces its calls' items into.
pub(crate) trait BatchCall: Send + Sync + 'static {
    /// One item of a batch.
    type Item: Send + 'static;
    /// The answer to one item.
    type Answer: Send + 'static;
    /// The service the batches go to.
    const SERVICE: Svc;
    /// Items in one batch, at most (the service's limit).
    const MAX_ITEMS: usize;
    /// Batches in flight at once, at most.
    const IN_FLIGHT: usize;
    /// While a batch is in flight, how long after the last batch went out another may go:
    /// until then, items queue for the next batch (which also goes as soon as a batch comes
    /// back). Zero: as soon as a place is free.
    const OVERLAP_AFTER: Duration = Duration::ZERO;

    /// Sends `items` in one call within `ctx` (the gateway's own credentials): one result per
    /// item, in order; an error of the whole call fails them all.
    fn send(
        &self,
        ctx: &Ctx,
        items: Vec<Self::Item>,
    ) -> impl Future<Output = Result<Vec<Result<Self::Answer, GatewayError>>, GatewayError>> + Send;
}

/// One item waiting for its batch.
struct Queued<C: BatchCall> {
    ctx: Ctx,
    /// The span of the call that asked: a batch is traced as part of its first item's call.
    span: tracing::Span,
    item: C::Item,
    answer: oneshot::Sender<Result<C::Answer, GatewayError>>,
}

/// The queue of the items of `C` to coalesce (see the module).
pub(crate) struct Batcher<C: BatchCall> {
    queue: mpsc::Sender<Queued<C>>,
}

/// Another handle on the same queue (the task ends when the last handle is dropped).
impl<C: BatchCall> Clone for Batcher<C> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
        }
    }
}

impl<C: BatchCall> std::fmt::Debug for Batcher<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher")
            .field("service", &C::SERVICE)
            .finish_non_exhaustive()
    }
}

impl<C: BatchCall> Batcher<C> {
    /// Starts the task that sends the batches through `call`; it ends when the batcher (all
    /// its handles) is dropped. Needs a tokio runtime.
    pub(crate) fn start(call: C) -> Self {
        let (queue, queued) = mpsc::channel(4 * C::MAX_ITEMS);
        tokio::spawn(send_batches(Arc::new(call), queued));
        Self { queue }
    }

    /// The answer to `item`, asked within `ctx` (as the gateway) together with the items of
    /// other calls. Waits no longer than the deadline of `ctx`, whatever the batch's.
    pub(crate) async fn ask(&self, ctx: &Ctx, item: C::Item) -> Result<C::Answer, GatewayError> {
        let timeout = || GatewayError::Timeout {
            service: C::SERVICE,
            caller_deadline: ctx.deadline.from_caller,
        };
        let remaining = ctx.deadline.remaining().ok_or_else(timeout)?;
        let (answer, answered) = oneshot::channel();
        let queued = Queued {
            ctx: ctx.as_gateway(),
            span: tracing::Span::current(),
            item,
            answer,
        };
        let stopped = || GatewayError::Internal(anyhow::anyhow!("a batcher stopped"));
        let asked = async {
            self.queue.send(queued).await.map_err(|_| stopped())?;
            answered.await.map_err(|_| stopped())?
        };
        tokio::time::timeout(remaining, asked)
            .await
            .unwrap_or_else(|_| Err(timeout()))
    }

    /// The answers to `items`, in order, each asked as [`Batcher::ask`] (together with other
    /// calls' items); the first failure fails them all.
    pub(crate) async fn ask_all(
        &self,
        ctx: &Ctx,
        items: Vec<C::Item>,
    ) -> Result<Vec<C::Answer>, GatewayError> {
        // The common case (a relying application's `Check`), without the join's state.
        let items = match <[C::Item; 1]>::try_from(items) {
            Ok([item]) => return Ok(vec![self.ask(ctx, item).await?]),
            Err(items) => items,
        };
        futures::future::try_join_all(items.into_iter().map(|item| self.ask(ctx, item))).await
    }
}

/// Takes the queued items in batches and sends each, [`BatchCall::IN_FLIGHT`] at most at once.
async fn send_batches<C: BatchCall>(call: Arc<C>, mut queued: mpsc::Receiver<Queued<C>>) {
    let in_flight = Arc::new(Semaphore::new(C::IN_FLIGHT));
    // When the last batch went out.
    let mut last_sent = tokio::time::Instant::now();
    loop {
        // A free place first, then the items: while every place is taken, items queue up
        // and the next batch takes them all.
        let Ok(place) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = queued.recv().await else {
            return;
        };
        let others_in_flight = C::IN_FLIGHT - 1 - in_flight.available_permits();
        if others_in_flight > 0 && !C::OVERLAP_AFTER.is_zero() {
            // Another batch is in flight: until OVERLAP_AFTER after the last one went out,
            // this one goes only when a batch comes back, taking what queued meanwhile.
            let until = last_sent + C::OVERLAP_AFTER;
            let _ = tokio::time::timeout_at(until, in_flight.acquire()).await;
        }
        let mut batch = vec![first];
        while batch.len() < C::MAX_ITEMS {
            match queued.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let call = call.clone();
        last_sent = tokio::time::Instant::now();
        tokio::spawn(async move {
            send(call.as_ref(), batch).await;
            drop(place);
        });
    }
}

/// Sends one batch and gives each item its answer. The items whose caller went away or whose
/// deadline passed while they queued are left out; the batch gets the latest deadline of the
/// others, so that no item is cut short by another's (each caller waits only for its own,
/// [`Batcher::ask`]).
async fn send<C: BatchCall>(call: &C, batch: Vec<Queued<C>>) {
    let (batch, late): (Vec<Queued<C>>, Vec<Queued<C>>) = batch
        .into_iter()
        .filter(|queued| !queued.answer.is_closed())
        .partition(|queued| queued.ctx.deadline.remaining().is_some());
    for queued in late {
        let _ = queued.answer.send(Err(GatewayError::Timeout {
            service: C::SERVICE,
            caller_deadline: queued.ctx.deadline.from_caller,
        }));
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
    let span = batch[0].span.clone();
    let count = batch.len();
    let (items, answers): (Vec<C::Item>, Vec<_>) = batch
        .into_iter()
        .map(|queued| (queued.item, queued.answer))
        .unzip();
    let answered = call
        .send(&ctx, items)
        .instrument(span)
        .await
        .and_then(|results| {
            if results.len() == count {
                Ok(results)
            } else {
                Err(GatewayError::Internal(anyhow::anyhow!(
                    "{:?} answered {} of {count} items of a batch",
                    C::SERVICE,
                    results.len(),
                )))
            }
        });
    match answered {
        Ok(results) => {
            for (answer, result) in answers.into_iter().zip(results) {
                // Err: the caller went away.
                let _ = answer.send(result);
            }
        }
        Err(error) => {
            for answer in answers {
                let _ = answer.send(Err(error.duplicate()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use tokio::sync::watch;

    use super::{BatchCall, Batcher};
    use crate::clients::{Ctx, Svc};
    use crate::deadline::Deadline;
    use crate::error::GatewayError;

    /// A batch call that records each batch and answers only once the test opens the gate.
    struct Gated {
        batches: Mutex<Vec<Vec<u32>>>,
        gate: watch::Receiver<bool>,
    }

    impl Gated {
        /// A batcher of [`Overlapping`] calls recorded by a new `Gated`, with the sender
        /// that opens its gate.
        fn start<const AFTER_MS: u64>() -> (
            Arc<Self>,
            watch::Sender<bool>,
            Arc<Batcher<Overlapping<AFTER_MS>>>,
        ) {
            let (open, gate) = watch::channel(false);
            let gated = Arc::new(Self {
                batches: Mutex::new(Vec::new()),
                gate,
            });
            let batcher = Arc::new(Batcher::start(Overlapping::<AFTER_MS>(gated.clone())));
            (gated, open, batcher)
        }
    }

    /// Two batches in flight; the second waits a long time for the first to come back.
    struct Overlapping<const AFTER_MS: u64>(Arc<Gated>);

    impl<const AFTER_MS: u64> BatchCall for Overlapping<AFTER_MS> {
        type Item = u32;
        type Answer = u32;
        const SERVICE: Svc = Svc::Access;
        const MAX_ITEMS: usize = 10;
        const IN_FLIGHT: usize = 2;
        const OVERLAP_AFTER: Duration = Duration::from_millis(AFTER_MS);

        async fn send(
            &self,
            _ctx: &Ctx,
            items: Vec<u32>,
        ) -> Result<Vec<Result<u32, GatewayError>>, GatewayError> {
            let first = self.0.batches.lock().unwrap().is_empty();
            self.0.batches.lock().unwrap().push(items.clone());
            if first {
                // Only the first batch is held until the gate opens.
                let mut gate = self.0.gate.clone();
                let _ = gate.wait_for(|open| *open).await;
            }
            Ok(items.into_iter().map(Ok).collect())
        }
    }

    fn ctx() -> Ctx {
        let patient = Duration::from_secs(30);
        Ctx::public(Deadline::compute(Instant::now(), None, patient, patient))
    }

    /// Asks `item` on a task of its own, and waits until it is queued.
    async fn ask_later<C: BatchCall<Item = u32, Answer = u32>>(
        batcher: &Arc<Batcher<C>>,
        item: u32,
    ) -> tokio::task::JoinHandle<Result<u32, GatewayError>> {
        let batcher = batcher.clone();
        let asked = tokio::spawn(async move { batcher.ask(&ctx(), item).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        asked
    }

    #[tokio::test]
    async fn items_wait_for_the_batch_in_flight_and_then_go_together() {
        // The batch in flight is given far longer than the test takes.
        let (gated, open, batcher) = Gated::start::<60_000>();
        let first = ask_later(&batcher, 1).await;
        let second = ask_later(&batcher, 2).await;
        let third = ask_later(&batcher, 3).await;
        assert_eq!(
            *gated.batches.lock().unwrap(),
            [vec![1]],
            "a second place is free, yet no batch joins the one in flight before its time"
        );
        open.send(true).unwrap();
        assert_eq!(first.await.unwrap().unwrap(), 1);
        assert_eq!(second.await.unwrap().unwrap(), 2);
        assert_eq!(third.await.unwrap().unwrap(), 3);
        assert_eq!(*gated.batches.lock().unwrap(), [vec![1], vec![2, 3]]);
    }

    #[tokio::test]
    async fn a_slow_batch_holds_the_next_up_no_longer_than_the_overlap() {
        let (gated, _closed, batcher) = Gated::start::<20>();
        let _held = ask_later(&batcher, 1).await;
        // The first batch never comes back; the second goes once it was out 20 ms.
        let answered = tokio::time::timeout(Duration::from_secs(10), batcher.ask(&ctx(), 2))
            .await
            .expect("the second batch went while the first was still in flight");
        assert_eq!(answered.unwrap(), 2);
        assert_eq!(*gated.batches.lock().unwrap(), [vec![1], vec![2]]);
    }
}
