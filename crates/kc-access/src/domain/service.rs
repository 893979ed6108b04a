//! The operations of access management: each change is one transaction that locks the
//! site's projection row, checks the rules of [`rights`](super::rights) against what the
//! database holds under that lock, writes, and records the change in the audit trail (L1, T5)
//! and the outbox, and tells every replica's rights cache what became stale (see
//! [`crate::cache`]). The changes other services decide on return their *revision*
//! ([`Revised`]): the cursor of their last event, which the contact registry awaits in its
//! projection of this stream before it decides on grants (T8).
//!
//! Decisions taken here:
//! - **Callers.** Services and operators only; customer tokens are refused. The person who
//!   acts (grantor, requester, approver) is the `x-kc-on-behalf-of` user of a service, else
//!   the operator itself. A service without `x-kc-on-behalf-of` may read (checks, profiles,
//!   lists, approvers) but changes nothing: a change needs a person to hold responsible.
//! - **Operators** act with the top level of every tool and support ADMINISTRATOR: they pass
//!   the grantor-authority checks of T4, U4 and A3 (who may grant what, who may decide),
//!   but not the protections of the target that DOMAIN.md gives to everyone ("nobody edits
//!   the primary contact's implied rights", T4; nobody changes the STC's level, U6). An
//!   approval by an operator still grants at most what was asked (A4).
//! - **Unknown sites.** The projection learns sites from the registry's stream, so a site
//!   created a moment ago may not be known yet: calls about it answer `NotFound` until the
//!   projection catches up (within the stream latency), and `Check` denies with that reason.
//! - **No-op changes** (setting the levels a user already has) pass the rules and the etag
//!   check, then change and record nothing.
//! - **A5.** A request must ask for more than the requester holds (effective rights):
//!   asking for nothing new is refused, citing A5.
//! - **A6.** Decisions update the request `WHERE state = PENDING` under the site lock: of two
//!   approvers deciding at once, the second sees a decided request (`FailedPrecondition`,
//!   A6) or, when it sent the etag it read, a moved version (`Aborted`). Only the requester
//!   may cancel (`PermissionDenied` for anyone else).
//! - **A7.** A policy matches when the requester's login e-mail, as identity's stream last
//!   reported it, is verified and its domain equals the policy's (no subdomains). An
//!   AUTO_APPROVE match grants the baseline, never more than was asked (A4), at once; when
//!   that would raise nothing, the request stays PENDING for an approver (as AUTO_PENDING).
//! - **Expiry** keeps the expiry time computed at submission (`--request-max-age` later);
//!   the sweeper skips rows another transaction holds, so replicas share the work.
//! - **Etags** are versions: a profile's is the version of its explicit grants (0 before any
//!   grant; a revocation keeps the row, so versions never repeat), a request's and a
//!   policy's their own. Empty means no check; anything else that is not the current
//!   version, including a text this service never issued, is `Aborted`.
//! - **I1, proven addresses.** Rights are granted (SetToolAccess or SetSupportAccess raising
//!   a level, an approval, a domain policy's approval) only to a user whose login e-mail is
//!   proven and who is active, as the projection of identity's users says, and only such a
//!   user may submit a request; anything else is `FailedPrecondition` citing rule I1.
//!   Lowering or revoking rights stays possible for anyone. The check reads the user's row
//!   in share mode inside the write's transaction, so a disable applied meanwhile waits for
//!   the write (or is seen by it). The projection may be a moment behind identity: a call
//!   refused under I1 waits up to [`PROOF_PATIENCE`] for the projection to show the user
//!   proven, then runs once more; a user unknown to the projection counts as unproven.
//! - **T7, nobody grants itself rights.** SetToolAccess or SetSupportAccess that raises any
//!   explicit level of the actor itself is refused (`FailedPrecondition`, like T4; checked
//!   after T4 and U4–U6, so a change they already forbid names them), even up to what its
//!   roles imply already: an explicit copy of role-implied rights would survive the loss of
//!   the role. Lowering or revoking one's own is allowed. Nobody approves its
//!   own request, and a domain policy never auto-approves the request of the user who last
//!   set it (the request stays PENDING for another approver). Operators are no exception:
//!   an operator acts on others.
//! - **Audit** (L1, T5): every change appends who (the person and the service it came
//!   through; nobody for the service's own expiry and domain-policy approvals), what
//!   (before and after as JSON), when, and why (the reason given, the approval note, the
//!   justification of a submission).

mod support_users;

pub use support_users::{SupportUsersQuery, UserAccessChange};

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use kc_runtime::db::{DbErrorKind, classify, constraint};
use kc_runtime::outbox::{Cursor, Revised};
pub use kc_runtime::paging::Page;
use kc_runtime::paging::read_page;
use kc_runtime::sweep::one_by_one;
use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use uuid::Uuid;

use super::commands::{
    Approval, ApproverKey, ApproversQuery, Cancellation, CheckQuery, EndChange, LookupSitesQuery,
    LookupUsersQuery, MyRequestsQuery, PoliciesQuery, PolicyChange, ProfileRef, Rejection,
    RequestRef, Revocation, SiteAccessQuery, SiteRequestsQuery, Submission, SupportChange,
    ToolsChange, UserAccessQuery, with_levels,
};
use super::ends::{
    ENDING_NOTICE_AHEAD, check_end_change, check_start, end_after_approval, end_after_change, later,
};
use super::values::{EmailDomain, Etag};
use super::{
    AccessError, AccessRequest, AccessRequestKind, Actor, Approver, AuditRecord, Decision,
    DomainPolicy, Effective, Grants, Permission, PolicyMode, Profile, RequestState, Result,
    RoleSet, Site, Subject, SupportLevel, ToolAccess, UNKNOWN_SITE_REASON, approvers,
    baseline_grant, check_approval, check_decider, check_domain_baseline, check_not_own_request,
    check_revoke, check_self_grant, check_support_change, check_tool_change,
};
use super::{Holders, Holding};
use crate::cache::{Rights, RightsCache};
use crate::events::{self, PendingEvent};
use crate::permission_feed;
use crate::storage::grants::Term;
use crate::storage::invalidation::{Invalidation, notify_invalidations};
use crate::storage::{self, audit::NewRecord, requests::NewRequest};

mod blocks;

/// How many expired requests the sweeper handles per transaction.
pub const EXPIRY_BATCH: usize = 100;

/// How long a call refused under rule I1 waits for the projection of identity's users to
/// show the user proven (identity's stream may be a moment behind a just-proven address)
/// before the refusal stands.
pub const PROOF_PATIENCE: Duration = Duration::from_secs(2);

/// How often the projection is read again while waiting for a proof.
const PROOF_POLL: Duration = Duration::from_millis(50);

/// Settings of the operations.
#[derive(Debug, Clone, Copy)]
pub struct AccessSettings {
    /// How long a request may stay PENDING before it expires (A6).
    pub request_max_age: Duration,
}

/// Access management over its Postgres schema and rights cache.
#[derive(Clone, Debug)]
pub struct Access {
    pool: PgPool,
    /// Whether the permission feed's table is known to hold every permission.
    feed_complete: Arc<AtomicBool>,
    cache: RightsCache,
    settings: AccessSettings,
}

/// Most candidate profiles a lookup reads in one query.
const MAX_LOOKUP_BATCH: i64 = 1000;

/// Sites whose checks one batch answers at once ([`Access::check_all`]): each may load its
/// site from the database, on a connection of its own.
const SITES_CHECKED_AT_ONCE: usize = 4;

/// How many candidate profiles a lookup reads in its first query for a page of `size`: one
/// more than the page (to know whether another page follows), since most candidates of a
/// lookup usually hold the permission; each further query of the same page reads twice as
/// many, up to [`MAX_LOOKUP_BATCH`]. (A fixed floor of 500 made a lookup paged by 100 read
/// every candidate five times.)
fn lookup_batch(size: u32) -> i64 {
    (i64::from(size) + 1).min(MAX_LOOKUP_BATCH)
}

/// The batch after `batch` when a page is not full yet.
fn next_lookup_batch(batch: i64) -> i64 {
    (batch * 2).min(MAX_LOOKUP_BATCH)
}

/// Appends the profiles of `rows` that hold `permission` to `found`, with the reason and
/// rule, until it holds `size + 1` (a full page and the sign of a next one); whether it does.
fn collect_allowed(
    rows: Vec<Profile>,
    permission: Permission,
    size: u32,
    found: &mut Vec<Holding>,
) -> bool {
    let wanted = size as usize + 1;
    for profile in rows {
        if let Some(holding) = holding_of(&profile, profile.effective.check(permission)) {
            found.push(holding);
            if found.len() >= wanted {
                return true;
            }
        }
    }
    false
}

/// What a lookup answers of `profile` when `decision` allows; `None` when it denies.
fn holding_of(profile: &Profile, decision: Decision) -> Option<Holding> {
    decision.allowed.then(|| Holding {
        site_id: profile.site_id,
        site_number: profile.site_number.clone(),
        user_id: profile.user_id,
        reason: decision.reason,
        rule: decision.rule.to_owned(),
    })
}

/// A page of a lookup: whose, of which permission, after which key, how long.
#[derive(Debug, Clone, Copy)]
struct Lookup {
    holders: Holders,
    permission: Permission,
    after: Option<Uuid>,
    size: u32,
}

impl From<LookupSitesQuery> for Lookup {
    fn from(query: LookupSitesQuery) -> Self {
        Self {
            holders: Holders::SitesOf(query.user_id),
            permission: query.permission,
            after: query.after,
            size: query.size,
        }
    }
}

impl From<LookupUsersQuery> for Lookup {
    fn from(query: LookupUsersQuery) -> Self {
        Self {
            holders: Holders::UsersOf(query.site_id),
            permission: query.permission,
            after: query.after,
            size: query.size,
        }
    }
}

/// One batch of a lookup read from the database (see [`Access::lookup`]).
#[derive(Debug)]
struct LookupBatch {
    /// Rows of the feed's table, in key order, at most `limit`.
    held: Vec<Holding>,
    /// Keys whose grants' start or end passed, in key order, at most `limit`: the table
    /// may be wrong about them.
    passed: Vec<Uuid>,
    /// The holdings among `passed`, decided afresh.
    decided: Vec<Holding>,
    /// The limit of both reads.
    limit: usize,
}

impl LookupBatch {
    /// The holdings of the batch in key order, up to the key both reads covered, and that
    /// key: `None` when both reads came back short (nothing lies beyond them). Past that
    /// key, one of the reads stopped at its limit, so what lies there is left to the next
    /// batch.
    fn merge(self, holders: Holders) -> (Vec<Holding>, Option<Uuid>) {
        // The last key of a read that came back full: past it, that read saw nothing.
        let cut = |len: usize, last: Option<Uuid>| last.filter(|_| len >= self.limit);
        let bound = [
            cut(self.held.len(), self.held.last().map(|h| holders.key(h))),
            cut(self.passed.len(), self.passed.last().copied()),
        ]
        .into_iter()
        .flatten()
        .min();
        let mut merged: Vec<Holding> = self
            .held
            .into_iter()
            // `passed` is in key order (storage sorts it).
            .filter(|holding| self.passed.binary_search(&holders.key(holding)).is_err())
            .chain(self.decided)
            .filter(|holding| bound.is_none_or(|bound| holders.key(holding) <= bound))
            .collect();
        merged.sort_by_key(|holding| holders.key(holding));
        (merged, bound)
    }
}

/// The subject a profile describes.
fn subject_of(effective: &Effective) -> Subject {
    Subject {
        roles: effective.roles(),
        explicit: effective.explicit(),
        disabled: effective.is_disabled(),
    }
}

/// The rights an operator acts with: every top level, on the real site (so the target
/// protections that depend on the site still hold).
fn operator_authority(site: &Site) -> Effective {
    let subject = Subject {
        roles: RoleSet::EMPTY,
        explicit: Grants {
            tools: ToolAccess::TOP,
            support: SupportLevel::Administrator,
        },
        disabled: false,
    };
    Effective::of(&subject, site.facts)
}

/// Refuses a change when the caller's etag is not the current version.
fn check_etag(etag: Etag, actual: i64, what: &'static str) -> Result<()> {
    if etag.matches(actual) {
        Ok(())
    } else {
        Err(AccessError::EtagMismatch(what))
    }
}

/// A6: a decided request never changes again.
fn check_pending(request: &AccessRequest) -> Result<()> {
    if request.state == RequestState::Pending {
        return Ok(());
    }
    Err(AccessError::rule(
        "A6",
        format!(
            "the access request is already {}; a decided request never changes again",
            request.state
        ),
    ))
}

fn to_json<T: serde::Serialize>(value: &T) -> Option<serde_json::Value> {
    serde_json::to_value(value).ok()
}

/// The audit form of explicit grants: the grants, with `valid_until` when they end and
/// `valid_from` when they start later (T9).
fn grants_json(grants: &Grants, term: Term) -> Option<serde_json::Value> {
    let mut value = to_json(grants)?;
    if let Some(object) = value.as_object_mut() {
        for (key, time) in [
            ("valid_from", term.valid_from),
            ("valid_until", term.valid_until),
        ] {
            if let Some(time) = time {
                object.insert(key.into(), serde_json::Value::String(time.to_rfc3339()));
            }
        }
    }
    Some(value)
}

/// The term of a profile's explicit grants (T9).
fn term_of(profile: &Profile) -> Term {
    Term {
        valid_from: profile.valid_from,
        valid_until: profile.valid_until,
    }
}

/// The reason recorded and told when a grant starts (T9).
const STARTED_REASON: &str = "the grant started (T9)";

/// The reason recorded and told when a grant reaches its end (T9).
const ENDED_REASON: &str = "the grant reached its end (T9)";

/// Maps a refused request insert: the unique index of A6.
fn insert_error(error: sqlx::Error, kind: AccessRequestKind) -> AccessError {
    if classify(&error) == DbErrorKind::UniqueViolation
        && constraint(&error) == Some("access_requests_one_pending")
    {
        return AccessError::PendingRequestExists(kind);
    }
    error.into()
}

/// The part of `grants` that a request of `kind` is about; the rest NONE.
fn part_of(kind: AccessRequestKind, grants: &Grants) -> Grants {
    match kind {
        AccessRequestKind::SiteAccess => Grants {
            tools: grants.tools,
            support: SupportLevel::NoAccess,
        },
        AccessRequestKind::SupportAccess => Grants {
            tools: ToolAccess::NONE,
            support: grants.support,
        },
    }
}

/// An audit record to append with a change.
struct Entry {
    /// Who is responsible; `None` for what the service does itself.
    actor: Option<Actor>,
    action: &'static str,
    resource_id: String,
    before: Option<serde_json::Value>,
    after: Option<serde_json::Value>,
    reason: String,
}

/// A change being made: its audit records, events and cache invalidations, written and
/// applied together.
struct Change {
    site_id: Uuid,
    entries: Vec<Entry>,
    events: Vec<PendingEvent>,
    invalidations: Vec<Invalidation>,
}

impl Change {
    fn new(site_id: Uuid) -> Self {
        Self {
            site_id,
            entries: Vec::new(),
            events: Vec::new(),
            invalidations: Vec::new(),
        }
    }

    fn record(&mut self, entry: Entry) {
        self.entries.push(entry);
    }

    fn event(&mut self, event: PendingEvent) {
        self.events.push(event);
    }

    /// Appends the records and events, notifies the replicas, refreshes the permission feed
    /// for what changed ([`permission_feed::refresh`]), commits, then drops the stale
    /// entries of this replica's cache before the caller answers. Returns the change's
    /// revision: the cursor of the last event of the change itself (not of the feed's),
    /// `None` when there was none.
    async fn commit(
        self,
        mut tx: Transaction<'_, Postgres>,
        cache: &RightsCache,
    ) -> Result<Option<Cursor>> {
        for entry in &self.entries {
            storage::audit::append(
                &mut tx,
                &NewRecord {
                    site_id: self.site_id,
                    actor_id: entry.actor.map(|actor| actor.actor_id),
                    via_service: entry.actor.and_then(|actor| actor.via_service),
                    action: entry.action,
                    resource_id: entry.resource_id.clone(),
                    before: entry.before.clone(),
                    after: entry.after.clone(),
                    reason: &entry.reason,
                },
            )
            .await?;
        }
        let mut revision = None;
        for event in &self.events {
            revision = Some(events::append(&mut tx, event).await?);
        }
        notify_invalidations(&mut tx, &self.invalidations).await?;
        for what in &self.invalidations {
            // The permission feed, after the change's own events: the revision stays the
            // cursor of the change's last event of WatchEvents.
            permission_feed::refresh(&mut tx, *what).await?;
        }
        tx.commit().await?;
        for what in self.invalidations {
            cache.invalidate(what);
        }
        for entry in &self.entries {
            tracing::info!(
                site_id = %self.site_id,
                resource_id = %entry.resource_id,
                action = entry.action,
                "access changed"
            );
        }
        Ok(revision)
    }

    /// Commits like [`Change::commit`] and returns `value` with the change's revision.
    async fn commit_with<T>(
        self,
        tx: Transaction<'_, Postgres>,
        cache: &RightsCache,
        value: T,
    ) -> Result<Revised<T>> {
        let revision = self.commit(tx, cache).await?;
        Ok(Revised { value, revision })
    }
}

/// Rejects the locked PENDING `request` by `actor` for `reason`, and adds the rejection's
/// audit record and event to `change`. Returns the request as decided; `LostRace` when it
/// changed since it was read.
async fn reject_request(
    conn: &mut PgConnection,
    change: &mut Change,
    actor: Actor,
    request: &AccessRequest,
    reason: String,
) -> Result<AccessRequest> {
    decide_request(
        conn,
        change,
        Some(actor),
        "request.rejected",
        events::access_request_decided,
        request,
        &storage::requests::Decision {
            state: RequestState::Rejected,
            decided_by: Some(actor.actor_id),
            granted: None,
            reason: Some(&reason),
            auto_approved: false,
            expected_version: Some(request.version),
        },
    )
    .await
}

/// Decides the locked PENDING `request` as `decision` says (a decided request never changes
/// again, A6), and adds to `change` the decision's audit record, as `action` by `actor` with
/// the decision's reason (none: empty), and its event, as `event` makes it. Returns the
/// request as decided; `LostRace` when it was decided, or its version moved, since it was
/// read.
async fn decide_request(
    conn: &mut PgConnection,
    change: &mut Change,
    actor: Option<Actor>,
    action: &'static str,
    event: fn(Option<Actor>, &AccessRequest) -> PendingEvent,
    request: &AccessRequest,
    decision: &storage::requests::Decision<'_>,
) -> Result<AccessRequest> {
    let decided = storage::requests::decide(conn, request.request_id, decision)
        .await?
        .ok_or(AccessError::LostRace)?;
    change.record(Entry {
        actor,
        action,
        resource_id: request.request_id.to_string(),
        before: to_json(request),
        after: to_json(&decided),
        reason: decision.reason.unwrap_or_default().to_owned(),
    });
    change.event(event(actor, &decided));
    Ok(decided)
}

/// Rule I1: refuses, with `message`, a grant or request for a user that is not proven and
/// active in the projection of identity's users. Holds the user's row in share mode until
/// the transaction ends.
async fn require_proven(
    conn: &mut PgConnection,
    user_id: Uuid,
    message: &'static str,
) -> Result<()> {
    let user = storage::users::get_locked(conn, user_id).await?;
    if user.is_some_and(|user| user.is_proven_and_active()) {
        Ok(())
    } else {
        Err(AccessError::Unproven { user_id, message })
    }
}

/// I1's refusal of a grant to a user.
const UNPROVEN_GRANTEE: &str = "the user's login e-mail is not proven or the user is not \
     active: rights are granted only to an account whose owner proved its address";
/// I1's refusal of a request.
const UNPROVEN_REQUESTER: &str = "only a user whose login e-mail is proven and who is active \
     may ask for access (A1): prove the address with the code mailed to it first";
/// I1's refusal of an approval.
const UNPROVEN_APPROVAL: &str = "the requester's login e-mail is not proven or the requester \
     is not active: its request cannot be approved";

/// A site's lock, or `SiteNotFound`.
async fn lock_site(conn: &mut PgConnection, site_id: Uuid) -> Result<Site> {
    storage::sites::lock(conn, site_id)
        .await?
        .ok_or(AccessError::SiteNotFound)
}

/// A site (unlocked: for reads), or `SiteNotFound`.
async fn site_of(conn: &mut PgConnection, site_id: Uuid) -> Result<Site> {
    storage::sites::get(conn, site_id)
        .await?
        .ok_or(AccessError::SiteNotFound)
}

impl Access {
    /// A page of `size` of one site's items, which `read` reads with a limit of one more
    /// (to tell whether more follow); `SiteNotFound` for an unknown site. The page is read
    /// first: an unknown site has no items, so only an empty page costs a second statement
    /// (whether the site exists).
    async fn page_of_site<T>(
        &self,
        site_id: Uuid,
        size: u32,
        read: impl AsyncFnOnce(&mut PgConnection, i64) -> Result<Vec<T>, sqlx::Error>,
    ) -> Result<Page<T>> {
        read_page(&self.pool, size, async |conn, limit| {
            let rows = read(conn, limit).await?;
            if rows.is_empty() {
                site_of(conn, site_id).await?;
            }
            Ok::<_, AccessError>(rows)
        })
        .await
    }
}

/// The profile of a user on a site already known to exist.
async fn profile_on(conn: &mut PgConnection, site_id: Uuid, user_id: Uuid) -> Result<Profile> {
    storage::sites::profile(conn, site_id, user_id)
        .await?
        .ok_or(AccessError::SiteNotFound)
}

/// A request and its site's lock: the request is read again under the lock, so a
/// concurrent decision is seen.
async fn lock_request(conn: &mut PgConnection, request_id: Uuid) -> Result<(Site, AccessRequest)> {
    let request = storage::requests::get(conn, request_id)
        .await?
        .ok_or(AccessError::RequestNotFound)?;
    let site = lock_site(conn, request.site_id).await?;
    let request = storage::requests::lock(conn, request_id)
        .await?
        .ok_or(AccessError::RequestNotFound)?;
    Ok((site, request))
}

impl Access {
    /// Access management over `pool` (bound to the access schema) and `cache`.
    pub fn new(pool: PgPool, cache: RightsCache, settings: AccessSettings) -> Self {
        Self {
            pool,
            feed_complete: Arc::new(AtomicBool::new(false)),
            cache,
            settings,
        }
    }

    /// The pool of the access schema: for the waits on the projections' cursors
    /// (AwaitContactsRevision, T8), which read the consumers' stored cursors.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Runs `attempt`; when rule I1 refuses it, waits up to [`PROOF_PATIENCE`] for the
    /// projection to show the user proven and active, and runs it once more if it does.
    async fn patient<T, F, Fut>(&self, attempt: F) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        match attempt().await {
            Err(AccessError::Unproven { user_id, message }) => {
                if self.await_proof(user_id).await? {
                    attempt().await
                } else {
                    Err(AccessError::Unproven { user_id, message })
                }
            }
            other => other,
        }
    }

    /// Whether the projection shows `user_id` proven and active within [`PROOF_PATIENCE`].
    async fn await_proof(&self, user_id: Uuid) -> Result<bool> {
        let deadline = tokio::time::Instant::now() + PROOF_PATIENCE;
        loop {
            let user = {
                let mut conn = self.pool.acquire().await?;
                storage::users::get(&mut conn, user_id).await?
            };
            if user.is_some_and(|user| user.is_proven_and_active()) {
                return Ok(true);
            }
            if tokio::time::Instant::now() + PROOF_POLL > deadline {
                return Ok(false);
            }
            tokio::time::sleep(PROOF_POLL).await;
        }
    }

    /// The rights the actor grants or decides with on a site: its own effective rights, or
    /// an operator's (see the module documentation).
    async fn authority(
        &self,
        conn: &mut PgConnection,
        actor: Actor,
        site: &Site,
    ) -> Result<Effective> {
        if actor.is_operator() {
            return Ok(operator_authority(site));
        }
        Ok(profile_on(conn, site.site_id, actor.actor_id)
            .await?
            .effective)
    }

    /// Writes a person's change of a user's explicit grants on a site ([`Access::write_rights`])
    /// and commits it; returns the profile after, with the change's revision.
    async fn commit_rights(
        &self,
        mut tx: Transaction<'static, Postgres>,
        actor: Actor,
        action: &'static str,
        before: &Profile,
        (grants, term): (&Grants, Term),
        reason: &str,
    ) -> Result<Revised<Profile>> {
        let mut change = Change::new(before.site_id);
        let after = self
            .write_rights(
                &mut tx,
                &mut change,
                Some(actor),
                action,
                before,
                (grants, term),
                reason,
                None,
            )
            .await?;
        change.commit_with(tx, &self.cache, after).await
    }

    /// Writes a user's new explicit grants and their end (T9) as part of `change`: the
    /// grants row, the audit record (who, what, when, why: T5), the RightsChanged event and
    /// the invalidation. Returns the profile after the change.
    #[allow(clippy::too_many_arguments)]
    async fn write_rights(
        &self,
        conn: &mut PgConnection,
        change: &mut Change,
        actor: Option<Actor>,
        action: &'static str,
        before: &Profile,
        (grants, term): (&Grants, Term),
        reason: &str,
        request_id: Option<Uuid>,
    ) -> Result<Profile> {
        let updated_by = actor.map(|actor| actor.actor_id);
        let term = if grants.is_none() {
            Term::default()
        } else {
            term
        };
        storage::grants::write(
            conn,
            before.site_id,
            before.user_id,
            grants,
            term,
            updated_by,
        )
        .await?;
        let after = profile_on(conn, before.site_id, before.user_id).await?;
        change.record(Entry {
            actor,
            action,
            resource_id: before.user_id.to_string(),
            before: grants_json(
                &before
                    .pending
                    .unwrap_or_else(|| before.effective.explicit()),
                term_of(before),
            ),
            after: grants_json(grants, term),
            reason: reason.to_owned(),
        });
        change.event(events::rights_changed(
            actor, before, &after, reason, request_id,
        ));
        change.invalidations.push(Invalidation::Pair {
            site_id: before.site_id,
            user_id: before.user_id,
        });
        Ok(after)
    }

    /// The profile of a user on a site.
    pub async fn profile(&self, key: ProfileRef) -> Result<Profile> {
        let mut conn = self.pool.acquire().await?;
        profile_on(&mut conn, key.site_id, key.user_id).await
    }

    /// Sets some of a user's explicit tool levels (T4); raising one needs a proven, active
    /// user (I1). Returns the profile after, with the change's revision (none when it
    /// changed nothing).
    pub async fn set_tools(&self, actor: Actor, change: ToolsChange) -> Result<Revised<Profile>> {
        self.set_grants(
            actor,
            "access.tools_set",
            |authority, subject, current| {
                let tools = with_levels(current.tools, &change.levels);
                check_tool_change(authority, subject, &tools)?;
                Ok(Grants { tools, ..current })
            },
            (change.site_id, change.user_id, change.etag),
            (change.end, change.start, &change.reason),
        )
        .await
    }

    /// Sets a user's explicit support level (U4–U6); raising it needs a proven, active user
    /// (I1). Returns the profile after, with the change's revision (none when it changed
    /// nothing).
    pub async fn set_support(
        &self,
        actor: Actor,
        change: SupportChange,
    ) -> Result<Revised<Profile>> {
        self.set_grants(
            actor,
            "access.support_set",
            |authority, subject, current| {
                check_support_change(authority, subject)?;
                Ok(Grants {
                    support: change.level,
                    ..current
                })
            },
            (change.site_id, change.user_id, change.etag),
            (change.end, change.start, &change.reason),
        )
        .await
    }

    /// Changes a user's explicit grants on a site (the site, the user and the etag) and their
    /// term (the end, the start and the reason): the common path of [`Access::set_tools`] and
    /// [`Access::set_support`]. `grant` checks the grantor's authority over the change (T4,
    /// U4–U6) and returns the grants after from the current ones; then no self-grant (T7),
    /// the start and the end (T9). A change that changes nothing writes nothing; a raise or a
    /// later end needs a proven, active grantee (I1), waited for as [`Access::patient`] does.
    /// Records the change as `action`, with its reason (T5).
    async fn set_grants(
        &self,
        actor: Actor,
        action: &'static str,
        grant: impl Fn(&Effective, &Subject, Grants) -> Result<Grants>,
        (site_id, user_id, etag): (Uuid, Uuid, Etag),
        (end, start, reason): (EndChange, Option<DateTime<Utc>>, &str),
    ) -> Result<Revised<Profile>> {
        let actor = actor.person()?;
        let grant = &grant;
        self.patient(|| async move {
            let mut tx = self.pool.begin().await?;
            let site = lock_site(&mut tx, site_id).await?;
            let before = profile_on(&mut tx, site_id, user_id).await?;
            check_etag(etag, before.version, "the access profile")?;
            let current = before.effective.explicit();
            let authority = self.authority(&mut tx, actor, &site).await?;
            let subject = subject_of(&before.effective);
            let grants = grant(&authority, &subject, current)?;
            check_self_grant(actor.actor_id, user_id, &current, &grants)?;
            check_start(&current, before.valid_from, start)?;
            let valid_until = end_after_change(&grants, before.valid_until, end);
            check_end_change(
                &authority,
                actor.actor_id,
                user_id,
                &subject,
                before.valid_until,
                valid_until,
            )?;
            if grants == current && valid_until == before.valid_until && start.is_none() {
                return Ok(Revised::unchanged(before));
            }
            let raises =
                !grants.tools.is_within(&current.tools) || grants.support > current.support;
            if raises || later(before.valid_until, valid_until) {
                require_proven(&mut tx, user_id, UNPROVEN_GRANTEE).await?;
            }
            self.commit_rights(
                tx,
                actor,
                action,
                &before,
                (
                    &grants,
                    Term {
                        valid_from: start,
                        valid_until,
                    },
                ),
                reason,
            )
            .await
        })
        .await
    }

    /// Removes every explicit grant of a user on a site (T4, U4–U6); implied rights remain.
    /// Returns the profile after, with the change's revision (none when there was nothing to
    /// remove).
    pub async fn revoke(&self, actor: Actor, revocation: Revocation) -> Result<Revised<Profile>> {
        let Revocation {
            site_id,
            user_id,
            reason,
            etag,
        } = revocation;
        let actor = actor.person()?;
        let mut tx = self.pool.begin().await?;
        let site = lock_site(&mut tx, site_id).await?;
        let before = profile_on(&mut tx, site_id, user_id).await?;
        check_etag(etag, before.version, "the access profile")?;
        let authority = self.authority(&mut tx, actor, &site).await?;
        // T9: a grant that has not started is revoked like one in force.
        let held = before
            .pending
            .unwrap_or_else(|| before.effective.explicit());
        check_revoke(
            &authority,
            &Subject {
                explicit: held,
                ..subject_of(&before.effective)
            },
        )?;
        if held.is_none() {
            return Ok(Revised::unchanged(before));
        }
        self.commit_rights(
            tx,
            actor,
            "access.revoked",
            &before,
            (&Grants::NONE, Term::default()),
            &reason,
        )
        .await
    }

    /// A page of a site's profiles (users with a grant or a role implying rights).
    pub async fn list_site_access(&self, query: SiteAccessQuery) -> Result<Page<Profile>> {
        let SiteAccessQuery {
            site_id,
            after,
            size,
        } = query;
        self.page_of_site(site_id, size, async |conn, limit| {
            storage::sites::site_profiles(conn, site_id, after, limit).await
        })
        .await
    }

    /// A page of one user's profiles on the sites where it has rights.
    pub async fn list_user_access(&self, query: UserAccessQuery) -> Result<Page<Profile>> {
        let UserAccessQuery {
            user_id,
            after,
            size,
        } = query;
        read_page(&self.pool, size, async |conn, limit| {
            storage::sites::user_profiles(conn, user_id, after, limit).await
        })
        .await
    }

    /// Whether a user holds a permission on a site, from the rights cache (from the
    /// database when the query skips the cache). An unknown site is a denial with its reason.
    pub async fn check(&self, query: CheckQuery) -> Result<Decision> {
        let rights = if query.skip_cache {
            self.cache
                .rights_from_database(&self.pool, query.site_id, query.user_id)
                .await?
        } else {
            self.cache
                .rights(&self.pool, query.site_id, query.user_id)
                .await?
        };
        match rights {
            Rights::Known(effective) => Ok(effective.check(query.permission)),
            Rights::UnknownSite => Ok(Decision {
                allowed: false,
                reason: UNKNOWN_SITE_REASON.into(),
                rule: "",
            }),
        }
    }

    /// The checks of a batch, answered in order, each as [`Access::check`] answers it. The
    /// checks of one site are answered one after the other (the first loads the site into
    /// the rights cache when it is not there, the others then hit it); those of different
    /// sites, [`SITES_CHECKED_AT_ONCE`] sites at a time, so that a batch of sites the cache
    /// lacks waits for about one load, not one per site.
    pub async fn check_all(&self, queries: Vec<CheckQuery>) -> Result<Vec<Decision>> {
        let mut sites: Vec<Vec<(usize, CheckQuery)>> = Vec::new();
        let mut group_of_site: HashMap<Uuid, usize> = HashMap::new();
        for (index, query) in queries.into_iter().enumerate() {
            let group = *group_of_site.entry(query.site_id).or_insert_with(|| {
                sites.push(Vec::new());
                sites.len() - 1
            });
            sites[group].push((index, query));
        }
        let by_site: Vec<Vec<(usize, Decision)>> = futures::stream::iter(sites)
            .map(|checks| async move {
                let mut decided = Vec::with_capacity(checks.len());
                for (index, query) in checks {
                    decided.push((index, self.check(query).await?));
                }
                Ok::<_, AccessError>(decided)
            })
            .buffer_unordered(SITES_CHECKED_AT_ONCE)
            .try_collect()
            .await?;
        let mut decided: Vec<(usize, Decision)> = by_site.into_iter().flatten().collect();
        decided.sort_unstable_by_key(|(index, _)| *index);
        Ok(decided.into_iter().map(|(_, decision)| decision).collect())
    }

    /// A page of the sites where a user holds a permission (effective rights, T3), in
    /// site-id order, each with the reason and rule that allow it (see [`Access::lookup`]).
    pub async fn lookup_sites(&self, query: LookupSitesQuery) -> Result<Page<Holding>> {
        let mut conn = self.pool.acquire().await?;
        self.lookup(&mut conn, Lookup::from(query)).await
    }

    /// A page of the users who hold a permission on a site (effective rights, T3), in
    /// user-id order, each with the reason and rule that allow it (see [`Access::lookup`]).
    /// An unknown site is `NotFound`.
    pub async fn lookup_users(&self, query: LookupUsersQuery) -> Result<Page<Holding>> {
        let mut conn = self.pool.acquire().await?;
        site_of(&mut conn, query.site_id).await?;
        self.lookup(&mut conn, Lookup::from(query)).await
    }

    /// A page of `holders` of `permission` after the key `after`, read from the database.
    ///
    /// Once the permission feed's backfill is done, its table `effective_permissions` holds
    /// every permission as the rights model decided it at the last change of its causes, so
    /// a page is one range of the table's index. The one thing the table can miss is time
    /// (T9): a grant whose start or end came but that the sweeper has not recorded yet. The
    /// keys of such grants are read beside the range (few rows: the sweeper records them
    /// within its interval) and decided afresh from their profiles, so a lookup honours
    /// starts and ends to the second, like `Check`. Until the backfill is done, the
    /// candidates' profiles are read and decided instead (the slower path).
    async fn lookup(&self, conn: &mut PgConnection, lookup: Lookup) -> Result<Page<Holding>> {
        if !self.feed_complete(conn).await? {
            return self.lookup_by_profiles(conn, lookup).await;
        }
        let Lookup {
            holders,
            permission,
            mut after,
            size,
        } = lookup;
        let wanted = size as usize + 1;
        let at = Utc::now();
        let mut found = Vec::new();
        let mut batch = lookup_batch(size);
        loop {
            let (held, passed) = storage::effective::holding(
                conn,
                holders,
                permission.number() as i16,
                at,
                after,
                batch,
            )
            .await?;
            let decided = if passed.is_empty() {
                Vec::new()
            } else {
                let (site_ids, user_ids): (Vec<Uuid>, Vec<Uuid>) =
                    passed.iter().map(|key| holders.pair(*key)).unzip();
                storage::sites::pair_profiles(conn, &site_ids, &user_ids)
                    .await?
                    .into_iter()
                    .filter_map(|profile| holding_of(&profile, profile.effective.check(permission)))
                    .collect()
            };
            let read = LookupBatch {
                held,
                passed,
                decided,
                limit: batch as usize,
            };
            let (page, bound) = read.merge(holders);
            found.extend(page);
            if found.len() >= wanted || bound.is_none() {
                break;
            }
            after = bound;
            batch = next_lookup_batch(batch);
        }
        found.truncate(wanted);
        Ok(Page::from_rows(found, size))
    }

    /// Whether the permission feed's table holds every permission (its backfill is done;
    /// remembered once seen, since it never goes back).
    async fn feed_complete(&self, conn: &mut PgConnection) -> Result<bool> {
        if self.feed_complete.load(Ordering::Relaxed) {
            return Ok(true);
        }
        let done = storage::effective::backfill_done(conn).await?;
        if done {
            self.feed_complete.store(true, Ordering::Relaxed);
        }
        Ok(done)
    }

    /// [`Access::lookup`] while the feed's backfill runs: the candidates (a grant or a
    /// rights-implying role) are read in batches with their profiles and decided by the
    /// rights model.
    async fn lookup_by_profiles(
        &self,
        conn: &mut PgConnection,
        lookup: Lookup,
    ) -> Result<Page<Holding>> {
        let Lookup {
            holders,
            permission,
            mut after,
            size,
        } = lookup;
        let mut found = Vec::new();
        let mut batch = lookup_batch(size);
        loop {
            let rows = match holders {
                Holders::SitesOf(user_id) => {
                    storage::sites::user_profiles(conn, user_id, after, batch).await?
                }
                Holders::UsersOf(site_id) => {
                    storage::sites::site_profiles(conn, site_id, after, batch).await?
                }
            };
            let exhausted = rows.len() < batch as usize;
            after = rows
                .last()
                .map(|profile| holders.key_of_pair(profile.site_id, profile.user_id))
                .or(after);
            if collect_allowed(rows, permission, size, &mut found) || exhausted {
                break;
            }
            batch = next_lookup_batch(batch);
        }
        Ok(Page::from_rows(found, size))
    }

    /// A page of the users who may decide requests of `kind` on a site (A3), role holders
    /// first, after the key `after`.
    pub async fn list_approvers(
        &self,
        query: ApproversQuery,
    ) -> Result<Page<(ApproverKey, Approver)>> {
        let ApproversQuery {
            site_id,
            kind,
            after,
            size,
        } = query;
        let mut conn = self.pool.acquire().await?;
        let site = site_of(&mut conn, site_id).await?;
        let members = storage::sites::members(&mut conn, site_id).await?;
        let requirement = kind.approve_permission().requirement();
        let keyed: Vec<(ApproverKey, Approver)> = approvers(kind, site.facts, &members)
            .into_iter()
            .map(|approver| {
                let rank = members
                    .iter()
                    .find(|member| member.user_id == approver.user_id)
                    .and_then(|member| {
                        Effective::of(&member.subject, site.facts).implying_role(requirement)
                    })
                    .map_or(u8::MAX, |role| role.number() as u8);
                ((rank, approver.user_id), approver)
            })
            .filter(|(key, _)| after.is_none_or(|after| *key > after))
            .collect();
        Ok(Page::from_rows(keyed, size))
    }

    /// The user ids of the approvers of `kinds` on a site, sorted, without duplicates.
    async fn approver_ids(
        &self,
        conn: &mut PgConnection,
        site: &Site,
        kinds: &[AccessRequestKind],
    ) -> Result<Vec<Uuid>> {
        let members = storage::sites::members(conn, site.site_id).await?;
        let mut ids: Vec<Uuid> = Vec::new();
        for kind in kinds {
            for approver in approvers(*kind, site.facts, &members) {
                if !ids.contains(&approver.user_id) {
                    ids.push(approver.user_id);
                }
            }
        }
        Ok(ids)
    }

    /// Submits the actor's request for access to the site named by site number and customer
    /// number (I1, A1, S3, A5, A6), applying the site's domain policy (A7). Returns the
    /// request, with the change's revision.
    pub async fn submit(
        &self,
        actor: Actor,
        submission: Submission,
    ) -> Result<Revised<AccessRequest>> {
        let actor = actor.person()?;
        self.patient(|| self.submit_once(actor, &submission)).await
    }

    async fn submit_once(
        &self,
        actor: Actor,
        submission: &Submission,
    ) -> Result<Revised<AccessRequest>> {
        let Submission {
            site_number,
            customer_number,
            ask,
            justification,
        } = submission;
        let (kind, asked) = (ask.kind(), ask.asked());
        let mut tx = self.pool.begin().await?;
        // Before the site is looked up: an unproven caller learns nothing about sites.
        require_proven(&mut tx, actor.actor_id, UNPROVEN_REQUESTER).await?;
        let found = storage::sites::find(&mut tx, site_number.as_str(), customer_number.as_str())
            .await?
            .ok_or(AccessError::NoMatchingSite)?;
        let site = lock_site(&mut tx, found.site_id).await?;
        // A blocked requester is refused like a wrong site number (S3), under the site's lock
        // that blocks take too: a block committed before this request commits refuses it.
        blocks::refuse_blocked(&mut tx, site.site_id, actor.actor_id).await?;
        let requester = profile_on(&mut tx, site.site_id, actor.actor_id).await?;
        let held = requester.effective.rights();
        let raises = match kind {
            AccessRequestKind::SiteAccess => !asked.tools.is_within(&held.tools),
            AccessRequestKind::SupportAccess => asked.support > held.support,
        };
        if !raises {
            return Err(AccessError::rule(
                "A5",
                "the request asks for nothing above what the requester already holds on the site",
            ));
        }
        let approver_ids = self.approver_ids(&mut tx, &site, &[kind]).await?;
        let policy = self
            .matching_policy(&mut tx, site.site_id, actor.actor_id)
            .await?;
        let request_id = Uuid::now_v7();
        let expire_time = Utc::now()
            + chrono::Duration::from_std(self.settings.request_max_age)
                .map_err(|error| AccessError::Internal(error.into()))?;
        let request = storage::requests::insert(
            &mut tx,
            &NewRequest {
                request_id,
                site_id: site.site_id,
                requester_id: actor.actor_id,
                kind,
                requested: &asked,
                justification,
                matched_domain: policy.as_ref().map(|policy| policy.domain.as_str()),
                expire_time,
            },
        )
        .await
        .map_err(|error| insert_error(error, kind))?;
        let mut change = Change::new(site.site_id);
        change.record(Entry {
            actor: Some(actor),
            action: "request.submitted",
            resource_id: request_id.to_string(),
            before: None,
            after: to_json(&request),
            reason: request.justification.clone(),
        });
        change.event(events::access_request_submitted(
            Some(actor),
            &request,
            &approver_ids,
        ));
        match policy {
            Some(policy) if policy.mode == PolicyMode::AutoApprove => {
                self.auto_approve(tx, change, request, &requester, &policy)
                    .await
            }
            _ => change.commit_with(tx, &self.cache, request).await,
        }
    }

    /// The policy of a site matching the user's verified login e-mail, if any (A7).
    async fn matching_policy(
        &self,
        conn: &mut PgConnection,
        site_id: Uuid,
        user_id: Uuid,
    ) -> Result<Option<DomainPolicy>> {
        let Some(user) = storage::users::get(conn, user_id).await? else {
            return Ok(None);
        };
        if !user.email_verified {
            return Ok(None);
        }
        let Some(domain) = EmailDomain::of_email(&user.email) else {
            return Ok(None);
        };
        Ok(storage::policies::get(conn, site_id, domain.as_str()).await?)
    }

    /// A7: approves a just-submitted request with the policy's baseline (never more than
    /// asked, A4) and commits; leaves it PENDING when that would raise nothing, or when the
    /// requester is the one who last set the policy (T7: nobody grants itself rights, not
    /// even through a policy it set). The approval and the grant are the service's own
    /// doing: they name no actor.
    async fn auto_approve(
        &self,
        mut tx: Transaction<'_, Postgres>,
        mut change: Change,
        request: AccessRequest,
        requester: &Profile,
        policy: &DomainPolicy,
    ) -> Result<Revised<AccessRequest>> {
        let grant = baseline_grant(request.kind, &request.requested, &policy.baseline);
        let current = requester.effective.explicit();
        let grants = Grants {
            tools: current.tools.join(grant.tools),
            support: current.support.max(grant.support),
        };
        // T7: a policy would otherwise grant its own setter what the setter chose. T9: a
        // grant that has not started changes only by revocation; an approver decides.
        if grants == current
            || policy.updated_by == request.requester_id
            || requester.valid_from.is_some()
        {
            return change.commit_with(tx, &self.cache, request).await;
        }
        let reason = format!(
            "approved at once by the domain policy of {} (A7)",
            policy.domain
        );
        let decided = decide_request(
            &mut tx,
            &mut change,
            None,
            "request.auto_approved",
            events::access_request_decided,
            &request,
            &storage::requests::Decision {
                state: RequestState::Approved,
                decided_by: None,
                granted: Some(&grant),
                reason: Some(&reason),
                auto_approved: true,
                expected_version: Some(request.version),
            },
        )
        .await?;
        self.write_rights(
            &mut tx,
            &mut change,
            None,
            "access.request_granted",
            requester,
            // A7 keeps the end the requester's grant has, if any (T9).
            (&grants, term_of(requester)),
            &reason,
            Some(request.request_id),
        )
        .await?;
        change.commit_with(tx, &self.cache, decided).await
    }

    /// A request.
    pub async fn get_request(&self, request: RequestRef) -> Result<AccessRequest> {
        let mut conn = self.pool.acquire().await?;
        storage::requests::get(&mut conn, request.request_id)
            .await?
            .ok_or(AccessError::RequestNotFound)
    }

    /// A page of a site's requests, optionally of one state, newest first.
    pub async fn list_requests(&self, query: SiteRequestsQuery) -> Result<Page<AccessRequest>> {
        let SiteRequestsQuery {
            site_id,
            state,
            before,
            size,
        } = query;
        self.page_of_site(site_id, size, async |conn, limit| {
            storage::requests::page_of_site(conn, site_id, state, before, limit).await
        })
        .await
    }

    /// A page of the actor's own requests, newest first.
    pub async fn list_my_requests(
        &self,
        actor: Actor,
        query: MyRequestsQuery,
    ) -> Result<Page<AccessRequest>> {
        let MyRequestsQuery { before, size } = query;
        let actor = actor.person()?;
        read_page(&self.pool, size, async |conn, limit| {
            storage::requests::page_of_requester(conn, actor.actor_id, before, limit).await
        })
        .await
    }

    /// Approves a PENDING request, granting `choice` (I1, A3, A4, A5, A6, T4, U4–U6).
    /// Returns the request and the requester's profile after, with the change's revision.
    pub async fn approve(
        &self,
        actor: Actor,
        approval: Approval,
    ) -> Result<Revised<(AccessRequest, Profile)>> {
        let actor = actor.person()?;
        self.patient(|| self.approve_once(actor, &approval)).await
    }

    async fn approve_once(
        &self,
        actor: Actor,
        approval: &Approval,
    ) -> Result<Revised<(AccessRequest, Profile)>> {
        let Approval {
            request_id,
            choice,
            end,
            start,
            ref note,
            etag,
        } = *approval;
        let note = note.as_deref();
        let mut tx = self.pool.begin().await?;
        let (site, request) = lock_request(&mut tx, request_id).await?;
        check_pending(&request)?;
        check_etag(etag, request.version, "the access request")?;
        let asked = request.requested;
        let granted = part_of(
            request.kind,
            &Grants {
                tools: match choice.tools {
                    None => asked.tools,
                    Some(levels) => with_levels(asked.tools, &levels),
                },
                support: choice.support.unwrap_or(asked.support),
            },
        );
        let authority = self.authority(&mut tx, actor, &site).await?;
        let before = profile_on(&mut tx, site.site_id, request.requester_id).await?;
        let grants = check_approval(
            &authority,
            &subject_of(&before.effective),
            request.kind,
            &asked,
            &granted,
        )?;
        check_not_own_request(actor.actor_id, request.requester_id)?;
        check_start(&before.effective.explicit(), before.valid_from, start)?;
        let valid_until = end_after_approval(
            &before.effective.explicit(),
            before.valid_until,
            end,
            start.unwrap_or_else(Utc::now),
        )?;
        require_proven(&mut tx, request.requester_id, UNPROVEN_APPROVAL).await?;
        let mut change = Change::new(site.site_id);
        let decided = decide_request(
            &mut tx,
            &mut change,
            Some(actor),
            "request.approved",
            events::access_request_decided,
            &request,
            &storage::requests::Decision {
                state: RequestState::Approved,
                decided_by: Some(actor.actor_id),
                granted: Some(&granted),
                reason: note,
                auto_approved: false,
                expected_version: Some(request.version),
            },
        )
        .await?;
        let after = if grants == before.effective.explicit()
            && valid_until == before.valid_until
            && start.is_none()
        {
            before
        } else {
            let reason = note.map_or_else(
                || format!("access request {request_id} approved"),
                str::to_owned,
            );
            self.write_rights(
                &mut tx,
                &mut change,
                Some(actor),
                "access.request_granted",
                &before,
                (
                    &grants,
                    Term {
                        valid_from: start,
                        valid_until,
                    },
                ),
                &reason,
                Some(request_id),
            )
            .await?
        };
        change.commit_with(tx, &self.cache, (decided, after)).await
    }

    /// Rejects a PENDING request with a reason (A3, A4, A6).
    pub async fn reject(&self, actor: Actor, rejection: Rejection) -> Result<AccessRequest> {
        let Rejection {
            request_id,
            reason,
            etag,
        } = rejection;
        let actor = actor.person()?;
        let mut tx = self.pool.begin().await?;
        let (site, request) = lock_request(&mut tx, request_id).await?;
        check_pending(&request)?;
        check_etag(etag, request.version, "the access request")?;
        let authority = self.authority(&mut tx, actor, &site).await?;
        check_decider(&authority, request.kind)?;
        let mut change = Change::new(site.site_id);
        let decided = reject_request(&mut tx, &mut change, actor, &request, reason).await?;
        change.commit(tx, &self.cache).await?;
        Ok(decided)
    }

    /// Cancels a PENDING request; only its requester may (A6).
    pub async fn cancel(&self, actor: Actor, cancellation: Cancellation) -> Result<AccessRequest> {
        let Cancellation { request_id, etag } = cancellation;
        let actor = actor.person()?;
        let mut tx = self.pool.begin().await?;
        let (site, request) = lock_request(&mut tx, request_id).await?;
        if request.requester_id != actor.actor_id {
            return Err(AccessError::Forbidden(
                "only the requester may cancel its access request".into(),
            ));
        }
        check_pending(&request)?;
        check_etag(etag, request.version, "the access request")?;
        let mut change = Change::new(site.site_id);
        let decided = decide_request(
            &mut tx,
            &mut change,
            Some(actor),
            "request.cancelled",
            events::access_request_cancelled,
            &request,
            &storage::requests::Decision {
                state: RequestState::Cancelled,
                decided_by: None,
                granted: None,
                reason: None,
                auto_approved: false,
                expected_version: Some(request.version),
            },
        )
        .await?;
        change.commit(tx, &self.cache).await?;
        Ok(decided)
    }

    /// Expires up to one batch of PENDING requests past their expiry time (A6). Returns how
    /// many it expired; call again while it returns a full batch.
    pub async fn expire_due(&self) -> Result<usize> {
        let mut tx = self.pool.begin().await?;
        let due = storage::requests::lock_expired(&mut tx, EXPIRY_BATCH as i64).await?;
        let mut expired = 0;
        for request in &due {
            let decision = storage::requests::Decision {
                state: RequestState::Expired,
                decided_by: None,
                granted: None,
                reason: None,
                auto_approved: false,
                expected_version: Some(request.version),
            };
            let Some(decided) =
                storage::requests::decide(&mut tx, request.request_id, &decision).await?
            else {
                continue;
            };
            storage::audit::append(
                &mut tx,
                &NewRecord {
                    site_id: request.site_id,
                    actor_id: None,
                    via_service: None,
                    action: "request.expired",
                    resource_id: request.request_id.to_string(),
                    before: to_json(request),
                    after: to_json(&decided),
                    reason: "left pending past the maximum age (A6)",
                },
            )
            .await?;
            events::append(&mut tx, &events::access_request_expired(&decided)).await?;
            expired += 1;
        }
        tx.commit().await?;
        if expired > 0 {
            tracing::info!(expired, "access requests expired");
        }
        Ok(due.len())
    }

    /// Starts up to [`EXPIRY_BATCH`] grants whose start came (T9), one transaction each: the
    /// grant counts from its start whatever the sweeper does (checks honour it); this makes
    /// the start a recorded change: the audit record `access.started`, the RightsChanged
    /// event with the profile before and after, the cache invalidation. Returns how many it
    /// started; call again while it returns a full batch.
    pub async fn start_due(&self) -> Result<usize> {
        one_by_one("grants started", EXPIRY_BATCH, || self.start_one()).await
    }

    /// Starts the grant with the earliest start that came, if any; whether there was one.
    async fn start_one(&self) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let Some((site_id, user_id, valid_from)) = storage::grants::lock_started(&mut tx).await?
        else {
            return Ok(false);
        };
        let before = storage::sites::profile_at(
            &mut tx,
            site_id,
            user_id,
            valid_from - chrono::Duration::microseconds(1),
        )
        .await?
        .ok_or(AccessError::SiteNotFound)?;
        storage::grants::mark_started(&mut tx, site_id, user_id).await?;
        let after = profile_on(&mut tx, site_id, user_id).await?;
        let mut change = Change::new(site_id);
        change.record(Entry {
            actor: None,
            action: "access.started",
            resource_id: user_id.to_string(),
            before: grants_json(&before.effective.explicit(), term_of(&before)),
            after: grants_json(&after.effective.explicit(), term_of(&after)),
            reason: STARTED_REASON.to_owned(),
        });
        change.event(events::rights_changed(
            None,
            &before,
            &after,
            STARTED_REASON,
            None,
        ));
        change
            .invalidations
            .push(Invalidation::Pair { site_id, user_id });
        change.commit(tx, &self.cache).await?;
        Ok(true)
    }

    /// Ends up to [`EXPIRY_BATCH`] grants whose end is due (T9), one transaction each:
    /// removes the explicit grants as a revocation would, and records it (audit, the
    /// RightsChanged event marked `ended` with the profile before and after, the cache
    /// invalidation). Returns how many it ended; call again while it returns a full batch.
    pub async fn end_due(&self) -> Result<usize> {
        one_by_one("grants ended", EXPIRY_BATCH, || self.end_one()).await
    }

    /// Ends the grant with the earliest due end, if any; whether there was one.
    async fn end_one(&self) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let Some(due) = storage::grants::lock_ended(&mut tx).await? else {
            return Ok(false);
        };
        // The profile as it stood while the grant was in force.
        let before = storage::sites::profile_at(
            &mut tx,
            due.site_id,
            due.user_id,
            due.valid_until - chrono::Duration::microseconds(1),
        )
        .await?
        .ok_or(AccessError::SiteNotFound)?;
        let mut change = Change::new(due.site_id);
        storage::grants::write(
            &mut tx,
            due.site_id,
            due.user_id,
            &Grants::NONE,
            Term::default(),
            None,
        )
        .await?;
        let after = profile_on(&mut tx, due.site_id, due.user_id).await?;
        change.record(Entry {
            actor: None,
            action: "access.ended",
            resource_id: due.user_id.to_string(),
            before: grants_json(
                &before.effective.explicit(),
                Term {
                    valid_from: None,
                    valid_until: Some(due.valid_until),
                },
            ),
            after: grants_json(&Grants::NONE, Term::default()),
            reason: ENDED_REASON.to_owned(),
        });
        change.event(events::grant_ended(&before, &after, ENDED_REASON));
        change.invalidations.push(Invalidation::Pair {
            site_id: due.site_id,
            user_id: due.user_id,
        });
        change.commit(tx, &self.cache).await?;
        Ok(true)
    }

    /// Announces up to [`EXPIRY_BATCH`] grants ending within [`ENDING_NOTICE_AHEAD`] whose
    /// end was not announced yet (T9), one transaction each: publishes GrantEndingSoon and
    /// marks the end announced, so each end is announced once across restarts and replicas.
    /// Returns how many it announced; call again while it returns a full batch.
    pub async fn announce_ending(&self) -> Result<usize> {
        one_by_one("grant ends announced", EXPIRY_BATCH, || self.announce_one()).await
    }

    /// Announces the earliest unannounced end within the notice window, if any; whether
    /// there was one.
    async fn announce_one(&self) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let Some(due) =
            storage::grants::lock_ending_unannounced(&mut tx, ENDING_NOTICE_AHEAD).await?
        else {
            return Ok(false);
        };
        let profile = profile_on(&mut tx, due.site_id, due.user_id).await?;
        storage::grants::mark_announced(&mut tx, due.site_id, due.user_id).await?;
        let mut change = Change::new(due.site_id);
        change.event(events::grant_ending_soon(&profile, due.valid_until));
        change.commit(tx, &self.cache).await?;
        Ok(true)
    }

    /// Creates or changes a site's policy for an e-mail domain (A7, T4, U4).
    pub async fn set_domain_policy(
        &self,
        actor: Actor,
        change: PolicyChange,
    ) -> Result<DomainPolicy> {
        let PolicyChange {
            site_id,
            domain,
            mode,
            baseline,
            etag,
        } = change;
        let actor = actor.person()?;
        let mut tx = self.pool.begin().await?;
        let site = lock_site(&mut tx, site_id).await?;
        let authority = self.authority(&mut tx, actor, &site).await?;
        check_domain_baseline(&authority, &baseline)?;
        let before = storage::policies::get(&mut tx, site_id, domain.as_str()).await?;
        check_etag(
            etag,
            before.as_ref().map_or(0, |policy| policy.version),
            "the domain policy",
        )?;
        let after = storage::policies::upsert(
            &mut tx,
            site_id,
            domain.as_str(),
            mode,
            &baseline,
            actor.actor_id,
        )
        .await?;
        let approver_ids = self
            .approver_ids(&mut tx, &site, &AccessRequestKind::ALL)
            .await?;
        let mut change = Change::new(site_id);
        change.record(Entry {
            actor: Some(actor),
            action: "domain_policy.set",
            resource_id: domain.as_str().to_owned(),
            before: before.as_ref().and_then(to_json),
            after: to_json(&after),
            reason: String::new(),
        });
        change.event(events::domain_policy_changed(
            Some(actor),
            &site,
            before.as_ref(),
            &after,
            &approver_ids,
        ));
        change.commit(tx, &self.cache).await?;
        Ok(after)
    }

    /// A page of a site's domain policies in domain order.
    pub async fn list_domain_policies(&self, query: PoliciesQuery) -> Result<Page<DomainPolicy>> {
        let PoliciesQuery {
            site_id,
            after,
            size,
        } = query;
        self.page_of_site(site_id, size, async |conn, limit| {
            storage::policies::page_of_site(conn, site_id, after.as_deref(), limit).await
        })
        .await
    }

    /// A page of a site's audit records, newest first.
    pub async fn list_audit_records(
        &self,
        site_id: Uuid,
        before: Option<i64>,
        size: u32,
    ) -> Result<Page<AuditRecord>> {
        self.page_of_site(site_id, size, async |conn, limit| {
            storage::audit::page_of_site(conn, site_id, before, limit).await
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AccountManagementAccess, ContactRole, ManageAccess, SiteFacts};

    /// The key `n` (ordered like `n`).
    fn key(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    /// What the table says user 1 holds on site `n`.
    fn held(n: u128, reason: &str) -> Holding {
        Holding {
            site_id: key(n),
            site_number: format!("{}", 7_000_000 + n),
            user_id: key(1),
            reason: reason.to_owned(),
            rule: "T1".to_owned(),
        }
    }

    fn sites(page: &[Holding]) -> Vec<(u128, &str)> {
        page.iter()
            .map(|h| (h.site_id.as_u128(), h.reason.as_str()))
            .collect()
    }

    #[test]
    fn a_lookup_batch_trusts_the_table_except_where_a_grants_bound_passed() {
        let holders = Holders::SitesOf(key(1));
        // Both reads short: everything is known; site 3's grant ended (the table still
        // shows it), site 4's started (the table does not show it yet).
        let batch = LookupBatch {
            held: vec![held(2, "table"), held(3, "table"), held(5, "table")],
            passed: vec![key(3), key(4)],
            decided: vec![held(4, "fresh")],
            limit: 10,
        };
        let (page, bound) = batch.merge(holders);
        assert_eq!(sites(&page), [(2, "table"), (4, "fresh"), (5, "table")]);
        assert_eq!(bound, None);
    }

    #[test]
    fn a_lookup_batch_stops_where_one_of_its_reads_was_cut() {
        let holders = Holders::SitesOf(key(1));
        // The table's read is full at site 4: whatever lies past it is not read yet, even
        // the fresh decision on site 6.
        let batch = LookupBatch {
            held: vec![held(1, "table"), held(2, "table"), held(4, "table")],
            passed: vec![key(2), key(6)],
            decided: vec![held(2, "fresh"), held(6, "fresh")],
            limit: 3,
        };
        let (page, bound) = batch.merge(holders);
        assert_eq!(sites(&page), [(1, "table"), (2, "fresh"), (4, "table")]);
        assert_eq!(bound, Some(key(4)));
        // The passed bounds' read is full at site 3: the table's site 5 waits for the next
        // batch.
        let batch = LookupBatch {
            held: vec![held(1, "table"), held(5, "table")],
            passed: vec![key(2), key(3)],
            decided: vec![],
            limit: 2,
        };
        let (page, bound) = batch.merge(holders);
        assert_eq!(sites(&page), [(1, "table")]);
        assert_eq!(bound, Some(key(3)));
    }

    #[test]
    fn operators_pass_authority_but_not_target_protections() {
        let site = Site {
            site_id: Uuid::from_u128(9),
            site_number: "1234567".into(),
            customer_number: "7654321".into(),
            facts: SiteFacts {
                admin_may_manage_access: false,
                has_site_technical: true,
            },
        };
        let operator = operator_authority(&site);
        let newcomer = Subject::default();
        let everything = ToolAccess::TOP;
        assert!(check_tool_change(&operator, &newcomer, &everything).is_ok());
        assert!(check_support_change(&operator, &newcomer).is_ok());
        assert!(check_decider(&operator, AccessRequestKind::SupportAccess).is_ok());
        // rule T4: nobody edits the primary's implied rights; rule U6: nor the STC's level.
        let primary = Subject {
            roles: RoleSet::of(&[ContactRole::Primary]),
            ..Subject::default()
        };
        let stc = Subject {
            roles: RoleSet::of(&[ContactRole::SiteTechnical]),
            ..Subject::default()
        };
        let grant = ToolAccess {
            account_management: AccountManagementAccess::Granted,
            manage_access: ManageAccess::View,
            ..ToolAccess::NONE
        };
        assert_eq!(
            check_tool_change(&operator, &primary, &grant)
                .unwrap_err()
                .rule,
            "T4"
        );
        assert_eq!(
            check_support_change(&operator, &stc).unwrap_err().rule,
            "U6"
        );
    }

    #[test]
    fn approval_parts() {
        let grants = Grants {
            tools: ToolAccess::TOP,
            support: SupportLevel::Full,
        };
        assert_eq!(
            part_of(AccessRequestKind::SiteAccess, &grants).support,
            SupportLevel::NoAccess
        );
        assert!(
            part_of(AccessRequestKind::SupportAccess, &grants)
                .tools
                .is_none()
        );
    }
}
