//! BatchInviteUsers and BatchLookupUsers: several items in one call, each answered as the
//! single call (InviteUser, LookupUser) would answer it alone (rules I1, I3), through
//! identity's gRPC interface against a real Postgres.

use std::collections::HashMap;

use kc_proto::identity::{self as pb, event::Payload, invitation_result::Result as Answer};
use tonic::{Code, Status};

use crate::helpers::{Harness, expect_code, expect_field};

/// An invitation of `email` greeted as `name` (none when empty), in French.
fn invitation(email: &str, name: &str) -> pb::InviteUserRequest {
    pb::InviteUserRequest {
        email: email.into(),
        display_name: name.into(),
        locale: "fr".into(),
    }
}

/// Each result of a batch as InviteUser's own answer: its response, or its error rebuilt as
/// the status InviteUser would have returned.
async fn invite_all(
    h: &Harness,
    token: &str,
    invitations: Vec<pb::InviteUserRequest>,
) -> Vec<Result<pb::InviteUserResponse, Status>> {
    let asked = invitations.len();
    let results = h
        .batch_invite_users(token, pb::BatchInviteUsersRequest { invitations })
        .await
        .expect("the batch is answered")
        .into_inner()
        .results;
    assert_eq!(results.len(), asked, "one result per invitation");
    results
        .into_iter()
        .map(|result| match result.result.expect("a result") {
            Answer::Invited(invited) => Ok(invited),
            Answer::Refused(refused) => Err(Status::with_details(
                Code::from(refused.code),
                refused.message,
                refused.details.into(),
            )),
        })
        .collect()
}

fn invited_user(result: &Result<pb::InviteUserResponse, Status>) -> (&pb::User, bool) {
    let response = result.as_ref().expect("invited");
    (response.user.as_ref().expect("user"), response.invited)
}

/// The addresses identity announced a new account of, and those it mailed a code, in the
/// order of its stream.
async fn announced(h: &Harness, token: &str) -> (Vec<String>, Vec<String>) {
    let mut registered = Vec::new();
    let mut mailed = Vec::new();
    for event in h.events_until_idle(token).await {
        match event.payload {
            Some(Payload::UserRegistered(r)) => registered.push(r.user.expect("user").email),
            Some(Payload::EmailVerificationRequested(r)) => mailed.push(r.email),
            _ => {}
        }
    }
    (registered, mailed)
}

/// A proven account (`alice@example.com`) and an invited one (`pending@example.com`).
async fn proven_and_pending(h: &Harness, operator: &str) -> (pb::User, pb::User) {
    let alice = h.proven("alice@example.com", "Alice", "en").await;
    let pending = h
        .invite_user(operator, invitation("pending@example.com", "Pending"))
        .await
        .expect("invite")
        .into_inner()
        .user
        .expect("user");
    (alice, pending)
}

#[tokio::test]
async fn a_batch_answers_each_invitation_as_invite_user_would_alone() {
    let h = Harness::start().await;
    let operator = h.operator().await;
    let (alice, pending) = proven_and_pending(&h, &operator).await;
    let (_, before) = announced(&h, &operator).await;

    let results = invite_all(
        &h,
        &operator,
        vec![
            invitation("New.One@Example.com", "New One"),
            invitation("alice@example.com", "Someone Else"),
            invitation("\u{0430}lice@example.com", "Fake Alice"),
            invitation("not an address", "Nobody"),
            invitation("nameless@example.com", ""),
            invitation("new.one@example.com", "New One Again"),
            invitation("pending@example.com", "Pending"),
            invitation("new.two@example.com", "New Two"),
            invitation("late.name@example.com", ""),
            pb::InviteUserRequest {
                email: "late.name@example.com".into(),
                display_name: "Late Name".into(),
                locale: String::new(),
            },
        ],
    )
    .await;

    // New addresses: unproven accounts, invited (rule I1), in the invitation's language.
    let (one, invited) = invited_user(&results[0]);
    assert!(invited);
    assert_eq!(one.email, "new.one@example.com");
    assert_eq!(one.state, pb::UserState::Invited as i32);
    assert!(!one.email_verified);
    assert_eq!(
        (one.display_name.as_str(), one.locale.as_str()),
        ("New One", "fr")
    );
    let (two, invited) = invited_user(&results[7]);
    assert!(invited);
    assert_eq!(two.state, pb::UserState::Invited as i32);
    // A proven account is returned as it is.
    let (found, invited) = invited_user(&results[1]);
    assert!(!invited);
    assert_eq!(found.user_id, alice.user_id);
    assert_eq!(found.display_name, "Alice");
    // rule I3: a look-alike of a proven address is refused, as InviteUser refuses it.
    let status = expect_code(results[2].clone(), Code::FailedPrecondition);
    assert!(
        kc_testkit::checks::cites(status.message(), "I3"),
        "{status:?}"
    );
    // Bad fields are refused alone, naming the field.
    expect_field(results[3].clone(), "email");
    expect_field(results[4].clone(), "display_name");
    // In order: the first invitation of an address without a name is refused, the next
    // one with it invites the address, in English when no language is given.
    expect_field(results[8].clone(), "display_name");
    let (late, invited) = invited_user(&results[9]);
    assert!(invited);
    assert_eq!(
        (late.display_name.as_str(), late.locale.as_str()),
        ("Late Name", "en")
    );
    // The same address twice: one account, invited once; the second finds its code
    // outstanding and invites nobody (as a repeated InviteUser).
    let (again, invited) = invited_user(&results[5]);
    assert!(!invited);
    assert_eq!(again.user_id, one.user_id);
    let (kept, invited) = invited_user(&results[6]);
    assert!(!invited);
    assert_eq!(kept.user_id, pending.user_id);

    // Each new account was announced and mailed one code; nobody else was mailed.
    let (registered, mailed) = announced(&h, &operator).await;
    let mut new_mails = mailed[before.len()..].to_vec();
    new_mails.sort();
    assert_eq!(
        new_mails,
        [
            "late.name@example.com",
            "new.one@example.com",
            "new.two@example.com"
        ],
        "codes mailed by the batch"
    );
    for email in [
        "late.name@example.com",
        "new.one@example.com",
        "new.two@example.com",
    ] {
        assert_eq!(
            registered.iter().filter(|r| *r == email).count(),
            1,
            "{email}"
        );
    }
    // The mailed code is the account's invitation code: its owner proves the address with it.
    let code = h.code("new.two@example.com").await;
    assert_eq!(code.purpose, pb::VerificationPurpose::Invitation);
    h.client()
        .reset_password(pb::ResetPasswordRequest {
            email: "new.two@example.com".into(),
            code: code.code,
            new_password: "new two's own passphrase".into(),
        })
        .await
        .expect("the owner proves the address with the mailed code");
    h.login("new.two@example.com", "new two's own passphrase")
        .await
        .expect("the owner signs in");
}

#[tokio::test]
async fn a_batch_is_refused_whole_when_empty_too_long_or_asked_by_a_customer() {
    let h = Harness::start().await;
    let operator = h.operator().await;
    let (_, customer) = h.customer("carol@example.com").await;
    let empty = h
        .batch_invite_users(&operator, pb::BatchInviteUsersRequest::default())
        .await;
    expect_field(empty, "invitations");
    let too_many = (0..101)
        .map(|n| invitation(&format!("many-{n}@example.com"), "Many"))
        .collect();
    expect_field(
        h.batch_invite_users(
            &operator,
            pb::BatchInviteUsersRequest {
                invitations: too_many,
            },
        )
        .await,
        "invitations",
    );
    expect_code(
        h.batch_invite_users(
            &customer,
            pb::BatchInviteUsersRequest {
                invitations: vec![invitation("victim@example.com", "Victim")],
            },
        )
        .await,
        Code::PermissionDenied,
    );
    // Nothing was written: the addresses have no account.
    for email in ["many-0@example.com", "victim@example.com"] {
        expect_code(h.lookup_user(&operator, email).await, Code::NotFound);
    }
}

#[tokio::test]
async fn racing_batches_of_the_same_new_addresses_make_one_account_and_one_code_each() {
    // Rule I1 under concurrency: whichever batch inserts an address first invites it; the
    // others find the account and its outstanding code, and invite nobody; and no batch
    // fails for waiting on another (a deadlock would fail it whole).
    let h = Harness::start().await;
    let operator = h.operator().await;
    let mut emails = Vec::new();
    for round in 0..5 {
        let addresses: Vec<String> = (0..30)
            .map(|n| format!("race-{round}-{n}@example.com"))
            .collect();
        // Half the batches name the addresses in the reverse order.
        let batches = (0..6).map(|n| {
            let mut invitations: Vec<_> = addresses
                .iter()
                .map(|email| invitation(email, "Racer"))
                .collect();
            if n % 2 == 1 {
                invitations.reverse();
            }
            invite_all(&h, &operator, invitations)
        });
        let answered = futures::future::join_all(batches).await;
        let mut accounts: HashMap<String, Vec<(String, bool)>> = HashMap::new();
        for results in &answered {
            for result in results {
                let (user, invited) = invited_user(result);
                accounts
                    .entry(user.email.clone())
                    .or_default()
                    .push((user.user_id.clone(), invited));
            }
        }
        assert_eq!(accounts.len(), addresses.len());
        for (email, answers) in &accounts {
            assert_eq!(answers.len(), 6, "{email}");
            assert!(
                answers.iter().all(|(id, _)| *id == answers[0].0),
                "one account: {email}"
            );
            assert_eq!(
                answers.iter().filter(|(_, invited)| *invited).count(),
                1,
                "invited once: {email}"
            );
        }
        emails.extend(addresses);
    }
    let (registered, mailed) = announced(&h, &operator).await;
    for email in &emails {
        assert_eq!(
            registered.iter().filter(|r| *r == email).count(),
            1,
            "{email}"
        );
        assert_eq!(mailed.iter().filter(|m| *m == email).count(), 1, "{email}");
    }
}

#[tokio::test]
async fn a_batch_of_lookups_answers_each_address_as_lookup_user_would() {
    let h = Harness::start().await;
    let operator = h.operator().await;
    let (alice, pending) = proven_and_pending(&h, &operator).await;
    let emails = [
        "ALICE@example.com",
        "nobody@example.com",
        "not an address",
        "pending@example.com",
    ];
    let results = h
        .batch_lookup_users(
            &operator,
            pb::BatchLookupUsersRequest {
                emails: emails.iter().map(|email| (*email).to_owned()).collect(),
            },
        )
        .await
        .expect("the batch is answered")
        .into_inner()
        .results;
    use pb::user_lookup_result::Result as Found;
    let answers: Vec<_> = results.into_iter().map(|result| result.result).collect();
    assert_eq!(answers.len(), emails.len());
    // Case-insensitive, as LookupUser; every state is found.
    assert!(matches!(&answers[0], Some(Found::User(user)) if user.user_id == alice.user_id));
    assert!(matches!(&answers[3], Some(Found::User(user)) if user.user_id == pending.user_id));
    // Nobody has it: nothing (LookupUser's NOT_FOUND).
    assert_eq!(answers[1], None);
    // A malformed address is refused alone, naming the field.
    let Some(Found::Refused(refused)) = &answers[2] else {
        panic!("refused: {:?}", answers[2]);
    };
    let status = Status::with_details(
        Code::from(refused.code),
        refused.message.clone(),
        refused.details.clone().into(),
    );
    expect_field(Err::<(), _>(status), "email");

    // A customer may look itself up alone, never others in a batch; nor an empty batch.
    let (_, customer) = h.customer("carol@example.com").await;
    expect_code(
        h.batch_lookup_users(
            &customer,
            pb::BatchLookupUsersRequest {
                emails: vec!["carol@example.com".into()],
            },
        )
        .await,
        Code::PermissionDenied,
    );
    expect_field(
        h.batch_lookup_users(&operator, pb::BatchLookupUsersRequest::default())
            .await,
        "emails",
    );
}
