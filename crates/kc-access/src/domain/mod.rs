//! The access management domain: tool and support levels (T1, U1–U4), effective rights
//! (T3), permission checks, the rules on every change of rights (T4, U4–U6), approvers and
//! approvals (A3, A4), domain policy baselines (A7), and the service's operations with their
//! transaction boundaries.
//!
//! [`levels`] and [`rights`] are pure (values in, decisions out, no I/O) and live in the
//! shared `kc-rights` crate, which the contact registry decides authority with too (T8).
//! [`values`] parses request fields, [`commands`] holds the parsed requests (with the shape
//! rules of a request for access), [`actor`] who acts, and [`service`] runs each operation as
//! one transaction over storage.

pub use kc_rights::{levels, rights};
pub mod actor;
pub mod blocks;
pub mod commands;
pub mod ends;
pub mod service;
pub mod values;

use chrono::{DateTime, Utc};
use kc_runtime::{ApiError, Violation};
use serde::Serialize;
use uuid::Uuid;

pub use crate::storage::effective::{Holders, Holding};
pub use actor::{Actor, ActorKind};
pub use levels::{
    AccountDocumentsAccess, AccountManagementAccess, ContactUpdatesAccess, EntitlementsAccess,
    ManageAccess, ReportingAccess, SoftwareAccess, SupportLevel, Tool, ToolAccess, ToolLevel,
};
pub use rights::{
    AccessRequestKind, Approver, ContactRole, Decision, Effective, Grants, Member, Permission,
    Requirement, RoleSet, RuleViolation, SiteFacts, Subject, approvers, baseline_grant,
    check_approval, check_decider, check_domain_baseline, check_not_own_request, check_revoke,
    check_self_grant, check_support_change, check_tool_change,
};
pub use service::{Access, AccessSettings, Page};

/// The reason of a check on a site the projection does not know.
pub const UNKNOWN_SITE_REASON: &str = "unknown site: access management knows no site with this id";

/// What the projection knows of a site: its numbers and the facts rights depend on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    /// Id (the contact registry's).
    pub site_id: Uuid,
    /// Site number.
    pub site_number: String,
    /// Customer number.
    pub customer_number: String,
    /// The C3 switch and whether someone holds SITE_TECHNICAL.
    pub facts: SiteFacts,
}

/// The rights of one user on one site, with the version of its explicit grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// Site id.
    pub site_id: Uuid,
    /// Site number.
    pub site_number: String,
    /// User id.
    pub user_id: Uuid,
    /// Effective rights, explicit grants and the roles that imply rights (T3).
    pub effective: Effective,
    /// Version of the explicit grants, the etag; 0 when nothing was ever granted.
    pub version: i64,
    /// Who last changed the explicit grants; `None` when nobody did or a domain policy did.
    pub updated_by: Option<Uuid>,
    /// When the explicit grants last changed; `None` when they never did.
    pub update_time: Option<DateTime<Utc>>,
    /// When the explicit grants end (T9); `None` when they do not, or hold nothing.
    pub valid_until: Option<DateTime<Utc>>,
    /// When the explicit grants start (T9), while they have not; `None` once they count.
    pub valid_from: Option<DateTime<Utc>>,
    /// The explicit grants as stored while they have not started (T9); `None` once they
    /// count.
    pub pending: Option<Grants>,
}

impl Profile {
    /// The etag clients send back.
    pub fn etag(&self) -> String {
        self.version.to_string()
    }
}

/// The lifecycle state of an access request (A6). Discriminants are the proto numbers,
/// which the database stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RequestState {
    /// Waiting for an approver.
    Pending = 1,
    /// Approved; the granted levels are in effect.
    Approved = 2,
    /// Rejected with a reason.
    Rejected = 3,
    /// Withdrawn by its requester.
    Cancelled = 4,
    /// Left pending past the configured age.
    Expired = 5,
}

impl RequestState {
    /// Every state.
    pub const ALL: [RequestState; 5] = [
        Self::Pending,
        Self::Approved,
        Self::Rejected,
        Self::Cancelled,
        Self::Expired,
    ];

    /// The state of a proto (and stored) number; `None` for 0 or unknown numbers.
    pub fn from_number(number: i32) -> Option<Self> {
        Self::ALL.into_iter().find(|state| *state as i32 == number)
    }

    /// The proto (and stored) number.
    pub fn number(self) -> i32 {
        self as i32
    }

    /// Upper-case name, e.g. `APPROVED`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Approved => "APPROVED",
            Self::Rejected => "REJECTED",
            Self::Cancelled => "CANCELLED",
            Self::Expired => "EXPIRED",
        }
    }
}

impl std::fmt::Display for RequestState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A user's request for access to a site, or for a higher level on it (A1, A5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessRequest {
    /// Id (UUID v7: newer requests sort higher).
    pub request_id: Uuid,
    /// Site asked for.
    pub site_id: Uuid,
    /// Its site number.
    pub site_number: String,
    /// Requester.
    pub requester_id: Uuid,
    /// What is asked for.
    pub kind: AccessRequestKind,
    /// The levels asked for: tools for SITE_ACCESS, support for SUPPORT_ACCESS; the rest NONE.
    pub requested: Grants,
    /// The requester's justification.
    pub justification: String,
    /// State (A6).
    pub state: RequestState,
    /// Approver who decided; `None` while pending, when cancelled, expired, or approved by a
    /// domain policy.
    pub decided_by: Option<Uuid>,
    /// Levels granted when approved.
    pub granted: Option<Grants>,
    /// Reason of a rejection, or the approver's note.
    pub decision_reason: Option<String>,
    /// Domain of the policy that matched the requester's verified login e-mail (A7).
    pub matched_domain: Option<String>,
    /// Whether a domain policy approved it at once (A7).
    pub auto_approved: bool,
    /// Submission time.
    pub create_time: DateTime<Utc>,
    /// Decision, cancellation or expiry time.
    pub decide_time: Option<DateTime<Utc>>,
    /// When it expires while pending.
    pub expire_time: DateTime<Utc>,
    /// Version, the etag.
    pub version: i64,
}

impl AccessRequest {
    /// The etag clients send back.
    pub fn etag(&self) -> String {
        self.version.to_string()
    }
}

/// How a site treats access requests from one e-mail domain (A7). Discriminants are the
/// proto numbers, which the database stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PolicyMode {
    /// Requests wait for an approver (the default).
    Manual = 1,
    /// Requests wait for an approver, marked as matching the domain.
    AutoPending = 2,
    /// Requests are approved at once with the baseline (never more than asked).
    AutoApprove = 3,
}

impl PolicyMode {
    /// Every mode.
    pub const ALL: [PolicyMode; 3] = [Self::Manual, Self::AutoPending, Self::AutoApprove];

    /// The mode of a proto (and stored) number; `None` for 0 or unknown numbers.
    pub fn from_number(number: i32) -> Option<Self> {
        Self::ALL.into_iter().find(|mode| *mode as i32 == number)
    }

    /// The proto (and stored) number.
    pub fn number(self) -> i32 {
        self as i32
    }
}

/// An e-mail domain policy of a site (A7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DomainPolicy {
    /// Site.
    pub site_id: Uuid,
    /// Lower-case e-mail domain, e.g. `example.com`.
    pub domain: String,
    /// What happens to requests from the domain.
    pub mode: PolicyMode,
    /// Levels granted or proposed to matching requesters, never more than they asked.
    pub baseline: Grants,
    /// Version, the etag.
    pub version: i64,
    /// Who last changed it.
    pub updated_by: Uuid,
    /// When.
    pub update_time: DateTime<Utc>,
}

impl DomainPolicy {
    /// The etag clients send back.
    pub fn etag(&self) -> String {
        self.version.to_string()
    }
}

/// One appended audit record: the suite's shared shape (L1, T5).
pub use kc_runtime::audit::AuditRecord;

/// Everything that can go wrong in access management, mapped exhaustively onto the API
/// categories.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// The request is malformed.
    #[error("invalid request")]
    Invalid(Vec<Violation>),
    /// The projection knows no such site (yet: it follows the contact registry's stream).
    #[error("site not found")]
    SiteNotFound,
    /// S3: the site number and customer number do not match one site. Deliberately does not
    /// say which one was wrong.
    #[error("no site matches this site number and customer number")]
    NoMatchingSite,
    /// No such access request.
    #[error("access request not found")]
    RequestNotFound,
    /// The site already blocks this address or domain.
    #[error("the site already blocks this e-mail address or domain")]
    BlockExists,
    /// The site does not block this address or domain.
    #[error("the site does not block this e-mail address or domain")]
    BlockNotFound,
    /// A6: the requester already has a pending request of this kind on the site.
    #[error(
        "rule A6: the user already has a PENDING {0} request on this site; wait for its decision or cancel it"
    )]
    PendingRequestExists(AccessRequestKind),
    /// I1: the user a grant or a request is for has no proven address, or is not active
    /// (disabled, or not yet known to the projection of identity's users).
    #[error("rule I1: {message}")]
    Unproven {
        /// The user concerned.
        user_id: Uuid,
        /// What is refused, in words.
        message: &'static str,
    },
    /// A rule of DOMAIN.md forbids the change.
    #[error(transparent)]
    Rule(#[from] RuleViolation),
    /// The etag does not match the current version.
    #[error("{0} changed since it was read (etag mismatch)")]
    EtagMismatch(&'static str),
    /// Two decisions raced and this one lost.
    #[error("the access request was decided concurrently; read it again")]
    LostRace,
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// The database refused or failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// Anything unexpected.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl AccessError {
    /// A rule violation citing `rule`, e.g. `rule("A6", "…")`.
    pub fn rule(rule: &'static str, message: impl Into<String>) -> Self {
        Self::Rule(RuleViolation {
            rule,
            message: message.into(),
        })
    }
}

impl From<Violation> for AccessError {
    fn from(violation: Violation) -> Self {
        Self::Invalid(vec![violation])
    }
}

impl From<AccessError> for ApiError {
    fn from(error: AccessError) -> Self {
        let message = error.to_string();
        match error {
            AccessError::Invalid(violations) => ApiError::InvalidArgument(violations),
            AccessError::SiteNotFound
            | AccessError::NoMatchingSite
            | AccessError::RequestNotFound
            | AccessError::BlockNotFound => ApiError::NotFound(message),
            AccessError::PendingRequestExists(_) | AccessError::BlockExists => {
                ApiError::AlreadyExists(message)
            }
            AccessError::Rule(_) | AccessError::Unproven { .. } => {
                ApiError::FailedPrecondition(message)
            }
            AccessError::EtagMismatch(_) | AccessError::LostRace => ApiError::Aborted(message),
            AccessError::Forbidden(_) => ApiError::PermissionDenied(message),
            AccessError::Database(error) => ApiError::from(error),
            AccessError::Internal(error) => ApiError::Internal(error),
        }
    }
}

impl From<AccessError> for tonic::Status {
    fn from(error: AccessError) -> Self {
        ApiError::from(error).into()
    }
}

/// Result of the access domain.
pub type Result<T, E = AccessError> = std::result::Result<T, E>;

#[cfg(test)]
mod rule_tests {
    use super::*;

    /// Every reason the rights model gives names a rule id the API can return on its own.
    #[test]
    fn every_reason_has_a_rule() {
        let roles = [
            RoleSet::EMPTY,
            RoleSet::of(&[ContactRole::Primary]),
            RoleSet::of(&[ContactRole::Administrative]),
            RoleSet::of(&[ContactRole::SiteTechnical]),
            RoleSet::of(&[ContactRole::Secondary]),
            RoleSet::of(&[ContactRole::SiteUser]),
        ];
        let explicit = [
            Grants::NONE,
            Grants {
                tools: ToolAccess {
                    software: SoftwareAccess::DownloadsOnly,
                    ..ToolAccess::NONE
                },
                support: SupportLevel::Basic,
            },
        ];
        let known = ["T1", "T3", "U5", "R1", "I1, I4"];
        for roles in roles {
            for explicit in explicit {
                for disabled in [false, true] {
                    for has_site_technical in [false, true] {
                        let facts = SiteFacts {
                            admin_may_manage_access: true,
                            has_site_technical,
                        };
                        let subject = Subject {
                            roles,
                            explicit,
                            disabled,
                        };
                        let effective = Effective::of(&subject, facts);
                        for permission in Permission::ALL {
                            let decision = effective.check(permission);
                            let rule = decision.rule;
                            assert!(known.contains(&rule), "{rule:?} of {:?}", decision.reason);
                        }
                    }
                }
            }
        }
        let stc = Effective::of(
            &Subject {
                roles: RoleSet::of(&[ContactRole::SiteTechnical]),
                ..Subject::default()
            },
            SiteFacts::default(),
        );
        let decision = stc.check(Permission::SupportAdmin);
        assert_eq!(decision.reason, "implied by SITE_TECHNICAL (U5)");
        assert_eq!(decision.rule, "U5");
        let primary = Effective::of(
            &Subject {
                roles: RoleSet::of(&[ContactRole::Primary]),
                ..Subject::default()
            },
            SiteFacts::default(),
        )
        .check(Permission::SupportAdmin);
        assert_eq!(
            (primary.reason.as_str(), primary.rule),
            ("implied by PRIMARY (R1: no SITE_TECHNICAL contact)", "R1")
        );
    }
}
