//! The `customers` and `sites` tables.

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use kc_runtime::Violation;

use crate::domain::values::{CountryCode, CustomerNumber, Locale, SiteNumber};
use crate::domain::{Program, Site};

/// The columns of a [`Site`] (`s` is the site, `p` its primary contact), for `concat!`. Its
/// version and times are named apart from a contact's, so that a row may hold both
/// ([`super::contacts::page_of_user`]).
macro_rules! site_columns {
    () => {
        "s.site_id, s.site_number, s.customer_number, s.name, s.country_code, s.language, \
         s.program, s.support_active, s.support_end_date, s.business_partner_email, \
         s.admin_may_manage_access, s.is_original_site, p.user_id AS primary_user_id, \
         s.version AS site_version, s.create_time AS site_create_time, \
         s.update_time AS site_update_time"
    };
}

/// Sites joined with their primary contact (S1: every site has one).
macro_rules! site_from {
    () => {
        " FROM sites s JOIN contacts p ON p.site_id = s.site_id AND p.role = 1 "
    };
}

/// A site as [`site_columns`] reads it.
#[derive(sqlx::FromRow)]
pub(super) struct SiteRow {
    site_id: Uuid,
    site_number: String,
    customer_number: String,
    name: String,
    country_code: String,
    language: String,
    program: String,
    support_active: bool,
    support_end_date: Option<NaiveDate>,
    business_partner_email: Option<String>,
    admin_may_manage_access: bool,
    is_original_site: bool,
    primary_user_id: Uuid,
    #[sqlx(rename = "site_version")]
    version: i64,
    #[sqlx(rename = "site_create_time")]
    create_time: DateTime<Utc>,
    #[sqlx(rename = "site_update_time")]
    update_time: DateTime<Utc>,
}

/// Reads a stored value with its parser; a value the registry could not have written is a
/// decode error naming its column.
pub(crate) fn stored<T>(
    column: &str,
    text: &str,
    parse: impl FnOnce(&str, &str) -> Result<T, Violation>,
) -> Result<T, sqlx::Error> {
    parse(column, text).map_err(|violation| {
        sqlx::Error::Decode(format!("{column}: {}", violation.description).into())
    })
}

impl TryFrom<SiteRow> for Site {
    type Error = sqlx::Error;

    fn try_from(row: SiteRow) -> Result<Self, Self::Error> {
        Ok(Site {
            site_id: row.site_id,
            site_number: stored("sites.site_number", &row.site_number, SiteNumber::parse)?,
            customer_number: stored(
                "sites.customer_number",
                &row.customer_number,
                CustomerNumber::parse,
            )?,
            name: row.name,
            country_code: stored("sites.country_code", &row.country_code, CountryCode::parse)?,
            language: stored("sites.language", &row.language, Locale::parse)?,
            program: Program::from_db(&row.program)
                .ok_or_else(|| sqlx::Error::Decode("sites.program has an unknown value".into()))?,
            support_active: row.support_active,
            support_end_date: row.support_end_date,
            business_partner_email: row.business_partner_email,
            admin_may_manage_access: row.admin_may_manage_access,
            is_original_site: row.is_original_site,
            primary_user_id: row.primary_user_id,
            version: row.version,
            create_time: row.create_time,
            update_time: row.update_time,
        })
    }
}

/// `SELECT` of a [`Site`]'s columns from the sites joined with their primary contact, and
/// then `$rest` (`WHERE`...), static SQL.
macro_rules! select_sites {
    ($rest:literal) => {
        concat!("SELECT ", site_columns!(), site_from!(), $rest)
    };
}
pub(super) use {select_sites, site_columns, site_from};

/// A query of site rows.
type SiteQuery<'q> = sqlx::query::QueryAs<'q, sqlx::Postgres, SiteRow, sqlx::postgres::PgArguments>;

/// Runs `query`, which returns at most one site.
async fn optional(
    conn: &mut PgConnection,
    query: SiteQuery<'_>,
) -> Result<Option<Site>, sqlx::Error> {
    query
        .fetch_optional(conn)
        .await?
        .map(Site::try_from)
        .transpose()
}

/// Runs `query`: every site it returns, in its order.
async fn all(conn: &mut PgConnection, query: SiteQuery<'_>) -> Result<Vec<Site>, sqlx::Error> {
    let rows = query.fetch_all(conn).await?;
    rows.into_iter().map(Site::try_from).collect()
}

/// Records the customer if it is new; `true` when this call created it (so the site being
/// created is its original site). A concurrent creator of the same customer waits for this
/// transaction and then sees the customer exist.
pub(crate) async fn insert_customer(
    conn: &mut PgConnection,
    customer_number: &str,
) -> Result<bool, sqlx::Error> {
    let created: Option<bool> = sqlx::query_scalar(
        "INSERT INTO customers (customer_number) VALUES ($1) ON CONFLICT DO NOTHING RETURNING true",
    )
    .bind(customer_number)
    .fetch_optional(conn)
    .await?;
    Ok(created.unwrap_or(false))
}

/// A site to insert (its primary contact is inserted right after, in the same transaction).
#[derive(Debug)]
pub(crate) struct NewSite<'a> {
    /// Id.
    pub site_id: Uuid,
    /// Site number.
    pub site_number: &'a str,
    /// Customer number.
    pub customer_number: &'a str,
    /// Name.
    pub name: &'a str,
    /// Country code.
    pub country_code: &'a str,
    /// Language.
    pub language: &'a str,
    /// Program.
    pub program: Program,
    /// S&S active.
    pub support_active: bool,
    /// S&S end.
    pub support_end_date: Option<NaiveDate>,
    /// Business partner e-mail.
    pub business_partner_email: Option<&'a str>,
    /// Original site of the customer.
    pub is_original_site: bool,
}

/// Inserts a site. A taken site number fails with the unique violation of
/// `sites_site_number_key`.
pub(crate) async fn insert(conn: &mut PgConnection, site: &NewSite<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO sites (site_id, site_number, customer_number, name, country_code, language, \
         program, support_active, support_end_date, business_partner_email, is_original_site) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(site.site_id)
    .bind(site.site_number)
    .bind(site.customer_number)
    .bind(site.name)
    .bind(site.country_code)
    .bind(site.language)
    .bind(site.program.as_str())
    .bind(site.support_active)
    .bind(site.support_end_date)
    .bind(site.business_partner_email)
    .bind(site.is_original_site)
    .execute(conn)
    .await?;
    Ok(())
}

/// The site with this id.
pub(crate) async fn get(
    conn: &mut PgConnection,
    site_id: Uuid,
) -> Result<Option<Site>, sqlx::Error> {
    let query = sqlx::query_as(select_sites!("WHERE s.site_id = $1")).bind(site_id);
    optional(conn, query).await
}

/// The site with this id, locked until the transaction ends. Every change to a site or its
/// contacts takes this lock first, so the rules that count contacts (C5, C6, C8) see a
/// stable site. The primary contact row is locked too: after waiting for a concurrent
/// transfer, Postgres re-reads only the locked rows, so locking `s` alone would return the
/// primary of the statement's snapshot (the one the transfer replaced).
///
/// An advisory lock on the site id is taken first. Row locks give a transaction its id when
/// it starts waiting, so under contention a later transaction could hold a lower id than one
/// that went before it, and the outbox (which streams in transaction-id order) would publish
/// one site's changes out of the order they happened in. The advisory lock assigns no id:
/// each site's writers queue on it and take their ids (at the row lock) in the order they
/// hold the site.
pub(crate) async fn lock(
    conn: &mut PgConnection,
    site_id: Uuid,
) -> Result<Option<Site>, sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1::text, 0))")
        .bind(site_id)
        .execute(&mut *conn)
        .await?;
    let query =
        sqlx::query_as(select_sites!("WHERE s.site_id = $1 FOR UPDATE OF s, p")).bind(site_id);
    optional(conn, query).await
}

/// The site with this site number.
pub(crate) async fn get_by_number(
    conn: &mut PgConnection,
    site_number: &str,
) -> Result<Option<Site>, sqlx::Error> {
    let query = sqlx::query_as(select_sites!("WHERE s.site_number = $1")).bind(site_number);
    optional(conn, query).await
}

/// The original site of the customer `customer_number` (its first, S2), if it has one.
pub(crate) async fn original_of_customer(
    conn: &mut PgConnection,
    customer_number: &str,
) -> Result<Option<Site>, sqlx::Error> {
    let query = sqlx::query_as(select_sites!(
        "WHERE s.customer_number = $1 AND s.is_original_site"
    ))
    .bind(customer_number);
    optional(conn, query).await
}

/// Up to `limit` sites after site number `after`, optionally of one customer, in site-number order.
pub(crate) async fn list(
    conn: &mut PgConnection,
    customer_number: Option<&str>,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<Site>, sqlx::Error> {
    let query = sqlx::query_as(select_sites!(
        "WHERE ($1::text IS NULL OR s.customer_number = $1) \
           AND ($2::text IS NULL OR s.site_number > $2) \
         ORDER BY s.site_number LIMIT $3"
    ))
    .bind(customer_number)
    .bind(after)
    .bind(limit);
    all(conn, query).await
}

/// Writes the changeable fields of `site` and bumps its version.
pub(crate) async fn update(conn: &mut PgConnection, site: &Site) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE sites SET name = $2, language = $3, support_active = $4, support_end_date = $5, \
         business_partner_email = $6, admin_may_manage_access = $7, version = version + 1, \
         update_time = now() WHERE site_id = $1",
    )
    .bind(site.site_id)
    .bind(&site.name)
    .bind(site.language.as_str())
    .bind(site.support_active)
    .bind(site.support_end_date)
    .bind(&site.business_partner_email)
    .bind(site.admin_may_manage_access)
    .execute(conn)
    .await?;
    Ok(())
}

/// Bumps a site's version (its primary contact changed).
pub(crate) async fn touch(conn: &mut PgConnection, site_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE sites SET version = version + 1, update_time = now() WHERE site_id = $1")
        .bind(site_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Takes a share lock on a site's row, if the site exists: a projection apply that changes
/// what a site's writes decide on (T8) waits for the writes that hold the site's lock
/// ([`lock`]) and makes them wait in turn, so every write decides before or after it.
pub(crate) async fn share_lock(conn: &mut PgConnection, site_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT 1 FROM sites WHERE site_id = $1 FOR SHARE")
        .bind(site_id)
        .execute(conn)
        .await?;
    Ok(())
}
