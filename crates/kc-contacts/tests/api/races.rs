//! Races: many concurrent tasks on one site, and the rules still true afterwards (and, for
//! the primary contact, at every moment in between).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::helpers::{
    self, Harness, PATIENCE, all_at_once, cites, expect_rule, mask, role, site_request, user,
};
use kc_proto::contacts::{self as pb, event::Payload};
use tonic::{Code, Status};
use uuid::Uuid;

use pb::ContactRole as R;

/// A future run on its own task.
type BoxTask<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

/// Transfers the primary contact of `site_id` to each of `users`, all at once, each with
/// `etag` (empty: none).
async fn transfers_at_once(
    h: &Harness,
    site_id: &str,
    users: &[Uuid],
    etag: &str,
) -> Vec<Result<pb::TransferPrimaryContactResponse, Status>> {
    let requests = users.iter().map(|u| {
        h.op(pb::TransferPrimaryContactRequest {
            site_id: site_id.to_owned(),
            new_user_id: u.to_string(),
            etag: etag.to_owned(),
            previous_primary_role: 0,
        })
    });
    h.at_once(requests, async |mut client, request| {
        client.transfer_primary_contact(request).await
    })
    .await
}

/// The primary transfers of `site_id` as (previous, new) primary user, in the order they
/// took the site's lock: the audit trail's.
async fn audited_transfers(h: &Harness, site_id: &str) -> Vec<(String, String)> {
    let field = |text: &str| -> String {
        serde_json::from_str::<serde_json::Value>(text).expect("json")["primary_user_id"]
            .as_str()
            .expect("primary_user_id")
            .to_owned()
    };
    h.audit(site_id)
        .await
        .iter()
        .rev()
        .filter(|r| r.action == "primary.transferred")
        .map(|r| (field(&r.before_json), field(&r.after_json)))
        .collect()
}

/// The primary transfers the events report, as (previous, new) primary user, in stream order.
fn streamed_transfers(events: &[pb::Event]) -> Vec<(String, String)> {
    events
        .iter()
        .filter_map(|e| match &e.payload {
            Some(Payload::PrimaryTransferred(p)) => {
                Some((p.previous_user_id.clone(), p.new_user_id.clone()))
            }
            _ => None,
        })
        .collect()
}

/// The holders of `role` on `site_id`, read with `token` on a task's own client.
async fn holders(
    client: &mut helpers::Client,
    token: &str,
    site_id: &str,
    role: R,
) -> Vec<pb::Contact> {
    client
        .list_site_contacts(helpers::authed(
            token,
            pb::ListSiteContactsRequest {
                site_id: site_id.to_owned(),
                roles: vec![role as i32],
                ..Default::default()
            },
        ))
        .await
        .expect("list the holders of a role")
        .into_inner()
        .contacts
}

// rule C6: 20 tasks add distinct SECONDARY contacts at once: exactly 4 succeed, the others
// are refused citing C6, and the site ends with 4.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_secondary_assignments_admit_exactly_four() {
    let h = Harness::start().await;
    let site = h.site("1000001", "2000001", user()).await;
    let users: Vec<Uuid> = (0..20).map(|_| user()).collect();
    let requests = users.iter().map(|u| {
        h.op(pb::AssignContactRequest {
            site_id: site.site_id.clone(),
            user_id: u.to_string(),
            role: R::Secondary as i32,
            details: None,
        })
    });
    let results = h
        .at_once(requests, async |mut client, request| {
            client.assign_contact(request).await
        })
        .await;
    let mut admitted = HashSet::new();
    for (u, result) in users.iter().zip(results) {
        match result {
            Ok(response) => {
                admitted.insert(response.contact.expect("contact").user_id);
            }
            Err(status) => {
                let status = expect_rule(Err::<(), Status>(status), Code::FailedPrecondition, "C6");
                assert!(status.message().contains("4"), "{u}: {status:?}");
            }
        }
    }
    assert_eq!(
        admitted.len(),
        4,
        "exactly four secondary contacts admitted"
    );
    let holders: HashSet<String> = h
        .contacts(&site.site_id, &[R::Secondary])
        .await
        .into_iter()
        .map(|c| c.user_id)
        .collect();
    assert_eq!(holders, admitted);
    let assigned = h
        .audit(&site.site_id)
        .await
        .iter()
        .filter(|r| r.action == "contact.assigned")
        .count();
    assert_eq!(assigned, 4, "one audit record per admitted contact");
}

// rules C3, C6: ten tasks take the same single-holder role at once: one holds it, the
// others are refused citing the rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_assignments_of_a_single_holder_role_admit_one() {
    let h = Harness::start().await;
    let site = h.site("1000001", "2000001", user()).await;
    for (single, rule) in [(R::Renewal, "C6"), (R::Administrative, "C3")] {
        let requests = (0..10).map(|_| {
            h.op(pb::AssignContactRequest {
                site_id: site.site_id.clone(),
                user_id: user().to_string(),
                role: single as i32,
                details: None,
            })
        });
        let results = h
            .at_once(requests, async |mut client, request| {
                client.assign_contact(request).await
            })
            .await;
        let mut winners = 0;
        for result in results {
            match result {
                Ok(_) => winners += 1,
                Err(status) => {
                    expect_rule(Err::<(), Status>(status), Code::FailedPrecondition, rule);
                }
            }
        }
        assert_eq!(winners, 1, "{single:?}");
        assert_eq!(h.contacts(&site.site_id, &[single]).await.len(), 1);
    }
}

// rule C8: ten concurrent primary transfers. A reader polls the primary contacts the whole
// time and always sees exactly one; at the end there is one primary, the transfers form one
// chain, and every primary that was replaced stays on the site as a SITE_USER.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_concurrent_primary_transfers_keep_exactly_one_primary_at_every_moment() {
    let h = Harness::start().await;
    let original = user();
    let site = h.site("1000001", "2000001", original).await;
    let done = Arc::new(AtomicBool::new(false));
    let polls = Arc::new(AtomicUsize::new(0));
    // The reader: exactly one PRIMARY in every read, by contacts and by the site.
    let reader = {
        let done = Arc::clone(&done);
        let polls = Arc::clone(&polls);
        let mut client = h.client();
        let token = h.service_token.clone();
        let site_id = site.site_id.clone();
        tokio::spawn(async move {
            loop {
                // One more read after the transfers finished.
                let last = done.load(Ordering::SeqCst);
                let primaries = holders(&mut client, &token, &site_id, R::Primary).await;
                assert_eq!(
                    primaries.len(),
                    1,
                    "rule C8: exactly one primary at every moment, saw {primaries:?}"
                );
                client
                    .get_site(helpers::authed(
                        &token,
                        pb::GetSiteRequest {
                            site_id: site_id.clone(),
                        },
                    ))
                    .await
                    .expect("a site always has its primary (S1)");
                polls.fetch_add(1, Ordering::SeqCst);
                if last {
                    return;
                }
                tokio::task::yield_now().await;
            }
        })
    };
    let users: Vec<Uuid> = (0..10).map(|_| user()).collect();
    let results = transfers_at_once(&h, &site.site_id, &users, "").await;
    done.store(true, Ordering::SeqCst);
    tokio::time::timeout(PATIENCE, reader)
        .await
        .expect("reader finishes")
        .expect("reader saw exactly one primary every time");
    assert!(polls.load(Ordering::SeqCst) >= 1);
    // Without an etag every transfer applies, one after the other.
    let responses: Vec<pb::TransferPrimaryContactResponse> = results
        .into_iter()
        .map(|r| r.expect("transfer without etag succeeds"))
        .collect();

    let contacts = h.contacts(&site.site_id, &[]).await;
    let primaries: Vec<&pb::Contact> = contacts.iter().filter(|c| role(c) == R::Primary).collect();
    assert_eq!(primaries.len(), 1, "exactly one primary at the end");
    let final_primary = primaries[0].user_id.clone();
    let final_site = h.get_site(&site.site_id).await;
    assert_eq!(final_site.primary_user_id, final_primary);

    // The transfers form one chain in the order they took the site's lock (the audit
    // trail's order), starting at the original primary.
    let chain = audited_transfers(&h, &site.site_id).await;
    assert_eq!(chain.len(), 10);
    assert_eq!(chain[0].0, original.to_string());
    for pair in chain.windows(2) {
        assert_eq!(
            pair[1].0, pair[0].1,
            "rule C8: each transfer starts from the primary the previous one made: {chain:?}"
        );
    }
    // The events report the same transfers (their order is the subject of
    // `events_carry_the_current_primary_under_concurrent_transfers`).
    let events = h.events("", 11).await;
    let published: HashSet<(String, String)> = streamed_transfers(&events).into_iter().collect();
    assert_eq!(published, chain.iter().cloned().collect::<HashSet<_>>());
    assert_eq!(chain[9].1, final_primary);
    // Each response names the primary it replaced, consistent with the chain.
    let replaced_by: HashMap<String, String> = chain
        .iter()
        .map(|(old, new)| (new.clone(), old.clone()))
        .collect();
    for response in &responses {
        let new = response.primary.as_ref().expect("primary").user_id.clone();
        let previous = response
            .previous_primary
            .as_ref()
            .expect("the old primary got SITE_USER");
        assert_eq!(role(previous), R::SiteUser);
        assert_eq!(
            previous.user_id, replaced_by[&new],
            "response of transfer to {new}"
        );
    }
    // Every replaced primary stayed on the site as a SITE_USER; nobody else did.
    let site_users: HashSet<String> = contacts
        .iter()
        .filter(|c| role(c) == R::SiteUser)
        .map(|c| c.user_id.clone())
        .collect();
    let mut expected: HashSet<String> = users.iter().map(Uuid::to_string).collect();
    expected.insert(original.to_string());
    expected.remove(&final_primary);
    assert_eq!(
        site_users, expected,
        "rule C8: every old primary stays as a SITE_USER"
    );
    assert_eq!(contacts.len(), 11);
}

// rule C8 and the event contract: while primary transfers and assignments run at once on one
// site, the stream delivers that site's events in the order the changes happened, each
// carrying the site as it is after its change. A consumer that applies the stream in order
// (the consumer contract) must end with the site's real primary, and replaying the
// transfers in stream order must give the primary_user_id every event shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_carry_the_current_primary_under_concurrent_transfers() {
    let h = Harness::start().await;
    let original = user();
    let site = h.site("1000001", "2000001", original).await;
    for _round in 0..5 {
        let mut tasks: Vec<BoxTask<()>> = Vec::new();
        for i in 0..20 {
            let mut client = h.client();
            let site_id = site.site_id.clone();
            let token = h.operator_token.clone();
            tasks.push(Box::pin(async move {
                if i % 2 == 0 {
                    let request = helpers::authed(
                        &token,
                        pb::TransferPrimaryContactRequest {
                            site_id,
                            new_user_id: user().to_string(),
                            etag: String::new(),
                            previous_primary_role: 0,
                        },
                    );
                    client
                        .transfer_primary_contact(request)
                        .await
                        .expect("transfer");
                } else {
                    let request = helpers::authed(
                        &token,
                        pb::AssignContactRequest {
                            site_id,
                            user_id: user().to_string(),
                            role: R::SiteUser as i32,
                            details: None,
                        },
                    );
                    client.assign_contact(request).await.expect("assign");
                }
            }));
        }
        all_at_once(tasks).await;
    }
    let total = h.outbox_count().await;
    let events = h.events("", usize::try_from(total).expect("count")).await;
    // The order the transfers happened in: the audit trail's (appended under the site lock).
    let happened = audited_transfers(&h, &site.site_id).await;
    let streamed = streamed_transfers(&events);
    assert_eq!(happened.len(), 50);
    assert_eq!(
        streamed, happened,
        "the stream delivers one site's transfers in the order they happened"
    );
    let mut primary = original.to_string();
    for event in &events {
        if let Some(Payload::PrimaryTransferred(p)) = &event.payload {
            assert_eq!(
                p.previous_user_id, primary,
                "transfer from the current primary"
            );
            primary = p.new_user_id.clone();
        }
        let shown = &event.site.as_ref().expect("site").primary_user_id;
        assert_eq!(
            shown, &primary,
            "the event's site shows the primary after its change: {:?}",
            event.payload
        );
    }
    // A consumer that applied the stream in order ends with the site as it is.
    let last = events.last().expect("events").site.clone().expect("site");
    assert_eq!(
        last.primary_user_id,
        h.get_site(&site.site_id).await.primary_user_id
    );
}

// rule C8: concurrent transfers that all read the same etag: one wins, the others are
// Aborted, and the site has the winner as its only primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_transfers_with_the_same_etag_admit_one() {
    let h = Harness::start().await;
    let original = user();
    let site = h.site("1000001", "2000001", original).await;
    let users: Vec<Uuid> = (0..10).map(|_| user()).collect();
    let results = transfers_at_once(&h, &site.site_id, &users, &site.etag).await;
    let mut winner = None;
    for (u, result) in users.iter().zip(results) {
        match result {
            Ok(_) => {
                assert!(winner.is_none(), "two transfers won with one etag");
                winner = Some(*u);
            }
            Err(status) => assert_eq!(status.code(), Code::Aborted, "{status:?}"),
        }
    }
    let winner = winner.expect("one transfer wins");
    let primaries = h.contacts(&site.site_id, &[R::Primary]).await;
    assert_eq!(primaries.len(), 1);
    assert_eq!(primaries[0].user_id, winner.to_string());
    let site_users = h.contacts(&site.site_id, &[R::SiteUser]).await;
    assert_eq!(site_users.len(), 1);
    assert_eq!(site_users[0].user_id, original.to_string());
}

// rules C3, L1: two UpdateSite calls (name and the C3 switch) with the same etag: one wins,
// the other is Aborted (repeated to give the race several chances); the site shows the
// winner's change, one more version, and one audit record per applied update.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_updates_with_the_same_etag_one_wins() {
    let h = Harness::start().await;
    let site = h.site("1000001", "2000001", user()).await;
    for round in 0..5 {
        let current = h.get_site(&site.site_id).await;
        let names = [format!("Round {round} A"), format!("Round {round} B")];
        let requests = names.iter().map(|name| {
            h.svc(pb::UpdateSiteRequest {
                site: Some(pb::Site {
                    site_id: site.site_id.clone(),
                    name: name.clone(),
                    admin_may_manage_access: round % 2 == 0,
                    ..Default::default()
                }),
                update_mask: mask(&["name", "admin_may_manage_access"]),
                etag: current.etag.clone(),
            })
        });
        let results = h
            .at_once(requests, async |mut client, request| {
                client.update_site(request).await
            })
            .await;
        let (won, lost): (Vec<_>, Vec<_>) = results.into_iter().partition(Result::is_ok);
        assert_eq!(won.len(), 1, "round {round}: one update wins");
        let lost = lost
            .into_iter()
            .next()
            .expect("one loses")
            .expect_err("lost");
        assert_eq!(lost.code(), Code::Aborted, "{lost:?}");
        let winner = won
            .into_iter()
            .next()
            .expect("winner")
            .expect("ok")
            .site
            .expect("site");
        let now = h.get_site(&site.site_id).await;
        assert_eq!(now, winner);
        assert!(names.contains(&now.name));
        assert_eq!(
            now.etag.parse::<i64>().expect("numeric etag"),
            current.etag.parse::<i64>().expect("numeric etag") + 1,
            "exactly one update applied"
        );
    }
    let updates = h
        .audit(&site.site_id)
        .await
        .iter()
        .filter(|r| r.action == "site.updated")
        .count();
    assert_eq!(updates, 5);
}

// rule C5: while ReplaceContact swaps the STC of a site with active S&S again and again,
// removing the STC is always refused citing C5 (or finds the contact already replaced), every
// replacement succeeds, and the site is never left without an STC.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn removing_the_stc_while_it_is_replaced_is_refused_and_replacements_succeed() {
    let h = Harness::start().await;
    let first_stc = user();
    let created = h
        .supported_site("1000001", "2000001", user(), first_stc)
        .await;
    let site = created.site.expect("site");
    let replacers: Vec<Uuid> = (0..10).map(|_| user()).collect();
    type Outcome = Result<(), Status>;
    let mut tasks: Vec<BoxTask<(bool, Outcome)>> = Vec::new();
    for u in &replacers {
        let mut client = h.client();
        let request = h.op(pb::ReplaceContactRequest {
            site_id: site.site_id.clone(),
            role: R::SiteTechnical as i32,
            new_user_id: u.to_string(),
            details: None,
        });
        tasks.push(Box::pin(async move {
            (true, client.replace_contact(request).await.map(drop))
        }));
    }
    for _ in 0..5 {
        let mut client = h.client();
        let token = h.operator_token.clone();
        let site_id = site.site_id.clone();
        tasks.push(Box::pin(async move {
            // Remove whatever contact is the STC now; a NotFound means it was replaced in
            // between: read again. The replacements are finite, so this ends.
            for _ in 0..50 {
                let stcs = holders(&mut client, &token, &site_id, R::SiteTechnical).await;
                assert_eq!(stcs.len(), 1, "rule C5: the site always has its STC");
                let result = client
                    .remove_contact(helpers::authed(
                        &token,
                        pb::RemoveContactRequest {
                            contact_id: stcs[0].contact_id.clone(),
                            etag: String::new(),
                            site_id: String::new(),
                        },
                    ))
                    .await;
                match result {
                    Err(status) if status.code() == Code::NotFound => continue,
                    other => return (false, other.map(drop)),
                }
            }
            panic!("the STC kept changing under the remover");
        }));
    }
    let results = all_at_once(tasks).await;
    for (is_replace, outcome) in results {
        if is_replace {
            outcome.expect("every replacement succeeds");
        } else {
            let status = outcome.expect_err("removing the STC is refused");
            assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
            assert!(cites(status.message(), "C5"), "{status:?}");
        }
    }
    let stcs = h.contacts(&site.site_id, &[R::SiteTechnical]).await;
    assert_eq!(stcs.len(), 1, "rule C5: exactly one STC at the end");
    assert!(replacers.iter().any(|u| stcs[0].user_id == u.to_string()));
    assert!(h.get_site(&site.site_id).await.support_active);
    let records = h.audit(&site.site_id).await;
    assert_eq!(
        records
            .iter()
            .filter(|r| r.action == "contact.replaced")
            .count(),
        10
    );
    assert!(records.iter().all(|r| r.action != "contact.removed"));
    // The replacements form one chain: each removed the holder the previous one installed.
    let events = h.events("", 11).await;
    let mut holder = first_stc.to_string();
    for event in &events[1..] {
        match &event.payload {
            Some(Payload::ContactReplaced(p)) => {
                let replaced = p.replaced.as_ref().expect("someone held the role");
                assert_eq!(replaced.user_id, holder);
                holder = p.contact.as_ref().expect("contact").user_id.clone();
            }
            other => panic!("expected ContactReplaced, got {other:?}"),
        }
    }
    assert_eq!(holder, stcs[0].user_id);
}

// rules S2 and the vocabulary: sites of a new customer created at once: exactly one is the
// original site; the same site number created at once: one wins, the others AlreadyExists.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_site_creations_keep_one_original_site_and_unique_numbers() {
    let h = Harness::start().await;
    let requests = (0..8).map(|i| h.svc(site_request(&format!("100000{i}"), "2000001", user())));
    let results = h
        .at_once(requests, async |mut client, request| {
            client.create_site(request).await
        })
        .await;
    let originals = results
        .into_iter()
        .map(|r| r.expect("distinct numbers are all created"))
        .filter(|r| r.site.as_ref().expect("site").is_original_site)
        .count();
    assert_eq!(originals, 1, "a customer has exactly one original site");

    let requests = (0..8).map(|i| h.svc(site_request("1999999", &format!("300000{i}"), user())));
    let results = h
        .at_once(requests, async |mut client, request| {
            client.create_site(request).await
        })
        .await;
    let mut created = 0;
    for result in results {
        match result {
            Ok(_) => created += 1,
            Err(status) => assert_eq!(status.code(), Code::AlreadyExists, "{status:?}"),
        }
    }
    assert_eq!(created, 1, "rule S2: site numbers are unique");
    let sites = h.all_sites().await;
    assert_eq!(sites.len(), 9);
    // The losers' customers were not recorded: each one's next site is its original site.
    let winner = sites
        .iter()
        .find(|s| s.site_number == "1999999")
        .expect("winner");
    for i in 0..8 {
        let customer = format!("300000{i}");
        if customer != winner.customer_number {
            assert!(
                h.site(&format!("400000{i}"), &customer, user())
                    .await
                    .is_original_site
            );
        }
    }
}
