//! The gRPC face of identity: turns requests into domain values, calls the domain with the
//! caller from the request extensions, and turns results back. No SQL, no rules.

use kc_proto::identity::{self as pb, identity_service_server::IdentityService};
use kc_runtime::auth::caller;
use kc_runtime::grpc::{id, invalid, status, watch_events};
use kc_runtime::outbox::{EventStream, OutboxWatcher};
use kc_runtime::{Shutdown, Violation, Violations};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::domain::service::{MAX_BATCH_GET, SessionTokens, UserDraft};
use crate::domain::values::{DisplayName, Email, Locale, Password};
use crate::domain::{Identity, User, UserKind, UserState, parse_id};
use crate::events;

/// Full method paths that need no token.
pub const PUBLIC_METHODS: [&str; 7] = [
    "/keycontacts.identity.v1.IdentityService/RegisterUser",
    "/keycontacts.identity.v1.IdentityService/VerifyEmail",
    "/keycontacts.identity.v1.IdentityService/Authenticate",
    "/keycontacts.identity.v1.IdentityService/RefreshSession",
    "/keycontacts.identity.v1.IdentityService/RevokeSession",
    "/keycontacts.identity.v1.IdentityService/GetSigningKeys",
    "/keycontacts.identity.v1.IdentityService/IssueServiceToken",
];

/// The `IdentityService` implementation.
#[derive(Clone, Debug)]
pub struct IdentityApi {
    identity: Identity,
    watcher: OutboxWatcher,
    shutdown: Shutdown,
}

impl IdentityApi {
    /// The API over `identity`, streaming events from `watcher` until `shutdown`.
    pub fn new(identity: Identity, watcher: OutboxWatcher, shutdown: Shutdown) -> Self {
        Self {
            identity,
            watcher,
            shutdown,
        }
    }
}

pub use kc_runtime::values::timestamp;

/// The published form of a user.
pub fn user_to_proto(user: &User) -> pb::User {
    pb::User {
        user_id: user.user_id.to_string(),
        email: user.email.clone(),
        email_verified: user.email_verified,
        display_name: user.display_name.clone(),
        locale: user.locale.clone(),
        kind: match user.kind {
            UserKind::Customer => pb::UserKind::Customer,
            UserKind::Operator => pb::UserKind::Operator,
        } as i32,
        state: match user.state {
            UserState::Active => pb::UserState::Active,
            UserState::Invited => pb::UserState::Invited,
            UserState::Disabled => pb::UserState::Disabled,
        } as i32,
        create_time: Some(timestamp(user.create_time)),
        update_time: Some(timestamp(user.update_time)),
        etag: user.etag(),
    }
}

fn user_response(user: &User) -> Option<pb::User> {
    Some(user_to_proto(user))
}

/// Parses the fields shared by RegisterUser and CreateUser, reporting every bad one.
fn user_draft(
    email: &str,
    display_name: &str,
    locale: &str,
    kind: UserKind,
    password: Option<&str>,
) -> Result<UserDraft, Status> {
    let mut violations = Violations::new();
    let email = violations.check(Email::parse("email", email));
    let display_name = violations.check(DisplayName::parse("display_name", display_name));
    let locale = violations.check(Locale::parse_or_default("locale", locale));
    let password = match password {
        Some(text) => violations
            .check(Password::parse("password", text))
            .map(Some),
        None => Some(None),
    };
    violations.finish().map_err(status)?;
    match (email, display_name, locale, password) {
        (Some(email), Some(display_name), Some(locale), Some(password)) => Ok(UserDraft {
            email,
            display_name,
            locale,
            kind,
            password,
        }),
        _ => Err(Status::internal("internal error")),
    }
}

fn session_response(tokens: SessionTokens) -> pb::AuthenticateResponse {
    pb::AuthenticateResponse {
        access_token: tokens.access.token,
        refresh_token: tokens.refresh_token,
        access_token_expire_time: Some(timestamp(tokens.access.expire_time)),
        user: user_response(&tokens.user),
    }
}

#[tonic::async_trait]
impl IdentityService for IdentityApi {
    async fn register_user(
        &self,
        request: Request<pb::RegisterUserRequest>,
    ) -> Result<Response<pb::RegisterUserResponse>, Status> {
        let r = request.into_inner();
        let draft = user_draft(
            &r.email,
            &r.display_name,
            &r.locale,
            UserKind::Customer,
            Some(&r.password),
        )?;
        let (user, _code) = self.identity.register(draft).await.map_err(status)?;
        Ok(Response::new(pb::RegisterUserResponse {
            user: user_response(&user),
        }))
    }

    async fn verify_email(
        &self,
        request: Request<pb::VerifyEmailRequest>,
    ) -> Result<Response<pb::VerifyEmailResponse>, Status> {
        let r = request.into_inner();
        let user_id = id("user_id", &r.user_id)?;
        if r.code.trim().is_empty() {
            return Err(invalid(Violation::new(
                "code",
                "verification code is required",
            )));
        }
        let password = if r.password.is_empty() {
            None
        } else {
            Some(Password::presented(&r.password))
        };
        let user = self
            .identity
            .verify_email(user_id, &r.code, password.as_ref())
            .await
            .map_err(status)?;
        Ok(Response::new(pb::VerifyEmailResponse {
            user: user_response(&user),
        }))
    }

    async fn create_user(
        &self,
        request: Request<pb::CreateUserRequest>,
    ) -> Result<Response<pb::CreateUserResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let kind = match pb::UserKind::try_from(r.kind) {
            Ok(pb::UserKind::Unspecified | pb::UserKind::Customer) => UserKind::Customer,
            Ok(pb::UserKind::Operator) => UserKind::Operator,
            Ok(pb::UserKind::Service) => {
                return Err(invalid(Violation::new(
                    "kind",
                    "service accounts are created with `kc-identity create-service-account`",
                )));
            }
            Err(_) => return Err(invalid(Violation::new("kind", "unknown user kind"))),
        };
        let draft = user_draft(
            &r.email,
            &r.display_name,
            &r.locale,
            kind,
            r.password.as_deref(),
        )?;
        let user = self
            .identity
            .create_user(&caller, draft)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::CreateUserResponse {
            user: user_response(&user),
        }))
    }

    async fn get_user(
        &self,
        request: Request<pb::GetUserRequest>,
    ) -> Result<Response<pb::GetUserResponse>, Status> {
        let caller = caller(&request)?;
        let user_id = id("user_id", &request.get_ref().user_id)?;
        let user = self
            .identity
            .get_user(&caller, user_id)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::GetUserResponse {
            user: user_response(&user),
        }))
    }

    async fn batch_get_users(
        &self,
        request: Request<pb::BatchGetUsersRequest>,
    ) -> Result<Response<pb::BatchGetUsersResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        if r.user_ids.len() > MAX_BATCH_GET {
            return Err(invalid(Violation::new(
                "user_ids",
                "at most 500 user ids per call",
            )));
        }
        let mut violations = Violations::new();
        let ids: Vec<Uuid> = r
            .user_ids
            .iter()
            .enumerate()
            .filter_map(|(index, text)| {
                violations.check(parse_id(&format!("user_ids[{index}]"), text))
            })
            .collect();
        violations.finish().map_err(status)?;
        let users = self
            .identity
            .batch_get_users(&caller, &ids)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::BatchGetUsersResponse {
            users: users.iter().map(user_to_proto).collect(),
        }))
    }

    async fn lookup_user(
        &self,
        request: Request<pb::LookupUserRequest>,
    ) -> Result<Response<pb::LookupUserResponse>, Status> {
        let caller = caller(&request)?;
        let email = Email::parse("email", &request.get_ref().email).map_err(invalid)?;
        let user = self
            .identity
            .lookup_user(&caller, &email)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::LookupUserResponse {
            user: user_response(&user),
        }))
    }

    async fn update_user(
        &self,
        request: Request<pb::UpdateUserRequest>,
    ) -> Result<Response<pb::UpdateUserResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let mut violations = Violations::new();
        let user_id = violations.check(parse_id("user_id", &r.user_id));
        let display_name = r
            .display_name
            .as_deref()
            .and_then(|text| violations.check(DisplayName::parse("display_name", text)));
        let locale = r
            .locale
            .as_deref()
            .and_then(|text| violations.check(Locale::parse("locale", text)));
        violations.finish().map_err(status)?;
        let user_id = user_id.ok_or_else(|| Status::internal("internal error"))?;
        let user = self
            .identity
            .update_user(&caller, user_id, display_name, locale, &r.etag)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::UpdateUserResponse {
            user: user_response(&user),
        }))
    }

    async fn change_password(
        &self,
        request: Request<pb::ChangePasswordRequest>,
    ) -> Result<Response<pb::ChangePasswordResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let user_id = id("user_id", &r.user_id)?;
        let new = Password::parse("new_password", &r.new_password).map_err(invalid)?;
        self.identity
            .change_password(
                &caller,
                user_id,
                &Password::presented(&r.current_password),
                &new,
            )
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ChangePasswordResponse {}))
    }

    async fn disable_user(
        &self,
        request: Request<pb::DisableUserRequest>,
    ) -> Result<Response<pb::DisableUserResponse>, Status> {
        let caller = caller(&request)?;
        let user_id = id("user_id", &request.get_ref().user_id)?;
        let user = self
            .identity
            .set_enabled(&caller, user_id, false)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::DisableUserResponse {
            user: user_response(&user),
        }))
    }

    async fn enable_user(
        &self,
        request: Request<pb::EnableUserRequest>,
    ) -> Result<Response<pb::EnableUserResponse>, Status> {
        let caller = caller(&request)?;
        let user_id = id("user_id", &request.get_ref().user_id)?;
        let user = self
            .identity
            .set_enabled(&caller, user_id, true)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::EnableUserResponse {
            user: user_response(&user),
        }))
    }

    async fn authenticate(
        &self,
        request: Request<pb::AuthenticateRequest>,
    ) -> Result<Response<pb::AuthenticateResponse>, Status> {
        let r = request.into_inner();
        let tokens = self
            .identity
            .authenticate(&r.email, &Password::presented(&r.password))
            .await
            .map_err(status)?;
        Ok(Response::new(session_response(tokens)))
    }

    async fn refresh_session(
        &self,
        request: Request<pb::RefreshSessionRequest>,
    ) -> Result<Response<pb::RefreshSessionResponse>, Status> {
        let r = request.into_inner();
        if r.refresh_token.trim().is_empty() {
            return Err(invalid(Violation::new(
                "refresh_token",
                "refresh token is required",
            )));
        }
        let tokens = self
            .identity
            .refresh(&r.refresh_token)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::RefreshSessionResponse {
            access_token: tokens.access.token,
            refresh_token: tokens.refresh_token,
            access_token_expire_time: Some(timestamp(tokens.access.expire_time)),
        }))
    }

    async fn revoke_session(
        &self,
        request: Request<pb::RevokeSessionRequest>,
    ) -> Result<Response<pb::RevokeSessionResponse>, Status> {
        let r = request.into_inner();
        if r.refresh_token.trim().is_empty() {
            return Err(invalid(Violation::new(
                "refresh_token",
                "refresh token is required",
            )));
        }
        self.identity
            .revoke(&r.refresh_token)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::RevokeSessionResponse {}))
    }

    async fn get_signing_keys(
        &self,
        _request: Request<pb::GetSigningKeysRequest>,
    ) -> Result<Response<pb::GetSigningKeysResponse>, Status> {
        let keys = self.identity.signing_keys().await.map_err(status)?;
        Ok(Response::new(pb::GetSigningKeysResponse {
            keys: keys.iter().map(signing_key_to_proto).collect(),
        }))
    }

    async fn rotate_signing_key(
        &self,
        request: Request<pb::RotateSigningKeyRequest>,
    ) -> Result<Response<pb::RotateSigningKeyResponse>, Status> {
        let caller = caller(&request)?;
        let key = self
            .identity
            .rotate_signing_key(&caller)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::RotateSigningKeyResponse {
            key: Some(signing_key_to_proto(&key)),
        }))
    }

    async fn issue_service_token(
        &self,
        request: Request<pb::IssueServiceTokenRequest>,
    ) -> Result<Response<pb::IssueServiceTokenResponse>, Status> {
        let r = request.into_inner();
        let token = self
            .identity
            .issue_service_token(&r.client_id, &r.client_secret)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::IssueServiceTokenResponse {
            access_token: token.token,
            access_token_expire_time: Some(timestamp(token.expire_time)),
        }))
    }

    type WatchEventsStream = EventStream<pb::WatchEventsResponse>;

    async fn watch_events(
        &self,
        request: Request<pb::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        let caller = caller(&request)?;
        if !caller.is_privileged() {
            return Err(Status::permission_denied(
                "only operators and services may watch events",
            ));
        }
        let stream = watch_events(
            &self.watcher,
            &request.get_ref().after_cursor,
            events::decode,
            &self.shutdown,
        )?;
        Ok(Response::new(stream))
    }
}

fn signing_key_to_proto(key: &crate::domain::keys::PublicKey) -> pb::SigningKey {
    pb::SigningKey {
        kid: key.kid.clone(),
        algorithm: kc_runtime::token::ALGORITHM.to_owned(),
        public_key: key.public_key.as_bytes().to_vec(),
        create_time: Some(timestamp(key.create_time)),
    }
}
