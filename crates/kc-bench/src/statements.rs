//! `cargo xtask bench --pg-statements`: what Postgres executed during each measured window,
//! from `pg_stat_statements`, so that a profile of the database is one command rather than a
//! local edit.
//!
//! The throwaway cluster then loads the extension (`shared_preload_libraries`, nested
//! statements of functions tracked too); the counters are reset when a window opens and read
//! when it closes, and the run's notes get the window's totals, the calls and commits of each
//! service (database role), and the statements that took the most time and the most calls,
//! each with the service that ran it.

use std::fmt::Write as _;

use anyhow::Context;
use sqlx::{Connection, PgConnection};

/// The settings that load `pg_stat_statements` into a cluster.
pub(crate) fn cluster_settings() -> Vec<(String, String)> {
    vec![
        (
            "shared_preload_libraries".to_owned(),
            "pg_stat_statements".to_owned(),
        ),
        ("pg_stat_statements.track".to_owned(), "all".to_owned()),
        ("pg_stat_statements.max".to_owned(), "5000".to_owned()),
    ]
}

/// Statements listed in a window's notes, by total time and again by calls.
const LISTED: i64 = 10;

/// Characters of a statement's text shown in a note.
const SHOWN_CHARS: usize = 110;

/// The statement counters of the benchmark's database.
#[derive(Debug, Clone)]
pub(crate) struct Statements {
    /// Superuser URL of the database the services use.
    url: String,
}

/// One statement of a window, by the time it took.
#[derive(Debug, sqlx::FromRow)]
struct Statement {
    role: String,
    calls: i64,
    total_ms: f64,
    rows: i64,
    query: String,
}

/// The window's totals.
#[derive(Debug, sqlx::FromRow)]
struct Totals {
    statements: i64,
    calls: i64,
    total_ms: f64,
}

impl Statements {
    /// Creates the extension in the database at `url` (whose cluster was started with
    /// [`cluster_settings`]).
    pub(crate) async fn enable(url: String) -> anyhow::Result<Self> {
        let mut conn = PgConnection::connect(&url).await?;
        sqlx::raw_sql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            .execute(&mut conn)
            .await
            .context("could not create the pg_stat_statements extension")?;
        conn.close().await?;
        Ok(Self { url })
    }

    /// Forgets what was counted so far: the window opens.
    pub(crate) async fn reset(&self) -> anyhow::Result<()> {
        let mut conn = PgConnection::connect(&self.url).await?;
        sqlx::query("SELECT pg_stat_statements_reset()")
            .execute(&mut conn)
            .await
            .context("could not reset pg_stat_statements")?;
        conn.close().await?;
        Ok(())
    }

    /// Lines for a run's notes: the totals since the last [`reset`](Self::reset) and the
    /// statements that took the most time.
    pub(crate) async fn report(&self) -> anyhow::Result<Vec<String>> {
        let mut conn = PgConnection::connect(&self.url).await?;
        // This read and the reset are not counted.
        let own = "query NOT LIKE '%pg_stat_statements%'";
        let totals: Totals = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT count(*)::int8 AS statements, coalesce(sum(calls), 0)::int8 AS calls, \
             coalesce(sum(total_exec_time), 0)::float8 AS total_ms \
             FROM pg_stat_statements WHERE {own}"
        )))
        .fetch_one(&mut conn)
        .await
        .context("could not read pg_stat_statements")?;
        let by_service: Vec<(String, i64, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT coalesce(r.rolname, '?') AS role, sum(s.calls)::int8 AS calls, \
             coalesce(sum(s.calls) FILTER (WHERE s.query = 'COMMIT'), 0)::int8 AS commits \
             FROM pg_stat_statements s LEFT JOIN pg_roles r ON r.oid = s.userid \
             WHERE {own} GROUP BY 1 ORDER BY 2 DESC"
        )))
        .fetch_all(&mut conn)
        .await
        .context("could not read pg_stat_statements")?;
        let mut listed = Vec::new();
        for order in ["s.total_exec_time", "s.calls"] {
            let top: Vec<Statement> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT coalesce(r.rolname, '?') AS role, s.calls, \
                 s.total_exec_time AS total_ms, s.rows, \
                 regexp_replace(s.query, '\\s+', ' ', 'g') AS query \
                 FROM pg_stat_statements s LEFT JOIN pg_roles r ON r.oid = s.userid \
                 WHERE {own} ORDER BY {order} DESC LIMIT $1"
            )))
            .bind(LISTED)
            .fetch_all(&mut conn)
            .await
            .context("could not read pg_stat_statements")?;
            listed.push(top);
        }
        conn.close().await?;

        let mut lines = vec![format!(
            "postgres in the window: {} calls of {} distinct statements, {:.1} s of execution \
             (pg_stat_statements: calls, total ms, rows, role, statement)",
            totals.calls,
            totals.statements,
            totals.total_ms / 1000.0
        )];
        let mut services = String::from("by service (calls, commits):");
        for (role, calls, commits) in by_service {
            let _ = write!(services, " {role} {calls} ({commits}),");
        }
        services.pop();
        lines.push(services);
        for (heading, top) in ["the most time:", "the most calls:"]
            .into_iter()
            .zip(listed)
        {
            lines.push(heading.to_owned());
            for statement in top {
                let mut line = format!(
                    "  {:>8} {:>9.0} {:>9} {:<16} ",
                    statement.calls, statement.total_ms, statement.rows, statement.role
                );
                let query: String = statement.query.chars().take(SHOWN_CHARS).collect();
                let _ = write!(line, "{query}");
                lines.push(line);
            }
        }
        Ok(lines)
    }
}
