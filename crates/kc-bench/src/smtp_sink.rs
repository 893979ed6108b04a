//! The SMTP server the benchmark's e-mails go to.
//!
//! [`SmtpSink`] is a minimal ESMTP server (RFC 5321: EHLO/HELO, MAIL, RCPT, DATA with
//! dot-unstuffing up to `<CRLF>.<CRLF>`, RSET, NOOP, QUIT; no PIPELINING, TLS or AUTH) on
//! 127.0.0.1, run by a thread of its own in this process on a single-threaded tokio runtime:
//! the benchmark reports that thread's CPU apart from the load generator's ("smtp sink"), so
//! that what the sink costs is visible. It accepts every message (250) and records, for each,
//! the instant it accepted it, its recipients and its `X-Keycontacts-Notification-Id` and
//! `X-Keycontacts-Kind` headers. kc-notification runs with `--smtp-url
//! smtp://127.0.0.1:<port>` of the sink.
//!

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, anyhow};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

use crate::procfs;

/// One message the sink accepted.
#[derive(Debug, Clone)]
pub(crate) struct Accepted {
    /// When the sink answered 250 to the end of its data.
    pub at: Instant,
    /// Its `RCPT TO` addresses, lowercase.
    pub recipients: Vec<String>,
    /// Its `X-Keycontacts-Notification-Id` header.
    pub notification_id: Option<String>,
    /// Its `X-Keycontacts-Kind` header.
    pub kind: Option<String>,
}

impl Accepted {
    /// Whether it went to `email` and is of `kind`.
    pub(crate) fn is_for(&self, email: &str, kind: &str) -> bool {
        self.kind.as_deref() == Some(kind) && self.recipients.iter().any(|to| to == email)
    }
}

/// What the sink's sessions and its owner share.
#[derive(Debug, Default)]
struct Shared {
    /// Every message accepted, in order.
    log: std::sync::Mutex<Vec<Accepted>>,
    /// Messages accepted.
    accepted: AtomicU64,
    /// Sessions that ended in an error (connection reset, bad input).
    broken: AtomicU64,
    /// Woken at each message accepted.
    changed: Notify,
}

impl Shared {
    fn record(&self, accepted: Accepted) {
        self.log
            .lock()
            .expect("the sink's log lock is never poisoned")
            .push(accepted);
        self.accepted.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_waiters();
    }
}

/// A minimal ESMTP server on 127.0.0.1 that accepts every message and records it: see the
/// module documentation. Stops when dropped.
pub(crate) struct SmtpSink {
    addr: SocketAddr,
    shared: Arc<Shared>,
    thread_id: Option<u32>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SmtpSink {
    /// Starts the sink on a free port of 127.0.0.1, on a thread of its own.
    pub(crate) fn start() -> anyhow::Result<SmtpSink> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .context("could not bind the SMTP sink on 127.0.0.1")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let (stop, stopped) = oneshot::channel();
        let (ready, started) = std::sync::mpsc::channel::<Result<Option<u32>, String>>();
        let served = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("smtp-sink".to_owned())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(err) => {
                        let _ = ready.send(Err(format!("no runtime: {err}")));
                        return;
                    }
                };
                let listener = {
                    let _entered = runtime.enter();
                    match tokio::net::TcpListener::from_std(listener) {
                        Ok(listener) => listener,
                        Err(err) => {
                            let _ = ready.send(Err(format!("no listener: {err}")));
                            return;
                        }
                    }
                };
                let _ = ready.send(Ok(procfs::current_thread_id().ok()));
                runtime.block_on(serve(listener, served, stopped));
            })
            .context("could not start the SMTP sink's thread")?;
        let thread_id = started
            .recv()
            .context("the SMTP sink's thread ended at start")?
            .map_err(|err| anyhow!("the SMTP sink could not start: {err}"))?;
        Ok(SmtpSink {
            addr,
            shared,
            thread_id,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// `smtp://127.0.0.1:<port>`.
    pub(crate) fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    /// The id of the thread that runs it, for its CPU time.
    pub(crate) fn thread_id(&self) -> Option<u32> {
        self.thread_id
    }

    /// Messages accepted so far.
    pub(crate) fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Sessions that ended in an error so far.
    pub(crate) fn broken_sessions(&self) -> u64 {
        self.shared.broken.load(Ordering::SeqCst)
    }

    /// Entries in its log: pass it to [`SmtpSink::since`] later for what came after.
    pub(crate) fn log_len(&self) -> usize {
        self.log().len()
    }

    /// The messages accepted from log entry `from` on.
    pub(crate) fn since(&self, from: usize) -> Vec<Accepted> {
        self.log()
            .get(from..)
            .map(<[Accepted]>::to_vec)
            .unwrap_or_default()
    }

    /// Resolves at the next message accepted (enable it before checking a condition).
    pub(crate) fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.shared.changed.notified()
    }

    /// Waits until `done` holds for the messages accepted from log entry `from` on, for at
    /// most `timeout`; returns whether it held.
    pub(crate) async fn wait_for(
        &self,
        from: usize,
        timeout: Duration,
        mut done: impl FnMut(&[Accepted]) -> bool,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let changed = self.changed();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if done(&self.since(from)) {
                return true;
            }
            tokio::select! {
                () = changed => {}
                () = tokio::time::sleep_until(deadline) => return done(&self.since(from)),
            }
        }
    }

    fn log(&self) -> std::sync::MutexGuard<'_, Vec<Accepted>> {
        self.shared
            .log
            .lock()
            .expect("the sink's log lock is never poisoned")
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Accepts connections until `stop`, one task each.
async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    mut stop: oneshot::Receiver<()>,
) {
    loop {
        tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let shared = Arc::clone(&shared);
                    tokio::spawn(async move {
                        let _ = stream.set_nodelay(true);
                        let (read, write) = stream.into_split();
                        let reader = tokio::io::BufReader::new(read);
                        if session(reader, write, &shared).await.is_err() {
                            shared.broken.fetch_add(1, Ordering::SeqCst);
                        }
                    });
                }
                // Out of file descriptors, most likely: let some close.
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            },
        }
    }
}

/// The name the sink greets with.
const SINK_NAME: &str = "keycontacts-bench-sink";
/// Longest command line it reads (RFC 5321 says 512 octets; generous).
const MAX_COMMAND_LINE: u64 = 4096;
/// Largest message it reads.
const MAX_MESSAGE: u64 = 32 * 1024 * 1024;

/// The envelope of the message being received.
#[derive(Debug, Default)]
struct Envelope {
    /// Whether MAIL FROM was given.
    sender: bool,
    /// RCPT TO addresses, lowercase.
    recipients: Vec<String>,
}

/// One SMTP session, until QUIT or the client closes: every message accepted is recorded in
/// `shared`.
async fn session<R, W>(mut reader: R, mut writer: W, shared: &Shared) -> std::io::Result<()>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    writer
        .write_all(format!("220 {SINK_NAME} ESMTP ready\r\n").as_bytes())
        .await?;
    let mut envelope = Envelope::default();
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = (&mut reader)
            .take(MAX_COMMAND_LINE)
            .read_until(b'\n', &mut line)
            .await?;
        if read == 0 {
            // The client went away without QUIT: not an error of the sink's.
            return Ok(());
        }
        if !line.ends_with(b"\n") {
            writer.write_all(b"500 5.5.2 line too long\r\n").await?;
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "command line too long",
            ));
        }
        let text = String::from_utf8_lossy(trim_line_end(&line)).into_owned();
        let (verb, argument) = match text.split_once(' ') {
            Some((verb, argument)) => (verb.to_ascii_uppercase(), argument.trim()),
            None => (text.to_ascii_uppercase(), ""),
        };
        let reply: String = match verb.as_str() {
            "EHLO" => {
                envelope = Envelope::default();
                format!("250-{SINK_NAME}\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n")
            }
            "HELO" => {
                envelope = Envelope::default();
                format!("250 {SINK_NAME}\r\n")
            }
            "MAIL" => match strip_prefix_ignore_case(argument, "FROM:") {
                Some(_) => {
                    envelope = Envelope {
                        sender: true,
                        recipients: Vec::new(),
                    };
                    "250 2.1.0 ok\r\n".to_owned()
                }
                None => "501 5.5.4 syntax: MAIL FROM:<address>\r\n".to_owned(),
            },
            "RCPT" => match strip_prefix_ignore_case(argument, "TO:").map(address) {
                _ if !envelope.sender => "503 5.5.1 MAIL first\r\n".to_owned(),
                Some(Some(to)) => {
                    envelope.recipients.push(to.to_lowercase());
                    "250 2.1.5 ok\r\n".to_owned()
                }
                _ => "501 5.5.4 syntax: RCPT TO:<address>\r\n".to_owned(),
            },
            "DATA" if envelope.recipients.is_empty() => "503 5.5.1 RCPT first\r\n".to_owned(),
            "DATA" => {
                writer
                    .write_all(b"354 end data with <CR><LF>.<CR><LF>\r\n")
                    .await?;
                let headers = read_data(&mut reader).await?;
                let accepted = Accepted {
                    at: Instant::now(),
                    recipients: std::mem::take(&mut envelope.recipients),
                    notification_id: headers.notification_id,
                    kind: headers.kind,
                };
                envelope = Envelope::default();
                shared.record(accepted);
                "250 2.0.0 ok: queued\r\n".to_owned()
            }
            "RSET" => {
                envelope = Envelope::default();
                "250 2.0.0 ok\r\n".to_owned()
            }
            "NOOP" => "250 2.0.0 ok\r\n".to_owned(),
            "QUIT" => {
                writer.write_all(b"221 2.0.0 bye\r\n").await?;
                writer.flush().await?;
                return Ok(());
            }
            _ => "502 5.5.1 command not implemented\r\n".to_owned(),
        };
        writer.write_all(reply.as_bytes()).await?;
        writer.flush().await?;
    }
}

/// The headers of a message the sink records.
#[derive(Debug, Default, PartialEq, Eq)]
struct Headers {
    notification_id: Option<String>,
    kind: Option<String>,
}

/// Reads a message's data up to the line holding only `.`, undoing dot-stuffing; returns the
/// headers the sink records.
async fn read_data<R: AsyncBufRead + Unpin>(reader: &mut R) -> std::io::Result<Headers> {
    let mut headers = Headers::default();
    let mut in_headers = true;
    // The header the previous line was, for folded continuation lines.
    let mut last: Option<&'static str> = None;
    let mut size: u64 = 0;
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = (&mut *reader)
            .take(MAX_MESSAGE - size)
            .read_until(b'\n', &mut line)
            .await?;
        if read == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                if size >= MAX_MESSAGE {
                    "message too large"
                } else {
                    "the client closed in the middle of a message"
                },
            ));
        }
        size += read as u64;
        let content = trim_line_end(&line);
        if content == b"." {
            return Ok(headers);
        }
        // Dot-stuffing (RFC 5321 4.5.2): a line of the message starting with "." was sent
        // with one more.
        let content = content.strip_prefix(b".").unwrap_or(content);
        if !in_headers {
            continue;
        }
        if content.is_empty() {
            in_headers = false;
            continue;
        }
        let text = String::from_utf8_lossy(content);
        if text.starts_with([' ', '\t']) {
            // A folded continuation of the previous header.
            let value = match last {
                Some("id") => headers.notification_id.as_mut(),
                Some("kind") => headers.kind.as_mut(),
                _ => None,
            };
            if let Some(value) = value {
                value.push_str(text.trim());
            }
            continue;
        }
        last = None;
        let Some((name, value)) = text.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name.eq_ignore_ascii_case("X-Keycontacts-Notification-Id") {
            headers.notification_id = Some(value.trim().to_owned());
            last = Some("id");
        } else if name.eq_ignore_ascii_case("X-Keycontacts-Kind") {
            headers.kind = Some(value.trim().to_owned());
            last = Some("kind");
        }
    }
}

/// `line` without its CRLF (or bare LF).
fn trim_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// `text` after `prefix`, compared without case.
fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| text[prefix.len()..].trim_start())
}

/// The address of a `MAIL FROM:` or `RCPT TO:` argument: `<a@b> PARAMS` or a bare `a@b`.
fn address(argument: &str) -> Option<&str> {
    let address = match argument.strip_prefix('<') {
        Some(rest) => &rest[..rest.find('>')?],
        None => argument.split_whitespace().next()?,
    };
    (!address.is_empty()).then_some(address)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs one session over an in-memory pipe with `input` from the client; returns what the
    /// sink answered and what it recorded.
    async fn converse(input: &str) -> (String, Vec<Accepted>, std::io::Result<()>) {
        let shared = Shared::default();
        let mut output = Vec::new();
        let result = session(input.as_bytes(), &mut output, &shared).await;
        let log = shared.log.lock().unwrap().clone();
        (String::from_utf8(output).unwrap(), log, result)
    }

    fn codes(output: &str) -> Vec<&str> {
        output
            .lines()
            .filter(|line| line.as_bytes().get(3) != Some(&b'-'))
            .map(|line| &line[..3])
            .collect()
    }

    #[tokio::test]
    async fn a_message_is_accepted_and_recorded() {
        let (output, log, result) = converse(
            "EHLO client.example\r\n\
             MAIL FROM:<no-reply@keycontacts.invalid> BODY=8BITMIME\r\n\
             RCPT TO:<Ada@Example.COM>\r\n\
             DATA\r\n\
             From: keycontacts <no-reply@keycontacts.invalid>\r\n\
             X-Keycontacts-Notification-Id: 0190-abc\r\n\
             x-keycontacts-kind:\r\n\
             \tNOTICE_KIND_RIGHTS_CHANGED\r\n\
             Subject: hello\r\n\
             \r\n\
             ..a line that starts with a dot\r\n\
             X-Keycontacts-Kind: not a header, in the body\r\n\
             .\r\n\
             QUIT\r\n",
        )
        .await;
        result.unwrap();
        assert_eq!(
            codes(&output),
            ["220", "250", "250", "250", "354", "250", "221"]
        );
        assert!(output.contains("250-8BITMIME\r\n"), "{output}");
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].recipients, ["ada@example.com"]);
        assert_eq!(log[0].notification_id.as_deref(), Some("0190-abc"));
        assert_eq!(log[0].kind.as_deref(), Some("NOTICE_KIND_RIGHTS_CHANGED"));
        assert!(log[0].is_for("ada@example.com", "NOTICE_KIND_RIGHTS_CHANGED"));
    }

    #[tokio::test]
    async fn commands_out_of_order_are_refused_and_rset_forgets() {
        let (output, log, result) = converse(
            "HELO client\r\n\
             RCPT TO:<a@example.com>\r\n\
             DATA\r\n\
             MAIL FROM:<>\r\n\
             RCPT TO:<a@example.com>\r\n\
             RSET\r\n\
             DATA\r\n\
             NOOP\r\n\
             STARTTLS\r\n\
             MAIL FROM:<>\r\n\
             RCPT TO:\r\n\
             QUIT\r\n",
        )
        .await;
        result.unwrap();
        assert_eq!(
            codes(&output),
            [
                "220", "250", "503", "503", "250", "250", "250", "503", "250", "502", "250", "501",
                "221"
            ]
        );
        assert!(log.is_empty());
    }

    #[tokio::test]
    async fn two_messages_in_one_session_and_a_client_that_just_leaves() {
        let message = |to: &str, id: &str| {
            format!(
                "MAIL FROM:<s@example.com>\r\nRCPT TO:<{to}>\r\nDATA\r\n\
                 X-Keycontacts-Notification-Id: {id}\r\n\r\nbody\r\n.\r\n"
            )
        };
        let input = format!(
            "EHLO c\r\n{}{}",
            message("one@example.com", "1"),
            message("two@example.com", "2")
        );
        let (_, log, result) = converse(&input).await;
        result.unwrap();
        let ids: Vec<Option<&str>> = log
            .iter()
            .map(|mail| mail.notification_id.as_deref())
            .collect();
        assert_eq!(ids, [Some("1"), Some("2")]);
        assert!(log[0].at <= log[1].at);
    }

    #[tokio::test]
    async fn a_message_cut_short_is_an_error_and_not_recorded() {
        let (_, log, result) =
            converse("EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<a@example.com>\r\nDATA\r\nSubject: x\r\n")
                .await;
        assert!(result.is_err());
        assert!(log.is_empty());
    }

    #[test]
    fn addresses_parse_with_or_without_brackets() {
        assert_eq!(address("<a@b.c>"), Some("a@b.c"));
        assert_eq!(address("<a@b.c> NOTIFY=NEVER"), Some("a@b.c"));
        assert_eq!(address("a@b.c SIZE=10"), Some("a@b.c"));
        assert_eq!(address("<>"), None);
        assert_eq!(address("<a@b.c"), None);
        assert_eq!(strip_prefix_ignore_case("to: <x>", "TO:"), Some("<x>"));
        assert_eq!(strip_prefix_ignore_case("t", "TO:"), None);
    }

    /// lettre, the SMTP client kc-notification uses, delivers to the sink over TCP.
    #[tokio::test]
    async fn lettre_delivers_to_the_sink() {
        use lettre::message::MultiPart;
        use lettre::message::header::{HeaderName, HeaderValue};
        use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

        let sink = SmtpSink::start().unwrap();
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(&sink.url())
            .unwrap()
            .build();
        for n in 0..3 {
            let message = Message::builder()
                .from(
                    "keycontacts <no-reply@keycontacts.invalid>"
                        .parse()
                        .unwrap(),
                )
                .to(format!("User-{n}@Example.com").parse().unwrap())
                .subject("Vos droits ont changé")
                .raw_header(HeaderValue::new(
                    HeaderName::new_from_ascii_str("X-Keycontacts-Notification-Id"),
                    format!("id-{n}"),
                ))
                .multipart(MultiPart::alternative_plain_html(
                    ".leading dot\r\n.\r\nété".to_owned(),
                    "<p>été</p>".to_owned(),
                ))
                .unwrap();
            transport.send(message).await.unwrap();
        }
        assert!(
            sink.wait_for(0, Duration::from_secs(10), |accepted| accepted.len() == 3)
                .await
        );
        let accepted = sink.since(0);
        assert_eq!(accepted[2].recipients, ["user-2@example.com"]);
        assert_eq!(accepted[2].notification_id.as_deref(), Some("id-2"));
        assert_eq!(sink.accepted(), 3);
        assert_eq!(sink.broken_sessions(), 0);
        assert!(sink.thread_id().is_some());
    }
}
