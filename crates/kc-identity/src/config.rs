//! Settings of `kc-identity`, from flags and environment variables.

use std::path::PathBuf;
use std::time::Duration;

use kc_runtime::config::{DatabaseArgs, ServerArgs, parse_duration};
use kc_runtime::secrets::{SealingKey, SecretKey};

use crate::domain::password::HashCost;
use crate::domain::settings::{Secrets, Settings};

/// Everything `kc-identity serve` needs.
#[derive(clap::Args, Debug, Clone)]
pub struct IdentityArgs {
    /// Server settings.
    #[command(flatten)]
    pub server: ServerArgs,
    /// Database settings.
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Token and session settings.
    #[command(flatten)]
    pub tokens: TokenArgs,
    /// Password hashing settings.
    #[command(flatten)]
    pub hashing: HashArgs,
    /// Keys that protect secrets at rest and in the event stream.
    #[command(flatten)]
    pub secrets: SecretArgs,
}

/// The key files of identity (each 32 bytes in base64; `kc-identity generate-key` writes
/// one). They come from files so that Kubernetes Secrets can be mounted as such.
#[derive(clap::Args, Debug, Clone)]
pub struct SecretArgs {
    /// Key-encryption key: encrypts the token signing keys at rest and keys the MAC that
    /// stands for each verification code.
    #[arg(long, env = "KC_KEY_ENCRYPTION_KEY_FILE")]
    pub key_encryption_key_file: PathBuf,
    /// The previous key-encryption key, during a rotation: signing keys it encrypted are
    /// re-encrypted with the current one at start.
    #[arg(long, env = "KC_PREVIOUS_KEY_ENCRYPTION_KEY_FILE")]
    pub previous_key_encryption_key_file: Option<PathBuf>,
    /// Notification's public code-sealing key: every mailed code leaves identity sealed to
    /// it, so that no other reader of the event stream can read it.
    #[arg(long, env = "KC_CODE_SEALING_KEY_FILE")]
    pub code_sealing_key_file: PathBuf,
}

impl SecretArgs {
    /// Reads the key files; the error names the setting and the file, never a key.
    pub fn load(&self) -> anyhow::Result<Secrets> {
        Ok(Secrets {
            key_encryption_key: SecretKey::from_file(
                "--key-encryption-key-file",
                &self.key_encryption_key_file,
            )?,
            previous_key_encryption_key: self
                .previous_key_encryption_key_file
                .as_deref()
                .map(|path| SecretKey::from_file("--previous-key-encryption-key-file", path))
                .transpose()?,
            code_sealing_key: SealingKey::from_file(
                "--code-sealing-key-file",
                &self.code_sealing_key_file,
            )?,
        })
    }
}

/// Lifetimes of tokens and codes, and the sign-in lockout.
#[derive(clap::Args, Debug, Clone)]
pub struct TokenArgs {
    /// Lifetime of access tokens.
    #[arg(long, env = "KC_ACCESS_TOKEN_TTL", default_value = "15m", value_parser = parse_duration)]
    pub access_token_ttl: Duration,
    /// Lifetime of a session: how long refresh tokens keep working.
    #[arg(long, env = "KC_SESSION_TTL", default_value = "30d", value_parser = parse_duration)]
    pub session_ttl: Duration,
    /// Lifetime of an e-mail verification code.
    #[arg(long, env = "KC_VERIFICATION_CODE_TTL", default_value = "24h", value_parser = parse_duration)]
    pub verification_code_ttl: Duration,
    /// Least time between two mails of one outstanding code to an address: a new request
    /// within it mails nothing (the answer is the same, I2), so that nobody can flood a
    /// mailbox; the code itself is never replaced by such requests.
    #[arg(long, env = "KC_CODE_MAIL_INTERVAL", default_value = "1m", value_parser = parse_duration)]
    pub code_mail_interval: Duration,
    /// Consecutive failed sign-ins that lock an e-mail.
    #[arg(long, env = "KC_LOCKOUT_THRESHOLD", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub lockout_threshold: u32,
    /// How long such a lock lasts.
    #[arg(long, env = "KC_LOCKOUT_DURATION", default_value = "15m", value_parser = parse_duration)]
    pub lockout_duration: Duration,
}

/// argon2id cost parameters and how many hashes may run at once.
#[derive(clap::Args, Debug, Clone)]
pub struct HashArgs {
    /// Memory per hash, KiB (OWASP: 19456).
    #[arg(long, env = "KC_ARGON2_MEMORY_KIB", default_value_t = 19 * 1024)]
    pub argon2_memory_kib: u32,
    /// Passes over memory (OWASP: 2).
    #[arg(long, env = "KC_ARGON2_ITERATIONS", default_value_t = 2)]
    pub argon2_iterations: u32,
    /// Lanes (OWASP: 1).
    #[arg(long, env = "KC_ARGON2_PARALLELISM", default_value_t = 1)]
    pub argon2_parallelism: u32,
    /// Most hashes computed at once (default: the number of CPUs); bounds memory.
    #[arg(long, env = "KC_ARGON2_CONCURRENCY")]
    pub argon2_concurrency: Option<usize>,
}

impl HashArgs {
    /// The cost parameters.
    pub fn cost(&self) -> HashCost {
        HashCost {
            memory_kib: self.argon2_memory_kib,
            iterations: self.argon2_iterations,
            parallelism: self.argon2_parallelism,
        }
    }

    /// The concurrency bound.
    pub fn concurrency(&self) -> usize {
        self.argon2_concurrency
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, usize::from))
    }
}

impl IdentityArgs {
    /// Domain settings from these arguments.
    pub fn settings(&self) -> Settings {
        Settings {
            issuer: self.server.token_issuer.clone(),
            audience: self.server.token_audience.clone(),
            access_token_ttl: self.tokens.access_token_ttl,
            session_ttl: self.tokens.session_ttl,
            verification_code_ttl: self.tokens.verification_code_ttl,
            code_mail_interval: self.tokens.code_mail_interval,
            lockout_threshold: self.tokens.lockout_threshold,
            lockout_duration: self.tokens.lockout_duration,
        }
    }
}
