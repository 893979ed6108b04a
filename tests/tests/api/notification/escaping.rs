//! Values that come from people (display names, justifications, reasons, site names, notice
//! parameters) cannot inject markup into the HTML part nor headers or recipients into the
//! message: they are escaped in HTML, shown as written in the text part, and CR/LF in them
//! never starts a header line.

use crate::notification::helpers::{
    ALL_KINDS, Kind, State, Suite, check_mail, expect_field, params_of, site_request,
};
use kc_proto::contacts as cpb;
use kc_proto::notification as pb;
use kc_testkit::smtp::ReceivedMessage;
use tonic::Code;

const SCRIPT: &str = "<script>alert('x')</script>";
const IMG: &str = "\"><img src=x onerror=alert(1)>";
const ATTACKER: &str = "attacker.example";

/// The header section of the raw message (up to the first empty line).
fn header_section(message: &ReceivedMessage) -> String {
    let raw = message.raw.replace("\r\n", "\n");
    raw.split("\n\n").next().unwrap_or_default().to_owned()
}

/// Asserts nothing from the values leaked into the headers, the envelope or the markup.
#[track_caller]
fn assert_clean(message: &ReceivedMessage, email: &str) {
    assert_eq!(message.rcpt_tos, [email], "no extra recipient");
    for name in ["Bcc", "Cc", "Reply-To"] {
        assert!(
            message.header_values(name).is_empty(),
            "no {name} header: {:?}",
            message.headers
        );
    }
    for name in ["To", "From", "Subject", "Message-ID", "Content-Language"] {
        assert_eq!(
            message.header_values(name).len(),
            1,
            "exactly one {name} header: {:?}",
            message.headers
        );
    }
    let headers = header_section(message);
    assert!(
        !headers.to_ascii_lowercase().contains(ATTACKER),
        "nothing of the values' addresses is in a header: {headers}"
    );
    assert!(
        !headers
            .lines()
            .any(|line| line.to_ascii_lowercase().starts_with("bcc:")),
        "{headers}"
    );
    assert!(
        !message.subject.contains(['\r', '\n']),
        "{:?}",
        message.subject
    );
    let html = message.html.as_deref().unwrap_or_default();
    for raw in ["<script", "<img", "<b>bold"] {
        assert!(
            !html.contains(raw),
            "{raw} is escaped in the html part: {html}"
        );
    }
}

// Display names, a site name and SendNotice parameters with markup, ampersands, quotes and
// CR/LF + `Bcc:`: escaped in HTML, shown as written in the text part, and no header or
// recipient added.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn notice_parameters_names_and_site_names_cannot_inject() {
    let s = Suite::start().await;
    let primary = s
        .user_named("en", "Ada \"<b>bold</b>\" & <img src=x onerror=alert(1)>")
        .await;
    let (site_number, customer_number) = s.numbers();
    let site = s
        .create_site(cpb::CreateSiteRequest {
            name: format!("Acme {SCRIPT} & 'Lyon' \"Nord\""),
            ..site_request(&site_number, &customer_number, primary.id, "en")
        })
        .await;

    let summary = format!("Tom & Jerry {SCRIPT} {IMG}\r\nBcc: evil@{ATTACKER}\r\n\r\nbody");
    let date = format!("2026-09-01\r\nBcc: evil2@{ATTACKER}");
    let sent = match s
        .send_notice(
            &site.site_id,
            Kind::ContractChange,
            &[("summary", &summary), ("effective_date", &date)],
            "inject-1",
        )
        .await
    {
        Ok(sent) => sent,
        Err(status) => {
            // Refusing CR/LF in parameters is a fine defence too; then the markup alone.
            let status = expect_field(Err::<(), _>(status), "params");
            assert_eq!(status.code(), Code::InvalidArgument);
            let summary = format!("Tom & Jerry {SCRIPT} {IMG}");
            s.send_notice(
                &site.site_id,
                Kind::ContractChange,
                &[("summary", &summary), ("effective_date", "2026-09-01")],
                "inject-2",
            )
            .await
            .expect("send notice without CR/LF")
        }
    };
    assert_eq!(sent.notifications.len(), 1);
    let notification = s
        .wait_state(&sent.notifications[0].notification_id, State::Delivered)
        .await;
    assert!(!notification.subject.contains(['\r', '\n']));
    let message = s.mail_of(&notification).await;
    check_mail(&notification, &message, &primary.email, "en");
    assert_clean(&message, &primary.email);
    let html = message.html.as_deref().unwrap_or_default();
    let text = message.text.as_deref().unwrap_or_default();
    assert!(html.contains("&lt;script&gt;"), "{html}");
    assert!(html.contains("Tom &amp; Jerry"), "{html}");
    assert!(!html.contains("Tom & Jerry"), "{html}");
    assert!(
        text.contains(&format!("Tom & Jerry {SCRIPT}")),
        "the text part shows the value as written: {text}"
    );
}

// An access request's justification and the requester's name (to the approver), and a
// rejection reason (to the requester), with markup and CR/LF + `Bcc:` lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn justifications_reasons_and_requester_names_cannot_inject() {
    let s = Suite::start().await;
    let primary = s.user("fr").await;
    let site = s
        .create_site(cpb::CreateSiteRequest {
            name: "O'Brien & \"Fils\" <Nord>".into(),
            ..{
                let (n, c) = s.numbers();
                site_request(&n, &c, primary.id, "fr")
            }
        })
        .await;
    s.wait_approver(&primary, &site.site_id).await;
    let requester = s.user_named("en", &format!("Eve {SCRIPT} & \"Co\"")).await;
    let justification =
        format!("Tom & Jerry need downloads {SCRIPT}\r\nBcc: evil@{ATTACKER}\r\n{IMG}");
    let request = s.submit(&requester, &site, &justification).await;

    let submitted = s
        .delivered(&site.site_id, &primary, Kind::AccessRequestSubmitted)
        .await;
    let message = s.mail_of(&submitted).await;
    check_mail(&submitted, &message, &primary.email, "fr");
    assert_clean(&message, &primary.email);
    let html = message.html.as_deref().unwrap_or_default();
    assert!(html.contains("Tom &amp; Jerry need downloads"), "{html}");
    assert!(html.contains("&lt;script&gt;"), "{html}");
    let text = message.text.as_deref().unwrap_or_default();
    assert!(text.contains("Tom & Jerry need downloads"), "{text}");

    let reason = format!("no {SCRIPT} & no \"quotes\"\r\nBcc: evil@{ATTACKER}\r\nTo: x@{ATTACKER}");
    s.reject(&primary, &request.request_id, &reason).await;
    let decided = s
        .delivered(&site.site_id, &requester, Kind::AccessRequestDecided)
        .await;
    let message = s.mail_of(&decided).await;
    check_mail(&decided, &message, &requester.email, "en");
    assert_clean(&message, &requester.email);
    let html = message.html.as_deref().unwrap_or_default();
    assert!(html.contains("&lt;/script&gt; &amp; no"), "{html}");
}

// RenderPreview of every kind with CR/LF and markup in every parameter: a subject on one
// line, no markup in the HTML.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn previews_keep_the_subject_on_one_line_and_escape_html() {
    let s = Suite::start().await;
    let value = format!("x\r\nBcc: evil@{ATTACKER}\r\n{SCRIPT} & {IMG}");
    for kind in ALL_KINDS {
        let mut names = vec!["site_name", "site_number", "recipient_name"];
        names.extend(params_of(kind));
        let params: Vec<(&str, &str)> = names.iter().map(|n| (*n, value.as_str())).collect();
        for locale in ["fr", "en"] {
            let preview: pb::RenderPreviewResponse = s.preview(kind, locale, &params).await;
            assert!(
                !preview.subject.contains(['\r', '\n']),
                "{kind:?} {locale}: {:?}",
                preview.subject
            );
            for raw in ["<script", "<img"] {
                assert!(
                    !preview.html_body.contains(raw),
                    "{kind:?} {locale}: {}",
                    preview.html_body
                );
            }
        }
    }
}
