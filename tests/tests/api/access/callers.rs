//! Callers: customers, calls without a token, services acting on behalf of someone, and
//! operators.

use kc_proto::access::{self as pb};
use tonic::Code;
use uuid::Uuid;

use crate::access::helpers::*;

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
                    ..Default::default()
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
                    ..Default::default()
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
            ..Default::default()
        })
    };
    s.access()
        .set_tool_access(set_tools(user, top_tools()))
        .await
        .expect("the operator grants");
    assert!(s.allows(user, &site, P::AccountManagement).await);
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
                ..Default::default()
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
