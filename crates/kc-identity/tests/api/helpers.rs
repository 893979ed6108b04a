//! Harness of the identity tests: a real Postgres database, identity served on
//! `127.0.0.1:0`, and typed clients.

use futures::StreamExt;
use kc_identity::config::IdentityArgs;
use kc_identity::domain::Identity;
use kc_identity::domain::values::{Email, Password};
use kc_proto::identity::identity_service_client::IdentityServiceClient;
use kc_proto::identity::{self as pb};
use kc_runtime::Shutdown;
use kc_runtime::cli::ParseArgs;
use kc_testkit::codes::{CodeReader, MailedCode};
use kc_testkit::{SpawnedService, TestDatabase, spawn_service, test_database};
use tokio::sync::OnceCell;
use tonic::transport::Channel;
use tonic::{Status, Streaming};

pub use kc_testkit::grpc::{authed, expect_code, expect_field_exact as expect_field};

pub const OPERATOR_EMAIL: &str = "operator@keycontacts.test";
pub const PASSWORD: &str = "correct horse battery staple";
/// How long a stream stays quiet before the tests take it to be idle.
pub const IDLE: std::time::Duration = std::time::Duration::from_millis(700);

pub struct Harness {
    pub db: TestDatabase,
    pub service: SpawnedService,
    pub channel: Channel,
    pub args: IdentityArgs,
    operator_token: OnceCell<String>,
    reader_token: OnceCell<String>,
}

/// Cheap argon2 parameters: the tests exercise the logic, not the cost.
pub const FAST_HASHING: [&str; 4] = ["--argon2-memory-kib", "256", "--argon2-iterations", "1"];

impl Harness {
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    pub async fn start_with(extra: &[&str]) -> Self {
        let db = test_database().await;
        let keys = kc_testkit::secrets::identity_key_args();
        let mut argv = vec!["kc-identity", "--database-url", &db.url];
        argv.extend(FAST_HASHING);
        argv.extend(keys.iter().map(String::as_str));
        argv.extend(extra);
        let args = IdentityArgs::parse_from(argv).expect("test arguments parse");
        let service = {
            let args = args.clone();
            let shutdown = Shutdown::new();
            spawn_service(move |listener| kc_identity::run(args, listener, shutdown)).await
        };
        let channel = service.channel().await;
        Self {
            db,
            service,
            channel,
            args,
            operator_token: OnceCell::new(),
            reader_token: OnceCell::new(),
        }
    }

    pub fn client(&self) -> IdentityServiceClient<Channel> {
        IdentityServiceClient::new(self.channel.clone())
    }

    /// The keys `GetSigningKeys` serves, newest first.
    pub async fn signing_keys(&self) -> Vec<pb::SigningKey> {
        signing_keys(&self.channel).await
    }

    /// The domain on the same database, for fixtures that have no public RPC (operators and
    /// service accounts are created by the binary's admin commands, which call these).
    pub async fn domain(&self) -> Identity {
        kc_identity::build(&self.args).await.expect("domain").1
    }

    pub async fn register(&self, email: &str, name: &str, locale: &str) {
        self.register_with(email, name, locale, PASSWORD).await;
    }

    pub async fn register_with(&self, email: &str, name: &str, locale: &str, password: &str) {
        let response =
            kc_testkit::identity::register(&self.channel, email, name, password, locale).await;
        // rule I2: nothing in the answer.
        assert_eq!(response, pb::RegisterUserResponse {});
    }

    /// The outstanding code mailed to `email`: the only one whose sealed code is still in
    /// the outbox (used, replaced and withdrawn codes are dropped from it).
    pub async fn code(&self, email: &str) -> MailedCode {
        let token = self.reader_token().await;
        CodeReader::new(self.channel.clone(), token)
            .next_code(email)
            .await
    }

    /// Proves `email` with its mailed code and the claim's password.
    pub async fn verify(&self, email: &str, password: &str) -> pb::User {
        let code = self.code(email).await.code;
        self.client()
            .verify_email(pb::VerifyEmailRequest {
                email: email.into(),
                code,
                password: password.into(),
            })
            .await
            .expect("verify")
            .into_inner()
            .user
            .expect("user")
    }

    pub async fn login(
        &self,
        email: &str,
        password: &str,
    ) -> Result<pb::AuthenticateResponse, Status> {
        self.client()
            .authenticate(pb::AuthenticateRequest {
                email: email.into(),
                password: password.into(),
            })
            .await
            .map(|r| r.into_inner())
    }

    /// A registered and proven customer.
    pub async fn proven(&self, email: &str, name: &str, locale: &str) -> pb::User {
        self.register(email, name, locale).await;
        self.verify(email, PASSWORD).await
    }

    /// A registered, proven customer and its access token.
    pub async fn customer(&self, email: &str) -> (pb::User, String) {
        let user = self.proven(email, "Test Customer", "en").await;
        let token = self
            .login(email, PASSWORD)
            .await
            .expect("login")
            .access_token;
        (user, token)
    }

    /// An operator's access token (bootstrapped like `kc-identity bootstrap-operator`, once
    /// per harness: bootstrapping again would revoke the tokens of the first time).
    /// WatchEvents with `token` after `after_cursor` (empty: from the start); the test fails
    /// when refused.
    pub async fn watch(
        &self,
        token: &str,
        after_cursor: &str,
    ) -> Streaming<pb::WatchEventsResponse> {
        self.client()
            .watch_events(authed(
                token,
                pb::WatchEventsRequest {
                    after_cursor: after_cursor.into(),
                },
            ))
            .await
            .expect("watch")
            .into_inner()
    }

    /// Every event of the stream, read with `token` from the start until the stream is idle
    /// (700 ms).
    pub async fn events_until_idle(&self, token: &str) -> Vec<pb::Event> {
        let mut stream = self.watch(token, "").await;
        let mut events = Vec::new();
        while let Ok(Some(item)) = tokio::time::timeout(IDLE, stream.next()).await {
            events.push(item.unwrap().event.unwrap());
        }
        events
    }

    /// RefreshSession with `refresh_token`.
    pub async fn refresh(&self, refresh_token: &str) -> Result<pb::RefreshSessionResponse, Status> {
        self.client()
            .refresh_session(pb::RefreshSessionRequest {
                refresh_token: refresh_token.into(),
            })
            .await
            .map(tonic::Response::into_inner)
    }

    /// DisableUser by the operator with `token`; the test fails when refused.
    pub async fn disable(&self, token: &str, user_id: &str) {
        self.client()
            .disable_user(authed(
                token,
                pb::DisableUserRequest {
                    user_id: user_id.into(),
                },
            ))
            .await
            .expect("disable");
    }

    pub async fn operator(&self) -> String {
        self.operator_token
            .get_or_init(|| async {
                let domain = self.domain().await;
                domain
                    .bootstrap_operator(
                        &Email::parse("email", OPERATOR_EMAIL).unwrap(),
                        &Password::parse("password", PASSWORD).unwrap(),
                    )
                    .await
                    .expect("bootstrap operator");
                self.login(OPERATOR_EMAIL, PASSWORD)
                    .await
                    .expect("operator login")
                    .access_token
            })
            .await
            .clone()
    }

    /// The token with which the harness reads mailed codes (a service's, as notification).
    async fn reader_token(&self) -> String {
        self.reader_token
            .get_or_init(|| self.service_token("test-code-reader"))
            .await
            .clone()
    }

    /// A service account's token.
    pub async fn service_token(&self, name: &str) -> String {
        let (client_id, secret) = self
            .domain()
            .await
            .create_service_account(name)
            .await
            .expect("service account");
        kc_testkit::identity::service_token(&self.channel, &client_id.to_string(), &secret).await
    }
}

/// Methods of [`Harness`] that call one RPC as the holder of a token: identity's answer as
/// the client gives it (a generic method cannot name the client's RPCs). An RPC whose request
/// is one string field takes that string.
macro_rules! calls_as_caller {
    ($($rpc:ident($request:ident $({ $field:ident })?) -> $response:ident;)+) => {
        impl Harness {
            $(calls_as_caller!(@one $rpc($request $({ $field })?) -> $response);)+
        }
    };
    (@one $rpc:ident($request:ident) -> $response:ident) => {
        #[doc = concat!("`", stringify!($rpc), "` as the holder of `token`.")]
        pub async fn $rpc(
            &self,
            token: &str,
            request: pb::$request,
        ) -> Result<tonic::Response<pb::$response>, Status> {
            self.client().$rpc(authed(token, request)).await
        }
    };
    (@one $rpc:ident($request:ident { $field:ident }) -> $response:ident) => {
        #[doc = concat!("`", stringify!($rpc), "` of `", stringify!($field), "` as the holder of `token`.")]
        pub async fn $rpc(
            &self,
            token: &str,
            $field: &str,
        ) -> Result<tonic::Response<pb::$response>, Status> {
            let request = pb::$request {
                $field: $field.to_owned(),
            };
            self.client().$rpc(authed(token, request)).await
        }
    };
}

calls_as_caller! {
    get_user(GetUserRequest { user_id }) -> GetUserResponse;
    lookup_user(LookupUserRequest { email }) -> LookupUserResponse;
    disable_user(DisableUserRequest { user_id }) -> DisableUserResponse;
    enable_user(EnableUserRequest { user_id }) -> EnableUserResponse;
    create_user(CreateUserRequest) -> CreateUserResponse;
    invite_user(InviteUserRequest) -> InviteUserResponse;
    batch_invite_users(BatchInviteUsersRequest) -> BatchInviteUsersResponse;
    batch_lookup_users(BatchLookupUsersRequest) -> BatchLookupUsersResponse;
    batch_get_users(BatchGetUsersRequest) -> BatchGetUsersResponse;
    update_user(UpdateUserRequest) -> UpdateUserResponse;
    change_password(ChangePasswordRequest) -> ChangePasswordResponse;
    change_email(ChangeEmailRequest) -> ChangeEmailResponse;
    confirm_email_change(ConfirmEmailChangeRequest) -> ConfirmEmailChangeResponse;
    rotate_signing_key(RotateSigningKeyRequest) -> RotateSigningKeyResponse;
}

/// The keys `GetSigningKeys` serves on `channel`, newest first.
pub async fn signing_keys(channel: &Channel) -> Vec<pb::SigningKey> {
    IdentityServiceClient::new(channel.clone())
        .get_signing_keys(pb::GetSigningKeysRequest {})
        .await
        .expect("signing keys")
        .into_inner()
        .keys
}
