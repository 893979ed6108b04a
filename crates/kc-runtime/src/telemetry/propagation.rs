//! W3C trace-context propagation over HTTP/2 headers and gRPC metadata.

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TraceContextExt as _;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

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

/// Writes the trace context of the current span into `metadata` (with the global
/// propagator, so `traceparent` and `tracestate` for W3C trace context), so the callee's
/// server span becomes a child of the caller's span.
///
/// Uses the current `tracing` span's OpenTelemetry context, falling back to the attached
/// OpenTelemetry context; writes nothing when neither holds a valid span context.
pub fn inject_trace_context(metadata: &mut MetadataMap) {
    let mut context = tracing::Span::current().context();
    if !context.span().span_context().is_valid() {
        context = opentelemetry::Context::current();
        if !context.span().span_context().is_valid() {
            return;
        }
    }
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut MetadataInjector(metadata));
    });
}

/// A client interceptor that adds the current trace context to every outgoing request, so
/// each internal gRPC call carries `traceparent`.
///
/// ```ignore
/// let client = ContactsServiceClient::with_interceptor(channel, TraceContextInterceptor);
/// ```
///
/// It runs when the request is built, so the call must be made inside the caller's span
/// (which is the case in a handler served behind [`super::RpcTraceLayer`]).
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
