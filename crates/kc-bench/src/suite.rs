//! The suite's services as xtask runs them: what each one needs, its database role and schema,
//! starting it, waiting until it serves, and stopping it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::workspace;

/// One service of the suite.
#[derive(Debug)]
pub struct Service {
    /// Short name: `identity`. Names its `KC_<NAME>_URL` variable and `--<name>-url` flag.
    pub name: &'static str,
    /// Binary (and package) name.
    pub bin: &'static str,
    /// Postgres schema it owns; it connects as role `kc_<schema>`, which owns that schema.
    pub schema: Option<&'static str>,
    /// Port it listens on, on 127.0.0.1 (see ARCHITECTURE.md).
    pub port: u16,
    /// Services it calls that start before it: it gets their URLs (`--<name>-url`). Every
    /// service calls identity, at least for the keys that verify tokens.
    pub calls: &'static [&'static str],
    /// Services it calls that start after it, because they call it too (the registry follows
    /// access management's events, whose own projection follows the registry's): it gets
    /// their URLs when they run in the same suite and runs without them otherwise (the
    /// setting is optional). Channels connect lazily and consumers retry, so neither has to
    /// serve before the other starts.
    pub calls_later: &'static [&'static str],
    /// Whether it calls other services as itself, with a service account of its own (a
    /// service that only fetches identity's public keys needs none). A service with
    /// [`Service::calls_later`] uses its account for those calls: it gets it only with one
    /// of their URLs.
    pub service_account: bool,
    /// Fully qualified name of its gRPC service, whose health turns SERVING when it is ready.
    pub grpc_service: &'static str,
    /// Fully qualified names of the other gRPC services it serves on the same port.
    pub also_serves: &'static [&'static str],
    /// Whether it sends e-mail: it is given a [`Mail`] destination, an SMTP server or a
    /// directory for `.eml` files.
    pub sends_mail: bool,
    /// The key files it is given (see [`KeyFiles`]), in every command of its binary.
    pub keys: &'static [KeyFile],
}

/// The suite, in start order: a service comes after the services it calls.
pub const SERVICES: &[Service] = &[
    Service {
        name: "identity",
        bin: "kc-identity",
        schema: Some("identity"),
        port: 50051,
        calls: &[],
        calls_later: &[],
        service_account: false,
        grpc_service: "keycontacts.identity.v1.IdentityService",
        also_serves: &[],
        sends_mail: false,
        keys: &[KeyFile::KeyEncryption, KeyFile::CodeSealing],
    },
    Service {
        name: "contacts",
        bin: "kc-contacts",
        schema: Some("contacts"),
        port: 50052,
        calls: &["identity"],
        // T8: its projection of explicit grants follows access management's events, with
        // its own account; access starts after it (access follows the registry's events).
        // The compliance report follows notification's delivery outcomes the same way.
        calls_later: &["access", "notification"],
        service_account: true,
        grpc_service: "keycontacts.contacts.v1.ContactRegistryService",
        also_serves: &[],
        sends_mail: false,
        // C11: the codes that prove new notification e-mails are sealed to notification.
        keys: &[KeyFile::CodeSealing],
    },
    Service {
        name: "access",
        bin: "kc-access",
        schema: Some("access"),
        port: 50053,
        calls: &["identity", "contacts"],
        calls_later: &[],
        service_account: true,
        grpc_service: "keycontacts.access.v1.AccessManagementService",
        also_serves: &[],
        sends_mail: false,
        keys: &[],
    },
    Service {
        name: "notification",
        bin: "kc-notification",
        schema: Some("notification"),
        port: 50054,
        calls: &["identity", "contacts", "access"],
        calls_later: &[],
        service_account: true,
        grpc_service: "keycontacts.notification.v1.NotificationService",
        also_serves: &[],
        sends_mail: true,
        keys: &[KeyFile::CodeOpening],
    },
    // The public entry point, started last: it calls the four others (lazily: it serves at
    // once, and a call that needs a service that is down is UNAVAILABLE).
    Service {
        name: "gateway",
        bin: "kc-gateway",
        schema: None,
        port: 50050,
        calls: &["identity", "contacts", "access", "notification"],
        calls_later: &[],
        service_account: true,
        grpc_service: "keycontacts.gateway.v1.GatewayService",
        also_serves: &["keycontacts.gateway.v1.AuthorizationService"],
        sends_mail: false,
        keys: &[],
    },
];

/// How long a service may take from spawn to SERVING.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a service may take to drain after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

impl Service {
    /// The service called `name`.
    pub fn named(name: &str) -> anyhow::Result<&'static Service> {
        SERVICES
            .iter()
            .find(|service| service.name == name)
            .ok_or_else(|| anyhow!("no service named {name} in the suite"))
    }

    /// Its database role, if it has a schema.
    pub fn role(&self) -> Option<String> {
        self.schema.map(|schema| format!("kc_{schema}"))
    }

    /// Its address.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Port of its Prometheus endpoint under `cargo xtask up`: 9090 for the gateway's
    /// 50050, 9091 for identity's 50051, and so on.
    pub fn metrics_port(&self) -> u16 {
        9090 + self.port.saturating_sub(50050)
    }

    /// Address of its Prometheus endpoint under `cargo xtask up`, `127.0.0.1:<port>`.
    pub fn metrics_addr(&self) -> String {
        format!("127.0.0.1:{}", self.metrics_port())
    }

    /// Its URL, for the services that call it.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// The variable that gives other services its URL: `KC_IDENTITY_URL`.
    pub fn url_var(&self) -> String {
        format!("KC_{}_URL", self.name.to_uppercase())
    }

    /// Its service account's name.
    pub fn account_name(&self) -> String {
        self.bin.to_owned()
    }

    /// Path of its binary.
    pub fn binary(&self) -> anyhow::Result<PathBuf> {
        let path = workspace::bin_dir().join(self.bin);
        if !path.is_file() {
            bail!(
                "{} not found: build it with `cargo build --bins`",
                path.display()
            );
        }
        Ok(path)
    }

    /// Path of its binary in the release profile (`cargo build --release`).
    pub fn release_binary(&self) -> anyhow::Result<PathBuf> {
        let path = workspace::target_dir().join("release").join(self.bin);
        if !path.is_file() {
            bail!(
                "{} not found: build it with `cargo build --release -p {}`",
                path.display(),
                self.bin
            );
        }
        Ok(path)
    }

    /// A command running its binary with `args`, with `database_url` as `DATABASE_URL` (and
    /// none when it has no database, so that no other URL leaks in from the environment).
    pub fn command(&self, database_url: Option<&str>) -> anyhow::Result<Command> {
        Ok(self.command_with(self.binary()?, database_url))
    }

    /// Like [`Service::command`], but running `binary` (another build of it, e.g.
    /// [`Service::release_binary`]).
    ///
    /// A service that sends mail inherits none of the variables that say where mail goes
    /// ([`MAIL_VARS`]): [`Service::env`] gives it its destination explicitly. A service with
    /// [`Service::keys`] gets the files of [`KeyFiles::local`] (and inherits no other).
    pub fn command_with(&self, binary: PathBuf, database_url: Option<&str>) -> Command {
        let mut command = Command::new(binary);
        command
            .current_dir(workspace::root())
            .env("KC_LOG_FORMAT", "pretty")
            // Metrics only where the caller asks (`cargo xtask up`): an inherited address
            // would be bound by the first of several processes only.
            .env_remove("KC_METRICS_LISTEN")
            .kill_on_drop(true);
        match database_url {
            Some(url) => command.env("DATABASE_URL", url),
            None => command.env_remove("DATABASE_URL"),
        };
        if self.sends_mail {
            for var in MAIL_VARS {
                command.env_remove(var);
            }
        }
        for key in self.keys {
            match KeyFiles::local() {
                Ok(files) => command.env(key.var(), files.path(*key)),
                // The binary then fails at start naming the setting it could not read.
                Err(_) => command.env_remove(key.var()),
            };
        }
        command
    }

    /// Every service it may call: [`Service::calls`], then [`Service::calls_later`].
    pub fn callees(&self) -> impl Iterator<Item = &'static str> + use<> {
        self.calls.iter().chain(self.calls_later).copied()
    }

    /// Whether it is given its service account in a suite where `runs` says which services
    /// run (by short name): always for a service with an account, but one with
    /// [`Service::calls_later`] only when one of those runs too.
    pub fn needs_account(&self, runs: impl Fn(&str) -> bool) -> bool {
        self.service_account
            && (self.calls_later.is_empty() || self.calls_later.iter().any(|later| runs(later)))
    }

    /// The environment that wires it into a running suite: the URL of each service it calls
    /// (from `urls`, by short name: each of [`Service::calls`] must be there, each of
    /// [`Service::calls_later`] when it runs in the same suite), its service account's
    /// credentials (`account`, when it [needs one](Service::needs_account)), and where its
    /// mail goes (`mail`, which a service that sends mail needs).
    pub fn env(
        &self,
        urls: &BTreeMap<&'static str, String>,
        account: Option<&Account>,
        mail: Option<&Mail>,
    ) -> anyhow::Result<Vec<(String, String)>> {
        let mut env = Vec::new();
        for called in self.calls {
            let called = Service::named(called)?;
            let url = urls
                .get(called.name)
                .ok_or_else(|| anyhow!("{} must start before {}", called.bin, self.bin))?;
            env.push((called.url_var(), url.clone()));
        }
        for later in self.calls_later {
            let later = Service::named(later)?;
            if let Some(url) = urls.get(later.name) {
                env.push((later.url_var(), url.clone()));
            }
        }
        if self.needs_account(|name| urls.contains_key(name)) {
            let account =
                account.ok_or_else(|| anyhow!("{} needs its service account", self.bin))?;
            env.push(("KC_CLIENT_ID".to_owned(), account.client_id.clone()));
            env.push(("KC_CLIENT_SECRET".to_owned(), account.client_secret.clone()));
        }
        if self.sends_mail {
            let mail = mail.ok_or_else(|| anyhow!("{} needs a mail destination", self.bin))?;
            env.extend(mail.env());
        }
        Ok(env)
    }
}

/// A key file a service reads at start (32 bytes, base64; mode 0600).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFile {
    /// Identity's key-encryption key (`--key-encryption-key-file`): encrypts the token
    /// signing keys at rest and keys the MAC of verification codes.
    KeyEncryption,
    /// Notification's public code-sealing key, given to identity and the contact registry
    /// (`--code-sealing-key-file`): both seal every code they mail to it.
    CodeSealing,
    /// Notification's secret code-opening key (`--code-opening-key-file`), which opens them.
    CodeOpening,
}

impl KeyFile {
    /// The variable that names the file to the service.
    pub fn var(self) -> &'static str {
        match self {
            KeyFile::KeyEncryption => "KC_KEY_ENCRYPTION_KEY_FILE",
            KeyFile::CodeSealing => "KC_CODE_SEALING_KEY_FILE",
            KeyFile::CodeOpening => "KC_CODE_OPENING_KEY_FILE",
        }
    }

    /// The file's name in the key directory.
    fn file_name(self) -> &'static str {
        match self {
            KeyFile::KeyEncryption => "key-encryption-key",
            KeyFile::CodeSealing => "code-sealing-key",
            KeyFile::CodeOpening => "code-opening-key",
        }
    }
}

/// The key files of a local suite, made once in a directory and kept there across runs: the
/// key-encryption key must stay the one that encrypted the signing keys in the database, and
/// the code keys the pair that sealed the codes in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFiles {
    dir: PathBuf,
}

impl KeyFiles {
    /// Directory of the key files of `cargo xtask up` (and of the benchmark's services),
    /// under target/kc-up.
    pub fn local_dir() -> PathBuf {
        workspace::target_dir().join("kc-up").join("keys")
    }

    /// The key files in [`KeyFiles::local_dir`], made on first use in this process (and
    /// only if missing on disk).
    pub fn local() -> anyhow::Result<&'static KeyFiles> {
        static LOCAL: std::sync::OnceLock<Result<KeyFiles, String>> = std::sync::OnceLock::new();
        LOCAL
            .get_or_init(|| {
                KeyFiles::ensure(&KeyFiles::local_dir()).map_err(|err| format!("{err:#}"))
            })
            .as_ref()
            .map_err(|err| anyhow!("{err}"))
    }

    /// The key files in `dir`, each made (mode 0600) unless it exists. The code-sealing key
    /// is made from the code-opening key, so the two are remade together.
    pub fn ensure(dir: &Path) -> anyhow::Result<KeyFiles> {
        use std::os::unix::fs::DirBuilderExt;
        // Only the key directory itself is private: a parent made here (e.g. `target/kc-up`,
        // which also holds the local Postgres's data directory) must stay traversable by the
        // `postgres` user the cluster runs as.
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("could not create {}", parent.display()))?;
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("could not create the key directory {}", dir.display()))?;
        let files = KeyFiles {
            dir: dir.to_path_buf(),
        };
        let kek = files.path(KeyFile::KeyEncryption);
        if !kek.exists() {
            write_private(&kek, &kc_runtime::secrets::generate_key()?)?;
        }
        let (opening, sealing) = (
            files.path(KeyFile::CodeOpening),
            files.path(KeyFile::CodeSealing),
        );
        if !opening.exists() || !sealing.exists() {
            let key = kc_runtime::secrets::OpeningKey::generate()?;
            write_private(&opening, &key.to_text())?;
            write_private(&sealing, &key.sealing_key().to_text())?;
        }
        Ok(files)
    }

    /// The directory that holds them.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of `key`.
    pub fn path(&self, key: KeyFile) -> PathBuf {
        self.dir.join(key.file_name())
    }
}

/// The variables that tell a service that sends mail where it goes: its SMTP server and
/// credentials (`--smtp-url`, `--smtp-username`, `--smtp-password`) or its mail directory
/// (`--mail-dir`).
pub const MAIL_VARS: [&str; 4] = [
    "KC_SMTP_URL",
    "KC_SMTP_USERNAME",
    "KC_SMTP_PASSWORD",
    "KC_MAIL_DIR",
];

/// Where a service that sends mail delivers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mail {
    /// One `.eml` file per message in this directory (`--mail-dir`).
    Dir(PathBuf),
    /// An SMTP server (`--smtp-url`), with credentials when it wants them.
    Smtp {
        /// `smtp://host:port`, `smtp://host:port?tls=required` or `smtps://host:port`.
        url: String,
        /// `--smtp-username`.
        username: Option<String>,
        /// `--smtp-password`.
        password: Option<String>,
    },
}

impl Mail {
    /// The destination xtask's own environment names (`KC_SMTP_URL` with
    /// `KC_SMTP_USERNAME` and `KC_SMTP_PASSWORD`, else `KC_MAIL_DIR`), or else `default_dir`.
    pub fn from_env_or(default_dir: PathBuf) -> Mail {
        Self::from_lookup(|var| std::env::var(var).ok(), default_dir)
    }

    /// Like [`Mail::from_env_or`], reading variables with `lookup`; empty values count as
    /// unset.
    fn from_lookup(lookup: impl Fn(&str) -> Option<String>, default_dir: PathBuf) -> Mail {
        let var = |name: &str| lookup(name).filter(|value| !value.trim().is_empty());
        match var("KC_SMTP_URL") {
            Some(url) => Mail::Smtp {
                url,
                username: var("KC_SMTP_USERNAME"),
                password: var("KC_SMTP_PASSWORD"),
            },
            None => Mail::Dir(var("KC_MAIL_DIR").map_or(default_dir, PathBuf::from)),
        }
    }

    /// The environment that gives this destination to a service.
    fn env(&self) -> Vec<(String, String)> {
        match self {
            Mail::Dir(dir) => vec![("KC_MAIL_DIR".to_owned(), dir.display().to_string())],
            Mail::Smtp {
                url,
                username,
                password,
            } => {
                let mut env = vec![("KC_SMTP_URL".to_owned(), url.clone())];
                if let Some(username) = username {
                    env.push(("KC_SMTP_USERNAME".to_owned(), username.clone()));
                }
                if let Some(password) = password {
                    env.push(("KC_SMTP_PASSWORD".to_owned(), password.clone()));
                }
                env
            }
        }
    }

    /// Where mail goes, for people: the directory, or the SMTP server's URL without its
    /// password.
    pub fn describe(&self) -> String {
        match self {
            Mail::Dir(dir) => format!(
                "{} (one <notification_id>.eml file per e-mail)",
                dir.display()
            ),
            Mail::Smtp { url, username, .. } => {
                let shown = match url::Url::parse(url) {
                    Ok(mut parsed) => {
                        if parsed.password().is_some() {
                            let _ = parsed.set_password(Some("***"));
                        }
                        parsed.to_string()
                    }
                    Err(_) => "<unparsable url>".to_owned(),
                };
                match username {
                    Some(username) => format!("the SMTP server {shown} (as {username})"),
                    None => format!("the SMTP server {shown}"),
                }
            }
        }
    }
}

/// A service account's credentials, as `kc-identity create-service-account` prints them.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Account {
    /// `client_id=` line.
    pub client_id: String,
    /// `client_secret=` line.
    pub client_secret: String,
}

impl Account {
    /// Parses the `client_id=…` and `client_secret=…` lines of `output`.
    pub fn parse(output: &str) -> anyhow::Result<Account> {
        let value = |key: &str| {
            output
                .lines()
                .find_map(|line| line.trim().strip_prefix(key)?.strip_prefix('='))
                .map(str::to_owned)
                .ok_or_else(|| anyhow!("no {key}= line in the output of create-service-account"))
        };
        Ok(Account {
            client_id: value("client_id")?,
            client_secret: value("client_secret")?,
        })
    }
}

/// Creates, idempotently, each service's login role and the schema it owns in the database of
/// `admin_url` (a superuser URL), and returns each service's own URL by name.
///
/// `passwords` holds the roles' passwords; `None` when the server trusts local connections.
pub async fn provision(
    admin_url: &str,
    passwords: Option<&BTreeMap<String, String>>,
) -> anyhow::Result<BTreeMap<&'static str, String>> {
    let mut conn = PgConnection::connect(admin_url)
        .await
        .context("could not connect to postgres as superuser")?;
    let database: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&mut conn)
        .await?;
    let mut urls = BTreeMap::new();
    for service in SERVICES {
        let (Some(schema), Some(role)) = (service.schema, service.role()) else {
            continue;
        };
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = $1)")
                .bind(&role)
                .fetch_one(&mut conn)
                .await?;
        let password = match passwords {
            Some(passwords) => Some(
                passwords
                    .get(&role)
                    .ok_or_else(|| anyhow!("no password for role {role}"))?,
            ),
            None => None,
        };
        let password_clause = match password {
            Some(password) => format!("PASSWORD {}", quote_literal(password)),
            None => "PASSWORD NULL".to_owned(),
        };
        let role_ident = quote_ident(&role);
        let schema_ident = quote_ident(schema);
        let database_ident = quote_ident(&database);
        let statements = [
            if exists {
                format!("ALTER ROLE {role_ident} WITH LOGIN {password_clause}")
            } else {
                format!("CREATE ROLE {role_ident} WITH LOGIN {password_clause}")
            },
            format!("CREATE SCHEMA IF NOT EXISTS {schema_ident} AUTHORIZATION {role_ident}"),
            format!("ALTER SCHEMA {schema_ident} OWNER TO {role_ident}"),
            format!(
                "ALTER ROLE {role_ident} IN DATABASE {database_ident} SET search_path = {schema_ident}"
            ),
            // `CREATE SCHEMA IF NOT EXISTS` (sqlx's `create-schemas`, run by every migration)
            // checks this privilege even when the schema exists.
            format!("GRANT CREATE ON DATABASE {database_ident} TO {role_ident}"),
            // Postgres 15 already denies this; older servers granted it to everyone.
            "REVOKE CREATE ON SCHEMA public FROM PUBLIC".to_owned(),
        ];
        for statement in statements {
            sqlx::raw_sql(AssertSqlSafe(statement))
                .execute(&mut conn)
                .await
                .with_context(|| format!("could not set up role {role} and schema {schema}"))?;
        }
        let mut url = url::Url::parse(admin_url).context("bad database url")?;
        url.set_username(&role)
            .and_then(|()| url.set_password(password.map(String::as_str)))
            .map_err(|()| anyhow!("the database url cannot hold a user name"))?;
        urls.insert(service.name, url.to_string());
    }
    conn.close().await?;
    Ok(urls)
}

/// A fingerprint of the database of `admin_url`: the server's system identifier and the
/// database's oid. It changes when the database is recreated, and with it whatever was created
/// in the database (the operator, service accounts) has to be created again.
pub async fn fingerprint(admin_url: &str) -> anyhow::Result<String> {
    let mut conn = PgConnection::connect(admin_url)
        .await
        .context("could not connect to postgres as superuser")?;
    let fingerprint: String = sqlx::query_scalar(
        "SELECT (SELECT system_identifier::text FROM pg_control_system()) || '/' || \
         (SELECT oid::text FROM pg_database WHERE datname = current_database())",
    )
    .fetch_one(&mut conn)
    .await?;
    conn.close().await?;
    Ok(fingerprint)
}

/// `ident` as a quoted SQL identifier.
pub fn quote_ident(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// `text` as a quoted SQL string literal.
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// A running service.
#[derive(Debug)]
pub struct Running {
    /// Which service.
    pub service: &'static Service,
    /// Its process.
    pub child: Child,
    /// Address it listens on, `127.0.0.1:<port>`.
    pub addr: String,
}

/// Spawns `service` with `env` on its port, its output prefixed with its name.
pub fn spawn(
    service: &'static Service,
    database_url: Option<&str>,
    env: &[(String, String)],
) -> anyhow::Result<Running> {
    spawn_on(
        service,
        service.command(database_url)?,
        &service.addr(),
        env,
    )
}

/// Spawns `command` (a [`Service::command`] or [`Service::command_with`] of `service`) with
/// `env`, listening on `addr` instead of the service's own port, its output prefixed with the
/// service's name.
pub fn spawn_on(
    service: &'static Service,
    mut command: Command,
    addr: &str,
    env: &[(String, String)],
) -> anyhow::Result<Running> {
    command
        .arg("--listen")
        .arg(addr)
        .envs(env.iter().map(|(key, value)| (key, value)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Out of the terminal's process group: Ctrl-C reaches xtask only, which stops the
        // services in order.
        .process_group(0);
    let mut child = command
        .spawn()
        .with_context(|| format!("could not start {}", service.bin))?;
    if let Some(stdout) = child.stdout.take() {
        tokio::spawn(forward(service.name, stdout, false));
    }
    if let Some(stderr) = child.stderr.take() {
        tokio::spawn(forward(service.name, stderr, true));
    }
    Ok(Running {
        service,
        child,
        addr: addr.to_owned(),
    })
}

/// Copies `output` line by line to ours, each line prefixed with `name`.
async fn forward(name: &'static str, output: impl AsyncRead + Unpin, to_stderr: bool) {
    let mut lines = BufReader::new(output).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if to_stderr {
            eprintln!("{name:>12} | {line}");
        } else {
            println!("{name:>12} | {line}");
        }
    }
}

impl Running {
    /// Waits until the service reports SERVING, failing if it exits first or takes too long.
    pub async fn wait_until_serving(&mut self) -> anyhow::Result<()> {
        let service = self.service;
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{}", self.addr))?
            .connect_timeout(Duration::from_secs(1))
            .timeout(Duration::from_secs(2));
        let serving = async {
            // There is no readiness signal to wait on but the health service itself: poll it.
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tick.tick().await;
                if is_serving(&endpoint, service.grpc_service).await {
                    return;
                }
            }
        };
        tokio::select! {
            status = self.child.wait() => {
                let status = status?;
                bail!("{} exited before it was ready ({status})", service.bin)
            }
            () = serving => Ok(()),
            () = tokio::time::sleep(START_TIMEOUT) => bail!(
                "{} did not report SERVING on {} within {}s",
                service.bin,
                self.addr,
                START_TIMEOUT.as_secs()
            ),
        }
    }

    /// Sends SIGTERM and waits for the service to drain and exit; kills it after
    /// `STOP_TIMEOUT`.
    pub async fn stop(&mut self) -> anyhow::Result<ExitStatus> {
        let bin = self.service.bin;
        if let Some(pid) = self.child.id() {
            let pid = i32::try_from(pid)
                .ok()
                .and_then(rustix::process::Pid::from_raw)
                .ok_or_else(|| anyhow!("bad pid {pid} of {bin}"))?;
            // It may have exited in the meantime; waiting below tells.
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        match tokio::time::timeout(STOP_TIMEOUT, self.child.wait()).await {
            Ok(status) => Ok(status?),
            Err(_) => {
                eprintln!(
                    "xtask: {bin} did not stop within {}s, killing it",
                    STOP_TIMEOUT.as_secs()
                );
                self.child.kill().await?;
                Ok(self.child.wait().await?)
            }
        }
    }
}

/// Whether the server at `endpoint` reports `service` (or, if it does not know that name, the
/// whole server) as SERVING.
async fn is_serving(endpoint: &tonic::transport::Endpoint, service: &str) -> bool {
    let Ok(channel) = endpoint.connect().await else {
        return false;
    };
    let mut client = HealthClient::new(channel);
    let check = |name: &str| HealthCheckRequest {
        service: name.to_owned(),
    };
    match client.check(check(service)).await {
        Ok(response) => response.into_inner().status() == ServingStatus::Serving,
        Err(status) if status.code() == tonic::Code::NotFound => client
            .check(check(""))
            .await
            .is_ok_and(|response| response.into_inner().status() == ServingStatus::Serving),
        Err(_) => false,
    }
}

/// Runs `command` to completion, with its output captured; fails with that output unless it
/// succeeds.
pub async fn output(mut command: Command, what: &str) -> anyhow::Result<String> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("could not run {what}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        bail!("{what} failed ({}):\n{}", output.status, stderr.trim_end());
    }
    Ok(stdout)
}

/// A random password: 24 random bytes, hex-encoded.
pub fn random_password() -> anyhow::Result<String> {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).map_err(|err| anyhow!("no randomness: {err}"))?;
    Ok(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
}

/// Writes `contents` to `path`, readable by the owner only.
pub fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("could not write {}", path.display()))?;
    file.write_all(contents.as_bytes())
        .with_context(|| format!("could not write {}", path.display()))
}

/// Stops the services in reverse start order: callers before the services they call.
pub async fn stop_all(running: &mut [Running]) {
    for service in running.iter_mut().rev() {
        let bin = service.service.bin;
        eprintln!("xtask: stopping {bin}");
        match service.stop().await {
            Ok(status) if status.success() => {}
            Ok(status) => eprintln!("xtask: {bin} exited with {status}"),
            Err(err) => eprintln!("xtask: could not stop {bin}: {err:#}"),
        }
    }
}

/// The signals that stop `cargo xtask up` and the benchmark: SIGINT (Ctrl-C), SIGTERM and
/// SIGHUP.
pub struct Signals {
    interrupt: Signal,
    terminate: Signal,
    hangup: Signal,
}

impl Signals {
    /// Listens for the three signals.
    pub fn new() -> anyhow::Result<Self> {
        let listen = |kind| signal(kind).context("could not listen for signals");
        Ok(Self {
            interrupt: listen(SignalKind::interrupt())?,
            terminate: listen(SignalKind::terminate())?,
            hangup: listen(SignalKind::hangup())?,
        })
    }

    /// Waits for the next signal; returns its name.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.hangup.recv() => "SIGHUP",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_come_after_the_services_they_call() {
        for (index, service) in SERVICES.iter().enumerate() {
            for called in service.calls {
                let position = SERVICES.iter().position(|s| s.name == *called);
                assert!(
                    position.is_some_and(|position| position < index),
                    "{} calls {called}, which must come before it",
                    service.name
                );
            }
            for later in service.calls_later {
                let position = SERVICES.iter().position(|s| s.name == *later);
                assert!(
                    position.is_some_and(|position| position > index),
                    "{} calls {later} later, which must come after it",
                    service.name
                );
                assert!(
                    service.service_account,
                    "{} calls {later} as itself: it needs a service account",
                    service.name
                );
            }
        }
    }

    #[test]
    fn ports_are_distinct() {
        let mut ports: Vec<u16> = SERVICES
            .iter()
            .flat_map(|s| [s.port, s.metrics_port()])
            .collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 2 * SERVICES.len());
    }

    #[test]
    fn accounts_parse_from_create_service_account_output() {
        let account = Account::parse("client_id=abc\nclient_secret=s3=cr=t\n").unwrap();
        assert_eq!(account.client_id, "abc");
        assert_eq!(account.client_secret, "s3=cr=t");
        assert!(Account::parse("client_id=abc\n").is_err());
    }

    #[test]
    fn every_service_is_wired_from_its_row() {
        let urls: BTreeMap<&'static str, String> = SERVICES
            .iter()
            .map(|service| (service.name, service.url()))
            .collect();
        let account = Account {
            client_id: "id".to_owned(),
            client_secret: "secret".to_owned(),
        };
        let mail = Mail::Dir(PathBuf::from("/tmp/mail"));
        for service in SERVICES {
            let env: BTreeMap<String, String> = service
                .env(&urls, Some(&account), Some(&mail))
                .unwrap()
                .into_iter()
                .collect();
            for called in service.callees() {
                let called = Service::named(called).unwrap();
                assert_eq!(env.get(&called.url_var()), Some(&called.url()));
            }
            assert_eq!(env.contains_key("KC_CLIENT_ID"), service.service_account);
            assert_eq!(env.contains_key("KC_MAIL_DIR"), service.sends_mail);
        }
        // T8: the registry follows access management (and, for the compliance report,
        // notification) with its own account when they run in the same suite, and runs
        // without them (the flags go together) otherwise.
        let contacts = Service::named("contacts").unwrap();
        assert_eq!(
            contacts.callees().collect::<Vec<_>>(),
            ["identity", "access", "notification"]
        );
        let without_access = BTreeMap::from([("identity", "http://x".to_owned())]);
        let env: BTreeMap<String, String> = contacts
            .env(&without_access, Some(&account), None)
            .unwrap()
            .into_iter()
            .collect();
        assert_eq!(
            env.keys().map(String::as_str).collect::<Vec<_>>(),
            ["KC_IDENTITY_URL"]
        );
        assert!(!contacts.needs_account(|name| without_access.contains_key(name)));
        assert!(contacts.needs_account(|name| urls.contains_key(name)));
        assert!(contacts.env(&urls, None, None).is_err());
        let notification = Service::named("notification").unwrap();
        assert!(notification.env(&urls, Some(&account), None).is_err());
        assert!(notification.env(&urls, None, Some(&mail)).is_err());
        let only_identity = BTreeMap::from([("identity", "http://x".to_owned())]);
        let err = notification
            .env(&only_identity, Some(&account), Some(&mail))
            .unwrap_err();
        assert!(
            err.to_string().contains("kc-contacts must start before"),
            "{err}"
        );
    }

    #[test]
    fn mail_goes_to_the_smtp_server_of_the_environment_else_a_directory() {
        let default = PathBuf::from("/work/target/kc-up/mail");
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |var: &str| {
                pairs
                    .iter()
                    .find(|(name, _)| *name == var)
                    .map(|(_, value)| (*value).to_owned())
            }
        };
        assert_eq!(
            Mail::from_lookup(env(&[]), default.clone()),
            Mail::Dir(default.clone())
        );
        assert_eq!(
            Mail::from_lookup(env(&[("KC_SMTP_URL", " ")]), default.clone()),
            Mail::Dir(default.clone())
        );
        assert_eq!(
            Mail::from_lookup(env(&[("KC_MAIL_DIR", "/var/mail/kc")]), default.clone()),
            Mail::Dir(PathBuf::from("/var/mail/kc"))
        );
        let smtp = Mail::from_lookup(
            env(&[
                ("KC_SMTP_URL", "smtp://relay:587?tls=required"),
                ("KC_SMTP_USERNAME", "kc"),
                ("KC_SMTP_PASSWORD", "s3cret"),
                ("KC_MAIL_DIR", "/ignored"),
            ]),
            default,
        );
        let vars: Vec<String> = smtp.env().into_iter().map(|(var, _)| var).collect();
        assert_eq!(
            vars,
            ["KC_SMTP_URL", "KC_SMTP_USERNAME", "KC_SMTP_PASSWORD"]
        );
        assert!(!smtp.describe().contains("s3cret"));
        let with_password = Mail::Smtp {
            url: "smtp://kc:s3cret@relay:587".to_owned(),
            username: None,
            password: None,
        };
        assert!(!with_password.describe().contains("s3cret"));
        assert!(with_password.describe().contains("relay:587"));
    }

    #[test]
    fn key_files_are_made_once_private_and_given_to_who_needs_them() {
        use std::os::unix::fs::PermissionsExt;
        let dir = workspace::target_dir()
            .join("kc-xtask-test")
            .join(format!("keys-{}", uuid::Uuid::new_v4().simple()));
        let files = KeyFiles::ensure(&dir).unwrap();
        let read = |key| std::fs::read_to_string(files.path(key)).unwrap();
        let kek = read(KeyFile::KeyEncryption);
        let opening =
            kc_runtime::secrets::OpeningKey::from_text(&read(KeyFile::CodeOpening)).unwrap();
        assert_eq!(
            opening.sealing_key().to_text(),
            read(KeyFile::CodeSealing),
            "the sealing key is the opening key's public half"
        );
        for key in [
            KeyFile::KeyEncryption,
            KeyFile::CodeSealing,
            KeyFile::CodeOpening,
        ] {
            let mode = std::fs::metadata(files.path(key))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{key:?}");
        }
        // A second run keeps them.
        let again = KeyFiles::ensure(&dir).unwrap();
        assert_eq!(again, files);
        assert_eq!(read(KeyFile::KeyEncryption), kek);
        std::fs::remove_dir_all(&dir).unwrap();

        let identity = Service::named("identity").unwrap();
        let contacts = Service::named("contacts").unwrap();
        let notification = Service::named("notification").unwrap();
        assert_eq!(
            identity.keys,
            [KeyFile::KeyEncryption, KeyFile::CodeSealing]
        );
        assert_eq!(contacts.keys, [KeyFile::CodeSealing]);
        assert_eq!(notification.keys, [KeyFile::CodeOpening]);
        for service in SERVICES {
            if !["identity", "contacts", "notification"].contains(&service.name) {
                assert!(service.keys.is_empty(), "{}", service.name);
            }
        }
    }

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
    }

    #[test]
    fn passwords_are_random_hex() {
        let one = random_password().unwrap();
        assert_eq!(one.len(), 48);
        assert!(one.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(one, random_password().unwrap());
    }
}
