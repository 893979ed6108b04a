//! `cargo xtask up`: the suite's services on this machine, until Ctrl-C.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, ExitStatus};

use anyhow::Context;
use kc_testkit::{ClusterOptions, PgCluster};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

use crate::seed;
use kc_bench::suite::{
    self, Account, KeyFiles, Mail, Running, SERVICES, Service, Signals, stop_all,
};
use kc_bench::workspace;

/// Arguments of `cargo xtask up`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Start from scratch: wipe the local Postgres cluster and everything else `up` keeps in
    /// target/kc-up (with DATABASE_URL set, all of the latter but the key files: that
    /// database's signing keys are encrypted with the key-encryption key kept there).
    #[arg(long)]
    fresh: bool,
    /// Once the suite is up, load data through the gateway and print a grpcurl session to
    /// try it with (idempotent: what exists is left as it is).
    #[arg(long, value_enum)]
    seed: Option<seed::Seed>,
}

/// Database of the local cluster that holds the services' schemas.
const DATABASE: &str = "keycontacts";
/// The operator `up` bootstraps.
const OPERATOR_EMAIL: &str = "operator@keycontacts.local";
/// A first call to try, printed once everything is up: the public API, on the gateway.
const EXAMPLE: &str = r#"grpcurl -plaintext -d '{"email":"ada@example.com","display_name":"Ada","password":"correct horse battery"}' 127.0.0.1:50050 keycontacts.gateway.v1.GatewayService/Register"#;
/// The next call: prove the address with the code mailed to it (rule I1).
const VERIFY_EXAMPLE: &str = r#"grpcurl -plaintext -d '{"email":"ada@example.com","code":"<code from the mail>","password":"correct horse battery"}' 127.0.0.1:50050 keycontacts.gateway.v1.GatewayService/VerifyEmail"#;

/// A relying application's service account that `up` creates for trying the gateway's
/// scoped services (issue 15). The suite's own accounts call the internal services directly
/// and hold no scope; this one holds every scope, as `kc-identity create-service-account
/// NAME --scope …` gives them.
const DEMO_APP: &str = "kc-demo-app";
/// Its scopes: the gateway's AuthorizationService (`authz`) and SendNotice (`notices`).
const DEMO_APP_SCOPES: &str = "authz,notices";

/// Builds the binaries, prepares the database (a persistent local cluster in target/kc-up/pg,
/// or the server of `DATABASE_URL`), starts every service of [`SERVICES`] and waits until each
/// one serves, then runs until Ctrl-C or SIGTERM, or until a service exits.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    workspace::check(workspace::cargo().args(["build", "--workspace", "--bins"])).await?;

    let dir = workspace::target_dir().join("kc-up");
    let external = std::env::var("DATABASE_URL").is_ok_and(|url| !url.is_empty());
    if args.fresh && dir.exists() {
        let keys = KeyFiles::local_dir();
        if external {
            eprintln!(
                "xtask: --fresh: wiping {} but the key files in {}",
                dir.display(),
                keys.display()
            );
        } else {
            eprintln!("xtask: --fresh: wiping {}", dir.display());
        }
        wipe(&dir, external.then_some(keys.as_path()))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("could not create {}", dir.display()))?;
    // Made once and kept: identity's key-encryption key and notification's code key pair.
    let keys = KeyFiles::local()?;
    eprintln!("xtask: key files in {}", keys.dir().display());
    let paths = Paths::new(dir);

    // From here on Ctrl-C no longer kills xtask: it stops what was started.
    let mut signals = Signals::new()?;

    let (admin_url, cluster) = match std::env::var("DATABASE_URL") {
        Ok(url) if external => {
            eprintln!("xtask: using the server of DATABASE_URL");
            (url, None)
        }
        _ => {
            let cluster = PgCluster::start(&paths.dir.join("pg"), ClusterOptions::persistent())
                .await
                .context("could not start the local postgres")?;
            let created = create_database(&cluster).await;
            let url = cluster.url(DATABASE);
            match created {
                Ok(()) => (url, Some(cluster)),
                Err(err) => {
                    let _ = cluster.stop().await;
                    return Err(err);
                }
            }
        }
    };

    let result = run_suite(
        &paths,
        &admin_url,
        cluster.is_none(),
        args.seed,
        &mut signals,
    )
    .await;

    if let Some(cluster) = cluster {
        eprintln!("xtask: stopping postgres");
        if let Err(err) = cluster.stop().await {
            eprintln!("xtask: {err:#}");
        }
    }
    result
}

/// Files `up` keeps in target/kc-up.
struct Paths {
    /// target/kc-up itself.
    dir: PathBuf,
    /// Passwords of the services' roles, by role (only with `DATABASE_URL`).
    roles: PathBuf,
    /// What was created in the database, as [`State`].
    state: PathBuf,
    /// The operator's password.
    operator_password: PathBuf,
    /// Where the services that send mail write it, one `<notification_id>.eml` per e-mail,
    /// unless `KC_SMTP_URL` (or `KC_MAIL_DIR`) names another destination.
    mail: PathBuf,
}

impl Paths {
    fn new(dir: PathBuf) -> Self {
        Self {
            roles: dir.join("roles.json"),
            state: dir.join("state.json"),
            operator_password: dir.join("operator-password"),
            mail: dir.join("mail"),
            dir,
        }
    }
}

/// What `up` created in one database that cannot be recreated at will (a service account's
/// secret is shown once), so that it is created once.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct State {
    /// [`suite::fingerprint`] of the database this is about.
    database: String,
    /// Service accounts by name.
    service_accounts: BTreeMap<String, Account>,
}

/// Starts the services, waits for a signal or an exit, and stops them.
async fn run_suite(
    paths: &Paths,
    admin_url: &str,
    external: bool,
    seed: Option<seed::Seed>,
    signals: &mut Signals,
) -> anyhow::Result<ExitCode> {
    let mut running = Vec::new();
    let mail = Mail::from_env_or(paths.mail.clone());
    let started = tokio::select! {
        started = start(paths, admin_url, external, &mail, &mut running) => started.map(Some),
        signal = signals.recv() => {
            eprintln!("xtask: {signal}: stopping");
            Ok(None)
        }
    };
    let code = match started {
        Err(err) => {
            stop_all(&mut running).await;
            return Err(err);
        }
        Ok(None) => ExitCode::SUCCESS,
        Ok(Some(Started {
            operator_password,
            demo_app,
        })) => {
            print_summary(
                admin_url,
                &operator_password,
                &paths.operator_password,
                &demo_app,
                &mail,
                &KeyFiles::local_dir(),
            );
            if let Some(seed) = seed {
                let seeded = tokio::select! {
                    seeded = load_seed(seed, paths, &operator_password) => seeded,
                    signal = signals.recv() => Err(anyhow::anyhow!("{signal}: stopped while seeding")),
                };
                if let Err(err) = seeded {
                    stop_all(&mut running).await;
                    return Err(err.context("could not load the seed data"));
                }
            }
            tokio::select! {
                (index, status) = first_exit(&mut running) => {
                    let bin = running[index].service.bin;
                    match status {
                        Ok(status) => eprintln!("xtask: {bin} exited unexpectedly ({status}): stopping"),
                        Err(err) => eprintln!("xtask: lost track of {bin} ({err}): stopping"),
                    }
                    running.remove(index);
                    ExitCode::FAILURE
                }
                signal = signals.recv() => {
                    eprintln!("xtask: {signal}: stopping");
                    ExitCode::SUCCESS
                }
            }
        }
    };
    stop_all(&mut running).await;
    Ok(code)
}

/// Loads `seed` through the gateway, as the operator, and prints what it loaded.
async fn load_seed(seed: seed::Seed, paths: &Paths, operator_password: &str) -> anyhow::Result<()> {
    let gateway = Service::named("gateway")?;
    let operator = seed::Credentials {
        email: OPERATOR_EMAIL.to_owned(),
        password: operator_password.to_owned(),
    };
    let text = seed::run(seed, &gateway.addr(), &operator, &paths.dir).await?;
    println!("{text}");
    println!("Ctrl-C stops everything.");
    Ok(())
}

/// Prepares the database and starts the services one by one, each once the ones before it
/// serve; pushes each to `running` as soon as it is spawned. A service is also given the
/// addresses of the services it calls later ([`Service::calls_later`]): the registry, which
/// follows access management's events with its own account (T8), starts before access and
/// its stream retries until access serves.
async fn start(
    paths: &Paths,
    admin_url: &str,
    external: bool,
    mail: &Mail,
    running: &mut Vec<Running>,
) -> anyhow::Result<Started> {
    // Roles of the local cluster log in without a password (it trusts local connections);
    // on another server each gets a generated one, kept in roles.json.
    let passwords = if external {
        Some(role_passwords(&paths.roles)?)
    } else {
        None
    };
    let urls = suite::provision(admin_url, passwords.as_ref()).await?;
    let database_url = |service: &Service| urls.get(service.name).map(String::as_str);

    for service in SERVICES.iter().filter(|service| service.schema.is_some()) {
        eprintln!("xtask: migrating {}", service.name);
        let mut command = service.command(database_url(service))?;
        command.arg("migrate");
        suite::output(command, &format!("{} migrate", service.bin)).await?;
    }

    let fingerprint = suite::fingerprint(admin_url).await?;
    let mut state = read_json::<State>(&paths.state)?.unwrap_or_default();
    if state.database != fingerprint {
        state = State {
            database: fingerprint,
            ..State::default()
        };
    }

    let identity = Service::named("identity")?;
    let operator_password = match std::fs::read_to_string(&paths.operator_password) {
        Ok(password) => password.trim_end().to_owned(),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let password = suite::random_password()?;
            suite::write_private(&paths.operator_password, &password)?;
            password
        }
        Err(err) => {
            return Err(err)
                .with_context(|| format!("could not read {}", paths.operator_password.display()));
        }
    };
    // Idempotent: creates the operator, or resets its password to the one printed below.
    eprintln!("xtask: bootstrapping the operator {OPERATOR_EMAIL}");
    let mut command = identity.command(database_url(identity))?;
    command
        .args([
            "bootstrap-operator",
            "--email",
            OPERATOR_EMAIL,
            "--password-file",
        ])
        .arg(&paths.operator_password);
    suite::output(command, &format!("{} bootstrap-operator", identity.bin)).await?;

    // Every service runs here, so each one with an account needs it (the registry's too);
    // none holds a scope. Then the demo relying application's, with its scopes.
    let accounts = SERVICES
        .iter()
        .filter(|service| service.service_account)
        .map(|service| (service.account_name(), None))
        .chain([(DEMO_APP.to_owned(), Some(DEMO_APP_SCOPES))]);
    for (name, scopes) in accounts {
        if state.service_accounts.contains_key(&name) {
            continue;
        }
        eprintln!("xtask: creating the service account {name}");
        let mut command = identity.command(database_url(identity))?;
        command.args(["create-service-account", &name]);
        if let Some(scopes) = scopes {
            command.args(["--scope", scopes]);
        }
        let output =
            suite::output(command, &format!("{} create-service-account", identity.bin)).await?;
        state
            .service_accounts
            .insert(name, Account::parse(&output)?);
        write_json(&paths.state, &state)?;
    }

    if let Mail::Dir(dir) = mail {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("could not create the mail directory {}", dir.display()))?;
    }
    let urls: BTreeMap<&'static str, String> = SERVICES
        .iter()
        .map(|service| (service.name, service.url()))
        .collect();
    for service in SERVICES {
        for addr in [service.addr(), service.metrics_addr()] {
            if std::net::TcpListener::bind(&addr).is_err() {
                anyhow::bail!("{addr} is in use: is another `cargo xtask up` running?");
            }
        }
        let account = state.service_accounts.get(&service.account_name());
        let mut env = service.env(&urls, account, Some(mail))?;
        env.push(("KC_METRICS_LISTEN".to_owned(), service.metrics_addr()));
        if service.sends_mail {
            eprintln!(
                "xtask: {} delivers mail to {}",
                service.bin,
                mail.describe()
            );
        }
        eprintln!("xtask: starting {} on {}", service.bin, service.addr());
        running.push(suite::spawn(service, database_url(service), &env)?);
        let started = running.last_mut().expect("just pushed");
        started.wait_until_serving().await?;
    }
    let demo_app = state
        .service_accounts
        .get(DEMO_APP)
        .cloned()
        .context("the demo relying application's account was not created")?;
    Ok(Started {
        operator_password,
        demo_app,
    })
}

/// What [`start`] made that the summary prints.
struct Started {
    /// The operator's password.
    operator_password: String,
    /// The [`DEMO_APP`] service account.
    demo_app: Account,
}

/// Removes `dir` and everything in it, except `keep` (a directory right under it) if given.
fn wipe(dir: &Path, keep: Option<&Path>) -> anyhow::Result<()> {
    let context = || format!("could not wipe {}", dir.display());
    let Some(keep) = keep else {
        return std::fs::remove_dir_all(dir).with_context(context);
    };
    for entry in std::fs::read_dir(dir).with_context(context)? {
        let path = entry.with_context(context)?.path();
        if path == keep {
            continue;
        }
        if path.is_dir() && !path.is_symlink() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        }
        .with_context(|| format!("could not remove {}", path.display()))?;
    }
    Ok(())
}

/// Creates the suite's database on the local cluster unless it exists.
async fn create_database(cluster: &PgCluster) -> anyhow::Result<()> {
    let mut conn = PgConnection::connect(&cluster.url("postgres"))
        .await
        .context("could not connect to the local postgres")?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)")
            .bind(DATABASE)
            .fetch_one(&mut conn)
            .await?;
    if !exists {
        sqlx::raw_sql(AssertSqlSafe(format!(
            "CREATE DATABASE {}",
            suite::quote_ident(DATABASE)
        )))
        .execute(&mut conn)
        .await
        .with_context(|| format!("could not create database {DATABASE}"))?;
    }
    conn.close().await?;
    Ok(())
}

/// The roles' passwords from `path`, with one generated for each role that has none yet.
fn role_passwords(path: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let mut passwords: BTreeMap<String, String> = read_json(path)?.unwrap_or_default();
    let mut changed = false;
    for role in SERVICES.iter().filter_map(Service::role) {
        if let std::collections::btree_map::Entry::Vacant(entry) = passwords.entry(role) {
            entry.insert(suite::random_password()?);
            changed = true;
        }
    }
    if changed {
        write_json(path, &passwords)?;
    }
    Ok(passwords)
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<Option<T>> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .with_context(|| format!("{} is corrupt: delete it or use --fresh", path.display())),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err).with_context(|| format!("could not read {}", path.display())),
    }
}

fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    suite::write_private(path, &serde_json::to_string_pretty(value)?)
}

fn print_summary(
    admin_url: &str,
    operator_password: &str,
    password_file: &Path,
    demo_app: &Account,
    mail: &Mail,
    keys: &Path,
) {
    let width = SERVICES
        .iter()
        .map(|service| service.bin.len())
        .max()
        .unwrap_or(0);
    let mut text = String::from("\nkeycontacts is up:\n");
    for service in SERVICES {
        text.push_str(&format!(
            "  {:<width$} {} (metrics: http://{}/metrics)\n",
            service.bin,
            service.addr(),
            service.metrics_addr()
        ));
    }
    text.push_str(&format!(
        "  {:<width$} {} (superuser)\n",
        "postgres",
        redact(admin_url)
    ));
    text.push_str(&format!(
        "operator: {OPERATOR_EMAIL} / {operator_password} (kept in {})\n",
        password_file.display()
    ));
    let gateway = SERVICES
        .iter()
        .find(|service| service.name == "gateway")
        .unwrap_or(&SERVICES[0]);
    text.push_str(&format!(
        "relying app: {DEMO_APP}, scopes {DEMO_APP_SCOPES} (the gateway's SendNotice and \
         AuthorizationService); its service token, from the gateway as a relying application \
         gets it:\n  grpcurl -plaintext -d \
         '{{\"client_id\":\"{}\",\"client_secret\":\"{}\"}}' {} \
         keycontacts.gateway.v1.GatewayService/IssueServiceToken\n",
        demo_app.client_id,
        demo_app.client_secret,
        gateway.addr()
    ));
    text.push_str(&format!("mail: {}\n", mail.describe()));
    text.push_str(&format!(
        "keys: {} (identity's key-encryption key, notification's code keys; kept)\n",
        keys.display()
    ));
    text.push_str("try:\n");
    let entry = SERVICES
        .iter()
        .find(|service| service.name == "gateway")
        .unwrap_or(&SERVICES[0]);
    text.push_str(&format!("  grpcurl -plaintext {} list\n", entry.addr()));
    text.push_str(&format!("  {EXAMPLE}\n"));
    text.push_str(&format!("  {VERIFY_EXAMPLE}\n"));
    text.push_str("Ctrl-C stops everything.\n");
    println!("{text}");
}

/// `url` without its password.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut url) => {
            if url.password().is_some() {
                let _ = url.set_password(Some("***"));
            }
            url.into()
        }
        Err(_) => "<unparsable url>".to_owned(),
    }
}

/// Waits until one of `running` exits; returns its index and status.
async fn first_exit(running: &mut [Running]) -> (usize, std::io::Result<ExitStatus>) {
    if running.is_empty() {
        return std::future::pending().await;
    }
    let waits = running
        .iter_mut()
        .map(|running| Box::pin(running.child.wait()));
    let (status, index, _) = futures::future::select_all(waits).await;
    (index, status)
}
