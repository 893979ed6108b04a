//! The gRPC face of the notification service: turns requests into domain values, reads the
//! caller, calls the domain, and turns results back. No SQL, no rules.

use chrono::{DateTime, Utc};
use kc_proto::notification::{self as pb, notification_service_server::NotificationService};
use kc_runtime::auth::caller;
use kc_runtime::grpc::{
    bad_page_token, checked, finish, id, invalid, next_page_token, page_size_or_status, status,
    watch_events,
};
use kc_runtime::outbox::{self, EventStream, OutboxWatcher};
use kc_runtime::paging::decode_token;
use kc_runtime::values::{parse_id, timestamp};
use kc_runtime::{Shutdown, Violation, Violations};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::domain::params::{self, Params, Use};
use crate::domain::service::NoticeRequest;
use crate::domain::{CallerRole, Kind, ListFilter, Notification, Notifier, State};

/// Default and largest page sizes of ListNotifications.
const LIST_PAGE: (u32, u32) = (100, 1000);

/// The `NotificationService` implementation.
#[derive(Clone, Debug)]
pub struct NotificationApi {
    notifier: Notifier,
    watcher: OutboxWatcher,
    shutdown: Shutdown,
}

impl NotificationApi {
    /// The API over `notifier`, streaming events from `watcher` until `shutdown`.
    pub fn new(notifier: Notifier, watcher: OutboxWatcher, shutdown: Shutdown) -> Self {
        Self {
            notifier,
            watcher,
            shutdown,
        }
    }
}

/// The role of the caller of a request: services and operators only.
fn caller_role<T>(request: &Request<T>) -> Result<CallerRole, Status> {
    CallerRole::of(&caller(request)?).map_err(status)
}

/// The published form of a notification.
pub fn notification_to_proto(notification: &Notification) -> pb::Notification {
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

/// The key of a ListNotifications page token: the creation time (microseconds since the
/// epoch) and id of the last notification of the previous page; `None` for the first page.
fn page_key(token: &str) -> Result<Option<(DateTime<Utc>, Uuid)>, Status> {
    let Some(key) = decode_token(token, 2).map_err(invalid)? else {
        return Ok(None);
    };
    let time = key[0]
        .parse::<i64>()
        .ok()
        .and_then(DateTime::from_timestamp_micros);
    let id = Uuid::parse_str(&key[1]).ok();
    match (time, id) {
        (Some(time), Some(id)) => Ok(Some((time, id))),
        _ => Err(bad_page_token()),
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

#[tonic::async_trait]
impl NotificationService for NotificationApi {
    async fn send_notice(
        &self,
        request: Request<pb::SendNoticeRequest>,
    ) -> Result<Response<pb::SendNoticeResponse>, Status> {
        caller_role(&request)?;
        let r = request.into_inner();
        let params: Params = r.params.into_iter().collect();
        let mut v = Violations::new();
        let site_id = v.check(parse_id("site_id", &r.site_id));
        let kind = v.check(notice_kind(r.kind));
        let key = v.check(params::idempotency_key(
            "idempotency_key",
            &r.idempotency_key,
        ));
        check_params(&mut v, kind, &params, Use::Send);
        finish(v)?;
        let sent = self
            .notifier
            .send_notice(NoticeRequest {
                site_id: checked(site_id)?,
                kind: checked(kind)?,
                params,
                idempotency_key: checked(key)?,
            })
            .await
            .map_err(status)?;
        Ok(Response::new(pb::SendNoticeResponse {
            notifications: sent
                .notifications
                .iter()
                .map(notification_to_proto)
                .collect(),
            replayed: sent.replayed,
        }))
    }

    async fn get_notification(
        &self,
        request: Request<pb::GetNotificationRequest>,
    ) -> Result<Response<pb::GetNotificationResponse>, Status> {
        caller_role(&request)?;
        let notification_id = id("notification_id", &request.get_ref().notification_id)?;
        let notification = self.notifier.get(notification_id).await.map_err(status)?;
        Ok(Response::new(pb::GetNotificationResponse {
            notification: Some(notification_to_proto(&notification)),
        }))
    }

    async fn list_notifications(
        &self,
        request: Request<pb::ListNotificationsRequest>,
    ) -> Result<Response<pb::ListNotificationsResponse>, Status> {
        caller_role(&request)?;
        let r = request.into_inner();
        let mut v = Violations::new();
        let site_id = v.check(optional_id("site_id", &r.site_id));
        let recipient_user_id = v.check(optional_id("recipient_user_id", &r.recipient_user_id));
        let state =
            match r.state {
                0 => Some(None),
                number => v.check(State::from_number(number).map(Some).ok_or_else(|| {
                    Violation::new("state", "must be a NOTIFICATION_STATE_* value")
                })),
            };
        finish(v)?;
        let size = page_size_or_status(r.page_size, LIST_PAGE)?;
        let before = page_key(&r.page_token)?;
        let filter = ListFilter {
            site_id: checked(site_id)?,
            recipient_user_id: checked(recipient_user_id)?,
            state: checked(state)?,
        };
        let page = self
            .notifier
            .list(&filter, before, size)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ListNotificationsResponse {
            next_page_token: next_page_token(&page, |n| {
                vec![
                    n.create_time.timestamp_micros().to_string(),
                    n.notification_id.to_string(),
                ]
            }),
            notifications: page.items.iter().map(notification_to_proto).collect(),
        }))
    }

    async fn retry_notification(
        &self,
        request: Request<pb::RetryNotificationRequest>,
    ) -> Result<Response<pb::RetryNotificationResponse>, Status> {
        let role = caller_role(&request)?;
        role.require_operator().map_err(status)?;
        let notification_id = id("notification_id", &request.get_ref().notification_id)?;
        let notification = self
            .notifier
            .retry(role, notification_id)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::RetryNotificationResponse {
            notification: Some(notification_to_proto(&notification)),
        }))
    }

    async fn render_preview(
        &self,
        request: Request<pb::RenderPreviewRequest>,
    ) -> Result<Response<pb::RenderPreviewResponse>, Status> {
        caller_role(&request)?;
        let r = request.into_inner();
        let params: Params = r.params.into_iter().collect();
        let mut v = Violations::new();
        let kind = v.check(any_kind(r.kind));
        check_params(&mut v, kind, &params, Use::Preview);
        finish(v)?;
        let (lang, rendered) = self
            .notifier
            .preview(checked(kind)?, &r.locale, &params)
            .map_err(status)?;
        Ok(Response::new(pb::RenderPreviewResponse {
            subject: rendered.subject,
            text_body: rendered.text,
            html_body: rendered.html,
            locale: lang.as_str().to_owned(),
        }))
    }

    type WatchEventsStream = EventStream<pb::WatchEventsResponse>;

    async fn watch_events(
        &self,
        request: Request<pb::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        caller_role(&request)?;
        let stream = watch_events(
            &self.watcher,
            &request.get_ref().after_cursor,
            outbox::decode_response::<pb::Event>,
            &self.shutdown,
        )?;
        Ok(Response::new(stream))
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
            assert_eq!(
                page_key(&bad).unwrap_err().code(),
                tonic::Code::InvalidArgument,
                "{bad}"
            );
        }
    }
}
