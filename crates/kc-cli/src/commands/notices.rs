//! `kc notices send` (operators and service accounts with the scope notices) and
//! `kc notices list NUMBER`.

use std::collections::HashMap;

use clap::Subcommand;
use kc_proto::gateway as pb;
use kc_proto::notification::Notification;
use serde::Serialize;

use crate::client::{Context, time_text};
use crate::error::{CliError, Result};
use crate::output::{self, Render, View, or_dash};
use crate::values::{self, NoticeKindArg};

/// `kc notices …`.
#[derive(Debug, Subcommand)]
pub(crate) enum NoticesCommand {
    /// Send a notice about a site to the contacts its kind goes to (R1, C4, N1).
    #[command(
        after_help = "Examples:\n  kc notices send 7350101 --kind renewal --param end_date=2027-03-31 --param quote_reference=Q-1042\n  kc notices send 0193c5a2-0000-7000-8000-000000000001 --kind technical --param topic=outage --param summary='maintenance tonight' --idempotency-key maint-2026-12-06"
    )]
    Send {
        /// Site number (or site id: operators and service accounts have no site list).
        site: String,
        /// Kind of notice.
        #[arg(long, value_enum)]
        kind: NoticeKindArg,
        /// Template parameter `KEY=VALUE` (repeat); the keys each kind takes are in
        /// `kc notices send --help`.
        #[arg(long = "param", value_name = "KEY=VALUE", value_parser = parse_param)]
        params: Vec<(String, String)>,
        /// The same key again sends nothing new and returns the first result (N3); a new
        /// random key when absent (printed).
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// The notifications of a site, newest first.
    #[command(after_help = "Example:\n  kc notices list 7350101 --limit 20")]
    List {
        /// Site number (or site id).
        site: String,
        /// Most notifications to show.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

/// `KEY=VALUE`.
fn parse_param(typed: &str) -> std::result::Result<(String, String), String> {
    match typed.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_owned(), value.to_owned()))
        }
        _ => Err(format!("{typed:?} is not KEY=VALUE")),
    }
}

/// One notification as printed.
#[derive(Debug, Serialize)]
struct NotificationDoc {
    notification_id: String,
    site_id: String,
    recipient_user_id: String,
    email: String,
    kind: String,
    locale: String,
    subject: String,
    state: String,
    rule: String,
    idempotency_key: String,
    create_time: String,
    deliver_time: String,
}

impl NotificationDoc {
    fn of(n: &Notification) -> Self {
        Self {
            notification_id: n.notification_id.clone(),
            site_id: n.site_id.clone(),
            recipient_user_id: n.recipient_user_id.clone(),
            email: n.email.clone(),
            kind: values::notice_kind(n.kind),
            locale: n.locale.clone(),
            subject: n.subject.clone(),
            state: values::notification_state(n.state),
            rule: n.rule.clone(),
            idempotency_key: n.idempotency_key.clone(),
            create_time: time_text(n.create_time.as_ref()),
            deliver_time: time_text(n.deliver_time.as_ref()),
        }
    }
}

fn notifications_table(notifications: &[NotificationDoc]) -> View {
    View::table(
        vec!["TIME", "KIND", "TO", "LANG", "STATE", "WHY", "SUBJECT"],
        notifications
            .iter()
            .map(|n| {
                vec![
                    n.create_time.clone(),
                    n.kind.clone(),
                    n.email.clone(),
                    n.locale.clone(),
                    n.state.clone(),
                    or_dash(&n.rule),
                    n.subject.clone(),
                ]
            })
            .collect(),
    )
}

/// What `kc notices send` prints.
#[derive(Debug, Serialize)]
struct SentDoc {
    site_id: String,
    idempotency_key: String,
    replayed: bool,
    notifications: Vec<NotificationDoc>,
}

impl Render for SentDoc {
    fn view(&self) -> View {
        let what = if self.replayed {
            "already sent with this key; nothing new was sent"
        } else {
            "sent"
        };
        View::Sections(vec![(
            format!("{what} (idempotency key {})", self.idempotency_key),
            notifications_table(&self.notifications),
        )])
    }
}

/// What `kc notices list` prints.
#[derive(Debug, Serialize)]
struct ListDoc {
    site_id: String,
    site_number: String,
    notifications: Vec<NotificationDoc>,
}

impl Render for ListDoc {
    fn view(&self) -> View {
        notifications_table(&self.notifications)
    }
}

/// `kc notices …`.
pub(crate) async fn run(ctx: &mut Context, command: NoticesCommand) -> Result<()> {
    match command {
        NoticesCommand::Send {
            site,
            kind,
            params,
            idempotency_key,
        } => {
            let site = ctx.site(&site).await?;
            let idempotency_key =
                idempotency_key.unwrap_or_else(|| format!("kc-{}", uuid::Uuid::new_v4()));
            let params: HashMap<String, String> = params.into_iter().collect();
            let request = pb::SendNoticeRequest {
                site_id: site.site_id.clone(),
                kind: i32::from(kind),
                params,
                idempotency_key: idempotency_key.clone(),
            };
            let answer = ctx
                .call(request, |mut c, r| async move { c.send_notice(r).await })
                .await?;
            let doc = SentDoc {
                site_id: site.site_id,
                idempotency_key,
                replayed: answer.replayed,
                notifications: answer
                    .notifications
                    .iter()
                    .map(NotificationDoc::of)
                    .collect(),
            };
            output::print(ctx.format(), &doc)
        }
        NoticesCommand::List { site, limit } => {
            if limit == 0 {
                return Err(CliError::usage("--limit must be at least 1"));
            }
            let site = ctx.site(&site).await?;
            let mut notifications = Vec::new();
            let mut page_token = String::new();
            while notifications.len() < limit {
                let request = pb::ListSiteNotificationsRequest {
                    site_id: site.site_id.clone(),
                    page_size: i32::try_from((limit - notifications.len()).min(1000))
                        .unwrap_or(1000),
                    page_token: page_token.clone(),
                };
                let page = ctx
                    .call(request, |mut c, r| async move {
                        c.list_site_notifications(r).await
                    })
                    .await?;
                notifications.extend(page.notifications.iter().map(NotificationDoc::of));
                if page.next_page_token.is_empty() {
                    break;
                }
                page_token = page.next_page_token;
            }
            notifications.truncate(limit);
            let doc = ListDoc {
                site_id: site.site_id,
                site_number: site.site_number,
                notifications,
            };
            output::print(ctx.format(), &doc)
        }
    }
}
