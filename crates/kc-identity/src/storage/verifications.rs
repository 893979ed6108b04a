//! The `email_verifications` table: one outstanding code per user, by hash.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

/// Stores (or replaces) the outstanding code of a user.
pub async fn upsert(
    conn: &mut PgConnection,
    user_id: Uuid,
    code_hash: &[u8],
    expire_time: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO email_verifications (user_id, code_hash, expire_time) VALUES ($1, $2, $3) \
         ON CONFLICT (user_id) DO UPDATE SET code_hash = EXCLUDED.code_hash, \
         expire_time = EXCLUDED.expire_time, failed_attempts = 0, create_time = now()",
    )
    .bind(user_id)
    .bind(code_hash)
    .bind(expire_time)
    .execute(conn)
    .await?;
    Ok(())
}

/// An outstanding code, locked until the transaction ends.
#[derive(Debug, sqlx::FromRow)]
pub struct Outstanding {
    /// SHA-256 of the code.
    pub code_hash: Vec<u8>,
    /// When it stops working.
    pub expire_time: DateTime<Utc>,
    /// Wrong codes tried so far.
    pub failed_attempts: i32,
}

/// The outstanding code of a user, locked.
pub async fn get_for_update(
    conn: &mut PgConnection,
    user_id: Uuid,
) -> Result<Option<Outstanding>, sqlx::Error> {
    sqlx::query_as(
        "SELECT code_hash, expire_time, failed_attempts FROM email_verifications \
         WHERE user_id = $1 FOR UPDATE",
    )
    .bind(user_id)
    .fetch_optional(conn)
    .await
}

/// Counts a wrong code.
pub async fn record_failure(conn: &mut PgConnection, user_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE email_verifications SET failed_attempts = failed_attempts + 1 WHERE user_id = $1",
    )
    .bind(user_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Removes the code (used, or worn out).
pub async fn delete(conn: &mut PgConnection, user_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM email_verifications WHERE user_id = $1")
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(())
}
