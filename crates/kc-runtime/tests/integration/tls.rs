//! TLS (issue 16): a server given a certificate serves TLS only; with a client CA it
//! requires a client certificate signed by it (mTLS), from tonic clients and from the real
//! grpcurl alike; a renewed certificate is picked up without a restart; bad files fail the
//! start naming the setting; an `https://` URL without a CA fails at start.

use std::time::Duration;

use clap::Parser as _;
use kc_runtime::Shutdown;
use kc_runtime::auth::AuthLayer;
use kc_runtime::config::ServerArgs;
use kc_runtime::server::{ServeOptions, serve};
use kc_runtime::tls::{ClientTls, ClientTlsFiles, ServerTls, ServerTlsFiles};
use kc_testkit::pki::{CertFiles, TestPki};
use kc_testkit::process::grpcurl;
use tokio::net::TcpListener;
use tonic::service::Routes;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::status::{SERVICE, StatusService};

#[derive(clap::Parser)]
struct Cli {
    #[command(flatten)]
    server: ServerArgs,
}

/// A server of the test service with `flags`, until the returned shutdown triggers.
async fn start(flags: &[&str]) -> (String, Shutdown) {
    let argv = std::iter::once("kc-test").chain(flags.iter().copied());
    let cli = Cli::try_parse_from(argv).expect("flags");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("local address").port();
    let issuer = kc_testkit::tokens::TestIssuer::new();
    let options = ServeOptions::new(
        &cli.server,
        vec![SERVICE],
        AuthLayer::new(issuer.verifier(), [] as [&str; 0]),
    );
    let shutdown = Shutdown::new();
    tokio::spawn(serve(
        listener,
        Routes::new(StatusService),
        options,
        shutdown.clone(),
    ));
    (format!("localhost:{port}"), shutdown)
}

fn path(file: &std::path::Path) -> &str {
    file.to_str().expect("utf-8 path")
}

/// The client settings trusting `ca`, presenting `identity` when given.
fn client_tls(ca: &std::path::Path, identity: Option<&CertFiles>) -> ClientTls {
    let files = ClientTlsFiles {
        ca_file: Some(ca.to_owned()),
        cert_file: identity.map(|files| files.cert_file.clone()),
        key_file: identity.map(|files| files.key_file.clone()),
    };
    ClientTls::load(&files).expect("client tls").expect("a ca")
}

/// A health check over a new connection to `address` with `tls` (`None`: plaintext).
async fn health_check(address: &str, tls: Option<&ClientTls>) -> Result<(), String> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut endpoint = Endpoint::from_shared(format!("{scheme}://{address}"))
        .expect("url")
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5));
    if let Some(tls) = tls {
        endpoint = endpoint
            .tls_config(tls.for_host("localhost"))
            .expect("tls config");
    }
    let channel: Channel = endpoint
        .connect()
        .await
        .map_err(|error| format!("connect: {error:?}"))?;
    HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .map(drop)
        .map_err(|status| format!("{status:?}"))
}

#[tokio::test]
async fn an_mtls_server_admits_only_clients_with_a_certificate_of_its_ca() {
    let pki = TestPki::new("suite");
    let server = pki.server("server");
    let client = pki.client("client");
    let rogue = TestPki::new("rogue");
    let rogue_client = rogue.client("client");
    let (address, shutdown) = start(&[
        "--tls-cert-file",
        path(&server.cert_file),
        "--tls-key-file",
        path(&server.key_file),
        "--tls-client-ca-file",
        path(&pki.ca_file),
    ])
    .await;

    health_check(&address, Some(&client_tls(&pki.ca_file, Some(&client))))
        .await
        .expect("a client certificate of the suite's ca is admitted");
    for (who, tls) in [
        ("no client certificate", client_tls(&pki.ca_file, None)),
        (
            "a certificate of another ca",
            client_tls(&pki.ca_file, Some(&rogue_client)),
        ),
    ] {
        assert!(
            health_check(&address, Some(&tls)).await.is_err(),
            "{who} is refused"
        );
    }
    assert!(
        health_check(&address, None).await.is_err(),
        "plaintext is refused on a tls port"
    );

    // The real grpcurl, as an operator calls a service: with the CA and a client
    // certificate it is served; without the certificate the handshake fails.
    let with_certificate = grpcurl(&[
        "-cacert",
        path(&pki.ca_file),
        "-cert",
        path(&client.cert_file),
        "-key",
        path(&client.key_file),
        &address,
        "grpc.health.v1.Health/Check",
    ])
    .await;
    assert!(with_certificate.success, "{}", with_certificate.stderr);
    assert!(
        with_certificate.stdout.contains("SERVING"),
        "{}",
        with_certificate.stdout
    );
    // grpcurl retries a failed handshake until its connect timeout (10 s by default).
    let without = grpcurl(&[
        "-connect-timeout",
        "1",
        "-cacert",
        path(&pki.ca_file),
        &address,
        "grpc.health.v1.Health/Check",
    ])
    .await;
    assert!(!without.success, "{}", without.stdout);
    shutdown.trigger();
}

#[tokio::test]
async fn a_renewed_certificate_is_served_without_a_restart() {
    let first = TestPki::new("first");
    let server = first.server("server");
    let (address, shutdown) = start(&[
        "--tls-cert-file",
        path(&server.cert_file),
        "--tls-key-file",
        path(&server.key_file),
        "--tls-reload-interval",
        "100ms",
    ])
    .await;
    let trusts_first = client_tls(&first.ca_file, None);
    health_check(&address, Some(&trusts_first))
        .await
        .expect("served with the first certificate");

    // The Secret is updated in place with a certificate of another CA (files renamed over
    // the old ones, as the kubelet does): new connections get it.
    let second = TestPki::new("second");
    let renewed = second.server("renewed");
    std::fs::copy(&renewed.cert_file, &server.cert_file).expect("replace the certificate");
    std::fs::copy(&renewed.key_file, &server.key_file).expect("replace the key");
    let trusts_second = client_tls(&second.ca_file, None);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while health_check(&address, Some(&trusts_second)).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the renewed certificate is served within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        health_check(&address, Some(&trusts_first)).await.is_err(),
        "the old certificate is no longer served"
    );
    shutdown.trigger();
}

#[test]
fn unreadable_or_mismatched_files_fail_the_start_naming_the_setting() {
    let pki = TestPki::new("files");
    let server = pki.server("server");
    let other = pki.server("other");
    let missing = std::env::temp_dir().join(format!("kc-missing-{}", uuid::Uuid::new_v4()));
    let cases = [
        (server.cert_file.clone(), missing.clone(), "--tls-key-file"),
        (missing.clone(), server.key_file.clone(), "--tls-cert-file"),
        (
            server.key_file.clone(),
            server.key_file.clone(),
            "--tls-cert-file",
        ),
        (
            server.cert_file.clone(),
            other.key_file.clone(),
            "--tls-key-file",
        ),
    ];
    for (cert, key, setting) in cases {
        let files = ServerTlsFiles {
            cert_file: cert,
            key_file: key,
            client_ca_file: None,
            reload_interval: Duration::from_secs(10),
        };
        let error = format!(
            "{:#}",
            ServerTls::load(&files, false).expect_err("bad files refused")
        );
        assert!(error.contains(setting), "{setting}: {error}");
    }
    let files = ClientTlsFiles {
        ca_file: Some(missing),
        ..ClientTlsFiles::default()
    };
    let error = format!(
        "{:#}",
        ClientTls::load(&files).expect_err("missing ca refused")
    );
    assert!(error.contains("--tls-ca-file"), "{error}");
}

#[tokio::test]
async fn an_https_url_without_a_ca_fails_at_start_in_one_line() {
    // This test binary never installs client TLS settings (only a binary's start does).
    let error = kc_runtime::client::channel("--identity-url", "https://kc-identity:50051")
        .expect_err("https:// needs --tls-ca-file");
    let error = format!("{error:#}");
    assert!(
        error.contains("--identity-url") && error.contains("--tls-ca-file"),
        "{error}"
    );
    assert!(!error.contains('\n'), "{error}");
}

/// A Postgres started with `ssl = on` and a certificate of the suite's CA is reached with
/// `sslmode=verify-full` (the connection is encrypted, the server's name checked); with
/// another CA the pool refuses to connect.
#[tokio::test]
async fn postgres_with_ssl_is_used_with_sslmode_verify_full() {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};

    use kc_testkit::postgres::{ClusterOptions, PgCluster};

    let pki = TestPki::new("postgres");
    let server = pki.server("postgres");
    // Postgres reads its key only when no one else may: mode 0600, owned by the user it
    // runs as (`postgres` when the tests run as root).
    std::fs::set_permissions(&server.key_file, std::fs::Permissions::from_mode(0o600))
        .expect("chmod the key");
    if std::fs::metadata(&server.key_file).expect("key").uid() == 0 {
        for file in [&server.cert_file, &server.key_file] {
            let chowned = std::process::Command::new("chown")
                .args(["postgres:postgres", path(file)])
                .status()
                .expect("run chown");
            assert!(chowned.success(), "chown postgres {}", file.display());
        }
        let dir = server.key_file.parent().expect("pki directory");
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let data_dir = std::env::temp_dir().join(format!("kc-pg-tls-{}", uuid::Uuid::new_v4()));
    let options = ClusterOptions {
        settings: vec![
            ("ssl".to_owned(), "on".to_owned()),
            (
                "ssl_cert_file".to_owned(),
                path(&server.cert_file).to_owned(),
            ),
            ("ssl_key_file".to_owned(), path(&server.key_file).to_owned()),
        ],
        max_connections: 20,
        ..ClusterOptions::default()
    };
    let cluster = PgCluster::start(&data_dir, options)
        .await
        .expect("a postgres with ssl starts");
    let settings = kc_runtime::db::PoolSettings {
        max_connections: 1,
        min_connections: 0,
        acquire_timeout: Duration::from_secs(5),
    };
    let url = |ca: &std::path::Path| {
        format!(
            "{}?sslmode=verify-full&sslrootcert={}",
            cluster.url("postgres"),
            path(ca)
        )
    };

    let pool = kc_runtime::db::connect(&url(&pki.ca_file), "public", &settings)
        .await
        .expect("verify-full with the suite's ca connects");
    let encrypted: bool =
        sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(&pool)
            .await
            .expect("read pg_stat_ssl");
    assert!(encrypted, "the connection is encrypted");
    pool.close().await;

    let rogue = TestPki::new("rogue-postgres");
    let refused = kc_runtime::db::connect(&url(&rogue.ca_file), "public", &settings).await;
    assert!(
        refused.is_err(),
        "a server certificate of another ca is refused"
    );
    cluster.stop().await.expect("stop postgres");
}
