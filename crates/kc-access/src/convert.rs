//! Every conversion between the proto messages of `keycontacts.access.v1` and the domain of
//! access management: requests into the commands of [`crate::domain::commands`] (each
//! collecting all its field violations in one pass, then reading its etag, which is `Aborted`
//! rather than invalid when this service never issued it), and entities and pages back into
//! their published forms, for the API and for the events alike.

use kc_proto::access as pb;
use kc_runtime::grpc::next_page_token;
use kc_runtime::paging::{Page, decode_token, page_size};
use kc_runtime::values::timestamp;
use kc_runtime::{ApiError, Violation, Violations};
use uuid::Uuid;

use crate::domain::commands::{
    AccessAsk, Approval, ApprovalEnd, ApproverKey, ApproversQuery, BatchCheckQuery, Cancellation,
    CheckQuery, EndChange, GrantChoice, LookupSitesQuery, LookupUsersQuery, MAX_BATCH_CHECKS,
    MyRequestsQuery, PoliciesQuery, PolicyChange, ProfileRef, Rejection, RequestRef, Revocation,
    SiteAccessQuery, SiteRequestsQuery, Submission, SupportChange, ToolLevels, ToolsChange,
    UserAccessQuery, with_levels,
};
use crate::domain::commands::{MAX_FEED_SITES, PermissionFeedQuery};
use crate::domain::service::{SupportUsersQuery, UserAccessChange};
use crate::domain::values::{
    CustomerNumber, EmailDomain, Etag, SiteNumber, grant_end, grant_length, justification,
    optional_note, parse_id, required_reason,
};
use crate::domain::{
    AccessRequest, AccessRequestKind, Approver, Decision, DomainPolicy, Grants, Holding,
    Permission, PolicyMode, Profile, RequestState, SupportLevel, Tool, ToolAccess, ToolLevel,
};

/// Implements `TryFrom<$request>` for `$query`, a page of one site's items keyed by `$key`:
/// the request's `site_id`, `page_size` and `page_token` read by [`site_page`] into the
/// query's `site_id`, `size` and `after`.
macro_rules! site_page_query {
    ($request:ty => $query:ty, $key:expr) => {
        impl TryFrom<$request> for $query {
            type Error = ApiError;

            fn try_from(r: $request) -> Result<Self, ApiError> {
                let (site_id, after, size) =
                    site_page(&r.site_id, r.page_size, &r.page_token, $key)?;
                Ok(Self {
                    site_id,
                    after,
                    size,
                })
            }
        }
    };
}

mod blocks;

pub(crate) use blocks::blocks_response;

/// Default and largest page sizes of most lists.
const LIST_PAGE: (u32, u32) = (100, 1000);
/// Default and largest page sizes of ListApprovers.
const APPROVERS_PAGE: (u32, u32) = (1000, 1000);
/// T5, cited when a change of rights gives no reason.
const T5_REASON: &str = "T5: every change of rights records why";

/// Ends the parse of a request that carries an etag: its field violations first (all of them,
/// `InvalidArgument`), then its etag (`Aborted` when this service never issued it), then the
/// command `assemble` builds.
fn build_with_etag<T>(
    v: Violations,
    etag: &str,
    assemble: impl FnOnce(Etag) -> Option<T>,
) -> Result<T, ApiError> {
    v.finish()?;
    let etag = Etag::parse("etag", etag)?;
    Violations::new().build(|| assemble(etag))
}

/// What a SetToolAccess or SetSupportAccess request does to the grant's end (T9).
fn end_change(
    v: &mut Violations,
    valid_until: Option<&prost_types::Timestamp>,
    without_end: bool,
) -> Option<EndChange> {
    match (valid_until, without_end) {
        (None, false) => Some(EndChange::Keep),
        (None, true) => Some(EndChange::Remove),
        (Some(_), true) => {
            v.add(
                "without_end",
                "rule T9: a grant either ends at valid_until or has no end, not both",
            );
            None
        }
        (Some(end), false) => v
            .check(grant_end("valid_until", end, chrono::Utc::now()))
            .map(EndChange::Until),
    }
}

/// The start of a new grant (T9): in the future, and before `valid_until` when that is
/// given; `Some(None)` when absent, `None` when invalid.
fn grant_start(
    v: &mut Violations,
    valid_from: Option<&prost_types::Timestamp>,
    valid_until: Option<&prost_types::Timestamp>,
) -> Option<Option<chrono::DateTime<chrono::Utc>>> {
    let Some(from) = valid_from else {
        return Some(None);
    };
    let start = v.check(grant_end("valid_from", from, chrono::Utc::now()))?;
    if valid_until.is_some_and(|until| (until.seconds, until.nanos) <= (from.seconds, from.nanos)) {
        v.add(
            "valid_until",
            "rule T9: the end of a grant must come after its start (valid_from)",
        );
        return None;
    }
    Some(Some(start))
}

/// The end an approval gives (T9).
fn approval_end(
    v: &mut Violations,
    valid_until: Option<&prost_types::Timestamp>,
    valid_for: Option<&prost_types::Duration>,
) -> Option<ApprovalEnd> {
    match (valid_until, valid_for) {
        (None, None) => Some(ApprovalEnd::None),
        (Some(_), Some(_)) => {
            v.add(
                "valid_for",
                "rule T9: give the grant's end as valid_until or valid_for, not both",
            );
            None
        }
        (Some(end), None) => v
            .check(grant_end("valid_until", end, chrono::Utc::now()))
            .map(ApprovalEnd::Until),
        (None, Some(length)) => v
            .check(grant_length("valid_for", length))
            .map(ApprovalEnd::For),
    }
}

/// The proto number of `tool` in a `ToolAccess` message.
fn tool_number(tools: &pb::ToolAccess, tool: Tool) -> i32 {
    match tool {
        Tool::Software => tools.software,
        Tool::Reporting => tools.reporting,
        Tool::Entitlements => tools.entitlements,
        Tool::AccountManagement => tools.account_management,
        Tool::ManageAccess => tools.manage_access,
        Tool::ContactUpdates => tools.contact_updates,
        Tool::AccountDocuments => tools.account_documents,
    }
}

/// The proto enum prefix of a tool's levels, for messages.
fn tool_enum(tool: Tool) -> &'static str {
    match tool {
        Tool::Software => "SOFTWARE_ACCESS",
        Tool::Reporting => "REPORTING_ACCESS",
        Tool::Entitlements => "ENTITLEMENTS_ACCESS",
        Tool::AccountManagement => "ACCOUNT_MANAGEMENT_ACCESS",
        Tool::ManageAccess => "MANAGE_ACCESS",
        Tool::ContactUpdates => "CONTACT_UPDATES_ACCESS",
        Tool::AccountDocuments => "ACCOUNT_DOCUMENTS_ACCESS",
    }
}

/// The levels set in a `ToolAccess` message, `None` where UNSPECIFIED; field paths start
/// with `prefix` (e.g. `tools`). `None` as a whole when a level is not one of its tool's.
fn tool_levels(v: &mut Violations, prefix: &str, tools: &pb::ToolAccess) -> Option<ToolLevels> {
    v.nested(|v| {
        let mut levels: ToolLevels = [None; 7];
        for (slot, tool) in levels.iter_mut().zip(Tool::ALL) {
            let number = tool_number(tools, tool);
            if number == 0 {
                continue;
            }
            *slot = v.check(ToolLevel::from_number(tool, number).ok_or_else(|| {
                Violation::new(
                    format!("{prefix}.{}", tool.field()),
                    format!("must be a {}_* value", tool_enum(tool)),
                )
            }));
        }
        Some(levels)
    })
}

/// A support level field: `None` for UNSPECIFIED, a violation for unknown numbers.
fn support_level(field: &str, number: i32) -> Result<Option<SupportLevel>, Violation> {
    if number == 0 {
        return Ok(None);
    }
    SupportLevel::from_number(number)
        .map(Some)
        .ok_or_else(|| Violation::new(field, "must be a SUPPORT_LEVEL_* value"))
}

fn kind_from_proto(field: &str, number: i32) -> Result<AccessRequestKind, Violation> {
    AccessRequestKind::from_number(number).ok_or_else(|| {
        Violation::new(
            field,
            "must be ACCESS_REQUEST_KIND_SITE_ACCESS or ACCESS_REQUEST_KIND_SUPPORT_ACCESS",
        )
    })
}

fn permission_from_proto(field: &str, number: i32) -> Result<Permission, Violation> {
    Permission::from_number(number)
        .ok_or_else(|| Violation::new(field, "must be a PERMISSION_* value other than UNSPECIFIED"))
}

/// A request state filter: `None` for UNSPECIFIED (every state).
fn state_filter(field: &str, number: i32) -> Result<Option<RequestState>, Violation> {
    if number == 0 {
        return Ok(None);
    }
    RequestState::from_number(number)
        .map(Some)
        .ok_or_else(|| Violation::new(field, "must be an ACCESS_REQUEST_STATE_* value"))
}

/// The violation of a well-formed page token whose key this service cannot have issued.
fn foreign_page_token() -> Violation {
    Violation::new("page_token", "not a page token this service issued")
}

/// A page token of one key part read by `parse`: `None` for an empty token.
fn single_key<T>(token: &str, parse: impl Fn(&str) -> Option<T>) -> Result<Option<T>, Violation> {
    decode_token(token, 1)?
        .and_then(|mut key| key.pop())
        .map(|key| parse(&key).ok_or_else(foreign_page_token))
        .transpose()
}

fn uuid_key(key: &str) -> Option<Uuid> {
    Uuid::parse_str(key).ok()
}

/// A page token's key part that is text as it stands (a domain, a blocked target).
fn text_key(key: &str) -> Option<String> {
    Some(key.to_owned())
}

/// The request of a page of one site's items, keyed by `key`: the site's id, the key to
/// start after (`None` for the first page) and the page size; all violations at once.
fn site_page<K>(
    site_id: &str,
    size: i32,
    token: &str,
    key: impl Fn(&str) -> Option<K>,
) -> Result<(Uuid, Option<K>, u32), ApiError> {
    let mut v = Violations::new();
    let site_id = v.check(parse_id("site_id", site_id));
    let size = v.check(page_size(size, LIST_PAGE.0, LIST_PAGE.1));
    let after = v.check(single_key(token, key));
    v.build(|| Some((site_id?, after?, size?)))
}

/// The key of a ListApprovers page token: the role rank, then the user id.
fn approver_key(token: &str) -> Result<Option<ApproverKey>, Violation> {
    decode_token(token, 2)?
        .map(|key| match (key[0].parse(), Uuid::parse_str(&key[1])) {
            (Ok(rank), Ok(user_id)) => Ok((rank, user_id)),
            _ => Err(foreign_page_token()),
        })
        .transpose()
}

/// Parses the three fields of one check; field paths start with `prefix`.
fn check_query(v: &mut Violations, prefix: &str, check: &pb::CheckRequest) -> Option<CheckQuery> {
    let user_id = v.check(parse_id(&format!("{prefix}user_id"), &check.user_id));
    let site_id = v.check(parse_id(&format!("{prefix}site_id"), &check.site_id));
    let permission = v.check(permission_from_proto(
        &format!("{prefix}permission"),
        check.permission,
    ));
    Some(CheckQuery {
        site_id: site_id?,
        user_id: user_id?,
        permission: permission?,
        skip_cache: false,
    })
}

impl TryFrom<pb::GetAccessProfileRequest> for ProfileRef {
    type Error = ApiError;

    fn try_from(r: pb::GetAccessProfileRequest) -> Result<Self, ApiError> {
        let mut v = Violations::new();
        let site_id = v.check(parse_id("site_id", &r.site_id));
        let user_id = v.check(parse_id("user_id", &r.user_id));
        v.build(|| {
            Some(Self {
                site_id: site_id?,
                user_id: user_id?,
            })
        })
    }
}

impl TryFrom<pb::SetToolAccessRequest> for ToolsChange {
    type Error = ApiError;

    fn try_from(r: pb::SetToolAccessRequest) -> Result<Self, ApiError> {
        let mut v = Violations::new();
        let site_id = v.check(parse_id("site_id", &r.site_id));
        let user_id = v.check(parse_id("user_id", &r.user_id));
        let levels = match &r.tools {
            None => {
                v.add("tools", "is required");
                None
            }
            Some(tools) => tool_levels(&mut v, "tools", tools),
        };
        if levels.is_some_and(|levels| levels.iter().all(Option::is_none)) {
            v.add("tools", "name at least one tool level to set");
        }
        let end = end_change(&mut v, r.valid_until.as_ref(), r.without_end);
        let start = grant_start(&mut v, r.valid_from.as_ref(), r.valid_until.as_ref());
        let reason = v.check(required_reason("reason", &r.reason, T5_REASON));
        build_with_etag(v, &r.etag, |etag| {
            Some(Self {
                site_id: site_id?,
                user_id: user_id?,
                levels: levels?,
                end: end?,
                start: start?,
                reason: reason?,
                etag,
            })
        })
    }
}

impl TryFrom<pb::SetSupportAccessRequest> for SupportChange {
    type Error = ApiError;

    fn try_from(r: pb::SetSupportAccessRequest) -> Result<Self, ApiError> {
        let mut v = Violations::new();
        let site_id = v.check(parse_id("site_id", &r.site_id));
        let user_id = v.check(parse_id("user_id", &r.user_id));
        let level = match v.check(support_level("support_level", r.support_level)) {
            Some(None) => {
                v.add("support_level", "is required");
                None
            }
            other => other.flatten(),
        };
        let end = end_change(&mut v, r.valid_until.as_ref(), r.without_end);
        let start = grant_start(&mut v, r.valid_from.as_ref(), r.valid_until.as_ref());
        let reason = v.check(required_reason("reason", &r.reason, T5_REASON));
        build_with_etag(v, &r.etag, |etag| {
            Some(Self {
                site_id: site_id?,
                user_id: user_id?,
                level: level?,
                end: end?,
                start: start?,
                reason: reason?,
                etag,
            })
        })
    }
}

impl TryFrom<pb::RevokeAccessRequest> for Revocation {
    type Error = ApiError;

    fn try_from(r: pb::RevokeAccessRequest) -> Result<Self, ApiError> {
        let mut v = Violations::new();
        let site_id = v.check(parse_id("site_id", &r.site_id));
        let user_id = v.check(parse_id("user_id", &r.user_id));
        let reason = v.check(required_reason("reason", &r.reason, T5_REASON));
        build_with_etag(v, &r.etag, |etag| {
            Some(Self {
                site_id: site_id?,
                user_id: user_id?,
                reason: reason?,
                etag,
            })
        })
    }
}

site_page_query!(pb::ListSiteAccessRequest => SiteAccessQuery, uuid_key);

site_page_query!(pb::ListSupportUsersRequest => SupportUsersQuery, uuid_key);

impl TryFrom<pb::SetUserAccessRequest> for UserAccessChange {
    type Error = ApiError;

    fn try_from(r: pb::SetUserAccessRequest) -> Result<Self, ApiError> {
        let mut v = Violations::new();
        let site_id = v.check(parse_id("site_id", &r.site_id));
        let user_id = if r.user_id.is_empty() && r.validate_only {
            Some(None)
        } else {
            v.check(parse_id("user_id", &r.user_id)).map(Some)
        };
        let levels = match &r.tools {
            None => Some([None; 7]),
            Some(tools) => tool_levels(&mut v, "tools", tools),
        };
        let support = v.check(support_level("support_level", r.support_level));
        let reason = v.check(required_reason("reason", &r.reason, T5_REASON));
        if r.welcome && r.validate_only {
            v.add("welcome", "a dry run (validate_only) welcomes nobody");
        }
        build_with_etag(v, &r.etag, |etag| {
            Some(Self {
                site_id: site_id?,
                user_id: user_id?,
                levels: levels?,
                support: support?,
                reason: reason?,
                etag,
                validate_only: r.validate_only,
                allow_invited: r.allow_invited,
                welcome: r.welcome,
            })
        })
    }
}

impl TryFrom<pb::ListUserAccessRequest> for UserAccessQuery {
    type Error = ApiError;

    fn try_from(r: pb::ListUserAccessRequest) -> Result<Self, ApiError> {
        let mut v = Violations::new();
        let user_id = v.check(parse_id("user_id", &r.user_id));
        let size = v.check(page_size(r.page_size, LIST_PAGE.0, LIST_PAGE.1));
        let after = v.check(single_key(&r.page_token, uuid_key));
        v.build(|| {
            Some(Self {
                user_id: user_id?,
                after: after?,
                size: size?,
            })
        })
    }
}

impl TryFrom<pb::LookupSitesRequest> for LookupSitesQuery {
    type Error = ApiError;

    fn try_from(r: pb::LookupSitesRequest) -> Result<Self, ApiError> {
        let mut v = Violations::new();
        let user_id = v.check(parse_id("user_id", &r.user_id));
        let permission = v.check(permission_from_proto("permission", r.permission));
        let size = v.check(page_size(r.page_size, LIST_PAGE.0, LIST_PAGE.1));
        let after = v.check(single_key(&r.page_token, uuid_key));
        v.build(|| {
            Some(Self {
                user_id: user_id?,
                permission: permission?,
                after: after?,
                size: size?,
            })
        })
    }
}

impl TryFrom<pb::LookupUsersRequest> for LookupUsersQuery {
    type Error = ApiError;

    fn try_from(r: pb::LookupUsersRequest) -> Result<Self, ApiError> {
        let mut v = Violations::new();
        let site_id = v.check(parse_id("site_id", &r.site_id));
        let permission = v.check(permission_from_proto("permission", r.permission));
        let size = v.check(page_size(r.page_size, LIST_PAGE.0, LIST_PAGE.1));
        let after = v.check(single_key(&r.page_token, uuid_key));
        v.build(|| {
            Some(Self {
                site_id: site_id?,
                permission: permission?,
                after: after?,
                size: size?,
            })
        })
    }
}

impl TryFrom<pb::WatchPermissionChangesRequest> for PermissionFeedQuery {
    type Error = ApiError;

    fn try_from(r: pb::WatchPermissionChangesRequest) -> Result<Self, ApiError> {
        let mut v = Violations::new();
        let after = v.check(
            r.after_cursor
                .parse()
                .map_err(|_| Violation::new("after_cursor", "not a cursor this service issued")),
        );
        if r.site_ids.len() > MAX_FEED_SITES {
            v.add(
                "site_ids",
                format!(
                    "give at most {MAX_FEED_SITES} site ids (got {})",
                    r.site_ids.len()
                ),
            );
        }
        let site_ids: Vec<Option<Uuid>> = r
            .site_ids
            .iter()
            .enumerate()
            .map(|(index, id)| v.check(parse_id(&format!("site_ids[{index}]"), id)))
            .collect();
        v.build(|| {
            Some(Self {
                after: after?,
                site_ids: site_ids.into_iter().collect::<Option<_>>()?,
            })
        })
    }
}

impl TryFrom<pb::CheckRequest> for CheckQuery {
    type Error = ApiError;

    fn try_from(r: pb::CheckRequest) -> Result<Self, ApiError> {
        let mut v = Violations::new();
        let query = check_query(&mut v, "", &r);
        v.build(|| query)
    }
}

impl TryFrom<pb::BatchCheckRequest> for BatchCheckQuery {
    type Error = ApiError;

    fn try_from(r: pb::BatchCheckRequest) -> Result<Self, ApiError> {
        batch_check_query(r.checks)
    }
}

impl TryFrom<pb::ConsistentBatchCheckRequest> for BatchCheckQuery {
    type Error = ApiError;

    /// The checks of a ConsistentBatchCheck, each reading the database (the caller awaits
    /// `contacts_revision` first).
    fn try_from(r: pb::ConsistentBatchCheckRequest) -> Result<Self, ApiError> {
        let mut batch = batch_check_query(r.checks)?;
        for check in &mut batch.checks {
            check.skip_cache = true;
        }
        Ok(batch)
    }
}

/// The checks of a BatchCheck: 1 to [`MAX_BATCH_CHECKS`], each valid.
fn batch_check_query(checks: Vec<pb::CheckRequest>) -> Result<BatchCheckQuery, ApiError> {
    let mut v = Violations::new();
    if checks.is_empty() {
        v.add("checks", "give 1 to 100 checks");
    } else if checks.len() > MAX_BATCH_CHECKS {
        v.add(
            "checks",
            format!(
                "at most {MAX_BATCH_CHECKS} checks per call (got {})",
                checks.len()
            ),
        );
    }
    let checks: Vec<Option<CheckQuery>> = checks
        .iter()
        .take(MAX_BATCH_CHECKS)
        .enumerate()
        .map(|(index, check)| check_query(&mut v, &format!("checks[{index}]."), check))
        .collect();
    v.build(|| {
        Some(BatchCheckQuery {
            checks: checks.into_iter().collect::<Option<_>>()?,
        })
    })
}

impl TryFrom<pb::ListApproversRequest> for ApproversQuery {
    type Error = ApiError;

    fn try_from(r: pb::ListApproversRequest) -> Result<Self, ApiError> {
        let mut v = Violations::new();
        let site_id = v.check(parse_id("site_id", &r.site_id));
        let kind = v.check(kind_from_proto("kind", r.kind));
        let size = v.check(page_size(r.page_size, APPROVERS_PAGE.0, APPROVERS_PAGE.1));
        let after = v.check(approver_key(&r.page_token));
        v.build(|| {
            Some(Self {
                site_id: site_id?,
                kind: kind?,
                after: after?,
                size: size?,
            })
        })
    }
}

impl TryFrom<pb::SubmitAccessRequestRequest> for Submission {
    type Error = ApiError;

    fn try_from(r: pb::SubmitAccessRequestRequest) -> Result<Self, ApiError> {
        let mut v = Violations::new();
        let site_number = v.check(SiteNumber::parse("site_number", &r.site_number));
        let customer_number = v.check(CustomerNumber::parse("customer_number", &r.customer_number));
        let kind = v.check(kind_from_proto("kind", r.kind));
        let support = v.check(support_level(
            "requested_support_level",
            r.requested_support_level,
        ));
        let tools = match &r.requested_tools {
            None => Some([None; 7]),
            Some(tools) => tool_levels(&mut v, "requested_tools", tools),
        };
        let ask = v.nested(|v| AccessAsk::parse(v, kind?, &tools?, support?));
        let justification = v.check(justification("justification", &r.justification));
        v.build(|| {
            Some(Self {
                site_number: site_number?,
                customer_number: customer_number?,
                ask: ask?,
                justification: justification?,
            })
        })
    }
}

impl TryFrom<pb::GetAccessRequestRequest> for RequestRef {
    type Error = ApiError;

    fn try_from(r: pb::GetAccessRequestRequest) -> Result<Self, ApiError> {
        let mut v = Violations::new();
        let request_id = v.check(parse_id("request_id", &r.request_id));
        v.build(|| {
            Some(Self {
                request_id: request_id?,
            })
        })
    }
}

impl TryFrom<pb::ListAccessRequestsRequest> for SiteRequestsQuery {
    type Error = ApiError;

    fn try_from(r: pb::ListAccessRequestsRequest) -> Result<Self, ApiError> {
        let mut v = Violations::new();
        let site_id = v.check(parse_id("site_id", &r.site_id));
        let state = v.check(state_filter("state", r.state));
        let size = v.check(page_size(r.page_size, LIST_PAGE.0, LIST_PAGE.1));
        let before = v.check(single_key(&r.page_token, uuid_key));
        v.build(|| {
            Some(Self {
                site_id: site_id?,
                state: state?,
                before: before?,
                size: size?,
            })
        })
    }
}

impl TryFrom<pb::ListMyAccessRequestsRequest> for MyRequestsQuery {
    type Error = ApiError;

    fn try_from(r: pb::ListMyAccessRequestsRequest) -> Result<Self, ApiError> {
        let mut v = Violations::new();
        let size = v.check(page_size(r.page_size, LIST_PAGE.0, LIST_PAGE.1));
        let before = v.check(single_key(&r.page_token, uuid_key));
        v.build(|| {
            Some(Self {
                before: before?,
                size: size?,
            })
        })
    }
}

impl TryFrom<pb::ApproveAccessRequestRequest> for Approval {
    type Error = ApiError;

    fn try_from(r: pb::ApproveAccessRequestRequest) -> Result<Self, ApiError> {
        let mut v = Violations::new();
        let request_id = v.check(parse_id("request_id", &r.request_id));
        let tools = match &r.granted_tools {
            None => Some(None),
            Some(tools) => tool_levels(&mut v, "granted_tools", tools).map(Some),
        };
        let support = v.check(support_level(
            "granted_support_level",
            r.granted_support_level,
        ));
        let note = v.check(optional_note("note", &r.note));
        let end = approval_end(&mut v, r.valid_until.as_ref(), r.valid_for.as_ref());
        let start = grant_start(&mut v, r.valid_from.as_ref(), r.valid_until.as_ref());
        build_with_etag(v, &r.etag, |etag| {
            Some(Self {
                request_id: request_id?,
                choice: GrantChoice {
                    tools: tools?,
                    support: support?,
                },
                end: end?,
                start: start?,
                note: note?,
                etag,
            })
        })
    }
}

impl TryFrom<pb::RejectAccessRequestRequest> for Rejection {
    type Error = ApiError;

    fn try_from(r: pb::RejectAccessRequestRequest) -> Result<Self, ApiError> {
        let mut v = Violations::new();
        let request_id = v.check(parse_id("request_id", &r.request_id));
        let reason = v.check(required_reason(
            "reason",
            &r.reason,
            "A4: a refusal needs a reason",
        ));
        build_with_etag(v, &r.etag, |etag| {
            Some(Self {
                request_id: request_id?,
                reason: reason?,
                etag,
            })
        })
    }
}

impl TryFrom<pb::CancelAccessRequestRequest> for Cancellation {
    type Error = ApiError;

    fn try_from(r: pb::CancelAccessRequestRequest) -> Result<Self, ApiError> {
        let mut v = Violations::new();
        let request_id = v.check(parse_id("request_id", &r.request_id));
        build_with_etag(v, &r.etag, |etag| {
            Some(Self {
                request_id: request_id?,
                etag,
            })
        })
    }
}

impl TryFrom<pb::SetDomainPolicyRequest> for PolicyChange {
    type Error = ApiError;

    fn try_from(r: pb::SetDomainPolicyRequest) -> Result<Self, ApiError> {
        let mut v = Violations::new();
        let site_id = v.check(parse_id("site_id", &r.site_id));
        let domain = v.check(EmailDomain::parse("domain", &r.domain));
        let mode = v.check(PolicyMode::from_number(r.policy).ok_or_else(|| {
            Violation::new(
                "policy",
                "must be a DOMAIN_POLICY_MODE_* value other than UNSPECIFIED",
            )
        }));
        let tools = match &r.baseline_tools {
            None => Some(ToolAccess::NONE),
            Some(tools) => tool_levels(&mut v, "baseline_tools", tools)
                .map(|levels| with_levels(ToolAccess::NONE, &levels)),
        };
        let support = v.check(support_level(
            "baseline_support_level",
            r.baseline_support_level,
        ));
        build_with_etag(v, &r.etag, |etag| {
            Some(Self {
                site_id: site_id?,
                domain: domain?,
                mode: mode?,
                baseline: Grants {
                    tools: tools?,
                    support: support?.unwrap_or(SupportLevel::NoAccess),
                },
                etag,
            })
        })
    }
}

site_page_query!(pb::ListDomainPoliciesRequest => PoliciesQuery, text_key);

/// The published form of tool levels.
pub(crate) fn tools_to_proto(tools: &ToolAccess) -> pb::ToolAccess {
    pb::ToolAccess {
        software: tools.software.number(),
        reporting: tools.reporting.number(),
        entitlements: tools.entitlements.number(),
        account_management: tools.account_management.number(),
        manage_access: tools.manage_access.number(),
        contact_updates: tools.contact_updates.number(),
        account_documents: tools.account_documents.number(),
    }
}

/// Tool levels asked for: UNSPECIFIED where nothing (NONE) is asked.
fn asked_tools_to_proto(tools: &ToolAccess) -> pb::ToolAccess {
    let asked = |level: ToolLevel| {
        if level.rank() == 0 { 0 } else { level.number() }
    };
    pb::ToolAccess {
        software: asked(tools.get(Tool::Software)),
        reporting: asked(tools.get(Tool::Reporting)),
        entitlements: asked(tools.get(Tool::Entitlements)),
        account_management: asked(tools.get(Tool::AccountManagement)),
        manage_access: asked(tools.get(Tool::ManageAccess)),
        contact_updates: asked(tools.get(Tool::ContactUpdates)),
        account_documents: asked(tools.get(Tool::AccountDocuments)),
    }
}

impl From<&Profile> for pb::AccessProfile {
    fn from(profile: &Profile) -> Self {
        let effective = &profile.effective;
        Self {
            site_id: profile.site_id.to_string(),
            user_id: profile.user_id.to_string(),
            effective: Some(tools_to_proto(&effective.rights().tools)),
            explicit: Some(tools_to_proto(&effective.explicit().tools)),
            support_level: effective.rights().support.number(),
            explicit_support_level: effective.explicit().support.number(),
            implied_by: effective
                .implied_by()
                .iter()
                .map(|role| role.number())
                .collect(),
            site_number: profile.site_number.clone(),
            user_disabled: effective.is_disabled(),
            update_time: profile.update_time.map(timestamp),
            updated_by: profile
                .updated_by
                .map(|id| id.to_string())
                .unwrap_or_default(),
            etag: profile.etag(),
            valid_until: profile.valid_until.map(timestamp),
            valid_from: profile.valid_from.map(timestamp),
            pending_explicit: profile
                .pending
                .map(|pending| tools_to_proto(&pending.tools)),
            pending_explicit_support_level: profile
                .pending
                .map_or(0, |pending| pending.support.number()),
        }
    }
}

impl From<&AccessRequest> for pb::AccessRequest {
    fn from(request: &AccessRequest) -> Self {
        let site_access = request.kind == AccessRequestKind::SiteAccess;
        let approved = request
            .granted
            .filter(|_| request.state == RequestState::Approved);
        Self {
            request_id: request.request_id.to_string(),
            site_id: request.site_id.to_string(),
            site_number: request.site_number.clone(),
            requester_user_id: request.requester_id.to_string(),
            kind: request.kind.number(),
            requested_tools: site_access.then(|| asked_tools_to_proto(&request.requested.tools)),
            requested_support_level: if site_access {
                0
            } else {
                request.requested.support.number()
            },
            justification: request.justification.clone(),
            state: request.state.number(),
            granted_tools: approved
                .filter(|_| site_access)
                .map(|granted| tools_to_proto(&granted.tools)),
            granted_support_level: approved
                .filter(|_| !site_access)
                .map_or(0, |granted| granted.support.number()),
            decided_by: request
                .decided_by
                .map(|id| id.to_string())
                .unwrap_or_default(),
            decision_reason: request.decision_reason.clone().unwrap_or_default(),
            matched_domain: request.matched_domain.clone().unwrap_or_default(),
            auto_approved: request.auto_approved,
            create_time: Some(timestamp(request.create_time)),
            decide_time: request.decide_time.map(timestamp),
            expire_time: Some(timestamp(request.expire_time)),
            etag: request.etag(),
        }
    }
}

impl From<&DomainPolicy> for pb::DomainPolicy {
    fn from(policy: &DomainPolicy) -> Self {
        Self {
            site_id: policy.site_id.to_string(),
            domain: policy.domain.clone(),
            policy: policy.mode.number(),
            baseline_tools: Some(tools_to_proto(&policy.baseline.tools)),
            baseline_support_level: policy.baseline.support.number(),
            update_time: Some(timestamp(policy.update_time)),
            updated_by: policy.updated_by.to_string(),
            etag: policy.etag(),
        }
    }
}

/// The answer to one check, with the id of the rule that decided.
pub(crate) fn check_response(decision: Decision) -> pb::CheckResponse {
    pb::CheckResponse {
        allowed: decision.allowed,
        rule: decision.rule.to_owned(),
        reason: decision.reason,
    }
}

/// A page of the sites where a user holds a permission, keyed by site id.
pub(crate) fn lookup_sites_response(page: &Page<Holding>) -> pb::LookupSitesResponse {
    pb::LookupSitesResponse {
        sites: page
            .items
            .iter()
            .map(|holding| pb::LookedUpSite {
                site_id: holding.site_id.to_string(),
                site_number: holding.site_number.clone(),
                reason: holding.reason.clone(),
                rule: holding.rule.clone(),
            })
            .collect(),
        next_page_token: next_page_token(page, |h| vec![h.site_id.to_string()]),
    }
}

/// A page of the users who hold a permission on a site, keyed by user id.
pub(crate) fn lookup_users_response(page: &Page<Holding>) -> pb::LookupUsersResponse {
    pb::LookupUsersResponse {
        users: page
            .items
            .iter()
            .map(|holding| pb::LookedUpUser {
                user_id: holding.user_id.to_string(),
                reason: holding.reason.clone(),
                rule: holding.rule.clone(),
            })
            .collect(),
        next_page_token: next_page_token(page, |h| vec![h.user_id.to_string()]),
    }
}

/// The published form of an approver.
fn approver_to_proto(approver: &Approver) -> pb::Approver {
    pb::Approver {
        user_id: approver.user_id.to_string(),
        reason: approver.reason.clone(),
    }
}

/// The items of `page` in their published form, and the token of the next page, which
/// carries `key` of the last item.
fn page_parts<'a, T: 'a, P: From<&'a T>>(
    page: &'a Page<T>,
    key: impl Fn(&T) -> Vec<String>,
) -> (Vec<P>, String) {
    (
        page.items.iter().map(P::from).collect(),
        next_page_token(page, key),
    )
}

/// A page of a site's profiles, keyed by user id.
pub(crate) fn site_access_response(page: &Page<Profile>) -> pb::ListSiteAccessResponse {
    let (profiles, next_page_token) = page_parts(page, |p| vec![p.user_id.to_string()]);
    pb::ListSiteAccessResponse {
        profiles,
        next_page_token,
    }
}

/// A page of a site's support users, keyed by user id.
pub(crate) fn support_users_response(page: &Page<Profile>) -> pb::ListSupportUsersResponse {
    let (profiles, next_page_token) = page_parts(page, |p| vec![p.user_id.to_string()]);
    pb::ListSupportUsersResponse {
        profiles,
        next_page_token,
    }
}

/// A page of a user's profiles, keyed by site id.
pub(crate) fn user_access_response(page: &Page<Profile>) -> pb::ListUserAccessResponse {
    let (profiles, next_page_token) = page_parts(page, |p| vec![p.site_id.to_string()]);
    pb::ListUserAccessResponse {
        profiles,
        next_page_token,
    }
}

/// A page of approvers, keyed by role rank and user id.
pub(crate) fn approvers_response(
    page: &Page<(ApproverKey, Approver)>,
) -> pb::ListApproversResponse {
    pb::ListApproversResponse {
        next_page_token: next_page_token(page, |((rank, user_id), _)| {
            vec![rank.to_string(), user_id.to_string()]
        }),
        approvers: page
            .items
            .iter()
            .map(|(_, approver)| approver_to_proto(approver))
            .collect(),
    }
}

/// A page of a site's requests, keyed by request id.
pub(crate) fn requests_response(page: &Page<AccessRequest>) -> pb::ListAccessRequestsResponse {
    let (requests, next_page_token) = page_parts(page, |r| vec![r.request_id.to_string()]);
    pb::ListAccessRequestsResponse {
        requests,
        next_page_token,
    }
}

/// A page of the caller's own requests, keyed by request id.
pub(crate) fn my_requests_response(page: &Page<AccessRequest>) -> pb::ListMyAccessRequestsResponse {
    let (requests, next_page_token) = page_parts(page, |r| vec![r.request_id.to_string()]);
    pb::ListMyAccessRequestsResponse {
        requests,
        next_page_token,
    }
}

/// A page of a site's domain policies, keyed by domain.
pub(crate) fn policies_response(page: &Page<DomainPolicy>) -> pb::ListDomainPoliciesResponse {
    let (domain_policies, next_page_token) = page_parts(page, |p| vec![p.domain.clone()]);
    pb::ListDomainPoliciesResponse {
        domain_policies,
        next_page_token,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fields of the violations of a refused parse.
    fn fields<T: std::fmt::Debug>(result: Result<T, ApiError>) -> Vec<(String, String)> {
        match result {
            Err(ApiError::InvalidArgument(violations)) => violations
                .into_iter()
                .map(|v| (v.field, v.description))
                .collect(),
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    fn tools_request(
        valid_until: Option<prost_types::Timestamp>,
        without_end: bool,
    ) -> pb::SetToolAccessRequest {
        pb::SetToolAccessRequest {
            site_id: Uuid::now_v7().to_string(),
            user_id: Uuid::now_v7().to_string(),
            tools: Some(pb::ToolAccess {
                software: 4,
                ..Default::default()
            }),
            reason: "contractor".into(),
            etag: String::new(),
            valid_until,
            without_end,
            valid_from: None,
        }
    }

    fn seconds_from_now(seconds: i64) -> prost_types::Timestamp {
        timestamp(chrono::Utc::now() + chrono::Duration::seconds(seconds))
    }

    #[test]
    fn a_change_of_rights_may_set_or_lift_an_end_in_the_future() {
        // rule T9
        let later = seconds_from_now(60);
        let change = ToolsChange::try_from(tools_request(Some(later), false)).unwrap();
        assert!(matches!(change.end, EndChange::Until(_)));
        let change = ToolsChange::try_from(tools_request(None, true)).unwrap();
        assert_eq!(change.end, EndChange::Remove);
        let change = ToolsChange::try_from(tools_request(None, false)).unwrap();
        assert_eq!(change.end, EndChange::Keep);
        let refused = fields(ToolsChange::try_from(tools_request(
            Some(seconds_from_now(-1)),
            false,
        )));
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0].0, "valid_until");
        assert!(refused[0].1.starts_with("rule T9:"), "{refused:?}");
        let refused = fields(ToolsChange::try_from(tools_request(Some(later), true)));
        assert_eq!(refused[0].0, "without_end");
        let support = pb::SetSupportAccessRequest {
            site_id: Uuid::now_v7().to_string(),
            user_id: Uuid::now_v7().to_string(),
            support_level: SupportLevel::Full.number(),
            reason: "contractor".into(),
            etag: String::new(),
            valid_until: Some(prost_types::Timestamp {
                seconds: 1,
                nanos: 0,
            }),
            without_end: false,
            valid_from: None,
        };
        assert_eq!(fields(SupportChange::try_from(support))[0].0, "valid_until");
        // A start comes before the end.
        let mut request = tools_request(Some(seconds_from_now(60)), false);
        request.valid_from = Some(seconds_from_now(30));
        let change = ToolsChange::try_from(request.clone()).unwrap();
        assert!(change.start.is_some());
        request.valid_from = Some(seconds_from_now(90));
        let refused = fields(ToolsChange::try_from(request.clone()));
        assert_eq!(refused[0].0, "valid_until");
        assert!(refused[0].1.contains("valid_from"), "{refused:?}");
        request.valid_from = Some(seconds_from_now(-30));
        assert_eq!(fields(ToolsChange::try_from(request))[0].0, "valid_from");
    }

    #[test]
    fn an_approval_ends_at_a_time_or_after_a_length_not_both() {
        // rule T9
        let approval = |valid_until, valid_for| pb::ApproveAccessRequestRequest {
            request_id: Uuid::now_v7().to_string(),
            valid_until,
            valid_for,
            ..Default::default()
        };
        let days = prost_types::Duration {
            seconds: 90 * 86_400,
            nanos: 0,
        };
        let parsed = Approval::try_from(approval(None, Some(days))).unwrap();
        assert_eq!(parsed.end, ApprovalEnd::For(chrono::Duration::days(90)));
        let parsed = Approval::try_from(approval(None, None)).unwrap();
        assert_eq!(parsed.end, ApprovalEnd::None);
        let refused = fields(Approval::try_from(approval(
            Some(seconds_from_now(60)),
            Some(days),
        )));
        assert_eq!(refused[0].0, "valid_for");
        let refused = fields(Approval::try_from(approval(
            None,
            Some(prost_types::Duration::default()),
        )));
        assert_eq!(refused[0].0, "valid_for");
        assert!(refused[0].1.starts_with("rule T9:"), "{refused:?}");
    }
}
