//! ListApprovers (rule A3).

use kc_proto::access::{self as pb};
use tonic::Code;
use uuid::Uuid;

use crate::access::helpers::*;

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
    let given = Level::ManageAccess(Ma::Update).alone();
    s.grant(primary, &site, manager, given, "co-manages access")
        .await;
    let given = Level::ManageAccess(Ma::View).alone();
    s.grant(primary, &site, viewer, given, "looks only").await;
    s.grant_support(stc, &site, support_admin, Su::Administrator, "backup")
        .await;
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
    let paged = read_pages(1, Some(10), |token| {
        s.approvers_page(&site.site_id, Kind::SiteAccess, 1, token)
    })
    .await;
    assert_eq!(paged, site_approvers);
}
