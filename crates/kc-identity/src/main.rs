//! The `kc-identity` binary: serves by default; `migrate`, `create-service-account`,
//! `bootstrap-operator`, `generate-key` and `generate-code-keys` are one-shot administration
//! commands.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use kc_identity::config::IdentityArgs;
use kc_identity::domain::values::{Email, Password};
use kc_runtime::Shutdown;
use kc_runtime::secrets::{self, OpeningKey};
use kc_runtime::telemetry::{self, LogFormat};

/// keycontacts identity service: users, credentials, sessions, signed tokens.
///
/// Without a command it serves: `kc-identity --listen …` is `kc-identity serve --listen …`.
#[derive(Parser)]
#[command(name = "kc-identity", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The subcommands besides `serve` (the default).
const COMMANDS: [&str; 5] = [
    "migrate",
    "create-service-account",
    "bootstrap-operator",
    "generate-key",
    "generate-code-keys",
];

#[derive(Subcommand)]
enum Command {
    /// Serve gRPC (the default when no command is given).
    Serve(Box<IdentityArgs>),
    /// Run the migrations of the identity schema and exit (for a Kubernetes Job).
    Migrate {
        /// Postgres URL of the identity role.
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: String,
    },
    /// Create a service account and print `client_id=…` and `client_secret=…` (shown once).
    CreateServiceAccount {
        /// Name of the account, e.g. `kc-gateway`.
        name: String,
        #[command(flatten)]
        args: IdentityArgs,
    },
    /// Create the operator with this e-mail, or reset its password; idempotent.
    BootstrapOperator {
        /// Operator login e-mail.
        #[arg(long)]
        email: String,
        /// File holding the password (first line).
        #[arg(long)]
        password_file: PathBuf,
        #[command(flatten)]
        args: IdentityArgs,
    },
    /// Print a new random key (32 bytes, base64) for a key file such as
    /// `--key-encryption-key-file`; write it to a file only its service can read.
    GenerateKey,
    /// Print a new code key pair: `code_opening_key=…` (secret, for kc-notification's
    /// `--code-opening-key-file`) and `code_sealing_key=…` (public, for kc-identity's
    /// `--code-sealing-key-file`).
    GenerateCodeKeys,
}

#[tokio::main]
async fn main() {
    if let Err(error) = run(Cli::parse_from(kc_runtime::cli::argv_with_default_serve(
        &COMMANDS,
    )))
    .await
    {
        eprintln!("kc-identity: {error:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve(*args).await,
        Command::Migrate { database_url } => {
            let _telemetry = telemetry::init("kc-identity", LogFormat::Pretty)?;
            kc_identity::migrate(&database_url).await?;
            println!("migrations applied to schema {}", kc_identity::SCHEMA);
            Ok(())
        }
        Command::CreateServiceAccount { name, args } => {
            kc_identity::migrate(&args.database.database_url).await?;
            let (_pool, identity) = kc_identity::build(&args).await?;
            let (client_id, secret) = identity
                .create_service_account(&name)
                .await
                .map_err(|error| anyhow::anyhow!(kc_runtime::ApiError::from(error)))?;
            println!("client_id={client_id}");
            println!("client_secret={secret}");
            Ok(())
        }
        Command::BootstrapOperator {
            email,
            password_file,
            args,
        } => {
            let email = Email::parse("email", &email)
                .map_err(|v| anyhow::anyhow!("--email: {}", v.description))?;
            let text = std::fs::read_to_string(&password_file).with_context(|| {
                format!("--password-file: cannot read {}", password_file.display())
            })?;
            let password = Password::parse("password", text.lines().next().unwrap_or_default())
                .map_err(|v| anyhow::anyhow!("--password-file: {}", v.description))?;
            kc_identity::migrate(&args.database.database_url).await?;
            let (_pool, identity) = kc_identity::build(&args).await?;
            let user = identity
                .bootstrap_operator(&email, &password)
                .await
                .map_err(|error| anyhow::anyhow!(kc_runtime::ApiError::from(error)))?;
            println!("operator_user_id={}", user.user_id);
            Ok(())
        }
        Command::GenerateKey => {
            println!("{}", secrets::generate_key()?);
            Ok(())
        }
        Command::GenerateCodeKeys => {
            let opening = OpeningKey::generate()?;
            println!("code_opening_key={}", opening.to_text().as_str());
            println!("code_sealing_key={}", opening.sealing_key().to_text());
            Ok(())
        }
    }
}

async fn serve(args: IdentityArgs) -> anyhow::Result<()> {
    let _telemetry = telemetry::init("kc-identity", args.server.log_format)?;
    let listener =
        kc_runtime::server::bind(args.server.listen.unwrap_or(kc_identity::DEFAULT_LISTEN)).await?;
    kc_identity::run(args, listener, Shutdown::on_signals()).await
}
