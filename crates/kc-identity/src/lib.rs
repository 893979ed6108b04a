//! `kc-identity`: users, credentials, sessions, service accounts and the Ed25519 keys that
//! sign every access token of the keycontacts suite.
//!
//! Public: [`config`], [`domain`], [`run`] and the service's constants; the other modules are the
//! crate's inside (`pub(crate)`).

#![warn(missing_docs, unreachable_pub)]

pub mod config;
mod convert;
pub mod domain;
mod events;
mod grpc;
mod storage;

use anyhow::Context;
use kc_proto::identity::identity_service_server::IdentityServiceServer;
use kc_runtime::Shutdown;
use kc_runtime::auth::{AuthLayer, TokenVerifier};
use sqlx::PgPool;
use tokio::net::TcpListener;
use tonic::service::Routes;

use crate::config::IdentityArgs;
use crate::domain::Identity;
use crate::domain::keys::{KeyEncryption, KeyRing};
use crate::domain::password::PasswordHasher;

kc_runtime::service_constants! {
    who: "identity",
    binary: "kc-identity",
    grpc: "keycontacts.identity.v1.IdentityService",
    port: 50051,
    schema: "identity",
}

/// Connects the pool and builds the domain (creating the first signing key if needed).
pub async fn build(args: &IdentityArgs) -> anyhow::Result<(PgPool, Identity)> {
    let pool = kc_runtime::db::connect(
        &args.database.database_url,
        SCHEMA,
        &args.database.pool_settings(),
    )
    .await?;
    let identity = domain(pool.clone(), args).await?;
    Ok((pool, identity))
}

/// Builds the domain on `pool` (creating the first signing key if needed).
async fn domain(pool: PgPool, args: &IdentityArgs) -> anyhow::Result<Identity> {
    let hasher = PasswordHasher::new(args.hashing.cost(), args.hashing.concurrency())
        .context("argon2 settings")?;
    let secrets = args.secrets.load()?;
    let keys = KeyRing::new(
        pool.clone(),
        args.tokens.access_token_ttl,
        KeyEncryption::new(
            secrets.key_encryption_key.clone(),
            secrets.previous_key_encryption_key.clone(),
        ),
    );
    keys.ensure_key().await.context("signing keys")?;
    let identity = Identity::new(pool, hasher, keys, args.settings(), &secrets);
    identity
        .backfill_skeletons()
        .await
        .map_err(|error| anyhow::anyhow!(kc_runtime::ApiError::from(error)))
        .context("confusable skeletons of older accounts")?;
    Ok(identity)
}

/// How often expired codes, revocations and sign-in slots are swept.
const SWEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// Sweeps every [`SWEEP_INTERVAL`] until `shutdown` (see [`Identity::sweep`]).
async fn sweep(identity: Identity, shutdown: Shutdown) {
    let mut interval = tokio::time::interval(SWEEP_INTERVAL);
    loop {
        tokio::select! {
            () = shutdown.wait() => return,
            _ = interval.tick() => {}
        }
        if let Err(error) = identity.sweep().await {
            tracing::warn!(error = %error, "sweeping expired codes failed; retrying later");
        }
    }
}

/// Migrates, then serves identity on `listener` until `shutdown`.
pub async fn run(
    args: IdentityArgs,
    listener: TcpListener,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let started = SERVICE.start(&args.database, &shutdown).await?;
    let identity = domain(started.pool.clone(), &args).await?;
    // Identity is the issuer: it verifies tokens with its own key store, no network hop.
    let verifier = TokenVerifier::new(identity.keys().clone(), args.server.token_expectations());
    let auth = AuthLayer::new(verifier.clone(), grpc::PUBLIC_METHODS);
    let stop = started.tasks.stop().clone();
    started.tasks.spawn(sweep(identity.clone(), stop));
    let watcher = started.watcher.clone();
    let api = grpc::IdentityApi::new(identity, watcher, verifier, shutdown.clone());
    let service = kc_runtime::with_message_limits!(IdentityServiceServer::new(api), &args.server);
    started
        .serve(listener, &args.server, auth, Routes::new(service))
        .await
}
