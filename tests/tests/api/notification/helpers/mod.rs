//! Harness of the notification tests: ONE real Postgres database and the four real services
//! in-process on `127.0.0.1:0`, each in its own schema: identity (cheap argon2, the test key
//! files of `kc_testkit::secrets`: it seals codes to notification's key), the contact
//! registry, access management and notification, the last three with service accounts made
//! through identity's domain (the registry follows access management's events, rule T8, and
//! access the registry's: access's port is bound before the registry starts). Notification
//! delivers to a real SMTP server (aiosmtpd, see `kc_testkit::smtp`) on a port of its own,
//! with short retry, lease and poll settings.
//!
//! The registry and notification run under their own shutdown signals, so a test can stop
//! and restart them on the same port. Callers are as in production: an operator signed in at
//! identity, and a "gateway" service account acting for people through `x-kc-on-behalf-of`.
//!
//! People are registered as they would be (rule I1): `RegisterUser`, then `VerifyEmail` with
//! the code identity mailed, read from its stream as notification reads it
//! (`kc_testkit::codes::CodeReader`); only a proven account holds roles and rights.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, Ordering};

use kc_proto::access::{self as apb};
use kc_proto::contacts::{self as cpb};
use kc_proto::identity::{self as ipb};
use kc_proto::notification::notification_service_client::NotificationServiceClient;
use kc_proto::notification::{self as pb};
use kc_suite_tests::{Sandbox, Service};
use kc_testkit::smtp::ReceivedMessage;
use tonic::Status;
use tonic::transport::Channel;
use uuid::Uuid;

mod notifications;
mod suite;

pub use suite::Suite;

pub use kc_suite_tests::PASSWORD;
pub use kc_testkit::checks::{PATIENCE, cites, eventually};
pub use kc_testkit::grpc::{
    all_at_once, all_pages, authed, expect_code, expect_field_within as expect_field, find_message,
    on_behalf_of, read_pages, uuid,
};

pub use cpb::ContactRole as Role;
pub use pb::{AttemptOutcome as Outcome, NoticeKind as Kind, NotificationState as State};

pub const MAIL_FROM: &str = "keycontacts <no-reply@keycontacts.invalid>";

/// Short delivery settings, so retries and lease take-overs happen within a test. Many
/// attempts, so an SMTP outage of a few seconds never runs them out (a test that wants
/// them to run out passes its own `--max-attempts`). The SMTP timeout is not short: a reply
/// that a loaded machine delays past it would count as a transient failure after the server
/// took the message, and the retry would deliver it twice (N3 allows it; the tests that
/// count copies do not).
pub const FAST_DELIVERY: [&str; 12] = [
    "--retry-base",
    "100ms",
    "--retry-max",
    "1s",
    "--lease",
    "12s",
    "--smtp-timeout",
    "10s",
    "--poll-interval",
    "200ms",
    "--max-attempts",
    "30",
];

pub type Notifications = NotificationServiceClient<Channel>;

/// Every notice kind, listed here rather than taken from the crate, so that a kind the
/// service forgets is still asked about.
pub const ALL_KINDS: [Kind; 28] = [
    Kind::ContractChange,
    Kind::Renewal,
    Kind::UpdateAvailable,
    Kind::ProofOfEntitlement,
    Kind::MediaShipment,
    Kind::Invoice,
    Kind::Technical,
    Kind::EmailVerification,
    Kind::AccessRequestSubmitted,
    Kind::AccessRequestDecided,
    Kind::RightsChanged,
    Kind::DomainPolicyChanged,
    Kind::ContactRoleAssigned,
    Kind::ContactRoleRemoved,
    Kind::PrimaryTransferred,
    Kind::Invitation,
    Kind::PasswordReset,
    Kind::EmailChangeVerification,
    Kind::RegistrationAddressTaken,
    Kind::RegistrationAddressConfusable,
    Kind::EmailChangeRequested,
    Kind::NotificationEmailVerification,
    Kind::NotificationEmailChangeRequested,
    Kind::SupportEnding,
    Kind::SupportLapsed,
    Kind::PrimaryRecoveryRequested,
    Kind::PrimaryRecoveryRefused,
    Kind::PrimaryRecoveryAttested,
];

/// The kinds of identity's mails that carry a code.
pub const CODE_KINDS: [Kind; 5] = [
    Kind::EmailVerification,
    Kind::Invitation,
    Kind::PasswordReset,
    Kind::EmailChangeVerification,
    Kind::NotificationEmailVerification,
];

/// A registered person.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: Uuid,
    pub email: String,
    pub name: String,
}

// ---- messages ----

/// Asserts `message` is written with `locale`'s templates of `kind` and not with the other
/// language's, using RenderPreview through `client` (as `token`): its subject has the shape
/// of the preview's subject (each parameter stands for any text), and its two parts hold
/// fixed text of that language's templates and none that only the other language's
/// templates have.
pub async fn assert_language(
    client: &mut Notifications,
    token: &str,
    kind: Kind,
    locale: &str,
    message: &ReceivedMessage,
) {
    let other = if locale == "fr" { "en" } else { "fr" };
    let markers = markers(kind);
    let marked: BTreeMap<String, String> = markers.iter().cloned().collect();
    let mut preview = async |locale: &str| {
        client
            .render_preview(authed(
                token,
                pb::RenderPreviewRequest {
                    kind: kind as i32,
                    locale: locale.into(),
                    params: marked.clone().into_iter().collect(),
                },
            ))
            .await
            .unwrap_or_else(|status| panic!("render preview of {kind:?} in {locale}: {status:?}"))
            .into_inner()
    };
    let this = preview(locale).await;
    let that = preview(other).await;
    assert_eq!(this.locale, locale, "{this:?}");
    assert_eq!(that.locale, other, "{that:?}");
    let marker_values: Vec<&str> = markers.iter().map(|(_, m)| m.as_str()).collect();
    assert!(
        glob_matches(&this.subject, &marker_values, &message.subject),
        "the subject {:?} has the shape of the {locale} template {:?} of {kind:?}",
        message.subject,
        this.subject
    );
    if this.subject != that.subject {
        assert!(
            !glob_matches(&that.subject, &marker_values, &message.subject),
            "the subject {:?} is not the {other} template {:?} of {kind:?}",
            message.subject,
            that.subject
        );
    }
    let text = normalize(message.text.as_deref().unwrap_or_default());
    let html = normalize(message.html.as_deref().unwrap_or_default());
    for (part, received, ours, theirs) in [
        ("text", &text, &this.text_body, &that.text_body),
        ("html", &html, &this.html_body, &that.html_body),
    ] {
        let ours = literal_pieces(ours, &marker_values);
        let theirs = literal_pieces(theirs, &marker_values);
        let only_ours: Vec<&String> = ours.iter().filter(|p| !theirs.contains(p)).collect();
        let only_theirs: Vec<&String> = theirs.iter().filter(|p| !ours.contains(p)).collect();
        assert!(
            !only_ours.is_empty(),
            "the {locale} and {other} {part} templates of {kind:?} differ"
        );
        assert!(
            only_ours
                .iter()
                .any(|piece| received.contains(piece.as_str())),
            "the {part} part holds fixed text of the {locale} template of {kind:?} \
             ({only_ours:?}): {received}"
        );
        let foreign: Vec<&&String> = only_theirs
            .iter()
            .filter(|piece| received.contains(piece.as_str()))
            .collect();
        assert!(
            foreign.is_empty(),
            "the {part} part holds text of the {other} template of {kind:?} {foreign:?}: {received}"
        );
    }
}

/// The stable Message-ID of a notification.
pub fn message_id_of(notification_id: &str) -> String {
    format!("<{notification_id}@keycontacts>")
}

/// The kind's proto name, as in the `X-Keycontacts-Kind` header.
pub fn kind_name(kind: i32) -> &'static str {
    Kind::try_from(kind).expect("known kind").as_str_name()
}

/// Line endings as `\n`, trailing blanks of the whole text removed.
pub fn normalize(text: &str) -> String {
    text.replace("\r\n", "\n").trim_end().to_owned()
}

/// Checks what the SMTP server received for `notification`: envelope and headers, the
/// language, both parts.
#[track_caller]
pub fn check_mail(
    notification: &pb::Notification,
    message: &ReceivedMessage,
    email: &str,
    locale: &str,
) {
    let id = &notification.notification_id;
    assert_eq!(notification.email, email, "{notification:#?}");
    assert_eq!(notification.locale, locale, "N1: {notification:#?}");
    assert_eq!(message.parse_error, None, "{message:#?}");
    assert_eq!(
        message.rcpt_tos,
        [email],
        "the envelope names the one recipient"
    );
    let to: Vec<&str> = message
        .header_values("To")
        .into_iter()
        .map(address_of)
        .collect();
    assert_eq!(
        to,
        [email],
        "one To header naming the recipient: {:?}",
        message.headers
    );
    assert!(message.header_values("Cc").is_empty() && message.header_values("Bcc").is_empty());
    assert_eq!(message.from, MAIL_FROM);
    assert_eq!(message.content_language, locale, "N1: Content-Language");
    assert_eq!(message.message_id, message_id_of(id));
    assert_eq!(
        message.header("X-Keycontacts-Notification-Id"),
        Some(id.as_str())
    );
    assert_eq!(
        message.header("X-Keycontacts-Kind"),
        Some(kind_name(notification.kind))
    );
    assert_eq!(
        message.subject, notification.subject,
        "the stored subject is the one sent"
    );
    assert!(!message.subject.trim().is_empty());
    assert!(
        !message.subject.contains(['\r', '\n']),
        "{:?}",
        message.subject
    );
    assert!(
        message.multipart_alternative,
        "multipart/alternative: {}",
        message.content_type
    );
    let text = message.text.as_deref().unwrap_or_default();
    let html = message.html.as_deref().unwrap_or_default();
    assert!(!text.trim().is_empty(), "a text/plain part: {message:#?}");
    assert!(!html.trim().is_empty(), "a text/html part: {message:#?}");
    assert!(notification.deliver_time.is_some(), "{notification:#?}");
    let last = notification.attempts.last().expect("an attempt");
    assert_eq!(last.outcome, Outcome::Delivered as i32, "{notification:#?}");
    assert_eq!(last.smtp_code, 250, "{notification:#?}");
}

/// The address of a one-mailbox header value: `a@b` or `Name <a@b>`.
pub fn address_of(value: &str) -> &str {
    match (value.rfind('<'), value.rfind('>')) {
        (Some(open), Some(close)) if open < close => &value[open + 1..close],
        _ => value.trim(),
    }
}

/// One marker per template parameter of `kind` (and the three every template may use),
/// made of letters and digits so no escaping or filter changes them.
pub fn markers(kind: Kind) -> Vec<(String, String)> {
    let mut names = vec!["site_name", "site_number", "recipient_name"];
    names.extend(params_of(kind));
    names
        .into_iter()
        .enumerate()
        .map(|(i, name)| (name.to_owned(), format!("Qz{i}mk{i}zQ")))
        .collect()
}

/// The template parameters of `kind`, as the proto lists them.
pub fn params_of(kind: Kind) -> Vec<&'static str> {
    match kind {
        Kind::ContractChange => vec!["summary", "effective_date"],
        Kind::Renewal => vec!["end_date", "quote_reference"],
        Kind::UpdateAvailable => vec!["product", "version"],
        Kind::ProofOfEntitlement => vec!["order_number"],
        Kind::MediaShipment => vec!["order_number", "tracking_number"],
        Kind::Invoice => vec!["invoice_number", "amount", "due_date"],
        Kind::Technical => vec!["topic", "summary"],
        Kind::EmailVerification
        | Kind::Invitation
        | Kind::PasswordReset
        | Kind::EmailChangeVerification => vec!["code", "expire_time"],
        Kind::RegistrationAddressTaken | Kind::RegistrationAddressConfusable => vec!["email"],
        Kind::EmailChangeRequested => vec!["new_email"],
        Kind::NotificationEmailVerification => vec!["code", "expire_time", "role"],
        Kind::NotificationEmailChangeRequested => vec!["new_email", "role"],
        Kind::AccessRequestSubmitted => vec![
            "requester_name",
            "requester_email",
            "request_kind",
            "justification",
            "request_id",
            "expire_time",
        ],
        Kind::AccessRequestDecided => vec!["decision", "reason", "granted", "request_id"],
        Kind::RightsChanged => vec!["changes", "reason"],
        Kind::SiteUserWelcome => vec!["levels", "reason"],
        Kind::RightsEndingSoon | Kind::RightsEnded => vec!["levels", "end_time"],
        Kind::SupportEnding => vec!["end_date", "milestone_days"],
        Kind::SupportLapsed => vec!["end_date"],
        Kind::DomainPolicyChanged => vec!["domain", "mode"],
        Kind::ContactRoleAssigned | Kind::ContactRoleRemoved => vec!["contact_name", "role"],
        Kind::PrimaryTransferred => vec!["previous_name", "new_name"],
        Kind::PrimaryRecoveryRequested => vec![
            "requester_name",
            "requester_email",
            "previous_name",
            "reason",
            "recovery_id",
            "waiting_end_time",
        ],
        Kind::PrimaryRecoveryRefused => vec![
            "requester_name",
            "previous_name",
            "decided_by_name",
            "reason",
            "recovery_id",
        ],
        Kind::PrimaryRecoveryAttested => vec![
            "requester_name",
            "previous_name",
            "new_name",
            "reason",
            "recovery_id",
        ],
        Kind::Unspecified => vec![],
    }
}

/// A fresh address nobody has.
pub fn fresh_email() -> String {
    format!("u-{}@example.com", Uuid::new_v4().simple())
}

/// The code of a code mail: the indented line of the text part that is a code (letters,
/// digits and hyphens, at least 6). Asserts there is exactly one, that the HTML part holds
/// it too, and that the subject does not.
#[track_caller]
pub fn code_in(message: &ReceivedMessage) -> String {
    let text = normalize(message.text.as_deref().unwrap_or_default());
    let codes: Vec<&str> = text
        .lines()
        .filter(|line| line.starts_with("    "))
        .map(str::trim)
        .filter(|line| {
            line.len() >= 6 && line.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        .collect();
    assert_eq!(codes.len(), 1, "one code in the text part: {text}");
    let code = codes[0].to_owned();
    assert!(
        message.html.as_deref().unwrap_or_default().contains(&code),
        "the html part holds the code"
    );
    assert!(
        !message.subject.contains(&code),
        "the code is not in the subject"
    );
    code
}

/// Whether `text` is `pattern` with each marker standing for any text.
pub fn glob_matches(pattern: &str, markers: &[&str], text: &str) -> bool {
    let mut pieces = vec![pattern.to_owned()];
    for marker in markers {
        pieces = pieces
            .iter()
            .flat_map(|piece| piece.split(marker).map(str::to_owned).collect::<Vec<_>>())
            .collect();
    }
    let (first, rest) = pieces.split_first().expect("a piece");
    let Some(mut remaining) = text.strip_prefix(first.as_str()) else {
        return false;
    };
    let Some((last, middle)) = rest.split_last() else {
        return remaining.is_empty();
    };
    for piece in middle {
        match remaining.find(piece.as_str()) {
            Some(at) => remaining = &remaining[at + piece.len()..],
            None => return false,
        }
    }
    remaining.ends_with(last.as_str())
}

/// The fixed text of a rendered template: its lines cut at every marker, trimmed, those of
/// at least 8 characters.
pub fn literal_pieces(rendered: &str, markers: &[&str]) -> Vec<String> {
    let mut pieces = Vec::new();
    for line in normalize(rendered).lines() {
        let mut parts = vec![line.to_owned()];
        for marker in markers {
            parts = parts
                .iter()
                .flat_map(|p| p.split(marker).map(str::to_owned).collect::<Vec<_>>())
                .collect();
        }
        pieces.extend(
            parts
                .into_iter()
                .map(|p| p.trim().to_owned())
                .filter(|p| p.chars().count() >= 8),
        );
    }
    pieces
}

// ---- requests, statuses, polling ----

pub fn to_map(params: &[(&str, &str)]) -> BTreeMap<String, String> {
    params
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

pub fn send_notice_request(
    site_id: &str,
    kind: Kind,
    params: &[(&str, &str)],
    key: &str,
) -> pb::SendNoticeRequest {
    pb::SendNoticeRequest {
        site_id: site_id.into(),
        kind: kind as i32,
        params: to_map(params).into_iter().collect(),
        idempotency_key: key.into(),
    }
}

/// A valid CreateSite request without S&S, in `language` and named after its number.
pub fn site_request(
    site_number: &str,
    customer_number: &str,
    primary: Uuid,
    language: &str,
) -> cpb::CreateSiteRequest {
    cpb::CreateSiteRequest {
        name: format!("Site {site_number}"),
        language: language.into(),
        ..kc_testkit::fixtures::site_request(site_number, customer_number, primary)
    }
}

/// Kind, recipient, e-mail, state and attempts of each notification, for failure messages.
pub fn brief(notifications: &[pb::Notification]) -> Vec<String> {
    brief_refs(&notifications.iter().collect::<Vec<_>>())
}

pub fn brief_refs(notifications: &[&pb::Notification]) -> Vec<String> {
    notifications
        .iter()
        .map(|n| {
            format!(
                "{} {:?} to {} <{}> {:?} attempts {:?}",
                n.notification_id,
                Kind::try_from(n.kind),
                n.recipient_user_id,
                n.email,
                State::try_from(n.state),
                n.attempts
                    .iter()
                    .map(|a| (Outcome::try_from(a.outcome), a.smtp_code, a.detail.clone()))
                    .collect::<Vec<_>>()
            )
        })
        .collect()
}

/// The outcomes of a notification's attempts, oldest first.
pub fn outcomes(notification: &pb::Notification) -> Vec<(Outcome, i32)> {
    notification
        .attempts
        .iter()
        .map(|a| {
            (
                Outcome::try_from(a.outcome).expect("known outcome"),
                a.smtp_code,
            )
        })
        .collect()
}
