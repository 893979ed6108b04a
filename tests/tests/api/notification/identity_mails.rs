//! identity's mails, end to end: identity seals each code to notification's key, notification
//! opens it and mails it, and the real SMTP server receives it; the code in the mail is the
//! one that works. Also the mails without a code: a registration of a taken address (I2) or
//! of a confusable one (I3), and a login e-mail change told to the current address. Each in
//! the recipient's language (N1), and a code identity withdrew before it was mailed (used or
//! replaced) is never mailed.
//!
//! Issue: secrets at rest: once a code mail is delivered, given up (DEAD) or its code
//! expired, no text column of notification's schema holds the code (queried directly), the
//! API never shows it, and a redacted mail is not sent again.

use crate::notification::helpers::{
    self, CODE_KINDS, Kind, Outcome, PASSWORD, State, Suite, brief, cites, code_in, eventually,
    fresh_email, normalize, outcomes, uuid,
};
use kc_proto::identity::event::Payload;
use kc_proto::identity::{self as ipb};
use kc_proto::notification::{self as pb};
use sqlx::PgPool;
use tonic::Code;

const OTHER_PASSWORD: &str = "another long passphrase 42";

/// Every code mail to `email`.
async fn code_mails(s: &Suite, email: &str) -> Vec<kc_proto::notification::Notification> {
    s.to_address(email)
        .await
        .into_iter()
        .filter(|n| CODE_KINDS.iter().any(|kind| n.kind == *kind as i32))
        .collect()
}

/// Where notification's schema still holds `code` for the notification: the names of the
/// text columns of its row, of its attempts, and of its published events that contain it.
/// Also checks that the search covers the rendered parts (so that it cannot pass vacuously).
async fn code_at_rest(pool: &PgPool, notification_id: &str, code: &str) -> Vec<String> {
    let columns: Vec<String> = sqlx::query_scalar(
        "SELECT column_name::text FROM information_schema.columns \
         WHERE table_schema = 'notification' AND table_name = 'notifications' \
           AND data_type IN ('text', 'character varying') ORDER BY ordinal_position",
    )
    .fetch_all(pool)
    .await
    .expect("the text columns");
    for rendered in ["subject", "text_body", "html_body"] {
        assert!(columns.iter().any(|c| c == rendered), "{columns:?}");
    }
    // Every text column's value, by name (a row as JSON keeps the names).
    let values: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT e.key, e.value FROM notification.notifications n, jsonb_each_text(to_jsonb(n)) e \
         WHERE n.notification_id = $1::uuid AND e.key = ANY($2)",
    )
    .bind(notification_id)
    .bind(&columns)
    .fetch_all(pool)
    .await
    .expect("the notification's row");
    assert_eq!(values.len(), columns.len(), "{values:?}");
    let mut found: Vec<String> = values
        .into_iter()
        .filter(|(_, value)| value.as_deref().is_some_and(|value| value.contains(code)))
        .map(|(column, _)| format!("notifications.{column}"))
        .collect();
    let details: Vec<String> = sqlx::query_scalar(
        "SELECT detail FROM notification.attempts WHERE notification_id = $1::uuid",
    )
    .bind(notification_id)
    .fetch_all(pool)
    .await
    .expect("attempts");
    if details.iter().any(|detail| detail.contains(code)) {
        found.push("attempts.detail".into());
    }
    let payloads: Vec<Vec<u8>> = sqlx::query_scalar(
        "SELECT payload FROM notification.outbox_events WHERE aggregate_id = $1",
    )
    .bind(notification_id)
    .fetch_all(pool)
    .await
    .expect("events");
    if payloads
        .iter()
        .any(|payload| payload.windows(code.len()).any(|w| w == code.as_bytes()))
    {
        found.push("outbox_events.payload".into());
    }
    found
}

/// What the API shows of a notification, to search for a code.
async fn shown(s: &Suite, notification_id: &str, email: &str) -> String {
    let listed: Vec<pb::Notification> = s
        .to_address(email)
        .await
        .into_iter()
        .filter(|n| n.notification_id == notification_id)
        .collect();
    assert_eq!(listed.len(), 1, "{:#?}", brief(&listed));
    format!("{:?} {:?}", s.get(notification_id).await, listed)
}

async fn retry(s: &Suite, notification_id: &str) -> Result<pb::Notification, tonic::Status> {
    s.notifications()
        .retry_notification(s.op(pb::RetryNotificationRequest {
            notification_id: notification_id.into(),
        }))
        .await
        .map(|response| response.into_inner().notification.expect("notification"))
}

/// An operator's retry of a code mail whose code was withdrawn is refused with
/// FAILED_PRECONDITION, and nothing of it was sent (rule I2).
async fn refused_retry_sends_nothing(s: &Suite, id: &str) {
    let refused = retry(s, id).await.unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::FailedPrecondition,
        "{refused:?}"
    );
    assert!(refused.message().contains("withdrawn"), "{refused:?}");
    assert!(
        s.smtp()
            .messages()
            .iter()
            .all(|m| m.header("X-Keycontacts-Notification-Id") != Some(id)),
        "nothing was sent"
    );
}

/// The code mail of `kind` to `email`, once there is exactly one of that kind.
async fn the_code_mail(s: &Suite, email: &str, kind: Kind) -> pb::Notification {
    eventually(&format!("one {kind:?} to {email}"), || async move {
        let mails = code_mails(s, email).await;
        let of_kind: Vec<&pb::Notification> =
            mails.iter().filter(|n| n.kind == kind as i32).collect();
        match of_kind.as_slice() {
            [mail] => Ok((*mail).clone()),
            _ => Err(format!("{:#?}", brief(&mails))),
        }
    })
    .await
}

// issue: secrets at rest (rules I1, I2): a delivered code mail is emptied in the
// transaction that records it DELIVERED: no text column of its row, no attempt and no event
// of notification's schema holds the code, and the API never shows it; the code still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_delivered_code_mail_keeps_no_code() {
    let s = Suite::start().await;
    let pool = PgPool::connect(&s.db.url).await.expect("connect");
    let email = fresh_email();
    s.register(&email, "Camille Martin", PASSWORD, "fr").await;
    let (notification, message) = s.mail_to(&email, Kind::EmailVerification, "fr").await;
    let code = code_in(&message);
    let id = &notification.notification_id;

    let found = code_at_rest(&pool, id, &code).await;
    assert!(found.is_empty(), "the code is still stored in {found:?}");
    let (text, html, redacted): (String, String, bool) = sqlx::query_as(
        "SELECT text_body, html_body, redact_time IS NOT NULL FROM notification.notifications \
         WHERE notification_id = $1::uuid",
    )
    .bind(id)
    .fetch_one(&pool)
    .await
    .expect("row");
    assert!(
        text.is_empty() && html.is_empty() && redacted,
        "emptied: {text:?} {html:?}"
    );
    let api = shown(&s, id, &email).await;
    assert!(!api.contains(&code), "the API shows the code: {api}");
    assert_eq!(notification.state, State::Delivered as i32);
    let refused = retry(&s, id).await.unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::FailedPrecondition,
        "{refused:?}"
    );

    // the mailed code is the one that works (rule I1)
    s.verify_email(&email, &code, PASSWORD).await;
}

// issue: secrets at rest (rule I2): a code mail the mail server refuses for good is DEAD and
// emptied in the same transaction; an operator's RetryNotification is refused with
// FAILED_PRECONDITION (the code was withdrawn: a retry would mail no code), and nothing is
// sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_code_mail_keeps_no_code_and_is_not_retried() {
    let s = Suite::start().await;
    let pool = PgPool::connect(&s.db.url).await.expect("connect");
    let user = s.user("en").await;
    s.smtp()
        .fail_next_to(&user.email, 1, 550, "5.1.1 mailbox unavailable");
    s.identity()
        .request_password_reset(ipb::RequestPasswordResetRequest {
            email: user.email.clone(),
        })
        .await
        .expect("reset");
    let mut reader = s.code_reader();
    let mut mailed = reader.next_code(&user.email).await;
    while mailed.purpose != ipb::VerificationPurpose::PasswordReset {
        mailed = reader.next_code(&user.email).await;
    }
    let mail = the_code_mail(&s, &user.email, Kind::PasswordReset).await;
    let id = mail.notification_id.clone();
    let dead = s.wait_state(&id, State::Dead).await;
    assert_eq!(outcomes(&dead), [(Outcome::PermanentFailure, 550)]);

    let found = code_at_rest(&pool, &id, &mailed.code).await;
    assert!(found.is_empty(), "the code is still stored in {found:?}");
    let api = shown(&s, &id, &user.email).await;
    assert!(!api.contains(&mailed.code), "the API shows the code: {api}");

    refused_retry_sends_nothing(&s, &id).await;
    assert_eq!(s.get(&id).await.state, State::Dead as i32, "still DEAD");
}

// issue: secrets at rest (rule I1): a code mail not delivered when its code expires (here
// waiting an hour for its next attempt) is emptied by the sweep and given up (DEAD, with an
// attempt that says why, and its event); before the expiry it kept the code and the
// event's expire_time.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_expired_undelivered_code_mail_is_emptied_by_the_sweep() {
    let s = Suite::start_with(&[
        "--retry-base",
        "1h",
        "--retry-max",
        "1h",
        "--code-sweep-interval",
        "200ms",
    ])
    .await;
    let pool = PgPool::connect(&s.db.url).await.expect("connect");
    let email = fresh_email();
    s.smtp()
        .fail_next_to(&email, 1, 451, "4.3.0 try again later");
    s.register(&email, "Alex Doe", PASSWORD, "en").await;
    let mailed = s.code_reader().next_code(&email).await;
    let mail = the_code_mail(&s, &email, Kind::EmailVerification).await;
    let id = mail.notification_id.clone();
    let failed = s.wait_state(&id, State::Failed).await;
    assert_eq!(outcomes(&failed), [(Outcome::TransientFailure, 451)]);

    // Before the expiry the mail keeps its code (to send it), and the code's expiry.
    let found = code_at_rest(&pool, &id, &mailed.code).await;
    assert!(
        found.contains(&"notifications.text_body".to_owned())
            && found.contains(&"notifications.html_body".to_owned()),
        "{found:?}"
    );
    let api = shown(&s, &id, &email).await;
    assert!(!api.contains(&mailed.code), "the API shows the code: {api}");
    let kept_expiry: bool = sqlx::query_scalar(
        "SELECT code_expire_time > now() + interval '23 hours' FROM notification.notifications \
         WHERE notification_id = $1::uuid",
    )
    .bind(&id)
    .fetch_one(&pool)
    .await
    .expect("expiry");
    assert!(kept_expiry, "the event's expire_time (24 h) is kept");

    // The code expires.
    let updated = sqlx::query(
        "UPDATE notification.notifications SET code_expire_time = now() - interval '1 second' \
         WHERE notification_id = $1::uuid",
    )
    .bind(&id)
    .execute(&pool)
    .await
    .expect("expire")
    .rows_affected();
    assert_eq!(updated, 1);

    let dead = s.wait_state(&id, State::Dead).await;
    assert_eq!(
        outcomes(&dead),
        [
            (Outcome::TransientFailure, 451),
            (Outcome::PermanentFailure, 0)
        ]
    );
    assert!(
        dead.attempts[1].detail.contains("code expired"),
        "{dead:#?}"
    );
    let found = code_at_rest(&pool, &id, &mailed.code).await;
    assert!(found.is_empty(), "the code is still stored in {found:?}");
    let event = s
        .find_event(|event| match &event.payload {
            Some(pb::event::Payload::NotificationDead(dead)) => dead
                .notification
                .as_ref()
                .filter(|n| n.notification_id == id)
                .cloned(),
            _ => None,
        })
        .await;
    assert_eq!(event.state, State::Dead as i32);
    refused_retry_sends_nothing(&s, &id).await;
}

// rules I1, N1: a registration mails the address a code in the registrant's language (the
// locale's primary subtag, else en); the address cannot sign in before the proof, and the
// mailed code proves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_registration_code_arrives_in_the_registrants_language_and_proves_the_address() {
    let s = Suite::start().await;
    for (locale, expected) in [("fr", "fr"), ("en", "en"), ("fr-CA", "fr"), ("de", "en")] {
        let email = fresh_email();
        let response = s.register(&email, "Camille Martin", PASSWORD, locale).await;
        assert_eq!(response, ipb::RegisterUserResponse {}, "rule I2: nothing");
        let (notification, message) = s.mail_to(&email, Kind::EmailVerification, expected).await;
        assert!(cites(&notification.rule, "I1"), "{notification:?}");
        assert!(!notification.recipient_user_id.is_empty());
        assert!(
            notification.source_event_id.starts_with("identity:"),
            "{notification:?}"
        );
        let code = code_in(&message);

        // rule I1: unproven, the account cannot sign in
        let refused = s.sign_in(&email, PASSWORD).await.unwrap_err();
        assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
        let user = s.verify_email(&email, &code, PASSWORD).await;
        assert_eq!(user.user_id, notification.recipient_user_id);
        assert!(user.email_verified, "{user:?}");
        assert_eq!(user.state, ipb::UserState::Active as i32, "{user:?}");
        s.sign_in(&email, PASSWORD)
            .await
            .expect("the proven account signs in");
    }
}

// rule I2: registering a taken address answers exactly as for a free one; the address is
// told that someone tried, with how to reset its password, in the account's language (N1),
// and receives no code; the stranger's password never works.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_taken_address_is_told_someone_tried_and_gets_no_code() {
    let s = Suite::start().await;
    let owner = s.user("fr").await;
    let free = fresh_email();
    let free_response = s.register(&free, "Someone", OTHER_PASSWORD, "en").await;
    let taken_response = s
        .register(&owner.email, "Someone", OTHER_PASSWORD, "en")
        .await;
    assert_eq!(taken_response, free_response, "rule I2: the same answer");

    // the free address gets its code, the taken one the notice
    s.mail_to(&free, Kind::EmailVerification, "en").await;
    let (notification, message) = s
        .mail_to(&owner.email, Kind::RegistrationAddressTaken, "fr")
        .await;
    assert!(cites(&notification.rule, "I2"), "{notification:?}");
    assert_eq!(uuid(&notification.recipient_user_id), owner.id);
    let text = normalize(message.text.as_deref().unwrap_or_default());
    let html = message.html.as_deref().unwrap_or_default();
    for part in [text.as_str(), html] {
        assert!(
            part.contains("RequestPasswordReset"),
            "how to reset: {part}"
        );
        assert!(part.contains(&owner.email), "names the address: {part}");
    }
    assert!(
        !text.lines().any(|line| {
            let line = line.trim();
            line.len() >= 6 && line.chars().all(|c| c.is_ascii_digit())
        }),
        "no code in the notice: {text}"
    );
    // The notice is made from the registration's event: had a code been mailed for it, it
    // would have been applied first (one stream, in order).
    let codes = code_mails(&s, &owner.email).await;
    assert_eq!(
        codes.len(),
        1,
        "only the owner's own registration code: {:#?}",
        brief(&codes)
    );

    let refused = s.sign_in(&owner.email, OTHER_PASSWORD).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    s.sign_in(&owner.email, PASSWORD)
        .await
        .expect("the owner still signs in");
}

// rule I3: registering an address that looks the same as an existing account's (`rn` for
// `m`) creates nothing and tells that address it cannot be used, in the language asked for
// (N1), without a code and without naming the other account as its recipient.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_confusable_address_is_told_it_cannot_be_used() {
    let s = Suite::start().await;
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let existing = format!("m-{tag}@example.com");
    s.register(&existing, "Existing", PASSWORD, "en").await;
    let code = s.code_reader().next_code(&existing).await;
    s.verify_email(&existing, &code.code, PASSWORD).await;

    let lookalike = format!("rn-{tag}@example.com");
    let response = s.register(&lookalike, "Lookalike", PASSWORD, "fr").await;
    assert_eq!(response, ipb::RegisterUserResponse {}, "rule I2: nothing");
    let (notification, message) = s
        .mail_to(&lookalike, Kind::RegistrationAddressConfusable, "fr")
        .await;
    assert!(cites(&notification.rule, "I3"), "{notification:?}");
    assert_eq!(
        notification.recipient_user_id, "",
        "the address has no account"
    );
    let text = normalize(message.text.as_deref().unwrap_or_default());
    assert!(text.contains("I3"), "{text}");
    assert!(code_mails(&s, &lookalike).await.is_empty());
    let refused = s.sign_in(&lookalike, PASSWORD).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
}

// rule I2: a password reset answers alike for every address and mails a code only to an
// account; the mailed code sets the new password, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_password_reset_code_arrives_and_resets_the_password() {
    let s = Suite::start().await;
    let user = s.user("en").await;
    let nobody = fresh_email();
    let mut identity = s.identity();
    let for_nobody = identity
        .request_password_reset(ipb::RequestPasswordResetRequest {
            email: nobody.clone(),
        })
        .await
        .expect("reset for an unknown address")
        .into_inner();
    let for_user = identity
        .request_password_reset(ipb::RequestPasswordResetRequest {
            email: user.email.clone(),
        })
        .await
        .expect("reset for the user")
        .into_inner();
    assert_eq!(for_nobody, for_user, "rule I2: the same answer");

    let (notification, message) = s.mail_to(&user.email, Kind::PasswordReset, "en").await;
    assert!(cites(&notification.rule, "I2"), "{notification:?}");
    assert_eq!(uuid(&notification.recipient_user_id), user.id);
    let code = code_in(&message);
    identity
        .reset_password(ipb::ResetPasswordRequest {
            email: user.email.clone(),
            code: code.clone(),
            new_password: OTHER_PASSWORD.into(),
        })
        .await
        .expect("the mailed code resets the password");
    s.sign_in(&user.email, OTHER_PASSWORD)
        .await
        .expect("the new password works");
    let refused = s.sign_in(&user.email, PASSWORD).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    let again = identity
        .reset_password(ipb::ResetPasswordRequest {
            email: user.email.clone(),
            code,
            new_password: PASSWORD.into(),
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::InvalidArgument, "single use: {again:?}");
    assert!(s.to_address(&nobody).await.is_empty(), "nothing to nobody");
}

// rules I1, N1: a change of login e-mail mails the code to the new address and tells the
// current one (naming the new address, without the code), both in the user's language; the
// new address becomes the login only with the code.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_email_change_sends_the_code_to_the_new_address_and_tells_the_old() {
    let s = Suite::start().await;
    let user = s.user("fr").await;
    let token = s.customer_token(&user).await;
    let new_email = fresh_email();
    s.identity()
        .change_email(helpers::authed(
            &token,
            ipb::ChangeEmailRequest {
                user_id: user.id.to_string(),
                new_email: new_email.clone(),
                current_password: PASSWORD.into(),
            },
        ))
        .await
        .expect("change email");

    let (to_new, message) = s
        .mail_to(&new_email, Kind::EmailChangeVerification, "fr")
        .await;
    assert!(cites(&to_new.rule, "I1"), "{to_new:?}");
    assert_eq!(uuid(&to_new.recipient_user_id), user.id);
    let code = code_in(&message);
    let (to_old, notice) = s
        .mail_to(&user.email, Kind::EmailChangeRequested, "fr")
        .await;
    assert_eq!(uuid(&to_old.recipient_user_id), user.id);
    for part in [notice.text.as_deref(), notice.html.as_deref()] {
        let part = part.unwrap_or_default();
        assert!(part.contains(&new_email), "names the new address: {part}");
        assert!(!part.contains(&code), "no code to the old address");
    }

    // rule I1: the new address is not the login before its proof
    let early = s.sign_in(&new_email, PASSWORD).await.unwrap_err();
    assert_eq!(early.code(), Code::Unauthenticated, "{early:?}");
    let changed = s
        .identity()
        .confirm_email_change(helpers::authed(
            &token,
            ipb::ConfirmEmailChangeRequest {
                user_id: user.id.to_string(),
                code,
            },
        ))
        .await
        .expect("the mailed code confirms the change")
        .into_inner()
        .user
        .expect("user");
    assert_eq!(changed.email, new_email);
    s.sign_in(&new_email, PASSWORD)
        .await
        .expect("the new address is the login");
}

// rule I1: an invitation mails the address a code, in the language of the invitation (N1);
// it is the code identity sealed for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_invitation_mails_its_code() {
    let s = Suite::start().await;
    let email = fresh_email();
    let invited = s
        .identity()
        .invite_user(s.op(ipb::InviteUserRequest {
            email: email.clone(),
            display_name: "Dominique Invitée".into(),
            locale: "fr".into(),
        }))
        .await
        .expect("invite")
        .into_inner();
    assert!(invited.invited, "{invited:?}");
    let sealed = s.code_reader().next_code(&email).await;
    assert_eq!(sealed.purpose, ipb::VerificationPurpose::Invitation);
    let (notification, message) = s.mail_to(&email, Kind::Invitation, "fr").await;
    assert!(cites(&notification.rule, "I1"), "{notification:?}");
    assert_eq!(
        notification.recipient_user_id,
        invited.user.expect("user").user_id
    );
    assert_eq!(code_in(&message), sealed.code);
}

// rules I1, N3: a code identity withdrew before notification read it (used, or withdrawn
// after five wrong tries and followed by a newer one) is never mailed: its event is
// consumed without a mail. Notification is stopped while identity works, so the withdrawal
// surely comes first.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_withdrawn_code_is_never_mailed() {
    let mut s = Suite::start().await;
    s.stop_notification().await;
    // used: proven from the stream before any mail went out
    let used = fresh_email();
    s.register(&used, "Used", PASSWORD, "en").await;
    let code = s.code_reader().next_code(&used).await;
    s.verify_email(&used, &code.code, PASSWORD).await;
    // replaced: five wrong tries withdraw the first code, a new registration mails another
    let replaced = fresh_email();
    s.register(&replaced, "Replaced", PASSWORD, "en").await;
    let first = s.code_reader().next_code(&replaced).await.code;
    let wrong = if first == "000000" {
        "111111"
    } else {
        "000000"
    };
    for _ in 0..5 {
        s.identity()
            .verify_email(ipb::VerifyEmailRequest {
                email: replaced.clone(),
                code: wrong.into(),
                password: PASSWORD.into(),
            })
            .await
            .expect_err("a wrong code");
    }
    s.register(&replaced, "Replaced", PASSWORD, "en").await;
    let codes = s
        .find_identity_event({
            let mut seen = Vec::new();
            let (used, replaced) = (used.clone(), replaced.clone());
            move |event| {
                if let Some(Payload::EmailVerificationRequested(requested)) = &event.payload
                    && (requested.email == used || requested.email == replaced)
                {
                    seen.push((requested.email.clone(), requested.sealed_code.is_empty()));
                }
                (seen.len() == 3).then(|| seen.clone())
            }
        })
        .await;
    assert_eq!(
        codes,
        [
            (used.clone(), true),
            (replaced.clone(), true),
            (replaced.clone(), false)
        ],
        "identity emptied the used and the replaced code"
    );

    s.start_notification().await;
    // A later registration's mail: the stream was applied up to it, in order.
    let marker = fresh_email();
    s.register(&marker, "Marker", PASSWORD, "en").await;
    s.mail_to(&marker, Kind::EmailVerification, "en").await;
    let to_used = s.to_address(&used).await;
    assert!(to_used.is_empty(), "{:#?}", brief(&to_used));
    let (_, message) = s.mail_to(&replaced, Kind::EmailVerification, "en").await;
    eventually("one code mail to the replaced address", || async {
        let mails = code_mails(&s, &replaced).await;
        if mails.len() == 1 {
            Ok(())
        } else {
            Err(format!("{:#?}", brief(&mails)))
        }
    })
    .await;
    let newest = code_in(&message);
    s.verify_email(&replaced, &newest, PASSWORD).await;
}
