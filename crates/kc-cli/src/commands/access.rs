//! `kc access NUMBER [--user …]`, `kc access grant`, `kc access revoke`: the rights people
//! hold on a site.

use clap::{Args, Subcommand};
use kc_proto::access::AccessProfile;
use kc_proto::gateway as pb;
use serde::Serialize;

use crate::client::{Context, SiteRef, time_text};
use crate::error::{CliError, Result};
use crate::output::{self, Render, View, or_dash, yes_no};
use crate::values::{self, SupportArg, ToolFlags, Tools, parse_end};

/// Examples of `kc access`.
pub(crate) const EXAMPLES: &str = "\
Examples:
  kc access 7350101
  kc access 7350101 --user lucas.moreau@dupont.example
  kc access grant 7350101 --user lucas.moreau@dupont.example --software downloads-only --until 2027-03-31 --reason 'migration project'
  kc access revoke 7350101 --user lucas.moreau@dupont.example --reason 'left the company'";

/// Arguments of `kc access`: a site to list, or a change.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub(crate) struct AccessArgs {
    #[command(subcommand)]
    command: Option<AccessCommand>,
    /// Site number (or site id).
    #[arg(required = true)]
    site: Option<String>,
    /// Only this user's profile: a login e-mail of a contact or rights holder of the site,
    /// or a user id.
    #[arg(long)]
    user: Option<String>,
}

/// Changes to rights.
#[derive(Debug, Subcommand)]
enum AccessCommand {
    /// Grant tool levels and/or a support level to a user on a site (T4, T5).
    #[command(
        after_help = "Examples:\n  kc access grant 7350101 --user lucas.moreau@dupont.example --software downloads-only --reason 'migration project'\n  kc access grant 7350101 --user lucas.moreau@dupont.example --support basic --until 2027-03-31 --reason 'support contract'"
    )]
    Grant {
        /// Site number (or site id).
        site: String,
        /// The user: login e-mail of a contact or rights holder of the site, or a user id.
        #[arg(long)]
        user: String,
        #[command(flatten)]
        tools: ToolFlags,
        /// Support level (needs support administration, U4).
        #[arg(long, value_enum)]
        support: Option<SupportArg>,
        /// When the user's explicit grants on the site end (T9): a date (the grants hold
        /// through that day, UTC) or an RFC 3339 time.
        #[arg(long, value_name = "DATE")]
        until: Option<String>,
        /// Remove the end of the user's explicit grants (they no longer end).
        #[arg(long, conflicts_with = "until")]
        without_end: bool,
        /// Why, recorded in the audit trail and told to the user (T5).
        #[arg(long)]
        reason: String,
    },
    /// Remove a user's explicit grants on a site (what its roles imply remains).
    #[command(
        after_help = "Example:\n  kc access revoke 7350101 --user lucas.moreau@dupont.example --reason 'left the company'"
    )]
    Revoke {
        /// Site number (or site id).
        site: String,
        /// The user: login e-mail of a contact or rights holder of the site, or a user id.
        #[arg(long)]
        user: String,
        /// Why, recorded in the audit trail and told to the user (T5).
        #[arg(long)]
        reason: String,
    },
}

/// One user's rights on a site, as printed.
#[derive(Debug, Serialize)]
struct ProfileDoc {
    site_id: String,
    site_number: String,
    user_id: String,
    display_name: String,
    email: String,
    effective: Tools,
    explicit: Tools,
    support_level: String,
    explicit_support_level: String,
    implied_by: Vec<String>,
    user_disabled: bool,
    valid_until: String,
    update_time: String,
    updated_by: String,
    etag: String,
}

impl ProfileDoc {
    fn of(profile: &AccessProfile, display_name: &str, email: &str) -> Self {
        Self {
            site_id: profile.site_id.clone(),
            site_number: profile.site_number.clone(),
            user_id: profile.user_id.clone(),
            display_name: display_name.to_owned(),
            email: email.to_owned(),
            effective: Tools::of(profile.effective.as_ref()),
            explicit: Tools::of(profile.explicit.as_ref()),
            support_level: values::support(profile.support_level),
            explicit_support_level: values::support(profile.explicit_support_level),
            implied_by: values::roles(&profile.implied_by),
            user_disabled: profile.user_disabled,
            valid_until: time_text(profile.valid_until.as_ref()),
            update_time: time_text(profile.update_time.as_ref()),
            updated_by: profile.updated_by.clone(),
            etag: profile.etag.clone(),
        }
    }

    /// Who, where, and tool by tool the effective level and the explicit one, under
    /// `title`.
    fn view(&self, title: String) -> View {
        let who = if self.email.is_empty() {
            self.user_id.clone()
        } else {
            format!("{} <{}>", self.display_name, self.email)
        };
        let rows = [
            (
                "software",
                &self.effective.software,
                &self.explicit.software,
            ),
            (
                "reporting",
                &self.effective.reporting,
                &self.explicit.reporting,
            ),
            (
                "entitlements",
                &self.effective.entitlements,
                &self.explicit.entitlements,
            ),
            (
                "account-management",
                &self.effective.account_management,
                &self.explicit.account_management,
            ),
            (
                "manage-access",
                &self.effective.manage_access,
                &self.explicit.manage_access,
            ),
            (
                "contact-updates",
                &self.effective.contact_updates,
                &self.explicit.contact_updates,
            ),
            (
                "account-documents",
                &self.effective.account_documents,
                &self.explicit.account_documents,
            ),
            ("support", &self.support_level, &self.explicit_support_level),
        ]
        .into_iter()
        .map(|(tool, effective, explicit)| {
            vec![tool.to_owned(), effective.clone(), explicit.clone()]
        })
        .collect();
        View::Sections(vec![
            (
                title,
                View::Fields(vec![
                    ("user", who),
                    ("site", self.site_number.clone()),
                    ("implied by", or_dash(&self.implied_by.join(","))),
                    ("disabled", yes_no(self.user_disabled)),
                    ("grants end", or_dash(&self.valid_until)),
                ]),
            ),
            (
                "Rights:".to_owned(),
                View::table(vec!["TOOL", "EFFECTIVE", "EXPLICIT"], rows),
            ),
        ])
    }
}

/// What `kc access NUMBER` prints.
#[derive(Debug, Serialize)]
struct SiteAccessDoc {
    site_id: String,
    site_number: String,
    entries: Vec<ProfileDoc>,
}

impl Render for SiteAccessDoc {
    fn view(&self) -> View {
        View::table(
            vec!["NAME", "EMAIL", "RIGHTS", "SUPPORT", "IMPLIED BY", "ENDS"],
            self.entries
                .iter()
                .map(|e| {
                    vec![
                        or_dash(&e.display_name),
                        or_dash(&e.email),
                        e.effective.summary(),
                        e.support_level.clone(),
                        or_dash(&e.implied_by.join(",")),
                        or_dash(&e.valid_until),
                    ]
                })
                .collect(),
        )
    }
}

/// What `kc access NUMBER --user …` prints.
#[derive(Debug, Serialize)]
struct ProfileShowDoc {
    profile: ProfileDoc,
}

impl Render for ProfileShowDoc {
    fn view(&self) -> View {
        self.profile.view(String::new())
    }
}

/// What a grant or a revocation prints.
#[derive(Debug, Serialize)]
struct AccessChangeDoc {
    /// `granted` or `revoked`.
    action: &'static str,
    profile: ProfileDoc,
    revision: String,
}

impl Render for AccessChangeDoc {
    fn view(&self) -> View {
        let site = or_dash(&self.profile.site_number);
        self.profile
            .view(format!("{} on site {site}:", self.action))
    }
}

/// `kc access …`.
pub(crate) async fn run(ctx: &mut Context, args: AccessArgs) -> Result<()> {
    match args.command {
        None => {
            let site = args
                .site
                .ok_or_else(|| CliError::usage("give a site number: kc access NUMBER"))?;
            let site = ctx.site(&site).await?;
            let entries = site_access(ctx, &site).await?;
            match args.user {
                None => {
                    let doc = SiteAccessDoc {
                        site_id: site.site_id.clone(),
                        site_number: site.site_number.clone(),
                        entries: entries
                            .iter()
                            .map(|e| {
                                ProfileDoc::of(
                                    &e.profile.clone().unwrap_or_default(),
                                    &e.display_name,
                                    &e.email,
                                )
                            })
                            .collect(),
                    };
                    output::print(ctx.format(), &doc)
                }
                Some(user) => {
                    let (user_id, name, email) = resolve_user(ctx, &site, &user, &entries).await?;
                    let answer = ctx
                        .call(
                            pb::GetAccessProfileRequest {
                                site_id: site.site_id.clone(),
                                user_id,
                            },
                            |mut c, r| async move { c.get_access_profile(r).await },
                        )
                        .await?;
                    let doc = ProfileShowDoc {
                        profile: ProfileDoc::of(&answer.profile.unwrap_or_default(), &name, &email),
                    };
                    output::print(ctx.format(), &doc)
                }
            }
        }
        Some(AccessCommand::Grant {
            site,
            user,
            tools,
            support,
            until,
            without_end,
            reason,
        }) => {
            if !tools.any() && support.is_none() {
                return Err(CliError::usage(
                    "give at least one level: --software, --reporting, …, or --support",
                ));
            }
            let valid_until = until.as_deref().map(parse_end).transpose()?;
            let site = ctx.site(&site).await?;
            let entries = site_access(ctx, &site).await?;
            let (user_id, name, email) = resolve_user(ctx, &site, &user, &entries).await?;
            let mut profile = None;
            let mut revision = String::new();
            if tools.any() {
                let request = pb::SetToolAccessRequest {
                    site_id: site.site_id.clone(),
                    user_id: user_id.clone(),
                    tools: Some(tools.to_proto()),
                    reason: reason.clone(),
                    etag: String::new(),
                    valid_until,
                    without_end,
                    valid_from: None,
                };
                let answer = ctx
                    .call(
                        request,
                        |mut c, r| async move { c.set_tool_access(r).await },
                    )
                    .await?;
                profile = answer.profile;
                revision = answer.revision;
            }
            if let Some(level) = support {
                let request = pb::SetSupportAccessRequest {
                    site_id: site.site_id.clone(),
                    user_id: user_id.clone(),
                    support_level: i32::from(level),
                    reason: reason.clone(),
                    etag: String::new(),
                    valid_until,
                    without_end,
                    valid_from: None,
                };
                let answer = ctx
                    .call(
                        request,
                        |mut c, r| async move { c.set_support_access(r).await },
                    )
                    .await?;
                profile = answer.profile;
                revision = answer.revision;
            }
            let doc = AccessChangeDoc {
                action: "granted",
                profile: ProfileDoc::of(&profile.unwrap_or_default(), &name, &email),
                revision,
            };
            output::print(ctx.format(), &doc)
        }
        Some(AccessCommand::Revoke { site, user, reason }) => {
            let site = ctx.site(&site).await?;
            let entries = site_access(ctx, &site).await?;
            let (user_id, name, email) = resolve_user(ctx, &site, &user, &entries).await?;
            let request = pb::RevokeAccessRequest {
                site_id: site.site_id.clone(),
                user_id,
                reason,
                etag: String::new(),
            };
            let answer = ctx
                .call(request, |mut c, r| async move { c.revoke_access(r).await })
                .await?;
            let doc = AccessChangeDoc {
                action: "revoked",
                profile: ProfileDoc::of(&answer.profile.unwrap_or_default(), &name, &email),
                revision: answer.revision,
            };
            output::print(ctx.format(), &doc)
        }
    }
}

/// Every entry of ListSiteAccess of `site`.
async fn site_access(ctx: &mut Context, site: &SiteRef) -> Result<Vec<pb::SiteAccessEntry>> {
    let mut entries = Vec::new();
    let mut page_token = String::new();
    loop {
        let request = pb::ListSiteAccessRequest {
            site_id: site.site_id.clone(),
            page_size: 1000,
            page_token: page_token.clone(),
        };
        let page = ctx
            .call(
                request,
                |mut c, r| async move { c.list_site_access(r).await },
            )
            .await?;
        entries.extend(page.entries);
        if page.next_page_token.is_empty() {
            return Ok(entries);
        }
        page_token = page.next_page_token;
    }
}

/// The user typed with `--user`: a user id as it is, an e-mail looked up among the rights
/// holders of the site, then among its contacts. Returns the id, the name and the e-mail.
async fn resolve_user(
    ctx: &mut Context,
    site: &SiteRef,
    typed: &str,
    entries: &[pb::SiteAccessEntry],
) -> Result<(String, String, String)> {
    let typed = typed.trim();
    if uuid::Uuid::parse_str(typed).is_ok() {
        let known = entries
            .iter()
            .find(|e| e.profile.as_ref().is_some_and(|p| p.user_id == typed));
        return Ok(match known {
            Some(e) => (typed.to_owned(), e.display_name.clone(), e.email.clone()),
            None => (typed.to_owned(), String::new(), String::new()),
        });
    }
    if let Some(entry) = entries.iter().find(|e| e.email.eq_ignore_ascii_case(typed)) {
        let user_id = entry
            .profile
            .as_ref()
            .map(|p| p.user_id.clone())
            .unwrap_or_default();
        return Ok((user_id, entry.display_name.clone(), entry.email.clone()));
    }
    let mut page_token = String::new();
    loop {
        let request = pb::ShowAllContactsRequest {
            site_id: site.site_id.clone(),
            roles: Vec::new(),
            page_size: 1000,
            page_token: page_token.clone(),
        };
        let page = ctx
            .call(
                request,
                |mut c, r| async move { c.show_all_contacts(r).await },
            )
            .await?;
        if let Some(person) = page
            .contacts
            .iter()
            .find(|p| p.email.eq_ignore_ascii_case(typed))
        {
            return Ok((
                person.user_id.clone(),
                person.display_name.clone(),
                person.email.clone(),
            ));
        }
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    Err(CliError::not_found(format!(
        "{typed} is neither a contact nor a rights holder of site {}; name the user by its user id",
        if site.site_number.is_empty() {
            &site.site_id
        } else {
            &site.site_number
        }
    )))
}
