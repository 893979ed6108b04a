//! Parse-don't-validate values of the identity domain (the shared ones come from
//! `kc_runtime::values`), and the confusable skeleton of login addresses (rule I3).

use kc_runtime::Violation;
pub use kc_runtime::values::{Email, Locale};
use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// A display name: 1 to 200 characters, trimmed, without control characters nor Unicode
/// format characters (general category Cf: bidi overrides and isolates, zero-width
/// characters, the byte-order mark...), so that a name shown to people cannot hide text or
/// reorder it to impersonate someone (rule I3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    /// Parses and trims a display name; `field` names the request field in the error.
    pub fn parse(field: &str, text: &str) -> Result<Self, Violation> {
        let name = kc_runtime::values::DisplayName::parse(field, text)?;
        if name.as_str().chars().any(is_format_character) {
            return Err(Violation::new(
                field,
                "display name must not contain invisible or direction-changing characters \
                 (Unicode format characters such as U+202E or U+200B, rule I3)",
            ));
        }
        Ok(Self(name.as_str().to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whether `c` is a Unicode format character (general category Cf).
pub fn is_format_character(c: char) -> bool {
    c.general_category() == GeneralCategory::Format
}

/// The confusable skeleton of a login address (UTS #39 over its NFKC case fold): two
/// addresses with the same skeleton look the same to people (rule I3).
pub fn email_skeleton(email: &str) -> String {
    let folded: String = email.nfkc().flat_map(char::to_lowercase).collect();
    unicode_security::confusable_detection::skeleton(&folded).collect()
}

/// A password of 12 to 1024 characters. Never logged: its `Debug` is redacted.
#[derive(Clone)]
pub struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(..)")
    }
}

impl Password {
    /// Shortest password accepted.
    pub const MIN_CHARS: usize = 12;
    /// Longest password accepted (bounds the hashing work an attacker can ask for).
    pub const MAX_CHARS: usize = 1024;

    /// Checks the length of a new password.
    pub fn parse(field: &str, text: &str) -> Result<Self, Violation> {
        let length = text.chars().count();
        if length < Self::MIN_CHARS {
            return Err(Violation::new(
                field,
                "password must be at least 12 characters",
            ));
        }
        if length > Self::MAX_CHARS {
            return Err(Violation::new(
                field,
                "password must be at most 1024 characters",
            ));
        }
        Ok(Self(text.to_owned()))
    }

    /// A password presented at sign-in: not length-checked beyond the upper bound, so that
    /// a wrong password and an unknown user fail the same way.
    pub fn presented(text: &str) -> Self {
        Self(text.chars().take(Self::MAX_CHARS).collect())
    }

    /// The secret text.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords() {
        assert!(Password::parse("password", "short").is_err());
        assert!(Password::parse("password", "twelve chars").is_ok());
        assert!(Password::parse("password", &"x".repeat(1025)).is_err());
        assert_eq!(
            format!("{:?}", Password::presented("secret")),
            "Password(..)"
        );
    }

    #[test]
    fn display_names_refuse_format_characters() {
        // rule I3
        for bad in [
            "evil\u{202E}gnp.exe",
            "zero\u{200B}width",
            "iso\u{2066}late",
            "\u{FEFF}bom",
            "soft\u{00AD}hyphen",
        ] {
            let error = DisplayName::parse("display_name", bad).unwrap_err();
            assert_eq!(error.field, "display_name");
            assert!(error.description.contains("rule I3"), "{error:?}");
        }
        assert!(DisplayName::parse("display_name", "a\u{0007}b").is_err());
        assert_eq!(
            DisplayName::parse("display_name", " Éloïse Dupré-Nguyễn ")
                .unwrap()
                .as_str(),
            "Éloïse Dupré-Nguyễn"
        );
        assert!(DisplayName::parse("display_name", "محمد علي").is_ok());
    }

    #[test]
    fn confusable_addresses_share_a_skeleton() {
        // rule I3: Cyrillic 'а' (U+0430) looks like Latin 'a'.
        assert_eq!(
            email_skeleton("\u{0430}lice@example.com"),
            email_skeleton("alice@example.com")
        );
        assert_eq!(
            email_skeleton("ALICE@EXAMPLE.COM"),
            email_skeleton("alice@example.com")
        );
        assert_eq!(
            email_skeleton("ali\u{200B}ce@example.com"),
            email_skeleton("alice@example.com")
        );
        assert_ne!(
            email_skeleton("alice@example.com"),
            email_skeleton("bob@example.com")
        );
    }
}
