//! The gateway's errors and their one mapping to `tonic::Status`.
//!
//! Errors of the internal services come back to the caller with their code, message and
//! details (field violations) intact. Failures of the gateway's own calls (a service that is
//! down, a connection refused, the gateway's own credentials refused) become `Unavailable`
//! without any internal text; a call that ran out of time is `DeadlineExceeded` when the
//! caller set the deadline, else `Unavailable`. A write that committed but is not yet in
//! effect in the other service (rule T8) is `Unavailable` saying so.

use std::time::Duration;

use kc_runtime::{ApiError, Violation};
use tonic::codegen::Bytes;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::downstream::Svc;
use crate::ratelimit::WriteClass;

/// Why a gateway call failed.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The request is malformed; one entry per invalid field.
    #[error("invalid argument: {0:?}")]
    InvalidArgument(Vec<Violation>),
    /// The caller may not do this (or may not know the object exists).
    #[error("{0}")]
    PermissionDenied(String),
    /// A signed-in person asked about a site where it holds no permission at all, or a site
    /// that does not exist (the same answer, I2): PERMISSION_DENIED with the self-nomination
    /// signal ([`NO_SITE_ACCESS`]).
    #[error("{0}")]
    NoSiteAccess(String),
    /// The named object does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A rule refuses the change in the state things are in (the message cites it).
    #[error("{0}")]
    FailedPrecondition(String),
    /// Too many session calls from one address.
    #[error("rate limited for {retry_after:?}")]
    RateLimited {
        /// When a token is free again.
        retry_after: Duration,
    },
    /// Too many writes of one class by one signed-in caller.
    #[error("{class:?} writes limited for {retry_after:?}")]
    TooManyWrites {
        /// The limit reached.
        class: WriteClass,
        /// When a token is free again.
        retry_after: Duration,
    },
    /// An internal service answered with an error (or could not be reached).
    #[error("{service}: {status}")]
    Downstream {
        /// The service called.
        service: Svc,
        /// What it answered, or the transport failure.
        status: Status,
        /// Whether the call carried the gateway's own service token (not the caller's).
        gateway_credentials: bool,
    },
    /// An internal service did not answer before the deadline.
    #[error("{service} did not answer in time")]
    Timeout {
        /// The service called.
        service: Svc,
        /// Whether the caller set the deadline.
        caller_deadline: bool,
    },
    /// The deadline passed before the next internal call could start.
    #[error("deadline exceeded")]
    DeadlineExceeded,
    /// A write committed, but `awaited` did not confirm in time that it applied the write's
    /// revision (rule T8): its next decision may not see the change yet.
    #[error("committed, but {awaited} has not applied it yet")]
    NotYetInEffect {
        /// The service that was awaited.
        awaited: Svc,
    },
    /// The answer would be too large to compose.
    #[error("{0}")]
    ResourceExhausted(String),
    /// A bug or an unexpected answer; the details are logged, never sent.
    #[error("internal error: {0:#}")]
    Internal(#[source] anyhow::Error),
}

impl GatewayError {
    /// The same error for another caller of one shared internal call (a batch of checks):
    /// what a call through the clients fails with is copied as is; anything else becomes
    /// `Internal` with the same text.
    pub(crate) fn duplicate(&self) -> Self {
        match self {
            Self::Downstream {
                service,
                status,
                gateway_credentials,
            } => Self::Downstream {
                service: *service,
                status: status.clone(),
                gateway_credentials: *gateway_credentials,
            },
            Self::Timeout {
                service,
                caller_deadline,
            } => Self::Timeout {
                service: *service,
                caller_deadline: *caller_deadline,
            },
            Self::DeadlineExceeded => Self::DeadlineExceeded,
            other => Self::Internal(anyhow::anyhow!("{other}")),
        }
    }

    /// A single-field `InvalidArgument`.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::InvalidArgument(vec![Violation::new(field, description)])
    }

    /// An answer of `service` that lacks a field it always sends.
    pub fn missing(service: Svc, field: &str) -> Self {
        Self::Internal(anyhow::anyhow!("{service} answered without {field}"))
    }

    /// The same error with the field paths of its violations (its own, or those an internal
    /// service sent) renamed: `(from, to)` renames `from` and `from.*` to `to` and `to.*`,
    /// so that they name the fields of the gateway's request.
    pub fn rename_fields(self, renames: &[(&str, &str)]) -> Self {
        self.map_fields(|field| {
            for (from, to) in renames {
                if field == *from {
                    return (*to).to_owned();
                }
                if let Some(rest) = field.strip_prefix(from).and_then(|r| r.strip_prefix('.')) {
                    return format!("{to}.{rest}");
                }
            }
            field.to_owned()
        })
    }

    /// The same error with `prefix.` before the field path of each violation.
    pub fn prefix_fields(self, prefix: &str) -> Self {
        self.map_fields(|field| format!("{prefix}.{field}"))
    }

    fn map_fields(self, rename: impl Fn(&str) -> String) -> Self {
        let violations = match self {
            Self::InvalidArgument(violations) => violations,
            Self::Downstream { ref status, .. }
                if status.code() == Code::InvalidArgument && !is_transport_failure(status) =>
            {
                let violations = kc_runtime::error::field_violations(status);
                if violations.is_empty() {
                    return self;
                }
                violations
            }
            other => return other,
        };
        Self::InvalidArgument(
            violations
                .into_iter()
                .map(|v| Violation::new(rename(&v.field), v.description))
                .collect(),
        )
    }

    /// The gRPC code the caller will see.
    pub fn code(&self) -> Code {
        match self {
            Self::InvalidArgument(_) => Code::InvalidArgument,
            Self::PermissionDenied(_) | Self::NoSiteAccess(_) => Code::PermissionDenied,
            Self::NotFound(_) => Code::NotFound,
            Self::FailedPrecondition(_) => Code::FailedPrecondition,
            Self::RateLimited { .. } | Self::TooManyWrites { .. } | Self::ResourceExhausted(_) => {
                Code::ResourceExhausted
            }
            Self::Downstream {
                status,
                gateway_credentials,
                ..
            } => downstream_code(status, *gateway_credentials),
            Self::Timeout {
                caller_deadline, ..
            } => {
                if *caller_deadline {
                    Code::DeadlineExceeded
                } else {
                    Code::Unavailable
                }
            }
            Self::DeadlineExceeded => Code::DeadlineExceeded,
            Self::NotYetInEffect { .. } => Code::Unavailable,
            Self::Internal(_) => Code::Internal,
        }
    }
}

impl From<Violation> for GatewayError {
    fn from(violation: Violation) -> Self {
        Self::InvalidArgument(vec![violation])
    }
}

/// Whether `status` was made by the gateway's own transport (connection refused, reset,
/// timeout) rather than sent by the service: tonic keeps the cause of those as a source.
pub(crate) fn is_transport_failure(status: &Status) -> bool {
    std::error::Error::source(status).is_some()
}

/// The code the caller sees for an answer of a service.
fn downstream_code(status: &Status, gateway_credentials: bool) -> Code {
    if is_transport_failure(status) {
        return Code::Unavailable;
    }
    match status.code() {
        // The gateway's own token refused: a deployment problem, not the caller's.
        Code::Unauthenticated if gateway_credentials => Code::Unavailable,
        code => code,
    }
}

impl From<GatewayError> for Status {
    fn from(error: GatewayError) -> Self {
        let code = error.code();
        match error {
            GatewayError::InvalidArgument(violations) => {
                ApiError::InvalidArgument(violations).into()
            }
            GatewayError::PermissionDenied(message) => Status::permission_denied(message),
            GatewayError::NoSiteAccess(message) => Status::with_error_details(
                Code::PermissionDenied,
                message,
                ErrorDetails::with_error_info(
                    NO_SITE_ACCESS,
                    ERROR_DOMAIN,
                    [("self_nominate".to_owned(), SELF_NOMINATE_METHOD.to_owned())],
                ),
            ),
            GatewayError::NotFound(message) => Status::not_found(message),
            GatewayError::FailedPrecondition(message) => Status::failed_precondition(message),
            GatewayError::RateLimited { retry_after } => {
                retry_later("too many session requests from this address", retry_after)
            }
            GatewayError::TooManyWrites { class, retry_after } => retry_later(
                match class {
                    WriteClass::AccessRequest => {
                        "too many access requests and cancellations by this account"
                    }
                    WriteClass::Mail => "too many changes that send mail by this account",
                },
                retry_after,
            ),
            GatewayError::Downstream {
                service, status, ..
            } => {
                if code == status.code() && !is_transport_failure(&status) {
                    // As the service sent it: code, message and details.
                    Status::with_details(
                        status.code(),
                        status.message(),
                        Bytes::copy_from_slice(status.details()),
                    )
                } else {
                    tracing::warn!(
                        service = service.name(),
                        code = ?status.code(),
                        error = %status,
                        "internal service unavailable"
                    );
                    Status::unavailable(format!("{service} unavailable, retry later"))
                }
            }
            GatewayError::Timeout { service, .. } => {
                tracing::warn!(
                    service = service.name(),
                    "internal service did not answer in time"
                );
                if code == Code::DeadlineExceeded {
                    Status::deadline_exceeded(format!(
                        "deadline exceeded while waiting for {service}"
                    ))
                } else {
                    Status::unavailable(format!("{service} did not answer in time, retry later"))
                }
            }
            GatewayError::DeadlineExceeded => Status::deadline_exceeded("deadline exceeded"),
            GatewayError::NotYetInEffect { awaited } => Status::unavailable(format!(
                "rule T8: the change is committed but not yet in effect everywhere ({awaited} \
                 has not applied it yet); do not repeat it, retry what depends on it shortly"
            )),
            GatewayError::ResourceExhausted(message) => Status::resource_exhausted(message),
            GatewayError::Internal(error) => ApiError::Internal(error).into(),
        }
    }
}

/// `google.rpc.ErrorInfo.reason` of a refusal on a site where the caller holds nothing:
/// clients show the seed's self-nomination screen, whose call the metadata names.
pub(crate) const NO_SITE_ACCESS: &str = "NO_SITE_ACCESS";
/// `google.rpc.ErrorInfo.domain` of the suite's errors.
pub(crate) const ERROR_DOMAIN: &str = "keycontacts";
/// The call that asks for access to a site (A1), named in [`NO_SITE_ACCESS`]'s metadata.
pub(crate) const SELF_NOMINATE_METHOD: &str = "keycontacts.gateway.v1.GatewayService/SelfNominate";

/// `RESOURCE_EXHAUSTED` saying `what`, the whole seconds to wait, and a
/// `google.rpc.RetryInfo` with the exact wait.
fn retry_later(what: &str, retry_after: Duration) -> Status {
    let seconds = retry_after.as_secs_f64().ceil().max(1.0);
    Status::with_error_details(
        Code::ResourceExhausted,
        format!("{what}; retry in {seconds} s"),
        ErrorDetails::with_retry_info(Some(retry_after)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn downstream(status: Status, gateway_credentials: bool) -> Status {
        GatewayError::Downstream {
            service: Svc::Contacts,
            status,
            gateway_credentials,
        }
        .into()
    }

    #[test]
    fn service_errors_pass_through_with_their_details() {
        let sent: Status = ApiError::invalid("details.phone", "not a phone number").into();
        let seen = downstream(sent, true);
        assert_eq!(seen.code(), Code::InvalidArgument);
        let violations = kc_runtime::error::field_violations(&seen);
        assert_eq!(
            violations,
            vec![Violation::new("details.phone", "not a phone number")]
        );
        let rule = downstream(Status::failed_precondition("rule C1: no"), false);
        assert_eq!(
            (rule.code(), rule.message()),
            (Code::FailedPrecondition, "rule C1: no")
        );
    }

    #[test]
    fn field_paths_are_renamed_to_the_gateways_request() {
        let sent: Status = ApiError::InvalidArgument(vec![
            Violation::new("primary_details.phone", "not a phone number"),
            Violation::new("primary_user_id", "required"),
            Violation::new("name", "required"),
        ])
        .into();
        let error = GatewayError::Downstream {
            service: Svc::Contacts,
            status: sent,
            gateway_credentials: false,
        }
        .rename_fields(&[
            ("primary_details", "primary_contact.details"),
            ("primary_user_id", "primary_contact"),
        ]);
        let seen: Status = error.into();
        assert_eq!(
            kc_runtime::error::field_violations(&seen),
            vec![
                Violation::new("primary_contact.details.phone", "not a phone number"),
                Violation::new("primary_contact", "required"),
                Violation::new("name", "required"),
            ]
        );
        let prefixed: Status = GatewayError::invalid("email", "required")
            .prefix_fields("primary_contact")
            .into();
        assert_eq!(
            kc_runtime::error::field_violations(&prefixed),
            vec![Violation::new("primary_contact.email", "required")]
        );
        let other = GatewayError::NotFound("x".into()).prefix_fields("p");
        assert_eq!(other.code(), Code::NotFound);
    }

    #[test]
    fn transport_failures_and_refused_gateway_tokens_are_unavailable() {
        let refused = Status::from_error(Box::new(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "tcp connect error 10.0.0.1:50052",
        )));
        let seen = downstream(refused, true);
        assert_eq!(seen.code(), Code::Unavailable);
        assert!(
            !seen.message().contains("10.0.0.1"),
            "no internal text: {}",
            seen.message()
        );
        let token = downstream(Status::unauthenticated("bad token"), true);
        assert_eq!(token.code(), Code::Unavailable);
        let forwarded = downstream(Status::unauthenticated("token expired"), false);
        assert_eq!(forwarded.code(), Code::Unauthenticated);
    }

    #[test]
    fn timeouts_follow_who_set_the_deadline() {
        let caller: Status = GatewayError::Timeout {
            service: Svc::Access,
            caller_deadline: true,
        }
        .into();
        assert_eq!(caller.code(), Code::DeadlineExceeded);
        let default: Status = GatewayError::Timeout {
            service: Svc::Access,
            caller_deadline: false,
        }
        .into();
        assert_eq!(default.code(), Code::Unavailable);
        let limited: Status = GatewayError::RateLimited {
            retry_after: Duration::from_millis(2500),
        }
        .into();
        assert_eq!(limited.code(), Code::ResourceExhausted);
        assert!(limited.get_details_retry_info().is_some());
        assert!(limited.message().contains("retry in 3 s"), "{limited:?}");
        let writes: Status = GatewayError::TooManyWrites {
            class: WriteClass::AccessRequest,
            retry_after: Duration::from_secs(120),
        }
        .into();
        assert_eq!(writes.code(), Code::ResourceExhausted);
        assert_eq!(
            writes
                .get_details_retry_info()
                .and_then(|info| info.retry_delay),
            Some(Duration::from_secs(120))
        );
    }
}
