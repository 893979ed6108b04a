//! Password hashing with argon2id, bounded in concurrency so that a burst of sign-ins cannot
//! exhaust memory, and equal in cost whether or not the account exists.

use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

use super::values::Password;

/// argon2id cost parameters.
#[derive(Debug, Clone, Copy)]
pub struct HashCost {
    /// Memory per hash, KiB.
    pub memory_kib: u32,
    /// Passes over memory.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Default for HashCost {
    /// OWASP's argon2id recommendation: 19 MiB, 2 passes, 1 lane.
    fn default() -> Self {
        Self {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
        }
    }
}

/// Hashes and verifies passwords on the blocking pool, a bounded number at a time.
#[derive(Clone)]
pub struct PasswordHasher {
    argon: Argon2<'static>,
    permits: Arc<Semaphore>,
    /// Hash of a random password, verified against when the account does not exist so that
    /// unknown e-mails cost as much as wrong passwords.
    decoy_hash: Arc<str>,
}

impl std::fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasher").finish_non_exhaustive()
    }
}

impl PasswordHasher {
    /// A hasher with `cost`, running at most `concurrency` hashes at once.
    pub fn new(cost: HashCost, concurrency: usize) -> anyhow::Result<Self> {
        let params = Params::new(cost.memory_kib, cost.iterations, cost.parallelism, None)
            .map_err(|error| anyhow::anyhow!("argon2 parameters: {error}"))?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let mut decoy = [0u8; 24];
        getrandom::fill(&mut decoy)?;
        let decoy_hash = hash_blocking(&argon, &base64_of(&decoy))?;
        Ok(Self {
            argon,
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            decoy_hash: decoy_hash.into(),
        })
    }

    /// The PHC string of a new password.
    pub async fn hash(&self, password: &Password) -> anyhow::Result<String> {
        let _permit = self.permits.acquire().await?;
        let argon = self.argon.clone();
        let password = password.clone();
        tokio::task::spawn_blocking(move || hash_blocking(&argon, password.expose())).await?
    }

    /// Whether `password` matches `hash`; with no hash (unknown user, invited user) it
    /// verifies against the decoy and returns `false`, at the same cost.
    pub async fn verify(&self, password: &Password, hash: Option<&str>) -> anyhow::Result<bool> {
        let _permit = self.permits.acquire().await?;
        let argon = self.argon.clone();
        let password = password.clone();
        let (stored, real) = match hash {
            Some(hash) => (hash.to_owned(), true),
            None => (self.decoy_hash.to_string(), false),
        };
        tokio::task::spawn_blocking(move || {
            let parsed = PasswordHash::new(&stored)
                .map_err(|error| anyhow::anyhow!("stored password hash unreadable: {error}"))?;
            let matches = argon
                .verify_password(password.expose().as_bytes(), &parsed)
                .is_ok();
            Ok(matches && real)
        })
        .await?
    }
}

fn hash_blocking(argon: &Argon2<'static>, password: &str) -> anyhow::Result<String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt)?;
    let salt =
        SaltString::encode_b64(&salt).map_err(|error| anyhow::anyhow!("argon2 salt: {error}"))?;
    Ok(argon
        .hash_password(password.as_bytes(), &salt)
        .map_err(|error| anyhow::anyhow!("argon2 hash: {error}"))?
        .to_string())
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_and_verify() {
        let hasher = PasswordHasher::new(
            HashCost {
                memory_kib: 1024,
                iterations: 1,
                parallelism: 1,
            },
            2,
        )
        .unwrap();
        let password = Password::parse("password", "correct horse battery").unwrap();
        let hash = hasher.hash(&password).await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(hasher.verify(&password, Some(&hash)).await.unwrap());
        assert!(
            !hasher
                .verify(&Password::presented("wrong horse battery"), Some(&hash))
                .await
                .unwrap()
        );
        assert!(!hasher.verify(&password, None).await.unwrap());
    }
}
