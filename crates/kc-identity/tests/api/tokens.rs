//! Signing keys and access tokens: rotation, verification by identity and by the other
//! services, and refused tokens.

use kc_proto::identity as pb;
use tonic::Code;

use crate::helpers::{Harness, PASSWORD, authed, expect_code};

#[tokio::test]
async fn signing_keys_rotate_and_old_tokens_keep_verifying() {
    let h = Harness::start().await;
    let operator = h.operator().await;
    let (ada, old_token) = h.customer("ada@example.com").await;
    let keys = h.signing_keys().await;
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].algorithm, "EdDSA");
    assert_eq!(keys[0].public_key.len(), 32);
    let old_kid = keys[0].kid.clone();

    expect_code(
        h.rotate_signing_key(&old_token, pb::RotateSigningKeyRequest {})
            .await,
        Code::PermissionDenied,
    );
    let rotated = h
        .rotate_signing_key(&operator, pb::RotateSigningKeyRequest {})
        .await
        .unwrap()
        .into_inner()
        .key
        .unwrap();
    assert_ne!(rotated.kid, old_kid);
    let keys = h.signing_keys().await;
    let kids: Vec<&str> = keys.iter().map(|k| k.kid.as_str()).collect();
    assert_eq!(
        kids,
        [rotated.kid.as_str(), old_kid.as_str()],
        "newest first, old still listed"
    );

    // New tokens carry the new kid; the old token still verifies.
    let new_token = h
        .login("ada@example.com", PASSWORD)
        .await
        .unwrap()
        .access_token;
    let kid_of = |token: &str| kc_runtime::token::parse(token).unwrap().kid;
    assert_eq!(kid_of(&new_token), rotated.kid);
    assert_eq!(kid_of(&old_token), old_kid);
    for token in [&old_token, &new_token] {
        h.get_user(token, &ada.user_id)
            .await
            .expect("both tokens verify");
    }
}

/// Signs `claims` with identity's current private key.
async fn sign_with_identity_key(h: &Harness, claims: &kc_runtime::token::Claims) -> String {
    let key = h.domain().await.keys().signing_key().await.unwrap();
    kc_runtime::token::sign(claims, &key.kid, &key.key)
}

#[tokio::test]
async fn missing_expired_tampered_and_foreign_tokens_are_unauthenticated() {
    let h = Harness::start().await;
    let (ada, token) = h.customer("ada@example.com").await;
    let get = |token: Option<String>| {
        let mut client = h.client();
        let user_id = ada.user_id.clone();
        async move {
            let request = match token {
                Some(token) => authed(&token, pb::GetUserRequest { user_id }),
                None => tonic::Request::new(pb::GetUserRequest { user_id }),
            };
            client.get_user(request).await
        }
    };
    assert!(get(Some(token.clone())).await.is_ok());
    let missing = expect_code(get(None).await, Code::Unauthenticated);
    assert_eq!(missing.message(), "missing bearer token");

    let now = chrono::Utc::now().timestamp();
    let claims = kc_runtime::token::Claims {
        sub: ada.user_id.clone(),
        kind: kc_runtime::token::CallerKind::Customer,
        email: ada.email.clone(),
        iss: "keycontacts".into(),
        aud: "keycontacts".into(),
        iat: now - 3_600,
        exp: now - 1_800,
        jti: "expired".into(),
        sid: String::new(),
        scope: String::new(),
    };
    let expired = sign_with_identity_key(&h, &claims).await;
    let status = expect_code(get(Some(expired)).await, Code::Unauthenticated);
    assert_eq!(status.message(), "access token expired");

    let foreign = sign_with_identity_key(
        &h,
        &kc_runtime::token::Claims {
            aud: "another-suite".into(),
            exp: now + 600,
            iat: now,
            ..claims.clone()
        },
    )
    .await;
    let status = expect_code(get(Some(foreign)).await, Code::Unauthenticated);
    assert_eq!(
        status.message(),
        "access token not issued for this audience"
    );

    // Tampered: promote the customer to operator in the payload, keep the signature.
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    use base64::Engine;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let payload = String::from_utf8(engine.decode(&parts[1]).unwrap()).unwrap();
    parts[1] = engine.encode(payload.replace("\"customer\"", "\"operator\""));
    let status = expect_code(get(Some(parts.join("."))).await, Code::Unauthenticated);
    assert_eq!(status.message(), "access token signature is invalid");

    // Signed by a key identity never had.
    let stranger = kc_runtime::token::generate_signing_key();
    let forged = kc_runtime::token::sign(
        &kc_runtime::token::Claims {
            exp: now + 600,
            iat: now,
            ..claims
        },
        "made-up",
        &stranger,
    );
    expect_code(get(Some(forged)).await, Code::Unauthenticated);
    expect_code(get(Some("not.a.token".into())).await, Code::Unauthenticated);
}

#[tokio::test]
async fn other_services_verify_tokens_with_keys_fetched_from_identity() {
    let h = Harness::start().await;
    let operator = h.operator().await;
    let (ada, token) = h.customer("ada@example.com").await;
    // What every other service does: fetch identity's keys over gRPC, cache them by kid.
    let verifier = kc_runtime::auth::TokenVerifier::new(
        kc_runtime::auth::IdentityKeySource::new(h.channel.clone()),
        h.args.server.token_expectations(),
    );
    let claims = verifier
        .verify(&token)
        .await
        .expect("identity's token verifies");
    assert_eq!(claims.sub, ada.user_id);
    assert_eq!(claims.kind, kc_runtime::token::CallerKind::Customer);

    // After a rotation the new kid is unknown to the cache: the verifier refetches.
    h.rotate_signing_key(&operator, pb::RotateSigningKeyRequest {})
        .await
        .unwrap();
    let fresh = h
        .login("ada@example.com", PASSWORD)
        .await
        .unwrap()
        .access_token;
    verifier
        .verify(&fresh)
        .await
        .expect("token of the rotated key verifies");
    verifier
        .verify(&token)
        .await
        .expect("the old token still verifies");

    let stranger = kc_testkit::tokens::TestIssuer::new();
    let forged = stranger.mint(
        uuid::Uuid::new_v4(),
        kc_runtime::token::CallerKind::Operator,
        "x@example.com",
    );
    assert!(verifier.verify(&forged).await.is_err());
}
