//! Outbox test support: a consumer's event source reading a watcher directly.

use futures::future::Ready;
use kc_runtime::outbox::{Cursor, EventStream, OutboxWatcher, StoredEvent, watch_response};

/// What [`watch_source`] returns when asked to open a stream.
pub type Opened = Ready<Result<EventStream<(String, StoredEvent)>, tonic::Status>>;

/// A consumer source reading the watcher the way a `WatchEvents` client would: each event
/// with its cursor.
pub fn watch_source(watcher: OutboxWatcher) -> impl FnMut(String) -> Opened {
    move |after| {
        let opened = after
            .parse::<Cursor>()
            .map_err(|error| error.to_status("after_cursor"))
            .map(|cursor| {
                watch_response(&watcher, cursor, |event| {
                    Ok((event.cursor.to_string(), event))
                })
            });
        futures::future::ready(opened)
    }
}
