//! SQL of S&S life (the `support_reminders` table of migration 0005 and the sweeper's scans
//! of `sites`); the rules are [`crate::domain::support_life`]'s.

use chrono::NaiveDate;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::support_life::MILESTONES;

/// The site, first by last day of S&S, whose reminder due on `today` was not published:
/// active S&S whose last day is between `today` and the earliest milestone ahead, without a
/// reminder of that day and of the milestone reached most recently (the smallest milestone
/// at least the days left, as [`crate::domain::support_life::milestone_due`] computes it).
/// Read without a lock: the caller locks the site and checks again.
pub(crate) async fn next_reminder_due(
    conn: &mut PgConnection,
    today: NaiveDate,
) -> Result<Option<Uuid>, sqlx::Error> {
    let milestones: Vec<i32> = MILESTONES.iter().map(|m| i32::from(*m)).collect();
    let farthest = milestones.iter().copied().max().unwrap_or_default();
    sqlx::query_scalar(
        "SELECT s.site_id FROM sites s \
         CROSS JOIN LATERAL ( \
           SELECT min(m) AS milestone FROM unnest($2::int[]) AS m \
            WHERE m >= s.support_end_date - $1::date) due \
         WHERE s.support_active AND s.support_end_date IS NOT NULL \
           AND s.support_end_date BETWEEN $1::date AND $1::date + $3::int \
           AND NOT EXISTS ( \
             SELECT 1 FROM support_reminders r \
              WHERE r.site_id = s.site_id AND r.support_end_date = s.support_end_date \
                AND r.milestone_days = due.milestone) \
         ORDER BY s.support_end_date, s.site_id \
         LIMIT 1",
    )
    .bind(today)
    .bind(&milestones)
    .bind(farthest)
    .fetch_optional(conn)
    .await
}

/// Records the reminder of `site_id` for its last day `end` at `milestone_days`; `false`
/// when it was recorded already (another replica, or an earlier run, published it).
pub(crate) async fn record_reminder(
    conn: &mut PgConnection,
    site_id: Uuid,
    end: NaiveDate,
    milestone_days: u16,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO support_reminders (site_id, support_end_date, milestone_days) \
         VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
    )
    .bind(site_id)
    .bind(end)
    .bind(i16::try_from(milestone_days).unwrap_or(i16::MAX))
    .execute(conn)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// The site, first by last day, whose S&S is still marked active although its last day
/// passed before `today`. Read without a lock: the caller locks the site and checks again.
pub(crate) async fn next_lapse_due(
    conn: &mut PgConnection,
    today: NaiveDate,
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT site_id FROM sites \
         WHERE support_active AND support_end_date IS NOT NULL AND support_end_date < $1 \
         ORDER BY support_end_date, site_id \
         LIMIT 1",
    )
    .bind(today)
    .fetch_optional(conn)
    .await
}

/// Records a site's S&S lapse: inactive, a new version.
pub(crate) async fn mark_lapsed(conn: &mut PgConnection, site_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE sites SET support_active = false, version = version + 1, update_time = now() \
         WHERE site_id = $1",
    )
    .bind(site_id)
    .execute(conn)
    .await?;
    Ok(())
}
