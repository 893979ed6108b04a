//! Rule I2: Register, RequestPasswordReset, a password reset's codes and unknown or foreign
//! ids answer alike; what differs goes by mail to the address.

use super::*;
use crate::gateway::helpers::*;
use kc_proto::contacts::{self as cpb};
use kc_proto::gateway::{self as gw};
use tonic::{Code, Status};
use uuid::Uuid;

/// An invited (unproven) address: the operator assigns it a role on a fresh site.
async fn invited_address(suite: &Suite) -> (String, String) {
    let (site, _) = site_with_primary(suite, "Invite Site").await;
    let email = fresh_email("invited");
    let assigned = suite
        .gw()
        .assign_contact(authed(
            Some(&suite.operator.token),
            gw::AssignContactRequest {
                site_id: site.site_id.clone(),
                email: email.clone(),
                display_name: Some("Invited Person".into()),
                role: Role::SiteUser as i32,
                details: None,
                locale: "en".into(),
            },
        ))
        .await
        .expect("the operator invites an address")
        .into_inner();
    assert!(assigned.user_invited);
    suite.mail(&email, INVITATION, 1).await;
    (email, assigned.user.expect("user").user_id)
}

// rule I2: Register answers the same for a free, a taken and an invited address; what
// differs goes by mail to the address. The same for RequestPasswordReset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_and_password_reset_answer_alike_for_every_address() {
    let suite = Suite::start().await;
    let free = fresh_email("free");
    // Its one registration mail has arrived before anyone else registers the address.
    let taken = suite.person_proven_by_mail("Taken Person").await;
    let (invited, _) = invited_address(&suite).await;

    let mut answers = Vec::new();
    for email in [&free, &taken.email, &invited] {
        let answer = suite
            .register(email, "Same Name", "the same registration password", "en")
            .await;
        answers.push((email.clone(), seen(&answer)));
        answer.expect("Register answers OK");
    }
    assert!(
        answers.iter().all(|(_, answer)| *answer == answers[0].1),
        "rule I2: Register answers alike: {answers:#?}"
    );
    assert_eq!(
        answers[0].1,
        seen(&Ok::<_, Status>(gw::RegisterResponse {})),
        "rule I2: Register answers nothing"
    );

    // The mails differ: a code for the free and the invited address, a warning without a
    // code for the taken one.
    let to_free = suite.mail(&free, VERIFICATION, 1).await;
    assert!(find_code(&to_free).is_some(), "{:?}", to_free.text);
    let to_invited = suite.mail(&invited, VERIFICATION, 1).await;
    assert!(find_code(&to_invited).is_some(), "{:?}", to_invited.text);
    let to_taken = suite.mail(&taken.email, ADDRESS_TAKEN, 1).await;
    assert_eq!(find_code(&to_taken), None, "{:?}", to_taken.text);
    let text = to_taken.text.as_deref().unwrap_or_default().to_lowercase();
    assert!(
        text.contains("reset"),
        "the taken address is told how to reset its password: {text}"
    );
    assert_eq!(
        suite.mails(&taken.email, VERIFICATION).len(),
        1,
        "the taken address got no new code (only the one of its own registration)"
    );
    // Nothing changed for the taken account: its password works, the new one does not.
    sign_in(&suite, &taken.email, PASSWORD)
        .await
        .expect("the owner of the taken address still signs in");
    refused_sign_in(
        sign_in(&suite, &taken.email, "the same registration password").await,
        "the registration's password on a taken address",
    );

    // RequestPasswordReset: the same answer; a code only where an account exists. (The
    // address registered above has an unproven account now: a fresh one is free.)
    let free = fresh_email("stillfree");
    let mut answers = Vec::new();
    for email in [&free, &taken.email, &invited] {
        let answer = suite
            .gw()
            .request_password_reset(gw::RequestPasswordResetRequest {
                email: email.clone(),
            })
            .await
            .map(tonic::Response::into_inner);
        answers.push((email.clone(), seen(&answer)));
        answer.expect("RequestPasswordReset answers OK");
    }
    assert!(
        answers.iter().all(|(_, answer)| *answer == answers[0].1),
        "rule I2: RequestPasswordReset answers alike: {answers:#?}"
    );
    assert_eq!(
        answers[0].1,
        seen(&Ok::<_, Status>(gw::RequestPasswordResetResponse {}))
    );
    let to_taken = suite.mail(&taken.email, PASSWORD_RESET, 1).await;
    assert!(find_code(&to_taken).is_some(), "{:?}", to_taken.text);
    let to_invited = suite.mail(&invited, PASSWORD_RESET, 1).await;
    assert!(find_code(&to_invited).is_some(), "{:?}", to_invited.text);
    // The free address has no account: no mail (the later ones arrived, in order).
    assert!(
        suite.all_mails(&free).is_empty(),
        "no account, no reset mail: {:#?}",
        suite.all_mails(&free)
    );
}

// A password reset end to end: the mailed code sets the new password once, the old
// sessions end (their refresh tokens are refused), the old password stops working; wrong
// codes answer alike whether or not the address has an account (rule I2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_reset_ends_the_old_sessions() {
    let suite = Suite::start().await;
    let person = suite.person("Forgetful Person").await;
    let old = suite.session(&person.email).await;
    let other = suite.session(&person.email).await;
    let mut gw = suite.gw();

    gw.request_password_reset(gw::RequestPasswordResetRequest {
        email: person.email.clone(),
    })
    .await
    .expect("ask for a reset");
    let code = code_in(&suite.mail(&person.email, PASSWORD_RESET, 1).await);

    // Wrong codes: the same answer for the account's address and an unknown one.
    let wrong = |email: &str| gw::ResetPasswordRequest {
        email: email.into(),
        code: if code == "000000" { "111111" } else { "000000" }.into(),
        new_password: "a brand new passphrase".into(),
    };
    let known = gw
        .reset_password(wrong(&person.email))
        .await
        .map(tonic::Response::into_inner);
    let unknown = gw
        .reset_password(wrong(&fresh_email("nobody")))
        .await
        .map(tonic::Response::into_inner);
    expect_field(known.clone(), "code");
    assert_eq!(seen(&known), seen(&unknown), "rule I2");

    gw.reset_password(gw::ResetPasswordRequest {
        email: person.email.clone(),
        code: code.clone(),
        new_password: "a brand new passphrase".into(),
    })
    .await
    .expect("the mailed code resets the password");
    // Single use.
    expect_field(
        gw.reset_password(gw::ResetPasswordRequest {
            email: person.email.clone(),
            code,
            new_password: "yet another passphrase".into(),
        })
        .await,
        "code",
    );

    // Every old session ended.
    for session in [&old, &other] {
        expect_code(
            gw.refresh(gw::RefreshRequest {
                refresh_token: session.refresh_token.clone(),
            })
            .await,
            Code::Unauthenticated,
        );
    }
    refused_sign_in(
        sign_in(&suite, &person.email, PASSWORD).await,
        "the old password",
    );
    let new = sign_in(&suite, &person.email, "a brand new passphrase")
        .await
        .expect("the new password works");
    gw.refresh(gw::RefreshRequest {
        refresh_token: new.refresh_token,
    })
    .await
    .expect("the new session refreshes");
}

// rule I2: an unknown id and an id of another site's object answer alike through the
// gateway: sites, contacts and access requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_foreign_ids_answer_alike() {
    let suite = Suite::start().await;
    let (a, a_primary) = site_with_primary(&suite, "Site A").await;
    let (b, _) = site_with_primary(&suite, "Site B").await;
    let b_member = suite.person("B Member").await;
    let b_contact = suite
        .assign(&b.site_id, &b_member, Role::Secondary)
        .await
        .contact_id;
    let requester = suite.person("B Requester").await;
    let b_request = eventually("access management knows site B", || async {
        suite
            .gw()
            .self_nominate(authed(
                Some(&requester.token),
                reports_nomination(&b, "reports"),
            ))
            .await
            .map(|response| response.into_inner().request.expect("request").request_id)
            .map_err(|status| format!("{status:?}"))
    })
    .await;
    let nobody = Uuid::new_v4().to_string();
    let primary = Some(a_primary.token.as_str());
    let mut gw = suite.gw();

    // Sites.
    let get = |site_id: &str| {
        let mut gw = suite.gw();
        let request = authed(
            primary,
            gw::GetSiteRequest {
                site_id: site_id.into(),
            },
        );
        async move { gw.get_site(request).await.map(tonic::Response::into_inner) }
    };
    let foreign = get(&b.site_id).await;
    let unknown = get(&nobody).await;
    expect_code(foreign.clone(), Code::PermissionDenied);
    assert_eq!(seen(&foreign), seen(&unknown), "GetSite");

    // Contacts.
    let update = |contact_id: &str| gw::UpdateContactRequest {
        site_id: a.site_id.clone(),
        contact_id: contact_id.into(),
        details: Some(cpb::ContactDetails {
            phone: "+33100000000".into(),
            job_title: "Intrus".into(),
            notification_email: String::new(),
        }),
        etag: String::new(),
    };
    let foreign = gw
        .update_contact(authed(primary, update(&b_contact)))
        .await
        .map(tonic::Response::into_inner);
    let unknown = gw
        .update_contact(authed(primary, update(&nobody)))
        .await
        .map(tonic::Response::into_inner);
    expect_code(foreign.clone(), Code::NotFound);
    assert_eq!(seen(&foreign), seen(&unknown), "UpdateContact");
    let remove = |contact_id: &str| gw::RemoveContactRequest {
        site_id: a.site_id.clone(),
        contact_id: contact_id.into(),
        etag: String::new(),
    };
    let foreign = gw
        .remove_contact(authed(primary, remove(&b_contact)))
        .await
        .map(tonic::Response::into_inner);
    let unknown = gw
        .remove_contact(authed(primary, remove(&nobody)))
        .await
        .map(tonic::Response::into_inner);
    expect_code(foreign.clone(), Code::NotFound);
    assert_eq!(seen(&foreign), seen(&unknown), "RemoveContact");

    // Access requests.
    let decide = |request_id: &str| gw::DecideAccessRequestRequest {
        request_id: request_id.into(),
        decision: gw::AccessDecision::Approve as i32,
        ..Default::default()
    };
    let foreign = gw
        .decide_access_request(authed(primary, decide(&b_request)))
        .await
        .map(tonic::Response::into_inner);
    let unknown = gw
        .decide_access_request(authed(primary, decide(&nobody)))
        .await
        .map(tonic::Response::into_inner);
    expect_code(foreign.clone(), Code::PermissionDenied);
    assert_eq!(seen(&foreign), seen(&unknown), "DecideAccessRequest");
    let cancel = |request_id: &str| gw::CancelMyRequestRequest {
        request_id: request_id.into(),
        etag: String::new(),
    };
    let foreign = gw
        .cancel_my_request(authed(primary, cancel(&b_request)))
        .await
        .map(tonic::Response::into_inner);
    let unknown = gw
        .cancel_my_request(authed(primary, cancel(&nobody)))
        .await
        .map(tonic::Response::into_inner);
    expect_code(foreign.clone(), Code::NotFound);
    assert_eq!(seen(&foreign), seen(&unknown), "CancelMyRequest");
}
