//! `ShowAllContacts` pages a site's people (issue 17, "an unlimited number of site users"):
//! the registry lists them by person (keyset on the user id), one page at a time, with their
//! names and states from its projection of identity's users; the gateway asks identity only
//! for the people of that page the projection does not know. Paging lists every person that
//! keeps a role throughout exactly once however contacts change between pages; a page token
//! is opaque and bound to its site; a site of 50,000 SITE_USERs pages through the gateway.

use std::collections::HashSet;
use std::time::Instant;

use crate::gateway::helpers::*;
use kc_proto::gateway::{self as gw};
use kc_proto::identity as ipb;
use sqlx::{Connection, PgConnection};
use tonic::{Code, Status};
use uuid::Uuid;

/// One page of `ShowAllContacts` of `site_id` as `person`.
async fn page(
    suite: &Suite,
    person: &Person,
    site_id: &str,
    page_size: i32,
    page_token: &str,
) -> Result<gw::ShowAllContactsResponse, Status> {
    suite
        .contacts_page(person, site_id, page_size, page_token)
        .await
}

/// Every page of the site as the operator, `page_size` people at a time: the people in
/// order, and how many pages it took. Checks that no page is larger than asked.
async fn every_page(suite: &Suite, site_id: &str, page_size: i32) -> (Vec<gw::ContactView>, usize) {
    let mut people = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let answer = page(suite, &suite.operator, site_id, page_size, &token)
            .await
            .expect("the operator reads a page of contacts");
        pages += 1;
        assert!(
            answer.contacts.len() <= page_size as usize,
            "a page larger than asked"
        );
        people.extend(answer.contacts);
        if answer.next_page_token.is_empty() {
            return (people, pages);
        }
        token = answer.next_page_token;
    }
}

/// The operator removes a contact through the gateway.
async fn remove(suite: &Suite, site_id: &str, contact_id: &str) {
    suite
        .remove_as(&suite.operator, site_id, contact_id)
        .await
        .unwrap_or_else(|status| panic!("remove contact {contact_id}: {status:?}"));
}

/// The operator gives the person of `view` another role.
async fn add_role(suite: &Suite, site_id: &str, view: &gw::ContactView, role: Role) {
    suite
        .assign_email_as(
            &suite.operator,
            site_id,
            &view.email,
            &view.display_name,
            role,
        )
        .await
        .unwrap_or_else(|status| panic!("assign {role:?} to {}: {status:?}", view.user_id));
}

/// The user ids of `people`.
fn ids(people: &[gw::ContactView]) -> Vec<String> {
    people.iter().map(|view| view.user_id.clone()).collect()
}

#[tokio::test]
async fn paging_lists_every_person_once_while_contacts_come_and_go() {
    let suite = Suite::start().await;
    let primary = suite.person("Paula Primary").await;
    let site = suite.create_site("Paging", &primary, None).await;
    let site_id = site.site_id.as_str();
    let mut site_users = Vec::new();
    for _ in 0..9 {
        site_users.push(suite.assign_invited(site_id, Role::SiteUser).await);
    }

    // Unchanged, the pages make one list: each person once, by user id, every role.
    let (before, pages) = every_page(&suite, site_id, 3).await;
    assert_eq!(pages, 4, "10 people in pages of 3");
    let order = ids(&before);
    let mut sorted = order.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(order, sorted, "people come once each, by user id");
    assert_eq!(order.len(), 10);
    let primary_view = before
        .iter()
        .find(|view| view.user_id == primary.id)
        .expect("the primary is listed");
    assert_eq!(primary_view.roles, vec![Role::Primary as i32]);
    assert_eq!(
        primary_view.email, primary.email,
        "identity's user of the page"
    );
    for contact in &site_users {
        let view = before
            .iter()
            .find(|view| view.user_id == contact.user_id)
            .expect("every site user is listed");
        assert_eq!(view.contacts.len(), 1);
        assert_eq!(view.contacts[0].contact_id, contact.contact_id);
    }

    // Page 1, then changes: the last person leaves; a person seen on page 1 and one not yet
    // seen get another role; a new person comes.
    let first = page(&suite, &suite.operator, site_id, 3, "")
        .await
        .expect("page 1");
    let mut seen = ids(&first.contacts);
    assert_eq!(seen, order[..3].to_vec());
    let cursor = seen.last().cloned().expect("a full first page");
    let not_primary = |view: &&gw::ContactView| view.user_id != primary.id;
    let leaver_at = order
        .iter()
        .rposition(|user_id| *user_id != primary.id)
        .expect("a site user");
    let leaver = &before[leaver_at];
    remove(&suite, site_id, &leaver.contacts[0].contact_id).await;
    let seen_site_user = first
        .contacts
        .iter()
        .find(not_primary)
        .expect("a site user");
    add_role(&suite, site_id, seen_site_user, Role::Billing).await;
    let promoted = before[3..leaver_at]
        .iter()
        .find(not_primary)
        .expect("a site user not yet listed");
    add_role(&suite, site_id, promoted, Role::Shipping).await;
    let newcomer = suite.assign_invited(site_id, Role::SiteUser).await;

    let mut token = first.next_page_token;
    let mut later = Vec::new();
    while !token.is_empty() {
        let next = page(&suite, &suite.operator, site_id, 3, &token)
            .await
            .expect("a later page");
        later.extend(next.contacts);
        token = next.next_page_token;
        if later.len() == 3 {
            // Between pages 2 and 3, a person already listed leaves.
            let gone = later.iter().find(not_primary).expect("a site user");
            let contact = gone.contacts.last().expect("its contact");
            remove(&suite, site_id, &contact.contact_id).await;
        }
    }
    seen.extend(ids(&later));

    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no person twice: {seen:?}");
    for (index, user_id) in order.iter().enumerate() {
        let expected = usize::from(index != leaver_at);
        let times = seen.iter().filter(|seen| *seen == user_id).count();
        assert_eq!(
            times, expected,
            "person {index} of the first listing: {user_id}"
        );
    }
    // The newcomer comes in its place in the user-id order: after the cursor, listed.
    let newcomer_seen = seen.contains(&newcomer.user_id);
    assert_eq!(newcomer_seen, newcomer.user_id > cursor, "{newcomer:?}");
    let promoted_now = later
        .iter()
        .find(|view| view.user_id == promoted.user_id)
        .expect("the promoted person, listed once");
    assert_eq!(
        promoted_now.roles,
        vec![Role::Shipping as i32, Role::SiteUser as i32]
    );
    assert_eq!(promoted_now.contacts.len(), 2);
}

#[tokio::test]
async fn page_tokens_are_checked_and_bound_to_their_site() {
    let suite = Suite::start().await;
    let paula = suite.person("Paula Primary").await;
    let bruno = suite.person("Bruno Primary").await;
    let stranger = suite.person("Stan Stranger").await;
    let a = suite.create_site("Site A", &paula, None).await;
    let b = suite.create_site("Site B", &bruno, None).await;
    for _ in 0..2 {
        suite.assign_invited(&a.site_id, Role::SiteUser).await;
        suite.assign_invited(&b.site_id, Role::SiteUser).await;
    }
    suite.wait_role(&a.site_id, &paula.id, Role::Primary).await;
    suite.wait_role(&b.site_id, &bruno.id, Role::Primary).await;

    // The primary pages its own site with its own token.
    let first = page(&suite, &paula, &a.site_id, 1, "")
        .await
        .expect("page 1 of A");
    assert_eq!(first.contacts.len(), 1);
    assert!(!first.next_page_token.is_empty());
    let second = page(&suite, &paula, &a.site_id, 1, &first.next_page_token)
        .await
        .expect("page 2 of A");
    assert_eq!(second.contacts.len(), 1);
    assert!(second.contacts[0].user_id > first.contacts[0].user_id);

    // A token of site A continues nothing on site B, even for a caller who may read B.
    let status = expect_field(
        page(&suite, &bruno, &b.site_id, 1, &first.next_page_token).await,
        "page_token",
    );
    assert!(status.message().contains("another site"), "{status:?}");
    let status = expect_field(
        page(
            &suite,
            &suite.operator,
            &b.site_id,
            1,
            &first.next_page_token,
        )
        .await,
        "page_token",
    );
    assert!(status.message().contains("another site"), "{status:?}");
    // A token the gateway never issued.
    for bad in ["not a token", "bm90IGEgdG9rZW4", "%%%"] {
        expect_field(page(&suite, &paula, &a.site_id, 1, bad).await, "page_token");
    }
    for size in [-1, 1001] {
        expect_field(
            page(&suite, &paula, &a.site_id, size, "").await,
            "page_size",
        );
    }
    // Someone without CONTACTS_VIEW on A gets nothing with A's token.
    expect_code(
        page(&suite, &stranger, &a.site_id, 1, &first.next_page_token).await,
        Code::PermissionDenied,
    );
}

/// A connection to the sandbox's database on `schema`.
async fn schema_connection(suite: &Suite, schema: &str) -> PgConnection {
    let mut conn = PgConnection::connect(&suite.db.url).await.expect("connect");
    sqlx::query("SELECT set_config('search_path', $1, false)")
        .bind(schema)
        .execute(&mut conn)
        .await
        .expect("set the search path");
    conn
}

#[tokio::test]
async fn a_site_of_fifty_thousand_site_users_pages_through_the_gateway() {
    let suite = Suite::start().await;
    let primary = suite.person("Paula Primary").await;
    let site = suite.create_site("Large", &primary, None).await;
    let mut identity = schema_connection(&suite, kc_identity::SCHEMA).await;
    let mut registry = schema_connection(&suite, kc_contacts::SCHEMA).await;
    let site_id: Uuid = site.site_id.parse().expect("site id");
    let loading = Instant::now();
    let added = kc_bench::large_site::load_site_users(
        &mut identity,
        &mut registry,
        site_id,
        kc_bench::large_site::SITE_USERS,
    )
    .await
    .expect("bulk-load the site users");
    assert_eq!(added, 50_000);
    eprintln!("loaded 50,000 site users in {:?}", loading.elapsed());

    let paging = Instant::now();
    let (people, pages) = every_page(&suite, &site.site_id, 1000).await;
    eprintln!(
        "paged through them in {pages} pages in {:?}",
        paging.elapsed()
    );
    assert_eq!(people.len(), 50_001, "every SITE_USER and the primary");
    assert_eq!(pages, 51);
    let order = ids(&people);
    assert!(
        order.windows(2).all(|pair| pair[0] < pair[1]),
        "each person once, by user id"
    );
    // Each page's people come with identity's users.
    let named = people
        .iter()
        .filter(|view| view.display_name.starts_with("Site user "))
        .count();
    assert_eq!(named, 50_000);
    assert!(people.iter().all(|view| !view.email.is_empty()));
}

/// The person of `user_id` on a page of the site as the operator reads it, once it shows
/// `display_name` (the read cache may hold an older page for its TTL).
async fn shown_as(
    suite: &Suite,
    site_id: &str,
    user_id: &str,
    display_name: &str,
) -> gw::ContactView {
    eventually(&format!("{user_id} shows as {display_name:?}"), || async {
        let view = suite
            .operator_contacts(site_id, &[])
            .await
            .into_iter()
            .find(|view| view.user_id == user_id)
            .ok_or_else(|| format!("{user_id} is not on the page"))?;
        if view.display_name == display_name {
            Ok(view)
        } else {
            Err(format!("shown as {:?}", view.display_name))
        }
    })
    .await
}

/// Sets what the registry's projection of identity's users holds as `user_id`'s name
/// (`None`: a row projected before it kept names), once the projection has the user.
async fn set_projected_name(registry: &mut PgConnection, user_id: &str, name: Option<&str>) {
    let user_id: Uuid = user_id.parse().expect("user id");
    let waiting = Instant::now();
    loop {
        let projected: Option<Option<String>> =
            sqlx::query_scalar("SELECT display_name FROM user_states WHERE user_id = $1")
                .bind(user_id)
                .fetch_optional(&mut *registry)
                .await
                .expect("read the projection");
        if matches!(projected, Some(Some(_))) {
            break;
        }
        assert!(
            waiting.elapsed() < PATIENCE,
            "the registry never projected {user_id}: {projected:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    sqlx::query("UPDATE user_states SET display_name = $2 WHERE user_id = $1")
        .bind(user_id)
        .bind(name)
        .execute(&mut *registry)
        .await
        .expect("set the projected name");
}

// rule C7, with I1's invited state: a page of people comes with their names and states from
// the registry's projection of identity's users, in one internal call; a person the projection does not know (or knows
// without a name) is read from identity; a name changed in identity reaches the page.
#[tokio::test]
async fn show_all_contacts_names_people_from_the_registry_and_the_unknown_from_identity() {
    let suite = Suite::start().await;
    let paula = suite.person("Paula Primary").await;
    let site = suite.create_site("Known people", &paula, None).await;
    let invited = suite
        .assign_email_as(
            &suite.operator,
            &site.site_id,
            &fresh_email("ivan"),
            "Ivan Invited",
            Role::SiteUser,
        )
        .await
        .expect("invite a site user")
        .user
        .expect("the invited user");
    let view = shown_as(&suite, &site.site_id, &invited.user_id, "Ivan Invited").await;
    assert_eq!(view.email, invited.email);
    assert_eq!(view.user_state, ipb::UserState::Invited as i32);

    // What the page shows is the registry's projection: a name only it holds is shown.
    let mut registry = schema_connection(&suite, kc_contacts::SCHEMA).await;
    set_projected_name(
        &mut registry,
        &invited.user_id,
        Some("Known To The Registry"),
    )
    .await;
    let view = shown_as(
        &suite,
        &site.site_id,
        &invited.user_id,
        "Known To The Registry",
    )
    .await;
    assert_eq!(view.user_state, ipb::UserState::Invited as i32);
    // A person the projection knows without a name (projected before it kept names) is
    // read from identity, like one it does not know at all.
    set_projected_name(&mut registry, &invited.user_id, None).await;
    shown_as(&suite, &site.site_id, &invited.user_id, "Ivan Invited").await;
    sqlx::query("DELETE FROM user_states WHERE user_id = $1::uuid")
        .bind(&invited.user_id)
        .execute(&mut registry)
        .await
        .expect("forget the person");
    let view = shown_as(&suite, &site.site_id, &invited.user_id, "Ivan Invited").await;
    assert_eq!(view.email, invited.email);
    assert_eq!(view.user_state, ipb::UserState::Invited as i32);

    // A name changed through the gateway reaches the projection, and the page.
    suite
        .gw()
        .update_me(authed(
            Some(&paula.token),
            gw::UpdateMeRequest {
                display_name: Some("Paula Renamed".into()),
                locale: None,
                etag: String::new(),
            },
        ))
        .await
        .expect("paula renames herself");
    shown_as(&suite, &site.site_id, &paula.id, "Paula Renamed").await;
}
