//! `cargo xtask bench [SCENARIO ...]`: release builds of the services a scenario needs, on a
//! throwaway Postgres, under load from a tonic client.
//!
//! Services start when the first scenario that needs them comes up (with the services they
//! call), so that none takes CPU from the scenarios before its own. Before a service's first
//! scenario is measured, once it is seeded, the run measures the service's **baseline**, the
//! rate of `grpc.health.v1.Health/Check` calls the same server process answers through the
//! same layers, and reports each scenario's calls per second as a ratio to it: the ratio says
//! what the scenario's own work costs, largely independent of the machine. Results are printed
//! as a table and written to `target/bench/<scenario>.json` and
//! `target/bench/baseline-<service>.json`.
//!
//! Client, services and Postgres share the machine: the load generator always runs optimised
//! (a debug build of xtask re-runs the command in a release build of itself), and the table's
//! CPU lines show who used the CPUs, "steal" and "other" how much unrelated work disturbed the
//! figures.
//!
//! The crate also holds what the developer tools share about the suite: [`suite`], its
//! services and how to provision, start and stop them (also used by `cargo xtask up` and
//! `cargo xtask deploy-check`), [`workspace`], where things are and running tools, and
//! [`large_site`], the bulk loader of a site's SITE_USERs that the suite's tests share.

#![warn(missing_docs, unreachable_pub)]

pub mod large_site;
pub mod suite;
pub mod workspace;

mod access;
mod authz;
mod bulk;
mod contacts;
mod env;
mod gateway;
mod load;
mod mixed;
mod notification;
mod population;
mod procfs;
mod report;
mod scenarios;
mod smtp_sink;
mod statements;
mod streams;
mod watch;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use kc_testkit::{ClusterOptions, PgCluster};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

use self::env::{Env, Prepared};
use self::load::{Settings, Window};
use self::procfs::Watched;
use self::report::{CheckOutcome, Run, TargetRecord};
use self::scenarios::{SCENARIOS, Scenario};
use self::smtp_sink::SmtpSink;
use self::statements::Statements;
use crate::suite::{Account, Mail, Running, Service, Signals, stop_all};

/// Arguments of `cargo xtask bench`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Scenarios to run, or a service's short name for all of its scenarios (default: all;
    /// see --list).
    scenarios: Vec<String>,
    /// Measured time of each run, after the warm-up (e.g. `15s`, `500ms`, `2m`) [default: 15s,
    /// or what a scenario's target says the service must sustain: 30s for notification]
    #[arg(long, value_parser = kc_runtime::config::parse_duration)]
    duration: Option<Duration>,
    /// Time at the start of each run whose calls are not counted.
    #[arg(long, default_value = "3s", value_parser = kc_runtime::config::parse_duration)]
    warmup: Duration,
    /// Calls in flight at once.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    concurrency: u32,
    /// HTTP/2 connections the calls are spread over.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    connections: u32,
    /// Print the scenarios and exit.
    #[arg(long)]
    list: bool,
    /// Load `pg_stat_statements` into the throwaway Postgres and add to each run's notes
    /// what Postgres executed in its window: totals and the statements that took the most
    /// time, by service (a profile of the database; the extension's bookkeeping costs a
    /// little of the figures).
    #[arg(long)]
    pg_statements: bool,
}

/// Measured time of a run when neither `--duration` nor the scenario sets one.
const DEFAULT_DURATION: Duration = Duration::from_secs(15);

impl Args {
    /// The load settings, checked: those of the baselines, and of every scenario without a
    /// duration of its own ([`Settings::of`]).
    fn settings(&self) -> anyhow::Result<Settings> {
        if self.duration.is_some_and(|duration| duration.is_zero()) {
            bail!("--duration must be longer than zero");
        }
        if self.connections > self.concurrency {
            bail!(
                "--connections ({}) must not exceed --concurrency ({}): a connection would carry \
                 no call",
                self.connections,
                self.concurrency
            );
        }
        Ok(Settings {
            warmup: self.warmup,
            duration: self.duration.unwrap_or(DEFAULT_DURATION),
            concurrency: usize::try_from(self.concurrency)?,
            connections: usize::try_from(self.connections)?,
        })
    }

    /// The load settings of `scenario`: `settings` with the scenario's own duration unless
    /// `--duration` was given.
    fn settings_of(&self, settings: &Settings, scenario: &Scenario) -> Settings {
        match (self.duration, scenario.duration) {
            (None, Some(duration)) => Settings {
                duration,
                ..*settings
            },
            _ => *settings,
        }
    }
}

/// Database of the benchmark's cluster that holds the services' schemas.
const DATABASE: &str = "keycontacts";

/// Package of the developer commands, whose release build runs the benchmark.
const XTASK: &str = "xtask";

/// Runs the benchmark: see the crate documentation. Fails only when something broke, never
/// because a target was missed.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.list {
        print!("{}", listing());
        return Ok(ExitCode::SUCCESS);
    }
    let scenarios = scenarios::select(&args.scenarios)?;
    let settings = args.settings()?;
    let services = scenarios::services(&scenarios)?;

    if cfg!(debug_assertions) {
        return rerun_optimised(&services).await;
    }
    // With xtask, like the build of `rerun_optimised`: the same packages resolve to the same
    // features, so this build finds everything fresh instead of rebuilding the shared crates.
    build_release(&services, true).await?;

    let dir = workspace::target_dir().join("bench");
    std::fs::create_dir_all(&dir).with_context(|| format!("could not create {}", dir.display()))?;
    let pg_dir = dir.join("pg");
    if pg_dir.exists() {
        std::fs::remove_dir_all(&pg_dir)
            .with_context(|| format!("could not wipe {}", pg_dir.display()))?;
    }

    // From here on Ctrl-C no longer kills xtask: it stops what was started.
    let mut signals = Signals::new()?;
    eprintln!(
        "xtask: starting a throwaway postgres in {}",
        pg_dir.display()
    );
    let options = ClusterOptions {
        settings: if args.pg_statements {
            statements::cluster_settings()
        } else {
            Vec::new()
        },
        ..ClusterOptions::default()
    };
    let cluster = tokio::select! {
        cluster = PgCluster::start(&pg_dir, options) => {
            cluster.context("could not start the benchmark's postgres")?
        }
        signal = signals.recv() => bail!("{signal}: stopped"),
    };

    let plans: Vec<(&'static Scenario, Settings)> = scenarios
        .iter()
        .map(|scenario| (*scenario, args.settings_of(&settings, scenario)))
        .collect();
    let mut running = Vec::new();
    let outcome = tokio::select! {
        outcome = bench(&plans, &services, &settings, &cluster, args.pg_statements, &dir, &mut running) => outcome,
        signal = signals.recv() => Err(anyhow!("{signal}: benchmark interrupted")),
    };
    stop_all(&mut running).await;
    eprintln!("xtask: stopping postgres");
    if let Err(err) = cluster.stop().await {
        eprintln!("xtask: {err:#}");
    }
    outcome.map(|()| ExitCode::SUCCESS)
}

/// Builds the release binaries of `services`, and of xtask itself with `xtask`.
async fn build_release(services: &[&'static Service], xtask: bool) -> anyhow::Result<()> {
    // Query macros must not reach for a database at compile time.
    let offline = std::env::var_os("SQLX_OFFLINE").unwrap_or_else(|| "true".into());
    let mut build = workspace::cargo();
    build
        .args(["build", "--release"])
        .env("SQLX_OFFLINE", offline);
    if xtask {
        build.args(["-p", XTASK]);
    }
    for service in services {
        build.args(["-p", service.bin]);
    }
    workspace::check(&mut build).await
}

/// Runs this very command again in a release build of xtask, and exits as it does.
///
/// The load generator shares the CPUs with the services and Postgres: a debug build of it
/// (what `cargo xtask` runs) would take from them much of what an optimised one leaves them.
async fn rerun_optimised(services: &[&'static Service]) -> anyhow::Result<ExitCode> {
    build_release(services, true).await?;
    let exe = workspace::target_dir().join("release").join(XTASK);
    // Ctrl-C reaches the child too (same process group), which stops what it started: wait for
    // it rather than die first.
    let mut signals = Signals::new()?;
    let mut command = tokio::process::Command::new(&exe);
    command
        .args(std::env::args_os().skip(1))
        .current_dir(workspace::root());
    eprintln!("xtask: running {}", workspace::show(&command));
    let mut child = command
        .spawn()
        .with_context(|| format!("could not run {}", exe.display()))?;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status?,
            _ = signals.recv() => {}
        }
    };
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None => ExitCode::FAILURE,
    })
}

/// The scenarios, one a line, with their targets.
fn listing() -> String {
    let width = SCENARIOS
        .iter()
        .map(|scenario| scenario.name.len())
        .max()
        .unwrap_or(0);
    let mut text = String::new();
    for scenario in SCENARIOS {
        let checks: Vec<String> = scenario.target.iter().map(report::describe).collect();
        let target = format!("target: {}", checks.join(", "));
        let _ = writeln!(
            text,
            "{:<width$}  {} ({target})",
            scenario.name, scenario.about
        );
    }
    text
}

/// Prepares the database and the service accounts of `services` (and the SMTP sink when one
/// of them sends mail), then for each scenario starts the services it needs that are not
/// running yet (pushing each to `running` once spawned), seeds it, measures the baseline of its
/// service (once per service, with `settings`) and the scenario (with its own settings);
/// prints the results and writes them to `dir`. With `pg_statements`, each run's notes say
/// what Postgres executed in its window ([`statements`]).
async fn bench(
    plans: &[(&'static Scenario, Settings)],
    services: &[&'static Service],
    settings: &Settings,
    cluster: &PgCluster,
    pg_statements: bool,
    dir: &Path,
    running: &mut Vec<Running>,
) -> anyhow::Result<()> {
    create_database(cluster).await?;
    let statements = match pg_statements {
        true => Some(Statements::enable(cluster.url(DATABASE)).await?),
        false => None,
    };
    let database_urls = suite::provision(&cluster.url(DATABASE), None).await?;
    let accounts = create_service_accounts(services, &database_urls).await?;
    let later = later_addrs(services)?;
    // The benchmark's own service account, whose tokens the scenarios of services that only
    // accept service callers use; created once per run.
    let bench_account = if services.iter().any(|service| service.name == "identity") {
        Some(create_account(BENCH_ACCOUNT, &[], &database_urls).await?)
    } else {
        None
    };
    // The services that send mail deliver it to a sink in this process, which counts it.
    let sink = if services.iter().any(|service| service.sends_mail) {
        let sink = SmtpSink::start().context("could not start the SMTP sink")?;
        eprintln!("xtask: SMTP sink listening on {}", sink.url());
        Some(Arc::new(sink))
    } else {
        None
    };
    let mail = sink.as_ref().map(|sink| Mail::Smtp {
        url: sink.url(),
        username: None,
        password: None,
    });

    let mut watched = Watched {
        services: Vec::new(),
        postmaster: procfs::postmaster_pid(cluster.data_dir()).ok(),
        threads: sink
            .iter()
            .filter_map(|sink| Some(("smtp sink", sink.thread_id()?)))
            .collect(),
    };
    let mut env = Env::new(
        BTreeMap::new(),
        database_urls.clone(),
        settings.warmup + settings.duration,
        sink.clone(),
        bench_account,
    );
    let mut runs = Vec::new();
    let mut baselines: BTreeMap<&str, f64> = BTreeMap::new();
    let mut verdicts = Vec::new();
    for (scenario, scenario_settings) in plans {
        let service = Service::named(scenario.service)?;
        // Started on first need, so that a service does not take CPU from the scenarios
        // before its own (e.g. access following the registry's stream while the contacts
        // scenarios write to it).
        for &needed in &scenarios::services(&[scenario])? {
            if env.urls.contains_key(needed.name) {
                continue;
            }
            let (url, metrics_addr) = start(
                needed,
                &accounts,
                &database_urls,
                &env.urls,
                &later,
                mail.as_ref(),
                running,
            )
            .await?;
            let started = running.last().expect("just started");
            let pid = started
                .child
                .id()
                .ok_or_else(|| anyhow!("{} exited", started.service.bin))?;
            watched.services.push((started.service.bin, pid));
            env.urls.insert(needed.name, url);
            env.metrics_addrs.insert(needed.name, metrics_addr);
        }
        let url = service_url(&env.urls, service.name)?.to_owned();
        let calls_url = service_url(&env.urls, scenario.via.unwrap_or(service.name))?.to_owned();

        eprintln!("xtask: seeding {}", scenario.name);
        env.run_time = scenario_settings.warmup + scenario_settings.duration;
        let prepared = (scenario.seed)(&env)
            .await
            .with_context(|| format!("could not seed {}", scenario.name))?;

        // The baseline of a service is measured once, before its first scenario and after
        // that scenario's seeding, so that work the seeding set off (a projection catching
        // up) does not land in either.
        if !baselines.contains_key(scenario.service) {
            eprintln!(
                "xtask: measuring the baseline of {} ({})",
                service.bin,
                timing(settings)
            );
            let baseline = Prepared::calls(scenarios::health_check(), Vec::new());
            let run = measure(
                format!("baseline {}", service.name),
                service,
                scenarios::HEALTH_CHECK,
                &url,
                baseline,
                settings,
                &watched,
                None,
                None,
            )
            .await?;
            let path = dir.join(format!("baseline-{}.json", service.name));
            report::write_record(&path, "baseline", &run, None)?;
            baselines.insert(scenario.service, run.measurement.rps());
            runs.push(run);
        }

        let mut prepared = prepared;
        if let Some(warm) = prepared.warm.take() {
            eprintln!("xtask: warming up {}", scenario.name);
            prepared.notes.push(
                warm.await
                    .with_context(|| format!("could not warm up {}", scenario.name))?,
            );
        }

        eprintln!(
            "xtask: measuring {} ({})",
            scenario.name,
            timing(scenario_settings)
        );
        let run = measure(
            scenario.name.to_owned(),
            service,
            scenario.method,
            &calls_url,
            prepared,
            scenario_settings,
            &watched,
            statements.as_ref(),
            baselines.get(scenario.service).copied(),
        )
        .await?;
        let outcomes = report::evaluate(scenario.target, &run, &runs);
        let target = TargetRecord {
            pass: !outcomes.iter().any(CheckOutcome::missed),
            checks: &outcomes,
        };
        let path = dir.join(format!("{}.json", scenario.name));
        report::write_record(&path, scenario.name, &run, Some(target))?;
        verdicts.push(verdict(scenario, &run, &outcomes));
        runs.push(run);
    }

    println!();
    println!(
        "{}, {} calls in flight over {} connections, {} cpus",
        run_lengths(&runs),
        settings.concurrency,
        settings.connections,
        std::thread::available_parallelism().map_or(1, usize::from)
    );
    print!("{}", report::table(&runs));
    println!();
    for verdict in verdicts {
        print!("{verdict}");
    }
    println!("\nresults written to {}/*.json", dir.display());
    Ok(())
}

/// `15 s per run after 3 s of warm-up`, with the runs of another length named.
fn run_lengths(runs: &[Run]) -> String {
    let Some(first) = runs.first() else {
        return "no run".to_owned();
    };
    let common = first.settings;
    let mut text = format!(
        "{} s per run after {} s of warm-up",
        common.duration.as_secs_f64(),
        common.warmup.as_secs_f64()
    );
    let other: Vec<String> = runs
        .iter()
        .filter(|run| run.settings.duration != common.duration)
        .map(|run| format!("{} {} s", run.name, run.settings.duration.as_secs_f64()))
        .collect();
    if !other.is_empty() {
        let _ = write!(text, " ({})", other.join(", "));
    }
    text
}

/// Starts the release build of `service` on its address of `later` (see [`later_addrs`]) or
/// else a free port, wired to the running services of `urls` (which must hold the ones it
/// calls) and to those of `later` it calls later, its service account from `accounts` and the
/// SMTP sink of `mail`; pushes it to `running` once spawned, waits until it serves, and
/// returns its URL and the address of its Prometheus endpoint (every service serves its
/// metrics, as in production: the scenarios may read them, and the figures include what
/// recording them costs).
async fn start(
    service: &'static Service,
    accounts: &BTreeMap<&'static str, Account>,
    database_urls: &BTreeMap<&'static str, String>,
    urls: &BTreeMap<&'static str, String>,
    later: &BTreeMap<&'static str, String>,
    mail: Option<&Mail>,
    running: &mut Vec<Running>,
) -> anyhow::Result<(String, String)> {
    let addr = match later.get(service.name) {
        Some(addr) => addr.clone(),
        None => free_addr()?,
    };
    let mut urls = urls.clone();
    for called in service.calls_later {
        if let Some(addr) = later.get(called) {
            urls.entry(called)
                .or_insert_with(|| format!("http://{addr}"));
        }
    }
    let mut env = vec![
        ("KC_LOG_FORMAT".to_owned(), "json".to_owned()),
        ("RUST_LOG".to_owned(), "warn".to_owned()),
    ];
    let metrics_addr = free_addr()?;
    env.push(("KC_METRICS_LISTEN".to_owned(), metrics_addr.clone()));
    env.extend(service.env(&urls, accounts.get(service.name), mail)?);
    eprintln!("xtask: starting {} (release) on {addr}", service.bin);
    let command = service.command_with(
        service.release_binary()?,
        database_urls.get(service.name).map(String::as_str),
    );
    running.push(suite::spawn_on(service, command, &addr, &env)?);
    running
        .last_mut()
        .expect("just pushed")
        .wait_until_serving()
        .await?;
    Ok((format!("http://{addr}"), metrics_addr))
}

/// `3 s warm-up + 15 s`, for progress lines.
fn timing(settings: &Settings) -> String {
    format!(
        "{} s warm-up + {} s",
        settings.warmup.as_secs_f64(),
        settings.duration.as_secs_f64()
    )
}

/// The URL of the running service `name`.
fn service_url<'a>(
    urls: &'a BTreeMap<&'static str, String>,
    name: &str,
) -> anyhow::Result<&'a str> {
    urls.get(name)
        .map(String::as_str)
        .ok_or_else(|| anyhow!("service {name} is not running"))
}

/// Lines on a scenario's target, errors and notes.
fn verdict(scenario: &Scenario, run: &Run, outcomes: &[CheckOutcome]) -> String {
    let mut text = String::new();
    let label = if outcomes.iter().any(CheckOutcome::missed) {
        "MISS"
    } else if outcomes.iter().any(|outcome| outcome.pass.is_none()) {
        "PASS, partly evaluated"
    } else {
        "PASS"
    };
    let checks: Vec<String> = outcomes.iter().map(CheckOutcome::phrase).collect();
    let _ = writeln!(text, "{}: {label} ({})", scenario.name, checks.join("; "));
    if !run.measurement.errors.is_empty() {
        let errors: Vec<String> = run
            .measurement
            .errors
            .iter()
            .map(|(code, count)| format!("{code} {count}"))
            .collect();
        let _ = writeln!(text, "  errors: {}", errors.join(", "));
    }
    for note in &run.notes {
        let _ = writeln!(text, "  {note}");
    }
    text
}

/// Drives the calls of `prepared` at `url` for one run and collects what it measured, with
/// what the calls set off when the scenario counts it, and what Postgres executed in the
/// window when `statements` are counted.
#[allow(clippy::too_many_arguments)]
async fn measure(
    name: String,
    service: &'static Service,
    method: &'static str,
    url: &str,
    prepared: Prepared,
    settings: &Settings,
    watched: &Watched,
    statements: Option<&Statements>,
    baseline_rps: Option<f64>,
) -> anyhow::Result<Run> {
    let Prepared {
        call,
        mut notes,
        admit,
        paced,
        outcome,
        concurrency,
        beside,
        ..
    } = prepared;
    let own;
    let settings = match concurrency {
        Some(concurrency) if concurrency != settings.concurrency => {
            notes.push(format!(
                "{concurrency} calls in flight (the scenario's own), over {} connections",
                settings.connections.min(concurrency)
            ));
            own = Settings {
                concurrency,
                connections: settings.connections.min(concurrency),
                ..*settings
            };
            &own
        }
        _ => settings,
    };
    let channels = load::connect(url, settings.connections).await?;
    // Peak RSS per run, not over the process's life (which includes seeding and earlier runs).
    for (bin, pid) in &watched.services {
        if !procfs::reset_peak_rss(*pid) {
            notes.push(format!(
                "could not reset the peak rss of {bin}: it covers the process's whole life"
            ));
        }
    }
    let window = Window::starting_now(settings);
    let sample = async {
        tokio::time::sleep_until(window.from).await;
        let start = watched.snapshot();
        if let Some(statements) = statements {
            statements.reset().await?;
        }
        tokio::time::sleep_until(window.until).await;
        let end = watched.snapshot();
        let executed = match statements {
            Some(statements) => statements.report().await?,
            None => Vec::new(),
        };
        anyhow::Ok((start, end, executed))
    };
    let beside = async {
        match beside {
            Some(beside) => beside(window).await,
            None => Ok(Vec::new()),
        }
    };
    let (measurement, sampled, beside_notes) = tokio::join!(
        load::drive(
            &channels,
            &call,
            admit.as_ref(),
            settings.concurrency,
            window
        ),
        sample,
        beside
    );
    let measurement = measurement?;
    let (start, end, executed) = sampled.context("could not read pg_stat_statements")?;
    notes.extend(executed);
    notes.extend(beside_notes.with_context(|| format!("what ran beside {name} failed"))?);
    let deliveries = match outcome {
        Some(outcome) => {
            let (deliveries, outcome_notes) = outcome(window)
                .await
                .with_context(|| format!("could not count what {name} set off"))?;
            notes.extend(outcome_notes);
            Some(deliveries)
        }
        None => None,
    };
    // Read after the deliveries arrived: the service's peak includes delivering them.
    let peak_rss_mib = watched
        .services
        .iter()
        .map(|(bin, pid)| (*bin, procfs::peak_rss_mib(*pid).ok()))
        .collect();
    Ok(Run {
        name,
        service,
        method,
        measurement,
        peak_rss_mib,
        cpu: watched.usage(&start, &end),
        baseline_rps,
        paced,
        deliveries,
        settings: *settings,
        notes,
    })
}

/// Creates the benchmark's database on the fresh cluster.
async fn create_database(cluster: &PgCluster) -> anyhow::Result<()> {
    let mut conn = PgConnection::connect(&cluster.url("postgres"))
        .await
        .context("could not connect to the benchmark's postgres")?;
    sqlx::raw_sql(AssertSqlSafe(format!(
        "CREATE DATABASE {}",
        suite::quote_ident(DATABASE)
    )))
    .execute(&mut conn)
    .await
    .with_context(|| format!("could not create database {DATABASE}"))?;
    conn.close().await?;
    Ok(())
}

/// Name of the benchmark's own service account.
const BENCH_ACCOUNT: &str = "xtask-bench";

/// Creates a service account for each of `services` that calls others of them as itself
/// ([`Service::needs_account`]), by short name.
async fn create_service_accounts(
    services: &[&'static Service],
    database_urls: &BTreeMap<&'static str, String>,
) -> anyhow::Result<BTreeMap<&'static str, Account>> {
    let mut accounts = BTreeMap::new();
    let callers = services
        .iter()
        .filter(|service| service.needs_account(|name| runs(services, name)));
    for service in callers {
        let account = create_account(&service.account_name(), &[], database_urls).await?;
        accounts.insert(service.name, account);
    }
    Ok(accounts)
}

/// Creates the service account `name` holding `scopes` (`kc-identity create-service-account
/// NAME --scope …`) with the release build of identity.
async fn create_account(
    name: &str,
    scopes: &[&str],
    database_urls: &BTreeMap<&'static str, String>,
) -> anyhow::Result<Account> {
    let identity = Service::named("identity")?;
    eprintln!("xtask: creating the service account {name}");
    let mut command = identity.command_with(
        identity.release_binary()?,
        database_urls.get(identity.name).map(String::as_str),
    );
    command.args(["create-service-account", name]);
    if !scopes.is_empty() {
        command.args(["--scope", &scopes.join(",")]);
    }
    let output =
        suite::output(command, &format!("{} create-service-account", identity.bin)).await?;
    Account::parse(&output)
}

/// Whether `name` is one of `services`.
fn runs(services: &[&'static Service], name: &str) -> bool {
    services.iter().any(|service| service.name == name)
}

/// An address, fixed before anything starts, for each of `services` that another of them
/// calls later ([`Service::calls_later`]: access management, whose events the registry
/// follows, T8): the caller starts first and is given this address; the callee starts on it
/// when a scenario first needs it (until then the caller's stream retries).
fn later_addrs(services: &[&'static Service]) -> anyhow::Result<BTreeMap<&'static str, String>> {
    let mut listeners = BTreeMap::new();
    for called in services.iter().flat_map(|service| service.calls_later) {
        if runs(services, called) && !listeners.contains_key(called) {
            listeners.insert(*called, free_listener()?);
        }
    }
    // The listeners are held until every address is taken, so that the addresses differ;
    // they close here, freeing the ports for the services.
    listeners
        .into_iter()
        .map(|(name, listener)| Ok((name, listener.local_addr()?.to_string())))
        .collect()
}

/// An address on 127.0.0.1 with a port that was free a moment ago.
fn free_addr() -> anyhow::Result<String> {
    Ok(free_listener()?.local_addr()?.to_string())
}

/// A listener on a free port of 127.0.0.1.
fn free_listener() -> anyhow::Result<std::net::TcpListener> {
    std::net::TcpListener::bind("127.0.0.1:0").context("could not find a free port on 127.0.0.1")
}

/// Asserts that `sql` uses each of the parameters `$1` to `$count` and no `$count+1`: the
/// statement binds exactly what its caller passes (the bench's tests of its SQL texts).
#[cfg(test)]
pub(crate) fn assert_binds_parameters(sql: &str, count: usize) {
    for n in 1..=count {
        assert!(sql.contains(&format!("${n}")), "${n} unused in {sql}");
    }
    assert!(!sql.contains(&format!("${}", count + 1)), "{sql}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(concurrency: u32, connections: u32, duration: Duration) -> Args {
        Args {
            scenarios: Vec::new(),
            duration: Some(duration),
            warmup: Duration::from_secs(3),
            concurrency,
            connections,
            list: false,
            pg_statements: false,
        }
    }

    #[test]
    fn settings_are_checked() {
        let settings = args(64, 4, Duration::from_secs(15)).settings().unwrap();
        assert_eq!(settings.concurrency, 64);
        assert_eq!(settings.connections, 4);
        assert!(args(2, 4, Duration::from_secs(15)).settings().is_err());
        assert!(args(64, 4, Duration::ZERO).settings().is_err());
    }

    #[test]
    fn a_scenario_runs_for_its_own_duration_unless_one_is_given() {
        let sustained = SCENARIOS
            .iter()
            .find(|scenario| scenario.name == "notification.throughput")
            .unwrap();
        let quick = SCENARIOS
            .iter()
            .find(|scenario| scenario.name == "identity.get_user")
            .unwrap();
        let unset = Args {
            duration: None,
            ..args(64, 4, Duration::ZERO)
        };
        let settings = unset.settings().unwrap();
        assert_eq!(settings.duration, DEFAULT_DURATION);
        assert_eq!(
            unset.settings_of(&settings, sustained).duration,
            Duration::from_secs(30)
        );
        assert_eq!(
            unset.settings_of(&settings, quick).duration,
            DEFAULT_DURATION
        );
        let given = args(64, 4, Duration::from_secs(5));
        let settings = given.settings().unwrap();
        assert_eq!(
            given.settings_of(&settings, sustained).duration,
            Duration::from_secs(5)
        );
    }

    #[test]
    fn the_listing_names_every_scenario() {
        let text = listing();
        for scenario in SCENARIOS {
            assert!(text.contains(scenario.name));
        }
        assert!(text.contains("p99 <= 15 ms"));
    }

    #[test]
    fn ratios_keep_two_significant_digits() {
        assert_eq!(report::fmt_ratio(Some(0.3123)), "0.31");
        assert_eq!(report::fmt_ratio(Some(0.01234)), "0.0123");
        assert_eq!(report::fmt_ratio(Some(0.00001234)), "1.2e-5");
        assert_eq!(report::fmt_ratio(None), "-");
        assert_eq!(report::fmt_rps(54321.4), "54321");
        assert_eq!(report::fmt_rps(48.26), "48.3");
    }
}
