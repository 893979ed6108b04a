//! The identity domain: values, rules and transaction boundaries.

pub mod codes;
pub mod commands;
pub mod keys;
pub mod password;
pub mod service;
pub mod settings;
pub mod values;

use chrono::{DateTime, Utc};
use ed25519_dalek::VerifyingKey;
use kc_runtime::{ApiError, Violation};
use uuid::Uuid;

pub use service::Identity;

/// Kind of a user account (service accounts live in their own table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserKind {
    /// A person of a customer.
    Customer,
    /// A person operating the suite.
    Operator,
}

impl UserKind {
    /// Name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Customer => "customer",
            Self::Operator => "operator",
        }
    }

    /// Parses the stored name.
    pub fn from_db(text: &str) -> Option<Self> {
        match text {
            "customer" => Some(Self::Customer),
            "operator" => Some(Self::Operator),
            _ => None,
        }
    }
}

/// Lifecycle state of a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserState {
    /// May sign in.
    Active,
    /// Unproven (rule I1): the address was not proven yet; holds nothing, cannot sign in.
    Invited,
    /// Disabled by an operator.
    Disabled,
}

impl UserState {
    /// Name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Invited => "invited",
            Self::Disabled => "disabled",
        }
    }

    /// Parses the stored name.
    pub fn from_db(text: &str) -> Option<Self> {
        match text {
            "active" => Some(Self::Active),
            "invited" => Some(Self::Invited),
            "disabled" => Some(Self::Disabled),
            _ => None,
        }
    }
}

/// A user as the domain sees it (never its password hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Id.
    pub user_id: Uuid,
    /// Normalised login e-mail.
    pub email: String,
    /// Whether the e-mail was verified.
    pub email_verified: bool,
    /// Display name.
    pub display_name: String,
    /// BCP-47 locale.
    pub locale: String,
    /// Kind.
    pub kind: UserKind,
    /// State.
    pub state: UserState,
    /// Version, the etag.
    pub version: i64,
    /// Creation time.
    pub create_time: DateTime<Utc>,
    /// Last change.
    pub update_time: DateTime<Utc>,
}

impl User {
    /// The etag clients send back for optimistic concurrency.
    pub fn etag(&self) -> String {
        self.version.to_string()
    }
}

/// Access tokens that no longer count (rule I4).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Revocation {
    /// Id of the revocation.
    pub revocation_id: Uuid,
    /// Whose tokens.
    pub user_id: Uuid,
    /// Only the tokens of this session (claim `sid`), when set.
    pub session_id: Option<Uuid>,
    /// Tokens issued (`iat`) at or before this instant are revoked.
    pub issued_before: DateTime<Utc>,
    /// Every token it covers has expired after this instant.
    pub expire_time: DateTime<Utc>,
}

/// A public key that verifies tokens.
#[derive(Debug, Clone)]
pub struct PublicKey {
    /// Key id.
    pub kid: String,
    /// Raw 32-byte public key.
    pub public_key: VerifyingKey,
    /// Creation time.
    pub create_time: DateTime<Utc>,
}

/// A signed access token and when it expires.
#[derive(Debug, Clone)]
pub struct AccessToken {
    /// The compact JWT.
    pub token: String,
    /// Its `exp`.
    pub expire_time: DateTime<Utc>,
}

/// What a successful sign-in or refresh returns.
#[derive(Debug, Clone)]
pub struct SessionTokens {
    /// Access token.
    pub access: AccessToken,
    /// New refresh token (single use).
    pub refresh_token: String,
    /// The user.
    pub user: User,
}

pub use kc_runtime::values::{Etag, parse_id};

/// Everything that can go wrong in identity, mapped exhaustively onto the API categories.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The request is malformed.
    #[error("invalid request")]
    Invalid(Vec<Violation>),
    /// The e-mail belongs to another user.
    #[error("a user with this e-mail already exists")]
    EmailTaken,
    /// No such user (or the caller may not see it).
    #[error("user not found")]
    UserNotFound,
    /// Wrong e-mail or password: one message for both, so it tells nothing.
    #[error("invalid e-mail or password")]
    BadCredentials,
    /// Too many failed sign-ins for this e-mail.
    #[error("too many failed sign-in attempts, try again later")]
    Locked,
    /// The account is disabled (said only to someone who proved the password).
    #[error("this account is disabled")]
    Disabled,
    /// Code wrong, expired, used up, locked, or the address has no such code: one answer
    /// for all (rule I2).
    #[error("the code is wrong or expired (a registration claim also needs its password)")]
    BadVerificationCode,
    /// The address looks the same as another account's (rule I3).
    #[error("rule I3: the address looks the same as another account's address")]
    Confusable,
    /// The new login e-mail was taken (or a look-alike proven) since the change was asked.
    #[error("rule I3: the new address is no longer available")]
    AddressUnavailable,
    /// Refresh token unknown, expired or revoked.
    #[error("refresh token is invalid or expired")]
    BadRefreshToken,
    /// An already-rotated refresh token came back: its session family is revoked.
    #[error("refresh token was already used; the session has been revoked")]
    RefreshTokenReused,
    /// The etag does not match the current version.
    #[error("user changed since it was read (etag mismatch)")]
    EtagMismatch,
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(&'static str),
    /// Service-account credentials are wrong.
    #[error("invalid client credentials")]
    BadClientCredentials,
    /// A service account with this name exists.
    #[error("a service account with this name already exists")]
    ServiceAccountExists,
    /// The database refused or failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// Anything unexpected.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<Violation> for IdentityError {
    fn from(violation: Violation) -> Self {
        Self::Invalid(vec![violation])
    }
}

impl From<ApiError> for IdentityError {
    fn from(error: ApiError) -> Self {
        match error {
            ApiError::InvalidArgument(violations) => Self::Invalid(violations),
            other => Self::Internal(anyhow::anyhow!(other.to_string())),
        }
    }
}

impl From<IdentityError> for ApiError {
    fn from(error: IdentityError) -> Self {
        let message = error.to_string();
        match error {
            IdentityError::Invalid(violations) => ApiError::InvalidArgument(violations),
            IdentityError::EmailTaken => ApiError::AlreadyExists(message),
            IdentityError::ServiceAccountExists => ApiError::AlreadyExists(message),
            IdentityError::UserNotFound => ApiError::NotFound(message),
            IdentityError::BadCredentials
            | IdentityError::BadRefreshToken
            | IdentityError::RefreshTokenReused
            | IdentityError::BadClientCredentials => ApiError::Unauthenticated(message),
            IdentityError::Disabled => ApiError::PermissionDenied(message),
            IdentityError::Locked => ApiError::ResourceExhausted(message),
            IdentityError::BadVerificationCode => ApiError::invalid("code", message),
            IdentityError::EtagMismatch => ApiError::Aborted(message),
            IdentityError::Confusable | IdentityError::AddressUnavailable => {
                ApiError::FailedPrecondition(message)
            }
            IdentityError::Forbidden(message) => ApiError::PermissionDenied(message.to_owned()),
            IdentityError::Database(error) => ApiError::from(error),
            IdentityError::Internal(error) => ApiError::Internal(error),
        }
    }
}

impl From<IdentityError> for tonic::Status {
    fn from(error: IdentityError) -> Self {
        ApiError::from(error).into()
    }
}

/// Result of the identity domain.
pub type Result<T, E = IdentityError> = std::result::Result<T, E>;
