//! Parse-don't-validate values of access management: reasons (T5, A4), justifications and
//! e-mail domains (A7). Ids, etags, site and customer numbers (S3) and bounded texts are the
//! shared ones of `kc_runtime::values`.

use kc_runtime::Violation;
use kc_runtime::values::optional_multiline_text;
pub use kc_runtime::values::{CustomerNumber, Etag, SiteNumber, parse_id};

/// Longest reason of a change or a rejection, and longest approval note, in characters.
pub const MAX_REASON_CHARS: usize = 500;
/// Longest justification of an access request, in characters.
pub const MAX_JUSTIFICATION_CHARS: usize = 1000;
/// Longest e-mail domain, in bytes (a DNS name).
const MAX_DOMAIN_LEN: usize = 253;

/// The reason of a change of rights (T5) or of a rejection (A4): 1 to 500 characters.
/// `rule` is cited when it is missing, e.g. `T5: every change of rights records why`.
pub fn required_reason(field: &str, reason: &str, rule: &str) -> Result<String, Violation> {
    optional_multiline_text(field, reason, MAX_REASON_CHARS)?
        .ok_or_else(|| Violation::new(field, format!("is required (rule {rule})")))
}

/// An optional note of up to 500 characters.
pub fn optional_note(field: &str, note: &str) -> Result<Option<String>, Violation> {
    optional_multiline_text(field, note, MAX_REASON_CHARS)
}

/// An access request's justification: up to 1000 characters, empty allowed.
pub fn justification(field: &str, justification: &str) -> Result<String, Violation> {
    optional_multiline_text(field, justification, MAX_JUSTIFICATION_CHARS)
        .map(Option::unwrap_or_default)
}

/// An e-mail domain such as `example.com`: lower-cased, at least two labels of letters,
/// digits and hyphens (not at either end), at most 253 bytes. A leading `@` is dropped.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EmailDomain(String);

impl EmailDomain {
    /// Parses a domain; compared case-insensitively, so it is kept in lower case.
    pub fn parse(field: &str, text: &str) -> Result<Self, Violation> {
        let domain = text.trim().trim_start_matches('@').to_lowercase();
        if domain.is_empty() {
            return Err(Violation::new(field, "is required"));
        }
        let labels: Vec<&str> = domain.split('.').collect();
        let valid = domain.len() <= MAX_DOMAIN_LEN
            && labels.len() >= 2
            && labels.iter().all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.chars().all(|c| c.is_alphanumeric() || c == '-')
            });
        if !valid {
            return Err(Violation::new(
                field,
                format!(
                    "`{}` is not an e-mail domain such as example.com",
                    text.trim()
                ),
            ));
        }
        Ok(Self(domain))
    }

    /// The domain of a login e-mail (`ada@example.com` → `example.com`); `None` when the
    /// address has no valid domain.
    pub fn of_email(email: &str) -> Option<Self> {
        let (_, domain) = email.rsplit_once('@')?;
        Self::parse("email", domain).ok()
    }

    /// The lower-case domain.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons() {
        // rule T5 / A4: a reason is required.
        assert!(
            required_reason("reason", "  ", "A4")
                .unwrap_err()
                .description
                .contains("rule A4")
        );
        assert_eq!(
            required_reason("reason", " moved team\n", "T5").unwrap(),
            "moved team"
        );
        assert!(required_reason("reason", &"x".repeat(501), "T5").is_err());
        assert!(required_reason("reason", "a\u{7}b", "T5").is_err());
        assert_eq!(justification("j", "").unwrap(), "");
        assert!(justification("j", &"x".repeat(1001)).is_err());
        assert_eq!(optional_note("n", " ").unwrap(), None);
    }

    #[test]
    fn domains() {
        assert_eq!(
            EmailDomain::parse("d", " Example.COM ").unwrap().as_str(),
            "example.com"
        );
        assert_eq!(
            EmailDomain::parse("d", "@exemple.fr").unwrap().as_str(),
            "exemple.fr"
        );
        for bad in ["", "com", "a..b", "-a.com", "a b.com", "ex_ample.com"] {
            assert!(EmailDomain::parse("d", bad).is_err(), "{bad}");
        }
        assert_eq!(
            EmailDomain::of_email("ada@Example.com").map(|d| d.0),
            Some("example.com".to_owned())
        );
        assert_eq!(EmailDomain::of_email("nodomain"), None);
    }
}
