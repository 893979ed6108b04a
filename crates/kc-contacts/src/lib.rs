//! `kc-contacts`: the contact registry of the keycontacts suite. Customers, their sites,
//! who holds which contact role on each site, and the rules on them (DOMAIN.md S*, C*, R1,
//! L1), with an audit trail and a commit-ordered event stream.
//!
//! - [`domain`]: the rules and the operations with their transactions; every write made
//!   for a person decides that person's authority in its own transaction
//!   ([`domain::authority`], T6, T8).
//! - [`storage`]: SQL of the `contacts` schema.
//! - [`followers`]: the consumer of access management's events that keeps the explicit
//!   grants the registry decides authority with (with `--access-url`).
//! - [`compliance_feeds`]: the consumers of identity's and notification's events that keep
//!   what the compliance report needs of them (users' states, failing addresses).
//! - [`convert`]: every proto <-> domain conversion (requests into commands, results back).
//! - [`support_life`]: the sweeper of S&S renewal reminders and lapses.
//! - [`grpc`], [`events`], [`config`]: the API, the published events, the settings.
//!
//! Public: [`config`], [`domain`], [`followers`], [`run`] and the service's constants; the other modules are the
//! crate's inside (`pub(crate)`).

#![warn(missing_docs, unreachable_pub)]

pub mod compliance_feeds;
pub mod config;
mod convert;
pub mod domain;
mod events;
pub mod followers;
mod grpc;
mod storage;
mod support_life;

use kc_proto::contacts::contact_registry_service_server::ContactRegistryServiceServer;
use kc_runtime::Shutdown;
use kc_runtime::auth::{AuthLayer, TokenVerifier};
use kc_runtime::client::{ServiceToken, channel};
use tokio::net::TcpListener;
use tonic::service::Routes;

use crate::config::ContactsArgs;
use crate::domain::Registry;

kc_runtime::service_constants! {
    who: "the registry",
    binary: "kc-contacts",
    grpc: "keycontacts.contacts.v1.ContactRegistryService",
    port: 50052,
    schema: "contacts",
}

kc_runtime::run_verified_by_identity! {
    /// Migrates, then serves the registry on `listener` until `shutdown`, verifying tokens with
    /// the keys of the identity service named in `args`.
    ContactsArgs
}

/// Like [`run`], with the token verifier given (tests use a test issuer's keys).
///
/// Besides the server it runs, until `shutdown`: the sweeper of expired notification
/// e-mail codes, the S&S sweeper (renewal reminders and lapses, [`support_life`]) and, with
/// `--access-url`, the consumer of access management's events and the compliance feeds
/// ([`compliance_feeds`]: identity's users, and notification's outcomes with
/// `--notification-url`).
pub async fn run_with_verifier(
    args: ContactsArgs,
    verifier: TokenVerifier,
    listener: TcpListener,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let codes = args.notification_codes()?;
    let recovery_times = args.recovery_times()?;
    let support_sweep_interval = args.support_sweep_interval()?;
    let access_link = args.access_link()?;
    let access_channel = access_link
        .as_ref()
        .map(|(url, _)| channel("--access-url", url))
        .transpose()?;
    let auth = AuthLayer::without_public_methods(verifier);
    let started = SERVICE.start(&args.database, &shutdown).await?;
    let registry = Registry::new(started.pool.clone(), codes).with_recovery_times(recovery_times);
    let stop = started.tasks.stop();
    started
        .tasks
        .spawn(sweep_expired_codes(registry.clone(), stop.clone()));
    started.tasks.spawn(support_life::run(
        registry.clone(),
        support_sweep_interval,
        stop.clone(),
    ));
    // T8: the projection of access grants, followed with this service's own account.
    let access_applied = match (access_link, access_channel) {
        (Some((_, account)), Some(access)) => {
            let identity = channel("--identity-url", &args.identity.identity_url)?;
            let token = ServiceToken::new(identity, account);
            let (follower, applied) = followers::spawn(&started.pool, &token, access, stop);
            started.tasks.track([follower]);
            // The projections of the compliance report: identity's users and, with
            // `--notification-url`, notification's failing addresses.
            let notification = args
                .notification_url
                .as_ref()
                .map(|url| channel("--notification-url", url))
                .transpose()?;
            let identity = channel("--identity-url", &args.identity.identity_url)?;
            let feeds =
                compliance_feeds::spawn(&started.pool, &token, identity, notification, stop);
            started.tasks.track(feeds);
            Some(applied)
        }
        _ => None,
    };
    let watcher = started.watcher.clone();
    let api = grpc::ContactsApi::new(registry, watcher, shutdown.clone(), access_applied);
    let service =
        kc_runtime::with_message_limits!(ContactRegistryServiceServer::new(api), &args.server);
    started
        .serve(listener, &args.server, auth, Routes::new(service))
        .await
}

/// How often expired notification e-mail codes are withdrawn.
const CODE_SWEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// Withdraws expired notification e-mail codes (C11) every [`CODE_SWEEP_INTERVAL`] until
/// `shutdown`, so that no sealed code outlives its expiry in the event stream.
async fn sweep_expired_codes(registry: Registry, shutdown: Shutdown) {
    loop {
        match registry.expire_notification_codes().await {
            Ok(0) => {}
            Ok(count) => tracing::info!(count, "expired notification e-mail codes withdrawn"),
            Err(error) => {
                tracing::warn!(error = %error, "withdrawing expired notification e-mail codes failed")
            }
        }
        tokio::select! {
            () = shutdown.wait() => return,
            () = tokio::time::sleep(CODE_SWEEP_INTERVAL) => {}
        }
    }
}
