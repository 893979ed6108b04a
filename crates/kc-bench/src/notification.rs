//! The notification service's scenarios (`notification.*`), and the SMTP sink its e-mails go
//! to.
//!
//! # The sink
//!
//! [`SmtpSink`] is a minimal ESMTP server (RFC 5321: EHLO/HELO, MAIL, RCPT, DATA with
//! dot-unstuffing up to `<CRLF>.<CRLF>`, RSET, NOOP, QUIT; no PIPELINING, TLS or AUTH) on
//! 127.0.0.1, run by a thread of its own in this process on a single-threaded tokio runtime:
//! the benchmark reports that thread's CPU apart from the load generator's ("smtp sink"), so
//! that what the sink costs is visible. It accepts every message (250) and records, for each,
//! the instant it accepted it, its recipients and its `X-Keycontacts-Notification-Id` and
//! `X-Keycontacts-Kind` headers. kc-notification runs with `--smtp-url
//! smtp://127.0.0.1:<port>` of the sink.
//!
//! # `notification.throughput`
//!
//! [`THROUGHPUT_SITES`] sites are created in the registry (CreateSite), each with a primary
//! contact created in identity (CreateUser, with its own e-mail) and a business partner
//! e-mail. The calls are SendNotice of a proof of entitlement, round-robin over the sites,
//! each with its own idempotency key: the registry resolves the primary contact (R1: no
//! ADMINISTRATIVE contact, so PRIMARY) and the service adds the business partner's copy (C4),
//! so each call makes [`EMAILS_PER_NOTICE`] e-mails. The figure is the e-mails the sink
//! accepted during the window, per second. Calls wait (flow control, not counted in their
//! latency) while [`BACKLOG`] e-mails are made and not yet accepted, so that the run measures
//! the rate the service sustains, creating and delivering at once, and leaves no backlog
//! behind it.
//!
//! # `notification.latency`
//!
//! [`LATENCY_SITES`] sites with a primary contact each, and one identity user per call to
//! come (each with its own e-mail), registered and proven (RegisterUser, then VerifyEmail with
//! the code read from identity's stream, [`streams::register_proven`]): access management
//! grants rights only to a user whose address is proven (rule I1). That costs identity two
//! password hashes a user, most of the seeding's time. The calls are SetToolAccess on access at
//! [`LATENCY_RATE`] a second (an open loop: see [`super::load::paced`]), each on the next
//! user, on behalf of the site's primary (who holds manage access UPDATE, T3): each commits a
//! RightsChanged event that notification follows and mails to that user (T5). The latency of
//! a change is the instant the sink accepted the user's RIGHTS_CHANGED e-mail minus the
//! instant the SetToolAccess call that committed the change was issued: the access call, the
//! stream, recipient resolution, rendering, the queue and SMTP. After the window the run
//! waits up to [`DRAIN_TIMEOUT`] for the e-mails of the changes made in the window; one still
//! missing then counts with the time waited (a lower bound) and is reported as missing.
//!
//! Both seed steps first wait until notification has applied every event the other services
//! published and delivered what that set off (the e-mail verifications of the users the
//! seeding created, the role notices of the new sites), so that none of it lands in the
//! measurement.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};
use kc_proto::access::access_management_service_client::AccessManagementServiceClient;
use kc_proto::access::{SetToolAccessRequest, SoftwareAccess, ToolAccess};
use kc_proto::contacts::contact_registry_service_client::ContactRegistryServiceClient;
use kc_proto::contacts::{CreateSiteRequest, Program};
use kc_proto::identity::identity_service_client::IdentityServiceClient;
use kc_proto::identity::{CreateUserRequest, RegisterUserRequest};
use kc_proto::notification::notification_service_client::NotificationServiceClient;
use kc_proto::notification::{
    ListNotificationsRequest, NoticeKind, NotificationState, SendNoticeRequest,
};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;

use super::load::{self, AdmitFn, CallFn, Deliveries, Window};
use super::scenarios::{Env, OutcomeFn, Prepared};
use super::{procfs, streams};

/// How long the notification scenarios measure by default: their target is a rate sustained
/// for 30 s.
pub const SUSTAINED: Duration = Duration::from_secs(30);
/// Sites SendNotice goes round-robin over in `notification.throughput`.
pub const THROUGHPUT_SITES: usize = 50;
/// E-mails one SendNotice of a proof of entitlement makes: the primary contact's and the
/// business partner's copy (C4).
pub const EMAILS_PER_NOTICE: u64 = 2;
/// Most e-mails made and not yet accepted by the sink before calls wait.
pub const BACKLOG: u64 = 512;
/// Sites whose users get rights in `notification.latency`.
pub const LATENCY_SITES: usize = 20;
/// Rights changes a second in `notification.latency`.
pub const LATENCY_RATE: f64 = 100.0;
/// Longest `notification.latency` waits after its window for the e-mails of the changes made
/// in it.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest the seeding waits for notification to deliver what it set off.
const QUIESCE_TIMEOUT: Duration = Duration::from_secs(600);
/// Longest a trial call's e-mail may take to reach the sink during seeding.
const TRIAL_TIMEOUT: Duration = Duration::from_secs(60);
/// Site number (and customer number) of the first site of `notification.throughput`; 7 digits,
/// away from the other scenarios' numbers.
const THROUGHPUT_NUMBER_BASE: usize = 6_000_000;
/// Site number (and customer number) of the first site of `notification.latency`.
const LATENCY_NUMBER_BASE: usize = 6_100_000;
/// Domain of the users and partners the scenarios create.
const MAIL_DOMAIN: &str = "notification-bench.example.com";
/// Password of the users `notification.latency` registers.
const USER_PASSWORD: &str = "notification-bench-correct-horse";
/// Users or sites created at once while seeding.
const SEED_CONCURRENCY: usize = 16;
/// The streams notification follows, and the names of its cursors of them.
const STREAMS: [(&str, &str); 3] = [
    ("identity", "notification.identity"),
    ("contacts", "notification.contacts"),
    ("access", "notification.access"),
];
/// The `X-Keycontacts-Kind` of the e-mails `notification.latency` waits for.
const RIGHTS_CHANGED_KIND: &str = "NOTICE_KIND_RIGHTS_CHANGED";

/// Seeds `notification.throughput`: see the module documentation.
pub fn seed_throughput(env: &Env) -> BoxFuture<'_, anyhow::Result<Prepared>> {
    Box::pin(async move {
        let sink = env.sink.clone().context("no SMTP sink is running")?;
        let bearer = env.service_bearer().await?;
        let primaries = create_users(env, &bearer, "poe-primary", THROUGHPUT_SITES).await?;
        let sites = create_sites(env, &bearer, THROUGHPUT_NUMBER_BASE, &primaries, true).await?;
        let mut notes = quiesce(env, &sink, &bearer).await?;

        // One notice, followed to the sink: the calls to come work end to end.
        let mut client = NotificationServiceClient::new(env.channel("notification").await?);
        let tag = uuid::Uuid::new_v4().simple().to_string();
        let trial = send_notice(&sites[0].site_id, &format!("bench-{tag}-trial"), 0, &bearer);
        let started = Instant::now();
        let from = sink.log_len();
        let sent = client
            .send_notice(trial)
            .await
            .context("SendNotice of a proof of entitlement failed")?
            .into_inner();
        if sent.notifications.len() as u64 != EMAILS_PER_NOTICE {
            bail!(
                "SendNotice of a proof of entitlement made {} notifications, not \
                 {EMAILS_PER_NOTICE} (the primary contact and the business partner)",
                sent.notifications.len()
            );
        }
        let ids: Vec<String> = sent
            .notifications
            .iter()
            .map(|notification| notification.notification_id.clone())
            .collect();
        let arrived = sink
            .wait_for(from, TRIAL_TIMEOUT, |accepted| {
                ids.iter().all(|id| {
                    accepted
                        .iter()
                        .any(|mail| mail.notification_id.as_deref() == Some(id.as_str()))
                })
            })
            .await;
        if !arrived {
            bail!(
                "the e-mails of a trial SendNotice did not reach the SMTP sink within {} s",
                TRIAL_TIMEOUT.as_secs()
            );
        }
        notes.push(format!(
            "{THROUGHPUT_SITES} sites, each with its primary contact and a business partner; \
             a trial notice's {EMAILS_PER_NOTICE} e-mails reached the sink in {:.0} ms",
            started.elapsed().as_secs_f64() * 1000.0
        ));

        let state = Arc::new(Throughput {
            sink,
            sites: sites.into_iter().map(|site| site.site_id).collect(),
            tag,
            bearer,
            next: AtomicUsize::new(1),
            base_accepted: AtomicU64::new(0),
            created: AtomicU64::new(0),
            reserved: AtomicU64::new(0),
            first_entry: AtomicUsize::new(0),
        });
        state.reset();
        Ok(Prepared {
            admit: Some(throughput_admit(&state)),
            outcome: Some(throughput_outcome(&state)),
            ..Prepared::calls(throughput_call(&state), notes)
        })
    })
}

/// What the calls of `notification.throughput` share.
struct Throughput {
    sink: Arc<SmtpSink>,
    sites: Vec<String>,
    /// Makes this run's idempotency keys its own.
    tag: String,
    bearer: MetadataValue<Ascii>,
    /// Number of the next call.
    next: AtomicUsize,
    /// E-mails the sink had accepted when the calls started.
    base_accepted: AtomicU64,
    /// Notifications the calls made.
    created: AtomicU64,
    /// E-mails of the calls in flight.
    reserved: AtomicU64,
    /// The sink's log length when the calls started.
    first_entry: AtomicUsize,
}

impl Throughput {
    /// Starts counting from now.
    fn reset(&self) {
        self.base_accepted
            .store(self.sink.accepted(), Ordering::SeqCst);
        self.first_entry
            .store(self.sink.log_len(), Ordering::SeqCst);
    }

    /// E-mails made (or being made) and not accepted yet.
    fn waiting(&self) -> u64 {
        let accepted = self
            .sink
            .accepted()
            .saturating_sub(self.base_accepted.load(Ordering::SeqCst));
        (self.created.load(Ordering::SeqCst) + self.reserved.load(Ordering::SeqCst))
            .saturating_sub(accepted)
    }
}

/// SendNotice of a proof of entitlement on the next site, with a key of its own.
fn throughput_call(state: &Arc<Throughput>) -> CallFn {
    let state = Arc::clone(state);
    Arc::new(move |channel| {
        let state = Arc::clone(&state);
        Box::pin(async move {
            let n = state.next.fetch_add(1, Ordering::Relaxed);
            let site_id = &state.sites[n % state.sites.len()];
            let key = format!("bench-{}-{n}", state.tag);
            let sent = NotificationServiceClient::new(channel)
                .send_notice(send_notice(site_id, &key, n, &state.bearer))
                .await;
            if let Ok(sent) = &sent {
                let made = sent.get_ref().notifications.len() as u64;
                state.created.fetch_add(made, Ordering::SeqCst);
            }
            state
                .reserved
                .fetch_sub(EMAILS_PER_NOTICE, Ordering::SeqCst);
            let made = sent?.into_inner().notifications.len() as u64;
            if made != EMAILS_PER_NOTICE {
                return Err(tonic::Status::internal(format!(
                    "SendNotice made {made} notifications, not {EMAILS_PER_NOTICE}"
                )));
            }
            Ok(())
        })
    })
}

/// Lets a call start once fewer than [`BACKLOG`] e-mails wait for the sink.
fn throughput_admit(state: &Arc<Throughput>) -> AdmitFn {
    let state = Arc::clone(state);
    Arc::new(move || {
        let state = Arc::clone(&state);
        Box::pin(async move {
            loop {
                let changed = state.sink.changed();
                tokio::pin!(changed);
                changed.as_mut().enable();
                if state.waiting() < BACKLOG {
                    state
                        .reserved
                        .fetch_add(EMAILS_PER_NOTICE, Ordering::SeqCst);
                    return;
                }
                changed.await;
            }
        })
    })
}

/// Counts the e-mails the sink accepted within the window.
fn throughput_outcome(state: &Arc<Throughput>) -> OutcomeFn {
    let state = Arc::clone(state);
    Box::new(move |window: Window| {
        Box::pin(async move {
            let waiting = state.waiting();
            let accepted = state.sink.since(state.first_entry.load(Ordering::SeqCst));
            let count = accepted
                .iter()
                .filter(|mail| mail.at >= window.from && mail.at < window.until)
                .count() as u64;
            let mut notes = vec![format!(
                "SendNotice made {} notifications ({EMAILS_PER_NOTICE} a call); at most \
                 {BACKLOG} e-mails may wait for the sink before calls wait (flow control, not \
                 in the calls' latency); {waiting} were waiting when the calls ended",
                state.created.load(Ordering::SeqCst)
            )];
            notes.extend(delivery_notes(&state.sink, &accepted));
            Ok((
                Deliveries {
                    unit: "e-mails",
                    counted_at: "accepted by the SMTP sink",
                    count,
                    window: window.until - window.from,
                    latency: None,
                    missing: 0,
                },
                notes,
            ))
        })
    })
}

/// SendNotice of a proof of entitlement (order `PO-<n>`) on `site_id` with `key`.
fn send_notice(
    site_id: &str,
    key: &str,
    n: usize,
    bearer: &MetadataValue<Ascii>,
) -> tonic::Request<SendNoticeRequest> {
    authorized(
        SendNoticeRequest {
            site_id: site_id.to_owned(),
            kind: NoticeKind::ProofOfEntitlement.into(),
            params: HashMap::from([("order_number".to_owned(), format!("PO-{n}"))]),
            idempotency_key: key.to_owned(),
        },
        bearer,
        None,
    )
}

/// Seeds `notification.latency`: see the module documentation.
pub fn seed_latency(env: &Env) -> BoxFuture<'_, anyhow::Result<Prepared>> {
    Box::pin(async move {
        let sink = env.sink.clone().context("no SMTP sink is running")?;
        let bearer = env.service_bearer().await?;
        // One user per change the run can make (warm-up included), with a margin for the
        // pacer catching up, and one for the trial.
        let changes = (LATENCY_RATE * env.run_time.as_secs_f64() * 1.1).ceil() as usize + 10;
        let primaries = create_users(env, &bearer, "rights-primary", LATENCY_SITES).await?;
        let sites = create_sites(env, &bearer, LATENCY_NUMBER_BASE, &primaries, false).await?;
        eprintln!("xtask: creating {} users in identity", changes + 1);
        let mut targets = register_users(env, "rights", changes + 1).await?;
        let mut notes = Vec::new();
        // Access must know the sites and their primaries (from the registry's stream) before
        // a primary can grant.
        let access_streams = [
            ("contacts", "access.contacts"),
            ("identity", "access.identity"),
        ];
        notes.extend(streams::wait_until_applied(env, "access", &access_streams).await?);
        notes.extend(quiesce(env, &sink, &bearer).await?);

        // One change, followed to the sink: the calls to come work end to end.
        let trial = targets.pop().context("no user to try a change on")?;
        let mut client = AccessManagementServiceClient::new(env.channel("access").await?);
        let from = sink.log_len();
        let started = Instant::now();
        client
            .set_tool_access(set_tool_access(&sites[0], &trial.user_id, &bearer)?)
            .await
            .context("SetToolAccess on behalf of a site's primary contact failed")?;
        let arrived = sink
            .wait_for(from, TRIAL_TIMEOUT, |accepted| {
                accepted
                    .iter()
                    .any(|mail| mail.is_for(&trial.email, RIGHTS_CHANGED_KIND))
            })
            .await;
        if !arrived {
            bail!(
                "the e-mail of a trial rights change did not reach the SMTP sink within {} s",
                TRIAL_TIMEOUT.as_secs()
            );
        }
        notes.push(format!(
            "{LATENCY_SITES} sites, {} users to change, {LATENCY_RATE} changes a second; a \
             trial change's e-mail reached the sink in {:.0} ms",
            targets.len(),
            started.elapsed().as_secs_f64() * 1000.0
        ));

        let state = Arc::new(Latency {
            first_entry: sink.log_len(),
            sink,
            sites,
            targets,
            bearer,
            next: AtomicUsize::new(0),
            issued: std::sync::Mutex::new(Vec::new()),
        });
        Ok(Prepared {
            admit: Some(load::paced(LATENCY_RATE)),
            paced: Some(LATENCY_RATE),
            outcome: Some(latency_outcome(&state)),
            ..Prepared::calls(latency_call(&state), notes)
        })
    })
}

/// What the calls of `notification.latency` share.
struct Latency {
    sink: Arc<SmtpSink>,
    sites: Vec<Site>,
    /// The users whose rights change, one a call.
    targets: Vec<User>,
    bearer: MetadataValue<Ascii>,
    /// Index of the next user.
    next: AtomicUsize,
    /// Each change that committed: the user's e-mail and when its call was issued.
    issued: std::sync::Mutex<Vec<(String, Instant)>>,
    /// The sink's log length when the calls started.
    first_entry: usize,
}

/// SetToolAccess giving the next user downloads on a site, on behalf of its primary.
fn latency_call(state: &Arc<Latency>) -> CallFn {
    let state = Arc::clone(state);
    Arc::new(move |channel| {
        let state = Arc::clone(&state);
        Box::pin(async move {
            let index = state.next.fetch_add(1, Ordering::Relaxed);
            let Some(target) = state.targets.get(index) else {
                return Err(tonic::Status::resource_exhausted(
                    "the benchmark ran out of users to change: it seeds enough for the run",
                ));
            };
            let site = &state.sites[index % state.sites.len()];
            let request = set_tool_access(site, &target.user_id, &state.bearer)
                .map_err(|err| tonic::Status::internal(format!("{err:#}")))?;
            let issued = Instant::now();
            AccessManagementServiceClient::new(channel)
                .set_tool_access(request)
                .await?;
            state
                .issued
                .lock()
                .expect("the issued list's lock is never poisoned")
                .push((target.email.clone(), issued));
            Ok(())
        })
    })
}

/// Waits for the e-mails of the changes made within the window, then measures each one's
/// latency.
fn latency_outcome(state: &Arc<Latency>) -> OutcomeFn {
    let state = Arc::clone(state);
    Box::new(move |window: Window| {
        Box::pin(async move {
            let issued: Vec<(String, Instant)> = state
                .issued
                .lock()
                .expect("the issued list's lock is never poisoned")
                .iter()
                .filter(|(_, at)| *at >= window.from && *at < window.until)
                .cloned()
                .collect();
            let deadline = Instant::now().max(window.until) + DRAIN_TIMEOUT;
            let delivered = |accepted: &[Accepted]| {
                let arrivals = arrivals(accepted);
                issued
                    .iter()
                    .filter(|(email, at)| arrival(&arrivals, email, *at).is_some())
                    .count()
            };
            let waited_from = Instant::now();
            state
                .sink
                .wait_for(
                    state.first_entry,
                    deadline.saturating_duration_since(Instant::now()),
                    |accepted| delivered(accepted) == issued.len(),
                )
                .await;
            let waited = waited_from.elapsed();
            let accepted = state.sink.since(state.first_entry);
            let arrivals = arrivals(&accepted);
            let stopped = Instant::now();
            let mut latency = load::latency_histogram()?;
            let mut count = 0;
            let mut missing = 0;
            for (email, at) in &issued {
                let took = match arrival(&arrivals, email, *at) {
                    Some(arrived) => {
                        count += 1;
                        arrived - *at
                    }
                    None => {
                        missing += 1;
                        stopped - *at
                    }
                };
                let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
                latency.saturating_record(us.max(1));
            }
            let mut notes = vec![format!(
                "{} changes committed in the window, {count} of their e-mails accepted by the \
                 sink ({:.1} s after the window for the last ones)",
                issued.len(),
                waited.as_secs_f64()
            )];
            if missing > 0 {
                notes.push(format!(
                    "{missing} e-mails had not arrived {} s after the window: counted with \
                     the time waited",
                    DRAIN_TIMEOUT.as_secs()
                ));
            }
            notes.extend(delivery_notes(&state.sink, &accepted));
            Ok((
                Deliveries {
                    unit: "e-mails",
                    counted_at: "accepted by the SMTP sink",
                    count,
                    window: window.until - window.from,
                    latency: Some(latency),
                    missing,
                },
                notes,
            ))
        })
    })
}

/// When each address got RIGHTS_CHANGED e-mails, in order.
fn arrivals(accepted: &[Accepted]) -> HashMap<&str, Vec<Instant>> {
    let mut arrivals: HashMap<&str, Vec<Instant>> = HashMap::new();
    for mail in accepted {
        if mail.kind.as_deref() != Some(RIGHTS_CHANGED_KIND) {
            continue;
        }
        for recipient in &mail.recipients {
            arrivals
                .entry(recipient.as_str())
                .or_default()
                .push(mail.at);
        }
    }
    arrivals
}

/// The first arrival for `email` at or after `issued`.
fn arrival(
    arrivals: &HashMap<&str, Vec<Instant>>,
    email: &str,
    issued: Instant,
) -> Option<Instant> {
    arrivals
        .get(email)?
        .iter()
        .find(|arrived| **arrived >= issued)
        .copied()
}

/// SetToolAccess giving `user_id` software downloads on `site`, on behalf of its primary.
fn set_tool_access(
    site: &Site,
    user_id: &str,
    bearer: &MetadataValue<Ascii>,
) -> anyhow::Result<tonic::Request<SetToolAccessRequest>> {
    let on_behalf_of: MetadataValue<Ascii> = site
        .primary_user_id
        .parse()
        .context("a user id is not a valid header value")?;
    Ok(authorized(
        SetToolAccessRequest {
            site_id: site.site_id.clone(),
            user_id: user_id.to_owned(),
            tools: Some(ToolAccess {
                software: SoftwareAccess::DownloadsOnly.into(),
                ..ToolAccess::default()
            }),
            reason: "benchmark: downloads for a new colleague".to_owned(),
            etag: String::new(),
        },
        bearer,
        Some(on_behalf_of),
    ))
}

/// Notes on what the sink saw: e-mails accepted twice (by notification id), and broken
/// sessions.
fn delivery_notes(sink: &SmtpSink, accepted: &[Accepted]) -> Vec<String> {
    let mut seen: BTreeMap<&str, u32> = BTreeMap::new();
    for mail in accepted {
        if let Some(id) = &mail.notification_id {
            *seen.entry(id.as_str()).or_default() += 1;
        }
    }
    let twice = seen.values().filter(|count| **count > 1).count();
    let mut notes = Vec::new();
    if twice > 0 {
        notes.push(format!(
            "{twice} notifications were accepted more than once by the sink"
        ));
    }
    let untagged = accepted
        .iter()
        .filter(|mail| mail.notification_id.is_none())
        .count();
    if untagged > 0 {
        notes.push(format!(
            "{untagged} e-mails had no X-Keycontacts-Notification-Id header"
        ));
    }
    let broken = sink.broken_sessions();
    if broken > 0 {
        notes.push(format!(
            "{broken} SMTP sessions with the sink ended in an error"
        ));
    }
    notes
}

/// Waits until notification has applied every event published so far and delivered every
/// notification that made (none PENDING, SENDING or FAILED). Returns notes on the wait.
async fn quiesce(
    env: &Env,
    sink: &SmtpSink,
    bearer: &MetadataValue<Ascii>,
) -> anyhow::Result<Vec<String>> {
    let mut notes = Vec::new();
    notes.extend(streams::wait_until_applied(env, "notification", &STREAMS).await?);
    let started = Instant::now();
    let accepted = sink.accepted();
    let mut reported = started;
    let mut client = NotificationServiceClient::new(env.channel("notification").await?);
    loop {
        let mut busy = Vec::new();
        for state in [
            NotificationState::Pending,
            NotificationState::Sending,
            NotificationState::Failed,
        ] {
            let listed = client
                .list_notifications(authorized(
                    ListNotificationsRequest {
                        state: state.into(),
                        page_size: 1,
                        ..ListNotificationsRequest::default()
                    },
                    bearer,
                    None,
                ))
                .await
                .context("ListNotifications failed")?
                .into_inner();
            if !listed.notifications.is_empty() {
                busy.push(state.as_str_name());
            }
        }
        if busy.is_empty() {
            break;
        }
        if started.elapsed() > QUIESCE_TIMEOUT {
            bail!(
                "notification still has notifications {} after {} s",
                busy.join(", "),
                QUIESCE_TIMEOUT.as_secs()
            );
        }
        if reported == started || reported.elapsed() >= Duration::from_secs(10) {
            eprintln!(
                "xtask: waiting for notification to deliver what the seeding set off ({} \
                 e-mails so far)",
                sink.accepted() - accepted
            );
            reported = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let delivered = sink.accepted() - accepted;
    if delivered > 0 {
        notes.push(format!(
            "waited {:.1} s for notification to deliver the {delivered} e-mails the seeding \
             set off",
            started.elapsed().as_secs_f64()
        ));
    }
    Ok(notes)
}

/// A user the scenarios created in identity.
#[derive(Debug, Clone)]
struct User {
    user_id: String,
    /// Its login e-mail, lowercase: where its notices go.
    email: String,
}

/// A site the scenarios created in the registry.
#[derive(Debug, Clone)]
struct Site {
    site_id: String,
    primary_user_id: String,
}

/// Creates `count` users in identity (CreateUser without a password, so no hashing), e-mails
/// `<prefix>-<i>@<MAIL_DOMAIN>`, half of them in French.
async fn create_users(
    env: &Env,
    bearer: &MetadataValue<Ascii>,
    prefix: &str,
    count: usize,
) -> anyhow::Result<Vec<User>> {
    let client = IdentityServiceClient::new(env.channel("identity").await?);
    let requests: Vec<tonic::Request<CreateUserRequest>> = (0..count)
        .map(|i| {
            authorized(
                CreateUserRequest {
                    email: format!("{prefix}-{i}@{MAIL_DOMAIN}"),
                    display_name: format!("Bench {prefix} {i}"),
                    locale: if i % 2 == 0 { "fr" } else { "en" }.to_owned(),
                    ..CreateUserRequest::default()
                },
                bearer,
                None,
            )
        })
        .collect();
    futures::stream::iter(requests)
        .map(|request| create_user(client.clone(), request))
        .buffered(SEED_CONCURRENCY)
        .try_collect()
        .await
}

/// Registers `count` users and proves their addresses (rule I1), e-mails
/// `<prefix>-<i>@<MAIL_DOMAIN>`, half of them in French.
async fn register_users(env: &Env, prefix: &str, count: usize) -> anyhow::Result<Vec<User>> {
    let people: Vec<RegisterUserRequest> = (0..count)
        .map(|i| RegisterUserRequest {
            email: format!("{prefix}-{i}@{MAIL_DOMAIN}"),
            display_name: format!("Bench {prefix} {i}"),
            password: USER_PASSWORD.to_owned(),
            locale: if i % 2 == 0 { "fr" } else { "en" }.to_owned(),
        })
        .collect();
    let users = streams::register_proven(env, people, SEED_CONCURRENCY).await?;
    Ok(users
        .into_iter()
        .map(|user| User {
            user_id: user.user_id,
            email: user.email.to_lowercase(),
        })
        .collect())
}

/// One CreateUser.
async fn create_user(
    mut client: IdentityServiceClient<Channel>,
    request: tonic::Request<CreateUserRequest>,
) -> anyhow::Result<User> {
    let email = request.get_ref().email.clone();
    let user = client
        .create_user(request)
        .await
        .with_context(|| format!("CreateUser of {email} failed"))?
        .into_inner()
        .user
        .ok_or_else(|| anyhow!("CreateUser returned no user"))?;
    Ok(User {
        user_id: user.user_id,
        email: user.email.to_lowercase(),
    })
}

/// Creates one site per user of `primaries` in the registry, site (and customer) numbers from
/// `first_number`, each with that user as its primary contact and, with `partner`, a business
/// partner e-mail of its own.
async fn create_sites(
    env: &Env,
    bearer: &MetadataValue<Ascii>,
    first_number: usize,
    primaries: &[User],
    partner: bool,
) -> anyhow::Result<Vec<Site>> {
    let client = ContactRegistryServiceClient::new(env.channel("contacts").await?);
    let requests: Vec<tonic::Request<CreateSiteRequest>> = primaries
        .iter()
        .enumerate()
        .map(|(i, primary)| {
            let number = (first_number + i).to_string();
            let french = i % 2 == 0;
            authorized(
                CreateSiteRequest {
                    business_partner_email: if partner {
                        format!("partner-{number}@{MAIL_DOMAIN}")
                    } else {
                        String::new()
                    },
                    // Its own customer: the site is the customer's original site.
                    customer_number: number.clone(),
                    name: format!("Bench notification site {number}"),
                    site_number: number,
                    country_code: if french { "FR" } else { "US" }.to_owned(),
                    language: if french { "fr" } else { "en" }.to_owned(),
                    program: Program::PassportAdvantage.into(),
                    primary_user_id: primary.user_id.clone(),
                    ..CreateSiteRequest::default()
                },
                bearer,
                None,
            )
        })
        .collect();
    futures::stream::iter(requests)
        .map(|request| create_site(client.clone(), request))
        .buffered(SEED_CONCURRENCY)
        .try_collect()
        .await
}

/// One CreateSite.
async fn create_site(
    mut client: ContactRegistryServiceClient<Channel>,
    request: tonic::Request<CreateSiteRequest>,
) -> anyhow::Result<Site> {
    let number = request.get_ref().site_number.clone();
    let site = client
        .create_site(request)
        .await
        .with_context(|| format!("CreateSite of site {number} failed"))?
        .into_inner()
        .site
        .ok_or_else(|| anyhow!("CreateSite of site {number} returned no site"))?;
    Ok(Site {
        site_id: site.site_id,
        primary_user_id: site.primary_user_id,
    })
}

/// `message` as a request with `bearer` as its authorization, on behalf of a user when given.
fn authorized<T>(
    message: T,
    bearer: &MetadataValue<Ascii>,
    on_behalf_of: Option<MetadataValue<Ascii>>,
) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", bearer.clone());
    if let Some(user) = on_behalf_of {
        request.metadata_mut().insert("x-kc-on-behalf-of", user);
    }
    request
}

/// One message the sink accepted.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// When the sink answered 250 to the end of its data.
    pub at: Instant,
    /// Its `RCPT TO` addresses, lowercase.
    pub recipients: Vec<String>,
    /// Its `X-Keycontacts-Notification-Id` header.
    pub notification_id: Option<String>,
    /// Its `X-Keycontacts-Kind` header.
    pub kind: Option<String>,
}

impl Accepted {
    /// Whether it went to `email` and is of `kind`.
    fn is_for(&self, email: &str, kind: &str) -> bool {
        self.kind.as_deref() == Some(kind) && self.recipients.iter().any(|to| to == email)
    }
}

/// What the sink's sessions and its owner share.
#[derive(Debug, Default)]
struct Shared {
    /// Every message accepted, in order.
    log: std::sync::Mutex<Vec<Accepted>>,
    /// Messages accepted.
    accepted: AtomicU64,
    /// Sessions that ended in an error (connection reset, bad input).
    broken: AtomicU64,
    /// Woken at each message accepted.
    changed: Notify,
}

impl Shared {
    fn record(&self, accepted: Accepted) {
        self.log
            .lock()
            .expect("the sink's log lock is never poisoned")
            .push(accepted);
        self.accepted.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_waiters();
    }
}

/// A minimal ESMTP server on 127.0.0.1 that accepts every message and records it: see the
/// module documentation. Stops when dropped.
pub struct SmtpSink {
    addr: SocketAddr,
    shared: Arc<Shared>,
    thread_id: Option<u32>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SmtpSink {
    /// Starts the sink on a free port of 127.0.0.1, on a thread of its own.
    pub fn start() -> anyhow::Result<SmtpSink> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .context("could not bind the SMTP sink on 127.0.0.1")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let (stop, stopped) = oneshot::channel();
        let (ready, started) = std::sync::mpsc::channel::<Result<Option<u32>, String>>();
        let served = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("smtp-sink".to_owned())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(err) => {
                        let _ = ready.send(Err(format!("no runtime: {err}")));
                        return;
                    }
                };
                let listener = {
                    let _entered = runtime.enter();
                    match tokio::net::TcpListener::from_std(listener) {
                        Ok(listener) => listener,
                        Err(err) => {
                            let _ = ready.send(Err(format!("no listener: {err}")));
                            return;
                        }
                    }
                };
                let _ = ready.send(Ok(procfs::current_thread_id().ok()));
                runtime.block_on(serve(listener, served, stopped));
            })
            .context("could not start the SMTP sink's thread")?;
        let thread_id = started
            .recv()
            .context("the SMTP sink's thread ended at start")?
            .map_err(|err| anyhow!("the SMTP sink could not start: {err}"))?;
        Ok(SmtpSink {
            addr,
            shared,
            thread_id,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// `smtp://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    /// The id of the thread that runs it, for its CPU time.
    pub fn thread_id(&self) -> Option<u32> {
        self.thread_id
    }

    /// Messages accepted so far.
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Sessions that ended in an error so far.
    pub fn broken_sessions(&self) -> u64 {
        self.shared.broken.load(Ordering::SeqCst)
    }

    /// Entries in its log: pass it to [`SmtpSink::since`] later for what came after.
    pub fn log_len(&self) -> usize {
        self.log().len()
    }

    /// The messages accepted from log entry `from` on.
    pub fn since(&self, from: usize) -> Vec<Accepted> {
        self.log()
            .get(from..)
            .map(<[Accepted]>::to_vec)
            .unwrap_or_default()
    }

    /// Resolves at the next message accepted (enable it before checking a condition).
    pub fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.shared.changed.notified()
    }

    /// Waits until `done` holds for the messages accepted from log entry `from` on, for at
    /// most `timeout`; returns whether it held.
    pub async fn wait_for(
        &self,
        from: usize,
        timeout: Duration,
        mut done: impl FnMut(&[Accepted]) -> bool,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let changed = self.changed();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if done(&self.since(from)) {
                return true;
            }
            tokio::select! {
                () = changed => {}
                () = tokio::time::sleep_until(deadline) => return done(&self.since(from)),
            }
        }
    }

    fn log(&self) -> std::sync::MutexGuard<'_, Vec<Accepted>> {
        self.shared
            .log
            .lock()
            .expect("the sink's log lock is never poisoned")
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Accepts connections until `stop`, one task each.
async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    mut stop: oneshot::Receiver<()>,
) {
    loop {
        tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let shared = Arc::clone(&shared);
                    tokio::spawn(async move {
                        let _ = stream.set_nodelay(true);
                        let (read, write) = stream.into_split();
                        let reader = tokio::io::BufReader::new(read);
                        if session(reader, write, &shared).await.is_err() {
                            shared.broken.fetch_add(1, Ordering::SeqCst);
                        }
                    });
                }
                // Out of file descriptors, most likely: let some close.
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            },
        }
    }
}

/// The name the sink greets with.
const SINK_NAME: &str = "keycontacts-bench-sink";
/// Longest command line it reads (RFC 5321 says 512 octets; generous).
const MAX_COMMAND_LINE: u64 = 4096;
/// Largest message it reads.
const MAX_MESSAGE: u64 = 32 * 1024 * 1024;

/// The envelope of the message being received.
#[derive(Debug, Default)]
struct Envelope {
    /// Whether MAIL FROM was given.
    sender: bool,
    /// RCPT TO addresses, lowercase.
    recipients: Vec<String>,
}

/// One SMTP session, until QUIT or the client closes: every message accepted is recorded in
/// `shared`.
async fn session<R, W>(mut reader: R, mut writer: W, shared: &Shared) -> std::io::Result<()>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    writer
        .write_all(format!("220 {SINK_NAME} ESMTP ready\r\n").as_bytes())
        .await?;
    let mut envelope = Envelope::default();
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = (&mut reader)
            .take(MAX_COMMAND_LINE)
            .read_until(b'\n', &mut line)
            .await?;
        if read == 0 {
            // The client went away without QUIT: not an error of the sink's.
            return Ok(());
        }
        if !line.ends_with(b"\n") {
            writer.write_all(b"500 5.5.2 line too long\r\n").await?;
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "command line too long",
            ));
        }
        let text = String::from_utf8_lossy(trim_line_end(&line)).into_owned();
        let (verb, argument) = match text.split_once(' ') {
            Some((verb, argument)) => (verb.to_ascii_uppercase(), argument.trim()),
            None => (text.to_ascii_uppercase(), ""),
        };
        let reply: String = match verb.as_str() {
            "EHLO" => {
                envelope = Envelope::default();
                format!("250-{SINK_NAME}\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n")
            }
            "HELO" => {
                envelope = Envelope::default();
                format!("250 {SINK_NAME}\r\n")
            }
            "MAIL" => match strip_prefix_ignore_case(argument, "FROM:") {
                Some(_) => {
                    envelope = Envelope {
                        sender: true,
                        recipients: Vec::new(),
                    };
                    "250 2.1.0 ok\r\n".to_owned()
                }
                None => "501 5.5.4 syntax: MAIL FROM:<address>\r\n".to_owned(),
            },
            "RCPT" => match strip_prefix_ignore_case(argument, "TO:").map(address) {
                _ if !envelope.sender => "503 5.5.1 MAIL first\r\n".to_owned(),
                Some(Some(to)) => {
                    envelope.recipients.push(to.to_lowercase());
                    "250 2.1.5 ok\r\n".to_owned()
                }
                _ => "501 5.5.4 syntax: RCPT TO:<address>\r\n".to_owned(),
            },
            "DATA" if envelope.recipients.is_empty() => "503 5.5.1 RCPT first\r\n".to_owned(),
            "DATA" => {
                writer
                    .write_all(b"354 end data with <CR><LF>.<CR><LF>\r\n")
                    .await?;
                let headers = read_data(&mut reader).await?;
                let accepted = Accepted {
                    at: Instant::now(),
                    recipients: std::mem::take(&mut envelope.recipients),
                    notification_id: headers.notification_id,
                    kind: headers.kind,
                };
                envelope = Envelope::default();
                shared.record(accepted);
                "250 2.0.0 ok: queued\r\n".to_owned()
            }
            "RSET" => {
                envelope = Envelope::default();
                "250 2.0.0 ok\r\n".to_owned()
            }
            "NOOP" => "250 2.0.0 ok\r\n".to_owned(),
            "QUIT" => {
                writer.write_all(b"221 2.0.0 bye\r\n").await?;
                writer.flush().await?;
                return Ok(());
            }
            _ => "502 5.5.1 command not implemented\r\n".to_owned(),
        };
        writer.write_all(reply.as_bytes()).await?;
        writer.flush().await?;
    }
}

/// The headers of a message the sink records.
#[derive(Debug, Default, PartialEq, Eq)]
struct Headers {
    notification_id: Option<String>,
    kind: Option<String>,
}

/// Reads a message's data up to the line holding only `.`, undoing dot-stuffing; returns the
/// headers the sink records.
async fn read_data<R: AsyncBufRead + Unpin>(reader: &mut R) -> std::io::Result<Headers> {
    let mut headers = Headers::default();
    let mut in_headers = true;
    // The header the previous line was, for folded continuation lines.
    let mut last: Option<&'static str> = None;
    let mut size: u64 = 0;
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = (&mut *reader)
            .take(MAX_MESSAGE - size)
            .read_until(b'\n', &mut line)
            .await?;
        if read == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                if size >= MAX_MESSAGE {
                    "message too large"
                } else {
                    "the client closed in the middle of a message"
                },
            ));
        }
        size += read as u64;
        let content = trim_line_end(&line);
        if content == b"." {
            return Ok(headers);
        }
        // Dot-stuffing (RFC 5321 4.5.2): a line of the message starting with "." was sent
        // with one more.
        let content = content.strip_prefix(b".").unwrap_or(content);
        if !in_headers {
            continue;
        }
        if content.is_empty() {
            in_headers = false;
            continue;
        }
        let text = String::from_utf8_lossy(content);
        if text.starts_with([' ', '\t']) {
            // A folded continuation of the previous header.
            let value = match last {
                Some("id") => headers.notification_id.as_mut(),
                Some("kind") => headers.kind.as_mut(),
                _ => None,
            };
            if let Some(value) = value {
                value.push_str(text.trim());
            }
            continue;
        }
        last = None;
        let Some((name, value)) = text.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name.eq_ignore_ascii_case("X-Keycontacts-Notification-Id") {
            headers.notification_id = Some(value.trim().to_owned());
            last = Some("id");
        } else if name.eq_ignore_ascii_case("X-Keycontacts-Kind") {
            headers.kind = Some(value.trim().to_owned());
            last = Some("kind");
        }
    }
}

/// `line` without its CRLF (or bare LF).
fn trim_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// `text` after `prefix`, compared without case.
fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| text[prefix.len()..].trim_start())
}

/// The address of a `MAIL FROM:` or `RCPT TO:` argument: `<a@b> PARAMS` or a bare `a@b`.
fn address(argument: &str) -> Option<&str> {
    let address = match argument.strip_prefix('<') {
        Some(rest) => &rest[..rest.find('>')?],
        None => argument.split_whitespace().next()?,
    };
    (!address.is_empty()).then_some(address)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs one session over an in-memory pipe with `input` from the client; returns what the
    /// sink answered and what it recorded.
    async fn converse(input: &str) -> (String, Vec<Accepted>, std::io::Result<()>) {
        let shared = Shared::default();
        let mut output = Vec::new();
        let result = session(input.as_bytes(), &mut output, &shared).await;
        let log = shared.log.lock().unwrap().clone();
        (String::from_utf8(output).unwrap(), log, result)
    }

    fn codes(output: &str) -> Vec<&str> {
        output
            .lines()
            .filter(|line| line.as_bytes().get(3) != Some(&b'-'))
            .map(|line| &line[..3])
            .collect()
    }

    #[tokio::test]
    async fn a_message_is_accepted_and_recorded() {
        let (output, log, result) = converse(
            "EHLO client.example\r\n\
             MAIL FROM:<no-reply@keycontacts.invalid> BODY=8BITMIME\r\n\
             RCPT TO:<Ada@Example.COM>\r\n\
             DATA\r\n\
             From: keycontacts <no-reply@keycontacts.invalid>\r\n\
             X-Keycontacts-Notification-Id: 0190-abc\r\n\
             x-keycontacts-kind:\r\n\
             \tNOTICE_KIND_RIGHTS_CHANGED\r\n\
             Subject: hello\r\n\
             \r\n\
             ..a line that starts with a dot\r\n\
             X-Keycontacts-Kind: not a header, in the body\r\n\
             .\r\n\
             QUIT\r\n",
        )
        .await;
        result.unwrap();
        assert_eq!(
            codes(&output),
            ["220", "250", "250", "250", "354", "250", "221"]
        );
        assert!(output.contains("250-8BITMIME\r\n"), "{output}");
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].recipients, ["ada@example.com"]);
        assert_eq!(log[0].notification_id.as_deref(), Some("0190-abc"));
        assert_eq!(log[0].kind.as_deref(), Some("NOTICE_KIND_RIGHTS_CHANGED"));
        assert!(log[0].is_for("ada@example.com", RIGHTS_CHANGED_KIND));
    }

    #[tokio::test]
    async fn commands_out_of_order_are_refused_and_rset_forgets() {
        let (output, log, result) = converse(
            "HELO client\r\n\
             RCPT TO:<a@example.com>\r\n\
             DATA\r\n\
             MAIL FROM:<>\r\n\
             RCPT TO:<a@example.com>\r\n\
             RSET\r\n\
             DATA\r\n\
             NOOP\r\n\
             STARTTLS\r\n\
             MAIL FROM:<>\r\n\
             RCPT TO:\r\n\
             QUIT\r\n",
        )
        .await;
        result.unwrap();
        assert_eq!(
            codes(&output),
            [
                "220", "250", "503", "503", "250", "250", "250", "503", "250", "502", "250", "501",
                "221"
            ]
        );
        assert!(log.is_empty());
    }

    #[tokio::test]
    async fn two_messages_in_one_session_and_a_client_that_just_leaves() {
        let message = |to: &str, id: &str| {
            format!(
                "MAIL FROM:<s@example.com>\r\nRCPT TO:<{to}>\r\nDATA\r\n\
                 X-Keycontacts-Notification-Id: {id}\r\n\r\nbody\r\n.\r\n"
            )
        };
        let input = format!(
            "EHLO c\r\n{}{}",
            message("one@example.com", "1"),
            message("two@example.com", "2")
        );
        let (_, log, result) = converse(&input).await;
        result.unwrap();
        let ids: Vec<Option<&str>> = log
            .iter()
            .map(|mail| mail.notification_id.as_deref())
            .collect();
        assert_eq!(ids, [Some("1"), Some("2")]);
        assert!(log[0].at <= log[1].at);
    }

    #[tokio::test]
    async fn a_message_cut_short_is_an_error_and_not_recorded() {
        let (_, log, result) =
            converse("EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<a@example.com>\r\nDATA\r\nSubject: x\r\n")
                .await;
        assert!(result.is_err());
        assert!(log.is_empty());
    }

    #[test]
    fn addresses_parse_with_or_without_brackets() {
        assert_eq!(address("<a@b.c>"), Some("a@b.c"));
        assert_eq!(address("<a@b.c> NOTIFY=NEVER"), Some("a@b.c"));
        assert_eq!(address("a@b.c SIZE=10"), Some("a@b.c"));
        assert_eq!(address("<>"), None);
        assert_eq!(address("<a@b.c"), None);
        assert_eq!(strip_prefix_ignore_case("to: <x>", "TO:"), Some("<x>"));
        assert_eq!(strip_prefix_ignore_case("t", "TO:"), None);
    }

    /// lettre, the SMTP client kc-notification uses, delivers to the sink over TCP.
    #[tokio::test]
    async fn lettre_delivers_to_the_sink() {
        use lettre::message::MultiPart;
        use lettre::message::header::{HeaderName, HeaderValue};
        use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

        let sink = SmtpSink::start().unwrap();
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(&sink.url())
            .unwrap()
            .build();
        for n in 0..3 {
            let message = Message::builder()
                .from(
                    "keycontacts <no-reply@keycontacts.invalid>"
                        .parse()
                        .unwrap(),
                )
                .to(format!("User-{n}@Example.com").parse().unwrap())
                .subject("Vos droits ont changé")
                .raw_header(HeaderValue::new(
                    HeaderName::new_from_ascii_str("X-Keycontacts-Notification-Id"),
                    format!("id-{n}"),
                ))
                .multipart(MultiPart::alternative_plain_html(
                    ".leading dot\r\n.\r\nété".to_owned(),
                    "<p>été</p>".to_owned(),
                ))
                .unwrap();
            transport.send(message).await.unwrap();
        }
        assert!(
            sink.wait_for(0, Duration::from_secs(10), |accepted| accepted.len() == 3)
                .await
        );
        let accepted = sink.since(0);
        assert_eq!(accepted[2].recipients, ["user-2@example.com"]);
        assert_eq!(accepted[2].notification_id.as_deref(), Some("id-2"));
        assert_eq!(sink.accepted(), 3);
        assert_eq!(sink.broken_sessions(), 0);
        assert!(sink.thread_id().is_some());
    }

    #[test]
    fn arrivals_match_the_first_rights_email_after_the_call() {
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let mail = |ms, to: &str, kind: &str| Accepted {
            at: at(ms),
            recipients: vec![to.to_owned()],
            notification_id: None,
            kind: Some(kind.to_owned()),
        };
        let accepted = [
            mail(5, "a@x", "NOTICE_KIND_EMAIL_VERIFICATION"),
            mail(20, "a@x", RIGHTS_CHANGED_KIND),
            mail(30, "b@x", RIGHTS_CHANGED_KIND),
        ];
        let arrivals = arrivals(&accepted);
        assert_eq!(arrival(&arrivals, "a@x", at(0)), Some(at(20)));
        assert_eq!(arrival(&arrivals, "a@x", at(25)), None);
        assert_eq!(arrival(&arrivals, "b@x", at(10)), Some(at(30)));
        assert_eq!(arrival(&arrivals, "c@x", at(0)), None);
    }
}
