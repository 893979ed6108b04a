//! `kc login`, `kc whoami`, `kc logout`: the password on stdin, the private token file, the
//! automatic refresh of an expired access token.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use crate::harness::Suite;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_with_the_password_on_stdin_keeps_a_private_token_file_until_logout() {
    let suite = Suite::start().await;
    let camille = suite.person("Camille Martin").await;
    let kc = suite.kc();

    // Not signed in yet: exit code 3, one line that says what to do.
    let line = kc.run(&["whoami"]).await.fails(3);
    assert!(line.contains("kc login"), "{line}");

    let login = kc.login(&camille).await.ok();
    assert!(login.stdout.contains(&camille.email), "{}", login.stdout);
    assert!(
        !login.stdout.contains("correct horse"),
        "the password is never printed"
    );

    // The token file and its directory are private.
    let mode = mode_of(&kc.token_file());
    assert_eq!(mode & 0o777, 0o600, "token file mode {mode:o}");
    let dir = kc.token_file().parent().unwrap().to_path_buf();
    let dir_mode = mode_of(&dir);
    assert_eq!(
        dir_mode & 0o777,
        0o700,
        "config directory mode {dir_mode:o}"
    );
    let session = kc.session();
    assert_eq!(session["kind"], "user");
    assert_eq!(session["email"], camille.email.as_str());
    assert!(
        session["refresh_token"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
    );
    assert_eq!(kc.tokens()["current_gateway"], suite.gateway().as_str());

    // Later commands use the gateway of the login (no --gateway, no KC_GATEWAY).
    let table = kc.run(&["whoami"]).await.ok().stdout;
    assert!(
        table.contains(&format!("Camille Martin <{}>", camille.email)),
        "{table}"
    );
    assert!(table.contains("token file:"), "{table}");
    let me = kc.json(&["whoami"]).await;
    assert_eq!(me["gateway"], suite.gateway().as_str());
    assert_eq!(me["kind"], "user");
    assert_eq!(me["user"]["email"], camille.email.as_str());
    assert_eq!(me["user"]["user_id"], camille.id.as_str());
    assert_eq!(me["user"]["kind"], "customer");
    assert_eq!(me["sites"], serde_json::json!([]));
    let yaml = kc.run(&["whoami", "--output", "yaml"]).await.ok().stdout;
    assert!(
        yaml.contains(&format!("email: {}", camille.email)),
        "{yaml}"
    );

    // Logout ends the session at the gateway and removes the tokens.
    let refresh_token = kc.session()["refresh_token"].as_str().unwrap().to_owned();
    let out = kc.run(&["logout"]).await.ok();
    assert!(out.stdout.contains("logged out"), "{}", out.stdout);
    assert!(
        kc.tokens()["gateways"].get(suite.gateway()).is_none(),
        "{}",
        kc.tokens()
    );
    let status = suite
        .gw()
        .refresh(kc_proto::gateway::RefreshRequest { refresh_token })
        .await
        .expect_err("the ended session's refresh token no longer works");
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    kc.run(&["whoami", "--gateway", &suite.gateway()])
        .await
        .fails(3);
    // Logging out twice is not an error.
    kc.run(&["logout", "--gateway", &suite.gateway()])
        .await
        .ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_one_line_and_stores_nothing() {
    let suite = Suite::start().await;
    let camille = suite.person("Camille Martin").await;
    let kc = suite.kc();
    let out = kc
        .run_with_stdin(
            &[
                "login",
                "--gateway",
                &suite.gateway(),
                "--email",
                &camille.email,
                "--password-stdin",
            ],
            "not the password at all\n",
        )
        .await;
    out.fails(3);
    assert!(!kc.token_file().exists(), "nothing is stored");
    // An empty stdin is a usage error.
    let line = kc
        .run_with_stdin(
            &[
                "login",
                "--gateway",
                &suite.gateway(),
                "--email",
                &camille.email,
                "--password-stdin",
            ],
            "",
        )
        .await
        .fails(2);
    assert!(line.contains("--password-stdin"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_access_token_is_refreshed_with_the_refresh_token() {
    // Access tokens live 7 s: kc renews one that expires within 5 s before a call.
    let suite = Suite::start_with_identity(&["--access-token-ttl", "7s"]).await;
    let camille = suite.person("Camille Martin").await;
    let kc = suite.kc();
    kc.login(&camille).await.ok();
    let first = kc.session();

    // Fresh: used as it is.
    kc.json(&["sites"]).await;
    assert_eq!(kc.session()["access_token"], first["access_token"]);

    // Expired: renewed with the refresh token (single use: a new one is stored too).
    tokio::time::sleep(Duration::from_secs(7)).await;
    let sites = kc.json(&["sites"]).await;
    assert!(sites["sites"].is_array(), "{sites}");
    let second = kc.session();
    assert_ne!(
        second["access_token"], first["access_token"],
        "a new access token"
    );
    assert_ne!(
        second["refresh_token"], first["refresh_token"],
        "a new refresh token"
    );
    let mode = mode_of(&kc.token_file());
    assert_eq!(mode & 0o777, 0o600, "the rewritten file is private too");

    // A token the gateway refuses although it looks valid (revoked, keys rotated): the
    // UNAUTHENTICATED answer makes kc renew once and retry.
    let mut tokens = kc.tokens();
    tokens["gateways"][suite.gateway()]["access_token"] = "not-a-token".into();
    tokens["gateways"][suite.gateway()]["access_token_expire_time"] = "2099-01-01T00:00:00Z".into();
    kc.write_tokens(&tokens);
    let me = kc.json(&["whoami"]).await;
    assert_eq!(me["user"]["email"], camille.email.as_str());
    let third = kc.session();
    assert_ne!(third["access_token"], "not-a-token");
    assert_ne!(third["refresh_token"], second["refresh_token"]);

    // When the session itself has ended, kc says to log in again (exit 3), once.
    let mut tokens = kc.tokens();
    tokens["gateways"][suite.gateway()]["access_token"] = "not-a-token".into();
    tokens["gateways"][suite.gateway()]["refresh_token"] = "not-a-refresh-token".into();
    kc.write_tokens(&tokens);
    let line = kc.run(&["sites"]).await.fails(3);
    assert!(line.contains("kc login"), "{line}");
}

/// The mode bits of the file or directory at `path` (type and permissions).
fn mode_of(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode()
}
