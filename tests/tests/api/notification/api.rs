//! The gRPC API of notification: SendNotice validation and idempotency (N3),
//! GetNotification, ListNotifications filters and paging, RenderPreview in fr and en, who may
//! call what, RetryNotification, WatchEvents outcomes, and replayed events creating nothing
//! new (N3).

use std::collections::{BTreeSet, HashMap, HashSet};

use crate::notification::helpers::{
    self, ALL_KINDS, Kind, Outcome, Role, State, Suite, TestUser, all_at_once, authed, brief,
    expect_code, expect_field, message_id_of, outcomes, params_of, read_pages, send_notice_request,
};
use futures::StreamExt;
use kc_proto::notification::{self as pb, event::Payload};
use sqlx::Row;
use tonic::Code;
use uuid::Uuid;

const TECHNICAL: [(&str, &str); 2] = [("topic", "Planned maintenance"), ("summary", "Sunday")];

fn ids(notifications: &[pb::Notification]) -> BTreeSet<String> {
    notifications
        .iter()
        .map(|n| n.notification_id.clone())
        .collect()
}

/// A site in English whose primary is a fresh English-speaking user.
async fn site(s: &Suite) -> (TestUser, kc_proto::contacts::Site) {
    let primary = s.user("en").await;
    let site = s.site(&primary, "en").await;
    (primary, site)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn send_notice_names_the_field_of_each_invalid_value() {
    let s = Suite::start().await;
    let (_, site) = site(&s).await;
    let id = site.site_id.as_str();
    let contract = [("summary", "new terms")];
    let long = "x".repeat(2001);
    let long_key = "k".repeat(201);
    let cases: Vec<(pb::SendNoticeRequest, &str)> = vec![
        (
            send_notice_request("", Kind::ContractChange, &contract, "k1"),
            "site_id",
        ),
        (
            send_notice_request("not-a-uuid", Kind::ContractChange, &contract, "k1"),
            "site_id",
        ),
        (
            send_notice_request(id, Kind::Unspecified, &contract, "k1"),
            "kind",
        ),
        // Event kinds come from the event streams only.
        (
            send_notice_request(id, Kind::EmailVerification, &[], "k1"),
            "kind",
        ),
        (
            send_notice_request(id, Kind::AccessRequestDecided, &[], "k1"),
            "kind",
        ),
        (
            pb::SendNoticeRequest {
                kind: 99,
                ..send_notice_request(id, Kind::ContractChange, &contract, "k1")
            },
            "kind",
        ),
        // A required parameter missing, an unknown one, a value too long.
        (
            send_notice_request(id, Kind::ContractChange, &[], "k1"),
            "params",
        ),
        (
            send_notice_request(id, Kind::UpdateAvailable, &[("product", "Suite")], "k1"),
            "params",
        ),
        (
            send_notice_request(
                id,
                Kind::ContractChange,
                &[("summary", "new terms"), ("colour", "red")],
                "k1",
            ),
            "params",
        ),
        (
            send_notice_request(id, Kind::ContractChange, &[("summary", &long)], "k1"),
            "params",
        ),
        (
            send_notice_request(id, Kind::ContractChange, &contract, ""),
            "idempotency_key",
        ),
        (
            send_notice_request(id, Kind::ContractChange, &contract, &long_key),
            "idempotency_key",
        ),
    ];
    for (request, field) in cases {
        let result = s
            .notifications()
            .send_notice(s.svc(request.clone()))
            .await
            .map(|r| r.into_inner());
        expect_field(result, field);
    }

    // A site the registry does not know.
    let unknown = s
        .send_notice(
            &Uuid::new_v4().to_string(),
            Kind::ContractChange,
            &contract,
            "k2",
        )
        .await;
    expect_code(unknown, Code::NotFound);

    // Nothing was created for the refused requests (the limits themselves are fine).
    let ok_key = "k".repeat(200);
    let max = "x".repeat(2000);
    let sent = s
        .send_notice(id, Kind::ContractChange, &[("summary", &max)], &ok_key)
        .await
        .expect("the longest key and value are accepted");
    let keyed: Vec<_> = s
        .list(id, None, State::Unspecified)
        .await
        .into_iter()
        .filter(|n| !n.idempotency_key.is_empty())
        .collect();
    assert_eq!(
        ids(&keyed),
        ids(&sent.notifications),
        "{:#?}",
        brief(&keyed)
    );
}

// rule N3: the same idempotency key again returns the first call's notifications, marked
// replayed, and sends nothing new; so do concurrent calls with one key.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_idempotency_key_returns_the_first_notices_and_sends_nothing_new() {
    let s = Suite::start().await;
    let (_, site) = site(&s).await;
    let admin = s.user("fr").await;
    s.assign(&site.site_id, &admin, Role::Administrative, "")
        .await;
    let id = site.site_id.as_str();
    let params = [("order_number", "PO-1")];
    let update = [("product", "Suite"), ("version", "2")];
    let send_update = async |call: &str| {
        s.send_notice(id, Kind::UpdateAvailable, &update, "once")
            .await
            .expect(call)
    };

    let first = send_update("first call").await;
    assert!(!first.replayed);
    assert_eq!(first.notifications.len(), 1);
    assert_eq!(
        first.notifications[0].recipient_user_id,
        admin.id.to_string()
    );
    let again = send_update("second call").await;
    assert!(again.replayed, "N3: the second call is a replay");
    assert_eq!(ids(&again.notifications), ids(&first.notifications));
    s.wait_state(&first.notifications[0].notification_id, State::Delivered)
        .await;
    let replayed_after_delivery = send_update("third call").await;
    assert!(replayed_after_delivery.replayed);
    assert_eq!(
        ids(&replayed_after_delivery.notifications),
        ids(&first.notifications)
    );
    assert_eq!(
        replayed_after_delivery.notifications[0].state,
        State::Delivered as i32,
        "the replay shows the notifications as they are now"
    );

    // Eight calls at once with one key: one creates, seven replay, all name the same.
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let mut client = s.notifications();
            let request = s.svc(send_notice_request(
                id,
                Kind::ProofOfEntitlement,
                &params,
                "concurrent",
            ));
            async move { client.send_notice(request).await.map(|r| r.into_inner()) }
        })
        .collect();
    let results = all_at_once(calls).await;
    let responses: Vec<pb::SendNoticeResponse> = results
        .into_iter()
        .map(|r| r.expect("every concurrent call succeeds"))
        .collect();
    assert_eq!(
        responses.iter().filter(|r| !r.replayed).count(),
        1,
        "exactly one call created the notices"
    );
    let created = ids(&responses[0].notifications);
    assert_eq!(created.len(), 1);
    for response in &responses {
        assert_eq!(ids(&response.notifications), created);
    }

    // A last notice is the sync point: once it is delivered, anything the replays could
    // have sent would have been created before it.
    let marker = s
        .send_notice(id, Kind::Technical, &TECHNICAL, "marker")
        .await
        .expect("marker");
    s.wait_state(&marker.notifications[0].notification_id, State::Delivered)
        .await;
    let keyed: Vec<pb::Notification> = s
        .list(id, None, State::Unspecified)
        .await
        .into_iter()
        .filter(|n| !n.idempotency_key.is_empty())
        .collect();
    let mut expected = ids(&first.notifications);
    expected.extend(created.iter().cloned());
    expected.extend(ids(&marker.notifications));
    assert_eq!(ids(&keyed), expected, "{:#?}", brief(&keyed));
    let delivered = s.all_delivered().await;
    let keyed_delivered: Vec<_> = delivered
        .into_iter()
        .filter(|n| expected.contains(&n.notification_id))
        .collect();
    let messages = s.smtp().messages();
    for notification in &keyed_delivered {
        let copies = messages
            .iter()
            .filter(|m| m.message_id == message_id_of(&notification.notification_id))
            .count();
        assert_eq!(copies, 1, "{} received once", notification.notification_id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn get_notification_reads_one_with_its_attempts() {
    let s = Suite::start().await;
    let (primary, site) = site(&s).await;
    let missing = s
        .notifications()
        .get_notification(s.svc(pb::GetNotificationRequest {
            notification_id: Uuid::new_v4().to_string(),
        }))
        .await;
    expect_code(missing, Code::NotFound);
    let malformed = s
        .notifications()
        .get_notification(s.svc(pb::GetNotificationRequest {
            notification_id: "nope".into(),
        }))
        .await;
    expect_field(malformed, "notification_id");

    let sent = s
        .send_notice(&site.site_id, Kind::Technical, &TECHNICAL, "get-1")
        .await
        .expect("send");
    let created = &sent.notifications[0];
    assert!(created.create_time.is_some());
    assert!(created.deliver_time.is_none());
    let notification = s
        .wait_state(&created.notification_id, State::Delivered)
        .await;
    assert_eq!(notification.recipient_user_id, primary.id.to_string());
    assert_eq!(notification.email, primary.email);
    assert_eq!(notification.subject, created.subject);
    assert_eq!(notification.create_time, created.create_time);
    assert!(notification.deliver_time.is_some());
    assert!(notification.next_attempt_time.is_none());
    assert_eq!(outcomes(&notification), [(Outcome::Delivered, 250)]);
    assert!(notification.attempts[0].time.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn list_notifications_filters_by_site_recipient_and_state_and_pages() {
    let s = Suite::start().await;
    let (primary_a, site_a) = site(&s).await;
    let (primary_b, site_b) = site(&s).await;
    let admin_a = s.user("fr").await;
    s.assign(&site_a.site_id, &admin_a, Role::Administrative, "")
        .await;

    let mut sent_a = Vec::new();
    for i in 0..5 {
        let response = s
            .send_notice(
                &site_a.site_id,
                Kind::Technical,
                &TECHNICAL,
                &format!("a-{i}"),
            )
            .await
            .expect("send on a");
        sent_a.extend(response.notifications);
    }
    for i in 0..2 {
        s.send_notice(
            &site_b.site_id,
            Kind::Technical,
            &TECHNICAL,
            &format!("b-{i}"),
        )
        .await
        .expect("send on b");
    }
    // One that goes DEAD: the administrative contact's mailbox refuses it for good (once
    // the notice of its role is delivered, so that one does not meet the refusal).
    s.delivered(&site_a.site_id, &admin_a, Kind::ContactRoleAssigned)
        .await;
    s.smtp()
        .fail_next_to(&admin_a.email, 1, 550, "5.1.1 mailbox unavailable");
    let dead = s
        .send_notice(
            &site_a.site_id,
            Kind::UpdateAvailable,
            &[("product", "Suite"), ("version", "3")],
            "a-dead",
        )
        .await
        .expect("send the doomed one");
    let dead_id = dead.notifications[0].notification_id.clone();
    s.wait_state(&dead_id, State::Dead).await;
    for notification in &sent_a {
        s.wait_state(&notification.notification_id, State::Delivered)
            .await;
    }

    let on_a = s.list(&site_a.site_id, None, State::Unspecified).await;
    assert!(
        on_a.iter().all(|n| n.site_id == site_a.site_id),
        "{:#?}",
        brief(&on_a)
    );
    assert!(ids(&sent_a).is_subset(&ids(&on_a)));
    assert!(ids(&on_a).contains(&dead_id));
    let of_b = s.list("", Some(primary_b.id), State::Unspecified).await;
    assert!(!of_b.is_empty());
    assert!(
        of_b.iter()
            .all(|n| n.recipient_user_id == primary_b.id.to_string())
    );
    assert_eq!(
        of_b.iter()
            .filter(|n| n.kind == Kind::Technical as i32)
            .count(),
        2
    );
    let dead_list = s.list("", None, State::Dead).await;
    assert_eq!(ids(&dead_list), BTreeSet::from([dead_id.clone()]));
    let a_delivered_of_primary = s
        .list(&site_a.site_id, Some(primary_a.id), State::Delivered)
        .await;
    assert!(ids(&sent_a).is_subset(&ids(&a_delivered_of_primary)));
    assert!(
        a_delivered_of_primary
            .iter()
            .all(|n| n.state == State::Delivered as i32
                && n.site_id == site_a.site_id
                && n.recipient_user_id == primary_a.id.to_string())
    );

    // Pages of two, newest first, together exactly the whole list.
    let paged = read_pages(2, None, |token| {
        s.list_page(&site_a.site_id, None, State::Unspecified, 2, token)
    })
    .await;
    let paged_ids: Vec<&str> = paged.iter().map(|n| n.notification_id.as_str()).collect();
    let whole_ids: Vec<&str> = on_a.iter().map(|n| n.notification_id.as_str()).collect();
    assert_eq!(
        paged_ids, whole_ids,
        "the pages make the whole list, in its order"
    );
    let times: Vec<_> = paged
        .iter()
        .map(|n| {
            let t = n.create_time.expect("create time");
            (t.seconds, t.nanos)
        })
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {times:?}"
    );

    // Each case: a default request with one field wrong.
    let with = |edit: fn(&mut pb::ListNotificationsRequest)| {
        let mut request = pb::ListNotificationsRequest::default();
        edit(&mut request);
        request
    };
    for (request, field) in [
        (with(|r| r.page_size = -1), "page_size"),
        (with(|r| r.page_size = 1001), "page_size"),
        (with(|r| r.page_token = "garbage".into()), "page_token"),
        (with(|r| r.site_id = "x".into()), "site_id"),
        (
            with(|r| r.recipient_user_id = "x".into()),
            "recipient_user_id",
        ),
        (with(|r| r.state = 42), "state"),
    ] {
        let result = s.notifications().list_notifications(s.svc(request)).await;
        expect_field(result, field);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn render_preview_writes_every_kind_in_french_and_english() {
    let s = Suite::start().await;
    for kind in ALL_KINDS {
        let params: Vec<(String, String)> = params_of(kind)
            .into_iter()
            .enumerate()
            .map(|(i, name)| (name.to_owned(), format!("value{i}of{}", kind.as_str_name())))
            .collect();
        let params: Vec<(&str, &str)> = params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let fr = s.preview(kind, "fr", &params).await;
        let en = s.preview(kind, "en", &params).await;
        assert_eq!((fr.locale.as_str(), en.locale.as_str()), ("fr", "en"));
        for preview in [&fr, &en] {
            assert!(!preview.subject.trim().is_empty(), "{kind:?}: {preview:?}");
            assert!(
                !preview.text_body.trim().is_empty(),
                "{kind:?}: {preview:?}"
            );
            assert!(
                !preview.html_body.trim().is_empty(),
                "{kind:?}: {preview:?}"
            );
        }
        assert_ne!(fr.text_body, en.text_body, "{kind:?}: fr and en differ");
        assert_ne!(fr.html_body, en.html_body, "{kind:?}: fr and en differ");
        // Required parameters show in both parts.
        let first = params[0].1;
        for preview in [&fr, &en] {
            assert!(
                preview.text_body.contains(first),
                "{kind:?} shows {first}: {preview:?}"
            );
            assert!(
                preview.html_body.contains(first),
                "{kind:?} shows {first}: {preview:?}"
            );
        }
        // N1: another language, or none, is English.
        for locale in ["de", ""] {
            let other = s.preview(kind, locale, &params).await;
            assert_eq!(other.locale, "en");
            assert_eq!(other.subject, en.subject);
            assert_eq!(other.text_body, en.text_body);
        }
    }
    let unspecified = s
        .notifications()
        .render_preview(s.svc(pb::RenderPreviewRequest {
            kind: Kind::Unspecified as i32,
            locale: "fr".into(),
            params: Default::default(),
        }))
        .await;
    expect_field(unspecified, "kind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn customers_are_refused_and_only_operators_retry() {
    let s = Suite::start().await;
    let (primary, site) = site(&s).await;
    let customer = s.customer_token(&primary).await;
    let sent = s
        .send_notice(&site.site_id, Kind::Technical, &TECHNICAL, "perm-1")
        .await
        .expect("send");
    let notification_id = sent.notifications[0].notification_id.clone();
    s.wait_state(&notification_id, State::Delivered).await;

    let mut client = s.notifications();
    let denied = Code::PermissionDenied;
    expect_code(
        client
            .send_notice(authed(
                &customer,
                send_notice_request(&site.site_id, Kind::Technical, &TECHNICAL, "c"),
            ))
            .await,
        denied,
    );
    expect_code(
        client
            .get_notification(authed(
                &customer,
                pb::GetNotificationRequest {
                    notification_id: notification_id.clone(),
                },
            ))
            .await,
        denied,
    );
    expect_code(
        client
            .list_notifications(authed(&customer, pb::ListNotificationsRequest::default()))
            .await,
        denied,
    );
    expect_code(
        client
            .retry_notification(authed(
                &customer,
                pb::RetryNotificationRequest {
                    notification_id: notification_id.clone(),
                },
            ))
            .await,
        denied,
    );
    expect_code(
        client
            .render_preview(authed(
                &customer,
                pb::RenderPreviewRequest {
                    kind: Kind::Technical as i32,
                    locale: "fr".into(),
                    params: Default::default(),
                },
            ))
            .await,
        denied,
    );
    let watch = client
        .watch_events(authed(&customer, pb::WatchEventsRequest::default()))
        .await;
    match watch {
        Err(status) => assert_eq!(status.code(), denied, "{status:?}"),
        Ok(stream) => {
            let first = stream.into_inner().next().await;
            match first {
                Some(Err(status)) => assert_eq!(status.code(), denied, "{status:?}"),
                other => panic!("a customer cannot watch the events: {other:?}"),
            }
        }
    }
    // Without a token at all.
    let anonymous = client
        .list_notifications(tonic::Request::new(pb::ListNotificationsRequest::default()))
        .await;
    expect_code(anonymous, Code::Unauthenticated);

    // RetryNotification: operators only; a notification that is not DEAD cannot be retried.
    expect_code(
        client
            .retry_notification(s.svc(pb::RetryNotificationRequest {
                notification_id: notification_id.clone(),
            }))
            .await,
        denied,
    );
    let not_dead = expect_code(
        client
            .retry_notification(s.op(pb::RetryNotificationRequest {
                notification_id: notification_id.clone(),
            }))
            .await,
        Code::FailedPrecondition,
    );
    assert!(
        not_dead.message().to_lowercase().contains("delivered"),
        "the refusal names the state: {not_dead:?}"
    );
    expect_code(
        client
            .retry_notification(s.op(pb::RetryNotificationRequest {
                notification_id: Uuid::new_v4().to_string(),
            }))
            .await,
        Code::NotFound,
    );
    expect_field(
        client
            .retry_notification(s.op(pb::RetryNotificationRequest {
                notification_id: "bad".into(),
            }))
            .await,
        "notification_id",
    );
    // The operator may read too.
    let read = client
        .get_notification(s.op(pb::GetNotificationRequest {
            notification_id: notification_id.clone(),
        }))
        .await
        .expect("operators read notifications")
        .into_inner();
    assert_eq!(
        read.notification.expect("notification").notification_id,
        notification_id
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watch_events_show_delivered_and_dead_outcomes() {
    let s = Suite::start().await;
    let (primary, site) = site(&s).await;
    let good = first_technical_notice(&s, &site.site_id, "w-good").await;
    s.wait_state(&good.notification_id, State::Delivered).await;
    // Nothing else in flight to the primary: its role notice is delivered.
    s.delivered(&site.site_id, &primary, Kind::ContactRoleAssigned)
        .await;
    s.smtp()
        .fail_next_to(&primary.email, 1, 550, "5.7.1 refused by policy");
    let bad = first_technical_notice(&s, &site.site_id, "w-bad").await;
    s.wait_state(&bad.notification_id, State::Dead).await;

    let (delivered_event, delivered) = event_of(&s, &good.notification_id, delivered_of).await;
    assert_eq!(delivered.state, State::Delivered as i32);
    assert_eq!(outcomes(&delivered), [(Outcome::Delivered, 250)]);
    assert!(!delivered_event.cursor.is_empty() && !delivered_event.event_id.is_empty());

    let (dead_event, dead) = event_of(&s, &bad.notification_id, dead_of).await;
    assert_eq!(dead.state, State::Dead as i32);
    assert_eq!(outcomes(&dead), [(Outcome::PermanentFailure, 550)]);
    assert!(
        dead.attempts[0].detail.contains("refused by policy"),
        "{dead:?}"
    );

    // Resuming after the delivered event's cursor: the later outcomes only.
    let mut stream = s
        .notifications()
        .watch_events(s.svc(pb::WatchEventsRequest {
            after_cursor: delivered_event.cursor.clone(),
        }))
        .await
        .expect("watch after the cursor")
        .into_inner();
    let mut seen = Vec::new();
    tokio::time::timeout(helpers::PATIENCE, async {
        loop {
            let event = next_event(&mut stream).await;
            assert_ne!(
                event.event_id, delivered_event.event_id,
                "not the event before the cursor"
            );
            let done = event.event_id == dead_event.event_id;
            seen.push(event.event_id);
            if done {
                break;
            }
        }
    })
    .await
    .expect("the dead event follows the cursor");

    // Revived by an operator: its delivery is an event too.
    s.notifications()
        .retry_notification(s.op(pb::RetryNotificationRequest {
            notification_id: bad.notification_id.clone(),
        }))
        .await
        .expect("retry");
    let revived = tokio::time::timeout(helpers::PATIENCE, async {
        loop {
            let event = next_event(&mut stream).await;
            if let Some(Payload::NotificationDelivered(d)) = event.payload
                && let Some(n) = d.notification
                && n.notification_id == bad.notification_id
            {
                return n;
            }
        }
    })
    .await
    .expect("the revived notification's delivery is streamed");
    assert_eq!(
        outcomes(&revived),
        [(Outcome::PermanentFailure, 550), (Outcome::Delivered, 250)]
    );
}

// rule N3: events applied again (the consumers' cursors lost, e.g. a restored database)
// create no notification and send no mail.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replayed_events_create_nothing_new() {
    let mut s = Suite::start().await;
    let primary = s.user("fr").await;
    let site = s.site(&primary, "fr").await;
    let clerk = s.user("en").await;
    s.assign(&site.site_id, &clerk, Role::Billing, "").await;
    s.wait_approver(&primary, &site.site_id).await;
    let requester = s.user("en").await;
    let request = s.submit(&requester, &site, "please").await;
    s.reject(&primary, &request.request_id, "no").await;
    s.delivered(&site.site_id, &requester, Kind::AccessRequestDecided)
        .await;
    s.delivered(&site.site_id, &clerk, Kind::ContactRoleAssigned)
        .await;
    s.delivered("", &requester, Kind::EmailVerification).await;
    let before = s.all_delivered().await;
    s.assert_each_received_once(&before);

    let pool = sqlx::PgPool::connect(&s.db.url).await.expect("connect");
    let cursors = |pool: sqlx::PgPool| async move {
        sqlx::query("SELECT consumer, cursor FROM notification.event_cursors")
            .fetch_all(&pool)
            .await
            .expect("read the cursors")
            .into_iter()
            .map(|row| {
                (
                    row.get::<String, _>("consumer"),
                    row.get::<String, _>("cursor"),
                )
            })
            .collect::<HashMap<String, String>>()
    };
    s.stop_notification().await;
    let stored = cursors(pool.clone()).await;
    assert_eq!(
        stored.keys().cloned().collect::<BTreeSet<_>>(),
        BTreeSet::from([
            "notification.access".to_owned(),
            "notification.contacts".to_owned(),
            "notification.identity".to_owned(),
        ])
    );
    sqlx::query("DELETE FROM notification.event_cursors")
        .execute(&pool)
        .await
        .expect("forget the cursors");
    s.start_notification().await;

    // Every stream applied again from its start, up to where it was.
    helpers::eventually("the consumers are back where they were", || {
        let pool = pool.clone();
        let stored = &stored;
        async move {
            let now = cursors(pool).await;
            if &now == stored {
                Ok(())
            } else {
                Err(format!("{now:?}"))
            }
        }
    })
    .await;
    let after = s.all_delivered().await;
    assert_eq!(
        ids(&after),
        ids(&before),
        "N3: nothing new: {:#?}",
        brief(&after)
    );
    s.assert_each_received_once(&after);
    let kinds: HashSet<i32> = after.iter().map(|n| n.kind).collect();
    assert!(kinds.contains(&(Kind::AccessRequestDecided as i32)));
}

/// The first notification a technical notice with `key` made on the site.
async fn first_technical_notice(s: &Suite, site_id: &str, key: &str) -> pb::Notification {
    s.send_notice(site_id, Kind::Technical, &TECHNICAL, key)
        .await
        .expect("send")
        .notifications
        .remove(0)
}

/// The notification event whose payload `notification_of` reads as the notification
/// `notification_id`, and that notification as the event carries it.
async fn event_of(
    s: &Suite,
    notification_id: &str,
    notification_of: fn(&Payload) -> Option<&pb::Notification>,
) -> (pb::Event, pb::Notification) {
    s.find_event(|event| {
        let about = event.payload.as_ref().and_then(notification_of)?;
        (about.notification_id == notification_id).then(|| (event.clone(), about.clone()))
    })
    .await
}

/// The notification a NotificationDelivered event carries.
fn delivered_of(payload: &Payload) -> Option<&pb::Notification> {
    match payload {
        Payload::NotificationDelivered(delivered) => delivered.notification.as_ref(),
        _ => None,
    }
}

/// The notification a NotificationDead event carries.
fn dead_of(payload: &Payload) -> Option<&pb::Notification> {
    match payload {
        Payload::NotificationDead(dead) => dead.notification.as_ref(),
        _ => None,
    }
}

/// The next event of a WatchEvents stream; the test fails when the stream ends or breaks.
async fn next_event(stream: &mut tonic::Streaming<pb::WatchEventsResponse>) -> pb::Event {
    stream
        .next()
        .await
        .expect("stream open")
        .expect("event")
        .event
        .expect("body")
}
