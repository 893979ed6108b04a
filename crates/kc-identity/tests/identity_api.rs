//! The identity service through its gRPC interface, against a real Postgres.

mod common;

use std::time::Duration;

use common::{Harness, OPERATOR_EMAIL, PASSWORD, authed, expect_code, expect_field};
use futures::StreamExt;
use kc_proto::identity::{self as pb, event::Payload};
use tonic::Code;

/// Reads the identity event stream from the start until `pick` finds something.
async fn find_event<T>(
    h: &Harness,
    token: &str,
    mut pick: impl FnMut(&pb::Event) -> Option<T>,
) -> T {
    let mut stream = h
        .client()
        .watch_events(authed(
            token,
            pb::WatchEventsRequest {
                after_cursor: String::new(),
            },
        ))
        .await
        .expect("watch")
        .into_inner();
    tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(item) = stream.next().await {
            let event = item.expect("event").event.expect("event body");
            if let Some(found) = pick(&event) {
                return found;
            }
        }
        panic!("event stream ended");
    })
    .await
    .expect("event arrives within 20 s")
}

/// The events about `email`'s code mailing and registration attempts, in stream order,
/// read until the stream is idle.
async fn mail_events(h: &Harness, token: &str) -> Vec<pb::Event> {
    let mut stream = h
        .client()
        .watch_events(authed(
            token,
            pb::WatchEventsRequest {
                after_cursor: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let mut events = Vec::new();
    while let Ok(Some(item)) = tokio::time::timeout(Duration::from_millis(700), stream.next()).await
    {
        events.push(item.unwrap().event.unwrap());
    }
    events
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
        .client()
        .lookup_user(authed(
            &operator,
            pb::LookupUserRequest {
                email: "eloise.dupre@example.fr".into(),
            },
        ))
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
    let status = expect_code(
        h.client()
            .register_user(pb::RegisterUserRequest {
                email: "x".into(),
                password: "y".into(),
                ..valid.clone()
            })
            .await,
        Code::InvalidArgument,
    );
    let fields: Vec<String> = kc_runtime::error::field_violations(&status)
        .into_iter()
        .map(|v| v.field)
        .collect();
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
                h.client()
                    .create_user(authed(
                        &operator,
                        pb::CreateUserRequest {
                            email: "new@example.com".into(),
                            display_name: name.into(),
                            locale: "en".into(),
                            kind: pb::UserKind::Customer as i32,
                        },
                    ))
                    .await,
                "display_name",
            ),
            expect_field(
                h.client()
                    .invite_user(authed(
                        &operator,
                        pb::InviteUserRequest {
                            email: "new@example.com".into(),
                            display_name: name.into(),
                            locale: "en".into(),
                        },
                    ))
                    .await,
                "display_name",
            ),
            expect_field(
                h.client()
                    .update_user(authed(
                        &token,
                        pb::UpdateUserRequest {
                            user_id: ada.user_id.clone(),
                            display_name: Some(name.into()),
                            locale: None,
                            etag: String::new(),
                        },
                    ))
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
    h.client()
        .invite_user(authed(
            &operator,
            pb::InviteUserRequest {
                email: "invited@example.com".into(),
                display_name: "Invited".into(),
                locale: "en".into(),
            },
        ))
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
    expect_code(
        h.client()
            .lookup_user(authed(
                &operator,
                pb::LookupUserRequest {
                    email: confusable.into(),
                },
            ))
            .await,
        Code::NotFound,
    );
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
        h.client()
            .create_user(authed(
                &operator,
                pb::CreateUserRequest {
                    email: lookalike.into(),
                    display_name: "Fake".into(),
                    locale: "en".into(),
                    kind: pb::UserKind::Customer as i32,
                },
            ))
            .await,
        Code::FailedPrecondition,
    );
    assert!(
        kc_testkit::checks::cites(status.message(), "I3"),
        "{status:?}"
    );
    let status = expect_code(
        h.client()
            .invite_user(authed(
                &operator,
                pb::InviteUserRequest {
                    email: lookalike.into(),
                    display_name: "Fake".into(),
                    locale: "en".into(),
                },
            ))
            .await,
        Code::FailedPrecondition,
    );
    assert!(
        kc_testkit::checks::cites(status.message(), "I3"),
        "{status:?}"
    );
    // ChangeEmail answers alike (I2) but no code goes to the look-alike.
    let answer = h
        .client()
        .change_email(authed(
            &bob_token,
            pb::ChangeEmailRequest {
                user_id: bob.user_id.clone(),
                new_email: lookalike.into(),
                current_password: PASSWORD.into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer, pb::ChangeEmailResponse {});
    let events = mail_events(&h, &operator).await;
    assert!(!events.iter().any(|e| matches!(&e.payload, Some(Payload::EmailVerificationRequested(r)) if r.email == lookalike)));
    assert!(events.iter().any(|e| matches!(&e.payload, Some(Payload::EmailChangeRequested(r)) if r.email == "bob@example.com" && r.new_email == lookalike)));
    expect_field(
        h.client()
            .confirm_email_change(authed(
                &bob_token,
                pb::ConfirmEmailChangeRequest {
                    user_id: bob.user_id.clone(),
                    code: "123456".into(),
                },
            ))
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
    let verified = verify("ada@example.com", &code, PASSWORD)
        .await
        .expect("verify")
        .into_inner()
        .user
        .unwrap();
    assert!(verified.email_verified);
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

#[tokio::test]
async fn create_user_is_for_operators_and_services_and_always_invites() {
    // rule I1: a created user is unproven until its owner proves the address.
    let h = Harness::start().await;
    let operator = h.operator().await;
    let service = h.service_token("kc-gateway").await;
    let (_, customer) = h.customer("ada@example.com").await;
    let request = |email: &str| pb::CreateUserRequest {
        email: email.into(),
        display_name: "Invited Person".into(),
        locale: "fr".into(),
        kind: pb::UserKind::Customer as i32,
    };
    let invited = h
        .client()
        .create_user(authed(&operator, request("invitee@example.com")))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(invited.state, pb::UserState::Invited as i32);
    assert_eq!(
        h.code("invitee@example.com").await.purpose,
        pb::VerificationPurpose::Invitation
    );
    // An invited user cannot sign in (no password), and fails like any wrong password.
    let status = expect_code(
        h.login("invitee@example.com", PASSWORD).await,
        Code::Unauthenticated,
    );
    assert_eq!(status.message(), "invalid e-mail or password");
    let by_service = h
        .client()
        .create_user(authed(&service, request("member@example.com")))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(by_service.state, pb::UserState::Invited as i32);
    expect_code(
        h.client()
            .create_user(authed(&operator, request("MEMBER@example.com")))
            .await,
        Code::AlreadyExists,
    );

    expect_code(
        h.client()
            .create_user(authed(&customer, request("x@example.com")))
            .await,
        Code::PermissionDenied,
    );
    // Services may not mint operators.
    expect_code(
        h.client()
            .create_user(authed(
                &service,
                pb::CreateUserRequest {
                    kind: pb::UserKind::Operator as i32,
                    ..request("op2@example.com")
                },
            ))
            .await,
        Code::PermissionDenied,
    );
    expect_field(
        h.client()
            .create_user(authed(
                &operator,
                pb::CreateUserRequest {
                    kind: pb::UserKind::Service as i32,
                    ..request("s@example.com")
                },
            ))
            .await,
        "kind",
    );
    expect_code(
        h.client().create_user(request("anon@example.com")).await,
        Code::Unauthenticated,
    );
}

#[tokio::test]
async fn customers_read_only_themselves() {
    let h = Harness::start().await;
    let (ada, ada_token) = h.customer("ada@example.com").await;
    let (bob, _) = h.customer("bob@example.com").await;
    let operator = h.operator().await;

    let me = h
        .client()
        .get_user(authed(
            &ada_token,
            pb::GetUserRequest {
                user_id: ada.user_id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(me.user.unwrap().email, "ada@example.com");
    expect_code(
        h.client()
            .get_user(authed(
                &ada_token,
                pb::GetUserRequest {
                    user_id: bob.user_id.clone(),
                },
            ))
            .await,
        Code::PermissionDenied,
    );
    h.client()
        .get_user(authed(
            &operator,
            pb::GetUserRequest {
                user_id: bob.user_id.clone(),
            },
        ))
        .await
        .expect("operators read anyone");
    expect_code(
        h.client()
            .get_user(authed(
                &operator,
                pb::GetUserRequest {
                    user_id: uuid::Uuid::new_v4().to_string(),
                },
            ))
            .await,
        Code::NotFound,
    );
    expect_field(
        h.client()
            .get_user(authed(
                &operator,
                pb::GetUserRequest {
                    user_id: "42".into(),
                },
            ))
            .await,
        "user_id",
    );

    // LookupUser: case-insensitive; a customer finds only itself, others are "not found".
    let found = h
        .client()
        .lookup_user(authed(
            &ada_token,
            pb::LookupUserRequest {
                email: "ADA@example.com".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found.user.unwrap().user_id, ada.user_id);
    expect_code(
        h.client()
            .lookup_user(authed(
                &ada_token,
                pb::LookupUserRequest {
                    email: "bob@example.com".into(),
                },
            ))
            .await,
        Code::NotFound,
    );
    expect_field(
        h.client()
            .lookup_user(authed(
                &operator,
                pb::LookupUserRequest {
                    email: "bob".into(),
                },
            ))
            .await,
        "email",
    );
}

#[tokio::test]
async fn batch_get_users_keeps_order_skips_unknown_and_caps_at_500() {
    let h = Harness::start().await;
    let (ada, ada_token) = h.customer("ada@example.com").await;
    let bob = h.proven("bob@example.com", "Bob", "en").await;
    let service = h.service_token("kc-notification").await;
    let ids = vec![
        bob.user_id.clone(),
        uuid::Uuid::new_v4().to_string(),
        ada.user_id.clone(),
    ];
    let users = h
        .client()
        .batch_get_users(authed(
            &service,
            pb::BatchGetUsersRequest {
                user_ids: ids.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .users;
    let got: Vec<&str> = users.iter().map(|u| u.user_id.as_str()).collect();
    assert_eq!(got, [bob.user_id.as_str(), ada.user_id.as_str()]);

    let too_many = (0..501).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    expect_field(
        h.client()
            .batch_get_users(authed(
                &service,
                pb::BatchGetUsersRequest { user_ids: too_many },
            ))
            .await,
        "user_ids",
    );
    expect_field(
        h.client()
            .batch_get_users(authed(
                &service,
                pb::BatchGetUsersRequest {
                    user_ids: vec!["bad".into()],
                },
            ))
            .await,
        "user_ids[0]",
    );
    expect_code(
        h.client()
            .batch_get_users(authed(
                &ada_token,
                pb::BatchGetUsersRequest { user_ids: ids },
            ))
            .await,
        Code::PermissionDenied,
    );
}

#[tokio::test]
async fn update_user_honours_the_etag() {
    let h = Harness::start().await;
    let (ada, token) = h.customer("ada@example.com").await;
    let updated = h
        .client()
        .update_user(authed(
            &token,
            pb::UpdateUserRequest {
                user_id: ada.user_id.clone(),
                display_name: Some("Ada Lovelace".into()),
                locale: Some("fr".into()),
                etag: ada.etag.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(updated.display_name, "Ada Lovelace");
    assert_eq!(updated.locale, "fr");
    assert_ne!(updated.etag, ada.etag);
    // The stale etag loses.
    expect_code(
        h.client()
            .update_user(authed(
                &token,
                pb::UpdateUserRequest {
                    user_id: ada.user_id.clone(),
                    display_name: Some("Someone Else".into()),
                    locale: None,
                    etag: ada.etag.clone(),
                },
            ))
            .await,
        Code::Aborted,
    );
    expect_field(
        h.client()
            .update_user(authed(
                &token,
                pb::UpdateUserRequest {
                    user_id: ada.user_id.clone(),
                    display_name: None,
                    locale: Some("not a locale".into()),
                    etag: updated.etag.clone(),
                },
            ))
            .await,
        "locale",
    );
    let (bob, _) = h.customer("bob@example.com").await;
    expect_code(
        h.client()
            .update_user(authed(
                &token,
                pb::UpdateUserRequest {
                    user_id: bob.user_id,
                    display_name: Some("Hacked".into()),
                    locale: None,
                    etag: String::new(),
                },
            ))
            .await,
        Code::PermissionDenied,
    );
}

#[tokio::test]
async fn two_updates_with_the_same_etag_one_wins() {
    let h = Harness::start().await;
    let (ada, token) = h.customer("ada@example.com").await;
    let mut tasks = Vec::new();
    for i in 0..2 {
        let mut client = h.client();
        let request = authed(
            &token,
            pb::UpdateUserRequest {
                user_id: ada.user_id.clone(),
                display_name: Some(format!("Ada {i}")),
                locale: None,
                etag: ada.etag.clone(),
            },
        );
        tasks.push(tokio::spawn(
            async move { client.update_user(request).await },
        ));
    }
    let results: Vec<_> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    assert_eq!(
        results
            .iter()
            .filter(|r| matches!(r, Err(s) if s.code() == Code::Aborted))
            .count(),
        1
    );
}

#[tokio::test]
async fn change_password_needs_the_current_one_and_ends_other_sessions() {
    let h = Harness::start().await;
    let (ada, token) = h.customer("ada@example.com").await;
    let session = h.login("ada@example.com", PASSWORD).await.unwrap();
    expect_field(
        h.client()
            .change_password(authed(
                &token,
                pb::ChangePasswordRequest {
                    user_id: ada.user_id.clone(),
                    current_password: "not my password".into(),
                    new_password: "a brand new passphrase".into(),
                },
            ))
            .await,
        "current_password",
    );
    expect_field(
        h.client()
            .change_password(authed(
                &token,
                pb::ChangePasswordRequest {
                    user_id: ada.user_id.clone(),
                    current_password: PASSWORD.into(),
                    new_password: "short".into(),
                },
            ))
            .await,
        "new_password",
    );
    h.client()
        .change_password(authed(
            &token,
            pb::ChangePasswordRequest {
                user_id: ada.user_id.clone(),
                current_password: PASSWORD.into(),
                new_password: "a brand new passphrase".into(),
            },
        ))
        .await
        .expect("change password");
    expect_code(
        h.login("ada@example.com", PASSWORD).await,
        Code::Unauthenticated,
    );
    h.login("ada@example.com", "a brand new passphrase")
        .await
        .expect("new password works");
    expect_code(
        h.client()
            .refresh_session(pb::RefreshSessionRequest {
                refresh_token: session.refresh_token,
            })
            .await,
        Code::Unauthenticated,
    );
    // rule I4: the other session's access token is revoked; the caller's own goes on.
    let me = |token: &str| {
        let mut client = h.client();
        let request = authed(
            token,
            pb::GetUserRequest {
                user_id: ada.user_id.clone(),
            },
        );
        async move { client.get_user(request).await }
    };
    let status = expect_code(me(&session.access_token).await, Code::Unauthenticated);
    assert_eq!(status.message(), "access token revoked");
    me(&token).await.expect("the caller's session goes on");
    // Operators cannot change someone's password through this RPC.
    let operator = h.operator().await;
    expect_code(
        h.client()
            .change_password(authed(
                &operator,
                pb::ChangePasswordRequest {
                    user_id: ada.user_id,
                    current_password: "a brand new passphrase".into(),
                    new_password: "operator chosen pass".into(),
                },
            ))
            .await,
        Code::PermissionDenied,
    );
}

#[tokio::test]
async fn disabled_users_cannot_sign_in_or_refresh() {
    let h = Harness::start().await;
    let operator = h.operator().await;
    let (ada, ada_token) = h.customer("ada@example.com").await;
    let session = h.login("ada@example.com", PASSWORD).await.unwrap();
    expect_code(
        h.client()
            .disable_user(authed(
                &ada_token,
                pb::DisableUserRequest {
                    user_id: ada.user_id.clone(),
                },
            ))
            .await,
        Code::PermissionDenied,
    );
    let disabled = h
        .client()
        .disable_user(authed(
            &operator,
            pb::DisableUserRequest {
                user_id: ada.user_id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(disabled.state, pb::UserState::Disabled as i32);
    expect_code(
        h.login("ada@example.com", PASSWORD).await,
        Code::PermissionDenied,
    );
    // rule I4: the access tokens it holds are refused by identity at once.
    let status = expect_code(
        h.client()
            .get_user(authed(
                &ada_token,
                pb::GetUserRequest {
                    user_id: ada.user_id.clone(),
                },
            ))
            .await,
        Code::Unauthenticated,
    );
    assert_eq!(status.message(), "access token revoked");
    expect_code(
        h.client()
            .refresh_session(pb::RefreshSessionRequest {
                refresh_token: session.refresh_token,
            })
            .await,
        Code::Unauthenticated,
    );
    let enabled = h
        .client()
        .enable_user(authed(
            &operator,
            pb::EnableUserRequest {
                user_id: ada.user_id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(enabled.state, pb::UserState::Active as i32);
    let again = h
        .login("ada@example.com", PASSWORD)
        .await
        .expect("enabled again");
    // A token issued after the revocation works, even within the same second.
    h.client()
        .get_user(authed(
            &again.access_token,
            pb::GetUserRequest {
                user_id: ada.user_id.clone(),
            },
        ))
        .await
        .expect("a token issued after enabling works");
    expect_code(
        h.client()
            .get_user(authed(
                &ada_token,
                pb::GetUserRequest {
                    user_id: ada.user_id.clone(),
                },
            ))
            .await,
        Code::Unauthenticated,
    );
    expect_code(
        h.client()
            .disable_user(authed(
                &operator,
                pb::DisableUserRequest {
                    user_id: uuid::Uuid::new_v4().to_string(),
                },
            ))
            .await,
        Code::NotFound,
    );
}

/// `times` failed sign-ins of `email`, each refused as wrong credentials.
async fn fail_logins(h: &Harness, email: &str, times: usize) {
    for _ in 0..times {
        expect_code(
            h.login(email, "wrong password!!").await,
            Code::Unauthenticated,
        );
    }
}

#[tokio::test]
async fn unknown_email_and_wrong_password_fail_identically() {
    let h = Harness::start().await;
    h.proven("ada@example.com", "Ada", "en").await;
    let wrong = expect_code(
        h.login("ada@example.com", "wrong password!!").await,
        Code::Unauthenticated,
    );
    let unknown = expect_code(
        h.login("nobody@example.com", "wrong password!!").await,
        Code::Unauthenticated,
    );
    let malformed = expect_code(
        h.login("not an email", "wrong password!!").await,
        Code::Unauthenticated,
    );
    assert_eq!(wrong.message(), unknown.message());
    assert_eq!(wrong.message(), malformed.message());
    assert_eq!(wrong.message(), "invalid e-mail or password");
}

#[tokio::test]
async fn five_failures_lock_an_email_whether_or_not_it_exists() {
    let h = Harness::start().await;
    h.proven("ada@example.com", "Ada", "en").await;
    for email in ["ada@example.com", "nobody@example.com"] {
        fail_logins(&h, email, 5).await;
        // Locked: even the right password is refused, with the same answer for both.
        let locked = expect_code(h.login(email, PASSWORD).await, Code::ResourceExhausted);
        assert_eq!(
            locked.message(),
            "too many failed sign-in attempts, try again later"
        );
    }
    // Other e-mails are unaffected.
    h.proven("bob@example.com", "Bob", "en").await;
    h.login("bob@example.com", PASSWORD)
        .await
        .expect("bob signs in");
}

#[tokio::test]
async fn a_success_resets_the_failure_count_and_locks_end() {
    let h = Harness::start_with(&["--lockout-duration", "1s"]).await;
    h.proven("ada@example.com", "Ada", "en").await;
    fail_logins(&h, "ada@example.com", 4).await;
    h.login("ada@example.com", PASSWORD)
        .await
        .expect("fourth failure does not lock");
    fail_logins(&h, "ada@example.com", 4).await;
    h.login("ada@example.com", PASSWORD)
        .await
        .expect("the count restarted after success");
    fail_logins(&h, "ada@example.com", 5).await;
    expect_code(
        h.login("ada@example.com", PASSWORD).await,
        Code::ResourceExhausted,
    );
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    h.login("ada@example.com", PASSWORD)
        .await
        .expect("the lock ended");
}

#[tokio::test]
async fn refresh_tokens_rotate_and_reuse_revokes_the_family() {
    let h = Harness::start().await;
    h.proven("ada@example.com", "Ada", "en").await;
    let first = h.login("ada@example.com", PASSWORD).await.unwrap();
    let second = h
        .client()
        .refresh_session(pb::RefreshSessionRequest {
            refresh_token: first.refresh_token.clone(),
        })
        .await
        .expect("refresh")
        .into_inner();
    assert_ne!(second.refresh_token, first.refresh_token);
    assert!(!second.access_token.is_empty());
    // The new access token works.
    let me = h
        .client()
        .get_user(authed(
            &second.access_token,
            pb::GetUserRequest {
                user_id: first.user.as_ref().unwrap().user_id.clone(),
            },
        ))
        .await;
    assert!(me.is_ok());

    // The rotated token comes back: reuse. The whole family is revoked, including the
    // newest token.
    let reuse = expect_code(
        h.client()
            .refresh_session(pb::RefreshSessionRequest {
                refresh_token: first.refresh_token.clone(),
            })
            .await,
        Code::Unauthenticated,
    );
    assert!(
        reuse.message().contains("already used"),
        "{}",
        reuse.message()
    );
    expect_code(
        h.client()
            .refresh_session(pb::RefreshSessionRequest {
                refresh_token: second.refresh_token.clone(),
            })
            .await,
        Code::Unauthenticated,
    );
    // Other sessions of the user are untouched.
    let other = h.login("ada@example.com", PASSWORD).await.unwrap();
    h.client()
        .refresh_session(pb::RefreshSessionRequest {
            refresh_token: other.refresh_token,
        })
        .await
        .expect("another session still refreshes");
    expect_code(
        h.client()
            .refresh_session(pb::RefreshSessionRequest {
                refresh_token: "garbage".into(),
            })
            .await,
        Code::Unauthenticated,
    );
    expect_field(
        h.client()
            .refresh_session(pb::RefreshSessionRequest {
                refresh_token: String::new(),
            })
            .await,
        "refresh_token",
    );
}

#[tokio::test]
async fn revoke_session_logs_out() {
    let h = Harness::start().await;
    h.proven("ada@example.com", "Ada", "en").await;
    let session = h.login("ada@example.com", PASSWORD).await.unwrap();
    h.client()
        .revoke_session(pb::RevokeSessionRequest {
            refresh_token: session.refresh_token.clone(),
        })
        .await
        .expect("logout");
    expect_code(
        h.client()
            .refresh_session(pb::RefreshSessionRequest {
                refresh_token: session.refresh_token.clone(),
            })
            .await,
        Code::Unauthenticated,
    );
    // Idempotent.
    h.client()
        .revoke_session(pb::RevokeSessionRequest {
            refresh_token: session.refresh_token,
        })
        .await
        .expect("logout again");
}

#[tokio::test]
async fn signing_keys_rotate_and_old_tokens_keep_verifying() {
    let h = Harness::start().await;
    let operator = h.operator().await;
    let (ada, old_token) = h.customer("ada@example.com").await;
    let keys = h
        .client()
        .get_signing_keys(pb::GetSigningKeysRequest {})
        .await
        .unwrap()
        .into_inner()
        .keys;
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].algorithm, "EdDSA");
    assert_eq!(keys[0].public_key.len(), 32);
    let old_kid = keys[0].kid.clone();

    expect_code(
        h.client()
            .rotate_signing_key(authed(&old_token, pb::RotateSigningKeyRequest {}))
            .await,
        Code::PermissionDenied,
    );
    let rotated = h
        .client()
        .rotate_signing_key(authed(&operator, pb::RotateSigningKeyRequest {}))
        .await
        .unwrap()
        .into_inner()
        .key
        .unwrap();
    assert_ne!(rotated.kid, old_kid);
    let keys = h
        .client()
        .get_signing_keys(pb::GetSigningKeysRequest {})
        .await
        .unwrap()
        .into_inner()
        .keys;
    let kids: Vec<&str> = keys.iter().map(|k| k.kid.as_str()).collect();
    assert_eq!(
        kids,
        [rotated.kid.as_str(), old_kid.as_str()],
        "newest first, old still listed"
    );

    // New tokens carry the new kid; the old token still verifies.
    let new_token = h
        .login("ada@example.com", PASSWORD)
        .await
        .unwrap()
        .access_token;
    let kid_of = |token: &str| kc_runtime::token::parse(token).unwrap().kid;
    assert_eq!(kid_of(&new_token), rotated.kid);
    assert_eq!(kid_of(&old_token), old_kid);
    for token in [&old_token, &new_token] {
        h.client()
            .get_user(authed(
                token,
                pb::GetUserRequest {
                    user_id: ada.user_id.clone(),
                },
            ))
            .await
            .expect("both tokens verify");
    }
}

/// Signs `claims` with identity's current private key.
async fn sign_with_identity_key(h: &Harness, claims: &kc_runtime::token::Claims) -> String {
    let key = h.domain().await.keys().signing_key().await.unwrap();
    kc_runtime::token::sign(claims, &key.kid, &key.key)
}

#[tokio::test]
async fn missing_expired_tampered_and_foreign_tokens_are_unauthenticated() {
    let h = Harness::start().await;
    let (ada, token) = h.customer("ada@example.com").await;
    let get = |token: Option<String>| {
        let mut client = h.client();
        let user_id = ada.user_id.clone();
        async move {
            let request = match token {
                Some(token) => authed(&token, pb::GetUserRequest { user_id }),
                None => tonic::Request::new(pb::GetUserRequest { user_id }),
            };
            client.get_user(request).await
        }
    };
    assert!(get(Some(token.clone())).await.is_ok());
    let missing = expect_code(get(None).await, Code::Unauthenticated);
    assert_eq!(missing.message(), "missing bearer token");

    let now = chrono::Utc::now().timestamp();
    let claims = kc_runtime::token::Claims {
        sub: ada.user_id.clone(),
        kind: kc_runtime::token::CallerKind::Customer,
        email: ada.email.clone(),
        iss: "keycontacts".into(),
        aud: "keycontacts".into(),
        iat: now - 3_600,
        exp: now - 1_800,
        jti: "expired".into(),
        sid: String::new(),
    };
    let expired = sign_with_identity_key(&h, &claims).await;
    let status = expect_code(get(Some(expired)).await, Code::Unauthenticated);
    assert_eq!(status.message(), "access token expired");

    let foreign = sign_with_identity_key(
        &h,
        &kc_runtime::token::Claims {
            aud: "another-suite".into(),
            exp: now + 600,
            iat: now,
            ..claims.clone()
        },
    )
    .await;
    let status = expect_code(get(Some(foreign)).await, Code::Unauthenticated);
    assert_eq!(
        status.message(),
        "access token not issued for this audience"
    );

    // Tampered: promote the customer to operator in the payload, keep the signature.
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    use base64::Engine;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let payload = String::from_utf8(engine.decode(&parts[1]).unwrap()).unwrap();
    parts[1] = engine.encode(payload.replace("\"customer\"", "\"operator\""));
    let status = expect_code(get(Some(parts.join("."))).await, Code::Unauthenticated);
    assert_eq!(status.message(), "access token signature is invalid");

    // Signed by a key identity never had.
    let stranger = kc_runtime::token::generate_signing_key();
    let forged = kc_runtime::token::sign(
        &kc_runtime::token::Claims {
            exp: now + 600,
            iat: now,
            ..claims
        },
        "made-up",
        &stranger,
    );
    expect_code(get(Some(forged)).await, Code::Unauthenticated);
    expect_code(get(Some("not.a.token".into())).await, Code::Unauthenticated);
}

#[tokio::test]
async fn service_tokens_need_the_right_secret_and_only_services_act_on_behalf() {
    let h = Harness::start().await;
    let domain = h.domain().await;
    let (client_id, secret) = domain.create_service_account("kc-contacts").await.unwrap();
    expect_code(
        h.client()
            .issue_service_token(pb::IssueServiceTokenRequest {
                client_id: client_id.to_string(),
                client_secret: "wrong".into(),
            })
            .await,
        Code::Unauthenticated,
    );
    expect_code(
        h.client()
            .issue_service_token(pb::IssueServiceTokenRequest {
                client_id: "nope".into(),
                client_secret: secret.clone(),
            })
            .await,
        Code::Unauthenticated,
    );
    let issued = h
        .client()
        .issue_service_token(pb::IssueServiceTokenRequest {
            client_id: client_id.to_string(),
            client_secret: secret,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(issued.access_token_expire_time.is_some());
    assert!(
        domain.create_service_account("kc-contacts").await.is_err(),
        "names are unique"
    );

    let (ada, customer_token) = h.customer("ada@example.com").await;
    // A service may name the person it acts for.
    let mut request = authed(
        &issued.access_token,
        pb::GetUserRequest {
            user_id: ada.user_id.clone(),
        },
    );
    request
        .metadata_mut()
        .insert("x-kc-on-behalf-of", ada.user_id.parse().unwrap());
    h.client()
        .get_user(request)
        .await
        .expect("service acting for ada");
    // A customer may not.
    let mut request = authed(
        &customer_token,
        pb::GetUserRequest {
            user_id: ada.user_id.clone(),
        },
    );
    request
        .metadata_mut()
        .insert("x-kc-on-behalf-of", ada.user_id.parse().unwrap());
    expect_code(h.client().get_user(request).await, Code::PermissionDenied);
}

#[tokio::test]
async fn watch_events_streams_the_user_lifecycle_to_services_only() {
    let h = Harness::start().await;
    let operator = h.operator().await;
    let (ada, customer_token) = h.customer("ada@example.com").await;
    expect_code(
        h.client()
            .watch_events(authed(
                &customer_token,
                pb::WatchEventsRequest {
                    after_cursor: String::new(),
                },
            ))
            .await,
        Code::PermissionDenied,
    );
    expect_field(
        h.client()
            .watch_events(authed(
                &operator,
                pb::WatchEventsRequest {
                    after_cursor: "garbage".into(),
                },
            ))
            .await,
        "after_cursor",
    );
    h.client()
        .disable_user(authed(
            &operator,
            pb::DisableUserRequest {
                user_id: ada.user_id.clone(),
            },
        ))
        .await
        .unwrap();

    let mut seen = Vec::new();
    let last_cursor = find_event(&h, &operator, |event| {
        if event.user_id == ada.user_id {
            let kind = match &event.payload {
                Some(Payload::UserRegistered(_)) => "registered",
                Some(Payload::EmailVerificationRequested(request)) => {
                    assert_eq!(request.email, "ada@example.com");
                    // Used: its sealed code is gone from the outbox.
                    assert!(request.sealed_code.is_empty());
                    "verification"
                }
                Some(Payload::TokensRevoked(_)) => "revoked",
                Some(Payload::UserDisabled(_)) => "disabled",
                Some(Payload::UserUpdated(_)) => "updated",
                Some(Payload::UserEnabled(_)) => "enabled",
                Some(_) => "other",
                None => "none",
            };
            assert!(!event.event_id.is_empty() && event.create_time.is_some());
            seen.push(kind);
        }
        (seen.last() == Some(&"disabled")).then(|| event.cursor.clone())
    })
    .await;
    assert_eq!(
        seen,
        [
            "registered",
            "verification",
            "updated",
            "revoked",
            "disabled"
        ]
    );

    // Resuming after the last cursor yields only what came later, live.
    let mut stream = h
        .client()
        .watch_events(authed(
            &operator,
            pb::WatchEventsRequest {
                after_cursor: last_cursor,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    h.client()
        .enable_user(authed(
            &operator,
            pb::EnableUserRequest {
                user_id: ada.user_id.clone(),
            },
        ))
        .await
        .unwrap();
    let next = tokio::time::timeout(Duration::from_secs(20), stream.next())
        .await
        .expect("live event")
        .unwrap()
        .unwrap()
        .event
        .unwrap();
    assert!(
        matches!(next.payload, Some(Payload::UserEnabled(_))),
        "{next:?}"
    );
}

#[tokio::test]
async fn bootstrap_operator_is_idempotent() {
    let h = Harness::start().await;
    let first = h.operator().await;
    let domain = h.domain().await;
    let operator = domain
        .bootstrap_operator(
            &kc_identity::domain::values::Email::parse("email", OPERATOR_EMAIL).unwrap(),
            &kc_identity::domain::values::Password::parse("password", PASSWORD).unwrap(),
        )
        .await
        .unwrap();
    let second = h
        .login(OPERATOR_EMAIL, PASSWORD)
        .await
        .unwrap()
        .access_token;
    // Bootstrapping again ended the first sign-in and its access token (rule I4).
    expect_code(
        h.client()
            .get_user(authed(
                &first,
                pb::GetUserRequest {
                    user_id: operator.user_id.to_string(),
                },
            ))
            .await,
        Code::Unauthenticated,
    );
    h.client()
        .get_user(authed(
            &second,
            pb::GetUserRequest {
                user_id: operator.user_id.to_string(),
            },
        ))
        .await
        .expect("the new token works");
    let claims = |token: &str| {
        use base64::Engine;
        let payload = token.split('.').nth(1).unwrap();
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap();
        serde_json::from_slice::<kc_runtime::token::Claims>(&bytes).unwrap()
    };
    assert_eq!(claims(&first).sub, claims(&second).sub);
    assert_eq!(claims(&first).kind, kc_runtime::token::CallerKind::Operator);
    assert_eq!(claims(&first).email, OPERATOR_EMAIL);
}

#[tokio::test]
async fn other_services_verify_tokens_with_keys_fetched_from_identity() {
    let h = Harness::start().await;
    let operator = h.operator().await;
    let (ada, token) = h.customer("ada@example.com").await;
    // What every other service does: fetch identity's keys over gRPC, cache them by kid.
    let verifier = kc_runtime::auth::TokenVerifier::new(
        kc_runtime::auth::IdentityKeySource::new(h.channel.clone()),
        h.args.server.token_expectations(),
    );
    let claims = verifier
        .verify(&token)
        .await
        .expect("identity's token verifies");
    assert_eq!(claims.sub, ada.user_id);
    assert_eq!(claims.kind, kc_runtime::token::CallerKind::Customer);

    // After a rotation the new kid is unknown to the cache: the verifier refetches.
    h.client()
        .rotate_signing_key(authed(&operator, pb::RotateSigningKeyRequest {}))
        .await
        .unwrap();
    let fresh = h
        .login("ada@example.com", PASSWORD)
        .await
        .unwrap()
        .access_token;
    verifier
        .verify(&fresh)
        .await
        .expect("token of the rotated key verifies");
    verifier
        .verify(&token)
        .await
        .expect("the old token still verifies");

    let stranger = kc_testkit::tokens::TestIssuer::new();
    let forged = stranger.mint(
        uuid::Uuid::new_v4(),
        kc_runtime::token::CallerKind::Operator,
        "x@example.com",
    );
    assert!(verifier.verify(&forged).await.is_err());
}

#[tokio::test]
async fn services_call_with_a_cached_service_token_acting_for_a_person() {
    let h = Harness::start().await;
    let (ada, _) = h.customer("ada@example.com").await;
    let (client_id, secret) = h
        .domain()
        .await
        .create_service_account("kc-contacts")
        .await
        .unwrap();
    let identity_url = h.service.url();
    let channel = kc_runtime::client::channel("--identity-url", &identity_url).unwrap();
    let tokens = kc_runtime::client::ServiceToken::new(
        channel.clone(),
        kc_runtime::client::ServiceAccountArgs {
            client_id: client_id.to_string(),
            client_secret: secret,
        },
    );
    let first = tokens.bearer().await.expect("service token");
    assert_eq!(tokens.bearer().await.unwrap(), first, "the token is cached");

    let on_behalf_of: uuid::Uuid = ada.user_id.parse().unwrap();
    let request = tokens
        .request(
            pb::BatchGetUsersRequest {
                user_ids: vec![ada.user_id.clone()],
            },
            Some(on_behalf_of),
        )
        .await
        .unwrap();
    assert_eq!(
        request.metadata().get("x-kc-on-behalf-of").unwrap(),
        ada.user_id.as_str()
    );
    let users = kc_proto::identity::identity_service_client::IdentityServiceClient::new(channel)
        .batch_get_users(request)
        .await
        .expect("a service reads users")
        .into_inner()
        .users;
    assert_eq!(users.len(), 1);

    // Wrong credentials surface as Unavailable (a deployment error, retryable once fixed).
    let refused = kc_runtime::client::ServiceToken::new(
        h.channel.clone(),
        kc_runtime::client::ServiceAccountArgs {
            client_id: client_id.to_string(),
            client_secret: "wrong".into(),
        },
    );
    expect_code(refused.bearer().await, Code::Unavailable);
    let error = kc_runtime::client::channel("--identity-url", "not a url").unwrap_err();
    assert!(error.to_string().contains("--identity-url"), "{error}");
}

#[tokio::test]
async fn concurrent_guesses_cannot_outrun_the_lockout() {
    let h = Harness::start().await;
    h.proven("ada@example.com", "Ada", "en").await;
    let guesses = (0..40).map(|i| {
        let mut client = h.client();
        tokio::spawn(async move {
            client
                .authenticate(pb::AuthenticateRequest {
                    email: "ada@example.com".into(),
                    password: format!("wrong guess number {i}"),
                })
                .await
        })
    });
    let results = futures::future::join_all(guesses).await;
    let checked = results
        .iter()
        .filter(|r| matches!(r.as_ref().unwrap(), Err(s) if s.code() == Code::Unauthenticated))
        .count();
    let refused = results
        .iter()
        .filter(|r| matches!(r.as_ref().unwrap(), Err(s) if s.code() == Code::ResourceExhausted))
        .count();
    assert!(
        checked <= 5,
        "at most 5 guesses were checked, got {checked}"
    );
    assert_eq!(checked + refused, 40);
    expect_code(
        h.login("ada@example.com", PASSWORD).await,
        Code::ResourceExhausted,
    );
}

#[tokio::test]
async fn absurdly_long_emails_fail_like_any_wrong_credentials() {
    let h = Harness::start().await;
    let email = format!("{}@example.com", "a".repeat(6_000));
    let status = expect_code(
        h.login(&email, "whatever password").await,
        Code::Unauthenticated,
    );
    assert_eq!(status.message(), "invalid e-mail or password");
}

#[tokio::test]
async fn bootstrapping_an_operator_ends_the_sessions_the_address_had() {
    let h = Harness::start().await;
    // Someone registered the operator's address as a customer and holds a session.
    h.proven(OPERATOR_EMAIL, "Squatter", "en").await;
    let squatter = h.login(OPERATOR_EMAIL, PASSWORD).await.unwrap();
    h.operator().await;
    expect_code(
        h.client()
            .refresh_session(pb::RefreshSessionRequest {
                refresh_token: squatter.refresh_token,
            })
            .await,
        Code::Unauthenticated,
    );
}

/// Signs in to `email` with `password` from 16 tasks, again and again, until `done`; the
/// sessions obtained.
fn sign_in_storm(
    h: &Harness,
    email: &'static str,
    password: &'static str,
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Vec<pb::AuthenticateResponse>>> {
    (0..16)
        .map(|_| {
            let mut client = h.client();
            let done = done.clone();
            tokio::spawn(async move {
                let mut sessions = Vec::new();
                while !done.load(std::sync::atomic::Ordering::SeqCst) {
                    if let Ok(response) = client
                        .authenticate(pb::AuthenticateRequest {
                            email: email.into(),
                            password: password.into(),
                        })
                        .await
                    {
                        sessions.push(response.into_inner());
                    }
                }
                sessions
            })
        })
        .collect()
}

/// Every session of `storms` is over: its refresh token is refused and its access token
/// revoked.
async fn assert_all_ended(
    h: &Harness,
    user_id: &str,
    storms: Vec<tokio::task::JoinHandle<Vec<pb::AuthenticateResponse>>>,
) -> usize {
    let mut sessions = Vec::new();
    for storm in storms {
        sessions.extend(storm.await.unwrap());
    }
    for session in &sessions {
        expect_code(
            h.client()
                .refresh_session(pb::RefreshSessionRequest {
                    refresh_token: session.refresh_token.clone(),
                })
                .await,
            Code::Unauthenticated,
        );
        let status = expect_code(
            h.client()
                .get_user(authed(
                    &session.access_token,
                    pb::GetUserRequest {
                        user_id: user_id.into(),
                    },
                ))
                .await,
            Code::Unauthenticated,
        );
        assert!(status.message().contains("revoked"), "{status:?}");
    }
    sessions.len()
}

#[tokio::test]
async fn sign_ins_racing_a_password_reset_or_a_disable_leave_no_session_alive() {
    // rule I4: a sign-in that overlaps ResetPassword or DisableUser never yields a session
    // or an access token that outlives them.
    let h = Harness::start().await;
    let operator = h.operator().await;
    let (reset_user, _) = h.customer("raced-reset@example.com").await;
    let (disabled_user, _) = h.customer("raced-disable@example.com").await;

    h.client()
        .request_password_reset(pb::RequestPasswordResetRequest {
            email: "raced-reset@example.com".into(),
        })
        .await
        .unwrap();
    let code = h.code("raced-reset@example.com").await.code;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let storms = sign_in_storm(&h, "raced-reset@example.com", PASSWORD, done.clone());
    tokio::time::sleep(Duration::from_millis(150)).await;
    h.client()
        .reset_password(pb::ResetPasswordRequest {
            email: "raced-reset@example.com".into(),
            code,
            new_password: "a brand new passphrase".into(),
        })
        .await
        .expect("reset");
    tokio::time::sleep(Duration::from_millis(150)).await;
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let raced = assert_all_ended(&h, &reset_user.user_id, storms).await;
    eprintln!("sign-ins racing the reset: {raced}");

    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let storms = sign_in_storm(&h, "raced-disable@example.com", PASSWORD, done.clone());
    tokio::time::sleep(Duration::from_millis(150)).await;
    h.client()
        .disable_user(authed(
            &operator,
            pb::DisableUserRequest {
                user_id: disabled_user.user_id.clone(),
            },
        ))
        .await
        .expect("disable");
    tokio::time::sleep(Duration::from_millis(150)).await;
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let raced = assert_all_ended(&h, &disabled_user.user_id, storms).await;
    assert!(raced > 0, "the storm signed in before the disable");
}
