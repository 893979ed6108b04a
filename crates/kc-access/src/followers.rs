//! The projections access management keeps of other services, each followed by a
//! [`Consumer`] that authenticates with this service's own account ([`ServiceToken`]):
//!
//! - `access.contacts` follows `ContactRegistryService/WatchEvents` into `sites` and
//!   `site_roles`: who holds which role on which site, site and customer numbers, and the
//!   switch of rule C3. Every registry event carries the site as it is after the change,
//!   which is upserted first (so the site row is locked like a local change locks it, and
//!   rules never see a half-applied event); then the payload moves roles: a site's creation
//!   inserts its first contacts, an assignment inserts one, a removal deletes that
//!   `(site, user, role)`, a replacement swaps the holder, a primary transfer moves PRIMARY
//!   to the new holder and records the role the previous one keeps.
//! - `access.identity` follows `IdentityService/WatchEvents` into `users`: login e-mail,
//!   whether it is proven (I1, A7) and whether the user is disabled (no access at all). An
//!   account identity has not proven (`USER_STATE_INVITED`) is kept with
//!   `email_verified = false` whatever its event says, so that only proven, active accounts
//!   are granted rights or may ask for them (rule I1).
//!
//! Each event is applied in the consumer's transaction with its cursor, so effects and
//! cursor move together, and every apply is idempotent (upserts and deletes keyed by ids).
//! The events a stream has already delivered share one transaction (each T8 wait of a
//! gateway write waits for one of these consumers, so under load they are the import's
//! longest queues). A transaction of registry events first locks its events' projected
//! sites in site-id order, in the mode the upsert takes (`FOR NO KEY UPDATE`: it updates no
//! key column), before any lock but its cursor's (which only replicas of this consumer
//! take). Why no cycle of waits can form:
//! - once it holds user locks, it waits only for user locks, in shared mode, which only an
//!   exclusive user lock blocks; only the follower of identity takes one, and it waits for
//!   one at most, after every other lock of its transaction (the others it only tries, see
//!   [`apply_identity_events`]), and after it waits for nothing (no site lock);
//! - a writer locks one site, then `users` rows for share and shared user locks, and waits
//!   for nothing of this transaction after its site;
//! - the permission feed's backfill takes sites in site-id order too; the expiry sweeps skip
//!   locked rows; sites new in the transaction are seen by nobody else before it commits.
//!
//! The same transaction notifies every replica's rights cache of what became stale
//! (`<site>:<user>` for each holder a registry event moved; `<site>:*` when it created the
//! site, changed its facts or moved its SITE_TECHNICAL contact; `*:<user>` for an identity
//! event that disabled or enabled the user), and the consumer drops it from its own
//! replica's cache at once too. A registry event that changes no rights (contact details,
//! reminders) invalidates nothing, so the checks of the site's other people stay answered
//! from memory.
//!
//! A registry event with a role number this service does not know (a newer registry) is
//! applied without that role, with a warning: blocking the stream on it would stop every
//! other site's updates.
//!
//! **Rule T8 inside access: writes serialize with the apply of registry events per site.**
//! Every write of access that decides on roles (SetToolAccess, SetSupportAccess,
//! RevokeAccess, the approval, rejection and cancellation of a request, SubmitAccessRequest
//! with its domain-policy approval, SetDomainPolicy) locks the site's row `FOR UPDATE`
//! ([`storage::sites::lock`]) before it reads any role, and reads the site and the roles in
//! later statements; the apply of a registry event upserts that same row first, which
//! takes the same lock, and only then moves roles. Whichever locks the row first commits
//! before the other goes on: a write that locked first decided on the roles before the
//! event and committed before the event moves them; an apply that locked first committed
//! before the write reads roles, and under read committed each of the write's later
//! statements sees it. So no grant commits on a role whose removal access applied before
//! the grant committed. (A statement that waits for the row lock still sees the *other*
//! tables as they were when it started, which is why the lock and the reads are separate
//! statements.) What access has not applied yet it cannot see: a caller that changed roles
//! in the registry awaits the registry's revision with `AwaitContactsRevision` (see
//! [`crate::grpc`]) before it asks access for a change of rights; writes here return their
//! own revision the other way.

use anyhow::Context;
use kc_proto::contacts::contact_registry_service_client::ContactRegistryServiceClient;
use kc_proto::contacts::{self as contacts_pb};
use kc_proto::identity::identity_service_client::IdentityServiceClient;
use kc_proto::identity::{self as identity_pb};
use kc_runtime::Shutdown;
use kc_runtime::client::ServiceToken;
use kc_runtime::outbox::{
    AppliedCursor, ApplyOneByOne, Consumer, MAX_BATCH, apply_all_fn, identity_event_user,
    watch_source,
};
use sqlx::{PgConnection, PgPool};
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use uuid::Uuid;

use crate::cache::RightsCache;
use crate::domain::ContactRole;
use crate::permission_feed;
use crate::storage::invalidation::{Invalidation, notify_invalidations};
use crate::storage::{self, effective, sites::ProjectedSite, users::ProjectedUser};

/// Name (and cursor key) of the consumer of the contact registry's stream.
pub(crate) const CONTACTS_CONSUMER: &str = "access.contacts";
/// Name (and cursor key) of the consumer of identity's stream.
pub(crate) const IDENTITY_CONSUMER: &str = "access.identity";

/// What each consumer applied, which `AwaitContactsRevision` and `AwaitIdentityRevision`
/// await (T8).
#[derive(Clone, Debug)]
pub(crate) struct Applied {
    /// The consumer of the registry's stream.
    pub(crate) contacts: AppliedCursor,
    /// The consumer of identity's stream.
    pub(crate) identity: AppliedCursor,
}

/// Starts both consumers; they run until `shutdown` triggers. Returns their tasks and what
/// each applied.
pub(crate) fn spawn(
    pool: &PgPool,
    cache: &RightsCache,
    token: &ServiceToken,
    contacts: Channel,
    identity: Channel,
    shutdown: &Shutdown,
) -> (Vec<JoinHandle<()>>, Applied) {
    let contacts_cache = cache.clone();
    let apply_contacts = apply_all_fn(move |conn, events: Vec<contacts_pb::Event>| {
        let cache = contacts_cache.clone();
        Box::pin(async move { apply_contacts_events(conn, &cache, &events).await })
    });
    let identity_cache = cache.clone();
    let apply_identity = apply_all_fn(move |conn, events: Vec<identity_pb::Event>| {
        let cache = identity_cache.clone();
        Box::pin(async move { apply_identity_events(conn, &cache, &events).await })
    });
    let registry = Consumer::new(pool.clone(), CONTACTS_CONSUMER).with_batch(MAX_BATCH);
    let contacts_applied = registry.applied();
    let users = Consumer::new(pool.clone(), IDENTITY_CONSUMER).with_batch(MAX_BATCH);
    let identity_applied = users.applied();
    let tasks = vec![
        tokio::spawn(registry.run_batches(
            watch_source(ContactRegistryServiceClient::new(contacts), token.clone()),
            |_: &contacts_pb::Event| true,
            apply_contacts,
            shutdown.wait_owned(),
        )),
        // Only the events that carry a user change `users`: the others (mails, revocations)
        // are passed over without a transaction. `AwaitIdentityRevision` awaits this
        // consumer's cursor at user events only, which are never passed over.
        tokio::spawn(users.run_batches(
            watch_source(IdentityServiceClient::new(identity), token.clone()),
            |event: &identity_pb::Event| identity_event_user(event).is_some(),
            apply_identity,
            shutdown.wait_owned(),
        )),
    ];
    (
        tasks,
        Applied {
            contacts: contacts_applied,
            identity: identity_applied,
        },
    )
}

fn parse_uuid(what: &str, text: &str) -> anyhow::Result<Uuid> {
    Uuid::parse_str(text).with_context(|| format!("{what} `{text}` is not a UUID"))
}

/// The `(user, role)` of a registry contact; `None` (logged) for a role this service does
/// not know.
fn holder(contact: &contacts_pb::Contact) -> anyhow::Result<Option<(Uuid, ContactRole)>> {
    let user_id = parse_uuid("contact user id", &contact.user_id)?;
    match ContactRole::from_number(contact.role) {
        Some(role) => Ok(Some((user_id, role))),
        None => {
            tracing::warn!(
                contact_id = %contact.contact_id,
                role = contact.role,
                "registry contact with an unknown role; ignored"
            );
            Ok(None)
        }
    }
}

/// Adds the contact's role; returns its holder and the role.
async fn add(
    conn: &mut PgConnection,
    site_id: Uuid,
    contact: Option<&contacts_pb::Contact>,
) -> anyhow::Result<Option<(Uuid, ContactRole)>> {
    let Some((user_id, role)) = contact.map(holder).transpose()?.flatten() else {
        return Ok(None);
    };
    storage::sites::add_role(conn, site_id, user_id, role).await?;
    Ok(Some((user_id, role)))
}

/// Removes the contact's role; returns its holder and the role.
async fn remove(
    conn: &mut PgConnection,
    site_id: Uuid,
    contact: Option<&contacts_pb::Contact>,
) -> anyhow::Result<Option<(Uuid, ContactRole)>> {
    let Some((user_id, role)) = contact.map(holder).transpose()?.flatten() else {
        return Ok(None);
    };
    storage::sites::remove_role(conn, site_id, user_id, role).await?;
    Ok(Some((user_id, role)))
}

/// Applies the registry events of one transaction, in order, each as
/// [`apply_contacts_event`] does, then refreshes the permission feed of the holders they
/// moved, together, tells every replica what they made stale (in one statement, delivered
/// at commit) and drops it from this replica's cache. Within the transaction the feed
/// gives each permission's net change: a holder assigned and removed by two of its events
/// changes nothing. The projected sites of the events are locked first, in site-id order
/// ([`storage::sites::lock_projected`]): every other lock the events take comes after them,
/// so a transaction of many events waits for a writer of one of its sites only before it
/// holds anything a writer could wait for.
pub(crate) async fn apply_contacts_events(
    conn: &mut PgConnection,
    cache: &RightsCache,
    events: &[contacts_pb::Event],
) -> anyhow::Result<()> {
    let mut site_ids = events
        .iter()
        .map(|event| {
            let site = event
                .site
                .as_ref()
                .context("registry event without its site")?;
            parse_uuid("site id", &site.site_id)
        })
        .collect::<anyhow::Result<Vec<Uuid>>>()?;
    site_ids.sort_unstable();
    site_ids.dedup();
    if site_ids.len() > 1 {
        storage::sites::lock_projected(conn, &site_ids).await?;
    }
    let mut stale = Vec::new();
    for event in events {
        for what in apply_contacts_event(conn, event).await? {
            if !stale.contains(&what) {
                stale.push(what);
            }
        }
    }
    // The holders the events moved, refreshed together once every role moved.
    let pairs: Vec<(Uuid, Uuid)> = stale
        .iter()
        .filter_map(|what| match what {
            Invalidation::Pair { site_id, user_id } => Some((*site_id, *user_id)),
            _ => None,
        })
        .collect();
    permission_feed::refresh_pairs(conn, &pairs).await?;
    notify_invalidations(conn, &stale).await?;
    for what in stale {
        // Dropped here too, before the commit; the notification drops it again once the
        // transaction commits, so no fill in between keeps the old state.
        cache.invalidate(what);
    }
    Ok(())
}

/// Applies one registry event to `sites` and `site_roles`, refreshing the permission feed
/// of the whole site when its facts may have changed. Returns the cached rights it made
/// stale, whose pairs the caller refreshes ([`permission_feed::refresh_pairs`], once for a
/// transaction's events): the whole site when
/// the site's facts may have changed (a new site, the C3 switch, a SITE_TECHNICAL contact
/// moved: whether the site has one decides the primary's support level, R1), else each
/// holder it moved, on this site (a user's rights depend on its own roles, grants and
/// state and on the site's facts, never on another user's roles). The site's own
/// notification, when its facts changed, is already sent ([`storage::sites::upsert`]).
pub(crate) async fn apply_contacts_event(
    conn: &mut PgConnection,
    event: &contacts_pb::Event,
) -> anyhow::Result<Vec<Invalidation>> {
    use contacts_pb::event::Payload;
    let site = event
        .site
        .as_ref()
        .context("registry event without its site")?;
    let site_id = parse_uuid("site id", &site.site_id)?;
    // Locks the site's row (and notifies when its facts changed).
    let facts_changed = storage::sites::upsert(
        conn,
        &ProjectedSite {
            site_id,
            site_number: &site.site_number,
            customer_number: &site.customer_number,
            admin_may_manage_access: site.admin_may_manage_access,
        },
    )
    .await?;
    let mut moved: Vec<(Uuid, ContactRole)> = Vec::new();
    let mut whole_site = facts_changed;
    match &event.payload {
        Some(Payload::SiteCreated(created)) => {
            for contact in &created.contacts {
                add(conn, site_id, Some(contact)).await?;
            }
            whole_site = true;
        }
        Some(Payload::ContactAssigned(assigned)) => {
            moved.extend(add(conn, site_id, assigned.contact.as_ref()).await?);
        }
        Some(Payload::ContactRemoved(removed)) => {
            moved.extend(remove(conn, site_id, removed.contact.as_ref()).await?);
        }
        Some(Payload::ContactReplaced(replaced)) => {
            moved.extend(remove(conn, site_id, replaced.replaced.as_ref()).await?);
            moved.extend(add(conn, site_id, replaced.contact.as_ref()).await?);
        }
        Some(Payload::PrimaryTransferred(transfer)) => {
            let new_user = parse_uuid("new primary user id", &transfer.new_user_id)?;
            for previous in
                storage::sites::remove_role_holders(conn, site_id, ContactRole::Primary).await?
            {
                moved.push((previous, ContactRole::Primary));
            }
            storage::sites::add_role(conn, site_id, new_user, ContactRole::Primary).await?;
            moved.push((new_user, ContactRole::Primary));
            moved.extend(add(conn, site_id, transfer.previous_primary.as_ref()).await?);
        }
        // The site's facts (the C3 switch among them) may have changed: every holder.
        Some(Payload::SiteUpdated(_)) => whole_site = true,
        // Contact details and notification addresses (C11) change no rights; a payload from
        // a newer registry is left to a whole-site refresh.
        // Neither do S&S reminders and lapses (S&S is no fact of anyone's rights).
        Some(Payload::ContactUpdated(_))
        | Some(Payload::NotificationEmailChangeRequested(_))
        | Some(Payload::SupportEnding(_))
        | Some(Payload::SupportLapsed(_))
        // A recovery's steps change no rights (C12): its transfer is its own event.
        | Some(Payload::PrimaryRecoveryRequested(_))
        | Some(Payload::PrimaryRecoveryRefused(_))
        | Some(Payload::PrimaryRecoveryAttested(_)) => {}
        None => whole_site = true,
    }
    if moved
        .iter()
        .any(|(_, role)| *role == ContactRole::SiteTechnical)
    {
        whole_site = true;
    }
    if whole_site {
        permission_feed::refresh(conn, Invalidation::Site(site_id)).await?;
        return Ok(vec![Invalidation::Site(site_id)]);
    }
    let mut holders: Vec<Uuid> = moved.into_iter().map(|(user_id, _)| user_id).collect();
    holders.sort_unstable();
    holders.dedup();
    Ok(holders
        .into_iter()
        .map(|user_id| Invalidation::Pair { site_id, user_id })
        .collect())
}

/// Applies the identity events of one transaction to `users`, in order, and, for each user
/// whose proven or disabled state the events changed, notifies the replicas, refreshes the
/// user's permission feed and drops the user from this replica's cache (rights depend on
/// nothing else of a user; a user met here first and unproven changes nothing, I1).
///
/// The refreshes come after every event's upsert, so a refresh (which takes the user's
/// exclusive lock, see [`effective::lock_user_exclusive`]) is the last thing the
/// transaction waits for, and the transaction waits for one user's exclusive lock at most:
/// the next users' are only tried. A writer or the registry's follower may hold shared user
/// locks of several users taken in any order; a transaction that waited for two exclusive
/// ones could close a cycle with it. When a lock is busy the transaction rolls back
/// ([`ApplyOneByOne`]), and [`Consumer::run_batches`] applies the same events again one a
/// transaction, each of which waits for its user's lock alone, as the follower did before
/// it took events together.
pub(crate) async fn apply_identity_events(
    conn: &mut PgConnection,
    cache: &RightsCache,
    events: &[identity_pb::Event],
) -> anyhow::Result<()> {
    let mut changed = Vec::new();
    for event in events {
        changed.extend(project_identity_event(conn, event).await?);
    }
    changed.sort_unstable();
    changed.dedup();
    for (index, &user_id) in changed.iter().enumerate() {
        if index > 0 && !effective::try_lock_user_exclusive(conn, user_id).await? {
            return Err(ApplyOneByOne {
                reason: "the lock of a second user whose rights changed is busy",
            }
            .into());
        }
        permission_feed::refresh(conn, Invalidation::User(user_id)).await?;
    }
    let stale: Vec<Invalidation> = changed.into_iter().map(Invalidation::User).collect();
    notify_invalidations(conn, &stale).await?;
    for what in stale {
        // Dropped here too, before the commit; the notification drops it again once the
        // transaction commits, so no fill in between keeps the old state.
        cache.invalidate(what);
    }
    Ok(())
}

/// Applies one identity event to `users`. Returns the user when the event changed whether it
/// is proven or disabled.
async fn project_identity_event(
    conn: &mut PgConnection,
    event: &identity_pb::Event,
) -> anyhow::Result<Option<Uuid>> {
    let Some(user) = identity_event_user(event) else {
        return Ok(None);
    };
    let user_id = parse_uuid("user id", &user.user_id)?;
    let changed = storage::users::upsert(
        conn,
        &ProjectedUser {
            user_id,
            email: user.email.to_lowercase(),
            // Proven means verified AND past the invitation: identity keeps an unproven
            // account in USER_STATE_INVITED until its owner proves the address (rule I1).
            email_verified: user.email_verified
                && user.state != identity_pb::UserState::Invited as i32,
            disabled: user.state == identity_pb::UserState::Disabled as i32,
        },
    )
    .await?;
    Ok(changed.then_some(user_id))
}
