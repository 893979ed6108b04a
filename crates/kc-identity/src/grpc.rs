//! The gRPC face of identity: authorizes the caller, parses the request into a domain
//! command (`convert`), calls the domain and turns the result back. No SQL, no rules.

use std::future::Future;

use futures::StreamExt;
use kc_proto::identity::{self as pb, identity_service_server::IdentityService};
use kc_runtime::Shutdown;
use kc_runtime::auth::TokenVerifier;
use kc_runtime::grpc::event_stream;
use kc_runtime::outbox::{Cursor, EventStream, OutboxWatcher, end_after_first_error};
use kc_runtime::token::Claims;
use kc_runtime::{ApiError, Caller};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::convert;
use crate::domain::{Identity, Result as DomainResult};
use crate::events;

/// Revocations per message of the WatchRevocations snapshot.
const REVOCATIONS_PER_MESSAGE: usize = 500;

/// Full method paths that need no token.
pub(crate) const PUBLIC_METHODS: [&str; 10] = [
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

/// The answers of a batch call, one per item in order: the items that parsed go to `apply`
/// together (which answers each, in order), the others are refused with their own error.
async fn in_order<T, U, F, Fut>(
    parsed: Vec<Result<T, ApiError>>,
    apply: F,
) -> Result<Vec<Result<U, Status>>, Status>
where
    F: FnOnce(Vec<T>) -> Fut,
    Fut: Future<Output = DomainResult<Vec<DomainResult<U>>>>,
{
    let mut refusals = Vec::with_capacity(parsed.len());
    let mut items = Vec::with_capacity(parsed.len());
    for item in parsed {
        match item {
            Ok(item) => {
                refusals.push(None);
                items.push(item);
            }
            Err(error) => refusals.push(Some(Status::from(error))),
        }
    }
    let mut answers = apply(items).await?.into_iter();
    Ok(refusals
        .into_iter()
        .map(|refusal| match refusal {
            Some(status) => Err(status),
            None => answers.next().map_or_else(
                || Err(Status::internal("an item of the batch went unanswered")),
                |answer| answer.map_err(Status::from),
            ),
        })
        .collect())
}

/// The `IdentityService` implementation.
#[derive(Clone, Debug)]
pub(crate) struct IdentityApi {
    identity: Identity,
    watcher: OutboxWatcher,
    verifier: TokenVerifier,
    shutdown: Shutdown,
}

impl IdentityApi {
    /// The API over `identity`, streaming events from `watcher` until `shutdown`; `verifier`
    /// is the auth layer's (it gives the claims of the token a request came with).
    pub(crate) fn new(
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
        if self.identity.is_revoked(&claims).await? {
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

#[tonic::async_trait]
impl IdentityService for IdentityApi {
    async fn register_user(
        &self,
        request: Request<pb::RegisterUserRequest>,
    ) -> Result<Response<pb::RegisterUserResponse>, Status> {
        self.identity
            .register(request.into_inner().try_into()?)
            .await?;
        Ok(Response::new(pb::RegisterUserResponse {}))
    }

    async fn verify_email(
        &self,
        request: Request<pb::VerifyEmailRequest>,
    ) -> Result<Response<pb::VerifyEmailResponse>, Status> {
        let proof = request.into_inner().try_into()?;
        let user = self.identity.verify_email(proof).await?;
        Ok(Response::new(pb::VerifyEmailResponse {
            user: Some((&user.value).into()),
            revision: user.revision_text(),
        }))
    }

    async fn request_password_reset(
        &self,
        request: Request<pb::RequestPasswordResetRequest>,
    ) -> Result<Response<pb::RequestPasswordResetResponse>, Status> {
        let reset = request.into_inner().try_into()?;
        self.identity.request_password_reset(reset).await?;
        Ok(Response::new(pb::RequestPasswordResetResponse {}))
    }

    async fn reset_password(
        &self,
        request: Request<pb::ResetPasswordRequest>,
    ) -> Result<Response<pb::ResetPasswordResponse>, Status> {
        let reset = self
            .identity
            .reset_password(request.into_inner().try_into()?)
            .await?;
        Ok(Response::new(pb::ResetPasswordResponse {
            revision: reset.revision_text(),
        }))
    }

    async fn create_user(
        &self,
        request: Request<pb::CreateUserRequest>,
    ) -> Result<Response<pb::CreateUserResponse>, Status> {
        let (caller, _) = self.caller(&request).await?;
        let draft = request.into_inner().try_into()?;
        let user = self.identity.create_user(&caller, draft).await?;
        Ok(Response::new(pb::CreateUserResponse {
            user: Some((&user).into()),
        }))
    }

    async fn invite_user(
        &self,
        request: Request<pb::InviteUserRequest>,
    ) -> Result<Response<pb::InviteUserResponse>, Status> {
        let (caller, _) = self.caller(&request).await?;
        let invitation = request.into_inner().try_into()?;
        let (user, invited) = self.identity.invite_user(&caller, invitation).await?;
        Ok(Response::new(pb::InviteUserResponse {
            user: Some((&user).into()),
            invited,
        }))
    }

    async fn batch_invite_users(
        &self,
        request: Request<pb::BatchInviteUsersRequest>,
    ) -> Result<Response<pb::BatchInviteUsersResponse>, Status> {
        let (caller, _) = self.caller(&request).await?;
        let parsed = convert::invitations(request.into_inner())?;
        let results = in_order(parsed, |invitations| {
            self.identity.invite_users(&caller, invitations)
        })
        .await?;
        Ok(Response::new(pb::BatchInviteUsersResponse {
            results: results
                .into_iter()
                .map(convert::invitation_result)
                .collect(),
        }))
    }

    async fn batch_lookup_users(
        &self,
        request: Request<pb::BatchLookupUsersRequest>,
    ) -> Result<Response<pb::BatchLookupUsersResponse>, Status> {
        let (caller, _) = self.caller(&request).await?;
        let parsed = convert::lookups(request.into_inner())?;
        let results = in_order(parsed, |lookups| async {
            let found = self.identity.lookup_users(&caller, lookups).await?;
            Ok(found.into_iter().map(Ok).collect())
        })
        .await?;
        Ok(Response::new(pb::BatchLookupUsersResponse {
            results: results.into_iter().map(convert::lookup_result).collect(),
        }))
    }

    async fn change_email(
        &self,
        request: Request<pb::ChangeEmailRequest>,
    ) -> Result<Response<pb::ChangeEmailResponse>, Status> {
        let (caller, _) = self.caller(&request).await?;
        let change = request.into_inner().try_into()?;
        self.identity.change_email(&caller, change).await?;
        Ok(Response::new(pb::ChangeEmailResponse {}))
    }

    async fn confirm_email_change(
        &self,
        request: Request<pb::ConfirmEmailChangeRequest>,
    ) -> Result<Response<pb::ConfirmEmailChangeResponse>, Status> {
        let (caller, _) = self.caller(&request).await?;
        let proof = request.into_inner().try_into()?;
        let user = self.identity.confirm_email_change(&caller, proof).await?;
        Ok(Response::new(pb::ConfirmEmailChangeResponse {
            user: Some((&user.value).into()),
            revision: user.revision_text(),
        }))
    }

    async fn get_user(
        &self,
        request: Request<pb::GetUserRequest>,
    ) -> Result<Response<pb::GetUserResponse>, Status> {
        let (caller, _) = self.caller(&request).await?;
        let user = request.into_inner().try_into()?;
        let user = self.identity.get_user(&caller, user).await?;
        Ok(Response::new(pb::GetUserResponse {
            user: Some((&user).into()),
        }))
    }

    async fn batch_get_users(
        &self,
        request: Request<pb::BatchGetUsersRequest>,
    ) -> Result<Response<pb::BatchGetUsersResponse>, Status> {
        let (caller, _) = self.caller(&request).await?;
        let batch = request.into_inner().try_into()?;
        let users = self.identity.batch_get_users(&caller, batch).await?;
        Ok(Response::new(pb::BatchGetUsersResponse {
            users: users.iter().map(pb::User::from).collect(),
        }))
    }

    async fn lookup_user(
        &self,
        request: Request<pb::LookupUserRequest>,
    ) -> Result<Response<pb::LookupUserResponse>, Status> {
        let (caller, _) = self.caller(&request).await?;
        let lookup = request.into_inner().try_into()?;
        let user = self.identity.lookup_user(&caller, lookup).await?;
        Ok(Response::new(pb::LookupUserResponse {
            user: Some((&user).into()),
        }))
    }

    async fn update_user(
        &self,
        request: Request<pb::UpdateUserRequest>,
    ) -> Result<Response<pb::UpdateUserResponse>, Status> {
        let (caller, _) = self.caller(&request).await?;
        let update = request.into_inner().try_into()?;
        let user = self.identity.update_user(&caller, update).await?;
        Ok(Response::new(pb::UpdateUserResponse {
            user: Some((&user).into()),
        }))
    }

    async fn change_password(
        &self,
        request: Request<pb::ChangePasswordRequest>,
    ) -> Result<Response<pb::ChangePasswordResponse>, Status> {
        let (caller, session_id) = self.caller(&request).await?;
        let change = request.into_inner().try_into()?;
        self.identity
            .change_password(&caller, session_id, change)
            .await?;
        Ok(Response::new(pb::ChangePasswordResponse {}))
    }

    async fn disable_user(
        &self,
        request: Request<pb::DisableUserRequest>,
    ) -> Result<Response<pb::DisableUserResponse>, Status> {
        let (caller, _) = self.caller(&request).await?;
        let user = request.into_inner().try_into()?;
        let user = self.identity.set_enabled(&caller, user, false).await?;
        Ok(Response::new(pb::DisableUserResponse {
            user: Some((&user.value).into()),
            revision: user.revision_text(),
        }))
    }

    async fn enable_user(
        &self,
        request: Request<pb::EnableUserRequest>,
    ) -> Result<Response<pb::EnableUserResponse>, Status> {
        let (caller, _) = self.caller(&request).await?;
        let user = request.into_inner().try_into()?;
        let user = self.identity.set_enabled(&caller, user, true).await?;
        Ok(Response::new(pb::EnableUserResponse {
            user: Some((&user.value).into()),
            revision: user.revision_text(),
        }))
    }

    async fn authenticate(
        &self,
        request: Request<pb::AuthenticateRequest>,
    ) -> Result<Response<pb::AuthenticateResponse>, Status> {
        let tokens = self
            .identity
            .authenticate(request.into_inner().into())
            .await?;
        Ok(Response::new(tokens.into()))
    }

    async fn refresh_session(
        &self,
        request: Request<pb::RefreshSessionRequest>,
    ) -> Result<Response<pb::RefreshSessionResponse>, Status> {
        let tokens = self
            .identity
            .refresh(request.into_inner().try_into()?)
            .await?;
        Ok(Response::new(tokens.into()))
    }

    async fn revoke_session(
        &self,
        request: Request<pb::RevokeSessionRequest>,
    ) -> Result<Response<pb::RevokeSessionResponse>, Status> {
        self.identity
            .revoke(request.into_inner().try_into()?)
            .await?;
        Ok(Response::new(pb::RevokeSessionResponse {}))
    }

    async fn get_signing_keys(
        &self,
        _request: Request<pb::GetSigningKeysRequest>,
    ) -> Result<Response<pb::GetSigningKeysResponse>, Status> {
        let keys = self.identity.signing_keys().await?;
        Ok(Response::new(pb::GetSigningKeysResponse {
            keys: keys.iter().map(pb::SigningKey::from).collect(),
        }))
    }

    async fn rotate_signing_key(
        &self,
        request: Request<pb::RotateSigningKeyRequest>,
    ) -> Result<Response<pb::RotateSigningKeyResponse>, Status> {
        let (caller, _) = self.caller(&request).await?;
        let key = self.identity.rotate_signing_key(&caller).await?;
        Ok(Response::new(pb::RotateSigningKeyResponse {
            key: Some((&key).into()),
        }))
    }

    async fn issue_service_token(
        &self,
        request: Request<pb::IssueServiceTokenRequest>,
    ) -> Result<Response<pb::IssueServiceTokenResponse>, Status> {
        let credentials = request.into_inner().into();
        let token = self.identity.issue_service_token(credentials).await?;
        Ok(Response::new(token.into()))
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
        event_stream::<pb::Event>(
            &self.watcher,
            &request.get_ref().after_cursor,
            &self.shutdown,
        )
    }

    type WatchRevocationsStream = EventStream<pb::WatchRevocationsResponse>;

    async fn watch_revocations(
        &self,
        _request: Request<pb::WatchRevocationsRequest>,
    ) -> Result<Response<Self::WatchRevocationsStream>, Status> {
        let (cursor, revocations) = self.identity.revocations_snapshot().await?;
        let after: Cursor = cursor
            .parse()
            .map_err(|_| Status::internal("internal error"))?;
        let snapshot = revocations.iter().map(pb::TokenRevocation::from).collect();
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
            Ok(stored) => events::revocation_in(stored).map(|revocation| {
                revocation.map(|revocation| pb::WatchRevocationsResponse {
                    revocations: vec![revocation],
                    live: true,
                })
            }),
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
