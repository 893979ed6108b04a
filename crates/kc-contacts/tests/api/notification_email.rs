//! Rule C11 in the registry: a new notification e-mail (C9) is pending until its owner
//! confirms it with the code mailed to it; recipients resolve to the confirmed address only;
//! wrong, foreign and expired codes are refused; the code never stays readable in the
//! stream once it is over; every step is audited (L1).

use crate::helpers::*;
use kc_contacts::domain::Registry;
use kc_contacts::domain::notification_email::NotificationCodes;
use kc_proto::contacts::{self as pb, ContactRole as R};
use prost::Message;
use std::time::Duration;
use tonic::Code;
use uuid::Uuid;

/// The events that carried a code for `contact_id`, with their sealed codes (empty once
/// the code is over).
async fn code_events(h: &Harness, contact_id: &str) -> Vec<pb::NotificationEmailChangeRequested> {
    let pool = h.pool().await;
    let payloads: Vec<Vec<u8>> = sqlx::query_scalar(
        "SELECT payload FROM outbox_events \
         WHERE event_type = 'contact.notification_email_change_requested' ORDER BY txid, seq",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    payloads
        .iter()
        .filter_map(
            |payload| match pb::Event::decode(payload.as_slice()).unwrap().payload {
                Some(pb::event::Payload::NotificationEmailChangeRequested(requested))
                    if requested.contact.as_ref().unwrap().contact_id == contact_id =>
                {
                    Some(requested)
                }
                _ => None,
            },
        )
        .collect()
}

async fn contractual_address(h: &Harness, site_id: &str) -> String {
    notice_address(h, site_id, pb::NoticePurpose::Contractual).await
}

/// The notification e-mail of the first recipient of a notice of `purpose` on the site.
async fn notice_address(h: &Harness, site_id: &str, purpose: pb::NoticePurpose) -> String {
    h.client()
        .resolve_recipients(h.svc(pb::ResolveRecipientsRequest {
            site_id: site_id.into(),
            purpose: purpose as i32,
        }))
        .await
        .unwrap()
        .into_inner()
        .recipients[0]
        .notification_email
        .clone()
}

/// A new site (without S&S) of a fresh primary user: that user, the site and its primary
/// contact.
async fn site_and_primary(h: &Harness) -> (Uuid, pb::Site, pb::Contact) {
    let primary = user();
    let site = h.site("1000001", "2000001", primary).await;
    let contact = done_contact(h, &site.site_id).await;
    (primary, site, contact)
}

async fn set_email(h: &Harness, contact: &pb::Contact, email: &str) -> pb::Contact {
    h.client()
        .update_contact(h.svc(pb::UpdateContactRequest {
            contact_id: contact.contact_id.clone(),
            details: Some(pb::ContactDetails {
                notification_email: email.into(),
                ..Default::default()
            }),
            ..Default::default()
        }))
        .await
        .expect("update contact")
        .into_inner()
        .contact
        .unwrap()
}

async fn confirm(
    h: &Harness,
    as_user: Uuid,
    code: &str,
    contact: &pb::Contact,
) -> Result<pb::Contact, tonic::Status> {
    h.client()
        .confirm_notification_email(h.for_user(
            as_user,
            pb::ConfirmNotificationEmailRequest {
                code: code.into(),
                contact_id: contact.contact_id.clone(),
                ..Default::default()
            },
        ))
        .await
        .map(|response| response.into_inner().contact.unwrap())
}

// rules C9, C11: a changed notification e-mail stays pending and unused until the owner
// confirms it; notices keep going to the previous address, the stream carries the code
// only sealed, and the code is emptied from the stream once used. Audited (L1).
#[tokio::test]
async fn a_new_notification_email_is_used_only_once_its_owner_confirms_it() {
    let h = Harness::start().await;
    let (primary, site, contact) = site_and_primary(&h).await;
    // No notification e-mail yet: the login e-mail (empty) is used.
    assert_eq!(contractual_address(&h, &site.site_id).await, "");

    let first = set_email(&h, &contact, "old@example.fr").await;
    assert_eq!(first.details.as_ref().unwrap().notification_email, "");
    assert_eq!(first.pending_notification_email, "old@example.fr");
    assert!(first.pending_notification_email_expire_time.is_some());
    // rule C11: nothing goes to the pending address.
    assert_eq!(contractual_address(&h, &site.site_id).await, "");
    let confirmed = h.confirm_email(&first).await;
    assert_eq!(
        confirmed.details.as_ref().unwrap().notification_email,
        "old@example.fr"
    );
    assert_eq!(
        contractual_address(&h, &site.site_id).await,
        "old@example.fr"
    );

    // A change: the previous address keeps the notices until the new one is confirmed.
    let changed = set_email(&h, &confirmed, "new@example.fr").await;
    assert_eq!(
        changed.details.as_ref().unwrap().notification_email,
        "old@example.fr"
    );
    assert_eq!(changed.pending_notification_email, "new@example.fr");
    assert_eq!(
        contractual_address(&h, &site.site_id).await,
        "old@example.fr"
    );
    let events = code_events(&h, &contact.contact_id).await;
    let last = events.last().unwrap();
    assert_eq!(last.requested_email, "new@example.fr");
    assert_eq!(last.previous_email, "old@example.fr");
    assert!(!last.sealed_code.is_empty());
    let code = h.pending_code(&contact.contact_id).await.unwrap();
    assert_eq!(code.len(), 20);
    // The code travels only sealed.
    assert!(
        !last
            .encode_to_vec()
            .windows(20)
            .any(|w| w == code.as_bytes())
    );
    // Sending the confirmed address back changes nothing and keeps the pending one.
    let kept = set_email(&h, &changed, "old@example.fr").await;
    assert_eq!(kept.pending_notification_email, "new@example.fr");

    let done = confirm(&h, primary, &code.to_lowercase(), &changed)
        .await
        .unwrap();
    assert_eq!(done.details.unwrap().notification_email, "new@example.fr");
    assert_eq!(done.pending_notification_email, "");
    assert_eq!(
        contractual_address(&h, &site.site_id).await,
        "new@example.fr"
    );
    // The used code is gone from the stream, and cannot be used again.
    assert!(
        code_events(&h, &contact.contact_id)
            .await
            .iter()
            .all(|event| event.sealed_code.is_empty())
    );
    let again = confirm(&h, primary, &code, &changed).await.unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition);
    assert!(cites(again.message(), "C11"), "{}", again.message());

    // rule L1: the request and the confirmation are audited.
    let actions: Vec<String> = h
        .audit(&site.site_id)
        .await
        .into_iter()
        .map(|record| record.action)
        .collect();
    assert!(
        actions
            .iter()
            .any(|a| a == "contact.notification_email_requested")
    );
    assert!(
        actions
            .iter()
            .any(|a| a == "contact.notification_email_confirmed")
    );

    // Clearing takes effect at once (the login e-mail) and is told (an event, no code).
    let cleared = set_email(&h, &done_contact(&h, &site.site_id).await, "").await;
    assert_eq!(cleared.details.unwrap().notification_email, "");
    assert_eq!(contractual_address(&h, &site.site_id).await, "");
    let last = code_events(&h, &contact.contact_id).await.pop().unwrap();
    assert_eq!(last.requested_email, "");
    assert_eq!(last.previous_email, "new@example.fr");
    assert!(last.sealed_code.is_empty());
}

async fn done_contact(h: &Harness, site_id: &str) -> pb::Contact {
    h.contacts(site_id, &[R::Primary]).await.remove(0)
}

// rule C11: only the contact's own user confirms, with the right code; a wrong code is
// refused, and five wrong codes withdraw the pending address (its code leaves the stream).
#[tokio::test]
async fn wrong_codes_and_other_users_are_refused_and_five_wrong_codes_withdraw_it() {
    let h = Harness::start().await;
    let (primary, site, contact) = site_and_primary(&h).await;
    let pending = set_email(&h, &contact, "mine@example.fr").await;
    let code = h.pending_code(&contact.contact_id).await.unwrap();

    // Another user holding the code (the mailbox's owner is not the contact) is refused.
    let stranger = user();
    let refused = confirm(&h, stranger, &code, &pending).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    // A service acting for nobody may not confirm.
    let nobody = h
        .client()
        .confirm_notification_email(h.svc(pb::ConfirmNotificationEmailRequest {
            code: code.clone(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(nobody.code(), Code::PermissionDenied);
    assert!(cites(nobody.message(), "C11"), "{}", nobody.message());
    // An empty code names its field.
    expect_field(confirm(&h, primary, "", &pending).await, "code");

    // Four wrong codes: still pending; the fifth withdraws it.
    for _ in 0..4 {
        let wrong = confirm(&h, primary, "ABCDEFGHJKMNPQRSTVWX", &pending)
            .await
            .unwrap_err();
        assert_eq!(wrong.code(), Code::FailedPrecondition);
        assert!(cites(wrong.message(), "C11"));
    }
    assert_eq!(
        done_contact(&h, &site.site_id)
            .await
            .pending_notification_email,
        "mine@example.fr"
    );
    confirm(&h, primary, "123456", &pending).await.unwrap_err();
    let after = done_contact(&h, &site.site_id).await;
    assert_eq!(after.pending_notification_email, "");
    assert_eq!(after.details.unwrap().notification_email, "");
    assert!(h.pending_code(&contact.contact_id).await.is_none());
    // Even the right code is now refused: nothing was ever used.
    confirm(&h, primary, &code, &pending).await.unwrap_err();
    assert_eq!(contractual_address(&h, &site.site_id).await, "");
}

// rule C11: an expired code is refused and withdrawn; the periodic sweep empties the sealed
// code of every expired request from the stream.
#[tokio::test]
async fn expired_codes_are_refused_and_swept_from_the_stream() {
    let h = Harness::start().await;
    let (primary, site, contact) = site_and_primary(&h).await;
    let other_site = h.site("1000002", "2000001", primary).await;
    let other = h
        .contacts(&other_site.site_id, &[R::Primary])
        .await
        .remove(0);
    let pending = set_email(&h, &contact, "late@example.fr").await;
    set_email(&h, &other, "swept@example.fr").await;
    let code = h.pending_code(&contact.contact_id).await.unwrap();
    let pool = h.pool().await;
    sqlx::query(
        "UPDATE contacts SET pending_expire_time = now() - interval '1 second' \
         WHERE pending_expire_time IS NOT NULL",
    )
    .execute(&pool)
    .await
    .unwrap();

    let expired = confirm(&h, primary, &code, &pending).await.unwrap_err();
    assert_eq!(expired.code(), Code::FailedPrecondition);
    assert!(
        expired.message().contains("expired"),
        "{}",
        expired.message()
    );
    assert!(h.pending_code(&contact.contact_id).await.is_none());
    assert_eq!(contractual_address(&h, &site.site_id).await, "");

    // The other one is withdrawn by the sweep (run here at once rather than on its timer).
    assert!(h.pending_code(&other.contact_id).await.is_some());
    let registry = Registry::new(
        pool.clone(),
        NotificationCodes::new(
            kc_testkit::secrets::test_keys().opening.sealing_key(),
            Duration::from_secs(60),
        ),
    );
    assert_eq!(registry.expire_notification_codes().await.unwrap(), 1);
    assert!(h.pending_code(&other.contact_id).await.is_none());
    let swept = done_contact(&h, &other_site.site_id).await;
    assert_eq!(swept.pending_notification_email, "");
    assert_eq!(contractual_address(&h, &other_site.site_id).await, "");
    pool.close().await;
}

// rule C11: a new contact's notification e-mail (AssignContact, ReplaceContact) is pending
// too; a replaced contact's pending code leaves the stream with it.
#[tokio::test]
async fn assigned_and_replaced_contacts_start_with_a_pending_address() {
    let h = Harness::start().await;
    let site = h.site("1000001", "2000001", user()).await;
    let renewal = h
        .client()
        .replace_contact(h.svc(pb::ReplaceContactRequest {
            site_id: site.site_id.clone(),
            role: R::Renewal as i32,
            new_user_id: user().to_string(),
            details: Some(pb::ContactDetails {
                notification_email: "renewals@example.fr".into(),
                ..Default::default()
            }),
        }))
        .await
        .unwrap()
        .into_inner()
        .contact
        .unwrap();
    assert_eq!(renewal.pending_notification_email, "renewals@example.fr");
    assert_eq!(renewal.details.as_ref().unwrap().notification_email, "");
    assert_eq!(
        notice_address(&h, &site.site_id, pb::NoticePurpose::Renewal).await,
        ""
    );
    assert!(h.pending_code(&renewal.contact_id).await.is_some());
    // Replaced before confirming: its code leaves the stream.
    h.client()
        .replace_contact(h.svc(pb::ReplaceContactRequest {
            site_id: site.site_id.clone(),
            role: R::Renewal as i32,
            new_user_id: user().to_string(),
            details: None,
        }))
        .await
        .unwrap();
    assert!(h.pending_code(&renewal.contact_id).await.is_none());

    let assigned = h
        .assign_contact(h.svc(pb::AssignContactRequest {
            site_id: site.site_id.clone(),
            user_id: user().to_string(),
            role: R::Billing as i32,
            details: Some(pb::ContactDetails {
                notification_email: "billing@example.fr".into(),
                ..Default::default()
            }),
        }))
        .await;
    assert_eq!(assigned.pending_notification_email, "billing@example.fr");
    let confirmed = h.confirm_email(&assigned).await;
    assert_eq!(
        confirmed.details.unwrap().notification_email,
        "billing@example.fr"
    );
}
