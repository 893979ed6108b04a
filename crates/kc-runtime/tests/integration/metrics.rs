//! Metrics: a server started with `--metrics-listen` serves Prometheus text at `/metrics` on
//! that port, with the per-RPC counter (`grpc_server_handled_total`, by service, method and
//! code) and latency histogram (`grpc_server_handling_seconds`) of the RPCs it served, and
//! the connections of its pool; an RPC to a path that names no method of the suite is
//! counted under `unknown` labels. An outbox consumer reports its lag behind its stream and
//! the events it applied.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser as _;
use kc_runtime::Shutdown;
use kc_runtime::auth::AuthLayer;
use kc_runtime::config::ServerArgs;
use kc_runtime::db::PoolSettings;
use kc_runtime::server::{ServeOptions, serve};
use kc_testkit::metrics::{http_get, sample};
use tokio::net::{TcpListener, TcpStream};
use tonic::Code;
use tonic::service::Routes;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use kc_runtime::outbox::{self, Consumer, NewEvent, OutboxWatcher};

use crate::status::{SERVICE, StatusService, call};

#[derive(clap::Parser)]
struct Cli {
    #[command(flatten)]
    server: ServerArgs,
}

/// A port nothing listens on (bound, then released).
fn free_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address")
}

/// A pool of at most `max_connections` on `db`'s `public` schema.
async fn pool_of(db: &kc_testkit::TestDatabase, max_connections: u32) -> sqlx::PgPool {
    let settings = PoolSettings {
        max_connections,
        min_connections: 1,
        acquire_timeout: Duration::from_secs(5),
    };
    kc_runtime::db::connect(&db.url, "public", &settings)
        .await
        .expect("pool")
}

#[tokio::test]
async fn metrics_count_every_rpc_by_code_and_time_it() {
    let metrics_addr = free_port();
    let cli = Cli::try_parse_from(["kc-test", "--metrics-listen", &metrics_addr.to_string()])
        .expect("flags");
    assert_eq!(cli.server.metrics_listen, Some(metrics_addr));

    let db = kc_testkit::test_database().await;
    let pool = pool_of(&db, 3).await;
    // One connection checked out for the whole test: the in-use gauge shows it.
    let held = pool.acquire().await.expect("acquire");

    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let grpc_addr = listener.local_addr().expect("local address");
    let issuer = kc_testkit::tokens::TestIssuer::new();
    let auth = AuthLayer::new(issuer.verifier(), [] as [&str; 0]);
    let options =
        ServeOptions::new(&cli.server, vec![SERVICE], auth).with_pool("metrics_test", &pool);
    let shutdown = Shutdown::new();
    let server = tokio::spawn(serve(
        listener,
        Routes::new(StatusService),
        options,
        shutdown.clone(),
    ));

    let channel = Channel::from_shared(format!("http://{grpc_addr}"))
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let mut health = HealthClient::new(channel.clone());
    let check = |service: &str| HealthCheckRequest {
        service: service.to_owned(),
    };
    for _ in 0..2 {
        health.check(check("")).await.expect("health check");
    }
    let unknown = health
        .check(check("no.such.Service"))
        .await
        .expect_err("no such service");
    assert_eq!(unknown.code(), Code::NotFound);
    // Not public and no token: the auth layer refuses them, and they are counted all the
    // same, under `unknown` labels (no kc-proto method has these paths).
    for path in ["/test.Status/Secret", "/made.Up/Path"] {
        assert_eq!(call(&channel, path).await.code(), Code::Unauthenticated);
    }

    let (status, text) = http_get(metrics_addr, "/metrics").await;
    assert_eq!(status, 200, "{text}");
    let handled = |service: &str, method: &str, code: &str| {
        sample(
            &text,
            "grpc_server_handled_total",
            &[
                ("grpc_service", service),
                ("grpc_method", method),
                ("grpc_code", code),
            ],
        )
    };
    const HEALTH: &str = "grpc.health.v1.Health";
    assert!(handled(HEALTH, "Check", "OK") >= Some(2.0), "{text}");
    assert!(handled(HEALTH, "Check", "NOT_FOUND") >= Some(1.0), "{text}");
    assert!(
        handled("unknown", "unknown", "UNAUTHENTICATED") >= Some(2.0),
        "{text}"
    );
    assert!(!text.contains("made.Up"), "{text}");
    assert!(!text.contains("Secret"), "{text}");
    assert!(
        text.contains("# TYPE grpc_server_handled_total counter"),
        "{text}"
    );

    let labels = [("grpc_service", HEALTH), ("grpc_method", "Check")];
    assert!(
        sample(&text, "grpc_server_handling_seconds_count", &labels) >= Some(3.0),
        "{text}"
    );
    assert!(
        sample(&text, "grpc_server_handling_seconds_sum", &labels) > Some(0.0),
        "{text}"
    );
    let in_bucket = |le: &str| {
        let mut labels = labels.to_vec();
        labels.push(("le", le));
        sample(&text, "grpc_server_handling_seconds_bucket", &labels)
    };
    assert!(in_bucket("+Inf") >= Some(3.0), "{text}");
    assert!(in_bucket("0.005").is_some(), "{text}");
    assert!(
        text.contains("# TYPE grpc_server_handling_seconds histogram"),
        "{text}"
    );

    let pool_labels = [("schema", "metrics_test")];
    assert!(
        sample(
            &text,
            "keycontacts_db_pool_connections_in_use",
            &pool_labels
        ) >= Some(1.0),
        "{text}"
    );
    assert!(
        sample(&text, "keycontacts_db_pool_connections_idle", &pool_labels).is_some(),
        "{text}"
    );
    assert_eq!(
        sample(&text, "keycontacts_db_pool_connections_max", &pool_labels),
        Some(3.0),
        "{text}"
    );

    let (status, _) = http_get(metrics_addr, "/other").await;
    assert_eq!(status, 404);

    drop(held);
    shutdown.trigger();
    server
        .await
        .expect("server task")
        .expect("server stops cleanly");
    // The endpoint stops with the server.
    assert!(TcpStream::connect(metrics_addr).await.is_err());
}

#[tokio::test]
async fn a_metrics_address_in_use_fails_the_start() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("local address");
    let cli =
        Cli::try_parse_from(["kc-test", "--metrics-listen", &addr.to_string()]).expect("flags");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let auth = AuthLayer::new(
        kc_testkit::tokens::TestIssuer::new().verifier(),
        [] as [&str; 0],
    );
    let options = ServeOptions::new(&cli.server, vec![SERVICE], auth);
    let error = serve(
        listener,
        Routes::new(StatusService),
        options,
        Shutdown::new(),
    )
    .await
    .expect_err("the metrics port is taken");
    assert!(
        format!("{error:#}").contains("metrics-listen: cannot bind"),
        "{error:#}"
    );
}

/// Scrapes `addr` until `check` accepts the text, for at most 30 s; returns that text.
async fn scrape_until(addr: SocketAddr, what: &str, check: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, text) = http_get(addr, "/metrics").await;
        assert_eq!(status, 200, "{text}");
        if check(&text) {
            return text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}: {text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_outbox_consumer_reports_its_lag_and_applied_events() {
    let handle = kc_runtime::metrics::install().expect("recorder");
    let listener = kc_runtime::metrics::bind("127.0.0.1:0".parse().expect("address"))
        .await
        .expect("bind metrics");
    let metrics_addr = listener.local_addr().expect("local address");
    let shutdown = Shutdown::new();
    let endpoint = tokio::spawn(kc_runtime::metrics::serve(
        listener,
        handle,
        Vec::new(),
        shutdown.clone(),
    ));

    let db = kc_testkit::test_database().await;
    let pool = pool_of(&db, 6).await;
    let mut conn = pool.acquire().await.expect("acquire");
    outbox::install(&mut conn).await.expect("install outbox");
    for aggregate in ["a", "b", "c"] {
        outbox::append(
            &mut conn,
            NewEvent {
                event_type: "thing.changed",
                aggregate_id: aggregate,
                payload: aggregate.as_bytes(),
            },
        )
        .await
        .expect("append");
    }
    // Written an hour ago: the consumer that applies them is an hour behind.
    sqlx::query("UPDATE outbox_events SET create_time = now() - interval '1 hour'")
        .execute(&mut *conn)
        .await
        .expect("backdate events");
    drop(conn);

    let watcher = OutboxWatcher::start(pool.clone()).await.expect("watcher");
    let source = kc_testkit::outbox::watch_source(watcher);
    let consumer = tokio::spawn(Consumer::new(pool.clone(), "metrics.lagging").run(
        source,
        |_conn: &mut sqlx::PgConnection, _event: outbox::StoredEvent| {
            Box::pin(async { Ok(()) }) as futures::future::BoxFuture<'_, anyhow::Result<()>>
        },
        shutdown.wait_owned(),
    ));

    let applied = |text: &str| {
        sample(
            text,
            "keycontacts_outbox_consumer_events_applied_total",
            &[("consumer", "metrics.lagging")],
        )
    };
    let lag = |text: &str| {
        sample(
            text,
            "keycontacts_outbox_consumer_lag_seconds",
            &[("consumer", "metrics.lagging"), ("stream", "lagging")],
        )
    };
    let text = scrape_until(metrics_addr, "the three events are applied", |text| {
        applied(text) == Some(3.0)
    })
    .await;
    let behind = lag(&text).expect("lag reported once events are applied");
    assert!((3600.0..3660.0).contains(&behind), "{text}");
    assert!(
        text.contains("# TYPE keycontacts_outbox_consumer_lag_seconds gauge"),
        "{text}"
    );

    // Nothing more comes: once the open stream stays silent, the consumer is caught up.
    let text = scrape_until(metrics_addr, "the consumer is caught up", |text| {
        lag(text) == Some(0.0)
    })
    .await;
    assert_eq!(applied(&text), Some(3.0), "{text}");

    shutdown.trigger();
    consumer.await.expect("consumer stops");
    endpoint.await.expect("endpoint stops");
}
