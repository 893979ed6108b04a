//! `kc sites` and `kc site show NUMBER`.

use clap::{Args, Subcommand};
use kc_proto::contacts::{ContactDetails, Program, Site};
use kc_proto::gateway as pb;
use serde::Serialize;

use crate::client::{Context, time_text};
use crate::commands::contacts::PersonDoc;
use crate::error::{CliError, Result};
use crate::output::{self, Render, View, or_dash, yes_no};
use crate::values::{self, ProgramArg, Tools};

/// `kc site …`.
#[derive(Debug, Subcommand)]
pub(crate) enum SiteCommand {
    /// Show one site.
    #[command(
        after_help = "Example:\n  kc site show 7350101\n  kc site show 7350101 --output yaml"
    )]
    Show {
        /// Site number (or site id).
        site: String,
    },
    /// Create a site with its primary contact (operators).
    #[command(
        after_help = "Example:\n  kc site create --number 7350101 --customer 7350001 --name 'Dupont Paris' --country FR --language fr \\\n    --program passport-advantage --support-active --support-end-date 2027-12-31 \\\n    --primary-email camille.martin@dupont.example --primary-name 'Camille Martin' \\\n    --stc-email hugo.petit@dupont.example --stc-name 'Hugo Petit'"
    )]
    Create(Box<CreateArgs>),
}

/// Arguments of `kc site create`.
#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    /// Site number, 7 to 10 digits (S2).
    #[arg(long)]
    number: String,
    /// Customer number, 7 to 10 digits (S2).
    #[arg(long)]
    customer: String,
    /// Site name.
    #[arg(long)]
    name: String,
    /// ISO 3166-1 alpha-2 country code.
    #[arg(long)]
    country: String,
    /// Language of the site (BCP-47), the language of its notices; `en` by default.
    #[arg(long, default_value = "")]
    language: String,
    /// Program.
    #[arg(long, value_enum)]
    program: ProgramArg,
    /// S&S is active (then a site technical contact is required, C5).
    #[arg(long, requires = "stc_email")]
    support_active: bool,
    /// Last day of S&S, YYYY-MM-DD.
    #[arg(long, value_name = "DATE", default_value = "")]
    support_end_date: String,
    /// Business partner that receives copies of proofs of entitlement (C4).
    #[arg(long, value_name = "EMAIL", default_value = "")]
    business_partner: String,
    /// The primary contact's login e-mail.
    #[arg(long, value_name = "EMAIL")]
    primary_email: String,
    /// The primary contact's name (required when the e-mail is unknown: invited).
    #[arg(long, value_name = "NAME", default_value = "")]
    primary_name: String,
    /// The site technical contact's login e-mail.
    #[arg(long, value_name = "EMAIL")]
    stc_email: Option<String>,
    /// The site technical contact's name (required when the e-mail is unknown).
    #[arg(long, value_name = "NAME", default_value = "")]
    stc_name: String,
}

/// One site as printed, with the caller's standing on it when known.
#[derive(Debug, Serialize)]
pub(crate) struct SiteDoc {
    site_id: String,
    site_number: String,
    customer_number: String,
    name: String,
    country_code: String,
    language: String,
    program: String,
    support_active: bool,
    support_end_date: String,
    business_partner_email: String,
    admin_may_manage_access: bool,
    is_original_site: bool,
    primary_user_id: String,
    create_time: String,
    update_time: String,
    etag: String,
    /// The caller's roles on the site (ListMySites, GetMe); absent for `site show`.
    #[serde(skip_serializing_if = "Option::is_none")]
    my_roles: Option<Vec<String>>,
    /// The caller's effective tool levels on the site.
    #[serde(skip_serializing_if = "Option::is_none")]
    my_tools: Option<Tools>,
    /// The caller's effective support level on the site.
    #[serde(skip_serializing_if = "Option::is_none")]
    my_support_level: Option<String>,
}

impl SiteDoc {
    /// A site alone.
    pub(crate) fn of(site: &Site) -> Self {
        Self {
            site_id: site.site_id.clone(),
            site_number: site.site_number.clone(),
            customer_number: site.customer_number.clone(),
            name: site.name.clone(),
            country_code: site.country_code.clone(),
            language: site.language.clone(),
            program: values::program(site.program),
            support_active: site.support_active,
            support_end_date: site.support_end_date.clone(),
            business_partner_email: site.business_partner_email.clone(),
            admin_may_manage_access: site.admin_may_manage_access,
            is_original_site: site.is_original_site,
            primary_user_id: site.primary_user_id.clone(),
            create_time: time_text(site.create_time.as_ref()),
            update_time: time_text(site.update_time.as_ref()),
            etag: site.etag.clone(),
            my_roles: None,
            my_tools: None,
            my_support_level: None,
        }
    }

    /// A site with the caller's roles and rights on it.
    pub(crate) fn of_mine(mine: &pb::MySite) -> Self {
        let mut doc = Self::of(&mine.site.clone().unwrap_or_default());
        doc.my_roles = Some(values::roles(&mine.roles));
        doc.my_tools = Some(Tools::of(mine.effective.as_ref()));
        doc.my_support_level = Some(values::support(mine.support_level));
        doc
    }
}

/// The sites as a table.
pub(crate) fn sites_table(sites: &[SiteDoc]) -> View {
    View::table(
        vec![
            "NUMBER",
            "NAME",
            "CUSTOMER",
            "COUNTRY",
            "PROGRAM",
            "S&S",
            "MY ROLES",
            "MY RIGHTS",
            "SUPPORT",
        ],
        sites
            .iter()
            .map(|s| {
                vec![
                    s.site_number.clone(),
                    s.name.clone(),
                    s.customer_number.clone(),
                    s.country_code.clone(),
                    s.program.clone(),
                    yes_no(s.support_active),
                    or_dash(&s.my_roles.clone().unwrap_or_default().join(",")),
                    s.my_tools.as_ref().map(Tools::summary).unwrap_or_default(),
                    s.my_support_level.clone().unwrap_or_default(),
                ]
            })
            .collect(),
    )
}

/// What `kc sites` prints.
#[derive(Debug, Serialize)]
struct SitesDoc {
    sites: Vec<SiteDoc>,
}

impl Render for SitesDoc {
    fn view(&self) -> View {
        sites_table(&self.sites)
    }
}

/// What `kc site show` prints.
#[derive(Debug, Serialize)]
struct SiteShowDoc {
    site: SiteDoc,
}

impl Render for SiteShowDoc {
    fn view(&self) -> View {
        let s = &self.site;
        View::Fields(vec![
            ("number", s.site_number.clone()),
            ("id", s.site_id.clone()),
            ("name", s.name.clone()),
            ("customer", s.customer_number.clone()),
            ("country", s.country_code.clone()),
            ("language", s.language.clone()),
            ("program", s.program.clone()),
            ("original site", yes_no(s.is_original_site)),
            ("S&S active", yes_no(s.support_active)),
            ("S&S end date", or_dash(&s.support_end_date)),
            ("business partner", or_dash(&s.business_partner_email)),
            ("admin manages access", yes_no(s.admin_may_manage_access)),
            ("primary user id", or_dash(&s.primary_user_id)),
            ("created", or_dash(&s.create_time)),
            ("updated", or_dash(&s.update_time)),
        ])
    }
}

/// What `kc site create` prints.
#[derive(Debug, Serialize)]
struct CreatedDoc {
    site: SiteDoc,
    contacts: Vec<PersonDoc>,
    revision: String,
}

impl Render for CreatedDoc {
    fn view(&self) -> View {
        let people = self
            .contacts
            .iter()
            .map(|p| format!("{} <{}> ({})", p.display_name, p.email, p.roles.join(",")))
            .collect::<Vec<_>>()
            .join("; ");
        View::Fields(vec![
            ("created site", self.site.site_number.clone()),
            ("id", self.site.site_id.clone()),
            ("name", self.site.name.clone()),
            ("customer", self.site.customer_number.clone()),
            ("contacts", people),
        ])
    }
}

/// `kc sites`: ListMySites, every page.
pub(crate) async fn list(ctx: &mut Context) -> Result<()> {
    let sites = ctx.my_sites().await?;
    let doc = SitesDoc {
        sites: sites.iter().map(SiteDoc::of_mine).collect(),
    };
    output::print(ctx.format(), &doc)
}

/// `kc site …`.
pub(crate) async fn run(ctx: &mut Context, command: SiteCommand) -> Result<()> {
    match command {
        SiteCommand::Show { site } => {
            let site = ctx.site(&site).await?;
            let answer = ctx
                .call(
                    pb::GetSiteRequest {
                        site_id: site.site_id,
                    },
                    |mut c, r| async move { c.get_site(r).await },
                )
                .await?;
            let doc = SiteShowDoc {
                site: SiteDoc::of(&answer.site.unwrap_or_default()),
            };
            output::print(ctx.format(), &doc)
        }
        SiteCommand::Create(args) => create(ctx, *args).await,
    }
}

/// `kc site create`: CreateSite.
async fn create(ctx: &mut Context, args: CreateArgs) -> Result<()> {
    if args.number.trim().is_empty() || args.customer.trim().is_empty() {
        return Err(CliError::usage("--number and --customer are required"));
    }
    let person = |email: String, name: String| pb::ContactPerson {
        email,
        display_name: name,
        locale: String::new(),
        details: None::<ContactDetails>,
    };
    let request = pb::CreateSiteRequest {
        site_number: args.number.trim().to_owned(),
        customer_number: args.customer.trim().to_owned(),
        name: args.name,
        country_code: args.country,
        language: args.language,
        program: Program::from(args.program) as i32,
        support_active: args.support_active,
        support_end_date: args.support_end_date,
        business_partner_email: args.business_partner,
        primary_contact: Some(person(args.primary_email, args.primary_name)),
        site_technical_contact: args.stc_email.map(|email| person(email, args.stc_name)),
    };
    let answer = ctx
        .call(request, |mut c, r| async move { c.create_site(r).await })
        .await?;
    let doc = CreatedDoc {
        site: SiteDoc::of(&answer.site.unwrap_or_default()),
        contacts: answer.contacts.iter().map(PersonDoc::of).collect(),
        revision: answer.revision,
    };
    output::print(ctx.format(), &doc)
}
