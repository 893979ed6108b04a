//! The `sessions` and `refresh_tokens` tables.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

/// Starts a session family with its first refresh token.
pub(crate) async fn create(
    conn: &mut PgConnection,
    session_id: Uuid,
    user_id: Uuid,
    expire_time: DateTime<Utc>,
    token_hash: &[u8],
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO sessions (session_id, user_id, expire_time) VALUES ($1, $2, $3)")
        .bind(session_id)
        .bind(user_id)
        .bind(expire_time)
        .execute(&mut *conn)
        .await?;
    add_token(conn, session_id, token_hash).await
}

/// Adds a refresh token to a session.
pub(crate) async fn add_token(
    conn: &mut PgConnection,
    session_id: Uuid,
    token_hash: &[u8],
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO refresh_tokens (token_hash, session_id) VALUES ($1, $2)")
        .bind(token_hash)
        .bind(session_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// A refresh token with its session, as found.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct PresentedToken {
    /// Session family.
    pub session_id: Uuid,
    /// Owner.
    pub user_id: Uuid,
    /// Set when the token was already rotated.
    pub used_time: Option<DateTime<Utc>>,
    /// Set when the session was revoked.
    pub revoke_time: Option<DateTime<Utc>>,
    /// When the session ends.
    pub expire_time: DateTime<Utc>,
}

/// Finds a refresh token and locks it and its session until the transaction ends, so two
/// refreshes with one token are serialised (and the second one is seen as reuse).
pub(crate) async fn find_for_update(
    conn: &mut PgConnection,
    token_hash: &[u8],
) -> Result<Option<PresentedToken>, sqlx::Error> {
    sqlx::query_as(
        "SELECT t.session_id, s.user_id, t.used_time, s.revoke_time, s.expire_time \
         FROM refresh_tokens t JOIN sessions s ON s.session_id = t.session_id \
         WHERE t.token_hash = $1 FOR UPDATE",
    )
    .bind(token_hash)
    .fetch_optional(conn)
    .await
}

/// Marks a token rotated.
pub(crate) async fn mark_used(
    conn: &mut PgConnection,
    token_hash: &[u8],
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE refresh_tokens SET used_time = now() WHERE token_hash = $1")
        .bind(token_hash)
        .execute(conn)
        .await?;
    Ok(())
}

/// Revokes a session family.
pub(crate) async fn revoke(
    conn: &mut PgConnection,
    session_id: Uuid,
    reason: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE sessions SET revoke_time = now(), revoke_reason = $2 \
         WHERE session_id = $1 AND revoke_time IS NULL",
    )
    .bind(session_id)
    .bind(reason)
    .execute(conn)
    .await?;
    Ok(())
}

/// Revokes every session of a user; returns the sessions revoked.
pub(crate) async fn revoke_all_of_user(
    conn: &mut PgConnection,
    user_id: Uuid,
    reason: &str,
) -> Result<Vec<Uuid>, sqlx::Error> {
    revoke_all_of_user_except(conn, user_id, None, reason).await
}

/// Revokes every session of a user but `keep`; returns the sessions revoked.
pub(crate) async fn revoke_all_of_user_except(
    conn: &mut PgConnection,
    user_id: Uuid,
    keep: Option<Uuid>,
    reason: &str,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE sessions SET revoke_time = now(), revoke_reason = $2 \
         WHERE user_id = $1 AND revoke_time IS NULL AND expire_time > now() \
         AND session_id IS DISTINCT FROM $3 RETURNING session_id",
    )
    .bind(user_id)
    .bind(reason)
    .bind(keep)
    .fetch_all(conn)
    .await
}
