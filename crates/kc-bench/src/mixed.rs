//! `gateway.mixed`: the gateway under a realistic mix of people, not ten callers hammering
//! ten sites.
//!
//! # The population
//!
//! [`population::SITES`] sites with 12 contacts each and [`population::USERS`] people,
//! bulk-loaded with SQL into identity, the registry, access management and notification
//! (see [`population`]): every person is PRIMARY or SECONDARY of one **home site** and
//! holds one or two other roles elsewhere; every fifth site has a pending access request.
//!
//! # The calls
//!
//! Each call is made by a person drawn from a Zipf distribution (s = [`ZIPF_S`]) over all
//! 50,000 (rank `r` is person `r * 7919 mod 50,000`, so the popular people are spread over
//! the sites), and is, by a second draw ([`MIX`]):
//!
//! - 50 % `ShowAllContacts` of the caller's home site (12 contacts: the registry's list, a
//!   `BatchCheck` on access, identity's users);
//! - 30 % `GetMe` (identity's user, the registry's contacts, access's rights);
//! - 15 % `ListPendingRequests` of the home site (access's requests, a check, the
//!   requesters from identity: one request on a fifth of the sites);
//! - 5 % writes, each one a person of the site may make and that succeeds: a **primary**
//!   alternates `SetToolAccess` (reporting VIEW, then NONE, on one of its two SITE_USERs,
//!   with a reason: T4, T5) and `UpdateContact`; a secondary always `UpdateContact`s. The
//!   `UpdateContact` changes the caller's own contact on its home site (a new phone number
//!   and its job title, notification e-mail kept empty so that no confirmation is asked,
//!   C11). Both need a right the home role implies (contacts UPDATE, manage access UPDATE,
//!   T3), both are decided again by the owning service at commit (T8), and both publish
//!   events that access, the registry and notification apply during the run, as in
//!   production. Every write also empties the gateway's read cache (see
//!   `kc-gateway/src/cache.rs`), which is what makes the hit rate below honest.
//!
//! The draws come from a fixed seed ([`SEED`]) and are made before the run: [`DRAWS`] calls,
//! cycled if the run makes more (a note says so). Only the people drawn are signed in
//! (identity's `RefreshSession` with the refresh token the fixture loaded, see
//! [`population`]): 24,538 of the 50,000 for the 250,000 draws (at s = 1.1 the tail is
//! long, but half the people never call), about 20 s of identity's time in a debug build.
//!
//! Before the run each kind of call is tried once (by the most frequent caller, a primary:
//! its home site shows 12 contacts and one pending request, GetMe shows it PRIMARY there,
//! both kinds of write succeed; and a secondary's write), then the seeding waits until
//! access and notification have applied identity's and the registry's events. The scenario
//! as a whole runs only under `cargo xtask bench gateway.mixed` (its pure parts and the
//! population's load have unit tests below and in `population.rs`).
//!
//! # What it prints
//!
//! Besides the table's figures (calls a second, ratio to the gateway's health baseline,
//! p50/p99), read from every service's `/metrics` at the start and the end of the measured
//! window ([`Prepared::beside`]):
//!
//! - the gateway's **read-cache hit rate**: `keycontacts_gateway_read_cache_hits_total`
//!   over hits and `…_misses_total` (one count per cached downstream read the gateway
//!   looked up, by downstream method), overall and by method;
//! - a **profile**: for each service, its RPCs in the window with their count and mean
//!   server-side time (`grpc_server_handling_seconds`), the costliest first.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, bail};
use futures::future::BoxFuture;
use kc_proto::access::{ReportingAccess, ToolAccess};
use kc_proto::contacts::{ContactDetails, ContactRole as PbContactRole};
use kc_proto::gateway::gateway_service_client::GatewayServiceClient;
use kc_proto::gateway::{
    GetMeRequest, ListPendingRequestsRequest, SetToolAccessRequest, ShowAllContactsRequest,
    UpdateContactRequest,
};
use kc_rights::rights::ContactRole;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;

use super::access::authorized;
use super::load::{CallFn, Window};
use super::population::{self, CONTACTS_PER_SITE, Population, ROLES, SITE_USER_POSITIONS, USERS};
use super::streams;
use crate::env::{BesideFn, Env, Prepared};

/// The exponent of the Zipf distribution of callers.
pub(crate) const ZIPF_S: f64 = 1.1;
/// Seed of the draws: every run makes the same calls.
const SEED: u64 = 0x6b63_6d69_7865_6421;
/// Calls drawn before the run.
const DRAWS: usize = 250_000;
/// Rank `r` (from 0) of the Zipf draw is person `r * RANK_STRIDE mod USERS`: a prime, so
/// every person has one rank.
const RANK_STRIDE: usize = 7_919;
/// The streams notification follows whose every event it is sent, and the names of its
/// cursors of them. Not access's: its `WatchEvents` leaves out the permission feed's events
/// (`permission.changed`), so a consumer's cursor of it stays behind the last one in the
/// outbox whenever a feed event comes last, and waiting for it would never end (the trial's
/// two grants publish a handful of events, applied within milliseconds anyway).
const NOTIFICATION_STREAMS: [(&str, &str); 2] = [
    ("identity", "notification.identity"),
    ("contacts", "notification.contacts"),
];

/// What a call does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Op {
    /// `ShowAllContacts` of the caller's home site.
    ShowAllContacts,
    /// `GetMe`.
    GetMe,
    /// `ListPendingRequests` of the caller's home site.
    ListPendingRequests,
    /// A write: `SetToolAccess` or `UpdateContact` (see the module documentation).
    Write,
}

/// The mix of calls: each operation with its share, in thousandths (exact: no rounding
/// moves a boundary).
pub(crate) const MIX: [(Op, u32); 4] = [
    (Op::ShowAllContacts, 500),
    (Op::GetMe, 300),
    (Op::ListPendingRequests, 150),
    (Op::Write, 50),
];

/// The operation a uniform draw in `[0, 1)` picks from [`MIX`].
pub(crate) fn pick(uniform: f64) -> Op {
    // Truncated towards zero, within 0..1000.
    let point = (uniform * 1000.0) as u32;
    let mut below = 0;
    for (op, share) in MIX {
        below += share;
        if point < below {
            return op;
        }
    }
    MIX[MIX.len() - 1].0
}

/// A Zipf distribution over ranks `0..n`: rank `k` has weight `(k + 1)^-s`.
pub(crate) struct Zipf {
    /// Cumulative probabilities, the last one 1.
    cdf: Vec<f64>,
}

impl Zipf {
    /// The distribution over `n` ranks with exponent `s`.
    pub(crate) fn new(n: usize, s: f64) -> Self {
        let mut cdf = Vec::with_capacity(n);
        let mut total = 0.0;
        for k in 1..=n {
            total += (k as f64).powf(-s);
            cdf.push(total);
        }
        for p in &mut cdf {
            *p /= total;
        }
        Self { cdf }
    }

    /// The probability of rank `k`.
    pub(crate) fn probability(&self, k: usize) -> f64 {
        self.cdf[k] - if k == 0 { 0.0 } else { self.cdf[k - 1] }
    }

    /// The rank a uniform draw in `[0, 1)` falls on.
    pub(crate) fn sample(&self, uniform: f64) -> usize {
        self.cdf
            .partition_point(|p| *p <= uniform)
            .min(self.cdf.len() - 1)
    }
}

/// SplitMix64: a small, fast generator, good enough for drawing calls.
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A uniform draw in `[0, 1)`.
    pub(crate) fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One call drawn: who makes it, and what it does.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Draw {
    /// The caller's Zipf rank.
    pub rank: usize,
    /// The caller (person index).
    pub user: usize,
    /// What it does.
    pub op: Op,
}

/// The gateway's default budget of writes that send mail per caller (`--write-rate-limit
/// 60/min`, `--write-rate-burst 30`), with a margin on the burst for the trial's writes.
const WRITE_BURST: f64 = 25.0;
/// Its refill, writes a second.
const WRITE_RATE: f64 = 1.0;

/// A caller's write budget as the load generator mirrors the gateway's token bucket.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bucket {
    tokens: f64,
    at: std::time::Instant,
}

impl Bucket {
    /// A full bucket at `now`.
    pub(crate) fn full(now: std::time::Instant) -> Self {
        Self {
            tokens: WRITE_BURST,
            at: now,
        }
    }

    /// Takes one write at `now` if the budget allows it.
    pub(crate) fn take(&mut self, now: std::time::Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * WRITE_RATE).min(WRITE_BURST);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Who makes the writes: the drawn caller while its budget lasts, else the next person in
/// Zipf order (signed in) whose budget does.
#[derive(Default)]
struct Writers {
    buckets: std::sync::Mutex<HashMap<usize, Bucket>>,
    /// Writes handed to another person than the one drawn.
    handed: AtomicUsize,
}

impl Writers {
    /// The person who makes the write drawn for rank `rank`, among those `signed_in` says.
    fn writer(&self, rank: usize, signed_in: impl Fn(usize) -> bool) -> usize {
        let now = std::time::Instant::now();
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for next in rank..rank + USERS {
            let user = person_of_rank(next % USERS);
            if !signed_in(user) {
                continue;
            }
            if buckets.entry(user).or_insert(Bucket::full(now)).take(now) {
                if next != rank {
                    self.handed.fetch_add(1, Ordering::Relaxed);
                }
                return user;
            }
        }
        person_of_rank(rank)
    }
}

/// The person of Zipf rank `rank`.
pub(crate) fn person_of_rank(rank: usize) -> usize {
    rank * RANK_STRIDE % USERS
}

/// `count` calls drawn from `seed`: callers by Zipf over the population, operations by
/// [`MIX`].
pub(crate) fn draw(seed: u64, count: usize) -> Vec<Draw> {
    let zipf = Zipf::new(USERS, ZIPF_S);
    let mut random = SplitMix64::new(seed);
    (0..count)
        .map(|_| {
            let rank = zipf.sample(random.next_f64());
            Draw {
                rank,
                user: person_of_rank(rank),
                op: pick(random.next_f64()),
            }
        })
        .collect()
}

/// A person who calls, signed in, with what its calls need.
struct Caller {
    /// `Bearer <access token>`.
    bearer: MetadataValue<Ascii>,
    /// Its home site.
    site_id: String,
    /// Its own contact on its home site.
    contact_id: String,
    /// Its role there.
    role: ContactRole,
    /// The site users of its home site.
    site_users: [String; 2],
}

/// Seeds `gateway.mixed`: see the module documentation.
pub(crate) fn seed_mixed(env: &Env) -> BoxFuture<'_, anyhow::Result<Prepared>> {
    Box::pin(async move {
        let (population, mut notes) = population::load(env).await?;
        let draws = draw(SEED, DRAWS);
        let mut people: Vec<usize> = draws.iter().map(|d| d.user).collect();
        people.sort_unstable();
        people.dedup();
        eprintln!(
            "xtask: signing in the {} people of {DRAWS} calls drawn (RefreshSession)",
            people.len()
        );
        let started = std::time::Instant::now();
        let bearers = population.sign_in(env, &people).await?;
        notes.push(format!(
            "{DRAWS} calls drawn (seed {SEED:#x}): {} distinct callers, signed in with \
             RefreshSession in {:.1} s; the most frequent caller makes {:.1} % of the calls",
            people.len(),
            started.elapsed().as_secs_f64(),
            100.0 * Zipf::new(USERS, ZIPF_S).probability(0)
        ));
        let callers: Arc<HashMap<usize, Caller>> = Arc::new(
            people
                .iter()
                .zip(bearers)
                .map(|(user, bearer)| (*user, caller(&population, *user, bearer)))
                .collect(),
        );

        // Each kind of call tried once, by the most frequent caller (a primary) and a
        // secondary, before anything is measured.
        let channel = env.channel("gateway").await?;
        let writes = Arc::new(AtomicUsize::new(0));
        let top = person_of_rank(0);
        for (user, op) in [
            (top, Op::ShowAllContacts),
            (top, Op::GetMe),
            (top, Op::ListPendingRequests),
            (top, Op::Write),
            (top, Op::Write),
            (top, Op::Write),
            (top, Op::Write),
        ]
        .into_iter()
        .chain(
            people
                .iter()
                .find(|user| population::home(**user).1 != 0)
                .map(|user| (*user, Op::Write)),
        ) {
            let caller = callers
                .get(&user)
                .context("the trial caller is not signed in")?;
            try_call(channel.clone(), caller, op, &writes)
                .await
                .with_context(|| format!("the trial {op:?} of person {user} failed"))?;
        }
        for (consumer, streams) in [
            ("access", &streams::ACCESS_STREAMS[..]),
            ("notification", &NOTIFICATION_STREAMS[..]),
        ] {
            notes.extend(streams::wait_until_applied(env, consumer, streams).await?);
        }

        let draws = Arc::new(draws);
        let next = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&next);
        let writers = Arc::new(Writers::default());
        let handed = Arc::clone(&writers);
        let call: CallFn = Arc::new(move |channel| {
            let draw = draws[next.fetch_add(1, Ordering::Relaxed) % draws.len()];
            let user = match draw.op {
                Op::Write => writers.writer(draw.rank, |user| callers.contains_key(&user)),
                _ => draw.user,
            };
            match callers.get(&user) {
                Some(caller) => call(channel, caller, draw.op, &writes),
                None => Box::pin(async move {
                    Err(tonic::Status::internal(format!(
                        "person {} was drawn but not signed in",
                        draw.user
                    )))
                }),
            }
        });
        let mut prepared = Prepared::calls(call, notes);
        prepared.beside = Some(beside(env.metrics_addrs.clone(), counted, handed));
        Ok(prepared)
    })
}

/// What the calls of person `user` need, with its `bearer`.
fn caller(population: &Population, user: usize, bearer: MetadataValue<Ascii>) -> Caller {
    let (site, position) = population::home(user);
    let site_user =
        |k: usize| population.users[population::holder(site, SITE_USER_POSITIONS[k])].to_string();
    Caller {
        bearer,
        site_id: population.sites[site].to_string(),
        contact_id: population.contact(site, position).to_string(),
        role: ROLES[position],
        site_users: [site_user(0), site_user(1)],
    }
}

/// The `n`-th write's reporting level: VIEW, then NONE, by turns on each site user.
fn reporting_level(n: usize) -> ReportingAccess {
    if (n / 4).is_multiple_of(2) {
        ReportingAccess::View
    } else {
        ReportingAccess::None
    }
}

/// One call of `caller`: `op` on the gateway at `channel`; `writes` numbers the writes.
fn call(
    channel: Channel,
    caller: &Caller,
    op: Op,
    writes: &AtomicUsize,
) -> BoxFuture<'static, Result<(), tonic::Status>> {
    let mut gateway = GatewayServiceClient::new(channel);
    match op {
        Op::ShowAllContacts => {
            let request = authorized(
                ShowAllContactsRequest {
                    site_id: caller.site_id.clone(),
                    ..ShowAllContactsRequest::default()
                },
                &caller.bearer,
            );
            Box::pin(async move { gateway.show_all_contacts(request).await.map(drop) })
        }
        Op::GetMe => {
            let request = authorized(GetMeRequest {}, &caller.bearer);
            Box::pin(async move { gateway.get_me(request).await.map(drop) })
        }
        Op::ListPendingRequests => {
            let request = authorized(
                ListPendingRequestsRequest {
                    site_id: caller.site_id.clone(),
                    ..ListPendingRequestsRequest::default()
                },
                &caller.bearer,
            );
            Box::pin(async move { gateway.list_pending_requests(request).await.map(drop) })
        }
        Op::Write => {
            let n = writes.fetch_add(1, Ordering::Relaxed);
            if caller.role == ContactRole::Primary && n.is_multiple_of(2) {
                let request = authorized(
                    SetToolAccessRequest {
                        site_id: caller.site_id.clone(),
                        user_id: caller.site_users[(n / 2) % 2].clone(),
                        tools: Some(ToolAccess {
                            reporting: reporting_level(n).into(),
                            ..ToolAccess::default()
                        }),
                        reason: "usage reports for the renewal".to_owned(),
                        ..SetToolAccessRequest::default()
                    },
                    &caller.bearer,
                );
                Box::pin(async move { gateway.set_tool_access(request).await.map(drop) })
            } else {
                let request = authorized(
                    UpdateContactRequest {
                        site_id: caller.site_id.clone(),
                        contact_id: caller.contact_id.clone(),
                        details: Some(ContactDetails {
                            phone: format!("+331{:08}", n % 100_000_000),
                            job_title: if caller.role == ContactRole::Primary {
                                "IT manager"
                            } else {
                                "Buyer"
                            }
                            .to_owned(),
                            notification_email: String::new(),
                        }),
                        etag: String::new(),
                    },
                    &caller.bearer,
                );
                Box::pin(async move { gateway.update_contact(request).await.map(drop) })
            }
        }
    }
}

/// `op` of `caller` once, its answer checked where a read has a known shape.
async fn try_call(
    channel: Channel,
    caller: &Caller,
    op: Op,
    writes: &AtomicUsize,
) -> anyhow::Result<()> {
    let mut gateway = GatewayServiceClient::new(channel.clone());
    match op {
        Op::ShowAllContacts => {
            let shown = gateway
                .show_all_contacts(authorized(
                    ShowAllContactsRequest {
                        site_id: caller.site_id.clone(),
                        ..ShowAllContactsRequest::default()
                    },
                    &caller.bearer,
                ))
                .await?
                .into_inner();
            if shown.contacts.len() != CONTACTS_PER_SITE {
                bail!(
                    "the gateway shows {} contacts of the home site, not {CONTACTS_PER_SITE}",
                    shown.contacts.len()
                );
            }
        }
        Op::GetMe => {
            let me = gateway
                .get_me(authorized(GetMeRequest {}, &caller.bearer))
                .await?
                .into_inner();
            let home = me.sites.iter().any(|mine| {
                mine.site
                    .as_ref()
                    .is_some_and(|site| site.site_id == caller.site_id)
                    && mine.roles.contains(&(PbContactRole::Primary as i32))
            });
            if !home {
                bail!("GetMe does not show the caller as PRIMARY of its home site");
            }
        }
        Op::ListPendingRequests => {
            let pending = gateway
                .list_pending_requests(authorized(
                    ListPendingRequestsRequest {
                        site_id: caller.site_id.clone(),
                        ..ListPendingRequestsRequest::default()
                    },
                    &caller.bearer,
                ))
                .await?
                .into_inner();
            if pending.requests.len() != 1 {
                bail!(
                    "{} pending requests on the home site, not its one",
                    pending.requests.len()
                );
            }
        }
        Op::Write => call(channel, caller, op, writes).await?,
    }
    Ok(())
}

/// One sample of a Prometheus text exposition.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sample {
    /// Metric name, with its `_sum`/`_count`/`_bucket` suffix.
    pub name: String,
    /// Labels, as given.
    pub labels: Vec<(String, String)>,
    /// Value.
    pub value: f64,
}

impl Sample {
    /// The value of label `name`, or "".
    fn label(&self, name: &str) -> &str {
        self.labels
            .iter()
            .find(|(key, _)| key == name)
            .map_or("", |(_, value)| value.as_str())
    }
}

/// The samples of a Prometheus text exposition (format 0.0.4); lines that do not parse are
/// skipped.
pub(crate) fn parse_exposition(text: &str) -> Vec<Sample> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (series, labels_end) = match line.find('{') {
        Some(open) => {
            let close = open + line[open..].find('}')?;
            (
                (&line[..open], parse_labels(&line[open + 1..close])?),
                close + 1,
            )
        }
        None => {
            let end = line.find(char::is_whitespace)?;
            ((&line[..end], Vec::new()), end)
        }
    };
    let value = line[labels_end..].split_whitespace().next()?.parse().ok()?;
    Some(Sample {
        name: series.0.to_owned(),
        labels: series.1,
        value,
    })
}

/// `a="b",c="d"` as pairs, with `\"`, `\\` and `\n` unescaped.
fn parse_labels(text: &str) -> Option<Vec<(String, String)>> {
    let mut labels = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let mut chars = after.strip_prefix('"')?.char_indices();
        let mut value = String::new();
        let end = loop {
            let (at, c) = chars.next()?;
            match c {
                '"' => break at,
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                other => value.push(other),
            }
        };
        labels.push((key.trim().to_owned(), value));
        rest = after[1 + end + 1..].trim_start_matches(',').trim();
    }
    Some(labels)
}

/// The text of `GET /metrics` at `addr`.
async fn scrape(addr: &str) -> anyhow::Result<String> {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("could not connect to {addr}"))?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nConnection: close\r\n\r\n")
        .await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let response = String::from_utf8(response).context("the metrics are not UTF-8")?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .context("the metrics response has no body")?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        bail!(
            "GET /metrics at {addr} answered {}",
            head.lines().next().unwrap_or("")
        );
    }
    Ok(body.to_owned())
}

/// The samples of every service of `addrs`, by short name.
async fn scrape_all(
    addrs: &BTreeMap<&'static str, String>,
) -> anyhow::Result<BTreeMap<&'static str, Vec<Sample>>> {
    let mut all = BTreeMap::new();
    for (name, addr) in addrs {
        let text = scrape(addr)
            .await
            .with_context(|| format!("could not read the metrics of {name}"))?;
        all.insert(*name, parse_exposition(&text));
    }
    Ok(all)
}

/// The sum, by key, of the samples named `name`, keyed by `key`.
fn totals(
    samples: &[Sample],
    name: &str,
    key: impl Fn(&Sample) -> String,
) -> BTreeMap<String, f64> {
    let mut totals = BTreeMap::new();
    for sample in samples.iter().filter(|sample| sample.name == name) {
        *totals.entry(key(sample)).or_insert(0.0) += sample.value;
    }
    totals
}

/// `after - before` by key (a key missing before counts from 0).
fn delta(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    after
        .iter()
        .map(|(key, value)| (key.clone(), value - before.get(key).copied().unwrap_or(0.0)))
        .collect()
}

/// Counter of reads the gateway answered from its read cache (kc-gateway's cache.rs).
const READ_CACHE_HITS: &str = "keycontacts_gateway_read_cache_hits_total";
/// Counter of reads it had no fresh answer to.
const READ_CACHE_MISSES: &str = "keycontacts_gateway_read_cache_misses_total";
/// Histogram of each RPC's server-side time (kc-runtime's metrics).
const HANDLING_SECONDS: &str = "grpc_server_handling_seconds";
/// RPCs listed per service in the profile.
const PROFILE_RPCS: usize = 8;

/// The notes on the window from the metrics `before` and `after` it.
pub(crate) fn window_notes(
    before: &BTreeMap<&'static str, Vec<Sample>>,
    after: &BTreeMap<&'static str, Vec<Sample>>,
) -> Vec<String> {
    let mut notes = Vec::new();
    let empty = Vec::new();
    let method = |sample: &Sample| sample.label("method").to_owned();
    let gateway = (
        before.get("gateway").unwrap_or(&empty),
        after.get("gateway").unwrap_or(&empty),
    );
    let hits = delta(
        &totals(gateway.0, READ_CACHE_HITS, method),
        &totals(gateway.1, READ_CACHE_HITS, method),
    );
    let misses = delta(
        &totals(gateway.0, READ_CACHE_MISSES, method),
        &totals(gateway.1, READ_CACHE_MISSES, method),
    );
    let all_hits: f64 = hits.values().sum();
    let all_misses: f64 = misses.values().sum();
    if all_hits + all_misses > 0.0 {
        let mut methods: Vec<&String> = hits.keys().chain(misses.keys()).collect();
        methods.sort();
        methods.dedup();
        let by_method: Vec<String> = methods
            .into_iter()
            .map(|name| {
                let hit = hits.get(name).copied().unwrap_or(0.0);
                let miss = misses.get(name).copied().unwrap_or(0.0);
                format!(
                    "{} {:.1} % of {:.0}",
                    short_method(name),
                    100.0 * hit / (hit + miss).max(1.0),
                    hit + miss
                )
            })
            .collect();
        notes.push(format!(
            "gateway read cache in the window: hit rate {:.1} % ({all_hits:.0} hits, \
             {all_misses:.0} misses of cached downstream reads); by read: {}",
            100.0 * all_hits / (all_hits + all_misses),
            by_method.join(", ")
        ));
    } else {
        notes.push(
            "gateway read cache in the window: no lookup counted (the cache is off: \
             KC_READ_CACHE_TTL=0s?)"
                .to_owned(),
        );
    }
    for (service, samples) in after {
        let rpc = |sample: &Sample| sample.label("grpc_method").to_owned();
        let name_sum = format!("{HANDLING_SECONDS}_sum");
        let name_count = format!("{HANDLING_SECONDS}_count");
        let previous = before.get(service).unwrap_or(&empty);
        let sums = delta(
            &totals(previous, &name_sum, rpc),
            &totals(samples, &name_sum, rpc),
        );
        let counts = delta(
            &totals(previous, &name_count, rpc),
            &totals(samples, &name_count, rpc),
        );
        let mut rpcs: Vec<(&String, f64, f64)> = counts
            .iter()
            .filter(|(_, count)| **count > 0.0)
            .map(|(name, count)| (name, *count, sums.get(name).copied().unwrap_or(0.0)))
            .collect();
        if rpcs.is_empty() {
            continue;
        }
        rpcs.sort_by(|a, b| b.2.total_cmp(&a.2));
        let busy: f64 = rpcs.iter().map(|(_, _, sum)| sum).sum();
        let listed: Vec<String> = rpcs
            .iter()
            .take(PROFILE_RPCS)
            .map(|(name, count, sum)| format!("{name} {count:.0} x {:.2} ms", 1000.0 * sum / count))
            .collect();
        notes.push(format!(
            "profile {service}: {busy:.1} s of RPC time in the window; {}",
            listed.join(", ")
        ));
    }
    notes
}

/// `ListSiteContacts` of `keycontacts.contacts.v1.ContactRegistryService/ListSiteContacts`.
fn short_method(method: &str) -> &str {
    method.rsplit('/').next().unwrap_or(method)
}

/// Notes on the services' metrics in `window` ([`window_notes`]: the gateway's read-cache hit
/// rate and each service's profile), read from every service at its start and its end.
pub(crate) async fn metrics_in_window(
    addrs: &BTreeMap<&'static str, String>,
    window: Window,
) -> Vec<String> {
    tokio::time::sleep_until(window.from).await;
    let before = scrape_all(addrs).await;
    tokio::time::sleep_until(window.until).await;
    let after = scrape_all(addrs).await;
    match (before, after) {
        (Ok(before), Ok(after)) => window_notes(&before, &after),
        (Err(err), _) | (_, Err(err)) => {
            vec![format!("could not read the services' metrics: {err:#}")]
        }
    }
}

/// Reads every service's metrics at the start and the end of the window; notes on the
/// read cache, the profile, and how many of the drawn calls the run made (`made` counts
/// them).
fn beside(
    addrs: BTreeMap<&'static str, String>,
    made: Arc<AtomicUsize>,
    writers: Arc<Writers>,
) -> BesideFn {
    Box::new(move |window: Window| {
        Box::pin(async move {
            let mut notes = metrics_in_window(&addrs, window).await;
            notes.push(format!(
                "{} writes of the run were made by the next person in Zipf order: the one \
                 drawn had spent the gateway's write budget (60/min, burst 30, per caller)",
                writers.handed.load(Ordering::Relaxed)
            ));
            let made = made.load(Ordering::Relaxed);
            if made > DRAWS {
                notes.push(format!(
                    "the run made {made} calls, more than the {DRAWS} drawn: they were cycled"
                ));
            }
            Ok(notes)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_draws_follow_the_distribution() {
        let zipf = Zipf::new(USERS, ZIPF_S);
        // Normalised, and decreasing as k^-s.
        assert!((zipf.cdf[USERS - 1] - 1.0).abs() < 1e-9);
        let ratio = zipf.probability(0) / zipf.probability(1);
        assert!((ratio - 2f64.powf(ZIPF_S)).abs() < 1e-9, "{ratio}");
        assert_eq!(zipf.sample(0.0), 0);
        assert_eq!(zipf.sample(0.999_999_999_9), USERS - 1);

        let draws = 1_000_000;
        let mut counts = vec![0u32; USERS];
        let mut random = SplitMix64::new(SEED);
        for _ in 0..draws {
            counts[zipf.sample(random.next_f64())] += 1;
        }
        // Each of the first ranks within 5 standard deviations of its expectation.
        for (k, count) in counts.iter().enumerate().take(20) {
            let p = zipf.probability(k);
            let expected = p * draws as f64;
            let sigma = (draws as f64 * p * (1.0 - p)).sqrt();
            assert!(
                (f64::from(*count) - expected).abs() < 5.0 * sigma,
                "rank {k}: {count} draws, {expected:.0} expected"
            );
        }
        // And the tail as a whole: the ranks from 1,000 on.
        let tail: f64 = (1_000..USERS).map(|k| zipf.probability(k)).sum();
        let drawn: u32 = counts[1_000..].iter().sum();
        let sigma = (draws as f64 * tail * (1.0 - tail)).sqrt();
        assert!((f64::from(drawn) - tail * draws as f64).abs() < 5.0 * sigma);
        // s = 1.1 over 50,000: the top caller makes about 14 % of the calls.
        assert!((0.12..0.16).contains(&zipf.probability(0)));
    }

    #[test]
    fn the_mix_has_its_proportions() {
        let shares: u32 = MIX.iter().map(|(_, share)| share).sum();
        assert_eq!(shares, 1000);
        let draws = draw(SEED, 400_000);
        for (op, share) in MIX {
            let share = f64::from(share) / 1000.0;
            let made = draws.iter().filter(|d| d.op == op).count() as f64 / draws.len() as f64;
            assert!(
                (made - share).abs() < 0.003,
                "{op:?}: {made:.4} of the calls, not {share}"
            );
        }
        assert_eq!(pick(0.0), Op::ShowAllContacts);
        assert_eq!(pick(0.4999), Op::ShowAllContacts);
        assert_eq!(pick(0.5), Op::GetMe);
        assert_eq!(pick(0.8), Op::ListPendingRequests);
        assert_eq!(pick(0.95), Op::Write);
        assert_eq!(pick(0.999_999), Op::Write);
    }

    #[test]
    fn every_person_has_one_rank_and_draws_are_reproducible() {
        let mut seen = vec![false; USERS];
        for rank in 0..USERS {
            let person = person_of_rank(rank);
            assert!(!seen[person], "person {person} twice");
            seen[person] = true;
        }
        let (a, b) = (draw(SEED, 1_000), draw(SEED, 1_000));
        assert!(
            a.iter()
                .zip(&b)
                .all(|(x, y)| x.user == y.user && x.op == y.op)
        );
        // The most frequent caller is a primary: it exercises both kinds of write.
        assert_eq!(population::home(person_of_rank(0)).1, 0);
    }

    #[test]
    fn a_callers_writes_stay_within_the_gateways_budget() {
        let start = std::time::Instant::now();
        let mut bucket = Bucket::full(start);
        let burst = (0..100).filter(|_| bucket.take(start)).count();
        assert_eq!(burst as f64, WRITE_BURST);
        // Then one a second.
        let later = start + std::time::Duration::from_millis(2_500);
        assert_eq!((0..10).filter(|_| bucket.take(later)).count(), 2);
        // The drawn caller writes while it can, then the next ranks do.
        let writers = Writers::default();
        let all = |_| true;
        let first: Vec<usize> = (0..30).map(|_| writers.writer(0, all)).collect();
        assert!(first[..25].iter().all(|user| *user == person_of_rank(0)));
        assert!(first[25..].iter().all(|user| *user == person_of_rank(1)));
        assert_eq!(writers.handed.load(Ordering::Relaxed), 5);
        // People who are not signed in are skipped.
        let writers = Writers::default();
        let skip_rank_1 = |user| user != person_of_rank(1);
        let handed: Vec<usize> = (0..26).map(|_| writers.writer(0, skip_rank_1)).collect();
        assert_eq!(handed[25], person_of_rank(2));
    }

    #[test]
    fn writes_alternate_levels_on_both_site_users() {
        let levels: Vec<ReportingAccess> = (0..16).map(reporting_level).collect();
        // Primaries' SetToolAccess are the even writes, on site user (n / 2) % 2.
        for user in 0..2 {
            let on_user: Vec<ReportingAccess> = (0..16)
                .filter(|n| n % 2 == 0 && (n / 2) % 2 == user)
                .map(|n| levels[n])
                .collect();
            assert!(on_user.contains(&ReportingAccess::View));
            assert!(on_user.contains(&ReportingAccess::None));
        }
    }

    #[test]
    fn the_exposition_parser_reads_counters_and_histograms() {
        let text = "\
# TYPE keycontacts_gateway_read_cache_hits_total counter
keycontacts_gateway_read_cache_hits_total{method=\"a/B\"} 10
keycontacts_gateway_read_cache_hits_total{method=\"a/C\"} 5
keycontacts_gateway_read_cache_misses_total{method=\"a/B\"} 30
grpc_server_handling_seconds_bucket{grpc_service=\"s\",grpc_method=\"M\",le=\"+Inf\"} 4
grpc_server_handling_seconds_sum{grpc_service=\"s\",grpc_method=\"M\"} 0.5
grpc_server_handling_seconds_count{grpc_service=\"s\",grpc_method=\"M\"} 4
odd{x=\"a \\\"quoted\\\" b\"} 1e3
plain 7
broken{x=\"y\" 3
";
        let samples = parse_exposition(text);
        assert_eq!(samples.len(), 8, "the broken line is skipped");
        assert_eq!(samples[3].label("le"), "+Inf");
        assert_eq!(samples[3].label("grpc_method"), "M");
        assert_eq!(samples[6].label("x"), "a \"quoted\" b");
        assert_eq!(samples[6].value, 1000.0);
        assert_eq!(samples[7].name, "plain");
        assert!(samples.iter().all(|sample| sample.name != "broken"));

        let before: BTreeMap<&'static str, Vec<Sample>> = BTreeMap::new();
        let after = BTreeMap::from([("gateway", samples)]);
        let notes = window_notes(&before, &after);
        assert!(
            notes[0].contains("hit rate 33.3 % (15 hits, 30 misses"),
            "{}",
            notes[0]
        );
        assert!(notes[0].contains("B 25.0 % of 40"), "{}", notes[0]);
        assert!(notes[1].contains("M 4 x 125.00 ms"), "{}", notes[1]);
    }
}
