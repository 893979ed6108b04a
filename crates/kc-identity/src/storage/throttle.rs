//! The `sign_in_throttle` table: consecutive failures per e-mail, existing or not.

use sqlx::PgConnection;

/// Outcome of [`reserve_attempt`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// The e-mail is locked: the attempt was not counted.
    Locked,
    /// The attempt was counted; this many are now unresolved or failed in a row.
    Counted(i32),
}

/// Counts a sign-in attempt before its password is checked (a success resets the count).
/// Atomic: concurrent attempts each see a distinct count.
pub async fn reserve_attempt(conn: &mut PgConnection, email: &str) -> Result<Attempt, sqlx::Error> {
    let (failures, locked): (i32, bool) = sqlx::query_as(
        "INSERT INTO sign_in_throttle AS t (email, failures) VALUES ($1, 1) \
         ON CONFLICT (email) DO UPDATE SET \
         failures = CASE WHEN t.locked_until > now() THEN t.failures ELSE t.failures + 1 END, \
         update_time = now() \
         RETURNING failures, coalesce(locked_until > now(), false)",
    )
    .bind(email)
    .fetch_one(conn)
    .await?;
    Ok(if locked {
        Attempt::Locked
    } else {
        Attempt::Counted(failures)
    })
}

/// After a failed attempt: once `threshold` attempts failed in a row, locks the e-mail for
/// `lock_seconds` and starts counting again.
pub async fn lock_if_exhausted(
    conn: &mut PgConnection,
    email: &str,
    threshold: i32,
    lock_seconds: f64,
) -> Result<(), sqlx::Error> {
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
