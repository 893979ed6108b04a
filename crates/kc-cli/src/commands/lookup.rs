//! `kc lookup sites USER PERMISSION` and `kc lookup users SITE PERMISSION`:
//! AuthorizationService's lookups, for service accounts with the scope authz.

use clap::Subcommand;
use kc_proto::gateway as pb;
use serde::Serialize;

use crate::client::{Context, time_text};
use crate::error::Result;
use crate::output::{self, Render, View, or_dash};
use crate::values::{self, PermissionArg};

/// `kc lookup …`.
#[derive(Debug, Subcommand)]
pub(crate) enum LookupCommand {
    /// The sites where a user holds a permission, why and by which rule.
    #[command(
        after_help = "Example:\n  kc lookup sites 0193c5a2-7d1e-7c3a-9f10-2b4d6e8f0001 software-download"
    )]
    Sites {
        /// User id.
        user: String,
        /// The permission.
        #[arg(value_enum)]
        permission: PermissionArg,
        /// A revision token a write returned: the answer reflects that write.
        #[arg(long, value_name = "REVISION")]
        at_least_as_fresh: Option<String>,
    },
    /// The users who hold a permission on a site, why and by which rule.
    #[command(
        after_help = "Example:\n  kc lookup users 0193c5a2-0000-7000-8000-000000000001 approve-site-access"
    )]
    Users {
        /// Site id (or a number among your sites).
        site: String,
        /// The permission.
        #[arg(value_enum)]
        permission: PermissionArg,
        /// A revision token a write returned: the answer reflects that write.
        #[arg(long, value_name = "REVISION")]
        at_least_as_fresh: Option<String>,
    },
}

/// One site where the user holds the permission.
#[derive(Debug, Serialize)]
struct SiteGrantDoc {
    site_id: String,
    site_number: String,
    reason: String,
    rule: String,
}

/// What `kc lookup sites` prints.
#[derive(Debug, Serialize)]
struct SitesDoc {
    user_id: String,
    permission: String,
    sites: Vec<SiteGrantDoc>,
    checked_at: String,
}

impl Render for SitesDoc {
    fn view(&self) -> View {
        View::table(
            vec!["SITE", "SITE ID", "RULE", "REASON"],
            self.sites
                .iter()
                .map(|s| {
                    vec![
                        s.site_number.clone(),
                        s.site_id.clone(),
                        or_dash(&s.rule),
                        s.reason.clone(),
                    ]
                })
                .collect(),
        )
    }
}

/// One user who holds the permission.
#[derive(Debug, Serialize)]
struct UserGrantDoc {
    user_id: String,
    reason: String,
    rule: String,
}

/// What `kc lookup users` prints.
#[derive(Debug, Serialize)]
struct UsersDoc {
    site_id: String,
    permission: String,
    users: Vec<UserGrantDoc>,
    checked_at: String,
}

impl Render for UsersDoc {
    fn view(&self) -> View {
        View::table(
            vec!["USER ID", "RULE", "REASON"],
            self.users
                .iter()
                .map(|u| vec![u.user_id.clone(), or_dash(&u.rule), u.reason.clone()])
                .collect(),
        )
    }
}

/// Pages through LookupSites for `user_id` and `permission`, 1,000 sites a page, handing
/// each page to `on_page` until it returns `true` (it found what it looked for) or the pages
/// end.
pub(crate) async fn each_sites_page(
    ctx: &mut Context,
    user_id: &str,
    permission: i32,
    consistency: Option<pb::Consistency>,
    mut on_page: impl FnMut(pb::LookupSitesResponse) -> bool,
) -> Result<()> {
    let mut page_token = String::new();
    loop {
        let request = pb::LookupSitesRequest {
            user_id: user_id.to_owned(),
            permission,
            page_size: 1000,
            page_token: page_token.clone(),
            consistency: consistency.clone(),
        };
        let mut page = ctx
            .authz(request, |mut c, r| async move { c.lookup_sites(r).await })
            .await?;
        let next_page_token = std::mem::take(&mut page.next_page_token);
        if on_page(page) || next_page_token.is_empty() {
            return Ok(());
        }
        page_token = next_page_token;
    }
}

fn consistency(token: Option<String>) -> Option<pb::Consistency> {
    token.map(|at_least_as_fresh| pb::Consistency { at_least_as_fresh })
}

/// `kc lookup …`: every page.
pub(crate) async fn run(ctx: &mut Context, command: LookupCommand) -> Result<()> {
    match command {
        LookupCommand::Sites {
            user,
            permission,
            at_least_as_fresh,
        } => {
            let user_id = user.trim().to_owned();
            let permission = i32::from(permission);
            let consistency = consistency(at_least_as_fresh);
            let mut sites = Vec::new();
            let mut checked_at = String::new();
            each_sites_page(ctx, &user_id, permission, consistency, |page| {
                if checked_at.is_empty() {
                    checked_at = time_text(page.checked_at.as_ref());
                }
                sites.extend(page.sites.into_iter().map(|s| SiteGrantDoc {
                    site_id: s.site_id,
                    site_number: s.site_number,
                    reason: s.reason,
                    rule: s.rule,
                }));
                false
            })
            .await?;
            let doc = SitesDoc {
                user_id,
                permission: values::permission(permission),
                sites,
                checked_at,
            };
            output::print(ctx.format(), &doc)
        }
        LookupCommand::Users {
            site,
            permission,
            at_least_as_fresh,
        } => {
            let site = ctx.site(&site).await?;
            let permission = i32::from(permission);
            let consistency = consistency(at_least_as_fresh);
            let mut users = Vec::new();
            let mut checked_at = String::new();
            let mut page_token = String::new();
            loop {
                let request = pb::LookupUsersRequest {
                    site_id: site.site_id.clone(),
                    permission,
                    page_size: 1000,
                    page_token: page_token.clone(),
                    consistency: consistency.clone(),
                };
                let page = ctx
                    .authz(request, |mut c, r| async move { c.lookup_users(r).await })
                    .await?;
                if checked_at.is_empty() {
                    checked_at = time_text(page.checked_at.as_ref());
                }
                users.extend(page.users.into_iter().map(|u| UserGrantDoc {
                    user_id: u.user_id,
                    reason: u.reason,
                    rule: u.rule,
                }));
                if page.next_page_token.is_empty() {
                    break;
                }
                page_token = page.next_page_token;
            }
            let doc = UsersDoc {
                site_id: site.site_id,
                permission: values::permission(permission),
                users,
                checked_at,
            };
            output::print(ctx.format(), &doc)
        }
    }
}
