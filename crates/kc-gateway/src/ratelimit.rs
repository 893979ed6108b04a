//! The gateway's rate limits: token buckets kept in each replica's memory.
//!
//! - **Per client address** (`--session-rate-limit`, `--session-rate-burst`): the public
//!   session RPCs and the signed-in RPCs that check a secret. The client address is the TCP
//!   peer's, or, when the peer is one of `--trusted-proxies`, the one the proxies forwarded
//!   ([`client_address`]); an IPv6 client is keyed by its /64 ([`address_key`]).
//! - **Per signed-in caller** ([`WriteClass`]): access requests (`--access-request-rate-…`)
//!   and the other writes that send mail (`--write-rate-…`), keyed by the caller's subject.
//!
//! Every map of buckets is bounded ([`MAX_TRACKED`]). When it is full, a new key first
//! forgets the buckets that refilled (they behave exactly like new ones); if that is not
//! enough, it forgets an eighth of them, those closest to full (the ones idle longest), never
//! all at once, so a flood of new keys cannot reset a bucket that is still being emptied.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tonic::metadata::MetadataMap;
use uuid::Uuid;

/// Most keys tracked at once by one limiter.
pub(crate) const MAX_TRACKED: usize = 100_000;

/// The share of a full map forgotten at once when no bucket has refilled: one in this many.
const EVICT_DIVISOR: usize = 8;

/// Most `X-Forwarded-For` hops read, right to left, before the client is taken as unknown.
const MAX_FORWARDED_HOPS: usize = 32;

/// A sustained rate: `tokens` per `per`, or no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rate {
    /// No limit.
    Off,
    /// At most `tokens` calls per `per` on average.
    Limit {
        /// Calls allowed per period.
        tokens: u32,
        /// The period.
        per: Duration,
    },
}

/// Counter of calls refused by a rate limit (`RESOURCE_EXHAUSTED`), by `limit`: `session`
/// (sign-ins and refreshes per client address), `access_request` or `write` (per caller).
pub(crate) const RATE_LIMITED: &str = "keycontacts_rate_limited_total";

/// Parses `20/min`, `5/s`, `100/h`, a period of several units such as `5/10min` (units:
/// `s`, `sec`, `second`, `m`, `min`, `minute`, `h`, `hour`), or `off`.
pub(crate) fn parse_rate(text: &str) -> Result<Rate, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("off") {
        return Ok(Rate::Off);
    }
    let bad = || format!("`{text}` is not a rate like 20/min, 5/s, 100/h, 5/10min or off");
    let (count, period) = text.split_once('/').ok_or_else(bad)?;
    let tokens: u32 = count.trim().parse().map_err(|_| bad())?;
    let period = period.trim();
    let digits = period.len()
        - period
            .trim_start_matches(|c: char| c.is_ascii_digit())
            .len();
    let (multiple, unit) = period.split_at(digits);
    let multiple: u32 = if multiple.is_empty() {
        1
    } else {
        multiple.parse().map_err(|_| bad())?
    };
    let unit = match unit.trim() {
        "s" | "sec" | "second" => Duration::from_secs(1),
        "m" | "min" | "minute" => Duration::from_secs(60),
        "h" | "hour" => Duration::from_secs(3600),
        _ => return Err(bad()),
    };
    if tokens == 0 || multiple == 0 {
        return Err(format!(
            "`{text}`: the rate must be more than 0 per a period of more than 0 (or off)"
        ));
    }
    Ok(Rate::Limit {
        tokens,
        per: unit * multiple,
    })
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Token buckets by key (a client address, a caller), at most `capacity` of them.
#[derive(Debug)]
pub(crate) struct RateLimiter<K = IpAddr> {
    /// Tokens added per second; `None` when there is no limit.
    refill_per_second: Option<f64>,
    /// Bucket size: the calls allowed in a burst.
    burst: f64,
    /// Most buckets kept.
    capacity: usize,
    buckets: Mutex<HashMap<K, Bucket>>,
}

impl<K: Eq + Hash + Copy> RateLimiter<K> {
    /// A limiter allowing `rate` on average and bursts of `burst` calls (at least 1), keeping
    /// at most [`MAX_TRACKED`] buckets.
    pub(crate) fn new(rate: Rate, burst: u32) -> Self {
        Self::with_capacity(rate, burst, MAX_TRACKED)
    }

    /// Like [`RateLimiter::new`], keeping at most `capacity` buckets (at least 1).
    pub(crate) fn with_capacity(rate: Rate, burst: u32, capacity: usize) -> Self {
        let refill_per_second = match rate {
            Rate::Off => None,
            Rate::Limit { tokens, per } => Some(f64::from(tokens) / per.as_secs_f64()),
        };
        Self {
            refill_per_second,
            burst: f64::from(burst.max(1)),
            capacity: capacity.max(1),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token for `key` now; `Err(wait)` says how long until one is free.
    pub(crate) fn acquire(&self, key: K) -> Result<(), Duration> {
        self.acquire_at(key, Instant::now())
    }

    /// Takes a token for `key` at `now`; `Err(wait)` says how long until one is free.
    pub(crate) fn acquire_at(&self, key: K, now: Instant) -> Result<(), Duration> {
        let Some(refill) = self.refill_per_second else {
            return Ok(());
        };
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if buckets.len() >= self.capacity && !buckets.contains_key(&key) {
            self.make_room(&mut buckets, refill, now);
        }
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: self.burst,
            updated: now,
        });
        bucket.tokens = level(bucket, refill, self.burst, now);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / refill))
        }
    }

    /// The number of buckets kept.
    #[cfg(test)]
    pub(crate) fn tracked(&self) -> usize {
        self.buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .len()
    }

    /// Frees room in a full map: the refilled buckets go (forgetting them changes nothing);
    /// if none did, the eighth of the buckets closest to full (idle longest) goes.
    fn make_room(&self, buckets: &mut HashMap<K, Bucket>, refill: f64, now: Instant) {
        let burst = self.burst;
        buckets.retain(|_, bucket| level(bucket, refill, burst, now) < burst);
        if buckets.len() < self.capacity {
            return;
        }
        let evict = (buckets.len() / EVICT_DIVISOR).max(1);
        let mut levels: Vec<(f64, K)> = buckets
            .iter()
            .map(|(key, bucket)| (level(bucket, refill, burst, now), *key))
            .collect();
        // The `evict` fullest buckets first (ties: any order).
        levels.select_nth_unstable_by(evict - 1, |a, b| b.0.total_cmp(&a.0));
        for (_, key) in &levels[..evict] {
            buckets.remove(key);
        }
        tracing::warn!(
            tracked = buckets.len(),
            forgotten = evict,
            "rate limiter full; forgot the buckets idle longest"
        );
    }
}

/// The tokens in `bucket` at `now`, refilled since its last update, at most `burst`.
fn level(bucket: &Bucket, refill: f64, burst: f64, now: Instant) -> f64 {
    let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
    (bucket.tokens + elapsed * refill).min(burst)
}

// ---- client addresses ----

/// An address range: `192.0.2.0/24`, `2001:db8::/32`, or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `address` is in the range (an IPv4-mapped IPv6 address counts as IPv4).
    pub(crate) fn contains(&self, address: IpAddr) -> bool {
        match (self.network, canonical(address)) {
            (IpAddr::V4(network), IpAddr::V4(address)) => {
                mask(u128::from(u32::from(network)), self.prefix, 32)
                    == mask(u128::from(u32::from(address)), self.prefix, 32)
            }
            (IpAddr::V6(network), IpAddr::V6(address)) => {
                mask(u128::from(network), self.prefix, 128)
                    == mask(u128::from(address), self.prefix, 128)
            }
            _ => false,
        }
    }
}

/// `value` (of `bits` bits) with everything after the first `prefix` bits zeroed.
fn mask(value: u128, prefix: u8, bits: u8) -> u128 {
    let host_bits = u32::from(bits.saturating_sub(prefix));
    if host_bits >= 128 {
        0
    } else {
        value >> host_bits << host_bits
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let bad = || format!("`{text}` is not an address range like 10.0.0.0/8 or fd00::/8");
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network = canonical(address.trim().parse::<IpAddr>().map_err(|_| bad())?);
        let bits = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(prefix) => prefix.trim().parse::<u8>().map_err(|_| bad())?,
            None => bits,
        };
        if prefix > bits {
            return Err(format!("`{text}`: the prefix length is at most {bits}"));
        }
        Ok(Self { network, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// The proxies whose forwarded client addresses the gateway believes
/// (`--trusted-proxies`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<Cidr>);

impl TrustedProxies {
    /// No trusted proxy: the client is always the TCP peer.
    pub fn none() -> Self {
        Self::default()
    }

    /// Whether `address` is a trusted proxy.
    pub fn trusts(&self, address: IpAddr) -> bool {
        self.0.iter().any(|range| range.contains(address))
    }

    /// Whether no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Parses a comma-separated list of address ranges (`10.0.0.0/8,fd00::/8`); empty is none.
pub(crate) fn parse_trusted_proxies(text: &str) -> Result<TrustedProxies, String> {
    text.split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(Cidr::from_str)
        .collect::<Result<Vec<_>, _>>()
        .map(TrustedProxies)
}

/// An IPv4-mapped IPv6 address as IPv4; any other address as it is.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// The address of the client of a call whose TCP peer is `peer`.
///
/// When the peer is a trusted proxy, the client is read from `x-forwarded-for` (walking from
/// the right, the first address that is not a trusted proxy; the left-most if all are), or
/// when that header is absent from `forwarded` (RFC 7239, its `for=` parameters, likewise).
/// A hop that cannot be read (`unknown`, an obfuscated name, garbage) ends the walk: the
/// client is then the last trusted proxy seen, so such clients share that proxy's bucket
/// rather than escape the limit. When the peer is not trusted, the headers are ignored.
pub(crate) fn client_address(
    peer: Option<SocketAddr>,
    metadata: &MetadataMap,
    trusted: &TrustedProxies,
) -> Option<IpAddr> {
    let peer = canonical(peer?.ip());
    if !trusted.trusts(peer) {
        return Some(peer);
    }
    let hops = forwarded_hops(metadata);
    let mut client = peer;
    for hop in hops.iter().rev().take(MAX_FORWARDED_HOPS) {
        let Some(address) = hop.as_deref().and_then(parse_hop) else {
            break;
        };
        client = address;
        if !trusted.trusts(address) {
            break;
        }
    }
    Some(client)
}

/// The forwarded hops, left to right, from `x-forwarded-for` or else `forwarded`; `None`
/// marks a hop that is not text.
fn forwarded_hops(metadata: &MetadataMap) -> Vec<Option<String>> {
    let values = |name: &str| -> Vec<Option<String>> {
        metadata
            .get_all(name)
            .iter()
            .map(|value| value.to_str().ok().map(str::to_owned))
            .collect()
    };
    let xff = values("x-forwarded-for");
    if !xff.is_empty() {
        return xff
            .into_iter()
            .flat_map(|value| match value {
                Some(text) => text
                    .split(',')
                    .map(|hop| Some(hop.trim().to_owned()))
                    .collect::<Vec<_>>(),
                None => vec![None],
            })
            .collect();
    }
    values("forwarded")
        .into_iter()
        .flat_map(|value| match value {
            Some(text) => text
                .split(',')
                .map(|element| {
                    element.split(';').find_map(|pair| {
                        let (name, value) = pair.split_once('=')?;
                        name.trim()
                            .eq_ignore_ascii_case("for")
                            .then(|| value.trim().trim_matches('"').to_owned())
                    })
                })
                .collect::<Vec<_>>(),
            None => vec![None],
        })
        .collect()
}

/// One forwarded hop as an address: `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`,
/// `[2001:db8::1]` or `[2001:db8::1]:4711`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    if let Ok(address) = hop.parse::<IpAddr>() {
        return Some(canonical(address));
    }
    if let Ok(socket) = hop.parse::<SocketAddr>() {
        return Some(canonical(socket.ip()));
    }
    let inner = hop.strip_prefix('[')?.strip_suffix(']')?;
    inner
        .parse::<Ipv6Addr>()
        .ok()
        .map(|v6| canonical(IpAddr::V6(v6)))
}

/// The bucket key of a client address: an IPv4 address as it is, an IPv6 address by its
/// /64 (one subscriber's network: a client changing its interface identifier stays in
/// its bucket).
pub(crate) fn address_key(address: IpAddr) -> IpAddr {
    match canonical(address) {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(mask(u128::from(v6), 64, 128))),
        v4 => v4,
    }
}

// ---- per-caller limits of signed-in writes ----

/// The per-caller limit a signed-in write falls under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteClass {
    /// Access requests: `SelfNominate` and `CancelMyRequest` (each mails approvers or the
    /// requester).
    AccessRequest,
    /// The other writes that send mail (contacts, rights, decisions, notices, the caller's
    /// own profile and address).
    Mail,
}

/// The per-caller limiters of signed-in writes, keyed by the caller's subject (a user id,
/// or a service account's client id).
#[derive(Debug)]
pub(crate) struct WriteLimits {
    access_requests: RateLimiter<Uuid>,
    mail: RateLimiter<Uuid>,
}

impl WriteLimits {
    /// Limits with these rates and bursts.
    pub(crate) fn new(access_requests: (Rate, u32), mail: (Rate, u32)) -> Self {
        Self {
            access_requests: RateLimiter::new(access_requests.0, access_requests.1),
            mail: RateLimiter::new(mail.0, mail.1),
        }
    }

    /// No limit on any write.
    #[cfg(test)]
    pub(crate) fn off() -> Self {
        Self::new((Rate::Off, 1), (Rate::Off, 1))
    }

    /// Takes a token of `class` for `subject`; `Err(wait)` says how long until one is free.
    pub(crate) fn acquire(&self, class: WriteClass, subject: Uuid) -> Result<(), Duration> {
        match class {
            WriteClass::AccessRequest => self.access_requests.acquire(subject),
            WriteClass::Mail => self.mail.acquire(subject),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    fn metadata(pairs: &[(&'static str, &str)]) -> MetadataMap {
        let mut map = MetadataMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().unwrap());
        }
        map
    }

    fn peer(address: &str) -> Option<SocketAddr> {
        Some(SocketAddr::new(address.parse().unwrap(), 40000))
    }

    #[test]
    fn rates_parse() {
        assert_eq!(
            parse_rate("20/min"),
            Ok(Rate::Limit {
                tokens: 20,
                per: Duration::from_secs(60)
            })
        );
        assert_eq!(
            parse_rate(" 5/s "),
            Ok(Rate::Limit {
                tokens: 5,
                per: Duration::from_secs(1)
            })
        );
        assert_eq!(
            parse_rate("5/10min"),
            Ok(Rate::Limit {
                tokens: 5,
                per: Duration::from_secs(600)
            })
        );
        assert_eq!(parse_rate("OFF"), Ok(Rate::Off));
        for bad in ["20", "x/min", "20/day", "0/min", "-1/s", "5/0min", "5/10"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_burst_passes_then_the_rate_refills_one_at_a_time() {
        let limiter = RateLimiter::new(parse_rate("20/min").unwrap(), 10);
        let start = Instant::now();
        for _ in 0..10 {
            limiter.acquire_at(ip(1), start).expect("within the burst");
        }
        let wait = limiter.acquire_at(ip(1), start).expect_err("burst used up");
        assert_eq!(wait, Duration::from_secs(3));
        // Another address has its own bucket.
        limiter.acquire_at(ip(2), start).expect("other address");
        // One token every 3 seconds.
        limiter
            .acquire_at(ip(1), start + Duration::from_secs(3))
            .expect("refilled one");
        assert!(
            limiter
                .acquire_at(ip(1), start + Duration::from_secs(4))
                .is_err()
        );
        // A long pause refills the bucket, never beyond the burst.
        let later = start + Duration::from_secs(3600);
        for _ in 0..10 {
            limiter.acquire_at(ip(1), later).expect("full again");
        }
        assert!(limiter.acquire_at(ip(1), later).is_err());
    }

    #[test]
    fn off_never_limits() {
        let limiter = RateLimiter::new(Rate::Off, 1);
        let now = Instant::now();
        for _ in 0..1000 {
            limiter.acquire_at(ip(1), now).expect("no limit");
        }
    }

    #[test]
    fn a_flood_of_new_addresses_does_not_reset_an_exhausted_bucket() {
        let limiter = RateLimiter::with_capacity(parse_rate("1/h").unwrap(), 10, 64);
        let start = Instant::now();
        let victim = ip(1);
        for _ in 0..10 {
            limiter.acquire_at(victim, start).expect("within the burst");
        }
        assert!(limiter.acquire_at(victim, start).is_err());
        // Ten thousand new addresses (documentation ranges), each taking a token, one
        // millisecond apart: the map stays bounded, and the emptied bucket stays empty.
        for n in 0..10_000u32 {
            let now = start + Duration::from_millis(u64::from(n));
            let [_, _, c, d] = n.to_be_bytes();
            let address = IpAddr::from([198, 51, c, d]);
            limiter.acquire_at(address, now).expect("a new address");
            assert!(limiter.tracked() <= 64);
        }
        let after = start + Duration::from_millis(10_000);
        assert!(
            limiter.acquire_at(victim, after).is_err(),
            "the flood reset the exhausted bucket"
        );
        // Never every bucket at once: at most an eighth was forgotten at the last eviction.
        assert!(limiter.tracked() >= 64 - 64 / EVICT_DIVISOR);
    }

    #[test]
    fn the_buckets_idle_longest_are_forgotten_first() {
        let limiter = RateLimiter::with_capacity(parse_rate("1/h").unwrap(), 2, 8);
        let start = Instant::now();
        for n in 0..8u8 {
            let now = start + Duration::from_secs(u64::from(n) * 60);
            limiter.acquire_at(ip(n), now).expect("first call");
            limiter.acquire_at(ip(n), now).expect("second call");
        }
        // Full, nothing refilled: the new one forgets one bucket, the one idle longest.
        let now = start + Duration::from_secs(8 * 60);
        limiter.acquire_at(ip(100), now).expect("new address");
        assert_eq!(limiter.tracked(), 8);
        limiter
            .acquire_at(ip(0), now)
            .expect("the oldest bucket was forgotten");
        assert!(
            limiter.acquire_at(ip(7), now).is_err(),
            "the newest is kept"
        );
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff:1:2:3".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(other));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(address_key(mapped), ip(7));
        assert_eq!(address_key(ip(7)), ip(7));

        // One /64 shares one bucket.
        let limiter = RateLimiter::new(parse_rate("1/h").unwrap(), 2);
        let now = Instant::now();
        limiter.acquire_at(address_key(a), now).expect("first");
        limiter.acquire_at(address_key(b), now).expect("second");
        assert!(limiter.acquire_at(address_key(a), now).is_err());
        assert!(limiter.acquire_at(address_key(b), now).is_err());
        limiter
            .acquire_at(address_key(other), now)
            .expect("another /64");
    }

    #[test]
    fn ranges_parse_and_match() {
        let proxies = parse_trusted_proxies("10.0.0.0/8, 192.0.2.1 ,fd00::/8").unwrap();
        assert!(proxies.trusts("10.1.2.3".parse().unwrap()));
        assert!(proxies.trusts("::ffff:10.1.2.3".parse().unwrap()));
        assert!(proxies.trusts(ip(1)));
        assert!(!proxies.trusts(ip(2)));
        assert!(proxies.trusts("fd12::1".parse().unwrap()));
        assert!(!proxies.trusts("2001:db8::1".parse().unwrap()));
        assert!(parse_trusted_proxies("").unwrap().is_empty());
        let everything = parse_trusted_proxies("0.0.0.0/0").unwrap();
        assert!(everything.trusts("203.0.113.9".parse().unwrap()));
        for bad in ["10.0.0.0/33", "fd00::/129", "proxy.local", "10.0.0/8"] {
            assert!(parse_trusted_proxies(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn forwarded_addresses_count_only_from_trusted_proxies() {
        let trusted = parse_trusted_proxies("10.0.0.0/8").unwrap();
        // An untrusted peer's header is ignored.
        let forged = metadata(&[("x-forwarded-for", "203.0.113.5")]);
        assert_eq!(
            client_address(peer("198.51.100.7"), &forged, &trusted),
            Some("198.51.100.7".parse().unwrap())
        );
        // Behind a trusted proxy: the right-most address not a trusted proxy; what the
        // client wrote itself (left of it) is not believed.
        let chain = metadata(&[("x-forwarded-for", "1.2.3.4, 203.0.113.5, 10.0.0.2")]);
        assert_eq!(
            client_address(peer("10.0.0.1"), &chain, &trusted),
            Some("203.0.113.5".parse().unwrap())
        );
        // Several headers read as one list.
        let split = metadata(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-for", "203.0.113.6:5555"),
        ]);
        assert_eq!(
            client_address(peer("10.0.0.1"), &split, &trusted),
            Some("203.0.113.6".parse().unwrap())
        );
        // RFC 7239.
        let standard = metadata(&[(
            "forwarded",
            "for=1.2.3.4, for=\"[2001:db8::17]:4711\";proto=https, for=10.0.0.3",
        )]);
        assert_eq!(
            client_address(peer("10.0.0.1"), &standard, &trusted),
            Some("2001:db8::17".parse().unwrap())
        );
        // An unreadable hop: the last trusted proxy stands for the client.
        let unknown = metadata(&[("forwarded", "for=unknown, for=10.0.0.4")]);
        assert_eq!(
            client_address(peer("10.0.0.1"), &unknown, &trusted),
            Some("10.0.0.4".parse().unwrap())
        );
        // No header: the proxy itself.
        assert_eq!(
            client_address(peer("10.0.0.1"), &MetadataMap::new(), &trusted),
            Some("10.0.0.1".parse().unwrap())
        );
        // Nothing trusted: always the peer.
        let chain = metadata(&[("x-forwarded-for", "203.0.113.5")]);
        assert_eq!(
            client_address(peer("10.0.0.1"), &chain, &TrustedProxies::none()),
            Some("10.0.0.1".parse().unwrap())
        );
        assert_eq!(client_address(None, &chain, &trusted), None);
    }

    #[test]
    fn write_limits_are_per_caller_and_per_class() {
        let limits = WriteLimits::new(
            (parse_rate("5/10min").unwrap(), 2),
            (parse_rate("60/min").unwrap(), 1),
        );
        let alice = Uuid::from_u128(1);
        let bob = Uuid::from_u128(2);
        limits.acquire(WriteClass::AccessRequest, alice).unwrap();
        limits.acquire(WriteClass::AccessRequest, alice).unwrap();
        let wait = limits
            .acquire(WriteClass::AccessRequest, alice)
            .expect_err("alice's requests are used up");
        // One token every two minutes (a little less by now).
        assert!(
            wait > Duration::from_secs(119) && wait <= Duration::from_secs(120),
            "{wait:?}"
        );
        limits.acquire(WriteClass::AccessRequest, bob).unwrap();
        limits.acquire(WriteClass::Mail, alice).unwrap();
        let off = WriteLimits::off();
        for _ in 0..100 {
            off.acquire(WriteClass::AccessRequest, alice).unwrap();
        }
    }
}
