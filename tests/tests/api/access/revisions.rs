//! Rule T8 across services ("authority at commit"): access management's writes return their
//! revision (the cursor of their last event in WatchEvents) for the contact registry to
//! await, and AwaitContactsRevision lets a service await a registry write's revision in
//! access's projection of roles before it asks access for a change of rights.

use std::time::Duration;

use crate::access::helpers::*;
use futures::StreamExt;
use kc_access::domain::ContactRole;
use kc_access::storage::sites;
use kc_proto::access::{self as pb, event::Payload};
use kc_proto::contacts::{self as cpb};
use kc_runtime::outbox::Cursor;
use tonic::{Code, Status};
use uuid::Uuid;

/// A revision a write returned, as a cursor; panics when it is empty or not a cursor.
fn revision(what: &str, revision: &str) -> Cursor {
    assert!(!revision.is_empty(), "rule T8: {what} returns its revision");
    revision
        .parse()
        .unwrap_or_else(|_| panic!("rule T8: the revision of {what} is a cursor: {revision:?}"))
}

/// The kind of access management's event at `cursor` (read from WatchEvents).
async fn event_kind_at(s: &Suite, cursor: &str) -> &'static str {
    s.find_event(|event| {
        (event.cursor == cursor).then_some(match &event.payload {
            Some(Payload::RightsChanged(_)) => "rights changed",
            Some(Payload::AccessRequestSubmitted(_)) => "request submitted",
            Some(Payload::AccessRequestDecided(_)) => "request decided",
            _ => "other",
        })
    })
    .await
}

/// AwaitContactsRevision of `revision` by the gateway service.
async fn await_contacts(s: &Suite, revision: &str) -> Result<String, Status> {
    await_in_access(s, Followed::Contacts, s.svc(revision.to_owned())).await
}

/// The service whose revisions access management's projections follow.
#[derive(Debug, Clone, Copy)]
enum Followed {
    /// The registry's roles: `AwaitContactsRevision`.
    Contacts,
    /// Identity's users: `AwaitIdentityRevision`.
    Identity,
}

/// Awaits the revision `request` carries in access's projection of `followed`: the applied
/// revision.
async fn await_in_access(
    s: &Suite,
    followed: Followed,
    request: tonic::Request<String>,
) -> Result<String, Status> {
    let mut access = s.access();
    match followed {
        Followed::Contacts => access
            .await_contacts_revision(
                request.map(|revision| pb::AwaitContactsRevisionRequest { revision }),
            )
            .await
            .map(|r| r.into_inner().applied_revision),
        Followed::Identity => access
            .await_identity_revision(
                request.map(|revision| pb::AwaitIdentityRevisionRequest { revision }),
            )
            .await
            .map(|r| r.into_inner().applied_revision),
    }
}

// rule T8: each of the five writes the registry decides on returns the cursor of its last
// event as its revision, later than the previous write's; a write that changes nothing
// returns none.
#[tokio::test]
async fn t8_every_write_returns_the_revision_of_its_last_event() {
    let s = Suite::start().await;
    let [primary, user] = s.users(2).await.try_into().unwrap();
    let site = s.site(primary).await;
    let reporting = pb::ToolAccess {
        reporting: Re::View as i32,
        ..keep()
    };

    let set_tools = async |tools: pb::ToolAccess| {
        s.access()
            .set_tool_access(s.as_user(
                primary,
                pb::SetToolAccessRequest {
                    site_id: site.site_id.clone(),
                    user_id: user.to_string(),
                    tools: Some(tools),
                    reason: "reports for the audit".into(),
                    etag: String::new(),
                    ..Default::default()
                },
            ))
            .await
    };
    let tools_set = set_tools(reporting).await.expect("set tools").into_inner();
    let first = revision("SetToolAccess", &tools_set.revision);
    assert_eq!(
        event_kind_at(&s, &tools_set.revision).await,
        "rights changed"
    );

    // The same levels again change nothing: no event, no revision.
    let unchanged = set_tools(reporting).await.expect("set tools").into_inner();
    assert_eq!(unchanged.revision, "", "rule T8: no change, no revision");

    // rule R1: the primary is the support administrator of a site without STC.
    let support_set = s
        .access()
        .set_support_access(s.as_user(
            primary,
            pb::SetSupportAccessRequest {
                site_id: site.site_id.clone(),
                user_id: user.to_string(),
                support_level: Su::Full as i32,
                reason: "works the cases".into(),
                etag: String::new(),
                ..Default::default()
            },
        ))
        .await
        .expect("set support")
        .into_inner();
    let second = revision("SetSupportAccess", &support_set.revision);
    assert!(second > first, "{second:?} after {first:?}");
    assert_eq!(
        event_kind_at(&s, &support_set.revision).await,
        "rights changed"
    );

    let revoked = s
        .access()
        .revoke_access(s.as_user(
            primary,
            pb::RevokeAccessRequest {
                site_id: site.site_id.clone(),
                user_id: user.to_string(),
                reason: "left the project".into(),
                etag: String::new(),
            },
        ))
        .await
        .expect("revoke")
        .into_inner();
    let third = revision("RevokeAccess", &revoked.revision);
    assert!(third > second, "{third:?} after {second:?}");
    assert_eq!(event_kind_at(&s, &revoked.revision).await, "rights changed");

    let submitted = s
        .access()
        .submit_access_request(s.as_user(user, site_access(&site, reporting)))
        .await
        .expect("submit")
        .into_inner();
    let fourth = revision("SubmitAccessRequest", &submitted.revision);
    assert!(fourth > third, "{fourth:?} after {third:?}");
    assert_eq!(
        event_kind_at(&s, &submitted.revision).await,
        "request submitted"
    );

    let request_id = submitted.request.expect("request").request_id;
    let approved = s
        .approve(primary, &request_id, None, Su::Unspecified)
        .await
        .expect("approve");
    let fifth = revision("ApproveAccessRequest", &approved.revision);
    assert!(fifth > fourth, "{fifth:?} after {fourth:?}");
    // The approval appends the decision, then the grant: its revision is the grant's.
    assert_eq!(
        event_kind_at(&s, &approved.revision).await,
        "rights changed"
    );
}

// rule T8: once AwaitContactsRevision answers for a registry write's revision, access
// decides on the role that write gave: the profile shows what the role implies (T3) at
// once, without polling.
#[tokio::test]
async fn t8_awaiting_a_registry_revision_makes_its_role_visible() {
    let s = Suite::start().await;
    let [primary, secondary] = s.users(2).await.try_into().unwrap();
    let site = s.site(primary).await;
    // What T8 promises is about the registry's feed; the secondary's proof comes through
    // identity's (an unproven user's roles imply nothing, I1): `users` waits until access
    // knows it proven.

    let assigned = s
        .assign_revised(&site.site_id, secondary, Role::Secondary)
        .await;
    let awaited = revision("AssignContact", &assigned.revision);

    // At once: no polling of access before the await.
    let applied = await_contacts(&s, &assigned.revision)
        .await
        .expect("rule T8: access applies the registry's revision");
    let applied: Cursor = applied.parse().expect("applied revision is a cursor");
    assert!(applied >= awaited, "{applied:?} reached {awaited:?}");

    let profile = s.profile(&site.site_id, secondary).await;
    assert_eq!(roles(&profile), [Role::Secondary]);
    assert_eq!(
        profile.effective,
        Some(secondary_tools()),
        "rule T3: what SECONDARY implies"
    );

    // The registry's revision is the cursor of its event.
    let contact_id = assigned.contact.expect("contact").contact_id;
    assert_eq!(
        assigned.revision,
        registry_cursor_of_assignment(&s, &contact_id).await
    );
}

/// The cursor of the registry's ContactAssigned event of `contact_id`.
async fn registry_cursor_of_assignment(s: &Suite, contact_id: &str) -> String {
    let mut stream = s
        .registry()
        .watch_events(s.svc(cpb::WatchEventsRequest::default()))
        .await
        .expect("watch registry events")
        .into_inner();
    tokio::time::timeout(PATIENCE, async {
        while let Some(item) = stream.next().await {
            let event = item.expect("registry event").event.expect("event body");
            if let Some(cpb::event::Payload::ContactAssigned(assigned)) = &event.payload
                && assigned
                    .contact
                    .as_ref()
                    .is_some_and(|c| c.contact_id == contact_id)
            {
                return event.cursor;
            }
        }
        panic!("registry event stream ended");
    })
    .await
    .unwrap_or_else(|_| panic!("the registry's assignment event within {PATIENCE:?}"))
}

// rule T8: AwaitContactsRevision and AwaitIdentityRevision are for services, take only a
// cursor, and answer UNAVAILABLE (retry) when the projection has not reached the revision by
// the deadline.
#[tokio::test]
async fn t8_await_contacts_revision_refuses_and_times_out() {
    let s = Suite::start().await;
    let email = format!("c-{}@example.com", Uuid::new_v4().simple());
    s.register(&email).await;
    let customer = s.customer_token(&email).await;

    for followed in [Followed::Contacts, Followed::Identity] {
        expect_field(
            await_in_access(&s, followed, s.svc("not-a-cursor".to_owned())).await,
            "revision",
        );
        for (who, token) in [
            ("a customer", &customer),
            ("an operator", &s.operator_token),
        ] {
            let refused = expect_code(
                await_in_access(&s, followed, authed(token, String::new())).await,
                Code::PermissionDenied,
            );
            assert!(
                refused.message().contains("for services"),
                "{followed:?}, {who}: {refused:?}"
            );
        }

        let mut far = s.svc("7fffffffffffffff0000000000000001".to_owned());
        far.set_timeout(Duration::from_secs(1));
        let behind = expect_code(await_in_access(&s, followed, far).await, Code::Unavailable);
        assert!(cites(behind.message(), "T8"), "{followed:?}: {behind:?}");
    }
}

// rule T8 inside access: a write's site lock serializes with the projection's apply of a
// registry event (which upserts, so locks, the site row first); once the write holds the
// lock it decides on the roles that apply committed, including the site's facts read with
// the site (here: whether it has a site technical contact, U5/R1).
#[tokio::test]
async fn t8_the_site_lock_sees_the_roles_of_the_apply_it_waited_for() {
    let s = Suite::start().await;
    let [primary, stc] = s.users(2).await.try_into().unwrap();
    let site = s.site(primary).await;
    let site_id = uuid(&site.site_id);
    let pool = s.access_pool().await;

    // An apply of a registry event giving the site an STC, not committed yet.
    let mut apply = pool.begin().await.expect("apply transaction");
    sites::upsert(
        &mut apply,
        &sites::ProjectedSite {
            site_id,
            site_number: &site.site_number,
            customer_number: &site.customer_number,
            admin_may_manage_access: site.admin_may_manage_access,
        },
    )
    .await
    .expect("upsert the site");
    sites::add_role(&mut apply, site_id, stc, ContactRole::SiteTechnical)
        .await
        .expect("add the STC");

    // A write locks the site meanwhile: it waits for the apply.
    let mut write = pool.acquire().await.expect("write connection");
    let write_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut *write)
        .await
        .expect("backend pid");
    let locking = tokio::spawn(async move {
        let mut tx = sqlx::Connection::begin(&mut *write)
            .await
            .expect("write transaction");
        let locked = sites::lock(&mut tx, site_id).await.expect("lock the site");
        tx.rollback().await.expect("roll back");
        locked
    });
    wait_for_lock_wait(&pool, "the write waits for the site lock", Some(write_pid)).await;
    apply.commit().await.expect("commit the apply");

    let locked = locking
        .await
        .expect("the write task")
        .expect("the site exists");
    assert!(
        locked.facts.has_site_technical,
        "rule T8: the write decides on the STC the apply it waited for committed"
    );
}

// The projection keeps the number a site was first projected with (migration 0007): every
// row of the permission feed carries it, so an event that named another number must not
// make the lookups disagree with the feed. The upsert of such an event keeps the first.
#[tokio::test]
async fn a_projected_site_keeps_its_first_number() {
    let s = Suite::start().await;
    let [primary] = s.users(1).await.try_into().unwrap();
    let site = s.site(primary).await;
    let site_id = uuid(&site.site_id);
    let pool = s.access_pool().await;

    let mut conn = pool.acquire().await.expect("connection");
    sites::upsert(
        &mut conn,
        &sites::ProjectedSite {
            site_id,
            site_number: "9999999",
            customer_number: &site.customer_number,
            admin_may_manage_access: !site.admin_may_manage_access,
        },
    )
    .await
    .expect("upsert the site with another number");
    let (number, c3): (String, bool) =
        sqlx::query_as("SELECT site_number, admin_may_manage_access FROM sites WHERE site_id = $1")
            .bind(site_id)
            .fetch_one(&mut *conn)
            .await
            .expect("the projected site");
    assert_eq!(number, site.site_number, "the first number is kept");
    assert_eq!(
        c3, !site.admin_may_manage_access,
        "the site's facts still follow"
    );
}
