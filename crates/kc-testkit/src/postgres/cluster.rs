//! A Postgres cluster in a directory, run under a watchdog that stops it when its owner goes away.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use anyhow::{Context, anyhow, bail};

/// The superuser created by `initdb -U`.
const SUPERUSER: &str = "postgres";
/// Settings file (in the data directory) rewritten at every start; `postgresql.conf` includes it.
const SETTINGS_FILE: &str = "kc-cluster.conf";
/// Server log (in the data directory).
const LOG_FILE: &str = "postgres.log";
/// How often a start is retried when the picked port was taken in the meantime.
const START_ATTEMPTS: usize = 5;
/// Longest unix socket path the kernel accepts (`sun_path` minus its terminating NUL).
const MAX_SOCKET_PATH: usize = 107;

/// Shell script of the watchdog that owns a running server.
///
/// Arguments: `pg_ctl`, data directory, log file, stop mode, `1` to remove the data directory
/// after stopping, then the command prefix that runs a program as the cluster's OS user.
/// It starts the server, prints `ready`, then waits until its standard input closes: the owner
/// holds the only write end of that pipe, so this happens when the owner stops the cluster or
/// exits, however it exits. Then it stops the server and, for ephemeral clusters, removes the
/// data directory. SIGPIPE is ignored so that a vanished owner cannot kill it before it cleaned
/// up; SIGTERM cleans up at once.
const WATCHDOG: &str = r#"
trap '' PIPE INT HUP
pg_ctl=$1 data=$2 log=$3 mode=$4 remove=$5
shift 5
if ! "$@" "$pg_ctl" start -w -s -t 120 -D "$data" -l "$log" </dev/null >/dev/null; then
  exit 1
fi
echo ready
exec 3<&0
cat <&3 >/dev/null 3<&- &
reader=$!
trap 'kill "$reader" 2>/dev/null' TERM
wait "$reader"
"$@" "$pg_ctl" stop -w -s -t 120 -m "$mode" -D "$data" </dev/null >/dev/null 2>&1
status=$?
if [ "$remove" = 1 ]; then rm -rf -- "$data"; fi
exit "$status"
"#;

/// How a [`PgCluster`] is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterOptions {
    /// Remove the data directory when the cluster stops, or when the process that started it
    /// exits. Ephemeral clusters stop in `immediate` mode, persistent ones in `fast` mode.
    pub ephemeral: bool,
    /// Port on 127.0.0.1; `None` picks a free one.
    pub port: Option<u16>,
    /// `max_connections`: high enough for many tests with their own pools in parallel.
    pub max_connections: u32,
    /// Further `postgresql.conf` settings as (name, value); values are quoted as needed.
    pub settings: Vec<(String, String)>,
}

impl Default for ClusterOptions {
    /// An ephemeral cluster on a free port with `max_connections = 300`.
    fn default() -> Self {
        Self {
            ephemeral: true,
            port: None,
            max_connections: 300,
            settings: Vec::new(),
        }
    }
}

impl ClusterOptions {
    /// Like the default, but the data directory is kept across runs.
    pub fn persistent() -> Self {
        Self {
            ephemeral: false,
            ..Self::default()
        }
    }
}

/// A Postgres cluster in a directory: used by the testkit itself and by xtask (test, up, bench).
///
/// The server listens on 127.0.0.1 only (and on a unix socket in the data directory), trusts
/// local connections, and trades durability for speed (`fsync`, `synchronous_commit` and
/// `full_page_writes` are off): it is for tests and development, never for data that matters.
///
/// The server runs under a small watchdog process whose standard input is a pipe held by this
/// value. The watchdog stops the server (and removes an ephemeral data directory) as soon as
/// that pipe closes: on [`PgCluster::stop`], on drop, and when the owning process exits in any
/// way, even if the value is never dropped (as in a `static`).
#[derive(Debug)]
pub struct PgCluster {
    port: u16,
    data_dir: PathBuf,
    ephemeral: bool,
    watchdog: Option<Child>,
}

impl PgCluster {
    /// Starts a cluster in `data_dir` on 127.0.0.1.
    ///
    /// A missing or empty `data_dir` is initialised first (from an `initdb` template cached
    /// under the workspace `target/` directory); an existing cluster is reused. Under root the
    /// server runs as the `postgres` OS user.
    pub async fn start(data_dir: &Path, options: ClusterOptions) -> anyhow::Result<PgCluster> {
        let data_dir = std::path::absolute(data_dir)
            .with_context(|| format!("bad data directory {}", data_dir.display()))?;
        tokio::task::spawn_blocking(move || start_blocking(data_dir, &options))
            .await
            .context("the postgres start task failed")?
    }

    /// Port the server listens on, on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// URL of the superuser (`postgres`) for database `db`.
    pub fn url(&self, db: &str) -> String {
        let mut url = url::Url::parse(&format!("postgres://{SUPERUSER}@127.0.0.1:{}/", self.port))
            .expect("a url made of a host and a port is valid");
        url.set_path(db);
        url.into()
    }

    /// The cluster's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Stops the server and waits for it; removes the data directory of an ephemeral cluster.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let watchdog = self.watchdog.take();
        let data_dir = self.data_dir.clone();
        let ephemeral = self.ephemeral;
        tokio::task::spawn_blocking(move || stop_blocking(watchdog, &data_dir, ephemeral))
            .await
            .context("the postgres stop task failed")?
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if let Some(mut watchdog) = self.watchdog.take() {
            // Closing the pipe is what stops the server; reap the watchdog in the background.
            drop(watchdog.stdin.take());
            std::thread::spawn(move || watchdog.wait());
        }
    }
}

fn stop_blocking(watchdog: Option<Child>, data_dir: &Path, ephemeral: bool) -> anyhow::Result<()> {
    let Some(mut watchdog) = watchdog else {
        return Ok(());
    };
    drop(watchdog.stdin.take());
    let status = watchdog
        .wait()
        .context("could not wait for the postgres watchdog")?;
    if ephemeral && data_dir.exists() {
        std::fs::remove_dir_all(data_dir)
            .with_context(|| format!("could not remove {}", data_dir.display()))?;
    }
    if !status.success() {
        bail!(
            "postgres in {} did not stop cleanly (pg_ctl stop: {status})",
            data_dir.display()
        );
    }
    Ok(())
}

fn start_blocking(data_dir: PathBuf, options: &ClusterOptions) -> anyhow::Result<PgCluster> {
    let bins = binaries()?;
    let owner = owner()?;
    let created = prepare_data_dir(&data_dir, bins, owner)?;

    let mut attempt = 0;
    let result = loop {
        attempt += 1;
        let port = match options.port {
            Some(port) => port,
            None => free_port()?,
        };
        match launch(&data_dir, port, options, bins, owner) {
            Ok(cluster) => break Ok(cluster),
            Err(Failure::PortTaken(_)) if options.port.is_none() && attempt < START_ATTEMPTS => {}
            Err(Failure::PortTaken(err) | Failure::Other(err)) => break Err(err),
        }
    };
    if result.is_err() && options.ephemeral && created {
        let _ = std::fs::remove_dir_all(&data_dir);
    }
    result
}

/// Why a start failed.
enum Failure {
    /// The port was taken between picking and binding it: worth another try.
    PortTaken(anyhow::Error),
    /// Anything else.
    Other(anyhow::Error),
}

/// Writes the settings and starts the server under its watchdog on `port`.
fn launch(
    data_dir: &Path,
    port: u16,
    options: &ClusterOptions,
    bins: &Binaries,
    owner: &Owner,
) -> Result<PgCluster, Failure> {
    std::fs::write(
        data_dir.join(SETTINGS_FILE),
        settings(data_dir, port, options),
    )
    .with_context(|| format!("could not write {}", data_dir.join(SETTINGS_FILE).display()))
    .map_err(Failure::Other)?;

    let log = data_dir.join(LOG_FILE);
    let log_start = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    let mut command = Command::new("/bin/sh");
    command
        .arg("-c")
        .arg(WATCHDOG)
        .arg("kc-postgres-watchdog")
        .arg(bins.dir.join("pg_ctl"))
        .arg(data_dir)
        .arg(&log)
        .arg(if options.ephemeral {
            "immediate"
        } else {
            "fast"
        })
        .arg(if options.ephemeral { "1" } else { "0" })
        .args(owner.prefix())
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Out of the terminal's process group: Ctrl-C must not kill the watchdog before the
        // server, whose owner's exit then stops it.
        .process_group(0);
    let mut watchdog = command
        .spawn()
        .context("could not run /bin/sh for the postgres watchdog")
        .map_err(Failure::Other)?;

    let mut line = String::new();
    let stdout = watchdog.stdout.take().expect("stdout is piped");
    // An error reading counts as "not ready", explained below from the watchdog's output.
    let _ = BufReader::new(stdout).read_line(&mut line);
    if line.trim() == "ready" {
        drop(watchdog.stderr.take());
        return Ok(PgCluster {
            port,
            data_dir: data_dir.to_path_buf(),
            ephemeral: options.ephemeral,
            watchdog: Some(watchdog),
        });
    }

    let mut stderr = String::new();
    if let Some(mut pipe) = watchdog.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    let status = watchdog.wait().map_err(|err| Failure::Other(err.into()))?;
    let log_tail = read_tail(&log, log_start);
    let mut message = format!(
        "could not start postgres in {} on port {port} (pg_ctl start: {status})",
        data_dir.display()
    );
    for text in [stderr.trim(), log_tail.trim()] {
        if !text.is_empty() {
            let _ = write!(message, "\n{text}");
        }
    }
    let error = anyhow!(message);
    if log_tail.contains("could not bind") || log_tail.contains("Address already in use") {
        Err(Failure::PortTaken(error))
    } else {
        Err(Failure::Other(error))
    }
}

/// Contents of [`SETTINGS_FILE`].
fn settings(data_dir: &Path, port: u16, options: &ClusterOptions) -> String {
    let data = data_dir.to_string_lossy();
    // The socket file is `<dir>/.s.PGSQL.<port>`; TCP only when that path would be too long.
    let socket_dir = if data.len() + "/.s.PGSQL.65535".len() <= MAX_SOCKET_PATH {
        data.as_ref()
    } else {
        ""
    };
    let mut settings = vec![
        ("port".to_owned(), port.to_string()),
        ("listen_addresses".to_owned(), "127.0.0.1".to_owned()),
        ("unix_socket_directories".to_owned(), socket_dir.to_owned()),
        (
            "max_connections".to_owned(),
            options.max_connections.to_string(),
        ),
        ("fsync".to_owned(), "off".to_owned()),
        ("synchronous_commit".to_owned(), "off".to_owned()),
        ("full_page_writes".to_owned(), "off".to_owned()),
    ];
    settings.extend(options.settings.iter().cloned());
    let mut text = String::from("# Written by kc-testkit at every start: edits are lost.\n");
    for (name, value) in settings {
        let _ = writeln!(text, "{name} = {}", quote_setting(&value));
    }
    text
}

/// `value` as a quoted `postgresql.conf` string (any setting accepts its value quoted).
fn quote_setting(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

/// The part of `log` written since byte `start`, at most its last 30 lines.
fn read_tail(log: &Path, start: u64) -> String {
    let mut text = String::new();
    if let Ok(mut file) = std::fs::File::open(log)
        && file.seek(SeekFrom::Start(start)).is_ok()
    {
        let mut bytes = Vec::new();
        let _ = file.read_to_end(&mut bytes);
        text = String::from_utf8_lossy(&bytes).into_owned();
    }
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// A port on 127.0.0.1 that was free a moment ago.
fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .context("could not find a free port on 127.0.0.1")?;
    Ok(listener.local_addr()?.port())
}

/// Makes `data_dir` hold a cluster; returns whether it created one.
fn prepare_data_dir(data_dir: &Path, bins: &Binaries, owner: &Owner) -> anyhow::Result<bool> {
    if data_dir.join("PG_VERSION").is_file() {
        ensure_include(data_dir)?;
        return Ok(false);
    }
    if data_dir.exists() {
        let mut entries = std::fs::read_dir(data_dir)
            .with_context(|| format!("could not read {}", data_dir.display()))?;
        if entries.next().is_some() {
            bail!(
                "{} is neither empty nor a postgres data directory",
                data_dir.display()
            );
        }
        std::fs::remove_dir(data_dir)
            .with_context(|| format!("could not remove empty {}", data_dir.display()))?;
    }
    let parent = data_dir
        .parent()
        .ok_or_else(|| anyhow!("{} has no parent directory", data_dir.display()))?;
    std::fs::create_dir_all(parent)
        .with_context(|| format!("could not create {}", parent.display()))?;
    let template = template(bins, owner)?;
    run(Command::new("cp")
        .arg("-a")
        .arg("--")
        .arg(&template)
        .arg(data_dir))
    .with_context(|| {
        format!(
            "could not copy the postgres template to {}",
            data_dir.display()
        )
    })?;
    Ok(true)
}

/// A freshly initialised data directory for this Postgres version, made once per target
/// directory (`initdb` takes most of a second; copying its result a fraction of that).
fn template(bins: &Binaries, owner: &Owner) -> anyhow::Result<PathBuf> {
    let root = crate::target_dir().join("kc-testkit");
    let template = root.join(format!("template-{}", bins.version));
    if template.join("PG_VERSION").is_file() {
        return Ok(template);
    }
    std::fs::create_dir_all(&root)
        .with_context(|| format!("could not create {}", root.display()))?;
    let staging = root.join(format!(
        ".template-{}-{}",
        std::process::id(),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    ));
    let made = initdb(&staging, bins, owner).and_then(|()| ensure_include(&staging));
    if let Err(err) = made {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(err);
    }
    // Directory renames are atomic: a template is either complete or absent. Another process
    // may have won the race, and its template is as good as ours.
    match std::fs::rename(&staging, &template) {
        Ok(()) => Ok(template),
        Err(_) if template.join("PG_VERSION").is_file() => {
            let _ = std::fs::remove_dir_all(&staging);
            Ok(template)
        }
        Err(err) => {
            let _ = std::fs::remove_dir_all(&staging);
            Err(err).with_context(|| format!("could not create {}", template.display()))
        }
    }
}

/// Runs `initdb` into the new directory `dir`.
fn initdb(dir: &Path, bins: &Binaries, owner: &Owner) -> anyhow::Result<()> {
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("could not create {}", dir.display()))?;
    owner.chown(dir)?;
    // C.UTF-8 sorts bytewise like C but knows Unicode case (lower() of 'É'); plain C is the
    // fallback for systems without it.
    let mut last_error = None;
    for locale in ["C.UTF-8", "C"] {
        let mut command = owner.command(&bins.dir.join("initdb"));
        command
            .arg("--pgdata")
            .arg(dir)
            .args(["--auth=trust", "--username", SUPERUSER, "--encoding=UTF8"])
            .arg(format!("--locale={locale}"))
            .arg("--no-sync");
        match run(&mut command) {
            Ok(()) => return Ok(()),
            Err(err) => {
                // initdb leaves nothing behind on failure; it may need the directory again.
                last_error = Some(err);
                if !dir.exists() {
                    break;
                }
            }
        }
    }
    Err(last_error.expect("initdb was tried")).context("initdb failed")
}

/// Makes `postgresql.conf` in `data_dir` include [`SETTINGS_FILE`].
fn ensure_include(data_dir: &Path) -> anyhow::Result<()> {
    let conf = data_dir.join("postgresql.conf");
    let text = std::fs::read_to_string(&conf)
        .with_context(|| format!("could not read {}", conf.display()))?;
    let include = format!("include_if_exists = '{SETTINGS_FILE}'");
    if text.lines().any(|line| line.trim() == include) {
        return Ok(());
    }
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&conf)
        .with_context(|| format!("could not open {}", conf.display()))?;
    std::io::Write::write_all(&mut file, format!("\n{include}\n").as_bytes())
        .with_context(|| format!("could not write {}", conf.display()))
}

/// Runs `command` (output captured) and fails with its output unless it succeeds.
fn run(command: &mut Command) -> anyhow::Result<()> {
    let program = command.get_program().to_string_lossy().into_owned();
    let output = command
        .current_dir("/")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("could not run {program}"))?;
    if output.status.success() {
        return Ok(());
    }
    let mut message = format!("{program} failed ({})", output.status);
    for stream in [&output.stdout, &output.stderr] {
        let text = String::from_utf8_lossy(stream);
        if !text.trim().is_empty() {
            let _ = write!(message, "\n{}", text.trim());
        }
    }
    Err(anyhow!(message))
}

/// The Postgres server binaries found on this machine.
#[derive(Debug)]
struct Binaries {
    /// Directory holding `initdb`, `pg_ctl` and `postgres`.
    dir: PathBuf,
    /// Version, e.g. `15.14`, safe for a file name.
    version: String,
}

/// The Postgres server binaries: from `KC_PG_BIN_DIR`, from `PATH`, or the highest version
/// under `/usr/lib/postgresql/*/bin`.
fn binaries() -> anyhow::Result<&'static Binaries> {
    static BINARIES: OnceLock<Result<Binaries, String>> = OnceLock::new();
    BINARIES
        .get_or_init(|| find_binaries().map_err(|err| format!("{err:#}")))
        .as_ref()
        .map_err(|err| anyhow!("{err}"))
}

fn find_binaries() -> anyhow::Result<Binaries> {
    let dir = find_bin_dir().ok_or_else(|| {
        anyhow!(
            "postgres server binaries (initdb, pg_ctl) not found on PATH or under \
             /usr/lib/postgresql/*/bin: install the `postgresql` package \
             (apt-get install -y postgresql)"
        )
    })?;
    let output = Command::new(dir.join("initdb"))
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("could not run {}", dir.join("initdb").display()))?;
    // "initdb (PostgreSQL) 15.14 (Debian 15.14-0+deb12u1)"
    let text = String::from_utf8_lossy(&output.stdout);
    let version = text
        .split_whitespace()
        .skip_while(|word| *word != "(PostgreSQL)")
        .nth(1)
        .filter(|version| {
            version
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        })
        .ok_or_else(|| anyhow!("unexpected `initdb --version` output: {}", text.trim()))?
        .to_owned();
    Ok(Binaries { dir, version })
}

fn find_bin_dir() -> Option<PathBuf> {
    let has_binaries =
        |dir: &Path| is_executable(&dir.join("initdb")) && is_executable(&dir.join("pg_ctl"));
    if let Some(dir) = std::env::var_os("KC_PG_BIN_DIR").filter(|dir| !dir.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        // Resolve symlinks (/usr/local/bin/initdb -> /usr/lib/postgresql/15/bin/initdb) so that
        // pg_ctl and postgres of the same installation are used.
        if let Ok(initdb) = std::fs::canonicalize(dir.join("initdb"))
            && let Some(real_dir) = initdb.parent()
            && has_binaries(real_dir)
        {
            return Some(real_dir.to_path_buf());
        }
    }
    let mut versions: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry
                .file_name()
                .to_str()?
                .split('.')
                .map(str::parse)
                .collect::<Result<Vec<u32>, _>>()
                .ok()?;
            let dir = entry.path().join("bin");
            has_binaries(&dir).then_some((version, dir))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, dir)| dir)
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path)
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// The OS user the server runs as.
#[derive(Debug)]
enum Owner {
    /// The current user.
    Me,
    /// The `postgres` user, because the current user is root (initdb and postgres refuse root).
    Postgres {
        /// Its user id.
        uid: u32,
        /// Its primary group id.
        gid: u32,
    },
}

fn owner() -> anyhow::Result<&'static Owner> {
    static OWNER: OnceLock<Result<Owner, String>> = OnceLock::new();
    OWNER
        .get_or_init(|| find_owner().map_err(|err| format!("{err:#}")))
        .as_ref()
        .map_err(|err| anyhow!("{err}"))
}

fn find_owner() -> anyhow::Result<Owner> {
    if effective_uid()? != 0 {
        return Ok(Owner::Me);
    }
    let id = |flag: &str| -> anyhow::Result<u32> {
        let output = Command::new("id")
            .args([flag, "postgres"])
            .stdin(Stdio::null())
            .output()
            .context("could not run id")?;
        if !output.status.success() {
            bail!(
                "running as root, but there is no `postgres` OS user to run postgres as: \
                 install the `postgresql` package (apt-get install -y postgresql)"
            );
        }
        String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .context("unexpected output of `id`")
    };
    Ok(Owner::Postgres {
        uid: id("-u")?,
        gid: id("-g")?,
    })
}

impl Owner {
    /// Command prefix that runs a program as this user.
    fn prefix(&self) -> Vec<OsString> {
        match self {
            Owner::Me => Vec::new(),
            Owner::Postgres { .. } => ["runuser", "-u", "postgres", "--"]
                .into_iter()
                .map(OsString::from)
                .collect(),
        }
    }

    /// A command that runs `program` as this user.
    fn command(&self, program: &Path) -> Command {
        let mut prefix = self.prefix().into_iter();
        match prefix.next() {
            None => Command::new(program),
            Some(first) => {
                let mut command = Command::new(first);
                command.args(prefix).arg(program);
                command
            }
        }
    }

    /// Hands `path` to this user.
    fn chown(&self, path: &Path) -> anyhow::Result<()> {
        match self {
            Owner::Me => Ok(()),
            Owner::Postgres { uid, gid } => std::os::unix::fs::chown(path, Some(*uid), Some(*gid))
                .with_context(|| format!("could not hand {} to the postgres user", path.display())),
        }
    }
}

/// The effective user id of this process, from `/proc/self/status`.
fn effective_uid() -> anyhow::Result<u32> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("could not read /proc/self/status")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        // Real, effective, saved set, filesystem.
        .and_then(|ids| ids.split_whitespace().nth(1))
        .and_then(|euid| euid.parse().ok())
        .ok_or_else(|| anyhow!("no Uid line in /proc/self/status"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_quoted() {
        assert_eq!(quote_setting("off"), "'off'");
        assert_eq!(quote_setting("it's"), "'it''s'");
        assert_eq!(quote_setting(r"a\b"), r"'a\\b'");
    }

    #[test]
    fn settings_listen_on_loopback_with_the_socket_in_the_data_dir() {
        let text = settings(Path::new("/tmp/pg"), 5555, &ClusterOptions::default());
        assert!(text.contains("port = '5555'"));
        assert!(text.contains("listen_addresses = '127.0.0.1'"));
        assert!(text.contains("unix_socket_directories = '/tmp/pg'"));
        assert!(text.contains("fsync = 'off'"));
        assert!(text.contains("max_connections = '300'"));
    }

    #[test]
    fn a_long_data_dir_gets_no_socket() {
        let long = PathBuf::from(format!("/{}", "d".repeat(100)));
        let text = settings(&long, 5555, &ClusterOptions::default());
        assert!(text.contains("unix_socket_directories = ''"));
    }

    #[test]
    fn effective_uid_is_readable() {
        effective_uid().unwrap();
    }
}
