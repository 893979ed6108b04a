//! Registration and proof of the address (rules I1, I2, I3): RegisterUser, VerifyEmail and
//! their codes.

use std::time::Duration;

use kc_proto::identity::{self as pb, event::Payload};
use kc_runtime::outbox::Cursor;
use tonic::Code;

use crate::helpers::{Harness, PASSWORD, expect_code, expect_field};

/// The events about `email`'s code mailing and registration attempts, in stream order,
/// read until the stream is idle.
async fn mail_events(h: &Harness, token: &str) -> Vec<pb::Event> {
    h.events_until_idle(token).await
}

/// A six-digit code different from `code`.
fn other_code(code: &str) -> String {
    if code == "000000" { "111111" } else { "000000" }.to_owned()
}

#[tokio::test]
async fn register_creates_an_unproven_account_that_the_code_proves() {
    // rule I1
    let h = Harness::start().await;
    h.register("  Eloise.Dupre@Example.FR ", "Éloïse Dupré-Nguyễn", "fr-ca")
        .await;
    let operator = h.operator().await;
    let pending = h
        .lookup_user(&operator, "eloise.dupre@example.fr")
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(pending.state, pb::UserState::Invited as i32);
    assert!(!pending.email_verified);
    // Nothing the claimant typed is on the account before the proof.
    assert_ne!(pending.display_name, "Éloïse Dupré-Nguyễn");
    // Unproven: it cannot sign in, and fails like a wrong password.
    let status = expect_code(
        h.login("eloise.dupre@example.fr", PASSWORD).await,
        Code::Unauthenticated,
    );
    assert_eq!(status.message(), "invalid e-mail or password");
    let mailed = h.code("eloise.dupre@example.fr").await;
    assert_eq!(mailed.purpose, pb::VerificationPurpose::Registration);
    assert_eq!(mailed.code.len(), 6);
    let user = h.verify("eloise.dupre@example.fr", PASSWORD).await;
    assert_eq!(user.user_id, pending.user_id);
    assert_eq!(user.email, "eloise.dupre@example.fr");
    assert_eq!(user.display_name, "Éloïse Dupré-Nguyễn");
    assert_eq!(user.locale, "fr-CA");
    assert!(user.email_verified);
    assert_eq!(user.kind, pb::UserKind::Customer as i32);
    assert_eq!(user.state, pb::UserState::Active as i32);
    assert!(!user.etag.is_empty());
    h.login("eloise.dupre@example.fr", PASSWORD)
        .await
        .expect("a proven account signs in");
    // Default locale.
    let other = h.proven("ada@example.com", "Ada", "").await;
    assert_eq!(other.locale, "en");
}

#[tokio::test]
async fn register_rejects_each_bad_field_and_writes_nothing() {
    let h = Harness::start().await;
    let valid = pb::RegisterUserRequest {
        email: "ada@example.com".into(),
        display_name: "Ada".into(),
        password: PASSWORD.into(),
        locale: "en".into(),
    };
    let cases: Vec<(&str, pb::RegisterUserRequest)> = vec![
        (
            "email",
            pb::RegisterUserRequest {
                email: "not-an-email".into(),
                ..valid.clone()
            },
        ),
        (
            "email",
            pb::RegisterUserRequest {
                email: "".into(),
                ..valid.clone()
            },
        ),
        (
            "display_name",
            pb::RegisterUserRequest {
                display_name: "".into(),
                ..valid.clone()
            },
        ),
        (
            "display_name",
            pb::RegisterUserRequest {
                display_name: "x".repeat(201),
                ..valid.clone()
            },
        ),
        (
            "display_name",
            pb::RegisterUserRequest {
                display_name: "bell\u{7}".into(),
                ..valid.clone()
            },
        ),
        (
            "password",
            pb::RegisterUserRequest {
                password: "short".into(),
                ..valid.clone()
            },
        ),
        (
            "password",
            pb::RegisterUserRequest {
                password: "p".repeat(1025),
                ..valid.clone()
            },
        ),
        (
            "locale",
            pb::RegisterUserRequest {
                locale: "french".into(),
                ..valid.clone()
            },
        ),
    ];
    for (field, request) in cases {
        expect_field(h.client().register_user(request).await, field);
    }
    // Several bad fields are all reported.
    let fields = kc_testkit::grpc::invalid_fields(
        h.client()
            .register_user(pb::RegisterUserRequest {
                email: "x".into(),
                password: "y".into(),
                ..valid.clone()
            })
            .await,
    );
    assert_eq!(fields, ["email", "password"]);
    // Nothing was written: the valid e-mail is still free, and registers.
    h.proven("ada@example.com", "Ada", "en").await;
}

#[tokio::test]
async fn display_names_with_format_characters_are_refused_everywhere() {
    // rule I3: a right-to-left override or a zero-width space can make a name read as
    // another's.
    let h = Harness::start().await;
    let operator = h.operator().await;
    let (ada, token) = h.customer("ada@example.com").await;
    for name in ["Ada \u{202E}ecalevol", "Ad\u{200B}a", "\u{2066}Ada\u{2069}"] {
        for status in [
            expect_field(
                h.client()
                    .register_user(pb::RegisterUserRequest {
                        email: "new@example.com".into(),
                        display_name: name.into(),
                        password: PASSWORD.into(),
                        locale: "en".into(),
                    })
                    .await,
                "display_name",
            ),
            expect_field(
                h.create_user(
                    &operator,
                    pb::CreateUserRequest {
                        email: "new@example.com".into(),
                        display_name: name.into(),
                        locale: "en".into(),
                        kind: pb::UserKind::Customer as i32,
                    },
                )
                .await,
                "display_name",
            ),
            expect_field(
                h.invite_user(
                    &operator,
                    pb::InviteUserRequest {
                        email: "new@example.com".into(),
                        display_name: name.into(),
                        locale: "en".into(),
                    },
                )
                .await,
                "display_name",
            ),
            expect_field(
                h.update_user(
                    &token,
                    pb::UpdateUserRequest {
                        user_id: ada.user_id.clone(),
                        display_name: Some(name.into()),
                        locale: None,
                        etag: String::new(),
                    },
                )
                .await,
                "display_name",
            ),
        ] {
            assert!(
                kc_testkit::checks::cites(status.message(), "I3"),
                "{status:?}"
            );
        }
    }
}

#[tokio::test]
async fn register_answers_alike_for_free_taken_unproven_and_confusable_addresses() {
    // rule I2 (and I3 for the look-alike): the whole answer is the same; what differs goes
    // by e-mail to the address.
    let h = Harness::start().await;
    let operator = h.operator().await;
    h.proven("taken@example.com", "Taken", "fr").await;
    h.invite_user(
        &operator,
        pb::InviteUserRequest {
            email: "invited@example.com".into(),
            display_name: "Invited".into(),
            locale: "en".into(),
        },
    )
    .await
    .unwrap();
    let request = |email: &str| pb::RegisterUserRequest {
        email: email.into(),
        display_name: "Someone".into(),
        password: PASSWORD.into(),
        locale: "en".into(),
    };
    // Cyrillic 'а' (U+0430) for the Latin 'a' of "taken".
    let confusable = "t\u{0430}ken@example.com";
    let mut answers = Vec::new();
    for email in [
        "free@example.com",
        "taken@example.com",
        "invited@example.com",
        confusable,
    ] {
        let started = std::time::Instant::now();
        let response = h.client().register_user(request(email)).await;
        let response = response.expect("register answers OK").into_inner();
        answers.push(response);
        eprintln!("register {email}: {:?}", started.elapsed());
    }
    assert!(answers.iter().all(|a| *a == pb::RegisterUserResponse {}));

    let events = mail_events(&h, &operator).await;
    let codes_to = |email: &str| {
        events
            .iter()
            .filter(|e| matches!(&e.payload, Some(Payload::EmailVerificationRequested(r)) if r.email == email && r.purpose() == pb::VerificationPurpose::Registration))
            .count()
    };
    let attempts_to = |email: &str| -> Vec<pb::RegistrationAttempted> {
        events
            .iter()
            .filter_map(|e| match &e.payload {
                Some(Payload::RegistrationAttempted(a)) if a.email == email => Some(a.clone()),
                _ => None,
            })
            .collect()
    };
    assert_eq!(codes_to("free@example.com"), 1);
    // The invited address holds its invitation code: the claim rides on it (it is not
    // replaced), and it is not mailed again within the minute.
    assert_eq!(codes_to("invited@example.com"), 0);
    let any_codes_to = |email: &str| {
        events
            .iter()
            .filter(|e| matches!(&e.payload, Some(Payload::EmailVerificationRequested(r)) if r.email == email))
            .count()
    };
    assert_eq!(any_codes_to("invited@example.com"), 1);
    assert_eq!(
        codes_to("taken@example.com"),
        1,
        "only its own registration's code"
    );
    let taken = attempts_to("taken@example.com");
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].refusal(), pb::RegistrationRefusal::AddressTaken);
    assert_eq!(taken[0].locale, "fr");
    assert_eq!(taken[0].display_name, "Taken");
    let lookalike = attempts_to(confusable);
    assert_eq!(lookalike.len(), 1);
    assert_eq!(
        lookalike[0].refusal(),
        pb::RegistrationRefusal::AddressConfusable
    );
    assert_eq!(codes_to(confusable), 0);
    // rule I3: the look-alike has no account.
    expect_code(h.lookup_user(&operator, confusable).await, Code::NotFound);
    // The proven account is untouched: its password still works.
    h.login("taken@example.com", PASSWORD)
        .await
        .expect("the owner still signs in");
}

#[tokio::test]
async fn confusable_addresses_are_refused_for_create_invite_and_change() {
    // rule I3
    let h = Harness::start().await;
    let operator = h.operator().await;
    h.proven("alice@example.com", "Alice", "en").await;
    let (bob, bob_token) = h.customer("bob@example.com").await;
    let lookalike = "\u{0430}lice@example.com";
    let status = expect_code(
        h.create_user(
            &operator,
            pb::CreateUserRequest {
                email: lookalike.into(),
                display_name: "Fake".into(),
                locale: "en".into(),
                kind: pb::UserKind::Customer as i32,
            },
        )
        .await,
        Code::FailedPrecondition,
    );
    assert!(
        kc_testkit::checks::cites(status.message(), "I3"),
        "{status:?}"
    );
    let status = expect_code(
        h.invite_user(
            &operator,
            pb::InviteUserRequest {
                email: lookalike.into(),
                display_name: "Fake".into(),
                locale: "en".into(),
            },
        )
        .await,
        Code::FailedPrecondition,
    );
    assert!(
        kc_testkit::checks::cites(status.message(), "I3"),
        "{status:?}"
    );
    // ChangeEmail answers alike (I2) but no code goes to the look-alike.
    let answer = h
        .change_email(
            &bob_token,
            pb::ChangeEmailRequest {
                user_id: bob.user_id.clone(),
                new_email: lookalike.into(),
                current_password: PASSWORD.into(),
            },
        )
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer, pb::ChangeEmailResponse {});
    let events = mail_events(&h, &operator).await;
    assert!(!events.iter().any(|e| matches!(&e.payload, Some(Payload::EmailVerificationRequested(r)) if r.email == lookalike)));
    assert!(events.iter().any(|e| matches!(&e.payload, Some(Payload::EmailChangeRequested(r)) if r.email == "bob@example.com" && r.new_email == lookalike)));
    expect_field(
        h.confirm_email_change(
            &bob_token,
            pb::ConfirmEmailChangeRequest {
                user_id: bob.user_id.clone(),
                code: "123456".into(),
            },
        )
        .await,
        "code",
    );
}

#[tokio::test]
async fn concurrent_registrations_of_one_email_in_different_cases_make_one_account() {
    let h = Harness::start().await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let mut client = h.client();
        // Vary the case of every letter by the bits of i.
        let email: String = "grace@example.com"
            .chars()
            .enumerate()
            .map(|(n, c)| {
                if (i >> (n % 5)) & 1 == 1 {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect();
        tasks.push(tokio::spawn(async move {
            client
                .register_user(pb::RegisterUserRequest {
                    email,
                    display_name: format!("Grace {i}"),
                    password: PASSWORD.into(),
                    locale: "en".into(),
                })
                .await
        }));
    }
    for task in tasks {
        assert_eq!(
            task.await
                .unwrap()
                .expect("every registration answers OK")
                .into_inner(),
            pb::RegisterUserResponse {}
        );
    }
    // One account; the last claim's code is the only one outstanding, and proves it.
    let user = h.verify("grace@example.com", PASSWORD).await;
    assert_eq!(user.email, "grace@example.com");
    assert_eq!(user.state, pb::UserState::Active as i32);
}

#[tokio::test]
async fn verify_email_with_the_mailed_code_once() {
    let h = Harness::start().await;
    h.register("ada@example.com", "Ada", "en").await;
    let code = h.code("ada@example.com").await.code;
    let verify = |email: &str, code: &str, password: &str| {
        let mut client = h.client();
        let request = pb::VerifyEmailRequest {
            email: email.into(),
            code: code.into(),
            password: password.into(),
        };
        async move { client.verify_email(request).await }
    };
    expect_field(
        verify("ada@example.com", &other_code(&code), PASSWORD).await,
        "code",
    );
    // The right code with another password does not confirm the claim.
    expect_field(
        verify("ada@example.com", &code, "someone else's pass").await,
        "code",
    );
    let verifying = verify("ada@example.com", &code, PASSWORD)
        .await
        .expect("verify")
        .into_inner();
    let verified = verifying.user.unwrap();
    assert!(verified.email_verified);
    // T8: the proof's revision, for access management's AwaitIdentityRevision.
    assert!(
        verifying.revision.parse::<Cursor>().is_ok(),
        "{:?}",
        verifying.revision
    );
    // Single use.
    expect_field(verify("ada@example.com", &code, PASSWORD).await, "code");
    // An unknown address fails exactly like a wrong code (rule I2).
    let unknown = expect_field(
        verify("nobody@example.com", "123456", PASSWORD).await,
        "code",
    );
    let wrong = expect_field(verify("ada@example.com", "123456", PASSWORD).await, "code");
    assert_eq!(unknown.message(), wrong.message());
    assert_eq!(
        unknown.message(),
        "invalid argument: code: the code is wrong or expired (a registration claim also needs its password)"
    );
    expect_field(verify("nope", "123456", PASSWORD).await, "email");
    expect_field(verify("ada@example.com", " ", PASSWORD).await, "code");
}

#[tokio::test]
async fn verification_codes_expire_and_wear_out() {
    // Codes live 1 s here (24 h by default).
    let h = Harness::start_with(&["--verification-code-ttl", "1s"]).await;
    h.register("ada@example.com", "Ada", "en").await;
    let code = h.code("ada@example.com").await.code;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let verify = |h: &Harness, code: String| {
        let mut client = h.client();
        async move {
            client
                .verify_email(pb::VerifyEmailRequest {
                    email: "ada@example.com".into(),
                    code,
                    password: PASSWORD.into(),
                })
                .await
        }
    };
    expect_field(verify(&h, code).await, "code");

    // Five wrong tries withdraw the code, even the right one fails after.
    let h = Harness::start().await;
    h.register("ada@example.com", "Ada", "en").await;
    let code = h.code("ada@example.com").await.code;
    for _ in 0..5 {
        expect_field(verify(&h, other_code(&code)).await, "code");
    }
    expect_field(verify(&h, code).await, "code");
}
