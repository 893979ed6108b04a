//! `kc audit NUMBER`: a site's audit trail, both services merged, newest first.

use clap::Args;
use kc_proto::gateway as pb;
use serde::Serialize;

use crate::client::{Context, time_text};
use crate::error::{CliError, Result};
use crate::output::{self, Render, View, or_dash};
use crate::values;

/// Arguments of `kc audit`.
#[derive(Debug, Args)]
pub(crate) struct AuditArgs {
    /// Site number (or site id).
    site: String,
    /// Most entries to show, newest first.
    #[arg(long, default_value_t = 100)]
    limit: usize,
}

/// One audit entry as printed; `before` and `after` are the JSON documents the services
/// recorded.
#[derive(Debug, Serialize)]
struct EntryDoc {
    source: String,
    audit_id: String,
    create_time: String,
    actor_id: String,
    actor_display_name: String,
    via_service: String,
    action: String,
    resource_id: String,
    before: serde_json::Value,
    after: serde_json::Value,
    reason: String,
}

impl EntryDoc {
    fn of(entry: &pb::AuditEntry) -> Self {
        Self {
            source: values::audit_source(entry.source),
            audit_id: entry.audit_id.clone(),
            create_time: time_text(entry.create_time.as_ref()),
            actor_id: entry.actor_id.clone(),
            actor_display_name: entry.actor_display_name.clone(),
            via_service: entry.via_service.clone(),
            action: entry.action.clone(),
            resource_id: entry.resource_id.clone(),
            before: json_or_text(&entry.before_json),
            after: json_or_text(&entry.after_json),
            reason: entry.reason.clone(),
        }
    }
}

/// The recorded JSON as a value: null when empty, the text itself when it is not JSON.
fn json_or_text(text: &str) -> serde_json::Value {
    if text.is_empty() {
        return serde_json::Value::Null;
    }
    serde_json::from_str(text).unwrap_or_else(|_| serde_json::Value::String(text.to_owned()))
}

/// What `kc audit` prints.
#[derive(Debug, Serialize)]
struct AuditDoc {
    site_id: String,
    site_number: String,
    entries: Vec<EntryDoc>,
}

impl Render for AuditDoc {
    fn view(&self) -> View {
        View::table(
            vec!["TIME", "SOURCE", "ACTOR", "ACTION", "RESOURCE", "REASON"],
            self.entries
                .iter()
                .map(|e| {
                    let actor = match (e.actor_display_name.as_str(), e.actor_id.as_str()) {
                        ("", "") => "(service)".to_owned(),
                        ("", id) => id.to_owned(),
                        (name, _) => name.to_owned(),
                    };
                    let actor = if e.via_service.is_empty() {
                        actor
                    } else {
                        format!("{actor} via {}", e.via_service)
                    };
                    vec![
                        e.create_time.clone(),
                        e.source.clone(),
                        actor,
                        e.action.clone(),
                        e.resource_id.clone(),
                        or_dash(&e.reason),
                    ]
                })
                .collect(),
        )
    }
}

/// `kc audit`.
pub(crate) async fn run(ctx: &mut Context, args: AuditArgs) -> Result<()> {
    if args.limit == 0 {
        return Err(CliError::usage("--limit must be at least 1"));
    }
    let site = ctx.site(&args.site).await?;
    let mut entries = Vec::new();
    let mut page_token = String::new();
    while entries.len() < args.limit {
        let request = pb::ListSiteAuditRequest {
            site_id: site.site_id.clone(),
            page_size: i32::try_from((args.limit - entries.len()).min(1000)).unwrap_or(1000),
            page_token: page_token.clone(),
        };
        let page = ctx
            .call(
                request,
                |mut c, r| async move { c.list_site_audit(r).await },
            )
            .await?;
        entries.extend(page.entries.iter().map(EntryDoc::of));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    entries.truncate(args.limit);
    let doc = AuditDoc {
        site_id: site.site_id,
        site_number: site.site_number,
        entries,
    };
    output::print(ctx.format(), &doc)
}
