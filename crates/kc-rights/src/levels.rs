//! Tool levels and support levels (DOMAIN.md T1, U1–U4): one ordered level per tool, the
//! set of levels a user holds on a site ([`ToolAccess`]), and the support levels.
//!
//! Every level enum is ordered lowest first, so `>=` is "includes" (T1: a higher level
//! includes the lower ones). Its rank (0 = NONE) is what storage keeps; its proto number is
//! the rank plus one, because 0 is the proto's `*_UNSPECIFIED`.

use serde::Serialize;

/// Declares an ordered level enum with its rank, proto number, name and `Display`.
macro_rules! levels {
    (
        $(#[$meta:meta])*
        $name:ident {
            $($(#[$variant_meta:meta])* $variant:ident => $text:literal,)+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
        pub enum $name {
            $($(#[$variant_meta])* $variant,)+
        }

        impl $name {
            /// Every level, lowest first.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];
            /// The lowest level: no access.
            pub const LOWEST: Self = Self::ALL[0];
            /// The highest level.
            pub const TOP: Self = Self::ALL[Self::ALL.len() - 1];

            /// Position in the order, 0 for the lowest; the stored value.
            pub fn rank(self) -> u8 {
                self as u8
            }

            /// The level of a stored rank; `None` when out of range.
            pub fn from_rank(rank: u8) -> Option<Self> {
                Self::ALL.get(usize::from(rank)).copied()
            }

            /// The proto enum number (`*_UNSPECIFIED` is 0, the lowest level 1).
            pub fn number(self) -> i32 {
                i32::from(self.rank()) + 1
            }

            /// The level of a proto enum number; `None` for 0 (UNSPECIFIED) and unknown numbers.
            pub fn from_number(number: i32) -> Option<Self> {
                u8::try_from(number.checked_sub(1)?).ok().and_then(Self::from_rank)
            }

            /// Upper-case name as in DOMAIN.md and the proto, e.g. `DOWNLOADS_ONLY`.
            pub fn name(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)+
                }
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::LOWEST
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

levels! {
    /// Levels of tool 1, software and services.
    SoftwareAccess {
        /// No access.
        None => "NONE",
        /// Software downloads.
        DownloadsOnly => "DOWNLOADS_ONLY",
        /// Downloads and physical media.
        DownloadsAndMedia => "DOWNLOADS_AND_MEDIA",
        /// Downloads, media, quotes, product catalogs and licence renewal.
        Full => "FULL",
    }
}

levels! {
    /// Levels of tool 2, reporting.
    ReportingAccess {
        /// No access.
        None => "NONE",
        /// View reports.
        View => "VIEW",
    }
}

levels! {
    /// Levels of tool 3, entitlements (inventory of entitlements and deployments).
    EntitlementsAccess {
        /// No access.
        None => "NONE",
        /// View.
        View => "VIEW",
        /// View and update.
        Update => "UPDATE",
    }
}

levels! {
    /// Levels of tool 4, account management (T2: at first only the primary holds it).
    AccountManagementAccess {
        /// No account management.
        None => "NONE",
        /// Manages the account; only holders grant it (T4).
        Granted => "GRANTED",
    }
}

levels! {
    /// Levels of tool 5, manage access.
    ManageAccess {
        /// No access.
        None => "NONE",
        /// View who has which access.
        View => "VIEW",
        /// Grant access up to one's own levels, decide site access requests (T4, A3).
        Update => "UPDATE",
    }
}

levels! {
    /// Levels of tool 6, contact updates.
    ContactUpdatesAccess {
        /// No access.
        None => "NONE",
        /// View the site's contacts.
        View => "VIEW",
        /// View and update the site's contacts.
        Update => "UPDATE",
    }
}

levels! {
    /// Levels of tool 7, account documents.
    AccountDocumentsAccess {
        /// No access.
        None => "NONE",
        /// View account documents.
        View => "VIEW",
    }
}

levels! {
    /// Support access levels (U1–U4). Nothing is above ADMINISTRATOR, so no grant can be.
    SupportLevel {
        /// Cannot open, change or see the site's cases, nor get their updates (U1).
        NoAccess => "NO_ACCESS",
        /// Only the cases the user owns (U2).
        Basic => "BASIC",
        /// The site's cases (U3).
        Full => "FULL",
        /// FULL plus deciding support requests and changing support levels (U4).
        Administrator => "ADMINISTRATOR",
    }
}

/// One of the seven tools of DOMAIN.md, in the table's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Tool {
    /// 1: software and services.
    Software,
    /// 2: reporting.
    Reporting,
    /// 3: entitlements.
    Entitlements,
    /// 4: account management.
    AccountManagement,
    /// 5: manage access.
    ManageAccess,
    /// 6: contact updates.
    ContactUpdates,
    /// 7: account documents.
    AccountDocuments,
}

impl Tool {
    /// Every tool, in the table's order.
    pub const ALL: [Tool; 7] = [
        Self::Software,
        Self::Reporting,
        Self::Entitlements,
        Self::AccountManagement,
        Self::ManageAccess,
        Self::ContactUpdates,
        Self::AccountDocuments,
    ];

    /// Lower-case label for messages, e.g. `manage access`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Software => "software",
            Self::Reporting => "reporting",
            Self::Entitlements => "entitlements",
            Self::AccountManagement => "account management",
            Self::ManageAccess => "manage access",
            Self::ContactUpdates => "contact updates",
            Self::AccountDocuments => "account documents",
        }
    }

    /// Name of the field in the proto's `ToolAccess` (and of the storage column), e.g.
    /// `manage_access`.
    pub fn field(self) -> &'static str {
        match self {
            Self::Software => "software",
            Self::Reporting => "reporting",
            Self::Entitlements => "entitlements",
            Self::AccountManagement => "account_management",
            Self::ManageAccess => "manage_access",
            Self::ContactUpdates => "contact_updates",
            Self::AccountDocuments => "account_documents",
        }
    }

    /// The tool's lowest level (NONE).
    pub fn none(self) -> ToolLevel {
        ToolAccess::NONE.get(self)
    }

    /// The tool's highest level.
    pub fn top(self) -> ToolLevel {
        ToolAccess::TOP.get(self)
    }

    /// Every level of the tool, lowest first.
    pub fn levels(self) -> impl Iterator<Item = ToolLevel> {
        (0..=self.top().rank()).filter_map(move |rank| ToolLevel::from_rank(self, rank))
    }
}

impl std::fmt::Display for Tool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// One tool at one level. Levels of the same tool compare by rank; levels of different tools
/// are never compared (the `includes` methods check the tool).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ToolLevel {
    /// Software and services.
    Software(SoftwareAccess),
    /// Reporting.
    Reporting(ReportingAccess),
    /// Entitlements.
    Entitlements(EntitlementsAccess),
    /// Account management.
    AccountManagement(AccountManagementAccess),
    /// Manage access.
    ManageAccess(ManageAccess),
    /// Contact updates.
    ContactUpdates(ContactUpdatesAccess),
    /// Account documents.
    AccountDocuments(AccountDocumentsAccess),
}

impl ToolLevel {
    /// The tool.
    pub fn tool(self) -> Tool {
        match self {
            Self::Software(_) => Tool::Software,
            Self::Reporting(_) => Tool::Reporting,
            Self::Entitlements(_) => Tool::Entitlements,
            Self::AccountManagement(_) => Tool::AccountManagement,
            Self::ManageAccess(_) => Tool::ManageAccess,
            Self::ContactUpdates(_) => Tool::ContactUpdates,
            Self::AccountDocuments(_) => Tool::AccountDocuments,
        }
    }

    /// Rank within the tool, 0 for NONE.
    pub fn rank(self) -> u8 {
        match self {
            Self::Software(level) => level.rank(),
            Self::Reporting(level) => level.rank(),
            Self::Entitlements(level) => level.rank(),
            Self::AccountManagement(level) => level.rank(),
            Self::ManageAccess(level) => level.rank(),
            Self::ContactUpdates(level) => level.rank(),
            Self::AccountDocuments(level) => level.rank(),
        }
    }

    /// Upper-case name of the level, e.g. `VIEW`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Software(level) => level.name(),
            Self::Reporting(level) => level.name(),
            Self::Entitlements(level) => level.name(),
            Self::AccountManagement(level) => level.name(),
            Self::ManageAccess(level) => level.name(),
            Self::ContactUpdates(level) => level.name(),
            Self::AccountDocuments(level) => level.name(),
        }
    }

    /// The level of `tool` at a stored rank; `None` when out of range.
    pub fn from_rank(tool: Tool, rank: u8) -> Option<Self> {
        Some(match tool {
            Tool::Software => Self::Software(SoftwareAccess::from_rank(rank)?),
            Tool::Reporting => Self::Reporting(ReportingAccess::from_rank(rank)?),
            Tool::Entitlements => Self::Entitlements(EntitlementsAccess::from_rank(rank)?),
            Tool::AccountManagement => {
                Self::AccountManagement(AccountManagementAccess::from_rank(rank)?)
            }
            Tool::ManageAccess => Self::ManageAccess(ManageAccess::from_rank(rank)?),
            Tool::ContactUpdates => Self::ContactUpdates(ContactUpdatesAccess::from_rank(rank)?),
            Tool::AccountDocuments => {
                Self::AccountDocuments(AccountDocumentsAccess::from_rank(rank)?)
            }
        })
    }

    /// The level of `tool` of a proto enum number; `None` for 0 (UNSPECIFIED) and unknown
    /// numbers.
    pub fn from_number(tool: Tool, number: i32) -> Option<Self> {
        Self::from_rank(tool, u8::try_from(number.checked_sub(1)?).ok()?)
    }

    /// The proto enum number.
    pub fn number(self) -> i32 {
        i32::from(self.rank()) + 1
    }

    /// Whether this level includes `other`: same tool, and at least as high (T1).
    pub fn includes(self, other: ToolLevel) -> bool {
        self.tool() == other.tool() && self.rank() >= other.rank()
    }
}

impl std::fmt::Display for ToolLevel {
    /// `manage access UPDATE`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.tool().label(), self.name())
    }
}

/// One level per tool: a user's rights on a site (T1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
pub struct ToolAccess {
    /// Tool 1.
    pub software: SoftwareAccess,
    /// Tool 2.
    pub reporting: ReportingAccess,
    /// Tool 3.
    pub entitlements: EntitlementsAccess,
    /// Tool 4.
    pub account_management: AccountManagementAccess,
    /// Tool 5.
    pub manage_access: ManageAccess,
    /// Tool 6.
    pub contact_updates: ContactUpdatesAccess,
    /// Tool 7.
    pub account_documents: AccountDocumentsAccess,
}

impl ToolAccess {
    /// NONE on every tool.
    pub const NONE: Self = Self {
        software: SoftwareAccess::LOWEST,
        reporting: ReportingAccess::LOWEST,
        entitlements: EntitlementsAccess::LOWEST,
        account_management: AccountManagementAccess::LOWEST,
        manage_access: ManageAccess::LOWEST,
        contact_updates: ContactUpdatesAccess::LOWEST,
        account_documents: AccountDocumentsAccess::LOWEST,
    };

    /// The top level of every tool (what PRIMARY implies, T3).
    pub const TOP: Self = Self {
        software: SoftwareAccess::TOP,
        reporting: ReportingAccess::TOP,
        entitlements: EntitlementsAccess::TOP,
        account_management: AccountManagementAccess::TOP,
        manage_access: ManageAccess::TOP,
        contact_updates: ContactUpdatesAccess::TOP,
        account_documents: AccountDocumentsAccess::TOP,
    };

    /// The level held on `tool`.
    pub fn get(&self, tool: Tool) -> ToolLevel {
        match tool {
            Tool::Software => ToolLevel::Software(self.software),
            Tool::Reporting => ToolLevel::Reporting(self.reporting),
            Tool::Entitlements => ToolLevel::Entitlements(self.entitlements),
            Tool::AccountManagement => ToolLevel::AccountManagement(self.account_management),
            Tool::ManageAccess => ToolLevel::ManageAccess(self.manage_access),
            Tool::ContactUpdates => ToolLevel::ContactUpdates(self.contact_updates),
            Tool::AccountDocuments => ToolLevel::AccountDocuments(self.account_documents),
        }
    }

    /// A copy with `level` set on its tool.
    #[must_use]
    pub fn with(mut self, level: ToolLevel) -> Self {
        match level {
            ToolLevel::Software(level) => self.software = level,
            ToolLevel::Reporting(level) => self.reporting = level,
            ToolLevel::Entitlements(level) => self.entitlements = level,
            ToolLevel::AccountManagement(level) => self.account_management = level,
            ToolLevel::ManageAccess(level) => self.manage_access = level,
            ToolLevel::ContactUpdates(level) => self.contact_updates = level,
            ToolLevel::AccountDocuments(level) => self.account_documents = level,
        }
        self
    }

    /// The seven levels, in the table's order.
    pub fn levels(&self) -> [ToolLevel; 7] {
        Tool::ALL.map(|tool| self.get(tool))
    }

    /// The higher level of the two on every tool (T3 combines grants and roles this way).
    #[must_use]
    pub fn join(self, other: Self) -> Self {
        Self {
            software: self.software.max(other.software),
            reporting: self.reporting.max(other.reporting),
            entitlements: self.entitlements.max(other.entitlements),
            account_management: self.account_management.max(other.account_management),
            manage_access: self.manage_access.max(other.manage_access),
            contact_updates: self.contact_updates.max(other.contact_updates),
            account_documents: self.account_documents.max(other.account_documents),
        }
    }

    /// The lower level of the two on every tool (an approval by domain policy grants the
    /// baseline, never more than was asked: A4, A7).
    #[must_use]
    pub fn meet(self, other: Self) -> Self {
        Self {
            software: self.software.min(other.software),
            reporting: self.reporting.min(other.reporting),
            entitlements: self.entitlements.min(other.entitlements),
            account_management: self.account_management.min(other.account_management),
            manage_access: self.manage_access.min(other.manage_access),
            contact_updates: self.contact_updates.min(other.contact_updates),
            account_documents: self.account_documents.min(other.account_documents),
        }
    }

    /// Whether the level held on `level`'s tool includes it (T1).
    pub fn includes(&self, level: ToolLevel) -> bool {
        self.get(level.tool()).includes(level)
    }

    /// Whether every level is at most the one of `other` on the same tool.
    pub fn is_within(&self, other: &Self) -> bool {
        Tool::ALL
            .into_iter()
            .all(|tool| other.includes(self.get(tool)))
    }

    /// Whether every level is NONE.
    pub fn is_none(&self) -> bool {
        *self == Self::NONE
    }

    /// The tools whose level differs from `other`'s.
    pub fn changed_tools(&self, other: &Self) -> impl Iterator<Item = Tool> + use<> {
        let (this, other) = (*self, *other);
        Tool::ALL
            .into_iter()
            .filter(move |tool| this.get(*tool) != other.get(*tool))
    }
}

impl std::fmt::Display for ToolAccess {
    /// The levels above NONE, e.g. `software FULL, manage access VIEW`; `no tool access` when
    /// none.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut first = true;
        for level in self.levels().into_iter().filter(|level| level.rank() > 0) {
            if !first {
                f.write_str(", ")?;
            }
            write!(f, "{level}")?;
            first = false;
        }
        if first {
            f.write_str("no tool access")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_ordered_lowest_first() {
        // rule T1: a higher level includes the lower ones.
        assert!(SoftwareAccess::None < SoftwareAccess::DownloadsOnly);
        assert!(SoftwareAccess::DownloadsOnly < SoftwareAccess::DownloadsAndMedia);
        assert!(SoftwareAccess::DownloadsAndMedia < SoftwareAccess::Full);
        assert!(EntitlementsAccess::View < EntitlementsAccess::Update);
        assert!(ManageAccess::View < ManageAccess::Update);
        assert!(
            ToolLevel::Software(SoftwareAccess::Full)
                .includes(ToolLevel::Software(SoftwareAccess::DownloadsOnly))
        );
        assert!(
            !ToolLevel::Software(SoftwareAccess::DownloadsOnly)
                .includes(ToolLevel::Software(SoftwareAccess::Full))
        );
        // Levels of different tools never include each other.
        assert!(
            !ToolLevel::ManageAccess(ManageAccess::Update)
                .includes(ToolLevel::Reporting(ReportingAccess::None))
        );
    }

    #[test]
    fn level_counts_match_the_table() {
        // rule T1: the tool table of DOMAIN.md.
        let counts: Vec<usize> = Tool::ALL.map(|tool| tool.levels().count()).to_vec();
        assert_eq!(counts, vec![4, 2, 3, 2, 3, 3, 2]);
        assert_eq!(SupportLevel::ALL.len(), 4);
    }

    #[test]
    fn numbers_and_ranks_round_trip() {
        for tool in Tool::ALL {
            for level in tool.levels() {
                assert_eq!(ToolLevel::from_number(tool, level.number()), Some(level));
                assert_eq!(ToolLevel::from_rank(tool, level.rank()), Some(level));
            }
            assert_eq!(ToolLevel::from_number(tool, 0), None, "0 is UNSPECIFIED");
            assert_eq!(ToolLevel::from_number(tool, -1), None);
            assert_eq!(ToolLevel::from_number(tool, tool.top().number() + 1), None);
        }
        for level in SupportLevel::ALL {
            assert_eq!(SupportLevel::from_number(level.number()), Some(*level));
        }
        assert_eq!(SupportLevel::from_number(0), None);
        // rule U4: nothing exists above ADMINISTRATOR, so nothing above it can be granted.
        assert_eq!(SupportLevel::from_number(5), None);
        assert_eq!(SupportLevel::TOP, SupportLevel::Administrator);
    }

    #[test]
    fn tool_access_join_and_within() {
        // rule T3: effective rights take the higher level per tool.
        let a = ToolAccess {
            software: SoftwareAccess::Full,
            ..ToolAccess::NONE
        };
        let b = ToolAccess {
            software: SoftwareAccess::DownloadsOnly,
            reporting: ReportingAccess::View,
            ..ToolAccess::NONE
        };
        let joined = a.join(b);
        assert_eq!(joined.software, SoftwareAccess::Full);
        assert_eq!(joined.reporting, ReportingAccess::View);
        assert!(a.is_within(&joined) && b.is_within(&joined));
        assert!(!joined.is_within(&a));
        assert_eq!(a.meet(b).software, SoftwareAccess::DownloadsOnly);
        assert_eq!(a.meet(b).reporting, ReportingAccess::None);
        assert!(ToolAccess::NONE.is_none());
        assert!(
            ToolAccess::TOP
                .levels()
                .iter()
                .all(|l| *l == l.tool().top())
        );
        assert_eq!(
            a.changed_tools(&b).collect::<Vec<_>>(),
            vec![Tool::Software, Tool::Reporting]
        );
        assert_eq!(
            ToolAccess::NONE
                .with(ToolLevel::ManageAccess(ManageAccess::View))
                .to_string(),
            "manage access VIEW"
        );
        assert_eq!(ToolAccess::NONE.to_string(), "no tool access");
    }
}
