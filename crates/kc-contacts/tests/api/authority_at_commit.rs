//! The registry decides the authority of the person a write is made for in the write's own
//! transaction (T6, T8), from its own roles and its projection of access management's
//! explicit grants; nothing the gateway checked earlier is trusted. These tests call the
//! registry the way the gateway does (a service naming the person in `x-kc-on-behalf-of`),
//! with no gateway in front: the rules hold in the service that owns the write.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::helpers::*;
use kc_proto::access as access_pb;
use kc_proto::contacts::{self as pb, ContactRole as R};
use tonic::Code;
use uuid::Uuid;

fn assign(site_id: &str, user: Uuid, role: R) -> pb::AssignContactRequest {
    pb::AssignContactRequest {
        site_id: site_id.into(),
        user_id: user.to_string(),
        role: role as i32,
        details: None,
    }
}

// rule T8: without a grant (and no role) a person changes no contact; with contact updates
// UPDATE it assigns roles that imply nothing, but not one that implies rights it cannot
// grant (T6: SECONDARY needs manage access UPDATE too); and once the grant is revoked
// (projected NONE), it changes nothing again. Refusals change nothing.
#[tokio::test]
async fn a_person_acts_only_on_the_authority_the_registry_holds_when_the_write_commits() {
    let h = Harness::start().await;
    let (primary, person) = (user(), user());
    let site = h.site("1000001", "2000001", primary).await;
    let mut client = h.client();
    let before = h.contacts(&site.site_id, &[]).await;

    let refused = expect_rule(
        client
            .assign_contact(h.for_user(person, assign(&site.site_id, user(), R::Billing)))
            .await,
        Code::PermissionDenied,
        "T8",
    );
    assert!(refused.message().contains("CONTACTS_UPDATE"), "{refused:?}");
    assert_eq!(
        h.contacts(&site.site_id, &[]).await,
        before,
        "nothing changed"
    );

    h.grant_contact_updates(&site.site_id, person).await;
    client
        .assign_contact(h.for_user(person, assign(&site.site_id, user(), R::Billing)))
        .await
        .expect("contact updates UPDATE assigns BILLING");
    let refused = expect_rule(
        client
            .assign_contact(h.for_user(person, assign(&site.site_id, user(), R::Secondary)))
            .await,
        Code::PermissionDenied,
        "T6",
    );
    assert!(refused.message().contains("ACCESS_UPDATE"), "{refused:?}");

    // Revoked: access publishes the grants after the change, all NONE.
    h.grant(&site.site_id, person, access_pb::ToolAccess::default())
        .await;
    let after_grant = h.contacts(&site.site_id, &[]).await;
    expect_rule(
        client
            .assign_contact(h.for_user(person, assign(&site.site_id, user(), R::Billing)))
            .await,
        Code::PermissionDenied,
        "T8",
    );
    assert_eq!(h.contacts(&site.site_id, &[]).await, after_grant);

    // The primary holds every tool by its role (T3): no grant needed.
    client
        .assign_contact(h.for_user(primary, assign(&site.site_id, user(), R::Secondary)))
        .await
        .expect("the primary names a secondary contact");
}

// rule T8: twenty writers assign contacts for a person while its contact-updates grant is
// revoked. The revocation's apply takes the site's lock like the writes do: while it is
// held (kept open here on purpose, as a slow apply would be) no write commits, and once it
// has committed no write commits on the revoked grant. So the contacts counted while the
// apply holds the lock are all there will ever be, and every writer ends refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_assignment_commits_after_the_revocation_of_the_right_it_needs() {
    const WRITERS: usize = 20;
    let h = Arc::new(Harness::start().await);
    let (primary, person) = (user(), user());
    let site = h.site("1000001", "2000001", primary).await;
    h.grant_contact_updates(&site.site_id, person).await;
    let initial = h.contacts(&site.site_id, &[]).await.len();

    let committed = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..WRITERS)
        .map(|_| {
            let (h, committed, site_id) = (h.clone(), committed.clone(), site.site_id.clone());
            tokio::spawn(async move {
                let mut client = h.client();
                loop {
                    let request = h.for_user(person, assign(&site_id, user(), R::SiteUser));
                    match client.assign_contact(request).await {
                        Ok(_) => {
                            committed.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(status) => return status,
                    }
                }
            })
        })
        .collect();

    // Revoke once the writers are well under way, exactly as the projection's consumer
    // applies the event, and hold the transaction open a while before committing.
    wait_until("writers have committed assignments", || {
        let committed = committed.clone();
        async move { committed.load(Ordering::SeqCst) >= WRITERS }
    })
    .await;
    let pool = h.pool().await;
    let mut revocation = pool.begin().await.expect("transaction");
    kc_contacts::followers::apply_access_event(
        &mut revocation,
        &rights_changed(&site.site_id, person, access_pb::ToolAccess::default()),
    )
    .await
    .expect("revocation applied");
    // Counted straight from the table: while the apply holds the site, the writers hold
    // the registry's connections, waiting for it.
    let count = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM contacts WHERE site_id = $1::uuid")
            .bind(&site.site_id)
            .fetch_one(&pool)
            .await
            .expect("count")
    };
    let while_applying = count().await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    revocation.commit().await.expect("revocation committed");

    for writer in writers {
        let status = writer.await.expect("the writer does not panic");
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        assert!(cites(status.message(), "T8"), "{status:?}");
    }
    let at_end = count().await;
    assert_eq!(
        at_end, while_applying,
        "rule T8: no assignment committed while or after the revocation was applied"
    );
    assert_eq!(
        usize::try_from(at_end).expect("a count") - initial,
        committed.load(Ordering::SeqCst)
    );
}

// rule T6 at commit: a person whose only authority is a grant names a SITE_TECHNICAL
// contact only while it holds account management; the registry reads the grant under the
// site's lock, in the write's transaction.
#[tokio::test]
async fn naming_a_role_that_implies_rights_needs_the_authority_to_grant_them_at_commit() {
    let h = Harness::start().await;
    let (primary, holder) = (user(), user());
    let site = h.site("1000001", "2000001", primary).await;
    let mut client = h.client();
    let replace = |to: Uuid| pb::ReplaceContactRequest {
        site_id: site.site_id.clone(),
        role: R::SiteTechnical as i32,
        new_user_id: to.to_string(),
        details: None,
    };
    h.grant_contact_updates(&site.site_id, holder).await;
    let refused = expect_rule(
        client
            .replace_contact(h.for_user(holder, replace(user())))
            .await,
        Code::PermissionDenied,
        "T6",
    );
    assert!(
        refused.message().contains("ACCOUNT_MANAGEMENT"),
        "{refused:?}"
    );
    h.grant_all(&site.site_id, holder).await;
    client
        .replace_contact(h.for_user(holder, replace(user())))
        .await
        .expect("an account-management holder names the STC");
}
