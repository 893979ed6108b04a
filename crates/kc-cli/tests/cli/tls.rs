//! `kc` against a gateway that serves TLS (the gateway and identity as processes, with a
//! throwaway CA): `--ca-file` trusts the gateway's certificate; without it the public web
//! roots do not, and `kc` fails in one line with the exit code of an unreachable gateway.

use kc_testkit::process::{CoreProcesses, SuiteTls, bootstrap_operator};

use crate::harness::Kc;

const EMAIL: &str = "operator@keycontacts.test";
const PASSWORD: &str = "operator passphrase for kc over tls";

#[tokio::test]
async fn kc_signs_in_to_a_tls_gateway_trusting_its_ca_file() {
    let tls = SuiteTls::new();
    let db = kc_testkit::test_database().await;
    let core = CoreProcesses::start(&db.url).await;
    bootstrap_operator(&db.url, EMAIL, PASSWORD).await;
    let server_env = tls.env(false);
    let env: Vec<(&str, &str)> = server_env
        .iter()
        .map(|(name, value)| (*name, value.as_str()))
        .collect();
    let gateway = core.start_gateway(&db.url, &env).await;
    assert!(gateway.url().starts_with("https://"), "{}", gateway.url());

    let kc = Kc::offline(&gateway.url());
    let ca = tls.pki.ca_file.display().to_string();
    let login = ["login", "--email", EMAIL, "--password-stdin"];
    let untrusted = kc
        .run_with_stdin(
            &[&["--gateway", &gateway.url()][..], &login].concat(),
            &format!("{PASSWORD}\n"),
        )
        .await
        .fails(7);
    assert!(untrusted.contains("gateway"), "{untrusted}");

    kc.run_with_stdin(
        &[&["--gateway", &gateway.url(), "--ca-file", &ca][..], &login].concat(),
        &format!("{PASSWORD}\n"),
    )
    .await
    .ok();
    let me = kc.json(&["--ca-file", &ca, "whoami"]).await;
    assert_eq!(me["user"]["email"], EMAIL);
    assert_eq!(me["gateway"], gateway.url().as_str());
}
