//! Bulk import and export of contacts through the gateway (`ImportContacts`,
//! `ExportContacts`), with a real client: a 200-row import with 5 bad rows, its dry run, its
//! second run, and the round trip of an export.

use std::collections::BTreeMap;

use crate::gateway::helpers::*;
use kc_proto::contacts::{self as cpb};
use kc_proto::gateway::{self as gw};
use tonic::Code;

/// Sites of the importer's customer.
const SITES: usize = 10;

/// Rows per message of the stream.
const ROWS_PER_MESSAGE: usize = 37;

/// Imports `rows` as `token` (the options in a message of their own, the rows in several):
/// one answer per row.
async fn import(
    suite: &Suite,
    token: &str,
    rows: &[gw::ContactRow],
    dry_run: bool,
) -> Result<Vec<gw::ImportContactsResponse>, tonic::Status> {
    let mut messages = vec![gw::ImportContactsRequest {
        options: Some(gw::ImportOptions { dry_run }),
        rows: Vec::new(),
    }];
    messages.extend(
        rows.chunks(ROWS_PER_MESSAGE)
            .map(|chunk| gw::ImportContactsRequest {
                options: None,
                rows: chunk.to_vec(),
            }),
    );
    let mut answers = suite
        .gw()
        .import_contacts(authed(Some(token), futures::stream::iter(messages)))
        .await?
        .into_inner();
    let mut results = Vec::new();
    while let Some(answer) = answers.message().await? {
        results.push(answer);
    }
    Ok(results)
}

/// Starts the export `request` as `token`: its rows, or the refusal that comes before any.
async fn start_export(
    suite: &Suite,
    token: &str,
    request: gw::ExportContactsRequest,
) -> Result<tonic::Streaming<gw::ExportContactsResponse>, tonic::Status> {
    suite
        .gw()
        .export_contacts(authed(Some(token), request))
        .await
        .map(tonic::Response::into_inner)
}

/// Exports the contacts of `customer` as `token`.
async fn export(suite: &Suite, token: &str, customer: &str) -> Vec<gw::ContactRow> {
    let request = gw::ExportContactsRequest {
        customer_number: customer.into(),
        site_numbers: Vec::new(),
    };
    let mut rows = start_export(suite, token, request).await.expect("export");
    let mut all = Vec::new();
    while let Some(answer) = rows.message().await.expect("an export row") {
        all.push(answer.row.expect("row"));
    }
    all
}

/// How many answers have each outcome.
fn outcomes(results: &[gw::ImportContactsResponse]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for result in results {
        let outcome = gw::ImportOutcome::try_from(result.outcome)
            .map(|o| o.as_str_name().to_owned())
            .unwrap_or_default();
        *counts.entry(outcome).or_default() += 1;
    }
    counts
}

fn expect_outcomes(results: &[gw::ImportContactsResponse], expected: &[(&str, usize)]) {
    let expected: BTreeMap<String, usize> = expected
        .iter()
        .map(|(outcome, n)| (format!("IMPORT_OUTCOME_{outcome}"), *n))
        .collect();
    let refused: Vec<_> = results
        .iter()
        .filter(|r| r.outcome == gw::ImportOutcome::Refused as i32)
        .collect();
    assert_eq!(outcomes(results), expected, "refused rows: {refused:#?}");
}

/// A row of `site` for `email` in `role`.
fn row(site: &cpb::Site, email: &str, name: &str, role: &str) -> gw::ContactRow {
    gw::ContactRow {
        site_number: site.site_number.clone(),
        email: email.into(),
        display_name: name.into(),
        locale: "fr".into(),
        role: role.into(),
        ..Default::default()
    }
}

/// The import's world: the importer's customer with [`SITES`] sites (S&S active, the
/// importer primary of each, one STC), another customer's site, and proven people who get
/// levels (levels go to proven people only, I1).
struct World {
    importer: Person,
    stc: Person,
    customer: String,
    sites: Vec<cpb::Site>,
    other_site: cpb::Site,
    proven: Vec<Person>,
}

impl World {
    async fn build(suite: &Suite) -> Self {
        let importer = suite.person("Camille Importer").await;
        let stc = suite.person("Thomas Stc").await;
        let stranger = suite.person("Olga Other").await;
        let mut proven = Vec::new();
        for n in 0..4 {
            proven.push(suite.person(&format!("Proven {n}")).await);
        }
        let (_, customer) = suite.numbers();
        let mut sites = Vec::new();
        for n in 0..SITES {
            let (site_number, _) = suite.numbers();
            sites.push(create_site(suite, &site_number, &customer, n, &importer, &stc).await);
        }
        let other_site = suite.create_site("Elsewhere", &stranger, None).await;
        for site in &sites {
            suite
                .wait_role(&site.site_id, &importer.id, Role::Primary)
                .await;
        }
        Self {
            importer,
            stc,
            customer,
            sites,
            other_site,
            proven,
        }
    }

    /// The 200 rows: 195 good ones spread over the sites (interleaved, so that sites run
    /// concurrently), and 5 bad ones.
    fn rows(&self) -> (Vec<gw::ContactRow>, usize) {
        let tag = uuid::Uuid::new_v4().simple().to_string();
        let email = |site: usize, n: usize| format!("p{site}-{n}-{}@import.example", &tag[..8]);
        let mut per_site: Vec<Vec<gw::ContactRow>> = Vec::new();
        for (s, site) in self.sites.iter().enumerate() {
            let mut rows = Vec::new();
            for (n, role) in [
                "secondary",
                "secondary",
                "secondary",
                "SECONDARY",
                "renewal",
                "billing",
                "shipping",
                "administrative",
            ]
            .iter()
            .enumerate()
            {
                let mut r = row(site, &email(s, n), &format!("Person {s}-{n}"), role);
                r.phone = format!("+33 1 23 45 {s:02} {n:02}");
                r.job_title = "Acheteur".into();
                rows.push(r);
            }
            let users = if s < self.proven.len() { 10 } else { 12 };
            for n in 0..users {
                rows.push(row(
                    site,
                    &email(s, 100 + n),
                    &format!("User {s}-{n}"),
                    "site-user",
                ));
            }
            if let Some(person) = self.proven.get(s) {
                // A proven person with levels of its own (T1), and a notification e-mail of
                // its own (C9, C11: it waits for confirmation).
                let mut r = row(site, &person.email, &person.name, "site_user");
                r.software = "downloads-only".into();
                r.reporting = "view".into();
                r.notification_email = format!("notices-{}", person.email);
                rows.push(r);
            }
            per_site.push(rows);
        }
        // 8 + 10 + 1 rows on the first four sites, 8 + 12 on the other six: 76 + 120.
        let good: usize = per_site.iter().map(Vec::len).sum();
        assert_eq!(good, 196);
        // One good row less: the last site user of the last site makes room for a bad row.
        per_site[SITES - 1].pop();

        // The five bad rows.
        // 1. an unknown role;
        per_site[1].push(row(
            &self.sites[1],
            &email(1, 900),
            "Mona Manager",
            "manager",
        ));
        // 2. a fifth secondary contact (C6), after the site's four;
        per_site[0].push(row(
            &self.sites[0],
            &email(0, 901),
            "Fifth Secondary",
            "secondary",
        ));
        // 3. an address that is not an e-mail;
        per_site[3].push(row(&self.sites[3], "not-an-email", "Nobody", "site-user"));
        // 4. the STC of a site with active S&S removed (C5);
        let mut removal = row(&self.sites[2], &self.stc.email, &self.stc.name, "stc");
        removal.action = "remove".into();
        per_site[2].push(removal);
        // 5. a site the importer may not write.
        let mut rows = vec![row(
            &self.other_site,
            &email(99, 0),
            "Intruder",
            "site-user",
        )];

        let longest = per_site.iter().map(Vec::len).max().unwrap_or(0);
        for n in 0..longest {
            for site in &per_site {
                if let Some(r) = site.get(n) {
                    rows.push(r.clone());
                }
            }
        }
        let total = rows.len();
        (rows, total)
    }

    /// The people of each site, as the operator sees them (C7).
    async fn contacts(&self, suite: &Suite) -> Vec<usize> {
        let mut counts = Vec::new();
        for site in &self.sites {
            counts.push(all_contacts(suite, &site.site_id).await.len());
        }
        counts
    }
}

/// Every person of a site, as the operator reads them (C7).
async fn all_contacts(suite: &Suite, site_id: &str) -> Vec<gw::ContactView> {
    suite
        .gw()
        .show_all_contacts(authed(
            Some(&suite.operator.token),
            gw::ShowAllContactsRequest {
                site_id: site_id.into(),
                page_size: 1000,
                ..Default::default()
            },
        ))
        .await
        .expect("the operator reads the contacts")
        .into_inner()
        .contacts
}

/// The number of audit entries of a site (L1).
async fn audit_count(suite: &Suite, site_id: &str) -> usize {
    suite.site_audit(site_id).await.len()
}

/// The operator creates a site of `customer` with S&S active: `primary` and `stc`.
async fn create_site(
    suite: &Suite,
    site_number: &str,
    customer: &str,
    n: usize,
    primary: &Person,
    stc: &Person,
) -> cpb::Site {
    suite
        .gw()
        .create_site(authed(
            Some(&suite.operator.token),
            gw::CreateSiteRequest {
                site_number: site_number.into(),
                customer_number: customer.into(),
                name: format!("Import Site {n}"),
                country_code: "FR".into(),
                language: "fr".into(),
                program: cpb::Program::PassportAdvantage as i32,
                support_active: true,
                support_end_date: "2030-12-31".into(),
                business_partner_email: String::new(),
                primary_contact: Some(contact_person(primary)),
                site_technical_contact: Some(contact_person(stc)),
            },
        ))
        .await
        .expect("create a site")
        .into_inner()
        .site
        .expect("site")
}

/// The refused answers, by what they cite: (code, field, rule).
fn refusals(results: &[gw::ImportContactsResponse]) -> Vec<(String, String, String)> {
    let mut refused: Vec<(String, String, String)> = results
        .iter()
        .filter(|r| r.outcome == gw::ImportOutcome::Refused as i32)
        .map(|r| (r.code.clone(), r.field.clone(), r.rule.clone()))
        .collect();
    refused.sort();
    refused
}

/// The five refusals of the bad rows.
fn expected_refusals() -> Vec<(String, String, String)> {
    let mut expected: Vec<(String, String, String)> = [
        ("FAILED_PRECONDITION", "", "C5"),
        ("FAILED_PRECONDITION", "", "C6"),
        ("INVALID_ARGUMENT", "email", ""),
        ("INVALID_ARGUMENT", "role", ""),
        ("PERMISSION_DENIED", "", ""),
    ]
    .iter()
    .map(|(a, b, c)| ((*a).to_owned(), (*b).to_owned(), (*c).to_owned()))
    .collect();
    expected.sort();
    expected
}

// rules C5, C6, I1, T6: 200 rows, 5 bad: the dry run writes nothing and says what the real
// run does; the real run applies 195 and refuses 5 citing their rules; the second run
// changes nothing; an export imported again changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_applies_good_rows_refuses_bad_ones_and_is_idempotent() {
    let suite = Suite::start().await;
    let world = World::build(&suite).await;
    let (rows, total) = world.rows();
    assert_eq!(total, 200);
    let token = world.importer.token.clone();
    let before = world.contacts(&suite).await;
    assert_eq!(
        before,
        vec![2; SITES],
        "the primary and the STC of each site"
    );

    // The dry run: every good row VALID, the bad ones refused as the real run refuses them,
    // and nothing written.
    let dry = import(&suite, &token, &rows, true).await.expect("dry run");
    assert_eq!(dry.len(), 200);
    expect_outcomes(&dry, &[("VALID", 195), ("REFUSED", 5)]);
    assert_eq!(refusals(&dry), expected_refusals());
    assert_eq!(
        world.contacts(&suite).await,
        before,
        "a dry run writes nothing"
    );

    // The real run: one answer per row, in row order.
    let applied = import(&suite, &token, &rows, false).await.expect("import");
    let numbers: Vec<i64> = applied.iter().map(|r| r.row_number).collect();
    assert_eq!(
        numbers,
        (1..=200).collect::<Vec<i64>>(),
        "answers in row order"
    );
    expect_outcomes(&applied, &[("APPLIED", 195), ("REFUSED", 5)]);
    assert_eq!(refusals(&applied), expected_refusals());
    for (dry, real) in dry.iter().zip(&applied) {
        assert_eq!(
            dry.outcome == gw::ImportOutcome::Valid as i32,
            real.outcome == gw::ImportOutcome::Applied as i32
        );
    }
    let c6 = applied
        .iter()
        .find(|r| r.rule == "C6")
        .expect("the C6 refusal");
    assert!(c6.message.contains("rule C6"), "{c6:?}");
    let c5 = applied
        .iter()
        .find(|r| r.rule == "C5")
        .expect("the C5 refusal");
    assert!(c5.message.contains("rule C5"), "{c5:?}");
    let denied = applied
        .iter()
        .find(|r| r.code == "PERMISSION_DENIED")
        .expect("the refusal of the other site");
    assert!(
        denied.message.contains("PERMISSION_CONTACTS_UPDATE"),
        "{denied:?}"
    );
    // rule I1: the unknown people were invited.
    assert!(
        applied
            .iter()
            .any(|r| r.changes.iter().any(|c| c.contains("invited"))),
        "{applied:?}"
    );
    let after = world.contacts(&suite).await;
    // primary, STC, 4 secondaries, renewal, billing, shipping, administrative, and the users.
    let mut expected = vec![2 + 8 + 11; 4];
    expected.extend(vec![2 + 8 + 12; SITES - 5]);
    expected.push(2 + 8 + 11);
    assert_eq!(after, expected);
    let secondaries = all_contacts(&suite, &world.sites[0].site_id)
        .await
        .iter()
        .filter(|c| c.roles.contains(&(Role::Secondary as i32)))
        .count();
    assert_eq!(secondaries, 4, "rule C6");
    // The levels of the proven person (T1) and its details.
    let proven = &world.proven[0];
    suite
        .wait_profile(&world.sites[0].site_id, &proven.id, "downloads only", |p| {
            p.explicit.as_ref().is_some_and(|t| {
                t.software == kc_proto::access::SoftwareAccess::DownloadsOnly as i32
                    && t.reporting == kc_proto::access::ReportingAccess::View as i32
            })
        })
        .await;

    // The second run: nothing to do, nothing written.
    let audits: Vec<usize> = futures::future::join_all(
        world
            .sites
            .iter()
            .map(|site| audit_count(&suite, &site.site_id)),
    )
    .await;
    let again = import(&suite, &token, &rows, false)
        .await
        .expect("second run");
    expect_outcomes(&again, &[("UNCHANGED", 195), ("REFUSED", 5)]);
    assert_eq!(refusals(&again), expected_refusals());
    assert_eq!(world.contacts(&suite).await, after);
    let audits_after: Vec<usize> = futures::future::join_all(
        world
            .sites
            .iter()
            .map(|site| audit_count(&suite, &site.site_id)),
    )
    .await;
    assert_eq!(audits_after, audits, "the second run wrote nothing (L1)");

    // Export, then import the export: every row UNCHANGED.
    let exported = export(&suite, &token, &world.customer).await;
    let people: usize = after.iter().sum();
    assert!(
        exported.len() >= people,
        "one row per contact role: {}",
        exported.len()
    );
    assert!(
        exported
            .iter()
            .all(|r| r.site_number != world.other_site.site_number)
    );
    let levels = exported
        .iter()
        .find(|r| r.email == proven.email)
        .expect("the proven person's row");
    assert_eq!(
        (
            levels.software.as_str(),
            levels.reporting.as_str(),
            levels.role.as_str()
        ),
        ("downloads-only", "view", "site-user")
    );
    let round_trip = import(&suite, &token, &exported, false)
        .await
        .expect("re-import");
    expect_outcomes(&round_trip, &[("UNCHANGED", exported.len())]);
    let operator_round_trip = import(&suite, &suite.operator.token, &exported, true)
        .await
        .expect("the operator's dry run of the export");
    expect_outcomes(&operator_round_trip, &[("UNCHANGED", exported.len())]);
}

// The stream's own refusals: options after the first message; a service account; and an
// export of sites the caller may not read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_refuses_late_options_services_and_unreadable_sites() {
    let suite = Suite::start().await;
    let primary = suite.person("Pia Primary").await;
    let stranger = suite.person("Sven Stranger").await;
    let site = suite.create_site("Options Works", &primary, None).await;
    let messages = vec![
        gw::ImportContactsRequest {
            options: None,
            rows: vec![row(
                &site,
                &fresh_email("late"),
                "Late Options",
                "site-user",
            )],
        },
        gw::ImportContactsRequest {
            options: Some(gw::ImportOptions { dry_run: true }),
            rows: Vec::new(),
        },
    ];
    let mut answers = suite
        .gw()
        .import_contacts(authed(
            Some(&primary.token),
            futures::stream::iter(messages),
        ))
        .await
        .expect("the stream starts")
        .into_inner();
    let first = answers.message().await.expect("the first row's answer");
    assert_eq!(
        first.map(|a| a.outcome),
        Some(gw::ImportOutcome::Applied as i32)
    );
    let status = answers.message().await.expect_err("late options");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");

    let service = suite.service_token("importer").await;
    let status = import(&suite, &service, &[], false)
        .await
        .expect_err("service accounts may not import");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");

    let the_site = gw::ExportContactsRequest {
        customer_number: String::new(),
        site_numbers: vec![site.site_number.clone()],
    };
    let its_customer = gw::ExportContactsRequest {
        customer_number: site.customer_number.clone(),
        site_numbers: Vec::new(),
    };
    for (request, refused) in [
        (the_site, "a stranger may not export the site"),
        (its_customer, "nor its customer"),
    ] {
        let status = start_export(&suite, &stranger.token, request)
            .await
            .expect_err(refused);
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    }
    let rows = export(&suite, &primary.token, &site.customer_number).await;
    let roles: Vec<&str> = rows.iter().map(|r| r.role.as_str()).collect();
    assert_eq!(
        roles,
        ["primary", "site-user"],
        "the primary and the imported row"
    );
    assert_eq!(rows[1].display_name, "Late Options");
}
