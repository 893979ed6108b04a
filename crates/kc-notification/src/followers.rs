//! The three stream followers that turn other services' events into notices, each a
//! [`Consumer`] authenticated with this service's own account ([`ServiceToken`]):
//!
//! - `notification.identity` follows `IdentityService/WatchEvents`: an
//!   `EmailVerificationRequested` becomes the e-mail with the code (by purpose: registration,
//!   invitation, password reset, new login e-mail), the code opened from its sealed box with
//!   `--code-opening-key-file`; a `RegistrationAttempted` tells the address why its
//!   registration was not taken (I2, I3); an `EmailChangeRequested` tells the current
//!   address. A sealed code that identity already emptied (the code was used, replaced or
//!   expired) or that does not open sends nothing, and the event is consumed.
//! - `notification.contacts` follows `ContactRegistryService/WatchEvents` into the projection
//!   of sites and contacts (names, languages, confirmed notification e-mails, C9) and turns
//!   role changes into notices: assigned or removed (that contact and the primary, C1),
//!   primary transferred (the previous and the new primary, C8). A change asked of a
//!   contact's notification e-mail (C11) mails the code (opened like identity's) to the new
//!   address, its only mail until confirmed, and tells the contact's login e-mail.
//! - `notification.access` follows `AccessManagementService/WatchEvents`: a submitted request
//!   (its approvers, A3), a decision (the requester, A2), a change of rights (that user, T5),
//!   a domain policy change (the approvers, A7). Cancelled and expired requests tell nobody.
//!
//! The users an event names (recipients, and the people the notice shows) are looked up in
//! identity as the event arrives, before its transaction, a few lookups ahead of the event
//! being applied, the events the stream has already delivered in one `BatchGetUsers`: no
//! remote call runs inside a transaction (an open transaction holds back every outbox stream
//! of the database cluster). Identity down fails the stream, and the
//! consumer reconnects from its cursor after a backoff.
//!
//! Each event is then applied in the consumer's transaction with its cursor: the notices it
//! creates (and the projection changes) commit with the cursor or not at all, and a replayed
//! event creates nothing new (N3: the notifications' unique key). An access event about a
//! site the registry's stream has not brought yet fails and is retried by the consumer with
//! backoff (access knows sites only from that same stream, so it will come). The events a
//! stream has already delivered share one transaction ([`Consumer::with_batch`]): an apply
//! locks nothing but the rows it writes, which only these consumers write. The notices of
//! the transaction's events are inserted together, in one statement, after the last event's
//! projection changes ([`Consumer::run_batches`]).

use std::collections::HashMap;

use anyhow::Context;
use chrono::{DateTime, NaiveDate, Utc};
use futures::{Stream, StreamExt};
use kc_proto::access::access_management_service_client::AccessManagementServiceClient;
use kc_proto::access::{self as access_pb};
use kc_proto::contacts::contact_registry_service_client::ContactRegistryServiceClient;
use kc_proto::contacts::{self as contacts_pb};
use kc_proto::identity::identity_service_client::IdentityServiceClient;
use kc_proto::identity::{self as identity_pb};
use kc_runtime::Shutdown;
use kc_runtime::client::ServiceToken;
use kc_runtime::outbox::{
    Consumer, EventFeed, EventTime, MAX_BATCH, OpenedEvents, apply_all_fn, watch_source,
};
use kc_runtime::secrets::OpeningKey;
use sqlx::{PgConnection, PgPool};
use tokio::task::JoinHandle;
use tonic::Status;
use tonic::transport::Channel;
use uuid::Uuid;

use crate::clients::{Directory, UserInfo};
use crate::domain::catalog::{Decision, Level, PolicyMode, RequestKind, Right};
use crate::domain::params::Params;
use crate::domain::recipients::{
    self, Facts, Planned, RULE_APPROVER, RULE_POLICY_APPROVER, RULE_REQUESTER, RULE_RIGHTS,
    RULE_RIGHTS_END,
};
use crate::domain::recipients::{
    RULE_EMAIL_CHANGE_REQUESTED, RULE_REGISTRATION_CONFUSABLE, RULE_REGISTRATION_TAKEN,
};
use crate::domain::service::{
    AddressNotice, CodePurpose, NotificationEmailChange, Origin, Source, Verification,
};
use crate::domain::{Kind, NewNotification, Notifier, Role, Site};
use crate::storage::{self, sites::ProjectedContact};

/// Name (and cursor key) of the consumer of identity's stream.
pub(crate) const IDENTITY_CONSUMER: &str = "notification.identity";
/// Name (and cursor key) of the consumer of the contact registry's stream.
pub(crate) const CONTACTS_CONSUMER: &str = "notification.contacts";
/// Name (and cursor key) of the consumer of access management's stream.
pub(crate) const ACCESS_CONSUMER: &str = "notification.access";

/// Most events whose users are looked up in one call.
const LOOKAHEAD: usize = 16;
/// Lookups made ahead of the event being applied, at most.
const LOOKUPS_AHEAD: usize = 4;

/// An event with what identity said of the users it names.
#[derive(Debug, Clone)]
pub(crate) struct Prepared<E> {
    /// The event.
    pub event: E,
    /// The users it names that identity knows.
    pub users: HashMap<Uuid, UserInfo>,
}

impl<E: EventTime> EventTime for Prepared<E> {
    fn create_time(&self) -> Option<DateTime<Utc>> {
        self.event.create_time()
    }
}

/// Looks up, as events arrive, the users each event names: the events the stream has already
/// delivered (at most [`LOOKAHEAD`]) in one lookup, a few lookups ahead of the event being
/// applied. A lookup that fails fails the stream at the first of its events.
fn prepare<E, S>(
    stream: S,
    directory: Directory,
    named: fn(&E) -> Vec<Uuid>,
) -> impl Stream<Item = Result<(String, Prepared<E>), Status>>
where
    S: Stream<Item = Result<(String, E), Status>>,
{
    stream
        .ready_chunks(LOOKAHEAD)
        .map(move |chunk| {
            let directory = directory.clone();
            async move {
                let mut events = Vec::with_capacity(chunk.len());
                let mut failure = None;
                for item in chunk {
                    match item {
                        Ok(event) => events.push(event),
                        Err(status) => {
                            failure = Some(status);
                            break;
                        }
                    }
                }
                let ids: Vec<Uuid> = events.iter().flat_map(|(_, event)| named(event)).collect();
                let found = if ids.is_empty() {
                    Ok(HashMap::new())
                } else {
                    directory.users(&ids).await.map_err(|error| {
                        Status::unavailable(format!("looking the event's users up: {error}"))
                    })
                };
                let prepared: Vec<_> = match found {
                    Ok(found) => events
                        .into_iter()
                        .map(|(cursor, event)| {
                            let users = named(&event)
                                .into_iter()
                                .filter_map(|id| found.get(&id).map(|user| (id, user.clone())))
                                .collect();
                            Ok((cursor, Prepared { event, users }))
                        })
                        .chain(failure.map(Err))
                        .collect(),
                    Err(status) => vec![Err(status)],
                };
                futures::stream::iter(prepared)
            }
        })
        .buffered(LOOKUPS_AHEAD)
        .flatten()
}

/// The `source` of a consumer of `feed`'s events, each with the users it names ([`prepare`]).
fn prepared_source<F: EventFeed>(
    feed: F,
    token: ServiceToken,
    directory: Directory,
    named: fn(&F::Event) -> Vec<Uuid>,
) -> impl FnMut(String) -> OpenedEvents<Prepared<F::Event>> + Send + 'static {
    let mut open = watch_source(feed, token);
    move |after: String| {
        let opened = open(after);
        let directory = directory.clone();
        Box::pin(async move { Ok(prepare(opened.await?, directory, named).boxed()) })
    }
}

/// The channels of the services followed.
#[derive(Debug, Clone)]
pub(crate) struct Streams {
    /// Identity.
    pub identity: Channel,
    /// The contact registry.
    pub contacts: Channel,
    /// Access management.
    pub access: Channel,
}

/// Starts the three consumers; they run until `shutdown` triggers. Identity's codes are
/// opened with `opening`.
pub(crate) fn spawn(
    pool: &PgPool,
    notifier: &Notifier,
    directory: &Directory,
    token: &ServiceToken,
    opening: &OpeningKey,
    streams: Streams,
    shutdown: &Shutdown,
) -> Vec<JoinHandle<()>> {
    let identity_notifier = notifier.clone();
    let identity_opening = opening.clone();
    let apply_identity = apply_all_fn(move |conn, events: Vec<identity_pb::Event>| {
        let notifier = identity_notifier.clone();
        let opening = identity_opening.clone();
        Box::pin(async move {
            let mut notices = Vec::new();
            for event in &events {
                identity_event_notices(&notifier, &opening, event, &mut notices)?;
            }
            insert_notices(conn, &notices).await
        })
    });
    let contacts_notifier = notifier.clone();
    let contacts_opening = opening.clone();
    let apply_contacts = apply_all_fn(move |conn, events: Vec<Prepared<contacts_pb::Event>>| {
        let notifier = contacts_notifier.clone();
        let opening = contacts_opening.clone();
        Box::pin(async move {
            let mut notices = Vec::new();
            for prepared in &events {
                apply_contacts_event(
                    conn,
                    &notifier,
                    &opening,
                    &prepared.event,
                    &prepared.users,
                    &mut notices,
                )
                .await?;
            }
            insert_notices(conn, &notices).await
        })
    });
    let access_notifier = notifier.clone();
    let apply_access = apply_all_fn(move |conn, events: Vec<Prepared<access_pb::Event>>| {
        let notifier = access_notifier.clone();
        Box::pin(async move {
            let mut notices = Vec::new();
            for prepared in &events {
                apply_access_event(
                    conn,
                    &notifier,
                    &prepared.event,
                    &prepared.users,
                    &mut notices,
                )
                .await?;
            }
            insert_notices(conn, &notices).await
        })
    });
    vec![
        tokio::spawn(
            Consumer::new(pool.clone(), IDENTITY_CONSUMER)
                .with_batch(MAX_BATCH)
                .run_batches(
                    watch_source(IdentityServiceClient::new(streams.identity), token.clone()),
                    |_: &identity_pb::Event| true,
                    apply_identity,
                    shutdown.wait_owned(),
                ),
        ),
        tokio::spawn(
            Consumer::new(pool.clone(), CONTACTS_CONSUMER)
                .with_batch(MAX_BATCH)
                .run_batches(
                    prepared_source(
                        ContactRegistryServiceClient::new(streams.contacts),
                        token.clone(),
                        directory.clone(),
                        contacts_event_users,
                    ),
                    |_: &Prepared<contacts_pb::Event>| true,
                    apply_contacts,
                    shutdown.wait_owned(),
                ),
        ),
        tokio::spawn(
            Consumer::new(pool.clone(), ACCESS_CONSUMER)
                .with_batch(MAX_BATCH)
                .run_batches(
                    prepared_source(
                        AccessManagementServiceClient::new(streams.access),
                        token.clone(),
                        directory.clone(),
                        access_event_users,
                    ),
                    |_: &Prepared<access_pb::Event>| true,
                    apply_access,
                    shutdown.wait_owned(),
                ),
        ),
    ]
}

/// Inserts the notices of a transaction's events in one statement (N3: those that exist
/// already are left as they are), waking the workers at commit.
async fn insert_notices(
    conn: &mut PgConnection,
    notices: &[NewNotification],
) -> anyhow::Result<()> {
    storage::notifications::insert_counted(conn, notices).await?;
    Ok(())
}

fn parse_uuid(what: &str, text: &str) -> anyhow::Result<Uuid> {
    Uuid::parse_str(text).with_context(|| format!("{what} `{text}` is not a UUID"))
}

fn optional_uuid(text: &str) -> Option<Uuid> {
    Uuid::parse_str(text).ok()
}

fn time_of(timestamp: Option<&prost_types::Timestamp>) -> Option<DateTime<Utc>> {
    timestamp.and_then(|t| DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).ok()?))
}

/// Longest code this service mails (identity's long codes are 20 characters).
const MAX_CODE_CHARS: usize = 64;

/// Why a sealed code gives no mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unopened {
    /// Identity emptied it: the code was used, replaced or expired before it was mailed.
    Withdrawn,
    /// It does not open with this service's key (another key, altered, or not a code).
    Unreadable,
}

/// The code in an event's sealed box, opened with `opening`. Never logs the code.
pub(crate) fn open_code(opening: &OpeningKey, sealed: &[u8]) -> Result<String, Unopened> {
    if sealed.is_empty() {
        return Err(Unopened::Withdrawn);
    }
    let opened = opening.open(sealed).map_err(|_| Unopened::Unreadable)?;
    let code = std::str::from_utf8(&opened).map_err(|_| Unopened::Unreadable)?;
    let well_formed = !code.is_empty()
        && code.chars().count() <= MAX_CODE_CHARS
        && code.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if well_formed {
        Ok(code.to_owned())
    } else {
        Err(Unopened::Unreadable)
    }
}

/// The purpose of identity's number; an unspecified or unknown one (a newer identity) is
/// mailed as a registration code, the plainest "prove this address" mail.
fn code_purpose(number: i32) -> CodePurpose {
    use identity_pb::VerificationPurpose as P;
    match P::try_from(number) {
        Ok(P::Invitation) => CodePurpose::Invitation,
        Ok(P::PasswordReset) => CodePurpose::PasswordReset,
        Ok(P::EmailChange) => CodePurpose::EmailChange,
        Ok(P::Registration) | Ok(P::Unspecified) | Err(_) => CodePurpose::Registration,
    }
}

/// The notices of one identity event, added to `out`: a code becomes its mail (opened from
/// its sealed box with `opening`), a registration that was not taken (I2, I3) and a login
/// e-mail change become their notices to the address. Other events tell nobody.
pub(crate) fn identity_event_notices(
    notifier: &Notifier,
    opening: &OpeningKey,
    event: &identity_pb::Event,
    out: &mut Vec<NewNotification>,
) -> anyhow::Result<()> {
    use identity_pb::event::Payload;
    let source = Source::event(Origin::Identity, &event.event_id);
    match &event.payload {
        Some(Payload::EmailVerificationRequested(requested)) => {
            let user_id = parse_uuid("user id", &event.user_id)?;
            let purpose = code_purpose(requested.purpose);
            let code = match open_code(opening, &requested.sealed_code) {
                Ok(code) => code,
                Err(Unopened::Withdrawn) => {
                    tracing::info!(
                        event_id = %event.event_id,
                        user_id = %user_id,
                        purpose = ?purpose,
                        "code withdrawn by identity (used, replaced or expired) before it was mailed; no mail"
                    );
                    return Ok(());
                }
                Err(Unopened::Unreadable) => {
                    tracing::warn!(
                        event_id = %event.event_id,
                        user_id = %user_id,
                        purpose = ?purpose,
                        "the sealed code does not open with --code-opening-key-file (is identity's --code-sealing-key-file its public half?); no mail"
                    );
                    return Ok(());
                }
            };
            notifier.notify_verification(
                out,
                &source,
                &Verification {
                    user_id,
                    email: requested.email.clone(),
                    locale: requested.locale.clone(),
                    display_name: requested.display_name.clone(),
                    code,
                    expire_time: time_of(requested.expire_time.as_ref()),
                    purpose,
                },
            )?;
        }
        Some(Payload::RegistrationAttempted(attempted)) => {
            use identity_pb::RegistrationRefusal as R;
            let (kind, rule, user_id) = match R::try_from(attempted.refusal) {
                Ok(R::AddressTaken) => (
                    Kind::RegistrationAddressTaken,
                    RULE_REGISTRATION_TAKEN,
                    optional_uuid(&event.user_id),
                ),
                // The address has no account: the event's user (if any) is the account it
                // looks like, which must not be named as the recipient.
                Ok(R::AddressConfusable) => (
                    Kind::RegistrationAddressConfusable,
                    RULE_REGISTRATION_CONFUSABLE,
                    None,
                ),
                Ok(R::Unspecified) | Err(_) => {
                    tracing::warn!(
                        event_id = %event.event_id,
                        refusal = attempted.refusal,
                        "registration attempt with an unknown refusal; no mail"
                    );
                    return Ok(());
                }
            };
            let params = Params::from([("email".to_owned(), attempted.email.trim().to_owned())]);
            notifier.notify_address(
                out,
                &source,
                &AddressNotice {
                    user_id,
                    email: attempted.email.clone(),
                    locale: attempted.locale.clone(),
                    display_name: attempted.display_name.clone(),
                    kind,
                    params,
                    rule,
                },
            )?;
        }
        Some(Payload::EmailChangeRequested(requested)) => {
            let params = Params::from([(
                "new_email".to_owned(),
                requested.new_email.trim().to_owned(),
            )]);
            notifier.notify_address(
                out,
                &source,
                &AddressNotice {
                    user_id: Some(parse_uuid("user id", &event.user_id)?),
                    email: requested.email.clone(),
                    locale: requested.locale.clone(),
                    display_name: requested.display_name.clone(),
                    kind: Kind::EmailChangeRequested,
                    params,
                    rule: RULE_EMAIL_CHANGE_REQUESTED,
                },
            )?;
        }
        Some(Payload::UserRegistered(_))
        | Some(Payload::UserUpdated(_))
        | Some(Payload::UserDisabled(_))
        | Some(Payload::UserEnabled(_))
        | Some(Payload::TokensRevoked(_))
        | None => {}
    }
    Ok(())
}

/// A registry contact in the projection's terms; `None` (logged) for a role this service
/// does not know (a newer registry).
fn projected(contact: &contacts_pb::Contact) -> anyhow::Result<Option<ProjectedContact>> {
    let Some(role) = Role::from_number(contact.role) else {
        tracing::warn!(
            contact_id = %contact.contact_id,
            role = contact.role,
            "registry contact with an unknown role; ignored"
        );
        return Ok(None);
    };
    Ok(Some(ProjectedContact {
        contact_id: parse_uuid("contact id", &contact.contact_id)?,
        site_id: parse_uuid("contact site id", &contact.site_id)?,
        user_id: parse_uuid("contact user id", &contact.user_id)?,
        role,
        notification_email: contact
            .details
            .as_ref()
            .map(|details| details.notification_email.trim().to_owned())
            .unwrap_or_default(),
    }))
}

/// The users a registry event's notices go to or show: the contacts of a role change, the
/// site's primary, the two primaries of a transfer. None for events that tell nobody.
pub(crate) fn contacts_event_users(event: &contacts_pb::Event) -> Vec<Uuid> {
    use contacts_pb::event::Payload;
    let contacts: Vec<&contacts_pb::Contact> = match &event.payload {
        Some(Payload::SiteCreated(created)) => created.contacts.iter().collect(),
        Some(Payload::ContactAssigned(assigned)) => assigned.contact.iter().collect(),
        Some(Payload::ContactRemoved(removed)) => removed.contact.iter().collect(),
        Some(Payload::ContactReplaced(replaced)) => {
            replaced.contact.iter().chain(&replaced.replaced).collect()
        }
        Some(Payload::PrimaryTransferred(transfer)) => {
            return [&transfer.previous_user_id, &transfer.new_user_id]
                .into_iter()
                .filter_map(|id| optional_uuid(id))
                .collect();
        }
        // C11: the contact's own user is told (and mailed the code); not the primary.
        Some(Payload::NotificationEmailChangeRequested(requested)) => {
            return requested
                .contact
                .iter()
                .filter_map(|contact| optional_uuid(&contact.user_id))
                .collect();
        }
        // C12: every contact, the old primary, and the people the notice names.
        Some(Payload::PrimaryRecoveryRequested(changed))
        | Some(Payload::PrimaryRecoveryRefused(changed))
        | Some(Payload::PrimaryRecoveryAttested(changed)) => {
            let recovery = changed.recovery.as_ref();
            let named = recovery.into_iter().flat_map(|r| {
                [
                    &r.previous_primary_user_id,
                    &r.requester_user_id,
                    &r.decided_by_user_id,
                    &r.new_primary_user_id,
                ]
            });
            let mut users: Vec<Uuid> = named
                .chain(&changed.contact_user_ids)
                .filter_map(|id| optional_uuid(id))
                .collect();
            users.sort_unstable();
            users.dedup();
            return users;
        }
        // S&S reminders and lapses: the recipients the registry chose (R1).
        Some(Payload::SupportEnding(ending)) => {
            return renewal_recipients(&ending.recipients)
                .into_iter()
                .map(|(user, _)| user)
                .collect();
        }
        Some(Payload::SupportLapsed(lapsed)) => {
            return renewal_recipients(&lapsed.recipients)
                .into_iter()
                .map(|(user, _)| user)
                .collect();
        }
        Some(Payload::SiteUpdated(_)) | Some(Payload::ContactUpdated(_)) | None => {
            return Vec::new();
        }
    };
    let mut users: Vec<Uuid> = contacts
        .iter()
        .filter_map(|contact| optional_uuid(&contact.user_id))
        .collect();
    users.extend(
        event
            .site
            .as_ref()
            .and_then(|site| optional_uuid(&site.primary_user_id)),
    );
    users
}

/// The users an access event's notices go to or show: approvers, the requester, the user
/// whose rights changed. None for events that tell nobody.
pub(crate) fn access_event_users(event: &access_pb::Event) -> Vec<Uuid> {
    use access_pb::event::Payload;
    let texts: Vec<&String> = match &event.payload {
        Some(Payload::AccessRequestSubmitted(submitted)) => submitted
            .approver_user_ids
            .iter()
            .chain(submitted.request.as_ref().map(|r| &r.requester_user_id))
            .collect(),
        Some(Payload::AccessRequestDecided(decided)) => decided
            .request
            .iter()
            .map(|r| &r.requester_user_id)
            .collect(),
        Some(Payload::RightsChanged(changed)) => vec![&changed.user_id],
        Some(Payload::GrantEndingSoon(ending)) => vec![&ending.user_id],
        Some(Payload::DomainPolicyChanged(changed)) => changed.approver_user_ids.iter().collect(),
        Some(Payload::AccessRequestCancelled(_))
        | Some(Payload::AccessRequestExpired(_))
        | Some(Payload::PermissionChanged(_))
        | None => Vec::new(),
    };
    texts
        .into_iter()
        .filter_map(|text| optional_uuid(text))
        .collect()
}

/// The notices of a step (`kind`) of a primary recovery (C12): every contact of the site,
/// the old primary and the requester.
fn recovery_plans(
    kind: Kind,
    changed: &contacts_pb::PrimaryRecoveryChanged,
) -> anyhow::Result<Vec<Planned>> {
    let recovery = changed
        .recovery
        .as_ref()
        .context("primary recovery event without its recovery")?;
    let previous = parse_uuid("old primary user id", &recovery.previous_primary_user_id)?;
    let requester = parse_uuid("recovery requester id", &recovery.requester_user_id)?;
    let facts = Facts::Recovery {
        requester,
        previous,
        decided_by: optional_uuid(&recovery.decided_by_user_id),
        new: optional_uuid(&recovery.new_primary_user_id),
        reason: match kind {
            Kind::PrimaryRecoveryRequested => recovery.reason.clone(),
            _ => recovery.decision_reason.clone(),
        },
        recovery_id: recovery.recovery_id.clone(),
        waiting_end_time: time_of(recovery.waiting_end_time.as_ref()),
    };
    Ok(recipients::primary_recovery(
        kind,
        previous,
        requester,
        &user_ids(&changed.contact_user_ids)?,
        &facts,
    ))
}

/// The recipients of an S&S reminder or lapse as the registry chose them by the renewal
/// chain (R1): `(user, role that chose it)`; a recipient with an unreadable id is skipped
/// (logged), one with a role this service does not know reads as the chain's last, PRIMARY.
fn renewal_recipients(recipients: &[contacts_pb::Recipient]) -> Vec<(Uuid, Role)> {
    recipients
        .iter()
        .filter_map(|recipient| {
            let Some(user) = optional_uuid(&recipient.user_id) else {
                tracing::warn!("s&s notice recipient without a user id; skipped");
                return None;
            };
            Some((
                user,
                Role::from_number(recipient.role).unwrap_or(Role::Primary),
            ))
        })
        .collect()
}

/// A calendar day of the registry (`2027-03-31`); `None` when empty or unreadable.
fn day_of(text: &str) -> Option<NaiveDate> {
    text.parse().ok()
}

/// Applies one registry event: refreshes the projection, adds its notices to `out`.
///
/// Contacts that appear are stored before the notices are written and contacts that go
/// away are deleted after, so a contact losing a role is still written to at its
/// notification e-mail (C9).
pub(crate) async fn apply_contacts_event(
    conn: &mut PgConnection,
    notifier: &Notifier,
    opening: &OpeningKey,
    event: &contacts_pb::Event,
    users: &HashMap<Uuid, UserInfo>,
    out: &mut Vec<NewNotification>,
) -> anyhow::Result<()> {
    use contacts_pb::event::Payload;
    let site = event
        .site
        .as_ref()
        .context("registry event without its site")?;
    let site = Site {
        site_id: parse_uuid("site id", &site.site_id)?,
        site_number: site.site_number.clone(),
        name: site.name.clone(),
        language: site.language.clone(),
    };
    let primary = event
        .site
        .as_ref()
        .and_then(|s| optional_uuid(&s.primary_user_id));
    storage::sites::upsert(conn, &site).await?;
    let mut removed: Vec<Uuid> = Vec::new();
    let mut demoted_primary = false;
    let plans: Vec<Planned> = match &event.payload {
        Some(Payload::SiteCreated(created)) => {
            let mut holders = Vec::new();
            for contact in &created.contacts {
                if let Some(contact) = projected(contact)? {
                    storage::sites::upsert_contact(conn, &contact).await?;
                    holders.push((contact.user_id, contact.role));
                }
            }
            recipients::site_created(&holders)
        }
        Some(Payload::ContactAssigned(assigned)) => {
            match assigned
                .contact
                .as_ref()
                .map(projected)
                .transpose()?
                .flatten()
            {
                Some(contact) => {
                    storage::sites::upsert_contact(conn, &contact).await?;
                    recipients::contact_assigned(primary, contact.user_id, contact.role)
                }
                None => Vec::new(),
            }
        }
        Some(Payload::ContactUpdated(updated)) => {
            if let Some(contact) = updated
                .contact
                .as_ref()
                .map(projected)
                .transpose()?
                .flatten()
            {
                storage::sites::upsert_contact(conn, &contact).await?;
            }
            Vec::new()
        }
        Some(Payload::ContactRemoved(gone)) => {
            match gone.contact.as_ref().map(projected).transpose()?.flatten() {
                Some(contact) => {
                    removed.push(contact.contact_id);
                    recipients::contact_removed(primary, contact.user_id, contact.role)
                }
                None => Vec::new(),
            }
        }
        Some(Payload::ContactReplaced(replaced)) => {
            let new = replaced
                .contact
                .as_ref()
                .map(projected)
                .transpose()?
                .flatten();
            let old = replaced
                .replaced
                .as_ref()
                .map(projected)
                .transpose()?
                .flatten();
            if let Some(old) = &old {
                removed.push(old.contact_id);
            }
            match new {
                Some(new) => {
                    storage::sites::upsert_contact(conn, &new).await?;
                    recipients::contact_replaced(
                        primary,
                        (new.user_id, new.role),
                        old.map(|old| (old.user_id, old.role)),
                    )
                }
                None => Vec::new(),
            }
        }
        Some(Payload::PrimaryTransferred(transfer)) => {
            let previous = parse_uuid("previous primary user id", &transfer.previous_user_id)?;
            let new = parse_uuid("new primary user id", &transfer.new_user_id)?;
            for contact in [&transfer.primary, &transfer.previous_primary]
                .into_iter()
                .flatten()
            {
                if let Some(contact) = projected(contact)? {
                    storage::sites::upsert_contact(conn, &contact).await?;
                }
            }
            demoted_primary = true;
            recipients::primary_transferred(previous, new)
        }
        Some(Payload::NotificationEmailChangeRequested(requested)) => {
            let Some(contact) = requested
                .contact
                .as_ref()
                .map(projected)
                .transpose()?
                .flatten()
            else {
                return Ok(());
            };
            // The confirmed address (cleared at once by a request without a new one); the
            // address asked for is never projected before its confirmation (C11).
            storage::sites::upsert_contact(conn, &contact).await?;
            let code = match open_code(opening, &requested.sealed_code) {
                Ok(code) => Some(code),
                Err(Unopened::Withdrawn) => None,
                Err(Unopened::Unreadable) => {
                    tracing::warn!(
                        event_id = %event.event_id,
                        user_id = %contact.user_id,
                        "the sealed notification e-mail code does not open with --code-opening-key-file (is the registry's --code-sealing-key-file its public half?); no code mail"
                    );
                    None
                }
            };
            let requested_email = Some(requested.requested_email.trim())
                .filter(|email| !email.is_empty())
                .map(str::to_owned);
            let change = NotificationEmailChange {
                user_id: contact.user_id,
                role: contact.role,
                requested_email,
                code,
                expire_time: time_of(requested.expire_time.as_ref()),
            };
            let source = Source::event(Origin::Contacts, &event.event_id);
            notifier.notify_notification_email_change(
                out,
                &source,
                &site,
                &change,
                users.get(&contact.user_id),
            )?;
            return Ok(());
        }
        Some(Payload::PrimaryRecoveryRequested(changed)) => {
            recovery_plans(Kind::PrimaryRecoveryRequested, changed)?
        }
        Some(Payload::PrimaryRecoveryRefused(changed)) => {
            recovery_plans(Kind::PrimaryRecoveryRefused, changed)?
        }
        Some(Payload::PrimaryRecoveryAttested(changed)) => {
            recovery_plans(Kind::PrimaryRecoveryAttested, changed)?
        }
        // S&S ends soon or lapsed (the site's new state was refreshed above): the renewal
        // chain the registry resolved (R1).
        Some(Payload::SupportEnding(ending)) => recipients::renewal_chain(
            &renewal_recipients(&ending.recipients),
            Kind::SupportEnding,
            &Facts::Support {
                end_date: day_of(&ending.support_end_date),
                milestone_days: Some(ending.milestone_days),
            },
        ),
        Some(Payload::SupportLapsed(lapsed)) => recipients::renewal_chain(
            &renewal_recipients(&lapsed.recipients),
            Kind::SupportLapsed,
            &Facts::Support {
                end_date: day_of(&lapsed.support_end_date),
                milestone_days: None,
            },
        ),
        // The site itself was refreshed above; a payload from a newer registry is left to
        // that refresh.
        Some(Payload::SiteUpdated(_)) | None => Vec::new(),
    };
    let source = Source::event(Origin::Contacts, &event.event_id);
    notifier
        .notify_users(conn, out, &source, &site, plans, users)
        .await?;
    for contact_id in removed {
        storage::sites::delete_contact(conn, contact_id).await?;
    }
    if demoted_primary && let Some(primary) = primary {
        storage::sites::delete_role_holders_except(conn, site.site_id, Role::Primary, primary)
            .await?;
    }
    Ok(())
}

/// The levels of a `ToolAccess` and a support level, in [`Right::ALL`]'s order, by
/// access management's numbers (0, UNSPECIFIED, reads as the lowest level).
fn level_numbers(tools: Option<&access_pb::ToolAccess>, support: i32) -> [i32; 8] {
    let t = tools.cloned().unwrap_or_default();
    [
        t.software,
        t.reporting,
        t.entitlements,
        t.account_management,
        t.manage_access,
        t.contact_updates,
        t.account_documents,
        support,
    ]
    .map(|number| number.max(1))
}

/// Levels above the lowest, for a grant: `(right, level)`.
fn granted_levels(tools: Option<&access_pb::ToolAccess>, support: i32) -> Vec<(Right, Level)> {
    Right::ALL
        .into_iter()
        .zip(level_numbers(tools, support))
        .filter(|(_, number)| *number > 1)
        .filter_map(|(right, number)| right.level(number).map(|level| (right, level)))
        .collect()
}

/// The explicit levels above the lowest of a profile: `(right, level)` (T9: what ends).
fn explicit_levels(profile: Option<&access_pb::AccessProfile>) -> Vec<(Right, Level)> {
    granted_levels(
        profile.and_then(|p| p.explicit.as_ref()),
        profile.map_or(0, |p| p.explicit_support_level),
    )
}

/// The explicit levels that changed between two profiles: `(right, before, after)`.
fn changed_levels(
    before: Option<&access_pb::AccessProfile>,
    after: Option<&access_pb::AccessProfile>,
) -> Vec<(Right, Level, Level)> {
    let numbers = |profile: Option<&access_pb::AccessProfile>| {
        level_numbers(
            profile.and_then(|p| p.explicit.as_ref()),
            profile.map_or(0, |p| p.explicit_support_level),
        )
    };
    Right::ALL
        .into_iter()
        .zip(numbers(before).into_iter().zip(numbers(after)))
        .filter(|(_, (b, a))| b != a)
        .filter_map(|(right, (b, a))| Some((right, right.level(b)?, right.level(a)?)))
        .collect()
}

fn request_kind(number: i32) -> Option<RequestKind> {
    match number {
        1 => Some(RequestKind::SiteAccess),
        2 => Some(RequestKind::SupportAccess),
        _ => None,
    }
}

fn user_ids(texts: &[String]) -> anyhow::Result<Vec<Uuid>> {
    texts
        .iter()
        .map(|text| parse_uuid("user id", text))
        .collect()
}

/// Applies one access event: adds its notices to `out`. Fails (the consumer retries) while the
/// registry's stream has not brought the site yet.
pub(crate) async fn apply_access_event(
    conn: &mut PgConnection,
    notifier: &Notifier,
    event: &access_pb::Event,
    users: &HashMap<Uuid, UserInfo>,
    out: &mut Vec<NewNotification>,
) -> anyhow::Result<()> {
    use access_pb::event::Payload;
    let plans: Vec<Planned> = match &event.payload {
        Some(Payload::AccessRequestSubmitted(submitted)) => {
            let request = submitted
                .request
                .as_ref()
                .context("submitted request without its request")?;
            let facts = Facts::RequestSubmitted {
                requester: parse_uuid("requester id", &request.requester_user_id)?,
                request_kind: request_kind(request.kind),
                justification: request.justification.clone(),
                request_id: request.request_id.clone(),
                expire_time: time_of(request.expire_time.as_ref()),
            };
            recipients::each(
                &user_ids(&submitted.approver_user_ids)?,
                Kind::AccessRequestSubmitted,
                RULE_APPROVER,
                &facts,
            )
        }
        Some(Payload::AccessRequestDecided(decided)) => {
            let request = decided
                .request
                .as_ref()
                .context("decided request without its request")?;
            let decision = match request.state {
                2 => Some(Decision::Approved),
                3 => Some(Decision::Rejected),
                _ => None,
            };
            let granted = if decision == Some(Decision::Approved) {
                granted_levels(
                    request.granted_tools.as_ref(),
                    request.granted_support_level,
                )
            } else {
                Vec::new()
            };
            let facts = Facts::RequestDecided {
                decision,
                reason: request.decision_reason.clone(),
                granted,
                request_id: request.request_id.clone(),
            };
            recipients::each(
                &[parse_uuid("requester id", &request.requester_user_id)?],
                Kind::AccessRequestDecided,
                RULE_REQUESTER,
                &facts,
            )
        }
        Some(Payload::RightsChanged(changed)) if changed.ended => {
            let before = changed.before.as_ref();
            let facts = Facts::RightsEnding {
                levels: explicit_levels(before),
                end_time: time_of(before.and_then(|p| p.valid_until.as_ref())),
            };
            recipients::each(
                &[parse_uuid("user id", &changed.user_id)?],
                Kind::RightsEnded,
                RULE_RIGHTS_END,
                &facts,
            )
        }
        Some(Payload::GrantEndingSoon(ending)) => {
            let facts = Facts::RightsEnding {
                levels: explicit_levels(ending.profile.as_ref()),
                end_time: time_of(ending.valid_until.as_ref()),
            };
            recipients::each(
                &[parse_uuid("user id", &ending.user_id)?],
                Kind::RightsEndingSoon,
                RULE_RIGHTS_END,
                &facts,
            )
        }
        // The first rights of a person just added to the site (AddSiteUser): its welcome,
        // listing the site and the rights granted, instead of a change notice.
        Some(Payload::RightsChanged(changed)) if changed.welcome => {
            let facts = Facts::Welcome {
                levels: explicit_levels(changed.after.as_ref()),
                reason: changed.reason.clone(),
            };
            recipients::each(
                &[parse_uuid("user id", &changed.user_id)?],
                Kind::SiteUserWelcome,
                RULE_RIGHTS,
                &facts,
            )
        }
        Some(Payload::RightsChanged(changed)) => {
            let facts = Facts::RightsChanged {
                changes: changed_levels(changed.before.as_ref(), changed.after.as_ref()),
                reason: changed.reason.clone(),
            };
            recipients::each(
                &[parse_uuid("user id", &changed.user_id)?],
                Kind::RightsChanged,
                RULE_RIGHTS,
                &facts,
            )
        }
        Some(Payload::DomainPolicyChanged(changed)) => {
            let after = changed.after.as_ref();
            let facts = Facts::DomainPolicy {
                domain: after.map(|p| p.domain.clone()).unwrap_or_default(),
                mode: match after.map_or(0, |p| p.policy) {
                    1 => Some(PolicyMode::Manual),
                    2 => Some(PolicyMode::AutoPending),
                    3 => Some(PolicyMode::AutoApprove),
                    _ => None,
                },
            };
            recipients::each(
                &user_ids(&changed.approver_user_ids)?,
                Kind::DomainPolicyChanged,
                RULE_POLICY_APPROVER,
                &facts,
            )
        }
        // Unknown payloads come from a newer access management. Cancelled and expired
        // requests tell nobody, nor does the feed of effective permissions (served by
        // WatchPermissionChanges only; the RightsChanged of the same change tells the user).
        Some(Payload::AccessRequestCancelled(_))
        | Some(Payload::AccessRequestExpired(_))
        | Some(Payload::PermissionChanged(_))
        | None => {
            return Ok(());
        }
    };
    if plans.is_empty() {
        return Ok(());
    }
    let site_id = parse_uuid("site id", &event.site_id)?;
    let site = storage::sites::get(&mut *conn, site_id).await?.with_context(|| {
        format!("site {site_id} is not in the projection yet (the registry's stream brings it); retrying")
    })?;
    let source = Source::event(Origin::Access, &event.event_id);
    notifier
        .notify_users(conn, out, &source, &site, plans, users)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory whose identity cannot be reached (nothing listens on port 9).
    fn unreachable_directory() -> Directory {
        let channel =
            kc_runtime::client::channel("identity", "http://127.0.0.1:9").expect("channel");
        let token = ServiceToken::new(
            channel.clone(),
            kc_runtime::client::ServiceAccountArgs {
                client_id: "notification-test".into(),
                client_secret: "not-a-secret".into(),
            },
        );
        Directory::new(token, channel.clone(), channel)
    }

    /// What [`prepare`] makes of `items`, with an identity nobody can reach.
    async fn prepare_all(
        items: Vec<Result<(String, u32), Status>>,
        named: fn(&u32) -> Vec<Uuid>,
    ) -> Vec<Result<(String, Prepared<u32>), Status>> {
        prepare(futures::stream::iter(items), unreachable_directory(), named)
            .collect()
            .await
    }

    #[tokio::test]
    async fn prepared_events_keep_their_order_and_a_failure_ends_them() {
        let names_nobody: fn(&u32) -> Vec<Uuid> = |_| Vec::new();
        let items = vec![
            Ok(("1".to_owned(), 1)),
            Ok(("2".to_owned(), 2)),
            Err(Status::data_loss("the stream broke")),
            Ok(("4".to_owned(), 4)),
        ];
        let seen: Vec<Result<u32, tonic::Code>> = prepare_all(items, names_nobody)
            .await
            .into_iter()
            .map(|item| {
                item.map(|(_, prepared)| prepared.event)
                    .map_err(|status| status.code())
            })
            .collect();
        assert_eq!(
            seen,
            [Ok(1), Ok(2), Err(tonic::Code::DataLoss)],
            "the events before the failure, in order, then the failure"
        );

        // A lookup that fails fails the stream at its first event: nothing is applied
        // without the users it names.
        let names_one: fn(&u32) -> Vec<Uuid> = |_| vec![Uuid::nil()];
        let items = vec![Ok(("1".to_owned(), 1)), Ok(("2".to_owned(), 2))];
        let prepared = prepare_all(items, names_one).await;
        assert_eq!(prepared.len(), 1, "one failure, no event");
        assert!(matches!(&prepared[0], Err(status) if status.code() == tonic::Code::Unavailable));
    }

    #[test]
    fn levels_of_grants_and_changes() {
        let tools = access_pb::ToolAccess {
            reporting: 2,
            software: 1,
            ..Default::default()
        };
        assert_eq!(
            granted_levels(Some(&tools), 3),
            [
                (Right::Reporting, Level::View),
                (Right::Support, Level::Full)
            ]
        );
        let before = access_pb::AccessProfile {
            explicit: Some(access_pb::ToolAccess {
                reporting: 1,
                ..Default::default()
            }),
            explicit_support_level: 2,
            ..Default::default()
        };
        let after = access_pb::AccessProfile {
            explicit: Some(tools),
            explicit_support_level: 2,
            ..Default::default()
        };
        assert_eq!(
            changed_levels(Some(&before), Some(&after)),
            [(Right::Reporting, Level::None, Level::View)]
        );
        // rule T9: what ends is every explicit level above the lowest.
        assert_eq!(
            explicit_levels(Some(&after)),
            [
                (Right::Reporting, Level::View),
                (Right::Support, Level::Basic)
            ]
        );
        assert!(explicit_levels(None).is_empty());
        assert_eq!(
            changed_levels(None, Some(&after)),
            [
                (Right::Reporting, Level::None, Level::View),
                (Right::Support, Level::NoAccess, Level::Basic)
            ]
        );
    }

    #[test]
    fn events_name_their_users() {
        use access_pb::event::Payload as AccessPayload;
        use contacts_pb::event::Payload as ContactsPayload;
        let (a, b, c) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        let contact = |user: Uuid| contacts_pb::Contact {
            user_id: user.to_string(),
            ..Default::default()
        };
        let event = contacts_pb::Event {
            site: Some(contacts_pb::Site {
                primary_user_id: c.to_string(),
                ..Default::default()
            }),
            payload: Some(ContactsPayload::ContactReplaced(
                contacts_pb::ContactReplaced {
                    contact: Some(contact(a)),
                    replaced: Some(contact(b)),
                },
            )),
            ..Default::default()
        };
        assert_eq!(contacts_event_users(&event), [a, b, c]);
        let updated = contacts_pb::Event {
            payload: Some(ContactsPayload::ContactUpdated(
                contacts_pb::ContactUpdated {
                    contact: Some(contact(a)),
                },
            )),
            ..Default::default()
        };
        assert!(contacts_event_users(&updated).is_empty());
        let submitted = access_pb::Event {
            payload: Some(AccessPayload::AccessRequestSubmitted(
                access_pb::AccessRequestSubmitted {
                    request: Some(access_pb::AccessRequest {
                        requester_user_id: c.to_string(),
                        ..Default::default()
                    }),
                    approver_user_ids: vec![a.to_string(), b.to_string()],
                },
            )),
            ..Default::default()
        };
        assert_eq!(access_event_users(&submitted), [a, b, c]);
        // rule T9: the user whose grant ends is told, before and at the end.
        let ending = access_pb::Event {
            payload: Some(AccessPayload::GrantEndingSoon(access_pb::GrantEndingSoon {
                user_id: b.to_string(),
                ..Default::default()
            })),
            ..Default::default()
        };
        assert_eq!(access_event_users(&ending), [b]);
        let cancelled = access_pb::Event {
            payload: Some(AccessPayload::AccessRequestCancelled(
                access_pb::AccessRequestCancelled::default(),
            )),
            ..Default::default()
        };
        assert!(access_event_users(&cancelled).is_empty());
    }

    #[test]
    fn sealed_codes_open_only_when_present_readable_and_well_formed() {
        let opening = OpeningKey::generate().unwrap();
        let sealing = opening.sealing_key();
        let other = OpeningKey::generate().unwrap();
        assert_eq!(
            open_code(&opening, &sealing.seal(b"042917").unwrap()).as_deref(),
            Ok("042917")
        );
        assert_eq!(
            open_code(
                &opening,
                &sealing.seal(b"7KQ2-M9XD-4HTV-0PWR-B3CE").unwrap()
            )
            .as_deref(),
            Ok("7KQ2-M9XD-4HTV-0PWR-B3CE"),
            "a long code"
        );
        // identity emptied it: used, replaced or expired before it was mailed
        assert_eq!(open_code(&opening, &[]), Err(Unopened::Withdrawn));
        // sealed to another key, or altered
        let sealed = other.sealing_key().seal(b"123456").unwrap();
        assert_eq!(open_code(&opening, &sealed), Err(Unopened::Unreadable));
        let mut altered = sealing.seal(b"123456").unwrap();
        *altered.last_mut().unwrap() ^= 1;
        assert_eq!(open_code(&opening, &altered), Err(Unopened::Unreadable));
        // opens, but is not a code: nothing of it goes into a mail
        for not_a_code in [
            &b""[..],
            b"12 34",
            b"<b>1</b>",
            b"123456\r\nBcc: x@y",
            &[0xff, 0xfe],
            "9".repeat(65).as_bytes(),
        ] {
            let sealed = sealing.seal(not_a_code).unwrap();
            assert_eq!(
                open_code(&opening, &sealed),
                Err(Unopened::Unreadable),
                "{not_a_code:?}"
            );
        }
    }

    #[test]
    fn a_verification_never_shows_its_code() {
        let verification = Verification {
            user_id: Uuid::from_u128(7),
            email: "a@example.com".into(),
            locale: "fr".into(),
            display_name: "A".into(),
            code: "042917".into(),
            expire_time: None,
            purpose: CodePurpose::PasswordReset,
        };
        let shown = format!("{verification:?} {verification:#?}");
        assert!(!shown.contains("042917"), "{shown}");
        assert!(!shown.contains("a@example.com"), "{shown}");
    }

    #[test]
    fn purposes_choose_the_mail() {
        use identity_pb::VerificationPurpose as P;
        assert_eq!(
            code_purpose(P::Registration as i32).kind(),
            Kind::EmailVerification
        );
        assert_eq!(code_purpose(P::Invitation as i32).kind(), Kind::Invitation);
        assert_eq!(
            code_purpose(P::PasswordReset as i32).kind(),
            Kind::PasswordReset
        );
        assert_eq!(
            code_purpose(P::EmailChange as i32).kind(),
            Kind::EmailChangeVerification
        );
        assert_eq!(code_purpose(0), CodePurpose::Registration);
        assert_eq!(code_purpose(99), CodePurpose::Registration);
    }

    #[test]
    fn timestamps() {
        let time = time_of(Some(&prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 5,
        }))
        .unwrap();
        assert_eq!(time.timestamp(), 1_700_000_000);
        assert_eq!(time_of(None), None);
    }
}
