//! Access tokens: compact EdDSA (Ed25519) JWTs with a `kid` header, signed by identity and
//! verified locally by every service.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

/// The only algorithm accepted in a token header.
pub const ALGORITHM: &str = "EdDSA";
/// Longest token accepted, in bytes; anything longer is refused before parsing.
const MAX_TOKEN_LEN: usize = 8 * 1024;
/// Clock skew tolerated between issuer and verifier, in seconds.
const LEEWAY_SECS: i64 = 30;

/// The scopes a service account may hold, carried by its tokens in the `scope` claim. A
/// scope admits a service account to a public service of the gateway; people never hold
/// scopes (their rights come from roles and grants).
pub mod scope {
    /// The gateway's `AuthorizationService` (Check, lookups, the permission feed).
    pub const AUTHZ: &str = "authz";
    /// The gateway's `SendNotice`.
    pub const NOTICES: &str = "notices";
    /// Every known scope.
    pub const ALL: [&str; 2] = [AUTHZ, NOTICES];
}

/// Who a token was issued to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallerKind {
    /// A person of a customer.
    Customer,
    /// A person operating the suite.
    Operator,
    /// A service account.
    Service,
}

impl CallerKind {
    /// The lowercase name used in the `kind` claim.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Customer => "customer",
            Self::Operator => "operator",
            Self::Service => "service",
        }
    }
}

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Subject: user id or service-account client id (UUID).
    pub sub: String,
    /// Kind of caller.
    pub kind: CallerKind,
    /// Login e-mail (empty for service accounts).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub email: String,
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// Issued at, seconds since the epoch.
    pub iat: i64,
    /// Expires at, seconds since the epoch.
    pub exp: i64,
    /// Unique token id.
    pub jti: String,
    /// The session (refresh-token family) the token was issued in; empty for service
    /// tokens. Logout revokes every token of its session (rule I4).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sid: String,
    /// The scopes of a service account, space-separated as in OAuth 2.0 and RFC 9068
    /// (e.g. `"authz notices"`); empty for people and for accounts without scopes.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub scope: String,
}

impl Claims {
    /// The scopes of the `scope` claim, one by one.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope.split_ascii_whitespace()
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
    kid: String,
}

/// Why a token was refused. The text is safe to show to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a well-formed compact JWT of ours.
    #[error("malformed access token")]
    Malformed,
    /// The header names an algorithm other than EdDSA.
    #[error("access token algorithm not accepted")]
    Algorithm,
    /// No known key has this `kid`.
    #[error("access token signed by an unknown key")]
    UnknownKey,
    /// The signature does not verify.
    #[error("access token signature is invalid")]
    Signature,
    /// Past `exp`.
    #[error("access token expired")]
    Expired,
    /// Wrong `iss` or `aud`, or issued in the future.
    #[error("access token not issued for this audience")]
    Audience,
}

/// Signs `claims` with `key`, naming it `kid` in the header.
pub fn sign(claims: &Claims, kid: &str, key: &SigningKey) -> String {
    let header = Header {
        alg: ALGORITHM.to_owned(),
        typ: Some("JWT".to_owned()),
        kid: kid.to_owned(),
    };
    let header = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).expect("header serializes"));
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("claims serialize"));
    let signing_input = format!("{header}.{payload}");
    let signature = key.sign(signing_input.as_bytes());
    format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature.to_bytes())
    )
}

/// A token split into its parts, before its signature is checked.
#[derive(Debug)]
pub struct UnverifiedToken<'a> {
    /// The `kid` of the header.
    pub kid: String,
    signing_input: &'a str,
    payload: &'a str,
    signature: Signature,
}

/// Parses the structure and header of a compact JWT (no signature check yet).
pub fn parse(token: &str) -> Result<UnverifiedToken<'_>, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Malformed);
    }
    let (signing_input, signature) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
    let (header, payload) = signing_input.split_once('.').ok_or(TokenError::Malformed)?;
    let header: Header = decode_json(header)?;
    if header.alg != ALGORITHM {
        return Err(TokenError::Algorithm);
    }
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| TokenError::Malformed)?;
    let signature = Signature::from_slice(&signature).map_err(|_| TokenError::Malformed)?;
    Ok(UnverifiedToken {
        kid: header.kid,
        signing_input,
        payload,
        signature,
    })
}

/// What a verifier expects of every token.
#[derive(Debug, Clone)]
pub struct Expectations {
    /// Required `iss`.
    pub issuer: String,
    /// Required `aud`.
    pub audience: String,
}

impl UnverifiedToken<'_> {
    /// Checks the signature with `key`, then the issuer, audience and time claims.
    pub fn verify(
        &self,
        key: &VerifyingKey,
        expect: &Expectations,
        now_unix: i64,
    ) -> Result<Claims, TokenError> {
        key.verify_strict(self.signing_input.as_bytes(), &self.signature)
            .map_err(|_| TokenError::Signature)?;
        let claims: Claims = decode_json(self.payload)?;
        if claims.iss != expect.issuer || claims.aud != expect.audience {
            return Err(TokenError::Audience);
        }
        if claims.iat > now_unix + LEEWAY_SECS {
            return Err(TokenError::Audience);
        }
        if claims.exp + LEEWAY_SECS <= now_unix {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

fn decode_json<T: serde::de::DeserializeOwned>(part: &str) -> Result<T, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)
}

/// A new random Ed25519 key from the operating system's generator.
pub fn generate_signing_key() -> SigningKey {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).expect("the operating system random generator is available");
    SigningKey::from_bytes(&seed)
}

/// Key id of a public key: its first 12 bytes, base64url (stable, and unique among the
/// few keys a deployment ever has).
pub fn key_id(key: &VerifyingKey) -> String {
    URL_SAFE_NO_PAD.encode(&key.as_bytes()[..12])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(now: i64) -> Claims {
        Claims {
            sub: "5f1e6c1e-0000-4000-8000-000000000001".into(),
            kind: CallerKind::Customer,
            email: "ada@example.com".into(),
            iss: "keycontacts".into(),
            aud: "keycontacts".into(),
            iat: now,
            exp: now + 900,
            jti: "j1".into(),
            sid: String::new(),
            scope: String::new(),
        }
    }

    fn expect() -> Expectations {
        Expectations {
            issuer: "keycontacts".into(),
            audience: "keycontacts".into(),
        }
    }

    #[test]
    fn round_trip_and_tamper() {
        let key = generate_signing_key();
        let kid = key_id(&key.verifying_key());
        let token = sign(&claims(1_000), &kid, &key);
        let parsed = parse(&token).unwrap();
        assert_eq!(parsed.kid, kid);
        assert_eq!(
            parsed
                .verify(&key.verifying_key(), &expect(), 1_010)
                .unwrap(),
            claims(1_000)
        );
        // Expired.
        assert_eq!(
            parsed.verify(&key.verifying_key(), &expect(), 3_000),
            Err(TokenError::Expired)
        );
        // Another key.
        let other = generate_signing_key();
        assert_eq!(
            parsed.verify(&other.verifying_key(), &expect(), 1_010),
            Err(TokenError::Signature)
        );
        // Tampered payload: switch the kind to operator.
        let mut forged = claims(1_000);
        forged.kind = CallerKind::Operator;
        let parts: Vec<&str> = token.split('.').collect();
        let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
        let forged_token = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
        assert_eq!(
            parse(&forged_token)
                .unwrap()
                .verify(&key.verifying_key(), &expect(), 1_010),
            Err(TokenError::Signature)
        );
        // Wrong audience.
        let wrong = Expectations {
            issuer: "keycontacts".into(),
            audience: "elsewhere".into(),
        };
        assert_eq!(
            parsed.verify(&key.verifying_key(), &wrong, 1_010),
            Err(TokenError::Audience)
        );
    }

    #[test]
    fn refuses_other_algorithms_and_garbage() {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","kid":"x"}"#);
        let payload = URL_SAFE_NO_PAD.encode(b"{}");
        assert_eq!(
            parse(&format!("{header}.{payload}.")).unwrap_err(),
            TokenError::Algorithm
        );
        assert_eq!(parse("abc").unwrap_err(), TokenError::Malformed);
        assert_eq!(parse("a.b.c").unwrap_err(), TokenError::Malformed);
    }

    #[test]
    fn scope_is_carried_space_separated_and_omitted_when_empty() {
        let key = generate_signing_key();
        let kid = key_id(&key.verifying_key());
        let mut with_scope = claims(1_000);
        with_scope.kind = CallerKind::Service;
        with_scope.scope = "authz notices".into();
        let token = sign(&with_scope, &kid, &key);
        let verified = parse(&token)
            .unwrap()
            .verify(&key.verifying_key(), &expect(), 1_010)
            .unwrap();
        assert_eq!(verified.scope, "authz notices");
        assert_eq!(verified.scopes().collect::<Vec<_>>(), ["authz", "notices"]);

        let json = serde_json::to_value(claims(1_000)).unwrap();
        assert!(json.get("scope").is_none(), "no scope, no claim: {json}");
        // A token issued before scopes existed still parses, with no scope.
        let mut old = json;
        old.as_object_mut().unwrap().remove("scope");
        let parsed: Claims = serde_json::from_value(old).unwrap();
        assert_eq!(parsed.scopes().count(), 0);
    }
}
