//! SQL of the `notification` schema. Functions take a connection (inside the caller's
//! transaction when atomicity matters) or the pool, and return domain types, never proto
//! types.
//!
//! - [`sites`]: the projection of the registry's sites and contacts.
//! - [`notices`]: the idempotency keys of SendNotice (N3).
//! - [`notifications`]: notifications, their attempts, and the workers' queue.

pub(crate) mod notices;
pub(crate) mod notifications;
pub(crate) mod sites;

/// The Postgres channel on which every replica's workers hear that notifications became
/// due (created or revived). Postgres delivers it at commit, once per transaction.
pub(crate) const DUE_CHANNEL: &str = "kc_notification_due";
