//! The `users` table.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::{User, UserKind, UserState};

/// The columns of a [`User`], for `concat!` into static SQL.
macro_rules! columns {
    () => {
        "user_id, email, email_verified, display_name, locale, kind, state, version, create_time, update_time"
    };
}

/// `SELECT` of a [`User`]'s columns and then `$rest` (`FROM`, `WHERE`...), static SQL.
macro_rules! select {
    ($rest:literal) => {
        concat!("SELECT ", columns!(), $rest)
    };
}

#[derive(sqlx::FromRow)]
struct UserRow {
    user_id: Uuid,
    email: String,
    email_verified: bool,
    display_name: String,
    locale: String,
    kind: String,
    state: String,
    version: i64,
    create_time: DateTime<Utc>,
    update_time: DateTime<Utc>,
}

impl TryFrom<UserRow> for User {
    type Error = sqlx::Error;

    fn try_from(row: UserRow) -> Result<Self, Self::Error> {
        let corrupt =
            |what: &str| sqlx::Error::Decode(format!("users.{what} has an unknown value").into());
        Ok(User {
            user_id: row.user_id,
            email: row.email,
            email_verified: row.email_verified,
            display_name: row.display_name,
            locale: row.locale,
            kind: UserKind::from_db(&row.kind).ok_or_else(|| corrupt("kind"))?,
            state: UserState::from_db(&row.state).ok_or_else(|| corrupt("state"))?,
            version: row.version,
            create_time: row.create_time,
            update_time: row.update_time,
        })
    }
}

/// A query for one [`UserRow`].
type UserQuery<'q> = sqlx::query::QueryAs<'q, sqlx::Postgres, UserRow, sqlx::postgres::PgArguments>;

/// Runs `query`, which returns at most one user.
async fn optional_user(
    conn: &mut PgConnection,
    query: UserQuery<'_>,
) -> Result<Option<User>, sqlx::Error> {
    query
        .fetch_optional(conn)
        .await?
        .map(TryInto::try_into)
        .transpose()
}

/// Runs `query`, which returns exactly one user.
async fn one_user(conn: &mut PgConnection, query: UserQuery<'_>) -> Result<User, sqlx::Error> {
    query.fetch_one(conn).await?.try_into()
}

/// A user to insert.
#[derive(Debug)]
pub(crate) struct NewUser<'a> {
    /// Id.
    pub user_id: Uuid,
    /// Normalised e-mail.
    pub email: &'a str,
    /// Verified already (operators bootstrapped by hand).
    pub email_verified: bool,
    /// Display name.
    pub display_name: &'a str,
    /// Locale.
    pub locale: &'a str,
    /// Kind.
    pub kind: UserKind,
    /// State.
    pub state: UserState,
    /// argon2id hash, if the user has a password.
    pub password_hash: Option<&'a str>,
    /// Confusable skeleton of the e-mail (rule I3).
    pub email_skeleton: &'a str,
}

/// The INSERT of a user, ending with `conflict` (empty, or an `ON CONFLICT` clause).
macro_rules! insert_user {
    ($conflict:literal) => {
        concat!(
            "INSERT INTO users (user_id, email, email_verified, display_name, locale, kind, state, password_hash, email_skeleton) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ",
            $conflict,
            " RETURNING ",
            columns!()
        )
    };
}

/// `sql` (an [`insert_user!`]) with the values of `user` bound.
fn bind_new_user<'q>(sql: &'static str, user: &'q NewUser<'q>) -> UserQuery<'q> {
    sqlx::query_as(sql)
        .bind(user.user_id)
        .bind(user.email)
        .bind(user.email_verified)
        .bind(user.display_name)
        .bind(user.locale)
        .bind(user.kind.as_str())
        .bind(user.state.as_str())
        .bind(user.password_hash)
        .bind(user.email_skeleton)
}

/// Inserts a user. A duplicate e-mail fails with the unique violation of `users_email_key`
/// (and a proven look-alike with that of `users_email_skeleton_proven_key`).
pub(crate) async fn insert(
    conn: &mut PgConnection,
    user: &NewUser<'_>,
) -> Result<User, sqlx::Error> {
    one_user(conn, bind_new_user(insert_user!(""), user)).await
}

/// Inserts a user unless its e-mail is taken; `None` when it is (after waiting for a
/// concurrent insert of the same e-mail to commit or roll back).
pub(crate) async fn insert_if_absent(
    conn: &mut PgConnection,
    user: &NewUser<'_>,
) -> Result<Option<User>, sqlx::Error> {
    optional_user(
        conn,
        bind_new_user(insert_user!("ON CONFLICT (email) DO NOTHING"), user),
    )
    .await
}

/// Inserts `users` in one statement, each unless its e-mail is taken (after waiting for a
/// concurrent insert of the same e-mail to commit or roll back); returns those inserted, in
/// no particular order.
pub(crate) async fn insert_all_if_absent<'a>(
    conn: &mut PgConnection,
    users: &[NewUser<'a>],
) -> Result<Vec<User>, sqlx::Error> {
    let column = |value: fn(&NewUser<'a>) -> &'a str| users.iter().map(value).collect::<Vec<_>>();
    let rows: Vec<UserRow> = sqlx::query_as(concat!(
        "INSERT INTO users (user_id, email, email_verified, display_name, locale, kind, state, \
           password_hash, email_skeleton) \
         SELECT * FROM unnest($1::uuid[], $2::text[], $3::boolean[], $4::text[], $5::text[], \
           $6::text[], $7::text[], $8::text[], $9::text[]) \
         ON CONFLICT (email) DO NOTHING RETURNING ",
        columns!()
    ))
    .bind(users.iter().map(|user| user.user_id).collect::<Vec<_>>())
    .bind(column(|user| user.email))
    .bind(
        users
            .iter()
            .map(|user| user.email_verified)
            .collect::<Vec<_>>(),
    )
    .bind(column(|user| user.display_name))
    .bind(column(|user| user.locale))
    .bind(column(|user| user.kind.as_str()))
    .bind(column(|user| user.state.as_str()))
    .bind(
        users
            .iter()
            .map(|user| user.password_hash)
            .collect::<Vec<_>>(),
    )
    .bind(column(|user| user.email_skeleton))
    .fetch_all(conn)
    .await?;
    rows.into_iter().map(TryInto::try_into).collect()
}

/// One user by id.
pub(crate) async fn get(
    conn: &mut PgConnection,
    user_id: Uuid,
) -> Result<Option<User>, sqlx::Error> {
    optional_user(
        conn,
        sqlx::query_as(select!(" FROM users WHERE user_id = $1")).bind(user_id),
    )
    .await
}

/// One user by id, locked for update until the transaction ends.
pub(crate) async fn get_for_update(
    conn: &mut PgConnection,
    user_id: Uuid,
) -> Result<Option<User>, sqlx::Error> {
    optional_user(
        conn,
        sqlx::query_as(select!(" FROM users WHERE user_id = $1 FOR UPDATE")).bind(user_id),
    )
    .await
}

/// Users by id, in the order of `user_ids`; unknown ids are skipped.
///
/// One primary-key probe per id, whatever the table's statistics say: as a plain join, a
/// plan made while the table was small (a new deployment's first bulk import) kept hashing
/// a full scan of `users` for every call as the table grew.
pub(crate) async fn get_many(
    conn: &mut PgConnection,
    user_ids: &[Uuid],
) -> Result<Vec<User>, sqlx::Error> {
    let rows: Vec<UserRow> = sqlx::query_as(select!(
        " FROM unnest($1::uuid[]) WITH ORDINALITY AS wanted(id, position) \
         CROSS JOIN LATERAL (SELECT * FROM users WHERE users.user_id = wanted.id LIMIT 1) users \
         ORDER BY wanted.position"
    ))
    .bind(user_ids)
    .fetch_all(conn)
    .await?;
    rows.into_iter().map(TryInto::try_into).collect()
}

/// One user by normalised e-mail.
pub(crate) async fn find_by_email(
    conn: &mut PgConnection,
    email: &str,
) -> Result<Option<User>, sqlx::Error> {
    optional_user(
        conn,
        sqlx::query_as(select!(" FROM users WHERE email = $1")).bind(email),
    )
    .await
}

/// The users of these normalised e-mails, in no particular order (absent ones are left out).
///
/// Planned afresh on each call ([`BATCH_PLANNING`]).
pub(crate) async fn find_by_emails(
    conn: &mut PgConnection,
    emails: &[&str],
) -> Result<Vec<User>, sqlx::Error> {
    let rows: Vec<UserRow> = sqlx::query_as(select!(" FROM users WHERE email = ANY($1)"))
        .bind(emails)
        .persistent(BATCH_PLANNING)
        .fetch_all(conn)
        .await?;
    rows.into_iter().map(TryInto::try_into).collect()
}

/// One user by normalised e-mail, locked for update until the transaction ends.
pub(crate) async fn find_by_email_for_update(
    conn: &mut PgConnection,
    email: &str,
) -> Result<Option<User>, sqlx::Error> {
    optional_user(
        conn,
        sqlx::query_as(select!(" FROM users WHERE email = $1 FOR UPDATE")).bind(email),
    )
    .await
}

/// A user with its password hash.
#[derive(sqlx::FromRow)]
struct CredentialsRow {
    #[sqlx(flatten)]
    user: UserRow,
    password_hash: Option<String>,
}

/// Runs `query`, which returns at most one user with its password hash.
async fn optional_credentials(
    conn: &mut PgConnection,
    query: sqlx::query::QueryAs<'_, sqlx::Postgres, CredentialsRow, sqlx::postgres::PgArguments>,
) -> Result<Option<(User, Option<String>)>, sqlx::Error> {
    query
        .fetch_optional(conn)
        .await?
        .map(|row| Ok((row.user.try_into()?, row.password_hash)))
        .transpose()
}

/// A user and its password hash by normalised e-mail, for sign-in.
pub(crate) async fn find_credentials(
    conn: &mut PgConnection,
    email: &str,
) -> Result<Option<(User, Option<String>)>, sqlx::Error> {
    optional_credentials(
        conn,
        sqlx::query_as(select!(", password_hash FROM users WHERE email = $1")).bind(email),
    )
    .await
}

/// A user and its password hash by id, locked FOR SHARE until the transaction ends: a
/// password reset, a password change or a state change of the user waits for it (rule I4:
/// a session is created only against the credentials and state that hold when it commits).
pub(crate) async fn credentials_for_share(
    conn: &mut PgConnection,
    user_id: Uuid,
) -> Result<Option<(User, Option<String>)>, sqlx::Error> {
    optional_credentials(
        conn,
        sqlx::query_as(select!(
            ", password_hash FROM users WHERE user_id = $1 FOR SHARE"
        ))
        .bind(user_id),
    )
    .await
}

/// The password hash of a user.
pub(crate) async fn password_hash(
    conn: &mut PgConnection,
    user_id: Uuid,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT password_hash FROM users WHERE user_id = $1")
        .bind(user_id)
        .fetch_optional(conn)
        .await
        .map(Option::flatten)
}

/// Changes display name and/or locale and bumps the version.
pub(crate) async fn update_profile(
    conn: &mut PgConnection,
    user_id: Uuid,
    display_name: Option<&str>,
    locale: Option<&str>,
) -> Result<User, sqlx::Error> {
    one_user(
        conn,
        sqlx::query_as(concat!("UPDATE users SET display_name = COALESCE($2, display_name), locale = COALESCE($3, locale), \
             version = version + 1, update_time = now() WHERE user_id = $1 RETURNING ", columns!()))
        .bind(user_id)
        .bind(display_name)
        .bind(locale),
    )
    .await
}

/// Sets the state and bumps the version.
pub(crate) async fn set_state(
    conn: &mut PgConnection,
    user_id: Uuid,
    state: UserState,
) -> Result<User, sqlx::Error> {
    one_user(
        conn,
        sqlx::query_as(concat!(
            "UPDATE users SET state = $2, version = version + 1, update_time = now() \
             WHERE user_id = $1 RETURNING ",
            columns!()
        ))
        .bind(user_id)
        .bind(state.as_str()),
    )
    .await
}

/// Replaces the password hash of a proven user (ChangePassword).
pub(crate) async fn set_password(
    conn: &mut PgConnection,
    user_id: Uuid,
    hash: &str,
) -> Result<User, sqlx::Error> {
    one_user(
        conn,
        sqlx::query_as(concat!(
            "UPDATE users SET password_hash = $2, version = version + 1, update_time = now() \
             WHERE user_id = $1 RETURNING ",
            columns!()
        ))
        .bind(user_id)
        .bind(hash),
    )
    .await
}

/// Marks the e-mail verified. When it was not proven before, the password set before the
/// proof is discarded (rule I1): nobody but the mailbox owner may have chosen it, so a
/// disabled account proven now and enabled later does not activate a stranger's password.
pub(crate) async fn mark_verified(
    conn: &mut PgConnection,
    user_id: Uuid,
) -> Result<User, sqlx::Error> {
    one_user(
        conn,
        sqlx::query_as(concat!(
            "UPDATE users SET email_verified = true, \
             password_hash = CASE WHEN email_verified THEN password_hash END, \
             version = version + 1, update_time = now() \
             WHERE user_id = $1 RETURNING ",
            columns!()
        ))
        .bind(user_id),
    )
    .await
}

/// Completes the claim of an invited user: its e-mail is verified, the claimed password,
/// display name and locale take effect, and it becomes active. Only an invited user
/// changes; `None` otherwise (the caller holds the row lock, so this is a safeguard).
pub(crate) async fn complete_claim(
    conn: &mut PgConnection,
    user_id: Uuid,
    password_hash: &str,
    display_name: &str,
    locale: &str,
) -> Result<Option<User>, sqlx::Error> {
    optional_user(
        conn,
        sqlx::query_as(concat!(
            "UPDATE users SET email_verified = true, password_hash = $2, display_name = $3, \
             locale = $4, state = 'active', version = version + 1, update_time = now() \
             WHERE user_id = $1 AND state = 'invited' RETURNING ",
            columns!()
        ))
        .bind(user_id)
        .bind(password_hash)
        .bind(display_name)
        .bind(locale),
    )
    .await
}

/// Creates or updates an operator by e-mail (bootstrap); returns it.
pub(crate) async fn upsert_operator(
    conn: &mut PgConnection,
    user: &NewUser<'_>,
) -> Result<User, sqlx::Error> {
    one_user(
        conn,
        sqlx::query_as(concat!("INSERT INTO users (user_id, email, email_verified, display_name, locale, kind, state, password_hash, email_skeleton) \
             VALUES ($1, $2, true, $3, $4, 'operator', 'active', $5, $6) \
             ON CONFLICT (email) DO UPDATE SET kind = 'operator', state = 'active', email_verified = true, \
             password_hash = EXCLUDED.password_hash, email_skeleton = EXCLUDED.email_skeleton, \
             version = users.version + 1, update_time = now() \
             RETURNING ", columns!()))
        .bind(user.user_id)
        .bind(user.email)
        .bind(user.display_name)
        .bind(user.locale)
        .bind(user.password_hash)
        .bind(user.email_skeleton),
    )
    .await
}

/// Sets the password after a reset with a mailed code, which proves the address: the e-mail
/// is verified and an unproven (invited) user becomes active. A disabled user stays
/// disabled. Fails with the unique violation of `users_email_skeleton_proven_key` when a
/// proven account has a look-alike address (rule I3).
pub(crate) async fn reset_password(
    conn: &mut PgConnection,
    user_id: Uuid,
    hash: &str,
) -> Result<User, sqlx::Error> {
    one_user(
        conn,
        sqlx::query_as(concat!(
            "UPDATE users SET password_hash = $2, email_verified = true, \
             state = CASE WHEN state = 'invited' THEN 'active' ELSE state END, \
             version = version + 1, update_time = now() WHERE user_id = $1 RETURNING ",
            columns!()
        ))
        .bind(user_id)
        .bind(hash),
    )
    .await
}

/// The account with a proven address (verified) whose address has `skeleton` but is not
/// `email`: the account a new address `email` would impersonate (rule I3).
pub(crate) async fn find_confusable(
    conn: &mut PgConnection,
    skeleton: &str,
    email: &str,
) -> Result<Option<User>, sqlx::Error> {
    optional_user(
        conn,
        sqlx::query_as(select!(
            " FROM users WHERE email_skeleton = $1 AND email_verified AND email <> $2 LIMIT 1"
        ))
        .bind(skeleton)
        .bind(email),
    )
    .await
}

/// Whether the statements that read a batch of addresses keep a prepared plan: no. A plan
/// Postgres caches while `users` is small (a new deployment) scans the whole table, and it
/// keeps scanning as a first bulk import grows the table, until the next ANALYZE (measured:
/// 1.5 ms a batch look-up in the import benchmark, a seventh of Postgres's time there). An
/// unnamed statement is planned on each call with the table's current size, which costs far
/// less than that once per batch of up to 100 addresses.
const BATCH_PLANNING: bool = false;

/// The addresses among `emails` that a new account may not take: an account has it, or it
/// looks like the address of a proven account (rule I3, as [`find_confusable`]) by its
/// skeleton (`skeletons`, in the order of `emails`). Planned afresh on each call
/// ([`BATCH_PLANNING`]).
pub(crate) async fn not_free(
    conn: &mut PgConnection,
    emails: &[&str],
    skeletons: &[&str],
) -> Result<HashSet<String>, sqlx::Error> {
    let rows: Vec<String> = sqlx::query_scalar(
        "SELECT w.email FROM unnest($1::text[], $2::text[]) AS w (email, skeleton) \
         WHERE EXISTS (SELECT 1 FROM users WHERE users.email = w.email) \
            OR EXISTS (SELECT 1 FROM users WHERE users.email_skeleton = w.skeleton \
                       AND users.email_verified AND users.email <> w.email)",
    )
    .bind(emails)
    .bind(skeletons)
    .persistent(BATCH_PLANNING)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().collect())
}

/// Re-invites an unproven user: the inviter's display name and locale replace whatever was
/// set before the proof (only for a user still invited).
pub(crate) async fn reinvite(
    conn: &mut PgConnection,
    user_id: Uuid,
    display_name: Option<&str>,
    locale: Option<&str>,
) -> Result<User, sqlx::Error> {
    one_user(
        conn,
        sqlx::query_as(concat!(
            "UPDATE users SET display_name = COALESCE($2, display_name), \
             locale = COALESCE($3, locale), version = version + 1, update_time = now() \
             WHERE user_id = $1 AND state = 'invited' RETURNING ",
            columns!()
        ))
        .bind(user_id)
        .bind(display_name)
        .bind(locale),
    )
    .await
}

/// Makes `email` (proven by a code) the login e-mail of a user. Fails with a unique
/// violation when another account took the address or a proven look-alike of it.
pub(crate) async fn change_email(
    conn: &mut PgConnection,
    user_id: Uuid,
    email: &str,
    skeleton: &str,
) -> Result<User, sqlx::Error> {
    one_user(
        conn,
        sqlx::query_as(concat!(
            "UPDATE users SET email = $2, email_skeleton = $3, email_verified = true, \
             version = version + 1, update_time = now() WHERE user_id = $1 RETURNING ",
            columns!()
        ))
        .bind(user_id)
        .bind(email)
        .bind(skeleton),
    )
    .await
}

/// Up to `limit` users after `after` (by id) whose skeleton is not computed yet (rows
/// older than the column).
pub(crate) async fn missing_skeletons(
    conn: &mut PgConnection,
    after: Uuid,
    limit: i64,
) -> Result<Vec<(Uuid, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT user_id, email FROM users WHERE email_skeleton IS NULL AND user_id > $1 \
         ORDER BY user_id LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Stores the skeleton of a user's e-mail; fails with the unique violation of
/// `users_email_skeleton_proven_key` when a proven look-alike already has it.
pub(crate) async fn set_skeleton(
    conn: &mut PgConnection,
    user_id: Uuid,
    skeleton: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET email_skeleton = $2 WHERE user_id = $1")
        .bind(user_id)
        .bind(skeleton)
        .execute(conn)
        .await?;
    Ok(())
}

/// Stores the skeletons of many users in one statement (`skeletons[i]` of `user_ids[i]`);
/// fails as a whole, storing none, with the unique violation of
/// `users_email_skeleton_proven_key` when a proven one of them would share its skeleton
/// with another proven account (stored, or in the batch).
pub(crate) async fn set_skeletons(
    conn: &mut PgConnection,
    user_ids: &[Uuid],
    skeletons: &[String],
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE users SET email_skeleton = s.skeleton \
         FROM unnest($1::uuid[], $2::text[]) AS s(user_id, skeleton) \
         WHERE users.user_id = s.user_id",
    )
    .bind(user_ids)
    .bind(skeletons)
    .execute(conn)
    .await?;
    Ok(())
}
