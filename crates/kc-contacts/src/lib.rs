//! `kc-contacts`: the contact registry of the keycontacts suite. Customers, their sites,
//! who holds which contact role on each site, and the rules on them (DOMAIN.md S*, C*, R1,
//! L1), with an audit trail and a commit-ordered event stream.
//!
//! - [`domain`]: the rules and the operations with their transactions; every write made
//!   for a person decides that person's authority in its own transaction
//!   ([`domain::authority`], T6, T8).
//! - [`storage`]: SQL of the `contacts` schema.
//! - [`projection`]: the consumer of access management's events that keeps the explicit
//!   grants the registry decides authority with (with `--access-url`).
//! - [`grpc`], [`events`], [`config`]: the API, the published events, the settings.

pub mod config;
pub mod domain;
pub mod events;
pub mod grpc;
pub mod projection;
pub mod storage;

use std::net::SocketAddr;

use anyhow::Context;
use kc_proto::contacts::contact_registry_service_server::ContactRegistryServiceServer;
use kc_runtime::Shutdown;
use kc_runtime::auth::{AuthLayer, TokenVerifier};
use kc_runtime::client::{ServiceToken, channel};
use kc_runtime::outbox::OutboxWatcher;
use kc_runtime::server::{ServeOptions, serve};
use sqlx::migrate::Migrator;
use tokio::net::TcpListener;
use tonic::service::Routes;

use crate::config::ContactsArgs;
use crate::domain::Registry;

/// The schema the registry owns.
pub const SCHEMA: &str = "contacts";
/// The gRPC service name, as reported in health.
pub const SERVICE_NAME: &str = "keycontacts.contacts.v1.ContactRegistryService";
/// Where the registry listens unless told otherwise.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 50052);

/// The migrations of the contacts schema.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Runs the migrations of the contacts schema.
pub async fn migrate(database_url: &str) -> anyhow::Result<()> {
    kc_runtime::db::migrate(database_url, SCHEMA, &MIGRATOR).await
}

/// Migrates, then serves the registry on `listener` until `shutdown`, verifying tokens with
/// the keys of the identity service named in `args`.
pub async fn run(
    args: ContactsArgs,
    listener: TcpListener,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let verifier = args.identity.verifier(&args.server, &shutdown)?;
    run_with_verifier(args, verifier, listener, shutdown).await
}

/// Like [`run`], with the token verifier given (tests use a test issuer's keys).
pub async fn run_with_verifier(
    args: ContactsArgs,
    verifier: TokenVerifier,
    listener: TcpListener,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let codes = args.notification_codes()?;
    let access_link = args.access_link()?;
    let access_channel = access_link
        .as_ref()
        .map(|(url, _)| channel("--access-url", url))
        .transpose()?;
    migrate(&args.database.database_url).await?;
    let pool = kc_runtime::db::connect(
        &args.database.database_url,
        SCHEMA,
        &args.database.pool_settings(),
    )
    .await?;
    let watcher = OutboxWatcher::start(pool.clone())
        .await
        .context("event watcher")?;
    let auth = AuthLayer::new(verifier, [] as [&str; 0]);
    let registry = Registry::new(pool.clone(), codes);
    let sweeper = tokio::spawn(sweep_expired_codes(registry.clone(), shutdown.clone()));
    // T8: the projection of access grants, followed with this service's own account.
    let follower = match (access_link, access_channel) {
        (Some((_, account)), Some(access)) => {
            let identity = channel("--identity-url", &args.identity.identity_url)?;
            let token = ServiceToken::new(identity, account);
            Some(projection::spawn(&pool, &token, access, &shutdown))
        }
        _ => None,
    };
    let api = grpc::ContactsApi::new(registry, watcher, shutdown.clone(), follower.is_some());
    let service = ContactRegistryServiceServer::new(api)
        .max_decoding_message_size(args.server.max_message_bytes)
        .max_encoding_message_size(args.server.max_message_bytes);
    let options =
        ServeOptions::new(&args.server, vec![SERVICE_NAME], auth).with_pool(SCHEMA, &pool);
    let result = serve(listener, Routes::new(service), options, shutdown).await;
    sweeper.abort();
    if let Some(follower) = follower {
        follower.abort();
    }
    pool.close().await;
    result
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
