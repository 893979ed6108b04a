//! The throwaway Postgres: every test gets its own, usable database.

use kc_testkit::{ClusterOptions, PgCluster, test_database};
use sqlx::{Connection, PgConnection};

#[tokio::test]
async fn two_test_databases_are_distinct_and_usable() {
    let first = test_database().await;
    let second = test_database().await;
    assert_ne!(first.name, second.name);
    assert_ne!(first.url, second.url);

    let mut one = PgConnection::connect(&first.url).await.unwrap();
    let mut two = PgConnection::connect(&second.url).await.unwrap();
    let current: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&mut one)
        .await
        .unwrap();
    assert_eq!(current, first.name);

    sqlx::query("CREATE TABLE only_in_first (id int PRIMARY KEY)")
        .execute(&mut one)
        .await
        .unwrap();
    sqlx::query("INSERT INTO only_in_first VALUES (1)")
        .execute(&mut one)
        .await
        .unwrap();

    let visible_in_first: Option<String> =
        sqlx::query_scalar("SELECT to_regclass('only_in_first')::text")
            .fetch_one(&mut one)
            .await
            .unwrap();
    let visible_in_second: Option<String> =
        sqlx::query_scalar("SELECT to_regclass('only_in_first')::text")
            .fetch_one(&mut two)
            .await
            .unwrap();
    assert_eq!(visible_in_first.as_deref(), Some("only_in_first"));
    assert_eq!(visible_in_second, None);

    one.close().await.unwrap();
    two.close().await.unwrap();
}

#[tokio::test]
async fn databases_can_be_created_from_many_tests_at_once() {
    let databases = futures::future::join_all((0..8).map(|_| test_database())).await;
    let mut names: Vec<&str> = databases.iter().map(|db| db.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), 8);
    for db in &databases {
        let mut conn = PgConnection::connect(&db.url).await.unwrap();
        let one: i32 = sqlx::query_scalar("SELECT 1")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(one, 1);
        conn.close().await.unwrap();
    }
}

/// Starts a cluster with `options` in a fresh data directory of this test process under the
/// target dir, named `kind`: the directory and the cluster.
async fn start_in_run_dir(kind: &str, options: ClusterOptions) -> (std::path::PathBuf, PgCluster) {
    let name = format!(
        "{}-{kind}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    );
    let dir = kc_testkit::target_dir()
        .join("kc-testkit")
        .join("run")
        .join(name);
    let cluster = PgCluster::start(&dir, options).await.unwrap();
    (dir, cluster)
}

/// A connection to the `postgres` database of `cluster`.
async fn connect(cluster: &PgCluster) -> PgConnection {
    PgConnection::connect(&cluster.url("postgres"))
        .await
        .unwrap()
}

#[tokio::test]
async fn a_cluster_starts_serves_and_removes_its_ephemeral_data_dir_on_stop() {
    let (dir, cluster) = start_in_run_dir("explicit", ClusterOptions::default()).await;
    assert!(
        cluster
            .url("postgres")
            .ends_with(&format!(":{}/postgres", cluster.port()))
    );

    let mut conn = connect(&cluster).await;
    let settings: Vec<(String, String)> = sqlx::query_as(
        "SELECT name, setting FROM pg_settings \
         WHERE name IN ('fsync', 'synchronous_commit', 'full_page_writes', 'listen_addresses') \
         ORDER BY name",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        settings,
        [
            ("fsync".to_owned(), "off".to_owned()),
            ("full_page_writes".to_owned(), "off".to_owned()),
            ("listen_addresses".to_owned(), "127.0.0.1".to_owned()),
            ("synchronous_commit".to_owned(), "off".to_owned()),
        ]
    );
    conn.close().await.unwrap();

    cluster.stop().await.unwrap();
    assert!(!dir.exists(), "{} should be gone", dir.display());
}

#[tokio::test]
async fn a_persistent_cluster_keeps_its_data_across_restarts() {
    let (dir, cluster) = start_in_run_dir("persistent", ClusterOptions::persistent()).await;
    let mut conn = connect(&cluster).await;
    sqlx::query("CREATE TABLE kept (id int)")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    cluster.stop().await.unwrap();
    assert!(dir.join("PG_VERSION").is_file());

    let cluster = PgCluster::start(&dir, ClusterOptions::persistent())
        .await
        .unwrap();
    let mut conn = connect(&cluster).await;
    let kept: Option<String> = sqlx::query_scalar("SELECT to_regclass('kept')::text")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(kept.as_deref(), Some("kept"));
    conn.close().await.unwrap();
    cluster.stop().await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}
