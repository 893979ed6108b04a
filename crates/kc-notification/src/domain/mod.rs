//! The rules of the notification service and its operations.
//!
//! - [`language`]: which language a notice is written in (N1).
//! - [`params`]: the template parameters each kind takes, and their validation.
//! - [`catalog`]: role names, request kinds, decisions, tools and levels in each language.
//! - [`templates`]: rendering subject, text and HTML parts with the embedded templates.
//! - [`recipients`]: who is told what about each event (the notification table of DOMAIN.md).
//! - [`retry`]: the backoff between delivery attempts.
//! - [`commands`]: the requests of the API once parsed.
//! - [`service`]: the operations with their transactions (SendNotice, reads, retry, preview,
//!   and the creation of notifications from events).

pub(crate) mod catalog;
pub(crate) mod commands;
pub(crate) mod language;
pub(crate) mod params;
pub(crate) mod recipients;
pub(crate) mod retry;
pub(crate) mod service;
pub(crate) mod templates;

use chrono::{DateTime, Utc};
use kc_runtime::{ApiError, Caller, Violation};
use uuid::Uuid;

pub(crate) use language::Lang;
pub(crate) use service::Notifier;

/// What a notice is about; the numbers are those of the proto's `NoticeKind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// Agreement or contractual change (C1, N2).
    ContractChange,
    /// S&S renewal notice (R1).
    Renewal,
    /// Software update available (R1).
    UpdateAvailable,
    /// Proof of entitlement (R1, C4).
    ProofOfEntitlement,
    /// Media shipment (R1).
    MediaShipment,
    /// Invoice (R1).
    Invoice,
    /// Support or technical matter (R1).
    Technical,
    /// The code that proves a registered login e-mail (identity, I1).
    EmailVerification,
    /// An access request waits for the recipient's decision (A1, A3).
    AccessRequestSubmitted,
    /// The recipient's access request was decided (A2).
    AccessRequestDecided,
    /// The recipient's rights changed (T5).
    RightsChanged,
    /// A domain policy of the site changed (A7).
    DomainPolicyChanged,
    /// A contact role was given.
    ContactRoleAssigned,
    /// A contact role was taken away.
    ContactRoleRemoved,
    /// The primary contact changed (C8).
    PrimaryTransferred,
    /// The address was invited; its owner claims the account with the code (identity, I1).
    Invitation,
    /// The code of a password reset (identity).
    PasswordReset,
    /// The code that proves a new login e-mail, to the new address (identity).
    EmailChangeVerification,
    /// Someone tried to register an address a proven account has (identity, I2).
    RegistrationAddressTaken,
    /// Someone tried to register an address confusable with an account's (identity, I3).
    RegistrationAddressConfusable,
    /// A change of the login e-mail was asked, told to the current address (identity).
    EmailChangeRequested,
    /// The code that proves a contact's new notification e-mail, to that address (C11).
    NotificationEmailVerification,
    /// A change of a contact's notification e-mail was asked, told to its login e-mail (C11).
    NotificationEmailChangeRequested,
    /// The recipient's explicit rights on a site end within 7 days (T9).
    RightsEndingSoon,
    /// The recipient's explicit rights on a site reached their end and were removed (T9).
    RightsEnded,
    /// The site's S&S ends in 90, 60 or 30 days: a renewal reminder (R1).
    SupportEnding,
    /// The site's S&S lapsed after its last day; C5 no longer requires an STC (R1).
    SupportLapsed,
    /// A recovery of the site's primary contact was asked (C12).
    PrimaryRecoveryRequested,
    /// A recovery of the site's primary contact was refused (C12).
    PrimaryRecoveryRefused,
    /// A recovery of the site's primary contact was attested, the primary transferred (C12).
    PrimaryRecoveryAttested,
    /// Welcome of a person just added to the site as a site user, with its rights (C6).
    SiteUserWelcome,
}

impl Kind {
    /// Every kind, notices from callers first.
    pub const ALL: [Kind; 31] = [
        Kind::ContractChange,
        Kind::Renewal,
        Kind::UpdateAvailable,
        Kind::ProofOfEntitlement,
        Kind::MediaShipment,
        Kind::Invoice,
        Kind::Technical,
        Kind::EmailVerification,
        Kind::AccessRequestSubmitted,
        Kind::AccessRequestDecided,
        Kind::RightsChanged,
        Kind::DomainPolicyChanged,
        Kind::ContactRoleAssigned,
        Kind::ContactRoleRemoved,
        Kind::PrimaryTransferred,
        Kind::Invitation,
        Kind::PasswordReset,
        Kind::EmailChangeVerification,
        Kind::RegistrationAddressTaken,
        Kind::RegistrationAddressConfusable,
        Kind::EmailChangeRequested,
        Kind::NotificationEmailVerification,
        Kind::NotificationEmailChangeRequested,
        Kind::RightsEndingSoon,
        Kind::RightsEnded,
        Kind::SupportEnding,
        Kind::SupportLapsed,
        Kind::PrimaryRecoveryRequested,
        Kind::PrimaryRecoveryRefused,
        Kind::PrimaryRecoveryAttested,
        Kind::SiteUserWelcome,
    ];

    /// The proto number (also the stored value).
    pub fn number(self) -> i32 {
        match self {
            Kind::ContractChange => 1,
            Kind::Renewal => 2,
            Kind::UpdateAvailable => 3,
            Kind::ProofOfEntitlement => 4,
            Kind::MediaShipment => 5,
            Kind::Invoice => 6,
            Kind::Technical => 7,
            Kind::EmailVerification => 20,
            Kind::AccessRequestSubmitted => 21,
            Kind::AccessRequestDecided => 22,
            Kind::RightsChanged => 23,
            Kind::DomainPolicyChanged => 24,
            Kind::ContactRoleAssigned => 25,
            Kind::ContactRoleRemoved => 26,
            Kind::PrimaryTransferred => 27,
            Kind::Invitation => 28,
            Kind::PasswordReset => 29,
            Kind::EmailChangeVerification => 30,
            Kind::RegistrationAddressTaken => 31,
            Kind::RegistrationAddressConfusable => 32,
            Kind::EmailChangeRequested => 33,
            Kind::NotificationEmailVerification => 34,
            Kind::NotificationEmailChangeRequested => 35,
            Kind::RightsEndingSoon => 36,
            Kind::RightsEnded => 37,
            Kind::SupportEnding => 38,
            Kind::SupportLapsed => 39,
            Kind::PrimaryRecoveryRequested => 40,
            Kind::PrimaryRecoveryRefused => 41,
            Kind::PrimaryRecoveryAttested => 42,
            Kind::SiteUserWelcome => 43,
        }
    }

    /// The kind of a proto number; `None` for UNSPECIFIED and unknown numbers.
    pub fn from_number(number: i32) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.number() == number)
    }

    /// The name of the template files, e.g. `contract_change`.
    pub fn stem(self) -> &'static str {
        match self {
            Kind::ContractChange => "contract_change",
            Kind::Renewal => "renewal",
            Kind::UpdateAvailable => "update_available",
            Kind::ProofOfEntitlement => "proof_of_entitlement",
            Kind::MediaShipment => "media_shipment",
            Kind::Invoice => "invoice",
            Kind::Technical => "technical",
            Kind::EmailVerification => "email_verification",
            Kind::AccessRequestSubmitted => "access_request_submitted",
            Kind::AccessRequestDecided => "access_request_decided",
            Kind::RightsChanged => "rights_changed",
            Kind::DomainPolicyChanged => "domain_policy_changed",
            Kind::ContactRoleAssigned => "contact_role_assigned",
            Kind::ContactRoleRemoved => "contact_role_removed",
            Kind::PrimaryTransferred => "primary_transferred",
            Kind::Invitation => "invitation",
            Kind::PasswordReset => "password_reset",
            Kind::EmailChangeVerification => "email_change_verification",
            Kind::RegistrationAddressTaken => "registration_address_taken",
            Kind::RegistrationAddressConfusable => "registration_address_confusable",
            Kind::EmailChangeRequested => "email_change_requested",
            Kind::NotificationEmailVerification => "notification_email_verification",
            Kind::NotificationEmailChangeRequested => "notification_email_change_requested",
            Kind::RightsEndingSoon => "rights_ending_soon",
            Kind::RightsEnded => "rights_ended",
            Kind::SupportEnding => "support_ending",
            Kind::SupportLapsed => "support_lapsed",
            Kind::PrimaryRecoveryRequested => "primary_recovery_requested",
            Kind::PrimaryRecoveryRefused => "primary_recovery_refused",
            Kind::PrimaryRecoveryAttested => "primary_recovery_attested",
            Kind::SiteUserWelcome => "site_user_welcome",
        }
    }

    /// The proto enum name, e.g. `NOTICE_KIND_CONTRACT_CHANGE` (the `X-Keycontacts-Kind`
    /// header of every e-mail).
    pub fn proto_name(self) -> String {
        format!("NOTICE_KIND_{}", self.stem().to_ascii_uppercase())
    }

    /// Whether callers send it through SendNotice (the others come from event streams).
    pub fn is_notice(self) -> bool {
        self.purpose().is_some()
    }

    /// Whether its mail carries a one-time code (identity's, rules I1, I2; the registry's
    /// for a notification e-mail, C11): such a mail keeps its rendered parts only until it
    /// is delivered or given up, or until the code expires (issue: secrets at rest).
    pub fn carries_code(self) -> bool {
        matches!(
            self,
            Kind::EmailVerification
                | Kind::Invitation
                | Kind::PasswordReset
                | Kind::EmailChangeVerification
                | Kind::NotificationEmailVerification
        )
    }

    /// The registry purpose whose recipients get a notice of this kind (R1); `None` for
    /// the kinds made from events.
    pub fn purpose(self) -> Option<Purpose> {
        match self {
            Kind::ContractChange => Some(Purpose::Contractual),
            Kind::Renewal => Some(Purpose::Renewal),
            Kind::UpdateAvailable => Some(Purpose::UpdateAvailable),
            Kind::ProofOfEntitlement => Some(Purpose::ProofOfEntitlement),
            Kind::MediaShipment => Some(Purpose::Shipping),
            Kind::Invoice => Some(Purpose::Billing),
            Kind::Technical => Some(Purpose::Technical),
            _ => None,
        }
    }
}

/// A purpose of the registry's recipient resolution (R1); numbers of its `NoticePurpose`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Agreement or contractual matters: PRIMARY (C1).
    Contractual,
    /// S&S renewal: RENEWAL, else ADMINISTRATIVE, else PRIMARY.
    Renewal,
    /// Software updates: ADMINISTRATIVE, else PRIMARY.
    UpdateAvailable,
    /// Proofs of entitlement: ADMINISTRATIVE, else PRIMARY, and the business partner (C4).
    ProofOfEntitlement,
    /// Media shipment: SHIPPING, else PRIMARY.
    Shipping,
    /// Invoices: BILLING, else PRIMARY.
    Billing,
    /// Support and technical matters: SITE_TECHNICAL, else PRIMARY.
    Technical,
}

impl Purpose {
    /// The registry's `NoticePurpose` number.
    pub fn number(self) -> i32 {
        match self {
            Purpose::Contractual => 1,
            Purpose::Renewal => 2,
            Purpose::UpdateAvailable => 3,
            Purpose::ProofOfEntitlement => 4,
            Purpose::Shipping => 5,
            Purpose::Billing => 6,
            Purpose::Technical => 7,
        }
    }
}

/// A contact role on a site; numbers of the registry's `ContactRole`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Role {
    /// PRIMARY (C1).
    Primary,
    /// ADMINISTRATIVE (C3).
    Administrative,
    /// SITE_TECHNICAL (C5).
    SiteTechnical,
    /// SECONDARY (C6).
    Secondary,
    /// RENEWAL (C6).
    Renewal,
    /// SHIPPING (C6).
    Shipping,
    /// BILLING (C6).
    Billing,
    /// SITE_USER (C6).
    SiteUser,
}

impl Role {
    /// Every role, in the registry's order.
    pub(crate) const ALL: [Role; 8] = [
        Role::Primary,
        Role::Administrative,
        Role::SiteTechnical,
        Role::Secondary,
        Role::Renewal,
        Role::Shipping,
        Role::Billing,
        Role::SiteUser,
    ];

    /// The registry's number (also the stored value).
    pub(crate) fn number(self) -> i16 {
        match self {
            Role::Primary => 1,
            Role::Administrative => 2,
            Role::SiteTechnical => 3,
            Role::Secondary => 4,
            Role::Renewal => 5,
            Role::Shipping => 6,
            Role::Billing => 7,
            Role::SiteUser => 8,
        }
    }

    /// The role of a registry number; `None` for UNSPECIFIED and unknown numbers.
    pub(crate) fn from_number(number: i32) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|role| i32::from(role.number()) == number)
    }
}

/// Delivery state of a notification; numbers of the proto's `NotificationState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Waiting for its first attempt.
    Pending,
    /// A worker holds its lease and is sending it.
    Sending,
    /// The mail server accepted it.
    Delivered,
    /// The last attempt failed transiently; it will be retried.
    Failed,
    /// Given up.
    Dead,
}

impl State {
    /// Every state.
    pub const ALL: [State; 5] = [
        State::Pending,
        State::Sending,
        State::Delivered,
        State::Failed,
        State::Dead,
    ];

    /// The proto number (also the stored value).
    pub fn number(self) -> i16 {
        match self {
            State::Pending => 1,
            State::Sending => 2,
            State::Delivered => 3,
            State::Failed => 4,
            State::Dead => 5,
        }
    }

    /// The state of a number; `None` for UNSPECIFIED and unknown numbers.
    pub fn from_number(number: i32) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|state| i32::from(state.number()) == number)
    }

    /// The proto enum name, e.g. `NOTIFICATION_STATE_DEAD`.
    pub fn proto_name(self) -> &'static str {
        match self {
            State::Pending => "NOTIFICATION_STATE_PENDING",
            State::Sending => "NOTIFICATION_STATE_SENDING",
            State::Delivered => "NOTIFICATION_STATE_DELIVERED",
            State::Failed => "NOTIFICATION_STATE_FAILED",
            State::Dead => "NOTIFICATION_STATE_DEAD",
        }
    }
}

/// How a delivery attempt ended; numbers of the proto's `AttemptOutcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The mail server accepted the message.
    Delivered,
    /// A failure worth retrying: connection, timeout, 4xx.
    TransientFailure,
    /// A failure not worth retrying: 5xx, an address refused.
    PermanentFailure,
    /// The worker stopped before it recorded an outcome; another took over.
    Abandoned,
}

impl Outcome {
    /// The proto number (also the stored value).
    pub fn number(self) -> i16 {
        match self {
            Outcome::Delivered => 1,
            Outcome::TransientFailure => 2,
            Outcome::PermanentFailure => 3,
            Outcome::Abandoned => 4,
        }
    }

    /// The outcome of a number.
    pub fn from_number(number: i32) -> Option<Self> {
        [
            Outcome::Delivered,
            Outcome::TransientFailure,
            Outcome::PermanentFailure,
            Outcome::Abandoned,
        ]
        .into_iter()
        .find(|outcome| i32::from(outcome.number()) == number)
    }
}

/// One recorded delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// Its number, from 1.
    pub attempt: i32,
    /// When it started.
    pub time: DateTime<Utc>,
    /// How it ended.
    pub outcome: Outcome,
    /// The mail server's reply code; 0 when there was none.
    pub smtp_code: i32,
    /// What happened.
    pub detail: String,
}

/// One e-mail to one recipient about one event or notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// Id.
    pub notification_id: Uuid,
    /// Site concerned; `None` for notices about a user alone.
    pub site_id: Option<Uuid>,
    /// Recipient; `None` for the business partner's copy (C4).
    pub recipient_user_id: Option<Uuid>,
    /// Address it goes to.
    pub email: String,
    /// What it is about.
    pub kind: Kind,
    /// Language it is written in (N1).
    pub locale: Lang,
    /// Subject line.
    pub subject: String,
    /// Delivery state.
    pub state: State,
    /// Why this recipient was chosen, citing the rule.
    pub rule: String,
    /// `<service>:<event id>` of the event it was made from; empty for SendNotice.
    pub source_event_id: String,
    /// The caller's idempotency key for SendNotice.
    pub idempotency_key: Option<String>,
    /// Delivery attempts, oldest first (empty where not loaded: lists).
    pub attempts: Vec<Attempt>,
    /// When it was created.
    pub create_time: DateTime<Utc>,
    /// When the mail server accepted it.
    pub deliver_time: Option<DateTime<Utc>>,
    /// When the next attempt is due (PENDING, FAILED).
    pub next_attempt_time: Option<DateTime<Utc>>,
}

/// A site as notices show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Site {
    /// Id.
    pub site_id: Uuid,
    /// Site number.
    pub site_number: String,
    /// Name.
    pub name: String,
    /// BCP-47 language, the fallback of N1.
    pub language: String,
}

/// A rendered notice: what the recipient reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rendered {
    /// Subject line: one line, whitespace collapsed.
    pub subject: String,
    /// Plain-text part.
    pub text: String,
    /// HTML part, every value escaped.
    pub html: String,
}

/// A notification ready to insert: rendered, addressed, with its idempotency key (N3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NewNotification {
    /// Id.
    pub notification_id: Uuid,
    /// What it comes from: `identity:<event id>`, `contacts:<event id>`,
    /// `access:<event id>` or `notice:<idempotency key>`.
    pub source_key: String,
    /// Who it goes to: the user id, or `partner:<email>` for the business partner.
    pub recipient_key: String,
    /// Kind.
    pub kind: Kind,
    /// Site.
    pub site_id: Option<Uuid>,
    /// Recipient user.
    pub recipient_user_id: Option<Uuid>,
    /// Address.
    pub email: String,
    /// Language.
    pub locale: Lang,
    /// What to send.
    pub rendered: Rendered,
    /// Why this recipient.
    pub rule: String,
    /// `<service>:<event id>`; empty for SendNotice.
    pub source_event_id: String,
    /// SendNotice's key.
    pub idempotency_key: Option<String>,
    /// For a mail carrying a code ([`Kind::carries_code`]), when that code expires: past it
    /// the sweep empties the rendered parts (issue: secrets at rest).
    pub code_expire_time: Option<DateTime<Utc>>,
}

/// What SendNotice did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentNotice {
    /// One notification per recipient.
    pub notifications: Vec<Notification>,
    /// Whether the key was seen before (these are the first call's notifications).
    pub replayed: bool,
}

/// Filters of ListNotifications.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ListFilter {
    /// Only this site.
    pub site_id: Option<Uuid>,
    /// Only this recipient.
    pub recipient_user_id: Option<Uuid>,
    /// Only this state.
    pub state: Option<State>,
}

/// Who may call: services and operators; RetryNotification is for operators alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallerRole {
    /// A service account.
    Service,
    /// An operator.
    Operator,
}

impl CallerRole {
    /// The role of an authenticated caller; customers are refused.
    pub(crate) fn of(caller: &Caller) -> Result<Self> {
        if caller.is_operator() {
            Ok(Self::Operator)
        } else if caller.is_service() {
            Ok(Self::Service)
        } else {
            Err(NotificationError::Forbidden(
                "customer tokens are refused by the notification service".into(),
            ))
        }
    }

    /// Operators only (RetryNotification): services are refused too.
    pub(crate) fn require_operator(self) -> Result<()> {
        match self {
            Self::Operator => Ok(()),
            Self::Service => Err(NotificationError::Forbidden(
                "only operators may retry notifications".into(),
            )),
        }
    }
}

/// Everything that can go wrong, mapped exhaustively onto the API categories.
#[derive(Debug, thiserror::Error)]
pub enum NotificationError {
    /// The request is malformed.
    #[error("invalid request")]
    Invalid(Vec<Violation>),
    /// No such notification.
    #[error("notification not found")]
    NotificationNotFound,
    /// The registry knows no such site.
    #[error("site not found")]
    SiteNotFound,
    /// Only DEAD notifications can be retried.
    #[error("the notification is {}: only NOTIFICATION_STATE_DEAD notifications can be retried", .0.proto_name())]
    NotRetryable(State),
    /// A DEAD mail whose one-time code was withdrawn from this service's storage (issue:
    /// secrets at rest): sending it again would mail no code.
    #[error(
        "the notification's one-time code was withdrawn (issue: secrets at rest): its mail cannot be sent again; the user asks identity for a fresh code"
    )]
    CodeWithdrawn,
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// A service this one depends on is down: retry later.
    #[error("{0}")]
    Unavailable(String),
    /// The database refused or failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// Anything unexpected.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<Violation> for NotificationError {
    fn from(violation: Violation) -> Self {
        Self::Invalid(vec![violation])
    }
}

impl From<NotificationError> for ApiError {
    fn from(error: NotificationError) -> Self {
        let message = error.to_string();
        match error {
            NotificationError::Invalid(violations) => ApiError::InvalidArgument(violations),
            NotificationError::NotificationNotFound | NotificationError::SiteNotFound => {
                ApiError::NotFound(message)
            }
            NotificationError::NotRetryable(_) | NotificationError::CodeWithdrawn => {
                ApiError::FailedPrecondition(message)
            }
            NotificationError::Forbidden(_) => ApiError::PermissionDenied(message),
            NotificationError::Unavailable(_) => ApiError::Unavailable(message),
            NotificationError::Database(error) => ApiError::from(error),
            NotificationError::Internal(error) => ApiError::Internal(error),
        }
    }
}

impl From<NotificationError> for tonic::Status {
    fn from(error: NotificationError) -> Self {
        ApiError::from(error).into()
    }
}

/// Result of the notification domain.
pub(crate) type Result<T, E = NotificationError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip() {
        for kind in Kind::ALL {
            assert_eq!(Kind::from_number(kind.number()), Some(kind));
        }
        assert_eq!(Kind::from_number(0), None);
        assert_eq!(Kind::from_number(8), None);
        assert_eq!(
            Kind::ProofOfEntitlement.proto_name(),
            "NOTICE_KIND_PROOF_OF_ENTITLEMENT"
        );
        let notices: Vec<Kind> = Kind::ALL.into_iter().filter(|k| k.is_notice()).collect();
        assert_eq!(notices.len(), 7);
        assert!(notices.iter().all(|k| k.number() <= 7));
        for role in Role::ALL {
            assert_eq!(Role::from_number(i32::from(role.number())), Some(role));
        }
        for state in State::ALL {
            assert_eq!(State::from_number(i32::from(state.number())), Some(state));
        }
        assert_eq!(Outcome::from_number(4), Some(Outcome::Abandoned));
    }

    #[test]
    fn purposes_follow_the_notification_table() {
        // rule R1 / C4: each caller notice kind asks the registry for its own purpose.
        assert_eq!(Kind::ContractChange.purpose(), Some(Purpose::Contractual));
        assert_eq!(Kind::MediaShipment.purpose(), Some(Purpose::Shipping));
        assert_eq!(Kind::Invoice.purpose(), Some(Purpose::Billing));
        assert_eq!(Kind::Technical.purpose().map(Purpose::number), Some(7));
        assert_eq!(Kind::EmailVerification.purpose(), None);
        assert_eq!(Kind::RegistrationAddressTaken.purpose(), None);
    }

    #[test]
    fn errors_map_to_codes() {
        let status: tonic::Status = NotificationError::NotRetryable(State::Delivered).into();
        assert_eq!(status.code(), tonic::Code::FailedPrecondition);
        assert!(status.message().contains("NOTIFICATION_STATE_DELIVERED"));
        let status: tonic::Status = NotificationError::NotificationNotFound.into();
        assert_eq!(status.code(), tonic::Code::NotFound);
        let status: tonic::Status = NotificationError::Unavailable("identity down".into()).into();
        assert_eq!(status.code(), tonic::Code::Unavailable);
        let status: tonic::Status = NotificationError::CodeWithdrawn.into();
        assert_eq!(status.code(), tonic::Code::FailedPrecondition);
        assert!(
            status.message().contains("code was withdrawn"),
            "{status:?}"
        );
    }

    #[test]
    fn the_kinds_that_carry_a_code_are_those_taking_one() {
        // issue: secrets at rest. Every kind whose template may show a code is redacted.
        for kind in Kind::ALL {
            let takes_code = kind.params().iter().any(|param| param.name == "code");
            assert_eq!(kind.carries_code(), takes_code, "{kind:?}");
        }
    }
}
