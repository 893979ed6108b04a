//! The self-nomination flow across real processes (rules I1, A1, A3, A4, S3, T4): the `kc-identity`,
//! `kc-contacts` and `kc-access` binaries as child processes on one database, wired with
//! service accounts made by `kc-identity create-service-account`; a user nominates itself
//! for a site through a gateway-like service, the primary contact sees the request and is
//! among its approvers, approves less than was asked, and Check reflects the grant.
//!
//! The binaries come from `cargo build --bins` (`cargo xtask test` builds them).

use std::time::Duration;

use futures::StreamExt;
use kc_proto::access::access_management_service_client::AccessManagementServiceClient;
use kc_proto::access::{self as pb, event::Payload};
use kc_proto::contacts::contact_registry_service_client::ContactRegistryServiceClient;
use kc_proto::contacts::{self as cpb};
use kc_runtime::auth::ON_BEHALF_OF_HEADER;
use kc_testkit::identity::{Registration, register_proven, service_token, sign_in};
use kc_testkit::process::{CoreProcesses, bootstrap_operator, grpcurl_json, service_account};
use kc_testkit::ready_channel;
use tonic::Request;

use crate::access::helpers::{OPERATOR_EMAIL, PASSWORD, authed};

const OPERATOR_PASSWORD: &str = "operator passphrase";
const ACCESS: &str = "keycontacts.access.v1.AccessManagementService";
/// Upper bound for the projection to catch up: generous, only reached on failure.
const PATIENCE: Duration = Duration::from_secs(60);

fn for_user<T>(token: &str, user: &str, message: T) -> Request<T> {
    let mut request = authed(token, message);
    request
        .metadata_mut()
        .insert(ON_BEHALF_OF_HEADER, user.parse().unwrap());
    request
}

fn check(user: &str, site_id: &str, permission: pb::Permission) -> pb::CheckRequest {
    pb::CheckRequest {
        user_id: user.into(),
        site_id: site_id.into(),
        permission: permission as i32,
    }
}

// rules I1, A1, S3, A3, A4, T4: self-nomination across processes, by proven users.
#[tokio::test]
async fn self_nomination_across_processes() {
    let db = kc_testkit::test_database().await;
    // Identity, the registry and access management; the operator, and the gateway's
    // service account.
    let (identity, contacts, access) = CoreProcesses::start(&db.url).await.into_parts();
    bootstrap_operator(&db.url, OPERATOR_EMAIL, OPERATOR_PASSWORD).await;
    let (gateway_id, gateway_secret) = service_account(&db.url, "kc-gateway").await;

    let identity_channel = ready_channel(&identity.url()).await;
    let mut registry = ContactRegistryServiceClient::new(ready_channel(&contacts.url()).await);
    let mut access_client = AccessManagementServiceClient::new(ready_channel(&access.url()).await);

    // The operator signs in; the gateway gets its service token.
    let operator_token = sign_in(&identity_channel, OPERATOR_EMAIL, OPERATOR_PASSWORD).await;
    let gateway = service_token(&identity_channel, &gateway_id, &gateway_secret).await;

    // Two people register and prove their addresses (rule I1) with the code identity mailed,
    // read as notification reads it: the site's future primary contact and the requester.
    let register = async |email: &str| {
        let person = Registration {
            email,
            name: email.split('@').next().unwrap_or_default(),
            password: PASSWORD,
            locale: "fr",
        };
        register_proven(&identity_channel, &operator_token, person)
            .await
            .user_id
    };
    let primary = register("paula@acme.example").await;
    let requester = register("remi@acme.example").await;

    // The site, with its primary contact.
    let site = registry
        .create_site(authed(
            &gateway,
            cpb::CreateSiteRequest {
                site_number: "4100017".into(),
                customer_number: "8800042".into(),
                name: "Acme Lyon".into(),
                country_code: "FR".into(),
                language: "fr".into(),
                program: cpb::Program::PassportAdvantage as i32,
                primary_user_id: primary.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("create site")
        .into_inner()
        .site
        .expect("site");

    // Access management follows the registry's stream: wait until it knows the site.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let decision = access_client
            .check(authed(
                &gateway,
                check(&primary, &site.site_id, pb::Permission::ApproveSiteAccess),
            ))
            .await
            .expect("check")
            .into_inner();
        if decision.allowed {
            assert_eq!(decision.reason, "implied by PRIMARY (T3)");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "access management learns the site within {PATIENCE:?}: {decision:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // rule S3: a wrong customer number is not found, and says nothing more.
    let asked = pb::ToolAccess {
        software: pb::SoftwareAccess::Full as i32,
        reporting: pb::ReportingAccess::View as i32,
        ..Default::default()
    };
    let submit = |customer_number: &str| pb::SubmitAccessRequestRequest {
        site_number: site.site_number.clone(),
        customer_number: customer_number.into(),
        kind: pb::AccessRequestKind::SiteAccess as i32,
        requested_tools: Some(asked),
        requested_support_level: 0,
        justification: "Je gère nos téléchargements".into(),
    };
    let wrong = access_client
        .submit_access_request(for_user(&gateway, &requester, submit("8800043")))
        .await
        .expect_err("wrong customer number");
    assert_eq!(wrong.code(), tonic::Code::NotFound, "{wrong:?}");

    // rule A1: the requester nominates itself through the gateway.
    let request = access_client
        .submit_access_request(for_user(&gateway, &requester, submit("8800042")))
        .await
        .expect("submit")
        .into_inner()
        .request
        .expect("request");
    assert_eq!(request.state, pb::AccessRequestState::Pending as i32);
    assert_eq!(request.requester_user_id, requester);
    assert_eq!(request.site_id, site.site_id);

    // rule A3: the primary is among the approvers, and its list shows the request.
    let approvers = access_client
        .list_approvers(authed(
            &gateway,
            pb::ListApproversRequest {
                site_id: site.site_id.clone(),
                kind: pb::AccessRequestKind::SiteAccess as i32,
                ..Default::default()
            },
        ))
        .await
        .expect("list approvers")
        .into_inner()
        .approvers;
    assert!(
        approvers.iter().any(|a| a.user_id == primary),
        "{approvers:?}"
    );
    let listed = access_client
        .list_access_requests(for_user(
            &gateway,
            &primary,
            pb::ListAccessRequestsRequest {
                site_id: site.site_id.clone(),
                state: pb::AccessRequestState::Pending as i32,
                ..Default::default()
            },
        ))
        .await
        .expect("the primary lists the site's requests")
        .into_inner()
        .requests;
    assert_eq!(
        listed.iter().map(|r| &r.request_id).collect::<Vec<_>>(),
        [&request.request_id]
    );

    // rule A4: the primary approves less than was asked: software DOWNLOADS_ONLY, and the
    // reporting VIEW that was asked (UNSPECIFIED grants it).
    let approved = access_client
        .approve_access_request(for_user(
            &gateway,
            &primary,
            pb::ApproveAccessRequestRequest {
                request_id: request.request_id.clone(),
                granted_tools: Some(pb::ToolAccess {
                    software: pb::SoftwareAccess::DownloadsOnly as i32,
                    ..Default::default()
                }),
                granted_support_level: 0,
                etag: listed[0].etag.clone(),
                note: "téléchargements seulement".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("approve")
        .into_inner();
    let decided = approved.request.expect("request");
    assert_eq!(decided.state, pb::AccessRequestState::Approved as i32);
    assert_eq!(decided.decided_by, primary);
    let granted = decided.granted_tools.expect("granted");
    assert_eq!(granted.software, pb::SoftwareAccess::DownloadsOnly as i32);
    assert_eq!(granted.reporting, pb::ReportingAccess::View as i32);

    // Check reflects the grant at once (same replica): what was granted, not what was asked.
    let results = access_client
        .batch_check(authed(
            &gateway,
            pb::BatchCheckRequest {
                checks: vec![
                    check(&requester, &site.site_id, pb::Permission::SoftwareDownload),
                    check(&requester, &site.site_id, pb::Permission::ReportsView),
                    check(&requester, &site.site_id, pb::Permission::MediaAccess),
                    check(&requester, &site.site_id, pb::Permission::QuotesAndCatalogs),
                    check(&requester, &site.site_id, pb::Permission::AccessUpdate),
                ],
            },
        ))
        .await
        .expect("batch check")
        .into_inner()
        .results;
    let allowed: Vec<bool> = results.iter().map(|r| r.allowed).collect();
    assert_eq!(allowed, [true, true, false, false, false], "{results:?}");
    assert!(
        results[0].reason.starts_with("explicit grant"),
        "{results:?}"
    );

    // The operator reads the same through the real grpcurl and reflection.
    let body = serde_json::json!({
        "user_id": requester,
        "site_id": site.site_id,
        "permission": "PERMISSION_SOFTWARE_DOWNLOAD",
    })
    .to_string();
    let bearer = format!("authorization: Bearer {operator_token}");
    let answer = grpcurl_json(&[
        "-plaintext",
        "-H",
        &bearer,
        "-d",
        &body,
        &access.address,
        &format!("{ACCESS}/Check"),
    ])
    .await;
    assert_eq!(answer["allowed"], serde_json::Value::Bool(true), "{answer}");

    // The requester's own list shows the decision; the event stream told the approvers and
    // the requester (A2).
    let mine = access_client
        .list_my_access_requests(for_user(
            &gateway,
            &requester,
            pb::ListMyAccessRequestsRequest::default(),
        ))
        .await
        .expect("list mine")
        .into_inner()
        .requests;
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].state, pb::AccessRequestState::Approved as i32);
    let mut stream = access_client
        .watch_events(authed(&gateway, pb::WatchEventsRequest::default()))
        .await
        .expect("watch")
        .into_inner();
    let (mut submitted_to, mut decided_for) = (None, None);
    tokio::time::timeout(PATIENCE, async {
        while submitted_to.is_none() || decided_for.is_none() {
            let event = stream
                .next()
                .await
                .expect("stream open")
                .expect("event")
                .event
                .expect("body");
            match event.payload {
                Some(Payload::AccessRequestSubmitted(s)) => {
                    submitted_to = Some(s.approver_user_ids)
                }
                Some(Payload::AccessRequestDecided(d)) => {
                    decided_for = d.request.map(|r| r.requester_user_id)
                }
                _ => {}
            }
        }
    })
    .await
    .expect("the events arrive");
    assert!(submitted_to.expect("submitted").contains(&primary));
    assert_eq!(decided_for.as_deref(), Some(requester.as_str()));
}
