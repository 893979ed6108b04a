//! Revoked access tokens (rule I4) through the verifier every service builds from
//! `--identity-url`: a fake identity serving only `GetSigningKeys` and `WatchRevocations`
//! (every other RPC answers `Unimplemented`), restartable on the same port, and a verifier
//! made by `IdentityUrlArgs::verifier` exactly as the services make theirs.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::Stream;
use kc_proto::identity::identity_service_server::{IdentityService, IdentityServiceServer};
use kc_proto::identity::{self as ipb, TokenRevocation};
use kc_runtime::Shutdown;
use kc_runtime::auth::{AuthError, IdentityKeySource, TokenVerifier};
use kc_runtime::config::{IdentityUrlArgs, ServerArgs};
use kc_runtime::revocation::RevocationList;
use kc_runtime::telemetry::LogFormat;
use kc_runtime::token::{CallerKind, Claims};
use kc_testkit::tokens::{AUDIENCE, ISSUER, TestIssuer};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Code, Request, Response, Status};
use uuid::Uuid;

/// Rule I4: a revocation takes effect within seconds.
const WITHIN: Duration = Duration::from_secs(5);

/// What identity's database would hold: the revocations, and where new ones are announced.
#[derive(Clone)]
struct Revocations {
    known: Arc<Mutex<Vec<TokenRevocation>>>,
    new: broadcast::Sender<TokenRevocation>,
}

impl Revocations {
    fn new(initial: Vec<TokenRevocation>) -> Self {
        Self {
            known: Arc::new(Mutex::new(initial)),
            new: broadcast::channel(64).0,
        }
    }

    /// Commits a revocation: later snapshots hold it, open streams get it.
    fn commit(&self, revocation: TokenRevocation) {
        self.known.lock().unwrap().push(revocation.clone());
        // No open stream is not an error: the next one gets it in its snapshot.
        let _ = self.new.send(revocation);
    }
}

/// The fake identity: signing keys of the test issuer and the revocation stream.
#[derive(Clone)]
struct FakeIdentity {
    keys: Vec<ipb::SigningKey>,
    revocations: Revocations,
    /// While false, streams open but send nothing (identity slow to answer).
    snapshot_released: watch::Receiver<bool>,
    /// Triggered when this server instance stops: its streams end, as identity's do.
    stopping: watch::Receiver<bool>,
    /// Streams currently open.
    open_streams: Arc<AtomicUsize>,
}

type RevocationStream =
    Pin<Box<dyn Stream<Item = Result<ipb::WatchRevocationsResponse, Status>> + Send>>;
type EventStream = Pin<Box<dyn Stream<Item = Result<ipb::WatchEventsResponse, Status>> + Send>>;

/// The identity service with `$rpc`s answering `Unimplemented`, and the items given.
macro_rules! identity_with_unimplemented {
    ($($rpc:ident($request:ident) -> $response:ident;)* { $($implemented:tt)* }) => {
        #[tonic::async_trait]
        impl IdentityService for FakeIdentity {
            $(
                async fn $rpc(
                    &self,
                    _request: Request<ipb::$request>,
                ) -> Result<Response<ipb::$response>, Status> {
                    Err(Status::unimplemented(stringify!($rpc)))
                }
            )*
            $($implemented)*
        }
    };
}

identity_with_unimplemented! {
    register_user(RegisterUserRequest) -> RegisterUserResponse;
    verify_email(VerifyEmailRequest) -> VerifyEmailResponse;
    request_password_reset(RequestPasswordResetRequest) -> RequestPasswordResetResponse;
    reset_password(ResetPasswordRequest) -> ResetPasswordResponse;
    create_user(CreateUserRequest) -> CreateUserResponse;
    invite_user(InviteUserRequest) -> InviteUserResponse;
    batch_invite_users(BatchInviteUsersRequest) -> BatchInviteUsersResponse;
    batch_lookup_users(BatchLookupUsersRequest) -> BatchLookupUsersResponse;
    get_user(GetUserRequest) -> GetUserResponse;
    batch_get_users(BatchGetUsersRequest) -> BatchGetUsersResponse;
    lookup_user(LookupUserRequest) -> LookupUserResponse;
    update_user(UpdateUserRequest) -> UpdateUserResponse;
    change_password(ChangePasswordRequest) -> ChangePasswordResponse;
    change_email(ChangeEmailRequest) -> ChangeEmailResponse;
    confirm_email_change(ConfirmEmailChangeRequest) -> ConfirmEmailChangeResponse;
    disable_user(DisableUserRequest) -> DisableUserResponse;
    enable_user(EnableUserRequest) -> EnableUserResponse;
    authenticate(AuthenticateRequest) -> AuthenticateResponse;
    refresh_session(RefreshSessionRequest) -> RefreshSessionResponse;
    revoke_session(RevokeSessionRequest) -> RevokeSessionResponse;
    rotate_signing_key(RotateSigningKeyRequest) -> RotateSigningKeyResponse;
    issue_service_token(IssueServiceTokenRequest) -> IssueServiceTokenResponse;
    {
        type WatchEventsStream = EventStream;
        type WatchRevocationsStream = RevocationStream;

        async fn get_signing_keys(
            &self,
            _request: Request<ipb::GetSigningKeysRequest>,
        ) -> Result<Response<ipb::GetSigningKeysResponse>, Status> {
            Ok(Response::new(ipb::GetSigningKeysResponse {
                keys: self.keys.clone(),
            }))
        }

        async fn watch_events(
            &self,
            _request: Request<ipb::WatchEventsRequest>,
        ) -> Result<Response<EventStream>, Status> {
            Err(Status::unimplemented("watch_events"))
        }

        async fn watch_revocations(
            &self,
            _request: Request<ipb::WatchRevocationsRequest>,
        ) -> Result<Response<RevocationStream>, Status> {
            Ok(Response::new(Box::pin(ReceiverStream::new(self.open_stream()))))
        }
    }
}

impl FakeIdentity {
    /// Feeds one stream from a task: the snapshot, `live`, then each new revocation, until
    /// the client goes away or the server stops.
    fn open_stream(
        &self,
    ) -> tokio::sync::mpsc::Receiver<Result<ipb::WatchRevocationsResponse, Status>> {
        let (sender, receiver) = tokio::sync::mpsc::channel(16);
        let this = self.clone();
        // Subscribed before the snapshot is read: nothing committed in between is missed.
        let mut new = self.revocations.new.subscribe();
        this.open_streams.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(async move {
            let mut released = this.snapshot_released.clone();
            let mut stopping = this.stopping.clone();
            let feed = async {
                if released.wait_for(|released| *released).await.is_err() {
                    return;
                }
                let snapshot = this.revocations.known.lock().unwrap().clone();
                for message in [
                    ipb::WatchRevocationsResponse {
                        revocations: snapshot,
                        live: false,
                    },
                    ipb::WatchRevocationsResponse {
                        revocations: Vec::new(),
                        live: true,
                    },
                ] {
                    if sender.send(Ok(message)).await.is_err() {
                        return;
                    }
                }
                while let Ok(revocation) = new.recv().await {
                    let message = ipb::WatchRevocationsResponse {
                        revocations: vec![revocation],
                        live: false,
                    };
                    if sender.send(Ok(message)).await.is_err() {
                        return;
                    }
                }
            };
            tokio::select! {
                () = feed => {}
                () = sender.closed() => {}
                _ = stopping.wait_for(|stopping| *stopping) => {}
            }
            this.open_streams.fetch_sub(1, Ordering::SeqCst);
        });
        receiver
    }
}

/// A fake identity server on a port, which can be stopped and started again on it.
struct Identity {
    addr: SocketAddr,
    issuer: TestIssuer,
    revocations: Revocations,
    release_snapshot: watch::Sender<bool>,
    open_streams: Arc<AtomicUsize>,
    running: Option<(watch::Sender<bool>, JoinHandle<()>)>,
}

impl Identity {
    /// Serves at once (`snapshot_now`) or holds every snapshot until released.
    async fn start(initial: Vec<TokenRevocation>, snapshot_now: bool) -> Self {
        let mut identity = Self {
            addr: "127.0.0.1:0".parse().unwrap(),
            issuer: TestIssuer::new(),
            revocations: Revocations::new(initial),
            release_snapshot: watch::Sender::new(snapshot_now),
            open_streams: Arc::new(AtomicUsize::new(0)),
            running: None,
        };
        identity.serve().await;
        identity
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    async fn serve(&mut self) {
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(listener) => break listener,
                // The port of the stopped instance may take a moment to be free.
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        self.addr = listener.local_addr().unwrap();
        let (stop, stopping) = watch::channel(false);
        let keys = self
            .issuer
            .key_source()
            .0
            .into_iter()
            .map(|(kid, key)| ipb::SigningKey {
                kid,
                algorithm: "EdDSA".into(),
                public_key: key.as_bytes().to_vec(),
                create_time: None,
            })
            .collect();
        let fake = FakeIdentity {
            keys,
            revocations: self.revocations.clone(),
            snapshot_released: self.release_snapshot.subscribe(),
            stopping: stopping.clone(),
            open_streams: self.open_streams.clone(),
        };
        let mut until_stopped = stopping;
        let task = tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(IdentityServiceServer::new(fake))
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async move {
                    let _ = until_stopped.wait_for(|stopping| *stopping).await;
                })
                .await
                .expect("fake identity serves");
        });
        self.running = Some((stop, task));
    }

    /// Stops the server; its streams end, as identity's do when it shuts down.
    async fn stop(&mut self) {
        let (stop, task) = self.running.take().expect("identity is running");
        stop.send_replace(true);
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("fake identity stops")
            .expect("fake identity task");
    }

    /// A token of `user` in session `sid` issued at `iat`.
    fn token(&self, user: Uuid, sid: &str, iat: i64) -> String {
        self.issuer.mint_claims(&Claims {
            sub: user.to_string(),
            kind: CallerKind::Customer,
            email: String::new(),
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            iat,
            exp: iat + 900,
            jti: Uuid::new_v4().to_string(),
            sid: sid.into(),
            scope: String::new(),
        })
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A revocation of `user`'s tokens (of `session` only when given) issued up to `issued_before`.
fn revocation(user: Uuid, session: Option<&str>, issued_before: i64) -> TokenRevocation {
    TokenRevocation {
        user_id: user.to_string(),
        session_id: session.unwrap_or_default().into(),
        issued_before: Some(prost_types::Timestamp {
            seconds: issued_before,
            nanos: 0,
        }),
        expire_time: Some(prost_types::Timestamp {
            seconds: issued_before + 960,
            nanos: 0,
        }),
    }
}

fn server_args() -> ServerArgs {
    ServerArgs {
        listen: None,
        metrics_listen: None,
        log_format: LogFormat::Pretty,
        request_timeout: Duration::from_secs(30),
        max_message_bytes: 4 * 1024 * 1024,
        shutdown_delay: Duration::ZERO,
        shutdown_grace: Duration::ZERO,
        token_issuer: ISSUER.into(),
        token_audience: AUDIENCE.into(),
        tls: Default::default(),
    }
}

/// The verifier a service builds from `--identity-url`.
fn verifier(identity: &Identity, shutdown: &Shutdown) -> TokenVerifier {
    IdentityUrlArgs {
        identity_url: identity.url(),
    }
    .verifier(&server_args(), shutdown)
    .expect("verifier")
}

/// The same verifier with a list that goes stale `stale_after` after its stream broke
/// (`IdentityUrlArgs::verifier` uses `kc_runtime::revocation::STALE_AFTER`, 30 s).
fn verifier_stale_after(
    identity: &Identity,
    shutdown: &Shutdown,
    stale_after: Duration,
) -> TokenVerifier {
    let channel = kc_runtime::client::channel("--identity-url", &identity.url()).expect("channel");
    let revocations = RevocationList::with_stale_after(stale_after);
    drop(kc_runtime::revocation::follow(
        channel.clone(),
        &revocations,
        shutdown,
    ));
    TokenVerifier::new(
        IdentityKeySource::new(channel),
        server_args().token_expectations(),
    )
    .with_revocations(revocations)
}

/// Asserts that `token` is refused as revoked, with the status a caller sees.
async fn assert_revoked(verifier: &TokenVerifier, token: &str, what: &str) {
    match verifier.verify(token).await {
        Err(error @ AuthError::Revoked) => {
            let status = Status::from(error);
            assert_eq!(status.code(), Code::Unauthenticated, "{what}");
            assert_eq!(status.message(), "access token revoked", "{what}");
        }
        other => panic!("{what}: expected a revoked token, got {other:?}"),
    }
}

/// Polls until `token` is refused as revoked, failing after [`WITHIN`].
async fn revoked_within(verifier: &TokenVerifier, token: &str, what: &str) {
    let deadline = tokio::time::Instant::now() + WITHIN;
    loop {
        match verifier.verify(token).await {
            Err(AuthError::Revoked) => return assert_revoked(verifier, token, what).await,
            Ok(_) => assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: still accepted after {WITHIN:?} (rule I4)"
            ),
            Err(other) => panic!("{what}: refused for another reason: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls until `list` is trusted again (the snapshot of a new stream arrived), failing after
/// [`WITHIN`] more than the follower's longest reconnect backoff
/// ([`kc_runtime::revocation::MAX_BACKOFF`]): it may be waiting that out when identity comes
/// back.
async fn trusted_within(list: &RevocationList, what: &str) {
    let bound = kc_runtime::revocation::MAX_BACKOFF + WITHIN;
    let deadline = tokio::time::Instant::now() + bound;
    while !list.is_ready() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: the list is still not trusted after {bound:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls until `count` reads `expected`, failing after [`WITHIN`].
async fn streams_become(count: &AtomicUsize, expected: usize, what: &str) {
    let deadline = tokio::time::Instant::now() + WITHIN;
    while count.load(Ordering::SeqCst) != expected {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: {} streams open, expected {expected}",
            count.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn snapshot_and_live_revocations_refuse_the_tokens_they_cover() {
    // rule I4
    let (disabled, other) = (Uuid::new_v4(), Uuid::new_v4());
    let start = now();
    let identity = Identity::start(vec![revocation(disabled, None, start)], true).await;
    let shutdown = Shutdown::new();
    let verifier = verifier(&identity, &shutdown);

    // From the snapshot: every older token of the disabled user, whatever its session.
    for sid in ["s1", "s2", ""] {
        let token = identity.token(disabled, sid, start - 5);
        assert_revoked(
            &verifier,
            &token,
            "a token of a disabled user, from the snapshot",
        )
        .await;
    }
    // A token issued after the revocation (the user enabled and signed in again) counts.
    let later = identity.token(disabled, "s3", start + 1);
    verifier
        .verify(&later)
        .await
        .expect("a token issued after issued_before still verifies");

    // Live: one session of another user logs out.
    let first_session = identity.token(other, "first", start - 5);
    let second_session = identity.token(other, "second", start - 5);
    for token in [&first_session, &second_session] {
        verifier.verify(token).await.expect("not revoked yet");
    }
    identity
        .revocations
        .commit(revocation(other, Some("first"), start));
    revoked_within(&verifier, &first_session, "the session that logged out").await;
    verifier
        .verify(&second_session)
        .await
        .expect("a session revocation spares the user's other sessions");
    verifier
        .verify(&identity.token(other, "first", start + 1))
        .await
        .expect("a token issued after issued_before still verifies");

    // Live: the user is disabled: every session.
    identity.revocations.commit(revocation(other, None, start));
    revoked_within(
        &verifier,
        &second_session,
        "a token of a user just disabled",
    )
    .await;
    shutdown.trigger();
}

#[tokio::test]
async fn tokens_are_refused_until_the_first_snapshot_arrives() {
    // rule I4: fail closed while the revocations are unknown.
    let identity = Identity::start(Vec::new(), false).await;
    let shutdown = Shutdown::new();
    let verifier = verifier(&identity, &shutdown);
    let token = identity.token(Uuid::new_v4(), "s", now());

    let error = verifier
        .verify(&token)
        .await
        .expect_err("no token is trusted before the snapshot");
    assert!(
        matches!(error, AuthError::RevocationsUnavailable),
        "{error:?}"
    );
    assert_eq!(Status::from(error).code(), Code::Unavailable);
    assert!(
        !verifier
            .revocations()
            .expect("follows revocations")
            .is_ready()
    );

    identity.release_snapshot.send_replace(true);
    verifier
        .verify(&token)
        .await
        .expect("verifies once the snapshot arrived");
    shutdown.trigger();
}

#[tokio::test]
async fn the_follower_reconnects_after_identity_restarts() {
    // rule I4
    let mut identity = Identity::start(Vec::new(), true).await;
    let shutdown = Shutdown::new();
    let verifier = verifier(&identity, &shutdown);
    let user = Uuid::new_v4();
    let token = identity.token(user, "s", now() - 5);
    verifier.verify(&token).await.expect("verifies");
    streams_become(&identity.open_streams, 1, "the follower's stream").await;

    identity.stop().await;
    streams_become(&identity.open_streams, 0, "identity stopped").await;
    // While identity is down the last known list keeps serving (see kc_runtime::revocation).
    verifier
        .verify(&token)
        .await
        .expect("a known token still verifies while identity is down");

    // Disabled while the stream was down (committed before identity serves again): the
    // snapshot of the new stream brings it.
    identity.revocations.commit(revocation(user, None, now()));
    identity.serve().await;
    revoked_within(
        &verifier,
        &token,
        "a revocation made while the stream was down",
    )
    .await;

    // And the new stream is live.
    let second = Uuid::new_v4();
    let second_token = identity.token(second, "s", now() - 5);
    verifier.verify(&second_token).await.expect("verifies");
    identity.revocations.commit(revocation(second, None, now()));
    revoked_within(
        &verifier,
        &second_token,
        "a live revocation after reconnecting",
    )
    .await;
    shutdown.trigger();
}

#[tokio::test]
async fn the_follower_stops_at_shutdown_and_with_its_verifier() {
    let identity = Identity::start(Vec::new(), true).await;
    let token = identity.token(Uuid::new_v4(), "s", now());

    let shutdown = Shutdown::new();
    let stopped_by_shutdown = verifier(&identity, &shutdown);
    stopped_by_shutdown.verify(&token).await.expect("verifies");
    let dropped = verifier(&identity, &Shutdown::new());
    dropped.verify(&token).await.expect("verifies");
    streams_become(&identity.open_streams, 2, "two followers").await;

    shutdown.trigger();
    streams_become(
        &identity.open_streams,
        1,
        "one follower stopped at shutdown",
    )
    .await;
    drop(dropped);
    streams_become(
        &identity.open_streams,
        0,
        "the follower of a dropped verifier",
    )
    .await;
}

#[tokio::test]
async fn a_stream_broken_for_long_fails_closed_until_the_next_snapshot() {
    // rule I4: a verifier does not trust a stale list forever. Identity goes away (as in a
    // partition while it keeps revoking): after the staleness bound every token is refused
    // with UNAVAILABLE, and the snapshot of the next stream makes the list trusted again,
    // with what was revoked meanwhile.
    let stale_after = Duration::from_millis(600);
    let mut identity = Identity::start(Vec::new(), true).await;
    let shutdown = Shutdown::new();
    let verifier = verifier_stale_after(&identity, &shutdown, stale_after);
    let (user, other) = (Uuid::new_v4(), Uuid::new_v4());
    let token = identity.token(user, "s", now() - 5);
    let other_token = identity.token(other, "s", now() - 5);
    verifier.verify(&token).await.expect("verifies");
    verifier.verify(&other_token).await.expect("verifies");
    streams_become(&identity.open_streams, 1, "the follower's stream").await;

    let stopping = Instant::now();
    identity.stop().await;
    streams_become(&identity.open_streams, 0, "identity stopped").await;
    let list = verifier.revocations().expect("follows revocations").clone();
    // The stream broke after `stopping`: while the bound has not passed since then, the list
    // is still trusted. (A busy machine may take longer than the bound to get here; the
    // check then has nothing to say.)
    let trusted = list.is_ready();
    if stopping.elapsed() < stale_after {
        assert!(trusted, "trusted right after the stream broke");
    }
    tokio::time::sleep(stale_after + Duration::from_millis(200)).await;
    assert!(!list.is_ready(), "stale once the bound passed");
    let error = verifier
        .verify(&other_token)
        .await
        .expect_err("a stale list trusts no token");
    assert!(
        matches!(error, AuthError::RevocationsUnavailable),
        "{error:?}"
    );
    assert_eq!(Status::from(error).code(), Code::Unavailable);

    identity.revocations.commit(revocation(user, None, now()));
    identity.serve().await;
    // Until the new stream's snapshot arrives the list stays stale, and every token is
    // refused as above (fail closed): wait for it, then for the revocation it carries.
    trusted_within(&list, "the next snapshot").await;
    revoked_within(
        &verifier,
        &token,
        "a revocation made while the list was stale",
    )
    .await;
    verifier
        .verify(&other_token)
        .await
        .expect("trusted again once the next snapshot arrived");
    shutdown.trigger();
}
