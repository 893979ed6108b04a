//! Revoked access tokens (rule I4): a list kept in memory, fed by identity's
//! `WatchRevocations` stream, that every [`TokenVerifier`](crate::auth::TokenVerifier) built
//! from `--identity-url` consults, so that a disabled user's tokens, or those of a session
//! that logged out, stop counting within seconds instead of when they expire.
//!
//! # Before the first snapshot: fail closed
//!
//! A verifier whose list has never received identity's snapshot (the revocations that
//! existed when the stream opened) does not know which tokens are revoked. It does not guess:
//! [`TokenVerifier::verify`](crate::auth::TokenVerifier::verify) waits a moment
//! ([`READY_WAIT`]) for the snapshot and then refuses the token with `UNAVAILABLE` ("retry
//! later"), as it does when it cannot fetch the signing keys. This costs no availability a
//! service had: a service that just started needs identity for the signing keys anyway, and
//! the snapshot comes over the same channel in the same moment.
//!
//! # After it: the last known list, for a while
//!
//! Once the snapshot arrived the list stays usable when the stream breaks, for
//! [`STALE_AFTER`] (30 s): the follower reconnects with backoff (warning each time identity
//! cannot be reached), and every reconnection receives the full snapshot again, so a
//! revocation committed while the stream was down applies as soon as it is back. Refusing
//! every token whenever identity is briefly unreachable would stop the whole suite with it.
//! But a stream that stays broken longer (identity down, or a network partition between
//! this service and identity while identity keeps revoking) would leave the verifier
//! trusting a stale list forever: after [`STALE_AFTER`] without a connected stream the list
//! is no longer ready, and tokens are refused with `UNAVAILABLE` as before the first
//! snapshot, until the snapshot of the next stream arrives.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kc_proto::identity::identity_service_client::IdentityServiceClient;
use kc_proto::identity::{TokenRevocation, WatchRevocationsRequest};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use uuid::Uuid;

use crate::backoff::Backoff;
use crate::shutdown::Shutdown;
use crate::token::Claims;

/// Longest a verification waits for the first snapshot before refusing the token with
/// `UNAVAILABLE` (see the module documentation).
pub const READY_WAIT: Duration = Duration::from_secs(3);

/// How long the list stays trusted after its stream broke (see the module documentation).
pub const STALE_AFTER: Duration = Duration::from_secs(30);

/// How often expired revocations are forgotten, besides when a user gets a new one.
const PRUNE_INTERVAL: Duration = Duration::from_secs(60);

/// First delay before reconnecting to identity.
const INITIAL_BACKOFF: Duration = Duration::from_millis(100);

/// Largest delay between two reconnection attempts: a stream that broke is back within
/// seconds once identity is (rule I4).
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// One revocation: the access tokens of `user_id` (only those of the session `session_id`
/// when it is set) issued at or before `issued_before` no longer count. Times are seconds
/// since the epoch, like the token claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// The user whose tokens are revoked.
    pub user_id: Uuid,
    /// Only tokens whose `sid` claim is this session; every session when `None`.
    pub session_id: Option<String>,
    /// Tokens whose `iat` is at or before this second are revoked.
    pub issued_before: i64,
    /// From this second on every token the revocation covers has expired: it is forgotten.
    pub expire_time: i64,
}

/// Why a [`TokenRevocation`] from the stream was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidRevocation {
    /// `user_id` is not a UUID.
    #[error("token revocation: user_id is not a uuid")]
    UserId,
    /// `issued_before` is missing.
    #[error("token revocation: issued_before is missing")]
    IssuedBefore,
    /// `expire_time` is missing.
    #[error("token revocation: expire_time is missing")]
    ExpireTime,
}

impl TryFrom<&TokenRevocation> for Revocation {
    type Error = InvalidRevocation;

    fn try_from(message: &TokenRevocation) -> Result<Self, Self::Error> {
        let user_id =
            Uuid::parse_str(message.user_id.trim()).map_err(|_| InvalidRevocation::UserId)?;
        let session_id = Some(message.session_id.trim())
            .filter(|session| !session.is_empty())
            .map(str::to_owned);
        // A fraction of a second only widens `issued_before` to its whole second: `iat` has
        // whole seconds, and a token issued in that second may be older than the revocation.
        let issued_before = message
            .issued_before
            .as_ref()
            .ok_or(InvalidRevocation::IssuedBefore)?
            .seconds;
        let expire_time = message
            .expire_time
            .as_ref()
            .ok_or(InvalidRevocation::ExpireTime)?;
        // Kept until the end of the second it ends in.
        let expire_time = expire_time.seconds + i64::from(expire_time.nanos > 0);
        Ok(Self {
            user_id,
            session_id,
            issued_before,
            expire_time,
        })
    }
}

/// A revocation as stored under its user.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    session_id: Option<String>,
    issued_before: i64,
    expire_time: i64,
}

impl Entry {
    /// Whether this entry revokes everything `other` does (so `other` adds nothing).
    fn covers(&self, other: &Entry) -> bool {
        (self.session_id.is_none() || self.session_id == other.session_id)
            && self.issued_before >= other.issued_before
            && self.expire_time >= other.expire_time
    }

    fn revokes(&self, claims: &Claims, now: i64) -> bool {
        self.expire_time > now
            && claims.iat <= self.issued_before
            && self
                .session_id
                .as_deref()
                .is_none_or(|session| session == claims.sid)
    }
}

struct ListInner {
    /// Unexpired revocations by user id: the hot path is one read lock and one lookup.
    by_user: RwLock<HashMap<Uuid, Vec<Entry>>>,
    /// Whether the first snapshot arrived. Dropped with the list, which tells its follower
    /// to stop.
    ready: watch::Sender<bool>,
    /// Since when no stream is connected (`None` while one is live).
    lost_since: Mutex<Option<Instant>>,
    /// How long the list stays ready after its stream broke.
    stale_after: Duration,
}

/// The access-token revocations a service knows of, shared by its verifier and the task
/// that follows identity's `WatchRevocations` ([`follow`]). Clones share one list.
///
/// Identity, which has the revocations in its own database, may feed a list itself with
/// [`insert`](Self::insert) and [`mark_ready`](Self::mark_ready).
#[derive(Clone)]
pub struct RevocationList {
    inner: Arc<ListInner>,
}

impl std::fmt::Debug for RevocationList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevocationList")
            .field("entries", &self.len())
            .field("ready", &self.is_ready())
            .finish()
    }
}

impl Default for RevocationList {
    fn default() -> Self {
        Self::new()
    }
}

impl RevocationList {
    /// An empty list that has not received a snapshot yet, trusted for [`STALE_AFTER`]
    /// after its stream breaks.
    pub fn new() -> Self {
        Self::with_stale_after(STALE_AFTER)
    }

    /// An empty list that has not received a snapshot yet, trusted for `stale_after` after
    /// its stream breaks (tests use a short one).
    pub fn with_stale_after(stale_after: Duration) -> Self {
        Self {
            inner: Arc::new(ListInner {
                by_user: RwLock::new(HashMap::new()),
                ready: watch::Sender::new(false),
                lost_since: Mutex::new(None),
                stale_after,
            }),
        }
    }

    /// Whether the tokens described by `claims` are revoked now.
    pub fn is_revoked(&self, claims: &Claims) -> bool {
        self.is_revoked_at(claims, chrono::Utc::now().timestamp())
    }

    /// Whether the tokens described by `claims` are revoked at `now` (seconds since the
    /// epoch): their subject is a revoked user, the revocation covers every session or the
    /// token's `sid`, the token was issued at or before `issued_before`, and the revocation
    /// has not expired.
    pub fn is_revoked_at(&self, claims: &Claims, now: i64) -> bool {
        let Ok(user_id) = Uuid::parse_str(&claims.sub) else {
            return false;
        };
        self.read()
            .get(&user_id)
            .is_some_and(|entries| entries.iter().any(|entry| entry.revokes(claims, now)))
    }

    /// Adds a revocation (ignored when it has expired, or when one already known covers it)
    /// and forgets the user's expired ones.
    pub fn insert(&self, revocation: Revocation) {
        self.insert_at(revocation, chrono::Utc::now().timestamp());
    }

    fn insert_at(&self, revocation: Revocation, now: i64) {
        let entry = Entry {
            session_id: revocation.session_id,
            issued_before: revocation.issued_before,
            expire_time: revocation.expire_time,
        };
        let mut by_user = self.write();
        let entries = by_user.entry(revocation.user_id).or_default();
        entries.retain(|known| known.expire_time > now && !entry.covers(known));
        if entry.expire_time > now && !entries.iter().any(|known| known.covers(&entry)) {
            entries.push(entry);
        }
        if entries.is_empty() {
            by_user.remove(&revocation.user_id);
        }
    }

    /// Forgets the revocations expired at `now` (seconds since the epoch).
    pub fn prune(&self, now: i64) {
        let mut by_user = self.write();
        by_user.retain(|_, entries| {
            entries.retain(|entry| entry.expire_time > now);
            !entries.is_empty()
        });
    }

    /// How many revocations are kept.
    pub fn len(&self) -> usize {
        self.read().values().map(Vec::len).sum()
    }

    /// Whether no revocation is kept.
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// Records that the list holds every revocation that existed when it started following
    /// (and that its stream is connected).
    pub fn mark_ready(&self) {
        *self.lost() = None;
        self.inner.ready.send_replace(true);
    }

    /// Records that the stream broke: unless a new snapshot arrives within the list's
    /// staleness bound, the list stops being ready.
    pub fn mark_disconnected(&self) {
        self.lost().get_or_insert_with(Instant::now);
    }

    /// Whether the list can be trusted: the first snapshot arrived
    /// ([`mark_ready`](Self::mark_ready)), and the stream is connected or broke less than the
    /// staleness bound ago.
    pub fn is_ready(&self) -> bool {
        *self.inner.ready.borrow()
            && self
                .lost()
                .is_none_or(|since| since.elapsed() < self.inner.stale_after)
    }

    /// Waits at most `timeout` for the list to be ready; whether it is.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let mut ready = self.inner.ready.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.is_ready() {
                return true;
            }
            match tokio::time::timeout_at(deadline, ready.changed()).await {
                Ok(Ok(())) => {}
                _ => return self.is_ready(),
            }
        }
    }

    fn lost(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.inner
            .lost_since
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Uuid, Vec<Entry>>> {
        self.inner
            .by_user
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Uuid, Vec<Entry>>> {
        self.inner
            .by_user
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Follows identity's `WatchRevocations` through `channel` into `list`, on a task, until
/// `shutdown` triggers or every clone of `list` is dropped (the verifier that used it is
/// gone).
///
/// The stream is public, so no token is needed. Each opening delivers the snapshot (applied
/// as it arrives; the list is ready once the `live` message comes), then each new
/// revocation. When the stream cannot be opened, fails or ends, the task logs a warning and
/// reconnects after an exponential backoff with jitter (100 ms up to 5 s). Expired
/// revocations are forgotten every minute. Must be called inside a Tokio runtime.
pub fn follow(channel: Channel, list: &RevocationList, shutdown: &Shutdown) -> JoinHandle<()> {
    let follower = Follower {
        client: IdentityServiceClient::new(channel),
        list: Arc::downgrade(&list.inner),
        dropped: list.inner.ready.subscribe(),
        backoff: Backoff::new(INITIAL_BACKOFF, MAX_BACKOFF),
    };
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = shutdown.wait() => {}
            () = follower.run() => {}
        }
        tracing::debug!("stopped following token revocations");
    })
}

struct Follower {
    client: IdentityServiceClient<Channel>,
    list: Weak<ListInner>,
    /// Closed when the list is dropped.
    dropped: watch::Receiver<bool>,
    backoff: Backoff,
}

/// How one connection to identity ended.
enum Ended {
    /// The list is gone: stop.
    ListDropped,
    /// Reconnect after the backoff.
    Reconnect,
}

impl Follower {
    /// Follows until the list is dropped.
    async fn run(mut self) {
        let mut dropped = self.dropped.clone();
        let list_dropped = async move { while dropped.changed().await.is_ok() {} };
        let mut list_dropped = std::pin::pin!(list_dropped);
        let mut attempt: u32 = 0;
        loop {
            let ended = tokio::select! {
                () = &mut list_dropped => Ended::ListDropped,
                ended = self.connect(&mut attempt) => ended,
            };
            match self.upgrade() {
                Some(list) if !matches!(ended, Ended::ListDropped) => list.mark_disconnected(),
                _ => return,
            }
            if self.backoff.wait_or(&mut list_dropped).await {
                return;
            }
        }
    }

    /// Opens the stream once and applies it until it fails or ends.
    async fn connect(&mut self, attempt: &mut u32) -> Ended {
        let stream = match self
            .client
            .watch_revocations(WatchRevocationsRequest {})
            .await
        {
            Ok(response) => response.into_inner(),
            Err(status) => {
                *attempt += 1;
                tracing::warn!(
                    attempt = *attempt,
                    code = ?status.code(),
                    message = status.message(),
                    ready = self.is_ready(),
                    "cannot follow token revocations from identity; retrying (rule I4)"
                );
                return Ended::Reconnect;
            }
        };
        let mut stream = std::pin::pin!(stream);
        let mut prune = tokio::time::interval(PRUNE_INTERVAL);
        prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let item = tokio::select! {
                _ = prune.tick() => {
                    let Some(list) = self.upgrade() else { return Ended::ListDropped };
                    list.prune(chrono::Utc::now().timestamp());
                    continue;
                }
                item = stream.next() => item,
            };
            let message = match item {
                Some(Ok(message)) => message,
                Some(Err(status)) => {
                    *attempt += 1;
                    tracing::warn!(
                        attempt = *attempt,
                        code = ?status.code(),
                        message = status.message(),
                        "token revocation stream from identity failed; reconnecting (rule I4)"
                    );
                    return Ended::Reconnect;
                }
                None => {
                    *attempt += 1;
                    tracing::warn!(
                        attempt = *attempt,
                        "token revocation stream from identity ended; reconnecting (rule I4)"
                    );
                    return Ended::Reconnect;
                }
            };
            let Some(list) = self.upgrade() else {
                return Ended::ListDropped;
            };
            for revocation in &message.revocations {
                match Revocation::try_from(revocation) {
                    Ok(revocation) => list.insert(revocation),
                    Err(error) => {
                        tracing::warn!(error = %error, "ignoring a malformed token revocation");
                    }
                }
            }
            tracing::debug!(
                received = message.revocations.len(),
                kept = list.len(),
                live = message.live,
                "token revocations applied"
            );
            if message.live {
                if !list.is_ready() {
                    tracing::info!(kept = list.len(), "following token revocations (rule I4)");
                }
                list.mark_ready();
                self.backoff.reset();
                *attempt = 0;
            }
        }
    }

    fn upgrade(&self) -> Option<RevocationList> {
        self.list.upgrade().map(|inner| RevocationList { inner })
    }

    fn is_ready(&self) -> bool {
        self.upgrade().is_some_and(|list| list.is_ready())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::CallerKind;

    const NOW: i64 = 1_800_000_000;

    fn claims(user: Uuid, sid: &str, iat: i64) -> Claims {
        Claims {
            sub: user.to_string(),
            kind: CallerKind::Customer,
            email: String::new(),
            iss: "keycontacts".into(),
            aud: "keycontacts".into(),
            iat,
            exp: iat + 900,
            jti: Uuid::new_v4().to_string(),
            sid: sid.into(),
            scope: String::new(),
        }
    }

    fn revocation(user: Uuid, session: Option<&str>, issued_before: i64) -> Revocation {
        Revocation {
            user_id: user,
            session_id: session.map(str::to_owned),
            issued_before,
            expire_time: issued_before + 960,
        }
    }

    #[test]
    fn a_user_revocation_ends_every_older_token_of_the_user_only() {
        // rule I4
        let list = RevocationList::new();
        let (user, other) = (Uuid::new_v4(), Uuid::new_v4());
        list.insert_at(revocation(user, None, NOW), NOW);
        assert!(list.is_revoked_at(&claims(user, "s1", NOW - 100), NOW));
        assert!(
            list.is_revoked_at(&claims(user, "", NOW), NOW),
            "iat == issued_before"
        );
        assert!(list.is_revoked_at(&claims(user, "s2", NOW - 1), NOW));
        assert!(
            !list.is_revoked_at(&claims(user, "s1", NOW + 1), NOW + 1),
            "a token issued after the revocation still counts"
        );
        assert!(!list.is_revoked_at(&claims(other, "s1", NOW - 100), NOW));
    }

    #[test]
    fn a_session_revocation_spares_the_other_sessions() {
        // rule I4
        let list = RevocationList::new();
        let user = Uuid::new_v4();
        list.insert_at(revocation(user, Some("s1"), NOW), NOW);
        assert!(list.is_revoked_at(&claims(user, "s1", NOW - 5), NOW));
        assert!(!list.is_revoked_at(&claims(user, "s2", NOW - 5), NOW));
        assert!(
            !list.is_revoked_at(&claims(user, "", NOW - 5), NOW),
            "a token without sid is of no session"
        );
    }

    #[test]
    fn expired_revocations_are_ignored_and_pruned() {
        let list = RevocationList::new();
        let (user, other) = (Uuid::new_v4(), Uuid::new_v4());
        list.insert_at(revocation(user, None, NOW), NOW);
        list.insert_at(revocation(other, Some("s"), NOW + 500), NOW);
        let expired = NOW + 960;
        assert!(list.is_revoked_at(&claims(user, "", NOW), expired - 1));
        assert!(!list.is_revoked_at(&claims(user, "", NOW), expired));
        assert_eq!(list.len(), 2);
        list.prune(expired);
        assert_eq!(list.len(), 1, "only the other user's revocation is left");
        list.prune(expired + 500);
        assert!(list.is_empty());
        // One that expired before it arrived is not kept at all.
        list.insert_at(revocation(user, None, NOW), expired);
        assert!(list.is_empty());
    }

    #[test]
    fn repeated_and_covered_revocations_are_kept_once() {
        let list = RevocationList::new();
        let user = Uuid::new_v4();
        // The snapshot of every reconnection repeats what is known.
        for _ in 0..3 {
            list.insert_at(revocation(user, Some("s1"), NOW), NOW);
        }
        assert_eq!(list.len(), 1);
        list.insert_at(revocation(user, Some("s2"), NOW), NOW);
        assert_eq!(list.len(), 2);
        // Disabling the user covers both sessions.
        list.insert_at(revocation(user, None, NOW + 10), NOW + 10);
        assert_eq!(list.len(), 1);
        list.insert_at(revocation(user, Some("s1"), NOW), NOW + 10);
        assert_eq!(list.len(), 1, "a covered revocation adds nothing");
        assert!(list.is_revoked_at(&claims(user, "s3", NOW + 10), NOW + 10));
    }

    #[test]
    fn malformed_subjects_are_not_revoked_and_messages_convert() {
        let list = RevocationList::new();
        let user = Uuid::new_v4();
        list.insert_at(revocation(user, None, NOW), NOW);
        let mut service = claims(user, "", NOW);
        service.sub = "not-a-uuid".into();
        assert!(!list.is_revoked_at(&service, NOW));

        let message = TokenRevocation {
            user_id: user.to_string(),
            session_id: String::new(),
            issued_before: Some(prost_types::Timestamp {
                seconds: NOW,
                nanos: 500_000_000,
            }),
            expire_time: Some(prost_types::Timestamp {
                seconds: NOW + 960,
                nanos: 1,
            }),
        };
        assert_eq!(
            Revocation::try_from(&message),
            Ok(Revocation {
                user_id: user,
                session_id: None,
                issued_before: NOW,
                expire_time: NOW + 961,
            })
        );
        let no_time = TokenRevocation {
            issued_before: None,
            ..message.clone()
        };
        assert_eq!(
            Revocation::try_from(&no_time),
            Err(InvalidRevocation::IssuedBefore)
        );
        let bad_user = TokenRevocation {
            user_id: "x".into(),
            ..message
        };
        assert_eq!(
            Revocation::try_from(&bad_user),
            Err(InvalidRevocation::UserId)
        );
    }

    /// Marks `list` ready from another task after `delay`.
    fn mark_ready_in(list: &RevocationList, delay: Duration) {
        let marker = list.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            marker.mark_ready();
        });
    }

    #[tokio::test]
    async fn readiness_is_awaited_within_a_bound() {
        let list = RevocationList::new();
        assert!(!list.wait_ready(Duration::from_millis(20)).await);
        mark_ready_in(&list, Duration::from_millis(20));
        assert!(list.wait_ready(Duration::from_secs(5)).await);
        assert!(list.is_ready());
    }

    #[tokio::test]
    async fn a_list_whose_stream_stays_broken_goes_stale_until_the_next_snapshot() {
        // rule I4
        let list = RevocationList::with_stale_after(Duration::from_millis(50));
        list.mark_ready();
        list.mark_disconnected();
        assert!(
            list.is_ready(),
            "trusted for a while after the stream broke"
        );
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert!(!list.is_ready(), "stale once the bound passed");
        assert!(!list.wait_ready(Duration::from_millis(20)).await);
        mark_ready_in(&list, Duration::from_millis(20));
        assert!(list.wait_ready(Duration::from_secs(5)).await);
        // A second break does not start from the first one's instant.
        list.mark_disconnected();
        assert!(list.is_ready());
    }
}
