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
//! | a service account | SendNotice with the scope notices (and the public session RPCs) |
//! | no token | the public session RPCs only |
//!
//! "Allowed" means the call did not fail with PERMISSION_DENIED or UNAUTHENTICATED; the
//! inputs are valid, so an allowed call succeeds unless the table names the business error
//! it may meet instead. A refused call fails with PERMISSION_DENIED (UNAUTHENTICATED without
//! a token). The object-level test checks that ids of another site's objects never read or
//! change that site.
//!
//! [`matrix`] holds the matrix's tests, [`fixture`] the calls of every case, [`other_sites`]
//! the object-level test and [`tokens`] the forged tokens; the table, the callers and the
//! sites they call on are here.

mod fixture;
mod matrix;
mod other_sites;
mod tokens;

use crate::gateway::helpers::*;
use kc_proto::access::{self as apb};
use kc_proto::contacts::{self as cpb};
use kc_proto::gateway::{self as gw};
use prost_types::FieldMask;
use tonic::{Code, Status};

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
/// The site's approvers of either kind (A3): those who manage access and the STC.
const APPROVERS: &[Who] = &[Operator, Primary, AdminOn, Stc, Secondary];

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
    ("IssueServiceToken", ANYONE, &[]),
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
    // The portfolio (issue 17): operators only.
    ("FindSite", &[Operator], &[]),
    ("ListCustomerSites", &[Operator], &[]),
    ("ListComplianceGaps", &[Operator], &[]),
    (
        "RetryNotification",
        &[Operator],
        &[(Operator, Code::NotFound)],
    ),
    // Contacts.
    ("ShowAllContacts", CONTACTS_VIEW, &[]),
    ("AssignContact", CONTACTS_UPDATE, &[]),
    ("UpdateContact", CONTACTS_UPDATE, &[]),
    ("RemoveContact", CONTACTS_UPDATE, &[]),
    ("ReplaceContact", CONTACTS_UPDATE, &[]),
    ("TransferPrimaryContact", ACCOUNT_MANAGEMENT, &[]),
    // Primary recovery (C12): any signed-in person may ask, refuse or read (the registry
    // decides who actually may; the cells send a blank reason or a malformed id, which an
    // allowed caller sees refused by its field); operators attest.
    ("RequestPrimaryRecovery", PEOPLE, &[]),
    ("RefusePrimaryRecovery", PEOPLE, &[]),
    ("GetPrimaryRecovery", PEOPLE, &[]),
    (
        "AttestPrimaryRecovery",
        &[Operator],
        &[(Operator, Code::NotFound)],
    ),
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
    // Support users (U4, U5): the STC administers them.
    ("ListSupportUsers", SUPPORT_ADMIN, &[]),
    ("AddSupportUser", SUPPORT_ADMIN, &[]),
    ("RevokeSupportAccess", SUPPORT_ADMIN, &[]),
    // A site user without rights: naming a SITE_USER is all it grants (C6).
    ("AddSiteUser", CONTACTS_UPDATE, &[]),
    // Requests. The primary already holds everything it could ask for (rule A5).
    (
        "SelfNominate",
        PEOPLE,
        &[(Primary, Code::FailedPrecondition)],
    ),
    ("ListMyRequests", PEOPLE, &[]),
    ("CancelMyRequest", PEOPLE, &[]),
    ("ListPendingRequests", APPROVERS, &[]),
    // The request asks for account documents VIEW, above the secondary's own level (A4, T4).
    (
        "DecideAccessRequest(site access)",
        MANAGE_ACCESS,
        &[(Secondary, Code::FailedPrecondition)],
    ),
    ("DecideAccessRequest(support access)", SUPPORT_ADMIN, &[]),
    ("SetDomainPolicy", MANAGE_ACCESS, &[]),
    // The site's approvers of either kind (A3, A7).
    ("ListDomainPolicies", APPROVERS, &[]),
    // Blocked requesters: the site's approvers of either kind (A3).
    ("BlockRequester", APPROVERS, &[]),
    ("UnblockRequester", APPROVERS, &[]),
    ("ListBlockedRequesters", APPROVERS, &[]),
    // Notices.
    ("SendNotice", &[Operator, Service], &[]),
    ("ListSiteNotifications", ACCOUNT_MANAGEMENT, &[]),
    // Audit: CONTACTS_VIEW and ACCESS_VIEW.
    ("ListSiteAudit", &[Operator, Primary, Secondary], &[]),
    // Bulk: the stream admits every person; a row on a site the caller may not write is
    // refused alone (PERMISSION_DENIED in its answer), a site it may not read is not exported.
    ("ImportContacts", CONTACTS_UPDATE, &[]),
    ("ExportContacts", CONTACTS_VIEW, &[]),
];

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
        let granted = tools(|t| t.contact_updates = apb::ContactUpdatesAccess::View as i32);
        suite.grant(&id, &viewer.id, granted).await;
        // The administrative contact last: once access management knows it, it knows the
        // roles assigned before (the registry's events are applied in order).
        suite.assign(&id, &admin, Role::Administrative).await;
        let site = if switch {
            suite.switch_admin_on(&id).await
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
