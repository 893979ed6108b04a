//! The contact registry's scenarios (`contacts.*`): their fixtures and calls.
//!
//! Two kinds of sites make the fixture:
//! - **listed sites**: [`LISTED_SITES`] sites with 12 contacts each (PRIMARY, ADMINISTRATIVE,
//!   SITE_TECHNICAL, RENEWAL, SHIPPING, BILLING, 4 SECONDARY, 2 SITE_USER), created through the
//!   RPCs (CreateSite, then AssignContact), so they carry audit records and events like real
//!   ones. The ListSiteContacts scenarios call them round-robin.
//! - **filler sites**: the rest of the load, written with bulk SQL (`INSERT … SELECT
//!   generate_series`) straight into the contacts schema as the service's own role. That is a
//!   benchmark fixture only: no service but kc-contacts writes its schema (ARCHITECTURE.md), and
//!   these rows have no audit records or outbox events. They obey every CHECK and unique
//!   constraint and the rules the schema does not enforce: customers first, one original site
//!   per customer, exactly one PRIMARY per site, at most one holder of each single-holder
//!   role, at most four SECONDARY, an STC on every site with active S&S.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail};
use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};
use kc_proto::contacts::contact_registry_service_client::ContactRegistryServiceClient;
use kc_proto::contacts::{
    AssignContactRequest, ContactRole, CreateSiteRequest, ListSiteContactsRequest, Program,
};
use sqlx::{Connection, PgConnection};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;
use uuid::Uuid;

use super::access::authorized;
use super::load::CallFn;
use crate::env::{Env, Prepared};

/// Sites with 12 contacts that the ListSiteContacts scenarios call, round-robin.
const LISTED_SITES: u64 = 100;
/// Site number (and customer number) of the first listed site; 7 digits.
const LISTED_NUMBER_BASE: u64 = 1_000_000;
/// The roles a site of 12 contacts gets by AssignContact, after CreateSite gave it PRIMARY
/// and SITE_TECHNICAL: a listed site here, each site of the gateway's scenarios.
pub(crate) const ASSIGNED_ROLES: [ContactRole; 10] = [
    ContactRole::Administrative,
    ContactRole::Renewal,
    ContactRole::Shipping,
    ContactRole::Billing,
    ContactRole::Secondary,
    ContactRole::Secondary,
    ContactRole::Secondary,
    ContactRole::Secondary,
    ContactRole::SiteUser,
    ContactRole::SiteUser,
];
/// Contacts of a listed site.
const LISTED_CONTACTS: usize = 2 + ASSIGNED_ROLES.len();

/// Site number of the filler site with index 0; filler site `i` has number `base + i`, 7 digits.
const FILLER_SITE_BASE: i64 = 5_000_000;
/// Customer number of the filler customer with index 0.
const FILLER_CUSTOMER_BASE: i64 = 3_000_000;
/// Filler sites per customer: filler site `i` belongs to customer `i / 4`, whose original
/// site is the one with `i % 4 == 0`.
const SITES_PER_CUSTOMER: i64 = 4;
/// Most contacts of one filler site (contact ids count per site within this).
const MAX_FILLER_CONTACTS: i64 = 4096;

/// The load of `contacts.list_site_contacts` and `contacts.assign_contact`: sites and contacts
/// in the registry, listed sites included (10 contacts per site on average, as at scale).
const BASE_LOAD: Load = Load {
    sites: 1_000,
    contacts: 10_000,
};
/// The load of `contacts.list_site_contacts_at_scale`.
const SCALE_LOAD: Load = Load {
    sites: 100_000,
    contacts: 1_000_000,
};

/// How many sites and contacts the registry holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Load {
    sites: i64,
    contacts: i64,
}

/// Seeds `contacts.list_site_contacts`: the base load, then ListSiteContacts of the listed
/// sites, round-robin.
pub(crate) fn seed_list_site_contacts(env: &Env) -> BoxFuture<'_, anyhow::Result<Prepared>> {
    Box::pin(async move { seed_listing(env, BASE_LOAD).await })
}

/// Seeds `contacts.list_site_contacts_at_scale`: like `contacts.list_site_contacts`, with the
/// registry first loaded to 100,000 sites and 1,000,000 contacts.
pub(crate) fn seed_list_site_contacts_at_scale(
    env: &Env,
) -> BoxFuture<'_, anyhow::Result<Prepared>> {
    Box::pin(async move { seed_listing(env, SCALE_LOAD).await })
}

/// Seeds `contacts.assign_contact`: the base load, then AssignContact of a fresh user as
/// SITE_USER on the filler sites, round-robin.
pub(crate) fn seed_assign_contact(env: &Env) -> BoxFuture<'_, anyhow::Result<Prepared>> {
    Box::pin(async move {
        let bearer = env.service_bearer().await?;
        let mut client = ContactRegistryServiceClient::new(env.channel("contacts").await?);
        listed_sites(env, &mut client, &bearer).await?;
        let mut conn = env.database("contacts").await?;
        let mut notes = Vec::new();
        if let Some(note) = load_filler(&mut conn, BASE_LOAD).await? {
            notes.push(note);
        }
        // The filler sites of the base load (the listed ones keep their 12 contacts), each
        // with its primary contact: the person the gateway acts for, as it does for every
        // person, so that each call decides that person's authority at commit (T8).
        let sites: Vec<(Uuid, Uuid)> = sqlx::query_as(
            "SELECT s.site_id, c.user_id FROM sites s \
             JOIN contacts c ON c.site_id = s.site_id AND c.role = 1 \
             WHERE s.site_number BETWEEN $1 AND $2 ORDER BY s.site_number",
        )
        .bind(FILLER_SITE_BASE.to_string())
        .bind((FILLER_SITE_BASE + BASE_LOAD.sites - 1).to_string())
        .fetch_all(&mut conn)
        .await?;
        if sites.is_empty() {
            bail!("no filler site to assign contacts on");
        }
        notes.push(format!(
            "{} sites round-robin; {}",
            sites.len(),
            describe(registry_load(&mut conn).await?)
        ));
        conn.close().await?;

        let sites: Arc<Vec<(String, String)>> = Arc::new(
            sites
                .iter()
                .map(|(site, primary)| (site.to_string(), primary.to_string()))
                .collect(),
        );
        let next = Arc::new(AtomicUsize::new(0));
        let call: CallFn = Arc::new(move |channel| {
            let (site_id, primary) =
                sites[next.fetch_add(1, Ordering::Relaxed) % sites.len()].clone();
            let request = seeding(
                AssignContactRequest {
                    site_id,
                    user_id: Uuid::new_v4().to_string(),
                    role: ContactRole::SiteUser.into(),
                    details: None,
                },
                &bearer,
                &primary,
            );
            Box::pin(async move {
                let request =
                    request.map_err(|error| tonic::Status::internal(error.to_string()))?;
                ContactRegistryServiceClient::new(channel)
                    .assign_contact(request)
                    .await
                    .map(drop)
            })
        });
        Ok(Prepared::calls(call, notes))
    })
}

/// Loads the registry to `load`, then makes ListSiteContacts of the listed sites, round-robin.
async fn seed_listing(env: &Env, load: Load) -> anyhow::Result<Prepared> {
    let bearer = env.service_bearer().await?;
    let mut client = ContactRegistryServiceClient::new(env.channel("contacts").await?);
    let sites = listed_sites(env, &mut client, &bearer).await?;
    let mut conn = env.database("contacts").await?;
    let mut notes = Vec::new();
    if let Some(note) = load_filler(&mut conn, load).await? {
        notes.push(note);
    }
    notes.push(format!(
        "{} sites with {LISTED_CONTACTS} contacts round-robin; {}",
        sites.len(),
        describe(registry_load(&mut conn).await?)
    ));
    conn.close().await?;

    // The call, checked once on every site: all its contacts, on one page.
    let sites: Arc<Vec<String>> = Arc::new(sites.iter().map(Uuid::to_string).collect());
    for site_id in sites.iter() {
        let listed = client
            .list_site_contacts(list_request(site_id, &bearer))
            .await
            .with_context(|| format!("ListSiteContacts of site {site_id} failed"))?
            .into_inner();
        if listed.contacts.len() != LISTED_CONTACTS || !listed.next_page_token.is_empty() {
            bail!(
                "site {site_id} lists {} contacts{}, not {LISTED_CONTACTS}",
                listed.contacts.len(),
                if listed.next_page_token.is_empty() {
                    ""
                } else {
                    " and more pages"
                }
            );
        }
    }
    let next = Arc::new(AtomicUsize::new(0));
    let call: CallFn = Arc::new(move |channel| {
        let site_id = &sites[next.fetch_add(1, Ordering::Relaxed) % sites.len()];
        let request = list_request(site_id, &bearer);
        Box::pin(async move {
            ContactRegistryServiceClient::new(channel)
                .list_site_contacts(request)
                .await
                .map(drop)
        })
    });
    Ok(Prepared::calls(call, notes))
}

/// ListSiteContacts of every role of a site, first page (the default size holds them all).
fn list_request(
    site_id: &str,
    bearer: &MetadataValue<Ascii>,
) -> tonic::Request<ListSiteContactsRequest> {
    authorized(
        ListSiteContactsRequest {
            site_id: site_id.to_owned(),
            roles: Vec::new(),
            page_size: 0,
            page_token: String::new(),
            by_person: false,
            with_people: false,
        },
        bearer,
    )
}

/// `message` as a seeding request: `bearer` (a service's) acting for `primary`, the primary
/// contact of the site it changes. The registry refuses a change of roles that imply rights
/// from a service acting for nobody (T6), and a change of a site's contacts for a person
/// who does not hold contact updates UPDATE on the site when it commits (T8): the primary
/// holds every right on its site (T3).
pub(super) fn seeding<T>(
    message: T,
    bearer: &MetadataValue<Ascii>,
    primary: &str,
) -> anyhow::Result<tonic::Request<T>> {
    let mut request = authorized(message, bearer);
    let person = primary
        .parse()
        .map_err(|_| anyhow!("bad user id {primary:?} to act for"))?;
    request
        .metadata_mut()
        .insert(kc_runtime::auth::ON_BEHALF_OF_HEADER, person);
    Ok(request)
}

/// The ids of the listed sites, created through the RPCs unless they exist (an earlier
/// scenario of this run created them).
async fn listed_sites(
    env: &Env,
    client: &mut ContactRegistryServiceClient<Channel>,
    bearer: &MetadataValue<Ascii>,
) -> anyhow::Result<Vec<Uuid>> {
    let numbers: Vec<String> = (0..LISTED_SITES)
        .map(|k| (LISTED_NUMBER_BASE + k).to_string())
        .collect();
    let mut conn = env.database("contacts").await?;
    let existing: Vec<(String, Uuid)> = sqlx::query_as(
        "SELECT site_number, site_id FROM sites WHERE site_number = ANY($1) ORDER BY site_number",
    )
    .bind(&numbers)
    .fetch_all(&mut conn)
    .await?;
    conn.close().await?;
    if existing.len() == numbers.len() {
        return Ok(existing.into_iter().map(|(_, site_id)| site_id).collect());
    }
    let missing: Vec<String> = numbers
        .into_iter()
        .filter(|number| !existing.iter().any(|(have, _)| have == number))
        .collect();
    eprintln!(
        "xtask: creating {} sites with {LISTED_CONTACTS} contacts through the RPCs",
        missing.len()
    );
    // A few sites at once; the contacts of one site one after the other (each write takes the
    // site's lock).
    let created: Vec<(String, Uuid)> = futures::stream::iter(missing)
        .map(|number| create_listed_site(client.clone(), number, bearer.clone()))
        .buffer_unordered(8)
        .try_collect()
        .await?;
    let mut all: Vec<(String, Uuid)> = existing.into_iter().chain(created).collect();
    all.sort();
    Ok(all.into_iter().map(|(_, site_id)| site_id).collect())
}

/// Creates listed site `number` with its 12 contacts; returns its number and id.
async fn create_listed_site(
    mut client: ContactRegistryServiceClient<Channel>,
    number: String,
    bearer: MetadataValue<Ascii>,
) -> anyhow::Result<(String, Uuid)> {
    let primary = Uuid::new_v4().to_string();
    let created = client
        .create_site(authorized(
            CreateSiteRequest {
                site_number: number.clone(),
                // Its own customer: the site is the customer's original site.
                customer_number: number.clone(),
                name: format!("Bench listed site {number}"),
                country_code: "FR".to_owned(),
                language: "fr".to_owned(),
                program: Program::PassportAdvantage.into(),
                support_active: true,
                support_end_date: "2030-12-31".to_owned(),
                business_partner_email: "partner@example.com".to_owned(),
                primary_user_id: primary.clone(),
                site_technical_user_id: Uuid::new_v4().to_string(),
                primary_details: None,
                site_technical_details: None,
            },
            &bearer,
        ))
        .await
        .with_context(|| format!("CreateSite of site {number} failed"))?
        .into_inner();
    let site = created
        .site
        .ok_or_else(|| anyhow!("CreateSite of site {number} returned no site"))?;
    for role in ASSIGNED_ROLES {
        client
            .assign_contact(seeding(
                AssignContactRequest {
                    site_id: site.site_id.clone(),
                    user_id: Uuid::new_v4().to_string(),
                    role: role.into(),
                    details: None,
                },
                &bearer,
                &primary,
            )?)
            .await
            .with_context(|| format!("AssignContact {role:?} on site {number} failed"))?;
    }
    let site_id = Uuid::parse_str(&site.site_id)
        .with_context(|| format!("CreateSite returned a bad site id {:?}", site.site_id))?;
    Ok((number, site_id))
}

/// The sites and contacts the registry holds.
async fn registry_load(conn: &mut PgConnection) -> anyhow::Result<Load> {
    let (sites, contacts): (i64, i64) =
        sqlx::query_as("SELECT (SELECT count(*) FROM sites), (SELECT count(*) FROM contacts)")
            .fetch_one(conn)
            .await?;
    Ok(Load { sites, contacts })
}

/// `1000 sites and 10000 contacts in the registry`.
fn describe(load: Load) -> String {
    format!(
        "{} sites and {} contacts in the registry",
        load.sites, load.contacts
    )
}

/// What a filler load adds to reach `target` from `have`: new sites, and how many contacts
/// each gets (`per_site`, one more for the first `extra` of them). `None` when there are
/// sites enough.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FillerPlan {
    sites: i64,
    per_site: i64,
    extra: i64,
}

impl FillerPlan {
    fn new(have: Load, target: Load) -> anyhow::Result<Option<FillerPlan>> {
        let sites = target.sites - have.sites;
        if sites <= 0 {
            return Ok(None);
        }
        let contacts = target.contacts - have.contacts;
        // Every site has its primary contact (S1).
        if contacts < sites {
            bail!(
                "{contacts} more contacts cannot fill {sites} more sites: every site has a \
                 primary contact"
            );
        }
        let plan = FillerPlan {
            sites,
            per_site: contacts / sites,
            extra: contacts % sites,
        };
        let most = plan.per_site + i64::from(plan.extra > 0);
        if most > MAX_FILLER_CONTACTS {
            bail!("{most} contacts per filler site is more than the fixture makes");
        }
        Ok(Some(plan))
    }

    fn contacts(&self) -> i64 {
        self.sites * self.per_site + self.extra
    }
}

/// Customers of the filler sites `$1..=$2` (filler indexes): customer `$3 + i / $4`, unless
/// it exists.
const INSERT_CUSTOMERS: &str = "
INSERT INTO customers (customer_number)
SELECT DISTINCT ($3::bigint + i / $4::bigint)::text
FROM generate_series($1::bigint, $2::bigint) AS i
ON CONFLICT (customer_number) DO NOTHING";

/// A time-ordered id (the UUIDv7 layout of the service's `Uuid::now_v7`) from the Unix time in
/// ms `$3` and a counter expression (< 2^60), as SQL.
macro_rules! v7_sql {
    ($counter:literal) => {
        concat!(
            "(lpad(to_hex($3::bigint), 12, '0') || '7000' || '8' || lpad(to_hex(",
            $counter,
            "), 15, '0'))::uuid"
        )
    };
}

/// Contacts of filler site `i`: `$4` each, one more for the first `$5` of the batch `$1..=$2`.
macro_rules! filler_contacts_sql {
    () => {
        "($4::bigint + CASE WHEN i - $1::bigint < $5::bigint THEN 1 ELSE 0 END)"
    };
}

/// Filler sites `$1..=$2`: site number `$6 + i` of customer `$7 + i / $8`, the customer's
/// original site when `i % $8 = 0`; S&S active on two in three of the sites that get an STC
/// (3 contacts or more, C5).
const INSERT_SITES: &str = concat!(
    "
INSERT INTO sites (site_id, site_number, customer_number, name, country_code, language, program,
                   support_active, support_end_date, business_partner_email, is_original_site)
SELECT ",
    v7_sql!("i"),
    ",
       ($6::bigint + i)::text,
       ($7::bigint + i / $8::bigint)::text,
       'Bench site ' || i,
       (ARRAY['FR', 'DE', 'US', 'GB', 'JP', 'IT'])[(i % 6)::int + 1],
       (ARRAY['fr', 'de', 'en', 'en-GB', 'ja', 'it'])[(i % 6)::int + 1],
       CASE WHEN i % 5 = 0 THEN 'passport_advantage_express' ELSE 'passport_advantage' END,
       f.active,
       CASE WHEN f.active THEN current_date + (i % 700)::int END,
       CASE WHEN i % 7 = 0 THEN 'partner-' || (i % 50) || '@example.com' END,
       i % $8::bigint = 0
FROM generate_series($1::bigint, $2::bigint) AS i
CROSS JOIN LATERAL (SELECT ",
    filler_contacts_sql!(),
    " >= 3 AND i % 3 <> 0 AS active) AS f"
);

/// Contacts of the filler sites `$1..=$2` (site number `$6 + i`): contact `k` of a site has
/// role PRIMARY, ADMINISTRATIVE, SITE_TECHNICAL, RENEWAL, SHIPPING, BILLING, then 4
/// SECONDARY, then SITE_USER (the role numbers of the migration); a random user each.
const INSERT_CONTACTS: &str = concat!(
    "
INSERT INTO contacts (contact_id, site_id, user_id, role, phone, job_title, notification_email)
SELECT ",
    v7_sql!("i * 4096 + k"),
    ",
       s.site_id,
       gen_random_uuid(),
       CASE WHEN k < 10 THEN (ARRAY[1, 2, 3, 5, 6, 7, 4, 4, 4, 4]::smallint[])[k::int + 1]
            ELSE 8::smallint END,
       CASE WHEN k % 3 = 0 THEN '+331' || lpad((i % 100000000)::text, 8, '0') END,
       CASE WHEN k = 0 THEN 'IT manager' WHEN k % 4 = 1 THEN 'Buyer' END,
       CASE WHEN k % 5 = 1 THEN 'notices-' || i || '-' || k || '@example.com' END
FROM generate_series($1::bigint, $2::bigint) AS i
JOIN sites s ON s.site_number = ($6::bigint + i)::text
CROSS JOIN LATERAL generate_series(0::bigint, ",
    filler_contacts_sql!(),
    " - 1) AS k"
);

/// Loads filler sites and contacts until the registry holds `target` (nothing when it holds
/// that many sites already), then vacuums and analyses the tables. Returns a note on what it
/// loaded.
async fn load_filler(conn: &mut PgConnection, target: Load) -> anyhow::Result<Option<String>> {
    let have = registry_load(conn).await?;
    let Some(plan) = FillerPlan::new(have, target)? else {
        return Ok(None);
    };
    let first: i64 = sqlx::query_scalar(
        "SELECT coalesce(max(site_number::bigint) + 1 - $1, 0) FROM sites \
         WHERE site_number BETWEEN $2 AND $3",
    )
    .bind(FILLER_SITE_BASE)
    .bind(FILLER_SITE_BASE.to_string())
    .bind((FILLER_SITE_BASE + 999_999).to_string())
    .fetch_one(&mut *conn)
    .await?;
    let last = first + plan.sites - 1;
    if FILLER_SITE_BASE + last > 9_999_999 {
        bail!("filler site numbers would leave the 7-digit range");
    }
    eprintln!(
        "xtask: bulk-loading {} sites and {} contacts with SQL",
        plan.sites,
        plan.contacts()
    );
    let started = Instant::now();
    let ts_ms = i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis())?;
    let mut tx = conn.begin().await?;
    sqlx::query(INSERT_CUSTOMERS)
        .bind(first)
        .bind(last)
        .bind(FILLER_CUSTOMER_BASE)
        .bind(SITES_PER_CUSTOMER)
        .execute(&mut *tx)
        .await
        .context("could not load the filler customers")?;
    let bind_common = |sql| {
        sqlx::query(sql)
            .bind(first)
            .bind(last)
            .bind(ts_ms)
            .bind(plan.per_site)
            .bind(plan.extra)
            .bind(FILLER_SITE_BASE)
    };
    let sites = bind_common(INSERT_SITES)
        .bind(FILLER_CUSTOMER_BASE)
        .bind(SITES_PER_CUSTOMER)
        .execute(&mut *tx)
        .await
        .context("could not load the filler sites")?
        .rows_affected();
    let contacts = bind_common(INSERT_CONTACTS)
        .execute(&mut *tx)
        .await
        .context("could not load the filler contacts")?
        .rows_affected();
    tx.commit().await?;
    let loaded = started.elapsed();
    // Fresh statistics for the planner, and no autovacuum of the new rows during a run.
    sqlx::raw_sql("VACUUM (ANALYZE) customers, sites, contacts")
        .execute(&mut *conn)
        .await
        .context("could not vacuum and analyse the contacts tables")?;
    let vacuumed = started.elapsed() - loaded;
    Ok(Some(format!(
        "bulk-loaded {sites} sites and {contacts} contacts with SQL in {:.1} s, VACUUM ANALYZE \
         {:.1} s",
        loaded.as_secs_f64(),
        vacuumed.as_secs_f64()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_sites_have_twelve_contacts_with_one_primary() {
        assert_eq!(LISTED_CONTACTS, 12);
        assert!(!ASSIGNED_ROLES.contains(&ContactRole::Primary));
        let secondary = ASSIGNED_ROLES
            .iter()
            .filter(|role| **role == ContactRole::Secondary)
            .count();
        assert_eq!(secondary, 4);
        let site_users = ASSIGNED_ROLES
            .iter()
            .filter(|role| **role == ContactRole::SiteUser)
            .count();
        assert_eq!(site_users, 2);
    }

    #[test]
    fn filler_plans_reach_the_target_exactly() {
        let have = Load {
            sites: 100,
            contacts: 1_200,
        };
        let plan = FillerPlan::new(have, BASE_LOAD).unwrap().unwrap();
        assert_eq!(plan.sites, 900);
        assert_eq!(plan.contacts(), 8_800);
        assert_eq!((plan.per_site, plan.extra), (9, 700));
        let plan = FillerPlan::new(BASE_LOAD, SCALE_LOAD).unwrap().unwrap();
        assert_eq!(plan.sites, 99_000);
        assert_eq!(plan.contacts(), 990_000);
        assert_eq!(FillerPlan::new(SCALE_LOAD, BASE_LOAD).unwrap(), None);
        // Every site needs its primary.
        let crowded = Load {
            sites: 10,
            contacts: 999_995,
        };
        assert!(FillerPlan::new(crowded, SCALE_LOAD).is_err());
    }

    #[test]
    fn fixture_numbers_stay_within_seven_digits() {
        for number in [
            LISTED_NUMBER_BASE,
            LISTED_NUMBER_BASE + LISTED_SITES - 1,
            FILLER_SITE_BASE.unsigned_abs(),
            (FILLER_SITE_BASE + SCALE_LOAD.sites).unsigned_abs(),
            FILLER_CUSTOMER_BASE.unsigned_abs(),
            (FILLER_CUSTOMER_BASE + SCALE_LOAD.sites / SITES_PER_CUSTOMER).unsigned_abs(),
        ] {
            assert_eq!(number.to_string().len(), 7, "{number}");
        }
        // Listed and filler numbers do not meet.
        assert!(LISTED_NUMBER_BASE + LISTED_SITES < FILLER_CUSTOMER_BASE.unsigned_abs());
    }

    #[test]
    fn bulk_sql_binds_every_parameter_it_uses() {
        for (sql, count) in [
            (INSERT_CUSTOMERS, 4),
            (INSERT_SITES, 8),
            (INSERT_CONTACTS, 6),
        ] {
            crate::assert_binds_parameters(sql, count);
        }
    }
}
