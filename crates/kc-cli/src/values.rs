//! The names of the API's enum values on the command line and in the output.
//!
//! A value is written the same way where it is typed and where it is read: the proto name
//! without its prefix, lowercase, with dashes (`CONTACT_ROLE_SITE_TECHNICAL` is
//! `site-technical`, `SOFTWARE_ACCESS_DOWNLOADS_ONLY` is `downloads-only`).

use kc_proto::access::{
    AccessRequestKind, AccessRequestState, AccountDocumentsAccess, AccountManagementAccess,
    ContactUpdatesAccess, EntitlementsAccess, ManageAccess, Permission, ReportingAccess,
    SoftwareAccess, SupportLevel, ToolAccess,
};
use kc_proto::contacts::{ComplianceGapKind, ContactRole, Program};
use kc_proto::gateway::AuditSource;
use kc_proto::identity::{UserKind, UserState};
use kc_proto::notification::{NoticeKind, NotificationState};
use serde::Serialize;

use crate::error::CliError;

/// A proto enum value's full name (`CONTACT_ROLE_SECONDARY`) without `prefix`, in
/// lowercase with dashes (`secondary`).
pub fn short_name(full: &str, prefix: &str) -> String {
    full.strip_prefix(prefix)
        .unwrap_or(full)
        .to_ascii_lowercase()
        .replace('_', "-")
}

macro_rules! names {
    ($($(#[$doc:meta])* $fn_name:ident => $proto:ty, $prefix:literal;)*) => {
        $(
            $(#[$doc])*
            pub fn $fn_name(value: i32) -> String {
                match <$proto>::try_from(value) {
                    Ok(known) => short_name(known.as_str_name(), $prefix),
                    Err(_) => format!("unknown-{value}"),
                }
            }
        )*
    };
}

names! {
    /// The name of a contact role.
    role => ContactRole, "CONTACT_ROLE_";
    /// The name of a program.
    program => Program, "PROGRAM_";
    /// The name of a software level.
    software => SoftwareAccess, "SOFTWARE_ACCESS_";
    /// The name of a reporting level.
    reporting => ReportingAccess, "REPORTING_ACCESS_";
    /// The name of an entitlements level.
    entitlements => EntitlementsAccess, "ENTITLEMENTS_ACCESS_";
    /// The name of an account management level.
    account_management => AccountManagementAccess, "ACCOUNT_MANAGEMENT_ACCESS_";
    /// The name of a manage-access level.
    manage_access => ManageAccess, "MANAGE_ACCESS_";
    /// The name of a contact updates level.
    contact_updates => ContactUpdatesAccess, "CONTACT_UPDATES_ACCESS_";
    /// The name of an account documents level.
    account_documents => AccountDocumentsAccess, "ACCOUNT_DOCUMENTS_ACCESS_";
    /// The name of a support level.
    support => SupportLevel, "SUPPORT_LEVEL_";
    /// The name of a permission.
    permission => Permission, "PERMISSION_";
    /// The name of an access request kind.
    request_kind => AccessRequestKind, "ACCESS_REQUEST_KIND_";
    /// The name of an access request state.
    request_state => AccessRequestState, "ACCESS_REQUEST_STATE_";
    /// The name of a compliance gap kind.
    gap_kind => ComplianceGapKind, "COMPLIANCE_GAP_KIND_";
    /// The name of an audit source.
    audit_source => AuditSource, "AUDIT_SOURCE_";
    /// The name of a user kind.
    user_kind => UserKind, "USER_KIND_";
    /// The name of a user state.
    user_state => UserState, "USER_STATE_";
    /// The name of a notice kind.
    notice_kind => NoticeKind, "NOTICE_KIND_";
    /// The name of a notification state.
    notification_state => NotificationState, "NOTIFICATION_STATE_";
}

/// The names of roles, comma-separated.
pub fn roles(values: &[i32]) -> Vec<String> {
    values.iter().map(|v| role(*v)).collect()
}

/// One level per tool, by name, for the output (a tool left unspecified is `unspecified`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tools {
    /// Software and services.
    pub software: String,
    /// Reporting.
    pub reporting: String,
    /// Entitlements.
    pub entitlements: String,
    /// Account management.
    pub account_management: String,
    /// Manage access.
    pub manage_access: String,
    /// Contact updates.
    pub contact_updates: String,
    /// Account documents.
    pub account_documents: String,
}

impl Tools {
    /// The levels of `tools`; every level `unspecified` when absent.
    pub fn of(tools: Option<&ToolAccess>) -> Self {
        let t = tools.cloned().unwrap_or_default();
        Self {
            software: software(t.software),
            reporting: reporting(t.reporting),
            entitlements: entitlements(t.entitlements),
            account_management: account_management(t.account_management),
            manage_access: manage_access(t.manage_access),
            contact_updates: contact_updates(t.contact_updates),
            account_documents: account_documents(t.account_documents),
        }
    }

    /// The tools above none, as `software=full, reporting=view`; `none` when there is none.
    pub fn summary(&self) -> String {
        let items: Vec<String> = [
            ("software", &self.software),
            ("reporting", &self.reporting),
            ("entitlements", &self.entitlements),
            ("account-management", &self.account_management),
            ("manage-access", &self.manage_access),
            ("contact-updates", &self.contact_updates),
            ("account-documents", &self.account_documents),
        ]
        .into_iter()
        .filter(|(_, level)| !matches!(level.as_str(), "none" | "unspecified"))
        .map(|(tool, level)| format!("{tool}={level}"))
        .collect();
        if items.is_empty() {
            "none".to_owned()
        } else {
            items.join(", ")
        }
    }
}

/// The end of a grant as typed: a date `YYYY-MM-DD` (the grant holds through that day: it
/// ends at 00:00 UTC the next day) or an RFC 3339 time.
pub fn parse_end(typed: &str) -> Result<prost_types::Timestamp, CliError> {
    let typed = typed.trim();
    let end = if let Ok(day) = chrono::NaiveDate::parse_from_str(typed, "%Y-%m-%d") {
        day.succ_opt()
            .and_then(|next| next.and_hms_opt(0, 0, 0))
            .map(|t| t.and_utc())
            .ok_or_else(|| CliError::usage(format!("--until {typed}: no such day")))?
    } else {
        chrono::DateTime::parse_from_rfc3339(typed)
            .map(|t| t.with_timezone(&chrono::Utc))
            .map_err(|_| {
                CliError::usage(format!(
                    "--until {typed}: give a date (2027-03-31) or an RFC 3339 time"
                ))
            })?
    };
    Ok(prost_types::Timestamp {
        seconds: end.timestamp(),
        nanos: i32::try_from(end.timestamp_subsec_nanos()).unwrap_or_default(),
    })
}

/// A length of time as typed: a number followed by `s`, `m`, `h` or `d` (`90d`, `12h`).
pub fn parse_duration(typed: &str) -> Result<prost_types::Duration, CliError> {
    let typed = typed.trim();
    let bad = || {
        CliError::usage(format!(
            "--for {typed}: give a number and a unit: 90d, 12h, 30m, 45s"
        ))
    };
    let (split, _) = typed.char_indices().last().ok_or_else(bad)?;
    let (number, unit) = typed.split_at(split);
    let number: i64 = number.parse().map_err(|_| bad())?;
    let unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    let seconds = number
        .checked_mul(unit)
        .filter(|s| *s > 0)
        .ok_or_else(bad)?;
    Ok(prost_types::Duration { seconds, nanos: 0 })
}

/// A clap value enum for a proto enum: the variants are typed in kebab case and convert to
/// the proto value.
macro_rules! arg_enum {
    ($(#[$doc:meta])* $name:ident => $proto:ty { $($(#[$vdoc:meta])* $variant:ident = $proto_variant:ident),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl From<$name> for $proto {
            fn from(value: $name) -> Self {
                match value {
                    $($name::$variant => <$proto>::$proto_variant),+
                }
            }
        }

        impl From<$name> for i32 {
            fn from(value: $name) -> Self {
                <$proto>::from(value) as i32
            }
        }
    };
}

arg_enum! {
    /// A contact role.
    RoleArg => ContactRole {
        /// The primary contact (only through transfer-primary).
        Primary = Primary,
        /// The administrative (proof of entitlement) contact.
        Administrative = Administrative,
        /// The site technical contact.
        SiteTechnical = SiteTechnical,
        /// A secondary contact (at most 4, C6).
        Secondary = Secondary,
        /// The renewal contact.
        Renewal = Renewal,
        /// The shipping contact.
        Shipping = Shipping,
        /// The billing contact.
        Billing = Billing,
        /// A site user.
        SiteUser = SiteUser,
    }
}

arg_enum! {
    /// A program.
    ProgramArg => Program {
        /// Passport Advantage.
        PassportAdvantage = PassportAdvantage,
        /// Passport Advantage Express.
        PassportAdvantageExpress = PassportAdvantageExpress,
    }
}

arg_enum! {
    /// A software and services level.
    SoftwareArg => SoftwareAccess {
        /// No access.
        None = None,
        /// Downloads only.
        DownloadsOnly = DownloadsOnly,
        /// Downloads and media.
        DownloadsAndMedia = DownloadsAndMedia,
        /// Full access.
        Full = Full,
    }
}

arg_enum! {
    /// A reporting level.
    ReportingArg => ReportingAccess {
        /// No access.
        None = None,
        /// View reports.
        View = View,
    }
}

arg_enum! {
    /// An entitlements level.
    EntitlementsArg => EntitlementsAccess {
        /// No access.
        None = None,
        /// View.
        View = View,
        /// Update.
        Update = Update,
    }
}

arg_enum! {
    /// An account management level.
    AccountManagementArg => AccountManagementAccess {
        /// No access.
        None = None,
        /// Granted.
        Granted = Granted,
    }
}

arg_enum! {
    /// A manage-access level.
    ManageAccessArg => ManageAccess {
        /// No access.
        None = None,
        /// View.
        View = View,
        /// Update.
        Update = Update,
    }
}

arg_enum! {
    /// A contact updates level.
    ContactUpdatesArg => ContactUpdatesAccess {
        /// No access.
        None = None,
        /// View.
        View = View,
        /// Update.
        Update = Update,
    }
}

arg_enum! {
    /// An account documents level.
    AccountDocumentsArg => AccountDocumentsAccess {
        /// No access.
        None = None,
        /// View.
        View = View,
    }
}

arg_enum! {
    /// A support level.
    SupportArg => SupportLevel {
        /// No access.
        NoAccess = NoAccess,
        /// Basic: own cases.
        Basic = Basic,
        /// Full: the site's cases.
        Full = Full,
        /// Administrator.
        Administrator = Administrator,
    }
}

arg_enum! {
    /// A permission of AuthorizationService.
    PermissionArg => Permission {
        /// Download software.
        SoftwareDownload = SoftwareDownload,
        /// Media.
        MediaAccess = MediaAccess,
        /// Quotes and catalogs.
        QuotesAndCatalogs = QuotesAndCatalogs,
        /// License renewal.
        LicenseRenewal = LicenseRenewal,
        /// View reports.
        ReportsView = ReportsView,
        /// View entitlements.
        EntitlementsView = EntitlementsView,
        /// Update entitlements.
        EntitlementsUpdate = EntitlementsUpdate,
        /// Account management.
        AccountManagement = AccountManagement,
        /// View access.
        AccessView = AccessView,
        /// Update access.
        AccessUpdate = AccessUpdate,
        /// View contacts.
        ContactsView = ContactsView,
        /// Update contacts.
        ContactsUpdate = ContactsUpdate,
        /// View documents.
        DocumentsView = DocumentsView,
        /// Support: own cases.
        SupportOwnCases = SupportOwnCases,
        /// Support: the site's cases.
        SupportSiteCases = SupportSiteCases,
        /// Support administration.
        SupportAdmin = SupportAdmin,
        /// Approve site access requests.
        ApproveSiteAccess = ApproveSiteAccess,
        /// Approve support access requests.
        ApproveSupportAccess = ApproveSupportAccess,
    }
}

arg_enum! {
    /// A notice kind that SendNotice takes.
    NoticeKindArg => NoticeKind {
        /// Contractual change (params: summary, effective_date).
        ContractChange = ContractChange,
        /// S&S renewal (params: end_date, quote_reference).
        Renewal = Renewal,
        /// Software update available (params: product, version).
        UpdateAvailable = UpdateAvailable,
        /// Proof of entitlement (params: order_number).
        ProofOfEntitlement = ProofOfEntitlement,
        /// Media shipment (params: order_number, tracking_number).
        MediaShipment = MediaShipment,
        /// Invoice (params: invoice_number, amount, due_date).
        Invoice = Invoice,
        /// Technical matter (params: topic, summary).
        Technical = Technical,
    }
}

/// The tool levels of a grant or request, each optional; the command-line flags shared by
/// `kc access grant`, `kc request-access` and `kc requests approve`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ToolFlags {
    /// Software and services level.
    #[arg(long, value_enum)]
    pub software: Option<SoftwareArg>,
    /// Reporting level.
    #[arg(long, value_enum)]
    pub reporting: Option<ReportingArg>,
    /// Entitlements level.
    #[arg(long, value_enum)]
    pub entitlements: Option<EntitlementsArg>,
    /// Account management level.
    #[arg(long, value_enum)]
    pub account_management: Option<AccountManagementArg>,
    /// Manage access level.
    #[arg(long, value_enum)]
    pub manage_access: Option<ManageAccessArg>,
    /// Contact updates level.
    #[arg(long, value_enum)]
    pub contact_updates: Option<ContactUpdatesArg>,
    /// Account documents level.
    #[arg(long, value_enum)]
    pub account_documents: Option<AccountDocumentsArg>,
}

impl ToolFlags {
    /// Whether any tool level was given.
    pub fn any(&self) -> bool {
        self.to_proto() != ToolAccess::default()
    }

    /// The levels given; UNSPECIFIED for the others.
    pub fn to_proto(&self) -> ToolAccess {
        ToolAccess {
            software: self.software.map(i32::from).unwrap_or_default(),
            reporting: self.reporting.map(i32::from).unwrap_or_default(),
            entitlements: self.entitlements.map(i32::from).unwrap_or_default(),
            account_management: self.account_management.map(i32::from).unwrap_or_default(),
            manage_access: self.manage_access.map(i32::from).unwrap_or_default(),
            contact_updates: self.contact_updates.map(i32::from).unwrap_or_default(),
            account_documents: self.account_documents.map(i32::from).unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    #[test]
    fn typed_names_and_printed_names_agree() {
        for arg in SoftwareArg::value_variants() {
            let typed = arg.to_possible_value().unwrap().get_name().to_owned();
            assert_eq!(software(i32::from(*arg)), typed);
        }
        for arg in RoleArg::value_variants() {
            let typed = arg.to_possible_value().unwrap().get_name().to_owned();
            assert_eq!(role(i32::from(*arg)), typed);
        }
        for arg in PermissionArg::value_variants() {
            let typed = arg.to_possible_value().unwrap().get_name().to_owned();
            assert_eq!(permission(i32::from(*arg)), typed);
        }
        for arg in NoticeKindArg::value_variants() {
            let typed = arg.to_possible_value().unwrap().get_name().to_owned();
            assert_eq!(notice_kind(i32::from(*arg)), typed);
        }
    }

    #[test]
    fn a_date_ends_after_that_day() {
        let end = parse_end("2027-03-31").unwrap();
        assert_eq!(
            chrono::DateTime::from_timestamp(end.seconds, 0)
                .unwrap()
                .to_rfc3339(),
            "2027-04-01T00:00:00+00:00"
        );
        let end = parse_end("2027-03-31T12:00:00+02:00").unwrap();
        assert_eq!(
            chrono::DateTime::from_timestamp(end.seconds, 0)
                .unwrap()
                .to_rfc3339(),
            "2027-03-31T10:00:00+00:00"
        );
        assert!(parse_end("31/03/2027").is_err());
    }

    #[test]
    fn durations_take_a_unit() {
        assert_eq!(parse_duration("90d").unwrap().seconds, 90 * 86_400);
        assert_eq!(parse_duration("12h").unwrap().seconds, 12 * 3600);
        assert!(parse_duration("12").is_err());
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("9é").is_err());
    }

    #[test]
    fn unknown_values_are_named_by_number() {
        assert_eq!(role(99), "unknown-99");
    }

    #[test]
    fn tool_summary_lists_the_granted_tools() {
        let tools = ToolAccess {
            software: SoftwareAccess::DownloadsOnly as i32,
            reporting: ReportingAccess::None as i32,
            ..Default::default()
        };
        assert_eq!(Tools::of(Some(&tools)).summary(), "software=downloads-only");
        assert_eq!(Tools::of(None).summary(), "none");
    }
}
