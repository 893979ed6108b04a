//! CreateSite, GetSite, LookupSite, ListSites, the validation of CreateSite, and UpdateSite
//! (rules S1, S2, C3, C5, L1).

use crate::helpers::{
    Harness, cites, expect_code, expect_field, expect_rule, mask, role, site_request, user,
};
use kc_proto::contacts::{self as pb};
use tonic::Code;
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
                ..Default::default()
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
    let get = async |site_id: &str| {
        let request = pb::GetSiteRequest {
            site_id: site_id.into(),
        };
        h.client().get_site(h.svc(request)).await
    };
    let lookup = async |site_number: &str| {
        let request = pb::LookupSiteRequest {
            site_number: site_number.into(),
            ..Default::default()
        };
        h.client().lookup_site(h.svc(request)).await
    };
    let found = lookup(" 1234567890 ")
        .await
        .expect("lookup")
        .into_inner()
        .site
        .expect("site");
    assert_eq!(found, site);
    // Unknown ones are NotFound; malformed ones name the field.
    expect_code(get(&Uuid::new_v4().to_string()).await, Code::NotFound);
    expect_code(lookup("7654321").await, Code::NotFound);
    expect_field(get("not-a-uuid").await, "site_id");
    for bad in ["", "123456", "12345678901", "12a4567"] {
        expect_field(lookup(bad).await, "site_number");
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
// Validation of CreateSite
// ---------------------------------------------------------------------------------------

// rules S1, S2 and the validation: every bad field of CreateSite is InvalidArgument
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
    let fields = kc_testkit::grpc::invalid_fields(
        h.client()
            .create_site(h.svc(pb::CreateSiteRequest {
                site_number: "1".into(),
                country_code: "QQ".into(),
                primary_user_id: String::new(),
                ..valid.clone()
            }))
            .await,
    );
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
        .await;
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
        .await;
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
    let turn_on = |etag: &str| h.set_support(&site.site_id, true, etag);
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
    let on = h.update_site(turn_on(&site.etag)).await;
    assert!(on.support_active);
    // Turning it off needs nothing, and the STC stays.
    let off = h
        .update_site(h.set_support(&site.site_id, false, &on.etag))
        .await;
    assert!(!off.support_active);
    assert_eq!(
        h.contacts(&site.site_id, &[R::SiteTechnical]).await.len(),
        1
    );
}

// rule L1 (no lost update goes unrecorded): a stale etag is refused (Aborted) and changes
// nothing; so is a malformed one.
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
    let renamed = h.update_site(rename("First", &site.etag)).await;
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
    expect_code(
        h.client().update_site(rename("Fourth", "W/abc")).await,
        Code::Aborted,
    );
    assert_eq!(h.get_site(&site.site_id).await.name, "Third");
}

// rule L1 (nothing is recorded for a refused change) and the validation: every bad
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
