//! The requests of identity once parsed: every field is a checked domain value, so the
//! service never sees a malformed request (`convert` builds them from the proto requests).

use uuid::Uuid;

use super::UserKind;
use super::values::{DisplayName, Email, Locale, Password};
use kc_runtime::values::Etag;

/// Most ids one `BatchGetUsers` may ask for.
pub const MAX_BATCH_GET: usize = 500;
/// Most items in one BatchInviteUsers or BatchLookupUsers.
pub const MAX_BATCH_ITEMS: usize = 100;

/// A registration (RegisterUser): the claim that waits for the proof of the address.
#[derive(Debug)]
pub struct Registration {
    /// E-mail.
    pub email: Email,
    /// Display name, applied at the proof.
    pub display_name: DisplayName,
    /// Locale, applied at the proof.
    pub locale: Locale,
    /// Password, applied at the proof.
    pub password: Password,
}

/// The proof of an address with its code (VerifyEmail).
#[derive(Debug)]
pub struct EmailProof {
    /// The address the code was mailed to.
    pub email: Email,
    /// The code as presented (not empty).
    pub code: String,
    /// The password of the claim, as presented.
    pub password: Password,
}

/// A request for a password-reset code (RequestPasswordReset).
#[derive(Debug)]
pub struct ResetRequest {
    /// The address to mail the code to.
    pub email: Email,
}

/// A password reset with its code (ResetPassword).
#[derive(Debug)]
pub struct PasswordReset {
    /// The address the code was mailed to.
    pub email: Email,
    /// The code as presented (not empty).
    pub code: String,
    /// The new password.
    pub new_password: Password,
}

/// A new user as requested by an operator or a service (it is invited: no password).
#[derive(Debug)]
pub struct UserDraft {
    /// E-mail.
    pub email: Email,
    /// Display name.
    pub display_name: DisplayName,
    /// Locale.
    pub locale: Locale,
    /// Kind.
    pub kind: UserKind,
}

/// An invitation of an address (InviteUser).
#[derive(Debug)]
pub struct Invitation {
    /// The address to invite.
    pub email: Email,
    /// The display name to set, when given.
    pub display_name: Option<DisplayName>,
    /// The language to set, when given.
    pub locale: Option<Locale>,
}

/// A request to change a login e-mail (ChangeEmail).
#[derive(Debug)]
pub struct EmailChange {
    /// Whose e-mail.
    pub user_id: Uuid,
    /// The new address.
    pub new_email: Email,
    /// The current password, as presented.
    pub current_password: Password,
}

/// The proof of the new address of an e-mail change (ConfirmEmailChange).
#[derive(Debug)]
pub struct EmailChangeProof {
    /// Whose e-mail.
    pub user_id: Uuid,
    /// The code as presented (not empty).
    pub code: String,
}

/// One user, by id (GetUser, DisableUser, EnableUser).
#[derive(Debug, Clone, Copy)]
pub struct UserRef {
    /// The user's id.
    pub user_id: Uuid,
}

/// Several users, by id (BatchGetUsers): at most [`MAX_BATCH_GET`].
#[derive(Debug)]
pub struct UserBatch {
    /// The ids, in the order asked.
    pub user_ids: Vec<Uuid>,
}

/// One user, by login e-mail (LookupUser).
#[derive(Debug)]
pub struct UserLookup {
    /// The address.
    pub email: Email,
}

/// A change of a user's profile (UpdateUser).
#[derive(Debug)]
pub struct UserUpdate {
    /// Whose profile.
    pub user_id: Uuid,
    /// The new display name, when it changes.
    pub display_name: Option<DisplayName>,
    /// The new language, when it changes.
    pub locale: Option<Locale>,
    /// The version the caller read.
    pub etag: Etag,
}

/// A change of a password by its user (ChangePassword).
#[derive(Debug)]
pub struct PasswordChange {
    /// Whose password.
    pub user_id: Uuid,
    /// The current password, as presented.
    pub current_password: Password,
    /// The new password.
    pub new_password: Password,
}

/// A sign-in (Authenticate): the e-mail as typed (a malformed one is just a failed
/// sign-in) and the password as presented.
#[derive(Debug)]
pub struct Credentials {
    /// The e-mail as typed.
    pub email: String,
    /// The password as presented.
    pub password: Password,
}

/// A refresh token as presented (RefreshSession, RevokeSession): not empty. Its `Debug`
/// is redacted.
pub struct PresentedRefreshToken {
    /// The token.
    pub token: String,
}

/// Service-account credentials (IssueServiceToken), as presented. Its `Debug` shows no
/// secret.
pub struct ClientCredentials {
    /// The client id as typed.
    pub client_id: String,
    /// The client secret.
    pub client_secret: String,
}

impl std::fmt::Debug for PresentedRefreshToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PresentedRefreshToken(..)")
    }
}

impl std::fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}
