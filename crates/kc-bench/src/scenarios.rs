//! The benchmark scenarios: which services each needs, how it seeds them, the call it makes,
//! and its target. Add a scenario by adding an entry to [`SCENARIOS`].

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use futures::future::BoxFuture;
use kc_proto::identity::identity_service_client::IdentityServiceClient;
use kc_proto::identity::{AuthenticateRequest, GetUserRequest, RegisterUserRequest};
use tonic::metadata::{Ascii, MetadataValue};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use super::load::CallFn;
use super::{access, authz, bulk, contacts, gateway, mixed, notification, streams, watch};
use crate::env::{Env, Prepared};
use crate::suite::{SERVICES, Service};

/// A benchmark scenario.
#[derive(Debug)]
pub(crate) struct Scenario {
    /// `<service>.<what>`, e.g. `identity.get_user`.
    pub name: &'static str,
    /// One line on what it measures.
    pub about: &'static str,
    /// Short name of the service it measures, and the calls go to unless `via` says
    /// otherwise; its Health/Check rate is the baseline.
    pub service: &'static str,
    /// Short name of the service the calls go to when it is not `service`: a scenario that
    /// measures what a call elsewhere sets off (a change on access, mailed by notification).
    pub via: Option<&'static str>,
    /// The gRPC method called, `package.Service/Method`.
    pub method: &'static str,
    /// Other services it needs running (besides the ones the services call, always started).
    pub needs: &'static [&'static str],
    /// Its measured time when `--duration` is not given (15 s otherwise): what its target
    /// says the service must sustain.
    pub duration: Option<Duration>,
    /// Seeds the running services and returns the call to make.
    pub seed: for<'a> fn(&'a Env) -> BoxFuture<'a, anyhow::Result<Prepared>>,
    /// What it should reach.
    /// The target: every check must hold (informational: a miss does not fail the command).
    pub target: &'static [Check],
}

/// One condition of a target.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Check {
    /// Calls per second at least this fraction of the baseline's.
    MinRatio(f64),
    /// Calls per second at least this many, absolute.
    MinRps(f64),
    /// p99 latency at most this many milliseconds.
    MaxP99Ms(f64),
    /// Peak RSS of the named service's process (short name) at most this many MiB.
    MaxRssMib(&'static str, f64),
    /// p50 latency at most this multiple of the p50 of the named scenario, measured earlier in
    /// the same invocation; not evaluated (not a miss) when that scenario was not run.
    MaxP50RatioTo(&'static str, f64),
    /// What the calls set off ([`Deliveries`], e.g. e-mails accepted by an SMTP sink), at
    /// least this many per second.
    MinDeliveredPerSec(f64),
    /// p99 of the time from a call to the arrival of what it set off, at most this many
    /// milliseconds.
    MaxDeliveryP99Ms(f64),
}

/// Every scenario, in the order they run.
pub(crate) const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "identity.get_user",
        about: "a customer reads itself with a valid access token (GetUser)",
        service: "identity",
        method: "keycontacts.identity.v1.IdentityService/GetUser",
        via: None,
        needs: &[],
        duration: None,
        seed: seed_get_user,
        target: &[
            Check::MinRatio(0.25),
            Check::MaxP99Ms(15.0),
            Check::MaxRssMib("identity", 64.0),
        ],
    },
    Scenario {
        name: "identity.authenticate",
        about: "sign-in with the right e-mail and password (Authenticate)",
        service: "identity",
        method: "keycontacts.identity.v1.IdentityService/Authenticate",
        via: None,
        needs: &[],
        duration: None,
        seed: seed_authenticate,
        // Throughput is argon2-bound by design; the working memory is bounded (one buffer
        // per hashing permit), so the peak RSS is a target.
        target: &[Check::MaxRssMib("identity", 64.0)],
    },
    Scenario {
        name: "contacts.list_site_contacts",
        about: "a service lists all contacts of a site with 12 contacts (ListSiteContacts), \
                round-robin over 100 such sites among 1,000 sites loaded",
        service: "contacts",
        method: "keycontacts.contacts.v1.ContactRegistryService/ListSiteContacts",
        via: None,
        needs: &[],
        duration: None,
        seed: contacts::seed_list_site_contacts,
        target: &[
            Check::MinRatio(0.25),
            Check::MaxP99Ms(15.0),
            Check::MaxRssMib("contacts", 64.0),
        ],
    },
    Scenario {
        name: "contacts.assign_contact",
        about: "a service acting for a site's primary contact (as the gateway does) makes a \
                fresh user a SITE_USER of the site, deciding the person's authority at commit \
                (T8), with audit record and outbox event (AssignContact), round-robin over 900 \
                sites",
        service: "contacts",
        method: "keycontacts.contacts.v1.ContactRegistryService/AssignContact",
        via: None,
        needs: &[],
        duration: None,
        seed: contacts::seed_assign_contact,
        target: &[Check::MinRps(1500.0), Check::MaxRssMib("contacts", 64.0)],
    },
    Scenario {
        name: "contacts.list_site_contacts_at_scale",
        about: "contacts.list_site_contacts (same 100 sites) with 100,000 sites and 1,000,000 \
                contacts loaded",
        service: "contacts",
        method: "keycontacts.contacts.v1.ContactRegistryService/ListSiteContacts",
        via: None,
        needs: &[],
        duration: None,
        seed: contacts::seed_list_site_contacts_at_scale,
        target: &[
            Check::MaxP50RatioTo("contacts.list_site_contacts", 1.5),
            Check::MaxRssMib("contacts", 64.0),
        ],
    },
    Scenario {
        name: "access.check",
        about: "a service checks one permission of one user on one site (Check), round-robin \
                over 10,000 sites x 20 users loaded into the projection",
        service: "access",
        method: "keycontacts.access.v1.AccessManagementService/Check",
        via: None,
        needs: &[],
        duration: None,
        seed: access::seed_check,
        target: &[
            Check::MinRatio(0.6),
            Check::MaxP99Ms(5.0),
            Check::MaxRssMib("access", 96.0),
        ],
    },
    Scenario {
        name: "access.batch_check",
        about: "a service checks 20 (site, user, permission) triples in one call (BatchCheck), \
                round-robin over all 200,000 pairs, so all 10,000 sites x 20 users are cached",
        service: "access",
        method: "keycontacts.access.v1.AccessManagementService/BatchCheck",
        via: None,
        needs: &[],
        duration: None,
        seed: access::seed_batch_check,
        target: &[Check::MinRatio(0.25), Check::MaxRssMib("access", 96.0)],
    },
    Scenario {
        name: "notification.throughput",
        about: "a service sends proofs of entitlement (SendNotice) round-robin over 50 sites, \
                each to the site's primary contact and its business partner (2 e-mails), \
                with at most 512 e-mails waiting for delivery; counts the e-mails the SMTP \
                sink accepts",
        service: "notification",
        via: None,
        method: "keycontacts.notification.v1.NotificationService/SendNotice",
        needs: &[],
        duration: Some(notification::SUSTAINED),
        seed: notification::seed_throughput,
        target: &[
            Check::MinDeliveredPerSec(500.0),
            Check::MaxRssMib("notification", 96.0),
        ],
    },
    Scenario {
        name: "notification.latency",
        about: "100 rights changes a second on access (SetToolAccess, each of another user), \
                each mailed to that user (RightsChanged); latency from the call to the SMTP \
                sink's acceptance of the e-mail",
        service: "notification",
        via: Some("access"),
        method: "keycontacts.access.v1.AccessManagementService/SetToolAccess",
        needs: &[],
        duration: Some(notification::SUSTAINED),
        seed: notification::seed_latency,
        target: &[
            Check::MaxDeliveryP99Ms(2000.0),
            Check::MaxRssMib("notification", 96.0),
        ],
    },
    Scenario {
        name: "gateway.show_all_contacts",
        about: "a site's primary contact shows all contacts of its site with 12 contacts \
                (ShowAllContacts: token check, BatchCheck on access, the registry's list and \
                identity's users composed), round-robin over 10 such sites",
        service: "gateway",
        via: None,
        method: "keycontacts.gateway.v1.GatewayService/ShowAllContacts",
        needs: &[],
        duration: None,
        seed: gateway::seed_show_all_contacts,
        target: &[
            Check::MinRatio(0.10),
            Check::MaxP99Ms(25.0),
            Check::MaxRssMib("gateway", 64.0),
        ],
    },
    Scenario {
        name: "gateway.show_all_contacts_large",
        about: "a site's primary contact shows one page of 100 people of its site of 50,000 \
                SITE_USERs (ShowAllContacts paged by person in the registry: one page read, \
                never the site), round-robin over 10 such sites and 40 places in each",
        service: "gateway",
        via: None,
        method: "keycontacts.gateway.v1.GatewayService/ShowAllContacts",
        needs: &[],
        duration: None,
        seed: crate::large_site::seed,
        target: &[Check::MaxP99Ms(25.0), Check::MaxRssMib("gateway", 64.0)],
    },
    Scenario {
        name: "gateway.get_me",
        about: "a site's primary contact reads itself with its sites, roles and effective \
                rights (GetMe: identity, the registry and access composed), round-robin over \
                10 primaries",
        service: "gateway",
        via: None,
        method: "keycontacts.gateway.v1.GatewayService/GetMe",
        needs: &[],
        duration: None,
        seed: gateway::seed_get_me,
        target: &[
            Check::MinRatio(0.10),
            Check::MaxP99Ms(25.0),
            Check::MaxRssMib("gateway", 64.0),
        ],
    },
    Scenario {
        name: "gateway.check",
        about: "a relying application (service account with the scope authz) checks one \
                (user, site, permission) a call through the AuthorizationService (Check), \
                round-robin over 10,000 sites x 20 users loaded into access",
        service: "gateway",
        via: None,
        method: "keycontacts.gateway.v1.AuthorizationService/Check",
        needs: &[],
        duration: None,
        seed: authz::seed_check,
        target: &[Check::MinRatio(0.5), Check::MaxP99Ms(10.0)],
    },
    Scenario {
        name: "gateway.check_cold",
        about: "gateway.check with access's rights cache cleared right before the run: the \
                window loads every site it reaches (after a restart, or a working set larger \
                than the cache); informational, beside gateway.check's warm cache",
        service: "gateway",
        via: None,
        method: "keycontacts.gateway.v1.AuthorizationService/Check",
        needs: &[],
        duration: None,
        seed: authz::seed_check_cold,
        target: &[Check::MinRatio(0.5), Check::MaxP99Ms(10.0)],
    },
    Scenario {
        name: "gateway.lookup_sites",
        about: "a relying application lists every site (10 pages of 100) where a user holds \
                a permission (LookupSites), for users with grants on 1,000 of 10,000 sites; \
                latency per full lookup, 8 lookups in flight",
        service: "gateway",
        via: None,
        method: "keycontacts.gateway.v1.AuthorizationService/LookupSites",
        needs: &[],
        duration: None,
        seed: authz::seed_lookup_sites,
        target: &[Check::MaxP99Ms(50.0)],
    },
    Scenario {
        name: "gateway.watch_permissions",
        about: "100 grants a second on access (SetToolAccess, each to a new user on the next \
                of 1,000 sites) watched by a relying application on the gateway's \
                WatchPermissions (scope authz); latency from the grant's answer to the \
                arrival of its change on the stream",
        service: "gateway",
        via: Some("access"),
        method: "keycontacts.access.v1.AccessManagementService/SetToolAccess",
        needs: &[],
        duration: None,
        seed: watch::seed_watch_permissions,
        target: &[
            Check::MaxDeliveryP99Ms(500.0),
            Check::MaxRssMib("gateway", 64.0),
        ],
    },
    Scenario {
        name: "gateway.import",
        about: "a customer's primary contact imports files of 10,000 contacts (new people \
                made SITE_USER, invited, rule I1) over 1,000 sites (ImportContacts: each row \
                checked and applied as AssignContact, the sites concurrently); contacts \
                applied a second",
        service: "gateway",
        via: None,
        method: "keycontacts.gateway.v1.GatewayService/ImportContacts",
        needs: &[],
        duration: Some(bulk::SUSTAINED),
        seed: bulk::seed_import,
        target: &[
            Check::MinDeliveredPerSec(500.0),
            Check::MaxRssMib("gateway", 64.0),
        ],
    },
    Scenario {
        name: "gateway.mixed",
        about: "people drawn by Zipf (s = 1.1) among 50,000 holding the contacts of 10,000 \
                sites of 12 (bulk-loaded), each call ShowAllContacts of the caller's site \
                50 %, GetMe 30 %, ListPendingRequests 15 %, writes 5 % (UpdateContact of its \
                own contact, SetToolAccess by a primary); prints the read-cache hit rate",
        service: "gateway",
        via: None,
        method: "keycontacts.gateway.v1.GatewayService/ShowAllContacts",
        needs: &[],
        duration: None,
        seed: mixed::seed_mixed,
        target: &[Check::MinRatio(0.10), Check::MaxP99Ms(25.0)],
    },
];

/// The scenarios `names` select, in [`SCENARIOS`] order, each once: all of them without names.
/// A name selects the scenario of that name, or all of a service's with the service's short name
/// (`identity`).
pub(crate) fn select(names: &[String]) -> anyhow::Result<Vec<&'static Scenario>> {
    if names.is_empty() {
        return Ok(SCENARIOS.iter().collect());
    }
    let selects = |name: &str, scenario: &Scenario| {
        scenario.name == name
            || scenario
                .name
                .strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('.'))
    };
    for name in names {
        if !SCENARIOS.iter().any(|scenario| selects(name, scenario)) {
            let valid: Vec<&str> = SCENARIOS.iter().map(|scenario| scenario.name).collect();
            bail!(
                "unknown scenario {name}: valid scenarios are {}",
                valid.join(", ")
            );
        }
    }
    Ok(SCENARIOS
        .iter()
        .filter(|scenario| names.iter().any(|name| selects(name, scenario)))
        .collect())
}

/// The services `scenarios` need, with the services those call, in start order; with identity
/// too when one of them calls others (identity creates their service accounts).
pub(crate) fn services(scenarios: &[&Scenario]) -> anyhow::Result<Vec<&'static Service>> {
    let mut wanted = BTreeSet::new();
    let mut pending: Vec<&str> = scenarios
        .iter()
        .flat_map(|scenario| {
            std::iter::once(scenario.service)
                .chain(scenario.via)
                .chain(scenario.needs.iter().copied())
        })
        .collect();
    while let Some(name) = pending.pop() {
        if wanted.insert(name) {
            let service = Service::named(name)?;
            pending.extend(service.calls);
            if !service.calls.is_empty() {
                pending.push("identity");
            }
        }
    }
    Ok(SERVICES
        .iter()
        .filter(|service| wanted.contains(service.name))
        .collect())
}

/// The method of the baseline call.
pub(crate) const HEALTH_CHECK: &str = "grpc.health.v1.Health/Check";

/// The baseline call: `grpc.health.v1.Health/Check` of the whole server.
pub(crate) fn health_check() -> CallFn {
    Arc::new(|channel| {
        Box::pin(async move {
            HealthClient::new(channel)
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .map(drop)
        })
    })
}

/// E-mail of the customer the identity scenarios use.
const CUSTOMER_EMAIL: &str = "bench@example.com";
/// Its password.
const CUSTOMER_PASSWORD: &str = "bench-password-correct-horse";

/// The benchmark's customer, signed in.
struct Customer {
    user_id: String,
    access_token: String,
}

/// Registers the benchmark's customer unless it exists (an earlier scenario of this run made
/// it), proving its address (rule I1: an unproven account cannot sign in), and signs it in.
async fn seed_customer(env: &Env) -> anyhow::Result<Customer> {
    let mut client = IdentityServiceClient::new(env.channel("identity").await?);
    let sign_in = AuthenticateRequest {
        email: CUSTOMER_EMAIL.to_owned(),
        password: CUSTOMER_PASSWORD.to_owned(),
    };
    let signed_in = match client.authenticate(sign_in.clone()).await {
        Ok(signed_in) => signed_in,
        // Not registered yet (identity answers an unknown address like a wrong password).
        Err(status) if status.code() == tonic::Code::Unauthenticated => {
            let customer = RegisterUserRequest {
                email: CUSTOMER_EMAIL.to_owned(),
                display_name: "Bench Customer".to_owned(),
                password: CUSTOMER_PASSWORD.to_owned(),
                locale: "en".to_owned(),
            };
            streams::register_proven(env, vec![customer], 1)
                .await
                .context("could not register the bench customer")?;
            client
                .authenticate(sign_in)
                .await
                .context("could not sign in the bench customer")?
        }
        Err(status) => return Err(status).context("could not sign in the bench customer"),
    }
    .into_inner();
    let user = signed_in
        .user
        .ok_or_else(|| anyhow!("authenticate returned no user"))?;
    env.check_lifetime(signed_in.access_token_expire_time)?;
    Ok(Customer {
        user_id: user.user_id,
        access_token: signed_in.access_token,
    })
}

fn seed_get_user(env: &Env) -> BoxFuture<'_, anyhow::Result<Prepared>> {
    Box::pin(async move {
        let customer = seed_customer(env).await?;
        let bearer: MetadataValue<Ascii> = format!("Bearer {}", customer.access_token)
            .parse()
            .context("the access token is not a valid header value")?;
        let user_id = customer.user_id;
        let call: CallFn = Arc::new(move |channel| {
            let mut request = tonic::Request::new(GetUserRequest {
                user_id: user_id.clone(),
            });
            request
                .metadata_mut()
                .insert("authorization", bearer.clone());
            Box::pin(async move {
                IdentityServiceClient::new(channel)
                    .get_user(request)
                    .await
                    .map(drop)
            })
        });
        Ok(Prepared::calls(call, Vec::new()))
    })
}

fn seed_authenticate(env: &Env) -> BoxFuture<'_, anyhow::Result<Prepared>> {
    Box::pin(async move {
        // Only failed sign-ins count towards the lockout: the right password never locks.
        seed_customer(env).await?;
        let call: CallFn = Arc::new(|channel| {
            Box::pin(async move {
                IdentityServiceClient::new(channel)
                    .authenticate(AuthenticateRequest {
                        email: CUSTOMER_EMAIL.to_owned(),
                        password: CUSTOMER_PASSWORD.to_owned(),
                    })
                    .await
                    .map(drop)
            })
        });
        Ok(Prepared::calls(call, vec![argon2_parameters()]))
    })
}

/// The argon2id parameters kc-identity runs with: its defaults unless the environment (which
/// the service inherits) overrides them.
fn argon2_parameters() -> String {
    let setting = |var: &str, default: String| {
        std::env::var(var)
            .ok()
            .filter(|value| !value.trim().is_empty())
            .unwrap_or(default)
    };
    let cpus = std::thread::available_parallelism().map_or(2, usize::from);
    format!(
        "argon2id m={} KiB, t={}, p={}, concurrency={}",
        setting("KC_ARGON2_MEMORY_KIB", "19456".to_owned()),
        setting("KC_ARGON2_ITERATIONS", "2".to_owned()),
        setting("KC_ARGON2_PARALLELISM", "1".to_owned()),
        setting("KC_ARGON2_CONCURRENCY", format!("{cpus} (number of cpus)")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(scenarios: &[&Scenario]) -> Vec<&'static str> {
        scenarios.iter().map(|scenario| scenario.name).collect()
    }

    #[test]
    fn no_names_select_every_scenario() {
        assert_eq!(select(&[]).unwrap().len(), SCENARIOS.len());
    }

    #[test]
    fn names_select_in_registry_order_without_duplicates() {
        let chosen = select(&[
            "identity.authenticate".to_owned(),
            "identity.get_user".to_owned(),
            "identity.authenticate".to_owned(),
        ])
        .unwrap();
        assert_eq!(
            names(&chosen),
            ["identity.get_user", "identity.authenticate"]
        );
    }

    #[test]
    fn a_service_name_selects_its_scenarios() {
        let chosen = select(&["identity".to_owned()]).unwrap();
        assert_eq!(
            names(&chosen),
            ["identity.get_user", "identity.authenticate"]
        );
        assert!(select(&["ident".to_owned()]).is_err());
        let chosen = select(&["contacts".to_owned()]).unwrap();
        assert_eq!(
            names(&chosen),
            [
                "contacts.list_site_contacts",
                "contacts.assign_contact",
                "contacts.list_site_contacts_at_scale"
            ]
        );
        let chosen = select(&["access".to_owned()]).unwrap();
        assert_eq!(names(&chosen), ["access.check", "access.batch_check"]);
        let chosen = select(&["notification".to_owned()]).unwrap();
        assert_eq!(
            names(&chosen),
            ["notification.throughput", "notification.latency"]
        );
        // `contacts.list_site_contacts` does not select `..._at_scale`: names match whole.
        let chosen = select(&["contacts.list_site_contacts".to_owned()]).unwrap();
        assert_eq!(names(&chosen), ["contacts.list_site_contacts"]);
    }

    #[test]
    fn contacts_scenarios_run_beside_identity() {
        let chosen = select(&["contacts".to_owned()]).unwrap();
        let running: Vec<&str> = services(&chosen)
            .unwrap()
            .iter()
            .map(|service| service.name)
            .collect();
        assert_eq!(running, ["identity", "contacts"]);
    }

    #[test]
    fn access_scenarios_run_beside_identity_and_contacts() {
        let chosen = select(&["access.batch_check".to_owned()]).unwrap();
        let running: Vec<&str> = services(&chosen)
            .unwrap()
            .iter()
            .map(|service| service.name)
            .collect();
        assert_eq!(running, ["identity", "contacts", "access"]);
    }

    #[test]
    fn notification_scenarios_run_beside_every_service_it_calls() {
        let chosen = select(&["notification.latency".to_owned()]).unwrap();
        let running: Vec<&str> = services(&chosen)
            .unwrap()
            .iter()
            .map(|service| service.name)
            .collect();
        assert_eq!(running, ["identity", "contacts", "access", "notification"]);
    }

    #[test]
    fn unknown_names_are_refused_with_the_valid_ones() {
        let err = select(&["identity.nope".to_owned()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("identity.nope"), "{err}");
        assert!(err.contains("identity.get_user"), "{err}");
    }

    #[test]
    fn scenarios_are_well_formed() {
        let mut seen = BTreeSet::new();
        for scenario in SCENARIOS {
            assert!(seen.insert(scenario.name), "{} twice", scenario.name);
            assert!(
                scenario.name.starts_with(&format!("{}.", scenario.service)),
                "{} is not named after its service",
                scenario.name
            );
            let running = services(&[scenario]).unwrap();
            for name in std::iter::once(scenario.service).chain(scenario.via) {
                assert!(running.iter().any(|service| service.name == name));
            }
            let called = Service::named(scenario.via.unwrap_or(scenario.service)).unwrap();
            assert!(
                std::iter::once(called.grpc_service)
                    .chain(called.also_serves.iter().copied())
                    .any(|grpc_service| scenario.method.starts_with(&format!("{grpc_service}/"))),
                "{} calls {}, not a method of the service its calls go to",
                scenario.name,
                scenario.method
            );
            assert!(scenario.duration.is_none_or(|duration| !duration.is_zero()));
            assert!(
                !scenario.target.is_empty(),
                "{} has no target",
                scenario.name
            );
            for check in scenario.target {
                match *check {
                    Check::MaxRssMib(name, _) => {
                        assert!(running.iter().any(|service| service.name == name));
                    }
                    // Compared with a scenario that runs before it, when both are chosen.
                    Check::MaxP50RatioTo(reference, max) => {
                        assert!(max > 0.0);
                        assert!(
                            seen.contains(reference) && reference != scenario.name,
                            "{} compares with {reference}, which must come before it",
                            scenario.name
                        );
                    }
                    Check::MinRatio(min) | Check::MinRps(min) | Check::MinDeliveredPerSec(min) => {
                        assert!(min > 0.0)
                    }
                    Check::MaxP99Ms(max) | Check::MaxDeliveryP99Ms(max) => {
                        assert!(max > 0.0);
                    }
                }
            }
        }
    }
}
