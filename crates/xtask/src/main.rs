//! Developer commands for the keycontacts workspace: `cargo xtask up | test | lint`.
//!
//! `cargo xtask` is an alias (in `.cargo/config.toml`) for `cargo run --bin xtask --`.

mod lint;
mod modules;
mod seed;
mod test;
mod up;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Developer commands for the keycontacts workspace.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole test suite against one throwaway Postgres (what CI runs).
    Test(test::Args),
    /// Check formatting, clippy (warnings are errors) and `buf lint`.
    Lint,
    /// Build and run the suite's services locally, on a persistent Postgres, until Ctrl-C.
    Up(up::Args),
    /// Benchmarks release builds of the services under load: RPS, latency, errors, peak RSS.
    Bench(kc_bench::Args),
    /// Render the Kubernetes overlays and check them: schema, binaries' flags, network policies.
    DeployCheck(kc_deploy_check::Args),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Test(args) => test::run(args).await,
        Command::Lint => lint::run().await,
        Command::Up(args) => up::run(args).await,
        Command::Bench(args) => kc_bench::run(args).await,
        Command::DeployCheck(args) => kc_deploy_check::run(args).await,
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
