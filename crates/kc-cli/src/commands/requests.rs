//! Access requests: `kc requests pending|mine|approve|reject|cancel` and
//! `kc request-access` (self-nomination).

use clap::{Args, Subcommand};
use kc_proto::access::{AccessRequest, AccessRequestKind};
use kc_proto::gateway as pb;
use serde::Serialize;

use crate::client::{Context, time_text};
use crate::error::{CliError, Result};
use crate::output::{self, Render, View, or_dash};
use crate::values::{self, SupportArg, ToolFlags, Tools, parse_duration, parse_end};

/// Examples of `kc request-access`.
pub(crate) const REQUEST_ACCESS_EXAMPLES: &str = "\
Examples:
  kc request-access --site 7350101 --customer 7350001 --software downloads-only --justification 'I maintain the Paris servers'
  kc request-access --site 7350101 --customer 7350001 --support basic";

/// `kc requests …`.
#[derive(Debug, Subcommand)]
pub(crate) enum RequestsCommand {
    /// The pending requests of a site that you may decide.
    #[command(
        after_help = "Example:\n  kc requests pending 7350101\n  kc requests pending 7350101 --output json"
    )]
    Pending {
        /// Site number (or site id).
        site: String,
    },
    /// Your own requests, newest first.
    #[command(after_help = "Example:\n  kc requests mine")]
    Mine,
    /// Approve a request, with the levels asked for or fewer (A4).
    #[command(
        after_help = "Examples:\n  kc requests approve 0193c5a2-7d1e-7c3a-9f10-2b4d6e8fa001\n  kc requests approve 0193c5a2-7d1e-7c3a-9f10-2b4d6e8fa001 --software downloads-only --for 90d --reason 'downloads are enough'"
    )]
    Approve {
        /// Request id (kc requests pending).
        id: String,
        /// Grant fewer tool levels than asked (each at most the one asked for).
        #[command(flatten)]
        tools: ToolFlags,
        /// Grant a lower support level than asked.
        #[arg(long, value_enum)]
        support: Option<SupportArg>,
        /// A note for the requester.
        #[arg(long)]
        reason: Option<String>,
        /// The grant ends after this day (UTC) or at this RFC 3339 time (T9).
        #[arg(long, value_name = "DATE", conflicts_with = "valid_for")]
        until: Option<String>,
        /// The grant ends this long after the approval: 90d, 12h (T9).
        #[arg(long = "for", value_name = "DURATION")]
        valid_for: Option<String>,
    },
    /// Reject a request, with a reason sent to the requester (A4).
    #[command(
        after_help = "Example:\n  kc requests reject 0193c5a2-7d1e-7c3a-9f10-2b4d6e8fa001 --reason 'not a member of the team'"
    )]
    Reject {
        /// Request id (kc requests pending).
        id: String,
        /// Why; sent to the requester.
        #[arg(long)]
        reason: String,
    },
    /// Cancel one of your pending requests.
    #[command(after_help = "Example:\n  kc requests cancel 0193c5a2-7d1e-7c3a-9f10-2b4d6e8fa001")]
    Cancel {
        /// Request id (kc requests mine).
        id: String,
    },
}

/// Arguments of `kc request-access`.
#[derive(Debug, Args)]
pub(crate) struct RequestAccessArgs {
    /// Site number of the site.
    #[arg(long)]
    site: String,
    /// Customer number the site belongs to.
    #[arg(long)]
    customer: String,
    /// Tool levels asked for (site access).
    #[command(flatten)]
    tools: ToolFlags,
    /// Support level asked for (support access) instead of tool levels.
    #[arg(long, value_enum)]
    support: Option<SupportArg>,
    /// Why you need access; shown to the approvers.
    #[arg(long, default_value = "")]
    justification: String,
}

/// An access request as printed.
#[derive(Debug, Serialize)]
struct RequestDoc {
    request_id: String,
    site_id: String,
    site_number: String,
    requester_user_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    requester_display_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    requester_email: Option<String>,
    kind: String,
    requested_tools: Tools,
    requested_support_level: String,
    justification: String,
    state: String,
    granted_tools: Tools,
    granted_support_level: String,
    decided_by: String,
    decision_reason: String,
    matched_domain: String,
    auto_approved: bool,
    create_time: String,
    decide_time: String,
    expire_time: String,
    etag: String,
}

impl RequestDoc {
    fn of(request: &AccessRequest) -> Self {
        Self {
            request_id: request.request_id.clone(),
            site_id: request.site_id.clone(),
            site_number: request.site_number.clone(),
            requester_user_id: request.requester_user_id.clone(),
            requester_display_name: None,
            requester_email: None,
            kind: values::request_kind(request.kind),
            requested_tools: Tools::of(request.requested_tools.as_ref()),
            requested_support_level: values::support(request.requested_support_level),
            justification: request.justification.clone(),
            state: values::request_state(request.state),
            granted_tools: Tools::of(request.granted_tools.as_ref()),
            granted_support_level: values::support(request.granted_support_level),
            decided_by: request.decided_by.clone(),
            decision_reason: request.decision_reason.clone(),
            matched_domain: request.matched_domain.clone(),
            auto_approved: request.auto_approved,
            create_time: time_text(request.create_time.as_ref()),
            decide_time: time_text(request.decide_time.as_ref()),
            expire_time: time_text(request.expire_time.as_ref()),
            etag: request.etag.clone(),
        }
    }

    fn of_view(view: &pb::AccessRequestView) -> Self {
        let mut doc = Self::of(&view.request.clone().unwrap_or_default());
        doc.requester_display_name = Some(view.requester_display_name.clone());
        doc.requester_email = Some(view.requester_email.clone());
        doc
    }

    /// What was asked for: the tool levels of a site access request, the support level of
    /// a support access request.
    fn asked(&self) -> String {
        if self.kind == "support-access" {
            format!("support={}", self.requested_support_level)
        } else {
            self.requested_tools.summary()
        }
    }

    /// What was granted, on approval.
    fn granted(&self) -> String {
        if self.kind == "support-access" {
            format!("support={}", self.granted_support_level)
        } else {
            self.granted_tools.summary()
        }
    }
}

/// What `kc requests pending` prints.
#[derive(Debug, Serialize)]
struct PendingDoc {
    site_id: String,
    site_number: String,
    requests: Vec<RequestDoc>,
}

impl Render for PendingDoc {
    fn view(&self) -> View {
        View::table(
            vec![
                "ID",
                "REQUESTER",
                "EMAIL",
                "KIND",
                "ASKED",
                "JUSTIFICATION",
                "EXPIRES",
            ],
            self.requests
                .iter()
                .map(|r| {
                    vec![
                        r.request_id.clone(),
                        or_dash(r.requester_display_name.as_deref().unwrap_or_default()),
                        or_dash(r.requester_email.as_deref().unwrap_or_default()),
                        r.kind.clone(),
                        r.asked(),
                        or_dash(&r.justification),
                        or_dash(&r.expire_time),
                    ]
                })
                .collect(),
        )
    }
}

/// What `kc requests mine` prints.
#[derive(Debug, Serialize)]
struct MineDoc {
    requests: Vec<RequestDoc>,
}

impl Render for MineDoc {
    fn view(&self) -> View {
        View::table(
            vec!["ID", "SITE", "KIND", "ASKED", "STATE", "CREATED"],
            self.requests
                .iter()
                .map(|r| {
                    vec![
                        r.request_id.clone(),
                        r.site_number.clone(),
                        r.kind.clone(),
                        r.asked(),
                        r.state.clone(),
                        r.create_time.clone(),
                    ]
                })
                .collect(),
        )
    }
}

/// What a decision, a cancellation or a new request prints.
#[derive(Debug, Serialize)]
struct RequestChangeDoc {
    request: RequestDoc,
    #[serde(skip_serializing_if = "String::is_empty")]
    revision: String,
}

impl Render for RequestChangeDoc {
    fn view(&self) -> View {
        let r = &self.request;
        let mut fields = vec![
            ("request", r.request_id.clone()),
            ("site", r.site_number.clone()),
            ("kind", r.kind.clone()),
            ("asked", r.asked()),
            ("state", r.state.clone()),
        ];
        if r.state == "approved" {
            fields.push(("granted", r.granted()));
        }
        if !r.decision_reason.is_empty() {
            fields.push(("reason", r.decision_reason.clone()));
        }
        if r.state == "pending" {
            fields.push(("expires", or_dash(&r.expire_time)));
        }
        View::Fields(fields)
    }
}

/// `kc requests …`.
pub(crate) async fn run(ctx: &mut Context, command: RequestsCommand) -> Result<()> {
    match command {
        RequestsCommand::Pending { site } => {
            let site = ctx.site(&site).await?;
            let mut requests = Vec::new();
            let mut page_token = String::new();
            loop {
                let request = pb::ListPendingRequestsRequest {
                    site_id: site.site_id.clone(),
                    page_size: 1000,
                    page_token: page_token.clone(),
                };
                let page = ctx
                    .call(request, |mut c, r| async move {
                        c.list_pending_requests(r).await
                    })
                    .await?;
                requests.extend(page.requests.iter().map(RequestDoc::of_view));
                if page.next_page_token.is_empty() {
                    break;
                }
                page_token = page.next_page_token;
            }
            let doc = PendingDoc {
                site_id: site.site_id,
                site_number: site.site_number,
                requests,
            };
            output::print(ctx.format(), &doc)
        }
        RequestsCommand::Mine => {
            let mut requests = Vec::new();
            let mut page_token = String::new();
            loop {
                let request = pb::ListMyRequestsRequest {
                    page_size: 1000,
                    page_token: page_token.clone(),
                };
                let page = ctx
                    .call(
                        request,
                        |mut c, r| async move { c.list_my_requests(r).await },
                    )
                    .await?;
                requests.extend(page.requests.iter().map(RequestDoc::of));
                if page.next_page_token.is_empty() {
                    break;
                }
                page_token = page.next_page_token;
            }
            output::print(ctx.format(), &MineDoc { requests })
        }
        RequestsCommand::Approve {
            id,
            tools,
            support,
            reason,
            until,
            valid_for,
        } => {
            let request = pb::DecideAccessRequestRequest {
                request_id: id.trim().to_owned(),
                decision: pb::AccessDecision::Approve as i32,
                granted_tools: tools.any().then(|| tools.to_proto()),
                granted_support_level: support.map(i32::from).unwrap_or_default(),
                reason: reason.unwrap_or_default(),
                etag: String::new(),
                valid_until: until.as_deref().map(parse_end).transpose()?,
                valid_for: valid_for.as_deref().map(parse_duration).transpose()?,
                valid_from: None,
            };
            decide(ctx, request).await
        }
        RequestsCommand::Reject { id, reason } => {
            let request = pb::DecideAccessRequestRequest {
                request_id: id.trim().to_owned(),
                decision: pb::AccessDecision::Reject as i32,
                reason,
                ..Default::default()
            };
            decide(ctx, request).await
        }
        RequestsCommand::Cancel { id } => {
            let request = pb::CancelMyRequestRequest {
                request_id: id.trim().to_owned(),
                etag: String::new(),
            };
            let answer = ctx
                .call(
                    request,
                    |mut c, r| async move { c.cancel_my_request(r).await },
                )
                .await?;
            let doc = RequestChangeDoc {
                request: RequestDoc::of(&answer.request.unwrap_or_default()),
                revision: String::new(),
            };
            output::print(ctx.format(), &doc)
        }
    }
}

async fn decide(ctx: &mut Context, request: pb::DecideAccessRequestRequest) -> Result<()> {
    let answer = ctx
        .call(request, |mut c, r| async move {
            c.decide_access_request(r).await
        })
        .await?;
    let doc = RequestChangeDoc {
        request: RequestDoc::of(&answer.request.unwrap_or_default()),
        revision: answer.revision,
    };
    output::print(ctx.format(), &doc)
}

/// `kc request-access`: SelfNominate.
pub(crate) async fn request_access(ctx: &mut Context, args: RequestAccessArgs) -> Result<()> {
    let (kind, requested_tools, requested_support_level) = match (args.tools.any(), args.support) {
        (true, None) => (
            AccessRequestKind::SiteAccess,
            Some(args.tools.to_proto()),
            0,
        ),
        (false, Some(level)) => (AccessRequestKind::SupportAccess, None, i32::from(level)),
        (true, Some(_)) => {
            return Err(CliError::usage(
                "ask for tool levels or for a support level, not both in one request",
            ));
        }
        (false, None) => {
            return Err(CliError::usage(
                "say what you ask for: --software, --reporting, …, or --support",
            ));
        }
    };
    let request = pb::SelfNominateRequest {
        site_number: args.site.trim().to_owned(),
        customer_number: args.customer.trim().to_owned(),
        kind: kind as i32,
        requested_tools,
        requested_support_level,
        justification: args.justification,
    };
    let answer = ctx
        .call(request, |mut c, r| async move { c.self_nominate(r).await })
        .await?;
    let doc = RequestChangeDoc {
        request: RequestDoc::of(&answer.request.unwrap_or_default()),
        revision: String::new(),
    };
    output::print(ctx.format(), &doc)
}
