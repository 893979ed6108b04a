//! Logs, OpenTelemetry traces, the per-RPC span layer and W3C trace-context propagation.
//!
//! A service binary calls [`init`] once at start (inside its Tokio runtime) and keeps the
//! returned [`TelemetryGuard`] alive until it exits; its server gets [`RpcTraceLayer`], and
//! its clients of other services get [`TraceContextInterceptor`] (or call
//! [`inject_trace_context`]), so one trace follows a request across every internal call.
//!
//! OpenTelemetry costs only when traces are exported: without
//! `OTEL_EXPORTER_OTLP_ENDPOINT` no OpenTelemetry layer is installed and no span is made
//! for propagation; the W3C `traceparent` and `tracestate` a request came with are sent on
//! unchanged with every internal call made while serving it, and a request without one
//! sends none (see the `propagation` notes on [`inject_trace_context`]).

mod propagation;
mod rpc;

use std::io::IsTerminal as _;
use std::time::Duration;

use anyhow::{Context as _, bail};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithTonicConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{EnvFilter, FilterExt as _, filter_fn};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

pub use crate::error::code_name;
pub use propagation::{
    IncomingTraceContext, TraceContextInterceptor, extract_trace_context, inject_trace_context,
    with_incoming,
};
pub use rpc::{RPC_TARGET, RpcTrace, RpcTraceBody, RpcTraceFuture, RpcTraceLayer};

/// Filter directives applied before `RUST_LOG`: `info` overall, and only warnings from
/// chatty dependencies. `RUST_LOG` directives come after and override these (e.g.
/// `RUST_LOG=debug` keeps `h2` at `warn`; `RUST_LOG=debug,h2=debug` does not).
const DEFAULT_DIRECTIVES: &str = "info,h2=warn,hyper=warn,tower=warn,sqlx=warn,opentelemetry=warn";

/// Environment variable whose presence turns on OTLP trace export.
const OTLP_ENDPOINT_VAR: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// How long dropping the [`TelemetryGuard`] waits for buffered spans to be exported.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Format of the log lines written to stderr.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable single lines, with the fields of the enclosing spans; coloured when
    /// stderr is a terminal.
    #[default]
    Pretty,
    /// One JSON object per line: event fields flattened to the top level, the current
    /// span's fields under `span`.
    Json,
}

/// Keeps trace export running; dropping it flushes the spans still buffered and shuts the
/// exporter down (waiting at most five seconds).
///
/// Drop it at the very end of `main`, while the Tokio runtime is still running: the OTLP
/// exporter needs the runtime to send the last batch.
#[must_use = "dropping the guard stops trace export"]
#[derive(Debug)]
pub struct TelemetryGuard {
    /// The provider to shut down: only when spans are exported, so only when this call of
    /// [`init`] installed the subscriber.
    provider: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    /// Whether spans are exported over OTLP by this guard's pipeline.
    pub fn is_exporting(&self) -> bool {
        self.provider.is_some()
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(error) = provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT)
        {
            tracing::warn!(%error, "trace exporter shutdown failed");
        }
    }
}

/// Sets up logging and tracing for the process `service_name`.
///
/// - Logs go to stderr in `format`, filtered by `RUST_LOG` (default `info`, with `h2`,
///   `hyper`, `tower`, `sqlx` and `opentelemetry` at `warn` unless `RUST_LOG` says
///   otherwise).
/// - The W3C `TraceContextPropagator` becomes the global propagator.
/// - When `OTEL_EXPORTER_OTLP_ENDPOINT` is set (and `OTEL_SDK_DISABLED` is not `true`),
///   the OpenTelemetry layer is installed: every span `RUST_LOG` enables, and the per-RPC
///   spans of [`RpcTraceLayer`] at `info` whatever `RUST_LOG` says, get an OpenTelemetry
///   trace and span id, and are exported over OTLP/gRPC through a batch processor, with the
///   resource `service.name = service_name`; the exporter reads the other standard
///   `OTEL_*` variables (signal endpoint, headers, timeout, sampler) itself. Outgoing calls
///   carry the context of the current span, so each service's span is a child of its
///   caller's. Export needs a Tokio runtime, so call this from inside one.
/// - Otherwise no OpenTelemetry layer is installed (spans cost only what the logs need):
///   outgoing calls carry the `traceparent` and `tracestate` the request being served came
///   with, unchanged, and nothing when it came with none. Either way propagation never
///   depends on the log level.
///
/// Calling it again in the same process is harmless: the first subscriber stays and the
/// returned guard does nothing.
///
/// # Errors
/// A line naming the bad setting: an invalid `RUST_LOG`, an invalid OTLP exporter
/// configuration, or export requested outside a Tokio runtime.
pub fn init(service_name: &'static str, format: LogFormat) -> anyhow::Result<TelemetryGuard> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());

    let directives = log_directives()?;
    let provider = otlp_exporter()?.map(|exporter| {
        SdkTracerProvider::builder()
            .with_resource(Resource::builder().with_service_name(service_name).build())
            .with_batch_exporter(exporter)
            .build()
    });
    let exporting = provider.is_some();

    // Per-layer filters: the logs follow `RUST_LOG`, while the OpenTelemetry layer also
    // always sees the per-RPC spans, whose contexts are sent on with internal calls.
    let otel_layer = match &provider {
        Some(provider) => {
            let otel_filter = env_filter(&directives)?.or(filter_fn(|metadata| {
                metadata.is_span()
                    && metadata.target() == RPC_TARGET
                    && *metadata.level() <= tracing::Level::INFO
            }));
            Some(
                tracing_opentelemetry::layer()
                    .with_tracer(provider.tracer("kc-runtime"))
                    .with_threads(false)
                    .with_filter(otel_filter),
            )
        }
        None => None,
    };
    // Typed layers stacked one on the other (not a `Vec` of boxed layers): per-layer
    // filters inside a `Vec` lost events whose callsite interest was computed early.
    let (pretty, json) = match format {
        LogFormat::Pretty => (
            Some(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(std::io::stderr().is_terminal())
                    .with_filter(env_filter(&directives)?),
            ),
            None,
        ),
        LogFormat::Json => (
            None,
            Some(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(std::io::stderr)
                    .with_filter(env_filter(&directives)?),
            ),
        ),
    };

    match tracing_subscriber::registry()
        .with(otel_layer)
        .with(pretty)
        .with(json)
        .try_init()
    {
        Ok(()) => {
            if let Some(provider) = &provider {
                opentelemetry::global::set_tracer_provider(provider.clone());
            }
            tracing::info!(
                service = service_name,
                otlp_export = exporting,
                "telemetry initialised"
            );
            Ok(TelemetryGuard { provider })
        }
        Err(_) => {
            // Dropping the unused provider shuts its (idle) exporter down.
            tracing::debug!(
                service = service_name,
                "telemetry already initialised, keeping the existing subscriber"
            );
            Ok(TelemetryGuard { provider: None })
        }
    }
}

/// The filter directives: the defaults followed by `RUST_LOG`.
fn log_directives() -> anyhow::Result<String> {
    let user = match std::env::var(EnvFilter::DEFAULT_ENV) {
        Ok(value) => value,
        Err(std::env::VarError::NotPresent) => String::new(),
        Err(std::env::VarError::NotUnicode(_)) => bail!("invalid RUST_LOG: not valid unicode"),
    };
    let user = user.trim();
    // Validate `RUST_LOG` on its own, so the error points at it.
    if !user.is_empty() {
        EnvFilter::builder()
            .parse(user)
            .with_context(|| format!("invalid RUST_LOG `{user}`"))?;
    }
    Ok(if user.is_empty() {
        DEFAULT_DIRECTIVES.to_owned()
    } else {
        format!("{DEFAULT_DIRECTIVES},{user}")
    })
}

fn env_filter(directives: &str) -> anyhow::Result<EnvFilter> {
    EnvFilter::builder()
        .parse(directives)
        .with_context(|| format!("invalid RUST_LOG `{directives}`"))
}

/// The OTLP span exporter, when `OTEL_EXPORTER_OTLP_ENDPOINT` asks for one.
fn otlp_exporter() -> anyhow::Result<Option<opentelemetry_otlp::SpanExporter>> {
    let requested = std::env::var_os(OTLP_ENDPOINT_VAR).is_some_and(|value| !value.is_empty());
    let disabled = std::env::var("OTEL_SDK_DISABLED")
        .is_ok_and(|value| value.trim().eq_ignore_ascii_case("true"));
    if !requested || disabled {
        return Ok(None);
    }
    if tokio::runtime::Handle::try_current().is_err() {
        bail!("{OTLP_ENDPOINT_VAR} is set but telemetry was initialised outside a tokio runtime");
    }
    let mut builder = opentelemetry_otlp::SpanExporter::builder().with_tonic();
    if let Some(tls) = otlp_tls()? {
        builder = builder.with_tls_config(tls);
    }
    let exporter = builder
        .build()
        .with_context(|| format!("invalid {OTLP_ENDPOINT_VAR} (otlp span exporter)"))?;
    Ok(Some(exporter))
}

/// The OpenTelemetry variables naming the collector's CA and this exporter's client
/// certificate and key (PEM files), for an `https://` endpoint.
const OTLP_CERTIFICATE_VAR: &str = "OTEL_EXPORTER_OTLP_CERTIFICATE";
const OTLP_CLIENT_CERTIFICATE_VAR: &str = "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE";
const OTLP_CLIENT_KEY_VAR: &str = "OTEL_EXPORTER_OTLP_CLIENT_KEY";

/// TLS of an `https://` OTLP endpoint, from the OpenTelemetry variables: the collector is
/// trusted with the CA of `OTEL_EXPORTER_OTLP_CERTIFICATE` (required), and
/// `OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE` with `OTEL_EXPORTER_OTLP_CLIENT_KEY` are
/// presented when the collector requires mTLS. `None` for an `http://` endpoint.
fn otlp_tls() -> anyhow::Result<Option<tonic::transport::ClientTlsConfig>> {
    let endpoint = std::env::var(OTLP_ENDPOINT_VAR).unwrap_or_default();
    let Ok(uri) = endpoint.parse::<http::Uri>() else {
        bail!("invalid {OTLP_ENDPOINT_VAR} `{endpoint}`");
    };
    if uri.scheme_str() != Some("https") {
        return Ok(None);
    }
    let Some(ca) = std::env::var_os(OTLP_CERTIFICATE_VAR).filter(|ca| !ca.is_empty()) else {
        bail!("{OTLP_ENDPOINT_VAR} is https:// but {OTLP_CERTIFICATE_VAR} names no CA file");
    };
    let client = |var: &str| std::env::var_os(var).filter(|path| !path.is_empty());
    let files = crate::tls::ClientTlsFiles {
        ca_file: Some(ca.into()),
        cert_file: client(OTLP_CLIENT_CERTIFICATE_VAR).map(Into::into),
        key_file: client(OTLP_CLIENT_KEY_VAR).map(Into::into),
    };
    let tls = crate::tls::ClientTls::load(&files)
        .with_context(|| format!("{OTLP_CERTIFICATE_VAR} (otlp span exporter)"))?
        .expect("a ca file was given");
    Ok(Some(tls.for_host(uri.host().unwrap_or_default())))
}
