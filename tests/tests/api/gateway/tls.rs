//! TLS across processes (issue 16): the binaries run as child processes with one throwaway
//! CA; the internal services serve TLS and require client certificates of that CA (mTLS),
//! the gateway serves TLS to anyone and reaches the services at `https://` URLs with its
//! client certificate. The real grpcurl, trusting the CA (`-cacert`), signs in and reads
//! `GetMe` through the gateway (gateway → identity over mTLS); an internal service refuses
//! a caller without a client certificate; nothing is served in plaintext.

use kc_testkit::process::{CoreProcesses, SuiteTls, bootstrap_operator, grpcurl};
use serde_json::Value;

const EMAIL: &str = "operator@keycontacts.test";
const PASSWORD: &str = "operator passphrase over tls";
const HEALTH_CHECK: &str = "grpc.health.v1.Health/Check";
/// grpcurl retries a connection that fails its handshake until its connect timeout (10 s by
/// default): the calls expected to fail give up after one second.
const GIVE_UP: [&str; 2] = ["-connect-timeout", "1"];

/// `(name, value)` pairs as `&str`s.
fn pairs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter()
        .map(|(name, value)| (*name, value.as_str()))
        .collect()
}

#[tokio::test]
async fn grpcurl_reaches_the_gateway_over_tls_and_the_gateway_the_services_over_mtls() {
    let tls = SuiteTls::new();
    let ca = tls.pki.ca_file.display().to_string();
    let db = kc_testkit::test_database().await;
    let internal_env = tls.env(true);
    let core = CoreProcesses::start_with_env(&db.url, &pairs(&internal_env)).await;
    bootstrap_operator(&db.url, EMAIL, PASSWORD).await;
    let public_env = tls.env(false);
    let gateway = core.start_gateway(&db.url, &pairs(&public_env)).await;
    let (identity, contacts, access) = core.into_parts();
    assert!(
        identity.tls && contacts.tls && access.tls,
        "the services serve tls"
    );
    assert!(identity.url().starts_with("https://"), "{}", identity.url());

    // An operator signs in through the gateway: the gateway calls identity over mTLS.
    let body = serde_json::json!({"email": EMAIL, "password": PASSWORD}).to_string();
    let login = grpcurl(&[
        "-cacert",
        &ca,
        "-d",
        &body,
        &gateway.address,
        "keycontacts.gateway.v1.GatewayService/Login",
    ])
    .await;
    assert!(login.success, "login over tls: {}", login.stderr);
    let session: Value = serde_json::from_str(&login.stdout).expect("json");
    let token = session["accessToken"].as_str().expect("an access token");
    let header = format!("authorization: Bearer {token}");
    let me = grpcurl(&[
        "-cacert",
        &ca,
        "-H",
        &header,
        &gateway.address,
        "keycontacts.gateway.v1.GatewayService/GetMe",
    ])
    .await;
    assert!(me.success, "GetMe over tls: {}", me.stderr);
    assert!(me.stdout.contains(EMAIL), "{}", me.stdout);

    // Nothing in plaintext, and the public port asks no client certificate.
    let plaintext = grpcurl(&[
        GIVE_UP[0],
        GIVE_UP[1],
        "-plaintext",
        &gateway.address,
        HEALTH_CHECK,
    ])
    .await;
    assert!(
        !plaintext.success,
        "plaintext refused: {}",
        plaintext.stdout
    );

    // An internal service admits only callers with a client certificate of the CA.
    for service in [&identity, &contacts, &access] {
        let without = grpcurl(&[
            GIVE_UP[0],
            GIVE_UP[1],
            "-cacert",
            &ca,
            &service.address,
            HEALTH_CHECK,
        ])
        .await;
        assert!(
            !without.success,
            "{} admitted a caller without a client certificate",
            service.address
        );
        let cert = tls.certificate.cert_file.display().to_string();
        let key = tls.certificate.key_file.display().to_string();
        let with = grpcurl(&[
            "-cacert",
            &ca,
            "-cert",
            &cert,
            "-key",
            &key,
            &service.address,
            HEALTH_CHECK,
        ])
        .await;
        assert!(with.success, "{}: {}", service.address, with.stderr);
    }
}
