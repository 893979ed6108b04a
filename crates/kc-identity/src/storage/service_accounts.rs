//! The `service_accounts` table.

use sqlx::PgConnection;
use uuid::Uuid;

/// A stored service account, as a token exchange needs it.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct StoredAccount {
    /// Its secret's hash (SHA-256, base64url).
    pub(crate) secret_hash: String,
    /// Its scopes, e.g. `["notices"]`.
    pub(crate) scopes: Vec<String>,
}

/// Inserts a service account holding `scopes`.
pub(crate) async fn insert(
    conn: &mut PgConnection,
    client_id: Uuid,
    name: &str,
    secret_hash: &str,
    scopes: &[&str],
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO service_accounts (client_id, name, secret_hash, scopes) \
         VALUES ($1, $2, $3, $4)",
    )
    .bind(client_id)
    .bind(name)
    .bind(secret_hash)
    .bind(scopes)
    .execute(conn)
    .await?;
    Ok(())
}

/// The secret hash and scopes of a client id.
pub(crate) async fn find(
    conn: &mut PgConnection,
    client_id: Uuid,
) -> Result<Option<StoredAccount>, sqlx::Error> {
    sqlx::query_as("SELECT secret_hash, scopes FROM service_accounts WHERE client_id = $1")
        .bind(client_id)
        .fetch_optional(conn)
        .await
}
