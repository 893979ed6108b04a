//! Helpers the gRPC handlers of every service share: errors to `Status`, request ids, paging arguments and tokens, and the `WatchEvents` handler.
//!
//! Handlers parse with the values of [`crate::values`] and [`crate::paging`] (which report a
//! [`Violation`]) and use these to turn the result into a `tonic::Status` in one place, so
//! every service answers the same malformed request with the same status and field path.

use futures::StreamExt;
use tonic::Status;
use uuid::Uuid;

use crate::outbox::{Cursor, EventStream, OutboxWatcher, StoredEvent, watch_response};
use crate::paging::{Page, decode_token, encode_token, page_size};
use crate::values::parse_id;
use crate::{ApiError, Shutdown, Violation, Violations};

/// The `Status` of any error a service maps onto [`ApiError`].
pub fn status(error: impl Into<ApiError>) -> Status {
    error.into().into()
}

/// The `INVALID_ARGUMENT` status of one bad field.
pub fn invalid(violation: Violation) -> Status {
    status(ApiError::from(violation))
}

/// Turns a `Violations` collection into a `Status` when it holds any.
pub fn finish(violations: Violations) -> Result<(), Status> {
    violations.finish().map_err(status)
}

/// A value a successful `Violations` check guarantees; reaching `None` is a bug.
pub fn checked<T>(value: Option<T>) -> Result<T, Status> {
    value.ok_or_else(|| Status::internal("internal error"))
}

/// Parses the id in `field` (see [`parse_id`]), failing the request when it is not one.
pub fn id(field: &str, text: &str) -> Result<Uuid, Status> {
    parse_id(field, text).map_err(invalid)
}

/// Parses `page_size` with the `(default, max)` sizes of a list (see [`page_size`]).
pub fn page_size_or_status(value: i32, (default, max): (u32, u32)) -> Result<u32, Status> {
    page_size(value, default, max).map_err(invalid)
}

/// The status of a well-formed page token whose key this service cannot have issued.
pub fn bad_page_token() -> Status {
    invalid(Violation::new(
        "page_token",
        "not a page token this service issued",
    ))
}

/// Decodes a page token of one key part read by `parse`: `None` for an empty token, and
/// [`bad_page_token`] when `parse` rejects the key.
pub fn decode_single_key<T>(
    token: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Option<T>, Status> {
    decode_token(token, 1)
        .map_err(invalid)?
        .and_then(|mut key| key.pop())
        .map(|key| parse(&key).ok_or_else(bad_page_token))
        .transpose()
}

/// The `next_page_token` of `page`: the sort key `key` of its last item, encoded, when more
/// items follow; empty on the last page.
pub fn next_page_token<T>(page: &Page<T>, key: impl Fn(&T) -> Vec<String>) -> String {
    match page.items.last() {
        Some(last) if page.more => {
            let key = key(last);
            encode_token(&key.iter().map(String::as_str).collect::<Vec<_>>())
        }
        _ => String::new(),
    }
}

/// The body of a `WatchEvents` handler once the caller is authorised: parses `after_cursor`
/// and streams the events after it, each converted by `decode`, until `shutdown`.
pub fn watch_events<T, F>(
    watcher: &OutboxWatcher,
    after_cursor: &str,
    decode: F,
    shutdown: &Shutdown,
) -> Result<EventStream<T>, Status>
where
    T: Send + 'static,
    F: Fn(StoredEvent) -> Result<T, Status> + Send + 'static,
{
    let after: Cursor = after_cursor.parse().map_err(|_| {
        invalid(Violation::new(
            "after_cursor",
            "not a cursor this service issued",
        ))
    })?;
    let stream = watch_response(watcher, after, decode);
    let shutdown = shutdown.clone();
    let stream = stream.take_until(async move { shutdown.wait().await });
    Ok(Box::pin(stream))
}

/// The answer of a service's `WatchEvents` once the caller is authorised: the events of its
/// own outbox after `after_cursor`, each as the response message of the service's `Event`
/// type `E`, until `shutdown`.
pub fn event_stream<E>(
    watcher: &OutboxWatcher,
    after_cursor: &str,
    shutdown: &Shutdown,
) -> Result<tonic::Response<EventStream<E::Response>>, Status>
where
    E: crate::outbox::PositionedEvent + 'static,
    E::Response: Send + 'static,
{
    watch_events(
        watcher,
        after_cursor,
        crate::outbox::decode_response::<E>,
        shutdown,
    )
    .map(tonic::Response::new)
}

/// Parses a `grpc-timeout` header value (gRPC over HTTP/2: at most 8 digits and a unit of
/// `H`, `M`, `S`, `m`, `u` or `n`); `None` when it is malformed.
pub fn parse_grpc_timeout(value: &str) -> Option<std::time::Duration> {
    use std::time::Duration;
    let value = value.trim();
    if value.len() < 2 || !value.is_ascii() {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    if digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount * 3600),
        "M" => Duration::from_secs(amount * 60),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// The time the caller gave this call (its `grpc-timeout`), if it gave one.
pub fn call_timeout<T>(request: &tonic::Request<T>) -> Option<std::time::Duration> {
    request
        .metadata()
        .get("grpc-timeout")
        .and_then(|value| value.to_str().ok())
        .and_then(parse_grpc_timeout)
}

/// Largest part of a call's deadline [`await_revision`] keeps to answer before its caller
/// gives up (a tenth of shorter deadlines).
const REVISION_WAIT_MARGIN: std::time::Duration = std::time::Duration::from_millis(50);

/// How long [`await_revision`] waits: the call's own time (its `grpc-timeout`) less a
/// margin, so that its answer reaches the caller before the caller gives up; at most `max`.
pub fn revision_wait<T>(
    request: &tonic::Request<T>,
    max: std::time::Duration,
) -> std::time::Duration {
    call_timeout(request).map_or(max, |deadline| {
        let margin = (deadline / 10).min(REVISION_WAIT_MARGIN);
        deadline.saturating_sub(margin).min(max)
    })
}

/// Answers an `Await…Revision` RPC (T8): waits until this service's consumer of `applied`
/// has applied the other service's event at `revision`, for the call's own time less a margin
/// ([`revision_wait`]) but at most `max` (see [`crate::outbox::await_cursor`]). A revision
/// that is not a cursor is `InvalidArgument` on the field `revision`; not reached in time is
/// `Unavailable` (`projection` names what lags, e.g. `the registry's projection of access
/// grants`); returns the applied cursor.
pub async fn await_revision<T>(
    pool: &sqlx::PgPool,
    applied: &crate::outbox::AppliedCursor,
    request: &tonic::Request<T>,
    revision: &str,
    max: std::time::Duration,
    projection: &str,
) -> Result<String, Status> {
    use crate::outbox::{AwaitCursorError, InvalidCursor, await_cursor};
    let timeout = revision_wait(request, max);
    match await_cursor(pool, applied, revision, timeout).await {
        Ok(applied) => Ok(applied),
        Err(AwaitCursorError::InvalidTarget) => Err(InvalidCursor.to_status("revision")),
        Err(AwaitCursorError::Behind) => Err(Status::unavailable(format!(
            "rule T8: {projection} has not applied revision {revision} yet; retry"
        ))),
        Err(AwaitCursorError::Database(error)) => Err(status(error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens() {
        let page = Page {
            items: vec![1, 2],
            more: true,
        };
        let token = next_page_token(&page, |n| vec![n.to_string()]);
        assert_eq!(
            decode_single_key(&token, |key| key.parse::<i32>().ok()).unwrap(),
            Some(2)
        );
        assert_eq!(
            decode_single_key("", |key| Some(key.to_owned())).unwrap(),
            None
        );
        let bad = decode_single_key(&token, |_| None::<i32>).unwrap_err();
        assert_eq!(bad.code(), tonic::Code::InvalidArgument);
        let last = Page {
            items: vec![1],
            more: false,
        };
        assert_eq!(next_page_token(&last, |n| vec![n.to_string()]), "");
    }

    #[test]
    fn argument_statuses() {
        assert_eq!(page_size_or_status(0, (100, 1000)).unwrap(), 100);
        assert_eq!(
            page_size_or_status(-1, (100, 1000)).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        assert_eq!(
            id("id", "x").unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        assert_eq!(
            checked(None::<u8>).unwrap_err().code(),
            tonic::Code::Internal
        );
    }

    fn with_timeout(value: &str) -> tonic::Request<()> {
        let mut request = tonic::Request::new(());
        request
            .metadata_mut()
            .insert("grpc-timeout", value.parse().expect("header value"));
        request
    }

    /// Rule T8: an `Await…Revision` answers before its caller's deadline, and waits at most
    /// its own longest wait.
    #[test]
    fn revision_waits_end_before_the_deadline() {
        use std::time::Duration;
        let max = Duration::from_secs(10);
        assert_eq!(revision_wait(&tonic::Request::new(()), max), max);
        assert_eq!(revision_wait(&with_timeout("1M"), max), max);
        assert_eq!(
            revision_wait(&with_timeout("2S"), max),
            Duration::from_millis(1950)
        );
        assert_eq!(
            revision_wait(&with_timeout("200m"), max),
            Duration::from_millis(180)
        );
        assert_eq!(revision_wait(&with_timeout("bogus"), max), max);
    }
}
