//! The sign-in lockout: `sign_in_throttle` counts consecutive FAILED sign-ins per e-mail
//! (existing or not) and holds the lock; `sign_in_attempts` holds the attempts whose
//! password is being checked. Only failures count, yet a new attempt is let in only while
//! failures + attempts in flight stay below the threshold, so concurrent guesses can never
//! get more password checks than the threshold allows.

use sqlx::PgConnection;
use uuid::Uuid;

/// Outcome of [`reserve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reservation {
    /// The e-mail is locked.
    Locked,
    /// Every slot is taken by attempts in flight: wait for one to end and try again.
    Full,
    /// The attempt may check its password; resolve it with [`succeed`] or [`fail`].
    Reserved(Uuid),
}

/// How long an unresolved attempt holds its slot (its process may have died).
const IN_FLIGHT_SECS: f64 = 60.0;

/// Reserves a slot for an attempt on `email`. Run it in its own transaction: the throttle
/// row stays locked until it commits, so concurrent reservations see each other.
pub(crate) async fn reserve(
    conn: &mut PgConnection,
    email: &str,
    threshold: i32,
) -> Result<Reservation, sqlx::Error> {
    let (failures, locked): (i32, bool) = sqlx::query_as(
        "INSERT INTO sign_in_throttle AS t (email, failures) VALUES ($1, 0) \
         ON CONFLICT (email) DO UPDATE SET update_time = now() \
         RETURNING failures, coalesce(locked_until > now(), false)",
    )
    .bind(email)
    .fetch_one(&mut *conn)
    .await?;
    if locked {
        return Ok(Reservation::Locked);
    }
    let in_flight: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM sign_in_attempts \
         WHERE email = $1 AND start_time > now() - make_interval(secs => $2)",
    )
    .bind(email)
    .bind(IN_FLIGHT_SECS)
    .fetch_one(&mut *conn)
    .await?;
    if i64::from(failures) + in_flight >= i64::from(threshold) {
        return Ok(Reservation::Full);
    }
    let attempt_id = Uuid::new_v4();
    sqlx::query("INSERT INTO sign_in_attempts (attempt_id, email) VALUES ($1, $2)")
        .bind(attempt_id)
        .bind(email)
        .execute(conn)
        .await?;
    Ok(Reservation::Reserved(attempt_id))
}

/// A reserved attempt succeeded: its slot is freed and the failures are forgotten.
pub(crate) async fn succeed(
    conn: &mut PgConnection,
    email: &str,
    attempt_id: Uuid,
) -> Result<(), sqlx::Error> {
    release(&mut *conn, attempt_id).await?;
    sqlx::query("UPDATE sign_in_throttle SET failures = 0, update_time = now() WHERE email = $1")
        .bind(email)
        .execute(conn)
        .await?;
    Ok(())
}

/// A reserved attempt failed: it counts, and at `threshold` failures the e-mail locks for
/// `lock_seconds` (counting starts afresh).
pub(crate) async fn fail(
    conn: &mut PgConnection,
    email: &str,
    attempt_id: Uuid,
    threshold: i32,
    lock_seconds: f64,
) -> Result<(), sqlx::Error> {
    release(&mut *conn, attempt_id).await?;
    sqlx::query(
        "UPDATE sign_in_throttle SET \
         failures = CASE WHEN failures + 1 >= $2 THEN 0 ELSE failures + 1 END, \
         locked_until = CASE WHEN failures + 1 >= $2 \
             THEN now() + make_interval(secs => $3) ELSE locked_until END, \
         update_time = now() WHERE email = $1",
    )
    .bind(email)
    .bind(threshold)
    .bind(lock_seconds)
    .execute(conn)
    .await?;
    Ok(())
}

/// Frees the slot of an attempt.
pub(crate) async fn release(conn: &mut PgConnection, attempt_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM sign_in_attempts WHERE attempt_id = $1")
        .bind(attempt_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Forgets the failures and lock of an e-mail (its owner proved it with a mailed code).
pub(crate) async fn reset(conn: &mut PgConnection, email: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM sign_in_throttle WHERE email = $1")
        .bind(email)
        .execute(conn)
        .await?;
    Ok(())
}

/// Forgets the slots of attempts whose process died.
pub(crate) async fn forget_stale(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query(
        "DELETE FROM sign_in_attempts WHERE start_time <= now() - make_interval(secs => $1)",
    )
    .bind(IN_FLIGHT_SECS)
    .execute(conn)
    .await?;
    Ok(())
}
