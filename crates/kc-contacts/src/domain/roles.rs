//! Contact roles and how many holders each may have on a site (C1, C3, C5, C6).

use serde::Serialize;

/// A role on a site. The discriminants are the proto enum numbers, which the database
/// stores and which order roles for display (PRIMARY first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ContactRole {
    /// Exactly one per site (C1).
    Primary = 1,
    /// At most one (C3).
    Administrative = 2,
    /// Exactly one while S&S is active, else at most one (C5).
    SiteTechnical = 3,
    /// At most four (C6).
    Secondary = 4,
    /// At most one, recommended (C6).
    Renewal = 5,
    /// At most one (C6).
    Shipping = 6,
    /// At most one (C6).
    Billing = 7,
    /// Any number (C6).
    SiteUser = 8,
}

/// Most SECONDARY contacts a site may have (C6).
pub const MAX_SECONDARY_CONTACTS: i64 = 4;

impl ContactRole {
    /// Every role, in display order.
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

    /// The role of a proto enum number (also the stored value); `None` for 0 or unknown.
    pub fn from_number(number: i32) -> Option<Self> {
        Self::ALL.into_iter().find(|role| *role as i32 == number)
    }

    /// The stored value.
    pub fn number(self) -> i16 {
        self as i16
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

    /// Whether at most one user holds the role on a site (the database enforces it).
    pub fn is_single_holder(self) -> bool {
        matches!(
            self,
            Self::Primary
                | Self::Administrative
                | Self::SiteTechnical
                | Self::Renewal
                | Self::Shipping
                | Self::Billing
        )
    }

    /// Whether holding the role implies rights on the site's tools or support (T3, U5):
    /// PRIMARY, ADMINISTRATIVE, SITE_TECHNICAL and SECONDARY. Nobody assigns itself such a
    /// role (T7).
    pub fn implies_rights(self) -> bool {
        matches!(
            self,
            Self::Primary | Self::Administrative | Self::SiteTechnical | Self::Secondary
        )
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

    /// Whether ReplaceContact may swap its holder (every single-holder role but PRIMARY,
    /// which changes only by transfer, C8).
    pub fn is_replaceable(self) -> bool {
        self.is_single_holder() && self != Self::Primary
    }

    /// The rule that limits the role to one holder, cited when a second one is refused.
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
}

impl std::fmt::Display for ContactRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip() {
        for role in ContactRole::ALL {
            assert_eq!(
                ContactRole::from_number(i32::from(role.number())),
                Some(role)
            );
        }
        assert_eq!(ContactRole::from_number(0), None);
        assert_eq!(ContactRole::from_number(9), None);
    }

    #[test]
    fn holders() {
        // rule C6: SECONDARY and SITE_USER may have several holders, the rest one.
        assert!(!ContactRole::Secondary.is_single_holder());
        assert!(!ContactRole::SiteUser.is_single_holder());
        assert!(ContactRole::Renewal.is_replaceable());
        assert!(!ContactRole::Primary.is_replaceable());
    }
}
