//! Site users: the support users of a site (U4, U5: ListSupportUsers, AddSupportUser,
//! RevokeSupportAccess; levels change with SetSupportAccess) and `AddSiteUser`, the vendor's
//! "Add New User" in one call.
//!
//! Access management decides every right in the transaction that writes it (U4–U6, T4, T7,
//! I1: its `SetUserAccess` and `ListSupportUsers` check the caller again); the gateway's
//! check is the fast first filter.
//!
//! # `AddSiteUser`: one call, one outcome
//! It writes in three services that share no transaction (identity: the person; the
//! registry: the SITE_USER contact; access management: the tool and support levels), so it
//! is built as a saga whose steps that can be refused all run before the first write:
//! 1. **Validate, write nothing.** The request's fields; the caller's authority for each
//!    right (one `BatchCheck`: CONTACTS_UPDATE to name a SITE_USER, C6; ACCESS_UPDATE when a
//!    tool level is above NONE; SUPPORT_ADMIN when the support level is above NO_ACCESS); the
//!    person looked up by e-mail without inviting anyone (a disabled account is refused, I4;
//!    an unknown address needs a display name); then access management's dry run
//!    (`SetUserAccess validate_only`) of the exact levels for that person (or for a person
//!    new to the site), which applies T4 tool by tool, U4, U6 and T7 on the state it holds.
//! 2. **Write, in this order:** the person, only when nobody has the address (identity's
//!    `InviteUser`: the account must exist before a role can name it, and creating it mails
//!    the invitation code); the SITE_USER contact (the registry refuses a person who already
//!    is one, before anything else is written for a known person); then the levels, in one
//!    access transaction that also publishes the welcome (`welcome`): the notification
//!    service mails it from that event, so the person is welcomed exactly when the last
//!    write commits, and never when it fails.
//! 3. **Compensate.** When the access write fails, the contact is removed again (RemoveContact,
//!    audited by the registry). When the compensation itself fails, the error says so and
//!    the contact id is logged for an operator.
//!
//! An account that exists unproven (invited earlier, or registered and not verified) is
//! not invited again: it already holds its invitation, and the welcome tells its owner to
//! claim the account with the address; its rights count from the proof (I1). Only an address
//! nobody has is invited, and only once every check passed: what can still fail after it is
//! a service that is down or a race with a concurrent change, and then the compensation
//! leaves an invited account that holds nothing (I1), never a role or a right.

use futures::TryFutureExt;
use kc_proto::access::{self, SupportLevel, ToolAccess};
use kc_proto::contacts;
use kc_proto::gateway as pb;
use kc_proto::identity::{User, UserState};
use uuid::Uuid;

use super::revisions::revision_token;
use super::rights::any_tool;
use super::{Gateway, id, page_size, required};
use crate::clients::{Ctx, Svc};
use crate::error::GatewayError;
use crate::policy::{Need, Rule, method, rule};
use kc_proto::access::Permission as P;

/// What granting tool levels needs besides the rule of `AddSiteUser` (T4).
const TOOLS_AUTHORITY: Need = Need::All(&[P::AccessUpdate]);
/// What granting a support level needs besides the rule of `AddSiteUser` (U4).
const SUPPORT_AUTHORITY: Need = Need::All(&[P::SupportAdmin]);

/// A support level that adds a support user: BASIC, FULL or ADMINISTRATOR.
fn support_user_level(level: i32) -> Result<i32, GatewayError> {
    match SupportLevel::try_from(level) {
        Ok(SupportLevel::Basic | SupportLevel::Full | SupportLevel::Administrator) => Ok(level),
        _ => Err(GatewayError::invalid(
            "support_level",
            "must be SUPPORT_LEVEL_BASIC, SUPPORT_LEVEL_FULL or SUPPORT_LEVEL_ADMINISTRATOR",
        )),
    }
}

/// The list entry of a support user's profile, with its identity.
fn support_user(profile: access::AccessProfile, user: Option<&User>) -> pb::SupportUser {
    let site_technical = profile
        .implied_by
        .contains(&(contacts::ContactRole::SiteTechnical as i32));
    pb::SupportUser {
        display_name: user.map(|u| u.display_name.clone()).unwrap_or_default(),
        email: user.map(|u| u.email.clone()).unwrap_or_default(),
        user_state: user.map(|u| u.state).unwrap_or_default(),
        support_level: profile.support_level,
        explicit_support_level: profile.explicit_support_level,
        site_technical,
        etag: profile.etag,
        user_id: profile.user_id,
    }
}

/// The levels one access write gives a person.
struct Levels<'a> {
    tools: Option<ToolAccess>,
    support_level: i32,
    reason: &'a str,
}

impl Gateway {
    /// The account of `email` when identity has one ([`Gateway::lookup_account`]); refused
    /// when it is disabled (I4). Nobody is invited.
    async fn account_of(&self, ctx: &Ctx, email: &str) -> Result<Option<User>, GatewayError> {
        if email.trim().is_empty() {
            return Err(GatewayError::invalid("email", "required"));
        }
        match self.lookup_account(ctx, email).await? {
            // rule I4: a disabled user holds nothing, so it is given nothing either.
            Some(user) if user.state == UserState::Disabled as i32 => {
                Err(GatewayError::FailedPrecondition(
                    "rule I4: the account of this e-mail is disabled; rights go only to \
                     active users"
                        .into(),
                ))
            }
            user => Ok(user),
        }
    }

    /// Access management's `SetUserAccess` of `levels` for `user` on `site_id`, as the
    /// caller: a dry run when `user` is `None` (a person new to the site) or
    /// `validate_only`. Only an account identity reports unproven may receive levels that
    /// wait for its proof (I1): for a proven one, access management waits until its
    /// projection of identity shows the proof, so the answer holds the effective levels.
    async fn set_user_access(
        &self,
        ctx: &Ctx,
        site_id: Uuid,
        user: Option<&User>,
        levels: &Levels<'_>,
        (validate_only, welcome): (bool, bool),
    ) -> Result<access::SetUserAccessResponse, GatewayError> {
        self.clients
            .set_user_access(
                ctx,
                access::SetUserAccessRequest {
                    site_id: site_id.to_string(),
                    user_id: user.map(|u| u.user_id.clone()).unwrap_or_default(),
                    tools: levels.tools,
                    support_level: levels.support_level,
                    reason: levels.reason.to_owned(),
                    etag: String::new(),
                    validate_only,
                    allow_invited: user.is_none_or(|u| u.state == UserState::Invited as i32),
                    welcome,
                },
            )
            .await
    }

    /// `ListSupportUsers`: SUPPORT_ADMIN, checked while access management lists them (which
    /// checks U4 again as the caller); names and addresses from identity.
    pub(crate) async fn list_support_users(
        &self,
        ctx: &Ctx,
        request: pb::ListSupportUsersRequest,
    ) -> Result<pb::ListSupportUsersResponse, GatewayError> {
        let site_id = id("site_id", &request.site_id)?;
        let size = page_size(request.page_size, 100)?;
        let read = self
            .clients
            .list_support_users(
                ctx,
                access::ListSupportUsersRequest {
                    site_id: site_id.to_string(),
                    page_size: size,
                    page_token: request.page_token,
                },
            )
            .map_ok(|read| (read.profiles, read.next_page_token));
        let (profiles, next_page_token) = self
            .profiles_with_users(ctx, method::LIST_SUPPORT_USERS, site_id, read)
            .await?;
        Ok(pb::ListSupportUsersResponse {
            users: profiles
                .into_iter()
                .map(|(profile, user)| support_user(profile, user.as_ref()))
                .collect(),
            next_page_token,
        })
    }

    /// `AddSupportUser`: SUPPORT_ADMIN; access management's dry run of the level for the
    /// person (U4, U6, T7) before anyone is invited, then the person (invited unless proven,
    /// I1), then the level.
    pub(crate) async fn add_support_user(
        &self,
        ctx: &Ctx,
        request: pb::AddSupportUserRequest,
    ) -> Result<pb::AddSupportUserResponse, GatewayError> {
        let site_id = id("site_id", &request.site_id)?;
        let support_level = support_user_level(request.support_level)?;
        self.admit_site(ctx, method::ADD_SUPPORT_USER, site_id)
            .await?;
        let levels = Levels {
            tools: None,
            support_level,
            reason: &request.reason,
        };
        let known = self.account_of(ctx, &request.email).await?;
        self.set_user_access(ctx, site_id, known.as_ref(), &levels, (true, false))
            .await?;
        let (user, invited) = self
            .person(
                ctx,
                &request.email,
                request.display_name.as_deref(),
                &request.locale,
                self.site_language(ctx, site_id),
            )
            .await?;
        let response = self
            .set_user_access(ctx, site_id, Some(&user), &levels, (false, false))
            .await?;
        self.access_write_in_effect(ctx, &response.revision).await?;
        Ok(pb::AddSupportUserResponse {
            profile: Some(required(Svc::Access, "profile", response.profile)?),
            user: Some(user),
            user_invited: invited,
            revision: revision_token(Svc::Access, &response.revision),
        })
    }

    /// `RevokeSupportAccess`: SUPPORT_ADMIN; access management sets the explicit support
    /// level to NO_ACCESS as the caller (U4–U6).
    pub(crate) async fn revoke_support_access(
        &self,
        ctx: &Ctx,
        request: pb::RevokeSupportAccessRequest,
    ) -> Result<pb::RevokeSupportAccessResponse, GatewayError> {
        let site_id = id("site_id", &request.site_id)?;
        let user_id = id("user_id", &request.user_id)?;
        self.admit_site(ctx, method::REVOKE_SUPPORT_ACCESS, site_id)
            .await?;
        let response = self
            .clients
            .set_support_access(
                ctx,
                access::SetSupportAccessRequest {
                    site_id: site_id.to_string(),
                    user_id: user_id.to_string(),
                    support_level: SupportLevel::NoAccess as i32,
                    reason: request.reason,
                    etag: request.etag,
                    ..Default::default()
                },
            )
            .await?;
        self.access_write_in_effect(ctx, &response.revision).await?;
        Ok(pb::RevokeSupportAccessResponse {
            profile: response.profile,
            revision: revision_token(Svc::Access, &response.revision),
        })
    }

    /// `AddSiteUser`: the saga of the module documentation.
    pub(crate) async fn add_site_user(
        &self,
        ctx: &Ctx,
        request: pb::AddSiteUserRequest,
    ) -> Result<pb::AddSiteUserResponse, GatewayError> {
        let site_id = id("site_id", &request.site_id)?;
        let Rule::Site(need) = rule(method::ADD_SITE_USER) else {
            return Err(GatewayError::Internal(anyhow::anyhow!(
                "AddSiteUser must have a Site rule"
            )));
        };
        // 1. Validate: the caller's authority for each right, in one BatchCheck.
        let mut needs = vec![need];
        if request.tools.as_ref().is_some_and(any_tool) {
            needs.push(TOOLS_AUTHORITY);
        }
        if request.support_level > SupportLevel::NoAccess as i32 {
            needs.push(SUPPORT_AUTHORITY);
        }
        self.require_each(ctx, site_id, &needs).await?;
        let levels = Levels {
            tools: request.tools,
            support_level: request.support_level,
            reason: &request.reason,
        };
        let known = self.account_of(ctx, &request.email).await?;
        if known.is_none()
            && request
                .display_name
                .as_deref()
                .is_none_or(|name| name.trim().is_empty())
        {
            return Err(GatewayError::invalid(
                "display_name",
                "required: nobody has this e-mail yet, so the person is invited with this name",
            ));
        }
        // The exact levels for this person (or a person new to the site), by the service
        // that will write them: T4 tool by tool, U4, U6, T7, I1.
        self.set_user_access(ctx, site_id, known.as_ref(), &levels, (true, false))
            .await?;
        // 2. Write: the person (only an address nobody has), the contact, the levels.
        let (user, invited) = match known {
            Some(user) => (user, false),
            None => {
                self.person(
                    ctx,
                    &request.email,
                    request.display_name.as_deref(),
                    &request.locale,
                    self.site_language(ctx, site_id),
                )
                .await?
            }
        };
        let assigned = self
            .clients
            .assign_contact(
                ctx,
                contacts::AssignContactRequest {
                    site_id: site_id.to_string(),
                    user_id: user.user_id.clone(),
                    role: contacts::ContactRole::SiteUser as i32,
                    details: request.details,
                },
            )
            .await?;
        let contact = required(Svc::Contacts, "contact", assigned.contact)?;
        let granted = match self
            .set_user_access(ctx, site_id, Some(&user), &levels, (false, true))
            .await
        {
            Ok(granted) => granted,
            Err(error) => {
                // 3. Compensate: the contact goes again; the levels were not written.
                self.remove_added_contact(ctx, site_id, &contact).await?;
                return Err(error);
            }
        };
        self.registry_write_in_effect(ctx, &assigned.revision)
            .await?;
        self.access_write_in_effect(ctx, &granted.revision).await?;
        Ok(pb::AddSiteUserResponse {
            contact: Some(contact),
            profile: Some(required(Svc::Access, "profile", granted.profile)?),
            user: Some(user),
            user_invited: invited,
            revision: revision_token(Svc::Access, &granted.revision),
        })
    }

    /// Removes the contact an `AddSiteUser` assigned when a later step failed; a failure of
    /// the removal itself is logged with the contact id (no personal data) and returned.
    async fn remove_added_contact(
        &self,
        ctx: &Ctx,
        site_id: Uuid,
        contact: &contacts::Contact,
    ) -> Result<(), GatewayError> {
        let removed = self
            .clients
            .remove_contact(
                ctx,
                contacts::RemoveContactRequest {
                    contact_id: contact.contact_id.clone(),
                    etag: contact.etag.clone(),
                    site_id: site_id.to_string(),
                },
            )
            .await;
        match removed {
            Ok(_) => Ok(()),
            Err(error) => {
                tracing::error!(
                    %site_id,
                    contact_id = %contact.contact_id,
                    error = %error,
                    "add site user: the compensation of a failed grant could not remove the contact"
                );
                Err(GatewayError::Internal(anyhow::anyhow!(
                    "add site user left contact {} after a failed grant: {error}",
                    contact.contact_id
                )))
            }
        }
    }
}
