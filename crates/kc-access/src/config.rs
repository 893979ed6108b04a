//! Settings of `kc-access`, from flags and environment variables.

use std::time::Duration;

use kc_runtime::client::ServiceAccountArgs;
use kc_runtime::config::{
    DatabaseArgs, IdentityUrlArgs, ServerArgs, parse_duration, parse_http_url,
};

use crate::cache::CacheSettings;

/// Everything `kc-access serve` needs.
#[derive(clap::Args, Debug, Clone)]
pub struct AccessArgs {
    /// Server settings.
    #[command(flatten)]
    pub server: ServerArgs,
    /// Database settings.
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Where token signing keys, the service token and user events come from.
    #[command(flatten)]
    pub identity: IdentityUrlArgs,
    /// URL of the contact registry, whose events feed the projection of sites and roles,
    /// e.g. `http://127.0.0.1:50052`.
    #[arg(long, env = "KC_CONTACTS_URL", value_parser = parse_http_url)]
    pub contacts_url: String,
    /// This service's own account, to follow the registry's and identity's event streams.
    #[command(flatten)]
    pub account: ServiceAccountArgs,
    /// How long an access request may stay PENDING before it expires (A6).
    #[arg(long, env = "KC_REQUEST_MAX_AGE", default_value = "30d", value_parser = parse_duration)]
    pub request_max_age: Duration,
    /// How often the sweeper looks for expired requests.
    #[arg(long, env = "KC_SWEEP_INTERVAL", default_value = "1m", value_parser = parse_duration)]
    pub sweep_interval: Duration,
    /// Entries of the rights cache older than this are refilled (a safety net: changes
    /// reach every replica's cache through Postgres notifications).
    #[arg(long, env = "KC_CHECK_CACHE_TTL", default_value = "30s", value_parser = parse_duration)]
    pub check_cache_ttl: Duration,
    /// Most entries of the rights cache (one per site, per member of a site, per user).
    #[arg(long, env = "KC_CHECK_CACHE_ENTRIES", default_value_t = 500_000)]
    pub check_cache_entries: usize,
}

impl AccessArgs {
    /// Checks the values clap cannot: fails with one line naming the setting.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.request_max_age.is_zero() {
            anyhow::bail!("--request-max-age (KC_REQUEST_MAX_AGE) must be more than 0");
        }
        if chrono::Duration::from_std(self.request_max_age).is_err()
            || self.request_max_age > Duration::from_secs(100 * 365 * 86_400)
        {
            anyhow::bail!("--request-max-age (KC_REQUEST_MAX_AGE) must be at most 100 years");
        }
        if self.sweep_interval.is_zero() {
            anyhow::bail!("--sweep-interval (KC_SWEEP_INTERVAL) must be more than 0");
        }
        if self.check_cache_ttl.is_zero() {
            anyhow::bail!("--check-cache-ttl (KC_CHECK_CACHE_TTL) must be more than 0");
        }
        if self.account.client_id.trim().is_empty() || self.account.client_secret.is_empty() {
            anyhow::bail!(
                "--client-id and --client-secret (KC_CLIENT_ID, KC_CLIENT_SECRET) must name this service's account"
            );
        }
        Ok(())
    }

    /// The rights cache's settings.
    pub fn cache_settings(&self) -> CacheSettings {
        CacheSettings {
            ttl: self.check_cache_ttl,
            max_entries: self.check_cache_entries,
        }
    }
}

#[cfg(test)]
mod tests {
    use kc_runtime::cli::ParseArgs;

    use super::*;

    const BASE: [&str; 9] = [
        "kc-access",
        "--database-url",
        "postgres://localhost/x",
        "--identity-url",
        "http://127.0.0.1:50051",
        "--contacts-url",
        "http://127.0.0.1:50052",
        "--client-id",
        "0191f1d2-0000-7000-8000-000000000000",
    ];

    #[test]
    fn a_secret_may_start_with_a_hyphen() {
        let args = AccessArgs::parse_from(BASE.iter().chain(&["--client-secret", "-0abc"]))
            .expect("parses");
        assert_eq!(args.account.client_secret, "-0abc");
        assert_eq!(args.request_max_age, Duration::from_secs(30 * 86_400));
        assert_eq!(args.sweep_interval, Duration::from_secs(60));
        assert!(args.validate().is_ok());
    }

    #[test]
    fn bad_settings_name_themselves() {
        let bad_url = AccessArgs::parse_from(BASE.iter().chain(&[
            "--client-secret",
            "s",
            "--contacts-url",
            "kc-contacts:50052",
        ]));
        assert!(bad_url.is_err());
        let args = AccessArgs::parse_from(BASE.iter().chain(&[
            "--client-secret",
            "s",
            "--sweep-interval",
            "0s",
        ]))
        .expect("parses");
        let error = args.validate().expect_err("zero interval").to_string();
        assert!(error.contains("--sweep-interval"), "{error}");
    }
}
