//! Service accounts: `kc login --client-id … --client-secret-file …`, `kc check`,
//! `kc notices send`.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use kc_proto::access::{SoftwareAccess, ToolAccess};
use kc_proto::gateway as gw;
use kc_testkit::grpc::authed;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::ChildStdout;

use crate::harness::{Suite, field_of_each};

/// Reads JSON lines from `kc watch` until one satisfies `wanted`; that one.
async fn next_change(
    lines: &mut Lines<BufReader<ChildStdout>>,
    wanted: impl Fn(&Value) -> bool,
) -> Value {
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let line = lines
                .next_line()
                .await
                .expect("read kc watch")
                .expect("kc watch still runs");
            let change: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("one JSON object per line ({e}): {line}"));
            if wanted(&change) {
                return change;
            }
        }
    })
    .await
    .expect("the change within 30 s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_account_checks_permissions_and_sends_notices() {
    let suite = Suite::start().await;
    let camille = suite.person("Camille Martin").await;
    let lucas = suite.person("Lucas Moreau").await;
    let site = suite.create_site("Paris", &camille, None).await;
    let (client_id, secret) = suite
        .service_account_credentials("portal", &["authz", "notices"])
        .await;
    let client_id = client_id.to_string();
    let kc = suite.kc();
    let secret_file = kc.config_home().join("portal.secret");
    std::fs::write(&secret_file, format!("{secret}\n")).unwrap();
    std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o600)).unwrap();

    let json = kc
        .json(&[
            "login",
            "--gateway",
            &suite.gateway(),
            "--client-id",
            &client_id,
            "--client-secret-file",
            secret_file.to_str().unwrap(),
        ])
        .await;
    assert_eq!(json["kind"], "service");
    assert_eq!(json["client_id"], client_id.as_str());
    let stored = std::fs::read_to_string(kc.token_file()).unwrap();
    assert!(
        !stored.contains(&secret),
        "the secret is not stored, only its file"
    );
    assert_eq!(
        kc.session()["client_secret_file"],
        secret_file.to_str().unwrap()
    );
    let me = kc.json(&["whoami"]).await;
    assert_eq!(me["kind"], "service");

    // kc check by site id: Camille holds it by her role.
    let json = kc
        .json(&["check", &camille.id, &site.site_id, "software-download"])
        .await;
    assert_eq!(json["allowed"], true, "{json}");
    assert_eq!(json["permission"], "software-download");
    assert!(!json["rule"].as_str().unwrap().is_empty(), "{json}");
    let table = kc
        .run(&["check", &camille.id, &site.site_id, "software-download"])
        .await
        .ok()
        .stdout;
    assert!(
        table.starts_with("allowed:") && table.lines().next().unwrap().ends_with("yes"),
        "{table}"
    );
    // By site number: found among the sites where the user holds it.
    let json = kc
        .json(&["check", &camille.id, &site.site_number, "contacts-update"])
        .await;
    assert_eq!(json["allowed"], true, "{json}");
    assert_eq!(json["site_id"], site.site_id.as_str());
    // Lucas holds nothing there, by id or by number.
    let json = kc
        .json(&["check", &lucas.id, &site.site_id, "software-download"])
        .await;
    assert_eq!(json["allowed"], false, "{json}");
    let json = kc
        .json(&["check", &lucas.id, &site.site_number, "software-download"])
        .await;
    assert_eq!(json["allowed"], false, "{json}");

    // The lookups: where Camille holds it, and who holds it on the site.
    let json = kc
        .json(&["lookup", "sites", &camille.id, "software-download"])
        .await;
    let sites = json["sites"].as_array().unwrap();
    assert_eq!(sites.len(), 1, "{json}");
    assert_eq!(sites[0]["site_number"], site.site_number.as_str());
    assert!(!sites[0]["rule"].as_str().unwrap().is_empty(), "{json}");
    let json = kc
        .json(&["lookup", "users", &site.site_id, "approve-site-access"])
        .await;
    let users = field_of_each(&json["users"], "user_id");
    assert_eq!(users, vec![camille.id.as_str()], "{json}");
    let table = kc
        .run(&["lookup", "users", &site.site_id, "approve-site-access"])
        .await
        .ok()
        .stdout;
    assert!(
        table.starts_with("USER ID") && table.contains(&camille.id),
        "{table}"
    );

    // A renewal notice, by site id; the same key again sends nothing new.
    let args = [
        "notices",
        "send",
        site.site_id.as_str(),
        "--kind",
        "renewal",
        "--param",
        "end_date=2027-03-31",
        "--idempotency-key",
        "renewal-2027",
    ];
    let json = kc.json(&args).await;
    assert_eq!(json["replayed"], false);
    let notifications = json["notifications"].as_array().unwrap();
    assert!(
        notifications
            .iter()
            .any(|n| n["email"] == camille.email.as_str() && n["kind"] == "renewal"),
        "{json}"
    );
    assert!(
        notifications
            .iter()
            .all(|n| !n["rule"].as_str().unwrap().is_empty()),
        "{json}"
    );
    let json = kc.json(&args).await;
    assert_eq!(json["replayed"], true);
    // A missing parameter: refused naming it, exit code 6.
    let line = kc
        .run(&["notices", "send", &site.site_id, "--kind", "invoice"])
        .await
        .fails(6);
    assert!(line.contains("invoice_number"), "{line}");

    // The service token refused although it looks valid: kc asks for a new one with the
    // secret read again from its file, and retries.
    let mut tokens = kc.tokens();
    tokens["gateways"][suite.gateway()]["access_token"] = "not-a-token".into();
    tokens["gateways"][suite.gateway()]["access_token_expire_time"] = "2099-01-01T00:00:00Z".into();
    kc.write_tokens(&tokens);
    let json = kc
        .json(&["check", &camille.id, &site.site_id, "software-download"])
        .await;
    assert_eq!(json["allowed"], true);
    assert_ne!(kc.session()["access_token"], "not-a-token");

    // kc watch permissions: one JSON object per line, as the changes happen.
    let mut watch = kc
        .command(&[
            "watch",
            "permissions",
            "--site",
            &site.site_id,
            "--output",
            "json",
        ])
        .spawn()
        .expect("kc watch starts");
    let mut lines = BufReader::new(watch.stdout.take().expect("stdout")).lines();
    let camille_change = next_change(&mut lines, |c| {
        c["user_id"] == camille.id.as_str() && c["permission"] == "software-download"
    })
    .await;
    assert_eq!(camille_change["allowed"], true, "{camille_change}");
    assert_eq!(camille_change["site_number"], site.site_number.as_str());
    assert!(!camille_change["cursor"].as_str().unwrap().is_empty());
    suite
        .gw()
        .set_tool_access(authed(
            &suite.operator.token,
            gw::SetToolAccessRequest {
                site_id: site.site_id.clone(),
                user_id: lucas.id.clone(),
                tools: Some(ToolAccess {
                    software: SoftwareAccess::DownloadsOnly as i32,
                    ..Default::default()
                }),
                reason: "watch test".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("the operator grants Lucas downloads");
    let lucas_change = next_change(&mut lines, |c| {
        c["user_id"] == lucas.id.as_str() && c["permission"] == "software-download"
    })
    .await;
    assert_eq!(lucas_change["allowed"], true, "{lucas_change}");
    watch.kill().await.expect("stop kc watch");

    // A person may not use AuthorizationService: permission denied, exit code 4.
    let camille_kc = suite.kc();
    camille_kc.login(&camille).await.ok();
    camille_kc
        .run(&["check", &camille.id, &site.site_id, "software-download"])
        .await
        .fails(4);
}
