//! The contact registry through its gRPC interface, against a real Postgres: every RPC, every
//! rule of DOMAIN.md it enforces (S*, C*, R1, L1), validation and callers.

mod common;

use std::collections::HashSet;

use common::{
    Harness, cites, expect_code, expect_field, expect_rule, mask, on_behalf_of, role, site_request,
    user,
};
use kc_proto::contacts::{self as pb, event::Payload};
use tonic::{Code, Request};
use uuid::Uuid;

use pb::ContactRole as R;

// ---------------------------------------------------------------------------------------
// CreateSite, GetSite, LookupSite, ListSites
// ---------------------------------------------------------------------------------------

// rule S1: a site is created with its primary contact; the first site of a customer number
// is its original site, later ones are additional sites.
#[tokio::test]
async fn create_site_makes_the_first_site_of_a_customer_original_with_its_primary() {
    let h = Harness::start().await;
    let primary = user();
    let created = h
        .create(pb::CreateSiteRequest {
            name: "  Lyon Part-Dieu  ".into(),
            country_code: "fr".into(),
            language: "fr-ca".into(),
            program: pb::Program::PassportAdvantageExpress as i32,
            business_partner_email: " Partner@Example.COM ".into(),
            support_end_date: "2027-03-31".into(),
            primary_details: Some(pb::ContactDetails {
                phone: "+33 1 23 45 67 89".into(),
                job_title: "DSI".into(),
                notification_email: "alerts@example.fr".into(),
            }),
            ..site_request("1000001", "2000001", primary)
        })
        .await;
    let site = created.site.expect("site");
    assert!(Uuid::parse_str(&site.site_id).is_ok());
    assert_eq!(site.site_number, "1000001");
    assert_eq!(site.customer_number, "2000001");
    assert_eq!(site.name, "Lyon Part-Dieu");
    assert_eq!(site.country_code, "FR");
    assert_eq!(site.language, "fr-CA");
    assert_eq!(site.program, pb::Program::PassportAdvantageExpress as i32);
    assert!(!site.support_active);
    assert_eq!(site.support_end_date, "2027-03-31");
    assert_eq!(site.business_partner_email, "partner@example.com");
    assert!(!site.admin_may_manage_access);
    assert!(site.is_original_site);
    assert_eq!(site.primary_user_id, primary.to_string());
    assert!(!site.etag.is_empty());
    assert!(site.create_time.is_some() && site.update_time.is_some());
    // rule S1: the primary contact exists from the start, with its details.
    assert_eq!(created.contacts.len(), 1);
    let contact = &created.contacts[0];
    assert_eq!(role(contact), R::Primary);
    assert_eq!(contact.user_id, primary.to_string());
    assert_eq!(contact.site_id, site.site_id);
    let details = contact.details.as_ref().expect("details");
    assert_eq!(details.phone, "+33123456789");
    assert_eq!(details.job_title, "DSI");
    // rules C9, C11: the notification e-mail waits for its owner's confirmation.
    assert_eq!(details.notification_email, "");
    assert_eq!(contact.pending_notification_email, "alerts@example.fr");
    assert_eq!(h.contacts(&site.site_id, &[]).await, created.contacts);
    let confirmed = h.confirm_email(contact).await;
    assert_eq!(
        confirmed.details.expect("details").notification_email,
        "alerts@example.fr"
    );
    assert_eq!(confirmed.pending_notification_email, "");

    // rule S2: later sites of the same customer number are additional sites.
    let additional = h.site("1000002", "2000001", user()).await;
    assert!(!additional.is_original_site);
    assert_eq!(additional.customer_number, "2000001");
    // The first site of another customer is that customer's original site; the language
    // defaults to en.
    let other = h
        .create(pb::CreateSiteRequest {
            language: String::new(),
            ..site_request("1000003", "2000002", user())
        })
        .await
        .site
        .expect("site");
    assert!(other.is_original_site);
    assert_eq!(other.language, "en");
}

// rule C5: a site with active S&S is created with its site technical contact.
#[tokio::test]
async fn create_site_with_active_support_names_its_site_technical_contact() {
    let h = Harness::start().await;
    let (primary, stc) = (user(), user());
    let created = h.supported_site("1000001", "2000001", primary, stc).await;
    let site = created.site.expect("site");
    assert!(site.support_active);
    let roles: Vec<(R, String)> = created
        .contacts
        .iter()
        .map(|c| (role(c), c.user_id.clone()))
        .collect();
    assert_eq!(
        roles,
        [
            (R::Primary, primary.to_string()),
            (R::SiteTechnical, stc.to_string())
        ]
    );
    // The primary may be its own STC.
    let same = h
        .supported_site("1000002", "2000001", primary, primary)
        .await;
    assert_eq!(same.contacts.len(), 2);
}

// rule C5: a site created with active S&S gets its site technical contact, with its details,
// in the same transaction as the site.
#[tokio::test]
async fn create_site_with_an_stc_stores_its_details_with_the_site() {
    let h = Harness::start().await;
    let stc = user();
    let created = h
        .create(pb::CreateSiteRequest {
            support_active: true,
            site_technical_user_id: stc.to_string(),
            site_technical_details: Some(pb::ContactDetails {
                phone: "+33 4 72 00 00 01".into(),
                job_title: "Responsable technique".into(),
                notification_email: "Support@Example.fr".into(),
            }),
            ..site_request("1000001", "2000001", user())
        })
        .await;
    let technical: Vec<&pb::Contact> = created
        .contacts
        .iter()
        .filter(|contact| role(contact) == R::SiteTechnical)
        .collect();
    assert_eq!(technical.len(), 1, "{:?}", created.contacts);
    assert_eq!(technical[0].user_id, stc.to_string());
    let details = technical[0].details.as_ref().expect("details");
    assert_eq!(details.phone, "+33472000001");
    assert_eq!(details.job_title, "Responsable technique");
    // rule C11: pending until the STC confirms it.
    assert_eq!(details.notification_email, "");
    assert_eq!(
        technical[0].pending_notification_email,
        "support@example.fr"
    );
    let site_id = &created.site.expect("site").site_id;
    assert_eq!(h.contacts(site_id, &[]).await, created.contacts);
}

// rule C5: activating S&S at creation without an STC is refused on site_technical_user_id,
// and nothing is written.
#[tokio::test]
async fn create_site_with_active_support_and_no_stc_is_refused() {
    let h = Harness::start().await;
    let status = expect_field(
        h.client()
            .create_site(h.svc(pb::CreateSiteRequest {
                support_active: true,
                ..site_request("1000001", "2000001", user())
            }))
            .await,
        "site_technical_user_id",
    );
    let violations = kc_runtime::error::field_violations(&status);
    assert!(
        violations
            .iter()
            .any(|v| v.field == "site_technical_user_id" && cites(&v.description, "C5")),
        "the violation cites C5: {violations:?}"
    );
    assert!(h.all_sites().await.is_empty());
    expect_code(
        h.client()
            .lookup_site(h.svc(pb::LookupSiteRequest {
                site_number: "1000001".into(),
            }))
            .await,
        Code::NotFound,
    );
    // Nor was the customer recorded: its first real site is still its original site.
    assert!(h.site("1000002", "2000001", user()).await.is_original_site);
}

// rule S2: site numbers are unique and a site belongs to exactly one customer.
#[tokio::test]
async fn create_site_with_a_taken_site_number_is_already_exists() {
    let h = Harness::start().await;
    let first = h.site("1000001", "2000001", user()).await;
    let status = expect_code(
        h.client()
            .create_site(h.svc(site_request("1000001", "2000002", user())))
            .await,
        Code::AlreadyExists,
    );
    assert!(status.message().contains("1000001"), "{status:?}");
    // The first site is untouched and still belongs to its customer.
    let sites = h.all_sites().await;
    assert_eq!(sites, std::slice::from_ref(&first));
    assert_eq!(sites[0].customer_number, "2000001");
    // The refused creation wrote nothing, not even the customer: its first site is original.
    assert!(h.site("1000002", "2000002", user()).await.is_original_site);
    assert_eq!(h.audit(&first.site_id).await.len(), 1);
}

// rule S2: a site is found by its id or by its unique site number (7 to 10 digits).
#[tokio::test]
async fn get_and_lookup_site() {
    let h = Harness::start().await;
    let site = h.site("1234567890", "2000001", user()).await;
    assert_eq!(h.get_site(&site.site_id).await, site);
    let found = h
        .client()
        .lookup_site(h.svc(pb::LookupSiteRequest {
            site_number: " 1234567890 ".into(),
        }))
        .await
        .expect("lookup")
        .into_inner()
        .site
        .expect("site");
    assert_eq!(found, site);
    // Unknown ones are NotFound; malformed ones name the field.
    expect_code(
        h.client()
            .get_site(h.svc(pb::GetSiteRequest {
                site_id: Uuid::new_v4().to_string(),
            }))
            .await,
        Code::NotFound,
    );
    expect_code(
        h.client()
            .lookup_site(h.svc(pb::LookupSiteRequest {
                site_number: "7654321".into(),
            }))
            .await,
        Code::NotFound,
    );
    expect_field(
        h.client()
            .get_site(h.svc(pb::GetSiteRequest {
                site_id: "not-a-uuid".into(),
            }))
            .await,
        "site_id",
    );
    for bad in ["", "123456", "12345678901", "12a4567"] {
        expect_field(
            h.client()
                .lookup_site(h.svc(pb::LookupSiteRequest {
                    site_number: bad.into(),
                }))
                .await,
            "site_number",
        );
    }
}

// rule S2: each site belongs to one customer number, which filters the list; keyset pages.
#[tokio::test]
async fn list_sites_pages_in_site_number_order_and_filters_by_customer() {
    let h = Harness::start().await;
    // Created out of order, two customers.
    for (number, customer) in [
        ("1000005", "2000001"),
        ("1000002", "2000002"),
        ("1000004", "2000001"),
        ("1000001", "2000001"),
        ("1000003", "2000002"),
    ] {
        h.site(number, customer, user()).await;
    }
    let list = |customer: &str, token: String| {
        let request = h.svc(pb::ListSitesRequest {
            customer_number: customer.into(),
            page_size: 2,
            page_token: token,
        });
        let mut client = h.client();
        async move {
            client
                .list_sites(request)
                .await
                .expect("list sites")
                .into_inner()
        }
    };
    let mut pages = Vec::new();
    let mut token = String::new();
    loop {
        let page = list("", token).await;
        pages.push(
            page.sites
                .iter()
                .map(|s| s.site_number.clone())
                .collect::<Vec<_>>(),
        );
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(
        pages,
        [
            vec!["1000001", "1000002"],
            vec!["1000003", "1000004"],
            vec!["1000005"]
        ]
    );
    // One customer's sites, across pages.
    let first = list("2000001", String::new()).await;
    let numbers: Vec<&str> = first.sites.iter().map(|s| s.site_number.as_str()).collect();
    assert_eq!(numbers, ["1000001", "1000004"]);
    assert!(first.sites.iter().all(|s| s.customer_number == "2000001"));
    let second = list("2000001", first.next_page_token).await;
    let numbers: Vec<&str> = second
        .sites
        .iter()
        .map(|s| s.site_number.as_str())
        .collect();
    assert_eq!(numbers, ["1000005"]);
    assert!(second.next_page_token.is_empty());
    // A customer without sites has none; the default page holds everything.
    assert!(list("2000009", String::new()).await.sites.is_empty());
    assert_eq!(h.all_sites().await.len(), 5);
    // Bad arguments name their field.
    let bad = |customer: &str, size: i32, token: &str| {
        h.svc(pb::ListSitesRequest {
            customer_number: customer.into(),
            page_size: size,
            page_token: token.into(),
        })
    };
    expect_field(
        h.client().list_sites(bad("", 0, "%%%not-a-token")).await,
        "page_token",
    );
    expect_field(h.client().list_sites(bad("", -1, "")).await, "page_size");
    expect_field(h.client().list_sites(bad("", 1001, "")).await, "page_size");
    expect_field(
        h.client().list_sites(bad("12", 0, "")).await,
        "customer_number",
    );
}

// ---------------------------------------------------------------------------------------
// UpdateSite
// ---------------------------------------------------------------------------------------

// rule C3: the primary may let the administrative contact manage access (the switch), and
// the other fields of the mask change; fields outside the mask do not.
#[tokio::test]
async fn update_site_changes_the_masked_fields_only() {
    let h = Harness::start().await;
    let site = h
        .create(pb::CreateSiteRequest {
            business_partner_email: "partner@example.com".into(),
            ..site_request("1000001", "2000001", user())
        })
        .await
        .site
        .expect("site");
    let updated = h
        .client()
        .update_site(h.svc(pb::UpdateSiteRequest {
            site: Some(pb::Site {
                site_id: site.site_id.clone(),
                name: " Lyon Confluence ".into(),
                language: "en_GB".into(),
                support_end_date: "2028-12-31".into(),
                admin_may_manage_access: true,
                // Not in the mask: ignored.
                country_code: "DE".into(),
                site_number: "9999999".into(),
                customer_number: "9999999".into(),
                business_partner_email: "ignored@example.com".into(),
                ..Default::default()
            }),
            update_mask: mask(&[
                "name",
                "language",
                "support_end_date",
                "admin_may_manage_access",
            ]),
            etag: site.etag.clone(),
        }))
        .await
        .expect("update site")
        .into_inner()
        .site
        .expect("site");
    assert_eq!(updated.name, "Lyon Confluence");
    assert_eq!(updated.language, "en-GB");
    assert_eq!(updated.support_end_date, "2028-12-31");
    assert!(updated.admin_may_manage_access);
    assert_eq!(updated.country_code, "FR");
    assert_eq!(updated.site_number, "1000001");
    assert_eq!(updated.customer_number, "2000001");
    assert_eq!(updated.business_partner_email, "partner@example.com");
    assert_ne!(updated.etag, site.etag);
    assert_eq!(h.get_site(&site.site_id).await, updated);

    // Clearing optional fields: an empty value in the mask.
    let cleared = h
        .client()
        .update_site(h.svc(pb::UpdateSiteRequest {
            site: Some(pb::Site {
                site_id: site.site_id.clone(),
                admin_may_manage_access: false,
                ..Default::default()
            }),
            update_mask: mask(&[
                "business_partner_email",
                "support_end_date",
                "admin_may_manage_access",
            ]),
            etag: String::new(),
        }))
        .await
        .expect("update site")
        .into_inner()
        .site
        .expect("site");
    assert_eq!(cleared.business_partner_email, "");
    assert_eq!(cleared.support_end_date, "");
    assert!(!cleared.admin_may_manage_access);
    assert_eq!(cleared.name, "Lyon Confluence");
}

// rule C5: S&S cannot be turned on for a site without an STC; once one is named it can.
#[tokio::test]
async fn update_site_turning_support_on_needs_a_site_technical_contact() {
    let h = Harness::start().await;
    let site = h.site("1000001", "2000001", user()).await;
    let turn_on = |etag: &str| {
        h.svc(pb::UpdateSiteRequest {
            site: Some(pb::Site {
                site_id: site.site_id.clone(),
                support_active: true,
                ..Default::default()
            }),
            update_mask: mask(&["support_active"]),
            etag: etag.into(),
        })
    };
    let audit_before = h.audit(&site.site_id).await;
    expect_rule(
        h.client().update_site(turn_on(&site.etag)).await,
        Code::FailedPrecondition,
        "C5",
    );
    // Nothing changed.
    assert_eq!(h.get_site(&site.site_id).await, site);
    assert_eq!(h.audit(&site.site_id).await, audit_before);

    h.assign(&site.site_id, user(), R::SiteTechnical)
        .await
        .expect("assign stc");
    let on = h
        .client()
        .update_site(turn_on(&site.etag))
        .await
        .expect("support on")
        .into_inner()
        .site
        .expect("site");
    assert!(on.support_active);
    // Turning it off needs nothing, and the STC stays.
    let off = h
        .client()
        .update_site(h.svc(pb::UpdateSiteRequest {
            site: Some(pb::Site {
                site_id: site.site_id.clone(),
                support_active: false,
                ..Default::default()
            }),
            update_mask: mask(&["support_active"]),
            etag: on.etag.clone(),
        }))
        .await
        .expect("support off")
        .into_inner()
        .site
        .expect("site");
    assert!(!off.support_active);
    assert_eq!(
        h.contacts(&site.site_id, &[R::SiteTechnical]).await.len(),
        1
    );
}

// rule L1 (no lost update goes unrecorded): a stale etag is refused (Aborted) and changes
// nothing; a malformed one names the field.
#[tokio::test]
async fn update_site_with_a_stale_etag_is_aborted() {
    let h = Harness::start().await;
    let site = h.site("1000001", "2000001", user()).await;
    let rename = |name: &str, etag: &str| {
        h.svc(pb::UpdateSiteRequest {
            site: Some(pb::Site {
                site_id: site.site_id.clone(),
                name: name.into(),
                ..Default::default()
            }),
            update_mask: mask(&["name"]),
            etag: etag.into(),
        })
    };
    let renamed = h
        .client()
        .update_site(rename("First", &site.etag))
        .await
        .expect("first update")
        .into_inner()
        .site
        .expect("site");
    let status = expect_code(
        h.client().update_site(rename("Second", &site.etag)).await,
        Code::Aborted,
    );
    assert!(status.message().contains("etag"), "{status:?}");
    assert_eq!(h.get_site(&site.site_id).await, renamed);
    // The quoted form of the current etag is accepted.
    h.client()
        .update_site(rename("Third", &format!("\"{}\"", renamed.etag)))
        .await
        .expect("quoted etag");
    expect_field(
        h.client().update_site(rename("Fourth", "W/abc")).await,
        "etag",
    );
    assert_eq!(h.get_site(&site.site_id).await.name, "Third");
}

// rule L1 (nothing is recorded for a refused change) and the issue's validation: every bad
// field of UpdateSite is InvalidArgument on that field, and nothing is written.
#[tokio::test]
async fn update_site_rejects_each_bad_field_and_writes_nothing() {
    let h = Harness::start().await;
    let site = h.site("1000001", "2000001", user()).await;
    let audit_before = h.audit(&site.site_id).await;
    let base = pb::Site {
        site_id: site.site_id.clone(),
        name: "Fine".into(),
        language: "fr".into(),
        ..Default::default()
    };
    let cases: Vec<(&str, pb::Site, Vec<&str>)> = vec![
        (
            "site.site_id",
            pb::Site {
                site_id: "nope".into(),
                ..base.clone()
            },
            vec!["name"],
        ),
        ("update_mask", base.clone(), vec![]),
        ("update_mask", base.clone(), vec!["site_number"]),
        ("update_mask", base.clone(), vec!["name", "country_code"]),
        (
            "site.name",
            pb::Site {
                name: "  ".into(),
                ..base.clone()
            },
            vec!["name"],
        ),
        (
            "site.name",
            pb::Site {
                name: "x".repeat(201),
                ..base.clone()
            },
            vec!["name"],
        ),
        (
            "site.name",
            pb::Site {
                name: "tab\there".into(),
                ..base.clone()
            },
            vec!["name"],
        ),
        (
            "site.language",
            pb::Site {
                language: "french!".into(),
                ..base.clone()
            },
            vec!["language"],
        ),
        (
            "site.language",
            pb::Site {
                language: String::new(),
                ..base.clone()
            },
            vec!["language"],
        ),
        (
            "site.support_end_date",
            pb::Site {
                support_end_date: "31/12/2027".into(),
                ..base.clone()
            },
            vec!["support_end_date"],
        ),
        (
            "site.business_partner_email",
            pb::Site {
                business_partner_email: "partner.example.com".into(),
                ..base.clone()
            },
            vec!["business_partner_email"],
        ),
    ];
    for (field, bad_site, paths) in cases {
        expect_field(
            h.client()
                .update_site(h.svc(pb::UpdateSiteRequest {
                    site: Some(bad_site),
                    update_mask: mask(&paths),
                    etag: site.etag.clone(),
                }))
                .await,
            field,
        );
    }
    expect_field(
        h.client()
            .update_site(h.svc(pb::UpdateSiteRequest {
                site: None,
                update_mask: mask(&["name"]),
                etag: String::new(),
            }))
            .await,
        "site",
    );
    // A good field beside a bad one is not written either.
    expect_field(
        h.client()
            .update_site(h.svc(pb::UpdateSiteRequest {
                site: Some(pb::Site {
                    name: "Would be fine".into(),
                    language: "??".into(),
                    ..base.clone()
                }),
                update_mask: mask(&["name", "language"]),
                etag: site.etag.clone(),
            }))
            .await,
        "site.language",
    );
    assert_eq!(h.get_site(&site.site_id).await, site);
    assert_eq!(h.audit(&site.site_id).await, audit_before);
    // Unknown site.
    expect_code(
        h.client()
            .update_site(h.svc(pb::UpdateSiteRequest {
                site: Some(pb::Site {
                    site_id: Uuid::new_v4().to_string(),
                    ..base.clone()
                }),
                update_mask: mask(&["name"]),
                etag: String::new(),
            }))
            .await,
        Code::NotFound,
    );
}

// ---------------------------------------------------------------------------------------
// AssignContact
// ---------------------------------------------------------------------------------------

// rules C3, C5, C6: the single-holder roles refuse a second holder, citing the rule that
// limits them; the first holder keeps the role.
#[tokio::test]
async fn single_holder_roles_refuse_a_second_holder() {
    let h = Harness::start().await;
    let site = h.site("1000001", "2000001", user()).await;
    for (single, rule) in [
        (R::Administrative, "C3"),
        (R::SiteTechnical, "C5"),
        (R::Renewal, "C6"),
        (R::Shipping, "C6"),
        (R::Billing, "C6"),
    ] {
        let holder = user();
        let first = h
            .assign(&site.site_id, holder, single)
            .await
            .expect("first");
        assert_eq!(role(&first), single);
        expect_rule(
            h.assign(&site.site_id, user(), single).await,
            Code::FailedPrecondition,
            rule,
        );
        let holders = h.contacts(&site.site_id, &[single]).await;
        assert_eq!(holders.len(), 1, "{single:?}");
        assert_eq!(holders[0].user_id, holder.to_string());
    }
}

// rule C6: at most four SECONDARY contacts; any number of site users.
#[tokio::test]
async fn four_secondary_contacts_and_any_number_of_site_users() {
    let h = Harness::start().await;
    let site = h.site("1000001", "2000001", user()).await;
    for _ in 0..4 {
        h.assign(&site.site_id, user(), R::Secondary)
            .await
            .expect("secondary");
    }
    expect_rule(
        h.assign(&site.site_id, user(), R::Secondary).await,
        Code::FailedPrecondition,
        "C6",
    );
    assert_eq!(h.contacts(&site.site_id, &[R::Secondary]).await.len(), 4);
    for _ in 0..12 {
        h.assign(&site.site_id, user(), R::SiteUser)
            .await
            .expect("site user");
    }
    assert_eq!(h.contacts(&site.site_id, &[R::SiteUser]).await.len(), 12);
}

// rule C8: PRIMARY is never assigned; it changes only by transfer.
#[tokio::test]
async fn assigning_primary_is_refused_citing_c8() {
    let h = Harness::start().await;
    let primary = user();
    let site = h.site("1000001", "2000001", primary).await;
    expect_rule(
        h.assign(&site.site_id, user(), R::Primary).await,
        Code::FailedPrecondition,
        "C8",
    );
    expect_rule(
        h.assign(&site.site_id, primary, R::Primary).await,
        Code::FailedPrecondition,
        "C8",
    );
    let primaries = h.contacts(&site.site_id, &[R::Primary]).await;
    assert_eq!(primaries.len(), 1);
    assert_eq!(primaries[0].user_id, primary.to_string());
}

// C6 and the vocabulary: one user may hold several roles on one site (and roles on many
// sites), but not the same role twice.
#[tokio::test]
async fn one_user_holds_several_roles_but_each_role_once() {
    let h = Harness::start().await;
    let primary = user();
    let site = h.site("1000001", "2000001", primary).await;
    let person = user();
    for r in [R::Administrative, R::Renewal, R::Secondary, R::SiteUser] {
        h.assign(&site.site_id, person, r).await.expect("role");
    }
    // The primary may also hold other roles.
    h.assign(&site.site_id, primary, R::Billing)
        .await
        .expect("primary as billing");
    let status = expect_code(
        h.assign(&site.site_id, person, R::Secondary).await,
        Code::AlreadyExists,
    );
    assert!(status.message().contains("SECONDARY"), "{status:?}");
    expect_code(
        h.assign(&site.site_id, person, R::SiteUser).await,
        Code::AlreadyExists,
    );
    // A user already holding a single-holder role is told it already holds it.
    expect_code(
        h.assign(&site.site_id, person, R::Administrative).await,
        Code::AlreadyExists,
    );
    let roles: Vec<R> = h
        .contacts(&site.site_id, &[])
        .await
        .iter()
        .filter(|c| c.user_id == person.to_string())
        .map(role)
        .collect();
    assert_eq!(
        roles,
        [R::Administrative, R::Secondary, R::Renewal, R::SiteUser]
    );
    // Unknown site.
    expect_code(
        h.assign(&Uuid::new_v4().to_string(), person, R::SiteUser)
            .await,
        Code::NotFound,
    );
}

// rules C6, C9, L1: AssignContact validates role, ids and details (E.164 phone, job title
// length, notification e-mail); a refused request writes no contact and no audit record.
#[tokio::test]
async fn assign_contact_rejects_each_bad_field_and_writes_nothing() {
    let h = Harness::start().await;
    let site = h.site("1000001", "2000001", user()).await;
    let contacts_before = h.contacts(&site.site_id, &[]).await;
    let audit_before = h.audit(&site.site_id).await;
    let valid = pb::AssignContactRequest {
        site_id: site.site_id.clone(),
        user_id: user().to_string(),
        role: R::SiteUser as i32,
        details: Some(pb::ContactDetails {
            phone: "+33 1 23 45 67 89".into(),
            job_title: "Buyer".into(),
            notification_email: "buyer@example.com".into(),
        }),
    };
    let details = |phone: &str, job_title: &str, email: &str| {
        Some(pb::ContactDetails {
            phone: phone.into(),
            job_title: job_title.into(),
            notification_email: email.into(),
        })
    };
    let cases: Vec<(&str, pb::AssignContactRequest)> = vec![
        (
            "site_id",
            pb::AssignContactRequest {
                site_id: "site".into(),
                ..valid.clone()
            },
        ),
        (
            "user_id",
            pb::AssignContactRequest {
                user_id: String::new(),
                ..valid.clone()
            },
        ),
        (
            "user_id",
            pb::AssignContactRequest {
                user_id: "123".into(),
                ..valid.clone()
            },
        ),
        (
            "role",
            pb::AssignContactRequest {
                role: R::Unspecified as i32,
                ..valid.clone()
            },
        ),
        (
            "role",
            pb::AssignContactRequest {
                role: 42,
                ..valid.clone()
            },
        ),
        (
            "details.phone",
            pb::AssignContactRequest {
                details: details("01 23 45 67 89", "", ""),
                ..valid.clone()
            },
        ),
        (
            "details.phone",
            pb::AssignContactRequest {
                details: details("+33 1 2x 45 67 89", "", ""),
                ..valid.clone()
            },
        ),
        (
            "details.phone",
            pb::AssignContactRequest {
                details: details("+1234567890123456", "", ""),
                ..valid.clone()
            },
        ),
        (
            "details.job_title",
            pb::AssignContactRequest {
                details: details("", &"j".repeat(101), ""),
                ..valid.clone()
            },
        ),
        (
            "details.job_title",
            pb::AssignContactRequest {
                details: details("", "line\nbreak", ""),
                ..valid.clone()
            },
        ),
        (
            "details.notification_email",
            pb::AssignContactRequest {
                details: details("", "", "no-at-sign"),
                ..valid.clone()
            },
        ),
        (
            "details.notification_email",
            pb::AssignContactRequest {
                details: details("", "", &format!("{}@example.com", "a".repeat(250))),
                ..valid.clone()
            },
        ),
    ];
    for (field, request) in cases {
        expect_field(h.client().assign_contact(h.svc(request)).await, field);
    }
    // Every bad field of one request is reported.
    let status = expect_code(
        h.client()
            .assign_contact(h.svc(pb::AssignContactRequest {
                user_id: "x".into(),
                details: details("123", "", "y"),
                ..valid.clone()
            }))
            .await,
        Code::InvalidArgument,
    );
    let fields: Vec<String> = kc_runtime::error::field_violations(&status)
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert_eq!(
        fields,
        ["user_id", "details.phone", "details.notification_email"]
    );
    assert_eq!(h.contacts(&site.site_id, &[]).await, contacts_before);
    assert_eq!(h.audit(&site.site_id).await, audit_before);
    // Limits are inclusive: 100 characters of job title is fine.
    let contact = h
        .client()
        .assign_contact(h.svc(pb::AssignContactRequest {
            details: details("", &"é".repeat(100), ""),
            ..valid.clone()
        }))
        .await
        .expect("valid assignment")
        .into_inner()
        .contact
        .expect("contact");
    assert_eq!(contact.details.expect("details").job_title, "é".repeat(100));
}

// ---------------------------------------------------------------------------------------
// UpdateContact, RemoveContact
// ---------------------------------------------------------------------------------------

// rule C9: a contact's notification e-mail may differ from its login e-mail; phones are
// stored in E.164 form.
#[tokio::test]
async fn update_contact_replaces_details_normalising_the_phone() {
    let h = Harness::start().await;
    let site = h.site("1000001", "2000001", user()).await;
    let contact = h
        .assign(&site.site_id, user(), R::Administrative)
        .await
        .expect("assign");
    let update = |details: Option<pb::ContactDetails>, etag: &str| {
        h.svc(pb::UpdateContactRequest {
            contact_id: contact.contact_id.clone(),
            details,
            etag: etag.into(),
            site_id: String::new(),
        })
    };
    let updated = h
        .client()
        .update_contact(update(
            Some(pb::ContactDetails {
                phone: "+33 1 23 45 67 89".into(),
                job_title: " Head of purchasing ".into(),
                notification_email: "Purchasing@Example.FR".into(),
            }),
            &contact.etag,
        ))
        .await
        .expect("update contact")
        .into_inner()
        .contact
        .expect("contact");
    let details = updated.details.clone().expect("details");
    assert_eq!(details.phone, "+33123456789");
    assert_eq!(details.job_title, "Head of purchasing");
    // rule C11: the new notification e-mail waits for its owner's confirmation.
    assert_eq!(details.notification_email, "");
    assert_eq!(updated.pending_notification_email, "purchasing@example.fr");
    assert_ne!(updated.etag, contact.etag);
    assert_eq!(updated.role, contact.role);
    assert_eq!(updated.user_id, contact.user_id);
    let updated = h.confirm_email(&updated).await;
    // rule C9: once confirmed, notices go to the notification e-mail.
    let recipients = h
        .client()
        .resolve_recipients(h.svc(pb::ResolveRecipientsRequest {
            site_id: site.site_id.clone(),
            purpose: pb::NoticePurpose::UpdateAvailable as i32,
        }))
        .await
        .expect("resolve")
        .into_inner()
        .recipients;
    assert_eq!(recipients.len(), 1);
    assert_eq!(recipients[0].notification_email, "purchasing@example.fr");
    // A stale etag is refused and changes nothing.
    expect_code(
        h.client().update_contact(update(None, &contact.etag)).await,
        Code::Aborted,
    );
    expect_field(h.client().update_contact(update(None, "v2")).await, "etag");
    // Bad details name their field and write nothing.
    for (field, details) in [
        (
            "details.phone",
            pb::ContactDetails {
                phone: "0033".into(),
                ..Default::default()
            },
        ),
        (
            "details.job_title",
            pb::ContactDetails {
                job_title: "t".repeat(101),
                ..Default::default()
            },
        ),
        (
            "details.notification_email",
            pb::ContactDetails {
                notification_email: "a@b".into(),
                ..Default::default()
            },
        ),
    ] {
        expect_field(
            h.client()
                .update_contact(update(Some(details), &updated.etag))
                .await,
            field,
        );
    }
    let stored = h.contacts(&site.site_id, &[R::Administrative]).await;
    assert_eq!(stored, std::slice::from_ref(&updated));
    // All three fields are replaced: no details clears them (notices then go to the login
    // e-mail).
    let cleared = h
        .client()
        .update_contact(update(None, &updated.etag))
        .await
        .expect("clear")
        .into_inner()
        .contact
        .expect("contact");
    assert_eq!(
        cleared.details.expect("details"),
        pb::ContactDetails::default()
    );
    expect_code(
        h.client()
            .update_contact(h.svc(pb::UpdateContactRequest {
                contact_id: Uuid::new_v4().to_string(),
                details: None,
                etag: String::new(),
                site_id: String::new(),
            }))
            .await,
        Code::NotFound,
    );
    expect_field(
        h.client()
            .update_contact(h.svc(pb::UpdateContactRequest {
                contact_id: "c-1".into(),
                details: None,
                etag: String::new(),
                site_id: String::new(),
            }))
            .await,
        "contact_id",
    );
}

// rule C1: the primary contact cannot be removed.
#[tokio::test]
async fn the_primary_contact_cannot_be_removed() {
    let h = Harness::start().await;
    let created = h.create(site_request("1000001", "2000001", user())).await;
    let site = created.site.expect("site");
    let primary = &created.contacts[0];
    expect_rule(
        h.client()
            .remove_contact(h.op(pb::RemoveContactRequest {
                contact_id: primary.contact_id.clone(),
                etag: primary.etag.clone(),
                site_id: String::new(),
            }))
            .await,
        Code::FailedPrecondition,
        "C1",
    );
    assert_eq!(
        h.contacts(&site.site_id, &[R::Primary]).await,
        std::slice::from_ref(primary)
    );
    assert_eq!(h.audit(&site.site_id).await.len(), 1);
}

// rule C5: the STC of a site with active S&S cannot be removed (only replaced); without
// S&S it can.
#[tokio::test]
async fn the_stc_of_a_site_with_active_support_cannot_be_removed() {
    let h = Harness::start().await;
    let created = h.supported_site("1000001", "2000001", user(), user()).await;
    let site = created.site.expect("site");
    let stc = created.contacts[1].clone();
    assert_eq!(role(&stc), R::SiteTechnical);
    let remove = |etag: &str| {
        h.op(pb::RemoveContactRequest {
            contact_id: stc.contact_id.clone(),
            etag: etag.into(),
            site_id: String::new(),
        })
    };
    expect_rule(
        h.client().remove_contact(remove(&stc.etag)).await,
        Code::FailedPrecondition,
        "C5",
    );
    assert_eq!(
        h.contacts(&site.site_id, &[R::SiteTechnical]).await,
        std::slice::from_ref(&stc)
    );
    // Once S&S is off, the STC may go.
    h.client()
        .update_site(h.svc(pb::UpdateSiteRequest {
            site: Some(pb::Site {
                site_id: site.site_id.clone(),
                support_active: false,
                ..Default::default()
            }),
            update_mask: mask(&["support_active"]),
            etag: String::new(),
        }))
        .await
        .expect("support off");
    let removed = h
        .client()
        .remove_contact(remove(&stc.etag))
        .await
        .expect("remove stc")
        .into_inner()
        .contact
        .expect("contact");
    assert_eq!(removed, stc);
    assert!(
        h.contacts(&site.site_id, &[R::SiteTechnical])
            .await
            .is_empty()
    );
}

// rule C6 (roles are held one by one): removing one role leaves the user's others; the
// contact's etag guards the removal.
#[tokio::test]
async fn remove_contact_takes_one_role_away_honouring_the_etag() {
    let h = Harness::start().await;
    let site = h.site("1000001", "2000001", user()).await;
    let person = user();
    let secondary = h
        .assign(&site.site_id, person, R::Secondary)
        .await
        .expect("secondary");
    let billing = h
        .assign(&site.site_id, person, R::Billing)
        .await
        .expect("billing");
    // Make the etag move.
    let secondary_v2 = h
        .client()
        .update_contact(h.svc(pb::UpdateContactRequest {
            contact_id: secondary.contact_id.clone(),
            details: Some(pb::ContactDetails {
                job_title: "Buyer".into(),
                ..Default::default()
            }),
            etag: secondary.etag.clone(),
            site_id: String::new(),
        }))
        .await
        .expect("update")
        .into_inner()
        .contact
        .expect("contact");
    let remove = |contact_id: &str, etag: &str| {
        h.op(pb::RemoveContactRequest {
            contact_id: contact_id.into(),
            etag: etag.into(),
            site_id: String::new(),
        })
    };
    expect_code(
        h.client()
            .remove_contact(remove(&secondary.contact_id, &secondary.etag))
            .await,
        Code::Aborted,
    );
    expect_field(
        h.client()
            .remove_contact(remove(&secondary.contact_id, "x"))
            .await,
        "etag",
    );
    expect_field(
        h.client().remove_contact(remove("nope", "")).await,
        "contact_id",
    );
    assert_eq!(h.contacts(&site.site_id, &[]).await.len(), 3);
    let removed = h
        .client()
        .remove_contact(remove(&secondary.contact_id, &secondary_v2.etag))
        .await
        .expect("remove")
        .into_inner()
        .contact
        .expect("contact");
    assert_eq!(removed, secondary_v2);
    // The user keeps its other role.
    let left: Vec<R> = h
        .contacts(&site.site_id, &[])
        .await
        .iter()
        .map(role)
        .collect();
    assert_eq!(left, [R::Primary, R::Billing]);
    assert_eq!(
        h.contacts(&site.site_id, &[R::Billing]).await,
        std::slice::from_ref(&billing)
    );
    // Gone: a second removal is NotFound.
    expect_code(
        h.client()
            .remove_contact(remove(&secondary.contact_id, ""))
            .await,
        Code::NotFound,
    );
}

// Object-level safety for the gateway: a change scoped by `site_id` reaches only a contact
// of that site; another site's contact is NOT_FOUND and stays unchanged.
#[tokio::test]
async fn a_contact_change_scoped_to_a_site_never_reaches_another_sites_contact() {
    let h = Harness::start().await;
    let mine = h.site("1000001", "2000001", user()).await;
    let theirs = h.site("1000002", "2000002", user()).await;
    let target = h
        .assign(&theirs.site_id, user(), R::Secondary)
        .await
        .expect("secondary of the other site");
    let new_details = Some(pb::ContactDetails {
        job_title: "Intruder".into(),
        ..Default::default()
    });
    expect_code(
        h.client()
            .update_contact(h.svc(pb::UpdateContactRequest {
                contact_id: target.contact_id.clone(),
                details: new_details.clone(),
                etag: String::new(),
                site_id: mine.site_id.clone(),
            }))
            .await,
        Code::NotFound,
    );
    expect_code(
        h.client()
            .remove_contact(h.op(pb::RemoveContactRequest {
                contact_id: target.contact_id.clone(),
                etag: String::new(),
                site_id: mine.site_id.clone(),
            }))
            .await,
        Code::NotFound,
    );
    expect_field(
        h.client()
            .remove_contact(h.op(pb::RemoveContactRequest {
                contact_id: target.contact_id.clone(),
                etag: String::new(),
                site_id: "not-an-id".into(),
            }))
            .await,
        "site_id",
    );
    // Nothing changed on the other site.
    assert_eq!(
        h.contacts(&theirs.site_id, &[R::Secondary]).await,
        std::slice::from_ref(&target)
    );
    assert_eq!(h.contacts(&mine.site_id, &[]).await.len(), 1);

    // Scoped to its own site, the same changes go through.
    let updated = h
        .client()
        .update_contact(h.svc(pb::UpdateContactRequest {
            contact_id: target.contact_id.clone(),
            details: new_details,
            etag: target.etag.clone(),
            site_id: theirs.site_id.clone(),
        }))
        .await
        .expect("update in its own site")
        .into_inner()
        .contact
        .expect("contact");
    assert_eq!(updated.details.expect("details").job_title, "Intruder");
    h.client()
        .remove_contact(h.op(pb::RemoveContactRequest {
            contact_id: target.contact_id.clone(),
            etag: updated.etag.clone(),
            site_id: theirs.site_id.clone(),
        }))
        .await
        .expect("remove in its own site");
    assert!(
        h.contacts(&theirs.site_id, &[R::Secondary])
            .await
            .is_empty()
    );
}

// ---------------------------------------------------------------------------------------
// ReplaceContact
// ---------------------------------------------------------------------------------------

// rule C5: ReplaceContact is the way to change the STC of a site with active S&S; the site
// is never without one.
#[tokio::test]
async fn replace_contact_swaps_the_stc_of_a_site_with_active_support() {
    let h = Harness::start().await;
    let (primary, old_stc, new_stc) = (user(), user(), user());
    let created = h
        .supported_site("1000001", "2000001", primary, old_stc)
        .await;
    let site = created.site.expect("site");
    // The other ways are closed: a second STC cannot be assigned, the STC cannot be removed.
    expect_rule(
        h.assign(&site.site_id, new_stc, R::SiteTechnical).await,
        Code::FailedPrecondition,
        "C5",
    );
    expect_rule(
        h.client()
            .remove_contact(h.op(pb::RemoveContactRequest {
                contact_id: created.contacts[1].contact_id.clone(),
                etag: String::new(),
                site_id: String::new(),
            }))
            .await,
        Code::FailedPrecondition,
        "C5",
    );
    let response = h
        .client()
        .replace_contact(h.for_user(
            primary,
            pb::ReplaceContactRequest {
                site_id: site.site_id.clone(),
                role: R::SiteTechnical as i32,
                new_user_id: new_stc.to_string(),
                details: Some(pb::ContactDetails {
                    phone: "0044 (20) 7946-0958".into(),
                    ..Default::default()
                }),
            },
        ))
        .await
        .expect("replace")
        .into_inner();
    let contact = response.contact.expect("contact");
    assert_eq!(role(&contact), R::SiteTechnical);
    assert_eq!(contact.user_id, new_stc.to_string());
    assert_eq!(
        contact.details.as_ref().expect("details").phone,
        "+442079460958"
    );
    assert_eq!(response.replaced.expect("replaced"), created.contacts[1]);
    assert_eq!(
        h.contacts(&site.site_id, &[R::SiteTechnical]).await,
        std::slice::from_ref(&contact)
    );
    assert!(h.get_site(&site.site_id).await.support_active);
    // Replacing the holder by itself is AlreadyExists.
    expect_code(
        h.client()
            .replace_contact(h.op(pb::ReplaceContactRequest {
                site_id: site.site_id.clone(),
                role: R::SiteTechnical as i32,
                new_user_id: new_stc.to_string(),
                details: None,
            }))
            .await,
        Code::AlreadyExists,
    );
}

// rules C3, C6, C8: ReplaceContact swaps any single-holder role, assigns it when nobody holds it, and refuses
// PRIMARY (C8) and the multi-holder roles (C6).
#[tokio::test]
async fn replace_contact_swaps_single_holder_roles_only() {
    let h = Harness::start().await;
    let site = h.site("1000001", "2000001", user()).await;
    let replace = |r: R, new_user: Uuid| {
        h.op(pb::ReplaceContactRequest {
            site_id: site.site_id.clone(),
            role: r as i32,
            new_user_id: new_user.to_string(),
            details: None,
        })
    };
    for r in [R::Administrative, R::Renewal, R::Shipping, R::Billing] {
        let (first, second) = (user(), user());
        // Nobody holds it yet: assigned.
        let assigned = h
            .client()
            .replace_contact(replace(r, first))
            .await
            .expect("assign by replace")
            .into_inner();
        assert!(assigned.replaced.is_none());
        let swapped = h
            .client()
            .replace_contact(replace(r, second))
            .await
            .expect("swap")
            .into_inner();
        assert_eq!(
            swapped.replaced.expect("replaced").user_id,
            first.to_string()
        );
        let holders = h.contacts(&site.site_id, &[r]).await;
        assert_eq!(holders.len(), 1);
        assert_eq!(holders[0].user_id, second.to_string());
    }
    // rule C8: the primary changes only by transfer.
    expect_rule(
        h.client()
            .replace_contact(replace(R::Primary, user()))
            .await,
        Code::FailedPrecondition,
        "C8",
    );
    // rule C6: SECONDARY and SITE_USER have several holders: nothing to replace.
    for r in [R::Secondary, R::SiteUser] {
        expect_rule(
            h.client().replace_contact(replace(r, user())).await,
            Code::FailedPrecondition,
            "C6",
        );
    }
    expect_field(
        h.client()
            .replace_contact(h.svc(pb::ReplaceContactRequest {
                site_id: site.site_id.clone(),
                role: 0,
                new_user_id: user().to_string(),
                details: None,
            }))
            .await,
        "role",
    );
    expect_field(
        h.client()
            .replace_contact(h.svc(pb::ReplaceContactRequest {
                site_id: site.site_id.clone(),
                role: R::Billing as i32,
                new_user_id: "someone".into(),
                details: None,
            }))
            .await,
        "new_user_id",
    );
    expect_code(
        h.client()
            .replace_contact(h.svc(pb::ReplaceContactRequest {
                site_id: Uuid::new_v4().to_string(),
                role: R::Billing as i32,
                new_user_id: user().to_string(),
                details: None,
            }))
            .await,
        Code::NotFound,
    );
}

// ---------------------------------------------------------------------------------------
// TransferPrimaryContact
// ---------------------------------------------------------------------------------------

// rule C8: the primary changes by transfer; the old primary stays as a SITE_USER by default
// or in the role the request names; the site's etag guards the transfer.
#[tokio::test]
async fn transfer_primary_keeps_the_old_primary_as_site_user_or_named_role() {
    let h = Harness::start().await;
    let (first, second, third) = (user(), user(), user());
    let site = h.site("1000001", "2000001", first).await;
    let transfer = |new_user: Uuid, previous_role: R, etag: &str| {
        h.op(pb::TransferPrimaryContactRequest {
            site_id: site.site_id.clone(),
            new_user_id: new_user.to_string(),
            etag: etag.into(),
            previous_primary_role: previous_role as i32,
        })
    };
    let response = h
        .client()
        .transfer_primary_contact(transfer(second, R::Unspecified, &site.etag))
        .await
        .expect("transfer")
        .into_inner();
    let after = response.site.expect("site");
    assert_eq!(after.primary_user_id, second.to_string());
    assert_ne!(after.etag, site.etag);
    let primary = response.primary.expect("primary");
    assert_eq!(role(&primary), R::Primary);
    assert_eq!(primary.user_id, second.to_string());
    let previous = response.previous_primary.expect("previous primary");
    assert_eq!(role(&previous), R::SiteUser);
    assert_eq!(previous.user_id, first.to_string());
    assert_eq!(h.get_site(&site.site_id).await, after);

    // The old etag is stale now.
    expect_code(
        h.client()
            .transfer_primary_contact(transfer(third, R::Unspecified, &site.etag))
            .await,
        Code::Aborted,
    );
    // Transferring to the current primary: it already holds the role.
    expect_code(
        h.client()
            .transfer_primary_contact(transfer(second, R::Unspecified, &after.etag))
            .await,
        Code::AlreadyExists,
    );
    // The old primary may keep another role; PRIMARY itself is refused (C8).
    expect_rule(
        h.client()
            .transfer_primary_contact(transfer(third, R::Primary, &after.etag))
            .await,
        Code::FailedPrecondition,
        "C8",
    );
    // rule C6 applies to the role the old primary keeps: BILLING is taken.
    let billing = user();
    h.assign(&site.site_id, billing, R::Billing)
        .await
        .expect("billing");
    expect_rule(
        h.client()
            .transfer_primary_contact(transfer(third, R::Billing, &after.etag))
            .await,
        Code::FailedPrecondition,
        "C6",
    );
    // Nothing changed by the refusals.
    assert_eq!(h.get_site(&site.site_id).await, after);
    assert_eq!(
        h.contacts(&site.site_id, &[R::Primary]).await[0].user_id,
        second.to_string()
    );

    let response = h
        .client()
        .transfer_primary_contact(transfer(third, R::Administrative, &after.etag))
        .await
        .expect("transfer with a named role")
        .into_inner();
    let previous = response.previous_primary.expect("previous primary");
    assert_eq!(role(&previous), R::Administrative);
    assert_eq!(previous.user_id, second.to_string());
    let roles: Vec<(R, String)> = h
        .contacts(&site.site_id, &[])
        .await
        .iter()
        .map(|c| (role(c), c.user_id.clone()))
        .collect();
    assert!(roles.contains(&(R::Primary, third.to_string())));
    assert!(roles.contains(&(R::Administrative, second.to_string())));
    assert!(roles.contains(&(R::SiteUser, first.to_string())));
    assert_eq!(roles.iter().filter(|(r, _)| *r == R::Primary).count(), 1);

    // An old primary that already holds the role keeps it: previous_primary is absent.
    h.assign(&site.site_id, third, R::SiteUser)
        .await
        .expect("the primary also a site user");
    let site_now = h.get_site(&site.site_id).await;
    let response = h
        .client()
        .transfer_primary_contact(transfer(first, R::Unspecified, &site_now.etag))
        .await
        .expect("transfer back")
        .into_inner();
    assert_eq!(response.previous_primary, None);
    let mut roles: Vec<(R, String)> = h
        .contacts(&site.site_id, &[])
        .await
        .iter()
        .map(|c| (role(c), c.user_id.clone()))
        .collect();
    roles.sort();
    let mut expected = vec![
        (R::Primary, first.to_string()),
        (R::Administrative, second.to_string()),
        (R::Billing, billing.to_string()),
        (R::SiteUser, first.to_string()),
        (R::SiteUser, third.to_string()),
    ];
    expected.sort();
    assert_eq!(roles, expected);
}

// rule C8: a malformed transfer request names its field and changes nothing.
#[tokio::test]
async fn transfer_primary_rejects_bad_fields() {
    let h = Harness::start().await;
    let site = h.site("1000001", "2000001", user()).await;
    let valid = pb::TransferPrimaryContactRequest {
        site_id: site.site_id.clone(),
        new_user_id: user().to_string(),
        etag: site.etag.clone(),
        previous_primary_role: 0,
    };
    for (field, request) in [
        (
            "site_id",
            pb::TransferPrimaryContactRequest {
                site_id: "s".into(),
                ..valid.clone()
            },
        ),
        (
            "new_user_id",
            pb::TransferPrimaryContactRequest {
                new_user_id: String::new(),
                ..valid.clone()
            },
        ),
        (
            "previous_primary_role",
            pb::TransferPrimaryContactRequest {
                previous_primary_role: 99,
                ..valid.clone()
            },
        ),
        (
            "etag",
            pb::TransferPrimaryContactRequest {
                etag: "one".into(),
                ..valid.clone()
            },
        ),
    ] {
        expect_field(
            h.client().transfer_primary_contact(h.op(request)).await,
            field,
        );
    }
    assert_eq!(h.get_site(&site.site_id).await, site);
    expect_code(
        h.client()
            .transfer_primary_contact(h.op(pb::TransferPrimaryContactRequest {
                site_id: Uuid::new_v4().to_string(),
                etag: String::new(),
                ..valid.clone()
            }))
            .await,
        Code::NotFound,
    );
}

// ---------------------------------------------------------------------------------------
// ListSiteContacts, ListUserContacts
// ---------------------------------------------------------------------------------------

// rule C7: "show all contacts" lists every contact of a site with its roles, PRIMARY
// first, then by role and creation; a role filter narrows it.
#[tokio::test]
async fn list_site_contacts_shows_every_role_primary_first() {
    let h = Harness::start().await;
    let (primary, person) = (user(), user());
    let site = h.site("1000001", "2000001", primary).await;
    // Assigned in an order unlike the display order.
    let assigned = [
        (R::SiteUser, user()),
        (R::Billing, person),
        (R::Secondary, user()),
        (R::SiteUser, person),
        (R::Administrative, user()),
        (R::Secondary, person),
        (R::Shipping, user()),
        (R::SiteTechnical, user()),
        (R::Renewal, user()),
    ];
    for (r, u) in assigned {
        h.assign(&site.site_id, u, r).await.expect("assign");
    }
    let all = h.contacts(&site.site_id, &[]).await;
    assert_eq!(all.len(), 10);
    let roles: Vec<R> = all.iter().map(role).collect();
    assert_eq!(
        roles,
        [
            R::Primary,
            R::Administrative,
            R::SiteTechnical,
            R::Secondary,
            R::Secondary,
            R::Renewal,
            R::Shipping,
            R::Billing,
            R::SiteUser,
            R::SiteUser
        ]
    );
    assert_eq!(all[0].user_id, primary.to_string());
    // Within a role, creation order.
    assert_eq!(all[9].user_id, person.to_string());
    assert!(all.iter().all(|c| c.site_id == site.site_id));
    // Role filter.
    let filtered = h.contacts(&site.site_id, &[R::SiteUser, R::Primary]).await;
    let roles: Vec<R> = filtered.iter().map(role).collect();
    assert_eq!(roles, [R::Primary, R::SiteUser, R::SiteUser]);
    // Pages of 3 give the same list.
    let mut paged = Vec::new();
    let mut token = String::new();
    loop {
        let page = h
            .client()
            .list_site_contacts(h.svc(pb::ListSiteContactsRequest {
                site_id: site.site_id.clone(),
                roles: vec![],
                page_size: 3,
                page_token: token,
            }))
            .await
            .expect("page")
            .into_inner();
        assert!(page.contacts.len() <= 3);
        paged.extend(page.contacts);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(paged, all);
    // Bad arguments.
    let request = |site_id: &str, roles: Vec<i32>, size: i32, token: &str| {
        h.svc(pb::ListSiteContactsRequest {
            site_id: site_id.into(),
            roles,
            page_size: size,
            page_token: token.into(),
        })
    };
    let mut client = h.client();
    expect_field(
        client.list_site_contacts(request("x", vec![], 0, "")).await,
        "site_id",
    );
    expect_field(
        client
            .list_site_contacts(request(&site.site_id, vec![0], 0, ""))
            .await,
        "roles",
    );
    expect_field(
        client
            .list_site_contacts(request(&site.site_id, vec![], 1001, ""))
            .await,
        "page_size",
    );
    expect_field(
        client
            .list_site_contacts(request(&site.site_id, vec![], 0, "bm90IGEgdG9rZW4"))
            .await,
        "page_token",
    );
    expect_code(
        client
            .list_site_contacts(request(&Uuid::new_v4().to_string(), vec![], 0, ""))
            .await,
        Code::NotFound,
    );
}

// rule C6 and the vocabulary: one user may hold several roles on one site and roles on
// many sites; ListUserContacts shows each with its site.
#[tokio::test]
async fn list_user_contacts_lists_every_site_and_role_of_a_person() {
    let h = Harness::start().await;
    let person = user();
    let first = h.site("1000001", "2000001", person).await;
    let second = h.site("1000002", "2000002", user()).await;
    h.assign(&first.site_id, person, R::Billing)
        .await
        .expect("billing");
    h.assign(&second.site_id, person, R::SiteTechnical)
        .await
        .expect("stc");
    h.assign(&second.site_id, user(), R::SiteUser)
        .await
        .expect("someone else");
    let list = |size: i32, token: String| {
        let request = h.svc(pb::ListUserContactsRequest {
            user_id: person.to_string(),
            page_size: size,
            page_token: token,
        });
        let mut client = h.client();
        async move {
            client
                .list_user_contacts(request)
                .await
                .expect("list user contacts")
                .into_inner()
        }
    };
    let all = list(0, String::new()).await;
    assert!(all.next_page_token.is_empty());
    let mut held: Vec<(String, R)> = all
        .contacts
        .iter()
        .map(|uc| {
            let contact = uc.contact.as_ref().expect("contact");
            let site = uc.site.as_ref().expect("site");
            assert_eq!(contact.user_id, person.to_string());
            assert_eq!(contact.site_id, site.site_id);
            (site.site_number.clone(), role(contact))
        })
        .collect();
    held.sort_by_key(|(number, r)| (number.clone(), *r as i32));
    assert_eq!(
        held,
        [
            ("1000001".to_owned(), R::Primary),
            ("1000001".to_owned(), R::Billing),
            ("1000002".to_owned(), R::SiteTechnical)
        ]
    );
    // Pages of one give the same contacts.
    let mut paged = Vec::new();
    let mut token = String::new();
    loop {
        let page = list(1, token).await;
        assert!(page.contacts.len() <= 1);
        paged.extend(page.contacts);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(paged, all.contacts);
    // Someone without roles has none.
    let nobody = h
        .client()
        .list_user_contacts(h.svc(pb::ListUserContactsRequest {
            user_id: user().to_string(),
            page_size: 0,
            page_token: String::new(),
        }))
        .await
        .expect("list")
        .into_inner();
    assert!(nobody.contacts.is_empty());
    for (field, request) in [
        (
            "user_id",
            pb::ListUserContactsRequest {
                user_id: "me".into(),
                ..Default::default()
            },
        ),
        (
            "page_size",
            pb::ListUserContactsRequest {
                user_id: person.to_string(),
                page_size: -5,
                ..Default::default()
            },
        ),
        (
            "page_token",
            pb::ListUserContactsRequest {
                user_id: person.to_string(),
                page_token: "***".into(),
                ..Default::default()
            },
        ),
    ] {
        expect_field(h.client().list_user_contacts(h.svc(request)).await, field);
    }
}

// ---------------------------------------------------------------------------------------
// ResolveRecipients
// ---------------------------------------------------------------------------------------

async fn resolve(
    h: &Harness,
    site_id: &str,
    purpose: pb::NoticePurpose,
) -> pb::ResolveRecipientsResponse {
    h.client()
        .resolve_recipients(h.svc(pb::ResolveRecipientsRequest {
            site_id: site_id.into(),
            purpose: purpose as i32,
        }))
        .await
        .expect("resolve recipients")
        .into_inner()
}

const PURPOSES: [pb::NoticePurpose; 7] = [
    pb::NoticePurpose::Contractual,
    pb::NoticePurpose::Renewal,
    pb::NoticePurpose::UpdateAvailable,
    pb::NoticePurpose::ProofOfEntitlement,
    pb::NoticePurpose::Shipping,
    pb::NoticePurpose::Billing,
    pb::NoticePurpose::Technical,
];

// rule R1 (and C1): with only a primary contact, every notice goes to the primary, each
// fallback saying which roles were missing; rule C9: to its notification e-mail.
#[tokio::test]
async fn every_purpose_falls_back_to_the_primary_when_its_role_is_unassigned() {
    let h = Harness::start().await;
    let primary = user();
    let created = h
        .create(pb::CreateSiteRequest {
            primary_details: Some(pb::ContactDetails {
                notification_email: "primary.notices@example.fr".into(),
                ..Default::default()
            }),
            ..site_request("1000001", "2000001", primary)
        })
        .await;
    // rule C11: used once its owner confirms it.
    h.confirm_email(&created.contacts[0]).await;
    let site = created.site.expect("site");
    let missing = |purpose: pb::NoticePurpose| match purpose {
        pb::NoticePurpose::Renewal => "no RENEWAL or ADMINISTRATIVE contact",
        pb::NoticePurpose::UpdateAvailable | pb::NoticePurpose::ProofOfEntitlement => {
            "no ADMINISTRATIVE contact"
        }
        pb::NoticePurpose::Shipping => "no SHIPPING contact",
        pb::NoticePurpose::Billing => "no BILLING contact",
        pb::NoticePurpose::Technical => "no SITE_TECHNICAL contact",
        _ => unreachable!(),
    };
    for purpose in PURPOSES {
        let resolved = resolve(&h, &site.site_id, purpose).await;
        assert_eq!(resolved.recipients.len(), 1, "{purpose:?}");
        let recipient = &resolved.recipients[0];
        assert_eq!(recipient.user_id, primary.to_string());
        assert_eq!(recipient.contact_id, created.contacts[0].contact_id);
        assert_eq!(recipient.role, R::Primary as i32);
        assert_eq!(recipient.notification_email, "primary.notices@example.fr");
        if purpose == pb::NoticePurpose::Contractual {
            // rule C1: contractual notices always go to the primary.
            assert!(cites(&recipient.rule, "C1"), "{:?}", recipient.rule);
        } else {
            assert!(
                cites(&recipient.rule, "R1"),
                "{purpose:?}: {:?}",
                recipient.rule
            );
            assert!(
                recipient.rule.contains(missing(purpose)),
                "{purpose:?}: {:?}",
                recipient.rule
            );
            assert!(recipient.rule.contains("PRIMARY"), "{:?}", recipient.rule);
        }
        assert_eq!(resolved.site_language, "fr");
        assert_eq!(resolved.business_partner_email, "");
        assert_eq!(resolved.business_partner_rule, "");
    }
}

// rules C3, C4, R1 (the notification table): each purpose goes to its own role when assigned; renewal notices
// fall back to ADMINISTRATIVE before PRIMARY (R1); proofs of entitlement also go to the
// business partner (C4).
#[tokio::test]
async fn each_purpose_goes_to_its_own_role_and_proofs_to_the_business_partner() {
    let h = Harness::start().await;
    let primary = user();
    let site = h
        .create(pb::CreateSiteRequest {
            business_partner_email: "Reseller@Partner.example".into(),
            language: "de".into(),
            ..site_request("1000001", "2000001", primary)
        })
        .await
        .site
        .expect("site");
    // rule C4: proofs of entitlement also go to the business partner, with the rule.
    let proof = resolve(&h, &site.site_id, pb::NoticePurpose::ProofOfEntitlement).await;
    assert_eq!(proof.business_partner_email, "reseller@partner.example");
    assert!(
        cites(&proof.business_partner_rule, "C4"),
        "{:?}",
        proof.business_partner_rule
    );
    assert_eq!(proof.recipients[0].role, R::Primary as i32);
    assert_eq!(proof.site_language, "de");
    for purpose in PURPOSES {
        if purpose != pb::NoticePurpose::ProofOfEntitlement {
            let other = resolve(&h, &site.site_id, purpose).await;
            assert_eq!(other.business_partner_email, "", "{purpose:?}");
            assert_eq!(other.business_partner_rule, "", "{purpose:?}");
        }
    }

    // rules C3, C4: the administrative contact gets update notices and proofs of
    // entitlement, and renewal notices while no RENEWAL contact is named.
    let admin = user();
    let admin_contact = h
        .client()
        .assign_contact(h.op(pb::AssignContactRequest {
            site_id: site.site_id.clone(),
            user_id: admin.to_string(),
            role: R::Administrative as i32,
            details: Some(pb::ContactDetails {
                notification_email: "admin.docs@example.fr".into(),
                ..Default::default()
            }),
        }))
        .await
        .expect("admin")
        .into_inner()
        .contact
        .expect("contact");
    // rule C11: used once its owner confirms it.
    h.confirm_email(&admin_contact).await;
    for purpose in [
        pb::NoticePurpose::UpdateAvailable,
        pb::NoticePurpose::ProofOfEntitlement,
        pb::NoticePurpose::Renewal,
    ] {
        let resolved = resolve(&h, &site.site_id, purpose).await;
        assert_eq!(resolved.recipients.len(), 1, "{purpose:?}");
        let recipient = &resolved.recipients[0];
        assert_eq!(recipient.user_id, admin.to_string(), "{purpose:?}");
        assert_eq!(recipient.contact_id, admin_contact.contact_id);
        assert_eq!(recipient.role, R::Administrative as i32);
        // rule C9: the notification e-mail of that contact.
        assert_eq!(recipient.notification_email, "admin.docs@example.fr");
        assert!(
            recipient.rule.contains("ADMINISTRATIVE"),
            "{:?}",
            recipient.rule
        );
        assert!(!cites(&recipient.rule, "R1"), "not a fallback to PRIMARY");
    }
    let renewal = resolve(&h, &site.site_id, pb::NoticePurpose::Renewal).await;
    assert!(
        renewal.recipients[0].rule.contains("no RENEWAL contact"),
        "{:?}",
        renewal.recipients[0].rule
    );
    let proof = resolve(&h, &site.site_id, pb::NoticePurpose::ProofOfEntitlement).await;
    assert_eq!(proof.business_partner_email, "reseller@partner.example");
    // The contractual notices still go to the primary only (C1).
    let contractual = resolve(&h, &site.site_id, pb::NoticePurpose::Contractual).await;
    assert_eq!(contractual.recipients.len(), 1);
    assert_eq!(contractual.recipients[0].user_id, primary.to_string());

    // Each remaining purpose goes to its own role once assigned.
    for (purpose, own) in [
        (pb::NoticePurpose::Renewal, R::Renewal),
        (pb::NoticePurpose::Shipping, R::Shipping),
        (pb::NoticePurpose::Billing, R::Billing),
        (pb::NoticePurpose::Technical, R::SiteTechnical),
    ] {
        let holder = user();
        h.assign(&site.site_id, holder, own).await.expect("assign");
        let resolved = resolve(&h, &site.site_id, purpose).await;
        assert_eq!(resolved.recipients.len(), 1, "{purpose:?}");
        let recipient = &resolved.recipients[0];
        assert_eq!(recipient.user_id, holder.to_string(), "{purpose:?}");
        assert_eq!(recipient.role, own as i32);
        assert_eq!(recipient.notification_email, "");
        assert!(!recipient.rule.is_empty());
        assert!(!cites(&recipient.rule, "R1"), "{:?}", recipient.rule);
    }
    // Secondary contacts and site users receive none of these notices.
    let secondary = user();
    h.assign(&site.site_id, secondary, R::Secondary)
        .await
        .expect("secondary");
    for purpose in PURPOSES {
        let resolved = resolve(&h, &site.site_id, purpose).await;
        assert!(
            resolved
                .recipients
                .iter()
                .all(|r| r.user_id != secondary.to_string())
        );
    }
    // Bad arguments.
    expect_field(
        h.client()
            .resolve_recipients(h.svc(pb::ResolveRecipientsRequest {
                site_id: site.site_id.clone(),
                purpose: 0,
            }))
            .await,
        "purpose",
    );
    expect_field(
        h.client()
            .resolve_recipients(h.svc(pb::ResolveRecipientsRequest {
                site_id: String::new(),
                purpose: 1,
            }))
            .await,
        "site_id",
    );
    expect_code(
        h.client()
            .resolve_recipients(h.svc(pb::ResolveRecipientsRequest {
                site_id: Uuid::new_v4().to_string(),
                purpose: 1,
            }))
            .await,
        Code::NotFound,
    );
}

// rule C10: on a PASSPORT_ADVANTAGE_EXPRESS site the primary stands in for every
// unassigned role (R1 makes it automatic).
#[tokio::test]
async fn express_sites_send_every_unassigned_purpose_to_the_primary() {
    let h = Harness::start().await;
    let primary = user();
    let site = h
        .create(pb::CreateSiteRequest {
            program: pb::Program::PassportAdvantageExpress as i32,
            ..site_request("1000001", "2000001", primary)
        })
        .await
        .site
        .expect("site");
    let billing = user();
    h.assign(&site.site_id, billing, R::Billing)
        .await
        .expect("billing");
    for purpose in PURPOSES {
        let resolved = resolve(&h, &site.site_id, purpose).await;
        let expected = if purpose == pb::NoticePurpose::Billing {
            billing
        } else {
            primary
        };
        assert_eq!(resolved.recipients.len(), 1);
        assert_eq!(
            resolved.recipients[0].user_id,
            expected.to_string(),
            "{purpose:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// GetSiteCompliance, ListComplianceGaps
// ---------------------------------------------------------------------------------------

async fn compliance(h: &Harness, site_id: &str) -> Vec<(pb::ComplianceGapKind, String)> {
    h.client()
        .get_site_compliance(h.svc(pb::GetSiteComplianceRequest {
            site_id: site_id.into(),
        }))
        .await
        .expect("compliance")
        .into_inner()
        .compliance
        .expect("compliance")
        .gaps
        .into_iter()
        .map(|gap| {
            (
                pb::ComplianceGapKind::try_from(gap.kind).expect("kind"),
                gap.description,
            )
        })
        .collect()
}

/// Inserts a site as imported legacy data could have it: S&S active, a primary, no STC
/// (which no RPC can produce, rule C5).
async fn import_site_without_stc(h: &Harness, site_number: &str, customer_number: &str) -> Uuid {
    let pool = h.pool().await;
    let site_id = Uuid::now_v7();
    let mut tx = pool.begin().await.expect("begin");
    sqlx::query("INSERT INTO customers (customer_number) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind(customer_number)
        .execute(&mut *tx)
        .await
        .expect("customer");
    sqlx::query(
        "INSERT INTO sites (site_id, site_number, customer_number, name, country_code, language, \
         program, support_active, is_original_site) \
         VALUES ($1, $2, $3, 'Imported', 'BE', 'nl', 'passport_advantage', true, true)",
    )
    .bind(site_id)
    .bind(site_number)
    .bind(customer_number)
    .execute(&mut *tx)
    .await
    .expect("site");
    sqlx::query("INSERT INTO contacts (contact_id, site_id, user_id, role) VALUES ($1, $2, $3, 1)")
        .bind(Uuid::now_v7())
        .bind(site_id)
        .bind(user())
        .execute(&mut *tx)
        .await
        .expect("primary");
    tx.commit().await.expect("commit");
    pool.close().await;
    site_id
}

// rules C1, C5, C6: the compliance gaps of a site: S&S without STC (only from imported
// data), no renewal contact (recommended), the primary as only contact.
#[tokio::test]
async fn compliance_reports_each_gap_and_lists_the_sites_that_have_one() {
    use pb::ComplianceGapKind as G;
    let h = Harness::start().await;
    // Only a primary: no renewal contact, primary only contact.
    let lonely = h.site("1000001", "2000001", user()).await;
    let gaps = compliance(&h, &lonely.site_id).await;
    let kinds: Vec<G> = gaps.iter().map(|(k, _)| *k).collect();
    assert_eq!(kinds, [G::NoRenewalContact, G::PrimaryOnlyContact]);
    assert!(cites(&gaps[0].1, "C6"), "{:?}", gaps[0].1);
    assert!(cites(&gaps[1].1, "C1"), "{:?}", gaps[1].1);

    // The primary holding more roles is still the only person.
    let primary = user();
    let busy = h.site("1000002", "2000001", primary).await;
    h.assign(&busy.site_id, primary, R::Renewal)
        .await
        .expect("renewal");
    let kinds: Vec<G> = compliance(&h, &busy.site_id)
        .await
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(kinds, [G::PrimaryOnlyContact]);

    // A compliant site: S&S with an STC, a renewal contact, other people.
    let good = h
        .supported_site("1000003", "2000002", user(), user())
        .await
        .site
        .expect("site");
    h.assign(&good.site_id, user(), R::Renewal)
        .await
        .expect("renewal");
    assert!(compliance(&h, &good.site_id).await.is_empty());

    // rule C5: imported data may have S&S active without an STC; it is reported first.
    let imported = import_site_without_stc(&h, "1000004", "2000003").await;
    let gaps = compliance(&h, &imported.to_string()).await;
    let kinds: Vec<G> = gaps.iter().map(|(k, _)| *k).collect();
    assert_eq!(
        kinds,
        [
            G::SupportWithoutSiteTechnical,
            G::NoRenewalContact,
            G::PrimaryOnlyContact
        ]
    );
    assert!(cites(&gaps[0].1, "C5"), "{:?}", gaps[0].1);

    // The list holds the sites with a gap, in site-id order, one per page here.
    let mut listed = Vec::new();
    let mut token = String::new();
    loop {
        let page = h
            .client()
            .list_compliance_gaps(h.svc(pb::ListComplianceGapsRequest {
                page_size: 1,
                page_token: token,
            }))
            .await
            .expect("list gaps")
            .into_inner();
        assert!(page.sites.len() <= 1);
        listed.extend(page.sites);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let ids: Vec<String> = listed.iter().map(|s| s.site_id.clone()).collect();
    let mut expected = vec![
        lonely.site_id.clone(),
        busy.site_id.clone(),
        imported.to_string(),
    ];
    expected.sort();
    assert_eq!(ids, expected);
    let imported_entry = listed
        .iter()
        .find(|s| s.site_id == imported.to_string())
        .expect("imported site listed");
    assert_eq!(imported_entry.site_number, "1000004");
    assert_eq!(
        imported_entry.gaps[0].kind,
        G::SupportWithoutSiteTechnical as i32
    );
    assert!(cites(&imported_entry.gaps[0].description, "C5"));
    // Fixing the gap with ReplaceContact (which assigns when nobody holds the role).
    h.client()
        .replace_contact(h.op(pb::ReplaceContactRequest {
            site_id: imported.to_string(),
            role: R::SiteTechnical as i32,
            new_user_id: user().to_string(),
            details: None,
        }))
        .await
        .expect("name an stc");
    let kinds: Vec<G> = compliance(&h, &imported.to_string())
        .await
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(kinds, [G::NoRenewalContact]);
    // Bad arguments.
    expect_field(
        h.client()
            .list_compliance_gaps(h.svc(pb::ListComplianceGapsRequest {
                page_size: 0,
                page_token: "?".into(),
            }))
            .await,
        "page_token",
    );
    expect_field(
        h.client()
            .list_compliance_gaps(h.svc(pb::ListComplianceGapsRequest {
                page_size: 5000,
                page_token: String::new(),
            }))
            .await,
        "page_size",
    );
    expect_field(
        h.client()
            .get_site_compliance(h.svc(pb::GetSiteComplianceRequest {
                site_id: "1000001".into(),
            }))
            .await,
        "site_id",
    );
    expect_code(
        h.client()
            .get_site_compliance(h.svc(pb::GetSiteComplianceRequest {
                site_id: Uuid::new_v4().to_string(),
            }))
            .await,
        Code::NotFound,
    );
}

// ---------------------------------------------------------------------------------------
// ListAuditRecords
// ---------------------------------------------------------------------------------------

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"))
}

// rule L1: every change is recorded with its actor (the person a service acted for, and
// the service), the time, and before/after values; listed per site, newest first.
#[tokio::test]
async fn audit_records_show_actor_action_and_before_after_newest_first() {
    let h = Harness::start().await;
    let (actor, primary, person, stc, next_primary) = (user(), user(), user(), user(), user());
    let mut client = h.client();
    let site = client
        .create_site(h.for_user(actor, site_request("1000001", "2000001", primary)))
        .await
        .expect("create")
        .into_inner()
        .site
        .expect("site");
    let site_id = site.site_id.clone();
    // The actor holds every authority on the site by grant (T8: the registry checks it).
    h.grant_all(&site_id, actor).await;
    let assigned = client
        .assign_contact(h.for_user(
            actor,
            pb::AssignContactRequest {
                site_id: site_id.clone(),
                user_id: person.to_string(),
                role: R::Secondary as i32,
                details: None,
            },
        ))
        .await
        .expect("assign")
        .into_inner()
        .contact
        .expect("contact");
    let updated = client
        .update_contact(h.for_user(
            actor,
            pb::UpdateContactRequest {
                contact_id: assigned.contact_id.clone(),
                details: Some(pb::ContactDetails {
                    job_title: "Buyer".into(),
                    ..Default::default()
                }),
                etag: String::new(),
                site_id: String::new(),
            },
        ))
        .await
        .expect("update contact")
        .into_inner()
        .contact
        .expect("contact");
    client
        .replace_contact(h.for_user(
            actor,
            pb::ReplaceContactRequest {
                site_id: site_id.clone(),
                role: R::SiteTechnical as i32,
                new_user_id: stc.to_string(),
                details: None,
            },
        ))
        .await
        .expect("replace");
    client
        .update_site(h.for_user(
            actor,
            pb::UpdateSiteRequest {
                site: Some(pb::Site {
                    site_id: site_id.clone(),
                    admin_may_manage_access: true,
                    ..Default::default()
                }),
                update_mask: mask(&["admin_may_manage_access"]),
                etag: String::new(),
            },
        ))
        .await
        .expect("update site");
    // rule C8: the actor is not the primary, so it transfers against the site it read.
    let etag = h.get_site(&site_id).await.etag;
    client
        .transfer_primary_contact(h.for_user(
            actor,
            pb::TransferPrimaryContactRequest {
                site_id: site_id.clone(),
                new_user_id: next_primary.to_string(),
                etag,
                previous_primary_role: 0,
            },
        ))
        .await
        .expect("transfer");
    // The operator acts for itself: no service in between.
    client
        .remove_contact(h.op(pb::RemoveContactRequest {
            contact_id: assigned.contact_id.clone(),
            etag: String::new(),
            site_id: String::new(),
        }))
        .await
        .expect("remove");
    // A refused change leaves no record.
    expect_code(
        client
            .assign_contact(h.for_user(
                actor,
                pb::AssignContactRequest {
                    site_id: site_id.clone(),
                    user_id: person.to_string(),
                    role: R::Primary as i32,
                    details: None,
                },
            ))
            .await,
        Code::FailedPrecondition,
    );

    let records = h.audit(&site_id).await;
    let actions: Vec<&str> = records.iter().map(|r| r.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "contact.removed",
            "primary.transferred",
            "site.updated",
            "contact.replaced",
            "contact.updated",
            "contact.assigned",
            "site.created"
        ]
    );
    // Newest first: ids and times go down.
    for pair in records.windows(2) {
        let (newer, older) = (&pair[0], &pair[1]);
        let (newer_time, older_time) = (
            newer.create_time.expect("time"),
            older.create_time.expect("time"),
        );
        assert!((newer_time.seconds, newer_time.nanos) >= (older_time.seconds, older_time.nanos));
        assert_ne!(newer.audit_id, older.audit_id);
    }
    for record in &records {
        assert_eq!(record.site_id, site_id);
        if record.action == "contact.removed" {
            assert_eq!(record.actor_id, h.operator_id.to_string());
            assert_eq!(record.via_service, "");
        } else {
            assert_eq!(record.actor_id, actor.to_string(), "{}", record.action);
            assert_eq!(record.via_service, h.service_id.to_string());
        }
    }
    let by_action = |action: &str| {
        records
            .iter()
            .find(|r| r.action == action)
            .unwrap_or_else(|| panic!("a {action} record"))
    };
    // Creation: no before, the site and its contacts after.
    let created = by_action("site.created");
    assert_eq!(created.before_json, "");
    assert_eq!(created.resource_id, site_id);
    let after = json(&created.after_json);
    assert_eq!(after["site"]["site_number"], "1000001");
    assert_eq!(after["contacts"][0]["user_id"], primary.to_string());
    assert_eq!(after["contacts"][0]["role"], "PRIMARY");
    // Assignment: the new contact after.
    let record = by_action("contact.assigned");
    assert_eq!(record.resource_id, assigned.contact_id);
    assert_eq!(record.before_json, "");
    assert_eq!(json(&record.after_json)["role"], "SECONDARY");
    // Update: before and after details.
    let record = by_action("contact.updated");
    assert_eq!(record.resource_id, updated.contact_id);
    assert_eq!(
        json(&record.before_json)["details"]["job_title"],
        serde_json::Value::Null
    );
    assert_eq!(json(&record.after_json)["details"]["job_title"], "Buyer");
    // Replacement of nobody: no before.
    let record = by_action("contact.replaced");
    assert_eq!(record.before_json, "");
    assert_eq!(json(&record.after_json)["user_id"], stc.to_string());
    // Site change: the switch before and after (rule C3).
    let record = by_action("site.updated");
    assert_eq!(json(&record.before_json)["admin_may_manage_access"], false);
    assert_eq!(json(&record.after_json)["admin_may_manage_access"], true);
    // Transfer: old and new primary.
    let record = by_action("primary.transferred");
    assert_eq!(
        json(&record.before_json)["primary_user_id"],
        primary.to_string()
    );
    assert_eq!(
        json(&record.after_json)["primary_user_id"],
        next_primary.to_string()
    );
    // Removal: no after.
    let record = by_action("contact.removed");
    assert_eq!(record.resource_id, assigned.contact_id);
    assert_eq!(record.after_json, "");
    assert_eq!(json(&record.before_json)["details"]["job_title"], "Buyer");

    // Pages of two, newest first, no overlap.
    let mut paged = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = client
            .list_audit_records(h.svc(pb::ListAuditRecordsRequest {
                site_id: site_id.clone(),
                page_size: 2,
                page_token: token,
            }))
            .await
            .expect("page")
            .into_inner();
        pages += 1;
        assert!(page.records.len() <= 2);
        paged.extend(page.records);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(pages, 4);
    assert_eq!(paged, records);
    // Records of one site only.
    let other = h.site("1000002", "2000002", user()).await;
    assert_eq!(h.audit(&other.site_id).await.len(), 1);
    assert_eq!(h.audit(&site_id).await, records);

    // rule L1: the application cannot rewrite history; nor can anyone through SQL.
    let pool = h.pool().await;
    let refused = sqlx::query("UPDATE audit_records SET action = 'rewritten'")
        .execute(&pool)
        .await
        .expect_err("audit records are append-only");
    assert!(refused.to_string().contains("L1"), "{refused}");
    sqlx::query("DELETE FROM audit_records")
        .execute(&pool)
        .await
        .expect_err("audit records cannot be deleted");
    pool.close().await;
    assert_eq!(h.audit(&site_id).await, records);

    // Bad arguments.
    let request = |site_id: &str, size: i32, token: &str| {
        h.svc(pb::ListAuditRecordsRequest {
            site_id: site_id.into(),
            page_size: size,
            page_token: token.into(),
        })
    };
    expect_field(
        client.list_audit_records(request("", 0, "")).await,
        "site_id",
    );
    expect_field(
        client.list_audit_records(request(&site_id, -1, "")).await,
        "page_size",
    );
    expect_field(
        client
            .list_audit_records(request(&site_id, 0, "bm90LWEtbnVtYmVy"))
            .await,
        "page_token",
    );
    expect_code(
        client
            .list_audit_records(request(&Uuid::new_v4().to_string(), 0, ""))
            .await,
        Code::NotFound,
    );
}

// ---------------------------------------------------------------------------------------
// WatchEvents
// ---------------------------------------------------------------------------------------

// rules L1, C3: every change is published in commit order with the site as it is after the change (site
// number, customer number, language, the C3 switch), so consumers never call back.
#[tokio::test]
async fn watch_events_streams_every_change_in_order_with_site_data() {
    let h = Harness::start().await;
    let (actor, primary, admin, stc, next_primary) = (user(), user(), user(), user(), user());
    let mut client = h.client();
    let created = client
        .create_site(h.for_user(
            actor,
            pb::CreateSiteRequest {
                language: "fr".into(),
                ..site_request("1000001", "2000001", primary)
            },
        ))
        .await
        .expect("create")
        .into_inner();
    let site_id = created.site.as_ref().expect("site").site_id.clone();
    // The actor holds every authority on the site by grant (T8: the registry checks it).
    h.grant_all(&site_id, actor).await;
    let site_update = client
        .update_site(h.for_user(
            actor,
            pb::UpdateSiteRequest {
                site: Some(pb::Site {
                    site_id: site_id.clone(),
                    admin_may_manage_access: true,
                    language: "nl-BE".into(),
                    ..Default::default()
                }),
                update_mask: mask(&["admin_may_manage_access", "language"]),
                etag: String::new(),
            },
        ))
        .await
        .expect("update site")
        .into_inner()
        .site
        .expect("site");
    let assigned = h
        .assign(&site_id, admin, R::Administrative)
        .await
        .expect("assign");
    let updated = client
        .update_contact(h.svc(pb::UpdateContactRequest {
            contact_id: assigned.contact_id.clone(),
            details: Some(pb::ContactDetails {
                phone: "+32 2 123 45 67".into(),
                ..Default::default()
            }),
            etag: String::new(),
            site_id: String::new(),
        }))
        .await
        .expect("update contact")
        .into_inner()
        .contact
        .expect("contact");
    let replaced = client
        .replace_contact(h.op(pb::ReplaceContactRequest {
            site_id: site_id.clone(),
            role: R::SiteTechnical as i32,
            new_user_id: stc.to_string(),
            details: None,
        }))
        .await
        .expect("replace")
        .into_inner();
    let transferred = client
        .transfer_primary_contact(h.op(pb::TransferPrimaryContactRequest {
            site_id: site_id.clone(),
            new_user_id: next_primary.to_string(),
            etag: String::new(),
            previous_primary_role: 0,
        }))
        .await
        .expect("transfer")
        .into_inner();
    let removed = client
        .remove_contact(h.op(pb::RemoveContactRequest {
            contact_id: assigned.contact_id.clone(),
            etag: String::new(),
            site_id: String::new(),
        }))
        .await
        .expect("remove")
        .into_inner()
        .contact
        .expect("contact");

    let events = h.events("", 7).await;
    // Unique ids, increasing cursors.
    let ids: HashSet<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids.len(), 7);
    for pair in events.windows(2) {
        assert!(pair[0].cursor < pair[1].cursor, "cursors increase");
    }
    for event in &events {
        let site = event.site.as_ref().expect("every event carries its site");
        assert_eq!(site.site_id, site_id);
        assert_eq!(site.site_number, "1000001");
        assert_eq!(site.customer_number, "2000001");
        assert!(event.create_time.is_some());
        assert!(!event.cursor.is_empty());
    }
    let site_of = |i: usize| events[i].site.clone().expect("site");
    // 0: creation, with its contacts, language before the change, switch off.
    match events[0].payload.as_ref().expect("payload") {
        Payload::SiteCreated(p) => assert_eq!(p.contacts, created.contacts),
        other => panic!("expected SiteCreated, got {other:?}"),
    }
    assert_eq!(events[0].actor_id, actor.to_string());
    assert_eq!(site_of(0).language, "fr");
    assert!(!site_of(0).admin_may_manage_access);
    // 1: the site change, with the site before it; the switch and language after it.
    match events[1].payload.as_ref().expect("payload") {
        Payload::SiteUpdated(p) => {
            let before = p.before.as_ref().expect("before");
            assert!(!before.admin_may_manage_access);
            assert_eq!(before.language, "fr");
        }
        other => panic!("expected SiteUpdated, got {other:?}"),
    }
    assert_eq!(site_of(1), site_update);
    assert_eq!(events[1].actor_id, actor.to_string());
    // Every later event carries the switch and the new language.
    for i in 1..7 {
        assert!(site_of(i).admin_may_manage_access, "event {i}");
        assert_eq!(site_of(i).language, "nl-BE", "event {i}");
    }
    // 2: the assignment, user and role included; the operator acted for itself (a service
    // acting for nobody may not, rule T6).
    match events[2].payload.as_ref().expect("payload") {
        Payload::ContactAssigned(p) => {
            let contact = p.contact.as_ref().expect("contact");
            assert_eq!(contact, &assigned);
            assert_eq!(contact.user_id, admin.to_string());
            assert_eq!(contact.role, R::Administrative as i32);
        }
        other => panic!("expected ContactAssigned, got {other:?}"),
    }
    assert_eq!(events[2].actor_id, h.operator_id.to_string());
    // 3: the detail change.
    match events[3].payload.as_ref().expect("payload") {
        Payload::ContactUpdated(p) => {
            assert_eq!(p.contact.as_ref().expect("contact"), &updated);
            assert_eq!(
                p.contact.as_ref().unwrap().details.as_ref().unwrap().phone,
                "+3221234567"
            );
        }
        other => panic!("expected ContactUpdated, got {other:?}"),
    }
    // 4: the replacement (nobody held the role).
    match events[4].payload.as_ref().expect("payload") {
        Payload::ContactReplaced(p) => {
            assert_eq!(p.contact, replaced.contact);
            assert_eq!(p.replaced, None);
        }
        other => panic!("expected ContactReplaced, got {other:?}"),
    }
    // 5: the transfer, with both users, and the site's new primary.
    match events[5].payload.as_ref().expect("payload") {
        Payload::PrimaryTransferred(p) => {
            assert_eq!(p.previous_user_id, primary.to_string());
            assert_eq!(p.new_user_id, next_primary.to_string());
            assert_eq!(p.primary, transferred.primary);
            assert_eq!(p.previous_primary, transferred.previous_primary);
        }
        other => panic!("expected PrimaryTransferred, got {other:?}"),
    }
    assert_eq!(site_of(5).primary_user_id, next_primary.to_string());
    // 6: the removal.
    match events[6].payload.as_ref().expect("payload") {
        Payload::ContactRemoved(p) => assert_eq!(p.contact.as_ref(), Some(&removed)),
        other => panic!("expected ContactRemoved, got {other:?}"),
    }

    // Resuming after a cursor gives the rest, the same events.
    let rest = h.events(&events[3].cursor, 3).await;
    assert_eq!(rest, events[4..]);
    // Live follow: a stream opened at the end gets the next change.
    let mut live = client
        .watch_events(h.svc(pb::WatchEventsRequest {
            after_cursor: events[6].cursor.clone(),
        }))
        .await
        .expect("watch")
        .into_inner();
    h.assign(&site_id, user(), R::SiteUser)
        .await
        .expect("assign");
    let next = tokio::time::timeout(common::PATIENCE, live.message())
        .await
        .expect("live event in time")
        .expect("stream ok")
        .expect("an event")
        .event
        .expect("event");
    assert!(matches!(next.payload, Some(Payload::ContactAssigned(_))));
    assert!(next.cursor > events[6].cursor);
    // A cursor this service never issued names the field.
    for bad in ["42", "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz"] {
        expect_field(
            client
                .watch_events(h.svc(pb::WatchEventsRequest {
                    after_cursor: bad.into(),
                }))
                .await,
            "after_cursor",
        );
    }
}

// ---------------------------------------------------------------------------------------
// Validation of CreateSite
// ---------------------------------------------------------------------------------------

// rules S1, S2 and the issue's validation: every bad field of CreateSite is InvalidArgument
// on that exact field, and no site, customer or event is written.
#[tokio::test]
async fn create_site_rejects_each_bad_field_and_writes_nothing() {
    let h = Harness::start().await;
    let valid = site_request("1000001", "2000001", user());
    let details = |phone: &str, job_title: &str, email: &str| {
        Some(pb::ContactDetails {
            phone: phone.into(),
            job_title: job_title.into(),
            notification_email: email.into(),
        })
    };
    let mut cases: Vec<(&str, pb::CreateSiteRequest)> = Vec::new();
    // S2: site and customer numbers are 7 to 10 digits.
    for bad in [
        "",
        "123456",
        "12345678901",
        "12a4567",
        "１２３４５６７",
        "-1234567",
    ] {
        cases.push((
            "site_number",
            pb::CreateSiteRequest {
                site_number: bad.into(),
                ..valid.clone()
            },
        ));
        cases.push((
            "customer_number",
            pb::CreateSiteRequest {
                customer_number: bad.into(),
                ..valid.clone()
            },
        ));
    }
    for bad in ["", " ", &"n".repeat(201), "bell\u{7}"] {
        cases.push((
            "name",
            pb::CreateSiteRequest {
                name: bad.into(),
                ..valid.clone()
            },
        ));
    }
    for bad in ["", "XX", "FRA", "F", "zz"] {
        cases.push((
            "country_code",
            pb::CreateSiteRequest {
                country_code: bad.into(),
                ..valid.clone()
            },
        ));
    }
    for bad in [
        "french",
        "f",
        "fr-",
        "123",
        &format!("fr-{}", "a".repeat(40)),
    ] {
        cases.push((
            "language",
            pb::CreateSiteRequest {
                language: bad.into(),
                ..valid.clone()
            },
        ));
    }
    for bad in [0, 3, -1] {
        cases.push((
            "program",
            pb::CreateSiteRequest {
                program: bad,
                ..valid.clone()
            },
        ));
    }
    for bad in ["2027-02-30", "31/12/2027", "tomorrow"] {
        cases.push((
            "support_end_date",
            pb::CreateSiteRequest {
                support_end_date: bad.into(),
                ..valid.clone()
            },
        ));
    }
    for bad in [
        "partner",
        "partner@",
        "@example.com",
        &format!("{}@example.com", "p".repeat(65)),
    ] {
        cases.push((
            "business_partner_email",
            pb::CreateSiteRequest {
                business_partner_email: bad.into(),
                ..valid.clone()
            },
        ));
    }
    for bad in ["", "primary", "123e4567-e89b-12d3-a456"] {
        cases.push((
            "primary_user_id",
            pb::CreateSiteRequest {
                primary_user_id: bad.into(),
                ..valid.clone()
            },
        ));
    }
    cases.push((
        "site_technical_user_id",
        pb::CreateSiteRequest {
            site_technical_user_id: "stc".into(),
            ..valid.clone()
        },
    ));
    cases.push((
        "primary_details.phone",
        pb::CreateSiteRequest {
            primary_details: details("12345", "", ""),
            ..valid.clone()
        },
    ));
    cases.push((
        "primary_details.job_title",
        pb::CreateSiteRequest {
            primary_details: details("", &"t".repeat(101), ""),
            ..valid.clone()
        },
    ));
    cases.push((
        "primary_details.notification_email",
        pb::CreateSiteRequest {
            primary_details: details("", "", "alerts"),
            ..valid.clone()
        },
    ));
    cases.push((
        "site_technical_details.phone",
        pb::CreateSiteRequest {
            site_technical_user_id: user().to_string(),
            site_technical_details: details("12345", "", ""),
            ..valid.clone()
        },
    ));
    cases.push((
        "site_technical_details",
        pb::CreateSiteRequest {
            site_technical_details: details("", "Responsable technique", ""),
            ..valid.clone()
        },
    ));
    for (field, request) in cases {
        let shown = format!("{request:?}");
        let status = expect_field(h.client().create_site(h.svc(request)).await, field);
        let violations = kc_runtime::error::field_violations(&status);
        assert_eq!(violations.len(), 1, "{shown}: {violations:?}");
    }
    // Every bad field of one request is reported.
    let status = expect_code(
        h.client()
            .create_site(h.svc(pb::CreateSiteRequest {
                site_number: "1".into(),
                country_code: "QQ".into(),
                primary_user_id: String::new(),
                ..valid.clone()
            }))
            .await,
        Code::InvalidArgument,
    );
    let fields: Vec<String> = kc_runtime::error::field_violations(&status)
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert_eq!(fields, ["site_number", "country_code", "primary_user_id"]);
    // Nothing was written.
    assert!(h.all_sites().await.is_empty());
    assert_eq!(h.outbox_count().await, 0);
    // Limits are inclusive and values normalised.
    let site = h
        .create(pb::CreateSiteRequest {
            site_number: " 1234567890 ".into(),
            customer_number: "1234567".into(),
            name: "n".repeat(200),
            country_code: " us ".into(),
            language: "zh_hant_tw".into(),
            ..valid.clone()
        })
        .await
        .site
        .expect("site");
    assert_eq!(site.site_number, "1234567890");
    assert_eq!(site.country_code, "US");
    assert_eq!(site.language, "zh-Hant-TW");
    assert!(site.is_original_site);
}

// ---------------------------------------------------------------------------------------
// Callers
// ---------------------------------------------------------------------------------------

/// `message` with `token` as bearer, or with no token at all.
fn with<T>(token: Option<&str>, message: T) -> Request<T> {
    match token {
        Some(token) => common::authed(token, message),
        None => Request::new(message),
    }
}

/// Calls every RPC with `token` and returns each one's refusal.
async fn every_rpc(
    h: &Harness,
    token: Option<&str>,
    site_id: &str,
    contact_id: &str,
) -> Vec<(&'static str, tonic::Status)> {
    let mut c = h.client();
    let site = || site_id.to_owned();
    let mut out = Vec::new();
    macro_rules! call {
        ($name:literal, $call:expr) => {
            match $call.await {
                Ok(_) => panic!("{} succeeded with {:?}", $name, token.map(|_| "that token")),
                Err(status) => out.push(($name, status)),
            }
        };
    }
    call!(
        "CreateSite",
        c.create_site(with(token, site_request("1999999", "2999999", user())))
    );
    call!(
        "GetSite",
        c.get_site(with(token, pb::GetSiteRequest { site_id: site() }))
    );
    call!(
        "LookupSite",
        c.lookup_site(with(
            token,
            pb::LookupSiteRequest {
                site_number: "1000001".into()
            }
        ))
    );
    call!(
        "ListSites",
        c.list_sites(with(token, pb::ListSitesRequest::default()))
    );
    call!(
        "UpdateSite",
        c.update_site(with(
            token,
            pb::UpdateSiteRequest {
                site: Some(pb::Site {
                    site_id: site(),
                    name: "Taken over".into(),
                    ..Default::default()
                }),
                update_mask: mask(&["name"]),
                etag: String::new(),
            }
        ))
    );
    call!(
        "AssignContact",
        c.assign_contact(with(
            token,
            pb::AssignContactRequest {
                site_id: site(),
                user_id: user().to_string(),
                role: R::SiteUser as i32,
                details: None,
            }
        ))
    );
    call!(
        "UpdateContact",
        c.update_contact(with(
            token,
            pb::UpdateContactRequest {
                contact_id: contact_id.into(),
                details: None,
                etag: String::new(),
                site_id: String::new(),
            }
        ))
    );
    call!(
        "RemoveContact",
        c.remove_contact(with(
            token,
            pb::RemoveContactRequest {
                contact_id: contact_id.into(),
                etag: String::new(),
                site_id: String::new(),
            }
        ))
    );
    call!(
        "ReplaceContact",
        c.replace_contact(with(
            token,
            pb::ReplaceContactRequest {
                site_id: site(),
                role: R::Billing as i32,
                new_user_id: user().to_string(),
                details: None,
            }
        ))
    );
    call!(
        "TransferPrimaryContact",
        c.transfer_primary_contact(with(
            token,
            pb::TransferPrimaryContactRequest {
                site_id: site(),
                new_user_id: user().to_string(),
                etag: String::new(),
                previous_primary_role: 0,
            }
        ))
    );
    call!(
        "ListSiteContacts",
        c.list_site_contacts(with(
            token,
            pb::ListSiteContactsRequest {
                site_id: site(),
                ..Default::default()
            }
        ))
    );
    call!(
        "ListUserContacts",
        c.list_user_contacts(with(
            token,
            pb::ListUserContactsRequest {
                user_id: user().to_string(),
                ..Default::default()
            }
        ))
    );
    call!(
        "ResolveRecipients",
        c.resolve_recipients(with(
            token,
            pb::ResolveRecipientsRequest {
                site_id: site(),
                purpose: pb::NoticePurpose::Contractual as i32,
            }
        ))
    );
    call!(
        "GetSiteCompliance",
        c.get_site_compliance(with(
            token,
            pb::GetSiteComplianceRequest { site_id: site() }
        ))
    );
    call!(
        "ListComplianceGaps",
        c.list_compliance_gaps(with(token, pb::ListComplianceGapsRequest::default()))
    );
    call!(
        "ListAuditRecords",
        c.list_audit_records(with(
            token,
            pb::ListAuditRecordsRequest {
                site_id: site(),
                ..Default::default()
            }
        ))
    );
    call!(
        "WatchEvents",
        c.watch_events(with(token, pb::WatchEventsRequest::default()))
    );
    assert_eq!(out.len(), 17, "every RPC of the service was called");
    out
}

// Customer tokens are refused on every RPC: end users come through the gateway.
// rule C2 goes through the gateway: customer tokens (even the primary's own) are refused on
// every RPC with PermissionDenied, and nothing is written.
#[tokio::test]
async fn customer_tokens_are_refused_on_every_rpc() {
    let h = Harness::start().await;
    let created = h.create(site_request("1000001", "2000001", user())).await;
    let site = created.site.expect("site");
    let token = h.customer_token();
    for (rpc, status) in every_rpc(
        &h,
        Some(&token),
        &site.site_id,
        &created.contacts[0].contact_id,
    )
    .await
    {
        assert_eq!(status.code(), Code::PermissionDenied, "{rpc}: {status:?}");
        assert!(status.message().contains("gateway"), "{rpc}: {status:?}");
    }
    // Even the site's own primary contact, with a customer token.
    let primary = uuid::Uuid::parse_str(&site.primary_user_id).expect("uuid");
    let own = h.issuer.mint(
        primary,
        kc_runtime::token::CallerKind::Customer,
        "p@example.com",
    );
    for (rpc, status) in every_rpc(
        &h,
        Some(&own),
        &site.site_id,
        &created.contacts[0].contact_id,
    )
    .await
    {
        assert_eq!(status.code(), Code::PermissionDenied, "{rpc}: {status:?}");
    }
    // Nothing was written.
    assert_eq!(h.all_sites().await, std::slice::from_ref(&site));
    assert_eq!(h.audit(&site.site_id).await.len(), 1);
    assert_eq!(h.contacts(&site.site_id, &[]).await, created.contacts);
}

// Calls without a token, or with one this service cannot verify, are unauthenticated.
// rule L1 needs an actor: calls without a valid token are Unauthenticated on every RPC.
#[tokio::test]
async fn calls_without_a_valid_token_are_unauthenticated() {
    let h = Harness::start().await;
    let created = h.create(site_request("1000001", "2000001", user())).await;
    let site = created.site.expect("site");
    let contact_id = created.contacts[0].contact_id.clone();
    for (rpc, status) in every_rpc(&h, None, &site.site_id, &contact_id).await {
        assert_eq!(status.code(), Code::Unauthenticated, "{rpc}: {status:?}");
    }
    // A token from another issuer's key.
    let foreign = kc_testkit::tokens::TestIssuer::new().mint(
        Uuid::new_v4(),
        kc_runtime::token::CallerKind::Service,
        "",
    );
    for (rpc, status) in every_rpc(&h, Some(&foreign), &site.site_id, &contact_id).await {
        assert_eq!(status.code(), Code::Unauthenticated, "{rpc}: {status:?}");
    }
    for (rpc, status) in every_rpc(&h, Some("not.a.token"), &site.site_id, &contact_id).await {
        assert_eq!(status.code(), Code::Unauthenticated, "{rpc}: {status:?}");
    }
    assert_eq!(h.all_sites().await, std::slice::from_ref(&site));
    assert_eq!(h.audit(&site.site_id).await.len(), 1);
}

// Operators and services are served; on-behalf-of is honoured only from services.
// rule L1: the actor is the operator itself, or the person a service acts for (with the
// service recorded); on-behalf-of is honoured only from service tokens.
#[tokio::test]
async fn operators_and_services_are_served_and_only_services_act_on_behalf() {
    let h = Harness::start().await;
    let site = h
        .client()
        .create_site(h.op(site_request("1000001", "2000001", user())))
        .await
        .expect("operator creates")
        .into_inner()
        .site
        .expect("site");
    let records = h.audit(&site.site_id).await;
    assert_eq!(records[0].actor_id, h.operator_id.to_string());
    assert_eq!(records[0].via_service, "");
    // An operator naming someone else is refused, and nothing is written.
    let status = expect_code(
        h.client()
            .assign_contact(on_behalf_of(
                h.op(pb::AssignContactRequest {
                    site_id: site.site_id.clone(),
                    user_id: user().to_string(),
                    role: R::SiteUser as i32,
                    details: None,
                }),
                user(),
            ))
            .await,
        Code::PermissionDenied,
    );
    assert!(status.message().contains("on-behalf-of"), "{status:?}");
    assert_eq!(h.contacts(&site.site_id, &[]).await.len(), 1);
    // A service naming a malformed user id is refused.
    let mut request = h.svc(pb::GetSiteRequest {
        site_id: site.site_id.clone(),
    });
    request.metadata_mut().insert(
        kc_runtime::auth::ON_BEHALF_OF_HEADER,
        "someone".parse().unwrap(),
    );
    expect_code(h.client().get_site(request).await, Code::InvalidArgument);
    // A service acting for a person: the person is the actor, the service is recorded.
    // It holds contact updates UPDATE (T8: the registry checks it).
    let person = user();
    h.grant_contact_updates(&site.site_id, person).await;
    h.client()
        .assign_contact(h.for_user(
            person,
            pb::AssignContactRequest {
                site_id: site.site_id.clone(),
                user_id: user().to_string(),
                role: R::SiteUser as i32,
                details: None,
            },
        ))
        .await
        .expect("service for a person");
    let newest = &h.audit(&site.site_id).await[0];
    assert_eq!(newest.actor_id, person.to_string());
    assert_eq!(newest.via_service, h.service_id.to_string());
}

// rule T6: a role that implies rights (ADMINISTRATIVE, SITE_TECHNICAL, SECONDARY, and PRIMARY)
// changes only for a person the gateway vouches for. A service token acting for nobody may
// not assign, replace or remove such a role, nor transfer the primary, and nothing changes;
// the same service acting for a person, and the operator with its own token, can. Roles that
// imply no rights stay open to the service.
#[tokio::test]
async fn a_service_acting_for_nobody_cannot_change_a_role_that_implies_rights() {
    let h = Harness::start().await;
    let primary = user();
    let site = h.site("1000001", "2000001", primary).await;
    let site_id = site.site_id.clone();
    let stc = h
        .assign(&site_id, user(), R::SiteTechnical)
        .await
        .expect("stc by the operator");
    let secondary = h
        .assign(&site_id, user(), R::Secondary)
        .await
        .expect("secondary by the operator");
    let contacts_before = h.contacts(&site_id, &[]).await;
    let audit_before = h.audit(&site_id).await;
    let outbox_before = h.outbox_count().await;
    let mut client = h.client();
    let assign = |role: R| pb::AssignContactRequest {
        site_id: site_id.clone(),
        user_id: user().to_string(),
        role: role as i32,
        details: None,
    };
    let replace = |role: R| pb::ReplaceContactRequest {
        site_id: site_id.clone(),
        role: role as i32,
        new_user_id: user().to_string(),
        details: None,
    };
    let remove = |contact: &pb::Contact| pb::RemoveContactRequest {
        contact_id: contact.contact_id.clone(),
        etag: String::new(),
        site_id: String::new(),
    };
    let transfer = || pb::TransferPrimaryContactRequest {
        site_id: site_id.clone(),
        new_user_id: user().to_string(),
        etag: String::new(),
        previous_primary_role: 0,
    };

    // The bare service token: refused, citing T6.
    for role in [R::Secondary, R::Administrative, R::SiteTechnical] {
        expect_rule(
            client.assign_contact(h.svc(assign(role))).await,
            Code::PermissionDenied,
            "T6",
        );
    }
    for role in [R::Administrative, R::SiteTechnical] {
        expect_rule(
            client.replace_contact(h.svc(replace(role))).await,
            Code::PermissionDenied,
            "T6",
        );
    }
    for contact in [&stc, &secondary] {
        expect_rule(
            client.remove_contact(h.svc(remove(contact))).await,
            Code::PermissionDenied,
            "T6",
        );
    }
    expect_rule(
        client.transfer_primary_contact(h.svc(transfer())).await,
        Code::PermissionDenied,
        "T6",
    );
    // Nothing changed: no contact, no record, no event.
    assert_eq!(h.contacts(&site_id, &[]).await, contacts_before);
    assert_eq!(h.audit(&site_id).await, audit_before);
    assert_eq!(h.outbox_count().await, outbox_before);
    assert_eq!(
        h.get_site(&site_id).await.primary_user_id,
        primary.to_string()
    );
    // A role that implies no rights stays open to the service acting for nobody.
    client
        .assign_contact(h.svc(assign(R::Billing)))
        .await
        .expect("billing by the service");

    // The same service acting for a person: the person is the actor, the service recorded.
    // The person holds every authority on the site by grant (T8: the registry checks it).
    let person = user();
    h.grant_all(&site_id, person).await;
    let newest = || async { h.audit(&site_id).await.remove(0) };
    for role in [R::Secondary, R::Administrative] {
        client
            .assign_contact(h.for_user(person, assign(role)))
            .await
            .expect("assign for a person");
    }
    client
        .replace_contact(h.for_user(person, replace(R::SiteTechnical)))
        .await
        .expect("replace for a person");
    client
        .remove_contact(h.for_user(person, remove(&secondary)))
        .await
        .expect("remove for a person");
    let record = newest().await;
    assert_eq!(record.action, "contact.removed");
    assert_eq!(record.actor_id, person.to_string());
    assert_eq!(record.via_service, h.service_id.to_string());
    // The primary transfers its own role through the service (C8).
    let moved = client
        .transfer_primary_contact(h.for_user(primary, transfer()))
        .await
        .expect("transfer for the primary")
        .into_inner();
    let second_primary = moved.site.expect("site").primary_user_id;
    assert_ne!(second_primary, primary.to_string());
    let record = newest().await;
    assert_eq!(record.action, "primary.transferred");
    assert_eq!(record.actor_id, primary.to_string());
    assert_eq!(record.via_service, h.service_id.to_string());

    // The operator with its own token.
    client
        .assign_contact(h.op(assign(R::Secondary)))
        .await
        .expect("assign by the operator");
    let replaced = client
        .replace_contact(h.op(replace(R::Administrative)))
        .await
        .expect("replace by the operator")
        .into_inner();
    let old_admin = replaced
        .replaced
        .expect("the administrative assigned for the person");
    assert_ne!(old_admin.user_id, person.to_string());
    let new_admin = replaced.contact.expect("contact");
    client
        .remove_contact(h.op(remove(&new_admin)))
        .await
        .expect("remove by the operator");
    let moved = client
        .transfer_primary_contact(h.op(transfer()))
        .await
        .expect("transfer by the operator")
        .into_inner();
    assert_ne!(moved.site.expect("site").primary_user_id, second_primary);
    let record = newest().await;
    assert_eq!(record.action, "primary.transferred");
    assert_eq!(record.actor_id, h.operator_id.to_string());
    assert_eq!(record.via_service, "");
    // Every change the service was refused took effect for a person or the operator.
    assert_eq!(h.contacts(&site_id, &[R::Secondary]).await.len(), 2);
    assert_eq!(h.contacts(&site_id, &[R::Administrative]).await.len(), 0);
    assert_eq!(h.contacts(&site_id, &[R::SiteTechnical]).await.len(), 1);
    assert_ne!(
        h.contacts(&site_id, &[R::SiteTechnical]).await[0].user_id,
        stc.user_id
    );
}
