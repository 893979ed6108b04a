//! The compliance gaps of sites (see [`crate::domain::compliance`]) in one SQL expression,
//! for one site and for the portfolio, and the two projections it reads besides the
//! registry's own tables: `user_states` (identity's users) and `failing_addresses`
//! (notification's permanent failures).

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::sites::stored;
use crate::domain::KnownPerson;
use crate::domain::compliance::{ComplianceGap, SUPPORT_ENDING_DAYS, SiteCompliance};
use crate::domain::values::{CustomerNumber, SiteNumber};

/// Each site with the codes of its gaps ([`ComplianceGap::code`]), most serious first. `s`
/// is the site, `pc` its primary contact, `pu` the primary's user state (NULL: unknown).
/// `$1` is the number of days of [`SUPPORT_ENDING_DAYS`]. Days are UTC.
///
/// - account management (T2, T3): the primary, and whoever holds an explicit GRANTED (2)
///   grant, counted when active or unknown (a disabled or unproven account holds nothing);
/// - a failing address: a contact's notification e-mail, or its login e-mail when it has
///   none, is in `failing_addresses` (looked up from the few failing addresses, so a site of
///   many contacts is not scanned).
macro_rules! gaps_select {
    ($where:literal) => {
        concat!(
            "SELECT s.site_id, s.site_number, s.customer_number, array_remove(ARRAY[ \
               CASE WHEN s.support_active AND NOT EXISTS (SELECT FROM contacts c \
                 WHERE c.site_id = s.site_id AND c.role = 3) THEN 1 END, \
               CASE WHEN pu.state = 3 THEN 4 END, \
               CASE WHEN pu.state = 2 THEN 5 END, \
               CASE WHEN s.support_end_date < (now() AT TIME ZONE 'UTC')::date THEN 8 END, \
               CASE WHEN EXISTS (SELECT FROM failing_addresses f WHERE \
                   EXISTS (SELECT FROM contacts c WHERE c.site_id = s.site_id \
                     AND c.notification_email IS NOT NULL AND c.notification_email <> '' \
                     AND lower(c.notification_email) = f.email) \
                   OR EXISTS (SELECT FROM user_states u JOIN contacts c \
                     ON c.user_id = u.user_id AND c.site_id = s.site_id \
                     WHERE u.email = f.email \
                       AND (c.notification_email IS NULL OR c.notification_email = ''))) \
                 THEN 9 END, \
               CASE WHEN (SELECT count(*) FROM ( \
                   SELECT pc.user_id AS user_id \
                   UNION SELECT g.user_id FROM access_grants g \
                     WHERE g.site_id = s.site_id AND g.account_management = 2 \
                 ) m LEFT JOIN user_states u ON u.user_id = m.user_id \
                 WHERE m.user_id IS NOT NULL AND (u.state IS NULL OR u.state = 1)) < 2 \
                 THEN 6 END, \
               CASE WHEN s.support_active AND s.support_end_date \
                 BETWEEN (now() AT TIME ZONE 'UTC')::date \
                 AND (now() AT TIME ZONE 'UTC')::date + $1::int THEN 7 END, \
               CASE WHEN NOT EXISTS (SELECT FROM contacts c \
                 WHERE c.site_id = s.site_id AND c.role = 5) THEN 2 END, \
               CASE WHEN NOT EXISTS (SELECT FROM contacts c \
                 WHERE c.site_id = s.site_id AND c.user_id <> pc.user_id) THEN 3 END \
             ]::smallint[], NULL) AS gaps \
             FROM sites s \
             LEFT JOIN contacts pc ON pc.site_id = s.site_id AND pc.role = 1 \
             LEFT JOIN user_states pu ON pu.user_id = pc.user_id ",
            $where
        )
    };
}

#[derive(sqlx::FromRow)]
struct GapsRow {
    site_id: Uuid,
    site_number: String,
    customer_number: String,
    gaps: Vec<i16>,
}

impl TryFrom<GapsRow> for SiteCompliance {
    type Error = sqlx::Error;

    fn try_from(row: GapsRow) -> Result<Self, Self::Error> {
        Ok(SiteCompliance::from_codes(
            row.site_id,
            stored("sites.site_number", &row.site_number, SiteNumber::parse)?,
            stored(
                "sites.customer_number",
                &row.customer_number,
                CustomerNumber::parse,
            )?,
            &row.gaps,
        ))
    }
}

/// The compliance of one site, if it exists.
pub(crate) async fn of_site(
    conn: &mut PgConnection,
    site_id: Uuid,
) -> Result<Option<SiteCompliance>, sqlx::Error> {
    let row: Option<GapsRow> = sqlx::query_as(gaps_select!("WHERE s.site_id = $2"))
        .bind(SUPPORT_ENDING_DAYS)
        .bind(site_id)
        .fetch_optional(conn)
        .await?;
    row.map(SiteCompliance::try_from).transpose()
}

/// Up to `limit` sites after `after` (site-id order) with at least one gap, or with a gap of
/// `kind` when given, of the customer `customer_number` when given.
pub(crate) async fn list_with_gaps(
    conn: &mut PgConnection,
    kind: Option<ComplianceGap>,
    customer_number: Option<&str>,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<SiteCompliance>, sqlx::Error> {
    let rows: Vec<GapsRow> = sqlx::query_as(concat!(
        "SELECT * FROM (",
        gaps_select!(
            "WHERE ($2::uuid IS NULL OR s.site_id > $2) \
               AND ($3::text IS NULL OR s.customer_number = $3)"
        ),
        ") g WHERE cardinality(g.gaps) > 0 AND ($4::smallint IS NULL OR $4 = ANY(g.gaps)) \
         ORDER BY g.site_id LIMIT $5"
    ))
    .bind(SUPPORT_ENDING_DAYS)
    .bind(after)
    .bind(customer_number)
    .bind(kind.map(ComplianceGap::code))
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.into_iter().map(SiteCompliance::try_from).collect()
}

/// A user as identity last told about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UserState {
    /// User id.
    pub user_id: Uuid,
    /// Login e-mail, lowercased.
    pub email: String,
    /// Display name.
    pub display_name: String,
    /// The proto number of identity's `UserState` (1 ACTIVE, 2 INVITED, 3 DISABLED).
    pub state: i16,
}

/// Inserts or refreshes `states` (at most one per user) in one statement.
pub(crate) async fn upsert_user_states(
    conn: &mut PgConnection,
    states: &[UserState],
) -> Result<(), sqlx::Error> {
    if states.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = states.iter().map(|s| s.user_id).collect();
    let emails: Vec<&str> = states.iter().map(|s| s.email.as_str()).collect();
    let names: Vec<&str> = states.iter().map(|s| s.display_name.as_str()).collect();
    let numbers: Vec<i16> = states.iter().map(|s| s.state).collect();
    sqlx::query(
        "INSERT INTO user_states (user_id, email, display_name, state) \
         SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::smallint[]) \
         ON CONFLICT (user_id) DO UPDATE SET email = EXCLUDED.email, \
           display_name = EXCLUDED.display_name, state = EXCLUDED.state",
    )
    .bind(&ids)
    .bind(&emails)
    .bind(&names)
    .bind(&numbers)
    .execute(conn)
    .await?;
    Ok(())
}

/// What `user_states` knows of the users `user_ids`, in user-id order: those it has seen
/// with their name (a row projected before migration 0009 has none until the user's next
/// event, and is left out).
pub(crate) async fn known_people(
    conn: &mut PgConnection,
    user_ids: &[Uuid],
) -> Result<Vec<KnownPerson>, sqlx::Error> {
    let rows: Vec<(Uuid, String, String, i16)> = sqlx::query_as(
        "SELECT user_id, email, display_name, state FROM user_states \
         WHERE user_id = ANY($1) AND display_name IS NOT NULL ORDER BY user_id",
    )
    .bind(user_ids)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(user_id, email, display_name, state)| KnownPerson {
            user_id,
            email,
            display_name,
            state,
        })
        .collect())
}

/// `email`'s last notice was given up after the permanent reply `smtp_code`.
pub(crate) async fn address_failed(
    conn: &mut PgConnection,
    email: &str,
    notification_id: Uuid,
    smtp_code: i32,
    fail_time: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO failing_addresses (email, notification_id, smtp_code, fail_time) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (email) DO UPDATE SET \
         notification_id = EXCLUDED.notification_id, smtp_code = EXCLUDED.smtp_code, \
         fail_time = EXCLUDED.fail_time",
    )
    .bind(email.trim().to_lowercase())
    .bind(notification_id)
    .bind(smtp_code)
    .bind(fail_time)
    .execute(conn)
    .await?;
    Ok(())
}

/// Notices to `emails` were delivered: the addresses work. Nothing is asked of the database
/// for none.
pub(crate) async fn addresses_delivered(
    conn: &mut PgConnection,
    emails: &[String],
) -> Result<(), sqlx::Error> {
    if emails.is_empty() {
        return Ok(());
    }
    let emails: Vec<String> = emails
        .iter()
        .map(|email| email.trim().to_lowercase())
        .collect();
    sqlx::query("DELETE FROM failing_addresses WHERE email = ANY($1)")
        .bind(emails)
        .execute(conn)
        .await?;
    Ok(())
}
