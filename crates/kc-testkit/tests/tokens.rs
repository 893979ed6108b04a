//! Test tokens verify with the runtime's verifier, and only while valid.

use kc_runtime::token::{CallerKind, Claims};
use kc_testkit::tokens::TestIssuer;
use uuid::Uuid;

#[tokio::test]
async fn minted_tokens_verify_and_bad_ones_do_not() {
    let issuer = TestIssuer::new();
    let verifier = issuer.verifier();
    let subject = Uuid::new_v4();
    let token = issuer.mint(subject, CallerKind::Service, "");
    let claims = verifier.verify(&token).await.expect("valid token");
    assert_eq!(claims.sub, subject.to_string());
    assert_eq!(claims.kind, CallerKind::Service);

    let expired = issuer.mint_claims(&Claims {
        iat: 1_000,
        exp: 2_000,
        ..claims.clone()
    });
    assert!(verifier.verify(&expired).await.is_err());

    let stranger = TestIssuer::new();
    let foreign = stranger.mint(subject, CallerKind::Operator, "ops@example.com");
    assert!(
        verifier.verify(&foreign).await.is_err(),
        "another issuer's key is unknown"
    );
}
