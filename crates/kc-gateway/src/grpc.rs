//! The gRPC face of the gateway: builds each call's context (deadline, caller, client
//! address), takes the caller's write token where a write is limited per caller
//! ([`WriteClass`]), and hands the request to [`Gateway`]; nothing else.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kc_proto::gateway::authorization_service_server::AuthorizationService;
use kc_proto::gateway::{self as pb, gateway_service_server::GatewayService};
use tonic::{Request, Response, Status, Streaming};

use crate::clients::{CallKind, Ctx};
use crate::compose::{AnswerStream, Gateway, PartContexts};
use crate::deadline::Deadline;
use crate::error::GatewayError;
use crate::ratelimit::{TrustedProxies, WriteClass, client_address};

/// The `GatewayService` implementation.
#[derive(Debug, Clone)]
pub(crate) struct GatewayApi {
    gateway: Arc<Gateway>,
    default_deadline: Duration,
    request_timeout: Duration,
    trusted_proxies: Arc<TrustedProxies>,
    shutdown: kc_runtime::Shutdown,
}

impl GatewayApi {
    /// The API over `gateway`: calls without `grpc-timeout` get `default_deadline`, and none
    /// gets more than the server's `request_timeout`; the client address of a call is
    /// forwarded by one of `trusted_proxies`, or is the TCP peer's. Its streams end at
    /// `shutdown`.
    pub(crate) fn new(
        gateway: Gateway,
        default_deadline: Duration,
        request_timeout: Duration,
        trusted_proxies: TrustedProxies,
        shutdown: kc_runtime::Shutdown,
    ) -> Self {
        Self {
            gateway: Arc::new(gateway),
            default_deadline,
            request_timeout,
            trusted_proxies: Arc::new(trusted_proxies),
            shutdown,
        }
    }

    /// The client address of `request` (see [`client_address`]).
    fn client<T>(&self, request: &Request<T>) -> Option<IpAddr> {
        client_address(
            request.remote_addr(),
            request.metadata(),
            &self.trusted_proxies,
        )
    }

    /// Takes the caller's token of `class`, when the write is limited per caller.
    fn limit(&self, ctx: &Ctx, class: Option<WriteClass>) -> Result<(), Status> {
        match class {
            Some(class) => self.gateway.limit_writes(ctx, class).map_err(Status::from),
            None => Ok(()),
        }
    }

    fn deadline<T>(&self, request: &Request<T>) -> Deadline {
        let header = request
            .metadata()
            .get("grpc-timeout")
            .and_then(|value| value.to_str().ok());
        Deadline::compute(
            Instant::now(),
            header,
            self.default_deadline,
            self.request_timeout,
        )
    }

    /// What the contexts of the parts of a long authenticated call are made of.
    fn part_contexts<T>(&self, request: &Request<T>) -> Result<PartContexts, Status> {
        let caller = kc_runtime::auth::shared_caller(request)?;
        Ok(PartContexts::new(
            caller,
            request.metadata(),
            self.default_deadline,
            self.request_timeout,
        ))
    }

    /// The context of an authenticated call of `kind`.
    fn ctx<T>(&self, request: &Request<T>, kind: CallKind) -> Result<Ctx, Status> {
        let caller = kc_runtime::auth::shared_caller(request)?;
        Ok(Ctx::authenticated(
            self.deadline(request),
            caller,
            request.metadata(),
            kind,
        ))
    }
}

fn respond<T>(result: Result<T, GatewayError>) -> Result<Response<T>, Status> {
    result.map(Response::new).map_err(Status::from)
}

/// The per-caller limit of a handler: `None` when the table names none.
macro_rules! write_class {
    () => {
        None
    };
    ($class:ident) => {
        Some(WriteClass::$class)
    };
}

macro_rules! handlers {
    (
        streams { $($streams:tt)* }
        public { $($pub_name:ident($pub_req:ident) -> $pub_resp:ident;)* }
        limited {
            $($lim_name:ident($lim_req:ident) -> $lim_resp:ident $(, per caller $lim_class:ident)?;)*
        }
        $($kind:ident {
            $($name:ident($req:ident) -> $resp:ident $(, per caller $class:ident)?;)*
        })*
    ) => {
        #[tonic::async_trait]
        impl GatewayService for GatewayApi {
            $($streams)*

            $(
                async fn $pub_name(
                    &self,
                    request: Request<pb::$pub_req>,
                ) -> Result<Response<pb::$pub_resp>, Status> {
                    let ctx = Ctx::public(self.deadline(&request));
                    let client = self.client(&request);
                    respond(self.gateway.$pub_name(&ctx, client, request.into_inner()).await)
                }
            )*
            $(
                async fn $lim_name(
                    &self,
                    request: Request<pb::$lim_req>,
                ) -> Result<Response<pb::$lim_resp>, Status> {
                    let ctx = self.ctx(&request, CallKind::Write)?;
                    self.limit(&ctx, write_class!($($lim_class)?))?;
                    let client = self.client(&request);
                    respond(self.gateway.$lim_name(&ctx, client, request.into_inner()).await)
                }
            )*
            $($(
                async fn $name(
                    &self,
                    request: Request<pb::$req>,
                ) -> Result<Response<pb::$resp>, Status> {
                    let ctx = self.ctx(&request, CallKind::$kind)?;
                    self.limit(&ctx, write_class!($($class)?))?;
                    respond(self.gateway.$name(&ctx, request.into_inner()).await)
                }
            )*)*
        }
    };
}

handlers! {
    // The bulk RPCs: each part (a row, a site) gets a deadline of its own.
    streams {
        type ImportContactsStream = AnswerStream<pb::ImportContactsResponse>;
        type ExportContactsStream = AnswerStream<pb::ExportContactsResponse>;

        /// One write token per import (not per row), like one write.
        async fn import_contacts(
            &self,
            request: Request<Streaming<pb::ImportContactsRequest>>,
        ) -> Result<Response<Self::ImportContactsStream>, Status> {
            let ctx = self.ctx(&request, CallKind::Write)?;
            self.limit(&ctx, Some(WriteClass::Mail))?;
            let contexts = self.part_contexts(&request)?;
            respond(self.gateway.clone().import_contacts(contexts, request.into_inner()))
        }

        async fn export_contacts(
            &self,
            request: Request<pb::ExportContactsRequest>,
        ) -> Result<Response<Self::ExportContactsStream>, Status> {
            let ctx = self.ctx(&request, CallKind::Read)?;
            let contexts = self.part_contexts(&request)?;
            respond(
                self.gateway
                    .clone()
                    .export_contacts(&ctx, contexts, request.into_inner())
                    .await,
            )
        }
    }
    public {
        register(RegisterRequest) -> RegisterResponse;
        verify_email(VerifyEmailRequest) -> VerifyEmailResponse;
        request_password_reset(RequestPasswordResetRequest) -> RequestPasswordResetResponse;
        reset_password(ResetPasswordRequest) -> ResetPasswordResponse;
        login(LoginRequest) -> LoginResponse;
        refresh(RefreshRequest) -> RefreshResponse;
        issue_service_token(IssueServiceTokenRequest) -> IssueServiceTokenResponse;
        logout(LogoutRequest) -> LogoutResponse;
    }
    // Authenticated RPCs that check a secret (a password, a mailed code): rate limited per
    // client address like the session RPCs.
    limited {
        change_password(ChangePasswordRequest) -> ChangePasswordResponse;
        change_email(ChangeEmailRequest) -> ChangeEmailResponse, per caller Mail;
        confirm_email_change(ConfirmEmailChangeRequest) -> ConfirmEmailChangeResponse;
        confirm_notification_email(ConfirmNotificationEmailRequest) -> ConfirmNotificationEmailResponse;
    }
    // Authenticated RPCs that only read: answered partly from the read cache.
    Read {
        get_me(GetMeRequest) -> GetMeResponse;
        get_site(GetSiteRequest) -> GetSiteResponse;
        list_my_sites(ListMySitesRequest) -> ListMySitesResponse;
        get_site_compliance(GetSiteComplianceRequest) -> GetSiteComplianceResponse;
        show_all_contacts(ShowAllContactsRequest) -> ShowAllContactsResponse;
        get_access_profile(GetAccessProfileRequest) -> GetAccessProfileResponse;
        list_site_access(ListSiteAccessRequest) -> ListSiteAccessResponse;
        list_support_users(ListSupportUsersRequest) -> ListSupportUsersResponse;
        list_my_requests(ListMyRequestsRequest) -> ListMyRequestsResponse;
        list_pending_requests(ListPendingRequestsRequest) -> ListPendingRequestsResponse;
        list_site_notifications(ListSiteNotificationsRequest) -> ListSiteNotificationsResponse;
        list_site_audit(ListSiteAuditRequest) -> ListSiteAuditResponse;
        find_site(FindSiteRequest) -> FindSiteResponse;
        list_customer_sites(ListCustomerSitesRequest) -> ListCustomerSitesResponse;
        list_domain_policies(ListDomainPoliciesRequest) -> ListDomainPoliciesResponse;
        list_compliance_gaps(ListComplianceGapsRequest) -> ListComplianceGapsResponse;
        list_blocked_requesters(ListBlockedRequestersRequest) -> ListBlockedRequestersResponse;
        get_primary_recovery(GetPrimaryRecoveryRequest) -> GetPrimaryRecoveryResponse;
    }
    // Authenticated RPCs that change state: everything they read is asked fresh. Those that
    // send mail take a token of the caller's own limit first (per gateway replica).
    Write {
        update_me(UpdateMeRequest) -> UpdateMeResponse, per caller Mail;
        create_site(CreateSiteRequest) -> CreateSiteResponse;
        update_site(UpdateSiteRequest) -> UpdateSiteResponse;
        assign_contact(AssignContactRequest) -> AssignContactResponse, per caller Mail;
        update_contact(UpdateContactRequest) -> UpdateContactResponse, per caller Mail;
        remove_contact(RemoveContactRequest) -> RemoveContactResponse, per caller Mail;
        replace_contact(ReplaceContactRequest) -> ReplaceContactResponse, per caller Mail;
        transfer_primary_contact(TransferPrimaryContactRequest) -> TransferPrimaryContactResponse,
            per caller Mail;
        request_primary_recovery(RequestPrimaryRecoveryRequest) -> RequestPrimaryRecoveryResponse,
            per caller Mail;
        refuse_primary_recovery(RefusePrimaryRecoveryRequest) -> RefusePrimaryRecoveryResponse,
            per caller Mail;
        attest_primary_recovery(AttestPrimaryRecoveryRequest) -> AttestPrimaryRecoveryResponse,
            per caller Mail;
        set_tool_access(SetToolAccessRequest) -> SetToolAccessResponse, per caller Mail;
        set_support_access(SetSupportAccessRequest) -> SetSupportAccessResponse, per caller Mail;
        revoke_access(RevokeAccessRequest) -> RevokeAccessResponse, per caller Mail;
        add_support_user(AddSupportUserRequest) -> AddSupportUserResponse, per caller Mail;
        revoke_support_access(RevokeSupportAccessRequest) -> RevokeSupportAccessResponse,
            per caller Mail;
        add_site_user(AddSiteUserRequest) -> AddSiteUserResponse, per caller Mail;
        self_nominate(SelfNominateRequest) -> SelfNominateResponse, per caller AccessRequest;
        cancel_my_request(CancelMyRequestRequest) -> CancelMyRequestResponse,
            per caller AccessRequest;
        decide_access_request(DecideAccessRequestRequest) -> DecideAccessRequestResponse,
            per caller Mail;
        set_domain_policy(SetDomainPolicyRequest) -> SetDomainPolicyResponse, per caller Mail;
        block_requester(BlockRequesterRequest) -> BlockRequesterResponse, per caller Mail;
        unblock_requester(UnblockRequesterRequest) -> UnblockRequesterResponse, per caller Mail;
        send_notice(SendNoticeRequest) -> SendNoticeResponse, per caller Mail;
        retry_notification(RetryNotificationRequest) -> RetryNotificationResponse, per caller Mail;
    }
}

/// `AuthorizationService` on the same gateway: read-only calls of service accounts with the
/// scope `authz` ([`crate::compose`] admits them).
#[tonic::async_trait]
impl AuthorizationService for GatewayApi {
    async fn check(
        &self,
        request: Request<pb::CheckRequest>,
    ) -> Result<Response<pb::CheckResponse>, Status> {
        let ctx = self.ctx(&request, CallKind::Read)?;
        respond(self.gateway.authz_check(&ctx, request.into_inner()).await)
    }

    async fn batch_check(
        &self,
        request: Request<pb::BatchCheckRequest>,
    ) -> Result<Response<pb::BatchCheckResponse>, Status> {
        let ctx = self.ctx(&request, CallKind::Read)?;
        respond(
            self.gateway
                .authz_batch_check(&ctx, request.into_inner())
                .await,
        )
    }

    async fn lookup_sites(
        &self,
        request: Request<pb::LookupSitesRequest>,
    ) -> Result<Response<pb::LookupSitesResponse>, Status> {
        let ctx = self.ctx(&request, CallKind::Read)?;
        respond(
            self.gateway
                .authz_lookup_sites(&ctx, request.into_inner())
                .await,
        )
    }

    async fn lookup_users(
        &self,
        request: Request<pb::LookupUsersRequest>,
    ) -> Result<Response<pb::LookupUsersResponse>, Status> {
        let ctx = self.ctx(&request, CallKind::Read)?;
        respond(
            self.gateway
                .authz_lookup_users(&ctx, request.into_inner())
                .await,
        )
    }

    type WatchPermissionsStream = kc_runtime::outbox::EventStream<pb::WatchPermissionsResponse>;

    async fn watch_permissions(
        &self,
        request: Request<pb::WatchPermissionsRequest>,
    ) -> Result<Response<Self::WatchPermissionsStream>, Status> {
        let ctx = self.ctx(&request, CallKind::Read)?;
        let stream = self
            .gateway
            .authz_watch_permissions(&ctx, request.into_inner())
            .await?;
        // It ends with the gateway, so that draining does not wait for its callers to go.
        let shutdown = self.shutdown.clone();
        Ok(Response::new(Box::pin(futures::StreamExt::take_until(
            stream,
            async move { shutdown.wait().await },
        ))))
    }
}
