//! The registry's projection of access management's explicit grants (T8), followed by a
//! [`Consumer`] named [`ACCESS_CONSUMER`] that reads `AccessManagementService/WatchEvents`
//! with this service's own account ([`ServiceToken`]).
//!
//! Every `RightsChanged` event carries the user's explicit grants after the change; the
//! apply takes a share lock on the site's row (so it waits for the writes that hold the
//! site and they wait for it: each write decides its authority wholly before or wholly
//! after the change, see [`crate::domain::authority`]), then stores the grants in
//! `access_grants`, in the consumer's transaction with its cursor. Other events (requests,
//! domain policies) change no explicit grant by themselves: an approval comes with its own
//! `RightsChanged`.
//!
//! A change of grants is in effect in the registry once this projection has applied it:
//! access returns each write's revision (its event's cursor) and the gateway awaits it here
//! with `AwaitAccessRevision` before it answers, so a revocation that
//! was answered is honoured by every later write.

use std::time::Duration;

use anyhow::Context;
use kc_proto::access::access_management_service_client::AccessManagementServiceClient;
use kc_proto::access::{self as access_pb};
use kc_rights::rights::Grants;
use kc_runtime::Shutdown;
use kc_runtime::client::ServiceToken;
use kc_runtime::outbox::{AppliedCursor, Consumer, apply_fn, watch_source};
use sqlx::{PgConnection, PgPool};
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use uuid::Uuid;

use crate::storage;

/// Name (and cursor key) of the consumer of access management's stream.
pub const ACCESS_CONSUMER: &str = "contacts.access";

/// Longest wait of `AwaitAccessRevision`.
pub const MAX_AWAIT: Duration = Duration::from_secs(10);

/// Starts the consumer; it runs until `shutdown` triggers. Returns its task and what it
/// applied, which `AwaitAccessRevision` awaits.
pub fn spawn(
    pool: &PgPool,
    token: &ServiceToken,
    access: Channel,
    shutdown: &Shutdown,
) -> (JoinHandle<()>, AppliedCursor) {
    let apply = apply_fn(|conn, event: access_pb::Event| {
        Box::pin(async move { apply_access_event(conn, &event).await })
    });
    let consumer = Consumer::new(pool.clone(), ACCESS_CONSUMER);
    let applied = consumer.applied();
    let task = tokio::spawn(consumer.run(
        watch_source(AccessManagementServiceClient::new(access), token.clone()),
        apply,
        shutdown.wait_owned(),
    ));
    (task, applied)
}

fn parse_uuid(what: &str, text: &str) -> anyhow::Result<Uuid> {
    Uuid::parse_str(text).with_context(|| format!("{what} `{text}` is not a UUID"))
}

/// The explicit grants of an access profile; an unknown level stops the stream rather than
/// guess at authority.
fn explicit_grants(profile: &access_pb::AccessProfile) -> anyhow::Result<Grants> {
    let explicit = profile.explicit.unwrap_or_default();
    let tools = [
        explicit.software,
        explicit.reporting,
        explicit.entitlements,
        explicit.account_management,
        explicit.manage_access,
        explicit.contact_updates,
        explicit.account_documents,
    ];
    Grants::from_numbers(tools, profile.explicit_support_level)
        .context("unknown level in RightsChanged")
}

/// Applies one access event to `access_grants`.
pub async fn apply_access_event(
    conn: &mut PgConnection,
    event: &access_pb::Event,
) -> anyhow::Result<()> {
    use access_pb::event::Payload;
    let Some(Payload::RightsChanged(changed)) = &event.payload else {
        // Requests, their decisions and domain policies grant nothing by themselves (an
        // approval comes with its own RightsChanged); payloads of a newer access neither.
        return Ok(());
    };
    let after = changed
        .after
        .as_ref()
        .context("RightsChanged without its profile after the change")?;
    let site_id = parse_uuid("site id", &after.site_id)?;
    let user_id = parse_uuid("user id", &after.user_id)?;
    let grants = explicit_grants(after)?;
    storage::sites::share_lock(conn, site_id).await?;
    storage::access_grants::upsert(conn, site_id, user_id, &grants).await?;
    Ok(())
}
