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
