//! The idempotency keys of SendNotice (N3).

use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::Kind;

/// Whether a notice with this key was recorded (by a committed transaction).
pub(crate) async fn exists(conn: &mut PgConnection, key: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM notices WHERE idempotency_key = $1)")
        .bind(key)
        .fetch_one(conn)
        .await
}

/// Records the key in the caller's transaction; `false` when another call recorded it
/// first. A concurrent call holding the same key makes this wait until it commits (then
/// `false`) or rolls back (then `true`).
pub(crate) async fn record(
    conn: &mut PgConnection,
    key: &str,
    site_id: Uuid,
    kind: Kind,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO notices (idempotency_key, site_id, kind) VALUES ($1, $2, $3) \
         ON CONFLICT (idempotency_key) DO NOTHING",
    )
    .bind(key)
    .bind(site_id)
    .bind(kind.number() as i16)
    .execute(conn)
    .await?;
    Ok(inserted.rows_affected() == 1)
}
