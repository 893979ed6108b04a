//! Who may call which gateway RPC: one declarative table from the RPC's full method path to
//! its [`Rule`], read by the handlers through [`rule`] and checked against the proto by a
//! test (every `GatewayService` method has exactly one entry).
//!
//! Object-level rules that depend on the request itself (fields of `UpdateSite` only
//! operators may change, the caller's own profile in `GetAccessProfile`, the kinds a
//! `ListPendingRequests` caller sees) are part of the rule kinds below and applied where the
//! request is composed.

use kc_proto::access::Permission;
use kc_runtime::Caller;
use kc_runtime::token::scope;

/// Fully qualified name of the gateway service.
pub(crate) const SERVICE: &str = "keycontacts.gateway.v1.GatewayService";

/// What a caller must hold on a site.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    /// Every one of these permissions.
    All(&'static [Permission]),
    /// At least one of these permissions.
    Any(&'static [Permission]),
}

impl Need {
    /// The permissions asked about in the one `BatchCheck` of a call.
    pub(crate) fn permissions(self) -> &'static [Permission] {
        match self {
            Need::All(permissions) | Need::Any(permissions) => permissions,
        }
    }

    /// Whether the results of the `BatchCheck` (in the order of [`Self::permissions`])
    /// satisfy the need.
    pub(crate) fn satisfied_by(self, allowed: &[bool]) -> bool {
        match self {
            Need::All(_) => !allowed.is_empty() && allowed.iter().all(|a| *a),
            Need::Any(_) => allowed.iter().any(|a| *a),
        }
    }
}

/// Who may call an RPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rule {
    /// Anyone, without a token; rate limited per caller address.
    Public,
    /// Any signed-in person (customer or operator), acting on itself. Service accounts are
    /// refused.
    SignedIn,
    /// Operators only.
    Operators,
    /// Operators, and service accounts whose token carries the scope of the method
    /// ([`SERVICE_SCOPES`]).
    OperatorsAndServices,
    /// Customers holding `Need` on the site named by the request; operators pass.
    Site(Need),
    /// As [`Rule::Site`], except that a person reading its own profile needs nothing more
    /// than a relation to the site (a role or a grant there).
    SiteOrSelf(Need),
    /// The request names several sites (a bulk import's rows, an export's sites): a
    /// customer needs `Need` on each site it touches, checked site by site (a row or a site
    /// it may not touch is refused alone); operators pass; service accounts are refused.
    EachSite(Need),
    /// The access request named by the request is read first; then the caller needs, on the
    /// request's own site, the permission that decides its kind (A3). Operators pass.
    RequestSite,
}

/// What naming, or replacing, the holder of `role` needs on the site besides
/// CONTACTS_UPDATE: the authority to grant every right the role implies (T6 with T4, U4–U6).
/// ADMINISTRATIVE implies account documents VIEW, and manage access UPDATE with the C3
/// switch on; SECONDARY manage access UPDATE and contact updates UPDATE (T3); SITE_TECHNICAL
/// support ADMINISTRATOR (U5), which a support administrator cannot take from the STC (U6):
/// the STC changes with account management. Roles that imply nothing need nothing more.
///
/// The gateway checks it before the write; the registry itself refuses a rights-implying
/// role given by the actor to itself (T7).
pub(crate) fn role_authority(role: kc_proto::contacts::ContactRole) -> Option<Need> {
    use kc_proto::contacts::ContactRole as Role;
    match role {
        Role::Administrative => Some(Need::All(&[
            Permission::AccessUpdate,
            Permission::DocumentsView,
        ])),
        Role::Secondary => Some(Need::All(&[
            Permission::AccessUpdate,
            Permission::ContactsUpdate,
        ])),
        Role::SiteTechnical => Some(Need::All(&[Permission::AccountManagement])),
        Role::Primary
        | Role::Renewal
        | Role::Shipping
        | Role::Billing
        | Role::SiteUser
        | Role::Unspecified => None,
    }
}

/// The permission that decides an access request of a kind (A3).
pub(crate) fn decider_permission(kind: kc_proto::access::AccessRequestKind) -> Option<Permission> {
    use kc_proto::access::AccessRequestKind as Kind;
    match kind {
        Kind::SiteAccess => Some(Permission::ApproveSiteAccess),
        Kind::SupportAccess => Some(Permission::ApproveSupportAccess),
        Kind::Unspecified => None,
    }
}

macro_rules! methods {
    ($($konst:ident = $name:literal => $rule:expr;)*) => {
        /// Full method paths of the gateway's RPCs.
        pub(crate) mod method {
            $(
                #[doc = concat!("`/keycontacts.gateway.v1.GatewayService/", $name, "`")]
                pub(crate) const $konst: &str = concat!("/keycontacts.gateway.v1.GatewayService/", $name);
            )*
        }

        /// The permission table: every RPC of the gateway and who may call it.
        pub(crate) const TABLE: &[(&str, Rule)] = &[
            $((method::$konst, $rule),)*
        ];
    };
}

use Permission as P;

methods! {
    REGISTER = "Register" => Rule::Public;
    VERIFY_EMAIL = "VerifyEmail" => Rule::Public;
    REQUEST_PASSWORD_RESET = "RequestPasswordReset" => Rule::Public;
    RESET_PASSWORD = "ResetPassword" => Rule::Public;
    LOGIN = "Login" => Rule::Public;
    REFRESH = "Refresh" => Rule::Public;
    ISSUE_SERVICE_TOKEN = "IssueServiceToken" => Rule::Public;
    LOGOUT = "Logout" => Rule::Public;

    UPDATE_ME = "UpdateMe" => Rule::SignedIn;
    CHANGE_PASSWORD = "ChangePassword" => Rule::SignedIn;
    CHANGE_EMAIL = "ChangeEmail" => Rule::SignedIn;
    CONFIRM_EMAIL_CHANGE = "ConfirmEmailChange" => Rule::SignedIn;
    CONFIRM_NOTIFICATION_EMAIL = "ConfirmNotificationEmail" => Rule::SignedIn;
    GET_ME = "GetMe" => Rule::SignedIn;

    CREATE_SITE = "CreateSite" => Rule::Operators;
    GET_SITE = "GetSite" => Rule::Site(Need::All(&[P::ContactsView]));
    LIST_MY_SITES = "ListMySites" => Rule::SignedIn;
    UPDATE_SITE = "UpdateSite" => Rule::Site(Need::All(&[P::AccountManagement]));
    GET_SITE_COMPLIANCE = "GetSiteCompliance" => Rule::Site(Need::All(&[P::ContactsView]));
    // The portfolio: operators only.
    FIND_SITE = "FindSite" => Rule::Operators;
    LIST_CUSTOMER_SITES = "ListCustomerSites" => Rule::Operators;
    LIST_COMPLIANCE_GAPS = "ListComplianceGaps" => Rule::Operators;

    SHOW_ALL_CONTACTS = "ShowAllContacts" => Rule::Site(Need::All(&[P::ContactsView]));
    ASSIGN_CONTACT = "AssignContact" => Rule::Site(Need::All(&[P::ContactsUpdate]));
    UPDATE_CONTACT = "UpdateContact" => Rule::Site(Need::All(&[P::ContactsUpdate]));
    REMOVE_CONTACT = "RemoveContact" => Rule::Site(Need::All(&[P::ContactsUpdate]));
    REPLACE_CONTACT = "ReplaceContact" => Rule::Site(Need::All(&[P::ContactsUpdate]));
    TRANSFER_PRIMARY_CONTACT = "TransferPrimaryContact" =>
        Rule::Site(Need::All(&[P::AccountManagement]));
    // C12: the registry decides who may ask (a contact, or a user of a contact's domain,
    // which the gateway vouches for), refuse (the old primary) and read a recovery.
    REQUEST_PRIMARY_RECOVERY = "RequestPrimaryRecovery" => Rule::SignedIn;
    REFUSE_PRIMARY_RECOVERY = "RefusePrimaryRecovery" => Rule::SignedIn;
    ATTEST_PRIMARY_RECOVERY = "AttestPrimaryRecovery" => Rule::Operators;
    GET_PRIMARY_RECOVERY = "GetPrimaryRecovery" => Rule::SignedIn;

    GET_ACCESS_PROFILE = "GetAccessProfile" => Rule::SiteOrSelf(Need::All(&[P::AccessView]));
    SET_TOOL_ACCESS = "SetToolAccess" => Rule::Site(Need::All(&[P::AccessUpdate]));
    SET_SUPPORT_ACCESS = "SetSupportAccess" => Rule::Site(Need::All(&[P::SupportAdmin]));
    REVOKE_ACCESS = "RevokeAccess" => Rule::Site(Need::All(&[P::AccessUpdate]));
    LIST_SITE_ACCESS = "ListSiteAccess" => Rule::Site(Need::All(&[P::AccessView]));
    // U4: the STC (implicitly ADMINISTRATOR, U5) and support ADMINISTRATORs.
    LIST_SUPPORT_USERS = "ListSupportUsers" => Rule::Site(Need::All(&[P::SupportAdmin]));
    ADD_SUPPORT_USER = "AddSupportUser" => Rule::Site(Need::All(&[P::SupportAdmin]));
    REVOKE_SUPPORT_ACCESS = "RevokeSupportAccess" => Rule::Site(Need::All(&[P::SupportAdmin]));
    // C6: naming a SITE_USER; granting tools adds ACCESS_UPDATE and a support level
    // SUPPORT_ADMIN (T4, T6, U4), checked where the request is composed (compose::site_users).
    ADD_SITE_USER = "AddSiteUser" => Rule::Site(Need::All(&[P::ContactsUpdate]));

    SELF_NOMINATE = "SelfNominate" => Rule::SignedIn;
    LIST_MY_REQUESTS = "ListMyRequests" => Rule::SignedIn;
    CANCEL_MY_REQUEST = "CancelMyRequest" => Rule::SignedIn;
    LIST_PENDING_REQUESTS = "ListPendingRequests" =>
        Rule::Site(Need::Any(&[P::ApproveSiteAccess, P::ApproveSupportAccess]));
    DECIDE_ACCESS_REQUEST = "DecideAccessRequest" => Rule::RequestSite;
    SET_DOMAIN_POLICY = "SetDomainPolicy" => Rule::Site(Need::All(&[P::AccessUpdate]));
    // A7: the site's approvers of either kind (A3), who see what the policies decide.
    LIST_DOMAIN_POLICIES = "ListDomainPolicies" =>
        Rule::Site(Need::Any(&[P::ApproveSiteAccess, P::ApproveSupportAccess]));
    // Blocked requesters: the site's approvers of either kind (A3); access management checks
    // it again in the writing transaction.
    BLOCK_REQUESTER = "BlockRequester" =>
        Rule::Site(Need::Any(&[P::ApproveSiteAccess, P::ApproveSupportAccess]));
    UNBLOCK_REQUESTER = "UnblockRequester" =>
        Rule::Site(Need::Any(&[P::ApproveSiteAccess, P::ApproveSupportAccess]));
    LIST_BLOCKED_REQUESTERS = "ListBlockedRequesters" =>
        Rule::Site(Need::Any(&[P::ApproveSiteAccess, P::ApproveSupportAccess]));

    SEND_NOTICE = "SendNotice" => Rule::OperatorsAndServices;
    RETRY_NOTIFICATION = "RetryNotification" => Rule::Operators;
    LIST_SITE_NOTIFICATIONS = "ListSiteNotifications" =>
        Rule::Site(Need::All(&[P::AccountManagement]));

    LIST_SITE_AUDIT = "ListSiteAudit" =>
        Rule::Site(Need::All(&[P::ContactsView, P::AccessView]));

    IMPORT_CONTACTS = "ImportContacts" => Rule::EachSite(Need::All(&[P::ContactsUpdate]));
    EXPORT_CONTACTS = "ExportContacts" => Rule::EachSite(Need::All(&[P::ContactsView]));
}

/// The scope a service account needs for each method its rule admits services to (issue
/// 15): the token must carry it (`kc-identity create-service-account NAME --scope …`).
pub(crate) const SERVICE_SCOPES: &[(&str, &str)] = &[(method::SEND_NOTICE, scope::NOTICES)];

/// Why `caller` may not call `method` for want of a scope: a service account whose token
/// lacks the scope the method needs ([`SERVICE_SCOPES`]); `None` for everyone else.
pub(crate) fn missing_scope(caller: &Caller, method: &str) -> Option<String> {
    let (_, needed) = SERVICE_SCOPES.iter().find(|(name, _)| *name == method)?;
    (caller.is_service() && !caller.has_scope(needed))
        .then(|| format!("permission denied: this needs a service account with the scope {needed}"))
}

/// Fully qualified name of the public authorization service.
pub(crate) const AUTHORIZATION_SERVICE: &str = "keycontacts.gateway.v1.AuthorizationService";

/// Full method paths of `AuthorizationService`.
pub(crate) mod authz_method {
    /// `/keycontacts.gateway.v1.AuthorizationService/Check`
    pub(crate) const CHECK: &str = "/keycontacts.gateway.v1.AuthorizationService/Check";
    /// `/keycontacts.gateway.v1.AuthorizationService/BatchCheck`
    pub(crate) const BATCH_CHECK: &str = "/keycontacts.gateway.v1.AuthorizationService/BatchCheck";
    /// `/keycontacts.gateway.v1.AuthorizationService/LookupSites`
    pub(crate) const LOOKUP_SITES: &str =
        "/keycontacts.gateway.v1.AuthorizationService/LookupSites";
    /// `/keycontacts.gateway.v1.AuthorizationService/LookupUsers`
    pub(crate) const LOOKUP_USERS: &str =
        "/keycontacts.gateway.v1.AuthorizationService/LookupUsers";
    /// `/keycontacts.gateway.v1.AuthorizationService/WatchPermissions`
    pub(crate) const WATCH_PERMISSIONS: &str =
        "/keycontacts.gateway.v1.AuthorizationService/WatchPermissions";
}

/// The scope of the service accounts that may ask `AuthorizationService`.
pub(crate) const AUTHZ_SCOPE: &str = kc_runtime::token::scope::AUTHZ;

/// The permission table of `AuthorizationService`: every RPC and the scope a service
/// account's token must carry to call it. Nobody else may: customers and operators are
/// refused.
pub(crate) const AUTHZ_TABLE: &[(&str, &str)] = &[
    (authz_method::CHECK, AUTHZ_SCOPE),
    (authz_method::BATCH_CHECK, AUTHZ_SCOPE),
    (authz_method::LOOKUP_SITES, AUTHZ_SCOPE),
    (authz_method::LOOKUP_USERS, AUTHZ_SCOPE),
    (authz_method::WATCH_PERMISSIONS, AUTHZ_SCOPE),
];

/// The scope a service account needs for the `AuthorizationService` `method` (a full path
/// from [`authz_method`]).
///
/// # Panics
/// When `method` is not in [`AUTHZ_TABLE`] (a bug the table's test catches first).
pub(crate) fn authz_scope(method: &str) -> &'static str {
    AUTHZ_TABLE
        .iter()
        .find(|(name, _)| *name == method)
        .map(|(_, scope)| *scope)
        .unwrap_or_else(|| panic!("{method} is missing from the authorization table"))
}

/// The rule of `method` (a full path from [`method`]).
///
/// # Panics
/// When `method` is not in [`TABLE`]: a handler naming a method the table lacks is a bug
/// that the table's test catches first.
pub(crate) fn rule(method: &str) -> Rule {
    TABLE
        .iter()
        .find(|(name, _)| *name == method)
        .map(|(_, rule)| *rule)
        .unwrap_or_else(|| panic!("{method} is missing from the gateway's permission table"))
}

/// The methods callable without a token, for the auth layer.
pub(crate) fn public_methods() -> impl Iterator<Item = &'static str> {
    TABLE
        .iter()
        .filter(|(_, rule)| *rule == Rule::Public)
        .map(|(name, _)| *name)
}

#[cfg(test)]
mod tests {

    /// T6: the gateway names the same authority for each role as the registry decides
    /// with at commit (`kc_rights::rights::ContactRole::naming_authority`).
    #[test]
    fn role_authority_is_the_registrys_naming_authority() {
        use kc_proto::contacts::ContactRole as Role;
        for role in [
            Role::Primary,
            Role::Administrative,
            Role::SiteTechnical,
            Role::Secondary,
            Role::Renewal,
            Role::Shipping,
            Role::Billing,
            Role::SiteUser,
        ] {
            let gateway: Vec<i32> = role_authority(role)
                .map(|need| need.permissions().iter().map(|p| *p as i32).collect())
                .unwrap_or_default();
            let registry: Vec<i32> = kc_rights::rights::ContactRole::from_number(role as i32)
                .expect("a role of the rights model")
                .naming_authority()
                .iter()
                .map(|p| p.number())
                .collect();
            assert_eq!(gateway, registry, "{role:?}");
        }
    }
    use std::collections::BTreeSet;

    use prost::Message;
    use prost_types::FileDescriptorSet;

    use super::*;

    /// Every method of `GatewayService` in the compiled descriptor set, as full paths.
    fn proto_methods() -> BTreeSet<String> {
        let set = FileDescriptorSet::decode(kc_proto::FILE_DESCRIPTOR_SET).expect("descriptors");
        let file =
            set.file
                .iter()
                .find(|file| {
                    file.package() == "keycontacts.gateway.v1"
                        && file.service.iter().any(|service| {
                            format!("{}.{}", file.package(), service.name()) == SERVICE
                        })
                })
                .expect("the gateway proto is compiled");
        let service = file
            .service
            .iter()
            .find(|service| format!("{}.{}", file.package(), service.name()) == SERVICE)
            .expect("GatewayService");
        service
            .method
            .iter()
            .map(|method| format!("/{SERVICE}/{}", method.name()))
            .collect()
    }

    #[test]
    fn every_rpc_has_exactly_one_rule_and_every_rule_an_rpc() {
        let proto = proto_methods();
        let mut table = BTreeSet::new();
        for (name, _) in TABLE {
            assert!(
                table.insert(name.to_string()),
                "{name} is in the table twice"
            );
        }
        let missing: Vec<_> = proto.difference(&table).collect();
        assert!(missing.is_empty(), "RPCs without a rule: {missing:?}");
        let unknown: Vec<_> = table.difference(&proto).collect();
        assert!(
            unknown.is_empty(),
            "rules of RPCs that do not exist: {unknown:?}"
        );
    }

    #[test]
    fn every_authorization_rpc_needs_the_authz_scope() {
        let set = FileDescriptorSet::decode(kc_proto::FILE_DESCRIPTOR_SET).expect("descriptors");
        let proto: BTreeSet<String> = set
            .file
            .iter()
            .filter(|file| file.package() == "keycontacts.gateway.v1")
            .flat_map(|file| file.service.iter())
            .filter(|service| {
                format!("keycontacts.gateway.v1.{}", service.name()) == AUTHORIZATION_SERVICE
            })
            .flat_map(|service| service.method.iter())
            .map(|method| format!("/{AUTHORIZATION_SERVICE}/{}", method.name()))
            .collect();
        let table: BTreeSet<String> = AUTHZ_TABLE
            .iter()
            .map(|(name, _)| name.to_string())
            .collect();
        assert_eq!(proto, table);
        assert_eq!(proto.len(), AUTHZ_TABLE.len());
        for (name, _) in AUTHZ_TABLE {
            assert_eq!(authz_scope(name), "authz");
            assert!(!public_methods().any(|public| public == *name));
        }
    }

    #[test]
    fn sessions_are_the_only_public_rpcs() {
        let public: BTreeSet<_> = public_methods().collect();
        let expected: BTreeSet<_> = [
            method::REGISTER,
            method::VERIFY_EMAIL,
            method::REQUEST_PASSWORD_RESET,
            method::RESET_PASSWORD,
            method::LOGIN,
            method::REFRESH,
            method::ISSUE_SERVICE_TOKEN,
            method::LOGOUT,
        ]
        .into_iter()
        .collect();
        assert_eq!(public, expected);
    }

    #[test]
    fn site_rules_ask_for_at_least_one_permission() {
        for (name, rule) in TABLE {
            if let Rule::Site(need) | Rule::SiteOrSelf(need) | Rule::EachSite(need) = rule {
                assert!(!need.permissions().is_empty(), "{name}");
                assert!(
                    !need.permissions().contains(&Permission::Unspecified),
                    "{name}"
                );
            }
        }
    }

    #[test]
    fn needs_combine_their_results() {
        let all = Need::All(&[P::ContactsView, P::AccessView]);
        assert!(all.satisfied_by(&[true, true]));
        assert!(!all.satisfied_by(&[true, false]));
        assert!(!all.satisfied_by(&[]));
        let any = Need::Any(&[P::ApproveSiteAccess, P::ApproveSupportAccess]);
        assert!(any.satisfied_by(&[false, true]));
        assert!(!any.satisfied_by(&[false, false]));
    }

    #[test]
    fn every_rpc_admitting_services_names_a_known_scope() {
        for (name, rule) in TABLE {
            let scoped = SERVICE_SCOPES.iter().find(|(method, _)| method == name);
            if *rule == Rule::OperatorsAndServices {
                let (_, needed) = scoped.unwrap_or_else(|| panic!("{name} names no scope"));
                assert!(scope::ALL.contains(needed), "{name}: {needed}");
            } else {
                assert!(scoped.is_none(), "{name} admits no service account");
            }
        }
    }

    #[test]
    fn service_accounts_need_the_scope_and_operators_none() {
        use kc_runtime::token::CallerKind;
        let caller = |kind, scopes: &[&str]| Caller {
            subject: uuid::Uuid::from_u128(1),
            kind,
            email: String::new(),
            on_behalf_of: None,
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
        };
        assert_eq!(
            missing_scope(
                &caller(CallerKind::Service, &["authz"]),
                method::SEND_NOTICE
            )
            .as_deref(),
            Some("permission denied: this needs a service account with the scope notices")
        );
        let sender = caller(CallerKind::Service, &["authz", "notices"]);
        assert_eq!(missing_scope(&sender, method::SEND_NOTICE), None);
        let operator = caller(CallerKind::Operator, &[]);
        assert_eq!(missing_scope(&operator, method::SEND_NOTICE), None);
        assert_eq!(missing_scope(&operator, method::GET_ME), None);
    }

    #[test]
    fn rules_are_looked_up_by_path() {
        assert_eq!(rule(method::CREATE_SITE), Rule::Operators);
        assert_eq!(rule(method::CHANGE_PASSWORD), Rule::SignedIn);
        assert_eq!(rule(method::RESET_PASSWORD), Rule::Public);
        assert_eq!(
            rule(method::LIST_SITE_AUDIT),
            Rule::Site(Need::All(&[P::ContactsView, P::AccessView]))
        );
        assert_eq!(
            decider_permission(kc_proto::access::AccessRequestKind::SupportAccess),
            Some(P::ApproveSupportAccess)
        );
    }
}
