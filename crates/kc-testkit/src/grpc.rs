//! Calls and answers in tests: requests with a bearer token (and the on-behalf-of header),
//! assertions on a status (its code, the rule it cites, the field it names), and running
//! calls all at once.

use std::future::Future;
use std::sync::Arc;

use futures::{Stream, StreamExt};

use kc_runtime::auth::ON_BEHALF_OF_HEADER;
use tonic::{Code, Request, Status};
use uuid::Uuid;

use crate::checks::{PATIENCE, cites, eventually};

/// A request carrying `token` as bearer.
pub fn authed<T>(token: &str, message: T) -> Request<T> {
    maybe_authed(Some(token), message)
}

/// A request carrying `token` as bearer (none: an anonymous call).
pub fn maybe_authed<T>(token: Option<&str>, message: T) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(token) = token {
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("token is ASCII"),
        );
    }
    request
}

/// `request` with the on-behalf-of metadata naming `user`.
pub fn on_behalf_of<T>(mut request: Request<T>, user: Uuid) -> Request<T> {
    request.metadata_mut().insert(
        ON_BEHALF_OF_HEADER,
        user.to_string().parse().expect("a uuid is ASCII"),
    );
    request
}

/// `text` as a uuid (panics with the text when it is not one).
pub fn uuid(text: &str) -> Uuid {
    Uuid::parse_str(text).unwrap_or_else(|_| panic!("a uuid: {text:?}"))
}

/// Asserts a status code and returns the status for further checks.
#[track_caller]
pub fn expect_code<T: std::fmt::Debug>(result: Result<T, Status>, code: Code) -> Status {
    match result {
        Ok(value) => panic!("expected {code:?}, got Ok({value:?})"),
        Err(status) => {
            assert_eq!(status.code(), code, "unexpected status: {status:?}");
            status
        }
    }
}

/// Asserts one of `codes`.
#[track_caller]
pub fn expect_codes<T: std::fmt::Debug>(result: Result<T, Status>, codes: &[Code]) -> Status {
    match result {
        Ok(value) => panic!("expected one of {codes:?}, got Ok({value:?})"),
        Err(status) => {
            assert!(
                codes.contains(&status.code()),
                "expected one of {codes:?}: {status:?}"
            );
            status
        }
    }
}

/// Asserts that a rule refused the call: FAILED_PRECONDITION (a rule forbids it) or
/// PERMISSION_DENIED (the acting person lacks the authority), with a message citing `rule`
/// ([`cites`]).
#[track_caller]
pub fn expect_refused<T: std::fmt::Debug>(result: Result<T, Status>, rule: &str) -> Status {
    let status = expect_codes(result, &[Code::FailedPrecondition, Code::PermissionDenied]);
    assert!(
        cites(status.message(), rule),
        "expected the message to cite rule {rule}: {:?}",
        status.message()
    );
    status
}

/// Which field violations [`expect_violation`] accepts for a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldMatch {
    /// The field itself only.
    Exact,
    /// The field itself or a field inside it (`field.` then more).
    Within,
    /// The field itself or a path ending with it (more, then `.field`).
    PathEnd,
}

impl FieldMatch {
    /// Whether a violation on `violated` matches `field`.
    pub fn matches(self, violated: &str, field: &str) -> bool {
        violated == field
            || match self {
                Self::Exact => false,
                Self::Within => violated.starts_with(&format!("{field}.")),
                Self::PathEnd => violated.ends_with(&format!(".{field}")),
            }
    }
}

/// Asserts `InvalidArgument` with a field violation on `field`, as `how` matches fields.
#[track_caller]
pub fn expect_violation<T: std::fmt::Debug>(
    result: Result<T, Status>,
    field: &str,
    how: FieldMatch,
) -> Status {
    let status = expect_code(result, Code::InvalidArgument);
    let violations = kc_runtime::error::field_violations(&status);
    assert!(
        violations.iter().any(|v| how.matches(&v.field, field)),
        "expected a violation on {field}, got {violations:?} ({status:?})"
    );
    status
}

/// Asserts `InvalidArgument` with a field violation on exactly `field`.
#[track_caller]
pub fn expect_field_exact<T: std::fmt::Debug>(result: Result<T, Status>, field: &str) -> Status {
    expect_violation(result, field, FieldMatch::Exact)
}

/// Asserts `InvalidArgument` with a field violation on `field` or a field inside it.
#[track_caller]
pub fn expect_field_within<T: std::fmt::Debug>(result: Result<T, Status>, field: &str) -> Status {
    expect_violation(result, field, FieldMatch::Within)
}

/// Asserts `InvalidArgument` with a field violation on `field` or a path ending with it.
#[track_caller]
pub fn expect_field_at_end<T: std::fmt::Debug>(result: Result<T, Status>, field: &str) -> Status {
    expect_violation(result, field, FieldMatch::PathEnd)
}

/// Asserts `InvalidArgument` and returns the fields of its violations, in their order.
#[track_caller]
pub fn invalid_fields<T: std::fmt::Debug>(result: Result<T, Status>) -> Vec<String> {
    let status = expect_code(result, Code::InvalidArgument);
    kc_runtime::error::field_violations(&status)
        .into_iter()
        .map(|v| v.field)
        .collect()
}

/// Polls `condition` until it holds (bounded by [`PATIENCE`]).
pub async fn wait_until<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    eventually(what, || {
        let fut = condition();
        async move {
            if fut.await {
                Ok(())
            } else {
                Err("false".into())
            }
        }
    })
    .await
}

/// Runs every future on its own task, all at once (they start together at a barrier), and
/// returns their results in order.
pub async fn all_at_once<T, F>(futures: Vec<F>) -> Vec<T>
where
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
{
    let barrier = Arc::new(tokio::sync::Barrier::new(futures.len()));
    let handles: Vec<_> = futures
        .into_iter()
        .map(|future| {
            let barrier = Arc::clone(&barrier);
            tokio::spawn(async move {
                barrier.wait().await;
                future.await
            })
        })
        .collect();
    let mut results = Vec::with_capacity(handles.len());
    for handle in handles {
        results.push(
            tokio::time::timeout(PATIENCE, handle)
                .await
                .expect("task finishes in time")
                .expect("task does not panic"),
        );
    }
    results
}

/// Every item of a paged list, page after page: `page(token)` answers the items of the page
/// at `token` (empty: the first) and the next page's token (empty: the last page).
pub async fn all_pages<T, F, Fut>(page: F) -> Vec<T>
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = (Vec<T>, String)>,
{
    read_pages(usize::MAX, None, page).await
}

/// Every item of a paged list read `page_size` at a time, as [`all_pages`] reads it, failing
/// the test when a page holds more than `page_size` items or, with `fewer_than` set, when
/// the items read before the last page reach that many (a list that never ends).
pub async fn read_pages<T, F, Fut>(
    page_size: usize,
    fewer_than: Option<usize>,
    mut page: F,
) -> Vec<T>
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = (Vec<T>, String)>,
{
    let mut items = Vec::new();
    let mut token = String::new();
    loop {
        let (more, next) = page(token).await;
        assert!(
            more.len() <= page_size,
            "a page of {} items, asked for {page_size}",
            more.len()
        );
        items.extend(more);
        if next.is_empty() {
            return items;
        }
        token = next;
        if let Some(bound) = fewer_than {
            assert!(
                items.len() < bound,
                "{} items and more to come",
                items.len()
            );
        }
    }
}

/// The next `count` messages of a server stream, failing the test when the stream ends, a
/// message is an error, or they do not all come within [`PATIENCE`].
pub async fn next_messages<T, S>(stream: &mut S, count: usize) -> Vec<T>
where
    T: std::fmt::Debug,
    S: Stream<Item = Result<T, Status>> + Unpin,
{
    let mut messages = Vec::with_capacity(count);
    let read = tokio::time::timeout(PATIENCE, async {
        while messages.len() < count {
            let message = stream.next().await.expect("the stream does not end");
            messages.push(message.expect("a message, not an error"));
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "{count} messages within {PATIENCE:?}: got {messages:?}"
    );
    messages
}

/// Reads a server stream until `pick` finds something in a message, failing the test when
/// the stream ends or nothing is found within [`PATIENCE`].
pub async fn find_message<T, R, S>(
    stream: &mut S,
    what: &str,
    mut pick: impl FnMut(T) -> Option<R>,
) -> R
where
    S: Stream<Item = Result<T, Status>> + Unpin,
{
    tokio::time::timeout(PATIENCE, async {
        while let Some(message) = stream.next().await {
            if let Some(found) = pick(message.expect("a message, not an error")) {
                return found;
            }
        }
        panic!("the stream ended before {what}");
    })
    .await
    .unwrap_or_else(|_| panic!("{what} within {PATIENCE:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_match_exactly_within_or_at_the_end_of_a_path() {
        assert!(FieldMatch::Exact.matches("email", "email"));
        assert!(!FieldMatch::Exact.matches("primary.email", "email"));
        assert!(FieldMatch::Within.matches("tools.software", "tools"));
        assert!(!FieldMatch::Within.matches("primary.email", "email"));
        assert!(FieldMatch::PathEnd.matches("primary.email", "email"));
        assert!(!FieldMatch::PathEnd.matches("tools.software", "tools"));
    }
}
