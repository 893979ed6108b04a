//! The `sign_in_throttle` table: consecutive failures per e-mail, existing or not.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

/// When the e-mail is locked until, if it is locked now.
pub async fn locked_until(
    conn: &mut PgConnection,
    email: &str,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT locked_until FROM sign_in_throttle WHERE email = $1 AND locked_until > now()",
    )
    .bind(email)
    .fetch_optional(conn)
    .await
    .map(Option::flatten)
}

/// Counts a failure; at `threshold` consecutive failures locks the e-mail for
/// `lock_seconds` and starts counting again. Atomic under concurrent failures.
pub async fn record_failure(
    conn: &mut PgConnection,
    email: &str,
    threshold: i32,
    lock_seconds: f64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO sign_in_throttle AS t (email, failures) VALUES ($1, 1) \
         ON CONFLICT (email) DO UPDATE SET failures = t.failures + 1, update_time = now()",
    )
    .bind(email)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE sign_in_throttle SET failures = 0, \
         locked_until = now() + make_interval(secs => $3) WHERE email = $1 AND failures >= $2",
    )
    .bind(email)
    .bind(threshold)
    .bind(lock_seconds)
    .execute(conn)
    .await?;
    Ok(())
}

/// Forgets the failures of an e-mail after a successful sign-in.
pub async fn reset(conn: &mut PgConnection, email: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM sign_in_throttle WHERE email = $1")
        .bind(email)
        .execute(conn)
        .await?;
    Ok(())
}
