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

    /// `Ok(())` when nothing was recorded, else `ApiError::InvalidArgument`.
    pub fn finish(self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::InvalidArgument(self.0))
        }
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
        match crate::db::classify(&error) {
            crate::db::DbErrorKind::Unavailable => {
                tracing::warn!(error = %error, "database unavailable");
                Self::Unavailable("database unavailable, retry later".into())
            }
            crate::db::DbErrorKind::Serialization => {
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
