//! Contacts: ShowAllContacts (C7: the registry's contacts with their people, one entry per
//! person) and the contact changes (AssignContact, UpdateContact, RemoveContact,
//! ReplaceContact, TransferPrimaryContact). Contact ids go to the registry with the site
//! that was checked, so an id of another site's contact is not found there.

use kc_proto::contacts::{self, Contact, Site};
use kc_proto::gateway as pb;
use kc_proto::identity::User;
use kc_runtime::paging::{decode_token, encode_token};
use uuid::Uuid;

use super::revisions::revision_token;
use super::{DOWNSTREAM_PAGE_MAX, Gateway, id, page_size, required};
use crate::clients::{Ctx, Svc};
use crate::error::GatewayError;
use crate::policy::{method, role_authority};

/// People in a ShowAllContacts page when the request names no size (at most
/// `DOWNSTREAM_PAGE_MAX`, 1000).
const SHOW_ALL_CONTACTS_PAGE: i32 = 100;

/// A ShowAllContacts page token: the registry's token of its listing by person, bound to
/// the site it pages (a token of one site never continues another site's listing).
#[derive(Debug, Clone, PartialEq, Eq)]
struct PeopleToken {
    site_id: Uuid,
    registry_token: String,
}

impl PeopleToken {
    fn encode(&self) -> String {
        encode_token(&[&self.site_id.to_string(), &self.registry_token])
    }

    /// The registry's token in the page token `token` of site `site_id`; empty for the first
    /// page.
    fn decode(token: &str, site_id: Uuid) -> Result<String, GatewayError> {
        let Some(parts) = decode_token(token, 2)? else {
            return Ok(String::new());
        };
        let issued_for = Uuid::parse_str(&parts[0])
            .ok()
            .filter(|_| !parts[1].is_empty())
            .ok_or_else(|| {
                GatewayError::invalid("page_token", "not a page token this service issued")
            })?;
        if issued_for != site_id {
            return Err(GatewayError::invalid(
                "page_token",
                "was issued for another site: a page token continues the listing of its own site",
            ));
        }
        Ok(parts[1].clone())
    }
}

/// A page of the registry's contacts listed by person (consecutive by user, each person's
/// highest role first) as one group per person, in the same order.
fn group_by_person(contacts: &[Contact]) -> Vec<&[Contact]> {
    contacts
        .chunk_by(|one, next| one.user_id == next.user_id)
        .collect()
}

/// What a person's view shows of its account: from identity's user, or from the registry's
/// projection of identity's users (a page's people).
#[derive(Debug, Clone, Copy)]
pub(super) struct Account<'a> {
    email: &'a str,
    display_name: &'a str,
    state: i32,
}

impl<'a> From<&'a User> for Account<'a> {
    fn from(user: &'a User) -> Self {
        Self {
            email: &user.email,
            display_name: &user.display_name,
            state: user.state,
        }
    }
}

impl<'a> From<&'a contacts::KnownPerson> for Account<'a> {
    fn from(person: &'a contacts::KnownPerson) -> Self {
        Self {
            email: &person.email,
            display_name: &person.display_name,
            state: person.state,
        }
    }
}

/// One person among a site's contacts (C7), from its contacts there (highest role first)
/// and its account, when identity knows it.
pub(super) fn contact_view(
    user_id: &str,
    account: Option<Account<'_>>,
    contacts: &[Contact],
) -> pb::ContactView {
    let details = contacts
        .first()
        .and_then(|contact| contact.details.as_ref());
    let email = account.map(|a| a.email).unwrap_or_default();
    let notification_email = match details {
        Some(details) if !details.notification_email.is_empty() => &details.notification_email,
        _ => email,
    };
    let mut roles: Vec<i32> = contacts.iter().map(|contact| contact.role).collect();
    roles.sort_unstable();
    roles.dedup();
    pb::ContactView {
        user_id: user_id.to_owned(),
        display_name: account
            .map(|a| a.display_name)
            .unwrap_or_default()
            .to_owned(),
        email: email.to_owned(),
        notification_email: notification_email.to_owned(),
        roles,
        phone: details.map(|d| d.phone.clone()).unwrap_or_default(),
        job_title: details.map(|d| d.job_title.clone()).unwrap_or_default(),
        user_state: account.map(|a| a.state).unwrap_or_default(),
        contacts: contacts
            .iter()
            .map(|contact| pb::ContactRoleEntry {
                contact_id: contact.contact_id.clone(),
                role: contact.role,
                details: contact.details.clone(),
                etag: contact.etag.clone(),
            })
            .collect(),
    }
}

/// A person named by login e-mail in a contact-changing request, with what inviting it
/// would need.
#[derive(Debug, Clone, Copy)]
struct PersonByEmail<'a> {
    /// The login e-mail.
    email: &'a str,
    /// The name to invite it with when nobody has the address.
    display_name: Option<&'a str>,
    /// The language to invite it in; the site's when empty.
    locale: &'a str,
}

impl Gateway {
    /// The site `site_id` as the registry holds it now.
    async fn read_site(&self, ctx: &Ctx, site_id: Uuid) -> Result<Site, GatewayError> {
        let site = self
            .clients
            .get_site(
                ctx,
                contacts::GetSiteRequest {
                    site_id: site_id.to_string(),
                },
            )
            .await?
            .site;
        required(Svc::Contacts, "site", site)
    }

    /// The language of a site (`en` when it names none), for the people invited to it.
    pub(super) async fn site_language(
        &self,
        ctx: &Ctx,
        site_id: Uuid,
    ) -> Result<String, GatewayError> {
        let site = self.read_site(ctx, site_id).await?;
        Ok(if site.language.is_empty() {
            "en".to_owned()
        } else {
            site.language
        })
    }

    /// Admits the caller of the contact-changing `method` on `site_id`, then binds the
    /// login e-mail `email` to its account, inviting it in the site's language unless its
    /// address is proven (see [`Gateway::person`], rule I1). Returns the user and whether it was invited.
    ///
    /// When `role` implies rights, the caller also needs the authority to grant them (T6,
    /// [`role_authority`]); it is checked with the method's rule, in the same `BatchCheck`,
    /// before anyone is invited.
    async fn admit_person(
        &self,
        ctx: &Ctx,
        method: &str,
        site_id: Uuid,
        role: Option<i32>,
        person: PersonByEmail<'_>,
    ) -> Result<(User, bool), GatewayError> {
        let authority = role
            .and_then(|role| contacts::ContactRole::try_from(role).ok())
            .and_then(role_authority);
        self.admit_site_and(ctx, method, site_id, authority).await?;
        self.person(
            ctx,
            person.email,
            person.display_name,
            person.locale,
            self.site_language(ctx, site_id),
        )
        .await
    }

    /// Removing a contact whose role implies rights takes them away: the caller needs the
    /// authority over them (T6, [`role_authority`]). The site's few rights-implying
    /// contacts (at most one ADMINISTRATIVE, one STC and four SECONDARY, C3, C5, C6) are
    /// read afresh to learn the role of `contact_id`; a contact's role never changes.
    async fn admit_removal(
        &self,
        ctx: &Ctx,
        site_id: Uuid,
        contact_id: Uuid,
    ) -> Result<(), GatewayError> {
        use contacts::ContactRole as Role;
        let implying = [Role::Administrative, Role::SiteTechnical, Role::Secondary];
        let listed = self
            .clients
            .list_site_contacts(
                ctx,
                contacts::ListSiteContactsRequest {
                    site_id: site_id.to_string(),
                    roles: implying.iter().map(|role| *role as i32).collect(),
                    page_size: DOWNSTREAM_PAGE_MAX,
                    page_token: String::new(),
                    by_person: false,
                    with_people: false,
                },
            )
            .await?;
        let role = listed
            .contacts
            .iter()
            .find(|contact| contact.contact_id == contact_id.to_string())
            .and_then(|contact| Role::try_from(contact.role).ok());
        match role.and_then(role_authority) {
            Some(need) => self.require(ctx, site_id, need).await,
            None => Ok(()),
        }
    }

    /// `ShowAllContacts` (C7): one page of the site's people, read from the registry's
    /// listing by person (keyset on the user id) while CONTACTS_VIEW is checked. Names,
    /// e-mails and account states come with the page from the registry's projection of
    /// identity's users (behind identity by its event stream's delay); only people the
    /// projection does not know yet are read from identity. Nothing reads the whole site.
    pub(crate) async fn show_all_contacts(
        &self,
        ctx: &Ctx,
        request: pb::ShowAllContactsRequest,
    ) -> Result<pb::ShowAllContactsResponse, GatewayError> {
        let site_id = id("site_id", &request.site_id)?;
        let size = page_size(request.page_size, SHOW_ALL_CONTACTS_PAGE)?;
        let registry_token = PeopleToken::decode(&request.page_token, site_id)?;
        let list = contacts::ListSiteContactsRequest {
            site_id: site_id.to_string(),
            roles: request.roles,
            page_size: size,
            page_token: registry_token,
            by_person: true,
            with_people: true,
        };
        let (allowed, read) = futures::join!(
            self.admit_site(ctx, method::SHOW_ALL_CONTACTS, site_id),
            self.clients.list_site_contacts_shared(ctx, list)
        );
        allowed?;
        let read = read?;
        let people = group_by_person(&read.contacts);
        // The page's people by user id (a sorted list: a page holds a hundred at most).
        let mut known: Vec<&contacts::KnownPerson> = read.people.iter().collect();
        known.sort_unstable_by(|a, b| a.user_id.cmp(&b.user_id));
        // Each person of the page with what the registry knows of it, looked up once.
        let people: Vec<(&[Contact], Option<&contacts::KnownPerson>)> = people
            .into_iter()
            .map(|contacts| {
                let user_id = contacts[0].user_id.as_str();
                let person = known
                    .binary_search_by(|person| person.user_id.as_str().cmp(user_id))
                    .ok()
                    .map(|at| known[at]);
                (contacts, person)
            })
            .collect();
        let unknown: Vec<String> = people
            .iter()
            .filter(|(_, person)| person.is_none())
            .map(|(contacts, _)| contacts[0].user_id.clone())
            .collect();
        let looked_up = self.users_by_id(ctx, unknown).await?;
        let contacts = people
            .iter()
            .map(|&(contacts, person)| {
                let user_id = &contacts[0].user_id;
                let account = match person {
                    Some(person) => Some(Account::from(person)),
                    None => looked_up.get(user_id).map(Account::from),
                };
                contact_view(user_id, account, contacts)
            })
            .collect();
        let next_page_token = if read.next_page_token.is_empty() {
            String::new()
        } else {
            PeopleToken {
                site_id,
                registry_token: read.next_page_token.clone(),
            }
            .encode()
        };
        Ok(pb::ShowAllContactsResponse {
            contacts,
            next_page_token,
        })
    }

    /// `AssignContact`: CONTACTS_UPDATE; the person is bound by e-mail (invited unless its
    /// address is proven, rule I1), then the registry assigns the role (C6).
    pub(crate) async fn assign_contact(
        &self,
        ctx: &Ctx,
        request: pb::AssignContactRequest,
    ) -> Result<pb::AssignContactResponse, GatewayError> {
        let site_id = id("site_id", &request.site_id)?;
        let (user, invited) = self
            .admit_person(
                ctx,
                method::ASSIGN_CONTACT,
                site_id,
                Some(request.role),
                PersonByEmail {
                    email: &request.email,
                    display_name: request.display_name.as_deref(),
                    locale: &request.locale,
                },
            )
            .await?;
        let response = self
            .clients
            .assign_contact(
                ctx,
                contacts::AssignContactRequest {
                    site_id: site_id.to_string(),
                    user_id: user.user_id.clone(),
                    role: request.role,
                    details: request.details,
                },
            )
            .await?;
        self.registry_write_in_effect(ctx, &response.revision)
            .await?;
        Ok(pb::AssignContactResponse {
            contact: Some(required(Svc::Contacts, "contact", response.contact)?),
            user: Some(user),
            user_invited: invited,
            revision: revision_token(Svc::Contacts, &response.revision),
        })
    }

    /// `UpdateContact`: CONTACTS_UPDATE on the site; the registry changes the contact only
    /// when it belongs to that site.
    pub(crate) async fn update_contact(
        &self,
        ctx: &Ctx,
        request: pb::UpdateContactRequest,
    ) -> Result<pb::UpdateContactResponse, GatewayError> {
        let site_id = id("site_id", &request.site_id)?;
        let contact_id = id("contact_id", &request.contact_id)?;
        self.admit_site(ctx, method::UPDATE_CONTACT, site_id)
            .await?;
        let response = self
            .clients
            .update_contact(
                ctx,
                contacts::UpdateContactRequest {
                    contact_id: contact_id.to_string(),
                    details: request.details,
                    etag: request.etag,
                    site_id: site_id.to_string(),
                },
            )
            .await?;
        Ok(pb::UpdateContactResponse {
            contact: Some(required(Svc::Contacts, "contact", response.contact)?),
        })
    }

    /// `RemoveContact`: CONTACTS_UPDATE on the site; the registry removes the contact only
    /// when it belongs to that site (C1, C5 apply).
    pub(crate) async fn remove_contact(
        &self,
        ctx: &Ctx,
        request: pb::RemoveContactRequest,
    ) -> Result<pb::RemoveContactResponse, GatewayError> {
        let site_id = id("site_id", &request.site_id)?;
        let contact_id = id("contact_id", &request.contact_id)?;
        self.admit_site(ctx, method::REMOVE_CONTACT, site_id)
            .await?;
        self.admit_removal(ctx, site_id, contact_id).await?;
        let response = self
            .clients
            .remove_contact(
                ctx,
                contacts::RemoveContactRequest {
                    contact_id: contact_id.to_string(),
                    etag: request.etag,
                    site_id: site_id.to_string(),
                },
            )
            .await?;
        self.registry_write_in_effect(ctx, &response.revision)
            .await?;
        Ok(pb::RemoveContactResponse {
            contact: Some(required(Svc::Contacts, "contact", response.contact)?),
            revision: revision_token(Svc::Contacts, &response.revision),
        })
    }

    /// `ReplaceContact`: CONTACTS_UPDATE; the new holder is bound by e-mail (invited unless
    /// its address is proven, rule I1), then the registry swaps the holder (C5).
    pub(crate) async fn replace_contact(
        &self,
        ctx: &Ctx,
        request: pb::ReplaceContactRequest,
    ) -> Result<pb::ReplaceContactResponse, GatewayError> {
        let site_id = id("site_id", &request.site_id)?;
        let (user, invited) = self
            .admit_person(
                ctx,
                method::REPLACE_CONTACT,
                site_id,
                Some(request.role),
                PersonByEmail {
                    email: &request.email,
                    display_name: request.display_name.as_deref(),
                    locale: &request.locale,
                },
            )
            .await?;
        let response = self
            .clients
            .replace_contact(
                ctx,
                contacts::ReplaceContactRequest {
                    site_id: site_id.to_string(),
                    role: request.role,
                    new_user_id: user.user_id.clone(),
                    details: request.details,
                },
            )
            .await?;
        self.registry_write_in_effect(ctx, &response.revision)
            .await?;
        Ok(pb::ReplaceContactResponse {
            contact: Some(required(Svc::Contacts, "contact", response.contact)?),
            replaced: response.replaced,
            user: Some(user),
            user_invited: invited,
            revision: revision_token(Svc::Contacts, &response.revision),
        })
    }

    /// `TransferPrimaryContact` (C8): ACCOUNT_MANAGEMENT; the new primary is bound by e-mail
    /// (invited unless its address is proven, rule I1), then the registry transfers the role.
    ///
    /// The check is made against a state the registry can hold the transfer to (see
    /// `Registry::transfer_primary`): the gateway reads the site afresh and sends its etag
    /// (or the client's, which is no newer), so a transfer against a site that changed since
    /// then fails with `Aborted`. A customer who was not the primary in that read transfers
    /// on an explicit account-management grant only: what access management's projection of
    /// the registry still shows as implied by PRIMARY may be a transfer behind, so ten
    /// concurrent transfers by one primary commit exactly once.
    pub(crate) async fn transfer_primary_contact(
        &self,
        ctx: &Ctx,
        request: pb::TransferPrimaryContactRequest,
    ) -> Result<pb::TransferPrimaryContactResponse, GatewayError> {
        let site_id = id("site_id", &request.site_id)?;
        let (user, _) = self
            .admit_person(
                ctx,
                method::TRANSFER_PRIMARY_CONTACT,
                site_id,
                None,
                PersonByEmail {
                    email: &request.email,
                    display_name: request.display_name.as_deref(),
                    locale: &request.locale,
                },
            )
            .await?;
        let site = self.read_site(ctx, site_id).await?;
        let caller = ctx.caller()?;
        if !caller.is_operator() && site.primary_user_id != caller.subject.to_string() {
            let profile = self
                .clients
                .get_access_profile(
                    ctx,
                    kc_proto::access::GetAccessProfileRequest {
                        site_id: site_id.to_string(),
                        user_id: caller.subject.to_string(),
                    },
                )
                .await?
                .profile;
            let explicit = profile.and_then(|profile| profile.explicit);
            let granted = kc_proto::access::AccountManagementAccess::Granted as i32;
            if explicit.is_none_or(|tools| tools.account_management != granted) {
                return Err(GatewayError::PermissionDenied(
                    "permission denied: rule C8: only the current primary contact or a holder of account management transfers the primary contact"
                        .into(),
                ));
            }
        }
        let etag = if request.etag.is_empty() {
            site.etag
        } else {
            request.etag
        };
        let response = self
            .clients
            .transfer_primary_contact(
                ctx,
                contacts::TransferPrimaryContactRequest {
                    site_id: site_id.to_string(),
                    new_user_id: user.user_id,
                    etag,
                    previous_primary_role: request.previous_primary_role,
                },
            )
            .await?;
        self.registry_write_in_effect(ctx, &response.revision)
            .await?;
        Ok(pb::TransferPrimaryContactResponse {
            site: response.site,
            primary: response.primary,
            previous_primary: response.previous_primary,
            revision: revision_token(Svc::Contacts, &response.revision),
        })
    }
}

#[cfg(test)]
mod tests {
    use kc_proto::contacts::ContactDetails;
    use kc_proto::contacts::ContactRole as R;

    use super::*;

    fn contact(id: &str, user: &str, role: R, created: i64) -> Contact {
        Contact {
            contact_id: id.into(),
            site_id: "s".into(),
            user_id: user.into(),
            role: role as i32,
            details: Some(ContactDetails {
                phone: format!("+3310000000{created}"),
                ..Default::default()
            }),
            create_time: Some(prost_types::Timestamp {
                seconds: created,
                nanos: 0,
            }),
            update_time: None,
            etag: format!("{created}"),
            ..Default::default()
        }
    }

    #[test]
    fn contacts_listed_by_person_make_one_group_per_person_in_order() {
        let page = [
            contact("c1", "ann", R::Primary, 1),
            contact("c4", "ann", R::Billing, 4),
            contact("c5", "bob", R::Administrative, 5),
            contact("c2", "bob", R::SiteTechnical, 2),
            contact("c3", "cyd", R::Secondary, 3),
        ];
        let grouped = group_by_person(&page);
        let order: Vec<(&str, Vec<&str>)> = grouped
            .iter()
            .map(|contacts| {
                (
                    contacts[0].user_id.as_str(),
                    contacts.iter().map(|c| c.contact_id.as_str()).collect(),
                )
            })
            .collect();
        assert_eq!(
            order,
            vec![
                ("ann", vec!["c1", "c4"]),
                ("bob", vec!["c5", "c2"]),
                ("cyd", vec!["c3"]),
            ]
        );
        assert!(group_by_person(&[]).is_empty());
    }

    #[test]
    fn a_view_shows_the_highest_roles_details_and_falls_back_to_the_login_email() {
        let user = User {
            user_id: "bob".into(),
            email: "bob@example.com".into(),
            display_name: "Bob".into(),
            ..Default::default()
        };
        let contacts = [
            contact("c5", "bob", R::Administrative, 5),
            contact("c2", "bob", R::SiteTechnical, 2),
        ];
        let view = contact_view("bob", Some((&user).into()), &contacts);
        assert_eq!(view.display_name, "Bob");
        assert_eq!(view.email, "bob@example.com");
        assert_eq!(view.notification_email, "bob@example.com"); // rule C9 fallback
        assert_eq!(view.phone, "+33100000005");
        assert_eq!(
            view.roles,
            vec![R::Administrative as i32, R::SiteTechnical as i32]
        );
        assert_eq!(view.contacts.len(), 2);
        assert_eq!(view.contacts[1].contact_id, "c2");
        let unknown = contact_view("ghost", None, &contacts[..1]);
        assert_eq!(
            (unknown.email.as_str(), unknown.display_name.as_str()),
            ("", "")
        );
    }

    #[test]
    fn page_tokens_round_trip_and_stay_with_their_site() {
        let site = Uuid::now_v7();
        let token = PeopleToken {
            site_id: site,
            registry_token: "cmVnaXN0cnk".into(),
        };
        assert_eq!(
            PeopleToken::decode(&token.encode(), site).unwrap(),
            "cmVnaXN0cnk"
        );
        assert_eq!(PeopleToken::decode("", site).unwrap(), "");
        let other = PeopleToken::decode(&token.encode(), Uuid::now_v7()).unwrap_err();
        assert!(other.to_string().contains("page_token"), "{other}");
        for wrong in [
            encode_token(&["not-a-site", "x"]),
            encode_token(&[&site.to_string(), ""]),
            encode_token(&[&site.to_string()]),
            "%%%".to_owned(),
        ] {
            assert!(PeopleToken::decode(&wrong, site).is_err(), "{wrong}");
        }
    }
}
