//! A real OTLP/gRPC trace receiver for the tests: a tonic server implementing the
//! collector's `TraceService` (from `opentelemetry-proto`), keeping every span it receives
//! with the `service.name` of its resource. Plaintext, or TLS with a certificate of a test
//! CA.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Identity, Server, ServerTlsConfig};

use crate::pki::CertFiles;

/// One received span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedSpan {
    /// `service.name` of the exporting process.
    pub service: String,
    /// Span name.
    pub name: String,
    /// Trace id, hex.
    pub trace_id: String,
    /// Span id, hex.
    pub span_id: String,
    /// Parent span id, hex; empty for a root span.
    pub parent_span_id: String,
    /// Span kind (OTLP's numbers: 2 server, 3 client).
    pub kind: i32,
}

/// The receiver, serving until dropped.
pub struct OtlpReceiver {
    /// `http://127.0.0.1:PORT`, or `https://localhost:PORT` with TLS: the value of
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub endpoint: String,
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
    _server: ServerTask,
}

/// The receiver's server task, stopped when dropped.
struct ServerTask(tokio::task::JoinHandle<()>);

impl Drop for ServerTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut received = Vec::new();
        for resource_spans in request.into_inner().resource_spans {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|resource| &resource.attributes)
                .find(|attribute| attribute.key == "service.name")
                .and_then(|attribute| attribute.value.as_ref()?.value.as_ref())
                .map(|value| match value {
                    Value::StringValue(name) => name.clone(),
                    other => format!("{other:?}"),
                })
                .unwrap_or_default();
            for span in resource_spans
                .scope_spans
                .into_iter()
                .flat_map(|scope| scope.spans)
            {
                received.push(ReceivedSpan {
                    service: service.clone(),
                    name: span.name,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    kind: span.kind,
                });
            }
        }
        self.spans.lock().expect("spans lock").extend(received);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

impl OtlpReceiver {
    /// A receiver on 127.0.0.1, serving TLS with `tls` when given.
    pub async fn start(tls: Option<&CertFiles>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let collector = Collector::default();
        let spans = Arc::clone(&collector.spans);
        let mut server = Server::builder();
        let endpoint = match tls {
            Some(files) => {
                let identity = Identity::from_pem(
                    std::fs::read(&files.cert_file).expect("read the certificate"),
                    std::fs::read(&files.key_file).expect("read the key"),
                );
                server = server
                    .tls_config(ServerTlsConfig::new().identity(identity))
                    .expect("tls config");
                format!("https://localhost:{port}")
            }
            None => format!("http://127.0.0.1:{port}"),
        };
        let serving = server
            .add_service(TraceServiceServer::new(collector))
            .serve_with_incoming(TcpIncoming::from(listener));
        let task = tokio::spawn(async move {
            let _ = serving.await;
        });
        Self {
            endpoint,
            spans,
            _server: ServerTask(task),
        }
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans.lock().expect("spans lock").clone()
    }

    /// Waits (at most `patience`) until `done` holds of the spans received, and returns them.
    pub async fn wait_until(
        &self,
        patience: Duration,
        done: impl Fn(&[ReceivedSpan]) -> bool,
    ) -> Vec<ReceivedSpan> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let spans = self.spans();
            if done(&spans) {
                return spans;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the expected spans did not arrive within {patience:?}; received: {spans:#?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
