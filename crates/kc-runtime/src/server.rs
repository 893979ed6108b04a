//! Server bootstrap: one port serving the service, `grpc.health.v1`, and reflection v1 and
//! v1alpha, behind the tracing and auth layers, with graceful shutdown on SIGTERM/SIGINT
//! (health NOT_SERVING first, then stop accepting and drain). A public server may also
//! speak gRPC-Web on the same port ([`GrpcWeb`]), with CORS for the origins it names.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use futures::FutureExt as _;
use http::{HeaderName, HeaderValue, Method};
use tokio::net::TcpListener;
use tonic::service::Routes;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::auth::AuthLayer;
use crate::config::ServerArgs;
use crate::telemetry::RpcTraceLayer;

pub use crate::shutdown::Shutdown;

/// Binds the listen address, failing with a line that names the setting.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("listen: cannot bind {addr}"))
}

/// A generated tonic server (`FooServiceServer::new(api)`) that takes and sends messages
/// up to the server's `--max-message-bytes` ([`ServerArgs::max_message_bytes`]) each way.
///
/// ```ignore
/// let service = kc_runtime::with_message_limits!(FooServiceServer::new(api), &args.server);
/// ```
#[macro_export]
macro_rules! with_message_limits {
    ($server:expr, $settings:expr) => {{
        let settings: &$crate::config::ServerArgs = $settings;
        $server
            .max_decoding_message_size(settings.max_message_bytes)
            .max_encoding_message_size(settings.max_message_bytes)
    }};
}

/// Everything [`serve`] needs besides the service's own routes.
pub struct ServeOptions {
    /// Fully qualified names of the services in the routes, reported in health.
    pub service_names: Vec<&'static str>,
    /// Authentication of non-public RPCs.
    pub auth: AuthLayer,
    /// Server-side deadline of one RPC.
    pub request_timeout: Duration,
    /// Time between NOT_SERVING and no longer accepting.
    pub shutdown_delay: Duration,
    /// Time in-flight RPCs get to finish.
    pub shutdown_grace: Duration,
    /// What reflection describes besides health and itself.
    pub reflection: Reflection,
    /// Whether the port also speaks gRPC-Web (over HTTP/1.1 and HTTP/2), and for which
    /// browser origins; `None`: plain gRPC over HTTP/2 only (the internal services).
    pub grpc_web: Option<GrpcWeb>,
    /// Where the Prometheus endpoint listens (`--metrics-listen`); `None`: no metrics.
    pub metrics_listen: Option<SocketAddr>,
    /// The pools whose connections the metrics report.
    pub pools: Vec<crate::metrics::PoolGauge>,
    /// TLS of the port (`--tls-cert-file`, …; see [`crate::tls`]); `None`: plaintext.
    pub tls: Option<crate::tls::ServerTlsFiles>,
}

/// gRPC-Web on a server's port (`application/grpc-web` and `application/grpc-web-text`,
/// translated by `tonic-web`), and the browser origins allowed to call it across origins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrpcWeb {
    /// Origins (`https://app.example.org`) whose cross-origin calls CORS allows. Empty: no
    /// CORS headers at all, so browsers call only from the server's own origin (and clients
    /// that are not browsers, which CORS does not concern, call anyway).
    pub allowed_origins: Vec<HeaderValue>,
}

/// Request headers a gRPC-Web client in a browser sends, allowed by a CORS preflight.
pub const GRPC_WEB_ALLOWED_HEADERS: [&str; 7] = [
    "authorization",
    "content-type",
    "grpc-timeout",
    "x-grpc-web",
    "x-user-agent",
    "traceparent",
    "tracestate",
];

/// Response headers a browser lets a gRPC-Web client read (a trailers-only answer, an
/// error, carries its status in headers rather than in the trailer frame).
pub const GRPC_WEB_EXPOSED_HEADERS: [&str; 3] =
    ["grpc-status", "grpc-message", "grpc-status-details-bin"];

/// How long a browser may keep a preflight's answer (Chromium keeps at most 2 hours).
const CORS_MAX_AGE: Duration = Duration::from_secs(2 * 60 * 60);

impl GrpcWeb {
    /// The CORS layer for the allowed origins; `None` when there are none. Credentials
    /// (cookies) are not allowed: callers send their token in `authorization`.
    pub fn cors(&self) -> Option<tower_http::cors::CorsLayer> {
        use tower_http::cors::{AllowHeaders, AllowMethods, AllowOrigin, CorsLayer, ExposeHeaders};
        if self.allowed_origins.is_empty() {
            return None;
        }
        Some(
            CorsLayer::new()
                .allow_origin(AllowOrigin::list(self.allowed_origins.iter().cloned()))
                .allow_methods(AllowMethods::list([Method::POST]))
                .allow_headers(AllowHeaders::list(
                    GRPC_WEB_ALLOWED_HEADERS.map(HeaderName::from_static),
                ))
                .expose_headers(ExposeHeaders::list(
                    GRPC_WEB_EXPOSED_HEADERS.map(HeaderName::from_static),
                ))
                .max_age(CORS_MAX_AGE),
        )
    }
}

/// The services of kc-proto that reflection describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reflection {
    /// Every service of kc-proto (internal services, whose callers are the suite's own).
    Everything,
    /// Only these services (fully qualified names): the files they need are described, with
    /// every other service's definition removed, so that a public server names nothing of
    /// what is behind it.
    Only(Vec<&'static str>),
}

impl ServeOptions {
    /// Options from the shared server settings.
    pub fn new(args: &ServerArgs, service_names: Vec<&'static str>, auth: AuthLayer) -> Self {
        Self {
            service_names,
            auth,
            request_timeout: args.request_timeout,
            shutdown_delay: args.shutdown_delay,
            shutdown_grace: args.shutdown_grace,
            reflection: Reflection::Everything,
            grpc_web: None,
            metrics_listen: args.metrics_listen,
            pools: Vec::new(),
            tls: args.tls.server_files(),
        }
    }

    /// The same options, with the connections of the service's pool (in its `schema`) in
    /// the metrics.
    pub fn with_pool(mut self, schema: &'static str, pool: &sqlx::PgPool) -> Self {
        self.pools.push(crate::metrics::PoolGauge {
            schema,
            pool: pool.clone(),
        });
        self
    }

    /// The same options, with gRPC-Web (and HTTP/1.1) accepted on the port besides gRPC.
    pub fn with_grpc_web(mut self, grpc_web: GrpcWeb) -> Self {
        self.grpc_web = Some(grpc_web);
        self
    }

    /// The same options, with reflection describing only `services` of kc-proto (plus
    /// health and reflection).
    pub fn reflect_only(mut self, services: Vec<&'static str>) -> Self {
        self.reflection = Reflection::Only(services);
        self
    }
}

/// The descriptors reflection serves: kc-proto's for [`Reflection::Everything`]; for
/// [`Reflection::Only`], the files that define the services and those they import
/// (transitively), with the definitions of every other service removed (and their
/// comments, which the source info locates by service index).
pub fn reflection_descriptors(
    reflection: &Reflection,
) -> anyhow::Result<prost_types::FileDescriptorSet> {
    use prost::Message as _;
    let mut set = prost_types::FileDescriptorSet::decode(kc_proto::FILE_DESCRIPTOR_SET)
        .context("reflection: kc-proto's descriptor set")?;
    let Reflection::Only(services) = reflection else {
        return Ok(set);
    };
    let full_name = |file: &prost_types::FileDescriptorProto, service: &str| {
        format!("{}.{service}", file.package())
    };
    let mut wanted: Vec<String> = set
        .file
        .iter()
        .filter(|file| {
            file.service
                .iter()
                .any(|service| services.contains(&full_name(file, service.name()).as_str()))
        })
        .map(|file| file.name().to_owned())
        .collect();
    for service in services {
        let found = set.file.iter().any(|file| {
            file.service
                .iter()
                .any(|s| full_name(file, s.name()) == *service)
        });
        anyhow::ensure!(found, "reflection: no service {service} in kc-proto");
    }
    let mut index = 0;
    while index < wanted.len() {
        if let Some(file) = set.file.iter().find(|file| file.name() == wanted[index]) {
            for dependency in &file.dependency {
                if !wanted.contains(dependency) {
                    wanted.push(dependency.clone());
                }
            }
        }
        index += 1;
    }
    set.file
        .retain(|file| wanted.iter().any(|name| name == file.name()));
    for file in &mut set.file {
        let package = file.package().to_owned();
        let kept: Vec<bool> = file
            .service
            .iter()
            .map(|service| services.contains(&format!("{package}.{}", service.name()).as_str()))
            .collect();
        let mut keep = kept.iter();
        file.service.retain(|_| *keep.next().unwrap_or(&false));
        // Source info paths of services are [6, index, ...]: renumber the kept ones and drop
        // those of the removed ones.
        let new_index: Vec<Option<i32>> = kept
            .iter()
            .scan(0, |next, kept| {
                Some(kept.then(|| {
                    *next += 1;
                    *next - 1
                }))
            })
            .collect();
        if let Some(info) = file.source_code_info.as_mut() {
            info.location
                .retain_mut(|location| match location.path.as_slice() {
                    [6, old, ..] => match usize::try_from(*old)
                        .ok()
                        .and_then(|old| new_index.get(old).copied().flatten())
                    {
                        Some(new) => {
                            location.path[1] = new;
                            true
                        }
                        None => false,
                    },
                    _ => true,
                });
        }
    }
    Ok(set)
}

/// A health reporter for a server that is not serving yet.
pub fn health() -> (
    HealthReporter,
    tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>,
) {
    tonic_health::server::health_reporter()
}

/// Sets the overall status and that of every named service.
pub async fn set_health(reporter: &HealthReporter, names: &[&'static str], status: ServingStatus) {
    reporter.set_service_status("", status).await;
    for name in names {
        reporter.set_service_status(*name, status).await;
    }
}

/// Serves `routes` (the service's own gRPC services) plus health and reflection on
/// `listener` until `shutdown` triggers, then reports NOT_SERVING, waits `shutdown_delay`,
/// stops accepting and drains for at most `shutdown_grace`.
///
/// With `metrics_listen`, it also serves the Prometheus metrics there (see
/// [`crate::metrics`]) for as long as the server runs; an address it cannot bind fails the
/// start.
///
/// Health turns SERVING as soon as the server accepts: callers run migrations and warm
/// their pool before calling this.
pub async fn serve(
    listener: TcpListener,
    routes: Routes,
    options: ServeOptions,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let (reporter, health_service) = health();
    let reflection = |builder: tonic_reflection::server::Builder<'static>| match &options.reflection
    {
        Reflection::Everything => {
            Ok(builder.register_encoded_file_descriptor_set(kc_proto::FILE_DESCRIPTOR_SET))
        }
        only => reflection_descriptors(only).map(|set| builder.register_file_descriptor_set(set)),
    };
    // The error-detail types (google.rpc.BadRequest, RetryInfo, …) are described too, so
    // that grpcurl prints an error's details instead of "is not recognized".
    let configure = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection(configure())?
        .build_v1()
        .context("reflection v1")?;
    let reflection_v1alpha = reflection(configure())?
        .build_v1alpha()
        .context("reflection v1alpha")?;
    let routes = routes
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);

    let metrics = match options.metrics_listen {
        Some(addr) => {
            let handle = crate::metrics::install()?;
            let metrics_listener = crate::metrics::bind(addr).await?;
            let metrics_addr = metrics_listener
                .local_addr()
                .context("metrics-listen: local address")?;
            tracing::info!(address = %metrics_addr, "serving metrics at /metrics");
            Some(tokio::spawn(crate::metrics::serve(
                metrics_listener,
                handle,
                options.pools.clone(),
                shutdown.clone(),
            )))
        }
        None => None,
    };
    // The endpoint stops with the server, whether it stops on `shutdown` or fails.
    let _metrics = metrics.map(AbortOnDrop);

    let local_addr = listener.local_addr().context("listen: local address")?;
    // Certificates are read before health says SERVING: a bad file fails the start.
    let tls = options
        .tls
        .as_ref()
        .map(|files| crate::tls::ServerTls::load(files, options.grpc_web.is_some()))
        .transpose()?;
    set_health(&reporter, &options.service_names, ServingStatus::Serving).await;
    tracing::info!(
        address = %local_addr,
        services = ?options.service_names,
        tls = tls.is_some(),
        "serving"
    );

    let names = options.service_names.clone();
    let delay = options.shutdown_delay;
    let stop_accepting = {
        let shutdown = shutdown.clone();
        let reporter = reporter.clone();
        async move {
            shutdown.wait().await;
            set_health(&reporter, &names, ServingStatus::NotServing).await;
            tracing::info!(
                delay_ms = delay.as_millis() as u64,
                "not serving; draining soon"
            );
            tokio::time::sleep(delay).await;
        }
    };
    let server = match tls {
        None => grpc_server(
            &options,
            routes,
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            stop_accepting,
        ),
        Some(tls) => grpc_server(
            &options,
            routes,
            tls.incoming(listener, shutdown.clone()),
            stop_accepting,
        ),
    };
    let drain_deadline = async {
        shutdown.wait().await;
        tokio::time::sleep(delay + options.shutdown_grace).await;
    };
    tokio::select! {
        result = server => result.context("grpc server")?,
        () = drain_deadline => {
            tracing::warn!("drain deadline passed with rpcs still in flight; stopping");
        }
    }
    tracing::info!("stopped");
    Ok(())
}

/// Aborts a spawned task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The gRPC server of `routes` on the connections of `incoming` (plain TCP or TLS), with
/// the layers of [`serve`], until `stop_accepting` completes and the calls in flight end.
fn grpc_server<I, IO, IE>(
    options: &ServeOptions,
    routes: Routes,
    incoming: I,
    stop_accepting: impl Future<Output = ()> + Send + 'static,
) -> futures::future::BoxFuture<'static, Result<(), tonic::transport::Error>>
where
    I: futures::Stream<Item = Result<IO, IE>> + Send + 'static,
    IO: tokio::io::AsyncRead
        + tokio::io::AsyncWrite
        + tonic::transport::server::Connected
        + Unpin
        + Send
        + 'static,
    IE: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
{
    let builder = tonic::transport::Server::builder()
        .timeout(options.request_timeout)
        .http2_keepalive_interval(Some(Duration::from_secs(30)));
    // gRPC-Web is translated to gRPC before tracing and auth, which therefore see the same
    // calls whatever the protocol; CORS, outside it, answers preflights (`OPTIONS`).
    match &options.grpc_web {
        None => builder
            .layer(RpcTraceLayer::default())
            .layer(options.auth.clone())
            .add_routes(routes)
            .serve_with_incoming_shutdown(incoming, stop_accepting)
            .boxed(),
        Some(grpc_web) => builder
            .accept_http1(true)
            .layer(tower::util::option_layer(grpc_web.cors()))
            .layer(tonic_web::GrpcWebLayer::new())
            .layer(RpcTraceLayer::default())
            .layer(options.auth.clone())
            .add_routes(routes)
            .serve_with_incoming_shutdown(incoming, stop_accepting)
            .boxed(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GATEWAY: &str = "keycontacts.gateway.v1.GatewayService";

    fn services(set: &prost_types::FileDescriptorSet) -> Vec<String> {
        set.file
            .iter()
            .flat_map(|file| {
                file.service
                    .iter()
                    .map(|service| format!("{}.{}", file.package(), service.name()))
            })
            .collect()
    }

    #[test]
    fn reflection_of_only_some_services_names_no_other() {
        let everything = reflection_descriptors(&Reflection::Everything).unwrap();
        assert!(
            services(&everything).len() > 1,
            "{:?}",
            services(&everything)
        );

        let only = reflection_descriptors(&Reflection::Only(vec![GATEWAY])).unwrap();
        assert_eq!(services(&only), vec![GATEWAY.to_owned()]);
        // Every file the gateway's imports need is still there, so its messages resolve.
        let names: Vec<&str> = only.file.iter().map(|file| file.name()).collect();
        for file in &only.file {
            for dependency in &file.dependency {
                let known = everything.file.iter().any(|f| f.name() == dependency);
                assert!(
                    !known || names.contains(&dependency.as_str()),
                    "{dependency} missing"
                );
            }
        }
        // No comment is left pointing at a removed service.
        for file in &only.file {
            let count = i32::try_from(file.service.len()).unwrap();
            for location in file.source_code_info.iter().flat_map(|info| &info.location) {
                if let [6, index, ..] = location.path.as_slice() {
                    assert!(*index < count, "{}: {:?}", file.name(), location.path);
                }
            }
        }
        assert!(reflection_descriptors(&Reflection::Only(vec!["no.Such"])).is_err());
    }
}
