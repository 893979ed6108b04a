//! `kc-gateway`: the public API of the keycontacts suite. It authenticates the caller
//! (tokens verified locally), decides whether the call is allowed (one table of rules,
//! [`policy`], and the permissions it names asked of access management, the checks of
//! concurrent calls together ([`checks`]), the answers kept briefly by [`cache`]), and
//! composes identity (the people that concurrent calls name by e-mail looked up and
//! invited together, [`people`], through the same [`batcher`] as the checks), the
//! contact registry, access management and notification into
//! `keycontacts.gateway.v1.GatewayService` (`kc_proto::gateway`). It owns no data. On the
//! same port it serves `keycontacts.gateway.v1.AuthorizationService`, the rights checks and
//! lookups for the applications that enforce them (service accounts with the scope `authz`;
//! consistency tokens in `compose::revisions`).
//!
//! - [`policy`]: the permission table of every RPC.
//! - [`compose`]: what each RPC does, per area.
//! - [`clients`]: calls to the internal services (credentials, deadlines, retries of
//!   reads, trace context, client-side balancing over replicas).
//! - [`cache`]: the short-lived cache of the hot internal reads.
//! - [`deadline`], [`ratelimit`], [`error`], [`grpc`], [`config`].
//!
//! Public: [`config`], [`run`] and the service's constants; the other modules are the
//! crate's inside (`pub(crate)`).

#![warn(missing_docs, unreachable_pub)]

mod batcher;
mod cache;
mod checks;
mod clients;
mod compose;
pub mod config;
mod deadline;
mod downstream;
mod error;
mod grpc;
mod mentions;
mod people;
mod policy;
mod ratelimit;

use std::net::SocketAddr;

use kc_proto::gateway::authorization_service_server::AuthorizationServiceServer;
use kc_proto::gateway::gateway_service_server::GatewayServiceServer;
use kc_runtime::Shutdown;
use kc_runtime::auth::{AuthLayer, TokenVerifier};
use kc_runtime::bootstrap::{Service, localhost};
use kc_runtime::client::{ReplicaChannels, ServiceToken};
use kc_runtime::server::{ServeOptions, serve};
use tokio::net::TcpListener;
use tonic::service::Routes;

use crate::cache::ReadCache;
use crate::clients::Clients;
use crate::compose::Gateway;
use crate::config::GatewayArgs;
use crate::ratelimit::{RateLimiter, WriteLimits};

/// The gRPC service name, as reported in health.
pub const SERVICE_NAME: &str = policy::SERVICE;
/// The gRPC name of the public authorization service (service accounts with the scope
/// `authz`), served on the same port and reported in health too.
pub const AUTHORIZATION_SERVICE_NAME: &str = policy::AUTHORIZATION_SERVICE;
/// Where the gateway listens unless told otherwise.
pub const DEFAULT_LISTEN: SocketAddr = localhost(50050);

/// The gateway, for its process (`kc-gateway`): it owns no data, so it has no schema.
pub static SERVICE: Service = Service::new("kc-gateway", SERVICE_NAME, DEFAULT_LISTEN);

kc_runtime::run_verified_by_identity! {
    /// Serves the gateway on `listener` until `shutdown`, verifying tokens with the keys of the
    /// identity service named in `args`.
    GatewayArgs
}

/// Like [`run`], with the token verifier given (tests use a test issuer's keys).
///
/// The internal services are reached lazily: the gateway serves (health SERVING) at once,
/// and a service that is down makes only the calls that need it fail, with `Unavailable`.
pub async fn run_with_verifier(
    args: GatewayArgs,
    verifier: TokenVerifier,
    listener: TcpListener,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    args.validate()?;
    let replicas = args.replica_settings();
    let identity = ReplicaChannels::new("--identity-url", &args.identity.identity_url, replicas)?;
    let contacts = ReplicaChannels::new("--contacts-url", &args.contacts_url, replicas)?;
    let access = ReplicaChannels::new("--access-url", &args.access_url, replicas)?;
    let notification =
        ReplicaChannels::new("--notification-url", &args.notification_url, replicas)?;
    let token = ServiceToken::new(identity.pick().channel, args.account.clone());
    let cache = ReadCache::new(args.read_cache_ttl);
    let clients = Clients::new(identity, contacts, access, notification, token, cache);
    let gateway = Gateway::new(
        clients,
        RateLimiter::new(args.session_rate_limit, args.session_rate_burst),
        WriteLimits::new(
            (
                args.access_request_rate_limit,
                args.access_request_rate_burst,
            ),
            (args.write_rate_limit, args.write_rate_burst),
        ),
    );

    let auth = AuthLayer::new(verifier, policy::public_methods());
    let api = grpc::GatewayApi::new(
        gateway,
        args.default_deadline,
        args.server.request_timeout,
        args.trusted_proxies.clone(),
        shutdown.clone(),
    );
    let authorization = kc_runtime::with_message_limits!(
        AuthorizationServiceServer::new(api.clone()),
        &args.server
    );
    let service = kc_runtime::with_message_limits!(GatewayServiceServer::new(api), &args.server);
    // Reflection names the public API only, not the internal services behind it.
    // It also speaks gRPC-Web, for browsers, with CORS only for the origins it is given.
    let public = vec![SERVICE_NAME, AUTHORIZATION_SERVICE_NAME];
    let options = ServeOptions::new(&args.server, public.clone(), auth)
        .reflect_only(public)
        .with_grpc_web(args.cors_allowed_origins.clone());
    let routes = Routes::new(service).add_service(authorization);
    serve(listener, routes, options, shutdown).await
}
