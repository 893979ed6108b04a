//! The gateway's public `AuthorizationService` scenarios (`gateway.check`,
//! `gateway.lookup_sites`): a relying application asks the gateway who may do what.
//!
//! # The caller
//!
//! A service account made as a relying application's is, `kc-identity create-service-account
//! xtask-bench-relying-app --scope authz`, whose token comes from the gateway's public
//! `IssueServiceToken` ([`Env::relying_app_bearer`]). Every call is admitted by the gateway
//! for that scope, then answered by access management.
//!
//! # The fixture
//!
//! The access scenarios' fixture ([`access`]): 10,000 sites with 20 members each, bulk-loaded
//! into the access projection with SQL. `gateway.lookup_sites` adds [`LOOKUP_USERS`] users of
//! its own, each with an explicit grant (software 1 to 3, reporting VIEW) on
//! [`LOOKUP_SITES`] of the 10,000 sites (site `i` for user `u` when `i mod 10 = u mod 10`), and
//! no role: the grants are their only rights.
//!
//! # The calls
//!
//! - `gateway.check`: `Check` round-robin over the 200,000 `(site, user)` pairs of the
//!   fixture, each with one of the 18 permissions (the order of `access.check`): 20
//!   consecutive calls touch 20 sites, and a run of fewer than 200,000 calls never repeats a
//!   `(user, site, permission)` triple, so the gateway's one-second read cache (keyed by the
//!   question) answers none of them. Access management's rights cache is cleared and filled
//!   with all 10,000 sites right before the run, as for `access.check`: its entries outlive
//!   the run, so every check of the window is answered from it.
//! - `gateway.lookup_sites`: one full `LookupSites` a call, every page of [`PAGE_SIZE`] to the
//!   end ([`LOOKUP_SITES`] sites, 10 pages), round-robin over the [`LOOKUP_USERS`] users and
//!   two permissions (SOFTWARE_DOWNLOAD, REPORTS_VIEW): 40 distinct lookups. A lookup always
//!   reads access management's database. Latency is that of the whole lookup, all its
//!   pages; [`LOOKUP_CONCURRENCY`] lookups are in flight at once (a few relying applications
//!   listing at the same time), not the 64 calls of the other scenarios, whose queue would
//!   be most of the latency.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use futures::future::BoxFuture;
use kc_proto::access::Permission;
use kc_proto::gateway::authorization_service_client::AuthorizationServiceClient;
use kc_proto::gateway::{BatchCheckRequest, CheckRequest, LookupSitesRequest};
use kc_rights::levels::{SupportLevel, Tool, ToolAccess, ToolLevel};
use kc_rights::rights::{self as model, Effective, Grants, RoleSet, SiteFacts, Subject};
use sqlx::{Connection, PgConnection};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;
use uuid::Uuid;

use super::access::{self, authorized};
use super::load::CallFn;
use crate::env::{Env, Prepared};

/// Users of `gateway.lookup_sites`, each with rights on [`LOOKUP_SITES`] sites.
pub(crate) const LOOKUP_USERS: i64 = 20;
/// Sites on which each lookup user holds an explicit grant.
pub(crate) const LOOKUP_SITES: i64 = 1_000;
/// Sites per page of a lookup (the most a page holds is 1,000; 100 is the default).
pub(crate) const PAGE_SIZE: i32 = 100;
/// Full lookups in flight at once in `gateway.lookup_sites`.
pub(crate) const LOOKUP_CONCURRENCY: usize = 8;
/// The permissions the lookups ask about: the lookup users' grants give both on every one
/// of their sites.
const LOOKUP_PERMISSIONS: [Permission; 2] = [Permission::SoftwareDownload, Permission::ReportsView];
/// Checks of the sample tried through the gateway before the run (the most a BatchCheck
/// takes).
const SAMPLE: usize = 100;

/// Seeds `gateway.check`: the access fixture, the relying application, then `Check` of one
/// triple a call, round-robin; access's rights cache holds every site when the run starts
/// (the steady state of a service whose sites fit its cache).
pub(crate) fn seed_check(env: &Env) -> BoxFuture<'_, anyhow::Result<Prepared>> {
    Box::pin(seed_checks(env, CacheAtStart::Warm))
}

/// Seeds `gateway.check_cold`: as `gateway.check`, but access's rights cache is cleared
/// right before the run, so the window pays for loading every site it reaches (a restart, or
/// a working set larger than the cache): the cache's worst case beside its best.
pub(crate) fn seed_check_cold(env: &Env) -> BoxFuture<'_, anyhow::Result<Prepared>> {
    Box::pin(seed_checks(env, CacheAtStart::Cleared))
}

/// What access's rights cache holds when a `gateway.check*` run starts.
#[derive(Clone, Copy)]
enum CacheAtStart {
    /// Every site of the fixture, filled right before the run.
    Warm,
    /// Nothing: cleared right before the run.
    Cleared,
}

/// Seeds a `gateway.check*` scenario with access's rights cache as `cache` says at the start.
async fn seed_checks(env: &Env, cache: CacheAtStart) -> anyhow::Result<Prepared> {
    let seeded = access::seed_population(env).await?;
    let bearer = env.relying_app_bearer().await?;
    let checks: Arc<Vec<CheckRequest>> = Arc::new(
        seeded
            .checks
            .iter()
            .map(|check| CheckRequest {
                user_id: check.user_id.clone(),
                site_id: check.site_id.clone(),
                permission: check.permission,
                consistency: None,
            })
            .collect(),
    );
    let mut notes = seeded.notes;
    notes.push(try_checks(env, &bearer, &checks[..SAMPLE]).await?);
    notes.push(format!(
        "each call one (user, site, permission) triple of {}: the run repeats none, so the \
         gateway's read cache answers no call; {}",
        checks.len(),
        match cache {
            CacheAtStart::Warm => "access's rights cache holds every site",
            CacheAtStart::Cleared =>
                "access's rights cache is empty at the start: each of the 10,000 sites is \
                 loaded (with all its members) on its first check, every later check of it \
                 hits, so the hit rate is 1 - (sites reached) / calls",
        }
    ));
    let next = Arc::new(AtomicUsize::new(0));
    let call: CallFn = Arc::new(move |channel| {
        let check = checks[next.fetch_add(1, Ordering::Relaxed) % checks.len()].clone();
        let request = authorized(check, &bearer);
        Box::pin(async move {
            AuthorizationServiceClient::new(channel)
                .check(request)
                .await
                .map(drop)
        })
    });
    let warm: BoxFuture<'static, anyhow::Result<String>> = match cache {
        CacheAtStart::Warm => seeded.warm,
        CacheAtStart::Cleared => {
            let database_url = env
                .database_urls
                .get("access")
                .context("access has no database")?
                .clone();
            Box::pin(async move {
                access::clear_cache(&database_url).await?;
                Ok("rights cache cleared right before the run".to_owned())
            })
        }
    };
    Ok(Prepared {
        warm: Some(warm),
        ..Prepared::calls(call, notes)
    })
}

/// Tries `sample` once through the gateway's `BatchCheck` as the relying application: every
/// check answered, both outcomes among them, no unknown site. Returns a note.
async fn try_checks(
    env: &Env,
    bearer: &MetadataValue<Ascii>,
    sample: &[CheckRequest],
) -> anyhow::Result<String> {
    let results = AuthorizationServiceClient::new(env.channel("gateway").await?)
        .batch_check(authorized(
            BatchCheckRequest {
                items: sample.to_vec(),
            },
            bearer,
        ))
        .await
        .context("the gateway's BatchCheck of the fixture failed")?
        .into_inner()
        .results;
    access::ensure_sample_answered(
        "the gateway",
        sample.len(),
        results.iter().map(|result| result.reason.as_str()),
    )?;
    let ruled = results
        .iter()
        .filter(|result| !result.rule.is_empty())
        .count();
    let allowed = results.iter().filter(|result| result.allowed).count();
    if allowed == 0 || allowed == results.len() {
        bail!(
            "the gateway answered allowed={} to all of the first {} checks",
            allowed > 0,
            results.len()
        );
    }
    Ok(format!(
        "the relying application (scope authz, token from the gateway's IssueServiceToken): \
         {allowed} of the first {} checks allowed, {ruled} answered with a rule id",
        results.len()
    ))
}

/// Seeds `gateway.lookup_sites`: the access fixture with the lookup users' grants, the
/// relying application, then one full lookup a call, round-robin.
pub(crate) fn seed_lookup_sites(env: &Env) -> BoxFuture<'_, anyhow::Result<Prepared>> {
    Box::pin(async move {
        let mut notes = access::ensure_fixture(env).await?;
        let mut conn = env.database("access").await?;
        if let Some(note) = load_lookup_grants(&mut conn).await? {
            notes.push(note);
        }
        let users: Vec<Uuid> = sqlx::query_scalar(LOOKUP_USER_IDS)
            .bind(LOOKUP_USERS)
            .fetch_all(&mut conn)
            .await?;
        conn.close().await?;
        let bearer = env.relying_app_bearer().await?;
        let lookups: Arc<Vec<(String, Permission)>> = Arc::new(
            LOOKUP_PERMISSIONS
                .iter()
                .flat_map(|permission| users.iter().map(|user| (user.to_string(), *permission)))
                .collect(),
        );

        // Every lookup of the run, once: all its sites, page by page.
        let channel = env.channel("gateway").await?;
        let started = Instant::now();
        let mut pages = 0;
        for (user_id, permission) in lookups.iter() {
            let (sites, pages_of_one) =
                lookup_all(channel.clone(), &bearer, user_id, *permission).await?;
            if sites != LOOKUP_SITES as usize {
                bail!(
                    "LookupSites of user {user_id} for {permission:?} found {sites} sites, not \
                     {LOOKUP_SITES}"
                );
            }
            pages += pages_of_one;
        }
        notes.push(format!(
            "{} lookups round-robin ({LOOKUP_USERS} users with grants on {LOOKUP_SITES} of the \
             {} sites, {} permissions), each {} pages of {PAGE_SIZE} to the end; all {} tried \
             once in {:.2} s, one at a time",
            lookups.len(),
            access::FIXTURE_SITES,
            LOOKUP_PERMISSIONS.len(),
            pages / lookups.len(),
            lookups.len(),
            started.elapsed().as_secs_f64()
        ));
        let next = Arc::new(AtomicUsize::new(0));
        let call: CallFn = Arc::new(move |channel| {
            let (user_id, permission) =
                lookups[next.fetch_add(1, Ordering::Relaxed) % lookups.len()].clone();
            let bearer = bearer.clone();
            Box::pin(async move {
                let (sites, _) = lookup_all(channel, &bearer, &user_id, permission).await?;
                if sites != LOOKUP_SITES as usize {
                    return Err(tonic::Status::internal(format!(
                        "LookupSites found {sites} sites, not {LOOKUP_SITES}"
                    )));
                }
                Ok(())
            })
        });
        Ok(Prepared {
            concurrency: Some(LOOKUP_CONCURRENCY),
            ..Prepared::calls(call, notes)
        })
    })
}

/// Every site where `user_id` holds `permission`, through the gateway's `LookupSites` page
/// by page to the end: how many sites, in how many pages.
async fn lookup_all(
    channel: Channel,
    bearer: &MetadataValue<Ascii>,
    user_id: &str,
    permission: Permission,
) -> Result<(usize, usize), tonic::Status> {
    let mut client = AuthorizationServiceClient::new(channel);
    let mut page_token = String::new();
    let (mut sites, mut pages) = (0, 0);
    loop {
        let page = client
            .lookup_sites(authorized(
                LookupSitesRequest {
                    user_id: user_id.to_owned(),
                    permission: permission.into(),
                    page_size: PAGE_SIZE,
                    page_token,
                    consistency: None,
                },
                bearer,
            ))
            .await?
            .into_inner();
        if let Some(site) = page.sites.iter().find(|site| site.site_number.is_empty()) {
            return Err(tonic::Status::internal(format!(
                "LookupSites answered site {} without its number",
                site.site_id
            )));
        }
        sites += page.sites.len();
        pages += 1;
        if page.next_page_token.is_empty() {
            return Ok((sites, pages));
        }
        page_token = page.next_page_token;
    }
}

/// The user id of lookup user `u`, as SQL: random-looking, the same in every statement.
macro_rules! lookup_user_sql {
    () => {
        "md5('kc-bench-lookup-user:' || u)::uuid"
    };
}

/// The ids of the lookup users `0..$1`, in order.
const LOOKUP_USER_IDS: &str = concat!(
    "SELECT ",
    lookup_user_sql!(),
    " FROM generate_series(0::bigint, $1::bigint - 1) AS u ORDER BY u"
);

/// The lookup users `0..$1` as identity's projection knows users: verified, enabled.
const INSERT_LOOKUP_USERS: &str = concat!(
    "
INSERT INTO users (user_id, email, email_verified, disabled)
SELECT ",
    lookup_user_sql!(),
    ", 'lookup-' || u || '@access-bench.example.com', true, false
FROM generate_series(0::bigint, $1::bigint - 1) AS u"
);

/// The grants of the lookup users `0..$1` on the fixture sites `0..$2` (site number `$3 + i`):
/// site `i` for user `u` when `i mod $4 = u mod $4`; software 1 to 3 (DOWNLOADS_ONLY and up),
/// reporting VIEW.
const INSERT_LOOKUP_GRANTS: &str = concat!(
    "
INSERT INTO grants (site_id, user_id, software, reporting)
SELECT s.site_id, ",
    lookup_user_sql!(),
    ", (1 + (i + u) % 3)::smallint, 1::smallint
FROM generate_series(0::bigint, $1::bigint - 1) AS u
CROSS JOIN generate_series(0::bigint, $2::bigint - 1) AS i
JOIN sites s ON s.site_number = ($3::bigint + i)::text
WHERE i % $4::bigint = u % $4::bigint"
);

/// The permission feed's rows of the lookup users' grants (`$1` users), from the decisions per
/// software rank and site facts (`$2` software rank, `$3` STC present, `$4` C3 switch, `$5`
/// permission, `$6` reason, `$7` rule): what access management's feed writes for a grant, the
/// site's number included.
const INSERT_LOOKUP_EFFECTIVE: &str = concat!(
    "
INSERT INTO effective_permissions (site_id, user_id, permission, reason, rule, site_number)
SELECT g.site_id, g.user_id, d.permission, d.reason, d.rule, s.site_number
FROM grants g
JOIN sites s ON s.site_id = g.site_id
JOIN unnest($2::smallint[], $3::boolean[], $4::boolean[], $5::smallint[], $6::text[], $7::text[])
     AS d(software, has_stc, c3, permission, reason, rule)
  ON d.software = g.software AND d.c3 = s.admin_may_manage_access
 AND d.has_stc = EXISTS (SELECT 1 FROM site_roles t WHERE t.site_id = g.site_id AND t.role = 3)
WHERE g.user_id IN (SELECT ",
    lookup_user_sql!(),
    " FROM generate_series(0::bigint, $1::bigint - 1) AS u)"
);

/// The rights model's decisions for the lookup users' grants (software rank 1 to 3 and
/// reporting VIEW) under each site facts, as the columns of [`INSERT_LOOKUP_EFFECTIVE`].
#[derive(Debug, Default)]
struct LookupDecisions {
    software: Vec<i16>,
    has_stc: Vec<bool>,
    c3: Vec<bool>,
    permission: Vec<i16>,
    reason: Vec<String>,
    rule: Vec<String>,
}

impl LookupDecisions {
    fn of_the_model() -> Self {
        let mut columns = Self::default();
        for rank in 1..=3u8 {
            let tools = ToolAccess::NONE
                .with(ToolLevel::from_rank(Tool::Software, rank).expect("a software rank"))
                .with(ToolLevel::from_rank(Tool::Reporting, 1).expect("reporting VIEW"));
            let subject = Subject {
                roles: RoleSet::EMPTY,
                explicit: Grants {
                    tools,
                    support: SupportLevel::NoAccess,
                },
                disabled: false,
            };
            for (stc, switch) in [(false, false), (false, true), (true, false), (true, true)] {
                let facts = SiteFacts {
                    admin_may_manage_access: switch,
                    has_site_technical: stc,
                };
                let effective = Effective::of(&subject, facts);
                for permission in model::Permission::ALL {
                    let decision = effective.check(permission);
                    if decision.allowed {
                        columns.software.push(i16::from(rank));
                        columns.has_stc.push(stc);
                        columns.c3.push(switch);
                        columns.permission.push(permission.number() as i16);
                        columns.reason.push(decision.reason);
                        columns.rule.push(decision.rule.to_owned());
                    }
                }
            }
        }
        columns
    }
}

/// Counts the lookup users' grants: `$1` users.
const COUNT_LOOKUP_GRANTS: &str = concat!(
    "SELECT count(*) FROM grants WHERE user_id IN (SELECT ",
    lookup_user_sql!(),
    " FROM generate_series(0::bigint, $1::bigint - 1) AS u)"
);

/// Loads the lookup users and their grants into the access schema of `conn` unless they are
/// there (the access fixture must be), then vacuums and analyses the tables. Returns a note
/// on what it loaded.
async fn load_lookup_grants(conn: &mut PgConnection) -> anyhow::Result<Option<String>> {
    let expected = LOOKUP_USERS * LOOKUP_SITES;
    let have: i64 = sqlx::query_scalar(COUNT_LOOKUP_GRANTS)
        .bind(LOOKUP_USERS)
        .fetch_one(&mut *conn)
        .await?;
    if have == expected {
        return Ok(None);
    }
    if have != 0 {
        bail!("the access schema holds {have} of the {expected} grants of the lookup users");
    }
    let started = Instant::now();
    let mut tx = conn.begin().await?;
    sqlx::query(INSERT_LOOKUP_USERS)
        .bind(LOOKUP_USERS)
        .execute(&mut *tx)
        .await
        .context("could not load the lookup users")?;
    let grants = sqlx::query(INSERT_LOOKUP_GRANTS)
        .bind(LOOKUP_USERS)
        .bind(access::FIXTURE_SITES)
        .bind(access::SITE_NUMBER_BASE)
        .bind(access::FIXTURE_SITES / LOOKUP_SITES)
        .execute(&mut *tx)
        .await
        .context("could not load the lookup users' grants")?
        .rows_affected();
    if i64::try_from(grants)? != expected {
        bail!("loaded {grants} grants of the lookup users, not {expected}");
    }
    let decisions = LookupDecisions::of_the_model();
    sqlx::query(INSERT_LOOKUP_EFFECTIVE)
        .bind(LOOKUP_USERS)
        .bind(&decisions.software)
        .bind(&decisions.has_stc)
        .bind(&decisions.c3)
        .bind(&decisions.permission)
        .bind(&decisions.reason)
        .bind(&decisions.rule)
        .execute(&mut *tx)
        .await
        .context("could not load the lookup users' effective permissions")?;
    // Like every change of the projection: no replica keeps what it cached before.
    sqlx::query("SELECT pg_notify('kc_access_invalidate', '*')")
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    sqlx::raw_sql("VACUUM (ANALYZE) grants, users, effective_permissions")
        .execute(&mut *conn)
        .await
        .context("could not vacuum and analyse the access tables")?;
    Ok(Some(format!(
        "bulk-loaded {LOOKUP_USERS} lookup users with {grants} grants into the access \
         projection with SQL in {:.1} s",
        started.elapsed().as_secs_f64()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_lookup_user_has_grants_on_its_share_of_the_sites() {
        let stride = access::FIXTURE_SITES / LOOKUP_SITES;
        assert_eq!(stride * LOOKUP_SITES, access::FIXTURE_SITES);
        for u in 0..LOOKUP_USERS {
            let sites = (0..access::FIXTURE_SITES)
                .filter(|i| i % stride == u % stride)
                .count();
            assert_eq!(sites as i64, LOOKUP_SITES);
        }
        // Whole pages: the last page is full, and a lookup takes this many of them.
        assert_eq!(LOOKUP_SITES % i64::from(PAGE_SIZE), 0);
        assert!((1..=1000).contains(&PAGE_SIZE));
    }

    #[test]
    fn bulk_sql_binds_every_parameter_it_uses() {
        for (sql, count) in [
            (LOOKUP_USER_IDS, 1),
            (INSERT_LOOKUP_USERS, 1),
            (INSERT_LOOKUP_GRANTS, 4),
            (COUNT_LOOKUP_GRANTS, 1),
            (INSERT_LOOKUP_EFFECTIVE, 7),
        ] {
            crate::assert_binds_parameters(sql, count);
        }
    }

    #[test]
    fn every_lookup_grant_gives_the_permissions_the_lookups_ask_under_any_site_facts() {
        let decisions = LookupDecisions::of_the_model();
        for rank in 1..=3 {
            for facts in [(false, false), (false, true), (true, false), (true, true)] {
                for asked in LOOKUP_PERMISSIONS {
                    assert!(
                        (0..decisions.permission.len()).any(|row| {
                            decisions.software[row] == rank
                                && (decisions.has_stc[row], decisions.c3[row]) == facts
                                && decisions.permission[row] == asked as i16
                        }),
                        "software rank {rank}, facts {facts:?}: {asked:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn lookup_users_are_not_fixture_members() {
        assert!(!lookup_user_sql!().contains("kc-bench-access-member"));
    }
}
