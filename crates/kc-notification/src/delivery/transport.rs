//! Where e-mails go: an SMTP server through lettre's pooled async transport, or a mail
//! directory of `.eml` files; and how the e-mail of a notification is written.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::{Address, Message};

use super::sent::Sent;
use super::smtp::{SmtpClient, SmtpTarget};
use crate::storage::notifications::Claimed;

/// Header naming the notification an e-mail carries.
pub(crate) const NOTIFICATION_ID_HEADER: &str = "X-Keycontacts-Notification-Id";
/// Header naming the kind of notice (`NOTICE_KIND_…`).
pub(crate) const KIND_HEADER: &str = "X-Keycontacts-Kind";

/// The SMTP server and how to talk to it.
#[derive(Clone)]
pub struct SmtpSettings {
    /// `smtp://host:port`, `smtp://host:port?tls=required` or `smtps://host:port`.
    pub url: String,
    /// User name and password, if the server wants them.
    pub credentials: Option<(String, String)>,
    /// Longest time of one network operation.
    pub timeout: Duration,
    /// Most pooled connections.
    pub pool_size: u32,
}

impl std::fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry credentials: never print it.
        f.debug_struct("SmtpSettings")
            .field("credentials", &self.credentials.as_ref().map(|_| "…"))
            .field("timeout", &self.timeout)
            .field("pool_size", &self.pool_size)
            .finish_non_exhaustive()
    }
}

impl SmtpSettings {
    /// Checks the URL: fails with a line naming `--smtp-url` (without the URL, which may
    /// carry a password).
    pub fn check(&self) -> anyhow::Result<()> {
        self.target().map(drop)
    }

    fn target(&self) -> anyhow::Result<SmtpTarget> {
        SmtpTarget::parse(&self.url).ok_or_else(|| {
            anyhow::anyhow!(
                "--smtp-url (KC_SMTP_URL) is not an SMTP URL like smtp://host:port, \
                 smtp://host:port?tls=required or smtps://host:port"
            )
        })
    }

    /// The client.
    fn client(&self) -> anyhow::Result<SmtpClient> {
        SmtpClient::new(
            self.target()?,
            self.credentials.clone(),
            self.timeout,
            self.pool_size as usize,
        )
    }
}

/// Where mail goes.
#[derive(Debug, Clone)]
pub enum TransportSettings {
    /// An SMTP server.
    Smtp(SmtpSettings),
    /// A directory of `.eml` files.
    MailDir(PathBuf),
}

/// The `From` of every e-mail.
#[derive(Debug, Clone)]
pub struct Mailer {
    from: Mailbox,
}

impl Mailer {
    /// Parses `--mail-from`.
    pub fn parse_from(text: &str) -> anyhow::Result<Self> {
        let from: Mailbox = text.parse().map_err(|_| {
            anyhow::anyhow!(
                "--mail-from (KC_MAIL_FROM) is not an address like `keycontacts <no-reply@example.com>`"
            )
        })?;
        Ok(Self { from })
    }

    /// The e-mail of a claimed notification: multipart/alternative (text, then HTML, both
    /// UTF-8), with a stable `Message-ID` (the same on every attempt) and the
    /// `Content-Language`, `X-Keycontacts-Notification-Id` and `X-Keycontacts-Kind` headers.
    /// `Err` (with the reason) when the address cannot be written: a permanent failure.
    pub fn message(&self, claimed: &Claimed) -> Result<Message, String> {
        let address: Address = claimed
            .email
            .parse()
            .map_err(|_| "the recipient address is not a valid e-mail address".to_owned())?;
        let header = |name: &'static str, value: String| {
            HeaderValue::new(HeaderName::new_from_ascii_str(name), value)
        };
        Message::builder()
            .from(self.from.clone())
            .to(Mailbox::new(None, address))
            .subject(claimed.subject.clone())
            .message_id(Some(format!("<{}@keycontacts>", claimed.notification_id)))
            .raw_header(header(
                "Content-Language",
                claimed.locale.as_str().to_owned(),
            ))
            .raw_header(header(
                NOTIFICATION_ID_HEADER,
                claimed.notification_id.to_string(),
            ))
            .raw_header(header(KIND_HEADER, claimed.kind.proto_name()))
            .multipart(MultiPart::alternative_plain_html(
                claimed.text_body.clone(),
                claimed.html_body.clone(),
            ))
            .map_err(|error| format!("the e-mail cannot be written: {error}"))
    }
}

/// Sends e-mails.
#[derive(Clone)]
pub(crate) enum Transport {
    /// Through an SMTP server (pooled connections).
    Smtp(Arc<SmtpClient>),
    /// Into a directory.
    MailDir(PathBuf),
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Transport::Smtp(_) => f.write_str("Transport::Smtp"),
            Transport::MailDir(dir) => f.debug_tuple("Transport::MailDir").field(dir).finish(),
        }
    }
}

impl Transport {
    /// The transport of `settings`; creates the mail directory when missing.
    pub(crate) fn new(settings: &TransportSettings) -> anyhow::Result<Self> {
        match settings {
            TransportSettings::Smtp(smtp) => Ok(Transport::Smtp(Arc::new(smtp.client()?))),
            TransportSettings::MailDir(dir) => {
                std::fs::create_dir_all(dir).with_context(|| {
                    format!("--mail-dir (KC_MAIL_DIR): cannot create {}", dir.display())
                })?;
                Ok(Transport::MailDir(dir.clone()))
            }
        }
    }

    /// Sends `message` (of `claimed`), and says how it went. SMTP attempts are bounded by
    /// `--smtp-timeout`.
    pub(crate) async fn send(&self, message: &Message, claimed: &Claimed) -> Sent {
        let formatted = message.formatted();
        match self {
            Transport::Smtp(smtp) => smtp.send(message.envelope(), &formatted).await,
            Transport::MailDir(dir) => {
                let dir = dir.clone();
                let id = claimed.notification_id;
                let written = tokio::task::spawn_blocking(move || {
                    write_atomically(&dir, &format!("{id}.eml"), &formatted)
                })
                .await;
                match written {
                    Ok(Ok(())) => Sent::delivered(0, "written to the mail directory"),
                    Ok(Err(error)) => {
                        Sent::transient(0, format!("writing to the mail directory failed: {error}"))
                    }
                    Err(error) => Sent::transient(0, format!("writing task failed: {error}")),
                }
            }
        }
    }

    /// Closes pooled connections.
    pub(crate) async fn shutdown(&self) {
        if let Transport::Smtp(smtp) = self {
            smtp.shutdown().await;
        }
    }
}

/// Writes `name` in `dir` atomically: a temporary file written and synced, then renamed.
pub(crate) fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let temporary = dir.join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()));
    let result = (|| {
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temporary, dir.join(name))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    result
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use uuid::Uuid;

    use super::*;
    use crate::domain::{Kind, Lang};

    fn claimed(email: &str) -> Claimed {
        Claimed {
            notification_id: Uuid::from_u128(42),
            kind: Kind::Invoice,
            email: email.to_owned(),
            locale: Lang::Fr,
            subject: "Facture n° 7 — été".to_owned(),
            text_body: "Bonjour,\nla facture.\n".to_owned(),
            html_body: "<p>Bonjour</p>".to_owned(),
            attempt: 1,
            attempt_in_round: 1,
            attempt_time: Utc::now(),
            code_expired: false,
        }
    }

    #[test]
    fn the_message_carries_both_parts_and_stable_headers() {
        let mailer = Mailer::parse_from("keycontacts <no-reply@keycontacts.invalid>").unwrap();
        let message = mailer.message(&claimed("ada@example.com")).unwrap();
        let text = String::from_utf8(message.formatted()).unwrap();
        let id = Uuid::from_u128(42);
        assert!(
            text.contains(&format!("Message-ID: <{id}@keycontacts>")),
            "{text}"
        );
        assert!(text.contains(&format!("X-Keycontacts-Notification-Id: {id}")));
        assert!(text.contains("X-Keycontacts-Kind: NOTICE_KIND_INVOICE"));
        assert!(text.contains("Content-Language: fr"));
        assert!(text.contains("multipart/alternative"));
        assert!(text.contains("text/plain; charset=utf-8"));
        assert!(text.contains("text/html; charset=utf-8"));
        // a non-ASCII subject is encoded, not sent raw
        let subject = text.lines().find(|l| l.starts_with("Subject:")).unwrap();
        assert!(
            subject.contains("=?utf-8?") && !subject.contains("été"),
            "{subject}"
        );
        assert_eq!(
            message
                .envelope()
                .to()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            ["ada@example.com"]
        );
    }

    #[test]
    fn bad_addresses_are_permanent_failures() {
        let mailer = Mailer::parse_from("no-reply@keycontacts.invalid").unwrap();
        assert!(mailer.message(&claimed("not an address")).is_err());
        assert!(mailer.message(&claimed("a@b.c\r\nBcc: x@y.z")).is_err());
        assert!(Mailer::parse_from("nobody").is_err());
    }

    #[test]
    fn mail_dir_files_are_written_whole() {
        let dir = std::env::temp_dir().join(format!("kc-notification-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        write_atomically(&dir, "x.eml", b"hello").unwrap();
        write_atomically(&dir, "x.eml", b"hello again").unwrap();
        assert_eq!(std::fs::read(dir.join("x.eml")).unwrap(), b"hello again");
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(names, ["x.eml"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
