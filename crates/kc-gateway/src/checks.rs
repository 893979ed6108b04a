//! Coalescing of checks: the checks of concurrent calls go to access management together,
//! in one `BatchCheck` ([`crate::batcher`]). The gateway keeps two batchers: one for the
//! `AuthorizationService`'s checks that carry no consistency token, one for its own
//! admission of customers' calls (the permissions of [`crate::policy`] asked on each
//! site-scoped call), so that relying applications flooding checks do not hold up people's
//! calls.
//!
//! A relying application checks one `(user, site, permission)` per request, at high rates
//! and from many requests at once, and every site-scoped call of a person asks its
//! permissions first. What a check answers does not change: access management's rights
//! cache decides each item as it would alone, and the gateway asks with its own token as
//! before (every caller was admitted first: a service account with the scope `authz`, or a
//! person whose own permissions are asked). The gateway's read cache is not used by the
//! batches (they do not repeat); an admission consults it before it queues
//! ([`crate::clients::Clients::batch_check_sent_by`]).

use std::time::Duration;

use kc_proto::access;

use crate::batcher::{BatchCall, Batcher};
use crate::clients::{Clients, Ctx, Svc};
use crate::error::GatewayError;

/// Access management's `BatchCheck`, as a [`BatchCall`].
#[derive(Debug)]
pub(crate) struct Checks(pub(crate) Clients);

/// The queue of checks to coalesce.
pub(crate) type CheckBatcher = Batcher<Checks>;

impl BatchCall for Checks {
    type Item = access::CheckRequest;
    type Answer = access::CheckResponse;
    const SERVICE: Svc = Svc::Access;
    /// Access management's `MAX_BATCH_CHECKS`.
    const MAX_ITEMS: usize = 100;
    const IN_FLIGHT: usize = 2;
    /// A check's answer comes from access's rights cache in well under a millisecond: the
    /// batch in flight usually comes back within this, and the next then takes every
    /// check that queued meanwhile (fewer, larger batches, each a round trip for both
    /// sides); a batch that loads sites from the database (a cold cache) holds the rest up
    /// no longer. Measured with `gateway.check` (64 calls in flight): see
    /// crates/kc-bench/README.md.
    const OVERLAP_AFTER: Duration = Duration::from_millis(2);

    async fn send(
        &self,
        ctx: &Ctx,
        checks: Vec<access::CheckRequest>,
    ) -> Result<Vec<Result<access::CheckResponse, GatewayError>>, GatewayError> {
        let response = self
            .0
            .batch_check_uncached(ctx, access::BatchCheckRequest { checks })
            .await?;
        Ok(response.results.into_iter().map(Ok).collect())
    }
}
