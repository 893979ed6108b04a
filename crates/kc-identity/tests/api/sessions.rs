//! Sessions: refresh-token rotation and reuse, logout, and sign-ins racing a reset or a
//! disable (rule I4).

use std::time::Duration;

use kc_proto::identity as pb;
use tonic::Code;

use crate::helpers::{Harness, PASSWORD, expect_code, expect_field};

#[tokio::test]
async fn refresh_tokens_rotate_and_reuse_revokes_the_family() {
    let h = Harness::start().await;
    h.proven("ada@example.com", "Ada", "en").await;
    let first = h.login("ada@example.com", PASSWORD).await.unwrap();
    let second = h.refresh(&first.refresh_token).await.expect("refresh");
    assert_ne!(second.refresh_token, first.refresh_token);
    assert!(!second.access_token.is_empty());
    // The new access token works.
    let me = h
        .get_user(&second.access_token, &first.user.as_ref().unwrap().user_id)
        .await;
    assert!(me.is_ok());

    // The rotated token comes back: reuse. The whole family is revoked, including the
    // newest token.
    let reuse = expect_code(h.refresh(&first.refresh_token).await, Code::Unauthenticated);
    assert!(
        reuse.message().contains("already used"),
        "{}",
        reuse.message()
    );
    expect_code(
        h.refresh(&second.refresh_token).await,
        Code::Unauthenticated,
    );
    // Other sessions of the user are untouched.
    let other = h.login("ada@example.com", PASSWORD).await.unwrap();
    h.refresh(&other.refresh_token)
        .await
        .expect("another session still refreshes");
    expect_code(h.refresh("garbage").await, Code::Unauthenticated);
    expect_field(h.refresh("").await, "refresh_token");
}

#[tokio::test]
async fn revoke_session_logs_out() {
    let h = Harness::start().await;
    h.proven("ada@example.com", "Ada", "en").await;
    let session = h.login("ada@example.com", PASSWORD).await.unwrap();
    h.client()
        .revoke_session(pb::RevokeSessionRequest {
            refresh_token: session.refresh_token.clone(),
        })
        .await
        .expect("logout");
    expect_code(
        h.refresh(&session.refresh_token).await,
        Code::Unauthenticated,
    );
    // Idempotent.
    h.client()
        .revoke_session(pb::RevokeSessionRequest {
            refresh_token: session.refresh_token,
        })
        .await
        .expect("logout again");
}

/// Signs in to `email` with `password` from 16 tasks, again and again, until `done`; the
/// sessions obtained.
fn sign_in_storm(
    h: &Harness,
    email: &'static str,
    password: &'static str,
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Vec<pb::AuthenticateResponse>>> {
    (0..16)
        .map(|_| {
            let mut client = h.client();
            let done = done.clone();
            tokio::spawn(async move {
                let mut sessions = Vec::new();
                while !done.load(std::sync::atomic::Ordering::SeqCst) {
                    if let Ok(response) = client
                        .authenticate(pb::AuthenticateRequest {
                            email: email.into(),
                            password: password.into(),
                        })
                        .await
                    {
                        sessions.push(response.into_inner());
                    }
                }
                sessions
            })
        })
        .collect()
}

/// Every session of `storms` is over: its refresh token is refused and its access token
/// revoked.
async fn assert_all_ended(
    h: &Harness,
    user_id: &str,
    storms: Vec<tokio::task::JoinHandle<Vec<pb::AuthenticateResponse>>>,
) -> usize {
    let mut sessions = Vec::new();
    for storm in storms {
        sessions.extend(storm.await.unwrap());
    }
    for session in &sessions {
        expect_code(
            h.refresh(&session.refresh_token).await,
            Code::Unauthenticated,
        );
        let status = expect_code(
            h.get_user(&session.access_token, user_id).await,
            Code::Unauthenticated,
        );
        assert!(status.message().contains("revoked"), "{status:?}");
    }
    sessions.len()
}

#[tokio::test]
async fn sign_ins_racing_a_password_reset_or_a_disable_leave_no_session_alive() {
    // rule I4: a sign-in that overlaps ResetPassword or DisableUser never yields a session
    // or an access token that outlives them.
    let h = Harness::start().await;
    let operator = h.operator().await;
    let (reset_user, _) = h.customer("raced-reset@example.com").await;
    let (disabled_user, _) = h.customer("raced-disable@example.com").await;

    h.client()
        .request_password_reset(pb::RequestPasswordResetRequest {
            email: "raced-reset@example.com".into(),
        })
        .await
        .unwrap();
    let code = h.code("raced-reset@example.com").await.code;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let storms = sign_in_storm(&h, "raced-reset@example.com", PASSWORD, done.clone());
    tokio::time::sleep(Duration::from_millis(150)).await;
    h.client()
        .reset_password(pb::ResetPasswordRequest {
            email: "raced-reset@example.com".into(),
            code,
            new_password: "a brand new passphrase".into(),
        })
        .await
        .expect("reset");
    tokio::time::sleep(Duration::from_millis(150)).await;
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let raced = assert_all_ended(&h, &reset_user.user_id, storms).await;
    eprintln!("sign-ins racing the reset: {raced}");

    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let storms = sign_in_storm(&h, "raced-disable@example.com", PASSWORD, done.clone());
    tokio::time::sleep(Duration::from_millis(150)).await;
    h.disable(&operator, &disabled_user.user_id).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let raced = assert_all_ended(&h, &disabled_user.user_id, storms).await;
    assert!(raced > 0, "the storm signed in before the disable");
}
