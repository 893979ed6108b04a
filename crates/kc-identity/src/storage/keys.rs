//! The `signing_keys` table.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

/// A stored key pair.
#[derive(sqlx::FromRow)]
pub struct StoredKey {
    /// Key id.
    pub kid: String,
    /// Ed25519 seed.
    pub private_key: Vec<u8>,
    /// Ed25519 public key.
    pub public_key: Vec<u8>,
    /// Creation time.
    pub create_time: DateTime<Utc>,
}

/// The key that signs now, if any.
pub async fn active(conn: &mut PgConnection) -> Result<Option<StoredKey>, sqlx::Error> {
    sqlx::query_as(
        "SELECT kid, private_key, public_key, create_time FROM signing_keys WHERE retire_time IS NULL",
    )
    .fetch_optional(conn)
    .await
}

/// Keys that may still verify a token: the active one and those retired less than
/// `verify_window_secs` ago, newest first.
pub async fn verifying(
    conn: &mut PgConnection,
    verify_window_secs: f64,
) -> Result<Vec<StoredKey>, sqlx::Error> {
    sqlx::query_as(
        "SELECT kid, private_key, public_key, create_time FROM signing_keys \
         WHERE retire_time IS NULL OR retire_time > now() - make_interval(secs => $1) \
         ORDER BY create_time DESC",
    )
    .bind(verify_window_secs)
    .fetch_all(conn)
    .await
}

/// Retires the active key (if any) and inserts `key` as the new active one.
pub async fn rotate(
    conn: &mut PgConnection,
    kid: &str,
    private_key: &[u8],
    public_key: &[u8],
) -> Result<StoredKey, sqlx::Error> {
    sqlx::query(
        "UPDATE signing_keys SET retire_time = clock_timestamp() WHERE retire_time IS NULL",
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query_as(
        "INSERT INTO signing_keys (kid, private_key, public_key) VALUES ($1, $2, $3) \
         RETURNING kid, private_key, public_key, create_time",
    )
    .bind(kid)
    .bind(private_key)
    .bind(public_key)
    .fetch_one(conn)
    .await
}

/// Serialises key changes across replicas for the rest of the transaction.
pub async fn lock(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query(
        "SELECT pg_advisory_xact_lock(hashtextextended('keycontacts-identity-signing-keys', 0))",
    )
    .execute(conn)
    .await?;
    Ok(())
}
