//! The gRPC face of identity: turns requests into domain values, calls the domain with the
//! caller from the request extensions, and turns results back. No SQL, no rules.

use futures::StreamExt;
use kc_proto::identity::{self as pb, identity_service_server::IdentityService};
use kc_runtime::Caller;
use kc_runtime::auth::TokenVerifier;
use kc_runtime::grpc::{id, invalid, status, watch_events};
use kc_runtime::outbox::{self, Cursor, EventStream, OutboxWatcher, end_after_first_error};
use kc_runtime::token::Claims;
use kc_runtime::{Shutdown, Violation, Violations};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::domain::service::{MAX_BATCH_GET, Registration, SessionTokens, UserDraft};
use crate::domain::values::{DisplayName, Email, Locale, Password};
use crate::domain::{Etag, Identity, User, UserKind, UserState, parse_id};
use crate::events;

/// Revocations per message of the WatchRevocations snapshot.
const REVOCATIONS_PER_MESSAGE: usize = 500;

/// Full method paths that need no token.
pub const PUBLIC_METHODS: [&str; 10] = [
    "/keycontacts.identity.v1.IdentityService/RegisterUser",
    "/keycontacts.identity.v1.IdentityService/VerifyEmail",
    "/keycontacts.identity.v1.IdentityService/RequestPasswordReset",
    "/keycontacts.identity.v1.IdentityService/ResetPassword",
    "/keycontacts.identity.v1.IdentityService/WatchRevocations",
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
    verifier: TokenVerifier,
    shutdown: Shutdown,
}

impl IdentityApi {
    /// The API over `identity`, streaming events from `watcher` until `shutdown`; `verifier`
    /// is the auth layer's (it gives the claims of the token a request came with).
    pub fn new(
        identity: Identity,
        watcher: OutboxWatcher,
        verifier: TokenVerifier,
        shutdown: Shutdown,
    ) -> Self {
        Self {
            identity,
            watcher,
            verifier,
            shutdown,
        }
    }

    /// The caller the auth layer authenticated, refused when its access token was revoked
    /// (rule I4: identity checks its own revocations), with the session of its token.
    async fn caller<T>(&self, request: &Request<T>) -> Result<(Caller, Option<Uuid>), Status> {
        let caller = kc_runtime::auth::caller(request)?;
        if caller.is_service() {
            return Ok((caller, None));
        }
        let claims = self.claims(request).await?;
        if self.identity.is_revoked(&claims).await.map_err(status)? {
            return Err(Status::unauthenticated("access token revoked"));
        }
        Ok((caller, Uuid::parse_str(&claims.sid).ok()))
    }

    /// The claims of the bearer token of a request (verified again: the verifier
    /// remembers the tokens it verified, so this costs a lookup).
    async fn claims<T>(&self, request: &Request<T>) -> Result<Claims, Status> {
        let token = request
            .metadata()
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| {
                value
                    .strip_prefix("Bearer ")
                    .or_else(|| value.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or_else(|| Status::unauthenticated("missing bearer token"))?;
        self.verifier.verify(token).await.map_err(Status::from)
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

/// Parses the fields of CreateUser, reporting every bad one.
fn user_draft(
    email: &str,
    display_name: &str,
    locale: &str,
    kind: UserKind,
) -> Result<UserDraft, Status> {
    let mut violations = Violations::new();
    let email = violations.check(Email::parse("email", email));
    let display_name = violations.check(DisplayName::parse("display_name", display_name));
    let locale = violations.check(Locale::parse_or_default("locale", locale));
    violations.finish().map_err(status)?;
    match (email, display_name, locale) {
        (Some(email), Some(display_name), Some(locale)) => Ok(UserDraft {
            email,
            display_name,
            locale,
            kind,
        }),
        _ => Err(Status::internal("internal error")),
    }
}

/// Parses the fields of RegisterUser, reporting every bad one.
fn registration(r: &pb::RegisterUserRequest) -> Result<Registration, Status> {
    let mut violations = Violations::new();
    let email = violations.check(Email::parse("email", &r.email));
    let display_name = violations.check(DisplayName::parse("display_name", &r.display_name));
    let locale = violations.check(Locale::parse_or_default("locale", &r.locale));
    let password = violations.check(Password::parse("password", &r.password));
    violations.finish().map_err(status)?;
    match (email, display_name, locale, password) {
        (Some(email), Some(display_name), Some(locale), Some(password)) => Ok(Registration {
            email,
            display_name,
            locale,
            password,
        }),
        _ => Err(Status::internal("internal error")),
    }
}

/// A code as presented: required.
fn presented_code(code: &str) -> Result<&str, Status> {
    if code.trim().is_empty() {
        return Err(invalid(Violation::new("code", "the code is required")));
    }
    Ok(code)
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
        let registration = registration(request.get_ref())?;
        self.identity.register(registration).await.map_err(status)?;
        Ok(Response::new(pb::RegisterUserResponse {}))
    }

    async fn verify_email(
        &self,
        request: Request<pb::VerifyEmailRequest>,
    ) -> Result<Response<pb::VerifyEmailResponse>, Status> {
        let r = request.into_inner();
        let email = Email::parse("email", &r.email).map_err(invalid)?;
        let code = presented_code(&r.code)?;
        let user = self
            .identity
            .verify_email(&email, code, &Password::presented(&r.password))
            .await
            .map_err(status)?;
        Ok(Response::new(pb::VerifyEmailResponse {
            user: user_response(&user),
        }))
    }

    async fn request_password_reset(
        &self,
        request: Request<pb::RequestPasswordResetRequest>,
    ) -> Result<Response<pb::RequestPasswordResetResponse>, Status> {
        let email = Email::parse("email", &request.get_ref().email).map_err(invalid)?;
        self.identity
            .request_password_reset(&email)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::RequestPasswordResetResponse {}))
    }

    async fn reset_password(
        &self,
        request: Request<pb::ResetPasswordRequest>,
    ) -> Result<Response<pb::ResetPasswordResponse>, Status> {
        let r = request.into_inner();
        let mut violations = Violations::new();
        let email = violations.check(Email::parse("email", &r.email));
        let new = violations.check(Password::parse("new_password", &r.new_password));
        if r.code.trim().is_empty() {
            violations.add("code", "the code is required");
        }
        violations.finish().map_err(status)?;
        let (Some(email), Some(new)) = (email, new) else {
            return Err(Status::internal("internal error"));
        };
        self.identity
            .reset_password(&email, &r.code, &new)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ResetPasswordResponse {}))
    }

    async fn create_user(
        &self,
        request: Request<pb::CreateUserRequest>,
    ) -> Result<Response<pb::CreateUserResponse>, Status> {
        let (caller, _) = self.caller(&request).await?;
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
        let draft = user_draft(&r.email, &r.display_name, &r.locale, kind)?;
        let user = self
            .identity
            .create_user(&caller, draft)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::CreateUserResponse {
            user: user_response(&user),
        }))
    }

    async fn invite_user(
        &self,
        request: Request<pb::InviteUserRequest>,
    ) -> Result<Response<pb::InviteUserResponse>, Status> {
        let (caller, _) = self.caller(&request).await?;
        let r = request.into_inner();
        let mut violations = Violations::new();
        let email = violations.check(Email::parse("email", &r.email));
        let display_name = if r.display_name.trim().is_empty() {
            None
        } else {
            violations.check(DisplayName::parse("display_name", &r.display_name))
        };
        let locale = if r.locale.trim().is_empty() {
            None
        } else {
            violations.check(Locale::parse("locale", &r.locale))
        };
        violations.finish().map_err(status)?;
        let email = email.ok_or_else(|| Status::internal("internal error"))?;
        let (user, invited) = self
            .identity
            .invite_user(&caller, &email, display_name, locale)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::InviteUserResponse {
            user: user_response(&user),
            invited,
        }))
    }

    async fn change_email(
        &self,
        request: Request<pb::ChangeEmailRequest>,
    ) -> Result<Response<pb::ChangeEmailResponse>, Status> {
        let (caller, _) = self.caller(&request).await?;
        let r = request.into_inner();
        let mut violations = Violations::new();
        let user_id = violations.check(parse_id("user_id", &r.user_id));
        let new_email = violations.check(Email::parse("new_email", &r.new_email));
        violations.finish().map_err(status)?;
        let (Some(user_id), Some(new_email)) = (user_id, new_email) else {
            return Err(Status::internal("internal error"));
        };
        self.identity
            .change_email(
                &caller,
                user_id,
                &new_email,
                &Password::presented(&r.current_password),
            )
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ChangeEmailResponse {}))
    }

    async fn confirm_email_change(
        &self,
        request: Request<pb::ConfirmEmailChangeRequest>,
    ) -> Result<Response<pb::ConfirmEmailChangeResponse>, Status> {
        let (caller, _) = self.caller(&request).await?;
        let r = request.into_inner();
        let user_id = id("user_id", &r.user_id)?;
        let code = presented_code(&r.code)?;
        let user = self
            .identity
            .confirm_email_change(&caller, user_id, code)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ConfirmEmailChangeResponse {
            user: user_response(&user),
        }))
    }

    async fn get_user(
        &self,
        request: Request<pb::GetUserRequest>,
    ) -> Result<Response<pb::GetUserResponse>, Status> {
        let (caller, _) = self.caller(&request).await?;
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
        let (caller, _) = self.caller(&request).await?;
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
        let (caller, _) = self.caller(&request).await?;
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
        let (caller, _) = self.caller(&request).await?;
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
        let etag = Etag::parse("etag", &r.etag).map_err(status)?;
        let user_id = user_id.ok_or_else(|| Status::internal("internal error"))?;
        let user = self
            .identity
            .update_user(&caller, user_id, display_name, locale, etag)
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
        let (caller, session_id) = self.caller(&request).await?;
        let r = request.into_inner();
        let user_id = id("user_id", &r.user_id)?;
        let new = Password::parse("new_password", &r.new_password).map_err(invalid)?;
        self.identity
            .change_password(
                &caller,
                session_id,
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
        let (caller, _) = self.caller(&request).await?;
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
        let (caller, _) = self.caller(&request).await?;
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
        let (caller, _) = self.caller(&request).await?;
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
        let (caller, _) = self.caller(&request).await?;
        if !caller.is_privileged() {
            return Err(Status::permission_denied(
                "only operators and services may watch events",
            ));
        }
        let stream = watch_events(
            &self.watcher,
            &request.get_ref().after_cursor,
            outbox::decode_response::<pb::Event>,
            &self.shutdown,
        )?;
        Ok(Response::new(stream))
    }

    type WatchRevocationsStream = EventStream<pb::WatchRevocationsResponse>;

    async fn watch_revocations(
        &self,
        _request: Request<pb::WatchRevocationsRequest>,
    ) -> Result<Response<Self::WatchRevocationsStream>, Status> {
        let (cursor, revocations) = self.identity.revocations_snapshot().await.map_err(status)?;
        let after: Cursor = cursor
            .parse()
            .map_err(|_| Status::internal("internal error"))?;
        let snapshot = revocations
            .iter()
            .map(events::revocation_to_proto)
            .collect();
        Ok(Response::new(revocation_stream(
            &self.watcher,
            after,
            snapshot,
            &self.shutdown,
        )))
    }
}

/// The WatchRevocations stream: the snapshot, then `live`, then each new revocation as its
/// TokensRevoked event commits.
fn revocation_stream(
    watcher: &OutboxWatcher,
    after: Cursor,
    snapshot: Vec<pb::TokenRevocation>,
    shutdown: &Shutdown,
) -> EventStream<pb::WatchRevocationsResponse> {
    let mut first: Vec<Result<pb::WatchRevocationsResponse, Status>> = snapshot
        .chunks(REVOCATIONS_PER_MESSAGE)
        .map(|chunk| {
            Ok(pb::WatchRevocationsResponse {
                revocations: chunk.to_vec(),
                live: false,
            })
        })
        .collect();
    first.push(Ok(pb::WatchRevocationsResponse {
        revocations: Vec::new(),
        live: true,
    }));
    let schema = watcher.schema().to_owned();
    let live = watcher.watch(after).filter_map(move |item| {
        let message = match item {
            Ok(stored) if stored.event_type == events::TOKENS_REVOKED => {
                match outbox::decode_response::<pb::Event>(stored) {
                    Ok(pb::WatchEventsResponse {
                        event:
                            Some(pb::Event {
                                payload:
                                    Some(pb::event::Payload::TokensRevoked(pb::TokensRevoked {
                                        revocation: Some(revocation),
                                    })),
                                ..
                            }),
                    }) => Some(Ok(pb::WatchRevocationsResponse {
                        revocations: vec![revocation],
                        live: true,
                    })),
                    Ok(_) => None,
                    Err(status) => Some(Err(status)),
                }
            }
            Ok(_) => None,
            Err(error) => {
                tracing::warn!(schema = %schema, error = %error, "revocation stream failed");
                Some(Err(Status::unavailable("event store unavailable")))
            }
        };
        futures::future::ready(message)
    });
    let shutdown = shutdown.clone();
    Box::pin(
        futures::stream::iter(first)
            .chain(end_after_first_error(live))
            .take_until(async move { shutdown.wait().await }),
    )
}

fn signing_key_to_proto(key: &crate::domain::keys::PublicKey) -> pb::SigningKey {
    pb::SigningKey {
        kid: key.kid.clone(),
        algorithm: kc_runtime::token::ALGORITHM.to_owned(),
        public_key: key.public_key.as_bytes().to_vec(),
        create_time: Some(timestamp(key.create_time)),
    }
}
