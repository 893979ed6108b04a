//! The Postgres pool of a service, bound to its own schema, and its migrations.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};

pub use crate::error::{DbErrorKind, classify, constraint};

/// Pool sizing and timeouts.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// Most connections the pool opens.
    pub max_connections: u32,
    /// Connections opened at start and kept open ("warm").
    pub min_connections: u32,
    /// How long a caller waits for a connection before `Unavailable`.
    pub acquire_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_connections: 10,
            min_connections: 2,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

/// Connection options for `url` with `search_path` set to `schema`, so that every
/// unqualified table name of the service resolves in its own schema.
pub fn connect_options(url: &str, schema: &str) -> anyhow::Result<PgConnectOptions> {
    let options = PgConnectOptions::from_str(url)
        .context("database url: not a valid postgres url")?
        // A transaction left open holds back every outbox stream in the database (their
        // horizon is the oldest running transaction): end such sessions after a minute.
        .options([
            ("search_path", schema),
            ("idle_in_transaction_session_timeout", "60s"),
        ]);
    Ok(options)
}

/// Opens the service's pool on its schema and warms it (opens `min_connections`).
pub async fn connect(url: &str, schema: &str, settings: &PoolSettings) -> anyhow::Result<PgPool> {
    // No ping before each checkout: it is one extra round trip per RPC (about 10% of the
    // write throughput on the benchmarks). A connection that died (a database restart) fails
    // the one call that gets it with `Unavailable`, which clients retry, and is discarded.
    let pool = PgPoolOptions::new()
        .test_before_acquire(false)
        .max_connections(settings.max_connections)
        .min_connections(settings.min_connections)
        .acquire_timeout(settings.acquire_timeout)
        .connect_with(connect_options(url, schema)?)
        .await
        .context("database: cannot connect")?;
    Ok(pool)
}

/// Runs the service's migrations in its schema, serialised across replicas by an advisory
/// lock keyed on the schema: creates the schema when missing, installs the shared outbox
/// tables, then applies `migrator` with its history table inside the schema.
pub async fn migrate(url: &str, schema: &str, migrator: &Migrator) -> anyhow::Result<()> {
    let mut conn = PgConnection::connect_with(&connect_options(url, schema)?)
        .await
        .context("database: cannot connect to migrate")?;
    sqlx::query("SELECT pg_advisory_lock(hashtextextended($1, 0))")
        .bind(format!("keycontacts-migrate:{schema}"))
        .execute(&mut conn)
        .await
        .context("migrate: advisory lock")?;
    let result = migrate_locked(&mut conn, schema, migrator).await;
    // The lock also goes away with the connection; unlock explicitly to be tidy.
    let _ = sqlx::query("SELECT pg_advisory_unlock(hashtextextended($1, 0))")
        .bind(format!("keycontacts-migrate:{schema}"))
        .execute(&mut conn)
        .await;
    let _ = conn.close().await;
    result
}

async fn migrate_locked(
    conn: &mut PgConnection,
    schema: &str,
    migrator: &Migrator,
) -> anyhow::Result<()> {
    let quoted = quote_identifier(schema);
    // The schema name is quoted by `quote_identifier`.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE SCHEMA IF NOT EXISTS {quoted}"
    )))
    .execute(&mut *conn)
    .await
    .with_context(|| format!("migrate: create schema {schema}"))?;
    crate::outbox::install(&mut *conn)
        .await
        .context("migrate: outbox tables")?;
    let mut migrator = Migrator {
        migrations: migrator.migrations.clone(),
        ignore_missing: migrator.ignore_missing,
        locking: false,
        no_tx: migrator.no_tx,
        table_name: format!("{quoted}._sqlx_migrations").into(),
        create_schemas: Vec::new().into(),
    };
    migrator.set_locking(false);
    // `run_direct` on the connection itself: `run` goes through `Acquire`, whose future
    // is not provably `Send` for callers that spawn.
    migrator
        .run_direct(None, &mut *conn, false)
        .await
        .with_context(|| format!("migrate: apply migrations of schema {schema}"))?;
    Ok(())
}

/// Quotes a SQL identifier (doubling embedded quotes).
pub fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
