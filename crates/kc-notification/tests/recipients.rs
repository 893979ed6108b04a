//! Who is told what, in which language: every row of DOMAIN.md's notification table, every
//! fallback of R1 (RENEWAL → ADMINISTRATIVE → PRIMARY and the others), the business partner
//! copy (C4), the notification e-mail of a contact (C9), contractual notices that reach even
//! a disabled contact (N2), and the languages of N1 (the recipient's, else the site's, else
//! `en`). Every assertion is on what the real SMTP server received, beside the
//! notification's rule and state.

mod common;

use std::collections::{HashMap, HashSet};

use common::{
    Kind, Role, State, Suite, TestUser, check_mail, cites, eventually, normalize, site_request,
};
use kc_proto::contacts::{self as cpb, NoticePurpose as Purpose};
use kc_proto::identity as ipb;
use kc_proto::notification as pb;

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
        common::brief(&sent.notifications)
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
                    common::brief(&sent.notifications)
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
    let (site_number, customer_number) = s.numbers();
    let site = s
        .create_site(cpb::CreateSiteRequest {
            support_active: true,
            site_technical_user_id: stc.id.to_string(),
            ..site_request(&site_number, &customer_number, primary.id, "de")
        })
        .await;
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

/// Waits for the DELIVERED notice of `kind` to `user` on the site that is not in `seen`,
/// checks its message, marks it seen and returns it.
async fn next_notice(
    s: &Suite,
    seen: &mut HashSet<String>,
    site_id: &str,
    user: &TestUser,
    kind: Kind,
    email: &str,
    locale: &str,
) -> pb::Notification {
    let notification = eventually(
        &format!("a new {kind:?} to {} is delivered", user.name),
        || {
            let seen = &*seen;
            async move {
                let all = s.list(site_id, Some(user.id), State::Unspecified).await;
                all.iter()
                    .find(|n| {
                        n.kind == kind as i32
                            && n.state == State::Delivered as i32
                            && !seen.contains(&n.notification_id)
                    })
                    .cloned()
                    .ok_or_else(|| format!("{:#?}", common::brief(&all)))
            }
        },
    )
    .await;
    seen.insert(notification.notification_id.clone());
    let message = s.mail_of(&notification).await;
    check_mail(&notification, &message, email, locale);
    s.assert_language(kind, locale, &message).await;
    notification
}

/// Asserts the notices made from `notification`'s source event are exactly `expected`
/// (recipient, kind): one per recipient and kind (N3).
async fn assert_event_notices(
    s: &Suite,
    notification: &pb::Notification,
    expected: &[(&TestUser, Kind)],
) {
    let source = &notification.source_event_id;
    assert!(source.contains(':'), "`<service>:<event id>`: {source:?}");
    let of_event: Vec<pb::Notification> = s
        .list(&notification.site_id, None, State::Unspecified)
        .await
        .into_iter()
        .filter(|n| &n.source_event_id == source)
        .collect();
    let mut got: Vec<(String, i32)> = of_event
        .iter()
        .map(|n| (n.recipient_user_id.clone(), n.kind))
        .collect();
    got.sort();
    let mut want: Vec<(String, i32)> = expected
        .iter()
        .map(|(user, kind)| (user.id.to_string(), *kind as i32))
        .collect();
    want.sort();
    assert_eq!(
        got,
        want,
        "the notices of event {source}: {:#?}",
        common::brief(&of_event)
    );
}

// The registry's rows of the notification table: a role assigned or removed → that contact
// and the primary; a holder replaced → both holders and the primary; the primary
// transferred → the old and the new primary (C8). One notice per event, recipient and kind,
// even when the primary is also the contact (N3); the contact's notification e-mail (C9).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn role_changes_tell_the_contact_and_the_primary() {
    let s = Suite::start().await;
    let mut seen = HashSet::new();
    let primary = s.user("fr").await;
    let stc = s.user("en").await;
    let (site_number, customer_number) = s.numbers();
    let site = s
        .create_site(cpb::CreateSiteRequest {
            support_active: true,
            site_technical_user_id: stc.id.to_string(),
            ..site_request(&site_number, &customer_number, primary.id, "en")
        })
        .await;
    let site_id = site.site_id.as_str();

    // Site created: each initial holder is told of its own role, once.
    let created = next_notice(
        &s,
        &mut seen,
        site_id,
        &primary,
        Kind::ContactRoleAssigned,
        &primary.email,
        "fr",
    )
    .await;
    next_notice(
        &s,
        &mut seen,
        site_id,
        &stc,
        Kind::ContactRoleAssigned,
        &stc.email,
        "en",
    )
    .await;
    assert_event_notices(
        &s,
        &created,
        &[
            (&primary, Kind::ContactRoleAssigned),
            (&stc, Kind::ContactRoleAssigned),
        ],
    )
    .await;

    // A role assigned: the contact and the primary. The contact is told at its login
    // e-mail: the notification e-mail given with the role (C9) receives nothing before its
    // owner confirms it (C11), and the assignment came first.
    let shipping = s.user("en").await;
    let shipping_mail = "dock@acme.example";
    s.assign(site_id, &shipping, Role::Shipping, shipping_mail)
        .await;
    let assigned = next_notice(
        &s,
        &mut seen,
        site_id,
        &shipping,
        Kind::ContactRoleAssigned,
        &shipping.email,
        "en",
    )
    .await;
    let to_primary = next_notice(
        &s,
        &mut seen,
        site_id,
        &primary,
        Kind::ContactRoleAssigned,
        &primary.email,
        "fr",
    )
    .await;
    assert_eq!(assigned.source_event_id, to_primary.source_event_id);
    assert_event_notices(
        &s,
        &assigned,
        &[
            (&shipping, Kind::ContactRoleAssigned),
            (&primary, Kind::ContactRoleAssigned),
        ],
    )
    .await;
    assert!(!assigned.rule.is_empty() && !to_primary.rule.is_empty());

    // The primary takes a role itself: one notice, not one as contact and one as primary.
    let own = s.assign(site_id, &primary, Role::Secondary, "").await;
    let mine = next_notice(
        &s,
        &mut seen,
        site_id,
        &primary,
        Kind::ContactRoleAssigned,
        &primary.email,
        "fr",
    )
    .await;
    assert_event_notices(&s, &mine, &[(&primary, Kind::ContactRoleAssigned)]).await;

    // A role removed: the contact and the primary.
    s.remove(&own.contact_id).await;
    let removed = next_notice(
        &s,
        &mut seen,
        site_id,
        &primary,
        Kind::ContactRoleRemoved,
        &primary.email,
        "fr",
    )
    .await;
    assert_event_notices(&s, &removed, &[(&primary, Kind::ContactRoleRemoved)]).await;

    let admin = s.user("en").await;
    s.assign(site_id, &admin, Role::Administrative, "").await;
    next_notice(
        &s,
        &mut seen,
        site_id,
        &admin,
        Kind::ContactRoleAssigned,
        &admin.email,
        "en",
    )
    .await;
    next_notice(
        &s,
        &mut seen,
        site_id,
        &primary,
        Kind::ContactRoleAssigned,
        &primary.email,
        "fr",
    )
    .await;

    // A holder replaced: the new holder is told it was assigned, the old one that it was
    // removed, and the primary both.
    let successor = s.user("fr").await;
    s.replace(site_id, Role::Administrative, &successor).await;
    let new_holder = next_notice(
        &s,
        &mut seen,
        site_id,
        &successor,
        Kind::ContactRoleAssigned,
        &successor.email,
        "fr",
    )
    .await;
    let old_holder = next_notice(
        &s,
        &mut seen,
        site_id,
        &admin,
        Kind::ContactRoleRemoved,
        &admin.email,
        "en",
    )
    .await;
    next_notice(
        &s,
        &mut seen,
        site_id,
        &primary,
        Kind::ContactRoleAssigned,
        &primary.email,
        "fr",
    )
    .await;
    next_notice(
        &s,
        &mut seen,
        site_id,
        &primary,
        Kind::ContactRoleRemoved,
        &primary.email,
        "fr",
    )
    .await;
    assert_eq!(new_holder.source_event_id, old_holder.source_event_id);
    assert_event_notices(
        &s,
        &new_holder,
        &[
            (&successor, Kind::ContactRoleAssigned),
            (&admin, Kind::ContactRoleRemoved),
            (&primary, Kind::ContactRoleAssigned),
            (&primary, Kind::ContactRoleRemoved),
        ],
    )
    .await;

    // A role removed from another contact: that contact and the primary.
    let successor_contact = s
        .registry()
        .list_site_contacts(s.svc(cpb::ListSiteContactsRequest {
            site_id: site_id.into(),
            ..Default::default()
        }))
        .await
        .expect("list site contacts")
        .into_inner()
        .contacts
        .into_iter()
        .find(|c| c.user_id == successor.id.to_string())
        .expect("the successor's contact");
    s.remove(&successor_contact.contact_id).await;
    let gone = next_notice(
        &s,
        &mut seen,
        site_id,
        &successor,
        Kind::ContactRoleRemoved,
        &successor.email,
        "fr",
    )
    .await;
    next_notice(
        &s,
        &mut seen,
        site_id,
        &primary,
        Kind::ContactRoleRemoved,
        &primary.email,
        "fr",
    )
    .await;
    assert_event_notices(
        &s,
        &gone,
        &[
            (&successor, Kind::ContactRoleRemoved),
            (&primary, Kind::ContactRoleRemoved),
        ],
    )
    .await;

    // rule C8: the primary transferred: the old and the new primary, each once.
    let heir = s.user("en").await;
    s.transfer_primary(site_id, &heir).await;
    let to_old = next_notice(
        &s,
        &mut seen,
        site_id,
        &primary,
        Kind::PrimaryTransferred,
        &primary.email,
        "fr",
    )
    .await;
    let to_new = next_notice(
        &s,
        &mut seen,
        site_id,
        &heir,
        Kind::PrimaryTransferred,
        &heir.email,
        "en",
    )
    .await;
    assert_eq!(to_old.source_event_id, to_new.source_event_id);
    assert!(cites(&to_old.rule, "C8"), "{:?}", to_old.rule);
    assert!(cites(&to_new.rule, "C8"), "{:?}", to_new.rule);
    let of_transfer: Vec<pb::Notification> = s
        .list(site_id, None, State::Unspecified)
        .await
        .into_iter()
        .filter(|n| {
            n.source_event_id == to_old.source_event_id && n.kind == Kind::PrimaryTransferred as i32
        })
        .collect();
    assert_eq!(of_transfer.len(), 2, "{:#?}", common::brief(&of_transfer));
}

// Access management's rows of the notification table: a request submitted → its approvers
// (A3); decided → the requester (A2); rights changed → that user (T5); a domain policy
// changed → the approvers (A7). Cancelled requests tell nobody.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn access_events_tell_approvers_requesters_and_the_user_concerned() {
    let s = Suite::start().await;
    let mut seen = HashSet::new();
    let primary = s.user("fr").await;
    let site = s.site(&primary, "fr").await;
    let site_id = site.site_id.as_str();
    s.wait_approver(&primary, site_id).await;

    // Rights changed (T5): the user whose rights changed.
    let manager = s.user("en").await;
    s.grant_manage_access(&primary, site_id, &manager, "runs the helpdesk")
        .await;
    let rights = next_notice(
        &s,
        &mut seen,
        site_id,
        &manager,
        Kind::RightsChanged,
        &manager.email,
        "en",
    )
    .await;
    assert!(cites(&rights.rule, "T5"), "{:?}", rights.rule);
    s.wait_approver(&manager, site_id).await;

    // Submitted (A3): each approver the event names, in its language.
    let requester = s.user("en").await;
    let request = s.submit(&requester, &site, "I download our software").await;
    let approvers: HashSet<_> = s.approvers(site_id).await.into_iter().collect();
    assert_eq!(approvers, HashSet::from([primary.id, manager.id]));
    let to_primary = next_notice(
        &s,
        &mut seen,
        site_id,
        &primary,
        Kind::AccessRequestSubmitted,
        &primary.email,
        "fr",
    )
    .await;
    let to_manager = next_notice(
        &s,
        &mut seen,
        site_id,
        &manager,
        Kind::AccessRequestSubmitted,
        &manager.email,
        "en",
    )
    .await;
    assert_eq!(to_primary.source_event_id, to_manager.source_event_id);
    for notification in [&to_primary, &to_manager] {
        assert!(cites(&notification.rule, "A3"), "{:?}", notification.rule);
    }
    let of_submission: Vec<_> = s
        .list(site_id, None, State::Unspecified)
        .await
        .into_iter()
        .filter(|n| n.source_event_id == to_primary.source_event_id)
        .collect();
    assert_eq!(
        of_submission.len(),
        2,
        "only the approvers: {:#?}",
        common::brief(&of_submission)
    );

    // Decided (A2): the requester, rejected with a reason.
    s.reject(&primary, &request.request_id, "ask your manager first")
        .await;
    let decided = next_notice(
        &s,
        &mut seen,
        site_id,
        &requester,
        Kind::AccessRequestDecided,
        &requester.email,
        "en",
    )
    .await;
    assert!(cites(&decided.rule, "A2"), "{:?}", decided.rule);
    let message = s.mail_of(&decided).await;
    assert!(
        message
            .text
            .as_deref()
            .unwrap_or_default()
            .contains("ask your manager first"),
        "the reason is in the notice"
    );

    // Approved: a French-speaking requester is told of the decision and of its new rights,
    // in French.
    let newcomer = s.user("fr").await;
    let again = s.submit(&newcomer, &site, "my manager agrees").await;
    next_notice(
        &s,
        &mut seen,
        site_id,
        &primary,
        Kind::AccessRequestSubmitted,
        &primary.email,
        "fr",
    )
    .await;
    next_notice(
        &s,
        &mut seen,
        site_id,
        &manager,
        Kind::AccessRequestSubmitted,
        &manager.email,
        "en",
    )
    .await;
    s.approve(&primary, &again.request_id, "welcome").await;
    next_notice(
        &s,
        &mut seen,
        site_id,
        &newcomer,
        Kind::AccessRequestDecided,
        &newcomer.email,
        "fr",
    )
    .await;
    next_notice(
        &s,
        &mut seen,
        site_id,
        &newcomer,
        Kind::RightsChanged,
        &newcomer.email,
        "fr",
    )
    .await;

    // Cancelled: nobody is told of a decision. A later event of the same stream is the
    // sync point: once its notices exist, the cancellation was applied.
    let quitter = s.user("de").await;
    let cancelled = s.submit(&quitter, &site, "never mind").await;
    next_notice(
        &s,
        &mut seen,
        site_id,
        &primary,
        Kind::AccessRequestSubmitted,
        &primary.email,
        "fr",
    )
    .await;
    next_notice(
        &s,
        &mut seen,
        site_id,
        &manager,
        Kind::AccessRequestSubmitted,
        &manager.email,
        "en",
    )
    .await;
    s.cancel(&quitter, &cancelled.request_id).await;

    // Domain policy changed (A7): the approvers.
    s.set_policy(&primary, site_id, "acme.example").await;
    let policy_primary = next_notice(
        &s,
        &mut seen,
        site_id,
        &primary,
        Kind::DomainPolicyChanged,
        &primary.email,
        "fr",
    )
    .await;
    let policy_manager = next_notice(
        &s,
        &mut seen,
        site_id,
        &manager,
        Kind::DomainPolicyChanged,
        &manager.email,
        "en",
    )
    .await;
    assert_eq!(
        policy_primary.source_event_id,
        policy_manager.source_event_id
    );
    assert!(
        cites(&policy_primary.rule, "A7"),
        "{:?}",
        policy_primary.rule
    );
    assert_event_notices(
        &s,
        &policy_primary,
        &[
            (&primary, Kind::DomainPolicyChanged),
            (&manager, Kind::DomainPolicyChanged),
        ],
    )
    .await;

    let quitter_notices = s.list(site_id, Some(quitter.id), State::Unspecified).await;
    assert!(
        quitter_notices.is_empty(),
        "a cancelled request tells nobody: {:#?}",
        common::brief(&quitter_notices)
    );
    let kinds_of = async |user: &TestUser| -> HashMap<i32, usize> {
        s.list(site_id, Some(user.id), State::Unspecified)
            .await
            .iter()
            .fold(HashMap::new(), |mut counts, n| {
                *counts.entry(n.kind).or_default() += 1;
                counts
            })
    };
    assert_eq!(
        kinds_of(&requester).await,
        HashMap::from([(Kind::AccessRequestDecided as i32, 1)]),
        "the rejected requester is told of the decision, nothing else"
    );
    assert_eq!(
        kinds_of(&newcomer).await,
        HashMap::from([
            (Kind::AccessRequestDecided as i32, 1),
            (Kind::RightsChanged as i32, 1),
        ]),
        "the approved requester is told of the decision and of its rights, nothing else"
    );
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
