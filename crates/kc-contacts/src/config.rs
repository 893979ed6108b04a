//! Settings of `kc-contacts`, from flags and environment variables.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use kc_runtime::config::{DatabaseArgs, IdentityUrlArgs, ServerArgs, parse_duration};
use kc_runtime::secrets::SealingKey;

use crate::domain::notification_email::NotificationCodes;

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
    /// Notification's public code-sealing key (the file identity uses too): the code that
    /// proves a new notification e-mail (C11) leaves the registry sealed to it, so that no
    /// other reader of the event stream can read it.
    #[arg(long, env = "KC_CODE_SEALING_KEY_FILE")]
    pub code_sealing_key_file: PathBuf,
    /// Lifetime of the code mailed to a new notification e-mail (C11).
    #[arg(long, env = "KC_NOTIFICATION_EMAIL_CODE_TTL", default_value = "24h", value_parser = parse_duration)]
    pub notification_email_code_ttl: Duration,
}

impl ContactsArgs {
    /// How the registry mails notification e-mail codes: reads the sealing key file; the
    /// error names the setting and the file, never the key.
    pub fn notification_codes(&self) -> anyhow::Result<NotificationCodes> {
        let key = SealingKey::from_file("--code-sealing-key-file", &self.code_sealing_key_file)?;
        if self.notification_email_code_ttl.is_zero() {
            anyhow::bail!("--notification-email-code-ttl must be longer than zero");
        }
        Ok(NotificationCodes::new(
            key,
            self.notification_email_code_ttl,
        ))
    }

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
