//! Recovery of a site whose primary contact is gone (C12).
//!
//! A contact of the site, or a proven user of one of its key contacts' e-mail domains
//! (vouched for by the gateway, which knows addresses; the registry checks at commit that the
//! vouching user still is a key contact), asks with a reason. Every contact and the old
//! primary are told (the events carry the site's contact users). During the waiting period
//! (`--primary-recovery-waiting-period`, 72 h by default) nobody may attest; the old
//! primary, if it can still sign in, may refuse until the recovery is attested. After the
//! waiting period an operator attests with a reason, naming the new primary: the registry's
//! own primary transfer runs in the same transaction (C8 holds, roles and grants follow as
//! for any transfer). An open request that nobody attests expires
//! (`--primary-recovery-max-age`, 30 days after it was asked by default, like an access
//! request, A6). A site has at most one open recovery (a partial unique index).
//!
//! States: WAITING and ATTESTABLE are the two halves of the stored `open` state (the time
//! decides); REFUSED, ATTESTED and EXPIRED are final. An open request past its expiry reads
//! EXPIRED and is stored so the next time a recovery is asked for its site; so is an open
//! request whose old primary is no longer the primary (the role was transferred otherwise).
//! Every step is in the site's audit trail with its reason.

use chrono::{DateTime, Utc};
use kc_runtime::db::{DbErrorKind, classify};
use kc_runtime::outbox::{Cursor, Revised};
use kc_runtime::values::{Etag, optional_multiline_text};
use kc_runtime::{Violation, Violations};
use serde::Serialize;
use sqlx::PgConnection;
use uuid::Uuid;

use super::commands::{Actor, Transfer};
use super::values::{CustomerNumber, SiteNumber};
use super::{Contact, ContactRole, ContactsError, Registry, Result, Site};
use crate::events::{self, RecoveryStep};
use crate::storage;

/// Longest reason of a request, a refusal or an attestation.
pub const MAX_REASON_CHARS: usize = 1000;
pub use super::recovery_times::RecoveryTimes;

/// Why the requester may ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// It is a contact of the site.
    Contact,
    /// Its proven login e-mail is in the domain of this key contact's.
    Domain {
        /// The key contact's user.
        vouching_user_id: Uuid,
    },
}

/// The stored state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stored {
    /// Asked, neither refused, attested nor marked expired.
    Open,
    /// Refused.
    Refused,
    /// Attested: the primary was transferred.
    Attested,
    /// Marked expired.
    Expired,
}

impl Stored {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Refused => "refused",
            Self::Attested => "attested",
            Self::Expired => "expired",
        }
    }

    /// Parses the stored name.
    pub fn from_db(text: &str) -> Option<Self> {
        [Self::Open, Self::Refused, Self::Attested, Self::Expired]
            .into_iter()
            .find(|state| state.as_str() == text)
    }
}

/// Where a recovery stands at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryState {
    /// Open, in its waiting period.
    Waiting,
    /// Open, waiting period over, not expired.
    Attestable,
    /// Refused.
    Refused,
    /// Attested.
    Attested,
    /// Expired.
    Expired,
}

impl RecoveryState {
    /// The word used in messages.
    fn word(self) -> &'static str {
        match self {
            Self::Waiting => "in its waiting period",
            Self::Attestable => "attestable",
            Self::Refused => "refused",
            Self::Attested => "attested already",
            Self::Expired => "expired",
        }
    }
}

/// A recovery as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PrimaryRecovery {
    /// Id.
    pub recovery_id: Uuid,
    /// Site.
    pub site_id: Uuid,
    /// Who asked.
    pub requester_id: Uuid,
    /// Why it may ask.
    pub basis: Basis,
    /// The primary contact when asked.
    pub previous_primary_id: Uuid,
    /// Why it asks.
    pub reason: String,
    /// Stored state.
    pub state: Stored,
    /// When asked.
    pub request_time: DateTime<Utc>,
    /// End of the waiting period.
    pub waiting_end_time: DateTime<Utc>,
    /// Expiry of the open request.
    pub expire_time: DateTime<Utc>,
    /// Who refused or attested.
    pub decided_by: Option<Uuid>,
    /// Why.
    pub decision_reason: Option<String>,
    /// When refused, attested or marked expired.
    pub decide_time: Option<DateTime<Utc>>,
    /// The new primary of an attested recovery.
    pub new_primary_id: Option<Uuid>,
    /// Version.
    pub version: i64,
}

impl PrimaryRecovery {
    /// The state at `now`.
    pub fn state_at(&self, now: DateTime<Utc>) -> RecoveryState {
        match self.state {
            Stored::Open if now >= self.expire_time => RecoveryState::Expired,
            Stored::Open if now < self.waiting_end_time => RecoveryState::Waiting,
            Stored::Open => RecoveryState::Attestable,
            Stored::Refused => RecoveryState::Refused,
            Stored::Attested => RecoveryState::Attested,
            Stored::Expired => RecoveryState::Expired,
        }
    }

    /// Whether it may be refused at `now`: while open and not expired.
    pub fn check_refusable(&self, now: DateTime<Utc>) -> Result<()> {
        match self.state_at(now) {
            RecoveryState::Waiting | RecoveryState::Attestable => Ok(()),
            state => Err(ContactsError::rule(format!(
                "rule C12: only an open recovery can be refused; this one is {}",
                state.word()
            ))),
        }
    }

    /// Whether it may be attested at `now`: open, waiting period over, not expired.
    pub fn check_attestable(&self, now: DateTime<Utc>) -> Result<()> {
        match self.state_at(now) {
            RecoveryState::Attestable => Ok(()),
            RecoveryState::Waiting => Err(ContactsError::rule(format!(
                "rule C12: the waiting period of this recovery ends at {}; the old primary contact may refuse until then, and nobody attests before",
                self.waiting_end_time.to_rfc3339()
            ))),
            state => Err(ContactsError::rule(format!(
                "rule C12: only an open recovery whose waiting period is over can be attested; this one is {}",
                state.word()
            ))),
        }
    }

    /// Whether an open request no longer applies at `now`: past its expiry, or its old
    /// primary is no longer the site's primary (`primary_user_id`).
    pub fn lapsed(&self, now: DateTime<Utc>, primary_user_id: Uuid) -> bool {
        self.state == Stored::Open
            && (now >= self.expire_time || self.previous_primary_id != primary_user_id)
    }

    /// Whether `actor` may read it: operators, its requester and its old primary.
    pub fn visible_to(&self, actor: Actor) -> bool {
        is_operator(actor)
            || (actor.acts_for_person()
                && (actor.actor_id == self.requester_id
                    || actor.actor_id == self.previous_primary_id))
    }
}

/// Whether `actor` is an operator acting with its own token.
fn is_operator(actor: Actor) -> bool {
    actor.via_service.is_none()
}

/// A reason of 1 to [`MAX_REASON_CHARS`] characters (line breaks allowed).
pub fn reason(field: &str, text: &str) -> Result<String, Violation> {
    optional_multiline_text(field, text, MAX_REASON_CHARS)?
        .ok_or_else(|| Violation::new(field, "is required"))
}

/// A request of a recovery (RequestPrimaryRecovery).
#[derive(Debug, Clone)]
pub struct RecoveryRequest {
    /// Site number (S3).
    pub site_number: SiteNumber,
    /// Customer number (S3).
    pub customer_number: CustomerNumber,
    /// Why.
    pub reason: String,
    /// The key contact whose e-mail domain vouches for a requester who is no contact.
    pub vouching_user_id: Option<Uuid>,
}

impl RecoveryRequest {
    /// Parses every field, reporting every invalid one.
    pub fn parse(
        site_number: &str,
        customer_number: &str,
        reason_text: &str,
        vouching_user_id: &str,
    ) -> Result<Self, kc_runtime::ApiError> {
        let mut v = Violations::new();
        let site_number = v.check(SiteNumber::parse("site_number", site_number));
        let customer_number = v.check(CustomerNumber::parse("customer_number", customer_number));
        let reason = v.check(reason("reason", reason_text));
        let vouching = if vouching_user_id.trim().is_empty() {
            Some(None)
        } else {
            v.check(kc_runtime::values::parse_id(
                "vouching_user_id",
                vouching_user_id,
            ))
            .map(Some)
        };
        v.build(|| {
            Some(Self {
                site_number: site_number?,
                customer_number: customer_number?,
                reason: reason?,
                vouching_user_id: vouching?,
            })
        })
    }
}

/// A refusal (RefusePrimaryRecovery).
#[derive(Debug, Clone)]
pub struct RecoveryRefusal {
    /// Recovery.
    pub recovery_id: Uuid,
    /// Why.
    pub reason: String,
}

/// An attestation (AttestPrimaryRecovery).
#[derive(Debug, Clone)]
pub struct RecoveryAttestation {
    /// Recovery.
    pub recovery_id: Uuid,
    /// The new primary contact.
    pub new_user_id: Uuid,
    /// What the operator checked.
    pub reason: String,
    /// The role the old primary keeps (C8).
    pub previous_primary_role: ContactRole,
}

/// Maps a refused insert: the site has an open recovery already (C12).
fn insert_error(error: sqlx::Error) -> ContactsError {
    if classify(&error) == DbErrorKind::UniqueViolation {
        ContactsError::RecoveryOpen
    } else {
        error.into()
    }
}

/// One step to record: its audit record and, for the steps that tell people, its event.
struct StepRecord<'a> {
    /// The audit action, e.g. `primary_recovery.requested`.
    action: &'a str,
    /// The recovery before the step; `None` when it asks.
    before: Option<&'a PrimaryRecovery>,
    /// The recovery after the step.
    after: &'a PrimaryRecovery,
    /// Why (T5).
    reason: &'a str,
    /// The event of the step, for the steps that tell people.
    event: Option<RecoveryStep>,
}

impl StepRecord<'_> {
    /// Appends the audit record (with its reason) and the event with the site's contact
    /// users, in `tx`. Returns the event's cursor.
    async fn append(
        self,
        tx: &mut PgConnection,
        actor: Actor,
        site: &Site,
    ) -> Result<Option<Cursor>> {
        kc_runtime::audit::append(
            &mut *tx,
            &kc_runtime::audit::NewRecord {
                site_id: site.site_id,
                actor_id: Some(actor.actor_id),
                via_service: actor.via_service,
                action: self.action,
                resource_id: self.after.recovery_id.to_string(),
                before: self
                    .before
                    .and_then(|before| serde_json::to_value(before).ok()),
                after: serde_json::to_value(self.after).ok(),
                reason: self.reason,
            },
        )
        .await?;
        let Some(step) = self.event else {
            return Ok(None);
        };
        let users = storage::recoveries::contact_users(&mut *tx, site.site_id).await?;
        let event = events::primary_recovery(step, actor, site, self.after, &users);
        Ok(Some(events::append(tx, &event).await?))
    }
}

/// How a person decides an open recovery (C12).
enum Verdict {
    /// Refused, by its old primary contact or an operator.
    Refused,
    /// Attested by an operator, making `new_primary` the primary contact.
    Attested {
        /// The new primary contact.
        new_primary: Uuid,
    },
}

/// Decides the locked open recovery `before` by `actor` for `reason` at `now`, and records
/// the step (audit record and event) on `site`. Returns the recovery after.
async fn decide_open(
    tx: &mut PgConnection,
    actor: Actor,
    site: &Site,
    before: &PrimaryRecovery,
    verdict: Verdict,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<PrimaryRecovery> {
    let (state, new_primary, action, step) = match verdict {
        Verdict::Refused => (
            Stored::Refused,
            None,
            "primary_recovery.refused",
            RecoveryStep::Refused,
        ),
        Verdict::Attested { new_primary } => (
            Stored::Attested,
            Some(new_primary),
            "primary_recovery.attested",
            RecoveryStep::Attested,
        ),
    };
    let after = storage::recoveries::decide(
        &mut *tx,
        before.recovery_id,
        state,
        Some((actor.actor_id, reason)),
        now,
        new_primary,
    )
    .await?;
    StepRecord {
        action,
        before: Some(before),
        after: &after,
        reason,
        event: Some(step),
    }
    .append(tx, actor, site)
    .await?;
    Ok(after)
}

/// The recovery `recovery_id` and its site, locked (the site first, as every write does).
async fn lock_recovery(
    tx: &mut PgConnection,
    recovery_id: Uuid,
) -> Result<(Site, PrimaryRecovery)> {
    let found = storage::recoveries::get(&mut *tx, recovery_id)
        .await?
        .ok_or(ContactsError::RecoveryNotFound)?;
    let site = storage::sites::lock(&mut *tx, found.site_id)
        .await?
        .ok_or(ContactsError::RecoveryNotFound)?;
    let recovery = storage::recoveries::get(&mut *tx, recovery_id)
        .await?
        .ok_or(ContactsError::RecoveryNotFound)?;
    Ok((site, recovery))
}

impl Registry {
    /// Asks for the recovery of the site named by `request` (C12, S3) for the person the
    /// calling service names. A site that does not match, and a person who is neither a
    /// contact of it nor vouched for by one of its key contacts, get the same
    /// [`ContactsError::NoMatchingSite`]. Marks a lapsed open request of the site expired
    /// first; a site with another open request is [`ContactsError::RecoveryOpen`].
    pub async fn request_primary_recovery(
        &self,
        actor: Actor,
        request: RecoveryRequest,
    ) -> Result<PrimaryRecovery> {
        if !actor.acts_for_person() {
            return Err(ContactsError::Forbidden(
                "rule C12: a recovery is asked for a person: the calling service names it in x-kc-on-behalf-of",
            ));
        }
        let requester = actor.actor_id;
        let mut tx = self.pool().begin().await?;
        let found = storage::sites::get_by_number(&mut tx, request.site_number.as_str())
            .await?
            .filter(|site| site.customer_number == request.customer_number)
            .ok_or(ContactsError::NoMatchingSite)?;
        let site = storage::sites::lock(&mut tx, found.site_id)
            .await?
            .ok_or(ContactsError::NoMatchingSite)?;
        let holders = storage::recoveries::contact_roles(&mut tx, site.site_id).await?;
        let is_contact = holders.iter().any(|(user, _)| *user == requester);
        let basis = match request.vouching_user_id {
            _ if is_contact => Basis::Contact,
            Some(vouching) if vouching != requester => {
                let key_contact = holders
                    .iter()
                    .any(|(user, role)| *user == vouching && *role != ContactRole::SiteUser);
                if !key_contact {
                    return Err(ContactsError::NoMatchingSite);
                }
                Basis::Domain {
                    vouching_user_id: vouching,
                }
            }
            _ => return Err(ContactsError::NoMatchingSite),
        };
        if requester == site.primary_user_id {
            return Err(ContactsError::rule(
                "rule C12: the primary contact is not gone; it transfers the role itself (C8)",
            ));
        }
        let now = Utc::now();
        if let Some(open) = storage::recoveries::open_of_site(&mut tx, site.site_id).await?
            && open.lapsed(now, site.primary_user_id)
        {
            let expired = storage::recoveries::decide(
                &mut tx,
                open.recovery_id,
                Stored::Expired,
                None,
                now,
                None,
            )
            .await?;
            StepRecord {
                action: "primary_recovery.expired",
                before: Some(&open),
                after: &expired,
                reason: "lapsed: past its expiry, or the primary contact changed otherwise",
                event: None,
            }
            .append(&mut tx, actor, &site)
            .await?;
        }
        let (waiting_end_time, expire_time) = self.recovery_times().deadlines(now);
        let recovery = PrimaryRecovery {
            recovery_id: Uuid::now_v7(),
            site_id: site.site_id,
            requester_id: requester,
            basis,
            previous_primary_id: site.primary_user_id,
            reason: request.reason,
            state: Stored::Open,
            request_time: now,
            waiting_end_time,
            expire_time,
            decided_by: None,
            decision_reason: None,
            decide_time: None,
            new_primary_id: None,
            version: 1,
        };
        storage::recoveries::insert(&mut tx, &recovery)
            .await
            .map_err(insert_error)?;
        StepRecord {
            action: "primary_recovery.requested",
            before: None,
            after: &recovery,
            reason: &recovery.reason,
            event: Some(RecoveryStep::Requested),
        }
        .append(&mut tx, actor, &site)
        .await?;
        tx.commit().await?;
        tracing::info!(site_id = %site.site_id, recovery_id = %recovery.recovery_id, "primary recovery requested");
        Ok(recovery)
    }

    /// Refuses an open recovery (C12): its old primary (named by a service) or an operator.
    /// Anyone else gets [`ContactsError::RecoveryNotFound`], as for an unknown id.
    pub async fn refuse_primary_recovery(
        &self,
        actor: Actor,
        refusal: RecoveryRefusal,
    ) -> Result<PrimaryRecovery> {
        let RecoveryRefusal {
            recovery_id,
            reason,
        } = refusal;
        if !is_operator(actor) && !actor.acts_for_person() {
            return Err(ContactsError::Forbidden(
                "rule C12: a recovery is refused by its old primary contact, whom the calling service names in x-kc-on-behalf-of, or by an operator",
            ));
        }
        let mut tx = self.pool().begin().await?;
        let (site, before) = lock_recovery(&mut tx, recovery_id).await?;
        if !is_operator(actor) && actor.actor_id != before.previous_primary_id {
            return Err(ContactsError::RecoveryNotFound);
        }
        let now = Utc::now();
        before.check_refusable(now)?;
        let after = decide_open(
            &mut tx,
            actor,
            &site,
            &before,
            Verdict::Refused,
            &reason,
            now,
        )
        .await?;
        tx.commit().await?;
        tracing::info!(site_id = %site.site_id, %recovery_id, "primary recovery refused");
        Ok(after)
    }

    /// Attests an attestable recovery (C12) and transfers the primary contact to the new
    /// user in the same transaction, by the registry's own transfer (C8, T7: the operator
    /// does not make itself the primary). Operators only. Returns the recovery, the site and
    /// the new primary contact, with the transfer's revision (T8).
    pub async fn attest_primary_recovery(
        &self,
        actor: Actor,
        attestation: RecoveryAttestation,
    ) -> Result<Revised<(PrimaryRecovery, Site, Contact)>> {
        let RecoveryAttestation {
            recovery_id,
            new_user_id,
            reason,
            previous_primary_role,
        } = attestation;
        if !is_operator(actor) {
            return Err(ContactsError::Forbidden(
                "rule C12: only an operator attests a recovery, with its own token",
            ));
        }
        let mut tx = self.pool().begin().await?;
        let (site, before) = lock_recovery(&mut tx, recovery_id).await?;
        let now = Utc::now();
        before.check_attestable(now)?;
        if site.primary_user_id != before.previous_primary_id {
            return Err(ContactsError::rule(
                "rule C12: the primary contact changed since the recovery was asked; the recovery no longer applies",
            ));
        }
        let (site, primary, _, revision) = self
            .transfer_in(
                &mut tx,
                actor,
                Transfer {
                    site_id: site.site_id,
                    new_user_id,
                    previous_primary_role,
                    etag: Etag::default(),
                },
            )
            .await?;
        let verdict = Verdict::Attested {
            new_primary: new_user_id,
        };
        let after = decide_open(&mut tx, actor, &site, &before, verdict, &reason, now).await?;
        tx.commit().await?;
        tracing::info!(site_id = %site.site_id, %recovery_id, "primary recovery attested");
        Ok(Revised {
            value: (after, site, primary),
            revision: Some(revision),
        })
    }

    /// A recovery, for an operator, its requester or its old primary; anyone else gets
    /// [`ContactsError::RecoveryNotFound`], as for an unknown id.
    pub async fn get_primary_recovery(
        &self,
        actor: Actor,
        recovery_id: Uuid,
    ) -> Result<PrimaryRecovery> {
        let mut conn = self.pool().acquire().await?;
        storage::recoveries::get(&mut conn, recovery_id)
            .await?
            .filter(|recovery| recovery.visible_to(actor))
            .ok_or(ContactsError::RecoveryNotFound)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::TimeZone;

    use super::*;

    fn at(hours: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + chrono::Duration::hours(hours)
    }

    fn open() -> PrimaryRecovery {
        let times = RecoveryTimes::default();
        let (waiting_end_time, expire_time) = times.deadlines(at(0));
        PrimaryRecovery {
            recovery_id: Uuid::from_u128(1),
            site_id: Uuid::from_u128(2),
            requester_id: Uuid::from_u128(3),
            basis: Basis::Contact,
            previous_primary_id: Uuid::from_u128(4),
            reason: "left the company".into(),
            state: Stored::Open,
            request_time: at(0),
            waiting_end_time,
            expire_time,
            decided_by: None,
            decision_reason: None,
            decide_time: None,
            new_primary_id: None,
            version: 1,
        }
    }

    // rule C12: 72 hours of waiting, then attestable until the request expires (30 days).
    #[test]
    fn an_open_recovery_waits_then_is_attestable_until_it_expires() {
        let recovery = open();
        assert_eq!(recovery.state_at(at(0)), RecoveryState::Waiting);
        assert_eq!(recovery.state_at(at(71)), RecoveryState::Waiting);
        assert_eq!(recovery.state_at(at(72)), RecoveryState::Attestable);
        assert_eq!(
            recovery.state_at(at(30 * 24 - 1)),
            RecoveryState::Attestable
        );
        assert_eq!(recovery.state_at(at(30 * 24)), RecoveryState::Expired);
    }

    // rule C12: nobody attests during the waiting period, nor after a refusal or the expiry.
    #[test]
    fn attestation_only_after_the_waiting_period_of_an_open_recovery() {
        let recovery = open();
        let early = recovery.check_attestable(at(1)).unwrap_err();
        assert!(matches!(early, ContactsError::Rule(_)));
        assert!(
            early
                .to_string()
                .starts_with("rule C12: the waiting period"),
            "{early}"
        );
        assert!(recovery.check_attestable(at(72)).is_ok());
        let late = recovery.check_attestable(at(30 * 24)).unwrap_err();
        assert!(late.to_string().contains("expired"), "{late}");
        for (state, word) in [
            (Stored::Refused, "refused"),
            (Stored::Attested, "attested"),
            (Stored::Expired, "expired"),
        ] {
            let decided = PrimaryRecovery { state, ..open() };
            let error = decided.check_attestable(at(100)).unwrap_err();
            assert!(error.to_string().starts_with("rule C12:"), "{error}");
            assert!(error.to_string().contains(word), "{error}");
            assert!(decided.check_refusable(at(1)).is_err(), "{state:?}");
        }
    }

    // rule C12: the old primary may refuse while the recovery is open, even after the
    // waiting period, until it is attested or expires.
    #[test]
    fn an_open_recovery_can_be_refused_until_it_expires() {
        let recovery = open();
        assert!(recovery.check_refusable(at(0)).is_ok());
        assert!(recovery.check_refusable(at(100)).is_ok());
        assert!(recovery.check_refusable(at(30 * 24)).is_err());
    }

    #[test]
    fn an_open_recovery_lapses_at_its_expiry_or_when_the_primary_changed() {
        let recovery = open();
        let primary = recovery.previous_primary_id;
        assert!(!recovery.lapsed(at(100), primary));
        assert!(recovery.lapsed(at(30 * 24), primary));
        assert!(recovery.lapsed(at(1), Uuid::from_u128(9)));
        let refused = PrimaryRecovery {
            state: Stored::Refused,
            ..open()
        };
        assert!(
            !refused.lapsed(at(30 * 24), primary),
            "only open ones lapse"
        );
    }

    #[test]
    fn operators_the_requester_and_the_old_primary_read_it() {
        let recovery = open();
        let service = Uuid::from_u128(100);
        let person = |id: u128| Actor {
            actor_id: Uuid::from_u128(id),
            via_service: Some(service),
        };
        let operator = Actor {
            actor_id: Uuid::from_u128(50),
            via_service: None,
        };
        assert!(recovery.visible_to(operator));
        assert!(recovery.visible_to(person(3)));
        assert!(recovery.visible_to(person(4)));
        assert!(!recovery.visible_to(person(5)));
        let service_alone = Actor {
            actor_id: service,
            via_service: Some(service),
        };
        assert!(!recovery.visible_to(service_alone));
    }

    #[test]
    fn times_need_a_waiting_period_shorter_than_the_lifetime() {
        let hour = Duration::from_secs(3600);
        assert!(RecoveryTimes::new(Duration::ZERO, hour).is_err());
        assert!(RecoveryTimes::new(hour, hour).is_err());
        let times = RecoveryTimes::new(hour, 2 * hour).unwrap();
        assert_eq!(times.deadlines(at(0)), (at(1), at(2)));
        assert_eq!(RecoveryTimes::default().deadlines(at(0)), (at(72), at(720)));
    }

    #[test]
    fn requests_parse_every_field() {
        let request = RecoveryRequest::parse("1234567", "7654321", " gone ", "").unwrap();
        assert_eq!(request.reason, "gone");
        assert_eq!(request.vouching_user_id, None);
        let Err(kc_runtime::ApiError::InvalidArgument(violations)) =
            RecoveryRequest::parse("x", "7654321", "  ", "nope")
        else {
            panic!("invalid fields are refused");
        };
        let fields: Vec<&str> = violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["site_number", "reason", "vouching_user_id"]);
        assert!(reason("reason", &"x".repeat(MAX_REASON_CHARS + 1)).is_err());
    }

    #[test]
    fn stored_states_round_trip() {
        for state in [
            Stored::Open,
            Stored::Refused,
            Stored::Attested,
            Stored::Expired,
        ] {
            assert_eq!(Stored::from_db(state.as_str()), Some(state));
        }
        assert_eq!(Stored::from_db("pending"), None);
    }
}
