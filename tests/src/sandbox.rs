//! The sandbox: the services a test asks for, on one database, each under its own shutdown
//! signal so that a test can stop one and start it again on the same port.
//!
//! Identity always runs (every caller needs its tokens); the others run when asked, wired to
//! each other as in production: each calls the services it depends on with a service account
//! made through identity's domain, the contact registry and access management follow each
//! other's events (rule T8; access management's listener is bound first so that the
//! registry can be given its address), and notification delivers to an SMTP server
//! (aiosmtpd, `kc_testkit::smtp`) started with it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use futures::future::BoxFuture;
use kc_access::config::AccessArgs;
use kc_contacts::config::ContactsArgs;
use kc_gateway::config::GatewayArgs;
use kc_identity::config::IdentityArgs;
use kc_identity::domain::Identity;
use kc_identity::domain::values::{Email, Password, Scopes};
use kc_notification::config::NotificationArgs;
use kc_proto::access::access_management_service_client::AccessManagementServiceClient;
use kc_proto::contacts::contact_registry_service_client::ContactRegistryServiceClient;
use kc_proto::gateway::gateway_service_client::GatewayServiceClient;
use kc_proto::gateway::{self as gw};
use kc_proto::identity::identity_service_client::IdentityServiceClient;
use kc_proto::identity::{self as ipb};
use kc_proto::notification::notification_service_client::NotificationServiceClient;
use kc_runtime::Shutdown;
use kc_runtime::cli::ParseArgs;
use kc_testkit::codes::CodeReader;
use kc_testkit::grpc::{authed, on_behalf_of};
use kc_testkit::secrets::{contacts_key_args, identity_key_args, notification_key_args};
use kc_testkit::smtp::SmtpServer;
use kc_testkit::{Restartable, TestDatabase, ready_channel, test_database};
use tokio::net::TcpListener;
use tonic::Request;
use tonic::transport::Channel;
use uuid::Uuid;

use crate::fixtures::{FAST_HASHING, NO_DRAIN, OPERATOR_EMAIL, PASSWORD, PATIENT_DEADLINE, Person};

/// One service of the suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Service {
    /// `kc-identity`.
    Identity,
    /// `kc-contacts`, the contact registry.
    Contacts,
    /// `kc-access`, access management.
    Access,
    /// `kc-notification`.
    Notification,
    /// `kc-gateway`, the public API.
    Gateway,
}

impl Service {
    /// The binary's name, also the name of its service account.
    pub fn binary(self) -> &'static str {
        match self {
            Self::Identity => "kc-identity",
            Self::Contacts => "kc-contacts",
            Self::Access => "kc-access",
            Self::Notification => "kc-notification",
            Self::Gateway => "kc-gateway",
        }
    }
}

/// Serves a service on a listener until its shutdown signal.
type Serve =
    Arc<dyn Fn(TcpListener, Shutdown) -> BoxFuture<'static, anyhow::Result<()>> + Send + Sync>;

/// A running service and how to start it again.
struct Running {
    server: Restartable,
    serve: Serve,
    channel: Channel,
}

/// What [`Sandbox::builder`] starts.
#[derive(Debug, Clone)]
pub struct SandboxBuilder {
    services: BTreeSet<Service>,
    flags: BTreeMap<Service, Vec<String>>,
    registry_follows_access: bool,
    service_caller: bool,
}

impl SandboxBuilder {
    /// Runs `service` too (identity always runs).
    pub fn with(mut self, service: Service) -> Self {
        self.services.insert(service);
        self
    }

    /// More command-line flags for `service` (after the sandbox's own: later ones win).
    pub fn flags(mut self, service: Service, flags: &[&str]) -> Self {
        self.flags
            .entry(service)
            .or_default()
            .extend(flags.iter().map(|flag| (*flag).to_owned()));
        self
    }

    /// The registry does not follow access management's events (no `--access-url`, no
    /// service account): the registry of access management's own tests.
    pub fn registry_without_access_feed(mut self) -> Self {
        self.registry_follows_access = false;
        self
    }

    /// Creates a "kc-gateway" service account for the tests to call the internal services
    /// as the gateway does ([`Sandbox::svc`], [`Sandbox::as_user`]).
    pub fn service_caller(mut self) -> Self {
        self.service_caller = true;
        self
    }

    /// Starts the services, bootstraps the operator and signs it in (through the gateway
    /// when it runs, else at identity).
    pub async fn start(self) -> Sandbox {
        let has = |service| self.services.contains(&service);
        let flags = |service| self.flags.get(&service).cloned().unwrap_or_default();
        let smtp = if has(Service::Notification) {
            Some(SmtpServer::start().await)
        } else {
            None
        };
        let db = test_database().await;
        let mut running = BTreeMap::new();

        let mut argv: Vec<String> = vec![
            "kc-identity".into(),
            "--database-url".into(),
            db.url.clone(),
        ];
        argv.extend(strings(&FAST_HASHING));
        argv.extend(strings(&NO_DRAIN));
        argv.extend(identity_key_args());
        argv.extend(flags(Service::Identity));
        let identity_args =
            IdentityArgs::parse_from(argv.clone()).expect("identity arguments parse");
        running.insert(
            Service::Identity,
            Running::bind(serve(Service::Identity, argv)).await,
        );
        let identity_domain = kc_identity::build(&identity_args)
            .await
            .expect("identity domain")
            .1;
        let identity_url = running[&Service::Identity].server.url();
        let account = async |service: Service| {
            let (id, secret) = identity_domain
                .create_service_account(service.binary())
                .await
                .expect("service account");
            vec![
                "--client-id".to_owned(),
                id.to_string(),
                "--client-secret".to_owned(),
                secret,
            ]
        };

        // Access management's port is taken first: the registry follows its events (T8).
        let access_listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let access_url = format!("http://{}", access_listener.local_addr().expect("address"));
        // So is notification's: the registry follows its delivery outcomes (compliance).
        let notification_listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let notification_url = format!(
            "http://{}",
            notification_listener.local_addr().expect("address")
        );

        if has(Service::Contacts) {
            let mut argv = base_args(Service::Contacts, &db, &identity_url);
            if has(Service::Access) && self.registry_follows_access {
                argv.extend(["--access-url".to_owned(), access_url.clone()]);
                argv.extend(account(Service::Contacts).await);
                if smtp.is_some() {
                    argv.extend(["--notification-url".to_owned(), notification_url.clone()]);
                }
            }
            argv.extend(contacts_key_args());
            argv.extend(flags(Service::Contacts));
            running.insert(
                Service::Contacts,
                Running::bind(serve(Service::Contacts, argv)).await,
            );
        }
        let url_of = |running: &BTreeMap<Service, Running>, service| {
            running
                .get(&service)
                .map(|running: &Running| running.server.url())
        };
        let urls = |running: &BTreeMap<Service, Running>, services: &[(Service, &str)]| {
            let mut argv = Vec::new();
            for (service, flag) in services {
                if let Some(url) = url_of(running, *service) {
                    argv.extend([(*flag).to_owned(), url]);
                }
            }
            argv
        };

        if has(Service::Access) {
            let mut argv = base_args(Service::Access, &db, &identity_url);
            argv.extend(urls(&running, &[(Service::Contacts, "--contacts-url")]));
            argv.extend(account(Service::Access).await);
            argv.extend(flags(Service::Access));
            let args = AccessArgs::parse_from(argv).expect("access arguments parse");
            let serve: Serve = Arc::new(move |listener, shutdown| {
                Box::pin(kc_access::run(args.clone(), listener, shutdown))
            });
            running.insert(
                Service::Access,
                Running::serve(access_listener, serve).await,
            );
        } else {
            drop(access_listener);
        }

        if let Some(smtp) = &smtp {
            let mut argv = base_args(Service::Notification, &db, &identity_url);
            argv.extend(urls(
                &running,
                &[
                    (Service::Contacts, "--contacts-url"),
                    (Service::Access, "--access-url"),
                ],
            ));
            argv.extend(account(Service::Notification).await);
            argv.extend(["--smtp-url".to_owned(), smtp.url()]);
            argv.extend(notification_key_args());
            argv.extend(flags(Service::Notification));
            running.insert(
                Service::Notification,
                Running::serve(notification_listener, serve(Service::Notification, argv)).await,
            );
        } else {
            drop(notification_listener);
        }

        let mut gateway_args = None;
        if has(Service::Gateway) {
            let mut argv = vec!["kc-gateway".to_owned()];
            argv.extend(urls(
                &running,
                &[
                    (Service::Identity, "--identity-url"),
                    (Service::Contacts, "--contacts-url"),
                    (Service::Access, "--access-url"),
                    (Service::Notification, "--notification-url"),
                ],
            ));
            argv.extend(account(Service::Gateway).await);
            argv.extend(strings(&NO_DRAIN));
            argv.extend(strings(&PATIENT_DEADLINE));
            argv.extend(flags(Service::Gateway));
            gateway_args =
                Some(GatewayArgs::parse_from(argv.clone()).expect("gateway arguments parse"));
            running.insert(
                Service::Gateway,
                Running::bind(serve(Service::Gateway, argv)).await,
            );
        }

        // The operator is bootstrapped the way `kc-identity bootstrap-operator` does it.
        identity_domain
            .bootstrap_operator(
                &Email::parse("email", OPERATOR_EMAIL).expect("email"),
                &Password::parse("password", PASSWORD).expect("password"),
            )
            .await
            .expect("bootstrap operator");
        let operator = match running.get(&Service::Gateway) {
            Some(gateway) => login(&gateway.channel, OPERATOR_EMAIL).await,
            None => {
                let response =
                    IdentityServiceClient::new(running[&Service::Identity].channel.clone())
                        .authenticate(ipb::AuthenticateRequest {
                            email: OPERATOR_EMAIL.into(),
                            password: PASSWORD.into(),
                        })
                        .await
                        .expect("operator login")
                        .into_inner();
                let user = response.user.expect("the signed-in operator");
                Person {
                    id: user.user_id,
                    email: user.email,
                    name: user.display_name,
                    token: response.access_token,
                }
            }
        };

        let mut sandbox = Sandbox {
            db,
            smtp,
            identity_args,
            gateway_args,
            identity_domain,
            operator,
            service_caller: None,
            running,
            numbers: AtomicU32::new(0),
        };
        if self.service_caller {
            sandbox.service_caller = Some(sandbox.service_account(Service::Gateway.binary()).await);
        }
        sandbox
    }
}

/// Services of the suite on one database; see the [module](self).
pub struct Sandbox {
    /// The database every service uses, each in its own schema.
    pub db: TestDatabase,
    /// Where notification delivers mail (when it runs).
    pub smtp: Option<SmtpServer>,
    /// Identity's arguments.
    pub identity_args: IdentityArgs,
    /// The gateway's arguments (when it runs).
    pub gateway_args: Option<GatewayArgs>,
    /// Identity's domain on the same database (operator bootstrap, service accounts).
    pub identity_domain: Identity,
    /// The operator, signed in.
    pub operator: Person,
    /// A "kc-gateway" service account and its token (see [`SandboxBuilder::service_caller`]).
    pub service_caller: Option<(Uuid, String)>,
    running: BTreeMap<Service, Running>,
    numbers: AtomicU32,
}

impl Sandbox {
    /// What to start: identity, and what [`SandboxBuilder::with`] adds.
    pub fn builder() -> SandboxBuilder {
        SandboxBuilder {
            services: BTreeSet::from([Service::Identity]),
            flags: BTreeMap::new(),
            registry_follows_access: true,
            service_caller: false,
        }
    }

    fn running(&self, service: Service) -> &Running {
        self.running
            .get(&service)
            .unwrap_or_else(|| panic!("{service:?} does not run in this sandbox"))
    }

    /// The SMTP server notification delivers to.
    pub fn smtp(&self) -> &SmtpServer {
        self.smtp
            .as_ref()
            .expect("notification runs in this sandbox")
    }

    /// The SMTP server, to stop and restart it.
    pub fn smtp_mut(&mut self) -> &mut SmtpServer {
        self.smtp
            .as_mut()
            .expect("notification runs in this sandbox")
    }

    /// Where `service` listens.
    pub fn addr(&self, service: Service) -> SocketAddr {
        self.running(service).server.addr
    }

    /// `http://127.0.0.1:PORT` of `service`.
    pub fn url(&self, service: Service) -> String {
        self.running(service).server.url()
    }

    /// A channel to `service` (it reconnects after a restart).
    pub fn channel(&self, service: Service) -> Channel {
        self.running(service).channel.clone()
    }

    /// Stops `service` (its port is closed until [`Sandbox::restart`]).
    pub async fn stop(&mut self, service: Service) {
        self.running
            .get_mut(&service)
            .unwrap_or_else(|| panic!("{service:?} does not run in this sandbox"))
            .server
            .stop()
            .await;
    }

    /// Starts `service` again on the same port, with the same arguments.
    pub async fn restart(&mut self, service: Service) {
        let running = self
            .running
            .get_mut(&service)
            .unwrap_or_else(|| panic!("{service:?} does not run in this sandbox"));
        let serve = Arc::clone(&running.serve);
        running.server = Restartable::start(running.server.addr, move |listener, shutdown| {
            serve(listener, shutdown)
        })
        .await;
    }

    /// Starts one more instance of `service` (not identity) on a new port, with `argv`
    /// (the binary's name first); the caller keeps it running as long as it holds it.
    pub async fn another(service: Service, argv: Vec<String>) -> (Restartable, Channel) {
        assert_ne!(service, Service::Identity, "one identity per sandbox");
        let running = Running::bind(serve(service, argv)).await;
        (running.server, running.channel)
    }

    /// A fresh (site number, customer number) pair: `site_base + n`, `customer_base + n`.
    pub fn numbers_from(&self, site_base: u32, customer_base: u32) -> (String, String) {
        let n = self.numbers.fetch_add(1, Ordering::Relaxed);
        ((site_base + n).to_string(), (customer_base + n).to_string())
    }

    /// A service account created through identity's domain and its service token (issued
    /// by identity, as `kc_runtime::client::ServiceToken` gets it). It holds no scope: see
    /// [`Self::scoped_service_account`].
    pub async fn service_account(&self, name: &str) -> (Uuid, String) {
        self.scoped_service_account(name, &[]).await
    }

    /// A service account holding `scopes` (e.g. `["notices"]`, which the gateway's
    /// SendNotice needs), as `kc-identity create-service-account NAME --scope …` makes it,
    /// and its service token.
    pub async fn scoped_service_account(&self, name: &str, scopes: &[&str]) -> (Uuid, String) {
        let (client_id, client_secret) = self.service_account_credentials(name, scopes).await;
        let token = kc_testkit::identity::service_token(
            &self.channel(Service::Identity),
            &client_id.to_string(),
            &client_secret,
        )
        .await;
        (client_id, token)
    }

    /// A service account holding `scopes`, as `kc-identity create-service-account --scope`
    /// makes it: its client id and secret, for a test that signs in the way a relying
    /// application does.
    pub async fn service_account_credentials(&self, name: &str, scopes: &[&str]) -> (Uuid, String) {
        let scopes = Scopes::parse("scope", scopes).expect("known scopes");
        self.identity_domain
            .create_scoped_service_account(name, &scopes)
            .await
            .expect("service account")
    }

    // ---- clients and requests ----

    /// A client of identity.
    pub fn identity(&self) -> IdentityServiceClient<Channel> {
        IdentityServiceClient::new(self.channel(Service::Identity))
    }

    /// A client of the contact registry.
    pub fn registry(&self) -> ContactRegistryServiceClient<Channel> {
        ContactRegistryServiceClient::new(self.channel(Service::Contacts))
    }

    /// A client of access management.
    pub fn access(&self) -> AccessManagementServiceClient<Channel> {
        AccessManagementServiceClient::new(self.channel(Service::Access))
    }

    /// A client of notification.
    pub fn notifications(&self) -> NotificationServiceClient<Channel> {
        NotificationServiceClient::new(self.channel(Service::Notification))
    }

    /// A client of the gateway.
    pub fn gw(&self) -> GatewayServiceClient<Channel> {
        GatewayServiceClient::new(self.channel(Service::Gateway))
    }

    /// The token of the "kc-gateway" service account.
    pub fn caller_token(&self) -> &str {
        &self
            .service_caller
            .as_ref()
            .expect("the sandbox was built with a service caller")
            .1
    }

    /// A request from the gateway service account, acting for nobody.
    pub fn svc<T>(&self, message: T) -> Request<T> {
        authed(self.caller_token(), message)
    }

    /// A request from the gateway service account acting for `user`.
    pub fn as_user<T>(&self, user: Uuid, message: T) -> Request<T> {
        on_behalf_of(authed(self.caller_token(), message), user)
    }

    /// A request from the operator.
    pub fn op<T>(&self, message: T) -> Request<T> {
        authed(&self.operator.token, message)
    }

    /// A reader of the codes identity mails, from the start of its stream, as the operator.
    pub fn code_reader(&self) -> CodeReader {
        CodeReader::new(self.channel(Service::Identity), self.operator.token.clone())
    }

    /// Identity's `VerifyEmail` with `code`; the proven user.
    pub async fn verify_email(&self, email: &str, code: &str, password: &str) -> ipb::User {
        self.verify_email_revised(email, code, password).await.0
    }

    /// Identity's `VerifyEmail` with `code`; the proven user and the proof's revision (for
    /// access management's `AwaitIdentityRevision`).
    pub async fn verify_email_revised(
        &self,
        email: &str,
        code: &str,
        password: &str,
    ) -> (ipb::User, String) {
        let response = self
            .identity()
            .verify_email(ipb::VerifyEmailRequest {
                email: email.into(),
                code: code.into(),
                password: password.into(),
            })
            .await
            .unwrap_or_else(|status| panic!("verify {email}: {status:?}"))
            .into_inner();
        (response.user.expect("user"), response.revision)
    }

    /// Signs `email` in at identity with [`PASSWORD`]: the access token.
    pub async fn customer_token(&self, email: &str) -> String {
        kc_testkit::identity::sign_in(&self.channel(Service::Identity), email, PASSWORD).await
    }
}

impl Running {
    /// Serves on a new port of `127.0.0.1`.
    async fn bind(serve: Serve) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        Self::serve(listener, serve).await
    }

    /// Serves on `listener`, bound beforehand.
    async fn serve(listener: TcpListener, serve: Serve) -> Self {
        let start = Arc::clone(&serve);
        let server = Restartable::serve(listener, move |listener, shutdown| {
            start(listener, shutdown)
        })
        .await;
        let channel = ready_channel(&server.url()).await;
        Self {
            server,
            serve,
            channel,
        }
    }
}

/// Signs in through the gateway at `channel`.
pub async fn login(channel: &Channel, email: &str) -> Person {
    let response = GatewayServiceClient::new(channel.clone())
        .login(gw::LoginRequest {
            email: email.into(),
            password: PASSWORD.into(),
        })
        .await
        .unwrap_or_else(|status| panic!("login {email}: {status:?}"))
        .into_inner();
    let user = response.user.expect("the signed-in user");
    Person {
        id: user.user_id,
        email: user.email,
        name: user.display_name,
        token: response.access_token,
    }
}

/// The first arguments of a data service: its name, the database, identity, no drain.
fn base_args(service: Service, db: &TestDatabase, identity_url: &str) -> Vec<String> {
    let mut argv = vec![
        service.binary().to_owned(),
        "--database-url".to_owned(),
        db.url.clone(),
        "--identity-url".to_owned(),
        identity_url.to_owned(),
    ];
    argv.extend(strings(&NO_DRAIN));
    argv
}

/// Serves `service` with the command line `argv` (the binary's name first).
fn serve(service: Service, argv: Vec<String>) -> Serve {
    match service {
        Service::Identity => {
            let args = IdentityArgs::parse_from(argv).expect("identity arguments parse");
            Arc::new(move |l, s| Box::pin(kc_identity::run(args.clone(), l, s)))
        }
        Service::Contacts => {
            let args = ContactsArgs::parse_from(argv).expect("contacts arguments parse");
            Arc::new(move |l, s| Box::pin(kc_contacts::run(args.clone(), l, s)))
        }
        Service::Access => {
            let args = AccessArgs::parse_from(argv).expect("access arguments parse");
            Arc::new(move |l, s| Box::pin(kc_access::run(args.clone(), l, s)))
        }
        Service::Notification => {
            let args = NotificationArgs::parse_from(argv).expect("notification arguments parse");
            args.validate().expect("notification arguments are valid");
            Arc::new(move |l, s| Box::pin(kc_notification::run(args.clone(), l, s)))
        }
        Service::Gateway => {
            let args = GatewayArgs::parse_from(argv).expect("gateway arguments parse");
            Arc::new(move |l, s| Box::pin(kc_gateway::run(args.clone(), l, s)))
        }
    }
}

fn strings(flags: &[&str]) -> Vec<String> {
    flags.iter().map(|flag| (*flag).to_owned()).collect()
}
