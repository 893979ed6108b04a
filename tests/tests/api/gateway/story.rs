//! The whole story, end to end, through the gateway ONLY and with the real grpcurl binary
//! ONLY (plaintext, server reflection): the five binaries run as child processes on one
//! database, wired with service accounts made by `kc-identity create-service-account`, the
//! operator bootstrapped by `kc-identity bootstrap-operator` (as `cargo xtask up` does), and
//! kc-notification delivering to a real SMTP server (aiosmtpd).
//!
//! An operator creates a customer's site with its (French) primary contact (S1); the
//! primary assigns an STC, an administrative contact and two secondaries (C2, C5, C6); a
//! newcomer registers, cannot sign in before it proves its address (I1), verifies its e-mail
//! with the code from its mail, and nominates itself
//! (A1, S3); the primary is told by e-mail, in French (A3, N1), and approves less than was
//! asked, including contact updates VIEW (A4, T4); the newcomer is told (A2) and can now
//! read the contacts (C7) but not change them; a renewal notice goes to the administrative
//! contact (R1, C3); the primary transfers its role (C8), and the audit trail of the site
//! tells the story with the actors' names (L1, T5).
//!
//! The binaries come from `cargo build --bins` (`cargo xtask test` builds them).

use std::time::Duration;

use kc_testkit::process::{
    CoreProcesses, ServiceProcess, binary, bootstrap_operator, grpcurl, service_account,
};
use kc_testkit::smtp::{ReceivedMessage, SmtpServer};
use serde_json::{Value, json};

const OPERATOR_EMAIL: &str = "operator@keycontacts.test";
const OPERATOR_PASSWORD: &str = "operator passphrase of the story";
const PASSWORD: &str = "correct horse battery staple";
const GATEWAY: &str = "keycontacts.gateway.v1.GatewayService";
/// Upper bound for anything asynchronous (projections, mail): only reached on failure.
const PATIENCE: Duration = Duration::from_secs(60);

/// A failed grpcurl call: the gRPC status it printed.
#[derive(Debug)]
struct Failure {
    code: String,
    message: String,
}

/// The gateway, called with grpcurl.
struct Gateway {
    address: String,
}

impl Gateway {
    /// Calls `rpc` with the JSON `body`, as `token`'s holder (anonymously without one).
    async fn call(&self, token: Option<&str>, rpc: &str, body: &Value) -> Result<Value, Failure> {
        let body = body.to_string();
        let method = format!("{GATEWAY}/{rpc}");
        let header = token.map(|token| format!("authorization: Bearer {token}"));
        let mut args = vec!["-plaintext", "-emit-defaults", "-max-time", "30"];
        if let Some(header) = &header {
            args.extend(["-H", header.as_str()]);
        }
        args.extend(["-d", &body, &self.address, &method]);
        let output = grpcurl(&args).await;
        if output.success {
            return Ok(
                serde_json::from_str(&output.stdout).unwrap_or_else(|error| {
                    panic!("grpcurl {rpc} printed no JSON ({error}): {}", output.stdout)
                }),
            );
        }
        let field = |name: &str| {
            output
                .stderr
                .lines()
                .find_map(|line| line.trim().strip_prefix(&format!("{name}:")))
                .map(|value| value.trim().to_owned())
        };
        match field("Code") {
            Some(code) => Err(Failure {
                code,
                message: field("Message").unwrap_or_default(),
            }),
            None => panic!(
                "grpcurl {rpc} failed without a gRPC status: {}",
                output.stderr
            ),
        }
    }

    /// Calls `rpc` and asserts it succeeded.
    async fn ok(&self, token: Option<&str>, rpc: &str, body: Value) -> Value {
        self.call(token, rpc, &body)
            .await
            .unwrap_or_else(|failure| panic!("{rpc} {body}: {failure:?}"))
    }

    /// Calls `rpc` until it succeeds (something asynchronous must happen first), for at most
    /// [`PATIENCE`].
    async fn eventually_ok(&self, token: Option<&str>, rpc: &str, body: Value) -> Value {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            match self.call(token, rpc, &body).await {
                Ok(value) => return value,
                Err(failure) => assert!(
                    tokio::time::Instant::now() < deadline,
                    "{rpc} {body} did not succeed within {PATIENCE:?}: {failure:?}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Registers a person; the answer is empty whatever the address (rule I2).
    async fn register(&self, email: &str, name: &str, locale: &str) {
        let response = self
            .ok(
                None,
                "Register",
                json!({"email": email, "display_name": name, "password": PASSWORD, "locale": locale}),
            )
            .await;
        assert_eq!(response, json!({}), "Register answers nothing (I2)");
    }

    /// Proves `email` with the code of the registration mail (rule I1): the verified user.
    async fn verify(&self, smtp: &SmtpServer, email: &str) -> Value {
        let verification = mail(smtp, email, "NOTICE_KIND_EMAIL_VERIFICATION").await;
        let verified = self
            .ok(
                None,
                "VerifyEmail",
                json!({"email": email, "code": code_in(&verification), "password": PASSWORD}),
            )
            .await;
        assert_eq!(
            verified["user"]["emailVerified"].as_bool(),
            Some(true),
            "{verified}"
        );
        verified["user"].clone()
    }

    /// Signs a person in: (access token, user).
    async fn login(&self, email: &str, password: &str) -> (String, Value) {
        let response = self
            .ok(None, "Login", json!({"email": email, "password": password}))
            .await;
        let token = response["accessToken"]
            .as_str()
            .filter(|token| !token.is_empty())
            .unwrap_or_else(|| panic!("an access token: {response}"))
            .to_owned();
        (token, response["user"].clone())
    }
}

/// A string field of a JSON value.
fn text<'a>(value: &'a Value, field: &str) -> &'a str {
    value[field]
        .as_str()
        .unwrap_or_else(|| panic!("no string {field} in {value}"))
}

/// The mail of `kind` (`NOTICE_KIND_…`) to `email`, once the SMTP server received it.
async fn mail(smtp: &SmtpServer, email: &str, kind: &str) -> ReceivedMessage {
    let matches = |message: &ReceivedMessage| {
        message
            .rcpt_tos
            .iter()
            .any(|rcpt| rcpt.eq_ignore_ascii_case(email))
            && message.header("X-Keycontacts-Kind") == Some(kind)
    };
    let messages = smtp
        .wait_for(
            &format!("{kind} is mailed to {email}"),
            PATIENCE,
            |messages| messages.iter().any(matches),
        )
        .await;
    messages
        .into_iter()
        .find(matches)
        .expect("the mail that was waited for")
}

/// The one-time code in a verification mail: the line of six digits.
fn code_in(message: &ReceivedMessage) -> String {
    let text = message.text.as_deref().expect("a text part");
    text.lines()
        .map(str::trim)
        .find(|line| line.len() == 6 && line.bytes().all(|b| b.is_ascii_digit()))
        .unwrap_or_else(|| panic!("a six-digit code in {text:?}"))
        .to_owned()
}

/// Asserts that `message` is written in French (N1).
#[track_caller]
fn assert_french(message: &ReceivedMessage) {
    assert_eq!(message.content_language, "fr", "{message:#?}");
    let text = message.text.as_deref().expect("a text part");
    assert!(text.starts_with("Bonjour"), "a French text: {text}");
}

// The story of issue 6, through the gateway only, with grpcurl only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_story_through_the_gateway_with_grpcurl() {
    // ---- the suite, as processes ----
    let smtp = SmtpServer::start().await;
    let db = kc_testkit::test_database().await;
    let (identity, contacts, access) = CoreProcesses::start(&db.url).await.into_parts();
    let operator_id = bootstrap_operator(&db.url, OPERATOR_EMAIL, OPERATOR_PASSWORD).await;
    let (notification_id, notification_secret) = service_account(&db.url, "kc-notification").await;
    let (gateway_id, gateway_secret) = service_account(&db.url, "kc-gateway").await;
    let notification = ServiceProcess::start(
        binary("kc-notification"),
        &[
            "--identity-url",
            &identity.url(),
            "--contacts-url",
            &contacts.url(),
            "--access-url",
            &access.url(),
            "--smtp-url",
            &smtp.url(),
            "--code-opening-key-file",
            &kc_testkit::secrets::test_keys()
                .code_opening_key
                .display()
                .to_string(),
        ],
        &[
            ("DATABASE_URL", db.url.as_str()),
            ("KC_CLIENT_ID", notification_id.as_str()),
            ("KC_CLIENT_SECRET", notification_secret.as_str()),
        ],
    )
    .await;
    let gateway_process = ServiceProcess::start(
        binary("kc-gateway"),
        &[
            "--identity-url",
            &identity.url(),
            "--contacts-url",
            &contacts.url(),
            "--access-url",
            &access.url(),
            "--notification-url",
            &notification.url(),
            "--session-rate-limit",
            "100/min",
            "--session-rate-burst",
            "50",
        ],
        &[
            ("KC_CLIENT_ID", gateway_id.as_str()),
            ("KC_CLIENT_SECRET", gateway_secret.as_str()),
        ],
    )
    .await;
    let gw = Gateway {
        address: gateway_process.address.clone(),
    };

    // grpcurl finds the gateway's API through reflection.
    let listed = kc_testkit::process::grpcurl_ok(&["-plaintext", &gw.address, "list"]).await;
    assert!(listed.lines().any(|line| line == GATEWAY), "{listed}");

    // ---- an operator creates a customer's site with its French primary contact (S1) ----
    let (operator, operator_user) = gw.login(OPERATOR_EMAIL, OPERATOR_PASSWORD).await;
    assert_eq!(text(&operator_user, "userId"), operator_id);
    let operator_name = text(&operator_user, "displayName").to_owned();
    let op = Some(operator.as_str());

    let paule_email = "paule.martin@acme.example";
    gw.register(paule_email, "Paule Martin", "fr").await;
    let paule = gw.verify(&smtp, paule_email).await;
    let bruno_email = "bruno.lefevre@acme.example";
    gw.register(bruno_email, "Bruno Lefèvre", "fr").await;
    let bruno = gw.verify(&smtp, bruno_email).await;

    let created = gw
        .ok(
            op,
            "CreateSite",
            json!({
                "site_number": "4100017",
                "customer_number": "8800042",
                "name": "Acme Lyon",
                "country_code": "FR",
                "language": "fr",
                "program": "PROGRAM_PASSPORT_ADVANTAGE",
                "primary_contact": {"email": paule_email},
            }),
        )
        .await;
    let site = &created["site"];
    let site_id = text(site, "siteId").to_owned();
    assert_eq!(text(site, "primaryUserId"), text(&paule, "userId"));
    assert_eq!(text(site, "language"), "fr");

    // ---- the primary assigns an STC, an administrative contact and two secondaries ----
    let (paule_token, _) = gw.login(paule_email, PASSWORD).await;
    let primary = Some(paule_token.as_str());
    // Access management learns the site from the registry's events: the primary may act
    // once it has.
    gw.eventually_ok(primary, "ShowAllContacts", json!({"site_id": site_id}))
        .await;
    let agnes_email = "agnes.admin@acme.example";
    let assignments = [
        (
            "theo.technique@acme.example",
            Some("Théo Technique"),
            "CONTACT_ROLE_SITE_TECHNICAL",
        ),
        (
            agnes_email,
            Some("Agnès Admin"),
            "CONTACT_ROLE_ADMINISTRATIVE",
        ),
        (bruno_email, None, "CONTACT_ROLE_SECONDARY"),
        (
            "sophie.second@acme.example",
            Some("Sophie Second"),
            "CONTACT_ROLE_SECONDARY",
        ),
    ];
    for (email, name, role) in assignments {
        let mut body = json!({
            "site_id": site_id,
            "email": email,
            "role": role,
            "locale": "fr",
            "details": {"job_title": "Responsable", "phone": "+33472000000"},
        });
        if let Some(name) = name {
            body["display_name"] = json!(name);
        }
        let assigned = gw.ok(primary, "AssignContact", body).await;
        assert_eq!(text(&assigned["contact"], "role"), role, "{assigned}");
        assert_eq!(
            assigned["userInvited"].as_bool(),
            Some(name.is_some()),
            "unknown people are invited: {assigned}"
        );
    }

    // ---- a newcomer registers, verifies its e-mail with the mailed code, nominates itself ----
    let nora_email = "nora.nouvelle@acme.example";
    gw.register(nora_email, "Nora Nouvelle", "fr").await;
    // Before it proves its address, the newcomer cannot sign in (I1).
    let unproven = gw
        .call(
            None,
            "Login",
            &json!({"email": nora_email, "password": PASSWORD}),
        )
        .await
        .expect_err("an unproven account cannot sign in (I1)");
    assert_eq!(unproven.code, "Unauthenticated", "{unproven:?}");
    let verification = mail(&smtp, nora_email, "NOTICE_KIND_EMAIL_VERIFICATION").await;
    assert_french(&verification);
    let nora = gw.verify(&smtp, nora_email).await;
    assert_eq!(text(&nora, "email"), nora_email, "{nora}");
    assert_eq!(text(&nora, "displayName"), "Nora Nouvelle", "{nora}");

    let (nora_token, _) = gw.login(nora_email, PASSWORD).await;
    let newcomer = Some(nora_token.as_str());
    // Before the approval the newcomer sees nothing of the site.
    let refused = gw
        .call(newcomer, "ShowAllContacts", &json!({"site_id": site_id}))
        .await
        .expect_err("no access before the approval");
    assert_eq!(refused.code, "PermissionDenied", "{refused:?}");
    let justification = "Je gère les téléchargements et l'annuaire de l'équipe";
    let nominated = gw
        .ok(
            newcomer,
            "SelfNominate",
            json!({
                "site_number": "4100017",
                "customer_number": "8800042",
                "kind": "ACCESS_REQUEST_KIND_SITE_ACCESS",
                "requested_tools": {
                    "software": "SOFTWARE_ACCESS_FULL",
                    "reporting": "REPORTING_ACCESS_VIEW",
                    "contact_updates": "CONTACT_UPDATES_ACCESS_UPDATE",
                },
                "justification": justification,
            }),
        )
        .await;
    let request = &nominated["request"];
    let request_id = text(request, "requestId").to_owned();
    assert_eq!(text(request, "state"), "ACCESS_REQUEST_STATE_PENDING");
    assert_eq!(text(request, "siteId"), site_id);

    // ---- the primary is told by e-mail, in French, and approves less than was asked ----
    let submitted = mail(&smtp, paule_email, "NOTICE_KIND_ACCESS_REQUEST_SUBMITTED").await;
    assert_french(&submitted);
    let body = submitted.text.as_deref().unwrap_or_default();
    assert!(
        body.contains("Nora Nouvelle"),
        "the requester is named: {body}"
    );
    assert!(
        body.contains(justification),
        "the justification is shown: {body}"
    );
    assert!(
        submitted.subject.contains("4100017"),
        "{}",
        submitted.subject
    );

    let pending = gw
        .ok(primary, "ListPendingRequests", json!({"site_id": site_id}))
        .await;
    let views = pending["requests"].as_array().expect("requests");
    assert_eq!(views.len(), 1, "{pending}");
    assert_eq!(text(&views[0]["request"], "requestId"), request_id);
    assert_eq!(text(&views[0], "requesterDisplayName"), "Nora Nouvelle");
    assert_eq!(text(&views[0], "requesterEmail"), nora_email);

    let decided = gw
        .ok(
            primary,
            "DecideAccessRequest",
            json!({
                "request_id": request_id,
                "decision": "ACCESS_DECISION_APPROVE",
                "granted_tools": {
                    "software": "SOFTWARE_ACCESS_DOWNLOADS_ONLY",
                    "reporting": "REPORTING_ACCESS_NONE",
                    "contact_updates": "CONTACT_UPDATES_ACCESS_VIEW",
                },
                "reason": "Lecture de l'annuaire seulement",
            }),
        )
        .await;
    assert_eq!(
        text(&decided["request"], "state"),
        "ACCESS_REQUEST_STATE_APPROVED"
    );
    let granted = &decided["request"]["grantedTools"];
    assert_eq!(text(granted, "software"), "SOFTWARE_ACCESS_DOWNLOADS_ONLY");
    assert_eq!(
        text(granted, "contactUpdates"),
        "CONTACT_UPDATES_ACCESS_VIEW"
    );
    assert_ne!(
        text(granted, "reporting"),
        "REPORTING_ACCESS_VIEW",
        "{granted}"
    );
    let effective = &decided["profile"]["effective"];
    assert_eq!(
        text(effective, "contactUpdates"),
        "CONTACT_UPDATES_ACCESS_VIEW"
    );

    // ---- the newcomer is told, can read the contacts, cannot change them ----
    let told = mail(&smtp, nora_email, "NOTICE_KIND_ACCESS_REQUEST_DECIDED").await;
    assert_french(&told);
    let shown = gw
        .eventually_ok(newcomer, "ShowAllContacts", json!({"site_id": site_id}))
        .await;
    let people = shown["contacts"].as_array().expect("contacts");
    let roles_of = |email: &str| -> Vec<String> {
        people
            .iter()
            .find(|person| person["email"] == email)
            .unwrap_or_else(|| panic!("{email} among the contacts: {shown}"))["roles"]
            .as_array()
            .expect("roles")
            .iter()
            .map(|role| role.as_str().expect("a role name").to_owned())
            .collect()
    };
    assert_eq!(people.len(), 5, "{shown}");
    assert_eq!(
        text(&people[0], "displayName"),
        "Paule Martin",
        "PRIMARY first"
    );
    assert_eq!(roles_of(paule_email), ["CONTACT_ROLE_PRIMARY"]);
    assert_eq!(roles_of(agnes_email), ["CONTACT_ROLE_ADMINISTRATIVE"]);
    assert_eq!(
        roles_of("theo.technique@acme.example"),
        ["CONTACT_ROLE_SITE_TECHNICAL"]
    );
    assert_eq!(roles_of(bruno_email), ["CONTACT_ROLE_SECONDARY"]);
    let agnes = people
        .iter()
        .find(|person| person["email"] == agnes_email)
        .expect("Agnès");
    assert_eq!(text(agnes, "displayName"), "Agnès Admin");
    assert_eq!(text(agnes, "jobTitle"), "Responsable");
    assert_eq!(text(agnes, "phone"), "+33472000000");
    assert_eq!(text(agnes, "notificationEmail"), agnes_email);

    let change = gw
        .call(
            newcomer,
            "AssignContact",
            &json!({
                "site_id": site_id,
                "email": "intrus@acme.example",
                "display_name": "Intrus",
                "role": "CONTACT_ROLE_SITE_USER",
            }),
        )
        .await
        .expect_err("reading contacts is not changing them");
    assert_eq!(change.code, "PermissionDenied", "{change:?}");
    assert!(
        change.message.contains("PERMISSION_CONTACTS_UPDATE"),
        "the gateway names the missing permission: {change:?}"
    );

    // ---- a renewal notice goes to the administrative contact (R1: no RENEWAL contact) ----
    let renewal_notice = json!({
        "site_id": site_id,
        "kind": "NOTICE_KIND_RENEWAL",
        "params": {"end_date": "2026-12-31", "quote_reference": "Q-2026-0042"},
        "idempotency_key": "renewal-2026-acme-lyon",
    });
    let sent = gw.ok(op, "SendNotice", renewal_notice.clone()).await;
    let notices = sent["notifications"].as_array().expect("notifications");
    assert_eq!(notices.len(), 1, "one recipient: {sent}");
    assert_eq!(text(&notices[0], "email"), agnes_email, "{sent}");
    assert_eq!(sent["replayed"].as_bool(), Some(false));
    let renewal = mail(&smtp, agnes_email, "NOTICE_KIND_RENEWAL").await;
    assert_french(&renewal);
    assert!(
        renewal
            .text
            .as_deref()
            .unwrap_or_default()
            .contains("2026-12-31"),
        "{renewal:#?}"
    );
    // The same notice again, with the same idempotency key.
    let again = gw.ok(op, "SendNotice", renewal_notice).await;
    assert_eq!(again["replayed"].as_bool(), Some(true), "N3: {again}");

    // ---- the primary transfers the primary role (C8); both are told ----
    let transferred = gw
        .ok(
            primary,
            "TransferPrimaryContact",
            json!({"site_id": site_id, "email": bruno_email}),
        )
        .await;
    assert_eq!(
        text(&transferred["site"], "primaryUserId"),
        text(&bruno, "userId")
    );
    mail(&smtp, paule_email, "NOTICE_KIND_PRIMARY_TRANSFERRED").await;
    mail(&smtp, bruno_email, "NOTICE_KIND_PRIMARY_TRANSFERRED").await;

    // ---- the new primary reads the story in the audit trail ----
    let (bruno_token, _) = gw.login(bruno_email, PASSWORD).await;
    let audit = gw
        .eventually_ok(
            Some(&bruno_token),
            "ListSiteAudit",
            json!({"site_id": site_id, "page_size": 1000}),
        )
        .await;
    let entries = audit["entries"].as_array().expect("entries");
    let times: Vec<&str> = entries.iter().map(|e| text(e, "createTime")).collect();
    assert!(
        times.windows(2).all(|pair| pair[0] >= pair[1]),
        "newest first: {times:?}"
    );
    let by = |action: &str| -> Vec<(String, String)> {
        entries
            .iter()
            .filter(|entry| entry["action"] == action)
            .map(|entry| {
                (
                    text(entry, "actorDisplayName").to_owned(),
                    text(entry, "source").to_owned(),
                )
            })
            .collect()
    };
    let contacts_source = "AUDIT_SOURCE_CONTACTS".to_owned();
    let access_source = "AUDIT_SOURCE_ACCESS".to_owned();
    assert_eq!(
        by("site.created"),
        [(operator_name.clone(), contacts_source.clone())],
        "{audit}"
    );
    let assigned_by_paule = by("contact.assigned")
        .into_iter()
        .filter(|(actor, _)| actor == "Paule Martin")
        .collect::<Vec<_>>();
    assert_eq!(
        assigned_by_paule,
        vec![("Paule Martin".to_owned(), contacts_source.clone()); 4],
        "{audit}"
    );
    assert_eq!(
        by("request.submitted"),
        [("Nora Nouvelle".to_owned(), access_source.clone())],
        "{audit}"
    );
    assert_eq!(
        by("request.approved"),
        [("Paule Martin".to_owned(), access_source.clone())],
        "{audit}"
    );
    assert_eq!(
        by("primary.transferred"),
        [("Paule Martin".to_owned(), contacts_source.clone())],
        "{audit}"
    );
    // The story in order, oldest first, among the key entries.
    let story: Vec<&str> = entries
        .iter()
        .rev()
        .map(|entry| text(entry, "action"))
        .filter(|action| {
            [
                "site.created",
                "request.submitted",
                "request.approved",
                "primary.transferred",
            ]
            .contains(action)
        })
        .collect();
    assert_eq!(
        story,
        [
            "site.created",
            "request.submitted",
            "request.approved",
            "primary.transferred"
        ]
    );
    // The approval's audit entry says who decided and why (T5).
    let approval = entries
        .iter()
        .find(|entry| entry["action"] == "request.approved")
        .expect("the approval");
    assert_eq!(text(approval, "actorId"), text(&paule, "userId"));
    assert_eq!(text(approval, "resourceId"), request_id);
    // The primary acted through the gateway, which the services recorded (on-behalf-of).
    assert_eq!(text(approval, "viaService"), gateway_id, "{approval}");

    // The former primary no longer holds the primary role (GetMe, as itself).
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let me = gw.ok(primary, "GetMe", json!({})).await;
        let roles: Vec<Value> = me["sites"]
            .as_array()
            .expect("sites")
            .iter()
            .filter(|mine| mine["site"]["siteId"] == site_id.as_str())
            .flat_map(|mine| mine["roles"].as_array().cloned().unwrap_or_default())
            .collect();
        if !roles.contains(&json!("CONTACT_ROLE_PRIMARY")) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the former primary loses the role within {PATIENCE:?}: {me}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
