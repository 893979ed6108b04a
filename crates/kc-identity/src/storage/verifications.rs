//! The `email_verifications` table: one outstanding code per user, by hash, with the
//! account claim it confirms, if any.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

/// What an invited user asked for when it claimed its account through `RegisterUser`;
/// applied only when the code beside it is verified.
#[derive(Clone, PartialEq, Eq)]
pub struct PendingClaim {
    /// argon2id PHC string of the chosen password.
    pub password_hash: String,
    /// Display name to set.
    pub display_name: String,
    /// Locale to set.
    pub locale: String,
}

impl std::fmt::Debug for PendingClaim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Neither the hash nor personal data belong in logs.
        f.debug_struct("PendingClaim").finish_non_exhaustive()
    }
}

/// Stores (or replaces) the outstanding code of a user, with the claim it confirms (or
/// none, which drops any earlier claim): the last code and claim win together.
pub async fn upsert(
    conn: &mut PgConnection,
    user_id: Uuid,
    code_hash: &[u8],
    expire_time: DateTime<Utc>,
    claim: Option<&PendingClaim>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO email_verifications (user_id, code_hash, expire_time, \
         pending_password_hash, pending_display_name, pending_locale) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (user_id) DO UPDATE SET code_hash = EXCLUDED.code_hash, \
         expire_time = EXCLUDED.expire_time, failed_attempts = 0, create_time = now(), \
         pending_password_hash = EXCLUDED.pending_password_hash, \
         pending_display_name = EXCLUDED.pending_display_name, \
         pending_locale = EXCLUDED.pending_locale",
    )
    .bind(user_id)
    .bind(code_hash)
    .bind(expire_time)
    .bind(claim.map(|claim| claim.password_hash.as_str()))
    .bind(claim.map(|claim| claim.display_name.as_str()))
    .bind(claim.map(|claim| claim.locale.as_str()))
    .execute(conn)
    .await?;
    Ok(())
}

/// An outstanding code, locked until the transaction ends.
#[derive(Debug)]
pub struct Outstanding {
    /// SHA-256 of the code.
    pub code_hash: Vec<u8>,
    /// When it stops working.
    pub expire_time: DateTime<Utc>,
    /// Wrong codes tried so far.
    pub failed_attempts: i32,
    /// The account claim this code confirms, if any.
    pub claim: Option<PendingClaim>,
}

#[derive(sqlx::FromRow)]
struct OutstandingRow {
    code_hash: Vec<u8>,
    expire_time: DateTime<Utc>,
    failed_attempts: i32,
    pending_password_hash: Option<String>,
    pending_display_name: Option<String>,
    pending_locale: Option<String>,
}

/// The outstanding code of a user, locked.
pub async fn get_for_update(
    conn: &mut PgConnection,
    user_id: Uuid,
) -> Result<Option<Outstanding>, sqlx::Error> {
    let row: Option<OutstandingRow> = sqlx::query_as(
        "SELECT code_hash, expire_time, failed_attempts, pending_password_hash, \
         pending_display_name, pending_locale FROM email_verifications \
         WHERE user_id = $1 FOR UPDATE",
    )
    .bind(user_id)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|row| Outstanding {
        code_hash: row.code_hash,
        expire_time: row.expire_time,
        failed_attempts: row.failed_attempts,
        // The table's check constraint keeps the three columns all set or all NULL.
        claim: match (
            row.pending_password_hash,
            row.pending_display_name,
            row.pending_locale,
        ) {
            (Some(password_hash), Some(display_name), Some(locale)) => Some(PendingClaim {
                password_hash,
                display_name,
                locale,
            }),
            _ => None,
        },
    }))
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
