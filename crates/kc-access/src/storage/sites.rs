//! The projection of the contact registry (`sites`, `site_roles`) and the reads that combine
//! it with grants and users into profiles, members and cache snapshots.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::grants::Term;
use super::invalidation::{INVALIDATION_CHANNEL, Invalidation};
use super::roles_of;
use crate::domain::{
    ContactRole, Effective, Grants, Member, Profile, RoleSet, Site, SiteFacts, Subject,
};

/// The columns of a [`Site`] (`s` is the site), for `concat!`.
macro_rules! site_columns {
    () => {
        "s.site_id, s.site_number, s.customer_number, s.admin_may_manage_access, \
         EXISTS (SELECT 1 FROM site_roles t WHERE t.site_id = s.site_id AND t.role = 3) \
         AS has_site_technical"
    };
}

#[derive(sqlx::FromRow)]
struct SiteRow {
    site_id: Uuid,
    site_number: String,
    customer_number: String,
    admin_may_manage_access: bool,
    has_site_technical: bool,
}

impl From<SiteRow> for Site {
    fn from(row: SiteRow) -> Self {
        Site {
            site_id: row.site_id,
            site_number: row.site_number,
            customer_number: row.customer_number,
            facts: SiteFacts {
                admin_may_manage_access: row.admin_may_manage_access,
                has_site_technical: row.has_site_technical,
            },
        }
    }
}

/// A site as the registry's events describe it.
#[derive(Debug, Clone)]
pub struct ProjectedSite<'a> {
    /// Id.
    pub site_id: Uuid,
    /// Site number.
    pub site_number: &'a str,
    /// Customer number.
    pub customer_number: &'a str,
    /// The C3 switch.
    pub admin_may_manage_access: bool,
}

/// Inserts or refreshes a site of the projection (and so locks its row until the
/// transaction ends). When the site is new or its facts changed (the C3 switch), it tells
/// every replica, in the same statement, to drop the site's cached rights when the
/// transaction commits (as [`notify_invalidations`] of the whole site does), and returns
/// `true`; an event that left the site as it was (most of them: they move one contact)
/// invalidates nothing here, the caller names the holders it moved. A site keeps the number
/// it was first projected with: the registry never changes one, and every row of the
/// permission feed carries it (migration 0007), so the lookups, `Check` and the feed's
/// events never disagree about it. An event that names another number is logged (a
/// warning), not followed.
///
/// [`notify_invalidations`]: super::invalidation::notify_invalidations
pub async fn upsert(
    conn: &mut PgConnection,
    site: &ProjectedSite<'_>,
) -> Result<bool, sqlx::Error> {
    // `ON CONFLICT DO UPDATE ... WHERE` locks the row even when it updates nothing, and
    // returns a row only when it inserted or updated one.
    let changed: Option<(String, ())> = sqlx::query_as(
        "INSERT INTO sites (site_id, site_number, customer_number, admin_may_manage_access) \
         VALUES ($1, $2, $3, $4) \
         ON CONFLICT (site_id) DO UPDATE SET customer_number = EXCLUDED.customer_number, \
           admin_may_manage_access = EXCLUDED.admin_may_manage_access, update_time = now() \
         WHERE sites.customer_number <> EXCLUDED.customer_number \
           OR sites.admin_may_manage_access <> EXCLUDED.admin_may_manage_access \
           OR sites.site_number <> EXCLUDED.site_number \
         RETURNING site_number, pg_notify($5, $6)",
    )
    .bind(site.site_id)
    .bind(site.site_number)
    .bind(site.customer_number)
    .bind(site.admin_may_manage_access)
    .bind(INVALIDATION_CHANNEL)
    .bind(Invalidation::Site(site.site_id).to_string())
    .fetch_optional(conn)
    .await?;
    let Some((kept, ())) = changed else {
        return Ok(false);
    };
    if kept != site.site_number {
        tracing::warn!(
            site_id = %site.site_id,
            kept = %kept,
            named = %site.site_number,
            "a registry event names another number for a projected site; the first is kept"
        );
    }
    Ok(true)
}

/// Locks the projected sites of `site_ids` (those that exist) in site-id order, in the mode
/// [`upsert`] takes (`FOR NO KEY UPDATE`: writers' `FOR UPDATE` waits, foreign-key checks do
/// not): a transaction that applies several registry events takes its sites' locks in one
/// order, the order every multi-site lock of the service follows, before any other lock.
pub async fn lock_projected(conn: &mut PgConnection, site_ids: &[Uuid]) -> Result<(), sqlx::Error> {
    if site_ids.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "SELECT site_id FROM sites WHERE site_id = ANY($1) ORDER BY site_id FOR NO KEY UPDATE",
    )
    .bind(site_ids)
    .execute(conn)
    .await?;
    Ok(())
}

/// Records that `user_id` holds `role` on a site (idempotent).
pub async fn add_role(
    conn: &mut PgConnection,
    site_id: Uuid,
    user_id: Uuid,
    role: ContactRole,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO site_roles (site_id, user_id, role) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
    )
    .bind(site_id)
    .bind(user_id)
    .bind(role.number() as i16)
    .execute(conn)
    .await?;
    Ok(())
}

/// Records that `user_id` no longer holds `role` on a site (idempotent).
pub async fn remove_role(
    conn: &mut PgConnection,
    site_id: Uuid,
    user_id: Uuid,
    role: ContactRole,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM site_roles WHERE site_id = $1 AND user_id = $2 AND role = $3")
        .bind(site_id)
        .bind(user_id)
        .bind(role.number() as i16)
        .execute(conn)
        .await?;
    Ok(())
}

/// Removes whoever holds `role` on a site (the single holder of PRIMARY before a transfer);
/// returns them.
pub async fn remove_role_holders(
    conn: &mut PgConnection,
    site_id: Uuid,
    role: ContactRole,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar("DELETE FROM site_roles WHERE site_id = $1 AND role = $2 RETURNING user_id")
        .bind(site_id)
        .bind(role.number() as i16)
        .fetch_all(conn)
        .await
}

/// The site with this id.
pub async fn get(conn: &mut PgConnection, site_id: Uuid) -> Result<Option<Site>, sqlx::Error> {
    let row: Option<SiteRow> = sqlx::query_as(concat!(
        "SELECT ",
        site_columns!(),
        " FROM sites s WHERE s.site_id = $1"
    ))
    .bind(site_id)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(Site::from))
}

/// The site with this id, locked until the transaction ends. Every change of grants,
/// requests or policies of a site takes this lock first, and so does every projected change
/// of its roles (the upsert of the site row): rules see stable roles and grants (T8, see
/// [`crate::followers`]).
///
/// The site is read by a second statement, once the lock is held: under read committed a
/// statement that waited for the lock sees other tables as they were when it started, so
/// `has_site_technical` read together with the lock could miss a role change committed by
/// the transaction it waited for.
pub async fn lock(conn: &mut PgConnection, site_id: Uuid) -> Result<Option<Site>, sqlx::Error> {
    let locked: Option<Uuid> =
        sqlx::query_scalar("SELECT site_id FROM sites WHERE site_id = $1 FOR UPDATE")
            .bind(site_id)
            .fetch_optional(&mut *conn)
            .await?;
    match locked {
        Some(site_id) => get(conn, site_id).await,
        None => Ok(None),
    }
}

/// The site with this site number and customer number (S3: both must match).
pub async fn find(
    conn: &mut PgConnection,
    site_number: &str,
    customer_number: &str,
) -> Result<Option<Site>, sqlx::Error> {
    let row: Option<SiteRow> = sqlx::query_as(concat!(
        "SELECT ",
        site_columns!(),
        " FROM sites s WHERE s.site_number = $1 AND s.customer_number = $2"
    ))
    .bind(site_number)
    .bind(customer_number)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(Site::from))
}

/// Profile columns over a CTE `pairs (site_id, user_id)`, for `concat!`: the site, the
/// user's roles there, its grants and its disabled flag.
///
/// The site, the grant and the user are each one primary-key probe per pair (`LATERAL …
/// LIMIT 1`), whatever the statistics say: as plain joins, a plan made while the tables were
/// small (a new deployment's first bulk import) kept hashing full scans of them as they grew.
macro_rules! profile_select {
    () => {
        "SELECT p.site_id, p.user_id, s.site_number, s.admin_may_manage_access, \
           EXISTS (SELECT 1 FROM site_roles t WHERE t.site_id = p.site_id AND t.role = 3) \
             AS has_site_technical, \
           COALESCE((SELECT array_agg(r.role) FROM site_roles r \
                     WHERE r.site_id = p.site_id AND r.user_id = p.user_id), '{}'::smallint[]) \
             AS roles, \
           g.software, g.reporting, g.entitlements, g.account_management, g.manage_access, \
           g.contact_updates, g.account_documents, g.support, g.version, g.updated_by, \
           g.update_time, g.valid_until, g.valid_from, (COALESCE(u.disabled, false) OR NOT COALESCE(u.email_verified, false)) \
             AS disabled \
         FROM pairs p \
         CROSS JOIN LATERAL (SELECT * FROM sites WHERE sites.site_id = p.site_id LIMIT 1) s \
         LEFT JOIN LATERAL (SELECT * FROM grants \
           WHERE grants.site_id = p.site_id AND grants.user_id = p.user_id LIMIT 1) g ON true \
         LEFT JOIN LATERAL (SELECT disabled, email_verified FROM users \
           WHERE users.user_id = p.user_id LIMIT 1) u ON true "
    };
}

/// The numbers of the roles that imply rights, [`ContactRole::IMPLYING`] (T3, U5), as an SQL
/// list.
macro_rules! implying_roles {
    () => {
        "(1, 2, 3, 4)"
    };
}

/// Users with a grant or a role that implies rights on a site (ListSiteAccess).
macro_rules! holders_of_site {
    () => {
        concat!(
            "SELECT user_id FROM grants WHERE site_id = $1 AND any_grant \
             UNION SELECT user_id FROM site_roles WHERE site_id = $1 AND role IN ",
            implying_roles!()
        )
    };
}

#[derive(sqlx::FromRow)]
struct ProfileRow {
    site_id: Uuid,
    user_id: Uuid,
    site_number: String,
    admin_may_manage_access: bool,
    has_site_technical: bool,
    roles: Vec<i16>,
    software: Option<i16>,
    reporting: Option<i16>,
    entitlements: Option<i16>,
    account_management: Option<i16>,
    manage_access: Option<i16>,
    contact_updates: Option<i16>,
    account_documents: Option<i16>,
    support: Option<i16>,
    version: Option<i64>,
    updated_by: Option<Uuid>,
    update_time: Option<DateTime<Utc>>,
    valid_until: Option<DateTime<Utc>>,
    valid_from: Option<DateTime<Utc>>,
    disabled: bool,
}

/// The explicit grants of the stored columns; all NONE when there is no row.
fn grants_of_columns(columns: [Option<i16>; 8]) -> Result<Grants, sqlx::Error> {
    let ranks: Vec<i16> = columns.iter().map(|c| c.unwrap_or(0)).collect();
    super::grants_of_ranks(&ranks, "grants")
}

/// Whether explicit grants of `term` are in force at `at` (T9: they count in
/// `[valid_from, valid_until)`, each bound optional, to the microsecond).
pub fn in_force(term: Term, at: DateTime<Utc>) -> bool {
    term.valid_from.is_none_or(|start| start <= at) && term.valid_until.is_none_or(|end| at < end)
}

impl ProfileRow {
    fn term(&self) -> Term {
        Term {
            valid_from: self.valid_from,
            valid_until: self.valid_until,
        }
    }

    /// The explicit grants in force at `at`: all NONE before they start and once they
    /// ended (T9).
    fn explicit(&self, at: DateTime<Utc>) -> Result<Grants, sqlx::Error> {
        if !in_force(self.term(), at) {
            return Ok(Grants::NONE);
        }
        self.stored()
    }

    /// The explicit grants as stored, in force or not.
    fn stored(&self) -> Result<Grants, sqlx::Error> {
        grants_of_columns([
            self.software,
            self.reporting,
            self.entitlements,
            self.account_management,
            self.manage_access,
            self.contact_updates,
            self.account_documents,
            self.support,
        ])
    }

    fn subject(&self, at: DateTime<Utc>) -> Result<Subject, sqlx::Error> {
        Ok(Subject {
            roles: roles_of(&self.roles)?,
            explicit: self.explicit(at)?,
            disabled: self.disabled,
        })
    }

    fn facts(&self) -> SiteFacts {
        SiteFacts {
            admin_may_manage_access: self.admin_may_manage_access,
            has_site_technical: self.has_site_technical,
        }
    }
}

impl ProfileRow {
    /// The profile as it stands at `at` (T9: grants that ended by then count for nothing
    /// and show no term; grants that start later count for nothing yet and show their start
    /// and what they will give).
    fn profile_at(self, at: DateTime<Utc>) -> Result<Profile, sqlx::Error> {
        let effective = Effective::of(&self.subject(at)?, self.facts());
        let ended = self.valid_until.is_some_and(|end| end <= at);
        let valid_until = self.valid_until.filter(|_| !ended);
        let valid_from = self.valid_from.filter(|start| !ended && at < *start);
        let pending = match valid_from {
            Some(_) => Some(self.stored()?),
            None => None,
        };
        let row = self;
        Ok(Profile {
            site_id: row.site_id,
            site_number: row.site_number,
            user_id: row.user_id,
            effective,
            version: row.version.unwrap_or(0),
            updated_by: row.updated_by,
            update_time: row.update_time,
            valid_until,
            valid_from,
            pending,
        })
    }
}

impl TryFrom<ProfileRow> for Profile {
    type Error = sqlx::Error;

    fn try_from(row: ProfileRow) -> Result<Self, Self::Error> {
        row.profile_at(Utc::now())
    }
}

fn profiles(rows: Vec<ProfileRow>) -> Result<Vec<Profile>, sqlx::Error> {
    rows.into_iter().map(Profile::try_from).collect()
}

/// Up to `limit` profiles read by `query` (a `profile_select!` over pairs), whose `$1` is
/// `id`, `$2` the key to start after and `$3` the limit.
async fn profiles_page(
    conn: &mut PgConnection,
    query: &'static str,
    id: Uuid,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Profile>, sqlx::Error> {
    let rows: Vec<ProfileRow> = sqlx::query_as(query)
        .bind(id)
        .bind(after)
        .bind(limit)
        .fetch_all(conn)
        .await?;
    profiles(rows)
}

/// The profile of one user on one site; `None` when the projection knows no such site.
pub async fn profile(
    conn: &mut PgConnection,
    site_id: Uuid,
    user_id: Uuid,
) -> Result<Option<Profile>, sqlx::Error> {
    let row: Option<ProfileRow> = sqlx::query_as(concat!(
        "WITH pairs AS (SELECT $1::uuid AS site_id, $2::uuid AS user_id) ",
        profile_select!()
    ))
    .bind(site_id)
    .bind(user_id)
    .fetch_optional(conn)
    .await?;
    row.map(Profile::try_from).transpose()
}

/// The profile of one user on one site as it stands at `at` (the sweeper reads a grant as
/// it was before its end, T9); `None` when the projection knows no such site.
pub async fn profile_at(
    conn: &mut PgConnection,
    site_id: Uuid,
    user_id: Uuid,
    at: DateTime<Utc>,
) -> Result<Option<Profile>, sqlx::Error> {
    let row: Option<ProfileRow> = sqlx::query_as(concat!(
        "WITH pairs AS (SELECT $1::uuid AS site_id, $2::uuid AS user_id) ",
        profile_select!()
    ))
    .bind(site_id)
    .bind(user_id)
    .fetch_optional(conn)
    .await?;
    row.map(|row| row.profile_at(at)).transpose()
}

/// Up to `limit` profiles of a site's users with a grant or a role that implies rights,
/// after user id `after`, in user-id order.
pub async fn site_profiles(
    conn: &mut PgConnection,
    site_id: Uuid,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Profile>, sqlx::Error> {
    profiles_page(
        conn,
        concat!(
            "WITH pairs AS (SELECT $1::uuid AS site_id, h.user_id FROM (",
            holders_of_site!(),
            ") h WHERE ($2::uuid IS NULL OR h.user_id > $2) ORDER BY h.user_id LIMIT $3) ",
            profile_select!(),
            "ORDER BY p.user_id"
        ),
        site_id,
        after,
        limit,
    )
    .await
}

/// Up to `limit` profiles of a site's support users (U4), after user id `after`, in user-id
/// order: the users with a stored support level above NO_ACCESS (in force or not yet
/// started, T9; an invited account's too, I1) and the site technical contact (U5). Walks the
/// partial index `grants_support_idx` (migration 0004) and the role index: never the site's
/// other grants or its SITE_USERs.
pub async fn support_profiles(
    conn: &mut PgConnection,
    site_id: Uuid,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Profile>, sqlx::Error> {
    profiles_page(
        conn,
        concat!(
            "WITH pairs AS (SELECT $1::uuid AS site_id, h.user_id FROM ( \
               (SELECT user_id FROM grants WHERE site_id = $1 AND support > 0 \
                  AND ($2::uuid IS NULL OR user_id > $2) ORDER BY user_id LIMIT $3) \
               UNION SELECT user_id FROM site_roles WHERE site_id = $1 AND role = 3 \
                  AND ($2::uuid IS NULL OR user_id > $2) \
             ) h ORDER BY h.user_id LIMIT $3) ",
            profile_select!(),
            "ORDER BY p.user_id"
        ),
        site_id,
        after,
        limit,
    )
    .await
}

/// Up to `limit` profiles of one user on the sites where it has a grant or a role that
/// implies rights, after site id `after`, in site-id order.
pub async fn user_profiles(
    conn: &mut PgConnection,
    user_id: Uuid,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Profile>, sqlx::Error> {
    profiles_page(
        conn,
        concat!(
            "WITH pairs AS (SELECT h.site_id, $1::uuid AS user_id FROM ( \
               SELECT site_id FROM grants WHERE user_id = $1 AND any_grant \
               UNION SELECT site_id FROM site_roles WHERE user_id = $1 AND role IN ",
            implying_roles!(),
            ") h \
             WHERE ($2::uuid IS NULL OR h.site_id > $2) ORDER BY h.site_id LIMIT $3) ",
            profile_select!(),
            "ORDER BY p.site_id"
        ),
        user_id,
        after,
        limit,
    )
    .await
}

/// The profiles of the pairs `(site_ids[i], user_ids[i])` on sites the projection knows, in
/// the order of the pairs (the permission feed's refreshes).
pub async fn pair_profiles(
    conn: &mut PgConnection,
    site_ids: &[Uuid],
    user_ids: &[Uuid],
) -> Result<Vec<Profile>, sqlx::Error> {
    let rows: Vec<ProfileRow> = sqlx::query_as(concat!(
        "WITH pairs AS (SELECT site_id, user_id, ordinality FROM \
           unnest($1::uuid[], $2::uuid[]) WITH ORDINALITY AS x (site_id, user_id, ordinality)) ",
        profile_select!(),
        "ORDER BY p.ordinality"
    ))
    .bind(site_ids)
    .bind(user_ids)
    .fetch_all(conn)
    .await?;
    profiles(rows)
}

/// Every user with a role or a grant on a site, with its roles, grants and state: the
/// candidates of A3's approvers.
pub async fn members(conn: &mut PgConnection, site_id: Uuid) -> Result<Vec<Member>, sqlx::Error> {
    let rows: Vec<ProfileRow> = sqlx::query_as(concat!(
        "WITH pairs AS (SELECT $1::uuid AS site_id, m.user_id FROM ( \
           SELECT user_id FROM grants WHERE site_id = $1 AND any_grant \
           UNION SELECT user_id FROM site_roles WHERE site_id = $1) m) ",
        profile_select!(),
        "ORDER BY p.user_id"
    ))
    .bind(site_id)
    .fetch_all(conn)
    .await?;
    let now = Utc::now();
    rows.iter()
        .map(|row| {
            Ok(Member {
                user_id: row.user_id,
                subject: row.subject(now)?,
            })
        })
        .collect()
}

/// One member of a site as the rights cache keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotMember {
    /// User id.
    pub user_id: Uuid,
    /// Roles on the site.
    pub roles: RoleSet,
    /// Explicit grants on the site.
    pub explicit: Grants,
    /// Whether identity disabled the user.
    pub disabled: bool,
}

/// What the rights cache keeps of a site: its facts and every user with a role or a grant
/// there, with its roles, explicit grants in force and disabled flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteSnapshot {
    /// The facts rights depend on.
    pub facts: SiteFacts,
    /// Every member.
    pub members: Vec<SnapshotMember>,
    /// The earliest start or end to come of a grant among the members (T9): the snapshot
    /// is wrong from then on.
    pub next_change: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct MemberRow {
    user_id: Uuid,
    roles: Vec<i16>,
    software: i16,
    reporting: i16,
    entitlements: i16,
    account_management: i16,
    manage_access: i16,
    contact_updates: i16,
    account_documents: i16,
    support: i16,
    valid_until: Option<DateTime<Utc>>,
    valid_from: Option<DateTime<Utc>>,
    disabled: bool,
}

/// The cache's snapshot of a site; `None` when the projection knows no such site. Each
/// member's account is one primary-key probe, as in the profiles (`profile_select`).
pub async fn snapshot(
    conn: &mut PgConnection,
    site_id: Uuid,
) -> Result<Option<SiteSnapshot>, sqlx::Error> {
    let Some(site) = get(&mut *conn, site_id).await? else {
        return Ok(None);
    };
    let rows: Vec<MemberRow> = sqlx::query_as(
        "SELECT user_id, COALESCE(r.roles, '{}'::smallint[]) AS roles, \
           COALESCE(g.software, 0::smallint) AS software, \
           COALESCE(g.reporting, 0::smallint) AS reporting, \
           COALESCE(g.entitlements, 0::smallint) AS entitlements, \
           COALESCE(g.account_management, 0::smallint) AS account_management, \
           COALESCE(g.manage_access, 0::smallint) AS manage_access, \
           COALESCE(g.contact_updates, 0::smallint) AS contact_updates, \
           COALESCE(g.account_documents, 0::smallint) AS account_documents, \
           COALESCE(g.support, 0::smallint) AS support, g.valid_until, g.valid_from, \
           (COALESCE(u.disabled, false) OR NOT COALESCE(u.email_verified, false)) AS disabled \
         FROM (SELECT user_id, array_agg(role) AS roles FROM site_roles WHERE site_id = $1 \
               GROUP BY user_id) r \
         FULL JOIN (SELECT * FROM grants WHERE site_id = $1 AND any_grant) g USING (user_id) \
         LEFT JOIN LATERAL (SELECT disabled, email_verified FROM users \
           WHERE users.user_id = COALESCE(r.user_id, g.user_id) LIMIT 1) u ON true",
    )
    .bind(site_id)
    .fetch_all(conn)
    .await?;
    let now = Utc::now();
    let next_change = rows
        .iter()
        .flat_map(|row| [row.valid_from, row.valid_until])
        .flatten()
        .filter(|time| *time > now)
        .min();
    let members = rows
        .into_iter()
        .map(|row| {
            let term = Term {
                valid_from: row.valid_from,
                valid_until: row.valid_until,
            };
            if !in_force(term, now) {
                return Ok(SnapshotMember {
                    user_id: row.user_id,
                    roles: roles_of(&row.roles)?,
                    explicit: Grants::NONE,
                    disabled: row.disabled,
                });
            }
            let explicit = grants_of_columns([
                Some(row.software),
                Some(row.reporting),
                Some(row.entitlements),
                Some(row.account_management),
                Some(row.manage_access),
                Some(row.contact_updates),
                Some(row.account_documents),
                Some(row.support),
            ])?;
            Ok(SnapshotMember {
                user_id: row.user_id,
                roles: roles_of(&row.roles)?,
                explicit,
                disabled: row.disabled,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(Some(SiteSnapshot {
        facts: site.facts,
        members,
        next_change,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grant_counts_until_its_end_exclusive() {
        // rule T9: in force in [valid_from, valid_until), to the microsecond.
        let end = DateTime::from_timestamp(1_800_000_000, 0).expect("a time");
        let start = end - chrono::Duration::days(1);
        let until = |valid_until| Term {
            valid_from: None,
            valid_until,
        };
        let micro = chrono::Duration::microseconds(1);
        assert!(in_force(until(None), end));
        assert!(in_force(until(Some(end)), end - micro));
        assert!(!in_force(until(Some(end)), end));
        assert!(!in_force(
            until(Some(end)),
            end + chrono::Duration::seconds(1)
        ));
        let both = Term {
            valid_from: Some(start),
            valid_until: Some(end),
        };
        assert!(!in_force(both, start - micro));
        assert!(in_force(both, start));
        assert!(in_force(both, end - micro));
        assert!(!in_force(both, end));
    }

    #[test]
    fn the_sql_list_of_implying_roles_is_the_domains() {
        // rule T3: SECONDARY implies rights too, so its holders are listed with rights.
        let numbers: Vec<String> = ContactRole::IMPLYING
            .iter()
            .map(|role| role.number().to_string())
            .collect();
        assert_eq!(implying_roles!(), format!("({})", numbers.join(", ")));
        // Exactly the roles whose implied rights are not nothing on some site.
        let facts = [false, true].into_iter().flat_map(|switch| {
            [false, true].map(|stc| SiteFacts {
                admin_may_manage_access: switch,
                has_site_technical: stc,
            })
        });
        let facts: Vec<SiteFacts> = facts.collect();
        for role in ContactRole::ALL {
            let implies = facts.iter().any(|site| !role.implies(*site).is_none());
            assert_eq!(ContactRole::IMPLYING.contains(&role), implies, "{role}");
        }
    }
}
