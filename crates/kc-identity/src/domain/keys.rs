//! The signing keys: created at first start, rotated by operators, cached in memory, and
//! encrypted at rest under the key-encryption key (`--key-encryption-key-file`).
//!
//! Each row's private key is `SecretKey::encrypt(seed, associated = kid)` (so a ciphertext
//! copied to another row does not open) and records the id of the key-encryption key that
//! encrypted it. At start, under the lock that serialises key changes across replicas,
//! every row is brought under the current key-encryption key: raw seeds written before
//! encryption at rest and rows of the previous key-encryption key
//! (`--previous-key-encryption-key-file`, during its rotation) are re-encrypted; a row that
//! opens with neither fails the start.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::bail;
use ed25519_dalek::{SigningKey, VerifyingKey};
use futures::future::BoxFuture;
use kc_runtime::auth::KeySource;
use kc_runtime::secrets::SecretKey;
use kc_runtime::token;
use sqlx::{PgConnection, PgPool};

use super::PublicKey;
use crate::storage;
use crate::storage::keys::StoredKey;

/// How long a replica keeps signing with the key it last read before reading again, so
/// that a rotation on one replica reaches the others within this time.
const ACTIVE_KEY_CACHE: Duration = Duration::from_secs(10);

/// The key that signs tokens now.
#[derive(Debug, Clone)]
pub struct ActiveKey {
    /// Key id, in the JWT header.
    pub kid: String,
    /// The private key.
    pub key: SigningKey,
}

/// The keys that protect signing keys at rest.
#[derive(Clone, Debug)]
pub struct KeyEncryption {
    current: SecretKey,
    previous: Option<SecretKey>,
}

/// A stored private key, opened.
struct Opened {
    key: SigningKey,
    /// Whether the row is not (yet) under the current key-encryption key.
    stale: Option<Staleness>,
}

/// Why a row must be re-encrypted.
#[derive(Clone, Copy)]
enum Staleness {
    /// A raw seed from before encryption at rest.
    Raw,
    /// Encrypted with the previous key-encryption key.
    PreviousKey,
}

impl KeyEncryption {
    /// `current` encrypts; `previous` (during a rotation of the key-encryption key) still
    /// opens what it encrypted, until the start re-encrypts it.
    pub fn new(current: SecretKey, previous: Option<SecretKey>) -> Self {
        Self { current, previous }
    }

    /// The private key of `key`, encrypted under the current key and bound to `kid`.
    fn seal(&self, kid: &str, key: &SigningKey) -> anyhow::Result<Vec<u8>> {
        self.current.encrypt(key.as_bytes(), kid.as_bytes())
    }

    /// Opens a stored private key and checks it against the stored public key. The errors
    /// name the setting to fix, never a key.
    fn open(&self, stored: &StoredKey) -> anyhow::Result<Opened> {
        let kid = &stored.kid;
        let (seed, stale) = match stored.encryption_key_id.as_deref() {
            None => (
                seed_of(&stored.private_key)
                    .ok_or_else(|| anyhow::anyhow!("signing key {kid} is corrupt"))?,
                Some(Staleness::Raw),
            ),
            Some(id) => {
                let (secret, stale, setting) = if id == self.current.id() {
                    (&self.current, None, "--key-encryption-key-file")
                } else if let Some(previous) = self.previous.as_ref().filter(|p| p.id() == id) {
                    (
                        previous,
                        Some(Staleness::PreviousKey),
                        "--previous-key-encryption-key-file",
                    )
                } else {
                    bail!(
                        "--key-encryption-key-file: signing key {kid} was encrypted with \
                         key-encryption key {id}, not with this one (key {current}) nor with \
                         --previous-key-encryption-key-file ({previous}); start with the key \
                         that encrypted it (as current, or as previous during a rotation)",
                        current = self.current.id(),
                        previous = self
                            .previous
                            .as_ref()
                            .map_or_else(|| "not given".to_owned(), |p| format!("key {}", p.id())),
                    );
                };
                let opened = secret
                    .decrypt(&stored.private_key, kid.as_bytes())
                    .map_err(|_| {
                        anyhow::anyhow!(
                            "{setting}: signing key {kid} does not open with key-encryption \
                             key {id} although it names it: the stored key is corrupt"
                        )
                    })?;
                (
                    seed_of(&opened)
                        .ok_or_else(|| anyhow::anyhow!("signing key {kid} is corrupt"))?,
                    stale,
                )
            }
        };
        let key = SigningKey::from_bytes(&seed);
        if key.verifying_key().as_bytes().as_slice() != stored.public_key.as_slice() {
            bail!("signing key {kid} is corrupt: its private key does not match its public key");
        }
        Ok(Opened { key, stale })
    }
}

/// The 32-byte seed in `bytes`, if it has that length.
fn seed_of(bytes: &[u8]) -> Option<[u8; 32]> {
    bytes.try_into().ok()
}

/// Signing keys of this identity deployment, stored in its schema.
#[derive(Clone, Debug)]
pub struct KeyRing {
    pool: PgPool,
    verify_window: Duration,
    encryption: KeyEncryption,
    active: Arc<RwLock<Option<(Instant, ActiveKey)>>>,
}

impl KeyRing {
    /// A key ring whose retired keys keep verifying for `access_token_ttl` (plus the cache
    /// time and clock leeway), so no token it signed stops verifying before it expires.
    /// Private keys are encrypted at rest with `encryption`.
    pub fn new(pool: PgPool, access_token_ttl: Duration, encryption: KeyEncryption) -> Self {
        Self {
            pool,
            verify_window: access_token_ttl + ACTIVE_KEY_CACHE + Duration::from_secs(60),
            encryption,
            active: Arc::new(RwLock::new(None)),
        }
    }

    /// Brings every stored key under the current key-encryption key and creates the first
    /// key if there is none (once across replicas). Fails when a stored key opens with
    /// neither the current nor the previous key-encryption key.
    pub async fn ensure_key(&self) -> anyhow::Result<()> {
        let mut tx = self.pool.begin().await?;
        storage::keys::lock(&mut tx).await?;
        self.reencrypt_locked(&mut tx).await?;
        if storage::keys::active(&mut tx).await?.is_none() {
            let (kid, _, _) = self.store_new_key(&mut tx).await?;
            tracing::info!(kid = %kid, "created the first signing key");
        }
        tx.commit().await?;
        Ok(())
    }

    /// Makes a new key, sealed under the current key-encryption key, the signing key (the
    /// previous one is retired). The caller holds the signing-key lock.
    async fn store_new_key(
        &self,
        conn: &mut PgConnection,
    ) -> anyhow::Result<(String, SigningKey, storage::keys::StoredKey)> {
        let (kid, key) = new_key();
        let stored = storage::keys::rotate(
            conn,
            &kid,
            &self.encryption.seal(&kid, &key)?,
            &self.encryption.current.id(),
            key.verifying_key().as_bytes(),
        )
        .await?;
        Ok((kid, key, stored))
    }

    /// Re-encrypts, under the current key-encryption key, every stored key that is a raw
    /// seed or under the previous key. The caller holds the signing-key lock.
    async fn reencrypt_locked(&self, conn: &mut PgConnection) -> anyhow::Result<()> {
        let current_id = self.encryption.current.id();
        let (mut raw, mut previous) = (0usize, 0usize);
        for stored in storage::keys::all(conn).await? {
            let opened = self.encryption.open(&stored)?;
            let Some(staleness) = opened.stale else {
                continue;
            };
            let sealed = self.encryption.seal(&stored.kid, &opened.key)?;
            storage::keys::set_private_key(conn, &stored.kid, &sealed, &current_id).await?;
            match staleness {
                Staleness::Raw => raw += 1,
                Staleness::PreviousKey => previous += 1,
            }
        }
        if raw + previous > 0 {
            tracing::info!(
                raw,
                previous,
                key_encryption_key = %current_id,
                "encrypted stored signing keys with the current key-encryption key"
            );
        }
        Ok(())
    }

    /// Re-encrypts stale rows found while serving (written by a replica that still runs
    /// with the previous key-encryption key); a failure only logs: signing goes on.
    async fn reencrypt(&self) {
        let result = async {
            let mut tx = self.pool.begin().await?;
            storage::keys::lock(&mut tx).await?;
            self.reencrypt_locked(&mut tx).await?;
            tx.commit().await?;
            anyhow::Ok(())
        }
        .await;
        if let Err(error) = result {
            tracing::warn!(error = %format!("{error:#}"), "could not re-encrypt signing keys");
        }
    }

    /// The key to sign with now.
    pub async fn signing_key(&self) -> anyhow::Result<ActiveKey> {
        let cached = self
            .active
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|(read_at, key)| (*read_at, key.clone()));
        if let Some((read_at, key)) = &cached
            && read_at.elapsed() < ACTIVE_KEY_CACHE
        {
            return Ok(key.clone());
        }
        let mut conn = self.pool.acquire().await?;
        let stored = storage::keys::active(&mut conn)
            .await?
            .ok_or_else(|| anyhow::anyhow!("no active signing key"))?;
        drop(conn);
        // The same key as before needs no decryption: this also keeps a replica signing
        // while another one, restarted with a new key-encryption key, re-encrypts it.
        let key = match cached {
            Some((_, key)) if key.kid == stored.kid => key,
            _ => {
                let opened = self.encryption.open(&stored)?;
                if opened.stale.is_some() {
                    self.reencrypt().await;
                }
                ActiveKey {
                    kid: stored.kid.clone(),
                    key: opened.key,
                }
            }
        };
        *self.active.write().unwrap_or_else(|e| e.into_inner()) =
            Some((Instant::now(), key.clone()));
        Ok(key)
    }

    /// Makes a new key the signing key; the previous one keeps verifying.
    pub async fn rotate(&self) -> anyhow::Result<PublicKey> {
        let mut tx = self.pool.begin().await?;
        storage::keys::lock(&mut tx).await?;
        let (kid, key, stored) = self.store_new_key(&mut tx).await?;
        tx.commit().await?;
        *self.active.write().unwrap_or_else(|e| e.into_inner()) = Some((
            Instant::now(),
            ActiveKey {
                kid: kid.clone(),
                key: key.clone(),
            },
        ));
        tracing::info!(kid = %kid, "rotated the signing key");
        Ok(PublicKey {
            kid,
            public_key: key.verifying_key(),
            create_time: stored.create_time,
        })
    }

    /// Every key that may still verify an unexpired token, newest first (read from the
    /// public keys: no private key is opened).
    pub async fn verifying_keys(&self) -> anyhow::Result<Vec<PublicKey>> {
        let mut conn = self.pool.acquire().await?;
        storage::keys::verifying(&mut conn, self.verify_window.as_secs_f64())
            .await?
            .iter()
            .map(|stored| {
                let bytes: [u8; 32] = stored
                    .public_key
                    .as_slice()
                    .try_into()
                    .map_err(|_| anyhow::anyhow!("signing key {} is corrupt", stored.kid))?;
                Ok(PublicKey {
                    kid: stored.kid.clone(),
                    public_key: VerifyingKey::from_bytes(&bytes).map_err(|_| {
                        anyhow::anyhow!("signing key {} has an invalid public key", stored.kid)
                    })?,
                    create_time: stored.create_time,
                })
            })
            .collect()
    }
}

impl KeySource for KeyRing {
    fn fetch_keys(&self) -> BoxFuture<'_, anyhow::Result<Vec<(String, VerifyingKey)>>> {
        Box::pin(async move {
            Ok(self
                .verifying_keys()
                .await?
                .into_iter()
                .map(|key| (key.kid, key.public_key))
                .collect())
        })
    }
}

fn new_key() -> (String, SigningKey) {
    let key = token::generate_signing_key();
    (token::key_id(&key.verifying_key()), key)
}
