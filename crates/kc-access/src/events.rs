//! Access management's events, as published on the outbox and served by `WatchEvents`.
//!
//! The outbox payload is a prost-encoded `Event` without its position fields;
//! [`kc_runtime::outbox::decode_response`] fills in cursor, event id and time from the
//! outbox row. Events carry what their consumers (notification first) need so they never
//! call back: the request with its requester, the approvers to tell (A3), the profiles
//! before and after a change of rights. The published forms of requests, profiles and
//! policies are the API's, from [`crate::convert`].

use chrono::{DateTime, Utc};
use kc_proto::access::{self as pb, event::Payload};
use kc_runtime::outbox::{Cursor, EncodedEvent};
use kc_runtime::values::timestamp;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::{AccessRequest, Actor, Decision, DomainPolicy, Permission, Profile, Site};

/// An event ready to append.
pub(crate) type PendingEvent = EncodedEvent;

fn event(
    event_type: &'static str,
    actor: Option<Actor>,
    site_id: Uuid,
    site_number: &str,
    payload: Payload,
) -> PendingEvent {
    let event = pb::Event {
        actor_id: actor
            .map(|actor| actor.actor_id.to_string())
            .unwrap_or_default(),
        site_id: site_id.to_string(),
        site_number: site_number.to_owned(),
        payload: Some(payload),
        ..Default::default()
    };
    EncodedEvent::new(event_type, site_id.to_string(), &event)
}

fn ids(user_ids: &[Uuid]) -> Vec<String> {
    user_ids.iter().map(Uuid::to_string).collect()
}

/// A request was submitted; `approvers` are told (A3).
pub(crate) fn access_request_submitted(
    actor: Option<Actor>,
    request: &AccessRequest,
    approvers: &[Uuid],
) -> PendingEvent {
    event(
        "request.submitted",
        actor,
        request.site_id,
        &request.site_number,
        Payload::AccessRequestSubmitted(pb::AccessRequestSubmitted {
            request: Some(request.into()),
            approver_user_ids: ids(approvers),
        }),
    )
}

/// A request was approved or rejected; its requester is told (A2). `actor` is `None` when
/// a domain policy approved it (A7).
pub(crate) fn access_request_decided(
    actor: Option<Actor>,
    request: &AccessRequest,
) -> PendingEvent {
    event(
        "request.decided",
        actor,
        request.site_id,
        &request.site_number,
        Payload::AccessRequestDecided(pb::AccessRequestDecided {
            request: Some(request.into()),
        }),
    )
}

/// A request was cancelled by its requester.
pub(crate) fn access_request_cancelled(
    actor: Option<Actor>,
    request: &AccessRequest,
) -> PendingEvent {
    event(
        "request.cancelled",
        actor,
        request.site_id,
        &request.site_number,
        Payload::AccessRequestCancelled(pb::AccessRequestCancelled {
            request: Some(request.into()),
        }),
    )
}

/// A request expired (A6); the service itself did it.
pub(crate) fn access_request_expired(request: &AccessRequest) -> PendingEvent {
    event(
        "request.expired",
        None,
        request.site_id,
        &request.site_number,
        Payload::AccessRequestExpired(pb::AccessRequestExpired {
            request: Some(request.into()),
        }),
    )
}

/// The `rights.changed` event telling `after`'s user that its rights went from `before` to
/// `after` for `reason`; `rest` holds the other fields (the request, `ended`, `welcome`).
fn rights_event(
    actor: Option<Actor>,
    before: &Profile,
    after: &Profile,
    reason: &str,
    rest: pb::RightsChanged,
) -> PendingEvent {
    event(
        "rights.changed",
        actor,
        after.site_id,
        &after.site_number,
        Payload::RightsChanged(pb::RightsChanged {
            user_id: after.user_id.to_string(),
            before: Some(before.into()),
            after: Some(after.into()),
            reason: reason.to_owned(),
            ..rest
        }),
    )
}

/// A user's explicit rights changed (T5); that user is told.
pub(crate) fn rights_changed(
    actor: Option<Actor>,
    before: &Profile,
    after: &Profile,
    reason: &str,
    request_id: Option<Uuid>,
) -> PendingEvent {
    let rest = pb::RightsChanged {
        request_id: request_id.map(|id| id.to_string()).unwrap_or_default(),
        ..Default::default()
    };
    rights_event(actor, before, after, reason, rest)
}

/// A person just added to the site received its first rights (SetUserAccess `welcome`, the
/// gateway's AddSiteUser); that user is welcomed, with the site and the rights granted.
pub(crate) fn site_user_welcomed(
    actor: Actor,
    before: &Profile,
    after: &Profile,
    reason: &str,
) -> PendingEvent {
    let rest = pb::RightsChanged {
        welcome: true,
        ..Default::default()
    };
    rights_event(Some(actor), before, after, reason, rest)
}

/// A user's explicit grants reached their end and the service removed them (T9); that user
/// is told. `before` shows the grants and their end.
pub(crate) fn grant_ended(before: &Profile, after: &Profile, reason: &str) -> PendingEvent {
    let rest = pb::RightsChanged {
        ended: true,
        ..Default::default()
    };
    rights_event(None, before, after, reason, rest)
}

/// A user's explicit grants end within the notice window (T9); that user is told, once per
/// end.
pub(crate) fn grant_ending_soon(profile: &Profile, valid_until: DateTime<Utc>) -> PendingEvent {
    event(
        "grant.ending_soon",
        None,
        profile.site_id,
        &profile.site_number,
        Payload::GrantEndingSoon(pb::GrantEndingSoon {
            user_id: profile.user_id.to_string(),
            profile: Some(profile.into()),
            valid_until: Some(timestamp(valid_until)),
        }),
    )
}

/// The type of the events of the permission feed: served by `WatchPermissionChanges`, left
/// out of `WatchEvents`.
pub(crate) const PERMISSION_CHANGED: &str = "permission.changed";

/// One effective permission of a user on a site flipped (the permission feed); `decision` is
/// the check of it now.
pub(crate) fn permission_changed(
    site_id: Uuid,
    site_number: &str,
    user_id: Uuid,
    permission: Permission,
    decision: &Decision,
) -> PendingEvent {
    event(
        PERMISSION_CHANGED,
        None,
        site_id,
        site_number,
        Payload::PermissionChanged(pb::PermissionChanged {
            user_id: user_id.to_string(),
            permission: permission.number(),
            allowed: decision.allowed,
            reason: decision.reason.clone(),
            rule: decision.rule.to_owned(),
        }),
    )
}

/// A domain policy was created or changed; the site's approvers are told (A7).
pub(crate) fn domain_policy_changed(
    actor: Option<Actor>,
    site: &Site,
    before: Option<&DomainPolicy>,
    after: &DomainPolicy,
    approvers: &[Uuid],
) -> PendingEvent {
    event(
        "domain_policy.changed",
        actor,
        site.site_id,
        &site.site_number,
        Payload::DomainPolicyChanged(pb::DomainPolicyChanged {
            before: before.map(pb::DomainPolicy::from),
            after: Some(after.into()),
            approver_user_ids: ids(approvers),
        }),
    )
}

/// Appends `event` in the caller's transaction; returns its cursor in the stream once the
/// transaction commits (the revision of the change that appended it, T8).
pub(crate) async fn append(
    conn: &mut PgConnection,
    event: &PendingEvent,
) -> Result<Cursor, sqlx::Error> {
    event.append_revision(conn).await
}
