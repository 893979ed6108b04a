//! Traces over the wire (issue 16): the binaries run as child processes exporting spans
//! over OTLP/gRPC, over TLS (`OTEL_EXPORTER_OTLP_CERTIFICATE` names the collector's CA), to
//! a real receiver (a tonic server implementing the collector's `TraceService`,
//! `kc_testkit::otlp`). One gateway call produces a span in the gateway and one in each
//! internal service it reached, all with one trace id, each service's span a child of a
//! gateway span.

use std::time::Duration;

use kc_testkit::otlp::{OtlpReceiver, ReceivedSpan};
use kc_testkit::pki::TestPki;
use kc_testkit::process::{CoreProcesses, bootstrap_operator, grpcurl_ok};

const EMAIL: &str = "operator@keycontacts.test";
const PASSWORD: &str = "operator passphrase of the traces";
/// OTLP's span kind of a server span.
const SERVER: i32 = 2;

#[tokio::test]
async fn one_gateway_call_is_one_trace_across_the_services() {
    let pki = TestPki::new("collector");
    let collector_certificate = pki.server("collector");
    let receiver = OtlpReceiver::start(Some(&collector_certificate)).await;
    let ca = pki.ca_file.display().to_string();
    let telemetry = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_CERTIFICATE", ca.as_str()),
        // Spans are exported in batches: every 100 ms here instead of every 5 s.
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    let db = kc_testkit::test_database().await;
    let core = CoreProcesses::start_with_env(&db.url, &telemetry).await;
    bootstrap_operator(&db.url, EMAIL, PASSWORD).await;
    let gateway = core.start_gateway(&db.url, &telemetry).await;

    // A sign-in through the gateway, which asks identity.
    let body = serde_json::json!({"email": EMAIL, "password": PASSWORD}).to_string();
    grpcurl_ok(&[
        "-plaintext",
        "-d",
        &body,
        &gateway.address,
        "keycontacts.gateway.v1.GatewayService/Login",
    ])
    .await;

    let is_login = |span: &ReceivedSpan| {
        span.service == "kc-gateway" && span.kind == SERVER && span.name.contains("Login")
    };
    let in_identity = |spans: &[ReceivedSpan], trace_id: &str| {
        spans
            .iter()
            .filter(|span| span.service == "kc-identity" && span.trace_id == trace_id)
            .filter(|span| span.kind == SERVER)
            .cloned()
            .collect::<Vec<_>>()
    };
    let spans = receiver
        .wait_until(Duration::from_secs(30), |spans| {
            spans
                .iter()
                .filter(|span| is_login(span))
                .any(|login| !in_identity(spans, &login.trace_id).is_empty())
        })
        .await;
    let login = spans
        .iter()
        .find(|span| is_login(span) && !in_identity(&spans, &span.trace_id).is_empty())
        .expect("the gateway's Login span");
    assert!(
        login.parent_span_id.is_empty(),
        "the call came without trace context: the gateway's span starts the trace: {login:?}"
    );
    let gateway_span_ids: Vec<&str> = spans
        .iter()
        .filter(|span| span.service == "kc-gateway" && span.trace_id == login.trace_id)
        .map(|span| span.span_id.as_str())
        .collect();
    for identity_span in in_identity(&spans, &login.trace_id) {
        assert!(
            gateway_span_ids.contains(&identity_span.parent_span_id.as_str()),
            "identity's span is a child of a gateway span of the same trace: {identity_span:?} \
             (gateway spans {gateway_span_ids:?})"
        );
    }
}
