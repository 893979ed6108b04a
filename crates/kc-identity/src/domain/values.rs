//! Parse-don't-validate values of the identity domain (the shared ones come from
//! `kc_runtime::values`), and the confusable skeleton of login addresses (rule I3).

use kc_runtime::Violation;
use kc_runtime::token::scope;
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
        if name.as_str().chars().any(is_hidden_character) {
            return Err(Violation::new(
                field,
                "display name must not contain invisible, direction-changing or line-breaking \
                 characters (Unicode format characters such as U+202E or U+200B, \
                 default-ignorable ones such as U+3164, line or paragraph separators, rule I3)",
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

/// Whether `c` may not appear in a display name (rule I3): a format character (Cf), a
/// line or paragraph separator (Zl, Zp), a default-ignorable code point that is not Cf
/// (fillers and variation selectors, which render as nothing), or the blank Braille
/// pattern U+2800 (not default-ignorable, but invisible).
pub fn is_hidden_character(c: char) -> bool {
    is_format_character(c)
        || matches!(
            c.general_category(),
            GeneralCategory::LineSeparator | GeneralCategory::ParagraphSeparator
        )
        || is_default_ignorable(c)
        || c == '\u{2800}'
}

/// Default_Ignorable_Code_Point (Unicode 15 DerivedCoreProperties.txt), whatever its
/// general category.
fn is_default_ignorable(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'..='\u{1160}'
            | '\u{17B4}'..='\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF0}'..='\u{FFF8}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}'
    )
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

/// The scopes of a service account (see [`kc_runtime::token::scope`]): known scopes only,
/// each once, in the order of [`scope::ALL`]. Empty by default: an account holds no scope
/// unless it is created with one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scopes(Vec<&'static str>);

impl Scopes {
    /// Parses scopes given one by one or comma-separated (`["authz,notices"]`,
    /// `["authz", "notices"]`); an unknown or empty scope is refused, naming the known ones.
    pub fn parse<S: AsRef<str>>(field: &str, given: &[S]) -> Result<Self, Violation> {
        let mut held = Vec::new();
        for name in given.iter().flat_map(|item| item.as_ref().split(',')) {
            let name = name.trim();
            let known = scope::ALL
                .iter()
                .find(|known| **known == name)
                .ok_or_else(|| {
                    Violation::new(
                        field,
                        format!(
                            "unknown scope \"{}\": the known scopes are {}",
                            name.escape_debug(),
                            scope::ALL.join(", ")
                        ),
                    )
                })?;
            held.push(*known);
        }
        Ok(Self(
            scope::ALL
                .into_iter()
                .filter(|known| held.contains(known))
                .collect(),
        ))
    }

    /// The scopes, in the order of [`scope::ALL`].
    pub fn as_slice(&self) -> &[&'static str] {
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
            // rule I3: default-ignorable fillers and selectors, the blank Braille pattern,
            // and line or paragraph separators hide or break a name as well.
            "\u{3164}",
            "hangul\u{3164}filler",
            "half\u{FFA0}width",
            "cho\u{115F}seong",
            "jung\u{1160}seong",
            "grapheme\u{034F}joiner",
            "vari\u{FE0F}ation",
            "braille\u{2800}blank",
            "line\u{2028}separator",
            "para\u{2029}graph",
        ] {
            let error = DisplayName::parse("display_name", bad).unwrap_err();
            assert_eq!(error.field, "display_name");
            assert!(error.description.contains("rule I3"), "{bad:?}: {error:?}");
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

    #[test]
    fn scopes_are_known_ones_each_once_in_a_stable_order() {
        assert_eq!(
            Scopes::parse("scope", &["notices,authz"])
                .unwrap()
                .as_slice(),
            ["authz", "notices"]
        );
        assert_eq!(
            Scopes::parse("scope", &["notices", " notices "])
                .unwrap()
                .as_slice(),
            ["notices"]
        );
        assert!(
            Scopes::parse::<&str>("scope", &[])
                .unwrap()
                .as_slice()
                .is_empty()
        );
        let unknown = Scopes::parse("scope", &["authz,admin"]).unwrap_err();
        assert_eq!(
            unknown.description,
            "unknown scope \"admin\": the known scopes are authz, notices"
        );
        assert!(Scopes::parse("scope", &["authz,"]).is_err(), "empty scope");
    }
}
