//! The operations on blocked requesters (see [`crate::domain::blocks`]): block, unblock,
//! list, and the check of a submission. Every write locks the site's row first, like a
//! submission, so that a block committed before a request commits refuses it.

use kc_runtime::db::{DbErrorKind, classify, constraint};

use super::*;
use crate::domain::blocks::{
    BLOCK_REJECTION_REASON, BlockChange, BlocksQuery, RequesterBlock, UnblockChange, block_keys,
};
use crate::storage::blocks::NewBlock;

/// The unique index of one block per target and site.
const ONE_BLOCK_PER_TARGET: &str = "requester_blocks_site_id_target_key";

/// The kinds of request `authority` may decide (A3); refused, citing A3, when none: only a
/// site's approvers block and unblock requesters.
fn decidable_kinds(authority: &Effective) -> Result<Vec<AccessRequestKind>> {
    let kinds: Vec<AccessRequestKind> = AccessRequestKind::ALL
        .into_iter()
        .filter(|kind| check_decider(authority, *kind).is_ok())
        .collect();
    if kinds.is_empty() {
        return Err(AccessError::rule(
            "A3",
            "only the site's approvers (the PRIMARY contact, holders of manage access UPDATE, \
             the SITE_TECHNICAL contact and support ADMINISTRATORs) block or unblock requesters",
        ));
    }
    Ok(kinds)
}

/// Refuses the submission of `user_id` on the locked `site_id` when the site blocks its
/// login e-mail (as the projection of identity's users holds it), its domain or a parent
/// domain, with the very refusal of a wrong site number (S3, I2). Called under the site's
/// lock, which every block and unblock takes too.
pub(super) async fn refuse_blocked(
    conn: &mut PgConnection,
    site_id: Uuid,
    user_id: Uuid,
) -> Result<()> {
    let Some(user) = storage::users::get(conn, user_id).await? else {
        return Ok(());
    };
    if storage::blocks::blocks_any(conn, site_id, &block_keys(&user.email)).await? {
        return Err(AccessError::NoMatchingSite);
    }
    Ok(())
}

impl Access {
    /// Blocks an address or a domain from asking for access to a site; optionally rejects
    /// the blocked requesters' PENDING requests the actor may decide. Returns the block and
    /// the requests rejected.
    pub async fn block_requester(
        &self,
        actor: Actor,
        change: BlockChange,
    ) -> Result<(RequesterBlock, Vec<AccessRequest>)> {
        let BlockChange {
            site_id,
            target,
            reason,
            reject_pending,
        } = change;
        let actor = actor.person()?;
        let mut tx = self.pool.begin().await?;
        let site = lock_site(&mut tx, site_id).await?;
        let authority = self.authority(&mut tx, actor, &site).await?;
        let kinds = decidable_kinds(&authority)?;
        let block = storage::blocks::insert(
            &mut tx,
            &NewBlock {
                block_id: Uuid::now_v7(),
                site_id,
                target: &target,
                reason: &reason,
                blocked_by: actor.actor_id,
            },
        )
        .await
        .map_err(|error| {
            if classify(&error) == DbErrorKind::UniqueViolation
                && constraint(&error) == Some(ONE_BLOCK_PER_TARGET)
            {
                AccessError::BlockExists
            } else {
                error.into()
            }
        })?;
        let mut change = Change::new(site_id);
        change.record(Entry {
            actor: Some(actor),
            action: "requester.blocked",
            resource_id: block.block_id.to_string(),
            before: None,
            after: to_json(&block),
            reason,
        });
        let mut rejected = Vec::new();
        if reject_pending {
            let ids = storage::blocks::pending_requests_of(&mut tx, &block, &kinds, actor.actor_id)
                .await?;
            for request_id in ids {
                let Some(request) = storage::requests::lock(&mut tx, request_id).await? else {
                    continue;
                };
                let decided = reject_request(
                    &mut tx,
                    &mut change,
                    actor,
                    &request,
                    BLOCK_REJECTION_REASON.to_owned(),
                )
                .await?;
                rejected.push(decided);
            }
        }
        change.commit(tx, &self.cache).await?;
        Ok((block, rejected))
    }

    /// Lifts the block of an address or a domain on a site. Returns the block lifted.
    pub async fn unblock_requester(
        &self,
        actor: Actor,
        change: UnblockChange,
    ) -> Result<RequesterBlock> {
        let UnblockChange {
            site_id,
            target,
            reason,
        } = change;
        let actor = actor.person()?;
        let mut tx = self.pool.begin().await?;
        let site = lock_site(&mut tx, site_id).await?;
        let authority = self.authority(&mut tx, actor, &site).await?;
        decidable_kinds(&authority)?;
        let block = storage::blocks::delete(&mut tx, site_id, &target)
            .await?
            .ok_or(AccessError::BlockNotFound)?;
        let mut change = Change::new(site_id);
        change.record(Entry {
            actor: Some(actor),
            action: "requester.unblocked",
            resource_id: block.block_id.to_string(),
            before: to_json(&block),
            after: None,
            reason,
        });
        change.commit(tx, &self.cache).await?;
        Ok(block)
    }

    /// A page of a site's blocks, in target order.
    pub async fn list_blocked_requesters(
        &self,
        query: BlocksQuery,
    ) -> Result<Page<RequesterBlock>> {
        let BlocksQuery {
            site_id,
            after,
            size,
        } = query;
        self.page_of_site(site_id, size, async |conn, limit| {
            storage::blocks::page_of_site(conn, site_id, after.as_deref(), limit).await
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ContactRole, SiteFacts};

    fn effective(roles: &[ContactRole], support: SupportLevel) -> Effective {
        let subject = Subject {
            roles: RoleSet::of(roles),
            explicit: Grants {
                tools: ToolAccess::NONE,
                support,
            },
            disabled: false,
        };
        Effective::of(
            &subject,
            SiteFacts {
                admin_may_manage_access: false,
                has_site_technical: true,
            },
        )
    }

    #[test]
    fn approvers_of_either_kind_block_and_others_do_not() {
        // rule A3
        assert_eq!(
            decidable_kinds(&effective(&[ContactRole::Primary], SupportLevel::NoAccess)).unwrap(),
            vec![AccessRequestKind::SiteAccess]
        );
        assert_eq!(
            decidable_kinds(&effective(&[], SupportLevel::Administrator)).unwrap(),
            vec![AccessRequestKind::SupportAccess]
        );
        let refused =
            decidable_kinds(&effective(&[ContactRole::SiteUser], SupportLevel::Full)).unwrap_err();
        assert!(refused.to_string().starts_with("rule A3:"), "{refused}");
    }
}
