//! One-time codes mailed to addresses: how they are made, what stands for them at rest (an
//! HMAC under a subkey of the key-encryption key) and how they travel (sealed to
//! notification's key). No code is ever stored or published in plaintext.

use kc_runtime::secrets::normalize_code as normalize;
use kc_runtime::secrets::{SealingKey, SecretKey, crockford_code};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::settings::Secrets;

/// Length of a short code (decimal digits).
pub const SHORT_CODE_LEN: usize = 6;
/// Length of a long code (Crockford base32, 100 bits), mailed while an address is locked.
pub const LONG_CODE_LEN: usize = 20;
/// Label of the MAC subkey of the key-encryption key.
const MAC_LABEL: &str = "verification-code";

/// Why a code was mailed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// RegisterUser: the code proves the address of a claim.
    Registration,
    /// CreateUser / InviteUser: the address was invited.
    Invitation,
    /// RequestPasswordReset.
    PasswordReset,
    /// ChangeEmail: the code proves the new address.
    EmailChange,
}

impl Purpose {
    /// Name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Registration => "registration",
            Self::Invitation => "invitation",
            Self::PasswordReset => "password_reset",
            Self::EmailChange => "email_change",
        }
    }

    /// Parses the stored name.
    pub fn from_db(text: &str) -> Option<Self> {
        match text {
            "registration" => Some(Self::Registration),
            "invitation" => Some(Self::Invitation),
            "password_reset" => Some(Self::PasswordReset),
            "email_change" => Some(Self::EmailChange),
            _ => None,
        }
    }
}

/// A freshly made code. Its `Debug` is redacted.
#[derive(Clone)]
pub struct Code {
    text: String,
    long: bool,
}

impl std::fmt::Debug for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Code")
            .field("long", &self.long)
            .finish_non_exhaustive()
    }
}

impl Code {
    /// A new random code: 6 digits, or 20 Crockford base32 characters when `long`.
    pub fn generate(long: bool) -> anyhow::Result<Self> {
        let text = if long {
            crockford_code(LONG_CODE_LEN)?.to_string()
        } else {
            loop {
                let mut bytes = [0u8; 4];
                getrandom::fill(&mut bytes)?;
                let value = u32::from_le_bytes(bytes);
                // Reject the top of the range so every code is equally likely.
                if value < u32::MAX - (u32::MAX % 1_000_000) {
                    break format!("{:0width$}", value % 1_000_000, width = SHORT_CODE_LEN);
                }
            }
        };
        Ok(Self { text, long })
    }

    /// The code as mailed.
    pub fn expose(&self) -> &str {
        &self.text
    }

    /// Whether it is a long code.
    pub fn is_long(&self) -> bool {
        self.long
    }
}

/// The keys that protect codes: the MAC that stands for a code at rest, and the sealing key
/// of notification, the only reader of the mailed code.
#[derive(Clone, Debug)]
pub struct CodeKeys {
    mac_key: SecretKey,
    /// The previous key-encryption key during a rotation: codes mailed before it still work.
    previous_mac_key: Option<SecretKey>,
    sealing_key: SealingKey,
}

impl CodeKeys {
    /// The code keys of identity's secrets.
    pub fn new(secrets: &Secrets) -> Self {
        Self {
            mac_key: secrets.key_encryption_key.clone(),
            previous_mac_key: secrets.previous_key_encryption_key.clone(),
            sealing_key: secrets.code_sealing_key,
        }
    }

    /// What is stored for a code mailed to `email` for `user_id`: an HMAC-SHA256 under the
    /// `verification-code` subkey of the key-encryption key, over the canonical code.
    pub fn mac(&self, user_id: Uuid, email: &str, code: &str) -> Vec<u8> {
        mac_under(&self.mac_key, user_id, email, code)
    }

    /// Whether `presented` is the code whose MAC is `stored`, under the current
    /// key-encryption key or, during a rotation, the previous one (codes mailed before the
    /// rotation stay usable until they expire). Constant time in the code.
    pub fn matches(&self, user_id: Uuid, email: &str, presented: &str, stored: &[u8]) -> bool {
        let current = mac_under(&self.mac_key, user_id, email, presented);
        let previous = self
            .previous_mac_key
            .as_ref()
            .map(|key| mac_under(key, user_id, email, presented));
        let under_current = bool::from(current.as_slice().ct_eq(stored));
        let under_previous =
            previous.is_some_and(|previous| bool::from(previous.as_slice().ct_eq(stored)));
        under_current | under_previous
    }

    /// The code sealed to notification's key.
    pub fn seal(&self, code: &Code) -> anyhow::Result<Vec<u8>> {
        self.sealing_key.seal(code.expose().as_bytes())
    }
}

/// The MAC of a code under the `verification-code` subkey of `key`.
fn mac_under(key: &SecretKey, user_id: Uuid, email: &str, code: &str) -> Vec<u8> {
    key.mac(
        MAC_LABEL,
        &[
            user_id.as_bytes(),
            email.as_bytes(),
            &[0],
            normalize(code).as_bytes(),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_have_their_shape() {
        let short = Code::generate(false).unwrap();
        assert_eq!(short.expose().len(), SHORT_CODE_LEN);
        assert!(short.expose().chars().all(|c| c.is_ascii_digit()));
        let long = Code::generate(true).unwrap();
        assert_eq!(long.expose().len(), LONG_CODE_LEN);
        assert!(
            long.expose()
                .bytes()
                .all(|b| kc_runtime::secrets::CROCKFORD.contains(&b))
        );
        assert_eq!(normalize(long.expose()), long.expose());
        assert_eq!(normalize(" ab-cd io l "), "ABCD101");
        assert!(!format!("{short:?}").contains(short.expose()));
    }

    #[test]
    fn codes_mailed_before_a_key_encryption_key_rotation_still_match() {
        let old_key = SecretKey::from_bytes([1; 32]);
        let new_key = SecretKey::from_bytes([2; 32]);
        let sealing_key = kc_runtime::secrets::OpeningKey::generate()
            .unwrap()
            .sealing_key();
        let before = CodeKeys::new(&Secrets {
            key_encryption_key: old_key.clone(),
            previous_key_encryption_key: None,
            code_sealing_key: sealing_key,
        });
        let user = Uuid::now_v7();
        let stored = before.mac(user, "a@example.com", "123456");
        let rotated = CodeKeys::new(&Secrets {
            key_encryption_key: new_key.clone(),
            previous_key_encryption_key: Some(old_key),
            code_sealing_key: sealing_key,
        });
        assert!(rotated.matches(user, "a@example.com", "123456", &stored));
        assert!(rotated.matches(user, "a@example.com", " 123-456 ", &stored));
        assert!(!rotated.matches(user, "a@example.com", "123457", &stored));
        assert!(!rotated.matches(user, "b@example.com", "123456", &stored));
        let fresh = rotated.mac(user, "a@example.com", "654321");
        assert!(rotated.matches(user, "a@example.com", "654321", &fresh));
        // Once the rotation is over (no previous key), the old MACs no longer match.
        let after = CodeKeys::new(&Secrets {
            key_encryption_key: new_key,
            previous_key_encryption_key: None,
            code_sealing_key: sealing_key,
        });
        assert!(!after.matches(user, "a@example.com", "123456", &stored));
    }
}
