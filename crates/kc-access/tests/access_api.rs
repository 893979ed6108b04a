//! Access management through its gRPC interface, with the real identity and contact registry
//! beside it on one Postgres database: every RPC, and the rules T1–T5, U1–U6, A1–A7, S3, L1.

mod common;

use std::collections::HashSet;

use common::*;
use kc_proto::access::{self as pb, event::Payload};
use tonic::Code;
use uuid::Uuid;

fn ts(t: &Option<prost_types::Timestamp>) -> (i64, i32) {
    let t = t.as_ref().expect("timestamp");
    (t.seconds, t.nanos)
}

// rules T2, T3: the primary contact holds the top level of every tool by its role (and, while
// the site has no site technical contact, support ADMINISTRATOR, R1); the administrative
// contact holds account documents VIEW, and manage access UPDATE only with the C3 switch on;
// a user with neither grant nor role has every level NONE. Explicit and effective differ.
#[tokio::test]
async fn access_profile_shows_effective_explicit_and_implied_rights() {
    let s = Suite::start().await;
    let (primary, admin, nobody) = (s.user().await, s.user().await, s.user().await);
    let site = s.site(primary).await;
    s.assign(&site.site_id, admin, Role::Administrative).await;

    // rule T3: PRIMARY implies the top of every tool; nothing was granted explicitly.
    let p = s.profile(&site.site_id, primary).await;
    assert_eq!(p.site_id, site.site_id);
    assert_eq!(p.user_id, primary.to_string());
    assert_eq!(p.site_number, site.site_number);
    assert_eq!(p.effective, Some(top_tools()));
    assert_eq!(p.explicit, Some(no_tools()));
    assert_eq!(roles(&p), [Role::Primary]);
    // rule R1 (T3): no site technical contact, so the primary stands in for it.
    assert_eq!(p.support_level, Su::Administrator as i32);
    assert_eq!(p.explicit_support_level, Su::NoAccess as i32);
    assert!(!p.user_disabled);
    assert!(p.update_time.is_none(), "nothing was ever granted: {p:?}");
    assert_eq!(p.updated_by, "");

    // rule T3: ADMINISTRATIVE implies account documents VIEW, manage access only with C3.
    let a = eventually(
        "the administrative role reaches access management",
        || async {
            let a = s.profile(&site.site_id, admin).await;
            if roles(&a) == [Role::Administrative] {
                Ok(a)
            } else {
                Err(format!("{a:?}"))
            }
        },
    )
    .await;
    let effective = a.effective.expect("effective");
    assert_eq!(effective.account_documents, Docs::View as i32);
    assert_eq!(effective.manage_access, Ma::None as i32);
    assert_eq!(effective.software, Sw::None as i32);
    assert_eq!(a.explicit, Some(no_tools()));
    assert_eq!(a.support_level, Su::NoAccess as i32);

    // A user with neither role nor grant: every level NONE.
    let n = s.profile(&site.site_id, nobody).await;
    assert_eq!(n.effective, Some(no_tools()));
    assert_eq!(n.explicit, Some(no_tools()));
    assert!(n.implied_by.is_empty());
    assert_eq!(n.support_level, Su::NoAccess as i32);

    // rule T2: at first only the primary contact has account management.
    assert!(
        s.check(primary, &site.site_id, P::AccountManagement)
            .await
            .allowed
    );
    assert!(
        !s.check(admin, &site.site_id, P::AccountManagement)
            .await
            .allowed
    );
    assert!(
        !s.check(nobody, &site.site_id, P::AccountManagement)
            .await
            .allowed
    );

    // rule T3: effective = the higher of explicit and implied, tool by tool.
    let after = s
        .set_tools(
            primary,
            &site.site_id,
            admin,
            pb::ToolAccess {
                reporting: Re::View as i32,
                account_documents: Docs::None as i32,
                ..keep()
            },
            "needs the reports",
        )
        .await
        .expect("primary grants reporting");
    let explicit = after.explicit.expect("explicit");
    let effective = after.effective.expect("effective");
    assert_eq!(explicit.reporting, Re::View as i32);
    assert_eq!(explicit.account_documents, Docs::None as i32);
    assert_eq!(effective.reporting, Re::View as i32);
    assert_eq!(
        effective.account_documents,
        Docs::View as i32,
        "still implied"
    );
    assert_eq!(after.updated_by, primary.to_string());
    assert!(after.update_time.is_some());
    assert!(!after.etag.is_empty());

    // rule T3 with C3: turning the switch on gives the administrative contact manage access
    // UPDATE (and the approval of site access requests, A3).
    s.set_admin_switch(&site.site_id, true).await;
    let decision = s
        .wait_check(admin, &site.site_id, P::AccessUpdate, true)
        .await;
    assert_eq!(decision.reason, "implied by ADMINISTRATIVE (T3)");
    let a = s.profile(&site.site_id, admin).await;
    assert_eq!(
        a.effective.expect("effective").manage_access,
        Ma::Update as i32
    );
    assert_eq!(a.explicit.expect("explicit").manage_access, Ma::None as i32);
    // ... and off again.
    s.set_admin_switch(&site.site_id, false).await;
    s.wait_check(admin, &site.site_id, P::AccessUpdate, false)
        .await;
}

// rules T1, T4, T5: SetToolAccess changes only the levels it names, is checked with the
// profile's etag (ABORTED when stale), needs a reason, and a Check right after it on the same
// replica reflects the change.
#[tokio::test]
async fn set_tool_access_changes_named_levels_under_etags() {
    let s = Suite::start().await;
    let (primary, user) = (s.user().await, s.user().await);
    let site = s.site(primary).await;

    let first = s
        .set_tools(
            primary,
            &site.site_id,
            user,
            Level::Software(Sw::DownloadsAndMedia).alone(),
            "ships our media",
        )
        .await
        .expect("grant software");
    assert_eq!(
        first.explicit.as_ref().unwrap().software,
        Sw::DownloadsAndMedia as i32
    );
    // rule T1: a higher level includes the lower ones; the change is visible at once.
    assert!(
        s.check(user, &site.site_id, P::SoftwareDownload)
            .await
            .allowed
    );
    assert!(s.check(user, &site.site_id, P::MediaAccess).await.allowed);
    let denied = s.check(user, &site.site_id, P::QuotesAndCatalogs).await;
    assert!(!denied.allowed);
    assert_eq!(
        denied.reason,
        "explicit grant: software DOWNLOADS_AND_MEDIA < FULL"
    );

    // UNSPECIFIED keeps the current level; the etag guards the change.
    let second = s
        .access()
        .set_tool_access(s.as_user(
            primary,
            pb::SetToolAccessRequest {
                site_id: site.site_id.clone(),
                user_id: user.to_string(),
                tools: Some(Level::Reporting(Re::View).alone()),
                reason: "reads the reports".into(),
                etag: first.etag.clone(),
            },
        ))
        .await
        .expect("set with the current etag")
        .into_inner()
        .profile
        .expect("profile");
    let explicit = second.explicit.expect("explicit");
    assert_eq!(explicit.software, Sw::DownloadsAndMedia as i32, "kept");
    assert_eq!(explicit.reporting, Re::View as i32);
    assert_ne!(second.etag, first.etag);
    let stale = s
        .access()
        .set_tool_access(s.as_user(
            primary,
            pb::SetToolAccessRequest {
                site_id: site.site_id.clone(),
                user_id: user.to_string(),
                tools: Some(Level::Software(Sw::None).alone()),
                reason: "stale".into(),
                etag: first.etag.clone(),
            },
        ))
        .await;
    expect_code(stale, Code::Aborted);
    assert_eq!(
        s.profile(&site.site_id, user).await.explicit,
        second.explicit,
        "a stale etag changes nothing"
    );

    // rule T5: a reason is required, 1 to 500 characters.
    expect_field(
        s.set_tools(
            primary,
            &site.site_id,
            user,
            Level::Reporting(Re::None).alone(),
            "",
        )
        .await,
        "reason",
    );
    expect_field(
        s.set_tools(
            primary,
            &site.site_id,
            user,
            Level::Reporting(Re::None).alone(),
            &"x".repeat(501),
        )
        .await,
        "reason",
    );
    // Malformed ids and a missing tools message are invalid.
    let bad = s
        .access()
        .set_tool_access(s.as_user(
            primary,
            pb::SetToolAccessRequest {
                site_id: "not-a-uuid".into(),
                user_id: user.to_string(),
                tools: Some(Level::Reporting(Re::None).alone()),
                reason: "x".into(),
                etag: String::new(),
            },
        ))
        .await;
    expect_code(bad, Code::InvalidArgument);
    let missing = s
        .access()
        .set_tool_access(s.as_user(
            primary,
            pb::SetToolAccessRequest {
                site_id: site.site_id.clone(),
                user_id: user.to_string(),
                tools: None,
                reason: "x".into(),
                etag: String::new(),
            },
        ))
        .await;
    expect_code(missing, Code::InvalidArgument);
    // rule T4: a grantor is a person: the service acting for nobody is refused.
    let anonymous = s
        .access()
        .set_tool_access(s.svc(pb::SetToolAccessRequest {
            site_id: site.site_id.clone(),
            user_id: user.to_string(),
            tools: Some(Level::Reporting(Re::None).alone()),
            reason: "nobody asked".into(),
            etag: String::new(),
        }))
        .await;
    assert!(anonymous.is_err(), "{anonymous:?}");
    // rule T4: a user without manage access UPDATE changes nothing.
    expect_refused(
        s.set_tools(
            user,
            &site.site_id,
            user,
            Level::Software(Sw::Full).alone(),
            "me",
        )
        .await,
        "T4",
    );
    assert_eq!(
        s.profile(&site.site_id, user).await.explicit,
        second.explicit
    );
}

// rules U4, U5, U6: the site technical contact (implicitly ADMINISTRATOR) and support
// ADMINISTRATORs set support levels; others cannot; nobody changes the STC's level.
#[tokio::test]
async fn support_levels_are_set_by_the_stc_and_support_administrators() {
    let s = Suite::start().await;
    let [primary, stc, admin, user, other] = s.users(5).await.try_into().unwrap();
    let site = s.supported_site(primary, stc).await;

    // rule U5: the STC is implicitly ADMINISTRATOR.
    let p = s.profile(&site.site_id, stc).await;
    assert_eq!(p.support_level, Su::Administrator as i32);
    assert_eq!(roles(&p), [Role::SiteTechnical]);
    let decision = s.check(stc, &site.site_id, P::SupportAdmin).await;
    assert!(decision.allowed);
    assert_eq!(decision.reason, "implied by SITE_TECHNICAL (U5)");
    // With an STC, the primary has no implied support level.
    assert_eq!(
        s.profile(&site.site_id, primary).await.support_level,
        Su::NoAccess as i32
    );

    // rule U4: the STC makes `admin` a support ADMINISTRATOR, who then sets levels too.
    let a = s
        .set_support(stc, &site.site_id, admin, Su::Administrator, "runs support")
        .await
        .expect("STC grants ADMINISTRATOR");
    assert_eq!(a.support_level, Su::Administrator as i32);
    assert_eq!(a.explicit_support_level, Su::Administrator as i32);
    let u = s
        .set_support(admin, &site.site_id, user, Su::Full, "works the cases")
        .await
        .expect("support admin grants FULL");
    assert_eq!(u.support_level, Su::Full as i32);
    // rules U2, U3: FULL includes BASIC; ADMINISTRATOR is more.
    assert!(
        s.check(user, &site.site_id, P::SupportOwnCases)
            .await
            .allowed
    );
    assert!(
        s.check(user, &site.site_id, P::SupportSiteCases)
            .await
            .allowed
    );
    assert!(!s.check(user, &site.site_id, P::SupportAdmin).await.allowed);
    assert!(
        !s.check(user, &site.site_id, P::ApproveSupportAccess)
            .await
            .allowed
    );

    // rule U4: a FULL user, and the primary (no support level of its own here), cannot.
    expect_refused(
        s.set_support(user, &site.site_id, other, Su::Basic, "helping")
            .await,
        "U4",
    );
    expect_refused(
        s.set_support(primary, &site.site_id, other, Su::Basic, "helping")
            .await,
        "U4",
    );
    // rule U6: a support administrator cannot change the STC's level.
    expect_refused(
        s.set_support(admin, &site.site_id, stc, Su::Basic, "demote")
            .await,
        "U6",
    );
    assert_eq!(
        s.profile(&site.site_id, stc).await.support_level,
        Su::Administrator as i32
    );
    // rule T5: a reason is required; UNSPECIFIED is not a level to set.
    expect_field(
        s.set_support(admin, &site.site_id, other, Su::Basic, "")
            .await,
        "reason",
    );
    expect_code(
        s.set_support(admin, &site.site_id, other, Su::Unspecified, "why")
            .await,
        Code::InvalidArgument,
    );
    // Lowering works too, by an administrator.
    let lowered = s
        .set_support(admin, &site.site_id, user, Su::Basic, "fewer cases")
        .await
        .expect("lower");
    assert_eq!(lowered.support_level, Su::Basic as i32);
    assert!(
        !s.check(user, &site.site_id, P::SupportSiteCases)
            .await
            .allowed
    );
}

// rules T3, T4, T5: RevokeAccess removes every explicit grant, tools and support; what the
// roles imply remains; it needs the authority that would set each part, and a reason.
#[tokio::test]
async fn revoke_access_keeps_what_roles_imply() {
    let s = Suite::start().await;
    let [primary, admin, outsider] = s.users(3).await.try_into().unwrap();
    let site = s.site(primary).await;
    s.assign(&site.site_id, admin, Role::Administrative).await;
    s.sync_registry().await;
    s.set_tools(
        primary,
        &site.site_id,
        admin,
        pb::ToolAccess {
            software: Sw::Full as i32,
            reporting: Re::View as i32,
            ..keep()
        },
        "temporary help",
    )
    .await
    .expect("grant");
    // rule R1: the primary is the support administrator of a site without STC.
    s.set_support(primary, &site.site_id, admin, Su::Full, "temporary help")
        .await
        .expect("support");

    // rule T4: an outsider cannot revoke; rule T5: a reason is required.
    expect_refused(
        s.revoke(outsider, &site.site_id, admin, "not mine").await,
        "T4",
    );
    expect_field(s.revoke(primary, &site.site_id, admin, "").await, "reason");

    let after = s
        .revoke(primary, &site.site_id, admin, "help no longer needed")
        .await
        .expect("revoke");
    assert_eq!(after.explicit, Some(no_tools()));
    assert_eq!(after.explicit_support_level, Su::NoAccess as i32);
    let effective = after.effective.expect("effective");
    assert_eq!(effective.software, Sw::None as i32);
    assert_eq!(effective.reporting, Re::None as i32);
    assert_eq!(
        effective.account_documents,
        Docs::View as i32,
        "implied (T3)"
    );
    assert_eq!(after.support_level, Su::NoAccess as i32);
    assert_eq!(roles(&after), [Role::Administrative]);
    assert!(
        !s.check(admin, &site.site_id, P::SoftwareDownload)
            .await
            .allowed
    );
    assert!(
        s.check(admin, &site.site_id, P::DocumentsView)
            .await
            .allowed
    );

    // rule T5: who, what and why.
    let records = s.audit(&site.site_id).await;
    let revoked = records
        .iter()
        .find(|r| r.reason == "help no longer needed")
        .unwrap_or_else(|| panic!("an audit record of the revocation: {records:?}"));
    assert_eq!(revoked.actor_id, primary.to_string());
    assert_eq!(revoked.resource_id, admin.to_string());
    assert!(!revoked.before_json.is_empty(), "{revoked:?}");
}

// ListSiteAccess lists every user with a grant or an implying role, in user-id order, over
// pages; ListUserAccess lists one user's sites in site-id order.
#[tokio::test]
async fn list_site_access_and_list_user_access_paginate() {
    let s = Suite::start().await;
    let primary = s.user().await;
    let site = s.site(primary).await;
    let granted = s.users(5).await;
    for user in &granted {
        s.set_tools(
            primary,
            &site.site_id,
            *user,
            Level::Reporting(Re::View).alone(),
            "reports",
        )
        .await
        .expect("grant");
    }
    // A SITE_USER without grant implies nothing: not listed.
    let plain = s.user().await;
    s.assign(&site.site_id, plain, Role::SiteUser).await;
    s.sync_registry().await;

    let mut expected: Vec<String> = granted.iter().map(Uuid::to_string).collect();
    expected.push(primary.to_string());
    expected.sort();
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = s
            .access()
            .list_site_access(s.svc(pb::ListSiteAccessRequest {
                site_id: site.site_id.clone(),
                page_size: 2,
                page_token: token,
            }))
            .await
            .expect("list site access")
            .into_inner();
        assert!(page.profiles.len() <= 2);
        seen.extend(page.profiles.iter().map(|p| p.user_id.clone()));
        pages += 1;
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
        assert!(pages < 10, "pagination ends");
    }
    assert_eq!(seen, expected, "every profile once, in user-id order");
    assert_eq!(pages, 3);
    expect_code(
        s.access()
            .list_site_access(s.svc(pb::ListSiteAccessRequest {
                site_id: site.site_id.clone(),
                page_size: 2,
                page_token: "garbage".into(),
            }))
            .await,
        Code::InvalidArgument,
    );

    // One user on three sites: primary of one, granted on two others.
    let traveller = granted[0];
    let own_site = s.site(traveller).await;
    let third = s.site(s.user().await).await;
    let third_primary = uuid(&third.primary_user_id);
    s.set_tools(
        third_primary,
        &third.site_id,
        traveller,
        Level::Software(Sw::DownloadsOnly).alone(),
        "downloads",
    )
    .await
    .expect("grant");
    let mut expected_sites = vec![
        site.site_id.clone(),
        own_site.site_id.clone(),
        third.site_id.clone(),
    ];
    expected_sites.sort();
    let mut sites = Vec::new();
    let mut token = String::new();
    loop {
        let page = s
            .access()
            .list_user_access(s.svc(pb::ListUserAccessRequest {
                user_id: traveller.to_string(),
                page_size: 1,
                page_token: token,
            }))
            .await
            .expect("list user access")
            .into_inner();
        assert!(page.profiles.len() <= 1);
        for profile in &page.profiles {
            assert_eq!(profile.user_id, traveller.to_string());
            if profile.site_id == own_site.site_id {
                assert_eq!(roles(profile), [Role::Primary]);
            }
        }
        sites.extend(page.profiles.into_iter().map(|p| p.site_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
        assert!(sites.len() < 10, "pagination ends");
    }
    assert_eq!(sites, expected_sites, "every site once, in site-id order");
}

// rules T1, T3: Check answers from the effective rights and says which grant or role decided;
// an unknown site or user is a denial, not an error.
#[tokio::test]
async fn check_says_which_grant_or_role_decided() {
    let s = Suite::start().await;
    let [primary, viewer, nobody] = s.users(3).await.try_into().unwrap();
    let site = s.site(primary).await;

    let decision = s.check(primary, &site.site_id, P::AccessUpdate).await;
    assert!(decision.allowed);
    assert_eq!(decision.reason, "implied by PRIMARY (T3)");
    let decision = s.check(primary, &site.site_id, P::ApproveSiteAccess).await;
    assert!(decision.allowed);
    assert_eq!(decision.reason, "implied by PRIMARY (T3)");

    s.set_tools(
        primary,
        &site.site_id,
        viewer,
        Level::ManageAccess(Ma::View).alone(),
        "audits access",
    )
    .await
    .expect("grant VIEW");
    let decision = s.check(viewer, &site.site_id, P::AccessUpdate).await;
    assert!(!decision.allowed);
    assert_eq!(
        decision.reason,
        "explicit grant: manage access VIEW < UPDATE"
    );
    let decision = s.check(viewer, &site.site_id, P::AccessView).await;
    assert!(decision.allowed);
    assert!(
        decision
            .reason
            .starts_with("explicit grant: manage access VIEW"),
        "{decision:?}"
    );
    assert!(
        !s.check(viewer, &site.site_id, P::ApproveSiteAccess)
            .await
            .allowed
    );

    let decision = s.check(nobody, &site.site_id, P::SoftwareDownload).await;
    assert!(!decision.allowed);
    assert!(!decision.reason.is_empty());

    // Unknown site or user: denied, with a reason.
    let unknown_site = s
        .check(primary, &Uuid::new_v4().to_string(), P::SoftwareDownload)
        .await;
    assert!(!unknown_site.allowed);
    assert!(!unknown_site.reason.is_empty());
    let unknown_user = s
        .check(Uuid::new_v4(), &site.site_id, P::DocumentsView)
        .await;
    assert!(!unknown_user.allowed);

    // Invalid checks.
    expect_code(
        s.access()
            .check(s.svc(check_request(primary, &site.site_id, P::Unspecified)))
            .await,
        Code::InvalidArgument,
    );
    expect_code(
        s.access()
            .check(s.svc(pb::CheckRequest {
                user_id: "someone".into(),
                site_id: site.site_id.clone(),
                permission: P::SoftwareDownload as i32,
            }))
            .await,
        Code::InvalidArgument,
    );
}

// BatchCheck answers up to 100 checks in their order; more than 100 (or none) is invalid.
#[tokio::test]
async fn batch_check_answers_in_order_up_to_one_hundred() {
    let s = Suite::start().await;
    let [primary, user] = s.users(2).await.try_into().unwrap();
    let site = s.site(primary).await;
    s.set_tools(
        primary,
        &site.site_id,
        user,
        Level::Reporting(Re::View).alone(),
        "reports",
    )
    .await
    .expect("grant");

    let checks: Vec<pb::CheckRequest> = (0..100)
        .map(|i| match i % 4 {
            0 => check_request(primary, &site.site_id, P::LicenseRenewal),
            1 => check_request(user, &site.site_id, P::ReportsView),
            2 => check_request(user, &site.site_id, P::EntitlementsView),
            _ => check_request(user, &Uuid::new_v4().to_string(), P::ReportsView),
        })
        .collect();
    let results = s
        .access()
        .batch_check(s.svc(pb::BatchCheckRequest { checks }))
        .await
        .expect("100 checks")
        .into_inner()
        .results;
    assert_eq!(results.len(), 100);
    for (i, result) in results.iter().enumerate() {
        assert_eq!(result.allowed, i % 4 < 2, "check {i}: {result:?}");
        if i % 4 == 0 {
            assert_eq!(result.reason, "implied by PRIMARY (T3)");
        }
    }
    // The batch matches single checks.
    let all = s.check_all(user, &site.site_id).await;
    for (permission, result) in ALL_PERMISSIONS.iter().zip(&all) {
        assert_eq!(
            *result,
            s.check(user, &site.site_id, *permission).await,
            "{permission:?}"
        );
    }
    // More than 100, or none, is invalid.
    let too_many = (0..101)
        .map(|_| check_request(user, &site.site_id, P::ReportsView))
        .collect();
    expect_code(
        s.access()
            .batch_check(s.svc(pb::BatchCheckRequest { checks: too_many }))
            .await,
        Code::InvalidArgument,
    );
    expect_code(
        s.access()
            .batch_check(s.svc(pb::BatchCheckRequest { checks: vec![] }))
            .await,
        Code::InvalidArgument,
    );
    // One invalid check spoils the batch.
    let mut checks: Vec<_> = (0..3)
        .map(|_| check_request(user, &site.site_id, P::ReportsView))
        .collect();
    checks[1].permission = P::Unspecified as i32;
    expect_code(
        s.access()
            .batch_check(s.svc(pb::BatchCheckRequest { checks }))
            .await,
        Code::InvalidArgument,
    );
}

// rule A3: approvers of site access are the primary and holders of manage access UPDATE
// (the administrative contact with the C3 switch on); of support access, the STC and
// support ADMINISTRATORs. Role holders first, then by user id.
#[tokio::test]
async fn list_approvers_follows_rule_a3_for_both_kinds() {
    let s = Suite::start().await;
    let [primary, stc, manager, admin, support_admin, viewer] =
        s.users(6).await.try_into().unwrap();
    let site = s.supported_site(primary, stc).await;
    s.assign(&site.site_id, admin, Role::Administrative).await;
    s.set_admin_switch(&site.site_id, true).await;
    s.set_tools(
        primary,
        &site.site_id,
        manager,
        Level::ManageAccess(Ma::Update).alone(),
        "co-manages access",
    )
    .await
    .expect("grant UPDATE");
    s.set_tools(
        primary,
        &site.site_id,
        viewer,
        Level::ManageAccess(Ma::View).alone(),
        "looks only",
    )
    .await
    .expect("grant VIEW");
    s.set_support(
        stc,
        &site.site_id,
        support_admin,
        Su::Administrator,
        "backup",
    )
    .await
    .expect("support admin");
    s.wait_check(admin, &site.site_id, P::ApproveSiteAccess, true)
        .await;

    let site_approvers = s.approvers(&site.site_id, Kind::SiteAccess).await;
    let ids: Vec<Uuid> = site_approvers.iter().map(|a| uuid(&a.user_id)).collect();
    assert_eq!(ids, [primary, admin, manager], "{site_approvers:?}");
    assert_eq!(site_approvers[0].reason, "A3: implied by PRIMARY (T3)");
    assert!(cites(&site_approvers[2].reason, "A3"), "{site_approvers:?}");

    let support = s.approvers(&site.site_id, Kind::SupportAccess).await;
    let ids: Vec<Uuid> = support.iter().map(|a| uuid(&a.user_id)).collect();
    assert_eq!(ids, [stc, support_admin], "{support:?}");
    assert_eq!(support[0].reason, "A3: implied by SITE_TECHNICAL (U5)");

    expect_code(
        s.access()
            .list_approvers(s.svc(pb::ListApproversRequest {
                site_id: site.site_id.clone(),
                kind: Kind::Unspecified as i32,
                page_size: 0,
                page_token: String::new(),
            }))
            .await,
        Code::InvalidArgument,
    );

    // Pages of one.
    let mut paged = Vec::new();
    let mut token = String::new();
    loop {
        let page = s
            .access()
            .list_approvers(s.svc(pb::ListApproversRequest {
                site_id: site.site_id.clone(),
                kind: Kind::SiteAccess as i32,
                page_size: 1,
                page_token: token,
            }))
            .await
            .expect("page")
            .into_inner();
        assert!(page.approvers.len() <= 1);
        paged.extend(page.approvers);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
        assert!(paged.len() < 10);
    }
    assert_eq!(paged, site_approvers);
}

// rules A1, S3: a user names the site number and the customer number; when they do not
// match one site the request is NOT_FOUND with one message whichever was wrong.
#[tokio::test]
async fn submit_needs_matching_site_and_customer_numbers_without_saying_which() {
    let s = Suite::start().await;
    let [primary, requester] = s.users(2).await.try_into().unwrap();
    let site = s.site(primary).await;
    let other = s.site(s.user().await).await;
    let tools = Level::Software(Sw::DownloadsOnly).alone();

    let mut messages = HashSet::new();
    for (site_number, customer_number) in [
        ("9999999", site.customer_number.as_str()),
        (site.site_number.as_str(), "9999999"),
        (site.site_number.as_str(), other.customer_number.as_str()),
        (other.site_number.as_str(), site.customer_number.as_str()),
    ] {
        let status = expect_code(
            s.submit(
                requester,
                pb::SubmitAccessRequestRequest {
                    site_number: site_number.into(),
                    customer_number: customer_number.into(),
                    ..site_access(&site, tools)
                },
            )
            .await,
            Code::NotFound,
        );
        assert!(!status.message().contains(site_number), "{status:?}");
        assert!(!status.message().contains(customer_number), "{status:?}");
        messages.insert(status.message().to_owned());
    }
    assert_eq!(
        messages.len(),
        1,
        "one message for every mismatch (S3): {messages:?}"
    );
    assert!(s.my_requests(requester).await.is_empty());

    // rule A1: the matching pair makes a PENDING request for the primary to decide.
    let request = s
        .submit_tools(requester, &site, tools)
        .await
        .expect("submit");
    assert_eq!(state(&request), State::Pending);
    assert_eq!(request.site_id, site.site_id);
    assert_eq!(request.site_number, site.site_number);
    assert_eq!(request.requester_user_id, requester.to_string());
    assert_eq!(request.kind, Kind::SiteAccess as i32);
    assert_eq!(
        request.requested_tools.as_ref().unwrap().software,
        Sw::DownloadsOnly as i32
    );
    assert_eq!(request.justification, "I download our software");
    assert_eq!(request.decided_by, "");
    assert!(request.decide_time.is_none());
    assert!(ts(&request.expire_time) > ts(&request.create_time));
    assert!(!request.etag.is_empty());
    assert!(!request.auto_approved);
    assert!(
        s.approver_ids(&site.site_id, Kind::SiteAccess)
            .await
            .contains(&primary)
    );
}

// rule A1: what a request asks for is checked.
#[tokio::test]
async fn submit_validates_what_is_asked() {
    let s = Suite::start().await;
    let [primary, requester] = s.users(2).await.try_into().unwrap();
    let site = s.site(primary).await;
    let tools = Level::Software(Sw::DownloadsOnly).alone();

    // Kind is required.
    expect_field(
        s.submit(
            requester,
            pb::SubmitAccessRequestRequest {
                kind: Kind::Unspecified as i32,
                ..site_access(&site, tools)
            },
        )
        .await,
        "kind",
    );
    // SITE_ACCESS asks for at least one tool above NONE.
    expect_code(
        s.submit(requester, site_access(&site, keep())).await,
        Code::InvalidArgument,
    );
    expect_code(
        s.submit(requester, site_access(&site, no_tools())).await,
        Code::InvalidArgument,
    );
    // ... and no support level; SUPPORT_ACCESS asks for a level above NO_ACCESS and no tools.
    expect_code(
        s.submit(
            requester,
            pb::SubmitAccessRequestRequest {
                requested_support_level: Su::Basic as i32,
                ..site_access(&site, tools)
            },
        )
        .await,
        Code::InvalidArgument,
    );
    expect_code(
        s.submit_support(requester, &site, Su::NoAccess).await,
        Code::InvalidArgument,
    );
    expect_code(
        s.submit(
            requester,
            pb::SubmitAccessRequestRequest {
                kind: Kind::SupportAccess as i32,
                requested_support_level: Su::Basic as i32,
                ..site_access(&site, tools)
            },
        )
        .await,
        Code::InvalidArgument,
    );
    // Justification up to 1000 characters.
    expect_field(
        s.submit(
            requester,
            pb::SubmitAccessRequestRequest {
                justification: "x".repeat(1001),
                ..site_access(&site, tools)
            },
        )
        .await,
        "justification",
    );
    // Site and customer numbers are required.
    expect_code(
        s.submit(
            requester,
            pb::SubmitAccessRequestRequest {
                site_number: String::new(),
                ..site_access(&site, tools)
            },
        )
        .await,
        Code::InvalidArgument,
    );
    // The requester is a person: the service acting for nobody cannot submit.
    let anonymous = s
        .access()
        .submit_access_request(s.svc(site_access(&site, tools)))
        .await;
    expect_codes(
        anonymous,
        &[
            Code::InvalidArgument,
            Code::PermissionDenied,
            Code::FailedPrecondition,
        ],
    );
    assert!(
        s.site_requests(&site.site_id, State::Unspecified)
            .await
            .is_empty()
    );
}

// rule A6: one user has at most one PENDING request per site and kind.
#[tokio::test]
async fn one_pending_request_per_user_site_and_kind() {
    let s = Suite::start().await;
    let [primary, stc, requester] = s.users(3).await.try_into().unwrap();
    let site = s.supported_site(primary, stc).await;
    let other = s.site(s.user().await).await;

    let first = s
        .submit_tools(requester, &site, Level::Software(Sw::DownloadsOnly).alone())
        .await
        .expect("first");
    let again = s
        .submit_tools(requester, &site, Level::Reporting(Re::View).alone())
        .await;
    expect_code(again, Code::AlreadyExists);
    // Another kind on the same site, and the same kind on another site, are fine.
    s.submit_support(requester, &site, Su::Basic)
        .await
        .expect("support request");
    s.submit_tools(
        requester,
        &other,
        Level::Software(Sw::DownloadsOnly).alone(),
    )
    .await
    .expect("other site");
    // Once decided, a new one may be submitted.
    s.reject(primary, &first.request_id, "not now")
        .await
        .expect("reject");
    s.submit_tools(requester, &site, Level::Reporting(Re::View).alone())
        .await
        .expect("after the decision");
    let pending = s.site_requests(&site.site_id, State::Pending).await;
    assert_eq!(pending.len(), 2, "one per kind: {pending:?}");
}

// rule A5: a request may ask to raise an existing level; approving it raises the level.
#[tokio::test]
async fn a_request_may_raise_an_existing_level() {
    let s = Suite::start().await;
    let [primary, user] = s.users(2).await.try_into().unwrap();
    let site = s.site(primary).await;
    s.set_tools(
        primary,
        &site.site_id,
        user,
        Level::Software(Sw::DownloadsOnly).alone(),
        "downloads",
    )
    .await
    .expect("grant");
    let request = s
        .submit_tools(user, &site, Level::Software(Sw::Full).alone())
        .await
        .expect("ask for more");
    assert_eq!(state(&request), State::Pending);
    let approved = s
        .approve(primary, &request.request_id, None, Su::Unspecified)
        .await
        .expect("approve as asked");
    assert_eq!(
        approved.profile.unwrap().explicit.unwrap().software,
        Sw::Full as i32
    );
    assert!(
        s.check(user, &site.site_id, P::LicenseRenewal)
            .await
            .allowed
    );
}

// GetAccessRequest, ListAccessRequests (newest first, by state, over pages) and
// ListMyAccessRequests (only the requester's own).
#[tokio::test]
async fn access_requests_are_read_and_listed() {
    let s = Suite::start().await;
    let primary = s.user().await;
    let site = s.site(primary).await;
    let second_site = s.site(s.user().await).await;
    let requesters = s.users(4).await;
    let mut submitted = Vec::new();
    for requester in &requesters {
        submitted.push(
            s.submit_tools(*requester, &site, Level::Reporting(Re::View).alone())
                .await
                .expect("submit"),
        );
    }
    let mine_elsewhere = s
        .submit_tools(
            requesters[0],
            &second_site,
            Level::Reporting(Re::View).alone(),
        )
        .await
        .expect("submit elsewhere");
    s.reject(primary, &submitted[1].request_id, "unknown to us")
        .await
        .expect("reject");

    // GetAccessRequest.
    let read = s.get_request(&submitted[0].request_id).await;
    assert_eq!(read, submitted[0]);
    expect_code(
        s.access()
            .get_access_request(s.svc(pb::GetAccessRequestRequest {
                request_id: Uuid::new_v4().to_string(),
            }))
            .await,
        Code::NotFound,
    );
    expect_code(
        s.access()
            .get_access_request(s.svc(pb::GetAccessRequestRequest {
                request_id: "nope".into(),
            }))
            .await,
        Code::InvalidArgument,
    );

    // Newest first, all states.
    let all = s.site_requests(&site.site_id, State::Unspecified).await;
    let ids: Vec<&str> = all.iter().map(|r| r.request_id.as_str()).collect();
    let expected: Vec<&str> = submitted
        .iter()
        .rev()
        .map(|r| r.request_id.as_str())
        .collect();
    assert_eq!(ids, expected, "newest first");
    for pair in all.windows(2) {
        assert!(ts(&pair[0].create_time) >= ts(&pair[1].create_time));
    }
    // By state.
    let pending = s.site_requests(&site.site_id, State::Pending).await;
    assert_eq!(pending.len(), 3);
    assert!(pending.iter().all(|r| state(r) == State::Pending));
    let rejected = s.site_requests(&site.site_id, State::Rejected).await;
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].request_id, submitted[1].request_id);
    assert!(
        s.site_requests(&site.site_id, State::Approved)
            .await
            .is_empty()
    );
    // Over pages.
    let mut paged = Vec::new();
    let mut token = String::new();
    loop {
        let page = s
            .access()
            .list_access_requests(s.svc(pb::ListAccessRequestsRequest {
                site_id: site.site_id.clone(),
                state: State::Unspecified as i32,
                page_size: 3,
                page_token: token,
            }))
            .await
            .expect("page")
            .into_inner();
        assert!(page.requests.len() <= 3);
        paged.extend(page.requests.into_iter().map(|r| r.request_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
        assert!(paged.len() < 20);
    }
    assert_eq!(paged, ids);

    // ListMyAccessRequests: only the on-behalf-of user's, newest first, on every site.
    let mine = s.my_requests(requesters[0]).await;
    let mine_ids: Vec<&str> = mine.iter().map(|r| r.request_id.as_str()).collect();
    assert_eq!(
        mine_ids,
        [
            mine_elsewhere.request_id.as_str(),
            submitted[0].request_id.as_str()
        ]
    );
    let theirs = s.my_requests(requesters[1]).await;
    assert_eq!(theirs.len(), 1);
    assert_eq!(state(&theirs[0]), State::Rejected);
    assert!(s.my_requests(primary).await.is_empty());
    // Without a person to act for, there is no "my".
    expect_codes(
        s.access()
            .list_my_access_requests(s.svc(pb::ListMyAccessRequestsRequest::default()))
            .await,
        &[
            Code::InvalidArgument,
            Code::PermissionDenied,
            Code::FailedPrecondition,
        ],
    );
}

// rules A3, A4, T4, A6: an approval may grant less than was asked, never more, nor more
// than the approver may grant itself; only approvers approve; a decided request stays so.
#[tokio::test]
async fn approve_grants_less_than_asked_but_never_more() {
    let s = Suite::start().await;
    let [primary, manager, requester, outsider] = s.users(4).await.try_into().unwrap();
    let site = s.site(primary).await;
    // The manager may grant software DOWNLOADS_ONLY and reporting VIEW (T4).
    s.set_tools(
        primary,
        &site.site_id,
        manager,
        pb::ToolAccess {
            manage_access: Ma::Update as i32,
            software: Sw::DownloadsOnly as i32,
            reporting: Re::View as i32,
            ..keep()
        },
        "co-manages access",
    )
    .await
    .expect("grant");
    let asked = pb::ToolAccess {
        software: Sw::Full as i32,
        reporting: Re::View as i32,
        ..keep()
    };
    let request = s
        .submit_tools(requester, &site, asked)
        .await
        .expect("submit");

    // rule A3: neither an outsider nor the requester decides.
    expect_refused(
        s.approve(outsider, &request.request_id, None, Su::Unspecified)
            .await,
        "A3",
    );
    expect_refused(
        s.approve(requester, &request.request_id, None, Su::Unspecified)
            .await,
        "A3",
    );
    // rule T4: the manager cannot grant software FULL (above its own DOWNLOADS_ONLY), even
    // though it was asked; approving "as asked" is the same.
    expect_refused(
        s.approve(
            manager,
            &request.request_id,
            Some(Level::Software(Sw::Full).alone()),
            Su::Unspecified,
        )
        .await,
        "T4",
    );
    expect_refused(
        s.approve(manager, &request.request_id, None, Su::Unspecified)
            .await,
        "T4",
    );
    // rule A4: never more than was asked, even by the primary.
    expect_refused(
        s.approve(
            primary,
            &request.request_id,
            Some(pb::ToolAccess {
                entitlements: En::View as i32,
                ..keep()
            }),
            Su::Unspecified,
        )
        .await,
        "A4",
    );
    // A stale etag is ABORTED.
    let stale = s
        .access()
        .approve_access_request(s.as_user(
            manager,
            pb::ApproveAccessRequestRequest {
                request_id: request.request_id.clone(),
                granted_tools: Some(Level::Software(Sw::DownloadsOnly).alone()),
                granted_support_level: 0,
                etag: format!("{}-stale", request.etag),
                note: String::new(),
            },
        ))
        .await;
    expect_code(stale, Code::Aborted);
    assert_eq!(
        state(&s.get_request(&request.request_id).await),
        State::Pending
    );

    // rule A4: less than asked is fine; an UNSPECIFIED level grants the asked one.
    let approved = s
        .access()
        .approve_access_request(s.as_user(
            manager,
            pb::ApproveAccessRequestRequest {
                request_id: request.request_id.clone(),
                granted_tools: Some(Level::Software(Sw::DownloadsOnly).alone()),
                granted_support_level: 0,
                etag: request.etag.clone(),
                note: "downloads for now".into(),
            },
        ))
        .await
        .expect("approve less")
        .into_inner();
    let decided = approved.request.expect("request");
    assert_eq!(state(&decided), State::Approved);
    assert_eq!(decided.decided_by, manager.to_string());
    assert_eq!(decided.decision_reason, "downloads for now");
    assert!(decided.decide_time.is_some());
    let granted = decided.granted_tools.expect("granted");
    assert_eq!(granted.software, Sw::DownloadsOnly as i32);
    assert_eq!(granted.reporting, Re::View as i32);
    let profile = approved.profile.expect("profile");
    assert_eq!(profile.user_id, requester.to_string());
    assert_eq!(
        profile.explicit.as_ref().unwrap().software,
        Sw::DownloadsOnly as i32
    );
    assert!(
        s.check(requester, &site.site_id, P::SoftwareDownload)
            .await
            .allowed
    );
    assert!(
        !s.check(requester, &site.site_id, P::MediaAccess)
            .await
            .allowed
    );
    assert!(
        s.check(requester, &site.site_id, P::ReportsView)
            .await
            .allowed
    );

    // rule A6: decided, it never changes again.
    expect_code(
        s.approve(primary, &request.request_id, None, Su::Unspecified)
            .await,
        Code::FailedPrecondition,
    );
    expect_code(
        s.reject(primary, &request.request_id, "changed my mind")
            .await,
        Code::FailedPrecondition,
    );
    expect_code(
        s.cancel(requester, &request.request_id).await,
        Code::FailedPrecondition,
    );
    assert_eq!(s.get_request(&request.request_id).await, decided);
    expect_code(
        s.approve(primary, &Uuid::new_v4().to_string(), None, Su::Unspecified)
            .await,
        Code::NotFound,
    );
}

// rules A3, A4, U4: support requests are decided by the STC and support ADMINISTRATORs,
// never above what was asked.
#[tokio::test]
async fn support_requests_are_decided_by_the_stc_and_support_administrators() {
    let s = Suite::start().await;
    let [primary, stc, requester] = s.users(3).await.try_into().unwrap();
    let site = s.supported_site(primary, stc).await;
    let request = s
        .submit_support(requester, &site, Su::Full)
        .await
        .expect("submit");
    assert_eq!(request.requested_support_level, Su::Full as i32);
    assert_eq!(
        s.approver_ids(&site.site_id, Kind::SupportAccess).await,
        [stc]
    );
    // rule A3: the primary is no support approver while the site has an STC.
    expect_refused(
        s.approve(primary, &request.request_id, None, Su::Basic)
            .await,
        "A3",
    );
    // rule A4: not more than asked.
    expect_refused(
        s.approve(stc, &request.request_id, None, Su::Administrator)
            .await,
        "A4",
    );
    let approved = s
        .approve(stc, &request.request_id, None, Su::Basic)
        .await
        .expect("approve BASIC");
    let decided = approved.request.expect("request");
    assert_eq!(decided.granted_support_level, Su::Basic as i32);
    assert_eq!(
        approved.profile.expect("profile").support_level,
        Su::Basic as i32
    );
    assert!(
        s.check(requester, &site.site_id, P::SupportOwnCases)
            .await
            .allowed
    );
    assert!(
        !s.check(requester, &site.site_id, P::SupportSiteCases)
            .await
            .allowed
    );
}

// rules A4, A3, A6: a rejection needs a reason and an approver; the requester's rights do
// not change; a rejected request stays rejected.
#[tokio::test]
async fn reject_needs_a_reason_and_an_approver() {
    let s = Suite::start().await;
    let [primary, requester, outsider] = s.users(3).await.try_into().unwrap();
    let site = s.site(primary).await;
    let request = s
        .submit_tools(requester, &site, Level::Software(Sw::Full).alone())
        .await
        .expect("submit");

    expect_field(s.reject(primary, &request.request_id, "").await, "reason");
    expect_field(
        s.reject(primary, &request.request_id, &"x".repeat(501))
            .await,
        "reason",
    );
    expect_refused(
        s.reject(outsider, &request.request_id, "who are you").await,
        "A3",
    );
    assert_eq!(
        state(&s.get_request(&request.request_id).await),
        State::Pending
    );

    let rejected = s
        .reject(primary, &request.request_id, "not an employee of ours")
        .await
        .expect("reject");
    assert_eq!(state(&rejected), State::Rejected);
    assert_eq!(rejected.decision_reason, "not an employee of ours");
    assert_eq!(rejected.decided_by, primary.to_string());
    assert!(rejected.decide_time.is_some());
    assert_eq!(
        s.profile(&site.site_id, requester).await.effective,
        Some(no_tools())
    );
    expect_code(
        s.approve(primary, &request.request_id, None, Su::Unspecified)
            .await,
        Code::FailedPrecondition,
    );
    expect_code(
        s.reject(primary, &request.request_id, "again").await,
        Code::FailedPrecondition,
    );
    assert_eq!(s.get_request(&request.request_id).await, rejected);
}

// rule A6: only the requester cancels its PENDING request.
#[tokio::test]
async fn only_the_requester_cancels() {
    let s = Suite::start().await;
    let [primary, requester, outsider] = s.users(3).await.try_into().unwrap();
    let site = s.site(primary).await;
    let request = s
        .submit_tools(requester, &site, Level::Reporting(Re::View).alone())
        .await
        .expect("submit");

    for other in [outsider, primary] {
        expect_codes(
            s.cancel(other, &request.request_id).await,
            &[Code::PermissionDenied, Code::FailedPrecondition],
        );
    }
    assert_eq!(
        state(&s.get_request(&request.request_id).await),
        State::Pending
    );

    let cancelled = s
        .cancel(requester, &request.request_id)
        .await
        .expect("cancel");
    assert_eq!(state(&cancelled), State::Cancelled);
    assert_eq!(cancelled.decided_by, "");
    assert!(cancelled.decide_time.is_some());
    expect_code(
        s.cancel(requester, &request.request_id).await,
        Code::FailedPrecondition,
    );
    expect_code(
        s.approve(primary, &request.request_id, None, Su::Unspecified)
            .await,
        Code::FailedPrecondition,
    );
    // A new request may follow.
    s.submit_tools(requester, &site, Level::Reporting(Re::View).alone())
        .await
        .expect("submit again");
}

// rule A6: a request left PENDING past the configured age expires (the sweeper), and then
// never changes again.
#[tokio::test]
async fn pending_requests_expire() {
    let s = Suite::start_with(&["--request-max-age", "1s", "--sweep-interval", "200ms"]).await;
    let [primary, requester] = s.users(2).await.try_into().unwrap();
    let site = s.site(primary).await;
    let request = s
        .submit_tools(requester, &site, Level::Reporting(Re::View).alone())
        .await
        .expect("submit");
    let (created, expires) = (ts(&request.create_time), ts(&request.expire_time));
    assert!(expires > created, "{request:?}");
    assert!(
        expires.0 - created.0 <= 2,
        "expires about a second after creation: {request:?}"
    );

    let expired = eventually("the request expires", || async {
        let read = s.get_request(&request.request_id).await;
        if state(&read) == State::Expired {
            Ok(read)
        } else {
            Err(format!("{read:?}"))
        }
    })
    .await;
    assert_eq!(expired.decided_by, "");
    assert!(expired.decide_time.is_some());
    expect_code(
        s.approve(primary, &request.request_id, None, Su::Unspecified)
            .await,
        Code::FailedPrecondition,
    );
    expect_code(
        s.cancel(requester, &request.request_id).await,
        Code::FailedPrecondition,
    );
    let event = s
        .find_event(|event| match &event.payload {
            Some(Payload::AccessRequestExpired(e)) => e
                .request
                .as_ref()
                .filter(|r| r.request_id == request.request_id)
                .map(|_| event.clone()),
            _ => None,
        })
        .await;
    assert_eq!(event.actor_id, "", "expiry is the service's own doing");
    assert_eq!(event.site_id, site.site_id);
    assert_eq!(
        s.site_requests(&site.site_id, State::Expired).await.len(),
        1
    );
    // The requester may ask again.
    s.submit_tools(requester, &site, Level::Reporting(Re::View).alone())
        .await
        .expect("submit again");
}

/// Submits until access management has seen what identity knows of the requester (its
/// verified e-mail arrives through identity's stream): a request that did not match yet is
/// cancelled and submitted again.
async fn submit_when_matched(
    s: &Suite,
    requester: Uuid,
    site: &kc_proto::contacts::Site,
    tools: pb::ToolAccess,
    matched: impl Fn(&pb::AccessRequest) -> bool,
) -> pb::AccessRequest {
    eventually("the request matches the domain policy (A7)", || async {
        let request = s
            .submit_tools(requester, site, tools)
            .await
            .expect("submit");
        if matched(&request) {
            return Ok(request);
        }
        if state(&request) == State::Pending {
            s.cancel(requester, &request.request_id)
                .await
                .expect("cancel");
        }
        Err(format!("{request:?}"))
    })
    .await
}

// rule A7: AUTO_APPROVE grants the baseline at once (never more than was asked), but only
// to a requester whose login e-mail is verified and in the domain.
#[tokio::test]
async fn auto_approve_only_for_a_verified_email_in_the_domain() {
    let s = Suite::start().await;
    let primary = s.user().await;
    let site = s.site(primary).await;
    let baseline = pb::ToolAccess {
        software: Sw::DownloadsOnly as i32,
        reporting: Re::View as i32,
        ..keep()
    };
    let policy = s
        .set_policy(
            primary,
            &site.site_id,
            "Acme.Example",
            Mode::AutoApprove,
            baseline,
            Su::Unspecified,
        )
        .await
        .expect("set policy");
    assert_eq!(policy.domain, "acme.example");
    assert_eq!(policy.policy, Mode::AutoApprove as i32);
    assert_eq!(policy.updated_by, primary.to_string());
    let stored = policy.baseline_tools.expect("baseline");
    assert_eq!(stored.software, Sw::DownloadsOnly as i32);
    assert_eq!(stored.reporting, Re::View as i32);
    assert_eq!(stored.entitlements, En::None as i32, "UNSPECIFIED is NONE");

    let verified = s.register("vera@acme.example").await;
    assert!(verified.email_verified);
    let verified = uuid(&verified.user_id);
    let unverified = s.register_unproven("walt@acme.example").await;
    let elsewhere = uuid(&s.register("olga@other.example").await.user_id);
    let asked = pb::ToolAccess {
        software: Sw::Full as i32,
        entitlements: En::View as i32,
        ..keep()
    };

    // The verified requester in the domain: approved at once with baseline ∧ asked.
    let approved =
        submit_when_matched(&s, verified, &site, asked, |r| state(r) == State::Approved).await;
    assert!(approved.auto_approved);
    assert_eq!(approved.matched_domain, "acme.example");
    assert_eq!(approved.decided_by, "");
    let granted = approved.granted_tools.expect("granted");
    assert_eq!(granted.software, Sw::DownloadsOnly as i32, "the baseline");
    assert_ne!(granted.reporting, Re::View as i32, "never more than asked");
    assert_ne!(granted.entitlements, En::View as i32, "not in the baseline");
    assert!(
        s.check(verified, &site.site_id, P::SoftwareDownload)
            .await
            .allowed
    );
    assert!(
        !s.check(verified, &site.site_id, P::MediaAccess)
            .await
            .allowed
    );
    assert!(
        !s.check(verified, &site.site_id, P::ReportsView)
            .await
            .allowed
    );
    assert!(
        !s.check(verified, &site.site_id, P::EntitlementsView)
            .await
            .allowed
    );

    // rule I1: an unverified requester in the domain asks for nothing at all (it used to
    // get an ordinary PENDING request; an unproven account now holds no request).
    expect_refused(s.submit_tools(unverified, &site, asked).await, "I1");
    assert!(s.my_requests(unverified).await.is_empty());
    assert!(
        !s.check(unverified, &site.site_id, P::SoftwareDownload)
            .await
            .allowed
    );

    // Another domain: an ordinary PENDING request.
    let request = s
        .submit_tools(elsewhere, &site, asked)
        .await
        .expect("submit");
    assert_eq!(state(&request), State::Pending, "{request:?}");
    assert!(!request.auto_approved);
    assert_eq!(request.matched_domain, "");
    assert!(
        !s.check(elsewhere, &site.site_id, P::SoftwareDownload)
            .await
            .allowed
    );

    // The events: submitted, then decided, with no actor (the policy decided).
    let events = s
        .site_events_until(&site.site_id, |events| {
            events.iter().any(|e| {
                matches!(&e.payload, Some(Payload::AccessRequestDecided(d))
                    if d.request.as_ref().is_some_and(|r| r.request_id == approved.request_id))
            })
        })
        .await;
    let decided = events
        .iter()
        .find(|e| {
            matches!(&e.payload, Some(Payload::AccessRequestDecided(d))
            if d.request.as_ref().is_some_and(|r| r.request_id == approved.request_id))
        })
        .expect("decided event");
    assert_eq!(decided.actor_id, "");
    let submitted_first = events.iter().position(|e| {
        matches!(&e.payload, Some(Payload::AccessRequestSubmitted(x))
            if x.request.as_ref().is_some_and(|r| r.request_id == approved.request_id))
    });
    let decided_at = events
        .iter()
        .position(|e| std::ptr::eq(e, decided))
        .expect("position");
    assert!(
        submitted_first.is_some_and(|at| at < decided_at),
        "AccessRequestSubmitted precedes AccessRequestDecided: {events:?}"
    );
}

// rule A7: AUTO_PENDING marks a verified requester of the domain, the request still waits
// for an approver; MANUAL changes nothing.
#[tokio::test]
async fn auto_pending_marks_the_request_and_waits_for_an_approver() {
    let s = Suite::start().await;
    let primary = s.user().await;
    let site = s.site(primary).await;
    s.set_policy(
        primary,
        &site.site_id,
        "pending.example",
        Mode::AutoPending,
        Level::Software(Sw::DownloadsOnly).alone(),
        Su::Unspecified,
    )
    .await
    .expect("AUTO_PENDING");
    s.set_policy(
        primary,
        &site.site_id,
        "manual.example",
        Mode::Manual,
        Level::Software(Sw::DownloadsOnly).alone(),
        Su::Unspecified,
    )
    .await
    .expect("MANUAL");
    let marked = uuid(&s.register("pat@pending.example").await.user_id);
    let manual = uuid(&s.register("max@manual.example").await.user_id);
    let asked = Level::Software(Sw::Full).alone();

    let request = submit_when_matched(&s, marked, &site, asked, |r| {
        r.matched_domain == "pending.example"
    })
    .await;
    assert_eq!(state(&request), State::Pending);
    assert!(!request.auto_approved);
    assert!(
        !s.check(marked, &site.site_id, P::SoftwareDownload)
            .await
            .allowed
    );
    // An approver still decides.
    s.approve(primary, &request.request_id, None, Su::Unspecified)
        .await
        .expect("approve");
    assert!(
        s.check(marked, &site.site_id, P::LicenseRenewal)
            .await
            .allowed
    );

    let request = s.submit_tools(manual, &site, asked).await.expect("submit");
    assert_eq!(state(&request), State::Pending);
    assert!(!request.auto_approved);
}

// rules A7, T4, U4: setting a domain policy needs manage access UPDATE and a baseline the
// setter could grant itself; policies are listed in domain order; changes are guarded by
// etags and announced to the site's approvers.
#[tokio::test]
async fn domain_policies_are_guarded_listed_and_announced() {
    let s = Suite::start().await;
    let [primary, manager, outsider] = s.users(3).await.try_into().unwrap();
    let site = s.site(primary).await;
    s.set_tools(
        primary,
        &site.site_id,
        manager,
        pb::ToolAccess {
            manage_access: Ma::Update as i32,
            software: Sw::DownloadsOnly as i32,
            ..keep()
        },
        "co-manages access",
    )
    .await
    .expect("grant");
    let downloads = Level::Software(Sw::DownloadsOnly).alone();

    // rule T4: no manage access UPDATE, or a baseline above one's own level.
    expect_refused(
        s.set_policy(
            outsider,
            &site.site_id,
            "x.example",
            Mode::AutoApprove,
            downloads,
            Su::Unspecified,
        )
        .await,
        "T4",
    );
    expect_refused(
        s.set_policy(
            manager,
            &site.site_id,
            "x.example",
            Mode::AutoApprove,
            Level::Software(Sw::Full).alone(),
            Su::Unspecified,
        )
        .await,
        "T4",
    );
    // rule U4: a support baseline needs a support ADMINISTRATOR.
    expect_refused(
        s.set_policy(
            manager,
            &site.site_id,
            "x.example",
            Mode::AutoApprove,
            downloads,
            Su::Basic,
        )
        .await,
        "U4",
    );
    // Invalid: no mode, no domain, not a domain.
    expect_field(
        s.set_policy(
            manager,
            &site.site_id,
            "x.example",
            Mode::Unspecified,
            downloads,
            Su::Unspecified,
        )
        .await,
        "policy",
    );
    expect_field(
        s.set_policy(
            manager,
            &site.site_id,
            "",
            Mode::Manual,
            downloads,
            Su::Unspecified,
        )
        .await,
        "domain",
    );
    expect_field(
        s.set_policy(
            manager,
            &site.site_id,
            "not a domain",
            Mode::Manual,
            downloads,
            Su::Unspecified,
        )
        .await,
        "domain",
    );

    let zeta = s
        .set_policy(
            manager,
            &site.site_id,
            "zeta.example",
            Mode::AutoApprove,
            downloads,
            Su::Unspecified,
        )
        .await
        .expect("manager sets a policy within its own levels");
    // rule R1: the primary administers support on a site without STC.
    let alpha = s
        .set_policy(
            primary,
            &site.site_id,
            "alpha.example",
            Mode::AutoPending,
            keep(),
            Su::Basic,
        )
        .await
        .expect("primary sets a support baseline");
    assert_eq!(alpha.baseline_support_level, Su::Basic as i32);

    let list = s
        .access()
        .list_domain_policies(s.svc(pb::ListDomainPoliciesRequest {
            site_id: site.site_id.clone(),
            page_size: 0,
            page_token: String::new(),
        }))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(
        list.domain_policies,
        [alpha.clone(), zeta.clone()],
        "domain order"
    );
    let first = s
        .access()
        .list_domain_policies(s.svc(pb::ListDomainPoliciesRequest {
            site_id: site.site_id.clone(),
            page_size: 1,
            page_token: String::new(),
        }))
        .await
        .expect("page 1")
        .into_inner();
    assert_eq!(first.domain_policies, std::slice::from_ref(&alpha));
    let second = s
        .access()
        .list_domain_policies(s.svc(pb::ListDomainPoliciesRequest {
            site_id: site.site_id.clone(),
            page_size: 1,
            page_token: first.next_page_token.clone(),
        }))
        .await
        .expect("page 2")
        .into_inner();
    assert_eq!(second.domain_policies, std::slice::from_ref(&zeta));
    assert!(second.next_page_token.is_empty());

    // Changing a policy: the etag guards it.
    let changed = s
        .access()
        .set_domain_policy(s.as_user(
            primary,
            pb::SetDomainPolicyRequest {
                site_id: site.site_id.clone(),
                domain: "zeta.example".into(),
                policy: Mode::Manual as i32,
                baseline_tools: Some(downloads),
                baseline_support_level: 0,
                etag: zeta.etag.clone(),
            },
        ))
        .await
        .expect("change with the etag")
        .into_inner()
        .domain_policy
        .expect("policy");
    assert_eq!(changed.policy, Mode::Manual as i32);
    assert_ne!(changed.etag, zeta.etag);
    let stale = s
        .access()
        .set_domain_policy(s.as_user(
            primary,
            pb::SetDomainPolicyRequest {
                site_id: site.site_id.clone(),
                domain: "zeta.example".into(),
                policy: Mode::AutoApprove as i32,
                baseline_tools: Some(downloads),
                baseline_support_level: 0,
                etag: zeta.etag.clone(),
            },
        ))
        .await;
    expect_code(stale, Code::Aborted);

    // rule A7: changes notify the site's approvers (of both kinds).
    let events = s
        .site_events_until(&site.site_id, |events| {
            events
                .iter()
                .filter(|e| matches!(e.payload, Some(Payload::DomainPolicyChanged(_))))
                .count()
                >= 3
        })
        .await;
    let changes: Vec<&pb::DomainPolicyChanged> = events
        .iter()
        .filter_map(|e| match &e.payload {
            Some(Payload::DomainPolicyChanged(c)) => Some(c),
            _ => None,
        })
        .collect();
    assert!(changes[0].before.is_none(), "a creation has no before");
    assert_eq!(changes[0].after.as_ref().unwrap().domain, "zeta.example");
    let before = changes[2].before.as_ref().expect("a change has a before");
    assert_eq!((before.policy, &before.etag), (zeta.policy, &zeta.etag));
    let after = changes[2].after.as_ref().expect("after");
    assert_eq!((after.policy, &after.etag), (changed.policy, &changed.etag));
    for change in &changes {
        assert!(
            change.approver_user_ids.contains(&primary.to_string()),
            "{change:?}"
        );
        assert!(
            change.approver_user_ids.contains(&manager.to_string()),
            "{change:?}"
        );
        assert!(!change.approver_user_ids.contains(&outsider.to_string()));
    }
}

// rules L1, T5: every change of rights, requests and policies is recorded with the actor,
// the service it came through, the resource, before/after and the reason; newest first, over
// pages.
#[tokio::test]
async fn audit_records_show_who_what_and_why() {
    let s = Suite::start().await;
    let [primary, user, requester, second] = s.users(4).await.try_into().unwrap();
    let site = s.site(primary).await;

    s.set_tools(
        primary,
        &site.site_id,
        user,
        Level::Software(Sw::DownloadsOnly).alone(),
        "reason one: downloads",
    )
    .await
    .expect("tools");
    s.set_support(
        primary,
        &site.site_id,
        user,
        Su::Basic,
        "reason two: own cases",
    )
    .await
    .expect("support");
    s.revoke(primary, &site.site_id, user, "reason three: left the team")
        .await
        .expect("revoke");
    let rejected = s
        .submit_tools(requester, &site, Level::Reporting(Re::View).alone())
        .await
        .expect("submit");
    s.reject(primary, &rejected.request_id, "reason four: unknown")
        .await
        .expect("reject");
    let approved = s
        .submit_tools(second, &site, Level::Reporting(Re::View).alone())
        .await
        .expect("submit");
    s.approve(primary, &approved.request_id, None, Su::Unspecified)
        .await
        .expect("approve");
    s.set_policy(
        primary,
        &site.site_id,
        "acme.example",
        Mode::Manual,
        keep(),
        Su::Unspecified,
    )
    .await
    .expect("policy");

    let records = s.audit(&site.site_id).await;
    assert!(records.len() >= 8, "every change recorded: {records:#?}");
    for pair in records.windows(2) {
        assert!(
            ts(&pair[0].create_time) >= ts(&pair[1].create_time),
            "newest first: {pair:?}"
        );
    }
    for record in &records {
        assert_eq!(record.site_id, site.site_id);
        assert!(!record.action.is_empty());
        assert!(!record.audit_id.is_empty());
        assert_eq!(record.via_service, s.gateway_id.to_string(), "{record:?}");
        for json in [&record.before_json, &record.after_json] {
            if !json.is_empty() {
                serde_json::from_str::<serde_json::Value>(json)
                    .unwrap_or_else(|e| panic!("JSON ({e}): {record:?}"));
            }
        }
    }
    let by_reason = |reason: &str| {
        records
            .iter()
            .find(|r| r.reason == reason)
            .unwrap_or_else(|| panic!("a record with reason {reason:?}: {records:#?}"))
            .clone()
    };
    // rule T5: who changed what, and why.
    let tools = by_reason("reason one: downloads");
    assert_eq!(tools.actor_id, primary.to_string());
    assert_eq!(tools.resource_id, user.to_string());
    assert!(tools.after_json.contains("DOWNLOADS_ONLY"), "{tools:?}");
    let support = by_reason("reason two: own cases");
    assert_eq!(support.actor_id, primary.to_string());
    assert!(support.after_json.contains("BASIC"), "{support:?}");
    assert_ne!(support.action, tools.action);
    let revoked = by_reason("reason three: left the team");
    assert_eq!(revoked.actor_id, primary.to_string());
    assert!(
        revoked.before_json.contains("DOWNLOADS_ONLY"),
        "{revoked:?}"
    );
    let rejection = by_reason("reason four: unknown");
    assert_eq!(rejection.resource_id, rejected.request_id);
    assert_eq!(rejection.actor_id, primary.to_string());
    // The submissions were made by the requesters.
    for (request, who) in [(&rejected, requester), (&approved, second)] {
        assert!(
            records
                .iter()
                .any(|r| r.resource_id == request.request_id && r.actor_id == who.to_string()),
            "a record of {who}'s submission: {records:#?}"
        );
    }
    // The policy.
    assert!(records.iter().any(|r| r.resource_id == "acme.example"));

    // Over pages: the same records, each once.
    let mut paged = Vec::new();
    let mut token = String::new();
    loop {
        let page = s
            .access()
            .list_audit_records(s.svc(pb::ListAuditRecordsRequest {
                site_id: site.site_id.clone(),
                page_size: 3,
                page_token: token,
            }))
            .await
            .expect("page")
            .into_inner();
        assert!(page.records.len() <= 3);
        paged.extend(page.records);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
        assert!(paged.len() < 100);
    }
    assert_eq!(paged, records);
}

// rules A3, A2: WatchEvents streams a submission with its approvers, the decision for the
// requester, the rights change it caused, cancellations; it resumes after a cursor.
#[tokio::test]
async fn watch_events_carry_what_notifications_need() {
    let s = Suite::start().await;
    let [primary, manager, requester, quitter] = s.users(4).await.try_into().unwrap();
    let site = s.site(primary).await;
    s.set_tools(
        primary,
        &site.site_id,
        manager,
        pb::ToolAccess {
            manage_access: Ma::Update as i32,
            reporting: Re::View as i32,
            ..keep()
        },
        "co-manages access",
    )
    .await
    .expect("grant");
    let request = s
        .submit_tools(requester, &site, Level::Reporting(Re::View).alone())
        .await
        .expect("submit");
    s.approve(manager, &request.request_id, None, Su::Unspecified)
        .await
        .expect("approve");
    let cancelled = s
        .submit_tools(quitter, &site, Level::Reporting(Re::View).alone())
        .await
        .expect("submit");
    s.cancel(quitter, &cancelled.request_id)
        .await
        .expect("cancel");

    // manager's rights, submitted, decided + rights changed, submitted, cancelled.
    let events = s.events("", 6).await;
    assert!(events.iter().all(|e| e.site_id == site.site_id));
    assert!(events.iter().all(|e| e.site_number == site.site_number));
    let ids: HashSet<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids.len(), events.len(), "unique event ids");

    let Some(Payload::RightsChanged(granted)) = &events[0].payload else {
        panic!("rights changed first: {:?}", events[0]);
    };
    assert_eq!(granted.user_id, manager.to_string());
    assert_eq!(granted.reason, "co-manages access");
    assert_eq!(events[0].actor_id, primary.to_string());
    assert_eq!(
        granted
            .after
            .as_ref()
            .unwrap()
            .explicit
            .as_ref()
            .unwrap()
            .manage_access,
        Ma::Update as i32
    );
    assert!(granted.request_id.is_empty());

    let Some(Payload::AccessRequestSubmitted(submitted)) = &events[1].payload else {
        panic!("submitted: {:?}", events[1]);
    };
    assert_eq!(events[1].actor_id, requester.to_string());
    assert_eq!(
        submitted.request.as_ref().unwrap().request_id,
        request.request_id
    );
    let approvers: HashSet<String> = submitted.approver_user_ids.iter().cloned().collect();
    assert_eq!(
        approvers,
        HashSet::from([primary.to_string(), manager.to_string()]),
        "the approvers (A3) are the recipients"
    );

    // The decision and the rights it caused, in either order.
    let rest = &events[2..4];
    let decided = rest
        .iter()
        .find_map(|e| match &e.payload {
            Some(Payload::AccessRequestDecided(d)) => Some((e, d)),
            _ => None,
        })
        .expect("decided");
    assert_eq!(decided.0.actor_id, manager.to_string());
    let decided_request = decided.1.request.as_ref().unwrap();
    assert_eq!(state(decided_request), State::Approved);
    assert_eq!(decided_request.requester_user_id, requester.to_string());
    let rights = rest
        .iter()
        .find_map(|e| match &e.payload {
            Some(Payload::RightsChanged(r)) => Some(r),
            _ => None,
        })
        .expect("rights changed by the approval");
    assert_eq!(rights.user_id, requester.to_string());
    assert_eq!(rights.request_id, request.request_id);

    assert!(matches!(
        events[4].payload,
        Some(Payload::AccessRequestSubmitted(_))
    ));
    let Some(Payload::AccessRequestCancelled(c)) = &events[5].payload else {
        panic!("cancelled: {:?}", events[5]);
    };
    assert_eq!(events[5].actor_id, quitter.to_string());
    assert_eq!(state(c.request.as_ref().unwrap()), State::Cancelled);

    // Resuming after a cursor gives the events after it.
    let resumed = s.events(&events[3].cursor, 2).await;
    assert_eq!(
        resumed.iter().map(|e| &e.event_id).collect::<Vec<_>>(),
        events[4..].iter().map(|e| &e.event_id).collect::<Vec<_>>()
    );
}

// Callers: customer tokens are refused (PERMISSION_DENIED), calls without a token are
// unauthenticated, operators are served but cannot act on behalf of someone.
#[tokio::test]
async fn customers_are_refused_and_only_services_act_on_behalf() {
    let s = Suite::start().await;
    let primary = s.user().await;
    let site = s.site(primary).await;
    let customer = s.register("cora@example.com").await;
    let token = s.customer_token("cora@example.com").await;
    let customer_id = uuid(&customer.user_id);

    let mut client = s.access();
    let denied = [
        client
            .check(authed(
                &token,
                check_request(customer_id, &site.site_id, P::ReportsView),
            ))
            .await
            .map(|_| ()),
        client
            .get_access_profile(authed(
                &token,
                pb::GetAccessProfileRequest {
                    site_id: site.site_id.clone(),
                    user_id: customer.user_id.clone(),
                },
            ))
            .await
            .map(|_| ()),
        client
            .submit_access_request(authed(
                &token,
                site_access(&site, Level::Reporting(Re::View).alone()),
            ))
            .await
            .map(|_| ()),
        client
            .list_my_access_requests(authed(&token, pb::ListMyAccessRequestsRequest::default()))
            .await
            .map(|_| ()),
        client
            .set_tool_access(authed(
                &token,
                pb::SetToolAccessRequest {
                    site_id: site.site_id.clone(),
                    user_id: customer.user_id.clone(),
                    tools: Some(top_tools()),
                    reason: "self-service".into(),
                    etag: String::new(),
                },
            ))
            .await
            .map(|_| ()),
        client
            .watch_events(authed(&token, pb::WatchEventsRequest::default()))
            .await
            .map(|_| ()),
    ];
    for result in denied {
        expect_code(result, Code::PermissionDenied);
    }
    // Even the primary contact with its own customer token.
    let primary_email = format!("p-{}@example.com", Uuid::new_v4().simple());
    let own_primary = uuid(&s.register(&primary_email).await.user_id);
    let own_site = s.site(own_primary).await;
    let own_token = s.customer_token(&primary_email).await;
    expect_code(
        client
            .check(authed(
                &own_token,
                check_request(own_primary, &own_site.site_id, P::AccessUpdate),
            ))
            .await,
        Code::PermissionDenied,
    );
    assert!(s.my_requests(customer_id).await.is_empty());

    // No token: unauthenticated.
    expect_code(
        client
            .check(tonic::Request::new(check_request(
                primary,
                &site.site_id,
                P::ReportsView,
            )))
            .await,
        Code::Unauthenticated,
    );
    // The operator is served ...
    let decision = client
        .check(s.op(check_request(primary, &site.site_id, P::AccessUpdate)))
        .await
        .expect("operator checks")
        .into_inner();
    assert!(decision.allowed);
    // ... but cannot name someone to act for.
    let status = expect_code(
        client
            .set_tool_access(on_behalf_of(
                s.op(pb::SetToolAccessRequest {
                    site_id: site.site_id.clone(),
                    user_id: customer.user_id.clone(),
                    tools: Some(Level::Reporting(Re::View).alone()),
                    reason: "operator for the primary".into(),
                    etag: String::new(),
                }),
                primary,
            ))
            .await,
        Code::PermissionDenied,
    );
    assert!(status.message().contains("on-behalf-of"), "{status:?}");
    assert_eq!(
        s.profile(&site.site_id, customer_id).await.explicit,
        Some(no_tools())
    );
}

// rules T5, U4: SetSupportAccess and RevokeAccess are guarded by the profile's etag like
// SetToolAccess: a change made with a stale etag is ABORTED and changes nothing.
#[tokio::test]
async fn set_support_and_revoke_are_guarded_by_the_profile_etag() {
    let s = Suite::start().await;
    let [primary, user] = s.users(2).await.try_into().unwrap();
    let site = s.site(primary).await;
    let support = |level: Su, etag: &str| {
        s.as_user(
            primary,
            pb::SetSupportAccessRequest {
                site_id: site.site_id.clone(),
                user_id: user.to_string(),
                support_level: level as i32,
                reason: "support staffing".into(),
                etag: etag.into(),
            },
        )
    };
    let revoke = |etag: &str| {
        s.as_user(
            primary,
            pb::RevokeAccessRequest {
                site_id: site.site_id.clone(),
                user_id: user.to_string(),
                reason: "left".into(),
                etag: etag.into(),
            },
        )
    };
    // rule R1: the primary administers support on a site without STC.
    let first = s
        .set_support(primary, &site.site_id, user, Su::Basic, "own cases")
        .await
        .expect("BASIC");
    let second = s
        .access()
        .set_support_access(support(Su::Full, &first.etag))
        .await
        .expect("FULL with the current etag")
        .into_inner()
        .profile
        .expect("profile");
    assert_eq!(second.support_level, Su::Full as i32);
    assert_ne!(second.etag, first.etag);
    expect_code(
        s.access()
            .set_support_access(support(Su::NoAccess, &first.etag))
            .await,
        Code::Aborted,
    );
    expect_code(
        s.access().revoke_access(revoke(&first.etag)).await,
        Code::Aborted,
    );
    assert_eq!(
        s.profile(&site.site_id, user).await.support_level,
        Su::Full as i32,
        "stale etags change nothing"
    );
    let revoked = s
        .access()
        .revoke_access(revoke(&second.etag))
        .await
        .expect("revoke with the current etag")
        .into_inner()
        .profile
        .expect("profile");
    assert_eq!(revoked.explicit_support_level, Su::NoAccess as i32);
    assert_ne!(revoked.etag, second.etag);
    // SetToolAccess shares the version: the etag read before the revocation is stale.
    let stale = s
        .access()
        .set_tool_access(s.as_user(
            primary,
            pb::SetToolAccessRequest {
                site_id: site.site_id.clone(),
                user_id: user.to_string(),
                tools: Some(Level::Reporting(Re::View).alone()),
                reason: "reports".into(),
                etag: second.etag.clone(),
            },
        ))
        .await;
    expect_code(stale, Code::Aborted);
    assert!(!s.check(user, &site.site_id, P::ReportsView).await.allowed);
}

// rule A5: a request may raise a level, but must ask for more than the requester holds.
#[tokio::test]
async fn a_request_must_ask_for_more_than_is_held() {
    let s = Suite::start().await;
    let [primary, stc, user] = s.users(3).await.try_into().unwrap();
    let site = s.supported_site(primary, stc).await;
    s.set_tools(
        primary,
        &site.site_id,
        user,
        Level::Software(Sw::Full).alone(),
        "everything software",
    )
    .await
    .expect("grant");
    // Asking for what one holds (or less) raises nothing.
    expect_refused(
        s.submit_tools(user, &site, Level::Software(Sw::DownloadsOnly).alone())
            .await,
        "A5",
    );
    expect_refused(
        s.submit_tools(primary, &site, Level::Reporting(Re::View).alone())
            .await,
        "A5",
    );
    expect_refused(s.submit_support(stc, &site, Su::Full).await, "A5");
    assert!(
        s.site_requests(&site.site_id, State::Unspecified)
            .await
            .is_empty()
    );
    // Asking for one level more is a request.
    let request = s
        .submit_tools(
            user,
            &site,
            pb::ToolAccess {
                software: Sw::Full as i32,
                reporting: Re::View as i32,
                ..keep()
            },
        )
        .await
        .expect("something new is asked");
    assert_eq!(state(&request), State::Pending);
}

// Operators act with the top authority of every tool and support (they pass T4, U4 and A3 as
// grantors and approvers) but not against the protections of the target: the primary's
// implied rights (T4) and the STC's level (U6); the audit shows the operator, through no
// service (L1).
#[tokio::test]
async fn operators_grant_and_decide_but_respect_the_primary_and_the_stc() {
    let s = Suite::start().await;
    let [primary, stc, user, requester] = s.users(4).await.try_into().unwrap();
    let site = s.supported_site(primary, stc).await;
    let set_tools = |target: Uuid, tools: pb::ToolAccess| {
        s.op(pb::SetToolAccessRequest {
            site_id: site.site_id.clone(),
            user_id: target.to_string(),
            tools: Some(tools),
            reason: "operator support ticket 42".into(),
            etag: String::new(),
        })
    };
    s.access()
        .set_tool_access(set_tools(user, top_tools()))
        .await
        .expect("the operator grants");
    assert!(
        s.check(user, &site.site_id, P::AccountManagement)
            .await
            .allowed
    );
    expect_refused(
        s.access()
            .set_tool_access(set_tools(primary, no_tools()))
            .await,
        "T4",
    );
    expect_refused(
        s.access()
            .set_support_access(s.op(pb::SetSupportAccessRequest {
                site_id: site.site_id.clone(),
                user_id: stc.to_string(),
                support_level: Su::Basic as i32,
                reason: "operator".into(),
                etag: String::new(),
            }))
            .await,
        "U6",
    );
    let request = s
        .submit_tools(requester, &site, Level::Reporting(Re::View).alone())
        .await
        .expect("submit");
    let approved = s
        .access()
        .approve_access_request(s.op(pb::ApproveAccessRequestRequest {
            request_id: request.request_id.clone(),
            ..Default::default()
        }))
        .await
        .expect("the operator approves")
        .into_inner()
        .request
        .expect("request");
    assert_eq!(approved.decided_by, s.operator_id.to_string());
    let records = s.audit(&site.site_id).await;
    let granted = records
        .iter()
        .find(|r| r.reason == "operator support ticket 42")
        .expect("the operator's grant is recorded");
    assert_eq!(granted.actor_id, s.operator_id.to_string());
    assert_eq!(granted.via_service, "");
    assert_eq!(granted.resource_id, user.to_string());
}

// rule I1: an account whose address is not proven holds nothing: it is granted no tool and
// no support level, and asks for nothing; once its owner proves the address it is treated
// like anyone.
#[tokio::test]
async fn an_unproven_account_is_granted_nothing_and_asks_for_nothing() {
    let s = Suite::start().await;
    let primary = s.user().await;
    let site = s.site(primary).await;
    let email = format!("ursula-{}@example.com", Uuid::new_v4().simple());
    let unproven = s.register_unproven(&email).await;

    // rule I1: no grant, whoever grants it.
    let refused = expect_refused(
        s.set_tools(
            primary,
            &site.site_id,
            unproven,
            Level::Reporting(Re::View).alone(),
            "before the proof",
        )
        .await,
        "I1",
    );
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    let refused = expect_refused(
        s.set_support(
            primary,
            &site.site_id,
            unproven,
            Su::Basic,
            "before the proof",
        )
        .await,
        "I1",
    );
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    let by_operator = s
        .access()
        .set_tool_access(s.op(pb::SetToolAccessRequest {
            site_id: site.site_id.clone(),
            user_id: unproven.to_string(),
            tools: Some(top_tools()),
            reason: "the operator tries".into(),
            etag: String::new(),
        }))
        .await;
    expect_refused(by_operator, "I1");
    // rule I1: and no request.
    let refused = expect_refused(
        s.submit_tools(unproven, &site, Level::Software(Sw::Full).alone())
            .await,
        "I1",
    );
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    expect_refused(s.submit_support(unproven, &site, Su::Full).await, "I1");
    assert!(s.my_requests(unproven).await.is_empty());
    assert!(
        s.site_requests(&site.site_id, State::Unspecified)
            .await
            .is_empty()
    );
    let profile = s.profile(&site.site_id, unproven).await;
    assert_eq!(profile.explicit, Some(no_tools()), "{profile:?}");
    assert_eq!(profile.explicit_support_level, Su::NoAccess as i32);
    assert!(
        !s.check(unproven, &site.site_id, P::ReportsView)
            .await
            .allowed
    );
    assert!(
        s.audit(&site.site_id)
            .await
            .iter()
            .all(|record| record.resource_id != unproven.to_string()),
        "nothing about the unproven account is recorded"
    );

    // Proven: the same calls go through.
    let proven = s.prove(&email).await;
    assert_eq!(uuid(&proven.user_id), unproven);
    s.set_tools(
        primary,
        &site.site_id,
        unproven,
        Level::Reporting(Re::View).alone(),
        "proven now",
    )
    .await
    .expect("grant after the proof");
    s.submit_tools(unproven, &site, Level::Software(Sw::DownloadsOnly).alone())
        .await
        .expect("a request after the proof");
    assert!(
        s.check(unproven, &site.site_id, P::ReportsView)
            .await
            .allowed
    );
}

// rule I1: a user who is no longer active (disabled in identity) is granted nothing more and
// its pending request is not approved; its rights can still be lowered and revoked, and once
// enabled again it is treated like anyone.
#[tokio::test]
async fn a_disabled_user_is_granted_nothing_but_can_lose_rights() {
    let s = Suite::start().await;
    let [primary, member] = s.users(2).await.try_into().unwrap();
    let site = s.site(primary).await;
    s.set_tools(
        primary,
        &site.site_id,
        member,
        Level::Reporting(Re::View).alone(),
        "reports",
    )
    .await
    .expect("grant while active");
    let request = s
        .submit_tools(member, &site, Level::Software(Sw::DownloadsOnly).alone())
        .await
        .expect("request while active");

    s.disable(member).await;
    eventually("access management learns the user is disabled", || async {
        let profile = s.profile(&site.site_id, member).await;
        if profile.user_disabled {
            Ok(())
        } else {
            Err(format!("{profile:?}"))
        }
    })
    .await;

    expect_refused(
        s.approve(primary, &request.request_id, None, Su::Unspecified)
            .await,
        "I1",
    );
    assert_eq!(
        state(&s.get_request(&request.request_id).await),
        State::Pending
    );
    expect_refused(
        s.set_tools(
            primary,
            &site.site_id,
            member,
            Level::Entitlements(En::View).alone(),
            "more",
        )
        .await,
        "I1",
    );
    expect_refused(
        s.set_support(primary, &site.site_id, member, Su::Basic, "more")
            .await,
        "I1",
    );
    // Lowering stays possible: rights are taken away from anyone.
    let lowered = s
        .set_tools(
            primary,
            &site.site_id,
            member,
            Level::Reporting(Re::None).alone(),
            "no more reports",
        )
        .await
        .expect("lower a disabled user's rights");
    assert_eq!(lowered.explicit, Some(no_tools()));

    s.enable(member).await;
    let approved = eventually("the enabled user's request is approved", || async {
        s.approve(primary, &request.request_id, None, Su::Unspecified)
            .await
            .map_err(|status| format!("{status:?}"))
    })
    .await;
    assert_eq!(state(&approved.request.expect("request")), State::Approved);
    assert!(
        s.check(member, &site.site_id, P::SoftwareDownload)
            .await
            .allowed
    );
}

// rule I1: a role given to an address whose account is unproven is an invitation: the
// account holds nothing through it (every check denied) until its owner proves the address;
// then the role counts (T3: ADMINISTRATIVE implies account documents VIEW).
#[tokio::test]
async fn a_role_held_by_an_unproven_account_implies_nothing_until_the_proof() {
    let s = Suite::start().await;
    let primary = s.user().await;
    let site = s.site(primary).await;
    let email = format!("invitee-{}@example.com", Uuid::new_v4().simple());
    let invitee = s.register_unproven(&email).await;
    s.assign(&site.site_id, invitee, Role::Administrative).await;

    let denied = eventually(
        "access knows the unproven administrative contact",
        || async {
            let decision = s.check(invitee, &site.site_id, P::DocumentsView).await;
            if decision.reason.contains("I1") {
                Ok(decision)
            } else {
                Err(format!("{decision:?}"))
            }
        },
    )
    .await;
    assert!(!denied.allowed, "{denied:?}");

    s.prove(&email).await;
    let allowed = eventually("the proven contact holds what its role implies", || async {
        let decision = s.check(invitee, &site.site_id, P::DocumentsView).await;
        if decision.allowed {
            Ok(decision)
        } else {
            Err(format!("{decision:?}"))
        }
    })
    .await;
    assert!(allowed.reason.contains("ADMINISTRATIVE"), "{allowed:?}");
}
