//! The registry decides a transfer of the primary contact in its own transaction (C8): a
//! request that names the acting person commits only while that person is still the
//! primary, or against the etag of the site its caller read; nobody makes itself the
//! primary (T7).

use crate::helpers::*;
use kc_proto::contacts::{self as pb};
use tonic::Code;
use uuid::Uuid;

fn transfer(site_id: &str, to: Uuid, etag: &str) -> pb::TransferPrimaryContactRequest {
    pb::TransferPrimaryContactRequest {
        site_id: site_id.into(),
        new_user_id: to.to_string(),
        etag: etag.into(),
        previous_primary_role: 0,
    }
}

// rule C8: ten concurrent transfers by one primary, named in x-kc-on-behalf-of and without
// an etag: under the site's lock only the first finds it still the primary; the others are
// refused, and the site has exactly one primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_transfers_by_one_primary_commit_once() {
    let h = Harness::start().await;
    let primary = user();
    let site = h.site("1000001", "2000001", primary).await;
    let successors: Vec<Uuid> = (0..10).map(|_| user()).collect();
    let tasks: Vec<_> = successors
        .iter()
        .map(|successor| {
            let mut client = h.client();
            let request = h.for_user(primary, transfer(&site.site_id, *successor, ""));
            tokio::spawn(async move { client.transfer_primary_contact(request).await })
        })
        .collect();
    let mut committed = Vec::new();
    for task in tasks {
        match task.await.expect("the task does not panic") {
            Ok(response) => committed.push(response.into_inner()),
            Err(status) => {
                assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
                assert!(cites(status.message(), "C8"), "{status:?}");
            }
        }
    }
    assert_eq!(committed.len(), 1, "rule C8: exactly one transfer commits");
    let winner = committed[0]
        .primary
        .as_ref()
        .expect("primary")
        .user_id
        .clone();
    let primaries = h.contacts(&site.site_id, &[pb::ContactRole::Primary]).await;
    assert_eq!(
        primaries
            .iter()
            .map(|c| c.user_id.as_str())
            .collect::<Vec<_>>(),
        [winner.as_str()]
    );
    assert_eq!(h.get_site(&site.site_id).await.primary_user_id, winner);
    // One transfer recorded.
    let transfers = h
        .audit(&site.site_id)
        .await
        .into_iter()
        .filter(|record| record.action == "primary.transferred")
        .count();
    assert_eq!(transfers, 1);
}

// rule C8: a person who is not the primary (an account-management holder, as its caller
// checked) transfers only with the etag of the site its caller read; a stale one is ABORTED.
#[tokio::test]
async fn a_person_who_is_not_the_primary_transfers_with_the_etag_it_read() {
    let h = Harness::start().await;
    let (primary, holder, first, second) = (user(), user(), user(), user());
    let site = h.site("1000001", "2000001", primary).await;
    // The holder holds account management by grant (T8: the registry checks it at commit).
    h.grant_all(&site.site_id, holder).await;
    let mut client = h.client();

    expect_rule(
        client
            .transfer_primary_contact(h.for_user(holder, transfer(&site.site_id, first, "")))
            .await,
        Code::FailedPrecondition,
        "C8",
    );
    assert_eq!(
        h.get_site(&site.site_id).await.primary_user_id,
        primary.to_string()
    );
    let moved = client
        .transfer_primary_contact(h.for_user(holder, transfer(&site.site_id, first, &site.etag)))
        .await
        .expect("rule C8: with the etag its caller read")
        .into_inner();
    assert_eq!(
        moved.site.as_ref().expect("site").primary_user_id,
        first.to_string()
    );
    expect_code(
        client
            .transfer_primary_contact(
                h.for_user(holder, transfer(&site.site_id, second, &site.etag)),
            )
            .await,
        Code::Aborted,
    );
    assert_eq!(
        h.get_site(&site.site_id).await.primary_user_id,
        first.to_string()
    );
    // rule T6: a service acting for nobody may not move the primary, and nothing changes.
    expect_rule(
        client
            .transfer_primary_contact(h.svc(transfer(&site.site_id, second, "")))
            .await,
        Code::PermissionDenied,
        "T6",
    );
    assert_eq!(
        h.get_site(&site.site_id).await.primary_user_id,
        first.to_string()
    );
    // An operator acting for itself names nobody: the etag stays optional.
    client
        .transfer_primary_contact(h.op(transfer(&site.site_id, second, "")))
        .await
        .expect("an operator acting for itself");
    assert_eq!(
        h.get_site(&site.site_id).await.primary_user_id,
        second.to_string()
    );
}

// rule T7: nobody makes itself the primary, operators included.
#[tokio::test]
async fn nobody_makes_itself_the_primary() {
    let h = Harness::start().await;
    let (primary, holder) = (user(), user());
    let site = h.site("1000001", "2000001", primary).await;
    let mut client = h.client();
    expect_rule(
        client
            .transfer_primary_contact(
                h.for_user(holder, transfer(&site.site_id, holder, &site.etag)),
            )
            .await,
        Code::FailedPrecondition,
        "T7",
    );
    expect_rule(
        client
            .transfer_primary_contact(h.op(transfer(&site.site_id, h.operator_id, "")))
            .await,
        Code::FailedPrecondition,
        "T7",
    );
    let site_after = h.get_site(&site.site_id).await;
    assert_eq!(site_after.primary_user_id, primary.to_string());
    assert_eq!(site_after.etag, site.etag, "nothing changed");
}
