//! Calls to the internal services: who they see as the caller, deadlines, trace context,
//! one retry of reads, and client-side balancing over replicas.
//!
//! - **Credentials.** For a customer, the gateway's own service token and
//!   `x-kc-on-behalf-of: <customer id>`, so the services apply their rules to, and audit, the
//!   real person. An operator's (or a service account's) own bearer token is forwarded as is:
//!   the internal services give operators their operator authority (e.g. access management's
//!   T4/A3 checks), which they would not give to a person acting through a service. The
//!   gateway's own questions (authorization checks, reading a request to find its site) use
//!   its token alone. The public identity RPCs carry no token.
//! - **Deadlines.** Each call gets what is left of the gateway call's [`Deadline`], sent as
//!   `grpc-timeout` and enforced locally; running out is `DeadlineExceeded` when the caller
//!   set the deadline, else `Unavailable`.
//! - **Retries.** A read ([`Op::Read`], [`Op::CachedRead`], [`Op::CachedReadOfRequest`]) is
//!   tried once more when the service answers `Unavailable` (the next try goes to the next
//!   replica); writes are never retried.
//! - **Read cache.** The answers of cached reads are kept for a short time ([`ReadCache`]);
//!   every [`Op::Write`] makes it forget the answers that mention what the write names.
//! - **Balancing.** Each service's URL names one or more replicas: its host is resolved
//!   again every few seconds and calls go round-robin over one lazily connected channel per
//!   address ([`ReplicaChannels`]); a replica that is down fails fast (connect timeout), and
//!   one a call could not reach is passed over by the next calls for a few seconds.
//! - **Trace context.** Every call carries the W3C `traceparent` of the gateway's span.

use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;

use kc_proto::access::access_management_service_client::AccessManagementServiceClient;
use kc_proto::contacts::contact_registry_service_client::ContactRegistryServiceClient;
use kc_proto::identity::identity_service_client::IdentityServiceClient;
use kc_proto::notification::notification_service_client::NotificationServiceClient;
use kc_proto::{access, contacts, identity, notification};
use kc_runtime::Caller;
use kc_runtime::client::{Picked, ReplicaChannels, ServiceToken};
use kc_runtime::telemetry::inject_trace_context;
use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};
use uuid::Uuid;

use crate::cache::{Asker, Question, ReadCache, Refresh, worth_storing};
use crate::deadline::Deadline;
pub(crate) use crate::downstream::Svc;
use crate::error::{GatewayError, is_transport_failure};
use crate::mentions::mentioned_ids;

/// The read cache's name of access `BatchCheck`'s answers to one call's admission (the
/// methods of the [`Clients`] table are named `client/method` in the same way).
const BATCH_CHECK: &str = "AccessManagementServiceClient/batch_check";

/// Whether a call may be repeated safely, and what it does to the read cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// Reads nothing but state: retried once on `Unavailable`.
    Read,
    /// A read whose answer may come from the read cache (see [`ReadCache`] for how fresh),
    /// kept until a write mentions an id its request or its answer mentions (a user's
    /// contacts or rights over sites the request does not name).
    CachedRead,
    /// A cached read whose answer is only about what its request names (a site's contacts,
    /// users by id, a check of a user on a site): kept until a write mentions an id of the
    /// request, so the answer, often a long list, is not scanned for ids.
    CachedReadOfRequest,
    /// Changes state: never retried; makes the read cache forget what it touches.
    Write,
    /// Changes nothing but sessions (sign in, refresh, sign out): never retried; leaves the
    /// read cache alone, since no cached read depends on sessions.
    SessionWrite,
}

impl Op {
    fn is_read(self) -> bool {
        matches!(self, Op::Read | Op::CachedRead | Op::CachedReadOfRequest)
    }
}

/// Who the internal services see as the caller of a call.
#[derive(Clone, Debug)]
enum Credentials {
    /// No token (identity's public session RPCs).
    Anonymous,
    /// The gateway's service token alone: the gateway's own questions.
    Gateway,
    /// The gateway's service token, acting for this customer.
    OnBehalfOf(Uuid),
    /// The caller's own `authorization` value (operators and service accounts).
    Forward(AsciiMetadataValue),
}

/// Whether a gateway RPC only reads or changes state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallKind {
    /// It only reads: its internal reads may be answered from the read cache.
    Read,
    /// It changes state: everything it reads, its permission check first, is asked fresh,
    /// so a right revoked elsewhere never lets a change through.
    Write,
}

/// The context of one gateway call: its deadline, its caller, how internal calls carry the
/// caller, and whether they may be answered from the read cache.
#[derive(Clone, Debug)]
pub(crate) struct Ctx {
    /// When the internal calls must be done.
    pub deadline: Deadline,
    /// Shared by the context's copies (each internal call of a call takes one).
    caller: Option<Arc<Caller>>,
    credentials: Credentials,
    /// The `authorization` value the caller sent, for the calls made as the caller itself
    /// ([`Ctx::as_self`]).
    own_authorization: Option<AsciiMetadataValue>,
    kind: CallKind,
}

impl Ctx {
    /// The context of a public call: no caller, no token.
    pub(crate) fn public(deadline: Deadline) -> Self {
        Self {
            deadline,
            caller: None,
            credentials: Credentials::Anonymous,
            own_authorization: None,
            kind: CallKind::Write,
        }
    }

    /// The context of an authenticated call of `kind` from `caller`, whose request carried
    /// `metadata` (for the `authorization` value forwarded for operators and services).
    pub(crate) fn authenticated(
        deadline: Deadline,
        caller: Arc<Caller>,
        metadata: &MetadataMap,
        kind: CallKind,
    ) -> Self {
        let own_authorization = metadata.get("authorization").cloned();
        let credentials = if caller.is_privileged() {
            match &own_authorization {
                Some(value) => Credentials::Forward(value.clone()),
                None => Credentials::Gateway,
            }
        } else {
            Credentials::OnBehalfOf(caller.subject)
        };
        Self {
            deadline,
            caller: Some(caller),
            credentials,
            own_authorization,
            kind,
        }
    }

    /// The same call, asking with the gateway's own token alone (authorization checks, and
    /// the privileged identity calls that bind people by e-mail).
    pub(crate) fn as_gateway(&self) -> Self {
        Self {
            deadline: self.deadline,
            caller: self.caller.clone(),
            credentials: Credentials::Gateway,
            own_authorization: self.own_authorization.clone(),
            kind: self.kind,
        }
    }

    /// The same call, carrying the caller's own access token: identity then sees the person
    /// itself (not a service acting for it), as its self-service RPCs require.
    pub(crate) fn as_self(&self) -> Result<Self, GatewayError> {
        let authorization = self.own_authorization.clone().ok_or_else(|| {
            GatewayError::Internal(anyhow::anyhow!("no access token on this call"))
        })?;
        Ok(Self {
            deadline: self.deadline,
            caller: self.caller.clone(),
            credentials: Credentials::Forward(authorization),
            own_authorization: self.own_authorization.clone(),
            kind: self.kind,
        })
    }

    /// The authenticated caller; `Internal` on a public call (a bug if reached).
    pub(crate) fn caller(&self) -> Result<&Caller, GatewayError> {
        self.caller
            .as_deref()
            .ok_or_else(|| GatewayError::Internal(anyhow::anyhow!("no caller on this call")))
    }

    /// Who asks, for the read cache: `None` when nothing of this call may come from the
    /// cache: a gateway RPC that changes state, or a call carrying an operator's or a
    /// service's own token, or no token.
    fn asker(&self) -> Option<Asker> {
        if self.kind == CallKind::Write || self.caller.as_deref().is_some_and(Caller::is_privileged)
        {
            return None;
        }
        match self.credentials {
            Credentials::Gateway => Some(Asker::Gateway),
            Credentials::OnBehalfOf(user) => Some(Asker::Customer(user)),
            Credentials::Anonymous | Credentials::Forward(_) => None,
        }
    }

    fn uses_gateway_token(&self) -> bool {
        matches!(
            self.credentials,
            Credentials::Gateway | Credentials::OnBehalfOf(_)
        )
    }
}

/// The internal services, the gateway's service token and the read cache.
#[derive(Clone, Debug)]
pub(crate) struct Clients {
    identity: ReplicaChannels,
    contacts: ReplicaChannels,
    access: ReplicaChannels,
    notification: ReplicaChannels,
    token: ServiceToken,
    cache: Arc<ReadCache>,
}

/// Held across a write: makes the read cache forget what the write's request mentions when
/// made, and when dropped what its request and answer mention once it was answered, or
/// everything when they mention nothing or the write ended otherwise (failed, timed out, or
/// dropped with its caller while it may already have been applied).
struct ForgetOnDrop<'a> {
    cache: &'a ReadCache,
    /// The ids the request mentions, then those of the answer too; `None` until answered.
    answered: Option<Vec<Uuid>>,
    request: Vec<Uuid>,
}

impl<'a> ForgetOnDrop<'a> {
    fn new(cache: &'a ReadCache, request: &impl prost::Message) -> Self {
        let request = if cache.is_enabled() {
            mentioned_ids(&request.encode_to_vec())
        } else {
            Vec::new()
        };
        // A request that names nothing forgets nothing yet: the write's end does.
        if !request.is_empty() {
            cache.forget(&request);
        }
        Self {
            cache,
            answered: None,
            request,
        }
    }

    /// The write was answered with `answer`.
    fn answered(&mut self, answer: &impl prost::Message) {
        if !self.cache.is_enabled() {
            return;
        }
        let mut ids = mentioned_ids(&answer.encode_to_vec());
        ids.extend_from_slice(&self.request);
        self.answered = Some(ids);
    }
}

impl Drop for ForgetOnDrop<'_> {
    fn drop(&mut self) {
        // An empty list forgets everything.
        self.cache
            .forget(self.answered.as_deref().unwrap_or_default());
    }
}

/// A cached read sent again, in the background, for [`ReadCache`]'s refresh of a hot
/// answer: owns what it needs.
pub(crate) type Refetch<Resp> = BoxFuture<'static, Result<Resp, GatewayError>>;

/// The ids an answer of `op` mentions besides its question's, for the read cache: scanned
/// from a [`Op::CachedRead`]'s answer; none for a [`Op::CachedReadOfRequest`].
fn mentions_of(op: Op, answer: &impl prost::Message) -> Vec<Uuid> {
    if op == Op::CachedRead {
        mentioned_ids(&answer.encode_to_vec())
    } else {
        Vec::new()
    }
}

/// Sends the read `fetch` of `question` in a task of its own and keeps its answer as the
/// refresh `refresh` of its entry ([`Refresh::keep`]); a failure leaves the entry to
/// expire.
fn refresh_in_background<Resp>(refresh: Refresh, op: Op, question: Question, fetch: Refetch<Resp>)
where
    Resp: prost::Message + Send + Sync + 'static,
{
    tokio::spawn(async move {
        match fetch.await {
            Ok(answer) => {
                let bytes = answer.encoded_len();
                let mentions = mentions_of(op, &answer);
                refresh.keep(question, Arc::new(answer), bytes, mentions);
            }
            Err(error) => {
                tracing::debug!(%error, "background refresh of a cached read failed");
            }
        }
    });
}

/// How one attempt of a call failed.
enum Failure {
    Status(Status),
    Timeout,
}

impl Clients {
    /// Clients over these channels, authenticating with `token`, keeping the answers of
    /// cached reads in `cache`.
    pub(crate) fn new(
        identity: ReplicaChannels,
        contacts: ReplicaChannels,
        access: ReplicaChannels,
        notification: ReplicaChannels,
        token: ServiceToken,
        cache: ReadCache,
    ) -> Self {
        Self {
            identity,
            contacts,
            access,
            notification,
            token,
            cache: Arc::new(cache),
        }
    }

    fn channel(&self, service: Svc) -> Picked {
        match service {
            Svc::Identity => self.identity.pick(),
            Svc::Contacts => self.contacts.pick(),
            Svc::Access => self.access.pick(),
            Svc::Notification => self.notification.pick(),
        }
    }

    /// A request carrying `ctx`'s credentials and the current trace context.
    async fn request<T>(&self, ctx: &Ctx, message: T) -> Result<Request<T>, Status> {
        match &ctx.credentials {
            Credentials::Gateway => self.token.request(message, None).await,
            Credentials::OnBehalfOf(user) => self.token.request(message, Some(*user)).await,
            Credentials::Anonymous => {
                let mut request = Request::new(message);
                inject_trace_context(request.metadata_mut());
                Ok(request)
            }
            Credentials::Forward(authorization) => {
                let mut request = Request::new(message);
                request
                    .metadata_mut()
                    .insert("authorization", authorization.clone());
                inject_trace_context(request.metadata_mut());
                Ok(request)
            }
        }
    }

    /// One attempt: builds the request and sends it with what is left of the deadline.
    async fn attempt<Req, Resp, F, Fut>(
        &self,
        ctx: &Ctx,
        service: Svc,
        message: Req,
        send: &F,
    ) -> Result<Resp, Failure>
    where
        F: Fn(Channel, Request<Req>) -> Fut,
        Fut: Future<Output = Result<Response<Resp>, Status>>,
    {
        let Some(remaining) = ctx.deadline.remaining() else {
            return Err(Failure::Timeout);
        };
        let picked = self.channel(service);
        let call = async {
            let mut request = self.request(ctx, message).await?;
            request.set_timeout(remaining);
            send(picked.channel.clone(), request).await
        };
        match tokio::time::timeout(remaining, call).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => {
                if is_transport_failure(&status) {
                    // The replica was not reached (or dropped the connection): the next
                    // calls, and the retry of a read, go to the other replicas.
                    picked.unreachable();
                }
                Err(Failure::Status(status))
            }
            Err(_) => Err(Failure::Timeout),
        }
    }

    /// Calls `method` of `service` with `message` through `send`: from the read cache for a
    /// cached read it holds, else sent, retrying a read once on `Unavailable`.
    pub(crate) async fn call<Req, Resp, F, Fut>(
        &self,
        ctx: &Ctx,
        service: Svc,
        op: Op,
        method: &'static str,
        message: Req,
        send: F,
    ) -> Result<Arc<Resp>, GatewayError>
    where
        Req: Clone + prost::Message + 'static,
        Resp: prost::Message + Send + Sync + 'static,
        F: Fn(Channel, Request<Req>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<Response<Resp>, Status>> + Send,
    {
        let again = |message: Req| -> Refetch<Resp> {
            let clients = self.clone();
            let ctx = self.refresh_context(ctx);
            let send = send.clone();
            Box::pin(async move { clients.send(&ctx, service, op, message, &send).await })
        };
        self.through_cache(
            ctx,
            op,
            method,
            message,
            |message| self.send(ctx, service, op, message, &send),
            again,
        )
        .await
    }

    /// The context of a read of `ctx` sent again in the background ([`Refresh`]), after the
    /// call may have ended: the same caller and credentials, with a deadline of its own.
    pub(crate) fn refresh_context(&self, ctx: &Ctx) -> Ctx {
        Ctx {
            deadline: Deadline {
                at: std::time::Instant::now() + self.cache.refresh_deadline(),
                from_caller: false,
            },
            ..ctx.clone()
        }
    }

    /// access `BatchCheck` of one call's admission: from the read cache (a cached read of
    /// what its request names), else sent by `send` (the gateway coalesces the checks of
    /// concurrent calls, [`crate::checks`]); `again` sends it in the background when a hot
    /// answer is read again before it expires. Shared with the cache: an admission only
    /// reads the answers.
    pub(crate) async fn batch_check_sent_by<S, SFut, A>(
        &self,
        ctx: &Ctx,
        message: access::BatchCheckRequest,
        send: S,
        again: A,
    ) -> Result<Arc<access::BatchCheckResponse>, GatewayError>
    where
        S: FnOnce(access::BatchCheckRequest) -> SFut,
        SFut: Future<Output = Result<access::BatchCheckResponse, GatewayError>>,
        A: FnOnce(access::BatchCheckRequest) -> Refetch<access::BatchCheckResponse>,
    {
        self.through_cache(
            ctx,
            Op::CachedReadOfRequest,
            BATCH_CHECK,
            message,
            send,
            again,
        )
        .await
    }

    /// What [`Clients::call`] does around sending `message` (by `send`): answers a cached
    /// read from the read cache, keeps its answer, and makes the cache forget what a write
    /// touches. The answer is shared with the cache, not copied. A hit late in its entry's
    /// life also sends the read again in the background (by `again`) and keeps its answer.
    async fn through_cache<Req, Resp, S, SFut, A>(
        &self,
        ctx: &Ctx,
        op: Op,
        method: &'static str,
        message: Req,
        send: S,
        again: A,
    ) -> Result<Arc<Resp>, GatewayError>
    where
        Req: prost::Message,
        Resp: prost::Message + Send + Sync + 'static,
        S: FnOnce(Req) -> SFut,
        SFut: Future<Output = Result<Resp, GatewayError>>,
        A: FnOnce(Req) -> Refetch<Resp>,
    {
        let question = match (op, ctx.asker()) {
            (Op::CachedRead | Op::CachedReadOfRequest, Some(asker)) if self.cache.is_enabled() => {
                Some(Question::new(method, asker, message.encode_to_vec()))
            }
            _ => None,
        };
        if let Some(question) = &question
            && let Some(hit) = self.cache.get::<Resp>(question)
        {
            if let Some(refresh) = hit.refresh {
                refresh_in_background(refresh, op, question.clone(), again(message));
            }
            return Ok(hit.answer);
        }
        if op == Op::Write {
            // Forgets what the write touches now and when it ends, even if this future is
            // dropped (the caller went away) while the write may already have been applied.
            let mut forget = ForgetOnDrop::new(&self.cache, &message);
            let result = send(message).await;
            if let Ok(answer) = &result {
                forget.answered(answer);
            }
            return result.map(Arc::new);
        }
        let Some(question) = question else {
            return send(message).await.map(Arc::new);
        };
        let generation = self.cache.generation();
        let result = send(message).await.map(Arc::new);
        if let Ok(answer) = &result
            && worth_storing(answer.as_ref())
        {
            self.cache.store(
                question,
                Arc::clone(answer),
                answer.encoded_len(),
                mentions_of(op, answer.as_ref()),
                generation,
            );
        }
        result
    }

    /// Sends `message`, retrying a read once on `Unavailable`.
    async fn send<Req, Resp, F, Fut>(
        &self,
        ctx: &Ctx,
        service: Svc,
        op: Op,
        message: Req,
        send: &F,
    ) -> Result<Resp, GatewayError>
    where
        Req: Clone,
        F: Fn(Channel, Request<Req>) -> Fut,
        Fut: Future<Output = Result<Response<Resp>, Status>>,
    {
        if op.is_read() {
            match self.attempt(ctx, service, message.clone(), send).await {
                Err(Failure::Status(status)) if status.code() == Code::Unavailable => {
                    tracing::debug!(
                        service = service.name(),
                        "internal service unavailable; retrying the read once"
                    );
                }
                other => return other.map_err(|failure| self.error(ctx, service, failure)),
            }
        }
        self.attempt(ctx, service, message, send)
            .await
            .map_err(|failure| self.error(ctx, service, failure))
    }

    /// The error of one item of a batch call of `ctx` to `service` that the service refused
    /// with `status` (the batch itself answered): as if the item had been sent alone.
    pub(crate) fn refused(&self, ctx: &Ctx, service: Svc, status: Status) -> GatewayError {
        self.error(ctx, service, Failure::Status(status))
    }

    fn error(&self, ctx: &Ctx, service: Svc, failure: Failure) -> GatewayError {
        match failure {
            Failure::Status(status) => GatewayError::Downstream {
                service,
                status,
                gateway_credentials: ctx.uses_gateway_token(),
            },
            Failure::Timeout => GatewayError::Timeout {
                service,
                caller_deadline: ctx.deadline.from_caller,
            },
        }
    }
}

impl Clients {
    /// access `WatchPermissionChanges`: the stream is opened within what is left of the
    /// call's deadline, then followed without one, for as long as the caller keeps it (no
    /// `grpc-timeout` is sent). Never retried: the caller resumes from its last cursor.
    pub(crate) async fn watch_permission_changes(
        &self,
        ctx: &Ctx,
        message: access::WatchPermissionChangesRequest,
    ) -> Result<tonic::Streaming<access::WatchPermissionChangesResponse>, GatewayError> {
        let service = Svc::Access;
        let Some(remaining) = ctx.deadline.remaining() else {
            return Err(self.error(ctx, service, Failure::Timeout));
        };
        let picked = self.channel(service);
        let open = async {
            let request = self.request(ctx, message).await?;
            AccessManagementServiceClient::new(picked.channel.clone())
                .watch_permission_changes(request)
                .await
        };
        match tokio::time::timeout(remaining, open).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => {
                if is_transport_failure(&status) {
                    picked.unreachable();
                }
                Err(self.error(ctx, service, Failure::Status(status)))
            }
            Err(_) => Err(self.error(ctx, service, Failure::Timeout)),
        }
    }
}

/// One method of [`Clients`] per internal RPC the gateway calls.
macro_rules! rpcs {
    (@call $clients:ident, $ctx:ident, $message:ident, $svc:ident $op:ident $client:ident::$method:ident) => {{
        let method = concat!(stringify!($client), "/", stringify!($method));
        $clients
            .call($ctx, Svc::$svc, Op::$op, method, $message, |channel, request| async move {
                $client::new(channel).$method(request).await
            })
            .await
    }};
    ($(
        $(#[$doc:meta])*
        $name:ident $(+ $shared:ident)?: $svc:ident $op:ident $client:ident::$method:ident($req:ty) -> $resp:ty;
    )*) => {
        impl Clients {
            $(
                $(#[$doc])*
                pub(crate) async fn $name(&self, ctx: &Ctx, message: $req) -> Result<$resp, GatewayError> {
                    rpcs!(@call self, ctx, message, $svc $op $client::$method).map(Arc::unwrap_or_clone)
                }

                $(
                    #[doc = concat!("Like [`Clients::", stringify!($name), "`], the answer shared with the read cache rather than copied out of it (for large answers read by reference).")]
                    pub(crate) async fn $shared(&self, ctx: &Ctx, message: $req) -> Result<Arc<$resp>, GatewayError> {
                        rpcs!(@call self, ctx, message, $svc $op $client::$method)
                    }
                )?
            )*
        }

        /// Every internal RPC the gateway calls: the client, the method (snake case) and
        /// what it does to the read cache (for the test that every write names what it
        /// changes).
        #[cfg(test)]
        const INTERNAL_RPCS: &[(&str, &str, Op)] = &[
            $((stringify!($client), stringify!($method), Op::$op),)*
        ];
    };
}

rpcs! {
    /// identity `RegisterUser`.
    register_user: Identity Write IdentityServiceClient::register_user(identity::RegisterUserRequest) -> identity::RegisterUserResponse;
    /// identity `VerifyEmail`.
    verify_email: Identity Write IdentityServiceClient::verify_email(identity::VerifyEmailRequest) -> identity::VerifyEmailResponse;
    /// identity `RequestPasswordReset`.
    request_password_reset: Identity Write IdentityServiceClient::request_password_reset(identity::RequestPasswordResetRequest) -> identity::RequestPasswordResetResponse;
    /// identity `ResetPassword`.
    reset_password: Identity Write IdentityServiceClient::reset_password(identity::ResetPasswordRequest) -> identity::ResetPasswordResponse;
    /// identity `Authenticate`.
    authenticate: Identity SessionWrite IdentityServiceClient::authenticate(identity::AuthenticateRequest) -> identity::AuthenticateResponse;
    /// identity `IssueServiceToken`.
    issue_service_token: Identity SessionWrite IdentityServiceClient::issue_service_token(identity::IssueServiceTokenRequest) -> identity::IssueServiceTokenResponse;
    /// identity `RefreshSession`.
    refresh_session: Identity SessionWrite IdentityServiceClient::refresh_session(identity::RefreshSessionRequest) -> identity::RefreshSessionResponse;
    /// identity `RevokeSession`.
    revoke_session: Identity SessionWrite IdentityServiceClient::revoke_session(identity::RevokeSessionRequest) -> identity::RevokeSessionResponse;
    /// identity `GetUser`.
    get_user: Identity CachedReadOfRequest IdentityServiceClient::get_user(identity::GetUserRequest) -> identity::GetUserResponse;
    /// identity `BatchGetUsers`.
    batch_get_users: Identity CachedReadOfRequest IdentityServiceClient::batch_get_users(identity::BatchGetUsersRequest) -> identity::BatchGetUsersResponse;
    /// identity `BatchLookupUsers`: the accounts of login e-mails, the lookups of concurrent
    /// calls ([`crate::people`]).
    batch_lookup_users: Identity Read IdentityServiceClient::batch_lookup_users(identity::BatchLookupUsersRequest) -> identity::BatchLookupUsersResponse;
    /// identity `BatchInviteUsers`: the invitations of concurrent calls ([`crate::people`]).
    batch_invite_users: Identity Write IdentityServiceClient::batch_invite_users(identity::BatchInviteUsersRequest) -> identity::BatchInviteUsersResponse;
    /// identity `UpdateUser`.
    update_user: Identity Write IdentityServiceClient::update_user(identity::UpdateUserRequest) -> identity::UpdateUserResponse;
    /// identity `ChangePassword`.
    change_password: Identity Write IdentityServiceClient::change_password(identity::ChangePasswordRequest) -> identity::ChangePasswordResponse;
    /// identity `ChangeEmail`.
    change_email: Identity Write IdentityServiceClient::change_email(identity::ChangeEmailRequest) -> identity::ChangeEmailResponse;
    /// identity `ConfirmEmailChange`.
    confirm_email_change: Identity Write IdentityServiceClient::confirm_email_change(identity::ConfirmEmailChangeRequest) -> identity::ConfirmEmailChangeResponse;

    /// registry `CreateSite`.
    create_site: Contacts Write ContactRegistryServiceClient::create_site(contacts::CreateSiteRequest) -> contacts::CreateSiteResponse;
    /// registry `GetSite`.
    get_site: Contacts CachedReadOfRequest ContactRegistryServiceClient::get_site(contacts::GetSiteRequest) -> contacts::GetSiteResponse;
    /// registry `LookupSite`: a site by its number (bulk import and export).
    lookup_site: Contacts Read ContactRegistryServiceClient::lookup_site(contacts::LookupSiteRequest) -> contacts::LookupSiteResponse;
    /// registry `ListSites`: a customer's sites (bulk export).
    list_sites: Contacts Read ContactRegistryServiceClient::list_sites(contacts::ListSitesRequest) -> contacts::ListSitesResponse;
    /// registry `UpdateSite`.
    update_site: Contacts Write ContactRegistryServiceClient::update_site(contacts::UpdateSiteRequest) -> contacts::UpdateSiteResponse;
    /// registry `ListComplianceGaps`: the portfolio's compliance gaps (operators).
    list_compliance_gaps: Contacts Read ContactRegistryServiceClient::list_compliance_gaps(contacts::ListComplianceGapsRequest) -> contacts::ListComplianceGapsResponse;
    /// registry `GetSiteCompliance`.
    get_site_compliance: Contacts Read ContactRegistryServiceClient::get_site_compliance(contacts::GetSiteComplianceRequest) -> contacts::GetSiteComplianceResponse;
    /// registry `ListSiteContacts`.
    list_site_contacts + list_site_contacts_shared: Contacts CachedReadOfRequest ContactRegistryServiceClient::list_site_contacts(contacts::ListSiteContactsRequest) -> contacts::ListSiteContactsResponse;
    /// registry `ListUserContacts`.
    list_user_contacts: Contacts CachedRead ContactRegistryServiceClient::list_user_contacts(contacts::ListUserContactsRequest) -> contacts::ListUserContactsResponse;
    /// registry `AssignContact`.
    assign_contact: Contacts Write ContactRegistryServiceClient::assign_contact(contacts::AssignContactRequest) -> contacts::AssignContactResponse;
    /// registry `UpdateContact`.
    update_contact: Contacts Write ContactRegistryServiceClient::update_contact(contacts::UpdateContactRequest) -> contacts::UpdateContactResponse;
    /// registry `RemoveContact`.
    remove_contact: Contacts Write ContactRegistryServiceClient::remove_contact(contacts::RemoveContactRequest) -> contacts::RemoveContactResponse;
    /// registry `ReplaceContact`.
    replace_contact: Contacts Write ContactRegistryServiceClient::replace_contact(contacts::ReplaceContactRequest) -> contacts::ReplaceContactResponse;
    /// registry `TransferPrimaryContact`.
    transfer_primary_contact: Contacts Write ContactRegistryServiceClient::transfer_primary_contact(contacts::TransferPrimaryContactRequest) -> contacts::TransferPrimaryContactResponse;
    /// registry `RequestPrimaryRecovery` (C12).
    request_primary_recovery: Contacts Write ContactRegistryServiceClient::request_primary_recovery(contacts::RequestPrimaryRecoveryRequest) -> contacts::RequestPrimaryRecoveryResponse;
    /// registry `RefusePrimaryRecovery` (C12).
    refuse_primary_recovery: Contacts Write ContactRegistryServiceClient::refuse_primary_recovery(contacts::RefusePrimaryRecoveryRequest) -> contacts::RefusePrimaryRecoveryResponse;
    /// registry `AttestPrimaryRecovery` (C12).
    attest_primary_recovery: Contacts Write ContactRegistryServiceClient::attest_primary_recovery(contacts::AttestPrimaryRecoveryRequest) -> contacts::AttestPrimaryRecoveryResponse;
    /// registry `GetPrimaryRecovery` (C12).
    get_primary_recovery: Contacts Read ContactRegistryServiceClient::get_primary_recovery(contacts::GetPrimaryRecoveryRequest) -> contacts::GetPrimaryRecoveryResponse;
    /// registry `ConfirmNotificationEmail`.
    confirm_notification_email: Contacts Write ContactRegistryServiceClient::confirm_notification_email(contacts::ConfirmNotificationEmailRequest) -> contacts::ConfirmNotificationEmailResponse;
    /// registry `ListAuditRecords`.
    list_contacts_audit: Contacts Read ContactRegistryServiceClient::list_audit_records(contacts::ListAuditRecordsRequest) -> contacts::ListAuditRecordsResponse;
    /// registry `AwaitAccessRevision` (T8): waits until the registry applied an access write.
    /// A read: it changes nothing, so it may be tried again on another replica.
    await_access_revision: Contacts Read ContactRegistryServiceClient::await_access_revision(contacts::AwaitAccessRevisionRequest) -> contacts::AwaitAccessRevisionResponse;

    /// access `BatchCheck`, never from the read cache: the batches of coalesced checks
    /// ([`crate::checks`]), which do not repeat. An admission's checks consult the cache
    /// before they are queued ([`Clients::batch_check_sent_by`]).
    batch_check_uncached: Access Read AccessManagementServiceClient::batch_check(access::BatchCheckRequest) -> access::BatchCheckResponse;
    /// access `ConsistentBatchCheck`: checks read from the database (AuthorizationService
    /// with `at_least_as_fresh`).
    consistent_batch_check: Access Read AccessManagementServiceClient::consistent_batch_check(access::ConsistentBatchCheckRequest) -> access::ConsistentBatchCheckResponse;
    /// access `LookupSites`.
    lookup_sites: Access Read AccessManagementServiceClient::lookup_sites(access::LookupSitesRequest) -> access::LookupSitesResponse;
    /// access `LookupUsers`.
    lookup_users: Access Read AccessManagementServiceClient::lookup_users(access::LookupUsersRequest) -> access::LookupUsersResponse;
    /// access `GetAccessProfile`.
    get_access_profile: Access Read AccessManagementServiceClient::get_access_profile(access::GetAccessProfileRequest) -> access::GetAccessProfileResponse;
    /// access `SetToolAccess`.
    set_tool_access: Access Write AccessManagementServiceClient::set_tool_access(access::SetToolAccessRequest) -> access::SetToolAccessResponse;
    /// access `SetSupportAccess`.
    set_support_access: Access Write AccessManagementServiceClient::set_support_access(access::SetSupportAccessRequest) -> access::SetSupportAccessResponse;
    /// access `RevokeAccess`.
    revoke_access: Access Write AccessManagementServiceClient::revoke_access(access::RevokeAccessRequest) -> access::RevokeAccessResponse;
    /// access `ListSiteAccess`.
    list_site_access: Access Read AccessManagementServiceClient::list_site_access(access::ListSiteAccessRequest) -> access::ListSiteAccessResponse;
    /// access `ListSupportUsers` (U4).
    list_support_users: Access Read AccessManagementServiceClient::list_support_users(access::ListSupportUsersRequest) -> access::ListSupportUsersResponse;
    /// access `SetUserAccess`: tools and support in one transaction, or a dry run.
    set_user_access: Access Write AccessManagementServiceClient::set_user_access(access::SetUserAccessRequest) -> access::SetUserAccessResponse;
    /// access `ListUserAccess`.
    list_user_access: Access CachedRead AccessManagementServiceClient::list_user_access(access::ListUserAccessRequest) -> access::ListUserAccessResponse;
    /// access `SubmitAccessRequest`.
    submit_access_request: Access Write AccessManagementServiceClient::submit_access_request(access::SubmitAccessRequestRequest) -> access::SubmitAccessRequestResponse;
    /// access `GetAccessRequest`.
    get_access_request: Access Read AccessManagementServiceClient::get_access_request(access::GetAccessRequestRequest) -> access::GetAccessRequestResponse;
    /// access `ListAccessRequests`.
    list_access_requests: Access CachedReadOfRequest AccessManagementServiceClient::list_access_requests(access::ListAccessRequestsRequest) -> access::ListAccessRequestsResponse;
    /// access `ListMyAccessRequests`.
    list_my_access_requests: Access Read AccessManagementServiceClient::list_my_access_requests(access::ListMyAccessRequestsRequest) -> access::ListMyAccessRequestsResponse;
    /// access `ApproveAccessRequest`.
    approve_access_request: Access Write AccessManagementServiceClient::approve_access_request(access::ApproveAccessRequestRequest) -> access::ApproveAccessRequestResponse;
    /// access `RejectAccessRequest`.
    reject_access_request: Access Write AccessManagementServiceClient::reject_access_request(access::RejectAccessRequestRequest) -> access::RejectAccessRequestResponse;
    /// access `CancelAccessRequest`.
    cancel_access_request: Access Write AccessManagementServiceClient::cancel_access_request(access::CancelAccessRequestRequest) -> access::CancelAccessRequestResponse;
    /// access `ListDomainPolicies`.
    list_domain_policies: Access Read AccessManagementServiceClient::list_domain_policies(access::ListDomainPoliciesRequest) -> access::ListDomainPoliciesResponse;
    /// access `SetDomainPolicy`.
    set_domain_policy: Access Write AccessManagementServiceClient::set_domain_policy(access::SetDomainPolicyRequest) -> access::SetDomainPolicyResponse;
    /// access `BlockRequester`.
    block_requester: Access Write AccessManagementServiceClient::block_requester(access::BlockRequesterRequest) -> access::BlockRequesterResponse;
    /// access `UnblockRequester`.
    unblock_requester: Access Write AccessManagementServiceClient::unblock_requester(access::UnblockRequesterRequest) -> access::UnblockRequesterResponse;
    /// access `ListBlockedRequesters`.
    list_blocked_requesters: Access Read AccessManagementServiceClient::list_blocked_requesters(access::ListBlockedRequestersRequest) -> access::ListBlockedRequestersResponse;
    /// access `ListAuditRecords`.
    list_access_audit: Access Read AccessManagementServiceClient::list_audit_records(access::ListAuditRecordsRequest) -> access::ListAuditRecordsResponse;
    /// access `AwaitContactsRevision` (T8): waits until access applied a registry write. A
    /// read: it changes nothing, so it may be tried again on another replica.
    await_contacts_revision: Access Read AccessManagementServiceClient::await_contacts_revision(access::AwaitContactsRevisionRequest) -> access::AwaitContactsRevisionResponse;
    /// access `AwaitIdentityRevision` (I1, T8): waits until access applied an identity write.
    await_identity_revision: Access Read AccessManagementServiceClient::await_identity_revision(access::AwaitIdentityRevisionRequest) -> access::AwaitIdentityRevisionResponse;

    /// notification `SendNotice`.
    send_notice: Notification Write NotificationServiceClient::send_notice(notification::SendNoticeRequest) -> notification::SendNoticeResponse;
    /// notification `RetryNotification` (operators).
    retry_notification: Notification Write NotificationServiceClient::retry_notification(notification::RetryNotificationRequest) -> notification::RetryNotificationResponse;
    /// notification `ListNotifications`.
    list_notifications: Notification Read NotificationServiceClient::list_notifications(notification::ListNotificationsRequest) -> notification::ListNotificationsResponse;
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use prost::Message;
    use prost_types::field_descriptor_proto::Type;
    use prost_types::{DescriptorProto, FileDescriptorSet};

    use super::{INTERNAL_RPCS, Op};

    /// The proto messages of the suite by full name (`.keycontacts.identity.v1.User`), and
    /// its methods by `Service/Method` (input and output type names).
    struct Protos {
        messages: HashMap<String, DescriptorProto>,
        methods: HashMap<String, (String, String)>,
    }

    impl Protos {
        fn load() -> Self {
            let set = FileDescriptorSet::decode(kc_proto::FILE_DESCRIPTOR_SET)
                .expect("the suite's descriptor set");
            let mut protos = Protos {
                messages: HashMap::new(),
                methods: HashMap::new(),
            };
            for file in set.file {
                let package = file.package().to_owned();
                for message in &file.message_type {
                    protos.add_message(&format!(".{package}"), message);
                }
                for service in &file.service {
                    for method in &service.method {
                        protos.methods.insert(
                            format!("{}/{}", service.name(), method.name()),
                            (
                                method.input_type().to_owned(),
                                method.output_type().to_owned(),
                            ),
                        );
                    }
                }
            }
            protos
        }

        fn add_message(&mut self, scope: &str, message: &DescriptorProto) {
            let name = format!("{scope}.{}", message.name());
            for nested in &message.nested_type {
                self.add_message(&name, nested);
            }
            self.messages.insert(name, message.clone());
        }

        /// Whether message `name` has, itself or in a message it holds (down to `depth`), a
        /// text field `site_id` or `user_id`.
        fn names_a_site_or_user(&self, name: &str, depth: usize) -> bool {
            let Some(message) = self.messages.get(name) else {
                return false;
            };
            message.field.iter().any(|field| match field.r#type() {
                Type::String => matches!(field.name(), "site_id" | "user_id"),
                Type::Message if depth > 0 => {
                    self.names_a_site_or_user(field.type_name(), depth - 1)
                }
                _ => false,
            })
        }

        /// Whether message `name` has, itself or in a message it holds (down to `depth`), a
        /// text field that holds an id (`id`, `…_id`, `…_ids`).
        fn holds_an_id(&self, name: &str, depth: usize) -> bool {
            let Some(message) = self.messages.get(name) else {
                return false;
            };
            message.field.iter().any(|field| match field.r#type() {
                Type::String => {
                    let name = field.name();
                    name == "id" || name.ends_with("_id") || name.ends_with("_ids")
                }
                Type::Message if depth > 0 => self.holds_an_id(field.type_name(), depth - 1),
                _ => false,
            })
        }
    }

    /// `invite_user` as `InviteUser`.
    fn pascal(snake: &str) -> String {
        snake
            .split('_')
            .map(|word| {
                let mut chars = word.chars();
                chars
                    .next()
                    .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                    .unwrap_or_default()
            })
            .collect()
    }

    // The read cache keeps an answer until a write mentions an id the answer is about (see
    // `crate::cache`), and every cached read is about a site or a user: so every write must
    // name the site or the user it changes, in its request or its answer, or name no id at
    // all, and then the cache forgets everything when it ends (`ForgetOnDrop`). A write that
    // named some other id only (a request's, a contact's) would leave stale answers about its
    // site or user for up to the cache's TTL.
    #[test]
    fn every_write_names_the_site_or_the_user_it_changes() {
        let protos = Protos::load();
        let mut unnamed = Vec::new();
        let mut writes = 0;
        for (client, method, op) in INTERNAL_RPCS {
            if *op != Op::Write {
                continue;
            }
            writes += 1;
            let service = client.strip_suffix("Client").expect("a client type");
            let rpc = pascal(method);
            let (input, output) = protos
                .methods
                .get(&format!("{service}/{rpc}"))
                .unwrap_or_else(|| panic!("{service}/{rpc} is not in the descriptor set"));
            let names_site_or_user =
                protos.names_a_site_or_user(input, 3) || protos.names_a_site_or_user(output, 3);
            let names_an_id = protos.holds_an_id(input, 3) || protos.holds_an_id(output, 3);
            if !names_site_or_user && names_an_id {
                unnamed.push(rpc);
            }
        }
        assert!(
            unnamed.is_empty(),
            "writes naming ids but neither their site nor their user: {unnamed:?}"
        );
        assert!(writes >= 30, "the table lists the writes ({writes})");
    }
}
