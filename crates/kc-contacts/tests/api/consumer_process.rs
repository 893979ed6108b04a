//! A second process follows `WatchEvents` from cursor zero, is killed (SIGKILL) and restarted
//! mid-stream, and ends with exactly the events committed: none missing, none applied twice.
//!
//! The second process is this test binary run again with `--exact
//! consumer_process::follower_process` and the environment variables below; without them
//! `follower_process` returns at once.

use std::collections::{HashMap, HashSet};
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::Duration;

use crate::helpers::{Harness, PATIENCE, authed, pool_on, user};
use futures::StreamExt;
use futures::future::BoxFuture;
use kc_proto::contacts::contact_registry_service_client::ContactRegistryServiceClient;
use kc_proto::contacts::{self as pb};
use kc_runtime::db::PoolSettings;
use kc_runtime::outbox::Consumer;
use sqlx::{PgConnection, PgPool};
use tokio::process::{Child, Command};
use tonic::Status;
use uuid::Uuid;

use pb::ContactRole as R;

/// Tells `follower_process` to act as the follower: the database URL of its schema.
const ENV_DATABASE_URL: &str = "KC_CONTACTS_FOLLOWER_DATABASE_URL";
/// The registry's URL.
const ENV_SERVICE_URL: &str = "KC_CONTACTS_FOLLOWER_SERVICE_URL";
/// The service token the follower calls WatchEvents with.
const ENV_TOKEN: &str = "KC_CONTACTS_FOLLOWER_TOKEN";
/// Schema of the follower's projection and cursor.
const SCHEMA: &str = "follower";
/// Name of the follower's cursor.
const CONSUMER: &str = "test.contacts-follower";

/// The follower's tables: the projection (a double apply fails on its primary key), every
/// apply attempt, and apply failures (written outside the apply transaction).
const FOLLOWER_TABLES: &str = r#"
CREATE TABLE applied_events (
    n          bigserial   UNIQUE,
    event_id   uuid        PRIMARY KEY,
    cursor     text        NOT NULL,
    event_kind text        NOT NULL,
    site_id    uuid        NOT NULL,
    pid        integer     NOT NULL
);
CREATE TABLE apply_attempts (
    n        bigserial PRIMARY KEY,
    event_id uuid      NOT NULL,
    pid      integer   NOT NULL
);
CREATE TABLE apply_failures (
    event_id uuid NOT NULL,
    error    text NOT NULL
);
"#;

/// The follower process. Returns at once unless the parent test started it.
#[tokio::test]
async fn follower_process() {
    let Ok(database_url) = std::env::var(ENV_DATABASE_URL) else {
        return;
    };
    let service_url = std::env::var(ENV_SERVICE_URL).expect("service url");
    let token = std::env::var(ENV_TOKEN).expect("token");
    let pool = kc_runtime::db::connect(
        &database_url,
        SCHEMA,
        &PoolSettings {
            max_connections: 4,
            min_connections: 1,
            acquire_timeout: Duration::from_secs(10),
        },
    )
    .await
    .expect("follower pool");
    let channel = tonic::transport::Endpoint::from_shared(service_url)
        .expect("service url")
        .connect_lazy();
    let client = ContactRegistryServiceClient::new(channel);
    let source = move |after: String| {
        let mut client = client.clone();
        let request = authed(
            &token,
            pb::WatchEventsRequest {
                after_cursor: after,
            },
        );
        async move {
            let stream = client.watch_events(request).await?.into_inner();
            Ok::<_, Status>(stream.map(|item| {
                let event = item?
                    .event
                    .ok_or_else(|| Status::internal("event without body"))?;
                Ok((event.cursor.clone(), event))
            }))
        }
    };
    let side = pool.clone();
    let apply = apply_fn(move |conn, event| Box::pin(apply_event(side.clone(), conn, event)));
    // The parent holds our stdin: when it goes away (even killed), stop.
    let orphaned = async {
        let _ = tokio::task::spawn_blocking(|| {
            let mut sink = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink)
        })
        .await;
    };
    Consumer::new(pool, CONSUMER)
        .with_backoff(Duration::from_millis(10), Duration::from_millis(200))
        .run(source, apply, orphaned)
        .await;
}

/// Gives a closure the higher-ranked signature [`Consumer::run`] wants for `apply`.
fn apply_fn<F>(apply: F) -> F
where
    F: for<'c> FnMut(&'c mut PgConnection, pb::Event) -> BoxFuture<'c, anyhow::Result<()>>,
{
    apply
}

/// Applies one event: counts the attempt (outside the transaction, so it survives a kill or
/// a rollback), then inserts the event into the projection inside the consumer's
/// transaction. A second insert of one event fails on the primary key: that is recorded
/// and ends the process loudly.
async fn apply_event(
    side: PgPool,
    conn: &mut PgConnection,
    event: pb::Event,
) -> anyhow::Result<()> {
    let event_id = Uuid::parse_str(&event.event_id)?;
    let site_id = Uuid::parse_str(&event.site.as_ref().expect("site").site_id)?;
    let kind = match &event.payload {
        Some(payload) => format!("{payload:?}")
            .split('(')
            .next()
            .unwrap_or_default()
            .to_owned(),
        None => "none".to_owned(),
    };
    let pid = i32::try_from(std::process::id())?;
    sqlx::query("INSERT INTO apply_attempts (event_id, pid) VALUES ($1, $2)")
        .bind(event_id)
        .bind(pid)
        .execute(&side)
        .await?;
    let inserted = sqlx::query(
        "INSERT INTO applied_events (event_id, cursor, event_kind, site_id, pid) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(event_id)
    .bind(&event.cursor)
    .bind(&kind)
    .bind(site_id)
    .bind(pid)
    .execute(&mut *conn)
    .await;
    if let Err(error) = inserted {
        sqlx::query("INSERT INTO apply_failures (event_id, error) VALUES ($1, $2)")
            .bind(event_id)
            .bind(error.to_string())
            .execute(&side)
            .await?;
        eprintln!("follower: applying event {event_id} failed: {error}");
        std::process::exit(3);
    }
    Ok(())
}

/// Starts the follower process.
fn spawn_follower(h: &Harness) -> Child {
    let exe = std::env::current_exe().expect("test binary");
    Command::new(exe)
        .args([
            "--exact",
            "consumer_process::follower_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ENV_DATABASE_URL, &h.db.url)
        .env(ENV_SERVICE_URL, h.service.url())
        .env(ENV_TOKEN, &h.service_token)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start the follower process")
}

/// Fails the test if the follower exited (it runs until killed).
fn assert_running(child: &mut Child) {
    if let Some(status) = child.try_wait().expect("follower status") {
        panic!("the follower process exited on its own: {status}");
    }
}

async fn count(pool: &PgPool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(pool)
        .await
        .expect("count")
}

/// Polls until `condition(applied count)` holds, checking the follower stays alive.
async fn wait_applied(
    follower_pool: &PgPool,
    child: &mut Child,
    what: &str,
    condition: impl Fn(i64) -> bool,
) -> i64 {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        assert_running(child);
        let applied = count(follower_pool, "SELECT count(*) FROM applied_events").await;
        if condition(applied) {
            return applied;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what} (applied {applied})"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Writes: `sites` new sites and then `per_site` changes on each, on `parallel` tasks at
/// once. Returns the number of changes made (one event each).
async fn write_batch(h: &Harness, first_site: u32, sites: u32, per_site: u32) -> usize {
    let mut events = 0;
    let mut site_ids = Vec::new();
    for n in first_site..first_site + sites {
        site_ids.push(
            h.site(&format!("{}", 1_000_000 + n), "2000001", user())
                .await
                .site_id,
        );
        events += 1;
    }
    // One task per site, all at once: AssignContact, then UpdateContact, alternating.
    let tasks: Vec<_> = site_ids
        .into_iter()
        .map(|site_id| {
            let mut client = h.client();
            let token = h.service_token.clone();
            tokio::spawn(async move {
                let mut last = None::<pb::Contact>;
                for i in 0..per_site {
                    let contact = match (&last, i % 2) {
                        (Some(contact), 1) => {
                            client
                                .update_contact(authed(
                                    &token,
                                    pb::UpdateContactRequest {
                                        contact_id: contact.contact_id.clone(),
                                        details: Some(pb::ContactDetails {
                                            job_title: format!("Title {i}"),
                                            ..Default::default()
                                        }),
                                        etag: contact.etag.clone(),
                                        site_id: String::new(),
                                    },
                                ))
                                .await
                                .expect("update contact")
                                .into_inner()
                                .contact
                        }
                        _ => {
                            client
                                .assign_contact(authed(
                                    &token,
                                    pb::AssignContactRequest {
                                        site_id: site_id.clone(),
                                        user_id: user().to_string(),
                                        role: R::SiteUser as i32,
                                        details: None,
                                    },
                                ))
                                .await
                                .expect("assign contact")
                                .into_inner()
                                .contact
                        }
                    };
                    last = contact;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("writer task");
    }
    events + (sites * per_site) as usize
}

/// Kills `child` with SIGKILL and waits for it to go.
async fn kill(child: &mut Child) {
    child.start_kill().expect("SIGKILL the follower");
    let status = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .expect("the follower dies")
        .expect("follower status");
    assert_eq!(status.signal(), Some(9), "killed by SIGKILL: {status}");
}

// The consumer contract (ARCHITECTURE.md: never miss an event, apply each once) on the
// registry's events of rules S1, C5, C6, C8: a follower process SIGKILLed mid-stream and
// restarted ends with exactly the committed events, in stream order, each applied once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_killed_and_restarted_mid_stream_applies_every_event_exactly_once() {
    let h = Harness::start().await;
    // The follower's schema: cursor table and projection.
    let follower_pool = {
        let admin = pool_on(&h.db.url, "public").await;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {SCHEMA}")))
            .execute(&admin)
            .await
            .expect("create schema");
        admin.close().await;
        let pool = pool_on(&h.db.url, SCHEMA).await;
        let mut conn = pool.acquire().await.expect("acquire");
        kc_runtime::outbox::install(&mut conn)
            .await
            .expect("cursor table");
        sqlx::raw_sql(FOLLOWER_TABLES)
            .execute(&mut *conn)
            .await
            .expect("follower tables");
        drop(conn);
        pool
    };
    let contacts_pool = h.pool().await;

    // First batch: 10 sites and 100 changes, before the follower starts.
    let mut written = write_batch(&h, 0, 10, 10).await;
    // Hold the stream's horizon back: events committed after this transaction took its id
    // cannot be delivered until it ends, so the follower cannot catch up with the second
    // batch before it is killed.
    let mut horizon = contacts_pool.begin().await.expect("begin");
    let _: i64 = sqlx::query_scalar("SELECT pg_current_xact_id()::text::bigint")
        .fetch_one(&mut *horizon)
        .await
        .expect("take a transaction id");
    let first_batch = written as i64;
    written += write_batch(&h, 10, 10, 10).await;

    // The follower starts from cursor zero; once it applied some, SIGKILL it.
    let mut child = spawn_follower(&h);
    wait_applied(
        &follower_pool,
        &mut child,
        "the follower applied some events",
        |n| n >= 25,
    )
    .await;
    kill(&mut child).await;
    let applied_before_kill = count(&follower_pool, "SELECT count(*) FROM applied_events").await;
    assert!(
        applied_before_kill >= 25 && applied_before_kill <= first_batch,
        "killed mid-stream: {applied_before_kill} applied of {written}"
    );
    assert!(applied_before_kill < written as i64);
    horizon.rollback().await.expect("release the horizon");

    // Restart it, while a third batch is written (also concurrently), mixed with other
    // kinds of changes.
    let mut child = spawn_follower(&h);
    written += write_batch(&h, 20, 10, 10).await;
    let site = h
        .supported_site("1999999", "2000002", user(), user())
        .await
        .site
        .expect("site");
    written += 1;
    for _ in 0..5 {
        h.client()
            .replace_contact(h.op(pb::ReplaceContactRequest {
                site_id: site.site_id.clone(),
                role: R::SiteTechnical as i32,
                new_user_id: user().to_string(),
                details: None,
            }))
            .await
            .expect("replace");
        h.client()
            .transfer_primary_contact(h.op(pb::TransferPrimaryContactRequest {
                site_id: site.site_id.clone(),
                new_user_id: user().to_string(),
                etag: String::new(),
                previous_primary_role: 0,
            }))
            .await
            .expect("transfer");
        written += 2;
    }
    let removed = h
        .assign(&site.site_id, user(), R::Billing)
        .await
        .expect("assign");
    h.client()
        .remove_contact(h.svc(pb::RemoveContactRequest {
            contact_id: removed.contact_id,
            etag: String::new(),
            site_id: String::new(),
        }))
        .await
        .expect("remove");
    written += 2;
    assert_eq!(
        count(&contacts_pool, "SELECT count(*) FROM outbox_events").await,
        written as i64,
        "one event per change"
    );
    let all = wait_applied(&follower_pool, &mut child, "the follower caught up", |n| {
        n >= written as i64
    })
    .await;
    assert_running(&mut child);
    kill(&mut child).await;

    // Exactly the committed events: none missing, none extra, none applied twice.
    assert_eq!(all, written as i64);
    let events = h.events("", written).await;
    let committed: Vec<(Uuid, String)> = events
        .iter()
        .map(|e| {
            (
                Uuid::parse_str(&e.event_id).expect("uuid"),
                e.cursor.clone(),
            )
        })
        .collect();
    let applied: Vec<(Uuid, String)> =
        sqlx::query_as("SELECT event_id, cursor FROM applied_events ORDER BY n")
            .fetch_all(&follower_pool)
            .await
            .expect("applied events");
    // Same events, in the same (commit) order, each once.
    assert_eq!(applied, committed);
    let outbox: Vec<Uuid> = sqlx::query_scalar("SELECT event_id FROM outbox_events")
        .fetch_all(&contacts_pool)
        .await
        .expect("outbox ids");
    let outbox: HashSet<Uuid> = outbox.into_iter().collect();
    let applied_ids: HashSet<Uuid> = applied.iter().map(|(id, _)| *id).collect();
    assert_eq!(applied_ids.len(), applied.len(), "no event applied twice");
    assert_eq!(applied_ids, outbox, "exactly the committed events");
    assert_eq!(
        count(&follower_pool, "SELECT count(*) FROM apply_failures").await,
        0,
        "no apply ever met an event already applied"
    );
    // The stored cursor is the last event's.
    let cursor: String = sqlx::query_scalar("SELECT cursor FROM event_cursors WHERE consumer = $1")
        .bind(CONSUMER)
        .fetch_one(&follower_pool)
        .await
        .expect("cursor");
    assert_eq!(&cursor, &committed.last().expect("events").1);
    // Both processes applied events: the first before the kill, the second the rest.
    let by_process: Vec<(i32, i64)> =
        sqlx::query_as("SELECT pid, count(*) FROM applied_events GROUP BY pid ORDER BY min(n)")
            .fetch_all(&follower_pool)
            .await
            .expect("per process");
    assert_eq!(by_process.len(), 2, "{by_process:?}");
    assert_eq!(by_process[0].1, applied_before_kill);
    // Attempts: every event at least once; beyond that only the one in flight when the
    // first process was killed (its transaction never committed).
    let attempts: Vec<(Uuid, i64)> =
        sqlx::query_as("SELECT event_id, count(*) FROM apply_attempts GROUP BY event_id")
            .fetch_all(&follower_pool)
            .await
            .expect("attempts");
    let attempts: HashMap<Uuid, i64> = attempts.into_iter().collect();
    assert_eq!(
        attempts.keys().copied().collect::<HashSet<_>>(),
        applied_ids
    );
    let retried: Vec<(&Uuid, &i64)> = attempts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        retried.len() <= 1 && retried.iter().all(|(_, n)| **n == 2),
        "only the event in flight at the kill is attempted again: {retried:?}"
    );
    eprintln!(
        "follower: {written} events; first process applied {applied_before_kill} before \
         SIGKILL, the second {}; {} retried after the kill",
        by_process[1].1,
        retried.len()
    );
    follower_pool.close().await;
    contacts_pool.close().await;
}
