//! Callers: who may call the registry, and for whom (rules C2, L1, T6).

use crate::helpers::{
    self, Harness, expect_code, expect_rule, mask, on_behalf_of, site_request, user,
};
use kc_proto::contacts::{self as pb};
use tonic::{Code, Request};
use uuid::Uuid;

use pb::ContactRole as R;

/// `message` with `token` as bearer, or with no token at all.
fn with<T>(token: Option<&str>, message: T) -> Request<T> {
    match token {
        Some(token) => helpers::authed(token, message),
        None => Request::new(message),
    }
}

/// Calls every RPC with `token` and returns each one's refusal.
async fn every_rpc(
    h: &Harness,
    token: Option<&str>,
    site_id: &str,
    contact_id: &str,
) -> Vec<(&'static str, tonic::Status)> {
    let mut c = h.client();
    let site = || site_id.to_owned();
    let mut out = Vec::new();
    macro_rules! call {
        ($name:literal, $call:expr) => {
            match $call.await {
                Ok(_) => panic!("{} succeeded with {:?}", $name, token.map(|_| "that token")),
                Err(status) => out.push(($name, status)),
            }
        };
    }
    call!(
        "CreateSite",
        c.create_site(with(token, site_request("1999999", "2999999", user())))
    );
    call!(
        "GetSite",
        c.get_site(with(token, pb::GetSiteRequest { site_id: site() }))
    );
    call!(
        "LookupSite",
        c.lookup_site(with(
            token,
            pb::LookupSiteRequest {
                site_number: "1000001".into(),
                ..Default::default()
            }
        ))
    );
    call!(
        "ListSites",
        c.list_sites(with(token, pb::ListSitesRequest::default()))
    );
    call!(
        "UpdateSite",
        c.update_site(with(
            token,
            pb::UpdateSiteRequest {
                site: Some(pb::Site {
                    site_id: site(),
                    name: "Taken over".into(),
                    ..Default::default()
                }),
                update_mask: mask(&["name"]),
                etag: String::new(),
            }
        ))
    );
    call!(
        "AssignContact",
        c.assign_contact(with(
            token,
            pb::AssignContactRequest {
                site_id: site(),
                user_id: user().to_string(),
                role: R::SiteUser as i32,
                details: None,
            }
        ))
    );
    call!(
        "UpdateContact",
        c.update_contact(with(
            token,
            pb::UpdateContactRequest {
                contact_id: contact_id.into(),
                details: None,
                etag: String::new(),
                site_id: String::new(),
            }
        ))
    );
    call!(
        "RemoveContact",
        c.remove_contact(with(
            token,
            pb::RemoveContactRequest {
                contact_id: contact_id.into(),
                etag: String::new(),
                site_id: String::new(),
            }
        ))
    );
    call!(
        "ReplaceContact",
        c.replace_contact(with(
            token,
            pb::ReplaceContactRequest {
                site_id: site(),
                role: R::Billing as i32,
                new_user_id: user().to_string(),
                details: None,
            }
        ))
    );
    call!(
        "TransferPrimaryContact",
        c.transfer_primary_contact(with(
            token,
            pb::TransferPrimaryContactRequest {
                site_id: site(),
                new_user_id: user().to_string(),
                etag: String::new(),
                previous_primary_role: 0,
            }
        ))
    );
    call!(
        "ListSiteContacts",
        c.list_site_contacts(with(
            token,
            pb::ListSiteContactsRequest {
                site_id: site(),
                ..Default::default()
            }
        ))
    );
    call!(
        "ListUserContacts",
        c.list_user_contacts(with(
            token,
            pb::ListUserContactsRequest {
                user_id: user().to_string(),
                ..Default::default()
            }
        ))
    );
    call!(
        "ResolveRecipients",
        c.resolve_recipients(with(
            token,
            pb::ResolveRecipientsRequest {
                site_id: site(),
                purpose: pb::NoticePurpose::Contractual as i32,
            }
        ))
    );
    call!(
        "GetSiteCompliance",
        c.get_site_compliance(with(
            token,
            pb::GetSiteComplianceRequest { site_id: site() }
        ))
    );
    call!(
        "ListComplianceGaps",
        c.list_compliance_gaps(with(token, pb::ListComplianceGapsRequest::default()))
    );
    call!(
        "ListAuditRecords",
        c.list_audit_records(with(
            token,
            pb::ListAuditRecordsRequest {
                site_id: site(),
                ..Default::default()
            }
        ))
    );
    call!(
        "WatchEvents",
        c.watch_events(with(token, pb::WatchEventsRequest::default()))
    );
    assert_eq!(out.len(), 17, "every RPC of the service was called");
    out
}

// Customer tokens are refused on every RPC: end users come through the gateway.
// rule C2 goes through the gateway: customer tokens (even the primary's own) are refused on
// every RPC with PermissionDenied, and nothing is written.
#[tokio::test]
async fn customer_tokens_are_refused_on_every_rpc() {
    let h = Harness::start().await;
    let created = h.create(site_request("1000001", "2000001", user())).await;
    let site = created.site.expect("site");
    let token = h.customer_token();
    let contact_id = &created.contacts[0].contact_id;
    for (rpc, status) in every_rpc(&h, Some(&token), &site.site_id, contact_id).await {
        assert_eq!(status.code(), Code::PermissionDenied, "{rpc}: {status:?}");
        assert!(status.message().contains("gateway"), "{rpc}: {status:?}");
    }
    // Even the site's own primary contact, with a customer token.
    let primary = uuid::Uuid::parse_str(&site.primary_user_id).expect("uuid");
    let own = h.issuer.mint(
        primary,
        kc_runtime::token::CallerKind::Customer,
        "p@example.com",
    );
    for (rpc, status) in every_rpc(&h, Some(&own), &site.site_id, contact_id).await {
        assert_eq!(status.code(), Code::PermissionDenied, "{rpc}: {status:?}");
    }
    // Nothing was written.
    assert_eq!(h.all_sites().await, std::slice::from_ref(&site));
    assert_eq!(h.audit(&site.site_id).await.len(), 1);
    assert_eq!(h.contacts(&site.site_id, &[]).await, created.contacts);
}

// Calls without a token, or with one this service cannot verify, are unauthenticated.
// rule L1 needs an actor: calls without a valid token are Unauthenticated on every RPC.
#[tokio::test]
async fn calls_without_a_valid_token_are_unauthenticated() {
    let h = Harness::start().await;
    let created = h.create(site_request("1000001", "2000001", user())).await;
    let site = created.site.expect("site");
    let contact_id = created.contacts[0].contact_id.clone();
    for (rpc, status) in every_rpc(&h, None, &site.site_id, &contact_id).await {
        assert_eq!(status.code(), Code::Unauthenticated, "{rpc}: {status:?}");
    }
    // A token from another issuer's key.
    let foreign = kc_testkit::tokens::TestIssuer::new().mint(
        Uuid::new_v4(),
        kc_runtime::token::CallerKind::Service,
        "",
    );
    for (rpc, status) in every_rpc(&h, Some(&foreign), &site.site_id, &contact_id).await {
        assert_eq!(status.code(), Code::Unauthenticated, "{rpc}: {status:?}");
    }
    for (rpc, status) in every_rpc(&h, Some("not.a.token"), &site.site_id, &contact_id).await {
        assert_eq!(status.code(), Code::Unauthenticated, "{rpc}: {status:?}");
    }
    assert_eq!(h.all_sites().await, std::slice::from_ref(&site));
    assert_eq!(h.audit(&site.site_id).await.len(), 1);
}

// Operators and services are served; on-behalf-of is honoured only from services.
// rule L1: the actor is the operator itself, or the person a service acts for (with the
// service recorded); on-behalf-of is honoured only from service tokens.
#[tokio::test]
async fn operators_and_services_are_served_and_only_services_act_on_behalf() {
    let h = Harness::start().await;
    let site = h
        .client()
        .create_site(h.op(site_request("1000001", "2000001", user())))
        .await
        .expect("operator creates")
        .into_inner()
        .site
        .expect("site");
    let records = h.audit(&site.site_id).await;
    assert_eq!(records[0].actor_id, h.operator_id.to_string());
    assert_eq!(records[0].via_service, "");
    // An operator naming someone else is refused, and nothing is written.
    let status = expect_code(
        h.client()
            .assign_contact(on_behalf_of(
                h.op(pb::AssignContactRequest {
                    site_id: site.site_id.clone(),
                    user_id: user().to_string(),
                    role: R::SiteUser as i32,
                    details: None,
                }),
                user(),
            ))
            .await,
        Code::PermissionDenied,
    );
    assert!(status.message().contains("on-behalf-of"), "{status:?}");
    assert_eq!(h.contacts(&site.site_id, &[]).await.len(), 1);
    // A service naming a malformed user id is refused.
    let mut request = h.svc(pb::GetSiteRequest {
        site_id: site.site_id.clone(),
    });
    request.metadata_mut().insert(
        kc_runtime::auth::ON_BEHALF_OF_HEADER,
        "someone".parse().unwrap(),
    );
    expect_code(h.client().get_site(request).await, Code::InvalidArgument);
    // A service acting for a person: the person is the actor, the service is recorded.
    // It holds contact updates UPDATE (T8: the registry checks it).
    let person = user();
    h.grant_contact_updates(&site.site_id, person).await;
    h.client()
        .assign_contact(h.for_user(
            person,
            pb::AssignContactRequest {
                site_id: site.site_id.clone(),
                user_id: user().to_string(),
                role: R::SiteUser as i32,
                details: None,
            },
        ))
        .await
        .expect("service for a person");
    let newest = &h.audit(&site.site_id).await[0];
    assert_eq!(newest.actor_id, person.to_string());
    assert_eq!(newest.via_service, h.service_id.to_string());
}

// rule T6: a role that implies rights (ADMINISTRATIVE, SITE_TECHNICAL, SECONDARY, and PRIMARY)
// changes only for a person the gateway vouches for. A service token acting for nobody may
// not assign, replace or remove such a role, nor transfer the primary, and nothing changes;
// the same service acting for a person, and the operator with its own token, can. Roles that
// imply no rights stay open to the service.
#[tokio::test]
async fn a_service_acting_for_nobody_cannot_change_a_role_that_implies_rights() {
    let h = Harness::start().await;
    let primary = user();
    let site = h.site("1000001", "2000001", primary).await;
    let site_id = site.site_id.clone();
    let stc = h
        .assign(&site_id, user(), R::SiteTechnical)
        .await
        .expect("stc by the operator");
    let secondary = h
        .assign(&site_id, user(), R::Secondary)
        .await
        .expect("secondary by the operator");
    let contacts_before = h.contacts(&site_id, &[]).await;
    let audit_before = h.audit(&site_id).await;
    let outbox_before = h.outbox_count().await;
    let mut client = h.client();
    let assign = |role: R| pb::AssignContactRequest {
        site_id: site_id.clone(),
        user_id: user().to_string(),
        role: role as i32,
        details: None,
    };
    let replace = |role: R| pb::ReplaceContactRequest {
        site_id: site_id.clone(),
        role: role as i32,
        new_user_id: user().to_string(),
        details: None,
    };
    let remove = |contact: &pb::Contact| pb::RemoveContactRequest {
        contact_id: contact.contact_id.clone(),
        etag: String::new(),
        site_id: String::new(),
    };
    let transfer = || pb::TransferPrimaryContactRequest {
        site_id: site_id.clone(),
        new_user_id: user().to_string(),
        etag: String::new(),
        previous_primary_role: 0,
    };

    // The bare service token: refused, citing T6.
    for role in [R::Secondary, R::Administrative, R::SiteTechnical] {
        expect_rule(
            client.assign_contact(h.svc(assign(role))).await,
            Code::PermissionDenied,
            "T6",
        );
    }
    for role in [R::Administrative, R::SiteTechnical] {
        expect_rule(
            client.replace_contact(h.svc(replace(role))).await,
            Code::PermissionDenied,
            "T6",
        );
    }
    for contact in [&stc, &secondary] {
        expect_rule(
            client.remove_contact(h.svc(remove(contact))).await,
            Code::PermissionDenied,
            "T6",
        );
    }
    expect_rule(
        client.transfer_primary_contact(h.svc(transfer())).await,
        Code::PermissionDenied,
        "T6",
    );
    // Nothing changed: no contact, no record, no event.
    assert_eq!(h.contacts(&site_id, &[]).await, contacts_before);
    assert_eq!(h.audit(&site_id).await, audit_before);
    assert_eq!(h.outbox_count().await, outbox_before);
    assert_eq!(
        h.get_site(&site_id).await.primary_user_id,
        primary.to_string()
    );
    // A role that implies no rights stays open to the service acting for nobody.
    client
        .assign_contact(h.svc(assign(R::Billing)))
        .await
        .expect("billing by the service");

    // The same service acting for a person: the person is the actor, the service recorded.
    // The person holds every authority on the site by grant (T8: the registry checks it).
    let person = user();
    h.grant_all(&site_id, person).await;
    let newest = || async { h.audit(&site_id).await.remove(0) };
    for role in [R::Secondary, R::Administrative] {
        client
            .assign_contact(h.for_user(person, assign(role)))
            .await
            .expect("assign for a person");
    }
    client
        .replace_contact(h.for_user(person, replace(R::SiteTechnical)))
        .await
        .expect("replace for a person");
    client
        .remove_contact(h.for_user(person, remove(&secondary)))
        .await
        .expect("remove for a person");
    let record = newest().await;
    assert_eq!(record.action, "contact.removed");
    assert_eq!(record.actor_id, person.to_string());
    assert_eq!(record.via_service, h.service_id.to_string());
    // The primary transfers its own role through the service (C8).
    let moved = client
        .transfer_primary_contact(h.for_user(primary, transfer()))
        .await
        .expect("transfer for the primary")
        .into_inner();
    let second_primary = moved.site.expect("site").primary_user_id;
    assert_ne!(second_primary, primary.to_string());
    let record = newest().await;
    assert_eq!(record.action, "primary.transferred");
    assert_eq!(record.actor_id, primary.to_string());
    assert_eq!(record.via_service, h.service_id.to_string());

    // The operator with its own token.
    client
        .assign_contact(h.op(assign(R::Secondary)))
        .await
        .expect("assign by the operator");
    let replaced = client
        .replace_contact(h.op(replace(R::Administrative)))
        .await
        .expect("replace by the operator")
        .into_inner();
    let old_admin = replaced
        .replaced
        .expect("the administrative assigned for the person");
    assert_ne!(old_admin.user_id, person.to_string());
    let new_admin = replaced.contact.expect("contact");
    client
        .remove_contact(h.op(remove(&new_admin)))
        .await
        .expect("remove by the operator");
    let moved = client
        .transfer_primary_contact(h.op(transfer()))
        .await
        .expect("transfer by the operator")
        .into_inner();
    assert_ne!(moved.site.expect("site").primary_user_id, second_primary);
    let record = newest().await;
    assert_eq!(record.action, "primary.transferred");
    assert_eq!(record.actor_id, h.operator_id.to_string());
    assert_eq!(record.via_service, "");
    // Every change the service was refused took effect for a person or the operator.
    assert_eq!(h.contacts(&site_id, &[R::Secondary]).await.len(), 2);
    assert_eq!(h.contacts(&site_id, &[R::Administrative]).await.len(), 0);
    assert_eq!(h.contacts(&site_id, &[R::SiteTechnical]).await.len(), 1);
    assert_ne!(
        h.contacts(&site_id, &[R::SiteTechnical]).await[0].user_id,
        stc.user_id
    );
}
