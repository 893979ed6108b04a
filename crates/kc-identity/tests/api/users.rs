//! Users: CreateUser, GetUser, LookupUser, BatchGetUsers, UpdateUser (etags), DisableUser and
//! EnableUser.

use kc_proto::identity as pb;
use kc_runtime::outbox::Cursor;
use tonic::Code;

use crate::helpers::{Harness, PASSWORD, authed, expect_code, expect_field};

#[tokio::test]
async fn create_user_is_for_operators_and_services_and_always_invites() {
    // rule I1: a created user is unproven until its owner proves the address.
    let h = Harness::start().await;
    let operator = h.operator().await;
    let service = h.service_token("kc-gateway").await;
    let (_, customer) = h.customer("ada@example.com").await;
    let request = |email: &str| pb::CreateUserRequest {
        email: email.into(),
        display_name: "Invited Person".into(),
        locale: "fr".into(),
        kind: pb::UserKind::Customer as i32,
    };
    let invited = h
        .create_user(&operator, request("invitee@example.com"))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(invited.state, pb::UserState::Invited as i32);
    assert_eq!(
        h.code("invitee@example.com").await.purpose,
        pb::VerificationPurpose::Invitation
    );
    // An invited user cannot sign in (no password), and fails like any wrong password.
    let status = expect_code(
        h.login("invitee@example.com", PASSWORD).await,
        Code::Unauthenticated,
    );
    assert_eq!(status.message(), "invalid e-mail or password");
    let by_service = h
        .create_user(&service, request("member@example.com"))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(by_service.state, pb::UserState::Invited as i32);
    expect_code(
        h.create_user(&operator, request("MEMBER@example.com"))
            .await,
        Code::AlreadyExists,
    );

    expect_code(
        h.create_user(&customer, request("x@example.com")).await,
        Code::PermissionDenied,
    );
    // Services may not mint operators.
    expect_code(
        h.create_user(
            &service,
            pb::CreateUserRequest {
                kind: pb::UserKind::Operator as i32,
                ..request("op2@example.com")
            },
        )
        .await,
        Code::PermissionDenied,
    );
    expect_field(
        h.create_user(
            &operator,
            pb::CreateUserRequest {
                kind: pb::UserKind::Service as i32,
                ..request("s@example.com")
            },
        )
        .await,
        "kind",
    );
    expect_code(
        h.client().create_user(request("anon@example.com")).await,
        Code::Unauthenticated,
    );
}

#[tokio::test]
async fn customers_read_only_themselves() {
    let h = Harness::start().await;
    let (ada, ada_token) = h.customer("ada@example.com").await;
    let (bob, _) = h.customer("bob@example.com").await;
    let operator = h.operator().await;

    let me = h
        .get_user(&ada_token, &ada.user_id)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(me.user.unwrap().email, "ada@example.com");
    expect_code(
        h.get_user(&ada_token, &bob.user_id).await,
        Code::PermissionDenied,
    );
    h.get_user(&operator, &bob.user_id)
        .await
        .expect("operators read anyone");
    expect_code(
        h.get_user(&operator, &uuid::Uuid::new_v4().to_string())
            .await,
        Code::NotFound,
    );
    expect_field(h.get_user(&operator, "42").await, "user_id");

    // LookupUser: case-insensitive; a customer finds only itself, others are "not found".
    let found = h
        .lookup_user(&ada_token, "ADA@example.com")
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found.user.unwrap().user_id, ada.user_id);
    expect_code(
        h.lookup_user(&ada_token, "bob@example.com").await,
        Code::NotFound,
    );
    expect_field(h.lookup_user(&operator, "bob").await, "email");
}

#[tokio::test]
async fn batch_get_users_keeps_order_skips_unknown_and_caps_at_500() {
    let h = Harness::start().await;
    let (ada, ada_token) = h.customer("ada@example.com").await;
    let bob = h.proven("bob@example.com", "Bob", "en").await;
    let service = h.service_token("kc-notification").await;
    let ids = vec![
        bob.user_id.clone(),
        uuid::Uuid::new_v4().to_string(),
        ada.user_id.clone(),
    ];
    let users = h
        .batch_get_users(
            &service,
            pb::BatchGetUsersRequest {
                user_ids: ids.clone(),
            },
        )
        .await
        .unwrap()
        .into_inner()
        .users;
    let got: Vec<&str> = users.iter().map(|u| u.user_id.as_str()).collect();
    assert_eq!(got, [bob.user_id.as_str(), ada.user_id.as_str()]);

    let too_many = (0..501).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    expect_field(
        h.batch_get_users(&service, pb::BatchGetUsersRequest { user_ids: too_many })
            .await,
        "user_ids",
    );
    expect_field(
        h.batch_get_users(
            &service,
            pb::BatchGetUsersRequest {
                user_ids: vec!["bad".into()],
            },
        )
        .await,
        "user_ids[0]",
    );
    expect_code(
        h.batch_get_users(&ada_token, pb::BatchGetUsersRequest { user_ids: ids })
            .await,
        Code::PermissionDenied,
    );
}

#[tokio::test]
async fn update_user_honours_the_etag() {
    let h = Harness::start().await;
    let (ada, token) = h.customer("ada@example.com").await;
    let updated = h
        .update_user(
            &token,
            pb::UpdateUserRequest {
                user_id: ada.user_id.clone(),
                display_name: Some("Ada Lovelace".into()),
                locale: Some("fr".into()),
                etag: ada.etag.clone(),
            },
        )
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(updated.display_name, "Ada Lovelace");
    assert_eq!(updated.locale, "fr");
    assert_ne!(updated.etag, ada.etag);
    // The stale etag loses.
    expect_code(
        h.update_user(
            &token,
            pb::UpdateUserRequest {
                user_id: ada.user_id.clone(),
                display_name: Some("Someone Else".into()),
                locale: None,
                etag: ada.etag.clone(),
            },
        )
        .await,
        Code::Aborted,
    );
    expect_field(
        h.update_user(
            &token,
            pb::UpdateUserRequest {
                user_id: ada.user_id.clone(),
                display_name: None,
                locale: Some("not a locale".into()),
                etag: updated.etag.clone(),
            },
        )
        .await,
        "locale",
    );
    let (bob, _) = h.customer("bob@example.com").await;
    expect_code(
        h.update_user(
            &token,
            pb::UpdateUserRequest {
                user_id: bob.user_id,
                display_name: Some("Hacked".into()),
                locale: None,
                etag: String::new(),
            },
        )
        .await,
        Code::PermissionDenied,
    );
}

#[tokio::test]
async fn two_updates_with_the_same_etag_one_wins() {
    let h = Harness::start().await;
    let (ada, token) = h.customer("ada@example.com").await;
    let mut tasks = Vec::new();
    for i in 0..2 {
        let mut client = h.client();
        let request = authed(
            &token,
            pb::UpdateUserRequest {
                user_id: ada.user_id.clone(),
                display_name: Some(format!("Ada {i}")),
                locale: None,
                etag: ada.etag.clone(),
            },
        );
        tasks.push(tokio::spawn(
            async move { client.update_user(request).await },
        ));
    }
    let results: Vec<_> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    assert_eq!(
        results
            .iter()
            .filter(|r| matches!(r, Err(s) if s.code() == Code::Aborted))
            .count(),
        1
    );
}

#[tokio::test]
async fn disabled_users_cannot_sign_in_or_refresh() {
    let h = Harness::start().await;
    let operator = h.operator().await;
    let (ada, ada_token) = h.customer("ada@example.com").await;
    let session = h.login("ada@example.com", PASSWORD).await.unwrap();
    expect_code(
        h.disable_user(&ada_token, &ada.user_id).await,
        Code::PermissionDenied,
    );
    let disabling = h
        .disable_user(&operator, &ada.user_id)
        .await
        .unwrap()
        .into_inner();
    let disabled = disabling.user.unwrap();
    assert_eq!(disabled.state, pb::UserState::Disabled as i32);
    // rules I4 and T8: the change's revision, for access management's AwaitIdentityRevision
    // (rights follow the disable there); none when nothing changed.
    let disabled_at: Cursor = disabling.revision.parse().expect("a revision");
    let again = h
        .disable_user(&operator, &ada.user_id)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.revision, "", "disabled already: no revision");
    expect_code(
        h.login("ada@example.com", PASSWORD).await,
        Code::PermissionDenied,
    );
    // rule I4: the access tokens it holds are refused by identity at once.
    let status = expect_code(
        h.get_user(&ada_token, &ada.user_id).await,
        Code::Unauthenticated,
    );
    assert_eq!(status.message(), "access token revoked");
    expect_code(
        h.refresh(&session.refresh_token).await,
        Code::Unauthenticated,
    );
    let enabling = h
        .enable_user(&operator, &ada.user_id)
        .await
        .unwrap()
        .into_inner();
    let enabled = enabling.user.unwrap();
    assert_eq!(enabled.state, pb::UserState::Active as i32);
    let enabled_at: Cursor = enabling.revision.parse().expect("a revision");
    assert!(
        enabled_at > disabled_at,
        "{enabled_at:?} after {disabled_at:?}"
    );
    let again = h
        .login("ada@example.com", PASSWORD)
        .await
        .expect("enabled again");
    // A token issued after the revocation works, even within the same second.
    h.get_user(&again.access_token, &ada.user_id)
        .await
        .expect("a token issued after enabling works");
    expect_code(
        h.get_user(&ada_token, &ada.user_id).await,
        Code::Unauthenticated,
    );
    expect_code(
        h.disable_user(&operator, &uuid::Uuid::new_v4().to_string())
            .await,
        Code::NotFound,
    );
}
