//! Scopes of service accounts (issue 15): given at creation, by the domain or by
//! `kc-identity create-service-account NAME --scope …`, stored with the account and carried
//! by its service tokens in the `scope` claim, which the verifying services read.

use kc_identity::domain::values::Scopes;
use kc_proto::identity as pb;
use kc_runtime::auth::{IdentityKeySource, TokenVerifier};
use kc_runtime::token::CallerKind;
use kc_testkit::process::{identity_admin, line_value};
use tokio::process::Command;

use crate::helpers::Harness;

/// A service token of the account, exchanged through `IssueServiceToken`.
async fn service_token(h: &Harness, client_id: &str, secret: &str) -> String {
    h.client()
        .issue_service_token(pb::IssueServiceTokenRequest {
            client_id: client_id.to_owned(),
            client_secret: secret.to_owned(),
        })
        .await
        .expect("service token")
        .into_inner()
        .access_token
}

/// The caller a service verifying `token` with identity's keys sees.
async fn caller_of(h: &Harness, token: &str) -> kc_runtime::Caller {
    let verifier = TokenVerifier::new(
        IdentityKeySource::new(h.channel.clone()),
        h.args.server.token_expectations(),
    );
    let mut metadata = tonic::metadata::MetadataMap::new();
    metadata.insert("authorization", format!("Bearer {token}").parse().unwrap());
    verifier
        .authenticate(&metadata.into_headers())
        .await
        .expect("token verifies")
}

#[tokio::test]
async fn the_scopes_of_an_account_are_carried_by_its_service_tokens() {
    let h = Harness::start().await;
    let domain = h.domain().await;
    let scopes = Scopes::parse("scope", &["notices", "authz"]).unwrap();
    let (client_id, secret) = domain
        .create_scoped_service_account("relying-app", &scopes)
        .await
        .unwrap();
    let token = service_token(&h, &client_id.to_string(), &secret).await;
    let verifier = TokenVerifier::new(
        IdentityKeySource::new(h.channel.clone()),
        h.args.server.token_expectations(),
    );
    let claims = verifier.verify(&token).await.unwrap();
    assert_eq!(claims.kind, CallerKind::Service);
    assert_eq!(claims.scope, "authz notices", "space-separated (RFC 9068)");
    let caller = caller_of(&h, &token).await;
    assert!(caller.has_scope("authz") && caller.has_scope("notices"));

    // No scope unless given.
    let (client_id, secret) = domain.create_service_account("kc-contacts").await.unwrap();
    let token = service_token(&h, &client_id.to_string(), &secret).await;
    assert_eq!(verifier.verify(&token).await.unwrap().scope, "");
    let caller = caller_of(&h, &token).await;
    assert!(caller.scopes.is_empty() && !caller.has_scope("notices"));

    // People's tokens never carry scopes.
    let (_, customer) = h.customer("ada@example.com").await;
    assert_eq!(verifier.verify(&customer).await.unwrap().scope, "");
}

#[tokio::test]
async fn accounts_made_before_scopes_existed_hold_none() {
    let h = Harness::start().await;
    let domain = h.domain().await;
    // A row of the shape it had before the scopes column.
    let (client_id, secret) = domain.create_service_account("template").await.unwrap();
    let old_id = uuid::Uuid::new_v4();
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&h.db.url)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO identity.service_accounts (client_id, name, secret_hash) \
         SELECT $1, 'made-before-scopes', secret_hash FROM identity.service_accounts \
         WHERE client_id = $2",
    )
    .bind(old_id)
    .bind(client_id)
    .execute(&mut conn)
    .await
    .unwrap();
    let token = service_token(&h, &old_id.to_string(), &secret).await;
    let caller = caller_of(&h, &token).await;
    assert!(caller.is_service() && caller.scopes.is_empty());
}

#[tokio::test]
async fn the_admin_command_takes_scopes_comma_separated_or_repeated() {
    let h = Harness::start().await;
    for (name, args) in [
        ("comma-separated", &["--scope", "authz,notices"][..]),
        ("repeated", &["--scope", "notices", "--scope", "authz"][..]),
        ("notices-only", &["--scope", "notices"][..]),
        ("no-scope", &[][..]),
    ] {
        let mut argv = vec!["create-service-account", name];
        argv.extend(args);
        let printed = identity_admin(&h.db.url, &argv).await;
        let token = service_token(
            &h,
            &line_value(&printed, "client_id"),
            &line_value(&printed, "client_secret"),
        )
        .await;
        let caller = caller_of(&h, &token).await;
        let expected: &[&str] = match name {
            "notices-only" => &["notices"],
            "no-scope" => &[],
            _ => &["authz", "notices"],
        };
        assert_eq!(caller.scopes, expected, "{name}");
    }
}

#[tokio::test]
async fn the_admin_command_refuses_an_unknown_scope_in_one_line() {
    let h = Harness::start().await;
    let output = Command::new(env!("CARGO_BIN_EXE_kc-identity"))
        .args(["create-service-account", "typo", "--scope", "authz,notice"])
        .args(kc_testkit::process::identity_args())
        .env("DATABASE_URL", &h.db.url)
        .output()
        .await
        .expect("run kc-identity");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stderr.trim_end(),
        "kc-identity: --scope: unknown scope \"notice\": the known scopes are authz, notices"
    );
    assert!(output.stdout.is_empty(), "no account is printed");
    // Nor created: the name is still free.
    h.domain()
        .await
        .create_service_account("typo")
        .await
        .expect("the refused command created nothing");
}
