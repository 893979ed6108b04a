//! Secrets at rest and in flight, written once for every service:
//!
//! - [`SecretKey`]: 32 random bytes kept in a file (base64), such as identity's
//!   key-encryption key (`--key-encryption-key-file`). It encrypts small values at rest
//!   ([`SecretKey::encrypt`], ChaCha20-Poly1305 with a random nonce and associated data that
//!   binds the ciphertext to its row) and derives purpose-bound subkeys ([`SecretKey::derive`],
//!   HKDF-SHA256), e.g. the key of the HMAC that stands for a verification code in identity.
//! - [`SealingKey`] / [`OpeningKey`]: an X25519 key pair for sealed boxes. Identity seals each
//!   mailed code to notification's public sealing key; only notification, which holds the
//!   opening key, can read it ([`SealingKey::seal`], [`OpeningKey::open`]). A sealed box is
//!   `version ‖ ephemeral public key ‖ ChaCha20-Poly1305(HKDF(shared secret), message)`.
//!
//! Key files hold the 32 bytes in standard or URL-safe base64, with or without padding, and
//! surrounding whitespace; [`generate_key`] writes such a text.

use std::path::Path;

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

/// Length of every key in this module.
pub const KEY_LEN: usize = 32;
/// Version byte of the ciphertexts of [`SecretKey::encrypt`].
const ENCRYPTED_V1: u8 = 1;
/// Version byte of sealed boxes.
const SEALED_V1: u8 = 1;
/// Nonce length of ChaCha20-Poly1305.
const NONCE_LEN: usize = 12;
/// HKDF `info` of a sealed box's key.
const SEALED_BOX_INFO: &[u8] = b"keycontacts sealed box v1";

/// The Crockford base32 alphabet of long one-time codes (no I, L, O, U).
pub const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A random one-time code of `len` Crockford base32 characters (5 bits each), as the codes
/// mailed to prove an address are; every character is equally likely.
pub fn crockford_code(len: usize) -> anyhow::Result<Zeroizing<String>> {
    let mut bytes = Zeroizing::new(vec![0u8; len]);
    getrandom::fill(bytes.as_mut_slice()).map_err(|error| anyhow::anyhow!("getrandom: {error}"))?;
    // 256 is a multiple of 32: every character is equally likely.
    Ok(Zeroizing::new(
        bytes
            .iter()
            .map(|byte| char::from(CROCKFORD[usize::from(byte % 32)]))
            .collect(),
    ))
}

/// A code as a person typed it, in canonical form: spaces and hyphens dropped, upper case,
/// and the Crockford look-alikes (`O` for 0, `I` and `L` for 1) read as digits.
pub fn normalize_code(presented: &str) -> String {
    presented
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| match c.to_ascii_uppercase() {
            'O' => '0',
            'I' | 'L' => '1',
            other => other,
        })
        .collect()
}

/// 32 random bytes, base64 encoded: the content of a new key file.
pub fn generate_key() -> anyhow::Result<String> {
    Ok(STANDARD.encode(random_bytes()?.as_slice()))
}

/// Decodes a key from the text of a key file.
pub fn decode_key(text: &str) -> anyhow::Result<Zeroizing<[u8; KEY_LEN]>> {
    let text = text.trim();
    let bytes = [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(text).ok())
        .map(Zeroizing::new)
        .context("the key is not base64")?;
    if bytes.len() != KEY_LEN {
        bail!("the key has {} bytes, not {KEY_LEN}", bytes.len());
    }
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    key.copy_from_slice(&bytes);
    Ok(key)
}

/// Reads a key file; the error names `setting` and the path, never the content.
pub fn read_key_file(setting: &str, path: &Path) -> anyhow::Result<Zeroizing<[u8; KEY_LEN]>> {
    let text = Zeroizing::new(
        std::fs::read_to_string(path)
            .with_context(|| format!("{setting}: cannot read {}", path.display()))?,
    );
    decode_key(&text).with_context(|| format!("{setting}: {} holds no valid key", path.display()))
}

fn random_bytes() -> anyhow::Result<Zeroizing<[u8; KEY_LEN]>> {
    let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
    getrandom::fill(bytes.as_mut_slice()).map_err(|error| anyhow::anyhow!("getrandom: {error}"))?;
    Ok(bytes)
}

/// A symmetric secret key: encrypts values at rest and derives subkeys.
#[derive(Clone)]
pub struct SecretKey {
    bytes: Zeroizing<[u8; KEY_LEN]>,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretKey")
            .field("id", &self.id())
            .finish_non_exhaustive()
    }
}

impl SecretKey {
    /// The key of these bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self {
            bytes: Zeroizing::new(bytes),
        }
    }

    /// The key in the file at `path` (see [`read_key_file`]).
    pub fn from_file(setting: &str, path: &Path) -> anyhow::Result<Self> {
        Ok(Self {
            bytes: read_key_file(setting, path)?,
        })
    }

    /// A public name of the key (16 hex digits of a hash of it), to record which key
    /// encrypted a value, so that a rotation knows what to re-encrypt.
    pub fn id(&self) -> String {
        let digest = Sha256::new()
            .chain_update(b"keycontacts key id")
            .chain_update(self.bytes.as_slice())
            .finalize();
        digest[..8]
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }

    /// A subkey for one purpose (HKDF-SHA256 with `label` as info).
    pub fn derive(&self, label: &str) -> Zeroizing<[u8; KEY_LEN]> {
        let hkdf = Hkdf::<Sha256>::new(None, self.bytes.as_slice());
        let mut out = Zeroizing::new([0u8; KEY_LEN]);
        hkdf.expand(label.as_bytes(), out.as_mut_slice())
            .expect("32 bytes is a valid HKDF-SHA256 length");
        out
    }

    /// HMAC-SHA256 of `parts` (concatenated) under the subkey for `label`.
    pub fn mac(&self, label: &str, parts: &[&[u8]]) -> Vec<u8> {
        let subkey = self.derive(label);
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(subkey.as_slice())
            .expect("HMAC takes any key length");
        for part in parts {
            mac.update(part);
        }
        mac.finalize().into_bytes().to_vec()
    }

    /// Encrypts `plaintext`, bound to `associated` (e.g. the row's id): the result opens only
    /// with this key and the same `associated`.
    pub fn encrypt(&self, plaintext: &[u8], associated: &[u8]) -> anyhow::Result<Vec<u8>> {
        let cipher = ChaCha20Poly1305::new(Key::from_slice(self.bytes.as_slice()));
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|error| anyhow::anyhow!("getrandom: {error}"))?;
        let ciphertext = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: associated,
                },
            )
            .map_err(|_| anyhow::anyhow!("encryption failed"))?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
        out.push(ENCRYPTED_V1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        Ok(out)
    }

    /// Opens what [`Self::encrypt`] produced with this key and `associated`.
    pub fn decrypt(&self, sealed: &[u8], associated: &[u8]) -> anyhow::Result<Zeroizing<Vec<u8>>> {
        let Some((&ENCRYPTED_V1, rest)) = sealed.split_first() else {
            bail!("unknown ciphertext version");
        };
        if rest.len() < NONCE_LEN {
            bail!("ciphertext too short");
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let cipher = ChaCha20Poly1305::new(Key::from_slice(self.bytes.as_slice()));
        cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: associated,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| anyhow::anyhow!("the ciphertext does not open with this key"))
    }
}

/// The public half of an X25519 key pair: seals messages only the [`OpeningKey`] opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SealingKey(PublicKey);

impl SealingKey {
    /// The sealing key in the file at `path` (32 bytes, base64).
    pub fn from_file(setting: &str, path: &Path) -> anyhow::Result<Self> {
        Ok(Self(PublicKey::from(*read_key_file(setting, path)?)))
    }

    /// The sealing key of the base64 text.
    pub fn from_text(text: &str) -> anyhow::Result<Self> {
        Ok(Self(PublicKey::from(*decode_key(text)?)))
    }

    /// The key as base64 text (a sealing key is public).
    pub fn to_text(&self) -> String {
        STANDARD.encode(self.0.as_bytes())
    }

    /// Seals `message` to the holder of the opening key. Each box has its own ephemeral key,
    /// so sealing the same message twice gives unrelated boxes.
    pub fn seal(&self, message: &[u8]) -> anyhow::Result<Vec<u8>> {
        let ephemeral = StaticSecret::from(*random_bytes()?);
        let ephemeral_public = PublicKey::from(&ephemeral);
        let shared = ephemeral.diffie_hellman(&self.0);
        if !shared.was_contributory() {
            bail!("the sealing key is not a valid X25519 public key");
        }
        let cipher = box_cipher(shared.as_bytes(), &ephemeral_public, &self.0);
        let ciphertext = cipher
            .encrypt(&Nonce::default(), message)
            .map_err(|_| anyhow::anyhow!("sealing failed"))?;
        let mut out = Vec::with_capacity(1 + KEY_LEN + ciphertext.len());
        out.push(SEALED_V1);
        out.extend_from_slice(ephemeral_public.as_bytes());
        out.extend_from_slice(&ciphertext);
        Ok(out)
    }
}

/// The secret half of an X25519 key pair: opens what its [`SealingKey`] sealed.
#[derive(Clone)]
pub struct OpeningKey(StaticSecret);

impl std::fmt::Debug for OpeningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpeningKey")
            .field("sealing_key", &self.sealing_key().to_text())
            .finish_non_exhaustive()
    }
}

impl OpeningKey {
    /// A new random opening key.
    pub fn generate() -> anyhow::Result<Self> {
        Ok(Self(StaticSecret::from(*random_bytes()?)))
    }

    /// The opening key in the file at `path` (32 bytes, base64).
    pub fn from_file(setting: &str, path: &Path) -> anyhow::Result<Self> {
        Ok(Self(StaticSecret::from(*read_key_file(setting, path)?)))
    }

    /// The opening key of the base64 text.
    pub fn from_text(text: &str) -> anyhow::Result<Self> {
        Ok(Self(StaticSecret::from(*decode_key(text)?)))
    }

    /// The key as base64 text (secret: for key files only).
    pub fn to_text(&self) -> Zeroizing<String> {
        Zeroizing::new(STANDARD.encode(self.0.as_bytes()))
    }

    /// The matching sealing key.
    pub fn sealing_key(&self) -> SealingKey {
        SealingKey(PublicKey::from(&self.0))
    }

    /// Opens a sealed box; fails when it was sealed to another key or altered.
    pub fn open(&self, sealed: &[u8]) -> anyhow::Result<Zeroizing<Vec<u8>>> {
        let Some((&SEALED_V1, rest)) = sealed.split_first() else {
            bail!("unknown sealed box version");
        };
        if rest.len() < KEY_LEN {
            bail!("sealed box too short");
        }
        let (ephemeral, ciphertext) = rest.split_at(KEY_LEN);
        let mut ephemeral_bytes = [0u8; KEY_LEN];
        ephemeral_bytes.copy_from_slice(ephemeral);
        let ephemeral_public = PublicKey::from(ephemeral_bytes);
        let shared = self.0.diffie_hellman(&ephemeral_public);
        if !shared.was_contributory() {
            bail!("the sealed box has an invalid ephemeral key");
        }
        let own_public = PublicKey::from(&self.0);
        box_cipher(shared.as_bytes(), &ephemeral_public, &own_public)
            .decrypt(&Nonce::default(), ciphertext)
            .map(Zeroizing::new)
            .map_err(|_| anyhow::anyhow!("the sealed box does not open with this key"))
    }
}

/// The one-use cipher of a sealed box: its key comes from a fresh ephemeral key, so the
/// all-zero nonce is never reused under one key.
fn box_cipher(shared: &[u8], ephemeral: &PublicKey, recipient: &PublicKey) -> ChaCha20Poly1305 {
    let mut salt = [0u8; 2 * KEY_LEN];
    salt[..KEY_LEN].copy_from_slice(ephemeral.as_bytes());
    salt[KEY_LEN..].copy_from_slice(recipient.as_bytes());
    let hkdf = Hkdf::<Sha256>::new(Some(&salt), shared);
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    hkdf.expand(SEALED_BOX_INFO, key.as_mut_slice())
        .expect("32 bytes is a valid HKDF-SHA256 length");
    ChaCha20Poly1305::new(Key::from_slice(key.as_slice()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_box_opens_only_with_its_opening_key() {
        let opening = OpeningKey::generate().unwrap();
        let other = OpeningKey::generate().unwrap();
        let sealed = opening.sealing_key().seal(b"123456").unwrap();
        assert!(!sealed.windows(6).any(|window| window == b"123456"));
        assert_eq!(opening.open(&sealed).unwrap().as_slice(), b"123456");
        assert!(other.open(&sealed).is_err());
        let mut altered = sealed.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert!(opening.open(&altered).is_err());
        assert_ne!(sealed, opening.sealing_key().seal(b"123456").unwrap());
    }

    #[test]
    fn keys_round_trip_through_their_text() {
        let opening = OpeningKey::generate().unwrap();
        let again = OpeningKey::from_text(&opening.to_text()).unwrap();
        assert_eq!(again.sealing_key(), opening.sealing_key());
        let sealing = SealingKey::from_text(&opening.sealing_key().to_text()).unwrap();
        assert_eq!(sealing, opening.sealing_key());
        assert!(decode_key("c2hvcnQ=").is_err());
        assert!(decode_key("not base64 at all!").is_err());
    }

    #[test]
    fn encryption_at_rest_binds_key_and_row() {
        let key = SecretKey::from_bytes(*decode_key(&generate_key().unwrap()).unwrap());
        let other = SecretKey::from_bytes(*decode_key(&generate_key().unwrap()).unwrap());
        let sealed = key.encrypt(b"seed", b"kid-1").unwrap();
        assert_eq!(key.decrypt(&sealed, b"kid-1").unwrap().as_slice(), b"seed");
        assert!(key.decrypt(&sealed, b"kid-2").is_err());
        assert!(other.decrypt(&sealed, b"kid-1").is_err());
        assert_ne!(key.id(), other.id());
        assert_eq!(key.id().len(), 16);
    }

    #[test]
    fn crockford_codes_have_their_alphabet_and_canonical_form() {
        let code = crockford_code(20).unwrap();
        assert_eq!(code.len(), 20);
        assert!(code.bytes().all(|b| CROCKFORD.contains(&b)));
        assert_eq!(normalize_code(&code), *code);
        assert_eq!(normalize_code(" ab-cd io l "), "ABCD101");
        assert_ne!(*crockford_code(20).unwrap(), *code);
    }

    #[test]
    fn subkeys_and_macs_depend_on_key_and_label() {
        let key = SecretKey::from_bytes([7; KEY_LEN]);
        assert_ne!(*key.derive("a"), *key.derive("b"));
        assert_eq!(key.mac("codes", &[b"x", b"y"]), key.mac("codes", &[b"xy"]));
        assert_ne!(key.mac("codes", &[b"x"]), key.mac("other", &[b"x"]));
    }
}
