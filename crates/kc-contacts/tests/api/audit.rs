//! ListAuditRecords (rule L1).

use crate::helpers::{Harness, expect_code, expect_field, mask, site_request, user};
use kc_proto::contacts::{self as pb};
use tonic::Code;
use uuid::Uuid;

use pb::ContactRole as R;

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"))
}

// rule L1: every change is recorded with its actor (the person a service acted for, and
// the service), the time, and before/after values; listed per site, newest first.
#[tokio::test]
async fn audit_records_show_actor_action_and_before_after_newest_first() {
    let h = Harness::start().await;
    let (actor, primary, person, stc, next_primary) = (user(), user(), user(), user(), user());
    let mut client = h.client();
    let site = client
        .create_site(h.for_user(actor, site_request("1000001", "2000001", primary)))
        .await
        .expect("create")
        .into_inner()
        .site
        .expect("site");
    let site_id = site.site_id.clone();
    // The actor holds every authority on the site by grant (T8: the registry checks it).
    h.grant_all(&site_id, actor).await;
    let assigned = h
        .assign_contact(h.for_user(
            actor,
            pb::AssignContactRequest {
                site_id: site_id.clone(),
                user_id: person.to_string(),
                role: R::Secondary as i32,
                details: None,
            },
        ))
        .await;
    let updated = h
        .update_contact(h.for_user(
            actor,
            pb::UpdateContactRequest {
                contact_id: assigned.contact_id.clone(),
                details: Some(pb::ContactDetails {
                    job_title: "Buyer".into(),
                    ..Default::default()
                }),
                etag: String::new(),
                site_id: String::new(),
            },
        ))
        .await;
    client
        .replace_contact(h.for_user(
            actor,
            pb::ReplaceContactRequest {
                site_id: site_id.clone(),
                role: R::SiteTechnical as i32,
                new_user_id: stc.to_string(),
                details: None,
            },
        ))
        .await
        .expect("replace");
    h.update_site(h.for_user(
        actor,
        pb::UpdateSiteRequest {
            site: Some(pb::Site {
                site_id: site_id.clone(),
                admin_may_manage_access: true,
                ..Default::default()
            }),
            update_mask: mask(&["admin_may_manage_access"]),
            etag: String::new(),
        },
    ))
    .await;
    // rule C8: the actor is not the primary, so it transfers against the site it read.
    let etag = h.get_site(&site_id).await.etag;
    client
        .transfer_primary_contact(h.for_user(
            actor,
            pb::TransferPrimaryContactRequest {
                site_id: site_id.clone(),
                new_user_id: next_primary.to_string(),
                etag,
                previous_primary_role: 0,
            },
        ))
        .await
        .expect("transfer");
    // The operator acts for itself: no service in between.
    client
        .remove_contact(h.op(pb::RemoveContactRequest {
            contact_id: assigned.contact_id.clone(),
            etag: String::new(),
            site_id: String::new(),
        }))
        .await
        .expect("remove");
    // A refused change leaves no record.
    expect_code(
        client
            .assign_contact(h.for_user(
                actor,
                pb::AssignContactRequest {
                    site_id: site_id.clone(),
                    user_id: person.to_string(),
                    role: R::Primary as i32,
                    details: None,
                },
            ))
            .await,
        Code::FailedPrecondition,
    );

    let records = h.audit(&site_id).await;
    let actions: Vec<&str> = records.iter().map(|r| r.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "contact.removed",
            "primary.transferred",
            "site.updated",
            "contact.replaced",
            "contact.updated",
            "contact.assigned",
            "site.created"
        ]
    );
    // Newest first: ids and times go down.
    for pair in records.windows(2) {
        let (newer, older) = (&pair[0], &pair[1]);
        let (newer_time, older_time) = (
            newer.create_time.expect("time"),
            older.create_time.expect("time"),
        );
        assert!((newer_time.seconds, newer_time.nanos) >= (older_time.seconds, older_time.nanos));
        assert_ne!(newer.audit_id, older.audit_id);
    }
    for record in &records {
        assert_eq!(record.site_id, site_id);
        if record.action == "contact.removed" {
            assert_eq!(record.actor_id, h.operator_id.to_string());
            assert_eq!(record.via_service, "");
        } else {
            assert_eq!(record.actor_id, actor.to_string(), "{}", record.action);
            assert_eq!(record.via_service, h.service_id.to_string());
        }
    }
    let by_action = |action: &str| {
        records
            .iter()
            .find(|r| r.action == action)
            .unwrap_or_else(|| panic!("a {action} record"))
    };
    // Creation: no before, the site and its contacts after.
    let created = by_action("site.created");
    assert_eq!(created.before_json, "");
    assert_eq!(created.resource_id, site_id);
    let after = json(&created.after_json);
    assert_eq!(after["site"]["site_number"], "1000001");
    assert_eq!(after["contacts"][0]["user_id"], primary.to_string());
    assert_eq!(after["contacts"][0]["role"], "PRIMARY");
    // Assignment: the new contact after.
    let record = by_action("contact.assigned");
    assert_eq!(record.resource_id, assigned.contact_id);
    assert_eq!(record.before_json, "");
    assert_eq!(json(&record.after_json)["role"], "SECONDARY");
    // Update: before and after details.
    let record = by_action("contact.updated");
    assert_eq!(record.resource_id, updated.contact_id);
    assert_eq!(
        json(&record.before_json)["details"]["job_title"],
        serde_json::Value::Null
    );
    assert_eq!(json(&record.after_json)["details"]["job_title"], "Buyer");
    // Replacement of nobody: no before.
    let record = by_action("contact.replaced");
    assert_eq!(record.before_json, "");
    assert_eq!(json(&record.after_json)["user_id"], stc.to_string());
    // Site change: the switch before and after (rule C3).
    let record = by_action("site.updated");
    assert_eq!(json(&record.before_json)["admin_may_manage_access"], false);
    assert_eq!(json(&record.after_json)["admin_may_manage_access"], true);
    // Transfer: old and new primary.
    let record = by_action("primary.transferred");
    assert_eq!(
        json(&record.before_json)["primary_user_id"],
        primary.to_string()
    );
    assert_eq!(
        json(&record.after_json)["primary_user_id"],
        next_primary.to_string()
    );
    // Removal: no after.
    let record = by_action("contact.removed");
    assert_eq!(record.resource_id, assigned.contact_id);
    assert_eq!(record.after_json, "");
    assert_eq!(json(&record.before_json)["details"]["job_title"], "Buyer");

    // Pages of two, newest first, no overlap.
    let mut paged = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = client
            .list_audit_records(h.svc(pb::ListAuditRecordsRequest {
                site_id: site_id.clone(),
                page_size: 2,
                page_token: token,
            }))
            .await
            .expect("page")
            .into_inner();
        pages += 1;
        assert!(page.records.len() <= 2);
        paged.extend(page.records);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(pages, 4);
    assert_eq!(paged, records);
    // Records of one site only.
    let other = h.site("1000002", "2000002", user()).await;
    assert_eq!(h.audit(&other.site_id).await.len(), 1);
    assert_eq!(h.audit(&site_id).await, records);

    // rule L1: the application cannot rewrite history; nor can anyone through SQL.
    let pool = h.pool().await;
    let refused = sqlx::query("UPDATE audit_records SET action = 'rewritten'")
        .execute(&pool)
        .await
        .expect_err("audit records are append-only");
    assert!(refused.to_string().contains("L1"), "{refused}");
    sqlx::query("DELETE FROM audit_records")
        .execute(&pool)
        .await
        .expect_err("audit records cannot be deleted");
    pool.close().await;
    assert_eq!(h.audit(&site_id).await, records);

    // Bad arguments.
    let request = |site_id: &str, size: i32, token: &str| {
        h.svc(pb::ListAuditRecordsRequest {
            site_id: site_id.into(),
            page_size: size,
            page_token: token.into(),
        })
    };
    expect_field(
        client.list_audit_records(request("", 0, "")).await,
        "site_id",
    );
    expect_field(
        client.list_audit_records(request(&site_id, -1, "")).await,
        "page_size",
    );
    expect_field(
        client
            .list_audit_records(request(&site_id, 0, "bm90LWEtbnVtYmVy"))
            .await,
        "page_token",
    );
    expect_code(
        client
            .list_audit_records(request(&Uuid::new_v4().to_string(), 0, ""))
            .await,
        Code::NotFound,
    );
}
