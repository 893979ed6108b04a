//! How one attempt to send an e-mail ended, whatever the transport: below both the SMTP
//! client and the transports that use it.

use crate::domain::Outcome;

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Sent {
    /// Delivered, transient or permanent failure.
    pub outcome: Outcome,
    /// The SMTP reply code; 0 when there was none.
    pub smtp_code: i32,
    /// The server's reply or what went wrong.
    pub detail: String,
}

impl Sent {
    /// A delivery.
    pub(crate) fn delivered(smtp_code: i32, detail: impl Into<String>) -> Self {
        Self {
            outcome: Outcome::Delivered,
            smtp_code,
            detail: detail.into(),
        }
    }

    /// A transient failure.
    pub(crate) fn transient(smtp_code: i32, detail: impl Into<String>) -> Self {
        Self {
            outcome: Outcome::TransientFailure,
            smtp_code,
            detail: detail.into(),
        }
    }

    /// A permanent failure.
    pub(crate) fn permanent(smtp_code: i32, detail: impl Into<String>) -> Self {
        Self {
            outcome: Outcome::PermanentFailure,
            smtp_code,
            detail: detail.into(),
        }
    }
}

/// A failed SMTP attempt: 5xx replies are permanent, 4xx replies transient (with their
/// code); without a reply (connection refused or lost, timeout, TLS, a reply that cannot be
/// read) it is transient with code 0.
pub(crate) fn classify(error: &lettre::transport::smtp::Error) -> Sent {
    let code = error.status().map_or(0, |code| i32::from(u16::from(code)));
    let detail = error.to_string();
    if error.is_permanent() {
        Sent::permanent(code, detail)
    } else {
        Sent::transient(code, detail)
    }
}
