//! The read cache: answers of the internal services' hot reads, kept for a short time.
//!
//! Every gateway call needs a few reads (the `BatchCheck` of the caller's permissions, the
//! people of a site from identity, the caller's roles and rights for `GetMe`), each one an
//! HTTP/2 round trip and, behind it, a Postgres query. A person using a client makes bursts
//! of calls about the same site, so the same reads repeat within a second. This cache keeps
//! their answers for `--read-cache-ttl` (1 s by default; `0s` turns it off).
//!
//! # What is cached, under which key
//!
//! Only for gateway RPCs that only read ([`CallKind::Read`](crate::clients::CallKind)): an
//! RPC that changes state asks everything afresh, its permission check first, so a right
//! revoked anywhere never lets a change through. Only the reads the client table marks
//! [`Op::CachedRead`](crate::clients::Op), and only
//! their successful answers; a `BatchCheck` answer only when every check was allowed, so a
//! denial is asked again each time and a right granted anywhere works at once (what can be
//! late is a revocation made elsewhere, by at most the TTL). The key is the RPC, **who asked** (the gateway itself, or the
//! customer it acts for) and the request message's bytes, so an answer is only ever served
//! to the same question from the same actor. Calls that carry an operator's or a service's
//! own token are never cached.
//!
//! # How fresh the answers are
//!
//! - **Writes through this replica**: every write the gateway sends forgets, when it starts
//!   and again when it ends, the answers that mention an id its request or its answer
//!   mentions ([`mentioned_ids`]: the site, the user, the contact or request it names), and
//!   a read that overlapped it and mentions one of them is not stored
//!   ([generation](ReadCache::generation)), so a caller reads its own writes on the same
//!   replica. Every cached read is about a site or a user (a site's contacts, a user's
//!   contacts or rights, a `BatchCheck` of a user on a site), and every write of the suite
//!   names in its request or answer the site or the user whose state it changes. A write
//!   that mentions no id, or ends without an answer (failed, timed out, or cancelled with
//!   its caller), empties the whole cache. Two exceptions, seen at most one TTL late: a
//!   write that timed out here but was applied later, and a registry change that access
//!   management's rights reflect only once its projection caught up (a read in between
//!   keeps the old answer).
//! - **Changes made elsewhere** (another gateway replica, an operator's direct call to an
//!   internal service, access management's projection catching up with the registry): seen
//!   once the entry expires, so at most one TTL later than without the cache. Kubernetes'
//!   API server makes the same trade for its webhook authorizer, which caches allowed
//!   decisions for 5 minutes by default.
//!
//! # Hot answers are read again before they expire
//!
//! An answer asked for again late in its life (past a point drawn between 85 % and 95 % of
//! the TTL, so that answers stored together are not all read again together) is served,
//! and the same read is sent again in the background; its answer replaces the entry, under
//! the same rules as any read (a write that overlapped it keeps it out). A caller of a hot
//! read therefore never waits for its refill, while no answer is ever served older than
//! the TTL: the refresh only makes entries younger (Caffeine's `refreshAfterWrite`). One
//! refresh per entry at a time, at most [`REFRESHES_IN_FLIGHT`] in all; a refresh that
//! fails leaves the entry to expire, and one whose answer is no longer worth storing (a
//! check now denied) removes it. Answers nobody asks for late in their life are not read
//! again.
//!
//! # Memory
//!
//! Each entry counts its answer's encoded size, its question's bytes and a fixed overhead
//! ([`ENTRY_OVERHEAD_BYTES`]); past [`BUDGET_BYTES`] the expired entries go, then, if that is
//! not enough, all of them. An entry larger than a sixteenth of the budget is not stored. The
//! decoded answers take a few times their encoded size, so the cache's memory stays within a
//! few times the budget.

use std::any::Any;
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use kc_proto::access::BatchCheckResponse;
use uuid::Uuid;

use crate::mentions::mentioned_ids;

/// Most bytes (encoded answers) the cache holds.
pub(crate) const BUDGET_BYTES: usize = 8 * 1024 * 1024;

/// Most background refreshes of hot answers in flight at once; past it, a hot answer is
/// left to expire and be read again by the caller that next misses it.
pub(crate) const REFRESHES_IN_FLIGHT: usize = 64;

/// Where in an answer's life it may be read again in the background, as fractions of the
/// TTL: the point is drawn between the two for each entry.
const REFRESH_FROM: (f64, f64) = (0.85, 0.95);

/// Ids of recent writes remembered before those older than the TTL are dropped.
const WRITTEN_IDS_BEFORE_PRUNING: usize = 4096;

/// Largest single entry stored.
const LARGEST_ENTRY_BYTES: usize = BUDGET_BYTES / 16;

/// What an entry costs besides its answer and its question's bytes (map slot, key, `Arc`,
/// expiry), counted against the budget so that many empty answers also fill it.
pub(crate) const ENTRY_OVERHEAD_BYTES: usize = 128;

/// Whether `answer` may be stored: anything but a `BatchCheck` answer that denied something.
pub(crate) fn worth_storing(answer: &dyn Any) -> bool {
    answer
        .downcast_ref::<BatchCheckResponse>()
        .is_none_or(|checks| checks.results.iter().all(|check| check.allowed))
}

/// Who asked a cached read: answers are only shared between calls of the same actor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Asker {
    /// The gateway's own question (an authorization check, the site of a request).
    Gateway,
    /// The gateway acting for this customer.
    Customer(Uuid),
}

/// Counter of reads answered from the cache, by downstream `method`.
pub(crate) const READ_CACHE_HITS: &str = "keycontacts_gateway_read_cache_hits_total";
/// Counter of reads the cache had no fresh answer to, by downstream `method`.
pub(crate) const READ_CACHE_MISSES: &str = "keycontacts_gateway_read_cache_misses_total";
/// Counter of hot answers read again in the background before they expire, by downstream
/// `method`.
pub(crate) const READ_CACHE_REFRESHES: &str = "keycontacts_gateway_read_cache_refreshes_total";

/// One cached question: the RPC, who asked it and the request's encoded bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Question {
    method: &'static str,
    asker: Asker,
    request: Vec<u8>,
}

impl Question {
    /// The question `request` (encoded) to `method`, asked by `asker`.
    pub(crate) fn new(method: &'static str, asker: Asker, request: Vec<u8>) -> Self {
        Self {
            method,
            asker,
            request,
        }
    }
}

struct Entry {
    answer: Arc<dyn Any + Send + Sync>,
    bytes: usize,
    expires: Instant,
    /// From when a hit sends the read again in the background.
    refresh_from: Instant,
    /// Whether that refresh was sent.
    refreshing: bool,
    /// The cache's generation when the read that brought the answer was sent.
    generation: u64,
    /// The ids the question and the answer mention, sorted.
    mentions: Box<[Uuid]>,
}

#[derive(Default)]
struct State {
    entries: HashMap<Question, Entry>,
    bytes: usize,
    /// Counts the writes' starts and ends.
    generation: u64,
    /// Answers of reads sent before this generation are outdated: the whole cache was
    /// emptied then, or the records of the writes before it were dropped.
    horizon: u64,
    /// For each id a recent write mentioned, the generation of its last start or end and
    /// when it was. A record older than the TTL concerns only expired answers and goes.
    written: HashMap<Uuid, (u64, Instant)>,
    /// The state of the generator of the entries' refresh points.
    jitter: u64,
}

impl State {
    /// The next entry's refresh point, as a fraction of the TTL: drawn evenly between the
    /// two `bounds` (a 64-bit linear congruential generator, seeded per process).
    fn refresh_fraction(&mut self, bounds: (f64, f64)) -> f64 {
        self.jitter = self
            .jitter
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        // The high 53 bits, the best mixed of such a generator, as a fraction in [0, 1).
        let unit = (self.jitter >> 11) as f64 / (1_u64 << 53) as f64;
        bounds.0 + (bounds.1 - bounds.0) * unit
    }

    /// Whether an answer to a read sent at `generation`, mentioning `mentions`, may predate
    /// a write that started or ended since.
    fn outdated(&self, generation: u64, mentions: &[Uuid]) -> bool {
        self.horizon > generation
            || mentions.iter().any(|id| {
                self.written
                    .get(id)
                    .is_some_and(|(written, _)| *written > generation)
            })
    }
}

/// The answers of recent cached reads; see the [module documentation](self).
pub(crate) struct ReadCache {
    ttl: Duration,
    /// [`REFRESH_FROM`] (tests set their own).
    refresh_from: (f64, f64),
    state: Mutex<State>,
    /// Background refreshes in flight ([`Refresh`] tickets alive).
    refreshes: AtomicUsize,
}

/// A cached answer, and whether the caller that got it is to read it again in the
/// background.
pub(crate) struct Hit<T> {
    /// The stored answer, shared.
    pub answer: Arc<T>,
    /// Present when the entry is late in its life: send the read again and
    /// [`ReadCache::refreshed`] its answer with this.
    pub refresh: Option<Refresh>,
}

/// The ticket of one background refresh: holds one of the [`REFRESHES_IN_FLIGHT`] places
/// until dropped.
pub(crate) struct Refresh {
    cache: Arc<ReadCache>,
    /// The cache's generation when the refresh was decided, before its read is sent.
    generation: u64,
}

impl Refresh {
    /// Keeps the refresh's answer (`answer_bytes` long, encoded, mentioning `mentions`
    /// besides its question's ids) to `question`, as [`ReadCache::store`] does; or, when it
    /// is not worth storing any more (a check now denied), forgets the entry it was for.
    pub(crate) fn keep<T: Send + Sync + 'static>(
        self,
        question: Question,
        answer: Arc<T>,
        answer_bytes: usize,
        mentions: Vec<Uuid>,
    ) {
        if worth_storing(answer.as_ref()) {
            self.cache
                .store(question, answer, answer_bytes, mentions, self.generation);
        } else {
            let mut state = self.cache.state();
            if let Some(gone) = state.entries.remove(&question) {
                state.bytes -= gone.bytes;
            }
        }
    }
}

impl Drop for Refresh {
    fn drop(&mut self) {
        self.cache.refreshes.fetch_sub(1, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for ReadCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadCache")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl ReadCache {
    /// A cache keeping answers for `ttl`; a zero `ttl` keeps nothing.
    pub(crate) fn new(ttl: Duration) -> Self {
        let state = State {
            jitter: RandomState::new().hash_one(0_u8),
            ..State::default()
        };
        Self {
            ttl,
            refresh_from: REFRESH_FROM,
            state: Mutex::new(state),
            refreshes: AtomicUsize::new(0),
        }
    }

    /// How long a background refresh may take: one TTL (past it, the entry it was for has
    /// expired).
    pub(crate) fn refresh_deadline(&self) -> Duration {
        self.ttl
    }

    /// Whether answers are kept at all.
    pub(crate) fn is_enabled(&self) -> bool {
        !self.ttl.is_zero()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Nothing between two consistent states of `State` can panic; a poisoned lock
        // still holds a consistent cache.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The stored answer to `question`, if it has not expired and no write since its read
    /// mentioned what it mentions: shared, not copied (a caller that needs its own copies
    /// it outside the lock), with a [`Refresh`] ticket when the caller is to read it again
    /// in the background. Counts a hit or a miss of the question's method
    /// ([`READ_CACHE_HITS`], [`READ_CACHE_MISSES`]) when the cache is on, and a refresh
    /// ([`READ_CACHE_REFRESHES`]).
    pub(crate) fn get<T: Send + Sync + 'static>(
        self: &Arc<Self>,
        question: &Question,
    ) -> Option<Hit<T>> {
        if !self.is_enabled() {
            return None;
        }
        let found = self.lookup(question);
        let name = if found.is_some() {
            READ_CACHE_HITS
        } else {
            READ_CACHE_MISSES
        };
        metrics::counter!(name, "method" => question.method).increment(1);
        let (answer, refresh) = found?;
        let refresh = refresh.then(|| {
            metrics::counter!(READ_CACHE_REFRESHES, "method" => question.method).increment(1);
            Refresh {
                cache: Arc::clone(self),
                generation: self.generation(),
            }
        });
        Some(Hit {
            answer: answer.downcast::<T>().ok()?,
            refresh,
        })
    }

    /// The entry's answer and whether this hit claimed its refresh (counted in
    /// [`ReadCache::refreshes`]).
    fn lookup(&self, question: &Question) -> Option<(Arc<dyn Any + Send + Sync>, bool)> {
        let now = Instant::now();
        let mut state = self.state();
        let entry = state.entries.get(question)?;
        if entry.expires <= now {
            return None;
        }
        if state.outdated(entry.generation, &entry.mentions) {
            if let Some(gone) = state.entries.remove(question) {
                state.bytes -= gone.bytes;
            }
            return None;
        }
        let entry = state.entries.get_mut(question)?;
        let refresh = !entry.refreshing
            && now >= entry.refresh_from
            && self
                .refreshes
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    (n < REFRESHES_IN_FLIGHT).then_some(n + 1)
                })
                .is_ok();
        entry.refreshing |= refresh;
        Some((Arc::clone(&entry.answer), refresh))
    }

    /// The number of the cache's current contents: take it before sending a read, and
    /// [`store`](Self::store) its answer with it.
    pub(crate) fn generation(&self) -> u64 {
        self.state().generation
    }

    /// Stores `answer` (`answer_bytes` long, encoded, mentioning the ids `mentions` besides
    /// those of the question) to `question`, unless a write that mentions one of them
    /// started or ended since `generation` was read: then the answer may predate it and is
    /// dropped. The entry counts its answer, its question and [`ENTRY_OVERHEAD_BYTES`].
    pub(crate) fn store<T: Send + Sync + 'static>(
        &self,
        question: Question,
        answer: Arc<T>,
        answer_bytes: usize,
        mentions: Vec<Uuid>,
        generation: u64,
    ) {
        let bytes = answer_bytes + question.request.len() + ENTRY_OVERHEAD_BYTES;
        if !self.is_enabled() || bytes > LARGEST_ENTRY_BYTES {
            return;
        }
        let mut mentions = mentions;
        mentions.extend(mentioned_ids(&question.request));
        mentions.sort_unstable();
        mentions.dedup();
        let now = Instant::now();
        let mut state = self.state();
        if state.outdated(generation, &mentions) {
            return;
        }
        if let Some(replaced) = state.entries.remove(&question) {
            state.bytes -= replaced.bytes;
        }
        if state.bytes + bytes > BUDGET_BYTES {
            state.entries.retain(|_, entry| entry.expires > now);
            state.bytes = state.entries.values().map(|entry| entry.bytes).sum();
            if state.bytes + bytes > BUDGET_BYTES {
                state.entries.clear();
                state.bytes = 0;
            }
        }
        let refresh_from = now + self.ttl.mul_f64(state.refresh_fraction(self.refresh_from));
        let entry = Entry {
            answer,
            bytes,
            expires: now + self.ttl,
            refresh_from,
            refreshing: false,
            generation,
            mentions: mentions.into_boxed_slice(),
        };
        state.bytes += bytes;
        state.entries.insert(question, entry);
    }

    /// Forgets the answers that mention one of `ids`, and the reads in flight that will
    /// (a write starts or ends); every answer when `ids` is empty.
    pub(crate) fn forget(&self, ids: &[Uuid]) {
        if !self.is_enabled() {
            return;
        }
        let now = Instant::now();
        let mut state = self.state();
        state.generation = state.generation.wrapping_add(1);
        let generation = state.generation;
        if ids.is_empty() {
            state.entries.clear();
            state.bytes = 0;
            state.horizon = generation;
            state.written.clear();
            return;
        }
        if state.written.len() >= WRITTEN_IDS_BEFORE_PRUNING {
            // A dropped record only concerned answers that have expired (an answer is
            // stored before a write that outdates it, or not at all), and reads still in
            // flight from before it, which the horizon now refuses.
            let ttl = self.ttl;
            let mut horizon = state.horizon;
            state.written.retain(|_, (written, when)| {
                let keep = now.duration_since(*when) < ttl;
                if !keep {
                    horizon = horizon.max(*written);
                }
                keep
            });
            state.horizon = horizon;
        }
        for id in ids {
            state.written.insert(*id, (generation, now));
        }
    }

    /// The number of answers stored (expired ones included).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.state().entries.len()
    }

    /// Whether no answer is stored.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn question(asker: Asker, request: &[u8]) -> Question {
        Question::new("/svc/Method", asker, request.to_vec())
    }

    /// Plain values into and out of the cache, for these tests.
    impl ReadCache {
        /// [`ReadCache::store`] of a value.
        fn keep<T: Send + Sync + 'static>(
            &self,
            question: Question,
            answer: T,
            answer_bytes: usize,
            mentions: Vec<Uuid>,
            generation: u64,
        ) {
            self.store(
                question,
                Arc::new(answer),
                answer_bytes,
                mentions,
                generation,
            );
        }

        /// [`ReadCache::get`], copied.
        fn copied<T: Copy + Send + Sync + 'static>(
            self: &Arc<Self>,
            question: &Question,
        ) -> Option<T> {
            self.get::<T>(question).map(|hit| *hit.answer)
        }
    }

    /// A cache whose answers are all due for a refresh at once (their refresh point is at
    /// the start of their life).
    fn refreshing_at_once(ttl: Duration) -> Arc<ReadCache> {
        Arc::new(ReadCache {
            refresh_from: (0.0, 0.0),
            ..ReadCache::new(ttl)
        })
    }

    #[test]
    fn a_hit_late_in_its_entrys_life_claims_one_refresh_whose_answer_replaces_the_entry() {
        let cache = refreshing_at_once(Duration::from_secs(60));
        let asked = question(Asker::Gateway, b"a");
        cache.keep(asked.clone(), 1_u8, 1, Vec::new(), cache.generation());
        let hit = cache.get::<u8>(&asked).expect("stored");
        assert_eq!(*hit.answer, 1);
        let refresh = hit
            .refresh
            .expect("the entry is due: this hit refreshes it");
        // One refresh of an entry at a time: the next hits are served without one.
        let again = cache.get::<u8>(&asked).expect("still stored");
        assert!(again.refresh.is_none());
        refresh.keep(asked.clone(), Arc::new(2_u8), 1, Vec::new());
        // The refreshed answer is served, and its entry may be refreshed in its turn.
        let refreshed = cache.get::<u8>(&asked).expect("refreshed");
        assert_eq!(*refreshed.answer, 2);
        assert!(refreshed.refresh.is_some());
    }

    #[test]
    fn a_hit_early_in_its_entrys_life_refreshes_nothing() {
        let cache = Arc::new(ReadCache::new(Duration::from_secs(60)));
        let asked = question(Asker::Gateway, b"a");
        cache.keep(asked.clone(), 1_u8, 1, Vec::new(), cache.generation());
        assert!(cache.get::<u8>(&asked).expect("stored").refresh.is_none());
    }

    #[test]
    fn a_refresh_that_overlaps_a_write_on_what_it_mentions_is_not_kept() {
        let cache = refreshing_at_once(Duration::from_secs(60));
        let asked = question(Asker::Gateway, b"a");
        cache.keep(asked.clone(), 1_u8, 1, vec![id(1)], cache.generation());
        let refresh = cache.get::<u8>(&asked).and_then(|hit| hit.refresh);
        let refresh = refresh.expect("due");
        cache.forget(&[id(1)]);
        refresh.keep(asked.clone(), Arc::new(2_u8), 1, vec![id(1)]);
        assert_eq!(cache.copied::<u8>(&asked), None);
    }

    #[test]
    fn a_refresh_that_is_now_denied_forgets_the_kept_permission() {
        use kc_proto::access::CheckResponse;
        let cache = refreshing_at_once(Duration::from_secs(60));
        let asked = question(Asker::Gateway, b"check");
        let answer = |allowed| BatchCheckResponse {
            results: vec![CheckResponse {
                allowed,
                ..Default::default()
            }],
        };
        cache.keep(
            asked.clone(),
            answer(true),
            8,
            Vec::new(),
            cache.generation(),
        );
        let refresh = cache
            .get::<BatchCheckResponse>(&asked)
            .and_then(|hit| hit.refresh)
            .expect("due");
        refresh.keep(asked.clone(), Arc::new(answer(false)), 8, Vec::new());
        assert!(cache.is_empty(), "the allowed answer is no longer served");
    }

    #[test]
    fn refreshes_in_flight_are_bounded_and_a_finished_one_frees_its_place() {
        let cache = refreshing_at_once(Duration::from_secs(60));
        let asked = |n: usize| question(Asker::Gateway, &n.to_be_bytes());
        for n in 0..=REFRESHES_IN_FLIGHT {
            cache.keep(asked(n), n, 1, Vec::new(), cache.generation());
        }
        let mut tickets: Vec<Refresh> = (0..REFRESHES_IN_FLIGHT)
            .filter_map(|n| cache.get::<usize>(&asked(n)).and_then(|hit| hit.refresh))
            .collect();
        assert_eq!(tickets.len(), REFRESHES_IN_FLIGHT);
        let last = asked(REFRESHES_IN_FLIGHT);
        assert!(cache.get::<usize>(&last).expect("stored").refresh.is_none());
        drop(tickets.pop());
        assert!(cache.get::<usize>(&last).expect("stored").refresh.is_some());
    }

    #[test]
    fn refresh_points_spread_over_their_bounds() {
        let mut state = State::default();
        let points: Vec<f64> = (0..1000)
            .map(|_| state.refresh_fraction(REFRESH_FROM))
            .collect();
        assert!(
            points
                .iter()
                .all(|point| (REFRESH_FROM.0..REFRESH_FROM.1).contains(point))
        );
        let lowest = points.iter().copied().fold(f64::MAX, f64::min);
        let highest = points.iter().copied().fold(f64::MIN, f64::max);
        let width = REFRESH_FROM.1 - REFRESH_FROM.0;
        assert!(lowest < REFRESH_FROM.0 + width / 10.0, "{lowest}");
        assert!(highest > REFRESH_FROM.1 - width / 10.0, "{highest}");
    }

    #[test]
    fn a_hit_shares_the_stored_answer_rather_than_copying_it() {
        let cache = Arc::new(ReadCache::new(Duration::from_secs(60)));
        let page = Arc::new(vec![String::from("a large page")]);
        let asked = question(Asker::Gateway, b"a");
        cache.store(
            asked.clone(),
            Arc::clone(&page),
            12,
            Vec::new(),
            cache.generation(),
        );
        let first = cache.get::<Vec<String>>(&asked).expect("stored").answer;
        let second = cache.get::<Vec<String>>(&asked).expect("stored").answer;
        assert!(Arc::ptr_eq(&first, &page) && Arc::ptr_eq(&second, &page));
    }

    #[test]
    fn answers_are_kept_per_asker_and_request() {
        let cache = Arc::new(ReadCache::new(Duration::from_secs(60)));
        let alice = Asker::Customer(Uuid::from_u128(1));
        let bob = Asker::Customer(Uuid::from_u128(2));
        cache.keep(
            question(alice, b"a"),
            7_u32,
            4,
            Vec::new(),
            cache.generation(),
        );
        assert_eq!(cache.copied::<u32>(&question(alice, b"a")), Some(7));
        assert_eq!(cache.copied::<u32>(&question(bob, b"a")), None);
        assert_eq!(cache.copied::<u32>(&question(Asker::Gateway, b"a")), None);
        assert_eq!(cache.copied::<u32>(&question(alice, b"b")), None);
        // Another type under the same question is a miss, never a wrong answer.
        assert_eq!(cache.copied::<u64>(&question(alice, b"a")), None);
    }

    #[test]
    fn answers_expire_after_the_ttl() {
        // Long enough that a slow machine still reads the answer back before it expires.
        let cache = Arc::new(ReadCache::new(Duration::from_millis(500)));
        cache.keep(
            question(Asker::Gateway, b"a"),
            1_u8,
            1,
            Vec::new(),
            cache.generation(),
        );
        assert_eq!(cache.copied::<u8>(&question(Asker::Gateway, b"a")), Some(1));
        std::thread::sleep(Duration::from_millis(510));
        assert_eq!(cache.copied::<u8>(&question(Asker::Gateway, b"a")), None);
    }

    #[test]
    fn a_read_that_overlaps_a_write_is_not_stored() {
        let cache = Arc::new(ReadCache::new(Duration::from_secs(60)));
        let before = cache.generation();
        cache.keep(question(Asker::Gateway, b"a"), 1_u8, 1, Vec::new(), before);
        cache.forget(&[]);
        assert!(cache.is_empty());
        cache.keep(question(Asker::Gateway, b"b"), 2_u8, 1, Vec::new(), before);
        assert_eq!(cache.copied::<u8>(&question(Asker::Gateway, b"b")), None);
        cache.keep(
            question(Asker::Gateway, b"b"),
            3_u8,
            1,
            Vec::new(),
            cache.generation(),
        );
        assert_eq!(cache.copied::<u8>(&question(Asker::Gateway, b"b")), Some(3));
    }

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    #[test]
    fn a_write_forgets_only_the_answers_that_mention_its_ids() {
        let cache = Arc::new(ReadCache::new(Duration::from_secs(60)));
        let site = id(1);
        let other_site = id(2);
        cache.keep(
            question(Asker::Gateway, b"a"),
            1_u8,
            1,
            vec![site],
            cache.generation(),
        );
        cache.keep(
            question(Asker::Gateway, b"b"),
            2_u8,
            1,
            vec![other_site],
            cache.generation(),
        );
        // The question's own bytes count: a request naming the site.
        let naming = question(Asker::Gateway, site.to_string().as_bytes());
        let mut request = vec![0x0a, 36];
        request.extend(site.to_string().as_bytes());
        let naming_site = question(Asker::Gateway, &request);
        cache.keep(naming.clone(), 3_u8, 1, Vec::new(), cache.generation());
        cache.keep(naming_site.clone(), 4_u8, 1, Vec::new(), cache.generation());
        cache.forget(&[site, id(99)]);
        assert_eq!(cache.copied::<u8>(&question(Asker::Gateway, b"a")), None);
        assert_eq!(cache.copied::<u8>(&question(Asker::Gateway, b"b")), Some(2));
        // Raw text is not a message: only an id in a field counts.
        assert_eq!(cache.copied::<u8>(&naming), Some(3));
        assert_eq!(cache.copied::<u8>(&naming_site), None);
        // An answer read afresh after the write is kept again.
        cache.keep(
            question(Asker::Gateway, b"a"),
            5_u8,
            1,
            vec![site],
            cache.generation(),
        );
        assert_eq!(cache.copied::<u8>(&question(Asker::Gateway, b"a")), Some(5));
    }

    #[test]
    fn a_read_that_overlaps_a_write_on_what_it_mentions_is_not_stored() {
        let cache = Arc::new(ReadCache::new(Duration::from_secs(60)));
        let before = cache.generation();
        cache.forget(&[id(1)]);
        cache.keep(question(Asker::Gateway, b"a"), 1_u8, 1, vec![id(1)], before);
        assert_eq!(cache.copied::<u8>(&question(Asker::Gateway, b"a")), None);
        cache.keep(question(Asker::Gateway, b"b"), 2_u8, 1, vec![id(2)], before);
        assert_eq!(cache.copied::<u8>(&question(Asker::Gateway, b"b")), Some(2));
        // A write that names nothing forgets everything, in flight too.
        let before = cache.generation();
        cache.forget(&[]);
        assert!(cache.is_empty());
        cache.keep(question(Asker::Gateway, b"c"), 3_u8, 1, vec![id(3)], before);
        assert_eq!(cache.copied::<u8>(&question(Asker::Gateway, b"c")), None);
    }

    #[test]
    fn dropping_old_write_records_refuses_reads_still_in_flight_from_before_them() {
        let cache = Arc::new(ReadCache::new(Duration::from_millis(10)));
        let before = cache.generation();
        cache.forget(&[id(1)]);
        std::thread::sleep(Duration::from_millis(20));
        for n in 0..WRITTEN_IDS_BEFORE_PRUNING as u128 {
            cache.forget(&[id(1000 + n)]);
        }
        // The record of id 1 is dropped by now; the old read must still not be stored.
        cache.forget(&[id(5000)]);
        // `len` counts expired entries too: with a 10 ms lifetime, `get` could not tell a
        // refused store from an entry that expired on a slow machine.
        cache.keep(question(Asker::Gateway, b"a"), 1_u8, 1, vec![id(1)], before);
        assert_eq!(cache.len(), 0);
        cache.keep(
            question(Asker::Gateway, b"a"),
            2_u8,
            1,
            vec![id(1)],
            cache.generation(),
        );
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn denials_are_not_worth_storing() {
        use kc_proto::access::CheckResponse;
        let allowed = |allowed| CheckResponse {
            allowed,
            ..Default::default()
        };
        let all = BatchCheckResponse {
            results: vec![allowed(true), allowed(true)],
        };
        let one_denied = BatchCheckResponse {
            results: vec![allowed(true), allowed(false)],
        };
        assert!(worth_storing(&all));
        assert!(!worth_storing(&one_denied));
        assert!(worth_storing(&7_u32));
    }

    #[test]
    fn storing_a_question_again_replaces_its_answer_and_its_size() {
        let cache = Arc::new(ReadCache::new(Duration::from_secs(60)));
        let big = LARGEST_ENTRY_BYTES - ENTRY_OVERHEAD_BYTES - 1;
        // Sixteen entries of the largest size fill the budget exactly; storing the same
        // question again must not count it twice (and so must not empty the cache).
        for index in 0..15_u8 {
            cache.keep(
                question(Asker::Gateway, &[index]),
                index,
                big,
                Vec::new(),
                cache.generation(),
            );
        }
        for round in 0..3_u8 {
            cache.keep(
                question(Asker::Gateway, &[15]),
                round,
                big,
                Vec::new(),
                cache.generation(),
            );
        }
        assert_eq!(cache.len(), 16);
        assert_eq!(cache.copied::<u8>(&question(Asker::Gateway, &[0])), Some(0));
        assert_eq!(
            cache.copied::<u8>(&question(Asker::Gateway, &[15])),
            Some(2)
        );
    }

    #[test]
    fn empty_answers_count_against_the_budget() {
        let cache = Arc::new(ReadCache::new(Duration::from_secs(60)));
        let most = BUDGET_BYTES / (ENTRY_OVERHEAD_BYTES + 4);
        for index in 0..(most as u32 + 10) {
            cache.keep(
                question(Asker::Gateway, &index.to_be_bytes()),
                (),
                0,
                Vec::new(),
                cache.generation(),
            );
        }
        assert!(cache.len() <= most, "{} entries of no answer", cache.len());
    }

    #[test]
    fn a_zero_ttl_keeps_nothing() {
        let cache = Arc::new(ReadCache::new(Duration::ZERO));
        cache.keep(
            question(Asker::Gateway, b"a"),
            1_u8,
            1,
            Vec::new(),
            cache.generation(),
        );
        assert!(cache.is_empty());
        assert_eq!(cache.copied::<u8>(&question(Asker::Gateway, b"a")), None);
    }

    #[test]
    fn the_budget_bounds_what_is_kept() {
        let cache = Arc::new(ReadCache::new(Duration::from_secs(60)));
        cache.keep(
            question(Asker::Gateway, b"huge"),
            0_u8,
            LARGEST_ENTRY_BYTES + 1,
            Vec::new(),
            cache.generation(),
        );
        assert!(cache.is_empty());
        // The largest entry: its answer, its one-byte question and the overhead.
        let largest_answer = LARGEST_ENTRY_BYTES - ENTRY_OVERHEAD_BYTES - 1;
        for index in 0..20_u8 {
            cache.keep(
                question(Asker::Gateway, &[index]),
                index,
                largest_answer,
                Vec::new(),
                cache.generation(),
            );
        }
        let held = cache.len();
        assert!(
            held <= 16,
            "{held} entries of a sixteenth of the budget each"
        );
        assert_eq!(
            cache.copied::<u8>(&question(Asker::Gateway, &[19])),
            Some(19)
        );
    }
}
