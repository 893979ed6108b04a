//! Settings of `kc-notification`, from flags and environment variables.

use std::path::PathBuf;
use std::time::Duration;

use kc_runtime::client::ServiceAccountArgs;
use kc_runtime::config::{
    DatabaseArgs, IdentityUrlArgs, ServerArgs, parse_duration, parse_http_url,
};
use kc_runtime::secrets::OpeningKey;

use crate::delivery::{DeliverySettings, Mailer, SmtpSettings, TransportSettings};
use crate::domain::retry::RetryPolicy;

/// Most e-mails one replica may have in flight.
const MAX_SEND_CONCURRENCY: u32 = 1024;

/// Everything `kc-notification serve` needs.
#[derive(clap::Args, Debug, Clone)]
pub struct NotificationArgs {
    /// Server settings.
    #[command(flatten)]
    pub server: ServerArgs,
    /// Database settings.
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Where token signing keys, the service token, users and their events come from.
    #[command(flatten)]
    pub identity: IdentityUrlArgs,
    /// URL of the contact registry: its events, recipient resolution (R1) and sites, e.g.
    /// `http://127.0.0.1:50052`.
    #[arg(long, env = "KC_CONTACTS_URL", value_parser = parse_http_url)]
    pub contacts_url: String,
    /// URL of access management, whose events (requests, decisions, rights, domain
    /// policies) become notices, e.g. `http://127.0.0.1:50053`.
    #[arg(long, env = "KC_ACCESS_URL", value_parser = parse_http_url)]
    pub access_url: String,
    /// This service's own account, to follow the event streams and call the registry and
    /// identity.
    #[command(flatten)]
    pub account: ServiceAccountArgs,
    /// File holding this service's X25519 opening key (32 bytes, base64; a file or a mounted
    /// Kubernetes Secret): it opens the codes identity seals to its public half (identity's
    /// `--code-sealing-key-file`) in `EmailVerificationRequested` events. No other service
    /// can read a code.
    #[arg(long, env = "KC_CODE_OPENING_KEY_FILE")]
    pub code_opening_key_file: PathBuf,
    /// SMTP server to deliver through: `smtp://host:port` (plain), `smtp://host:port?tls=required`
    /// (STARTTLS) or `smtps://host:port` (implicit TLS). Without it, mail goes to `--mail-dir`.
    #[arg(long, env = "KC_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,
    /// User name to authenticate to the SMTP server with (with `--smtp-password`).
    #[arg(long, env = "KC_SMTP_USERNAME")]
    pub smtp_username: Option<String>,
    /// Password to authenticate to the SMTP server with (with `--smtp-username`).
    #[arg(
        long,
        env = "KC_SMTP_PASSWORD",
        hide_env_values = true,
        allow_hyphen_values = true
    )]
    pub smtp_password: Option<String>,
    /// Directory that receives one `<notification_id>.eml` file per notification when no SMTP
    /// URL is given (written atomically: a temporary file, then a rename).
    #[arg(long, env = "KC_MAIL_DIR")]
    pub mail_dir: Option<PathBuf>,
    /// The `From` of every e-mail.
    #[arg(
        long,
        env = "KC_MAIL_FROM",
        default_value = "keycontacts <no-reply@keycontacts.invalid>"
    )]
    pub mail_from: String,
    /// Attempts per notification before it is given up (DEAD) after transient failures.
    #[arg(long, env = "KC_MAX_ATTEMPTS", default_value_t = 10)]
    pub max_attempts: u32,
    /// Delay before the second attempt; each later one doubles it (with jitter), up to
    /// `--retry-max`.
    #[arg(long, env = "KC_RETRY_BASE", default_value = "5s", value_parser = parse_duration)]
    pub retry_base: Duration,
    /// Longest delay between two attempts.
    #[arg(long, env = "KC_RETRY_MAX", default_value = "15m", value_parser = parse_duration)]
    pub retry_max: Duration,
    /// How long a worker holds a notification it is sending; a lease older than this is
    /// taken over by another worker. Must be more than `--smtp-timeout`.
    #[arg(long, env = "KC_LEASE", default_value = "60s", value_parser = parse_duration)]
    pub lease: Duration,
    /// Longest time one delivery attempt may take (connection, dialogue, data).
    #[arg(long, env = "KC_SMTP_TIMEOUT", default_value = "20s", value_parser = parse_duration)]
    pub smtp_timeout: Duration,
    /// Most e-mails in flight per replica (also the size of the SMTP connection pool).
    #[arg(long, env = "KC_SEND_CONCURRENCY", default_value_t = 32)]
    pub send_concurrency: u32,
    /// How often idle workers look for due notifications without being woken (they are woken
    /// at once by a Postgres notification when notifications are created or revived).
    #[arg(long, env = "KC_POLL_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub poll_interval: Duration,
    /// How often each replica empties the stored mails whose one-time code expired (giving
    /// up those not sent yet): a code stays readable here at most this long past its expiry
    /// (issue: secrets at rest). Delivered and given-up code mails are emptied at once.
    #[arg(long, env = "KC_CODE_SWEEP_INTERVAL", default_value = "1m", value_parser = parse_duration)]
    pub code_sweep_interval: Duration,
}

impl NotificationArgs {
    /// Checks the values clap cannot: fails with one line naming the setting.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.account.client_id.trim().is_empty() || self.account.client_secret.is_empty() {
            anyhow::bail!(
                "--client-id and --client-secret (KC_CLIENT_ID, KC_CLIENT_SECRET) must name this service's account"
            );
        }
        self.transport_settings()?;
        Mailer::parse_from(&self.mail_from)?;
        if self.max_attempts == 0 {
            anyhow::bail!("--max-attempts (KC_MAX_ATTEMPTS) must be at least 1");
        }
        if self.retry_base.is_zero() {
            anyhow::bail!("--retry-base (KC_RETRY_BASE) must be more than 0");
        }
        if self.retry_max < self.retry_base {
            anyhow::bail!("--retry-max (KC_RETRY_MAX) must be at least --retry-base");
        }
        if self.retry_max > Duration::from_secs(7 * 86_400) {
            anyhow::bail!("--retry-max (KC_RETRY_MAX) must be at most 7 days");
        }
        if self.smtp_timeout.is_zero() {
            anyhow::bail!("--smtp-timeout (KC_SMTP_TIMEOUT) must be more than 0");
        }
        if self.lease <= self.smtp_timeout {
            anyhow::bail!("--lease (KC_LEASE) must be more than --smtp-timeout (KC_SMTP_TIMEOUT)");
        }
        if self.lease > Duration::from_secs(86_400) {
            anyhow::bail!("--lease (KC_LEASE) must be at most 1 day");
        }
        if self.send_concurrency == 0 || self.send_concurrency > MAX_SEND_CONCURRENCY {
            anyhow::bail!(
                "--send-concurrency (KC_SEND_CONCURRENCY) must be 1 to {MAX_SEND_CONCURRENCY}"
            );
        }
        if self.poll_interval.is_zero() {
            anyhow::bail!("--poll-interval (KC_POLL_INTERVAL) must be more than 0");
        }
        if self.code_sweep_interval.is_zero()
            || self.code_sweep_interval > Duration::from_secs(3600)
        {
            anyhow::bail!(
                "--code-sweep-interval (KC_CODE_SWEEP_INTERVAL) must be more than 0 and at most 1h"
            );
        }
        Ok(())
    }

    /// Where mail goes: the SMTP server or the mail directory (exactly one must be set).
    pub fn transport_settings(&self) -> anyhow::Result<TransportSettings> {
        match (&self.smtp_url, &self.mail_dir) {
            (Some(_), Some(_)) | (None, None) => anyhow::bail!(
                "exactly one of --smtp-url (KC_SMTP_URL) and --mail-dir (KC_MAIL_DIR) must be given"
            ),
            (None, Some(dir)) => {
                if self.smtp_username.is_some() || self.smtp_password.is_some() {
                    anyhow::bail!(
                        "--smtp-username and --smtp-password (KC_SMTP_USERNAME, KC_SMTP_PASSWORD) need --smtp-url"
                    );
                }
                if dir.as_os_str().is_empty() {
                    anyhow::bail!("--mail-dir (KC_MAIL_DIR) must name a directory");
                }
                Ok(TransportSettings::MailDir(dir.clone()))
            }
            (Some(url), None) => {
                let credentials = match (&self.smtp_username, &self.smtp_password) {
                    (Some(user), Some(password)) => Some((user.clone(), password.clone())),
                    (None, None) => None,
                    _ => anyhow::bail!(
                        "--smtp-username and --smtp-password (KC_SMTP_USERNAME, KC_SMTP_PASSWORD) go together"
                    ),
                };
                let settings = SmtpSettings {
                    url: url.clone(),
                    credentials,
                    timeout: self.smtp_timeout,
                    pool_size: self.send_concurrency,
                };
                settings.check()?;
                Ok(TransportSettings::Smtp(settings))
            }
        }
    }

    /// The key that opens identity's sealed codes; fails with one line naming the setting
    /// and the file (never its content).
    pub fn opening_key(&self) -> anyhow::Result<OpeningKey> {
        OpeningKey::from_file(
            "--code-opening-key-file (KC_CODE_OPENING_KEY_FILE)",
            &self.code_opening_key_file,
        )
    }

    /// The retry policy of delivery.
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            base: self.retry_base,
            max: self.retry_max,
            max_attempts: self.max_attempts,
        }
    }

    /// The settings of the delivery workers.
    pub fn delivery_settings(&self) -> anyhow::Result<DeliverySettings> {
        Ok(DeliverySettings {
            transport: self.transport_settings()?,
            mailer: Mailer::parse_from(&self.mail_from)?,
            retry: self.retry_policy(),
            lease: self.lease,
            smtp_timeout: self.smtp_timeout,
            send_concurrency: self.send_concurrency,
            poll_interval: self.poll_interval,
            code_sweep_interval: self.code_sweep_interval,
        })
    }
}

#[cfg(test)]
mod tests {
    use kc_runtime::cli::ParseArgs;

    use super::*;

    const BASE: [&str; 13] = [
        "kc-notification",
        "--database-url",
        "postgres://localhost/x",
        "--identity-url",
        "http://127.0.0.1:50051",
        "--contacts-url",
        "http://127.0.0.1:50052",
        "--access-url",
        "http://127.0.0.1:50053",
        "--client-id",
        "0191f1d2-0000-7000-8000-000000000000",
        "--code-opening-key-file",
        "/run/secrets/code-opening-key",
    ];

    fn parse(extra: &[&str]) -> NotificationArgs {
        NotificationArgs::parse_from(
            BASE.iter()
                .chain(&["--client-secret", "-s3cret"])
                .chain(extra),
        )
        .expect("parses")
    }

    #[test]
    fn defaults() {
        let args = parse(&["--mail-dir", "/tmp/mail"]);
        assert_eq!(args.account.client_secret, "-s3cret");
        assert_eq!(args.max_attempts, 10);
        assert_eq!(args.retry_base, Duration::from_secs(5));
        assert_eq!(args.retry_max, Duration::from_secs(900));
        assert_eq!(args.lease, Duration::from_secs(60));
        assert_eq!(args.smtp_timeout, Duration::from_secs(20));
        assert_eq!(args.send_concurrency, 32);
        assert_eq!(args.poll_interval, Duration::from_secs(1));
        assert_eq!(args.code_sweep_interval, Duration::from_secs(60));
        assert_eq!(args.mail_from, "keycontacts <no-reply@keycontacts.invalid>");
        args.validate().expect("valid");
        assert!(matches!(
            args.transport_settings().unwrap(),
            TransportSettings::MailDir(_)
        ));
    }

    #[test]
    fn the_last_value_of_a_flag_wins() {
        let args = parse(&[
            "--mail-dir",
            "/tmp/m",
            "--max-attempts",
            "30",
            "--max-attempts",
            "3",
        ]);
        assert_eq!(args.max_attempts, 3);
    }

    #[test]
    fn exactly_one_destination() {
        let neither = parse(&[]).validate().unwrap_err().to_string();
        assert!(
            neither.contains("--smtp-url") && neither.contains("--mail-dir"),
            "{neither}"
        );
        let both = parse(&[
            "--mail-dir",
            "/tmp/m",
            "--smtp-url",
            "smtp://127.0.0.1:2525",
        ])
        .validate()
        .unwrap_err()
        .to_string();
        assert!(
            both.contains("--smtp-url") && both.contains("--mail-dir"),
            "{both}"
        );
    }

    #[test]
    fn smtp_urls() {
        for good in [
            "smtp://127.0.0.1:2525",
            "smtp://mail.example.com:587?tls=required",
            "smtps://mail.example.com:465",
        ] {
            parse(&["--smtp-url", good])
                .validate()
                .unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for bad in [
            "http://127.0.0.1:2525",
            "smtp://",
            "not a url",
            "smtp://h:1?tls=maybe",
        ] {
            let error = parse(&["--smtp-url", bad])
                .validate()
                .unwrap_err()
                .to_string();
            assert!(error.contains("--smtp-url"), "{bad}: {error}");
        }
        let half = parse(&["--smtp-url", "smtp://h:25", "--smtp-username", "u"])
            .validate()
            .unwrap_err()
            .to_string();
        assert!(half.contains("--smtp-password"), "{half}");
    }

    #[test]
    fn the_code_opening_key_is_required_and_read_from_its_file() {
        let without: Vec<&str> = BASE
            .iter()
            .copied()
            .filter(|arg| !arg.contains("code-opening-key"))
            .chain(["--client-secret", "s", "--mail-dir", "/tmp/m"])
            .collect();
        let error = NotificationArgs::parse_from(without)
            .expect_err("the opening key is required")
            .to_string();
        assert!(error.contains("--code-opening-key-file"), "{error}");

        let dir = std::env::temp_dir().join(format!("kc-notification-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good");
        let opening = OpeningKey::generate().unwrap();
        std::fs::write(&good, opening.to_text().as_str()).unwrap();
        let bad = dir.join("bad");
        std::fs::write(&bad, "not a key").unwrap();
        let with = |path: &std::path::Path| {
            parse(&[
                "--mail-dir",
                "/tmp/m",
                "--code-opening-key-file",
                path.to_str().unwrap(),
            ])
        };
        let loaded = with(&good).opening_key().expect("a valid key file");
        assert_eq!(loaded.sealing_key(), opening.sealing_key());
        for path in [bad.clone(), dir.join("missing")] {
            let error = format!("{:#}", with(&path).opening_key().unwrap_err());
            assert!(error.contains("--code-opening-key-file"), "{error}");
            assert!(!error.contains('\n'), "one line: {error}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_settings_name_themselves() {
        let cases: [(&[&str], &str); 8] = [
            (&["--code-sweep-interval", "0s"], "--code-sweep-interval"),
            (&["--code-sweep-interval", "2h"], "--code-sweep-interval"),
            (&["--lease", "20s"], "--lease"),
            (&["--max-attempts", "0"], "--max-attempts"),
            (&["--retry-base", "0s"], "--retry-base"),
            (&["--retry-max", "1s"], "--retry-max"),
            (&["--send-concurrency", "0"], "--send-concurrency"),
            (&["--mail-from", "not an address"], "--mail-from"),
        ];
        for (extra, setting) in cases {
            let args = parse(&[&["--mail-dir", "/tmp/m"][..], extra].concat());
            let error = args.validate().unwrap_err().to_string();
            assert!(error.contains(setting), "{extra:?}: {error}");
        }
    }
}
