//! The portfolio's compliance gaps (ListComplianceGaps, operators). The gaps of one site
//! (GetSiteCompliance) are in `sites`; both come from the registry, which keeps what it needs
//! of identity (users' states) and notification (failing addresses) as projections of their
//! event streams, so one keyset page holds every kind (see `kc_contacts::domain::compliance`).

use kc_proto::contacts;
use kc_proto::gateway as pb;
use kc_runtime::values::CustomerNumber;

use super::{Gateway, page_size};
use crate::clients::Ctx;
use crate::error::GatewayError;
use crate::policy::method;

impl Gateway {
    /// `ListComplianceGaps` (operators): the registry's `ListComplianceGaps`, optionally of
    /// one kind and one customer.
    pub(crate) async fn list_compliance_gaps(
        &self,
        ctx: &Ctx,
        request: pb::ListComplianceGapsRequest,
    ) -> Result<pb::ListComplianceGapsResponse, GatewayError> {
        self.admit(ctx, method::LIST_COMPLIANCE_GAPS)?;
        if contacts::ComplianceGapKind::try_from(request.kind).is_err() {
            return Err(GatewayError::invalid(
                "kind",
                "not a known ComplianceGapKind",
            ));
        }
        let customer_number = if request.customer_number.trim().is_empty() {
            String::new()
        } else {
            CustomerNumber::parse("customer_number", &request.customer_number)?
                .as_str()
                .to_owned()
        };
        let page = self
            .clients
            .list_compliance_gaps(
                ctx,
                contacts::ListComplianceGapsRequest {
                    page_size: page_size(request.page_size, 100)?,
                    page_token: request.page_token,
                    kind: request.kind,
                    customer_number,
                },
            )
            .await?;
        Ok(pb::ListComplianceGapsResponse {
            sites: page.sites,
            next_page_token: page.next_page_token,
        })
    }
}
