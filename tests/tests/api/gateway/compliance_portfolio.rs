//! The compliance gaps of issue 17, per site (GetSiteCompliance) and over the portfolio
//! (ListComplianceGaps, operators): the primary contact disabled (I4) or invited and unproven
//! (I1), a single account manager (T2), S&S ending within 90 days or lapsed, and a contact's
//! notification address failing (its last notice DEAD with a 5xx). Each appears, and goes
//! once fixed. The registry learns users' states and failing addresses from identity's and
//! notification's event streams, so the checks wait for the projections (`eventually`).

use chrono::{Days, Utc};
use kc_proto::access::{self as apb};
use kc_proto::contacts::{self as cpb, ComplianceGapKind as Kind};
use kc_proto::gateway::{self as gw};
use kc_proto::identity::{self as ipb};
use kc_proto::notification::NotificationState;
use kc_suite_tests::sandbox::login;
use tonic::Code;

use super::helpers::*;
use super::operator_rpcs::{dead_notice, wait_state};

/// The gap kinds of the site, as the operator reads them.
async fn gap_kinds(suite: &Suite, site_id: &str) -> Vec<Kind> {
    suite
        .gw()
        .get_site_compliance(authed(
            Some(&suite.operator.token),
            gw::GetSiteComplianceRequest {
                site_id: site_id.into(),
            },
        ))
        .await
        .expect("the operator reads the site's compliance")
        .into_inner()
        .compliance
        .expect("compliance")
        .gaps
        .iter()
        .map(|gap| Kind::try_from(gap.kind).expect("a known kind"))
        .collect()
}

/// Waits until the site has (`present`) or lacks the gap `kind`; returns its kinds then.
async fn wait_gap(suite: &Suite, site_id: &str, kind: Kind, present: bool) -> Vec<Kind> {
    let what = format!(
        "{kind:?} is {} on the site",
        if present { "reported" } else { "gone" }
    );
    eventually(&what, || async move {
        let kinds = gap_kinds(suite, site_id).await;
        if kinds.contains(&kind) == present {
            Ok(kinds)
        } else {
            Err(format!("{kinds:?}"))
        }
    })
    .await
}

/// One page of ListComplianceGaps.
async fn gaps_page(
    suite: &Suite,
    token: &str,
    kind: Kind,
    customer_number: &str,
    page_size: i32,
    page_token: String,
) -> Result<gw::ListComplianceGapsResponse, tonic::Status> {
    suite
        .gw()
        .list_compliance_gaps(authed(
            Some(token),
            gw::ListComplianceGapsRequest {
                kind: kind as i32,
                customer_number: customer_number.into(),
                page_size,
                page_token,
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

/// The ids of the portfolio's sites with a gap of `kind` (every kind: UNSPECIFIED), read a
/// page of `page_size` at a time, as the operator.
async fn portfolio(
    suite: &Suite,
    kind: Kind,
    customer_number: &str,
    page_size: i32,
) -> Vec<String> {
    let mut ids = Vec::new();
    let mut token = String::new();
    loop {
        let page = gaps_page(
            suite,
            &suite.operator.token,
            kind,
            customer_number,
            page_size,
            token,
        )
        .await
        .expect("the operator lists the portfolio's gaps");
        assert!(page.sites.len() <= page_size as usize);
        for site in &page.sites {
            let kinds: Vec<i32> = site.gaps.iter().map(|gap| gap.kind).collect();
            assert!(!kinds.is_empty());
            if kind != Kind::Unspecified {
                assert!(kinds.contains(&(kind as i32)), "{site:?}");
            }
        }
        ids.extend(page.sites.into_iter().map(|site| site.site_id));
        if page.next_page_token.is_empty() {
            return ids;
        }
        token = page.next_page_token;
    }
}

/// The operator sets the site's S&S end date, `days` from today (UTC; negative: past).
async fn support_ends_in(suite: &Suite, site_id: &str, days: i64) {
    let today = Utc::now().date_naive();
    let date = if days >= 0 {
        today.checked_add_days(Days::new(days.unsigned_abs()))
    } else {
        today.checked_sub_days(Days::new(days.unsigned_abs()))
    }
    .expect("a date");
    suite
        .gw()
        .update_site(authed(
            Some(&suite.operator.token),
            gw::UpdateSiteRequest {
                site: Some(cpb::Site {
                    site_id: site_id.into(),
                    support_end_date: date.format("%Y-%m-%d").to_string(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["support_end_date".into()],
                }),
                etag: String::new(),
            },
        ))
        .await
        .expect("the operator sets the S&S end date");
}

// rules C1, I1, I4: a primary contact invited and unproven, then disabled, is a gap until
// the owner proves the address, or the operator enables the account again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_primary_unproven_or_disabled_is_a_gap_until_fixed() {
    let suite = Suite::start().await;
    let (site_number, customer_number) = suite.numbers();
    let email = fresh_email("ivy");
    let site = suite
        .gw()
        .create_site(authed(
            Some(&suite.operator.token),
            gw::CreateSiteRequest {
                site_number,
                customer_number: customer_number.clone(),
                name: "Rennes".into(),
                country_code: "FR".into(),
                language: "fr".into(),
                program: cpb::Program::PassportAdvantage as i32,
                primary_contact: Some(gw::ContactPerson {
                    email: email.clone(),
                    display_name: "Ivy Invited".into(),
                    locale: "en".into(),
                    details: None,
                }),
                ..Default::default()
            },
        ))
        .await
        .expect("a site whose primary is invited (I1)")
        .into_inner()
        .site
        .expect("site");
    let kinds = wait_gap(&suite, &site.site_id, Kind::PrimaryUnproven, true).await;
    assert!(!kinds.contains(&Kind::PrimaryDisabled), "{kinds:?}");
    assert_eq!(
        portfolio(&suite, Kind::PrimaryUnproven, &customer_number, 10).await,
        std::slice::from_ref(&site.site_id)
    );

    // The owner of the mailbox proves it (I1): the account is active.
    suite
        .register(&email, "Ivy Invited", PASSWORD, "en")
        .await
        .expect("register the invited address");
    suite.verify(&email, PASSWORD).await;
    wait_gap(&suite, &site.site_id, Kind::PrimaryUnproven, false).await;
    let ivy = login(&suite.gateway_channel, &email).await;

    // Disabled by an operator (I4): a gap, listed by kind, until enabled again.
    let identity = suite.identity();
    identity
        .clone()
        .disable_user(suite.op(ipb::DisableUserRequest {
            user_id: ivy.id.clone(),
        }))
        .await
        .expect("the operator disables the primary");
    wait_gap(&suite, &site.site_id, Kind::PrimaryDisabled, true).await;
    assert!(
        portfolio(&suite, Kind::PrimaryDisabled, "", 1)
            .await
            .contains(&site.site_id)
    );
    identity
        .clone()
        .enable_user(suite.op(ipb::EnableUserRequest {
            user_id: ivy.id.clone(),
        }))
        .await
        .expect("the operator enables the primary");
    wait_gap(&suite, &site.site_id, Kind::PrimaryDisabled, false).await;
    assert!(
        !portfolio(&suite, Kind::PrimaryDisabled, &customer_number, 10)
            .await
            .contains(&site.site_id)
    );
}

// rules T2, C5: a single account manager, S&S ending within 90 days and S&S lapsed are gaps
// until a second person holds account management and S&S is renewed. Only operators list
// the portfolio; bad arguments name their field.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn account_managers_and_support_dates_are_gaps_until_fixed() {
    let suite = Suite::start().await;
    let alice = suite.person("Alice Primary").await;
    let theo = suite.person("Theo Technique").await;
    let site = suite.create_site("Dijon", &alice, Some(&theo)).await;
    let other = suite.create_site("Metz", &theo, None).await;

    // T2: only the primary holds account management, until it is granted to Theo.
    let kinds = gap_kinds(&suite, &site.site_id).await;
    assert!(kinds.contains(&Kind::SingleAccountManager), "{kinds:?}");
    assert!(!kinds.contains(&Kind::SupportEnding), "{kinds:?}");
    let listed = portfolio(&suite, Kind::SingleAccountManager, "", 1).await;
    assert!(listed.contains(&site.site_id) && listed.contains(&other.site_id));
    let mut sorted = listed.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(listed, sorted, "site-id order, each once");
    suite
        .grant(
            &site.site_id,
            &theo.id,
            tools(|t| t.account_management = apb::AccountManagementAccess::Granted as i32),
        )
        .await;
    wait_gap(&suite, &site.site_id, Kind::SingleAccountManager, false).await;
    // A grant on one site says nothing of another (Theo is Metz's only person).
    assert!(
        gap_kinds(&suite, &other.site_id)
            .await
            .contains(&Kind::SingleAccountManager)
    );

    // S&S ends in 30 days: renewal due; its end date passed: lapsed; renewed: neither.
    support_ends_in(&suite, &site.site_id, 30).await;
    let kinds = gap_kinds(&suite, &site.site_id).await;
    assert!(kinds.contains(&Kind::SupportEnding), "{kinds:?}");
    assert!(!kinds.contains(&Kind::SupportLapsed), "{kinds:?}");
    assert_eq!(
        portfolio(&suite, Kind::SupportEnding, &site.customer_number, 10).await,
        std::slice::from_ref(&site.site_id)
    );
    support_ends_in(&suite, &site.site_id, -1).await;
    let kinds = gap_kinds(&suite, &site.site_id).await;
    assert!(kinds.contains(&Kind::SupportLapsed), "{kinds:?}");
    assert!(!kinds.contains(&Kind::SupportEnding), "{kinds:?}");
    support_ends_in(&suite, &site.site_id, 200).await;
    let kinds = gap_kinds(&suite, &site.site_id).await;
    assert!(
        !kinds.contains(&Kind::SupportLapsed) && !kinds.contains(&Kind::SupportEnding),
        "{kinds:?}"
    );
    assert!(
        portfolio(&suite, Kind::SupportLapsed, &site.customer_number, 10)
            .await
            .is_empty()
    );

    // Customers never list the portfolio, not even of their own customer.
    for person in [&alice, &theo] {
        let status = expect_code(
            gaps_page(
                &suite,
                &person.token,
                Kind::Unspecified,
                &site.customer_number,
                0,
                String::new(),
            )
            .await,
            Code::PermissionDenied,
        );
        assert!(status.message().contains("operators"), "{status:?}");
    }
    let op = suite.operator.token.clone();
    let bad_kind = suite
        .gw()
        .list_compliance_gaps(authed(
            Some(&op),
            gw::ListComplianceGapsRequest {
                kind: 999,
                ..Default::default()
            },
        ))
        .await;
    expect_field(bad_kind, "kind");
    expect_field(
        gaps_page(&suite, &op, Kind::Unspecified, "12x", 0, String::new()).await,
        "customer_number",
    );
    expect_field(
        gaps_page(&suite, &op, Kind::Unspecified, "", -1, String::new()).await,
        "page_size",
    );
    expect_field(
        gaps_page(&suite, &op, Kind::Unspecified, "", 0, "?".into()).await,
        "page_token",
    );
}

// rules C9, N3: a contact whose last notice was refused for good (5xx) has a failing
// address; once a notice gets through (the operator's retry), it has not.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_notification_address_is_a_gap_until_a_notice_gets_through() {
    let suite = Suite::start().await;
    let alice = suite.person("Alice Primary").await;
    let theo = suite.person("Theo Technique").await;
    let site = suite.create_site("Brest", &alice, Some(&theo)).await;
    assert!(
        !gap_kinds(&suite, &site.site_id)
            .await
            .contains(&Kind::NotificationAddressFailing)
    );

    let dead = dead_notice(&suite, &site.site_id, &theo, "failing-1").await;
    wait_gap(
        &suite,
        &site.site_id,
        Kind::NotificationAddressFailing,
        true,
    )
    .await;
    assert_eq!(
        portfolio(
            &suite,
            Kind::NotificationAddressFailing,
            &site.customer_number,
            10
        )
        .await,
        std::slice::from_ref(&site.site_id)
    );
    // Theo's other site shares the address: it is failing there too. His address keeps
    // refusing mail meanwhile, so that the new site's notice to him cannot get through and
    // clear it (the latest outcome wins) before the gap is read.
    suite
        .smtp()
        .fail_next_to(&theo.email, 1000, 550, "5.1.1 mailbox unavailable");
    let other = suite.create_site("Quimper", &theo, None).await;
    wait_gap(
        &suite,
        &other.site_id,
        Kind::NotificationAddressFailing,
        true,
    )
    .await;
    suite
        .smtp()
        .fail_next_to(&theo.email, 0, 550, "5.1.1 mailbox unavailable");

    suite
        .gw()
        .retry_notification(authed(
            Some(&suite.operator.token),
            gw::RetryNotificationRequest {
                notification_id: dead.notification_id.clone(),
            },
        ))
        .await
        .expect("the operator revives the notice");
    wait_state(
        &suite,
        &site.site_id,
        &dead.notification_id,
        NotificationState::Delivered,
    )
    .await;
    wait_gap(
        &suite,
        &site.site_id,
        Kind::NotificationAddressFailing,
        false,
    )
    .await;
    wait_gap(
        &suite,
        &other.site_id,
        Kind::NotificationAddressFailing,
        false,
    )
    .await;
}
