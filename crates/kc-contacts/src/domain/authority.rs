//! Authority at commit (T6, T8): whether the person a change is made for still holds, when
//! the change commits, the permissions the change needs on the site.
//!
//! The gateway checks a caller's permission before it calls the registry, but a right can
//! be revoked between that check and the registry's commit. So every registry write made
//! for a person (a service naming it in `x-kc-on-behalf-of`) decides again, inside its own
//! transaction and under the site's lock, from facts the registry holds itself: the
//! person's roles on the site (the registry's own), the site's C3 switch and STC, and the
//! person's explicit grants as access management published them (the `access_grants`
//! projection, [`crate::followers`]). Rights follow from them by the suite's one rights
//! model (`kc-rights`: T3, U5, R1).
//!
//! The projection's apply of a change of grants takes a share lock on the same site row, so
//! each write decides entirely before or entirely after a revocation reaches the registry,
//! and the gateway answers a change of rights only once the registry has applied it
//! (`AwaitAccessRevision`): after a revocation is answered, no write commits on it.
//!
//! Operators acting with their own token pass (they act on any site); a service acting for
//! nobody passes here and is held by T6's own refusal of rights-implying changes.

use kc_rights::rights::{Effective, Permission, RoleSet, SiteFacts, Subject};
use sqlx::PgConnection;

use super::commands::Actor;
use super::{ContactRole, ContactsError, Site};
use crate::storage;

/// What a change needs of the person it is made for, and the rule that says so.
#[derive(Debug, Clone, Copy)]
pub struct Need<'a> {
    /// The change, for the error, e.g. `naming a SITE_TECHNICAL contact`.
    pub change: &'a str,
    /// The rule that asks for `permissions`, e.g. `T6`.
    pub rule: &'static str,
    /// Every permission needed on the site.
    pub permissions: &'a [Permission],
}

impl Need<'static> {
    /// Changing a site's contacts at all: contact updates UPDATE (the gateway's rule for
    /// AssignContact, UpdateContact, RemoveContact and ReplaceContact).
    pub const CONTACTS: Self = Self {
        change: "changing the site's contacts",
        rule: "T8",
        permissions: &[Permission::ContactsUpdate],
    };
    /// Changing a site (its S&S, its C3 switch, its details): account management.
    pub const SITE: Self = Self {
        change: "changing the site",
        rule: "T8",
        permissions: &[Permission::AccountManagement],
    };
    /// Transferring the primary contact for someone who is not the primary (C8).
    pub const TRANSFER: Self = Self {
        change: "transferring the primary contact",
        rule: "C8",
        permissions: &[Permission::AccountManagement],
    };
}

/// What naming someone to `role`, replacing its holder or taking it away needs (T6).
pub fn naming(role: ContactRole) -> Option<Need<'static>> {
    let permissions = role.naming_authority();
    (!permissions.is_empty()).then_some(Need {
        change: role.naming_change(),
        rule: "T6",
        permissions,
    })
}

/// What a change of a contact with `role` needs: contact updates UPDATE, and for a role that
/// implies rights the authority to grant what it implies (T6).
pub fn contact_change(role: ContactRole) -> Vec<Need<'static>> {
    std::iter::once(Need::CONTACTS)
        .chain(naming(role))
        .collect()
}

/// The effective rights of the person `actor` acts for on `site`, from the registry's own
/// roles and the projection of explicit grants. Call under the site's lock.
async fn effective(
    tx: &mut PgConnection,
    actor: Actor,
    site: &Site,
) -> Result<Effective, ContactsError> {
    let person = storage::contacts::person_on_site(tx, site.site_id, actor.actor_id).await?;
    Ok(Effective::of(
        &Subject {
            roles: person.roles.into_iter().collect::<RoleSet>(),
            explicit: person.explicit,
            disabled: false,
        },
        SiteFacts {
            admin_may_manage_access: site.admin_may_manage_access,
            has_site_technical: person.has_site_technical,
        },
    ))
}

/// Refuses the change, `PermissionDenied` citing the rule, unless the person `actor` acts
/// for holds every permission of each of `needs` on `site` now. Call under the site's lock,
/// inside the change's transaction. Operators and services acting for nobody pass.
pub async fn require(
    tx: &mut PgConnection,
    actor: Actor,
    site: &Site,
    needs: &[Need<'_>],
) -> Result<(), ContactsError> {
    if !actor.acts_for_person() || needs.iter().all(|need| need.permissions.is_empty()) {
        return Ok(());
    }
    let effective = effective(tx, actor, site).await?;
    for need in needs {
        for permission in need.permissions {
            let decision = effective.check(*permission);
            if !decision.allowed {
                return Err(ContactsError::NoAuthority(format!(
                    "rule {}: {} needs {} on the site, which the acting person does not hold when the change commits (T8: {})",
                    need.rule, need.change, permission, decision.reason
                )));
            }
        }
    }
    Ok(())
}
