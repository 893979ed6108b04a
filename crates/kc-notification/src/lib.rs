//! `kc-notification`: the notification service of the keycontacts suite. Who must be told
//! what (DOMAIN.md, the notification table, R1, C4, C8, A2, A3, A7, T5), in their language
//! (N1), delivered by e-mail at least once and shown at most once per event and recipient
//! (N3). Its API is `keycontacts.notification.v1.NotificationService`
//! (`kc_proto::notification`).
//!
//! - [`domain`]: the rules (pure: [`domain::language`], [`domain::params`],
//!   [`domain::recipients`], [`domain::retry`], [`domain::templates`]) and the operations
//!   with their transactions ([`domain::service`]).
//! - [`storage`]: SQL of the `notification` schema.
//! - [`followers`]: the followers of identity's, the registry's and access management's event
//!   streams that create notices (and keep the projection of sites and contacts).
//! - [`delivery`]: the workers that lease due notifications and send them by SMTP or into a
//!   mail directory, with retries and backoff.
//! - [`clients`]: the calls to identity and the registry.
//! - [`grpc`], [`convert`], [`events`], [`config`]: the API, its proto <-> domain
//!   conversions, the published events, the settings.
//!
//! Only [`config`], [`run`] and the service's constants are public: the modules are the
//! crate's inside (`pub(crate)`), reached through the API.

#![warn(missing_docs, unreachable_pub)]

mod clients;
pub mod config;
mod convert;
mod delivery;
mod domain;
mod events;
mod followers;
mod grpc;
mod storage;

use anyhow::Context;
use kc_proto::notification::notification_service_server::NotificationServiceServer;
use kc_runtime::Shutdown;
use kc_runtime::auth::{AuthLayer, TokenVerifier};
use kc_runtime::client::{ServiceToken, channel};
use tokio::net::TcpListener;
use tonic::service::Routes;

use crate::clients::Directory;
use crate::config::NotificationArgs;
use crate::domain::Notifier;
use crate::domain::templates::Templates;
use crate::followers::Streams;

kc_runtime::service_constants! {
    who: "the notification service",
    binary: "kc-notification",
    grpc: "keycontacts.notification.v1.NotificationService",
    port: 50054,
    schema: "notification",
}

kc_runtime::run_verified_by_identity! {
    /// Migrates, then serves the notification service on `listener` until `shutdown`,
    /// verifying tokens with the keys of the identity service named in `args`.
    NotificationArgs
}

/// Like [`run`], with the token verifier given (tests use a test issuer's keys).
///
/// Besides the server it runs, until `shutdown`: the three stream consumers (identity, the
/// contact registry, access management) and the delivery workers, which finish the e-mails
/// in flight before they stop (they get `--smtp-timeout` beyond the usual grace period).
pub async fn run_with_verifier(
    args: NotificationArgs,
    verifier: TokenVerifier,
    listener: TcpListener,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    args.validate()?;
    let opening = args.opening_key()?;
    let delivery_settings = args.delivery_settings()?;
    let identity_channel = channel("--identity-url", &args.identity.identity_url)?;
    let contacts_channel = channel("--contacts-url", &args.contacts_url)?;
    let access_channel = channel("--access-url", &args.access_url)?;
    let templates = Templates::load().context("templates")?;
    let auth = AuthLayer::without_public_methods(verifier);
    let mut started = SERVICE.start(&args.database, &shutdown).await?;
    started.tasks.extend_grace(args.smtp_timeout);
    let pool = started.pool.clone();
    let token = ServiceToken::new(identity_channel.clone(), args.account.clone());
    let directory = Directory::new(
        token.clone(),
        identity_channel.clone(),
        contacts_channel.clone(),
    );
    let notifier = Notifier::new(pool.clone(), directory.clone(), templates);
    let stop = started.tasks.stop();
    started
        .tasks
        .track(delivery::spawn(pool.clone(), delivery_settings, stop)?);
    started.tasks.track(followers::spawn(
        &pool,
        &notifier,
        &directory,
        &token,
        &opening,
        Streams {
            identity: identity_channel,
            contacts: contacts_channel,
            access: access_channel,
        },
        stop,
    ));
    let api = grpc::NotificationApi::new(notifier, started.watcher.clone(), shutdown.clone());
    let service =
        kc_runtime::with_message_limits!(NotificationServiceServer::new(api), &args.server);
    started
        .serve(listener, &args.server, auth, Routes::new(service))
        .await
}
