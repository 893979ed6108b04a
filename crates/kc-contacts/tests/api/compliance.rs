//! GetSiteCompliance and ListComplianceGaps (rules C1, C5, C6, T2). The kinds fed by other
//! services (identity's users, notification's failing addresses) are shown through the
//! gateway (tests/tests/api/gateway/compliance_portfolio.rs).

use crate::helpers::{Harness, cites, expect_code, expect_field, read_pages, user};
use kc_proto::contacts::{self as pb};
use tonic::Code;
use uuid::Uuid;

use pb::ContactRole as R;

/// GetSiteCompliance of `site_id` as the service.
async fn get_compliance(
    h: &Harness,
    site_id: &str,
) -> Result<tonic::Response<pb::GetSiteComplianceResponse>, tonic::Status> {
    let request = pb::GetSiteComplianceRequest {
        site_id: site_id.into(),
    };
    h.client().get_site_compliance(h.svc(request)).await
}

/// The compliance gaps of `site_id`: kind and description.
async fn compliance(h: &Harness, site_id: &str) -> Vec<(pb::ComplianceGapKind, String)> {
    let response = get_compliance(h, site_id).await.expect("compliance");
    response
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

// rules C1, C5, C6, T2: the compliance gaps of a site: S&S without STC (only from imported
// data), a single account manager, no renewal contact (recommended), the primary as only
// contact.
#[tokio::test]
async fn compliance_reports_each_gap_and_lists_the_sites_that_have_one() {
    use pb::ComplianceGapKind as G;
    let h = Harness::start().await;
    // Only a primary: no renewal contact, primary only contact.
    let lonely = h.site("1000001", "2000001", user()).await;
    let gaps = compliance(&h, &lonely.site_id).await;
    let kinds: Vec<G> = gaps.iter().map(|(k, _)| *k).collect();
    assert_eq!(
        kinds,
        [
            G::SingleAccountManager,
            G::NoRenewalContact,
            G::PrimaryOnlyContact
        ]
    );
    assert!(cites(&gaps[0].1, "T2"), "{:?}", gaps[0].1);
    assert!(cites(&gaps[1].1, "C6"), "{:?}", gaps[1].1);
    assert!(cites(&gaps[2].1, "C1"), "{:?}", gaps[2].1);

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
    assert_eq!(kinds, [G::SingleAccountManager, G::PrimaryOnlyContact]);

    // A compliant site: S&S with an STC, a renewal contact, other people, and a second
    // person holding account management.
    let good = h
        .supported_site("1000003", "2000002", user(), user())
        .await
        .site
        .expect("site");
    let renewal = user();
    h.assign(&good.site_id, renewal, R::Renewal)
        .await
        .expect("renewal");
    let kinds: Vec<G> = compliance(&h, &good.site_id)
        .await
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(kinds, [G::SingleAccountManager]);
    h.grant(
        &good.site_id,
        renewal,
        kc_proto::access::ToolAccess {
            account_management: kc_proto::access::AccountManagementAccess::Granted as i32,
            ..Default::default()
        },
    )
    .await;
    assert!(compliance(&h, &good.site_id).await.is_empty());

    // rule C5: imported data may have S&S active without an STC; it is reported first.
    let imported = import_site_without_stc(&h, "1000004", "2000003").await;
    let gaps = compliance(&h, &imported.to_string()).await;
    let kinds: Vec<G> = gaps.iter().map(|(k, _)| *k).collect();
    assert_eq!(
        kinds,
        [
            G::SupportWithoutSiteTechnical,
            G::SingleAccountManager,
            G::NoRenewalContact,
            G::PrimaryOnlyContact
        ]
    );
    assert!(cites(&gaps[0].1, "C5"), "{:?}", gaps[0].1);

    // The list holds the sites with a gap, in site-id order, one per page here.
    let listed = read_pages(1, None, |token| h.gaps_page(1, token)).await;
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
    assert_eq!(kinds, [G::SingleAccountManager, G::NoRenewalContact]);
    // Bad arguments.
    for (page_size, page_token, kind, customer_number, field) in [
        (0, "?", 0, "", "page_token"),
        (5000, "", 0, "", "page_size"),
        (0, "", 999, "", "kind"),
        (0, "", 0, "12x", "customer_number"),
    ] {
        let request = pb::ListComplianceGapsRequest {
            page_size,
            page_token: page_token.into(),
            kind,
            customer_number: customer_number.into(),
        };
        expect_field(h.client().list_compliance_gaps(h.svc(request)).await, field);
    }
    // One kind, one customer.
    let request = pb::ListComplianceGapsRequest {
        kind: G::SupportWithoutSiteTechnical as i32,
        ..Default::default()
    };
    let page = h
        .client()
        .list_compliance_gaps(h.svc(request))
        .await
        .expect("list one kind")
        .into_inner();
    assert!(page.sites.is_empty(), "{:?}", page.sites);
    let request = pb::ListComplianceGapsRequest {
        customer_number: "2000003".into(),
        ..Default::default()
    };
    let page = h
        .client()
        .list_compliance_gaps(h.svc(request))
        .await
        .expect("list one customer")
        .into_inner();
    let ids: Vec<&str> = page.sites.iter().map(|s| s.site_id.as_str()).collect();
    assert_eq!(ids, [imported.to_string()]);
    assert_eq!(page.sites[0].customer_number, "2000003");
    expect_field(get_compliance(&h, "1000001").await, "site_id");
    expect_code(
        get_compliance(&h, &Uuid::new_v4().to_string()).await,
        Code::NotFound,
    );
}

/// A notification to `email` as notification's events carry it; DEAD after a permanent 550
/// when `dead`.
fn notice_event(email: &str, dead: bool) -> kc_proto::notification::Event {
    use kc_proto::notification::{self as npb, event::Payload};
    let notification = npb::Notification {
        notification_id: Uuid::now_v7().to_string(),
        email: email.to_owned(),
        attempts: vec![npb::DeliveryAttempt {
            outcome: if dead {
                npb::AttemptOutcome::PermanentFailure
            } else {
                npb::AttemptOutcome::Delivered
            } as i32,
            smtp_code: if dead { 550 } else { 250 },
            ..Default::default()
        }],
        ..Default::default()
    };
    let payload = if dead {
        Payload::NotificationDead(npb::NotificationDead {
            notification: Some(notification),
        })
    } else {
        Payload::NotificationDelivered(npb::NotificationDelivered {
            notification: Some(notification),
        })
    };
    npb::Event {
        payload: Some(payload),
        ..Default::default()
    }
}

// rules C9, N3: the events of one transaction of the failing-address feed apply in stream
// order, though its deliveries are cleared together: a delivery before a permanent failure
// of the same address does not clear it, one after it does.
#[tokio::test]
async fn a_transaction_s_deliveries_and_failures_of_addresses_apply_in_order() {
    let h = Harness::start().await;
    let pool = h.pool().await;
    let mut tx = pool.begin().await.expect("begin");
    let events = [
        notice_event("failed-last@example.com", false),
        notice_event("Delivered-Last@example.com", true),
        notice_event("failed-last@example.com", true),
        notice_event("other@example.com", false),
        notice_event("delivered-last@example.com", false),
    ];
    kc_contacts::compliance_feeds::apply_notification_events(&mut tx, &events)
        .await
        .expect("apply");
    tx.commit().await.expect("commit");
    let failing: Vec<String> =
        sqlx::query_scalar("SELECT email FROM failing_addresses ORDER BY email")
            .fetch_all(&pool)
            .await
            .expect("failing addresses");
    assert_eq!(failing, ["failed-last@example.com"]);
}
