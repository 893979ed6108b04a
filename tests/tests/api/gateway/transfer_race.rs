//! C8 under races, through the gateway: the registry decides a transfer of the primary
//! contact in its own transaction, against the state the gateway's check saw (the site's
//! etag, or the acting person still being the primary), so concurrent transfers by one
//! primary commit exactly once and the site always has exactly one primary.

use crate::gateway::helpers::*;
use kc_proto::access::{self as apb};
use kc_proto::gateway::{self as gw};
use tonic::{Code, Status};

/// Every contact of the site holding PRIMARY, as the operator sees them (C7).
async fn primaries(suite: &Suite, site_id: &str) -> Vec<String> {
    let contacts = suite
        .gw()
        .show_all_contacts(authed(
            Some(&suite.operator.token),
            gw::ShowAllContactsRequest {
                site_id: site_id.into(),
                roles: vec![Role::Primary as i32],
                page_size: 100,
                page_token: String::new(),
            },
        ))
        .await
        .expect("show all contacts")
        .into_inner()
        .contacts;
    contacts
        .into_iter()
        .filter(|view| view.roles.contains(&(Role::Primary as i32)))
        .map(|view| view.user_id)
        .collect()
}

/// `actor` asks the gateway to make `to` the primary contact of the site.
async fn transfer(
    gateway: &mut Gateway,
    actor: &Person,
    site_id: &str,
    to: &Person,
    etag: &str,
) -> Result<gw::TransferPrimaryContactResponse, Status> {
    gateway
        .transfer_primary_contact(authed(
            Some(&actor.token),
            gw::TransferPrimaryContactRequest {
                site_id: site_id.into(),
                email: to.email.clone(),
                display_name: None,
                etag: etag.into(),
                previous_primary_role: 0,
                locale: String::new(),
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

// rule C8: ten concurrent transfers by one primary to ten different people, through the
// gateway: exactly one commits, every other one fails (ABORTED against a site that changed
// since the gateway read it, or refused because the caller is no longer the primary), and
// the site has exactly one primary, the one that was named, in the registry and in access
// management alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_concurrent_transfers_by_one_primary_commit_once() {
    let suite = Suite::start().await;
    let primary = suite.person("Paula Primary").await;
    let site = suite.create_site("Race Works", &primary, None).await;
    let mut successors = Vec::new();
    for n in 0..10 {
        successors.push(suite.person(&format!("Successor {n}")).await);
    }
    suite
        .wait_role(&site.site_id, &primary.id, Role::Primary)
        .await;

    let tasks: Vec<_> = successors
        .iter()
        .map(|successor| {
            let mut gateway = suite.gw();
            let (primary, successor, site_id) =
                (primary.clone(), successor.clone(), site.site_id.clone());
            tokio::spawn(async move {
                let result = transfer(&mut gateway, &primary, &site_id, &successor, "").await;
                (successor, result)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        let (successor, result) = task.await.expect("the task does not panic");
        match result {
            Ok(response) => winners.push((successor, response)),
            Err(status) => assert!(
                matches!(
                    status.code(),
                    Code::Aborted | Code::PermissionDenied | Code::FailedPrecondition
                ),
                "a losing transfer fails as aborted or refused: {status:?}"
            ),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "rule C8: exactly one transfer commits: {:?}",
        winners.iter().map(|(p, _)| &p.name).collect::<Vec<_>>()
    );
    let (winner, response) = &winners[0];
    assert_eq!(
        response.site.as_ref().map(|s| s.primary_user_id.as_str()),
        Some(winner.id.as_str())
    );

    // rule C8: exactly one primary, the one named, in the registry...
    assert_eq!(primaries(&suite, &site.site_id).await, [winner.id.as_str()]);
    assert_eq!(
        suite.site_now(&site.site_id).await.primary_user_id,
        winner.id
    );
    // ...and in access management once it applied the registry's event: the old primary
    // holds nothing any more (T3), and nobody else got PRIMARY.
    suite
        .wait_role(&site.site_id, &winner.id, Role::Primary)
        .await;
    suite
        .wait_profile(
            &site.site_id,
            &primary.id,
            "the old primary no longer holds PRIMARY",
            |profile| !profile.implied_by.contains(&(Role::Primary as i32)),
        )
        .await;
    for successor in &successors {
        let profile = suite
            .profile(&site.site_id, &successor.id)
            .await
            .expect("profile");
        let is_primary = profile.implied_by.contains(&(Role::Primary as i32));
        assert_eq!(is_primary, successor.id == winner.id, "{}", successor.name);
    }

    // rule C8: the old primary transfers no more, even now that every projection caught up.
    let mut gateway = suite.gw();
    let status = transfer(&mut gateway, &primary, &site.site_id, &successors[0], "")
        .await
        .expect_err("the old primary no longer transfers");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert_eq!(primaries(&suite, &site.site_id).await, [winner.id.as_str()]);
}

// rule C8: an account-management holder, who is not the primary, transfers against the
// site it read: a stale etag is ABORTED and changes nothing; and nobody makes itself the
// primary (T7).
#[tokio::test]
async fn an_account_management_holder_transfers_against_the_site_it_read() {
    let suite = Suite::start().await;
    let primary = suite.person("Paula Primary").await;
    let holder = suite.person("Hugo Holder").await;
    let first = suite.person("First Successor").await;
    let second = suite.person("Second Successor").await;
    let site = suite
        .create_site_applied("Holder Works", &primary, None)
        .await;
    let granted = tools(|t| t.account_management = apb::AccountManagementAccess::Granted as i32);
    suite.grant(&site.site_id, &holder.id, granted).await;
    let stale = suite.site_now(&site.site_id).await.etag;
    let mut gateway = suite.gw();

    // rule T7: an account-management holder does not name itself the primary.
    let status = transfer(&mut gateway, &holder, &site.site_id, &holder, "")
        .await
        .expect_err("rule T7: nobody makes itself the primary");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(cites(status.message(), "T7"), "{status:?}");
    assert_eq!(
        primaries(&suite, &site.site_id).await,
        [primary.id.as_str()]
    );

    // rule C8: with the etag it read, the holder transfers.
    let moved = transfer(&mut gateway, &holder, &site.site_id, &first, &stale)
        .await
        .expect("rule C8: an account-management holder transfers");
    assert_eq!(
        moved.site.map(|s| s.primary_user_id),
        Some(first.id.clone())
    );
    // rule C8: against a site that changed since (the etag it read before), ABORTED.
    let status = transfer(&mut gateway, &holder, &site.site_id, &second, &stale)
        .await
        .expect_err("a transfer against a changed site fails");
    assert_eq!(status.code(), Code::Aborted, "{status:?}");
    assert_eq!(primaries(&suite, &site.site_id).await, [first.id.as_str()]);
    // Without an etag the gateway reads the site itself: the holder still holds account
    // management, so it transfers again.
    transfer(&mut gateway, &holder, &site.site_id, &second, "")
        .await
        .expect("the gateway sends the etag it read");
    assert_eq!(primaries(&suite, &site.site_id).await, [second.id.as_str()]);
}
