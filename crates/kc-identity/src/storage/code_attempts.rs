//! The `code_attempts` table: wrong codes per address across codes, and the lock they set.

use std::collections::HashSet;

use sqlx::PgConnection;

/// Whether the address is locked: its short codes are refused, new codes are long.
pub(crate) async fn is_locked(conn: &mut PgConnection, email: &str) -> Result<bool, sqlx::Error> {
    Ok(!locked_among(conn, &[email]).await?.is_empty())
}

/// The addresses among `emails` that are locked (see [`is_locked`]).
pub(crate) async fn locked_among(
    conn: &mut PgConnection,
    emails: &[&str],
) -> Result<HashSet<String>, sqlx::Error> {
    let rows: Vec<String> = sqlx::query_scalar(
        "SELECT email FROM code_attempts WHERE email = ANY($1) AND locked_until > now()",
    )
    .bind(emails)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().collect())
}

/// Counts a wrong code for an address; failures older than `window_secs` are forgotten.
/// When `max` failures are reached the address locks for `lock_secs` (and counting starts
/// afresh); returns whether it locked now.
pub(crate) async fn record_failure(
    conn: &mut PgConnection,
    email: &str,
    max: i32,
    window_secs: f64,
    lock_secs: f64,
) -> Result<bool, sqlx::Error> {
    let failures: i32 = sqlx::query_scalar(
        "INSERT INTO code_attempts AS t (email, failures, window_start) VALUES ($1, 1, now()) \
         ON CONFLICT (email) DO UPDATE SET \
         failures = CASE WHEN t.window_start <= now() - make_interval(secs => $2) \
             THEN 1 ELSE t.failures + 1 END, \
         window_start = CASE WHEN t.window_start <= now() - make_interval(secs => $2) \
             THEN now() ELSE t.window_start END \
         RETURNING failures",
    )
    .bind(email)
    .bind(window_secs)
    .fetch_one(&mut *conn)
    .await?;
    if failures < max {
        return Ok(false);
    }
    sqlx::query(
        "UPDATE code_attempts SET failures = 0, window_start = now(), \
         locked_until = now() + make_interval(secs => $2) WHERE email = $1",
    )
    .bind(email)
    .bind(lock_secs)
    .execute(conn)
    .await?;
    Ok(true)
}

/// Forgets the failures and the lock of an address (a code was proven).
pub(crate) async fn clear(conn: &mut PgConnection, email: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM code_attempts WHERE email = $1")
        .bind(email)
        .execute(conn)
        .await?;
    Ok(())
}

/// Forgets the addresses whose failure window and lock are both over (nothing of them
/// counts any more); returns how many.
pub(crate) async fn forget_stale(
    conn: &mut PgConnection,
    window_secs: f64,
) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "DELETE FROM code_attempts WHERE window_start <= now() - make_interval(secs => $1) \
         AND (locked_until IS NULL OR locked_until <= now())",
    )
    .bind(window_secs)
    .execute(conn)
    .await?
    .rows_affected())
}
