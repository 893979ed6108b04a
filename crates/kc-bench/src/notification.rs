//! The notification service's scenarios (`notification.*`).
//!
//! The e-mails go to the benchmark's SMTP sink ([`crate::smtp_sink`]).
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
use tokio::time::Instant;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;

use super::load::{self, AdmitFn, CallFn, Deliveries, Window};
use super::streams;
use crate::env::{Env, OutcomeFn, Prepared};
use crate::smtp_sink::{Accepted, SmtpSink};

/// How long the notification scenarios measure by default: their target is a rate sustained
/// for 30 s.
pub(crate) const SUSTAINED: Duration = Duration::from_secs(30);
/// Sites SendNotice goes round-robin over in `notification.throughput`.
pub(crate) const THROUGHPUT_SITES: usize = 50;
/// E-mails one SendNotice of a proof of entitlement makes: the primary contact's and the
/// business partner's copy (C4).
pub(crate) const EMAILS_PER_NOTICE: u64 = 2;
/// Most e-mails made and not yet accepted by the sink before calls wait.
pub(crate) const BACKLOG: u64 = 512;
/// Sites whose users get rights in `notification.latency`.
pub(crate) const LATENCY_SITES: usize = 20;
/// Rights changes a second in `notification.latency`.
pub(crate) const LATENCY_RATE: f64 = 100.0;
/// Longest `notification.latency` waits after its window for the e-mails of the changes made
/// in it.
pub(crate) const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);
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
/// The `X-Keycontacts-Kind` of the e-mails `notification.latency` waits for.
const RIGHTS_CHANGED_KIND: &str = "NOTICE_KIND_RIGHTS_CHANGED";

/// Seeds `notification.throughput`: see the module documentation.
pub(crate) fn seed_throughput(env: &Env) -> BoxFuture<'_, anyhow::Result<Prepared>> {
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
pub(crate) fn seed_latency(env: &Env) -> BoxFuture<'_, anyhow::Result<Prepared>> {
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
        notes.extend(streams::wait_until_applied(env, "access", &streams::ACCESS_STREAMS).await?);
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
            issued: load::Stamps::default(),
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
    issued: load::Stamps,
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
            state.issued.push(target.email.clone(), issued);
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
            let issued = state.issued.within(window);
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
            ..Default::default()
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
    notes.extend(
        streams::wait_until_applied(env, "notification", &streams::NOTIFICATION_STREAMS).await?,
    );
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

#[cfg(test)]
mod tests {
    use super::*;

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
