//! Following another service's `WatchEvents` stream with this service's own account: the
//! `source` half of [`Consumer::run`](super::Consumer::run), written once for every service
//! that publishes events.

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use kc_proto::access::access_management_service_client::AccessManagementServiceClient;
use kc_proto::contacts::contact_registry_service_client::ContactRegistryServiceClient;
use kc_proto::identity::identity_service_client::IdentityServiceClient;
use kc_proto::notification::notification_service_client::NotificationServiceClient;
use kc_proto::{access, contacts, identity, notification};
use sqlx::PgConnection;
use tonic::transport::Channel;
use tonic::{Request, Status};

use crate::client::ServiceToken;

/// The events of a `WatchEvents` stream, each with its cursor.
pub type EventItems<E> = BoxStream<'static, Result<(String, E), Status>>;

/// What opening a `WatchEvents` stream gives: the stream, or why it could not be opened.
pub type OpenedEvents<E> = BoxFuture<'static, Result<EventItems<E>, Status>>;

/// What [`EventFeed::watch`] gives: the events of the responses (`None` for a response
/// without one), or why the stream could not be opened.
pub type OpenedResponses<E> =
    BoxFuture<'static, Result<BoxStream<'static, Result<Option<E>, Status>>, Status>>;

/// The generated client of a service that publishes events through `WatchEvents`.
pub trait EventFeed: Clone + Send + 'static {
    /// The service's event message.
    type Event: Send + 'static;

    /// Names the service in errors, e.g. `"identity"`.
    const SERVICE: &'static str;

    /// Calls `WatchEvents` with `request` (its message is the cursor to follow after):
    /// each item is the event a response carries (`None` for a response without one).
    fn watch(self, request: Request<String>) -> OpenedResponses<Self::Event>;

    /// Where the stream resumes after `event`.
    fn cursor(event: &Self::Event) -> &str;
}

impl EventFeed for IdentityServiceClient<Channel> {
    type Event = identity::Event;
    const SERVICE: &'static str = "identity";

    fn watch(mut self, request: Request<String>) -> OpenedResponses<Self::Event> {
        Box::pin(async move {
            let request = request.map(|after_cursor| identity::WatchEventsRequest { after_cursor });
            let stream = self.watch_events(request).await?.into_inner();
            Ok(stream.map_ok(|response| response.event).boxed())
        })
    }

    fn cursor(event: &Self::Event) -> &str {
        &event.cursor
    }
}

impl EventFeed for ContactRegistryServiceClient<Channel> {
    type Event = contacts::Event;
    const SERVICE: &'static str = "registry";

    fn watch(mut self, request: Request<String>) -> OpenedResponses<Self::Event> {
        Box::pin(async move {
            let request = request.map(|after_cursor| contacts::WatchEventsRequest { after_cursor });
            let stream = self.watch_events(request).await?.into_inner();
            Ok(stream.map_ok(|response| response.event).boxed())
        })
    }

    fn cursor(event: &Self::Event) -> &str {
        &event.cursor
    }
}

impl EventFeed for AccessManagementServiceClient<Channel> {
    type Event = access::Event;
    const SERVICE: &'static str = "access";

    fn watch(mut self, request: Request<String>) -> OpenedResponses<Self::Event> {
        Box::pin(async move {
            let request = request.map(|after_cursor| access::WatchEventsRequest { after_cursor });
            let stream = self.watch_events(request).await?.into_inner();
            Ok(stream.map_ok(|response| response.event).boxed())
        })
    }

    fn cursor(event: &Self::Event) -> &str {
        &event.cursor
    }
}

impl EventFeed for NotificationServiceClient<Channel> {
    type Event = notification::Event;
    const SERVICE: &'static str = "notification";

    fn watch(mut self, request: Request<String>) -> OpenedResponses<Self::Event> {
        Box::pin(async move {
            let request =
                request.map(|after_cursor| notification::WatchEventsRequest { after_cursor });
            let stream = self.watch_events(request).await?.into_inner();
            Ok(stream.map_ok(|response| response.event).boxed())
        })
    }

    fn cursor(event: &Self::Event) -> &str {
        &event.cursor
    }
}

/// The `source` of [`Consumer::run`](super::Consumer::run) that follows `feed`'s
/// `WatchEvents` as this service's account (`token`, no one on whose behalf): each call
/// opens the stream after the cursor it is given and yields `(cursor, event)`. A response
/// without an event fails the stream (`Internal`), and the consumer reconnects.
pub fn watch_source<F: EventFeed>(
    feed: F,
    token: ServiceToken,
) -> impl FnMut(String) -> OpenedEvents<F::Event> + Send + 'static {
    move |after: String| {
        let feed = feed.clone();
        let token = token.clone();
        Box::pin(async move {
            let request = token.request(after, None).await?;
            let stream = feed.watch(request).await?;
            Ok(stream
                .map(|item| {
                    let event = item?.ok_or_else(|| {
                        Status::internal(format!("{} event without body", F::SERVICE))
                    })?;
                    Ok((F::cursor(&event).to_owned(), event))
                })
                .boxed())
        })
    }
}

/// Gives a closure the higher-ranked signature [`Consumer::run`](super::Consumer::run)
/// wants for `apply`, when the closure is not written inline in the call.
pub fn apply_fn<E, F>(apply: F) -> F
where
    F: for<'c> FnMut(&'c mut PgConnection, E) -> BoxFuture<'c, anyhow::Result<()>>,
{
    apply
}

/// Gives a closure the higher-ranked signature
/// [`Consumer::run_batches`](super::Consumer::run_batches) wants for `apply_all`, when the
/// closure is not written inline in the call.
pub fn apply_all_fn<E, F>(apply_all: F) -> F
where
    F: for<'c> FnMut(&'c mut PgConnection, Vec<E>) -> BoxFuture<'c, anyhow::Result<()>>,
{
    apply_all
}

/// The user an identity event is about: the account a registration, an update, a disabling
/// or an enabling carries. `None` for the events that change no user (mails, and
/// revocations, whose tokens the token verifier refuses, rule I4) and for an event without
/// a payload this build knows.
pub fn identity_event_user(event: &identity::Event) -> Option<&identity::User> {
    use identity::event::Payload;
    match &event.payload {
        Some(Payload::UserRegistered(e)) => e.user.as_ref(),
        Some(Payload::UserUpdated(e)) => e.user.as_ref(),
        Some(Payload::UserDisabled(e)) => e.user.as_ref(),
        Some(Payload::UserEnabled(e)) => e.user.as_ref(),
        Some(
            Payload::EmailVerificationRequested(_)
            | Payload::RegistrationAttempted(_)
            | Payload::EmailChangeRequested(_)
            | Payload::TokensRevoked(_),
        )
        | None => None,
    }
}
