//! Password hashing with argon2id, bounded in concurrency and in memory so that a burst of
//! sign-ins cannot exhaust either, and equal in cost whether or not the account exists.
//!
//! argon2 fills `memory_kib` of working memory per hash. Allocated per hash (as
//! `PasswordHasher::hash_password` does), those blocks are freed on whichever blocking
//! thread ran the hash, and glibc keeps freed large chunks in per-thread arenas: measured
//! on the bench, kc-identity's peak RSS climbed to 393–432 MiB after 500 sign-ins. Here each
//! permit of the semaphore comes with one working-memory buffer, allocated the first time
//! it is needed and then reused, so the hashing memory is at most `concurrency ×
//! memory_kib` whatever the number of threads or sign-ins.

use std::sync::{Arc, Mutex};

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
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

/// Hashes and verifies passwords on the blocking pool, a bounded number at a time, each in
/// a reused working-memory buffer.
#[derive(Clone)]
pub struct PasswordHasher {
    argon: Argon2<'static>,
    permits: Arc<Semaphore>,
    /// Working memory of the hashes not running now: at most one buffer per permit.
    idle_memory: Arc<Mutex<Vec<Vec<Block>>>>,
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
        let mut memory = Vec::new();
        let decoy_hash = hash_into(&argon, &base64_of(&decoy), &mut memory)?;
        Ok(Self {
            argon,
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            idle_memory: Arc::new(Mutex::new(vec![memory])),
            decoy_hash: decoy_hash.into(),
        })
    }

    /// The PHC string of a new password.
    pub async fn hash(&self, password: &Password) -> anyhow::Result<String> {
        let argon = self.argon.clone();
        let password = password.clone();
        self.with_memory(move |memory| hash_into(&argon, password.expose(), memory))
            .await
    }

    /// Whether `password` matches `hash`; with no hash (unknown user, invited user) it
    /// verifies against the decoy and returns `false`, at the same cost.
    pub async fn verify(&self, password: &Password, hash: Option<&str>) -> anyhow::Result<bool> {
        let password = password.clone();
        let (stored, real) = match hash {
            Some(hash) => (hash.to_owned(), true),
            None => (self.decoy_hash.to_string(), false),
        };
        let configured_blocks = self.argon.params().block_count();
        let matches = self
            .with_memory(move |memory| {
                verify_into(password.expose(), &stored, memory, configured_blocks)
            })
            .await?;
        Ok(matches && real)
    }

    /// Runs `job` on the blocking pool under a permit, with the permit's working memory.
    async fn with_memory<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Vec<Block>) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let _permit = self.permits.acquire().await?;
        let mut memory = self.idle().pop().unwrap_or_default();
        let (result, memory) = tokio::task::spawn_blocking(move || {
            let result = job(&mut memory);
            (result, memory)
        })
        .await?;
        self.idle().push(memory);
        result
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Vec<Block>>> {
        // The buffers hold no invariant a panic could break: a poisoned lock is still usable.
        self.idle_memory
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// `memory` grown to `blocks` blocks (it keeps its size for the next hash).
fn blocks(memory: &mut Vec<Block>, blocks: usize) -> &mut [Block] {
    if memory.len() < blocks {
        memory.resize(blocks, Block::default());
    }
    &mut memory[..blocks]
}

/// The PHC string of `password` hashed with `argon` and a new random salt.
fn hash_into(
    argon: &Argon2<'static>,
    password: &str,
    memory: &mut Vec<Block>,
) -> anyhow::Result<String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt)?;
    let salt_string =
        SaltString::encode_b64(&salt).map_err(|error| anyhow::anyhow!("argon2 salt: {error}"))?;
    let params = argon.params();
    let mut output = [0u8; Params::DEFAULT_OUTPUT_LEN];
    argon
        .hash_password_into_with_memory(
            password.as_bytes(),
            &salt,
            &mut output,
            blocks(memory, params.block_count()),
        )
        .map_err(|error| anyhow::anyhow!("argon2 hash: {error}"))?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params)
            .map_err(|error| anyhow::anyhow!("argon2 parameters: {error}"))?,
        salt: Some(salt_string.as_salt()),
        hash: Some(
            Output::new(&output).map_err(|error| anyhow::anyhow!("argon2 output: {error}"))?,
        ),
    };
    Ok(phc.to_string())
}

/// Whether `password` hashes to the stored PHC string `stored`, with that string's own
/// parameters. A stored hash that needs more memory than the configured cost (made before
/// the cost was lowered) gets a buffer of its own, so the reused ones keep their size.
fn verify_into(
    password: &str,
    stored: &str,
    memory: &mut Vec<Block>,
    configured_blocks: usize,
) -> anyhow::Result<bool> {
    let parsed = PasswordHash::new(stored).map_err(unreadable)?;
    let algorithm = Algorithm::try_from(parsed.algorithm).map_err(unreadable)?;
    let version = parsed
        .version
        .map(Version::try_from)
        .transpose()
        .map_err(unreadable)?
        .unwrap_or_default();
    let params = Params::try_from(&parsed).map_err(unreadable)?;
    let (Some(expected), Some(salt)) = (parsed.hash, parsed.salt) else {
        anyhow::bail!("stored password hash unreadable: no salt or no hash");
    };
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut salt_bytes).map_err(unreadable)?;
    let needed = params.block_count();
    let argon = Argon2::new(algorithm, version, params);
    let mut output = vec![0u8; expected.len()];
    let mut own_memory = Vec::new();
    let memory = if needed > configured_blocks {
        blocks(&mut own_memory, needed)
    } else {
        blocks(memory, needed)
    };
    argon
        .hash_password_into_with_memory(password.as_bytes(), salt_bytes, &mut output, memory)
        .map_err(|error| anyhow::anyhow!("argon2 hash: {error}"))?;
    // `Output`'s equality is constant-time.
    Ok(Output::new(&output).map_err(unreadable)? == expected)
}

/// The error of a stored hash that cannot be read (never the hash itself).
fn unreadable(error: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("stored password hash unreadable: {error}")
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

    fn small_cost(memory_kib: u32) -> HashCost {
        HashCost {
            memory_kib,
            iterations: 1,
            parallelism: 1,
        }
    }

    /// Hashes stored before the working memory was reused (made by argon2's own
    /// `PasswordHasher`) still verify, and new ones verify with argon2's own verifier.
    #[tokio::test]
    async fn hashes_are_the_standard_phc_strings_both_ways() {
        use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
        let hasher = PasswordHasher::new(small_cost(1024), 2).unwrap();
        let password = Password::parse("password", "correct horse battery").unwrap();
        let upstream = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(2048, 1, 1, None).unwrap(),
        );
        let salt = SaltString::encode_b64(b"sixteen byte slt").unwrap();
        let stored = upstream
            .hash_password(password.expose().as_bytes(), &salt)
            .unwrap()
            .to_string();
        assert!(hasher.verify(&password, Some(&stored)).await.unwrap());
        assert!(
            !hasher
                .verify(&Password::presented("wrong horse battery"), Some(&stored))
                .await
                .unwrap()
        );

        let ours = hasher.hash(&password).await.unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(
            upstream
                .verify_password(password.expose().as_bytes(), &parsed)
                .is_ok()
        );
    }

    /// A stored hash that needs more memory than the configured cost verifies in a buffer
    /// of its own: the reused buffers keep the configured size, one per permit at most.
    #[tokio::test]
    async fn working_memory_is_one_configured_buffer_per_permit() {
        let hasher = PasswordHasher::new(small_cost(1024), 2).unwrap();
        let password = Password::parse("password", "correct horse battery").unwrap();
        let bigger = PasswordHasher::new(small_cost(4096), 1).unwrap();
        let stored = bigger.hash(&password).await.unwrap();
        let checks = (0..8).map(|_| hasher.verify(&password, Some(&stored)));
        for matched in futures::future::join_all(checks).await {
            assert!(matched.unwrap());
        }
        let idle = hasher.idle();
        assert!(idle.len() <= 2, "{} buffers for 2 permits", idle.len());
        assert!(
            idle.iter().all(|memory| memory.len() <= 1024),
            "buffers grew"
        );
    }
}
