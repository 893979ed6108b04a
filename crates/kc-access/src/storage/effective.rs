//! The `effective_permissions` table, the materialized effective permissions of the permission
//! feed (see [`crate::permission_feed`]): one row per permission a user holds on a site, with
//! the reason and rule that allow it; and the locks that serialize its refreshes.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

/// The first key of the advisory locks on a user's rows of the table (the second is a hash
/// of the user id): "kcpf".
const USER_LOCK_CLASS: i32 = 0x6b63_7066;

/// One row: a permission a user holds on a site.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct HeldPermission {
    /// Site id.
    pub site_id: Uuid,
    /// User id.
    pub user_id: Uuid,
    /// The proto number of the permission.
    pub permission: i16,
    /// Which grant or role allows it.
    pub reason: String,
    /// The rule that decides.
    pub rule: String,
}

/// Takes, until the transaction ends, the shared lock on the rows of each of `user_ids`: a
/// refresh of one site (or one user on one site) holds it, so it waits for a refresh of every
/// site of one of these users (a user disabled), which holds the same lock exclusively
/// ([`lock_user_exclusive`]). Refreshes of one site serialize on the site's row instead.
pub async fn lock_users_shared(
    conn: &mut PgConnection,
    user_ids: &[Uuid],
) -> Result<(), sqlx::Error> {
    if user_ids.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "SELECT pg_advisory_xact_lock_shared($1, hashtext(u::text)) FROM unnest($2::uuid[]) u",
    )
    .bind(USER_LOCK_CLASS)
    .bind(user_ids)
    .execute(conn)
    .await?;
    Ok(())
}

/// Takes, until the transaction ends, the exclusive lock on a user's rows on every site (see
/// [`lock_users_shared`]).
pub async fn lock_user_exclusive(
    conn: &mut PgConnection,
    user_id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2::text))")
        .bind(USER_LOCK_CLASS)
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Takes the exclusive lock of [`lock_user_exclusive`] if nobody holds it or its shared form,
/// without waiting. Returns whether it was taken.
pub async fn try_lock_user_exclusive(
    conn: &mut PgConnection,
    user_id: Uuid,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1, hashtext($2::text))")
        .bind(USER_LOCK_CLASS)
        .bind(user_id)
        .fetch_one(conn)
        .await
}

/// The users who hold something on a site or may (a grant or a role of any kind there, or a
/// row of the table), sorted.
pub async fn users_of_site(
    conn: &mut PgConnection,
    site_id: Uuid,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT user_id FROM grants WHERE site_id = $1 \
         UNION SELECT user_id FROM site_roles WHERE site_id = $1 \
         UNION SELECT user_id FROM effective_permissions WHERE site_id = $1 \
         ORDER BY 1",
    )
    .bind(site_id)
    .fetch_all(conn)
    .await
}

/// The sites where a user holds something or may (a grant or a role of any kind, or a row of
/// the table), sorted.
pub async fn sites_of_user(
    conn: &mut PgConnection,
    user_id: Uuid,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT site_id FROM grants WHERE user_id = $1 \
         UNION SELECT site_id FROM site_roles WHERE user_id = $1 \
         UNION SELECT site_id FROM effective_permissions WHERE user_id = $1 \
         ORDER BY 1",
    )
    .bind(user_id)
    .fetch_all(conn)
    .await
}

/// The rows of the pairs `(site_ids[i], user_ids[i])`, each pair one probe of the table's
/// key whatever the statistics say.
pub async fn of_pairs(
    conn: &mut PgConnection,
    site_ids: &[Uuid],
    user_ids: &[Uuid],
) -> Result<Vec<HeldPermission>, sqlx::Error> {
    sqlx::query_as(
        "SELECT e.site_id, e.user_id, e.permission, e.reason, e.rule \
         FROM unnest($1::uuid[], $2::uuid[]) AS p (site_id, user_id) \
         CROSS JOIN LATERAL (SELECT * FROM effective_permissions \
           WHERE effective_permissions.site_id = p.site_id \
             AND effective_permissions.user_id = p.user_id) e",
    )
    .bind(site_ids)
    .bind(user_ids)
    .fetch_all(conn)
    .await
}

/// The rows of a site.
pub async fn of_site(
    conn: &mut PgConnection,
    site_id: Uuid,
) -> Result<Vec<HeldPermission>, sqlx::Error> {
    sqlx::query_as(
        "SELECT site_id, user_id, permission, reason, rule FROM effective_permissions \
         WHERE site_id = $1",
    )
    .bind(site_id)
    .fetch_all(conn)
    .await
}

/// The rows of a user, on every site.
pub async fn of_user(
    conn: &mut PgConnection,
    user_id: Uuid,
) -> Result<Vec<HeldPermission>, sqlx::Error> {
    sqlx::query_as(
        "SELECT site_id, user_id, permission, reason, rule FROM effective_permissions \
         WHERE user_id = $1",
    )
    .bind(user_id)
    .fetch_all(conn)
    .await
}

/// Inserts `rows` with their sites' numbers (migration 0007; each one probe of the site's
/// key), or updates the reason, rule and number of those that exist (a row an older replica
/// wrote without its number gets it when its reason or rule next changes; until then the
/// lookups read the number from `sites`).
pub async fn upsert(conn: &mut PgConnection, rows: &[HeldPermission]) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let sites: Vec<Uuid> = rows.iter().map(|row| row.site_id).collect();
    let users: Vec<Uuid> = rows.iter().map(|row| row.user_id).collect();
    let permissions: Vec<i16> = rows.iter().map(|row| row.permission).collect();
    let reasons: Vec<&str> = rows.iter().map(|row| row.reason.as_str()).collect();
    let rules: Vec<&str> = rows.iter().map(|row| row.rule.as_str()).collect();
    sqlx::query(
        "INSERT INTO effective_permissions (site_id, user_id, permission, reason, rule, \
           site_number) \
         SELECT r.*, \
           COALESCE((SELECT s.site_number FROM sites s WHERE s.site_id = r.site_id), '') \
         FROM unnest($1::uuid[], $2::uuid[], $3::smallint[], $4::text[], $5::text[]) \
           AS r (site_id, user_id, permission, reason, rule) \
         ON CONFLICT (site_id, user_id, permission) DO UPDATE SET reason = EXCLUDED.reason, \
           rule = EXCLUDED.rule, site_number = EXCLUDED.site_number, update_time = now()",
    )
    .bind(sites)
    .bind(users)
    .bind(permissions)
    .bind(reasons)
    .bind(rules)
    .execute(conn)
    .await?;
    Ok(())
}

/// Deletes the rows of `keys` `(site, user, permission)`.
pub async fn delete(
    conn: &mut PgConnection,
    keys: &[(Uuid, Uuid, i16)],
) -> Result<(), sqlx::Error> {
    if keys.is_empty() {
        return Ok(());
    }
    let sites: Vec<Uuid> = keys.iter().map(|key| key.0).collect();
    let users: Vec<Uuid> = keys.iter().map(|key| key.1).collect();
    let permissions: Vec<i16> = keys.iter().map(|key| key.2).collect();
    sqlx::query(
        "DELETE FROM effective_permissions e \
         USING unnest($1::uuid[], $2::uuid[], $3::smallint[]) AS k (site_id, user_id, permission) \
         WHERE e.site_id = k.site_id AND e.user_id = k.user_id AND e.permission = k.permission",
    )
    .bind(sites)
    .bind(users)
    .bind(permissions)
    .execute(conn)
    .await?;
    Ok(())
}

/// Where the backfill stands, locked until the transaction ends (one backfiller at a time):
/// `None` once it is done, else the last site filled (`Some(None)` before the first).
pub async fn lock_backfill(conn: &mut PgConnection) -> Result<Option<Option<Uuid>>, sqlx::Error> {
    let (after, done): (Option<Uuid>, bool) =
        sqlx::query_as("SELECT after_site, done FROM permission_feed_backfill FOR UPDATE")
            .fetch_one(conn)
            .await?;
    Ok((!done).then_some(after))
}

/// Up to `limit` sites after `after` in site-id order, locked until the transaction ends.
pub async fn lock_sites_after(
    conn: &mut PgConnection,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT site_id FROM sites WHERE ($1::uuid IS NULL OR site_id > $1) \
         ORDER BY site_id LIMIT $2 FOR UPDATE",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Records the backfill's progress: the last site filled, and whether it is done.
pub async fn record_backfill(
    conn: &mut PgConnection,
    after: Option<Uuid>,
    done: bool,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE permission_feed_backfill SET after_site = $1, done = $2")
        .bind(after)
        .bind(done)
        .execute(conn)
        .await?;
    Ok(())
}

/// Whose rows a lookup reads: the sites of one user, or the users of one site.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holders {
    /// The sites where this user holds the permission (LookupSites), keyed by site id.
    SitesOf(Uuid),
    /// The users who hold the permission on this site (LookupUsers), keyed by user id.
    UsersOf(Uuid),
}

/// A row of the table with its site's number: a permission held, as a lookup answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holding {
    /// Site id.
    pub site_id: Uuid,
    /// The site's customer-facing number.
    pub site_number: String,
    /// User id.
    pub user_id: Uuid,
    /// Which grant or role allows it.
    pub reason: String,
    /// The rule that decides.
    pub rule: String,
}

impl Holders {
    /// The key a lookup of these holders pages by: the site id of a user's sites, the user
    /// id of a site's users.
    pub fn key(self, holding: &Holding) -> Uuid {
        self.key_of_pair(holding.site_id, holding.user_id)
    }

    /// The key of the pair `(site_id, user_id)` for these holders.
    pub fn key_of_pair(self, site_id: Uuid, user_id: Uuid) -> Uuid {
        match self {
            Holders::SitesOf(_) => site_id,
            Holders::UsersOf(_) => user_id,
        }
    }

    /// The pair `(site, user)` of the key `key` of these holders.
    pub fn pair(self, key: Uuid) -> (Uuid, Uuid) {
        match self {
            Holders::SitesOf(user_id) => (key, user_id),
            Holders::UsersOf(site_id) => (site_id, key),
        }
    }
}

/// One lookup read of [`holding`]: for `$1` the user (or site) of the holders, `$2` the
/// permission, `$3` the key to start after (or NULL), `$4` the limit, `$5` the nil id, `$6`
/// the time: up to `$4` rows of the table (`passed` false, one range of its index) and up to
/// `$4` keys whose grants have a start or an end at or before `$6` (`passed` true, from the
/// partial index of grants with a term, migration 0006). `$held_number` is what the range
/// reads of the site's number: the row's own for a user's sites (migration 0007: the user
/// index holds it, so the range is index-only), nothing for a site's users (the site index
/// does not hold it). `$number` is the number answered, after the limit: the row's own, or
/// one probe of `sites` for a row without one (written by a replica older than the migration
/// during a rolling upgrade); the number of the one site for a site's users. `after` as the
/// nil id when absent keeps the range an index condition in a generic plan.
macro_rules! holding_sql {
    ($holder:literal, $key:literal, $held_number:literal, $number:literal) => {
        concat!(
            "WITH held AS (SELECT e.site_id, e.user_id, e.reason, e.rule, ",
            $held_number,
            " AS site_number \
               FROM effective_permissions e \
               WHERE e.",
            $holder,
            " = $1 AND e.permission = $2 AND e.",
            $key,
            " > COALESCE($3, $5) \
               ORDER BY e.",
            $key,
            " LIMIT $4), \
             passed AS (SELECT g.site_id, g.user_id FROM grants g \
               WHERE g.",
            $holder,
            " = $1 AND (g.valid_from IS NOT NULL OR g.valid_until IS NOT NULL) \
                 AND (g.valid_from <= $6 OR g.valid_until <= $6) AND g.",
            $key,
            " > COALESCE($3, $5) \
               ORDER BY g.",
            $key,
            " LIMIT $4) \
             SELECT false AS passed, h.site_id, h.user_id, ",
            $number,
            " AS site_number, h.reason, h.rule FROM held h \
             UNION ALL SELECT true, p.site_id, p.user_id, '', '', '' FROM passed p"
        )
    };
}

/// A row of [`holding_sql!`].
#[derive(sqlx::FromRow)]
struct HoldingRow {
    passed: bool,
    site_id: Uuid,
    user_id: Uuid,
    site_number: Option<String>,
    reason: String,
    rule: String,
}

/// What one read of a lookup finds, each in key order: up to `limit` rows of the table
/// holding `permission` of `holders` after the key `after`, and up to `limit` keys whose
/// grants have a start or an end at or before `at` (T9), so that the table may not show
/// their effect yet: the sweeper has not recorded it. One statement.
pub async fn holding(
    conn: &mut PgConnection,
    holders: Holders,
    permission: i16,
    at: DateTime<Utc>,
    after: Option<Uuid>,
    limit: i64,
) -> Result<(Vec<Holding>, Vec<Uuid>), sqlx::Error> {
    let (sql, id) = match holders {
        Holders::SitesOf(user_id) => (
            holding_sql!(
                "user_id",
                "site_id",
                "e.site_number",
                "COALESCE(NULLIF(h.site_number, ''), \
                   (SELECT s.site_number FROM sites s WHERE s.site_id = h.site_id))"
            ),
            user_id,
        ),
        Holders::UsersOf(site_id) => (
            holding_sql!(
                "site_id",
                "user_id",
                "''",
                "(SELECT s.site_number FROM sites s WHERE s.site_id = $1)"
            ),
            site_id,
        ),
    };
    let rows: Vec<HoldingRow> = sqlx::query_as(sql)
        .bind(id)
        .bind(permission)
        .bind(after)
        .bind(limit)
        .bind(Uuid::nil())
        .bind(at)
        .fetch_all(conn)
        .await?;
    let (mut held, mut passed) = (Vec::new(), Vec::new());
    for row in rows {
        if row.passed {
            passed.push(holders.key_of_pair(row.site_id, row.user_id));
        } else {
            held.push(Holding {
                site_id: row.site_id,
                site_number: row.site_number.unwrap_or_default(),
                user_id: row.user_id,
                reason: row.reason,
                rule: row.rule,
            });
        }
    }
    held.sort_by_key(|holding| holders.key(holding));
    passed.sort();
    Ok((held, passed))
}

/// Whether the backfill of the sites that existed before the feed is done: until it is, the
/// table does not hold every permission (the lookups then read profiles).
pub async fn backfill_done(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT done FROM permission_feed_backfill")
        .fetch_one(conn)
        .await
}
