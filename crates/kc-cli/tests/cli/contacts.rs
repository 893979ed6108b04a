//! `kc contacts assign|update|remove|replace|transfer-primary`: changes by site number, and
//! a rule's refusal as one line with its exit code.

use crate::harness::{Suite, fresh_email};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_contact_changes_contacts_and_a_fifth_secondary_is_refused_citing_c6() {
    let suite = Suite::start().await;
    let camille = suite.person("Camille Martin").await;
    let hugo = suite.person("Hugo Petit").await;
    let site = suite.create_site("Paris", &camille, None).await;
    let n = site.site_number.as_str();
    let kc = suite.kc();
    kc.login(&camille).await.ok();

    // Four secondaries, invited by e-mail (the first as JSON, the others as text).
    let secondaries: Vec<String> = (1..=4)
        .map(|i| fresh_email(&format!("secondary{i}")))
        .collect();
    let json = kc
        .json(&[
            "contacts",
            "assign",
            n,
            "--email",
            &secondaries[0],
            "--name",
            "Ana Lopes",
            "--role",
            "secondary",
            "--phone",
            "+33123456789",
        ])
        .await;
    assert_eq!(json["action"], "assigned");
    assert_eq!(json["site_number"], n);
    assert_eq!(json["contact"]["role"], "secondary");
    assert_eq!(json["contact"]["phone"], "+33123456789");
    assert_eq!(json["user"]["email"], secondaries[0].as_str());
    assert_eq!(json["user_invited"], true);
    for email in &secondaries[1..] {
        let out = kc
            .run(&[
                "contacts",
                "assign",
                n,
                "--email",
                email,
                "--name",
                "Someone Else",
                "--role",
                "secondary",
            ])
            .await
            .ok();
        assert!(
            out.stdout.contains(&format!(
                "{email} is now secondary contact of site {n} (invited)"
            )),
            "{}",
            out.stdout
        );
    }

    // The fifth: one line citing the rule, exit code 6, nothing written.
    let fifth = fresh_email("fifth");
    let line = kc
        .run(&[
            "contacts",
            "assign",
            n,
            "--email",
            &fifth,
            "--name",
            "Fifth One",
            "--role",
            "secondary",
        ])
        .await
        .fails(6);
    assert!(line.starts_with("error: rule C6: "), "{line}");
    assert!(line.contains("at most 4 secondary"), "{line}");
    let json = kc.json(&["contacts", n, "--role", "secondary"]).await;
    assert_eq!(json["contacts"].as_array().unwrap().len(), 4, "{json}");

    // An invalid e-mail: the field named, exit code 6.
    let line = kc
        .run(&[
            "contacts",
            "assign",
            n,
            "--email",
            "not-an-address",
            "--name",
            "X",
            "--role",
            "renewal",
        ])
        .await
        .fails(6);
    assert!(line.contains("email"), "{line}");

    // Update one detail, keeping the others.
    let json = kc
        .json(&[
            "contacts",
            "update",
            n,
            "--email",
            &secondaries[0],
            "--role",
            "secondary",
            "--job-title",
            "IT manager",
        ])
        .await;
    assert_eq!(json["action"], "updated");
    assert_eq!(json["contact"]["job_title"], "IT manager");
    assert_eq!(
        json["contact"]["phone"], "+33123456789",
        "the phone is kept"
    );

    // Remove one.
    let out = kc
        .run(&[
            "contacts",
            "remove",
            n,
            "--email",
            &secondaries[3],
            "--role",
            "secondary",
        ])
        .await
        .ok();
    assert!(
        out.stdout.contains("is no longer secondary contact"),
        "{}",
        out.stdout
    );
    let json = kc.json(&["contacts", n, "--role", "secondary"]).await;
    assert_eq!(json["contacts"].as_array().unwrap().len(), 3, "{json}");
    // Removing what is not there: not found, exit code 5.
    kc.run(&[
        "contacts",
        "remove",
        n,
        "--email",
        &secondaries[3],
        "--role",
        "secondary",
    ])
    .await
    .fails(5);

    // Replace (nobody held the renewal role yet).
    let renewal = fresh_email("renewal");
    let json = kc
        .json(&[
            "contacts",
            "replace",
            n,
            "--role",
            "renewal",
            "--email",
            &renewal,
            "--name",
            "Paul Durand",
        ])
        .await;
    assert_eq!(json["action"], "replaced");
    assert_eq!(json["contact"]["role"], "renewal");
    assert!(json.get("replaced").is_none(), "{json}");

    // Transfer the primary role; Camille keeps a secondary role.
    let json = kc
        .json(&[
            "contacts",
            "transfer-primary",
            n,
            "--to",
            &hugo.email,
            "--keep-role",
            "secondary",
        ])
        .await;
    assert_eq!(json["action"], "primary_transferred");
    assert_eq!(json["contact"]["role"], "primary");
    assert_eq!(json["contact"]["user_id"], hugo.id.as_str());
    assert_eq!(json["previous_primary"]["role"], "secondary");
    let json = kc.json(&["contacts", n]).await;
    let camille_doc = json["contacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["email"] == camille.email.as_str())
        .unwrap();
    assert_eq!(camille_doc["roles"], serde_json::json!(["secondary"]));

    // A site that is not among the caller's: exit code 5.
    let line = kc.run(&["contacts", "9999999"]).await.fails(5);
    assert!(line.contains("9999999"), "{line}");
}
