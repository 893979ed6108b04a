//! Scopes of service accounts at the gateway (issue 15): a service account may call
//! `SendNotice` only when its token carries the scope `notices`
//! (`kc-identity create-service-account NAME --scope notices`); without it the gateway
//! refuses with `PermissionDenied` naming the missing scope, before anything is sent.

use crate::gateway::helpers::*;
use kc_proto::gateway::{self as gw};
use kc_proto::notification::{self as npb};
use tonic::Code;
use uuid::Uuid;

/// A renewal notice on `site_id`, sent through the gateway with `token`.
async fn renewal_notice(
    suite: &Suite,
    token: &str,
    site_id: &str,
) -> Result<gw::SendNoticeResponse, tonic::Status> {
    suite
        .gw()
        .send_notice(authed(
            Some(token),
            gw::SendNoticeRequest {
                site_id: site_id.into(),
                kind: npb::NoticeKind::Renewal as i32,
                params: [("end_date".to_owned(), "2030-12-31".to_owned())].into(),
                idempotency_key: Uuid::new_v4().to_string(),
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn send_notice_needs_a_service_account_with_the_scope_notices() {
    let suite = Suite::start().await;
    let primary = suite.person("Scoped Primary").await;
    let site = suite
        .create_site_applied("Scopes site", &primary, None)
        .await;

    let (_, unscoped) = suite.service_account("kc-no-scope").await;
    let (_, authz_only) = suite
        .scoped_service_account("kc-authz-only", &["authz"])
        .await;
    for (who, token) in [("no scope", &unscoped), ("authz only", &authz_only)] {
        let refused = expect_code(
            renewal_notice(&suite, token, &site.site_id).await,
            Code::PermissionDenied,
        );
        assert_eq!(
            refused.message(),
            "permission denied: this needs a service account with the scope notices",
            "{who}"
        );
    }

    let (_, sender) = suite
        .scoped_service_account("kc-notices", &["notices"])
        .await;
    let sent = renewal_notice(&suite, &sender, &site.site_id)
        .await
        .expect("a service account with the scope notices sends a notice");
    assert_eq!(sent.notifications.len(), 1, "R1: the primary: {sent:?}");
    assert!(!sent.replayed);

    let (_, both) = suite
        .scoped_service_account("kc-relying-app", &["authz", "notices"])
        .await;
    renewal_notice(&suite, &both, &site.site_id)
        .await
        .expect("more scopes than needed");

    // Operators need no scope.
    renewal_notice(&suite, &suite.operator.token, &site.site_id)
        .await
        .expect("an operator sends notices");
}

/// A relying application signs in through the gateway (its one public address in the
/// cluster): `IssueServiceToken` with the client id and secret `create-service-account`
/// printed gives a token carrying the account's scopes, which the gateway then honours; a
/// wrong secret is `Unauthenticated`, like a wrong password at `Login`.
#[tokio::test]
async fn a_relying_application_gets_its_token_from_the_gateway() {
    use kc_proto::gateway::authorization_service_client::AuthorizationServiceClient;

    let suite = Suite::start().await;
    let primary = suite.person("Relying Primary").await;
    let site = suite
        .create_site_applied("Relying site", &primary, None)
        .await;
    let (client_id, secret) = suite
        .service_account_credentials("kc-portal", &["authz", "notices"])
        .await;

    let issued = suite
        .gw()
        .issue_service_token(gw::IssueServiceTokenRequest {
            client_id: client_id.to_string(),
            client_secret: secret.clone(),
        })
        .await
        .expect("the gateway issues a relying application's token")
        .into_inner();
    assert!(issued.access_token_expire_time.is_some());

    renewal_notice(&suite, &issued.access_token, &site.site_id)
        .await
        .expect("the token carries the scope notices");
    let checked = AuthorizationServiceClient::new(suite.channel(Service::Gateway))
        .check(authed(
            Some(&issued.access_token),
            gw::CheckRequest {
                user_id: primary.id.to_string(),
                site_id: site.site_id.clone(),
                permission: kc_proto::access::Permission::SoftwareDownload as i32,
                consistency: None,
            },
        ))
        .await
        .expect("the token carries the scope authz")
        .into_inner();
    assert!(checked.allowed, "T3: the primary downloads: {checked:?}");

    let refused = suite
        .gw()
        .issue_service_token(gw::IssueServiceTokenRequest {
            client_id: client_id.to_string(),
            client_secret: format!("{secret}-wrong"),
        })
        .await;
    expect_code(refused, Code::Unauthenticated);
}
