//! Every proto <-> domain conversion of the notification API: requests are parsed into the
//! commands of [`crate::domain::commands`], reporting every bad field in one pass, and
//! notifications are turned into their published form.

use chrono::{DateTime, Utc};
use kc_proto::notification as pb;
use kc_runtime::grpc::next_page_token;
use kc_runtime::paging::{Page, decode_token, page_size};
use kc_runtime::values::{parse_id, timestamp};
use kc_runtime::{ApiError, Violation, Violations};
use uuid::Uuid;

use crate::domain::commands::{ListQuery, NoticeRequest, NotificationRef, PreviewRequest};
use crate::domain::params::{self, Params, Use};
use crate::domain::{Kind, Lang, ListFilter, Notification, Rendered, SentNotice, State};

/// Default and largest page sizes of ListNotifications.
const LIST_PAGE: (u32, u32) = (100, 1000);

/// A kind field: any known kind.
fn any_kind(number: i32) -> Result<Kind, Violation> {
    Kind::from_number(number).ok_or_else(|| Violation::new("kind", "must be a NOTICE_KIND_* value"))
}

/// A kind field of SendNotice: the kinds callers send.
fn notice_kind(number: i32) -> Result<Kind, Violation> {
    Kind::from_number(number)
        .filter(|kind| kind.is_notice())
        .ok_or_else(|| {
            Violation::new(
                "kind",
                "must be one of NOTICE_KIND_CONTRACT_CHANGE to NOTICE_KIND_TECHNICAL \
                 (the other kinds come from event streams)",
            )
        })
}

/// A state filter: unset (0) means any state.
fn state_filter(number: i32) -> Result<Option<State>, Violation> {
    match number {
        0 => Ok(None),
        number => State::from_number(number)
            .map(Some)
            .ok_or_else(|| Violation::new("state", "must be a NOTIFICATION_STATE_* value")),
    }
}

/// The key of a ListNotifications page token: the creation time (microseconds since the
/// epoch) and id of the last notification of the previous page; `None` for the first page.
fn page_key(token: &str) -> Result<Option<(DateTime<Utc>, Uuid)>, Violation> {
    let Some(key) = decode_token(token, 2)? else {
        return Ok(None);
    };
    let time = key[0]
        .parse::<i64>()
        .ok()
        .and_then(DateTime::from_timestamp_micros);
    let id = Uuid::parse_str(&key[1]).ok();
    match (time, id) {
        (Some(time), Some(id)) => Ok(Some((time, id))),
        _ => Err(Violation::new(
            "page_token",
            "not a page token this service issued",
        )),
    }
}

/// An optional id filter: empty means none.
fn optional_id(field: &str, text: &str) -> Result<Option<Uuid>, Violation> {
    if text.trim().is_empty() {
        Ok(None)
    } else {
        parse_id(field, text).map(Some)
    }
}

/// Checks `params` for `kind`, adding the violations to `v`.
fn check_params(v: &mut Violations, kind: Option<Kind>, params: &Params, usage: Use) {
    if let Some(kind) = kind
        && let Err(violations) = params::validate(kind, params, usage)
    {
        for violation in violations {
            v.add(violation.field, violation.description);
        }
    }
}

/// The one id of a request that names a notification.
fn notification_ref(notification_id: &str) -> Result<NotificationRef, ApiError> {
    let notification_id = parse_id("notification_id", notification_id)?;
    Ok(NotificationRef { notification_id })
}

impl TryFrom<pb::SendNoticeRequest> for NoticeRequest {
    type Error = ApiError;

    fn try_from(r: pb::SendNoticeRequest) -> Result<Self, ApiError> {
        let params: Params = r.params.into_iter().collect();
        let mut v = Violations::new();
        let site_id = v.check(parse_id("site_id", &r.site_id));
        let kind = v.check(notice_kind(r.kind));
        let key = v.check(params::idempotency_key(
            "idempotency_key",
            &r.idempotency_key,
        ));
        check_params(&mut v, kind, &params, Use::Send);
        v.build(|| {
            Some(NoticeRequest {
                site_id: site_id?,
                kind: kind?,
                params,
                idempotency_key: key?,
            })
        })
    }
}

impl TryFrom<pb::GetNotificationRequest> for NotificationRef {
    type Error = ApiError;

    fn try_from(r: pb::GetNotificationRequest) -> Result<Self, ApiError> {
        notification_ref(&r.notification_id)
    }
}

impl TryFrom<pb::RetryNotificationRequest> for NotificationRef {
    type Error = ApiError;

    fn try_from(r: pb::RetryNotificationRequest) -> Result<Self, ApiError> {
        notification_ref(&r.notification_id)
    }
}

impl TryFrom<pb::ListNotificationsRequest> for ListQuery {
    type Error = ApiError;

    fn try_from(r: pb::ListNotificationsRequest) -> Result<Self, ApiError> {
        let mut v = Violations::new();
        let site_id = v.check(optional_id("site_id", &r.site_id));
        let recipient_user_id = v.check(optional_id("recipient_user_id", &r.recipient_user_id));
        let state = v.check(state_filter(r.state));
        let (default, max) = LIST_PAGE;
        let size = v.check(page_size(r.page_size, default, max));
        let before = v.check(page_key(&r.page_token));
        v.build(|| {
            Some(ListQuery {
                filter: ListFilter {
                    site_id: site_id?,
                    recipient_user_id: recipient_user_id?,
                    state: state?,
                },
                before: before?,
                page_size: size?,
            })
        })
    }
}

impl TryFrom<pb::RenderPreviewRequest> for PreviewRequest {
    type Error = ApiError;

    fn try_from(r: pb::RenderPreviewRequest) -> Result<Self, ApiError> {
        let params: Params = r.params.into_iter().collect();
        let mut v = Violations::new();
        let kind = v.check(any_kind(r.kind));
        check_params(&mut v, kind, &params, Use::Preview);
        v.build(|| {
            Some(PreviewRequest {
                kind: kind?,
                locale: r.locale,
                params,
            })
        })
    }
}

impl From<&Notification> for pb::Notification {
    /// The published form of a notification.
    fn from(notification: &Notification) -> Self {
        pb::Notification {
            notification_id: notification.notification_id.to_string(),
            site_id: notification
                .site_id
                .map(|id| id.to_string())
                .unwrap_or_default(),
            recipient_user_id: notification
                .recipient_user_id
                .map(|id| id.to_string())
                .unwrap_or_default(),
            email: notification.email.clone(),
            kind: notification.kind.number(),
            locale: notification.locale.as_str().to_owned(),
            subject: notification.subject.clone(),
            state: i32::from(notification.state.number()),
            rule: notification.rule.clone(),
            source_event_id: notification.source_event_id.clone(),
            attempts: notification
                .attempts
                .iter()
                .map(|attempt| pb::DeliveryAttempt {
                    time: Some(timestamp(attempt.time)),
                    outcome: i32::from(attempt.outcome.number()),
                    smtp_code: attempt.smtp_code,
                    detail: attempt.detail.clone(),
                })
                .collect(),
            create_time: Some(timestamp(notification.create_time)),
            deliver_time: notification.deliver_time.map(timestamp),
            idempotency_key: notification.idempotency_key.clone().unwrap_or_default(),
            next_attempt_time: notification.next_attempt_time.map(timestamp),
        }
    }
}

impl From<&SentNotice> for pb::SendNoticeResponse {
    fn from(sent: &SentNotice) -> Self {
        pb::SendNoticeResponse {
            notifications: sent
                .notifications
                .iter()
                .map(pb::Notification::from)
                .collect(),
            replayed: sent.replayed,
        }
    }
}

/// The ListNotifications response of `page`, with the token of the next page.
pub(crate) fn list_response(page: &Page<Notification>) -> pb::ListNotificationsResponse {
    pb::ListNotificationsResponse {
        next_page_token: next_page_token(page, |n| {
            vec![
                n.create_time.timestamp_micros().to_string(),
                n.notification_id.to_string(),
            ]
        }),
        notifications: page.items.iter().map(pb::Notification::from).collect(),
    }
}

/// The RenderPreview response of a notice rendered in `lang`.
pub(crate) fn preview_response(lang: Lang, rendered: Rendered) -> pb::RenderPreviewResponse {
    pb::RenderPreviewResponse {
        subject: rendered.subject,
        text_body: rendered.text,
        html_body: rendered.html,
        locale: lang.as_str().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use kc_runtime::paging::encode_token;

    use super::*;

    #[test]
    fn page_tokens_carry_the_time_and_the_id() {
        let id = Uuid::from_u128(7);
        let time = DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap();
        let token = encode_token(&["1700000000123456", &id.to_string()]);
        assert_eq!(page_key(&token).unwrap(), Some((time, id)));
        assert_eq!(page_key("").unwrap(), None);
        for bad in [
            encode_token(&["soon", &id.to_string()]),
            encode_token(&["1", "x"]),
            encode_token(&["1"]),
            "%%%".to_owned(),
        ] {
            let status = tonic::Status::from(ApiError::from(page_key(&bad).unwrap_err()));
            assert_eq!(status.code(), tonic::Code::InvalidArgument, "{bad}");
        }
    }
}
