//! The settings and keys of the identity domain, as `config` reads them from flags,
//! environment and key files.

use std::time::Duration;

use kc_runtime::secrets::{SealingKey, SecretKey};

/// Token and lockout settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `iss` of issued tokens.
    pub issuer: String,
    /// `aud` of issued tokens.
    pub audience: String,
    /// Lifetime of access tokens.
    pub access_token_ttl: Duration,
    /// Lifetime of a session (refresh-token family).
    pub session_ttl: Duration,
    /// Lifetime of an e-mail verification code.
    pub verification_code_ttl: Duration,
    /// Least time between two mails of one outstanding code to an address (rule I2: the
    /// answer does not tell; nothing is mailed meanwhile).
    pub code_mail_interval: Duration,
    /// Consecutive failed sign-ins that lock an e-mail.
    pub lockout_threshold: u32,
    /// How long such a lock lasts.
    pub lockout_duration: Duration,
}

/// The keys of identity, as `config` reads them from their files (`SecretArgs`).
#[derive(Debug, Clone)]
pub struct Secrets {
    /// The current key-encryption key.
    pub key_encryption_key: SecretKey,
    /// The previous one, during a rotation.
    pub previous_key_encryption_key: Option<SecretKey>,
    /// Notification's public code-sealing key.
    pub code_sealing_key: SealingKey,
}
