//! Bearer-token authentication: a tower layer that verifies the EdDSA access token of every
//! non-public RPC locally, against keys fetched from identity and cached by `kid`, refuses
//! the tokens identity revoked (rule I4, [`crate::revocation`]), and puts the [`Caller`] in
//! the request extensions.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use ed25519_dalek::VerifyingKey;
use futures::future::BoxFuture;
use http::{Request, Response};
use tonic::Status;
use tonic::body::Body;
use tower_layer::Layer;
use tower_service::Service;
use uuid::Uuid;

use crate::revocation::{READY_WAIT, RevocationList};
use crate::token::{self, CallerKind, Claims, Expectations, TokenError};

/// Metadata key through which a service names the person it acts for.
pub const ON_BEHALF_OF_HEADER: &str = "x-kc-on-behalf-of";

/// Method path prefixes that never need a token: health and reflection.
const ALWAYS_PUBLIC_PREFIXES: [&str; 3] = [
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

/// Shortest pause between two key fetches caused by unknown `kid`s, so that tokens with
/// made-up key ids cannot make a service hammer identity (at most 5 fetches a second).
/// A request with an unknown `kid` waits out the pause and then fetches: a key that was
/// just rotated in is found even when a fetch happened a moment before.
const MIN_REFETCH_INTERVAL: Duration = Duration::from_millis(200);

/// The authenticated caller of an RPC, as the auth layer put it in the request extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// User id, or the client id of a service account.
    pub subject: Uuid,
    /// Kind of caller.
    pub kind: CallerKind,
    /// Login e-mail of a person (empty for services).
    pub email: String,
    /// The person a service acts for (`x-kc-on-behalf-of`), honoured only from services.
    pub on_behalf_of: Option<Uuid>,
    /// The scopes of a service account's token (e.g. `authz`, `notices`); empty for people.
    pub scopes: Vec<String>,
}

impl Caller {
    /// The person to hold responsible: the on-behalf-of user, else the caller itself.
    pub fn actor(&self) -> Uuid {
        self.on_behalf_of.unwrap_or(self.subject)
    }

    /// Whether the caller is an operator.
    pub fn is_operator(&self) -> bool {
        self.kind == CallerKind::Operator
    }

    /// Whether the caller is a service account.
    pub fn is_service(&self) -> bool {
        self.kind == CallerKind::Service
    }

    /// Operators and services: the callers trusted with other users' data.
    pub fn is_privileged(&self) -> bool {
        self.is_operator() || self.is_service()
    }

    /// Whether the caller is exactly this user (a person acting for itself).
    pub fn is_user(&self, user_id: Uuid) -> bool {
        !self.is_service() && self.subject == user_id
    }

    /// Whether the caller is a service account whose token carries `scope`. People never
    /// hold scopes: their rights come from roles and grants.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.is_service() && self.scopes.iter().any(|held| held == scope)
    }
}

/// The caller of a request, or `Unauthenticated` if the auth layer put none there.
pub fn caller<T>(request: &tonic::Request<T>) -> Result<Caller, Status> {
    shared_caller(request).map(Arc::unwrap_or_clone)
}

/// The caller of a request as the auth layer shares it (no copy), or `Unauthenticated` if
/// it put none there: for a server that hands the caller to many parts of one call.
pub fn shared_caller<T>(request: &tonic::Request<T>) -> Result<Arc<Caller>, Status> {
    request
        .extensions()
        .get::<Arc<Caller>>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("missing caller"))
}

/// Where verification keys come from: identity's `GetSigningKeys`, or identity's own store.
pub trait KeySource: Send + Sync + 'static {
    /// Every key that may still verify a token, by `kid`.
    fn fetch_keys(&self) -> BoxFuture<'_, anyhow::Result<Vec<(String, VerifyingKey)>>>;
}

/// Why a request was not authenticated.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The token itself was refused.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The keys could not be fetched to check an unknown `kid`.
    #[error("signing keys unavailable")]
    KeysUnavailable,
    /// Identity revoked the token: its user was disabled, its session logged out, or its
    /// password changed (rule I4).
    #[error("access token revoked")]
    Revoked,
    /// The revocations were never received from identity, so no token can be trusted yet.
    #[error("token revocations unavailable")]
    RevocationsUnavailable,
}

impl From<AuthError> for Status {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::Token(error) => Status::unauthenticated(error.to_string()),
            AuthError::Revoked => Status::unauthenticated("access token revoked"),
            AuthError::KeysUnavailable | AuthError::RevocationsUnavailable => {
                Status::unavailable("cannot verify the access token right now, retry later")
            }
        }
    }
}

/// How long fetched keys are trusted before they are fetched again, so that a key identity
/// retired (e.g. after a compromise) stops verifying here too.
const KEY_CACHE_TTL: Duration = Duration::from_secs(60);

/// Most verified tokens remembered; past it the memory of verified tokens starts afresh.
const MAX_VERIFIED_TOKENS: usize = 10_000;

#[derive(Default)]
struct KeyCache {
    keys: HashMap<String, VerifyingKey>,
    fetched_at: Option<Instant>,
    /// Tokens whose signature already verified with these keys, with their claims: a
    /// caller presents the same token for many calls, and the Ed25519 check dominated the
    /// cost of a cheap RPC. Emptied whenever the keys change. Shared, so that a hit copies
    /// nothing.
    verified: HashMap<String, Arc<Claims>>,
}

struct VerifierState {
    source: Box<dyn KeySource>,
    keys: RwLock<KeyCache>,
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
    expect: Expectations,
    key_ttl: Duration,
}

/// Verifies access tokens locally, caching keys by `kid` and refetching on an unknown one;
/// with a [`RevocationList`] ([`with_revocations`](Self::with_revocations)) it also refuses
/// the tokens identity revoked (rule I4).
#[derive(Clone)]
pub struct TokenVerifier {
    state: Arc<VerifierState>,
    /// Revoked tokens; `None` trusts every token until it expires (tests with their own
    /// issuer).
    revocations: Option<RevocationList>,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("expect", &self.state.expect)
            .field("revocations", &self.revocations)
            .finish_non_exhaustive()
    }
}

impl TokenVerifier {
    /// A verifier that takes keys from `source` and requires `expect` of every token.
    pub fn new(source: impl KeySource, expect: Expectations) -> Self {
        Self {
            state: Arc::new(VerifierState {
                source: Box::new(source),
                keys: RwLock::new(KeyCache::default()),
                last_fetch: tokio::sync::Mutex::new(None),
                expect,
                key_ttl: KEY_CACHE_TTL,
            }),
            revocations: None,
        }
    }

    /// The same verifier trusting fetched keys for `ttl` instead of a minute.
    pub fn with_key_ttl(source: impl KeySource, expect: Expectations, ttl: Duration) -> Self {
        let verifier = Self::new(source, expect);
        let mut state = Arc::into_inner(verifier.state).expect("sole owner of a new verifier");
        state.key_ttl = ttl;
        Self {
            state: Arc::new(state),
            revocations: None,
        }
    }

    /// The same verifier refusing the tokens `revocations` lists (rule I4). Until the list
    /// is ready, a verification waits a moment for it and then fails with `UNAVAILABLE`
    /// (fail closed; see [`crate::revocation`]).
    pub fn with_revocations(mut self, revocations: RevocationList) -> Self {
        self.revocations = Some(revocations);
        self
    }

    /// The revocations this verifier refuses, when it follows any.
    pub fn revocations(&self) -> Option<&RevocationList> {
        self.revocations.as_ref()
    }

    /// Verifies `token` and returns its claims: signature, issuer, audience, times, and
    /// that identity has not revoked it.
    pub async fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        self.verify_shared(token).await.map(Arc::unwrap_or_clone)
    }

    /// [`verify`](Self::verify), with the claims as the cache of verified tokens shares them.
    async fn verify_shared(&self, token: &str) -> Result<Arc<Claims>, AuthError> {
        let claims = self.verify_signed(token).await?;
        if let Some(revocations) = &self.revocations {
            if !revocations.is_ready() && !revocations.wait_ready(READY_WAIT).await {
                return Err(AuthError::RevocationsUnavailable);
            }
            if revocations.is_revoked(&claims) {
                return Err(AuthError::Revoked);
            }
        }
        Ok(claims)
    }

    /// Verifies everything the token itself says (not the revocations).
    async fn verify_signed(&self, token: &str) -> Result<Arc<Claims>, AuthError> {
        if self.cache_is_stale() {
            self.refresh_stale().await;
        }
        let now = chrono::Utc::now().timestamp();
        if let Some(claims) = self.already_verified(token, now) {
            return Ok(claims);
        }
        let parsed = token::parse(token)?;
        let key = match self.cached_key(&parsed.kid) {
            Some(key) => key,
            None => self.refetch_for(&parsed.kid).await?,
        };
        let claims = Arc::new(parsed.verify(&key, &self.state.expect, now)?);
        self.remember(token, &claims);
        Ok(claims)
    }

    /// The claims of a token verified before, while it has not expired.
    fn already_verified(&self, token: &str, now: i64) -> Option<Arc<Claims>> {
        let cache = self
            .state
            .keys
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        cache
            .verified
            .get(token)
            .filter(|claims| claims.exp > now)
            .cloned()
    }

    fn remember(&self, token: &str, claims: &Arc<Claims>) {
        let mut cache = self
            .state
            .keys
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if cache.verified.len() >= MAX_VERIFIED_TOKENS {
            cache.verified.clear();
        }
        cache.verified.insert(token.to_owned(), claims.clone());
    }

    fn cached_key(&self, kid: &str) -> Option<VerifyingKey> {
        self.state
            .keys
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .keys
            .get(kid)
            .copied()
    }

    fn cache_is_stale(&self) -> bool {
        self.state
            .keys
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .fetched_at
            .is_some_and(|at| at.elapsed() > self.state.key_ttl)
    }

    /// Refetches keys past their TTL. On failure the old keys stay in use (identity being
    /// briefly down must not stop every service) and the next try waits the refetch pause.
    async fn refresh_stale(&self) {
        let mut last_fetch = self.state.last_fetch.lock().await;
        if !self.cache_is_stale()
            || last_fetch.is_some_and(|at| at.elapsed() < MIN_REFETCH_INTERVAL)
        {
            return;
        }
        *last_fetch = Some(Instant::now());
        match self.state.source.fetch_keys().await {
            Ok(fetched) => self.store(fetched),
            Err(error) => {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "refreshing signing keys failed"
                );
            }
        }
    }

    fn store(&self, fetched: Vec<(String, VerifyingKey)>) {
        let mut cache = self
            .state
            .keys
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        cache.keys = fetched.into_iter().collect();
        cache.fetched_at = Some(Instant::now());
        cache.verified.clear();
        tracing::debug!(keys = cache.keys.len(), "signing keys refreshed");
    }

    async fn refetch_for(&self, kid: &str) -> Result<VerifyingKey, AuthError> {
        let mut last_fetch = self.state.last_fetch.lock().await;
        // Another request may have fetched while this one waited for the lock.
        if let Some(key) = self.cached_key(kid) {
            return Ok(key);
        }
        if let Some(at) = *last_fetch {
            tokio::time::sleep(MIN_REFETCH_INTERVAL.saturating_sub(at.elapsed())).await;
        }
        let fetched = self.state.source.fetch_keys().await.map_err(|error| {
            tracing::warn!(error = format!("{error:#}"), "fetching signing keys failed");
            AuthError::KeysUnavailable
        })?;
        *last_fetch = Some(Instant::now());
        self.store(fetched);
        self.cached_key(kid)
            .ok_or(AuthError::Token(TokenError::UnknownKey))
    }

    /// Authenticates the metadata of a request: the bearer token and, from services only,
    /// the on-behalf-of user.
    pub async fn authenticate(&self, headers: &http::HeaderMap) -> Result<Caller, Status> {
        let value = headers
            .get(http::header::AUTHORIZATION)
            .ok_or_else(|| Status::unauthenticated("missing bearer token"))?;
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or_else(|| Status::unauthenticated("authorization must be a bearer token"))?;
        let claims = self.verify_shared(token).await?;
        let subject = Uuid::parse_str(&claims.sub)
            .map_err(|_| Status::unauthenticated("malformed access token"))?;
        let on_behalf_of = match headers.get(ON_BEHALF_OF_HEADER) {
            None => None,
            Some(_) if claims.kind != CallerKind::Service => {
                return Err(Status::permission_denied(
                    "x-kc-on-behalf-of is honoured only from service tokens",
                ));
            }
            Some(value) => Some(
                value
                    .to_str()
                    .ok()
                    .and_then(|v| Uuid::parse_str(v.trim()).ok())
                    .ok_or_else(|| {
                        Status::invalid_argument("x-kc-on-behalf-of must be a user id")
                    })?,
            ),
        };
        let scopes = claims.scopes().map(str::to_owned).collect();
        Ok(Caller {
            subject,
            kind: claims.kind,
            email: claims.email.clone(),
            on_behalf_of,
            scopes,
        })
    }
}

/// Tower layer that authenticates every RPC except health, reflection and the listed
/// public methods (full paths, e.g. `/keycontacts.identity.v1.IdentityService/Authenticate`).
#[derive(Clone, Debug)]
pub struct AuthLayer {
    verifier: TokenVerifier,
    public_methods: Arc<HashSet<String>>,
}

impl AuthLayer {
    /// A layer verifying with `verifier` and letting `public_methods` through unauthenticated.
    pub fn new<I, M>(verifier: TokenVerifier, public_methods: I) -> Self
    where
        I: IntoIterator<Item = M>,
        M: Into<String>,
    {
        Self {
            verifier,
            public_methods: Arc::new(public_methods.into_iter().map(Into::into).collect()),
        }
    }

    /// A layer verifying with `verifier` on every RPC of the service (it has no public
    /// methods; health and reflection are let through as always).
    pub fn without_public_methods(verifier: TokenVerifier) -> Self {
        Self::new(verifier, [] as [&str; 0])
    }

    fn is_public(&self, path: &str) -> bool {
        self.public_methods.contains(path)
            || ALWAYS_PUBLIC_PREFIXES
                .iter()
                .any(|prefix| path.starts_with(prefix))
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service built by [`AuthLayer`].
#[derive(Clone, Debug)]
pub struct AuthService<S> {
    inner: S,
    layer: AuthLayer,
}

impl<S> Service<Request<Body>> for AuthService<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        // Take the service that was driven to readiness; leave a fresh clone in its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        if self.layer.is_public(request.uri().path()) {
            return Box::pin(inner.call(request));
        }
        let verifier = self.layer.verifier.clone();
        Box::pin(async move {
            match verifier.authenticate(request.headers()).await {
                Ok(caller) => {
                    request.extensions_mut().insert(Arc::new(caller));
                    inner.call(request).await
                }
                Err(status) => Ok(status.into_http()),
            }
        })
    }
}

/// Keys fetched from identity's `GetSigningKeys` RPC.
#[derive(Clone, Debug)]
pub struct IdentityKeySource {
    client: kc_proto::identity::identity_service_client::IdentityServiceClient<
        tonic::transport::Channel,
    >,
}

impl IdentityKeySource {
    /// Fetches keys through `channel` (connected to identity).
    pub fn new(channel: tonic::transport::Channel) -> Self {
        Self {
            client: kc_proto::identity::identity_service_client::IdentityServiceClient::new(
                channel,
            ),
        }
    }
}

impl KeySource for IdentityKeySource {
    fn fetch_keys(&self) -> BoxFuture<'_, anyhow::Result<Vec<(String, VerifyingKey)>>> {
        let mut client = self.client.clone();
        Box::pin(async move {
            let response = client
                .get_signing_keys(kc_proto::identity::GetSigningKeysRequest {})
                .await?
                .into_inner();
            response
                .keys
                .into_iter()
                .map(|key| {
                    let bytes: [u8; 32] =
                        key.public_key.as_slice().try_into().map_err(|_| {
                            anyhow::anyhow!("signing key {} is not 32 bytes", key.kid)
                        })?;
                    Ok((key.kid, VerifyingKey::from_bytes(&bytes)?))
                })
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::token::{CallerKind, Claims, generate_signing_key, key_id, sign};

    /// Keys that a test can change, as identity does when it retires one.
    #[derive(Clone, Default)]
    struct Keys(Arc<Mutex<Vec<(String, VerifyingKey)>>>);

    impl Keys {
        /// Serves exactly the public halves of `keys` from now on.
        fn serve(&self, keys: &[&ed25519_dalek::SigningKey]) {
            *self.0.lock().unwrap() = keys
                .iter()
                .map(|key| (key_id(&key.verifying_key()), key.verifying_key()))
                .collect();
        }
    }

    impl KeySource for Keys {
        fn fetch_keys(&self) -> BoxFuture<'_, anyhow::Result<Vec<(String, VerifyingKey)>>> {
            let keys = self.0.lock().unwrap().clone();
            Box::pin(async move { Ok(keys) })
        }
    }

    fn token_of(key: &ed25519_dalek::SigningKey) -> String {
        token_with(key, CallerKind::Operator, "")
    }

    fn token_with(key: &ed25519_dalek::SigningKey, kind: CallerKind, scope: &str) -> String {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: Uuid::new_v4().to_string(),
            kind,
            email: String::new(),
            iss: "keycontacts".into(),
            aud: "keycontacts".into(),
            iat: now,
            exp: now + 600,
            jti: "t".into(),
            sid: String::new(),
            scope: scope.into(),
        };
        sign(&claims, &key_id(&key.verifying_key()), key)
    }

    #[tokio::test]
    async fn a_retired_key_stops_verifying_once_the_cache_expires() {
        let old = generate_signing_key();
        let new = generate_signing_key();
        let keys = Keys::default();
        keys.serve(&[&old]);
        let expect = Expectations {
            issuer: "keycontacts".into(),
            audience: "keycontacts".into(),
        };
        let verifier = TokenVerifier::with_key_ttl(keys.clone(), expect, Duration::from_millis(50));
        verifier
            .verify(&token_of(&old))
            .await
            .expect("old key verifies");

        // Identity retires the old key: only the new one is served.
        keys.serve(&[&new]);
        tokio::time::sleep(MIN_REFETCH_INTERVAL + Duration::from_millis(50)).await;
        verifier
            .verify(&token_of(&new))
            .await
            .expect("new key verifies");
        assert!(
            verifier.verify(&token_of(&old)).await.is_err(),
            "a retired key must not verify forever"
        );
    }

    fn bearer(token: &str) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        headers
    }

    #[tokio::test]
    async fn the_caller_holds_the_scopes_of_its_token() {
        let key = generate_signing_key();
        let keys = Keys::default();
        keys.serve(&[&key]);
        let verifier = TokenVerifier::new(
            keys,
            Expectations {
                issuer: "keycontacts".into(),
                audience: "keycontacts".into(),
            },
        );

        let token = token_with(&key, CallerKind::Service, "authz notices");
        let service = verifier.authenticate(&bearer(&token)).await.unwrap();
        assert_eq!(service.scopes, ["authz", "notices"]);
        assert!(service.has_scope("authz") && service.has_scope("notices"));
        assert!(!service.has_scope("auth") && !service.has_scope(""));

        let token = token_with(&key, CallerKind::Service, "");
        let bare = verifier.authenticate(&bearer(&token)).await.unwrap();
        assert!(bare.scopes.is_empty() && !bare.has_scope("notices"));

        // A scope claim on a person's token grants nothing.
        let token = token_with(&key, CallerKind::Operator, "notices");
        let operator = verifier.authenticate(&bearer(&token)).await.unwrap();
        assert!(!operator.has_scope("notices"));
    }
}
