//! One service process from `main` to exit, written once for every service.
//!
//! - [`Binary`]: the command line every service binary shares: `serve` (the default, so
//!   `kc-<svc> --listen …` is `kc-<svc> serve --listen …`), `migrate` for a service that
//!   owns a schema, and the service's own extra commands; telemetry and the listener before
//!   serving; one line on stderr and exit code 1 on failure. Each `main.rs` is one call.
//! - [`Service::start`] and [`Started::serve`]: what a service with a database does around
//!   its own wiring: migrations, the pool, the outbox watcher; then the server with its
//!   health, reflection and metrics; then its background [`Tasks`] stopped with a grace
//!   period, whether the server stopped on shutdown or failed; the pool closed last.
//!
//! - [`crate::service_constants!`] and [`crate::run_verified_by_identity!`]: the constants
//!   (`SCHEMA`, `SERVICE`, …) and the `run` at the root of each service crate.
//!
//! A service without a database (the gateway) uses [`Binary`] and serves with
//! [`crate::server::serve`] directly.
//!
//! ```ignore
//! pub async fn run(args: Args, listener: TcpListener, shutdown: Shutdown) -> anyhow::Result<()> {
//!     let started = SERVICE.start(&args.database, &shutdown).await?;
//!     let domain = Domain::new(started.pool.clone()).await?; // dropping `started` cleans up
//!     started.tasks.spawn(sweep(domain.clone(), started.tasks.stop().clone()));
//!     let api = grpc::Api::new(domain, started.watcher.clone(), shutdown.clone());
//!     started.serve(listener, &args.server, auth, Routes::new(ApiServer::new(api))).await
//! }
//! ```

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, FromArgMatches as _, Subcommand};
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use tokio::net::TcpListener;
use tokio::task::{AbortHandle, JoinHandle};
use tokio_util::task::TaskTracker;
use tonic::service::Routes;

use crate::auth::AuthLayer;
use crate::config::{DatabaseArgs, ServerArgs};
use crate::outbox::OutboxWatcher;
use crate::server::{ServeOptions, Shutdown};
use crate::telemetry::{self, LogFormat};

/// How long background tasks get to finish after the server stopped, unless the service
/// extends it ([`Tasks::extend_grace`]).
pub const TASKS_GRACE: Duration = Duration::from_secs(10);

/// The constants at the root of a service crate that owns a schema, the same in each:
/// `SCHEMA`, `SERVICE_NAME` (its gRPC service), `DEFAULT_LISTEN` (`127.0.0.1:port`),
/// `MIGRATOR` (the crate's `./migrations`) and `SERVICE` (the [`Service`] its binary runs).
/// `who` names the service in their docs.
///
/// ```ignore
/// kc_runtime::service_constants! {
///     who: "access management",
///     binary: "kc-access",
///     grpc: "keycontacts.access.v1.AccessManagementService",
///     port: 50053,
///     schema: "access",
/// }
/// ```
#[macro_export]
macro_rules! service_constants {
    (
        who: $who:literal,
        binary: $binary:literal,
        grpc: $grpc:literal,
        port: $port:literal,
        schema: $schema:literal $(,)?
    ) => {
        #[doc = concat!("The schema ", $who, " owns.")]
        pub const SCHEMA: &str = $schema;
        /// The gRPC service name, as reported in health.
        pub const SERVICE_NAME: &str = $grpc;
        #[doc = concat!("Where ", $who, " listens unless told otherwise.")]
        pub const DEFAULT_LISTEN: ::std::net::SocketAddr = $crate::bootstrap::localhost($port);
        #[doc = concat!("The migrations of the ", $schema, " schema.")]
        pub static MIGRATOR: ::sqlx::migrate::Migrator = ::sqlx::migrate!("./migrations");
        #[doc = concat!("The service, for its process (`", $binary, "`).")]
        pub static SERVICE: $crate::bootstrap::Service =
            $crate::bootstrap::Service::new($binary, SERVICE_NAME, DEFAULT_LISTEN)
                .with_schema(SCHEMA, &MIGRATOR);
    };
}

/// The `run` of a service that verifies tokens with the keys of the identity service its
/// arguments name (`args.identity`, [`crate::config::IdentityUrlArgs::verifier`]): it makes
/// that verifier and hands over to the crate's own
/// `run_with_verifier(args, verifier, listener, shutdown)`, which tests call with a test
/// issuer's verifier instead. The doc comment given becomes `run`'s.
///
/// ```ignore
/// kc_runtime::run_verified_by_identity! {
///     /// Migrates, then serves access management on `listener` until `shutdown`, ….
///     AccessArgs
/// }
/// ```
#[macro_export]
macro_rules! run_verified_by_identity {
    ($(#[$doc:meta])* $args:ty) => {
        $(#[$doc])*
        pub async fn run(
            args: $args,
            listener: ::tokio::net::TcpListener,
            shutdown: $crate::Shutdown,
        ) -> ::anyhow::Result<()> {
            let verifier = args.identity.verifier(&args.server, &shutdown)?;
            run_with_verifier(args, verifier, listener, shutdown).await
        }
    };
}

/// `127.0.0.1:port`: where a service listens by default ([`Service::default_listen`]).
pub const fn localhost(port: u16) -> SocketAddr {
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), port)
}

/// What a service is, for its process: its binary, its API, its port and its schema.
#[derive(Debug, Clone, Copy)]
pub struct Service {
    /// The binary's name (`kc-access`): its `--help`, its error lines, the `service.name`
    /// of its logs and traces.
    pub name: &'static str,
    /// The fully qualified name of its gRPC service, reported in health.
    pub grpc_service: &'static str,
    /// Where it listens without `--listen` (or `KC_LISTEN`).
    pub default_listen: SocketAddr,
    /// The schema it owns, with its migrations; `None` for a service without a database,
    /// which then has no `migrate` command.
    pub schema: Option<Schema>,
}

/// A schema a service owns and the migrations that make it.
#[derive(Debug, Clone, Copy)]
pub struct Schema {
    /// The schema's name, which is also the `search_path` of the service's pool.
    pub name: &'static str,
    /// Its migrations (`sqlx::migrate!`).
    pub migrator: &'static Migrator,
}

impl Schema {
    /// Runs the migrations of the schema on `database_url`.
    pub async fn migrate(&self, database_url: &str) -> anyhow::Result<()> {
        crate::db::migrate(database_url, self.name, self.migrator).await
    }
}

impl Service {
    /// Runs the migrations of the service's schema on `database_url` (nothing for a service
    /// without a database).
    pub async fn migrate(&self, database_url: &str) -> anyhow::Result<()> {
        match &self.schema {
            Some(schema) => schema.migrate(database_url).await,
            None => Ok(()),
        }
    }

    /// A service without a database: `name` (its binary), the gRPC service it serves, and
    /// where it listens by default.
    pub const fn new(
        name: &'static str,
        grpc_service: &'static str,
        default_listen: SocketAddr,
    ) -> Self {
        Self {
            name,
            grpc_service,
            default_listen,
            schema: None,
        }
    }

    /// The same service, owning the schema `name` that `migrator` makes.
    pub const fn with_schema(mut self, name: &'static str, migrator: &'static Migrator) -> Self {
        self.schema = Some(Schema { name, migrator });
        self
    }

    /// What every service with a database does before its own wiring: runs the
    /// migrations, connects the pool and starts the [`OutboxWatcher`] (its `WatchEvents`).
    /// Its background tasks stop with `shutdown`, or when the server stops.
    pub async fn start(
        &'static self,
        database: &DatabaseArgs,
        shutdown: &Shutdown,
    ) -> anyhow::Result<Started> {
        let schema = self
            .schema
            .with_context(|| format!("{} owns no schema to start with", self.name))?;
        schema.migrate(&database.database_url).await?;
        let pool = crate::db::connect(
            &database.database_url,
            schema.name,
            &database.pool_settings(),
        )
        .await?;
        let watcher = match OutboxWatcher::start(pool.clone()).await {
            Ok(watcher) => watcher,
            Err(error) => {
                pool.close().await;
                return Err(anyhow::Error::new(error).context("event watcher"));
            }
        };
        Ok(Started {
            service: self,
            schema: schema.name,
            pool,
            watcher,
            tasks: Tasks::new(shutdown),
            shutdown: shutdown.clone(),
        })
    }
}

/// A service with a database, migrated and connected, not serving yet: the service adds
/// its own domain, background tasks and API, then calls [`Started::serve`].
#[derive(Debug)]
pub struct Started {
    /// The service.
    service: &'static Service,
    /// Its schema's name.
    schema: &'static str,
    /// The service's pool, in its schema.
    pub pool: PgPool,
    /// The watcher of the service's outbox, for its `WatchEvents` handler.
    pub watcher: OutboxWatcher,
    /// The background tasks, which stop with the server.
    pub tasks: Tasks,
    /// The shutdown signal of the server.
    shutdown: Shutdown,
}

impl Started {
    /// Serves `routes` (the service's API) behind `auth`, with health, reflection and
    /// metrics (the pool's connections among them), on `listener` until shutdown; then
    /// stops the background tasks and closes the pool, whether the server stopped on
    /// shutdown or failed.
    ///
    /// A service whose wiring fails before it serves just returns its error: dropping
    /// [`Started`] stops the tasks started so far (see [`Tasks`]).
    pub async fn serve(
        self,
        listener: TcpListener,
        server: &ServerArgs,
        auth: AuthLayer,
        routes: Routes,
    ) -> anyhow::Result<()> {
        let options = ServeOptions::new(server, vec![self.service.grpc_service], auth)
            .with_pool(self.schema, &self.pool);
        let result = crate::server::serve(listener, routes, options, self.shutdown).await;
        self.tasks.finish().await;
        self.pool.close().await;
        result
    }
}

/// The background tasks of a service (event followers, sweepers, workers): they get
/// [`Tasks::stop`], which triggers on shutdown and when the server stops, and are given a
/// grace period to finish after that.
///
/// Dropped without [`Started::serve`] (the service failed to start), it triggers
/// [`Tasks::stop`] and aborts the tasks that do not watch it, without waiting.
#[derive(Debug)]
pub struct Tasks {
    /// What the tasks stop on: a child of the server's shutdown.
    stop: Shutdown,
    /// The tasks waited for.
    tracker: TaskTracker,
    /// Tasks that do not watch [`Tasks::stop`], aborted once the others are done.
    aborted: Vec<AbortHandle>,
    /// How long the tasks get to finish.
    grace: Duration,
}

impl Tasks {
    /// No tasks yet; they will stop with `shutdown`.
    fn new(shutdown: &Shutdown) -> Self {
        Self {
            stop: shutdown.child(),
            tracker: TaskTracker::new(),
            aborted: Vec::new(),
            grace: TASKS_GRACE,
        }
    }

    /// The signal the tasks stop on: triggered on shutdown, or when the server stopped
    /// (failed) without one.
    pub fn stop(&self) -> &Shutdown {
        &self.stop
    }

    /// Spawns `task`, which must end soon after [`Tasks::stop`] triggers.
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.tracker.spawn(task);
    }

    /// Waits for tasks spawned elsewhere (which watch [`Tasks::stop`]) like for its own.
    pub fn track(&self, tasks: impl IntoIterator<Item = JoinHandle<()>>) {
        for task in tasks {
            self.tracker.spawn(async move {
                // A task that panicked has stopped too; its panic was already reported.
                let _ = task.await;
            });
        }
    }

    /// Aborts `task`, which does not watch [`Tasks::stop`] (it ends with the pool, say),
    /// once the other tasks are done.
    pub fn abort_at_end(&mut self, task: &JoinHandle<()>) {
        self.aborted.push(task.abort_handle());
    }

    /// Gives the tasks `extra` time to finish, beyond [`TASKS_GRACE`] (e.g. the longest
    /// e-mail in flight).
    pub fn extend_grace(&mut self, extra: Duration) {
        self.grace = self.grace.saturating_add(extra);
    }

    /// Triggers [`Tasks::stop`], waits for the tasks (at most the grace period, warning
    /// when they take longer), then aborts those that do not watch it.
    async fn finish(mut self) {
        self.stop.trigger();
        self.tracker.close();
        if tokio::time::timeout(self.grace, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("background tasks did not stop in time");
        }
        for task in std::mem::take(&mut self.aborted) {
            task.abort();
        }
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        self.stop.trigger();
        for task in &self.aborted {
            task.abort();
        }
    }
}

/// Extra commands of a binary that has none besides `serve` and `migrate`.
#[derive(Debug, Clone, Copy)]
pub enum NoCommands {}

impl clap::FromArgMatches for NoCommands {
    fn from_arg_matches(_: &clap::ArgMatches) -> Result<Self, clap::Error> {
        Err(clap::Error::new(clap::error::ErrorKind::MissingSubcommand))
    }

    fn update_from_arg_matches(&mut self, _: &clap::ArgMatches) -> Result<(), clap::Error> {
        match *self {}
    }
}

impl Subcommand for NoCommands {
    fn augment_subcommands(command: clap::Command) -> clap::Command {
        command
    }

    fn augment_subcommands_for_update(command: clap::Command) -> clap::Command {
        command
    }

    fn has_subcommand(_: &str) -> bool {
        false
    }
}

/// The `migrate` command: the service's schema, and the role that owns it.
#[derive(clap::Args, Debug)]
struct MigrateArgs {
    /// Postgres URL of the service's role (the help names the schema).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
}

/// A service binary's command line and `main`.
///
/// ```ignore
/// fn main() {
///     Binary::new(&kc_access::SERVICE, "keycontacts access management: ….").main(kc_access::run)
/// }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Binary {
    /// The service.
    service: &'static Service,
    /// What the service is: the first paragraph of `--help`.
    about: &'static str,
    /// What `serve` does, in its help.
    serve_about: &'static str,
    /// Whether a flag of `serve` given twice keeps the last value instead of failing.
    args_override_self: bool,
}

/// A parsed command line.
enum Parsed<A, X> {
    /// `serve`, with the shared server settings among its arguments.
    Serve(A, Box<ServerArgs>),
    /// `migrate --database-url …`.
    Migrate(MigrateArgs),
    /// One of the binary's own commands.
    Other(X),
}

impl Binary {
    /// The binary of `service`, which `about` describes (one sentence, ending with a
    /// period).
    pub fn new(service: &'static Service, about: &'static str) -> Self {
        Self {
            service,
            about,
            serve_about: "Serve gRPC (the default when no command is given).",
            args_override_self: false,
        }
    }

    /// Describes `serve` with `about` (one sentence) instead of "Serve gRPC".
    pub fn serve_about(mut self, about: &'static str) -> Self {
        self.serve_about = about;
        self
    }

    /// Lets a flag of `serve` given twice keep the last value instead of failing.
    pub fn args_override_self(mut self) -> Self {
        self.args_override_self = true;
        self
    }

    /// Parses the command line and runs it: `serve` sets up telemetry, binds the listen
    /// address and calls `serve` until SIGTERM or SIGINT; `migrate` runs the migrations.
    /// The service's arguments `A` flatten [`ServerArgs`] (`#[command(flatten)]`).
    /// On failure it prints `<binary>: <error with its causes>` and exits with 1.
    pub fn main<A, F, Fut>(self, serve: F)
    where
        A: Args,
        F: FnOnce(A, TcpListener, Shutdown) -> Fut,
        Fut: Future<Output = anyhow::Result<()>>,
    {
        self.main_with(serve, |never: NoCommands| async move { match never {} });
    }

    /// Like [`Binary::main`], with the binary's own commands `X` (after `serve` and
    /// `migrate` in the help), run by `command`.
    pub fn main_with<A, F, Fut, X, G, GFut>(self, serve: F, command: G)
    where
        A: Args,
        F: FnOnce(A, TcpListener, Shutdown) -> Fut,
        Fut: Future<Output = anyhow::Result<()>>,
        X: Subcommand,
        G: FnOnce(X) -> GFut,
        GFut: Future<Output = anyhow::Result<()>>,
    {
        let parsed = self.parse::<A, X>();
        let runtime = match tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(error) => self.exit(anyhow::Error::new(error).context("tokio runtime")),
        };
        let result = runtime.block_on(async {
            match parsed {
                Parsed::Serve(args, server) => self.serve(args, &server, serve).await,
                Parsed::Migrate(args) => self.migrate(args).await,
                Parsed::Other(other) => command(other).await,
            }
        });
        if let Err(error) = result {
            self.exit(error);
        }
    }

    /// Prints the error on one line and exits with 1 (without waiting for the tasks still
    /// running).
    fn exit(&self, error: anyhow::Error) -> ! {
        eprintln!("{}: {error:#}", self.service.name);
        std::process::exit(1);
    }

    /// The command line, `serve` inserted when it names no command, secrets given as files
    /// read (`--…-file`, [`crate::cli::with_secret_file_twins`]); exits (2) when invalid,
    /// printing the usage, or (0) after `--help` and `--version`.
    fn parse<A: Args, X: Subcommand>(&self) -> Parsed<A, X> {
        let mut command = self.command::<A, X>();
        let names: Vec<String> = command
            .get_subcommands()
            .map(|sub| sub.get_name().to_owned())
            .collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let argv = crate::cli::argv_with_default_serve(&names);
        let mut matches = command
            .try_get_matches_from_mut(&argv)
            .unwrap_or_else(|error| error.exit());
        // Secrets given as files are read and parsed again as their flags.
        match crate::cli::inline_secret_files(&argv, &matches) {
            Ok(None) => {}
            Ok(Some(inlined)) => {
                matches = command
                    .try_get_matches_from_mut(inlined)
                    .unwrap_or_else(|error| error.exit());
            }
            Err(error) => self.exit(error),
        }
        let parsed = match matches.subcommand() {
            // The service's arguments flatten the shared ones, read here for telemetry and
            // the listen address.
            Some(("serve", serve)) => A::from_arg_matches(serve).and_then(|args| {
                ServerArgs::from_arg_matches(serve)
                    .map(|server| Parsed::Serve(args, Box::new(server)))
            }),
            Some(("migrate", migrate)) if self.service.schema.is_some() => {
                MigrateArgs::from_arg_matches(migrate).map(Parsed::Migrate)
            }
            _ => X::from_arg_matches(&matches).map(Parsed::Other),
        };
        parsed.unwrap_or_else(|error| error.format(&mut command).exit())
    }

    /// The clap command: what `#[derive(Parser)]` on a `Cli` with a subcommand would make.
    fn command<A: Args, X: Subcommand>(&self) -> clap::Command {
        let name = self.service.name;
        let serve = A::augment_args(clap::Command::new("serve"))
            .about(without_period(self.serve_about))
            .long_about(None)
            .args_override_self(self.args_override_self);
        let mut command = clap::Command::new(name)
            .version(env!("CARGO_PKG_VERSION"))
            .subcommand_required(true)
            .arg_required_else_help(true)
            .subcommand(serve);
        if let Some(schema) = self.service.schema {
            let migrate = MigrateArgs::augment_args(clap::Command::new("migrate"))
                .about(format!(
                    "Run the migrations of the {} schema and exit (for a Kubernetes Job)",
                    schema.name
                ))
                .long_about(None)
                .mut_arg("database_url", |arg| {
                    arg.help(format!("Postgres URL of the {} role", schema.name))
                });
            command = command.subcommand(migrate);
        }
        // After the extra commands, whose derive describes the command with their doc.
        let command = X::augment_subcommands(command);
        crate::cli::with_secret_file_twins(command)
            .about(without_period(self.about))
            .long_about(format!(
                "{}\n\nWithout a command it serves: `{name} --listen …` is `{name} serve \
                 --listen …`.",
                self.about
            ))
    }

    /// `serve`: telemetry, the listen address bound, then `serve` until SIGTERM or SIGINT.
    async fn serve<A, F, Fut>(&self, args: A, server: &ServerArgs, serve: F) -> anyhow::Result<()>
    where
        F: FnOnce(A, TcpListener, Shutdown) -> Fut,
        Fut: Future<Output = anyhow::Result<()>>,
    {
        let _telemetry = telemetry::init(self.service.name, server.log_format)?;
        crate::tls::install_client(&server.tls.client_files())?;
        let listener =
            crate::server::bind(server.listen.unwrap_or(self.service.default_listen)).await?;
        serve(args, listener, Shutdown::on_signals()).await
    }

    /// `migrate`: the migrations of the service's schema.
    async fn migrate(&self, args: MigrateArgs) -> anyhow::Result<()> {
        let schema = self
            .service
            .schema
            .with_context(|| format!("{} owns no schema to migrate", self.service.name))?;
        let _telemetry = telemetry::init(self.service.name, LogFormat::Pretty)?;
        schema.migrate(&args.database_url).await?;
        println!("migrations applied to schema {}", schema.name);
        Ok(())
    }
}

/// The sentence without its final period, as clap's derive shows a one-line summary.
fn without_period(sentence: &str) -> &str {
    sentence.strip_suffix('.').unwrap_or(sentence)
}

#[cfg(test)]
mod tests {
    use super::*;

    static MIGRATOR: Migrator = Migrator::DEFAULT;

    static WITH_SCHEMA: Service =
        Service::new("kc-test", "keycontacts.test.v1.TestService", localhost(1))
            .with_schema("test", &MIGRATOR);

    static WITHOUT_SCHEMA: Service = Service {
        schema: None,
        ..WITH_SCHEMA
    };

    #[derive(clap::Args)]
    struct TestArgs {
        #[command(flatten)]
        server: ServerArgs,
    }

    /// Extra commands (their derive sets this as the parent's about).
    #[derive(clap::Subcommand, Debug, PartialEq)]
    enum Extra {
        /// Print a new key.
        GenerateKey,
    }

    fn names(command: &clap::Command) -> Vec<&str> {
        command
            .get_subcommands()
            .map(|sub| sub.get_name())
            .collect()
    }

    #[test]
    fn commands_follow_the_schema_and_the_extras() {
        let binary = Binary::new(&WITH_SCHEMA, "A test service.");
        let command = binary.command::<TestArgs, Extra>();
        command.clone().debug_assert();
        assert_eq!(names(&command), ["serve", "migrate", "generate-key"]);
        // The extras' doc does not replace the binary's.
        assert_eq!(
            command.get_about().map(ToString::to_string).as_deref(),
            Some("A test service")
        );
        let migrate = command.find_subcommand("migrate").unwrap();
        let url = migrate
            .get_arguments()
            .find(|arg| arg.get_id() == "database_url")
            .unwrap();
        assert_eq!(
            url.get_help().map(ToString::to_string).as_deref(),
            Some("Postgres URL of the test role")
        );

        let command =
            Binary::new(&WITHOUT_SCHEMA, "A test service.").command::<TestArgs, NoCommands>();
        assert_eq!(names(&command), ["serve"]);
    }

    #[test]
    fn serve_flags_repeat_only_when_allowed() {
        let argv = [
            "kc-test",
            "serve",
            "--log-format",
            "json",
            "--log-format",
            "pretty",
        ];
        let strict = Binary::new(&WITHOUT_SCHEMA, "A test service.");
        assert!(
            strict
                .command::<TestArgs, NoCommands>()
                .try_get_matches_from(argv)
                .is_err()
        );
        let lenient = strict.args_override_self();
        let matches = lenient
            .command::<TestArgs, NoCommands>()
            .try_get_matches_from(argv)
            .unwrap();
        let (_, serve) = matches.subcommand().unwrap();
        let args = TestArgs::from_arg_matches(serve).unwrap();
        assert_eq!(args.server.log_format, LogFormat::Pretty);
        // The shared settings read from the same matches, as `main` does.
        let server = ServerArgs::from_arg_matches(serve).unwrap();
        assert_eq!(server.log_format, LogFormat::Pretty);
    }

    #[tokio::test]
    async fn tasks_stop_with_the_shutdown_and_are_waited_for() {
        let shutdown = Shutdown::new();
        let mut tasks = Tasks::new(&shutdown);
        let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
        let stop = tasks.stop().clone();
        let done = done_tx.clone();
        tasks.spawn(async move {
            stop.wait().await;
            let _ = done.send("spawned");
        });
        let stop = tasks.stop().clone();
        tasks.track([tokio::spawn(async move {
            stop.wait().await;
            let _ = done_tx.send("tracked");
        })]);
        let endless = tokio::spawn(std::future::pending::<()>());
        tasks.abort_at_end(&endless);

        // The server's shutdown reaches the tasks; the tasks' own stop leaves it alone.
        assert!(!tasks.stop().is_triggered());
        shutdown.trigger();
        assert!(tasks.stop().is_triggered());
        tasks.finish().await;
        let mut stopped = vec![done_rx.recv().await.unwrap(), done_rx.recv().await.unwrap()];
        stopped.sort_unstable();
        assert_eq!(stopped, ["spawned", "tracked"]);
        assert!(endless.await.unwrap_err().is_cancelled());

        let parent = Shutdown::new();
        let tasks = Tasks::new(&parent);
        tasks.finish().await;
        assert!(!parent.is_triggered());
    }

    #[tokio::test]
    async fn dropped_tasks_stop_without_waiting() {
        let shutdown = Shutdown::new();
        let mut tasks = Tasks::new(&shutdown);
        let stop = tasks.stop().clone();
        let endless = tokio::spawn(std::future::pending::<()>());
        tasks.abort_at_end(&endless);
        drop(tasks);
        assert!(stop.is_triggered());
        assert!(!shutdown.is_triggered());
        assert!(endless.await.unwrap_err().is_cancelled());
    }
}
