//! `gateway.watch_permissions`: how long a grant takes from its commit to a relying
//! application's `AuthorizationService.WatchPermissions` stream.
//!
//! # The fixture
//!
//! [`SITES`] sites, each with a primary contact, and one fresh user per grant the run can
//! make (with a margin), written with bulk SQL straight into the **access** schema's
//! projection (`sites`, `site_roles`, `users` with a proven address), like the access
//! scenarios' fixture ([`super::access`]) and for the same reason: access learns sites and
//! users only from the other services' streams. The users hold nothing anywhere, so the
//! permission feed's table holds nothing of them, and each grant flips exactly one
//! permission (SOFTWARE_DOWNLOAD): one `permission.changed` event. (The primaries' own
//! permissions are not in the feed's table, which only a registry event would fill; no call
//! touches them.) Notification, which follows access's stream, does not know these sites:
//! it retries the first RightsChanged of them for the rest of the invocation (see the README).
//!
//! # The calls and the measure
//!
//! A relying application (scope `authz`, [`Env::relying_app_bearer`]) watches the gateway's
//! `WatchPermissions` narrowed to the [`SITES`] sites, from before the first grant. The calls
//! are SetToolAccess on access at [`RATE`] a second (an open loop, [`load::paced`]), each
//! giving the next user downloads on the next site (round-robin: every (site, user) pair is
//! new), on behalf of the site's primary. The latency of a grant is the instant its change
//! arrived on the stream minus the instant SetToolAccess answered (the commit, as the writer
//! sees it): the outbox's notification, access's read of its outbox, the gateway and both
//! gRPC hops. A change that arrives before the answer counts as 1 µs. After the window the
//! run waits up to [`DRAIN_TIMEOUT`] for the changes of the grants made in it; one still
//! missing then counts with the time waited and is reported as missing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use futures::future::BoxFuture;
use kc_proto::access::access_management_service_client::AccessManagementServiceClient;
use kc_proto::access::{Permission, SetToolAccessRequest, SoftwareAccess, ToolAccess};
use kc_proto::gateway::WatchPermissionsRequest;
use kc_proto::gateway::authorization_service_client::AuthorizationServiceClient;
use sqlx::Connection;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tonic::metadata::{Ascii, MetadataValue};
use uuid::Uuid;

use super::load::{self, CallFn, Deliveries, Window};
use super::streams;
use crate::env::{Env, OutcomeFn, Prepared};

/// Grants a second.
pub(crate) const RATE: f64 = 100.0;
/// Sites the grants go round-robin over (the most one `WatchPermissions` may name).
pub(crate) const SITES: usize = 1_000;
/// Site number of the first site; 7 digits, away from the other scenarios' numbers.
const NUMBER_BASE: i64 = 8_800_000;
/// Longest the run waits after its window for the changes of the grants made in it.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest the trial grant's change may take to arrive while seeding.
const TRIAL_TIMEOUT: Duration = Duration::from_secs(60);

/// One site of the fixture: its id and its primary contact.
#[derive(Debug, Clone)]
struct Site {
    site_id: String,
    primary: MetadataValue<Ascii>,
}

/// Seeds `gateway.watch_permissions`: see the module documentation.
pub(crate) fn seed_watch_permissions(env: &Env) -> BoxFuture<'_, anyhow::Result<Prepared>> {
    Box::pin(async move {
        // One user per grant the run can make (warm-up included), with a margin for the
        // pacer catching up, and one for the trial.
        let grants = (RATE * env.run_time.as_secs_f64() * 1.1).ceil() as usize + 10;
        let mut notes = Vec::new();
        notes.extend(streams::wait_until_applied(env, "access", &streams::ACCESS_STREAMS).await?);
        let (sites, mut users) = load_fixture(env, grants + 1).await?;
        let bearer = env.service_bearer().await?;
        let relying_app = env.relying_app_bearer().await?;

        let arrivals = Arc::new(Arrivals::default());
        let watcher = follow(env, &relying_app, &sites, Arc::clone(&arrivals)).await?;

        // One grant, followed to the stream: the stream is live and the calls to come work.
        let trial = users.pop().context("no user for the trial grant")?;
        let started = Instant::now();
        AccessManagementServiceClient::new(env.channel("access").await?)
            .set_tool_access(grant(&sites[0], &trial, &bearer))
            .await
            .context("SetToolAccess on behalf of a site's primary contact failed")?;
        if !arrivals.wait_for(&[trial], started + TRIAL_TIMEOUT).await {
            watcher.abort();
            bail!(
                "the trial grant's change did not reach WatchPermissions within {} s",
                TRIAL_TIMEOUT.as_secs()
            );
        }
        notes.push(format!(
            "{SITES} sites, {} users to grant to, {RATE} grants a second; the trial grant's \
             change arrived on the stream {:.1} ms after the call",
            users.len(),
            started.elapsed().as_secs_f64() * 1000.0
        ));
        let state = Arc::new(Grants {
            sites,
            users,
            bearer,
            next: AtomicUsize::new(0),
            answered: load::Stamps::default(),
            arrivals,
            watcher,
        });
        Ok(Prepared {
            admit: Some(load::paced(RATE)),
            paced: Some(RATE),
            outcome: Some(outcome(&state)),
            ..Prepared::calls(call(&state), notes)
        })
    })
}

/// Writes the fixture into access's projection: [`SITES`] sites with a primary each, and
/// `users` fresh users with a proven address. Returns the sites and the users' ids.
async fn load_fixture(env: &Env, users: usize) -> anyhow::Result<(Vec<Site>, Vec<String>)> {
    let mut conn = env.database("access").await?;
    let mut tx = conn.begin().await?;
    let tag = Uuid::new_v4().simple().to_string();
    let sites: Vec<(Uuid, Uuid)> = sqlx::query_as(
        "WITH made AS ( \
           INSERT INTO sites (site_id, site_number, customer_number) \
           SELECT gen_random_uuid(), ($1 + i)::text, ($1 + i)::text \
           FROM generate_series(0, $2 - 1) AS i \
           RETURNING site_id), \
         primaries AS ( \
           INSERT INTO site_roles (site_id, user_id, role) \
           SELECT site_id, gen_random_uuid(), 1 FROM made \
           RETURNING site_id, user_id) \
         SELECT site_id, user_id FROM primaries",
    )
    .bind(NUMBER_BASE)
    .bind(i64::try_from(SITES)?)
    .fetch_all(&mut *tx)
    .await
    .context(
        "could not load the sites of gateway.watch_permissions (it runs once per benchmark \
         invocation)",
    )?;
    let user_ids: Vec<Uuid> = (0..users).map(|_| Uuid::new_v4()).collect();
    let primary_ids: Vec<Uuid> = sites.iter().map(|(_, user)| *user).collect();
    sqlx::query(
        "INSERT INTO users (user_id, email, email_verified, disabled) \
         SELECT id, 'watch-' || $2 || '-' || n || '@watch-bench.example.com', true, false \
         FROM unnest($1::uuid[]) WITH ORDINALITY AS u (id, n)",
    )
    .bind([primary_ids, user_ids.clone()].concat())
    .bind(&tag)
    .execute(&mut *tx)
    .await
    .context("could not load the users of gateway.watch_permissions")?;
    sqlx::query("SELECT pg_notify('kc_access_invalidate', '*')")
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    conn.close().await?;
    let sites = sites
        .into_iter()
        .map(|(site_id, primary)| {
            Ok(Site {
                site_id: site_id.to_string(),
                primary: primary.to_string().parse()?,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok((sites, user_ids.iter().map(Uuid::to_string).collect()))
}

/// When each user's download permission arrived on the stream.
#[derive(Default)]
struct Arrivals {
    at: Mutex<HashMap<String, Instant>>,
    changed: Notify,
}

impl Arrivals {
    fn record(&self, user_id: String, at: Instant) {
        self.at
            .lock()
            .expect("the arrivals' lock is never poisoned")
            .entry(user_id)
            .or_insert(at);
        self.changed.notify_waiters();
    }

    fn get(&self, user_id: &str) -> Option<Instant> {
        self.at
            .lock()
            .expect("the arrivals' lock is never poisoned")
            .get(user_id)
            .copied()
    }

    /// Waits until every one of `users` arrived, or `deadline`; whether they all did.
    async fn wait_for(&self, users: &[String], deadline: Instant) -> bool {
        loop {
            let notified = self.changed.notified();
            if users.iter().all(|user| self.get(user).is_some()) {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return users.iter().all(|user| self.get(user).is_some());
            }
        }
    }
}

/// Opens the relying application's `WatchPermissions` on `sites`, from the start of the
/// stream, and records each arrival of a download permission in `arrivals` until aborted.
async fn follow(
    env: &Env,
    bearer: &MetadataValue<Ascii>,
    sites: &[Site],
    arrivals: Arc<Arrivals>,
) -> anyhow::Result<JoinHandle<()>> {
    let url = env
        .urls
        .get("gateway")
        .context("the gateway is not running")?;
    // No request timeout: the stream lasts the whole run.
    let channel = tonic::transport::Endpoint::from_shared(url.clone())?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .with_context(|| format!("could not connect to the gateway at {url}"))?;
    let mut request = tonic::Request::new(WatchPermissionsRequest {
        after_cursor: String::new(),
        site_ids: sites.iter().map(|site| site.site_id.clone()).collect(),
    });
    request
        .metadata_mut()
        .insert("authorization", bearer.clone());
    let mut stream = AuthorizationServiceClient::new(channel)
        .watch_permissions(request)
        .await
        .context("the relying application could not open WatchPermissions")?
        .into_inner();
    Ok(tokio::spawn(async move {
        loop {
            match stream.message().await {
                Ok(Some(change)) => {
                    if change.allowed && change.permission == Permission::SoftwareDownload as i32 {
                        arrivals.record(change.user_id, Instant::now());
                    }
                }
                Ok(None) => {
                    eprintln!("xtask: WatchPermissions ended");
                    return;
                }
                Err(status) => {
                    eprintln!("xtask: WatchPermissions failed: {status}");
                    return;
                }
            }
        }
    }))
}

/// What the calls of `gateway.watch_permissions` share.
struct Grants {
    sites: Vec<Site>,
    /// The users to grant to, one a call.
    users: Vec<String>,
    bearer: MetadataValue<Ascii>,
    /// Index of the next user.
    next: AtomicUsize,
    /// Each grant that committed: the user and when SetToolAccess answered.
    answered: load::Stamps,
    arrivals: Arc<Arrivals>,
    /// The task following the stream, stopped with the outcome.
    watcher: JoinHandle<()>,
}

/// SetToolAccess giving `user` downloads on `site`, on behalf of the site's primary.
fn grant(
    site: &Site,
    user_id: &str,
    bearer: &MetadataValue<Ascii>,
) -> tonic::Request<SetToolAccessRequest> {
    let mut request = tonic::Request::new(SetToolAccessRequest {
        site_id: site.site_id.clone(),
        user_id: user_id.to_owned(),
        tools: Some(ToolAccess {
            software: SoftwareAccess::DownloadsOnly.into(),
            ..ToolAccess::default()
        }),
        reason: "benchmark: downloads for a new colleague".to_owned(),
        ..Default::default()
    });
    request
        .metadata_mut()
        .insert("authorization", bearer.clone());
    request
        .metadata_mut()
        .insert("x-kc-on-behalf-of", site.primary.clone());
    request
}

/// The next grant: the next user, on the next site.
fn call(state: &Arc<Grants>) -> CallFn {
    let state = Arc::clone(state);
    Arc::new(move |channel| {
        let state = Arc::clone(&state);
        Box::pin(async move {
            let index = state.next.fetch_add(1, Ordering::Relaxed);
            let Some(user_id) = state.users.get(index) else {
                return Err(tonic::Status::resource_exhausted(
                    "the benchmark ran out of users to grant to: it seeds enough for the run",
                ));
            };
            let site = &state.sites[index % state.sites.len()];
            AccessManagementServiceClient::new(channel)
                .set_tool_access(grant(site, user_id, &state.bearer))
                .await?;
            let answered = Instant::now();
            state.answered.push(user_id.clone(), answered);
            Ok(())
        })
    })
}

/// Waits for the changes of the grants answered within the window, then measures each one's
/// latency.
fn outcome(state: &Arc<Grants>) -> OutcomeFn {
    let state = Arc::clone(state);
    Box::new(move |window: Window| {
        Box::pin(async move {
            let answered = state.answered.within(window);
            let users: Vec<String> = answered.iter().map(|(user, _)| user.clone()).collect();
            let waited_from = Instant::now();
            let deadline = waited_from.max(window.until) + DRAIN_TIMEOUT;
            state.arrivals.wait_for(&users, deadline).await;
            let waited = waited_from.elapsed();
            state.watcher.abort();
            let stopped = Instant::now();
            let mut latency = load::latency_histogram()?;
            let (mut count, mut missing) = (0, 0);
            for (user, at) in &answered {
                let took = match state.arrivals.get(user) {
                    Some(arrived) => {
                        count += 1;
                        arrived.saturating_duration_since(*at)
                    }
                    None => {
                        missing += 1;
                        stopped - *at
                    }
                };
                let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
                latency.saturating_record(us.max(1));
            }
            let mut notes = vec![format!(
                "{} grants answered in the window, {count} of their changes received on the \
                 stream ({:.1} s after the window for the last ones)",
                answered.len(),
                waited.as_secs_f64()
            )];
            if missing > 0 {
                notes.push(format!(
                    "{missing} changes had not arrived {} s after the window: counted with the \
                     time waited",
                    DRAIN_TIMEOUT.as_secs()
                ));
            }
            Ok((
                Deliveries {
                    unit: "changes",
                    counted_at: "received on WatchPermissions",
                    count,
                    window: window.until - window.from,
                    latency: Some(latency),
                    missing,
                },
                notes,
            ))
        })
    })
}
