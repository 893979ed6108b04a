//! The projection of identity's users (`users`): login e-mail, whether it is proven, and
//! whether the user is disabled.

use sqlx::PgConnection;
use uuid::Uuid;

/// A user as identity's events describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectedUser {
    /// User id.
    pub user_id: Uuid,
    /// Login e-mail, lower case.
    pub email: String,
    /// Whether the owner proved it receives mail there and the account is past its
    /// invitation (rule I1: only proven accounts hold rights; A7 trusts only them).
    pub email_verified: bool,
    /// Whether identity disabled the user: it has no access at all.
    pub disabled: bool,
}

impl ProjectedUser {
    /// Whether the user may hold rights and ask for them (rule I1): its address is proven
    /// and it is not disabled.
    pub fn is_proven_and_active(&self) -> bool {
        self.email_verified && !self.disabled
    }
}

/// Inserts or refreshes a user of the projection. Returns whether what its rights depend on
/// changed: its disabled flag or whether its address is proven (rights of a disabled or
/// unproven user are all NONE, rules I1 and I4). A user identity never told about counts as
/// unproven: the registry's events may name a person before identity's reach this service,
/// and until they do, its roles imply nothing (fail closed).
pub async fn upsert(conn: &mut PgConnection, user: &ProjectedUser) -> Result<bool, sqlx::Error> {
    let before: Option<(bool, bool)> =
        sqlx::query_as("SELECT disabled, email_verified FROM users WHERE user_id = $1 FOR UPDATE")
            .bind(user.user_id)
            .fetch_optional(&mut *conn)
            .await?;
    sqlx::query(
        "INSERT INTO users (user_id, email, email_verified, disabled) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (user_id) DO UPDATE SET email = EXCLUDED.email, \
           email_verified = EXCLUDED.email_verified, disabled = EXCLUDED.disabled, \
           update_time = now()",
    )
    .bind(user.user_id)
    .bind(&user.email)
    .bind(user.email_verified)
    .bind(user.disabled)
    .execute(conn)
    .await?;
    Ok(before.unwrap_or((false, false)) != (user.disabled, user.email_verified))
}

/// The user with this id, if identity told about it.
pub async fn get(
    conn: &mut PgConnection,
    user_id: Uuid,
) -> Result<Option<ProjectedUser>, sqlx::Error> {
    let row =
        sqlx::query_as("SELECT email, email_verified, disabled FROM users WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(conn)
            .await?;
    Ok(projected(user_id, row))
}

/// Like [`get`], holding the row in share mode until the transaction ends: an identity event
/// that would change the user (disable it, say) waits for the transaction, so a write
/// checked against this row commits on what still holds (rule I1).
pub async fn get_locked(
    conn: &mut PgConnection,
    user_id: Uuid,
) -> Result<Option<ProjectedUser>, sqlx::Error> {
    let row = sqlx::query_as(
        "SELECT email, email_verified, disabled FROM users WHERE user_id = $1 FOR SHARE",
    )
    .bind(user_id)
    .fetch_optional(conn)
    .await?;
    Ok(projected(user_id, row))
}

/// The user of a `(email, email_verified, disabled)` row read by [`get`] or [`get_locked`].
fn projected(user_id: Uuid, row: Option<(String, bool, bool)>) -> Option<ProjectedUser> {
    row.map(|(email, email_verified, disabled)| ProjectedUser {
        user_id,
        email,
        email_verified,
        disabled,
    })
}
