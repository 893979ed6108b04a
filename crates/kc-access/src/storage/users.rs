//! The projection of identity's users (`users`): login e-mail, whether it is verified, and
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
    /// Whether the owner proved it receives mail there (A7 trusts only verified e-mails).
    pub email_verified: bool,
    /// Whether identity disabled the user: it has no access at all.
    pub disabled: bool,
}

/// Inserts or refreshes a user of the projection. Returns whether its disabled flag changed
/// (a user identity never told about counts as enabled).
pub async fn upsert(conn: &mut PgConnection, user: &ProjectedUser) -> Result<bool, sqlx::Error> {
    let was_disabled: Option<bool> =
        sqlx::query_scalar("SELECT disabled FROM users WHERE user_id = $1 FOR UPDATE")
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
    Ok(was_disabled.unwrap_or(false) != user.disabled)
}

/// The user with this id, if identity told about it.
pub async fn get(
    conn: &mut PgConnection,
    user_id: Uuid,
) -> Result<Option<ProjectedUser>, sqlx::Error> {
    let row: Option<(String, bool, bool)> =
        sqlx::query_as("SELECT email, email_verified, disabled FROM users WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(conn)
            .await?;
    Ok(row.map(|(email, email_verified, disabled)| ProjectedUser {
        user_id,
        email,
        email_verified,
        disabled,
    }))
}
