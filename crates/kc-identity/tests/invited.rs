//! Invited users (created without a password) claim their account through `RegisterUser`
//! and prove the address with the mailed code; nobody gets in by registration alone.

mod common;

use std::time::Duration;

use common::{Harness, PASSWORD, authed, expect_code, expect_field};
use futures::StreamExt;
use kc_proto::identity::{self as pb, event::Payload};
use tonic::{Code, Status};

const INVITEE: &str = "invitee@example.com";
const INVITER_NAME: &str = "Named By The Primary";
const OWN_PASSWORD: &str = "the invitee's own passphrase";
const ATTACKER_PASSWORD: &str = "an attacker's chosen passphrase";

/// Invites `email` the way the gateway does: CreateUser without a password.
async fn invite(h: &Harness, operator: &str, email: &str) -> pb::User {
    let user = h
        .client()
        .create_user(authed(
            operator,
            pb::CreateUserRequest {
                email: email.into(),
                display_name: INVITER_NAME.into(),
                locale: "fr".into(),
                kind: pb::UserKind::Customer as i32,
                password: None,
            },
        ))
        .await
        .expect("invite")
        .into_inner()
        .user
        .expect("user");
    assert_eq!(user.state, pb::UserState::Invited as i32);
    user
}

async fn register(
    h: &Harness,
    email: &str,
    name: &str,
    password: &str,
) -> Result<pb::User, Status> {
    h.client()
        .register_user(pb::RegisterUserRequest {
            email: email.into(),
            display_name: name.into(),
            password: password.into(),
            locale: "en".into(),
        })
        .await
        .map(|response| response.into_inner().user.expect("user"))
}

/// VerifyEmail with `code`; `password` is the claim's (empty: none given).
async fn verify(
    h: &Harness,
    user_id: &str,
    code: &str,
    password: &str,
) -> Result<pb::User, Status> {
    h.client()
        .verify_email(pb::VerifyEmailRequest {
            user_id: user_id.into(),
            code: code.into(),
            password: password.into(),
        })
        .await
        .map(|response| response.into_inner().user.expect("user"))
}

async fn get(h: &Harness, operator: &str, user_id: &str) -> pb::User {
    h.client()
        .get_user(authed(
            operator,
            pb::GetUserRequest {
                user_id: user_id.into(),
            },
        ))
        .await
        .expect("get user")
        .into_inner()
        .user
        .expect("user")
}

/// The first `count` verification requests for `user_id`, in commit order, read from the
/// event stream as the notification service would.
async fn verification_requests(
    h: &Harness,
    operator: &str,
    user_id: &str,
    count: usize,
) -> Vec<pb::EmailVerificationRequested> {
    let mut stream = h
        .client()
        .watch_events(authed(
            operator,
            pb::WatchEventsRequest {
                after_cursor: String::new(),
            },
        ))
        .await
        .expect("watch")
        .into_inner();
    let mut found = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), async {
        while found.len() < count {
            let event = stream
                .next()
                .await
                .expect("event stream ended")
                .expect("event")
                .event
                .expect("event body");
            if let Some(Payload::EmailVerificationRequested(request)) = event.payload
                && event.user_id == user_id
            {
                found.push(request);
            }
        }
    })
    .await
    .expect("verification requests arrive within 20 s");
    found
}

/// The code of the `count`-th verification request for `user_id`.
async fn nth_code(h: &Harness, operator: &str, user_id: &str, count: usize) -> String {
    verification_requests(h, operator, user_id, count)
        .await
        .pop()
        .expect("requests")
        .code
}

/// A six-digit code that is not `code`.
fn other_code(code: &str, salt: u32) -> String {
    let value: u32 = code.parse().expect("numeric code");
    format!("{:06}", (value + 1 + salt) % 1_000_000)
}

#[track_caller]
fn assert_bad_credentials(result: Result<pb::AuthenticateResponse, Status>) {
    let status = expect_code(result, Code::Unauthenticated);
    assert_eq!(status.message(), "invalid e-mail or password");
}

#[tokio::test]
async fn invited_user_claims_its_account_with_the_mailed_code() {
    let h = Harness::start().await;
    let operator = h.operator().await;
    let invited = invite(&h, &operator, INVITEE).await;
    let fresh = register(&h, "fresh@example.com", "Fresh Person", PASSWORD)
        .await
        .expect("fresh registration");

    // Same e-mail in another case: the invitee's own claim.
    let claimed = register(&h, "  Invitee@Example.COM ", "Inès Claimed", OWN_PASSWORD)
        .await
        .expect("a claim answers like a registration");
    // The shape of a fresh registration; the invited user's id (to verify); what the
    // caller typed, never what the inviter wrote.
    assert_eq!(claimed.user_id, invited.user_id);
    assert_eq!(claimed.email, INVITEE);
    assert_eq!(claimed.display_name, "Inès Claimed");
    assert_eq!(claimed.locale, "en");
    assert!(!claimed.email_verified);
    assert_eq!(claimed.kind, fresh.kind);
    assert_eq!(claimed.state, pb::UserState::Invited as i32);
    assert!(claimed.create_time.is_some() && claimed.update_time.is_some());
    assert!(!claimed.etag.is_empty());

    // Nothing changed on the user itself.
    assert_eq!(get(&h, &operator, &invited.user_id).await, invited);
    // Registration alone never lets anyone in: same answer as a wrong password.
    assert_bad_credentials(h.login(INVITEE, OWN_PASSWORD).await);

    // The invitation's code and the claim's code; the mail greets with the stored name.
    let requests = verification_requests(&h, &operator, &invited.user_id, 2).await;
    let claim_request = &requests[1];
    assert_eq!(claim_request.email, INVITEE);
    assert_eq!(claim_request.display_name, INVITER_NAME);
    assert_eq!(claim_request.locale, "fr");
    // The invitation's code was replaced by the claim's (refused even with the claim's
    // password).
    if requests[0].code != claim_request.code {
        expect_field(
            verify(&h, &invited.user_id, &requests[0].code, OWN_PASSWORD).await,
            "code",
        );
    }

    let active = verify(&h, &invited.user_id, &claim_request.code, OWN_PASSWORD)
        .await
        .expect("verify the claim");
    assert_eq!(active.state, pb::UserState::Active as i32);
    assert!(active.email_verified);
    assert_eq!(active.display_name, "Inès Claimed");
    assert_eq!(active.locale, "en");
    assert_ne!(active.etag, invited.etag);

    let session = h
        .login(INVITEE, OWN_PASSWORD)
        .await
        .expect("claimed user signs in");
    assert_eq!(session.user.expect("user").user_id, invited.user_id);
    // Single use.
    expect_field(
        verify(&h, &invited.user_id, &claim_request.code, OWN_PASSWORD).await,
        "code",
    );

    // The activation is published as UserUpdated (what kc-access and kc-notification read).
    let mut stream = h
        .client()
        .watch_events(authed(
            &operator,
            pb::WatchEventsRequest {
                after_cursor: String::new(),
            },
        ))
        .await
        .expect("watch")
        .into_inner();
    let published = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let event = stream
                .next()
                .await
                .expect("event stream ended")
                .expect("event")
                .event
                .expect("event body");
            if let Some(Payload::UserUpdated(updated)) = event.payload
                && event.user_id == invited.user_id
            {
                return updated.user.expect("user");
            }
        }
    })
    .await
    .expect("UserUpdated arrives within 20 s");
    assert_eq!(published, active);
}

#[tokio::test]
async fn the_last_registration_of_an_invited_email_wins() {
    let h = Harness::start().await;
    let operator = h.operator().await;
    let invited = invite(&h, &operator, INVITEE).await;
    register(&h, INVITEE, "First Try", "first passphrase here")
        .await
        .expect("first claim");
    register(&h, INVITEE, "Second Try", "second passphrase here")
        .await
        .expect("second claim");
    let requests = verification_requests(&h, &operator, &invited.user_id, 3).await;
    let (first, last) = (&requests[1].code, &requests[2].code);
    // The first code was replaced: refused even with the password of the claim that holds.
    if first != last {
        expect_field(
            verify(&h, &invited.user_id, first, "second passphrase here").await,
            "code",
        );
    }
    let active = verify(&h, &invited.user_id, last, "second passphrase here")
        .await
        .expect("the last code works");
    assert_eq!(active.display_name, "Second Try");
    assert_bad_credentials(h.login(INVITEE, "first passphrase here").await);
    h.login(INVITEE, "second passphrase here")
        .await
        .expect("the last password signs in");
}

#[tokio::test]
async fn an_attacker_without_the_code_never_gets_in_and_the_owner_still_can() {
    let h = Harness::start().await;
    let operator = h.operator().await;
    let invited = invite(&h, &operator, INVITEE).await;

    let attacker_view = register(&h, INVITEE, "Attacker", ATTACKER_PASSWORD)
        .await
        .expect("indistinguishable from a registration");
    assert_eq!(attacker_view.display_name, "Attacker");
    assert_bad_credentials(h.login(INVITEE, ATTACKER_PASSWORD).await);
    // Guessing wears the code out: five wrong tries and even the right code, with the
    // attacker's own (the claim's) password, fails.
    let mailed = nth_code(&h, &operator, &invited.user_id, 2).await;
    for salt in 0..5 {
        expect_field(
            verify(
                &h,
                &invited.user_id,
                &other_code(&mailed, salt),
                ATTACKER_PASSWORD,
            )
            .await,
            "code",
        );
    }
    expect_field(
        verify(&h, &invited.user_id, &mailed, ATTACKER_PASSWORD).await,
        "code",
    );
    assert_bad_credentials(h.login(INVITEE, ATTACKER_PASSWORD).await);
    // The user, its name included, is as the inviter left it.
    assert_eq!(get(&h, &operator, &invited.user_id).await, invited);

    // The owner's own claim and code still work, and only its password signs in.
    register(&h, INVITEE, "Real Owner", OWN_PASSWORD)
        .await
        .expect("owner's claim");
    let code = nth_code(&h, &operator, &invited.user_id, 3).await;
    let active = verify(&h, &invited.user_id, &code, OWN_PASSWORD)
        .await
        .expect("owner verifies");
    assert_eq!(active.display_name, "Real Owner");
    h.login(INVITEE, OWN_PASSWORD)
        .await
        .expect("owner signs in");
    assert_bad_credentials(h.login(INVITEE, ATTACKER_PASSWORD).await);
    // Once active, the address can no longer be claimed: the attacker is refused outright.
    expect_code(
        register(&h, INVITEE, "Attacker Again", ATTACKER_PASSWORD).await,
        Code::AlreadyExists,
    );
    h.login(INVITEE, OWN_PASSWORD)
        .await
        .expect("owner still signs in");
}

/// A verification that fails like a wrong code: InvalidArgument on `code`, one message for
/// a wrong code and a claim's wrong or missing password.
#[track_caller]
fn assert_bad_code(result: Result<pb::User, Status>) {
    let status = expect_field(result, "code");
    let violations = kc_runtime::error::field_violations(&status);
    assert_eq!(
        violations
            .iter()
            .map(|v| (v.field.as_str(), v.description.as_str()))
            .collect::<Vec<_>>(),
        [(
            "code",
            "verification code is invalid or expired (an account claim also needs its password)"
        )]
    );
}

#[tokio::test]
async fn a_code_mailed_after_an_attackers_claim_does_not_activate_the_attackers_password() {
    let h = Harness::start().await;
    let operator = h.operator().await;
    let invited = invite(&h, &operator, INVITEE).await;

    // The owner claims; right after, the attacker claims the same address. The last claim
    // wins: the pending password is the attacker's, and its code goes to the owner's mailbox.
    register(&h, INVITEE, "Real Owner", OWN_PASSWORD)
        .await
        .expect("owner's claim");
    register(&h, INVITEE, "Attacker", ATTACKER_PASSWORD)
        .await
        .expect("attacker's claim");
    let requests = verification_requests(&h, &operator, &invited.user_id, 3).await;
    let (owners_code, attackers_code) = (&requests[1].code, &requests[2].code);
    assert!(
        requests.iter().all(|request| request.email == INVITEE),
        "every code goes to the invited address"
    );
    if owners_code != attackers_code {
        assert_bad_code(verify(&h, &invited.user_id, owners_code, OWN_PASSWORD).await);
    }

    // The owner, reading the newest mail, verifies with its own password: that is not the
    // pending claim's password, so nothing is activated (before the fix this activated the
    // attacker's password).
    assert_bad_code(verify(&h, &invited.user_id, attackers_code, OWN_PASSWORD).await);
    let still = get(&h, &operator, &invited.user_id).await;
    assert_eq!(still.state, pb::UserState::Invited as i32);
    assert_eq!(still, invited, "the user is as the inviter left it");
    // The attacker's password does not sign in (the code that would confirm it sits in the
    // owner's mailbox), nor does the owner's.
    assert_bad_credentials(h.login(INVITEE, ATTACKER_PASSWORD).await);
    assert_bad_credentials(h.login(INVITEE, OWN_PASSWORD).await);

    // The owner claims again and verifies its own code with its own password.
    register(&h, INVITEE, "Real Owner", OWN_PASSWORD)
        .await
        .expect("owner's second claim");
    let owners_new_code = nth_code(&h, &operator, &invited.user_id, 4).await;
    // The code now answers the owner's claim: even with it, the attacker's password fails.
    assert_bad_code(verify(&h, &invited.user_id, &owners_new_code, ATTACKER_PASSWORD).await);
    let active = verify(&h, &invited.user_id, &owners_new_code, OWN_PASSWORD)
        .await
        .expect("the owner verifies its claim");
    assert_eq!(active.state, pb::UserState::Active as i32);
    assert!(active.email_verified);
    assert_eq!(active.display_name, "Real Owner");
    let session = h
        .login(INVITEE, OWN_PASSWORD)
        .await
        .expect("the owner signs in");
    assert_eq!(session.user.expect("user").user_id, invited.user_id);
    assert_bad_credentials(h.login(INVITEE, ATTACKER_PASSWORD).await);
}

#[tokio::test]
async fn a_claim_verified_without_its_password_fails_and_counts_as_an_attempt() {
    let h = Harness::start().await;
    let operator = h.operator().await;
    let invited = invite(&h, &operator, INVITEE).await;
    register(&h, INVITEE, "Claimant", OWN_PASSWORD)
        .await
        .expect("claim");
    let code = nth_code(&h, &operator, &invited.user_id, 2).await;

    // The right code without a password, or with another one, fails like a wrong code and
    // activates nothing.
    assert_bad_code(verify(&h, &invited.user_id, &code, "").await);
    assert_bad_code(verify(&h, &invited.user_id, &code, ATTACKER_PASSWORD).await);
    assert_eq!(get(&h, &operator, &invited.user_id).await, invited);
    assert_bad_credentials(h.login(INVITEE, OWN_PASSWORD).await);

    // Both counted: three wrong codes make five failures, and then even the right code with
    // the right password is refused (it would have been accepted after four).
    for salt in 0..3 {
        assert_bad_code(verify(&h, &invited.user_id, &other_code(&code, salt), OWN_PASSWORD).await);
    }
    assert_bad_code(verify(&h, &invited.user_id, &code, OWN_PASSWORD).await);
    assert_eq!(get(&h, &operator, &invited.user_id).await, invited);
    assert_bad_credentials(h.login(INVITEE, OWN_PASSWORD).await);

    // A new claim mails a new code, which works with the password.
    register(&h, INVITEE, "Claimant", OWN_PASSWORD)
        .await
        .expect("claim again");
    let code = nth_code(&h, &operator, &invited.user_id, 3).await;
    let active = verify(&h, &invited.user_id, &code, OWN_PASSWORD)
        .await
        .expect("verify with the password");
    assert_eq!(active.state, pb::UserState::Active as i32);
    h.login(INVITEE, OWN_PASSWORD)
        .await
        .expect("claimant signs in");
}

#[tokio::test]
async fn active_and_disabled_users_are_never_changed_by_register() {
    let h = Harness::start().await;
    let operator = h.operator().await;
    let ada = register(&h, "ada@example.com", "Ada", PASSWORD)
        .await
        .expect("ada registers");
    let ada = get(&h, &operator, &ada.user_id).await;
    expect_code(
        register(&h, "ADA@example.com", "Not Ada", ATTACKER_PASSWORD).await,
        Code::AlreadyExists,
    );
    assert_eq!(get(&h, &operator, &ada.user_id).await, ada);
    h.login("ada@example.com", PASSWORD)
        .await
        .expect("ada's password still works");
    assert_bad_credentials(h.login("ada@example.com", ATTACKER_PASSWORD).await);

    // A disabled invited user cannot be claimed either.
    let gone = invite(&h, &operator, "gone@example.com").await;
    let gone = h
        .client()
        .disable_user(authed(
            &operator,
            pb::DisableUserRequest {
                user_id: gone.user_id.clone(),
            },
        ))
        .await
        .expect("disable")
        .into_inner()
        .user
        .expect("user");
    expect_code(
        register(&h, "gone@example.com", "Gone", OWN_PASSWORD).await,
        Code::AlreadyExists,
    );
    assert_eq!(get(&h, &operator, &gone.user_id).await, gone);

    // Neither refusal mailed a code: a later registration's code is the next one in the
    // stream, and ada still has only the code of her own registration.
    let marker = register(&h, "marker@example.com", "Marker", PASSWORD)
        .await
        .expect("marker registers");
    verification_requests(&h, &operator, &marker.user_id, 1).await;
    let mut stream = h
        .client()
        .watch_events(authed(
            &operator,
            pb::WatchEventsRequest {
                after_cursor: String::new(),
            },
        ))
        .await
        .expect("watch")
        .into_inner();
    let (mut ada_codes, mut gone_codes) = (0, 0);
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let event = stream
                .next()
                .await
                .expect("event stream ended")
                .expect("event")
                .event
                .expect("event body");
            match event.payload {
                Some(Payload::EmailVerificationRequested(_)) if event.user_id == marker.user_id => {
                    break;
                }
                Some(Payload::EmailVerificationRequested(_)) if event.user_id == ada.user_id => {
                    ada_codes += 1;
                }
                Some(Payload::EmailVerificationRequested(_)) if event.user_id == gone.user_id => {
                    gone_codes += 1;
                }
                _ => {}
            }
        }
    })
    .await
    .expect("marker's code arrives within 20 s");
    assert_eq!(
        ada_codes, 1,
        "only ada's own registration mailed her a code"
    );
    assert_eq!(gone_codes, 1, "only the invitation mailed a code");
}

#[tokio::test]
async fn a_claim_outlived_by_disabling_is_dropped_at_verification() {
    let h = Harness::start().await;
    let operator = h.operator().await;
    let invited = invite(&h, &operator, INVITEE).await;
    register(&h, INVITEE, "Claimant", OWN_PASSWORD)
        .await
        .expect("claim");
    let code = nth_code(&h, &operator, &invited.user_id, 2).await;
    h.client()
        .disable_user(authed(
            &operator,
            pb::DisableUserRequest {
                user_id: invited.user_id.clone(),
            },
        ))
        .await
        .expect("disable");
    let verified = verify(&h, &invited.user_id, &code, OWN_PASSWORD)
        .await
        .expect("the address is still proven");
    assert!(verified.email_verified);
    assert_eq!(verified.state, pb::UserState::Disabled as i32);
    assert_eq!(verified.display_name, INVITER_NAME);
    assert_bad_credentials(h.login(INVITEE, OWN_PASSWORD).await);
    // Enabled again, it is invited again: the dropped claim did not set a password.
    let enabled = h
        .client()
        .enable_user(authed(
            &operator,
            pb::EnableUserRequest {
                user_id: invited.user_id.clone(),
            },
        ))
        .await
        .expect("enable")
        .into_inner()
        .user
        .expect("user");
    assert_eq!(enabled.state, pb::UserState::Invited as i32);
    assert_bad_credentials(h.login(INVITEE, OWN_PASSWORD).await);
}

#[tokio::test]
async fn concurrent_claims_leave_exactly_the_last_one() {
    const CLAIMS: usize = 4;
    let h = Harness::start().await;
    let operator = h.operator().await;
    let invited = invite(&h, &operator, INVITEE).await;
    let tasks: Vec<_> = (0..CLAIMS)
        .map(|i| {
            let mut client = h.client();
            tokio::spawn(async move {
                client
                    .register_user(pb::RegisterUserRequest {
                        email: INVITEE.into(),
                        display_name: format!("Claimant {i}"),
                        password: format!("passphrase number {i}"),
                        locale: "en".into(),
                    })
                    .await
            })
        })
        .collect();
    for task in tasks {
        let user = task
            .await
            .expect("task")
            .expect("every claim answers")
            .into_inner()
            .user
            .expect("user");
        assert_eq!(user.user_id, invited.user_id);
        assert_eq!(user.state, pb::UserState::Invited as i32);
    }
    // The stream is in commit order and claims of one user commit one at a time: the last
    // code is the one that holds. Which claim it answers is not known until it is verified,
    // so each claimant tries it with its own password: exactly one claim (the last) holds,
    // the others' passwords are refused (fewer than five failures: the code survives
    // them), and the name comes from the same claim as the password. (That a replaced code
    // is refused is shown by `the_last_registration_of_an_invited_email_wins`.)
    let requests = verification_requests(&h, &operator, &invited.user_id, CLAIMS + 1).await;
    let last = &requests[CLAIMS].code;
    let mut activated = None;
    for i in 0..CLAIMS {
        match verify(
            &h,
            &invited.user_id,
            last,
            &format!("passphrase number {i}"),
        )
        .await
        {
            Ok(active) => {
                activated = Some((i, active));
                break;
            }
            Err(status) => {
                expect_field::<()>(Err(status), "code");
            }
        }
    }
    let (winner, active) = activated.expect("the last code works with one claim's password");
    assert_eq!(active.state, pb::UserState::Active as i32);
    assert_eq!(active.display_name, format!("Claimant {winner}"));
    h.login(INVITEE, &format!("passphrase number {winner}"))
        .await
        .expect("the winning claim's password signs in");
    for i in (0..CLAIMS).filter(|&i| i != winner) {
        assert_bad_credentials(h.login(INVITEE, &format!("passphrase number {i}")).await);
    }
}

#[tokio::test]
async fn verification_racing_a_new_claim_is_all_or_nothing() {
    let h = Harness::start().await;
    let operator = h.operator().await;
    for round in 0..6 {
        let email = format!("racer{round}@example.com");
        let invited = invite(&h, &operator, &email).await;
        register(&h, &email, "Claim A", "passphrase of claim a")
            .await
            .expect("claim a");
        let code_a = nth_code(&h, &operator, &invited.user_id, 2).await;
        let (verified, claimed) = tokio::join!(
            verify(&h, &invited.user_id, &code_a, "passphrase of claim a"),
            register(&h, &email, "Claim B", "passphrase of claim b"),
        );
        match (verified, claimed) {
            // The verification went first: A holds, B came too late for an invited user.
            (Ok(active), Err(status)) => {
                assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");
                assert_eq!(active.state, pb::UserState::Active as i32);
                assert_eq!(active.display_name, "Claim A");
                h.login(&email, "passphrase of claim a")
                    .await
                    .expect("a signs in");
                assert_bad_credentials(h.login(&email, "passphrase of claim b").await);
            }
            // B went first: A's code was replaced and nothing was activated.
            (Err(status), Ok(_)) => {
                assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
                let still = get(&h, &operator, &invited.user_id).await;
                assert_eq!(still.state, pb::UserState::Invited as i32);
                assert_bad_credentials(h.login(&email, "passphrase of claim a").await);
                assert_bad_credentials(h.login(&email, "passphrase of claim b").await);
                let code_b = nth_code(&h, &operator, &invited.user_id, 3).await;
                let active = verify(&h, &invited.user_id, &code_b, "passphrase of claim b")
                    .await
                    .expect("b's code works");
                assert_eq!(active.display_name, "Claim B");
                h.login(&email, "passphrase of claim b")
                    .await
                    .expect("b signs in");
            }
            (verified, claimed) => {
                panic!("verification and claim must exclude each other: {verified:?} / {claimed:?}")
            }
        }
    }
}
