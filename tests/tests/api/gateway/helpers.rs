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

use kc_proto::access::{self as apb};
use kc_proto::contacts::{self as cpb};
use kc_proto::gateway::gateway_service_client::GatewayServiceClient;
use kc_proto::gateway::{self as gw};
use kc_proto::identity::{self as ipb};
use kc_suite_tests::Sandbox;
use kc_suite_tests::sandbox::login;
use kc_testkit::Restartable;
use kc_testkit::codes::MailedCode;
use kc_testkit::smtp::ReceivedMessage;
use tonic::Status;
use tonic::transport::Channel;
use uuid::Uuid;

pub use kc_suite_tests::{NO_DRAIN, OPERATOR_EMAIL, PASSWORD, PATIENT_DEADLINE, Person, Service};
pub use kc_testkit::checks::{PATIENCE, cites, eventually};
pub use kc_testkit::grpc::{
    expect_code, expect_field_at_end as expect_field, maybe_authed as authed,
};

pub use cpb::ContactRole as Role;

/// The kind of the mail that carries a code to prove an address (`X-Keycontacts-Kind`).
pub const VERIFICATION: &str = "NOTICE_KIND_EMAIL_VERIFICATION";

/// The gateway's per-caller write limits, which [`Suite::start_with`] turns off unless told.
pub const WRITE_LIMITS: [&str; 2] = ["--access-request-rate-limit", "--write-rate-limit"];

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

impl From<Internal> for Service {
    fn from(internal: Internal) -> Self {
        match internal {
            Internal::Identity => Service::Identity,
            Internal::Contacts => Service::Contacts,
            Internal::Access => Service::Access,
            Internal::Notification => Service::Notification,
        }
    }
}

/// The five services on one database (see [`kc_suite_tests::sandbox`]), called through the
/// gateway only.
pub struct Suite {
    pub sandbox: Sandbox,
    pub gateway_channel: Channel,
}

kc_suite_tests::on_sandbox!(Suite);

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
        Self::start_with_flags(gateway_extra, &[]).await
    }

    /// Like [`Suite::start`], with `access_flags` for access management (e.g. a short
    /// `--sweep-interval`, so that grants reach their end within a test, T9).
    pub async fn start_with_access(access_flags: &[&str]) -> Self {
        Self::start_with_flags(&["--session-rate-limit", "off"], access_flags).await
    }

    /// Like [`Suite::start`], with `contacts_flags` for the contact registry (e.g. a short
    /// `--primary-recovery-waiting-period`, C12).
    pub async fn start_with_contacts(contacts_flags: &[&str]) -> Self {
        Self::start_with_all_flags(&["--session-rate-limit", "off"], &[], contacts_flags).await
    }

    /// Like [`Suite::start`], with identity's production mail interval (`1m`): a code
    /// outstanding is not mailed again within it (rule I1's throttle).
    pub async fn start_with_mail_interval() -> Self {
        Self::start_with_identity(&["--code-mail-interval", "1m"]).await
    }

    /// [`Suite::start_with`] with `access_flags` for access management too.
    async fn start_with_flags(gateway_extra: &[&str], access_flags: &[&str]) -> Self {
        Self::start_with_all_flags(gateway_extra, access_flags, &[]).await
    }

    /// [`Suite::start_with_flags`] with `contacts_flags` for the contact registry too.
    async fn start_with_all_flags(
        gateway_extra: &[&str],
        access_flags: &[&str],
        contacts_flags: &[&str],
    ) -> Self {
        // Every request that mails a code mails it at once (the outstanding code again
        // when there is one), so that a test sees one mail per request.
        Self::start_with_every_flag(
            gateway_extra,
            access_flags,
            contacts_flags,
            &["--code-mail-interval", "0s"],
        )
        .await
    }

    /// Like [`Suite::start`], with `identity_flags` for identity instead of the suite's.
    async fn start_with_identity(identity_flags: &[&str]) -> Self {
        Self::start_with_every_flag(&["--session-rate-limit", "off"], &[], &[], identity_flags)
            .await
    }

    /// The suite with these flags for the gateway (besides the write limits, off unless
    /// given), access management, the registry and identity.
    async fn start_with_every_flag(
        gateway_extra: &[&str],
        access_flags: &[&str],
        contacts_flags: &[&str],
        identity_flags: &[&str],
    ) -> Self {
        let mut gateway_flags = Vec::new();
        for flag in WRITE_LIMITS {
            if !gateway_extra.contains(&flag) {
                gateway_flags.extend([flag, "off"]);
            }
        }
        gateway_flags.extend(gateway_extra);
        let sandbox = Sandbox::builder()
            .with(Service::Contacts)
            .with(Service::Access)
            .with(Service::Notification)
            .with(Service::Gateway)
            .flags(Service::Identity, identity_flags)
            .flags(Service::Gateway, &gateway_flags)
            .flags(Service::Access, access_flags)
            .flags(Service::Contacts, contacts_flags)
            .start()
            .await;
        Self {
            gateway_channel: sandbox.channel(Service::Gateway),
            sandbox,
        }
    }

    /// Stops one internal service (its port is closed until [`Suite::start_internal`]).
    pub async fn stop_internal(&mut self, service: Internal) {
        self.sandbox.stop(service.into()).await;
    }

    /// Starts one internal service again on the same port.
    pub async fn start_internal(&mut self, service: Internal) {
        self.sandbox.restart(service.into()).await;
    }

    /// Another gateway on the same internal services, with `extra` flags (later ones win).
    /// [`Suite::another_gateway`] with its Prometheus metrics served: the replica, its
    /// channel and the metrics' address.
    pub async fn another_gateway_with_metrics(
        &self,
        extra: &[&str],
    ) -> (Restartable, Channel, std::net::SocketAddr) {
        let metrics_addr = kc_testkit::process::free_local_addr();
        let listen = metrics_addr.to_string();
        let mut args = extra.to_vec();
        args.extend(["--metrics-listen", listen.as_str()]);
        let (replica, channel) = self.another_gateway(&args).await;
        (replica, channel, metrics_addr)
    }

    pub async fn another_gateway(&self, extra: &[&str]) -> (Restartable, Channel) {
        let account = &self
            .gateway_args
            .as_ref()
            .expect("the gateway runs")
            .account;
        let mut argv: Vec<String> = vec!["kc-gateway".to_owned()];
        argv.extend([
            "--identity-url".to_owned(),
            self.url(Service::Identity),
            "--contacts-url".to_owned(),
            self.url(Service::Contacts),
            "--access-url".to_owned(),
            self.url(Service::Access),
            "--notification-url".to_owned(),
            self.url(Service::Notification),
            "--client-id".to_owned(),
            account.client_id.clone(),
            "--client-secret".to_owned(),
            account.client_secret.clone(),
        ]);
        argv.extend(NO_DRAIN.map(str::to_owned));
        argv.extend(PATIENT_DEADLINE.map(str::to_owned));
        argv.extend(extra.iter().map(|flag| (*flag).to_owned()));
        Sandbox::another(Service::Gateway, argv).await
    }

    /// A fresh (site number, customer number) pair.
    pub fn numbers(&self) -> (String, String) {
        self.numbers_from(3_000_000, 7_000_000)
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
        self.person_at(name, &fresh_email(name), locale).await
    }

    /// Registers `name` with the login e-mail `email` in `locale` through the gateway, proves
    /// the address with the mailed code (rule I1) and signs it in.
    pub async fn person_at(&self, name: &str, email: &str, locale: &str) -> Person {
        self.register(email, name, PASSWORD, locale)
            .await
            .unwrap_or_else(|status| panic!("register {name}: {status:?}"));
        self.verify(email, PASSWORD).await;
        login(&self.gateway_channel, email).await
    }

    /// Registers `name` in English and proves the address with the code of its registration
    /// mail, once the SMTP server received it, then signs it in. Unlike [`Suite::person`],
    /// which reads the code from identity's stream and may use it before notification mails
    /// it (a code used before it is mailed is never mailed), this person's address has
    /// exactly one registration mail.
    pub async fn person_proven_by_mail(&self, name: &str) -> Person {
        let email = fresh_email(name);
        self.register(&email, name, PASSWORD, "en")
            .await
            .unwrap_or_else(|status| panic!("register {name}: {status:?}"));
        let mailed = self.mail(&email, VERIFICATION, 1).await;
        let code = find_code(&mailed).expect("the registration mail holds a code");
        self.verify_with(&email, code, PASSWORD).await;
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
        self.verify_with(email, code, password).await
    }

    /// Proves `email` through the gateway's `VerifyEmail` with `code` and the password of its
    /// registration; returns the proven user.
    pub async fn verify_with(&self, email: &str, code: String, password: &str) -> ipb::User {
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
        self.code_reader().next_code(email).await
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
        self.smtp()
            .messages()
            .into_iter()
            .filter(|message| is_mail(message, email, kind))
            .collect()
    }

    /// Every mail received so far for `email`, of any kind, oldest first.
    pub fn all_mails(&self, email: &str) -> Vec<ReceivedMessage> {
        self.smtp()
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
            .smtp()
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
    /// The site as the operator reads it through the gateway.
    pub async fn site_now(&self, site_id: &str) -> cpb::Site {
        self.gw()
            .get_site(authed(
                Some(&self.operator.token),
                gw::GetSiteRequest {
                    site_id: site_id.into(),
                },
            ))
            .await
            .expect("the operator reads the site")
            .into_inner()
            .site
            .expect("site")
    }

    /// The operator turns the site's C3 switch on (the administrative contact may manage
    /// access), through the gateway: the updated site.
    pub async fn switch_admin_on(&self, site_id: &str) -> cpb::Site {
        self.gw()
            .update_site(authed(
                Some(&self.operator.token),
                gw::UpdateSiteRequest {
                    site: Some(cpb::Site {
                        site_id: site_id.into(),
                        admin_may_manage_access: true,
                        ..Default::default()
                    }),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["admin_may_manage_access".into()],
                    }),
                    etag: String::new(),
                },
            ))
            .await
            .expect("the operator turns the C3 switch on")
            .into_inner()
            .site
            .expect("site")
    }

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

    /// `by` takes the contact `contact_id` away from the site through the gateway's
    /// `RemoveContact`.
    pub async fn remove_as(
        &self,
        by: &Person,
        site_id: &str,
        contact_id: &str,
    ) -> Result<gw::RemoveContactResponse, Status> {
        self.gw()
            .remove_contact(authed(
                Some(&by.token),
                gw::RemoveContactRequest {
                    site_id: site_id.into(),
                    contact_id: contact_id.into(),
                    etag: String::new(),
                },
            ))
            .await
            .map(tonic::Response::into_inner)
    }

    /// The operator sets explicit tool levels of `user` on the site.
    pub async fn grant(
        &self,
        site_id: &str,
        user: &str,
        tools: apb::ToolAccess,
    ) -> gw::SetToolAccessResponse {
        self.set_tools_as(&self.operator, site_id, user, tools, "test fixture")
            .await
            .unwrap_or_else(|status| panic!("grant {tools:?} to {user}: {status:?}"))
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
                    ..Default::default()
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

    /// [`Suite::create_site`], once access management knows its primary (as a write
    /// through the gateway about the site would wait for, T8).
    pub async fn create_site_applied(
        &self,
        name: &str,
        primary: &Person,
        stc: Option<&Person>,
    ) -> cpb::Site {
        let site = self.create_site(name, primary, stc).await;
        self.wait_role(&site.site_id, &primary.id, Role::Primary)
            .await;
        site
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

    /// Every (user id, roles) of the site, sorted, as the operator reads them.
    pub async fn contact_roles(&self, site_id: &str) -> Vec<(String, Vec<i32>)> {
        let mut all: Vec<(String, Vec<i32>)> = self
            .operator_contacts(site_id, &[])
            .await
            .into_iter()
            .map(|view| (view.user_id, view.roles))
            .collect();
        all.sort();
        all
    }

    /// One page of `ShowAllContacts` of `site_id` as `person`, every role.
    pub async fn contacts_page(
        &self,
        person: &Person,
        site_id: &str,
        page_size: i32,
        page_token: &str,
    ) -> Result<gw::ShowAllContactsResponse, Status> {
        self.gw()
            .show_all_contacts(authed(
                Some(&person.token),
                gw::ShowAllContactsRequest {
                    site_id: site_id.into(),
                    roles: Vec::new(),
                    page_size,
                    page_token: page_token.into(),
                },
            ))
            .await
            .map(tonic::Response::into_inner)
    }

    /// The site's audit trail (`ListSiteAudit`, up to 1,000 entries, newest first) as the
    /// operator reads it.
    pub async fn site_audit(&self, site_id: &str) -> Vec<gw::AuditEntry> {
        self.gw()
            .list_site_audit(authed(
                Some(&self.operator.token),
                gw::ListSiteAuditRequest {
                    site_id: site_id.into(),
                    page_size: 1000,
                    page_token: String::new(),
                },
            ))
            .await
            .expect("the operator reads the audit trail")
            .into_inner()
            .entries
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

/// Every tool NONE but the ones set in `f`.
pub fn tools(f: impl FnOnce(&mut apb::ToolAccess)) -> apb::ToolAccess {
    let mut tools = apb::ToolAccess::default();
    f(&mut tools);
    tools
}

/// A self-nomination for site access to `site`'s reports (reporting VIEW), giving
/// `justification`.
pub fn reports_nomination(site: &cpb::Site, justification: &str) -> gw::SelfNominateRequest {
    gw::SelfNominateRequest {
        site_number: site.site_number.clone(),
        customer_number: site.customer_number.clone(),
        kind: apb::AccessRequestKind::SiteAccess as i32,
        requested_tools: Some(tools(|t| t.reporting = apb::ReportingAccess::View as i32)),
        requested_support_level: apb::SupportLevel::Unspecified as i32,
        justification: justification.into(),
    }
}

impl Suite {
    /// A service account created through identity's domain and its service token (issued by
    /// identity, as `kc_runtime::client::ServiceToken` gets it).
    pub async fn service_token(&self, name: &str) -> String {
        self.service_account(name).await.1
    }
}
