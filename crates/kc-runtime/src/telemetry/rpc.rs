//! The per-RPC server span: a tower layer for tonic servers that continues the caller's
//! trace, records the gRPC status and the latency, and logs one event per RPC.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use http_body::{Body, Frame, SizeHint};
use opentelemetry::trace::TraceContextExt as _;
use tokio::task::futures::TaskLocalFuture;
use tonic::Code;
use tracing::Span;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::error::code_name;

use super::propagation::{
    IncomingTraceContext, extract_trace_context, sync_with_incoming, with_incoming,
};

/// Target of the per-RPC span and of its completion event, so operators can tune them
/// alone (e.g. `RUST_LOG=info,kc_runtime::rpc=warn` keeps only failed RPCs).
pub const RPC_TARGET: &str = "kc_runtime::rpc";

/// Path prefix of the gRPC health service, whose RPCs (probes) are logged at `debug`.
const HEALTH_PREFIX: &str = "/grpc.health.v1.Health/";

/// Tower layer that gives each RPC served by a tonic server a `rpc` span and one log event.
///
/// For each request it:
/// - continues the caller's trace: the handler, and for streaming responses every poll of
///   the response stream, runs with the request's W3C trace context (`traceparent`,
///   `tracestate`) in a task-local, which outgoing internal calls send on unchanged when no
///   OpenTelemetry span is current (see [`super::inject_trace_context`]);
/// - runs them inside a span named `rpc` (target [`RPC_TARGET`]) with the fields
///   `rpc.system`, `rpc.service`, `rpc.method`, `otel.name`, `otel.kind`, `trace_id`, and at
///   the end `grpc.code` (e.g. `OK`, `NOT_FOUND`), `latency_ms` and `otel.status_code`. With
///   the OpenTelemetry layer installed (trace export, see [`super::init`]) the span always
///   exists, has the caller's context as remote parent, and its context is what outgoing
///   calls carry. Without it the span exists only when the logs show it (`RUST_LOG`
///   enables `kc_runtime::rpc` at `info`, `debug` for health checks), and then records as
///   `trace_id` the incoming trace id, if any; when disabled it costs no allocation;
/// - reads the gRPC status from the `grpc-status` response header (trailers-only responses)
///   or from the trailers at the end of the body; a response dropped before it completes
///   (the client cancelled, the server timed it out or shut down) counts as `CANCELLED`;
/// - answers a request whose message cannot be decoded (malformed protobuf, a truncated or
///   missing message, a bad compression flag) with `INVALID_ARGUMENT` instead of tonic's
///   `INTERNAL`: the caller sent it, the server is not at fault, and the completion event
///   is then at `info`, not `error`;
/// - counts the RPC in the Prometheus metrics, when they are on (see [`crate::metrics`]):
///   `grpc_server_handled_total` by code and `grpc_server_handling_seconds`;
/// - emits one `rpc finished` event: `info` for `OK` and for the errors a client causes,
///   `warn` for `UNAVAILABLE` and `DEADLINE_EXCEEDED`, `error` for `INTERNAL`, `UNKNOWN`,
///   `DATA_LOSS` and `UNIMPLEMENTED`. Health checks use `debug` for both span and event.
///
/// Neither headers (so no `authorization` value) nor messages are logged.
///
/// ```ignore
/// tonic::transport::Server::builder()
///     .layer(RpcTraceLayer::default())
///     .add_routes(routes)
///     .serve_with_incoming(incoming)
///     .await?;
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct RpcTraceLayer {
    _private: (),
}

impl RpcTraceLayer {
    /// Creates the layer.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<S> tower_layer::Layer<S> for RpcTraceLayer {
    type Service = RpcTrace<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcTrace { inner }
    }
}

/// The service made by [`RpcTraceLayer`]: wraps each call of the inner service in an `rpc`
/// span and observes the gRPC status of its response.
#[derive(Clone, Debug)]
pub struct RpcTrace<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> tower_service::Service<http::Request<ReqBody>> for RpcTrace<S>
where
    S: tower_service::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    ResBody: Body,
{
    type Response = http::Response<RpcTraceBody<ResBody>>;
    type Error = S::Error;
    type Future = RpcTraceFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let incoming = IncomingTraceContext::from_headers(request.headers());
        let recorder = Recorder::start(&request, incoming.as_ref());
        let inner = {
            let _entered = recorder.span.enter();
            sync_with_incoming(incoming.clone(), || self.inner.call(request))
        };
        RpcTraceFuture {
            inner: with_incoming(incoming.clone(), inner),
            incoming,
            recorder: Some(recorder),
        }
    }
}

pin_project_lite::pin_project! {
    /// Response future of [`RpcTrace`]: polls the inner future inside the RPC span, with the
    /// request's trace context in scope, and wraps the response body in an
    /// [`RpcTraceBody`].
    pub struct RpcTraceFuture<F> {
        #[pin]
        inner: TaskLocalFuture<Option<IncomingTraceContext>, F>,
        incoming: Option<IncomingTraceContext>,
        recorder: Option<Recorder>,
    }
}

impl<F, ResBody, E> Future for RpcTraceFuture<F>
where
    F: Future<Output = Result<http::Response<ResBody>, E>>,
    ResBody: Body,
{
    type Output = Result<http::Response<RpcTraceBody<ResBody>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = {
            let _entered = this.recorder.as_ref().map(|recorder| recorder.span.enter());
            ready!(this.inner.poll(cx))
        };
        let mut recorder = this.recorder.take();
        match result {
            Ok(mut response) => {
                reclassify_malformed_request(response.headers_mut());
                // A `grpc-status` header means a trailers-only response, and an empty body
                // without one will never carry a status: either way the RPC is over.
                if (response.headers().contains_key("grpc-status")
                    || response.body().is_end_stream())
                    && let Some(mut recorder) = recorder.take()
                {
                    let outcome = recorder.outcome(response.headers());
                    recorder.finish(outcome);
                }
                let incoming = this.incoming.take();
                Poll::Ready(Ok(response.map(|inner| RpcTraceBody {
                    inner,
                    incoming,
                    recorder,
                })))
            }
            Err(error) => {
                if let Some(mut recorder) = recorder {
                    recorder.finish(Outcome::ServiceError);
                }
                Poll::Ready(Err(error))
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// Response body of [`RpcTrace`]: passes every frame through unchanged, polls the inner
    /// body inside the RPC span with the request's trace context in scope, and completes the
    /// RPC record when the trailers arrive, the body fails or ends, or it is dropped before
    /// its end.
    pub struct RpcTraceBody<B> {
        #[pin]
        inner: B,
        incoming: Option<IncomingTraceContext>,
        recorder: Option<Recorder>,
    }
}

impl<B: Body> Body for RpcTraceBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let mut inner = this.inner;
        let mut poll = |cx: &mut Context<'_>| match this.incoming {
            // Without a trace context there is no scope to set (the connection's task has
            // none of its own).
            None => inner.as_mut().poll_frame(cx),
            Some(incoming) => {
                sync_with_incoming(Some(incoming.clone()), || inner.as_mut().poll_frame(cx))
            }
        };
        let Some(recorder) = this.recorder.as_ref() else {
            return poll(cx);
        };
        let polled = {
            let _entered = recorder.span.enter();
            ready!(poll(cx))
        };
        let outcome = match &polled {
            Some(Ok(frame)) => frame
                .trailers_ref()
                .map(|trailers| recorder.outcome(trailers)),
            Some(Err(_)) => Some(Outcome::BodyError),
            None => Some(Outcome::MissingStatus),
        };
        if let Some(outcome) = outcome
            && let Some(mut recorder) = this.recorder.take()
        {
            recorder.finish(outcome);
        }
        Poll::Ready(polled)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The beginnings of the `INTERNAL` messages tonic and prost give a request whose message
/// they could not read, before any handler ran.
const MALFORMED_REQUEST_MESSAGES: &[&str] = &[
    // prost's `DecodeError`, which tonic-prost's codec turns into `INTERNAL`.
    "failed to decode Protobuf message",
    // tonic's decoder: the body ended inside a message, or held none.
    "Unexpected EOF decoding stream",
    "Missing request message",
    // tonic's decoder: a compressed-flag it cannot honour, or a body it cannot decompress.
    "protocol error: received message with",
    "Error decompressing",
];

/// Turns the trailers-only `INTERNAL` answer tonic gives a request it could not decode into
/// `INVALID_ARGUMENT` (the caller sent a malformed message), keeping what was wrong in the
/// message. Returns whether it did. Handlers never answer with these messages: their
/// internal errors say `internal error` alone ([`crate::ApiError::Internal`]).
fn reclassify_malformed_request(headers: &mut http::HeaderMap) -> bool {
    let internal = headers
        .get(tonic::Status::GRPC_STATUS)
        .is_some_and(|value| Code::from_bytes(value.as_bytes()) == Code::Internal);
    if !internal {
        return false;
    }
    let Some(status) = tonic::Status::from_header_map(headers) else {
        return false;
    };
    if !MALFORMED_REQUEST_MESSAGES
        .iter()
        .any(|prefix| status.message().starts_with(prefix))
    {
        return false;
    }
    let invalid = tonic::Status::invalid_argument(format!(
        "invalid argument: the request message cannot be read ({})",
        status.message().to_lowercase()
    ));
    headers.remove(tonic::Status::GRPC_STATUS_DETAILS);
    headers.remove(tonic::Status::GRPC_MESSAGE);
    invalid.add_header(headers).is_ok()
}

/// How an RPC ended.
enum Outcome {
    /// The response carried a gRPC status (header or trailer).
    Status {
        code: Code,
        /// The status message, kept for failures only.
        message: Option<String>,
    },
    /// The response ended without any `grpc-status`.
    MissingStatus,
    /// The inner service failed instead of answering.
    ServiceError,
    /// The response body failed while streaming.
    BodyError,
    /// The response (future or body) was dropped before it completed.
    Dropped,
}

impl Outcome {
    /// The outcome the `grpc-status` in `headers` says, with the status message of a
    /// failure when `with_message` asks for it.
    fn from_headers(headers: &http::HeaderMap, with_message: impl FnOnce(Code) -> bool) -> Self {
        let Some(value) = headers.get("grpc-status") else {
            return Outcome::MissingStatus;
        };
        let code = Code::from_bytes(value.as_bytes());
        let message = if code == Code::Ok || !with_message(code) {
            None
        } else {
            tonic::Status::from_header_map(headers)
                .map(|status| status.message().to_owned())
                .filter(|message| !message.is_empty())
        };
        Outcome::Status { code, message }
    }

    fn code(&self) -> Code {
        match self {
            Outcome::Status { code, .. } => *code,
            Outcome::MissingStatus | Outcome::ServiceError | Outcome::BodyError => Code::Unknown,
            Outcome::Dropped => Code::Cancelled,
        }
    }

    /// What the event says besides the code, when the status alone does not tell.
    fn detail(&self) -> Option<&str> {
        match self {
            Outcome::Status { message, .. } => message.as_deref(),
            Outcome::MissingStatus => Some("response ended without grpc-status"),
            Outcome::ServiceError => Some("service failed before responding"),
            Outcome::BodyError => Some("response stream failed"),
            Outcome::Dropped => Some("dropped before completion"),
        }
    }
}

/// The record of one RPC: its span, start time and name; emits the completion event once,
/// at the latest when dropped.
struct Recorder {
    span: Span,
    start: Instant,
    /// The request path, `/package.Service/Method`.
    path: http::uri::PathAndQuery,
    health: bool,
    finished: bool,
}

impl Recorder {
    fn start<B>(request: &http::Request<B>, incoming: Option<&IncomingTraceContext>) -> Self {
        let start = Instant::now();
        let path = request
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
        let health = path.path().starts_with(HEALTH_PREFIX);
        let (service, method) = split_path(path.path());
        let name = path.path().trim_start_matches('/');
        // One span shape at two levels (health checks are debug noise); the level of a span
        // is part of its static metadata, hence one macro call per level.
        macro_rules! rpc_span {
            ($level:ident) => {
                tracing::span!(
                    target: RPC_TARGET,
                    parent: None,
                    tracing::Level::$level,
                    "rpc",
                    rpc.system = "grpc",
                    rpc.service = service,
                    rpc.method = method,
                    otel.name = name,
                    otel.kind = "server",
                    otel.status_code = Empty,
                    grpc.code = Empty,
                    latency_ms = Empty,
                    trace_id = Empty,
                )
            };
        }
        let span = if health {
            rpc_span!(DEBUG)
        } else {
            rpc_span!(INFO)
        };
        // The span macros build nothing (and evaluate no field) when the span is disabled.
        // Setting an empty parent on a root span changes nothing, and fails only when no
        // OpenTelemetry layer sees the span: a probe that costs no allocation.
        if !span.is_disabled() {
            if span.set_parent(opentelemetry::Context::new()).is_ok() {
                let parent = extract_trace_context(request.headers());
                if parent.span().span_context().is_valid() {
                    // The span is new, so it cannot have started yet.
                    let _ = span.set_parent(parent);
                }
                let context = span.context();
                let otel_span = context.span();
                let span_context = otel_span.span_context();
                if span_context.is_valid() {
                    span.record("trace_id", tracing::field::display(span_context.trace_id()));
                }
            } else if let Some(incoming) = incoming {
                span.record("trace_id", incoming.trace_id());
            }
        }
        Recorder {
            span,
            start,
            path,
            health,
            finished: false,
        }
    }

    /// The outcome the `grpc-status` in `headers` says; the status message (which costs an
    /// allocation) is read only when the completion event will be logged.
    fn outcome(&self, headers: &http::HeaderMap) -> Outcome {
        Outcome::from_headers(headers, |code| event_enabled(self.level(code)))
    }

    /// The level of the completion event of this RPC, when it ended with `code`.
    fn level(&self, code: Code) -> tracing::Level {
        if self.health {
            tracing::Level::DEBUG
        } else {
            level_for(code)
        }
    }

    /// Records the outcome on the span, emits the completion event inside it, and closes
    /// the span (which exports it).
    fn finish(&mut self, outcome: Outcome) {
        if self.finished {
            return;
        }
        self.finished = true;
        let code = outcome.code();
        // Milliseconds with microsecond precision.
        let elapsed = self.start.elapsed();
        let latency_ms = elapsed.as_micros() as f64 / 1000.0;
        let span = std::mem::replace(&mut self.span, Span::none());
        span.record("grpc.code", code_name(code));
        span.record("latency_ms", latency_ms);
        if is_server_error(code) {
            span.record("otel.status_code", "ERROR");
        }
        let (service, method) = split_path(self.path.path());
        crate::metrics::record_rpc(self.path.path(), code, elapsed);
        let detail = outcome.detail();
        let level = self.level(code);
        span.in_scope(|| {
            macro_rules! rpc_finished {
                ($level:expr) => {
                    tracing::event!(
                        target: RPC_TARGET,
                        $level,
                        rpc.service = service,
                        rpc.method = method,
                        grpc.code = code_name(code),
                        latency_ms,
                        detail,
                        "rpc finished"
                    )
                };
            }
            match level {
                tracing::Level::ERROR => rpc_finished!(tracing::Level::ERROR),
                tracing::Level::WARN => rpc_finished!(tracing::Level::WARN),
                tracing::Level::INFO => rpc_finished!(tracing::Level::INFO),
                _ => rpc_finished!(tracing::Level::DEBUG),
            }
        });
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.finish(Outcome::Dropped);
    }
}

/// Splits `/package.Service/Method` into `("package.Service", "Method")`; a path without
/// a method gives an empty method.
fn split_path(path: &str) -> (&str, &str) {
    let path = path.strip_prefix('/').unwrap_or(path);
    path.split_once('/').unwrap_or((path, ""))
}

/// Whether a completion event at `level` would be logged by the current subscriber.
fn event_enabled(level: tracing::Level) -> bool {
    match level {
        tracing::Level::ERROR => tracing::enabled!(target: RPC_TARGET, tracing::Level::ERROR),
        tracing::Level::WARN => tracing::enabled!(target: RPC_TARGET, tracing::Level::WARN),
        tracing::Level::INFO => tracing::enabled!(target: RPC_TARGET, tracing::Level::INFO),
        tracing::Level::DEBUG => tracing::enabled!(target: RPC_TARGET, tracing::Level::DEBUG),
        tracing::Level::TRACE => tracing::enabled!(target: RPC_TARGET, tracing::Level::TRACE),
    }
}

/// The level of the completion event of an RPC that ended with `code`.
fn level_for(code: Code) -> tracing::Level {
    match code {
        Code::Ok
        | Code::Cancelled
        | Code::InvalidArgument
        | Code::NotFound
        | Code::AlreadyExists
        | Code::PermissionDenied
        | Code::ResourceExhausted
        | Code::FailedPrecondition
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unauthenticated => tracing::Level::INFO,
        Code::DeadlineExceeded | Code::Unavailable => tracing::Level::WARN,
        Code::Unknown | Code::Unimplemented | Code::Internal | Code::DataLoss => {
            tracing::Level::ERROR
        }
    }
}

/// Whether `code` marks a server span as failed (OpenTelemetry gRPC semantic conventions).
fn is_server_error(code: Code) -> bool {
    matches!(
        code,
        Code::Unknown
            | Code::DeadlineExceeded
            | Code::Unimplemented
            | Code::Internal
            | Code::Unavailable
            | Code::DataLoss
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_grpc_paths() {
        assert_eq!(
            split_path("/keycontacts.contacts.v1.ContactsService/GetContact"),
            ("keycontacts.contacts.v1.ContactsService", "GetContact")
        );
        assert_eq!(split_path("/odd"), ("odd", ""));
        assert_eq!(split_path("/"), ("", ""));
    }

    #[test]
    fn levels_follow_who_is_at_fault() {
        assert_eq!(level_for(Code::Ok), tracing::Level::INFO);
        assert_eq!(level_for(Code::NotFound), tracing::Level::INFO);
        assert_eq!(level_for(Code::Unauthenticated), tracing::Level::INFO);
        assert_eq!(level_for(Code::Unavailable), tracing::Level::WARN);
        assert_eq!(level_for(Code::DeadlineExceeded), tracing::Level::WARN);
        assert_eq!(level_for(Code::Internal), tracing::Level::ERROR);
        assert_eq!(level_for(Code::Unimplemented), tracing::Level::ERROR);
    }

    #[test]
    fn undecodable_requests_are_invalid_arguments() {
        use prost::Message as _;
        // What prost says of garbage, as tonic-prost's codec sends it (INTERNAL).
        let error = prost_types::Timestamp::decode(&[0xff_u8, 0xff, 0xff][..])
            .expect_err("garbage does not decode");
        let mut headers = http::HeaderMap::new();
        tonic::Status::internal(error.to_string())
            .add_header(&mut headers)
            .unwrap();
        assert!(reclassify_malformed_request(&mut headers));
        let status = tonic::Status::from_header_map(&headers).expect("a status");
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(
            status.message().starts_with("invalid argument: "),
            "{status:?}"
        );
        assert_eq!(level_for(status.code()), tracing::Level::INFO);

        let mut eof = http::HeaderMap::new();
        tonic::Status::internal("Unexpected EOF decoding stream.")
            .add_header(&mut eof)
            .unwrap();
        assert!(reclassify_malformed_request(&mut eof));

        // A handler's own internal error stays INTERNAL.
        let mut internal = http::HeaderMap::new();
        tonic::Status::internal("internal error")
            .add_header(&mut internal)
            .unwrap();
        assert!(!reclassify_malformed_request(&mut internal));
        assert_eq!(
            tonic::Status::from_header_map(&internal).unwrap().code(),
            Code::Internal
        );
        // Another code with the same words is left alone.
        let mut other = http::HeaderMap::new();
        tonic::Status::not_found("failed to decode Protobuf message")
            .add_header(&mut other)
            .unwrap();
        assert!(!reclassify_malformed_request(&mut other));
    }

    /// Records the level of every `rpc finished` event.
    #[derive(Clone, Default)]
    struct Levels(std::sync::Arc<std::sync::Mutex<Vec<tracing::Level>>>);

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Levels {
        fn on_event(
            &self,
            event: &tracing::Event<'_>,
            _: tracing_subscriber::layer::Context<'_, S>,
        ) {
            if event.metadata().target() == RPC_TARGET {
                self.0.lock().unwrap().push(*event.metadata().level());
            }
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_undecodable_request_is_answered_and_logged_as_the_callers_fault() {
        use tower::{Layer as _, ServiceExt as _};
        use tracing_subscriber::layer::SubscriberExt as _;

        let levels = Levels::default();
        let subscriber = tracing_subscriber::registry().with(levels.clone());
        let _guard = tracing::subscriber::set_default(subscriber);
        // What tonic's generated server answers a request prost cannot decode.
        let service = tower::service_fn(|_: http::Request<()>| async {
            Ok::<_, std::convert::Infallible>(
                tonic::Status::internal("failed to decode Protobuf message: invalid varint")
                    .into_http::<tonic::body::Body>(),
            )
        });
        let request = http::Request::builder()
            .uri("/keycontacts.contacts.v1.ContactRegistryService/GetSite")
            .body(())
            .unwrap();
        let response = RpcTraceLayer::new()
            .layer(service)
            .oneshot(request)
            .await
            .unwrap();
        let status = tonic::Status::from_header_map(response.headers()).expect("a status");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        drop(response);
        assert_eq!(*levels.0.lock().unwrap(), vec![tracing::Level::INFO]);
    }

    #[test]
    fn names_codes_canonically() {
        assert_eq!(code_name(Code::from_bytes(b"0")), "OK");
        assert_eq!(code_name(Code::from_bytes(b"5")), "NOT_FOUND");
        assert_eq!(code_name(Code::from_bytes(b"14")), "UNAVAILABLE");
        assert_eq!(code_name(Code::from_bytes(b"garbage")), "UNKNOWN");
    }
}
