//! Parse-don't-validate values of the identity domain (the shared ones come from
//! `kc_runtime::values`).

use kc_runtime::Violation;
pub use kc_runtime::values::{DisplayName, Email, Locale};

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
}
