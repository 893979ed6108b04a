//! The gateway's authorization matrix: every `GatewayService` RPC × every kind of caller →
//! allowed or refused, driven by ONE table ([`MATRIX`]) that follows DOMAIN.md (T2, T3, T4,
//! U4, U5, A3, C2, C3, C8) and the permission each RPC documents in the proto:
//!
//! | caller | rights on the site it calls (DOMAIN.md T3, U5) |
//! |---|---|
//! | operator | passes every check |
//! | the site's primary | every tool at its top level; no support ADMINISTRATOR (the site has an STC, R1/U5) |
//! | administrative contact, C3 switch off | account documents VIEW |
//! | administrative contact, C3 switch on | account documents VIEW, manage access UPDATE |
//! | the STC | support ADMINISTRATOR (U5) |
//! | a secondary without grants | manage access UPDATE, contact updates UPDATE (T3) |
//! | a site user granted contact updates VIEW | CONTACTS_VIEW |
//! | a user with no relation to the site | nothing |
//! | the primary of another site | nothing on this site |
//! | a service account | SendNotice only (and the public session RPCs) |
//! | no token | the public session RPCs only |
//!
//! "Allowed" means the call did not fail with PERMISSION_DENIED or UNAUTHENTICATED; the
//! inputs are valid, so an allowed call succeeds unless the table names the business error
//! it may meet instead. A refused call fails with PERMISSION_DENIED (UNAUTHENTICATED without
//! a token). The object-level test checks that ids of another site's objects never read or
//! change that site.

mod common;

use std::collections::BTreeSet;
use std::fmt::Write as _;

use common::*;
use kc_proto::access::{self as apb};
use kc_proto::contacts::{self as cpb};
use kc_proto::gateway::{self as gw};
use kc_proto::notification as npb;
use prost::Message;
use prost_types::{FieldMask, FileDescriptorSet};
use tonic::{Code, Status};
use uuid::Uuid;

/// A kind of caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Who {
    /// An operator.
    Operator,
    /// The primary contact of site A.
    Primary,
    /// The administrative contact of site A, whose C3 switch is off.
    AdminOff,
    /// The administrative contact of site B, whose C3 switch is on (it calls on site B).
    AdminOn,
    /// The site technical contact of site A.
    Stc,
    /// A secondary contact of site A without grants.
    Secondary,
    /// A site user of site A granted contact updates VIEW (CONTACTS_VIEW).
    Viewer,
    /// A registered user with no relation to site A.
    Stranger,
    /// The primary contact of site B, calling on site A.
    OtherPrimary,
    /// A service account (not the gateway's).
    Service,
    /// No token at all.
    Anonymous,
}

use Who::*;

/// Every caller, in column order.
const CALLERS: [Who; 11] = [
    Operator,
    Primary,
    AdminOff,
    AdminOn,
    Stc,
    Secondary,
    Viewer,
    Stranger,
    OtherPrimary,
    Service,
    Anonymous,
];
/// Every caller with a token, person or service.
const ANYONE: &[Who] = &CALLERS;
/// Every signed-in person (the RPCs "any signed-in user, about itself").
const PEOPLE: &[Who] = &[
    Operator,
    Primary,
    AdminOff,
    AdminOn,
    Stc,
    Secondary,
    Viewer,
    Stranger,
    OtherPrimary,
];
/// Holders of PERMISSION_CONTACTS_VIEW on site A: the primary and the secondary (T3) and
/// the viewer.
const CONTACTS_VIEW: &[Who] = &[Operator, Primary, Secondary, Viewer];
/// Holders of PERMISSION_ACCOUNT_MANAGEMENT: the primary only (T2, T3).
const ACCOUNT_MANAGEMENT: &[Who] = &[Operator, Primary];
/// Holders of PERMISSION_CONTACTS_UPDATE: the primary (T3, C2) and the secondary (T3).
const CONTACTS_UPDATE: &[Who] = &[Operator, Primary, Secondary];
/// Holders of PERMISSION_ACCESS_VIEW / ACCESS_UPDATE / APPROVE_SITE_ACCESS: the primary,
/// the secondary, and the administrative contact when the C3 switch is on (T3, A3).
const MANAGE_ACCESS: &[Who] = &[Operator, Primary, AdminOn, Secondary];
/// Holders of PERMISSION_SUPPORT_ADMIN / APPROVE_SUPPORT_ACCESS: the STC (U5); not the
/// primary, since the site has an STC (R1).
const SUPPORT_ADMIN: &[Who] = &[Operator, Stc];

/// THE table: case → who may call it, and the business error an allowed caller may meet
/// instead of succeeding (with these valid inputs). A case is an RPC, with a qualifier in
/// parentheses when one RPC has two rules (e.g. the fields of UpdateSite only operators may
/// change).
type Row = (&'static str, &'static [Who], &'static [(Who, Code)]);
const MATRIX: &[Row] = &[
    // Sessions: public, rate limited (off in this suite).
    ("Register", ANYONE, &[]),
    ("VerifyEmail", ANYONE, &[]),
    ("RequestPasswordReset", ANYONE, &[]),
    ("ResetPassword", ANYONE, &[]),
    ("Login", ANYONE, &[]),
    ("Refresh", ANYONE, &[]),
    ("Logout", ANYONE, &[]),
    // The caller itself. ChangePassword and ConfirmEmailChange are called with a wrong
    // current password and a wrong code (an allowed caller reaches identity's check of
    // them), so that no fixture's session ends.
    ("UpdateMe", PEOPLE, &[]),
    ("ChangePassword", PEOPLE, &[]),
    ("ChangeEmail", PEOPLE, &[]),
    ("ConfirmEmailChange", PEOPLE, &[]),
    // Called with a well-formed wrong code: an allowed caller reaches the registry's check
    // of it (C11).
    ("ConfirmNotificationEmail", PEOPLE, &[]),
    ("GetMe", PEOPLE, &[]),
    // Sites.
    ("CreateSite", &[Operator], &[]),
    ("GetSite", CONTACTS_VIEW, &[]),
    ("ListMySites", PEOPLE, &[]),
    ("UpdateSite", ACCOUNT_MANAGEMENT, &[]),
    ("UpdateSite(S&S end date)", &[Operator], &[]),
    ("GetSiteCompliance", CONTACTS_VIEW, &[]),
    // Contacts.
    ("ShowAllContacts", CONTACTS_VIEW, &[]),
    ("AssignContact", CONTACTS_UPDATE, &[]),
    ("UpdateContact", CONTACTS_UPDATE, &[]),
    ("RemoveContact", CONTACTS_UPDATE, &[]),
    ("ReplaceContact", CONTACTS_UPDATE, &[]),
    ("TransferPrimaryContact", ACCOUNT_MANAGEMENT, &[]),
    // Rights.
    ("GetAccessProfile(another user)", MANAGE_ACCESS, &[]),
    // One's own profile needs a relation to the site: a role (any role, a secondary's
    // too) or rights there; a site one has nothing to do with is refused like any other.
    (
        "GetAccessProfile(own)",
        &[Operator, Primary, AdminOff, AdminOn, Stc, Secondary, Viewer],
        &[],
    ),
    ("SetToolAccess", MANAGE_ACCESS, &[]),
    ("SetSupportAccess", SUPPORT_ADMIN, &[]),
    // The secondary holds manage access UPDATE but not account documents VIEW, which the
    // fixture's target holds: it cannot take it away (T4).
    (
        "RevokeAccess",
        MANAGE_ACCESS,
        &[(Secondary, Code::FailedPrecondition)],
    ),
    ("ListSiteAccess", MANAGE_ACCESS, &[]),
    // Requests. The primary already holds everything it could ask for (rule A5).
    (
        "SelfNominate",
        PEOPLE,
        &[(Primary, Code::FailedPrecondition)],
    ),
    ("ListMyRequests", PEOPLE, &[]),
    ("CancelMyRequest", PEOPLE, &[]),
    (
        "ListPendingRequests",
        &[Operator, Primary, AdminOn, Stc, Secondary],
        &[],
    ),
    // The request asks for account documents VIEW, above the secondary's own level (A4, T4).
    (
        "DecideAccessRequest(site access)",
        MANAGE_ACCESS,
        &[(Secondary, Code::FailedPrecondition)],
    ),
    ("DecideAccessRequest(support access)", SUPPORT_ADMIN, &[]),
    ("SetDomainPolicy", MANAGE_ACCESS, &[]),
    // Notices.
    ("SendNotice", &[Operator, Service], &[]),
    ("ListSiteNotifications", ACCOUNT_MANAGEMENT, &[]),
    // Audit: CONTACTS_VIEW and ACCESS_VIEW.
    ("ListSiteAudit", &[Operator, Primary, Secondary], &[]),
];

/// The RPC of a case: its name up to the qualifier.
fn rpc_of(case: &str) -> &str {
    case.split('(').next().unwrap_or(case)
}

/// Every method of `GatewayService` in the compiled descriptor set.
fn proto_methods() -> BTreeSet<String> {
    let set = FileDescriptorSet::decode(kc_proto::FILE_DESCRIPTOR_SET).expect("descriptors");
    let (package, service) = kc_gateway::SERVICE_NAME
        .rsplit_once('.')
        .expect("a qualified service name");
    let file = set
        .file
        .iter()
        .find(|file| file.package() == package && file.service.iter().any(|s| s.name() == service))
        .expect("the gateway proto is in the descriptor set");
    file.service
        .iter()
        .find(|s| s.name() == service)
        .expect("GatewayService")
        .method
        .iter()
        .map(|method| method.name().to_owned())
        .collect()
}

#[test]
fn the_matrix_covers_every_rpc_of_the_service() {
    let proto = proto_methods();
    let table: BTreeSet<String> = MATRIX
        .iter()
        .map(|(case, _, _)| rpc_of(case).to_owned())
        .collect();
    let missing: Vec<_> = proto.difference(&table).collect();
    assert!(
        missing.is_empty(),
        "RPCs missing from the matrix: {missing:?}"
    );
    let unknown: Vec<_> = table.difference(&proto).collect();
    assert!(unknown.is_empty(), "matrix rows of no RPC: {unknown:?}");
    let cases: BTreeSet<&str> = MATRIX.iter().map(|(case, _, _)| *case).collect();
    assert_eq!(cases.len(), MATRIX.len(), "a case is in the matrix twice");
    // The public RPCs are exactly the session RPCs, and only they admit anonymous callers.
    let public: BTreeSet<&str> = MATRIX
        .iter()
        .filter(|(_, allowed, _)| allowed.contains(&Anonymous))
        .map(|(case, _, _)| *case)
        .collect();
    assert_eq!(
        public,
        BTreeSet::from([
            "Register",
            "VerifyEmail",
            "RequestPasswordReset",
            "ResetPassword",
            "Login",
            "Refresh",
            "Logout"
        ])
    );
}

/// One site and the people around it.
struct World {
    site: cpb::Site,
    primary: Person,
    stc: Person,
    admin: Person,
    secondary: Person,
    /// SITE_USER with contact updates VIEW.
    viewer: Person,
    /// SITE_USER whose rights and profile the cases read and change.
    subject: Person,
    /// SITE_USER whose explicit grants RevokeAccess removes.
    revokee: Person,
    /// Registered, no role: the primary role goes to it and comes back.
    spare: Person,
    /// The secondary's contact id.
    secondary_contact: String,
}

impl World {
    /// Builds a site with S&S, its primary and STC, an administrative contact, a
    /// secondary, and three site users (one granted contact updates VIEW); `switch` is the
    /// C3 switch. Returns once access management knows every role.
    async fn build(suite: &Suite, name: &str, switch: bool) -> Self {
        let primary = suite.person(&format!("{name} Primary")).await;
        let stc = suite.person(&format!("{name} Technical")).await;
        let admin = suite.person(&format!("{name} Admin")).await;
        let secondary = suite.person(&format!("{name} Secondary")).await;
        let viewer = suite.person(&format!("{name} Viewer")).await;
        let subject = suite.person(&format!("{name} Subject")).await;
        let revokee = suite.person(&format!("{name} Revokee")).await;
        let spare = suite.person(&format!("{name} Spare")).await;

        let site = suite.create_site(name, &primary, Some(&stc)).await;
        let id = site.site_id.clone();
        suite.wait_role(&id, &primary.id, Role::Primary).await;
        suite.wait_role(&id, &stc.id, Role::SiteTechnical).await;
        let secondary_contact = suite
            .assign(&id, &secondary, Role::Secondary)
            .await
            .contact_id;
        for user in [&viewer, &subject, &revokee] {
            suite.assign(&id, user, Role::SiteUser).await;
        }
        suite
            .grant(
                &id,
                &viewer.id,
                tools(|t| t.contact_updates = apb::ContactUpdatesAccess::View as i32),
            )
            .await;
        // The administrative contact last: once access management knows it, it knows the
        // roles assigned before (the registry's events are applied in order).
        suite.assign(&id, &admin, Role::Administrative).await;
        let site = if switch {
            suite
                .gw()
                .update_site(authed(
                    Some(&suite.operator.token),
                    gw::UpdateSiteRequest {
                        site: Some(cpb::Site {
                            site_id: id.clone(),
                            admin_may_manage_access: true,
                            ..Default::default()
                        }),
                        update_mask: Some(mask(&["admin_may_manage_access"])),
                        etag: String::new(),
                    },
                ))
                .await
                .expect("turn the C3 switch on")
                .into_inner()
                .site
                .expect("site")
        } else {
            site
        };
        let manage_access = if switch {
            apb::ManageAccess::Update
        } else {
            apb::ManageAccess::None
        };
        suite
            .wait_profile(
                &id,
                &admin.id,
                "access management knows the administrative contact and the C3 switch",
                |profile| {
                    profile.implied_by.contains(&(Role::Administrative as i32))
                        && profile
                            .effective
                            .is_some_and(|t| t.manage_access == manage_access as i32)
                },
            )
            .await;
        Self {
            site,
            primary,
            stc,
            admin,
            secondary,
            viewer,
            subject,
            revokee,
            spare,
            secondary_contact,
        }
    }

    fn id(&self) -> String {
        self.site.site_id.clone()
    }
}

/// Everything the matrix calls with.
struct Fixture {
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
}

impl Fixture {
    async fn build(suite: Suite) -> Self {
        let a = World::build(&suite, "Site A", false).await;
        let b = World::build(&suite, "Site B", true).await;
        let c_primary = suite.person("Site C Primary").await;
        let c = suite.create_site("Site C", &c_primary, None).await;
        suite
            .wait_role(&c.site_id, &c_primary.id, Role::Primary)
            .await;
        let stranger = suite.person("Stranger").await;
        let login_user = suite.person("Login User").await;
        let service_token = suite.service_token("kc-billing").await;
        Self {
            suite,
            a,
            b,
            c,
            stranger,
            login_user,
            service_token,
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
    async fn attempt(&self, case: &str, who: Who) -> Result<(), Status> {
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
                    },
                ))
                .await
                .map(drop),
            "RevokeAccess" => {
                suite
                    .grant(
                        &site_id,
                        &world.revokee.id,
                        tools(|t| t.account_documents = apb::AccountDocumentsAccess::View as i32),
                    )
                    .await;
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

/// A self-nomination for `site`: reporting VIEW and account documents VIEW (site access),
/// or support BASIC.
fn nomination(site: &cpb::Site, kind: apb::AccessRequestKind) -> gw::SelfNominateRequest {
    nomination_for(
        site,
        kind,
        tools(|t| {
            t.reporting = apb::ReportingAccess::View as i32;
            t.account_documents = apb::AccountDocumentsAccess::View as i32;
        }),
    )
}

/// A self-nomination for `site`: `asked` (site access) or support BASIC.
fn nomination_for(
    site: &cpb::Site,
    kind: apb::AccessRequestKind,
    asked: apb::ToolAccess,
) -> gw::SelfNominateRequest {
    let site_access = kind == apb::AccessRequestKind::SiteAccess;
    gw::SelfNominateRequest {
        site_number: site.site_number.clone(),
        customer_number: site.customer_number.clone(),
        kind: kind as i32,
        requested_tools: site_access.then_some(asked),
        requested_support_level: if site_access {
            apb::SupportLevel::Unspecified as i32
        } else {
            apb::SupportLevel::Basic as i32
        },
        justification: "je suis le nouveau gestionnaire".into(),
    }
}

/// `token`'s holder nominates itself for `site`.
async fn nominate(
    suite: &Suite,
    token: &str,
    site: &cpb::Site,
    kind: apb::AccessRequestKind,
) -> Result<apb::AccessRequest, Status> {
    suite
        .gw()
        .self_nominate(authed(Some(token), nomination(site, kind)))
        .await
        .map(|response| response.into_inner().request.expect("request"))
}

fn mask(paths: &[&str]) -> FieldMask {
    FieldMask {
        paths: paths.iter().map(|path| (*path).to_owned()).collect(),
    }
}

/// What one cell of the matrix saw.
fn outcome(result: &Result<(), Status>) -> String {
    match result {
        Ok(()) => "ok".to_owned(),
        Err(status) => format!("{:?}: {}", status.code(), status.message()),
    }
}

// DOMAIN.md T2, T3, T4, U4, U5, A3, C2, C3 (both states of the switch), C8: every RPC ×
// every kind of caller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_admits_exactly_the_callers_its_permission_names() {
    let fixture = Fixture::build(Suite::start().await).await;
    let mut failures = Vec::new();
    let mut report = String::new();
    for (case, allowed, tolerated) in MATRIX {
        for who in CALLERS {
            let result = fixture.attempt(case, who).await;
            let seen = outcome(&result);
            let _ = writeln!(report, "{case:<40} {:<13} {seen}", format!("{who:?}"));
            let code = result.as_ref().err().map(Status::code);
            let fine = if allowed.contains(&who) {
                match code {
                    None => true,
                    Some(code) => tolerated.contains(&(who, code)),
                }
            } else if who == Anonymous {
                code == Some(Code::Unauthenticated)
            } else {
                code == Some(Code::PermissionDenied)
            };
            if !fine {
                let expected = if allowed.contains(&who) {
                    "allowed".to_owned()
                } else if who == Anonymous {
                    "Unauthenticated".to_owned()
                } else {
                    "PermissionDenied".to_owned()
                };
                failures.push(format!(
                    "{case} as {who:?}: expected {expected}, got {seen}"
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} cell(s) of the matrix differ:\n{}\n\nthe whole matrix:\n{report}",
        failures.len(),
        failures.join("\n")
    );
}

/// What the operator reads of a site: everything a call could have read or changed.
async fn snapshot(suite: &Suite, site_id: &str) -> String {
    let token = Some(suite.operator.token.as_str());
    let mut gw = suite.gw();
    let site = gw
        .get_site(authed(
            token,
            gw::GetSiteRequest {
                site_id: site_id.into(),
            },
        ))
        .await
        .expect("get site")
        .into_inner();
    let contacts = gw
        .show_all_contacts(authed(
            token,
            gw::ShowAllContactsRequest {
                site_id: site_id.into(),
                ..Default::default()
            },
        ))
        .await
        .expect("show all contacts")
        .into_inner();
    let access = gw
        .list_site_access(authed(
            token,
            gw::ListSiteAccessRequest {
                site_id: site_id.into(),
                ..Default::default()
            },
        ))
        .await
        .expect("list site access")
        .into_inner();
    let pending = gw
        .list_pending_requests(authed(
            token,
            gw::ListPendingRequestsRequest {
                site_id: site_id.into(),
                ..Default::default()
            },
        ))
        .await
        .expect("list pending requests")
        .into_inner();
    let audit = gw
        .list_site_audit(authed(
            token,
            gw::ListSiteAuditRequest {
                site_id: site_id.into(),
                page_size: 1000,
                ..Default::default()
            },
        ))
        .await
        .expect("list site audit")
        .into_inner();
    format!("{site:#?}\n{contacts:#?}\n{access:#?}\n{pending:#?}\n{audit:#?}")
}

/// Asserts PERMISSION_DENIED or NOT_FOUND (an object of another site is either not seen or
/// not allowed), never success.
#[track_caller]
fn refused<T: std::fmt::Debug>(what: &str, result: Result<T, Status>, codes: &[Code]) {
    match result {
        Ok(value) => panic!("{what}: expected one of {codes:?}, got Ok({value:?})"),
        Err(status) => assert!(
            codes.contains(&status.code()),
            "{what}: expected one of {codes:?}, got {status:?}"
        ),
    }
}

// Object-level checks: a site id, contact id or request id of another site never reads or
// changes that site, whoever names it (the primary of site A holds every right on A).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_of_another_site_never_reach_it() {
    let suite = Suite::start().await;
    let a = World::build(&suite, "Site A", false).await;
    let b = World::build(&suite, "Site B", true).await;
    let b_id = b.id();
    // A pending request on B, and B's contact ids.
    let b_requester = suite.person("B Requester").await;
    let b_request = nominate(
        &suite,
        &b_requester.token,
        &b.site,
        apb::AccessRequestKind::SiteAccess,
    )
    .await
    .expect("nominate on B")
    .request_id;
    let b_viewer_contact = suite
        .gw()
        .show_all_contacts(authed(
            Some(&suite.operator.token),
            gw::ShowAllContactsRequest {
                site_id: b_id.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("B's contacts")
        .into_inner()
        .contacts
        .into_iter()
        .find(|c| c.user_id == b.viewer.id)
        .expect("B's viewer")
        .contacts[0]
        .contact_id
        .clone();
    let before = snapshot(&suite, &b_id).await;

    let a_id = a.id();
    let primary = Some(a.primary.token.as_str());
    let operator = Some(suite.operator.token.as_str());
    let mut gw = suite.gw();
    const DENIED: &[Code] = &[Code::PermissionDenied];
    const NOT_FOUND: &[Code] = &[Code::NotFound];
    let details = || {
        Some(cpb::ContactDetails {
            phone: "+33100000000".into(),
            job_title: "Intrus".into(),
            notification_email: "intrus@evil.example".into(),
        })
    };

    // Reads of B by A's primary.
    refused(
        "GetSite(B)",
        gw.get_site(authed(
            primary,
            gw::GetSiteRequest {
                site_id: b_id.clone(),
            },
        ))
        .await,
        DENIED,
    );
    refused(
        "GetSiteCompliance(B)",
        gw.get_site_compliance(authed(
            primary,
            gw::GetSiteComplianceRequest {
                site_id: b_id.clone(),
            },
        ))
        .await,
        DENIED,
    );
    refused(
        "ShowAllContacts(B)",
        gw.show_all_contacts(authed(
            primary,
            gw::ShowAllContactsRequest {
                site_id: b_id.clone(),
                ..Default::default()
            },
        ))
        .await,
        DENIED,
    );
    refused(
        "GetAccessProfile(B, B's primary)",
        gw.get_access_profile(authed(
            primary,
            gw::GetAccessProfileRequest {
                site_id: b_id.clone(),
                user_id: b.primary.id.clone(),
            },
        ))
        .await,
        DENIED,
    );
    refused(
        "ListSiteAccess(B)",
        gw.list_site_access(authed(
            primary,
            gw::ListSiteAccessRequest {
                site_id: b_id.clone(),
                ..Default::default()
            },
        ))
        .await,
        DENIED,
    );
    refused(
        "ListPendingRequests(B)",
        gw.list_pending_requests(authed(
            primary,
            gw::ListPendingRequestsRequest {
                site_id: b_id.clone(),
                ..Default::default()
            },
        ))
        .await,
        DENIED,
    );
    refused(
        "ListSiteNotifications(B)",
        gw.list_site_notifications(authed(
            primary,
            gw::ListSiteNotificationsRequest {
                site_id: b_id.clone(),
                ..Default::default()
            },
        ))
        .await,
        DENIED,
    );
    refused(
        "ListSiteAudit(B)",
        gw.list_site_audit(authed(
            primary,
            gw::ListSiteAuditRequest {
                site_id: b_id.clone(),
                ..Default::default()
            },
        ))
        .await,
        DENIED,
    );

    // Changes of B by A's primary, naming B's site.
    refused(
        "UpdateSite(B)",
        gw.update_site(authed(
            primary,
            gw::UpdateSiteRequest {
                site: Some(cpb::Site {
                    site_id: b_id.clone(),
                    name: "Hijacked".into(),
                    admin_may_manage_access: false,
                    ..Default::default()
                }),
                update_mask: Some(mask(&["name", "admin_may_manage_access"])),
                etag: String::new(),
            },
        ))
        .await,
        DENIED,
    );
    refused(
        "AssignContact(B)",
        gw.assign_contact(authed(
            primary,
            gw::AssignContactRequest {
                site_id: b_id.clone(),
                email: a.primary.email.clone(),
                display_name: None,
                role: Role::Secondary as i32,
                details: None,
                locale: String::new(),
            },
        ))
        .await,
        DENIED,
    );
    refused(
        "UpdateContact(B, B's contact)",
        gw.update_contact(authed(
            primary,
            gw::UpdateContactRequest {
                site_id: b_id.clone(),
                contact_id: b.secondary_contact.clone(),
                details: details(),
                etag: String::new(),
            },
        ))
        .await,
        DENIED,
    );
    refused(
        "RemoveContact(B, B's contact)",
        gw.remove_contact(authed(
            primary,
            gw::RemoveContactRequest {
                site_id: b_id.clone(),
                contact_id: b_viewer_contact.clone(),
                etag: String::new(),
            },
        ))
        .await,
        DENIED,
    );
    refused(
        "ReplaceContact(B)",
        gw.replace_contact(authed(
            primary,
            gw::ReplaceContactRequest {
                site_id: b_id.clone(),
                role: Role::Administrative as i32,
                email: a.primary.email.clone(),
                display_name: None,
                details: None,
                locale: String::new(),
            },
        ))
        .await,
        DENIED,
    );
    refused(
        "TransferPrimaryContact(B)",
        gw.transfer_primary_contact(authed(
            primary,
            gw::TransferPrimaryContactRequest {
                site_id: b_id.clone(),
                email: a.primary.email.clone(),
                ..Default::default()
            },
        ))
        .await,
        DENIED,
    );
    refused(
        "SetToolAccess(B)",
        gw.set_tool_access(authed(
            primary,
            gw::SetToolAccessRequest {
                site_id: b_id.clone(),
                user_id: a.primary.id.clone(),
                tools: Some(tools(|t| {
                    t.account_management = apb::AccountManagementAccess::Granted as i32
                })),
                reason: "take over".into(),
                etag: String::new(),
            },
        ))
        .await,
        DENIED,
    );
    refused(
        "SetSupportAccess(B)",
        gw.set_support_access(authed(
            primary,
            gw::SetSupportAccessRequest {
                site_id: b_id.clone(),
                user_id: a.primary.id.clone(),
                support_level: apb::SupportLevel::Administrator as i32,
                reason: "take over".into(),
                etag: String::new(),
            },
        ))
        .await,
        DENIED,
    );
    refused(
        "RevokeAccess(B, B's viewer)",
        gw.revoke_access(authed(
            primary,
            gw::RevokeAccessRequest {
                site_id: b_id.clone(),
                user_id: b.viewer.id.clone(),
                reason: "take over".into(),
                etag: String::new(),
            },
        ))
        .await,
        DENIED,
    );
    refused(
        "SetDomainPolicy(B)",
        gw.set_domain_policy(authed(
            primary,
            gw::SetDomainPolicyRequest {
                site_id: b_id.clone(),
                domain: "evil.example".into(),
                policy: apb::DomainPolicyMode::AutoApprove as i32,
                baseline_tools: Some(tools(|t| t.software = apb::SoftwareAccess::Full as i32)),
                baseline_support_level: apb::SupportLevel::Unspecified as i32,
                etag: String::new(),
            },
        ))
        .await,
        DENIED,
    );

    // A's site id with B's objects: the primary of A, and even an operator (who passes every
    // check), reach nothing of B.
    for (who, token) in [("A's primary", primary), ("the operator", operator)] {
        refused(
            &format!("UpdateContact(A, B's contact) as {who}"),
            gw.update_contact(authed(
                token,
                gw::UpdateContactRequest {
                    site_id: a_id.clone(),
                    contact_id: b.secondary_contact.clone(),
                    details: details(),
                    etag: String::new(),
                },
            ))
            .await,
            NOT_FOUND,
        );
        refused(
            &format!("RemoveContact(A, B's contact) as {who}"),
            gw.remove_contact(authed(
                token,
                gw::RemoveContactRequest {
                    site_id: a_id.clone(),
                    contact_id: b_viewer_contact.clone(),
                    etag: String::new(),
                },
            ))
            .await,
            NOT_FOUND,
        );
    }

    // B's request: A's primary may not decide it (it names B's site through the request),
    // and nobody but its requester may cancel it.
    refused(
        "DecideAccessRequest(B's request) as A's primary",
        gw.decide_access_request(authed(
            primary,
            gw::DecideAccessRequestRequest {
                request_id: b_request.clone(),
                decision: gw::AccessDecision::Approve as i32,
                ..Default::default()
            },
        ))
        .await,
        DENIED,
    );
    refused(
        "DecideAccessRequest(B's request, reject) as A's primary",
        gw.decide_access_request(authed(
            primary,
            gw::DecideAccessRequestRequest {
                request_id: b_request.clone(),
                decision: gw::AccessDecision::Reject as i32,
                reason: "no".into(),
                ..Default::default()
            },
        ))
        .await,
        DENIED,
    );
    refused(
        "CancelMyRequest(B's request) as A's primary",
        gw.cancel_my_request(authed(
            primary,
            gw::CancelMyRequestRequest {
                request_id: b_request.clone(),
                etag: String::new(),
            },
        ))
        .await,
        &[Code::PermissionDenied, Code::NotFound],
    );

    // B is exactly as it was: site, contacts and their details, rights, pending requests
    // and audit trail.
    let after = snapshot(&suite, &b_id).await;
    assert!(
        before == after,
        "site B changed:\nbefore:\n{before}\nafter:\n{after}"
    );
    assert!(after.contains(&b_request), "B's request is still pending");
}

// Tokens that identity did not sign, or that are not tokens at all, are UNAUTHENTICATED on
// every RPC that needs one, even when they claim to be an operator's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_garbage_tokens_are_unauthenticated() {
    let suite = Suite::start().await;
    let primary = suite.person("Paula Primary").await;
    let site = suite.create_site("Acme Lyon", &primary, None).await;
    let forger = kc_testkit::tokens::TestIssuer::new();
    let forged_operator = forger.mint(
        Uuid::parse_str(&suite.operator.id).expect("operator id"),
        kc_runtime::token::CallerKind::Operator,
        OPERATOR_EMAIL,
    );
    for (what, token) in [
        ("a forged operator token", forged_operator.as_str()),
        ("a garbage token", "not-a-token"),
    ] {
        let mut gw = suite.gw();
        let status = gw
            .get_me(authed(Some(token), gw::GetMeRequest {}))
            .await
            .expect_err(what);
        assert_eq!(status.code(), Code::Unauthenticated, "{what}: {status:?}");
        let status = gw
            .get_site(authed(
                Some(token),
                gw::GetSiteRequest {
                    site_id: site.site_id.clone(),
                },
            ))
            .await
            .expect_err(what);
        assert_eq!(status.code(), Code::Unauthenticated, "{what}: {status:?}");
        let status = gw
            .create_site(authed(Some(token), gw::CreateSiteRequest::default()))
            .await
            .expect_err(what);
        assert_eq!(status.code(), Code::Unauthenticated, "{what}: {status:?}");
    }
}
