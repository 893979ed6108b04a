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
#![allow(dead_code, missing_docs)]

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};

use futures::StreamExt;
use kc_access::config::AccessArgs;
use kc_contacts::config::ContactsArgs;
use kc_identity::config::IdentityArgs;
use kc_identity::domain::Identity;
use kc_identity::domain::values::{Email, Password};
use kc_notification::config::NotificationArgs;
use kc_proto::access::access_management_service_client::AccessManagementServiceClient;
use kc_proto::access::{self as apb};
use kc_proto::contacts::contact_registry_service_client::ContactRegistryServiceClient;
use kc_proto::contacts::{self as cpb};
use kc_proto::identity::identity_service_client::IdentityServiceClient;
use kc_proto::identity::{self as ipb};
use kc_proto::notification::notification_service_client::NotificationServiceClient;
use kc_proto::notification::{self as pb};
use kc_runtime::Shutdown;
use kc_runtime::auth::ON_BEHALF_OF_HEADER;
use kc_testkit::codes::CodeReader;
use kc_testkit::secrets::{contacts_key_args, identity_key_args, notification_key_args};
use kc_testkit::smtp::{ReceivedMessage, SmtpServer};
use kc_testkit::{
    Restartable, SpawnedService, TestDatabase, ready_channel, spawn_service, test_database,
};
use tokio::net::TcpListener;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use uuid::Uuid;

// Not every test binary uses both.
#[allow(unused_imports)]
pub use kc_testkit::checks::{PATIENCE, cites, eventually};

pub use cpb::ContactRole as Role;
pub use pb::{AttemptOutcome as Outcome, NoticeKind as Kind, NotificationState as State};

pub const OPERATOR_EMAIL: &str = "operator@keycontacts.test";
pub const PASSWORD: &str = "correct horse battery staple";
pub const MAIL_FROM: &str = "keycontacts <no-reply@keycontacts.invalid>";

/// Cheap argon2 parameters: the tests exercise the logic, not the cost.
pub const FAST_HASHING: [&str; 4] = ["--argon2-memory-kib", "256", "--argon2-iterations", "1"];

/// Short delivery settings, so retries and lease take-overs happen within a test. Many
/// attempts, so an SMTP outage of a few seconds never runs them out (a test that wants
/// them to run out passes its own `--max-attempts`).
pub const FAST_DELIVERY: [&str; 12] = [
    "--retry-base",
    "100ms",
    "--retry-max",
    "1s",
    "--lease",
    "3s",
    "--smtp-timeout",
    "2s",
    "--poll-interval",
    "200ms",
    "--max-attempts",
    "30",
];

pub type Notifications = NotificationServiceClient<Channel>;
pub type Access = AccessManagementServiceClient<Channel>;
pub type Contacts = ContactRegistryServiceClient<Channel>;
pub type IdentityClient = IdentityServiceClient<Channel>;

/// Every notice kind, listed here rather than taken from the crate, so that a kind the
/// service forgets is still asked about.
pub const ALL_KINDS: [Kind; 23] = [
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
    pub locale: String,
}

pub struct Suite {
    pub db: TestDatabase,
    pub shutdown: Shutdown,
    pub smtp: SmtpServer,
    pub identity: SpawnedService,
    pub contacts: Restartable,
    pub access: SpawnedService,
    pub notification: Restartable,
    pub identity_channel: Channel,
    pub contacts_channel: Channel,
    pub access_channel: Channel,
    pub notification_channel: Channel,
    /// Identity's domain on the same database (service accounts, operator bootstrap).
    pub identity_domain: Identity,
    pub contacts_args: ContactsArgs,
    pub notification_args: NotificationArgs,
    /// The operator's user id and token.
    pub operator_id: Uuid,
    pub operator_token: String,
    /// Client id and token of the gateway-like service account.
    pub gateway_id: Uuid,
    pub gateway_token: String,
    numbers: AtomicU32,
    names: AtomicU32,
}

impl Suite {
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// Starts the suite; `notification_extra` are more flags for notification (later ones
    /// win over [`FAST_DELIVERY`]).
    pub async fn start_with(notification_extra: &[&str]) -> Self {
        let smtp = SmtpServer::start().await;
        let db = test_database().await;
        let shutdown = Shutdown::new();

        // Identity, then its domain for the fixtures that have no public RPC.
        let identity_keys = identity_key_args();
        let mut argv = vec!["kc-identity", "--database-url", &db.url];
        argv.extend(FAST_HASHING);
        argv.extend(identity_keys.iter().map(String::as_str));
        let identity_args = IdentityArgs::parse_from(argv).expect("identity arguments parse");
        let identity = {
            let (args, shutdown) = (identity_args.clone(), shutdown.clone());
            spawn_service(move |listener| kc_identity::run(args, listener, shutdown)).await
        };
        let identity_channel = identity.channel().await;
        let identity_domain = kc_identity::build(&identity_args)
            .await
            .expect("identity domain")
            .1;

        // Access management's port, bound now: the registry follows access's events (rule
        // T8) and access the registry's, so the registry is given access's address first.
        let access_listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let access_addr = access_listener.local_addr().expect("local address");

        // The contact registry, verifying tokens with identity's keys and following access
        // management with its own service account; stops at once when told (streams end, no
        // drain grace), as a crash would look to its followers.
        let (contacts_account, contacts_secret) = identity_domain
            .create_service_account("kc-contacts")
            .await
            .expect("contacts service account");
        let mut argv = vec![
            "kc-contacts".to_owned(),
            "--database-url".to_owned(),
            db.url.clone(),
            "--identity-url".to_owned(),
            identity.url(),
            "--access-url".to_owned(),
            format!("http://{access_addr}"),
            "--client-id".to_owned(),
            contacts_account.to_string(),
            "--client-secret".to_owned(),
            contacts_secret,
            "--shutdown-grace".to_owned(),
            "0s".to_owned(),
        ];
        argv.extend(contacts_key_args());
        let contacts_args = ContactsArgs::parse_from(argv).expect("contacts arguments");
        let contacts = start_contacts(&contacts_args, "127.0.0.1:0".parse().unwrap()).await;
        let contacts_channel = ready_channel(&contacts.url()).await;

        // Access management with its own service account, on the port bound above.
        let (access_account, access_secret) = identity_domain
            .create_service_account("kc-access")
            .await
            .expect("access service account");
        let access = {
            let (account, identity_url, contacts_url) =
                (access_account.to_string(), identity.url(), contacts.url());
            let argv = [
                "kc-access",
                "--database-url",
                &db.url,
                "--identity-url",
                &identity_url,
                "--contacts-url",
                &contacts_url,
                "--client-id",
                &account,
                "--client-secret",
                &access_secret,
            ];
            let args = AccessArgs::parse_from(argv).expect("access arguments parse");
            SpawnedService {
                addr: access_addr,
                task: tokio::spawn(kc_access::run(args, access_listener, shutdown.clone())),
            }
        };
        let access_channel = access.channel().await;

        // Notification with its own service account, delivering to the SMTP server.
        let (notification_account, notification_secret) = identity_domain
            .create_service_account("kc-notification")
            .await
            .expect("notification service account");
        let notification_args = {
            let (account, identity_url, contacts_url, access_url, smtp_url) = (
                notification_account.to_string(),
                identity.url(),
                contacts.url(),
                access.url(),
                smtp.url(),
            );
            let mut argv = vec![
                "kc-notification",
                "--database-url",
                &db.url,
                "--identity-url",
                &identity_url,
                "--contacts-url",
                &contacts_url,
                "--access-url",
                &access_url,
                "--client-id",
                &account,
                "--client-secret",
                &notification_secret,
                "--smtp-url",
                &smtp_url,
                "--mail-from",
                MAIL_FROM,
                "--shutdown-grace",
                "0s",
            ];
            let keys = notification_key_args();
            argv.extend(keys.iter().map(String::as_str));
            argv.extend(FAST_DELIVERY);
            argv.extend(notification_extra);
            let args = NotificationArgs::parse_from(argv).expect("notification arguments parse");
            args.validate().expect("notification arguments are valid");
            args
        };
        let notification =
            start_notification(&notification_args, "127.0.0.1:0".parse().unwrap()).await;
        let notification_channel = ready_channel(&notification.url()).await;

        // The callers: an operator and a gateway-like service account.
        let mut identity_client = IdentityServiceClient::new(identity_channel.clone());
        let operator = identity_domain
            .bootstrap_operator(
                &Email::parse("email", OPERATOR_EMAIL).expect("email"),
                &Password::parse("password", PASSWORD).expect("password"),
            )
            .await
            .expect("bootstrap operator");
        let operator_token = identity_client
            .authenticate(ipb::AuthenticateRequest {
                email: OPERATOR_EMAIL.into(),
                password: PASSWORD.into(),
            })
            .await
            .expect("operator login")
            .into_inner()
            .access_token;
        let (gateway_id, gateway_secret) = identity_domain
            .create_service_account("kc-gateway")
            .await
            .expect("gateway service account");
        let gateway_token = identity_client
            .issue_service_token(ipb::IssueServiceTokenRequest {
                client_id: gateway_id.to_string(),
                client_secret: gateway_secret,
            })
            .await
            .expect("gateway token")
            .into_inner()
            .access_token;

        Self {
            db,
            shutdown,
            smtp,
            identity,
            contacts,
            access,
            notification,
            identity_channel,
            contacts_channel,
            access_channel,
            notification_channel,
            identity_domain,
            contacts_args,
            notification_args,
            operator_id: operator.user_id,
            operator_token,
            gateway_id,
            gateway_token,
            numbers: AtomicU32::new(0),
            names: AtomicU32::new(0),
        }
    }

    /// Stops the registry (its streams end, its port is closed).
    pub async fn stop_registry(&mut self) {
        self.contacts.stop().await;
    }

    /// Starts the registry again on the same port.
    pub async fn start_registry(&mut self) {
        self.contacts = start_contacts(&self.contacts_args, self.contacts.addr).await;
        ready_channel(&self.contacts.url()).await;
    }

    /// Stops notification (its workers and consumers stop, its port is closed).
    pub async fn stop_notification(&mut self) {
        self.notification.stop().await;
    }

    /// Starts notification again on the same port.
    pub async fn start_notification(&mut self) {
        self.notification =
            start_notification(&self.notification_args, self.notification.addr).await;
        ready_channel(&self.notification.url()).await;
    }

    // ---- clients and requests ----

    pub fn notifications(&self) -> Notifications {
        NotificationServiceClient::new(self.notification_channel.clone())
    }

    pub fn access(&self) -> Access {
        AccessManagementServiceClient::new(self.access_channel.clone())
    }

    pub fn registry(&self) -> Contacts {
        ContactRegistryServiceClient::new(self.contacts_channel.clone())
    }

    pub fn identity(&self) -> IdentityClient {
        IdentityServiceClient::new(self.identity_channel.clone())
    }

    /// A request from the gateway service, acting for nobody.
    pub fn svc<T>(&self, message: T) -> Request<T> {
        authed(&self.gateway_token, message)
    }

    /// A request from the gateway service acting for `user`.
    pub fn as_user<T>(&self, user: Uuid, message: T) -> Request<T> {
        on_behalf_of(authed(&self.gateway_token, message), user)
    }

    /// A request from the operator.
    pub fn op<T>(&self, message: T) -> Request<T> {
        authed(&self.operator_token, message)
    }

    // ---- identity ----

    /// Registers a customer with `locale` and returns it.
    pub async fn user(&self, locale: &str) -> TestUser {
        let n = self.names.fetch_add(1, Ordering::Relaxed);
        let name = format!("Person {n} ({locale})");
        self.user_named(locale, &name).await
    }

    /// Registers a customer with `locale` and display name `name`, and proves its address
    /// with the code identity mailed (rule I1): the account is active. The proof waits for
    /// notification to have made the code's mail (it would mail nothing for a code already
    /// used), so every person of a test has exactly one registration mail.
    pub async fn user_named(&self, locale: &str, name: &str) -> TestUser {
        let email = fresh_email();
        self.register(&email, name, PASSWORD, locale).await;
        eventually(
            &format!("notification made the registration mail to {email}"),
            || async {
                let found = self.to_address(&email).await;
                if found
                    .iter()
                    .any(|n| n.kind == Kind::EmailVerification as i32)
                {
                    Ok(())
                } else {
                    Err(format!("{:#?}", brief(&found)))
                }
            },
        )
        .await;
        let code = self.code_reader().next_code(&email).await;
        let user = self.verify_email(&email, &code.code, PASSWORD).await;
        TestUser {
            id: uuid(&user.user_id),
            email: user.email,
            name: user.display_name,
            locale: user.locale,
        }
    }

    /// RegisterUser, which answers nothing whatever the address (rule I2).
    pub async fn register(
        &self,
        email: &str,
        name: &str,
        password: &str,
        locale: &str,
    ) -> ipb::RegisterUserResponse {
        self.identity()
            .register_user(ipb::RegisterUserRequest {
                email: email.into(),
                display_name: name.into(),
                password: password.into(),
                locale: locale.into(),
            })
            .await
            .expect("register")
            .into_inner()
    }

    /// VerifyEmail with `code`; returns the proven user.
    pub async fn verify_email(&self, email: &str, code: &str, password: &str) -> ipb::User {
        self.identity()
            .verify_email(ipb::VerifyEmailRequest {
                email: email.into(),
                code: code.into(),
                password: password.into(),
            })
            .await
            .expect("verify email")
            .into_inner()
            .user
            .expect("user")
    }

    /// A reader of the codes identity mails, from the start of its stream, as the operator.
    pub fn code_reader(&self) -> CodeReader {
        CodeReader::new(self.identity_channel.clone(), self.operator_token.clone())
    }

    /// Signs in; the access token.
    pub async fn sign_in(&self, email: &str, password: &str) -> Result<String, Status> {
        self.identity()
            .authenticate(ipb::AuthenticateRequest {
                email: email.into(),
                password: password.into(),
            })
            .await
            .map(|response| response.into_inner().access_token)
    }

    /// A registered customer's access token.
    pub async fn customer_token(&self, user: &TestUser) -> String {
        self.identity()
            .authenticate(ipb::AuthenticateRequest {
                email: user.email.clone(),
                password: PASSWORD.into(),
            })
            .await
            .expect("customer login")
            .into_inner()
            .access_token
    }

    /// Reads identity's event stream from the start until `pick` finds something.
    pub async fn find_identity_event<T>(
        &self,
        mut pick: impl FnMut(&ipb::Event) -> Option<T>,
    ) -> T {
        let mut stream = self
            .identity()
            .watch_events(self.op(ipb::WatchEventsRequest::default()))
            .await
            .expect("watch identity events")
            .into_inner();
        tokio::time::timeout(PATIENCE, async {
            while let Some(item) = stream.next().await {
                let event = item.expect("identity event").event.expect("event body");
                if let Some(found) = pick(&event) {
                    return found;
                }
            }
            panic!("identity event stream ended");
        })
        .await
        .unwrap_or_else(|_| panic!("the identity event arrives within {PATIENCE:?}"))
    }

    // ---- contact registry ----

    /// A fresh (site number, customer number) pair.
    pub fn numbers(&self) -> (String, String) {
        let n = self.numbers.fetch_add(1, Ordering::Relaxed);
        (format!("{}", 3_000_000 + n), format!("{}", 4_000_000 + n))
    }

    /// Creates a site in the registry.
    pub async fn create_site(&self, request: cpb::CreateSiteRequest) -> cpb::Site {
        self.registry()
            .create_site(self.svc(request))
            .await
            .expect("create site")
            .into_inner()
            .site
            .expect("site")
    }

    /// A site in `language` without S&S whose primary contact is `primary`.
    pub async fn site(&self, primary: &TestUser, language: &str) -> cpb::Site {
        let (site_number, customer_number) = self.numbers();
        self.create_site(site_request(
            &site_number,
            &customer_number,
            primary.id,
            language,
        ))
        .await
    }

    /// Gives `user` `role` on the site as the operator, like `remove`, `replace` and
    /// `transfer_primary`: a role that implies rights never changes by a service acting for
    /// nobody (rule T6).
    pub async fn assign(
        &self,
        site_id: &str,
        user: &TestUser,
        role: Role,
        notification_email: &str,
    ) -> cpb::Contact {
        let contact = self
            .registry()
            .assign_contact(self.op(cpb::AssignContactRequest {
                site_id: site_id.into(),
                user_id: user.id.to_string(),
                role: role as i32,
                details: Some(cpb::ContactDetails {
                    notification_email: notification_email.into(),
                    ..Default::default()
                }),
            }))
            .await
            .expect("assign contact");
        let contact = contact.into_inner().contact.expect("contact");
        if notification_email.is_empty() {
            contact
        } else {
            // rule C11: the address is used once its owner confirms it.
            self.confirm_notification_email(&contact).await
        }
    }

    /// Confirms the pending notification e-mail of `contact` as its own user with the code
    /// the registry sealed into its event (read from the registry's outbox and opened with
    /// the test key, as notification opens it); rule C11.
    pub async fn confirm_notification_email(&self, contact: &cpb::Contact) -> cpb::Contact {
        use prost::Message;
        let options: sqlx::postgres::PgConnectOptions = self.db.url.parse().expect("db url");
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect_with(options.options([("search_path", "contacts")]))
            .await
            .expect("contacts pool");
        let payloads: Vec<Vec<u8>> = sqlx::query_scalar(
            "SELECT payload FROM outbox_events \
             WHERE event_type = 'contact.notification_email_change_requested' \
             ORDER BY txid DESC, seq DESC",
        )
        .fetch_all(&pool)
        .await
        .expect("read the registry's outbox");
        pool.close().await;
        let code = payloads
            .iter()
            .find_map(
                |payload| match cpb::Event::decode(payload.as_slice()).ok()?.payload? {
                    cpb::event::Payload::NotificationEmailChangeRequested(requested)
                        if requested.contact.as_ref()?.contact_id == contact.contact_id
                            && !requested.sealed_code.is_empty() =>
                    {
                        Some(kc_testkit::secrets::open_code(&requested.sealed_code))
                    }
                    _ => None,
                },
            )
            .expect("a code for the pending notification e-mail");
        let user = Uuid::parse_str(&contact.user_id).expect("user id");
        self.registry()
            .confirm_notification_email(self.as_user(
                user,
                cpb::ConfirmNotificationEmailRequest {
                    code,
                    contact_id: contact.contact_id.clone(),
                    ..Default::default()
                },
            ))
            .await
            .expect("confirm the notification e-mail")
            .into_inner()
            .contact
            .expect("contact")
    }

    pub async fn remove(&self, contact_id: &str) {
        self.registry()
            .remove_contact(self.op(cpb::RemoveContactRequest {
                contact_id: contact_id.into(),
                ..Default::default()
            }))
            .await
            .expect("remove contact");
    }

    pub async fn replace(&self, site_id: &str, role: Role, new_holder: &TestUser) {
        self.registry()
            .replace_contact(self.op(cpb::ReplaceContactRequest {
                site_id: site_id.into(),
                role: role as i32,
                new_user_id: new_holder.id.to_string(),
                details: None,
            }))
            .await
            .expect("replace contact");
    }

    /// Makes `new_primary` the primary contact of the site (C8).
    pub async fn transfer_primary(&self, site_id: &str, new_primary: &TestUser) {
        self.registry()
            .transfer_primary_contact(self.op(cpb::TransferPrimaryContactRequest {
                site_id: site_id.into(),
                new_user_id: new_primary.id.to_string(),
                etag: String::new(),
                previous_primary_role: Role::Unspecified as i32,
            }))
            .await
            .expect("transfer primary");
    }

    pub async fn resolve(
        &self,
        site_id: &str,
        purpose: cpb::NoticePurpose,
    ) -> cpb::ResolveRecipientsResponse {
        self.registry()
            .resolve_recipients(self.svc(cpb::ResolveRecipientsRequest {
                site_id: site_id.into(),
                purpose: purpose as i32,
            }))
            .await
            .expect("resolve recipients")
            .into_inner()
    }

    // ---- access management ----

    /// Polls Check until access management knows `user` may approve site access requests
    /// on the site (it follows the registry's stream).
    pub async fn wait_approver(&self, user: &TestUser, site_id: &str) {
        eventually(
            &format!("access management knows {} approves on {site_id}", user.id),
            || async move {
                let response = self
                    .access()
                    .check(self.svc(apb::CheckRequest {
                        user_id: user.id.to_string(),
                        site_id: site_id.into(),
                        permission: apb::Permission::ApproveSiteAccess as i32,
                    }))
                    .await
                    .map_err(|status| format!("{status:?}"))?
                    .into_inner();
                if response.allowed {
                    Ok(())
                } else {
                    Err(format!("{response:?}"))
                }
            },
        )
        .await;
    }

    /// `requester` asks for software downloads on the site, with `justification`.
    pub async fn submit(
        &self,
        requester: &TestUser,
        site: &cpb::Site,
        justification: &str,
    ) -> apb::AccessRequest {
        self.access()
            .submit_access_request(self.as_user(
                requester.id,
                apb::SubmitAccessRequestRequest {
                    site_number: site.site_number.clone(),
                    customer_number: site.customer_number.clone(),
                    kind: apb::AccessRequestKind::SiteAccess as i32,
                    requested_tools: Some(apb::ToolAccess {
                        software: apb::SoftwareAccess::DownloadsOnly as i32,
                        ..Default::default()
                    }),
                    requested_support_level: 0,
                    justification: justification.into(),
                },
            ))
            .await
            .expect("submit access request")
            .into_inner()
            .request
            .expect("request")
    }

    pub async fn approvers(&self, site_id: &str) -> Vec<Uuid> {
        self.access()
            .list_approvers(self.svc(apb::ListApproversRequest {
                site_id: site_id.into(),
                kind: apb::AccessRequestKind::SiteAccess as i32,
                page_size: 0,
                page_token: String::new(),
            }))
            .await
            .expect("list approvers")
            .into_inner()
            .approvers
            .iter()
            .map(|a| uuid(&a.user_id))
            .collect()
    }

    pub async fn reject(&self, approver: &TestUser, request_id: &str, reason: &str) {
        self.access()
            .reject_access_request(self.as_user(
                approver.id,
                apb::RejectAccessRequestRequest {
                    request_id: request_id.into(),
                    reason: reason.into(),
                    etag: String::new(),
                },
            ))
            .await
            .expect("reject");
    }

    pub async fn approve(&self, approver: &TestUser, request_id: &str, note: &str) {
        self.access()
            .approve_access_request(self.as_user(
                approver.id,
                apb::ApproveAccessRequestRequest {
                    request_id: request_id.into(),
                    granted_tools: None,
                    granted_support_level: 0,
                    etag: String::new(),
                    note: note.into(),
                },
            ))
            .await
            .expect("approve");
    }

    pub async fn cancel(&self, requester: &TestUser, request_id: &str) {
        self.access()
            .cancel_access_request(self.as_user(
                requester.id,
                apb::CancelAccessRequestRequest {
                    request_id: request_id.into(),
                    etag: String::new(),
                },
            ))
            .await
            .expect("cancel");
    }

    /// `grantor` gives `user` manage access UPDATE on the site (an approver, A3).
    pub async fn grant_manage_access(
        &self,
        grantor: &TestUser,
        site_id: &str,
        user: &TestUser,
        reason: &str,
    ) {
        self.access()
            .set_tool_access(self.as_user(
                grantor.id,
                apb::SetToolAccessRequest {
                    site_id: site_id.into(),
                    user_id: user.id.to_string(),
                    tools: Some(apb::ToolAccess {
                        manage_access: apb::ManageAccess::Update as i32,
                        ..Default::default()
                    }),
                    reason: reason.into(),
                    etag: String::new(),
                },
            ))
            .await
            .expect("set tool access");
    }

    pub async fn set_policy(&self, setter: &TestUser, site_id: &str, domain: &str) {
        self.access()
            .set_domain_policy(self.as_user(
                setter.id,
                apb::SetDomainPolicyRequest {
                    site_id: site_id.into(),
                    domain: domain.into(),
                    policy: apb::DomainPolicyMode::AutoPending as i32,
                    baseline_tools: None,
                    baseline_support_level: 0,
                    etag: String::new(),
                },
            ))
            .await
            .expect("set domain policy");
    }

    // ---- notification ----

    pub async fn send_notice(
        &self,
        site_id: &str,
        kind: Kind,
        params: &[(&str, &str)],
        key: &str,
    ) -> Result<pb::SendNoticeResponse, Status> {
        self.notifications()
            .send_notice(self.svc(send_notice_request(site_id, kind, params, key)))
            .await
            .map(|r| r.into_inner())
    }

    pub async fn get(&self, notification_id: &str) -> pb::Notification {
        self.notifications()
            .get_notification(self.svc(pb::GetNotificationRequest {
                notification_id: notification_id.into(),
            }))
            .await
            .expect("get notification")
            .into_inner()
            .notification
            .expect("notification")
    }

    /// Every notification matching the filters (all pages), newest first.
    pub async fn list(
        &self,
        site_id: &str,
        recipient: Option<Uuid>,
        state: State,
    ) -> Vec<pb::Notification> {
        let mut notifications = Vec::new();
        let mut token = String::new();
        loop {
            let page = self
                .notifications()
                .list_notifications(self.svc(pb::ListNotificationsRequest {
                    site_id: site_id.into(),
                    recipient_user_id: recipient.map(|id| id.to_string()).unwrap_or_default(),
                    state: state as i32,
                    page_size: 1000,
                    page_token: token,
                }))
                .await
                .expect("list notifications")
                .into_inner();
            notifications.extend(page.notifications);
            if page.next_page_token.is_empty() {
                return notifications;
            }
            token = page.next_page_token;
        }
    }

    /// Every notification of every site and recipient.
    pub async fn all(&self) -> Vec<pb::Notification> {
        self.list("", None, State::Unspecified).await
    }

    /// Polls the notifications of `recipient` (on `site_id`, every site when empty) until
    /// one of `kind` is DELIVERED, and returns it.
    pub async fn delivered(
        &self,
        site_id: &str,
        recipient: &TestUser,
        kind: Kind,
    ) -> pb::Notification {
        eventually(
            &format!(
                "a {kind:?} to {} on site {site_id:?} is delivered",
                recipient.name
            ),
            || async move {
                let found = self
                    .list(site_id, Some(recipient.id), State::Unspecified)
                    .await;
                found
                    .iter()
                    .find(|n| n.kind == kind as i32 && n.state == State::Delivered as i32)
                    .cloned()
                    .ok_or_else(|| format!("{:#?}", brief(&found)))
            },
        )
        .await
    }

    /// Polls until the notification reaches `state`, and returns it.
    pub async fn wait_state(&self, notification_id: &str, state: State) -> pb::Notification {
        eventually(
            &format!("notification {notification_id} is {state:?}"),
            || async move {
                let notification = self.get(notification_id).await;
                if notification.state == state as i32 {
                    Ok(notification)
                } else {
                    Err(format!("{notification:#?}"))
                }
            },
        )
        .await
    }

    /// Polls until every notification is DELIVERED (none pending, sending, failed or dead),
    /// and returns them all.
    pub async fn all_delivered(&self) -> Vec<pb::Notification> {
        eventually("every notification is delivered", || async move {
            let all = self.all().await;
            let open: Vec<_> = all
                .iter()
                .filter(|n| n.state != State::Delivered as i32)
                .collect();
            if open.is_empty() {
                Ok(all)
            } else {
                Err(format!("{:#?}", brief_refs(&open)))
            }
        })
        .await
    }

    /// The one message the SMTP server received for `notification` (it must have been
    /// received exactly once).
    pub async fn mail_of(&self, notification: &pb::Notification) -> ReceivedMessage {
        let id = &notification.notification_id;
        let messages = self
            .smtp
            .wait_for(&format!("notification {id} is received"), PATIENCE, |m| {
                m.iter()
                    .any(|m| m.header("X-Keycontacts-Notification-Id") == Some(id))
            })
            .await;
        let copies: Vec<ReceivedMessage> = messages
            .into_iter()
            .filter(|m| m.header("X-Keycontacts-Notification-Id") == Some(id))
            .collect();
        assert_eq!(
            copies.len(),
            1,
            "notification {id} received exactly once: {copies:#?}"
        );
        copies.into_iter().next().expect("one copy")
    }

    /// Waits for the DELIVERED notification of `kind` to `recipient` on the site, checks the
    /// message the SMTP server received for it (address, language, headers, both parts) and
    /// returns both.
    pub async fn notice(
        &self,
        site_id: &str,
        recipient: &TestUser,
        kind: Kind,
        email: &str,
        locale: &str,
    ) -> (pb::Notification, ReceivedMessage) {
        let notification = self.delivered(site_id, recipient, kind).await;
        assert_eq!(notification.site_id, site_id, "{notification:#?}");
        assert_eq!(notification.recipient_user_id, recipient.id.to_string());
        let message = self.mail_of(&notification).await;
        check_mail(&notification, &message, email, locale);
        self.assert_language(kind, locale, &message).await;
        (notification, message)
    }

    /// Every notification to the address `email` (any site, recipient and state).
    pub async fn to_address(&self, email: &str) -> Vec<pb::Notification> {
        self.all()
            .await
            .into_iter()
            .filter(|n| n.email == email)
            .collect()
    }

    /// Polls until a notification of `kind` to the address `email` is DELIVERED, checks the
    /// message the SMTP server received for it (address, language, headers, both parts, the
    /// kind's templates in `locale`) and returns both. For identity's mails, which go to an
    /// address rather than a site's contact.
    pub async fn mail_to(
        &self,
        email: &str,
        kind: Kind,
        locale: &str,
    ) -> (pb::Notification, ReceivedMessage) {
        let notification = eventually(
            &format!("a {kind:?} to {email} is delivered"),
            || async move {
                let found = self.to_address(email).await;
                found
                    .iter()
                    .find(|n| n.kind == kind as i32 && n.state == State::Delivered as i32)
                    .cloned()
                    .ok_or_else(|| format!("{:#?}", brief(&found)))
            },
        )
        .await;
        assert_eq!(
            notification.site_id, "",
            "identity's mails are about no site"
        );
        let message = self.mail_of(&notification).await;
        check_mail(&notification, &message, email, locale);
        self.assert_language(kind, locale, &message).await;
        (notification, message)
    }

    /// Renders a preview.
    pub async fn preview(
        &self,
        kind: Kind,
        locale: &str,
        params: &[(&str, &str)],
    ) -> pb::RenderPreviewResponse {
        self.notifications()
            .render_preview(self.svc(pb::RenderPreviewRequest {
                kind: kind as i32,
                locale: locale.into(),
                params: to_map(params).into_iter().collect(),
            }))
            .await
            .expect("render preview")
            .into_inner()
    }

    /// Asserts `message` is written with `locale`'s templates of `kind` (see
    /// [`assert_language`]).
    pub async fn assert_language(&self, kind: Kind, locale: &str, message: &ReceivedMessage) {
        assert_language(
            &mut self.notifications(),
            &self.gateway_token,
            kind,
            locale,
            message,
        )
        .await;
    }

    /// Reads notification's event stream from the start until `pick` finds something.
    pub async fn find_event<T>(&self, mut pick: impl FnMut(&pb::Event) -> Option<T>) -> T {
        let mut stream = self
            .notifications()
            .watch_events(self.svc(pb::WatchEventsRequest::default()))
            .await
            .expect("watch notification events")
            .into_inner();
        tokio::time::timeout(PATIENCE, async {
            while let Some(item) = stream.next().await {
                let event = item.expect("notification event").event.expect("event body");
                if let Some(found) = pick(&event) {
                    return found;
                }
            }
            panic!("notification event stream ended");
        })
        .await
        .unwrap_or_else(|_| panic!("the notification event arrives within {PATIENCE:?}"))
    }

    /// Asserts every notification was received exactly once (counted per Message-ID and per
    /// notification id), and that the SMTP server received nothing else.
    pub fn assert_each_received_once(&self, notifications: &[pb::Notification]) {
        let messages = self.smtp.messages();
        let mut per_id: HashMap<&str, usize> = HashMap::new();
        for message in &messages {
            *per_id.entry(message.message_id.as_str()).or_default() += 1;
        }
        for notification in notifications {
            let message_id = message_id_of(&notification.notification_id);
            assert_eq!(
                per_id.get(message_id.as_str()).copied().unwrap_or(0),
                1,
                "{message_id} ({:?} to {}) received exactly once",
                Kind::try_from(notification.kind),
                notification.email
            );
        }
        assert_eq!(
            messages.len(),
            notifications.len(),
            "the SMTP server received one message per notification and nothing else"
        );
    }
}

async fn start_contacts(args: &ContactsArgs, addr: SocketAddr) -> Restartable {
    let args = args.clone();
    Restartable::start(addr, move |listener, shutdown| {
        kc_contacts::run(args, listener, shutdown)
    })
    .await
}

async fn start_notification(args: &NotificationArgs, addr: SocketAddr) -> Restartable {
    let args = args.clone();
    Restartable::start(addr, move |listener, shutdown| {
        kc_notification::run(args, listener, shutdown)
    })
    .await
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
        Kind::DomainPolicyChanged => vec!["domain", "mode"],
        Kind::ContactRoleAssigned | Kind::ContactRoleRemoved => vec!["contact_name", "role"],
        Kind::PrimaryTransferred => vec!["previous_name", "new_name"],
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

/// A valid CreateSite request without S&S.
pub fn site_request(
    site_number: &str,
    customer_number: &str,
    primary: Uuid,
    language: &str,
) -> cpb::CreateSiteRequest {
    cpb::CreateSiteRequest {
        site_number: site_number.into(),
        customer_number: customer_number.into(),
        name: format!("Site {site_number}"),
        country_code: "FR".into(),
        language: language.into(),
        program: cpb::Program::PassportAdvantage as i32,
        support_active: false,
        support_end_date: String::new(),
        business_partner_email: String::new(),
        primary_user_id: primary.to_string(),
        site_technical_user_id: String::new(),
        primary_details: None,
        site_technical_details: None,
    }
}

/// A request carrying `token` as bearer.
pub fn authed<T>(token: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

/// `request` with the on-behalf-of metadata naming `user`.
pub fn on_behalf_of<T>(mut request: Request<T>, user: Uuid) -> Request<T> {
    request
        .metadata_mut()
        .insert(ON_BEHALF_OF_HEADER, user.to_string().parse().unwrap());
    request
}

pub fn uuid(text: &str) -> Uuid {
    Uuid::parse_str(text).unwrap_or_else(|_| panic!("a uuid: {text:?}"))
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

/// Asserts a status code and returns the status for further checks.
#[track_caller]
pub fn expect_code<T: std::fmt::Debug>(result: Result<T, Status>, code: Code) -> Status {
    match result {
        Ok(value) => panic!("expected {code:?}, got Ok({value:?})"),
        Err(status) => {
            assert_eq!(status.code(), code, "unexpected status: {status:?}");
            status
        }
    }
}

/// Asserts `InvalidArgument` with a field violation on `field`.
#[track_caller]
pub fn expect_field<T: std::fmt::Debug>(result: Result<T, Status>, field: &str) -> Status {
    let status = expect_code(result, Code::InvalidArgument);
    let violations = kc_runtime::error::field_violations(&status);
    assert!(
        violations
            .iter()
            .any(|v| v.field == field || v.field.starts_with(&format!("{field}."))),
        "expected a violation on {field}, got {violations:?} ({status:?})"
    );
    status
}

/// Runs every future on its own task, all at once (they start together at a barrier), and
/// returns their results in order.
pub async fn all_at_once<T, F>(futures: Vec<F>) -> Vec<T>
where
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
{
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(futures.len()));
    let handles: Vec<_> = futures
        .into_iter()
        .map(|future| {
            let barrier = std::sync::Arc::clone(&barrier);
            tokio::spawn(async move {
                barrier.wait().await;
                future.await
            })
        })
        .collect();
    let mut results = Vec::with_capacity(handles.len());
    for handle in handles {
        results.push(
            tokio::time::timeout(PATIENCE, handle)
                .await
                .expect("task finishes in time")
                .expect("task does not panic"),
        );
    }
    results
}
