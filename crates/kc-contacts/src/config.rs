//! Settings of `kc-contacts`, from flags and environment variables.

use clap::Parser;
use kc_runtime::config::{DatabaseArgs, IdentityUrlArgs, ServerArgs};

/// Everything `kc-contacts serve` needs.
#[derive(clap::Args, Debug, Clone)]
pub struct ContactsArgs {
    /// Server settings.
    #[command(flatten)]
    pub server: ServerArgs,
    /// Database settings.
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Where token signing keys come from.
    #[command(flatten)]
    pub identity: IdentityUrlArgs,
}

impl ContactsArgs {
    /// Parses serve arguments from an argument vector (the first item is the program name).
    pub fn parse_from<I, T>(argv: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            args: ContactsArgs,
        }
        Cli::try_parse_from(argv).map(|cli| cli.args)
    }
}
