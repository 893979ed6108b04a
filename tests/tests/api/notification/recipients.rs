//! Who is told what, in which language: every notice of SendNotice, every
//! fallback of R1 (RENEWAL → ADMINISTRATIVE → PRIMARY and the others), the business partner
//! copy (C4), the notification e-mail of a contact (C9), contractual notices that reach even
//! a disabled contact (N2), and the languages of N1 (the recipient's, else the site's, else
//! `en`). Every assertion is on what the real SMTP server received, beside the
//! notification's rule and state. The notices made from events are in `event_notices`.

use crate::notification::helpers::{
    self, Kind, Role, State, Suite, TestUser, check_mail, cites, normalize, site_request,
};
use kc_proto::contacts::{self as cpb, NoticePurpose as Purpose};
use kc_proto::identity as ipb;

const PARTNER: &str = "orders@reseller.example";

/// Full parameters of each SendNotice kind.
fn params(kind: Kind) -> Vec<(&'static str, &'static str)> {
    match kind {
        Kind::ContractChange => vec![
            ("summary", "New terms for the Passport Advantage agreement"),
            ("effective_date", "2026-09-01"),
        ],
        Kind::Renewal => vec![("end_date", "2026-12-31"), ("quote_reference", "Q-7781")],
        Kind::UpdateAvailable => vec![("product", "Keycontacts Suite"), ("version", "9.4.1")],
        Kind::ProofOfEntitlement => vec![("order_number", "PO-55120")],
        Kind::MediaShipment => vec![
            ("order_number", "PO-55121"),
            ("tracking_number", "TRK-99-1"),
        ],
        Kind::Invoice => vec![
            ("invoice_number", "INV-2026-0042"),
            ("amount", "1 250,00 EUR"),
            ("due_date", "2026-10-15"),
        ],
        Kind::Technical => vec![
            ("topic", "Planned maintenance"),
            ("summary", "Downloads pause on Sunday"),
        ],
        other => panic!("{other:?} is not a SendNotice kind"),
    }
}

/// The registry purpose of each SendNotice kind.
fn purpose(kind: Kind) -> Purpose {
    match kind {
        Kind::ContractChange => Purpose::Contractual,
        Kind::Renewal => Purpose::Renewal,
        Kind::UpdateAvailable => Purpose::UpdateAvailable,
        Kind::ProofOfEntitlement => Purpose::ProofOfEntitlement,
        Kind::MediaShipment => Purpose::Shipping,
        Kind::Invoice => Purpose::Billing,
        Kind::Technical => Purpose::Technical,
        other => panic!("{other:?} is not a SendNotice kind"),
    }
}

/// One expected recipient of a SendNotice: a contact (user) or the business partner.
struct Expected<'a> {
    user: Option<&'a TestUser>,
    email: &'a str,
    locale: &'a str,
    /// The rule the notification must cite.
    rule: &'a str,
}

fn to<'a>(user: &'a TestUser, email: &'a str, locale: &'a str, rule: &'a str) -> Expected<'a> {
    Expected {
        user: Some(user),
        email,
        locale,
        rule,
    }
}

fn partner<'a>(locale: &'a str) -> Expected<'a> {
    Expected {
        user: None,
        email: PARTNER,
        locale,
        rule: "C4",
    }
}

/// Sends a notice of `kind` on the site and checks every notification and every received
/// message against `expected`: address (C9), language (N1), rule (R1, C4), both parts.
async fn expect_sent(s: &Suite, site: &cpb::Site, kind: Kind, expected: &[Expected<'_>]) {
    let params = params(kind);
    let key = format!("{}-{kind:?}", site.site_number);
    let sent = s
        .send_notice(&site.site_id, kind, &params, &key)
        .await
        .unwrap_or_else(|status| panic!("send {kind:?}: {status:?}"));
    assert!(!sent.replayed);
    assert_eq!(
        sent.notifications.len(),
        expected.len(),
        "{kind:?}: one notification per recipient: {:#?}",
        helpers::brief(&sent.notifications)
    );
    let resolution = s.resolve(&site.site_id, purpose(kind)).await;
    for want in expected {
        let notification = sent
            .notifications
            .iter()
            .find(|n| n.email == want.email)
            .unwrap_or_else(|| {
                panic!(
                    "{kind:?} goes to {}: {:#?}",
                    want.email,
                    helpers::brief(&sent.notifications)
                )
            });
        assert_eq!(notification.kind, kind as i32);
        assert_eq!(notification.site_id, site.site_id);
        assert_eq!(notification.idempotency_key, key);
        assert_eq!(notification.source_event_id, "");
        assert_eq!(notification.locale, want.locale, "N1: {notification:#?}");
        assert!(
            cites(&notification.rule, want.rule),
            "{kind:?} to {} cites {}: {:?}",
            want.email,
            want.rule,
            notification.rule
        );
        match want.user {
            Some(user) => {
                assert_eq!(notification.recipient_user_id, user.id.to_string());
                let recipient = resolution
                    .recipients
                    .iter()
                    .find(|r| r.user_id == user.id.to_string())
                    .expect("the registry resolves the same recipient");
                assert_eq!(
                    notification.rule, recipient.rule,
                    "R1: the rule that chose the recipient is kept"
                );
            }
            None => {
                assert_eq!(notification.recipient_user_id, "", "C4: {notification:#?}");
                assert_eq!(resolution.business_partner_email, PARTNER);
                assert_eq!(notification.rule, resolution.business_partner_rule);
            }
        }

        let delivered = s
            .wait_state(&notification.notification_id, State::Delivered)
            .await;
        assert_eq!(delivered.rule, notification.rule);
        let message = s.mail_of(&delivered).await;
        check_mail(&delivered, &message, want.email, want.locale);
        s.assert_language(kind, want.locale, &message).await;
        match want.user {
            // What a recipient reads is the preview with the same values (RenderPreview).
            Some(user) => {
                let mut values = params.clone();
                values.extend([
                    ("site_name", site.name.as_str()),
                    ("site_number", site.site_number.as_str()),
                    ("recipient_name", user.name.as_str()),
                ]);
                let preview = s.preview(kind, want.locale, &values).await;
                assert_eq!(message.subject, preview.subject, "{kind:?} subject");
                assert_eq!(
                    normalize(message.text.as_deref().unwrap_or_default()),
                    normalize(&preview.text_body),
                    "{kind:?} text part"
                );
                assert_eq!(
                    normalize(message.html.as_deref().unwrap_or_default()),
                    normalize(&preview.html_body),
                    "{kind:?} html part"
                );
            }
            None => {
                let text = message.text.as_deref().unwrap_or_default();
                let html = message.html.as_deref().unwrap_or_default();
                assert!(text.contains("PO-55120") && html.contains("PO-55120"));
            }
        }
    }
}

// rules C1, R1, C4, N1: a site whose only contact is its primary: every notice goes to the
// primary (R1), in the primary's language (en, the site is fr); the proof of entitlement
// also to the business partner, in the site's language.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_notice_falls_back_to_the_primary_and_the_partner_gets_its_copy() {
    let s = Suite::start().await;
    let primary = s.user("en").await;
    let (site_number, customer_number) = s.numbers();
    let site = s
        .create_site(cpb::CreateSiteRequest {
            business_partner_email: PARTNER.into(),
            ..site_request(&site_number, &customer_number, primary.id, "fr")
        })
        .await;
    let p = primary.email.as_str();

    expect_sent(
        &s,
        &site,
        Kind::ContractChange,
        &[to(&primary, p, "en", "C1")],
    )
    .await;
    for kind in [
        Kind::Renewal,
        Kind::UpdateAvailable,
        Kind::MediaShipment,
        Kind::Invoice,
        Kind::Technical,
    ] {
        expect_sent(&s, &site, kind, &[to(&primary, p, "en", "R1")]).await;
    }
    expect_sent(
        &s,
        &site,
        Kind::ProofOfEntitlement,
        &[to(&primary, p, "en", "R1"), partner("fr")],
    )
    .await;
}

// rules R1, C3, C4, C9, N1: renewal notices fall back to the ADMINISTRATIVE contact when there
// is no RENEWAL contact, software updates and proofs of entitlement go to it; it reads them
// at its notification e-mail (C9) in French (`fr-CA`); the rest falls back to the primary
// (fr); the partner's copy is in the site's language (en).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn renewals_fall_back_to_the_administrative_contact_at_its_notification_email() {
    let s = Suite::start().await;
    let primary = s.user("fr").await;
    let admin = s.user("fr-CA").await;
    let (site_number, customer_number) = s.numbers();
    let site = s
        .create_site(cpb::CreateSiteRequest {
            business_partner_email: PARTNER.into(),
            ..site_request(&site_number, &customer_number, primary.id, "en")
        })
        .await;
    let admin_mail = "admin-desk@acme.example";
    s.assign(&site.site_id, &admin, Role::Administrative, admin_mail)
        .await;
    let p = primary.email.as_str();

    expect_sent(
        &s,
        &site,
        Kind::Renewal,
        &[to(&admin, admin_mail, "fr", "C3")],
    )
    .await;
    let renewal = s
        .list(&site.site_id, Some(admin.id), State::Unspecified)
        .await;
    let renewal = renewal
        .iter()
        .find(|n| n.kind == Kind::Renewal as i32)
        .expect("the renewal notice");
    assert!(
        renewal.rule.contains("no RENEWAL contact"),
        "R1: the rule says why the administrative contact got it: {:?}",
        renewal.rule
    );
    expect_sent(
        &s,
        &site,
        Kind::UpdateAvailable,
        &[to(&admin, admin_mail, "fr", "C3")],
    )
    .await;
    expect_sent(
        &s,
        &site,
        Kind::ProofOfEntitlement,
        &[to(&admin, admin_mail, "fr", "C3"), partner("en")],
    )
    .await;
    expect_sent(
        &s,
        &site,
        Kind::ContractChange,
        &[to(&primary, p, "fr", "C1")],
    )
    .await;
    for kind in [Kind::MediaShipment, Kind::Invoice, Kind::Technical] {
        expect_sent(&s, &site, kind, &[to(&primary, p, "fr", "R1")]).await;
    }
}

// rules C1, C3, C5, C6, C9, N1: a site where every purpose has its own contact: each notice
// goes to that contact and nobody else; the site's language is neither fr nor en, so those
// whose locale is neither read English (N1's last fallback).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_purpose_goes_to_its_own_contact() {
    let s = Suite::start().await;
    let primary = s.user("fr").await;
    let stc = s.user("es").await;
    let renewal = s.user("de").await;
    let admin = s.user("fr").await;
    let shipping = s.user("en").await;
    let billing = s.user("fr-BE").await;
    let site = s.supported_site(&primary, &stc, "de").await;
    s.assign(&site.site_id, &renewal, Role::Renewal, "").await;
    s.assign(&site.site_id, &admin, Role::Administrative, "")
        .await;
    s.assign(&site.site_id, &shipping, Role::Shipping, "").await;
    let billing_mail = "invoices@acme.example";
    s.assign(&site.site_id, &billing, Role::Billing, billing_mail)
        .await;

    expect_sent(
        &s,
        &site,
        Kind::ContractChange,
        &[to(&primary, &primary.email, "fr", "C1")],
    )
    .await;
    expect_sent(
        &s,
        &site,
        Kind::Renewal,
        &[to(&renewal, &renewal.email, "en", "C6")],
    )
    .await;
    expect_sent(
        &s,
        &site,
        Kind::UpdateAvailable,
        &[to(&admin, &admin.email, "fr", "C3")],
    )
    .await;
    // No business partner on this site: the administrative contact alone (C4).
    expect_sent(
        &s,
        &site,
        Kind::ProofOfEntitlement,
        &[to(&admin, &admin.email, "fr", "C3")],
    )
    .await;
    expect_sent(
        &s,
        &site,
        Kind::MediaShipment,
        &[to(&shipping, &shipping.email, "en", "C6")],
    )
    .await;
    expect_sent(
        &s,
        &site,
        Kind::Invoice,
        &[to(&billing, billing_mail, "fr", "C6")],
    )
    .await;
    expect_sent(
        &s,
        &site,
        Kind::Technical,
        &[to(&stc, &stc.email, "en", "C5")],
    )
    .await;
}

// rule N1: the recipient's language when it is fr or en (by its primary subtag), else the
// site's when that is fr or en, else en; shown on the notice each new primary gets.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_notice_is_in_the_recipient_s_language_else_the_site_s_else_english() {
    let s = Suite::start().await;
    let cases = [
        ("fr", "en", "fr"),
        ("en", "fr", "en"),
        ("fr-CA", "en", "fr"),
        ("en-GB", "fr", "en"),
        ("de", "fr", "fr"),
        ("de", "fr-CH", "fr"),
        ("it", "en", "en"),
        ("de", "de", "en"),
    ];
    for (user_locale, site_language, expected) in cases {
        let primary = s.user(user_locale).await;
        let site = s.site(&primary, site_language).await;
        let (notification, _) = s
            .notice(
                &site.site_id,
                &primary,
                Kind::ContactRoleAssigned,
                &primary.email,
                expected,
            )
            .await;
        assert_eq!(
            notification.locale, expected,
            "N1: user {user_locale}, site {site_language}"
        );
    }
}

// rule N2: contractual notices cannot be switched off, not even by disabling the user: a
// disabled primary contact still gets the agreement change, while the notices made from
// events (here: a role given on its site) skip it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_disabled_primary_still_gets_contractual_notices_but_no_event_notices() {
    let s = Suite::start().await;
    let primary = s.user("en").await;
    let clerk = s.user("fr").await;
    let site = s.site(&primary, "en").await;
    s.delivered(&site.site_id, &primary, Kind::ContactRoleAssigned)
        .await;

    s.identity()
        .disable_user(s.op(ipb::DisableUserRequest {
            user_id: primary.id.to_string(),
        }))
        .await
        .expect("disable the primary contact");

    // The clerk's assignment tells the clerk; the disabled primary is left out (both notices
    // of one event are made in one transaction, so the clerk's is the barrier).
    s.assign(&site.site_id, &clerk, Role::SiteUser, "").await;
    s.delivered(&site.site_id, &clerk, Kind::ContactRoleAssigned)
        .await;
    let assigned_to_primary = s
        .list(&site.site_id, Some(primary.id), State::Unspecified)
        .await
        .into_iter()
        .filter(|n| n.kind == Kind::ContactRoleAssigned as i32)
        .count();
    assert_eq!(
        assigned_to_primary, 1,
        "only the notice of its own role, from before it was disabled"
    );

    expect_sent(
        &s,
        &site,
        Kind::ContractChange,
        &[to(&primary, primary.email.as_str(), "en", "C1")],
    )
    .await;
}
