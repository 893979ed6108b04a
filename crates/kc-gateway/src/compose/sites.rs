//! The caller and its sites (GetMe, ListMySites) and the site RPCs (CreateSite, GetSite,
//! UpdateSite, GetSiteCompliance).

use std::collections::BTreeMap;

use futures::{StreamExt, TryStreamExt};
use kc_proto::access::{self, SupportLevel, ToolAccess};
use kc_proto::contacts::{self, Site};
use kc_proto::gateway as pb;
use kc_proto::identity;
use kc_runtime::paging::{decode_token, encode_token};
use tonic::Code;
use uuid::Uuid;

use super::contacts::{Account, contact_view};
use super::revisions::revision_token;
use super::{DOWNSTREAM_PAGE_MAX, Gateway, all_pages, id, page_size, required};
use crate::clients::{Ctx, Svc};
use crate::error::GatewayError;
use crate::policy::method;

/// Mask paths of UpdateSite only operators may change: S&S is part of the agreement (C5).
const OPERATOR_ONLY_SITE_FIELDS: [&str; 2] = ["support_active", "support_end_date"];

/// Sites read at once to complete the sites where the caller holds rights but no role.
const SITE_READS_IN_FLIGHT: usize = 8;

/// Every level NONE: the rights of a caller that holds none on a site.
fn no_tools() -> ToolAccess {
    ToolAccess {
        software: access::SoftwareAccess::None as i32,
        reporting: access::ReportingAccess::None as i32,
        entitlements: access::EntitlementsAccess::None as i32,
        account_management: access::AccountManagementAccess::None as i32,
        manage_access: access::ManageAccess::None as i32,
        contact_updates: access::ContactUpdatesAccess::None as i32,
        account_documents: access::AccountDocumentsAccess::None as i32,
    }
}

/// What the caller holds on one site while its answer is composed.
#[derive(Default)]
struct Standing {
    site: Option<Site>,
    roles: Vec<i32>,
    profile: Option<access::AccessProfile>,
}

impl Gateway {
    /// Every contact role `user_id` holds, with its site, per the registry.
    pub(super) async fn user_contacts(
        &self,
        ctx: &Ctx,
        user_id: Uuid,
    ) -> Result<Vec<contacts::UserContact>, GatewayError> {
        let user = user_id.to_string();
        all_pages("contacts", |page_token| {
            let request = contacts::ListUserContactsRequest {
                user_id: user.clone(),
                page_size: DOWNSTREAM_PAGE_MAX,
                page_token,
            };
            async move {
                let response = self.clients.list_user_contacts(ctx, request).await?;
                Ok((response.contacts, response.next_page_token))
            }
        })
        .await
    }

    /// Every site where `user_id` holds a role or rights, in site-id order.
    async fn sites_of(&self, ctx: &Ctx, user_id: Uuid) -> Result<Vec<pb::MySite>, GatewayError> {
        let user = user_id.to_string();
        let contacts = self.user_contacts(ctx, user_id);
        let profiles = all_pages("access profiles", |page_token| {
            let request = access::ListUserAccessRequest {
                user_id: user.clone(),
                page_size: DOWNSTREAM_PAGE_MAX,
                page_token,
            };
            async move {
                let response = self.clients.list_user_access(ctx, request).await?;
                Ok((response.profiles, response.next_page_token))
            }
        });
        let (contacts, profiles) = futures::try_join!(contacts, profiles)?;

        let mut standings: BTreeMap<String, Standing> = BTreeMap::new();
        for user_contact in contacts {
            let Some(contact) = user_contact.contact else {
                continue;
            };
            let standing = standings.entry(contact.site_id.clone()).or_default();
            standing.roles.push(contact.role);
            if standing.site.is_none() {
                standing.site = user_contact.site;
            }
        }
        for profile in profiles {
            let site_id = profile.site_id.clone();
            standings.entry(site_id).or_default().profile = Some(profile);
        }

        // Sites where the caller holds rights but no role: read them.
        let missing: Vec<String> = standings
            .iter()
            .filter(|(_, standing)| standing.site.is_none())
            .map(|(site_id, _)| site_id.clone())
            .collect();
        let found: Vec<(String, Option<Site>)> = futures::stream::iter(missing)
            .map(|site_id| async move {
                let read = self
                    .clients
                    .get_site(
                        ctx,
                        contacts::GetSiteRequest {
                            site_id: site_id.clone(),
                        },
                    )
                    .await;
                match read {
                    Ok(response) => Ok((site_id, response.site)),
                    Err(GatewayError::Downstream { status, .. })
                        if status.code() == Code::NotFound =>
                    {
                        Ok((site_id, None))
                    }
                    Err(error) => Err(error),
                }
            })
            .buffered(SITE_READS_IN_FLIGHT)
            .try_collect()
            .await?;
        for (site_id, site) in found {
            if let Some(standing) = standings.get_mut(&site_id) {
                standing.site = site;
            }
        }

        Ok(standings
            .into_values()
            .filter_map(|mut standing| {
                let site = standing.site?;
                standing.roles.sort_unstable();
                standing.roles.dedup();
                let (effective, support_level, grant_valid_until, grant_valid_from) =
                    match standing.profile {
                        Some(profile) => (
                            profile.effective.unwrap_or_else(no_tools),
                            profile.support_level,
                            profile.valid_until,
                            profile.valid_from,
                        ),
                        None => (no_tools(), SupportLevel::NoAccess as i32, None, None),
                    };
                Some(pb::MySite {
                    site: Some(site),
                    roles: standing.roles,
                    effective: Some(effective),
                    support_level,
                    grant_valid_until,
                    grant_valid_from,
                })
            })
            .collect())
    }

    /// `GetMe`: identity `GetUser`, the registry's `ListUserContacts` and access
    /// management's `ListUserAccess`, concurrently.
    pub(crate) async fn get_me(
        &self,
        ctx: &Ctx,
        _request: pb::GetMeRequest,
    ) -> Result<pb::GetMeResponse, GatewayError> {
        let caller = self.admit(ctx, method::GET_ME)?;
        let user = self.clients.get_user(
            ctx,
            identity::GetUserRequest {
                user_id: caller.subject.to_string(),
            },
        );
        let (user, sites) = futures::try_join!(user, self.sites_of(ctx, caller.subject))?;
        Ok(pb::GetMeResponse {
            user: Some(required(Svc::Identity, "user", user.user)?),
            sites,
        })
    }

    /// `ListMySites`: the sites of GetMe, a page at a time (keyset on the site id).
    pub(crate) async fn list_my_sites(
        &self,
        ctx: &Ctx,
        request: pb::ListMySitesRequest,
    ) -> Result<pb::ListMySitesResponse, GatewayError> {
        let caller = self.admit(ctx, method::LIST_MY_SITES)?;
        let size = page_size(request.page_size, 100)? as usize;
        let after = decode_token(&request.page_token, 1)?.and_then(|mut key| key.pop());
        let sites = self.sites_of(ctx, caller.subject).await?;
        let mut page: Vec<pb::MySite> = sites
            .into_iter()
            .filter(|mine| match (&after, &mine.site) {
                (Some(after), Some(site)) => site.site_id.as_str() > after.as_str(),
                _ => true,
            })
            .take(size + 1)
            .collect();
        let next_page_token = if page.len() > size {
            page.truncate(size);
            page.last()
                .and_then(|mine| mine.site.as_ref())
                .map(|site| encode_token(&[site.site_id.as_str()]))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(pb::ListMySitesResponse {
            sites: page,
            next_page_token,
        })
    }

    /// `CreateSite` (operators): the people are bound by e-mail (invited unless proven, I1),
    /// concurrently; then the registry creates the site with them (S1, C5).
    pub(crate) async fn create_site(
        &self,
        ctx: &Ctx,
        request: pb::CreateSiteRequest,
    ) -> Result<pb::CreateSiteResponse, GatewayError> {
        self.admit(ctx, method::CREATE_SITE)?;
        let Some(primary) = request.primary_contact else {
            return Err(GatewayError::invalid(
                "primary_contact",
                "required (rule S1)",
            ));
        };
        if request.support_active && request.site_technical_contact.is_none() {
            return Err(GatewayError::invalid(
                "site_technical_contact",
                "rule C5: required when support_active",
            ));
        }
        let site_locale = if request.language.trim().is_empty() {
            "en".to_owned()
        } else {
            request.language.clone()
        };
        let invite_locale = || {
            let locale = site_locale.clone();
            async move { Ok(locale) }
        };
        let primary_person = async {
            self.person(
                ctx,
                &primary.email,
                Some(primary.display_name.as_str()),
                &primary.locale,
                invite_locale(),
            )
            .await
            .map_err(|error| error.prefix_fields("primary_contact"))
        };
        let technical_person = async {
            match &request.site_technical_contact {
                Some(person) => self
                    .person(
                        ctx,
                        &person.email,
                        Some(person.display_name.as_str()),
                        &person.locale,
                        invite_locale(),
                    )
                    .await
                    .map(Some)
                    .map_err(|error| error.prefix_fields("site_technical_contact")),
                None => Ok(None),
            }
        };
        let ((primary_user, _), technical) = futures::try_join!(primary_person, technical_person)?;
        let technical_user = technical.map(|(user, _)| user);

        let created = self
            .clients
            .create_site(
                ctx,
                contacts::CreateSiteRequest {
                    site_number: request.site_number,
                    customer_number: request.customer_number,
                    name: request.name,
                    country_code: request.country_code,
                    language: request.language,
                    program: request.program,
                    support_active: request.support_active,
                    support_end_date: request.support_end_date,
                    business_partner_email: request.business_partner_email,
                    primary_user_id: primary_user.user_id.clone(),
                    site_technical_user_id: technical_user
                        .as_ref()
                        .map(|user| user.user_id.clone())
                        .unwrap_or_default(),
                    primary_details: primary.details,
                    // The STC and its details in the same transaction as the site.
                    site_technical_details: request
                        .site_technical_contact
                        .and_then(|person| person.details),
                },
            )
            .await
            .map_err(|error| {
                error.rename_fields(&[
                    ("primary_details", "primary_contact.details"),
                    ("primary_user_id", "primary_contact"),
                    ("site_technical_details", "site_technical_contact.details"),
                    ("site_technical_user_id", "site_technical_contact"),
                ])
            })?;
        self.registry_write_in_effect(ctx, &created.revision)
            .await?;
        let revision = revision_token(Svc::Contacts, &created.revision);
        let site = required(Svc::Contacts, "site", created.site)?;
        let contacts = created.contacts;

        let views = contacts
            .iter()
            .map(|contact| {
                let user = if contact.user_id == primary_user.user_id {
                    Some(&primary_user)
                } else {
                    technical_user
                        .as_ref()
                        .filter(|u| u.user_id == contact.user_id)
                };
                contact_view(
                    &contact.user_id,
                    user.map(Account::from),
                    std::slice::from_ref(contact),
                )
            })
            .collect();
        Ok(pb::CreateSiteResponse {
            site: Some(site),
            contacts: views,
            revision,
        })
    }

    /// `GetSite`: CONTACTS_VIEW, checked while the site is read.
    pub(crate) async fn get_site(
        &self,
        ctx: &Ctx,
        request: pb::GetSiteRequest,
    ) -> Result<pb::GetSiteResponse, GatewayError> {
        let site_id = id("site_id", &request.site_id)?;
        let (allowed, read) = futures::join!(
            self.admit_site(ctx, method::GET_SITE, site_id),
            self.clients.get_site(
                ctx,
                contacts::GetSiteRequest {
                    site_id: site_id.to_string(),
                },
            )
        );
        allowed?;
        Ok(pb::GetSiteResponse {
            site: Some(required(Svc::Contacts, "site", read?.site)?),
        })
    }

    /// `UpdateSite`: ACCOUNT_MANAGEMENT; the S&S fields are operators' only.
    pub(crate) async fn update_site(
        &self,
        ctx: &Ctx,
        request: pb::UpdateSiteRequest,
    ) -> Result<pb::UpdateSiteResponse, GatewayError> {
        let Some(site) = request.site else {
            return Err(GatewayError::invalid("site", "required"));
        };
        let site_id = id("site.site_id", &site.site_id)?;
        self.admit_site(ctx, method::UPDATE_SITE, site_id).await?;
        let operator_only = request.update_mask.as_ref().is_some_and(|mask| {
            mask.paths
                .iter()
                .any(|path| OPERATOR_ONLY_SITE_FIELDS.contains(&path.trim()))
        });
        if operator_only && !ctx.caller()?.is_operator() {
            return Err(GatewayError::PermissionDenied(
                "permission denied: only operators change support_active and support_end_date (S&S is part of the agreement)"
                    .into(),
            ));
        }
        let response = self
            .clients
            .update_site(
                ctx,
                contacts::UpdateSiteRequest {
                    site: Some(site),
                    update_mask: request.update_mask,
                    etag: request.etag,
                },
            )
            .await?;
        self.registry_write_in_effect(ctx, &response.revision)
            .await?;
        Ok(pb::UpdateSiteResponse {
            site: Some(required(Svc::Contacts, "site", response.site)?),
            revision: revision_token(Svc::Contacts, &response.revision),
        })
    }

    /// `GetSiteCompliance`: CONTACTS_VIEW, checked while the compliance is read.
    pub(crate) async fn get_site_compliance(
        &self,
        ctx: &Ctx,
        request: pb::GetSiteComplianceRequest,
    ) -> Result<pb::GetSiteComplianceResponse, GatewayError> {
        let site_id = id("site_id", &request.site_id)?;
        let (allowed, read) = futures::join!(
            self.admit_site(ctx, method::GET_SITE_COMPLIANCE, site_id),
            self.clients.get_site_compliance(
                ctx,
                contacts::GetSiteComplianceRequest {
                    site_id: site_id.to_string(),
                },
            )
        );
        allowed?;
        Ok(pb::GetSiteComplianceResponse {
            compliance: Some(required(Svc::Contacts, "compliance", read?.compliance)?),
        })
    }
}
