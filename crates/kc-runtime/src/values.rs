//! Parse-don't-validate values shared by the services: e-mail addresses as identity checks
//! them, display names, BCP-47 language tags, ids and etags.

use uuid::Uuid;

use crate::Violation;

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
        let labels: Vec<&str> = domain.split('.').collect();
        let domain_ok = labels.len() >= 2
            && labels.iter().all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.chars().all(|c| c.is_alphanumeric() || c == '-')
            });
        if !domain_ok {
            return Err(invalid("the domain is not a valid host name"));
        }
        Ok(Self(email))
    }

    /// The normalised address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
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

/// Parses an etag as services issue them (a version number, optionally quoted); empty means
/// "no check".
pub fn parse_etag(field: &str, etag: &str) -> Result<Option<i64>, Violation> {
    let trimmed = etag.trim();
    if trimmed.is_empty() {
        return Ok(None);
    }
    trimmed
        .trim_matches('"')
        .parse()
        .map(Some)
        .map_err(|_| Violation::new(field, "etag is not one this service issued"))
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
}
