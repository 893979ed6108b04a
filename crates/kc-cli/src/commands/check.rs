//! `kc check USER SITE PERMISSION`: AuthorizationService.Check, for service accounts with
//! the scope authz.

use clap::Args;
use kc_proto::gateway as pb;
use serde::Serialize;

use crate::client::{Context, time_text};
use crate::error::{CliError, Result};
use crate::output::{self, Render, View, or_dash, yes_no};
use crate::values::{self, PermissionArg};

/// Examples of `kc check`.
pub(crate) const EXAMPLES: &str = "\
Examples:
  kc check 0193c5a2-7d1e-7c3a-9f10-2b4d6e8f0001 7350101 software-download
  kc check 0193c5a2-7d1e-7c3a-9f10-2b4d6e8f0001 7350101 contacts-update --at-least-as-fresh access:42 --output json

The exit code is 0 whether the permission is held or not; read `allowed`.";

/// Arguments of `kc check`.
#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    /// User id of the user who wants to act.
    user: String,
    /// Site id, or site number (then found among the sites where the user holds the
    /// permission, LookupSites).
    site: String,
    /// The permission.
    #[arg(value_enum)]
    permission: PermissionArg,
    /// A revision token a write returned: the answer reflects that write.
    #[arg(long, value_name = "REVISION")]
    at_least_as_fresh: Option<String>,
}

/// What `kc check` prints.
#[derive(Debug, Serialize)]
struct CheckDoc {
    user_id: String,
    site_id: String,
    site_number: String,
    permission: String,
    allowed: bool,
    reason: String,
    rule: String,
    checked_at: String,
}

impl Render for CheckDoc {
    fn view(&self) -> View {
        View::Fields(vec![
            ("allowed", yes_no(self.allowed)),
            ("user", self.user_id.clone()),
            (
                "site",
                if self.site_number.is_empty() {
                    self.site_id.clone()
                } else {
                    self.site_number.clone()
                },
            ),
            ("permission", self.permission.clone()),
            ("reason", or_dash(&self.reason)),
            ("rule", or_dash(&self.rule)),
            ("checked at", or_dash(&self.checked_at)),
        ])
    }
}

/// `kc check`.
pub(crate) async fn run(ctx: &mut Context, args: CheckArgs) -> Result<()> {
    let user_id = args.user.trim().to_owned();
    let typed_site = args.site.trim().to_owned();
    let permission = i32::from(args.permission);
    let consistency = args.at_least_as_fresh.map(|token| pb::Consistency {
        at_least_as_fresh: token,
    });
    let (site_id, site_number) = if uuid::Uuid::parse_str(&typed_site).is_ok() {
        (typed_site, String::new())
    } else if !typed_site.is_empty() && typed_site.chars().all(|c| c.is_ascii_digit()) {
        match lookup_site(ctx, &user_id, permission, &typed_site, consistency.clone()).await? {
            Some(site_id) => (site_id, typed_site),
            None => {
                // LookupSites lists every site where the user holds the permission: a site
                // number absent from it is one where the user does not.
                let doc = CheckDoc {
                    user_id,
                    site_id: String::new(),
                    site_number: typed_site.clone(),
                    permission: values::permission(permission),
                    allowed: false,
                    reason: format!(
                        "site {typed_site} is not among the sites where the user holds it (or does not exist)"
                    ),
                    rule: String::new(),
                    checked_at: String::new(),
                };
                return output::print(ctx.format(), &doc);
            }
        }
    } else {
        return Err(CliError::usage(format!(
            "{typed_site:?} is neither a site id nor a site number"
        )));
    };
    let request = pb::CheckRequest {
        user_id: user_id.clone(),
        site_id: site_id.clone(),
        permission,
        consistency,
    };
    let answer = ctx
        .authz(request, |mut c, r| async move { c.check(r).await })
        .await?;
    let doc = CheckDoc {
        user_id,
        site_id,
        site_number,
        permission: values::permission(permission),
        allowed: answer.allowed,
        reason: answer.reason,
        rule: answer.rule,
        checked_at: time_text(answer.checked_at.as_ref()),
    };
    output::print(ctx.format(), &doc)
}

/// The id of the site numbered `number` among the sites where the user holds the
/// permission; `None` when it is not among them.
async fn lookup_site(
    ctx: &mut Context,
    user_id: &str,
    permission: i32,
    number: &str,
    consistency: Option<pb::Consistency>,
) -> Result<Option<String>> {
    let mut found = None;
    super::lookup::each_sites_page(ctx, user_id, permission, consistency, |page| {
        found = page
            .sites
            .into_iter()
            .find(|s| s.site_number == number)
            .map(|s| s.site_id);
        found.is_some()
    })
    .await?;
    Ok(found)
}
