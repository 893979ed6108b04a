//! Check and BatchCheck (rules T1, T3).

use kc_proto::access::{self as pb};
use tonic::Code;
use uuid::Uuid;

use crate::access::helpers::*;

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

    let given = Level::ManageAccess(Ma::View).alone();
    s.grant(primary, &site, viewer, given, "audits access")
        .await;
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
    assert!(!s.allows(viewer, &site, P::ApproveSiteAccess).await);

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
    let site = s
        .site_granting(primary, user, Level::Reporting(Re::View).alone(), "reports")
        .await;

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
