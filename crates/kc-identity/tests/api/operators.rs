//! Operators bootstrapped by the admin command.

use tonic::Code;

use crate::helpers::{Harness, OPERATOR_EMAIL, PASSWORD, expect_code};

#[tokio::test]
async fn bootstrap_operator_is_idempotent() {
    let h = Harness::start().await;
    let first = h.operator().await;
    let domain = h.domain().await;
    let operator = domain
        .bootstrap_operator(
            &kc_identity::domain::values::Email::parse("email", OPERATOR_EMAIL).unwrap(),
            &kc_identity::domain::values::Password::parse("password", PASSWORD).unwrap(),
        )
        .await
        .unwrap();
    let second = h
        .login(OPERATOR_EMAIL, PASSWORD)
        .await
        .unwrap()
        .access_token;
    // Bootstrapping again ended the first sign-in and its access token (rule I4).
    expect_code(
        h.get_user(&first, &operator.user_id.to_string()).await,
        Code::Unauthenticated,
    );
    h.get_user(&second, &operator.user_id.to_string())
        .await
        .expect("the new token works");
    let claims = |token: &str| {
        use base64::Engine;
        let payload = token.split('.').nth(1).unwrap();
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap();
        serde_json::from_slice::<kc_runtime::token::Claims>(&bytes).unwrap()
    };
    assert_eq!(claims(&first).sub, claims(&second).sub);
    assert_eq!(claims(&first).kind, kc_runtime::token::CallerKind::Operator);
    assert_eq!(claims(&first).email, OPERATOR_EMAIL);
}

#[tokio::test]
async fn bootstrapping_an_operator_ends_the_sessions_the_address_had() {
    let h = Harness::start().await;
    // Someone registered the operator's address as a customer and holds a session.
    h.proven(OPERATOR_EMAIL, "Squatter", "en").await;
    let squatter = h.login(OPERATOR_EMAIL, PASSWORD).await.unwrap();
    h.operator().await;
    expect_code(
        h.refresh(&squatter.refresh_token).await,
        Code::Unauthenticated,
    );
}
