//! The `kc-access` binary: serves by default; `migrate` runs the migrations and exits.

use clap::{Parser, Subcommand};
use kc_access::config::AccessArgs;
use kc_runtime::Shutdown;
use kc_runtime::telemetry::{self, LogFormat};

/// keycontacts access management: tool rights, support levels, access requests and
/// authorization checks.
///
/// Without a command it serves: `kc-access --listen …` is `kc-access serve --listen …`.
#[derive(Parser)]
#[command(name = "kc-access", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The subcommands besides `serve` (the default).
const COMMANDS: [&str; 1] = ["migrate"];

#[derive(Subcommand)]
enum Command {
    /// Serve gRPC (the default when no command is given).
    Serve(Box<AccessArgs>),
    /// Run the migrations of the access schema and exit (for a Kubernetes Job).
    Migrate {
        /// Postgres URL of the access role.
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: String,
    },
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse_from(kc_runtime::cli::argv_with_default_serve(&COMMANDS));
    if let Err(error) = run(cli).await {
        eprintln!("kc-access: {error:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            let _telemetry = telemetry::init("kc-access", args.server.log_format)?;
            let listener =
                kc_runtime::server::bind(args.server.listen.unwrap_or(kc_access::DEFAULT_LISTEN))
                    .await?;
            kc_access::run(*args, listener, Shutdown::on_signals()).await
        }
        Command::Migrate { database_url } => {
            let _telemetry = telemetry::init("kc-access", LogFormat::Pretty)?;
            kc_access::migrate(&database_url).await?;
            println!("migrations applied to schema {}", kc_access::SCHEMA);
            Ok(())
        }
    }
}
