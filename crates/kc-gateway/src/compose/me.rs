//! Self-service of a signed-in person about itself: UpdateMe, ChangePassword, ChangeEmail,
//! ConfirmEmailChange. Each is forwarded to identity with the caller's own access token, so
//! identity applies its rules to the person itself (not to a service acting for it). The
//! RPCs that check a secret (the current password, a mailed code) are rate limited per
//! caller address like the session RPCs.

use std::net::IpAddr;

use kc_proto::gateway as pb;
use kc_proto::identity;

use super::{Gateway, required};
use crate::clients::{Ctx, Svc};
use crate::error::GatewayError;
use crate::policy::method;

impl Gateway {
    /// `UpdateMe`: identity `UpdateUser` on the caller (rule I3 on names is identity's).
    pub(crate) async fn update_me(
        &self,
        ctx: &Ctx,
        request: pb::UpdateMeRequest,
    ) -> Result<pb::UpdateMeResponse, GatewayError> {
        let caller = self.admit(ctx, method::UPDATE_ME)?;
        let response = self
            .clients
            .update_user(
                &ctx.as_self()?,
                identity::UpdateUserRequest {
                    user_id: caller.subject.to_string(),
                    display_name: request.display_name,
                    locale: request.locale,
                    etag: request.etag,
                },
            )
            .await?;
        Ok(pb::UpdateMeResponse {
            user: Some(required(Svc::Identity, "user", response.user)?),
        })
    }

    /// `ChangePassword`: identity `ChangePassword` on the caller, which ends its other
    /// sessions and revokes their access tokens.
    pub(crate) async fn change_password(
        &self,
        ctx: &Ctx,
        peer: Option<IpAddr>,
        request: pb::ChangePasswordRequest,
    ) -> Result<pb::ChangePasswordResponse, GatewayError> {
        let caller = self.admit(ctx, method::CHANGE_PASSWORD)?;
        self.limit_sessions(peer)?;
        self.clients
            .change_password(
                &ctx.as_self()?,
                identity::ChangePasswordRequest {
                    user_id: caller.subject.to_string(),
                    current_password: request.current_password,
                    new_password: request.new_password,
                },
            )
            .await?;
        Ok(pb::ChangePasswordResponse {})
    }

    /// `ChangeEmail`: identity `ChangeEmail` on the caller; always empty (rule I2), the code
    /// goes to the new address.
    pub(crate) async fn change_email(
        &self,
        ctx: &Ctx,
        peer: Option<IpAddr>,
        request: pb::ChangeEmailRequest,
    ) -> Result<pb::ChangeEmailResponse, GatewayError> {
        let caller = self.admit(ctx, method::CHANGE_EMAIL)?;
        self.limit_sessions(peer)?;
        self.clients
            .change_email(
                &ctx.as_self()?,
                identity::ChangeEmailRequest {
                    user_id: caller.subject.to_string(),
                    new_email: request.new_email,
                    current_password: request.current_password,
                },
            )
            .await?;
        Ok(pb::ChangeEmailResponse {})
    }

    /// `ConfirmEmailChange`: identity `ConfirmEmailChange` on the caller with the code
    /// mailed to the new address; answers once access management knows the new address
    /// (domain policies match on it, A7; T8).
    pub(crate) async fn confirm_email_change(
        &self,
        ctx: &Ctx,
        peer: Option<IpAddr>,
        request: pb::ConfirmEmailChangeRequest,
    ) -> Result<pb::ConfirmEmailChangeResponse, GatewayError> {
        let caller = self.admit(ctx, method::CONFIRM_EMAIL_CHANGE)?;
        self.limit_sessions(peer)?;
        let response = self
            .clients
            .confirm_email_change(
                &ctx.as_self()?,
                identity::ConfirmEmailChangeRequest {
                    user_id: caller.subject.to_string(),
                    code: request.code,
                },
            )
            .await?;
        self.identity_write_in_effect(ctx, &response.revision)
            .await?;
        Ok(pb::ConfirmEmailChangeResponse {
            user: Some(required(Svc::Identity, "user", response.user)?),
        })
    }
}
