//! The gRPC face of access management: turns requests into domain values, reads the caller,
//! calls the domain, and turns results back. No SQL, no rules.
//!
//! Rule T8 across services: the writes the contact registry decides on (SetToolAccess,
//! SetSupportAccess, RevokeAccess, ApproveAccessRequest, SubmitAccessRequest) return their
//! `revision`, the cursor of their last event, for the registry's `AwaitAccessRevision`; and
//! `AwaitContactsRevision` is the other direction: a service that changed roles in the
//! registry awaits the registry's revision here before it asks access for a change of
//! rights, so that access decides on those roles.

use std::time::Duration;

use kc_proto::access::{self as pb, access_management_service_server::AccessManagementService};
use kc_runtime::audit;
use kc_runtime::auth::caller;
use kc_runtime::grpc::{
    await_revision, bad_page_token, checked, decode_single_key, finish, id, next_page_token,
    page_size_or_status, status, watch_events,
};
use kc_runtime::outbox::{self, EventStream, OutboxWatcher};
use kc_runtime::paging::{decode_token, page_size};
use kc_runtime::values::timestamp;
use kc_runtime::{Shutdown, Violation, Violations};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::domain::service::{ApproverKey, GrantChoice};
use crate::domain::values::{
    CustomerNumber, EmailDomain, Etag, SiteNumber, justification, optional_note, parse_id,
    required_reason,
};
use crate::domain::{
    Access, AccessRequest, AccessRequestKind, Actor, DomainPolicy, Grants, Permission, PolicyMode,
    Profile, RequestState, SupportLevel, Tool, ToolAccess, ToolLevel,
};
use crate::projection;

/// Default and largest page sizes of most lists.
const LIST_PAGE: (u32, u32) = (100, 1000);
/// Default and largest page sizes of ListApprovers.
const APPROVERS_PAGE: (u32, u32) = (1000, 1000);
/// Most checks in one BatchCheck.
pub const MAX_BATCH_CHECKS: usize = 100;
/// Longest wait of AwaitContactsRevision, whatever the call's deadline (T8).
pub const MAX_REVISION_WAIT: Duration = Duration::from_secs(10);

/// The `AccessManagementService` implementation.
#[derive(Clone, Debug)]
pub struct AccessApi {
    access: Access,
    watcher: OutboxWatcher,
    shutdown: Shutdown,
}

impl AccessApi {
    /// The API over `access`, streaming events from `watcher` until `shutdown`.
    pub fn new(access: Access, watcher: OutboxWatcher, shutdown: Shutdown) -> Self {
        Self {
            access,
            watcher,
            shutdown,
        }
    }
}

/// The actor of a request: services and operators only.
fn request_actor<T>(request: &Request<T>) -> Result<Actor, Status> {
    Actor::of(&caller(request)?).map_err(status)
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
/// with `prefix` (e.g. `tools`).
fn tool_levels(
    v: &mut Violations,
    prefix: &str,
    tools: &pb::ToolAccess,
) -> Option<[Option<ToolLevel>; 7]> {
    let mut levels = [None; 7];
    let mut valid = true;
    for (slot, tool) in levels.iter_mut().zip(Tool::ALL) {
        let number = tool_number(tools, tool);
        if number == 0 {
            continue;
        }
        match ToolLevel::from_number(tool, number) {
            Some(level) => *slot = Some(level),
            None => {
                v.add(
                    format!("{prefix}.{}", tool.field()),
                    format!("must be a {}_* value", tool_enum(tool)),
                );
                valid = false;
            }
        }
    }
    valid.then_some(levels)
}

/// Levels as a `ToolAccess` with UNSPECIFIED levels as NONE.
fn tools_or_none(levels: &[Option<ToolLevel>; 7]) -> ToolAccess {
    levels
        .iter()
        .flatten()
        .fold(ToolAccess::NONE, |tools, level| tools.with(*level))
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

/// The published form of tool levels.
pub fn tools_to_proto(tools: &ToolAccess) -> pb::ToolAccess {
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

/// The published form of a profile.
pub fn profile_to_proto(profile: &Profile) -> pb::AccessProfile {
    let effective = &profile.effective;
    pb::AccessProfile {
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
    }
}

/// The published form of an access request.
pub fn request_to_proto(request: &AccessRequest) -> pb::AccessRequest {
    let site_access = request.kind == AccessRequestKind::SiteAccess;
    let approved = request
        .granted
        .filter(|_| request.state == RequestState::Approved);
    pb::AccessRequest {
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

/// The published form of a domain policy.
pub fn policy_to_proto(policy: &DomainPolicy) -> pb::DomainPolicy {
    pb::DomainPolicy {
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

fn uuid_key(key: &str) -> Option<Uuid> {
    Uuid::parse_str(key).ok()
}

/// Parses the three fields of one check; field paths start with `prefix`.
fn check_args(
    v: &mut Violations,
    prefix: &str,
    check: &pb::CheckRequest,
) -> Option<(Uuid, Uuid, Permission)> {
    let user_id = v.check(parse_id(&format!("{prefix}user_id"), &check.user_id));
    let site_id = v.check(parse_id(&format!("{prefix}site_id"), &check.site_id));
    let permission = v.check(permission_from_proto(
        &format!("{prefix}permission"),
        check.permission,
    ));
    Some((site_id?, user_id?, permission?))
}

#[tonic::async_trait]
impl AccessManagementService for AccessApi {
    async fn get_access_profile(
        &self,
        request: Request<pb::GetAccessProfileRequest>,
    ) -> Result<Response<pb::GetAccessProfileResponse>, Status> {
        request_actor(&request)?;
        let r = request.into_inner();
        let mut v = Violations::new();
        let site_id = v.check(parse_id("site_id", &r.site_id));
        let user_id = v.check(parse_id("user_id", &r.user_id));
        finish(v)?;
        let profile = self
            .access
            .profile(checked(site_id)?, checked(user_id)?)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::GetAccessProfileResponse {
            profile: Some(profile_to_proto(&profile)),
        }))
    }

    async fn set_tool_access(
        &self,
        request: Request<pb::SetToolAccessRequest>,
    ) -> Result<Response<pb::SetToolAccessResponse>, Status> {
        let actor = request_actor(&request)?;
        let r = request.into_inner();
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
        let reason = v.check(required_reason(
            "reason",
            &r.reason,
            "T5: every change of rights records why",
        ));
        finish(v)?;
        let etag = Etag::parse("etag", &r.etag).map_err(status)?;
        let changed = self
            .access
            .set_tools(
                actor,
                checked(site_id)?,
                checked(user_id)?,
                checked(levels)?,
                checked(reason)?,
                etag,
            )
            .await
            .map_err(status)?;
        Ok(Response::new(pb::SetToolAccessResponse {
            profile: Some(profile_to_proto(&changed.value)),
            revision: changed.revision_text(),
        }))
    }

    async fn set_support_access(
        &self,
        request: Request<pb::SetSupportAccessRequest>,
    ) -> Result<Response<pb::SetSupportAccessResponse>, Status> {
        let actor = request_actor(&request)?;
        let r = request.into_inner();
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
        let reason = v.check(required_reason(
            "reason",
            &r.reason,
            "T5: every change of rights records why",
        ));
        finish(v)?;
        let etag = Etag::parse("etag", &r.etag).map_err(status)?;
        let changed = self
            .access
            .set_support(
                actor,
                checked(site_id)?,
                checked(user_id)?,
                checked(level)?,
                checked(reason)?,
                etag,
            )
            .await
            .map_err(status)?;
        Ok(Response::new(pb::SetSupportAccessResponse {
            profile: Some(profile_to_proto(&changed.value)),
            revision: changed.revision_text(),
        }))
    }

    async fn revoke_access(
        &self,
        request: Request<pb::RevokeAccessRequest>,
    ) -> Result<Response<pb::RevokeAccessResponse>, Status> {
        let actor = request_actor(&request)?;
        let r = request.into_inner();
        let mut v = Violations::new();
        let site_id = v.check(parse_id("site_id", &r.site_id));
        let user_id = v.check(parse_id("user_id", &r.user_id));
        let reason = v.check(required_reason(
            "reason",
            &r.reason,
            "T5: every change of rights records why",
        ));
        finish(v)?;
        let etag = Etag::parse("etag", &r.etag).map_err(status)?;
        let changed = self
            .access
            .revoke(
                actor,
                checked(site_id)?,
                checked(user_id)?,
                checked(reason)?,
                etag,
            )
            .await
            .map_err(status)?;
        Ok(Response::new(pb::RevokeAccessResponse {
            profile: Some(profile_to_proto(&changed.value)),
            revision: changed.revision_text(),
        }))
    }

    async fn list_site_access(
        &self,
        request: Request<pb::ListSiteAccessRequest>,
    ) -> Result<Response<pb::ListSiteAccessResponse>, Status> {
        request_actor(&request)?;
        let r = request.into_inner();
        let site_id = id("site_id", &r.site_id)?;
        let size = page_size_or_status(r.page_size, LIST_PAGE)?;
        let after = decode_single_key(&r.page_token, uuid_key)?;
        let page = self
            .access
            .list_site_access(site_id, after, size)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ListSiteAccessResponse {
            next_page_token: next_page_token(&page, |p| vec![p.user_id.to_string()]),
            profiles: page.items.iter().map(profile_to_proto).collect(),
        }))
    }

    async fn list_user_access(
        &self,
        request: Request<pb::ListUserAccessRequest>,
    ) -> Result<Response<pb::ListUserAccessResponse>, Status> {
        request_actor(&request)?;
        let r = request.into_inner();
        let user_id = id("user_id", &r.user_id)?;
        let size = page_size_or_status(r.page_size, LIST_PAGE)?;
        let after = decode_single_key(&r.page_token, uuid_key)?;
        let page = self
            .access
            .list_user_access(user_id, after, size)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ListUserAccessResponse {
            next_page_token: next_page_token(&page, |p| vec![p.site_id.to_string()]),
            profiles: page.items.iter().map(profile_to_proto).collect(),
        }))
    }

    async fn check(
        &self,
        request: Request<pb::CheckRequest>,
    ) -> Result<Response<pb::CheckResponse>, Status> {
        request_actor(&request)?;
        let mut v = Violations::new();
        let args = check_args(&mut v, "", request.get_ref());
        finish(v)?;
        let (site_id, user_id, permission) = checked(args)?;
        let decision = self
            .access
            .check(site_id, user_id, permission)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::CheckResponse {
            allowed: decision.allowed,
            reason: decision.reason,
        }))
    }

    async fn batch_check(
        &self,
        request: Request<pb::BatchCheckRequest>,
    ) -> Result<Response<pb::BatchCheckResponse>, Status> {
        request_actor(&request)?;
        let r = request.into_inner();
        let mut v = Violations::new();
        if r.checks.is_empty() {
            v.add("checks", "give 1 to 100 checks");
        } else if r.checks.len() > MAX_BATCH_CHECKS {
            v.add(
                "checks",
                format!(
                    "at most {MAX_BATCH_CHECKS} checks per call (got {})",
                    r.checks.len()
                ),
            );
        }
        let args: Vec<_> = r
            .checks
            .iter()
            .take(MAX_BATCH_CHECKS)
            .enumerate()
            .map(|(index, check)| check_args(&mut v, &format!("checks[{index}]."), check))
            .collect();
        finish(v)?;
        let mut results = Vec::with_capacity(args.len());
        for arg in args {
            let (site_id, user_id, permission) = checked(arg)?;
            let decision = self
                .access
                .check(site_id, user_id, permission)
                .await
                .map_err(status)?;
            results.push(pb::CheckResponse {
                allowed: decision.allowed,
                reason: decision.reason,
            });
        }
        Ok(Response::new(pb::BatchCheckResponse { results }))
    }

    async fn list_approvers(
        &self,
        request: Request<pb::ListApproversRequest>,
    ) -> Result<Response<pb::ListApproversResponse>, Status> {
        request_actor(&request)?;
        let r = request.into_inner();
        let mut v = Violations::new();
        let site_id = v.check(parse_id("site_id", &r.site_id));
        let kind = v.check(kind_from_proto("kind", r.kind));
        let size = v.check(page_size(r.page_size, APPROVERS_PAGE.0, APPROVERS_PAGE.1));
        let after = v.check(decode_token(&r.page_token, 2));
        finish(v)?;
        let after: Option<ApproverKey> = match checked(after)? {
            None => None,
            Some(key) => Some((
                key[0].parse().map_err(|_| bad_page_token())?,
                Uuid::parse_str(&key[1]).map_err(|_| bad_page_token())?,
            )),
        };
        let page = self
            .access
            .list_approvers(checked(site_id)?, checked(kind)?, after, checked(size)?)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ListApproversResponse {
            next_page_token: next_page_token(&page, |((rank, user_id), _)| {
                vec![rank.to_string(), user_id.to_string()]
            }),
            approvers: page
                .items
                .iter()
                .map(|(_, approver)| pb::Approver {
                    user_id: approver.user_id.to_string(),
                    reason: approver.reason.clone(),
                })
                .collect(),
        }))
    }

    async fn submit_access_request(
        &self,
        request: Request<pb::SubmitAccessRequestRequest>,
    ) -> Result<Response<pb::SubmitAccessRequestResponse>, Status> {
        let actor = request_actor(&request)?;
        let r = request.into_inner();
        let mut v = Violations::new();
        let site_number = v.check(SiteNumber::parse("site_number", &r.site_number));
        let customer_number = v.check(CustomerNumber::parse("customer_number", &r.customer_number));
        let kind = v.check(kind_from_proto("kind", r.kind));
        let asked_support = v.check(support_level(
            "requested_support_level",
            r.requested_support_level,
        ));
        let asked_tools = match &r.requested_tools {
            None => Some([None; 7]),
            Some(tools) => tool_levels(&mut v, "requested_tools", tools),
        };
        let asked = match (kind, asked_tools, asked_support) {
            (Some(AccessRequestKind::SiteAccess), Some(levels), Some(support)) => {
                let tools = tools_or_none(&levels);
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
                Some(Grants {
                    tools,
                    support: SupportLevel::NoAccess,
                })
            }
            (Some(AccessRequestKind::SupportAccess), Some(levels), Some(support)) => {
                if levels.iter().any(Option::is_some) {
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
                Some(Grants {
                    tools: ToolAccess::NONE,
                    support: support.unwrap_or(SupportLevel::NoAccess),
                })
            }
            _ => None,
        };
        let justification = v.check(justification("justification", &r.justification));
        finish(v)?;
        let created = self
            .access
            .submit(
                actor,
                &checked(site_number)?,
                &checked(customer_number)?,
                checked(kind)?,
                checked(asked)?,
                checked(justification)?,
            )
            .await
            .map_err(status)?;
        Ok(Response::new(pb::SubmitAccessRequestResponse {
            request: Some(request_to_proto(&created.value)),
            revision: created.revision_text(),
        }))
    }

    async fn get_access_request(
        &self,
        request: Request<pb::GetAccessRequestRequest>,
    ) -> Result<Response<pb::GetAccessRequestResponse>, Status> {
        request_actor(&request)?;
        let request_id = id("request_id", &request.get_ref().request_id)?;
        let found = self.access.get_request(request_id).await.map_err(status)?;
        Ok(Response::new(pb::GetAccessRequestResponse {
            request: Some(request_to_proto(&found)),
        }))
    }

    async fn list_access_requests(
        &self,
        request: Request<pb::ListAccessRequestsRequest>,
    ) -> Result<Response<pb::ListAccessRequestsResponse>, Status> {
        request_actor(&request)?;
        let r = request.into_inner();
        let mut v = Violations::new();
        let site_id = v.check(parse_id("site_id", &r.site_id));
        let state =
            if r.state == 0 {
                Some(None)
            } else {
                v.check(RequestState::from_number(r.state).map(Some).ok_or_else(|| {
                    Violation::new("state", "must be an ACCESS_REQUEST_STATE_* value")
                }))
            };
        let size = v.check(page_size(r.page_size, LIST_PAGE.0, LIST_PAGE.1));
        finish(v)?;
        let before = decode_single_key(&r.page_token, uuid_key)?;
        let page = self
            .access
            .list_requests(checked(site_id)?, checked(state)?, before, checked(size)?)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ListAccessRequestsResponse {
            next_page_token: next_page_token(&page, |r| vec![r.request_id.to_string()]),
            requests: page.items.iter().map(request_to_proto).collect(),
        }))
    }

    async fn list_my_access_requests(
        &self,
        request: Request<pb::ListMyAccessRequestsRequest>,
    ) -> Result<Response<pb::ListMyAccessRequestsResponse>, Status> {
        let actor = request_actor(&request)?;
        let r = request.into_inner();
        let size = page_size_or_status(r.page_size, LIST_PAGE)?;
        let before = decode_single_key(&r.page_token, uuid_key)?;
        let page = self
            .access
            .list_my_requests(actor, before, size)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ListMyAccessRequestsResponse {
            next_page_token: next_page_token(&page, |r| vec![r.request_id.to_string()]),
            requests: page.items.iter().map(request_to_proto).collect(),
        }))
    }

    async fn approve_access_request(
        &self,
        request: Request<pb::ApproveAccessRequestRequest>,
    ) -> Result<Response<pb::ApproveAccessRequestResponse>, Status> {
        let actor = request_actor(&request)?;
        let r = request.into_inner();
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
        finish(v)?;
        let etag = Etag::parse("etag", &r.etag).map_err(status)?;
        let choice = GrantChoice {
            tools: checked(tools)?,
            support: checked(support)?,
        };
        let approved = self
            .access
            .approve(actor, checked(request_id)?, choice, checked(note)?, etag)
            .await
            .map_err(status)?;
        let (decided, profile) = &approved.value;
        Ok(Response::new(pb::ApproveAccessRequestResponse {
            request: Some(request_to_proto(decided)),
            profile: Some(profile_to_proto(profile)),
            revision: approved.revision_text(),
        }))
    }

    async fn reject_access_request(
        &self,
        request: Request<pb::RejectAccessRequestRequest>,
    ) -> Result<Response<pb::RejectAccessRequestResponse>, Status> {
        let actor = request_actor(&request)?;
        let r = request.into_inner();
        let mut v = Violations::new();
        let request_id = v.check(parse_id("request_id", &r.request_id));
        let reason = v.check(required_reason(
            "reason",
            &r.reason,
            "A4: a refusal needs a reason",
        ));
        finish(v)?;
        let etag = Etag::parse("etag", &r.etag).map_err(status)?;
        let decided = self
            .access
            .reject(actor, checked(request_id)?, checked(reason)?, etag)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::RejectAccessRequestResponse {
            request: Some(request_to_proto(&decided)),
        }))
    }

    async fn cancel_access_request(
        &self,
        request: Request<pb::CancelAccessRequestRequest>,
    ) -> Result<Response<pb::CancelAccessRequestResponse>, Status> {
        let actor = request_actor(&request)?;
        let r = request.into_inner();
        let mut v = Violations::new();
        let request_id = v.check(parse_id("request_id", &r.request_id));
        finish(v)?;
        let etag = Etag::parse("etag", &r.etag).map_err(status)?;
        let cancelled = self
            .access
            .cancel(actor, checked(request_id)?, etag)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::CancelAccessRequestResponse {
            request: Some(request_to_proto(&cancelled)),
        }))
    }

    async fn set_domain_policy(
        &self,
        request: Request<pb::SetDomainPolicyRequest>,
    ) -> Result<Response<pb::SetDomainPolicyResponse>, Status> {
        let actor = request_actor(&request)?;
        let r = request.into_inner();
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
            Some(tools) => {
                tool_levels(&mut v, "baseline_tools", tools).map(|levels| tools_or_none(&levels))
            }
        };
        let support = v.check(support_level(
            "baseline_support_level",
            r.baseline_support_level,
        ));
        finish(v)?;
        let etag = Etag::parse("etag", &r.etag).map_err(status)?;
        let baseline = Grants {
            tools: checked(tools)?,
            support: checked(support)?.unwrap_or(SupportLevel::NoAccess),
        };
        let policy = self
            .access
            .set_domain_policy(
                actor,
                checked(site_id)?,
                checked(domain)?,
                checked(mode)?,
                baseline,
                etag,
            )
            .await
            .map_err(status)?;
        Ok(Response::new(pb::SetDomainPolicyResponse {
            domain_policy: Some(policy_to_proto(&policy)),
        }))
    }

    async fn list_domain_policies(
        &self,
        request: Request<pb::ListDomainPoliciesRequest>,
    ) -> Result<Response<pb::ListDomainPoliciesResponse>, Status> {
        request_actor(&request)?;
        let r = request.into_inner();
        let site_id = id("site_id", &r.site_id)?;
        let size = page_size_or_status(r.page_size, LIST_PAGE)?;
        let after = decode_single_key(&r.page_token, |key| Some(key.to_owned()))?;
        let page = self
            .access
            .list_domain_policies(site_id, after.as_deref(), size)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ListDomainPoliciesResponse {
            next_page_token: next_page_token(&page, |p| vec![p.domain.clone()]),
            domain_policies: page.items.iter().map(policy_to_proto).collect(),
        }))
    }

    async fn list_audit_records(
        &self,
        request: Request<pb::ListAuditRecordsRequest>,
    ) -> Result<Response<pb::ListAuditRecordsResponse>, Status> {
        request_actor(&request)?;
        let r = request.into_inner();
        let list = |site_id, before, size| async move {
            let page = self.access.list_audit_records(site_id, before, size).await;
            page.map_err(status)
        };
        let (records, next_page_token) =
            audit::list_records(&r.site_id, r.page_size, &r.page_token, list).await?;
        Ok(Response::new(pb::ListAuditRecordsResponse {
            records,
            next_page_token,
        }))
    }

    type WatchEventsStream = EventStream<pb::WatchEventsResponse>;

    async fn watch_events(
        &self,
        request: Request<pb::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        request_actor(&request)?;
        let stream = watch_events(
            &self.watcher,
            &request.get_ref().after_cursor,
            outbox::decode_response::<pb::Event>,
            &self.shutdown,
        )?;
        Ok(Response::new(stream))
    }

    /// Rule T8 across services: waits until the projection of the registry's roles has
    /// applied `revision` (a registry write's), so that the caller's next change of rights
    /// here is decided on roles at least that fresh; `Unavailable` (retry) when it has not
    /// within the call's deadline, at most [`MAX_REVISION_WAIT`]. Services only: it is part
    /// of how the gateway orders its calls, not an API for people.
    async fn await_contacts_revision(
        &self,
        request: Request<pb::AwaitContactsRevisionRequest>,
    ) -> Result<Response<pb::AwaitContactsRevisionResponse>, Status> {
        if !caller(&request)?.is_service() {
            return Err(Status::permission_denied(
                "AwaitContactsRevision is for services",
            ));
        }
        let applied_revision = await_revision(
            self.access.pool(),
            projection::CONTACTS_CONSUMER,
            &request,
            &request.get_ref().revision,
            MAX_REVISION_WAIT,
            "access management's projection of the registry's roles",
        )
        .await?;
        Ok(Response::new(pb::AwaitContactsRevisionResponse {
            applied_revision,
        }))
    }
}
