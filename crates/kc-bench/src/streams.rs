//! Waiting for a service to apply the event streams it follows, so that catching up does not
//! take CPU from a measurement; and registering people whose addresses are proven (rule I1)
//! with the codes identity mails, read from its stream.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use futures::{StreamExt, TryStreamExt};
use kc_proto::identity::identity_service_client::IdentityServiceClient;
use kc_proto::identity::{
    RegisterUserRequest, User, VerifyEmailRequest, WatchEventsRequest, event::Payload,
};
use kc_runtime::secrets::OpeningKey;
use sqlx::Connection;
use tonic::transport::Channel;

use crate::env::Env;
use crate::suite::{KeyFile, KeyFiles};

/// Longest identity's stream may take to show the codes of the people just registered.
const CODES_TIMEOUT: Duration = Duration::from_secs(120);

/// Longest a consumer may take to catch up with the streams it follows.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(600);

/// The streams access management follows: each publishing service, and the name of access's
/// cursor of it.
pub(crate) const ACCESS_STREAMS: [(&str, &str); 2] = [
    ("contacts", "access.contacts"),
    ("identity", "access.identity"),
];

/// The streams notification follows: each publishing service, and the name of notification's
/// cursor of it.
pub(crate) const NOTIFICATION_STREAMS: [(&str, &str); 3] = [
    ("identity", "notification.identity"),
    ("contacts", "notification.contacts"),
    ("access", "notification.access"),
];

/// Waits until the consumers of service `consumer` have applied every event published so far
/// on the streams they follow: `streams` holds each publishing service (short name) and the
/// name under which `consumer` stores its cursor of that stream (`access.contacts`). Returns a
/// note when there was something to wait for.
pub(crate) async fn wait_until_applied(
    env: &Env,
    consumer: &str,
    streams: &[(&str, &str)],
) -> anyhow::Result<Option<String>> {
    let started = Instant::now();
    let mut reported = started;
    let mut waited = false;
    let publishers: Vec<&str> = streams.iter().map(|(publisher, _)| *publisher).collect();
    loop {
        let mut behind = Vec::new();
        for (publisher, cursor_name) in streams {
            let Some(last) = last_event_cursor(env, publisher).await? else {
                continue;
            };
            let mut conn = env.database(consumer).await?;
            let applied: Option<String> =
                sqlx::query_scalar("SELECT cursor FROM event_cursors WHERE consumer = $1")
                    .bind(cursor_name)
                    .fetch_optional(&mut conn)
                    .await
                    .with_context(|| format!("could not read the cursors of {consumer}"))?;
            conn.close().await?;
            // Encoded cursors are fixed-width hex: they sort in stream order.
            if applied.is_none_or(|applied| applied < last) {
                behind.push(*publisher);
            }
        }
        if behind.is_empty() {
            return Ok(waited.then(|| {
                format!(
                    "waited {:.1} s for {consumer} to apply the events of {}",
                    started.elapsed().as_secs_f64(),
                    publishers.join(", ")
                )
            }));
        }
        if started.elapsed() > CATCH_UP_TIMEOUT {
            bail!(
                "{consumer} did not catch up with the events of {} within {} s",
                behind.join(" and "),
                CATCH_UP_TIMEOUT.as_secs()
            );
        }
        if !waited || reported.elapsed() >= Duration::from_secs(10) {
            eprintln!(
                "xtask: waiting for {consumer} to apply the events of {}",
                behind.join(" and ")
            );
            reported = Instant::now();
        }
        waited = true;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The cursor of the last event in the outbox of service `publisher`, as its WatchEvents
/// encodes it (`None` when it published nothing).
async fn last_event_cursor(env: &Env, publisher: &str) -> anyhow::Result<Option<String>> {
    let mut conn = env.database(publisher).await?;
    let last: Option<(String, i64)> = sqlx::query_as(
        // Ordered by the column, not by its text (which `ORDER BY txid` would name here, and
        // which sorts 9999 after 10000).
        // Access's `WatchEvents` leaves out its permission feed (`permission.changed`, read
        // through `WatchPermissionChanges`), so its followers' cursors never reach such an
        // event: the last event they can reach is the last other one.
        "SELECT e.txid::text AS txid_text, e.seq FROM outbox_events e \
         WHERE e.event_type <> 'permission.changed' \
         ORDER BY e.txid DESC, e.seq DESC LIMIT 1",
    )
    .fetch_optional(&mut conn)
    .await
    .with_context(|| format!("could not read the outbox of {publisher}"))?;
    conn.close().await?;
    last.map(|(txid, seq)| {
        let txid: u64 = txid.parse().context("bad transaction id in the outbox")?;
        let seq = u64::try_from(seq).context("bad sequence number in the outbox")?;
        Ok(encode_cursor(txid, seq))
    })
    .transpose()
}

/// A stream position as `kc_runtime::outbox::Cursor` prints it: transaction id, then sequence
/// number, each as 16 hex digits.
fn encode_cursor(txid: u64, seq: u64) -> String {
    format!("{txid:016x}{seq:016x}")
}

/// Registers `people` (RegisterUser, `concurrency` at a time) and proves each address with
/// the code identity mailed to it (VerifyEmail with the same password): returns the proven,
/// active users in the order of `people`. Every address must be free or unproven: a proven
/// account is mailed no code (rule I2), and this fails once [`CODES_TIMEOUT`] has passed.
///
/// The codes are read as notification reads them: from identity's `WatchEvents` (as the
/// benchmark's service account), each sealed code opened with the code-opening key, which
/// the benchmark holds since it made the key files it gives the services
/// ([`KeyFiles::local`]). Not from the mail: the identity scenarios run without
/// notification, so no mail is written at all, and the stream works the same for every
/// scenario. Each registration and each proof costs identity one password hash.
pub(crate) async fn register_proven(
    env: &Env,
    people: Vec<RegisterUserRequest>,
    concurrency: usize,
) -> anyhow::Result<Vec<User>> {
    let identity = IdentityServiceClient::new(env.channel("identity").await?);
    let emails: Vec<String> = people
        .iter()
        .map(|person| person.email.trim().to_lowercase())
        .collect();
    let passwords: Vec<String> = people
        .iter()
        .map(|person| person.password.clone())
        .collect();
    futures::stream::iter(people)
        .map(|person| {
            let mut identity = identity.clone();
            async move {
                let email = person.email.clone();
                identity
                    .register_user(person)
                    .await
                    .with_context(|| format!("RegisterUser of {email} failed"))
            }
        })
        .buffer_unordered(concurrency.max(1))
        .try_collect::<Vec<_>>()
        .await?;
    let mut codes = mailed_codes(env, identity.clone(), &emails).await?;
    let proofs = emails.into_iter().zip(passwords).map(|(email, password)| {
        let code = codes.remove(&email).unwrap_or_default();
        let mut identity = identity.clone();
        async move {
            identity
                .verify_email(VerifyEmailRequest {
                    email: email.clone(),
                    code,
                    password,
                })
                .await
                .with_context(|| format!("VerifyEmail of {email} failed"))?
                .into_inner()
                .user
                .ok_or_else(|| anyhow!("VerifyEmail of {email} returned no user"))
        }
    });
    futures::stream::iter(proofs)
        .buffered(concurrency.max(1))
        .try_collect()
        .await
}

/// The codes identity mailed to `emails` (lower case), read from the start of its stream:
/// for each address, its newest code still sealed in the outbox (identity empties the sealed
/// code of a code it replaced).
async fn mailed_codes(
    env: &Env,
    mut identity: IdentityServiceClient<Channel>,
    emails: &[String],
) -> anyhow::Result<HashMap<String, String>> {
    let files = KeyFiles::local()?;
    let opening = OpeningKey::from_file("the code-opening key", &files.path(KeyFile::CodeOpening))?;
    let mut request = tonic::Request::new(WatchEventsRequest::default());
    request
        .metadata_mut()
        .insert("authorization", env.service_bearer().await?);
    let mut stream = identity
        .watch_events(request)
        .await
        .context("could not watch identity's events")?
        .into_inner();
    let wanted: HashSet<&str> = emails.iter().map(String::as_str).collect();
    let mut codes = HashMap::with_capacity(emails.len());
    let read = tokio::time::timeout(CODES_TIMEOUT, async {
        while codes.len() < wanted.len() {
            let Some(item) = stream.next().await else {
                bail!("identity's event stream ended");
            };
            let event = item.context("identity's event stream failed")?.event;
            let Some(Payload::EmailVerificationRequested(requested)) =
                event.and_then(|event| event.payload)
            else {
                continue;
            };
            if requested.sealed_code.is_empty() || !wanted.contains(requested.email.as_str()) {
                continue;
            }
            let code = opening
                .open(&requested.sealed_code)
                .context("a code identity sealed does not open with the benchmark's key")?;
            let code = String::from_utf8(code.to_vec()).context("a code is not UTF-8")?;
            codes.insert(requested.email, code);
        }
        Ok(())
    })
    .await;
    match read {
        Ok(result) => result.map(|()| codes),
        Err(_) => bail!(
            "identity mailed codes to {} of the {} people registered within {} s",
            codes.len(),
            wanted.len(),
            CODES_TIMEOUT.as_secs()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_encode_like_the_outbox() {
        assert_eq!(encode_cursor(1, 2), "00000000000000010000000000000002");
        assert!(encode_cursor(2, 1) > encode_cursor(1, 2));
    }
}
