//! The error categories every service maps its own error enum onto, and the one mapping from
//! them to `tonic::Status` (with `google.rpc.BadRequest` field violations).
//!
//! Each service keeps its own `thiserror` enum with domain variants and implements
//! `From<ServiceError> for ApiError` exhaustively; `ApiError` → `Status` lives here, once.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

/// One invalid field of a request: the field path (`email`, `site.name`) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Field path as named in the proto, e.g. `email`.
    pub field: String,
    /// What is wrong with it, lowercase.
    pub description: String,
}

impl Violation {
    /// A violation on `field`.
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }
}

/// Collects every invalid field of a request before failing, so the caller sees them all.
#[derive(Debug, Default)]
pub struct Violations(Vec<Violation>);

impl Violations {
    /// An empty collection.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a violation.
    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push(Violation::new(field, description));
    }

    /// Keeps the parsed value, or records the violation and returns `None`.
    pub fn check<T>(&mut self, result: Result<T, Violation>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(violation) => {
                self.0.push(violation);
                None
            }
        }
    }

    /// Runs `check` on a part of the request that is itself a message (contact details, a
    /// date range): its violations join these, and its value is kept when it had none.
    pub fn nested<T>(&mut self, check: impl FnOnce(&mut Violations) -> Option<T>) -> Option<T> {
        let before = self.0.len();
        let value = check(self);
        if self.0.len() == before { value } else { None }
    }

    /// `Ok(())` when nothing was recorded, else `ApiError::InvalidArgument`.
    pub fn finish(self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::InvalidArgument(self.0))
        }
    }

    /// Ends a parse that collected every violation in one pass: `InvalidArgument` with all of
    /// them when any was recorded, else the value `assemble` builds from the parts
    /// [`Violations::check`] kept. With no violation every part is `Some`, so the `?`s in
    /// `assemble` cannot fail; if one does anyway, that is a bug, reported as internal.
    ///
    /// ```
    /// # use kc_runtime::{Violation, Violations};
    /// let mut v = Violations::new();
    /// let name = v.check(Ok::<_, Violation>("site"));
    /// let size = v.check("12".parse::<u32>().map_err(|_| Violation::new("size", "a number")));
    /// let parsed = v.build(|| Some((name?, size?)));
    /// assert_eq!(parsed.unwrap(), ("site", 12));
    /// ```
    pub fn build<T>(self, assemble: impl FnOnce() -> Option<T>) -> Result<T, ApiError> {
        self.finish()?;
        assemble().ok_or_else(|| {
            ApiError::internal(anyhow::anyhow!(
                "a request part was missing after a clean validation"
            ))
        })
    }
}

/// How a database error should be treated by the code that maps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbErrorKind {
    /// SQLSTATE 23505: a unique constraint refused the write.
    UniqueViolation,
    /// SQLSTATE 23503: a foreign key refused the write.
    ForeignKeyViolation,
    /// SQLSTATE 23514: a check constraint refused the write.
    CheckViolation,
    /// SQLSTATE 40001 / 40P01: serialization failure or deadlock; retryable.
    Serialization,
    /// The database cannot be reached (pool timeout, I/O, closed pool).
    Unavailable,
    /// Anything else.
    Other,
}

/// Classifies a sqlx error by SQLSTATE or transport failure.
pub fn classify(error: &sqlx::Error) -> DbErrorKind {
    match error {
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some("23505") => DbErrorKind::UniqueViolation,
            Some("23503") => DbErrorKind::ForeignKeyViolation,
            Some("23514") => DbErrorKind::CheckViolation,
            Some("40001") | Some("40P01") => DbErrorKind::Serialization,
            Some(code) if code.starts_with("08") || code.starts_with("57P") => {
                DbErrorKind::Unavailable
            }
            _ => DbErrorKind::Other,
        },
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
            DbErrorKind::Unavailable
        }
        _ => DbErrorKind::Other,
    }
}

/// The constraint a database error names, if any (to map a unique violation to a field).
pub fn constraint(error: &sqlx::Error) -> Option<&str> {
    match error {
        sqlx::Error::Database(db) => db.constraint(),
        _ => None,
    }
}

/// The categories of failure a service reports to its callers.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed; one entry per invalid field.
    #[error("invalid argument: {}", describe(.0))]
    InvalidArgument(Vec<Violation>),
    /// The named resource does not exist (or the caller may not know it exists).
    #[error("{0}")]
    NotFound(String),
    /// The resource to create exists already.
    #[error("{0}")]
    AlreadyExists(String),
    /// A rule forbids the change; the message names the rule.
    #[error("{0}")]
    FailedPrecondition(String),
    /// Optimistic concurrency lost: etag mismatch or a lost race. Retry after re-reading.
    #[error("{0}")]
    Aborted(String),
    /// The caller is known but may not do this.
    #[error("{0}")]
    PermissionDenied(String),
    /// The caller is not (validly) authenticated.
    #[error("{0}")]
    Unauthenticated(String),
    /// A quota or lock: too many attempts or too much at once.
    #[error("{0}")]
    ResourceExhausted(String),
    /// A dependency is down; the call may be retried.
    #[error("{0}")]
    Unavailable(String),
    /// A bug or an unexpected failure; the details are logged, never sent.
    #[error("internal error: {0:#}")]
    Internal(#[source] anyhow::Error),
}

fn describe(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(|v| format!("{}: {}", v.field, v.description))
        .collect::<Vec<_>>()
        .join("; ")
}

impl ApiError {
    /// A single-field `InvalidArgument`.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::InvalidArgument(vec![Violation::new(field, description)])
    }

    /// Wraps an unexpected failure.
    pub fn internal(error: impl Into<anyhow::Error>) -> Self {
        Self::Internal(error.into())
    }
}

impl From<Violation> for ApiError {
    fn from(violation: Violation) -> Self {
        Self::InvalidArgument(vec![violation])
    }
}

impl From<sqlx::Error> for ApiError {
    /// Database errors no domain code handled: a pool that cannot connect is `Unavailable`,
    /// a serialization failure or deadlock is `Aborted` (retryable), the rest is internal.
    fn from(error: sqlx::Error) -> Self {
        match classify(&error) {
            DbErrorKind::Unavailable => {
                tracing::warn!(error = %error, "database unavailable");
                Self::Unavailable("database unavailable, retry later".into())
            }
            DbErrorKind::Serialization => {
                Self::Aborted("concurrent update, retry the request".into())
            }
            _ => Self::Internal(error.into()),
        }
    }
}

impl From<ApiError> for Status {
    fn from(error: ApiError) -> Self {
        match error {
            ApiError::InvalidArgument(violations) => {
                let message = format!("invalid argument: {}", describe(&violations));
                let details = ErrorDetails::with_bad_request(
                    violations
                        .into_iter()
                        .map(|v| FieldViolation::new(v.field, v.description))
                        .collect::<Vec<_>>(),
                );
                Status::with_error_details(Code::InvalidArgument, message, details)
            }
            ApiError::NotFound(m) => Status::not_found(m),
            ApiError::AlreadyExists(m) => Status::already_exists(m),
            ApiError::FailedPrecondition(m) => Status::failed_precondition(m),
            ApiError::Aborted(m) => Status::aborted(m),
            ApiError::PermissionDenied(m) => Status::permission_denied(m),
            ApiError::Unauthenticated(m) => Status::unauthenticated(m),
            ApiError::ResourceExhausted(m) => Status::resource_exhausted(m),
            ApiError::Unavailable(m) => Status::unavailable(m),
            ApiError::Internal(error) => {
                // Logged once here, where it is mapped; the client sees nothing internal.
                tracing::error!(error = format!("{error:#}"), "internal error");
                Status::internal("internal error")
            }
        }
    }
}

/// The field violations carried by a `Status`, for tests and for callers that relay errors.
pub fn field_violations(status: &Status) -> Vec<Violation> {
    status
        .get_details_bad_request()
        .map(|bad_request| {
            bad_request
                .field_violations
                .into_iter()
                .map(|v| Violation::new(v.field, v.description))
                .collect()
        })
        .unwrap_or_default()
}

/// The canonical name of a gRPC status code, as in the gRPC specification.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number(field: &str, text: &str) -> Result<u32, Violation> {
        text.parse()
            .map_err(|_| Violation::new(field, "must be a whole number"))
    }

    #[test]
    fn build_reports_every_violation_in_one_pass() {
        let mut v = Violations::new();
        let a = v.check(number("a", "x"));
        let b = v.check(number("b", "2"));
        let c = v.check(number("c", "y"));
        let Err(ApiError::InvalidArgument(found)) = v.build(|| Some((a?, b?, c?))) else {
            panic!("two bad fields must fail the parse");
        };
        let fields: Vec<_> = found.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["a", "c"]);
    }

    #[test]
    fn nested_keeps_a_part_only_when_it_added_no_violation() {
        let mut v = Violations::new();
        let good = v.nested(|v| v.check(number("range.start", "1")));
        let bad = v.nested(|v| {
            v.add("range.end", "must follow range.start");
            Some(2)
        });
        assert_eq!((good, bad), (Some(1), None));
        assert!(v.finish().is_err());
    }
}
