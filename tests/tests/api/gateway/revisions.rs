//! Authority at commit across the services (DOMAIN.md T8, issue 14). The contact registry
//! decides on a projection of access management's grants, and access management on a
//! projection of the registry's roles; the gateway answers a change of either only once the
//! other applied it (each write's revision). So a client's next call, made at once, with no
//! waiting, is decided on the change it was just told about.

use crate::gateway::helpers::*;
use kc_proto::access::{self as apb};
use kc_proto::contacts::contact_registry_service_client::ContactRegistryServiceClient;
use kc_proto::contacts::{self as cpb};
use kc_proto::gateway::{self as gw};
use kc_runtime::auth::ON_BEHALF_OF_HEADER;
use kc_testkit::ready_channel;
use tonic::{Code, Status};

/// Contact updates UPDATE, nothing else.
fn contact_updates() -> apb::ToolAccess {
    tools(|t| t.contact_updates = apb::ContactUpdatesAccess::Update as i32)
}

/// `by` grants `user` contact updates VIEW on the site through the gateway.
async fn grant_view(
    suite: &Suite,
    by: &Person,
    site_id: &str,
    user: &Person,
) -> Result<gw::SetToolAccessResponse, Status> {
    let view = tools(|t| t.contact_updates = apb::ContactUpdatesAccess::View as i32);
    suite
        .set_tools_as(by, site_id, &user.id, view, "reads the contacts")
        .await
}

/// The registry's own answer to `by` assigning `person` a SITE_USER role, asked directly by a
/// service acting for `by`: what the registry decides on its projection of the grants,
/// without the gateway's check in front.
async fn registry_assign(
    suite: &Suite,
    service_token: &str,
    by: &Person,
    site_id: &str,
    person: &Person,
) -> Result<cpb::AssignContactResponse, Status> {
    let mut request = authed(
        Some(service_token),
        cpb::AssignContactRequest {
            site_id: site_id.into(),
            user_id: person.id.clone(),
            role: Role::SiteUser as i32,
            details: None,
        },
    );
    request
        .metadata_mut()
        .insert(ON_BEHALF_OF_HEADER, by.id.parse().expect("a user id"));
    ContactRegistryServiceClient::new(ready_channel(&suite.url(Service::Contacts)).await)
        .assign_contact(request)
        .await
        .map(tonic::Response::into_inner)
}

// rule T8: an explicit grant of contact updates UPDATE is in effect at the registry when the
// gateway answers it, so the grantee's assignment of a role that implies nothing, made at
// once, commits on it; once the grant is revoked, its next assignment, made at once, is
// refused, by the gateway and by the registry itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_and_its_revocation_are_in_effect_at_the_registry_when_answered() {
    let suite = Suite::start().await;
    let primary = suite.person("Revision Primary").await;
    let editor = suite.person("Revision Editor").await;
    let first = suite.person("First Site User").await;
    let second = suite.person("Second Site User").await;
    let site = suite.create_site("Revision Site", &primary, None).await;
    let probe = suite.service_token("kc-revision-probe").await;

    suite
        .grant(&site.site_id, &editor.id, contact_updates())
        .await;
    let assigned = suite
        .assign_as(&editor, &site.site_id, &first, Role::SiteUser)
        .await
        .unwrap_or_else(|status| {
            panic!(
                "rule T8: the registry applied the grant before the gateway answered it: {status:?}"
            )
        })
        .contact
        .expect("contact");
    assert_eq!(
        (assigned.user_id.as_str(), assigned.role),
        (first.id.as_str(), Role::SiteUser as i32)
    );

    suite.revoke(&site.site_id, &editor.id).await;
    expect_code(
        suite
            .assign_as(&editor, &site.site_id, &second, Role::SiteUser)
            .await,
        Code::PermissionDenied,
    );
    // The registry decides on its own projection too: it applied the revocation before the
    // gateway answered it, so it refuses the editor's assignment as well.
    expect_code(
        registry_assign(&suite, &probe, &editor, &site.site_id, &second).await,
        Code::PermissionDenied,
    );
    let holders: Vec<String> = suite
        .operator_contacts(&site.site_id, &[Role::SiteUser])
        .await
        .into_iter()
        .map(|view| view.user_id)
        .collect();
    assert_eq!(
        holders,
        vec![first.id.clone()],
        "only the assignment made while the grant held committed"
    );
}

// rule T8, the other way: a role given or removed through the registry is in effect at access
// management when the gateway answers it, so the new SECONDARY's grant (manage access UPDATE,
// T3), made at once, is allowed, and once the role is removed its next grant, made at once,
// is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_and_its_removal_are_in_effect_at_access_management_when_answered() {
    let suite = Suite::start().await;
    let primary = suite.person("Revision Primary").await;
    let secondary = suite.person("Revision Secondary").await;
    let first = suite.person("First Site User").await;
    let second = suite.person("Second Site User").await;
    let site = suite.create_site("Revision Site", &primary, None).await;
    suite.assign(&site.site_id, &first, Role::SiteUser).await;
    suite.assign(&site.site_id, &second, Role::SiteUser).await;

    let contact = suite
        .assign(&site.site_id, &secondary, Role::Secondary)
        .await;
    let granted = grant_view(&suite, &secondary, &site.site_id, &first)
        .await
        .unwrap_or_else(|status| {
            panic!("rule T8: access management applied the role before the gateway answered it: {status:?}")
        })
        .profile
        .expect("profile");
    assert_eq!(
        granted.explicit.map(|t| t.contact_updates),
        Some(apb::ContactUpdatesAccess::View as i32)
    );

    suite
        .remove_as(&suite.operator, &site.site_id, &contact.contact_id)
        .await
        .expect("the operator removes the secondary");
    expect_code(
        grant_view(&suite, &secondary, &site.site_id, &second).await,
        Code::PermissionDenied,
    );
    let profile = suite
        .profile(&site.site_id, &second.id)
        .await
        .expect("the operator reads the profile");
    assert!(
        profile
            .explicit
            .is_none_or(|t| t.contact_updates != apb::ContactUpdatesAccess::View as i32),
        "nothing was granted once the role was gone: {profile:?}"
    );
}

/// Asserts that `answered` is the gateway's T8 answer: UNAVAILABLE, the change committed.
fn committed_not_yet_in_effect<T: std::fmt::Debug>(answered: Result<T, Status>) {
    let refused = expect_code(answered, Code::Unavailable);
    assert!(refused.message().contains("rule T8"), "{refused:?}");
    assert!(refused.message().contains("committed"), "{refused:?}");
}

// rules I1 and T8: access management counts a person identity has not told it about as
// unproven, so the gateway answers VerifyEmail and ResetPassword (both prove the address),
// and ConfirmEmailChange, only once access management applied them. With access management down, the change is
// committed (the person signs in) and the answer is UNAVAILABLE saying so, not a success
// that the person's next call would contradict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proof_is_answered_once_access_management_applied_it() {
    let mut suite = Suite::start().await;
    let email = fresh_email("proof");
    suite
        .register(&email, "Pia Proof", PASSWORD, "en")
        .await
        .expect("register");
    let code = suite.code_for(&email).await.code;
    suite.stop_internal(Internal::Access).await;
    let answered = suite
        .gw()
        .verify_email(gw::VerifyEmailRequest {
            email: email.clone(),
            code,
            password: PASSWORD.into(),
        })
        .await;
    suite.start_internal(Internal::Access).await;
    committed_not_yet_in_effect(answered);
    suite.session(&email).await;

    suite
        .gw()
        .request_password_reset(gw::RequestPasswordResetRequest {
            email: email.clone(),
        })
        .await
        .expect("ask for a reset");
    let code = suite.code_for(&email).await.code;
    let new_password = "another correct horse battery";
    suite.stop_internal(Internal::Access).await;
    let answered = suite
        .gw()
        .reset_password(gw::ResetPasswordRequest {
            email: email.clone(),
            code,
            new_password: new_password.into(),
        })
        .await;
    suite.start_internal(Internal::Access).await;
    committed_not_yet_in_effect(answered);
    let token = suite
        .gw()
        .login(gw::LoginRequest {
            email: email.clone(),
            password: new_password.into(),
        })
        .await
        .expect("the new password is committed")
        .into_inner()
        .access_token;

    // A new login e-mail (domain policies match on it, A7), the same way.
    let moved = fresh_email("moved");
    suite
        .gw()
        .change_email(authed(
            Some(&token),
            gw::ChangeEmailRequest {
                new_email: moved.clone(),
                current_password: new_password.into(),
            },
        ))
        .await
        .expect("ask for a new login e-mail");
    let code = suite.code_for(&moved).await.code;
    suite.stop_internal(Internal::Access).await;
    let answered = suite
        .gw()
        .confirm_email_change(authed(Some(&token), gw::ConfirmEmailChangeRequest { code }))
        .await;
    suite.start_internal(Internal::Access).await;
    committed_not_yet_in_effect(answered);
    suite
        .gw()
        .login(gw::LoginRequest {
            email: moved,
            password: new_password.into(),
        })
        .await
        .expect("the new login e-mail is committed");
}
