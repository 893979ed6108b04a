//! Access requests and domain policies: SelfNominate, ListMyRequests, CancelMyRequest,
//! ListPendingRequests, DecideAccessRequest, SetDomainPolicy. Access management checks the
//! requester and the approver itself (A1–A7); the gateway checks site permissions first and
//! resolves a request id to its own site before any check.

use kc_proto::access::{self, AccessRequest, AccessRequestKind, AccessRequestState, Permission};
use kc_proto::gateway::{self as pb, AccessDecision};
use tonic::Code;

use super::revisions::revision_token;
use super::{Gateway, denied, id, page_size, required};
use crate::clients::{Ctx, Svc};
use crate::error::GatewayError;
use crate::policy::{Need, Rule, decider_permission, method, rule};

/// The refusal of DecideAccessRequest for a customer who may not decide the request, and
/// for an unknown request id: the same words, so that neither the existence, the site nor
/// the kind of a request shows (rule I2).
const MAY_NOT_DECIDE: &str = "permission denied: deciding an access request needs \
     PERMISSION_APPROVE_SITE_ACCESS (site access) or PERMISSION_APPROVE_SUPPORT_ACCESS \
     (support access) on the request's site";

/// The refusal of CancelMyRequest for someone else's request and for an unknown id (rule
/// I2).
const NOT_ONE_OF_YOURS: &str = "access request not found among your requests";

/// The kinds of request the results of a check of `permissions` allow to decide.
fn decidable_kinds(permissions: &[Permission], allowed: &[bool]) -> Vec<AccessRequestKind> {
    permissions
        .iter()
        .zip(allowed)
        .filter(|(_, allowed)| **allowed)
        .filter_map(|(permission, _)| match permission {
            Permission::ApproveSiteAccess => Some(AccessRequestKind::SiteAccess),
            Permission::ApproveSupportAccess => Some(AccessRequestKind::SupportAccess),
            _ => None,
        })
        .collect()
}

impl Gateway {
    /// `SelfNominate` (A1, S3): access management's SubmitAccessRequest for the caller.
    pub(crate) async fn self_nominate(
        &self,
        ctx: &Ctx,
        request: pb::SelfNominateRequest,
    ) -> Result<pb::SelfNominateResponse, GatewayError> {
        self.admit(ctx, method::SELF_NOMINATE)?;
        let response = self
            .clients
            .submit_access_request(
                ctx,
                access::SubmitAccessRequestRequest {
                    site_number: request.site_number,
                    customer_number: request.customer_number,
                    kind: request.kind,
                    requested_tools: request.requested_tools,
                    requested_support_level: request.requested_support_level,
                    justification: request.justification,
                },
            )
            .await?;
        self.access_write_in_effect(ctx, &response.revision).await?;
        Ok(pb::SelfNominateResponse {
            request: Some(required(Svc::Access, "request", response.request)?),
        })
    }

    /// `ListMyRequests`: access management's ListMyAccessRequests for the caller.
    pub(crate) async fn list_my_requests(
        &self,
        ctx: &Ctx,
        request: pb::ListMyRequestsRequest,
    ) -> Result<pb::ListMyRequestsResponse, GatewayError> {
        self.admit(ctx, method::LIST_MY_REQUESTS)?;
        let response = self
            .clients
            .list_my_access_requests(
                ctx,
                access::ListMyAccessRequestsRequest {
                    page_size: page_size(request.page_size, 100)?,
                    page_token: request.page_token,
                },
            )
            .await?;
        Ok(pb::ListMyRequestsResponse {
            requests: response.requests,
            next_page_token: response.next_page_token,
        })
    }

    /// `CancelMyRequest` (A6): access management cancels only the requester's own request.
    pub(crate) async fn cancel_my_request(
        &self,
        ctx: &Ctx,
        request: pb::CancelMyRequestRequest,
    ) -> Result<pb::CancelMyRequestResponse, GatewayError> {
        self.admit(ctx, method::CANCEL_MY_REQUEST)?;
        let request_id = id("request_id", &request.request_id)?;
        let response = self
            .clients
            .cancel_access_request(
                ctx,
                access::CancelAccessRequestRequest {
                    request_id: request_id.to_string(),
                    etag: request.etag,
                },
            )
            .await
            .map_err(|error| match error {
                // Someone else's request and an unknown id answer alike (rule I2).
                GatewayError::Downstream { ref status, .. }
                    if matches!(status.code(), Code::NotFound | Code::PermissionDenied) =>
                {
                    GatewayError::NotFound(NOT_ONE_OF_YOURS.into())
                }
                other => other,
            })?;
        Ok(pb::CancelMyRequestResponse {
            request: Some(required(Svc::Access, "request", response.request)?),
        })
    }

    /// `ListPendingRequests` (A3): the site's PENDING requests of the kinds the caller may
    /// decide (one check of both approval permissions, read concurrently), with the
    /// requesters' names.
    pub(crate) async fn list_pending_requests(
        &self,
        ctx: &Ctx,
        request: pb::ListPendingRequestsRequest,
    ) -> Result<pb::ListPendingRequestsResponse, GatewayError> {
        let site_id = id("site_id", &request.site_id)?;
        let size = page_size(request.page_size, 100)?;
        let Rule::Site(need) = rule(method::LIST_PENDING_REQUESTS) else {
            return Err(GatewayError::Internal(anyhow::anyhow!(
                "ListPendingRequests must have a Site rule"
            )));
        };
        let caller = ctx.caller()?;
        let kinds = async {
            if caller.is_operator() {
                return Ok(vec![
                    AccessRequestKind::SiteAccess,
                    AccessRequestKind::SupportAccess,
                ]);
            }
            if caller.is_service() {
                return Err(GatewayError::PermissionDenied(
                    super::SERVICES_ONLY_SEND_NOTICES.into(),
                ));
            }
            let allowed = self.check(ctx, site_id, need.permissions()).await?;
            if !need.satisfied_by(&allowed) {
                return Err(denied(need));
            }
            Ok(decidable_kinds(need.permissions(), &allowed))
        };
        let read = self.clients.list_access_requests(
            ctx,
            access::ListAccessRequestsRequest {
                site_id: site_id.to_string(),
                state: AccessRequestState::Pending as i32,
                page_size: size,
                page_token: request.page_token,
            },
        );
        let (kinds, read) = futures::join!(kinds, read);
        let kinds = kinds?;
        let read = read?;
        let requests: Vec<AccessRequest> = read
            .requests
            .into_iter()
            .filter(|r| kinds.iter().any(|kind| *kind as i32 == r.kind))
            .collect();
        let users = self
            .users_by_id(ctx, requests.iter().map(|r| r.requester_user_id.clone()))
            .await?;
        let requests = requests
            .into_iter()
            .map(|request| {
                let user = users.get(&request.requester_user_id);
                pb::AccessRequestView {
                    requester_display_name: user
                        .map(|u| u.display_name.clone())
                        .unwrap_or_default(),
                    requester_email: user.map(|u| u.email.clone()).unwrap_or_default(),
                    request: Some(request),
                }
            })
            .collect();
        Ok(pb::ListPendingRequestsResponse {
            requests,
            next_page_token: read.next_page_token,
        })
    }

    /// `DecideAccessRequest` (A3, A4, A6): reads the request, checks the approval
    /// permission of its kind on its own site, then approves or rejects it as the caller.
    pub(crate) async fn decide_access_request(
        &self,
        ctx: &Ctx,
        request: pb::DecideAccessRequestRequest,
    ) -> Result<pb::DecideAccessRequestResponse, GatewayError> {
        let request_id = id("request_id", &request.request_id)?;
        let decision = match AccessDecision::try_from(request.decision) {
            Ok(AccessDecision::Approve) => AccessDecision::Approve,
            Ok(AccessDecision::Reject) => AccessDecision::Reject,
            _ => {
                return Err(GatewayError::invalid(
                    "decision",
                    "must be ACCESS_DECISION_APPROVE or ACCESS_DECISION_REJECT",
                ));
            }
        };
        if rule(method::DECIDE_ACCESS_REQUEST) != Rule::RequestSite {
            return Err(GatewayError::Internal(anyhow::anyhow!(
                "DecideAccessRequest must have a RequestSite rule"
            )));
        }
        let caller = ctx.caller()?;
        if caller.is_service() {
            return Err(GatewayError::PermissionDenied(
                super::SERVICES_ONLY_SEND_NOTICES.into(),
            ));
        }
        if !caller.is_operator() {
            let stored = match self
                .clients
                .get_access_request(
                    &ctx.as_gateway(),
                    access::GetAccessRequestRequest {
                        request_id: request_id.to_string(),
                    },
                )
                .await
            {
                Ok(response) => required(Svc::Access, "request", response.request)?,
                // An unknown id answers like a request the caller may not decide (rule I2).
                Err(GatewayError::Downstream { status, .. }) if status.code() == Code::NotFound => {
                    return Err(GatewayError::PermissionDenied(MAY_NOT_DECIDE.into()));
                }
                Err(error) => return Err(error),
            };
            let site_id = uuid::Uuid::parse_str(&stored.site_id).map_err(|_| {
                GatewayError::Internal(anyhow::anyhow!("access request without a site id"))
            })?;
            let kind = AccessRequestKind::try_from(stored.kind).unwrap_or_default();
            let permission = decider_permission(kind).ok_or_else(|| {
                GatewayError::Internal(anyhow::anyhow!("access request of no kind"))
            })?;
            let need = Need::All(match permission {
                Permission::ApproveSupportAccess => &[Permission::ApproveSupportAccess],
                _ => &[Permission::ApproveSiteAccess],
            });
            self.require(ctx, site_id, need)
                .await
                .map_err(|error| match error {
                    // Said the same way whatever the request's kind or site (rule I2): the
                    // request's site is not the one the caller asked about, so no
                    // self-nomination signal either.
                    GatewayError::PermissionDenied(_) | GatewayError::NoSiteAccess(_) => {
                        GatewayError::PermissionDenied(MAY_NOT_DECIDE.into())
                    }
                    other => other,
                })?;
        }
        match decision {
            AccessDecision::Reject
                if request.valid_until.is_some()
                    || request.valid_for.is_some()
                    || request.valid_from.is_some() =>
            {
                let field = if request.valid_until.is_some() {
                    "valid_until"
                } else if request.valid_for.is_some() {
                    "valid_for"
                } else {
                    "valid_from"
                };
                Err(GatewayError::invalid(
                    field,
                    "rule T9: only an approval gives a grant a start or an end; leave them out when rejecting",
                ))
            }
            AccessDecision::Reject => {
                let response = self
                    .clients
                    .reject_access_request(
                        ctx,
                        access::RejectAccessRequestRequest {
                            request_id: request_id.to_string(),
                            reason: request.reason,
                            etag: request.etag,
                        },
                    )
                    .await?;
                Ok(pb::DecideAccessRequestResponse {
                    request: Some(required(Svc::Access, "request", response.request)?),
                    profile: None,
                    revision: String::new(),
                })
            }
            _ => {
                let response = self
                    .clients
                    .approve_access_request(
                        ctx,
                        access::ApproveAccessRequestRequest {
                            request_id: request_id.to_string(),
                            granted_tools: request.granted_tools,
                            granted_support_level: request.granted_support_level,
                            etag: request.etag,
                            note: request.reason,
                            valid_until: request.valid_until,
                            valid_for: request.valid_for,
                            valid_from: request.valid_from,
                        },
                    )
                    .await
                    .map_err(|error| error.rename_fields(&[("note", "reason")]))?;
                self.access_write_in_effect(ctx, &response.revision).await?;
                Ok(pb::DecideAccessRequestResponse {
                    request: Some(required(Svc::Access, "request", response.request)?),
                    profile: response.profile,
                    revision: revision_token(Svc::Access, &response.revision),
                })
            }
        }
    }

    /// `SetDomainPolicy` (A7): ACCESS_UPDATE, then access management's T4 and U4 on the
    /// baseline as the caller.
    pub(crate) async fn set_domain_policy(
        &self,
        ctx: &Ctx,
        request: pb::SetDomainPolicyRequest,
    ) -> Result<pb::SetDomainPolicyResponse, GatewayError> {
        let site_id = id("site_id", &request.site_id)?;
        self.admit_site(ctx, method::SET_DOMAIN_POLICY, site_id)
            .await?;
        let response = self
            .clients
            .set_domain_policy(
                ctx,
                access::SetDomainPolicyRequest {
                    site_id: site_id.to_string(),
                    domain: request.domain,
                    policy: request.policy,
                    baseline_tools: request.baseline_tools,
                    baseline_support_level: request.baseline_support_level,
                    etag: request.etag,
                },
            )
            .await?;
        Ok(pb::SetDomainPolicyResponse {
            domain_policy: Some(required(
                Svc::Access,
                "domain_policy",
                response.domain_policy,
            )?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kinds_a_caller_may_decide_follow_its_approval_permissions() {
        let both = [
            Permission::ApproveSiteAccess,
            Permission::ApproveSupportAccess,
        ];
        assert_eq!(
            decidable_kinds(&both, &[true, false]),
            vec![AccessRequestKind::SiteAccess]
        );
        assert_eq!(
            decidable_kinds(&both, &[false, true]),
            vec![AccessRequestKind::SupportAccess]
        );
        assert_eq!(decidable_kinds(&both, &[true, true]).len(), 2);
        assert!(decidable_kinds(&both, &[false, false]).is_empty());
    }
}
