//! `kc contacts NUMBER` and the changes to a site's contacts: assign, update, remove,
//! replace, transfer-primary.

use clap::{Args, Subcommand};
use kc_proto::contacts::{Contact, ContactDetails, ContactRole};
use kc_proto::gateway as pb;
use serde::Serialize;

use crate::client::{Context, SiteRef, time_text};
use crate::commands::docs::UserDoc;
use crate::error::{CliError, Result};
use crate::output::{self, Render, View, or_dash};
use crate::values::{self, RoleArg};

/// Examples of `kc contacts`.
pub(crate) const EXAMPLES: &str = "\
Examples:
  kc contacts 7350101
  kc contacts 7350101 --role secondary --output json
  kc contacts assign 7350101 --email ana@dupont.example --role secondary
  kc contacts transfer-primary 7350101 --to jules.bernard@dupont.example";

/// Arguments of `kc contacts`: a site to list, or a change.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub(crate) struct ContactsArgs {
    #[command(subcommand)]
    command: Option<ContactsCommand>,
    /// Site number (or site id) whose contacts to list.
    #[arg(required = true)]
    site: Option<String>,
    /// Only people holding this role (repeat for several).
    #[arg(long = "role", value_enum, value_name = "ROLE")]
    roles: Vec<RoleArg>,
}

/// Contact details given on the command line.
#[derive(Debug, Clone, Default, Args)]
struct DetailFlags {
    /// Phone number (stored in E.164 form).
    #[arg(long)]
    phone: Option<String>,
    /// Job title.
    #[arg(long)]
    job_title: Option<String>,
    /// Where the contact's notices go when not to the login e-mail (confirmed by its owner
    /// with a mailed code, C11); empty clears it.
    #[arg(long)]
    notification_email: Option<String>,
}

impl DetailFlags {
    /// The details given, the others empty; `None` when none was given.
    fn to_proto(&self) -> Option<ContactDetails> {
        if self.phone.is_none() && self.job_title.is_none() && self.notification_email.is_none() {
            return None;
        }
        Some(self.merged_into(ContactDetails::default()))
    }

    /// `current` with the details given replaced.
    fn merged_into(&self, current: ContactDetails) -> ContactDetails {
        ContactDetails {
            phone: self.phone.clone().unwrap_or(current.phone),
            job_title: self.job_title.clone().unwrap_or(current.job_title),
            notification_email: self
                .notification_email
                .clone()
                .unwrap_or(current.notification_email),
        }
    }
}

/// A person not yet known to keycontacts is invited with these.
#[derive(Debug, Clone, Default, Args)]
struct InviteFlags {
    /// Name of the person; required when the e-mail is unknown (the person is invited).
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Preferred language of an invited person (BCP-47); the site's language by default.
    #[arg(long)]
    locale: Option<String>,
}

/// Changes to a site's contacts.
#[derive(Debug, Subcommand)]
enum ContactsCommand {
    /// Give a person a role on a site (any role but primary).
    #[command(
        after_help = "Example:\n  kc contacts assign 7350101 --email ana@dupont.example --role secondary\n  kc contacts assign 7350101 --email new@dupont.example --name 'Ana Lopes' --role renewal --phone +33123456789"
    )]
    Assign {
        /// Site number (or site id).
        site: String,
        /// The person's login e-mail.
        #[arg(long)]
        email: String,
        /// The role to give.
        #[arg(long, value_enum)]
        role: RoleArg,
        #[command(flatten)]
        invite: InviteFlags,
        #[command(flatten)]
        details: DetailFlags,
    },
    /// Change the details of a person's contact (the details not given are kept).
    #[command(
        after_help = "Example:\n  kc contacts update 7350101 --email ana@dupont.example --role secondary --job-title 'IT manager'"
    )]
    Update {
        /// Site number (or site id).
        site: String,
        /// The person's login e-mail.
        #[arg(long)]
        email: String,
        /// The role whose contact changes.
        #[arg(long, value_enum)]
        role: RoleArg,
        #[command(flatten)]
        details: DetailFlags,
    },
    /// Take a role away from a person.
    #[command(
        after_help = "Example:\n  kc contacts remove 7350101 --email ana@dupont.example --role secondary"
    )]
    Remove {
        /// Site number (or site id).
        site: String,
        /// The person's login e-mail.
        #[arg(long)]
        email: String,
        /// The role to take away.
        #[arg(long, value_enum)]
        role: RoleArg,
    },
    /// Give a single-holder role (administrative, site-technical, renewal, shipping,
    /// billing) to another person.
    #[command(
        after_help = "Example:\n  kc contacts replace 7350101 --role renewal --email paul.durand@dupont.example"
    )]
    Replace {
        /// Site number (or site id).
        site: String,
        /// The role.
        #[arg(long, value_enum)]
        role: RoleArg,
        /// The new holder's login e-mail.
        #[arg(long)]
        email: String,
        #[command(flatten)]
        invite: InviteFlags,
        #[command(flatten)]
        details: DetailFlags,
    },
    /// Make another person the primary contact (C8).
    #[command(
        after_help = "Example:\n  kc contacts transfer-primary 7350101 --to jules.bernard@dupont.example --keep-role secondary"
    )]
    TransferPrimary {
        /// Site number (or site id).
        site: String,
        /// The new primary contact's login e-mail.
        #[arg(long, value_name = "EMAIL")]
        to: String,
        /// The role the old primary keeps; site-user by default.
        #[arg(long, value_enum, value_name = "ROLE")]
        keep_role: Option<RoleArg>,
        #[command(flatten)]
        invite: InviteFlags,
    },
}

/// One role of a person, as printed.
#[derive(Debug, Serialize)]
pub(crate) struct RoleEntryDoc {
    contact_id: String,
    role: String,
    phone: String,
    job_title: String,
    notification_email: String,
    etag: String,
}

/// One person among a site's contacts, as printed.
#[derive(Debug, Serialize)]
pub(crate) struct PersonDoc {
    user_id: String,
    pub(crate) display_name: String,
    pub(crate) email: String,
    notification_email: String,
    pub(crate) roles: Vec<String>,
    phone: String,
    job_title: String,
    user_state: String,
    contacts: Vec<RoleEntryDoc>,
}

impl PersonDoc {
    pub(crate) fn of(view: &pb::ContactView) -> Self {
        Self {
            user_id: view.user_id.clone(),
            display_name: view.display_name.clone(),
            email: view.email.clone(),
            notification_email: view.notification_email.clone(),
            roles: values::roles(&view.roles),
            phone: view.phone.clone(),
            job_title: view.job_title.clone(),
            user_state: values::user_state(view.user_state),
            contacts: view
                .contacts
                .iter()
                .map(|entry| {
                    let details = entry.details.clone().unwrap_or_default();
                    RoleEntryDoc {
                        contact_id: entry.contact_id.clone(),
                        role: values::role(entry.role),
                        phone: details.phone,
                        job_title: details.job_title,
                        notification_email: details.notification_email,
                        etag: entry.etag.clone(),
                    }
                })
                .collect(),
        }
    }
}

/// What `kc contacts NUMBER` prints.
#[derive(Debug, Serialize)]
struct ContactsDoc {
    site_id: String,
    site_number: String,
    contacts: Vec<PersonDoc>,
}

impl Render for ContactsDoc {
    fn view(&self) -> View {
        View::table(
            vec![
                "NAME",
                "EMAIL",
                "ROLES",
                "PHONE",
                "JOB TITLE",
                "NOTICES TO",
                "STATE",
            ],
            self.contacts
                .iter()
                .map(|p| {
                    vec![
                        p.display_name.clone(),
                        p.email.clone(),
                        p.roles.join(","),
                        or_dash(&p.phone),
                        or_dash(&p.job_title),
                        or_dash(&p.notification_email),
                        p.user_state.clone(),
                    ]
                })
                .collect(),
        )
    }
}

/// One contact (one role of one person) as printed after a change.
#[derive(Debug, Serialize)]
struct ContactDoc {
    contact_id: String,
    site_id: String,
    user_id: String,
    role: String,
    phone: String,
    job_title: String,
    notification_email: String,
    pending_notification_email: String,
    create_time: String,
    update_time: String,
    etag: String,
}

impl ContactDoc {
    fn of(contact: &Contact) -> Self {
        let details = contact.details.clone().unwrap_or_default();
        Self {
            contact_id: contact.contact_id.clone(),
            site_id: contact.site_id.clone(),
            user_id: contact.user_id.clone(),
            role: values::role(contact.role),
            phone: details.phone,
            job_title: details.job_title,
            notification_email: details.notification_email,
            pending_notification_email: contact.pending_notification_email.clone(),
            create_time: time_text(contact.create_time.as_ref()),
            update_time: time_text(contact.update_time.as_ref()),
            etag: contact.etag.clone(),
        }
    }
}

/// What a change prints: the contact concerned and what else the gateway answered.
#[derive(Debug, Serialize)]
struct ChangeDoc {
    /// `assigned`, `updated`, `removed`, `replaced`, `primary_transferred`.
    action: &'static str,
    site_id: String,
    site_number: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    contact: Option<ContactDoc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    replaced: Option<ContactDoc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    previous_primary: Option<ContactDoc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<UserDoc>,
    user_invited: bool,
    revision: String,
    /// The sentence the table format prints.
    #[serde(skip)]
    summary: String,
}

impl Render for ChangeDoc {
    fn view(&self) -> View {
        View::Text(self.summary.clone())
    }
}

/// `kc contacts …`.
pub(crate) async fn run(ctx: &mut Context, args: ContactsArgs) -> Result<()> {
    match args.command {
        None => {
            let site = args
                .site
                .ok_or_else(|| CliError::usage("give a site number: kc contacts NUMBER"))?;
            let site = ctx.site(&site).await?;
            let roles: Vec<i32> = args.roles.into_iter().map(i32::from).collect();
            let people = all_contacts(ctx, &site, roles).await?;
            let doc = ContactsDoc {
                site_id: site.site_id,
                site_number: site.site_number,
                contacts: people.iter().map(PersonDoc::of).collect(),
            };
            output::print(ctx.format(), &doc)
        }
        Some(command) => {
            let doc = change(ctx, command).await?;
            output::print(ctx.format(), &doc)
        }
    }
}

/// Every person among the contacts of `site` holding one of `roles` (all when empty), every
/// page of ShowAllContacts (which pages people by user id), shown by highest role (PRIMARY
/// first) then by when it got that role (contact ids are time-ordered).
async fn all_contacts(
    ctx: &mut Context,
    site: &SiteRef,
    roles: Vec<i32>,
) -> Result<Vec<pb::ContactView>> {
    let mut people = Vec::new();
    let mut page_token = String::new();
    loop {
        let request = pb::ShowAllContactsRequest {
            site_id: site.site_id.clone(),
            roles: roles.clone(),
            page_size: 1000,
            page_token: page_token.clone(),
        };
        let page = ctx
            .call(
                request,
                |mut c, r| async move { c.show_all_contacts(r).await },
            )
            .await?;
        people.extend(page.contacts);
        if page.next_page_token.is_empty() {
            people.sort_by_cached_key(|person| {
                person
                    .contacts
                    .first()
                    .map(|highest| (highest.role, highest.contact_id.clone()))
            });
            return Ok(people);
        }
        page_token = page.next_page_token;
    }
}

/// The contact of `email` in `role` on `site` (its id, etag and details).
async fn find_contact(
    ctx: &mut Context,
    site: &SiteRef,
    email: &str,
    role: RoleArg,
) -> Result<pb::ContactRoleEntry> {
    let role = ContactRole::from(role) as i32;
    let people = all_contacts(ctx, site, vec![role]).await?;
    people
        .into_iter()
        .filter(|p| p.email.eq_ignore_ascii_case(email.trim()))
        .flat_map(|p| p.contacts)
        .find(|entry| entry.role == role)
        .ok_or_else(|| {
            CliError::not_found(format!(
                "{} is not {} contact of site {}",
                email.trim(),
                values::role(role),
                site_label(site)
            ))
        })
}

fn site_label(site: &SiteRef) -> &str {
    if site.site_number.is_empty() {
        &site.site_id
    } else {
        &site.site_number
    }
}

fn base(action: &'static str, site: &SiteRef, summary: String) -> ChangeDoc {
    ChangeDoc {
        action,
        site_id: site.site_id.clone(),
        site_number: site.site_number.clone(),
        contact: None,
        replaced: None,
        previous_primary: None,
        user: None,
        user_invited: false,
        revision: String::new(),
        summary,
    }
}

async fn change(ctx: &mut Context, command: ContactsCommand) -> Result<ChangeDoc> {
    match command {
        ContactsCommand::Assign {
            site,
            email,
            role,
            invite,
            details,
        } => {
            let site = ctx.site(&site).await?;
            let request = pb::AssignContactRequest {
                site_id: site.site_id.clone(),
                email: email.clone(),
                display_name: invite.name,
                role: ContactRole::from(role) as i32,
                details: details.to_proto(),
                locale: invite.locale.unwrap_or_default(),
            };
            let answer = ctx
                .call(request, |mut c, r| async move { c.assign_contact(r).await })
                .await?;
            let invited = if answer.user_invited {
                " (invited)"
            } else {
                ""
            };
            let summary = format!(
                "{} is now {} contact of site {}{invited}",
                email.trim(),
                values::role(ContactRole::from(role) as i32),
                site_label(&site)
            );
            Ok(ChangeDoc {
                contact: answer.contact.as_ref().map(ContactDoc::of),
                user: answer.user.as_ref().map(UserDoc::of),
                user_invited: answer.user_invited,
                revision: answer.revision,
                ..base("assigned", &site, summary)
            })
        }
        ContactsCommand::Update {
            site,
            email,
            role,
            details,
        } => {
            let site = ctx.site(&site).await?;
            let entry = find_contact(ctx, &site, &email, role).await?;
            let request = pb::UpdateContactRequest {
                site_id: site.site_id.clone(),
                contact_id: entry.contact_id.clone(),
                details: Some(details.merged_into(entry.details.unwrap_or_default())),
                etag: entry.etag,
            };
            let answer = ctx
                .call(request, |mut c, r| async move { c.update_contact(r).await })
                .await?;
            let summary = format!(
                "updated the {} contact {} of site {}",
                values::role(ContactRole::from(role) as i32),
                email.trim(),
                site_label(&site)
            );
            Ok(ChangeDoc {
                contact: answer.contact.as_ref().map(ContactDoc::of),
                ..base("updated", &site, summary)
            })
        }
        ContactsCommand::Remove { site, email, role } => {
            let site = ctx.site(&site).await?;
            let entry = find_contact(ctx, &site, &email, role).await?;
            let request = pb::RemoveContactRequest {
                site_id: site.site_id.clone(),
                contact_id: entry.contact_id,
                etag: entry.etag,
            };
            let answer = ctx
                .call(request, |mut c, r| async move { c.remove_contact(r).await })
                .await?;
            let summary = format!(
                "{} is no longer {} contact of site {}",
                email.trim(),
                values::role(ContactRole::from(role) as i32),
                site_label(&site)
            );
            Ok(ChangeDoc {
                contact: answer.contact.as_ref().map(ContactDoc::of),
                revision: answer.revision,
                ..base("removed", &site, summary)
            })
        }
        ContactsCommand::Replace {
            site,
            role,
            email,
            invite,
            details,
        } => {
            let site = ctx.site(&site).await?;
            let request = pb::ReplaceContactRequest {
                site_id: site.site_id.clone(),
                role: ContactRole::from(role) as i32,
                email: email.clone(),
                display_name: invite.name,
                details: details.to_proto(),
                locale: invite.locale.unwrap_or_default(),
            };
            let answer = ctx
                .call(
                    request,
                    |mut c, r| async move { c.replace_contact(r).await },
                )
                .await?;
            let summary = format!(
                "{} is now the {} contact of site {}",
                email.trim(),
                values::role(ContactRole::from(role) as i32),
                site_label(&site)
            );
            Ok(ChangeDoc {
                contact: answer.contact.as_ref().map(ContactDoc::of),
                replaced: answer.replaced.as_ref().map(ContactDoc::of),
                user: answer.user.as_ref().map(UserDoc::of),
                user_invited: answer.user_invited,
                revision: answer.revision,
                ..base("replaced", &site, summary)
            })
        }
        ContactsCommand::TransferPrimary {
            site,
            to,
            keep_role,
            invite,
        } => {
            let site = ctx.site(&site).await?;
            let request = pb::TransferPrimaryContactRequest {
                site_id: site.site_id.clone(),
                email: to.clone(),
                display_name: invite.name,
                etag: String::new(),
                previous_primary_role: keep_role
                    .map(|r| ContactRole::from(r) as i32)
                    .unwrap_or_default(),
                locale: invite.locale.unwrap_or_default(),
            };
            let answer = ctx
                .call(request, |mut c, r| async move {
                    c.transfer_primary_contact(r).await
                })
                .await?;
            let summary = format!(
                "{} is now the primary contact of site {}",
                to.trim(),
                site_label(&site)
            );
            Ok(ChangeDoc {
                contact: answer.primary.as_ref().map(ContactDoc::of),
                previous_primary: answer.previous_primary.as_ref().map(ContactDoc::of),
                revision: answer.revision,
                ..base("primary_transferred", &site, summary)
            })
        }
    }
}
