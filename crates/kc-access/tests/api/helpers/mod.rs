//! Harness of the access management tests: ONE real Postgres database and the three real
//! services in-process on `127.0.0.1:0`, each in its own schema: identity (cheap argon2),
//! the contact registry (verifying tokens with identity's keys), and access management
//! following both event streams with a service account created through identity's domain.
//!
//! Callers are as in production: an operator signed in at identity, and a "gateway" service
//! account acting for people through `x-kc-on-behalf-of`.

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};

use futures::StreamExt;
use kc_access::config::AccessArgs;
use kc_identity::config::IdentityArgs;
use kc_identity::domain::Identity;
use kc_identity::domain::values::{Email, Password};
use kc_proto::access::access_management_service_client::AccessManagementServiceClient;
use kc_proto::access::{self as pb};
use kc_proto::contacts::contact_registry_service_client::ContactRegistryServiceClient;
use kc_proto::contacts::{self as cpb};
use kc_proto::identity::identity_service_client::IdentityServiceClient;
use kc_proto::identity::{self as ipb};
use kc_runtime::Shutdown;
use kc_runtime::auth::ON_BEHALF_OF_HEADER;
use kc_testkit::codes::CodeReader;
use kc_testkit::{SpawnedService, TestDatabase, spawn_service, test_database};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use uuid::Uuid;

mod suite;

pub use suite::Suite;

pub use kc_testkit::checks::{PATIENCE, cites, eventually};

pub use cpb::ContactRole as Role;
pub use pb::{
    AccessRequestKind as Kind, AccessRequestState as State, AccountDocumentsAccess as Docs,
    AccountManagementAccess as Am, ContactUpdatesAccess as Cu, DomainPolicyMode as Mode,
    EntitlementsAccess as En, ManageAccess as Ma, Permission as P, ReportingAccess as Re,
    SoftwareAccess as Sw, SupportLevel as Su,
};

pub const OPERATOR_EMAIL: &str = "operator@keycontacts.test";
pub const PASSWORD: &str = "correct horse battery staple";

/// Cheap argon2 parameters: the tests exercise the logic, not the cost.
pub const FAST_HASHING: [&str; 4] = ["--argon2-memory-kib", "256", "--argon2-iterations", "1"];

pub type Access = AccessManagementServiceClient<Channel>;
pub type Contacts = ContactRegistryServiceClient<Channel>;
pub type IdentityClient = IdentityServiceClient<Channel>;

/// Every permission, in proto order.
pub const ALL_PERMISSIONS: [P; 18] = [
    P::SoftwareDownload,
    P::MediaAccess,
    P::QuotesAndCatalogs,
    P::LicenseRenewal,
    P::ReportsView,
    P::EntitlementsView,
    P::EntitlementsUpdate,
    P::AccountManagement,
    P::AccessView,
    P::AccessUpdate,
    P::ContactsView,
    P::ContactsUpdate,
    P::DocumentsView,
    P::SupportOwnCases,
    P::SupportSiteCases,
    P::SupportAdmin,
    P::ApproveSiteAccess,
    P::ApproveSupportAccess,
];

pub fn check_request(user: Uuid, site_id: &str, permission: P) -> pb::CheckRequest {
    pb::CheckRequest {
        user_id: user.to_string(),
        site_id: site_id.into(),
        permission: permission as i32,
    }
}

/// A SITE_ACCESS request for `tools` on `site`, named by its numbers.
pub fn site_access(site: &cpb::Site, tools: pb::ToolAccess) -> pb::SubmitAccessRequestRequest {
    pb::SubmitAccessRequestRequest {
        site_number: site.site_number.clone(),
        customer_number: site.customer_number.clone(),
        kind: Kind::SiteAccess as i32,
        requested_tools: Some(tools),
        requested_support_level: Su::Unspecified as i32,
        justification: "I download our software".into(),
    }
}

/// A valid CreateSite request without S&S.
pub fn site_request(
    site_number: &str,
    customer_number: &str,
    primary: Uuid,
) -> cpb::CreateSiteRequest {
    cpb::CreateSiteRequest {
        site_number: site_number.into(),
        customer_number: customer_number.into(),
        name: "Lyon Part-Dieu".into(),
        country_code: "FR".into(),
        language: "fr".into(),
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

// ---- tool levels ----

/// Every tool UNSPECIFIED (in a change: keep the current level).
pub fn keep() -> pb::ToolAccess {
    pb::ToolAccess::default()
}

/// Every tool NONE.
pub fn no_tools() -> pb::ToolAccess {
    pb::ToolAccess {
        software: Sw::None as i32,
        reporting: Re::None as i32,
        entitlements: En::None as i32,
        account_management: Am::None as i32,
        manage_access: Ma::None as i32,
        contact_updates: Cu::None as i32,
        account_documents: Docs::None as i32,
    }
}

/// Every tool at its top level.
pub fn top_tools() -> pb::ToolAccess {
    pb::ToolAccess {
        software: Sw::Full as i32,
        reporting: Re::View as i32,
        entitlements: En::Update as i32,
        account_management: Am::Granted as i32,
        manage_access: Ma::Update as i32,
        contact_updates: Cu::Update as i32,
        account_documents: Docs::View as i32,
    }
}

/// One level of one tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Software(Sw),
    Reporting(Re),
    Entitlements(En),
    AccountManagement(Am),
    ManageAccess(Ma),
    ContactUpdates(Cu),
    AccountDocuments(Docs),
}

impl Level {
    /// `tools` with this level set.
    pub fn on(self, mut tools: pb::ToolAccess) -> pb::ToolAccess {
        match self {
            Self::Software(l) => tools.software = l as i32,
            Self::Reporting(l) => tools.reporting = l as i32,
            Self::Entitlements(l) => tools.entitlements = l as i32,
            Self::AccountManagement(l) => tools.account_management = l as i32,
            Self::ManageAccess(l) => tools.manage_access = l as i32,
            Self::ContactUpdates(l) => tools.contact_updates = l as i32,
            Self::AccountDocuments(l) => tools.account_documents = l as i32,
        }
        tools
    }

    /// Only this level set, every other tool UNSPECIFIED.
    pub fn alone(self) -> pb::ToolAccess {
        self.on(keep())
    }

    /// The proto number of this tool's level in `tools`.
    pub fn read(self, tools: &pb::ToolAccess) -> i32 {
        match self {
            Self::Software(_) => tools.software,
            Self::Reporting(_) => tools.reporting,
            Self::Entitlements(_) => tools.entitlements,
            Self::AccountManagement(_) => tools.account_management,
            Self::ManageAccess(_) => tools.manage_access,
            Self::ContactUpdates(_) => tools.contact_updates,
            Self::AccountDocuments(_) => tools.account_documents,
        }
    }

    /// The proto number of the level.
    pub fn number(self) -> i32 {
        match self {
            Self::Software(l) => l as i32,
            Self::Reporting(l) => l as i32,
            Self::Entitlements(l) => l as i32,
            Self::AccountManagement(l) => l as i32,
            Self::ManageAccess(l) => l as i32,
            Self::ContactUpdates(l) => l as i32,
            Self::AccountDocuments(l) => l as i32,
        }
    }

    /// Every level of this level's tool, lowest first.
    pub fn levels_of_tool(self) -> Vec<Level> {
        match self {
            Self::Software(_) => [Sw::None, Sw::DownloadsOnly, Sw::DownloadsAndMedia, Sw::Full]
                .map(Self::Software)
                .to_vec(),
            Self::Reporting(_) => [Re::None, Re::View].map(Self::Reporting).to_vec(),
            Self::Entitlements(_) => [En::None, En::View, En::Update]
                .map(Self::Entitlements)
                .to_vec(),
            Self::AccountManagement(_) => [Am::None, Am::Granted]
                .map(Self::AccountManagement)
                .to_vec(),
            Self::ManageAccess(_) => [Ma::None, Ma::View, Ma::Update]
                .map(Self::ManageAccess)
                .to_vec(),
            Self::ContactUpdates(_) => [Cu::None, Cu::View, Cu::Update]
                .map(Self::ContactUpdates)
                .to_vec(),
            Self::AccountDocuments(_) => [Docs::None, Docs::View]
                .map(Self::AccountDocuments)
                .to_vec(),
        }
    }

    /// The lowest (NONE) level of this tool.
    pub fn none(self) -> Level {
        self.levels_of_tool()[0]
    }

    /// The top level of this tool.
    pub fn top(self) -> Level {
        *self.levels_of_tool().last().expect("levels")
    }

    /// Rank within the tool: NONE is 0.
    pub fn rank(self) -> usize {
        self.levels_of_tool()
            .iter()
            .position(|l| *l == self)
            .expect("a level of its own tool")
    }
}

/// One level per tool, each tool once: the first level of each tool.
pub const TOOLS: [Level; 7] = [
    Level::Software(Sw::None),
    Level::Reporting(Re::None),
    Level::Entitlements(En::None),
    Level::AccountManagement(Am::None),
    Level::ManageAccess(Ma::None),
    Level::ContactUpdates(Cu::None),
    Level::AccountDocuments(Docs::None),
];

// ---- requests, statuses, polling ----

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

/// Asserts one of `codes`.
#[track_caller]
pub fn expect_codes<T: std::fmt::Debug>(result: Result<T, Status>, codes: &[Code]) -> Status {
    match result {
        Ok(value) => panic!("expected one of {codes:?}, got Ok({value:?})"),
        Err(status) => {
            assert!(
                codes.contains(&status.code()),
                "expected one of {codes:?}: {status:?}"
            );
            status
        }
    }
}

/// Asserts that a rule refused the call: FAILED_PRECONDITION (a rule forbids it) or
/// PERMISSION_DENIED (the acting person lacks the authority), with a message citing `rule`.
#[track_caller]
pub fn expect_refused<T: std::fmt::Debug>(result: Result<T, Status>, rule: &str) -> Status {
    let status = expect_codes(result, &[Code::FailedPrecondition, Code::PermissionDenied]);
    assert!(
        cites(status.message(), rule),
        "expected the message to cite rule {rule}: {:?}",
        status.message()
    );
    status
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

/// Polls `condition` until it holds (bounded by [`PATIENCE`]).
pub async fn wait_until<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    eventually(what, || {
        let fut = condition();
        async move {
            if fut.await {
                Ok(())
            } else {
                Err("false".into())
            }
        }
    })
    .await
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

/// The roles of `implied_by`.
pub fn roles(profile: &pb::AccessProfile) -> Vec<Role> {
    profile
        .implied_by
        .iter()
        .map(|r| Role::try_from(*r).expect("known role"))
        .collect()
}

/// The state of a request.
pub fn state(request: &pb::AccessRequest) -> State {
    State::try_from(request.state).expect("known state")
}

/// A timestamp as `(seconds, nanos)`, to compare timestamps.
pub fn ts(t: &Option<prost_types::Timestamp>) -> (i64, i32) {
    let t = t.as_ref().expect("timestamp");
    (t.seconds, t.nanos)
}
