//! `kc watch permissions`: AuthorizationService.WatchPermissions, one line per change of an
//! effective permission, until interrupted (service accounts with the scope authz).

use clap::Subcommand;
use kc_proto::gateway as pb;
use serde::Serialize;

use crate::client::{Context, time_text};
use crate::error::{CliError, Result};
use crate::output::Format;
use crate::values;

/// `kc watch …`.
#[derive(Debug, Subcommand)]
pub(crate) enum WatchCommand {
    /// Follow the changes of effective permissions: one line per (user, site, permission)
    /// whose `allowed` flipped, in commit order, until interrupted. `--output json` writes
    /// one JSON object per line, `--output yaml` one YAML document per change.
    #[command(
        after_help = "Examples:\n  kc watch permissions\n  kc watch permissions --site 0193c5a2-0000-7000-8000-000000000001 --output json\n  kc watch permissions --after \"$LAST_CURSOR\""
    )]
    Permissions {
        /// Only the changes on this site (site id, or a number among your sites; repeat).
        #[arg(long = "site", value_name = "SITE")]
        sites: Vec<String>,
        /// Resume after this cursor (the `cursor` of the last change received).
        #[arg(long, value_name = "CURSOR")]
        after: Option<String>,
    },
}

/// One change as printed.
#[derive(Debug, Serialize)]
struct ChangeDoc {
    changed_at: String,
    user_id: String,
    site_id: String,
    site_number: String,
    permission: String,
    allowed: bool,
    reason: String,
    rule: String,
    cursor: String,
}

impl ChangeDoc {
    fn of(change: &pb::WatchPermissionsResponse) -> Self {
        Self {
            changed_at: time_text(change.changed_at.as_ref()),
            user_id: change.user_id.clone(),
            site_id: change.site_id.clone(),
            site_number: change.site_number.clone(),
            permission: values::permission(change.permission),
            allowed: change.allowed,
            reason: change.reason.clone(),
            rule: change.rule.clone(),
            cursor: change.cursor.clone(),
        }
    }

    /// The change as one line of text in `format`.
    fn line(&self, format: Format) -> Result<String> {
        match format {
            Format::Table => Ok(format!(
                "{}  {}  {}  {}  {}  {}{}\n",
                self.changed_at,
                if self.site_number.is_empty() {
                    &self.site_id
                } else {
                    &self.site_number
                },
                self.user_id,
                self.permission,
                if self.allowed { "allowed" } else { "denied" },
                self.reason,
                if self.rule.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", self.rule)
                }
            )),
            Format::Json => serde_json::to_string(self)
                .map(|s| s + "\n")
                .map_err(|e| CliError::other(format!("cannot encode a change as JSON: {e}"))),
            Format::Yaml => serde_yaml_ng::to_string(self)
                .map(|s| format!("---\n{s}"))
                .map_err(|e| CliError::other(format!("cannot encode a change as YAML: {e}"))),
        }
    }
}

/// `kc watch …`.
pub(crate) async fn run(ctx: &mut Context, command: WatchCommand) -> Result<()> {
    let WatchCommand::Permissions { sites, after } = command;
    let mut site_ids = Vec::with_capacity(sites.len());
    for site in &sites {
        site_ids.push(ctx.site(site).await?.site_id);
    }
    let request = ctx
        .bearer(pb::WatchPermissionsRequest {
            after_cursor: after.unwrap_or_default(),
            site_ids,
        })
        .await?;
    let channel = ctx.channel().await?;
    let mut client =
        kc_proto::gateway::authorization_service_client::AuthorizationServiceClient::new(channel);
    let mut stream = client.watch_permissions(request).await?.into_inner();
    let mut last_cursor = String::new();
    loop {
        let change = match stream.message().await {
            Ok(Some(change)) => change,
            Ok(None) => return Ok(()),
            Err(status) => {
                let error = CliError::from(status);
                return Err(if last_cursor.is_empty() {
                    error
                } else {
                    CliError::new(
                        error.kind(),
                        format!("{} (resume with --after {last_cursor})", error.message()),
                    )
                });
            }
        };
        let doc = ChangeDoc::of(&change);
        let text = doc.line(ctx.format())?;
        last_cursor = change.cursor;
        use std::io::Write;
        let mut stdout = std::io::stdout().lock();
        if let Err(e) = stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush())
        {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(());
            }
            return Err(e.into());
        }
    }
}
