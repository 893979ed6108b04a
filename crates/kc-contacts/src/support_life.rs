//! The registry's S&S sweeper: renewal reminders 90, 60 and 30 days before a site's last day
//! of S&S, and the lapse after it ([`crate::domain::support_life`] says when).
//!
//! Every `--support-sweep-interval` (and once at start) it
//! - lapses, one transaction per site, the sites whose S&S is still marked active although
//!   its last day passed: `support_active` becomes false, with the audit record
//!   `support.lapsed` (no actor: the registry makes the change) and the event
//!   `support.lapsed` (`SupportLapsed`, naming its recipients);
//! - publishes, one transaction per site, the reminder due (`support.ending`,
//!   `SupportEnding`, naming its recipients), recording `(site, last day, milestone)` in
//!   `support_reminders` in the same transaction as the event's outbox row.
//!
//! Recipients are the renewal chain of the notification table: the RENEWAL contact, else
//! ADMINISTRATIVE, else PRIMARY (R1, [`recipients::resolve`]), read under the site's lock;
//! notification follows the events and mails them.
//!
//! Exactly once across restarts and replicas: each site is handled under its lock
//! (`storage::sites::lock`, the lock every change of a site takes) and checked again under
//! it; a reminder's row has a unique key, so a replica that raced another finds it recorded
//! and publishes nothing; a lapse makes the site inactive, so a second finds nothing to do.
//! An event and its row commit together or not at all. A failure is logged and retried at
//! the next tick.

use std::time::Duration;

use kc_runtime::Shutdown;
use kc_runtime::audit::{self, NewRecord};
use kc_runtime::sweep::{in_batches, next_sweep, one_by_one, sweep_ticks};
use serde_json::json;
use sqlx::PgConnection;

use crate::domain::recipients::{self, NoticePurpose, Recipient};
use crate::domain::support_life::{days_left, lapse_due, reminder_due, today};
use crate::domain::{Registry, Result, Site};
use crate::events;
use crate::storage;

/// Sites handled per batch, each in its own transaction.
const BATCH: usize = 100;

/// Runs the sweeper until `shutdown`: a sweep at start, then every `interval`.
pub(crate) async fn run(registry: Registry, interval: Duration, shutdown: Shutdown) {
    let mut ticks = sweep_ticks(interval);
    while next_sweep(&mut ticks, &shutdown).await {
        in_batches(&shutdown, "lapsing S&S", BATCH, || {
            lapse_due_sites(&registry)
        })
        .await;
        in_batches(&shutdown, "reminding S&S renewals", BATCH, || {
            remind_due_sites(&registry)
        })
        .await;
    }
    tracing::debug!("s&s sweeper stopped");
}

/// Records up to [`BATCH`] lapses; how many sites it looked at.
async fn lapse_due_sites(registry: &Registry) -> Result<usize> {
    one_by_one("s&s lapses recorded", BATCH, || lapse_one(registry)).await
}

/// Publishes up to [`BATCH`] due reminders; how many sites it looked at.
async fn remind_due_sites(registry: &Registry) -> Result<usize> {
    one_by_one("s&s renewal reminders published", BATCH, || {
        remind_one(registry)
    })
    .await
}

/// The recipients of renewal notices on `site` (R1): the holders of the renewal chain's
/// roles only, never the whole site (a site may have any number of SITE_USERs).
async fn renewal_recipients(conn: &mut PgConnection, site: &Site) -> Result<Vec<Recipient>> {
    let mut holders = Vec::new();
    for role in NoticePurpose::Renewal.role_chain() {
        holders.extend(storage::contacts::holders(&mut *conn, site.site_id, *role).await?);
    }
    Ok(recipients::resolve(NoticePurpose::Renewal, site, &holders).recipients)
}

/// Publishes the reminder due of the first site that has one, if any; whether there was a
/// site to look at (one whose reminder another replica published meanwhile counts: the
/// next look does not find it again).
async fn remind_one(registry: &Registry) -> Result<bool> {
    let today = today();
    let mut tx = registry.pool().begin().await?;
    let Some(site_id) = storage::support_life::next_reminder_due(&mut tx, today).await? else {
        return Ok(false);
    };
    let Some(site) = storage::sites::lock(&mut tx, site_id).await? else {
        return Ok(true);
    };
    // Checked again under the lock: the site may have changed since it was read.
    let Some((end, milestone)) = reminder_due(&site, today) else {
        return Ok(true);
    };
    if !storage::support_life::record_reminder(&mut tx, site_id, end, milestone).await? {
        return Ok(true);
    }
    let recipients = renewal_recipients(&mut tx, &site).await?;
    let event = events::support_ending(&site, end, milestone, days_left(end, today), &recipients);
    events::append(&mut tx, &event).await?;
    tx.commit().await?;
    tracing::info!(
        site_id = %site_id,
        milestone_days = milestone,
        recipients = recipients.len(),
        "s&s renewal reminder published"
    );
    Ok(true)
}

/// Records the lapse of the first site whose S&S lapsed unrecorded, if any; whether there
/// was a site to look at.
async fn lapse_one(registry: &Registry) -> Result<bool> {
    let today = today();
    let mut tx = registry.pool().begin().await?;
    let Some(site_id) = storage::support_life::next_lapse_due(&mut tx, today).await? else {
        return Ok(false);
    };
    let Some(before) = storage::sites::lock(&mut tx, site_id).await? else {
        return Ok(true);
    };
    // Checked again under the lock: recorded by another replica, or renewed, meanwhile.
    let (true, Some(end)) = (lapse_due(&before, today), before.support_end_date) else {
        return Ok(true);
    };
    storage::support_life::mark_lapsed(&mut tx, site_id).await?;
    let site = storage::sites::get(&mut tx, site_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("site vanished inside its own transaction"))?;
    let recipients = renewal_recipients(&mut tx, &site).await?;
    let reason = format!(
        "rule C5: S&S lapsed after its last day, {end}; a SITE_TECHNICAL contact is no longer required"
    );
    audit::append(
        &mut tx,
        &NewRecord {
            site_id,
            actor_id: None,
            via_service: None,
            action: "support.lapsed",
            resource_id: site_id.to_string(),
            before: Some(json!({ "support_active": true, "support_end_date": end })),
            after: Some(json!({ "support_active": false, "support_end_date": end })),
            reason: &reason,
        },
    )
    .await?;
    events::append(&mut tx, &events::support_lapsed(&site, end, &recipients)).await?;
    tx.commit().await?;
    tracing::info!(
        site_id = %site_id,
        recipients = recipients.len(),
        "s&s lapse recorded"
    );
    Ok(true)
}
