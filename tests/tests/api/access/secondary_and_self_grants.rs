//! What SECONDARY implies (T3) through Check, GetAccessProfile, ListSiteAccess,
//! ListUserAccess and ListApprovers (A3), and that nobody grants, raises or approves its own
//! rights (T7), operators included, through the gRPC API with the real registry and identity.

use crate::access::helpers::*;
use kc_proto::access::{self as pb};
use tonic::Code;
use uuid::Uuid;

/// Gives `user` SECONDARY on the site and waits until access management applied it.
async fn make_secondary(s: &Suite, site_id: &str, user: Uuid) -> kc_proto::contacts::Contact {
    let contact = s.assign(site_id, user, Role::Secondary).await;
    s.wait_check(user, site_id, P::AccessUpdate, true).await;
    contact
}

/// The explicit grants of `user` on the site and how many audit records the site has.
async fn explicit_and_audit(s: &Suite, site_id: &str, user: Uuid) -> (pb::AccessProfile, usize) {
    let profile = s.profile(site_id, user).await;
    (profile, s.audit(site_id).await.len())
}

/// Asserts a T7 refusal: FAILED_PRECONDITION like the T4 refusals, citing T7.
#[track_caller]
fn expect_t7<T: std::fmt::Debug>(result: Result<T, tonic::Status>) {
    let status = expect_code(result, Code::FailedPrecondition);
    assert!(
        status.message().starts_with("rule T7: "),
        "expected a T7 refusal: {:?}",
        status.message()
    );
}

// rule T3: SECONDARY implies manage access UPDATE and contact updates UPDATE, never account
// management; Check and GetAccessProfile say so and name the role, the profile lists are
// complete, and the rights go with the role.
#[tokio::test]
async fn a_secondary_holds_what_t3_implies_and_loses_it_with_the_role() {
    let s = Suite::start().await;
    let primary = s.user().await;
    let site = s.site(primary).await;
    let secondary = s.user().await;
    let contact = make_secondary(&s, &site.site_id, secondary).await;

    // rule T3: Check allows exactly what the role implies, and names it.
    for permission in [
        P::AccessView,
        P::AccessUpdate,
        P::ApproveSiteAccess,
        P::ContactsView,
        P::ContactsUpdate,
    ] {
        let decision = s.check(secondary, &site.site_id, permission).await;
        assert!(decision.allowed, "{permission:?}: {decision:?}");
        assert_eq!(
            decision.reason, "implied by SECONDARY (T3)",
            "{permission:?}"
        );
    }
    // rule T3: never account management, nor any other tool or support.
    let am = s
        .check(secondary, &site.site_id, P::AccountManagement)
        .await;
    assert!(!am.allowed, "{am:?}");
    assert_eq!(am.reason, "no grant: account management NONE < GRANTED");
    for permission in [
        P::SoftwareDownload,
        P::ReportsView,
        P::EntitlementsView,
        P::DocumentsView,
        P::SupportOwnCases,
        P::ApproveSupportAccess,
    ] {
        assert!(
            !s.check(secondary, &site.site_id, permission).await.allowed,
            "{permission:?}"
        );
    }

    // rule T3: the profile shows the implied levels and the role that implies them.
    let profile = s.profile(&site.site_id, secondary).await;
    assert_eq!(roles(&profile), [Role::Secondary]);
    assert_eq!(profile.effective, Some(secondary_tools()));
    assert_eq!(profile.explicit, Some(no_tools()));
    assert_eq!(profile.support_level, Su::NoAccess as i32);

    // A secondary holds rights: ListSiteAccess and ListUserAccess list it.
    let listed = s
        .access()
        .list_site_access(s.svc(pb::ListSiteAccessRequest {
            site_id: site.site_id.clone(),
            page_size: 100,
            page_token: String::new(),
        }))
        .await
        .expect("list site access")
        .into_inner();
    assert!(
        listed
            .profiles
            .iter()
            .any(|p| p.user_id == secondary.to_string()),
        "{listed:?}"
    );
    let mine = s
        .access()
        .list_user_access(s.svc(pb::ListUserAccessRequest {
            user_id: secondary.to_string(),
            page_size: 100,
            page_token: String::new(),
        }))
        .await
        .expect("list user access")
        .into_inner();
    assert_eq!(
        mine.profiles
            .iter()
            .map(|p| p.site_id.as_str())
            .collect::<Vec<_>>(),
        [site.site_id.as_str()]
    );

    // rule A3 + T3: a site-access approver (it holds manage access UPDATE), named after the
    // primary; never a support-access approver.
    let approvers = s.approvers(&site.site_id, Kind::SiteAccess).await;
    let ids: Vec<Uuid> = approvers.iter().map(|a| uuid(&a.user_id)).collect();
    assert_eq!(ids, [primary, secondary], "{approvers:?}");
    assert_eq!(approvers[1].reason, "A3: implied by SECONDARY (T3)");
    assert!(
        !s.approver_ids(&site.site_id, Kind::SupportAccess)
            .await
            .contains(&secondary)
    );

    // rule T3: implied rights go with the role.
    s.registry()
        .remove_contact(s.op(kc_proto::contacts::RemoveContactRequest {
            contact_id: contact.contact_id.clone(),
            etag: String::new(),
            site_id: String::new(),
        }))
        .await
        .expect("remove the secondary");
    s.wait_check(secondary, &site.site_id, P::AccessUpdate, false)
        .await;
    assert!(!s.allows(secondary, &site, P::ContactsUpdate).await);
    assert!(
        !s.approver_ids(&site.site_id, Kind::SiteAccess)
            .await
            .contains(&secondary)
    );
}

// rule T3 + T4: a secondary grants up to what its role implies, never account management.
#[tokio::test]
async fn a_secondary_grants_within_its_implied_levels() {
    let s = Suite::start().await;
    let primary = s.user().await;
    let site = s.site(primary).await;
    let secondary = s.user().await;
    make_secondary(&s, &site.site_id, secondary).await;
    let newcomer = s.user().await;

    let granted = s
        .set_tools(
            secondary,
            &site.site_id,
            newcomer,
            Level::ContactUpdates(Cu::Update).on(Level::ManageAccess(Ma::View).alone()),
            "helps with contacts",
        )
        .await
        .expect("rule T3 + T4: within the secondary's implied levels");
    let explicit = granted.explicit.expect("explicit");
    assert_eq!(explicit.contact_updates, Cu::Update as i32);
    assert_eq!(explicit.manage_access, Ma::View as i32);

    // rule T4: account management only from a holder; SECONDARY never implies it (T3).
    let status = expect_refused(
        s.set_tools(
            secondary,
            &site.site_id,
            newcomer,
            Level::AccountManagement(Am::Granted).alone(),
            "escalation attempt",
        )
        .await,
        "T4",
    );
    assert!(
        status.message().contains("account management"),
        "{status:?}"
    );
    // rule T4: nor a tool above its own level.
    expect_refused(
        s.set_tools(
            secondary,
            &site.site_id,
            newcomer,
            Level::Software(Sw::DownloadsOnly).alone(),
            "escalation attempt",
        )
        .await,
        "T4",
    );
    let after = s.profile(&site.site_id, newcomer).await;
    assert_eq!(after.explicit, Some(explicit), "refusals changed nothing");
}

// rule T7: nobody grants or raises its own rights, not even up to what its roles imply (an
// explicit copy would survive the loss of the role); lowering and revoking one's own are
// allowed; operators are no exception.
#[tokio::test]
async fn nobody_grants_or_raises_its_own_rights() {
    let s = Suite::start().await;
    let primary = s.user().await;
    let stc = s.user().await;
    let site = s.supported_site(primary, stc).await;

    // rule T7: a secondary copying its implied rights into explicit grants to itself.
    let secondary = s.user().await;
    make_secondary(&s, &site.site_id, secondary).await;
    let (before, records) = explicit_and_audit(&s, &site.site_id, secondary).await;
    for tools in [
        Level::ManageAccess(Ma::Update).alone(),
        Level::ContactUpdates(Cu::View).alone(),
    ] {
        expect_t7(
            s.set_tools(
                secondary,
                &site.site_id,
                secondary,
                tools,
                "keep it after the role",
            )
            .await,
        );
    }
    let (after, records_after) = explicit_and_audit(&s, &site.site_id, secondary).await;
    assert_eq!(after.explicit, before.explicit, "nothing granted");
    assert_eq!(after.etag, before.etag);
    assert_eq!(records_after, records, "a refusal records nothing");

    // rule T7: a raise of one of its own levels is refused even with the lowering of another
    // in the same change.
    let given = Level::Reporting(Re::View).alone();
    s.grant(primary, &site, secondary, given, "reports").await;
    expect_t7(
        s.set_tools(
            secondary,
            &site.site_id,
            secondary,
            Level::ManageAccess(Ma::View).on(Level::Reporting(Re::None).alone()),
            "swap",
        )
        .await,
    );
    // Lowering one's own is allowed...
    let lowered = s
        .set_tools(
            secondary,
            &site.site_id,
            secondary,
            Level::Reporting(Re::None).alone(),
            "no longer needed",
        )
        .await
        .expect("rule T7: lowering one's own level is allowed");
    assert_eq!(
        lowered.explicit.expect("explicit").reporting,
        Re::None as i32
    );
    // ...and so is revoking one's own grants.
    let given = Level::Reporting(Re::View).alone();
    s.grant(primary, &site, secondary, given, "reports again")
        .await;
    let revoked = s
        .revoke(secondary, &site.site_id, secondary, "leaving")
        .await
        .expect("rule T7: revoking one's own grants is allowed");
    assert_eq!(revoked.explicit.expect("explicit"), no_tools());

    // rule T7: the ADMINISTRATIVE contact with the C3 switch on copies nothing either.
    let admin = s.user().await;
    s.set_admin_switch(&site.site_id, true).await;
    s.assign(&site.site_id, admin, Role::Administrative).await;
    s.wait_check(admin, &site.site_id, P::AccessUpdate, true)
        .await;
    expect_t7(
        s.set_tools(
            admin,
            &site.site_id,
            admin,
            Level::AccountDocuments(Docs::View).alone(),
            "keep the documents",
        )
        .await,
    );
    assert_eq!(
        s.profile(&site.site_id, admin).await.explicit,
        Some(no_tools())
    );

    // A support administrator may lower its own support level (T7 allows it).
    let helper = s.user().await;
    s.set_support(stc, &site.site_id, helper, Su::Administrator, "helper")
        .await
        .expect("the STC grants (U5)");
    s.set_support(helper, &site.site_id, helper, Su::Full, "less is enough")
        .await
        .expect("rule T7: lowering one's own support level is allowed");
    assert_eq!(
        s.profile(&site.site_id, helper)
            .await
            .explicit_support_level,
        Su::Full as i32
    );

    // rule T7: operators included: an operator acts on others.
    let operator_result = s
        .access()
        .set_tool_access(s.op(pb::SetToolAccessRequest {
            site_id: site.site_id.clone(),
            user_id: s.operator_id.to_string(),
            tools: Some(Level::Reporting(Re::View).alone()),
            reason: "for me".into(),
            etag: String::new(),
            ..Default::default()
        }))
        .await;
    expect_t7(operator_result);
    let operator_support = s
        .access()
        .set_support_access(s.op(pb::SetSupportAccessRequest {
            site_id: site.site_id.clone(),
            user_id: s.operator_id.to_string(),
            support_level: Su::Basic as i32,
            reason: "for me".into(),
            etag: String::new(),
            ..Default::default()
        }))
        .await;
    expect_t7(operator_support);
    // The operator still grants to others.
    s.access()
        .set_tool_access(s.op(pb::SetToolAccessRequest {
            site_id: site.site_id.clone(),
            user_id: helper.to_string(),
            tools: Some(Level::Reporting(Re::View).alone()),
            reason: "for the helper".into(),
            etag: String::new(),
            ..Default::default()
        }))
        .await
        .expect("an operator grants to others");
}

// rule T7: nobody approves its own access request, not even an approver (A3) granting
// within its own levels (T4); another approver can.
#[tokio::test]
async fn nobody_approves_its_own_request() {
    let s = Suite::start().await;
    let primary = s.user().await;
    let site = s.site(primary).await;
    let secondary = s.user().await;
    make_secondary(&s, &site.site_id, secondary).await;

    // It asks for reporting, which it lacks (A5), along with what its role implies...
    let request = s
        .submit_tools(
            secondary,
            &site,
            Level::Reporting(Re::View).on(Level::ManageAccess(Ma::Update).alone()),
        )
        .await
        .expect("rule A5: reporting VIEW is above what the secondary holds");
    let before = s.profile(&site.site_id, secondary).await;
    // ...and approves only the part it may grant (A4, T4): an explicit copy of its implied
    // manage access UPDATE, which would survive the loss of the role.
    let offered = Level::Reporting(Re::None).alone();
    expect_t7(s.approve_granting(secondary, &request, offered).await);
    assert_eq!(
        state(&s.get_request(&request.request_id).await),
        State::Pending,
        "the request waits for another approver"
    );
    assert_eq!(
        s.profile(&site.site_id, secondary).await.explicit,
        before.explicit
    );
    // rule A3: the primary decides it.
    let approved = s
        .approve(primary, &request.request_id, None, Su::Unspecified)
        .await
        .expect("the primary approves");
    assert_eq!(state(&approved.request.expect("request")), State::Approved);
}

// rule T7 + A7: a domain policy never approves the request of the user who set it, which
// would copy the setter's implied rights into explicit grants to itself; it still approves
// everyone else's.
#[tokio::test]
async fn a_domain_policy_does_not_approve_its_setters_request() {
    let s = Suite::start().await;
    let primary = s.user().await;
    let site = s.site(primary).await;
    let secondary = s.user().await;
    make_secondary(&s, &site.site_id, secondary).await;
    // Every user of the suite signs in with an address at example.com.
    s.set_policy(
        secondary,
        &site.site_id,
        "example.com",
        Mode::AutoApprove,
        Level::ContactUpdates(Cu::Update).on(Level::ManageAccess(Ma::Update).on(no_tools())),
        Su::NoAccess,
    )
    .await
    .expect("rule A7: a baseline within the secondary's implied levels");

    // It asks for reporting (which it lacks, A5) along with its implied levels.
    let asked = Level::Reporting(Re::View)
        .on(Level::ManageAccess(Ma::Update).on(Level::ContactUpdates(Cu::Update).alone()));
    let own = s
        .submit_tools(secondary, &site, asked)
        .await
        .expect("submitted");
    assert_eq!(state(&own), State::Pending, "rule T7: {own:?}");
    assert!(!own.auto_approved);
    assert_eq!(
        s.profile(&site.site_id, secondary)
            .await
            .explicit
            .expect("explicit"),
        no_tools(),
        "rule T7: nothing granted to the policy's setter"
    );

    // Anyone else of the domain is approved at once with the baseline (A7).
    let newcomer = s.user().await;
    let other = s
        .submit_tools(newcomer, &site, Level::ManageAccess(Ma::Update).alone())
        .await
        .expect("submitted");
    assert_eq!(state(&other), State::Approved, "{other:?}");
    assert!(other.auto_approved);
}
