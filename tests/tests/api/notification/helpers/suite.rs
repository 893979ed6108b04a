//! The suite: the four services on one database, the SMTP server and the callers, with a
//! method per RPC of identity, the contact registry and access management.

use super::*;

/// Identity, the registry, access management and notification on one database, with the
/// SMTP server (see [`kc_suite_tests::sandbox`]).
pub struct Suite {
    pub sandbox: Sandbox,
    names: AtomicU32,
}

kc_suite_tests::on_sandbox!(Suite);

impl Suite {
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// Starts the suite; `notification_extra` are more flags for notification (later ones
    /// win over [`FAST_DELIVERY`]).
    pub async fn start_with(notification_extra: &[&str]) -> Self {
        Self::start_flags(&[], notification_extra).await
    }

    /// Starts the suite with `contacts_extra` more flags for the registry (its S&S
    /// sweeper's interval, say).
    pub async fn start_with_registry(contacts_extra: &[&str]) -> Self {
        Self::start_flags(contacts_extra, &[]).await
    }

    async fn start_flags(contacts_extra: &[&str], notification_extra: &[&str]) -> Self {
        let sandbox = Sandbox::builder()
            .with(Service::Contacts)
            .with(Service::Access)
            .with(Service::Notification)
            .service_caller()
            .flags(Service::Contacts, contacts_extra)
            .flags(Service::Notification, &["--mail-from", MAIL_FROM])
            .flags(Service::Notification, &FAST_DELIVERY)
            .flags(Service::Notification, notification_extra)
            .start()
            .await;
        Self {
            sandbox,
            names: AtomicU32::new(0),
        }
    }

    /// Stops the registry (its streams end, its port is closed).
    pub async fn stop_registry(&mut self) {
        self.sandbox.stop(Service::Contacts).await;
    }

    /// Starts the registry again on the same port.
    pub async fn start_registry(&mut self) {
        self.sandbox.restart(Service::Contacts).await;
    }

    /// Stops notification (its workers and consumers stop, its port is closed).
    pub async fn stop_notification(&mut self) {
        self.sandbox.stop(Service::Notification).await;
    }

    /// Starts notification again on the same port.
    pub async fn start_notification(&mut self) {
        self.sandbox.restart(Service::Notification).await;
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
    /// used), so every person of a test has exactly one registration mail; and for the SMTP
    /// server to have received it, so that what a test asks of the server next (a failure
    /// for the person's next mail) meets the mails the test means.
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
        self.smtp()
            .wait_for(
                &format!("the registration mail reaches {email}"),
                PATIENCE,
                |messages| {
                    messages.iter().any(|message| {
                        message
                            .rcpt_tos
                            .iter()
                            .any(|to| to.eq_ignore_ascii_case(&email))
                    })
                },
            )
            .await;
        let code = self.code_reader().next_code(&email).await;
        let user = self.verify_email(&email, &code.code, PASSWORD).await;
        TestUser {
            id: uuid(&user.user_id),
            email: user.email,
            name: user.display_name,
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
        let identity = self.channel(Service::Identity);
        kc_testkit::identity::register(&identity, email, name, password, locale).await
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
        self.sandbox.customer_token(&user.email).await
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
        find_message(&mut stream, "the identity event arrives", |item| {
            pick(&item.event.expect("event body"))
        })
        .await
    }

    // ---- contact registry ----

    /// A fresh (site number, customer number) pair.
    pub fn numbers(&self) -> (String, String) {
        self.numbers_from(3_000_000, 4_000_000)
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
    /// A new site in `language` with active S&S, primary `primary` and site technical
    /// contact `stc`.
    pub async fn supported_site(
        &self,
        primary: &TestUser,
        stc: &TestUser,
        language: &str,
    ) -> cpb::Site {
        let (site_number, customer_number) = self.numbers();
        self.create_site(cpb::CreateSiteRequest {
            support_active: true,
            site_technical_user_id: stc.id.to_string(),
            ..site_request(&site_number, &customer_number, primary.id, language)
        })
        .await
    }

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
        let code = self
            .registry_events("contact.notification_email_change_requested")
            .await
            .into_iter()
            .rev()
            .find_map(|event| match event.payload? {
                cpb::event::Payload::NotificationEmailChangeRequested(requested)
                    if requested.contact.as_ref()?.contact_id == contact.contact_id
                        && !requested.sealed_code.is_empty() =>
                {
                    Some(kc_testkit::secrets::open_code(&requested.sealed_code))
                }
                _ => None,
            })
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

    /// A one-connection pool on the registry's schema (close it after use).
    pub async fn registry_pool(&self) -> sqlx::PgPool {
        let options: sqlx::postgres::PgConnectOptions = self.db.url.parse().expect("db url");
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect_with(options.options([("search_path", "contacts")]))
            .await
            .expect("contacts pool")
    }

    /// The events of type `event_type` in the registry's outbox, in commit order, read from
    /// its table (the stream's positions are not filled in).
    pub async fn registry_events(&self, event_type: &str) -> Vec<cpb::Event> {
        use prost::Message;
        let pool = self.registry_pool().await;
        let payloads: Vec<Vec<u8>> = sqlx::query_scalar(
            "SELECT payload FROM outbox_events WHERE event_type = $1 ORDER BY txid, seq",
        )
        .bind(event_type)
        .fetch_all(&pool)
        .await
        .expect("read the registry's outbox");
        pool.close().await;
        payloads
            .iter()
            .map(|payload| cpb::Event::decode(payload.as_slice()).expect("an event"))
            .collect()
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
                    ..Default::default()
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
                    ..Default::default()
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
}
