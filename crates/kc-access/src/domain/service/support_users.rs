//! Support users (U4) and the all-or-nothing change of one user's levels on a site
//! (SetUserAccess), which the gateway's support-user RPCs and `AddSiteUser` write through.
//!
//! Decisions taken here:
//! - **Who sees the support users.** U4 gives the site's support users to the site technical
//!   contact (implicitly ADMINISTRATOR, U5) and support ADMINISTRATORs: a person the call is
//!   made for must hold support ADMINISTRATOR on the site (`PermissionDenied`, citing U4);
//!   operators and services acting for nobody read (they already read every profile).
//! - **Who is listed.** Users with a stored support level above NO_ACCESS (in force, not yet
//!   started, or held by an invited account that counts once proven) and the site technical
//!   contact; their profiles show the effective level (NO_ACCESS while unproven or disabled,
//!   I1, I4) and the explicit one.
//! - **One transaction.** SetUserAccess changes tools and support together under the site's
//!   lock with the rules of SetToolAccess and SetSupportAccess (T4, T7, U4–U6, I1); each part
//!   is checked only when it changes, so granting NONE needs no authority. Either every part
//!   holds and is written, or nothing is.
//! - **Invitees (I1).** With `allow_invited`, an account the projection of identity's users
//!   knows as invited (unproven and not disabled) receives the levels: the projection
//!   counts an unproven user's rights as none (the same rule that holds its roles), so they
//!   take effect when its owner proves the address, through the refresh identity's event
//!   causes. A user the projection does not know yet is waited for (identity's stream may be
//!   a moment behind the invitation), never taken as proven.
//! - **Dry runs.** `validate_only` runs every check inside the transaction and rolls it back;
//!   without a user id it checks the grantor's authority for a person new to the site (no
//!   role, no grant: neither the primary nor the STC, and not the grantor itself).
//! - **Welcome.** A change marked `welcome` publishes its RightsChanged event with
//!   `welcome` set, even when it grants nothing, so the person added to the site gets one
//!   welcome e-mail from the same commit as its rights, and none when the commit fails.

use super::*;
use crate::domain::commands::ToolLevels;

/// A page of a site's support users (ListSupportUsers, U4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SupportUsersQuery {
    /// Site.
    pub site_id: Uuid,
    /// The user id the previous page ended with.
    pub after: Option<Uuid>,
    /// Most profiles in the page.
    pub size: u32,
}

/// A change of a user's explicit tool levels and support level together (SetUserAccess).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserAccessChange {
    /// Site.
    pub site_id: Uuid,
    /// User whose levels change; `None` only for a dry run about a person new to the site.
    pub user_id: Option<Uuid>,
    /// The tool levels to set; the tools left `None` keep theirs.
    pub levels: ToolLevels,
    /// The support level to set; `None` keeps it.
    pub support: Option<SupportLevel>,
    /// Why (T5).
    pub reason: String,
    /// The version of the profile the caller read.
    pub etag: Etag,
    /// Check everything, write nothing.
    pub validate_only: bool,
    /// An invited (unproven, not disabled) account may receive the levels (I1).
    pub allow_invited: bool,
    /// The first rights of a person just added to the site: the event is its welcome.
    pub welcome: bool,
}

/// I1's refusal of a grant to an account the projection does not know as invited or proven.
const NOT_INVITED: &str = "the user is neither proven nor invited, or is disabled: rights \
     are granted only to an account whose owner proved its address or that was just invited";

/// Rule I1 for a grant that may go to an invitee: the user is known to the projection and not
/// disabled (proven or not). Holds the row in share mode until the transaction ends.
async fn require_invited_or_proven(conn: &mut PgConnection, user_id: Uuid) -> Result<()> {
    match storage::users::get_locked(conn, user_id).await? {
        Some(user) if !user.disabled => Ok(()),
        _ => Err(AccessError::Unproven {
            user_id,
            message: NOT_INVITED,
        }),
    }
}

/// The subject of a person new to the site: no role, no grant.
fn newcomer() -> Subject {
    Subject {
        roles: RoleSet::EMPTY,
        explicit: Grants::NONE,
        disabled: false,
    }
}

impl Access {
    /// A page of a site's support users (U4): see the module documentation.
    pub async fn list_support_users(
        &self,
        actor: Actor,
        query: SupportUsersQuery,
    ) -> Result<Page<Profile>> {
        let SupportUsersQuery {
            site_id,
            after,
            size,
        } = query;
        let mut conn = self.pool.acquire().await?;
        let site = site_of(&mut conn, site_id).await?;
        if actor.kind == super::super::ActorKind::Person {
            let authority = self.authority(&mut conn, actor, &site).await?;
            if authority.rights().support < SupportLevel::Administrator {
                return Err(AccessError::Forbidden(
                    "rule U4: only the site technical contact and support ADMINISTRATORs view \
                     the site's support users"
                        .into(),
                ));
            }
        }
        let rows = storage::sites::support_profiles(&mut conn, site_id, after, i64::from(size) + 1)
            .await?;
        Ok(Page::from_rows(rows, size))
    }

    /// Sets a user's tool levels and support level in one transaction (SetUserAccess): see
    /// the module documentation. Returns the profile after (before, for a dry run; `None`
    /// for a dry run about a person new to the site), with the change's revision.
    pub async fn set_user_access(
        &self,
        actor: Actor,
        change: UserAccessChange,
    ) -> Result<Revised<Option<Profile>>> {
        let actor = actor.person()?;
        match self.set_user_access_once(actor, &change).await {
            Err(AccessError::Unproven { user_id, message }) => {
                let known = if change.allow_invited {
                    self.await_known(user_id).await?
                } else {
                    self.await_proof(user_id).await?
                };
                if known {
                    self.set_user_access_once(actor, &change).await
                } else {
                    Err(AccessError::Unproven { user_id, message })
                }
            }
            other => other,
        }
    }

    /// Whether the projection of identity's users knows `user_id`, not disabled, within
    /// [`PROOF_PATIENCE`] (an invitation a moment ago may not have reached it).
    async fn await_known(&self, user_id: Uuid) -> Result<bool> {
        let deadline = tokio::time::Instant::now() + PROOF_PATIENCE;
        loop {
            let user = {
                let mut conn = self.pool.acquire().await?;
                storage::users::get(&mut conn, user_id).await?
            };
            if user.is_some_and(|user| !user.disabled) {
                return Ok(true);
            }
            if tokio::time::Instant::now() + PROOF_POLL > deadline {
                return Ok(false);
            }
            tokio::time::sleep(PROOF_POLL).await;
        }
    }

    async fn set_user_access_once(
        &self,
        actor: Actor,
        change: &UserAccessChange,
    ) -> Result<Revised<Option<Profile>>> {
        let mut tx = self.pool.begin().await?;
        let site = lock_site(&mut tx, change.site_id).await?;
        let authority = self.authority(&mut tx, actor, &site).await?;
        let Some(user_id) = change.user_id else {
            // A dry run for a person new to the site: only the grantor's authority matters.
            let tools = with_levels(ToolAccess::NONE, &change.levels);
            if tools != ToolAccess::NONE {
                check_tool_change(&authority, &newcomer(), &tools)?;
            }
            if change
                .support
                .is_some_and(|level| level > SupportLevel::NoAccess)
            {
                check_support_change(&authority, &newcomer())?;
            }
            return Ok(Revised::unchanged(None));
        };
        let before = profile_on(&mut tx, site.site_id, user_id).await?;
        check_etag(change.etag, before.version, "the access profile")?;
        let current = before.effective.explicit();
        let grants = Grants {
            tools: with_levels(current.tools, &change.levels),
            support: change.support.unwrap_or(current.support),
        };
        let subject = subject_of(&before.effective);
        if grants.tools != current.tools {
            check_tool_change(&authority, &subject, &grants.tools)?;
        }
        if grants.support != current.support {
            check_support_change(&authority, &subject)?;
        }
        check_self_grant(actor.actor_id, user_id, &current, &grants)?;
        let changes = grants != current;
        if changes {
            check_start(&current, before.valid_from, None)?;
        }
        let raises = !grants.tools.is_within(&current.tools) || grants.support > current.support;
        if raises {
            if change.allow_invited {
                require_invited_or_proven(&mut tx, user_id).await?;
            } else {
                require_proven(&mut tx, user_id, UNPROVEN_GRANTEE).await?;
            }
        }
        if change.validate_only || (!changes && !change.welcome) {
            return Ok(Revised::unchanged(Some(before)));
        }
        let mut record = Change::new(site.site_id);
        let after = if changes {
            let term = Term {
                valid_from: None,
                valid_until: end_after_change(&grants, before.valid_until, Default::default()),
            };
            let after = self
                .write_rights(
                    &mut tx,
                    &mut record,
                    Some(actor),
                    "access.user_access_set",
                    &before,
                    (&grants, term),
                    &change.reason,
                    None,
                )
                .await?;
            if change.welcome {
                // The change's RightsChanged event becomes its welcome (one notice, not two).
                record.events.pop();
            }
            after
        } else {
            before.clone()
        };
        if change.welcome {
            record.event(events::site_user_welcomed(
                actor,
                &before,
                &after,
                &change.reason,
            ));
        }
        record.commit_with(tx, &self.cache, Some(after)).await
    }
}
