//! The registry's requests, parsed: who acts ([`Actor`]), and one command per operation
//! (what `convert` makes of a request and the registry takes). A command that exists is
//! well formed; rules that a command alone can break (C5 of a new site) are carried by its
//! type, so the registry never receives one that breaks them.

use chrono::NaiveDate;
use kc_runtime::values::Etag;
use kc_runtime::{Caller, Violation};
use uuid::Uuid;

use super::compliance::ComplianceGap;
use super::recipients::NoticePurpose;
use super::values::{CountryCode, CustomerNumber, Locale, SiteNumber};
use super::{ContactDetails, ContactRole, ContactsError, Program, Result};

/// The person responsible for a change, and the service it came through.
#[derive(Debug, Clone, Copy)]
pub struct Actor {
    /// Person responsible (the on-behalf-of user, else the caller).
    pub actor_id: Uuid,
    /// Service account the change came through.
    pub via_service: Option<Uuid>,
}

impl Actor {
    /// Whether a service acts for nobody: its token carries no `x-kc-on-behalf-of`, so the
    /// actor is the service itself.
    pub fn is_service_alone(self) -> bool {
        self.via_service == Some(self.actor_id)
    }

    /// Whether a service acts for a person it names (`x-kc-on-behalf-of`): that person's
    /// authority is decided at commit (T8). Operators act with their own token.
    pub fn acts_for_person(self) -> bool {
        self.via_service.is_some() && !self.is_service_alone()
    }
}

/// Checks the caller may use the registry at all: services and operators only.
pub fn actor(caller: &Caller) -> Result<Actor> {
    if !caller.is_privileged() {
        return Err(ContactsError::Forbidden(
            "customer tokens are refused by the contact registry: call the gateway",
        ));
    }
    Ok(Actor {
        actor_id: caller.actor(),
        via_service: caller.is_service().then_some(caller.subject),
    })
}

/// The user whose notification e-mail `caller` may confirm (C11): the person a service acts
/// for, or the operator itself.
pub fn confirming_owner(caller: &Caller) -> Result<Uuid> {
    // rule C11: only the contact's own user confirms its notification e-mail.
    if caller.is_service() {
        caller.on_behalf_of.ok_or(ContactsError::Forbidden(
            "rule C11: only the contact's own user confirms its notification e-mail; name that user in x-kc-on-behalf-of",
        ))
    } else {
        Ok(caller.subject)
    }
}

/// The first holder of a role on a new site, with the details of its contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactSeed {
    /// The user.
    pub user_id: Uuid,
    /// Details of the contact.
    pub details: ContactDetails,
}

impl ContactSeed {
    /// The site technical contact a CreateSite names, if it names one: details given
    /// without a user are refused, as they would belong to nobody.
    pub fn site_technical(
        user_id: Option<Uuid>,
        details: ContactDetails,
    ) -> Result<Option<Self>, Violation> {
        match user_id {
            Some(user_id) => Ok(Some(Self { user_id, details })),
            None if details == ContactDetails::default() => Ok(None),
            None => Err(Violation::new(
                "site_technical_details",
                "given without site_technical_user_id: name the site technical contact",
            )),
        }
    }
}

/// The S&S status of a new site together with its site technical contact, so that rule C5
/// (a site with active S&S has an STC) holds by construction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SiteSupport {
    /// S&S active: the site technical contact is required (C5).
    Active {
        /// The site technical contact.
        site_technical: ContactSeed,
    },
    /// S&S inactive: a site technical contact is optional.
    Inactive {
        /// The site technical contact, if any.
        site_technical: Option<ContactSeed>,
    },
}

impl SiteSupport {
    /// The S&S status `active` with `site_technical`; refuses active S&S without an STC (C5).
    pub fn new(active: bool, site_technical: Option<ContactSeed>) -> Result<Self, Violation> {
        match (active, site_technical) {
            (true, Some(site_technical)) => Ok(Self::Active { site_technical }),
            (true, None) => Err(Violation::new(
                "site_technical_user_id",
                "rule C5: a site with active S&S must have a site technical contact",
            )),
            (false, site_technical) => Ok(Self::Inactive { site_technical }),
        }
    }

    /// Whether S&S is active.
    pub fn is_active(&self) -> bool {
        matches!(self, Self::Active { .. })
    }

    /// The site technical contact, if any.
    pub fn site_technical(&self) -> Option<&ContactSeed> {
        match self {
            Self::Active { site_technical } => Some(site_technical),
            Self::Inactive { site_technical } => site_technical.as_ref(),
        }
    }
}

/// Everything CreateSite needs, parsed.
#[derive(Debug, Clone)]
pub struct SiteDraft {
    /// Site number.
    pub site_number: SiteNumber,
    /// Customer number.
    pub customer_number: CustomerNumber,
    /// Name.
    pub name: String,
    /// Country code.
    pub country_code: CountryCode,
    /// Language.
    pub language: Locale,
    /// Program.
    pub program: Program,
    /// S&S status and the site technical contact (C5).
    pub support: SiteSupport,
    /// S&S end.
    pub support_end_date: Option<NaiveDate>,
    /// Business partner e-mail.
    pub business_partner_email: Option<String>,
    /// Primary contact (S1).
    pub primary: ContactSeed,
}

/// The changes of an UpdateSite: `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct SitePatch {
    /// New name.
    pub name: Option<String>,
    /// New language.
    pub language: Option<Locale>,
    /// New S&S status.
    pub support_active: Option<bool>,
    /// New S&S end date (`Some(None)` clears it).
    pub support_end_date: Option<Option<NaiveDate>>,
    /// New business partner e-mail (`Some(None)` clears it).
    pub business_partner_email: Option<Option<String>>,
    /// New C3 switch.
    pub admin_may_manage_access: Option<bool>,
}

/// One site, by id (GetSite, GetSiteCompliance).
#[derive(Debug, Clone, Copy)]
pub struct SiteRef {
    /// Site.
    pub site_id: Uuid,
}

/// One site, by site number or customer number (LookupSite).
#[derive(Debug, Clone)]
pub enum SiteLookup {
    /// The site with this number.
    Number(SiteNumber),
    /// The original site of the customer with this number.
    OriginalOf(CustomerNumber),
}

/// A page of sites (ListSites).
#[derive(Debug, Clone)]
pub struct SiteListing {
    /// Only this customer's sites.
    pub customer_number: Option<CustomerNumber>,
    /// The site number the page starts after.
    pub after: Option<String>,
    /// Page size.
    pub size: u32,
}

/// A change of a site (UpdateSite).
#[derive(Debug, Clone)]
pub struct SiteUpdate {
    /// Site.
    pub site_id: Uuid,
    /// The changes.
    pub patch: SitePatch,
    /// The etag the client read.
    pub etag: Etag,
}

/// A role given to a user (AssignContact).
#[derive(Debug, Clone)]
pub struct Assignment {
    /// Site.
    pub site_id: Uuid,
    /// User.
    pub user_id: Uuid,
    /// Role.
    pub role: ContactRole,
    /// Details of the new contact.
    pub details: ContactDetails,
}

/// New details of a contact (UpdateContact).
#[derive(Debug, Clone)]
pub struct ContactUpdate {
    /// Contact.
    pub contact_id: Uuid,
    /// Only a contact of this site.
    pub in_site: Option<Uuid>,
    /// Details.
    pub details: ContactDetails,
    /// The etag the client read.
    pub etag: Etag,
}

/// A role taken away (RemoveContact).
#[derive(Debug, Clone, Copy)]
pub struct Removal {
    /// Contact.
    pub contact_id: Uuid,
    /// Only a contact of this site.
    pub in_site: Option<Uuid>,
    /// The etag the client read.
    pub etag: Etag,
}

/// A single-holder role given to another user (ReplaceContact).
#[derive(Debug, Clone)]
pub struct Replacement {
    /// Site.
    pub site_id: Uuid,
    /// Role.
    pub role: ContactRole,
    /// The new holder.
    pub new_user_id: Uuid,
    /// Details of the new contact.
    pub details: ContactDetails,
}

/// A transfer of the primary contact (TransferPrimaryContact, C8).
#[derive(Debug, Clone, Copy)]
pub struct Transfer {
    /// Site.
    pub site_id: Uuid,
    /// The new primary.
    pub new_user_id: Uuid,
    /// The role the old primary keeps.
    pub previous_primary_role: ContactRole,
    /// The site's etag the client read.
    pub etag: Etag,
}

/// A page of a site's contacts (ListSiteContacts).
#[derive(Debug, Clone)]
pub struct SiteContactsListing {
    /// Site.
    pub site_id: Uuid,
    /// Only these roles (all when empty).
    pub roles: Vec<ContactRole>,
    /// What the page counts and where it starts.
    pub after: SiteContactsAfter,
    /// Page size: contacts, or people when paging by person.
    pub size: u32,
    /// Whether to return what the registry knows of the page's people (see
    /// [`super::KnownPerson`]).
    pub with_people: bool,
}

/// What a page of a site's contacts counts, and the key it starts after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SiteContactsAfter {
    /// Contacts in display order, after this (role, contact) when given.
    Contact(Option<(ContactRole, Uuid)>),
    /// People in user-id order (every contact of each), after this user when given.
    Person(Option<Uuid>),
}

/// A page of a user's contacts (ListUserContacts).
#[derive(Debug, Clone, Copy)]
pub struct UserContactsListing {
    /// User.
    pub user_id: Uuid,
    /// The contact the page starts after.
    pub after: Option<Uuid>,
    /// Page size.
    pub size: u32,
}

/// Who receives a notice (ResolveRecipients, R1).
#[derive(Debug, Clone, Copy)]
pub struct RecipientsQuery {
    /// Site.
    pub site_id: Uuid,
    /// Why the notice is sent.
    pub purpose: NoticePurpose,
}

/// A page of the sites with compliance gaps (ListComplianceGaps).
#[derive(Debug, Clone)]
pub struct GapsListing {
    /// Only the sites with a gap of this kind.
    pub kind: Option<ComplianceGap>,
    /// Only the sites of this customer.
    pub customer_number: Option<CustomerNumber>,
    /// The site the page starts after.
    pub after: Option<Uuid>,
    /// Page size.
    pub size: u32,
}

/// The confirmation of a notification e-mail by its owner (ConfirmNotificationEmail, C11).
#[derive(Debug, Clone)]
pub struct EmailConfirmation {
    /// The code mailed to the address.
    pub code: String,
    /// Only a contact of this site.
    pub site_id: Option<Uuid>,
    /// Only this contact.
    pub contact_id: Option<Uuid>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed() -> ContactSeed {
        ContactSeed {
            user_id: Uuid::nil(),
            details: ContactDetails::default(),
        }
    }

    #[test]
    fn active_support_needs_a_site_technical_contact() {
        let refused = SiteSupport::new(true, None).unwrap_err();
        assert_eq!(refused.field, "site_technical_user_id");
        assert!(SiteSupport::new(true, Some(seed())).unwrap().is_active());
        let inactive = SiteSupport::new(false, None).unwrap();
        assert!(!inactive.is_active() && inactive.site_technical().is_none());
    }

    #[test]
    fn site_technical_details_need_a_user() {
        assert_eq!(
            ContactSeed::site_technical(None, ContactDetails::default()),
            Ok(None)
        );
        let details = ContactDetails {
            job_title: Some("technicien".into()),
            ..ContactDetails::default()
        };
        let refused = ContactSeed::site_technical(None, details).unwrap_err();
        assert_eq!(refused.field, "site_technical_details");
    }
}
