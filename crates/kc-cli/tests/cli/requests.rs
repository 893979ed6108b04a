//! `kc request-access`, `kc requests pending|approve|reject|mine|cancel`.

use crate::harness::Suite;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_goes_from_the_requester_to_the_approver_and_back() {
    let suite = Suite::start().await;
    let camille = suite.person("Camille Martin").await;
    let lucas = suite.person("Lucas Moreau").await;
    let site = suite.create_site("Paris", &camille, None).await;
    let (n, customer) = (site.site_number.as_str(), site.customer_number.as_str());
    let camille_kc = suite.kc();
    camille_kc.login(&camille).await.ok();
    let lucas_kc = suite.kc();
    lucas_kc.login(&lucas).await.ok();

    // The wrong customer number: not found, without saying which was wrong (S3).
    lucas_kc
        .run(&[
            "request-access",
            "--site",
            n,
            "--customer",
            "7999999",
            "--software",
            "full",
        ])
        .await
        .fails(5);
    // Tools and support in one request: a usage error.
    lucas_kc
        .run(&[
            "request-access",
            "--site",
            n,
            "--customer",
            customer,
            "--software",
            "full",
            "--support",
            "basic",
        ])
        .await
        .fails(2);

    let json = lucas_kc
        .json(&[
            "request-access",
            "--site",
            n,
            "--customer",
            customer,
            "--software",
            "full",
            "--justification",
            "I maintain the servers",
        ])
        .await;
    assert_eq!(json["request"]["state"], "pending");
    assert_eq!(json["request"]["kind"], "site-access");
    assert_eq!(json["request"]["requested_tools"]["software"], "full");
    let id = json["request"]["request_id"].as_str().unwrap().to_owned();

    // Camille sees it pending.
    let table = camille_kc
        .run(&["requests", "pending", n])
        .await
        .ok()
        .stdout;
    let line = table
        .lines()
        .find(|l| l.contains(&id))
        .expect("the request");
    assert!(
        line.contains(&lucas.email) && line.contains("software=full"),
        "{table}"
    );
    assert!(line.contains("I maintain the servers"), "{table}");
    let json = camille_kc.json(&["requests", "pending", n]).await;
    assert_eq!(json["requests"][0]["request_id"], id.as_str());
    assert_eq!(json["requests"][0]["requester_email"], lucas.email.as_str());

    // She approves less than asked.
    let json = camille_kc
        .json(&[
            "requests",
            "approve",
            &id,
            "--software",
            "downloads-only",
            "--reason",
            "downloads are enough",
        ])
        .await;
    assert_eq!(json["request"]["state"], "approved");
    assert_eq!(
        json["request"]["granted_tools"]["software"],
        "downloads-only"
    );
    assert_eq!(json["request"]["decision_reason"], "downloads are enough");
    let json = camille_kc.json(&["requests", "pending", n]).await;
    assert_eq!(json["requests"], serde_json::json!([]));

    // A support request, rejected with a reason; a third one cancelled by Lucas.
    let json = lucas_kc
        .json(&[
            "request-access",
            "--site",
            n,
            "--customer",
            customer,
            "--support",
            "basic",
        ])
        .await;
    assert_eq!(json["request"]["kind"], "support-access");
    let support_id = json["request"]["request_id"].as_str().unwrap().to_owned();
    // A rejection needs a reason (clap: exit code 2).
    assert_eq!(
        camille_kc
            .run(&["requests", "reject", &support_id])
            .await
            .code,
        2
    );
    let out = camille_kc
        .run(&[
            "requests",
            "reject",
            &support_id,
            "--reason",
            "not in the support contract",
        ])
        .await
        .ok();
    assert!(
        out.stdout.contains("rejected") && out.stdout.contains("not in the support contract"),
        "{}",
        out.stdout
    );
    let json = lucas_kc
        .json(&[
            "request-access",
            "--site",
            n,
            "--customer",
            customer,
            "--reporting",
            "view",
        ])
        .await;
    let third = json["request"]["request_id"].as_str().unwrap().to_owned();
    let json = lucas_kc.json(&["requests", "cancel", &third]).await;
    assert_eq!(json["request"]["state"], "cancelled");

    // Lucas's own requests, newest first.
    let json = lucas_kc.json(&["requests", "mine"]).await;
    let states: Vec<(&str, &str)> = json["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["request_id"].as_str().unwrap(),
                r["state"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        states,
        vec![
            (third.as_str(), "cancelled"),
            (support_id.as_str(), "rejected"),
            (id.as_str(), "approved")
        ]
    );
    let table = lucas_kc.run(&["requests", "mine"]).await.ok().stdout;
    assert!(
        table.starts_with("ID") && table.contains("approved"),
        "{table}"
    );

    // Deciding again: refused, exit code 6.
    camille_kc.run(&["requests", "approve", &id]).await.fails(6);
}
