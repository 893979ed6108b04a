//! Access requests: submitting, reading, listing, approving, rejecting, cancelling and
//! expiring them (rules A1, A3–A6, S3, T4, U4).

use std::collections::HashSet;

use kc_proto::access::{self as pb, event::Payload};
use tonic::Code;
use uuid::Uuid;

use crate::access::helpers::*;

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
    let invalid = [
        // SITE_ACCESS asks for at least one tool above NONE...
        site_access(&site, keep()),
        site_access(&site, no_tools()),
        // ... and no support level; SUPPORT_ACCESS asks for no tools (and a level above
        // NO_ACCESS, below).
        pb::SubmitAccessRequestRequest {
            requested_support_level: Su::Basic as i32,
            ..site_access(&site, tools)
        },
        pb::SubmitAccessRequestRequest {
            kind: Kind::SupportAccess as i32,
            requested_support_level: Su::Basic as i32,
            ..site_access(&site, tools)
        },
        // Site and customer numbers are required.
        pb::SubmitAccessRequestRequest {
            site_number: String::new(),
            ..site_access(&site, tools)
        },
    ];
    for request in invalid {
        expect_code(s.submit(requester, request).await, Code::InvalidArgument);
    }
    expect_code(
        s.submit_support(requester, &site, Su::NoAccess).await,
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
    let granted = Level::Software(Sw::DownloadsOnly).alone();
    let site = s.site_granting(primary, user, granted, "downloads").await;
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
    assert!(s.allows(user, &site, P::LicenseRenewal).await);
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
    let paged: Vec<String> = read_pages(3, Some(20), |token| {
        s.requests_page(&site.site_id, State::Unspecified, 3, token)
    })
    .await
    .into_iter()
    .map(|r| r.request_id)
    .collect();
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
    expect_refused(s.approve_as_asked(outsider, &request).await, "A3");
    expect_refused(s.approve_as_asked(requester, &request).await, "A3");
    // rule T4: the manager cannot grant software FULL (above its own DOWNLOADS_ONLY), even
    // though it was asked; approving "as asked" is the same.
    let offered = Level::Software(Sw::Full).alone();
    expect_refused(s.approve_granting(manager, &request, offered).await, "T4");
    expect_refused(s.approve_as_asked(manager, &request).await, "T4");
    // rule A4: never more than was asked, even by the primary.
    let offered = Level::Entitlements(En::View).alone();
    expect_refused(s.approve_granting(primary, &request, offered).await, "A4");
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
                ..Default::default()
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
                ..Default::default()
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
    assert!(s.allows(requester, &site, P::SoftwareDownload).await);
    assert!(!s.allows(requester, &site, P::MediaAccess).await);
    assert!(s.allows(requester, &site, P::ReportsView).await);

    // rule A6: decided, it never changes again.
    expect_code(
        s.approve_as_asked(primary, &request).await,
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
    assert!(s.allows(requester, &site, P::SupportOwnCases).await);
    assert!(!s.allows(requester, &site, P::SupportSiteCases).await);
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
        s.approve_as_asked(primary, &request).await,
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
        s.approve_as_asked(primary, &request).await,
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
        s.approve_as_asked(primary, &request).await,
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

// rule A5: a request may raise a level, but must ask for more than the requester holds.
#[tokio::test]
async fn a_request_must_ask_for_more_than_is_held() {
    let s = Suite::start().await;
    let [primary, stc, user] = s.users(3).await.try_into().unwrap();
    let site = s.supported_site(primary, stc).await;
    let given = Level::Software(Sw::Full).alone();
    s.grant(primary, &site, user, given, "everything software")
        .await;
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
