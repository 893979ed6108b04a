//! Every conversion between the registry's proto messages and its domain types.
//!
//! Requests become commands ([`crate::domain::commands`]) by `TryFrom`, which reports every
//! invalid field of a request at once (`InvalidArgument` with one violation per field,
//! named by its proto path); entities and results become their published forms by `From`
//! or by the `*_response` functions of the list and recipient answers.

use kc_proto::contacts as pb;
use kc_runtime::grpc::next_page_token;
use kc_runtime::paging::{Page, decode_token, page_size};
use kc_runtime::values::{Etag, timestamp};
use kc_runtime::{ApiError, Violation, Violations};
use uuid::Uuid;

use crate::domain::commands::{
    Assignment, ContactSeed, ContactUpdate, EmailConfirmation, GapsListing, RecipientsQuery,
    Removal, Replacement, SiteContactsAfter, SiteContactsListing, SiteDraft, SiteListing,
    SiteLookup, SitePatch, SiteRef, SiteSupport, SiteUpdate, Transfer, UserContactsListing,
};
use crate::domain::compliance::{ComplianceGap, SiteCompliance};
use crate::domain::recipients::{NoticePurpose, Recipient, Resolution};
use crate::domain::values::{
    CountryCode, CustomerNumber, Locale, MAX_JOB_TITLE_CHARS, MAX_SITE_NAME_CHARS, SiteNumber,
    optional_date, optional_email, optional_phone, optional_text, parse_id, required_text,
};
use crate::domain::{
    Contact, ContactDetails, ContactRole, KnownPerson, Program, Site, SiteContacts,
};

/// Default and largest page sizes of the site and compliance lists.
const SITES_PAGE: (u32, u32) = (100, 1000);
/// Default and largest page sizes of the contact lists ("show all contacts" in one page).
const CONTACTS_PAGE: (u32, u32) = (1000, 1000);

/// The violation of a well-formed page token whose key this service cannot have issued.
fn bad_page_token() -> Violation {
    Violation::new("page_token", "not a page token this service issued")
}

/// Decodes a page token of `parts` key parts and reads its key with `parse`: `None` for an
/// empty token.
fn page_key<T>(
    token: &str,
    parts: usize,
    parse: impl FnOnce(&[String]) -> Option<T>,
) -> Result<Option<T>, Violation> {
    decode_token(token, parts)?
        .map(|key| parse(&key).ok_or_else(bad_page_token))
        .transpose()
}

/// A page token of one key part that is an id.
fn id_page_key(token: &str) -> Result<Option<Uuid>, Violation> {
    page_key(token, 1, |key| Uuid::parse_str(&key[0]).ok())
}

/// An id that may be left empty (`None`), e.g. the `site_id` that scopes a contact change.
fn optional_id(field: &str, text: &str) -> Result<Option<Uuid>, Violation> {
    if text.is_empty() {
        Ok(None)
    } else {
        parse_id(field, text).map(Some)
    }
}

impl From<Program> for pb::Program {
    fn from(program: Program) -> Self {
        match program {
            Program::PassportAdvantage => Self::PassportAdvantage,
            Program::PassportAdvantageExpress => Self::PassportAdvantageExpress,
        }
    }
}

/// The program of a proto program number.
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

/// The domain role of a proto role number in `field`.
fn role_from_proto(field: &str, value: i32) -> Result<ContactRole, Violation> {
    ContactRole::from_number(value).ok_or_else(|| {
        Violation::new(
            field,
            "must be a CONTACT_ROLE_* value other than UNSPECIFIED",
        )
    })
}

/// The role a transfer of the PRIMARY contact leaves the previous PRIMARY with, in
/// `previous_primary_role`: SITE_USER when unspecified.
fn previous_primary_role(value: i32) -> Result<ContactRole, Violation> {
    if value == 0 {
        Ok(ContactRole::SiteUser)
    } else {
        role_from_proto("previous_primary_role", value)
    }
}

/// The notice purpose of a proto purpose number.
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

/// Parses contact details (absent ones are empty); field paths start with `prefix` (e.g.
/// `details`). Every invalid field is recorded in `v`.
fn details(
    v: &mut Violations,
    prefix: &str,
    details: Option<&pb::ContactDetails>,
) -> Option<ContactDetails> {
    let default = pb::ContactDetails::default();
    let details = details.unwrap_or(&default);
    let phone = v.check(optional_phone(&format!("{prefix}.phone"), &details.phone));
    let job_title = v.check(optional_text(
        &format!("{prefix}.job_title"),
        &details.job_title,
        MAX_JOB_TITLE_CHARS,
    ));
    let notification_email = v.check(optional_email(
        &format!("{prefix}.notification_email"),
        &details.notification_email,
    ));
    Some(ContactDetails {
        phone: phone?,
        job_title: job_title?,
        notification_email: notification_email?,
    })
}

impl From<&ContactDetails> for pb::ContactDetails {
    fn from(details: &ContactDetails) -> Self {
        Self {
            phone: details.phone.clone().unwrap_or_default(),
            job_title: details.job_title.clone().unwrap_or_default(),
            notification_email: details.notification_email.clone().unwrap_or_default(),
        }
    }
}

impl From<&Site> for pb::Site {
    fn from(site: &Site) -> Self {
        Self {
            site_id: site.site_id.to_string(),
            site_number: site.site_number.as_str().to_owned(),
            customer_number: site.customer_number.as_str().to_owned(),
            name: site.name.clone(),
            country_code: site.country_code.as_str().to_owned(),
            language: site.language.as_str().to_owned(),
            program: pb::Program::from(site.program) as i32,
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
}

impl From<&Contact> for pb::Contact {
    fn from(contact: &Contact) -> Self {
        Self {
            contact_id: contact.contact_id.to_string(),
            site_id: contact.site_id.to_string(),
            user_id: contact.user_id.to_string(),
            role: contact.role.number(),
            details: Some((&contact.details).into()),
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
}

impl From<ComplianceGap> for pb::ComplianceGapKind {
    fn from(gap: ComplianceGap) -> Self {
        match gap {
            ComplianceGap::SupportWithoutSiteTechnical => Self::SupportWithoutSiteTechnical,
            ComplianceGap::NoRenewalContact => Self::NoRenewalContact,
            ComplianceGap::PrimaryOnlyContact => Self::PrimaryOnlyContact,
            ComplianceGap::PrimaryDisabled => Self::PrimaryDisabled,
            ComplianceGap::PrimaryUnproven => Self::PrimaryUnproven,
            ComplianceGap::SingleAccountManager => Self::SingleAccountManager,
            ComplianceGap::SupportEnding => Self::SupportEnding,
            ComplianceGap::SupportLapsed => Self::SupportLapsed,
            ComplianceGap::NotificationAddressFailing => Self::NotificationAddressFailing,
        }
    }
}

impl From<ComplianceGap> for pb::ComplianceGap {
    fn from(gap: ComplianceGap) -> Self {
        Self {
            kind: pb::ComplianceGapKind::from(gap) as i32,
            description: gap.description().to_owned(),
        }
    }
}

/// The gap of a ComplianceGapKind in a request: `None` for UNSPECIFIED (every kind).
fn gap_kind(field: &str, number: i32) -> Result<Option<ComplianceGap>, Violation> {
    match pb::ComplianceGapKind::try_from(number) {
        Ok(pb::ComplianceGapKind::Unspecified) => Ok(None),
        Ok(kind) => Ok(ComplianceGap::ALL
            .into_iter()
            .find(|gap| pb::ComplianceGapKind::from(*gap) == kind)),
        Err(_) => Err(Violation::new(field, "not a known ComplianceGapKind")),
    }
}

impl From<&SiteCompliance> for pb::SiteCompliance {
    fn from(compliance: &SiteCompliance) -> Self {
        Self {
            site_id: compliance.site_id.to_string(),
            site_number: compliance.site_number.as_str().to_owned(),
            customer_number: compliance.customer_number.as_str().to_owned(),
            gaps: compliance
                .gaps
                .iter()
                .copied()
                .map(pb::ComplianceGap::from)
                .collect(),
        }
    }
}

/// The answer of ListSites.
pub(crate) fn sites_response(page: &Page<Site>) -> pb::ListSitesResponse {
    pb::ListSitesResponse {
        next_page_token: next_page_token(page, |site| vec![site.site_number.as_str().to_owned()]),
        sites: page.items.iter().map(pb::Site::from).collect(),
    }
}

/// The answer of ListSiteContacts: the next page starts after the last contact, or after its
/// person when paging `by_person` (a page never splits a person's contacts).
pub(crate) fn site_contacts_response(
    listed: &SiteContacts,
    by_person: bool,
) -> pb::ListSiteContactsResponse {
    let page = &listed.contacts;
    pb::ListSiteContactsResponse {
        people: listed.people.iter().map(pb::KnownPerson::from).collect(),
        next_page_token: next_page_token(page, |c| {
            if by_person {
                vec![c.user_id.to_string()]
            } else {
                vec![c.role.number().to_string(), c.contact_id.to_string()]
            }
        }),
        contacts: page.items.iter().map(pb::Contact::from).collect(),
    }
}

impl From<&KnownPerson> for pb::KnownPerson {
    fn from(person: &KnownPerson) -> Self {
        Self {
            user_id: person.user_id.to_string(),
            email: person.email.clone(),
            display_name: person.display_name.clone(),
            // The projection stores identity's own numbers.
            state: i32::from(person.state),
        }
    }
}

/// The answer of ListUserContacts.
pub(crate) fn user_contacts_response(page: &Page<(Contact, Site)>) -> pb::ListUserContactsResponse {
    pb::ListUserContactsResponse {
        next_page_token: next_page_token(page, |(c, _)| vec![c.contact_id.to_string()]),
        contacts: page
            .items
            .iter()
            .map(|(contact, site)| pb::UserContact {
                contact: Some(contact.into()),
                site: Some(site.into()),
            })
            .collect(),
    }
}

/// The answer of ListComplianceGaps.
pub(crate) fn compliance_gaps_response(
    page: &Page<SiteCompliance>,
) -> pb::ListComplianceGapsResponse {
    pb::ListComplianceGapsResponse {
        next_page_token: next_page_token(page, |row| vec![row.site_id.to_string()]),
        sites: page.items.iter().map(pb::SiteCompliance::from).collect(),
    }
}

/// A recipient of a notice with the rule that chose it (ResolveRecipients, and the S&S
/// reminders' and lapses' events).
impl From<&Recipient> for pb::Recipient {
    fn from(recipient: &Recipient) -> Self {
        pb::Recipient {
            user_id: recipient.contact.user_id.to_string(),
            contact_id: recipient.contact.contact_id.to_string(),
            role: recipient.contact.role.number(),
            notification_email: recipient
                .contact
                .details
                .notification_email
                .clone()
                .unwrap_or_default(),
            rule: recipient.rule.clone(),
        }
    }
}

/// The answer of ResolveRecipients: who receives a notice on `site`, by which rule.
pub(crate) fn recipients_response(
    site: &Site,
    resolution: Resolution,
) -> pb::ResolveRecipientsResponse {
    let (business_partner_email, business_partner_rule) =
        resolution.business_partner.unwrap_or_default();
    pb::ResolveRecipientsResponse {
        recipients: resolution
            .recipients
            .iter()
            .map(pb::Recipient::from)
            .collect(),
        business_partner_email,
        business_partner_rule,
        site_language: site.language.as_str().to_owned(),
    }
}

impl TryFrom<pb::CreateSiteRequest> for SiteDraft {
    type Error = ApiError;

    fn try_from(r: pb::CreateSiteRequest) -> Result<Self, ApiError> {
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
            Some(None)
        } else {
            v.check(parse_id(
                "site_technical_user_id",
                &r.site_technical_user_id,
            ))
            .map(Some)
        };
        let primary_details =
            v.nested(|v| details(v, "primary_details", r.primary_details.as_ref()));
        let site_technical_details = v.nested(|v| {
            details(
                v,
                "site_technical_details",
                r.site_technical_details.as_ref(),
            )
        });
        let site_technical = match (site_technical_user_id, site_technical_details) {
            (Some(user_id), Some(details)) => {
                v.check(ContactSeed::site_technical(user_id, details))
            }
            _ => None,
        };
        // rule C5, checked whenever the request names no STC, even with invalid details.
        let support = match (site_technical_user_id, site_technical) {
            (Some(_), Some(site_technical)) => {
                v.check(SiteSupport::new(r.support_active, site_technical))
            }
            (Some(None), None) => v.check(SiteSupport::new(r.support_active, None)),
            _ => None,
        };
        v.build(|| {
            Some(SiteDraft {
                site_number: site_number?,
                customer_number: customer_number?,
                name: name?,
                country_code: country_code?,
                language: language?,
                program: program?,
                support: support?,
                support_end_date: support_end_date?,
                business_partner_email: business_partner_email?,
                primary: ContactSeed {
                    user_id: primary_user_id?,
                    details: primary_details?,
                },
            })
        })
    }
}

impl TryFrom<pb::GetSiteRequest> for SiteRef {
    type Error = ApiError;

    fn try_from(r: pb::GetSiteRequest) -> Result<Self, ApiError> {
        Ok(Self {
            site_id: parse_id("site_id", &r.site_id)?,
        })
    }
}

impl TryFrom<pb::GetSiteComplianceRequest> for SiteRef {
    type Error = ApiError;

    fn try_from(r: pb::GetSiteComplianceRequest) -> Result<Self, ApiError> {
        Ok(Self {
            site_id: parse_id("site_id", &r.site_id)?,
        })
    }
}

impl TryFrom<pb::LookupSiteRequest> for SiteLookup {
    type Error = ApiError;

    fn try_from(r: pb::LookupSiteRequest) -> Result<Self, ApiError> {
        if r.site_number.trim().is_empty() && !r.customer_number.trim().is_empty() {
            return Ok(Self::OriginalOf(CustomerNumber::parse(
                "customer_number",
                &r.customer_number,
            )?));
        }
        Ok(Self::Number(SiteNumber::parse(
            "site_number",
            &r.site_number,
        )?))
    }
}

impl TryFrom<pb::ListSitesRequest> for SiteListing {
    type Error = ApiError;

    fn try_from(r: pb::ListSitesRequest) -> Result<Self, ApiError> {
        let mut v = Violations::new();
        let customer_number = if r.customer_number.trim().is_empty() {
            Some(None)
        } else {
            v.check(CustomerNumber::parse("customer_number", &r.customer_number))
                .map(Some)
        };
        let size = v.check(page_size(r.page_size, SITES_PAGE.0, SITES_PAGE.1));
        let after = v.check(decode_token(&r.page_token, 1));
        v.build(|| {
            Some(Self {
                customer_number: customer_number?,
                after: after?.and_then(|mut key| key.pop()),
                size: size?,
            })
        })
    }
}

/// The fields UpdateSite may change, as named in its `update_mask`.
const CHANGEABLE: &str = "use name, language, support_active, support_end_date, \
                          business_partner_email or admin_may_manage_access";

impl TryFrom<pb::UpdateSiteRequest> for SiteUpdate {
    type Error = ApiError;

    fn try_from(r: pb::UpdateSiteRequest) -> Result<Self, ApiError> {
        let Some(site) = r.site else {
            return Err(ApiError::invalid("site", "site is required"));
        };
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
                    format!("`{other}` cannot be changed; {CHANGEABLE}"),
                ),
            }
        }
        let site_id = v.build(|| site_id)?;
        Ok(Self {
            site_id,
            patch,
            etag: Etag::parse("etag", &r.etag)?,
        })
    }
}

impl TryFrom<pb::AssignContactRequest> for Assignment {
    type Error = ApiError;

    fn try_from(r: pb::AssignContactRequest) -> Result<Self, ApiError> {
        let mut v = Violations::new();
        let site_id = v.check(parse_id("site_id", &r.site_id));
        let user_id = v.check(parse_id("user_id", &r.user_id));
        let role = v.check(role_from_proto("role", r.role));
        let details = v.nested(|v| details(v, "details", r.details.as_ref()));
        v.build(|| {
            Some(Self {
                site_id: site_id?,
                user_id: user_id?,
                role: role?,
                details: details?,
            })
        })
    }
}

impl TryFrom<pb::UpdateContactRequest> for ContactUpdate {
    type Error = ApiError;

    fn try_from(r: pb::UpdateContactRequest) -> Result<Self, ApiError> {
        let mut v = Violations::new();
        let contact_id = v.check(parse_id("contact_id", &r.contact_id));
        let in_site = v.check(optional_id("site_id", &r.site_id));
        let details = v.nested(|v| details(v, "details", r.details.as_ref()));
        let (contact_id, in_site, details) = v.build(|| Some((contact_id?, in_site?, details?)))?;
        Ok(Self {
            contact_id,
            in_site,
            details,
            etag: Etag::parse("etag", &r.etag)?,
        })
    }
}

impl TryFrom<pb::RemoveContactRequest> for Removal {
    type Error = ApiError;

    fn try_from(r: pb::RemoveContactRequest) -> Result<Self, ApiError> {
        let mut v = Violations::new();
        let contact_id = v.check(parse_id("contact_id", &r.contact_id));
        let in_site = v.check(optional_id("site_id", &r.site_id));
        let (contact_id, in_site) = v.build(|| Some((contact_id?, in_site?)))?;
        Ok(Self {
            contact_id,
            in_site,
            etag: Etag::parse("etag", &r.etag)?,
        })
    }
}

impl TryFrom<pb::ReplaceContactRequest> for Replacement {
    type Error = ApiError;

    fn try_from(r: pb::ReplaceContactRequest) -> Result<Self, ApiError> {
        let mut v = Violations::new();
        let site_id = v.check(parse_id("site_id", &r.site_id));
        let role = v.check(role_from_proto("role", r.role));
        let new_user_id = v.check(parse_id("new_user_id", &r.new_user_id));
        let details = v.nested(|v| details(v, "details", r.details.as_ref()));
        v.build(|| {
            Some(Self {
                site_id: site_id?,
                role: role?,
                new_user_id: new_user_id?,
                details: details?,
            })
        })
    }
}

impl TryFrom<pb::TransferPrimaryContactRequest> for Transfer {
    type Error = ApiError;

    fn try_from(r: pb::TransferPrimaryContactRequest) -> Result<Self, ApiError> {
        let mut v = Violations::new();
        let site_id = v.check(parse_id("site_id", &r.site_id));
        let new_user_id = v.check(parse_id("new_user_id", &r.new_user_id));
        let previous_primary_role = v.check(previous_primary_role(r.previous_primary_role));
        let (site_id, new_user_id, previous_primary_role) =
            v.build(|| Some((site_id?, new_user_id?, previous_primary_role?)))?;
        Ok(Self {
            site_id,
            new_user_id,
            previous_primary_role,
            etag: Etag::parse("etag", &r.etag)?,
        })
    }
}

/// The (role, contact) key of a ListSiteContacts page token.
fn contacts_page_key(key: &[String]) -> Option<(ContactRole, Uuid)> {
    let role = key[0].parse().ok().and_then(ContactRole::from_number)?;
    let contact_id = Uuid::parse_str(&key[1]).ok()?;
    Some((role, contact_id))
}

impl TryFrom<pb::ListSiteContactsRequest> for SiteContactsListing {
    type Error = ApiError;

    fn try_from(r: pb::ListSiteContactsRequest) -> Result<Self, ApiError> {
        let mut v = Violations::new();
        let site_id = v.check(parse_id("site_id", &r.site_id));
        let roles: Vec<ContactRole> = r
            .roles
            .iter()
            .filter_map(|role| v.check(role_from_proto("roles", *role)))
            .collect();
        let size = v.check(page_size(r.page_size, CONTACTS_PAGE.0, CONTACTS_PAGE.1));
        let after = if r.by_person {
            v.check(id_page_key(&r.page_token).map(SiteContactsAfter::Person))
        } else {
            v.check(page_key(&r.page_token, 2, contacts_page_key).map(SiteContactsAfter::Contact))
        };
        v.build(|| {
            Some(Self {
                site_id: site_id?,
                roles,
                after: after?,
                size: size?,
                with_people: r.with_people,
            })
        })
    }
}

impl TryFrom<pb::ListUserContactsRequest> for UserContactsListing {
    type Error = ApiError;

    fn try_from(r: pb::ListUserContactsRequest) -> Result<Self, ApiError> {
        let mut v = Violations::new();
        let user_id = v.check(parse_id("user_id", &r.user_id));
        let size = v.check(page_size(r.page_size, CONTACTS_PAGE.0, CONTACTS_PAGE.1));
        let after = v.check(id_page_key(&r.page_token));
        v.build(|| {
            Some(Self {
                user_id: user_id?,
                after: after?,
                size: size?,
            })
        })
    }
}

impl TryFrom<pb::ResolveRecipientsRequest> for RecipientsQuery {
    type Error = ApiError;

    fn try_from(r: pb::ResolveRecipientsRequest) -> Result<Self, ApiError> {
        let mut v = Violations::new();
        let site_id = v.check(parse_id("site_id", &r.site_id));
        let purpose = v.check(purpose_from_proto(r.purpose));
        v.build(|| {
            Some(Self {
                site_id: site_id?,
                purpose: purpose?,
            })
        })
    }
}

impl TryFrom<pb::ListComplianceGapsRequest> for GapsListing {
    type Error = ApiError;

    fn try_from(r: pb::ListComplianceGapsRequest) -> Result<Self, ApiError> {
        let mut v = Violations::new();
        let kind = v.check(gap_kind("kind", r.kind));
        let customer_number = if r.customer_number.trim().is_empty() {
            Some(None)
        } else {
            v.check(CustomerNumber::parse("customer_number", &r.customer_number))
                .map(Some)
        };
        let size = v.check(page_size(r.page_size, SITES_PAGE.0, SITES_PAGE.1));
        let after = v.check(id_page_key(&r.page_token));
        v.build(|| {
            Some(Self {
                kind: kind?,
                customer_number: customer_number?,
                after: after?,
                size: size?,
            })
        })
    }
}

impl TryFrom<pb::ConfirmNotificationEmailRequest> for EmailConfirmation {
    type Error = ApiError;

    fn try_from(r: pb::ConfirmNotificationEmailRequest) -> Result<Self, ApiError> {
        let mut v = Violations::new();
        if r.code.trim().is_empty() {
            v.add(
                "code",
                "required: the code mailed to the notification e-mail",
            );
        }
        let site_id = v.check(optional_id("site_id", &r.site_id));
        let contact_id = v.check(optional_id("contact_id", &r.contact_id));
        let (site_id, contact_id) = v.build(|| Some((site_id?, contact_id?)))?;
        Ok(Self {
            code: r.code,
            site_id,
            contact_id,
        })
    }
}

/// The published form of a recovery (C12) in the events: its state at its last change.
impl From<&crate::domain::recovery::PrimaryRecovery> for pb::PrimaryRecovery {
    fn from(recovery: &crate::domain::recovery::PrimaryRecovery) -> Self {
        recovery_at(
            recovery,
            recovery.decide_time.unwrap_or(recovery.request_time),
        )
    }
}

/// The published form of a recovery (C12), in its state at `now`.
pub(crate) fn recovery_at(
    recovery: &crate::domain::recovery::PrimaryRecovery,
    now: chrono::DateTime<chrono::Utc>,
) -> pb::PrimaryRecovery {
    use crate::domain::recovery::{Basis, RecoveryState};
    let state = match recovery.state_at(now) {
        RecoveryState::Waiting => pb::PrimaryRecoveryState::Waiting,
        RecoveryState::Attestable => pb::PrimaryRecoveryState::Attestable,
        RecoveryState::Refused => pb::PrimaryRecoveryState::Refused,
        RecoveryState::Attested => pb::PrimaryRecoveryState::Attested,
        RecoveryState::Expired => pb::PrimaryRecoveryState::Expired,
    };
    let text = |id: Option<Uuid>| id.map(|id| id.to_string()).unwrap_or_default();
    pb::PrimaryRecovery {
        recovery_id: recovery.recovery_id.to_string(),
        site_id: recovery.site_id.to_string(),
        requester_user_id: recovery.requester_id.to_string(),
        previous_primary_user_id: recovery.previous_primary_id.to_string(),
        reason: recovery.reason.clone(),
        state: state as i32,
        request_time: Some(timestamp(recovery.request_time)),
        waiting_end_time: Some(timestamp(recovery.waiting_end_time)),
        expire_time: Some(timestamp(recovery.expire_time)),
        decided_by_user_id: text(recovery.decided_by),
        decision_reason: recovery.decision_reason.clone().unwrap_or_default(),
        decide_time: recovery.decide_time.map(timestamp),
        new_primary_user_id: text(recovery.new_primary_id),
        requester_is_contact: recovery.basis == Basis::Contact,
    }
}

impl TryFrom<pb::RefusePrimaryRecoveryRequest> for crate::domain::recovery::RecoveryRefusal {
    type Error = ApiError;

    fn try_from(r: pb::RefusePrimaryRecoveryRequest) -> Result<Self, ApiError> {
        let mut v = Violations::new();
        let recovery_id = v.check(parse_id("recovery_id", &r.recovery_id));
        let reason = v.check(crate::domain::recovery::reason("reason", &r.reason));
        v.build(|| {
            Some(Self {
                recovery_id: recovery_id?,
                reason: reason?,
            })
        })
    }
}

impl TryFrom<pb::AttestPrimaryRecoveryRequest> for crate::domain::recovery::RecoveryAttestation {
    type Error = ApiError;

    fn try_from(r: pb::AttestPrimaryRecoveryRequest) -> Result<Self, ApiError> {
        let mut v = Violations::new();
        let recovery_id = v.check(parse_id("recovery_id", &r.recovery_id));
        let new_user_id = v.check(parse_id("new_user_id", &r.new_user_id));
        let reason = v.check(crate::domain::recovery::reason("reason", &r.reason));
        let previous_primary_role = v.check(previous_primary_role(r.previous_primary_role));
        v.build(|| {
            Some(Self {
                recovery_id: recovery_id?,
                new_user_id: new_user_id?,
                reason: reason?,
                previous_primary_role: previous_primary_role?,
            })
        })
    }
}
