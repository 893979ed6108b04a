//! Domain policies: AUTO_APPROVE, AUTO_PENDING and MANUAL, and setting them (rules A7, T4,
//! U4).

use kc_proto::access::{self as pb, event::Payload};
use tonic::Code;
use uuid::Uuid;

use crate::access::helpers::*;

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
    assert!(s.allows(verified, &site, P::SoftwareDownload).await);
    assert!(!s.allows(verified, &site, P::MediaAccess).await);
    assert!(!s.allows(verified, &site, P::ReportsView).await);
    assert!(!s.allows(verified, &site, P::EntitlementsView).await);

    // rule I1: an unverified requester in the domain asks for nothing at all (it used to
    // get an ordinary PENDING request; an unproven account now holds no request).
    expect_refused(s.submit_tools(unverified, &site, asked).await, "I1");
    assert!(s.my_requests(unverified).await.is_empty());
    assert!(!s.allows(unverified, &site, P::SoftwareDownload).await);

    // Another domain: an ordinary PENDING request.
    let request = s
        .submit_tools(elsewhere, &site, asked)
        .await
        .expect("submit");
    assert_eq!(state(&request), State::Pending, "{request:?}");
    assert!(!request.auto_approved);
    assert_eq!(request.matched_domain, "");
    assert!(!s.allows(elsewhere, &site, P::SoftwareDownload).await);

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
    assert!(!s.allows(marked, &site, P::SoftwareDownload).await);
    // An approver still decides.
    s.approve_as_asked(primary, &request)
        .await
        .expect("approve");
    assert!(s.allows(marked, &site, P::LicenseRenewal).await);

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
    let granted = only(&[
        Level::ManageAccess(Ma::Update),
        Level::Software(Sw::DownloadsOnly),
    ]);
    let site = s
        .site_granting(primary, manager, granted, "co-manages access")
        .await;
    let downloads = Level::Software(Sw::DownloadsOnly).alone();

    // rule T4: no manage access UPDATE, or a baseline above one's own level; rule U4: a
    // support baseline needs a support ADMINISTRATOR.
    let refusals = [
        (outsider, downloads, Su::Unspecified, "T4"),
        (
            manager,
            Level::Software(Sw::Full).alone(),
            Su::Unspecified,
            "T4",
        ),
        (manager, downloads, Su::Basic, "U4"),
    ];
    for (setter, baseline, support, rule) in refusals {
        let refused = s
            .set_policy(
                setter,
                &site.site_id,
                "x.example",
                Mode::AutoApprove,
                baseline,
                support,
            )
            .await;
        expect_refused(refused, rule);
    }
    // Invalid: no mode, no domain, not a domain.
    let invalid = [
        ("x.example", Mode::Unspecified, "policy"),
        ("", Mode::Manual, "domain"),
        ("not a domain", Mode::Manual, "domain"),
    ];
    for (domain, mode, field) in invalid {
        let refused = s
            .set_policy(
                manager,
                &site.site_id,
                domain,
                mode,
                downloads,
                Su::Unspecified,
            )
            .await;
        expect_field(refused, field);
    }

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

    let page = |page_size: i32, page_token: String| {
        let mut access = s.access();
        let request = s.svc(pb::ListDomainPoliciesRequest {
            site_id: site.site_id.clone(),
            page_size,
            page_token,
        });
        async move { access.list_domain_policies(request).await }
    };
    let list = page(0, String::new()).await.expect("list").into_inner();
    assert_eq!(
        list.domain_policies,
        [alpha.clone(), zeta.clone()],
        "domain order"
    );
    let first = page(1, String::new()).await.expect("page 1").into_inner();
    assert_eq!(first.domain_policies, std::slice::from_ref(&alpha));
    let second = page(1, first.next_page_token.clone())
        .await
        .expect("page 2")
        .into_inner();
    assert_eq!(second.domain_policies, std::slice::from_ref(&zeta));
    assert!(second.next_page_token.is_empty());

    // Changing a policy: the etag guards it.
    let change_zeta = |mode: Mode| pb::SetDomainPolicyRequest {
        site_id: site.site_id.clone(),
        domain: "zeta.example".into(),
        policy: mode as i32,
        baseline_tools: Some(downloads),
        baseline_support_level: 0,
        etag: zeta.etag.clone(),
    };
    let changed = s
        .set_domain_policy(primary, change_zeta(Mode::Manual))
        .await
        .expect("change with the etag");
    assert_eq!(changed.policy, Mode::Manual as i32);
    assert_ne!(changed.etag, zeta.etag);
    let stale = s
        .set_domain_policy(primary, change_zeta(Mode::AutoApprove))
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
