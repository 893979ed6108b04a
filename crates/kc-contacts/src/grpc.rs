//! The gRPC face of the registry: turns requests into domain values, checks the caller is a
//! service or an operator, calls the domain, and turns results back. No SQL, no rules.

use kc_proto::contacts::{self as pb, contact_registry_service_server::ContactRegistryService};
use kc_runtime::audit;
use kc_runtime::auth::caller;
use kc_runtime::grpc::{
    await_revision, bad_page_token, checked, decode_single_key, finish, id, invalid,
    next_page_token, page_size_or_status, status, watch_events,
};
use kc_runtime::outbox::{self, EventStream, OutboxWatcher};
use kc_runtime::paging::{decode_token, page_size};
use kc_runtime::values::timestamp;
use kc_runtime::{ApiError, Shutdown, Violation, Violations};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::domain::recipients::{ComplianceGap, NoticePurpose};
use crate::domain::registry::{Actor, SiteDraft, SitePatch, actor};
use crate::domain::values::{
    CountryCode, CustomerNumber, Etag, Locale, MAX_JOB_TITLE_CHARS, MAX_SITE_NAME_CHARS,
    SiteNumber, optional_date, optional_email, optional_phone, optional_text, parse_id,
    required_text,
};
use crate::domain::{Contact, ContactDetails, ContactRole, ContactsError, Program, Registry, Site};
use crate::projection;
use crate::storage::sites::SiteComplianceRow;
use kc_runtime::outbox::{Revised, revision_text};

/// Default and largest page sizes of the site and audit lists.
const SITES_PAGE: (u32, u32) = (100, 1000);
/// Default and largest page sizes of the contact lists ("show all contacts" in one page).
const CONTACTS_PAGE: (u32, u32) = (1000, 1000);

/// The `ContactRegistryService` implementation.
#[derive(Clone, Debug)]
pub struct ContactsApi {
    registry: Registry,
    watcher: OutboxWatcher,
    shutdown: Shutdown,
    /// Whether the registry follows access management's grants (`--access-url`, T8).
    follows_access: bool,
}

impl ContactsApi {
    /// The API over `registry`, streaming events from `watcher` until `shutdown`;
    /// `follows_access` says whether the projection of access grants is kept (T8).
    pub fn new(
        registry: Registry,
        watcher: OutboxWatcher,
        shutdown: Shutdown,
        follows_access: bool,
    ) -> Self {
        Self {
            registry,
            watcher,
            shutdown,
            follows_access,
        }
    }
}

/// The actor of a request: services and operators only.
fn request_actor<T>(request: &Request<T>) -> Result<Actor, Status> {
    actor(&caller(request)?).map_err(status)
}

/// An id that may be left empty (`None`), e.g. the `site_id` that scopes a contact change.
fn optional_id(field: &str, text: &str) -> Result<Option<Uuid>, Violation> {
    if text.is_empty() {
        Ok(None)
    } else {
        parse_id(field, text).map(Some)
    }
}

fn program_to_proto(program: Program) -> pb::Program {
    match program {
        Program::PassportAdvantage => pb::Program::PassportAdvantage,
        Program::PassportAdvantageExpress => pb::Program::PassportAdvantageExpress,
    }
}

fn program_from_proto(value: i32) -> Result<Program, Violation> {
    match pb::Program::try_from(value) {
        Ok(pb::Program::PassportAdvantage) => Ok(Program::PassportAdvantage),
        Ok(pb::Program::PassportAdvantageExpress) => Ok(Program::PassportAdvantageExpress),
        _ => Err(Violation::new(
            "program",
            "must be PROGRAM_PASSPORT_ADVANTAGE or PROGRAM_PASSPORT_ADVANTAGE_EXPRESS",
        )),
    }
}

/// The domain role of a proto role number.
pub fn role_from_proto(field: &str, value: i32) -> Result<ContactRole, Violation> {
    ContactRole::from_number(value).ok_or_else(|| {
        Violation::new(
            field,
            "must be a CONTACT_ROLE_* value other than UNSPECIFIED",
        )
    })
}

fn purpose_from_proto(value: i32) -> Result<NoticePurpose, Violation> {
    use pb::NoticePurpose as P;
    match P::try_from(value) {
        Ok(P::Contractual) => Ok(NoticePurpose::Contractual),
        Ok(P::Renewal) => Ok(NoticePurpose::Renewal),
        Ok(P::UpdateAvailable) => Ok(NoticePurpose::UpdateAvailable),
        Ok(P::ProofOfEntitlement) => Ok(NoticePurpose::ProofOfEntitlement),
        Ok(P::Shipping) => Ok(NoticePurpose::Shipping),
        Ok(P::Billing) => Ok(NoticePurpose::Billing),
        Ok(P::Technical) => Ok(NoticePurpose::Technical),
        _ => Err(Violation::new(
            "purpose",
            "must be a NOTICE_PURPOSE_* value other than UNSPECIFIED",
        )),
    }
}

/// The published form of a site.
pub fn site_to_proto(site: &Site) -> pb::Site {
    pb::Site {
        site_id: site.site_id.to_string(),
        site_number: site.site_number.clone(),
        customer_number: site.customer_number.clone(),
        name: site.name.clone(),
        country_code: site.country_code.clone(),
        language: site.language.clone(),
        program: program_to_proto(site.program) as i32,
        support_active: site.support_active,
        support_end_date: site
            .support_end_date
            .map(|date| date.format("%Y-%m-%d").to_string())
            .unwrap_or_default(),
        business_partner_email: site.business_partner_email.clone().unwrap_or_default(),
        admin_may_manage_access: site.admin_may_manage_access,
        is_original_site: site.is_original_site,
        primary_user_id: site.primary_user_id.to_string(),
        create_time: Some(timestamp(site.create_time)),
        update_time: Some(timestamp(site.update_time)),
        etag: site.etag(),
    }
}

/// The published form of a contact.
pub fn contact_to_proto(contact: &Contact) -> pb::Contact {
    pb::Contact {
        contact_id: contact.contact_id.to_string(),
        site_id: contact.site_id.to_string(),
        user_id: contact.user_id.to_string(),
        role: i32::from(contact.role.number()),
        details: Some(pb::ContactDetails {
            phone: contact.details.phone.clone().unwrap_or_default(),
            job_title: contact.details.job_title.clone().unwrap_or_default(),
            notification_email: contact
                .details
                .notification_email
                .clone()
                .unwrap_or_default(),
        }),
        create_time: Some(timestamp(contact.create_time)),
        update_time: Some(timestamp(contact.update_time)),
        etag: contact.etag(),
        pending_notification_email: contact
            .pending_notification_email
            .clone()
            .unwrap_or_default(),
        pending_notification_email_expire_time: contact.pending_expire_time.map(timestamp),
    }
}

/// Parses contact details; field paths start with `prefix` (e.g. `details`).
fn details(
    violations: &mut Violations,
    prefix: &str,
    details: Option<&pb::ContactDetails>,
) -> Option<ContactDetails> {
    let default = pb::ContactDetails::default();
    let details = details.unwrap_or(&default);
    let phone = violations.check(optional_phone(&format!("{prefix}.phone"), &details.phone));
    let job_title = violations.check(optional_text(
        &format!("{prefix}.job_title"),
        &details.job_title,
        MAX_JOB_TITLE_CHARS,
    ));
    let notification_email = violations.check(optional_email(
        &format!("{prefix}.notification_email"),
        &details.notification_email,
    ));
    Some(ContactDetails {
        phone: phone?,
        job_title: job_title?,
        notification_email: notification_email?,
    })
}

fn compliance_to_proto(row: &SiteComplianceRow) -> pb::SiteCompliance {
    pb::SiteCompliance {
        site_id: row.site_id.to_string(),
        site_number: row.site_number.clone(),
        gaps: row
            .facts
            .gaps()
            .into_iter()
            .map(|gap| pb::ComplianceGap {
                kind: match gap {
                    ComplianceGap::SupportWithoutSiteTechnical => {
                        pb::ComplianceGapKind::SupportWithoutSiteTechnical
                    }
                    ComplianceGap::NoRenewalContact => pb::ComplianceGapKind::NoRenewalContact,
                    ComplianceGap::PrimaryOnlyContact => pb::ComplianceGapKind::PrimaryOnlyContact,
                } as i32,
                description: gap.description().to_owned(),
            })
            .collect(),
    }
}

#[tonic::async_trait]
impl ContactRegistryService for ContactsApi {
    async fn create_site(
        &self,
        request: Request<pb::CreateSiteRequest>,
    ) -> Result<Response<pb::CreateSiteResponse>, Status> {
        let actor = request_actor(&request)?;
        let r = request.into_inner();
        let mut v = Violations::new();
        let site_number = v.check(SiteNumber::parse("site_number", &r.site_number));
        let customer_number = v.check(CustomerNumber::parse("customer_number", &r.customer_number));
        let name = v.check(required_text("name", &r.name, MAX_SITE_NAME_CHARS));
        let country_code = v.check(CountryCode::parse("country_code", &r.country_code));
        let language = v.check(Locale::parse_or_default("language", &r.language));
        let program = v.check(program_from_proto(r.program));
        let support_end_date = v.check(optional_date("support_end_date", &r.support_end_date));
        let business_partner_email = v.check(optional_email(
            "business_partner_email",
            &r.business_partner_email,
        ));
        let primary_user_id = v.check(parse_id("primary_user_id", &r.primary_user_id));
        let site_technical_user_id = if r.site_technical_user_id.trim().is_empty() {
            if r.support_active {
                // rule C5: a site with active S&S must have an STC from the start.
                v.add(
                    "site_technical_user_id",
                    "rule C5: a site with active S&S must have a site technical contact",
                );
            }
            Some(None)
        } else {
            v.check(parse_id(
                "site_technical_user_id",
                &r.site_technical_user_id,
            ))
            .map(Some)
        };
        let primary_details = details(&mut v, "primary_details", r.primary_details.as_ref());
        let site_technical_details = details(
            &mut v,
            "site_technical_details",
            r.site_technical_details.as_ref(),
        );
        if r.site_technical_user_id.trim().is_empty()
            && site_technical_details
                .as_ref()
                .is_some_and(|details| *details != ContactDetails::default())
        {
            v.add(
                "site_technical_details",
                "given without site_technical_user_id: name the site technical contact",
            );
        }
        finish(v)?;
        let draft = SiteDraft {
            site_number: checked(site_number)?,
            customer_number: checked(customer_number)?,
            name: checked(name)?,
            country_code: checked(country_code)?,
            language: checked(language)?,
            program: checked(program)?,
            support_active: r.support_active,
            support_end_date: checked(support_end_date)?,
            business_partner_email: checked(business_partner_email)?,
            primary_user_id: checked(primary_user_id)?,
            primary_details: checked(primary_details)?,
            site_technical_user_id: checked(site_technical_user_id)?,
            site_technical_details: checked(site_technical_details)?,
        };
        let Revised {
            value: (site, contacts),
            revision,
        } = self
            .registry
            .create_site(actor, draft)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::CreateSiteResponse {
            site: Some(site_to_proto(&site)),
            contacts: contacts.iter().map(contact_to_proto).collect(),
            revision: revision_text(revision),
        }))
    }

    async fn get_site(
        &self,
        request: Request<pb::GetSiteRequest>,
    ) -> Result<Response<pb::GetSiteResponse>, Status> {
        request_actor(&request)?;
        let site_id = id("site_id", &request.get_ref().site_id)?;
        let site = self.registry.get_site(site_id).await.map_err(status)?;
        Ok(Response::new(pb::GetSiteResponse {
            site: Some(site_to_proto(&site)),
        }))
    }

    async fn lookup_site(
        &self,
        request: Request<pb::LookupSiteRequest>,
    ) -> Result<Response<pb::LookupSiteResponse>, Status> {
        request_actor(&request)?;
        let number =
            SiteNumber::parse("site_number", &request.get_ref().site_number).map_err(invalid)?;
        let site = self.registry.lookup_site(&number).await.map_err(status)?;
        Ok(Response::new(pb::LookupSiteResponse {
            site: Some(site_to_proto(&site)),
        }))
    }

    async fn list_sites(
        &self,
        request: Request<pb::ListSitesRequest>,
    ) -> Result<Response<pb::ListSitesResponse>, Status> {
        request_actor(&request)?;
        let r = request.into_inner();
        let mut v = Violations::new();
        let customer = if r.customer_number.trim().is_empty() {
            Some(None)
        } else {
            v.check(CustomerNumber::parse("customer_number", &r.customer_number))
                .map(Some)
        };
        let size = v.check(page_size(r.page_size, SITES_PAGE.0, SITES_PAGE.1));
        let after = v.check(decode_token(&r.page_token, 1));
        finish(v)?;
        let after = checked(after)?.and_then(|mut key| key.pop());
        let page = self
            .registry
            .list_sites(
                checked(customer)?.as_ref(),
                after.as_deref(),
                checked(size)?,
            )
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ListSitesResponse {
            next_page_token: next_page_token(&page, |site| vec![site.site_number.clone()]),
            sites: page.items.iter().map(site_to_proto).collect(),
        }))
    }

    async fn update_site(
        &self,
        request: Request<pb::UpdateSiteRequest>,
    ) -> Result<Response<pb::UpdateSiteResponse>, Status> {
        let actor = request_actor(&request)?;
        let r = request.into_inner();
        let site = r
            .site
            .ok_or_else(|| status(ApiError::invalid("site", "site is required")))?;
        let paths = r.update_mask.map(|mask| mask.paths).unwrap_or_default();
        let mut v = Violations::new();
        let site_id = v.check(parse_id("site.site_id", &site.site_id));
        if paths.is_empty() {
            v.add("update_mask", "name at least one field to change");
        }
        let mut patch = SitePatch::default();
        for path in &paths {
            match path.as_str() {
                "name" => {
                    patch.name =
                        v.check(required_text("site.name", &site.name, MAX_SITE_NAME_CHARS))
                }
                "language" => {
                    patch.language = v.check(Locale::parse("site.language", &site.language))
                }
                "support_active" => patch.support_active = Some(site.support_active),
                "support_end_date" => {
                    patch.support_end_date = v.check(optional_date(
                        "site.support_end_date",
                        &site.support_end_date,
                    ))
                }
                "business_partner_email" => {
                    patch.business_partner_email = v.check(optional_email(
                        "site.business_partner_email",
                        &site.business_partner_email,
                    ))
                }
                "admin_may_manage_access" => {
                    patch.admin_may_manage_access = Some(site.admin_may_manage_access)
                }
                other => v.add(
                    "update_mask",
                    format!(
                        "`{other}` cannot be changed; use name, language, support_active, \
                         support_end_date, business_partner_email or admin_may_manage_access"
                    ),
                ),
            }
        }
        finish(v)?;
        let etag = Etag::parse("etag", &r.etag).map_err(status)?;
        let Revised {
            value: site,
            revision,
        } = self
            .registry
            .update_site(actor, checked(site_id)?, patch, etag.version())
            .await
            .map_err(status)?;
        Ok(Response::new(pb::UpdateSiteResponse {
            site: Some(site_to_proto(&site)),
            revision: revision_text(revision),
        }))
    }

    async fn assign_contact(
        &self,
        request: Request<pb::AssignContactRequest>,
    ) -> Result<Response<pb::AssignContactResponse>, Status> {
        let actor = request_actor(&request)?;
        let r = request.into_inner();
        let mut v = Violations::new();
        let site_id = v.check(parse_id("site_id", &r.site_id));
        let user_id = v.check(parse_id("user_id", &r.user_id));
        let role = v.check(role_from_proto("role", r.role));
        let details = details(&mut v, "details", r.details.as_ref());
        finish(v)?;
        let Revised {
            value: contact,
            revision,
        } = self
            .registry
            .assign_contact(
                actor,
                checked(site_id)?,
                checked(user_id)?,
                checked(role)?,
                checked(details)?,
            )
            .await
            .map_err(status)?;
        Ok(Response::new(pb::AssignContactResponse {
            contact: Some(contact_to_proto(&contact)),
            revision: revision_text(revision),
        }))
    }

    async fn update_contact(
        &self,
        request: Request<pb::UpdateContactRequest>,
    ) -> Result<Response<pb::UpdateContactResponse>, Status> {
        let actor = request_actor(&request)?;
        let r = request.into_inner();
        let mut v = Violations::new();
        let contact_id = v.check(parse_id("contact_id", &r.contact_id));
        let in_site = v.check(optional_id("site_id", &r.site_id));
        let details = details(&mut v, "details", r.details.as_ref());
        finish(v)?;
        let etag = Etag::parse("etag", &r.etag).map_err(status)?;
        let contact = self
            .registry
            .update_contact(
                actor,
                checked(contact_id)?,
                checked(in_site)?,
                checked(details)?,
                etag.version(),
            )
            .await
            .map_err(status)?;
        Ok(Response::new(pb::UpdateContactResponse {
            contact: Some(contact_to_proto(&contact)),
        }))
    }

    async fn remove_contact(
        &self,
        request: Request<pb::RemoveContactRequest>,
    ) -> Result<Response<pb::RemoveContactResponse>, Status> {
        let actor = request_actor(&request)?;
        let r = request.into_inner();
        let mut v = Violations::new();
        let contact_id = v.check(parse_id("contact_id", &r.contact_id));
        let in_site = v.check(optional_id("site_id", &r.site_id));
        finish(v)?;
        let etag = Etag::parse("etag", &r.etag).map_err(status)?;
        let Revised {
            value: contact,
            revision,
        } = self
            .registry
            .remove_contact(
                actor,
                checked(contact_id)?,
                checked(in_site)?,
                etag.version(),
            )
            .await
            .map_err(status)?;
        Ok(Response::new(pb::RemoveContactResponse {
            contact: Some(contact_to_proto(&contact)),
            revision: revision_text(revision),
        }))
    }

    async fn replace_contact(
        &self,
        request: Request<pb::ReplaceContactRequest>,
    ) -> Result<Response<pb::ReplaceContactResponse>, Status> {
        let actor = request_actor(&request)?;
        let r = request.into_inner();
        let mut v = Violations::new();
        let site_id = v.check(parse_id("site_id", &r.site_id));
        let role = v.check(role_from_proto("role", r.role));
        let new_user_id = v.check(parse_id("new_user_id", &r.new_user_id));
        let details = details(&mut v, "details", r.details.as_ref());
        finish(v)?;
        let Revised {
            value: (contact, replaced),
            revision,
        } = self
            .registry
            .replace_contact(
                actor,
                checked(site_id)?,
                checked(role)?,
                checked(new_user_id)?,
                checked(details)?,
            )
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ReplaceContactResponse {
            contact: Some(contact_to_proto(&contact)),
            replaced: replaced.as_ref().map(contact_to_proto),
            revision: revision_text(revision),
        }))
    }

    async fn transfer_primary_contact(
        &self,
        request: Request<pb::TransferPrimaryContactRequest>,
    ) -> Result<Response<pb::TransferPrimaryContactResponse>, Status> {
        let actor = request_actor(&request)?;
        let r = request.into_inner();
        let mut v = Violations::new();
        let site_id = v.check(parse_id("site_id", &r.site_id));
        let new_user_id = v.check(parse_id("new_user_id", &r.new_user_id));
        let previous_role = if r.previous_primary_role == 0 {
            Some(ContactRole::SiteUser)
        } else {
            v.check(role_from_proto(
                "previous_primary_role",
                r.previous_primary_role,
            ))
        };
        finish(v)?;
        let etag = Etag::parse("etag", &r.etag).map_err(status)?;
        let Revised {
            value: (site, primary, previous),
            revision,
        } = self
            .registry
            .transfer_primary(
                actor,
                checked(site_id)?,
                checked(new_user_id)?,
                checked(previous_role)?,
                etag.version(),
            )
            .await
            .map_err(status)?;
        Ok(Response::new(pb::TransferPrimaryContactResponse {
            site: Some(site_to_proto(&site)),
            primary: Some(contact_to_proto(&primary)),
            previous_primary: previous.as_ref().map(contact_to_proto),
            revision: revision_text(revision),
        }))
    }

    async fn list_site_contacts(
        &self,
        request: Request<pb::ListSiteContactsRequest>,
    ) -> Result<Response<pb::ListSiteContactsResponse>, Status> {
        request_actor(&request)?;
        let r = request.into_inner();
        let mut v = Violations::new();
        let site_id = v.check(parse_id("site_id", &r.site_id));
        let roles: Vec<ContactRole> = r
            .roles
            .iter()
            .filter_map(|role| v.check(role_from_proto("roles", *role)))
            .collect();
        let size = v.check(page_size(r.page_size, CONTACTS_PAGE.0, CONTACTS_PAGE.1));
        let after = v.check(decode_token(&r.page_token, 2));
        finish(v)?;
        let after = match checked(after)? {
            None => None,
            Some(key) => {
                let role = key[0]
                    .parse()
                    .ok()
                    .and_then(ContactRole::from_number)
                    .ok_or_else(bad_page_token)?;
                let contact_id = Uuid::parse_str(&key[1]).map_err(|_| bad_page_token())?;
                Some((role, contact_id))
            }
        };
        let page = self
            .registry
            .list_site_contacts(checked(site_id)?, &roles, after, checked(size)?)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ListSiteContactsResponse {
            next_page_token: next_page_token(&page, |c| {
                vec![c.role.number().to_string(), c.contact_id.to_string()]
            }),
            contacts: page.items.iter().map(contact_to_proto).collect(),
        }))
    }

    async fn list_user_contacts(
        &self,
        request: Request<pb::ListUserContactsRequest>,
    ) -> Result<Response<pb::ListUserContactsResponse>, Status> {
        request_actor(&request)?;
        let r = request.into_inner();
        let user_id = id("user_id", &r.user_id)?;
        let size = page_size_or_status(r.page_size, CONTACTS_PAGE)?;
        let after = decode_single_key(&r.page_token, |key| Uuid::parse_str(key).ok())?;
        let page = self
            .registry
            .list_user_contacts(user_id, after, size)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ListUserContactsResponse {
            next_page_token: next_page_token(&page, |(c, _)| vec![c.contact_id.to_string()]),
            contacts: page
                .items
                .iter()
                .map(|(contact, site)| pb::UserContact {
                    contact: Some(contact_to_proto(contact)),
                    site: Some(site_to_proto(site)),
                })
                .collect(),
        }))
    }

    async fn resolve_recipients(
        &self,
        request: Request<pb::ResolveRecipientsRequest>,
    ) -> Result<Response<pb::ResolveRecipientsResponse>, Status> {
        request_actor(&request)?;
        let r = request.into_inner();
        let mut v = Violations::new();
        let site_id = v.check(parse_id("site_id", &r.site_id));
        let purpose = v.check(purpose_from_proto(r.purpose));
        finish(v)?;
        let (site, resolution) = self
            .registry
            .resolve_recipients(checked(site_id)?, checked(purpose)?)
            .await
            .map_err(status)?;
        let (business_partner_email, business_partner_rule) =
            resolution.business_partner.unwrap_or_default();
        Ok(Response::new(pb::ResolveRecipientsResponse {
            recipients: resolution
                .recipients
                .iter()
                .map(|recipient| pb::Recipient {
                    user_id: recipient.contact.user_id.to_string(),
                    contact_id: recipient.contact.contact_id.to_string(),
                    role: i32::from(recipient.contact.role.number()),
                    notification_email: recipient
                        .contact
                        .details
                        .notification_email
                        .clone()
                        .unwrap_or_default(),
                    rule: recipient.rule.clone(),
                })
                .collect(),
            business_partner_email,
            business_partner_rule,
            site_language: site.language,
        }))
    }

    async fn get_site_compliance(
        &self,
        request: Request<pb::GetSiteComplianceRequest>,
    ) -> Result<Response<pb::GetSiteComplianceResponse>, Status> {
        request_actor(&request)?;
        let site_id = id("site_id", &request.get_ref().site_id)?;
        let row = self
            .registry
            .site_compliance(site_id)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::GetSiteComplianceResponse {
            compliance: Some(compliance_to_proto(&row)),
        }))
    }

    async fn list_compliance_gaps(
        &self,
        request: Request<pb::ListComplianceGapsRequest>,
    ) -> Result<Response<pb::ListComplianceGapsResponse>, Status> {
        request_actor(&request)?;
        let r = request.into_inner();
        let size = page_size_or_status(r.page_size, SITES_PAGE)?;
        let after = decode_single_key(&r.page_token, |key| Uuid::parse_str(key).ok())?;
        let page = self
            .registry
            .list_compliance_gaps(after, size)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ListComplianceGapsResponse {
            next_page_token: next_page_token(&page, |row| vec![row.site_id.to_string()]),
            sites: page.items.iter().map(compliance_to_proto).collect(),
        }))
    }

    async fn list_audit_records(
        &self,
        request: Request<pb::ListAuditRecordsRequest>,
    ) -> Result<Response<pb::ListAuditRecordsResponse>, Status> {
        request_actor(&request)?;
        let r = request.into_inner();
        let list = |site_id, before, size| async move {
            let page = self
                .registry
                .list_audit_records(site_id, before, size)
                .await;
            page.map_err(status)
        };
        let (records, next_page_token) =
            audit::list_records(&r.site_id, r.page_size, &r.page_token, list).await?;
        Ok(Response::new(pb::ListAuditRecordsResponse {
            records,
            next_page_token,
        }))
    }

    async fn confirm_notification_email(
        &self,
        request: Request<pb::ConfirmNotificationEmailRequest>,
    ) -> Result<Response<pb::ConfirmNotificationEmailResponse>, Status> {
        let caller = caller(&request)?;
        let actor = actor(&caller).map_err(status)?;
        // rule C11: only the contact's own user confirms its notification e-mail.
        let owner = if caller.is_service() {
            caller.on_behalf_of.ok_or_else(|| {
                status(ContactsError::Forbidden(
                    "rule C11: only the contact's own user confirms its notification e-mail; name that user in x-kc-on-behalf-of",
                ))
            })?
        } else {
            caller.subject
        };
        let r = request.into_inner();
        let mut v = Violations::new();
        if r.code.trim().is_empty() {
            v.add(
                "code",
                "required: the code mailed to the notification e-mail",
            );
        }
        let site_id = v.check(optional_id("site_id", &r.site_id));
        let contact_id = v.check(optional_id("contact_id", &r.contact_id));
        finish(v)?;
        let contact = self
            .registry
            .confirm_notification_email(
                actor,
                owner,
                &r.code,
                checked(site_id)?,
                checked(contact_id)?,
            )
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ConfirmNotificationEmailResponse {
            contact: Some(contact_to_proto(&contact)),
        }))
    }

    type WatchEventsStream = EventStream<pb::WatchEventsResponse>;

    async fn watch_events(
        &self,
        request: Request<pb::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        request_actor(&request)?;
        let stream = watch_events(
            &self.watcher,
            &request.get_ref().after_cursor,
            outbox::decode_response::<pb::Event>,
            &self.shutdown,
        )?;
        Ok(Response::new(stream))
    }

    async fn await_access_revision(
        &self,
        request: Request<pb::AwaitAccessRevisionRequest>,
    ) -> Result<Response<pb::AwaitAccessRevisionResponse>, Status> {
        if !caller(&request)?.is_service() {
            return Err(Status::permission_denied(
                "AwaitAccessRevision is for the suite's services",
            ));
        }
        if !self.follows_access {
            return Err(Status::failed_precondition(
                "rule T8: this registry does not follow access management's grants (it runs without --access-url)",
            ));
        }
        let applied_revision = await_revision(
            self.registry.pool(),
            projection::ACCESS_CONSUMER,
            &request,
            &request.get_ref().revision,
            projection::MAX_AWAIT,
            "the registry's projection of access grants",
        )
        .await?;
        Ok(Response::new(pb::AwaitAccessRevisionResponse {
            applied_revision,
        }))
    }
}
