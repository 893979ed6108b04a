//! The `domain_policies` table (A7).

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::{grants_of_ranks, ranks_of};
use crate::domain::{DomainPolicy, Grants, PolicyMode};

/// The columns of a [`DomainPolicy`], for `concat!`.
macro_rules! columns {
    () => {
        "site_id, domain, policy, baseline, version, updated_by, update_time"
    };
}

#[derive(sqlx::FromRow)]
struct PolicyRow {
    site_id: Uuid,
    domain: String,
    policy: i16,
    baseline: Vec<i16>,
    version: i64,
    updated_by: Uuid,
    update_time: DateTime<Utc>,
}

impl TryFrom<PolicyRow> for DomainPolicy {
    type Error = sqlx::Error;

    fn try_from(row: PolicyRow) -> Result<Self, Self::Error> {
        Ok(DomainPolicy {
            site_id: row.site_id,
            domain: row.domain,
            mode: PolicyMode::from_number(i32::from(row.policy)).ok_or_else(|| {
                sqlx::Error::Decode("domain_policies.policy has an unknown value".into())
            })?,
            baseline: grants_of_ranks(&row.baseline, "domain_policies.baseline")?,
            version: row.version,
            updated_by: row.updated_by,
            update_time: row.update_time,
        })
    }
}

/// The policy of a site for a domain.
pub async fn get(
    conn: &mut PgConnection,
    site_id: Uuid,
    domain: &str,
) -> Result<Option<DomainPolicy>, sqlx::Error> {
    let row: Option<PolicyRow> = sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM domain_policies WHERE site_id = $1 AND domain = $2"
    ))
    .bind(site_id)
    .bind(domain)
    .fetch_optional(conn)
    .await?;
    row.map(DomainPolicy::try_from).transpose()
}

/// Creates or replaces the policy of a site for a domain, bumping its version.
pub async fn upsert(
    conn: &mut PgConnection,
    site_id: Uuid,
    domain: &str,
    mode: PolicyMode,
    baseline: &Grants,
    updated_by: Uuid,
) -> Result<DomainPolicy, sqlx::Error> {
    let row: PolicyRow = sqlx::query_as(concat!(
        "INSERT INTO domain_policies (site_id, domain, policy, baseline, updated_by) \
         VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (site_id, domain) DO UPDATE SET policy = EXCLUDED.policy, \
           baseline = EXCLUDED.baseline, updated_by = EXCLUDED.updated_by, \
           version = domain_policies.version + 1, update_time = now() \
         RETURNING ",
        columns!()
    ))
    .bind(site_id)
    .bind(domain)
    .bind(mode.number() as i16)
    .bind(ranks_of(baseline))
    .bind(updated_by)
    .fetch_one(conn)
    .await?;
    row.try_into()
}

/// Up to `limit` policies of a site after domain `after`, in domain order.
pub async fn page_of_site(
    conn: &mut PgConnection,
    site_id: Uuid,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<DomainPolicy>, sqlx::Error> {
    let rows: Vec<PolicyRow> = sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM domain_policies WHERE site_id = $1 AND ($2::text IS NULL OR domain > $2) \
         ORDER BY domain LIMIT $3"
    ))
    .bind(site_id)
    .bind(after)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.into_iter().map(DomainPolicy::try_from).collect()
}
