//! The gRPC face of access management: reads the caller, turns the request into its domain
//! command ([`crate::convert`]), calls the domain, and turns the result back. No SQL, no
//! rules, no field checks.
//!
//! Rule T8 across services: the writes the contact registry decides on (SetToolAccess,
//! SetSupportAccess, SetUserAccess, RevokeAccess, ApproveAccessRequest, SubmitAccessRequest)
//! return their `revision`, the cursor of their last event, for the registry's
//! `AwaitAccessRevision`; and
//! `AwaitContactsRevision` is the other direction: a service that changed roles in the
//! registry awaits the registry's revision here before it asks access for a change of
//! rights, so that access decides on those roles. `AwaitIdentityRevision` does the same for
//! identity's writes that change what a user may hold (a proof, a disable or enable, I1, I4).

use std::time::Duration;

use kc_proto::access::{self as pb, access_management_service_server::AccessManagementService};
use kc_runtime::Shutdown;
use kc_runtime::audit;
use kc_runtime::auth::caller;
use kc_runtime::grpc::await_revision;
use kc_runtime::outbox::{EventStream, OutboxWatcher};
use tonic::{Request, Response, Status};

use crate::convert::blocks_response;
use crate::convert::{
    approvers_response, check_response, lookup_sites_response, lookup_users_response,
    my_requests_response, policies_response, requests_response, site_access_response,
    support_users_response, user_access_response,
};
use crate::domain::blocks::{BlockChange, BlocksQuery, UnblockChange};
use crate::domain::commands::PermissionFeedQuery;
use crate::domain::commands::{
    Approval, ApproversQuery, BatchCheckQuery, Cancellation, CheckQuery, LookupSitesQuery,
    LookupUsersQuery, MyRequestsQuery, PoliciesQuery, PolicyChange, ProfileRef, Rejection,
    RequestRef, Revocation, SiteAccessQuery, SiteRequestsQuery, Submission, SupportChange,
    ToolsChange, UserAccessQuery,
};
use crate::domain::service::{SupportUsersQuery, UserAccessChange};
use crate::domain::{Access, Actor};
use crate::followers::Applied;
use crate::permission_feed;

/// Longest wait of AwaitContactsRevision and AwaitIdentityRevision, whatever the call's
/// deadline (T8).
pub(crate) const MAX_REVISION_WAIT: Duration = Duration::from_secs(10);

/// The `AccessManagementService` implementation.
#[derive(Clone, Debug)]
pub(crate) struct AccessApi {
    access: Access,
    /// What this process's projections of the registry's roles and identity's users
    /// applied (T8).
    applied: Applied,
    watcher: OutboxWatcher,
    shutdown: Shutdown,
}

/// A service whose event stream a projection of access management follows (T8).
#[derive(Clone, Copy, Debug)]
enum Followed {
    /// The contact registry: `AwaitContactsRevision`.
    Contacts,
    /// Identity: `AwaitIdentityRevision`.
    Identity,
}

impl AccessApi {
    /// Waits (for a service caller only) until the projection of `followed` applied
    /// `revision`; the cursor it applied.
    async fn await_applied<T>(
        &self,
        request: &Request<T>,
        revision: &str,
        followed: Followed,
    ) -> Result<String, Status> {
        let (applied, method, projection) = match followed {
            Followed::Contacts => (
                &self.applied.contacts,
                "AwaitContactsRevision",
                "access management's projection of the registry's roles",
            ),
            Followed::Identity => (
                &self.applied.identity,
                "AwaitIdentityRevision",
                "access management's projection of identity's users",
            ),
        };
        if !caller(request)?.is_service() {
            return Err(Status::permission_denied(format!(
                "{method} is for services"
            )));
        }
        await_revision(
            self.access.pool(),
            applied,
            request,
            revision,
            MAX_REVISION_WAIT,
            projection,
        )
        .await
    }

    /// The API over `access`, streaming events from `watcher` until `shutdown`; revisions
    /// of the registry and identity are awaited with `applied` (see
    /// [`crate::followers::spawn`]).
    pub(crate) fn new(
        access: Access,
        applied: Applied,
        watcher: OutboxWatcher,
        shutdown: Shutdown,
    ) -> Self {
        Self {
            access,
            applied,
            watcher,
            shutdown,
        }
    }
}

/// The actor of a request: services and operators only.
fn request_actor<T>(request: &Request<T>) -> Result<Actor, Status> {
    Ok(Actor::of(&caller(request)?)?)
}

#[tonic::async_trait]
impl AccessManagementService for AccessApi {
    async fn get_access_profile(
        &self,
        request: Request<pb::GetAccessProfileRequest>,
    ) -> Result<Response<pb::GetAccessProfileResponse>, Status> {
        request_actor(&request)?;
        let key: ProfileRef = request.into_inner().try_into()?;
        let profile = self.access.profile(key).await?;
        Ok(Response::new(pb::GetAccessProfileResponse {
            profile: Some((&profile).into()),
        }))
    }

    async fn set_tool_access(
        &self,
        request: Request<pb::SetToolAccessRequest>,
    ) -> Result<Response<pb::SetToolAccessResponse>, Status> {
        let actor = request_actor(&request)?;
        let change: ToolsChange = request.into_inner().try_into()?;
        let changed = self.access.set_tools(actor, change).await?;
        Ok(Response::new(pb::SetToolAccessResponse {
            profile: Some((&changed.value).into()),
            revision: changed.revision_text(),
        }))
    }

    async fn set_support_access(
        &self,
        request: Request<pb::SetSupportAccessRequest>,
    ) -> Result<Response<pb::SetSupportAccessResponse>, Status> {
        let actor = request_actor(&request)?;
        let change: SupportChange = request.into_inner().try_into()?;
        let changed = self.access.set_support(actor, change).await?;
        Ok(Response::new(pb::SetSupportAccessResponse {
            profile: Some((&changed.value).into()),
            revision: changed.revision_text(),
        }))
    }

    async fn revoke_access(
        &self,
        request: Request<pb::RevokeAccessRequest>,
    ) -> Result<Response<pb::RevokeAccessResponse>, Status> {
        let actor = request_actor(&request)?;
        let revocation: Revocation = request.into_inner().try_into()?;
        let changed = self.access.revoke(actor, revocation).await?;
        Ok(Response::new(pb::RevokeAccessResponse {
            profile: Some((&changed.value).into()),
            revision: changed.revision_text(),
        }))
    }

    async fn list_site_access(
        &self,
        request: Request<pb::ListSiteAccessRequest>,
    ) -> Result<Response<pb::ListSiteAccessResponse>, Status> {
        request_actor(&request)?;
        let query: SiteAccessQuery = request.into_inner().try_into()?;
        let page = self.access.list_site_access(query).await?;
        Ok(Response::new(site_access_response(&page)))
    }

    async fn list_user_access(
        &self,
        request: Request<pb::ListUserAccessRequest>,
    ) -> Result<Response<pb::ListUserAccessResponse>, Status> {
        request_actor(&request)?;
        let query: UserAccessQuery = request.into_inner().try_into()?;
        let page = self.access.list_user_access(query).await?;
        Ok(Response::new(user_access_response(&page)))
    }

    async fn list_support_users(
        &self,
        request: Request<pb::ListSupportUsersRequest>,
    ) -> Result<Response<pb::ListSupportUsersResponse>, Status> {
        let actor = request_actor(&request)?;
        let query: SupportUsersQuery = request.into_inner().try_into()?;
        let page = self.access.list_support_users(actor, query).await?;
        Ok(Response::new(support_users_response(&page)))
    }

    async fn set_user_access(
        &self,
        request: Request<pb::SetUserAccessRequest>,
    ) -> Result<Response<pb::SetUserAccessResponse>, Status> {
        let actor = request_actor(&request)?;
        let change: UserAccessChange = request.into_inner().try_into()?;
        let changed = self.access.set_user_access(actor, change).await?;
        Ok(Response::new(pb::SetUserAccessResponse {
            profile: changed.value.as_ref().map(Into::into),
            revision: changed.revision_text(),
        }))
    }

    async fn check(
        &self,
        request: Request<pb::CheckRequest>,
    ) -> Result<Response<pb::CheckResponse>, Status> {
        request_actor(&request)?;
        let query: CheckQuery = request.into_inner().try_into()?;
        let decision = self.access.check(query).await?;
        Ok(Response::new(check_response(decision)))
    }

    async fn batch_check(
        &self,
        request: Request<pb::BatchCheckRequest>,
    ) -> Result<Response<pb::BatchCheckResponse>, Status> {
        request_actor(&request)?;
        let batch: BatchCheckQuery = request.into_inner().try_into()?;
        let decisions = self.access.check_all(batch.checks).await?;
        let results = decisions.into_iter().map(check_response).collect();
        Ok(Response::new(pb::BatchCheckResponse { results }))
    }

    /// Like `batch_check`, from the database after the projection applied the registry's
    /// `contacts_revision` (when given).
    async fn consistent_batch_check(
        &self,
        request: Request<pb::ConsistentBatchCheckRequest>,
    ) -> Result<Response<pb::ConsistentBatchCheckResponse>, Status> {
        request_actor(&request)?;
        let batch: BatchCheckQuery = request.get_ref().clone().try_into()?;
        if !request.get_ref().contacts_revision.is_empty() {
            await_revision(
                self.access.pool(),
                &self.applied.contacts,
                &request,
                &request.get_ref().contacts_revision,
                MAX_REVISION_WAIT,
                "access management's projection of the registry's roles",
            )
            .await?;
        }
        let decisions = self.access.check_all(batch.checks).await?;
        let results = decisions.into_iter().map(check_response).collect();
        Ok(Response::new(pb::ConsistentBatchCheckResponse { results }))
    }

    async fn lookup_sites(
        &self,
        request: Request<pb::LookupSitesRequest>,
    ) -> Result<Response<pb::LookupSitesResponse>, Status> {
        request_actor(&request)?;
        let query: LookupSitesQuery = request.into_inner().try_into()?;
        let page = self.access.lookup_sites(query).await?;
        Ok(Response::new(lookup_sites_response(&page)))
    }

    async fn lookup_users(
        &self,
        request: Request<pb::LookupUsersRequest>,
    ) -> Result<Response<pb::LookupUsersResponse>, Status> {
        request_actor(&request)?;
        let query: LookupUsersQuery = request.into_inner().try_into()?;
        let page = self.access.lookup_users(query).await?;
        Ok(Response::new(lookup_users_response(&page)))
    }

    async fn list_approvers(
        &self,
        request: Request<pb::ListApproversRequest>,
    ) -> Result<Response<pb::ListApproversResponse>, Status> {
        request_actor(&request)?;
        let query: ApproversQuery = request.into_inner().try_into()?;
        let page = self.access.list_approvers(query).await?;
        Ok(Response::new(approvers_response(&page)))
    }

    async fn submit_access_request(
        &self,
        request: Request<pb::SubmitAccessRequestRequest>,
    ) -> Result<Response<pb::SubmitAccessRequestResponse>, Status> {
        let actor = request_actor(&request)?;
        let submission: Submission = request.into_inner().try_into()?;
        let created = self.access.submit(actor, submission).await?;
        Ok(Response::new(pb::SubmitAccessRequestResponse {
            request: Some((&created.value).into()),
            revision: created.revision_text(),
        }))
    }

    async fn get_access_request(
        &self,
        request: Request<pb::GetAccessRequestRequest>,
    ) -> Result<Response<pb::GetAccessRequestResponse>, Status> {
        request_actor(&request)?;
        let key: RequestRef = request.into_inner().try_into()?;
        let found = self.access.get_request(key).await?;
        Ok(Response::new(pb::GetAccessRequestResponse {
            request: Some((&found).into()),
        }))
    }

    async fn list_access_requests(
        &self,
        request: Request<pb::ListAccessRequestsRequest>,
    ) -> Result<Response<pb::ListAccessRequestsResponse>, Status> {
        request_actor(&request)?;
        let query: SiteRequestsQuery = request.into_inner().try_into()?;
        let page = self.access.list_requests(query).await?;
        Ok(Response::new(requests_response(&page)))
    }

    async fn list_my_access_requests(
        &self,
        request: Request<pb::ListMyAccessRequestsRequest>,
    ) -> Result<Response<pb::ListMyAccessRequestsResponse>, Status> {
        let actor = request_actor(&request)?;
        let query: MyRequestsQuery = request.into_inner().try_into()?;
        let page = self.access.list_my_requests(actor, query).await?;
        Ok(Response::new(my_requests_response(&page)))
    }

    async fn approve_access_request(
        &self,
        request: Request<pb::ApproveAccessRequestRequest>,
    ) -> Result<Response<pb::ApproveAccessRequestResponse>, Status> {
        let actor = request_actor(&request)?;
        let approval: Approval = request.into_inner().try_into()?;
        let approved = self.access.approve(actor, approval).await?;
        let (decided, profile) = &approved.value;
        Ok(Response::new(pb::ApproveAccessRequestResponse {
            request: Some(decided.into()),
            profile: Some(profile.into()),
            revision: approved.revision_text(),
        }))
    }

    async fn reject_access_request(
        &self,
        request: Request<pb::RejectAccessRequestRequest>,
    ) -> Result<Response<pb::RejectAccessRequestResponse>, Status> {
        let actor = request_actor(&request)?;
        let rejection: Rejection = request.into_inner().try_into()?;
        let decided = self.access.reject(actor, rejection).await?;
        Ok(Response::new(pb::RejectAccessRequestResponse {
            request: Some((&decided).into()),
        }))
    }

    async fn cancel_access_request(
        &self,
        request: Request<pb::CancelAccessRequestRequest>,
    ) -> Result<Response<pb::CancelAccessRequestResponse>, Status> {
        let actor = request_actor(&request)?;
        let cancellation: Cancellation = request.into_inner().try_into()?;
        let cancelled = self.access.cancel(actor, cancellation).await?;
        Ok(Response::new(pb::CancelAccessRequestResponse {
            request: Some((&cancelled).into()),
        }))
    }

    async fn set_domain_policy(
        &self,
        request: Request<pb::SetDomainPolicyRequest>,
    ) -> Result<Response<pb::SetDomainPolicyResponse>, Status> {
        let actor = request_actor(&request)?;
        let change: PolicyChange = request.into_inner().try_into()?;
        let policy = self.access.set_domain_policy(actor, change).await?;
        Ok(Response::new(pb::SetDomainPolicyResponse {
            domain_policy: Some((&policy).into()),
        }))
    }

    async fn list_domain_policies(
        &self,
        request: Request<pb::ListDomainPoliciesRequest>,
    ) -> Result<Response<pb::ListDomainPoliciesResponse>, Status> {
        request_actor(&request)?;
        let query: PoliciesQuery = request.into_inner().try_into()?;
        let page = self.access.list_domain_policies(query).await?;
        Ok(Response::new(policies_response(&page)))
    }

    async fn block_requester(
        &self,
        request: Request<pb::BlockRequesterRequest>,
    ) -> Result<Response<pb::BlockRequesterResponse>, Status> {
        let actor = request_actor(&request)?;
        let change: BlockChange = request.into_inner().try_into()?;
        let (block, rejected) = self.access.block_requester(actor, change).await?;
        Ok(Response::new(pb::BlockRequesterResponse {
            block: Some((&block).into()),
            rejected_requests: rejected.iter().map(Into::into).collect(),
        }))
    }

    async fn unblock_requester(
        &self,
        request: Request<pb::UnblockRequesterRequest>,
    ) -> Result<Response<pb::UnblockRequesterResponse>, Status> {
        let actor = request_actor(&request)?;
        let change: UnblockChange = request.into_inner().try_into()?;
        let block = self.access.unblock_requester(actor, change).await?;
        Ok(Response::new(pb::UnblockRequesterResponse {
            block: Some((&block).into()),
        }))
    }

    async fn list_blocked_requesters(
        &self,
        request: Request<pb::ListBlockedRequestersRequest>,
    ) -> Result<Response<pb::ListBlockedRequestersResponse>, Status> {
        request_actor(&request)?;
        let query: BlocksQuery = request.into_inner().try_into()?;
        let page = self.access.list_blocked_requesters(query).await?;
        Ok(Response::new(blocks_response(&page)))
    }

    async fn list_audit_records(
        &self,
        request: Request<pb::ListAuditRecordsRequest>,
    ) -> Result<Response<pb::ListAuditRecordsResponse>, Status> {
        request_actor(&request)?;
        let r = request.into_inner();
        let list = |site_id, before, size| self.access.list_audit_records(site_id, before, size);
        let (records, next_page_token) =
            audit::list_records(&r.site_id, r.page_size, &r.page_token, list).await?;
        Ok(Response::new(pb::ListAuditRecordsResponse {
            records,
            next_page_token,
        }))
    }

    type WatchEventsStream = EventStream<pb::WatchEventsResponse>;

    async fn watch_events(
        &self,
        request: Request<pb::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        request_actor(&request)?;
        permission_feed::watch_events(
            &self.watcher,
            &request.get_ref().after_cursor,
            &self.shutdown,
        )
        .map(Response::new)
    }

    type WatchPermissionChangesStream = EventStream<pb::WatchPermissionChangesResponse>;

    async fn watch_permission_changes(
        &self,
        request: Request<pb::WatchPermissionChangesRequest>,
    ) -> Result<Response<Self::WatchPermissionChangesStream>, Status> {
        request_actor(&request)?;
        let query: PermissionFeedQuery = request.into_inner().try_into()?;
        Ok(Response::new(permission_feed::watch_changes(
            &self.watcher,
            query,
            &self.shutdown,
        )))
    }

    /// Rule T8 across services: waits until the projection of the registry's roles has
    /// applied `revision` (a registry write's), so that the caller's next change of rights
    /// here is decided on roles at least that fresh; `Unavailable` (retry) when it has not
    /// within the call's deadline, at most [`MAX_REVISION_WAIT`]. Services only: it is part
    /// of how the gateway orders its calls, not an API for people.
    async fn await_contacts_revision(
        &self,
        request: Request<pb::AwaitContactsRevisionRequest>,
    ) -> Result<Response<pb::AwaitContactsRevisionResponse>, Status> {
        let applied_revision = self
            .await_applied(&request, &request.get_ref().revision, Followed::Contacts)
            .await?;
        Ok(Response::new(pb::AwaitContactsRevisionResponse {
            applied_revision,
        }))
    }

    /// Rules I1 and I4 across services: waits until the projection of identity's users has
    /// applied `revision` (an identity write's: a proof, a disable or enable), so that rights
    /// follow the change; `Unavailable` (retry) when it has not within the call's deadline, at
    /// most [`MAX_REVISION_WAIT`]. Services only.
    async fn await_identity_revision(
        &self,
        request: Request<pb::AwaitIdentityRevisionRequest>,
    ) -> Result<Response<pb::AwaitIdentityRevisionResponse>, Status> {
        let applied_revision = self
            .await_applied(&request, &request.get_ref().revision, Followed::Identity)
            .await?;
        Ok(Response::new(pb::AwaitIdentityRevisionResponse {
            applied_revision,
        }))
    }
}
