//! The `access_requests` table (A1, A5, A6).

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::{grants_of_ranks, ranks_of};
use crate::domain::{AccessRequest, AccessRequestKind, Grants, RequestState};

/// The columns of an [`AccessRequest`] (`r` the request, `s` its site), for `concat!`.
macro_rules! columns {
    () => {
        "r.request_id, r.site_id, s.site_number, r.requester_id, r.kind, r.requested, \
         r.justification, r.state, r.decided_by, r.granted, r.decision_reason, \
         r.matched_domain, r.auto_approved, r.create_time, r.decide_time, r.expire_time, \
         r.version"
    };
}

/// Requests joined with their site.
macro_rules! from {
    () => {
        " FROM access_requests r JOIN sites s ON s.site_id = r.site_id "
    };
}

/// A `SELECT` of the [`columns!`] of requests joined with their site, then `$rest` (its
/// `WHERE` and what follows), for `query_as`.
macro_rules! select {
    ($rest:literal) => {
        concat!("SELECT ", columns!(), from!(), $rest)
    };
}

#[derive(sqlx::FromRow)]
struct RequestRow {
    request_id: Uuid,
    site_id: Uuid,
    site_number: String,
    requester_id: Uuid,
    kind: i16,
    requested: Vec<i16>,
    justification: String,
    state: i16,
    decided_by: Option<Uuid>,
    granted: Option<Vec<i16>>,
    decision_reason: Option<String>,
    matched_domain: Option<String>,
    auto_approved: bool,
    create_time: DateTime<Utc>,
    decide_time: Option<DateTime<Utc>>,
    expire_time: DateTime<Utc>,
    version: i64,
}

impl TryFrom<RequestRow> for AccessRequest {
    type Error = sqlx::Error;

    fn try_from(row: RequestRow) -> Result<Self, Self::Error> {
        Ok(AccessRequest {
            request_id: row.request_id,
            site_id: row.site_id,
            site_number: row.site_number,
            requester_id: row.requester_id,
            kind: AccessRequestKind::from_number(i32::from(row.kind)).ok_or_else(|| {
                sqlx::Error::Decode("access_requests.kind has an unknown value".into())
            })?,
            requested: grants_of_ranks(&row.requested, "access_requests.requested")?,
            justification: row.justification,
            state: RequestState::from_number(i32::from(row.state)).ok_or_else(|| {
                sqlx::Error::Decode("access_requests.state has an unknown value".into())
            })?,
            decided_by: row.decided_by,
            granted: row
                .granted
                .map(|ranks| grants_of_ranks(&ranks, "access_requests.granted"))
                .transpose()?,
            decision_reason: row.decision_reason,
            matched_domain: row.matched_domain,
            auto_approved: row.auto_approved,
            create_time: row.create_time,
            decide_time: row.decide_time,
            expire_time: row.expire_time,
            version: row.version,
        })
    }
}

fn requests(rows: Vec<RequestRow>) -> Result<Vec<AccessRequest>, sqlx::Error> {
    rows.into_iter().map(AccessRequest::try_from).collect()
}

/// A request to insert, PENDING.
#[derive(Debug)]
pub struct NewRequest<'a> {
    /// Id (UUID v7).
    pub request_id: Uuid,
    /// Site.
    pub site_id: Uuid,
    /// Requester.
    pub requester_id: Uuid,
    /// Kind.
    pub kind: AccessRequestKind,
    /// Levels asked for.
    pub requested: &'a Grants,
    /// Justification.
    pub justification: &'a str,
    /// Domain of the matching policy (A7).
    pub matched_domain: Option<&'a str>,
    /// When it expires.
    pub expire_time: DateTime<Utc>,
}

/// Inserts a PENDING request. A second pending request of the user for the site and kind
/// fails with the unique violation of `access_requests_one_pending` (A6).
pub async fn insert(
    conn: &mut PgConnection,
    request: &NewRequest<'_>,
) -> Result<AccessRequest, sqlx::Error> {
    let row: RequestRow = sqlx::query_as(concat!(
        "WITH r AS (INSERT INTO access_requests (request_id, site_id, requester_id, kind, \
           requested, justification, matched_domain, expire_time) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *) SELECT ",
        columns!(),
        " FROM r JOIN sites s ON s.site_id = r.site_id"
    ))
    .bind(request.request_id)
    .bind(request.site_id)
    .bind(request.requester_id)
    .bind(request.kind.number() as i16)
    .bind(ranks_of(request.requested))
    .bind(request.justification)
    .bind(request.matched_domain)
    .bind(request.expire_time)
    .fetch_one(conn)
    .await?;
    row.try_into()
}

/// The request with this id.
pub async fn get(
    conn: &mut PgConnection,
    request_id: Uuid,
) -> Result<Option<AccessRequest>, sqlx::Error> {
    one(conn, select!("WHERE r.request_id = $1"), request_id).await
}

/// The request with this id, locked until the transaction ends.
pub async fn lock(
    conn: &mut PgConnection,
    request_id: Uuid,
) -> Result<Option<AccessRequest>, sqlx::Error> {
    one(
        conn,
        select!("WHERE r.request_id = $1 FOR UPDATE OF r"),
        request_id,
    )
    .await
}

/// The request `sql` (a [`select!`] of one request by its id, `$1`) reads, if any.
async fn one(
    conn: &mut PgConnection,
    sql: &'static str,
    request_id: Uuid,
) -> Result<Option<AccessRequest>, sqlx::Error> {
    let row: Option<RequestRow> = sqlx::query_as(sql)
        .bind(request_id)
        .fetch_optional(conn)
        .await?;
    row.map(AccessRequest::try_from).transpose()
}

/// A decision on a PENDING request.
#[derive(Debug)]
pub struct Decision<'a> {
    /// The new state: APPROVED, REJECTED, CANCELLED or EXPIRED.
    pub state: RequestState,
    /// Approver (APPROVED by a person, REJECTED).
    pub decided_by: Option<Uuid>,
    /// Levels granted (APPROVED).
    pub granted: Option<&'a Grants>,
    /// Reason or note.
    pub reason: Option<&'a str>,
    /// Approved by a domain policy (A7).
    pub auto_approved: bool,
    /// The version the decider read; `None`: no check.
    pub expected_version: Option<i64>,
}

/// Decides a request, only while it is PENDING (and at `expected_version` when given): a
/// decided request never changes again (A6). `None` when it was no longer pending or the
/// version moved.
pub async fn decide(
    conn: &mut PgConnection,
    request_id: Uuid,
    decision: &Decision<'_>,
) -> Result<Option<AccessRequest>, sqlx::Error> {
    let row: Option<RequestRow> = sqlx::query_as(concat!(
        "WITH r AS (UPDATE access_requests SET state = $2, decided_by = $3, granted = $4, \
           decision_reason = $5, auto_approved = $6, decide_time = now(), version = version + 1 \
         WHERE request_id = $1 AND state = 1 AND ($7::bigint IS NULL OR version = $7) \
         RETURNING *) SELECT ",
        columns!(),
        " FROM r JOIN sites s ON s.site_id = r.site_id"
    ))
    .bind(request_id)
    .bind(decision.state.number() as i16)
    .bind(decision.decided_by)
    .bind(decision.granted.map(ranks_of))
    .bind(decision.reason)
    .bind(decision.auto_approved)
    .bind(decision.expected_version)
    .fetch_optional(conn)
    .await?;
    row.map(AccessRequest::try_from).transpose()
}

/// Up to `limit` requests of a site, optionally in one state, older than `before` (request
/// ids are UUID v7: time-ordered), newest first.
pub async fn page_of_site(
    conn: &mut PgConnection,
    site_id: Uuid,
    state: Option<RequestState>,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Vec<AccessRequest>, sqlx::Error> {
    let rows: Vec<RequestRow> = sqlx::query_as(select!(
        "WHERE r.site_id = $1 AND ($2::smallint IS NULL OR r.state = $2) \
           AND ($3::uuid IS NULL OR r.request_id < $3) \
         ORDER BY r.request_id DESC LIMIT $4"
    ))
    .bind(site_id)
    .bind(state.map(|state| state.number() as i16))
    .bind(before)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    requests(rows)
}

/// Up to `limit` requests of a requester older than `before`, newest first.
pub async fn page_of_requester(
    conn: &mut PgConnection,
    requester_id: Uuid,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Vec<AccessRequest>, sqlx::Error> {
    let rows: Vec<RequestRow> = sqlx::query_as(select!(
        "WHERE r.requester_id = $1 AND ($2::uuid IS NULL OR r.request_id < $2) \
         ORDER BY r.request_id DESC LIMIT $3"
    ))
    .bind(requester_id)
    .bind(before)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    requests(rows)
}

/// Up to `limit` PENDING requests past their expiry time, locked; rows another transaction
/// holds (a decision in progress, another replica's sweeper) are skipped.
pub async fn lock_expired(
    conn: &mut PgConnection,
    limit: i64,
) -> Result<Vec<AccessRequest>, sqlx::Error> {
    let rows: Vec<RequestRow> = sqlx::query_as(select!(
        "WHERE r.state = 1 AND r.expire_time <= now() \
         ORDER BY r.expire_time LIMIT $1 FOR UPDATE OF r SKIP LOCKED"
    ))
    .bind(limit)
    .fetch_all(conn)
    .await?;
    requests(rows)
}
