//! The gRPC face of the gateway: builds each call's context (deadline, caller, peer
//! address) and hands the request to [`Gateway`]; nothing else.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kc_proto::gateway::{self as pb, gateway_service_server::GatewayService};
use tonic::{Request, Response, Status};

use crate::clients::{CallKind, Ctx};
use crate::compose::Gateway;
use crate::deadline::Deadline;
use crate::error::GatewayError;

/// The `GatewayService` implementation.
#[derive(Debug, Clone)]
pub struct GatewayApi {
    gateway: Arc<Gateway>,
    default_deadline: Duration,
    request_timeout: Duration,
}

impl GatewayApi {
    /// The API over `gateway`: calls without `grpc-timeout` get `default_deadline`, and none
    /// gets more than the server's `request_timeout`.
    pub fn new(gateway: Gateway, default_deadline: Duration, request_timeout: Duration) -> Self {
        Self {
            gateway: Arc::new(gateway),
            default_deadline,
            request_timeout,
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

    /// The context of an authenticated call of `kind`.
    fn ctx<T>(&self, request: &Request<T>, kind: CallKind) -> Result<Ctx, Status> {
        let caller = kc_runtime::auth::caller(request)?;
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

macro_rules! handlers {
    (
        public { $($pub_name:ident($pub_req:ident) -> $pub_resp:ident;)* }
        limited { $($lim_name:ident($lim_req:ident) -> $lim_resp:ident;)* }
        $($kind:ident { $($name:ident($req:ident) -> $resp:ident;)* })*
    ) => {
        #[tonic::async_trait]
        impl GatewayService for GatewayApi {
            $(
                async fn $pub_name(
                    &self,
                    request: Request<pb::$pub_req>,
                ) -> Result<Response<pb::$pub_resp>, Status> {
                    let ctx = Ctx::public(self.deadline(&request));
                    let peer = request.remote_addr().map(|addr| addr.ip());
                    respond(self.gateway.$pub_name(&ctx, peer, request.into_inner()).await)
                }
            )*
            $(
                async fn $lim_name(
                    &self,
                    request: Request<pb::$lim_req>,
                ) -> Result<Response<pb::$lim_resp>, Status> {
                    let ctx = self.ctx(&request, CallKind::Write)?;
                    let peer = request.remote_addr().map(|addr| addr.ip());
                    respond(self.gateway.$lim_name(&ctx, peer, request.into_inner()).await)
                }
            )*
            $($(
                async fn $name(
                    &self,
                    request: Request<pb::$req>,
                ) -> Result<Response<pb::$resp>, Status> {
                    let ctx = self.ctx(&request, CallKind::$kind)?;
                    respond(self.gateway.$name(&ctx, request.into_inner()).await)
                }
            )*)*
        }
    };
}

handlers! {
    public {
        register(RegisterRequest) -> RegisterResponse;
        verify_email(VerifyEmailRequest) -> VerifyEmailResponse;
        request_password_reset(RequestPasswordResetRequest) -> RequestPasswordResetResponse;
        reset_password(ResetPasswordRequest) -> ResetPasswordResponse;
        login(LoginRequest) -> LoginResponse;
        refresh(RefreshRequest) -> RefreshResponse;
        logout(LogoutRequest) -> LogoutResponse;
    }
    // Authenticated RPCs that check a secret (a password, a mailed code): rate limited per
    // caller address like the session RPCs.
    limited {
        change_password(ChangePasswordRequest) -> ChangePasswordResponse;
        change_email(ChangeEmailRequest) -> ChangeEmailResponse;
        confirm_email_change(ConfirmEmailChangeRequest) -> ConfirmEmailChangeResponse;
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
        list_my_requests(ListMyRequestsRequest) -> ListMyRequestsResponse;
        list_pending_requests(ListPendingRequestsRequest) -> ListPendingRequestsResponse;
        list_site_notifications(ListSiteNotificationsRequest) -> ListSiteNotificationsResponse;
        list_site_audit(ListSiteAuditRequest) -> ListSiteAuditResponse;
    }
    // Authenticated RPCs that change state: everything they read is asked fresh.
    Write {
        update_me(UpdateMeRequest) -> UpdateMeResponse;
        create_site(CreateSiteRequest) -> CreateSiteResponse;
        update_site(UpdateSiteRequest) -> UpdateSiteResponse;
        assign_contact(AssignContactRequest) -> AssignContactResponse;
        update_contact(UpdateContactRequest) -> UpdateContactResponse;
        remove_contact(RemoveContactRequest) -> RemoveContactResponse;
        replace_contact(ReplaceContactRequest) -> ReplaceContactResponse;
        transfer_primary_contact(TransferPrimaryContactRequest) -> TransferPrimaryContactResponse;
        set_tool_access(SetToolAccessRequest) -> SetToolAccessResponse;
        set_support_access(SetSupportAccessRequest) -> SetSupportAccessResponse;
        revoke_access(RevokeAccessRequest) -> RevokeAccessResponse;
        self_nominate(SelfNominateRequest) -> SelfNominateResponse;
        cancel_my_request(CancelMyRequestRequest) -> CancelMyRequestResponse;
        decide_access_request(DecideAccessRequestRequest) -> DecideAccessRequestResponse;
        set_domain_policy(SetDomainPolicyRequest) -> SetDomainPolicyResponse;
        send_notice(SendNoticeRequest) -> SendNoticeResponse;
    }
}
