//! Blocked requesters: a site's approvers (A3) may block an e-mail address, or an e-mail
//! domain with its subdomains, from asking for access to the site again. A blocked user's
//! request is refused exactly as a wrong site number is (S3, I2): the refusal does not reveal
//! the block.
//!
//! Decisions taken here:
//! - **What matches.** Addresses and domains are normalised as everywhere in the suite: an
//!   address as identity checks login e-mails ([`Email`]: trimmed, lower case), a domain as
//!   domain policies read them ([`EmailDomain`]: lower case, a leading `@` dropped). A block
//!   of an address matches that login e-mail exactly; a block of a domain matches every
//!   login e-mail in the domain *and in its subdomains* (`example.com` also blocks
//!   `ada@eu.example.com`): a block is meant to keep an organisation out, and its mail
//!   servers may sit in any subdomain. (Domain policies, A7, match the exact domain only:
//!   they grant, so they stay narrow.) The login e-mail is the one identity's stream last
//!   reported to access management, like A7's.
//!   A block names an address, not an account: a user who moves its login e-mail to an
//!   unblocked address (ChangeEmail, proven) is no longer blocked, and a look-alike of a
//!   blocked address cannot be registered while the account holding it exists (I3).
//!   Provider tags (`ada+x@…`) are not folded: they are distinct addresses for the suite;
//!   a domain block covers them.
//! - **Who.** Any approver of the site, of either kind (PRIMARY and manage access UPDATE
//!   for site access, STC and support ADMINISTRATORs for support access), and operators;
//!   a block refuses requests of both kinds.
//! - **Races.** Blocking, unblocking and submitting all take the site's row lock first, and
//!   the submission reads the blocks under it: a block committed before a request commits
//!   refuses it.
//! - **Pending requests.** On request, blocking also rejects the blocked requesters'
//!   PENDING requests of the kinds the blocker may decide (never its own request); their
//!   requesters are told as of any rejection (A2), with [`BLOCK_REJECTION_REASON`], which
//!   does not mention the block.

use chrono::{DateTime, Utc};
use kc_runtime::Violation;
use kc_runtime::values::Email;
use serde::Serialize;
use uuid::Uuid;

use super::values::EmailDomain;

/// The reason recorded and told when blocking rejects a pending request (A4 wants one; it
/// does not reveal the block).
pub const BLOCK_REJECTION_REASON: &str = "the site's approvers declined this request";

/// What a block names: one login e-mail, or an e-mail domain with its subdomains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockTarget {
    /// One address.
    Email(Email),
    /// A domain and its subdomains.
    Domain(EmailDomain),
}

impl BlockTarget {
    /// The target of a request's `email` and `domain` fields: exactly one is required.
    pub fn parse(email: &str, domain: &str) -> Result<Self, Violation> {
        match (email.trim().is_empty(), domain.trim().is_empty()) {
            (false, true) => Email::parse("email", email).map(Self::Email),
            (true, false) => EmailDomain::parse("domain", domain).map(Self::Domain),
            (true, true) => Err(Violation::new(
                "email",
                "exactly one of email and domain is required",
            )),
            (false, false) => Err(Violation::new(
                "domain",
                "exactly one of email and domain is required, not both",
            )),
        }
    }

    /// The kind of target.
    pub fn kind(&self) -> BlockKind {
        match self {
            Self::Email(_) => BlockKind::Email,
            Self::Domain(_) => BlockKind::Domain,
        }
    }

    /// The normalised address or domain.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Email(email) => email.as_str(),
            Self::Domain(domain) => domain.as_str(),
        }
    }
}

/// Whether a block names an address or a domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BlockKind {
    /// One login e-mail.
    Email = 1,
    /// An e-mail domain and its subdomains.
    Domain = 2,
}

impl BlockKind {
    /// The kind of a stored number.
    pub fn from_number(number: i16) -> Option<Self> {
        match number {
            1 => Some(Self::Email),
            2 => Some(Self::Domain),
            _ => None,
        }
    }

    /// The stored number.
    pub fn number(self) -> i16 {
        self as i16
    }
}

/// A blocked address or domain of a site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RequesterBlock {
    /// Id; a new block of the same target gets a new one.
    pub block_id: Uuid,
    /// Site.
    pub site_id: Uuid,
    /// Address or domain.
    pub kind: BlockKind,
    /// The normalised address or domain.
    pub target: String,
    /// Why, as the approver wrote it.
    pub reason: String,
    /// Who blocked it.
    pub blocked_by: Uuid,
    /// When.
    pub create_time: DateTime<Utc>,
}

/// The block targets that refuse a user whose login e-mail is `email`: the address itself,
/// its domain and every parent domain of at least two labels (`ada@eu.example.com` →
/// `ada@eu.example.com`, `eu.example.com`, `example.com`). Only the address when it has no
/// valid domain.
pub fn block_keys(email: &str) -> Vec<String> {
    let email = email.trim().to_lowercase();
    let mut keys = Vec::new();
    if let Some(domain) = EmailDomain::of_email(&email) {
        let labels: Vec<&str> = domain.as_str().split('.').collect();
        for start in 0..labels.len().saturating_sub(1) {
            keys.push(labels[start..].join("."));
        }
    }
    keys.insert(0, email);
    keys
}

/// A request to block a target on a site.
#[derive(Debug, Clone)]
pub struct BlockChange {
    /// Site.
    pub site_id: Uuid,
    /// What to block.
    pub target: BlockTarget,
    /// Why.
    pub reason: String,
    /// Also reject the blocked requesters' pending requests the blocker may decide.
    pub reject_pending: bool,
}

/// A request to lift a block.
#[derive(Debug, Clone)]
pub struct UnblockChange {
    /// Site.
    pub site_id: Uuid,
    /// What to unblock.
    pub target: BlockTarget,
    /// Why.
    pub reason: String,
}

/// A page of a site's blocks, in target order.
#[derive(Debug, Clone)]
pub struct BlocksQuery {
    /// Site.
    pub site_id: Uuid,
    /// The last target of the previous page.
    pub after: Option<String>,
    /// Page size.
    pub size: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_normalised_like_login_emails_and_domain_policies() {
        let email = BlockTarget::parse(" Ada@Example.COM ", "").unwrap();
        assert_eq!(email.as_str(), "ada@example.com");
        assert_eq!(email.kind(), BlockKind::Email);
        let domain = BlockTarget::parse("", "@Example.COM").unwrap();
        assert_eq!(domain.as_str(), "example.com");
        assert_eq!(domain.kind(), BlockKind::Domain);
    }

    #[test]
    fn exactly_one_target_is_required() {
        assert_eq!(BlockTarget::parse("", " ").unwrap_err().field, "email");
        assert_eq!(
            BlockTarget::parse("ada@example.com", "example.com")
                .unwrap_err()
                .field,
            "domain"
        );
        assert_eq!(
            BlockTarget::parse("not-an-address", "").unwrap_err().field,
            "email"
        );
        for bad in ["com", "a..b", "ex_ample.com"] {
            assert_eq!(
                BlockTarget::parse("", bad).unwrap_err().field,
                "domain",
                "{bad}"
            );
        }
    }

    #[test]
    fn a_login_email_is_blocked_by_its_address_its_domain_and_parent_domains() {
        assert_eq!(
            block_keys("Ada@EU.Example.com"),
            vec!["ada@eu.example.com", "eu.example.com", "example.com"]
        );
        assert_eq!(
            block_keys("bob@example.fr"),
            vec!["bob@example.fr", "example.fr"]
        );
        // Never a top-level domain alone, which no block can name.
        assert!(!block_keys("bob@example.fr").contains(&"fr".to_owned()));
        assert_eq!(block_keys("nodomain"), vec!["nodomain"]);
    }

    #[test]
    fn a_domain_block_covers_subdomains_but_not_lookalike_suffixes() {
        let keys = block_keys("eve@notexample.com");
        assert!(!keys.contains(&"example.com".to_owned()));
        assert!(keys.contains(&"notexample.com".to_owned()));
    }

    #[test]
    fn kinds_round_trip() {
        for kind in [BlockKind::Email, BlockKind::Domain] {
            assert_eq!(BlockKind::from_number(kind.number()), Some(kind));
        }
        assert_eq!(BlockKind::from_number(0), None);
    }
}
