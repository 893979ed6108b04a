//! ResolveRecipients: who receives each notice (rules R1, C1, C3, C4, C9, C10).

use crate::helpers::{Harness, cites, expect_code, expect_field, site_request, user};
use kc_proto::contacts::{self as pb};
use tonic::Code;
use uuid::Uuid;

use pb::ContactRole as R;

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
        .assign_contact(h.op(pb::AssignContactRequest {
            site_id: site.site_id.clone(),
            user_id: admin.to_string(),
            role: R::Administrative as i32,
            details: Some(pb::ContactDetails {
                notification_email: "admin.docs@example.fr".into(),
                ..Default::default()
            }),
        }))
        .await;
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
