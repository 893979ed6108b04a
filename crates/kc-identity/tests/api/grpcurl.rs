//! Cross-process: the `kc-identity` binary driven by the real grpcurl (1.8, which speaks
//! reflection v1alpha), as an operator would.

use kc_testkit::process::{ServiceProcess, assert_stops_cleanly_on_sigterm, grpcurl_ok};
use serde_json::Value;
use tokio::process::{Child, Command};

/// The environment that gives the binary its test key files.
fn key_env() -> [(&'static str, String); 2] {
    let keys = kc_testkit::secrets::test_keys();
    [
        (
            "KC_KEY_ENCRYPTION_KEY_FILE",
            keys.key_encryption_key.display().to_string(),
        ),
        (
            "KC_CODE_SEALING_KEY_FILE",
            keys.code_sealing_key.display().to_string(),
        ),
    ]
}

/// Starts the binary on `127.0.0.1:0` with cheap argon2 settings.
async fn start_identity(database_url: &str) -> (Child, String) {
    let keys = key_env();
    let mut envs = vec![("DATABASE_URL", database_url)];
    envs.extend(keys.iter().map(|(name, value)| (*name, value.as_str())));
    let process = ServiceProcess::start(
        env!("CARGO_BIN_EXE_kc-identity").into(),
        &["--argon2-memory-kib", "256", "--argon2-iterations", "1"],
        &envs,
    )
    .await;
    (process.child, process.address)
}

/// Runs grpcurl with `args`; returns (success, stdout, stderr).
async fn grpcurl(args: &[&str]) -> (bool, String, String) {
    let output = kc_testkit::process::grpcurl(args).await;
    (output.success, output.stdout, output.stderr)
}

#[tokio::test]
async fn grpcurl_lists_describes_registers_authenticates_and_reads() {
    let db = kc_testkit::test_database().await;
    let (mut child, address) = start_identity(&db.url).await;
    let addr = address.as_str();

    let services = grpcurl_ok(&["-plaintext", addr, "list"]).await;
    for service in [
        "keycontacts.identity.v1.IdentityService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    ] {
        assert!(
            services.contains(service),
            "{service} missing from {services}"
        );
    }

    let described = grpcurl_ok(&[
        "-plaintext",
        addr,
        "describe",
        "keycontacts.identity.v1.IdentityService",
    ])
    .await;
    assert!(described.contains("rpc RegisterUser"), "{described}");
    assert!(
        described.contains("Registers a customer user"),
        "proto comments are served: {described}"
    );
    let message = grpcurl_ok(&[
        "-plaintext",
        addr,
        "describe",
        "keycontacts.identity.v1.User",
    ])
    .await;
    assert!(message.contains("email_verified"), "{message}");

    let registered = grpcurl_ok(&[
        "-plaintext",
        "-d",
        r#"{"email":"Ada@Example.com","display_name":"Ada Lovelace","password":"correct horse battery","locale":"en"}"#,
        addr,
        "keycontacts.identity.v1.IdentityService/RegisterUser",
    ])
    .await;
    // rule I2: the answer says nothing; the code is in the mail (read here as notification
    // does, with a service's token).
    let registered: Value = serde_json::from_str(&registered).expect("json");
    assert_eq!(registered, serde_json::json!({}));
    let account = admin(&db.url, &["create-service-account", "code-reader"]).await;
    let issued = grpcurl_ok(&[
        "-plaintext",
        "-d",
        &format!(
            r#"{{"client_id":"{}","client_secret":"{}"}}"#,
            line_value(&account, "client_id"),
            line_value(&account, "client_secret")
        ),
        addr,
        "keycontacts.identity.v1.IdentityService/IssueServiceToken",
    ])
    .await;
    let issued: Value = serde_json::from_str(&issued).expect("json");
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let code = kc_testkit::codes::CodeReader::new(
        channel,
        issued["accessToken"].as_str().expect("service token"),
    )
    .next_code("ada@example.com")
    .await
    .code;
    let verified = grpcurl_ok(&[
        "-plaintext",
        "-d",
        &format!(
            r#"{{"email":"ada@example.com","code":"{code}","password":"correct horse battery"}}"#
        ),
        addr,
        "keycontacts.identity.v1.IdentityService/VerifyEmail",
    ])
    .await;
    let verified: Value = serde_json::from_str(&verified).expect("json");
    assert_eq!(verified["user"]["email"], "ada@example.com");
    assert_eq!(verified["user"]["state"], "USER_STATE_ACTIVE");
    let user_id = verified["user"]["userId"]
        .as_str()
        .expect("user id")
        .to_owned();

    let session = grpcurl_ok(&[
        "-plaintext",
        "-d",
        r#"{"email":"ada@example.com","password":"correct horse battery"}"#,
        addr,
        "keycontacts.identity.v1.IdentityService/Authenticate",
    ])
    .await;
    let session: Value = serde_json::from_str(&session).expect("json");
    let token = session["accessToken"]
        .as_str()
        .expect("access token")
        .to_owned();

    let bearer = format!("authorization: Bearer {token}");
    let body = format!(r#"{{"user_id":"{user_id}"}}"#);
    let me = grpcurl_ok(&[
        "-plaintext",
        "-H",
        &bearer,
        "-d",
        &body,
        addr,
        "keycontacts.identity.v1.IdentityService/GetUser",
    ])
    .await;
    let me: Value = serde_json::from_str(&me).expect("json");
    assert_eq!(me["user"]["displayName"], "Ada Lovelace");

    let (ok, _, stderr) = grpcurl(&[
        "-plaintext",
        "-d",
        &body,
        addr,
        "keycontacts.identity.v1.IdentityService/GetUser",
    ])
    .await;
    assert!(!ok);
    assert!(
        stderr.contains("Unauthenticated") && stderr.contains("missing bearer token"),
        "{stderr}"
    );

    let (ok, _, stderr) = grpcurl(&[
        "-plaintext",
        "-d",
        r#"{"email":"bad","display_name":"X","password":"correct horse battery"}"#,
        addr,
        "keycontacts.identity.v1.IdentityService/RegisterUser",
    ])
    .await;
    assert!(!ok);
    assert!(
        stderr.contains("InvalidArgument") && stderr.contains("email"),
        "{stderr}"
    );
    // Reflection describes the error-detail types: grpcurl prints the field violation.
    assert!(
        stderr.contains("google.rpc.BadRequest")
            && stderr.contains("fieldViolations")
            && !stderr.contains("is not recognized"),
        "{stderr}"
    );

    let health = grpcurl_ok(&["-plaintext", addr, "grpc.health.v1.Health/Check"]).await;
    assert!(health.contains("SERVING"), "{health}");

    // SIGTERM: the binary drains and exits cleanly.
    assert_stops_cleanly_on_sigterm(&mut child).await;
}

/// Runs a one-shot `kc-identity` admin command; returns its stdout.
async fn admin(database_url: &str, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_kc-identity"))
        .args(args)
        .env("DATABASE_URL", database_url)
        .envs(key_env())
        .output()
        .await
        .expect("run kc-identity");
    assert!(
        output.status.success(),
        "kc-identity {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The value of a `key=value` line.
fn line_value(output: &str, key: &str) -> String {
    output
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= line in {output}"))
        .to_owned()
}

#[tokio::test]
async fn admin_commands_create_accounts_that_grpcurl_can_use() {
    let db = kc_testkit::test_database().await;
    let migrated = admin(&db.url, &["migrate"]).await;
    assert!(migrated.contains("identity"), "{migrated}");
    // Idempotent: a second run (another replica's Job) changes nothing and succeeds.
    admin(&db.url, &["migrate"]).await;

    let account = admin(&db.url, &["create-service-account", "kc-gateway"]).await;
    let client_id = line_value(&account, "client_id");
    let secret = line_value(&account, "client_secret");

    let password_file = std::env::temp_dir().join(format!("kc-operator-{}", uuid::Uuid::new_v4()));
    std::fs::write(&password_file, "operator passphrase\n").unwrap();
    let password_path = password_file.to_str().unwrap();
    let first = admin(
        &db.url,
        &[
            "bootstrap-operator",
            "--email",
            "Ops@Example.com",
            "--password-file",
            password_path,
        ],
    )
    .await;
    let second = admin(
        &db.url,
        &[
            "bootstrap-operator",
            "--email",
            "ops@example.com",
            "--password-file",
            password_path,
        ],
    )
    .await;
    assert_eq!(
        line_value(&first, "operator_user_id"),
        line_value(&second, "operator_user_id")
    );
    std::fs::remove_file(&password_file).unwrap();

    let (_child, address) = start_identity(&db.url).await;
    let addr = address.as_str();
    let issued = grpcurl_ok(&[
        "-plaintext",
        "-d",
        &format!(r#"{{"client_id":"{client_id}","client_secret":"{secret}"}}"#),
        addr,
        "keycontacts.identity.v1.IdentityService/IssueServiceToken",
    ])
    .await;
    let issued: Value = serde_json::from_str(&issued).expect("json");
    assert!(
        issued["accessToken"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
    );

    let session = grpcurl_ok(&[
        "-plaintext",
        "-d",
        r#"{"email":"ops@example.com","password":"operator passphrase"}"#,
        addr,
        "keycontacts.identity.v1.IdentityService/Authenticate",
    ])
    .await;
    let session: Value = serde_json::from_str(&session).expect("json");
    assert_eq!(session["user"]["kind"], "USER_KIND_OPERATOR");
}

#[tokio::test]
async fn bad_configuration_fails_with_one_line_naming_the_setting() {
    let output = Command::new(env!("CARGO_BIN_EXE_kc-identity"))
        .args([
            "--listen",
            "not-an-address",
            "--database-url",
            "postgres://127.0.0.1:1/x",
        ])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--listen"), "{stderr}");

    let output = Command::new(env!("CARGO_BIN_EXE_kc-identity"))
        .args([
            "--database-url",
            "postgres://127.0.0.1:1/x",
            "--access-token-ttl",
            "soon",
        ])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--access-token-ttl"), "{stderr}");
}
