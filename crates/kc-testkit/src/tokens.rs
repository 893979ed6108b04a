//! Test tokens: an issuer with its own Ed25519 key that mints access tokens of any kind, and
//! serves as the key source of a service under test, so tests of a service need not run
//! identity to authenticate their calls.

use ed25519_dalek::{SigningKey, VerifyingKey};
use futures::future::BoxFuture;
use kc_runtime::auth::{KeySource, TokenVerifier};
use kc_runtime::token::{self, CallerKind, Claims, Expectations};
use uuid::Uuid;

/// Issuer and audience of test tokens: the defaults of every service.
pub const ISSUER: &str = "keycontacts";
/// See [`ISSUER`].
pub const AUDIENCE: &str = "keycontacts";

/// Mints signed access tokens for tests.
#[derive(Clone, Debug)]
pub struct TestIssuer {
    kid: String,
    key: SigningKey,
}

impl Default for TestIssuer {
    fn default() -> Self {
        Self::new()
    }
}

impl TestIssuer {
    /// An issuer with a fresh random key.
    pub fn new() -> Self {
        let key = token::generate_signing_key();
        Self {
            kid: token::key_id(&key.verifying_key()),
            key,
        }
    }

    /// A token for `subject` of `kind`, valid for 15 minutes.
    pub fn mint(&self, subject: Uuid, kind: CallerKind, email: &str) -> String {
        let now = unix_now();
        self.mint_claims(&Claims {
            sub: subject.to_string(),
            kind,
            email: email.to_owned(),
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            iat: now,
            exp: now + 900,
            jti: Uuid::new_v4().to_string(),
            sid: String::new(),
            scope: String::new(),
        })
    }

    /// A token with exactly these claims (expired, foreign audience, …).
    pub fn mint_claims(&self, claims: &Claims) -> String {
        token::sign(claims, &self.kid, &self.key)
    }

    /// A verifier that trusts this issuer's key, for a service under test.
    pub fn verifier(&self) -> TokenVerifier {
        TokenVerifier::new(
            self.key_source(),
            Expectations {
                issuer: ISSUER.to_owned(),
                audience: AUDIENCE.to_owned(),
            },
        )
    }

    /// The key source serving this issuer's public key.
    pub fn key_source(&self) -> StaticKeys {
        StaticKeys(vec![(self.kid.clone(), self.key.verifying_key())])
    }
}

/// A fixed set of verification keys.
#[derive(Clone, Debug)]
pub struct StaticKeys(pub Vec<(String, VerifyingKey)>);

impl KeySource for StaticKeys {
    fn fetch_keys(&self) -> BoxFuture<'_, anyhow::Result<Vec<(String, VerifyingKey)>>> {
        let keys = self.0.clone();
        Box::pin(async move { Ok(keys) })
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs() as i64)
}
