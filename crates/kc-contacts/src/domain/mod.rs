//! The contact registry domain: sites, contacts, their rules (S*, C*, R1, L1 of DOMAIN.md),
//! values and transaction boundaries.

pub mod authority;
pub mod commands;
pub mod compliance;
pub mod notification_email;
pub mod recipients;
pub mod recovery;
pub mod recovery_times;
pub mod roles;
pub mod service;
pub mod support_life;
pub mod values;

use chrono::{DateTime, NaiveDate, Utc};
use kc_runtime::paging::Page;
use kc_runtime::{ApiError, Violation};
use serde::Serialize;
use uuid::Uuid;

pub use roles::ContactRole;
pub use service::Registry;
use values::{CountryCode, CustomerNumber, Locale, SiteNumber, serialize_text};

/// The licensing program of a site.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Program {
    /// Passport Advantage.
    PassportAdvantage,
    /// Passport Advantage Express (C10).
    PassportAdvantageExpress,
}

impl Program {
    /// Name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PassportAdvantage => "passport_advantage",
            Self::PassportAdvantageExpress => "passport_advantage_express",
        }
    }

    /// Parses the stored name.
    pub fn from_db(text: &str) -> Option<Self> {
        match text {
            "passport_advantage" => Some(Self::PassportAdvantage),
            "passport_advantage_express" => Some(Self::PassportAdvantageExpress),
            _ => None,
        }
    }
}

/// A site as stored, with the user id of its primary contact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Site {
    /// Id.
    pub site_id: Uuid,
    /// Unique site number.
    #[serde(serialize_with = "serialize_text")]
    pub site_number: SiteNumber,
    /// Customer number.
    #[serde(serialize_with = "serialize_text")]
    pub customer_number: CustomerNumber,
    /// Name.
    pub name: String,
    /// ISO 3166-1 alpha-2 country code.
    #[serde(serialize_with = "serialize_text")]
    pub country_code: CountryCode,
    /// BCP-47 language.
    #[serde(serialize_with = "serialize_text")]
    pub language: Locale,
    /// Program.
    pub program: Program,
    /// Whether S&S is active.
    pub support_active: bool,
    /// Last day of S&S.
    pub support_end_date: Option<NaiveDate>,
    /// Business partner e-mail (C4).
    pub business_partner_email: Option<String>,
    /// C3 switch.
    pub admin_may_manage_access: bool,
    /// Whether it is the customer's original site.
    pub is_original_site: bool,
    /// User id of the primary contact.
    pub primary_user_id: Uuid,
    /// Version, the etag.
    pub version: i64,
    /// Creation time.
    pub create_time: DateTime<Utc>,
    /// Last change.
    pub update_time: DateTime<Utc>,
}

impl Site {
    /// The etag clients send back.
    pub fn etag(&self) -> String {
        self.version.to_string()
    }
}

/// Contact details (C9: the notification e-mail may differ from the login e-mail).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ContactDetails {
    /// E.164 phone number.
    pub phone: Option<String>,
    /// Job title.
    pub job_title: Option<String>,
    /// Notification e-mail. Of a stored contact: the confirmed one, which notices use (C11).
    /// Of a request: the one asked for, which waits for its owner's confirmation.
    pub notification_email: Option<String>,
}

/// One role held by one user on one site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Contact {
    /// Id.
    pub contact_id: Uuid,
    /// Site.
    pub site_id: Uuid,
    /// User holding the role.
    pub user_id: Uuid,
    /// Role.
    pub role: ContactRole,
    /// Details.
    pub details: ContactDetails,
    /// A notification e-mail asked for and not yet confirmed by its owner (C11).
    pub pending_notification_email: Option<String>,
    /// When the code mailed to the pending address expires.
    pub pending_expire_time: Option<DateTime<Utc>>,
    /// Version, the etag.
    pub version: i64,
    /// Creation time.
    pub create_time: DateTime<Utc>,
    /// Last change.
    pub update_time: DateTime<Utc>,
}

impl Contact {
    /// The etag clients send back.
    pub fn etag(&self) -> String {
        self.version.to_string()
    }
}

/// One person as the registry's projection of identity's users (`user_states`, followed
/// from identity's event stream) last saw it: what a page of a site's people shows of each
/// without asking identity. It is behind identity by the stream's delay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownPerson {
    /// User id.
    pub user_id: Uuid,
    /// Login e-mail, trimmed and lower case as identity keeps it.
    pub email: String,
    /// Name shown to people.
    pub display_name: String,
    /// Identity's `UserState` number: 1 ACTIVE, 2 INVITED, 3 DISABLED.
    pub state: i16,
}

/// A page of a site's contacts (ListSiteContacts) and, when asked for, the people of the
/// page that the registry's projection of identity's users knows, in user-id order.
#[derive(Debug, Clone)]
pub struct SiteContacts {
    /// The contacts.
    pub contacts: Page<Contact>,
    /// The known people of the page; empty unless asked for.
    pub people: Vec<KnownPerson>,
}

/// One appended audit record: the suite's shared shape (L1, T5).
pub use kc_runtime::audit::AuditRecord;

/// Everything that can go wrong in the registry, mapped exhaustively onto the API categories.
#[derive(Debug, thiserror::Error)]
pub enum ContactsError {
    /// The request is malformed.
    #[error("invalid request")]
    Invalid(Vec<Violation>),
    /// No such site.
    #[error("site not found")]
    SiteNotFound,
    /// No such contact.
    #[error("contact not found")]
    ContactNotFound,
    /// S3, I2: no site has this site number and customer number, or the person may not ask
    /// about it (C12). Deliberately does not say which.
    #[error("no site matches this site number and customer number")]
    NoMatchingSite,
    /// No such primary recovery, or one the caller may not see (C12, I2).
    #[error("primary recovery not found")]
    RecoveryNotFound,
    /// C12: the site has an open primary recovery already.
    #[error(
        "rule C12: the site has an open recovery of its primary contact already; it must be refused, attested or expire first"
    )]
    RecoveryOpen,
    /// The site number is taken.
    #[error("a site with site number {0} already exists")]
    SiteNumberTaken(String),
    /// The user already holds this role on the site.
    #[error("the user already holds the {0} role on this site")]
    RoleAlreadyHeld(ContactRole),
    /// A rule of DOMAIN.md forbids the change; the text cites it.
    #[error("{0}")]
    Rule(String),
    /// The etag does not match the current version.
    #[error("{0} changed since it was read (etag mismatch)")]
    EtagMismatch(&'static str),
    /// The caller may not call this service.
    #[error("{0}")]
    Forbidden(&'static str),
    /// The person the change is made for lacks the authority it needs when it commits (T6,
    /// T8); the text cites the rule and the permission.
    #[error("{0}")]
    NoAuthority(String),
    /// The database refused or failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// Anything unexpected.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ContactsError {
    /// A rule violation, e.g. `rule(format!("rule C6: …"))`.
    pub fn rule(text: impl Into<String>) -> Self {
        Self::Rule(text.into())
    }
}

impl From<Violation> for ContactsError {
    fn from(violation: Violation) -> Self {
        Self::Invalid(vec![violation])
    }
}

impl From<ApiError> for ContactsError {
    fn from(error: ApiError) -> Self {
        match error {
            ApiError::InvalidArgument(violations) => Self::Invalid(violations),
            other => Self::Internal(anyhow::anyhow!(other.to_string())),
        }
    }
}

impl From<ContactsError> for ApiError {
    fn from(error: ContactsError) -> Self {
        let message = error.to_string();
        match error {
            ContactsError::Invalid(violations) => ApiError::InvalidArgument(violations),
            ContactsError::SiteNotFound
            | ContactsError::ContactNotFound
            | ContactsError::NoMatchingSite
            | ContactsError::RecoveryNotFound => ApiError::NotFound(message),
            ContactsError::SiteNumberTaken(_)
            | ContactsError::RoleAlreadyHeld(_)
            | ContactsError::RecoveryOpen => ApiError::AlreadyExists(message),
            ContactsError::Rule(_) => ApiError::FailedPrecondition(message),
            ContactsError::EtagMismatch(_) => ApiError::Aborted(message),
            ContactsError::Forbidden(_) | ContactsError::NoAuthority(_) => {
                ApiError::PermissionDenied(message)
            }
            ContactsError::Database(error) => ApiError::from(error),
            ContactsError::Internal(error) => ApiError::Internal(error),
        }
    }
}

impl From<ContactsError> for tonic::Status {
    fn from(error: ContactsError) -> Self {
        ApiError::from(error).into()
    }
}

/// Result of the registry domain.
pub type Result<T, E = ContactsError> = std::result::Result<T, E>;
