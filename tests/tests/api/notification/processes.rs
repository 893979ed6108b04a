//! Notification across real processes: the `kc-identity`, `kc-contacts`, `kc-access` and
//! `kc-notification` binaries as child processes on one database, wired with service accounts
//! made by `kc-identity create-service-account`, delivering to a real SMTP server.
//!
//! - The end-to-end chain: a self-nomination submitted on access management reaches the
//!   primary contact's mailbox in the primary's language (A1, A3, N1), and the decision
//!   reaches the requester (A2).
//! - `kc-notification` killed with SIGKILL mid-batch and started again: every notification
//!   is delivered, each received at least once, and a copy received twice is the same
//!   message with the same Message-ID (N3: at least once, recognisably).
//!
//! The binaries come from `cargo build --bins` (`cargo xtask test` builds them).

use std::collections::{BTreeSet, HashMap};
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use crate::notification::helpers::{
    self, Kind, Notifications, Outcome, PATIENCE, State, TestUser, assert_language, authed,
    check_mail, cites, eventually, kind_name, message_id_of, on_behalf_of, send_notice_request,
    uuid,
};
use kc_proto::access::access_management_service_client::AccessManagementServiceClient;
use kc_proto::access::{self as apb};
use kc_proto::contacts::contact_registry_service_client::ContactRegistryServiceClient;
use kc_proto::contacts::{self as cpb};
use kc_proto::notification::notification_service_client::NotificationServiceClient;
use kc_proto::notification::{self as pb};
use kc_testkit::identity::{Registration, register_proven, service_token, sign_in};
use kc_testkit::process::{
    CoreProcesses, ServiceProcess, binary, bootstrap_operator, service_account,
};
use kc_testkit::ready_channel;
use kc_testkit::secrets::notification_key_args;
use kc_testkit::smtp::{ReceivedMessage, SmtpServer};
use uuid::Uuid;

const OPERATOR_EMAIL: &str = "operator@keycontacts.test";
const OPERATOR_PASSWORD: &str = "operator passphrase";
const PASSWORD: &str = "correct horse battery staple";
/// Quick retries and polling, so a delivery happens within a test.
const QUICK_DELIVERY: [&str; 6] = [
    "--retry-base",
    "100ms",
    "--retry-max",
    "1s",
    "--poll-interval",
    "200ms",
];

/// The suite as processes, with the SMTP server and the callers' tokens.
struct Processes {
    db: kc_testkit::TestDatabase,
    smtp: SmtpServer,
    identity: ServiceProcess,
    contacts: ServiceProcess,
    access: ServiceProcess,
    notification: ServiceProcess,
    notification_account: (String, String),
    operator_token: String,
    gateway_token: String,
}

impl Processes {
    /// Starts every binary; `delivery` are notification's delivery flags.
    async fn start(delivery: &[&str]) -> Self {
        let smtp = SmtpServer::start().await;
        let db = kc_testkit::test_database().await;
        let (identity, contacts, access) = CoreProcesses::start(&db.url).await.into_parts();
        bootstrap_operator(&db.url, OPERATOR_EMAIL, OPERATOR_PASSWORD).await;
        let notification_account = service_account(&db.url, "kc-notification").await;
        let (gateway_id, gateway_secret) = service_account(&db.url, "kc-gateway").await;
        let notification = start_notification(
            &db,
            &smtp,
            &identity,
            &contacts,
            &access,
            &notification_account,
            delivery,
        )
        .await;

        let identity_channel = ready_channel(&identity.url()).await;
        let operator_token = sign_in(&identity_channel, OPERATOR_EMAIL, OPERATOR_PASSWORD).await;
        let gateway_token = service_token(&identity_channel, &gateway_id, &gateway_secret).await;
        Self {
            db,
            smtp,
            identity,
            contacts,
            access,
            notification,
            notification_account,
            operator_token,
            gateway_token,
        }
    }

    async fn notifications(&self) -> Notifications {
        NotificationServiceClient::new(ready_channel(&self.notification.url()).await)
    }

    /// Registers a person and proves its address with the code identity mailed (rule I1),
    /// read from identity's stream as notification reads it.
    async fn register(&self, locale: &str) -> TestUser {
        let email = format!("p-{}@acme.example", Uuid::new_v4().simple());
        let person = Registration {
            email: &email,
            name: &format!("Person {locale}"),
            password: PASSWORD,
            locale,
        };
        let identity = ready_channel(&self.identity.url()).await;
        let user = register_proven(&identity, &self.operator_token, person).await;
        TestUser {
            id: uuid(&user.user_id),
            email: user.email,
            name: user.display_name,
        }
    }

    async fn create_site(
        &self,
        primary: &TestUser,
        language: &str,
        site_number: &str,
    ) -> cpb::Site {
        ContactRegistryServiceClient::new(ready_channel(&self.contacts.url()).await)
            .create_site(authed(
                &self.gateway_token,
                cpb::CreateSiteRequest {
                    site_number: site_number.into(),
                    customer_number: "8800042".into(),
                    name: "Acme Lyon".into(),
                    country_code: "FR".into(),
                    language: language.into(),
                    program: cpb::Program::PassportAdvantage as i32,
                    primary_user_id: primary.id.to_string(),
                    ..Default::default()
                },
            ))
            .await
            .expect("create site")
            .into_inner()
            .site
            .expect("site")
    }

    /// The notification of `kind` to `user`, polled until it exists and is DELIVERED.
    async fn delivered(&self, user: &TestUser, kind: Kind) -> pb::Notification {
        let client = self.notifications().await;
        eventually(&format!("a {kind:?} to {} is delivered", user.name), || {
            let mut client = client.clone();
            async move {
                let listed = client
                    .list_notifications(authed(
                        &self.operator_token,
                        pb::ListNotificationsRequest {
                            recipient_user_id: user.id.to_string(),
                            page_size: 1000,
                            ..Default::default()
                        },
                    ))
                    .await
                    .map_err(|status| format!("{status:?}"))?
                    .into_inner()
                    .notifications;
                listed
                    .iter()
                    .find(|n| n.kind == kind as i32 && n.state == State::Delivered as i32)
                    .cloned()
                    .ok_or_else(|| helpers::brief(&listed).join("\n"))
            }
        })
        .await
    }
}

async fn start_notification(
    db: &kc_testkit::TestDatabase,
    smtp: &SmtpServer,
    identity: &ServiceProcess,
    contacts: &ServiceProcess,
    access: &ServiceProcess,
    account: &(String, String),
    delivery: &[&str],
) -> ServiceProcess {
    let (identity_url, contacts_url, access_url, smtp_url) =
        (identity.url(), contacts.url(), access.url(), smtp.url());
    let keys = notification_key_args();
    let mut args: Vec<&str> = keys.iter().map(String::as_str).collect();
    args.extend([
        "--identity-url",
        &identity_url,
        "--contacts-url",
        &contacts_url,
        "--access-url",
        &access_url,
        "--smtp-url",
        &smtp_url,
    ]);
    args.extend(delivery);
    ServiceProcess::start(
        binary("kc-notification"),
        &args,
        &[
            ("DATABASE_URL", db.url.as_str()),
            ("KC_CLIENT_ID", account.0.as_str()),
            ("KC_CLIENT_SECRET", account.1.as_str()),
        ],
    )
    .await
}

// rules A1, A3, A2, N1: a self-nomination reaches the primary's mailbox in French (the
// primary's language; the site's is English), and the decision reaches the requester in
// English.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_self_nomination_reaches_the_primary_and_the_decision_the_requester() {
    let p = Processes::start(&QUICK_DELIVERY).await;
    let primary = p.register("fr").await;
    let requester = p.register("en").await;
    let site = p.create_site(&primary, "en", "4100017").await;

    // Access management follows the registry's stream: wait until it knows the site.
    let mut access = AccessManagementServiceClient::new(ready_channel(&p.access.url()).await);
    eventually("access management knows the site", || {
        let mut access = access.clone();
        let (token, user, site_id) = (p.gateway_token.clone(), primary.id, site.site_id.clone());
        async move {
            let decision = access
                .check(authed(
                    &token,
                    apb::CheckRequest {
                        user_id: user.to_string(),
                        site_id,
                        permission: apb::Permission::ApproveSiteAccess as i32,
                    },
                ))
                .await
                .map_err(|status| format!("{status:?}"))?
                .into_inner();
            if decision.allowed {
                Ok(())
            } else {
                Err(format!("{decision:?}"))
            }
        }
    })
    .await;

    // rule A1: the requester nominates itself through the gateway.
    let request = access
        .submit_access_request(on_behalf_of(
            authed(
                &p.gateway_token,
                apb::SubmitAccessRequestRequest {
                    site_number: site.site_number.clone(),
                    customer_number: site.customer_number.clone(),
                    kind: apb::AccessRequestKind::SiteAccess as i32,
                    requested_tools: Some(apb::ToolAccess {
                        software: apb::SoftwareAccess::Full as i32,
                        ..Default::default()
                    }),
                    requested_support_level: 0,
                    justification: "I run our software downloads".into(),
                },
            ),
            requester.id,
        ))
        .await
        .expect("submit")
        .into_inner()
        .request
        .expect("request");

    // The primary's mailbox: the request, in French.
    let to_primary = p
        .smtp
        .wait_for("the request reaches the primary", PATIENCE, |messages| {
            messages.iter().any(|m| {
                m.rcpt_tos == [primary.email.as_str()]
                    && m.header("X-Keycontacts-Kind")
                        == Some(kind_name(Kind::AccessRequestSubmitted as i32))
            })
        })
        .await
        .into_iter()
        .find(|m| {
            m.header("X-Keycontacts-Kind") == Some(kind_name(Kind::AccessRequestSubmitted as i32))
        })
        .expect("the message");
    assert_eq!(to_primary.content_language, "fr");
    assert!(
        to_primary
            .text
            .as_deref()
            .unwrap_or_default()
            .contains("I run our software downloads"),
        "the justification is in the notice: {:?}",
        to_primary.text
    );
    let submitted = p.delivered(&primary, Kind::AccessRequestSubmitted).await;
    check_mail(&submitted, &to_primary, &primary.email, "fr");
    assert!(cites(&submitted.rule, "A3"), "{:?}", submitted.rule);
    let mut notifications = p.notifications().await;
    assert_language(
        &mut notifications,
        &p.gateway_token,
        Kind::AccessRequestSubmitted,
        "fr",
        &to_primary,
    )
    .await;

    // The primary approves; the decision reaches the requester, in English.
    access
        .approve_access_request(on_behalf_of(
            authed(
                &p.gateway_token,
                apb::ApproveAccessRequestRequest {
                    request_id: request.request_id.clone(),
                    granted_tools: None,
                    granted_support_level: 0,
                    etag: String::new(),
                    note: "bienvenue".into(),
                    ..Default::default()
                },
            ),
            primary.id,
        ))
        .await
        .expect("approve");
    let decided = p.delivered(&requester, Kind::AccessRequestDecided).await;
    let to_requester = received_copies(&p.smtp.messages(), &decided.notification_id);
    assert_eq!(to_requester.len(), 1);
    check_mail(&decided, &to_requester[0], &requester.email, "en");
    assert!(cites(&decided.rule, "A2"), "{:?}", decided.rule);
    assert_language(
        &mut notifications,
        &p.gateway_token,
        Kind::AccessRequestDecided,
        "en",
        &to_requester[0],
    )
    .await;
}

/// Which of `ids` the database records as DELIVERED (read while the service is down).
async fn delivered_in_database(database_url: &str, ids: &BTreeSet<String>) -> BTreeSet<String> {
    let pool = sqlx::PgPool::connect(database_url).await.expect("connect");
    let ids: Vec<String> = ids.iter().cloned().collect();
    let delivered: Vec<(String,)> = sqlx::query_as(
        "SELECT notification_id::text FROM notification.notifications \
         WHERE notification_id = ANY($1::uuid[]) AND state = $2",
    )
    .bind(&ids)
    .bind(State::Delivered as i16)
    .fetch_all(&pool)
    .await
    .expect("read the delivered notifications");
    pool.close().await;
    delivered.into_iter().map(|(id,)| id).collect()
}

/// The copies the SMTP server received of one notification.
fn received_copies(messages: &[ReceivedMessage], notification_id: &str) -> Vec<ReceivedMessage> {
    messages
        .iter()
        .filter(|m| m.header("X-Keycontacts-Notification-Id") == Some(notification_id))
        .cloned()
        .collect()
}

// rule N3: kc-notification SIGKILLed while a batch is in flight (the SMTP server holds its
// 250 replies back, so messages it already recorded were never acknowledged), then started
// again: every notification ends DELIVERED with one DELIVERED attempt; each was received at
// least once; the messages recorded before the kill were received again, with the same
// Message-ID and content, after the dead worker's lease was taken over (ABANDONED).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_mid_batch_and_restarted_every_notice_is_delivered_at_least_once() {
    const BATCH: usize = 40;
    let delivery = [
        QUICK_DELIVERY.as_slice(),
        &["--smtp-timeout", "10s", "--lease", "12s"],
    ]
    .concat();
    let mut p = Processes::start(&delivery).await;
    let primary = p.register("fr").await;
    let site = p.create_site(&primary, "fr", "4100018").await;

    // The server records each message, then holds its 250 for a while.
    p.smtp.set_data_delay(Duration::from_secs(5));
    let mut client = p.notifications().await;
    let mut batch = BTreeSet::new();
    for i in 0..BATCH {
        let sent = client
            .send_notice(authed(
                &p.gateway_token,
                send_notice_request(
                    &site.site_id,
                    Kind::Technical,
                    &[("topic", "Maintenance"), ("summary", "Sunday")],
                    &format!("batch-{i}"),
                ),
            ))
            .await
            .expect("send notice")
            .into_inner();
        assert_eq!(sent.notifications.len(), 1);
        batch.insert(sent.notifications[0].notification_id.clone());
    }
    let is_batch = |m: &ReceivedMessage| {
        m.header("X-Keycontacts-Notification-Id")
            .is_some_and(|id| batch.contains(id))
    };
    p.smtp
        .wait_for("part of the batch is being sent", PATIENCE, |m| {
            m.iter().any(is_batch)
        })
        .await;
    p.notification.child.start_kill().expect("SIGKILL");
    let status = p.notification.child.wait().await.expect("reaped");
    assert_eq!(status.signal(), Some(9), "killed by SIGKILL: {status}");
    // Received but not recorded DELIVERED at the kill. On a slow machine a 250 may have
    // come and been recorded before the kill landed: such a message is not sent again.
    let delivered_before_the_kill = delivered_in_database(&p.db.url, &batch).await;
    let unacknowledged: BTreeSet<String> = p
        .smtp
        .messages()
        .iter()
        .filter(|m| is_batch(m))
        .filter_map(|m| m.header("X-Keycontacts-Notification-Id").map(str::to_owned))
        .filter(|id| !delivered_before_the_kill.contains(id))
        .collect();
    assert!(!unacknowledged.is_empty());

    p.smtp.set_data_delay(Duration::ZERO);
    p.notification = start_notification(
        &p.db,
        &p.smtp,
        &p.identity,
        &p.contacts,
        &p.access,
        &p.notification_account,
        &delivery,
    )
    .await;
    let client = p.notifications().await;

    let final_states: Vec<pb::Notification> = eventually("the whole batch is delivered", || {
        let mut client = client.clone();
        let (token, batch) = (p.operator_token.clone(), &batch);
        async move {
            let mut found = Vec::new();
            for id in batch {
                let notification = client
                    .get_notification(authed(
                        &token,
                        pb::GetNotificationRequest {
                            notification_id: id.clone(),
                        },
                    ))
                    .await
                    .map_err(|status| format!("{status:?}"))?
                    .into_inner()
                    .notification
                    .expect("notification");
                if notification.state != State::Delivered as i32 {
                    return Err(helpers::brief(&[notification]).join(""));
                }
                found.push(notification);
            }
            Ok(found)
        }
    })
    .await;

    let messages = p.smtp.messages();
    let mut copies: HashMap<&str, Vec<&ReceivedMessage>> = HashMap::new();
    for message in &messages {
        if let Some(id) = message.header("X-Keycontacts-Notification-Id") {
            copies.entry(id).or_default().push(message);
        }
    }
    let mut abandoned = 0;
    for notification in &final_states {
        let id = notification.notification_id.as_str();
        let received = copies.get(id).cloned().unwrap_or_default();
        assert!(!received.is_empty(), "N3: {id} received at least once");
        // Every copy is the same message: one Message-ID, one content.
        for copy in &received {
            assert_eq!(copy.message_id, message_id_of(id));
            assert_eq!(copy.rcpt_tos, [primary.email.as_str()]);
            assert_eq!(
                (&copy.subject, &copy.text, &copy.html),
                (&received[0].subject, &received[0].text, &received[0].html),
                "a duplicate is the same message"
            );
        }
        let outcomes = helpers::outcomes(notification);
        assert_eq!(
            outcomes
                .iter()
                .filter(|(o, _)| *o == Outcome::Delivered)
                .count(),
            1,
            "one DELIVERED attempt: {notification:#?}"
        );
        assert_eq!(outcomes.last().map(|(o, _)| *o), Some(Outcome::Delivered));
        assert!(notification.deliver_time.is_some());
        let was_abandoned = outcomes.iter().any(|(o, _)| *o == Outcome::Abandoned);
        abandoned += usize::from(was_abandoned);
        if received.len() > 1 || unacknowledged.contains(id) {
            // Sent, never acknowledged: the lease was taken over and it was sent again.
            assert!(
                was_abandoned,
                "a message sent again follows an ABANDONED attempt: {notification:#?}"
            );
        }
        if unacknowledged.contains(id) {
            assert!(
                received.len() >= 2,
                "{id} was recorded but never acknowledged before the kill: sent again"
            );
        }
    }
    assert!(abandoned >= unacknowledged.len());
    let twice = final_states
        .iter()
        .filter(|n| copies.get(n.notification_id.as_str()).map_or(0, Vec::len) > 1)
        .count();
    println!(
        "batch of {BATCH}: {} recorded unacknowledged at the kill, {abandoned} leases taken \
         over (ABANDONED), {twice} received twice",
        unacknowledged.len()
    );
    // Nothing else of the batch was received.
    let batch_messages = messages.iter().filter(|m| is_batch(m)).count();
    let counted: usize = final_states
        .iter()
        .map(|n| copies.get(n.notification_id.as_str()).map_or(0, Vec::len))
        .sum();
    assert_eq!(batch_messages, counted);
}
