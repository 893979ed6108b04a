//! The signing keys: created at first start, rotated by operators, cached in memory.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use ed25519_dalek::{SigningKey, VerifyingKey};
use futures::future::BoxFuture;
use kc_runtime::auth::KeySource;
use kc_runtime::token;
use sqlx::PgPool;

use crate::storage;

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

/// A public key that verifies tokens.
#[derive(Debug, Clone)]
pub struct PublicKey {
    /// Key id.
    pub kid: String,
    /// Raw 32-byte public key.
    pub public_key: VerifyingKey,
    /// Creation time.
    pub create_time: DateTime<Utc>,
}

/// Signing keys of this identity deployment, stored in its schema.
#[derive(Clone, Debug)]
pub struct KeyRing {
    pool: PgPool,
    verify_window: Duration,
    active: Arc<RwLock<Option<(Instant, ActiveKey)>>>,
}

impl KeyRing {
    /// A key ring whose retired keys keep verifying for `access_token_ttl` (plus the cache
    /// time and clock leeway), so no token it signed stops verifying before it expires.
    pub fn new(pool: PgPool, access_token_ttl: Duration) -> Self {
        Self {
            pool,
            verify_window: access_token_ttl + ACTIVE_KEY_CACHE + Duration::from_secs(60),
            active: Arc::new(RwLock::new(None)),
        }
    }

    /// Creates the first key if there is none (once across replicas).
    pub async fn ensure_key(&self) -> anyhow::Result<()> {
        let mut tx = self.pool.begin().await?;
        storage::keys::lock(&mut tx).await?;
        if storage::keys::active(&mut tx).await?.is_none() {
            let (kid, key) = new_key();
            storage::keys::rotate(
                &mut tx,
                &kid,
                key.as_bytes(),
                key.verifying_key().as_bytes(),
            )
            .await?;
            tracing::info!(kid = %kid, "created the first signing key");
        }
        tx.commit().await?;
        Ok(())
    }

    /// The key to sign with now.
    pub async fn signing_key(&self) -> anyhow::Result<ActiveKey> {
        if let Some((read_at, key)) = self
            .active
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            && read_at.elapsed() < ACTIVE_KEY_CACHE
        {
            return Ok(key.clone());
        }
        let mut conn = self.pool.acquire().await?;
        let stored = storage::keys::active(&mut conn)
            .await?
            .ok_or_else(|| anyhow::anyhow!("no active signing key"))?;
        let key = active_key(&stored)?;
        *self.active.write().unwrap_or_else(|e| e.into_inner()) =
            Some((Instant::now(), key.clone()));
        Ok(key)
    }

    /// Makes a new key the signing key; the previous one keeps verifying.
    pub async fn rotate(&self) -> anyhow::Result<PublicKey> {
        let mut tx = self.pool.begin().await?;
        storage::keys::lock(&mut tx).await?;
        let (kid, key) = new_key();
        let stored = storage::keys::rotate(
            &mut tx,
            &kid,
            key.as_bytes(),
            key.verifying_key().as_bytes(),
        )
        .await?;
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

    /// Every key that may still verify an unexpired token, newest first.
    pub async fn verifying_keys(&self) -> anyhow::Result<Vec<PublicKey>> {
        let mut conn = self.pool.acquire().await?;
        storage::keys::verifying(&mut conn, self.verify_window.as_secs_f64())
            .await?
            .iter()
            .map(|stored| {
                Ok(PublicKey {
                    kid: stored.kid.clone(),
                    public_key: active_key(stored)?.key.verifying_key(),
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

fn active_key(stored: &storage::keys::StoredKey) -> anyhow::Result<ActiveKey> {
    let seed: [u8; 32] = stored
        .private_key
        .as_slice()
        .try_into()
        .map_err(|_| anyhow::anyhow!("signing key {} is corrupt", stored.kid))?;
    Ok(ActiveKey {
        kid: stored.kid.clone(),
        key: SigningKey::from_bytes(&seed),
    })
}
