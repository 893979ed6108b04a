//! Calling other services of the suite: channels, the service-account token (fetched from
//! identity and renewed before it expires), and the metadata every internal call carries
//! (bearer token, `x-kc-on-behalf-of`, W3C trace context).

use std::sync::Arc;
use std::time::Duration;

use kc_proto::identity::IssueServiceTokenRequest;
use kc_proto::identity::identity_service_client::IdentityServiceClient;
use tokio::sync::Mutex;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::{Request, Status};
use uuid::Uuid;

use crate::auth::ON_BEHALF_OF_HEADER;
use crate::telemetry::inject_trace_context;

/// A token is renewed when it has less than this left.
const RENEW_BEFORE_EXPIRY: Duration = Duration::from_secs(60);

/// How long a replica reported unreachable is passed over by [`ReplicaChannels::pick`].
const UNREACHABLE_PAUSE: Duration = Duration::from_secs(5);

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
    let mut endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(|_| anyhow::anyhow!("{setting}: `{url}` is not a valid http:// url"))?;
    if let Some(tls) = crate::tls::client_config(setting, endpoint.uri())? {
        endpoint = endpoint.tls_config(tls)?;
    }
    let endpoint = endpoint
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true);
    Ok(endpoint.connect_lazy())
}

/// Connection settings of [`ReplicaChannels`].
#[derive(Debug, Clone, Copy)]
pub struct ReplicaSettings {
    /// Longest wait for a TCP connection to one replica: a replica that is down fails fast.
    pub connect_timeout: Duration,
    /// How often the host name is resolved again, to follow replicas as they come and go.
    pub resolve_interval: Duration,
}

/// Client-side balancing over every replica behind one DNS name (e.g. a Kubernetes headless
/// service): one lazily connected channel per address the host resolves to, re-resolved
/// every `resolve_interval`, and each [`pick`](Self::pick) takes the next one in turn.
///
/// A replica that is down fails its call fast (`Unavailable` after at most the connect
/// timeout) instead of queueing it, so a caller may retry on the next replica. A caller that
/// reports the failure ([`Picked::unreachable`]) has that replica passed over for a few
/// seconds (unless every replica is), so a replica that went away costs one failed call, not
/// one call in N until the name stops resolving to it. A host given as an IP address, and a
/// name not resolved yet (or no longer resolving), is served by one lazy channel to the URL
/// itself. The resolving task ends when the last clone is dropped.
#[derive(Clone, Debug)]
pub struct ReplicaChannels {
    inner: Arc<ReplicaInner>,
}

#[derive(Debug)]
struct ReplicaInner {
    /// The configured URL, sent as the origin (`:authority`) of every call.
    origin: http::Uri,
    /// A channel to the URL itself, used while no resolved address is known.
    fallback: Channel,
    /// One channel per resolved address, in address order.
    replicas: std::sync::RwLock<Vec<Arc<Replica>>>,
    next: std::sync::atomic::AtomicUsize,
    settings: ReplicaSettings,
    /// TLS of every channel, for an `https://` URL.
    tls: Option<ClientTlsConfig>,
}

/// One resolved replica.
#[derive(Debug)]
struct Replica {
    addr: std::net::SocketAddr,
    channel: Channel,
    /// Until when it is passed over, after a caller found it unreachable.
    paused_until: std::sync::Mutex<Option<std::time::Instant>>,
}

impl Replica {
    fn new(addr: std::net::SocketAddr, channel: Channel) -> Self {
        Self {
            addr,
            channel,
            paused_until: std::sync::Mutex::new(None),
        }
    }

    fn is_paused(&self, now: std::time::Instant) -> bool {
        self.paused_until
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .is_some_and(|until| until > now)
    }
}

/// The channel [`ReplicaChannels::pick`] chose for one call, and the replica behind it.
#[derive(Clone, Debug)]
pub struct Picked {
    /// The channel to send the call on.
    pub channel: Channel,
    /// The replica, `None` for the URL's own channel.
    replica: Option<Arc<Replica>>,
}

impl Picked {
    /// Reports that the call could not reach its replica (connection refused or reset, no
    /// connection in time): the replica is passed over for a few seconds.
    pub fn unreachable(&self) {
        if let Some(replica) = &self.replica {
            let until = std::time::Instant::now() + UNREACHABLE_PAUSE;
            *replica
                .paused_until
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(until);
            tracing::info!(addr = %replica.addr, "replica unreachable; passed over for a while");
        }
    }
}

/// An endpoint dialling `url` (one replica's address); `tls` verifies the certificate
/// against the service's name, not the address.
fn replica_endpoint(
    url: &str,
    settings: ReplicaSettings,
    tls: Option<&ClientTlsConfig>,
) -> Result<Endpoint, tonic::transport::Error> {
    let mut endpoint = Endpoint::from_shared(url.to_owned())?;
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls.clone())?;
    }
    Ok(endpoint
        .connect_timeout(settings.connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true))
}

impl ReplicaChannels {
    /// Channels to the replicas behind `url` (`http://host:port`), failing at start with a
    /// line that names `setting` when the URL is malformed. Must be called inside a Tokio
    /// runtime (the channels and the resolving task run on it).
    pub fn new(setting: &str, url: &str, settings: ReplicaSettings) -> anyhow::Result<Self> {
        let invalid = || anyhow::anyhow!("{setting}: `{url}` is not a valid http:// url");
        let origin: http::Uri = url.parse().map_err(|_| invalid())?;
        let host = origin.host().ok_or_else(invalid)?.to_owned();
        let port = origin.port_u16().unwrap_or(match origin.scheme_str() {
            Some("https") => 443,
            _ => 80,
        });
        let tls = crate::tls::client_config(setting, &origin)?;
        let fallback = replica_endpoint(url, settings, tls.as_ref())
            .map_err(|_| invalid())?
            .connect_lazy();
        let inner = Arc::new(ReplicaInner {
            origin,
            tls,
            fallback,
            replicas: std::sync::RwLock::new(Vec::new()),
            next: std::sync::atomic::AtomicUsize::new(0),
            settings,
        });
        let bare_host = host.trim_start_matches('[').trim_end_matches(']');
        if bare_host.parse::<std::net::IpAddr>().is_err() {
            tokio::spawn(resolve_forever(Arc::downgrade(&inner), host, port));
        }
        Ok(Self { inner })
    }

    /// The channel for the next call: the next replica in turn that is not passed over
    /// (any replica when all are), or the URL's own channel while no address is known.
    pub fn pick(&self) -> Picked {
        let replicas = self
            .inner
            .replicas
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if replicas.is_empty() {
            return Picked {
                channel: self.inner.fallback.clone(),
                replica: None,
            };
        }
        let turn = self
            .inner
            .next
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let now = std::time::Instant::now();
        let count = replicas.len();
        let replica = (0..count)
            .map(|offset| &replicas[(turn + offset) % count])
            .find(|replica| !replica.is_paused(now))
            .unwrap_or(&replicas[turn % count]);
        Picked {
            channel: replica.channel.clone(),
            replica: Some(Arc::clone(replica)),
        }
    }

    /// How many replica addresses are known (0 while only the URL's own channel is used).
    pub fn replicas(&self) -> usize {
        self.inner
            .replicas
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .len()
    }
}

impl ReplicaInner {
    /// Replaces the replica set by `addresses`, keeping the channels (and their
    /// connections) of addresses that stay.
    fn update(&self, mut addresses: Vec<std::net::SocketAddr>) {
        addresses.sort();
        addresses.dedup();
        let mut replicas = self
            .replicas
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if replicas
            .iter()
            .map(|replica| replica.addr)
            .eq(addresses.iter().copied())
        {
            return;
        }
        let scheme = self.origin.scheme_str().unwrap_or("http");
        let mut next = Vec::with_capacity(addresses.len());
        for addr in addresses {
            if let Some(known) = replicas.iter().find(|known| known.addr == addr) {
                next.push(Arc::clone(known));
                continue;
            }
            match replica_endpoint(
                &format!("{scheme}://{addr}"),
                self.settings,
                self.tls.as_ref(),
            ) {
                Ok(endpoint) => {
                    let channel = endpoint.origin(self.origin.clone()).connect_lazy();
                    next.push(Arc::new(Replica::new(addr, channel)));
                }
                Err(error) => tracing::warn!(%addr, %error, "cannot make a channel to a replica"),
            }
        }
        tracing::info!(
            host = self.origin.host().unwrap_or_default(),
            replicas = next.len(),
            "replica set changed"
        );
        *replicas = next;
    }
}

/// Resolves `host` every `resolve_interval` and updates the replica set, until every
/// [`ReplicaChannels`] clone is gone. A failed or empty resolution keeps the last set.
async fn resolve_forever(inner: std::sync::Weak<ReplicaInner>, host: String, port: u16) {
    loop {
        let resolved = tokio::net::lookup_host((host.as_str(), port)).await;
        let Some(strong) = inner.upgrade() else {
            return;
        };
        match resolved {
            Ok(addresses) => {
                let addresses: Vec<_> = addresses.collect();
                if addresses.is_empty() {
                    tracing::warn!(%host, "host resolved to no address; keeping the last replicas");
                } else {
                    strong.update(addresses);
                }
            }
            Err(error) => {
                tracing::warn!(%host, %error, "cannot resolve host; keeping the last replicas");
            }
        }
        let interval = strong.settings.resolve_interval;
        drop(strong);
        tokio::time::sleep(interval).await;
    }
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

    const SETTINGS: ReplicaSettings = ReplicaSettings {
        connect_timeout: Duration::from_millis(500),
        resolve_interval: Duration::from_millis(20),
    };

    #[tokio::test]
    async fn an_ip_url_is_one_channel_and_a_name_resolves_to_its_replicas() {
        let by_ip = ReplicaChannels::new("--x-url", "http://127.0.0.1:1", SETTINGS).unwrap();
        let _ = by_ip.pick().channel;
        assert_eq!(by_ip.replicas(), 0);

        let by_name = ReplicaChannels::new("--x-url", "http://localhost:1", SETTINGS).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while by_name.replicas() == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "localhost never resolved"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = by_name.pick().channel;

        let error = ReplicaChannels::new("--x-url", "not a url", SETTINGS).unwrap_err();
        assert!(error.to_string().contains("--x-url"), "{error}");
    }

    #[tokio::test]
    async fn the_replica_set_follows_resolution() {
        let channels = ReplicaChannels::new("--x-url", "http://127.0.0.1:1", SETTINGS).unwrap();
        let a: std::net::SocketAddr = "10.0.0.1:50052".parse().unwrap();
        let b: std::net::SocketAddr = "10.0.0.2:50052".parse().unwrap();
        channels.inner.update(vec![b, a, a]);
        assert_eq!(channels.replicas(), 2);
        channels.inner.update(vec![b]);
        assert_eq!(channels.replicas(), 1);
        let known = channels.inner.replicas.read().unwrap()[0].addr;
        assert_eq!(known, b);
    }

    #[tokio::test]
    async fn a_replica_reported_unreachable_is_passed_over_unless_every_one_is() {
        let channels = ReplicaChannels::new("--x-url", "http://127.0.0.1:1", SETTINGS).unwrap();
        let fallback = channels.pick();
        assert!(fallback.replica.is_none());
        fallback.unreachable(); // the URL's own channel is never passed over
        let addr = |picked: &Picked| picked.replica.as_ref().expect("a replica").addr;
        let [a, b, c]: [std::net::SocketAddr; 3] = [
            "10.0.0.1:50052".parse().unwrap(),
            "10.0.0.2:50052".parse().unwrap(),
            "10.0.0.3:50052".parse().unwrap(),
        ];
        channels.inner.update(vec![a, b, c]);
        let turns: std::collections::HashSet<_> = (0..3).map(|_| addr(&channels.pick())).collect();
        assert_eq!(turns.len(), 3, "round robin over every replica");

        let to_b = std::iter::repeat_with(|| channels.pick())
            .take(3)
            .find(|picked| addr(picked) == b)
            .expect("b comes in turn");
        to_b.unreachable();
        for _ in 0..9 {
            assert_ne!(addr(&channels.pick()), b);
        }
        // A new resolution keeps what callers reported of the replicas that stay.
        channels.inner.update(vec![a, b]);
        for _ in 0..4 {
            assert_eq!(addr(&channels.pick()), a);
        }
        // Every replica passed over: calls still go somewhere (and fail fast if all are down).
        channels.pick().unreachable();
        let picked: std::collections::HashSet<_> = (0..4).map(|_| addr(&channels.pick())).collect();
        assert_eq!(picked, [a, b].into_iter().collect());
    }

    #[tokio::test]
    async fn a_replica_that_is_down_fails_fast_and_is_used_again_once_back() {
        use tonic_health::pb::HealthCheckRequest;
        use tonic_health::pb::health_client::HealthClient;

        let probe = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = probe.local_addr().unwrap();
        drop(probe);
        let channels =
            ReplicaChannels::new("--x-url", &format!("http://{addr}"), SETTINGS).unwrap();
        let check = || {
            let mut client = HealthClient::new(channels.pick().channel);
            async move {
                client
                    .check(HealthCheckRequest {
                        service: String::new(),
                    })
                    .await
            }
        };
        for _ in 0..2 {
            let status = check().await.expect_err("nothing listens");
            assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
        }

        // The replica comes back on its address: the same channels reach it.
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let (_reporter, health) = tonic_health::server::health_reporter();
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(health)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            match check().await {
                Ok(_) => break,
                Err(status) => assert!(
                    std::time::Instant::now() < deadline,
                    "the channel never recovered: {status:?}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        server.abort();
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
