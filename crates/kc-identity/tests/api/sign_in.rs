//! Sign-in and passwords: identical failures, the lockout, and ChangePassword.

use std::time::Duration;

use kc_proto::identity as pb;
use tonic::Code;

use crate::helpers::{Harness, PASSWORD, authed, expect_code, expect_field};

/// `times` failed sign-ins of `email`, each refused as wrong credentials.
async fn fail_logins(h: &Harness, email: &str, times: usize) {
    for _ in 0..times {
        expect_code(
            h.login(email, "wrong password!!").await,
            Code::Unauthenticated,
        );
    }
}

#[tokio::test]
async fn unknown_email_and_wrong_password_fail_identically() {
    let h = Harness::start().await;
    h.proven("ada@example.com", "Ada", "en").await;
    let wrong = expect_code(
        h.login("ada@example.com", "wrong password!!").await,
        Code::Unauthenticated,
    );
    let unknown = expect_code(
        h.login("nobody@example.com", "wrong password!!").await,
        Code::Unauthenticated,
    );
    let malformed = expect_code(
        h.login("not an email", "wrong password!!").await,
        Code::Unauthenticated,
    );
    assert_eq!(wrong.message(), unknown.message());
    assert_eq!(wrong.message(), malformed.message());
    assert_eq!(wrong.message(), "invalid e-mail or password");
}

#[tokio::test]
async fn five_failures_lock_an_email_whether_or_not_it_exists() {
    let h = Harness::start().await;
    h.proven("ada@example.com", "Ada", "en").await;
    for email in ["ada@example.com", "nobody@example.com"] {
        fail_logins(&h, email, 5).await;
        // Locked: even the right password is refused, with the same answer for both.
        let locked = expect_code(h.login(email, PASSWORD).await, Code::ResourceExhausted);
        assert_eq!(
            locked.message(),
            "too many failed sign-in attempts, try again later"
        );
    }
    // Other e-mails are unaffected.
    h.proven("bob@example.com", "Bob", "en").await;
    h.login("bob@example.com", PASSWORD)
        .await
        .expect("bob signs in");
}

#[tokio::test]
async fn a_success_resets_the_failure_count_and_locks_end() {
    let h = Harness::start_with(&["--lockout-duration", "1s"]).await;
    h.proven("ada@example.com", "Ada", "en").await;
    fail_logins(&h, "ada@example.com", 4).await;
    h.login("ada@example.com", PASSWORD)
        .await
        .expect("fourth failure does not lock");
    fail_logins(&h, "ada@example.com", 4).await;
    h.login("ada@example.com", PASSWORD)
        .await
        .expect("the count restarted after success");
    fail_logins(&h, "ada@example.com", 5).await;
    expect_code(
        h.login("ada@example.com", PASSWORD).await,
        Code::ResourceExhausted,
    );
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    h.login("ada@example.com", PASSWORD)
        .await
        .expect("the lock ended");
}

#[tokio::test]
async fn concurrent_guesses_cannot_outrun_the_lockout() {
    let h = Harness::start().await;
    h.proven("ada@example.com", "Ada", "en").await;
    let guesses = (0..40).map(|i| {
        let mut client = h.client();
        tokio::spawn(async move {
            client
                .authenticate(pb::AuthenticateRequest {
                    email: "ada@example.com".into(),
                    password: format!("wrong guess number {i}"),
                })
                .await
        })
    });
    let results = futures::future::join_all(guesses).await;
    let checked = results
        .iter()
        .filter(|r| matches!(r.as_ref().unwrap(), Err(s) if s.code() == Code::Unauthenticated))
        .count();
    let refused = results
        .iter()
        .filter(|r| matches!(r.as_ref().unwrap(), Err(s) if s.code() == Code::ResourceExhausted))
        .count();
    assert!(
        checked <= 5,
        "at most 5 guesses were checked, got {checked}"
    );
    assert_eq!(checked + refused, 40);
    expect_code(
        h.login("ada@example.com", PASSWORD).await,
        Code::ResourceExhausted,
    );
}

#[tokio::test]
async fn absurdly_long_emails_fail_like_any_wrong_credentials() {
    let h = Harness::start().await;
    let email = format!("{}@example.com", "a".repeat(6_000));
    let status = expect_code(
        h.login(&email, "whatever password").await,
        Code::Unauthenticated,
    );
    assert_eq!(status.message(), "invalid e-mail or password");
}

#[tokio::test]
async fn change_password_needs_the_current_one_and_ends_other_sessions() {
    let h = Harness::start().await;
    let (ada, token) = h.customer("ada@example.com").await;
    let session = h.login("ada@example.com", PASSWORD).await.unwrap();
    expect_field(
        h.change_password(
            &token,
            pb::ChangePasswordRequest {
                user_id: ada.user_id.clone(),
                current_password: "not my password".into(),
                new_password: "a brand new passphrase".into(),
            },
        )
        .await,
        "current_password",
    );
    expect_field(
        h.change_password(
            &token,
            pb::ChangePasswordRequest {
                user_id: ada.user_id.clone(),
                current_password: PASSWORD.into(),
                new_password: "short".into(),
            },
        )
        .await,
        "new_password",
    );
    h.change_password(
        &token,
        pb::ChangePasswordRequest {
            user_id: ada.user_id.clone(),
            current_password: PASSWORD.into(),
            new_password: "a brand new passphrase".into(),
        },
    )
    .await
    .expect("change password");
    expect_code(
        h.login("ada@example.com", PASSWORD).await,
        Code::Unauthenticated,
    );
    h.login("ada@example.com", "a brand new passphrase")
        .await
        .expect("new password works");
    expect_code(
        h.refresh(&session.refresh_token).await,
        Code::Unauthenticated,
    );
    // rule I4: the other session's access token is revoked; the caller's own goes on.
    let me = |token: &str| {
        let mut client = h.client();
        let request = authed(
            token,
            pb::GetUserRequest {
                user_id: ada.user_id.clone(),
            },
        );
        async move { client.get_user(request).await }
    };
    let status = expect_code(me(&session.access_token).await, Code::Unauthenticated);
    assert_eq!(status.message(), "access token revoked");
    me(&token).await.expect("the caller's session goes on");
    // Operators cannot change someone's password through this RPC.
    let operator = h.operator().await;
    expect_code(
        h.change_password(
            &operator,
            pb::ChangePasswordRequest {
                user_id: ada.user_id,
                current_password: "a brand new passphrase".into(),
                new_password: "operator chosen pass".into(),
            },
        )
        .await,
        Code::PermissionDenied,
    );
}
