//! `cargo xtask test`: the whole test suite against one throwaway Postgres.

use std::process::ExitCode;

use anyhow::Context;
use kc_testkit::{ClusterOptions, PgCluster};

use kc_bench::workspace;

/// Arguments of `cargo xtask test`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Extra arguments for the test runner (`cargo nextest run` or `cargo test`), e.g. a filter.
    #[arg(last = true)]
    runner_args: Vec<String>,
}

/// Builds the binaries (cross-process tests run them), starts one throwaway cluster under
/// `target/xtask-test-pg` unless `DATABASE_URL` is set, and runs every test of the workspace
/// with `DATABASE_URL` pointing at it: with cargo-nextest when installed, else `cargo test`.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let path = workspace::tools_path().await;
    // Tests get a database URL at run time only; sqlx's query macros must not try to reach
    // it (or any other server) at compile time.
    let offline = std::env::var_os("SQLX_OFFLINE").unwrap_or_else(|| "true".into());

    workspace::check(
        workspace::cargo()
            .args(["build", "--workspace", "--bins"])
            .env("SQLX_OFFLINE", &offline),
    )
    .await?;

    let (database_url, cluster) = match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => {
            eprintln!("xtask: tests use the server of DATABASE_URL");
            (url, None)
        }
        _ => {
            let dir = workspace::target_dir().join("xtask-test-pg");
            if dir.exists() {
                std::fs::remove_dir_all(&dir)
                    .with_context(|| format!("could not wipe {}", dir.display()))?;
            }
            let cluster = PgCluster::start(&dir, ClusterOptions::default()).await?;
            eprintln!(
                "xtask: tests use a throwaway postgres on 127.0.0.1:{}",
                cluster.port()
            );
            (cluster.url("postgres"), Some(cluster))
        }
    };

    let mut runner = workspace::cargo();
    if has_nextest().await {
        runner.args(["nextest", "run", "--workspace", "--no-fail-fast"]);
        if std::env::var_os(TEST_THREADS_VAR).is_none() {
            runner.env(TEST_THREADS_VAR, test_threads().to_string());
        }
    } else {
        eprintln!("xtask: cargo-nextest is not installed, using cargo test");
        runner.args(["test", "--workspace", "--no-fail-fast"]);
    }
    runner
        .args(&args.runner_args)
        .env("DATABASE_URL", &database_url)
        .env("SQLX_OFFLINE", &offline)
        .env("PATH", &path);
    let status = workspace::status(&mut runner).await;

    if let Some(cluster) = cluster {
        cluster.stop().await?;
    }
    let status = status?;
    if status.success() {
        // The binaries were built above: hold the Kubernetes manifests against them.
        kc_deploy_check::check().await
    } else {
        eprintln!("xtask: tests failed ({status})");
        Ok(ExitCode::FAILURE)
    }
}

/// nextest's variable for how many tests run at once (its `--test-threads` overrides it).
const TEST_THREADS_VAR: &str = "NEXTEST_TEST_THREADS";

/// Tests run at once unless `NEXTEST_TEST_THREADS` or `--test-threads` says otherwise: two
/// per cpu up to [`MAX_TEST_THREADS`], never fewer than nextest's one per cpu. Most tests
/// wait on sockets, child processes and Postgres longer than they compute, so one per cpu
/// leaves the cpus idle a third of the time. Measured on 2 cpus (783 tests, dependencies at
/// opt-level 1): 287 s with 2 at once, 193 s with 4, 211 s with 6 (the cpus were saturated
/// and the longest tests stretched).
fn test_threads() -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    (2 * cpus).min(MAX_TEST_THREADS).max(cpus)
}

/// Most tests [`test_threads`] runs at once beyond one per cpu: every suite test opens four
/// services' pools on the one test cluster (`max_connections` 300, kc-testkit).
const MAX_TEST_THREADS: usize = 8;

/// Whether `cargo nextest` is available.
async fn has_nextest() -> bool {
    workspace::cargo()
        .args(["nextest", "--version"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await
        .is_ok_and(|status| status.success())
}
