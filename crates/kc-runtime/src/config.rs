//! Settings every service binary shares, from flags and environment variables (clap).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::db::PoolSettings;
use crate::telemetry::LogFormat;

/// Settings of the gRPC server and of token verification.
#[derive(clap::Args, Debug, Clone)]
pub struct ServerArgs {
    /// Address to listen on (defaults to the service's own port on 127.0.0.1).
    #[arg(long, env = "KC_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Address of the Prometheus endpoint (`GET /metrics`, its own port); none: no metrics.
    #[arg(long, env = "KC_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Log format.
    #[arg(long, env = "KC_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,
    /// Deadline of any one RPC on the server side (e.g. `30s`, `500ms`).
    #[arg(long, env = "KC_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// Largest request or response message, in bytes.
    #[arg(long, env = "KC_MAX_MESSAGE_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub max_message_bytes: usize,
    /// After SIGTERM, how long health reports NOT_SERVING before the server stops accepting.
    #[arg(long, env = "KC_SHUTDOWN_DELAY", default_value = "0s", value_parser = parse_duration)]
    pub shutdown_delay: Duration,
    /// Longest time in-flight RPCs get to finish after the server stops accepting.
    #[arg(long, env = "KC_SHUTDOWN_GRACE", default_value = "20s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
    /// Required `iss` of access tokens.
    #[arg(long, env = "KC_TOKEN_ISSUER", default_value = "keycontacts")]
    pub token_issuer: String,
    /// Required `aud` of access tokens.
    #[arg(long, env = "KC_TOKEN_AUDIENCE", default_value = "keycontacts")]
    pub token_audience: String,
    /// TLS as a server and as a client of the other services ([`crate::tls`]).
    #[command(flatten)]
    pub tls: TlsArgs,
}

impl ServerArgs {
    /// What verifiers require of every token.
    pub fn token_expectations(&self) -> crate::token::Expectations {
        crate::token::Expectations {
            issuer: self.token_issuer.clone(),
            audience: self.token_audience.clone(),
        }
    }
}

/// TLS settings of a binary, as a server and as a client of the other services.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TlsArgs {
    /// PEM certificate chain to serve TLS with (with --tls-key-file); re-read when the file
    /// changes. Without it the server speaks plaintext gRPC.
    #[arg(long, env = "KC_TLS_CERT_FILE", requires = "tls_key_file")]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of --tls-cert-file.
    #[arg(long, env = "KC_TLS_KEY_FILE", requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,
    /// PEM CA certificates: callers must present a client certificate signed by one of them
    /// (mTLS). Needs --tls-cert-file.
    #[arg(long, env = "KC_TLS_CLIENT_CA_FILE", requires = "tls_cert_file")]
    pub tls_client_ca_file: Option<PathBuf>,
    /// How often the certificate and key files are checked for a change.
    #[arg(long, env = "KC_TLS_RELOAD_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    pub tls_reload_interval: Duration,
    /// PEM CA certificates that sign the certificates of the services called at https://
    /// URLs.
    #[arg(long, env = "KC_TLS_CA_FILE")]
    pub tls_ca_file: Option<PathBuf>,
    /// PEM client certificate presented to services that require mTLS (with
    /// --tls-client-key-file).
    #[arg(
        long,
        env = "KC_TLS_CLIENT_CERT_FILE",
        requires = "tls_client_key_file"
    )]
    pub tls_client_cert_file: Option<PathBuf>,
    /// PEM private key of --tls-client-cert-file.
    #[arg(
        long,
        env = "KC_TLS_CLIENT_KEY_FILE",
        requires = "tls_client_cert_file"
    )]
    pub tls_client_key_file: Option<PathBuf>,
}

impl TlsArgs {
    /// The server's TLS files; `None` without a certificate (plaintext).
    pub fn server_files(&self) -> Option<crate::tls::ServerTlsFiles> {
        Some(crate::tls::ServerTlsFiles {
            cert_file: self.tls_cert_file.clone()?,
            key_file: self.tls_key_file.clone()?,
            client_ca_file: self.tls_client_ca_file.clone(),
            reload_interval: self.tls_reload_interval,
        })
    }

    /// The TLS files of the binary as a client of `https://` service URLs.
    pub fn client_files(&self) -> crate::tls::ClientTlsFiles {
        crate::tls::ClientTlsFiles {
            ca_file: self.tls_ca_file.clone(),
            cert_file: self.tls_client_cert_file.clone(),
            key_file: self.tls_client_key_file.clone(),
        }
    }
}

/// Settings of the service's Postgres pool.
#[derive(clap::Args, Debug, Clone)]
pub struct DatabaseArgs {
    /// Postgres URL of the service's own database role.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
    /// Most pooled connections.
    #[arg(long, env = "KC_DB_MAX_CONNECTIONS", default_value_t = 10)]
    pub db_max_connections: u32,
    /// Connections kept open from the start.
    #[arg(long, env = "KC_DB_MIN_CONNECTIONS", default_value_t = 2)]
    pub db_min_connections: u32,
    /// How long a request waits for a pooled connection.
    #[arg(long, env = "KC_DB_ACQUIRE_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub db_acquire_timeout: Duration,
}

impl DatabaseArgs {
    /// Pool settings from these arguments.
    pub fn pool_settings(&self) -> PoolSettings {
        PoolSettings {
            max_connections: self.db_max_connections,
            min_connections: self.db_min_connections.min(self.db_max_connections),
            acquire_timeout: self.db_acquire_timeout,
        }
    }
}

/// Where identity serves the public keys that verify access tokens (`GetSigningKeys`) and
/// the revocations that end them early (`WatchRevocations`, rule I4).
#[derive(clap::Args, Debug, Clone)]
pub struct IdentityUrlArgs {
    /// URL of the identity service, e.g. `http://127.0.0.1:50051`.
    #[arg(long, env = "KC_IDENTITY_URL", value_parser = parse_http_url)]
    pub identity_url: String,
}

impl IdentityUrlArgs {
    /// A verifier of access tokens whose keys come from identity (fetched lazily, cached by
    /// `kid`) and that refuses the tokens identity revoked: it starts a task following
    /// identity's `WatchRevocations` on the same channel, which stops when `shutdown`
    /// triggers or the verifier and all its clones are dropped. Until the first snapshot of
    /// revocations arrives, tokens are refused with `UNAVAILABLE` (fail closed, see
    /// [`crate::revocation`]). Fails when the URL is malformed; must be called inside a
    /// Tokio runtime.
    pub fn verifier(
        &self,
        server: &ServerArgs,
        shutdown: &crate::shutdown::Shutdown,
    ) -> anyhow::Result<crate::auth::TokenVerifier> {
        let channel = crate::client::channel("--identity-url", &self.identity_url)?;
        let revocations = crate::revocation::RevocationList::new();
        // The task ends by itself (shutdown, or the list dropped with the verifier).
        drop(crate::revocation::follow(
            channel.clone(),
            &revocations,
            shutdown,
        ));
        Ok(crate::auth::TokenVerifier::new(
            crate::auth::IdentityKeySource::new(channel),
            server.token_expectations(),
        )
        .with_revocations(revocations))
    }
}

/// Checks a service URL: `http://` or `https://`, a host, and nothing after the port.
///
/// An `https://` URL also needs `--tls-ca-file`, which the channel checks at start
/// ([`crate::tls::client_config`]).
pub fn parse_http_url(text: &str) -> Result<String, String> {
    let uri: http::Uri = text
        .parse()
        .map_err(|_| format!("`{text}` is not a URL like http://127.0.0.1:50051"))?;
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    let path_ok = matches!(uri.path(), "" | "/") && uri.query().is_none();
    if !scheme_ok || uri.host().is_none() || !path_ok {
        return Err(format!(
            "`{text}` is not a URL like http://127.0.0.1:50051 (http, host, port)"
        ));
    }
    Ok(text.trim_end_matches('/').to_owned())
}

/// The suite's one duration parser, for every duration setting of the binaries and tools
/// (use it as clap's `value_parser = parse_duration`).
///
/// Accepts a number followed by a unit: `ms`, `s`, `m` (or `min`), `h` or `d`; no unit
/// means seconds. The number is whole (`250ms`, `30s`, `15m`, `2h`, `1d`, `30`) or has a
/// fraction (`1.5s`, `0.5m`); white space around it is ignored. Whole numbers saturate at
/// the largest [`Duration`] rather than fail.
///
/// # Errors
/// A message naming the text, for clap to show: not a number, or an unknown unit.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let not_a_number = || format!("`{text}` is not a duration like 30s, 500ms, 15m");
    let factor: u64 = match unit {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            return Err(format!(
                "`{text}` has an unknown unit (use ms, s, m, h or d)"
            ));
        }
    };
    if number.contains('.') {
        let value: f64 = number.parse().map_err(|_| not_a_number())?;
        // Milliseconds in an f64 are exact up to 2^53, far beyond any setting.
        return Duration::try_from_secs_f64(value * factor as f64 / 1_000.0)
            .map_err(|_| not_a_number());
    }
    let number: u64 = number.parse().map_err(|_| not_a_number())?;
    Ok(Duration::from_millis(number.saturating_mul(factor)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration(" 2h "), Ok(Duration::from_secs(7_200)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1_500)));
        assert_eq!(parse_duration("0.5min"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2.5ms"), Ok(Duration::from_micros(2_500)));
        for bad in ["soon", "5y", "", "s", "1.2.3s", ".", "-1s", "1 s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        server: ServerArgs,
    }

    #[test]
    fn metrics_listen_is_off_unless_given() {
        use clap::Parser as _;
        // KC_METRICS_LISTEN would turn it on; the test environment does not set it.
        if std::env::var_os("KC_METRICS_LISTEN").is_none() {
            let cli = Cli::try_parse_from(["kc"]).unwrap();
            assert_eq!(cli.server.metrics_listen, None);
        }
        let cli = Cli::try_parse_from(["kc", "--metrics-listen", "0.0.0.0:9090"]).unwrap();
        assert_eq!(
            cli.server.metrics_listen,
            Some("0.0.0.0:9090".parse().unwrap())
        );
        for bad in ["9090", "localhost:9090", "0.0.0.0"] {
            assert!(
                Cli::try_parse_from(["kc", "--metrics-listen", bad]).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn urls() {
        assert_eq!(
            parse_http_url("http://kc-identity:50051/"),
            Ok("http://kc-identity:50051".to_owned())
        );
        for bad in [
            "not a url",
            "kc-identity:50051",
            "ftp://x:1",
            "http://x:1/path",
        ] {
            assert!(parse_http_url(bad).is_err(), "{bad}");
        }
        // TLS between the services: https:// is a service URL too (its CA is checked when
        // the channel is made, crate::tls).
        assert_eq!(
            parse_http_url("https://kc-identity:50051"),
            Ok("https://kc-identity:50051".to_owned())
        );
    }
}
