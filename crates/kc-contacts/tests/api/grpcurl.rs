//! Cross-process: the `kc-identity` and `kc-contacts` binaries, the registry verifying tokens
//! with keys fetched from identity, driven by the real grpcurl as an operator would (the
//! README's session).

use kc_testkit::process::{
    ServiceProcess, assert_stops_cleanly_on_sigterm, binary, grpcurl, grpcurl_json, grpcurl_ok,
};
use serde_json::Value;
use tokio::process::Command;

const CHEAP_ARGON2: [&str; 4] = ["--argon2-memory-kib", "256", "--argon2-iterations", "1"];
const OPERATOR_EMAIL: &str = "operator@keycontacts.test";
const OPERATOR_PASSWORD: &str = "operator passphrase";
const REGISTRY: &str = "keycontacts.contacts.v1.ContactRegistryService";

/// Bootstraps the operator with the `kc-identity` admin command and signs it in.
async fn operator_token(database_url: &str, identity: &str) -> String {
    let password_file = std::env::temp_dir().join(format!("kc-operator-{}", uuid::Uuid::new_v4()));
    std::fs::write(&password_file, format!("{OPERATOR_PASSWORD}\n")).unwrap();
    let output = Command::new(binary("kc-identity"))
        .args([
            "bootstrap-operator",
            "--email",
            OPERATOR_EMAIL,
            "--password-file",
        ])
        .arg(&password_file)
        .args(CHEAP_ARGON2)
        .args(kc_testkit::secrets::identity_key_args())
        // A secret as a file (a mounted Kubernetes Secret), on one of identity's own commands.
        .arg("--database-url-file")
        .arg(secret_file("database-url", database_url))
        .output()
        .await
        .expect("run kc-identity bootstrap-operator");
    let _ = std::fs::remove_file(&password_file);
    assert!(
        output.status.success(),
        "bootstrap-operator: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let body = format!(r#"{{"email":"{OPERATOR_EMAIL}","password":"{OPERATOR_PASSWORD}"}}"#);
    let session = grpcurl_json(&[
        "-plaintext",
        "-d",
        &body,
        identity,
        "keycontacts.identity.v1.IdentityService/Authenticate",
    ])
    .await;
    session["accessToken"].as_str().expect("token").to_owned()
}

/// A new file holding `value` and a newline, as Kubernetes mounts a Secret's key.
fn secret_file(name: &str, value: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("kc-{name}-{}", uuid::Uuid::new_v4()));
    std::fs::write(&path, format!("{value}\n")).unwrap();
    path
}

/// grpcurl's arguments for a call of `method` (`service/rpc`) at `addr` with the JSON `data`,
/// sending `bearer` (an `authorization` header).
fn authed_call<'a>(addr: &'a str, bearer: &'a str, data: &'a str, method: &'a str) -> [&'a str; 7] {
    ["-plaintext", "-H", bearer, "-d", data, addr, method]
}

/// Creates an invited customer through identity; returns its user id.
async fn create_user(identity: &str, bearer: &str, email: &str, name: &str) -> String {
    let body = format!(r#"{{"email":"{email}","display_name":"{name}","locale":"fr"}}"#);
    let method = "keycontacts.identity.v1.IdentityService/CreateUser";
    let created = grpcurl_json(&authed_call(identity, bearer, &body, method)).await;
    created["user"]["userId"]
        .as_str()
        .expect("user id")
        .to_owned()
}

#[tokio::test]
async fn grpcurl_creates_a_site_and_lists_its_contacts_across_processes() {
    let db = kc_testkit::test_database().await;
    // Identity with its key files (the key-encryption key and notification's sealing key).
    let key_args = kc_testkit::secrets::identity_key_args();
    let identity_args: Vec<&str> = CHEAP_ARGON2
        .into_iter()
        .chain(key_args.iter().map(String::as_str))
        .collect();
    let identity = ServiceProcess::start(
        binary("kc-identity"),
        &identity_args,
        &[("DATABASE_URL", db.url.as_str())],
    )
    .await;
    let mut contacts_args = vec!["--identity-url".to_owned(), identity.url()];
    contacts_args.extend(kc_testkit::secrets::contacts_key_args());
    // The registry reads its database URL from a file (a mounted Secret); given on the
    // command line, the file overrides a `DATABASE_URL` the environment may hold.
    let database_url_file = secret_file("database-url", &db.url);
    contacts_args.extend([
        "--database-url-file".to_owned(),
        database_url_file.display().to_string(),
    ]);
    let contacts = ServiceProcess::start(
        env!("CARGO_BIN_EXE_kc-contacts").into(),
        &contacts_args.iter().map(String::as_str).collect::<Vec<_>>(),
        &[],
    )
    .await;
    let (id_addr, addr) = (identity.address.as_str(), contacts.address.as_str());

    let services = grpcurl_ok(&["-plaintext", addr, "list"]).await;
    assert!(services.contains(REGISTRY), "{services}");
    assert!(services.contains("grpc.health.v1.Health"), "{services}");
    let described = grpcurl_ok(&["-plaintext", addr, "describe", REGISTRY]).await;
    assert!(
        described.contains("rpc TransferPrimaryContact"),
        "{described}"
    );
    assert!(
        described.contains("Shows all contacts of a site"),
        "proto comments are served: {described}"
    );

    let token = operator_token(&db.url, id_addr).await;
    let bearer = format!("authorization: Bearer {token}");
    let primary = create_user(id_addr, &bearer, "marie@exemple.fr", "Marie Curie").await;
    let technician = create_user(id_addr, &bearer, "pierre@exemple.fr", "Pierre Curie").await;

    // rule S1, C5: the site is created with its primary contact and, S&S being active, its STC.
    let body = format!(
        r#"{{"site_number":"1234567","customer_number":"7654321","name":"Paris HQ",
            "country_code":"FR","language":"fr","program":"PROGRAM_PASSPORT_ADVANTAGE",
            "support_active":true,"primary_user_id":"{primary}",
            "site_technical_user_id":"{technician}"}}"#
    );
    let method = format!("{REGISTRY}/CreateSite");
    let created = grpcurl_json(&authed_call(addr, &bearer, &body, &method)).await;
    let site_id = created["site"]["siteId"]
        .as_str()
        .expect("site id")
        .to_owned();
    assert_eq!(created["site"]["isOriginalSite"], true);
    assert_eq!(created["site"]["primaryUserId"], primary.as_str());

    // rule C7: show all contacts.
    let of_site = format!(r#"{{"site_id":"{site_id}"}}"#);
    let method = format!("{REGISTRY}/ListSiteContacts");
    let listed = grpcurl_json(&authed_call(addr, &bearer, &of_site, &method)).await;
    let roles: Vec<(&str, &str)> = listed["contacts"]
        .as_array()
        .expect("contacts")
        .iter()
        .map(|c: &Value| (c["userId"].as_str().unwrap(), c["role"].as_str().unwrap()))
        .collect();
    assert_eq!(
        roles,
        [
            (primary.as_str(), "CONTACT_ROLE_PRIMARY"),
            (technician.as_str(), "CONTACT_ROLE_SITE_TECHNICAL"),
        ]
    );

    // rule C1: the primary cannot be removed; grpcurl shows the code and the rule.
    let primary_contact = listed["contacts"][0]["contactId"].as_str().unwrap();
    let contact = format!(r#"{{"contact_id":"{primary_contact}"}}"#);
    let method = format!("{REGISTRY}/RemoveContact");
    let refused = grpcurl(&authed_call(addr, &bearer, &contact, &method)).await;
    assert!(!refused.success);
    assert!(
        refused.stderr.contains("FailedPrecondition") && refused.stderr.contains("rule C1"),
        "{}",
        refused.stderr
    );

    // Bad input names the field; no token is Unauthenticated.
    let method = format!("{REGISTRY}/LookupSite");
    let invalid = grpcurl(&authed_call(
        addr,
        &bearer,
        r#"{"site_number":"12"}"#,
        &method,
    ))
    .await;
    assert!(
        invalid.stderr.contains("InvalidArgument") && invalid.stderr.contains("site_number"),
        "{}",
        invalid.stderr
    );
    let anonymous = grpcurl(&[
        "-plaintext",
        "-d",
        &of_site,
        addr,
        &format!("{REGISTRY}/GetSite"),
    ])
    .await;
    assert!(
        anonymous.stderr.contains("Unauthenticated"),
        "{}",
        anonymous.stderr
    );

    // SIGTERM: the registry drains and exits cleanly.
    let mut child = contacts.child;
    assert_stops_cleanly_on_sigterm(&mut child).await;
}

#[tokio::test]
async fn bad_configuration_fails_with_one_line_naming_the_setting() {
    let output = Command::new(env!("CARGO_BIN_EXE_kc-contacts"))
        .args(["--database-url", "postgres://127.0.0.1:1/x"])
        .env_remove("KC_IDENTITY_URL")
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--identity-url"), "{stderr}");

    let output = Command::new(env!("CARGO_BIN_EXE_kc-contacts"))
        .args(["--database-url", "postgres://127.0.0.1:1/x"])
        .args(["--identity-url", "not a url"])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let error = stderr.lines().find(|line| line.starts_with("error:"));
    assert!(
        error.is_some_and(|line| line.contains("--identity-url")),
        "one error line names the setting: {stderr}"
    );
}
