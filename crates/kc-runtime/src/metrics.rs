//! Prometheus metrics: the process-wide recorder of the `metrics` facade, rendered as the
//! Prometheus text format by `metrics-exporter-prometheus`, and served at `/metrics` on
//! the port of `--metrics-listen` (its own port, never the gRPC one).
//!
//! What every service exports (see the README's "Metrics" section):
//! - `grpc_server_handled_total{grpc_service,grpc_method,grpc_code}`: RPCs completed, by
//!   code, and `grpc_server_handling_seconds{grpc_service,grpc_method}`: their latency, a
//!   histogram; both written once, by the per-RPC layer ([`crate::telemetry::RpcTraceLayer`]),
//!   with the names grpc-ecosystem's Go and Java middlewares use (a path that names no
//!   method of the suite counts under `unknown` labels);
//! - `keycontacts_db_pool_connections_in_use{schema}`, `…_idle{schema}` and `…_max{schema}`:
//!   the service's Postgres pool, sampled every few seconds and at every scrape.
//!
//! Services add their own (`keycontacts_…`) with the `metrics` macros. Until [`install`]
//! runs (no `--metrics-listen`) there is no recorder: the macros do nothing, and the per-RPC
//! layer skips even building the labels.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use http_body_util::Full;
use hyper::body::Bytes;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use prost::Message as _;
use sqlx::PgPool;
use tokio::net::TcpListener;

use crate::shutdown::Shutdown;

/// Counter of completed RPCs, by service, method and gRPC code.
pub const RPC_HANDLED: &str = "grpc_server_handled_total";
/// Histogram of RPC latency in seconds, by service and method.
pub const RPC_HANDLING_SECONDS: &str = "grpc_server_handling_seconds";
/// Gauge: connections of the pool checked out by a caller.
pub const DB_POOL_IN_USE: &str = "keycontacts_db_pool_connections_in_use";
/// Gauge: open connections of the pool waiting for a caller.
pub const DB_POOL_IDLE: &str = "keycontacts_db_pool_connections_idle";
/// Gauge: most connections the pool opens.
pub const DB_POOL_MAX: &str = "keycontacts_db_pool_connections_max";

/// Buckets of [`RPC_HANDLING_SECONDS`], in seconds: from a cached read (a millisecond) to
/// the default request timeout (30 s).
pub const RPC_LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// How often the endpoint's task samples the pools and drains histogram samples into the
/// rendered buckets (the exporter's own default).
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// The service and method labels of an RPC whose path names no method of the suite (nor of
/// health or reflection): one series for them all, so that callers cannot create series by
/// inventing paths (they are refused, `UNAUTHENTICATED` or `UNIMPLEMENTED`, all the same).
const UNKNOWN: &str = "unknown";

/// Every method a keycontacts server can serve, by path (`/package.Service/Method`): those
/// of kc-proto, health and reflection, with their service and method names.
static KNOWN_METHODS: OnceLock<HashMap<String, (String, String)>> = OnceLock::new();

fn known_methods() -> &'static HashMap<String, (String, String)> {
    KNOWN_METHODS.get_or_init(|| {
        let mut methods = HashMap::new();
        for encoded in [
            kc_proto::FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
        ] {
            // The sets are built into the binary; one that does not decode names nothing.
            let Ok(set) = prost_types::FileDescriptorSet::decode(encoded) else {
                continue;
            };
            for file in &set.file {
                for service in &file.service {
                    let service_name = format!("{}.{}", file.package(), service.name());
                    for method in &service.method {
                        methods.insert(
                            format!("/{service_name}/{}", method.name()),
                            (service_name.clone(), method.name().to_owned()),
                        );
                    }
                }
            }
        }
        methods
    })
}

/// The `grpc_service` and `grpc_method` labels of the RPC at `path`: its names when the
/// suite has such a method, `unknown` otherwise.
pub fn rpc_labels(path: &str) -> (&'static str, &'static str) {
    match known_methods().get(path) {
        Some((service, method)) => (service, method),
        None => (UNKNOWN, UNKNOWN),
    }
}

static HANDLE: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Installs the process-wide Prometheus recorder (once; later calls return the same
/// handle). Fails when another recorder was installed first.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    let result = HANDLE.get_or_init(|| {
        let handle = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full(RPC_HANDLING_SECONDS.to_owned()),
                &RPC_LATENCY_BUCKETS,
            )
            .map_err(|error| error.to_string())?
            .install_recorder()
            .map_err(|error| error.to_string())?;
        describe();
        ENABLED.store(true, Ordering::Release);
        Ok(handle)
    });
    result
        .clone()
        .map_err(|error| anyhow::anyhow!("metrics: cannot install the recorder: {error}"))
}

/// Whether a recorder is installed (the metrics are collected).
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Acquire)
}

fn describe() {
    ::metrics::describe_counter!(
        RPC_HANDLED,
        "RPCs completed on the server, by service, method and gRPC status code."
    );
    ::metrics::describe_histogram!(
        RPC_HANDLING_SECONDS,
        ::metrics::Unit::Seconds,
        "Time from an RPC's request to its status, on the server."
    );
    ::metrics::describe_gauge!(
        DB_POOL_IN_USE,
        "Connections of the service's Postgres pool checked out by a caller."
    );
    ::metrics::describe_gauge!(
        DB_POOL_IDLE,
        "Open connections of the service's Postgres pool waiting for a caller."
    );
    ::metrics::describe_gauge!(
        DB_POOL_MAX,
        "Most connections the service's Postgres pool opens."
    );
}

/// Records one completed RPC at `path` (called by the per-RPC layer only), under the labels
/// of [`rpc_labels`].
pub fn record_rpc(path: &str, code: tonic::Code, elapsed: Duration) {
    if !enabled() {
        return;
    }
    let (service, method) = rpc_labels(path);
    ::metrics::counter!(
        RPC_HANDLED,
        "grpc_service" => service,
        "grpc_method" => method,
        "grpc_code" => crate::error::code_name(code),
    )
    .increment(1);
    ::metrics::histogram!(
        RPC_HANDLING_SECONDS,
        "grpc_service" => service,
        "grpc_method" => method,
    )
    .record(elapsed.as_secs_f64());
}

/// A Postgres pool whose connections the endpoint reports, under the label `schema`.
#[derive(Clone, Debug)]
pub struct PoolGauge {
    /// The `schema` label (the service's schema).
    pub schema: &'static str,
    /// The pool.
    pub pool: PgPool,
}

impl PoolGauge {
    /// Sets the pool's gauges to what it holds now.
    pub fn sample(&self) {
        let open = self.pool.size();
        let idle = u32::try_from(self.pool.num_idle())
            .unwrap_or(u32::MAX)
            .min(open);
        let labels = [("schema", self.schema)];
        ::metrics::gauge!(DB_POOL_IN_USE, &labels).set(f64::from(open - idle));
        ::metrics::gauge!(DB_POOL_IDLE, &labels).set(f64::from(idle));
        ::metrics::gauge!(DB_POOL_MAX, &labels)
            .set(f64::from(self.pool.options().get_max_connections()));
    }
}

/// Binds `addr` for the metrics endpoint, failing with a line that names the setting.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("metrics-listen: cannot bind {addr}"))
}

/// Serves the Prometheus text of `handle` at `GET /metrics` on `listener` (HTTP/1.1; any
/// other path is 404) until `shutdown`, sampling `pools` every few seconds and before each
/// scrape.
pub async fn serve(
    listener: TcpListener,
    handle: PrometheusHandle,
    pools: Vec<PoolGauge>,
    shutdown: Shutdown,
) {
    let upkeep = {
        let (handle, pools) = (handle.clone(), pools.clone());
        async move {
            let mut interval = tokio::time::interval(UPKEEP_INTERVAL);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                pools.iter().for_each(PoolGauge::sample);
                handle.run_upkeep();
            }
        }
    };
    let accept = async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(error = %error, "metrics: cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let (handle, pools) = (handle.clone(), pools.clone());
            let service = hyper::service::service_fn(move |request| {
                let response = respond(&request, &handle, &pools);
                async move { Ok::<_, std::convert::Infallible>(response) }
            });
            tokio::spawn(async move {
                let io = hyper_util::rt::TokioIo::new(stream);
                // A client that goes away mid-request is not the server's concern.
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
    };
    tokio::select! {
        () = upkeep => {}
        () = accept => {}
        () = shutdown.wait() => {}
    }
}

fn respond<B>(
    request: &http::Request<B>,
    handle: &PrometheusHandle,
    pools: &[PoolGauge],
) -> http::Response<Full<Bytes>> {
    let plain = |status: http::StatusCode, body: String| {
        let mut response = http::Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        response
    };
    if request.uri().path() != "/metrics" {
        return plain(
            http::StatusCode::NOT_FOUND,
            "not found: try /metrics\n".into(),
        );
    }
    if !matches!(*request.method(), http::Method::GET | http::Method::HEAD) {
        return plain(
            http::StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed: use GET\n".into(),
        );
    }
    pools.iter().for_each(PoolGauge::sample);
    plain(http::StatusCode::OK, handle.render())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_suites_methods_get_their_own_labels() {
        assert_eq!(
            rpc_labels("/keycontacts.gateway.v1.GatewayService/GetMe"),
            ("keycontacts.gateway.v1.GatewayService", "GetMe")
        );
        assert_eq!(
            rpc_labels("/grpc.health.v1.Health/Check"),
            ("grpc.health.v1.Health", "Check")
        );
        assert_eq!(
            rpc_labels("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"),
            (
                "grpc.reflection.v1.ServerReflection",
                "ServerReflectionInfo"
            )
        );
        for invented in [
            "/keycontacts.gateway.v1.GatewayService/NoSuchMethod",
            "/made.Up/Path",
            "/",
            "",
        ] {
            assert_eq!(rpc_labels(invented), (UNKNOWN, UNKNOWN), "{invented}");
        }
    }
}
