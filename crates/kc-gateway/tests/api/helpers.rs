//! Harness of the gateway tests: ONE real Postgres database and the five real services
//! in-process on `127.0.0.1`, each in its own schema: identity (cheap argon2, the test
//! key-encryption key, codes sealed to notification's test key), the contact registry,
//! access management and notification (opening the codes, delivering to a real SMTP server,
//! aiosmtpd), the last three and the gateway with service accounts made through identity's
//! domain. The registry and access management follow each other's events (T8).
//!
//! Every service runs under its own shutdown signal, so a test can stop one and start it
//! again on the same port (the fault tests). The tests call ONLY the gateway, as people do:
//! they register, prove their address with the mailed code (rule I1) and sign in through its
//! session RPCs, and send their access token. Codes are read as notification reads them
//! ([`kc_testkit::codes::CodeReader`]) or from the real mail ([`Suite::mail`], [`code_in`]).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};

use kc_access::config::AccessArgs;
use kc_contacts::config::ContactsArgs;
use kc_gateway::config::GatewayArgs;
use kc_identity::config::IdentityArgs;
use kc_identity::domain::Identity;
use kc_identity::domain::values::{Email, Password};
use kc_notification::config::NotificationArgs;
use kc_proto::access::{self as apb};
use kc_proto::contacts::{self as cpb};
use kc_proto::gateway::gateway_service_client::GatewayServiceClient;
use kc_proto::gateway::{self as gw};
use kc_proto::identity::identity_service_client::IdentityServiceClient;
use kc_proto::identity::{self as ipb};
use kc_testkit::codes::{CodeReader, MailedCode};
use kc_testkit::secrets::{identity_key_args, notification_key_args};
use kc_testkit::smtp::{ReceivedMessage, SmtpServer};
use kc_testkit::{Restartable, ready_channel, test_database};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use uuid::Uuid;

pub use kc_testkit::checks::{PATIENCE, cites, eventually};

pub use cpb::ContactRole as Role;

pub const OPERATOR_EMAIL: &str = "operator@keycontacts.test";
pub const PASSWORD: &str = "correct horse battery staple";

/// Cheap argon2 parameters: the tests exercise the logic, not the cost.
pub const FAST_HASHING: [&str; 4] = ["--argon2-memory-kib", "256", "--argon2-iterations", "1"];
/// The gateway's per-caller write limits, which [`Suite::start_with`] turns off unless told.
pub const WRITE_LIMITS: [&str; 2] = ["--access-request-rate-limit", "--write-rate-limit"];
/// A service stops at once when told (no drain), as a crash looks to its callers.
pub const NO_DRAIN: [&str; 4] = ["--shutdown-delay", "0s", "--shutdown-grace", "0s"];

pub type Gateway = GatewayServiceClient<Channel>;

/// The gateway's full method path of `rpc`.
pub fn method_path(rpc: &str) -> String {
    format!("/{}/{rpc}", kc_gateway::SERVICE_NAME)
}

/// One of the four internal services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Internal {
    Identity,
    Contacts,
    Access,
    Notification,
}

/// A person signed in through the gateway.
#[derive(Debug, Clone)]
pub struct Person {
    pub id: String,
    pub email: String,
    pub name: String,
    pub token: String,
}

pub struct Suite {
    /// Where notification delivers mail.
    pub smtp: SmtpServer,
    pub identity: Restartable,
    pub contacts: Restartable,
    pub access: Restartable,
    pub notification: Restartable,
    pub gateway: Restartable,
    pub identity_args: IdentityArgs,
    pub contacts_args: ContactsArgs,
    pub access_args: AccessArgs,
    pub notification_args: NotificationArgs,
    pub gateway_args: GatewayArgs,
    /// Identity's domain on the same database (operator bootstrap, service accounts).
    pub identity_domain: Identity,
    pub gateway_channel: Channel,
    pub operator: Person,
    numbers: AtomicU32,
}

impl Suite {
    /// The suite with the gateway's session rate limit off (the tests sign in many people
    /// from one address).
    pub async fn start() -> Self {
        Self::start_with(&["--session-rate-limit", "off"]).await
    }

    /// Starts the suite; `gateway_extra` are more flags for the gateway. The per-caller
    /// write limits are off unless `gateway_extra` sets them (fixtures write a lot as one
    /// operator).
    pub async fn start_with(gateway_extra: &[&str]) -> Self {
        let smtp = SmtpServer::start().await;
        let db = test_database().await;
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();

        // Identity, then its domain for the operator and the service accounts.
        let key_args = identity_key_args();
        let mut argv = vec!["kc-identity", "--database-url", &db.url];
        argv.extend(FAST_HASHING);
        argv.extend(NO_DRAIN);
        argv.extend(key_args.iter().map(String::as_str));
        // Every request that mails a code mails it at once (the outstanding code again when
        // there is one), so that a test sees one mail per request.
        argv.extend(["--code-mail-interval", "0s"]);
        let identity_args = IdentityArgs::parse_from(argv).expect("identity arguments parse");
        let identity = start_identity(&identity_args, any).await;
        let identity_domain = kc_identity::build(&identity_args)
            .await
            .expect("identity domain")
            .1;

        // The registry and access management each follow the other's events (T8), so each
        // needs the other's URL: access management's port is taken first and access starts
        // on it after the registry (the registry's channel to it is lazy and its consumer
        // retries until access serves).
        let access_addr = free_addr();
        let (contacts_id, contacts_secret) = identity_domain
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
            contacts_id.to_string(),
            "--client-secret".to_owned(),
            contacts_secret,
        ];
        argv.extend(NO_DRAIN.map(str::to_owned));
        argv.extend(kc_testkit::secrets::contacts_key_args());
        let contacts_args = ContactsArgs::parse_from(argv).expect("contacts arguments");
        let contacts = start_contacts(&contacts_args, any).await;

        let (access_id, access_secret) = identity_domain
            .create_service_account("kc-access")
            .await
            .expect("access service account");
        let mut argv = vec![
            "kc-access".to_owned(),
            "--database-url".to_owned(),
            db.url.clone(),
            "--identity-url".to_owned(),
            identity.url(),
            "--contacts-url".to_owned(),
            contacts.url(),
            "--client-id".to_owned(),
            access_id.to_string(),
            "--client-secret".to_owned(),
            access_secret,
        ];
        argv.extend(NO_DRAIN.map(str::to_owned));
        let access_args = AccessArgs::parse_from(argv).expect("access arguments parse");
        let access = start_access(&access_args, access_addr).await;

        let (notification_id, notification_secret) = identity_domain
            .create_service_account("kc-notification")
            .await
            .expect("notification service account");
        let mut argv = vec![
            "kc-notification".to_owned(),
            "--database-url".to_owned(),
            db.url.clone(),
            "--identity-url".to_owned(),
            identity.url(),
            "--contacts-url".to_owned(),
            contacts.url(),
            "--access-url".to_owned(),
            access.url(),
            "--client-id".to_owned(),
            notification_id.to_string(),
            "--client-secret".to_owned(),
            notification_secret,
            "--smtp-url".to_owned(),
            smtp.url(),
        ];
        argv.extend(NO_DRAIN.map(str::to_owned));
        argv.extend(notification_key_args());
        let notification_args =
            NotificationArgs::parse_from(argv).expect("notification arguments parse");
        notification_args
            .validate()
            .expect("notification arguments are valid");
        let notification = start_notification(&notification_args, any).await;

        let (gateway_id, gateway_secret) = identity_domain
            .create_service_account("kc-gateway")
            .await
            .expect("gateway service account");
        let mut argv = vec![
            "kc-gateway".to_owned(),
            "--identity-url".to_owned(),
            identity.url(),
            "--contacts-url".to_owned(),
            contacts.url(),
            "--access-url".to_owned(),
            access.url(),
            "--notification-url".to_owned(),
            notification.url(),
            "--client-id".to_owned(),
            gateway_id.to_string(),
            "--client-secret".to_owned(),
            gateway_secret,
        ];
        argv.extend(NO_DRAIN.map(str::to_owned));
        for flag in WRITE_LIMITS {
            if !gateway_extra.contains(&flag) {
                argv.extend([flag.to_owned(), "off".to_owned()]);
            }
        }
        argv.extend(gateway_extra.iter().map(|flag| (*flag).to_owned()));
        let gateway_args = GatewayArgs::parse_from(argv).expect("gateway arguments parse");
        let gateway = start_gateway(&gateway_args, any).await;
        let gateway_channel = ready_channel(&gateway.url()).await;

        // The operator is bootstrapped the way `kc-identity bootstrap-operator` does it, then
        // signs in through the gateway like everyone else.
        identity_domain
            .bootstrap_operator(
                &Email::parse("email", OPERATOR_EMAIL).expect("email"),
                &Password::parse("password", PASSWORD).expect("password"),
            )
            .await
            .expect("bootstrap operator");
        let operator = login(&gateway_channel, OPERATOR_EMAIL).await;

        Self {
            smtp,
            identity,
            contacts,
            access,
            notification,
            gateway,
            identity_args,
            contacts_args,
            access_args,
            notification_args,
            gateway_args,
            identity_domain,
            gateway_channel,
            operator,
            numbers: AtomicU32::new(0),
        }
    }

    /// A client of the gateway.
    pub fn gw(&self) -> Gateway {
        GatewayServiceClient::new(self.gateway_channel.clone())
    }

    /// Stops one internal service (its port is closed until [`Suite::start_internal`]).
    pub async fn stop_internal(&mut self, service: Internal) {
        match service {
            Internal::Identity => self.identity.stop().await,
            Internal::Contacts => self.contacts.stop().await,
            Internal::Access => self.access.stop().await,
            Internal::Notification => self.notification.stop().await,
        }
    }

    /// Starts one internal service again on the same port.
    pub async fn start_internal(&mut self, service: Internal) {
        match service {
            Internal::Identity => {
                self.identity = start_identity(&self.identity_args, self.identity.addr).await;
            }
            Internal::Contacts => {
                self.contacts = start_contacts(&self.contacts_args, self.contacts.addr).await;
            }
            Internal::Access => {
                self.access = start_access(&self.access_args, self.access.addr).await;
            }
            Internal::Notification => {
                self.notification =
                    start_notification(&self.notification_args, self.notification.addr).await;
            }
        }
    }

    /// Another gateway on the same internal services, with `extra` flags (later ones win).
    pub async fn another_gateway(&self, extra: &[&str]) -> (Restartable, Channel) {
        let mut argv: Vec<String> = vec!["kc-gateway".to_owned()];
        argv.extend([
            "--identity-url".to_owned(),
            self.identity.url(),
            "--contacts-url".to_owned(),
            self.contacts.url(),
            "--access-url".to_owned(),
            self.access.url(),
            "--notification-url".to_owned(),
            self.notification.url(),
            "--client-id".to_owned(),
            self.gateway_args.account.client_id.clone(),
            "--client-secret".to_owned(),
            self.gateway_args.account.client_secret.clone(),
        ]);
        argv.extend(NO_DRAIN.map(str::to_owned));
        argv.extend(extra.iter().map(|flag| (*flag).to_owned()));
        let args = GatewayArgs::parse_from(argv).expect("gateway arguments parse");
        let gateway = start_gateway(&args, "127.0.0.1:0".parse().unwrap()).await;
        let channel = ready_channel(&gateway.url()).await;
        (gateway, channel)
    }

    /// A fresh (site number, customer number) pair.
    pub fn numbers(&self) -> (String, String) {
        let n = self.numbers.fetch_add(1, Ordering::Relaxed);
        (format!("{}", 3_000_000 + n), format!("{}", 7_000_000 + n))
    }

    // ---- people ----

    /// Registers `name` through the gateway with a fresh e-mail, proves the address with the
    /// mailed code (rule I1) and signs it in.
    pub async fn person(&self, name: &str) -> Person {
        self.person_in(name, "en").await
    }

    /// Registers `name` with `locale` through the gateway, proves the address with the
    /// mailed code and signs it in.
    pub async fn person_in(&self, name: &str, locale: &str) -> Person {
        let email = fresh_email(name);
        self.register(&email, name, PASSWORD, locale)
            .await
            .unwrap_or_else(|status| panic!("register {name}: {status:?}"));
        self.verify(&email, PASSWORD).await;
        login(&self.gateway_channel, &email).await
    }

    /// `Register` through the gateway, anonymously.
    pub async fn register(
        &self,
        email: &str,
        name: &str,
        password: &str,
        locale: &str,
    ) -> Result<gw::RegisterResponse, Status> {
        self.gw()
            .register(gw::RegisterRequest {
                email: email.into(),
                display_name: name.into(),
                password: password.into(),
                locale: locale.into(),
            })
            .await
            .map(tonic::Response::into_inner)
    }

    /// Proves `email` through the gateway's `VerifyEmail` with its outstanding code and the
    /// password of its registration; returns the proven user.
    pub async fn verify(&self, email: &str, password: &str) -> ipb::User {
        let code = self.code_for(email).await.code;
        self.gw()
            .verify_email(gw::VerifyEmailRequest {
                email: email.into(),
                code,
                password: password.into(),
            })
            .await
            .unwrap_or_else(|status| panic!("verify {email}: {status:?}"))
            .into_inner()
            .user
            .expect("the verified user")
    }

    /// The outstanding code identity mailed to `email`, read as notification reads it (from
    /// identity's event stream as the operator, opened with the test key); codes already
    /// used, replaced or expired are skipped.
    pub async fn code_for(&self, email: &str) -> MailedCode {
        CodeReader::new(
            ready_channel(&self.identity.url()).await,
            self.operator.token.clone(),
        )
        .next_code(email)
        .await
    }

    /// Signs in `email` through the gateway: (access token, refresh token).
    pub async fn session(&self, email: &str) -> gw::LoginResponse {
        self.gw()
            .login(gw::LoginRequest {
                email: email.into(),
                password: PASSWORD.into(),
            })
            .await
            .unwrap_or_else(|status| panic!("login {email}: {status:?}"))
            .into_inner()
    }

    // ---- mail, as the SMTP server received it ----

    /// The mails of `kind` (`NOTICE_KIND_…`, the `X-Keycontacts-Kind` header) received so
    /// far for `email`, oldest first.
    pub fn mails(&self, email: &str, kind: &str) -> Vec<ReceivedMessage> {
        self.smtp
            .messages()
            .into_iter()
            .filter(|message| is_mail(message, email, kind))
            .collect()
    }

    /// Every mail received so far for `email`, of any kind, oldest first.
    pub fn all_mails(&self, email: &str) -> Vec<ReceivedMessage> {
        self.smtp
            .messages()
            .into_iter()
            .filter(|message| {
                message
                    .rcpt_tos
                    .iter()
                    .any(|r| r.eq_ignore_ascii_case(email))
            })
            .collect()
    }

    /// The `n`-th (1-based) mail of `kind` to `email`, once the SMTP server received it.
    pub async fn mail(&self, email: &str, kind: &str, n: usize) -> ReceivedMessage {
        let messages = self
            .smtp
            .wait_for(
                &format!("mail {n} of {kind} reaches {email}"),
                PATIENCE,
                |messages| messages.iter().filter(|m| is_mail(m, email, kind)).count() >= n,
            )
            .await;
        messages
            .into_iter()
            .filter(|message| is_mail(message, email, kind))
            .nth(n - 1)
            .expect("the mail that was waited for")
    }

    // ---- sites, as the operator ----

    /// The operator creates a site through the gateway: `primary` as primary contact, and
    /// `stc` as site technical contact with S&S active when given.
    pub async fn create_site(
        &self,
        name: &str,
        primary: &Person,
        stc: Option<&Person>,
    ) -> cpb::Site {
        let (site_number, customer_number) = self.numbers();
        let response = self
            .gw()
            .create_site(authed(
                Some(&self.operator.token),
                gw::CreateSiteRequest {
                    site_number,
                    customer_number,
                    name: name.into(),
                    country_code: "FR".into(),
                    language: "fr".into(),
                    program: cpb::Program::PassportAdvantage as i32,
                    support_active: stc.is_some(),
                    support_end_date: if stc.is_some() {
                        "2030-12-31".into()
                    } else {
                        String::new()
                    },
                    business_partner_email: String::new(),
                    primary_contact: Some(contact_person(primary)),
                    site_technical_contact: stc.map(contact_person),
                },
            ))
            .await
            .unwrap_or_else(|status| panic!("create site {name}: {status:?}"))
            .into_inner();
        response.site.expect("site")
    }

    /// The operator gives `person` a role on the site; returns the contact.
    pub async fn assign(&self, site_id: &str, person: &Person, role: Role) -> cpb::Contact {
        self.assign_as(&self.operator, site_id, person, role)
            .await
            .unwrap_or_else(|status| panic!("assign {} as {role:?}: {status:?}", person.name))
            .contact
            .expect("contact")
    }

    /// `by` gives `person` a role on the site through the gateway's `AssignContact`.
    pub async fn assign_as(
        &self,
        by: &Person,
        site_id: &str,
        person: &Person,
        role: Role,
    ) -> Result<gw::AssignContactResponse, Status> {
        self.assign_email_as(by, site_id, &person.email, &person.name, role)
            .await
    }

    /// `by` gives the person whose login is `email` (invited when unknown, rule I1) a role
    /// on the site through the gateway's `AssignContact`.
    pub async fn assign_email_as(
        &self,
        by: &Person,
        site_id: &str,
        email: &str,
        display_name: &str,
        role: Role,
    ) -> Result<gw::AssignContactResponse, Status> {
        self.gw()
            .assign_contact(authed(
                Some(&by.token),
                gw::AssignContactRequest {
                    site_id: site_id.into(),
                    email: email.into(),
                    display_name: Some(display_name.into()),
                    role: role as i32,
                    details: None,
                    locale: String::new(),
                },
            ))
            .await
            .map(tonic::Response::into_inner)
    }

    /// The operator gives a new invited person a role on the site; returns the contact.
    pub async fn assign_invited(&self, site_id: &str, role: Role) -> cpb::Contact {
        let name = "Invited Person";
        self.gw()
            .assign_contact(authed(
                Some(&self.operator.token),
                gw::AssignContactRequest {
                    site_id: site_id.into(),
                    email: fresh_email("invited"),
                    display_name: Some(name.into()),
                    role: role as i32,
                    details: None,
                    locale: "fr".into(),
                },
            ))
            .await
            .unwrap_or_else(|status| panic!("assign an invited person: {status:?}"))
            .into_inner()
            .contact
            .expect("contact")
    }

    /// The operator sets explicit tool levels of `user` on the site.
    pub async fn grant(&self, site_id: &str, user: &str, tools: apb::ToolAccess) {
        self.set_tools_as(&self.operator, site_id, user, tools, "test fixture")
            .await
            .unwrap_or_else(|status| panic!("grant {tools:?} to {user}: {status:?}"));
    }

    /// `by` sets explicit tool levels of `user` on the site through the gateway.
    pub async fn set_tools_as(
        &self,
        by: &Person,
        site_id: &str,
        user: &str,
        tools: apb::ToolAccess,
        reason: &str,
    ) -> Result<gw::SetToolAccessResponse, Status> {
        self.gw()
            .set_tool_access(authed(
                Some(&by.token),
                gw::SetToolAccessRequest {
                    site_id: site_id.into(),
                    user_id: user.into(),
                    tools: Some(tools),
                    reason: reason.into(),
                    etag: String::new(),
                },
            ))
            .await
            .map(tonic::Response::into_inner)
    }

    /// The operator revokes the explicit grants of `user` on the site (only implied rights
    /// remain).
    pub async fn revoke(&self, site_id: &str, user: &str) {
        self.gw()
            .revoke_access(authed(
                Some(&self.operator.token),
                gw::RevokeAccessRequest {
                    site_id: site_id.into(),
                    user_id: user.into(),
                    reason: "test fixture".into(),
                    etag: String::new(),
                },
            ))
            .await
            .unwrap_or_else(|status| panic!("revoke the grants of {user}: {status:?}"));
    }

    /// `user`'s access profile on the site, as the operator reads it.
    pub async fn profile(&self, site_id: &str, user: &str) -> Result<apb::AccessProfile, Status> {
        self.gw()
            .get_access_profile(authed(
                Some(&self.operator.token),
                gw::GetAccessProfileRequest {
                    site_id: site_id.into(),
                    user_id: user.into(),
                },
            ))
            .await
            .map(|response| response.into_inner().profile.expect("profile"))
    }

    /// Waits until access management sees `user` with `done` true of its profile on the site
    /// (it follows the registry's events).
    pub async fn wait_profile(
        &self,
        site_id: &str,
        user: &str,
        what: &str,
        done: impl Fn(&apb::AccessProfile) -> bool,
    ) {
        eventually(what, || async {
            match self.profile(site_id, user).await {
                Ok(profile) if done(&profile) => Ok(()),
                Ok(profile) => Err(format!("{profile:?}")),
                Err(status) => Err(format!("{status:?}")),
            }
        })
        .await;
    }

    /// Waits until access management knows that `user` holds `role` on the site.
    pub async fn wait_role(&self, site_id: &str, user: &str, role: Role) {
        self.wait_profile(
            site_id,
            user,
            &format!("access management knows {user} as {role:?}"),
            |profile| profile.implied_by.contains(&(role as i32)),
        )
        .await;
    }

    /// The contacts of the site holding any of `roles` (every contact when empty), as the
    /// operator reads them with `ShowAllContacts` (C7).
    pub async fn operator_contacts(&self, site_id: &str, roles: &[Role]) -> Vec<gw::ContactView> {
        self.gw()
            .show_all_contacts(authed(
                Some(&self.operator.token),
                gw::ShowAllContactsRequest {
                    site_id: site_id.into(),
                    roles: roles.iter().map(|role| *role as i32).collect(),
                    ..Default::default()
                },
            ))
            .await
            .expect("the operator reads the contacts")
            .into_inner()
            .contacts
    }
}

/// The contact person for `person` (a known e-mail: no invitation).
pub fn contact_person(person: &Person) -> gw::ContactPerson {
    gw::ContactPerson {
        email: person.email.clone(),
        display_name: person.name.clone(),
        locale: String::new(),
        details: None,
    }
}

/// Whether `message` is a mail of `kind` (`NOTICE_KIND_…`) to `email`.
pub fn is_mail(message: &ReceivedMessage, email: &str, kind: &str) -> bool {
    message
        .rcpt_tos
        .iter()
        .any(|rcpt| rcpt.eq_ignore_ascii_case(email))
        && message.header("X-Keycontacts-Kind") == Some(kind)
}

/// The one-time code of a mail, if it holds one: a line of its text that is nothing but a
/// code, six digits or a long code of 20 Crockford base32 characters (hyphens and spaces
/// between groups allowed).
pub fn find_code(message: &ReceivedMessage) -> Option<String> {
    let text = message.text.as_deref()?;
    text.lines().map(str::trim).find_map(|line| {
        let compact: String = line.chars().filter(|c| !matches!(c, '-' | ' ')).collect();
        let short = compact.len() == 6 && compact.bytes().all(|b| b.is_ascii_digit());
        let long = compact.len() == 20
            && compact
                .chars()
                .all(|c| c.is_ascii_digit() || (c.is_ascii_uppercase() && !"ILOU".contains(c)));
        (short || long).then(|| line.to_owned())
    })
}

/// The one-time code of a mail that must hold one.
#[track_caller]
pub fn code_in(message: &ReceivedMessage) -> String {
    find_code(message).unwrap_or_else(|| panic!("a code in {:?}", message.text))
}

/// A fresh e-mail address whose local part starts with `hint`.
pub fn fresh_email(hint: &str) -> String {
    let hint: String = hint
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(12)
        .collect::<String>()
        .to_lowercase();
    format!("{hint}-{}@acme.example", Uuid::new_v4().simple())
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

/// A free address on `127.0.0.1`, for a service that must be named before it starts (the
/// registry names access management, which names the registry). The port is released at
/// once; [`Restartable::start`] binds it again, retrying while it is briefly in use.
fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port on 127.0.0.1")
}

async fn start_identity(args: &IdentityArgs, addr: SocketAddr) -> Restartable {
    let args = args.clone();
    Restartable::start(addr, move |listener, shutdown| {
        kc_identity::run(args, listener, shutdown)
    })
    .await
}

async fn start_contacts(args: &ContactsArgs, addr: SocketAddr) -> Restartable {
    let args = args.clone();
    Restartable::start(addr, move |listener, shutdown| {
        kc_contacts::run(args, listener, shutdown)
    })
    .await
}

async fn start_access(args: &AccessArgs, addr: SocketAddr) -> Restartable {
    let args = args.clone();
    Restartable::start(addr, move |listener, shutdown| {
        kc_access::run(args, listener, shutdown)
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

async fn start_gateway(args: &GatewayArgs, addr: SocketAddr) -> Restartable {
    let args = args.clone();
    Restartable::start(addr, move |listener, shutdown| {
        kc_gateway::run(args, listener, shutdown)
    })
    .await
}

// ---- requests, statuses, polling ----

/// A request carrying `token` as bearer (none: an anonymous call).
pub fn authed<T>(token: Option<&str>, message: T) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    request
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
            .any(|v| v.field == field || v.field.ends_with(&format!(".{field}"))),
        "expected a violation on {field}, got {violations:?} ({status:?})"
    );
    status
}

/// Every tool NONE but the ones set in `f`.
pub fn tools(f: impl FnOnce(&mut apb::ToolAccess)) -> apb::ToolAccess {
    let mut tools = apb::ToolAccess::default();
    f(&mut tools);
    tools
}

impl Suite {
    /// A service account created through identity's domain and its service token (issued by
    /// identity, as `kc_runtime::client::ServiceToken` gets it).
    pub async fn service_token(&self, name: &str) -> String {
        let (client_id, client_secret) = self
            .identity_domain
            .create_service_account(name)
            .await
            .expect("service account");
        IdentityServiceClient::new(ready_channel(&self.identity.url()).await)
            .issue_service_token(ipb::IssueServiceTokenRequest {
                client_id: client_id.to_string(),
                client_secret,
            })
            .await
            .expect("service token")
            .into_inner()
            .access_token
    }
}
