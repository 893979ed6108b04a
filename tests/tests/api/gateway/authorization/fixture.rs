//! The fixture of the matrix: three sites, every kind of caller, and the call of every case.

use super::*;
use crate::gateway::helpers::*;
use kc_proto::access::{self as apb};
use kc_proto::contacts::{self as cpb};
use kc_proto::gateway::{self as gw};
use kc_proto::notification as npb;
use tonic::{Code, Status};
use uuid::Uuid;

/// Everything the matrix calls with.
pub(super) struct Fixture {
    suite: Suite,
    /// Site A, C3 switch off: the site every caller but [`AdminOn`] calls on.
    a: World,
    /// Site B, C3 switch on: [`AdminOn`] calls on it; its primary is [`OtherPrimary`].
    b: World,
    /// Site C, where callers nominate themselves for requests they then cancel.
    c: cpb::Site,
    stranger: Person,
    /// A registered user the session cases sign in.
    login_user: Person,
    service_token: String,
    /// The client id and secret of a relying application the token case signs in with.
    relying_app: (uuid::Uuid, String),
}

impl Fixture {
    pub(super) async fn build(suite: Suite) -> Self {
        let a = World::build(&suite, "Site A", false).await;
        let b = World::build(&suite, "Site B", true).await;
        let c_primary = suite.person("Site C Primary").await;
        let c = suite.create_site_applied("Site C", &c_primary, None).await;
        let stranger = suite.person("Stranger").await;
        let login_user = suite.person("Login User").await;
        // A relying application allowed to send notices (issue 15: the scope `notices`).
        let (_, service_token) = suite
            .scoped_service_account("kc-billing", &["notices"])
            .await;
        let relying_app = suite
            .service_account_credentials("kc-matrix-portal", &["authz"])
            .await;
        Self {
            suite,
            a,
            b,
            c,
            stranger,
            login_user,
            service_token,
            relying_app,
        }
    }

    fn token(&self, who: Who) -> Option<&str> {
        Some(match who {
            Operator => &self.suite.operator.token,
            Primary => &self.a.primary.token,
            AdminOff => &self.a.admin.token,
            AdminOn => &self.b.admin.token,
            Stc => &self.a.stc.token,
            Secondary => &self.a.secondary.token,
            Viewer => &self.a.viewer.token,
            Stranger => &self.stranger.token,
            OtherPrimary => &self.b.primary.token,
            Service => &self.service_token,
            Anonymous => return None,
        })
    }

    /// The site `who` calls on.
    fn target(&self, who: Who) -> &World {
        if who == AdminOn { &self.b } else { &self.a }
    }

    /// A fresh person's pending request on `site` of `kind` (site access: account documents
    /// VIEW, which every approver holds, so that T4 never refuses the approval); returns its
    /// id.
    async fn pending_request(&self, site: &cpb::Site, kind: apb::AccessRequestKind) -> String {
        let requester = self.suite.person("Requester").await;
        let asked = tools(|t| t.account_documents = apb::AccountDocumentsAccess::View as i32);
        self.suite
            .gw()
            .self_nominate(authed(
                Some(&requester.token),
                nomination_for(site, kind, asked),
            ))
            .await
            .expect("a fresh person nominates itself")
            .into_inner()
            .request
            .expect("request")
            .request_id
    }

    /// Calls the case's RPC as `who` on its target site, with valid inputs (and the
    /// per-call fixtures it needs), and puts the site back where a call changed it.
    pub(super) async fn attempt(&self, case: &str, who: Who) -> Result<(), Status> {
        let suite = &self.suite;
        let token = self.token(who);
        let world = self.target(who);
        let site_id = world.id();
        let mut gw = suite.gw();
        match case {
            "Register" => gw
                .register(authed(
                    token,
                    gw::RegisterRequest {
                        email: fresh_email("newcomer"),
                        display_name: "Nouvelle Personne".into(),
                        password: PASSWORD.into(),
                        locale: "fr".into(),
                    },
                ))
                .await
                .map(drop),
            "VerifyEmail" => {
                let email = fresh_email("verifier");
                suite
                    .register(&email, "Verifier", PASSWORD, "en")
                    .await
                    .expect("register");
                let code = suite.code_for(&email).await.code;
                let verified = gw
                    .verify_email(authed(
                        token,
                        gw::VerifyEmailRequest {
                            email: email.clone(),
                            code,
                            password: PASSWORD.into(),
                        },
                    ))
                    .await?
                    .into_inner()
                    .user
                    .expect("user");
                check(verified.email_verified && verified.email == email, || {
                    format!("verified: {verified:?}")
                })
            }
            "RequestPasswordReset" => gw
                .request_password_reset(authed(
                    token,
                    gw::RequestPasswordResetRequest {
                        email: fresh_email("forgetful"),
                    },
                ))
                .await
                .map(drop),
            "ResetPassword" => {
                let person = suite.person("Reset Person").await;
                gw.request_password_reset(gw::RequestPasswordResetRequest {
                    email: person.email.clone(),
                })
                .await
                .expect("ask for a reset");
                let code = suite.code_for(&person.email).await.code;
                gw.reset_password(authed(
                    token,
                    gw::ResetPasswordRequest {
                        email: person.email.clone(),
                        code,
                        new_password: "another correct horse battery".into(),
                    },
                ))
                .await
                .map(drop)
            }
            "UpdateMe" => {
                let me = gw
                    .update_me(authed(
                        token,
                        gw::UpdateMeRequest {
                            display_name: None,
                            locale: Some("en".into()),
                            etag: String::new(),
                        },
                    ))
                    .await?
                    .into_inner()
                    .user
                    .expect("user");
                check(me.locale == "en", || format!("updated: {me:?}"))
            }
            "ChangePassword" => reached_identity(
                gw.change_password(authed(
                    token,
                    gw::ChangePasswordRequest {
                        current_password: "not the current password".into(),
                        new_password: "another correct horse battery".into(),
                    },
                ))
                .await,
                "current_password",
            ),
            "ChangeEmail" => gw
                .change_email(authed(
                    token,
                    gw::ChangeEmailRequest {
                        new_email: fresh_email("moving"),
                        current_password: PASSWORD.into(),
                    },
                ))
                .await
                .map(drop),
            "ConfirmEmailChange" => reached_identity(
                gw.confirm_email_change(authed(
                    token,
                    gw::ConfirmEmailChangeRequest {
                        code: "000000".into(),
                    },
                ))
                .await,
                "code",
            ),
            "ConfirmNotificationEmail" => reached_rule(
                gw.confirm_notification_email(authed(
                    token,
                    gw::ConfirmNotificationEmailRequest {
                        code: "ABCDEFGHJKMNPQRSTVWX".into(),
                        ..Default::default()
                    },
                ))
                .await,
                "C11",
            ),
            "Login" => gw
                .login(authed(
                    token,
                    gw::LoginRequest {
                        email: self.login_user.email.clone(),
                        password: PASSWORD.into(),
                    },
                ))
                .await
                .map(drop),
            "IssueServiceToken" => gw
                .issue_service_token(authed(
                    token,
                    gw::IssueServiceTokenRequest {
                        client_id: self.relying_app.0.to_string(),
                        client_secret: self.relying_app.1.clone(),
                    },
                ))
                .await
                .map(drop),
            "Refresh" => {
                let session = suite.session(&self.login_user.email).await;
                gw.refresh(authed(
                    token,
                    gw::RefreshRequest {
                        refresh_token: session.refresh_token,
                    },
                ))
                .await
                .map(drop)
            }
            "Logout" => {
                let session = suite.session(&self.login_user.email).await;
                gw.logout(authed(
                    token,
                    gw::LogoutRequest {
                        refresh_token: session.refresh_token,
                    },
                ))
                .await
                .map(drop)
            }
            "GetMe" => {
                let me = gw
                    .get_me(authed(token, gw::GetMeRequest {}))
                    .await?
                    .into_inner();
                // Every site where the caller holds a role is listed, with that role.
                let role = match who {
                    Primary => Some(Role::Primary),
                    AdminOff | AdminOn => Some(Role::Administrative),
                    Stc => Some(Role::SiteTechnical),
                    Secondary => Some(Role::Secondary),
                    Viewer => Some(Role::SiteUser),
                    _ => None,
                };
                let listed = me
                    .sites
                    .iter()
                    .find(|mine| mine.site.as_ref().is_some_and(|s| s.site_id == site_id));
                match role {
                    Some(role) => check(
                        listed.is_some_and(|mine| mine.roles.contains(&(role as i32))),
                        || format!("GetMe lists the site with {role:?}: {me:?}"),
                    ),
                    None => check(listed.is_none(), || {
                        format!("GetMe lists no site the caller has nothing to do with: {me:?}")
                    }),
                }
            }
            "CreateSite" => {
                let (site_number, customer_number) = suite.numbers();
                gw.create_site(authed(
                    token,
                    gw::CreateSiteRequest {
                        site_number,
                        customer_number,
                        name: "Acme Grenoble".into(),
                        country_code: "FR".into(),
                        language: "fr".into(),
                        program: cpb::Program::PassportAdvantageExpress as i32,
                        primary_contact: Some(gw::ContactPerson {
                            email: fresh_email("invitedprimary"),
                            display_name: "Invited Primary".into(),
                            locale: "fr".into(),
                            details: None,
                        }),
                        ..Default::default()
                    },
                ))
                .await
                .map(drop)
            }
            "GetSite" => gw
                .get_site(authed(token, gw::GetSiteRequest { site_id }))
                .await
                .map(drop),
            "ListMySites" => gw
                .list_my_sites(authed(token, gw::ListMySitesRequest::default()))
                .await
                .map(drop),
            "UpdateSite" => gw
                .update_site(authed(
                    token,
                    gw::UpdateSiteRequest {
                        site: Some(cpb::Site {
                            site_id,
                            name: format!("{} (renamed)", world.site.name),
                            ..Default::default()
                        }),
                        update_mask: Some(mask(&["name"])),
                        etag: String::new(),
                    },
                ))
                .await
                .map(drop),
            "UpdateSite(S&S end date)" => gw
                .update_site(authed(
                    token,
                    gw::UpdateSiteRequest {
                        site: Some(cpb::Site {
                            site_id,
                            support_active: true,
                            support_end_date: "2031-06-30".into(),
                            ..Default::default()
                        }),
                        update_mask: Some(mask(&["support_end_date"])),
                        etag: String::new(),
                    },
                ))
                .await
                .map(drop),
            "GetSiteCompliance" => gw
                .get_site_compliance(authed(token, gw::GetSiteComplianceRequest { site_id }))
                .await
                .map(drop),
            "ShowAllContacts" => {
                let contacts = gw
                    .show_all_contacts(authed(
                        token,
                        gw::ShowAllContactsRequest {
                            site_id,
                            ..Default::default()
                        },
                    ))
                    .await?
                    .into_inner()
                    .contacts;
                check(
                    contacts.iter().any(|c| c.user_id == world.primary.id),
                    || format!("the primary is among the contacts: {contacts:?}"),
                )
            }
            "AssignContact" => gw
                .assign_contact(authed(
                    token,
                    gw::AssignContactRequest {
                        site_id,
                        email: fresh_email("siteuser"),
                        display_name: Some("Utilisateur Invité".into()),
                        role: Role::SiteUser as i32,
                        details: None,
                        locale: "fr".into(),
                    },
                ))
                .await
                .map(drop),
            "UpdateContact" => gw
                .update_contact(authed(
                    token,
                    gw::UpdateContactRequest {
                        site_id,
                        contact_id: world.secondary_contact.clone(),
                        details: Some(cpb::ContactDetails {
                            phone: "+33472000001".into(),
                            job_title: "Acheteur".into(),
                            notification_email: String::new(),
                        }),
                        etag: String::new(),
                    },
                ))
                .await
                .map(drop),
            "RemoveContact" => {
                let contact = suite.assign_invited(&site_id, Role::SiteUser).await;
                gw.remove_contact(authed(
                    token,
                    gw::RemoveContactRequest {
                        site_id,
                        contact_id: contact.contact_id,
                        etag: String::new(),
                    },
                ))
                .await
                .map(drop)
            }
            "ReplaceContact" => gw
                .replace_contact(authed(
                    token,
                    gw::ReplaceContactRequest {
                        site_id,
                        role: Role::Billing as i32,
                        email: fresh_email("billing"),
                        display_name: Some("Billing Person".into()),
                        details: None,
                        locale: "en".into(),
                    },
                ))
                .await
                .map(drop),
            "TransferPrimaryContact" => {
                let transfer = |token: Option<&str>, to: &Person| {
                    let mut gw = suite.gw();
                    let request = authed(
                        token,
                        gw::TransferPrimaryContactRequest {
                            site_id: site_id.clone(),
                            email: to.email.clone(),
                            display_name: None,
                            etag: String::new(),
                            previous_primary_role: Role::SiteUser as i32,
                            locale: String::new(),
                        },
                    );
                    async move { gw.transfer_primary_contact(request).await }
                };
                transfer(token, &world.spare).await?;
                // Put the primary back (the operator), each step once access management
                // applied the one before.
                suite
                    .wait_role(&site_id, &world.spare.id, Role::Primary)
                    .await;
                transfer(Some(&suite.operator.token), &world.primary)
                    .await
                    .expect("the operator gives the primary role back");
                suite
                    .wait_role(&site_id, &world.primary.id, Role::Primary)
                    .await;
                Ok(())
            }
            "GetAccessProfile(another user)" => gw
                .get_access_profile(authed(
                    token,
                    gw::GetAccessProfileRequest {
                        site_id,
                        user_id: world.subject.id.clone(),
                    },
                ))
                .await
                .map(drop),
            "GetAccessProfile(own)" => gw
                .get_access_profile(authed(
                    token,
                    gw::GetAccessProfileRequest {
                        site_id,
                        user_id: String::new(),
                    },
                ))
                .await
                .map(drop),
            "SetToolAccess" => gw
                .set_tool_access(authed(
                    token,
                    gw::SetToolAccessRequest {
                        site_id,
                        user_id: world.subject.id.clone(),
                        tools: Some(tools(|t| {
                            t.account_documents = apb::AccountDocumentsAccess::View as i32
                        })),
                        reason: "reads the invoices".into(),
                        etag: String::new(),
                        ..Default::default()
                    },
                ))
                .await
                .map(drop),
            "SetSupportAccess" => gw
                .set_support_access(authed(
                    token,
                    gw::SetSupportAccessRequest {
                        site_id,
                        user_id: world.subject.id.clone(),
                        support_level: apb::SupportLevel::Basic as i32,
                        reason: "opens its own cases".into(),
                        etag: String::new(),
                        ..Default::default()
                    },
                ))
                .await
                .map(drop),
            "RevokeAccess" => {
                let granted =
                    tools(|t| t.account_documents = apb::AccountDocumentsAccess::View as i32);
                suite.grant(&site_id, &world.revokee.id, granted).await;
                gw.revoke_access(authed(
                    token,
                    gw::RevokeAccessRequest {
                        site_id,
                        user_id: world.revokee.id.clone(),
                        reason: "left the team".into(),
                        etag: String::new(),
                    },
                ))
                .await
                .map(drop)
            }
            "ListSupportUsers" => gw
                .list_support_users(authed(
                    token,
                    gw::ListSupportUsersRequest {
                        site_id,
                        ..Default::default()
                    },
                ))
                .await
                .map(drop),
            "AddSupportUser" => gw
                .add_support_user(authed(
                    token,
                    gw::AddSupportUserRequest {
                        site_id,
                        email: fresh_email("supportuser"),
                        display_name: Some("Utilisateur Support".into()),
                        locale: "fr".into(),
                        support_level: apb::SupportLevel::Basic as i32,
                        reason: "ouvre ses propres dossiers".into(),
                    },
                ))
                .await
                .map(drop),
            "RevokeSupportAccess" => gw
                .revoke_support_access(authed(
                    token,
                    gw::RevokeSupportAccessRequest {
                        site_id,
                        user_id: world.subject.id.clone(),
                        reason: "a quitté l'équipe support".into(),
                        etag: String::new(),
                    },
                ))
                .await
                .map(drop),
            "AddSiteUser" => gw
                .add_site_user(authed(
                    token,
                    gw::AddSiteUserRequest {
                        site_id,
                        email: fresh_email("newsiteuser"),
                        display_name: Some("Nouvel Utilisateur".into()),
                        locale: "fr".into(),
                        reason: "rejoint le site".into(),
                        ..Default::default()
                    },
                ))
                .await
                .map(drop),
            "ListSiteAccess" => gw
                .list_site_access(authed(
                    token,
                    gw::ListSiteAccessRequest {
                        site_id,
                        ..Default::default()
                    },
                ))
                .await
                .map(drop),
            "SelfNominate" => match token {
                Some(token) => nominate(
                    suite,
                    token,
                    &world.site,
                    apb::AccessRequestKind::SiteAccess,
                )
                .await
                .map(|_| ()),
                None => gw
                    .self_nominate(nomination(&world.site, apb::AccessRequestKind::SiteAccess))
                    .await
                    .map(drop),
            },
            "ListMyRequests" => gw
                .list_my_requests(authed(token, gw::ListMyRequestsRequest::default()))
                .await
                .map(drop),
            "CancelMyRequest" => {
                // The caller's own pending request when it can have one, else a stranger's.
                let request_id = match token {
                    Some(token) if who != Service => {
                        nominate(suite, token, &self.c, apb::AccessRequestKind::SiteAccess)
                            .await
                            .expect("the caller nominates itself on site C")
                            .request_id
                    }
                    _ => {
                        self.pending_request(&self.c, apb::AccessRequestKind::SiteAccess)
                            .await
                    }
                };
                gw.cancel_my_request(authed(
                    token,
                    gw::CancelMyRequestRequest {
                        request_id,
                        etag: String::new(),
                    },
                ))
                .await
                .map(drop)
            }
            "ListPendingRequests" => gw
                .list_pending_requests(authed(
                    token,
                    gw::ListPendingRequestsRequest {
                        site_id,
                        ..Default::default()
                    },
                ))
                .await
                .map(drop),
            "DecideAccessRequest(site access)" | "DecideAccessRequest(support access)" => {
                let kind = if case.ends_with("(site access)") {
                    apb::AccessRequestKind::SiteAccess
                } else {
                    apb::AccessRequestKind::SupportAccess
                };
                let request_id = self.pending_request(&world.site, kind).await;
                gw.decide_access_request(authed(
                    token,
                    gw::DecideAccessRequestRequest {
                        request_id,
                        decision: gw::AccessDecision::Approve as i32,
                        granted_tools: None,
                        granted_support_level: apb::SupportLevel::Unspecified as i32,
                        reason: "welcome".into(),
                        etag: String::new(),
                        ..Default::default()
                    },
                ))
                .await
                .map(drop)
            }
            "SetDomainPolicy" => gw
                .set_domain_policy(authed(
                    token,
                    gw::SetDomainPolicyRequest {
                        site_id,
                        domain: "acme.example".into(),
                        policy: apb::DomainPolicyMode::Manual as i32,
                        baseline_tools: None,
                        baseline_support_level: apb::SupportLevel::Unspecified as i32,
                        etag: String::new(),
                    },
                ))
                .await
                .map(drop),
            "SendNotice" => gw
                .send_notice(authed(
                    token,
                    gw::SendNoticeRequest {
                        site_id,
                        kind: npb::NoticeKind::Renewal as i32,
                        params: [("end_date".to_owned(), "2030-12-31".to_owned())].into(),
                        idempotency_key: Uuid::new_v4().to_string(),
                    },
                ))
                .await
                .map(drop),
            "ListSiteNotifications" => gw
                .list_site_notifications(authed(
                    token,
                    gw::ListSiteNotificationsRequest {
                        site_id,
                        ..Default::default()
                    },
                ))
                .await
                .map(drop),
            "ListSiteAudit" => gw
                .list_site_audit(authed(
                    token,
                    gw::ListSiteAuditRequest {
                        site_id,
                        ..Default::default()
                    },
                ))
                .await
                .map(drop),
            "FindSite" => gw
                .find_site(authed(
                    token,
                    gw::FindSiteRequest {
                        key: Some(gw::find_site_request::Key::SiteNumber(
                            world.site.site_number.clone(),
                        )),
                    },
                ))
                .await
                .map(drop),
            "ListCustomerSites" => gw
                .list_customer_sites(authed(
                    token,
                    gw::ListCustomerSitesRequest {
                        customer_number: world.site.customer_number.clone(),
                        ..Default::default()
                    },
                ))
                .await
                .map(drop),
            // No such notification: an allowed caller reaches notification's own look-up.
            "RequestPrimaryRecovery" => reached_identity(
                gw.request_primary_recovery(authed(
                    token,
                    gw::RequestPrimaryRecoveryRequest {
                        site_number: world.site.site_number.clone(),
                        customer_number: world.site.customer_number.clone(),
                        reason: String::new(),
                    },
                ))
                .await,
                "reason",
            ),
            "RefusePrimaryRecovery" => reached_identity(
                gw.refuse_primary_recovery(authed(
                    token,
                    gw::RefusePrimaryRecoveryRequest {
                        recovery_id: "not-a-recovery-id".into(),
                        reason: "the primary is still here".into(),
                    },
                ))
                .await,
                "recovery_id",
            ),
            "GetPrimaryRecovery" => reached_identity(
                gw.get_primary_recovery(authed(
                    token,
                    gw::GetPrimaryRecoveryRequest {
                        recovery_id: "not-a-recovery-id".into(),
                    },
                ))
                .await,
                "recovery_id",
            ),
            "AttestPrimaryRecovery" => gw
                .attest_primary_recovery(authed(
                    token,
                    gw::AttestPrimaryRecoveryRequest {
                        recovery_id: Uuid::now_v7().to_string(),
                        new_primary_email: "new.primary@matrix.example".into(),
                        reason: "the primary left the company".into(),
                        ..Default::default()
                    },
                ))
                .await
                .map(drop),
            "RetryNotification" => gw
                .retry_notification(authed(
                    token,
                    gw::RetryNotificationRequest {
                        notification_id: Uuid::now_v7().to_string(),
                    },
                ))
                .await
                .map(drop),
            "ListDomainPolicies" => gw
                .list_domain_policies(authed(
                    token,
                    gw::ListDomainPoliciesRequest {
                        site_id,
                        ..Default::default()
                    },
                ))
                .await
                .map(drop),
            "BlockRequester" => gw
                .block_requester(authed(
                    token,
                    gw::BlockRequesterRequest {
                        site_id,
                        email: fresh_email("blocked"),
                        reason: "matrix".into(),
                        ..Default::default()
                    },
                ))
                .await
                .map(drop),
            // The operator blocks a fresh address first, so that an allowed caller lifts it.
            "UnblockRequester" => {
                let email = fresh_email("unblocked");
                gw.block_requester(authed(
                    Some(&suite.operator.token),
                    gw::BlockRequesterRequest {
                        site_id: site_id.clone(),
                        email: email.clone(),
                        reason: "matrix".into(),
                        ..Default::default()
                    },
                ))
                .await
                .expect("the operator blocks an address");
                gw.unblock_requester(authed(
                    token,
                    gw::UnblockRequesterRequest {
                        site_id,
                        email,
                        reason: "matrix".into(),
                        ..Default::default()
                    },
                ))
                .await
                .map(drop)
            }
            "ListBlockedRequesters" => gw
                .list_blocked_requesters(authed(
                    token,
                    gw::ListBlockedRequestersRequest {
                        site_id,
                        ..Default::default()
                    },
                ))
                .await
                .map(drop),
            "ListComplianceGaps" => gw
                .list_compliance_gaps(authed(
                    token,
                    gw::ListComplianceGapsRequest {
                        customer_number: world.site.customer_number.clone(),
                        ..Default::default()
                    },
                ))
                .await
                .map(drop),
            "ImportContacts" => {
                let row = gw::ContactRow {
                    site_number: world.site.site_number.clone(),
                    email: fresh_email("imported"),
                    display_name: "Personne Importée".into(),
                    locale: "fr".into(),
                    role: "site-user".into(),
                    ..Default::default()
                };
                let messages = vec![gw::ImportContactsRequest {
                    options: None,
                    rows: vec![row],
                }];
                let mut answers = gw
                    .import_contacts(authed(token, futures::stream::iter(messages)))
                    .await?
                    .into_inner();
                let answer = answers
                    .message()
                    .await?
                    .ok_or_else(|| Status::unknown("(test check failed) no answer"))?;
                if answer.outcome == gw::ImportOutcome::Applied as i32 {
                    Ok(())
                } else if answer.code == "PERMISSION_DENIED" {
                    Err(Status::permission_denied(answer.message))
                } else {
                    Err(Status::unknown(format!("(test check failed) {answer:?}")))
                }
            }
            "ExportContacts" => {
                let mut rows = gw
                    .export_contacts(authed(
                        token,
                        gw::ExportContactsRequest {
                            customer_number: String::new(),
                            site_numbers: vec![world.site.site_number.clone()],
                        },
                    ))
                    .await?
                    .into_inner();
                let mut seen = 0;
                while rows.message().await?.is_some() {
                    seen += 1;
                }
                check(seen > 0, || "the export has the site's contacts".to_owned())
            }
            other => panic!("no call for the case {other}"),
        }
    }
}

/// `Ok` when the call was refused by identity's own check of `field` (a wrong password or
/// code): it went past the gateway's authorization. Any other refusal is returned as is, and
/// a success is a failure of the cell (the input was meant to be wrong).
fn reached_identity<T: std::fmt::Debug>(
    result: Result<T, Status>,
    field: &str,
) -> Result<(), Status> {
    match result {
        Ok(value) => Err(Status::unknown(format!(
            "(test check failed) a wrong {field} was accepted: {value:?}"
        ))),
        Err(status)
            if status.code() == Code::InvalidArgument
                && kc_runtime::error::field_violations(&status)
                    .iter()
                    .any(|violation| violation.field == field) =>
        {
            Ok(())
        }
        Err(status) => Err(status),
    }
}

/// `Ok` when the call was refused by the owning service's own check citing `rule`
/// (FAILED_PRECONDITION): it went past the gateway's authorization. Any other refusal is
/// returned as is, and a success is a failure of the cell (the input was meant to be wrong).
fn reached_rule<T: std::fmt::Debug>(result: Result<T, Status>, rule: &str) -> Result<(), Status> {
    match result {
        Ok(value) => Err(Status::unknown(format!(
            "(test check failed) a wrong input was accepted: {value:?}"
        ))),
        Err(status)
            if status.code() == Code::FailedPrecondition && status.message().contains(rule) =>
        {
            Ok(())
        }
        Err(status) => Err(status),
    }
}

/// `Ok` when `holds`, else a failure of the cell (shown in the matrix) saying what was wrong
/// with a successful answer.
fn check(holds: bool, what: impl FnOnce() -> String) -> Result<(), Status> {
    if holds {
        Ok(())
    } else {
        Err(Status::unknown(format!("(test check failed) {}", what())))
    }
}
