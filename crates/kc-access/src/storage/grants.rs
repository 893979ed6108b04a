//! The `grants` table: the explicit tool levels and support level of a user on a site, and
//! when they end (T9).

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::Grants;

/// Writes the explicit grants of a user on a site (a revocation writes all NONE, keeping the
/// row so its version keeps counting) with their term (T9: start and end; none for NONE
/// grants), and bumps the version. A new end forgets that the previous one was announced. `updated_by` is
/// `None` when a domain policy granted (A7) or the sweeper ended the grant (T9). Returns the
/// new version and time.
pub async fn write(
    conn: &mut PgConnection,
    site_id: Uuid,
    user_id: Uuid,
    grants: &Grants,
    term: Term,
    updated_by: Option<Uuid>,
) -> Result<(i64, DateTime<Utc>), sqlx::Error> {
    let ranks = super::ranks_of(grants);
    let term = if grants.is_none() {
        Term::default()
    } else {
        term
    };
    sqlx::query_as(
        "INSERT INTO grants (site_id, user_id, software, reporting, entitlements, \
           account_management, manage_access, contact_updates, account_documents, support, \
           updated_by, valid_until, valid_from) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
         ON CONFLICT (site_id, user_id) DO UPDATE SET software = EXCLUDED.software, \
           reporting = EXCLUDED.reporting, entitlements = EXCLUDED.entitlements, \
           account_management = EXCLUDED.account_management, \
           manage_access = EXCLUDED.manage_access, contact_updates = EXCLUDED.contact_updates, \
           account_documents = EXCLUDED.account_documents, support = EXCLUDED.support, \
           updated_by = EXCLUDED.updated_by, version = grants.version + 1, update_time = now(), \
           valid_until = EXCLUDED.valid_until, valid_from = EXCLUDED.valid_from, \
           ending_notice_time = CASE WHEN grants.valid_until IS NOT DISTINCT FROM \
             EXCLUDED.valid_until THEN grants.ending_notice_time END \
         RETURNING version, update_time",
    )
    .bind(site_id)
    .bind(user_id)
    .bind(ranks[0])
    .bind(ranks[1])
    .bind(ranks[2])
    .bind(ranks[3])
    .bind(ranks[4])
    .bind(ranks[5])
    .bind(ranks[6])
    .bind(ranks[7])
    .bind(updated_by)
    .bind(term.valid_until)
    .bind(term.valid_from)
    .fetch_one(conn)
    .await
}

/// When explicit grants count (T9): `[valid_from, valid_until)`, each bound optional.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Term {
    /// When they start counting; `None`: they count already.
    pub valid_from: Option<DateTime<Utc>>,
    /// When they end; `None`: never.
    pub valid_until: Option<DateTime<Utc>>,
}

/// The grant with the earliest start that came (at or before now), locked with its site like
/// [`lock_ended`]; `None` when there is none. Its site and user, and its start.
pub async fn lock_started(
    conn: &mut PgConnection,
) -> Result<Option<(Uuid, Uuid, DateTime<Utc>)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT g.site_id, g.user_id, g.valid_from FROM grants g \
         JOIN sites s ON s.site_id = g.site_id \
         WHERE g.valid_from <= now() \
         ORDER BY g.valid_from LIMIT 1 FOR UPDATE OF s, g SKIP LOCKED",
    )
    .fetch_optional(conn)
    .await
}

/// Records that a user's grant on a site started: it counts from now on without a start.
pub async fn mark_started(
    conn: &mut PgConnection,
    site_id: Uuid,
    user_id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE grants SET valid_from = NULL WHERE site_id = $1 AND user_id = $2")
        .bind(site_id)
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// A grant whose end is due or near (T9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct Ending {
    /// Site.
    pub site_id: Uuid,
    /// User.
    pub user_id: Uuid,
    /// Its end.
    pub valid_until: DateTime<Utc>,
}

/// The grant with the earliest end that is due (at or before now), locked with its site until
/// the transaction ends; `None` when there is none. Rows another transaction holds (a write
/// of the same site, another replica's sweeper) are skipped, so replicas never end the same
/// grant twice and the sweeper never waits for a writer.
pub async fn lock_ended(conn: &mut PgConnection) -> Result<Option<Ending>, sqlx::Error> {
    sqlx::query_as(
        "SELECT g.site_id, g.user_id, g.valid_until FROM grants g \
         JOIN sites s ON s.site_id = g.site_id \
         WHERE g.valid_until <= now() \
         ORDER BY g.valid_until LIMIT 1 FOR UPDATE OF s, g SKIP LOCKED",
    )
    .fetch_optional(conn)
    .await
}

/// The grant with the earliest end within `ahead` from now (and not yet due) whose end was
/// not announced yet, locked with its site like [`lock_ended`]; `None` when there is none.
pub async fn lock_ending_unannounced(
    conn: &mut PgConnection,
    ahead: std::time::Duration,
) -> Result<Option<Ending>, sqlx::Error> {
    sqlx::query_as(
        "SELECT g.site_id, g.user_id, g.valid_until FROM grants g \
         JOIN sites s ON s.site_id = g.site_id \
         WHERE g.valid_until > now() AND g.valid_until <= now() + $1 * interval '1 second' \
           AND g.ending_notice_time IS NULL \
         ORDER BY g.valid_until LIMIT 1 FOR UPDATE OF s, g SKIP LOCKED",
    )
    .bind(ahead.as_secs_f64())
    .fetch_optional(conn)
    .await
}

/// Records that the end of a user's grant on a site was announced.
pub async fn mark_announced(
    conn: &mut PgConnection,
    site_id: Uuid,
    user_id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE grants SET ending_notice_time = now() WHERE site_id = $1 AND user_id = $2")
        .bind(site_id)
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(())
}
