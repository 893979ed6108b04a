//! Confirmation of notification e-mails (C9, C11): a new notification e-mail is not used
//! until its owner proves it with a code mailed to it.
//!
//! The code is 20 Crockford base32 characters (100 random bits): guessing it is hopeless, so
//! what stands for it at rest is a plain SHA-256 ([`code_hash`]), never the code. It travels
//! only sealed to notification's public key ([`NotificationCodes::seal`]); once it is used,
//! replaced, withdrawn or expired, the outbox event that carried it is rewritten without it.

use std::time::Duration;

use kc_runtime::secrets::normalize_code as normalize;
use kc_runtime::secrets::{CROCKFORD, SealingKey, crockford_code};
use sha2::{Digest, Sha256};

use super::{ContactsError, Result};

/// Length of a code, in Crockford base32 characters (100 bits).
pub const CODE_LEN: usize = 20;
/// Wrong codes that withdraw a pending address.
pub const MAX_FAILED_ATTEMPTS: i32 = 5;
/// How long a code is valid unless configured otherwise.
pub const DEFAULT_CODE_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// Domain separation of the stored hash.
const HASH_LABEL: &[u8] = b"keycontacts notification-email code v1\0";

/// A freshly made code. Its `Debug` is redacted.
#[derive(Clone)]
pub struct Code(String);

impl std::fmt::Debug for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Code").finish_non_exhaustive()
    }
}

impl Code {
    /// A new random code.
    pub fn generate() -> anyhow::Result<Self> {
        Ok(Self(crockford_code(CODE_LEN)?.to_string()))
    }

    /// The code as mailed.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// What is stored for a code: SHA-256 over a label and the canonical code.
pub fn code_hash(code: &str) -> Vec<u8> {
    Sha256::new()
        .chain_update(HASH_LABEL)
        .chain_update(normalize(code).as_bytes())
        .finalize()
        .to_vec()
}

/// Whether `presented` can be a code at all (checked before any lookup).
pub fn well_formed(presented: &str) -> bool {
    let code = normalize(presented);
    code.len() == CODE_LEN && code.bytes().all(|b| CROCKFORD.contains(&b))
}

/// How the registry mails codes: notification's public sealing key and the codes' lifetime.
#[derive(Clone, Copy, Debug)]
pub struct NotificationCodes {
    sealing_key: SealingKey,
    ttl: Duration,
}

impl NotificationCodes {
    /// Codes sealed to `sealing_key`, valid for `ttl`.
    pub fn new(sealing_key: SealingKey, ttl: Duration) -> Self {
        Self { sealing_key, ttl }
    }

    /// How long a code is valid.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// `code` sealed to notification's key.
    pub fn seal(&self, code: &Code) -> Result<Vec<u8>> {
        self.sealing_key
            .seal(code.expose().as_bytes())
            .map_err(ContactsError::Internal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_have_their_shape_and_hash_canonically() {
        let code = Code::generate().unwrap();
        assert_eq!(code.expose().len(), CODE_LEN);
        assert!(well_formed(code.expose()));
        assert!(!format!("{code:?}").contains(code.expose()));
        let lower = code.expose().to_ascii_lowercase();
        assert_eq!(code_hash(&lower), code_hash(code.expose()));
        assert_ne!(code_hash(code.expose()), code_hash(&"0".repeat(CODE_LEN)));
        assert_eq!(normalize(" ab-cd io l "), "ABCD101");
        assert!(!well_formed("123456"));
        assert!(!well_formed(&"U".repeat(CODE_LEN)));
        assert_ne!(Code::generate().unwrap().expose(), code.expose());
    }

    // rule C11: the code leaves the registry sealed to notification's key only.
    #[test]
    fn codes_open_only_with_notifications_key() {
        let key = kc_runtime::secrets::OpeningKey::generate().unwrap();
        let codes = NotificationCodes::new(key.sealing_key(), DEFAULT_CODE_TTL);
        let code = Code::generate().unwrap();
        let sealed = codes.seal(&code).unwrap();
        assert_eq!(
            key.open(&sealed).unwrap().as_slice(),
            code.expose().as_bytes()
        );
        let other = kc_runtime::secrets::OpeningKey::generate().unwrap();
        assert!(other.open(&sealed).is_err());
    }
}
