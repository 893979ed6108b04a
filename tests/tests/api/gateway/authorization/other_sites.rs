//! Object-level checks: ids of another site's objects never read or change that site.

use super::*;
use crate::gateway::helpers::*;
use kc_proto::access::{self as apb};
use kc_proto::contacts::{self as cpb};
use kc_proto::gateway::{self as gw};
use tonic::{Code, Status};

/// What the operator reads of a site: everything a call could have read or changed.
async fn snapshot(suite: &Suite, site_id: &str) -> String {
    let token = Some(suite.operator.token.as_str());
    let mut gw = suite.gw();
    let site = gw
        .get_site(authed(
            token,
            gw::GetSiteRequest {
                site_id: site_id.into(),
            },
        ))
        .await
        .expect("get site")
        .into_inner();
    let contacts = gw
        .show_all_contacts(authed(
            token,
            gw::ShowAllContactsRequest {
                site_id: site_id.into(),
                ..Default::default()
            },
        ))
        .await
        .expect("show all contacts")
        .into_inner();
    let access = gw
        .list_site_access(authed(
            token,
            gw::ListSiteAccessRequest {
                site_id: site_id.into(),
                ..Default::default()
            },
        ))
        .await
        .expect("list site access")
        .into_inner();
    let pending = gw
        .list_pending_requests(authed(
            token,
            gw::ListPendingRequestsRequest {
                site_id: site_id.into(),
                ..Default::default()
            },
        ))
        .await
        .expect("list pending requests")
        .into_inner();
    let audit = gw
        .list_site_audit(authed(
            token,
            gw::ListSiteAuditRequest {
                site_id: site_id.into(),
                page_size: 1000,
                ..Default::default()
            },
        ))
        .await
        .expect("list site audit")
        .into_inner();
    format!("{site:#?}\n{contacts:#?}\n{access:#?}\n{pending:#?}\n{audit:#?}")
}

/// Asserts PERMISSION_DENIED or NOT_FOUND (an object of another site is either not seen or
/// not allowed), never success.
#[track_caller]
fn refused<T: std::fmt::Debug>(what: &str, result: Result<T, Status>, codes: &[Code]) {
    match result {
        Ok(value) => panic!("{what}: expected one of {codes:?}, got Ok({value:?})"),
        Err(status) => assert!(
            codes.contains(&status.code()),
            "{what}: expected one of {codes:?}, got {status:?}"
        ),
    }
}

// Object-level checks: a site id, contact id or request id of another site never reads or
// changes that site, whoever names it (the primary of site A holds every right on A).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_of_another_site_never_reach_it() {
    let suite = Suite::start().await;
    let a = World::build(&suite, "Site A", false).await;
    let b = World::build(&suite, "Site B", true).await;
    let b_id = b.id();
    // A pending request on B, and B's contact ids.
    let b_requester = suite.person("B Requester").await;
    let b_request = nominate(
        &suite,
        &b_requester.token,
        &b.site,
        apb::AccessRequestKind::SiteAccess,
    )
    .await
    .expect("nominate on B")
    .request_id;
    let b_viewer_contact = suite
        .gw()
        .show_all_contacts(authed(
            Some(&suite.operator.token),
            gw::ShowAllContactsRequest {
                site_id: b_id.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("B's contacts")
        .into_inner()
        .contacts
        .into_iter()
        .find(|c| c.user_id == b.viewer.id)
        .expect("B's viewer")
        .contacts[0]
        .contact_id
        .clone();
    let before = snapshot(&suite, &b_id).await;

    let a_id = a.id();
    let primary = Some(a.primary.token.as_str());
    let operator = Some(suite.operator.token.as_str());
    let mut gw = suite.gw();
    const DENIED: &[Code] = &[Code::PermissionDenied];
    const NOT_FOUND: &[Code] = &[Code::NotFound];
    let details = || {
        Some(cpb::ContactDetails {
            phone: "+33100000000".into(),
            job_title: "Intrus".into(),
            notification_email: "intrus@evil.example".into(),
        })
    };

    // Reads of B by A's primary.
    refused(
        "GetSite(B)",
        gw.get_site(authed(
            primary,
            gw::GetSiteRequest {
                site_id: b_id.clone(),
            },
        ))
        .await,
        DENIED,
    );
    refused(
        "GetSiteCompliance(B)",
        gw.get_site_compliance(authed(
            primary,
            gw::GetSiteComplianceRequest {
                site_id: b_id.clone(),
            },
        ))
        .await,
        DENIED,
    );
    refused(
        "ShowAllContacts(B)",
        gw.show_all_contacts(authed(
            primary,
            gw::ShowAllContactsRequest {
                site_id: b_id.clone(),
                ..Default::default()
            },
        ))
        .await,
        DENIED,
    );
    refused(
        "GetAccessProfile(B, B's primary)",
        gw.get_access_profile(authed(
            primary,
            gw::GetAccessProfileRequest {
                site_id: b_id.clone(),
                user_id: b.primary.id.clone(),
            },
        ))
        .await,
        DENIED,
    );
    // The lists of B by A's primary: each request names B's site and nothing else.
    macro_rules! refused_lists_of_b {
        ($($what:literal => $rpc:ident($request:ident)),+ $(,)?) => {$(
            refused(
                $what,
                gw.$rpc(authed(
                    primary,
                    gw::$request {
                        site_id: b_id.clone(),
                        ..Default::default()
                    },
                ))
                .await,
                DENIED,
            );
        )+};
    }
    refused_lists_of_b! {
        "ListSiteAccess(B)" => list_site_access(ListSiteAccessRequest),
        "ListPendingRequests(B)" => list_pending_requests(ListPendingRequestsRequest),
        "ListSiteNotifications(B)" => list_site_notifications(ListSiteNotificationsRequest),
        "ListSiteAudit(B)" => list_site_audit(ListSiteAuditRequest),
    }

    // Changes of B by A's primary, naming B's site.
    refused(
        "UpdateSite(B)",
        gw.update_site(authed(
            primary,
            gw::UpdateSiteRequest {
                site: Some(cpb::Site {
                    site_id: b_id.clone(),
                    name: "Hijacked".into(),
                    admin_may_manage_access: false,
                    ..Default::default()
                }),
                update_mask: Some(mask(&["name", "admin_may_manage_access"])),
                etag: String::new(),
            },
        ))
        .await,
        DENIED,
    );
    refused(
        "AssignContact(B)",
        gw.assign_contact(authed(
            primary,
            gw::AssignContactRequest {
                site_id: b_id.clone(),
                email: a.primary.email.clone(),
                display_name: None,
                role: Role::Secondary as i32,
                details: None,
                locale: String::new(),
            },
        ))
        .await,
        DENIED,
    );
    refused(
        "UpdateContact(B, B's contact)",
        gw.update_contact(authed(
            primary,
            gw::UpdateContactRequest {
                site_id: b_id.clone(),
                contact_id: b.secondary_contact.clone(),
                details: details(),
                etag: String::new(),
            },
        ))
        .await,
        DENIED,
    );
    refused(
        "RemoveContact(B, B's contact)",
        gw.remove_contact(authed(
            primary,
            gw::RemoveContactRequest {
                site_id: b_id.clone(),
                contact_id: b_viewer_contact.clone(),
                etag: String::new(),
            },
        ))
        .await,
        DENIED,
    );
    refused(
        "ReplaceContact(B)",
        gw.replace_contact(authed(
            primary,
            gw::ReplaceContactRequest {
                site_id: b_id.clone(),
                role: Role::Administrative as i32,
                email: a.primary.email.clone(),
                display_name: None,
                details: None,
                locale: String::new(),
            },
        ))
        .await,
        DENIED,
    );
    refused(
        "TransferPrimaryContact(B)",
        gw.transfer_primary_contact(authed(
            primary,
            gw::TransferPrimaryContactRequest {
                site_id: b_id.clone(),
                email: a.primary.email.clone(),
                ..Default::default()
            },
        ))
        .await,
        DENIED,
    );
    refused(
        "SetToolAccess(B)",
        gw.set_tool_access(authed(
            primary,
            gw::SetToolAccessRequest {
                site_id: b_id.clone(),
                user_id: a.primary.id.clone(),
                tools: Some(tools(|t| {
                    t.account_management = apb::AccountManagementAccess::Granted as i32
                })),
                reason: "take over".into(),
                etag: String::new(),
                ..Default::default()
            },
        ))
        .await,
        DENIED,
    );
    refused(
        "SetSupportAccess(B)",
        gw.set_support_access(authed(
            primary,
            gw::SetSupportAccessRequest {
                site_id: b_id.clone(),
                user_id: a.primary.id.clone(),
                support_level: apb::SupportLevel::Administrator as i32,
                reason: "take over".into(),
                etag: String::new(),
                ..Default::default()
            },
        ))
        .await,
        DENIED,
    );
    refused(
        "RevokeAccess(B, B's viewer)",
        gw.revoke_access(authed(
            primary,
            gw::RevokeAccessRequest {
                site_id: b_id.clone(),
                user_id: b.viewer.id.clone(),
                reason: "take over".into(),
                etag: String::new(),
            },
        ))
        .await,
        DENIED,
    );
    refused(
        "SetDomainPolicy(B)",
        gw.set_domain_policy(authed(
            primary,
            gw::SetDomainPolicyRequest {
                site_id: b_id.clone(),
                domain: "evil.example".into(),
                policy: apb::DomainPolicyMode::AutoApprove as i32,
                baseline_tools: Some(tools(|t| t.software = apb::SoftwareAccess::Full as i32)),
                baseline_support_level: apb::SupportLevel::Unspecified as i32,
                etag: String::new(),
            },
        ))
        .await,
        DENIED,
    );

    // A's site id with B's objects: the primary of A, and even an operator (who passes every
    // check), reach nothing of B.
    for (who, token) in [("A's primary", primary), ("the operator", operator)] {
        refused(
            &format!("UpdateContact(A, B's contact) as {who}"),
            gw.update_contact(authed(
                token,
                gw::UpdateContactRequest {
                    site_id: a_id.clone(),
                    contact_id: b.secondary_contact.clone(),
                    details: details(),
                    etag: String::new(),
                },
            ))
            .await,
            NOT_FOUND,
        );
        refused(
            &format!("RemoveContact(A, B's contact) as {who}"),
            gw.remove_contact(authed(
                token,
                gw::RemoveContactRequest {
                    site_id: a_id.clone(),
                    contact_id: b_viewer_contact.clone(),
                    etag: String::new(),
                },
            ))
            .await,
            NOT_FOUND,
        );
    }

    // B's request: A's primary may not decide it (it names B's site through the request),
    // and nobody but its requester may cancel it.
    refused(
        "DecideAccessRequest(B's request) as A's primary",
        gw.decide_access_request(authed(
            primary,
            gw::DecideAccessRequestRequest {
                request_id: b_request.clone(),
                decision: gw::AccessDecision::Approve as i32,
                ..Default::default()
            },
        ))
        .await,
        DENIED,
    );
    refused(
        "DecideAccessRequest(B's request, reject) as A's primary",
        gw.decide_access_request(authed(
            primary,
            gw::DecideAccessRequestRequest {
                request_id: b_request.clone(),
                decision: gw::AccessDecision::Reject as i32,
                reason: "no".into(),
                ..Default::default()
            },
        ))
        .await,
        DENIED,
    );
    refused(
        "CancelMyRequest(B's request) as A's primary",
        gw.cancel_my_request(authed(
            primary,
            gw::CancelMyRequestRequest {
                request_id: b_request.clone(),
                etag: String::new(),
            },
        ))
        .await,
        &[Code::PermissionDenied, Code::NotFound],
    );

    // B is exactly as it was: site, contacts and their details, rights, pending requests
    // and audit trail.
    let after = snapshot(&suite, &b_id).await;
    assert!(
        before == after,
        "site B changed:\nbefore:\n{before}\nafter:\n{after}"
    );
    assert!(after.contains(&b_request), "B's request is still pending");
}
