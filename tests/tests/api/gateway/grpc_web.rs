//! gRPC-Web on the gateway's one port (`tonic-web`): real HTTP/1.1 requests, as a browser's
//! gRPC-Web client sends them, sign in and read `GetMe` (binary `application/grpc-web+proto`
//! and base64 `application/grpc-web-text`); a bad password answers UNAUTHENTICATED (rule
//! I2: the same answer whether the address exists); and CORS is allowed only for the origins
//! of `--cors-allowed-origins` (none by default: no CORS headers at all). Plain gRPC on the
//! same port is what the harness itself uses to register people. And a real gRPC-Web client,
//! Connect's transport for Node (`tests/grpc-web/client.mjs`, installed by `.ci/run` with
//! `npm ci`), does the same as a browser app would.

use crate::gateway::helpers::*;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use kc_proto::gateway::{self as gw};
use prost::Message as _;
use std::net::SocketAddr;

/// The one origin the suite's gateway allows.
const ALLOWED: &str = "https://app.keycontacts.test";
/// An origin it does not.
const OTHER: &str = "https://evil.example";

const WEB_PROTO: &str = "application/grpc-web+proto";
const WEB_TEXT: &str = "application/grpc-web-text";

/// The suite with the session rate limit off and [`ALLOWED`] as the one CORS origin.
async fn suite() -> Suite {
    Suite::start_with(&[
        "--session-rate-limit",
        "off",
        "--cors-allowed-origins",
        ALLOWED,
    ])
    .await
}

/// An HTTP/1.1 answer.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|value| value.to_str().expect("an ascii header"))
    }
}

/// Sends `request` over a fresh HTTP/1.1 connection to `addr`.
async fn send(addr: SocketAddr, request: Request<Full<Bytes>>) -> Answer {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connects to the gateway");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("an HTTP/1.1 handshake");
    let driver = tokio::spawn(connection);
    let response = sender.send_request(request).await.expect("an HTTP answer");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("the whole body").to_bytes();
    drop(sender);
    let _ = driver.await;
    assert_eq!(parts.version, hyper::Version::HTTP_11);
    Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// One gRPC-Web frame: flag byte (0x00 data, 0x80 trailers), big-endian length, payload.
fn frame(flag: u8, payload: &[u8]) -> Vec<u8> {
    let mut framed = vec![flag];
    framed.extend(u32::try_from(payload.len()).unwrap().to_be_bytes());
    framed.extend(payload);
    framed
}

/// The (data messages, trailers) of a gRPC-Web body.
fn frames(mut body: &[u8]) -> (Vec<Vec<u8>>, Vec<(String, String)>) {
    let (mut messages, mut trailers) = (Vec::new(), Vec::new());
    while !body.is_empty() {
        assert!(body.len() >= 5, "a truncated frame header: {body:?}");
        let flag = body[0];
        let len = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
        let payload = &body[5..5 + len];
        match flag {
            0x00 => messages.push(payload.to_vec()),
            0x80 => {
                for line in std::str::from_utf8(payload)
                    .expect("utf-8 trailers")
                    .split("\r\n")
                {
                    if let Some((name, value)) = line.split_once(':') {
                        trailers.push((name.trim().to_lowercase(), value.trim().to_owned()));
                    }
                }
            }
            other => panic!("unexpected frame flag {other:#x}"),
        }
        body = &body[5 + len..];
    }
    (messages, trailers)
}

/// A gRPC-Web call of the gateway's `rpc` with `message`, as `content_type` (binary or
/// text), from `origin`, carrying `token` as bearer.
async fn call(
    addr: SocketAddr,
    rpc: &str,
    message: &impl prost::Message,
    content_type: &str,
    origin: Option<&str>,
    token: Option<&str>,
) -> Answer {
    let framed = frame(0x00, &message.encode_to_vec());
    let text = content_type.starts_with(WEB_TEXT);
    let body = if text {
        BASE64.encode(&framed).into_bytes()
    } else {
        framed
    };
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(method_path(rpc))
        .header("host", addr.to_string())
        .header("content-type", content_type)
        .header("accept", content_type)
        .header("x-grpc-web", "1")
        .header("x-user-agent", "grpc-web-javascript/0.1");
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let mut answer = send(addr, request.body(Full::new(Bytes::from(body))).unwrap()).await;
    assert_eq!(answer.status, StatusCode::OK, "{rpc}: {:?}", answer.headers);
    // The answer names the message format: `+proto` even when the request left it implied.
    let expected = if content_type.ends_with("+proto") {
        content_type.to_owned()
    } else {
        format!("{content_type}+proto")
    };
    assert_eq!(
        answer.header("content-type"),
        Some(expected.as_str()),
        "{rpc}"
    );
    if text {
        // Each frame is encoded on its own (padding may sit between them), so the body is
        // decoded by groups of four characters, as gRPC-Web clients do.
        assert_eq!(answer.body.len() % 4, 0, "padded base64");
        let mut decoded = Vec::new();
        for group in answer.body.chunks(4) {
            decoded.extend(BASE64.decode(group).expect("a base64 grpc-web-text body"));
        }
        answer.body = decoded.into();
    }
    answer
}

/// The gRPC status of a gRPC-Web answer: from its trailer frame, or from its headers when
/// the answer is trailers-only (an error), as gRPC-Web clients read it; and the messages.
fn outcome(answer: &Answer) -> (i32, Vec<Vec<u8>>) {
    let (messages, trailers) = frames(&answer.body);
    let status = trailers
        .iter()
        .find(|(name, _)| name == "grpc-status")
        .map(|(_, value)| value.as_str())
        .or_else(|| answer.header("grpc-status"))
        .expect("a grpc-status trailer or header");
    (status.parse().expect("a numeric grpc-status"), messages)
}

/// A CORS preflight of `Login` from `origin`.
async fn preflight(addr: SocketAddr, origin: &str) -> Answer {
    let request = Request::builder()
        .method(Method::OPTIONS)
        .uri(method_path("Login"))
        .header("host", addr.to_string())
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type,x-grpc-web,x-user-agent,grpc-timeout",
        )
        .body(Full::new(Bytes::new()))
        .unwrap();
    send(addr, request).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_signs_in_and_reads_get_me_over_grpc_web() {
    let suite = suite().await;
    let addr = suite.addr(Service::Gateway);
    let web = suite.person("Wendy Web").await;

    // Login, binary gRPC-Web over HTTP/1.1, from the allowed origin.
    let login = gw::LoginRequest {
        email: web.email.clone(),
        password: PASSWORD.into(),
    };
    let answer = call(addr, "Login", &login, WEB_PROTO, Some(ALLOWED), None).await;
    assert_eq!(answer.header("access-control-allow-origin"), Some(ALLOWED));
    let exposed = answer
        .header("access-control-expose-headers")
        .expect("exposed headers")
        .to_lowercase();
    for header in ["grpc-status", "grpc-message"] {
        assert!(exposed.contains(header), "{header} not exposed: {exposed}");
    }
    let (status, messages) = outcome(&answer);
    assert_eq!(status, 0, "Login: {:?}", answer.headers);
    assert_eq!(messages.len(), 1);
    let session = gw::LoginResponse::decode(messages[0].as_slice()).expect("a LoginResponse");
    assert!(!session.access_token.is_empty(), "an access token");
    assert_eq!(session.user.expect("the user").user_id, web.id);

    // GetMe with that token, base64 gRPC-Web (what grpc-web's text mode sends), through the
    // same authentication as gRPC.
    let answer = call(
        addr,
        "GetMe",
        &gw::GetMeRequest {},
        WEB_TEXT,
        None,
        Some(&session.access_token),
    )
    .await;
    let (status, messages) = outcome(&answer);
    assert_eq!(status, 0, "GetMe: {:?}", answer.headers);
    let me = gw::GetMeResponse::decode(messages[0].as_slice()).expect("a GetMeResponse");
    let user = me.user.expect("the caller");
    assert_eq!(
        (user.user_id, user.email),
        (web.id.clone(), web.email.clone())
    );

    // Without a token, GetMe is refused as over gRPC.
    let answer = call(addr, "GetMe", &gw::GetMeRequest {}, WEB_PROTO, None, None).await;
    assert_eq!(outcome(&answer).0, tonic::Code::Unauthenticated as i32);

    // A bad password: UNAUTHENTICATED (16), the same as for an address nobody has (rule I2).
    for email in [web.email.as_str(), "nobody-at-all@acme.example"] {
        let bad = gw::LoginRequest {
            email: email.into(),
            password: "not the password at all".into(),
        };
        let answer = call(addr, "Login", &bad, WEB_PROTO, Some(ALLOWED), None).await;
        let (status, messages) = outcome(&answer);
        assert_eq!(status, 16, "{email}: {:?}", answer.headers);
        assert!(messages.is_empty(), "no session for a bad password");
    }

    // A call that is not gRPC-Web over HTTP/1.1 is refused, not served as something else.
    let request = Request::builder()
        .method(Method::POST)
        .uri(method_path("Login"))
        .header("host", addr.to_string())
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    assert_eq!(send(addr, request).await.status, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_allows_only_the_given_origins() {
    let suite = suite().await;
    let addr = suite.addr(Service::Gateway);

    // A preflight from the allowed origin is answered with what a gRPC-Web call needs.
    let allowed = preflight(addr, ALLOWED).await;
    assert!(allowed.status.is_success(), "{:?}", allowed.status);
    assert_eq!(allowed.header("access-control-allow-origin"), Some(ALLOWED));
    let methods = allowed
        .header("access-control-allow-methods")
        .unwrap_or_default();
    assert!(methods.contains("POST"), "{methods}");
    let headers = allowed
        .header("access-control-allow-headers")
        .unwrap_or_default()
        .to_lowercase();
    for header in [
        "authorization",
        "content-type",
        "x-grpc-web",
        "grpc-timeout",
    ] {
        assert!(headers.contains(header), "{header} not allowed: {headers}");
    }
    assert!(allowed.header("access-control-max-age").is_some());
    assert_eq!(allowed.header("access-control-allow-credentials"), None);

    // From another origin: nothing that lets the browser go on.
    let other = preflight(addr, OTHER).await;
    assert_eq!(other.header("access-control-allow-origin"), None);
    // Nor does a call from it get its answer shared with that origin.
    let login = gw::LoginRequest {
        email: "someone@acme.example".into(),
        password: PASSWORD.into(),
    };
    let answer = call(addr, "Login", &login, WEB_PROTO, Some(OTHER), None).await;
    assert_eq!(answer.header("access-control-allow-origin"), None);

    // A gateway given no origins (the default) sends no CORS headers at all, to anyone.
    let (default_gateway, _channel) = suite.another_gateway(&[]).await;
    for origin in [ALLOWED, OTHER] {
        let answer = preflight(default_gateway.addr, origin).await;
        let cors: Vec<_> = answer
            .headers
            .keys()
            .filter(|name| name.as_str().starts_with("access-control-"))
            .collect();
        assert!(cors.is_empty(), "{origin}: {cors:?}");
        let answer = call(
            default_gateway.addr,
            "Login",
            &login,
            WEB_PROTO,
            Some(origin),
            None,
        )
        .await;
        assert_eq!(answer.header("access-control-allow-origin"), None);
        assert_eq!(outcome(&answer).0, tonic::Code::Unauthenticated as i32);
    }
}

/// A real gRPC-Web client (Connect for Node, `tests/grpc-web`) signs in, reads `GetMe`, and
/// gets UNAUTHENTICATED for a wrong password (I2).
#[tokio::test]
async fn connect_grpc_web_client_for_node_signs_in_and_reads_get_me() {
    let suite = suite().await;
    let person = suite.person("Connie Connect").await;
    let client_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("grpc-web");
    assert!(
        client_dir
            .join("node_modules/@connectrpc/connect-node")
            .is_dir(),
        "install the client first: npm ci --prefix {} (.ci/run does)",
        client_dir.display()
    );
    let descriptors =
        std::env::temp_dir().join(format!("kc-descriptors-{}.binpb", uuid::Uuid::new_v4()));
    std::fs::write(&descriptors, kc_proto::FILE_DESCRIPTOR_SET).expect("write the descriptors");
    let output = tokio::process::Command::new("node")
        .arg(client_dir.join("client.mjs"))
        .arg(&descriptors)
        .arg(format!("http://{}", suite.addr(Service::Gateway)))
        .arg(&person.email)
        .arg(PASSWORD)
        .output()
        .await
        .expect("node runs");
    let _ = std::fs::remove_file(&descriptors);
    assert!(
        output.status.success(),
        "the gRPC-Web client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answer: serde_json::Value = serde_json::from_slice(&output.stdout).expect("one JSON line");
    assert_eq!(answer["userId"], person.id.as_str(), "{answer}");
    assert_eq!(answer["meEmail"], person.email.as_str(), "{answer}");
    assert_eq!(answer["wrongPassword"], "Unauthenticated", "{answer}");
}
