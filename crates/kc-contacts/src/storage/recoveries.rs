//! The `primary_recoveries` table (C12).

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::ContactRole;
use crate::domain::recovery::{Basis, PrimaryRecovery, Stored};

/// The columns of a [`PrimaryRecovery`], for `concat!`.
macro_rules! recovery_columns {
    () => {
        "recovery_id, site_id, requester_id, basis, vouching_user_id, previous_primary_id, \
         reason, state, request_time, waiting_end_time, expire_time, decided_by, \
         decision_reason, decide_time, new_primary_id, version"
    };
}

#[derive(sqlx::FromRow)]
struct RecoveryRow {
    recovery_id: Uuid,
    site_id: Uuid,
    requester_id: Uuid,
    basis: String,
    vouching_user_id: Option<Uuid>,
    previous_primary_id: Uuid,
    reason: String,
    state: String,
    request_time: DateTime<Utc>,
    waiting_end_time: DateTime<Utc>,
    expire_time: DateTime<Utc>,
    decided_by: Option<Uuid>,
    decision_reason: Option<String>,
    decide_time: Option<DateTime<Utc>>,
    new_primary_id: Option<Uuid>,
    version: i64,
}

impl TryFrom<RecoveryRow> for PrimaryRecovery {
    type Error = sqlx::Error;

    fn try_from(row: RecoveryRow) -> Result<Self, Self::Error> {
        let basis = match (row.basis.as_str(), row.vouching_user_id) {
            ("contact", None) => Basis::Contact,
            ("domain", Some(vouching_user_id)) => Basis::Domain { vouching_user_id },
            _ => {
                return Err(sqlx::Error::Decode(
                    "primary_recoveries.basis has an unknown value".into(),
                ));
            }
        };
        Ok(Self {
            recovery_id: row.recovery_id,
            site_id: row.site_id,
            requester_id: row.requester_id,
            basis,
            previous_primary_id: row.previous_primary_id,
            reason: row.reason,
            state: Stored::from_db(&row.state).ok_or_else(|| {
                sqlx::Error::Decode("primary_recoveries.state has an unknown value".into())
            })?,
            request_time: row.request_time,
            waiting_end_time: row.waiting_end_time,
            expire_time: row.expire_time,
            decided_by: row.decided_by,
            decision_reason: row.decision_reason,
            decide_time: row.decide_time,
            new_primary_id: row.new_primary_id,
            version: row.version,
        })
    }
}

/// Inserts an open recovery. Fails with the unique violation of
/// `primary_recoveries_one_open_per_site` when the site has an open one (C12).
pub(crate) async fn insert(
    conn: &mut PgConnection,
    recovery: &PrimaryRecovery,
) -> Result<(), sqlx::Error> {
    let (basis, vouching) = match recovery.basis {
        Basis::Contact => ("contact", None),
        Basis::Domain { vouching_user_id } => ("domain", Some(vouching_user_id)),
    };
    sqlx::query(
        "INSERT INTO primary_recoveries (recovery_id, site_id, requester_id, basis, \
           vouching_user_id, previous_primary_id, reason, state, request_time, \
           waiting_end_time, expire_time) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(recovery.recovery_id)
    .bind(recovery.site_id)
    .bind(recovery.requester_id)
    .bind(basis)
    .bind(vouching)
    .bind(recovery.previous_primary_id)
    .bind(&recovery.reason)
    .bind(recovery.state.as_str())
    .bind(recovery.request_time)
    .bind(recovery.waiting_end_time)
    .bind(recovery.expire_time)
    .execute(conn)
    .await?;
    Ok(())
}

/// The recovery with this id.
pub(crate) async fn get(
    conn: &mut PgConnection,
    recovery_id: Uuid,
) -> Result<Option<PrimaryRecovery>, sqlx::Error> {
    let row: Option<RecoveryRow> = sqlx::query_as(concat!(
        "SELECT ",
        recovery_columns!(),
        " FROM primary_recoveries WHERE recovery_id = $1"
    ))
    .bind(recovery_id)
    .fetch_optional(conn)
    .await?;
    row.map(PrimaryRecovery::try_from).transpose()
}

/// The open recovery of a site, if any (C12: at most one).
pub(crate) async fn open_of_site(
    conn: &mut PgConnection,
    site_id: Uuid,
) -> Result<Option<PrimaryRecovery>, sqlx::Error> {
    let row: Option<RecoveryRow> = sqlx::query_as(concat!(
        "SELECT ",
        recovery_columns!(),
        " FROM primary_recoveries WHERE site_id = $1 AND state = 'open'"
    ))
    .bind(site_id)
    .fetch_optional(conn)
    .await?;
    row.map(PrimaryRecovery::try_from).transpose()
}

/// Ends an open recovery in `state` at `now`: refused or attested `by` someone with a
/// reason (attested with its `new_primary`), or expired. Returns it as it is now.
pub(crate) async fn decide(
    conn: &mut PgConnection,
    recovery_id: Uuid,
    state: Stored,
    by: Option<(Uuid, &str)>,
    now: DateTime<Utc>,
    new_primary: Option<Uuid>,
) -> Result<PrimaryRecovery, sqlx::Error> {
    let row: RecoveryRow = sqlx::query_as(concat!(
        "UPDATE primary_recoveries SET state = $2, decided_by = $3, decision_reason = $4, \
           decide_time = $5, new_primary_id = $6, version = version + 1 \
         WHERE recovery_id = $1 AND state = 'open' RETURNING ",
        recovery_columns!()
    ))
    .bind(recovery_id)
    .bind(state.as_str())
    .bind(by.map(|(user, _)| user))
    .bind(by.map(|(_, reason)| reason))
    .bind(now)
    .bind(new_primary)
    .fetch_one(conn)
    .await?;
    row.try_into()
}

/// Every `(user, role)` held on a site.
pub(crate) async fn contact_roles(
    conn: &mut PgConnection,
    site_id: Uuid,
) -> Result<Vec<(Uuid, ContactRole)>, sqlx::Error> {
    let rows: Vec<(Uuid, i16)> =
        sqlx::query_as("SELECT user_id, role FROM contacts WHERE site_id = $1")
            .bind(site_id)
            .fetch_all(conn)
            .await?;
    rows.into_iter()
        .map(|(user, role)| {
            ContactRole::from_number(i32::from(role))
                .map(|role| (user, role))
                .ok_or_else(|| sqlx::Error::Decode("contacts.role has an unknown value".into()))
        })
        .collect()
}

/// Every user holding a role on a site, each once, in id order.
pub(crate) async fn contact_users(
    conn: &mut PgConnection,
    site_id: Uuid,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar("SELECT DISTINCT user_id FROM contacts WHERE site_id = $1 ORDER BY user_id")
        .bind(site_id)
        .fetch_all(conn)
        .await
}
