//! Conversions of the blocked-requester RPCs (BlockRequester, UnblockRequester,
//! ListBlockedRequesters) between proto messages and [`crate::domain::blocks`].

use super::*;
use crate::domain::blocks::{
    BlockChange, BlockKind, BlockTarget, BlocksQuery, RequesterBlock, UnblockChange,
};

/// T5, cited when blocking or unblocking gives no reason.
const BLOCK_REASON: &str = "T5: every change records why";

/// The site, the blocked address or domain and the reason a block or an unblock names;
/// all violations at once.
fn site_target(
    site_id: &str,
    email: &str,
    domain: &str,
    reason: &str,
) -> Result<UnblockChange, ApiError> {
    let mut v = Violations::new();
    let site_id = v.check(parse_id("site_id", site_id));
    let target = v.check(BlockTarget::parse(email, domain));
    let reason = v.check(required_reason("reason", reason, BLOCK_REASON));
    v.build(|| {
        Some(UnblockChange {
            site_id: site_id?,
            target: target?,
            reason: reason?,
        })
    })
}

impl TryFrom<pb::BlockRequesterRequest> for BlockChange {
    type Error = ApiError;

    fn try_from(r: pb::BlockRequesterRequest) -> Result<Self, ApiError> {
        let UnblockChange {
            site_id,
            target,
            reason,
        } = site_target(&r.site_id, &r.email, &r.domain, &r.reason)?;
        Ok(Self {
            site_id,
            target,
            reason,
            reject_pending: r.reject_pending,
        })
    }
}

impl TryFrom<pb::UnblockRequesterRequest> for UnblockChange {
    type Error = ApiError;

    fn try_from(r: pb::UnblockRequesterRequest) -> Result<Self, ApiError> {
        site_target(&r.site_id, &r.email, &r.domain, &r.reason)
    }
}

site_page_query!(pb::ListBlockedRequestersRequest => BlocksQuery, text_key);

impl From<&RequesterBlock> for pb::RequesterBlock {
    fn from(block: &RequesterBlock) -> Self {
        let (email, domain) = match block.kind {
            BlockKind::Email => (block.target.clone(), String::new()),
            BlockKind::Domain => (String::new(), block.target.clone()),
        };
        Self {
            block_id: block.block_id.to_string(),
            site_id: block.site_id.to_string(),
            email,
            domain,
            reason: block.reason.clone(),
            blocked_by: block.blocked_by.to_string(),
            create_time: Some(timestamp(block.create_time)),
        }
    }
}

/// A page of a site's blocks, keyed by target.
pub(crate) fn blocks_response(page: &Page<RequesterBlock>) -> pb::ListBlockedRequestersResponse {
    let (blocks, next_page_token) = page_parts(page, |b| vec![b.target.clone()]);
    pb::ListBlockedRequestersResponse {
        blocks,
        next_page_token,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_needs_a_site_one_target_and_a_reason() {
        let refused = BlockChange::try_from(pb::BlockRequesterRequest {
            site_id: "nope".into(),
            email: "ada@example.com".into(),
            domain: "example.com".into(),
            reason: " ".into(),
            reject_pending: false,
        })
        .unwrap_err();
        let ApiError::InvalidArgument(violations) = refused else {
            panic!("expected InvalidArgument, got {refused:?}");
        };
        let fields: Vec<&str> = violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, vec!["site_id", "domain", "reason"]);
        let change = BlockChange::try_from(pb::BlockRequesterRequest {
            site_id: Uuid::from_u128(7).to_string(),
            email: String::new(),
            domain: "@Example.COM".into(),
            reason: "spam".into(),
            reject_pending: true,
        })
        .unwrap();
        assert_eq!(change.target.as_str(), "example.com");
        assert!(change.reject_pending);
    }

    #[test]
    fn blocks_are_published_with_the_field_of_their_kind() {
        let block = RequesterBlock {
            block_id: Uuid::from_u128(1),
            site_id: Uuid::from_u128(2),
            kind: BlockKind::Domain,
            target: "example.com".into(),
            reason: "spam".into(),
            blocked_by: Uuid::from_u128(3),
            create_time: chrono::DateTime::from_timestamp(1_800_000_000, 0).expect("a time"),
        };
        let published = pb::RequesterBlock::from(&block);
        assert_eq!(published.domain, "example.com");
        assert!(published.email.is_empty());
    }
}
