//! The in-process cache that serves `Check` and `BatchCheck` from memory: for each site, its
//! facts (the C3 switch, whether it has a SITE_TECHNICAL contact) and every member's roles,
//! explicit grants and disabled flag. `Effective` rights (T3) are computed from these on
//! every check, which is a few nanoseconds of pure code.
//!
//! # Filling
//!
//! A miss loads the whole site in two queries (its facts, then the roles, grants and state
//! of every user with a role or a grant there). A user who is not a member has no rights
//! there, so one entry answers every user's checks on the site. A site the projection does
//! not know is cached too (as unknown), so repeated checks on it stay in memory.
//!
//! # Staying current
//!
//! Every transaction that changes grants, roles, sites or users also runs
//! `pg_notify('kc_access_invalidate', key)` with key `<site>:<user>`, `<site>:*` or
//! `*:<user>` (see [`Invalidation`], defined in [`storage`] with the writes that send it).
//! Every replica `LISTEN`s on that channel with one dedicated connection ([`spawn_listener`])
//! and drops what the key covers: for a pair, that user's answers on the site (the entry
//! stays for the other members, whose rights never depend on another user's roles or grants;
//! past a few such marks the entry goes); a site entry for `<site>:*`; every site entry the
//! user is a member of for `*:<user>` (identity's projection sends it only when a user is
//! disabled or enabled, which is rare).
//!
//! - **Same replica**: a write drops the entries itself right after its commit, before it
//!   answers, so a `Check` after a successful change on the same replica reflects it.
//! - **Other replicas**: a change is visible once its notification arrives: Postgres sends
//!   it at commit, so the bound is the notification latency, normally well under 10 ms and
//!   written down as ≤ 1 s (a replica whose listener is slow to read falls behind by that).
//! - **Projection events** (roles and sites from the registry, users from identity) notify
//!   the same way from the consumer's transaction, and the consumer drops the entries
//!   locally too; they reach the cache within the stream latency plus the notification's.
//! - **A fill racing a change**: every invalidation bumps the generation counter of the
//!   shard its site lives in first (a user's or a full invalidation bumps every shard), and a
//!   fill stores what it read only if its shard's counter did not move while it read. So a
//!   fill that read the old state before a commit never overwrites the invalidation of that
//!   commit, while changes to sites of other shards (a projection applying a burst of
//!   registry events) do not throw every concurrent fill away.
//! - **Listener lost**: notifications sent while the connection is down are lost, so the
//!   cache is cleared and bypassed (every check reads the database) until the listener is
//!   back, then cleared again.
//! - **Grants with an end** (T9): an entry holds the grants in force when it was filled and
//!   the earliest end among them; from that instant it is a miss and is refilled, so a grant
//!   stops counting at its end to the second, whether or not the sweeper has removed it yet.
//! - **Safety net**: entries older than the TTL (30 s by default) are refilled anyway.
//!
//! # Memory
//!
//! A site entry holds a sorted array of 28-byte members (user id, role bits, eight level
//! ranks, disabled flag) searched by binary search. Entries are capped (500,000 by default,
//! counting one per site and one per member): past the cap a shard drops arbitrary sites
//! until it is back under three quarters of its share. 10,000 sites of 20 users take about
//! 6 MB.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use kc_runtime::backoff::Backoff;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::task::JoinHandle;
use uuid::Uuid;

/// Counter of rights lookups of `Check` and `BatchCheck` answered from memory (one per
/// permission asked).
pub(crate) const CHECK_CACHE_HITS: &str = "keycontacts_access_check_cache_hits_total";
/// Counter of rights lookups that loaded their site from the database.
pub(crate) const CHECK_CACHE_MISSES: &str = "keycontacts_access_check_cache_misses_total";

use crate::domain::{Effective, Grants, RoleSet, SiteFacts, Subject};
use crate::storage;
use crate::storage::invalidation::{INVALIDATION_CHANNEL, Invalidation};

/// Members of a site entry marked stale before the whole entry is dropped instead.
const MAX_STALE_MEMBERS: usize = 8;

/// Number of independently locked shards of each map (a power of two).
const SHARDS: usize = 32;

/// Tuning of the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSettings {
    /// Entries older than this are refilled (a safety net; notifications keep them current).
    pub ttl: Duration,
    /// Most entries kept, counting one per site and one per member of a site.
    pub max_entries: usize,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(30),
            max_entries: 500_000,
        }
    }
}

/// One member of a cached site: 28 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CachedMember {
    user_id: Uuid,
    roles: RoleSet,
    explicit: Grants,
    disabled: bool,
}

/// A cached site: `members` sorted by user id; empty and `known == false` for a site the
/// projection does not know.
#[derive(Debug)]
struct SiteEntry {
    filled: u32,
    /// The earliest start or end to come of a grant of its members (T9): it is stale from
    /// then on.
    stale_at: Option<Instant>,
    /// Members whose rights changed since the fill (a pair's invalidation): their checks
    /// miss and refill the site; every other member's are still answered (a user's rights
    /// never depend on another user's roles or grants, only on the site's facts).
    stale_members: Vec<Uuid>,
    known: bool,
    facts: SiteFacts,
    members: Box<[CachedMember]>,
}

impl SiteEntry {
    fn weight(&self) -> usize {
        1 + self.members.len()
    }

    fn member(&self, user_id: Uuid) -> Option<CachedMember> {
        self.members
            .binary_search_by(|member| member.user_id.cmp(&user_id))
            .ok()
            .map(|index| self.members[index])
    }

    /// The rights of `user_id` on this site.
    fn rights(&self, user_id: Uuid) -> Rights {
        if !self.known {
            return Rights::UnknownSite;
        }
        let subject = self
            .member(user_id)
            .map(|member| Subject {
                roles: member.roles,
                explicit: member.explicit,
                disabled: member.disabled,
            })
            .unwrap_or_default();
        Rights::Known(Effective::of(&subject, self.facts))
    }
}

/// One shard of a map, with the number of entries it holds.
#[derive(Debug)]
struct Shard<V> {
    map: HashMap<Uuid, V>,
    weight: usize,
}

impl<V> Default for Shard<V> {
    fn default() -> Self {
        Self {
            map: HashMap::new(),
            weight: 0,
        }
    }
}

#[derive(Debug)]
struct Inner {
    sites: Box<[RwLock<Shard<SiteEntry>>]>,
    /// One counter per shard, bumped by every invalidation of the shard before it drops
    /// entries; fills store only if their shard's counter is unchanged.
    generations: Box<[AtomicU64]>,
    /// Whether the listener is connected: while it is not, the cache is bypassed.
    listening: AtomicBool,
    origin: Instant,
    ttl_secs: u32,
    shard_cap: usize,
}

/// What the cache says about one user on one site.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rights {
    /// The projection knows no such site (yet).
    UnknownSite,
    /// The user's effective rights on the site (T3).
    Known(Effective),
}

/// The in-process cache of rights inputs. Cheap to clone; clones share everything.
#[derive(Clone, Debug)]
pub struct RightsCache {
    inner: Arc<Inner>,
}

fn shard_of(id: &Uuid) -> usize {
    // Fibonacci hashing of both halves: well spread whatever the UUID version.
    let (high, low) = id.as_u64_pair();
    let mixed = (high ^ low.rotate_left(32)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (mixed >> (64 - SHARDS.trailing_zeros())) as usize
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl RightsCache {
    /// An empty cache, bypassed until [`RightsCache::set_listening`] turns it on.
    pub fn new(settings: CacheSettings) -> Self {
        Self {
            inner: Arc::new(Inner {
                sites: (0..SHARDS).map(|_| RwLock::default()).collect(),
                generations: (0..SHARDS).map(|_| AtomicU64::new(0)).collect(),
                listening: AtomicBool::new(false),
                origin: Instant::now(),
                ttl_secs: u32::try_from(settings.ttl.as_secs().max(1)).unwrap_or(u32::MAX),
                shard_cap: (settings.max_entries / SHARDS).max(1),
            }),
        }
    }

    fn now(&self) -> u32 {
        u32::try_from(self.inner.origin.elapsed().as_secs()).unwrap_or(u32::MAX)
    }

    fn fresh(&self, filled: u32, now: u32) -> bool {
        now.saturating_sub(filled) < self.inner.ttl_secs
    }

    /// Whether entries may be used and stored: only while the listener is connected.
    fn enabled(&self) -> bool {
        self.inner.listening.load(Ordering::Acquire)
    }

    /// Turns the cache on (the listener is connected) or off (it lost its connection). Both
    /// clear it: notifications may have been missed.
    pub fn set_listening(&self, listening: bool) {
        self.clear();
        self.inner.listening.store(listening, Ordering::Release);
        self.clear();
    }

    /// The generation counter of the shard of `site_id`.
    fn generation(&self, site_id: &Uuid) -> &AtomicU64 {
        &self.inner.generations[shard_of(site_id)]
    }

    /// Bumps every shard's generation counter.
    fn bump_all(&self) {
        for generation in self.inner.generations.iter() {
            generation.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Drops every entry.
    pub fn clear(&self) {
        self.bump_all();
        for shard in self.inner.sites.iter() {
            let mut shard = write(shard);
            shard.map = HashMap::new();
            shard.weight = 0;
        }
    }

    /// Drops what `what` covers.
    pub fn invalidate(&self, what: Invalidation) {
        // Bump first: a fill that read before this point does not store its result.
        match what {
            // A pair lives in its site's entry: its member is marked stale, and past a few
            // such marks the site is dropped (refilled in one query).
            Invalidation::Pair { site_id, user_id } => {
                self.generation(&site_id).fetch_add(1, Ordering::AcqRel);
                let mut shard = write(&self.inner.sites[shard_of(&site_id)]);
                let Some(entry) = shard.map.get_mut(&site_id) else {
                    return;
                };
                if entry.stale_members.len() < MAX_STALE_MEMBERS {
                    entry.stale_members.push(user_id);
                } else if let Some(entry) = shard.map.remove(&site_id) {
                    shard.weight -= entry.weight();
                }
            }
            Invalidation::Site(site_id) => {
                self.generation(&site_id).fetch_add(1, Ordering::AcqRel);
                let mut shard = write(&self.inner.sites[shard_of(&site_id)]);
                if let Some(entry) = shard.map.remove(&site_id) {
                    shard.weight -= entry.weight();
                }
            }
            // Rare (a user disabled or enabled): drop every site the user is a member of.
            Invalidation::User(user_id) => {
                self.bump_all();
                for shard in self.inner.sites.iter() {
                    let mut shard = write(shard);
                    let mut dropped = 0;
                    shard.map.retain(|_, entry| {
                        let member = entry.member(user_id).is_some();
                        if member {
                            dropped += entry.weight();
                        }
                        !member
                    });
                    shard.weight -= dropped;
                }
            }
            Invalidation::All => self.clear(),
        }
    }

    /// Number of entries held (sites and their members).
    pub fn len(&self) -> usize {
        self.inner.sites.iter().map(|s| read(s).weight).sum()
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The rights of `user_id` on `site_id` from a fresh entry; `None` on a miss.
    fn cached(&self, site_id: Uuid, user_id: Uuid) -> Option<Rights> {
        let now = self.now();
        let shard = read(&self.inner.sites[shard_of(&site_id)]);
        let entry = shard.map.get(&site_id)?;
        if entry
            .stale_at
            .is_some_and(|stale_at| Instant::now() >= stale_at)
            || entry.stale_members.contains(&user_id)
        {
            return None;
        }
        self.fresh(entry.filled, now).then(|| entry.rights(user_id))
    }

    /// The rights of `user_id` on `site_id`: from memory, filling the site from the database
    /// on a miss. Counts the hit or miss ([`CHECK_CACHE_HITS`], [`CHECK_CACHE_MISSES`]) when
    /// the cache is on.
    pub async fn rights(
        &self,
        pool: &PgPool,
        site_id: Uuid,
        user_id: Uuid,
    ) -> Result<Rights, sqlx::Error> {
        if self.enabled() {
            if let Some(rights) = self.cached(site_id, user_id) {
                metrics::counter!(CHECK_CACHE_HITS).increment(1);
                return Ok(rights);
            }
            metrics::counter!(CHECK_CACHE_MISSES).increment(1);
        }
        self.fill(pool, site_id, user_id).await
    }

    /// Reads the site of `site_id` from the database, stores it (unless an invalidation
    /// came meanwhile) and answers for `user_id`.
    async fn fill(
        &self,
        pool: &PgPool,
        site_id: Uuid,
        user_id: Uuid,
    ) -> Result<Rights, sqlx::Error> {
        let generation = self.generation(&site_id).load(Ordering::Acquire);
        let mut conn = pool.acquire().await?;
        let snapshot = storage::sites::snapshot(&mut conn, site_id).await?;
        drop(conn);
        let entry = match snapshot {
            None => SiteEntry {
                filled: self.now(),
                stale_at: None,
                stale_members: Vec::new(),
                known: false,
                facts: SiteFacts::default(),
                members: Box::new([]),
            },
            Some(snapshot) => {
                let mut members: Vec<CachedMember> = snapshot
                    .members
                    .iter()
                    .map(|member| CachedMember {
                        user_id: member.user_id,
                        roles: member.roles,
                        explicit: member.explicit,
                        disabled: member.disabled,
                    })
                    .collect();
                members.sort_unstable_by_key(|member| member.user_id);
                SiteEntry {
                    filled: self.now(),
                    stale_at: snapshot.next_change.map(instant_of),
                    stale_members: Vec::new(),
                    known: true,
                    facts: snapshot.facts,
                    members: members.into_boxed_slice(),
                }
            }
        };
        let rights = entry.rights(user_id);
        self.store_site(site_id, entry, generation);
        Ok(rights)
    }

    /// The rights of `user_id` on `site_id` read from the database now, whatever the cache
    /// holds (a caller that must see every committed change); the site's entry is refilled
    /// on the way, like a miss.
    pub async fn rights_from_database(
        &self,
        pool: &PgPool,
        site_id: Uuid,
        user_id: Uuid,
    ) -> Result<Rights, sqlx::Error> {
        self.fill(pool, site_id, user_id).await
    }

    fn store_site(&self, site_id: Uuid, entry: SiteEntry, generation: u64) {
        let mut shard = write(&self.inner.sites[shard_of(&site_id)]);
        // Checked under the shard lock: an invalidation bumps before it takes the lock.
        if !self.enabled() || self.generation(&site_id).load(Ordering::Acquire) != generation {
            return;
        }
        let weight = entry.weight();
        if shard.weight + weight > self.inner.shard_cap {
            evict(&mut shard, self.inner.shard_cap, SiteEntry::weight);
        }
        shard.weight += weight;
        if let Some(old) = shard.map.insert(site_id, entry) {
            shard.weight -= old.weight();
        }
    }
}

/// The instant of the monotonic clock at which the wall clock reads `time` (now for a time
/// already past). An end computed this way is never later than the end itself by more than
/// the conversion's few microseconds.
fn instant_of(time: chrono::DateTime<chrono::Utc>) -> Instant {
    let ahead = (time - chrono::Utc::now()).to_std().unwrap_or_default();
    Instant::now() + ahead
}

/// Drops arbitrary entries (the map's iteration order) until the shard is under three
/// quarters of `cap`.
fn evict<V>(shard: &mut Shard<V>, cap: usize, weight: impl Fn(&V) -> usize) {
    let target = cap / 4 * 3;
    let mut dropped = 0;
    shard.map.retain(|_, value| {
        if shard.weight - dropped <= target {
            return true;
        }
        dropped += weight(value);
        false
    });
    shard.weight -= dropped;
}

/// Connects the invalidation listener and spawns the task that applies notifications to
/// `cache` until `pool` closes. Fails when the first connection fails (the service must not
/// serve checks it cannot keep current). The cache is turned on once listening.
pub(crate) async fn spawn_listener(
    pool: PgPool,
    cache: RightsCache,
) -> anyhow::Result<JoinHandle<()>> {
    let listener = listen(&pool).await?;
    cache.set_listening(true);
    Ok(tokio::spawn(run_listener(pool, cache, listener)))
}

async fn listen(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(INVALIDATION_CHANNEL).await?;
    Ok(listener)
}

async fn run_listener(pool: PgPool, cache: RightsCache, mut listener: PgListener) {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        let lost = match listener.try_recv().await {
            Ok(Some(notification)) => {
                match notification.payload().parse::<Invalidation>() {
                    Ok(what) => cache.invalidate(what),
                    Err(error) => {
                        tracing::warn!(error = %error, "unexpected cache invalidation; clearing");
                        cache.clear();
                    }
                }
                continue;
            }
            Ok(None) => "connection lost".to_owned(),
            Err(sqlx::Error::PoolClosed) => break,
            Err(error) => error.to_string(),
        };
        tracing::warn!(error = %lost, "cache invalidation listener lost; bypassing the cache");
        cache.set_listening(false);
        drop(listener);
        listener = loop {
            tokio::time::sleep(backoff.next_delay()).await;
            match listen(&pool).await {
                Ok(listener) => break listener,
                Err(sqlx::Error::PoolClosed) => return,
                Err(error) => {
                    tracing::warn!(error = %error, "cache invalidation listener reconnect failed");
                }
            }
        };
        backoff.reset();
        cache.set_listening(true);
        tracing::info!("cache invalidation listener reconnected; cache cleared");
    }
    tracing::debug!("cache invalidation listener stopped: pool closed");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_is_small() {
        assert!(std::mem::size_of::<CachedMember>() <= 28);
    }

    #[test]
    fn an_entry_does_not_outlive_the_earliest_end_of_its_grants() {
        // rule T9: a grant stops counting at its end, even from memory.
        let cache = RightsCache::new(CacheSettings::default());
        cache.set_listening(true);
        let site_id = Uuid::now_v7();
        let user = Uuid::from_u128(1);
        let entry = |stale_at| SiteEntry {
            filled: cache.now(),
            stale_at,
            stale_members: Vec::new(),
            known: true,
            facts: SiteFacts::default(),
            members: [CachedMember {
                user_id: user,
                roles: RoleSet::EMPTY,
                explicit: Grants::NONE,
                disabled: false,
            }]
            .into(),
        };
        let generation = || cache.generation(&site_id).load(Ordering::Acquire);
        cache.store_site(
            site_id,
            entry(Some(instant_of(
                chrono::Utc::now() + chrono::Duration::hours(1),
            ))),
            generation(),
        );
        assert!(cache.cached(site_id, user).is_some());
        cache.store_site(site_id, entry(Some(Instant::now())), generation());
        assert_eq!(cache.cached(site_id, user), None);
        let past = instant_of(chrono::Utc::now() - chrono::Duration::seconds(5));
        assert!(past <= Instant::now());
        cache.store_site(site_id, entry(Some(past)), generation());
        assert_eq!(cache.cached(site_id, user), None);
        cache.store_site(site_id, entry(None), generation());
        assert!(cache.cached(site_id, user).is_some());
    }

    #[test]
    fn invalidation_and_eviction() {
        let cache = RightsCache::new(CacheSettings {
            ttl: Duration::from_secs(30),
            max_entries: SHARDS * 8,
        });
        cache.set_listening(true);
        let site_id = Uuid::now_v7();
        let generation = cache.generation(&site_id).load(Ordering::Acquire);
        let entry = || SiteEntry {
            filled: cache.now(),
            stale_at: None,
            stale_members: Vec::new(),
            known: true,
            facts: SiteFacts::default(),
            members: [1, 3, 5]
                .map(|n| CachedMember {
                    user_id: Uuid::from_u128(n),
                    roles: RoleSet::EMPTY,
                    explicit: Grants::NONE,
                    disabled: false,
                })
                .into(),
        };
        cache.store_site(site_id, entry(), generation);
        assert_eq!(cache.len(), 4);
        assert!(matches!(
            cache.cached(site_id, Uuid::from_u128(1)),
            Some(Rights::Known(_))
        ));
        // A pair's invalidation makes that member's checks miss, and only its: the other
        // members' rights do not depend on it.
        cache.invalidate(Invalidation::Pair {
            site_id,
            user_id: Uuid::from_u128(1),
        });
        assert_eq!(cache.cached(site_id, Uuid::from_u128(1)), None);
        assert!(matches!(
            cache.cached(site_id, Uuid::from_u128(3)),
            Some(Rights::Known(_))
        ));
        // Past a few such marks the site goes.
        for n in 0..MAX_STALE_MEMBERS as u128 {
            cache.invalidate(Invalidation::Pair {
                site_id,
                user_id: Uuid::from_u128(100 + n),
            });
        }
        assert!(cache.is_empty());
        // A user's invalidation drops the sites it is a member of, and only those.
        cache.store_site(
            site_id,
            entry(),
            cache.generation(&site_id).load(Ordering::Acquire),
        );
        cache.invalidate(Invalidation::User(Uuid::from_u128(2)));
        assert_eq!(cache.len(), 4);
        cache.invalidate(Invalidation::User(Uuid::from_u128(1)));
        assert!(cache.is_empty());
        // A fill that read before an invalidation does not store.
        cache.store_site(site_id, entry(), generation);
        assert!(cache.is_empty());
        // A change on a site of another shard does not discard this shard's fills.
        let other = (0..u128::MAX)
            .map(|n| Uuid::from_u128(n << 64 | n))
            .find(|id| shard_of(id) != shard_of(&site_id))
            .expect("a site of another shard");
        let generation = cache.generation(&site_id).load(Ordering::Acquire);
        cache.invalidate(Invalidation::Site(other));
        cache.store_site(site_id, entry(), generation);
        assert_eq!(cache.len(), 4);
        cache.invalidate(Invalidation::Site(site_id));
        // A shard past its share drops entries.
        let generation = cache.generation(&site_id).load(Ordering::Acquire);
        let shard = shard_of(&site_id);
        let mut stored = 0;
        for n in 0..10_000u128 {
            let id = Uuid::from_u128(n << 64 | n);
            if shard_of(&id) == shard {
                cache.store_site(id, entry(), generation);
                stored += 1;
            }
        }
        assert!(stored > 2);
        assert!(read(&cache.inner.sites[shard]).weight <= 8);
        // While the listener is down nothing is stored.
        cache.set_listening(false);
        let generation = cache.generation(&site_id).load(Ordering::Acquire);
        cache.store_site(site_id, entry(), generation);
        assert!(cache.is_empty());
    }
}
