//! The gateway's scenarios (`gateway.*`): its fixture and calls.
//!
//! [`SITES`] sites with 12 contacts each (PRIMARY, SITE_TECHNICAL, ADMINISTRATIVE, RENEWAL,
//! SHIPPING, BILLING, 4 SECONDARY, 2 SITE_USER), each contact a user of its own, are created
//! through the internal services' RPCs as the benchmark's service account: identity's
//! `CreateUser` for the eleven people each site's primary names (invited: no password, so no
//! hashing), `RegisterUser` then `VerifyEmail` for the primary (it signs in, so its address
//! must be proven, rule I1: the code is read from identity's stream, see
//! [`streams::register_proven`]), then the registry's `CreateSite`
//! and `AssignContact`. The seeding waits until access management and notification have
//! applied every event the other services published (access answers the gateway's
//! `BatchCheck` from its projection of sites and roles; notification mails the new roles), and
//! tries the call once on every site.
//!
//! The calls go to the gateway, round-robin over the sites, each with the access token of the
//! site's primary contact (from identity's `Authenticate`, straight to identity: the gateway's
//! `Login` is rate limited per address): so every call is authenticated (the token verified
//! by the gateway), authorized (one `BatchCheck` on access for `ShowAllContacts`), and
//! composed from the registry, identity and access management, all five services and
//! Postgres on this machine with the load generator.
//!
//! The gateway runs with its default read cache (`--read-cache-ttl 1s`): each primary calls
//! far more often than once a second, so nearly every call is answered from the cache and
//! the figures are the gateway's own cost. `KC_READ_CACHE_TTL=0s cargo xtask bench gateway`
//! (the services inherit the environment) measures every call going through to the
//! internal services.
//!
//! - `gateway.show_all_contacts`: `ShowAllContacts` of the site: the registry's
//!   `ListSiteContacts` concurrently with the `BatchCheck`, then identity's `BatchGetUsers`.
//! - `gateway.get_me`: `GetMe` of the primary: identity's `GetUser`, the registry's
//!   `ListUserContacts` and access management's `ListUserAccess`, concurrently.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, anyhow, bail};
use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};
use kc_proto::contacts::contact_registry_service_client::ContactRegistryServiceClient;
use kc_proto::contacts::{AssignContactRequest, ContactRole, CreateSiteRequest, Program};
use kc_proto::gateway::gateway_service_client::GatewayServiceClient;
use kc_proto::gateway::{GetMeRequest, ShowAllContactsRequest};
use kc_proto::identity::identity_service_client::IdentityServiceClient;
use kc_proto::identity::{AuthenticateRequest, CreateUserRequest, RegisterUserRequest};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;
use uuid::Uuid;

use super::access::authorized;
use super::contacts::ASSIGNED_ROLES;
use super::load::CallFn;
use super::streams;
use crate::env::{Env, Prepared};

/// Sites the calls go round-robin over, each with its own primary contact.
pub(crate) const SITES: usize = 10;
/// Contacts of each site: its primary, its site technical contact and one person for each
/// of [`ASSIGNED_ROLES`].
pub(crate) const CONTACTS_PER_SITE: usize = 2 + ASSIGNED_ROLES.len();
/// Site number (and customer number) of the first site; 7 digits, away from the other
/// scenarios' numbers.
const NUMBER_BASE: usize = 7_000_000;
/// Domain of the users the scenarios create.
const MAIL_DOMAIN: &str = "gateway-bench.example.com";
/// The primaries' password.
const PRIMARY_PASSWORD: &str = "gateway-bench-correct-horse";
/// Sites created at once while seeding (the contacts of one site one after the other).
const SEED_CONCURRENCY: usize = 4;

/// One site of the fixture, with its primary contact signed in.
#[derive(Debug, Clone)]
pub(crate) struct Site {
    /// Its id.
    pub(crate) site_id: String,
    /// `Bearer <access token>` of its primary contact.
    pub(crate) primary: MetadataValue<Ascii>,
}

/// Seeds `gateway.show_all_contacts`: the fixture, then ShowAllContacts of each site by its
/// primary, round-robin.
pub(crate) fn seed_show_all_contacts(env: &Env) -> BoxFuture<'_, anyhow::Result<Prepared>> {
    Box::pin(async move {
        let (sites, mut notes) = fixture(env).await?;
        let mut client = GatewayServiceClient::new(env.channel("gateway").await?);
        for site in &sites {
            let shown = client
                .show_all_contacts(show_request(site))
                .await
                .with_context(|| format!("ShowAllContacts of site {} failed", site.site_id))?
                .into_inner();
            if shown.contacts.len() != CONTACTS_PER_SITE || !shown.next_page_token.is_empty() {
                bail!(
                    "the gateway shows {} contacts of site {}, not {CONTACTS_PER_SITE}",
                    shown.contacts.len(),
                    site.site_id
                );
            }
        }
        notes.push(format!(
            "{SITES} sites with {CONTACTS_PER_SITE} contacts round-robin, each called by its \
             primary contact"
        ));
        let sites = Arc::new(sites);
        let next = Arc::new(AtomicUsize::new(0));
        let call: CallFn = Arc::new(move |channel| {
            let site = &sites[next.fetch_add(1, Ordering::Relaxed) % sites.len()];
            let request = show_request(site);
            Box::pin(async move {
                GatewayServiceClient::new(channel)
                    .show_all_contacts(request)
                    .await
                    .map(drop)
            })
        });
        Ok(Prepared::calls(call, notes))
    })
}

/// Seeds `gateway.get_me`: the fixture, then GetMe of each site's primary, round-robin.
pub(crate) fn seed_get_me(env: &Env) -> BoxFuture<'_, anyhow::Result<Prepared>> {
    Box::pin(async move {
        let (sites, mut notes) = fixture(env).await?;
        let mut client = GatewayServiceClient::new(env.channel("gateway").await?);
        for site in &sites {
            let me = client
                .get_me(me_request(site))
                .await
                .context("GetMe of a primary contact failed")?
                .into_inner();
            let holds = me.sites.iter().any(|mine| {
                mine.site
                    .as_ref()
                    .is_some_and(|known| known.site_id == site.site_id)
                    && mine.roles.contains(&(ContactRole::Primary as i32))
            });
            if !holds {
                bail!(
                    "GetMe of the primary of site {} does not show it as PRIMARY there",
                    site.site_id
                );
            }
        }
        notes.push(format!(
            "{SITES} primary contacts round-robin, each holding one role on one site"
        ));
        let sites = Arc::new(sites);
        let next = Arc::new(AtomicUsize::new(0));
        let call: CallFn = Arc::new(move |channel| {
            let site = &sites[next.fetch_add(1, Ordering::Relaxed) % sites.len()];
            let request = me_request(site);
            Box::pin(async move {
                GatewayServiceClient::new(channel)
                    .get_me(request)
                    .await
                    .map(drop)
            })
        });
        Ok(Prepared::calls(call, notes))
    })
}

/// ShowAllContacts of `site`, every role, first page (the default size holds them all), by
/// its primary.
fn show_request(site: &Site) -> tonic::Request<ShowAllContactsRequest> {
    authorized(
        ShowAllContactsRequest {
            site_id: site.site_id.clone(),
            ..ShowAllContactsRequest::default()
        },
        &site.primary,
    )
}

/// GetMe of `site`'s primary.
fn me_request(site: &Site) -> tonic::Request<GetMeRequest> {
    authorized(GetMeRequest {}, &site.primary)
}

/// The fixture's sites, created unless an earlier scenario of this run did, with their
/// primaries signed in; notes on the wait for the streams.
async fn fixture(env: &Env) -> anyhow::Result<(Vec<Site>, Vec<String>)> {
    let numbers: Vec<String> = (0..SITES).map(|k| (NUMBER_BASE + k).to_string()).collect();
    sites_numbered(env, &numbers).await
}

/// The fixture's sites of `numbers` (7 digits, each also its customer's number), created
/// like [`fixture`]'s unless an earlier scenario of this run did, with their primaries
/// signed in; notes on the wait for the streams.
pub(crate) async fn sites_numbered(
    env: &Env,
    numbers: &[String],
) -> anyhow::Result<(Vec<Site>, Vec<String>)> {
    let bearer = env.service_bearer().await?;
    let mut conn = env.database("contacts").await?;
    let existing: Vec<(String, Uuid)> = sqlx::query_as(
        "SELECT site_number, site_id FROM sites WHERE site_number = ANY($1) ORDER BY site_number",
    )
    .bind(numbers)
    .fetch_all(&mut conn)
    .await?;
    sqlx::Connection::close(conn).await?;
    let missing: Vec<String> = numbers
        .iter()
        .filter(|number| !existing.iter().any(|(have, _)| have == *number))
        .cloned()
        .collect();
    if !missing.is_empty() {
        eprintln!(
            "xtask: creating {} sites with {CONTACTS_PER_SITE} contacts through the RPCs",
            missing.len()
        );
    }
    let identity = IdentityServiceClient::new(env.channel("identity").await?);
    let contacts = ContactRegistryServiceClient::new(env.channel("contacts").await?);
    let created: Vec<(String, Uuid)> = futures::stream::iter(missing)
        .map(|number| {
            create_site(
                env,
                identity.clone(),
                contacts.clone(),
                number,
                bearer.clone(),
            )
        })
        .buffer_unordered(SEED_CONCURRENCY)
        .try_collect()
        .await?;
    let mut all: Vec<(String, Uuid)> = existing.into_iter().chain(created).collect();
    all.sort();

    let mut notes = Vec::new();
    notes.extend(streams::wait_until_applied(env, "access", &streams::ACCESS_STREAMS).await?);
    notes.extend(
        streams::wait_until_applied(env, "notification", &streams::NOTIFICATION_STREAMS).await?,
    );

    let mut sites = Vec::with_capacity(all.len());
    for (number, site_id) in all {
        let primary = sign_in(env, identity.clone(), &primary_email(&number)).await?;
        sites.push(Site {
            site_id: site_id.to_string(),
            primary,
        });
    }
    Ok((sites, notes))
}

/// Login e-mail of the primary contact of site `number`.
fn primary_email(number: &str) -> String {
    format!("primary-{number}@{MAIL_DOMAIN}")
}

/// Creates site `number` with its 12 contacts, each a user of its own; returns its number
/// and id.
async fn create_site(
    env: &Env,
    mut identity: IdentityServiceClient<Channel>,
    mut contacts: ContactRegistryServiceClient<Channel>,
    number: String,
    bearer: MetadataValue<Ascii>,
) -> anyhow::Result<(String, Uuid)> {
    let primary = streams::register_proven(
        env,
        vec![RegisterUserRequest {
            email: primary_email(&number),
            display_name: format!("Primary of {number}"),
            password: PRIMARY_PASSWORD.to_owned(),
            locale: "fr".to_owned(),
        }],
        1,
    )
    .await
    .with_context(|| format!("the primary of site {number} could not register"))?
    .pop()
    .ok_or_else(|| anyhow!("the primary of site {number} was not registered"))?;
    let mut people = Vec::with_capacity(1 + ASSIGNED_ROLES.len());
    for k in 0..=ASSIGNED_ROLES.len() {
        let user = identity
            .create_user(authorized(
                CreateUserRequest {
                    email: format!("contact-{number}-{k}@{MAIL_DOMAIN}"),
                    display_name: format!("Contact {k} of {number}"),
                    locale: if k % 2 == 0 { "fr" } else { "en" }.to_owned(),
                    ..CreateUserRequest::default()
                },
                &bearer,
            ))
            .await
            .with_context(|| format!("CreateUser of a contact of site {number} failed"))?
            .into_inner()
            .user
            .ok_or_else(|| anyhow!("CreateUser returned no user"))?;
        people.push(user.user_id);
    }
    let (stc, assigned) = people.split_first().expect("one person per role");
    let site = contacts
        .create_site(authorized(
            CreateSiteRequest {
                site_number: number.clone(),
                // Its own customer: the site is the customer's original site.
                customer_number: number.clone(),
                name: format!("Gateway bench site {number}"),
                country_code: "FR".to_owned(),
                language: "fr".to_owned(),
                program: Program::PassportAdvantage.into(),
                support_active: true,
                support_end_date: "2030-12-31".to_owned(),
                business_partner_email: String::new(),
                primary_user_id: primary.user_id.clone(),
                site_technical_user_id: stc.clone(),
                primary_details: None,
                site_technical_details: None,
            },
            &bearer,
        ))
        .await
        .with_context(|| format!("CreateSite of site {number} failed"))?
        .into_inner()
        .site
        .ok_or_else(|| anyhow!("CreateSite of site {number} returned no site"))?;
    for (role, user_id) in ASSIGNED_ROLES.iter().zip(assigned) {
        contacts
            .assign_contact(super::contacts::seeding(
                AssignContactRequest {
                    site_id: site.site_id.clone(),
                    user_id: user_id.clone(),
                    role: (*role).into(),
                    details: None,
                },
                &bearer,
                &primary.user_id,
            )?)
            .await
            .with_context(|| format!("AssignContact {role:?} on site {number} failed"))?;
    }
    let site_id = Uuid::parse_str(&site.site_id)
        .with_context(|| format!("CreateSite returned a bad site id {:?}", site.site_id))?;
    Ok((number, site_id))
}

/// `Bearer <access token>` of `email`, signed in with identity's Authenticate; the token
/// outlives the run.
async fn sign_in(
    env: &Env,
    mut identity: IdentityServiceClient<Channel>,
    email: &str,
) -> anyhow::Result<MetadataValue<Ascii>> {
    let signed_in = identity
        .authenticate(AuthenticateRequest {
            email: email.to_owned(),
            password: PRIMARY_PASSWORD.to_owned(),
        })
        .await
        .with_context(|| format!("could not sign in {email}"))?
        .into_inner();
    env.check_lifetime(signed_in.access_token_expire_time)?;
    format!("Bearer {}", signed_in.access_token)
        .parse()
        .context("the access token is not a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_site_has_twelve_contacts_within_the_role_limits() {
        // rule C6: at most four secondaries, one holder of each single-holder role.
        assert_eq!(CONTACTS_PER_SITE, 12);
        let secondaries = ASSIGNED_ROLES
            .iter()
            .filter(|role| **role == ContactRole::Secondary)
            .count();
        assert!(secondaries <= 4);
        let single: Vec<&ContactRole> = ASSIGNED_ROLES
            .iter()
            .filter(|role| !matches!(role, ContactRole::Secondary | ContactRole::SiteUser))
            .collect();
        let distinct: std::collections::BTreeSet<&ContactRole> = single.iter().copied().collect();
        assert_eq!(distinct.len(), single.len());
        assert!(!ASSIGNED_ROLES.contains(&ContactRole::Primary));
        assert!(!ASSIGNED_ROLES.contains(&ContactRole::SiteTechnical));
    }

    #[test]
    fn gateway_scenarios_run_beside_all_five_services() {
        let chosen = super::super::scenarios::select(&["gateway".to_owned()]).unwrap();
        let names: Vec<&str> = chosen.iter().map(|scenario| scenario.name).collect();
        assert_eq!(
            names,
            [
                "gateway.show_all_contacts",
                "gateway.show_all_contacts_large",
                "gateway.get_me",
                "gateway.check",
                "gateway.check_cold",
                "gateway.lookup_sites",
                "gateway.watch_permissions",
                "gateway.import",
                "gateway.mixed"
            ]
        );
        let running: Vec<&str> = super::super::scenarios::services(&chosen)
            .unwrap()
            .iter()
            .map(|service| service.name)
            .collect();
        assert_eq!(
            running,
            ["identity", "contacts", "access", "notification", "gateway"]
        );
    }

    #[test]
    fn site_numbers_are_seven_digits() {
        for k in [0, SITES - 1] {
            assert_eq!((NUMBER_BASE + k).to_string().len(), 7);
        }
    }
}
