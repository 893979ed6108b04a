//! Rule I1: the pre-registration attack on every path that binds a role by e-mail, unproven
//! accounts, and wrong codes across rounds of claims.

use super::*;
use crate::gateway::helpers::*;
use kc_proto::access::{self as apb};
use kc_proto::contacts::{self as cpb};
use kc_proto::gateway::{self as gw};
use kc_proto::identity::UserState;
use tonic::Code;

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
            .self_nominate(authed(None, reports_nomination(&site, "let me in")))
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
                        ..Default::default()
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
