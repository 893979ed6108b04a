//! Notifications, their delivery attempts, and the workers' queue.
//!
//! - Creation inserts many rows in one statement, `ON CONFLICT DO NOTHING` on
//!   `(source_key, recipient_key, kind)` (N3): a replayed event or notice creates nothing,
//!   and wakes the workers with a notification on [`DUE_CHANNEL`] at commit.
//! - Workers [`claim`] due rows with one `UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP
//!   LOCKED LIMIT n)`: the rows become SENDING under the worker's lease (the lease end is
//!   the row's `due_time`, so a lease that ran out makes the row due again and another
//!   worker takes it over, recording the abandoned attempt). Outcomes are [`record`]ed in
//!   batches, only while the worker still holds the lease of that attempt.
//! - Issue: secrets at rest. A mail carrying one of identity's one-time codes (rules I1,
//!   I2; `carries_code`) loses its text and HTML parts (emptied, `redact_time` set) in the
//!   statement that records it DELIVERED or DEAD, and [`redact_expired`] empties those whose
//!   code expired before that, giving the unsent ones up as DEAD. A redacted notification
//!   is never sent again ([`revive`] refuses it). The subject, the only rendered part the
//!   API shows, never holds a code.
//! - The queue's statements ([`claim`], [`record`], [`get_many`]) are planned afresh on each
//!   execution (`persistent(false)`: an unnamed statement, a custom plan; sqlx then takes
//!   two round trips, parse and execute). The table goes from empty to many thousand rows
//!   within minutes of a new deployment's first import, and a cached plan made while it was
//!   small (a scan of the whole table and a sort, a hash join over it) stayed in use: in the
//!   benchmark's bulk import the claim's execution took 2.7 ms and the record's 2.5 ms with
//!   cached plans, 0.46 and 0.50 ms planned afresh (execution time only), and the import
//!   went from 92 to 103 rows a second. They run once per wake-up or batch of mails, not
//!   once per mail; the other statements keep their cached plans, whose planning on every
//!   call cost more than it saved (tried for every statement: 78 rows a second).

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor, PgPool};
use uuid::Uuid;

use super::DUE_CHANNEL;
use crate::domain::{
    Attempt, Kind, Lang, ListFilter, NewNotification, Notification, Outcome, State,
};

/// What the worker writes into the attempt of a lease that ran out.
pub(crate) const ABANDONED_DETAIL: &str =
    "the worker holding the lease stopped before it recorded an outcome; another took over";

/// The columns of a [`Notification`] (`n`), for `concat!`.
macro_rules! columns {
    () => {
        "n.notification_id, n.site_id, n.recipient_user_id, n.email, n.kind, n.locale, \
         n.subject, n.state, n.rule, n.source_event_id, n.idempotency_key, n.create_time, \
         n.deliver_time, n.due_time"
    };
}

#[derive(sqlx::FromRow)]
struct NotificationRow {
    notification_id: Uuid,
    site_id: Option<Uuid>,
    recipient_user_id: Option<Uuid>,
    email: String,
    kind: i16,
    locale: String,
    subject: String,
    state: i16,
    rule: String,
    source_event_id: String,
    idempotency_key: Option<String>,
    create_time: DateTime<Utc>,
    deliver_time: Option<DateTime<Utc>>,
    due_time: Option<DateTime<Utc>>,
}

fn decode_error(what: &str) -> sqlx::Error {
    sqlx::Error::Decode(format!("{what} has an unknown value").into())
}

fn kind_of(number: i16) -> Result<Kind, sqlx::Error> {
    Kind::from_number(i32::from(number)).ok_or_else(|| decode_error("notifications.kind"))
}

impl TryFrom<NotificationRow> for Notification {
    type Error = sqlx::Error;

    fn try_from(row: NotificationRow) -> Result<Self, Self::Error> {
        let state = State::from_number(i32::from(row.state))
            .ok_or_else(|| decode_error("notifications.state"))?;
        Ok(Notification {
            notification_id: row.notification_id,
            site_id: row.site_id,
            recipient_user_id: row.recipient_user_id,
            email: row.email,
            kind: kind_of(row.kind)?,
            locale: Lang::from_stored(&row.locale),
            subject: row.subject,
            state,
            rule: row.rule,
            source_event_id: row.source_event_id,
            idempotency_key: row.idempotency_key,
            attempts: Vec::new(),
            create_time: row.create_time,
            deliver_time: row.deliver_time,
            // While SENDING, `due_time` is the end of the lease, not an attempt time.
            next_attempt_time: row
                .due_time
                .filter(|_| matches!(state, State::Pending | State::Failed)),
        })
    }
}

fn decode_all(rows: Vec<NotificationRow>) -> Result<Vec<Notification>, sqlx::Error> {
    rows.into_iter().map(Notification::try_from).collect()
}

/// The statement that inserts the notifications that do not exist yet (N3), returning
/// `$returning` of each it inserted, and wakes the workers at commit when it inserted any.
/// The workers are woken in the same statement, once per inserted row (Postgres folds the
/// identical notifications of a transaction into one), never when none was.
macro_rules! insert_sql {
    ($returning:expr) => {
        concat!(
            "WITH inserted AS ( \
             INSERT INTO notifications AS n (notification_id, source_key, recipient_key, kind, \
               site_id, recipient_user_id, email, locale, subject, text_body, html_body, rule, \
               source_event_id, idempotency_key, carries_code, code_expire_time) \
             SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::smallint[], $5::uuid[], \
               $6::uuid[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], \
               $12::text[], $13::text[], $14::text[], $15::boolean[], $16::timestamptz[]) \
             ON CONFLICT (source_key, recipient_key, kind) DO NOTHING \
             RETURNING ",
            $returning,
            ") SELECT inserted.* FROM inserted CROSS JOIN LATERAL \
               (SELECT pg_notify($17, '') WHERE inserted.notification_id IS NOT NULL) AS woken"
        )
    };
}

/// Binds `new` to a statement of [`insert_sql`], column by column.
fn bind_new<'q, O>(
    query: sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>,
    new: &'q [NewNotification],
) -> sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments> {
    let column = |f: fn(&'q NewNotification) -> &'q str| new.iter().map(f).collect::<Vec<_>>();
    query
        .bind(new.iter().map(|n| n.notification_id).collect::<Vec<_>>())
        .bind(column(|n| n.source_key.as_str()))
        .bind(column(|n| n.recipient_key.as_str()))
        .bind(
            new.iter()
                .map(|n| n.kind.number() as i16)
                .collect::<Vec<_>>(),
        )
        .bind(new.iter().map(|n| n.site_id).collect::<Vec<_>>())
        .bind(new.iter().map(|n| n.recipient_user_id).collect::<Vec<_>>())
        .bind(column(|n| n.email.as_str()))
        .bind(column(|n| n.locale.as_str()))
        .bind(column(|n| n.rendered.subject.as_str()))
        .bind(column(|n| n.rendered.text.as_str()))
        .bind(column(|n| n.rendered.html.as_str()))
        .bind(column(|n| n.rule.as_str()))
        .bind(column(|n| n.source_event_id.as_str()))
        .bind(
            new.iter()
                .map(|n| n.idempotency_key.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(
            new.iter()
                .map(|n| n.kind.carries_code())
                .collect::<Vec<_>>(),
        )
        .bind(
            new.iter()
                .map(|n| n.code_expire_time.filter(|_| n.kind.carries_code()))
                .collect::<Vec<_>>(),
        )
        .bind(DUE_CHANNEL)
}

/// Inserts the notifications that do not exist yet (N3) and returns those it inserted, in
/// the order given; wakes the workers at commit when it inserted any, in the same statement.
pub(crate) async fn insert(
    conn: &mut PgConnection,
    new: &[NewNotification],
) -> Result<Vec<Notification>, sqlx::Error> {
    if new.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<NotificationRow> = bind_new(sqlx::query_as(insert_sql!(columns!())), new)
        .fetch_all(&mut *conn)
        .await?;
    let mut inserted = decode_all(rows)?;
    let order: HashMap<Uuid, usize> = new
        .iter()
        .enumerate()
        .map(|(i, n)| (n.notification_id, i))
        .collect();
    inserted.sort_by_key(|n| order.get(&n.notification_id).copied());
    Ok(inserted)
}

/// Like [`insert`], for a caller that needs only how many it inserted (the followers):
/// nothing of the rows comes back, not their bodies (a third less of the statement's time).
pub(crate) async fn insert_counted(
    conn: &mut PgConnection,
    new: &[NewNotification],
) -> Result<usize, sqlx::Error> {
    if new.is_empty() {
        return Ok(0);
    }
    let inserted: Vec<(Uuid,)> = bind_new(sqlx::query_as(insert_sql!("notification_id")), new)
        .fetch_all(conn)
        .await?;
    Ok(inserted.len())
}

/// Wakes every replica's workers when the caller's transaction commits.
pub(crate) async fn wake_workers(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(DUE_CHANNEL)
        .execute(conn)
        .await?;
    Ok(())
}

/// Fills in the attempts of `notifications`, oldest first.
///
/// One index range per notification, whatever the statistics say: as `= ANY($1)`, a plan
/// made while the table was small (a new deployment's first mails) kept scanning all of
/// `attempts` for every delivery recorded as the table grew.
async fn with_attempts<'e>(
    executor: impl PgExecutor<'e>,
    mut notifications: Vec<Notification>,
) -> Result<Vec<Notification>, sqlx::Error> {
    if notifications.is_empty() {
        return Ok(notifications);
    }
    let ids: Vec<Uuid> = notifications.iter().map(|n| n.notification_id).collect();
    let rows: Vec<(Uuid, i32, DateTime<Utc>, i16, i32, String)> = sqlx::query_as(
        "SELECT a.notification_id, a.attempt, a.attempt_time, a.outcome, a.smtp_code, a.detail \
         FROM unnest($1::uuid[]) AS wanted(id) \
         CROSS JOIN LATERAL (SELECT * FROM attempts WHERE attempts.notification_id = wanted.id \
           ORDER BY attempts.attempt) a \
         ORDER BY a.notification_id, a.attempt",
    )
    .bind(&ids)
    .fetch_all(executor)
    .await?;
    let mut by_id: HashMap<Uuid, Vec<Attempt>> = HashMap::new();
    for (id, attempt, time, outcome, smtp_code, detail) in rows {
        let outcome = Outcome::from_number(i32::from(outcome))
            .ok_or_else(|| decode_error("attempts.outcome"))?;
        by_id.entry(id).or_default().push(Attempt {
            attempt,
            time,
            outcome,
            smtp_code,
            detail,
        });
    }
    for notification in &mut notifications {
        notification.attempts = by_id
            .remove(&notification.notification_id)
            .unwrap_or_default();
    }
    Ok(notifications)
}

/// The notification of `id` with its attempts.
pub(crate) async fn get(pool: &PgPool, id: Uuid) -> Result<Option<Notification>, sqlx::Error> {
    let row: Option<NotificationRow> = sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM notifications n WHERE n.notification_id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    Ok(with_attempts(pool, vec![row.try_into()?]).await?.pop())
}

/// The notifications of `ids` with their attempts, in the order given.
pub(crate) async fn get_many(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> Result<Vec<Notification>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<NotificationRow> = sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM notifications n WHERE n.notification_id = ANY($1)"
    ))
    .bind(ids)
    .persistent(false)
    .fetch_all(&mut *conn)
    .await?;
    let mut found = with_attempts(&mut *conn, decode_all(rows)?).await?;
    let order: HashMap<Uuid, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    found.sort_by_key(|n| order.get(&n.notification_id).copied());
    Ok(found)
}

/// The notifications SendNotice created under `key`, oldest first.
pub(crate) async fn of_idempotency_key(
    conn: &mut PgConnection,
    key: &str,
) -> Result<Vec<Notification>, sqlx::Error> {
    let rows: Vec<NotificationRow> = sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM notifications n WHERE n.idempotency_key = $1 ORDER BY n.notification_id"
    ))
    .bind(key)
    .fetch_all(&mut *conn)
    .await?;
    with_attempts(&mut *conn, decode_all(rows)?).await
}

/// Up to `limit` notifications matching `filter`, newest first (by creation time, then id),
/// after `before`, the `(create_time, notification_id)` of the last one of the previous
/// page, with their attempts.
pub(crate) async fn list(
    pool: &PgPool,
    filter: &ListFilter,
    before: Option<(DateTime<Utc>, Uuid)>,
    limit: u32,
) -> Result<Vec<Notification>, sqlx::Error> {
    let rows: Vec<NotificationRow> = sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM notifications n \
         WHERE ($1::uuid IS NULL OR n.site_id = $1) \
           AND ($2::uuid IS NULL OR n.recipient_user_id = $2) \
           AND ($3::smallint IS NULL OR n.state = $3) \
           AND ($4::timestamptz IS NULL OR (n.create_time, n.notification_id) < ($4, $5)) \
         ORDER BY n.create_time DESC, n.notification_id DESC LIMIT $6"
    ))
    .bind(filter.site_id)
    .bind(filter.recipient_user_id)
    .bind(filter.state.map(State::number))
    .bind(before.map(|(time, _)| time))
    .bind(before.map(|(_, id)| id))
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    with_attempts(pool, decode_all(rows)?).await
}

/// What reviving a notification found.
#[derive(Debug)]
pub(crate) enum Revival {
    /// It was DEAD and is PENDING again.
    Revived(Box<Notification>),
    /// It is in another state.
    NotDead(State),
    /// It is DEAD, but its rendered parts were emptied with the one-time code they held
    /// (issue: secrets at rest): sending it again would mail no code.
    CodeWithdrawn,
    /// There is no such notification.
    NotFound,
}

/// Moves a DEAD notification back to PENDING for a new round of attempts, and wakes the
/// workers at commit; a redacted one stays DEAD ([`Revival::CodeWithdrawn`]).
pub(crate) async fn revive(conn: &mut PgConnection, id: Uuid) -> Result<Revival, sqlx::Error> {
    let row: Option<NotificationRow> = sqlx::query_as(concat!(
        "UPDATE notifications n SET state = 1, due_time = now(), round_start = attempt_count, \
           update_time = now() \
         WHERE n.notification_id = $1 AND n.state = 5 AND n.redact_time IS NULL RETURNING ",
        columns!()
    ))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    match row {
        Some(row) => {
            wake_workers(&mut *conn).await?;
            let revived = with_attempts(&mut *conn, vec![row.try_into()?]).await?;
            match revived.into_iter().next() {
                Some(notification) => Ok(Revival::Revived(Box::new(notification))),
                None => Ok(Revival::NotFound),
            }
        }
        None => {
            let state: Option<(i16, bool)> = sqlx::query_as(
                "SELECT state, redact_time IS NOT NULL FROM notifications \
                 WHERE notification_id = $1",
            )
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
            match state {
                None => Ok(Revival::NotFound),
                Some((5, true)) => Ok(Revival::CodeWithdrawn),
                Some((number, _)) => Ok(Revival::NotDead(
                    State::from_number(i32::from(number))
                        .ok_or_else(|| decode_error("notifications.state"))?,
                )),
            }
        }
    }
}

/// A notification a worker holds the lease of: everything it needs to send it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    /// Id.
    pub notification_id: Uuid,
    /// Kind.
    pub kind: Kind,
    /// Address.
    pub email: String,
    /// Language.
    pub locale: Lang,
    /// Subject.
    pub subject: String,
    /// Plain-text part.
    pub text_body: String,
    /// HTML part.
    pub html_body: String,
    /// The number of this attempt, from 1.
    pub attempt: i32,
    /// The number of this attempt within its round (a RetryNotification starts a round).
    pub attempt_in_round: i32,
    /// When the attempt started (the claim).
    pub attempt_time: DateTime<Utc>,
    /// Whether it carries a one-time code that expired: it is not sent, but given up
    /// (issue: secrets at rest; the record then empties it).
    pub code_expired: bool,
}

#[derive(sqlx::FromRow)]
struct ClaimedRow {
    notification_id: Uuid,
    kind: i16,
    email: String,
    locale: String,
    subject: String,
    text_body: String,
    html_body: String,
    attempt_count: i32,
    round_start: i32,
    attempt_time: DateTime<Utc>,
    code_expired: bool,
}

/// Takes the lease of up to `limit` due notifications for `owner` during `lease`, oldest
/// due first, skipping rows other workers are claiming. A row whose previous lease ran out
/// (its worker died) gets that attempt recorded as ABANDONED.
pub(crate) async fn claim(
    pool: &PgPool,
    owner: Uuid,
    lease: Duration,
    limit: u32,
) -> Result<Vec<Claimed>, sqlx::Error> {
    let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
    let rows: Vec<ClaimedRow> = sqlx::query_as(
        "WITH due AS ( \
             SELECT notification_id, state AS previous_state, attempt_count AS previous_attempt, \
               attempt_time AS previous_time \
             FROM notifications WHERE due_time <= now() \
             ORDER BY due_time LIMIT $3 FOR UPDATE SKIP LOCKED \
         ), abandoned AS ( \
             INSERT INTO attempts (notification_id, attempt, attempt_time, outcome, detail) \
             SELECT notification_id, previous_attempt, coalesce(previous_time, now()), 4, $4 \
             FROM due WHERE previous_state = 2 AND previous_attempt >= 1 \
             ON CONFLICT DO NOTHING \
         ) \
         UPDATE notifications n SET state = 2, lease_owner = $1, \
           due_time = now() + $2::float8 * interval '1 millisecond', \
           attempt_count = n.attempt_count + 1, attempt_time = now(), update_time = now() \
         FROM due WHERE n.notification_id = due.notification_id \
         RETURNING n.notification_id, n.kind, n.email, n.locale, n.subject, n.text_body, \
           n.html_body, n.attempt_count, n.round_start, n.attempt_time, \
           coalesce(n.carries_code AND n.code_expire_time <= now(), false) AS code_expired",
    )
    .bind(owner)
    .bind(lease_ms)
    .bind(i64::from(limit))
    .bind(ABANDONED_DETAIL)
    .persistent(false)
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|row| {
            Ok(Claimed {
                notification_id: row.notification_id,
                kind: kind_of(row.kind)?,
                email: row.email,
                locale: Lang::from_stored(&row.locale),
                subject: row.subject,
                text_body: row.text_body,
                html_body: row.html_body,
                attempt: row.attempt_count,
                attempt_in_round: row.attempt_count - row.round_start,
                attempt_time: row.attempt_time,
                code_expired: row.code_expired,
            })
        })
        .collect()
}

/// The outcome of one attempt, to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Recorded {
    /// The notification.
    pub notification_id: Uuid,
    /// The attempt's number.
    pub attempt: i32,
    /// When it started.
    pub attempt_time: DateTime<Utc>,
    /// How it ended.
    pub outcome: Outcome,
    /// The SMTP reply code, 0 when none.
    pub smtp_code: i32,
    /// What happened.
    pub detail: String,
    /// The notification's new state: DELIVERED, FAILED or DEAD.
    pub state: State,
    /// For FAILED, the delay until the next attempt.
    pub retry_in: Option<Duration>,
}

/// Records the outcomes of attempts of `owner` in the caller's transaction: the new states,
/// and each attempt. Outcomes of attempts whose lease `owner` lost (another worker took the
/// row over) are dropped. Returns the notifications whose state was written.
///
/// A mail carrying a one-time code that becomes DELIVERED or DEAD is emptied by the same
/// statement (issue: secrets at rest): its code is readable nowhere once it was used for
/// the mail, or given up.
///
/// A row still leased to `owner` is SENDING (the table's CHECK ties `lease_owner` to state
/// 2), so the statement matches the lease alone: a `state = 2` condition drew the planner to
/// the state index, whose entries churn with every claim and record.
pub(crate) async fn record(
    conn: &mut PgConnection,
    owner: Uuid,
    outcomes: &[Recorded],
) -> Result<Vec<Uuid>, sqlx::Error> {
    if outcomes.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = outcomes.iter().map(|o| o.notification_id).collect();
    let attempts: Vec<i32> = outcomes.iter().map(|o| o.attempt).collect();
    let states: Vec<i16> = outcomes.iter().map(|o| o.state.number()).collect();
    let delays: Vec<i64> = outcomes
        .iter()
        .map(|o| {
            o.retry_in.map_or(0, |delay| {
                i64::try_from(delay.as_millis()).unwrap_or(i64::MAX)
            })
        })
        .collect();
    let kept: Vec<Uuid> = sqlx::query_scalar(
        "UPDATE notifications n SET state = t.state, lease_owner = NULL, \
           due_time = CASE WHEN t.state = 4 THEN now() + t.delay_ms::float8 * interval '1 millisecond' END, \
           deliver_time = CASE WHEN t.state = 3 THEN now() ELSE n.deliver_time END, \
           text_body = CASE WHEN n.carries_code AND t.state IN (3, 5) THEN '' \
             ELSE n.text_body END, \
           html_body = CASE WHEN n.carries_code AND t.state IN (3, 5) THEN '' \
             ELSE n.html_body END, \
           redact_time = CASE WHEN n.carries_code AND t.state IN (3, 5) THEN now() \
             ELSE n.redact_time END, \
           update_time = now() \
         FROM unnest($2::uuid[], $3::int[], $4::smallint[], $5::bigint[]) \
           AS t(id, attempt, state, delay_ms) \
         WHERE n.notification_id = t.id AND n.lease_owner = $1 \
           AND n.attempt_count = t.attempt \
         RETURNING n.notification_id",
    )
    .bind(owner)
    .bind(&ids)
    .bind(&attempts)
    .bind(&states)
    .bind(&delays)
    .persistent(false)
    .fetch_all(&mut *conn)
    .await?;
    let kept_set: std::collections::HashSet<Uuid> = kept.iter().copied().collect();
    let written: Vec<&Recorded> = outcomes
        .iter()
        .filter(|o| kept_set.contains(&o.notification_id))
        .collect();
    if !written.is_empty() {
        let ids: Vec<Uuid> = written.iter().map(|o| o.notification_id).collect();
        let attempts: Vec<i32> = written.iter().map(|o| o.attempt).collect();
        let times: Vec<DateTime<Utc>> = written.iter().map(|o| o.attempt_time).collect();
        let outcomes: Vec<i16> = written.iter().map(|o| o.outcome.number()).collect();
        let codes: Vec<i32> = written.iter().map(|o| o.smtp_code).collect();
        let details: Vec<&str> = written.iter().map(|o| o.detail.as_str()).collect();
        sqlx::query(
            "INSERT INTO attempts (notification_id, attempt, attempt_time, outcome, smtp_code, detail) \
             SELECT * FROM unnest($1::uuid[], $2::int[], $3::timestamptz[], $4::smallint[], \
               $5::int[], $6::text[]) \
             ON CONFLICT (notification_id, attempt) DO NOTHING",
        )
        .bind(&ids)
        .bind(&attempts)
        .bind(&times)
        .bind(&outcomes)
        .bind(&codes)
        .bind(&details)
        .execute(&mut *conn)
        .await?;
    }
    Ok(kept)
}

/// The detail of the attempt the sweep records when it gives up a code mail never sent.
pub(crate) const CODE_EXPIRED_DETAIL: &str = "not sent: its one-time code expired before it was delivered; the text and HTML were emptied (issue: secrets at rest)";

/// A code mail the sweep redacted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Redacted {
    /// The notification.
    pub notification_id: Uuid,
    /// Whether it was still to be sent (PENDING or FAILED) and was given up as DEAD by the
    /// sweep, rather than emptied in a final state.
    pub given_up: bool,
}

/// Empties, in the caller's transaction, up to `limit` mails whose one-time code expired
/// and that still hold it (issue: secrets at rest), oldest expiry first, skipping rows
/// others are working on. One still to be sent (PENDING, FAILED) is given up: DEAD, with an
/// attempt that says why ([`CODE_EXPIRED_DETAIL`]). One a worker is sending (SENDING) is
/// left to it: the worker's record empties it, and a lease that ran out makes it due, and
/// the next worker gives it up unsent ([`Claimed::code_expired`]).
pub(crate) async fn redact_expired(
    conn: &mut PgConnection,
    limit: u32,
) -> Result<Vec<Redacted>, sqlx::Error> {
    let rows: Vec<(Uuid, bool)> = sqlx::query_as(
        "WITH expired AS ( \
             SELECT notification_id, state IN (1, 4) AS given_up, attempt_count + 1 AS attempt \
             FROM notifications \
             WHERE carries_code AND redact_time IS NULL AND code_expire_time <= now() \
               AND state <> 2 \
             ORDER BY code_expire_time LIMIT $1 FOR UPDATE SKIP LOCKED \
         ), not_sent AS ( \
             INSERT INTO attempts (notification_id, attempt, attempt_time, outcome, detail) \
             SELECT notification_id, attempt, now(), 3, $2 FROM expired WHERE given_up \
             ON CONFLICT DO NOTHING \
         ) \
         UPDATE notifications n SET text_body = '', html_body = '', redact_time = now(), \
           state = CASE WHEN expired.given_up THEN 5 ELSE n.state END, \
           attempt_count = CASE WHEN expired.given_up THEN expired.attempt \
             ELSE n.attempt_count END, \
           attempt_time = CASE WHEN expired.given_up THEN now() ELSE n.attempt_time END, \
           due_time = NULL, update_time = now() \
         FROM expired WHERE n.notification_id = expired.notification_id \
         RETURNING n.notification_id, expired.given_up",
    )
    .bind(i64::from(limit))
    .bind(CODE_EXPIRED_DETAIL)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(notification_id, given_up)| Redacted {
            notification_id,
            given_up,
        })
        .collect())
}

/// The states the backlog gauge reports: those of notifications not done with (PENDING,
/// SENDING, FAILED awaiting its retry) and the DEAD ones, given up, that need an operator.
pub(crate) const BACKLOG_STATES: [State; 4] =
    [State::Pending, State::Sending, State::Failed, State::Dead];

/// How many notifications are in each of [`BACKLOG_STATES`] (0 for a state none is in), in
/// that order. One index-only count over `notifications_state_idx`: cheap while the table
/// holds few DEAD rows, which grow until an operator retries them.
pub(crate) async fn backlog(pool: &PgPool) -> Result<[(State, i64); 4], sqlx::Error> {
    let rows: Vec<(i16, i64)> = sqlx::query_as(
        "SELECT state, count(*) FROM notifications WHERE state = ANY($1) GROUP BY state",
    )
    .bind(BACKLOG_STATES.map(State::number).to_vec())
    .fetch_all(pool)
    .await?;
    Ok(backlog_counts(&rows))
}

/// Every state of [`BACKLOG_STATES`] with its count among `rows` (`(state number, count)`).
fn backlog_counts(rows: &[(i16, i64)]) -> [(State, i64); 4] {
    BACKLOG_STATES.map(|state| {
        let count = rows
            .iter()
            .filter(|(number, _)| *number == state.number())
            .map(|(_, count)| *count)
            .sum();
        (state, count)
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use kc_runtime::db::PoolSettings;

    use super::*;

    #[test]
    fn backlog_counts_name_every_reported_state() {
        let counts = backlog_counts(&[(5, 7), (1, 2), (3, 40)]);
        assert_eq!(
            counts,
            [
                (State::Pending, 2),
                (State::Sending, 0),
                (State::Failed, 0),
                (State::Dead, 7),
            ]
        );
    }

    #[tokio::test]
    async fn backlog_counts_the_stored_states_but_delivered() {
        let db = kc_testkit::test_database().await;
        crate::SERVICE.migrate(&db.url).await.expect("migrate");
        let settings = PoolSettings {
            max_connections: 2,
            min_connections: 0,
            acquire_timeout: Duration::from_secs(10),
        };
        let pool = kc_runtime::db::connect(&db.url, crate::SCHEMA, &settings)
            .await
            .expect("pool");
        assert_eq!(
            backlog(&pool).await.expect("empty backlog"),
            BACKLOG_STATES.map(|state| (state, 0))
        );
        // (state, due_time, lease_owner) as the table's checks want them.
        let rows = [
            "1, now(), NULL",
            "1, now(), NULL",
            "2, now(), gen_random_uuid()",
            "3, NULL, NULL",
            "4, now(), NULL",
            "5, NULL, NULL",
            "5, NULL, NULL",
            "5, NULL, NULL",
        ];
        for (n, row) in rows.iter().enumerate() {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO notifications (notification_id, source_key, recipient_key, kind, \
                 email, locale, subject, text_body, html_body, rule, state, due_time, \
                 lease_owner) \
                 VALUES (gen_random_uuid(), 'notice:{n}', 'user', 1, 'someone@example.test', \
                 'en', 's', 't', 'h', 'N3', {row})"
            )))
            .execute(&pool)
            .await
            .expect("insert notification");
        }
        assert_eq!(
            backlog(&pool).await.expect("backlog"),
            [
                (State::Pending, 2),
                (State::Sending, 1),
                (State::Failed, 1),
                (State::Dead, 3),
            ]
        );
    }
}
