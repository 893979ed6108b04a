//! Harness of the access management tests: ONE real Postgres database and the three real
//! services in-process on `127.0.0.1:0`, each in its own schema: identity (cheap argon2),
//! the contact registry (verifying tokens with identity's keys), and access management
//! following both event streams with a service account created through identity's domain.
//!
//! Callers are as in production: an operator signed in at identity, and a "gateway" service
//! account acting for people through `x-kc-on-behalf-of`.

use futures::StreamExt;
use kc_proto::access::{self as pb};
use kc_proto::contacts::{self as cpb};
use kc_proto::identity::{self as ipb};
use kc_suite_tests::{Sandbox, Service};
use kc_testkit::Restartable;
use tonic::Status;
use tonic::transport::Channel;
use uuid::Uuid;

mod suite;

pub use suite::Suite;

pub use kc_suite_tests::{OPERATOR_EMAIL, PASSWORD};
pub use kc_testkit::checks::{PATIENCE, cites, eventually};
pub use kc_testkit::fixtures::{no_tools, site_request, top_tools};
pub use kc_testkit::grpc::{
    all_at_once, all_pages, authed, expect_code, expect_codes, expect_field_within as expect_field,
    expect_refused, find_message, next_messages, on_behalf_of, read_pages, uuid, wait_until,
};

pub use cpb::ContactRole as Role;
pub use pb::{
    AccessRequestKind as Kind, AccessRequestState as State, AccountDocumentsAccess as Docs,
    AccountManagementAccess as Am, ContactUpdatesAccess as Cu, DomainPolicyMode as Mode,
    EntitlementsAccess as En, ManageAccess as Ma, Permission as P, ReportingAccess as Re,
    SoftwareAccess as Sw, SupportLevel as Su,
};

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

// ---- tool levels ----

/// Every tool UNSPECIFIED (in a change: keep the current level).
pub fn keep() -> pb::ToolAccess {
    pb::ToolAccess::default()
}

/// Only `levels` set, every other tool UNSPECIFIED.
pub fn only(levels: &[Level]) -> pb::ToolAccess {
    levels.iter().fold(keep(), |tools, level| level.on(tools))
}

/// What the SECONDARY role implies (rule T3): manage access and contact updates UPDATE,
/// every other tool NONE.
pub fn secondary_tools() -> pb::ToolAccess {
    pb::ToolAccess {
        manage_access: Ma::Update as i32,
        contact_updates: Cu::Update as i32,
        ..no_tools()
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

/// Waits until a session of the suite's database waits for a lock: the session of backend
/// `pid` when given, any session otherwise (e.g. a service's, whose pid the test cannot know).
pub async fn wait_for_lock_wait(pool: &sqlx::PgPool, what: &str, pid: Option<i32>) {
    eventually(what, || {
        let pool = pool.clone();
        async move {
            let waiting: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM pg_locks l \
                 JOIN pg_stat_activity a ON a.pid = l.pid \
                 WHERE NOT l.granted AND a.datname = current_database() \
                 AND ($1::int4 IS NULL OR l.pid = $1))",
            )
            .bind(pid)
            .fetch_one(&pool)
            .await
            .map_err(|error| error.to_string())?;
            if waiting {
                Ok(())
            } else {
                Err("not waiting yet".to_owned())
            }
        }
    })
    .await;
}
