//! ListSiteContacts and ListUserContacts (rules C6, C7).

use crate::helpers::{Harness, expect_code, expect_field, read_pages, role, user};
use kc_proto::contacts::{self as pb};
use kc_proto::identity as ipb;
use tonic::Code;
use uuid::Uuid;

use pb::ContactRole as R;

// rule C7: "show all contacts" lists every contact of a site with its roles, PRIMARY
// first, then by role and creation; a role filter narrows it.
#[tokio::test]
async fn list_site_contacts_shows_every_role_primary_first() {
    let h = Harness::start().await;
    let (primary, person) = (user(), user());
    let site = h.site("1000001", "2000001", primary).await;
    // Assigned in an order unlike the display order.
    let assigned = [
        (R::SiteUser, user()),
        (R::Billing, person),
        (R::Secondary, user()),
        (R::SiteUser, person),
        (R::Administrative, user()),
        (R::Secondary, person),
        (R::Shipping, user()),
        (R::SiteTechnical, user()),
        (R::Renewal, user()),
    ];
    for (r, u) in assigned {
        h.assign(&site.site_id, u, r).await.expect("assign");
    }
    let all = h.contacts(&site.site_id, &[]).await;
    assert_eq!(all.len(), 10);
    let roles: Vec<R> = all.iter().map(role).collect();
    assert_eq!(
        roles,
        [
            R::Primary,
            R::Administrative,
            R::SiteTechnical,
            R::Secondary,
            R::Secondary,
            R::Renewal,
            R::Shipping,
            R::Billing,
            R::SiteUser,
            R::SiteUser
        ]
    );
    assert_eq!(all[0].user_id, primary.to_string());
    // Within a role, creation order.
    assert_eq!(all[9].user_id, person.to_string());
    assert!(all.iter().all(|c| c.site_id == site.site_id));
    // Role filter.
    let filtered = h.contacts(&site.site_id, &[R::SiteUser, R::Primary]).await;
    let roles: Vec<R> = filtered.iter().map(role).collect();
    assert_eq!(roles, [R::Primary, R::SiteUser, R::SiteUser]);
    // Pages of 3 give the same list.
    let paged = read_pages(3, None, |token| {
        h.contacts_page(&site.site_id, &[], 3, token)
    })
    .await;
    assert_eq!(paged, all);
    // Bad arguments.
    let request = |site_id: &str, roles: Vec<i32>, size: i32, token: &str| {
        h.svc(pb::ListSiteContactsRequest {
            site_id: site_id.into(),
            roles,
            page_size: size,
            page_token: token.into(),
            by_person: false,
            with_people: false,
        })
    };
    let mut client = h.client();
    expect_field(
        client.list_site_contacts(request("x", vec![], 0, "")).await,
        "site_id",
    );
    expect_field(
        client
            .list_site_contacts(request(&site.site_id, vec![0], 0, ""))
            .await,
        "roles",
    );
    expect_field(
        client
            .list_site_contacts(request(&site.site_id, vec![], 1001, ""))
            .await,
        "page_size",
    );
    expect_field(
        client
            .list_site_contacts(request(&site.site_id, vec![], 0, "bm90IGEgdG9rZW4"))
            .await,
        "page_token",
    );
    expect_code(
        client
            .list_site_contacts(request(&Uuid::new_v4().to_string(), vec![], 0, ""))
            .await,
        Code::NotFound,
    );
}

// rule C6 and the vocabulary: one user may hold several roles on one site and roles on
// many sites; ListUserContacts shows each with its site.
#[tokio::test]
async fn list_user_contacts_lists_every_site_and_role_of_a_person() {
    let h = Harness::start().await;
    let person = user();
    let first = h.site("1000001", "2000001", person).await;
    let second = h.site("1000002", "2000002", user()).await;
    h.assign(&first.site_id, person, R::Billing)
        .await
        .expect("billing");
    h.assign(&second.site_id, person, R::SiteTechnical)
        .await
        .expect("stc");
    h.assign(&second.site_id, user(), R::SiteUser)
        .await
        .expect("someone else");
    let list = |size: i32, token: String| {
        let request = h.svc(pb::ListUserContactsRequest {
            user_id: person.to_string(),
            page_size: size,
            page_token: token,
        });
        let mut client = h.client();
        async move {
            client
                .list_user_contacts(request)
                .await
                .expect("list user contacts")
                .into_inner()
        }
    };
    let all = list(0, String::new()).await;
    assert!(all.next_page_token.is_empty());
    let mut held: Vec<(String, R)> = all
        .contacts
        .iter()
        .map(|uc| {
            let contact = uc.contact.as_ref().expect("contact");
            let site = uc.site.as_ref().expect("site");
            assert_eq!(contact.user_id, person.to_string());
            assert_eq!(contact.site_id, site.site_id);
            (site.site_number.clone(), role(contact))
        })
        .collect();
    held.sort_by_key(|(number, r)| (number.clone(), *r as i32));
    // Each contact and its site are shown as the site's listing and GetSite show them: each
    // with its own version and times (they are read in one row).
    for uc in &all.contacts {
        let site = uc.site.as_ref().expect("site");
        assert_eq!(site, &h.get_site(&site.site_id).await);
        let contact = uc.contact.as_ref().expect("contact");
        let listed = h.contacts(&site.site_id, &[]).await;
        assert!(
            listed.contains(contact),
            "{contact:?} is not listed as {listed:?}"
        );
    }
    assert_eq!(
        held,
        [
            ("1000001".to_owned(), R::Primary),
            ("1000001".to_owned(), R::Billing),
            ("1000002".to_owned(), R::SiteTechnical)
        ]
    );
    // Pages of one give the same contacts.
    let mut paged = Vec::new();
    let mut token = String::new();
    loop {
        let page = list(1, token).await;
        assert!(page.contacts.len() <= 1);
        paged.extend(page.contacts);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(paged, all.contacts);
    // Someone without roles has none.
    let nobody = h
        .client()
        .list_user_contacts(h.svc(pb::ListUserContactsRequest {
            user_id: user().to_string(),
            page_size: 0,
            page_token: String::new(),
        }))
        .await
        .expect("list")
        .into_inner();
    assert!(nobody.contacts.is_empty());
    for (field, request) in [
        (
            "user_id",
            pb::ListUserContactsRequest {
                user_id: "me".into(),
                ..Default::default()
            },
        ),
        (
            "page_size",
            pb::ListUserContactsRequest {
                user_id: person.to_string(),
                page_size: -5,
                ..Default::default()
            },
        ),
        (
            "page_token",
            pb::ListUserContactsRequest {
                user_id: person.to_string(),
                page_token: "***".into(),
                ..Default::default()
            },
        ),
    ] {
        expect_field(h.client().list_user_contacts(h.svc(request)).await, field);
    }
}

// rule C7 for sites of any size: paged by person, a page never splits a person's roles,
// whatever the page size and however many roles the people at its edges hold (C6 bounds the
// rows beyond one per person, which the registry's single read of a page relies on).
#[tokio::test]
async fn pages_by_person_keep_each_persons_roles_together_at_every_size() {
    let h = Harness::start().await;
    let (primary, busy, twice) = (user(), user(), user());
    let site = h.site("1000002", "2000002", primary).await;
    let mut assigned = vec![
        (R::Administrative, primary),
        (R::Billing, primary),
        (R::Secondary, primary),
        (R::SiteUser, primary),
        (R::SiteTechnical, busy),
        (R::Renewal, busy),
        (R::Shipping, busy),
        (R::Secondary, busy),
        (R::SiteUser, busy),
        (R::Secondary, twice),
        (R::SiteUser, twice),
    ];
    assigned.extend((0..7).map(|_| (R::SiteUser, user())));
    for (r, u) in assigned {
        h.assign(&site.site_id, u, r).await.expect("assign");
    }
    let page = |size: i32, token: String| {
        let mut client = h.client();
        let request = h.svc(pb::ListSiteContactsRequest {
            site_id: site.site_id.clone(),
            roles: vec![],
            page_size: size,
            page_token: token,
            by_person: true,
            with_people: false,
        });
        async move {
            client
                .list_site_contacts(request)
                .await
                .expect("a page of people")
                .into_inner()
        }
    };
    let whole = page(1000, String::new()).await;
    assert!(whole.next_page_token.is_empty());
    assert_eq!(whole.contacts.len(), 19);
    let people = |contacts: &[pb::Contact]| {
        let mut ids: Vec<String> = contacts.iter().map(|c| c.user_id.clone()).collect();
        ids.dedup();
        ids
    };
    let everyone = people(&whole.contacts);
    assert_eq!(everyone.len(), 10);
    let mut sorted = everyone.clone();
    sorted.sort_by_key(|id| Uuid::parse_str(id).expect("uuid"));
    assert_eq!(everyone, sorted, "people come in user-id order");
    for size in 1..=4 {
        let mut read = Vec::new();
        let mut token = String::new();
        loop {
            let answer = page(size, token).await;
            let on_page = people(&answer.contacts);
            assert!(on_page.len() <= size as usize, "size {size}: {on_page:?}");
            assert!(!on_page.is_empty(), "size {size}: an empty page");
            read.extend(answer.contacts);
            if answer.next_page_token.is_empty() {
                break;
            }
            token = answer.next_page_token;
        }
        assert_eq!(read, whole.contacts, "pages of {size} make the whole list");
    }
}

/// An identity event of `user` as identity publishes it (`registered`: UserRegistered, else
/// UserUpdated).
fn identity_event(
    user: Uuid,
    display_name: &str,
    state: ipb::UserState,
    registered: bool,
) -> ipb::Event {
    use ipb::event::Payload;
    let user = ipb::User {
        user_id: user.to_string(),
        email: format!("{user}@example.com"),
        display_name: display_name.into(),
        state: state as i32,
        ..Default::default()
    };
    ipb::Event {
        user_id: user.user_id.clone(),
        payload: Some(if registered {
            Payload::UserRegistered(ipb::UserRegistered { user: Some(user) })
        } else {
            Payload::UserUpdated(ipb::UserUpdated { user: Some(user) })
        }),
        ..Default::default()
    }
}

// rule C7 without asking identity: with `with_people`, a page of a site's contacts comes with
// what the registry's projection of identity's users knows of its people (name, e-mail,
// state as identity's last event said: invited, I1, then disabled, I4), in user-id order; people it does not know, or knows
// without a name, are left out; nothing is read unless asked.
#[tokio::test]
async fn a_page_comes_with_the_people_the_projection_of_identity_knows() {
    let h = Harness::start().await;
    let (primary, renamed, unknown, nameless) = (user(), user(), user(), user());
    let site = h.site("1000003", "2000003", primary).await;
    for person in [renamed, unknown, nameless] {
        h.assign(&site.site_id, person, R::SiteUser)
            .await
            .expect("assign");
    }
    let pool = h.pool().await;
    let mut conn = pool.acquire().await.expect("connection");
    let events = [
        identity_event(primary, "Paula Primary", ipb::UserState::Active, true),
        identity_event(renamed, "Rita Before", ipb::UserState::Invited, true),
        identity_event(renamed, "Rita After", ipb::UserState::Disabled, false),
        identity_event(nameless, "Nina Nameless", ipb::UserState::Active, true),
    ];
    kc_contacts::compliance_feeds::apply_identity_events(&mut conn, &events)
        .await
        .expect("apply identity's events");
    // A row projected before the projection kept names.
    sqlx::query("UPDATE user_states SET display_name = NULL WHERE user_id = $1")
        .bind(nameless)
        .execute(&mut *conn)
        .await
        .expect("forget a name");

    let page = |with_people: bool, by_person: bool| {
        let mut client = h.client();
        let request = h.svc(pb::ListSiteContactsRequest {
            site_id: site.site_id.clone(),
            by_person,
            with_people,
            ..Default::default()
        });
        async move {
            client
                .list_site_contacts(request)
                .await
                .expect("a page")
                .into_inner()
        }
    };
    let mut expected = vec![
        pb::KnownPerson {
            user_id: primary.to_string(),
            email: format!("{primary}@example.com"),
            display_name: "Paula Primary".into(),
            state: ipb::UserState::Active as i32,
        },
        pb::KnownPerson {
            user_id: renamed.to_string(),
            email: format!("{renamed}@example.com"),
            display_name: "Rita After".into(),
            state: ipb::UserState::Disabled as i32,
        },
    ];
    expected.sort_by_key(|person| Uuid::parse_str(&person.user_id).expect("uuid"));
    for by_person in [true, false] {
        let answer = page(true, by_person).await;
        assert_eq!(answer.contacts.len(), 4);
        assert_eq!(answer.people, expected, "by person: {by_person}");
        assert!(page(false, by_person).await.people.is_empty());
    }
}
