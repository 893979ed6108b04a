//! What a scenario's seed step can reach ([`Env`]) and what it returns ([`Prepared`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail};
use futures::future::BoxFuture;
use kc_proto::gateway::IssueServiceTokenRequest as GatewayTokenRequest;
use kc_proto::gateway::gateway_service_client::GatewayServiceClient;
use kc_proto::identity::IssueServiceTokenRequest;
use kc_proto::identity::identity_service_client::IdentityServiceClient;
use sqlx::{Connection, PgConnection};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;

use crate::load::{AdmitFn, CallFn, Deliveries, Window};
use crate::smtp_sink::SmtpSink;
use crate::suite::Account;

/// What a scenario's seed step returns.
pub(crate) struct Prepared {
    /// The call the load generator makes.
    pub call: CallFn,
    /// Facts worth printing with the result (e.g. cost parameters).
    pub notes: Vec<String>,
    /// Work to do right before the measurement, after the service's baseline (which a
    /// scenario's first seeding precedes): e.g. filling a cache whose entries would expire
    /// during the run if filled earlier. Resolves to a note on what it did.
    pub warm: Option<BoxFuture<'static, anyhow::Result<String>>>,
    /// When each call may start, if not at once: see [`AdmitFn`].
    pub admit: Option<AdmitFn>,
    /// The rate `admit` paces calls at, when it paces them (an open loop).
    pub paced: Option<f64>,
    /// Calls in flight at once, when the scenario sets its own instead of `--concurrency`
    /// (connections then at most as many).
    pub concurrency: Option<usize>,
    /// Counts what the calls set off once the calls of the run are done, given its window:
    /// see [`Deliveries`]. Resolves to them and notes on them.
    pub outcome: Option<OutcomeFn>,
    /// Runs beside the load, given the run's window: e.g. reads counters of the services at
    /// the window's start and end. Resolves to notes on what it saw.
    pub beside: Option<BesideFn>,
}

/// Counts what a run's calls set off: see [`Prepared::outcome`].
pub(crate) type OutcomeFn =
    Box<dyn FnOnce(Window) -> BoxFuture<'static, anyhow::Result<(Deliveries, Vec<String>)>> + Send>;

/// Runs beside a run's load: see [`Prepared::beside`].
pub(crate) type BesideFn =
    Box<dyn FnOnce(Window) -> BoxFuture<'static, anyhow::Result<Vec<String>>> + Send>;

impl Prepared {
    /// Calls made as fast as the load generator's concurrency allows, and nothing else.
    pub(crate) fn calls(call: CallFn, notes: Vec<String>) -> Self {
        Self {
            call,
            notes,
            warm: None,
            admit: None,
            paced: None,
            concurrency: None,
            outcome: None,
            beside: None,
        }
    }
}

/// What a seed step can reach.
pub(crate) struct Env {
    /// `http://` URL of each running service, by short name (services start on first need,
    /// so it grows as the scenarios run).
    pub urls: BTreeMap<&'static str, String>,
    /// Postgres URL of each service's own database role (whose search path is its schema), by
    /// short name: for fixtures that bulk-load a schema directly.
    pub database_urls: BTreeMap<&'static str, String>,
    /// How long one measured run lasts, warm-up included: tokens must outlive it.
    pub run_time: Duration,
    /// The SMTP server the services that send mail deliver to, when one of them runs.
    pub sink: Option<Arc<SmtpSink>>,
    /// Address (`127.0.0.1:port`) of each running service's Prometheus endpoint
    /// (`--metrics-listen`), by short name.
    pub metrics_addrs: BTreeMap<&'static str, String>,
    /// The benchmark's own service account, when identity runs.
    account: Option<Account>,
    /// The last service access token issued to it, and when it expires (Unix seconds).
    service_token: tokio::sync::Mutex<Option<(MetadataValue<Ascii>, u64)>>,
    /// The relying application's account (scope `authz`), made on first use, and the last
    /// token the gateway issued to it with its expiry.
    relying_app: tokio::sync::Mutex<RelyingApp>,
}

/// The benchmark's relying application: see [`Env::relying_app_bearer`].
#[derive(Default)]
struct RelyingApp {
    /// Its credentials, once created.
    account: Option<Account>,
    /// Its last token, and when it expires (Unix seconds).
    token: Option<(MetadataValue<Ascii>, u64)>,
}

/// Name of the benchmark's relying application's service account.
const RELYING_APP: &str = "xtask-bench-relying-app";
/// Its scopes: the gateway's AuthorizationService.
const RELYING_APP_SCOPES: &[&str] = &["authz"];

impl Env {
    /// What seed steps reach: the running services at `urls`, their databases at
    /// `database_urls`, runs of `run_time`, the SMTP `sink` and the benchmark's service
    /// `account`.
    pub(crate) fn new(
        urls: BTreeMap<&'static str, String>,
        database_urls: BTreeMap<&'static str, String>,
        run_time: Duration,
        sink: Option<Arc<SmtpSink>>,
        account: Option<Account>,
    ) -> Self {
        Self {
            urls,
            database_urls,
            run_time,
            sink,
            metrics_addrs: BTreeMap::new(),
            account,
            service_token: tokio::sync::Mutex::new(None),
            relying_app: tokio::sync::Mutex::new(RelyingApp::default()),
        }
    }

    /// A connection to the database of service `name`, as its own role.
    pub(crate) async fn database(&self, name: &str) -> anyhow::Result<PgConnection> {
        let url = self
            .database_urls
            .get(name)
            .ok_or_else(|| anyhow!("service {name} has no database"))?;
        PgConnection::connect(url)
            .await
            .with_context(|| format!("could not connect to the database of {name}"))
    }

    /// `Bearer <token>` of the benchmark's service account, valid for at least one more run:
    /// issued by identity's IssueServiceToken on first use, again when it would expire.
    pub(crate) async fn service_bearer(&self) -> anyhow::Result<MetadataValue<Ascii>> {
        let account = self
            .account
            .as_ref()
            .ok_or_else(|| anyhow!("no service account: identity is not running"))?;
        let mut cached = self.service_token.lock().await;
        let now = unix_now()?;
        if let Some((bearer, expires)) = cached.as_ref()
            && *expires >= now + self.needed_lifetime()
        {
            return Ok(bearer.clone());
        }
        let issued = IdentityServiceClient::new(self.channel("identity").await?)
            .issue_service_token(IssueServiceTokenRequest {
                client_id: account.client_id.clone(),
                client_secret: account.client_secret.clone(),
            })
            .await
            .context("could not issue a service token for the benchmark")?
            .into_inner();
        let expires = self.check_lifetime(issued.access_token_expire_time)?;
        let bearer: MetadataValue<Ascii> = format!("Bearer {}", issued.access_token)
            .parse()
            .context("the service token is not a valid header value")?;
        *cached = Some((bearer.clone(), expires));
        Ok(bearer)
    }

    /// `Bearer <token>` of the benchmark's relying application, as a system that enforces
    /// rights gets it: a service account with the scope `authz` (`kc-identity
    /// create-service-account xtask-bench-relying-app --scope authz`, made on first use), its
    /// token from the gateway's public `IssueServiceToken` (again when it would expire).
    pub(crate) async fn relying_app_bearer(&self) -> anyhow::Result<MetadataValue<Ascii>> {
        let mut app = self.relying_app.lock().await;
        let now = unix_now()?;
        if let Some((bearer, expires)) = app.token.as_ref()
            && *expires >= now + self.needed_lifetime()
        {
            return Ok(bearer.clone());
        }
        let account = match app.account.clone() {
            Some(account) => account,
            None => {
                let account =
                    crate::create_account(RELYING_APP, RELYING_APP_SCOPES, &self.database_urls)
                        .await?;
                app.account = Some(account.clone());
                account
            }
        };
        let issued = GatewayServiceClient::new(self.channel("gateway").await?)
            .issue_service_token(GatewayTokenRequest {
                client_id: account.client_id,
                client_secret: account.client_secret,
            })
            .await
            .context("the gateway's IssueServiceToken failed for the relying application")?
            .into_inner();
        let expires = self.check_lifetime(issued.access_token_expire_time)?;
        let bearer: MetadataValue<Ascii> = format!("Bearer {}", issued.access_token)
            .parse()
            .context("the relying application's token is not a valid header value")?;
        app.token = Some((bearer.clone(), expires));
        Ok(bearer)
    }

    /// How long a token must still live when a run is seeded: the run, with a margin for the
    /// time between seeding and its start.
    fn needed_lifetime(&self) -> u64 {
        self.run_time.as_secs() + 30
    }

    /// Fails unless a token expiring at `expires` outlives the next run; returns its expiry in
    /// Unix seconds (far away when unknown).
    pub(crate) fn check_lifetime(
        &self,
        expires: Option<prost_types::Timestamp>,
    ) -> anyhow::Result<u64> {
        let Some(expires) = expires else {
            return Ok(u64::MAX);
        };
        let expires = u64::try_from(expires.seconds).unwrap_or(0);
        let left = expires.saturating_sub(unix_now()?);
        let needed = self.needed_lifetime();
        if left < needed {
            bail!(
                "access tokens live {left}s, shorter than the run ({needed}s): raise \
                 KC_ACCESS_TOKEN_TTL or shorten --warmup and --duration"
            );
        }
        Ok(expires)
    }

    /// A channel to the running service `name`.
    pub(crate) async fn channel(&self, name: &str) -> anyhow::Result<Channel> {
        let url = self
            .urls
            .get(name)
            .ok_or_else(|| anyhow!("service {name} is not running"))?;
        tonic::transport::Endpoint::from_shared(url.clone())?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .connect()
            .await
            .with_context(|| format!("could not connect to {name} at {url}"))
    }
}

/// Seconds since the Unix epoch.
fn unix_now() -> anyhow::Result<u64> {
    Ok(SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs())
}
