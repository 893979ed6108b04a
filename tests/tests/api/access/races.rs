//! Races: two approvers deciding one request at once, a user submitting the same request 20
//! times at once, and role changes on the registry followed by checks (the projection
//! catches up).

use std::collections::{HashMap, HashSet};

use crate::access::helpers::*;
use kc_proto::access::{self as pb, event::Payload};
use tonic::{Code, Status};
use uuid::Uuid;

// rule A6: an approval and a rejection of one request by two approvers at the same moment:
// exactly one decides, the other is ABORTED or FAILED_PRECONDITION; the request, the
// requester's rights and the event stream agree with the winner.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn approve_and_reject_at_once_decide_exactly_once() {
    let s = Suite::start().await;
    let [primary, manager] = s.users(2).await.try_into().unwrap();
    let granted = only(&[Level::ManageAccess(Ma::Update), Level::Reporting(Re::View)]);
    let site = s
        .site_granting(primary, manager, granted, "second approver")
        .await;

    const ROUNDS: usize = 12;
    let mut outcomes = HashMap::new();
    let mut requests = Vec::new();
    for round in 0..ROUNDS {
        let requester = s.user().await;
        let request = s
            .submit_tools(requester, &site, Level::Reporting(Re::View).alone())
            .await
            .expect("submit");
        // Half the rounds send the etag both approvers read, half none (lock only).
        let etag = if round % 2 == 0 {
            request.etag.clone()
        } else {
            String::new()
        };
        type Decision = std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<pb::AccessRequest, Status>> + Send>,
        >;
        let approve: Decision = {
            let mut client = s.access();
            let call = s.as_user(
                manager,
                pb::ApproveAccessRequestRequest {
                    request_id: request.request_id.clone(),
                    granted_tools: None,
                    granted_support_level: 0,
                    etag: etag.clone(),
                    note: "welcome".into(),
                    ..Default::default()
                },
            );
            Box::pin(async move {
                client
                    .approve_access_request(call)
                    .await
                    .map(|r| r.into_inner().request.expect("request"))
            })
        };
        let reject: Decision = {
            let mut client = s.access();
            let call = s.as_user(
                primary,
                pb::RejectAccessRequestRequest {
                    request_id: request.request_id.clone(),
                    reason: "who is this".into(),
                    etag,
                },
            );
            Box::pin(async move {
                client
                    .reject_access_request(call)
                    .await
                    .map(|r| r.into_inner().request.expect("request"))
            })
        };
        let results = all_at_once(vec![approve, reject]).await;
        let winners: Vec<&pb::AccessRequest> =
            results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(
            winners.len(),
            1,
            "round {round}: exactly one decision: {results:?}"
        );
        for result in &results {
            if let Err(status) = result {
                assert!(
                    matches!(status.code(), Code::Aborted | Code::FailedPrecondition),
                    "round {round}: the loser is ABORTED or FAILED_PRECONDITION: {status:?}"
                );
            }
        }
        let winner = winners[0].clone();
        let stored = s.get_request(&request.request_id).await;
        assert_eq!(stored.state, winner.state, "round {round}");
        assert_eq!(stored.decided_by, winner.decided_by, "round {round}");
        let reporting = s
            .profile(&site.site_id, requester)
            .await
            .effective
            .expect("effective")
            .reporting;
        match state(&winner) {
            State::Approved => {
                assert_eq!(winner.decided_by, manager.to_string());
                assert_eq!(reporting, Re::View as i32, "round {round}: granted");
            }
            State::Rejected => {
                assert_eq!(winner.decided_by, primary.to_string());
                assert_eq!(reporting, Re::None as i32, "round {round}: nothing granted");
            }
            other => panic!("round {round}: decided as {other:?}"),
        }
        *outcomes.entry(state(&winner)).or_insert(0) += 1;
        requests.push(request.request_id);
    }

    // One decision event per request, and rights changes only for the approved ones. A
    // marker change committed after every round bounds the stream: all decisions precede it.
    let approved = outcomes.get(&State::Approved).copied().unwrap_or(0);
    let marker = s.user().await;
    let given = Level::Reporting(Re::View).alone();
    s.grant(primary, &site, marker, given, "marker").await;
    let events = s
        .site_events_until(&site.site_id, |events| {
            events.iter().any(|e| {
                matches!(&e.payload, Some(Payload::RightsChanged(r)) if r.user_id == marker.to_string())
            })
        })
        .await;
    let mut decided: HashMap<String, usize> = HashMap::new();
    let mut rights_by_request = 0;
    for event in &events {
        match &event.payload {
            Some(Payload::AccessRequestDecided(d)) => {
                *decided
                    .entry(d.request.as_ref().expect("request").request_id.clone())
                    .or_default() += 1;
            }
            Some(Payload::RightsChanged(r)) if !r.request_id.is_empty() => rights_by_request += 1,
            _ => {}
        }
    }
    for request_id in &requests {
        assert_eq!(
            decided.get(request_id),
            Some(&1),
            "{request_id} decided once"
        );
    }
    assert_eq!(
        rights_by_request, approved,
        "one rights change per approval"
    );
}

// rule A6: 20 concurrent submissions of the same request by one user make one PENDING
// request; every other submission is ALREADY_EXISTS (or returns that same request).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_duplicate_submissions_make_one_pending_request() {
    let s = Suite::start().await;
    let [primary, requester] = s.users(2).await.try_into().unwrap();
    let site = s.site(primary).await;
    let results = all_at_once(
        (0..20)
            .map(|_| {
                let mut client = s.access();
                let call = s.as_user(
                    requester,
                    site_access(&site, Level::Software(Sw::DownloadsOnly).alone()),
                );
                async move {
                    client
                        .submit_access_request(call)
                        .await
                        .map(|r| r.into_inner().request.expect("request"))
                }
            })
            .collect(),
    )
    .await;
    let mut created = HashSet::new();
    for result in &results {
        match result {
            Ok(request) => {
                assert_eq!(state(request), State::Pending);
                created.insert(request.request_id.clone());
            }
            Err(status) => assert_eq!(status.code(), Code::AlreadyExists, "{status:?}"),
        }
    }
    assert_eq!(created.len(), 1, "one request: {results:?}");
    let pending = s.site_requests(&site.site_id, State::Pending).await;
    assert_eq!(pending.len(), 1);
    assert!(created.contains(&pending[0].request_id));
    let mine = s.my_requests(requester).await;
    assert_eq!(mine.len(), 1, "{mine:?}");
    // One submission event (a later marker submission bounds the stream), one audit record.
    let marker = s.user().await;
    s.submit_tools(marker, &site, Level::Reporting(Re::View).alone())
        .await
        .expect("marker");
    let is_by = |event: &pb::Event, user: Uuid| {
        matches!(&event.payload, Some(Payload::AccessRequestSubmitted(x))
            if x.request.as_ref().is_some_and(|r| r.requester_user_id == user.to_string()))
    };
    let events = s
        .site_events_until(&site.site_id, |events| {
            events.iter().any(|e| is_by(e, marker))
        })
        .await;
    let submitted = events.iter().filter(|e| is_by(e, requester)).count();
    assert_eq!(submitted, 1, "{events:?}");
    let records = s.audit(&site.site_id).await;
    assert_eq!(
        records
            .iter()
            .filter(|r| r.resource_id == pending[0].request_id)
            .count(),
        1,
        "{records:?}"
    );
}

// rules T3, C3, C8: role changes on the registry reach Check: an ADMINISTRATIVE contact with
// the C3 switch on gains manage access UPDATE; a primary transfer moves the implied rights;
// and after concurrent transfers, Check agrees with the registry's final primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn role_changes_on_the_registry_reach_check() {
    let s = Suite::start().await;
    let [primary, admin, successor] = s.users(3).await.try_into().unwrap();
    let site = s.site(primary).await;

    // rule T3 with C3: ADMINISTRATIVE and the switch.
    s.assign(&site.site_id, admin, Role::Administrative).await;
    s.wait_check(admin, &site.site_id, P::DocumentsView, true)
        .await;
    assert!(!s.check(admin, &site.site_id, P::AccessUpdate).await.allowed);
    s.set_admin_switch(&site.site_id, true).await;
    let decision = s
        .wait_check(admin, &site.site_id, P::AccessUpdate, true)
        .await;
    assert_eq!(decision.reason, "implied by ADMINISTRATIVE (T3)");

    // rule C8: the transfer moves PRIMARY's implied rights (T3).
    s.transfer_primary(&site.site_id, successor)
        .await
        .expect("transfer");
    let decision = s
        .wait_check(successor, &site.site_id, P::AccountManagement, true)
        .await;
    assert_eq!(decision.reason, "implied by PRIMARY (T3)");
    s.wait_check(primary, &site.site_id, P::AccountManagement, false)
        .await;
    wait_until("the approvers follow the transfer", || async {
        s.approver_ids(&site.site_id, Kind::SiteAccess).await == [successor, admin]
    })
    .await;

    // Concurrent transfers: the registry keeps exactly one primary; access follows it.
    let candidates = s.users(8).await;
    let results = all_at_once(
        candidates
            .iter()
            .map(|candidate| {
                let mut client = s.registry();
                let call = s.op(kc_proto::contacts::TransferPrimaryContactRequest {
                    site_id: site.site_id.clone(),
                    new_user_id: candidate.to_string(),
                    etag: String::new(),
                    previous_primary_role: 0,
                });
                async move { client.transfer_primary_contact(call).await.map(|_| ()) }
            })
            .collect(),
    )
    .await;
    assert!(results.iter().any(Result::is_ok), "{results:?}");
    let final_primary = uuid(
        &s.registry()
            .get_site(s.svc(kc_proto::contacts::GetSiteRequest {
                site_id: site.site_id.clone(),
            }))
            .await
            .expect("get site")
            .into_inner()
            .site
            .expect("site")
            .primary_user_id,
    );
    let everyone: Vec<Uuid> = candidates
        .iter()
        .copied()
        .chain([primary, successor])
        .collect();
    eventually("access agrees with the registry's primary", || async {
        let mut holders = Vec::new();
        for user in &everyone {
            if s.check(*user, &site.site_id, P::AccountManagement)
                .await
                .allowed
            {
                holders.push(*user);
            }
        }
        if holders == [final_primary] {
            Ok(())
        } else {
            Err(format!("{holders:?}"))
        }
    })
    .await;
    let profile = s.profile(&site.site_id, final_primary).await;
    assert_eq!(roles(&profile), [Role::Primary]);
    assert_eq!(
        s.approver_ids(&site.site_id, Kind::SiteAccess).await,
        [final_primary, admin]
    );
}

// Check is served from each replica's memory: a change made through one replica is visible
// there at once and reaches the other replica's cache (bounded staleness); registry events
// reach both.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_change_on_one_replica_reaches_the_others_cache() {
    let s = Suite::start().await;
    let [primary, user, admin] = s.users(3).await.try_into().unwrap();
    let site = s.site(primary).await;
    let (_replica, channel) = s.access_replica().await;
    let other =
        kc_proto::access::access_management_service_client::AccessManagementServiceClient::new(
            channel,
        );
    let check_other = |user: Uuid, permission: P| {
        let mut other = other.clone();
        let request = s.svc(check_request(user, &site.site_id, permission));
        async move {
            other
                .check(request)
                .await
                .expect("check on the replica")
                .into_inner()
        }
    };
    wait_until("the replica knows the site", || async {
        check_other(primary, P::AccessUpdate).await.allowed
    })
    .await;
    // Warm the replica's cache with the user's current (empty) rights.
    assert!(!check_other(user, P::ReportsView).await.allowed);

    // A change on the first replica: at once there, eventually on the other.
    let given = Level::Reporting(Re::View).alone();
    s.grant(primary, &site, user, given, "reports").await;
    assert!(s.check(user, &site.site_id, P::ReportsView).await.allowed);
    wait_until("the grant reaches the replica", || async {
        check_other(user, P::ReportsView).await.allowed
    })
    .await;

    // A change on the other replica: at once there, eventually on the first.
    other
        .clone()
        .revoke_access(s.as_user(
            primary,
            pb::RevokeAccessRequest {
                site_id: site.site_id.clone(),
                user_id: user.to_string(),
                reason: "done".into(),
                etag: String::new(),
            },
        ))
        .await
        .expect("revoke on the replica");
    assert!(!check_other(user, P::ReportsView).await.allowed);
    s.wait_check(user, &site.site_id, P::ReportsView, false)
        .await;

    // A registry change reaches both.
    s.assign(&site.site_id, admin, Role::Administrative).await;
    s.wait_check(admin, &site.site_id, P::DocumentsView, true)
        .await;
    wait_until("the role reaches the replica", || async {
        check_other(admin, P::DocumentsView).await.allowed
    })
    .await;
}

/// Deadlocks Postgres detected in the suite's database so far (its statistics).
async fn deadlocks(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
        .fetch_one(pool)
        .await
        .expect("read the database's statistics")
}

// rule T8: the registry's events reach access in transactions of several sites at once
// (the events its stream has already delivered), while the primary grants on those sites and
// identity disables and enables the same users. No write fails for want of a lock (no
// deadlock, no ABORTED): a grant is refused only while its user is disabled (I4). Postgres
// detects no deadlock either (a consumer's would be retried, unseen). In the end every
// assignment and every grant holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn registry_events_applied_together_race_grants_and_identity_events() {
    const SITES: usize = 6;
    // A backend reports its statistics at most 10 s after its last transaction.
    const STATISTICS_DELAY: std::time::Duration = std::time::Duration::from_secs(11);
    let s = Suite::start().await;
    let pool = s.access_pool().await;
    let primary = s.user().await;
    let users = s.users(4).await;
    let mut sites = Vec::new();
    for _ in 0..SITES {
        sites.push(s.site(primary).await);
    }
    for site in &sites {
        s.wait_check(primary, &site.site_id, P::AccessUpdate, true)
            .await;
    }
    tokio::time::sleep(STATISTICS_DELAY).await;
    let deadlocks_before = deadlocks(&pool).await;
    let given = Level::Reporting(Re::View).alone();
    let pairs: Vec<(&kc_proto::contacts::Site, Uuid)> = sites
        .iter()
        .flat_map(|site| users.iter().map(move |user| (site, *user)))
        .collect();
    let assignments = futures::future::join_all(
        pairs
            .iter()
            .map(|(site, user)| s.assign(&site.site_id, *user, Role::Secondary)),
    );
    let grants = futures::future::join_all(
        pairs
            .iter()
            .map(|(site, user)| s.set_tools(primary, &site.site_id, *user, given, "race")),
    );
    let suite = &s;
    let identity = futures::future::join_all(users.iter().map(|user| async move {
        suite.disable(*user).await;
        suite.enable(*user).await;
    }));
    let (_, granted, _) = tokio::join!(assignments, grants, identity);
    let mut refused = Vec::new();
    for ((site, user), result) in pairs.iter().zip(granted) {
        match result {
            Ok(_) => {}
            Err(status) if status.code() == Code::FailedPrecondition => {
                refused.push((*site, *user));
            }
            Err(status) => panic!("a grant failed during the race: {status:?}"),
        }
    }
    // What was refused while its user was disabled is granted now.
    for (site, user) in refused {
        s.grant(primary, site, user, given, "after the race").await;
    }
    for (site, user) in &pairs {
        eventually("the assignment and the grant hold", || async {
            let profile = s.profile(&site.site_id, *user).await;
            let reports = s.allows(*user, site, P::ReportsView).await;
            if roles(&profile).contains(&Role::Secondary) && reports {
                Ok(())
            } else {
                Err(format!("{profile:?}, reports {reports}"))
            }
        })
        .await;
    }
    tokio::time::sleep(STATISTICS_DELAY).await;
    assert_eq!(
        deadlocks(&pool).await,
        deadlocks_before,
        "Postgres detected no deadlock"
    );
}
