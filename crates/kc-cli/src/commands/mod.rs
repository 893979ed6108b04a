//! The command line: global options, one module per command group, and the dispatch.
//!
//! A command group is one file `commands/<group>.rs` with its clap arguments (`Args` or a
//! `Subcommand` enum, each command with an example in `after_help`) and
//! `pub(crate) async fn run(ctx: &mut Context, args) -> Result<()>`. To add a group: add
//! the module below, one variant to [`Command`], and one arm to [`run`].

mod access;
mod audit;
mod auth;
mod check;
mod completion;
mod compliance;
mod contacts;
mod docs;
mod export;
mod import;
mod lookup;
mod notices;
mod requests;
mod sites;
mod watch;

use clap::{Parser, Subcommand};

use crate::client::Context;
use crate::error::Result;
use crate::output::Format;
use crate::session::Store;

/// Examples shown under `kc --help`.
const EXAMPLES: &str = "\
Examples:
  kc login --email camille.martin@dupont.example
  kc sites
  kc contacts 7350101
  kc contacts assign 7350101 --email ana@dupont.example --role secondary
  kc access grant 7350101 --user lucas.moreau@dupont.example --software downloads-only --reason 'project X'
  kc requests pending 7350101 --output json
  kc completion bash > ~/.local/share/bash-completion/completions/kc";

/// kc: the command line of keycontacts (key contacts and rights of licensing sites).
///
/// It talks to the gateway's public API. Sign in once with `kc login`; the tokens are kept
/// per gateway in $XDG_CONFIG_HOME/keycontacts/sessions.json (mode 0600) and renewed
/// automatically. Sites are named by their number (7350101) or their id.
#[derive(Debug, Parser)]
#[command(name = "kc", version, after_help = EXAMPLES, propagate_version = true)]
pub(crate) struct Cli {
    /// The gateway's address; default: KC_GATEWAY, else the gateway of the last login,
    /// else http://127.0.0.1:50050.
    #[arg(long, global = true, env = "KC_GATEWAY", value_name = "ADDR")]
    gateway: Option<String>,

    /// PEM CA that signs an https:// gateway's certificate; without it, the public web
    /// roots (webpki) are trusted.
    #[arg(long, global = true, env = "KC_CA_FILE", value_name = "FILE")]
    ca_file: Option<std::path::PathBuf>,

    /// Output format: aligned tables, or one JSON or YAML document for scripts.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Format::Table)]
    output: Format,

    #[command(subcommand)]
    command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Sign in (person: e-mail and password; service account: client id and secret).
    #[command(after_help = auth::LOGIN_EXAMPLES)]
    Login(auth::LoginArgs),
    /// Sign out: end the session at the gateway and remove its tokens.
    #[command(after_help = "Example:\n  kc logout")]
    Logout,
    /// Who is signed in, with their sites and roles.
    #[command(after_help = "Example:\n  kc whoami\n  kc whoami --output json")]
    Whoami,
    /// The sites where you hold a role or rights.
    #[command(after_help = "Example:\n  kc sites\n  kc sites --output json")]
    Sites,
    /// One site.
    #[command(subcommand)]
    Site(sites::SiteCommand),
    /// A site's contacts (`kc contacts NUMBER`), and changes to them.
    #[command(after_help = contacts::EXAMPLES)]
    Contacts(contacts::ContactsArgs),
    /// Who holds which rights on a site (`kc access NUMBER`), and changes to them.
    #[command(after_help = access::EXAMPLES)]
    Access(access::AccessArgs),
    /// Access requests: the ones waiting for you, your own, and decisions.
    #[command(subcommand)]
    Requests(requests::RequestsCommand),
    /// Ask for access to a site (self-nomination), by site and customer number.
    #[command(after_help = requests::REQUEST_ACCESS_EXAMPLES)]
    RequestAccess(requests::RequestAccessArgs),
    /// A site's audit trail, newest first.
    #[command(after_help = "Example:\n  kc audit 7350101\n  kc audit 7350101 --limit 20")]
    Audit(audit::AuditArgs),
    /// Compliance gaps of a site, of a customer's sites, or of all your sites.
    #[command(after_help = compliance::EXAMPLES)]
    Compliance(compliance::ComplianceArgs),
    /// Notices by e-mail: send one (operators and service accounts), list a site's.
    #[command(subcommand)]
    Notices(notices::NoticesCommand),
    /// Whether a user holds a permission on a site (service accounts with scope authz).
    #[command(after_help = check::EXAMPLES)]
    Check(check::CheckArgs),
    /// Where a user holds a permission, or who holds it on a site (service accounts with
    /// scope authz).
    #[command(subcommand)]
    Lookup(lookup::LookupCommand),
    /// Follow changes as they happen (service accounts with scope authz).
    #[command(subcommand)]
    Watch(watch::WatchCommand),
    /// Bulk import from a CSV file (`kc import contacts FILE.csv`).
    #[command(subcommand)]
    Import(import::ImportCommand),
    /// Bulk export as CSV (`kc export contacts --customer NUMBER`).
    #[command(subcommand)]
    Export(export::ExportCommand),
    /// Print the shell completion script.
    #[command(after_help = completion::EXAMPLES)]
    Completion(completion::CompletionArgs),
}

/// Runs the command line.
pub(crate) async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        // Completion needs neither the gateway nor the token file.
        Command::Completion(args) => completion::run(&args),
        command => {
            let store = Store::from_env()?;
            let mut ctx = Context::new(cli.gateway.as_deref(), cli.output, store)?
                .with_ca_file(cli.ca_file.clone());
            dispatch(&mut ctx, command).await
        }
    }
}

/// Runs one command with the gateway's context.
async fn dispatch(ctx: &mut Context, command: Command) -> Result<()> {
    match command {
        Command::Login(args) => auth::login(ctx, args).await,
        Command::Logout => auth::logout(ctx).await,
        Command::Whoami => auth::whoami(ctx).await,
        Command::Sites => sites::list(ctx).await,
        Command::Site(command) => sites::run(ctx, command).await,
        Command::Contacts(args) => contacts::run(ctx, args).await,
        Command::Access(args) => access::run(ctx, args).await,
        Command::Requests(command) => requests::run(ctx, command).await,
        Command::RequestAccess(args) => requests::request_access(ctx, args).await,
        Command::Audit(args) => audit::run(ctx, args).await,
        Command::Compliance(args) => compliance::run(ctx, args).await,
        Command::Notices(command) => notices::run(ctx, command).await,
        Command::Check(args) => check::run(ctx, args).await,
        Command::Lookup(command) => lookup::run(ctx, command).await,
        Command::Watch(command) => watch::run(ctx, command).await,
        Command::Import(command) => import::run(ctx, command).await,
        Command::Export(command) => export::run(ctx, command).await,
        Command::Completion(args) => completion::run(&args),
    }
}

/// The clap command, for completion scripts.
pub(crate) fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn every_command_has_an_example() {
        fn walk(cmd: &clap::Command, path: &str) {
            for sub in cmd.get_subcommands() {
                let path = format!("{path} {}", sub.get_name());
                if sub.has_subcommands() && sub.get_after_help().is_none() {
                    walk(sub, &path);
                    continue;
                }
                let help = sub
                    .get_after_help()
                    .map(|h| h.to_string())
                    .unwrap_or_default();
                assert!(help.contains("kc "), "{path} has no example in its help");
                walk(sub, &path);
            }
        }
        walk(&command(), "kc");
    }
}
