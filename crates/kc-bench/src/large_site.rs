//! Sites with any number of SITE_USERs: the bulk loader the benchmark and the suite's tests
//! share, and the scenario `gateway.show_all_contacts_large`.
//!
//! [`load_site_users`] writes SITE_USERs of one site with bulk SQL (`INSERT … SELECT
//! generate_series`) straight into identity's `users` and the registry's `contacts` (with
//! its projection of identity's users, `user_states`, as it holds them once identity's
//! events of the invitations are applied), each as the service's own role. That is a fixture only: no service but kc-identity and
//! kc-contacts writes those schemas (ARCHITECTURE.md), and these rows have no audit records
//! or outbox events (access management never learns of these roles, which imply no rights).
//! They obey every CHECK and unique constraint: one SITE_USER contact per user, invited users
//! (no password, address unproven, rule I1) with unique login e-mails, each with its
//! confusable skeleton ([`kc_identity::domain::values::email_skeleton`], I3, computed here)
//! so that identity's sweep has none to backfill while the benchmark measures.
//!
//! The scenario: [`LARGE_SITES`] sites, each created through the RPCs like the sites of
//! `gateway.show_all_contacts` (its primary signs in), then loaded to [`SITE_USERS`]
//! SITE_USERs. The calls go round-robin over the sites, each with the token of the site's
//! primary (many distinct callers, each on its own site), and over [`POSITIONS`] places in
//! each site (page tokens gathered while seeding): one page of [`PAGE`] people from the
//! middle of a site of 50,000, never its whole list. The run prints the gateway's read-cache
//! hit rate in the window: with the default one-second cache, 400 distinct pages called
//! thousands of times a second are mostly answered from it, so the figure that says what a
//! page costs is the one with `KC_READ_CACHE_TTL=0s`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use futures::future::BoxFuture;
use kc_identity::domain::values::email_skeleton;
use kc_proto::gateway::ShowAllContactsRequest;
use kc_proto::gateway::gateway_service_client::GatewayServiceClient;
use sqlx::{Connection, PgConnection};
use tonic::transport::Channel;
use uuid::Uuid;

use super::gateway::{self, Site};
use super::load::CallFn;
use crate::env::{Env, Prepared};

/// SITE_USERs of each site of the scenario.
pub const SITE_USERS: i64 = 50_000;
/// Sites of the scenario, each called by its own primary.
const LARGE_SITES: usize = 10;
/// Site number (and customer number) of its first site; 7 digits, away from the other
/// scenarios' numbers.
const NUMBER_BASE: usize = 7_300_000;
/// People in the page each call asks for.
const PAGE: i32 = 100;
/// Places in each site the calls start at.
const POSITIONS: usize = 40;

/// The user id of SITE_USER `u` of site `$1`, as SQL: random-looking, the same in every
/// statement.
macro_rules! site_user_sql {
    () => {
        "md5('kc-large-site:' || $1::text || ':' || u)::uuid"
    };
}

/// SITE_USERs of site `$1` as identity knows invited users: SITE_USER `u` has the e-mail
/// `$2[u + 1]` (see [`site_user_email`]) with its skeleton `$3[u + 1]` and a name of its own,
/// no password yet. The arrays are read in one pass (`unnest`), not by subscript: a
/// subscript of a text array walks it from its start.
const INSERT_USERS: &str = concat!(
    "
INSERT INTO users (user_id, email, email_verified, display_name, locale, kind, state,
                   email_skeleton)
SELECT ",
    site_user_sql!(),
    ", s.email,
       false, 'Site user ' || u, (ARRAY['fr', 'en', 'de'])[(u % 3)::int + 1], 'customer', 'invited',
       s.skeleton
FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS s(email, skeleton, position),
     LATERAL (SELECT s.position - 1 AS u) AS n
ON CONFLICT (user_id) DO NOTHING"
);

/// The login e-mail of SITE_USER `u` of site `site_id`: unique to the user and the site.
fn site_user_email(site_id: Uuid, u: i64) -> String {
    format!("site-user-{u}.{}@large-site.example.com", site_id.simple())
}

/// The SITE_USER contacts (role 8) of SITE_USERs `0..$2` on site `$1`; a job title on one in
/// four.
const INSERT_CONTACTS: &str = concat!(
    "
INSERT INTO contacts (contact_id, site_id, user_id, role, job_title)
SELECT gen_random_uuid(), $1::uuid, ",
    site_user_sql!(),
    ", 8::smallint, CASE WHEN u % 4 = 0 THEN 'Engineer' END
FROM generate_series(0::bigint, $2::bigint - 1) AS u
ON CONFLICT ON CONSTRAINT contacts_one_role_per_user DO NOTHING"
);

/// The registry's projection of identity's users (`user_states`, followed from identity's
/// events) as it holds the SITE_USERs of site `$1` once it has applied their invitation:
/// SITE_USER `u` with the e-mail `$2[u + 1]`, the name identity has, INVITED (2).
const INSERT_KNOWN_PEOPLE: &str = concat!(
    "
INSERT INTO user_states (user_id, email, display_name, state)
SELECT ",
    site_user_sql!(),
    ", s.email, 'Site user ' || u, 2::smallint
FROM unnest($2::text[]) WITH ORDINALITY AS s(email, position),
     LATERAL (SELECT s.position - 1 AS u) AS n
ON CONFLICT (user_id) DO NOTHING"
);

/// Gives site `site_id` the SITE_USERs `0..count` (users of identity at `identity`, contacts
/// of the registry at `registry` with the registry's projection of those users, each
/// connection on its service's schema), unless they are there, then analyses the tables.
/// Returns how many contacts it added. See the [module](self).
pub async fn load_site_users(
    identity: &mut PgConnection,
    registry: &mut PgConnection,
    site_id: Uuid,
    count: i64,
) -> anyhow::Result<u64> {
    let emails: Vec<String> = (0..count).map(|u| site_user_email(site_id, u)).collect();
    load_users(identity, site_id, &emails).await?;
    let mut contacts = registry.begin().await?;
    let added = sqlx::query(INSERT_CONTACTS)
        .bind(site_id)
        .bind(count)
        .execute(&mut *contacts)
        .await
        .context("could not load the site users' contacts into the registry")?
        .rows_affected();
    sqlx::query(INSERT_KNOWN_PEOPLE)
        .bind(site_id)
        .bind(&emails)
        .execute(&mut *contacts)
        .await
        .context("could not load the site users into the registry's projection of identity")?;
    contacts.commit().await?;
    // Fresh statistics for the planner.
    sqlx::raw_sql("ANALYZE users")
        .execute(&mut *identity)
        .await?;
    sqlx::raw_sql("ANALYZE contacts, user_states")
        .execute(&mut *registry)
        .await?;
    Ok(added)
}

/// Writes the users of the SITE_USERs of site `site_id` whose e-mails are `emails` (SITE_USER
/// `u` at `emails[u]`) into identity (connected on its schema), unless they are there, with
/// their skeletons.
async fn load_users(
    identity: &mut PgConnection,
    site_id: Uuid,
    emails: &[String],
) -> anyhow::Result<()> {
    let skeletons: Vec<String> = emails.iter().map(|e| email_skeleton(e)).collect();
    let mut users = identity.begin().await?;
    sqlx::query(INSERT_USERS)
        .bind(site_id)
        .bind(emails)
        .bind(&skeletons)
        .execute(&mut *users)
        .await
        .context("could not load the site users into identity")?;
    users.commit().await?;
    Ok(())
}

/// One caller of the scenario: a site, signed in as its primary, and places in it.
struct Caller {
    site: Site,
    /// Page tokens of places spread through the site.
    tokens: Vec<String>,
}

/// Seeds `gateway.show_all_contacts_large`: the sites, their SITE_USERs, and page tokens of
/// places spread through each; then one page of [`PAGE`] per call, round-robin over the
/// sites' primaries and those places.
pub(crate) fn seed(env: &Env) -> BoxFuture<'_, anyhow::Result<Prepared>> {
    Box::pin(async move {
        let numbers: Vec<String> = (0..LARGE_SITES)
            .map(|k| (NUMBER_BASE + k).to_string())
            .collect();
        let (sites, mut notes) = gateway::sites_numbered(env, &numbers).await?;
        let mut identity = env.database("identity").await?;
        let mut registry = env.database("contacts").await?;
        let started = Instant::now();
        let mut added = 0;
        for site in &sites {
            let site_id = Uuid::parse_str(&site.site_id)?;
            added += load_site_users(&mut identity, &mut registry, site_id, SITE_USERS).await?;
        }
        identity.close().await?;
        registry.close().await?;
        if added > 0 {
            notes.push(format!(
                "bulk-loaded {added} SITE_USERs with SQL in {:.1} s",
                started.elapsed().as_secs_f64()
            ));
        }
        let mut client = GatewayServiceClient::new(env.channel("gateway").await?);
        let mut callers = Vec::with_capacity(sites.len());
        for site in sites {
            let tokens = positions(&mut client, &site).await?;
            callers.push(Caller { site, tokens });
        }
        notes.push(format!(
            "{LARGE_SITES} sites with {SITE_USERS} SITE_USERs and 12 contacts, each called by \
             its primary, one page of {PAGE} from {POSITIONS} places in each, round-robin"
        ));
        let callers = Arc::new(callers);
        let next = Arc::new(AtomicUsize::new(0));
        let call: CallFn = Arc::new(move |channel| {
            let n = next.fetch_add(1, Ordering::Relaxed);
            let caller = &callers[n % callers.len()];
            let token = &caller.tokens[(n / callers.len()) % caller.tokens.len()];
            let request = page_request(&caller.site, PAGE, token.clone());
            Box::pin(async move {
                GatewayServiceClient::new(channel)
                    .show_all_contacts(request)
                    .await
                    .map(drop)
            })
        });
        let mut prepared = Prepared::calls(call, notes);
        // The gateway's read-cache hit rate in the window, with the services' profiles.
        let addrs = env.metrics_addrs.clone();
        prepared.beside = Some(Box::new(move |window| {
            Box::pin(async move { Ok(super::mixed::metrics_in_window(&addrs, window).await) })
        }));
        Ok(prepared)
    })
}

/// Walks `site` through the gateway as its primary and returns the page tokens of
/// [`POSITIONS`] places spread through it (the first page's empty token first); checks that
/// the walk met every person of the site.
async fn positions(
    client: &mut GatewayServiceClient<Channel>,
    site: &Site,
) -> anyhow::Result<Vec<String>> {
    let mut tokens = vec![String::new()];
    let mut token = String::new();
    let mut people = 0;
    loop {
        let page = client
            .show_all_contacts(page_request(site, 1000, token))
            .await
            .with_context(|| format!("ShowAllContacts of site {} failed", site.site_id))?
            .into_inner();
        people += page.contacts.len();
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
        tokens.push(token.clone());
    }
    let expected = usize::try_from(SITE_USERS)? + gateway::CONTACTS_PER_SITE;
    if people != expected {
        bail!(
            "the gateway shows {people} people of site {}, not {expected}",
            site.site_id
        );
    }
    let step = tokens.len().div_ceil(POSITIONS).max(1);
    Ok(tokens.into_iter().step_by(step).collect())
}

/// One page of `size` people of `site` after `page_token`, by its primary.
fn page_request(
    site: &Site,
    size: i32,
    page_token: String,
) -> tonic::Request<ShowAllContactsRequest> {
    let mut request = tonic::Request::new(ShowAllContactsRequest {
        site_id: site.site_id.clone(),
        roles: Vec::new(),
        page_size: size,
        page_token,
    });
    request
        .metadata_mut()
        .insert("authorization", site.primary.clone());
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bulk_sql_binds_every_parameter_it_uses() {
        let users = ["$1", "$2", "$3"];
        assert!(
            users.iter().all(|p| INSERT_USERS.contains(p)),
            "{INSERT_USERS}"
        );
        assert!(!INSERT_USERS.contains("$4"), "{INSERT_USERS}");
        assert!(
            INSERT_CONTACTS.contains("$1")
                && INSERT_CONTACTS.contains("$2")
                && !INSERT_CONTACTS.contains("$3"),
            "{INSERT_CONTACTS}"
        );
    }

    #[test]
    fn site_user_emails_are_the_site_id_without_dashes() {
        let site_id = Uuid::parse_str("0190A3B4-C5D6-7E8F-9A0B-1C2D3E4F5A6B").unwrap();
        assert_eq!(
            site_user_email(site_id, 42),
            "site-user-42.0190a3b4c5d67e8f9a0b1c2d3e4f5a6b@large-site.example.com"
        );
    }

    #[tokio::test]
    async fn the_users_are_loaded_with_their_skeletons_and_projected_in_the_registry() {
        // rule I3: identity has no skeleton left to compute for them.
        let db = kc_testkit::test_database().await;
        let urls = crate::suite::provision(&db.url, None).await.unwrap();
        kc_runtime::db::migrate(&urls["identity"], "identity", &kc_identity::MIGRATOR)
            .await
            .unwrap();
        kc_runtime::db::migrate(&urls["contacts"], "contacts", &kc_contacts::MIGRATOR)
            .await
            .unwrap();
        let mut conn = PgConnection::connect(&urls["identity"]).await.unwrap();
        let mut registry = PgConnection::connect(&urls["contacts"]).await.unwrap();
        let site_id = Uuid::new_v4();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "INSERT INTO customers (customer_number) VALUES ('7399999'); \
             INSERT INTO sites (site_id, site_number, customer_number, name, country_code, \
               language, program, support_active, is_original_site) \
             VALUES ('{site_id}', '7399999', '7399999', 'Large', 'FR', 'fr', \
               'passport_advantage', false, true)"
        )))
        .execute(&mut registry)
        .await
        .unwrap();
        for _ in 0..2 {
            load_site_users(&mut conn, &mut registry, site_id, 1000)
                .await
                .unwrap();
        }
        let users: Vec<(i64, String, Option<String>)> = sqlx::query_as(concat!(
            "SELECT u, email, email_skeleton FROM generate_series(0::bigint, 999) AS u \
             JOIN users ON user_id = ",
            site_user_sql!()
        ))
        .bind(site_id)
        .fetch_all(&mut conn)
        .await
        .unwrap();
        assert_eq!(users.len(), 1000, "each once, under its id");
        let total: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(total, 1000);
        for (u, email, skeleton) in users {
            assert_eq!(email, site_user_email(site_id, u));
            assert_eq!(skeleton, Some(email_skeleton(&email)), "{email}");
        }
        // The e-mails the SQL formula of earlier loads built.
        let formula: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM users WHERE email = 'site-user-' || \
             split_part(display_name, ' ', 3) || '.' || replace($1::text, '-', '') || \
             '@large-site.example.com'",
        )
        .bind(site_id)
        .fetch_one(&mut conn)
        .await
        .unwrap();
        assert_eq!(formula, 1000);
        // The registry's projection holds each as identity does (the gateway reads the
        // people of a page from it).
        let identity_rows = "SELECT user_id::text || ' ' || email || ' ' || display_name || ' ' || state \
             FROM users ORDER BY user_id";
        let projected_rows = "SELECT user_id::text || ' ' || email || ' ' || display_name || ' ' || \
               CASE state WHEN 2 THEN 'invited' END FROM user_states ORDER BY user_id";
        let identity: Vec<String> = sqlx::query_scalar(identity_rows)
            .fetch_all(&mut conn)
            .await
            .unwrap();
        let projected: Vec<String> = sqlx::query_scalar(projected_rows)
            .fetch_all(&mut registry)
            .await
            .unwrap();
        assert_eq!(projected, identity);
        conn.close().await.unwrap();
        registry.close().await.unwrap();
    }

    #[test]
    fn the_calls_start_at_places_spread_through_the_site() {
        // 51 pages of 1000 people: about every other token, the first page included.
        let tokens: Vec<String> = (0..51).map(|k| k.to_string()).collect();
        let step = tokens.len().div_ceil(POSITIONS).max(1);
        let chosen: Vec<String> = tokens.into_iter().step_by(step).collect();
        assert_eq!(chosen.first().map(String::as_str), Some("0"));
        assert!(chosen.len() <= POSITIONS && chosen.len() >= POSITIONS / 2);
    }
}
