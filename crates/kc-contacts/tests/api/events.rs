//! WatchEvents (rules L1, C3).

use std::collections::HashSet;

use crate::helpers::{self, Harness, expect_field, mask, site_request, user};
use kc_proto::contacts::{self as pb, event::Payload};

use pb::ContactRole as R;

// rules L1, C3: every change is published in commit order with the site as it is after the change (site
// number, customer number, language, the C3 switch), so consumers never call back.
#[tokio::test]
async fn watch_events_streams_every_change_in_order_with_site_data() {
    let h = Harness::start().await;
    let (actor, primary, admin, stc, next_primary) = (user(), user(), user(), user(), user());
    let mut client = h.client();
    let created = client
        .create_site(h.for_user(
            actor,
            pb::CreateSiteRequest {
                language: "fr".into(),
                ..site_request("1000001", "2000001", primary)
            },
        ))
        .await
        .expect("create")
        .into_inner();
    let site_id = created.site.as_ref().expect("site").site_id.clone();
    // The actor holds every authority on the site by grant (T8: the registry checks it).
    h.grant_all(&site_id, actor).await;
    let site_update = h
        .update_site(h.for_user(
            actor,
            pb::UpdateSiteRequest {
                site: Some(pb::Site {
                    site_id: site_id.clone(),
                    admin_may_manage_access: true,
                    language: "nl-BE".into(),
                    ..Default::default()
                }),
                update_mask: mask(&["admin_may_manage_access", "language"]),
                etag: String::new(),
            },
        ))
        .await;
    let assigned = h
        .assign(&site_id, admin, R::Administrative)
        .await
        .expect("assign");
    let updated = h
        .update_contact(h.svc(pb::UpdateContactRequest {
            contact_id: assigned.contact_id.clone(),
            details: Some(pb::ContactDetails {
                phone: "+32 2 123 45 67".into(),
                ..Default::default()
            }),
            etag: String::new(),
            site_id: String::new(),
        }))
        .await;
    let replaced = client
        .replace_contact(h.op(pb::ReplaceContactRequest {
            site_id: site_id.clone(),
            role: R::SiteTechnical as i32,
            new_user_id: stc.to_string(),
            details: None,
        }))
        .await
        .expect("replace")
        .into_inner();
    let transferred = client
        .transfer_primary_contact(h.op(pb::TransferPrimaryContactRequest {
            site_id: site_id.clone(),
            new_user_id: next_primary.to_string(),
            etag: String::new(),
            previous_primary_role: 0,
        }))
        .await
        .expect("transfer")
        .into_inner();
    let removed = h
        .remove_contact(h.op(pb::RemoveContactRequest {
            contact_id: assigned.contact_id.clone(),
            etag: String::new(),
            site_id: String::new(),
        }))
        .await;

    let events = h.events("", 7).await;
    // Unique ids, increasing cursors.
    let ids: HashSet<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids.len(), 7);
    for pair in events.windows(2) {
        assert!(pair[0].cursor < pair[1].cursor, "cursors increase");
    }
    for event in &events {
        let site = event.site.as_ref().expect("every event carries its site");
        assert_eq!(site.site_id, site_id);
        assert_eq!(site.site_number, "1000001");
        assert_eq!(site.customer_number, "2000001");
        assert!(event.create_time.is_some());
        assert!(!event.cursor.is_empty());
    }
    let site_of = |i: usize| events[i].site.clone().expect("site");
    // 0: creation, with its contacts, language before the change, switch off.
    match events[0].payload.as_ref().expect("payload") {
        Payload::SiteCreated(p) => assert_eq!(p.contacts, created.contacts),
        other => panic!("expected SiteCreated, got {other:?}"),
    }
    assert_eq!(events[0].actor_id, actor.to_string());
    assert_eq!(site_of(0).language, "fr");
    assert!(!site_of(0).admin_may_manage_access);
    // 1: the site change, with the site before it; the switch and language after it.
    match events[1].payload.as_ref().expect("payload") {
        Payload::SiteUpdated(p) => {
            let before = p.before.as_ref().expect("before");
            assert!(!before.admin_may_manage_access);
            assert_eq!(before.language, "fr");
        }
        other => panic!("expected SiteUpdated, got {other:?}"),
    }
    assert_eq!(site_of(1), site_update);
    assert_eq!(events[1].actor_id, actor.to_string());
    // Every later event carries the switch and the new language.
    for i in 1..7 {
        assert!(site_of(i).admin_may_manage_access, "event {i}");
        assert_eq!(site_of(i).language, "nl-BE", "event {i}");
    }
    // 2: the assignment, user and role included; the operator acted for itself (a service
    // acting for nobody may not, rule T6).
    match events[2].payload.as_ref().expect("payload") {
        Payload::ContactAssigned(p) => {
            let contact = p.contact.as_ref().expect("contact");
            assert_eq!(contact, &assigned);
            assert_eq!(contact.user_id, admin.to_string());
            assert_eq!(contact.role, R::Administrative as i32);
        }
        other => panic!("expected ContactAssigned, got {other:?}"),
    }
    assert_eq!(events[2].actor_id, h.operator_id.to_string());
    // 3: the detail change.
    match events[3].payload.as_ref().expect("payload") {
        Payload::ContactUpdated(p) => {
            assert_eq!(p.contact.as_ref().expect("contact"), &updated);
            assert_eq!(
                p.contact.as_ref().unwrap().details.as_ref().unwrap().phone,
                "+3221234567"
            );
        }
        other => panic!("expected ContactUpdated, got {other:?}"),
    }
    // 4: the replacement (nobody held the role).
    match events[4].payload.as_ref().expect("payload") {
        Payload::ContactReplaced(p) => {
            assert_eq!(p.contact, replaced.contact);
            assert_eq!(p.replaced, None);
        }
        other => panic!("expected ContactReplaced, got {other:?}"),
    }
    // 5: the transfer, with both users, and the site's new primary.
    match events[5].payload.as_ref().expect("payload") {
        Payload::PrimaryTransferred(p) => {
            assert_eq!(p.previous_user_id, primary.to_string());
            assert_eq!(p.new_user_id, next_primary.to_string());
            assert_eq!(p.primary, transferred.primary);
            assert_eq!(p.previous_primary, transferred.previous_primary);
        }
        other => panic!("expected PrimaryTransferred, got {other:?}"),
    }
    assert_eq!(site_of(5).primary_user_id, next_primary.to_string());
    // 6: the removal.
    match events[6].payload.as_ref().expect("payload") {
        Payload::ContactRemoved(p) => assert_eq!(p.contact.as_ref(), Some(&removed)),
        other => panic!("expected ContactRemoved, got {other:?}"),
    }

    // Resuming after a cursor gives the rest, the same events.
    let rest = h.events(&events[3].cursor, 3).await;
    assert_eq!(rest, events[4..]);
    // Live follow: a stream opened at the end gets the next change.
    let mut live = client
        .watch_events(h.svc(pb::WatchEventsRequest {
            after_cursor: events[6].cursor.clone(),
        }))
        .await
        .expect("watch")
        .into_inner();
    h.assign(&site_id, user(), R::SiteUser)
        .await
        .expect("assign");
    let next = tokio::time::timeout(helpers::PATIENCE, live.message())
        .await
        .expect("live event in time")
        .expect("stream ok")
        .expect("an event")
        .event
        .expect("event");
    assert!(matches!(next.payload, Some(Payload::ContactAssigned(_))));
    assert!(next.cursor > events[6].cursor);
    // A cursor this service never issued names the field.
    for bad in ["42", "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz"] {
        expect_field(
            client
                .watch_events(h.svc(pb::WatchEventsRequest {
                    after_cursor: bad.into(),
                }))
                .await,
            "after_cursor",
        );
    }
}
