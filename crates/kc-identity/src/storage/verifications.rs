//! The `email_verifications` table: the outstanding code of each (user, address), by its
//! HMAC only, with the account claim it confirms (registration codes) and the outbox event
//! that carries it sealed. Every function that ends a code returns the ids of the outbox
//! events whose sealed code must now be dropped.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::codes::Purpose;

/// What someone asked for with RegisterUser on an unproven account; applied only when the
/// code beside it is verified with the same password.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct PendingClaim {
    /// argon2id PHC string of the chosen password.
    pub password_hash: String,
    /// Display name to set.
    pub display_name: String,
    /// Locale to set.
    pub locale: String,
}

impl std::fmt::Debug for PendingClaim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Neither the hash nor personal data belong in logs.
        f.debug_struct("PendingClaim").finish_non_exhaustive()
    }
}

/// A code to store.
#[derive(Debug)]
pub(crate) struct NewCode<'a> {
    /// The account.
    pub user_id: Uuid,
    /// The address it was mailed to.
    pub email: &'a str,
    /// Why.
    pub purpose: Purpose,
    /// HMAC of the code.
    pub code_mac: &'a [u8],
    /// Whether it is a long code (mailed while the address is locked).
    pub long_code: bool,
    /// When it stops working.
    pub expire_time: DateTime<Utc>,
    /// The claim it confirms, if any.
    pub claim: Option<&'a PendingClaim>,
    /// The outbox event that carries it sealed.
    pub outbox_event_id: Uuid,
}

/// Stores a code (the caller removed any earlier one of the same user and address).
pub(crate) async fn insert(conn: &mut PgConnection, code: &NewCode<'_>) -> Result<(), sqlx::Error> {
    insert_all(conn, std::slice::from_ref(code)).await
}

/// Stores `codes` in one statement (as [`insert`] each).
pub(crate) async fn insert_all(
    conn: &mut PgConnection,
    codes: &[NewCode<'_>],
) -> Result<(), sqlx::Error> {
    let claims = |value: fn(&PendingClaim) -> &str| {
        codes
            .iter()
            .map(|code| code.claim.map(value))
            .collect::<Vec<_>>()
    };
    sqlx::query(
        "INSERT INTO email_verifications (user_id, email, purpose, code_hash, long_code, \
         expire_time, pending_password_hash, pending_display_name, pending_locale, outbox_event_id) \
         SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bytea[], $5::boolean[], \
           $6::timestamptz[], $7::text[], $8::text[], $9::text[], $10::uuid[])",
    )
    .bind(codes.iter().map(|code| code.user_id).collect::<Vec<_>>())
    .bind(codes.iter().map(|code| code.email).collect::<Vec<_>>())
    .bind(codes.iter().map(|code| code.purpose.as_str()).collect::<Vec<_>>())
    .bind(codes.iter().map(|code| code.code_mac).collect::<Vec<_>>())
    .bind(codes.iter().map(|code| code.long_code).collect::<Vec<_>>())
    .bind(codes.iter().map(|code| code.expire_time).collect::<Vec<_>>())
    .bind(claims(|claim| claim.password_hash.as_str()))
    .bind(claims(|claim| claim.display_name.as_str()))
    .bind(claims(|claim| claim.locale.as_str()))
    .bind(codes.iter().map(|code| code.outbox_event_id).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(())
}

/// An outstanding code, locked until the transaction ends.
#[derive(Debug)]
pub(crate) struct Outstanding {
    /// The address it was mailed to.
    pub email: String,
    /// HMAC of the code.
    pub code_hash: Vec<u8>,
    /// Whether it is a long code.
    pub long_code: bool,
    /// When it stops working.
    pub expire_time: DateTime<Utc>,
    /// Wrong codes tried against it so far.
    pub failed_attempts: i32,
    /// The account claim this code confirms, if any.
    pub claim: Option<PendingClaim>,
    /// The outbox event that first carried it (later ones carry copies).
    pub outbox_event_id: Uuid,
}

#[derive(sqlx::FromRow)]
struct OutstandingRow {
    email: String,
    code_hash: Vec<u8>,
    long_code: bool,
    expire_time: DateTime<Utc>,
    failed_attempts: i32,
    pending_password_hash: Option<String>,
    pending_display_name: Option<String>,
    pending_locale: Option<String>,
    outbox_event_id: Uuid,
}

impl TryFrom<OutstandingRow> for Outstanding {
    type Error = sqlx::Error;

    fn try_from(row: OutstandingRow) -> Result<Self, Self::Error> {
        Ok(Outstanding {
            email: row.email,
            code_hash: row.code_hash,
            long_code: row.long_code,
            expire_time: row.expire_time,
            failed_attempts: row.failed_attempts,
            // The table's check constraint keeps the three columns all set or all NULL.
            claim: match (
                row.pending_password_hash,
                row.pending_display_name,
                row.pending_locale,
            ) {
                (Some(password_hash), Some(display_name), Some(locale)) => Some(PendingClaim {
                    password_hash,
                    display_name,
                    locale,
                }),
                _ => None,
            },
            outbox_event_id: row.outbox_event_id,
        })
    }
}

/// The columns of an [`OutstandingRow`], for `concat!` into static SQL.
macro_rules! outstanding_columns {
    () => {
        "email, purpose, code_hash, long_code, expire_time, failed_attempts, \
         pending_password_hash, pending_display_name, pending_locale, outbox_event_id"
    };
}

/// The outstanding code of a user for an address, locked.
pub(crate) async fn get_for_update(
    conn: &mut PgConnection,
    user_id: Uuid,
    email: &str,
) -> Result<Option<Outstanding>, sqlx::Error> {
    let row: Option<OutstandingRow> = sqlx::query_as(concat!(
        "SELECT ",
        outstanding_columns!(),
        " FROM email_verifications WHERE user_id = $1 AND email = $2 FOR UPDATE"
    ))
    .bind(user_id)
    .bind(email)
    .fetch_optional(conn)
    .await?;
    row.map(TryInto::try_into).transpose()
}

/// The outstanding e-mail change code of a user, locked.
pub(crate) async fn email_change_for_update(
    conn: &mut PgConnection,
    user_id: Uuid,
) -> Result<Option<Outstanding>, sqlx::Error> {
    let row: Option<OutstandingRow> = sqlx::query_as(concat!(
        "SELECT ",
        outstanding_columns!(),
        " FROM email_verifications WHERE user_id = $1 AND purpose = 'email_change' \
         ORDER BY create_time DESC LIMIT 1 FOR UPDATE"
    ))
    .bind(user_id)
    .fetch_optional(conn)
    .await?;
    row.map(TryInto::try_into).transpose()
}

/// Counts a wrong code against one code.
pub(crate) async fn record_failure(
    conn: &mut PgConnection,
    user_id: Uuid,
    email: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE email_verifications SET failed_attempts = failed_attempts + 1 \
         WHERE user_id = $1 AND email = $2",
    )
    .bind(user_id)
    .bind(email)
    .execute(conn)
    .await?;
    Ok(())
}

/// Removes the code of a user for an address (used, replaced, worn out or expired).
pub(crate) async fn delete(
    conn: &mut PgConnection,
    user_id: Uuid,
    email: &str,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "DELETE FROM email_verifications WHERE user_id = $1 AND email = $2 \
         RETURNING array_prepend(outbox_event_id, resent_event_ids)",
    )
    .bind(user_id)
    .bind(email)
    .fetch_all(conn)
    .await
    .map(flatten)
}

/// Removes every code of a user (its address changed, or it was disabled).
pub(crate) async fn delete_all_of_user(
    conn: &mut PgConnection,
    user_id: Uuid,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "DELETE FROM email_verifications WHERE user_id = $1 RETURNING array_prepend(outbox_event_id, resent_event_ids)",
    )
    .bind(user_id)
    .fetch_all(conn)
    .await
    .map(flatten)
}

/// Withdraws every short code mailed to an address (it just locked).
pub(crate) async fn withdraw_short_codes(
    conn: &mut PgConnection,
    email: &str,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "DELETE FROM email_verifications WHERE email = $1 AND NOT long_code \
         RETURNING array_prepend(outbox_event_id, resent_event_ids)",
    )
    .bind(email)
    .fetch_all(conn)
    .await
    .map(flatten)
}

/// Removes up to `limit` expired codes (skipping those another transaction holds).
pub(crate) async fn delete_expired(
    conn: &mut PgConnection,
    limit: i64,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "DELETE FROM email_verifications WHERE (user_id, email) IN ( \
         SELECT user_id, email FROM email_verifications WHERE expire_time <= now() \
         LIMIT $1 FOR UPDATE SKIP LOCKED) RETURNING array_prepend(outbox_event_id, resent_event_ids)",
    )
    .bind(limit)
    .fetch_all(conn)
    .await
    .map(flatten)
}

/// The outbox events of the ended codes, one list per code, as one list.
fn flatten(rows: Vec<Vec<Uuid>>) -> Vec<Uuid> {
    rows.into_iter().flatten().collect()
}

/// Removes the e-mail change codes of a user mailed to another address than `email` (a
/// change to `email` replaces them).
pub(crate) async fn delete_other_email_changes(
    conn: &mut PgConnection,
    user_id: Uuid,
    email: &str,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "DELETE FROM email_verifications WHERE user_id = $1 AND purpose = 'email_change' \
         AND email <> $2 RETURNING array_prepend(outbox_event_id, resent_event_ids)",
    )
    .bind(user_id)
    .bind(email)
    .fetch_all(conn)
    .await
    .map(flatten)
}

/// Puts `claim` beside the outstanding code of a user for an address (the last
/// registration claim wins); the code now answers a registration.
pub(crate) async fn set_claim(
    conn: &mut PgConnection,
    user_id: Uuid,
    email: &str,
    claim: &PendingClaim,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE email_verifications SET purpose = 'registration', pending_password_hash = $3, \
         pending_display_name = $4, pending_locale = $5 WHERE user_id = $1 AND email = $2",
    )
    .bind(user_id)
    .bind(email)
    .bind(&claim.password_hash)
    .bind(&claim.display_name)
    .bind(&claim.locale)
    .execute(conn)
    .await?;
    Ok(())
}

/// Whether `email` was mailed a code (for any account) less than `secs` seconds ago.
pub(crate) async fn mailed_within(
    conn: &mut PgConnection,
    email: &str,
    secs: f64,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM email_verifications WHERE email = $1 \
         AND mail_time > now() - make_interval(secs => $2))",
    )
    .bind(email)
    .bind(secs)
    .fetch_one(conn)
    .await
}

/// Records that the outstanding code of a user for an address was mailed again, by the
/// outbox event `event_id` (whose sealed code must go when the code ends).
pub(crate) async fn record_resend(
    conn: &mut PgConnection,
    user_id: Uuid,
    email: &str,
    event_id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE email_verifications SET resent_event_ids = array_append(resent_event_ids, $3), \
         mail_time = now() WHERE user_id = $1 AND email = $2",
    )
    .bind(user_id)
    .bind(email)
    .bind(event_id)
    .execute(conn)
    .await?;
    Ok(())
}
