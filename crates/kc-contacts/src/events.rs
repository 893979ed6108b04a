//! The registry's events, as published on the outbox and served by `WatchEvents`.
//!
//! The outbox payload is a prost-encoded `Event` without its position fields;
//! [`kc_runtime::outbox::decode_response`] fills in cursor, event id and time from the
//! outbox row. Every event carries the site as it is after the change (site and customer
//! numbers, language, the C3 switch, the primary), so consumers never have to call back.
//!
//! A code mailed to a new notification e-mail (C11) travels only sealed to notification's
//! key, and [`drop_sealed_code`] rewrites its event once the code is over. The proto forms
//! of sites and contacts are [`crate::convert`]'s.

use chrono::{DateTime, NaiveDate, Utc};
use kc_proto::contacts::{self as pb, event::Payload};
use kc_runtime::outbox::{self, Cursor, EncodedEvent};
use kc_runtime::values::timestamp;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::commands::Actor;
use crate::domain::recipients::Recipient;
use crate::domain::{Contact, Site};

/// An event ready to append.
pub(crate) type PendingEvent = EncodedEvent;

fn event(event_type: &'static str, actor: Actor, site: &Site, payload: Payload) -> PendingEvent {
    let event = pb::Event {
        actor_id: actor.actor_id.to_string(),
        site: Some(pb::Site::from(site)),
        payload: Some(payload),
        ..Default::default()
    };
    EncodedEvent::new(event_type, site.site_id.to_string(), &event)
}

/// A site was created with these contacts.
pub(crate) fn site_created(actor: Actor, site: &Site, contacts: &[Contact]) -> PendingEvent {
    event(
        "site.created",
        actor,
        site,
        Payload::SiteCreated(pb::SiteCreated {
            contacts: contacts.iter().map(pb::Contact::from).collect(),
        }),
    )
}

/// A site changed; `before` is how it was.
pub(crate) fn site_updated(actor: Actor, site: &Site, before: &Site) -> PendingEvent {
    event(
        "site.updated",
        actor,
        site,
        Payload::SiteUpdated(pb::SiteUpdated {
            before: Some(pb::Site::from(before)),
        }),
    )
}

/// A role was given.
pub(crate) fn contact_assigned(actor: Actor, site: &Site, contact: &Contact) -> PendingEvent {
    event(
        "contact.assigned",
        actor,
        site,
        Payload::ContactAssigned(pb::ContactAssigned {
            contact: Some(pb::Contact::from(contact)),
        }),
    )
}

/// A contact's details changed.
pub(crate) fn contact_updated(actor: Actor, site: &Site, contact: &Contact) -> PendingEvent {
    event(
        "contact.updated",
        actor,
        site,
        Payload::ContactUpdated(pb::ContactUpdated {
            contact: Some(pb::Contact::from(contact)),
        }),
    )
}

/// A role was taken away.
pub(crate) fn contact_removed(actor: Actor, site: &Site, contact: &Contact) -> PendingEvent {
    event(
        "contact.removed",
        actor,
        site,
        Payload::ContactRemoved(pb::ContactRemoved {
            contact: Some(pb::Contact::from(contact)),
        }),
    )
}

/// A single-holder role changed holder.
pub(crate) fn contact_replaced(
    actor: Actor,
    site: &Site,
    contact: &Contact,
    replaced: Option<&Contact>,
) -> PendingEvent {
    event(
        "contact.replaced",
        actor,
        site,
        Payload::ContactReplaced(pb::ContactReplaced {
            contact: Some(pb::Contact::from(contact)),
            replaced: replaced.map(pb::Contact::from),
        }),
    )
}

/// The primary contact changed (C8).
pub(crate) fn primary_transferred(
    actor: Actor,
    site: &Site,
    previous_user_id: Uuid,
    primary: &Contact,
    previous_primary: Option<&Contact>,
) -> PendingEvent {
    event(
        "primary.transferred",
        actor,
        site,
        Payload::PrimaryTransferred(pb::PrimaryTransferred {
            previous_user_id: previous_user_id.to_string(),
            new_user_id: primary.user_id.to_string(),
            primary: Some(pb::Contact::from(primary)),
            previous_primary: previous_primary.map(pb::Contact::from),
        }),
    )
}

/// An event of a change the registry makes itself (no actor: `actor_id` is empty).
fn system_event(event_type: &'static str, site: &Site, payload: Payload) -> PendingEvent {
    let event = pb::Event {
        site: Some(pb::Site::from(site)),
        payload: Some(payload),
        ..Default::default()
    };
    EncodedEvent::new(event_type, site.site_id.to_string(), &event)
}

/// A renewal reminder of `site`'s S&S ending on `end` is due at `milestone_days` before it,
/// `days_left` days ahead, for `recipients` (R1).
pub(crate) fn support_ending(
    site: &Site,
    end: NaiveDate,
    milestone_days: u16,
    days_left: i64,
    recipients: &[Recipient],
) -> PendingEvent {
    system_event(
        "support.ending",
        site,
        Payload::SupportEnding(pb::SupportEnding {
            support_end_date: end.to_string(),
            milestone_days: i32::from(milestone_days),
            days_left: i32::try_from(days_left).unwrap_or(i32::MAX),
            recipients: recipients.iter().map(pb::Recipient::from).collect(),
        }),
    )
}

/// `site`'s S&S lapsed after its last day `end`; `recipients` are told (R1).
pub(crate) fn support_lapsed(
    site: &Site,
    end: NaiveDate,
    recipients: &[Recipient],
) -> PendingEvent {
    system_event(
        "support.lapsed",
        site,
        Payload::SupportLapsed(pb::SupportLapsed {
            support_end_date: end.to_string(),
            recipients: recipients.iter().map(pb::Recipient::from).collect(),
        }),
    )
}

/// A step of a primary recovery (C12), each its own event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RecoveryStep {
    /// Asked.
    Requested,
    /// Refused.
    Refused,
    /// Attested.
    Attested,
}

/// A step of a primary recovery (C12), with the users holding a role on the site, who are
/// told with the old primary. `recovery` is in its state at its last change (the domain's
/// recovery converts into it).
pub(crate) fn primary_recovery(
    step: RecoveryStep,
    actor: Actor,
    site: &Site,
    recovery: impl Into<pb::PrimaryRecovery>,
    contact_users: &[Uuid],
) -> PendingEvent {
    let changed = pb::PrimaryRecoveryChanged {
        recovery: Some(recovery.into()),
        contact_user_ids: contact_users.iter().map(Uuid::to_string).collect(),
    };
    let (event_type, payload) = match step {
        RecoveryStep::Requested => (
            "primary_recovery.requested",
            Payload::PrimaryRecoveryRequested(changed),
        ),
        RecoveryStep::Refused => (
            "primary_recovery.refused",
            Payload::PrimaryRecoveryRefused(changed),
        ),
        RecoveryStep::Attested => (
            "primary_recovery.attested",
            Payload::PrimaryRecoveryAttested(changed),
        ),
    };
    event(event_type, actor, site, payload)
}

/// Type of the events that carry a sealed code.
pub(crate) const NOTIFICATION_EMAIL_CHANGE_REQUESTED: &str =
    "contact.notification_email_change_requested";

/// A change of a contact's notification e-mail was asked (C11): `requested` waits for its
/// owner's confirmation with the code sealed in `sealed_code` (`None` and no code when the
/// notification e-mail was cleared); `previous` was in use.
pub(crate) fn notification_email_change_requested(
    actor: Actor,
    site: &Site,
    contact: &Contact,
    requested: Option<&str>,
    previous: Option<&str>,
    sealed_code: Vec<u8>,
    expire_time: Option<DateTime<Utc>>,
) -> PendingEvent {
    event(
        NOTIFICATION_EMAIL_CHANGE_REQUESTED,
        actor,
        site,
        Payload::NotificationEmailChangeRequested(pb::NotificationEmailChangeRequested {
            contact: Some(pb::Contact::from(contact)),
            requested_email: requested.unwrap_or_default().to_owned(),
            previous_email: previous.unwrap_or_default().to_owned(),
            sealed_code,
            expire_time: expire_time.map(timestamp),
        }),
    )
}

/// A contact's pending notification e-mail was confirmed by its owner and is now in use.
pub(crate) fn notification_email_confirmed(
    actor: Actor,
    site: &Site,
    contact: &Contact,
) -> PendingEvent {
    event(
        "contact.notification_email_confirmed",
        actor,
        site,
        Payload::ContactUpdated(pb::ContactUpdated {
            contact: Some(pb::Contact::from(contact)),
        }),
    )
}

/// Empties the sealed code of the outbox event `event_id` (its code was used, replaced,
/// withdrawn or expired), so that nothing readable of it remains in the stream.
pub(crate) async fn drop_sealed_code(
    conn: &mut PgConnection,
    event_id: Uuid,
) -> Result<(), sqlx::Error> {
    outbox::rewrite_event::<pb::Event>(conn, event_id, |event| match &mut event.payload {
        Some(Payload::NotificationEmailChangeRequested(requested))
            if !requested.sealed_code.is_empty() =>
        {
            requested.sealed_code.clear();
            true
        }
        _ => false,
    })
    .await
}

/// Appends `event` in the caller's transaction; returns its cursor, the revision of the
/// change (T8).
pub(crate) async fn append(
    conn: &mut PgConnection,
    event: &PendingEvent,
) -> Result<Cursor, sqlx::Error> {
    event.append_revision(conn).await
}
