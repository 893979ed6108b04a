//! WatchEvents: the user lifecycle streamed to services and operators, resumable by cursor.

use std::time::Duration;

use futures::StreamExt;
use kc_proto::identity::{self as pb, event::Payload};
use tonic::Code;

use crate::helpers::{Harness, authed, expect_code, expect_field};

/// Reads the identity event stream from the start until `pick` finds something.
async fn find_event<T>(
    h: &Harness,
    token: &str,
    mut pick: impl FnMut(&pb::Event) -> Option<T>,
) -> T {
    let mut stream = h.watch(token, "").await;
    tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(item) = stream.next().await {
            let event = item.expect("event").event.expect("event body");
            if let Some(found) = pick(&event) {
                return found;
            }
        }
        panic!("event stream ended");
    })
    .await
    .expect("event arrives within 20 s")
}

#[tokio::test]
async fn watch_events_streams_the_user_lifecycle_to_services_only() {
    let h = Harness::start().await;
    let operator = h.operator().await;
    let (ada, customer_token) = h.customer("ada@example.com").await;
    expect_code(
        h.client()
            .watch_events(authed(
                &customer_token,
                pb::WatchEventsRequest {
                    after_cursor: String::new(),
                },
            ))
            .await,
        Code::PermissionDenied,
    );
    expect_field(
        h.client()
            .watch_events(authed(
                &operator,
                pb::WatchEventsRequest {
                    after_cursor: "garbage".into(),
                },
            ))
            .await,
        "after_cursor",
    );
    h.disable(&operator, &ada.user_id).await;

    let mut seen = Vec::new();
    let last_cursor = find_event(&h, &operator, |event| {
        if event.user_id == ada.user_id {
            let kind = match &event.payload {
                Some(Payload::UserRegistered(_)) => "registered",
                Some(Payload::EmailVerificationRequested(request)) => {
                    assert_eq!(request.email, "ada@example.com");
                    // Used: its sealed code is gone from the outbox.
                    assert!(request.sealed_code.is_empty());
                    "verification"
                }
                Some(Payload::TokensRevoked(_)) => "revoked",
                Some(Payload::UserDisabled(_)) => "disabled",
                Some(Payload::UserUpdated(_)) => "updated",
                Some(Payload::UserEnabled(_)) => "enabled",
                Some(_) => "other",
                None => "none",
            };
            assert!(!event.event_id.is_empty() && event.create_time.is_some());
            seen.push(kind);
        }
        (seen.last() == Some(&"disabled")).then(|| event.cursor.clone())
    })
    .await;
    assert_eq!(
        seen,
        [
            "registered",
            "verification",
            "updated",
            "revoked",
            "disabled"
        ]
    );

    // Resuming after the last cursor yields only what came later, live.
    let mut stream = h.watch(&operator, &last_cursor).await;
    h.enable_user(&operator, &ada.user_id).await.unwrap();
    let next = tokio::time::timeout(Duration::from_secs(20), stream.next())
        .await
        .expect("live event")
        .unwrap()
        .unwrap()
        .event
        .unwrap();
    assert!(
        matches!(next.payload, Some(Payload::UserEnabled(_))),
        "{next:?}"
    );
}
