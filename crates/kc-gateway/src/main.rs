//! The `kc-gateway` binary: serves the public API (it has no database, so no `migrate`).

use clap::{Parser, Subcommand};
use kc_gateway::config::GatewayArgs;
use kc_runtime::Shutdown;
use kc_runtime::telemetry;

/// keycontacts gateway: the one public gRPC API, which authenticates, authorizes and
/// composes identity, the contact registry, access management and notification.
///
/// Without a command it serves: `kc-gateway --listen …` is `kc-gateway serve --listen …`.
#[derive(Parser)]
#[command(name = "kc-gateway", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve gRPC (the default when no command is given).
    Serve(Box<GatewayArgs>),
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse_from(kc_runtime::cli::argv_with_default_serve(&[]));
    if let Err(error) = run(cli).await {
        eprintln!("kc-gateway: {error:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            let _telemetry = telemetry::init("kc-gateway", args.server.log_format)?;
            let listener =
                kc_runtime::server::bind(args.server.listen.unwrap_or(kc_gateway::DEFAULT_LISTEN))
                    .await?;
            kc_gateway::run(*args, listener, Shutdown::on_signals()).await
        }
    }
}
