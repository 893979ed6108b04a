//! The suite: the three services on one database and the callers, with a method per RPC.

use super::*;

/// Identity, the registry and access management on one database (see
/// [`kc_suite_tests::sandbox`]); the registry does not follow access management here.
pub struct Suite {
    pub sandbox: Sandbox,
    /// The operator's user id and token.
    pub operator_id: Uuid,
    pub operator_token: String,
    /// Client id of the gateway-like service account.
    pub gateway_id: Uuid,
}

kc_suite_tests::on_sandbox!(Suite);

impl Suite {
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// Starts the suite; `access_extra` are more flags for access management.
    pub async fn start_with(access_extra: &[&str]) -> Self {
        let sandbox = Sandbox::builder()
            .with(Service::Contacts)
            .with(Service::Access)
            .registry_without_access_feed()
            .service_caller()
            .flags(Service::Access, access_extra)
            .start()
            .await;
        Self {
            operator_id: uuid(&sandbox.operator.id),
            operator_token: sandbox.operator.token.clone(),
            gateway_id: sandbox.service_caller.as_ref().expect("service caller").0,
            sandbox,
        }
    }

    /// Starts another replica of access management on the same database, with its own
    /// service account; returns it and a channel to it once it serves.
    pub async fn access_replica(&self) -> (Restartable, Channel) {
        let (account, secret) = self
            .identity_domain
            .create_service_account("kc-access-replica")
            .await
            .expect("replica service account");
        let argv = [
            "kc-access".to_owned(),
            "--database-url".to_owned(),
            self.db.url.clone(),
            "--identity-url".to_owned(),
            self.url(Service::Identity),
            "--contacts-url".to_owned(),
            self.url(Service::Contacts),
            "--client-id".to_owned(),
            account.to_string(),
            "--client-secret".to_owned(),
            secret,
        ];
        Sandbox::another(Service::Access, argv.to_vec()).await
    }

    /// A pool on access management's schema of the suite's database, for tests that hold
    /// its locks or read its tables directly.
    pub async fn access_pool(&self) -> sqlx::PgPool {
        kc_runtime::db::connect(
            &self.db.url,
            kc_access::SCHEMA,
            &kc_runtime::db::PoolSettings::default(),
        )
        .await
        .expect("pool on the access schema")
    }

    // ---- identity ----

    /// Registers a customer with `email` and proves its address as its owner would (rule
    /// I1): RegisterUser, then VerifyEmail with the code identity mailed (read, as
    /// notification reads it, from identity's stream by [`CodeReader`]) and the same
    /// password. Returns the proven, active user.
    pub async fn register(&self, email: &str) -> ipb::User {
        self.register_unproven(email).await;
        self.prove(email).await
    }

    /// Proves the address of an account registered with [`PASSWORD`]: VerifyEmail with the
    /// newest code identity mailed to `email`. Returns the proven, active user, once access
    /// management counts it proven (I1: before identity's event reaches it, access counts
    /// a user as unproven, so a test giving the fresh user rights waits for it here).
    pub async fn prove(&self, email: &str) -> ipb::User {
        let mailed = self.code_reader().next_code(email).await;
        let (user, revision) = self
            .verify_email_revised(email, &mailed.code, PASSWORD)
            .await;
        assert!(user.email_verified, "{user:?}");
        assert_eq!(user.state, ipb::UserState::Active as i32, "{user:?}");
        assert!(!revision.is_empty(), "a proof has a revision");
        self.await_identity_revision(&revision).await;
        user
    }

    /// Waits until access management applied identity's `revision`
    /// (`AwaitIdentityRevision`, asked again while it answers UNAVAILABLE on a busy
    /// machine).
    pub async fn await_identity_revision(&self, revision: &str) {
        eventually("access applied identity's revision", || async {
            self.access()
                .await_identity_revision(self.svc(pb::AwaitIdentityRevisionRequest {
                    revision: revision.into(),
                }))
                .await
                .map(drop)
                .map_err(|status| format!("{status:?}"))
        })
        .await;
    }

    /// Registers `email` without proving it: the account stays unproven (rule I1, state
    /// INVITED). Returns its id, looked up by the operator (RegisterUser answers nothing,
    /// rule I2).
    pub async fn register_unproven(&self, email: &str) -> Uuid {
        self.identity()
            .register_user(ipb::RegisterUserRequest {
                email: email.into(),
                display_name: "Test User".into(),
                password: PASSWORD.into(),
                locale: "en".into(),
            })
            .await
            .expect("register");
        let user = self
            .identity()
            .lookup_user(self.op(ipb::LookupUserRequest {
                email: email.into(),
            }))
            .await
            .expect("look the registered user up")
            .into_inner()
            .user
            .expect("user");
        assert!(!user.email_verified, "{user:?}");
        uuid(&user.user_id)
    }

    /// Registers a fresh customer in identity, proves its address, and returns its id.
    pub async fn user(&self) -> Uuid {
        let user = self
            .register(&format!("u-{}@example.com", Uuid::new_v4().simple()))
            .await;
        uuid(&user.user_id)
    }

    /// `n` fresh proven users.
    pub async fn users(&self, n: usize) -> Vec<Uuid> {
        let mut users = Vec::with_capacity(n);
        for _ in 0..n {
            users.push(self.user().await);
        }
        users
    }

    /// The operator disables `user` in identity.
    pub async fn disable(&self, user: Uuid) {
        self.identity()
            .disable_user(self.op(ipb::DisableUserRequest {
                user_id: user.to_string(),
            }))
            .await
            .expect("disable user");
    }

    /// The operator enables `user` again.
    pub async fn enable(&self, user: Uuid) {
        self.identity()
            .enable_user(self.op(ipb::EnableUserRequest {
                user_id: user.to_string(),
            }))
            .await
            .expect("enable user");
    }

    // ---- contact registry ----

    /// A fresh (site number, customer number) pair.
    pub fn numbers(&self) -> (String, String) {
        self.numbers_from(1_000_000, 2_000_000)
    }

    /// Creates a site in the registry and waits until access management knows it (its
    /// primary holds ACCESS_UPDATE there).
    pub async fn create_site(&self, request: cpb::CreateSiteRequest) -> cpb::Site {
        let primary = uuid(&request.primary_user_id);
        let site = self
            .registry()
            .create_site(self.svc(request))
            .await
            .expect("create site")
            .into_inner()
            .site
            .expect("site");
        self.wait_check(primary, &site.site_id, P::AccessUpdate, true)
            .await;
        site
    }

    /// A site without S&S whose primary contact is `primary`.
    pub async fn site(&self, primary: Uuid) -> cpb::Site {
        let (site_number, customer_number) = self.numbers();
        self.create_site(site_request(&site_number, &customer_number, primary))
            .await
    }

    /// A new site of `primary`, on which `primary` has granted `user` the `tools` for
    /// `reason`.
    pub async fn site_granting(
        &self,
        primary: Uuid,
        user: Uuid,
        tools: pb::ToolAccess,
        reason: &str,
    ) -> cpb::Site {
        let site = self.site(primary).await;
        self.grant(primary, &site, user, tools, reason).await;
        site
    }

    /// A site with active S&S, primary `primary` and site technical contact `stc`.
    pub async fn supported_site(&self, primary: Uuid, stc: Uuid) -> cpb::Site {
        let (site_number, customer_number) = self.numbers();
        let site = self
            .create_site(cpb::CreateSiteRequest {
                support_active: true,
                support_end_date: "2027-03-31".into(),
                site_technical_user_id: stc.to_string(),
                ..site_request(&site_number, &customer_number, primary)
            })
            .await;
        self.wait_check(stc, &site.site_id, P::SupportAdmin, true)
            .await;
        site
    }

    /// Gives `user` `role` on the site in the registry (not waiting for access management),
    /// as the operator: a role that implies rights never changes by a service acting for
    /// nobody (rule T6).
    pub async fn assign(&self, site_id: &str, user: Uuid, role: Role) -> cpb::Contact {
        self.assign_revised(site_id, user, role)
            .await
            .contact
            .expect("contact")
    }

    /// AssignContact at the registry as the operator: the contact and the write's revision,
    /// for `AwaitContactsRevision` (T8).
    pub async fn assign_revised(
        &self,
        site_id: &str,
        user: Uuid,
        role: Role,
    ) -> cpb::AssignContactResponse {
        self.registry()
            .assign_contact(self.op(cpb::AssignContactRequest {
                site_id: site_id.into(),
                user_id: user.to_string(),
                role: role as i32,
                details: None,
            }))
            .await
            .expect("assign contact")
            .into_inner()
    }

    /// Turns the switch of rule C3 (the administrative contact may manage access) on or off.
    pub async fn set_admin_switch(&self, site_id: &str, on: bool) -> cpb::Site {
        self.registry()
            .update_site(self.svc(cpb::UpdateSiteRequest {
                site: Some(cpb::Site {
                    site_id: site_id.into(),
                    admin_may_manage_access: on,
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["admin_may_manage_access".into()],
                }),
                etag: String::new(),
            }))
            .await
            .expect("update site")
            .into_inner()
            .site
            .expect("site")
    }

    /// Makes `new_primary` the primary contact of the site (C8), as the operator (rule T6).
    pub async fn transfer_primary(
        &self,
        site_id: &str,
        new_primary: Uuid,
    ) -> Result<cpb::TransferPrimaryContactResponse, Status> {
        self.registry()
            .transfer_primary_contact(self.op(cpb::TransferPrimaryContactRequest {
                site_id: site_id.into(),
                new_user_id: new_primary.to_string(),
                etag: String::new(),
                previous_primary_role: Role::Unspecified as i32,
            }))
            .await
            .map(|r| r.into_inner())
    }

    /// Waits until access management applied every registry event committed so far: a
    /// marker site created now is visible only after them (the projection applies the
    /// registry's stream in commit order).
    pub async fn sync_registry(&self) {
        let marker = self.user().await;
        self.site(marker).await;
    }

    // ---- access management ----

    pub async fn check(&self, user: Uuid, site_id: &str, permission: P) -> pb::CheckResponse {
        self.access()
            .check(self.svc(check_request(user, site_id, permission)))
            .await
            .expect("check")
            .into_inner()
    }

    /// Polls Check until it answers `allowed`.
    /// Whether `user` has `permission` on the site now (Check).
    pub async fn allows(&self, user: Uuid, site: &cpb::Site, permission: P) -> bool {
        self.check(user, &site.site_id, permission).await.allowed
    }

    pub async fn wait_check(
        &self,
        user: Uuid,
        site_id: &str,
        permission: P,
        allowed: bool,
    ) -> pb::CheckResponse {
        eventually(
            &format!("check {permission:?} of {user} on {site_id} is {allowed}"),
            || async move {
                match self
                    .access()
                    .check(self.svc(check_request(user, site_id, permission)))
                    .await
                {
                    Ok(response) if response.get_ref().allowed == allowed => {
                        Ok(response.into_inner())
                    }
                    Ok(response) => Err(format!("{:?}", response.into_inner())),
                    Err(status) => Err(format!("{status:?}")),
                }
            },
        )
        .await
    }

    /// Every permission of `user` on the site, in [`ALL_PERMISSIONS`] order.
    pub async fn check_all(&self, user: Uuid, site_id: &str) -> Vec<pb::CheckResponse> {
        self.access()
            .batch_check(
                self.svc(pb::BatchCheckRequest {
                    checks: ALL_PERMISSIONS
                        .iter()
                        .map(|p| check_request(user, site_id, *p))
                        .collect(),
                }),
            )
            .await
            .expect("batch check")
            .into_inner()
            .results
    }

    pub async fn profile(&self, site_id: &str, user: Uuid) -> pb::AccessProfile {
        self.access()
            .get_access_profile(self.svc(pb::GetAccessProfileRequest {
                site_id: site_id.into(),
                user_id: user.to_string(),
            }))
            .await
            .expect("get access profile")
            .into_inner()
            .profile
            .expect("profile")
    }

    pub async fn set_tools(
        &self,
        grantor: Uuid,
        site_id: &str,
        user: Uuid,
        tools: pb::ToolAccess,
        reason: &str,
    ) -> Result<pb::AccessProfile, Status> {
        self.set_tools_at_etag(grantor, site_id, user, tools, reason, "")
            .await
    }

    /// [`Suite::set_tools`] guarded by the profile's `etag` (empty: unguarded).
    pub async fn set_tools_at_etag(
        &self,
        grantor: Uuid,
        site_id: &str,
        user: Uuid,
        tools: pb::ToolAccess,
        reason: &str,
        etag: &str,
    ) -> Result<pb::AccessProfile, Status> {
        self.access()
            .set_tool_access(self.as_user(
                grantor,
                pb::SetToolAccessRequest {
                    site_id: site_id.into(),
                    user_id: user.to_string(),
                    tools: Some(tools),
                    reason: reason.into(),
                    etag: etag.into(),
                    ..Default::default()
                },
            ))
            .await
            .map(|r| r.into_inner().profile.expect("profile"))
    }

    /// `grantor` sets `user`'s tools on the site for `reason`; the test fails when that is
    /// refused.
    pub async fn grant(
        &self,
        grantor: Uuid,
        site: &cpb::Site,
        user: Uuid,
        tools: pb::ToolAccess,
        reason: &str,
    ) -> pb::AccessProfile {
        self.set_tools(grantor, &site.site_id, user, tools, reason)
            .await
            .unwrap_or_else(|e| panic!("grant tools ({reason}): {e:?}"))
    }

    /// `grantor` sets `user`'s support level on the site for `reason`; the test fails when
    /// that is refused.
    pub async fn grant_support(
        &self,
        grantor: Uuid,
        site: &cpb::Site,
        user: Uuid,
        level: Su,
        reason: &str,
    ) -> pb::AccessProfile {
        self.set_support(grantor, &site.site_id, user, level, reason)
            .await
            .unwrap_or_else(|e| panic!("grant support ({reason}): {e:?}"))
    }

    pub async fn set_support(
        &self,
        grantor: Uuid,
        site_id: &str,
        user: Uuid,
        level: Su,
        reason: &str,
    ) -> Result<pb::AccessProfile, Status> {
        self.access()
            .set_support_access(self.as_user(
                grantor,
                pb::SetSupportAccessRequest {
                    site_id: site_id.into(),
                    user_id: user.to_string(),
                    support_level: level as i32,
                    reason: reason.into(),
                    etag: String::new(),
                    ..Default::default()
                },
            ))
            .await
            .map(|r| r.into_inner().profile.expect("profile"))
    }

    pub async fn revoke(
        &self,
        grantor: Uuid,
        site_id: &str,
        user: Uuid,
        reason: &str,
    ) -> Result<pb::AccessProfile, Status> {
        self.access()
            .revoke_access(self.as_user(
                grantor,
                pb::RevokeAccessRequest {
                    site_id: site_id.into(),
                    user_id: user.to_string(),
                    reason: reason.into(),
                    etag: String::new(),
                },
            ))
            .await
            .map(|r| r.into_inner().profile.expect("profile"))
    }

    pub async fn approvers(&self, site_id: &str, kind: Kind) -> Vec<pb::Approver> {
        self.approvers_page(site_id, kind, 0, String::new()).await.0
    }

    /// One page of ListApprovers: its approvers and the next page's token.
    pub async fn approvers_page(
        &self,
        site_id: &str,
        kind: Kind,
        page_size: i32,
        page_token: String,
    ) -> (Vec<pb::Approver>, String) {
        let page = self
            .access()
            .list_approvers(self.svc(pb::ListApproversRequest {
                site_id: site_id.into(),
                kind: kind as i32,
                page_size,
                page_token,
            }))
            .await
            .expect("list approvers")
            .into_inner();
        (page.approvers, page.next_page_token)
    }

    pub async fn approver_ids(&self, site_id: &str, kind: Kind) -> Vec<Uuid> {
        self.approvers(site_id, kind)
            .await
            .iter()
            .map(|a| uuid(&a.user_id))
            .collect()
    }

    /// `requester` asks for `tools` on the site named by its numbers.
    pub async fn submit_tools(
        &self,
        requester: Uuid,
        site: &cpb::Site,
        tools: pb::ToolAccess,
    ) -> Result<pb::AccessRequest, Status> {
        self.submit(requester, site_access(site, tools)).await
    }

    /// `requester` asks for a support level on the site.
    pub async fn submit_support(
        &self,
        requester: Uuid,
        site: &cpb::Site,
        level: Su,
    ) -> Result<pb::AccessRequest, Status> {
        self.submit(
            requester,
            pb::SubmitAccessRequestRequest {
                site_number: site.site_number.clone(),
                customer_number: site.customer_number.clone(),
                kind: Kind::SupportAccess as i32,
                requested_tools: None,
                requested_support_level: level as i32,
                justification: "I work on the site's support cases".into(),
            },
        )
        .await
    }

    pub async fn submit(
        &self,
        requester: Uuid,
        request: pb::SubmitAccessRequestRequest,
    ) -> Result<pb::AccessRequest, Status> {
        self.access()
            .submit_access_request(self.as_user(requester, request))
            .await
            .map(|r| r.into_inner().request.expect("request"))
    }

    pub async fn get_request(&self, request_id: &str) -> pb::AccessRequest {
        self.access()
            .get_access_request(self.svc(pb::GetAccessRequestRequest {
                request_id: request_id.into(),
            }))
            .await
            .expect("get access request")
            .into_inner()
            .request
            .expect("request")
    }

    /// `approver` approves `request` as asked (no other tools or support level).
    pub async fn approve_as_asked(
        &self,
        approver: Uuid,
        request: &pb::AccessRequest,
    ) -> Result<pb::ApproveAccessRequestResponse, Status> {
        self.approve(approver, &request.request_id, None, Su::Unspecified)
            .await
    }

    /// `approver` approves `request` granting `tools` (no support level).
    pub async fn approve_granting(
        &self,
        approver: Uuid,
        request: &pb::AccessRequest,
        tools: pb::ToolAccess,
    ) -> Result<pb::ApproveAccessRequestResponse, Status> {
        self.approve(approver, &request.request_id, Some(tools), Su::Unspecified)
            .await
    }

    pub async fn approve(
        &self,
        approver: Uuid,
        request_id: &str,
        granted_tools: Option<pb::ToolAccess>,
        granted_support: Su,
    ) -> Result<pb::ApproveAccessRequestResponse, Status> {
        self.access()
            .approve_access_request(self.as_user(
                approver,
                pb::ApproveAccessRequestRequest {
                    request_id: request_id.into(),
                    granted_tools,
                    granted_support_level: granted_support as i32,
                    etag: String::new(),
                    note: String::new(),
                    ..Default::default()
                },
            ))
            .await
            .map(|r| r.into_inner())
    }

    pub async fn reject(
        &self,
        approver: Uuid,
        request_id: &str,
        reason: &str,
    ) -> Result<pb::AccessRequest, Status> {
        self.access()
            .reject_access_request(self.as_user(
                approver,
                pb::RejectAccessRequestRequest {
                    request_id: request_id.into(),
                    reason: reason.into(),
                    etag: String::new(),
                },
            ))
            .await
            .map(|r| r.into_inner().request.expect("request"))
    }

    pub async fn cancel(
        &self,
        requester: Uuid,
        request_id: &str,
    ) -> Result<pb::AccessRequest, Status> {
        self.access()
            .cancel_access_request(self.as_user(
                requester,
                pb::CancelAccessRequestRequest {
                    request_id: request_id.into(),
                    etag: String::new(),
                },
            ))
            .await
            .map(|r| r.into_inner().request.expect("request"))
    }

    /// Every request of a site (all pages), optionally of one state, newest first.
    pub async fn site_requests(&self, site_id: &str, state: State) -> Vec<pb::AccessRequest> {
        all_pages(|page_token| self.requests_page(site_id, state, 1000, page_token)).await
    }

    /// One page of ListAccessRequests: its requests and the next page's token.
    pub async fn requests_page(
        &self,
        site_id: &str,
        state: State,
        page_size: i32,
        page_token: String,
    ) -> (Vec<pb::AccessRequest>, String) {
        let page = self
            .access()
            .list_access_requests(self.svc(pb::ListAccessRequestsRequest {
                site_id: site_id.into(),
                state: state as i32,
                page_size,
                page_token,
            }))
            .await
            .expect("list access requests")
            .into_inner();
        (page.requests, page.next_page_token)
    }

    /// Every request of `requester` (all pages), newest first.
    pub async fn my_requests(&self, requester: Uuid) -> Vec<pb::AccessRequest> {
        all_pages(|page_token| async move {
            let page = self
                .access()
                .list_my_access_requests(self.as_user(
                    requester,
                    pb::ListMyAccessRequestsRequest {
                        page_size: 1000,
                        page_token,
                    },
                ))
                .await
                .expect("list my access requests")
                .into_inner();
            (page.requests, page.next_page_token)
        })
        .await
    }

    /// Sets a domain policy as `setter`.
    pub async fn set_policy(
        &self,
        setter: Uuid,
        site_id: &str,
        domain: &str,
        mode: Mode,
        baseline_tools: pb::ToolAccess,
        baseline_support: Su,
    ) -> Result<pb::DomainPolicy, Status> {
        self.set_domain_policy(
            setter,
            pb::SetDomainPolicyRequest {
                site_id: site_id.into(),
                domain: domain.into(),
                policy: mode as i32,
                baseline_tools: Some(baseline_tools),
                baseline_support_level: baseline_support as i32,
                etag: String::new(),
            },
        )
        .await
    }

    /// `setter` sends `request` (a policy under an etag, say): the policy set.
    pub async fn set_domain_policy(
        &self,
        setter: Uuid,
        request: pb::SetDomainPolicyRequest,
    ) -> Result<pb::DomainPolicy, Status> {
        self.access()
            .set_domain_policy(self.as_user(setter, request))
            .await
            .map(|r| r.into_inner().domain_policy.expect("domain policy"))
    }

    /// Every audit record of a site (all pages), newest first.
    pub async fn audit(&self, site_id: &str) -> Vec<kc_proto::audit::AuditRecord> {
        all_pages(|page_token| self.audit_page(site_id, 1000, page_token)).await
    }

    /// One page of ListAuditRecords: its records and the next page's token.
    pub async fn audit_page(
        &self,
        site_id: &str,
        page_size: i32,
        page_token: String,
    ) -> (Vec<kc_proto::audit::AuditRecord>, String) {
        let page = self
            .access()
            .list_audit_records(self.svc(pb::ListAuditRecordsRequest {
                site_id: site_id.into(),
                page_size,
                page_token,
            }))
            .await
            .expect("list audit records")
            .into_inner();
        (page.records, page.next_page_token)
    }

    /// Reads access management's event stream after `after` until `count` events came.
    pub async fn events(&self, after: &str, count: usize) -> Vec<pb::Event> {
        let mut stream = self
            .access()
            .watch_events(self.svc(pb::WatchEventsRequest {
                after_cursor: after.into(),
            }))
            .await
            .expect("watch access events")
            .into_inner();
        next_messages(&mut stream, count)
            .await
            .into_iter()
            .map(|item| item.event.expect("event body"))
            .collect()
    }

    /// Reads access management's event stream from the start until `pick` finds something.
    pub async fn find_event<T>(&self, mut pick: impl FnMut(&pb::Event) -> Option<T>) -> T {
        let mut stream = self
            .access()
            .watch_events(self.svc(pb::WatchEventsRequest::default()))
            .await
            .expect("watch access events")
            .into_inner();
        find_message(&mut stream, "the access event arrives", |item| {
            pick(&item.event.expect("event body"))
        })
        .await
    }

    /// The events of the site, in stream order, once `done` holds for them (bounded wait).
    pub async fn site_events_until(
        &self,
        site_id: &str,
        mut done: impl FnMut(&[pb::Event]) -> bool,
    ) -> Vec<pb::Event> {
        let mut stream = self
            .access()
            .watch_events(self.svc(pb::WatchEventsRequest::default()))
            .await
            .expect("watch access events")
            .into_inner();
        let mut events = Vec::new();
        let waited = tokio::time::timeout(PATIENCE, async {
            while !done(&events) {
                let item = stream.next().await.expect("event stream ended");
                let event = item.expect("access event").event.expect("event body");
                if event.site_id == site_id {
                    events.push(event);
                }
            }
        })
        .await;
        assert!(
            waited.is_ok(),
            "the site's events within {PATIENCE:?}: got {events:?}"
        );
        events
    }
}
