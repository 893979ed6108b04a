//! Bulk import of contacts (`ImportContacts`): rows in, one result per row out, in order.
//!
//! Each row says that a person holds a role on a site (or, with `action = remove`, no longer
//! holds it), with its contact details and optionally its explicit levels. A row is applied
//! by the gateway's own compositions of the single calls ([`Gateway::assign_contact`],
//! [`Gateway::replace_contact`], [`Gateway::update_contact`], [`Gateway::remove_contact`],
//! [`Gateway::set_tool_access`], [`Gateway::set_support_access`]), so it meets the same
//! permission checks and the same rules in the services, as the real caller; the gateway
//! decides no rule of its own here. What already holds is not written: the current state
//! (the site's contacts, the person's account, its explicit levels) is read first and only
//! the differences are written, so the same rows imported again are UNCHANGED.
//!
//! **Flow and memory.** The request stream is read as the answers go out: at most
//! [`WINDOW`] rows are read and not yet answered. Each row runs in its own task, at most
//! [`CONCURRENCY`] at once; a row starts only once the previous row of its site is done, so
//! the rows of one site are applied in the order they come. Answers go out in row order.
//! Each row gets its own deadline (the gateway's default per call), not the stream's.
//!
//! **Permissions.** Each site is looked up once per import and the caller's permissions on
//! it asked in one `BatchCheck` (operators pass). A row on a site where the caller lacks
//! CONTACTS_UPDATE (or an unknown site: the two are not told apart, as for every
//! site-scoped call) is refused before anything of the site is read. The writes then check
//! again, fresh, what each single call needs (the role's authority, T6; ACCESS_UPDATE for
//! levels; SUPPORT_ADMIN for the support level).
//!
//! **Dry run.** Nothing is written. The same reads are made, and the single calls are
//! replaced by what can be decided on them: the permissions of each write from the site's
//! `BatchCheck`, the role limits of the rights model (`kc_rights`: single holders, C5 on
//! removal, four secondary contacts, C6), the primary changing only by transfer (C8), a
//! person unknown to identity without a display name (I1). The later rows of a site see the
//! earlier ones as if they had been applied (the state is kept per site for the import). What
//! only the writing service decides at commit is not caught (the proto's `ImportOptions`
//! lists it).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use kc_proto::access::{self, Permission, SupportLevel, ToolAccess};
use kc_proto::contacts::{self, Contact, ContactDetails, ContactRole, Site};
use kc_proto::gateway as pb;
use kc_proto::identity::User;
use kc_rights::rights::ContactRole as RightsRole;
use kc_runtime::values::{Email, SiteNumber};
use kc_runtime::{Caller, Violation};
use tokio::sync::{OnceCell, Semaphore, mpsc, oneshot};
use tonic::metadata::MetadataMap;
use tonic::{Code, Status};

use super::{DOWNSTREAM_PAGE_MAX, Gateway, all_pages, denied, required};
use crate::clients::{CallKind, Ctx, Svc};
use crate::deadline::Deadline;
use crate::error::GatewayError;
use crate::policy::{Need, Rule, method, role_authority, rule};

/// Rows read from the stream and not yet answered, at most.
const WINDOW: usize = 256;

/// Rows applied at once (rows of one site never run at the same time). A row mostly waits:
/// for identity's batched invitations, the registry's write and then access management's
/// apply of it (T8), about 70 ms under load, little of it holding a connection or a cpu. So
/// enough rows run at once to cover that wait (Little's law): measured on 2 cpus, 32 rows
/// left the cpus a quarter idle (420 to 506 contacts a second), 64 imported 614 a second, and
/// 128 no more (603) while taking nearly all of both cpus from everyone else.
const CONCURRENCY: usize = 64;

/// Most rows in one message of the stream.
const MAX_ROWS_PER_MESSAGE: usize = 1000;

/// Why the levels an import sets were set (T5: recorded in the audit trail).
const LEVELS_REASON: &str = "bulk import of contacts";

/// Most SECONDARY contacts of a site (C6), as the rights model states it in
/// [`RightsRole::single_holder_rule`]; a dry run refuses the fifth.
const SECONDARY_LIMIT: usize = 4;

/// The permissions asked about each site of an import, in one `BatchCheck`: what any of the
/// single calls a row may make needs.
const SITE_PERMISSIONS: [Permission; 6] = [
    Permission::ContactsUpdate,
    Permission::ContactsView,
    Permission::AccessUpdate,
    Permission::AccessView,
    Permission::DocumentsView,
    Permission::AccountManagement,
];

/// The support permission, asked with the others (SetSupportAccess).
const SUPPORT_PERMISSION: Permission = Permission::SupportAdmin;

/// A stream of answers of a streaming RPC.
pub(crate) type AnswerStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// The answers that `receiver` receives, as a stream.
pub(super) fn answers<T: Send + 'static>(
    mut receiver: mpsc::Receiver<Result<T, Status>>,
) -> AnswerStream<T> {
    Box::pin(futures::stream::poll_fn(move |cx| receiver.poll_recv(cx)))
}

/// What the context of each part of a long call (a row of an import, a site of an export) is
/// made of: the caller, its `authorization`, and the gateway's deadlines. Each part gets a
/// deadline of its own, since the call itself lasts as long as its stream.
#[derive(Debug, Clone)]
pub(crate) struct PartContexts {
    caller: Arc<Caller>,
    metadata: MetadataMap,
    default_deadline: Duration,
    request_timeout: Duration,
}

impl PartContexts {
    /// The contexts of the parts of a call of `caller` whose request carried `metadata`
    /// (only its `authorization` is kept); each part gets `default_deadline`, at most
    /// `request_timeout`.
    pub(crate) fn new(
        caller: Arc<Caller>,
        metadata: &MetadataMap,
        default_deadline: Duration,
        request_timeout: Duration,
    ) -> Self {
        let mut kept = MetadataMap::new();
        if let Some(value) = metadata.get("authorization") {
            kept.insert("authorization", value.clone());
        }
        Self {
            caller,
            metadata: kept,
            default_deadline,
            request_timeout,
        }
    }

    /// The caller of the call.
    pub(super) fn caller(&self) -> &Caller {
        &self.caller
    }

    /// A context of `kind` for one part, its deadline starting now.
    pub(super) fn part(&self, kind: CallKind) -> Ctx {
        let deadline = Deadline::compute(
            Instant::now(),
            None,
            self.default_deadline,
            self.request_timeout,
        );
        Ctx::authenticated(deadline, self.caller.clone(), &self.metadata, kind)
    }
}

/// Refuses a service account the bulk RPC `method` (rule [`Rule::EachSite`]); returns the
/// need of a customer on each site.
pub(super) fn admit_each_site(caller: &Caller, method: &str) -> Result<Need, GatewayError> {
    let Rule::EachSite(need) = rule(method) else {
        return Err(GatewayError::Internal(anyhow::anyhow!(
            "{method} must have an EachSite rule"
        )));
    };
    if caller.is_service() {
        return Err(GatewayError::PermissionDenied(
            "permission denied: service accounts may only call SendNotice through the gateway"
                .into(),
        ));
    }
    Ok(need)
}

// ---- the columns of a row, as text ----

/// A level column of a row: its field, the proto enum's name prefix, and its proto enum.
struct LevelColumn {
    field: &'static str,
    prefix: &'static str,
    number: fn(&str) -> Option<i32>,
    name: fn(i32) -> Option<&'static str>,
    text: fn(&pb::ContactRow) -> &str,
    put: fn(&mut pb::ContactRow, String),
    level: fn(&ToolAccess) -> i32,
    set: fn(&mut ToolAccess, i32),
}

/// Declares the tool columns: (field, enum, prefix).
macro_rules! tool_columns {
    ($($field:ident: $enum:ident $prefix:literal;)*) => {
        /// The seven tool columns, in the order of the rights model's tools (DOMAIN.md).
        fn tool_columns() -> [LevelColumn; 7] {
            [$(LevelColumn {
                field: stringify!($field),
                prefix: $prefix,
                number: |name| access::$enum::from_str_name(name).map(|level| level as i32),
                name: |number| access::$enum::try_from(number).ok().map(|level| level.as_str_name()),
                text: |row| &row.$field,
                put: |row, text| row.$field = text,
                level: |tools| tools.$field,
                set: |tools, level| tools.$field = level,
            },)*]
        }
    };
}

tool_columns! {
    software: SoftwareAccess "SOFTWARE_ACCESS_";
    reporting: ReportingAccess "REPORTING_ACCESS_";
    entitlements: EntitlementsAccess "ENTITLEMENTS_ACCESS_";
    account_management: AccountManagementAccess "ACCOUNT_MANAGEMENT_ACCESS_";
    manage_access: ManageAccess "MANAGE_ACCESS_";
    contact_updates: ContactUpdatesAccess "CONTACT_UPDATES_ACCESS_";
    account_documents: AccountDocumentsAccess "ACCOUNT_DOCUMENTS_ACCESS_";
}

/// The prefix of the support levels' proto names.
const SUPPORT_PREFIX: &str = "SUPPORT_LEVEL_";
/// The prefix of the roles' proto names.
const ROLE_PREFIX: &str = "CONTACT_ROLE_";

/// The proto name a column's text names: upper case, `-` and spaces as `_`, with `prefix`.
fn proto_name(prefix: &str, text: &str) -> String {
    let name = text.trim().to_ascii_uppercase().replace(['-', ' '], "_");
    if name.starts_with(prefix) {
        name
    } else {
        format!("{prefix}{name}")
    }
}

/// The text of a proto name in a column: without `prefix`, lower case, `_` as `-`
/// (`downloads-only`, `site-technical`).
pub(super) fn column_text(prefix: &str, name: &str) -> String {
    name.strip_prefix(prefix)
        .unwrap_or(name)
        .to_ascii_lowercase()
        .replace('_', "-")
}

/// The text of a role in a column (`site-technical`).
pub(super) fn role_text(role: i32) -> String {
    ContactRole::try_from(role)
        .map(|role| column_text(ROLE_PREFIX, role.as_str_name()))
        .unwrap_or_default()
}

/// Fills the level columns of `row` from an explicit grant: every tool and the support level.
pub(super) fn put_levels(row: &mut pb::ContactRow, tools: &ToolAccess, support: i32) {
    for column in tool_columns() {
        if let Some(name) = (column.name)((column.level)(tools)) {
            (column.put)(row, column_text(column.prefix, name));
        }
    }
    if let Ok(level) = SupportLevel::try_from(support) {
        row.support = column_text(SUPPORT_PREFIX, level.as_str_name());
    }
}

/// A level named by a column's text; `None` when empty, a violation when unknown.
fn parse_level(
    field: &str,
    prefix: &str,
    text: &str,
    number: fn(&str) -> Option<i32>,
    violations: &mut Vec<Violation>,
) -> Option<i32> {
    if text.trim().is_empty() {
        return None;
    }
    match number(&proto_name(prefix, text)).filter(|level| *level != 0) {
        Some(level) => Some(level),
        None => {
            violations.push(Violation::new(
                field,
                format!("unknown level `{}`", text.trim()),
            ));
            None
        }
    }
}

/// A role named by a column's text (`stc` is SITE_TECHNICAL).
fn parse_role(text: &str) -> Result<ContactRole, Violation> {
    let name = if text.trim().eq_ignore_ascii_case("stc") {
        "SITE_TECHNICAL".to_owned()
    } else {
        text.to_owned()
    };
    ContactRole::from_str_name(&proto_name(ROLE_PREFIX, &name))
        .filter(|role| *role != ContactRole::Unspecified)
        .ok_or_else(|| {
            let known: Vec<String> = RightsRole::ALL
                .iter()
                .map(|role| role_text(role.number()))
                .collect();
            let description = if text.trim().is_empty() {
                format!("required: one of {}", known.join(", "))
            } else {
                format!(
                    "unknown role `{}`: one of {}",
                    text.trim(),
                    known.join(", ")
                )
            };
            Violation::new("role", description)
        })
}

/// What a row does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    /// The person holds the role, with the row's details and levels.
    Hold,
    /// The person no longer holds the role.
    Remove,
}

/// A row, parsed.
#[derive(Debug, Clone)]
struct Row {
    site_number: String,
    email: String,
    display_name: String,
    locale: String,
    role: ContactRole,
    details: ContactDetails,
    /// The tool levels the row sets (UNSPECIFIED keeps one); `None` when it sets none.
    tools: Option<ToolAccess>,
    support: Option<i32>,
    action: Action,
}

impl Row {
    /// Parses a row, every invalid column in one pass.
    fn parse(row: &pb::ContactRow) -> Result<Self, GatewayError> {
        let mut violations = Vec::new();
        let action = match row.action.trim().to_ascii_lowercase().as_str() {
            "" | "assign" => Action::Hold,
            "remove" => Action::Remove,
            other => {
                violations.push(Violation::new(
                    "action",
                    format!("unknown action `{other}`: assign or remove"),
                ));
                Action::Hold
            }
        };
        let site_number = SiteNumber::parse("site_number", row.site_number.trim())
            .map_err(|violation| violations.push(violation))
            .ok();
        let email = Email::parse("email", &row.email)
            .map_err(|violation| violations.push(violation))
            .ok();
        let role = parse_role(&row.role)
            .map_err(|violation| violations.push(violation))
            .ok();
        let mut tools = ToolAccess::default();
        let mut any_tool = false;
        for column in tool_columns() {
            if let Some(level) = parse_level(
                column.field,
                column.prefix,
                (column.text)(row),
                column.number,
                &mut violations,
            ) {
                (column.set)(&mut tools, level);
                any_tool = true;
            }
        }
        let support = parse_level(
            "support",
            SUPPORT_PREFIX,
            &row.support,
            |name| SupportLevel::from_str_name(name).map(|level| level as i32),
            &mut violations,
        );
        let (Some(site_number), Some(email), Some(role), true) =
            (site_number, email, role, violations.is_empty())
        else {
            return Err(GatewayError::InvalidArgument(violations));
        };
        Ok(Self {
            site_number: site_number.as_str().to_owned(),
            email: email.as_str().to_owned(),
            display_name: row.display_name.trim().to_owned(),
            locale: row.locale.trim().to_owned(),
            role,
            details: ContactDetails {
                phone: row.phone.trim().to_owned(),
                job_title: row.job_title.trim().to_owned(),
                notification_email: row.notification_email.trim().to_lowercase(),
            },
            tools: any_tool.then_some(tools),
            support,
            action,
        })
    }

    fn role_name(&self) -> &'static str {
        RightsRole::from_number(self.role as i32).map_or("UNSPECIFIED", RightsRole::name)
    }
}

/// Whether two phone numbers are the same once the separators people type are dropped (the
/// registry stores E.164, `+33123456789`).
fn same_phone(stored: &str, wanted: &str) -> bool {
    let digits = |phone: &str| -> String {
        phone
            .chars()
            .filter(|c| !matches!(c, ' ' | '.' | '-' | '(' | ')' | '/'))
            .collect()
    };
    digits(stored) == digits(wanted)
}

/// The details a row wants for a person whose login e-mail is `login`: a notification e-mail
/// equal to the login is no notification e-mail of its own (C9).
fn wanted_details(row: &Row, login: &str) -> ContactDetails {
    let mut details = row.details.clone();
    if details.notification_email.eq_ignore_ascii_case(login) {
        details.notification_email.clear();
    }
    details
}

/// Whether `contact` already has the details `wanted`: the same phone and job title, and the
/// same notification e-mail, confirmed or waiting for its owner's confirmation (C11).
fn has_details(contact: &Contact, wanted: &ContactDetails) -> bool {
    let current = contact.details.clone().unwrap_or_default();
    let notification = current
        .notification_email
        .eq_ignore_ascii_case(&wanted.notification_email)
        || (!wanted.notification_email.is_empty()
            && contact
                .pending_notification_email
                .eq_ignore_ascii_case(&wanted.notification_email));
    same_phone(&current.phone, &wanted.phone)
        && current.job_title.trim() == wanted.job_title
        && notification
}

/// Whether the explicit levels `current` already hold every level `wanted` sets.
fn has_levels(current: &ToolAccess, wanted: &ToolAccess) -> bool {
    tool_columns().iter().all(|column| {
        let level = (column.level)(wanted);
        level == 0 || (column.level)(current) == level
    })
}

/// The DOMAIN.md rule a message cites (`rule C6: …` → `C6`); empty when none.
fn cited_rule(message: &str) -> String {
    message
        .find("rule ")
        .map(|at| {
            message[at + 5..]
                .chars()
                .take_while(char::is_ascii_alphanumeric)
                .collect::<String>()
        })
        .filter(|rule| {
            rule.len() >= 2
                && rule.starts_with(|c: char| c.is_ascii_uppercase())
                && rule[1..].chars().all(|c| c.is_ascii_digit())
        })
        .unwrap_or_default()
}

/// The field paths of the single calls' requests, as the row's columns.
const FIELD_RENAMES: [(&str, &str); 13] = [
    ("tools.software", "software"),
    ("tools.reporting", "reporting"),
    ("tools.entitlements", "entitlements"),
    ("tools.account_management", "account_management"),
    ("tools.manage_access", "manage_access"),
    ("tools.contact_updates", "contact_updates"),
    ("tools.account_documents", "account_documents"),
    ("details.phone", "phone"),
    ("details.job_title", "job_title"),
    ("details.notification_email", "notification_email"),
    ("support_level", "support"),
    ("site_id", "site_number"),
    ("user_id", "email"),
];

/// The answer of a refused row: the code, message and field the single call would have
/// answered, and the rule it cites.
fn refused(
    row_number: i64,
    error: GatewayError,
    changes: Vec<String>,
) -> pb::ImportContactsResponse {
    let error = error.rename_fields(&FIELD_RENAMES);
    let status = Status::from(error);
    let violations = kc_runtime::error::field_violations(&status);
    let field = violations
        .first()
        .map(|violation| violation.field.clone())
        .unwrap_or_default();
    let message = status.message().to_owned();
    pb::ImportContactsResponse {
        row_number,
        outcome: pb::ImportOutcome::Refused as i32,
        code: kc_runtime::error::code_name(status.code()).to_owned(),
        rule: cited_rule(&message),
        message,
        field,
        changes,
    }
}

/// A site of an import: the site, and whether the caller holds each permission there.
#[derive(Debug)]
struct SiteEntry {
    site: Site,
    /// Whether the caller holds each of [`SITE_PERMISSIONS`] and then [`SUPPORT_PERMISSION`].
    allowed: Vec<bool>,
}

impl SiteEntry {
    /// Whether the caller holds `need` on the site.
    fn holds(&self, need: Need) -> bool {
        let all = SITE_PERMISSIONS.iter().chain([&SUPPORT_PERMISSION]);
        let allowed: Vec<bool> = need
            .permissions()
            .iter()
            .map(|permission| {
                all.clone()
                    .position(|p| p == permission)
                    .and_then(|at| self.allowed.get(at).copied())
                    .unwrap_or(false)
            })
            .collect();
        need.satisfied_by(&allowed)
    }

    /// Refuses a write that needs `need`.
    fn require(&self, need: Need) -> Result<(), GatewayError> {
        if self.holds(need) {
            Ok(())
        } else {
            Err(denied(need))
        }
    }
}

/// A site of an import once asked: `None` when no site has the number.
type SiteCell = OnceCell<Option<Arc<SiteEntry>>>;

/// What a dry run has "applied" on one site: the site's contacts and the levels it set.
#[derive(Debug, Default)]
struct Simulated {
    contacts: Vec<Contact>,
    /// Explicit (tools, support) by user id, as the dry run left them.
    levels: HashMap<String, (ToolAccess, i32)>,
}

/// One import: its options and what it keeps about the sites of its rows.
struct Import {
    gateway: Arc<Gateway>,
    contexts: PartContexts,
    need: Need,
    dry_run: bool,
    /// Each site number of the rows: `None` when no such site exists.
    sites: Mutex<HashMap<String, Arc<SiteCell>>>,
    /// A dry run's state of each site, by site id.
    simulated: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Simulated>>>>>,
    running: Semaphore,
}

/// An item of the answers, in row order: a row's answer to come, or the end of the stream
/// with an error.
enum Pending {
    Row(oneshot::Receiver<pb::ImportContactsResponse>),
    Fail(Status),
}

impl Gateway {
    /// `ImportContacts`: reads `requests` and answers each row, in order (see the module).
    pub(crate) fn import_contacts<S>(
        self: Arc<Self>,
        contexts: PartContexts,
        requests: S,
    ) -> Result<AnswerStream<pb::ImportContactsResponse>, GatewayError>
    where
        S: Stream<Item = Result<pb::ImportContactsRequest, Status>> + Send + Unpin + 'static,
    {
        let need = admit_each_site(contexts.caller(), method::IMPORT_CONTACTS)?;
        let (answers_tx, answers_rx) = mpsc::channel(WINDOW);
        let (pending_tx, pending_rx) = mpsc::channel(WINDOW);
        tokio::spawn(read_rows(self, contexts, need, requests, pending_tx));
        tokio::spawn(send_answers(pending_rx, answers_tx));
        Ok(answers(answers_rx))
    }
}

/// Reads the rows of an import and starts each, as the window allows.
async fn read_rows<S>(
    gateway: Arc<Gateway>,
    contexts: PartContexts,
    need: Need,
    mut requests: S,
    pending: mpsc::Sender<Pending>,
) where
    S: Stream<Item = Result<pb::ImportContactsRequest, Status>> + Send + Unpin + 'static,
{
    let mut import: Option<Arc<Import>> = None;
    let mut row_number: i64 = 0;
    // The end of the last row of each site: the next row of the site waits for it.
    let mut last_of_site: HashMap<String, oneshot::Receiver<()>> = HashMap::new();
    while let Some(message) = requests.next().await {
        let message = match message {
            Ok(message) => message,
            Err(status) => {
                tracing::debug!(code = ?status.code(), "import stream ended by the client");
                return;
            }
        };
        let import = match &import {
            Some(_) if message.options.is_some() => {
                let status = Status::from(GatewayError::invalid(
                    "options",
                    "only the first message of the stream may carry options",
                ));
                let _ = pending.send(Pending::Fail(status)).await;
                return;
            }
            Some(import) => import.clone(),
            None => {
                let dry_run = message.options.as_ref().is_some_and(|o| o.dry_run);
                let started = Arc::new(Import {
                    gateway: gateway.clone(),
                    contexts: contexts.clone(),
                    need,
                    dry_run,
                    sites: Mutex::new(HashMap::new()),
                    simulated: Mutex::new(HashMap::new()),
                    running: Semaphore::new(CONCURRENCY),
                });
                import = Some(started.clone());
                started
            }
        };
        if message.rows.len() > MAX_ROWS_PER_MESSAGE {
            let status = Status::from(GatewayError::invalid(
                "rows",
                format!("at most {MAX_ROWS_PER_MESSAGE} rows in one message"),
            ));
            let _ = pending.send(Pending::Fail(status)).await;
            return;
        }
        for row in message.rows {
            row_number += 1;
            let (answer_tx, answer_rx) = oneshot::channel();
            if pending.send(Pending::Row(answer_rx)).await.is_err() {
                // The client went away: the rows started finish, no new one starts.
                return;
            }
            let (done_tx, done_rx) = oneshot::channel();
            let previous = last_of_site.insert(row.site_number.trim().to_owned(), done_rx);
            if last_of_site.len() > 4 * WINDOW {
                // Forget the sites whose last row is done.
                last_of_site.retain(|_, done| {
                    matches!(done.try_recv(), Err(oneshot::error::TryRecvError::Empty))
                });
            }
            let import = import.clone();
            tokio::spawn(async move {
                if let Some(previous) = previous {
                    // Err: the previous row's task ended without a word (it panicked).
                    let _ = previous.await;
                }
                let answer = match import.running.acquire().await {
                    Ok(_permit) => import.apply(row_number, row).await,
                    Err(_) => refused(
                        row_number,
                        GatewayError::Internal(anyhow::anyhow!("the import was closed")),
                        Vec::new(),
                    ),
                };
                let _ = answer_tx.send(answer);
                let _ = done_tx.send(());
            });
        }
    }
}

/// Sends the answers of the rows in row order, as each is ready.
async fn send_answers(
    mut pending: mpsc::Receiver<Pending>,
    answers: mpsc::Sender<Result<pb::ImportContactsResponse, Status>>,
) {
    while let Some(item) = pending.recv().await {
        let answer = match item {
            Pending::Row(answer) => answer.await.map_err(|_| {
                Status::from(GatewayError::Internal(anyhow::anyhow!(
                    "a row of the import ended without an answer"
                )))
            }),
            Pending::Fail(status) => Err(status),
        };
        let failed = answer.is_err();
        if answers.send(answer).await.is_err() || failed {
            return;
        }
    }
}

impl Import {
    /// Applies one row (or, in a dry run, checks it) and says what became of it.
    async fn apply(&self, row_number: i64, row: pb::ContactRow) -> pb::ImportContactsResponse {
        let ctx = self.contexts.part(CallKind::Write);
        let mut changes = Vec::new();
        match self.apply_row(&ctx, &row, &mut changes).await {
            Ok(()) => {
                let outcome = match (changes.is_empty(), self.dry_run) {
                    (true, _) => pb::ImportOutcome::Unchanged,
                    (false, true) => pb::ImportOutcome::Valid,
                    (false, false) => pb::ImportOutcome::Applied,
                };
                pb::ImportContactsResponse {
                    row_number,
                    outcome: outcome as i32,
                    changes,
                    ..Default::default()
                }
            }
            Err(error) => {
                if error.code() == Code::Internal {
                    tracing::error!(row_number, error = %error, "import row failed");
                }
                if matches!(error, GatewayError::NotYetInEffect { .. }) {
                    // rule T8: the write committed; only its effect elsewhere is late.
                    changes.push(
                        "committed a change not yet in effect everywhere (rule T8)".to_owned(),
                    );
                }
                refused(row_number, error, changes)
            }
        }
    }

    async fn apply_row(
        &self,
        ctx: &Ctx,
        raw: &pb::ContactRow,
        changes: &mut Vec<String>,
    ) -> Result<(), GatewayError> {
        let row = Row::parse(raw)?;
        let entry = self
            .site(ctx, &row.site_number)
            .await?
            .ok_or_else(|| self.unknown_site(&row.site_number))?;
        entry.require(self.need)?;
        let site_id = entry.site.site_id.clone();
        let simulated = self.simulated(&site_id);
        // What a write needs to know: the contacts of the row's role (whether the person
        // holds it; who holds a single-holder role). A person identity does not know holds
        // nothing, so a role of many holders needs no read for it.
        let single =
            RightsRole::from_number(row.role as i32).is_some_and(RightsRole::is_single_holder);
        let role = [row.role];
        let (user, role_contacts) = if simulated.is_some() {
            (
                self.gateway.lookup_account(ctx, &row.email).await?,
                Vec::new(),
            )
        } else if single {
            futures::try_join!(
                self.gateway.lookup_account(ctx, &row.email),
                self.gateway.site_contacts(ctx, &site_id, &role)
            )?
        } else {
            let user = self.gateway.lookup_account(ctx, &row.email).await?;
            let role_contacts = match user {
                Some(_) => {
                    self.gateway
                        .site_contacts(ctx, &site_id, &[row.role])
                        .await?
                }
                None => Vec::new(),
            };
            (user, role_contacts)
        };
        let mut simulated = match &simulated {
            Some(state) => Some(state.lock().await),
            None => None,
        };
        let contacts = match simulated.as_deref_mut() {
            Some(state) => {
                if state.is_none() {
                    *state = Some(Simulated {
                        contacts: self.gateway.site_contacts(ctx, &site_id, &[]).await?,
                        levels: HashMap::new(),
                    });
                }
                state
                    .as_ref()
                    .map(|s| s.contacts.clone())
                    .unwrap_or_default()
            }
            None => role_contacts,
        };
        // A person identity does not know yet: in a dry run, its row stands for it.
        let user_id = user
            .as_ref()
            .map(|user| user.user_id.clone())
            .unwrap_or_else(|| format!("invited:{}", row.email));
        let login = user
            .as_ref()
            .map_or(row.email.as_str(), |user| user.email.as_str());
        let wanted = wanted_details(&row, login);
        let held = contacts
            .iter()
            .find(|contact| contact.user_id == user_id && contact.role == row.role as i32)
            .cloned();
        let mut dry = simulated.as_deref_mut().and_then(Option::as_mut);

        if row.action == Action::Remove {
            let Some(contact) = held else {
                return Ok(());
            };
            match dry.as_deref_mut() {
                Some(state) => {
                    self.check_removal(&entry, &row)?;
                    state
                        .contacts
                        .retain(|c| c.contact_id != contact.contact_id);
                }
                None => {
                    self.gateway
                        .remove_contact(
                            ctx,
                            pb::RemoveContactRequest {
                                site_id: site_id.clone(),
                                contact_id: contact.contact_id.clone(),
                                ..Default::default()
                            },
                        )
                        .await?;
                }
            }
            changes.push(format!("removed {}", row.role_name()));
            return Ok(());
        }

        let user_id = match held {
            Some(contact) if has_details(&contact, &wanted) => user_id,
            Some(contact) => {
                match dry.as_deref_mut() {
                    Some(state) => {
                        entry.require(Need::All(&[Permission::ContactsUpdate]))?;
                        if let Some(c) = state
                            .contacts
                            .iter_mut()
                            .find(|c| c.contact_id == contact.contact_id)
                        {
                            c.details = Some(wanted.clone());
                        }
                    }
                    None => {
                        self.gateway
                            .update_contact(
                                ctx,
                                pb::UpdateContactRequest {
                                    site_id: site_id.clone(),
                                    contact_id: contact.contact_id.clone(),
                                    details: Some(wanted.clone()),
                                    ..Default::default()
                                },
                            )
                            .await?;
                    }
                }
                changes.push("updated the contact details".to_owned());
                user_id
            }
            None => {
                self.give_role(
                    ctx,
                    &entry,
                    &row,
                    &contacts,
                    user.as_ref(),
                    &user_id,
                    &wanted,
                    dry.as_deref_mut(),
                    changes,
                )
                .await?
            }
        };
        if row.tools.is_some() || row.support.is_some() {
            self.set_levels(ctx, &entry, &row, &user_id, dry, changes)
                .await?;
        }
        Ok(())
    }

    /// Gives the row's role to a person who does not hold it: ReplaceContact when another
    /// person holds a single-holder role, else AssignContact. Returns the person's user id.
    #[allow(clippy::too_many_arguments)]
    async fn give_role(
        &self,
        ctx: &Ctx,
        entry: &SiteEntry,
        row: &Row,
        contacts: &[Contact],
        user: Option<&User>,
        user_id: &str,
        wanted: &ContactDetails,
        dry: Option<&mut Simulated>,
        changes: &mut Vec<String>,
    ) -> Result<String, GatewayError> {
        let rights_role = RightsRole::from_number(row.role as i32)
            .ok_or_else(|| GatewayError::invalid("role", "not a role of the rights model"))?;
        if rights_role == RightsRole::Primary {
            // The import never moves the primary contact: only a transfer does (C8).
            return Err(GatewayError::FailedPrecondition(
                "rule C8: the primary contact changes only by transfer; use TransferPrimaryContact"
                    .into(),
            ));
        }
        let holder = rights_role
            .is_single_holder()
            .then(|| contacts.iter().find(|c| c.role == row.role as i32))
            .flatten()
            .cloned();
        let site_id = entry.site.site_id.clone();
        if let Some(state) = dry {
            let mut need = vec![Need::All(&[Permission::ContactsUpdate])];
            need.extend(role_authority(row.role));
            for need in need {
                entry.require(need)?;
            }
            if user.is_none() && row.display_name.is_empty() {
                return Err(GatewayError::invalid(
                    "display_name",
                    "required: nobody has this e-mail yet, so the person is invited with this name",
                ));
            }
            if rights_role == RightsRole::Secondary
                && contacts
                    .iter()
                    .filter(|c| c.role == row.role as i32)
                    .count()
                    >= SECONDARY_LIMIT
            {
                return Err(GatewayError::FailedPrecondition(
                    rights_role.single_holder_rule().to_owned(),
                ));
            }
            if let Some(holder) = &holder {
                state.contacts.retain(|c| c.contact_id != holder.contact_id);
            }
            state.contacts.push(Contact {
                contact_id: uuid::Uuid::new_v4().to_string(),
                site_id,
                user_id: user_id.to_owned(),
                role: row.role as i32,
                details: Some(wanted.clone()),
                ..Default::default()
            });
            if user.is_none() {
                changes.push("invited the person (rule I1)".to_owned());
            }
            changes.push(given(row.role_name(), holder.is_some()));
            return Ok(user_id.to_owned());
        }
        let display_name = (!row.display_name.is_empty()).then(|| row.display_name.clone());
        let (person, invited) = if holder.is_some() {
            let response = self
                .gateway
                .replace_contact(
                    ctx,
                    pb::ReplaceContactRequest {
                        site_id,
                        role: row.role as i32,
                        email: row.email.clone(),
                        display_name,
                        details: Some(wanted.clone()),
                        locale: row.locale.clone(),
                    },
                )
                .await?;
            (response.user, response.user_invited)
        } else {
            let response = self
                .gateway
                .assign_contact(
                    ctx,
                    pb::AssignContactRequest {
                        site_id,
                        email: row.email.clone(),
                        display_name,
                        role: row.role as i32,
                        details: Some(wanted.clone()),
                        locale: row.locale.clone(),
                    },
                )
                .await?;
            (response.user, response.user_invited)
        };
        if invited {
            changes.push("invited the person (rule I1)".to_owned());
        }
        changes.push(given(row.role_name(), holder.is_some()));
        Ok(required(Svc::Identity, "user", person)?.user_id)
    }

    /// Sets the row's explicit levels where they differ from the person's.
    async fn set_levels(
        &self,
        ctx: &Ctx,
        entry: &SiteEntry,
        row: &Row,
        user_id: &str,
        dry: Option<&mut Simulated>,
        changes: &mut Vec<String>,
    ) -> Result<(), GatewayError> {
        let site_id = entry.site.site_id.clone();
        let simulated = dry
            .as_ref()
            .and_then(|state| state.levels.get(user_id).cloned());
        let (tools, support) = match simulated {
            Some(levels) => levels,
            None if user_id.starts_with("invited:") => {
                (ToolAccess::default(), SupportLevel::NoAccess as i32)
            }
            None => {
                let profile = self
                    .gateway
                    .clients
                    .get_access_profile(
                        ctx,
                        access::GetAccessProfileRequest {
                            site_id: site_id.clone(),
                            user_id: user_id.to_owned(),
                        },
                    )
                    .await?
                    .profile;
                let profile = required(Svc::Access, "profile", profile)?;
                (
                    profile.explicit.unwrap_or_default(),
                    profile.explicit_support_level,
                )
            }
        };
        let tools_to_set = row.tools.filter(|wanted| !has_levels(&tools, wanted));
        let support_to_set = row.support.filter(|wanted| *wanted != support);
        if let Some(state) = dry {
            let mut levels = (tools, support);
            if let Some(wanted) = &tools_to_set {
                entry.require(Need::All(&[Permission::AccessUpdate]))?;
                for column in tool_columns() {
                    let level = (column.level)(wanted);
                    if level != 0 {
                        (column.set)(&mut levels.0, level);
                    }
                }
                changes.push("set tool levels".to_owned());
            }
            if let Some(wanted) = support_to_set {
                entry.require(Need::All(&[SUPPORT_PERMISSION]))?;
                levels.1 = wanted;
                changes.push("set the support level".to_owned());
            }
            state.levels.insert(user_id.to_owned(), levels);
            return Ok(());
        }
        if let Some(wanted) = tools_to_set {
            self.gateway
                .set_tool_access(
                    ctx,
                    pb::SetToolAccessRequest {
                        site_id: site_id.clone(),
                        user_id: user_id.to_owned(),
                        tools: Some(wanted),
                        reason: LEVELS_REASON.to_owned(),
                        ..Default::default()
                    },
                )
                .await?;
            changes.push("set tool levels".to_owned());
        }
        if let Some(wanted) = support_to_set {
            self.gateway
                .set_support_access(
                    ctx,
                    pb::SetSupportAccessRequest {
                        site_id,
                        user_id: user_id.to_owned(),
                        support_level: wanted,
                        reason: LEVELS_REASON.to_owned(),
                        ..Default::default()
                    },
                )
                .await?;
            changes.push("set the support level".to_owned());
        }
        Ok(())
    }

    /// What a dry run can tell of a removal: the role's authority (T6), and the rules of
    /// the rights model on the role (C1: the primary stays; C5: the STC of a site with
    /// active S&S is only replaced).
    fn check_removal(&self, entry: &SiteEntry, row: &Row) -> Result<(), GatewayError> {
        entry.require(Need::All(&[Permission::ContactsUpdate]))?;
        if let Some(need) = role_authority(row.role) {
            entry.require(need)?;
        }
        match RightsRole::from_number(row.role as i32) {
            Some(RightsRole::Primary) => Err(GatewayError::FailedPrecondition(
                RightsRole::Primary.single_holder_rule().to_owned(),
            )),
            Some(RightsRole::SiteTechnical) if entry.site.support_active => {
                Err(GatewayError::FailedPrecondition(
                    "rule C5: a site with active S&S must keep its SITE_TECHNICAL contact; replace it with ReplaceContact"
                        .into(),
                ))
            }
            _ => Ok(()),
        }
    }

    /// The refusal of a row on a site that does not exist: operators are told; customers get
    /// the refusal of a site they may not touch (no enumeration).
    fn unknown_site(&self, site_number: &str) -> GatewayError {
        if self.contexts.caller().is_operator() {
            GatewayError::NotFound(format!("no site has the number {site_number}"))
        } else {
            denied(self.need)
        }
    }

    /// The site of `site_number` with the caller's permissions there, asked once per import;
    /// `None` when no site has the number. A failure to ask is not kept (the next row asks
    /// again).
    async fn site(
        &self,
        ctx: &Ctx,
        site_number: &str,
    ) -> Result<Option<Arc<SiteEntry>>, GatewayError> {
        let cell = {
            let mut sites = self
                .sites
                .lock()
                .map_err(|_| GatewayError::Internal(anyhow::anyhow!("import sites poisoned")))?;
            sites.entry(site_number.to_owned()).or_default().clone()
        };
        cell.get_or_try_init(|| self.gateway.site_entry(ctx, site_number))
            .await
            .cloned()
    }

    /// The dry run's state of a site; `None` when the import writes.
    fn simulated(&self, site_id: &str) -> Option<Arc<tokio::sync::Mutex<Option<Simulated>>>> {
        if !self.dry_run {
            return None;
        }
        let mut simulated = self.simulated.lock().ok()?;
        Some(simulated.entry(site_id.to_owned()).or_default().clone())
    }
}

/// The change of giving a role.
fn given(role: &str, replaced: bool) -> String {
    if replaced {
        format!("replaced the {role} contact")
    } else {
        format!("assigned {role}")
    }
}

impl Gateway {
    /// The site numbered `site_number` with the caller's permissions on it (one
    /// `BatchCheck`; operators hold every one); `None` when no site has the number.
    async fn site_entry(
        &self,
        ctx: &Ctx,
        site_number: &str,
    ) -> Result<Option<Arc<SiteEntry>>, GatewayError> {
        let Some(site) = self.site_by_number(ctx, site_number).await? else {
            return Ok(None);
        };
        let all: Vec<Permission> = SITE_PERMISSIONS
            .iter()
            .copied()
            .chain([SUPPORT_PERMISSION])
            .collect();
        let allowed = if ctx.caller()?.is_operator() {
            vec![true; all.len()]
        } else {
            let site_id = super::id("site_id", &site.site_id)?;
            self.check(ctx, site_id, &all).await?
        };
        Ok(Some(Arc::new(SiteEntry { site, allowed })))
    }

    /// The site numbered `site_number`, read as the gateway; `None` when none is.
    pub(super) async fn site_by_number(
        &self,
        ctx: &Ctx,
        site_number: &str,
    ) -> Result<Option<Site>, GatewayError> {
        match self
            .clients
            .lookup_site(
                &ctx.as_gateway(),
                contacts::LookupSiteRequest {
                    site_number: site_number.to_owned(),
                    customer_number: String::new(),
                },
            )
            .await
        {
            Ok(response) => Ok(Some(required(Svc::Contacts, "site", response.site)?)),
            Err(GatewayError::Downstream { status, .. }) if status.code() == Code::NotFound => {
                Ok(None)
            }
            Err(error) => Err(error),
        }
    }

    /// The contacts of a site holding one of `roles` (every contact when empty), read
    /// afresh, by role (PRIMARY first) then creation.
    pub(super) async fn site_contacts(
        &self,
        ctx: &Ctx,
        site_id: &str,
        roles: &[ContactRole],
    ) -> Result<Vec<Contact>, GatewayError> {
        let roles: Vec<i32> = roles.iter().map(|role| *role as i32).collect();
        all_pages("contacts", |page_token| {
            let list = contacts::ListSiteContactsRequest {
                site_id: site_id.to_owned(),
                roles: roles.clone(),
                page_size: DOWNSTREAM_PAGE_MAX,
                page_token,
                by_person: false,
                with_people: false,
            };
            async move {
                let response = self.clients.list_site_contacts(ctx, list).await?;
                Ok((response.contacts, response.next_page_token))
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(f: impl FnOnce(&mut pb::ContactRow)) -> pb::ContactRow {
        let mut row = pb::ContactRow {
            site_number: "7350101".into(),
            email: "Ann@Example.com".into(),
            role: "secondary".into(),
            ..Default::default()
        };
        f(&mut row);
        row
    }

    fn violations(error: GatewayError) -> Vec<String> {
        match error {
            GatewayError::InvalidArgument(violations) => {
                violations.into_iter().map(|v| v.field).collect()
            }
            other => panic!("not an invalid argument: {other:?}"),
        }
    }

    #[test]
    fn a_row_parses_its_columns_in_any_spelling() {
        let parsed = Row::parse(&row(|r| {
            r.role = "Site-Technical".into();
            r.software = "downloads-only".into();
            r.manage_access = "MANAGE_ACCESS_VIEW".into();
            r.support = "full".into();
            r.notification_email = " Ann.Notices@Example.com ".into();
        }))
        .expect("a valid row");
        assert_eq!(parsed.email, "ann@example.com");
        assert_eq!(parsed.role, ContactRole::SiteTechnical);
        let tools = parsed.tools.expect("tool levels");
        assert_eq!(tools.software, access::SoftwareAccess::DownloadsOnly as i32);
        assert_eq!(tools.manage_access, access::ManageAccess::View as i32);
        assert_eq!(tools.reporting, 0, "a column left empty keeps the level");
        assert_eq!(parsed.support, Some(SupportLevel::Full as i32));
        assert_eq!(parsed.details.notification_email, "ann.notices@example.com");
        assert_eq!(parsed.action, Action::Hold);
        assert_eq!(
            Row::parse(&row(|r| r.role = "STC".into())).unwrap().role,
            ContactRole::SiteTechnical
        );
        let plain = Row::parse(&row(|_| ())).unwrap();
        assert!(plain.tools.is_none() && plain.support.is_none());
    }

    #[test]
    fn every_bad_column_is_named_in_one_pass() {
        let error = Row::parse(&row(|r| {
            r.site_number = "12".into();
            r.email = "not-an-email".into();
            r.role = "manager".into();
            r.software = "unlimited".into();
            r.support = "support_level_unspecified".into();
            r.action = "delete".into();
        }))
        .expect_err("an invalid row");
        assert_eq!(
            violations(error),
            [
                "action",
                "site_number",
                "email",
                "role",
                "software",
                "support"
            ]
        );
    }

    #[test]
    fn an_unknown_role_lists_the_known_ones() {
        let violation = parse_role("manager").expect_err("unknown");
        assert_eq!(violation.field, "role");
        assert!(
            violation.description.contains("site-technical, secondary"),
            "{}",
            violation.description
        );
        assert!(
            parse_role("")
                .expect_err("required")
                .description
                .starts_with("required")
        );
    }

    #[test]
    fn levels_and_roles_round_trip_through_their_column_text() {
        let tools = ToolAccess {
            software: access::SoftwareAccess::DownloadsAndMedia as i32,
            reporting: access::ReportingAccess::View as i32,
            entitlements: access::EntitlementsAccess::Update as i32,
            account_management: access::AccountManagementAccess::None as i32,
            manage_access: access::ManageAccess::Update as i32,
            contact_updates: access::ContactUpdatesAccess::View as i32,
            account_documents: access::AccountDocumentsAccess::View as i32,
        };
        let mut exported = row(|r| r.role = role_text(ContactRole::SiteUser as i32));
        put_levels(&mut exported, &tools, SupportLevel::Administrator as i32);
        assert_eq!(exported.software, "downloads-and-media");
        assert_eq!(exported.role, "site-user");
        assert_eq!(exported.support, "administrator");
        let parsed = Row::parse(&exported).expect("an export parses");
        assert_eq!(parsed.tools, Some(tools));
        assert_eq!(parsed.support, Some(SupportLevel::Administrator as i32));
        assert_eq!(parsed.role, ContactRole::SiteUser);
        assert!(has_levels(&tools, &parsed.tools.unwrap()));
        let higher = ToolAccess {
            software: access::SoftwareAccess::Full as i32,
            ..Default::default()
        };
        assert!(!has_levels(&tools, &higher));
    }

    #[test]
    fn details_compare_as_the_registry_keeps_them() {
        let contact = Contact {
            details: Some(ContactDetails {
                phone: "+33123456789".into(),
                job_title: "Buyer".into(),
                notification_email: String::new(),
            }),
            pending_notification_email: "ann.pending@example.com".into(),
            ..Default::default()
        };
        let parsed = Row::parse(&row(|r| {
            r.phone = "+33 1 23 45 67 89".into();
            r.job_title = " Buyer ".into();
            r.notification_email = "ann@example.com".into();
        }))
        .unwrap();
        // The login e-mail as notification e-mail is no notification e-mail of its own (C9).
        let wanted = wanted_details(&parsed, "ann@example.com");
        assert_eq!(wanted.notification_email, "");
        assert!(has_details(&contact, &wanted));
        let pending = ContactDetails {
            notification_email: "ann.pending@example.com".into(),
            ..wanted.clone()
        };
        assert!(
            has_details(&contact, &pending),
            "waiting for confirmation (C11)"
        );
        let other = ContactDetails {
            job_title: "Manager".into(),
            ..wanted
        };
        assert!(!has_details(&contact, &other));
    }

    #[test]
    fn a_refusal_cites_its_rule_and_names_the_column() {
        assert_eq!(
            cited_rule("rule C6: a site may have at most 4 secondary contacts"),
            "C6"
        );
        assert_eq!(
            cited_rule("permission denied: rule C8: only the current"),
            "C8"
        );
        assert_eq!(cited_rule("permission denied: this needs X"), "");
        assert_eq!(cited_rule("a rule or two"), "");
        let answer = refused(
            7,
            GatewayError::invalid("details.phone", "not a phone number"),
            Vec::new(),
        );
        assert_eq!(answer.field, "phone");
        assert_eq!(answer.code, "INVALID_ARGUMENT");
        assert_eq!(answer.outcome, pb::ImportOutcome::Refused as i32);
        let answer = refused(
            8,
            GatewayError::invalid("tools.software", "above your own level (rule T4)"),
            Vec::new(),
        );
        assert_eq!(answer.field, "software");
    }

    #[test]
    fn the_dry_runs_secondary_limit_is_the_rights_models() {
        assert!(
            RightsRole::Secondary
                .single_holder_rule()
                .contains(&format!("at most {SECONDARY_LIMIT} secondary"))
        );
    }
}
