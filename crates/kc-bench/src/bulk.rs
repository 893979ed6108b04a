//! `gateway.import`: contacts imported a second through the gateway's `ImportContacts`.
//!
//! The fixture: [`SITES`] sites of one customer, S&S active, created through the registry's
//! `CreateSite` as the benchmark's service account (as the other gateway scenarios do), all
//! with the same primary contact (a proven person, who signs in with identity's
//! `Authenticate`) and the same site technical contact (an invited user). The seeding waits
//! until access management applied the registry's events (the gateway's checks are answered
//! from its projection), then imports a small file once to try the call.
//!
//! Each call imports one file of [`ROWS`] rows, as `kc import contacts` streams it (messages
//! of [`ROWS_PER_MESSAGE`] rows), by the primary contact: [`ROWS`] / [`SITES`] rows a site,
//! the sites interleaved, each row a new person (an address nobody has: invited, rule I1) made
//! SITE_USER with a phone and a job title. SITE_USER has no limit (C6), so every row of every
//! file applies; the limited roles (four SECONDARY, one of the others) would be refused from
//! the second file on. One file at a time (concurrency 1): the gateway applies the rows of
//! different sites concurrently itself. A row not APPLIED fails the call.
//!
//! Counted: the rows answered APPLIED within the measured window ("contacts"), so the figure
//! is contacts imported a second whatever the number of files the window holds.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use anyhow::{Context, anyhow, bail};
use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};
use kc_proto::contacts::contact_registry_service_client::ContactRegistryServiceClient;
use kc_proto::contacts::{CreateSiteRequest, Program};
use kc_proto::gateway::gateway_service_client::GatewayServiceClient;
use kc_proto::gateway::{self as pb};
use kc_proto::identity::identity_service_client::IdentityServiceClient;
use kc_proto::identity::{AuthenticateRequest, CreateUserRequest, RegisterUserRequest};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;
use uuid::Uuid;

use super::access::authorized;
use super::streams;
use crate::env::{Env, OutcomeFn, Prepared};
use crate::load::{CallFn, Deliveries, Window};

/// Sites of the fixture, the rows of a file spread over them.
pub(crate) const SITES: usize = 1_000;
/// Rows of one imported file.
pub(crate) const ROWS: usize = 10_000;
/// Rows of one message of the stream (as `kc import contacts` sends them).
const ROWS_PER_MESSAGE: usize = 200;
/// How long the scenario measures by default: a few files.
pub(crate) const SUSTAINED: Duration = Duration::from_secs(45);
/// Site number (and the customer number) of the first site; 7 digits, away from the other
/// scenarios' numbers.
const NUMBER_BASE: usize = 7_600_000;
/// Domain of the users the scenario creates.
const MAIL_DOMAIN: &str = "import-bench.example.com";
/// The primary's password.
const PRIMARY_PASSWORD: &str = "import-bench-correct-horse";
/// Sites created at once while seeding.
const SEED_CONCURRENCY: usize = 8;

/// The primary contact's e-mail.
fn primary_email() -> String {
    format!("primary@{MAIL_DOMAIN}")
}

/// The rows of file `file` of run `tag`: `rows` rows over `sites` sites (numbered from
/// [`NUMBER_BASE`]), interleaved, each a new SITE_USER.
pub(crate) fn file_rows(tag: &str, file: usize, rows: usize, sites: usize) -> Vec<pb::ContactRow> {
    (0..rows)
        .map(|k| pb::ContactRow {
            site_number: (NUMBER_BASE + k % sites).to_string(),
            email: format!("imported-{tag}-{file}-{k}@{MAIL_DOMAIN}"),
            display_name: format!("Imported {file}-{k}"),
            locale: if k % 2 == 0 { "fr" } else { "en" }.to_owned(),
            role: "site-user".to_owned(),
            phone: format!("+331{:08}", (file * rows + k) % 100_000_000),
            job_title: "Ingénieur".to_owned(),
            ..pb::ContactRow::default()
        })
        .collect()
}

/// The rows of a file as the messages of an import stream, the options first.
fn messages(rows: Vec<pb::ContactRow>) -> Vec<pb::ImportContactsRequest> {
    let mut messages = vec![pb::ImportContactsRequest {
        options: Some(pb::ImportOptions { dry_run: false }),
        rows: Vec::new(),
    }];
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        messages.push(pb::ImportContactsRequest {
            options: None,
            rows: rows.by_ref().take(ROWS_PER_MESSAGE).collect(),
        });
    }
    messages
}

/// When each row of the run was answered APPLIED.
#[derive(Debug, Default)]
struct Applied {
    at: Mutex<Vec<Instant>>,
}

/// Imports `rows` as `bearer` on `channel`; records when each row was applied. A row not
/// applied fails the import.
async fn import(
    channel: Channel,
    bearer: MetadataValue<Ascii>,
    rows: Vec<pb::ContactRow>,
    applied: Arc<Applied>,
) -> Result<(), tonic::Status> {
    let expected = rows.len();
    let mut request = tonic::Request::new(futures::stream::iter(messages(rows)));
    request.metadata_mut().insert("authorization", bearer);
    let mut answers = GatewayServiceClient::new(channel)
        .import_contacts(request)
        .await?
        .into_inner();
    let mut answered = 0;
    while let Some(answer) = answers.message().await? {
        answered += 1;
        if answer.outcome != pb::ImportOutcome::Applied as i32 {
            return Err(tonic::Status::internal(format!(
                "row {} was not applied: {} {}",
                answer.row_number, answer.code, answer.message
            )));
        }
        if let Ok(mut at) = applied.at.lock() {
            at.push(Instant::now());
        }
    }
    if answered != expected {
        return Err(tonic::Status::internal(format!(
            "{answered} answers for {expected} rows"
        )));
    }
    Ok(())
}

/// Seeds `gateway.import`: see the module documentation.
pub(crate) fn seed_import(env: &Env) -> BoxFuture<'_, anyhow::Result<Prepared>> {
    Box::pin(async move {
        let (bearer, mut notes) = fixture(env).await?;
        let tag = Uuid::new_v4().simple().to_string()[..8].to_owned();
        let applied = Arc::new(Applied::default());
        // One try: a small file over the first sites.
        let trial = file_rows(&tag, 0, 20, 20);
        import(
            env.channel("gateway").await?,
            bearer.clone(),
            trial,
            Arc::new(Applied::default()),
        )
        .await
        .context("the trial import failed")?;
        notes.push(format!(
            "files of {ROWS} rows (SITE_USER, new people, invited) over {SITES} sites of one \
             customer, streamed in messages of {ROWS_PER_MESSAGE} rows, one file at a time"
        ));
        let next = Arc::new(AtomicUsize::new(1));
        let counted = Arc::clone(&applied);
        let call: CallFn = Arc::new(move |channel| {
            let file = next.fetch_add(1, Ordering::Relaxed);
            let rows = file_rows(&tag, file, ROWS, SITES);
            Box::pin(import(channel, bearer.clone(), rows, Arc::clone(&counted)))
        });
        Ok(Prepared {
            concurrency: Some(1),
            outcome: Some(outcome(applied)),
            ..Prepared::calls(call, notes)
        })
    })
}

/// Counts the rows applied within the window.
fn outcome(applied: Arc<Applied>) -> OutcomeFn {
    Box::new(move |window: Window| {
        Box::pin(async move {
            let at = applied
                .at
                .lock()
                .map_err(|_| anyhow!("the applied rows were lost"))?;
            let count = at
                .iter()
                .filter(|t| **t >= window.from && **t < window.until)
                .count() as u64;
            let notes = vec![format!(
                "{} rows applied in all, {count} within the measured window",
                at.len()
            )];
            Ok((
                Deliveries {
                    unit: "contacts",
                    counted_at: "answered APPLIED by ImportContacts",
                    count,
                    window: window.until - window.from,
                    latency: None,
                    missing: 0,
                },
                notes,
            ))
        })
    })
}

/// The fixture's sites, created unless an earlier run of the scenario in this invocation did;
/// the primary's `Bearer` token and notes on the wait for the streams.
async fn fixture(env: &Env) -> anyhow::Result<(MetadataValue<Ascii>, Vec<String>)> {
    let bearer = env.service_bearer().await?;
    let numbers: Vec<String> = (0..SITES).map(|k| (NUMBER_BASE + k).to_string()).collect();
    let mut conn = env.database("contacts").await?;
    let existing: Vec<(String,)> =
        sqlx::query_as("SELECT site_number FROM sites WHERE site_number = ANY($1)")
            .bind(&numbers)
            .fetch_all(&mut conn)
            .await?;
    sqlx::Connection::close(conn).await?;
    let mut identity = IdentityServiceClient::new(env.channel("identity").await?);
    if existing.len() < SITES {
        if !existing.is_empty() {
            bail!(
                "{} of the {SITES} sites of gateway.import exist: start from a fresh database",
                existing.len()
            );
        }
        eprintln!("xtask: creating {SITES} sites of one customer through the RPCs");
        let primary = streams::register_proven(
            env,
            vec![RegisterUserRequest {
                email: primary_email(),
                display_name: "Import Primary".to_owned(),
                password: PRIMARY_PASSWORD.to_owned(),
                locale: "fr".to_owned(),
            }],
            1,
        )
        .await
        .context("the primary could not register")?
        .pop()
        .ok_or_else(|| anyhow!("the primary was not registered"))?;
        let stc = identity
            .create_user(authorized(
                CreateUserRequest {
                    email: format!("stc@{MAIL_DOMAIN}"),
                    display_name: "Import Stc".to_owned(),
                    locale: "fr".to_owned(),
                    ..CreateUserRequest::default()
                },
                &bearer,
            ))
            .await
            .context("CreateUser of the STC failed")?
            .into_inner()
            .user
            .ok_or_else(|| anyhow!("CreateUser returned no user"))?;
        let contacts = ContactRegistryServiceClient::new(env.channel("contacts").await?);
        futures::stream::iter(numbers)
            .map(|number| {
                let mut contacts = contacts.clone();
                let request = authorized(
                    CreateSiteRequest {
                        site_number: number.clone(),
                        customer_number: NUMBER_BASE.to_string(),
                        name: format!("Import bench site {number}"),
                        country_code: "FR".to_owned(),
                        language: "fr".to_owned(),
                        program: Program::PassportAdvantage.into(),
                        support_active: true,
                        support_end_date: "2030-12-31".to_owned(),
                        business_partner_email: String::new(),
                        primary_user_id: primary.user_id.clone(),
                        site_technical_user_id: stc.user_id.clone(),
                        primary_details: None,
                        site_technical_details: None,
                    },
                    &bearer,
                );
                async move {
                    contacts
                        .create_site(request)
                        .await
                        .with_context(|| format!("CreateSite of site {number} failed"))
                        .map(drop)
                }
            })
            .buffer_unordered(SEED_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
    }
    let notes = streams::wait_until_applied(env, "access", &streams::ACCESS_STREAMS).await?;
    let signed_in = identity
        .authenticate(AuthenticateRequest {
            email: primary_email(),
            password: PRIMARY_PASSWORD.to_owned(),
        })
        .await
        .context("could not sign in the primary")?
        .into_inner();
    env.check_lifetime(signed_in.access_token_expire_time)?;
    let bearer = format!("Bearer {}", signed_in.access_token)
        .parse()
        .context("the access token is not a valid header value")?;
    Ok((bearer, notes.into_iter().collect()))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn a_file_spreads_new_site_users_over_every_site() {
        let rows = file_rows("t", 3, ROWS, SITES);
        assert_eq!(rows.len(), ROWS);
        let sites: BTreeSet<&str> = rows.iter().map(|r| r.site_number.as_str()).collect();
        assert_eq!(sites.len(), SITES);
        assert!(sites.iter().all(|number| number.len() == 7));
        let emails: BTreeSet<&str> = rows.iter().map(|r| r.email.as_str()).collect();
        assert_eq!(emails.len(), ROWS, "every row a new person");
        // rule C6: SITE_USER has no limit, so every file applies in full.
        assert!(rows.iter().all(|r| r.role == "site-user"));
        let next = file_rows("t", 4, ROWS, SITES);
        assert!(next.iter().all(|r| !emails.contains(r.email.as_str())));
        assert!(
            rows.iter()
                .all(|r| r.phone.len() == 12 && r.phone.starts_with("+331"))
        );
    }

    #[test]
    fn a_file_streams_as_options_then_messages_of_rows() {
        let sent = messages(file_rows("t", 0, 450, 10));
        assert_eq!(sent.len(), 4);
        assert!(sent[0].options.is_some() && sent[0].rows.is_empty());
        let sizes: Vec<usize> = sent[1..].iter().map(|m| m.rows.len()).collect();
        assert_eq!(sizes, [200, 200, 50]);
        assert!(sent[1..].iter().all(|m| m.options.is_none()));
    }
}
