//! The errors of `kc` and their exit codes.
//!
//! Every failure ends the program with one line on stderr, `error: <message>`, and one of
//! the exit codes below (documented in the crate's README). A gRPC status keeps the
//! gateway's message (which cites the rule, e.g. `rule C6: …`) and the field violations of
//! its `google.rpc.BadRequest` details when the message does not already carry them.

use std::fmt;
use std::process::ExitCode;

use tonic::{Code, Status};
use tonic_types::StatusExt;

/// How a command ended in failure; each kind has its own exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Anything else (exit code 1): an I/O error, a broken answer, an internal error.
    Other,
    /// The command line itself is wrong (exit code 2); clap uses the same code.
    Usage,
    /// Not signed in, or the session ended (exit code 3): run `kc login`.
    Unauthenticated,
    /// The gateway refused the call to this caller (exit code 4).
    PermissionDenied,
    /// The site, contact, request or user does not exist (exit code 5).
    NotFound,
    /// The gateway refused the request as invalid, or a rule refused the change (exit
    /// code 6): INVALID_ARGUMENT, FAILED_PRECONDITION, ALREADY_EXISTS, ABORTED, OUT_OF_RANGE.
    Refused,
    /// The gateway or a service behind it cannot answer now (exit code 7): UNAVAILABLE,
    /// DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED (rate limits), or no connection at all.
    Unavailable,
}

impl ErrorKind {
    /// The process exit code of this kind.
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorKind::Other => 1,
            ErrorKind::Usage => 2,
            ErrorKind::Unauthenticated => 3,
            ErrorKind::PermissionDenied => 4,
            ErrorKind::NotFound => 5,
            ErrorKind::Refused => 6,
            ErrorKind::Unavailable => 7,
        }
    }

    /// The kind of a gRPC status code.
    pub fn of_code(code: Code) -> Self {
        match code {
            Code::Unauthenticated => ErrorKind::Unauthenticated,
            Code::PermissionDenied => ErrorKind::PermissionDenied,
            Code::NotFound => ErrorKind::NotFound,
            Code::InvalidArgument
            | Code::FailedPrecondition
            | Code::AlreadyExists
            | Code::Aborted
            | Code::OutOfRange => ErrorKind::Refused,
            Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted => {
                ErrorKind::Unavailable
            }
            _ => ErrorKind::Other,
        }
    }
}

/// A failed command: what to print and which exit code to end with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError {
    kind: ErrorKind,
    message: String,
}

/// The result of a command.
pub type Result<T, E = CliError> = std::result::Result<T, E>;

impl CliError {
    /// An error of a kind, with its one-line message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: one_line(&message.into()),
        }
    }

    /// A wrong command line or argument value (exit code 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Usage, message)
    }

    /// Not signed in (exit code 3).
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unauthenticated, message)
    }

    /// Something that does not exist (exit code 5).
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    /// Any other failure (exit code 1).
    pub fn other(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Other, message)
    }

    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The one-line message, without the `error: ` prefix.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The process exit code.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.kind.exit_code())
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

impl From<Status> for CliError {
    /// The status's message, with the field violations of its `BadRequest` details that the
    /// message does not already name.
    fn from(status: Status) -> Self {
        let kind = ErrorKind::of_code(status.code());
        let mut message = status.message().trim().to_owned();
        if message.is_empty() {
            message = status.code().description().to_owned();
        }
        if status.code() == Code::Unavailable && message.contains("transport error") {
            message = format!("the gateway cannot be reached ({message})");
        }
        if let Some(bad_request) = status.get_details_bad_request() {
            let missing: Vec<String> = bad_request
                .field_violations
                .iter()
                .map(|v| format!("{}: {}", v.field, v.description))
                .filter(|text| !message.contains(text.as_str()))
                .collect();
            if !missing.is_empty() {
                message = format!("{message} ({})", missing.join("; "));
            }
        }
        if kind == ErrorKind::Unauthenticated && !message.contains("kc login") {
            message = format!("{message} (run `kc login`)");
        }
        CliError::new(kind, message)
    }
}

impl From<tonic::transport::Error> for CliError {
    fn from(error: tonic::transport::Error) -> Self {
        CliError::new(
            ErrorKind::Unavailable,
            format!("the gateway cannot be reached: {}", chain(&error)),
        )
    }
}

impl From<std::io::Error> for CliError {
    fn from(error: std::io::Error) -> Self {
        CliError::other(error.to_string())
    }
}

/// The error and its sources, joined by `: `.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The text on one line: line breaks and runs of blanks become one space.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::{ErrorDetails, FieldViolation};

    #[test]
    fn a_rule_refusal_keeps_its_message_and_is_refused() {
        let error = CliError::from(Status::failed_precondition(
            "rule C6: a site may have at most 4 secondary contacts",
        ));
        assert_eq!(
            error.message(),
            "rule C6: a site may have at most 4 secondary contacts"
        );
        assert_eq!(error.kind().exit_code(), 6);
    }

    #[test]
    fn field_violations_missing_from_the_message_are_appended_once() {
        let details = ErrorDetails::with_bad_request(vec![
            FieldViolation::new("email", "not an e-mail address"),
            FieldViolation::new("role", "required"),
        ]);
        let status = Status::with_error_details(
            Code::InvalidArgument,
            "invalid argument: email: not an e-mail address",
            details,
        );
        let error = CliError::from(status);
        assert_eq!(
            error.message(),
            "invalid argument: email: not an e-mail address (role: required)"
        );
    }

    #[test]
    fn unauthenticated_points_at_login() {
        let error = CliError::from(Status::unauthenticated("token expired"));
        assert_eq!(error.message(), "token expired (run `kc login`)");
        assert_eq!(error.kind().exit_code(), 3);
    }

    #[test]
    fn messages_are_one_line() {
        assert_eq!(CliError::other("a\n  b\tc").message(), "a b c");
    }
}
