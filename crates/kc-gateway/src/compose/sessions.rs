//! Sessions (public, rate limited per caller address): Register, VerifyEmail,
//! RequestPasswordReset, ResetPassword, Login, Refresh, IssueServiceToken, Logout, forwarded
//! to identity.
//!
//! Register and RequestPasswordReset answer alike for every address (rule I2): identity's
//! empty answer is passed on as an empty answer, and what differs goes by e-mail.

use std::net::IpAddr;

use kc_proto::gateway as pb;
use kc_proto::identity;

use super::{Gateway, required};
use crate::clients::{Ctx, Svc};
use crate::error::GatewayError;

impl Gateway {
    /// `Register`: identity `RegisterUser`. The answer is empty whatever the address (rule
    /// I2): the next step is in the mail identity sends to it.
    pub(crate) async fn register(
        &self,
        ctx: &Ctx,
        peer: Option<IpAddr>,
        request: pb::RegisterRequest,
    ) -> Result<pb::RegisterResponse, GatewayError> {
        self.limit_sessions(peer)?;
        self.clients
            .register_user(
                ctx,
                identity::RegisterUserRequest {
                    email: request.email,
                    display_name: request.display_name,
                    password: request.password,
                    locale: request.locale,
                },
            )
            .await?;
        Ok(pb::RegisterResponse {})
    }

    /// `VerifyEmail`: identity `VerifyEmail` with the address, the mailed code and the
    /// password of the registration (rule I1); answers once access management counts the
    /// person proven, so that its rights hold from its first call (T8).
    pub(crate) async fn verify_email(
        &self,
        ctx: &Ctx,
        peer: Option<IpAddr>,
        request: pb::VerifyEmailRequest,
    ) -> Result<pb::VerifyEmailResponse, GatewayError> {
        self.limit_sessions(peer)?;
        let response = self
            .clients
            .verify_email(
                ctx,
                identity::VerifyEmailRequest {
                    email: request.email,
                    code: request.code,
                    password: request.password,
                },
            )
            .await?;
        self.identity_write_in_effect(ctx, &response.revision)
            .await?;
        Ok(pb::VerifyEmailResponse {
            user: Some(required(Svc::Identity, "user", response.user)?),
        })
    }

    /// `RequestPasswordReset`: identity `RequestPasswordReset`; always empty (rule I2).
    pub(crate) async fn request_password_reset(
        &self,
        ctx: &Ctx,
        peer: Option<IpAddr>,
        request: pb::RequestPasswordResetRequest,
    ) -> Result<pb::RequestPasswordResetResponse, GatewayError> {
        self.limit_sessions(peer)?;
        self.clients
            .request_password_reset(
                ctx,
                identity::RequestPasswordResetRequest {
                    email: request.email,
                },
            )
            .await?;
        Ok(pb::RequestPasswordResetResponse {})
    }

    /// `ResetPassword`: identity `ResetPassword`, which proves the address, ends every
    /// session and revokes every access token of the account.
    pub(crate) async fn reset_password(
        &self,
        ctx: &Ctx,
        peer: Option<IpAddr>,
        request: pb::ResetPasswordRequest,
    ) -> Result<pb::ResetPasswordResponse, GatewayError> {
        self.limit_sessions(peer)?;
        let response = self
            .clients
            .reset_password(
                ctx,
                identity::ResetPasswordRequest {
                    email: request.email,
                    code: request.code,
                    new_password: request.new_password,
                },
            )
            .await?;
        // A reset proves the address: answered once access management counts it (I1, T8).
        self.identity_write_in_effect(ctx, &response.revision)
            .await?;
        Ok(pb::ResetPasswordResponse {})
    }

    /// `Login`: identity `Authenticate`.
    pub(crate) async fn login(
        &self,
        ctx: &Ctx,
        peer: Option<IpAddr>,
        request: pb::LoginRequest,
    ) -> Result<pb::LoginResponse, GatewayError> {
        self.limit_sessions(peer)?;
        let response = self
            .clients
            .authenticate(
                ctx,
                identity::AuthenticateRequest {
                    email: request.email,
                    password: request.password,
                },
            )
            .await?;
        Ok(pb::LoginResponse {
            access_token: response.access_token,
            refresh_token: response.refresh_token,
            access_token_expire_time: response.access_token_expire_time,
            user: response.user,
        })
    }

    /// `IssueServiceToken`: identity `IssueServiceToken`, for relying applications (a wrong
    /// client id or secret is identity's one `Unauthenticated` answer for both).
    pub(crate) async fn issue_service_token(
        &self,
        ctx: &Ctx,
        peer: Option<IpAddr>,
        request: pb::IssueServiceTokenRequest,
    ) -> Result<pb::IssueServiceTokenResponse, GatewayError> {
        self.limit_sessions(peer)?;
        let response = self
            .clients
            .issue_service_token(
                ctx,
                identity::IssueServiceTokenRequest {
                    client_id: request.client_id,
                    client_secret: request.client_secret,
                },
            )
            .await?;
        Ok(pb::IssueServiceTokenResponse {
            access_token: response.access_token,
            access_token_expire_time: response.access_token_expire_time,
        })
    }

    /// `Refresh`: identity `RefreshSession`.
    pub(crate) async fn refresh(
        &self,
        ctx: &Ctx,
        peer: Option<IpAddr>,
        request: pb::RefreshRequest,
    ) -> Result<pb::RefreshResponse, GatewayError> {
        self.limit_sessions(peer)?;
        let response = self
            .clients
            .refresh_session(
                ctx,
                identity::RefreshSessionRequest {
                    refresh_token: request.refresh_token,
                },
            )
            .await?;
        Ok(pb::RefreshResponse {
            access_token: response.access_token,
            refresh_token: response.refresh_token,
            access_token_expire_time: response.access_token_expire_time,
        })
    }

    /// `Logout`: identity `RevokeSession`, which ends the session of the refresh token and
    /// revokes the access tokens issued in it (rule I4).
    pub(crate) async fn logout(
        &self,
        ctx: &Ctx,
        peer: Option<IpAddr>,
        request: pb::LogoutRequest,
    ) -> Result<pb::LogoutResponse, GatewayError> {
        self.limit_sessions(peer)?;
        self.clients
            .revoke_session(
                ctx,
                identity::RevokeSessionRequest {
                    refresh_token: request.refresh_token,
                },
            )
            .await?;
        Ok(pb::LogoutResponse {})
    }
}
