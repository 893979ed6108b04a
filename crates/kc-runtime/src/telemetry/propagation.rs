//! W3C trace-context propagation over HTTP/2 headers and gRPC metadata.
//!
//! Two ways carry a served request's trace context to the calls made while serving it:
//!
//! - **With the OpenTelemetry layer** (trace export configured): the per-RPC server span is
//!   a child of the caller's span, and [`inject_trace_context`] writes that span's context,
//!   so each callee's span is a child of the caller's server span.
//! - **Without it** (no exporter): no OpenTelemetry span exists. [`super::RpcTraceLayer`]
//!   keeps the caller's `traceparent` and `tracestate` headers, when the `traceparent` is
//!   well formed, in a Tokio task-local while it runs the handler (and polls a streaming
//!   response), and [`inject_trace_context`] copies them unchanged into every outgoing call
//!   made from that task. A request that arrives without a (valid) `traceparent` sends
//!   none on: nothing is invented, since no span would ever be recorded under it.
//!
//! Calls made from a task spawned by a handler carry neither unless the task is
//! instrumented with the handler's span and run inside [`with_incoming`]'s scope.

use std::future::Future;

use http::HeaderValue;
use http::header::HeaderName;
use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TraceContextExt as _;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// Name of the W3C header that carries the trace id, parent span id and flags.
const TRACEPARENT: &str = "traceparent";
/// Name of the W3C header that carries vendor-specific trace state.
const TRACESTATE: &str = "tracestate";

tokio::task_local! {
    /// The trace context of the request the current task serves, set by the server layer.
    static INCOMING: Option<IncomingTraceContext>;
}

/// The W3C trace-context headers of a request being served, kept as received (the
/// header values are shared, not copied) to be sent on unchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IncomingTraceContext {
    traceparent: HeaderValue,
    tracestate: Option<HeaderValue>,
}

impl IncomingTraceContext {
    /// The trace context in `headers`: their `traceparent` when it is well formed (W3C
    /// Trace Context level 1: version, non-zero trace id and parent id, flags, in lowercase
    /// hex; a later version may append fields), with their `tracestate` if any. `None` when
    /// there is no `traceparent` or it is malformed (its `tracestate` is then ignored, as
    /// the specification requires).
    pub fn from_headers(headers: &http::HeaderMap) -> Option<Self> {
        let traceparent = headers.get(TRACEPARENT)?;
        if !is_valid_traceparent(traceparent.as_bytes()) {
            return None;
        }
        Some(Self {
            traceparent: traceparent.clone(),
            tracestate: headers.get(TRACESTATE).cloned(),
        })
    }

    /// The trace context of the request the current task serves, when it came with one.
    pub fn current() -> Option<Self> {
        INCOMING.try_with(Clone::clone).ok().flatten()
    }

    /// The `traceparent` value, as received.
    pub fn traceparent(&self) -> &str {
        // Validated as ASCII hex and dashes.
        self.traceparent.to_str().unwrap_or_default()
    }

    /// The `tracestate` value, as received, when there was one.
    pub fn tracestate(&self) -> Option<&HeaderValue> {
        self.tracestate.as_ref()
    }

    /// The 32 lowercase hex digits of the trace id.
    pub fn trace_id(&self) -> &str {
        self.traceparent().get(3..35).unwrap_or_default()
    }

    /// Writes the headers into `metadata`, replacing any trace context already there.
    fn write_to(&self, metadata: &mut MetadataMap) {
        let headers = metadata.as_mut();
        headers.insert(
            HeaderName::from_static(TRACEPARENT),
            self.traceparent.clone(),
        );
        match &self.tracestate {
            Some(tracestate) => {
                headers.insert(HeaderName::from_static(TRACESTATE), tracestate.clone());
            }
            None => {
                headers.remove(TRACESTATE);
            }
        }
    }
}

/// Runs `future` as serving a request that came with `incoming` (or with no trace
/// context): [`inject_trace_context`] in it sends `incoming` on when no OpenTelemetry span
/// is current. The server layer does this for every RPC; a handler may use it for a task it
/// spawns, with [`IncomingTraceContext::current`].
pub fn with_incoming<F: Future>(
    incoming: Option<IncomingTraceContext>,
    future: F,
) -> tokio::task::futures::TaskLocalFuture<Option<IncomingTraceContext>, F> {
    INCOMING.scope(incoming, future)
}

/// Runs `f` synchronously as serving a request that came with `incoming`.
pub(crate) fn sync_with_incoming<R>(
    incoming: Option<IncomingTraceContext>,
    f: impl FnOnce() -> R,
) -> R {
    INCOMING.sync_scope(incoming, f)
}

/// Whether `value` is a `traceparent` this process may send on: `vv-<32 hex>-<16 hex>-ff`,
/// lowercase, version not `ff`, trace id and parent id not all zeros; version `00` has
/// nothing after the flags, a later version may have more fields after a `-`.
fn is_valid_traceparent(value: &[u8]) -> bool {
    fn hex(bytes: &[u8]) -> bool {
        bytes
            .iter()
            .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'))
    }
    fn zeros(bytes: &[u8]) -> bool {
        bytes.iter().all(|byte| *byte == b'0')
    }
    if value.len() < 55 {
        return false;
    }
    let (version, trace_id, parent_id, flags) =
        (&value[0..2], &value[3..35], &value[36..52], &value[53..55]);
    let dashes = value[2] == b'-' && value[35] == b'-' && value[52] == b'-';
    let rest_ok = match version {
        b"00" => value.len() == 55,
        b"ff" => false,
        _ => value.len() == 55 || value[55] == b'-',
    };
    dashes
        && rest_ok
        && hex(version)
        && hex(trace_id)
        && hex(parent_id)
        && hex(flags)
        && !zeros(trace_id)
        && !zeros(parent_id)
}

/// Reads propagation fields (`traceparent`, `tracestate`, ...) out of HTTP headers.
struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// Writes propagation fields into gRPC metadata, skipping any that are not valid ASCII
/// metadata (the W3C propagator only produces valid ones).
struct MetadataInjector<'a>(&'a mut MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        let Ok(key) = MetadataKey::from_bytes(key.as_bytes()) else {
            return;
        };
        let Ok(value) = MetadataValue::try_from(value) else {
            return;
        };
        self.0.insert(key, value);
    }
}

/// Extracts the remote trace context carried by `headers` (W3C `traceparent` and
/// `tracestate`, or whatever the global propagator understands).
///
/// Returns an empty context when the headers carry none or an invalid one; such a context
/// makes a span that uses it as parent a root span.
pub fn extract_trace_context(headers: &http::HeaderMap) -> opentelemetry::Context {
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderExtractor(headers))
    })
}

/// Writes the trace context of the work in progress into `metadata` (`traceparent` and
/// `tracestate`), so the callee continues the caller's trace. The first that applies:
///
/// 1. the current `tracing` span's OpenTelemetry context (with the global propagator), so
///    the callee's server span becomes a child of the caller's span: the case when traces
///    are exported;
/// 2. the trace context the request being served came with ([`IncomingTraceContext`], set
///    by [`super::RpcTraceLayer`]), unchanged: the case without an exporter;
/// 3. the attached OpenTelemetry context (`opentelemetry::Context::current()`).
///
/// Writes nothing when none holds a valid context.
pub fn inject_trace_context(metadata: &mut MetadataMap) {
    let context = tracing::Span::current().context();
    if context.span().span_context().is_valid() {
        inject_otel_context(&context, metadata);
        return;
    }
    let served = INCOMING.try_with(|incoming| {
        if let Some(incoming) = incoming {
            incoming.write_to(metadata);
            true
        } else {
            false
        }
    });
    if served == Ok(true) {
        return;
    }
    let context = opentelemetry::Context::current();
    if context.span().span_context().is_valid() {
        inject_otel_context(&context, metadata);
    }
}

fn inject_otel_context(context: &opentelemetry::Context, metadata: &mut MetadataMap) {
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(context, &mut MetadataInjector(metadata));
    });
}

/// A client interceptor that adds the current trace context to every outgoing request
/// ([`inject_trace_context`]), so each internal gRPC call carries `traceparent`.
///
/// ```ignore
/// let client = ContactsServiceClient::with_interceptor(channel, TraceContextInterceptor);
/// ```
///
/// It runs when the request is built, so the call must be made from the task serving the
/// request (which is the case in a handler served behind [`super::RpcTraceLayer`]), inside
/// the caller's span when spans are exported.
#[derive(Clone, Copy, Debug, Default)]
pub struct TraceContextInterceptor;

impl tonic::service::Interceptor for TraceContextInterceptor {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        inject_trace_context(request.metadata_mut());
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn headers(traceparent: &str, tracestate: Option<&str>) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        headers.insert(TRACEPARENT, traceparent.parse().unwrap());
        if let Some(tracestate) = tracestate {
            headers.insert(TRACESTATE, tracestate.parse().unwrap());
        }
        headers
    }

    #[test]
    fn accepts_only_well_formed_traceparents() {
        for valid in [
            VALID,
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future",
        ] {
            assert!(is_valid_traceparent(valid.as_bytes()), "{valid}");
        }
        for invalid in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
        ] {
            assert!(!is_valid_traceparent(invalid.as_bytes()), "{invalid}");
        }
    }

    #[test]
    fn an_invalid_traceparent_drops_the_tracestate_too() {
        assert_eq!(
            IncomingTraceContext::from_headers(&headers("garbage", Some("k=v"))),
            None
        );
        assert_eq!(
            IncomingTraceContext::from_headers(&http::HeaderMap::new()),
            None
        );
        let incoming = IncomingTraceContext::from_headers(&headers(VALID, Some("k=v"))).unwrap();
        assert_eq!(incoming.traceparent(), VALID);
        assert_eq!(incoming.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(incoming.tracestate().unwrap(), "k=v");
    }

    #[tokio::test]
    async fn without_a_span_the_incoming_context_is_sent_on_unchanged() {
        // No subscriber with an OpenTelemetry layer here: only the task-local applies.
        let incoming = IncomingTraceContext::from_headers(&headers(VALID, Some("a=1,b=2")));
        let mut metadata = MetadataMap::new();
        metadata.insert(TRACESTATE, "stale=1".parse().unwrap());
        with_incoming(incoming, async {
            assert!(IncomingTraceContext::current().is_some());
            inject_trace_context(&mut metadata);
        })
        .await;
        assert_eq!(metadata.get(TRACEPARENT).unwrap(), VALID);
        assert_eq!(metadata.get(TRACESTATE).unwrap(), "a=1,b=2");

        // Without a tracestate, a stale one is not left behind.
        let incoming = IncomingTraceContext::from_headers(&headers(VALID, None));
        sync_with_incoming(incoming, || inject_trace_context(&mut metadata));
        assert_eq!(metadata.get(TRACEPARENT).unwrap(), VALID);
        assert!(metadata.get(TRACESTATE).is_none());
    }

    #[tokio::test]
    async fn without_an_incoming_context_nothing_is_invented() {
        let mut metadata = MetadataMap::new();
        with_incoming(None, async { inject_trace_context(&mut metadata) }).await;
        inject_trace_context(&mut metadata);
        assert!(metadata.is_empty(), "{metadata:?}");
        assert!(IncomingTraceContext::current().is_none());
    }
}
