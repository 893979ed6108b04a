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
/// `target/xtask-test-pg/<pid>` unless `DATABASE_URL` is set, and runs every test of the
/// workspace with `DATABASE_URL` pointing at it: with cargo-nextest when installed, else
/// `cargo test`. Each run has its own cluster (removed when it stops, or by its watchdog if
/// the run dies), so two runs in one checkout do not wipe each other's database.
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
            let runs = workspace::target_dir().join("xtask-test-pg");
            remove_stale_clusters(&runs)?;
            let dir = runs.join(std::process::id().to_string());
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
        // An ephemeral cluster: stopping it removes its directory.
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

/// Removes the clusters under `runs` (one directory per run, named by its process id) whose
/// run is gone and whose watchdog could not remove them (both killed).
fn remove_stale_clusters(runs: &std::path::Path) -> anyhow::Result<()> {
    let Ok(entries) = std::fs::read_dir(runs) else {
        return Ok(());
    };
    for entry in entries {
        let path = entry?.path();
        let running = path
            .file_name()
            .and_then(|name| name.to_str())
            .and_then(|name| name.parse::<u32>().ok())
            .is_some_and(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists());
        if !running {
            std::fs::remove_dir_all(&path)
                .with_context(|| format!("could not wipe {}", path.display()))?;
        }
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_clusters_of_runs_that_are_gone_are_removed() {
        let runs = std::env::temp_dir().join(format!("xtask-test-pg-{}", uuid::Uuid::new_v4()));
        let ours = runs.join(std::process::id().to_string());
        // No process has this id (Linux caps ids at 2^22).
        let gone = runs.join("4999999");
        let unnamed = runs.join("not-a-run");
        for dir in [&ours, &gone, &unnamed] {
            std::fs::create_dir_all(dir).expect("a run's directory");
        }
        remove_stale_clusters(&runs).expect("stale clusters removed");
        assert!(ours.exists(), "a running run's cluster is kept");
        assert!(!gone.exists() && !unnamed.exists());
        std::fs::remove_dir_all(&runs).expect("clean up");
        remove_stale_clusters(&runs).expect("no directory of runs yet is fine");
    }
}
