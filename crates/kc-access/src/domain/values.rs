//! Parse-don't-validate values of access management: reasons (T5, A4), justifications and
//! e-mail domains (A7). Ids, etags, site and customer numbers (S3) and bounded texts are the
//! shared ones of `kc_runtime::values`.

use kc_runtime::Violation;
pub use kc_runtime::values::{CustomerNumber, Etag, SiteNumber, parse_id};
use kc_runtime::values::{is_host_name, optional_multiline_text};

/// Longest reason of a change or a rejection, and longest approval note, in characters.
pub const MAX_REASON_CHARS: usize = 500;
/// Longest justification of an access request, in characters.
pub const MAX_JUSTIFICATION_CHARS: usize = 1000;
/// Longest e-mail domain, in bytes (a DNS name).
const MAX_DOMAIN_LEN: usize = 253;

/// The longest a grant may be given for or ended after, in days (T9): far enough for any
/// agreement, near enough that a typo in a year is caught.
pub const MAX_GRANT_DAYS: i64 = 100 * 366;

/// The start or the end of a grant (T9): a valid timestamp after `now` and at most
/// [`MAX_GRANT_DAYS`] ahead.
pub fn grant_end(
    field: &str,
    end: &prost_types::Timestamp,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<chrono::DateTime<chrono::Utc>, Violation> {
    let Some(end) = u32::try_from(end.nanos)
        .ok()
        .and_then(|nanos| chrono::DateTime::from_timestamp(end.seconds, nanos))
    else {
        return Err(Violation::new(field, "is not a valid timestamp"));
    };
    if end <= now {
        return Err(Violation::new(
            field,
            "rule T9: the start and the end of a grant must be in the future",
        ));
    }
    if end > now + chrono::Duration::days(MAX_GRANT_DAYS) {
        return Err(Violation::new(
            field,
            format!("rule T9: a grant's start and end are at most {MAX_GRANT_DAYS} days ahead"),
        ));
    }
    Ok(end)
}

/// How long a grant is given for (T9): at least one second, at most [`MAX_GRANT_DAYS`].
pub fn grant_length(
    field: &str,
    length: &prost_types::Duration,
) -> Result<chrono::Duration, Violation> {
    if !(0..1_000_000_000).contains(&length.nanos) || length.seconds < 1 {
        return Err(Violation::new(
            field,
            "rule T9: a grant is given for at least one second",
        ));
    }
    if length.seconds > MAX_GRANT_DAYS * 86_400 {
        return Err(Violation::new(
            field,
            format!("rule T9: a grant is given for at most {MAX_GRANT_DAYS} days"),
        ));
    }
    Ok(chrono::Duration::seconds(length.seconds)
        + chrono::Duration::nanoseconds(i64::from(length.nanos)))
}

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
        if domain.len() > MAX_DOMAIN_LEN || !is_host_name(&domain) {
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
    fn grant_ends_and_lengths() {
        // rule T9
        let now = chrono::DateTime::from_timestamp(1_800_000_000, 0).expect("a time");
        let ts = |seconds: i64, nanos: i32| prost_types::Timestamp { seconds, nanos };
        assert_eq!(
            grant_end("valid_until", &ts(1_800_000_001, 0), now).unwrap(),
            now + chrono::Duration::seconds(1)
        );
        for bad in [
            ts(1_800_000_000, 0),
            ts(1_700_000_000, 0),
            ts(1_800_000_001, -1),
        ] {
            let refused = grant_end("valid_until", &bad, now).unwrap_err();
            assert_eq!(refused.field, "valid_until");
        }
        assert!(
            grant_end("valid_until", &ts(1_700_000_000, 0), now)
                .unwrap_err()
                .description
                .starts_with("rule T9:")
        );
        assert!(grant_end("valid_until", &ts(i64::MAX, 0), now).is_err());
        let length = |seconds: i64, nanos: i32| prost_types::Duration { seconds, nanos };
        assert_eq!(
            grant_length("valid_for", &length(7_776_000, 0)).unwrap(),
            chrono::Duration::days(90)
        );
        for bad in [
            length(0, 999_999_999),
            length(-5, 0),
            length(i64::MAX, 0),
            length(1, -1),
        ] {
            assert!(grant_length("valid_for", &bad).is_err(), "{bad:?}");
        }
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
