//! Rule C11 end to end (issue 14, "What must be shown"), through the gateway with the real
//! services and a real SMTP server: a user granted only contact updates UPDATE changes the
//! primary contact's notification e-mail (C9) to its own mailbox. Until the primary confirms
//! the address with the code mailed to it, contractual notices (C1) keep going to the
//! primary's previous address, the new address receives nothing but that code, the
//! primary's LOGIN address is told of the change, and the user holding the code (and the
//! mailbox) cannot confirm it for the primary. Once the primary confirms, notices go there.

use std::time::Duration;

use crate::gateway::helpers::*;
use kc_proto::access::{self as apb};
use kc_proto::contacts::{self as cpb};
use kc_proto::gateway::{self as gw};
use kc_proto::notification::{self as npb};
use tonic::Code;
use uuid::Uuid;

const CONTRACT: &str = "NOTICE_KIND_CONTRACT_CHANGE";
const CODE_MAIL: &str = "NOTICE_KIND_NOTIFICATION_EMAIL_VERIFICATION";
const CHANGE_TOLD: &str = "NOTICE_KIND_NOTIFICATION_EMAIL_CHANGE_REQUESTED";

/// The PRIMARY contact of the site, as the operator reads it.
async fn primary_contact(suite: &Suite, site_id: &str) -> gw::ContactView {
    suite
        .operator_contacts(site_id, &[Role::Primary])
        .await
        .remove(0)
}

/// `token`'s caller sets the notification e-mail of the site's primary contact.
async fn set_primary_email(suite: &Suite, token: &str, site_id: &str, email: &str) -> cpb::Contact {
    let view = primary_contact(suite, site_id).await;
    suite
        .gw()
        .update_contact(authed(
            Some(token),
            gw::UpdateContactRequest {
                site_id: site_id.into(),
                contact_id: view.contacts[0].contact_id.clone(),
                details: Some(cpb::ContactDetails {
                    notification_email: email.into(),
                    ..Default::default()
                }),
                etag: String::new(),
            },
        ))
        .await
        .unwrap_or_else(|status| panic!("update the primary's notification e-mail: {status:?}"))
        .into_inner()
        .contact
        .expect("contact")
}

/// The operator sends a contractual notice (C1) on the site.
async fn contract_notice(suite: &Suite, site_id: &str, summary: &str) -> Vec<npb::Notification> {
    suite
        .gw()
        .send_notice(authed(
            Some(&suite.operator.token),
            gw::SendNoticeRequest {
                site_id: site_id.into(),
                kind: npb::NoticeKind::ContractChange as i32,
                params: [("summary".to_owned(), summary.to_owned())].into(),
                idempotency_key: Uuid::new_v4().to_string(),
            },
        ))
        .await
        .expect("send a contractual notice")
        .into_inner()
        .notifications
}

async fn confirm(
    suite: &Suite,
    token: &str,
    code: &str,
) -> Result<gw::ConfirmNotificationEmailResponse, tonic::Status> {
    suite
        .gw()
        .confirm_notification_email(authed(
            Some(token),
            gw::ConfirmNotificationEmailRequest {
                code: code.into(),
                ..Default::default()
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

// rules C11, C9, C1: a notification e-mail changed by someone else is not used until the
// contact's owner confirms it; notices never go silently elsewhere.
#[tokio::test]
async fn a_changed_notification_email_gets_nothing_until_its_owner_confirms_it() {
    let suite = Suite::start().await;
    let primary = suite.person("Primary Owner").await;
    let mallory = suite.person("Mallory").await;
    let site = suite.create_site("C11 site", &primary, None).await;
    let site_id = site.site_id.clone();
    suite.wait_role(&site_id, &primary.id, Role::Primary).await;

    // The primary sets its own notification e-mail and confirms it (C9, C11).
    let previous = fresh_email("primary-notices");
    let pending = set_primary_email(&suite, &primary.token, &site_id, &previous).await;
    assert_eq!(pending.pending_notification_email, previous);
    assert_eq!(pending.details.expect("details").notification_email, "");
    let code = code_in(&suite.mail(&previous, CODE_MAIL, 1).await);
    let confirmed = confirm(&suite, &primary.token, &code)
        .await
        .expect("the primary confirms its address")
        .contact
        .expect("contact");
    assert_eq!(
        confirmed.details.expect("details").notification_email,
        previous
    );
    // Its login address was told of that change too.
    suite.mail(&primary.email, CHANGE_TOLD, 1).await;

    // Mallory holds only contact updates UPDATE, and points the primary's notices at its
    // own mailbox.
    let granted = tools(|t| t.contact_updates = apb::ContactUpdatesAccess::Update as i32);
    suite.grant(&site_id, &mallory.id, granted).await;
    let hijack = fresh_email("mallory-box");
    let changed = set_primary_email(&suite, &mallory.token, &site_id, &hijack).await;
    // rule C11: the new address waits; the previous one stays in use.
    assert_eq!(changed.pending_notification_email, hijack);
    assert_eq!(
        changed.details.expect("details").notification_email,
        previous
    );

    // The primary's login address is told, naming the new address.
    let told = suite.mail(&primary.email, CHANGE_TOLD, 2).await;
    assert!(
        told.text.as_deref().unwrap_or_default().contains(&hijack),
        "{:?}",
        told.text
    );
    // The new address gets the code (and only that).
    let stolen_code = code_in(&suite.mail(&hijack, CODE_MAIL, 1).await);

    // The next contractual notice goes to the primary's previous address only (C1, C11).
    let notices = contract_notice(&suite, &site_id, "New terms, first notice").await;
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert_eq!(notices[0].email, previous);
    suite.mail(&previous, CONTRACT, 1).await;

    // Mallory holds the code but is not the contact's user: refused, nothing changes.
    let refused = confirm(&suite, &mallory.token, &stolen_code)
        .await
        .expect_err("only the contact's own user confirms");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(cites(refused.message(), "C11"), "{}", refused.message());
    let notices = contract_notice(&suite, &site_id, "New terms, second notice").await;
    assert_eq!(notices[0].email, previous);
    suite.mail(&previous, CONTRACT, 2).await;

    // Nothing but the code mail ever reached the new address (give delivery time to show
    // anything that was wrongly sent).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let reached: Vec<String> = suite
        .all_mails(&hijack)
        .iter()
        .map(|mail| {
            mail.header("X-Keycontacts-Kind")
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(reached, [CODE_MAIL], "mails to the unconfirmed address");

    // Once the primary confirms (it owns the mailbox in the legitimate case: here it uses
    // the code that reached it), notices go to the new address.
    let confirmed = confirm(&suite, &primary.token, &stolen_code)
        .await
        .expect("the owner confirms")
        .contact
        .expect("contact");
    assert_eq!(
        confirmed.details.expect("details").notification_email,
        hijack
    );
    let notices = contract_notice(&suite, &site_id, "New terms, third notice").await;
    assert_eq!(notices.len(), 1);
    assert_eq!(notices[0].email, hijack);
    suite.mail(&hijack, CONTRACT, 1).await;
    // A used code is over.
    expect_code(
        confirm(&suite, &primary.token, &stolen_code).await,
        Code::FailedPrecondition,
    );
}
