//! Which compliance gaps a site has (C1, C5, C6, I1, I4, T2, S&S life, N3), per site
//! (GetSiteCompliance) and over the portfolio (ListComplianceGaps).
//!
//! Every gap is decided from the registry's own tables and from two projections it keeps of
//! other services, so that one keyset query pages the portfolio by any kind of gap:
//!
//! - the state and login e-mail of each user, from identity's event stream (consumer
//!   `contacts.identity`): a primary contact disabled (I4) or invited and unproven (I1);
//! - the addresses whose last notice was given up (DEAD) with a 5xx reply, from
//!   notification's event stream (consumer `contacts.notification`).
//!
//! Both are as fresh as the registry's consumers: normally within a second of the change in
//! identity or notification; while a source is down the report shows the last state applied,
//! and a user or address the registry has not heard of is no gap. The explicit grants of
//! account management come from the projection of access management's events (T8).
//! Dates are UTC days: S&S ends within [`SUPPORT_ENDING_DAYS`] days, or has lapsed when its
//! end date is before today.
//!
//! The conditions are evaluated in one SQL expression ([`crate::storage::compliance`]), for
//! one site and for the portfolio alike; [`ComplianceGap::code`] is how it names each kind.

use uuid::Uuid;

use super::values::{CustomerNumber, SiteNumber};

/// Days before the end of S&S from which a site's renewal is due.
pub const SUPPORT_ENDING_DAYS: i32 = 90;

/// A compliance gap of a site, most serious first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ComplianceGap {
    /// S&S active without a site technical contact (C5).
    SupportWithoutSiteTechnical,
    /// The primary contact's account is disabled (I4, C12).
    PrimaryDisabled,
    /// The primary contact's account is invited and its address unproven (I1).
    PrimaryUnproven,
    /// S&S's end date has passed and no later one is set.
    SupportLapsed,
    /// A contact's notification address failed permanently on its last notice (N3).
    NotificationAddressFailing,
    /// Fewer than two active people hold account management (T2).
    SingleAccountManager,
    /// S&S is active and ends within [`SUPPORT_ENDING_DAYS`] days.
    SupportEnding,
    /// No renewal contact (recommended by C6).
    NoRenewalContact,
    /// The primary is the only contact (C1, R1).
    PrimaryOnlyContact,
}

impl ComplianceGap {
    /// Every kind, most serious first.
    pub const ALL: [Self; 9] = [
        Self::SupportWithoutSiteTechnical,
        Self::PrimaryDisabled,
        Self::PrimaryUnproven,
        Self::SupportLapsed,
        Self::NotificationAddressFailing,
        Self::SingleAccountManager,
        Self::SupportEnding,
        Self::NoRenewalContact,
        Self::PrimaryOnlyContact,
    ];

    /// The number storage names the kind by (stable, never reused).
    pub fn code(self) -> i16 {
        match self {
            Self::SupportWithoutSiteTechnical => 1,
            Self::NoRenewalContact => 2,
            Self::PrimaryOnlyContact => 3,
            Self::PrimaryDisabled => 4,
            Self::PrimaryUnproven => 5,
            Self::SingleAccountManager => 6,
            Self::SupportEnding => 7,
            Self::SupportLapsed => 8,
            Self::NotificationAddressFailing => 9,
        }
    }

    /// The kind of [`Self::code`] `code`.
    pub fn from_code(code: i16) -> Option<Self> {
        Self::ALL.into_iter().find(|gap| gap.code() == code)
    }

    /// What is wrong, citing the rule, and what fixes it.
    pub fn description(self) -> &'static str {
        match self {
            Self::SupportWithoutSiteTechnical => {
                "C5: S&S is active but no SITE_TECHNICAL contact is named; name one with ReplaceContact"
            }
            Self::PrimaryDisabled => {
                "C1, I4: the PRIMARY contact's account is disabled, so nobody receives the contractual notices; recover the site (C12) or transfer the primary contact (C8)"
            }
            Self::PrimaryUnproven => {
                "C1, I1: the PRIMARY contact's account is invited and its address not yet proven, so it holds nothing; its owner proves the address, or the primary contact is transferred (C8)"
            }
            Self::SupportLapsed => {
                "C5: S&S lapsed: its end date has passed and no renewal is recorded; set the new support_end_date once renewed"
            }
            Self::NotificationAddressFailing => {
                "C9: a contact's notification address is failing: its last notice was refused permanently by the mail server (5xx); correct the address (UpdateContact or the login e-mail)"
            }
            Self::SingleAccountManager => {
                "T2: only one person holds account management; grant it to a second person so the site can still be managed when one leaves"
            }
            Self::SupportEnding => "C5: S&S ends within 90 days; renew it before its end date",
            Self::NoRenewalContact => {
                "C6: no RENEWAL contact is named (recommended); renewal notices fall back to the ADMINISTRATIVE or PRIMARY contact"
            }
            Self::PrimaryOnlyContact => {
                "C1: the PRIMARY contact is the site's only contact and handles every matter (R1)"
            }
        }
    }
}

/// The compliance of one site: its gaps, most serious first.
#[derive(Debug, Clone)]
pub struct SiteCompliance {
    /// Site id.
    pub site_id: Uuid,
    /// Site number.
    pub site_number: SiteNumber,
    /// Customer number.
    pub customer_number: CustomerNumber,
    /// Its gaps, most serious first; empty when compliant.
    pub gaps: Vec<ComplianceGap>,
}

impl SiteCompliance {
    /// The compliance of a site whose gaps storage named by `codes` (unknown codes, from a
    /// newer registry sharing the database, are left out).
    pub fn from_codes(
        site_id: Uuid,
        site_number: SiteNumber,
        customer_number: CustomerNumber,
        codes: &[i16],
    ) -> Self {
        let mut gaps: Vec<ComplianceGap> = codes
            .iter()
            .filter_map(|code| ComplianceGap::from_code(*code))
            .collect();
        gaps.sort_unstable();
        gaps.dedup();
        Self {
            site_id,
            site_number,
            customer_number,
            gaps,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_round_trip() {
        let mut codes: Vec<i16> = ComplianceGap::ALL.iter().map(|g| g.code()).collect();
        for gap in ComplianceGap::ALL {
            assert_eq!(ComplianceGap::from_code(gap.code()), Some(gap));
        }
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), ComplianceGap::ALL.len());
        assert_eq!(ComplianceGap::from_code(0), None);
    }

    #[test]
    fn gaps_come_most_serious_first() {
        let site = SiteCompliance::from_codes(
            Uuid::nil(),
            SiteNumber::parse("site_number", "1000001").expect("number"),
            CustomerNumber::parse("customer_number", "2000001").expect("number"),
            &[3, 2, 6, 4, 99, 4],
        );
        assert_eq!(
            site.gaps,
            [
                ComplianceGap::PrimaryDisabled,
                ComplianceGap::SingleAccountManager,
                ComplianceGap::NoRenewalContact,
                ComplianceGap::PrimaryOnlyContact
            ]
        );
    }
}
