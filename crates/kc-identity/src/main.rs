//! The `kc-identity` binary: serves by default; `migrate`, `create-service-account`,
//! `bootstrap-operator`, `generate-key` and `generate-code-keys` are one-shot administration
//! commands.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use kc_identity::config::IdentityArgs;
use kc_identity::domain::values::{Email, Password, Scopes};
use kc_runtime::secrets::{self, OpeningKey};

fn main() {
    kc_runtime::bootstrap::Binary::new(
        &kc_identity::SERVICE,
        "keycontacts identity service: users, credentials, sessions, signed tokens.",
    )
    .main_with(kc_identity::run, admin);
}

/// The administration commands, besides `serve` and `migrate`.
#[derive(Subcommand)]
enum Admin {
    /// Create a service account and print `client_id=…` and `client_secret=…` (shown once).
    CreateServiceAccount {
        /// Name of the account, e.g. `kc-gateway`.
        name: String,
        /// A scope its tokens carry, admitting it to a public service of the gateway:
        /// `authz` (AuthorizationService) or `notices` (SendNotice). Comma-separated or
        /// repeated; none by default.
        #[arg(long = "scope", value_name = "SCOPE", value_delimiter = ',')]
        scopes: Vec<String>,
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

/// Runs one administration command.
async fn admin(command: Admin) -> anyhow::Result<()> {
    match command {
        Admin::CreateServiceAccount { name, scopes, args } => {
            let scopes = Scopes::parse("scope", &scopes)
                .map_err(|v| anyhow::anyhow!("--scope: {}", v.description))?;
            kc_identity::SERVICE
                .migrate(&args.database.database_url)
                .await?;
            let (_pool, identity) = kc_identity::build(&args).await?;
            let (client_id, secret) = identity
                .create_scoped_service_account(&name, &scopes)
                .await
                .map_err(|error| anyhow::anyhow!(kc_runtime::ApiError::from(error)))?;
            println!("client_id={client_id}");
            println!("client_secret={secret}");
            Ok(())
        }
        Admin::BootstrapOperator {
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
            kc_identity::SERVICE
                .migrate(&args.database.database_url)
                .await?;
            let (_pool, identity) = kc_identity::build(&args).await?;
            let user = identity
                .bootstrap_operator(&email, &password)
                .await
                .map_err(|error| anyhow::anyhow!(kc_runtime::ApiError::from(error)))?;
            println!("operator_user_id={}", user.user_id);
            Ok(())
        }
        Admin::GenerateKey => {
            println!("{}", secrets::generate_key()?);
            Ok(())
        }
        Admin::GenerateCodeKeys => {
            let opening = OpeningKey::generate()?;
            println!("code_opening_key={}", opening.to_text().as_str());
            println!("code_sealing_key={}", opening.sealing_key().to_text());
            Ok(())
        }
    }
}
