//! `kc access NUMBER [--user]`, `kc access grant`, `kc access revoke`.

use crate::harness::Suite;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_contact_grants_shows_and_revokes_rights_by_e_mail() {
    let suite = Suite::start().await;
    let camille = suite.person("Camille Martin").await;
    let lucas = suite.person("Lucas Moreau").await;
    let site = suite.create_site("Paris", &camille, None).await;
    let n = site.site_number.as_str();
    let kc = suite.kc();
    kc.login(&camille).await.ok();
    kc.run(&[
        "contacts",
        "assign",
        n,
        "--email",
        &lucas.email,
        "--role",
        "site-user",
    ])
    .await
    .ok();

    // A grant needs a level.
    kc.run(&[
        "access",
        "grant",
        n,
        "--user",
        &lucas.email,
        "--reason",
        "nothing",
    ])
    .await
    .fails(2);

    let json = kc
        .json(&[
            "access",
            "grant",
            n,
            "--user",
            &lucas.email,
            "--software",
            "downloads-only",
            "--reason",
            "migration project",
        ])
        .await;
    assert_eq!(json["action"], "granted");
    assert_eq!(json["profile"]["user_id"], lucas.id.as_str());
    assert_eq!(json["profile"]["explicit"]["software"], "downloads-only");
    assert_eq!(json["profile"]["effective"]["software"], "downloads-only");
    assert!(
        json["revision"].as_str().is_some_and(|r| !r.is_empty()),
        "{json}"
    );

    // The site's table and JSON.
    let table = kc.run(&["access", n]).await.ok().stdout;
    assert!(table.starts_with("NAME"), "{table}");
    let line = table
        .lines()
        .find(|l| l.contains(&lucas.email))
        .expect("lucas");
    assert!(line.contains("software=downloads-only"), "{table}");
    let json = kc.json(&["access", n]).await;
    let entries = json["entries"].as_array().unwrap();
    let lucas_doc = entries
        .iter()
        .find(|e| e["email"] == lucas.email.as_str())
        .unwrap();
    assert_eq!(lucas_doc["effective"]["software"], "downloads-only");
    let camille_doc = entries
        .iter()
        .find(|e| e["email"] == camille.email.as_str())
        .unwrap();
    assert_eq!(camille_doc["implied_by"], serde_json::json!(["primary"]));

    // One user's profile, by e-mail or by id.
    let shown = kc
        .run(&["access", n, "--user", &lucas.email])
        .await
        .ok()
        .stdout;
    assert!(
        shown.contains("TOOL") && shown.contains("downloads-only"),
        "{shown}"
    );
    let json = kc.json(&["access", n, "--user", &lucas.id]).await;
    assert_eq!(json["profile"]["email"], lucas.email.as_str());
    assert_eq!(json["profile"]["explicit"]["software"], "downloads-only");

    // Lucas may not grant himself more: permission denied, exit code 4.
    let lucas_kc = suite.kc();
    lucas_kc.login(&lucas).await.ok();
    let line = lucas_kc
        .run(&[
            "access",
            "grant",
            &site.site_id,
            "--user",
            &lucas.id,
            "--software",
            "full",
            "--reason",
            "more",
        ])
        .await
        .fails(4);
    assert!(line.contains("permission"), "{line}");

    // A grant that ends (T9): through the day given, UTC; then without an end again.
    let json = kc
        .json(&[
            "access",
            "grant",
            n,
            "--user",
            &lucas.email,
            "--reporting",
            "view",
            "--until",
            "2099-12-31",
            "--reason",
            "audit season",
        ])
        .await;
    assert_eq!(json["profile"]["explicit"]["reporting"], "view");
    assert_eq!(
        json["profile"]["explicit"]["software"], "downloads-only",
        "other levels kept"
    );
    assert_eq!(json["profile"]["valid_until"], "2100-01-01T00:00:00Z");
    let table = kc.run(&["access", n]).await.ok().stdout;
    let line = table
        .lines()
        .find(|l| l.contains(&lucas.email))
        .expect("lucas");
    assert!(line.ends_with("2100-01-01T00:00:00Z"), "{table}");
    let out = kc
        .run(&[
            "access",
            "grant",
            n,
            "--user",
            &lucas.email,
            "--reporting",
            "view",
            "--without-end",
            "--reason",
            "permanent",
        ])
        .await
        .ok();
    assert!(out.stdout.starts_with("granted on site"), "{}", out.stdout);
    assert!(out.stdout.contains("grants end:  -"), "{}", out.stdout);
    let line = kc
        .run(&[
            "access",
            "grant",
            n,
            "--user",
            &lucas.email,
            "--reporting",
            "view",
            "--until",
            "31/12/2099",
            "--reason",
            "x",
        ])
        .await
        .fails(2);
    assert!(line.contains("--until"), "{line}");

    // Revoke: only what roles imply remains.
    let json = kc
        .json(&[
            "access",
            "revoke",
            n,
            "--user",
            &lucas.email,
            "--reason",
            "project over",
        ])
        .await;
    assert_eq!(json["action"], "revoked");
    assert_eq!(json["profile"]["explicit"]["software"], "none");
}
