//! Support users (DOMAIN.md U4–U6, issue 17) through the gateway: the site technical
//! contact lists the site's support users, adds people by e-mail (an unknown address is
//! invited and its level counts once proven, I1), changes levels and revokes support access;
//! a support ADMINISTRATOR may do the same but never touches the STC (U6); a user with only
//! contact updates, or with nothing, is refused and nothing changes. Access management
//! refuses the listing by itself too (U4), whoever calls it.

use crate::gateway::helpers::*;
use kc_proto::access::{self as apb, SupportLevel};
use kc_proto::gateway::{self as gw};
use kc_proto::identity::UserState;
use kc_testkit::grpc::on_behalf_of;
use tonic::Code;
use uuid::Uuid;

/// Every support user of the site as `by` lists them, page after page of `page_size`.
async fn support_users(
    suite: &Suite,
    by: &Person,
    site_id: &str,
    page_size: i32,
) -> Result<Vec<gw::SupportUser>, tonic::Status> {
    let mut users = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = suite
            .gw()
            .list_support_users(authed(
                Some(&by.token),
                gw::ListSupportUsersRequest {
                    site_id: site_id.into(),
                    page_size,
                    page_token,
                },
            ))
            .await?
            .into_inner();
        assert!(page.users.len() <= page_size as usize, "{page:?}");
        users.extend(page.users);
        if page.next_page_token.is_empty() {
            return Ok(users);
        }
        page_token = page.next_page_token;
    }
}

/// `by` adds the person of `email` to the site's support users at `level`.
async fn add(
    suite: &Suite,
    by: &Person,
    site_id: &str,
    email: &str,
    level: SupportLevel,
) -> Result<gw::AddSupportUserResponse, tonic::Status> {
    suite
        .gw()
        .add_support_user(authed(
            Some(&by.token),
            gw::AddSupportUserRequest {
                site_id: site_id.into(),
                email: email.into(),
                display_name: Some("Support Person".into()),
                locale: "en".into(),
                support_level: level as i32,
                reason: "handles the site's cases".into(),
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

/// `by` sets the support level of `user` (SetSupportAccess changes a support user's level).
async fn set_level(
    suite: &Suite,
    by: &Person,
    site_id: &str,
    user: &str,
    level: SupportLevel,
) -> Result<gw::SetSupportAccessResponse, tonic::Status> {
    suite
        .gw()
        .set_support_access(authed(
            Some(&by.token),
            gw::SetSupportAccessRequest {
                site_id: site_id.into(),
                user_id: user.into(),
                support_level: level as i32,
                reason: "takes over the escalations".into(),
                ..Default::default()
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

/// `by` revokes the support access of `user`.
async fn revoke(
    suite: &Suite,
    by: &Person,
    site_id: &str,
    user: &str,
) -> Result<gw::RevokeSupportAccessResponse, tonic::Status> {
    suite
        .gw()
        .revoke_support_access(authed(
            Some(&by.token),
            gw::RevokeSupportAccessRequest {
                site_id: site_id.into(),
                user_id: user.into(),
                reason: "left the support team".into(),
                etag: String::new(),
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

/// The listed entry of `user_id`.
fn entry<'a>(users: &'a [gw::SupportUser], user_id: &str) -> Option<&'a gw::SupportUser> {
    users.iter().find(|user| user.user_id == user_id)
}

/// (user id, effective level, explicit level) of each support user, for comparisons.
fn levels(users: &[gw::SupportUser]) -> Vec<(String, i32, i32)> {
    users
        .iter()
        .map(|u| (u.user_id.clone(), u.support_level, u.explicit_support_level))
        .collect()
}

// rules U4, U5, I1: the STC adds a proven person and an unknown address (invited, its level
// counting once proven), lists them page by page with their levels, changes a level and
// revokes support access.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stc_adds_lists_changes_and_revokes_support_users() {
    let suite = Suite::start().await;
    let primary = suite.person("Support Primary").await;
    let stc = suite.person("Support Stc").await;
    let site = suite
        .create_site("Support Site", &primary, Some(&stc))
        .await;
    let id = site.site_id.clone();
    suite.wait_role(&id, &stc.id, Role::SiteTechnical).await;
    let known = suite.person("Known Agent").await;

    // A proven person gets its level at once.
    let added = add(&suite, &stc, &id, &known.email, SupportLevel::Full)
        .await
        .expect("rule U5: the STC adds a support user");
    assert!(!added.user_invited, "{added:?}");
    assert!(!added.revision.is_empty(), "{added:?}");
    let profile = added.profile.expect("profile");
    assert_eq!(profile.explicit_support_level, SupportLevel::Full as i32);
    assert_eq!(profile.support_level, SupportLevel::Full as i32);

    // rule I1: an unknown address is invited; its level waits for the proof.
    let newcomer = fresh_email("newagent");
    let invited = add(&suite, &stc, &id, &newcomer, SupportLevel::Basic)
        .await
        .expect("the STC adds an unknown address");
    assert!(invited.user_invited, "{invited:?}");
    let newcomer_id = invited.user.expect("user").user_id;
    let profile = invited.profile.expect("profile");
    assert_eq!(profile.explicit_support_level, SupportLevel::Basic as i32);
    assert_eq!(
        profile.support_level,
        SupportLevel::NoAccess as i32,
        "rule I1: an unproven account holds nothing"
    );
    suite.mail(&newcomer, "NOTICE_KIND_INVITATION", 1).await;

    // The list, one per page: the STC (U5), the known agent and the invitee.
    let users = support_users(&suite, &stc, &id, 1).await.expect("list");
    assert_eq!(users.len(), 3, "{users:?}");
    let mut ids: Vec<&str> = users.iter().map(|u| u.user_id.as_str()).collect();
    let listed = ids.clone();
    ids.sort_unstable();
    assert_eq!(ids, listed, "in user-id order");
    let listed_stc = entry(&users, &stc.id).expect("the STC is listed");
    assert!(listed_stc.site_technical);
    assert_eq!(
        listed_stc.support_level,
        SupportLevel::Administrator as i32,
        "rule U5"
    );
    assert_eq!(listed_stc.email, stc.email);
    let listed_known = entry(&users, &known.id).expect("the agent is listed");
    assert_eq!(listed_known.support_level, SupportLevel::Full as i32);
    assert_eq!(listed_known.display_name, known.name);
    assert!(!listed_known.site_technical);
    let listed_new = entry(&users, &newcomer_id).expect("the invitee is listed");
    assert_eq!(listed_new.user_state, UserState::Invited as i32);
    assert_eq!(
        listed_new.explicit_support_level,
        SupportLevel::Basic as i32
    );
    assert_eq!(listed_new.support_level, SupportLevel::NoAccess as i32);

    // rule I1: once its owner proves the address, the level counts.
    suite
        .register(&newcomer, "New Agent", PASSWORD, "en")
        .await
        .expect("the invitee registers");
    suite.verify(&newcomer, PASSWORD).await;
    suite
        .wait_profile(&id, &newcomer_id, "the proven invitee's level", |p| {
            p.support_level == SupportLevel::Basic as i32
        })
        .await;

    // The STC changes a level; the agent, now ADMINISTRATOR, administers support users (U4).
    set_level(&suite, &stc, &id, &known.id, SupportLevel::Administrator)
        .await
        .expect("rule U4: the STC changes a support level");
    let users = support_users(&suite, &known, &id, 100)
        .await
        .expect("rule U4: a support ADMINISTRATOR lists the support users");
    assert_eq!(
        entry(&users, &known.id).map(|u| u.support_level),
        Some(SupportLevel::Administrator as i32)
    );
    set_level(&suite, &known, &id, &newcomer_id, SupportLevel::Full)
        .await
        .expect("rule U4: a support ADMINISTRATOR changes another's level");

    // The STC revokes the agent's support access: it leaves the list.
    let revoked = revoke(&suite, &stc, &id, &known.id)
        .await
        .expect("the STC revokes support access");
    let profile = revoked.profile.expect("profile");
    assert_eq!(
        profile.explicit_support_level,
        SupportLevel::NoAccess as i32
    );
    assert_eq!(profile.support_level, SupportLevel::NoAccess as i32);
    let users = support_users(&suite, &stc, &id, 100).await.expect("list");
    assert!(entry(&users, &known.id).is_none(), "{users:?}");
    assert_eq!(
        entry(&users, &newcomer_id).map(|u| u.support_level),
        Some(SupportLevel::Full as i32)
    );
    // Revoked, the agent administers nothing any more.
    expect_code(
        support_users(&suite, &known, &id, 100).await,
        Code::PermissionDenied,
    );
}

// rule U6: a support ADMINISTRATOR cannot take support administration from the STC, neither
// by a new level nor by a revocation, and neither can the operator; the STC stays
// ADMINISTRATOR.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_support_administrator_cannot_touch_the_stc() {
    let suite = Suite::start().await;
    let primary = suite.person("U6 Primary").await;
    let stc = suite.person("U6 Stc").await;
    let site = suite.create_site("U6 Site", &primary, Some(&stc)).await;
    let id = site.site_id.clone();
    suite.wait_role(&id, &stc.id, Role::SiteTechnical).await;
    let admin = suite.person("U6 Admin").await;
    add(&suite, &stc, &id, &admin.email, SupportLevel::Administrator)
        .await
        .expect("the STC names a support ADMINISTRATOR");

    for by in [&admin, &suite.operator] {
        let refused = expect_code(
            revoke(&suite, by, &id, &stc.id).await,
            Code::FailedPrecondition,
        );
        assert!(cites(refused.message(), "U6"), "{refused:?}");
        let refused = expect_code(
            set_level(&suite, by, &id, &stc.id, SupportLevel::Basic).await,
            Code::FailedPrecondition,
        );
        assert!(cites(refused.message(), "U6"), "{refused:?}");
        let refused = expect_code(
            add(&suite, by, &id, &stc.email, SupportLevel::Basic).await,
            Code::FailedPrecondition,
        );
        assert!(cites(refused.message(), "U6"), "{refused:?}");
    }
    let users = support_users(&suite, &stc, &id, 100).await.expect("list");
    let listed = entry(&users, &stc.id).expect("the STC");
    assert_eq!(listed.support_level, SupportLevel::Administrator as i32);
    assert_eq!(listed.explicit_support_level, SupportLevel::NoAccess as i32);
}

// rule U4: a user with only contact updates UPDATE, and a user with nothing on the site, may
// neither list, add, change nor revoke support users; nothing changes, nobody is invited.
// Access management refuses the listing itself to a person who is no support administrator,
// even when a service asks for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_support_administration_nothing_changes() {
    let suite = Suite::start().await;
    let primary = suite.person("Refused Primary").await;
    let stc = suite.person("Refused Stc").await;
    let site = suite
        .create_site("Refused Site", &primary, Some(&stc))
        .await;
    let id = site.site_id.clone();
    suite.wait_role(&id, &stc.id, Role::SiteTechnical).await;
    let editor = suite.person("Contacts Editor").await;
    suite.assign(&id, &editor, Role::SiteUser).await;
    let granted = tools(|t| t.contact_updates = apb::ContactUpdatesAccess::Update as i32);
    suite.grant(&id, &editor.id, granted).await;
    let stranger = suite.person("Stranger").await;
    let agent = suite.person("Basic Agent").await;
    add(&suite, &stc, &id, &agent.email, SupportLevel::Basic)
        .await
        .expect("the STC adds an agent");
    let before = levels(&support_users(&suite, &stc, &id, 100).await.expect("list"));

    for by in [&editor, &stranger] {
        expect_code(
            support_users(&suite, by, &id, 100).await,
            Code::PermissionDenied,
        );
        let unknown = fresh_email("notinvited");
        expect_code(
            add(&suite, by, &id, &unknown, SupportLevel::Full).await,
            Code::PermissionDenied,
        );
        expect_code(
            add(&suite, by, &id, &by.email, SupportLevel::Administrator).await,
            Code::PermissionDenied,
        );
        expect_code(
            set_level(&suite, by, &id, &agent.id, SupportLevel::Administrator).await,
            Code::PermissionDenied,
        );
        expect_code(
            revoke(&suite, by, &id, &agent.id).await,
            Code::PermissionDenied,
        );
        // Nobody was invited: identity has no account for the address.
        let lookup = suite
            .identity()
            .lookup_user(suite.op(kc_proto::identity::LookupUserRequest { email: unknown }))
            .await;
        expect_code(lookup, Code::NotFound);
    }
    assert_eq!(
        levels(&support_users(&suite, &stc, &id, 100).await.expect("list")),
        before,
        "a refused call changes nothing"
    );

    // Access management decides by itself (U4): asked by a service for the editor, it
    // refuses; for the STC, it lists.
    let (_, service) = suite.service_account("support-users-test").await;
    let ask = |user: &Person| {
        on_behalf_of(
            authed(
                Some(&service),
                apb::ListSupportUsersRequest {
                    site_id: id.clone(),
                    ..Default::default()
                },
            ),
            Uuid::parse_str(&user.id).expect("user id"),
        )
    };
    let refused = expect_code(
        suite.access().list_support_users(ask(&editor)).await,
        Code::PermissionDenied,
    );
    assert!(cites(refused.message(), "U4"), "{refused:?}");
    let listed = suite
        .access()
        .list_support_users(ask(&stc))
        .await
        .expect("the STC's listing")
        .into_inner();
    assert_eq!(listed.profiles.len(), before.len(), "{listed:?}");
}
