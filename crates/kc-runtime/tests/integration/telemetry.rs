//! Telemetry: the per-RPC server span continues the caller's W3C trace, records the gRPC
//! status of unary, trailers-only and streaming responses, logs one event per RPC at the
//! right level, and clients propagate the current trace context: the child context of the
//! server span when spans are exported, the incoming `traceparent`/`tracestate` unchanged
//! when they are not.
//!
//! Each test installs its own subscriber (thread-local, on a current-thread runtime, so the
//! server's tasks see it too): the `tracing-opentelemetry` layer over an SDK tracer provider
//! whose exporter keeps the finished spans in memory, plus a layer recording every event;
//! or, for the tests without export, no OpenTelemetry layer at all.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kc_runtime::telemetry::{
    self, IncomingTraceContext, LogFormat, RPC_TARGET, RpcTraceLayer, TraceContextInterceptor,
    inject_trace_context,
};
use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::{
    SpanId, SpanKind, Status as SpanStatus, TraceContextExt as _, TraceId, TracerProvider as _,
};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::transport::{Channel, Server};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
use tracing::field::{Field, Visit};
use tracing::{Instrument as _, Level, Subscriber};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::{Context as LayerContext, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;

use crate::status::{StatusService, call};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SPAN_ID: &str = "00f067aa0ba902b7";
const WAIT: Duration = Duration::from_secs(10);

fn traceparent() -> String {
    format!("00-{TRACE_ID}-{SPAN_ID}-01")
}

/// Keeps every exported span.
#[derive(Clone, Debug, Default)]
struct MemoryExporter(Arc<Mutex<Vec<SpanData>>>);

impl SpanExporter for MemoryExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.0.lock().unwrap().extend(batch);
        Ok(())
    }
}

/// One event as a subscriber saw it: level, target, own fields and the fields of the span
/// it happened in.
#[derive(Clone, Debug)]
struct RecordedEvent {
    level: Level,
    target: String,
    fields: BTreeMap<String, String>,
    span_fields: BTreeMap<String, String>,
}

#[derive(Default)]
struct FieldMap(BTreeMap<String, String>);

impl Visit for FieldMap {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

/// Records every event with the fields of its span, and wakes waiters.
#[derive(Clone, Default)]
struct EventRecorder {
    events: Arc<Mutex<Vec<RecordedEvent>>>,
    recorded: Arc<Notify>,
}

impl<S> tracing_subscriber::Layer<S> for EventRecorder
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: LayerContext<'_, S>,
    ) {
        let mut fields = FieldMap::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: LayerContext<'_, S>,
    ) {
        if let Some(span) = ctx.span(id)
            && let Some(fields) = span.extensions_mut().get_mut::<FieldMap>()
        {
            values.record(fields);
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: LayerContext<'_, S>) {
        let mut fields = FieldMap::default();
        event.record(&mut fields);
        let span_fields = ctx
            .event_span(event)
            .and_then(|span| span.extensions().get::<FieldMap>().map(|f| f.0.clone()))
            .unwrap_or_default();
        self.events.lock().unwrap().push(RecordedEvent {
            level: *event.metadata().level(),
            target: event.metadata().target().to_owned(),
            fields: fields.0,
            span_fields,
        });
        self.recorded.notify_waiters();
    }
}

/// A per-test subscriber with in-memory span export and event recording.
struct Harness {
    spans: Arc<Mutex<Vec<SpanData>>>,
    recorder: EventRecorder,
    _provider: SdkTracerProvider,
    _default: tracing::subscriber::DefaultGuard,
}

impl Harness {
    fn install() -> Self {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        let exporter = MemoryExporter::default();
        let spans = exporter.0.clone();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter)
            .build();
        let recorder = EventRecorder::default();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")))
            .with(recorder.clone())
            .with(
                Targets::new()
                    .with_target("kc_runtime", Level::TRACE)
                    .with_target(module_path!(), Level::TRACE),
            );
        let default = tracing::subscriber::set_default(subscriber);
        Harness {
            spans,
            recorder,
            _provider: provider,
            _default: default,
        }
    }

    /// The exported span named `name` (the `otel.name`, e.g. `grpc.health.v1.Health/Check`).
    fn span(&self, name: &str) -> SpanData {
        let spans = self.spans.lock().unwrap();
        let found: Vec<_> = spans.iter().filter(|span| span.name == name).collect();
        assert_eq!(
            found.len(),
            1,
            "exactly one exported span {name}, got {:?}",
            spans.iter().map(|s| &s.name).collect::<Vec<_>>()
        );
        found[0].clone()
    }

    /// The `rpc finished` events of RPCs of `method`.
    fn rpc_events(&self, method: &str) -> Vec<RecordedEvent> {
        self.recorder
            .events
            .lock()
            .unwrap()
            .iter()
            .filter(|event| {
                event.target == RPC_TARGET
                    && event.fields.get("message").map(String::as_str) == Some("rpc finished")
                    && event.fields.get("rpc.method").map(String::as_str) == Some(method)
            })
            .cloned()
            .collect()
    }

    /// The one `rpc finished` event of `method`, waiting for it to be emitted.
    async fn wait_rpc_event(&self, method: &str) -> RecordedEvent {
        let wait = async {
            loop {
                let recorded = self.recorder.recorded.notified();
                tokio::pin!(recorded);
                recorded.as_mut().enable();
                if let Some(event) = self.rpc_events(method).first() {
                    return event.clone();
                }
                recorded.await;
            }
        };
        let event = tokio::time::timeout(WAIT, wait)
            .await
            .unwrap_or_else(|_| panic!("no rpc event for {method}"));
        assert_eq!(self.rpc_events(method).len(), 1, "one event per rpc");
        event
    }
}

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.as_str().into_owned())
}

/// Serves health (everything SERVING) and [`StatusService`] behind [`RpcTraceLayer`].
async fn serve() -> (SocketAddr, Channel) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_reporter, health) = tonic_health::server::health_reporter();
    tokio::spawn(
        Server::builder()
            .layer(RpcTraceLayer::default())
            .add_service(health)
            .add_service(StatusService)
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    (addr, channel)
}

fn check_request(service: &str, traceparent: Option<&str>) -> tonic::Request<HealthCheckRequest> {
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: service.to_owned(),
    });
    if let Some(traceparent) = traceparent {
        request
            .metadata_mut()
            .insert("traceparent", MetadataValue::try_from(traceparent).unwrap());
    }
    request
}

/// Serves (see [`serve`]) and calls its health `Check` of `service`, with `traceparent`.
async fn check_served(
    service: &str,
    traceparent: Option<&str>,
) -> Result<tonic::Response<tonic_health::pb::HealthCheckResponse>, tonic::Status> {
    let (_addr, channel) = serve().await;
    HealthClient::new(channel)
        .check(check_request(service, traceparent))
        .await
}

#[tokio::test]
async fn server_span_continues_the_callers_trace() {
    let harness = Harness::install();
    let response = check_served("", Some(&traceparent())).await.unwrap();
    assert_eq!(response.get_ref().status(), ServingStatus::Serving);

    let span = harness.span("grpc.health.v1.Health/Check");
    assert_eq!(
        span.span_context.trace_id(),
        TraceId::from_hex(TRACE_ID).unwrap()
    );
    assert_eq!(span.parent_span_id, SpanId::from_hex(SPAN_ID).unwrap());
    assert!(span.parent_span_is_remote);
    assert_eq!(span.span_kind, SpanKind::Server);
    assert_eq!(attribute(&span, "rpc.system").as_deref(), Some("grpc"));
    assert_eq!(
        attribute(&span, "rpc.service").as_deref(),
        Some("grpc.health.v1.Health")
    );
    assert_eq!(attribute(&span, "rpc.method").as_deref(), Some("Check"));
    assert_eq!(attribute(&span, "grpc.code").as_deref(), Some("OK"));
    assert_eq!(attribute(&span, "trace_id").as_deref(), Some(TRACE_ID));
    assert!(attribute(&span, "latency_ms").is_some());
    assert_eq!(span.status, SpanStatus::Unset);

    // Health checks are logged at debug, inside the span (so the log line has the trace id).
    let event = harness.wait_rpc_event("Check").await;
    assert_eq!(event.level, Level::DEBUG);
    assert_eq!(event.fields["grpc.code"], "OK");
    assert_eq!(event.fields["rpc.service"], "grpc.health.v1.Health");
    assert!(event.fields["latency_ms"].parse::<f64>().unwrap() >= 0.0);
    assert_eq!(event.span_fields["trace_id"], TRACE_ID);
    assert_eq!(event.span_fields["grpc.code"], "OK");
}

#[tokio::test]
async fn server_span_without_caller_context_starts_a_trace() {
    let harness = Harness::install();
    check_served("", None).await.unwrap();

    let span = harness.span("grpc.health.v1.Health/Check");
    assert!(span.span_context.is_valid());
    assert_ne!(
        span.span_context.trace_id(),
        TraceId::from_hex(TRACE_ID).unwrap()
    );
    assert_eq!(span.parent_span_id, SpanId::INVALID);
    assert_eq!(
        attribute(&span, "trace_id"),
        Some(span.span_context.trace_id().to_string())
    );
}

#[tokio::test]
async fn trailers_only_error_records_its_code() {
    let harness = Harness::install();
    let status = check_served("no.such.Service", Some(&traceparent()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);

    let span = harness.span("grpc.health.v1.Health/Check");
    assert_eq!(attribute(&span, "grpc.code").as_deref(), Some("NOT_FOUND"));
    assert_eq!(
        span.span_context.trace_id(),
        TraceId::from_hex(TRACE_ID).unwrap()
    );
    let event = harness.wait_rpc_event("Check").await;
    assert_eq!(event.fields["grpc.code"], "NOT_FOUND");
}

#[tokio::test]
async fn event_level_follows_the_status() {
    let harness = Harness::install();
    let (_addr, channel) = serve().await;

    for (method, code, name, level, status) in [
        (
            "Internal",
            tonic::Code::Internal,
            "INTERNAL",
            Level::ERROR,
            true,
        ),
        (
            "Unavailable",
            tonic::Code::Unavailable,
            "UNAVAILABLE",
            Level::WARN,
            true,
        ),
        (
            "InvalidArgument",
            tonic::Code::InvalidArgument,
            "INVALID_ARGUMENT",
            Level::INFO,
            false,
        ),
    ] {
        let returned = call(&channel, &format!("/test.Status/{method}")).await;
        assert_eq!(returned.code(), code);
        let event = harness.wait_rpc_event(method).await;
        assert_eq!(event.level, level, "{method}");
        assert_eq!(event.fields["grpc.code"], name);
        assert_eq!(event.fields["rpc.service"], "test.Status");
        let span = harness.span(&format!("test.Status/{method}"));
        assert_eq!(attribute(&span, "grpc.code").as_deref(), Some(name));
        assert_eq!(
            matches!(span.status, SpanStatus::Error { .. }),
            status,
            "{method}: span status {:?}",
            span.status
        );
    }
}

#[tokio::test]
async fn streaming_rpc_is_recorded_when_the_client_goes_away() {
    let harness = Harness::install();
    let (_addr, channel) = serve().await;

    let mut request = tonic::Request::new(HealthCheckRequest {
        service: String::new(),
    });
    request.metadata_mut().insert(
        "traceparent",
        MetadataValue::try_from(traceparent()).unwrap(),
    );
    let mut stream = HealthClient::new(channel)
        .watch(request)
        .await
        .unwrap()
        .into_inner();
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(first.status(), ServingStatus::Serving);
    assert!(
        harness.rpc_events("Watch").is_empty(),
        "a live stream is not finished"
    );
    drop(stream);

    let event = harness.wait_rpc_event("Watch").await;
    assert_eq!(event.fields["grpc.code"], "CANCELLED");
    let span = harness.span("grpc.health.v1.Health/Watch");
    assert_eq!(
        span.span_context.trace_id(),
        TraceId::from_hex(TRACE_ID).unwrap()
    );
    assert_eq!(attribute(&span, "grpc.code").as_deref(), Some("CANCELLED"));
}

/// A span whose parent is the remote caller `traceparent()`.
fn span_with_remote_parent() -> tracing::Span {
    let mut headers = http::HeaderMap::new();
    headers.insert("traceparent", traceparent().parse().unwrap());
    let parent = telemetry::extract_trace_context(&headers);
    assert!(parent.span().span_context().is_remote());
    let span = tracing::info_span!("client");
    span.set_parent(parent).unwrap();
    span
}

#[tokio::test]
async fn inject_writes_the_current_trace_context() {
    let _harness = Harness::install();

    let mut outside = MetadataMap::new();
    inject_trace_context(&mut outside);
    assert!(outside.get("traceparent").is_none(), "no span, no context");

    let span = span_with_remote_parent();
    let span_id = span.context().span().span_context().span_id();
    let mut metadata = MetadataMap::new();
    span.in_scope(|| inject_trace_context(&mut metadata));
    let written = metadata.get("traceparent").unwrap().to_str().unwrap();
    assert_eq!(written, format!("00-{TRACE_ID}-{span_id}-01"));
    assert_ne!(span_id, SpanId::from_hex(SPAN_ID).unwrap());

    // And it round-trips through the propagator.
    let mut headers = http::HeaderMap::new();
    headers.insert("traceparent", written.parse().unwrap());
    let extracted = TraceContextPropagator::new().extract(&HeaderPairs(&headers));
    assert_eq!(
        extracted.span().span_context().trace_id(),
        TraceId::from_hex(TRACE_ID).unwrap()
    );
}

struct HeaderPairs<'a>(&'a http::HeaderMap);

impl opentelemetry::propagation::Extractor for HeaderPairs<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

#[tokio::test]
async fn interceptor_carries_the_trace_to_the_server() {
    let harness = Harness::install();
    let (_addr, channel) = serve().await;

    let span = span_with_remote_parent();
    let client_span_id = span.context().span().span_context().span_id();
    let mut client = HealthClient::with_interceptor(channel, TraceContextInterceptor);
    async {
        client
            .check(tonic::Request::new(HealthCheckRequest::default()))
            .await
            .unwrap();
    }
    .instrument(span)
    .await;

    let server = harness.span("grpc.health.v1.Health/Check");
    assert_eq!(
        server.span_context.trace_id(),
        TraceId::from_hex(TRACE_ID).unwrap()
    );
    assert_eq!(server.parent_span_id, client_span_id);
    assert!(server.parent_span_is_remote);
}

#[tokio::test]
async fn init_twice_is_harmless_and_without_export_propagates_the_incoming_context() {
    assert!(
        std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_none(),
        "run the tests without OTEL_EXPORTER_OTLP_ENDPOINT"
    );
    let first = telemetry::init("kc-test", LogFormat::Json).unwrap();
    let second = telemetry::init("kc-test", LogFormat::Pretty).unwrap();
    assert!(!first.is_exporting(), "no endpoint, no export");
    assert!(!second.is_exporting());

    // The global subscriber (no thread default here) has no OpenTelemetry layer: an RPC
    // span has no trace context of its own, and the incoming one is sent on unchanged.
    let span = tracing::info_span!(target: RPC_TARGET, "rpc");
    assert!(!span.context().span().span_context().is_valid());
    let mut headers = http::HeaderMap::new();
    headers.insert("traceparent", traceparent().parse().unwrap());
    let incoming = IncomingTraceContext::from_headers(&headers);
    let mut metadata = MetadataMap::new();
    telemetry::with_incoming(incoming, async {
        span.in_scope(|| inject_trace_context(&mut metadata));
    })
    .await;
    assert_eq!(metadata.get("traceparent").unwrap(), traceparent().as_str());
    drop(second);
    drop(first);
}

/// What the downstream service of [`Relay`] saw of one call.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Seen {
    /// The `service` field of the check, naming the relay's method that made the call.
    via: String,
    traceparent: Option<String>,
    tracestate: Option<String>,
}

/// Health service that records the trace-context metadata of every check it answers.
#[derive(Clone, Default)]
struct Downstream {
    seen: Arc<Mutex<Vec<Seen>>>,
}

/// The response stream of a test health service's `Watch`.
type HealthStream = std::pin::Pin<
    Box<
        dyn futures::Stream<Item = Result<tonic_health::pb::HealthCheckResponse, tonic::Status>>
            + Send,
    >,
>;
#[tonic::async_trait]
impl tonic_health::pb::health_server::Health for Downstream {
    async fn check(
        &self,
        request: tonic::Request<HealthCheckRequest>,
    ) -> Result<tonic::Response<tonic_health::pb::HealthCheckResponse>, tonic::Status> {
        let header = |name: &str| {
            request
                .metadata()
                .get(name)
                .map(|value| value.to_str().unwrap().to_owned())
        };
        self.seen.lock().unwrap().push(Seen {
            via: request.get_ref().service.clone(),
            traceparent: header("traceparent"),
            tracestate: header("tracestate"),
        });
        Ok(tonic::Response::new(
            tonic_health::pb::HealthCheckResponse {
                status: ServingStatus::Serving.into(),
            },
        ))
    }

    type WatchStream = HealthStream;

    async fn watch(
        &self,
        _request: tonic::Request<HealthCheckRequest>,
    ) -> Result<tonic::Response<Self::WatchStream>, tonic::Status> {
        Err(tonic::Status::unimplemented("not watched"))
    }
}

/// Health service whose every RPC calls [`Downstream`] through [`TraceContextInterceptor`]:
/// `Check` from its handler, `Watch` from its response stream (so while the server polls
/// the response body).
#[derive(Clone)]
struct Relay {
    downstream: Channel,
}

impl Relay {
    async fn call_downstream(
        downstream: Channel,
        via: &str,
    ) -> Result<tonic_health::pb::HealthCheckResponse, tonic::Status> {
        let mut client = HealthClient::with_interceptor(downstream, TraceContextInterceptor);
        let response = client
            .check(tonic::Request::new(HealthCheckRequest {
                service: via.to_owned(),
            }))
            .await?;
        Ok(response.into_inner())
    }
}

#[tonic::async_trait]
impl tonic_health::pb::health_server::Health for Relay {
    async fn check(
        &self,
        _request: tonic::Request<HealthCheckRequest>,
    ) -> Result<tonic::Response<tonic_health::pb::HealthCheckResponse>, tonic::Status> {
        Relay::call_downstream(self.downstream.clone(), "check")
            .await
            .map(tonic::Response::new)
    }

    type WatchStream = HealthStream;

    async fn watch(
        &self,
        _request: tonic::Request<HealthCheckRequest>,
    ) -> Result<tonic::Response<Self::WatchStream>, tonic::Status> {
        let downstream = self.downstream.clone();
        let stream =
            futures::stream::once(async move { Relay::call_downstream(downstream, "watch").await });
        Ok(tonic::Response::new(Box::pin(stream)))
    }
}

/// Serves [`Downstream`] (without the layer) and [`Relay`] behind [`RpcTraceLayer`], calling
/// it; returns a channel to the relay and what the downstream service saw.
async fn serve_relay() -> (Channel, Arc<Mutex<Vec<Seen>>>) {
    let downstream = Downstream::default();
    let seen = downstream.seen.clone();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let downstream_addr = listener.local_addr().unwrap();
    tokio::spawn(
        Server::builder()
            .add_service(tonic_health::pb::health_server::HealthServer::new(
                downstream,
            ))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    let downstream = Channel::from_shared(format!("http://{downstream_addr}"))
        .unwrap()
        .connect_lazy();

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let relay_addr = listener.local_addr().unwrap();
    tokio::spawn(
        Server::builder()
            .layer(RpcTraceLayer::default())
            .add_service(tonic_health::pb::health_server::HealthServer::new(Relay {
                downstream,
            }))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    let channel = Channel::from_shared(format!("http://{relay_addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    (channel, seen)
}

/// Calls the relay's `Check` and `Watch` (reading the one message) with `metadata`.
async fn call_relay(channel: &Channel, metadata: &[(&'static str, &str)]) {
    let request = || {
        let mut request = tonic::Request::new(HealthCheckRequest::default());
        for (name, value) in metadata {
            request
                .metadata_mut()
                .insert(*name, MetadataValue::try_from(*value).unwrap());
        }
        request
    };
    let mut client = HealthClient::new(channel.clone());
    client.check(request()).await.unwrap();
    let mut stream = client.watch(request()).await.unwrap().into_inner();
    stream.next().await.unwrap().unwrap();
}

/// A subscriber that records events and shows every `kc_runtime` span to the logs, with no
/// OpenTelemetry layer: what `telemetry::init` installs without an exporter.
fn logs_only() -> (EventRecorder, tracing::subscriber::DefaultGuard) {
    let recorder = EventRecorder::default();
    let subscriber = tracing_subscriber::registry()
        .with(recorder.clone())
        .with(Targets::new().with_target("kc_runtime", Level::TRACE));
    (recorder, tracing::subscriber::set_default(subscriber))
}

#[tokio::test]
async fn without_export_the_incoming_context_reaches_downstream_calls_unchanged() {
    const TRACESTATE: &str = "vendor=opaque,other=1";
    // Logs showing the RPC spans, then logs hiding them (`RUST_LOG=warn`): propagation is
    // the same.
    for logs in [true, false] {
        let (recorder, _default) = if logs {
            let (recorder, default) = logs_only();
            (Some(recorder), default)
        } else {
            (
                None,
                tracing::subscriber::set_default(tracing::subscriber::NoSubscriber::default()),
            )
        };
        let (channel, seen) = serve_relay().await;

        call_relay(
            &channel,
            &[("traceparent", &traceparent()), ("tracestate", TRACESTATE)],
        )
        .await;
        let expected = |via: &str| Seen {
            via: via.to_owned(),
            traceparent: Some(traceparent()),
            tracestate: Some(TRACESTATE.to_owned()),
        };
        assert_eq!(
            *seen.lock().unwrap(),
            [expected("check"), expected("watch")],
            "logs: {logs}"
        );

        // A request without a (valid) trace context: nothing is invented downstream.
        for metadata in [
            &[][..],
            &[("traceparent", "00-garbage"), ("tracestate", "k=v")],
        ] {
            seen.lock().unwrap().clear();
            call_relay(&channel, metadata).await;
            let nothing = |via: &str| Seen {
                via: via.to_owned(),
                traceparent: None,
                tracestate: None,
            };
            assert_eq!(
                *seen.lock().unwrap(),
                [nothing("check"), nothing("watch")],
                "logs: {logs}, metadata: {metadata:?}"
            );
        }

        // The relay's log lines carry the caller's trace id.
        if let Some(recorder) = recorder {
            let events = recorder.events.lock().unwrap();
            let traced: Vec<_> = events
                .iter()
                .filter(|event| {
                    event.target == RPC_TARGET
                        && event.fields.get("rpc.method").map(String::as_str) == Some("Check")
                })
                .map(|event| event.span_fields.get("trace_id").cloned())
                .collect();
            assert_eq!(traced.len(), 3, "{events:?}");
            assert_eq!(traced[0].as_deref(), Some(TRACE_ID));
            assert_eq!(traced[1..], [None, None]);
        }
    }
}

#[tokio::test]
async fn with_export_downstream_calls_carry_the_server_spans_context() {
    let harness = Harness::install();
    let (channel, seen) = serve_relay().await;

    call_relay(
        &channel,
        &[
            ("traceparent", &traceparent()),
            ("tracestate", "vendor=opaque"),
        ],
    )
    .await;
    // The watch span ends when its stream does, after the downstream call.
    let _ = harness.wait_rpc_event("Watch").await;

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    for (via, name) in [
        ("check", "grpc.health.v1.Health/Check"),
        ("watch", "grpc.health.v1.Health/Watch"),
    ] {
        let server = harness.span(name);
        assert_eq!(
            server.span_context.trace_id(),
            TraceId::from_hex(TRACE_ID).unwrap()
        );
        let call = seen.iter().find(|seen| seen.via == via).unwrap();
        assert_eq!(
            call.traceparent.as_deref(),
            Some(format!("00-{TRACE_ID}-{}-01", server.span_context.span_id()).as_str()),
            "{via}: the child context of the relay's span, not the incoming one"
        );
        assert_eq!(call.tracestate.as_deref(), Some("vendor=opaque"), "{via}");
    }
}
