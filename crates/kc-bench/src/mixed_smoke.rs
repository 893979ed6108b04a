//! `gateway.mixed` end to end against the debug builds of the five services: seeded as the
//! benchmark seeds it, then a few seconds of its calls, every one of which must succeed, with
//! the read cache's hit rate and the profile read from the services' metrics.
//!
//! Ignored by default: it needs `cargo build --bins` first and takes minutes of CPU (the
//! population and the sign-ins). Run it with
//! `cargo nextest run -p kc-bench --run-ignored all -E 'test(/mixed_smoke/)'`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::load::{self, Settings};
use crate::smtp_sink::SmtpSink;
use crate::suite::{self, Account, Mail, Running, SERVICES};

/// Creates service account `name` with the debug build of identity.
async fn account(name: &str, database_url: &str) -> Account {
    let identity = suite::Service::named("identity").unwrap();
    let mut command = identity.command(Some(database_url)).unwrap();
    command.args(["create-service-account", name]);
    let output = suite::output(command, "kc-identity create-service-account")
        .await
        .unwrap();
    Account::parse(&output).unwrap()
}

/// An address on 127.0.0.1 whose port was free a moment ago.
fn free_addr() -> String {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string()
}

#[tokio::test]
#[ignore = "starts the five services' debug builds (cargo build --bins first); minutes of CPU"]
async fn mixed_smoke_every_call_succeeds_and_the_hit_rate_is_printed() {
    let db = kc_testkit::test_database().await;
    let database_urls = suite::provision(&db.url, None).await.unwrap();
    let sink = Arc::new(SmtpSink::start().unwrap());
    let mail = Mail::Smtp {
        url: sink.url(),
        username: None,
        password: None,
    };
    let addrs: BTreeMap<&'static str, String> = SERVICES
        .iter()
        .map(|service| (service.name, free_addr()))
        .collect();
    let urls: BTreeMap<&'static str, String> = addrs
        .iter()
        .map(|(name, addr)| (*name, format!("http://{addr}")))
        .collect();
    let mut accounts = BTreeMap::new();
    for service in SERVICES.iter().filter(|service| service.service_account) {
        accounts.insert(
            service.name,
            account(&service.account_name(), &database_urls["identity"]).await,
        );
    }
    let bench = account("xtask-bench", &database_urls["identity"]).await;

    let mut running: Vec<Running> = Vec::new();
    let mut metrics_addrs = BTreeMap::new();
    for service in SERVICES {
        let metrics_addr = free_addr();
        let mut env = vec![
            ("KC_LOG_FORMAT".to_owned(), "json".to_owned()),
            ("RUST_LOG".to_owned(), "warn".to_owned()),
            ("KC_METRICS_LISTEN".to_owned(), metrics_addr.clone()),
        ];
        env.extend(
            service
                .env(&urls, accounts.get(service.name), Some(&mail))
                .unwrap(),
        );
        let command = service
            .command(database_urls.get(service.name).map(String::as_str))
            .unwrap();
        running.push(suite::spawn_on(service, command, &addrs[service.name], &env).unwrap());
        running
            .last_mut()
            .unwrap()
            .wait_until_serving()
            .await
            .unwrap();
        metrics_addrs.insert(service.name, metrics_addr);
    }

    let mut env = Env::new(
        urls.clone(),
        database_urls,
        Duration::from_secs(60),
        Some(sink),
        Some(bench),
    );
    env.metrics_addrs = metrics_addrs;
    let prepared = seed_mixed(&env).await.unwrap();
    let settings = Settings {
        warmup: Duration::from_secs(1),
        duration: Duration::from_secs(4),
        concurrency: 8,
        connections: 2,
    };
    let channels = load::connect(&urls["gateway"], settings.connections)
        .await
        .unwrap();
    let window = Window::starting_now(&settings);
    let beside = prepared.beside.expect("gateway.mixed reads the metrics");
    let (measurement, notes) = tokio::join!(
        load::drive(
            &channels,
            &prepared.call,
            None,
            settings.concurrency,
            window
        ),
        beside(window)
    );
    let measurement = measurement.unwrap();
    let notes = notes.unwrap();
    suite::stop_all(&mut running).await;
    for note in prepared.notes.iter().chain(&notes) {
        eprintln!("{note}");
    }
    assert!(
        measurement.errors.is_empty(),
        "calls failed: {:?}",
        measurement.errors
    );
    assert!(measurement.ok > 0);
    assert!(
        notes.iter().any(|note| note.contains("hit rate")),
        "{notes:?}"
    );
    assert!(
        notes.iter().any(|note| note.starts_with("profile gateway")),
        "{notes:?}"
    );
}
