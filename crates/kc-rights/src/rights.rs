//! Who may do what on a site: effective rights (T3), permission checks, the checks on
//! every change of rights (T4, U4–U6), approvers and approvals (A3, A4) and domain policy
//! baselines (A7). Pure functions of what the service knows about a site and its users.
//!
//! Decisions taken where DOMAIN.md is silent:
//! - **PRIMARY and support.** PRIMARY implies the top level of every *tool* (T3), but support
//!   is not a tool: with a SITE_TECHNICAL contact the primary has no implied support level
//!   (U5 gives support to the STC and A3 names only the STC and support ADMINISTRATORs as
//!   its approvers), and the STC or a support ADMINISTRATOR may grant it one explicitly.
//!   While the site has no STC, the primary stands in for it and is implicitly ADMINISTRATOR
//!   (the fallback of C1/R1, and C10 for Express sites), so support can always be administered.
//! - **Taking away.** A grantor can neither raise a tool above its own level nor lower one
//!   that is above its own level (T4): it cannot take away what it could not give.
//! - **The primary.** Nobody edits the rights of the user who holds PRIMARY (T4): its tool
//!   rights are all implied, and so is its support level while the site has no STC.
//! - **The STC.** Nobody changes the STC's support level (U6 forbids it to support
//!   administrators; the STC itself gains nothing, being implicitly ADMINISTRATOR, U5).
//! - **Approvals** never grant more than was asked (A4), only raise levels (A5: a request asks
//!   to raise), and are checked like a grant by the approver (T4, U4–U6).
//! - **SECONDARY** implies manage access UPDATE and contact updates UPDATE (T3), so a
//!   secondary contact grants up to its own levels (T4) and decides site access requests
//!   (A3); it never holds account management by its role, so it never grants that.
//! - **Disabled users** have no right at all: effective rights are all NONE, every check is
//!   denied, and they grant or approve nothing.

use serde::Serialize;
use uuid::Uuid;

use crate::levels::{
    AccountDocumentsAccess, ContactUpdatesAccess, ManageAccess, SupportLevel, Tool, ToolAccess,
    ToolLevel,
};

/// A contact role on a site, as the contact registry defines it. The discriminants are the
/// proto numbers of `keycontacts.contacts.v1.ContactRole`. Only PRIMARY, ADMINISTRATIVE,
/// SITE_TECHNICAL and SECONDARY imply rights ([`ContactRole::IMPLYING`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ContactRole {
    /// Implies the top level of every tool (T3).
    Primary = 1,
    /// Implies account documents VIEW, and manage access UPDATE with the C3 switch on (T3).
    Administrative = 2,
    /// Implies support ADMINISTRATOR (U5).
    SiteTechnical = 3,
    /// Implies manage access UPDATE and contact updates UPDATE, never account management
    /// (T3: secondary contacts help the primary manage the account).
    Secondary = 4,
    /// Implies nothing.
    Renewal = 5,
    /// Implies nothing.
    Shipping = 6,
    /// Implies nothing.
    Billing = 7,
    /// Implies nothing.
    SiteUser = 8,
}

impl ContactRole {
    /// Every role, in the registry's display order.
    pub const ALL: [ContactRole; 8] = [
        Self::Primary,
        Self::Administrative,
        Self::SiteTechnical,
        Self::Secondary,
        Self::Renewal,
        Self::Shipping,
        Self::Billing,
        Self::SiteUser,
    ];

    /// The roles that imply rights on any site (T3, U5); every other role implies nothing.
    /// Storage lists the holders of these among the users with rights (`ListSiteAccess`,
    /// `ListUserAccess`).
    pub const IMPLYING: [ContactRole; 4] = [
        Self::Primary,
        Self::Administrative,
        Self::SiteTechnical,
        Self::Secondary,
    ];

    /// The role of a proto enum number; `None` for 0 or unknown numbers.
    pub fn from_number(number: i32) -> Option<Self> {
        Self::ALL.into_iter().find(|role| *role as i32 == number)
    }

    /// The proto enum number.
    pub fn number(self) -> i32 {
        self as i32
    }

    /// The value the services' tables store (a SMALLINT: the proto enum number).
    pub fn stored(self) -> i16 {
        self as i16
    }

    /// Whether at most one user holds the role on a site (C1, C3, C5, C6; the registry's
    /// database enforces it).
    pub fn is_single_holder(self) -> bool {
        !matches!(self, Self::Secondary | Self::SiteUser)
    }

    /// Whether holding the role implies rights on the site's tools or support (T3, U5):
    /// the roles of [`ContactRole::IMPLYING`]. Nobody assigns itself such a role (T7).
    pub fn implies_rights(self) -> bool {
        Self::IMPLYING.contains(&self)
    }

    /// Whether ReplaceContact may swap its holder (every single-holder role but PRIMARY,
    /// which changes only by transfer, C8).
    pub fn is_replaceable(self) -> bool {
        self.is_single_holder() && self != Self::Primary
    }

    /// The change of the role that T6 names in its errors.
    pub fn naming_change(self) -> &'static str {
        match self {
            Self::Primary => "moving the PRIMARY role",
            Self::Administrative => "naming, replacing or removing the ADMINISTRATIVE contact",
            Self::SiteTechnical => "naming, replacing or removing the SITE_TECHNICAL contact",
            Self::Secondary => "naming or removing a SECONDARY contact",
            Self::Renewal | Self::Shipping | Self::Billing | Self::SiteUser => {
                "changing a contact role"
            }
        }
    }

    /// The rule that limits how many hold the role, cited when one more is refused.
    pub fn single_holder_rule(self) -> &'static str {
        match self {
            Self::Primary => "rule C1: a site has exactly one PRIMARY contact",
            Self::Administrative => "rule C3: a site has at most one ADMINISTRATIVE contact",
            Self::SiteTechnical => "rule C5: a site has at most one SITE_TECHNICAL contact",
            Self::Renewal => "rule C6: a site has at most one RENEWAL contact",
            Self::Shipping => "rule C6: a site has at most one SHIPPING contact",
            Self::Billing => "rule C6: a site has at most one BILLING contact",
            Self::Secondary => "rule C6: a site may have at most 4 secondary contacts",
            Self::SiteUser => "rule C6: a site may have any number of site users",
        }
    }

    /// Upper-case name as in the proto and DOMAIN.md, e.g. `SITE_TECHNICAL`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Primary => "PRIMARY",
            Self::Administrative => "ADMINISTRATIVE",
            Self::SiteTechnical => "SITE_TECHNICAL",
            Self::Secondary => "SECONDARY",
            Self::Renewal => "RENEWAL",
            Self::Shipping => "SHIPPING",
            Self::Billing => "BILLING",
            Self::SiteUser => "SITE_USER",
        }
    }

    /// The rights the role implies on `site` (T3, U5; R1 for the primary's support level).
    pub fn implies(self, site: SiteFacts) -> Grants {
        match self {
            Self::Primary => Grants {
                tools: ToolAccess::TOP,
                support: if site.has_site_technical {
                    SupportLevel::NoAccess
                } else {
                    SupportLevel::Administrator
                },
            },
            Self::Administrative => Grants {
                tools: ToolAccess {
                    account_documents: AccountDocumentsAccess::View,
                    manage_access: if site.admin_may_manage_access {
                        ManageAccess::Update
                    } else {
                        ManageAccess::None
                    },
                    ..ToolAccess::NONE
                },
                support: SupportLevel::NoAccess,
            },
            Self::SiteTechnical => Grants {
                tools: ToolAccess::NONE,
                support: SupportLevel::Administrator,
            },
            // T3: a secondary contact helps the primary manage the account: it manages
            // access and contacts, and never holds account management.
            Self::Secondary => Grants {
                tools: ToolAccess {
                    manage_access: ManageAccess::Update,
                    contact_updates: ContactUpdatesAccess::Update,
                    ..ToolAccess::NONE
                },
                support: SupportLevel::NoAccess,
            },
            Self::Renewal | Self::Shipping | Self::Billing | Self::SiteUser => Grants::NONE,
        }
    }

    /// What a person must hold on the site to name someone to the role, replace its holder
    /// or take it away (T6): assigning a role that implies rights is granting what it
    /// implies, so it needs the authority to grant (and, to take it away, to revoke) those
    /// rights under T4 and U4. ADMINISTRATIVE implies account documents VIEW and, while the
    /// C3 switch is on, manage access UPDATE (which the switch can turn on at any time, so
    /// it is asked for either way); SECONDARY implies manage access and contact updates
    /// UPDATE; SITE_TECHNICAL implies support ADMINISTRATOR, which only account management
    /// may hand to a new STC (U6 keeps support administrators off the STC). PRIMARY changes
    /// only by transfer (C8) and other roles imply nothing: empty.
    pub fn naming_authority(self) -> &'static [Permission] {
        match self {
            Self::Administrative => &[Permission::AccessUpdate, Permission::DocumentsView],
            Self::Secondary => &[Permission::AccessUpdate, Permission::ContactsUpdate],
            Self::SiteTechnical => &[Permission::AccountManagement],
            Self::Primary | Self::Renewal | Self::Shipping | Self::Billing | Self::SiteUser => &[],
        }
    }

    /// The rule by which the role implies what `requirement` asks for.
    fn implication_rule(self, requirement: Requirement) -> &'static str {
        match (self, requirement) {
            (Self::SiteTechnical, _) => "U5",
            (Self::Primary, Requirement::Support(_)) => "R1: no SITE_TECHNICAL contact",
            _ => "T3",
        }
    }

    /// The id alone of [`Self::implication_rule`] (`R1`, not its gloss).
    fn implication_rule_id(self, requirement: Requirement) -> &'static str {
        let rule = self.implication_rule(requirement);
        rule.split(':').next().unwrap_or(rule)
    }
}

impl std::fmt::Display for ContactRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The roles one user holds on one site, as a bit set (a cache holds many of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct RoleSet(u16);

impl RoleSet {
    /// No role.
    pub const EMPTY: Self = Self(0);

    /// The set of `roles`.
    pub fn of(roles: &[ContactRole]) -> Self {
        roles.iter().copied().collect()
    }

    /// Whether `role` is in the set.
    pub fn contains(self, role: ContactRole) -> bool {
        self.0 & (1 << role as u16) != 0
    }

    /// The set with `role` added.
    #[must_use]
    pub fn with(self, role: ContactRole) -> Self {
        Self(self.0 | (1 << role as u16))
    }

    /// The set with `role` removed.
    #[must_use]
    pub fn without(self, role: ContactRole) -> Self {
        Self(self.0 & !(1 << role as u16))
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The roles, in display order (PRIMARY first).
    pub fn iter(self) -> impl Iterator<Item = ContactRole> {
        ContactRole::ALL
            .into_iter()
            .filter(move |role| self.contains(*role))
    }
}

impl FromIterator<ContactRole> for RoleSet {
    fn from_iter<I: IntoIterator<Item = ContactRole>>(roles: I) -> Self {
        roles.into_iter().fold(Self::EMPTY, Self::with)
    }
}

/// What the rights of a site's users depend on, besides their own roles and grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SiteFacts {
    /// The switch of rule C3: the administrative contact may manage access (T3).
    pub admin_may_manage_access: bool,
    /// Someone holds SITE_TECHNICAL on the site (else the primary stands in for it, R1).
    pub has_site_technical: bool,
}

/// Tool levels and a support level: explicit grants, implied rights or effective rights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
pub struct Grants {
    /// One level per tool.
    pub tools: ToolAccess,
    /// Support level.
    pub support: SupportLevel,
}

impl Grants {
    /// Nothing: every tool NONE, support NO_ACCESS.
    pub const NONE: Self = Self {
        tools: ToolAccess::NONE,
        support: SupportLevel::NoAccess,
    };

    /// Grants from proto enum numbers: one level per tool in [`Tool::ALL`] order, then the
    /// support level; 0 (UNSPECIFIED) is the lowest level. `None` for an unknown number.
    pub fn from_numbers(tools: [i32; 7], support: i32) -> Option<Self> {
        let mut access = ToolAccess::NONE;
        for (tool, number) in Tool::ALL.into_iter().zip(tools) {
            if number != 0 {
                access = access.with(ToolLevel::from_number(tool, number)?);
            }
        }
        let support = match support {
            0 => SupportLevel::NoAccess,
            number => SupportLevel::from_number(number)?,
        };
        Some(Self {
            tools: access,
            support,
        })
    }

    /// The proto enum numbers of [`Grants::from_numbers`]: tools in [`Tool::ALL`] order,
    /// then support.
    pub fn numbers(&self) -> ([i32; 7], i32) {
        (
            Tool::ALL.map(|tool| self.tools.get(tool).number()),
            self.support.number(),
        )
    }

    /// The higher level of the two everywhere (T3).
    #[must_use]
    pub fn join(self, other: Self) -> Self {
        Self {
            tools: self.tools.join(other.tools),
            support: self.support.max(other.support),
        }
    }

    /// Whether nothing is granted.
    pub fn is_none(&self) -> bool {
        *self == Self::NONE
    }

    /// Whether these rights meet `requirement` (T1: a higher level includes the lower ones).
    pub fn meets(&self, requirement: Requirement) -> bool {
        self.rank_for(requirement) >= requirement.rank()
    }

    /// Rank of the level held on what `requirement` is about.
    fn rank_for(&self, requirement: Requirement) -> u8 {
        match requirement {
            Requirement::Tool(level) => self.tools.get(level.tool()).rank(),
            Requirement::Support(_) => self.support.rank(),
        }
    }

    /// Name of the level held on what `requirement` is about.
    fn name_for(&self, requirement: Requirement) -> &'static str {
        match requirement {
            Requirement::Tool(level) => self.tools.get(level.tool()).name(),
            Requirement::Support(_) => self.support.name(),
        }
    }
}

/// One user as the service knows it on one site: its roles there, its explicit grants, and
/// whether it holds nothing at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Subject {
    /// Roles held on the site.
    pub roles: RoleSet,
    /// Explicit grants on the site.
    pub explicit: Grants,
    /// The user holds nothing: identity disabled it (I4), or its address is not proven (an
    /// invitation, I1). Its roles and grants are kept for when that ends.
    pub disabled: bool,
}

impl Subject {
    /// Whether the user holds PRIMARY on the site.
    pub fn is_primary(&self) -> bool {
        self.roles.contains(ContactRole::Primary)
    }

    /// Whether the user holds SITE_TECHNICAL on the site.
    pub fn is_site_technical(&self) -> bool {
        self.roles.contains(ContactRole::SiteTechnical)
    }
}

/// What a permission needs: one tool level or one support level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Requirement {
    /// At least this level of its tool.
    Tool(ToolLevel),
    /// At least this support level.
    Support(SupportLevel),
}

impl Requirement {
    /// Rank of the needed level.
    fn rank(self) -> u8 {
        match self {
            Self::Tool(level) => level.rank(),
            Self::Support(level) => level.rank(),
        }
    }

    /// What it is about, e.g. `manage access` or `support`.
    fn label(self) -> &'static str {
        match self {
            Self::Tool(level) => level.tool().label(),
            Self::Support(_) => "support",
        }
    }

    /// Name of the needed level, e.g. `UPDATE`.
    fn level_name(self) -> &'static str {
        match self {
            Self::Tool(level) => level.name(),
            Self::Support(level) => level.name(),
        }
    }
}

impl std::fmt::Display for Requirement {
    /// `manage access UPDATE`, `support ADMINISTRATOR`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.label(), self.level_name())
    }
}

/// What a `Check` asks about. The discriminants are the proto numbers of `Permission`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Permission {
    /// Software DOWNLOADS_ONLY.
    SoftwareDownload = 1,
    /// Software DOWNLOADS_AND_MEDIA.
    MediaAccess = 2,
    /// Software FULL.
    QuotesAndCatalogs = 3,
    /// Software FULL.
    LicenseRenewal = 4,
    /// Reporting VIEW.
    ReportsView = 5,
    /// Entitlements VIEW.
    EntitlementsView = 6,
    /// Entitlements UPDATE.
    EntitlementsUpdate = 7,
    /// Account management GRANTED.
    AccountManagement = 8,
    /// Manage access VIEW.
    AccessView = 9,
    /// Manage access UPDATE.
    AccessUpdate = 10,
    /// Contact updates VIEW.
    ContactsView = 11,
    /// Contact updates UPDATE.
    ContactsUpdate = 12,
    /// Account documents VIEW.
    DocumentsView = 13,
    /// Support BASIC (U2).
    SupportOwnCases = 14,
    /// Support FULL (U3).
    SupportSiteCases = 15,
    /// Support ADMINISTRATOR (U4).
    SupportAdmin = 16,
    /// Manage access UPDATE, which PRIMARY implies (A3).
    ApproveSiteAccess = 17,
    /// Support ADMINISTRATOR, which SITE_TECHNICAL implies (A3).
    ApproveSupportAccess = 18,
}

impl Permission {
    /// Every permission, in proto order.
    pub const ALL: [Permission; 18] = [
        Self::SoftwareDownload,
        Self::MediaAccess,
        Self::QuotesAndCatalogs,
        Self::LicenseRenewal,
        Self::ReportsView,
        Self::EntitlementsView,
        Self::EntitlementsUpdate,
        Self::AccountManagement,
        Self::AccessView,
        Self::AccessUpdate,
        Self::ContactsView,
        Self::ContactsUpdate,
        Self::DocumentsView,
        Self::SupportOwnCases,
        Self::SupportSiteCases,
        Self::SupportAdmin,
        Self::ApproveSiteAccess,
        Self::ApproveSupportAccess,
    ];

    /// The permission of a proto enum number; `None` for 0 (UNSPECIFIED) or unknown numbers.
    pub fn from_number(number: i32) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|permission| *permission as i32 == number)
    }

    /// The proto enum number.
    pub fn number(self) -> i32 {
        self as i32
    }

    /// Name without the `PERMISSION_` prefix, e.g. `ACCESS_UPDATE`.
    pub fn name(self) -> &'static str {
        match self {
            Self::SoftwareDownload => "SOFTWARE_DOWNLOAD",
            Self::MediaAccess => "MEDIA_ACCESS",
            Self::QuotesAndCatalogs => "QUOTES_AND_CATALOGS",
            Self::LicenseRenewal => "LICENSE_RENEWAL",
            Self::ReportsView => "REPORTS_VIEW",
            Self::EntitlementsView => "ENTITLEMENTS_VIEW",
            Self::EntitlementsUpdate => "ENTITLEMENTS_UPDATE",
            Self::AccountManagement => "ACCOUNT_MANAGEMENT",
            Self::AccessView => "ACCESS_VIEW",
            Self::AccessUpdate => "ACCESS_UPDATE",
            Self::ContactsView => "CONTACTS_VIEW",
            Self::ContactsUpdate => "CONTACTS_UPDATE",
            Self::DocumentsView => "DOCUMENTS_VIEW",
            Self::SupportOwnCases => "SUPPORT_OWN_CASES",
            Self::SupportSiteCases => "SUPPORT_SITE_CASES",
            Self::SupportAdmin => "SUPPORT_ADMIN",
            Self::ApproveSiteAccess => "APPROVE_SITE_ACCESS",
            Self::ApproveSupportAccess => "APPROVE_SUPPORT_ACCESS",
        }
    }

    /// The tool level or support level the permission needs. The approval permissions need
    /// what A3 names: manage access UPDATE (PRIMARY implies it, T3) and support
    /// ADMINISTRATOR (SITE_TECHNICAL implies it, U5).
    pub fn requirement(self) -> Requirement {
        use crate::levels::{
            AccountManagementAccess as Am, ContactUpdatesAccess as Cu, EntitlementsAccess as En,
            ReportingAccess as Re, SoftwareAccess as Sw,
        };
        use ToolLevel as T;
        match self {
            Self::SoftwareDownload => Requirement::Tool(T::Software(Sw::DownloadsOnly)),
            Self::MediaAccess => Requirement::Tool(T::Software(Sw::DownloadsAndMedia)),
            Self::QuotesAndCatalogs | Self::LicenseRenewal => {
                Requirement::Tool(T::Software(Sw::Full))
            }
            Self::ReportsView => Requirement::Tool(T::Reporting(Re::View)),
            Self::EntitlementsView => Requirement::Tool(T::Entitlements(En::View)),
            Self::EntitlementsUpdate => Requirement::Tool(T::Entitlements(En::Update)),
            Self::AccountManagement => Requirement::Tool(T::AccountManagement(Am::Granted)),
            Self::AccessView => Requirement::Tool(T::ManageAccess(ManageAccess::View)),
            Self::AccessUpdate | Self::ApproveSiteAccess => {
                Requirement::Tool(T::ManageAccess(ManageAccess::Update))
            }
            Self::ContactsView => Requirement::Tool(T::ContactUpdates(Cu::View)),
            Self::ContactsUpdate => Requirement::Tool(T::ContactUpdates(Cu::Update)),
            Self::DocumentsView => {
                Requirement::Tool(T::AccountDocuments(AccountDocumentsAccess::View))
            }
            Self::SupportOwnCases => Requirement::Support(SupportLevel::Basic),
            Self::SupportSiteCases => Requirement::Support(SupportLevel::Full),
            Self::SupportAdmin | Self::ApproveSupportAccess => {
                Requirement::Support(SupportLevel::Administrator)
            }
        }
    }
}

impl std::fmt::Display for Permission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The answer of a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Whether the permission is held.
    pub allowed: bool,
    /// Which grant or role decided, e.g. `implied by PRIMARY (T3)` or
    /// `explicit grant: manage access VIEW < UPDATE`.
    pub reason: String,
    /// The DOMAIN.md rule that decided: the one a role's implication names (`T3`, `U5`,
    /// `R1`), `I1, I4` for a user that holds nothing, `T1` when the level of an explicit
    /// grant decided (a higher level includes the lower ones), `T3` when neither a role nor
    /// a grant gives the permission.
    pub rule: &'static str,
}

/// The reason of every check of a user that holds nothing: disabled (I4), or whose address
/// is not proven (I1).
pub const DISABLED_REASON: &str =
    "user disabled or address not proven (I1, I4): every permission is denied";

/// A user's effective rights on a site: the higher of its explicit grants and what its
/// roles imply (T3), nothing at all when it is disabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Effective {
    rights: Grants,
    explicit: Grants,
    roles: RoleSet,
    site: SiteFacts,
    disabled: bool,
}

impl Effective {
    /// The effective rights of `subject` on a site with `site` facts (T3).
    pub fn of(subject: &Subject, site: SiteFacts) -> Self {
        let rights = if subject.disabled {
            Grants::NONE
        } else {
            subject.roles.iter().fold(subject.explicit, |rights, role| {
                rights.join(role.implies(site))
            })
        };
        Self {
            rights,
            explicit: subject.explicit,
            roles: subject.roles,
            site,
            disabled: subject.disabled,
        }
    }

    /// The effective levels: what checks use. All NONE for a disabled user.
    pub fn rights(&self) -> Grants {
        self.rights
    }

    /// The explicit grants.
    pub fn explicit(&self) -> Grants {
        self.explicit
    }

    /// The roles that imply rights on this site (PRIMARY, ADMINISTRATIVE with what the C3
    /// switch gives, SITE_TECHNICAL, SECONDARY); empty for a disabled user.
    pub fn implied_by(&self) -> RoleSet {
        if self.disabled {
            return RoleSet::EMPTY;
        }
        self.roles
            .iter()
            .filter(|role| !role.implies(self.site).is_none())
            .collect()
    }

    /// The user's roles on the site.
    pub fn roles(&self) -> RoleSet {
        self.roles
    }

    /// The site facts the rights were computed with.
    pub fn site(&self) -> SiteFacts {
        self.site
    }

    /// Whether the user is disabled.
    pub fn is_disabled(&self) -> bool {
        self.disabled
    }

    /// The first role (in display order) that implies `requirement`, if any.
    pub fn implying_role(&self, requirement: Requirement) -> Option<ContactRole> {
        if self.disabled {
            return None;
        }
        self.roles
            .iter()
            .find(|role| role.implies(self.site).meets(requirement))
    }

    /// Whether the user holds `permission`, and which grant or role decided.
    pub fn check(&self, permission: Permission) -> Decision {
        self.decide(permission.requirement())
    }

    /// Whether the user's rights meet `requirement`, and which grant or role decided. A role
    /// that implies the level is named before an explicit grant: it cannot be revoked.
    pub fn decide(&self, requirement: Requirement) -> Decision {
        let (label, need) = (requirement.label(), requirement.level_name());
        if self.disabled {
            return Decision {
                allowed: false,
                reason: DISABLED_REASON.to_owned(),
                rule: "I1, I4",
            };
        }
        if let Some(role) = self.implying_role(requirement) {
            return Decision {
                allowed: true,
                reason: format!("implied by {role} ({})", role.implication_rule(requirement)),
                rule: role.implication_rule_id(requirement),
            };
        }
        let have = self.rights.name_for(requirement);
        if self.explicit.meets(requirement) {
            return Decision {
                allowed: true,
                reason: format!("explicit grant: {label} {have} >= {need}"),
                rule: "T1",
            };
        }
        let rank = self.rights.rank_for(requirement);
        let (reason, rule) = if self.explicit.rank_for(requirement) == rank {
            if rank == 0 {
                (format!("no grant: {label} {have} < {need}"), "T3")
            } else {
                (format!("explicit grant: {label} {have} < {need}"), "T1")
            }
        } else {
            // A role implies more than the explicit grant, yet not enough.
            let role = self
                .roles
                .iter()
                .find(|role| role.implies(self.site).rank_for(requirement) == rank);
            match role {
                Some(role) => (
                    format!(
                        "implied by {role} ({}): {label} {have} < {need}",
                        role.implication_rule(requirement)
                    ),
                    role.implication_rule_id(requirement),
                ),
                None => (format!("{label} {have} < {need}"), "T3"),
            }
        };
        Decision {
            allowed: false,
            reason,
            rule,
        }
    }
}

/// A change a rule forbids. Displays as `rule T4: …`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rule {rule}: {message}")]
pub struct RuleViolation {
    /// The rule of DOMAIN.md, e.g. `T4`.
    pub rule: &'static str,
    /// What it forbids here.
    pub message: String,
}

impl RuleViolation {
    fn new(rule: &'static str, message: impl Into<String>) -> Self {
        Self {
            rule,
            message: message.into(),
        }
    }
}

/// What the grantor holds, for the messages of the authority checks.
fn holding(grantor: &Effective, level: &str) -> String {
    if grantor.is_disabled() {
        "the grantor is disabled".to_owned()
    } else {
        format!("the grantor has {level}")
    }
}

/// Checks that `grantor` may set `target`'s explicit tool levels to `new_tools` (T4):
/// it holds manage access UPDATE on the site, the target is not the primary contact, and on
/// every tool that changes, both the old and the new level are within the grantor's own
/// effective level; account management moves only by a holder of it.
pub fn check_tool_change(
    grantor: &Effective,
    target: &Subject,
    new_tools: &ToolAccess,
) -> Result<(), RuleViolation> {
    let own = grantor.rights().tools;
    if own.manage_access < ManageAccess::Update {
        return Err(RuleViolation::new(
            "T4",
            format!(
                "changing tool access needs manage access UPDATE on the site ({})",
                holding(grantor, own.manage_access.name())
            ),
        ));
    }
    if target.is_primary() {
        return Err(RuleViolation::new(
            "T4",
            "nobody edits the primary contact's implied rights",
        ));
    }
    let current = target.explicit.tools;
    for tool in current.changed_tools(new_tools) {
        let (own, from, to) = (own.get(tool), current.get(tool), new_tools.get(tool));
        if tool == Tool::AccountManagement && own.rank() == 0 {
            return Err(RuleViolation::new(
                "T4",
                "only holders of account management may grant account management",
            ));
        }
        if !own.includes(to) {
            return Err(RuleViolation::new(
                "T4",
                format!("cannot grant {to}: above the grantor's own {}", own.name()),
            ));
        }
        if !own.includes(from) {
            return Err(RuleViolation::new(
                "T4",
                format!(
                    "cannot take away {from}: above the grantor's own {}",
                    own.name()
                ),
            ));
        }
    }
    Ok(())
}

/// Checks that `grantor` may change `target`'s explicit support level: only the
/// STC and support ADMINISTRATORs change support levels (U4, U5), nobody changes the STC's
/// (U6), nor the primary's while it is implied (T4). Nothing exists above ADMINISTRATOR, so
/// no grant is above it (U4).
pub fn check_support_change(grantor: &Effective, target: &Subject) -> Result<(), RuleViolation> {
    let own = grantor.rights().support;
    if own < SupportLevel::Administrator {
        return Err(RuleViolation::new(
            "U4",
            format!(
                "only the site technical contact and support ADMINISTRATORs change support levels ({})",
                holding(grantor, own.name())
            ),
        ));
    }
    if target.is_site_technical() {
        return Err(RuleViolation::new(
            "U6",
            "a support administrator cannot change the site technical contact's level (implicitly ADMINISTRATOR, U5)",
        ));
    }
    if target.is_primary()
        && ContactRole::Primary.implies(grantor.site()).support > SupportLevel::NoAccess
    {
        return Err(RuleViolation::new(
            "T4",
            "nobody edits the primary contact's implied rights (it stands in for the missing site technical contact, R1)",
        ));
    }
    Ok(())
}

/// Checks that `grantor` may remove every explicit grant of `target` (RevokeAccess): each
/// part that exists needs the authority that would change it (T4, U4–U6); when nothing is
/// granted, the grantor still needs manage access UPDATE or support ADMINISTRATOR.
pub fn check_revoke(grantor: &Effective, target: &Subject) -> Result<(), RuleViolation> {
    let has_tools = !target.explicit.tools.is_none();
    let has_support = target.explicit.support > SupportLevel::NoAccess;
    if has_tools {
        check_tool_change(grantor, target, &ToolAccess::NONE)?;
    }
    if has_support {
        check_support_change(grantor, target)?;
    }
    let rights = grantor.rights();
    if !has_tools
        && !has_support
        && rights.tools.manage_access < ManageAccess::Update
        && rights.support < SupportLevel::Administrator
    {
        return Err(RuleViolation::new(
            "T4",
            format!(
                "revoking access needs manage access UPDATE or support ADMINISTRATOR on the site ({})",
                holding(grantor, rights.tools.manage_access.name())
            ),
        ));
    }
    Ok(())
}

/// Checks that a change of `target_id`'s explicit grants from `before` to `after` made by
/// `actor_id` does not raise the actor's own rights (T7): nobody grants itself anything or
/// raises one of its own levels, whoever it is (operators included: an operator acts on
/// others), even up to what its roles imply already, since an explicit copy of implied
/// rights would survive the loss of the role. Lowering or revoking one's own is allowed.
pub fn check_self_grant(
    actor_id: Uuid,
    target_id: Uuid,
    before: &Grants,
    after: &Grants,
) -> Result<(), RuleViolation> {
    let raises = !after.tools.is_within(&before.tools) || after.support > before.support;
    if actor_id == target_id && raises {
        return Err(RuleViolation::new(
            "T7",
            "nobody grants or raises its own rights; another holder of the authority must \
             (lowering or revoking one's own is allowed)",
        ));
    }
    Ok(())
}

/// Checks that `approver_id` does not approve its own request (T7): an approval is a grant,
/// and nobody grants itself rights.
pub fn check_not_own_request(approver_id: Uuid, requester_id: Uuid) -> Result<(), RuleViolation> {
    if approver_id == requester_id {
        return Err(RuleViolation::new(
            "T7",
            "nobody approves its own access request; another approver must decide it",
        ));
    }
    Ok(())
}

/// What an access request asks for. The discriminants are the proto numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AccessRequestKind {
    /// Tool access to a site.
    SiteAccess = 1,
    /// A support level on a site.
    SupportAccess = 2,
}

impl AccessRequestKind {
    /// Both kinds.
    pub const ALL: [AccessRequestKind; 2] = [Self::SiteAccess, Self::SupportAccess];

    /// The kind of a proto enum number; `None` for 0 (UNSPECIFIED) or unknown numbers.
    pub fn from_number(number: i32) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| *kind as i32 == number)
    }

    /// The proto enum number.
    pub fn number(self) -> i32 {
        self as i32
    }

    /// Name without the proto prefix, e.g. `SITE_ACCESS`.
    pub fn name(self) -> &'static str {
        match self {
            Self::SiteAccess => "SITE_ACCESS",
            Self::SupportAccess => "SUPPORT_ACCESS",
        }
    }

    /// The permission that lets a user decide requests of this kind (A3).
    pub fn approve_permission(self) -> Permission {
        match self {
            Self::SiteAccess => Permission::ApproveSiteAccess,
            Self::SupportAccess => Permission::ApproveSupportAccess,
        }
    }
}

impl std::fmt::Display for AccessRequestKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One user of a site, for listing approvers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    /// User id.
    pub user_id: Uuid,
    /// Its roles, grants and state on the site.
    pub subject: Subject,
}

/// A user who may decide a kind of request on a site, and why (A3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approver {
    /// User id.
    pub user_id: Uuid,
    /// Why, e.g. `A3: implied by PRIMARY (T3)`.
    pub reason: String,
}

/// The users among `members` of a site who may decide requests of `kind` (A3): for site
/// access the primary contact and holders of manage access UPDATE (the ADMINISTRATIVE
/// contact with the C3 switch on is one), for support access the STC and support
/// ADMINISTRATORs (the primary while the site has no STC, R1). Disabled users are never
/// approvers. Role holders come first, in role order, then the others by user id.
pub fn approvers(kind: AccessRequestKind, site: SiteFacts, members: &[Member]) -> Vec<Approver> {
    let requirement = kind.approve_permission().requirement();
    let mut found: Vec<(Option<ContactRole>, Approver)> = members
        .iter()
        .filter_map(|member| {
            let effective = Effective::of(&member.subject, site);
            let decision = effective.decide(requirement);
            decision.allowed.then(|| {
                (
                    effective.implying_role(requirement),
                    Approver {
                        user_id: member.user_id,
                        reason: format!("A3: {}", decision.reason),
                    },
                )
            })
        })
        .collect();
    // `None` sorts before `Some`: put role holders first.
    found.sort_by_key(|(role, approver)| (role.is_none(), *role, approver.user_id));
    found.into_iter().map(|(_, approver)| approver).collect()
}

/// Checks that `approver` may decide (approve or reject) requests of `kind` (A3).
pub fn check_decider(approver: &Effective, kind: AccessRequestKind) -> Result<(), RuleViolation> {
    if approver.check(kind.approve_permission()).allowed {
        return Ok(());
    }
    let who = match kind {
        AccessRequestKind::SiteAccess => {
            "only the PRIMARY contact and holders of manage access UPDATE decide site access requests"
        }
        AccessRequestKind::SupportAccess => {
            "only the SITE_TECHNICAL contact and support ADMINISTRATORs decide support access requests"
        }
    };
    Err(RuleViolation::new("A3", who))
}

/// Checks that `approver` may approve `requester`'s request of `kind` for `asked` by
/// granting `granted`, and returns the requester's new explicit grants.
///
/// Only the part of `asked` and `granted` that belongs to the kind counts (tools for site
/// access, the support level for support access). The approver must be an approver (A3);
/// the grant may be less than was asked, never more (A4); it only raises levels (A5), and it
/// must be a change the approver may make itself (T4, U4–U6).
pub fn check_approval(
    approver: &Effective,
    requester: &Subject,
    kind: AccessRequestKind,
    asked: &Grants,
    granted: &Grants,
) -> Result<Grants, RuleViolation> {
    check_decider(approver, kind)?;
    let current = requester.explicit;
    match kind {
        AccessRequestKind::SiteAccess => {
            for tool in Tool::ALL {
                let (asked, granted) = (asked.tools.get(tool), granted.tools.get(tool));
                if !asked.includes(granted) {
                    return Err(RuleViolation::new(
                        "A4",
                        format!(
                            "an approval may grant less than was asked, never more: {granted} was not asked (asked {})",
                            asked.name()
                        ),
                    ));
                }
            }
            let tools = current.tools.join(granted.tools);
            if tools != current.tools {
                check_tool_change(approver, requester, &tools)?;
            }
            Ok(Grants { tools, ..current })
        }
        AccessRequestKind::SupportAccess => {
            if granted.support > asked.support {
                return Err(RuleViolation::new(
                    "A4",
                    format!(
                        "an approval may grant less than was asked, never more: support {} was not asked (asked {})",
                        granted.support, asked.support
                    ),
                ));
            }
            let support = current.support.max(granted.support);
            if support != current.support {
                check_support_change(approver, requester)?;
            }
            Ok(Grants { support, ..current })
        }
    }
}

/// Checks that `setter` may set a domain policy with `baseline` (A7): it holds manage access
/// UPDATE, and the baseline is a grant it could make to a newcomer itself (T4; U4 for a
/// support level above NO_ACCESS).
pub fn check_domain_baseline(setter: &Effective, baseline: &Grants) -> Result<(), RuleViolation> {
    let newcomer = Subject::default();
    check_tool_change(setter, &newcomer, &baseline.tools)?;
    if baseline.support > SupportLevel::NoAccess {
        check_support_change(setter, &newcomer)?;
    }
    Ok(())
}

/// What a domain policy approval grants (A7): the baseline, never more than was asked (A4).
pub fn baseline_grant(kind: AccessRequestKind, asked: &Grants, baseline: &Grants) -> Grants {
    match kind {
        AccessRequestKind::SiteAccess => Grants {
            tools: asked.tools.meet(baseline.tools),
            support: SupportLevel::NoAccess,
        },
        AccessRequestKind::SupportAccess => Grants {
            tools: ToolAccess::NONE,
            support: asked.support.min(baseline.support),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::levels::{
        AccountManagementAccess as Am, ContactUpdatesAccess as Cu, EntitlementsAccess as En,
        ReportingAccess as Re, SoftwareAccess as Sw,
    };
    use ManageAccess as Ma;
    use ToolLevel as L;

    /// A site with a SITE_TECHNICAL contact and the C3 switch off.
    const SITE: SiteFacts = SiteFacts {
        admin_may_manage_access: false,
        has_site_technical: true,
    };

    fn uid(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    /// A user holding `roles`, without explicit grants.
    fn with_roles(roles: &[ContactRole]) -> Subject {
        Subject {
            roles: RoleSet::of(roles),
            ..Subject::default()
        }
    }

    /// A user holding `roles`, with explicit `levels` and `support`, not disabled.
    fn subject_with(roles: &[ContactRole], levels: &[ToolLevel], support: SupportLevel) -> Subject {
        Subject {
            roles: RoleSet::of(roles),
            explicit: Grants {
                tools: tools(levels),
                support,
            },
            disabled: false,
        }
    }

    /// A SITE_USER with explicit `levels` and `support`.
    fn granted(levels: &[ToolLevel], support: SupportLevel) -> Subject {
        subject_with(&[ContactRole::SiteUser], levels, support)
    }

    fn tools(levels: &[ToolLevel]) -> ToolAccess {
        levels
            .iter()
            .fold(ToolAccess::NONE, |tools, level| tools.with(*level))
    }

    fn on(subject: Subject, site: SiteFacts) -> Effective {
        Effective::of(&subject, site)
    }

    fn eff(subject: Subject) -> Effective {
        on(subject, SITE)
    }

    fn err(result: Result<impl std::fmt::Debug, RuleViolation>) -> String {
        result.expect_err("expected a rule violation").to_string()
    }

    const NEEDS_UPDATE: Option<&str> =
        Some("rule T4: changing tool access needs manage access UPDATE on the site");
    const ABOVE_OWN: Option<&str> = Some("rule T4: cannot grant ");
    const TAKE_AWAY: Option<&str> = Some("rule T4: cannot take away ");
    const ONLY_AM: Option<&str> =
        Some("rule T4: only holders of account management may grant account management");
    const OK: Option<&str> = None;

    #[test]
    fn escalation_table() {
        // Each row: the grantor's manage access level, its own level of one tool, the target's
        // current explicit level of that tool, the level the grantor sets, and the refusal
        // (None: allowed). A row whose tool is manage access itself overrides the first column.
        #[rustfmt::skip]
        let table: &[(Ma, ToolLevel, ToolLevel, ToolLevel, Option<&str>)] = &[
            // rule T4: without manage access UPDATE nothing changes, whatever the tool level.
            (Ma::None, L::Software(Sw::Full), L::Software(Sw::None), L::Software(Sw::DownloadsOnly), NEEDS_UPDATE),
            (Ma::None, L::Reporting(Re::View), L::Reporting(Re::None), L::Reporting(Re::View), NEEDS_UPDATE),
            (Ma::None, L::AccountManagement(Am::Granted), L::AccountManagement(Am::None), L::AccountManagement(Am::Granted), NEEDS_UPDATE),
            (Ma::View, L::Software(Sw::Full), L::Software(Sw::None), L::Software(Sw::DownloadsOnly), NEEDS_UPDATE),
            (Ma::View, L::Entitlements(En::Update), L::Entitlements(En::None), L::Entitlements(En::View), NEEDS_UPDATE),
            (Ma::View, L::ManageAccess(Ma::View), L::ManageAccess(Ma::None), L::ManageAccess(Ma::View), NEEDS_UPDATE),
            (Ma::View, L::Software(Sw::Full), L::Software(Sw::Full), L::Software(Sw::None), NEEDS_UPDATE),
            (Ma::View, L::AccountManagement(Am::Granted), L::AccountManagement(Am::None), L::AccountManagement(Am::Granted), NEEDS_UPDATE),
            // rule T4: with manage access UPDATE, up to the grantor's own level of each tool.
            (Ma::Update, L::Software(Sw::None), L::Software(Sw::None), L::Software(Sw::DownloadsOnly), ABOVE_OWN),
            (Ma::Update, L::Software(Sw::DownloadsOnly), L::Software(Sw::None), L::Software(Sw::DownloadsOnly), OK),
            (Ma::Update, L::Software(Sw::DownloadsOnly), L::Software(Sw::None), L::Software(Sw::DownloadsAndMedia), ABOVE_OWN),
            (Ma::Update, L::Software(Sw::DownloadsAndMedia), L::Software(Sw::None), L::Software(Sw::DownloadsAndMedia), OK),
            (Ma::Update, L::Software(Sw::DownloadsAndMedia), L::Software(Sw::DownloadsOnly), L::Software(Sw::Full), ABOVE_OWN),
            (Ma::Update, L::Software(Sw::Full), L::Software(Sw::None), L::Software(Sw::Full), OK),
            (Ma::Update, L::Software(Sw::Full), L::Software(Sw::None), L::Software(Sw::DownloadsOnly), OK),
            (Ma::Update, L::Reporting(Re::None), L::Reporting(Re::None), L::Reporting(Re::View), ABOVE_OWN),
            (Ma::Update, L::Reporting(Re::View), L::Reporting(Re::None), L::Reporting(Re::View), OK),
            (Ma::Update, L::Entitlements(En::View), L::Entitlements(En::None), L::Entitlements(En::View), OK),
            (Ma::Update, L::Entitlements(En::View), L::Entitlements(En::None), L::Entitlements(En::Update), ABOVE_OWN),
            (Ma::Update, L::Entitlements(En::Update), L::Entitlements(En::View), L::Entitlements(En::Update), OK),
            (Ma::Update, L::ContactUpdates(Cu::View), L::ContactUpdates(Cu::None), L::ContactUpdates(Cu::Update), ABOVE_OWN),
            (Ma::Update, L::ContactUpdates(Cu::Update), L::ContactUpdates(Cu::None), L::ContactUpdates(Cu::Update), OK),
            (Ma::Update, L::AccountDocuments(AccountDocumentsAccess::None), L::AccountDocuments(AccountDocumentsAccess::None), L::AccountDocuments(AccountDocumentsAccess::View), ABOVE_OWN),
            (Ma::Update, L::AccountDocuments(AccountDocumentsAccess::View), L::AccountDocuments(AccountDocumentsAccess::None), L::AccountDocuments(AccountDocumentsAccess::View), OK),
            // rule T4: manage access itself: an UPDATE holder may pass on VIEW or UPDATE.
            (Ma::Update, L::ManageAccess(Ma::Update), L::ManageAccess(Ma::None), L::ManageAccess(Ma::View), OK),
            (Ma::Update, L::ManageAccess(Ma::Update), L::ManageAccess(Ma::View), L::ManageAccess(Ma::Update), OK),
            // rule T4: nor can it take away a level above its own (it could not give it).
            (Ma::Update, L::Software(Sw::DownloadsOnly), L::Software(Sw::Full), L::Software(Sw::None), TAKE_AWAY),
            (Ma::Update, L::Software(Sw::DownloadsOnly), L::Software(Sw::Full), L::Software(Sw::DownloadsOnly), TAKE_AWAY),
            (Ma::Update, L::Software(Sw::Full), L::Software(Sw::Full), L::Software(Sw::None), OK),
            (Ma::Update, L::Entitlements(En::View), L::Entitlements(En::Update), L::Entitlements(En::View), TAKE_AWAY),
            // rule T4: only holders of account management grant (or take away) account management.
            (Ma::Update, L::AccountManagement(Am::None), L::AccountManagement(Am::None), L::AccountManagement(Am::Granted), ONLY_AM),
            (Ma::Update, L::AccountManagement(Am::None), L::AccountManagement(Am::Granted), L::AccountManagement(Am::None), ONLY_AM),
            (Ma::Update, L::AccountManagement(Am::Granted), L::AccountManagement(Am::None), L::AccountManagement(Am::Granted), OK),
            (Ma::Update, L::AccountManagement(Am::Granted), L::AccountManagement(Am::Granted), L::AccountManagement(Am::None), OK),
        ];
        for (row, &(manage, own, from, to, refusal)) in table.iter().enumerate() {
            let grantor = eff(granted(
                &[L::ManageAccess(manage), own],
                SupportLevel::NoAccess,
            ));
            let target = granted(&[from], SupportLevel::NoAccess);
            let result = check_tool_change(&grantor, &target, &target.explicit.tools.with(to));
            let what = format!("row {row}: manage {manage}, own {own}, {from} -> {to}");
            match (refusal, result) {
                (None, Ok(())) => {}
                (Some(prefix), Err(violation)) => assert!(
                    violation.to_string().starts_with(prefix),
                    "{what}: got `{violation}`, expected `{prefix}…`"
                ),
                (expected, got) => panic!("{what}: expected {expected:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn escalation_sweep_every_tool_and_level() {
        // rule T4, exhaustively: for every tool, every manage access level and every own level
        // of the grantor, and every change of a target's level, the change is allowed exactly
        // when the grantor holds manage access UPDATE and both levels are within its own.
        for tool in Tool::ALL {
            for &manage in ManageAccess::ALL {
                for own in tool.levels() {
                    let grantor_tools = tools(&[L::ManageAccess(manage), own]);
                    let grantor = eff(granted(
                        &[L::ManageAccess(manage), own],
                        SupportLevel::NoAccess,
                    ));
                    for from in tool.levels() {
                        for to in tool.levels() {
                            let target = granted(&[from], SupportLevel::NoAccess);
                            let allowed = grantor_tools.manage_access == ManageAccess::Update
                                && (from == to || (own.includes(from) && own.includes(to)));
                            let result = check_tool_change(
                                &grantor,
                                &target,
                                &target.explicit.tools.with(to),
                            );
                            assert_eq!(
                                result.is_ok(),
                                allowed,
                                "manage {manage}, own {own}, {from} -> {to}: {result:?}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn role_grantors() {
        let newcomer = with_roles(&[ContactRole::SiteUser]);
        // rule T3 + T4: the primary holds the top of every tool, so it may grant anything.
        let primary = eff(with_roles(&[ContactRole::Primary]));
        assert_eq!(
            check_tool_change(&primary, &newcomer, &ToolAccess::TOP),
            Ok(())
        );
        // rule T3 + T4: the ADMINISTRATIVE contact with the C3 switch on holds manage access
        // UPDATE and account documents VIEW, so it grants those and nothing else.
        let switch_on = SiteFacts {
            admin_may_manage_access: true,
            ..SITE
        };
        let admin = on(with_roles(&[ContactRole::Administrative]), switch_on);
        let mine = tools(&[
            L::ManageAccess(Ma::Update),
            L::AccountDocuments(AccountDocumentsAccess::View),
        ]);
        assert_eq!(check_tool_change(&admin, &newcomer, &mine), Ok(()));
        assert!(
            err(check_tool_change(
                &admin,
                &newcomer,
                &tools(&[L::Software(Sw::DownloadsOnly)])
            ))
            .starts_with("rule T4: cannot grant software DOWNLOADS_ONLY")
        );
        // rule T4: with the switch off it holds manage access NONE and grants nothing.
        let admin = eff(with_roles(&[ContactRole::Administrative]));
        assert_eq!(
            err(check_tool_change(&admin, &newcomer, &mine)),
            "rule T4: changing tool access needs manage access UPDATE on the site (the grantor has NONE)"
        );
    }

    #[test]
    fn a_secondary_grants_what_its_role_implies_and_never_account_management() {
        let newcomer = with_roles(&[ContactRole::SiteUser]);
        let secondary = eff(with_roles(&[ContactRole::Secondary]));
        // rule T3 + T4: SECONDARY implies manage access UPDATE and contact updates UPDATE,
        // so it passes those on...
        let mine = tools(&[L::ManageAccess(Ma::Update), L::ContactUpdates(Cu::Update)]);
        assert_eq!(check_tool_change(&secondary, &newcomer, &mine), Ok(()));
        // ...and nothing above its own levels...
        assert!(
            err(check_tool_change(
                &secondary,
                &newcomer,
                &tools(&[L::Reporting(Re::View)])
            ))
            .starts_with("rule T4: cannot grant reporting VIEW")
        );
        // ...and never account management (T3: the role never implies it).
        assert_eq!(
            err(check_tool_change(
                &secondary,
                &newcomer,
                &tools(&[L::AccountManagement(Am::Granted)])
            )),
            ONLY_AM.unwrap()
        );
        // rule A3: it decides site access requests, not support ones.
        assert_eq!(
            check_decider(&secondary, AccessRequestKind::SiteAccess),
            Ok(())
        );
        assert_eq!(
            check_decider(&secondary, AccessRequestKind::SupportAccess)
                .unwrap_err()
                .rule,
            "A3"
        );
    }

    #[test]
    fn nobody_grants_or_raises_its_own_rights() {
        let (me, other) = (uid(1), uid(2));
        let before = Grants {
            tools: tools(&[L::Software(Sw::DownloadsOnly), L::ManageAccess(Ma::View)]),
            support: SupportLevel::Basic,
        };
        let raise_tool = Grants {
            tools: before.tools.with(L::ManageAccess(Ma::Update)),
            ..before
        };
        let raise_support = Grants {
            support: SupportLevel::Full,
            ..before
        };
        let lower = Grants {
            tools: before.tools.with(L::Software(Sw::None)),
            support: SupportLevel::NoAccess,
        };
        // rule T7: raising any of one's own levels is refused, tool or support.
        for after in [raise_tool, raise_support] {
            let violation = check_self_grant(me, me, &before, &after).unwrap_err();
            assert_eq!(violation.rule, "T7");
            assert!(
                violation
                    .to_string()
                    .starts_with("rule T7: nobody grants or raises its own rights")
            );
        }
        // rule T7: a raise of one tool with a lowering of another is still a raise.
        let mixed = Grants {
            tools: lower.tools.with(L::Reporting(Re::View)),
            ..lower
        };
        assert_eq!(
            check_self_grant(me, me, &before, &mixed).unwrap_err().rule,
            "T7"
        );
        // Lowering, revoking or changing nothing of one's own is allowed.
        assert_eq!(check_self_grant(me, me, &before, &lower), Ok(()));
        assert_eq!(check_self_grant(me, me, &before, &Grants::NONE), Ok(()));
        assert_eq!(check_self_grant(me, me, &before, &before), Ok(()));
        // Raising someone else's is T4's business, not T7's.
        assert_eq!(check_self_grant(me, other, &before, &raise_tool), Ok(()));
        // rule T7: nobody approves its own request.
        assert_eq!(check_not_own_request(me, me).unwrap_err().rule, "T7");
        assert_eq!(check_not_own_request(me, other), Ok(()));
    }

    #[test]
    fn only_account_management_holders_grant_account_management() {
        let newcomer = with_roles(&[ContactRole::SiteUser]);
        let am = tools(&[L::AccountManagement(Am::Granted)]);
        // rule T2 + T4: the primary holds account management, so it may pass it on.
        let primary = eff(with_roles(&[ContactRole::Primary]));
        assert_eq!(check_tool_change(&primary, &newcomer, &am), Ok(()));
        // rule T4: so may an explicit holder with manage access UPDATE.
        let holder = eff(granted(
            &[
                L::ManageAccess(Ma::Update),
                L::AccountManagement(Am::Granted),
            ],
            SupportLevel::NoAccess,
        ));
        assert_eq!(check_tool_change(&holder, &newcomer, &am), Ok(()));
        // rule T4: the top of every other tool is not enough.
        let everything_else = eff(granted(
            &ToolAccess::TOP
                .with(L::AccountManagement(Am::None))
                .levels(),
            SupportLevel::Administrator,
        ));
        assert_eq!(
            err(check_tool_change(&everything_else, &newcomer, &am)),
            ONLY_AM.unwrap()
        );
        // rule T4: nor is being the ADMINISTRATIVE contact with the C3 switch on.
        let admin = on(
            with_roles(&[ContactRole::Administrative]),
            SiteFacts {
                admin_may_manage_access: true,
                ..SITE
            },
        );
        assert_eq!(
            err(check_tool_change(&admin, &newcomer, &am)),
            ONLY_AM.unwrap()
        );
    }

    #[test]
    fn nobody_edits_the_primary_contacts_implied_rights() {
        const PRIMARY_RULE: &str = "rule T4: nobody edits the primary contact's implied rights";
        let mut primary = with_roles(&[ContactRole::Primary]);
        let holder = eff(granted(
            &ToolAccess::TOP.levels(),
            SupportLevel::Administrator,
        ));
        let itself = eff(primary);
        // rule T4: not an account-management holder, not the primary itself, not even a
        // change that lowers nothing.
        for grantor in [&holder, &itself] {
            for change in [
                ToolAccess::NONE,
                ToolAccess::TOP,
                tools(&[L::Reporting(Re::View)]),
            ] {
                assert_eq!(
                    err(check_tool_change(grantor, &primary, &change)),
                    PRIMARY_RULE
                );
            }
        }
        // rule T4: nor revoke what it may hold explicitly from before.
        primary.explicit.tools = tools(&[L::Software(Sw::Full)]);
        assert_eq!(err(check_revoke(&holder, &primary)), PRIMARY_RULE);
        // rule T4 + R1: without an STC the primary's support level is implied too.
        let no_stc = SiteFacts {
            has_site_technical: false,
            ..SITE
        };
        let support_admin = on(granted(&[], SupportLevel::Administrator), no_stc);
        assert!(err(check_support_change(&support_admin, &primary)).starts_with(PRIMARY_RULE));
        // With an STC it is not, and the STC may grant the primary a support level (U5).
        let stc = eff(with_roles(&[ContactRole::SiteTechnical]));
        assert_eq!(check_support_change(&stc, &primary), Ok(()));
    }

    #[test]
    fn support_levels_are_changed_by_the_stc_and_support_administrators() {
        let user = granted(&[], SupportLevel::Basic);
        // rule U5: the STC administers support access.
        let stc = eff(with_roles(&[ContactRole::SiteTechnical]));
        assert_eq!(check_support_change(&stc, &user), Ok(()));
        // rule U4: so does a support ADMINISTRATOR.
        let admin = eff(granted(&[], SupportLevel::Administrator));
        assert_eq!(check_support_change(&admin, &user), Ok(()));
        // rule U4: FULL is not enough, nor is any tool level.
        let full = eff(granted(&[], SupportLevel::Full));
        assert_eq!(
            err(check_support_change(&full, &user)),
            "rule U4: only the site technical contact and support ADMINISTRATORs change support levels (the grantor has FULL)"
        );
        let tools_top = eff(granted(&ToolAccess::TOP.levels(), SupportLevel::NoAccess));
        assert!(err(check_support_change(&tools_top, &user)).starts_with("rule U4:"));
        // rule U4 (decision): with an STC, the primary does not administer support...
        let primary = with_roles(&[ContactRole::Primary]);
        assert!(err(check_support_change(&eff(primary), &user)).starts_with("rule U4:"));
        // ...rule R1: without one, it stands in for the STC.
        let no_stc = SiteFacts {
            has_site_technical: false,
            ..SITE
        };
        assert_eq!(check_support_change(&on(primary, no_stc), &user), Ok(()));
    }

    #[test]
    fn a_support_administrator_cannot_change_the_stc() {
        // rule U6: a support administrator cannot change the STC's level.
        let stc = with_roles(&[ContactRole::SiteTechnical]);
        let admin = eff(granted(&[], SupportLevel::Administrator));
        let violation = check_support_change(&admin, &stc).unwrap_err();
        assert_eq!(violation.rule, "U6");
        assert!(violation.to_string().starts_with(
            "rule U6: a support administrator cannot change the site technical contact's level"
        ));
        // rule U6: nor revoke an explicit level it may hold.
        let stc_with_grant = Subject {
            explicit: Grants {
                support: SupportLevel::Full,
                ..Grants::NONE
            },
            ..stc
        };
        assert_eq!(
            check_revoke(&admin, &stc_with_grant).unwrap_err().rule,
            "U6"
        );
        // rule U5: its effective level stays ADMINISTRATOR whatever is granted.
        assert_eq!(
            eff(stc_with_grant).rights().support,
            SupportLevel::Administrator
        );
    }

    #[test]
    fn a_disabled_user_is_denied_every_permission() {
        // A disabled user has no access (issue 4), even as PRIMARY, ADMINISTRATIVE and STC
        // with every explicit grant, on a site whose C3 switch is on and without an STC.
        let site = SiteFacts {
            admin_may_manage_access: true,
            has_site_technical: false,
        };
        let subject = Subject {
            roles: RoleSet::of(&[
                ContactRole::Primary,
                ContactRole::Administrative,
                ContactRole::SiteTechnical,
            ]),
            explicit: Grants {
                tools: ToolAccess::TOP,
                support: SupportLevel::Administrator,
            },
            disabled: true,
        };
        let effective = on(subject, site);
        for permission in Permission::ALL {
            let decision = effective.check(permission);
            assert!(!decision.allowed, "{permission} allowed");
            assert_eq!(decision.reason, DISABLED_REASON);
        }
        assert_eq!(effective.rights(), Grants::NONE);
        assert!(effective.implied_by().is_empty());
        assert_eq!(
            effective.explicit().tools,
            ToolAccess::TOP,
            "grants are kept"
        );
        // Nor does it grant, revoke, approve or set policies.
        let user = granted(&[], SupportLevel::NoAccess);
        assert_eq!(
            err(check_tool_change(&effective, &user, &ToolAccess::NONE)),
            "rule T4: changing tool access needs manage access UPDATE on the site (the grantor is disabled)"
        );
        assert!(err(check_support_change(&effective, &user)).contains("the grantor is disabled"));
        assert!(err(check_revoke(&effective, &user)).contains("the grantor is disabled"));
        for kind in AccessRequestKind::ALL {
            assert_eq!(check_decider(&effective, kind).unwrap_err().rule, "A3");
        }
        assert!(check_domain_baseline(&effective, &Grants::NONE).is_err());
        // Enabled again, it holds everything.
        let enabled = on(
            Subject {
                disabled: false,
                ..subject
            },
            site,
        );
        assert!(
            Permission::ALL
                .into_iter()
                .all(|p| enabled.check(p).allowed)
        );
    }

    #[test]
    fn support_no_access_denies_every_support_permission() {
        // rule U1: NO_ACCESS cannot open, change or see the site's cases, nor get updates,
        // even with the top level of every tool.
        let user = eff(granted(
            &[L::Software(Sw::Full), L::ManageAccess(ManageAccess::Update)],
            SupportLevel::NoAccess,
        ));
        for permission in [
            Permission::SupportOwnCases,
            Permission::SupportSiteCases,
            Permission::SupportAdmin,
            Permission::ApproveSupportAccess,
        ] {
            assert!(!user.check(permission).allowed, "{permission}");
        }
        // rule U2: BASIC reaches the user's own cases only.
        let basic = eff(granted(&[], SupportLevel::Basic));
        assert!(basic.check(Permission::SupportOwnCases).allowed);
        assert!(!basic.check(Permission::SupportSiteCases).allowed);
    }

    #[test]
    fn effective_rights_are_the_higher_of_grants_and_roles() {
        // rule T3: PRIMARY implies the top level of every tool.
        let primary = eff(with_roles(&[ContactRole::Primary]));
        assert_eq!(primary.rights().tools, ToolAccess::TOP);
        assert_eq!(primary.implied_by(), RoleSet::of(&[ContactRole::Primary]));
        // Decision (module doc): with an STC, the primary has no implied support level;
        // rule R1: without one, it stands in for the STC as ADMINISTRATOR.
        assert_eq!(primary.rights().support, SupportLevel::NoAccess);
        let no_stc = SiteFacts {
            has_site_technical: false,
            ..SITE
        };
        let primary_alone = on(with_roles(&[ContactRole::Primary]), no_stc);
        assert_eq!(primary_alone.rights().support, SupportLevel::Administrator);
        // rule T3: ADMINISTRATIVE implies account documents VIEW...
        let admin = eff(with_roles(&[ContactRole::Administrative]));
        assert_eq!(
            admin.rights().tools,
            tools(&[L::AccountDocuments(AccountDocumentsAccess::View)])
        );
        // ...and manage access UPDATE when the C3 switch is on.
        let switch_on = SiteFacts {
            admin_may_manage_access: true,
            ..SITE
        };
        let admin_on = on(with_roles(&[ContactRole::Administrative]), switch_on);
        assert_eq!(admin_on.rights().tools.manage_access, Ma::Update);
        // rule U5: the STC is implicitly support ADMINISTRATOR.
        let stc = eff(with_roles(&[ContactRole::SiteTechnical]));
        assert_eq!(stc.rights().support, SupportLevel::Administrator);
        assert_eq!(stc.rights().tools, ToolAccess::NONE);
        // rule T3: SECONDARY implies manage access UPDATE and contact updates UPDATE, never
        // account management, whatever the site's facts.
        let secondary_tools = tools(&[L::ManageAccess(Ma::Update), L::ContactUpdates(Cu::Update)]);
        for site in [
            SITE,
            SiteFacts {
                admin_may_manage_access: true,
                has_site_technical: false,
            },
        ] {
            let secondary = on(with_roles(&[ContactRole::Secondary]), site);
            assert_eq!(secondary.rights().tools, secondary_tools);
            assert_eq!(secondary.rights().tools.account_management, Am::None);
            assert_eq!(secondary.rights().support, SupportLevel::NoAccess);
            assert_eq!(
                secondary.implied_by(),
                RoleSet::of(&[ContactRole::Secondary])
            );
        }
        // Other roles imply nothing.
        let others = eff(with_roles(&[
            ContactRole::Renewal,
            ContactRole::Shipping,
            ContactRole::Billing,
            ContactRole::SiteUser,
        ]));
        assert!(others.rights().is_none());
        assert!(others.implied_by().is_empty());
        let with_billing = eff(with_roles(&[ContactRole::Secondary, ContactRole::Billing]));
        assert_eq!(with_billing.rights().tools, secondary_tools);
        assert_eq!(
            with_billing.implied_by(),
            RoleSet::of(&[ContactRole::Secondary])
        );
        // rule T3: the higher of the two, tool by tool, over the same explicit grants.
        let mixed_cases: [(&[ContactRole], &[L], &[ContactRole]); 2] = [
            (
                &[ContactRole::Administrative, ContactRole::Billing],
                &[
                    L::Software(Sw::Full),
                    L::ManageAccess(Ma::View),
                    L::AccountDocuments(AccountDocumentsAccess::View),
                ],
                &[ContactRole::Administrative],
            ),
            // With SECONDARY too, its implied levels win over lower explicit ones.
            (
                &[ContactRole::Administrative, ContactRole::Secondary],
                &[
                    L::Software(Sw::Full),
                    L::ManageAccess(Ma::Update),
                    L::ContactUpdates(Cu::Update),
                    L::AccountDocuments(AccountDocumentsAccess::View),
                ],
                &[ContactRole::Administrative, ContactRole::Secondary],
            ),
        ];
        for (roles, expected_tools, implied_by) in mixed_cases {
            let mixed = eff(subject_with(
                roles,
                &[L::Software(Sw::Full), L::ManageAccess(Ma::View)],
                SupportLevel::Basic,
            ));
            assert_eq!(mixed.rights().tools, tools(expected_tools), "{roles:?}");
            assert_eq!(mixed.rights().support, SupportLevel::Basic, "{roles:?}");
            assert_eq!(mixed.implied_by(), RoleSet::of(implied_by), "{roles:?}");
        }
    }

    #[test]
    fn check_reasons_name_the_grant_or_role() {
        let cases: &[(Subject, SiteFacts, Permission, bool, &str)] = &[
            // rule T3
            (
                with_roles(&[ContactRole::Primary]),
                SITE,
                Permission::AccessUpdate,
                true,
                "implied by PRIMARY (T3)",
            ),
            // rule T3: a role is named before an explicit grant, which could be revoked.
            (
                Subject {
                    explicit: Grants {
                        tools: ToolAccess::TOP,
                        ..Grants::NONE
                    },
                    ..with_roles(&[ContactRole::Primary])
                },
                SITE,
                Permission::LicenseRenewal,
                true,
                "implied by PRIMARY (T3)",
            ),
            // rule T1: a higher level includes the lower ones.
            (
                granted(&[L::ManageAccess(Ma::View)], SupportLevel::NoAccess),
                SITE,
                Permission::AccessUpdate,
                false,
                "explicit grant: manage access VIEW < UPDATE",
            ),
            (
                granted(&[L::ManageAccess(Ma::Update)], SupportLevel::NoAccess),
                SITE,
                Permission::AccessView,
                true,
                "explicit grant: manage access UPDATE >= VIEW",
            ),
            (
                granted(
                    &[L::Software(Sw::DownloadsAndMedia)],
                    SupportLevel::NoAccess,
                ),
                SITE,
                Permission::QuotesAndCatalogs,
                false,
                "explicit grant: software DOWNLOADS_AND_MEDIA < FULL",
            ),
            (
                granted(&[], SupportLevel::NoAccess),
                SITE,
                Permission::ReportsView,
                false,
                "no grant: reporting NONE < VIEW",
            ),
            // rule T3: ADMINISTRATIVE, with and without the C3 switch.
            (
                with_roles(&[ContactRole::Administrative]),
                SITE,
                Permission::DocumentsView,
                true,
                "implied by ADMINISTRATIVE (T3)",
            ),
            (
                with_roles(&[ContactRole::Administrative]),
                SITE,
                Permission::ApproveSiteAccess,
                false,
                "no grant: manage access NONE < UPDATE",
            ),
            (
                with_roles(&[ContactRole::Administrative]),
                SiteFacts {
                    admin_may_manage_access: true,
                    ..SITE
                },
                Permission::ApproveSiteAccess,
                true,
                "implied by ADMINISTRATIVE (T3)",
            ),
            // rule T3: SECONDARY implies manage access UPDATE and contact updates UPDATE...
            (
                with_roles(&[ContactRole::Secondary]),
                SITE,
                Permission::AccessUpdate,
                true,
                "implied by SECONDARY (T3)",
            ),
            (
                with_roles(&[ContactRole::Secondary]),
                SITE,
                Permission::ContactsUpdate,
                true,
                "implied by SECONDARY (T3)",
            ),
            (
                granted(&[L::ContactUpdates(Cu::View)], SupportLevel::NoAccess),
                SITE,
                Permission::ContactsUpdate,
                false,
                "explicit grant: contact updates VIEW < UPDATE",
            ),
            // ...never account management, nor anything else.
            (
                with_roles(&[ContactRole::Secondary]),
                SITE,
                Permission::AccountManagement,
                false,
                "no grant: account management NONE < GRANTED",
            ),
            (
                with_roles(&[ContactRole::Secondary]),
                SITE,
                Permission::SoftwareDownload,
                false,
                "no grant: software NONE < DOWNLOADS_ONLY",
            ),
            // rule U5
            (
                with_roles(&[ContactRole::SiteTechnical]),
                SITE,
                Permission::ApproveSupportAccess,
                true,
                "implied by SITE_TECHNICAL (U5)",
            ),
            (
                granted(&[], SupportLevel::Full),
                SITE,
                Permission::SupportOwnCases,
                true,
                "explicit grant: support FULL >= BASIC",
            ),
            (
                granted(&[], SupportLevel::Full),
                SITE,
                Permission::SupportAdmin,
                false,
                "explicit grant: support FULL < ADMINISTRATOR",
            ),
            // rule R1 (decision): the primary administers support only without an STC.
            (
                with_roles(&[ContactRole::Primary]),
                SITE,
                Permission::SupportOwnCases,
                false,
                "no grant: support NO_ACCESS < BASIC",
            ),
            (
                with_roles(&[ContactRole::Primary]),
                SiteFacts {
                    has_site_technical: false,
                    ..SITE
                },
                Permission::ApproveSupportAccess,
                true,
                "implied by PRIMARY (R1: no SITE_TECHNICAL contact)",
            ),
        ];
        for (subject, site, permission, allowed, reason) in cases {
            let decision = on(*subject, *site).check(*permission);
            assert_eq!(
                (decision.allowed, decision.reason.as_str()),
                (*allowed, *reason),
                "{permission}"
            );
        }
    }

    #[test]
    fn every_permission_needs_one_level() {
        use Requirement::{Support as S, Tool as T};
        use SupportLevel as Sl;
        let table = [
            (
                Permission::SoftwareDownload,
                T(L::Software(Sw::DownloadsOnly)),
            ),
            (
                Permission::MediaAccess,
                T(L::Software(Sw::DownloadsAndMedia)),
            ),
            (Permission::QuotesAndCatalogs, T(L::Software(Sw::Full))),
            (Permission::LicenseRenewal, T(L::Software(Sw::Full))),
            (Permission::ReportsView, T(L::Reporting(Re::View))),
            (Permission::EntitlementsView, T(L::Entitlements(En::View))),
            (
                Permission::EntitlementsUpdate,
                T(L::Entitlements(En::Update)),
            ),
            (
                Permission::AccountManagement,
                T(L::AccountManagement(Am::Granted)),
            ),
            (Permission::AccessView, T(L::ManageAccess(Ma::View))),
            (Permission::AccessUpdate, T(L::ManageAccess(Ma::Update))),
            (Permission::ContactsView, T(L::ContactUpdates(Cu::View))),
            (Permission::ContactsUpdate, T(L::ContactUpdates(Cu::Update))),
            (
                Permission::DocumentsView,
                T(L::AccountDocuments(AccountDocumentsAccess::View)),
            ),
            (Permission::SupportOwnCases, S(Sl::Basic)),
            (Permission::SupportSiteCases, S(Sl::Full)),
            (Permission::SupportAdmin, S(Sl::Administrator)),
            // rule A3: the primary (T3) and manage access UPDATE holders; the STC (U5) and
            // support ADMINISTRATORs.
            (
                Permission::ApproveSiteAccess,
                T(L::ManageAccess(Ma::Update)),
            ),
            (Permission::ApproveSupportAccess, S(Sl::Administrator)),
        ];
        assert_eq!(table.len(), 18);
        for (number, (permission, requirement)) in (1..).zip(table) {
            assert_eq!(permission.number(), number);
            assert_eq!(Permission::from_number(number), Some(permission));
            assert_eq!(permission.requirement(), requirement, "{permission}");
            // rule T1: exactly the needed level is enough, one below is not.
            let (enough, below) = match requirement {
                T(level) => {
                    let below = ToolLevel::from_rank(level.tool(), level.rank() - 1).unwrap();
                    (
                        granted(&[level], Sl::NoAccess),
                        granted(&[below], Sl::NoAccess),
                    )
                }
                S(level) => {
                    let below = SupportLevel::from_rank(level.rank() - 1).unwrap();
                    (granted(&[], level), granted(&[], below))
                }
            };
            assert!(eff(enough).check(permission).allowed, "{permission}");
            assert!(!eff(below).check(permission).allowed, "{permission}");
        }
        assert_eq!(Permission::from_number(0), None);
        assert_eq!(Permission::from_number(19), None);
    }

    #[test]
    fn approvers_are_the_ones_a3_names() {
        let (p, a, m, v, s, x, f, d, c) = (
            uid(1),
            uid(2),
            uid(3),
            uid(4),
            uid(5),
            uid(6),
            uid(7),
            uid(8),
            uid(9),
        );
        let member = |user_id, subject| Member { user_id, subject };
        let members = [
            member(x, granted(&[], SupportLevel::Administrator)),
            member(
                m,
                granted(&[L::ManageAccess(Ma::Update)], SupportLevel::NoAccess),
            ),
            member(v, granted(&[L::ManageAccess(Ma::View)], SupportLevel::Full)),
            member(f, granted(&[], SupportLevel::Full)),
            member(
                d,
                Subject {
                    disabled: true,
                    ..granted(&[L::ManageAccess(Ma::Update)], SupportLevel::Administrator)
                },
            ),
            member(s, with_roles(&[ContactRole::SiteTechnical])),
            member(a, with_roles(&[ContactRole::Administrative])),
            member(c, with_roles(&[ContactRole::Secondary])),
            member(p, with_roles(&[ContactRole::Primary])),
        ];
        let ids =
            |approvers: Vec<Approver>| approvers.into_iter().map(|a| a.user_id).collect::<Vec<_>>();
        // rule A3: site access: the primary and manage access UPDATE holders, never the
        // disabled; role holders first. rule T3: a SECONDARY contact holds manage access
        // UPDATE, so it is one.
        let site_approvers = approvers(AccessRequestKind::SiteAccess, SITE, &members);
        assert_eq!(site_approvers[0].reason, "A3: implied by PRIMARY (T3)");
        assert_eq!(site_approvers[1].reason, "A3: implied by SECONDARY (T3)");
        assert_eq!(
            site_approvers[2].reason,
            "A3: explicit grant: manage access UPDATE >= UPDATE"
        );
        assert_eq!(ids(site_approvers), vec![p, c, m]);
        // rule A3 + T3: with the C3 switch on, the ADMINISTRATIVE contact too.
        let switch_on = SiteFacts {
            admin_may_manage_access: true,
            ..SITE
        };
        assert_eq!(
            ids(approvers(
                AccessRequestKind::SiteAccess,
                switch_on,
                &members
            )),
            vec![p, a, c, m]
        );
        // rule A3: support access: the STC and support ADMINISTRATORs.
        let support = approvers(AccessRequestKind::SupportAccess, SITE, &members);
        assert_eq!(support[0].reason, "A3: implied by SITE_TECHNICAL (U5)");
        assert_eq!(ids(support), vec![s, x]);
        // rule A3 + R1: without an STC the primary stands in for it.
        let without_stc: Vec<Member> = members
            .iter()
            .copied()
            .filter(|mb| mb.user_id != s)
            .collect();
        let no_stc = SiteFacts {
            has_site_technical: false,
            ..SITE
        };
        let support = approvers(AccessRequestKind::SupportAccess, no_stc, &without_stc);
        assert_eq!(
            support[0].reason,
            "A3: implied by PRIMARY (R1: no SITE_TECHNICAL contact)"
        );
        assert_eq!(ids(support), vec![p, x]);
    }

    #[test]
    fn approvals_grant_at_most_what_was_asked_and_what_the_approver_may_grant() {
        let primary = eff(with_roles(&[ContactRole::Primary]));
        let requester = with_roles(&[ContactRole::SiteUser]);
        let asked = Grants {
            tools: tools(&[L::Software(Sw::Full), L::Reporting(Re::View)]),
            ..Grants::NONE
        };
        let site = AccessRequestKind::SiteAccess;
        // rule A4: less than was asked is fine.
        let less = Grants {
            tools: tools(&[L::Software(Sw::DownloadsOnly)]),
            ..Grants::NONE
        };
        assert_eq!(
            check_approval(&primary, &requester, site, &asked, &less),
            Ok(less)
        );
        assert_eq!(
            check_approval(&primary, &requester, site, &asked, &asked),
            Ok(asked)
        );
        // rule A4: more than was asked is not, even by the primary.
        let more = Grants {
            tools: asked.tools.with(L::Entitlements(En::View)),
            ..Grants::NONE
        };
        assert_eq!(
            err(check_approval(&primary, &requester, site, &asked, &more)),
            "rule A4: an approval may grant less than was asked, never more: entitlements VIEW was not asked (asked NONE)"
        );
        // rule A4 + T4: nor more than the approver may grant.
        let manager = eff(granted(
            &[
                L::ManageAccess(Ma::Update),
                L::Software(Sw::DownloadsOnly),
                L::Reporting(Re::View),
            ],
            SupportLevel::NoAccess,
        ));
        assert!(
            err(check_approval(&manager, &requester, site, &asked, &asked))
                .starts_with("rule T4: cannot grant software FULL")
        );
        let within = Grants {
            tools: tools(&[L::Software(Sw::DownloadsOnly), L::Reporting(Re::View)]),
            ..Grants::NONE
        };
        assert_eq!(
            check_approval(&manager, &requester, site, &asked, &within),
            Ok(within)
        );
        // rule A4 + T4: account management only from a holder.
        let asked_am = Grants {
            tools: tools(&[L::AccountManagement(Am::Granted)]),
            ..Grants::NONE
        };
        assert_eq!(
            err(check_approval(
                &manager, &requester, site, &asked_am, &asked_am
            )),
            ONLY_AM.unwrap()
        );
        // rule A3: only approvers decide.
        let viewer = eff(granted(
            &[L::ManageAccess(Ma::View), L::Software(Sw::Full)],
            SupportLevel::NoAccess,
        ));
        assert_eq!(
            check_approval(&viewer, &requester, site, &asked, &less)
                .unwrap_err()
                .rule,
            "A3"
        );
        // rule A5: a request raises an existing level; what the requester holds is kept.
        let holder = granted(
            &[L::Software(Sw::DownloadsOnly), L::ContactUpdates(Cu::View)],
            SupportLevel::Basic,
        );
        let raise = Grants {
            tools: tools(&[L::Software(Sw::Full)]),
            ..Grants::NONE
        };
        let after = check_approval(&primary, &holder, site, &raise, &raise).unwrap();
        assert_eq!(
            after.tools,
            tools(&[L::Software(Sw::Full), L::ContactUpdates(Cu::View)])
        );
        assert_eq!(after.support, SupportLevel::Basic);
        // Support requests: the STC approves, at most what was asked (A3, A4).
        let support = AccessRequestKind::SupportAccess;
        let stc = eff(with_roles(&[ContactRole::SiteTechnical]));
        let asked_full = Grants {
            support: SupportLevel::Full,
            ..Grants::NONE
        };
        let basic = Grants {
            support: SupportLevel::Basic,
            ..Grants::NONE
        };
        assert_eq!(
            check_approval(&stc, &requester, support, &asked_full, &basic),
            Ok(basic)
        );
        let admin = Grants {
            support: SupportLevel::Administrator,
            ..Grants::NONE
        };
        assert_eq!(
            check_approval(&stc, &requester, support, &asked_full, &admin)
                .unwrap_err()
                .rule,
            "A4"
        );
        // rule A3: with an STC, the primary does not decide support requests.
        assert_eq!(
            check_approval(&primary, &requester, support, &asked_full, &basic)
                .unwrap_err()
                .rule,
            "A3"
        );
        assert_eq!(check_decider(&primary, support).unwrap_err().rule, "A3");
        assert_eq!(check_decider(&stc, support), Ok(()));
    }

    #[test]
    fn revoke_needs_the_authority_of_each_part() {
        let manager = eff(granted(
            &[L::ManageAccess(Ma::Update), L::Software(Sw::Full)],
            SupportLevel::NoAccess,
        ));
        let tools_only = granted(&[L::Software(Sw::Full)], SupportLevel::NoAccess);
        // rule T4: the tool part needs manage access UPDATE and levels within the grantor's.
        assert_eq!(check_revoke(&manager, &tools_only), Ok(()));
        let stc = eff(with_roles(&[ContactRole::SiteTechnical]));
        assert_eq!(check_revoke(&stc, &tools_only).unwrap_err().rule, "T4");
        // rule U4: the support part needs the STC or a support ADMINISTRATOR.
        let with_support = granted(&[L::Software(Sw::Full)], SupportLevel::Full);
        assert_eq!(
            check_revoke(&manager, &with_support).unwrap_err().rule,
            "U4"
        );
        let support_only = granted(&[], SupportLevel::Full);
        assert_eq!(check_revoke(&stc, &support_only), Ok(()));
        // rule T4: with nothing to revoke, one of the two authorities is still needed.
        let nothing = granted(&[], SupportLevel::NoAccess);
        assert_eq!(check_revoke(&stc, &nothing), Ok(()));
        let nobody = eff(granted(&[L::ManageAccess(Ma::View)], SupportLevel::Full));
        assert!(err(check_revoke(&nobody, &nothing)).starts_with("rule T4: revoking access needs"));
    }

    #[test]
    fn domain_policy_baselines() {
        let manager = eff(granted(
            &[L::ManageAccess(Ma::Update), L::Software(Sw::DownloadsOnly)],
            SupportLevel::NoAccess,
        ));
        let downloads = Grants {
            tools: tools(&[L::Software(Sw::DownloadsOnly)]),
            ..Grants::NONE
        };
        // rule A7 + T4: a baseline is a grant the setter could make itself.
        assert_eq!(check_domain_baseline(&manager, &downloads), Ok(()));
        let full = Grants {
            tools: tools(&[L::Software(Sw::Full)]),
            ..Grants::NONE
        };
        assert!(
            err(check_domain_baseline(&manager, &full))
                .starts_with("rule T4: cannot grant software FULL")
        );
        // rule A7 + U4: a support baseline needs a support ADMINISTRATOR.
        let basic = Grants {
            support: SupportLevel::Basic,
            ..Grants::NONE
        };
        assert_eq!(
            check_domain_baseline(&manager, &basic).unwrap_err().rule,
            "U4"
        );
        let no_stc = SiteFacts {
            has_site_technical: false,
            ..SITE
        };
        let primary = on(with_roles(&[ContactRole::Primary]), no_stc);
        assert_eq!(
            check_domain_baseline(
                &primary,
                &Grants {
                    tools: ToolAccess::TOP,
                    ..basic
                }
            ),
            Ok(())
        );
        // rule A7 + T4: setting a policy at all needs manage access UPDATE.
        let viewer = eff(granted(
            &[L::ManageAccess(Ma::View)],
            SupportLevel::NoAccess,
        ));
        assert!(
            err(check_domain_baseline(&viewer, &Grants::NONE)).starts_with(NEEDS_UPDATE.unwrap())
        );
        // rule A4: the policy grants the baseline, never more than was asked.
        let asked = Grants {
            tools: tools(&[L::Software(Sw::Full), L::Reporting(Re::View)]),
            ..Grants::NONE
        };
        let baseline = Grants {
            tools: tools(&[L::Software(Sw::DownloadsOnly), L::Entitlements(En::View)]),
            support: SupportLevel::Full,
        };
        assert_eq!(
            baseline_grant(AccessRequestKind::SiteAccess, &asked, &baseline),
            Grants {
                tools: tools(&[L::Software(Sw::DownloadsOnly)]),
                ..Grants::NONE
            }
        );
        assert_eq!(
            baseline_grant(AccessRequestKind::SupportAccess, &basic, &baseline),
            basic
        );
    }

    #[test]
    fn roles_and_kinds_round_trip() {
        for role in ContactRole::ALL {
            assert_eq!(ContactRole::from_number(role.number()), Some(role));
        }
        assert_eq!(ContactRole::from_number(0), None);
        for kind in AccessRequestKind::ALL {
            assert_eq!(AccessRequestKind::from_number(kind.number()), Some(kind));
        }
        assert_eq!(AccessRequestKind::from_number(3), None);
        let set = RoleSet::of(&[ContactRole::SiteUser, ContactRole::Primary]);
        assert!(set.contains(ContactRole::Primary) && !set.contains(ContactRole::Billing));
        assert_eq!(
            set.iter().collect::<Vec<_>>(),
            vec![ContactRole::Primary, ContactRole::SiteUser]
        );
        assert_eq!(
            set.without(ContactRole::Primary),
            RoleSet::of(&[ContactRole::SiteUser])
        );
        assert!(RoleSet::EMPTY.is_empty());
    }
}
