//! Proven addresses (rule I1), no enumeration (rule I2), codes and token revocation (rule
//! I4) through identity's gRPC interface, against a real Postgres.

use std::time::Duration;

use futures::StreamExt;
use kc_proto::identity::{self as pb, event::Payload};
use kc_runtime::outbox::Cursor;
use tonic::{Code, Status};

use crate::helpers::{Harness, PASSWORD, authed, expect_code, expect_field};

const OWN_PASSWORD: &str = "the owner's own passphrase";
const SQUATTER_PASSWORD: &str = "the squatter's passphrase";

async fn invite(h: &Harness, operator: &str, email: &str) -> pb::InviteUserResponse {
    h.invite_user(
        operator,
        pb::InviteUserRequest {
            email: email.into(),
            display_name: "Owner From The Contract".into(),
            locale: "fr".into(),
        },
    )
    .await
    .expect("invite")
    .into_inner()
}

async fn verify(h: &Harness, email: &str, code: &str, password: &str) -> Result<pb::User, Status> {
    h.client()
        .verify_email(pb::VerifyEmailRequest {
            email: email.into(),
            code: code.into(),
            password: password.into(),
        })
        .await
        .map(|response| response.into_inner().user.expect("user"))
}

async fn reset(h: &Harness, email: &str, code: &str, password: &str) -> Result<(), Status> {
    h.client()
        .reset_password(pb::ResetPasswordRequest {
            email: email.into(),
            code: code.into(),
            new_password: password.into(),
        })
        .await
        .map(|response| {
            // Only the revision of the proof it makes (T8), nothing of the account.
            let revision = response.into_inner().revision;
            assert!(revision.parse::<Cursor>().is_ok(), "{revision:?}");
        })
}

async fn request_reset(h: &Harness, email: &str) {
    let response = h
        .client()
        .request_password_reset(pb::RequestPasswordResetRequest {
            email: email.into(),
        })
        .await
        .expect("request a reset")
        .into_inner();
    // rule I2: the same empty answer for every address.
    assert_eq!(response, pb::RequestPasswordResetResponse {});
}

/// A six-digit code different from `code`, varied by `salt`.
fn wrong_code(code: &str, salt: u32) -> String {
    let mut n = (salt * 7919) % 1_000_000;
    if format!("{n:06}") == code {
        n = (n + 1) % 1_000_000;
    }
    format!("{n:06}")
}

#[track_caller]
fn assert_bad_code<T: std::fmt::Debug>(result: Result<T, Status>) {
    let status = expect_field(result, "code");
    assert_eq!(
        status.message(),
        "invalid argument: code: the code is wrong or expired (a registration claim also needs its password)"
    );
}

#[tokio::test]
async fn a_squatters_claim_is_discarded_by_the_invitation_and_the_owner_proof_wins() {
    // rule I1: a stranger registers the future contact's address before the operator gives
    // it a role. The account stays unproven; InviteUser (how every role given by e-mail is
    // bound) discards the stranger's claim; the mailbox owner proves the address with the
    // mailed code and its own password; the stranger's password never works.
    let h = Harness::start().await;
    let operator = h.operator().await;
    let owner = "owner@newco.example";
    h.register_with(owner, "Squatter", "en", SQUATTER_PASSWORD)
        .await;
    expect_code(
        h.login(owner, SQUATTER_PASSWORD).await,
        Code::Unauthenticated,
    );
    let squatters_code = h.code(owner).await.code;

    let invitation = invite(&h, &operator, owner).await;
    assert!(invitation.invited);
    let account = invitation.user.unwrap();
    assert_eq!(account.state, pb::UserState::Invited as i32);
    assert_eq!(account.display_name, "Owner From The Contract");
    // The squatter's code went with its claim.
    assert_bad_code(verify(&h, owner, &squatters_code, SQUATTER_PASSWORD).await);
    let mailed = h.code(owner).await;
    assert_eq!(mailed.purpose, pb::VerificationPurpose::Invitation);
    // The invitation code alone confirms no password.
    assert_bad_code(verify(&h, owner, &mailed.code, SQUATTER_PASSWORD).await);

    // The owner claims: RegisterUser, then the mailed code with its own password.
    h.register_with(owner, "Real Owner", "fr", OWN_PASSWORD)
        .await;
    let code = h.code(owner).await.code;
    // A code mailed for the owner's claim never activates a password the squatter chose.
    assert_bad_code(verify(&h, owner, &code, SQUATTER_PASSWORD).await);
    let proven = verify(&h, owner, &code, OWN_PASSWORD)
        .await
        .expect("owner proves");
    assert_eq!(proven.user_id, account.user_id);
    assert_eq!(proven.state, pb::UserState::Active as i32);
    assert!(proven.email_verified);
    assert_eq!(proven.display_name, "Real Owner");
    h.login(owner, OWN_PASSWORD).await.expect("owner signs in");
    expect_code(
        h.login(owner, SQUATTER_PASSWORD).await,
        Code::Unauthenticated,
    );

    // A proven account is returned as it is, not invited again.
    let again = invite(&h, &operator, owner).await;
    assert!(!again.invited);
    assert_eq!(again.user.unwrap().display_name, "Real Owner");
    // A later registration changes nothing (rule I2: the owner is told by mail).
    h.register_with(owner, "Squatter", "en", SQUATTER_PASSWORD)
        .await;
    h.login(owner, OWN_PASSWORD)
        .await
        .expect("still the owner's");
    // Customers may not invite.
    let (_, customer) = h.customer("someone@example.com").await;
    expect_code(
        h.invite_user(
            &customer,
            pb::InviteUserRequest {
                email: "x@example.com".into(),
                display_name: "X".into(),
                locale: String::new(),
            },
        )
        .await,
        Code::PermissionDenied,
    );
    expect_field(
        h.invite_user(
            &operator,
            pb::InviteUserRequest {
                email: "nobody-yet@example.com".into(),
                display_name: String::new(),
                locale: String::new(),
            },
        )
        .await,
        "display_name",
    );
}

#[tokio::test]
async fn a_password_reset_proves_the_address_and_ends_every_session() {
    // rules I2 and I4
    let h = Harness::start().await;
    let (ada, _) = h.customer("ada@example.com").await;
    let first = h.login("ada@example.com", PASSWORD).await.unwrap();
    let second = h.login("ada@example.com", PASSWORD).await.unwrap();

    // Every address gets the same answer; only an existing account is mailed a code.
    request_reset(&h, "nobody@example.com").await;
    request_reset(&h, "ada@example.com").await;
    let mailed = h.code("ada@example.com").await;
    assert_eq!(mailed.purpose, pb::VerificationPurpose::PasswordReset);
    // Wrong codes, and codes for unknown addresses, fail alike.
    assert_bad_code(
        reset(
            &h,
            "ada@example.com",
            &wrong_code(&mailed.code, 1),
            "a fresh passphrase",
        )
        .await,
    );
    assert_bad_code(reset(&h, "nobody@example.com", &mailed.code, "a fresh passphrase").await);
    expect_field(
        reset(&h, "ada@example.com", &mailed.code, "short").await,
        "new_password",
    );

    reset(&h, "ada@example.com", &mailed.code, "a fresh passphrase")
        .await
        .expect("reset");
    // Single use.
    assert_bad_code(reset(&h, "ada@example.com", &mailed.code, "another passphrase!").await);
    expect_code(
        h.login("ada@example.com", PASSWORD).await,
        Code::Unauthenticated,
    );
    let fresh = h
        .login("ada@example.com", "a fresh passphrase")
        .await
        .expect("the new password works");
    for session in [&first, &second] {
        expect_code(
            h.refresh(&session.refresh_token).await,
            Code::Unauthenticated,
        );
        let status = expect_code(
            h.get_user(&session.access_token, &ada.user_id).await,
            Code::Unauthenticated,
        );
        assert_eq!(status.message(), "access token revoked");
    }
    h.get_user(&fresh.access_token, &ada.user_id)
        .await
        .expect("a token of the new sign-in works");

    // An unproven account's reset proves it (rule I1) and discards the pending claim.
    h.register_with("eve@example.com", "Eve", "en", SQUATTER_PASSWORD)
        .await;
    request_reset(&h, "eve@example.com").await;
    let code = h.code("eve@example.com").await.code;
    reset(&h, "eve@example.com", &code, OWN_PASSWORD)
        .await
        .expect("reset proves");
    h.login("eve@example.com", OWN_PASSWORD)
        .await
        .expect("proven by the reset");
    expect_code(
        h.login("eve@example.com", SQUATTER_PASSWORD).await,
        Code::Unauthenticated,
    );
}

#[tokio::test]
async fn wrong_codes_across_rounds_lock_the_address_and_the_owner_gets_in_with_a_long_code() {
    // rule I1: claims cannot be guessed in unlimited rounds, and the lock cannot keep the
    // owner out.
    let h = Harness::start().await;
    let operator = h.operator().await;
    let owner = "target@example.com";
    invite(&h, &operator, owner).await;
    let mut guess = 0;
    // Four rounds of five wrong guesses: each round a fresh code (a new claim).
    for _round in 0..4 {
        h.register_with(owner, "Attacker", "en", SQUATTER_PASSWORD)
            .await;
        let code = h.code(owner).await.code;
        for _ in 0..5 {
            guess += 1;
            assert_bad_code(verify(&h, owner, &wrong_code(&code, guess), SQUATTER_PASSWORD).await);
        }
    }
    // 20 failures: the address is locked. A new claim gets a long code, and the short code
    // the attacker guesses against no longer exists.
    h.register_with(owner, "Attacker", "en", SQUATTER_PASSWORD)
        .await;
    let long = h.code(owner).await.code;
    assert_eq!(long.len(), 20, "codes mailed while locked are long");
    // Guesses against the long code never withdraw it.
    for n in 0..6 {
        assert_bad_code(verify(&h, owner, &format!("{n:020}"), SQUATTER_PASSWORD).await);
    }

    // The owner asks for a reset (or registers): the long code is outstanding, so it is
    // not replaced (and not mailed again within the minute); the owner uses it.
    request_reset(&h, owner).await;
    let mailed = h.code(owner).await;
    assert_eq!(
        mailed.code, long,
        "an outstanding long code is kept, not replaced"
    );
    assert_eq!(mailed.code.len(), 20);
    for n in 0..6 {
        assert_bad_code(reset(&h, owner, &format!("{n:020}"), "attacker's choice!!").await);
    }
    reset(&h, owner, &mailed.code.to_lowercase(), OWN_PASSWORD)
        .await
        .expect("the owner gets in with the long code");
    h.login(owner, OWN_PASSWORD).await.expect("owner signs in");
    // A success clears the counter: codes are short again.
    request_reset(&h, owner).await;
    assert_eq!(h.code(owner).await.code.len(), 6);
}

#[tokio::test]
async fn no_plaintext_code_in_the_outbox_nor_in_the_event_stream() {
    // Codes leave identity sealed to notification's key only, and once used, replaced or
    // expired nothing readable remains. Ada's code must outlive the steps up to its use,
    // however slow the machine: the test waits for the codes' expiry from Bob's
    // registration on, not for a fixed time.
    const CODE_TTL: Duration = Duration::from_secs(6);
    let h = Harness::start_with(&["--verification-code-ttl", "6s"]).await;
    let operator = h.operator().await;
    h.register("ada@example.com", "Ada", "en").await;
    let first = h.code("ada@example.com").await.code;
    h.register("ada@example.com", "Ada", "en").await;
    let second = h.code("ada@example.com").await.code;
    assert_eq!(
        first, second,
        "a second registration does not replace the code"
    );
    h.register("bob@example.com", "Bob", "en").await;
    let every_code_expired = tokio::time::Instant::now() + CODE_TTL + Duration::from_millis(100);
    let bob = h.code("bob@example.com").await.code;
    let codes = [first.clone(), second.clone(), bob];

    let options = kc_runtime::db::connect_options(&h.db.url, "identity").unwrap();
    let pool = sqlx::PgPool::connect_with(options).await.unwrap();
    let outbox = |pool: sqlx::PgPool| async move {
        sqlx::query_scalar::<_, Vec<u8>>("SELECT payload FROM outbox_events")
            .fetch_all(&pool)
            .await
            .unwrap()
    };
    let stored: Vec<Vec<u8>> = sqlx::query_scalar("SELECT code_hash FROM email_verifications")
        .fetch_all(&pool)
        .await
        .unwrap();
    for (payload, code) in outbox(pool.clone())
        .await
        .iter()
        .chain(stored.iter())
        .flat_map(|bytes| codes.iter().map(move |code| (bytes, code)))
    {
        assert!(
            !payload.windows(code.len()).any(|w| w == code.as_bytes()),
            "a plaintext code in identity's tables"
        );
    }
    // A reader that is not notification sees sealed boxes it cannot open (the second
    // registration, within the minute, mailed nothing).
    let mut sealed = Vec::new();
    for event in h.events_until_idle(&operator).await {
        let bytes = prost::Message::encode_to_vec(&event);
        for code in &codes {
            assert!(!bytes.windows(code.len()).any(|w| w == code.as_bytes()));
        }
        if let Some(Payload::EmailVerificationRequested(request)) = event.payload {
            sealed.push((request.email, request.sealed_code.is_empty()));
        }
    }
    assert_eq!(
        sealed,
        [
            ("ada@example.com".to_owned(), false),
            ("bob@example.com".to_owned(), false),
        ]
    );
    // Used and expired codes leave nothing sealed behind either.
    verify(&h, "ada@example.com", &second, PASSWORD)
        .await
        .expect("verify");
    tokio::time::sleep_until(every_code_expired).await;
    h.domain().await.sweep().await.unwrap();
    let left: Vec<Vec<u8>> = outbox(pool.clone()).await;
    for payload in left {
        let event = <pb::Event as prost::Message>::decode(payload.as_slice()).unwrap();
        if let Some(Payload::EmailVerificationRequested(request)) = event.payload {
            assert!(request.sealed_code.is_empty(), "{}", request.email);
        }
    }
    let remaining: i64 = sqlx::query_scalar("SELECT count(*) FROM email_verifications")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(remaining, 0);
}

#[tokio::test]
async fn correct_sign_ins_sixteen_at_a_time_never_lock() {
    // Only failures count towards the lock.
    let h = Harness::start().await;
    h.proven("busy@example.com", "Busy", "en").await;
    let mut done = 0;
    while done < 200 {
        let batch = (0..16.min(200 - done)).map(|_| {
            let mut client = h.client();
            tokio::spawn(async move {
                client
                    .authenticate(pb::AuthenticateRequest {
                        email: "busy@example.com".into(),
                        password: PASSWORD.into(),
                    })
                    .await
            })
        });
        for result in futures::future::join_all(batch).await {
            result.unwrap().expect("a correct sign-in never locks");
            done += 1;
        }
    }
}

#[tokio::test]
async fn the_user_itself_changes_its_login_email_with_a_code() {
    let h = Harness::start().await;
    let operator = h.operator().await;
    let (ada, token) = h.customer("ada@example.com").await;
    h.proven("taken@example.com", "Taken", "en").await;
    let change = |new_email: &str, password: &str| {
        let mut client = h.client();
        let request = authed(
            &token,
            pb::ChangeEmailRequest {
                user_id: ada.user_id.clone(),
                new_email: new_email.into(),
                current_password: password.into(),
            },
        );
        async move { client.change_email(request).await }
    };
    expect_field(
        change("new@example.com", "wrong password!!").await,
        "current_password",
    );
    // rule I2: a taken address answers alike and gets no code.
    assert_eq!(
        change("taken@example.com", PASSWORD)
            .await
            .unwrap()
            .into_inner(),
        pb::ChangeEmailResponse {}
    );
    assert_eq!(
        change("ada.new@example.com", PASSWORD)
            .await
            .unwrap()
            .into_inner(),
        pb::ChangeEmailResponse {}
    );
    let mailed = h.code("ada.new@example.com").await;
    assert_eq!(mailed.purpose, pb::VerificationPurpose::EmailChange);
    let events = h.events_until_idle(&operator).await;
    assert!(!events.iter().any(|e| matches!(&e.payload, Some(Payload::EmailVerificationRequested(r)) if r.email == "taken@example.com" && r.purpose() == pb::VerificationPurpose::EmailChange)));
    let told: Vec<&str> = events
        .iter()
        .filter_map(|e| match &e.payload {
            Some(Payload::EmailChangeRequested(r)) if r.email == "ada@example.com" => {
                Some(r.new_email.as_str())
            }
            _ => None,
        })
        .collect();
    assert_eq!(told, ["taken@example.com", "ada.new@example.com"]);
    // Another user may not confirm it.
    let (_, bob_token) = h.customer("bob@example.com").await;
    expect_code(
        h.confirm_email_change(
            &bob_token,
            pb::ConfirmEmailChangeRequest {
                user_id: ada.user_id.clone(),
                code: mailed.code.clone(),
            },
        )
        .await,
        Code::PermissionDenied,
    );
    let changed = h
        .confirm_email_change(
            &token,
            pb::ConfirmEmailChangeRequest {
                user_id: ada.user_id.clone(),
                code: mailed.code.clone(),
            },
        )
        .await
        .expect("confirm")
        .into_inner()
        .user
        .unwrap();
    assert_eq!(changed.email, "ada.new@example.com");
    assert!(changed.email_verified);
    h.login("ada.new@example.com", PASSWORD)
        .await
        .expect("the new address signs in");
    expect_code(
        h.login("ada@example.com", PASSWORD).await,
        Code::Unauthenticated,
    );
}

#[tokio::test]
async fn watch_revocations_streams_the_snapshot_then_live_revocations() {
    // rule I4
    let h = Harness::start().await;
    let operator = h.operator().await;
    let (ada, _) = h.customer("ada@example.com").await;
    let (bob, _) = h.customer("bob@example.com").await;
    let bob_session = h.login("bob@example.com", PASSWORD).await.unwrap();
    h.disable(&operator, &ada.user_id).await;
    // Public, like GetSigningKeys: no token.
    let mut stream = h
        .client()
        .watch_revocations(pb::WatchRevocationsRequest {})
        .await
        .expect("watch revocations")
        .into_inner();
    let mut next = async || {
        tokio::time::timeout(Duration::from_secs(20), stream.next())
            .await
            .expect("a message within 20 s")
            .expect("the stream goes on")
            .expect("a message")
    };
    let mut snapshot = Vec::new();
    loop {
        let message = next().await;
        snapshot.extend(message.revocations);
        if message.live {
            break;
        }
    }
    assert!(
        snapshot
            .iter()
            .any(|r| r.user_id == ada.user_id && r.session_id.is_empty())
    );
    assert!(
        snapshot
            .iter()
            .all(|r| r.expire_time.unwrap().seconds > r.issued_before.unwrap().seconds)
    );
    // Logout revokes that session's tokens, live.
    h.client()
        .revoke_session(pb::RevokeSessionRequest {
            refresh_token: bob_session.refresh_token.clone(),
        })
        .await
        .unwrap();
    // Ada's revocation, committed before the stream opened, may still be delivered live
    // after the snapshot (its notification races the snapshot's read): a repeat of the
    // snapshot (same user and session; its times may be computed anew), which clients apply
    // idempotently. The next new message is Bob's.
    let known = |r: &pb::TokenRevocation| {
        snapshot
            .iter()
            .any(|s| s.user_id == r.user_id && s.session_id == r.session_id)
    };
    let live = loop {
        let message = next().await;
        assert!(message.live);
        if message.revocations.iter().all(known) {
            continue;
        }
        break message;
    };
    assert_eq!(live.revocations.len(), 1);
    assert_eq!(live.revocations[0].user_id, bob.user_id);
    assert!(!live.revocations[0].session_id.is_empty());
    let status = expect_code(
        h.get_user(&bob_session.access_token, &bob.user_id).await,
        Code::Unauthenticated,
    );
    assert_eq!(status.message(), "access token revoked");
}

/// The EmailVerificationRequested events of `email` whose sealed code is still there.
async fn sealed_mails(h: &Harness, operator: &str, email: &str) -> usize {
    let mut count = 0;
    for event in h.events_until_idle(operator).await {
        if let Some(Payload::EmailVerificationRequested(request)) = event.payload
            && request.email == email
            && !request.sealed_code.is_empty()
        {
            count += 1;
        }
    }
    count
}

#[tokio::test]
async fn repeated_requests_by_a_third_party_never_void_the_owners_code() {
    // rule I1: anyone may call RequestPasswordReset or RegisterUser for an address, again
    // and again; the code the owner holds stays usable, and the address is mailed at most
    // once a minute.
    let h = Harness::start().await;
    let operator = h.operator().await;
    let owner = "held@example.com";
    invite(&h, &operator, owner).await;
    let held = h.code(owner).await.code;
    for _ in 0..5 {
        request_reset(&h, owner).await;
        h.register_with(owner, "Squatter", "en", SQUATTER_PASSWORD)
            .await;
    }
    // The reset requests run on their own task: give them a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        sealed_mails(&h, &operator, owner).await,
        1,
        "the invitation only: no mail again within the minute"
    );
    assert_eq!(h.code(owner).await.code, held);
    // The last claim rides on the code, but the owner uses it with ResetPassword.
    reset(&h, owner, &held, OWN_PASSWORD)
        .await
        .expect("the owner's code still works");
    h.login(owner, OWN_PASSWORD).await.expect("owner signs in");
    expect_code(
        h.login(owner, SQUATTER_PASSWORD).await,
        Code::Unauthenticated,
    );
    assert_eq!(
        sealed_mails(&h, &operator, owner).await,
        0,
        "used: nothing sealed left"
    );
}

#[tokio::test]
async fn proving_a_disabled_unproven_account_discards_its_earlier_password() {
    // rule I1: a password set before the proof (here an older row's) never becomes usable
    // because someone proved the address of a disabled account an operator enables later.
    let h = Harness::start().await;
    let operator = h.operator().await;
    h.proven("known@example.com", "Known", "en").await;
    let owner = "dormant@example.com";
    let account = invite(&h, &operator, owner).await.user.unwrap();
    h.disable(&operator, &account.user_id).await;
    let options = kc_runtime::db::connect_options(&h.db.url, "identity").unwrap();
    let pool = sqlx::PgPool::connect_with(options).await.unwrap();
    // A stranger's password on the unproven row (PASSWORD, copied from a known account).
    sqlx::query(
        "UPDATE users SET password_hash = (SELECT password_hash FROM users WHERE email = $1) \
         WHERE email = $2",
    )
    .bind("known@example.com")
    .bind(owner)
    .execute(&pool)
    .await
    .unwrap();
    request_reset(&h, owner).await;
    let code = h.code(owner).await.code;
    let proven = verify(&h, owner, &code, "anything at all here")
        .await
        .expect("the mailbox owner proves the address");
    assert!(proven.email_verified);
    let enabled = h
        .enable_user(&operator, &account.user_id)
        .await
        .expect("enable")
        .into_inner()
        .user
        .unwrap();
    assert_eq!(
        enabled.state,
        pb::UserState::Invited as i32,
        "no password survived the proof"
    );
    expect_code(h.login(owner, PASSWORD).await, Code::Unauthenticated);
}

#[tokio::test]
async fn invitations_repeated_or_racing_within_the_mail_interval_send_one_code() {
    // rule I1: several sites adding the same new person at once (or one site twice) invite
    // it once: one account, one code, one mail; the other calls invite nobody. A stranger's
    // claim is still discarded by the next invitation (see the squatter's test above).
    let h = Harness::start().await;
    let operator = h.operator().await;
    let owner = "raced@example.com";
    let answers = futures::future::join_all((0..8).map(|_| invite(&h, &operator, owner))).await;
    let invited = answers.iter().filter(|answer| answer.invited).count();
    assert_eq!(invited, 1, "one call invites: {answers:?}");
    let ids: std::collections::BTreeSet<&str> = answers
        .iter()
        .map(|answer| answer.user.as_ref().expect("user").user_id.as_str())
        .collect();
    assert_eq!(ids.len(), 1, "one account");
    let held = h.code(owner).await.code;
    let again = invite(&h, &operator, owner).await;
    assert!(!again.invited, "invited again within the interval: kept");
    assert_eq!(h.code(owner).await.code, held, "the code is kept");
    assert_eq!(sealed_mails(&h, &operator, owner).await, 1, "one mail");
    reset(&h, owner, &held, OWN_PASSWORD)
        .await
        .expect("the one code proves the address");
    h.login(owner, OWN_PASSWORD)
        .await
        .expect("the owner signs in");
}
