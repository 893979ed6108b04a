//! Access profiles and grants: GetAccessProfile, SetToolAccess, SetSupportAccess,
//! RevokeAccess, ListSiteAccess and ListUserAccess (rules T1–T5, U4–U6).

use kc_proto::access::{self as pb};
use tonic::Code;
use uuid::Uuid;

use crate::access::helpers::*;

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
    assert!(s.allows(primary, &site, P::AccountManagement).await);
    assert!(!s.allows(admin, &site, P::AccountManagement).await);
    assert!(!s.allows(nobody, &site, P::AccountManagement).await);

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
    assert!(s.allows(user, &site, P::SoftwareDownload).await);
    assert!(s.check(user, &site.site_id, P::MediaAccess).await.allowed);
    let denied = s.check(user, &site.site_id, P::QuotesAndCatalogs).await;
    assert!(!denied.allowed);
    assert_eq!(
        denied.reason,
        "explicit grant: software DOWNLOADS_AND_MEDIA < FULL"
    );

    // UNSPECIFIED keeps the current level; the etag guards the change.
    let second = s
        .set_tools_at_etag(
            primary,
            &site.site_id,
            user,
            Level::Reporting(Re::View).alone(),
            "reads the reports",
            &first.etag,
        )
        .await
        .expect("set with the current etag");
    let explicit = second.explicit.expect("explicit");
    assert_eq!(explicit.software, Sw::DownloadsAndMedia as i32, "kept");
    assert_eq!(explicit.reporting, Re::View as i32);
    assert_ne!(second.etag, first.etag);
    let stale = s
        .set_tools_at_etag(
            primary,
            &site.site_id,
            user,
            Level::Software(Sw::None).alone(),
            "stale",
            &first.etag,
        )
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
        .set_tools_at_etag(
            primary,
            "not-a-uuid",
            user,
            Level::Reporting(Re::None).alone(),
            "x",
            "",
        )
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
                ..Default::default()
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
            ..Default::default()
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
    assert!(s.allows(user, &site, P::SupportOwnCases).await);
    assert!(s.allows(user, &site, P::SupportSiteCases).await);
    assert!(!s.check(user, &site.site_id, P::SupportAdmin).await.allowed);
    assert!(!s.allows(user, &site, P::ApproveSupportAccess).await);

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
    assert!(!s.allows(user, &site, P::SupportSiteCases).await);
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
    let given = only(&[Level::Software(Sw::Full), Level::Reporting(Re::View)]);
    s.grant(primary, &site, admin, given, "temporary help")
        .await;
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
    assert!(!s.allows(admin, &site, P::SoftwareDownload).await);
    assert!(s.allows(admin, &site, P::DocumentsView).await);

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
    let given = Level::Software(Sw::DownloadsOnly).alone();
    s.grant(third_primary, &third, traveller, given, "downloads")
        .await;
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
                ..Default::default()
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
        .set_tools_at_etag(
            primary,
            &site.site_id,
            user,
            Level::Reporting(Re::View).alone(),
            "reports",
            &second.etag,
        )
        .await;
    expect_code(stale, Code::Aborted);
    assert!(!s.check(user, &site.site_id, P::ReportsView).await.allowed);
}

// A site's pages (ListSiteAccess, ListAccessRequests, ListDomainPolicies, ListAuditRecords)
// read the page first and ask whether the site exists only when it is empty: an unknown site
// is still NotFound on every one, and a site with nothing to list an empty page.
#[tokio::test]
async fn a_sites_pages_are_not_found_for_an_unknown_site_and_empty_for_a_quiet_one() {
    let s = Suite::start().await;
    let site = s.site(s.user().await).await;
    s.sync_registry().await;
    let unknown = Uuid::now_v7().to_string();
    let access = s.access();

    let profiles = pb::ListSiteAccessRequest {
        site_id: unknown.clone(),
        ..Default::default()
    };
    expect_code(
        access.clone().list_site_access(s.svc(profiles)).await,
        Code::NotFound,
    );
    let requests = pb::ListAccessRequestsRequest {
        site_id: unknown.clone(),
        ..Default::default()
    };
    expect_code(
        access.clone().list_access_requests(s.svc(requests)).await,
        Code::NotFound,
    );
    assert!(
        s.site_requests(&site.site_id, State::Unspecified)
            .await
            .is_empty()
    );
    let policies = |site_id: &str| pb::ListDomainPoliciesRequest {
        site_id: site_id.into(),
        ..Default::default()
    };
    expect_code(
        access
            .clone()
            .list_domain_policies(s.svc(policies(&unknown)))
            .await,
        Code::NotFound,
    );
    let quiet = access
        .clone()
        .list_domain_policies(s.svc(policies(&site.site_id)))
        .await
        .expect("a known site without policies")
        .into_inner();
    assert!(quiet.domain_policies.is_empty() && quiet.next_page_token.is_empty());
    let audit = pb::ListAuditRecordsRequest {
        site_id: unknown,
        ..Default::default()
    };
    expect_code(
        access.clone().list_audit_records(s.svc(audit)).await,
        Code::NotFound,
    );
}
