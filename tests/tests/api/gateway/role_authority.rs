//! A role that implies rights is a grant of those rights (DOMAIN.md T6, T7), tried through
//! the gateway as an attacker holding only contact updates UPDATE would (issue 14): it
//! cannot name itself or an accomplice site technical contact (support ADMINISTRATOR, U5),
//! nor ADMINISTRATIVE or SECONDARY, and nothing changes when it is refused. Nobody, the
//! operator included, gives itself a rights-implying role (T7, checked by the registry).

use crate::gateway::helpers::*;
use kc_proto::access::{self as apb};
use kc_proto::gateway::{self as gw};
use tonic::Code;

async fn replace(
    suite: &Suite,
    by: &Person,
    site_id: &str,
    role: Role,
    email: &str,
) -> Result<gw::ReplaceContactResponse, tonic::Status> {
    suite
        .gw()
        .replace_contact(authed(
            Some(&by.token),
            gw::ReplaceContactRequest {
                site_id: site_id.into(),
                role: role as i32,
                email: email.into(),
                display_name: Some("Named Person".into()),
                details: None,
                locale: String::new(),
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

async fn assign(
    suite: &Suite,
    by: &Person,
    site_id: &str,
    role: Role,
    email: &str,
) -> Result<gw::AssignContactResponse, tonic::Status> {
    suite
        .assign_email_as(by, site_id, email, "Named Person", role)
        .await
}

// rule T6 (with U5, U6, T3): a user granted only contact updates UPDATE names neither itself
// nor an accomplice site technical contact, ADMINISTRATIVE or SECONDARY contact; each
// refusal changes nothing. The primary (account management) may.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contact_updates_alone_gives_no_role_that_implies_rights() {
    let suite = Suite::start().await;
    let primary = suite.person("Role Primary").await;
    let stc = suite.person("Role Stc").await;
    let site = suite.create_site("Role Site", &primary, Some(&stc)).await;
    let editor = suite.person("Contact Editor").await;
    let accomplice = suite.person("Accomplice").await;
    let granted = tools(|t| t.contact_updates = apb::ContactUpdatesAccess::Update as i32);
    suite.grant(&site.site_id, &editor.id, granted).await;
    suite
        .wait_profile(&site.site_id, &editor.id, "the editor's grant", |profile| {
            profile
                .explicit
                .is_some_and(|t| t.contact_updates == apb::ContactUpdatesAccess::Update as i32)
        })
        .await;
    let before = suite.contact_roles(&site.site_id).await;

    for target in [&editor.email, &accomplice.email] {
        // rule T6, U5: the STC is support ADMINISTRATOR; naming one takes account management.
        let refused = replace(&suite, &editor, &site.site_id, Role::SiteTechnical, target)
            .await
            .expect_err("rule T6: no STC by contact updates alone");
        assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
        // rule T6, T3: ADMINISTRATIVE implies account documents VIEW (and manage access
        // UPDATE with the C3 switch on); SECONDARY manage access and contact updates UPDATE.
        for role in [Role::Administrative, Role::Secondary] {
            let refused = assign(&suite, &editor, &site.site_id, role, target)
                .await
                .expect_err("rule T6: no rights-implying role by contact updates alone");
            assert_eq!(
                refused.code(),
                Code::PermissionDenied,
                "{role:?}: {refused:?}"
            );
        }
    }
    assert_eq!(
        suite.contact_roles(&site.site_id).await,
        before,
        "a refused change changes nothing"
    );
    // A role that implies nothing stays the editor's to give.
    assign(
        &suite,
        &editor,
        &site.site_id,
        Role::Billing,
        &accomplice.email,
    )
    .await
    .expect("contact updates UPDATE names a billing contact");

    // The primary holds account management: it names the accomplice STC.
    replace(
        &suite,
        &primary,
        &site.site_id,
        Role::SiteTechnical,
        &accomplice.email,
    )
    .await
    .expect("the primary replaces the STC");
}

// rule T7: nobody gives itself a role that implies rights, the operator included (it acts on
// others); the registry refuses it in the write itself, whatever the gateway let through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_gives_itself_a_role_that_implies_rights() {
    let suite = Suite::start().await;
    let primary = suite.person("Self Primary").await;
    let site = suite.create_site("Self Site", &primary, None).await;
    let operator = &suite.operator;
    let before = suite.contact_roles(&site.site_id).await;
    for role in [Role::Secondary, Role::Administrative] {
        let refused = assign(&suite, operator, &site.site_id, role, OPERATOR_EMAIL)
            .await
            .expect_err("rule T7");
        assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
        assert!(cites(refused.message(), "T7"), "{refused:?}");
    }
    let refused = replace(
        &suite,
        operator,
        &site.site_id,
        Role::SiteTechnical,
        OPERATOR_EMAIL,
    )
    .await
    .expect_err("rule T7");
    assert!(cites(refused.message(), "T7"), "{refused:?}");
    assert_eq!(suite.contact_roles(&site.site_id).await, before);
    // Roles that imply nothing are not grants: the operator may be a billing contact.
    assign(
        &suite,
        operator,
        &site.site_id,
        Role::Billing,
        OPERATOR_EMAIL,
    )
    .await
    .expect("a role without rights");
}

// rule T6: removing a role takes away what it implies, so it needs the authority over it. A
// secondary (manage access and contact updates UPDATE, T3) removes a billing contact, but
// not the ADMINISTRATIVE contact (account documents VIEW is above its own level, T4); the
// primary removes both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_role_needs_the_authority_over_what_it_implies() {
    let suite = Suite::start().await;
    let primary = suite.person("Removal Primary").await;
    let site = suite.create_site("Removal Site", &primary, None).await;
    let secondary = suite.person("Removal Secondary").await;
    let admin = suite.person("Removal Admin").await;
    let billing = suite.person("Removal Billing").await;
    suite
        .assign(&site.site_id, &secondary, Role::Secondary)
        .await;
    let admin_contact = suite
        .assign(&site.site_id, &admin, Role::Administrative)
        .await;
    let billing_contact = suite.assign(&site.site_id, &billing, Role::Billing).await;
    suite
        .wait_role(&site.site_id, &secondary.id, Role::Secondary)
        .await;

    let refused = suite
        .remove_as(&secondary, &site.site_id, &admin_contact.contact_id)
        .await
        .expect_err("rule T6: the secondary cannot take away account documents VIEW");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    suite
        .remove_as(&secondary, &site.site_id, &billing_contact.contact_id)
        .await
        .expect("a role that implies nothing");
    suite
        .remove_as(&primary, &site.site_id, &admin_contact.contact_id)
        .await
        .expect("the primary removes the administrative contact");
}

// rule I4 (issue 14, hygiene): a disabled account is given no role.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_account_is_given_no_role() {
    use kc_proto::identity::identity_service_client::IdentityServiceClient;
    use kc_proto::identity::{self as ipb};
    let suite = Suite::start().await;
    let primary = suite.person("Hygiene Primary").await;
    let site = suite.create_site("Hygiene Site", &primary, None).await;
    let gone = suite.person("Gone Person").await;
    IdentityServiceClient::new(kc_testkit::ready_channel(&suite.url(Service::Identity)).await)
        .disable_user(authed(
            Some(&suite.operator.token),
            ipb::DisableUserRequest {
                user_id: gone.id.clone(),
            },
        ))
        .await
        .expect("the operator disables the user");
    let before = suite.contact_roles(&site.site_id).await;
    let refused = assign(
        &suite,
        &suite.operator,
        &site.site_id,
        Role::Billing,
        &gone.email,
    )
    .await
    .expect_err("rule I4: no role for a disabled account");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(cites(refused.message(), "I4"), "{refused:?}");
    assert_eq!(suite.contact_roles(&site.site_id).await, before);
}
