//! What a SECONDARY contact holds through the gateway (T3): GetMe and GetAccessProfile show
//! the rights its role implies (manage access UPDATE, contact updates UPDATE, never account
//! management), it may use them, and it never grants them to itself (T7).

use crate::gateway::helpers::*;
use kc_proto::access::{self as apb};
use kc_proto::gateway::{self as gw};
use tonic::Code;

/// The tool levels a SECONDARY implies (T3), every other tool NONE.
fn secondary_tools() -> apb::ToolAccess {
    apb::ToolAccess {
        software: apb::SoftwareAccess::None as i32,
        reporting: apb::ReportingAccess::None as i32,
        entitlements: apb::EntitlementsAccess::None as i32,
        account_management: apb::AccountManagementAccess::None as i32,
        manage_access: apb::ManageAccess::Update as i32,
        contact_updates: apb::ContactUpdatesAccess::Update as i32,
        account_documents: apb::AccountDocumentsAccess::None as i32,
    }
}

// rule T3: a secondary's GetMe and own GetAccessProfile show manage access UPDATE and
// contact updates UPDATE implied by SECONDARY, never account management; it may manage
// access and contacts (A3, C2) but neither transfer the primary (C8) nor grant itself (T7).
#[tokio::test]
async fn a_secondary_sees_and_uses_what_its_role_implies() {
    let suite = Suite::start().await;
    let primary = suite.person("Paula Primary").await;
    let secondary = suite.person("Sam Secondary").await;
    let newcomer = suite.person("Nina Newcomer").await;
    let site = suite.create_site("Secondary Works", &primary, None).await;
    suite
        .assign(&site.site_id, &secondary, Role::Secondary)
        .await;
    suite
        .wait_role(&site.site_id, &secondary.id, Role::Secondary)
        .await;
    let gw = suite.gw();

    // rule T3: GetMe composes access management's profile: the implied levels.
    let me = gw
        .clone()
        .get_me(authed(Some(&secondary.token), gw::GetMeRequest {}))
        .await
        .expect("get me")
        .into_inner();
    let mine: Vec<&gw::MySite> = me
        .sites
        .iter()
        .filter(|mine| {
            mine.site
                .as_ref()
                .is_some_and(|s| s.site_id == site.site_id)
        })
        .collect();
    assert_eq!(mine.len(), 1, "{me:?}");
    assert_eq!(mine[0].roles, [Role::Secondary as i32]);
    assert_eq!(mine[0].effective, Some(secondary_tools()), "rule T3");
    assert_eq!(mine[0].support_level, apb::SupportLevel::NoAccess as i32);

    // rule T3: its own profile names the role.
    let profile = gw
        .clone()
        .get_access_profile(authed(
            Some(&secondary.token),
            gw::GetAccessProfileRequest {
                site_id: site.site_id.clone(),
                user_id: String::new(),
            },
        ))
        .await
        .expect("own profile")
        .into_inner()
        .profile
        .expect("profile");
    assert_eq!(profile.implied_by, [Role::Secondary as i32]);
    assert_eq!(profile.effective, Some(secondary_tools()));

    // rule T3 + A3: it lists the site's access (ACCESS_VIEW) and grants within its levels.
    gw.clone()
        .list_site_access(authed(
            Some(&secondary.token),
            gw::ListSiteAccessRequest {
                site_id: site.site_id.clone(),
                page_size: 0,
                page_token: String::new(),
            },
        ))
        .await
        .expect("rule T3: manage access UPDATE includes VIEW");
    gw.clone()
        .set_tool_access(authed(
            Some(&secondary.token),
            gw::SetToolAccessRequest {
                site_id: site.site_id.clone(),
                user_id: newcomer.id.clone(),
                tools: Some(tools(|t| {
                    t.contact_updates = apb::ContactUpdatesAccess::View as i32;
                })),
                reason: "helps with contacts".into(),
                etag: String::new(),
                ..Default::default()
            },
        ))
        .await
        .expect("rule T3 + T4: within the secondary's implied levels");

    // rule T7: not to itself, even what its role implies already.
    let status = expect_code(
        gw.clone()
            .set_tool_access(authed(
                Some(&secondary.token),
                gw::SetToolAccessRequest {
                    site_id: site.site_id.clone(),
                    user_id: secondary.id.clone(),
                    tools: Some(tools(|t| {
                        t.manage_access = apb::ManageAccess::Update as i32;
                    })),
                    reason: "keep it after the role".into(),
                    etag: String::new(),
                    ..Default::default()
                },
            ))
            .await,
        Code::FailedPrecondition,
    );
    assert!(cites(status.message(), "T7"), "{status:?}");
    let after = suite
        .profile(&site.site_id, &secondary.id)
        .await
        .expect("profile");
    assert_eq!(
        after.explicit.map(|t| t.manage_access),
        Some(apb::ManageAccess::None as i32),
        "rule T7: nothing granted"
    );

    // rule T3: never account management, so it does not transfer the primary (C8).
    let status = expect_code(
        gw.clone()
            .transfer_primary_contact(authed(
                Some(&secondary.token),
                gw::TransferPrimaryContactRequest {
                    site_id: site.site_id.clone(),
                    email: secondary.email.clone(),
                    display_name: None,
                    etag: String::new(),
                    previous_primary_role: 0,
                    locale: String::new(),
                },
            ))
            .await,
        Code::PermissionDenied,
    );
    assert!(
        status.message().contains("ACCOUNT_MANAGEMENT"),
        "{status:?}"
    );
    let now = suite
        .profile(&site.site_id, &primary.id)
        .await
        .expect("profile");
    assert_eq!(now.implied_by, [Role::Primary as i32], "still the primary");
}
