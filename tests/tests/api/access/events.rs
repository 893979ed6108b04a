//! WatchEvents (rules A2, A3).

use std::collections::HashSet;

use kc_proto::access::event::Payload;

use crate::access::helpers::*;

// rules A3, A2: WatchEvents streams a submission with its approvers, the decision for the
// requester, the rights change it caused, cancellations; it resumes after a cursor.
#[tokio::test]
async fn watch_events_carry_what_notifications_need() {
    let s = Suite::start().await;
    let [primary, manager, requester, quitter] = s.users(4).await.try_into().unwrap();
    let granted = only(&[Level::ManageAccess(Ma::Update), Level::Reporting(Re::View)]);
    let site = s
        .site_granting(primary, manager, granted, "co-manages access")
        .await;
    let request = s
        .submit_tools(requester, &site, Level::Reporting(Re::View).alone())
        .await
        .expect("submit");
    s.approve_as_asked(manager, &request)
        .await
        .expect("approve");
    let cancelled = s
        .submit_tools(quitter, &site, Level::Reporting(Re::View).alone())
        .await
        .expect("submit");
    s.cancel(quitter, &cancelled.request_id)
        .await
        .expect("cancel");

    // manager's rights, submitted, decided + rights changed, submitted, cancelled.
    let events = s.events("", 6).await;
    assert!(events.iter().all(|e| e.site_id == site.site_id));
    assert!(events.iter().all(|e| e.site_number == site.site_number));
    let ids: HashSet<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids.len(), events.len(), "unique event ids");

    let Some(Payload::RightsChanged(granted)) = &events[0].payload else {
        panic!("rights changed first: {:?}", events[0]);
    };
    assert_eq!(granted.user_id, manager.to_string());
    assert_eq!(granted.reason, "co-manages access");
    assert_eq!(events[0].actor_id, primary.to_string());
    assert_eq!(
        granted
            .after
            .as_ref()
            .unwrap()
            .explicit
            .as_ref()
            .unwrap()
            .manage_access,
        Ma::Update as i32
    );
    assert!(granted.request_id.is_empty());

    let Some(Payload::AccessRequestSubmitted(submitted)) = &events[1].payload else {
        panic!("submitted: {:?}", events[1]);
    };
    assert_eq!(events[1].actor_id, requester.to_string());
    assert_eq!(
        submitted.request.as_ref().unwrap().request_id,
        request.request_id
    );
    let approvers: HashSet<String> = submitted.approver_user_ids.iter().cloned().collect();
    assert_eq!(
        approvers,
        HashSet::from([primary.to_string(), manager.to_string()]),
        "the approvers (A3) are the recipients"
    );

    // The decision and the rights it caused, in either order.
    let rest = &events[2..4];
    let decided = rest
        .iter()
        .find_map(|e| match &e.payload {
            Some(Payload::AccessRequestDecided(d)) => Some((e, d)),
            _ => None,
        })
        .expect("decided");
    assert_eq!(decided.0.actor_id, manager.to_string());
    let decided_request = decided.1.request.as_ref().unwrap();
    assert_eq!(state(decided_request), State::Approved);
    assert_eq!(decided_request.requester_user_id, requester.to_string());
    let rights = rest
        .iter()
        .find_map(|e| match &e.payload {
            Some(Payload::RightsChanged(r)) => Some(r),
            _ => None,
        })
        .expect("rights changed by the approval");
    assert_eq!(rights.user_id, requester.to_string());
    assert_eq!(rights.request_id, request.request_id);

    assert!(matches!(
        events[4].payload,
        Some(Payload::AccessRequestSubmitted(_))
    ));
    let Some(Payload::AccessRequestCancelled(c)) = &events[5].payload else {
        panic!("cancelled: {:?}", events[5]);
    };
    assert_eq!(events[5].actor_id, quitter.to_string());
    assert_eq!(state(c.request.as_ref().unwrap()), State::Cancelled);

    // Resuming after a cursor gives the events after it.
    let resumed = s.events(&events[3].cursor, 2).await;
    assert_eq!(
        resumed.iter().map(|e| &e.event_id).collect::<Vec<_>>(),
        events[4..].iter().map(|e| &e.event_id).collect::<Vec<_>>()
    );
}
