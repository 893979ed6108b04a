//! Accounts that hold nothing (rule I1): unproven addresses, disabled users, and roles given
//! to unproven accounts.

use kc_access::storage::effective;
use kc_proto::access::{self as pb};
use kc_proto::contacts::{self as cpb};
use tonic::Code;
use uuid::Uuid;

use crate::access::helpers::*;

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
            ..Default::default()
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
    assert!(!s.allows(unproven, &site, P::ReportsView).await);
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
    let given = Level::Reporting(Re::View).alone();
    s.grant(primary, &site, unproven, given, "proven now").await;
    s.submit_tools(unproven, &site, Level::Software(Sw::DownloadsOnly).alone())
        .await
        .expect("a request after the proof");
    assert!(s.allows(unproven, &site, P::ReportsView).await);
}

// rule I1: a user who is no longer active (disabled in identity) is granted nothing more and
// its pending request is not approved; its rights can still be lowered and revoked, and once
// enabled again it is treated like anyone.
#[tokio::test]
async fn a_disabled_user_is_granted_nothing_but_can_lose_rights() {
    let s = Suite::start().await;
    let [primary, member] = s.users(2).await.try_into().unwrap();
    let granted = Level::Reporting(Re::View).alone();
    let site = s.site_granting(primary, member, granted, "reports").await;
    let request = s
        .submit_tools(member, &site, Level::Software(Sw::DownloadsOnly).alone())
        .await
        .expect("request while active");

    s.disable(member).await;
    until_disabled_in_access(&s, &site, member).await;

    expect_refused(s.approve_as_asked(primary, &request).await, "I1");
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
        s.approve_as_asked(primary, &request)
            .await
            .map_err(|status| format!("{status:?}"))
    })
    .await;
    assert_eq!(state(&approved.request.expect("request")), State::Approved);
    assert!(s.allows(member, &site, P::SoftwareDownload).await);
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

// rule I1, failing closed: the registry's event naming a person may reach access management
// before identity's events of that person do. Until they do, access counts the person as
// unproven: a role implies nothing, even once access applied the role (T8).
#[tokio::test]
async fn a_person_identity_has_not_told_access_about_holds_nothing() {
    let s = Suite::start().await;
    let primary = s.user().await;
    let site = s.site(primary).await;
    let stranger = Uuid::now_v7();
    let assigned = s
        .assign_revised(&site.site_id, stranger, Role::Administrative)
        .await;
    s.access()
        .await_contacts_revision(s.svc(pb::AwaitContactsRevisionRequest {
            revision: assigned.revision,
        }))
        .await
        .expect("access applied the assignment");
    let decision = s.check(stranger, &site.site_id, P::DocumentsView).await;
    assert!(!decision.allowed, "{decision:?}");
    assert!(decision.rule.contains("I1"), "{decision:?}");
}

/// Waits until access management's profile of `user` on `site` says it is disabled.
async fn until_disabled_in_access(s: &Suite, site: &cpb::Site, user: Uuid) {
    eventually("access management learns the user is disabled", || async {
        let profile = s.profile(&site.site_id, user).await;
        if profile.user_disabled {
            Ok(())
        } else {
            Err(format!("{profile:?}"))
        }
    })
    .await;
}

// rules I1 and I4: access's follower of identity applies the events its stream has already
// delivered in one transaction, yet a user's lock held elsewhere (a refresh of one of its
// sites holds it shared) holds back that user's disable alone: the transaction waits for
// one user's lock at most and only tries the next, so meeting a busy one it gives way to
// one event a transaction, and the other users' disables apply at once.
#[tokio::test]
async fn a_busy_user_lock_holds_back_that_users_disable_alone() {
    let s = Suite::start().await;
    let [primary, first, second, third] = s.users(4).await.try_into().unwrap();
    let site = s.site(primary).await;
    let pool = s.access_pool().await;
    let mut holds_first = pool.begin().await.expect("a transaction");
    effective::lock_users_shared(&mut holds_first, &[first])
        .await
        .expect("hold the first user's lock");
    let mut holds_third = pool.begin().await.expect("a transaction");
    effective::lock_users_shared(&mut holds_third, &[third])
        .await
        .expect("hold the third user's lock");

    // The follower waits for the first user's lock; meanwhile identity commits the other two
    // disables, which the stream delivers together once the follower is free again.
    s.disable(first).await;
    wait_for_lock_wait(&pool, "the follower waits for the first user's lock", None).await;
    s.disable(second).await;
    s.disable(third).await;
    holds_first
        .rollback()
        .await
        .expect("release the first lock");

    until_disabled_in_access(&s, &site, first).await;
    until_disabled_in_access(&s, &site, second).await;
    assert!(
        !s.profile(&site.site_id, third).await.user_disabled,
        "the third user's disable waits for its lock"
    );
    holds_third
        .rollback()
        .await
        .expect("release the third lock");
    until_disabled_in_access(&s, &site, third).await;
}
