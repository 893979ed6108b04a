//! `kc compliance`: the compliance gaps of a site, of a customer's sites, or of all the
//! caller's sites (GetSiteCompliance per site).

use clap::Args;
use kc_proto::gateway as pb;
use serde::Serialize;

use crate::client::{Context, SiteRef};
use crate::error::{CliError, Result};
use crate::output::{self, Render, View};
use crate::values;

/// Examples of `kc compliance`.
pub(crate) const EXAMPLES: &str = "\
Examples:
  kc compliance 7350101
  kc compliance --customer 7350001
  kc compliance --output json";

/// Arguments of `kc compliance`.
#[derive(Debug, Args)]
pub(crate) struct ComplianceArgs {
    /// Site number (or site id); every one of your sites when absent.
    site: Option<String>,
    /// Only your sites of this customer number.
    #[arg(long, conflicts_with = "site")]
    customer: Option<String>,
}

/// One gap as printed.
#[derive(Debug, Serialize)]
struct GapDoc {
    kind: String,
    description: String,
}

/// One site's compliance as printed.
#[derive(Debug, Serialize)]
struct SiteComplianceDoc {
    site_id: String,
    site_number: String,
    compliant: bool,
    gaps: Vec<GapDoc>,
}

/// What `kc compliance` prints.
#[derive(Debug, Serialize)]
struct ComplianceDoc {
    sites: Vec<SiteComplianceDoc>,
}

impl Render for ComplianceDoc {
    fn view(&self) -> View {
        let mut rows = Vec::new();
        for site in &self.sites {
            if site.gaps.is_empty() {
                rows.push(vec![
                    site.site_number.clone(),
                    "compliant".to_owned(),
                    "-".to_owned(),
                ]);
            }
            for gap in &site.gaps {
                rows.push(vec![
                    site.site_number.clone(),
                    gap.kind.clone(),
                    gap.description.clone(),
                ]);
            }
        }
        View::table(vec!["SITE", "GAP", "DESCRIPTION"], rows)
    }
}

/// `kc compliance`.
pub(crate) async fn run(ctx: &mut Context, args: ComplianceArgs) -> Result<()> {
    let sites: Vec<SiteRef> = match &args.site {
        Some(site) => vec![ctx.site(site).await?],
        None => {
            let customer = args.customer.as_deref().map(str::trim);
            let mut sites: Vec<SiteRef> = ctx
                .my_sites()
                .await?
                .into_iter()
                .filter_map(|mine| mine.site)
                .filter(|site| customer.is_none_or(|c| site.customer_number == c))
                .map(|site| SiteRef {
                    site_id: site.site_id,
                    site_number: site.site_number,
                })
                .collect();
            sites.sort_by(|a, b| a.site_number.cmp(&b.site_number));
            if sites.is_empty() {
                return Err(match customer {
                    Some(c) => {
                        CliError::not_found(format!("none of your sites belongs to customer {c}"))
                    }
                    None => CliError::not_found("you hold no role or rights on any site"),
                });
            }
            sites
        }
    };
    let mut docs = Vec::with_capacity(sites.len());
    for site in sites {
        let answer = ctx
            .call(
                pb::GetSiteComplianceRequest {
                    site_id: site.site_id.clone(),
                },
                |mut c, r| async move { c.get_site_compliance(r).await },
            )
            .await?;
        let compliance = answer.compliance.unwrap_or_default();
        let gaps: Vec<GapDoc> = compliance
            .gaps
            .iter()
            .map(|gap| GapDoc {
                kind: values::gap_kind(gap.kind),
                description: gap.description.clone(),
            })
            .collect();
        docs.push(SiteComplianceDoc {
            site_id: site.site_id,
            site_number: if compliance.site_number.is_empty() {
                site.site_number
            } else {
                compliance.site_number
            },
            compliant: gaps.is_empty(),
            gaps,
        });
    }
    output::print(ctx.format(), &ComplianceDoc { sites: docs })
}
