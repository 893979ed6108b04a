//! The test SMTP server: a raw SMTP dialogue over a TcpStream is recorded (envelope and parsed
//! parts), refusals are served when asked, and stop/restart close and reopen the same port.

use std::net::SocketAddr;

use kc_testkit::smtp::{PATIENCE, SmtpCommand, SmtpServer};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// A client speaking SMTP by hand.
struct Dialogue {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl Dialogue {
    /// Connects and reads the greeting.
    async fn open(addr: SocketAddr) -> Self {
        let (read, writer) = TcpStream::connect(addr)
            .await
            .expect("connect")
            .into_split();
        let mut dialogue = Self {
            reader: BufReader::new(read),
            writer,
        };
        let greeting = dialogue.reply().await;
        assert!(greeting.starts_with("220"), "{greeting}");
        dialogue
    }

    /// Reads one reply, multi-line replies joined; returns its last line.
    async fn reply(&mut self) -> String {
        loop {
            let mut line = String::new();
            let read = self.reader.read_line(&mut line).await.expect("read reply");
            assert!(read > 0, "the server closed the connection");
            // `250-…` continues, `250 …` ends the reply.
            if line.as_bytes().get(3) != Some(&b'-') {
                return line.trim_end().to_owned();
            }
        }
    }

    /// Sends `line` and returns the reply.
    async fn command(&mut self, line: &str) -> String {
        self.writer
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .expect("send command");
        self.reply().await
    }

    /// MAIL, RCPT for each recipient, DATA with `message`: the final reply.
    async fn send(&mut self, from: &str, to: &[&str], message: &str) -> String {
        let reply = self.command(&format!("MAIL FROM:<{from}>")).await;
        assert!(reply.starts_with("250"), "{reply}");
        for rcpt in to {
            let reply = self.command(&format!("RCPT TO:<{rcpt}>")).await;
            assert!(reply.starts_with("250"), "{reply}");
        }
        let reply = self.command("DATA").await;
        assert!(reply.starts_with("354"), "{reply}");
        let body = message.replace('\n', "\r\n");
        self.command(&format!("{body}\r\n.")).await
    }
}

const ALTERNATIVE: &str = "From: keycontacts <no-reply@keycontacts.invalid>
To: paula@acme.example
Subject: =?utf-8?q?Votre_acc=C3=A8s?=
Content-Language: fr
Message-ID: <0190-test@keycontacts>
X-Keycontacts-Kind: NOTICE_KIND_ACCESS_REQUEST_DECIDED
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary=\"b1\"

--b1
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

Bonjour Paula, votre accès est accordé.
--b1
Content-Type: text/html; charset=utf-8
Content-Transfer-Encoding: quoted-printable

<p>Bonjour Paula, votre acc=C3=A8s est accord=C3=A9.</p>
--b1--";

#[tokio::test]
async fn records_a_message_and_serves_refusals_when_told() {
    let server = SmtpServer::start().await;
    assert_eq!(server.url(), format!("smtp://127.0.0.1:{}", server.port()));
    let mut client = Dialogue::open(server.addr()).await;
    let reply = client.command("EHLO client.test").await;
    assert!(reply.starts_with("250"), "{reply}");

    let reply = client
        .send(
            "no-reply@keycontacts.invalid",
            &["paula@acme.example", "copy@partner.example"],
            ALTERNATIVE,
        )
        .await;
    assert!(reply.starts_with("250"), "{reply}");
    // Recorded before the 250: visible at once.
    let messages = server.messages();
    assert_eq!(messages.len(), 1, "{messages:#?}");
    let message = &messages[0];
    assert_eq!(
        message.mail_from.as_deref(),
        Some("no-reply@keycontacts.invalid")
    );
    assert_eq!(
        message.rcpt_tos,
        ["paula@acme.example", "copy@partner.example"]
    );
    assert_eq!(message.subject, "Votre accès");
    assert_eq!(message.to, "paula@acme.example");
    assert_eq!(message.from, "keycontacts <no-reply@keycontacts.invalid>");
    assert_eq!(message.content_language, "fr");
    assert_eq!(message.message_id, "<0190-test@keycontacts>");
    assert_eq!(
        message.header("x-keycontacts-kind"),
        Some("NOTICE_KIND_ACCESS_REQUEST_DECIDED")
    );
    assert!(message.multipart_alternative);
    assert_eq!(
        message.text.as_deref().map(str::trim_end),
        Some("Bonjour Paula, votre accès est accordé.")
    );
    assert_eq!(
        message.html.as_deref().map(str::trim_end),
        Some("<p>Bonjour Paula, votre accès est accordé.</p>")
    );
    assert_eq!(message.parse_error, None);

    // Told to: the next DATA gets 451, the one after is accepted again.
    server.fail_next(1, 451, "4.3.0 try again later");
    let single = "Subject: one\nContent-Type: text/plain\n\nhello";
    let reply = client
        .send("a@example.com", &["b@example.com"], single)
        .await;
    assert_eq!(reply, "451 4.3.0 try again later");
    let reply = client
        .send("a@example.com", &["b@example.com"], single)
        .await;
    assert!(reply.starts_with("250"), "{reply}");
    let refusals = server.refusals();
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    assert_eq!(
        (refusals[0].command.as_str(), refusals[0].code),
        ("DATA", 451)
    );
    let messages = server.messages();
    assert_eq!(messages.len(), 2);
    assert!(!messages[1].multipart_alternative);
    assert_eq!(
        messages[1].text.as_deref().map(str::trim_end),
        Some("hello")
    );
    assert_eq!(messages[1].html, None);

    // A permanent refusal of a recipient: nothing is recorded for it.
    server.fail_next_on(SmtpCommand::Rcpt, None, 1, 550, "5.1.1 no such user");
    let reply = client.command("MAIL FROM:<a@example.com>").await;
    assert!(reply.starts_with("250"), "{reply}");
    let reply = client.command("RCPT TO:<gone@example.com>").await;
    assert_eq!(reply, "550 5.1.1 no such user");
    let reply = client.command("RSET").await;
    assert!(reply.starts_with("250"), "{reply}");
    assert_eq!(server.refusals().len(), 2);
    assert_eq!(server.messages().len(), 2);

    // A failure armed for one recipient leaves the others alone.
    server.fail_next_to("Picky@Example.com", 1, 550, "5.7.1 not for you");
    let reply = client
        .send("a@example.com", &["b@example.com"], single)
        .await;
    assert!(reply.starts_with("250"), "{reply}");
    let reply = client
        .send("a@example.com", &["picky@example.com"], single)
        .await;
    assert_eq!(reply, "550 5.7.1 not for you");
    let reply = client
        .send("a@example.com", &["picky@example.com"], single)
        .await;
    assert!(reply.starts_with("250"), "{reply}");
    let refusals = server.refusals();
    assert_eq!(refusals.len(), 3);
    assert_eq!(refusals[2].rcpt_tos, ["picky@example.com"]);
    assert_eq!(server.messages().len(), 4);

    let reply = client.command("QUIT").await;
    assert!(reply.starts_with("221"), "{reply}");
}

#[tokio::test]
async fn stop_refuses_connections_and_restart_serves_the_same_port() {
    let mut server = SmtpServer::start().await;
    let (addr, port) = (server.addr(), server.port());
    server.fail_next(5, 451, "4.3.0 not now");
    server.stop().await;
    assert!(!server.is_running());
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "a stopped server refuses connections"
    );

    server.restart().await;
    assert_eq!(server.port(), port);
    let mut client = Dialogue::open(addr).await;
    client.command("HELO client.test").await;
    // The failures armed before the restart are forgotten.
    let reply = client
        .send(
            "a@example.com",
            &["b@example.com"],
            "Subject: after\n\nback",
        )
        .await;
    assert!(reply.starts_with("250"), "{reply}");
    let messages = server
        .wait_for("one message is recorded", PATIENCE, |m| m.len() == 1)
        .await;
    assert_eq!(messages[0].subject, "after");
    assert!(server.refusals().is_empty());
}

#[tokio::test]
async fn a_slow_server_records_the_message_before_it_answers() {
    let mut server = SmtpServer::start().await;
    // Far longer than the test: the reply only comes if something is broken.
    server.set_data_delay(std::time::Duration::from_secs(600));
    let mut client = Dialogue::open(server.addr()).await;
    client.command("HELO client.test").await;
    assert!(
        client
            .command("MAIL FROM:<a@example.com>")
            .await
            .starts_with("250")
    );
    assert!(
        client
            .command("RCPT TO:<b@example.com>")
            .await
            .starts_with("250")
    );
    assert!(client.command("DATA").await.starts_with("354"));
    client
        .writer
        .write_all(b"Subject: held\r\n\r\nwaiting\r\n.\r\n")
        .await
        .expect("send the message");
    // Recorded while the 250 is held back: a client that dies now never learns it was
    // accepted, and a resend is a duplicate with the same Message-ID.
    let messages = server
        .wait_for("the held message is recorded", PATIENCE, |m| m.len() == 1)
        .await;
    assert_eq!(messages[0].subject, "held");
    server.stop().await;
    let mut line = String::new();
    let read = client.reader.read_line(&mut line).await.unwrap_or(0);
    assert_eq!(read, 0, "no reply from a killed server: {line:?}");
}
