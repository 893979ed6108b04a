//! The gateway's read cache (`--read-cache-ttl`, `kc_gateway::cache`), seen through the
//! gateway: answers are served again to the same caller only, a write through the gateway
//! is read back at once and forgets only the answers about what it touches, a denial is never kept, a change is always checked afresh, and a
//! change made elsewhere (through another gateway replica) is seen by reads once the entry
//! expires, or sooner when a hot answer is read again in the background before it expires.
//!
//! The suite's gateway keeps answers for a minute, so what it serves from the cache is
//! told apart from what it asks again without timing anything.

use crate::gateway::helpers::*;
use kc_proto::access::{self as apb};
use kc_proto::contacts::{self as cpb};
use kc_proto::gateway::{self as gw};
use kc_testkit::metrics::{sample, scrape};
use tonic::{Code, Status};

/// The suite's cache TTL: longer than any test, so a kept answer stays kept.
const LONG_TTL: [&str; 4] = ["--session-rate-limit", "off", "--read-cache-ttl", "60s"];

/// `ShowAllContacts` of the site as `person`, through the gateway on `channel`.
async fn show_all(
    channel: &tonic::transport::Channel,
    person: &Person,
    site: &cpb::Site,
) -> Result<Vec<gw::ContactView>, Status> {
    gw::gateway_service_client::GatewayServiceClient::new(channel.clone())
        .show_all_contacts(authed(
            Some(&person.token),
            gw::ShowAllContactsRequest {
                site_id: site.site_id.clone(),
                ..Default::default()
            },
        ))
        .await
        .map(|response| response.into_inner().contacts)
}

/// `primary` revokes `reader`'s explicit rights on the site through the gateway on `channel`.
async fn revoke(
    channel: &tonic::transport::Channel,
    primary: &Person,
    reader: &Person,
    site: &cpb::Site,
) {
    gw::gateway_service_client::GatewayServiceClient::new(channel.clone())
        .revoke_access(authed(
            Some(&primary.token),
            gw::RevokeAccessRequest {
                site_id: site.site_id.clone(),
                user_id: reader.id.clone(),
                reason: "test: revoked".into(),
                etag: String::new(),
            },
        ))
        .await
        .expect("the primary revokes the reader's rights");
}

/// A suite, a site with its primary, and a second person granted `explicit` on it.
async fn granted_site(explicit: apb::ToolAccess) -> (Suite, Person, Person, cpb::Site) {
    let suite = Suite::start_with(&LONG_TTL).await;
    let primary = suite.person("Paula Primary").await;
    let grantee = suite.person("Gabriel Grantee").await;
    let site = suite.create_site_applied("Acme Lyon", &primary, None).await;
    suite.grant(&site.site_id, &grantee.id, explicit).await;
    (suite, primary, grantee, site)
}

/// `person` made a SECONDARY of `site` elsewhere than through a gateway (straight at the
/// registry, as another replica's write would be), once access management applied it.
async fn secondary_assigned_elsewhere(suite: &Suite, site: &cpb::Site, person: &Person) {
    suite
        .registry()
        .assign_contact(authed(
            Some(&suite.operator.token),
            cpb::AssignContactRequest {
                site_id: site.site_id.clone(),
                user_id: person.id.clone(),
                role: Role::Secondary as i32,
                details: None,
            },
        ))
        .await
        .expect("the registry assigns a secondary");
    suite
        .wait_role(&site.site_id, &person.id, Role::Secondary)
        .await;
}

fn user_ids(views: &[gw::ContactView]) -> Vec<&str> {
    views.iter().map(|view| view.user_id.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_are_kept_per_caller_and_a_write_through_the_gateway_is_read_back_at_once() {
    let (mut suite, primary, viewer, site) = granted_site(tools(|t| {
        t.contact_updates = apb::ContactUpdatesAccess::View as i32
    }))
    .await;
    let newcomer = suite.person("Nina Newcomer").await;
    let channel = suite.gateway_channel.clone();

    let first = show_all(&channel, &primary, &site)
        .await
        .expect("the primary sees the contacts");
    assert_eq!(user_ids(&first), [primary.id.as_str()]);
    show_all(&channel, &suite.operator, &site)
        .await
        .expect("the operator sees the contacts");

    // With the registry down, the same call is answered from the cache (the permission
    // check, the registry's list and identity's users were all kept)...
    suite.stop_internal(Internal::Contacts).await;
    let kept = show_all(&channel, &primary, &site)
        .await
        .expect("the primary's answer is served again while the registry is down");
    assert_eq!(kept, first);
    // ...but only to the primary: another reader of the site, allowed by access
    // management, needs the registry for its own answer, and so does the operator (whose
    // calls are never cached).
    for (who, person) in [("the viewer", &viewer), ("the operator", &suite.operator)] {
        let status = show_all(&channel, person, &site)
            .await
            .expect_err("no answer kept for the primary is served to another caller");
        assert_eq!(status.code(), Code::Unavailable, "{who}: {status:?}");
    }
    suite.start_internal(Internal::Contacts).await;

    // A write through the gateway empties the cache: the next read shows it.
    suite
        .assign(&site.site_id, &newcomer, Role::Secondary)
        .await;
    let after = show_all(&channel, &primary, &site)
        .await
        .expect("the primary sees the contacts");
    let mut ids = user_ids(&after);
    ids.sort_unstable();
    let mut expected = [primary.id.as_str(), newcomer.id.as_str()];
    expected.sort_unstable();
    assert_eq!(ids, expected, "the new secondary is read back at once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denial_is_never_kept_and_a_revocation_through_this_gateway_applies_at_once() {
    let suite = Suite::start_with(&LONG_TTL).await;
    let primary = suite.person("Paula Primary").await;
    let reader = suite.person("Rita Reader").await;
    let site = suite.create_site_applied("Acme Lyon", &primary, None).await;
    let channel = suite.gateway_channel.clone();
    let (other_replica, other_channel) = suite.another_gateway(&LONG_TTL).await;

    let denied = show_all(&channel, &reader, &site)
        .await
        .expect_err("no right yet");
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");

    // CONTACTS_VIEW granted through another replica: the refusal was not kept, so this
    // replica lets the reader in at once.
    gw::gateway_service_client::GatewayServiceClient::new(other_channel.clone())
        .set_tool_access(authed(
            Some(&suite.operator.token),
            gw::SetToolAccessRequest {
                site_id: site.site_id.clone(),
                user_id: reader.id.clone(),
                tools: Some(tools(|t| {
                    t.contact_updates = apb::ContactUpdatesAccess::View as i32
                })),
                reason: "test: a grant through another replica".into(),
                etag: String::new(),
                ..Default::default()
            },
        ))
        .await
        .expect("the operator grants CONTACTS_VIEW");
    show_all(&channel, &reader, &site)
        .await
        .expect("a grant made elsewhere works at once");

    // Revoked through this replica: refused at once, although the permission was kept.
    revoke(&suite.gateway_channel, &primary, &reader, &site).await;
    let status = show_all(&channel, &reader, &site)
        .await
        .expect_err("revoked");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    drop(other_replica);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_made_elsewhere_is_seen_once_the_answer_expires() {
    let (suite, primary, reader, site) = granted_site(tools(|t| {
        t.contact_updates = apb::ContactUpdatesAccess::View as i32
    }))
    .await;
    // A replica keeping answers for one second, the production default.
    let (short_replica, short_channel) = suite.another_gateway(&["--read-cache-ttl", "1s"]).await;
    show_all(&short_channel, &reader, &site)
        .await
        .expect("the reader sees the contacts");

    // Revoked through the suite's gateway: the short replica may answer from its cache for
    // up to its TTL, and must refuse once that has passed.
    revoke(&suite.gateway_channel, &primary, &reader, &site).await;
    eventually("the other replica refuses the revoked reader", || async {
        match show_all(&short_channel, &reader, &site).await {
            Err(status) if status.code() == Code::PermissionDenied => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    drop(short_replica);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_is_checked_afresh_even_when_a_read_kept_the_same_permission() {
    let (suite, primary, manager, site) = granted_site(tools(|t| {
        t.account_management = apb::AccountManagementAccess::Granted as i32
    }))
    .await;
    let mut gateway = suite.gw();
    let notifications = |token: &str| {
        authed(
            Some(token),
            gw::ListSiteNotificationsRequest {
                site_id: site.site_id.clone(),
                ..Default::default()
            },
        )
    };
    // ListSiteNotifications and UpdateSite both need ACCOUNT_MANAGEMENT on the site.
    gateway
        .list_site_notifications(notifications(&manager.token))
        .await
        .expect("the manager reads the site's notifications");

    let (other_replica, other_channel) = suite.another_gateway(&LONG_TTL).await;
    revoke(&other_channel, &primary, &manager, &site).await;

    // This replica may still answer the read from its cache, for up to its TTL...
    gateway
        .list_site_notifications(notifications(&manager.token))
        .await
        .expect("the read's permission was kept");
    // ...but a change asks access management again, and is refused.
    let status = gateway
        .update_site(authed(
            Some(&manager.token),
            gw::UpdateSiteRequest {
                site: Some(cpb::Site {
                    site_id: site.site_id.clone(),
                    name: "Acme Lyon (renamed)".into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["name".into()],
                }),
                etag: String::new(),
            },
        ))
        .await
        .expect_err("the manager's right was revoked");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let unchanged = suite.site_now(&site.site_id).await;
    assert_eq!(unchanged.name, "Acme Lyon");
    drop(other_replica);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_forgets_the_answers_about_what_it_touches_and_keeps_the_others() {
    let suite = Suite::start_with(&LONG_TTL).await;
    let primary = suite.person("Paula Primary").await;
    let newcomer = suite.person("Nina Newcomer").await;
    let unseen = suite.person("Ulysse Unseen").await;
    let lyon = suite.create_site("Acme Lyon", &primary, None).await;
    let nantes = suite.create_site("Acme Nantes", &primary, None).await;
    for site in [&lyon, &nantes] {
        suite
            .wait_role(&site.site_id, &primary.id, Role::Primary)
            .await;
    }
    let channel = suite.gateway_channel.clone();
    let nantes_kept = show_all(&channel, &primary, &nantes)
        .await
        .expect("the primary sees Nantes");
    show_all(&channel, &primary, &lyon)
        .await
        .expect("the primary sees Lyon");

    // A change of Nantes made elsewhere: this gateway keeps its answer about Nantes for its
    // TTL...
    secondary_assigned_elsewhere(&suite, &nantes, &unseen).await;
    assert_eq!(
        show_all(&channel, &primary, &nantes).await.expect("Nantes"),
        nantes_kept,
        "the answer about Nantes is kept"
    );

    // ...and a write through this gateway on Lyon forgets what it touched (Lyon, read back
    // at once) but not the answers about Nantes, which it does not mention.
    suite
        .assign(&lyon.site_id, &newcomer, Role::Secondary)
        .await;
    let lyon_after = show_all(&channel, &primary, &lyon).await.expect("Lyon");
    assert!(
        user_ids(&lyon_after).contains(&newcomer.id.as_str()),
        "the write on Lyon is read back at once: {lyon_after:?}"
    );
    assert_eq!(
        show_all(&channel, &primary, &nantes).await.expect("Nantes"),
        nantes_kept,
        "a write on Lyon leaves the answer about Nantes kept"
    );

    // A write through this gateway on Nantes forgets it: the change made elsewhere shows.
    suite
        .assign(&nantes.site_id, &newcomer, Role::Renewal)
        .await;
    let nantes_after = show_all(&channel, &primary, &nantes).await.expect("Nantes");
    for person in [&unseen, &newcomer] {
        assert!(
            user_ids(&nantes_after).contains(&person.id.as_str()),
            "{} is read after a write on Nantes: {nantes_after:?}",
            person.name
        );
    }
}

/// The downstream reads of `ShowAllContacts` the read cache keeps: the admission's check
/// and the registry's page.
const SHOW_ALL_READS: [&str; 2] = [
    "AccessManagementServiceClient/batch_check",
    "ContactRegistryServiceClient/list_site_contacts",
];

/// The read cache's counts of `name` (`..._misses_total`, `..._refreshes_total`) for each
/// of [`SHOW_ALL_READS`], in the gateway's metrics at `addr`.
async fn show_all_reads(addr: std::net::SocketAddr, name: &str) -> [f64; 2] {
    let text = scrape(addr).await;
    SHOW_ALL_READS.map(|method| sample(&text, name, &[("method", method)]).unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_answer_is_read_again_in_the_background_so_no_caller_waits_for_its_refill() {
    let suite = Suite::start_with(&LONG_TTL).await;
    let primary = suite.person("Paula Primary").await;
    let unseen = suite.person("Ulysse Unseen").await;
    let site = suite
        .create_site_applied("Acme Nantes", &primary, None)
        .await;
    // Twelve seconds: the background read is sent at 85 to 95 % of an answer's life, so it
    // has at least 600 ms to come back before the answer expires, even on a busy machine.
    let (replica, channel, metrics_addr) = suite
        .another_gateway_with_metrics(&["--read-cache-ttl", "12s"])
        .await;
    let first = show_all(&channel, &primary, &site)
        .await
        .expect("the primary sees the contacts");
    assert_eq!(user_ids(&first), [primary.id.as_str()]);
    const MISSES: &str = "keycontacts_gateway_read_cache_misses_total";
    const REFRESHES: &str = "keycontacts_gateway_read_cache_refreshes_total";
    let missed = show_all_reads(metrics_addr, MISSES).await;
    assert_eq!(
        missed,
        [1.0, 1.0],
        "the first read asked access and the registry"
    );

    secondary_assigned_elsewhere(&suite, &site, &unseen).await;

    // The primary keeps reading (every 20 ms): late in the kept answers' life, one of its
    // reads sends access's check and the registry's read again in the background, and the
    // change shows without any read of the primary missing the cache.
    eventually(
        "both kept answers are read again and the change shows",
        || async {
            let views = show_all(&channel, &primary, &site)
                .await
                .map_err(|status| format!("{status:?}"))?;
            let refreshed = show_all_reads(metrics_addr, REFRESHES).await;
            if user_ids(&views).contains(&unseen.id.as_str()) && refreshed.iter().all(|n| *n >= 1.0)
            {
                Ok(())
            } else {
                Err(format!("refreshes {refreshed:?}, views {views:?}"))
            }
        },
    )
    .await;
    assert_eq!(
        show_all_reads(metrics_addr, MISSES).await,
        missed,
        "no read of the primary waited for access or the registry again"
    );
    drop(replica);
}
