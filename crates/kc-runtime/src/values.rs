//! Parse-don't-validate values shared by the services: e-mail addresses as identity checks
//! them, display names, BCP-47 language tags, ids and etags, site and customer numbers as the
//! contact registry issues them, and bounded free texts.

use std::fmt;

use uuid::Uuid;

use crate::{ApiError, Violation};

/// A login e-mail: trimmed, lowercased, syntactically valid.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    /// Parses `text` as an e-mail address; `field` names the request field in the error.
    pub fn parse(field: &str, text: &str) -> Result<Self, Violation> {
        let email = text.trim().to_lowercase();
        let invalid =
            |why: &str| Violation::new(field, format!("not a valid e-mail address: {why}"));
        if email.is_empty() {
            return Err(Violation::new(field, "e-mail is required"));
        }
        if email.len() > 254 {
            return Err(invalid("longer than 254 characters"));
        }
        let (local, domain) = email.rsplit_once('@').ok_or_else(|| invalid("missing @"))?;
        if local.is_empty() || local.len() > 64 {
            return Err(invalid("the part before @ must be 1 to 64 characters"));
        }
        let local_ok = local
            .chars()
            .all(|c| c.is_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c))
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..");
        if !local_ok {
            return Err(invalid("the part before @ has characters not allowed"));
        }
        if !is_host_name(domain) {
            return Err(invalid("the domain is not a valid host name"));
        }
        Ok(Self(email))
    }

    /// The normalised address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whether `domain` is a host name of two labels or more (`example.com`): each label 1 to
/// 63 letters, digits or hyphens, neither first nor last a hyphen.
pub fn is_host_name(domain: &str) -> bool {
    let labels: Vec<&str> = domain.split('.').collect();
    labels.len() >= 2
        && labels.iter().all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_alphanumeric() || c == '-')
        })
}

/// A name shown to people: 1 to 200 characters of any script, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    /// Parses and trims a display name.
    pub fn parse(field: &str, text: &str) -> Result<Self, Violation> {
        let name = text.trim();
        let length = name.chars().count();
        if length == 0 {
            return Err(Violation::new(field, "display name is required"));
        }
        if length > 200 {
            return Err(Violation::new(
                field,
                "display name must be at most 200 characters",
            ));
        }
        if name.chars().any(char::is_control) {
            return Err(Violation::new(
                field,
                "display name must not contain control characters",
            ));
        }
        Ok(Self(name.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A BCP-47 language tag such as `fr`, `en`, `fr-CA`, `zh-Hant-TW`, normalised in case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locale(String);

impl Locale {
    /// The default locale.
    pub fn english() -> Self {
        Self("en".to_owned())
    }

    /// Parses a tag; an empty text means the default, `en`.
    pub fn parse_or_default(field: &str, text: &str) -> Result<Self, Violation> {
        if text.trim().is_empty() {
            Ok(Self::english())
        } else {
            Self::parse(field, text)
        }
    }

    /// Parses a language tag: a 2–3 letter language, then optional script (4 letters),
    /// region (2 letters or 3 digits) and variants (5–8 alphanumerics), separated by `-`.
    pub fn parse(field: &str, text: &str) -> Result<Self, Violation> {
        let invalid = || {
            Violation::new(
                field,
                format!(
                    "`{}` is not a BCP-47 language tag such as en, fr or fr-CA",
                    text.trim()
                ),
            )
        };
        let text = text.trim().replace('_', "-");
        if text.len() > 35 {
            return Err(invalid());
        }
        let mut parts = text.split('-');
        let language = parts.next().ok_or_else(invalid)?;
        if !(2..=3).contains(&language.len()) || !language.chars().all(|c| c.is_ascii_alphabetic())
        {
            return Err(invalid());
        }
        let mut normalised = vec![language.to_ascii_lowercase()];
        let mut stage = 0; // 0: script allowed, 1: region allowed, 2: variants only
        for part in parts {
            let alpha = part.chars().all(|c| c.is_ascii_alphabetic());
            let digits = part.chars().all(|c| c.is_ascii_digit());
            let alnum = part.chars().all(|c| c.is_ascii_alphanumeric());
            if stage == 0 && part.len() == 4 && alpha {
                let mut script = part.to_ascii_lowercase();
                script[..1].make_ascii_uppercase();
                normalised.push(script);
                stage = 1;
            } else if stage <= 1 && ((part.len() == 2 && alpha) || (part.len() == 3 && digits)) {
                normalised.push(part.to_ascii_uppercase());
                stage = 2;
            } else if (5..=8).contains(&part.len()) && alnum
                || (part.len() == 4 && part.starts_with(|c: char| c.is_ascii_digit()) && alnum)
            {
                normalised.push(part.to_ascii_lowercase());
                stage = 2;
            } else {
                return Err(invalid());
            }
        }
        Ok(Self(normalised.join("-")))
    }

    /// The tag.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Parses a UUID field.
pub fn parse_id(field: &str, text: &str) -> Result<Uuid, Violation> {
    Uuid::parse_str(text.trim()).map_err(|_| Violation::new(field, "must be a UUID"))
}

/// An etag a client sent back, as every service of the suite issues them: the version of the
/// resource it read (a number, optionally quoted). Empty means "no check".
///
/// Etags are opaque to clients, so a text no service of the suite issued (malformed or
/// foreign) is not bad input but a version that cannot match: [`Etag::parse`] answers it
/// `Aborted`, exactly as a stale etag is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Etag(Option<i64>);

impl Etag {
    /// Reads the etag in `field`; an etag this suite never issued is `Aborted`, with a message
    /// naming `field`.
    pub fn parse(field: &str, text: &str) -> Result<Self, ApiError> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Ok(Self(None));
        }
        trimmed
            .trim_matches('"')
            .parse()
            .map(|version| Self(Some(version)))
            .map_err(|_| {
                ApiError::Aborted(format!(
                    "{field} is not an etag of this resource; read it again"
                ))
            })
    }

    /// The version the client read, `None` when it asked for no check.
    pub fn version(self) -> Option<i64> {
        self.0
    }

    /// Whether the resource at `version` passes the check.
    pub fn matches(self, version: i64) -> bool {
        self.0.is_none_or(|expected| expected == version)
    }
}

impl fmt::Display for Etag {
    /// The etag as services issue it: the version, or nothing when there is no check.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(version) => write!(f, "{version}"),
            None => Ok(()),
        }
    }
}

/// Parses a number of 7 to 10 ASCII digits (site and customer numbers, S2); `what` names it
/// in the messages, e.g. `site number is required`.
fn digits(field: &str, what: &str, text: &str) -> Result<String, Violation> {
    let text = text.trim();
    if text.is_empty() {
        return Err(Violation::new(field, format!("{what} is required")));
    }
    if !(7..=10).contains(&text.len()) || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Violation::new(
            field,
            format!("{what} must be 7 to 10 digits"),
        ));
    }
    Ok(text.to_owned())
}

/// A site number: 7 to 10 digits (S2), as the contact registry issues them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteNumber(String);

impl SiteNumber {
    /// Parses a site number.
    pub fn parse(field: &str, text: &str) -> Result<Self, Violation> {
        digits(field, "site number", text).map(Self)
    }

    /// The digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A customer number: 7 to 10 digits (S2), as the contact registry issues them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerNumber(String);

impl CustomerNumber {
    /// Parses a customer number.
    pub fn parse(field: &str, text: &str) -> Result<Self, Violation> {
        digits(field, "customer number", text).map(Self)
    }

    /// The digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Trims `text` and checks it has at most `max` characters and no control characters, other
/// than line breaks and tabs when `multiline`. Empty is `None`.
fn bounded_text(
    field: &str,
    text: &str,
    max: usize,
    multiline: bool,
) -> Result<Option<String>, Violation> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    if text.chars().count() > max {
        return Err(Violation::new(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    let allowed = |c: char| multiline && matches!(c, '\n' | '\r' | '\t');
    if text.chars().any(|c| c.is_control() && !allowed(c)) {
        return Err(Violation::new(field, "must not contain control characters"));
    }
    Ok(Some(text.to_owned()))
}

/// Trims a one-line `text` and checks it has 1 to `max` characters and no control characters.
pub fn required_text(field: &str, text: &str, max: usize) -> Result<String, Violation> {
    if text.trim().is_empty() {
        return Err(Violation::new(field, "is required"));
    }
    optional_text(field, text, max).map(Option::unwrap_or_default)
}

/// Like [`required_text`], but an empty text is `None`.
pub fn optional_text(field: &str, text: &str, max: usize) -> Result<Option<String>, Violation> {
    bounded_text(field, text, max, false)
}

/// Like [`optional_text`], but line breaks and tabs are allowed (reasons, notes).
pub fn optional_multiline_text(
    field: &str,
    text: &str,
    max: usize,
) -> Result<Option<String>, Violation> {
    bounded_text(field, text, max, true)
}

/// An optional e-mail address, checked as identity checks login e-mails ([`Email`]).
pub fn optional_email(field: &str, text: &str) -> Result<Option<String>, Violation> {
    if text.trim().is_empty() {
        Ok(None)
    } else {
        Email::parse(field, text).map(|email| Some(email.as_str().to_owned()))
    }
}

/// A protobuf timestamp of a UTC time.
pub fn timestamp(time: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: time.timestamp_subsec_nanos() as i32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(
            SiteNumber::parse("f", " 1234567 ").unwrap().as_str(),
            "1234567"
        );
        assert!(SiteNumber::parse("f", "1234567890").is_ok());
        assert_eq!(
            CustomerNumber::parse("customer_number", "")
                .unwrap_err()
                .description,
            "customer number is required"
        );
        for bad in ["", "123456", "12345678901", "12345a7", "１２３４５６７"] {
            assert!(SiteNumber::parse("f", bad).is_err(), "{bad}");
            assert!(CustomerNumber::parse("f", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn texts() {
        assert_eq!(required_text("f", " Paris ", 200).unwrap(), "Paris");
        assert!(required_text("f", " ", 200).is_err());
        assert!(required_text("f", &"é".repeat(201), 200).is_err());
        assert!(optional_text("f", "a\nb", 100).is_err());
        assert_eq!(optional_text("f", "  ", 100).unwrap(), None);
        assert_eq!(
            optional_multiline_text("f", " a\nb\t ", 100)
                .unwrap()
                .as_deref(),
            Some("a\nb")
        );
        assert!(optional_multiline_text("f", "a\u{7}b", 100).is_err());
        assert!(optional_multiline_text("f", &"x".repeat(101), 100).is_err());
    }

    #[test]
    fn optional_emails() {
        assert_eq!(optional_email("f", " ").unwrap(), None);
        assert_eq!(
            optional_email("f", "ada@example.com").unwrap().as_deref(),
            Some("ada@example.com")
        );
        assert!(optional_email("f", "not an e-mail").is_err());
    }

    #[test]
    fn emails() {
        assert_eq!(
            Email::parse("email", "  Ada@Example.COM ")
                .unwrap()
                .as_str(),
            "ada@example.com"
        );
        assert_eq!(
            Email::parse("email", "éloïse@exemple.fr").unwrap().as_str(),
            "éloïse@exemple.fr"
        );
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a b@example.com",
            "ada@-x.com",
            "a..b@example.com",
        ] {
            let violation = Email::parse("email", bad).unwrap_err();
            assert_eq!(violation.field, "email", "{bad}");
        }
    }

    #[test]
    fn display_names() {
        assert_eq!(
            DisplayName::parse("display_name", "Éloïse Dupré-Nguyễn")
                .unwrap()
                .as_str(),
            "Éloïse Dupré-Nguyễn"
        );
        assert!(DisplayName::parse("display_name", "  ").is_err());
        assert!(DisplayName::parse("display_name", "a\u{0007}b").is_err());
        assert!(DisplayName::parse("display_name", &"é".repeat(200)).is_ok());
        assert!(DisplayName::parse("display_name", &"é".repeat(201)).is_err());
    }

    #[test]
    fn locales() {
        assert_eq!(Locale::parse("locale", "fr").unwrap().as_str(), "fr");
        assert_eq!(Locale::parse("locale", "fr-ca").unwrap().as_str(), "fr-CA");
        assert_eq!(
            Locale::parse("locale", "zh-hant-tw").unwrap().as_str(),
            "zh-Hant-TW"
        );
        assert_eq!(
            Locale::parse("locale", "es-419").unwrap().as_str(),
            "es-419"
        );
        assert_eq!(
            Locale::parse_or_default("locale", "").unwrap().as_str(),
            "en"
        );
        for bad in ["french", "f", "fr-", "fr--CA", "12", "en-US-x"] {
            assert!(Locale::parse("locale", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn etags() {
        assert_eq!(Etag::parse("etag", "").unwrap().version(), None);
        assert_eq!(Etag::parse("etag", " \"3\" ").unwrap().version(), Some(3));
        assert_eq!(Etag::parse("etag", "3").unwrap().to_string(), "3");
        assert_eq!(Etag::parse("etag", "").unwrap().to_string(), "");
        for foreign in ["3-stale", "one", "\"\""] {
            match Etag::parse("etag", foreign) {
                Err(ApiError::Aborted(message)) => assert_eq!(
                    message, "etag is not an etag of this resource; read it again",
                    "{foreign}"
                ),
                other => panic!("{foreign}: expected Aborted, got {other:?}"),
            }
        }
        let any = Etag::parse("etag", "").unwrap();
        let seven = Etag::parse("etag", "7").unwrap();
        assert!(any.matches(7) && seven.matches(7) && !seven.matches(6));
    }
}
