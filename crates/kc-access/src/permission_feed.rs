//! The permission feed (issue 15): every change of an effective permission, published once,
//! in commit order, for `WatchPermissionChanges` (and the gateway's
//! `AuthorizationService.WatchPermissions`).
//!
//! Access management keeps the effective permissions of every user on every site in
//! `effective_permissions` ([`storage::effective`]): one row per permission held, with the
//! reason and rule that allow it (the rights model of `kc-rights`, T3, I1, I4). Every
//! transaction that changes what rights depend on calls [`refresh`] for what it touched,
//! the same scope as the rights cache's invalidation ([`Invalidation`]):
//!
//! - a change of a user's explicit grants (SetToolAccess, SetSupportAccess, RevokeAccess, an
//!   approval by an approver or a domain policy, a grant's end, T9): that user on that site;
//! - a registry event: the holders whose roles it moved (an assignment, removal or
//!   replacement, a primary transfer), on that site: a user's rights depend on its own roles,
//!   grants and state and on the site's facts, never on another user's roles; the whole site
//!   for a site's creation or update (the C3 switch); nobody for a change of contact details;
//! - identity disabling or enabling a user, or proving its address: that user on every site.
//!
//! [`refresh`] recomputes the permissions of the scope from the database as the transaction
//! sees it, compares them with the table, writes the difference, and appends one
//! `permission.changed` event per permission gained or lost, in `(site, user, permission)`
//! order: the change and its events commit together, and the outbox orders them by commit
//! (its cursor is the feed's cursor). A change of reason alone (a role now implying what a
//! grant gave) updates the row and publishes nothing.
//!
//! **Exactly once.** Two refreshes that overlap must not both diff against the same old rows.
//! Refreshes of one site serialize on the site's row, which every writer of grants and
//! roles locks first (see [`crate::followers`]). A refresh of one user on every site takes
//! that user's advisory lock exclusively, and a refresh of a site (or of a user on a site)
//! takes the advisory lock of each user concerned in shared mode, before reading anything
//! it decides on: so each refresh reads the rows as the refresh before it left them. The
//! advisory lock is taken after the lock on the user's projected row that identity's apply
//! and rule I1's check take, so the two never wait on each other in a cycle; and the table
//! has no foreign key to `sites`, so a refresh of a user never waits for a site's row (which
//! a write may hold while it waits for that user's lock).
//!
//! **Backfill.** Sites that existed before the feed (migration `0002_permission_feed`) are
//! filled at start by [`spawn_backfill`]: a batch of sites per transaction, in site-id order,
//! each site locked and refreshed like a registry event would, the progress kept in
//! `permission_feed_backfill` (one replica at a time; a restart resumes). Their permissions
//! are published as changes to allowed. A fresh database has nothing to fill.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use futures::StreamExt;
use kc_proto::access as pb;
use kc_runtime::Shutdown;
use kc_runtime::outbox::{
    EventStream, OutboxWatcher, StoredEvent, decode_response, watch_response,
};
use sqlx::{PgConnection, PgPool};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::domain::commands::PermissionFeedQuery;
use crate::domain::{Decision, Effective, Permission, Profile};
use crate::events;
use crate::storage::effective::{self, HeldPermission};
use crate::storage::invalidation::Invalidation;
use crate::storage::sites;

/// Sites filled per transaction by the backfill.
const BACKFILL_BATCH: i64 = 50;

/// The key of a row: site, user, permission number.
type Key = (Uuid, Uuid, i16);

/// One permission of a user on a site that flipped, with the decision now.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Flip {
    site_id: Uuid,
    site_number: String,
    user_id: Uuid,
    permission: Permission,
    decision: Decision,
}

/// What a refresh writes: the rows to insert or update, the rows to delete, and the flips to
/// publish, in (site, user, permission) order.
#[derive(Debug, Default)]
struct Plan {
    upserts: Vec<HeldPermission>,
    deletes: Vec<Key>,
    flips: Vec<Flip>,
}

/// A user on a site of a refresh's scope, with its effective rights there now.
#[derive(Debug, Clone, Copy)]
struct Pair<'a> {
    site_id: Uuid,
    site_number: &'a str,
    user_id: Uuid,
    effective: &'a Effective,
}

impl<'a> From<&'a Profile> for Pair<'a> {
    fn from(profile: &'a Profile) -> Self {
        Self {
            site_id: profile.site_id,
            site_number: &profile.site_number,
            user_id: profile.user_id,
            effective: &profile.effective,
        }
    }
}

/// Compares `held` (the rows of a scope) with what `pairs` (every user and site of the
/// scope) allow now. A change of reason alone updates the row and publishes nothing; a row
/// of the scope whose pair was not read (its site is unknown to the projection) is dropped
/// without an event: nobody can be checked on an unknown site.
fn plan(held: Vec<HeldPermission>, pairs: &[Pair<'_>]) -> Plan {
    let mut now: BTreeMap<Key, (&Pair<'_>, Permission, Decision)> = BTreeMap::new();
    for pair in pairs {
        for permission in Permission::ALL {
            now.insert(
                (pair.site_id, pair.user_id, permission.number() as i16),
                (pair, permission, pair.effective.check(permission)),
            );
        }
    }
    let held: BTreeMap<Key, HeldPermission> = held
        .into_iter()
        .map(|row| ((row.site_id, row.user_id, row.permission), row))
        .collect();
    let mut plan = Plan::default();
    for (key, (pair, permission, decision)) in now.iter() {
        let before = held.get(key);
        let flipped = if decision.allowed {
            let same = before
                .is_some_and(|row| row.reason == decision.reason && row.rule == decision.rule);
            if !same {
                plan.upserts.push(HeldPermission {
                    site_id: key.0,
                    user_id: key.1,
                    permission: key.2,
                    reason: decision.reason.clone(),
                    rule: decision.rule.to_owned(),
                });
            }
            before.is_none()
        } else {
            if before.is_some() {
                plan.deletes.push(*key);
            }
            before.is_some()
        };
        if flipped {
            plan.flips.push(Flip {
                site_id: key.0,
                site_number: pair.site_number.to_owned(),
                user_id: key.1,
                permission: *permission,
                decision: decision.clone(),
            });
        }
    }
    plan.deletes
        .extend(held.keys().filter(|key| !now.contains_key(key)).copied());
    plan
}

/// Recomputes the effective permissions of `scope` inside the caller's transaction, writes
/// the difference to the table and appends one `permission.changed` event per permission
/// gained or lost. Returns how many it appended.
///
/// Call it in every transaction that changes grants, roles, site facts or users, after the
/// change, with the scope of the change (see the module documentation): a refresh of a
/// site or of a user on a site must hold the site's row lock.
pub(crate) async fn refresh(
    conn: &mut PgConnection,
    scope: Invalidation,
) -> Result<usize, sqlx::Error> {
    if scope != Invalidation::All {
        return refresh_one(conn, scope).await;
    }
    let mut appended = 0;
    let mut after = None;
    loop {
        let batch = effective::lock_sites_after(conn, after, BACKFILL_BATCH).await?;
        let Some(last) = batch.last().copied() else {
            return Ok(appended);
        };
        for site_id in batch {
            appended += refresh_one(conn, Invalidation::Site(site_id)).await?;
        }
        after = Some(last);
    }
}

/// [`refresh`] of a pair, a site or a user: reads the rows of the scope and the profiles of
/// every user and site of it under the locks, then applies the difference.
async fn refresh_one(conn: &mut PgConnection, scope: Invalidation) -> Result<usize, sqlx::Error> {
    let (held, profiles) = match scope {
        Invalidation::Pair { site_id, user_id } => {
            return refresh_pairs(conn, &[(site_id, user_id)]).await;
        }
        Invalidation::Site(site_id) => {
            let users = effective::users_of_site(conn, site_id).await?;
            effective::lock_users_shared(conn, &users).await?;
            // Read again under the locks: a user's refresh may have just removed rows.
            let users = effective::users_of_site(conn, site_id).await?;
            let held = effective::of_site(conn, site_id).await?;
            let profiles = sites::pair_profiles(conn, &vec![site_id; users.len()], &users).await?;
            (held, profiles)
        }
        // Every site is refreshed one by one by `refresh`.
        Invalidation::All => return Ok(0),
        Invalidation::User(user_id) => {
            effective::lock_user_exclusive(conn, user_id).await?;
            let site_ids = effective::sites_of_user(conn, user_id).await?;
            if site_ids.is_empty() {
                // No site where the user holds or may hold anything, and no row of it (the
                // list counts the rows' sites), which the lock keeps so: nothing to refresh,
                // as for a user identity has just invited.
                return Ok(0);
            }
            let held = effective::of_user(conn, user_id).await?;
            let profiles =
                sites::pair_profiles(conn, &site_ids, &vec![user_id; site_ids.len()]).await?;
            (held, profiles)
        }
    };
    apply(conn, held, &profiles).await
}

/// [`refresh`] of each pair `(site, user)` of `pairs` (no pair twice), in three statements
/// whatever their number: the users' shared locks (in user-id order), their rows, their
/// profiles; then the difference. The caller holds the pairs' sites' row locks.
pub(crate) async fn refresh_pairs(
    conn: &mut PgConnection,
    pairs: &[(Uuid, Uuid)],
) -> Result<usize, sqlx::Error> {
    if pairs.is_empty() {
        return Ok(0);
    }
    let mut users: Vec<Uuid> = pairs.iter().map(|(_, user_id)| *user_id).collect();
    users.sort_unstable();
    users.dedup();
    effective::lock_users_shared(conn, &users).await?;
    let (site_ids, user_ids): (Vec<Uuid>, Vec<Uuid>) = pairs.iter().copied().unzip();
    let held = effective::of_pairs(conn, &site_ids, &user_ids).await?;
    let profiles = sites::pair_profiles(conn, &site_ids, &user_ids).await?;
    apply(conn, held, &profiles).await
}

/// Writes the difference between `held` (the rows of the scope) and what `profiles` (every
/// user and site of the scope) allow now ([`plan`]), and appends its events.
async fn apply(
    conn: &mut PgConnection,
    held: Vec<HeldPermission>,
    profiles: &[Profile],
) -> Result<usize, sqlx::Error> {
    let pairs: Vec<Pair<'_>> = profiles.iter().map(Pair::from).collect();
    let plan = plan(held, &pairs);
    effective::upsert(conn, &plan.upserts).await?;
    effective::delete(conn, &plan.deletes).await?;
    for flip in &plan.flips {
        let event = events::permission_changed(
            flip.site_id,
            &flip.site_number,
            flip.user_id,
            flip.permission,
            &flip.decision,
        );
        events::append(conn, &event).await?;
    }
    Ok(plan.flips.len())
}

/// Fills the table for the sites that existed before the feed, one batch of sites per
/// transaction, until done (see the module documentation). Returns how many events it
/// appended.
pub(crate) async fn backfill(pool: &PgPool) -> Result<usize, sqlx::Error> {
    let mut appended = 0;
    loop {
        let mut tx = pool.begin().await?;
        let Some(after) = effective::lock_backfill(&mut tx).await? else {
            return Ok(appended);
        };
        let batch = effective::lock_sites_after(&mut tx, after, BACKFILL_BATCH).await?;
        let done = (batch.len() as i64) < BACKFILL_BATCH;
        let last = batch.last().copied().or(after);
        for site_id in batch {
            appended += refresh(&mut tx, Invalidation::Site(site_id)).await?;
        }
        effective::record_backfill(&mut tx, last, done).await?;
        tx.commit().await?;
        if done {
            return Ok(appended);
        }
    }
}

/// Runs [`backfill`] in the background until it is done, retrying after a failure, or until
/// `shutdown`.
pub(crate) fn spawn_backfill(pool: PgPool, shutdown: Shutdown) -> JoinHandle<()> {
    tokio::spawn(async move {
        let work = async {
            loop {
                match backfill(&pool).await {
                    Ok(appended) => {
                        if appended > 0 {
                            tracing::info!(appended, "permission feed backfilled");
                        }
                        return;
                    }
                    Err(error) => {
                        tracing::warn!(error = %error, "permission feed backfill failed; retrying");
                        tokio::time::sleep(Duration::from_secs(5)).await;
                    }
                }
            }
        };
        tokio::select! {
            () = work => {}
            () = shutdown.wait() => {}
        }
    })
}

/// The events of `stream` that were kept (`Some`).
fn kept<T: Send + 'static>(stream: EventStream<Option<T>>) -> EventStream<T> {
    Box::pin(stream.filter_map(|item| futures::future::ready(item.transpose())))
}

/// `WatchPermissionChanges`: the feed's events after the query's cursor, on its sites only
/// when it names some (an event's aggregate is its site), until `shutdown`. Other events are
/// skipped by type and site, undecoded.
pub(crate) fn watch_changes(
    watcher: &OutboxWatcher,
    query: PermissionFeedQuery,
    shutdown: &Shutdown,
) -> EventStream<pb::WatchPermissionChangesResponse> {
    let sites: HashSet<String> = query.site_ids.iter().map(Uuid::to_string).collect();
    let stream = watch_response(watcher, query.after, move |stored: StoredEvent| {
        let wanted = stored.event_type == events::PERMISSION_CHANGED
            && (sites.is_empty() || sites.contains(&stored.aggregate_id));
        if !wanted {
            return Ok(None);
        }
        let response = decode_response::<pb::Event>(stored)?;
        Ok(Some(pb::WatchPermissionChangesResponse {
            event: response.event,
        }))
    });
    let shutdown = shutdown.clone();
    kept(Box::pin(
        stream.take_until(async move { shutdown.wait().await }),
    ))
}

/// `WatchEvents`: the service's events after `after_cursor` but the feed's (its consumers,
/// the registry and notification, need none of them), until `shutdown`.
pub(crate) fn watch_events(
    watcher: &OutboxWatcher,
    after_cursor: &str,
    shutdown: &Shutdown,
) -> Result<EventStream<pb::WatchEventsResponse>, tonic::Status> {
    let stream = kc_runtime::grpc::watch_events(
        watcher,
        after_cursor,
        |stored| {
            if stored.event_type == events::PERMISSION_CHANGED {
                return Ok(None);
            }
            decode_response::<pb::Event>(stored).map(Some)
        },
        shutdown,
    )?;
    Ok(kept(stream))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ContactRole, RoleSet, SiteFacts, Subject};

    const SITE: Uuid = Uuid::from_u128(1);
    const USER: Uuid = Uuid::from_u128(2);

    fn effective(roles: &[ContactRole], disabled: bool, facts: SiteFacts) -> Effective {
        Effective::of(
            &Subject {
                roles: RoleSet::of(roles),
                disabled,
                ..Subject::default()
            },
            facts,
        )
    }

    fn pair(effective: &Effective) -> Pair<'_> {
        Pair {
            site_id: SITE,
            site_number: "1234567",
            user_id: USER,
            effective,
        }
    }

    fn rows(plan: &Plan) -> Vec<HeldPermission> {
        plan.upserts.clone()
    }

    fn numbers(flips: &[Flip]) -> Vec<(i32, bool)> {
        flips
            .iter()
            .map(|flip| (flip.permission.number(), flip.decision.allowed))
            .collect()
    }

    // rules T3, C3, I4: a flip of `allowed` is published once; a change of reason alone is not.
    #[test]
    fn only_flips_are_published_once() {
        let off = SiteFacts {
            admin_may_manage_access: false,
            has_site_technical: true,
        };
        let on = SiteFacts {
            admin_may_manage_access: true,
            ..off
        };

        // ADMINISTRATIVE with the switch off: account documents VIEW (T3).
        let admin = effective(&[ContactRole::Administrative], false, off);
        let first = plan(Vec::new(), &[pair(&admin)]);
        assert_eq!(
            numbers(&first.flips),
            [(Permission::DocumentsView.number(), true)]
        );
        assert_eq!(first.flips[0].decision.rule, "T3");
        assert!(first.deletes.is_empty());
        // The same again: nothing.
        let again = plan(rows(&first), &[pair(&admin)]);
        assert!(again.flips.is_empty() && again.upserts.is_empty() && again.deletes.is_empty());
        // The C3 switch on: manage access (view, update, approve site access) flips, once.
        let managing = effective(&[ContactRole::Administrative], false, on);
        let switched = plan(rows(&first), &[pair(&managing)]);
        assert_eq!(
            numbers(&switched.flips),
            [
                (Permission::AccessView.number(), true),
                (Permission::AccessUpdate.number(), true),
                (Permission::ApproveSiteAccess.number(), true),
            ]
        );
        let held: Vec<HeldPermission> = [rows(&first), rows(&switched)].concat();
        // PRIMARY too: what ADMINISTRATIVE gave is now implied by PRIMARY, a change of
        // reason only, written without an event.
        let primary = effective(
            &[ContactRole::Primary, ContactRole::Administrative],
            false,
            on,
        );
        let promoted = plan(held.clone(), &[pair(&primary)]);
        assert!(
            promoted
                .flips
                .iter()
                .all(|flip| flip.permission != Permission::DocumentsView)
        );
        assert!(promoted.upserts.iter().any(|row| row.permission
            == Permission::DocumentsView.number() as i16
            && row.reason == "implied by PRIMARY (T3)"));
        // Disabled (I4): every held permission flips to denied, citing I1, I4.
        let disabled = effective(&[ContactRole::Administrative], true, on);
        let gone = plan(held, &[pair(&disabled)]);
        assert_eq!(gone.deletes.len(), 4);
        assert!(
            gone.flips
                .iter()
                .all(|flip| !flip.decision.allowed && flip.decision.rule == "I1, I4")
        );
        assert_eq!(gone.flips.len(), 4);
    }

    #[test]
    fn rows_of_a_site_no_longer_read_are_dropped_silently() {
        let held = vec![HeldPermission {
            site_id: SITE,
            user_id: USER,
            permission: Permission::ReportsView.number() as i16,
            reason: "explicit grant: reporting VIEW >= VIEW".into(),
            rule: "T1".into(),
        }];
        let dropped = plan(held, &[]);
        assert_eq!(
            dropped.deletes,
            [(SITE, USER, Permission::ReportsView.number() as i16)]
        );
        assert!(dropped.flips.is_empty());
    }
}
