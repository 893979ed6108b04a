//! Settings of `kc-gateway`, from flags and environment variables.

use std::time::Duration;

use kc_runtime::client::{ReplicaSettings, ServiceAccountArgs};
use kc_runtime::config::{IdentityUrlArgs, ServerArgs, parse_duration, parse_http_url};
use kc_runtime::server::GrpcWeb;

use crate::ratelimit::{Rate, TrustedProxies, parse_rate, parse_trusted_proxies};

/// Longest `--read-cache-ttl` accepted.
pub const MAX_READ_CACHE_TTL: Duration = Duration::from_secs(60);

/// Everything `kc-gateway serve` needs.
#[derive(clap::Args, Debug, Clone)]
pub struct GatewayArgs {
    /// Server settings.
    #[command(flatten)]
    pub server: ServerArgs,
    /// Identity: sessions, users, token signing keys and the gateway's service token.
    #[command(flatten)]
    pub identity: IdentityUrlArgs,
    /// URL of the contact registry, e.g. `http://127.0.0.1:50052`.
    #[arg(long, env = "KC_CONTACTS_URL", value_parser = parse_http_url)]
    pub contacts_url: String,
    /// URL of access management, e.g. `http://127.0.0.1:50053`.
    #[arg(long, env = "KC_ACCESS_URL", value_parser = parse_http_url)]
    pub access_url: String,
    /// URL of the notification service, e.g. `http://127.0.0.1:50054`.
    #[arg(long, env = "KC_NOTIFICATION_URL", value_parser = parse_http_url)]
    pub notification_url: String,
    /// The gateway's own service account, to call the internal services.
    #[command(flatten)]
    pub account: ServiceAccountArgs,
    /// Deadline of a call whose caller sets none (`grpc-timeout`), e.g. `5s`.
    #[arg(long, env = "KC_DEFAULT_DEADLINE", default_value = "5s", value_parser = parse_duration)]
    pub default_deadline: Duration,
    /// Sustained rate of the public session RPCs (Register, VerifyEmail, Login, Refresh,
    /// Logout, …) per client IP address (an IPv6 client per /64): `20/min`, `5/s`, `100/h`,
    /// `5/10min`, or `off`.
    #[arg(long, env = "KC_SESSION_RATE_LIMIT", default_value = "20/min", value_parser = parse_rate)]
    pub session_rate_limit: Rate,
    /// Session calls one address may make in a burst before the rate applies.
    #[arg(long, env = "KC_SESSION_RATE_BURST", default_value_t = 10)]
    pub session_rate_burst: u32,
    /// The proxies (address ranges, comma-separated: `10.0.0.0/8,fd00::/8`) whose
    /// `X-Forwarded-For` or `Forwarded` header names the client of a call; empty: none, the
    /// client is always the TCP peer.
    #[arg(
        long,
        env = "KC_TRUSTED_PROXIES",
        default_value = "",
        value_parser = parse_trusted_proxies
    )]
    pub trusted_proxies: TrustedProxies,
    /// Sustained rate of one signed-in caller's access requests (SelfNominate and
    /// CancelMyRequest together), per gateway replica: e.g. `5/10min`, or `off`.
    #[arg(long, env = "KC_ACCESS_REQUEST_RATE_LIMIT", default_value = "5/10min", value_parser = parse_rate)]
    pub access_request_rate_limit: Rate,
    /// Access requests one caller may make in a burst before the rate applies.
    #[arg(long, env = "KC_ACCESS_REQUEST_RATE_BURST", default_value_t = 5)]
    pub access_request_rate_burst: u32,
    /// Sustained rate of one signed-in caller's other writes that send mail (contacts,
    /// rights, decisions, domain policy, notices, UpdateMe, ChangeEmail), per gateway
    /// replica: e.g. `60/min`, or `off`.
    #[arg(long, env = "KC_WRITE_RATE_LIMIT", default_value = "60/min", value_parser = parse_rate)]
    pub write_rate_limit: Rate,
    /// Such writes one caller may make in a burst before the rate applies.
    #[arg(long, env = "KC_WRITE_RATE_BURST", default_value_t = 30)]
    pub write_rate_burst: u32,
    /// Longest wait for a connection to one replica of an internal service: a replica that
    /// is down answers UNAVAILABLE after at most this.
    #[arg(long, env = "KC_CONNECT_TIMEOUT", default_value = "1s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
    /// How often the host names of the internal services are resolved again, to balance
    /// over every replica behind one name (a Kubernetes headless service).
    #[arg(long, env = "KC_RESOLVE_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub resolve_interval: Duration,
    /// How long the answers of the hot internal reads (permission checks, users, a site's
    /// contacts, a person's roles and rights) are kept and served again; `0s` turns the
    /// cache off. A change made through this replica is seen at once; one made elsewhere
    /// at most this much later (see the README's gateway decisions).
    #[arg(long, env = "KC_READ_CACHE_TTL", default_value = "1s", value_parser = parse_duration)]
    pub read_cache_ttl: Duration,
    /// The browser origins (comma-separated: `https://app.example.org,http://localhost:5173`)
    /// allowed to call the gateway's gRPC-Web from another origin (CORS); empty: none, no
    /// CORS headers are sent, so a browser calls only from the gateway's own origin.
    #[arg(
        long,
        env = "KC_CORS_ALLOWED_ORIGINS",
        default_value = "",
        value_parser = parse_allowed_origins
    )]
    pub cors_allowed_origins: GrpcWeb,
}

/// Parses `--cors-allowed-origins`: comma-separated origins, each exactly
/// `http[s]://host[:port]` as a browser sends it in `Origin` (no path, no trailing slash, no
/// user, no wildcard), compared in lower case.
pub fn parse_allowed_origins(text: &str) -> Result<GrpcWeb, String> {
    let mut allowed_origins = Vec::new();
    for part in text
        .split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
    {
        let origin = part.to_ascii_lowercase();
        let uri: http::Uri = origin
            .parse()
            .map_err(|_| format!("cors allowed origin {part:?} is not a url"))?;
        // `origin` must be exactly what the scheme and authority print back: no path, no
        // trailing slash, no query; and the authority a plain host (no user, no wildcard).
        let valid = match (uri.scheme_str(), uri.authority()) {
            (Some(scheme @ ("http" | "https")), Some(authority)) => {
                !authority.as_str().contains(['@', '*'])
                    && origin == format!("{scheme}://{authority}")
            }
            _ => false,
        };
        if !valid {
            return Err(format!(
                "cors allowed origin {part:?} must be http[s]://host[:port], with no path, \
                 trailing slash or wildcard"
            ));
        }
        let value = http::HeaderValue::from_str(&origin)
            .map_err(|_| format!("cors allowed origin {part:?} is not a header value"))?;
        if !allowed_origins.contains(&value) {
            allowed_origins.push(value);
        }
    }
    Ok(GrpcWeb { allowed_origins })
}

impl GatewayArgs {
    /// Checks the values clap cannot: fails with one line naming the setting.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.default_deadline.is_zero() {
            anyhow::bail!("--default-deadline (KC_DEFAULT_DEADLINE) must be more than 0");
        }
        if self.connect_timeout.is_zero() {
            anyhow::bail!("--connect-timeout (KC_CONNECT_TIMEOUT) must be more than 0");
        }
        if self.resolve_interval.is_zero() {
            anyhow::bail!("--resolve-interval (KC_RESOLVE_INTERVAL) must be more than 0");
        }
        if self.read_cache_ttl > MAX_READ_CACHE_TTL {
            anyhow::bail!(
                "--read-cache-ttl (KC_READ_CACHE_TTL) must be at most {}s: a longer one would \
                 keep revoked rights working that long",
                MAX_READ_CACHE_TTL.as_secs()
            );
        }
        if self.session_rate_burst == 0 {
            anyhow::bail!("--session-rate-burst (KC_SESSION_RATE_BURST) must be at least 1");
        }
        if self.access_request_rate_burst == 0 {
            anyhow::bail!(
                "--access-request-rate-burst (KC_ACCESS_REQUEST_RATE_BURST) must be at least 1"
            );
        }
        if self.write_rate_burst == 0 {
            anyhow::bail!("--write-rate-burst (KC_WRITE_RATE_BURST) must be at least 1");
        }
        if self.account.client_id.trim().is_empty() || self.account.client_secret.is_empty() {
            anyhow::bail!(
                "--client-id and --client-secret (KC_CLIENT_ID, KC_CLIENT_SECRET) must name the gateway's account"
            );
        }
        Ok(())
    }

    /// How the gateway connects to the replicas of the internal services.
    pub fn replica_settings(&self) -> ReplicaSettings {
        ReplicaSettings {
            connect_timeout: self.connect_timeout,
            resolve_interval: self.resolve_interval,
        }
    }
}

#[cfg(test)]
mod tests {
    use kc_runtime::cli::ParseArgs;

    use super::*;

    const BASE: [&str; 13] = [
        "kc-gateway",
        "--identity-url",
        "http://127.0.0.1:50051",
        "--contacts-url",
        "http://127.0.0.1:50052",
        "--access-url",
        "http://127.0.0.1:50053",
        "--notification-url",
        "http://127.0.0.1:50054",
        "--client-id",
        "0191f1d2-0000-7000-8000-000000000000",
        "--client-secret",
        "-secret",
    ];

    #[test]
    fn defaults() {
        let args = GatewayArgs::parse_from(BASE).expect("parses");
        assert_eq!(args.default_deadline, Duration::from_secs(5));
        assert_eq!(
            args.session_rate_limit,
            Rate::Limit {
                tokens: 20,
                per: Duration::from_secs(60)
            }
        );
        assert_eq!(args.session_rate_burst, 10);
        assert!(args.trusted_proxies.is_empty());
        assert_eq!(
            args.access_request_rate_limit,
            Rate::Limit {
                tokens: 5,
                per: Duration::from_secs(600)
            }
        );
        assert_eq!(args.access_request_rate_burst, 5);
        assert_eq!(
            args.write_rate_limit,
            Rate::Limit {
                tokens: 60,
                per: Duration::from_secs(60)
            }
        );
        assert_eq!(args.write_rate_burst, 30);
        assert_eq!(args.read_cache_ttl, Duration::from_secs(1));
        assert_eq!(args.account.client_secret, "-secret");
        assert!(args.cors_allowed_origins.allowed_origins.is_empty());
        assert!(args.cors_allowed_origins.cors().is_none());
        assert!(args.validate().is_ok());
    }

    #[test]
    fn allowed_origins_are_exact_origins() {
        let args = GatewayArgs::parse_from(BASE.iter().chain(&[
            "--cors-allowed-origins",
            "https://App.Example.org, http://localhost:5173,https://app.example.org",
        ]))
        .expect("parses");
        assert_eq!(
            args.cors_allowed_origins.allowed_origins,
            vec!["https://app.example.org", "http://localhost:5173"]
        );
        for bad in [
            "*",
            "https://*.example.org",
            "https://app.example.org/",
            "https://app.example.org/path",
            "app.example.org",
            "ftp://app.example.org",
            "https://user@app.example.org",
        ] {
            let error = parse_allowed_origins(bad).expect_err(bad);
            assert!(error.contains("cors allowed origin"), "{bad}: {error}");
        }
    }

    #[test]
    fn bad_settings_name_themselves() {
        let bad_url =
            GatewayArgs::parse_from(BASE.iter().chain(&["--access-url", "kc-access:50053"]));
        assert!(bad_url.is_err());
        let bad_rate =
            GatewayArgs::parse_from(BASE.iter().chain(&["--session-rate-limit", "lots"]));
        assert!(bad_rate.is_err());
        let args = GatewayArgs::parse_from(BASE.iter().chain(&["--default-deadline", "0s"]))
            .expect("parses");
        let error = args.validate().expect_err("zero deadline").to_string();
        assert!(error.contains("--default-deadline"), "{error}");
        let off = GatewayArgs::parse_from(BASE.iter().chain(&["--session-rate-limit", "off"]))
            .expect("parses");
        assert_eq!(off.session_rate_limit, Rate::Off);
        let proxies = GatewayArgs::parse_from(
            BASE.iter()
                .chain(&["--trusted-proxies", "10.0.0.0/8,fd00::/8"]),
        )
        .expect("parses");
        assert!(proxies.trusted_proxies.trusts("10.2.3.4".parse().unwrap()));
        let bad_proxies =
            GatewayArgs::parse_from(BASE.iter().chain(&["--trusted-proxies", "10.0.0.0/99"]));
        assert!(bad_proxies.is_err());
        let writes_off = GatewayArgs::parse_from(BASE.iter().chain(&[
            "--access-request-rate-limit",
            "off",
            "--write-rate-limit",
            "off",
        ]))
        .expect("parses");
        assert_eq!(writes_off.access_request_rate_limit, Rate::Off);
        assert_eq!(writes_off.write_rate_limit, Rate::Off);
        let zero_burst = GatewayArgs::parse_from(BASE.iter().chain(&["--write-rate-burst", "0"]))
            .expect("parses");
        let error = zero_burst.validate().expect_err("zero burst").to_string();
        assert!(error.contains("--write-rate-burst"), "{error}");
        let long_cache = GatewayArgs::parse_from(BASE.iter().chain(&["--read-cache-ttl", "5m"]))
            .expect("parses");
        let error = long_cache.validate().expect_err("too long").to_string();
        assert!(error.contains("--read-cache-ttl"), "{error}");
    }
}
