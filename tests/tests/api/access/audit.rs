//! The audit trail: ListAuditRecords (rules L1, T5).

use crate::access::helpers::*;

// rules L1, T5: every change of rights, requests and policies is recorded with the actor,
// the service it came through, the resource, before/after and the reason; newest first, over
// pages.
#[tokio::test]
async fn audit_records_show_who_what_and_why() {
    let s = Suite::start().await;
    let [primary, user, requester, second] = s.users(4).await.try_into().unwrap();
    let granted = Level::Software(Sw::DownloadsOnly).alone();
    let site = s
        .site_granting(primary, user, granted, "reason one: downloads")
        .await;
    s.grant_support(primary, &site, user, Su::Basic, "reason two: own cases")
        .await;
    s.revoke(primary, &site.site_id, user, "reason three: left the team")
        .await
        .expect("revoke");
    let rejected = s
        .submit_tools(requester, &site, Level::Reporting(Re::View).alone())
        .await
        .expect("submit");
    s.reject(primary, &rejected.request_id, "reason four: unknown")
        .await
        .expect("reject");
    let approved = s
        .submit_tools(second, &site, Level::Reporting(Re::View).alone())
        .await
        .expect("submit");
    s.approve_as_asked(primary, &approved)
        .await
        .expect("approve");
    s.set_policy(
        primary,
        &site.site_id,
        "acme.example",
        Mode::Manual,
        keep(),
        Su::Unspecified,
    )
    .await
    .expect("policy");

    let records = s.audit(&site.site_id).await;
    assert!(records.len() >= 8, "every change recorded: {records:#?}");
    for pair in records.windows(2) {
        assert!(
            ts(&pair[0].create_time) >= ts(&pair[1].create_time),
            "newest first: {pair:?}"
        );
    }
    for record in &records {
        assert_eq!(record.site_id, site.site_id);
        assert!(!record.action.is_empty());
        assert!(!record.audit_id.is_empty());
        assert_eq!(record.via_service, s.gateway_id.to_string(), "{record:?}");
        for json in [&record.before_json, &record.after_json] {
            if !json.is_empty() {
                serde_json::from_str::<serde_json::Value>(json)
                    .unwrap_or_else(|e| panic!("JSON ({e}): {record:?}"));
            }
        }
    }
    let by_reason = |reason: &str| {
        records
            .iter()
            .find(|r| r.reason == reason)
            .unwrap_or_else(|| panic!("a record with reason {reason:?}: {records:#?}"))
            .clone()
    };
    // rule T5: who changed what, and why.
    let tools = by_reason("reason one: downloads");
    assert_eq!(tools.actor_id, primary.to_string());
    assert_eq!(tools.resource_id, user.to_string());
    assert!(tools.after_json.contains("DOWNLOADS_ONLY"), "{tools:?}");
    let support = by_reason("reason two: own cases");
    assert_eq!(support.actor_id, primary.to_string());
    assert!(support.after_json.contains("BASIC"), "{support:?}");
    assert_ne!(support.action, tools.action);
    let revoked = by_reason("reason three: left the team");
    assert_eq!(revoked.actor_id, primary.to_string());
    assert!(
        revoked.before_json.contains("DOWNLOADS_ONLY"),
        "{revoked:?}"
    );
    let rejection = by_reason("reason four: unknown");
    assert_eq!(rejection.resource_id, rejected.request_id);
    assert_eq!(rejection.actor_id, primary.to_string());
    // The submissions were made by the requesters.
    for (request, who) in [(&rejected, requester), (&approved, second)] {
        assert!(
            records
                .iter()
                .any(|r| r.resource_id == request.request_id && r.actor_id == who.to_string()),
            "a record of {who}'s submission: {records:#?}"
        );
    }
    // The policy.
    assert!(records.iter().any(|r| r.resource_id == "acme.example"));

    // Over pages: the same records, each once.
    let paged = read_pages(3, Some(100), |token| s.audit_page(&site.site_id, 3, token)).await;
    assert_eq!(paged, records);
}
