//! `AuthorizationService.WatchPermissions` (issue 15) through the gateway, with a service
//! account holding the scope `authz`: a story of changes (a grant, a role assigned, the C3
//! switch, a primary transfer, a user disabled, a grant's end) gives each change of an effective permission
//! exactly once, in commit order, with its reason and rule; a stream cut in the middle
//! resumes from its last cursor without a duplicate or a gap; `site_ids` narrows the stream;
//! everyone but a service account with `authz` is refused.

use std::collections::BTreeSet;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::access::helpers::ALL_PERMISSIONS as ALL;
use crate::gateway::authorization_service::{ask, check};
use crate::gateway::helpers::*;
use futures::FutureExt;
use kc_proto::access::{self as apb, Permission as P};
use kc_proto::gateway::authorization_service_client::AuthorizationServiceClient;
use kc_proto::gateway::{self as gw};
use tonic::transport::Channel;
use tonic::{Code, Streaming};

type Authz = AuthorizationServiceClient<Channel>;
type Changes = Streaming<gw::WatchPermissionsResponse>;

/// What the primary of a site without a site technical contact holds, with the rule that
/// gives it: every tool (T3) and support ADMINISTRATOR in the STC's stead (R1).
fn primary_rule(permission: P) -> &'static str {
    match permission {
        P::SupportOwnCases | P::SupportSiteCases | P::SupportAdmin | P::ApproveSupportAccess => {
            "R1"
        }
        _ => "T3",
    }
}

/// A change as the assertions compare it: user, permission, allowed now, rule.
type Change = (String, i32, bool, String);

fn change(user: &str, permission: P, allowed: bool, rule: &str) -> Change {
    (user.to_owned(), permission as i32, allowed, rule.to_owned())
}

fn key(message: &gw::WatchPermissionsResponse) -> Change {
    (
        message.user_id.clone(),
        message.permission,
        message.allowed,
        message.rule.clone(),
    )
}

/// The changes of one step, in the order the feed gives the changes of one transaction:
/// by user, then permission.
fn sorted(mut changes: Vec<Change>) -> Vec<Change> {
    changes.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    changes
}

/// Opens `WatchPermissions` as `token`.
async fn watch(
    client: &Authz,
    token: &str,
    after_cursor: &str,
    site_ids: &[&str],
) -> Result<Changes, tonic::Status> {
    client
        .clone()
        .watch_permissions(authed(
            Some(token),
            gw::WatchPermissionsRequest {
                after_cursor: after_cursor.into(),
                site_ids: site_ids.iter().map(|id| (*id).to_owned()).collect(),
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

/// The next `n` changes of `stream`, each awaited at most [`PATIENCE`].
async fn next(stream: &mut Changes, n: usize) -> Vec<gw::WatchPermissionsResponse> {
    let mut received = Vec::with_capacity(n);
    while received.len() < n {
        let message = tokio::time::timeout(PATIENCE, stream.message())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{} of {n} changes arrived in time: {received:#?}",
                    received.len()
                )
            })
            .expect("the stream goes on")
            .expect("the stream is open");
        received.push(message);
    }
    received
}

/// The next changes of one step: as many as `expected`, which they must be.
async fn step(
    stream: &mut Changes,
    what: &str,
    expected: Vec<Change>,
) -> Vec<gw::WatchPermissionsResponse> {
    let received = next(stream, expected.len()).await;
    let got: Vec<Change> = received.iter().map(key).collect();
    assert_eq!(sorted(got), sorted(expected), "{what}");
    received
}

/// Makes sure access management's projection of identity holds `people` as proven: a grant
/// to each on a site of their own is refused until it does (rule I1). Their permissions on
/// that site are not part of the story.
async fn known_to_access(suite: &Suite, people: &[&Person]) {
    let owner = suite.person("Feed Warmup Owner").await;
    let site = suite
        .create_site_applied("Feed warm-up", &owner, None)
        .await;
    for person in people {
        suite
            .grant(
                &site.site_id,
                &person.id,
                tools(|t| t.reporting = apb::ReportingAccess::View as i32),
            )
            .await;
    }
}

/// `person`'s primary role is transferred to `to` by the operator.
async fn transfer(suite: &Suite, site_id: &str, to: &Person) {
    suite
        .gw()
        .transfer_primary_contact(authed(
            Some(&suite.operator.token),
            gw::TransferPrimaryContactRequest {
                site_id: site_id.into(),
                email: to.email.clone(),
                display_name: None,
                etag: String::new(),
                previous_primary_role: 0,
                locale: String::new(),
            },
        ))
        .await
        .expect("the operator transfers the primary role");
}

/// Whether the cursors of `changes` strictly increase (they are fixed-width hex: text order
/// is stream order).
fn strictly_increasing(changes: &[gw::WatchPermissionsResponse]) -> bool {
    changes
        .windows(2)
        .all(|pair| pair[0].cursor < pair[1].cursor)
}

// rules T1, T3, R1, C3, C8, I4, T9: every change of an effective permission exactly once, in
// commit order, with the reason and rule that decide it now; a cut stream resumes from its
// last cursor with no duplicate and no gap.
#[tokio::test]
async fn a_story_gives_each_change_once_in_order_and_resumes_from_a_cursor() {
    // Access management sweeps every 200 ms, so that a grant ends within the test (T9).
    let suite = Suite::start_with_access(&["--sweep-interval", "200ms"]).await;
    let paula = suite.person("Paula Primary").await;
    let member = suite.person("Mia Member").await;
    let admin = suite.person("Adam Admin").await;
    known_to_access(&suite, &[&paula, &member, &admin]).await;
    let (_, token) = suite
        .scoped_service_account("kc-feed-portal", &["authz"])
        .await;
    let client = AuthorizationServiceClient::new(suite.gateway_channel.clone());

    // The site: its primary holds every permission (T3), support in the STC's stead (R1).
    let site = suite.create_site("Feed story site", &paula, None).await;
    let site_id = site.site_id.as_str();
    let mut stream = watch(&client, &token, "", &[site_id]).await.expect("watch");
    let created = step(
        &mut stream,
        "the site is created with its primary",
        ALL.iter()
            .map(|p| change(&paula.id, *p, true, primary_rule(*p)))
            .collect(),
    )
    .await;
    let download = created
        .iter()
        .find(|c| c.permission == P::SoftwareDownload as i32)
        .expect("the primary may download");
    assert_eq!(download.reason, "implied by PRIMARY (T3)");
    assert_eq!(download.site_id, site_id);
    assert_eq!(download.site_number, site.site_number);
    assert!(download.changed_at.is_some() && !download.cursor.is_empty());

    // A grant (T1).
    suite
        .grant(
            site_id,
            &member.id,
            tools(|t| t.software = apb::SoftwareAccess::DownloadsOnly as i32),
        )
        .await;
    let granted = step(
        &mut stream,
        "a grant",
        vec![change(&member.id, P::SoftwareDownload, true, "T1")],
    )
    .await;
    assert_eq!(
        granted[0].reason,
        "explicit grant: software DOWNLOADS_ONLY >= DOWNLOADS_ONLY"
    );

    // A role assigned: ADMINISTRATIVE implies account documents VIEW (T3).
    suite.assign(site_id, &admin, Role::Administrative).await;
    let assigned = step(
        &mut stream,
        "the administrative contact is named",
        vec![change(&admin.id, P::DocumentsView, true, "T3")],
    )
    .await;
    assert_eq!(assigned[0].reason, "implied by ADMINISTRATIVE (T3)");

    // The C3 switch on: the administrative contact manages access (T3).
    suite.switch_admin_on(site_id).await;
    let switched = step(
        &mut stream,
        "the C3 switch is turned on",
        [P::AccessView, P::AccessUpdate, P::ApproveSiteAccess]
            .iter()
            .map(|p| change(&admin.id, *p, true, "T3"))
            .collect(),
    )
    .await;
    let first: Vec<gw::WatchPermissionsResponse> = [created, granted, assigned, switched].concat();
    // The stream is cut here.
    drop(stream);

    // While nobody listens: the primary role moves to the administrative contact (C8),
    // who gains what it did not hold while the old primary, now a site user, loses it all;
    // then identity disables the new primary (I4).
    transfer(&suite, site_id, &admin).await;
    suite
        .identity()
        .disable_user(authed(
            Some(&suite.operator.token),
            kc_proto::identity::DisableUserRequest {
                user_id: admin.id.clone(),
            },
        ))
        .await
        .expect("the operator disables the new primary");

    let cut_at = first.last().expect("changes before the cut").cursor.clone();
    let mut resumed = watch(&client, &token, &cut_at, &[site_id])
        .await
        .expect("resume");
    let held_before: BTreeSet<i32> = [
        P::DocumentsView,
        P::AccessView,
        P::AccessUpdate,
        P::ApproveSiteAccess,
    ]
    .iter()
    .map(|p| *p as i32)
    .collect();
    let mut moved: Vec<Change> = ALL
        .iter()
        .filter(|p| !held_before.contains(&(**p as i32)))
        .map(|p| change(&admin.id, *p, true, primary_rule(*p)))
        .collect();
    moved.extend(ALL.iter().map(|p| change(&paula.id, *p, false, "T3")));
    let transferred = step(&mut resumed, "the primary role is transferred", moved).await;
    let lost = transferred
        .iter()
        .find(|c| c.user_id == paula.id && c.permission == P::AccountManagement as i32)
        .expect("the old primary loses account management");
    assert!(
        lost.reason
            .starts_with("no grant: account management NONE < GRANTED"),
        "{lost:?}"
    );
    let disabled = step(
        &mut resumed,
        "the new primary is disabled",
        ALL.iter()
            .map(|p| change(&admin.id, *p, false, "I1, I4"))
            .collect(),
    )
    .await;
    assert!(
        disabled.iter().all(|c| c.reason
            == "user disabled or address not proven (I1, I4): every permission is denied")
    );

    // A grant's end (T9): the member's downloads end in a few seconds, and the sweeper
    // removes the grant at its end. Setting the end changes no permission yet.
    let end = prost_types::Timestamp {
        seconds: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after the epoch")
            .as_secs() as i64
            + 3,
        nanos: 0,
    };
    suite
        .gw()
        .set_tool_access(authed(
            Some(&suite.operator.token),
            gw::SetToolAccessRequest {
                site_id: site_id.into(),
                user_id: member.id.clone(),
                tools: Some(tools(|t| {
                    t.software = apb::SoftwareAccess::DownloadsOnly as i32;
                })),
                reason: "until the migration is done".into(),
                etag: String::new(),
                valid_until: Some(end),
                without_end: false,
                valid_from: None,
            },
        ))
        .await
        .expect("the operator gives the member's grant an end");
    let ended = step(
        &mut resumed,
        "the member's grant reaches its end",
        vec![change(&member.id, P::SoftwareDownload, false, "T3")],
    )
    .await;
    assert_eq!(ended[0].reason, "no grant: software NONE < DOWNLOADS_ONLY");

    // Nothing else came in between: the next changes are those of the next grant.
    suite
        .grant(
            site_id,
            &member.id,
            tools(|t| {
                t.software = apb::SoftwareAccess::DownloadsOnly as i32;
                t.reporting = apb::ReportingAccess::View as i32;
            }),
        )
        .await;
    let last = step(
        &mut resumed,
        "the next grant",
        vec![
            change(&member.id, P::SoftwareDownload, true, "T1"),
            change(&member.id, P::ReportsView, true, "T1"),
        ],
    )
    .await;

    // The cut stream and its resumption are the uninterrupted stream: no duplicate, no gap,
    // in commit order.
    let pieces: Vec<gw::WatchPermissionsResponse> =
        [first, transferred, disabled, ended, last].concat();
    assert!(strictly_increasing(&pieces), "{pieces:#?}");
    let mut whole = watch(&client, &token, "", &[site_id])
        .await
        .expect("watch from the start");
    let again = next(&mut whole, pieces.len()).await;
    assert_eq!(again, pieces);
}

/// The effective permissions a `WatchPermissions` stream says hold, folded from its changes:
/// fails the test when a change repeats what the stream already said of its (user, site,
/// permission) (a change published twice), or when the first change of one is a denial.
#[derive(Default)]
struct Fold {
    allowed: BTreeSet<(String, String, i32)>,
    seen: BTreeSet<(String, String, i32)>,
}

impl Fold {
    fn apply(&mut self, change: &gw::WatchPermissionsResponse) {
        let key = (
            change.site_id.clone(),
            change.user_id.clone(),
            change.permission,
        );
        let first = self.seen.insert(key.clone());
        assert!(
            !first || change.allowed,
            "a permission never allowed is denied: {change:?}"
        );
        let changed = if change.allowed {
            self.allowed.insert(key)
        } else {
            self.allowed.remove(&key)
        };
        assert!(changed, "a change repeats the previous one: {change:?}");
    }
}

/// What the `authz` service account's `BatchCheck` allows of every permission of `users` on
/// `sites`, read from access management's database (with a revision token).
async fn checked(
    client: &Authz,
    token: &str,
    revision: &str,
    sites: &[&str],
    users: &[&str],
) -> Result<BTreeSet<(String, String, i32)>, String> {
    let mut keys = Vec::new();
    for site in sites {
        for user in users {
            for permission in ALL {
                keys.push(((*site).to_owned(), (*user).to_owned(), permission as i32));
            }
        }
    }
    let mut allowed = BTreeSet::new();
    for chunk in keys.chunks(100) {
        let items = chunk
            .iter()
            .map(|(site, user, permission)| gw::CheckRequest {
                user_id: user.clone(),
                site_id: site.clone(),
                permission: *permission,
                consistency: Some(gw::Consistency {
                    at_least_as_fresh: revision.to_owned(),
                }),
            })
            .collect();
        let results = client
            .clone()
            .batch_check(authed(Some(token), gw::BatchCheckRequest { items }))
            .await
            .map_err(|status| status.to_string())?
            .into_inner()
            .results;
        for (key, result) in chunk.iter().zip(results) {
            if result.allowed {
                allowed.insert(key.clone());
            }
        }
    }
    Ok(allowed)
}

// Exactly once under concurrency: grants, a disabled primary, a role, the C3 switch and a
// transfer on three sites at once; every change the stream gives flips its permission (none
// is published twice), and once the changes are done, what it says holds is what Check
// answers, permission by permission.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_changes_fold_into_what_check_answers() {
    let suite = Suite::start().await;
    let primary = suite.person("Fold Primary").await;
    let first = suite.person("Fold First").await;
    let second = suite.person("Fold Second").await;
    let third = suite.person("Fold Third").await;
    let successor = suite.person("Fold Successor").await;
    known_to_access(&suite, &[&primary, &first, &second, &third, &successor]).await;
    let (_, token) = suite
        .scoped_service_account("kc-feed-fold", &["authz"])
        .await;
    let client = AuthorizationServiceClient::new(suite.gateway_channel.clone());
    let mut sites = Vec::new();
    for name in ["Fold A", "Fold B", "Fold C"] {
        let site = suite.create_site_applied(name, &primary, None).await;
        sites.push(site.site_id);
    }
    let site_ids: Vec<&str> = sites.iter().map(String::as_str).collect();
    let grantees = [&first, &second, &third];
    let levels = [
        tools(|t| t.software = apb::SoftwareAccess::Full as i32),
        tools(|t| t.reporting = apb::ReportingAccess::View as i32),
        tools(|t| {
            t.entitlements = apb::EntitlementsAccess::Update as i32;
            t.contact_updates = apb::ContactUpdatesAccess::View as i32;
        }),
    ];

    // All at once: nine grants; identity disables the primary of the three sites; the
    // second grantee becomes the administrative contact of A, then the C3 switch goes on
    // there; B's primary role moves to the successor.
    let identity = suite.identity();
    let mut changes: Vec<futures::future::BoxFuture<'_, ()>> = Vec::new();
    for (s, site_id) in site_ids.iter().enumerate() {
        for (u, user) in grantees.iter().enumerate() {
            changes.push(Box::pin(
                suite
                    .grant(site_id, &user.id, levels[(s + u) % levels.len()])
                    .map(drop),
            ));
        }
    }
    changes.push(Box::pin(async {
        identity
            .clone()
            .disable_user(authed(
                Some(&suite.operator.token),
                kc_proto::identity::DisableUserRequest {
                    user_id: primary.id.clone(),
                },
            ))
            .await
            .expect("the operator disables the primary");
    }));
    changes.push(Box::pin(async {
        suite
            .assign(site_ids[0], &second, Role::Administrative)
            .await;
        suite.switch_admin_on(site_ids[0]).await;
    }));
    changes.push(Box::pin(transfer(&suite, site_ids[1], &successor)));
    futures::future::join_all(changes).await;
    identity
        .clone()
        .enable_user(authed(
            Some(&suite.operator.token),
            kc_proto::identity::EnableUserRequest {
                user_id: primary.id.clone(),
            },
        ))
        .await
        .expect("the operator enables the primary again");
    // The last write's revision: the checks read from the database.
    let revision = suite
        .grant(
            site_ids[2],
            &second.id,
            tools(|t| t.reporting = apb::ReportingAccess::View as i32),
        )
        .await
        .revision;

    let people: Vec<&str> = [&primary, &first, &second, &third, &successor]
        .iter()
        .map(|person| person.id.as_str())
        .collect();
    let mut stream = watch(&client, &token, "", &site_ids).await.expect("watch");
    let fold =
        fold_until_check_agrees(&mut stream, &client, &token, &revision, &site_ids, &people).await;
    assert!(!fold.seen.is_empty() && !fold.allowed.is_empty());
}

/// Folds the changes of `stream` until what it says holds of every permission of `people`
/// on `sites` is what the `authz` account's `BatchCheck` answers (at least as fresh as
/// `revision`); fails the test when that takes longer than [`PATIENCE`].
async fn fold_until_check_agrees(
    stream: &mut Changes,
    client: &Authz,
    token: &str,
    revision: &str,
    sites: &[&str],
    people: &[&str],
) -> Fold {
    let mut fold = Fold::default();
    let mut received = 0;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        // What has arrived so far (a pause: the stream is caught up for now).
        while let Ok(message) =
            tokio::time::timeout(std::time::Duration::from_millis(200), stream.message()).await
        {
            let change = message
                .expect("the stream goes on")
                .expect("the stream is open");
            fold.apply(&change);
            received += 1;
        }
        let expected = checked(client, token, revision, sites, people)
            .await
            .expect("batch check");
        if fold.allowed == expected {
            return fold;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "after {received} changes the stream says {:?} hold, Check {:?}",
            fold.allowed.difference(&expected).collect::<Vec<_>>(),
            expected.difference(&fold.allowed).collect::<Vec<_>>()
        );
    }
}

// rule R1 on the feed: a site technical contact assigned takes the primary's support in its
// stead. The event moved the STC's role, yet the primary's support permissions change too:
// the feed withdraws them as Check does, and Check gives them back once the STC is removed.
#[tokio::test]
async fn a_site_technical_contact_assigned_withdraws_the_primarys_support_on_the_feed() {
    let suite = Suite::start().await;
    let primary = suite.person("Rhea Primary").await;
    let stc = suite.person("Tom Technical").await;
    known_to_access(&suite, &[&primary, &stc]).await;
    let (_, token) = suite.scoped_service_account("kc-feed-r1", &["authz"]).await;
    let client = AuthorizationServiceClient::new(suite.gateway_channel.clone());
    let site = suite
        .create_site_applied("Feed R1 site", &primary, None)
        .await;
    let mut stream = watch(&client, &token, "", &[site.site_id.as_str()])
        .await
        .expect("watch");
    let support_admin = || check(&primary.id, &site.site_id, P::SupportAdmin, "");
    let before = ask(&client, &token, support_admin()).await.expect("check");
    assert!(before.allowed, "R1: {before:?}");

    // The gateway answers once access management applied the assignment (T8): the rights
    // cached for the site (the check above filled them) must not answer for the primary.
    let stc_contact = suite.assign(&site.site_id, &stc, Role::SiteTechnical).await;
    let after = ask(&client, &token, support_admin()).await.expect("check");
    assert!(!after.allowed, "R1: {after:?}");
    let revision = suite
        .grant(
            &site.site_id,
            &stc.id,
            tools(|t| t.reporting = apb::ReportingAccess::View as i32),
        )
        .await
        .revision;
    let fold = fold_until_check_agrees(
        &mut stream,
        &client,
        &token,
        &revision,
        &[site.site_id.as_str()],
        &[primary.id.as_str(), stc.id.as_str()],
    )
    .await;
    let primary_support_admin = (
        site.site_id.clone(),
        primary.id.clone(),
        P::SupportAdmin as i32,
    );
    assert!(
        fold.seen.contains(&primary_support_admin),
        "R1: held before"
    );
    assert!(
        !fold.allowed.contains(&primary_support_admin),
        "R1: withdrawn once the site has a site technical contact"
    );

    // And back once the site has none again, at once (the removal moved another person's
    // role, yet the primary's cached rights must not answer).
    suite
        .remove_as(&suite.operator, &site.site_id, &stc_contact.contact_id)
        .await
        .expect("the operator removes the site technical contact");
    let again = ask(&client, &token, support_admin()).await.expect("check");
    assert!(again.allowed, "R1: {again:?}");
}

// Issue 15: `site_ids` narrows the stream to those sites; malformed arguments are refused
// naming the field.
#[tokio::test]
async fn site_ids_narrow_the_stream() {
    let suite = Suite::start().await;
    let first_primary = suite.person("First Primary").await;
    let second_primary = suite.person("Second Primary").await;
    known_to_access(&suite, &[&first_primary, &second_primary]).await;
    let (_, token) = suite
        .scoped_service_account("kc-feed-filter", &["authz"])
        .await;
    let client = AuthorizationServiceClient::new(suite.gateway_channel.clone());
    let first = suite
        .create_site("Feed first site", &first_primary, None)
        .await;
    let second = suite
        .create_site("Feed second site", &second_primary, None)
        .await;

    let mut only_second = watch(&client, &token, "", &[&second.site_id])
        .await
        .expect("watch the second site");
    let changes = next(&mut only_second, ALL.len()).await;
    assert!(
        changes
            .iter()
            .all(|c| c.site_id == second.site_id && c.user_id == second_primary.id),
        "{changes:#?}"
    );
    // The first site's changes come first in the whole stream, yet none reached the
    // narrowed one: a grant on the first site, then one on the second, give only the latter.
    suite
        .grant(
            &first.site_id,
            &second_primary.id,
            tools(|t| t.reporting = apb::ReportingAccess::View as i32),
        )
        .await;
    suite
        .grant(
            &second.site_id,
            &first_primary.id,
            tools(|t| t.reporting = apb::ReportingAccess::View as i32),
        )
        .await;
    let next_change = next(&mut only_second, 1).await;
    assert_eq!(
        key(&next_change[0]),
        change(&first_primary.id, P::ReportsView, true, "T1")
    );
    assert_eq!(next_change[0].site_id, second.site_id);

    let mut both = watch(&client, &token, "", &[&first.site_id, &second.site_id])
        .await
        .expect("watch both sites");
    let all = next(&mut both, 2 * ALL.len() + 2).await;
    let sites: BTreeSet<&str> = all.iter().map(|c| c.site_id.as_str()).collect();
    assert_eq!(
        sites,
        BTreeSet::from([first.site_id.as_str(), second.site_id.as_str()])
    );

    expect_field(
        watch(&client, &token, "", &["not-a-site"]).await,
        "site_ids[0]",
    );
    expect_field(
        watch(&client, &token, "not-a-cursor", &[]).await,
        "after_cursor",
    );
}

// Issue 15: only service accounts with the scope `authz` may watch.
#[tokio::test]
async fn only_service_accounts_with_the_scope_authz_may_watch() {
    let suite = Suite::start().await;
    let primary = suite.person("Watch Refused Primary").await;
    let client = AuthorizationServiceClient::new(suite.gateway_channel.clone());
    let (_, unscoped) = suite.service_account("kc-feed-no-scope").await;
    let (_, notices) = suite
        .scoped_service_account("kc-feed-notices", &["notices"])
        .await;
    for (who, token) in [
        ("a customer", primary.token.clone()),
        ("an operator", suite.operator.token.clone()),
        ("a service account without scope", unscoped),
        ("a service account with notices only", notices),
    ] {
        let refused = expect_code(
            watch(&client, &token, "", &[]).await,
            Code::PermissionDenied,
        );
        assert_eq!(
            refused.message(),
            "permission denied: AuthorizationService is for service accounts with the scope authz",
            "{who}"
        );
    }
    expect_code(
        client
            .clone()
            .watch_permissions(gw::WatchPermissionsRequest::default())
            .await,
        Code::Unauthenticated,
    );
}
