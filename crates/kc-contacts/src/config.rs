//! Settings of `kc-contacts`, from flags and environment variables.

use std::path::PathBuf;
use std::time::Duration;

use kc_runtime::client::ServiceAccountArgs;
use kc_runtime::config::{
    DatabaseArgs, IdentityUrlArgs, ServerArgs, parse_duration, parse_http_url,
};
use kc_runtime::secrets::SealingKey;

use crate::domain::notification_email::NotificationCodes;
use crate::domain::recovery::RecoveryTimes;

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
    /// How often the S&S sweeper runs (and once at start): it publishes the renewal
    /// reminders due 90, 60 and 30 days before each site's last day of S&S and records the
    /// lapse of S&S whose last day passed (`kc_contacts::support_life`). Reminders and lapses
    /// come at most this long after their day starts (UTC); each is published once whatever
    /// the number of replicas.
    #[arg(long, env = "KC_SUPPORT_SWEEP_INTERVAL", default_value = "1m", value_parser = parse_duration)]
    pub support_sweep_interval: Duration,
    /// Waiting period of a primary recovery (C12): during it the old primary contact may
    /// refuse and no operator may attest.
    #[arg(long, env = "KC_PRIMARY_RECOVERY_WAITING_PERIOD", default_value = "72h", value_parser = parse_duration)]
    pub primary_recovery_waiting_period: Duration,
    /// Lifetime of an open primary recovery (C12), from the time it was asked; longer than
    /// the waiting period. A recovery nobody attested by then expires.
    #[arg(long, env = "KC_PRIMARY_RECOVERY_MAX_AGE", default_value = "30d", value_parser = parse_duration)]
    pub primary_recovery_max_age: Duration,
    /// URL of access management, whose events feed the registry's projection of explicit
    /// grants, e.g. `http://127.0.0.1:50053`. With it the registry decides, in each write's
    /// own transaction, whether the acting person still holds the authority the write needs,
    /// counting its roles and its explicit grants (T6, T8). Without it the registry knows no
    /// explicit grant: only the authority roles imply counts, so a person whose authority is
    /// an explicit grant is refused (fail closed). Production sets it.
    #[arg(long, env = "KC_ACCESS_URL", value_parser = parse_http_url)]
    pub access_url: Option<String>,
    /// URL of the notification service, e.g. `http://127.0.0.1:50054`, whose delivery
    /// outcomes feed the compliance report's failing addresses (a contact whose last notice
    /// was refused for good). Followed with this service's account, so it needs
    /// `--access-url` and the account too. Without it no address is ever reported failing.
    #[arg(long, env = "KC_NOTIFICATION_URL", value_parser = parse_http_url, requires = "access_url")]
    pub notification_url: Option<String>,
    /// This service's own account, to follow access management's event stream; required
    /// with `--access-url`.
    #[arg(long, env = "KC_CLIENT_ID", requires = "access_url")]
    pub client_id: Option<String>,
    /// Client secret of this service's account (base64url; may start with `-`).
    #[arg(
        long,
        env = "KC_CLIENT_SECRET",
        hide_env_values = true,
        allow_hyphen_values = true,
        requires = "access_url"
    )]
    pub client_secret: Option<String>,
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

    /// The S&S sweeper's interval; fails with one line when it is zero.
    pub fn support_sweep_interval(&self) -> anyhow::Result<Duration> {
        if self.support_sweep_interval.is_zero() {
            anyhow::bail!(
                "--support-sweep-interval (KC_SUPPORT_SWEEP_INTERVAL) must be longer than zero"
            );
        }
        Ok(self.support_sweep_interval)
    }

    /// The waiting period and lifetime of primary recoveries (C12); fails with one line
    /// naming the settings when they do not fit.
    pub fn recovery_times(&self) -> anyhow::Result<RecoveryTimes> {
        RecoveryTimes::new(
            self.primary_recovery_waiting_period,
            self.primary_recovery_max_age,
        )
        .map_err(|error| {
            anyhow::anyhow!(
                "--primary-recovery-waiting-period and --primary-recovery-max-age: {error}"
            )
        })
    }

    /// Access management's URL and this service's account, when the registry follows
    /// access's grants (T8); fails with one line when the URL comes without the account.
    pub fn access_link(&self) -> anyhow::Result<Option<(String, ServiceAccountArgs)>> {
        let Some(url) = &self.access_url else {
            return Ok(None);
        };
        match (&self.client_id, &self.client_secret) {
            (Some(client_id), Some(client_secret))
                if !client_id.trim().is_empty() && !client_secret.is_empty() =>
            {
                Ok(Some((
                    url.clone(),
                    ServiceAccountArgs {
                        client_id: client_id.clone(),
                        client_secret: client_secret.clone(),
                    },
                )))
            }
            _ => anyhow::bail!(
                "--access-url needs --client-id and --client-secret (KC_CLIENT_ID, KC_CLIENT_SECRET): the registry follows access management's events with its own account"
            ),
        }
    }
}
