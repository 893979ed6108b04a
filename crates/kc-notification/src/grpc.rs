//! The gRPC face of the notification service: reads the caller, parses the request into a
//! domain command (`convert`), calls the domain, and turns the result back. No SQL, no
//! rules.

use kc_proto::notification::{self as pb, notification_service_server::NotificationService};
use kc_runtime::Shutdown;
use kc_runtime::auth::caller;
use kc_runtime::grpc::event_stream;
use kc_runtime::outbox::{EventStream, OutboxWatcher};
use tonic::{Request, Response, Status};

use crate::convert::{list_response, preview_response};
use crate::domain::{CallerRole, Notifier};

/// The `NotificationService` implementation.
#[derive(Clone, Debug)]
pub(crate) struct NotificationApi {
    notifier: Notifier,
    watcher: OutboxWatcher,
    shutdown: Shutdown,
}

impl NotificationApi {
    /// The API over `notifier`, streaming events from `watcher` until `shutdown`.
    pub(crate) fn new(notifier: Notifier, watcher: OutboxWatcher, shutdown: Shutdown) -> Self {
        Self {
            notifier,
            watcher,
            shutdown,
        }
    }
}

/// The role of the caller of a request: services and operators only.
fn caller_role<T>(request: &Request<T>) -> Result<CallerRole, Status> {
    Ok(CallerRole::of(&caller(request)?)?)
}

#[tonic::async_trait]
impl NotificationService for NotificationApi {
    async fn send_notice(
        &self,
        request: Request<pb::SendNoticeRequest>,
    ) -> Result<Response<pb::SendNoticeResponse>, Status> {
        caller_role(&request)?;
        let notice = request.into_inner().try_into()?;
        let sent = self.notifier.send_notice(notice).await?;
        Ok(Response::new((&sent).into()))
    }

    async fn get_notification(
        &self,
        request: Request<pb::GetNotificationRequest>,
    ) -> Result<Response<pb::GetNotificationResponse>, Status> {
        caller_role(&request)?;
        let target = request.into_inner().try_into()?;
        let notification = self.notifier.get(target).await?;
        Ok(Response::new(pb::GetNotificationResponse {
            notification: Some((&notification).into()),
        }))
    }

    async fn list_notifications(
        &self,
        request: Request<pb::ListNotificationsRequest>,
    ) -> Result<Response<pb::ListNotificationsResponse>, Status> {
        caller_role(&request)?;
        let query = request.into_inner().try_into()?;
        let page = self.notifier.list(query).await?;
        Ok(Response::new(list_response(&page)))
    }

    async fn retry_notification(
        &self,
        request: Request<pb::RetryNotificationRequest>,
    ) -> Result<Response<pb::RetryNotificationResponse>, Status> {
        let role = caller_role(&request)?;
        role.require_operator()?;
        let target = request.into_inner().try_into()?;
        let notification = self.notifier.retry(role, target).await?;
        Ok(Response::new(pb::RetryNotificationResponse {
            notification: Some((&notification).into()),
        }))
    }

    async fn render_preview(
        &self,
        request: Request<pb::RenderPreviewRequest>,
    ) -> Result<Response<pb::RenderPreviewResponse>, Status> {
        caller_role(&request)?;
        let preview = request.into_inner().try_into()?;
        let (lang, rendered) = self.notifier.preview(preview)?;
        Ok(Response::new(preview_response(lang, rendered)))
    }

    type WatchEventsStream = EventStream<pb::WatchEventsResponse>;

    async fn watch_events(
        &self,
        request: Request<pb::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        caller_role(&request)?;
        event_stream::<pb::Event>(
            &self.watcher,
            &request.get_ref().after_cursor,
            &self.shutdown,
        )
    }
}
