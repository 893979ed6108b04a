//! `kc-access`: access management of the keycontacts suite. Who may do what on each site:
//! tool rights and support levels (DOMAIN.md T*, U*), access requests and their approval
//! (A*, S3), e-mail domain policies (A7), the audit trail of every change (L1, T5), and the
//! authorization checks the gateway asks for. Its API is
//! `keycontacts.access.v1.AccessManagementService` (`kc_proto::access`).
//!
//! - [`domain`]: the rules (pure: [`domain::levels`], [`domain::rights`]) and the operations
//!   with their transactions ([`domain::service`]).
//! - [`storage`]: SQL of the `access` schema.
//! - [`followers`]: the consumers of the contact registry's and identity's event streams
//!   that keep the projection of sites, roles and users.
//! - [`cache`]: the in-memory rights cache that serves `Check`, kept current on every
//!   replica through Postgres notifications (bounded staleness across replicas: the
//!   notification latency, ≤ 1 s). `ConsistentBatchCheck` (the gateway's
//!   `at_least_as_fresh`) bypasses it: it awaits the projection of the registry's roles up to
//!   a revision, then reads the database; `LookupSites` and `LookupUsers` always read the
//!   database (candidates with a grant or a rights-implying role, filtered by the rights
//!   model, keyset paged).
//! - [`permission_feed`]: the changes of effective permissions, each published once in the
//!   transaction of its cause, for `WatchPermissionChanges` (the gateway's
//!   `WatchPermissions`).
//! - [`sweeper`]: expiry of requests left pending (A6), and grants with an end (T9):
//!   announced 7 days ahead, ended at their end.
//! - [`convert`]: every conversion between the proto messages and the domain (requests into
//!   the commands of [`domain::commands`], entities back into their published forms).
//! - [`grpc`], [`events`], [`config`]: the API, the published events, the settings.
//!
//! Public: [`config`], [`domain`], [`storage`], [`run`] and the service's constants; the other modules are the
//! crate's inside (`pub(crate)`).

#![warn(missing_docs, unreachable_pub)]

mod cache;
pub mod config;
mod convert;
pub mod domain;
mod events;
mod followers;
mod grpc;
mod permission_feed;
pub mod storage;
mod sweeper;

use anyhow::Context;
use kc_proto::access::access_management_service_server::AccessManagementServiceServer;
use kc_runtime::Shutdown;
use kc_runtime::auth::{AuthLayer, TokenVerifier};
use kc_runtime::client::{ServiceToken, channel};
use tokio::net::TcpListener;
use tonic::service::Routes;

use crate::cache::RightsCache;
use crate::config::AccessArgs;
use crate::domain::{Access, AccessSettings};

kc_runtime::service_constants! {
    who: "access management",
    binary: "kc-access",
    grpc: "keycontacts.access.v1.AccessManagementService",
    port: 50053,
    schema: "access",
}

kc_runtime::run_verified_by_identity! {
    /// Migrates, then serves access management on `listener` until `shutdown`, verifying tokens
    /// with the keys of the identity service named in `args`.
    AccessArgs
}

/// Like [`run`], with the token verifier given (tests use a test issuer's keys).
///
/// Besides the server it runs, until `shutdown`: the two projection consumers (contact
/// registry and identity events), the cache invalidation listener, the request sweeper and,
/// until done, the permission feed's backfill.
pub async fn run_with_verifier(
    args: AccessArgs,
    verifier: TokenVerifier,
    listener: TcpListener,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    args.validate()?;
    let identity_channel = channel("--identity-url", &args.identity.identity_url)?;
    let contacts_channel = channel("--contacts-url", &args.contacts_url)?;
    let auth = AuthLayer::without_public_methods(verifier);
    let mut started = SERVICE.start(&args.database, &shutdown).await?;
    let pool = started.pool.clone();
    let cache = RightsCache::new(args.cache_settings());
    let listener_task = cache::spawn_listener(pool.clone(), cache.clone())
        .await
        .context("cache invalidation listener")?;
    started.tasks.abort_at_end(&listener_task);
    let access = Access::new(
        pool.clone(),
        cache.clone(),
        AccessSettings {
            request_max_age: args.request_max_age,
        },
    );
    let stop = started.tasks.stop();
    let token = ServiceToken::new(identity_channel.clone(), args.account.clone());
    let (followers, applied) = followers::spawn(
        &pool,
        &cache,
        &token,
        contacts_channel,
        identity_channel,
        stop,
    );
    started.tasks.track(followers);
    let sweeper = sweeper::spawn(access.clone(), args.sweep_interval, stop.clone());
    let backfill = permission_feed::spawn_backfill(pool.clone(), stop.clone());
    started.tasks.track([sweeper, backfill]);
    let api = grpc::AccessApi::new(access, applied, started.watcher.clone(), shutdown.clone());
    let service =
        kc_runtime::with_message_limits!(AccessManagementServiceServer::new(api), &args.server);
    started
        .serve(listener, &args.server, auth, Routes::new(service))
        .await
}
