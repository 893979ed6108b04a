//! The `kc-contacts` binary: serves by default; `migrate` runs the migrations and exits.

use clap::{Parser, Subcommand};
use kc_contacts::config::ContactsArgs;
use kc_runtime::Shutdown;
use kc_runtime::telemetry::{self, LogFormat};

/// keycontacts contact registry: customers, sites, contact roles and their rules.
///
/// Without a command it serves: `kc-contacts --listen …` is `kc-contacts serve --listen …`.
#[derive(Parser)]
#[command(name = "kc-contacts", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The subcommands besides `serve` (the default).
const COMMANDS: [&str; 1] = ["migrate"];

#[derive(Subcommand)]
enum Command {
    /// Serve gRPC (the default when no command is given).
    Serve(Box<ContactsArgs>),
    /// Run the migrations of the contacts schema and exit (for a Kubernetes Job).
    Migrate {
        /// Postgres URL of the contacts role.
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: String,
    },
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse_from(kc_runtime::cli::argv_with_default_serve(&COMMANDS));
    if let Err(error) = run(cli).await {
        eprintln!("kc-contacts: {error:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            let _telemetry = telemetry::init("kc-contacts", args.server.log_format)?;
            let listener =
                kc_runtime::server::bind(args.server.listen.unwrap_or(kc_contacts::DEFAULT_LISTEN))
                    .await?;
            kc_contacts::run(*args, listener, Shutdown::on_signals()).await
        }
        Command::Migrate { database_url } => {
            let _telemetry = telemetry::init("kc-contacts", LogFormat::Pretty)?;
            kc_contacts::migrate(&database_url).await?;
            println!("migrations applied to schema {}", kc_contacts::SCHEMA);
            Ok(())
        }
    }
}
