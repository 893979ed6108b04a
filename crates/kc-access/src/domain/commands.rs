//! The requests of access management once parsed: every field is a checked domain value, so
//! the service never sees a malformed request (`convert` builds them from the proto
//! requests). [`AccessAsk`] holds the shape rules of what a request for access asks (A1).

use chrono::{DateTime, Utc};
use kc_runtime::Violations;
use uuid::Uuid;

use super::values::{CustomerNumber, EmailDomain, Etag, SiteNumber};
use super::{
    AccessRequestKind, Grants, Permission, PolicyMode, RequestState, SupportLevel, ToolAccess,
    ToolLevel,
};

/// Most checks in one BatchCheck.
pub const MAX_BATCH_CHECKS: usize = 100;

/// Per tool, in the order of [`Tool::ALL`](super::Tool::ALL), the level a request names;
/// `None` where it leaves the tool unspecified.
pub type ToolLevels = [Option<ToolLevel>; 7];

/// `tools` with the levels named in `levels` set, the others kept.
pub fn with_levels(tools: ToolAccess, levels: &ToolLevels) -> ToolAccess {
    levels
        .iter()
        .flatten()
        .fold(tools, |tools, level| tools.with(*level))
}

/// The sort key of an approver in ListApprovers: the number of the role that makes it an
/// approver (255 for none), then its user id.
pub type ApproverKey = (u8, Uuid);

/// What a change of rights does to the end of the user's grant on the site (T9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EndChange {
    /// Keeps the grant's current end, if any (the change names none).
    #[default]
    Keep,
    /// The grant ends at this instant (in the future when parsed).
    Until(DateTime<Utc>),
    /// The grant no longer ends.
    Remove,
}

/// The end an approval gives the requester's grant (T9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ApprovalEnd {
    /// None: the grant keeps the end it has, if any.
    #[default]
    None,
    /// At this instant (in the future when parsed).
    Until(DateTime<Utc>),
    /// This long after the grant starts: the approval's commit, or its start ("for 90 days").
    For(chrono::Duration),
}

/// One user's rights on one site (GetAccessProfile).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProfileRef {
    /// Site.
    pub site_id: Uuid,
    /// User.
    pub user_id: Uuid,
}

/// A change of some of a user's explicit tool levels (SetToolAccess, T4, T5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolsChange {
    /// Site.
    pub site_id: Uuid,
    /// User whose levels change.
    pub user_id: Uuid,
    /// The levels to set (at least one); the tools left `None` keep theirs.
    pub levels: ToolLevels,
    /// What happens to the grant's end (T9).
    pub end: EndChange,
    /// When a new grant starts (T9); `None`: at once.
    pub start: Option<DateTime<Utc>>,
    /// Why (T5).
    pub reason: String,
    /// The version of the profile the caller read.
    pub etag: Etag,
}

/// A change of a user's explicit support level (SetSupportAccess, U4–U6, T5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupportChange {
    /// Site.
    pub site_id: Uuid,
    /// User whose level changes.
    pub user_id: Uuid,
    /// The level to set.
    pub level: SupportLevel,
    /// What happens to the grant's end (T9).
    pub end: EndChange,
    /// When a new grant starts (T9); `None`: at once.
    pub start: Option<DateTime<Utc>>,
    /// Why (T5).
    pub reason: String,
    /// The version of the profile the caller read.
    pub etag: Etag,
}

/// The removal of every explicit grant of a user on a site (RevokeAccess, T5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// Site.
    pub site_id: Uuid,
    /// User whose grants go.
    pub user_id: Uuid,
    /// Why (T5).
    pub reason: String,
    /// The version of the profile the caller read.
    pub etag: Etag,
}

/// A page of a site's profiles (ListSiteAccess).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SiteAccessQuery {
    /// Site.
    pub site_id: Uuid,
    /// The user id the previous page ended with.
    pub after: Option<Uuid>,
    /// Most profiles in the page.
    pub size: u32,
}

/// A page of one user's profiles (ListUserAccess).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserAccessQuery {
    /// User.
    pub user_id: Uuid,
    /// The site id the previous page ended with.
    pub after: Option<Uuid>,
    /// Most profiles in the page.
    pub size: u32,
}

/// Whether a user holds a permission on a site (Check, and each check of BatchCheck).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckQuery {
    /// Site.
    pub site_id: Uuid,
    /// User.
    pub user_id: Uuid,
    /// The permission asked about.
    pub permission: Permission,
    /// Read the rights from the database, not the rights cache (a caller that must see
    /// every committed change: the gateway's `at_least_as_fresh`).
    pub skip_cache: bool,
}

/// The sites where a user holds a permission (LookupSites), a page after a site id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LookupSitesQuery {
    /// User.
    pub user_id: Uuid,
    /// The permission asked about.
    pub permission: Permission,
    /// The site id the previous page ended with.
    pub after: Option<Uuid>,
    /// Most sites in the page.
    pub size: u32,
}

/// The users who hold a permission on a site (LookupUsers), a page after a user id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LookupUsersQuery {
    /// Site.
    pub site_id: Uuid,
    /// The permission asked about.
    pub permission: Permission,
    /// The user id the previous page ended with.
    pub after: Option<Uuid>,
    /// Most users in the page.
    pub size: u32,
}

/// Several checks in one call (BatchCheck): 1 to [`MAX_BATCH_CHECKS`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchCheckQuery {
    /// The checks, in the order asked.
    pub checks: Vec<CheckQuery>,
}

/// A page of the users who may decide requests of a kind on a site (ListApprovers, A3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApproversQuery {
    /// Site.
    pub site_id: Uuid,
    /// The kind of request the approvers decide.
    pub kind: AccessRequestKind,
    /// The key the previous page ended with.
    pub after: Option<ApproverKey>,
    /// Most approvers in the page.
    pub size: u32,
}

/// What a request for access asks (A1): tool levels for SITE_ACCESS, a support level for
/// SUPPORT_ACCESS, never both. Only [`AccessAsk::parse`] makes one, so every `AccessAsk`
/// follows these rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccessAsk {
    kind: AccessRequestKind,
    asked: Grants,
}

impl AccessAsk {
    /// What a request of `kind` asks, from the tool levels and the support level it names
    /// (`None`: unspecified). A SITE_ACCESS request names at least one tool level above NONE
    /// and no support level; a SUPPORT_ACCESS request names no tool level and a support
    /// level above NO_ACCESS. Each breach is recorded in `v`, on the request's fields
    /// `requested_tools` and `requested_support_level`; `None` when there was one.
    pub fn parse(
        v: &mut Violations,
        kind: AccessRequestKind,
        tools: &ToolLevels,
        support: Option<SupportLevel>,
    ) -> Option<Self> {
        v.nested(|v| {
            let asked = match kind {
                AccessRequestKind::SiteAccess => {
                    let tools = with_levels(ToolAccess::NONE, tools);
                    if tools.is_none() {
                        v.add(
                            "requested_tools",
                            "ask for at least one tool level above NONE",
                        );
                    }
                    if support.is_some() {
                        v.add(
                            "requested_support_level",
                            "must be UNSPECIFIED for a SITE_ACCESS request",
                        );
                    }
                    Grants {
                        tools,
                        support: SupportLevel::NoAccess,
                    }
                }
                AccessRequestKind::SupportAccess => {
                    if tools.iter().any(Option::is_some) {
                        v.add(
                            "requested_tools",
                            "must be absent for a SUPPORT_ACCESS request",
                        );
                    }
                    match support {
                        None => v.add(
                            "requested_support_level",
                            "is required for a SUPPORT_ACCESS request",
                        ),
                        Some(SupportLevel::NoAccess) => v.add(
                            "requested_support_level",
                            "ask for a level above SUPPORT_LEVEL_NO_ACCESS",
                        ),
                        Some(_) => {}
                    }
                    Grants {
                        tools: ToolAccess::NONE,
                        support: support.unwrap_or(SupportLevel::NoAccess),
                    }
                }
            };
            Some(Self { kind, asked })
        })
    }

    /// What is asked for.
    pub fn kind(&self) -> AccessRequestKind {
        self.kind
    }

    /// The levels asked for: tools for SITE_ACCESS, support for SUPPORT_ACCESS; the rest
    /// NONE.
    pub fn asked(&self) -> Grants {
        self.asked
    }
}

/// A user's request for access to a site named by its numbers (SubmitAccessRequest, A1,
/// S3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    /// Site number.
    pub site_number: SiteNumber,
    /// Customer number of the same site.
    pub customer_number: CustomerNumber,
    /// What is asked.
    pub ask: AccessAsk,
    /// The requester's justification (may be empty).
    pub justification: String,
}

/// One access request, by id (GetAccessRequest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestRef {
    /// The request's id.
    pub request_id: Uuid,
}

/// A page of a site's requests, newest first (ListAccessRequests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SiteRequestsQuery {
    /// Site.
    pub site_id: Uuid,
    /// Only requests in this state, when given.
    pub state: Option<RequestState>,
    /// The request id the previous page ended with.
    pub before: Option<Uuid>,
    /// Most requests in the page.
    pub size: u32,
}

/// A page of the actor's own requests, newest first (ListMyAccessRequests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MyRequestsQuery {
    /// The request id the previous page ended with.
    pub before: Option<Uuid>,
    /// Most requests in the page.
    pub size: u32,
}

/// What an approval grants: per kind, the levels chosen, each defaulting to what was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GrantChoice {
    /// SITE_ACCESS: per tool, the level to grant (`None`: the requested one). `None` as a
    /// whole: exactly what was asked.
    pub tools: Option<ToolLevels>,
    /// SUPPORT_ACCESS: the level to grant (`None`: the requested one).
    pub support: Option<SupportLevel>,
}

/// The approval of a PENDING request (ApproveAccessRequest, A3, A4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    /// The request.
    pub request_id: Uuid,
    /// What to grant.
    pub choice: GrantChoice,
    /// When the grant ends (T9).
    pub end: ApprovalEnd,
    /// When the grant starts (T9); `None`: at once.
    pub start: Option<DateTime<Utc>>,
    /// The approver's note, if any.
    pub note: Option<String>,
    /// The version of the request the approver read.
    pub etag: Etag,
}

/// The rejection of a PENDING request (RejectAccessRequest, A4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The request.
    pub request_id: Uuid,
    /// Why (A4: a refusal needs a reason).
    pub reason: String,
    /// The version of the request the approver read.
    pub etag: Etag,
}

/// The withdrawal of a PENDING request by its requester (CancelAccessRequest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cancellation {
    /// The request.
    pub request_id: Uuid,
    /// The version of the request the requester read.
    pub etag: Etag,
}

/// The creation or change of a site's policy for an e-mail domain (SetDomainPolicy, A7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyChange {
    /// Site.
    pub site_id: Uuid,
    /// The e-mail domain.
    pub domain: EmailDomain,
    /// What happens to requests from the domain.
    pub mode: PolicyMode,
    /// Levels granted or proposed to matching requesters.
    pub baseline: Grants,
    /// The version of the policy the caller read (none for a new one).
    pub etag: Etag,
}

/// A page of a site's domain policies in domain order (ListDomainPolicies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoliciesQuery {
    /// Site.
    pub site_id: Uuid,
    /// The domain the previous page ended with.
    pub after: Option<String>,
    /// Most policies in the page.
    pub size: u32,
}

/// Most sites a permission feed may be narrowed to (WatchPermissionChanges).
pub const MAX_FEED_SITES: usize = 1000;

/// The changes of effective permissions after a position of the stream
/// (WatchPermissionChanges), on every site or only on some.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermissionFeedQuery {
    /// The cursor of the last change received; the start of the stream when none was.
    pub after: kc_runtime::outbox::Cursor,
    /// Only the changes on these sites; empty: on every site.
    pub site_ids: std::collections::BTreeSet<Uuid>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ReportingAccess, Tool};

    fn fields(v: Violations) -> Vec<String> {
        match v.finish() {
            Ok(()) => Vec::new(),
            Err(kc_runtime::ApiError::InvalidArgument(found)) => {
                found.into_iter().map(|violation| violation.field).collect()
            }
            Err(other) => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_site_access_request_asks_for_tools_only() {
        let mut levels: ToolLevels = [None; 7];
        let reporting = Tool::ALL
            .iter()
            .position(|tool| *tool == Tool::Reporting)
            .expect("reporting is a tool");
        levels[reporting] = Some(ToolLevel::Reporting(ReportingAccess::View));
        let mut v = Violations::new();
        let ask = AccessAsk::parse(&mut v, AccessRequestKind::SiteAccess, &levels, None)
            .expect("a valid ask");
        assert_eq!(ask.asked().tools.reporting, ReportingAccess::View);
        assert_eq!(ask.asked().support, SupportLevel::NoAccess);
        assert!(fields(v).is_empty());

        let mut v = Violations::new();
        let none = AccessAsk::parse(
            &mut v,
            AccessRequestKind::SiteAccess,
            &[None; 7],
            Some(SupportLevel::Full),
        );
        assert_eq!(none, None);
        assert_eq!(fields(v), ["requested_tools", "requested_support_level"]);
    }

    #[test]
    fn a_support_access_request_asks_for_a_support_level_only() {
        let mut v = Violations::new();
        let ask = AccessAsk::parse(
            &mut v,
            AccessRequestKind::SupportAccess,
            &[None; 7],
            Some(SupportLevel::Full),
        );
        assert_eq!(ask.map(|ask| ask.asked().support), Some(SupportLevel::Full));
        for support in [None, Some(SupportLevel::NoAccess)] {
            let mut v = Violations::new();
            let ask = AccessAsk::parse(
                &mut v,
                AccessRequestKind::SupportAccess,
                &[None; 7],
                support,
            );
            assert_eq!(ask, None);
            assert_eq!(fields(v), ["requested_support_level"]);
        }
    }
}
