//! A real SMTP server for tests: `aiosmtpd` (Python, `pip install aiosmtpd`) running a small
//! script (`smtp_sink.py`) as a child process on a port of its own.
//!
//! The test binds `127.0.0.1:0` and hands the listening socket to the child as its standard
//! input, so no port is raced for; [`SmtpServer::restart`] binds the same port again. The
//! server records every accepted message (envelope and parsed content) in a journal *before*
//! it answers 250, so whatever a client saw accepted is visible through
//! [`SmtpServer::messages`]. It can be told to refuse the next commands with a given reply
//! ([`SmtpServer::fail_next`]) or to answer DATA slowly ([`SmtpServer::set_data_delay`]).

use std::collections::VecDeque;
use std::io::{Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdTcpListener};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// The server script, written next to the journal at start.
const SCRIPT: &str = include_str!("smtp_sink.py");
/// Longest the server may take to greet after a start or restart.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Default patience of [`SmtpServer::wait_for`] callers: generous, only reached on failure.
pub const PATIENCE: Duration = Duration::from_secs(60);
/// Between two polls of the journal.
const POLL: Duration = Duration::from_millis(20);
/// Lines of the server's standard error kept for failure messages.
const STDERR_LINES: usize = 50;

/// One message the server accepted.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ReceivedMessage {
    /// Envelope sender (`MAIL FROM`).
    #[serde(default)]
    pub mail_from: Option<String>,
    /// Envelope recipients (`RCPT TO`), in order.
    #[serde(default)]
    pub rcpt_tos: Vec<String>,
    /// The `Subject` header, RFC 2047 words decoded.
    #[serde(default)]
    pub subject: String,
    /// The `From` header, decoded.
    #[serde(default)]
    pub from: String,
    /// The `To` header, decoded.
    #[serde(default)]
    pub to: String,
    /// The `Content-Language` header.
    #[serde(default)]
    pub content_language: String,
    /// The `Message-ID` header, with its angle brackets.
    #[serde(default)]
    pub message_id: String,
    /// Every top-level header as (name, decoded value), in order.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// MIME type of the message itself, e.g. `multipart/alternative`.
    #[serde(default)]
    pub content_type: String,
    /// Whether the message is `multipart/alternative`.
    #[serde(default)]
    pub multipart_alternative: bool,
    /// The `text/plain` part, decoded (transfer encoding and charset); `None` when absent.
    #[serde(default)]
    pub text: Option<String>,
    /// The `text/html` part, decoded; `None` when absent.
    #[serde(default)]
    pub html: Option<String>,
    /// The message exactly as received (lossy UTF-8).
    #[serde(default)]
    pub raw: String,
    /// Why the server could not parse the message, when it could not.
    #[serde(default)]
    pub parse_error: Option<String>,
}

impl ReceivedMessage {
    /// Every value of the header `name` (case-insensitive), in order.
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(header, _)| header.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
            .collect()
    }

    /// The first value of the header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_values(name).into_iter().next()
    }
}

/// One command the server refused because a test told it to ([`SmtpServer::fail_next`]).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Refusal {
    /// `RCPT` or `DATA`.
    pub command: String,
    /// The reply code sent.
    pub code: u16,
    /// The reply text sent.
    pub text: String,
    /// Envelope sender of the transaction.
    #[serde(default)]
    pub mail_from: Option<String>,
    /// The refused recipient (RCPT), or the transaction's recipients (DATA).
    #[serde(default)]
    pub rcpt_tos: Vec<String>,
}

/// An SMTP command a failure can be armed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpCommand {
    /// `RCPT TO`: the recipient is refused.
    Rcpt,
    /// `DATA`: the message is refused after it was transmitted.
    Data,
}

impl SmtpCommand {
    fn key(self) -> &'static str {
        match self {
            Self::Rcpt => "RCPT",
            Self::Data => "DATA",
        }
    }
}

/// One journal line.
#[derive(Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
enum JournalEntry {
    Message(Box<ReceivedMessage>),
    Refused(Refusal),
}

/// What the journal held so far, read incrementally.
#[derive(Default)]
struct Journal {
    offset: u64,
    pending: Vec<u8>,
    messages: Vec<ReceivedMessage>,
    refusals: Vec<Refusal>,
}

/// One armed failure: answer the next `count` `command`s (for `rcpt` only, when set).
#[derive(Debug)]
struct FailSpec {
    seq: u64,
    command: SmtpCommand,
    rcpt: Option<String>,
    count: u32,
    code: u16,
    text: String,
}

/// What the test asked the server to do; written whole to the control file at each change.
#[derive(Debug, Default)]
struct ControlState {
    seq: u64,
    fail: Vec<FailSpec>,
    data_delay: Duration,
}

impl ControlState {
    fn to_json(&self) -> serde_json::Value {
        let fail: Vec<serde_json::Value> = self
            .fail
            .iter()
            .map(|spec| {
                serde_json::json!({
                    "seq": spec.seq,
                    "command": spec.command.key(),
                    "rcpt": spec.rcpt,
                    "count": spec.count,
                    "code": spec.code,
                    "text": spec.text,
                })
            })
            .collect();
        serde_json::json!({
            "fail": fail,
            "data_delay_ms": u64::try_from(self.data_delay.as_millis()).unwrap_or(u64::MAX),
        })
    }
}

/// A real SMTP server (aiosmtpd) running as a child process on `127.0.0.1`.
///
/// Killed when dropped; its journal directory is removed then.
pub struct SmtpServer {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
    journal: Mutex<Journal>,
    control: Mutex<ControlState>,
    stderr: Arc<Mutex<VecDeque<String>>>,
}

impl std::fmt::Debug for SmtpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpServer")
            .field("port", &self.port)
            .field("dir", &self.dir)
            .field("running", &self.child.is_some())
            .finish_non_exhaustive()
    }
}

impl SmtpServer {
    /// Starts a server on a free port of `127.0.0.1` and waits until it greets.
    ///
    /// Panics with a clear message when `python3` or `aiosmtpd` is missing.
    pub async fn start() -> Self {
        let listener = StdTcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local address").port();
        let root = crate::target_dir().join("kc-testkit").join("smtp");
        remove_stale_dirs(&root);
        let dir = root.join(format!(
            "{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|error| panic!("create {}: {error}", dir.display()));
        std::fs::write(dir.join("smtp_sink.py"), SCRIPT).expect("write the server script");
        std::fs::write(dir.join("journal.jsonl"), b"").expect("create the journal");
        let mut server = Self {
            port,
            dir,
            child: None,
            journal: Mutex::new(Journal::default()),
            control: Mutex::new(ControlState::default()),
            stderr: Arc::new(Mutex::new(VecDeque::new())),
        };
        server.write_control();
        server.spawn(listener).await;
        server
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// `smtp://127.0.0.1:PORT`, for `--smtp-url`.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Whether the server process is running (not stopped).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Every message accepted so far (across restarts), oldest first.
    pub fn messages(&self) -> Vec<ReceivedMessage> {
        self.read_journal().messages.clone()
    }

    /// Every command refused so far because of [`SmtpServer::fail_next`], oldest first.
    pub fn refusals(&self) -> Vec<Refusal> {
        self.read_journal().refusals.clone()
    }

    /// Polls the accepted messages until `done` holds for them, and returns them; panics
    /// after `patience` naming `what` and summing up what was received.
    pub async fn wait_for(
        &self,
        what: &str,
        patience: Duration,
        mut done: impl FnMut(&[ReceivedMessage]) -> bool,
    ) -> Vec<ReceivedMessage> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let messages = self.messages();
            if done(&messages) {
                return messages;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!(
                    "timed out after {patience:?} waiting until {what}; the SMTP server received {} \
                     message(s): {:#?}\nserver stderr: {:?}",
                    messages.len(),
                    messages.iter().map(summary).collect::<Vec<_>>(),
                    self.stderr_tail(),
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Answers the next `count` DATA commands with `code` and `text` (e.g. 451, 550), then
    /// accepts again. Replaces failures armed earlier on DATA for any recipient.
    pub fn fail_next(&self, count: u32, code: u16, text: &str) {
        self.fail_next_on(SmtpCommand::Data, None, count, code, text);
    }

    /// Answers the next `count` DATA commands of messages to `rcpt` (case-insensitive) with
    /// `code` and `text`, then accepts them again; messages to others are not affected.
    /// Replaces failures armed earlier on DATA for `rcpt`.
    pub fn fail_next_to(&self, rcpt: &str, count: u32, code: u16, text: &str) {
        self.fail_next_on(SmtpCommand::Data, Some(rcpt), count, code, text);
    }

    /// Answers the next `count` `command`s (those for `rcpt` only, when given) with `code`
    /// and `text`, then accepts again. Replaces failures armed earlier on the same command
    /// and recipient.
    pub fn fail_next_on(
        &self,
        command: SmtpCommand,
        rcpt: Option<&str>,
        count: u32,
        code: u16,
        text: &str,
    ) {
        assert!(
            (400..600).contains(&code),
            "a failure reply is a 4xx or 5xx code: {code}"
        );
        assert!(
            !text.contains(['\r', '\n']),
            "the reply text is one line: {text:?}"
        );
        {
            let mut control = self.control.lock().expect("control lock");
            control.seq += 1;
            let seq = control.seq;
            let rcpt = rcpt.map(str::to_owned);
            control
                .fail
                .retain(|spec| spec.command != command || spec.rcpt != rcpt);
            control.fail.push(FailSpec {
                seq,
                command,
                rcpt,
                count,
                code,
                text: text.to_owned(),
            });
        }
        self.write_control();
    }

    /// Makes the server wait `delay` after it recorded a message and before it answers 250
    /// (a slow server); `Duration::ZERO` answers at once again.
    pub fn set_data_delay(&self, delay: Duration) {
        self.control.lock().expect("control lock").data_delay = delay;
        self.write_control();
    }

    /// Kills the server; its port refuses connections until [`SmtpServer::restart`].
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGKILL: a crash, not a drain. Waiting reaps it, so its sockets are closed.
            let _ = child.kill().await;
        }
    }

    /// Starts the server again on the same port (after [`SmtpServer::stop`], or kills it
    /// first). Failures not yet consumed and the DATA delay are forgotten; the journal is
    /// kept.
    pub async fn restart(&mut self) {
        self.stop().await;
        {
            let mut control = self.control.lock().expect("control lock");
            control.fail.clear();
            control.data_delay = Duration::ZERO;
        }
        self.write_control();
        let addr = self.addr();
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        let listener = loop {
            match StdTcpListener::bind(addr) {
                Ok(listener) => break listener,
                Err(error) => {
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "bind {addr} again within {READY_TIMEOUT:?}: {error}"
                    );
                    tokio::time::sleep(POLL).await;
                }
            }
        };
        self.spawn(listener).await;
    }

    /// The last lines the server wrote on its standard error.
    pub fn stderr_tail(&self) -> Vec<String> {
        self.stderr
            .lock()
            .expect("stderr lock")
            .iter()
            .cloned()
            .collect()
    }

    /// Starts the child on `listener` and waits for its greeting.
    async fn spawn(&mut self, listener: StdTcpListener) {
        let socket = OwnedFd::from(listener);
        let mut child = Command::new("python3")
            .arg("-u")
            .arg(self.dir.join("smtp_sink.py"))
            .arg("--journal")
            .arg(self.dir.join("journal.jsonl"))
            .arg("--control")
            .arg(self.dir.join("control.json"))
            .stdin(Stdio::from(socket))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|error| panic!("start python3 (the SMTP server): {error}"));
        // The Command (and with it this process's copy of the socket) is gone: once the child
        // dies, the port refuses connections.
        let stderr = child.stderr.take().expect("piped stderr");
        let tail = Arc::clone(&self.stderr);
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let mut tail = tail.lock().expect("stderr lock");
                if tail.len() == STDERR_LINES {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
        });
        self.child = Some(child);
        self.wait_ready().await;
    }

    /// Waits until the server greets with 220 on a fresh connection (the socket accepts
    /// connections before the child serves them: only the greeting proves it serves).
    async fn wait_ready(&mut self) {
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!(
                    "the SMTP server exited with {status} before serving (is aiosmtpd installed? \
                     `python3 -m pip install aiosmtpd`): {:?}",
                    self.stderr_tail()
                );
            }
            if greets(self.addr()).await {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the SMTP server greets within {READY_TIMEOUT:?}: {:?}",
                self.stderr_tail()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Writes the control file atomically (temporary file, then rename).
    fn write_control(&self) {
        let state = self.control.lock().expect("control lock").to_json();
        let temporary = self.dir.join("control.json.tmp");
        std::fs::write(&temporary, state.to_string()).expect("write the control file");
        std::fs::rename(&temporary, self.dir.join("control.json"))
            .expect("replace the control file");
    }

    /// Reads what was appended to the journal since the last read; complete lines only.
    fn read_journal(&self) -> std::sync::MutexGuard<'_, Journal> {
        let mut journal = self.journal.lock().expect("journal lock");
        let path = self.dir.join("journal.jsonl");
        let mut file = std::fs::File::open(&path)
            .unwrap_or_else(|error| panic!("open {}: {error}", path.display()));
        file.seek(SeekFrom::Start(journal.offset))
            .expect("seek the journal");
        let mut appended = Vec::new();
        file.read_to_end(&mut appended).expect("read the journal");
        journal.offset += appended.len() as u64;
        journal.pending.extend_from_slice(&appended);
        while let Some(end) = journal.pending.iter().position(|byte| *byte == b'\n') {
            let line: Vec<u8> = journal.pending.drain(..=end).collect();
            let entry: JournalEntry = serde_json::from_slice(&line).unwrap_or_else(|error| {
                panic!(
                    "a journal line of the SMTP server does not parse ({error}): {}",
                    String::from_utf8_lossy(&line)
                )
            });
            match entry {
                JournalEntry::Message(message) => journal.messages.push(*message),
                JournalEntry::Refused(refusal) => journal.refusals.push(refusal),
            }
        }
        journal
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
        remove_dir(&self.dir);
    }
}

fn remove_dir(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
}

/// Removes the directories of servers whose test process is gone (`<pid>-<id>` names; a
/// test process killed outright runs no destructor). Their servers stopped themselves: the
/// script exits once its parent is gone.
fn remove_stale_dirs(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|name| name.split('-').next()) else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            remove_dir(&entry.path());
        }
    }
}

/// Whether a fresh connection to `addr` gets a 220 greeting (then says QUIT).
async fn greets(addr: SocketAddr) -> bool {
    let attempt = async {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        let (read, mut write) = stream.split();
        let mut line = String::new();
        BufReader::new(read).read_line(&mut line).await.ok()?;
        let _ = write.write_all(b"QUIT\r\n").await;
        Some(line.starts_with("220"))
    };
    tokio::time::timeout(Duration::from_secs(5), attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// One line per message for failure messages: no bodies.
fn summary(message: &ReceivedMessage) -> String {
    format!(
        "to {:?} id {} lang {} subject {:?}",
        message.rcpt_tos, message.message_id, message.content_language, message.subject
    )
}
