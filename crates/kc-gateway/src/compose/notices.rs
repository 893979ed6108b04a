//! Notices: SendNotice (operators, and service accounts with the scope `notices`) and
//! ListSiteNotifications.

use kc_proto::gateway as pb;
use kc_proto::notification;

use super::{Gateway, id, page_size};
use crate::clients::Ctx;
use crate::error::GatewayError;
use crate::policy::{method, missing_scope};

impl Gateway {
    /// `SendNotice` (operators, and service accounts whose token carries the scope
    /// `notices`): notification's SendNotice, as the caller.
    pub(crate) async fn send_notice(
        &self,
        ctx: &Ctx,
        request: pb::SendNoticeRequest,
    ) -> Result<pb::SendNoticeResponse, GatewayError> {
        let caller = self.admit(ctx, method::SEND_NOTICE)?;
        if let Some(refusal) = missing_scope(caller, method::SEND_NOTICE) {
            return Err(GatewayError::PermissionDenied(refusal));
        }
        let response = self
            .clients
            .send_notice(
                ctx,
                notification::SendNoticeRequest {
                    site_id: request.site_id,
                    kind: request.kind,
                    params: request.params,
                    idempotency_key: request.idempotency_key,
                },
            )
            .await?;
        Ok(pb::SendNoticeResponse {
            notifications: response.notifications,
            replayed: response.replayed,
        })
    }

    /// `ListSiteNotifications`: ACCOUNT_MANAGEMENT, checked while the notifications are
    /// read.
    pub(crate) async fn list_site_notifications(
        &self,
        ctx: &Ctx,
        request: pb::ListSiteNotificationsRequest,
    ) -> Result<pb::ListSiteNotificationsResponse, GatewayError> {
        let site_id = id("site_id", &request.site_id)?;
        let size = page_size(request.page_size, 100)?;
        let (allowed, read) = futures::join!(
            self.admit_site(ctx, method::LIST_SITE_NOTIFICATIONS, site_id),
            self.clients.list_notifications(
                ctx,
                notification::ListNotificationsRequest {
                    site_id: site_id.to_string(),
                    recipient_user_id: String::new(),
                    state: 0,
                    page_size: size,
                    page_token: request.page_token,
                },
            )
        );
        allowed?;
        let read = read?;
        Ok(pb::ListSiteNotificationsResponse {
            notifications: read.notifications,
            next_page_token: read.next_page_token,
        })
    }
}
