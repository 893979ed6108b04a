//! Rights: GetAccessProfile, SetToolAccess, SetSupportAccess, RevokeAccess, ListSiteAccess.
//! After the gateway's check, access management applies T4 and U4–U6 as the caller.

use futures::TryFutureExt;
use kc_proto::access::{self, AccessProfile, SupportLevel, ToolAccess};
use kc_proto::gateway as pb;

use super::revisions::revision_token;
use super::{Gateway, denied, id, page_size, required};
use crate::clients::{Ctx, Svc};
use crate::error::GatewayError;
use crate::policy::{Rule, method, rule};

/// Whether any tool level is above NONE (each tool's NONE is 1, UNSPECIFIED 0).
pub(super) fn any_tool(tools: &ToolAccess) -> bool {
    [
        tools.software,
        tools.reporting,
        tools.entitlements,
        tools.account_management,
        tools.manage_access,
        tools.contact_updates,
        tools.account_documents,
    ]
    .iter()
    .any(|level| *level > 1)
}

/// Whether a profile shows any relation of its user to the site: a role that implies
/// rights, a grant (now or ever), or any effective level.
pub(super) fn relates(profile: &AccessProfile) -> bool {
    !profile.implied_by.is_empty()
        || profile.update_time.is_some()
        || profile.effective.as_ref().is_some_and(any_tool)
        || profile.support_level > SupportLevel::NoAccess as i32
}

impl Gateway {
    /// Whether `user_id` holds any contact role on `site_id`, per the registry.
    async fn holds_role_on(
        &self,
        ctx: &Ctx,
        user_id: uuid::Uuid,
        site_id: uuid::Uuid,
    ) -> Result<bool, GatewayError> {
        let site = site_id.to_string();
        let contacts = self.user_contacts(ctx, user_id).await?;
        Ok(contacts
            .iter()
            .filter_map(|user_contact| user_contact.contact.as_ref())
            .any(|contact| contact.site_id == site))
    }

    /// `GetAccessProfile`: ACCESS_VIEW on the site, or the caller's own profile on a site
    /// where it has a role or rights (a site it has nothing to do with is refused like any
    /// other, so a site id reveals nothing).
    pub(crate) async fn get_access_profile(
        &self,
        ctx: &Ctx,
        request: pb::GetAccessProfileRequest,
    ) -> Result<pb::GetAccessProfileResponse, GatewayError> {
        let site_id = id("site_id", &request.site_id)?;
        let caller = ctx.caller()?;
        let user_id = if request.user_id.is_empty() {
            caller.subject
        } else {
            id("user_id", &request.user_id)?
        };
        let read = self.clients.get_access_profile(
            ctx,
            access::GetAccessProfileRequest {
                site_id: site_id.to_string(),
                user_id: user_id.to_string(),
            },
        );
        let own = caller.is_user(user_id) && !caller.is_operator();
        let profile = if own {
            let Rule::SiteOrSelf(need) = rule(method::GET_ACCESS_PROFILE) else {
                return Err(GatewayError::Internal(anyhow::anyhow!(
                    "GetAccessProfile must have a SiteOrSelf rule"
                )));
            };
            let profile = required(Svc::Access, "profile", read.await?.profile)?;
            // A role that implies no rights (SECONDARY, SITE_USER…) is a relation too; only
            // the registry knows those.
            if !relates(&profile) && !self.holds_role_on(ctx, user_id, site_id).await? {
                return Err(denied(need));
            }
            profile
        } else {
            let (allowed, read) = futures::join!(
                self.admit_site(ctx, method::GET_ACCESS_PROFILE, site_id),
                read
            );
            allowed?;
            required(Svc::Access, "profile", read?.profile)?
        };
        Ok(pb::GetAccessProfileResponse {
            profile: Some(profile),
        })
    }

    /// `SetToolAccess`: ACCESS_UPDATE, then access management's T4 as the caller.
    pub(crate) async fn set_tool_access(
        &self,
        ctx: &Ctx,
        request: pb::SetToolAccessRequest,
    ) -> Result<pb::SetToolAccessResponse, GatewayError> {
        let site_id = id("site_id", &request.site_id)?;
        self.admit_site(ctx, method::SET_TOOL_ACCESS, site_id)
            .await?;
        let response = self
            .clients
            .set_tool_access(
                ctx,
                access::SetToolAccessRequest {
                    site_id: site_id.to_string(),
                    user_id: request.user_id,
                    tools: request.tools,
                    reason: request.reason,
                    etag: request.etag,
                    valid_until: request.valid_until,
                    without_end: request.without_end,
                    valid_from: request.valid_from,
                },
            )
            .await?;
        self.access_write_in_effect(ctx, &response.revision).await?;
        Ok(pb::SetToolAccessResponse {
            profile: response.profile,
            revision: revision_token(Svc::Access, &response.revision),
        })
    }

    /// `SetSupportAccess`: SUPPORT_ADMIN, then access management's U4–U6 as the caller.
    pub(crate) async fn set_support_access(
        &self,
        ctx: &Ctx,
        request: pb::SetSupportAccessRequest,
    ) -> Result<pb::SetSupportAccessResponse, GatewayError> {
        let site_id = id("site_id", &request.site_id)?;
        self.admit_site(ctx, method::SET_SUPPORT_ACCESS, site_id)
            .await?;
        let response = self
            .clients
            .set_support_access(
                ctx,
                access::SetSupportAccessRequest {
                    site_id: site_id.to_string(),
                    user_id: request.user_id,
                    support_level: request.support_level,
                    reason: request.reason,
                    etag: request.etag,
                    valid_until: request.valid_until,
                    without_end: request.without_end,
                    valid_from: request.valid_from,
                },
            )
            .await?;
        self.access_write_in_effect(ctx, &response.revision).await?;
        Ok(pb::SetSupportAccessResponse {
            profile: response.profile,
            revision: revision_token(Svc::Access, &response.revision),
        })
    }

    /// `RevokeAccess`: ACCESS_UPDATE, then access management's T4 and U4–U6 as the caller.
    pub(crate) async fn revoke_access(
        &self,
        ctx: &Ctx,
        request: pb::RevokeAccessRequest,
    ) -> Result<pb::RevokeAccessResponse, GatewayError> {
        let site_id = id("site_id", &request.site_id)?;
        self.admit_site(ctx, method::REVOKE_ACCESS, site_id).await?;
        let response = self
            .clients
            .revoke_access(
                ctx,
                access::RevokeAccessRequest {
                    site_id: site_id.to_string(),
                    user_id: request.user_id,
                    reason: request.reason,
                    etag: request.etag,
                },
            )
            .await?;
        self.access_write_in_effect(ctx, &response.revision).await?;
        Ok(pb::RevokeAccessResponse {
            profile: response.profile,
            revision: revision_token(Svc::Access, &response.revision),
        })
    }

    /// `ListSiteAccess`: ACCESS_VIEW, checked while the profiles are read; with the users'
    /// names from identity.
    pub(crate) async fn list_site_access(
        &self,
        ctx: &Ctx,
        request: pb::ListSiteAccessRequest,
    ) -> Result<pb::ListSiteAccessResponse, GatewayError> {
        let site_id = id("site_id", &request.site_id)?;
        let size = page_size(request.page_size, 100)?;
        let read = self
            .clients
            .list_site_access(
                ctx,
                access::ListSiteAccessRequest {
                    site_id: site_id.to_string(),
                    page_size: size,
                    page_token: request.page_token,
                },
            )
            .map_ok(|read| (read.profiles, read.next_page_token));
        let (profiles, next_page_token) = self
            .profiles_with_users(ctx, method::LIST_SITE_ACCESS, site_id, read)
            .await?;
        let entries = profiles
            .into_iter()
            .map(|(profile, user)| {
                let user = user.as_ref();
                pb::SiteAccessEntry {
                    display_name: user.map(|u| u.display_name.clone()).unwrap_or_default(),
                    email: user.map(|u| u.email.clone()).unwrap_or_default(),
                    profile: Some(profile),
                }
            })
            .collect();
        Ok(pb::ListSiteAccessResponse {
            entries,
            next_page_token,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_relates_its_user_to_the_site_through_roles_grants_or_levels() {
        let nothing = AccessProfile {
            effective: Some(ToolAccess {
                software: 1,
                reporting: 1,
                entitlements: 1,
                account_management: 1,
                manage_access: 1,
                contact_updates: 1,
                account_documents: 1,
            }),
            support_level: SupportLevel::NoAccess as i32,
            ..Default::default()
        };
        assert!(!relates(&nothing));
        let role = AccessProfile {
            implied_by: vec![kc_proto::contacts::ContactRole::Primary as i32],
            ..nothing.clone()
        };
        assert!(relates(&role));
        let viewer = AccessProfile {
            effective: Some(ToolAccess {
                contact_updates: access::ContactUpdatesAccess::View as i32,
                ..nothing.effective.unwrap()
            }),
            ..nothing.clone()
        };
        assert!(relates(&viewer));
        let support = AccessProfile {
            support_level: SupportLevel::Basic as i32,
            ..nothing.clone()
        };
        assert!(relates(&support));
    }
}
