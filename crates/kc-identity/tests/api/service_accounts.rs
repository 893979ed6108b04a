//! Service accounts: service tokens, acting on behalf of a person, the cached token client.

use kc_proto::identity as pb;
use tonic::Code;

use crate::helpers::{Harness, authed, expect_code};

#[tokio::test]
async fn service_tokens_need_the_right_secret_and_only_services_act_on_behalf() {
    let h = Harness::start().await;
    let domain = h.domain().await;
    let (client_id, secret) = domain.create_service_account("kc-contacts").await.unwrap();
    expect_code(
        h.client()
            .issue_service_token(pb::IssueServiceTokenRequest {
                client_id: client_id.to_string(),
                client_secret: "wrong".into(),
            })
            .await,
        Code::Unauthenticated,
    );
    expect_code(
        h.client()
            .issue_service_token(pb::IssueServiceTokenRequest {
                client_id: "nope".into(),
                client_secret: secret.clone(),
            })
            .await,
        Code::Unauthenticated,
    );
    let issued = h
        .client()
        .issue_service_token(pb::IssueServiceTokenRequest {
            client_id: client_id.to_string(),
            client_secret: secret,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(issued.access_token_expire_time.is_some());
    assert!(
        domain.create_service_account("kc-contacts").await.is_err(),
        "names are unique"
    );

    let (ada, customer_token) = h.customer("ada@example.com").await;
    // A service may name the person it acts for.
    let mut request = authed(
        &issued.access_token,
        pb::GetUserRequest {
            user_id: ada.user_id.clone(),
        },
    );
    request
        .metadata_mut()
        .insert("x-kc-on-behalf-of", ada.user_id.parse().unwrap());
    h.client()
        .get_user(request)
        .await
        .expect("service acting for ada");
    // A customer may not.
    let mut request = authed(
        &customer_token,
        pb::GetUserRequest {
            user_id: ada.user_id.clone(),
        },
    );
    request
        .metadata_mut()
        .insert("x-kc-on-behalf-of", ada.user_id.parse().unwrap());
    expect_code(h.client().get_user(request).await, Code::PermissionDenied);
}

#[tokio::test]
async fn services_call_with_a_cached_service_token_acting_for_a_person() {
    let h = Harness::start().await;
    let (ada, _) = h.customer("ada@example.com").await;
    let (client_id, secret) = h
        .domain()
        .await
        .create_service_account("kc-contacts")
        .await
        .unwrap();
    let identity_url = h.service.url();
    let channel = kc_runtime::client::channel("--identity-url", &identity_url).unwrap();
    let tokens = kc_runtime::client::ServiceToken::new(
        channel.clone(),
        kc_runtime::client::ServiceAccountArgs {
            client_id: client_id.to_string(),
            client_secret: secret,
        },
    );
    let first = tokens.bearer().await.expect("service token");
    assert_eq!(tokens.bearer().await.unwrap(), first, "the token is cached");

    let on_behalf_of: uuid::Uuid = ada.user_id.parse().unwrap();
    let request = tokens
        .request(
            pb::BatchGetUsersRequest {
                user_ids: vec![ada.user_id.clone()],
            },
            Some(on_behalf_of),
        )
        .await
        .unwrap();
    assert_eq!(
        request.metadata().get("x-kc-on-behalf-of").unwrap(),
        ada.user_id.as_str()
    );
    let users = kc_proto::identity::identity_service_client::IdentityServiceClient::new(channel)
        .batch_get_users(request)
        .await
        .expect("a service reads users")
        .into_inner()
        .users;
    assert_eq!(users.len(), 1);

    // Wrong credentials surface as Unavailable (a deployment error, retryable once fixed).
    let refused = kc_runtime::client::ServiceToken::new(
        h.channel.clone(),
        kc_runtime::client::ServiceAccountArgs {
            client_id: client_id.to_string(),
            client_secret: "wrong".into(),
        },
    );
    expect_code(refused.bearer().await, Code::Unavailable);
    let error = kc_runtime::client::channel("--identity-url", "not a url").unwrap_err();
    assert!(error.to_string().contains("--identity-url"), "{error}");
}
