//! An SMTP client over lettre's `AsyncSmtpConnection` with its own small pool.
//!
//! lettre's pooled async transport bounds only the connection with its timeout, and a send
//! abandoned half-way (our deadline on the whole attempt) would go back to its pool in the
//! middle of an SMTP dialogue, so a later e-mail could fail on the leftovers (`503 nested
//! MAIL command`, a permanent reply). Here a connection goes back to the pool only after a
//! completed send (accepted or refused by the server with a clean reply); a connection that
//! failed, broke or ran out of time is dropped.
//!
//! Idle connections are reused without a `NOOP` when they were used in the last few
//! seconds (the busy case); older ones are checked with a `NOOP` first, and connections idle
//! longer than a minute are closed.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, DEFAULT_MECHANISMS};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use url::Url;

use super::sent::{Sent, classify};

/// Idle connections used more recently than this are reused without a `NOOP`.
const FRESH: Duration = Duration::from_secs(5);
/// Idle connections older than this are closed instead of reused.
const MAX_IDLE: Duration = Duration::from_secs(60);

/// How the connection is secured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Security {
    /// Plain text (`smtp://`).
    None,
    /// STARTTLS, required (`smtp://…?tls=required`).
    StartTls,
    /// STARTTLS when the server offers it (`smtp://…?tls=opportunistic`).
    Opportunistic,
    /// Implicit TLS (`smtps://`).
    Wrapper,
}

/// Where and how to connect, from `--smtp-url`.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct SmtpTarget {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// TLS.
    pub security: Security,
    /// Name sent with EHLO (the URL's path), else this host's name.
    pub hello_name: Option<String>,
    /// User name and password given in the URL.
    pub credentials: Option<(String, String)>,
}

impl std::fmt::Debug for SmtpTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpTarget")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("credentials", &self.credentials.as_ref().map(|_| "…"))
            .finish_non_exhaustive()
    }
}

impl SmtpTarget {
    /// Parses `smtp://host:port`, `smtp://host:port?tls=required|opportunistic` or
    /// `smtps://host:port` (ports default to 25, 587 with STARTTLS, 465 with TLS; an
    /// optional `user:password@` and `/ehlo-name`). `None` for anything else.
    pub(crate) fn parse(text: &str) -> Option<Self> {
        let url = Url::parse(text).ok()?;
        let host = url.host_str().filter(|host| !host.is_empty())?.to_owned();
        let tls = url
            .query_pairs()
            .find(|(key, _)| key == "tls")
            .map(|(_, value)| value.into_owned());
        let security = match (url.scheme(), tls.as_deref()) {
            ("smtp", None) => Security::None,
            ("smtp", Some("required")) => Security::StartTls,
            ("smtp", Some("opportunistic")) => Security::Opportunistic,
            ("smtps", None | Some("required")) => Security::Wrapper,
            _ => return None,
        };
        let port = url.port().unwrap_or(match security {
            Security::None => 25,
            Security::StartTls | Security::Opportunistic => 587,
            Security::Wrapper => 465,
        });
        let decode = |text: &str| percent_decode(text).filter(|decoded| !decoded.is_empty());
        let credentials = match (decode(url.username()), url.password().and_then(decode)) {
            (Some(user), Some(password)) => Some((user, password)),
            _ => None,
        };
        let path = url.path().trim_matches('/');
        Some(Self {
            host,
            port,
            security,
            hello_name: (!path.is_empty()).then(|| path.to_owned()),
            credentials,
        })
    }
}

/// Decodes `%XX` escapes; `None` when they do not make UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Why a connection could not be opened.
enum Opening {
    /// The TCP connection failed or timed out.
    Socket(std::io::Error),
    /// The SMTP dialogue (greeting, EHLO, TLS, AUTH) failed.
    Smtp(lettre::transport::smtp::Error),
}

impl From<lettre::transport::smtp::Error> for Opening {
    fn from(error: lettre::transport::smtp::Error) -> Self {
        Opening::Smtp(error)
    }
}

/// A connection waiting in the pool.
struct Idle {
    connection: AsyncSmtpConnection,
    since: Instant,
}

/// Sends e-mails over pooled SMTP connections.
pub(crate) struct SmtpClient {
    target: SmtpTarget,
    credentials: Option<Credentials>,
    hello_name: ClientId,
    tls: Option<TlsParameters>,
    timeout: Duration,
    max_idle: usize,
    idle: Mutex<Vec<Idle>>,
}

impl std::fmt::Debug for SmtpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpClient")
            .field("target", &self.target)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl SmtpClient {
    /// A client of `target`, authenticating with `credentials` (else the URL's), each
    /// attempt bounded by `timeout`, keeping at most `max_idle` idle connections.
    pub(crate) fn new(
        target: SmtpTarget,
        credentials: Option<(String, String)>,
        timeout: Duration,
        max_idle: usize,
    ) -> anyhow::Result<Self> {
        let tls = match target.security {
            Security::None => None,
            _ => Some(TlsParameters::new(target.host.clone()).map_err(|error| {
                anyhow::anyhow!("--smtp-url (KC_SMTP_URL): cannot set up TLS: {error}")
            })?),
        };
        let credentials = credentials
            .or_else(|| target.credentials.clone())
            .map(|(user, password)| Credentials::new(user, password));
        let hello_name = target
            .hello_name
            .clone()
            .map_or_else(ClientId::default, ClientId::Domain);
        Ok(Self {
            target,
            credentials,
            hello_name,
            tls,
            timeout,
            max_idle,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Opens a connection: TCP (and TLS), EHLO, STARTTLS, AUTH. A failure comes classified.
    async fn connect(&self) -> Result<AsyncSmtpConnection, Sent> {
        self.open().await.map_err(|error| match error {
            Opening::Socket(error) => Sent::transient(0, format!("connection failed: {error}")),
            Opening::Smtp(error) => classify(&error),
        })
    }

    /// [`Self::connect`] before its failures are classified.
    async fn open(&self) -> Result<AsyncSmtpConnection, Opening> {
        let address = (self.target.host.as_str(), self.target.port);
        let mut connection = match (&self.target.security, &self.tls) {
            (Security::Wrapper, Some(tls)) => {
                AsyncSmtpConnection::connect_tokio1(
                    address,
                    Some(self.timeout),
                    &self.hello_name,
                    Some(tls.clone()),
                    None,
                )
                .await?
            }
            _ => {
                // Our own socket, for TCP_NODELAY: lettre writes a message and its closing
                // `.` line in two writes, and without it Nagle's algorithm holds the `.`
                // until the server's delayed ACK (up to 40 ms per e-mail on Linux).
                let stream =
                    tokio::time::timeout(self.timeout, tokio::net::TcpStream::connect(address))
                        .await
                        .map_err(|_| {
                            Opening::Socket(std::io::Error::new(
                                std::io::ErrorKind::TimedOut,
                                "timed out",
                            ))
                        })?
                        .map_err(Opening::Socket)?;
                stream.set_nodelay(true).map_err(Opening::Socket)?;
                AsyncSmtpConnection::connect_with_transport(Box::new(stream), &self.hello_name)
                    .await?
            }
        };
        match (&self.target.security, &self.tls) {
            (Security::StartTls, Some(tls)) => {
                connection.starttls(tls.clone(), &self.hello_name).await?;
            }
            (Security::Opportunistic, Some(tls)) if connection.can_starttls() => {
                connection.starttls(tls.clone(), &self.hello_name).await?;
            }
            _ => {}
        }
        if let Some(credentials) = &self.credentials {
            connection.auth(DEFAULT_MECHANISMS, credentials).await?;
        }
        Ok(connection)
    }

    /// A usable connection: a pooled one (checked with `NOOP` unless used moments ago), or
    /// a new one.
    async fn checkout(&self) -> Result<AsyncSmtpConnection, Sent> {
        loop {
            let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
            let Some(Idle {
                mut connection,
                since,
            }) = idle
            else {
                return self.connect().await;
            };
            let age = since.elapsed();
            if age > MAX_IDLE || connection.has_broken() {
                continue;
            }
            if age <= FRESH || connection.test_connected().await {
                return Ok(connection);
            }
        }
    }

    /// Puts a connection back after a completed exchange, unless it broke or the pool is
    /// full.
    fn checkin(&self, connection: AsyncSmtpConnection) {
        if connection.has_broken() {
            return;
        }
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < self.max_idle
        {
            idle.push(Idle {
                connection,
                since: Instant::now(),
            });
        }
    }

    /// Sends `email` to the envelope's recipients within the timeout.
    pub(crate) async fn send(&self, envelope: &Envelope, email: &[u8]) -> Sent {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let timed_out = || {
            Sent::transient(
                0,
                format!("timeout: no answer within {} ms", self.timeout.as_millis()),
            )
        };
        let mut connection = match tokio::time::timeout_at(deadline, self.checkout()).await {
            Err(_) => return timed_out(),
            Ok(Err(failed)) => return failed,
            Ok(Ok(connection)) => connection,
        };
        // On a timeout the connection is dropped with the abandoned dialogue.
        match tokio::time::timeout_at(deadline, connection.send(envelope, email)).await {
            Err(_) => timed_out(),
            Ok(Ok(response)) => {
                self.checkin(connection);
                Sent::delivered(
                    i32::from(u16::from(response.code())),
                    response.first_line().unwrap_or_default().to_owned(),
                )
            }
            // lettre aborts the connection on any error: it is not reused.
            Ok(Err(error)) => classify(&error),
        }
    }

    /// Closes the idle connections.
    pub(crate) async fn shutdown(&self) {
        let idle: Vec<Idle> = match self.idle.lock() {
            Ok(mut idle) => idle.drain(..).collect(),
            Err(_) => Vec::new(),
        };
        for mut idle in idle {
            let _ = tokio::time::timeout(Duration::from_secs(1), idle.connection.quit()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let plain = SmtpTarget::parse("smtp://127.0.0.1:2525").unwrap();
        assert_eq!(
            (plain.host.as_str(), plain.port, &plain.security),
            ("127.0.0.1", 2525, &Security::None)
        );
        assert_eq!(plain.credentials, None);
        let starttls = SmtpTarget::parse("smtp://mail.example.com?tls=required").unwrap();
        assert_eq!(
            (starttls.port, starttls.security),
            (587, Security::StartTls)
        );
        let tls = SmtpTarget::parse("smtps://u%40x:p%2Fw@mail.example.com/relay.example").unwrap();
        assert_eq!((tls.port, &tls.security), (465, &Security::Wrapper));
        assert_eq!(tls.credentials, Some(("u@x".to_owned(), "p/w".to_owned())));
        assert_eq!(tls.hello_name.as_deref(), Some("relay.example"));
        assert!(!format!("{tls:?}").contains("p/w"));
        for bad in [
            "http://h:25",
            "smtp://",
            "smtp://h:1?tls=maybe",
            "smtps://h?tls=opportunistic",
            "not a url",
        ] {
            assert!(SmtpTarget::parse(bad).is_none(), "{bad}");
        }
        assert_eq!(percent_decode("a%20b%"), Some("a b%".to_owned()));
        assert_eq!(percent_decode("%zz"), None);
    }
}
