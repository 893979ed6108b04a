//! The `signing_keys` table. Private keys are stored encrypted (see `domain::keys`); this
//! module only moves the bytes.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

/// A stored key pair.
#[derive(sqlx::FromRow)]
pub(crate) struct StoredKey {
    /// Key id.
    pub kid: String,
    /// The Ed25519 seed encrypted under the key-encryption key named by
    /// [`Self::encryption_key_id`]; the raw 32-byte seed when that is `None` (a row written
    /// before encryption at rest, encrypted at the next start).
    pub private_key: Vec<u8>,
    /// Id of the key-encryption key that encrypted [`Self::private_key`], if any.
    pub encryption_key_id: Option<String>,
    /// Ed25519 public key.
    pub public_key: Vec<u8>,
    /// Creation time.
    pub create_time: DateTime<Utc>,
}

/// The selected columns, as a literal for `concat!`.
macro_rules! columns {
    () => {
        "kid, private_key, encryption_key_id, public_key, create_time"
    };
}

/// The key that signs now, if any.
pub(crate) async fn active(conn: &mut PgConnection) -> Result<Option<StoredKey>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM signing_keys WHERE retire_time IS NULL"
    ))
    .fetch_optional(conn)
    .await
}

/// Keys that may still verify a token: the active one and those retired less than
/// `verify_window_secs` ago, newest first.
pub(crate) async fn verifying(
    conn: &mut PgConnection,
    verify_window_secs: f64,
) -> Result<Vec<StoredKey>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM signing_keys \
         WHERE retire_time IS NULL OR retire_time > now() - make_interval(secs => $1) \
         ORDER BY create_time DESC"
    ))
    .bind(verify_window_secs)
    .fetch_all(conn)
    .await
}

/// Every stored key, oldest first.
pub(crate) async fn all(conn: &mut PgConnection) -> Result<Vec<StoredKey>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM signing_keys ORDER BY create_time, kid"
    ))
    .fetch_all(conn)
    .await
}

/// Retires the active key (if any) and inserts a new active one, whose private key was
/// encrypted by the key-encryption key `encryption_key_id`.
pub(crate) async fn rotate(
    conn: &mut PgConnection,
    kid: &str,
    encrypted_private_key: &[u8],
    encryption_key_id: &str,
    public_key: &[u8],
) -> Result<StoredKey, sqlx::Error> {
    sqlx::query(
        "UPDATE signing_keys SET retire_time = clock_timestamp() WHERE retire_time IS NULL",
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query_as(concat!(
        "INSERT INTO signing_keys (kid, private_key, encryption_key_id, public_key) \
         VALUES ($1, $2, $3, $4) RETURNING ",
        columns!()
    ))
    .bind(kid)
    .bind(encrypted_private_key)
    .bind(encryption_key_id)
    .bind(public_key)
    .fetch_one(conn)
    .await
}

/// Replaces the stored private key of `kid` with one encrypted by `encryption_key_id`.
pub(crate) async fn set_private_key(
    conn: &mut PgConnection,
    kid: &str,
    encrypted_private_key: &[u8],
    encryption_key_id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE signing_keys SET private_key = $2, encryption_key_id = $3 WHERE kid = $1")
        .bind(kid)
        .bind(encrypted_private_key)
        .bind(encryption_key_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Serialises key changes across replicas for the rest of the transaction.
pub(crate) async fn lock(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query(
        "SELECT pg_advisory_xact_lock(hashtextextended('keycontacts-identity-signing-keys', 0))",
    )
    .execute(conn)
    .await?;
    Ok(())
}
