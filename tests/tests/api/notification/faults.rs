//! Delivery under faults (N3: at least once, every attempt recorded), each ending with every
//! notification delivered and none received twice: the SMTP server down for a while, 4xx
//! replies then 250, 5xx replies going DEAD at once and back after RetryNotification, the
//! attempts running out, and the registry restarted while its stream is followed.

use crate::notification::helpers::{
    self, Kind, Outcome, Role, State, Suite, TestUser, brief, eventually, outcomes,
};
use kc_proto::contacts::{self as cpb};
use kc_proto::notification as pb;
use kc_testkit::smtp::SmtpCommand;
use tonic::Code;

const TECHNICAL: [(&str, &str); 2] = [("topic", "Planned maintenance"), ("summary", "Sunday")];
const PARTNER: &str = "orders@reseller.example";

/// A site with a primary (en), an administrative contact (fr) and a business partner, once
/// every notice made so far (verification codes, roles) is delivered: nothing in flight.
async fn settled_site(s: &Suite) -> (TestUser, TestUser, cpb::Site) {
    let primary = s.user("en").await;
    let admin = s.user("fr").await;
    let (site_number, customer_number) = s.numbers();
    let site = s
        .create_site(cpb::CreateSiteRequest {
            business_partner_email: PARTNER.into(),
            ..helpers::site_request(&site_number, &customer_number, primary.id, "en")
        })
        .await;
    s.assign(&site.site_id, &admin, Role::Administrative, "")
        .await;
    for user in [&primary, &admin] {
        s.delivered("", user, Kind::EmailVerification).await;
        s.delivered(&site.site_id, user, Kind::ContactRoleAssigned)
            .await;
    }
    eventually(
        "the primary is told of the administrative contact",
        || async {
            let of_primary = s
                .list(&site.site_id, Some(primary.id), State::Delivered)
                .await;
            let assigned = of_primary
                .iter()
                .filter(|n| n.kind == Kind::ContactRoleAssigned as i32)
                .count();
            if assigned == 2 {
                Ok(())
            } else {
                Err(format!("{:#?}", brief(&of_primary)))
            }
        },
    )
    .await;
    s.all_delivered().await;
    (primary, admin, site)
}

async fn send(
    s: &Suite,
    site: &cpb::Site,
    kind: Kind,
    params: &[(&str, &str)],
    key: &str,
) -> Vec<pb::Notification> {
    s.send_notice(&site.site_id, kind, params, key)
        .await
        .unwrap_or_else(|status| panic!("send {kind:?}: {status:?}"))
        .notifications
}

/// Asserts the attempts are transient failures (code `code` each) then one delivery.
#[track_caller]
fn assert_retried_then_delivered(notification: &pb::Notification, code: i32, at_least: usize) {
    let got = outcomes(notification);
    let (last, failures) = got.split_last().expect("attempts");
    assert_eq!(*last, (Outcome::Delivered, 250), "{notification:#?}");
    assert!(failures.len() >= at_least, "{notification:#?}");
    assert!(
        failures
            .iter()
            .all(|f| *f == (Outcome::TransientFailure, code)),
        "{notification:#?}"
    );
    assert!(notification.deliver_time.is_some());
    assert!(notification.next_attempt_time.is_none());
}

// N3: connection refused while the SMTP server is down is transient: retried with backoff
// (each attempt recorded), and delivered once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_smtp_server_down_for_a_while_then_back() {
    let mut s = Suite::start().await;
    let (_, _, site) = settled_site(&s).await;
    s.smtp_mut().stop().await;

    let mut sent = send(
        &s,
        &site,
        Kind::ProofOfEntitlement,
        &[("order_number", "PO-9")],
        "down-1",
    )
    .await;
    sent.extend(send(&s, &site, Kind::Technical, &TECHNICAL, "down-2").await);
    assert_eq!(sent.len(), 3, "{:#?}", brief(&sent));
    let suite = &s;
    for notification in &sent {
        let failing = eventually(
            &format!(
                "{} failed twice while the server is down",
                notification.notification_id
            ),
            || async move {
                let now = suite.get(&notification.notification_id).await;
                let transient = now
                    .attempts
                    .iter()
                    .filter(|a| a.outcome == Outcome::TransientFailure as i32)
                    .count();
                if transient >= 2 && now.state == State::Failed as i32 {
                    Ok(now)
                } else {
                    Err(format!("{now:#?}"))
                }
            },
        )
        .await;
        assert!(
            failing.next_attempt_time.is_some(),
            "FAILED says when it retries: {failing:#?}"
        );
        assert!(failing.deliver_time.is_none());
        assert!(
            failing
                .attempts
                .iter()
                .all(|a| a.outcome == Outcome::TransientFailure as i32
                    && a.smtp_code == 0
                    && !a.detail.is_empty()),
            "no reply code, a reason: {failing:#?}"
        );
    }

    s.smtp_mut().restart().await;
    let all = s.all_delivered().await;
    for notification in &sent {
        let now = all
            .iter()
            .find(|n| n.notification_id == notification.notification_id)
            .expect("listed");
        assert_retried_then_delivered(now, 0, 2);
    }
    s.assert_each_received_once(&all);
}

// A 4xx reply to DATA or to RCPT is transient: retried, then delivered by the 250.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_4xx_reply_is_retried_until_the_250() {
    let s = Suite::start().await;
    let (primary, admin, site) = settled_site(&s).await;

    s.smtp()
        .fail_next_to(&primary.email, 2, 451, "4.3.0 try again later");
    let to_primary = send(&s, &site, Kind::Technical, &TECHNICAL, "451").await;
    s.smtp().fail_next_on(
        SmtpCommand::Rcpt,
        Some(&admin.email),
        1,
        450,
        "4.2.1 mailbox busy",
    );
    let to_admin = send(
        &s,
        &site,
        Kind::Renewal,
        &[("end_date", "2026-12-31")],
        "450",
    )
    .await;

    let primary_notice = s
        .wait_state(&to_primary[0].notification_id, State::Delivered)
        .await;
    assert_eq!(
        outcomes(&primary_notice),
        [
            (Outcome::TransientFailure, 451),
            (Outcome::TransientFailure, 451),
            (Outcome::Delivered, 250)
        ]
    );
    assert!(
        primary_notice.attempts[0]
            .detail
            .contains("try again later"),
        "{primary_notice:#?}"
    );
    let admin_notice = s
        .wait_state(&to_admin[0].notification_id, State::Delivered)
        .await;
    assert_eq!(
        outcomes(&admin_notice),
        [(Outcome::TransientFailure, 450), (Outcome::Delivered, 250)]
    );
    let refusals = s.smtp().refusals();
    assert_eq!(refusals.len(), 3, "{refusals:?}");

    let all = s.all_delivered().await;
    s.assert_each_received_once(&all);
}

// A 5xx reply is permanent: DEAD at once, no retry; RetryNotification (an operator) puts it
// back to PENDING and it is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_5xx_reply_is_dead_at_once_and_delivered_after_retry() {
    let s = Suite::start().await;
    let (primary, admin, site) = settled_site(&s).await;

    s.smtp()
        .fail_next_to(&primary.email, 1, 550, "5.7.1 message refused");
    let data_refused = send(&s, &site, Kind::Technical, &TECHNICAL, "550-data").await;
    s.smtp().fail_next_on(
        SmtpCommand::Rcpt,
        Some(&admin.email),
        1,
        550,
        "5.1.1 no such user",
    );
    let rcpt_refused = send(
        &s,
        &site,
        Kind::UpdateAvailable,
        &[("product", "Suite"), ("version", "4")],
        "550-rcpt",
    )
    .await;

    for (notification, detail) in [
        (&data_refused[0], "message refused"),
        (&rcpt_refused[0], "no such user"),
    ] {
        let dead = s
            .wait_state(&notification.notification_id, State::Dead)
            .await;
        assert_eq!(
            outcomes(&dead),
            [(Outcome::PermanentFailure, 550)],
            "{dead:#?}"
        );
        assert!(dead.attempts[0].detail.contains(detail), "{dead:#?}");
        assert!(dead.next_attempt_time.is_none() && dead.deliver_time.is_none());
    }
    // No retry on its own: a later notice to the same people is delivered, the dead ones
    // still have their one attempt.
    let later = send(
        &s,
        &site,
        Kind::ProofOfEntitlement,
        &[("order_number", "PO-10")],
        "later",
    )
    .await;
    for notification in &later {
        s.wait_state(&notification.notification_id, State::Delivered)
            .await;
    }
    for notification in [&data_refused[0], &rcpt_refused[0]] {
        let still = s.get(&notification.notification_id).await;
        assert_eq!(still.state, State::Dead as i32);
        assert_eq!(
            still.attempts.len(),
            1,
            "no retry of a permanent failure: {still:#?}"
        );
    }
    assert_eq!(s.smtp().refusals().len(), 2);

    for notification in [&data_refused[0], &rcpt_refused[0]] {
        let revived = s
            .notifications()
            .retry_notification(s.op(pb::RetryNotificationRequest {
                notification_id: notification.notification_id.clone(),
            }))
            .await
            .expect("an operator retries a dead notification")
            .into_inner()
            .notification
            .expect("notification");
        assert!(
            revived.state == State::Pending as i32
                || revived.state == State::Sending as i32
                || revived.state == State::Delivered as i32,
            "PENDING again (or already on its way): {revived:#?}"
        );
        let delivered = s
            .wait_state(&notification.notification_id, State::Delivered)
            .await;
        assert_eq!(
            outcomes(&delivered),
            [(Outcome::PermanentFailure, 550), (Outcome::Delivered, 250)]
        );
    }
    let all = s.all_delivered().await;
    s.assert_each_received_once(&all);
}

// Transient failures until `--max-attempts` ran out: DEAD, each attempt recorded; an
// operator revives it once the mailbox accepts again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transient_failures_go_dead_when_the_attempts_run_out() {
    let s = Suite::start_with(&["--max-attempts", "3"]).await;
    let (primary, _, site) = settled_site(&s).await;
    s.smtp()
        .fail_next_to(&primary.email, 1000, 452, "4.2.2 mailbox full");
    let sent = send(&s, &site, Kind::Technical, &TECHNICAL, "full").await;
    let dead = s.wait_state(&sent[0].notification_id, State::Dead).await;
    assert_eq!(
        outcomes(&dead),
        [(Outcome::TransientFailure, 452); 3],
        "three attempts, each recorded: {dead:#?}"
    );
    let dead_event = s
        .find_event(|event| match &event.payload {
            Some(pb::event::Payload::NotificationDead(d))
                if d.notification.as_ref().map(|n| n.notification_id.as_str())
                    == Some(sent[0].notification_id.as_str()) =>
            {
                d.notification.clone()
            }
            _ => None,
        })
        .await;
    assert_eq!(dead_event.attempts.len(), 3);

    s.smtp()
        .fail_next_to(&primary.email, 0, 452, "4.2.2 mailbox full");
    s.notifications()
        .retry_notification(s.op(pb::RetryNotificationRequest {
            notification_id: sent[0].notification_id.clone(),
        }))
        .await
        .expect("retry");
    let delivered = s
        .wait_state(&sent[0].notification_id, State::Delivered)
        .await;
    assert_eq!(delivered.attempts.len(), 4);
    let all = s.all_delivered().await;
    s.assert_each_received_once(&all);
}

// A notification whose workers keep stopping while they send it (leases running out, the
// attempts recorded ABANDONED) goes DEAD once its round's attempts are spent, instead of
// going round forever; RetryNotification still revives it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn abandoned_attempts_past_the_round_go_dead_unsent() {
    // Retries an hour apart: nothing but the takeover below happens on its own.
    let mut s = Suite::start_with(&[
        "--max-attempts",
        "2",
        "--retry-base",
        "1h",
        "--retry-max",
        "1h",
    ])
    .await;
    let (primary, _, site) = settled_site(&s).await;
    s.smtp()
        .fail_next_to(&primary.email, 1, 451, "4.3.0 try again later");
    let sent = send(&s, &site, Kind::Technical, &TECHNICAL, "crash-loop").await;
    let id = sent[0].notification_id.clone();
    s.wait_state(&id, State::Failed).await;

    // As if a second worker had claimed attempt 2 and died while sending it: its lease is
    // over.
    s.stop_notification().await;
    let pool = sqlx::PgPool::connect(&s.db.url).await.expect("connect");
    let updated = sqlx::query(
        "UPDATE notification.notifications SET state = 2, lease_owner = gen_random_uuid(), \
           attempt_count = 2, attempt_time = now(), due_time = now() \
         WHERE notification_id = $1::uuid AND attempt_count = 1",
    )
    .bind(&id)
    .execute(&pool)
    .await
    .expect("abandon attempt 2")
    .rows_affected();
    assert_eq!(updated, 1, "exactly one failed attempt before the crash");
    s.start_notification().await;

    let dead = s.wait_state(&id, State::Dead).await;
    let got = outcomes(&dead);
    assert_eq!(
        got,
        [
            (Outcome::TransientFailure, 451),
            (Outcome::Abandoned, 0),
            (Outcome::PermanentFailure, 0),
        ],
        "{dead:#?}"
    );
    assert!(
        dead.attempts[2]
            .detail
            .starts_with("not sent: the 2 attempts"),
        "{dead:#?}"
    );
    assert!(
        s.smtp()
            .messages()
            .iter()
            .all(|message| message.message_id != helpers::message_id_of(&id)),
        "a notification given up is never sent"
    );

    s.notifications()
        .retry_notification(s.op(pb::RetryNotificationRequest {
            notification_id: id.clone(),
        }))
        .await
        .expect("retry");
    let delivered = s.wait_state(&id, State::Delivered).await;
    assert_eq!(delivered.attempts.len(), 4, "{delivered:#?}");
    let all = s.all_delivered().await;
    s.assert_each_received_once(&all);
}

// The registry stopped and started again while notification follows its stream: SendNotice
// says the registry is unavailable meanwhile; changes made after the restart still become
// notices, none twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_registry_restarted_while_its_stream_is_followed() {
    let mut s = Suite::start().await;
    let (primary, _, site) = settled_site(&s).await;
    let site_id = site.site_id.clone();

    s.stop_registry().await;
    let unavailable = s
        .send_notice(&site_id, Kind::Technical, &TECHNICAL, "registry-down")
        .await;
    let status = unavailable.expect_err("the registry is down");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");

    s.start_registry().await;
    let shipper = s.user("fr").await;
    s.assign(&site_id, &shipper, Role::Shipping, "").await;
    let heir = s.user("en").await;
    s.transfer_primary(&site_id, &heir).await;

    let (to_shipper, _) = s
        .notice(
            &site_id,
            &shipper,
            Kind::ContactRoleAssigned,
            &shipper.email,
            "fr",
        )
        .await;
    let (to_heir, _) = s
        .notice(&site_id, &heir, Kind::PrimaryTransferred, &heir.email, "en")
        .await;
    let (to_old, _) = s
        .notice(
            &site_id,
            &primary,
            Kind::PrimaryTransferred,
            &primary.email,
            "en",
        )
        .await;
    assert_eq!(to_heir.source_event_id, to_old.source_event_id);
    assert!(!to_shipper.source_event_id.is_empty());
    let sent = send(
        &s,
        &site,
        Kind::MediaShipment,
        &[("order_number", "PO-11")],
        "registry-up",
    )
    .await;
    assert_eq!(sent[0].recipient_user_id, shipper.id.to_string());

    let all = s.all_delivered().await;
    s.assert_each_received_once(&all);
}
