//! The `token_revocations` table (rule I4).

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::Revocation;

/// Stores a revocation.
pub(crate) async fn insert(
    conn: &mut PgConnection,
    revocation: &Revocation,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO token_revocations (revocation_id, user_id, session_id, issued_before, expire_time) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(revocation.revocation_id)
    .bind(revocation.user_id)
    .bind(revocation.session_id)
    .bind(revocation.issued_before)
    .bind(revocation.expire_time)
    .execute(conn)
    .await?;
    Ok(())
}

/// Whether a token of `user_id`, session `session_id`, issued at `iat` (Unix seconds), is
/// revoked.
pub(crate) async fn is_revoked(
    conn: &mut PgConnection,
    user_id: Uuid,
    session_id: Option<Uuid>,
    iat: i64,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM token_revocations WHERE user_id = $1 \
         AND expire_time > now() AND to_timestamp($3) <= issued_before \
         AND (session_id IS NULL OR session_id = $2))",
    )
    .bind(user_id)
    .bind(session_id)
    .bind(iat as f64)
    .fetch_one(conn)
    .await
}

/// The latest instant before which tokens of `user_id` in session `session_id` are revoked:
/// a token issued now must carry a later `iat`.
pub(crate) async fn latest_issued_before(
    conn: &mut PgConnection,
    user_id: Uuid,
    session_id: Uuid,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT max(issued_before) FROM token_revocations WHERE user_id = $1 \
         AND expire_time > now() AND (session_id IS NULL OR session_id = $2)",
    )
    .bind(user_id)
    .bind(session_id)
    .fetch_one(conn)
    .await
}

/// Every revocation that may still matter, oldest first.
pub(crate) async fn unexpired(conn: &mut PgConnection) -> Result<Vec<Revocation>, sqlx::Error> {
    sqlx::query_as(
        "SELECT revocation_id, user_id, session_id, issued_before, expire_time \
         FROM token_revocations WHERE expire_time > now() ORDER BY create_time, revocation_id",
    )
    .fetch_all(conn)
    .await
}

/// Forgets revocations whose tokens have all expired.
pub(crate) async fn delete_expired(conn: &mut PgConnection) -> Result<u64, sqlx::Error> {
    Ok(
        sqlx::query("DELETE FROM token_revocations WHERE expire_time <= now() - interval '1 hour'")
            .execute(conn)
            .await?
            .rows_affected(),
    )
}
