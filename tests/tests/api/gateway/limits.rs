//! The gateway's limits and hygiene, through real gRPC calls: the session limiter keyed by
//! the real client behind a trusted proxy (`--trusted-proxies`), the per-caller limits of
//! signed-in writes (access requests, other writes that send mail), malformed protobuf
//! answered `INVALID_ARGUMENT` by the gateway and by an internal service, the gateway's
//! reflection naming only its public API, and the gateway's Prometheus metrics (per-RPC
//! counts by code, rate-limit refusals, read-cache hits and misses).

use std::time::Duration;

use crate::gateway::helpers::*;
use http::uri::PathAndQuery;
use kc_proto::gateway as gw;
use kc_testkit::Restartable;
use kc_testkit::metrics::{sample, scrape};
use kc_testkit::process::{grpcurl, grpcurl_ok};
use prost::bytes::{Buf, BufMut};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use tonic_types::StatusExt;

/// A `Refresh` through `channel` with a refresh token nobody issued, as the client behind
/// `forwarded_for` (an `x-forwarded-for` header) when given.
async fn refresh(channel: &Channel, forwarded_for: Option<&str>) -> Result<(), Status> {
    let mut request = Request::new(gw::RefreshRequest {
        refresh_token: "not-a-refresh-token".into(),
    });
    if let Some(address) = forwarded_for {
        request
            .metadata_mut()
            .insert("x-forwarded-for", address.parse().unwrap());
    }
    GatewayServiceClient::new(channel.clone())
        .refresh(request)
        .await
        .map(drop)
}

/// Asserts a call was let through the limiter (whatever identity then said of it).
#[track_caller]
fn passed(result: Result<(), Status>, what: &str) {
    if let Err(status) = result {
        assert_ne!(
            status.code(),
            Code::ResourceExhausted,
            "{what} was rate limited: {status:?}"
        );
    }
}

/// Asserts `RESOURCE_EXHAUSTED` with a `google.rpc.RetryInfo` of a positive delay.
#[track_caller]
fn limited<T: std::fmt::Debug>(result: Result<T, Status>, what: &str) -> Duration {
    let status = match result {
        Ok(value) => panic!("{what}: expected RESOURCE_EXHAUSTED, got Ok({value:?})"),
        Err(status) => status,
    };
    assert_eq!(status.code(), Code::ResourceExhausted, "{what}: {status:?}");
    let delay = status
        .get_details_retry_info()
        .and_then(|info| info.retry_delay)
        .unwrap_or_else(|| panic!("{what}: no RetryInfo in {status:?}"));
    assert!(delay > Duration::ZERO, "{what}: {delay:?}");
    delay
}

use kc_proto::gateway::gateway_service_client::GatewayServiceClient;

/// Another gateway whose session RPCs allow a burst of 2 and then 1 an hour per client, and
/// which believes the forwarded addresses of the peers in `trusted_proxies`.
async fn gateway_behind(suite: &Suite, trusted_proxies: &str) -> (Restartable, Channel) {
    suite
        .another_gateway(&[
            "--session-rate-limit",
            "1/h",
            "--session-rate-burst",
            "2",
            "--trusted-proxies",
            trusted_proxies,
        ])
        .await
}

#[tokio::test]
async fn two_clients_behind_one_trusted_proxy_get_separate_buckets() {
    let suite = Suite::start().await;
    // The test's connections come from 127.0.0.1: here a trusted proxy.
    let (_gateway, channel) = gateway_behind(&suite, "127.0.0.0/8,::1/128").await;
    let first = "203.0.113.10";
    let second = "203.0.113.20";
    passed(refresh(&channel, Some(first)).await, "first client, 1");
    passed(refresh(&channel, Some(first)).await, "first client, 2");
    limited(refresh(&channel, Some(first)).await, "first client, 3");
    // The second client behind the same proxy has its own bucket.
    passed(refresh(&channel, Some(second)).await, "second client, 1");
    passed(refresh(&channel, Some(second)).await, "second client, 2");
    limited(refresh(&channel, Some(second)).await, "second client, 3");
    // What a client prepends itself is not believed: the proxy appended the real address.
    limited(
        refresh(&channel, Some(&format!("198.51.100.99, {first}"))).await,
        "first client with a forged hop",
    );
    // The proxy's own calls (no header) are a third bucket.
    passed(refresh(&channel, None).await, "the proxy itself");
}

#[tokio::test]
async fn an_untrusted_peers_forwarded_address_is_ignored() {
    let suite = Suite::start().await;
    // 127.0.0.1 is not in the trusted range: every call is the peer's.
    let (_gateway, channel) = gateway_behind(&suite, "192.0.2.0/24").await;
    passed(refresh(&channel, Some("203.0.113.1")).await, "call 1");
    passed(refresh(&channel, Some("203.0.113.2")).await, "call 2");
    limited(
        refresh(&channel, Some("203.0.113.3")).await,
        "a third address named by an untrusted peer",
    );
    limited(refresh(&channel, None).await, "the peer itself");
}

/// A self-nomination for `site` (site access: reporting VIEW).
fn nomination(site: &kc_proto::contacts::Site) -> gw::SelfNominateRequest {
    reports_nomination(site, "je remplace la gestionnaire")
}

#[tokio::test]
async fn a_user_looping_request_and_cancel_is_stopped_and_another_user_is_not() {
    let suite = Suite::start().await;
    let primary = suite.person("Paula Primary").await;
    let site = suite
        .create_site_applied("Acme Limits", &primary, None)
        .await;
    let (_gateway, channel) = suite
        .another_gateway(&[
            "--access-request-rate-limit",
            "1/h",
            "--access-request-rate-burst",
            "4",
            "--write-rate-limit",
            "1/h",
            "--write-rate-burst",
            "2",
        ])
        .await;
    let gateway = || GatewayServiceClient::new(channel.clone());
    let looper = suite.person("Leo Looper").await;
    let other = suite.person("Olga Other").await;

    // Request, cancel, request, cancel: the burst of four; the next request is refused
    // before it reaches access management (so no approver is mailed).
    for round in 0..2 {
        let request = gateway()
            .self_nominate(authed(Some(&looper.token), nomination(&site)))
            .await
            .unwrap_or_else(|status| panic!("request {round}: {status:?}"))
            .into_inner()
            .request
            .expect("the request");
        gateway()
            .cancel_my_request(authed(
                Some(&looper.token),
                gw::CancelMyRequestRequest {
                    request_id: request.request_id,
                    etag: String::new(),
                },
            ))
            .await
            .unwrap_or_else(|status| panic!("cancel {round}: {status:?}"));
    }
    let delay = limited(
        gateway()
            .self_nominate(authed(Some(&looper.token), nomination(&site)))
            .await,
        "the fifth access request of the looper",
    );
    assert!(delay <= Duration::from_secs(3600), "{delay:?}");
    let mine = gateway()
        .list_my_requests(authed(
            Some(&looper.token),
            gw::ListMyRequestsRequest {
                page_size: 0,
                page_token: String::new(),
            },
        ))
        .await
        .expect("the looper reads its requests")
        .into_inner();
    assert_eq!(mine.requests.len(), 2, "the refused request was not made");

    // Another user on the same replica is not affected.
    gateway()
        .self_nominate(authed(Some(&other.token), nomination(&site)))
        .await
        .expect("another user requests access");

    // The other writes that send mail have their own per-caller limit.
    let update_me = |person: &Person, name: &str| {
        let mut client = gateway();
        let request = authed(
            Some(&person.token),
            gw::UpdateMeRequest {
                display_name: Some(name.to_owned()),
                locale: None,
                etag: String::new(),
            },
        );
        async move { client.update_me(request).await.map(drop) }
    };
    update_me(&looper, "Leo L.").await.expect("first update");
    update_me(&looper, "Leo Lo.").await.expect("second update");
    limited(update_me(&looper, "Leo Loo.").await, "the third UpdateMe");
    update_me(&other, "Olga O.")
        .await
        .expect("another user updates itself");
}

/// A codec of raw bytes: sends whatever it is given as the message, reads the answer as
/// bytes.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let bytes = src.copy_to_bytes(src.remaining());
        Ok(Some(bytes.to_vec()))
    }
}

/// Sends `bytes` as the message of `path` through `channel`, with `token` when given.
async fn raw_call(
    channel: &Channel,
    path: &'static str,
    token: Option<&str>,
    bytes: Vec<u8>,
) -> Result<Vec<u8>, Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready()
        .await
        .map_err(|error| Status::unavailable(error.to_string()))?;
    grpc.unary(
        authed(token, bytes),
        PathAndQuery::from_static(path),
        RawCodec,
    )
    .await
    .map(tonic::Response::into_inner)
}

/// Bytes that are no protobuf message: a field tag whose varint never ends.
const GARBAGE: [u8; 4] = [0xff, 0xff, 0xff, 0xff];

#[tokio::test]
async fn malformed_protobuf_is_an_invalid_argument_at_the_gateway_and_inside() {
    let suite = Suite::start().await;
    let gateway = &suite.gateway_channel;

    // A public RPC of the gateway, anonymously.
    let status = raw_call(
        gateway,
        "/keycontacts.gateway.v1.GatewayService/Login",
        None,
        GARBAGE.to_vec(),
    )
    .await
    .expect_err("garbage is refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().starts_with("invalid argument:"),
        "{status:?}"
    );
    // A signed-in RPC of the gateway.
    let status = raw_call(
        gateway,
        "/keycontacts.gateway.v1.GatewayService/GetMe",
        Some(&suite.operator.token),
        GARBAGE.to_vec(),
    )
    .await
    .expect_err("garbage is refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");

    // An internal service, called directly by an operator.
    let contacts = kc_testkit::ready_channel(&suite.url(Service::Contacts)).await;
    let status = raw_call(
        &contacts,
        "/keycontacts.contacts.v1.ContactRegistryService/GetSite",
        Some(&suite.operator.token),
        GARBAGE.to_vec(),
    )
    .await
    .expect_err("garbage is refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");

    // A well-formed message through the same raw path still works: the codec is not at
    // fault (an empty GetMe request is a valid one).
    raw_call(
        gateway,
        "/keycontacts.gateway.v1.GatewayService/GetMe",
        Some(&suite.operator.token),
        Vec::new(),
    )
    .await
    .expect("an empty GetMe request is valid");
}

#[tokio::test]
async fn the_gateways_reflection_names_only_its_public_api() {
    let suite = Suite::start().await;
    let address = suite.addr(Service::Gateway).to_string();
    let listed = grpcurl_ok(&["-plaintext", &address, "list"]).await;
    let services: Vec<&str> = listed.lines().map(str::trim).collect();
    // The public APIs (the gateway's and the relying applications' AuthorizationService)
    // and health; reflection names the version grpcurl asked (each version of the
    // reflection service lists itself).
    for expected in [kc_gateway::SERVICE_NAME, "grpc.health.v1.Health"] {
        assert!(services.contains(&expected), "{expected} missing: {listed}");
    }
    let allowed = [
        kc_gateway::SERVICE_NAME,
        kc_gateway::AUTHORIZATION_SERVICE_NAME,
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ];
    for service in &services {
        assert!(allowed.contains(service), "{service} is listed: {listed}");
    }
    // The internal services cannot be described either.
    let internal = grpcurl(&[
        "-plaintext",
        &address,
        "describe",
        "keycontacts.contacts.v1.ContactRegistryService",
    ])
    .await;
    assert!(!internal.success, "{}", internal.stdout);
    // The messages of the public API resolve, those of the internal packages they use too.
    let described = grpcurl_ok(&[
        "-plaintext",
        &address,
        "describe",
        "keycontacts.gateway.v1.ShowAllContactsResponse",
    ])
    .await;
    assert!(described.contains("contacts"), "{described}");
    let site = grpcurl_ok(&[
        "-plaintext",
        &address,
        "describe",
        "keycontacts.contacts.v1.Site",
    ])
    .await;
    assert!(site.contains("site_number"), "{site}");
    // The error-detail types are described: grpcurl prints a refusal's field violations.
    let refused = grpcurl(&[
        "-plaintext",
        "-d",
        r#"{"email":"","code":"123456","password":"whatever it is"}"#,
        &address,
        "keycontacts.gateway.v1.GatewayService/VerifyEmail",
    ])
    .await;
    assert!(!refused.success, "{}", refused.stdout);
    assert!(
        refused.stderr.contains("google.rpc.BadRequest")
            && refused.stderr.contains("fieldViolations")
            && !refused.stderr.contains("is not recognized"),
        "{}",
        refused.stderr
    );
    // An internal service still describes everything to the suite's own callers.
    let contacts_listed = grpcurl_ok(&[
        "-plaintext",
        &suite.addr(Service::Contacts).to_string(),
        "list",
    ])
    .await;
    assert!(
        contacts_listed.contains("keycontacts.contacts.v1.ContactRegistryService"),
        "{contacts_listed}"
    );
}

#[tokio::test]
async fn the_gateways_metrics_count_rpcs_refusals_and_cache_reads() {
    let suite = Suite::start().await;
    let (_gateway, channel, metrics_addr) = suite
        .another_gateway_with_metrics(&[
            "--session-rate-limit",
            "1/h",
            "--session-rate-burst",
            "1",
            "--read-cache-ttl",
            "60s",
        ])
        .await;
    passed(refresh(&channel, None).await, "first refresh");
    limited(refresh(&channel, None).await, "second refresh");
    let person = suite.person("Mia Metrics").await;
    for _ in 0..2 {
        gw::gateway_service_client::GatewayServiceClient::new(channel.clone())
            .get_me(authed(Some(&person.token), gw::GetMeRequest {}))
            .await
            .expect("GetMe");
    }

    let text = scrape(metrics_addr).await;
    let handled = |method: &str, code: &str| {
        sample(
            &text,
            "grpc_server_handled_total",
            &[
                ("grpc_service", "keycontacts.gateway.v1.GatewayService"),
                ("grpc_method", method),
                ("grpc_code", code),
            ],
        )
    };
    assert!(
        handled("Refresh", "RESOURCE_EXHAUSTED") >= Some(1.0),
        "{text}"
    );
    assert!(handled("GetMe", "OK") >= Some(2.0), "{text}");
    assert!(
        sample(
            &text,
            "keycontacts_rate_limited_total",
            &[("limit", "session")]
        ) >= Some(1.0),
        "{text}"
    );
    // The first GetMe asked identity and the registry, the second was answered from the
    // read cache (same caller, well within the minute).
    assert!(
        sample(&text, "keycontacts_gateway_read_cache_misses_total", &[]) >= Some(1.0),
        "{text}"
    );
    assert!(
        sample(&text, "keycontacts_gateway_read_cache_hits_total", &[]) >= Some(1.0),
        "{text}"
    );
}
