//! Sessions (public, rate limited per caller address): Register, VerifyEmail, Login,
//! Refresh, Logout, forwarded to identity.

use std::net::IpAddr;

use kc_proto::gateway as pb;
use kc_proto::identity;

use super::{Gateway, required};
use crate::clients::{Ctx, Svc};
use crate::error::GatewayError;

impl Gateway {
    /// `Register`: identity `RegisterUser`.
    pub async fn register(
        &self,
        ctx: &Ctx,
        peer: Option<IpAddr>,
        request: pb::RegisterRequest,
    ) -> Result<pb::RegisterResponse, GatewayError> {
        self.limit_sessions(peer)?;
        let response = self
            .clients
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
        Ok(pb::RegisterResponse {
            user: Some(required(Svc::Identity, "user", response.user)?),
        })
    }

    /// `VerifyEmail`: identity `VerifyEmail`.
    pub async fn verify_email(
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
                    user_id: request.user_id,
                    code: request.code,
                    password: request.password,
                },
            )
            .await?;
        Ok(pb::VerifyEmailResponse {
            user: Some(required(Svc::Identity, "user", response.user)?),
        })
    }

    /// `Login`: identity `Authenticate`.
    pub async fn login(
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

    /// `Refresh`: identity `RefreshSession`.
    pub async fn refresh(
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

    /// `Logout`: identity `RevokeSession`.
    pub async fn logout(
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
