//! Calling other services of the suite: channels, the service-account token (fetched from
//! identity and renewed before it expires), and the metadata every internal call carries
//! (bearer token, `x-kc-on-behalf-of`, W3C trace context).

use std::sync::Arc;
use std::time::Duration;

use kc_proto::identity::IssueServiceTokenRequest;
use kc_proto::identity::identity_service_client::IdentityServiceClient;
use tokio::sync::Mutex;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};
use uuid::Uuid;

use crate::auth::ON_BEHALF_OF_HEADER;
use crate::telemetry::inject_trace_context;

/// A token is renewed when it has less than this left.
const RENEW_BEFORE_EXPIRY: Duration = Duration::from_secs(60);

/// The service account a service authenticates as (`kc-identity create-service-account`).
#[derive(clap::Args, Debug, Clone)]
pub struct ServiceAccountArgs {
    /// Client id of this service's account.
    #[arg(long, env = "KC_CLIENT_ID")]
    pub client_id: String,
    /// Client secret of this service's account.
    ///
    /// Secrets are base64url and may start with `-`: such a value is taken as it is, not as
    /// a flag.
    #[arg(
        long,
        env = "KC_CLIENT_SECRET",
        hide_env_values = true,
        allow_hyphen_values = true
    )]
    pub client_secret: String,
}

/// A lazily connected channel to `url` (`http://host:port`), failing at start with a line
/// that names `setting` when the URL is malformed.
pub fn channel(setting: &str, url: &str) -> anyhow::Result<Channel> {
    let endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(|_| anyhow::anyhow!("{setting}: `{url}` is not a valid http:// url"))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true);
    Ok(endpoint.connect_lazy())
}

#[derive(Debug)]
struct CachedToken {
    token: String,
    expires_at: std::time::Instant,
}

/// A service-account access token, fetched from identity on first use and renewed shortly
/// before it expires; concurrent callers share one fetch.
#[derive(Clone, Debug)]
pub struct ServiceToken {
    identity: IdentityServiceClient<Channel>,
    account: ServiceAccountArgs,
    cached: Arc<Mutex<Option<CachedToken>>>,
}

impl ServiceToken {
    /// Tokens for `account`, issued by identity through `identity_channel`.
    pub fn new(identity_channel: Channel, account: ServiceAccountArgs) -> Self {
        Self {
            identity: IdentityServiceClient::new(identity_channel),
            account,
            cached: Arc::new(Mutex::new(None)),
        }
    }

    /// A valid token: the cached one, or a new one when it is missing or about to expire.
    /// Identity being down is `Unavailable`; refused credentials are `Unauthenticated`
    /// (a deployment error, logged).
    pub async fn bearer(&self) -> Result<String, Status> {
        let mut cached = self.cached.lock().await;
        if let Some(current) = cached.as_ref()
            && current.expires_at > std::time::Instant::now() + RENEW_BEFORE_EXPIRY
        {
            return Ok(current.token.clone());
        }
        let response = self
            .identity
            .clone()
            .issue_service_token(IssueServiceTokenRequest {
                client_id: self.account.client_id.clone(),
                client_secret: self.account.client_secret.clone(),
            })
            .await
            .map_err(|status| {
                tracing::error!(code = ?status.code(), "cannot obtain a service token from identity");
                match status.code() {
                    tonic::Code::Unauthenticated => {
                        Status::unavailable("this service's credentials were refused by identity")
                    }
                    _ => Status::unavailable("identity unavailable, retry later"),
                }
            })?
            .into_inner();
        let lifetime = response
            .access_token_expire_time
            .map(|expiry| expiry.seconds - chrono::Utc::now().timestamp())
            .unwrap_or(0)
            .max(0) as u64;
        *cached = Some(CachedToken {
            token: response.access_token.clone(),
            expires_at: std::time::Instant::now() + Duration::from_secs(lifetime),
        });
        Ok(response.access_token)
    }

    /// A request to another service carrying this service's token, the person it acts for
    /// (when any) and the current trace context.
    pub async fn request<T>(
        &self,
        message: T,
        on_behalf_of: Option<Uuid>,
    ) -> Result<Request<T>, Status> {
        let token = self.bearer().await?;
        let mut request = Request::new(message);
        let metadata = request.metadata_mut();
        let bearer = MetadataValue::try_from(format!("Bearer {token}"))
            .map_err(|_| Status::internal("internal error"))?;
        metadata.insert("authorization", bearer);
        if let Some(user) = on_behalf_of {
            let value = MetadataValue::try_from(user.to_string())
                .map_err(|_| Status::internal("internal error"))?;
            metadata.insert(ON_BEHALF_OF_HEADER, value);
        }
        inject_trace_context(metadata);
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        account: ServiceAccountArgs,
    }

    #[test]
    fn a_client_secret_may_start_with_a_hyphen() {
        for secret in ["-0abc", "--abc", "-"] {
            let cli = Cli::try_parse_from([
                "kc-service",
                "--client-id",
                "0191f1d2-0000-7000-8000-000000000000",
                "--client-secret",
                secret,
            ])
            .unwrap_or_else(|err| panic!("{secret}: {err}"));
            assert_eq!(cli.account.client_secret, secret);
        }
        let cli = Cli::try_parse_from(["kc-service", "--client-id", "id", "--client-secret=-x"])
            .expect("parses");
        assert_eq!(cli.account.client_secret, "-x");
    }
}
