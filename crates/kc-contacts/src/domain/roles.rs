//! Contact roles and how many holders each may have on a site (C1, C3, C5, C6).

/// A role on a site: the suite's one type (kc-rights), whose discriminants are the proto
/// enum numbers the database stores and which order roles for display (PRIMARY first).
pub use kc_rights::rights::ContactRole;

/// Most SECONDARY contacts a site may have (C6).
pub const MAX_SECONDARY_CONTACTS: i64 = 4;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip() {
        for role in ContactRole::ALL {
            assert_eq!(ContactRole::from_number(role.number()), Some(role));
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
