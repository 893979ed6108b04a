//! Postgres for tests and developer tooling.
//!
//! [`test_database`] gives each test its own fresh, empty database. When `DATABASE_URL` is set
//! (as `cargo xtask test` does) the database is created on that server; otherwise the first call
//! in a test process starts a throwaway [`PgCluster`] under the workspace `target/` directory,
//! which goes away, data directory and all, when the test process exits.

mod cluster;

pub use cluster::{ClusterOptions, PgCluster};

use std::path::Path;

use sqlx::{AssertSqlSafe, Connection, PgConnection};
use tokio::sync::OnceCell;

/// A fresh, empty database on the test cluster (or on `DATABASE_URL`'s server when that env var
/// is set).
///
/// The database is not dropped afterwards: on the throwaway cluster it disappears with the
/// cluster; on a `DATABASE_URL` server it stays until that server's data is discarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestDatabase {
    /// Connection URL for the database, as the superuser.
    pub url: String,
    /// Name of the database (`kc_test_<random>`).
    pub name: String,
}

/// Creates a new uniquely named database and returns its URL.
///
/// Panics with a clear message on failure: it is meant for tests.
pub async fn test_database() -> TestDatabase {
    let server_url = match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => local_cluster().await.url("postgres"),
    };
    let name = format!("kc_test_{}", uuid::Uuid::new_v4().simple());
    let url = database_url(&server_url, &name)
        .unwrap_or_else(|err| panic!("DATABASE_URL is not a valid postgres url: {err}"));

    // Each #[tokio::test] runs on its own runtime, so no pool is kept across tests: one
    // short-lived connection creates the database.
    let mut conn = PgConnection::connect(&server_url)
        .await
        .unwrap_or_else(|err| {
            panic!(
                "could not connect to the test postgres server at {}: {err}",
                redact(&server_url)
            )
        });
    // The name is made of ASCII letters, digits and underscores: nothing to quote.
    sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|err| panic!("could not create test database {name}: {err}"));
    // The database exists whatever happens to the connection now.
    let _ = conn.close().await;

    TestDatabase { url, name }
}

/// The throwaway cluster of this test process, started on first use.
///
/// Statics are never dropped, so the cluster is not stopped by a destructor: it runs under a
/// watchdog that stops it and removes its data directory once this process exits (see
/// [`PgCluster`]).
async fn local_cluster() -> &'static PgCluster {
    static CLUSTER: OnceCell<Result<PgCluster, String>> = OnceCell::const_new();
    let cluster = CLUSTER
        .get_or_init(|| async {
            let runs = crate::target_dir().join("kc-testkit").join("run");
            remove_stale_runs(&runs);
            let dir = runs.join(format!(
                "{}-{}",
                std::process::id(),
                &uuid::Uuid::new_v4().simple().to_string()[..8]
            ));
            PgCluster::start(&dir, ClusterOptions::default())
                .await
                .map_err(|err| format!("{err:#}"))
        })
        .await;
    match cluster {
        Ok(cluster) => cluster,
        Err(err) => panic!("could not start the throwaway postgres cluster for tests: {err}"),
    }
}

/// Removes what test processes that died too early for their watchdog left in `runs`.
///
/// Entries are named `<pid>-<anything>`; one is stale when that process is gone and no server
/// runs in it (a watchdog may still be stopping it).
fn remove_stale_runs(runs: &Path) {
    let Ok(entries) = std::fs::read_dir(runs) else {
        return;
    };
    let alive = |pid: &str| Path::new("/proc").join(pid.trim()).exists();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|name| name.split('-').next()) else {
            continue;
        };
        if pid.parse::<u32>().is_err() || alive(pid) {
            continue;
        }
        // The first line of postmaster.pid is the server's pid.
        let server = std::fs::read_to_string(entry.path().join("postmaster.pid")).ok();
        if server.is_some_and(|text| text.lines().next().is_some_and(alive)) {
            continue;
        }
        let _ = std::fs::remove_dir_all(entry.path());
    }
}

/// `server_url` with its database replaced by `database`.
fn database_url(server_url: &str, database: &str) -> Result<String, url::ParseError> {
    let mut url = url::Url::parse(server_url)?;
    url.set_path(&format!("/{database}"));
    Ok(url.into())
}

/// `url` without its password, for messages.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                // Only fails for urls that cannot have a password, which this one has.
                let _ = parsed.set_password(Some("***"));
            }
            parsed.into()
        }
        Err(_) => "<unparsable url>".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_url_replaces_the_database_and_keeps_the_rest() {
        assert_eq!(
            database_url(
                "postgres://u:p@127.0.0.1:5432/postgres?sslmode=disable",
                "kc_x"
            )
            .unwrap(),
            "postgres://u:p@127.0.0.1:5432/kc_x?sslmode=disable"
        );
        assert_eq!(
            database_url("postgres://postgres@127.0.0.1:1", "kc_y").unwrap(),
            "postgres://postgres@127.0.0.1:1/kc_y"
        );
    }

    #[test]
    fn redact_hides_the_password() {
        assert_eq!(
            redact("postgres://u:secret@h:1/db"),
            "postgres://u:***@h:1/db"
        );
        assert_eq!(redact("postgres://u@h:1/db"), "postgres://u@h:1/db");
    }
}
