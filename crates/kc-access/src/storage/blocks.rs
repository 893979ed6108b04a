//! The `requester_blocks` table: e-mail addresses and domains a site refuses access
//! requests from (see [`crate::domain::blocks`]). Every write runs under the site's row lock.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::blocks::{BlockKind, BlockTarget, RequesterBlock};
use crate::domain::{AccessRequestKind, RequestState};

/// The columns of a [`RequesterBlock`], for `concat!`.
macro_rules! columns {
    () => {
        "block_id, site_id, kind, target, reason, blocked_by, create_time"
    };
}

#[derive(sqlx::FromRow)]
struct BlockRow {
    block_id: Uuid,
    site_id: Uuid,
    kind: i16,
    target: String,
    reason: String,
    blocked_by: Uuid,
    create_time: DateTime<Utc>,
}

impl TryFrom<BlockRow> for RequesterBlock {
    type Error = sqlx::Error;

    fn try_from(row: BlockRow) -> Result<Self, Self::Error> {
        Ok(RequesterBlock {
            block_id: row.block_id,
            site_id: row.site_id,
            kind: BlockKind::from_number(row.kind).ok_or_else(|| {
                sqlx::Error::Decode("requester_blocks.kind has an unknown value".into())
            })?,
            target: row.target,
            reason: row.reason,
            blocked_by: row.blocked_by,
            create_time: row.create_time,
        })
    }
}

/// A block to insert.
#[derive(Debug)]
pub struct NewBlock<'a> {
    /// Id.
    pub block_id: Uuid,
    /// Site.
    pub site_id: Uuid,
    /// What is blocked.
    pub target: &'a BlockTarget,
    /// Why.
    pub reason: &'a str,
    /// Who blocks it.
    pub blocked_by: Uuid,
}

/// Inserts a block; the unique index `requester_blocks_site_id_target_key` refuses a second
/// block of the same target on the site.
pub async fn insert(
    conn: &mut PgConnection,
    block: &NewBlock<'_>,
) -> Result<RequesterBlock, sqlx::Error> {
    let row: BlockRow = sqlx::query_as(concat!(
        "INSERT INTO requester_blocks (block_id, site_id, kind, target, reason, blocked_by) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING ",
        columns!()
    ))
    .bind(block.block_id)
    .bind(block.site_id)
    .bind(block.target.kind().number())
    .bind(block.target.as_str())
    .bind(block.reason)
    .bind(block.blocked_by)
    .fetch_one(conn)
    .await?;
    row.try_into()
}

/// Deletes the block of `target` on a site; the block deleted, if there was one.
pub async fn delete(
    conn: &mut PgConnection,
    site_id: Uuid,
    target: &BlockTarget,
) -> Result<Option<RequesterBlock>, sqlx::Error> {
    let row: Option<BlockRow> = sqlx::query_as(concat!(
        "DELETE FROM requester_blocks WHERE site_id = $1 AND target = $2 AND kind = $3 \
         RETURNING ",
        columns!()
    ))
    .bind(site_id)
    .bind(target.as_str())
    .bind(target.kind().number())
    .fetch_optional(conn)
    .await?;
    row.map(RequesterBlock::try_from).transpose()
}

/// Whether a site blocks any of `keys` (an address and its domains, see
/// [`crate::domain::blocks::block_keys`]).
pub async fn blocks_any(
    conn: &mut PgConnection,
    site_id: Uuid,
    keys: &[String],
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM requester_blocks WHERE site_id = $1 AND target = ANY($2))",
    )
    .bind(site_id)
    .bind(keys)
    .fetch_one(conn)
    .await
}

/// Up to `limit` blocks of a site after target `after`, in target order.
pub async fn page_of_site(
    conn: &mut PgConnection,
    site_id: Uuid,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<RequesterBlock>, sqlx::Error> {
    let rows: Vec<BlockRow> = sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM requester_blocks WHERE site_id = $1 AND ($2::text IS NULL OR target > $2) \
         ORDER BY target LIMIT $3"
    ))
    .bind(site_id)
    .bind(after)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.into_iter().map(RequesterBlock::try_from).collect()
}

/// The ids of a site's PENDING requests of `kinds` whose requester's login e-mail (as the
/// projection of identity's users holds it) the block matches, except `except`'s own, in id
/// order.
pub async fn pending_requests_of(
    conn: &mut PgConnection,
    block: &RequesterBlock,
    kinds: &[AccessRequestKind],
    except: Uuid,
) -> Result<Vec<Uuid>, sqlx::Error> {
    let kinds: Vec<i16> = kinds.iter().map(|kind| kind.number() as i16).collect();
    sqlx::query_scalar(
        "SELECT r.request_id FROM access_requests r JOIN users u ON u.user_id = r.requester_id \
         WHERE r.site_id = $1 AND r.state = $2 AND r.kind = ANY($3) AND r.requester_id <> $4 \
           AND CASE WHEN $5 THEN split_part(lower(u.email), '@', 2) = $6 \
                                 OR split_part(lower(u.email), '@', 2) LIKE '%.' || $6 \
                    ELSE lower(u.email) = $6 END \
         ORDER BY r.request_id",
    )
    .bind(block.site_id)
    .bind(RequestState::Pending.number() as i16)
    .bind(kinds)
    .bind(except)
    .bind(block.kind == BlockKind::Domain)
    .bind(&block.target)
    .fetch_all(conn)
    .await
}
