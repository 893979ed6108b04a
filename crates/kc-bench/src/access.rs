//! Access management's scenarios (`access.*`): their fixture and calls.
//!
//! # The fixture
//!
//! [`FIXTURE_SITES`] sites with [`MEMBERS_PER_SITE`] members each, written with bulk SQL
//! (`INSERT … SELECT generate_series`) straight into the **access** schema's projection, as
//! the service's own role. Rows in the contacts schema would not do: access knows sites and
//! roles only from the registry's event stream, and bulk-loaded registry rows have no events.
//! Creating 10,000 sites and 190,000 contacts through the registry's RPCs instead would cost
//! minutes of a 2-core machine (200,000 RPCs, then as many events for access to apply) for
//! the same rows. So this is a benchmark fixture only: no service but kc-access writes its
//! schema (ARCHITECTURE.md), the registry does not know these sites, and they have no audit
//! records or events. The rows are the ones the projection and the grant RPCs write:
//!
//! - `sites`: site numbers `8000000 + i` (their own range, 7 digits: S2), four sites per
//!   customer, the C3 switch on every other site;
//! - `site_roles`, one role per member `k` of a site: PRIMARY, ADMINISTRATIVE,
//!   SITE_TECHNICAL, 4 SECONDARY, RENEWAL, SHIPPING, BILLING, then SITE_USER (one holder of
//!   each single-holder role, at most four SECONDARY, as the registry enforces);
//! - `grants`: explicit levels, varied and within each tool's range, for every member whose
//!   rights are not all implied by its role (`k >= 3`);
//! - `users`: every member, with a verified e-mail; one member in a thousand is disabled.
//!
//! The load transaction also notifies `kc_access_invalidate` with `*` (as every change of the
//! projection notifies), so no replica keeps a cached view of the sites from before the load.
//! Before anything is measured, the seed step waits until access's consumers have applied
//! every event the registry and identity have published (the contacts scenarios, run before,
//! publish thousands), so that catching up does not take CPU from the measurement.
//!
//! # The calls
//!
//! Both scenarios go round-robin over all 200,000 `(site, user)` pairs, site-major: check `p`
//! is on pair `(site p mod 10,000, member p div 10,000)` for one of the 18 permissions, so 20
//! consecutive checks touch 20 different sites and 10,000 calls of BatchCheck (or 200,000
//! of Check) touch every pair.
//!
//! Right before each run (after the service's baseline), the rights cache is cleared and
//! filled with all 10,000 sites, each with its 20 members: the service's peak RSS is measured
//! with all of them cached, and the window measures checks served from memory. The service
//! refills an entry once it is older than `--check-cache-ttl` (30 s): filled together, all
//! 10,000 would otherwise come due together, inside the window or not by chance of timing.
//! The fill's rate is printed (it is what those refills cost), and a note says when the TTL
//! is too short for the entries to outlive the run.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};
use kc_proto::access::access_management_service_client::AccessManagementServiceClient;
use kc_proto::access::{BatchCheckRequest, CheckRequest, Permission};
use sqlx::{Connection, PgConnection};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;
use uuid::Uuid;

use super::load::CallFn;
use super::streams;
use crate::env::{Env, Prepared};

/// Sites of the fixture.
pub(crate) const FIXTURE_SITES: i64 = 10_000;
/// Members (users with a role, most of them with explicit grants too) of each fixture site.
pub(crate) const MEMBERS_PER_SITE: i64 = 20;
/// Checks in one BatchCheck of `access.batch_check`.
pub(crate) const BATCH_CHECKS: usize = 20;
/// Site number of fixture site 0; site `i` has number `base + i`.
pub(crate) const SITE_NUMBER_BASE: i64 = 8_000_000;
/// Customer number of the customer of fixture sites 0 to 3.
const CUSTOMER_NUMBER_BASE: i64 = 8_500_000;
/// Fixture sites per customer: site `i` belongs to customer `base + i / 4`.
const SITES_PER_CUSTOMER: i64 = 4;

/// Every permission a check may ask about, in proto order.
pub(crate) const PERMISSIONS: [Permission; 18] = [
    Permission::SoftwareDownload,
    Permission::MediaAccess,
    Permission::QuotesAndCatalogs,
    Permission::LicenseRenewal,
    Permission::ReportsView,
    Permission::EntitlementsView,
    Permission::EntitlementsUpdate,
    Permission::AccountManagement,
    Permission::AccessView,
    Permission::AccessUpdate,
    Permission::ContactsView,
    Permission::ContactsUpdate,
    Permission::DocumentsView,
    Permission::SupportOwnCases,
    Permission::SupportSiteCases,
    Permission::SupportAdmin,
    Permission::ApproveSiteAccess,
    Permission::ApproveSupportAccess,
];

/// Seeds `access.check`: the fixture, then Check of one pair a call, round-robin.
pub(crate) fn seed_check(env: &Env) -> BoxFuture<'_, anyhow::Result<Prepared>> {
    Box::pin(async move {
        let seeded = seed_population(env).await?;
        let checks = seeded.checks;
        let bearer = seeded.bearer;
        let next = Arc::new(AtomicUsize::new(0));
        let call: CallFn = Arc::new(move |channel| {
            let check = checks[next.fetch_add(1, Ordering::Relaxed) % checks.len()].clone();
            let request = authorized(check, &bearer);
            Box::pin(async move {
                AccessManagementServiceClient::new(channel)
                    .check(request)
                    .await
                    .map(drop)
            })
        });
        Ok(Prepared {
            warm: Some(seeded.warm),
            ..Prepared::calls(call, seeded.notes)
        })
    })
}

/// Seeds `access.batch_check`: the fixture, then BatchCheck of [`BATCH_CHECKS`] consecutive
/// pairs a call, round-robin.
pub(crate) fn seed_batch_check(env: &Env) -> BoxFuture<'_, anyhow::Result<Prepared>> {
    Box::pin(async move {
        let seeded = seed_population(env).await?;
        let checks = seeded.checks;
        let bearer = seeded.bearer;
        // The pairs split into whole batches: every call takes a full slice.
        if checks.len() % BATCH_CHECKS != 0 {
            bail!(
                "{} checks do not split into batches of {BATCH_CHECKS}",
                checks.len()
            );
        }
        let next = Arc::new(AtomicUsize::new(0));
        let call: CallFn = Arc::new(move |channel| {
            let start = next.fetch_add(BATCH_CHECKS, Ordering::Relaxed) % checks.len();
            let request = authorized(
                BatchCheckRequest {
                    checks: checks[start..start + BATCH_CHECKS].to_vec(),
                },
                &bearer,
            );
            Box::pin(async move {
                let results = AccessManagementServiceClient::new(channel)
                    .batch_check(request)
                    .await?
                    .into_inner()
                    .results;
                if results.len() != BATCH_CHECKS {
                    return Err(tonic::Status::internal(format!(
                        "BatchCheck answered {} results for {BATCH_CHECKS} checks",
                        results.len()
                    )));
                }
                Ok(())
            })
        });
        Ok(Prepared {
            warm: Some(seeded.warm),
            ..Prepared::calls(call, seeded.notes)
        })
    })
}

/// What both scenarios (and the gateway's `gateway.check`) start from.
pub(crate) struct Seeded {
    /// Every pair with its permission, in call order.
    pub checks: Arc<Vec<CheckRequest>>,
    /// The benchmark's service token.
    pub bearer: MetadataValue<Ascii>,
    /// Notes on the fixture and the checks.
    pub notes: Vec<String>,
    /// Clears the rights cache and fills it with every fixture site, right before the run.
    pub warm: BoxFuture<'static, anyhow::Result<String>>,
}

/// Waits until access has applied every event the registry and identity published, then
/// loads the fixture unless an earlier scenario of this run did; returns notes on both.
pub(crate) async fn ensure_fixture(env: &Env) -> anyhow::Result<Vec<String>> {
    let mut notes = Vec::new();
    if let Some(note) = streams::wait_until_applied(env, "access", &streams::ACCESS_STREAMS).await?
    {
        notes.push(note);
    }
    let mut conn = env.database("access").await?;
    if let Some(note) = load_fixture(&mut conn).await? {
        notes.push(note);
    }
    conn.close().await?;
    Ok(notes)
}

/// Waits for the projection, loads the fixture unless an earlier scenario of this run did,
/// and checks one batch of the calls to come.
pub(crate) async fn seed_population(env: &Env) -> anyhow::Result<Seeded> {
    let mut notes = ensure_fixture(env).await?;
    let mut conn = env.database("access").await?;
    let pairs = fixture_pairs(&mut conn).await?;
    conn.close().await?;
    let checks: Arc<Vec<CheckRequest>> = Arc::new(
        (0..pairs.len())
            .map(|p| {
                let (pair, permission) = nth_check(p);
                let (site_id, user_id) = pairs[pair];
                CheckRequest {
                    user_id: user_id.to_string(),
                    site_id: site_id.to_string(),
                    permission: permission.into(),
                }
            })
            .collect(),
    );

    // The calls to come, tried once: every check answered, with both outcomes among them.
    let bearer = env.service_bearer().await?;
    let channel = env.channel("access").await?;
    let sample = &checks[..100];
    let results = AccessManagementServiceClient::new(channel.clone())
        .batch_check(authorized(
            BatchCheckRequest {
                checks: sample.to_vec(),
            },
            &bearer,
        ))
        .await
        .context("BatchCheck of the fixture failed")?
        .into_inner()
        .results;
    ensure_sample_answered(
        "BatchCheck",
        sample.len(),
        results.iter().map(|result| result.reason.as_str()),
    )?;
    let allowed = results.iter().filter(|result| result.allowed).count();
    if allowed == 0 || allowed == results.len() {
        bail!(
            "the fixture's first {} checks all answered allowed={}",
            results.len(),
            allowed > 0
        );
    }
    notes.push(format!(
        "{FIXTURE_SITES} sites x {MEMBERS_PER_SITE} users, round-robin over all {} (site, user) \
         pairs and {} permissions; {allowed} of the first {} checks allowed",
        checks.len(),
        PERMISSIONS.len(),
        results.len()
    ));
    let database_url = env
        .database_urls
        .get("access")
        .context("access has no database")?
        .clone();
    let warm = warm_cache(
        channel,
        database_url,
        bearer.clone(),
        checks.clone(),
        env.run_time,
    );
    Ok(Seeded {
        checks,
        bearer,
        notes,
        warm,
    })
}

/// Clears access's rights cache on every replica (the `*` invalidation they listen for) and
/// waits for the notification to land.
pub(crate) async fn clear_cache(database_url: &str) -> anyhow::Result<()> {
    let mut conn = PgConnection::connect(database_url)
        .await
        .context("could not connect to the database of access")?;
    sqlx::query("SELECT pg_notify('kc_access_invalidate', '*')")
        .execute(&mut conn)
        .await
        .context("could not invalidate access's rights cache")?;
    conn.close().await?;
    // The service's listener gets the notification within milliseconds of the commit; fills
    // that ran before it arrived would be dropped with the rest.
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(())
}

/// Checks per BatchCheck of the warm-up (the most the service takes).
const WARM_BATCH: usize = 100;
/// BatchChecks of the warm-up in flight at once.
const WARM_CONCURRENCY: usize = 4;
/// The service's default `--check-cache-ttl`.
const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(30);

/// Clears access's rights cache (the `*` invalidation every replica listens for), then fills
/// it with every fixture site: one check on each site loads the site with all its members.
/// Resolves to a note on how long that took and whether entries outlive the run.
///
/// Done right before the run, so that the cache entries, which the service refills once they
/// are older than its TTL, are all fresh when the measured window starts: with 10,000 sites
/// filled at once, a refill of all of them would otherwise land in the window or not by
/// chance of timing.
fn warm_cache(
    channel: Channel,
    database_url: String,
    bearer: MetadataValue<Ascii>,
    checks: Arc<Vec<CheckRequest>>,
    run_time: Duration,
) -> BoxFuture<'static, anyhow::Result<String>> {
    Box::pin(async move {
        clear_cache(&database_url).await?;
        let started = Instant::now();
        let sites = usize::try_from(FIXTURE_SITES)?;
        let client = AccessManagementServiceClient::new(channel);
        // The first round's first `sites` checks are on every site once (site-major order).
        let batches: Vec<Vec<CheckRequest>> = checks[..sites]
            .chunks(WARM_BATCH)
            .map(<[CheckRequest]>::to_vec)
            .collect();
        futures::stream::iter(batches)
            .map(|batch| {
                let mut client = client.clone();
                let request = authorized(BatchCheckRequest { checks: batch }, &bearer);
                async move { client.batch_check(request).await }
            })
            .buffer_unordered(WARM_CONCURRENCY)
            .try_for_each(|_| async { Ok(()) })
            .await
            .context("BatchCheck of the warm-up failed")?;
        let took = started.elapsed();

        let mut note = format!(
            "rights cache cleared, then all {sites} sites filled in {:.1} s ({:.0} sites/s) \
             right before the run",
            took.as_secs_f64(),
            sites as f64 / took.as_secs_f64().max(1e-3)
        );
        match cache_ttl() {
            Some(ttl) if ttl > took + run_time => note.push_str(&format!(
                "; entries live {} s (--check-cache-ttl), longer than the fill and the run: \
                 the window measures cache hits, not the refills the TTL brings ({sites} \
                 sites every {} s)",
                ttl.as_secs_f64(),
                ttl.as_secs_f64()
            )),
            Some(ttl) => note.push_str(&format!(
                "; entries live only {} s (--check-cache-ttl): some expire and are refilled \
                 within the window",
                ttl.as_secs_f64()
            )),
            None => note.push_str(
                "; KC_CHECK_CACHE_TTL is set to a duration this harness does not read: entries \
                 may expire within the window",
            ),
        }
        Ok(note)
    })
}

/// The TTL of the service's cache entries: its default, or `KC_CHECK_CACHE_TTL` from the
/// environment the service inherits; `None` when that does not parse here.
fn cache_ttl() -> Option<Duration> {
    match std::env::var("KC_CHECK_CACHE_TTL") {
        Ok(value) if !value.trim().is_empty() => kc_runtime::config::parse_duration(&value).ok(),
        _ => Some(DEFAULT_CACHE_TTL),
    }
}

/// The pair (index into the site-major pairs: site `i`, member `k` at `i * 20 + k`) and the
/// permission of the `p`-th check of a round.
fn nth_check(p: usize) -> (usize, Permission) {
    let sites = FIXTURE_SITES as usize;
    let members = MEMBERS_PER_SITE as usize;
    let site = p % sites;
    let member = (p / sites) % members;
    let permission = PERMISSIONS[(p + p / sites) % PERMISSIONS.len()];
    (site * members + member, permission)
}

/// `message` as a request with `bearer` as its authorization.
pub(crate) fn authorized<T>(message: T, bearer: &MetadataValue<Ascii>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", bearer.clone());
    request
}

/// The user id of member `k` of fixture site `i`, as SQL: random-looking, the same in every
/// statement.
macro_rules! member_id_sql {
    () => {
        "md5('kc-bench-access-member:' || i || ':' || k)::uuid"
    };
}

/// The members `k` of the fixture sites `$1..=$2` (indexes) with their site `s`, as SQL.
macro_rules! members_from_sql {
    () => {
        "FROM generate_series($1::bigint, $2::bigint) AS i \
         JOIN sites s ON s.site_number = ($3::bigint + i)::text \
         CROSS JOIN generate_series(0::bigint, $4::bigint - 1) AS k"
    };
}

/// Fixture sites `$1..=$2`: site number `$3 + i`, customer `$4 + i / $5`, a time-ordered id
/// (the UUIDv7 layout of the service's ids, at Unix time in ms `$6`, counter `i`).
const INSERT_SITES: &str = "
INSERT INTO sites (site_id, site_number, customer_number, admin_may_manage_access)
SELECT (lpad(to_hex($6::bigint), 12, '0') || '7000' || '8' || lpad(to_hex(i), 15, '0'))::uuid,
       ($3::bigint + i)::text,
       ($4::bigint + i / $5::bigint)::text,
       i % 2 = 0
FROM generate_series($1::bigint, $2::bigint) AS i";

/// One role per member of the fixture sites `$1..=$2` (site number `$3 + i`, `$4` members):
/// PRIMARY, ADMINISTRATIVE, SITE_TECHNICAL, 4 SECONDARY, RENEWAL, SHIPPING, BILLING, then
/// SITE_USER (the proto numbers of the migration).
const INSERT_ROLES: &str = concat!(
    "
INSERT INTO site_roles (site_id, user_id, role)
SELECT s.site_id, ",
    member_id_sql!(),
    ",
       CASE WHEN k < 10 THEN (ARRAY[1, 2, 3, 4, 4, 4, 4, 5, 6, 7]::smallint[])[k::int + 1]
            ELSE 8::smallint END
",
    members_from_sql!()
);

/// Explicit grants of the members `k >= 3` of the fixture sites (parameters as
/// [`INSERT_ROLES`]): every level within its tool's range (the migration's CHECKs).
const INSERT_GRANTS: &str = concat!(
    "
INSERT INTO grants (site_id, user_id, software, reporting, entitlements, account_management,
                    manage_access, contact_updates, account_documents, support)
SELECT s.site_id, ",
    member_id_sql!(),
    ",
       ((i + k) % 4)::smallint,
       ((i + k) % 2)::smallint,
       ((i + k) % 3)::smallint,
       (CASE WHEN (i + k) % 7 = 0 THEN 1 ELSE 0 END)::smallint,
       ((i + k) % 3)::smallint,
       ((i + 2 * k) % 3)::smallint,
       ((i + k + 1) % 2)::smallint,
       ((i + 3 * k) % 4)::smallint
",
    members_from_sql!(),
    "
WHERE k >= 3"
);

/// The members of the fixture sites as identity's projection knows users (parameters as
/// [`INSERT_ROLES`]): verified e-mails, one member in a thousand disabled.
const INSERT_USERS: &str = concat!(
    "
INSERT INTO users (user_id, email, email_verified, disabled)
SELECT ",
    member_id_sql!(),
    ",
       'member-' || i || '-' || k || '@access-bench.example.com',
       true,
       k = 19 AND i % 50 = 0
",
    members_from_sql!()
);

/// Loads the fixture into the access schema of `conn` unless it is there, then vacuums and
/// analyses the tables. Returns a note on what it loaded.
async fn load_fixture(conn: &mut PgConnection) -> anyhow::Result<Option<String>> {
    let (first_number, last_number) = site_number_range();
    let have: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sites WHERE site_number BETWEEN $1 AND $2")
            .bind(&first_number)
            .bind(&last_number)
            .fetch_one(&mut *conn)
            .await?;
    if have == FIXTURE_SITES {
        return Ok(None);
    }
    if have != 0 {
        bail!("the access schema holds {have} of the {FIXTURE_SITES} fixture sites");
    }
    eprintln!(
        "xtask: bulk-loading {FIXTURE_SITES} sites with {MEMBERS_PER_SITE} members each into the \
         access projection with SQL"
    );
    let started = Instant::now();
    let ts_ms = i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis())?;
    let (first, last) = (0, FIXTURE_SITES - 1);
    let mut tx = conn.begin().await?;
    let sites = sqlx::query(INSERT_SITES)
        .bind(first)
        .bind(last)
        .bind(SITE_NUMBER_BASE)
        .bind(CUSTOMER_NUMBER_BASE)
        .bind(SITES_PER_CUSTOMER)
        .bind(ts_ms)
        .execute(&mut *tx)
        .await
        .context("could not load the fixture's sites")?
        .rows_affected();
    let members = |sql: &'static str, what: &'static str| {
        let query = sqlx::query(sql)
            .bind(first)
            .bind(last)
            .bind(SITE_NUMBER_BASE)
            .bind(MEMBERS_PER_SITE);
        (query, what)
    };
    let mut counts = Vec::new();
    for (query, what) in [
        members(INSERT_ROLES, "roles"),
        members(INSERT_GRANTS, "grants"),
        members(INSERT_USERS, "users"),
    ] {
        let rows = query
            .execute(&mut *tx)
            .await
            .with_context(|| format!("could not load the fixture's {what}"))?
            .rows_affected();
        counts.push(format!("{rows} {what}"));
    }
    // Like every change of the projection: no replica keeps what it cached before.
    sqlx::query("SELECT pg_notify('kc_access_invalidate', '*')")
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    let loaded = started.elapsed();
    // Fresh statistics for the planner, and no autovacuum of the new rows during a run.
    sqlx::raw_sql("VACUUM (ANALYZE) sites, site_roles, grants, users")
        .execute(&mut *conn)
        .await
        .context("could not vacuum and analyse the access tables")?;
    let vacuumed = started.elapsed() - loaded;
    Ok(Some(format!(
        "bulk-loaded {sites} sites, {} into the access projection with SQL (a benchmark \
         fixture) in {:.1} s, VACUUM ANALYZE {:.1} s",
        counts.join(", "),
        loaded.as_secs_f64(),
        vacuumed.as_secs_f64()
    )))
}

/// First and last site number of the fixture.
pub(crate) fn site_number_range() -> (String, String) {
    (
        SITE_NUMBER_BASE.to_string(),
        (SITE_NUMBER_BASE + FIXTURE_SITES - 1).to_string(),
    )
}

/// Every `(site, user)` pair of the fixture, site-major (site `i`, member `k` at
/// `i * 20 + k`), checked complete.
async fn fixture_pairs(conn: &mut PgConnection) -> anyhow::Result<Vec<(Uuid, Uuid)>> {
    let (first_number, last_number) = site_number_range();
    let rows: Vec<(Uuid, Uuid)> = sqlx::query_as(
        "SELECT s.site_id, m.user_id FROM sites s \
         JOIN (SELECT DISTINCT site_id, user_id FROM site_roles) m USING (site_id) \
         WHERE s.site_number BETWEEN $1 AND $2 \
         ORDER BY s.site_number, m.user_id",
    )
    .bind(&first_number)
    .bind(&last_number)
    .fetch_all(conn)
    .await?;
    let members = usize::try_from(MEMBERS_PER_SITE)?;
    let expected = usize::try_from(FIXTURE_SITES)? * members;
    let complete = rows.len() == expected
        && rows
            .chunks(members)
            .all(|site| site.iter().all(|(site_id, _)| *site_id == site[0].0));
    if !complete {
        bail!(
            "the fixture has {} (site, user) pairs, not {FIXTURE_SITES} sites of \
             {MEMBERS_PER_SITE}",
            rows.len()
        );
    }
    Ok(rows)
}

/// Fails unless `answerer` gave one result to each of the fixture's `asked` sample checks and
/// access knew every site of them (`reasons`: the results' reasons).
pub(crate) fn ensure_sample_answered<'a>(
    answerer: &str,
    asked: usize,
    reasons: impl ExactSizeIterator<Item = &'a str>,
) -> anyhow::Result<()> {
    if reasons.len() != asked {
        bail!(
            "{answerer} answered {} results for {asked} checks",
            reasons.len()
        );
    }
    for reason in reasons {
        if reason.contains("unknown site") {
            bail!("access does not know the fixture's sites: {reason}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn a_round_checks_every_pair_once_with_every_permission() {
        let pairs = (FIXTURE_SITES * MEMBERS_PER_SITE) as usize;
        let mut seen = BTreeSet::new();
        let mut permissions = BTreeSet::new();
        for p in 0..pairs {
            let (pair, permission) = nth_check(p);
            assert!(pair < pairs);
            assert!(seen.insert(pair), "pair {pair} twice");
            permissions.insert(permission as i32);
        }
        assert_eq!(permissions.len(), PERMISSIONS.len());
        // A batch touches as many sites as it has checks.
        let sites: BTreeSet<usize> = (0..BATCH_CHECKS)
            .map(|p| nth_check(p).0 / MEMBERS_PER_SITE as usize)
            .collect();
        assert_eq!(sites.len(), BATCH_CHECKS);
        assert_eq!(pairs % BATCH_CHECKS, 0);
    }

    #[test]
    fn permissions_are_every_proto_value() {
        for (index, permission) in PERMISSIONS.iter().enumerate() {
            assert_eq!(*permission as usize, index + 1);
        }
        assert!(Permission::try_from(PERMISSIONS.len() as i32 + 1).is_err());
    }

    #[test]
    fn fixture_numbers_stay_within_seven_digits() {
        for number in [
            SITE_NUMBER_BASE,
            SITE_NUMBER_BASE + FIXTURE_SITES - 1,
            CUSTOMER_NUMBER_BASE,
            CUSTOMER_NUMBER_BASE + FIXTURE_SITES / SITES_PER_CUSTOMER,
        ] {
            assert_eq!(number.to_string().len(), 7, "{number}");
        }
    }

    #[test]
    fn bulk_sql_binds_every_parameter_it_uses() {
        for (sql, count) in [
            (INSERT_SITES, 6),
            (INSERT_ROLES, 4),
            (INSERT_GRANTS, 4),
            (INSERT_USERS, 4),
        ] {
            crate::assert_binds_parameters(sql, count);
        }
    }
}
