//! Harness of the `kc` tests: the five services of the suite in-process on one throwaway
//! database (kc-suite-tests' sandbox), and the real `kc` binary run as a process against
//! the gateway, with its own configuration directory (`XDG_CONFIG_HOME`) per test.
//!
//! Fixtures (people, sites) are made through the gateway as people and the operator make
//! them; everything the tests assert on goes through `kc`.

use std::path::PathBuf;
use std::process::Stdio;

use kc_proto::contacts::{self as cpb};
use kc_proto::gateway::{self as gw};
use kc_suite_tests::sandbox::login;
use kc_suite_tests::{PASSWORD, Person, Sandbox, Service};
use kc_testkit::grpc::authed;
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// The five services, called through the gateway.
pub struct Suite {
    pub sandbox: Sandbox,
}

kc_suite_tests::on_sandbox!(Suite);

impl Suite {
    /// The suite with the gateway's rate limits off (the tests sign in and write a lot from
    /// one address).
    pub async fn start() -> Self {
        Self::start_with_identity(&[]).await
    }

    /// The suite with more flags for identity (e.g. a short access token lifetime). The
    /// gateway's default deadline is 15 s rather than 5 s: these tests are about `kc`'s
    /// commands and output, and on a loaded CI machine a write's wait for the other service to
    /// apply it (rule T8) once took longer than 5 s and failed a grant.
    pub async fn start_with_identity(identity_flags: &[&str]) -> Self {
        let mut identity = vec!["--code-mail-interval", "0s"];
        identity.extend_from_slice(identity_flags);
        let sandbox = Sandbox::builder()
            .with(Service::Contacts)
            .with(Service::Access)
            .with(Service::Notification)
            .with(Service::Gateway)
            .flags(Service::Identity, &identity)
            .flags(
                Service::Gateway,
                &[
                    "--session-rate-limit",
                    "off",
                    "--write-rate-limit",
                    "off",
                    "--access-request-rate-limit",
                    "off",
                ],
            )
            .start()
            .await;
        Self { sandbox }
    }

    /// The gateway's address.
    pub fn gateway(&self) -> String {
        self.url(Service::Gateway)
    }

    /// A `kc` with a configuration directory of its own.
    pub fn kc(&self) -> Kc {
        Kc::offline(&self.gateway())
    }

    /// Registers `name` through the gateway with a fresh e-mail, proves it with the mailed
    /// code (I1) and signs it in.
    pub async fn person(&self, name: &str) -> Person {
        let email = fresh_email(name);
        self.gw()
            .register(gw::RegisterRequest {
                email: email.clone(),
                display_name: name.into(),
                password: PASSWORD.into(),
                locale: "en".into(),
            })
            .await
            .unwrap_or_else(|status| panic!("register {name}: {status:?}"));
        let code = self.code_reader().next_code(&email).await.code;
        self.gw()
            .verify_email(gw::VerifyEmailRequest {
                email: email.clone(),
                code,
                password: PASSWORD.into(),
            })
            .await
            .unwrap_or_else(|status| panic!("verify {name}: {status:?}"));
        login(&self.channel(Service::Gateway), &email).await
    }

    /// The operator creates a site with `primary` as primary contact, and `stc` as site
    /// technical contact with S&S active when given.
    pub async fn create_site(
        &self,
        name: &str,
        primary: &Person,
        stc: Option<&Person>,
    ) -> cpb::Site {
        let (site_number, customer_number) = self.numbers_from(4_100_000, 8_100_000);
        let person = |p: &Person| gw::ContactPerson {
            email: p.email.clone(),
            display_name: p.name.clone(),
            locale: String::new(),
            details: None,
        };
        self.gw()
            .create_site(authed(
                &self.operator.token,
                gw::CreateSiteRequest {
                    site_number,
                    customer_number,
                    name: name.into(),
                    country_code: "FR".into(),
                    language: "fr".into(),
                    program: cpb::Program::PassportAdvantage as i32,
                    support_active: stc.is_some(),
                    support_end_date: if stc.is_some() {
                        "2030-12-31".into()
                    } else {
                        String::new()
                    },
                    business_partner_email: String::new(),
                    primary_contact: Some(person(primary)),
                    site_technical_contact: stc.map(person),
                },
            ))
            .await
            .unwrap_or_else(|status| panic!("create site {name}: {status:?}"))
            .into_inner()
            .site
            .expect("the new site")
    }
}

/// The text of `field` in each entry of the JSON array `list`, in order (`json["sites"]`,
/// `"site_number"`); the test fails when `list` is not an array or an entry has no such text.
pub fn field_of_each<'a>(list: &'a Value, field: &str) -> Vec<&'a str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|entry| entry[field].as_str().unwrap())
        .collect()
}

/// A fresh login e-mail for `name`.
pub fn fresh_email(name: &str) -> String {
    let slug: String = name
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect::<String>()
        .to_lowercase();
    format!("{slug}.{}@cli.example", uuid::Uuid::new_v4().simple())
}

/// The `kc` binary with its own configuration directory.
pub struct Kc {
    home: tempfile::TempDir,
    gateway: String,
}

/// What one run of `kc` did.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// The run succeeded; panics with its stderr otherwise.
    #[track_caller]
    pub fn ok(self) -> Self {
        assert_eq!(self.code, 0, "kc failed: {}", self.stderr);
        self
    }

    /// The run failed with exit code `code` and one line on stderr, `error: …`; that line.
    #[track_caller]
    pub fn fails(self, code: i32) -> String {
        assert_eq!(
            self.code, code,
            "exit code; stdout: {} stderr: {}",
            self.stdout, self.stderr
        );
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line on stderr: {:?}", self.stderr);
        assert!(lines[0].starts_with("error: "), "{:?}", self.stderr);
        lines[0].to_owned()
    }

    /// Stdout as JSON.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {}", self.stdout))
    }
}

impl Kc {
    /// A `kc` for `gateway` without a suite (usage errors, an unreachable gateway).
    pub fn offline(gateway: &str) -> Self {
        Self {
            home: tempfile::tempdir().expect("a temporary directory"),
            gateway: gateway.to_owned(),
        }
    }

    /// The configuration directory (`XDG_CONFIG_HOME`).
    pub fn config_home(&self) -> PathBuf {
        self.home.path().to_path_buf()
    }

    /// The token file.
    pub fn token_file(&self) -> PathBuf {
        self.home.path().join("keycontacts").join("sessions.json")
    }

    /// The token file as JSON.
    pub fn tokens(&self) -> Value {
        let text = std::fs::read_to_string(self.token_file()).expect("the token file");
        serde_json::from_str(&text).expect("the token file is JSON")
    }

    /// The stored session of the suite's gateway.
    pub fn session(&self) -> Value {
        self.tokens()["gateways"][&self.gateway].clone()
    }

    /// Rewrites the token file.
    pub fn write_tokens(&self, tokens: &Value) {
        std::fs::write(
            self.token_file(),
            serde_json::to_vec_pretty(tokens).unwrap(),
        )
        .expect("write the token file");
    }

    /// Runs `kc args…`.
    pub async fn run(&self, args: &[&str]) -> Out {
        self.run_with_stdin(args, "").await
    }

    /// `kc args…` with this configuration directory, its standard streams piped; killed
    /// when dropped.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_kc"));
        command
            .args(args)
            .env_remove("KC_GATEWAY")
            .env("XDG_CONFIG_HOME", self.home.path())
            .env("HOME", self.home.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }

    /// Runs `kc args…` with `stdin` on its standard input.
    pub async fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Out {
        let mut child = self.command(args).spawn().expect("kc starts");
        let mut input = child.stdin.take().expect("stdin");
        input
            .write_all(stdin.as_bytes())
            .await
            .expect("write stdin");
        drop(input);
        let output =
            tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output())
                .await
                .unwrap_or_else(|_| panic!("kc {args:?} did not end within 60 s"))
                .expect("kc ends");
        Out {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8(output.stdout).expect("utf-8 stdout"),
            stderr: String::from_utf8(output.stderr).expect("utf-8 stderr"),
        }
    }

    /// Runs `kc args… --output json`, which must succeed: its document.
    pub async fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["--output", "json"]);
        self.run(&all).await.ok().json()
    }

    /// `kc login --gateway … --email … --password-stdin` with the fixtures' password.
    pub async fn login(&self, person: &Person) -> Out {
        self.run_with_stdin(
            &[
                "login",
                "--gateway",
                &self.gateway,
                "--email",
                &person.email,
                "--password-stdin",
            ],
            &format!("{PASSWORD}\n"),
        )
        .await
    }
}
