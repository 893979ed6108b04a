//! The population of `gateway.mixed` ([`crate::mixed`]): [`SITES`] sites with
//! [`CONTACTS_PER_SITE`] contacts each, held by [`USERS`] people, bulk-loaded with SQL into
//! every schema that knows them, as the services would have written them.
//!
//! # Who holds what
//!
//! Position `p` of a site has role [`ROLES`]`[p]`: PRIMARY, 4 SECONDARY, ADMINISTRATIVE,
//! SITE_TECHNICAL, RENEWAL, SHIPPING, BILLING, 2 SITE_USER (one holder of each single-holder
//! role, at most four SECONDARY, an STC on every site with active S&S: C1, C5, C6). Every
//! person has a **home site** where it is PRIMARY or SECONDARY (the 5 first positions of
//! the 10,000 sites are exactly the 50,000 people: [`home`]), so that it may show the
//! site's contacts, list its pending access requests and update contacts there (T3); the 7
//! other positions of every site go to people of other sites ([`holder`]), 1.4 more
//! contacts a person on average. A person holds at most one role per site. Every fifth site
//! has one pending access request (SITE_ACCESS, reporting VIEW) from its first SITE_USER.
//!
//! # How it is loaded
//!
//! Creating 10,000 sites and 120,000 contacts through the RPCs would take many minutes of a
//! 2-core machine (and as many events for access management and notification to apply).
//! So, like the other fixtures of the benchmark (`access.rs`, `contacts.rs`), the rows are
//! written with bulk SQL (`INSERT … SELECT … unnest`) straight into each schema as the
//! service's own role, one transaction per schema, ids made here (UUIDv7, as the services
//! make them) so that the four schemas agree:
//!
//! - **identity**: the users, active with proven addresses, each with its confusable
//!   skeleton ([`kc_identity::domain::values::email_skeleton`], I3) and the argon2id hash of
//!   one password (the hash identity computed for a template person registered through the
//!   RPCs, copied: every user could sign in with that password); and one session each
//!   whose refresh token the benchmark knows (identity keeps only its SHA-256).
//! - **contacts** (the registry): customers (4 sites each, the first its original site),
//!   sites, contacts.
//! - **access**: its projection of sites, roles and users, the pending requests, and the
//!   materialized `effective_permissions` of the permission feed, each row the decision of
//!   the rights model ([`kc_rights::rights::Effective`]) for the member's role on a site
//!   with an STC and the C3 switch off, with the reason and rule access would write.
//! - **notification**: its projection of sites and contacts.
//!
//! That is a benchmark fixture only: no service but the owner writes its schema
//! (ARCHITECTURE.md), and these rows have no audit records and no outbox events (nothing
//! was published, so no consumer has anything to apply). Each load ends with VACUUM
//! ANALYZE, as the other fixtures do.
//!
//! # Tokens
//!
//! Callers need access tokens. Signing 50,000 people in (argon2id, by design tens of
//! milliseconds of CPU each) would cost minutes; instead each user's session is loaded with
//! a refresh token `<nonce>.<user index>` (the nonce random per run), and the benchmark
//! calls identity's `RefreshSession` (the internal RPC, not the gateway's rate-limited
//! one) for the users the calls will need ([`Population::sign_in`]): identity rotates the
//! token and mints the access token as it does for any session.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{Context, anyhow, bail};
use futures::{StreamExt, TryStreamExt};
use kc_identity::domain::values::email_skeleton;
use kc_proto::identity::RefreshSessionRequest;
use kc_proto::identity::RegisterUserRequest;
use kc_proto::identity::identity_service_client::IdentityServiceClient;
use kc_rights::rights::{ContactRole, Effective, Grants, Permission, RoleSet, SiteFacts, Subject};
use sqlx::{Connection, PgConnection};
use tonic::metadata::{Ascii, MetadataValue};
use uuid::Uuid;

use super::streams;
use crate::env::Env;

/// Sites of the population.
pub(crate) const SITES: usize = 10_000;
/// People of the population.
pub(crate) const USERS: usize = 50_000;
/// Contacts of every site.
pub(crate) const CONTACTS_PER_SITE: usize = ROLES.len();
/// The role of each position of a site.
pub(crate) const ROLES: [ContactRole; 12] = [
    ContactRole::Primary,
    ContactRole::Secondary,
    ContactRole::Secondary,
    ContactRole::Secondary,
    ContactRole::Secondary,
    ContactRole::Administrative,
    ContactRole::SiteTechnical,
    ContactRole::Renewal,
    ContactRole::Shipping,
    ContactRole::Billing,
    ContactRole::SiteUser,
    ContactRole::SiteUser,
];
/// Positions of a site held by the people whose home site it is (PRIMARY, SECONDARY).
const HOME_POSITIONS: usize = 5;
/// The other positions of a site.
const OTHER_POSITIONS: usize = CONTACTS_PER_SITE - HOME_POSITIONS;
/// Positions of the site users of a site (the targets of the primaries' grants).
pub(crate) const SITE_USER_POSITIONS: [usize; 2] = [10, 11];
/// Site number of site 0; site `i` has number `base + i` (7 digits, away from the other
/// scenarios' numbers).
const SITE_NUMBER_BASE: usize = 6_200_000;
/// Customer number of the customer of sites 0 to 3.
const CUSTOMER_NUMBER_BASE: usize = 6_700_000;
/// Sites per customer: site `i` belongs to customer `base + i / 4`.
const SITES_PER_CUSTOMER: usize = 4;
/// Every `REQUEST_EVERY`-th site has one pending access request.
const REQUEST_EVERY: usize = 5;
/// Domain of the population's addresses.
const MAIL_DOMAIN: &str = "mixed-bench.example.com";
/// The password whose hash every user gets.
const PASSWORD: &str = "mixed-bench-correct-horse";
/// Refreshes in flight at once while signing in.
const SIGN_IN_CONCURRENCY: usize = 16;

/// The person (index) holding position `position` of site `site`.
pub(crate) fn holder(site: usize, position: usize) -> usize {
    if position < HOME_POSITIONS {
        site * HOME_POSITIONS + position
    } else {
        // Half the population away from the site's own people: never one of them (see the
        // tests), and spread over all the others.
        (site * OTHER_POSITIONS + position - HOME_POSITIONS + USERS / 2) % USERS
    }
}

/// The home site of person `user`, and its position there (0: PRIMARY, else SECONDARY).
pub(crate) fn home(user: usize) -> (usize, usize) {
    (user / HOME_POSITIONS, user % HOME_POSITIONS)
}

/// Login e-mail of person `user`.
fn email(user: usize) -> String {
    format!("person-{user}@{MAIL_DOMAIN}")
}

/// The display names of the people, in order.
fn names() -> Vec<String> {
    (0..USERS).map(|u| format!("Person {u}")).collect()
}

/// The loaded population: the ids of its people, sites and contacts, and how to sign them in.
pub(crate) struct Population {
    /// User id of each person.
    pub users: Vec<Uuid>,
    /// Site id of each site.
    pub sites: Vec<Uuid>,
    /// Contact id of each position of each site, at `site * CONTACTS_PER_SITE + position`.
    pub contacts: Vec<Uuid>,
    /// The random part of the refresh tokens loaded.
    nonce: String,
}

impl Population {
    /// Fresh ids for everything, and a fresh nonce.
    fn new() -> anyhow::Result<Self> {
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce).map_err(|err| anyhow!("no random bytes: {err}"))?;
        Ok(Self {
            users: (0..USERS).map(|_| Uuid::now_v7()).collect(),
            sites: (0..SITES).map(|_| Uuid::now_v7()).collect(),
            contacts: (0..SITES * CONTACTS_PER_SITE)
                .map(|_| Uuid::now_v7())
                .collect(),
            nonce: nonce.iter().map(|byte| format!("{byte:02x}")).collect(),
        })
    }

    /// The contact id of `position` on `site`.
    pub(crate) fn contact(&self, site: usize, position: usize) -> Uuid {
        self.contacts[site * CONTACTS_PER_SITE + position]
    }

    /// The refresh token loaded for person `user`.
    fn refresh_token(&self, user: usize) -> String {
        format!("{}.{user}", self.nonce)
    }

    /// Every contact as (contact id, site id, user id, stored role), site-major.
    fn contact_rows(&self) -> (Vec<Uuid>, Vec<Uuid>, Vec<Uuid>, Vec<i16>) {
        let count = SITES * CONTACTS_PER_SITE;
        let mut rows = (
            Vec::with_capacity(count),
            Vec::with_capacity(count),
            Vec::with_capacity(count),
            Vec::with_capacity(count),
        );
        for site in 0..SITES {
            for (position, role) in ROLES.iter().enumerate() {
                rows.0.push(self.contact(site, position));
                rows.1.push(self.sites[site]);
                rows.2.push(self.users[holder(site, position)]);
                rows.3.push(role.stored());
            }
        }
        rows
    }

    /// `Bearer <access token>` of each of `users` (indexes), in that order, from identity's
    /// `RefreshSession` with the refresh token loaded for each (used up by it).
    pub(crate) async fn sign_in(
        &self,
        env: &Env,
        users: &[usize],
    ) -> anyhow::Result<Vec<MetadataValue<Ascii>>> {
        let identity = IdentityServiceClient::new(env.channel("identity").await?);
        futures::stream::iter(users.iter().copied())
            .map(|user| {
                let mut identity = identity.clone();
                let request = RefreshSessionRequest {
                    refresh_token: self.refresh_token(user),
                };
                async move {
                    let refreshed = identity
                        .refresh_session(request)
                        .await
                        .with_context(|| format!("RefreshSession of person {user} failed"))?
                        .into_inner();
                    env.check_lifetime(refreshed.access_token_expire_time)?;
                    format!("Bearer {}", refreshed.access_token)
                        .parse::<MetadataValue<Ascii>>()
                        .context("the access token is not a valid header value")
                }
            })
            .buffered(SIGN_IN_CONCURRENCY)
            .try_collect()
            .await
    }
}

/// Loads the population into identity, the registry, access management and notification;
/// returns it with notes on the load. Fails when any of it is there already (the benchmark
/// runs on a fresh database).
pub(crate) async fn load(env: &Env) -> anyhow::Result<(Population, Vec<String>)> {
    let mut conn = env.database("contacts").await?;
    let have: i64 = sqlx::query_scalar("SELECT count(*) FROM sites WHERE site_number = $1")
        .bind(SITE_NUMBER_BASE.to_string())
        .fetch_one(&mut conn)
        .await?;
    conn.close().await?;
    if have != 0 {
        bail!("the registry holds gateway.mixed's sites already: start from a fresh database");
    }
    let password_hash = template_hash(env).await?;
    eprintln!(
        "xtask: bulk-loading {SITES} sites with {CONTACTS_PER_SITE} contacts and {USERS} \
         people into identity, the registry, access and notification with SQL"
    );
    let population = Population::new()?;
    let started = Instant::now();
    let mut took = Vec::new();
    for (schema, load) in [
        ("identity", Load::Identity(&password_hash)),
        ("contacts", Load::Contacts),
        ("access", Load::Access),
        ("notification", Load::Notification),
    ] {
        let at = Instant::now();
        let mut conn = env.database(schema).await?;
        load.run(&mut conn, &population)
            .await
            .with_context(|| format!("could not load the population into {schema}"))?;
        conn.close().await?;
        took.push(format!("{schema} {:.1} s", at.elapsed().as_secs_f64()));
    }
    let notes = vec![format!(
        "bulk-loaded {SITES} sites x {CONTACTS_PER_SITE} contacts, {USERS} people (each \
         PRIMARY or SECONDARY of one site, {:.1} contacts each) and {} pending access \
         requests with SQL (a benchmark fixture, see population.rs) in {:.1} s, VACUUM \
         ANALYZE included ({})",
        (SITES * CONTACTS_PER_SITE) as f64 / USERS as f64,
        SITES.div_ceil(REQUEST_EVERY),
        started.elapsed().as_secs_f64(),
        took.join(", ")
    )];
    Ok((population, notes))
}

/// The argon2id hash identity computed for [`PASSWORD`]: of a template person registered
/// (and proven) through the RPCs.
async fn template_hash(env: &Env) -> anyhow::Result<String> {
    let template = streams::register_proven(
        env,
        vec![RegisterUserRequest {
            email: format!("template@{MAIL_DOMAIN}"),
            display_name: "Mixed bench template".to_owned(),
            password: PASSWORD.to_owned(),
            locale: "fr".to_owned(),
        }],
        1,
    )
    .await
    .context("the template person could not register")?
    .pop()
    .ok_or_else(|| anyhow!("the template person was not registered"))?;
    let mut conn = env.database("identity").await?;
    let hash: Option<String> =
        sqlx::query_scalar("SELECT password_hash FROM users WHERE user_id = $1::uuid")
            .bind(&template.user_id)
            .fetch_one(&mut conn)
            .await
            .context("could not read the template person's password hash")?;
    conn.close().await?;
    hash.ok_or_else(|| anyhow!("the template person has no password hash"))
}

/// What one schema gets.
#[derive(Clone, Copy)]
enum Load<'a> {
    /// Users (with this password hash), sessions and refresh tokens.
    Identity(&'a str),
    /// Customers, sites, contacts.
    Contacts,
    /// The projection, pending requests and effective permissions.
    Access,
    /// The projection of sites and contacts.
    Notification,
}

/// Users: id, e-mail, display name, locale, skeleton ($1..$5), all with password hash $6.
const INSERT_IDENTITY_USERS: &str = "
INSERT INTO users (user_id, email, email_verified, display_name, locale, kind, state,
                   password_hash, email_skeleton)
SELECT u.id, u.email, true, u.name, u.locale, 'customer', 'active', $6, u.skeleton
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[])
     AS u(id, email, name, locale, skeleton)";

/// The registry's projection of identity's users (`user_states`) as it holds them once it
/// has applied identity's events: id, e-mail, name ($1..$3), ACTIVE (1).
const INSERT_KNOWN_PEOPLE: &str = "
INSERT INTO user_states (user_id, email, display_name, state)
SELECT u.id, u.email, u.name, 1::smallint
FROM unnest($1::uuid[], $2::text[], $3::text[]) AS u(id, email, name)";

/// One session per user ($1 session ids, $2 user ids) for 30 days.
const INSERT_SESSIONS: &str = "
INSERT INTO sessions (session_id, user_id, expire_time)
SELECT s.id, s.user_id, now() + interval '30 days'
FROM unnest($1::uuid[], $2::uuid[]) AS s(id, user_id)";

/// The refresh token `$1.<index>` of each session of $2 (in user order), by SHA-256 as
/// identity keeps it.
const INSERT_REFRESH_TOKENS: &str = "
INSERT INTO refresh_tokens (token_hash, session_id)
SELECT sha256(convert_to($1 || '.' || (s.n - 1), 'UTF8')), s.id
FROM unnest($2::uuid[]) WITH ORDINALITY AS s(id, n)";

/// Customers `$1 + k` for `k` below `$2`.
const INSERT_CUSTOMERS: &str = "
INSERT INTO customers (customer_number)
SELECT ($1::bigint + k)::text FROM generate_series(0, $2::bigint - 1) AS k";

/// Sites: id, number, customer ($1..$3, index `i` by ordinality); every `$4`-th the
/// customer's original site.
const INSERT_REGISTRY_SITES: &str = "
INSERT INTO sites (site_id, site_number, customer_number, name, country_code, language, program,
                   support_active, support_end_date, is_original_site)
SELECT s.id, s.number, s.customer, 'Mixed bench site ' || s.number,
       (ARRAY['FR', 'DE', 'US', 'GB'])[(s.n % 4)::int + 1],
       (ARRAY['fr', 'de', 'en', 'en-GB'])[(s.n % 4)::int + 1],
       CASE WHEN s.n % 5 = 0 THEN 'passport_advantage_express' ELSE 'passport_advantage' END,
       true, current_date + 365 + (s.n % 700)::int, (s.n - 1) % $4::bigint = 0
FROM unnest($1::uuid[], $2::text[], $3::text[]) WITH ORDINALITY AS s(id, number, customer, n)";

/// Contacts: id, site, user, role ($1..$4), a phone each, a job title for the primaries.
const INSERT_CONTACTS: &str = "
INSERT INTO contacts (contact_id, site_id, user_id, role, phone, job_title)
SELECT c.id, c.site_id, c.user_id, c.role, '+331' || lpad((c.n % 100000000)::text, 8, '0'),
       CASE WHEN c.role = 1 THEN 'IT manager' WHEN c.role = 4 THEN 'Buyer' END
FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::smallint[]) WITH ORDINALITY
     AS c(id, site_id, user_id, role, n)";

/// Access's projected sites: id, number, customer ($1..$3), the C3 switch off.
const INSERT_ACCESS_SITES: &str = "
INSERT INTO sites (site_id, site_number, customer_number, admin_may_manage_access)
SELECT s.id, s.number, s.customer, false
FROM unnest($1::uuid[], $2::text[], $3::text[]) AS s(id, number, customer)";

/// Access's projected roles: site, user, role ($1..$3).
const INSERT_SITE_ROLES: &str = "
INSERT INTO site_roles (site_id, user_id, role)
SELECT r.site_id, r.user_id, r.role
FROM unnest($1::uuid[], $2::uuid[], $3::smallint[]) AS r(site_id, user_id, role)";

/// Access's projected users: id, e-mail ($1, $2), proven and enabled.
const INSERT_ACCESS_USERS: &str = "
INSERT INTO users (user_id, email, email_verified, disabled)
SELECT u.id, u.email, true, false FROM unnest($1::uuid[], $2::text[]) AS u(id, email)";

/// The effective permissions of every role holder of the sites $5, from the decisions per
/// role ($1 role, $2 permission, $3 reason, $4 rule), with each site's number as the feed
/// writes it.
const INSERT_EFFECTIVE: &str = "
INSERT INTO effective_permissions (site_id, user_id, permission, reason, rule, site_number)
SELECT r.site_id, r.user_id, d.permission, d.reason, d.rule, s.site_number
FROM site_roles r
JOIN sites s ON s.site_id = r.site_id
JOIN unnest($1::smallint[], $2::smallint[], $3::text[], $4::text[])
     AS d(role, permission, reason, rule) ON d.role = r.role
WHERE r.site_id = ANY($5::uuid[])";

/// Pending SITE_ACCESS requests for reporting VIEW: id, site, requester ($1..$3).
const INSERT_REQUESTS: &str = "
INSERT INTO access_requests (request_id, site_id, requester_id, kind, requested, justification,
                             expire_time)
SELECT q.id, q.site_id, q.requester, 1, '{0,1,0,0,0,0,0,0}'::smallint[],
       'the renewal needs the usage reports', now() + interval '30 days'
FROM unnest($1::uuid[], $2::uuid[], $3::uuid[]) AS q(id, site_id, requester)";

/// Notification's projected sites: id, number ($1, $2), name and language as the registry's.
const INSERT_NOTIFICATION_SITES: &str = "
INSERT INTO sites (site_id, site_number, name, language)
SELECT s.id, s.number, 'Mixed bench site ' || s.number,
       (ARRAY['fr', 'de', 'en', 'en-GB'])[(s.n % 4)::int + 1]
FROM unnest($1::uuid[], $2::text[]) WITH ORDINALITY AS s(id, number, n)";

/// Notification's projected contacts: id, site, user, role ($1..$4), notices to the login
/// e-mail.
const INSERT_SITE_CONTACTS: &str = "
INSERT INTO site_contacts (contact_id, site_id, user_id, role)
SELECT c.id, c.site_id, c.user_id, c.role
FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::smallint[]) AS c(id, site_id, user_id, role)";

/// Site numbers and customer numbers, by site.
fn numbers() -> (Vec<String>, Vec<String>) {
    (0..SITES)
        .map(|site| {
            (
                (SITE_NUMBER_BASE + site).to_string(),
                (CUSTOMER_NUMBER_BASE + site / SITES_PER_CUSTOMER).to_string(),
            )
        })
        .unzip()
}

/// The permissions the rights model gives each role of [`ROLES`] alone on a population
/// site (an STC, the C3 switch off, no explicit grant, the holder enabled and proven), as
/// (stored role, permission number, reason, rule) columns.
fn decisions() -> (Vec<i16>, Vec<i16>, Vec<String>, Vec<String>) {
    let site = SiteFacts {
        admin_may_manage_access: false,
        has_site_technical: true,
    };
    let roles: BTreeMap<i16, ContactRole> = ROLES.iter().map(|r| (r.stored(), *r)).collect();
    let mut columns = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for role in roles.into_values() {
        let subject = Subject {
            roles: RoleSet::of(&[role]),
            explicit: Grants::NONE,
            disabled: false,
        };
        let effective = Effective::of(&subject, site);
        for permission in Permission::ALL {
            let decision = effective.check(permission);
            if decision.allowed {
                columns.0.push(role.stored());
                columns.1.push(permission.number() as i16);
                columns.2.push(decision.reason);
                columns.3.push(decision.rule.to_owned());
            }
        }
    }
    columns
}

impl Load<'_> {
    /// Writes this schema's rows of `population` in one transaction on `conn` (connected
    /// as the schema's owner), then vacuums and analyses the tables.
    async fn run(self, conn: &mut PgConnection, population: &Population) -> anyhow::Result<()> {
        let (site_numbers, customer_numbers) = numbers();
        let mut tx = conn.begin().await?;
        let tables = match self {
            Load::Identity(password_hash) => {
                let emails: Vec<String> = (0..USERS).map(email).collect();
                let skeletons: Vec<String> = emails.iter().map(|e| email_skeleton(e)).collect();
                let names = names();
                let locales: Vec<&str> = (0..USERS)
                    .map(|u| if u % 2 == 0 { "fr" } else { "en" })
                    .collect();
                sqlx::query(INSERT_IDENTITY_USERS)
                    .bind(&population.users)
                    .bind(&emails)
                    .bind(&names)
                    .bind(&locales)
                    .bind(&skeletons)
                    .bind(password_hash)
                    .execute(&mut *tx)
                    .await
                    .context("users")?;
                let sessions: Vec<Uuid> = (0..USERS).map(|_| Uuid::now_v7()).collect();
                sqlx::query(INSERT_SESSIONS)
                    .bind(&sessions)
                    .bind(&population.users)
                    .execute(&mut *tx)
                    .await
                    .context("sessions")?;
                sqlx::query(INSERT_REFRESH_TOKENS)
                    .bind(&population.nonce)
                    .bind(&sessions)
                    .execute(&mut *tx)
                    .await
                    .context("refresh tokens")?;
                "users, sessions, refresh_tokens"
            }
            Load::Contacts => {
                sqlx::query(INSERT_CUSTOMERS)
                    .bind(i64::try_from(CUSTOMER_NUMBER_BASE)?)
                    .bind(i64::try_from(SITES.div_ceil(SITES_PER_CUSTOMER))?)
                    .execute(&mut *tx)
                    .await
                    .context("customers")?;
                sqlx::query(INSERT_REGISTRY_SITES)
                    .bind(&population.sites)
                    .bind(&site_numbers)
                    .bind(&customer_numbers)
                    .bind(i64::try_from(SITES_PER_CUSTOMER)?)
                    .execute(&mut *tx)
                    .await
                    .context("sites")?;
                let (ids, sites, users, roles) = population.contact_rows();
                sqlx::query(INSERT_CONTACTS)
                    .bind(&ids)
                    .bind(&sites)
                    .bind(&users)
                    .bind(&roles)
                    .execute(&mut *tx)
                    .await
                    .context("contacts")?;
                let emails: Vec<String> = (0..USERS).map(email).collect();
                sqlx::query(INSERT_KNOWN_PEOPLE)
                    .bind(&population.users)
                    .bind(&emails)
                    .bind(names())
                    .execute(&mut *tx)
                    .await
                    .context("the projection of identity's users")?;
                "customers, sites, contacts, user_states"
            }
            Load::Access => {
                sqlx::query(INSERT_ACCESS_SITES)
                    .bind(&population.sites)
                    .bind(&site_numbers)
                    .bind(&customer_numbers)
                    .execute(&mut *tx)
                    .await
                    .context("sites")?;
                let (_, sites, users, roles) = population.contact_rows();
                sqlx::query(INSERT_SITE_ROLES)
                    .bind(&sites)
                    .bind(&users)
                    .bind(&roles)
                    .execute(&mut *tx)
                    .await
                    .context("site roles")?;
                let emails: Vec<String> = (0..USERS).map(email).collect();
                sqlx::query(INSERT_ACCESS_USERS)
                    .bind(&population.users)
                    .bind(&emails)
                    .execute(&mut *tx)
                    .await
                    .context("users")?;
                let (roles, permissions, reasons, rules) = decisions();
                sqlx::query(INSERT_EFFECTIVE)
                    .bind(&roles)
                    .bind(&permissions)
                    .bind(&reasons)
                    .bind(&rules)
                    .bind(&population.sites)
                    .execute(&mut *tx)
                    .await
                    .context("effective permissions")?;
                let asked: Vec<usize> = (0..SITES).step_by(REQUEST_EVERY).collect();
                let ids: Vec<Uuid> = asked.iter().map(|_| Uuid::now_v7()).collect();
                let sites: Vec<Uuid> = asked.iter().map(|site| population.sites[*site]).collect();
                let requesters: Vec<Uuid> = asked
                    .iter()
                    .map(|site| population.users[holder(*site, SITE_USER_POSITIONS[0])])
                    .collect();
                sqlx::query(INSERT_REQUESTS)
                    .bind(&ids)
                    .bind(&sites)
                    .bind(&requesters)
                    .execute(&mut *tx)
                    .await
                    .context("access requests")?;
                // Like every change of the projection: no replica keeps what it cached.
                sqlx::query("SELECT pg_notify('kc_access_invalidate', '*')")
                    .execute(&mut *tx)
                    .await?;
                "sites, site_roles, users, effective_permissions, access_requests"
            }
            Load::Notification => {
                sqlx::query(INSERT_NOTIFICATION_SITES)
                    .bind(&population.sites)
                    .bind(&site_numbers)
                    .execute(&mut *tx)
                    .await
                    .context("sites")?;
                let (ids, sites, users, roles) = population.contact_rows();
                sqlx::query(INSERT_SITE_CONTACTS)
                    .bind(&ids)
                    .bind(&sites)
                    .bind(&users)
                    .bind(&roles)
                    .execute(&mut *tx)
                    .await
                    .context("site contacts")?;
                "sites, site_contacts"
            }
        };
        tx.commit().await?;
        // Fresh statistics for the planner, and no autovacuum of the new rows during a run.
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("VACUUM (ANALYZE) {tables}")))
            .execute(&mut *conn)
            .await
            .context("could not vacuum and analyse the tables")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use sha2::Digest as _;

    use super::*;

    #[test]
    fn every_person_is_primary_or_secondary_of_exactly_one_home_site() {
        let mut homes = vec![0usize; USERS];
        for site in 0..SITES {
            for (position, role) in ROLES.iter().enumerate() {
                if matches!(role, ContactRole::Primary | ContactRole::Secondary) {
                    let user = holder(site, position);
                    homes[user] += 1;
                    assert_eq!(home(user), (site, position));
                }
            }
        }
        assert!(homes.iter().all(|count| *count == 1));
        assert_eq!(SITES * HOME_POSITIONS, USERS);
    }

    #[test]
    fn a_site_has_twelve_people_within_the_role_limits() {
        assert_eq!(CONTACTS_PER_SITE, 12);
        assert_eq!(ROLES[0], ContactRole::Primary);
        for position in SITE_USER_POSITIONS {
            assert_eq!(ROLES[position], ContactRole::SiteUser);
        }
        // rule C6: at most four secondaries, one holder of each single-holder role; C5: an STC.
        let secondaries = ROLES
            .iter()
            .filter(|role| **role == ContactRole::Secondary)
            .count();
        assert_eq!(secondaries, 4);
        let single: Vec<&ContactRole> = ROLES.iter().filter(|r| r.is_single_holder()).collect();
        let distinct: BTreeSet<i16> = single.iter().map(|r| r.stored()).collect();
        assert_eq!(distinct.len(), single.len());
        assert!(ROLES.contains(&ContactRole::SiteTechnical));
        // One person per position: nobody holds two roles on a site.
        for site in 0..SITES {
            let people: BTreeSet<usize> = (0..CONTACTS_PER_SITE)
                .map(|position| holder(site, position))
                .collect();
            assert_eq!(people.len(), CONTACTS_PER_SITE, "site {site}");
            assert!(people.iter().all(|user| *user < USERS));
        }
    }

    #[test]
    fn the_other_positions_spread_over_the_people() {
        let mut held = vec![0usize; USERS];
        for site in 0..SITES {
            for position in HOME_POSITIONS..CONTACTS_PER_SITE {
                held[holder(site, position)] += 1;
            }
        }
        // 70,000 positions over 50,000 people: one or two each.
        assert!(held.iter().all(|count| (1..=2).contains(count)));
        assert_eq!(held.iter().sum::<usize>(), SITES * OTHER_POSITIONS);
    }

    #[test]
    fn the_rights_model_lets_home_members_do_what_the_calls_ask() {
        let (roles, permissions, reasons, rules) = decisions();
        assert_eq!(roles.len(), permissions.len());
        assert_eq!(reasons.len(), rules.len());
        let allowed = |role: ContactRole, permission: Permission| {
            roles
                .iter()
                .zip(&permissions)
                .any(|(r, p)| *r == role.stored() && *p == permission.number() as i16)
        };
        for role in [ContactRole::Primary, ContactRole::Secondary] {
            for permission in [
                Permission::ContactsView,
                Permission::ContactsUpdate,
                Permission::AccessUpdate,
                Permission::ApproveSiteAccess,
            ] {
                assert!(allowed(role, permission), "{role} lacks {permission}");
            }
        }
        assert!(!allowed(ContactRole::SiteUser, Permission::ContactsView));
        assert!(!allowed(
            ContactRole::Secondary,
            Permission::AccountManagement
        ));
    }

    #[test]
    fn numbers_stay_within_seven_digits() {
        let (sites, customers) = numbers();
        for number in [
            &sites[0],
            &sites[SITES - 1],
            &customers[0],
            &customers[SITES - 1],
        ] {
            assert_eq!(number.len(), 7, "{number}");
        }
    }

    /// The four schemas of a fresh database, migrated, by short name with their URLs.
    async fn fresh_schemas() -> BTreeMap<&'static str, String> {
        let db = kc_testkit::test_database().await;
        let urls = crate::suite::provision(&db.url, None).await.unwrap();
        for (schema, migrator) in [
            ("identity", &kc_identity::MIGRATOR),
            ("contacts", &kc_contacts::MIGRATOR),
            ("access", &kc_access::MIGRATOR),
            ("notification", &kc_notification::MIGRATOR),
        ] {
            kc_runtime::db::migrate(&urls[schema], schema, migrator)
                .await
                .unwrap();
        }
        urls
    }

    /// One text per row of `sql` (ordered), hashed: equal when two tables hold the same rows.
    async fn fingerprint(url: &str, sql: &str) -> String {
        let mut conn = PgConnection::connect(url).await.unwrap();
        let fingerprint: String = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_one(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
        fingerprint
    }

    async fn count(url: &str, sql: &'static str) -> i64 {
        let mut conn = PgConnection::connect(url).await.unwrap();
        let count: i64 = sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap();
        conn.close().await.unwrap();
        count
    }

    #[tokio::test]
    async fn the_population_loads_into_every_schema_and_they_agree() {
        let urls = fresh_schemas().await;
        let population = Population::new().unwrap();
        let hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaA";
        for (schema, load) in [
            ("identity", Load::Identity(hash)),
            ("contacts", Load::Contacts),
            ("access", Load::Access),
            ("notification", Load::Notification),
        ] {
            let mut conn = PgConnection::connect(&urls[schema]).await.unwrap();
            load.run(&mut conn, &population).await.unwrap();
            conn.close().await.unwrap();
        }

        let users = USERS as i64;
        let contacts = (SITES * CONTACTS_PER_SITE) as i64;
        let identity = &urls["identity"];
        assert_eq!(count(identity, "SELECT count(*) FROM users WHERE state = 'active' AND email_verified AND email_skeleton IS NOT NULL").await, users);
        assert_eq!(
            count(identity, "SELECT count(*) FROM sessions").await,
            users
        );
        // The refresh token of person 42 is the one identity would find, of its session.
        let mut conn = PgConnection::connect(identity).await.unwrap();
        let owner: Uuid = sqlx::query_scalar(
            "SELECT s.user_id FROM refresh_tokens t JOIN sessions s USING (session_id) \
             WHERE t.token_hash = $1 AND t.used_time IS NULL",
        )
        .bind(sha2::Sha256::digest(population.refresh_token(42).as_bytes()).to_vec())
        .fetch_one(&mut conn)
        .await
        .unwrap();
        conn.close().await.unwrap();
        assert_eq!(owner, population.users[42]);

        let registry = &urls["contacts"];
        assert_eq!(
            count(registry, "SELECT count(*) FROM contacts").await,
            contacts
        );
        assert_eq!(
            count(registry, "SELECT count(*) FROM customers").await,
            SITES.div_ceil(SITES_PER_CUSTOMER) as i64
        );
        assert_eq!(
            count(
                registry,
                "SELECT count(*) FROM sites WHERE is_original_site"
            )
            .await,
            SITES.div_ceil(SITES_PER_CUSTOMER) as i64
        );
        let access = &urls["access"];
        let notification = &urls["notification"];
        let roles = "SELECT md5(string_agg(site_id::text || user_id::text || role, ',' \
                     ORDER BY site_id, user_id, role)) FROM ";
        let held = fingerprint(registry, &format!("{roles}contacts")).await;
        assert_eq!(
            fingerprint(access, &format!("{roles}site_roles")).await,
            held
        );
        assert_eq!(
            fingerprint(notification, &format!("{roles}site_contacts")).await,
            held
        );
        let ids = "SELECT md5(string_agg(contact_id::text, ',' ORDER BY contact_id)) FROM ";
        assert_eq!(
            fingerprint(notification, &format!("{ids}site_contacts")).await,
            fingerprint(registry, &format!("{ids}contacts")).await
        );
        let sites =
            "SELECT md5(string_agg(site_id::text || site_number, ',' ORDER BY site_id)) FROM sites";
        let registry_sites = fingerprint(registry, sites).await;
        assert_eq!(fingerprint(access, sites).await, registry_sites);
        assert_eq!(fingerprint(notification, sites).await, registry_sites);
        let people =
            "SELECT md5(string_agg(user_id::text || email, ',' ORDER BY user_id)) FROM users";
        assert_eq!(
            fingerprint(access, people).await,
            fingerprint(identity, people).await
        );

        // Every role holder has what the rights model gives its role, nothing else.
        let (decided_roles, ..) = decisions();
        let per_site: usize = ROLES
            .iter()
            .map(|role| {
                decided_roles
                    .iter()
                    .filter(|r| **r == role.stored())
                    .count()
            })
            .sum();
        assert_eq!(
            count(access, "SELECT count(*) FROM effective_permissions").await,
            (SITES * per_site) as i64
        );
        assert_eq!(
            count(
                access,
                "SELECT count(*) FROM access_requests WHERE state = 1"
            )
            .await,
            SITES.div_ceil(REQUEST_EVERY) as i64
        );
    }

    #[test]
    fn bulk_sql_binds_every_parameter_it_uses() {
        for (sql, count) in [
            (INSERT_IDENTITY_USERS, 6),
            (INSERT_SESSIONS, 2),
            (INSERT_REFRESH_TOKENS, 2),
            (INSERT_CUSTOMERS, 2),
            (INSERT_REGISTRY_SITES, 4),
            (INSERT_CONTACTS, 4),
            (INSERT_KNOWN_PEOPLE, 3),
            (INSERT_ACCESS_SITES, 3),
            (INSERT_SITE_ROLES, 3),
            (INSERT_ACCESS_USERS, 2),
            (INSERT_EFFECTIVE, 5),
            (INSERT_REQUESTS, 3),
            (INSERT_NOTIFICATION_SITES, 2),
            (INSERT_SITE_CONTACTS, 4),
        ] {
            crate::assert_binds_parameters(sql, count);
        }
    }
}
