//! The connection to the gateway and the signed-in calls.
//!
//! [`Context`] is what every command gets: the gateway address, the output format, the
//! token store and the session of that gateway. [`Context::call`] (GatewayService) and
//! [`Context::authz`] (AuthorizationService) send the bearer token, renew it first when it
//! has expired, and renew it and retry once when the gateway answers UNAUTHENTICATED.
//! Streaming calls take [`Context::bearer`] for a request with a fresh token.

use std::future::Future;
use std::time::Duration;

use kc_proto::gateway::authorization_service_client::AuthorizationServiceClient;
use kc_proto::gateway::gateway_service_client::GatewayServiceClient;
use kc_proto::gateway::{self as pb};
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Response, Status};

use crate::error::{CliError, ErrorKind, Result};
use crate::output::Format;
use crate::session::{Session, SessionKind, Store};

/// The gateway used when neither `--gateway`, `KC_GATEWAY` nor the last login names one:
/// the gateway's own default listen address.
pub const DEFAULT_GATEWAY: &str = "http://127.0.0.1:50050";

/// Seconds before its expiry at which an access token is renewed before a call.
const RENEW_MARGIN_SECONDS: i64 = 5;

/// How long a connection to the gateway may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// A site named on the command line, resolved to its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteRef {
    /// The site id (the registry's UUID).
    pub site_id: String,
    /// The site number, when known.
    pub site_number: String,
}

/// Everything a command needs to talk to the gateway.
#[derive(Debug)]
pub struct Context {
    gateway: String,
    format: Format,
    store: Store,
    channel: Option<Channel>,
    session: Option<Session>,
    /// The CA of an `https://` gateway (`--ca-file`); `None`: the public web roots.
    ca_file: Option<std::path::PathBuf>,
}

impl Context {
    /// The context of one `kc` run: the gateway is `gateway` (from `--gateway` or
    /// `KC_GATEWAY`), else the gateway of the last login, else [`DEFAULT_GATEWAY`].
    pub fn new(gateway: Option<&str>, format: Format, store: Store) -> Result<Self> {
        let sessions = store.load()?;
        let gateway = match gateway {
            Some(address) => normalize_gateway(address)?,
            None => sessions
                .current_gateway
                .clone()
                .unwrap_or_else(|| DEFAULT_GATEWAY.to_owned()),
        };
        let session = sessions.gateways.get(&gateway).cloned();
        Ok(Self {
            gateway,
            format,
            store,
            channel: None,
            session,
            ca_file: None,
        })
    }

    /// The same context, trusting `ca_file` for an `https://` gateway.
    pub fn with_ca_file(mut self, ca_file: Option<std::path::PathBuf>) -> Self {
        self.ca_file = ca_file;
        self
    }

    /// TLS of the connection to an `https://` gateway: its certificate is checked against
    /// `--ca-file`, else the public web roots.
    fn tls(&self, endpoint: Endpoint) -> Result<Endpoint> {
        if endpoint.uri().scheme_str() != Some("https") {
            return Ok(endpoint);
        }
        let host = endpoint.uri().host().unwrap_or_default().to_owned();
        let config = tonic::transport::ClientTlsConfig::new().domain_name(host);
        let config = match &self.ca_file {
            Some(file) => {
                let pem = std::fs::read(file)
                    .map_err(|e| CliError::usage(format!("--ca-file {}: {e}", file.display())))?;
                config.ca_certificate(tonic::transport::Certificate::from_pem(pem))
            }
            None => config.with_webpki_roots(),
        };
        endpoint
            .tls_config(config)
            .map_err(|e| CliError::usage(format!("--gateway {}: tls: {e}", self.gateway)))
    }

    /// The gateway's address, e.g. `http://127.0.0.1:50050`.
    pub fn gateway(&self) -> &str {
        &self.gateway
    }

    /// The output format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The token store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The session of this gateway, when signed in.
    pub fn session(&self) -> Option<&Session> {
        self.session.as_ref()
    }

    /// Replaces the session of this gateway (after a login) and makes this gateway the
    /// current one; `None` removes it (after a logout).
    pub fn set_session(&mut self, session: Option<Session>) -> Result<()> {
        let gateway = self.gateway.clone();
        self.store.update(|sessions| {
            match &session {
                Some(session) => {
                    sessions.gateways.insert(gateway.clone(), session.clone());
                    sessions.current_gateway = Some(gateway.clone());
                }
                None => {
                    sessions.gateways.remove(&gateway);
                    if sessions.current_gateway.as_deref() == Some(gateway.as_str()) {
                        sessions.current_gateway = None;
                    }
                }
            }
            Ok(())
        })?;
        self.session = session;
        Ok(())
    }

    /// The channel to the gateway, connected on first use.
    pub async fn channel(&mut self) -> Result<Channel> {
        if let Some(channel) = &self.channel {
            return Ok(channel.clone());
        }
        let endpoint = Endpoint::from_shared(self.gateway.clone())
            .map_err(|e| CliError::usage(format!("--gateway {}: {e}", self.gateway)))?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(CALL_TIMEOUT);
        let endpoint = self.tls(endpoint)?;
        let channel = endpoint.connect().await.map_err(|e| {
            CliError::new(
                ErrorKind::Unavailable,
                format!(
                    "cannot reach the gateway at {}: {}",
                    self.gateway,
                    crate::error::chain(&e)
                ),
            )
        })?;
        self.channel = Some(channel.clone());
        Ok(channel)
    }

    /// A GatewayService client without credentials, for the session RPCs.
    pub async fn public_client(&mut self) -> Result<GatewayServiceClient<Channel>> {
        Ok(GatewayServiceClient::new(self.channel().await?))
    }

    /// Calls a GatewayService RPC as the signed-in caller:
    /// `ctx.call(request, |mut c, r| async move { c.get_site(r).await })`.
    pub async fn call<M, R, F, Fut>(&mut self, message: M, mut f: F) -> Result<R>
    where
        M: Clone,
        F: FnMut(GatewayServiceClient<Channel>, Request<M>) -> Fut,
        Fut: Future<Output = Result<Response<R>, Status>>,
    {
        self.signed_in(message, move |channel, request| {
            f(GatewayServiceClient::new(channel), request)
        })
        .await
    }

    /// Calls an AuthorizationService RPC as the signed-in caller (a service account).
    pub async fn authz<M, R, F, Fut>(&mut self, message: M, mut f: F) -> Result<R>
    where
        M: Clone,
        F: FnMut(AuthorizationServiceClient<Channel>, Request<M>) -> Fut,
        Fut: Future<Output = Result<Response<R>, Status>>,
    {
        self.signed_in(message, move |channel, request| {
            f(AuthorizationServiceClient::new(channel), request)
        })
        .await
    }

    /// A request carrying a valid access token (renewed first when it expired), for calls
    /// [`Context::call`] does not fit, such as streams.
    pub async fn bearer<M>(&mut self, message: M) -> Result<Request<M>> {
        let token = self.access_token(false).await?;
        with_bearer(message, &token)
    }

    async fn signed_in<M, R, F, Fut>(&mut self, message: M, mut f: F) -> Result<R>
    where
        M: Clone,
        F: FnMut(Channel, Request<M>) -> Fut,
        Fut: Future<Output = Result<Response<R>, Status>>,
    {
        let channel = self.channel().await?;
        let token = self.access_token(false).await?;
        match f(channel.clone(), with_bearer(message.clone(), &token)?).await {
            Ok(response) => Ok(response.into_inner()),
            Err(status) if status.code() == Code::Unauthenticated => {
                let token = self.renew(&token).await.map_err(|renew_error| {
                    if renew_error.kind() == ErrorKind::Unauthenticated {
                        renew_error
                    } else {
                        CliError::from(status)
                    }
                })?;
                f(channel, with_bearer(message, &token)?)
                    .await
                    .map(Response::into_inner)
                    .map_err(CliError::from)
            }
            Err(status) => Err(status.into()),
        }
    }

    /// The access token to send: the stored one, renewed first when it expired (or expires
    /// within a few seconds) or when `force`.
    async fn access_token(&mut self, force: bool) -> Result<String> {
        let Some(session) = &self.session else {
            return Err(CliError::unauthenticated(format!(
                "not logged in to {} (run `kc login`)",
                self.gateway
            )));
        };
        let token = session.access_token.clone();
        if force || session.expires_within(RENEW_MARGIN_SECONDS) {
            self.renew(&token).await
        } else {
            Ok(token)
        }
    }

    /// Renews the session whose access token `stale` no longer works, under the store's
    /// lock: when another `kc` already renewed it, its token is taken; else a user session
    /// is refreshed with its refresh token and a service session asks for a new token.
    async fn renew(&mut self, stale: &str) -> Result<String> {
        let _lock = self.store.lock()?;
        let mut sessions = self.store.load()?;
        let Some(current) = sessions.gateways.get(&self.gateway).cloned() else {
            self.session = None;
            return Err(CliError::unauthenticated(format!(
                "not logged in to {} (run `kc login`)",
                self.gateway
            )));
        };
        if current.access_token != stale && !current.expires_within(RENEW_MARGIN_SECONDS) {
            let token = current.access_token.clone();
            self.session = Some(current);
            return Ok(token);
        }
        let renewed = match current.kind {
            SessionKind::User => self.refresh_user(current).await?,
            SessionKind::Service => self.reissue_service(current).await?,
        };
        let token = renewed.access_token.clone();
        sessions
            .gateways
            .insert(self.gateway.clone(), renewed.clone());
        self.store.save(&sessions)?;
        self.session = Some(renewed);
        Ok(token)
    }

    async fn refresh_user(&mut self, mut session: Session) -> Result<Session> {
        let Some(refresh_token) = session.refresh_token.clone() else {
            return Err(CliError::unauthenticated(
                "the session has expired and cannot be renewed (run `kc login`)",
            ));
        };
        let mut client = self.public_client().await?;
        let answer = client
            .refresh(pb::RefreshRequest { refresh_token })
            .await
            .map_err(|status| match status.code() {
                Code::Unauthenticated | Code::InvalidArgument | Code::NotFound => {
                    CliError::unauthenticated(format!(
                        "the session has ended: {} (run `kc login`)",
                        status.message()
                    ))
                }
                _ => CliError::from(status),
            })?
            .into_inner();
        session.access_token = answer.access_token;
        session.refresh_token = Some(answer.refresh_token);
        session.access_token_expire_time =
            answer.access_token_expire_time.as_ref().and_then(timestamp);
        Ok(session)
    }

    async fn reissue_service(&mut self, mut session: Session) -> Result<Session> {
        let (Some(client_id), Some(secret_file)) = (
            session.client_id.clone(),
            session.client_secret_file.clone(),
        ) else {
            return Err(CliError::unauthenticated(
                "the service session has expired (run `kc login --client-id …`)",
            ));
        };
        let client_secret = read_secret_file(&secret_file)?;
        let answer = self.issue_service_token(client_id, client_secret).await?;
        session.access_token = answer.access_token;
        session.access_token_expire_time =
            answer.access_token_expire_time.as_ref().and_then(timestamp);
        Ok(session)
    }

    /// `IssueServiceToken` for a service account.
    pub async fn issue_service_token(
        &mut self,
        client_id: String,
        client_secret: String,
    ) -> Result<pb::IssueServiceTokenResponse> {
        let mut client = self.public_client().await?;
        client
            .issue_service_token(pb::IssueServiceTokenRequest {
                client_id,
                client_secret,
            })
            .await
            .map(Response::into_inner)
            .map_err(CliError::from)
    }

    /// The site a person typed: a site id is taken as it is; a site number is looked up
    /// among the caller's sites (ListMySites).
    pub async fn site(&mut self, typed: &str) -> Result<SiteRef> {
        let typed = typed.trim();
        if uuid::Uuid::parse_str(typed).is_ok() {
            return Ok(SiteRef {
                site_id: typed.to_owned(),
                site_number: String::new(),
            });
        }
        if typed.is_empty() || !typed.chars().all(|c| c.is_ascii_digit()) {
            return Err(CliError::usage(format!(
                "{typed:?} is neither a site number (7 to 10 digits) nor a site id"
            )));
        }
        let sites = self.my_sites().await?;
        sites
            .into_iter()
            .filter_map(|mine| mine.site)
            .find(|site| site.site_number == typed)
            .map(|site| SiteRef {
                site_id: site.site_id,
                site_number: site.site_number,
            })
            .ok_or_else(|| {
                CliError::not_found(format!(
                    "site {typed} is not among your sites (kc sites); an operator or a \
                     service account names a site by its id"
                ))
            })
    }

    /// Every site of the caller (ListMySites, all pages).
    pub async fn my_sites(&mut self) -> Result<Vec<pb::MySite>> {
        let mut sites = Vec::new();
        let mut page_token = String::new();
        loop {
            let request = pb::ListMySitesRequest {
                page_size: 1000,
                page_token: page_token.clone(),
            };
            let page = self
                .call(request, |mut c, r| async move { c.list_my_sites(r).await })
                .await?;
            sites.extend(page.sites);
            if page.next_page_token.is_empty() {
                return Ok(sites);
            }
            page_token = page.next_page_token;
        }
    }
}

/// `message` with `authorization: Bearer <token>`.
fn with_bearer<M>(message: M, token: &str) -> Result<Request<M>> {
    let mut request = Request::new(message);
    let value = MetadataValue::try_from(format!("Bearer {token}")).map_err(|_| {
        CliError::unauthenticated("the stored access token is not valid (run `kc login`)")
    })?;
    request.metadata_mut().insert("authorization", value);
    Ok(request)
}

/// A gateway address as typed (`127.0.0.1:50050`, `http://gw:50050/`) in the form sessions
/// are keyed by (`http://127.0.0.1:50050`).
pub fn normalize_gateway(address: &str) -> Result<String> {
    let address = address.trim().trim_end_matches('/');
    if address.is_empty() {
        return Err(CliError::usage("--gateway: empty address"));
    }
    let address = if address.contains("://") {
        address.to_owned()
    } else {
        format!("http://{address}")
    };
    Endpoint::from_shared(address.clone())
        .map_err(|e| CliError::usage(format!("--gateway {address}: {e}")))?;
    Ok(address)
}

/// A protobuf timestamp as a UTC time.
pub fn timestamp(ts: &prost_types::Timestamp) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp(ts.seconds, u32::try_from(ts.nanos).ok()?)
}

/// A protobuf timestamp as RFC 3339 text (seconds), empty when absent.
pub fn time_text(ts: Option<&prost_types::Timestamp>) -> String {
    ts.and_then(timestamp)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// The secret in a file, without surrounding blanks.
pub fn read_secret_file(path: &std::path::Path) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::other(format!("cannot read {}: {e}", path.display())))?;
    let secret = text.trim();
    if secret.is_empty() {
        return Err(CliError::usage(format!("{} is empty", path.display())));
    }
    Ok(secret.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_addresses_are_normalized() {
        assert_eq!(
            normalize_gateway("127.0.0.1:50050").unwrap(),
            "http://127.0.0.1:50050"
        );
        assert_eq!(
            normalize_gateway("https://gw.example.com/").unwrap(),
            "https://gw.example.com"
        );
        assert!(normalize_gateway(" ").is_err());
    }

    #[test]
    fn timestamps_print_in_utc_seconds() {
        let ts = prost_types::Timestamp {
            seconds: 1_767_225_600,
            nanos: 5,
        };
        assert_eq!(time_text(Some(&ts)), "2026-01-01T00:00:00Z");
        assert_eq!(time_text(None), "");
    }
}
