//! Every proto <-> domain conversion of identity: requests are parsed into the commands of
//! [`crate::domain::commands`], reporting every bad field in one pass, and domain results
//! are turned into their published form.

use kc_proto::identity as pb;
use kc_runtime::values::{Etag, parse_id, timestamp};
use kc_runtime::{ApiError, Violation, Violations};

use crate::domain::codes::Purpose;
use crate::domain::commands::{
    ClientCredentials, Credentials, EmailChange, EmailChangeProof, EmailProof, Invitation,
    MAX_BATCH_GET, MAX_BATCH_ITEMS, PasswordChange, PasswordReset, PresentedRefreshToken,
    Registration, ResetRequest, UserBatch, UserDraft, UserLookup, UserRef, UserUpdate,
};
use crate::domain::values::{DisplayName, Email, Locale, Password};
use crate::domain::{AccessToken, PublicKey, Revocation, SessionTokens, User, UserKind, UserState};

/// A code as presented: required.
fn presented_code(code: String) -> Result<String, Violation> {
    if code.trim().is_empty() {
        return Err(Violation::new("code", "the code is required"));
    }
    Ok(code)
}

/// A refresh token as presented: required.
fn presented_refresh_token(token: String) -> Result<PresentedRefreshToken, ApiError> {
    if token.trim().is_empty() {
        return Err(ApiError::invalid(
            "refresh_token",
            "refresh token is required",
        ));
    }
    Ok(PresentedRefreshToken { token })
}

/// The kind of a user to create: service accounts are not created here.
fn user_kind(kind: i32) -> Result<UserKind, Violation> {
    match pb::UserKind::try_from(kind) {
        Ok(pb::UserKind::Unspecified | pb::UserKind::Customer) => Ok(UserKind::Customer),
        Ok(pb::UserKind::Operator) => Ok(UserKind::Operator),
        Ok(pb::UserKind::Service) => Err(Violation::new(
            "kind",
            "service accounts are created with `kc-identity create-service-account`",
        )),
        Err(_) => Err(Violation::new("kind", "unknown user kind")),
    }
}

/// The one id of a request that names a user.
fn user_ref(user_id: &str) -> Result<UserRef, ApiError> {
    let user_id = parse_id("user_id", user_id)?;
    Ok(UserRef { user_id })
}

impl TryFrom<pb::RegisterUserRequest> for Registration {
    type Error = ApiError;

    fn try_from(r: pb::RegisterUserRequest) -> Result<Self, ApiError> {
        let mut v = Violations::new();
        let email = v.check(Email::parse("email", &r.email));
        let display_name = v.check(DisplayName::parse("display_name", &r.display_name));
        let locale = v.check(Locale::parse_or_default("locale", &r.locale));
        let password = v.check(Password::parse("password", &r.password));
        v.build(|| {
            Some(Registration {
                email: email?,
                display_name: display_name?,
                locale: locale?,
                password: password?,
            })
        })
    }
}

impl TryFrom<pb::VerifyEmailRequest> for EmailProof {
    type Error = ApiError;

    fn try_from(r: pb::VerifyEmailRequest) -> Result<Self, ApiError> {
        let mut v = Violations::new();
        let email = v.check(Email::parse("email", &r.email));
        let code = v.check(presented_code(r.code));
        v.build(|| {
            Some(EmailProof {
                email: email?,
                code: code?,
                password: Password::presented(&r.password),
            })
        })
    }
}

impl TryFrom<pb::RequestPasswordResetRequest> for ResetRequest {
    type Error = ApiError;

    fn try_from(r: pb::RequestPasswordResetRequest) -> Result<Self, ApiError> {
        let email = Email::parse("email", &r.email)?;
        Ok(ResetRequest { email })
    }
}

impl TryFrom<pb::ResetPasswordRequest> for PasswordReset {
    type Error = ApiError;

    fn try_from(r: pb::ResetPasswordRequest) -> Result<Self, ApiError> {
        let mut v = Violations::new();
        let email = v.check(Email::parse("email", &r.email));
        let new_password = v.check(Password::parse("new_password", &r.new_password));
        let code = v.check(presented_code(r.code));
        v.build(|| {
            Some(PasswordReset {
                email: email?,
                code: code?,
                new_password: new_password?,
            })
        })
    }
}

impl TryFrom<pb::CreateUserRequest> for UserDraft {
    type Error = ApiError;

    fn try_from(r: pb::CreateUserRequest) -> Result<Self, ApiError> {
        let mut v = Violations::new();
        let kind = v.check(user_kind(r.kind));
        let email = v.check(Email::parse("email", &r.email));
        let display_name = v.check(DisplayName::parse("display_name", &r.display_name));
        let locale = v.check(Locale::parse_or_default("locale", &r.locale));
        v.build(|| {
            Some(UserDraft {
                email: email?,
                display_name: display_name?,
                locale: locale?,
                kind: kind?,
            })
        })
    }
}

impl TryFrom<pb::InviteUserRequest> for Invitation {
    type Error = ApiError;

    fn try_from(r: pb::InviteUserRequest) -> Result<Self, ApiError> {
        let mut v = Violations::new();
        let email = v.check(Email::parse("email", &r.email));
        let display_name = if r.display_name.trim().is_empty() {
            None
        } else {
            v.check(DisplayName::parse("display_name", &r.display_name))
        };
        let locale = if r.locale.trim().is_empty() {
            None
        } else {
            v.check(Locale::parse("locale", &r.locale))
        };
        v.build(|| {
            Some(Invitation {
                email: email?,
                display_name,
                locale,
            })
        })
    }
}

/// Refuses a batch call whose `field` holds no item or more than [`MAX_BATCH_ITEMS`].
fn batch_size(field: &str, len: usize) -> Result<(), ApiError> {
    if len == 0 || len > MAX_BATCH_ITEMS {
        return Err(ApiError::invalid(
            field,
            format!("1 to {MAX_BATCH_ITEMS} per call"),
        ));
    }
    Ok(())
}

/// The invitations of a BatchInviteUsers, each parsed as InviteUser parses it: a bad one is
/// refused alone (its error in place of its invitation), not the batch.
pub(crate) fn invitations(
    r: pb::BatchInviteUsersRequest,
) -> Result<Vec<Result<Invitation, ApiError>>, ApiError> {
    batch_size("invitations", r.invitations.len())?;
    Ok(r.invitations
        .into_iter()
        .map(Invitation::try_from)
        .collect())
}

/// The e-mails of a BatchLookupUsers, each parsed as LookupUser parses it: a bad one is
/// refused alone.
pub(crate) fn lookups(
    r: pb::BatchLookupUsersRequest,
) -> Result<Vec<Result<UserLookup, ApiError>>, ApiError> {
    batch_size("emails", r.emails.len())?;
    Ok(r.emails
        .into_iter()
        .map(|email| pb::LookupUserRequest { email }.try_into())
        .collect())
}

/// A single call's error, as the refusal of one item of a batch call.
fn refusal(status: &tonic::Status) -> pb::Refusal {
    pb::Refusal {
        code: status.code() as i32,
        message: status.message().to_owned(),
        details: status.details().to_vec(),
    }
}

/// What InviteUser would have answered: its response, or its error as a status.
pub(crate) fn invitation_result(
    result: Result<(User, bool), tonic::Status>,
) -> pb::InvitationResult {
    use pb::invitation_result::Result as Answer;
    pb::InvitationResult {
        result: Some(match result {
            Ok((user, invited)) => Answer::Invited(pb::InviteUserResponse {
                user: Some((&user).into()),
                invited,
            }),
            Err(status) => Answer::Refused(refusal(&status)),
        }),
    }
}

/// What LookupUser would have answered: the account, nothing when nobody has the address,
/// or its error as a status.
pub(crate) fn lookup_result(result: Result<Option<User>, tonic::Status>) -> pb::UserLookupResult {
    use pb::user_lookup_result::Result as Answer;
    pb::UserLookupResult {
        result: match result {
            Ok(user) => user.map(|user| Answer::User((&user).into())),
            Err(status) => Some(Answer::Refused(refusal(&status))),
        },
    }
}

impl TryFrom<pb::ChangeEmailRequest> for EmailChange {
    type Error = ApiError;

    fn try_from(r: pb::ChangeEmailRequest) -> Result<Self, ApiError> {
        let mut v = Violations::new();
        let user_id = v.check(parse_id("user_id", &r.user_id));
        let new_email = v.check(Email::parse("new_email", &r.new_email));
        v.build(|| {
            Some(EmailChange {
                user_id: user_id?,
                new_email: new_email?,
                current_password: Password::presented(&r.current_password),
            })
        })
    }
}

impl TryFrom<pb::ConfirmEmailChangeRequest> for EmailChangeProof {
    type Error = ApiError;

    fn try_from(r: pb::ConfirmEmailChangeRequest) -> Result<Self, ApiError> {
        let mut v = Violations::new();
        let user_id = v.check(parse_id("user_id", &r.user_id));
        let code = v.check(presented_code(r.code));
        v.build(|| {
            Some(EmailChangeProof {
                user_id: user_id?,
                code: code?,
            })
        })
    }
}

impl TryFrom<pb::GetUserRequest> for UserRef {
    type Error = ApiError;

    fn try_from(r: pb::GetUserRequest) -> Result<Self, ApiError> {
        user_ref(&r.user_id)
    }
}

impl TryFrom<pb::DisableUserRequest> for UserRef {
    type Error = ApiError;

    fn try_from(r: pb::DisableUserRequest) -> Result<Self, ApiError> {
        user_ref(&r.user_id)
    }
}

impl TryFrom<pb::EnableUserRequest> for UserRef {
    type Error = ApiError;

    fn try_from(r: pb::EnableUserRequest) -> Result<Self, ApiError> {
        user_ref(&r.user_id)
    }
}

impl TryFrom<pb::BatchGetUsersRequest> for UserBatch {
    type Error = ApiError;

    fn try_from(r: pb::BatchGetUsersRequest) -> Result<Self, ApiError> {
        if r.user_ids.len() > MAX_BATCH_GET {
            return Err(ApiError::invalid(
                "user_ids",
                "at most 500 user ids per call",
            ));
        }
        let mut v = Violations::new();
        let user_ids: Vec<_> = r
            .user_ids
            .iter()
            .enumerate()
            .filter_map(|(index, text)| v.check(parse_id(&format!("user_ids[{index}]"), text)))
            .collect();
        v.build(|| Some(UserBatch { user_ids }))
    }
}

impl TryFrom<pb::LookupUserRequest> for UserLookup {
    type Error = ApiError;

    fn try_from(r: pb::LookupUserRequest) -> Result<Self, ApiError> {
        let email = Email::parse("email", &r.email)?;
        Ok(UserLookup { email })
    }
}

impl TryFrom<pb::UpdateUserRequest> for UserUpdate {
    type Error = ApiError;

    /// The fields first (`InvalidArgument` with all of them), then the etag (a malformed
    /// one is `Aborted`, like a stale one).
    fn try_from(r: pb::UpdateUserRequest) -> Result<Self, ApiError> {
        let mut v = Violations::new();
        let user_id = v.check(parse_id("user_id", &r.user_id));
        let display_name = r
            .display_name
            .as_deref()
            .and_then(|text| v.check(DisplayName::parse("display_name", text)));
        let locale = r
            .locale
            .as_deref()
            .and_then(|text| v.check(Locale::parse("locale", text)));
        let user_id = v.build(|| user_id)?;
        let etag = Etag::parse("etag", &r.etag)?;
        Ok(UserUpdate {
            user_id,
            display_name,
            locale,
            etag,
        })
    }
}

impl TryFrom<pb::ChangePasswordRequest> for PasswordChange {
    type Error = ApiError;

    fn try_from(r: pb::ChangePasswordRequest) -> Result<Self, ApiError> {
        let mut v = Violations::new();
        let user_id = v.check(parse_id("user_id", &r.user_id));
        let new_password = v.check(Password::parse("new_password", &r.new_password));
        v.build(|| {
            Some(PasswordChange {
                user_id: user_id?,
                current_password: Password::presented(&r.current_password),
                new_password: new_password?,
            })
        })
    }
}

impl From<pb::AuthenticateRequest> for Credentials {
    fn from(r: pb::AuthenticateRequest) -> Self {
        Credentials {
            password: Password::presented(&r.password),
            email: r.email,
        }
    }
}

impl TryFrom<pb::RefreshSessionRequest> for PresentedRefreshToken {
    type Error = ApiError;

    fn try_from(r: pb::RefreshSessionRequest) -> Result<Self, ApiError> {
        presented_refresh_token(r.refresh_token)
    }
}

impl TryFrom<pb::RevokeSessionRequest> for PresentedRefreshToken {
    type Error = ApiError;

    fn try_from(r: pb::RevokeSessionRequest) -> Result<Self, ApiError> {
        presented_refresh_token(r.refresh_token)
    }
}

impl From<pb::IssueServiceTokenRequest> for ClientCredentials {
    fn from(r: pb::IssueServiceTokenRequest) -> Self {
        ClientCredentials {
            client_id: r.client_id,
            client_secret: r.client_secret,
        }
    }
}

impl From<UserKind> for pb::UserKind {
    fn from(kind: UserKind) -> Self {
        match kind {
            UserKind::Customer => pb::UserKind::Customer,
            UserKind::Operator => pb::UserKind::Operator,
        }
    }
}

impl From<UserState> for pb::UserState {
    fn from(state: UserState) -> Self {
        match state {
            UserState::Active => pb::UserState::Active,
            UserState::Invited => pb::UserState::Invited,
            UserState::Disabled => pb::UserState::Disabled,
        }
    }
}

impl From<&User> for pb::User {
    /// The published form of a user.
    fn from(user: &User) -> Self {
        pb::User {
            user_id: user.user_id.to_string(),
            email: user.email.clone(),
            email_verified: user.email_verified,
            display_name: user.display_name.clone(),
            locale: user.locale.clone(),
            kind: pb::UserKind::from(user.kind) as i32,
            state: pb::UserState::from(user.state) as i32,
            create_time: Some(timestamp(user.create_time)),
            update_time: Some(timestamp(user.update_time)),
            etag: user.etag(),
        }
    }
}

impl From<Purpose> for pb::VerificationPurpose {
    fn from(purpose: Purpose) -> Self {
        match purpose {
            Purpose::Registration => pb::VerificationPurpose::Registration,
            Purpose::Invitation => pb::VerificationPurpose::Invitation,
            Purpose::PasswordReset => pb::VerificationPurpose::PasswordReset,
            Purpose::EmailChange => pb::VerificationPurpose::EmailChange,
        }
    }
}

impl From<&Revocation> for pb::TokenRevocation {
    /// The published form of a revocation.
    fn from(revocation: &Revocation) -> Self {
        pb::TokenRevocation {
            user_id: revocation.user_id.to_string(),
            session_id: revocation
                .session_id
                .map(|id| id.to_string())
                .unwrap_or_default(),
            issued_before: Some(timestamp(revocation.issued_before)),
            expire_time: Some(timestamp(revocation.expire_time)),
        }
    }
}

impl From<&PublicKey> for pb::SigningKey {
    fn from(key: &PublicKey) -> Self {
        pb::SigningKey {
            kid: key.kid.clone(),
            algorithm: kc_runtime::token::ALGORITHM.to_owned(),
            public_key: key.public_key.as_bytes().to_vec(),
            create_time: Some(timestamp(key.create_time)),
        }
    }
}

impl From<SessionTokens> for pb::AuthenticateResponse {
    fn from(tokens: SessionTokens) -> Self {
        pb::AuthenticateResponse {
            access_token: tokens.access.token,
            refresh_token: tokens.refresh_token,
            access_token_expire_time: Some(timestamp(tokens.access.expire_time)),
            user: Some(pb::User::from(&tokens.user)),
        }
    }
}

impl From<SessionTokens> for pb::RefreshSessionResponse {
    fn from(tokens: SessionTokens) -> Self {
        pb::RefreshSessionResponse {
            access_token: tokens.access.token,
            refresh_token: tokens.refresh_token,
            access_token_expire_time: Some(timestamp(tokens.access.expire_time)),
        }
    }
}

impl From<AccessToken> for pb::IssueServiceTokenResponse {
    fn from(token: AccessToken) -> Self {
        pb::IssueServiceTokenResponse {
            access_token: token.token,
            access_token_expire_time: Some(timestamp(token.expire_time)),
        }
    }
}
