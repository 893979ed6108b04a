//! The `service_accounts` table.

use sqlx::PgConnection;
use uuid::Uuid;

/// Inserts a service account.
pub(crate) async fn insert(
    conn: &mut PgConnection,
    client_id: Uuid,
    name: &str,
    secret_hash: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO service_accounts (client_id, name, secret_hash) VALUES ($1, $2, $3)")
        .bind(client_id)
        .bind(name)
        .bind(secret_hash)
        .execute(conn)
        .await?;
    Ok(())
}

/// The name and secret hash of a client id.
pub(crate) async fn find(
    conn: &mut PgConnection,
    client_id: Uuid,
) -> Result<Option<(String, String)>, sqlx::Error> {
    sqlx::query_as("SELECT name, secret_hash FROM service_accounts WHERE client_id = $1")
        .bind(client_id)
        .fetch_optional(conn)
        .await
}
