//! Identity you can trust (issue 13), tried as an attacker would, through the gateway only
//! with the real services and the real SMTP server (DOMAIN.md I1, I2, I3, A1):
//!
//! - the pre-registration attack on every path that binds a role by e-mail (CreateSite,
//!   AssignContact, ReplaceContact, TransferPrimaryContact): the squatter's account never
//!   holds a usable role, the mailbox's owner claims it with the mailed code (rule I1);
//! - Register and RequestPasswordReset answer alike for free, taken and invited addresses,
//!   and the difference goes by mail to the address (rule I2);
//! - a password reset end to end ends the old sessions;
//! - an unproven account cannot sign in, nominate itself, or be granted rights (I1, A1);
//! - names with format characters and look-alike addresses are refused (rule I3);
//! - unknown and foreign ids answer alike (rule I2).

mod common;

use common::*;
use kc_proto::access::{self as apb};
use kc_proto::contacts::{self as cpb};
use kc_proto::gateway::{self as gw};
use kc_proto::identity::UserState;
use kc_testkit::smtp::ReceivedMessage;
use prost::Message;
use tonic::{Code, Status};
use uuid::Uuid;

/// The squatter's password.
const SQUATTER_PASSWORD: &str = "squatter knows no mailbox";
/// The real owner's password.
const OWNER_PASSWORD: &str = "the owner's own passphrase";

const VERIFICATION: &str = "NOTICE_KIND_EMAIL_VERIFICATION";
const INVITATION: &str = "NOTICE_KIND_INVITATION";
const PASSWORD_RESET: &str = "NOTICE_KIND_PASSWORD_RESET";
const ADDRESS_TAKEN: &str = "NOTICE_KIND_REGISTRATION_ADDRESS_TAKEN";
const ADDRESS_CONFUSABLE: &str = "NOTICE_KIND_REGISTRATION_ADDRESS_CONFUSABLE";

/// What a caller sees of an answer: the whole message (encoded) or the whole status (code,
/// message and field violations), for comparing answers exactly.
fn seen<T: Message>(result: &Result<T, Status>) -> String {
    match result {
        Ok(message) => format!("OK {:?}", message.encode_to_vec()),
        Err(status) => format!(
            "{:?}: {} {:?}",
            status.code(),
            status.message(),
            kc_runtime::error::field_violations(status)
        ),
    }
}

/// Signs in `email` with `password` through the gateway.
async fn sign_in(suite: &Suite, email: &str, password: &str) -> Result<gw::LoginResponse, Status> {
    suite
        .gw()
        .login(gw::LoginRequest {
            email: email.into(),
            password: password.into(),
        })
        .await
        .map(tonic::Response::into_inner)
}

/// Asserts that `email` cannot sign in with `password`, and returns what it saw.
#[track_caller]
fn refused_sign_in(result: Result<gw::LoginResponse, Status>, who: &str) -> String {
    let what = seen(&result);
    let status = result.expect_err(who);
    assert_eq!(status.code(), Code::Unauthenticated, "{who}: {status:?}");
    what
}

/// The roles `token`'s holder sees it holds on `site_id` (GetMe).
async fn my_roles(suite: &Suite, token: &str, site_id: &str) -> Vec<i32> {
    let me = suite
        .gw()
        .get_me(authed(Some(token), gw::GetMeRequest {}))
        .await
        .expect("GetMe")
        .into_inner();
    me.sites
        .into_iter()
        .filter(|mine| mine.site.as_ref().is_some_and(|s| s.site_id == site_id))
        .flat_map(|mine| mine.roles)
        .collect()
}

/// The person holding `role` on the site, as the operator sees the contacts.
async fn holder(suite: &Suite, site_id: &str, role: Role) -> Option<gw::ContactView> {
    suite
        .operator_contacts(site_id, &[role])
        .await
        .into_iter()
        .next()
}

/// A site whose (proven, signed-in) primary access management knows.
async fn site_with_primary(suite: &Suite, name: &str) -> (cpb::Site, Person) {
    let primary = suite.person(&format!("{name} Primary")).await;
    let site = suite.create_site(name, &primary, None).await;
    suite
        .wait_role(&site.site_id, &primary.id, Role::Primary)
        .await;
    (site, primary)
}

/// The path that binds a role by e-mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Binding {
    CreateSite,
    AssignContact,
    ReplaceContact,
    TransferPrimaryContact,
}

impl Binding {
    /// The role the address gets.
    fn role(self) -> Role {
        match self {
            Binding::CreateSite | Binding::TransferPrimaryContact => Role::Primary,
            Binding::AssignContact => Role::Secondary,
            Binding::ReplaceContact => Role::Administrative,
        }
    }
}

/// Binds `email` to a role through `binding` (the operator creates the site; the site's
/// primary assigns, replaces, transfers). Returns the site id and the bound user's state as
/// the binding answered it.
async fn bind(suite: &Suite, binding: Binding, email: &str) -> (String, i32) {
    let invited_name = "Owner Named By The Binder";
    if binding == Binding::CreateSite {
        let (site_number, customer_number) = suite.numbers();
        let created = suite
            .gw()
            .create_site(authed(
                Some(&suite.operator.token),
                gw::CreateSiteRequest {
                    site_number,
                    customer_number,
                    name: "Newco".into(),
                    country_code: "FR".into(),
                    language: "en".into(),
                    program: cpb::Program::PassportAdvantage as i32,
                    primary_contact: Some(gw::ContactPerson {
                        email: email.into(),
                        display_name: invited_name.into(),
                        locale: String::new(),
                        details: None,
                    }),
                    ..Default::default()
                },
            ))
            .await
            .expect("the operator creates the site")
            .into_inner();
        let site = created.site.expect("site");
        let view = created
            .contacts
            .into_iter()
            .find(|view| view.user_id == site.primary_user_id)
            .expect("the primary's view");
        return (site.site_id, view.user_state);
    }
    let (site, primary) = site_with_primary(suite, "Newco").await;
    let site_id = site.site_id.clone();
    let token = Some(primary.token.as_str());
    let mut gw = suite.gw();
    let state = match binding {
        Binding::AssignContact => {
            let assigned = gw
                .assign_contact(authed(
                    token,
                    gw::AssignContactRequest {
                        site_id: site_id.clone(),
                        email: email.into(),
                        display_name: Some(invited_name.into()),
                        role: Role::Secondary as i32,
                        details: None,
                        locale: String::new(),
                    },
                ))
                .await
                .expect("the primary assigns the address")
                .into_inner();
            assert!(assigned.user_invited, "rule I1: the address is invited");
            assigned.user.expect("user").state
        }
        Binding::ReplaceContact => {
            let replaced = gw
                .replace_contact(authed(
                    token,
                    gw::ReplaceContactRequest {
                        site_id: site_id.clone(),
                        role: Role::Administrative as i32,
                        email: email.into(),
                        display_name: Some(invited_name.into()),
                        details: None,
                        locale: String::new(),
                    },
                ))
                .await
                .expect("the primary gives the administrative role to the address")
                .into_inner();
            assert!(replaced.user_invited, "rule I1: the address is invited");
            replaced.user.expect("user").state
        }
        Binding::TransferPrimaryContact => {
            let transferred = gw
                .transfer_primary_contact(authed(
                    token,
                    gw::TransferPrimaryContactRequest {
                        site_id: site_id.clone(),
                        email: email.into(),
                        display_name: Some(invited_name.into()),
                        ..Default::default()
                    },
                ))
                .await
                .expect("the primary transfers the primary role to the address")
                .into_inner();
            let new_primary = transferred.site.expect("site").primary_user_id;
            let view = holder(suite, &site_id, Role::Primary)
                .await
                .expect("a primary");
            assert_eq!(view.user_id, new_primary);
            view.user_state
        }
        Binding::CreateSite => unreachable!("handled above"),
    };
    (site_id, state)
}

/// The pre-registration attack of issue 13 on one binding path (rule I1): a squatter
/// registers the future contact's address first; the role is bound by e-mail; the squatter
/// never signs in nor holds a usable role; the mailbox's owner claims the account with the
/// mailed code (by registering, or by a password reset when `by_reset`), signs in with its
/// own password and holds the role; the squatter's password never works.
async fn pre_registration_attack(binding: Binding, by_reset: bool) {
    let suite = Suite::start().await;
    let owner = fresh_email("owner");

    // The squatter registers the address first, without proving it.
    suite
        .register(&owner, "Squatter", SQUATTER_PASSWORD, "en")
        .await
        .expect("Register answers alike for every address (I2)");
    // rule I1: an unproven account cannot sign in.
    refused_sign_in(
        sign_in(&suite, &owner, SQUATTER_PASSWORD).await,
        "the squatter before the binding",
    );
    // The squatter's registration code went to the owner's mailbox, not to the squatter.
    suite.mail(&owner, VERIFICATION, 1).await;

    // The role is bound by e-mail: the address is invited (unproven), not given to the
    // squatter's credentials.
    let (site_id, state) = bind(&suite, binding, &owner).await;
    assert_eq!(
        state,
        UserState::Invited as i32,
        "rule I1: the account of an unproven address is an invitation ({binding:?})"
    );
    let invitation = suite.mail(&owner, INVITATION, 1).await;
    assert!(
        find_code(&invitation).is_some(),
        "the invitation carries a fresh code: {:?}",
        invitation.text
    );
    refused_sign_in(
        sign_in(&suite, &owner, SQUATTER_PASSWORD).await,
        "the squatter after the binding",
    );
    // The squatter cannot prove the address without the mailbox: a guessed code fails.
    expect_field(
        suite
            .gw()
            .verify_email(gw::VerifyEmailRequest {
                email: owner.clone(),
                code: "123456".into(),
                password: SQUATTER_PASSWORD.into(),
            })
            .await,
        "code",
    );

    // The owner claims the account with the code mailed to the address.
    let owner_name = "Olga Owner";
    if by_reset {
        suite
            .gw()
            .request_password_reset(gw::RequestPasswordResetRequest {
                email: owner.clone(),
            })
            .await
            .expect("RequestPasswordReset");
        let reset = suite.mail(&owner, PASSWORD_RESET, 1).await;
        suite
            .gw()
            .reset_password(gw::ResetPasswordRequest {
                email: owner.clone(),
                code: code_in(&reset),
                new_password: OWNER_PASSWORD.into(),
            })
            .await
            .expect("the owner resets the password with the mailed code");
    } else {
        suite
            .register(&owner, owner_name, OWNER_PASSWORD, "en")
            .await
            .expect("the owner registers its own address");
        let verification = suite.mail(&owner, VERIFICATION, 2).await;
        let verified = suite
            .gw()
            .verify_email(gw::VerifyEmailRequest {
                email: owner.clone(),
                code: code_in(&verification),
                password: OWNER_PASSWORD.into(),
            })
            .await
            .expect("the owner proves the address with the mailed code")
            .into_inner()
            .user
            .expect("user");
        assert!(verified.email_verified, "{verified:?}");
        assert_eq!(verified.state, UserState::Active as i32, "{verified:?}");
        assert_eq!(
            verified.display_name, owner_name,
            "rule I1: the name set before the proof is discarded"
        );
    }

    // The owner signs in with its own password and holds the role.
    let session = sign_in(&suite, &owner, OWNER_PASSWORD)
        .await
        .expect("the owner signs in with its own password");
    let user = session.user.expect("user");
    assert_ne!(user.display_name, "Squatter", "rule I1: {user:?}");
    let role = binding.role() as i32;
    let roles = my_roles(&suite, &session.access_token, &site_id).await;
    assert!(
        roles.contains(&role),
        "rule I1: the owner holds {:?} after the claim ({binding:?}): {roles:?}",
        binding.role()
    );
    // The squatter's password never works, not even after the owner's proof.
    refused_sign_in(
        sign_in(&suite, &owner, SQUATTER_PASSWORD).await,
        "the squatter after the owner's claim",
    );
}

// rule I1: the pre-registration attack on CreateSite, claimed by registering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_squatter_never_gets_the_primary_role_of_a_new_site() {
    pre_registration_attack(Binding::CreateSite, false).await;
}

// rule I1: the pre-registration attack on AssignContact, claimed by registering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_squatter_never_gets_an_assigned_role() {
    pre_registration_attack(Binding::AssignContact, false).await;
}

// rule I1: the pre-registration attack on ReplaceContact, claimed by a password reset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_squatter_never_gets_a_replaced_role() {
    pre_registration_attack(Binding::ReplaceContact, true).await;
}

// rule I1: the pre-registration attack on TransferPrimaryContact, claimed by a password
// reset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_squatter_never_gets_a_transferred_primary_role() {
    pre_registration_attack(Binding::TransferPrimaryContact, true).await;
}

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
    let taken = suite.person("Taken Person").await;
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

// rule I1, A1: an unproven account cannot sign in (answered like a wrong password, I2), so
// it cannot nominate itself; a role bound to its address is an invitation it cannot use;
// and access management refuses to grant it rights.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unproven_account_holds_nothing() {
    let suite = Suite::start().await;
    let (site, primary) = site_with_primary(&suite, "Acme Lyon").await;
    let unproven = fresh_email("unproven");
    suite
        .register(&unproven, "Unproven Person", PASSWORD, "en")
        .await
        .expect("register");

    // It cannot sign in, and says so exactly like a wrong password or an unknown address.
    let as_unproven = refused_sign_in(
        sign_in(&suite, &unproven, PASSWORD).await,
        "an unproven account",
    );
    let wrong_password = refused_sign_in(
        sign_in(&suite, &primary.email, "not the password at all").await,
        "a wrong password",
    );
    let unknown = refused_sign_in(
        sign_in(&suite, &fresh_email("nobody"), PASSWORD).await,
        "an unknown address",
    );
    assert_eq!(as_unproven, wrong_password, "rule I2");
    assert_eq!(as_unproven, unknown, "rule I2");
    // Without a session there is no way to nominate itself (A1).
    expect_code(
        suite
            .gw()
            .self_nominate(authed(
                None,
                gw::SelfNominateRequest {
                    site_number: site.site_number.clone(),
                    customer_number: site.customer_number.clone(),
                    kind: apb::AccessRequestKind::SiteAccess as i32,
                    requested_tools: Some(tools(|t| {
                        t.reporting = apb::ReportingAccess::View as i32
                    })),
                    requested_support_level: 0,
                    justification: "let me in".into(),
                },
            ))
            .await,
        Code::Unauthenticated,
    );

    // Made a contact by e-mail, the account stays an invitation without a usable session.
    let assigned = suite
        .gw()
        .assign_contact(authed(
            Some(&primary.token),
            gw::AssignContactRequest {
                site_id: site.site_id.clone(),
                email: unproven.clone(),
                display_name: Some("Unproven Person".into()),
                role: Role::SiteUser as i32,
                details: None,
                locale: String::new(),
            },
        ))
        .await
        .expect("the role is bound as an invitation")
        .into_inner();
    assert!(assigned.user_invited, "rule I1");
    let user = assigned.user.expect("user");
    assert_eq!(user.state, UserState::Invited as i32, "rule I1: {user:?}");
    assert!(!user.email_verified, "{user:?}");
    refused_sign_in(
        sign_in(&suite, &unproven, PASSWORD).await,
        "an invited account with the password of its earlier registration",
    );

    // Access management refuses to grant it rights, to the primary and to an operator.
    for (who, token) in [
        ("the primary", primary.token.as_str()),
        ("the operator", suite.operator.token.as_str()),
    ] {
        let status = expect_code(
            suite
                .gw()
                .set_tool_access(authed(
                    Some(token),
                    gw::SetToolAccessRequest {
                        site_id: site.site_id.clone(),
                        user_id: user.user_id.clone(),
                        tools: Some(tools(|t| t.software = apb::SoftwareAccess::Full as i32)),
                        reason: "grant an unproven account".into(),
                        etag: String::new(),
                    },
                ))
                .await,
            Code::FailedPrecondition,
        );
        assert!(
            cites(status.message(), "I1"),
            "{who}: the refusal cites rule I1: {status:?}"
        );
    }
}

// rule I3: display names with a right-to-left override (U+202E) or a zero-width space
// (U+200B) are refused, at Register and at UpdateMe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_with_format_characters_are_refused() {
    let suite = Suite::start().await;
    let person = suite.person("Honest Name").await;
    for name in ["Alice\u{202E}nimda", "Bob\u{200B}Admin"] {
        let status = expect_field(
            suite
                .register(&fresh_email("spoof"), name, PASSWORD, "en")
                .await,
            "display_name",
        );
        let violations = kc_runtime::error::field_violations(&status);
        assert!(
            cites(&format!("{} {violations:?}", status.message()), "I3"),
            "Register {name:?}: {status:?}"
        );
        let status = expect_field(
            suite
                .gw()
                .update_me(authed(
                    Some(&person.token),
                    gw::UpdateMeRequest {
                        display_name: Some(name.into()),
                        locale: None,
                        etag: String::new(),
                    },
                ))
                .await,
            "display_name",
        );
        let violations = kc_runtime::error::field_violations(&status);
        assert!(
            cites(&format!("{} {violations:?}", status.message()), "I3"),
            "UpdateMe {name:?}: {status:?}"
        );
    }
    // The name did not change; a clean name still does.
    let me = suite
        .gw()
        .update_me(authed(
            Some(&person.token),
            gw::UpdateMeRequest {
                display_name: Some("Honest Name Again".into()),
                locale: None,
                etag: String::new(),
            },
        ))
        .await
        .expect("a clean name is accepted")
        .into_inner()
        .user
        .expect("user");
    assert_eq!(me.display_name, "Honest Name Again");
}

// rule I3 (and I2): a Cyrillic look-alike of an existing address registers nothing, with
// the same answer as any registration; the look-alike is told it cannot be used, never
// gets a code, and cannot sign in; binding a role to it is refused citing I3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_look_alike_of_an_existing_address_creates_nothing() {
    let suite = Suite::start().await;
    let existing = suite.person("paula").await;
    // `paula-…@acme.example` with a Cyrillic а (U+0430) for the first Latin a.
    let look_alike = existing.email.replacen('a', "\u{0430}", 1);
    assert_ne!(look_alike, existing.email);

    let free = suite
        .register(
            &fresh_email("free"),
            "Paula",
            "a look-alike's password",
            "en",
        )
        .await;
    let answer = suite
        .register(&look_alike, "Paula", "a look-alike's password", "en")
        .await;
    assert_eq!(seen(&answer), seen(&free), "rule I2: answered alike");
    let told = suite.mail(&look_alike, ADDRESS_CONFUSABLE, 1).await;
    assert_eq!(find_code(&told), None, "{:?}", told.text);

    // No account: a reset mails nothing, no code opens it, it cannot sign in.
    suite
        .gw()
        .request_password_reset(gw::RequestPasswordResetRequest {
            email: look_alike.clone(),
        })
        .await
        .expect("RequestPasswordReset answers OK");
    expect_field(
        suite
            .gw()
            .verify_email(gw::VerifyEmailRequest {
                email: look_alike.clone(),
                code: "000000".into(),
                password: "a look-alike's password".into(),
            })
            .await,
        "code",
    );
    refused_sign_in(
        sign_in(&suite, &look_alike, "a look-alike's password").await,
        "the look-alike",
    );
    // Mail is delivered in order: once a later mail reached the existing account, every
    // mail to the look-alike was sent; only the refusal is among them.
    suite
        .gw()
        .request_password_reset(gw::RequestPasswordResetRequest {
            email: existing.email.clone(),
        })
        .await
        .expect("RequestPasswordReset");
    suite.mail(&existing.email, PASSWORD_RESET, 1).await;
    let to_look_alike: Vec<ReceivedMessage> = suite.all_mails(&look_alike);
    assert_eq!(
        to_look_alike.len(),
        1,
        "only the refusal reaches the look-alike: {to_look_alike:#?}"
    );

    // Binding a role to the look-alike is refused, citing I3.
    let (site, _) = site_with_primary(&suite, "Acme Nice").await;
    let status = expect_code(
        suite
            .gw()
            .assign_contact(authed(
                Some(&suite.operator.token),
                gw::AssignContactRequest {
                    site_id: site.site_id.clone(),
                    email: look_alike.clone(),
                    display_name: Some("Paula Look-Alike".into()),
                    role: Role::SiteUser as i32,
                    details: None,
                    locale: String::new(),
                },
            ))
            .await,
        Code::FailedPrecondition,
    );
    assert!(cites(status.message(), "I3"), "{status:?}");
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
                gw::SelfNominateRequest {
                    site_number: b.site_number.clone(),
                    customer_number: b.customer_number.clone(),
                    kind: apb::AccessRequestKind::SiteAccess as i32,
                    requested_tools: Some(tools(|t| {
                        t.reporting = apb::ReportingAccess::View as i32
                    })),
                    requested_support_level: 0,
                    justification: "reports".into(),
                },
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

// rule I1 (claims and codes): wrong codes count per address across rounds of codes. A
// stranger who registers someone's address again and again, guessing each round's code,
// locks claiming for that address after 20 wrong codes: the code still in the mailbox stops
// working, and so does every further guess. The lock never keeps the owner out: a fresh code
// mailed while locked is long (beyond guessing) and works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_codes_across_rounds_lock_claims_but_never_the_owner() {
    let suite = Suite::start().await;
    let victim = fresh_email("claimed");
    let mut gw = suite.gw();
    let guess = |code: &str| gw::VerifyEmailRequest {
        email: victim.clone(),
        code: code.into(),
        password: SQUATTER_PASSWORD.into(),
    };

    let mut last_mailed = String::new();
    for round in 1..=4 {
        suite
            .register(&victim, "Squatter", SQUATTER_PASSWORD, "en")
            .await
            .expect("register answers");
        last_mailed = code_in(&suite.mail(&victim, VERIFICATION, round).await);
        assert_eq!(last_mailed.len(), 6, "a short code before the lock");
        for attempt in 0..5 {
            // Never the mailed code: the stranger does not read the victim's mailbox.
            let wrong = format!("{:06}", (round * 10 + attempt) % 1_000_000);
            let wrong = if wrong == last_mailed {
                "999999".into()
            } else {
                wrong
            };
            expect_field(gw.verify_email(guess(&wrong)).await, "code");
        }
    }

    // 20 wrong codes: the short code still in the mailbox no longer proves anything, even
    // with the claim's password.
    expect_field(gw.verify_email(guess(&last_mailed)).await, "code");
    refused_sign_in(
        sign_in(&suite, &victim, SQUATTER_PASSWORD).await,
        "the squatter after the lock",
    );

    // The owner asks for a reset: the code mailed while locked is long, and it works.
    gw.request_password_reset(gw::RequestPasswordResetRequest {
        email: victim.clone(),
    })
    .await
    .expect("ask for a reset");
    let fresh = code_in(&suite.mail(&victim, PASSWORD_RESET, 1).await);
    assert!(fresh.len() >= 20, "a long code while locked: {fresh}");
    gw.reset_password(gw::ResetPasswordRequest {
        email: victim.clone(),
        code: fresh,
        new_password: OWNER_PASSWORD.into(),
    })
    .await
    .expect("the owner gets in with the fresh mailed code");
    sign_in(&suite, &victim, OWNER_PASSWORD)
        .await
        .expect("the owner signs in with its own password");
    refused_sign_in(
        sign_in(&suite, &victim, SQUATTER_PASSWORD).await,
        "the squatter's password",
    );
}
