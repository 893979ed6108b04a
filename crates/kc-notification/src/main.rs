//! The `kc-notification` binary: serves by default; `migrate` runs the migrations and exits.

use clap::{Parser, Subcommand};
use kc_notification::config::NotificationArgs;
use kc_runtime::Shutdown;
use kc_runtime::telemetry::{self, LogFormat};

/// keycontacts notification: who must be told what, in their language, delivered reliably
/// by e-mail.
///
/// Without a command it serves: `kc-notification --listen …` is
/// `kc-notification serve --listen …`.
#[derive(Parser)]
#[command(name = "kc-notification", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The subcommands besides `serve` (the default).
const COMMANDS: [&str; 1] = ["migrate"];

#[derive(Subcommand)]
enum Command {
    /// Serve gRPC, follow the event streams and deliver mail (the default when no command
    /// is given).
    #[command(args_override_self = true)]
    Serve(Box<NotificationArgs>),
    /// Run the migrations of the notification schema and exit (for a Kubernetes Job).
    Migrate {
        /// Postgres URL of the notification role.
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: String,
    },
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse_from(kc_runtime::cli::argv_with_default_serve(&COMMANDS));
    if let Err(error) = run(cli).await {
        eprintln!("kc-notification: {error:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            let _telemetry = telemetry::init("kc-notification", args.server.log_format)?;
            let listener = kc_runtime::server::bind(
                args.server
                    .listen
                    .unwrap_or(kc_notification::DEFAULT_LISTEN),
            )
            .await?;
            kc_notification::run(*args, listener, Shutdown::on_signals()).await
        }
        Command::Migrate { database_url } => {
            let _telemetry = telemetry::init("kc-notification", LogFormat::Pretty)?;
            kc_notification::migrate(&database_url).await?;
            println!("migrations applied to schema {}", kc_notification::SCHEMA);
            Ok(())
        }
    }
}
