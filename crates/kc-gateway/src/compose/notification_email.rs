//! `ConfirmNotificationEmail`: a signed-in person proves a notification e-mail (C9) asked
//! for one of its own contacts with the code mailed to it (C11). The registry is asked for
//! the caller itself (`x-kc-on-behalf-of`, or an operator's own token), and confirms only a
//! contact of that user: nobody confirms an address for someone else. The RPC checks a
//! mailed code, so it is rate limited per caller address like the session RPCs.

use std::net::IpAddr;

use kc_proto::contacts;
use kc_proto::gateway as pb;

use super::{Gateway, required};
use crate::clients::{Ctx, Svc};
use crate::error::GatewayError;
use crate::policy::method;

impl Gateway {
    /// `ConfirmNotificationEmail`: registry `ConfirmNotificationEmail` for the caller.
    pub(crate) async fn confirm_notification_email(
        &self,
        ctx: &Ctx,
        peer: Option<IpAddr>,
        request: pb::ConfirmNotificationEmailRequest,
    ) -> Result<pb::ConfirmNotificationEmailResponse, GatewayError> {
        self.admit(ctx, method::CONFIRM_NOTIFICATION_EMAIL)?;
        self.limit_sessions(peer)?;
        let response = self
            .clients
            .confirm_notification_email(
                ctx,
                contacts::ConfirmNotificationEmailRequest {
                    code: request.code,
                    site_id: request.site_id,
                    contact_id: request.contact_id,
                },
            )
            .await?;
        Ok(pb::ConfirmNotificationEmailResponse {
            contact: Some(required(Svc::Contacts, "contact", response.contact)?),
        })
    }
}
