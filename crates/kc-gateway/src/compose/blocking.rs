//! Blocked requesters: BlockRequester, UnblockRequester, ListBlockedRequesters. The site's
//! approvers of either kind (A3) block an e-mail address, or a domain with its subdomains,
//! from asking for access to the site again; SelfNominate then answers such a user exactly
//! as it answers a wrong site number (S3), which access management decides in the
//! submission's transaction. The gateway checks the approval permissions first; access
//! management checks them again where it writes, and normalises and audits.

use kc_proto::access;
use kc_proto::gateway as pb;

use super::{Gateway, id, page_size, required};
use crate::clients::{Ctx, Svc};
use crate::error::GatewayError;
use crate::policy::method;

impl Gateway {
    /// `BlockRequester`: access management's BlockRequester as the caller, after the site
    /// check of the policy table.
    pub(crate) async fn block_requester(
        &self,
        ctx: &Ctx,
        request: pb::BlockRequesterRequest,
    ) -> Result<pb::BlockRequesterResponse, GatewayError> {
        let site_id = id("site_id", &request.site_id)?;
        self.admit_site(ctx, method::BLOCK_REQUESTER, site_id)
            .await?;
        let response = self
            .clients
            .block_requester(
                ctx,
                access::BlockRequesterRequest {
                    site_id: site_id.to_string(),
                    email: request.email,
                    domain: request.domain,
                    reason: request.reason,
                    reject_pending: request.reject_pending,
                },
            )
            .await?;
        Ok(pb::BlockRequesterResponse {
            block: Some(required(Svc::Access, "block", response.block)?),
            rejected_requests: response.rejected_requests,
        })
    }

    /// `UnblockRequester`: access management's UnblockRequester as the caller, after the
    /// site check.
    pub(crate) async fn unblock_requester(
        &self,
        ctx: &Ctx,
        request: pb::UnblockRequesterRequest,
    ) -> Result<pb::UnblockRequesterResponse, GatewayError> {
        let site_id = id("site_id", &request.site_id)?;
        self.admit_site(ctx, method::UNBLOCK_REQUESTER, site_id)
            .await?;
        let response = self
            .clients
            .unblock_requester(
                ctx,
                access::UnblockRequesterRequest {
                    site_id: site_id.to_string(),
                    email: request.email,
                    domain: request.domain,
                    reason: request.reason,
                },
            )
            .await?;
        Ok(pb::UnblockRequesterResponse {
            block: Some(required(Svc::Access, "block", response.block)?),
        })
    }

    /// `ListBlockedRequesters`: the site check, then access management's list (read only
    /// once the check passed: the list names people).
    pub(crate) async fn list_blocked_requesters(
        &self,
        ctx: &Ctx,
        request: pb::ListBlockedRequestersRequest,
    ) -> Result<pb::ListBlockedRequestersResponse, GatewayError> {
        let site_id = id("site_id", &request.site_id)?;
        let size = page_size(request.page_size, 100)?;
        self.admit_site(ctx, method::LIST_BLOCKED_REQUESTERS, site_id)
            .await?;
        let response = self
            .clients
            .list_blocked_requesters(
                ctx,
                access::ListBlockedRequestersRequest {
                    site_id: site_id.to_string(),
                    page_size: size,
                    page_token: request.page_token,
                },
            )
            .await?;
        Ok(pb::ListBlockedRequestersResponse {
            blocks: response.blocks,
            next_page_token: response.next_page_token,
        })
    }
}
