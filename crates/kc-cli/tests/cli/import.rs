//! `kc import contacts` and `kc export contacts`: a small file with one bad row through the
//! real `kc` (its dry run, its run, its second run), then the export of the site read back by
//! an import that changes nothing.

use crate::harness::{Suite, fresh_email};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_imports_with_its_refused_row_then_exports_and_imports_back_unchanged() {
    let suite = Suite::start().await;
    let camille = suite.person("Camille Martin").await;
    let site = suite.create_site("Paris", &camille, None).await;
    let n = site.site_number.as_str();
    let kc = suite.kc();
    kc.login(&camille).await.ok();
    // Access management learns that Camille is the site's primary from the registry's
    // events, a moment after the site is created: the gateway authorizes the import's rows
    // with it (rule T8).
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while kc.run(&["access", n]).await.code != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "access management never learned of the site's primary"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("contacts.csv");
    let (ana, leo) = (fresh_email("ana"), fresh_email("leo"));
    std::fs::write(
        &file,
        format!(
            "site_number,email,display_name,role,phone,job_title\n\
             {n},{ana},Ana Lima,secondary,+33 1 23 45 67 89,Acheteuse\n\
             {n},{leo},Léo Roux,site-user,,\n\
             {n},not-an-email,Nobody,site-user,,\n"
        ),
    )
    .expect("write the file");
    let path = file.to_str().expect("a UTF-8 path");

    // The dry run: two rows valid, the bad one refused naming its column; nothing written;
    // exit code 6 since a row was refused.
    let out = kc.run(&["import", "contacts", path, "--dry-run"]).await;
    let stdout = out.stdout.clone();
    let line = out.fails(6);
    assert_eq!(line, "error: 1 of the rows were refused");
    assert_eq!(stdout.matches("VALID").count(), 2, "{stdout}");
    assert!(stdout.contains("line     4  REFUSED"), "{stdout}");
    assert!(stdout.contains("[email]"), "{stdout}");
    assert!(
        stdout.contains("3 rows: 2 valid (dry run: nothing written), 0 unchanged, 1 refused"),
        "{stdout}"
    );
    let contacts = kc.json(&["contacts", n]).await;
    assert_eq!(
        contacts["contacts"].as_array().unwrap().len(),
        1,
        "{contacts}"
    );

    // The import: two rows applied (both invited, rule I1), one refused.
    let out = kc.run(&["import", "contacts", path]).await;
    let stdout = out.stdout.clone();
    out.fails(6);
    assert!(
        stdout.contains("line     2  APPLIED    invited the person (rule I1); assigned SECONDARY"),
        "{stdout}"
    );
    assert!(
        stdout.contains("3 rows: 2 applied, 0 unchanged, 1 refused"),
        "{stdout}"
    );
    let contacts = kc.json(&["contacts", n]).await;
    assert_eq!(
        contacts["contacts"].as_array().unwrap().len(),
        3,
        "{contacts}"
    );

    // Again, as JSON: nothing changes.
    let out = kc
        .run(&["import", "contacts", path, "--output", "json"])
        .await;
    let document = out.json();
    out.fails(6);
    assert_eq!(document["summary"]["unchanged"], 2, "{document}");
    assert_eq!(document["summary"]["refused"], 1, "{document}");
    assert_eq!(document["rows"][2]["line"], 4, "{document}");
    assert_eq!(document["rows"][2]["field"], "email", "{document}");
    assert_eq!(
        document["rows"][2]["code"], "INVALID_ARGUMENT",
        "{document}"
    );

    // The export: the CSV format the import reads, one row per contact role.
    let exported = dir.path().join("export.csv");
    let exported_path = exported.to_str().expect("a UTF-8 path");
    kc.run(&[
        "export",
        "contacts",
        "--customer",
        &site.customer_number,
        "--file",
        exported_path,
    ])
    .await
    .ok();
    let text = std::fs::read_to_string(&exported).expect("the export");
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("site_number,email,display_name,locale,role,phone"),
        "{text}"
    );
    assert_eq!(lines.len(), 4, "a header and three contacts: {text}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("{n},{ana},Ana Lima,"))
                && l.contains(",secondary,+33123456789,Acheteuse,")),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&camille.email) && l.contains(",primary,")),
        "{text}"
    );

    // Importing the export changes nothing.
    let out = kc.run(&["import", "contacts", exported_path]).await.ok();
    assert!(
        out.stdout
            .contains("3 rows: 0 applied, 3 unchanged, 0 refused"),
        "{}",
        out.stdout
    );
}
