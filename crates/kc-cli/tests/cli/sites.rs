//! `kc sites`, `kc site show`, `kc contacts NUMBER`, `kc compliance`, `kc audit`: tables
//! and JSON of what a primary contact reads.

use crate::harness::{Suite, field_of_each};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_contact_reads_its_sites_contacts_compliance_and_audit() {
    let suite = Suite::start().await;
    let camille = suite.person("Camille Martin").await;
    let hugo = suite.person("Hugo Petit").await;
    let paris = suite.create_site("Paris", &camille, Some(&hugo)).await;
    let lyon = suite.create_site("Lyon", &camille, None).await;
    let kc = suite.kc();
    kc.login(&camille).await.ok();

    // kc sites: both, with Camille's role.
    let table = kc.run(&["sites"]).await.ok().stdout;
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("NUMBER"), "{table}");
    assert!(lines[0].contains("MY ROLES"), "{table}");
    for site in [&paris, &lyon] {
        let line = lines
            .iter()
            .find(|l| l.starts_with(&site.site_number))
            .unwrap_or_else(|| panic!("{} in {table}", site.site_number));
        assert!(
            line.contains(&site.name) && line.contains("primary"),
            "{line}"
        );
    }
    // Aligned: every row's second column starts where the header's does.
    let name_column = lines[0].find("NAME").unwrap();
    for line in &lines[1..] {
        assert_eq!(&line[name_column - 2..name_column], "  ", "{table}");
        assert!(!line[name_column..].starts_with(' '), "{table}");
    }
    let json = kc.json(&["sites"]).await;
    let sites = json["sites"].as_array().unwrap();
    assert_eq!(sites.len(), 2, "{json}");
    let paris_doc = sites
        .iter()
        .find(|s| s["site_number"] == paris.site_number.as_str())
        .unwrap();
    assert_eq!(paris_doc["site_id"], paris.site_id.as_str());
    assert_eq!(paris_doc["my_roles"], serde_json::json!(["primary"]));
    assert_eq!(paris_doc["program"], "passport-advantage");
    assert_eq!(paris_doc["support_active"], true);
    assert!(paris_doc["my_tools"]["software"].is_string(), "{paris_doc}");

    // kc site show NUMBER: by number, as fields and as JSON.
    let shown = kc
        .run(&["site", "show", &paris.site_number])
        .await
        .ok()
        .stdout;
    assert!(
        shown.contains("id:") && shown.contains(&paris.site_id),
        "{shown}"
    );
    assert!(
        shown.contains("S&S active:") && shown.contains("yes"),
        "{shown}"
    );
    let json = kc.json(&["site", "show", &paris.site_number]).await;
    assert_eq!(json["site"]["site_id"], paris.site_id.as_str());
    assert_eq!(json["site"]["name"], "Paris");
    assert_eq!(
        json["site"]["customer_number"],
        paris.customer_number.as_str()
    );
    assert_eq!(json["site"]["primary_user_id"], camille.id.as_str());
    // A site id works where a number does.
    let by_id = kc.json(&["site", "show", &paris.site_id]).await;
    assert_eq!(by_id["site"]["site_number"], paris.site_number.as_str());

    // kc contacts NUMBER.
    let table = kc.run(&["contacts", &paris.site_number]).await.ok().stdout;
    assert!(table.starts_with("NAME"), "{table}");
    let camille_line = table
        .lines()
        .find(|l| l.contains(&camille.email))
        .expect("camille");
    assert!(
        camille_line.contains("Camille Martin") && camille_line.contains("primary"),
        "{table}"
    );
    let hugo_line = table
        .lines()
        .find(|l| l.contains(&hugo.email))
        .expect("hugo");
    assert!(hugo_line.contains("site-technical"), "{table}");
    let json = kc.json(&["contacts", &paris.site_number]).await;
    assert_eq!(json["site_id"], paris.site_id.as_str());
    let people = json["contacts"].as_array().unwrap();
    assert_eq!(people.len(), 2, "{json}");
    assert_eq!(people[0]["email"], camille.email.as_str(), "primary first");
    assert_eq!(people[0]["roles"], serde_json::json!(["primary"]));
    assert_eq!(people[0]["contacts"][0]["role"], "primary");
    assert!(
        people[0]["contacts"][0]["contact_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
    );
    assert_eq!(people[1]["roles"], serde_json::json!(["site-technical"]));
    let only_stc = kc
        .json(&["contacts", &paris.site_number, "--role", "site-technical"])
        .await;
    assert_eq!(
        only_stc["contacts"].as_array().unwrap().len(),
        1,
        "{only_stc}"
    );

    // kc compliance: Lyon has only its primary contact and no renewal contact.
    let json = kc.json(&["compliance", &lyon.site_number]).await;
    let lyon_doc = &json["sites"][0];
    assert_eq!(lyon_doc["site_number"], lyon.site_number.as_str());
    assert_eq!(lyon_doc["compliant"], false);
    let kinds = field_of_each(&lyon_doc["gaps"], "kind");
    assert!(kinds.contains(&"primary-only-contact"), "{json}");
    assert!(kinds.contains(&"no-renewal-contact"), "{json}");
    let table = kc.run(&["compliance", &lyon.site_number]).await.ok().stdout;
    assert!(
        table.contains("primary-only-contact") && table.contains("C6"),
        "{table}"
    );
    // By customer: only that customer's site.
    let json = kc
        .json(&["compliance", "--customer", &paris.customer_number])
        .await;
    let numbers = field_of_each(&json["sites"], "site_number");
    assert_eq!(numbers, vec![paris.site_number.as_str()]);
    // All of Camille's sites.
    let json = kc.json(&["compliance"]).await;
    assert_eq!(json["sites"].as_array().unwrap().len(), 2, "{json}");

    // kc audit: the site's creation and its contacts.
    let json = kc.json(&["audit", &paris.site_number]).await;
    let actions = field_of_each(&json["entries"], "action");
    assert!(actions.contains(&"site.created"), "{json}");
    let created = json["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "site.created")
        .unwrap();
    assert_eq!(created["source"], "contacts");
    assert!(created["before"].is_null(), "{created}");
    assert!(
        created["after"].is_object(),
        "the recorded JSON is a document: {created}"
    );
    let table = kc
        .run(&["audit", &paris.site_number, "--limit", "1"])
        .await
        .ok()
        .stdout;
    assert_eq!(table.lines().count(), 2, "a header and one entry: {table}");
    assert!(table.starts_with("TIME"), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_creates_a_site_and_names_sites_by_id() {
    let suite = Suite::start().await;
    let camille = suite.person("Camille Martin").await;
    let kc = suite.kc();
    kc.run_with_stdin(
        &[
            "login",
            "--gateway",
            &suite.gateway(),
            "--email",
            kc_suite_tests::OPERATOR_EMAIL,
            "--password-stdin",
        ],
        &format!("{}\n", kc_suite_tests::PASSWORD),
    )
    .await
    .ok();
    let (number, customer) = suite.numbers_from(4_200_000, 8_200_000);
    let stc_email = crate::harness::fresh_email("stc");
    let json = kc
        .json(&[
            "site",
            "create",
            "--number",
            &number,
            "--customer",
            &customer,
            "--name",
            "Dupont Paris",
            "--country",
            "FR",
            "--language",
            "fr",
            "--program",
            "passport-advantage",
            "--support-active",
            "--support-end-date",
            "2030-12-31",
            "--primary-email",
            &camille.email,
            "--stc-email",
            &stc_email,
            "--stc-name",
            "Hugo Petit",
        ])
        .await;
    assert_eq!(json["site"]["site_number"], number.as_str());
    assert_eq!(json["site"]["support_active"], true);
    let roles: Vec<(&str, &str)> = json["contacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["email"].as_str().unwrap(),
                p["roles"][0].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        roles,
        vec![
            (camille.email.as_str(), "primary"),
            (stc_email.as_str(), "site-technical")
        ]
    );
    let site_id = json["site"]["site_id"].as_str().unwrap().to_owned();

    // S&S without a site technical contact: a usage error before any call (C5).
    assert_eq!(
        kc.run(&[
            "site",
            "create",
            "--number",
            "4299999",
            "--customer",
            &customer,
            "--name",
            "X",
            "--country",
            "FR",
            "--program",
            "passport-advantage",
            "--support-active",
            "--primary-email",
            &camille.email,
        ])
        .await
        .code,
        2
    );
    // The same number again: refused by the registry (S2), one line, exit code 6.
    let line = kc
        .run(&[
            "site",
            "create",
            "--number",
            &number,
            "--customer",
            &customer,
            "--name",
            "Again",
            "--country",
            "FR",
            "--program",
            "passport-advantage",
            "--primary-email",
            &camille.email,
        ])
        .await
        .fails(6);
    assert!(
        line.contains(&number) || line.contains("S2") || line.contains("exists"),
        "{line}"
    );

    // An operator has no sites of its own: it names sites by id; a number is not found.
    let json = kc.json(&["contacts", &site_id]).await;
    assert_eq!(json["contacts"].as_array().unwrap().len(), 2, "{json}");
    let line = kc.run(&["site", "show", &number]).await.fails(5);
    assert!(line.contains("by its id"), "{line}");
    // The primary contact created by the operator sees it in her sites.
    let camille_kc = suite.kc();
    camille_kc.login(&camille).await.ok();
    let json = camille_kc.json(&["sites"]).await;
    assert_eq!(json["sites"][0]["site_id"], site_id.as_str());
}
