//! The registry's operations: each one a transaction that checks the rules under the site's
//! lock, writes, and records the change in the audit trail (L1) and the outbox.

use kc_runtime::db::{DbErrorKind, classify, constraint};
use kc_runtime::outbox::{Cursor, Revised};
pub use kc_runtime::paging::Page;
use kc_runtime::paging::read_page;
use serde_json::json;
use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use uuid::Uuid;

use super::authority::{self, Need};
use super::commands::{
    Actor, Assignment, ContactUpdate, EmailConfirmation, GapsListing, RecipientsQuery, Removal,
    Replacement, SiteContactsAfter, SiteContactsListing, SiteDraft, SiteListing, SiteLookup,
    SiteUpdate, Transfer, UserContactsListing,
};
use super::compliance::SiteCompliance;
use super::notification_email::{
    Code, MAX_FAILED_ATTEMPTS, NotificationCodes, code_hash, well_formed,
};
use super::recipients::{self, Resolution};
use super::recovery_times::RecoveryTimes;
use super::roles::MAX_SECONDARY_CONTACTS;
use super::support_life::{support_in_force, today};
use super::{
    AuditRecord, Contact, ContactDetails, ContactRole, ContactsError, KnownPerson, Result, Site,
    SiteContacts,
};
use crate::events::{self, PendingEvent};
use crate::storage::{self, audit::NewRecord, sites::NewSite};

/// The contact registry over its Postgres schema.
#[derive(Clone, Debug)]
pub struct Registry {
    pool: PgPool,
    codes: NotificationCodes,
    recovery: RecoveryTimes,
}

/// Refuses a change of a role that implies rights (T3, U5) made by a service acting for
/// nobody (T6): such a change is a grant, decided for a person the gateway vouches for.
/// Operators acting with their own token, and services naming a person, pass.
fn refuse_anonymous_grant(actor: Actor, role: ContactRole) -> Result<()> {
    if role.implies_rights() && actor.is_service_alone() {
        return Err(ContactsError::Forbidden(
            "rule T6: a role that implies rights changes only for a person: a service names the person it acts for (x-kc-on-behalf-of)",
        ));
    }
    Ok(())
}

/// Refuses a role that implies rights (T3, U5) given by the acting person to itself (T7),
/// whoever it is: an operator acts on others too.
fn refuse_self_assignment(actor: Actor, user_id: Uuid, role: ContactRole) -> Result<()> {
    if role.implies_rights() && actor.actor_id == user_id {
        return Err(ContactsError::rule(
            "rule T7: nobody assigns itself a role that implies rights (ADMINISTRATIVE, SITE_TECHNICAL, SECONDARY); another contact with the authority does",
        ));
    }
    Ok(())
}

/// Refuses the change when the caller's etag is not the current version.
fn check_etag(expected: Option<i64>, actual: i64, what: &'static str) -> Result<()> {
    match expected {
        Some(expected) if expected != actual => Err(ContactsError::EtagMismatch(what)),
        _ => Ok(()),
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Option<serde_json::Value> {
    serde_json::to_value(value).ok()
}

/// Maps a refused contact insert: the user holds the role already, or a single-holder role
/// is taken (C1, C3, C5, C6).
fn insert_error(error: sqlx::Error, role: ContactRole) -> ContactsError {
    if classify(&error) != DbErrorKind::UniqueViolation {
        return error.into();
    }
    match constraint(&error) {
        Some("contacts_one_role_per_user") => ContactsError::RoleAlreadyHeld(role),
        _ => ContactsError::rule(format!(
            "{}; use ReplaceContact to change it",
            role.single_holder_rule()
        )),
    }
}

/// Forgets a contact's pending notification e-mail and empties the sealed code of its
/// event (C11). Returns whether there was one.
async fn withdraw_pending(tx: &mut PgConnection, contact_id: Uuid) -> Result<bool> {
    let event_id = storage::contacts::withdraw_pending(&mut *tx, contact_id).await?;
    if let Some(event_id) = event_id {
        events::drop_sealed_code(tx, event_id).await?;
    }
    Ok(event_id.is_some())
}

/// Deletes a contact, emptying the sealed code of its pending notification e-mail (C11).
async fn delete_contact(tx: &mut PgConnection, contact_id: Uuid) -> Result<()> {
    if let Some(event_id) = storage::contacts::delete(&mut *tx, contact_id).await? {
        events::drop_sealed_code(tx, event_id).await?;
    }
    Ok(())
}

/// A site's lock, or `SiteNotFound`.
async fn lock_site(tx: &mut PgConnection, site_id: Uuid) -> Result<Site> {
    storage::sites::lock(tx, site_id)
        .await?
        .ok_or(ContactsError::SiteNotFound)
}

/// A contact and its site's lock: the contact is read again under the lock, so a concurrent
/// removal is seen.
async fn lock_contact(
    tx: &mut PgConnection,
    contact_id: Uuid,
    in_site: Option<Uuid>,
) -> Result<(Site, Contact)> {
    let contact = storage::contacts::get_in_site(tx, contact_id, in_site)
        .await?
        .ok_or(ContactsError::ContactNotFound)?;
    let site = lock_site(tx, contact.site_id).await?;
    // Read again under the site lock: the contact may have gone meanwhile.
    let contact = storage::contacts::get_in_site(tx, contact_id, in_site)
        .await?
        .ok_or(ContactsError::ContactNotFound)?;
    Ok((site, contact))
}

/// C6: refuses a fifth SECONDARY contact. Call under the site lock.
async fn check_capacity(tx: &mut PgConnection, site_id: Uuid, role: ContactRole) -> Result<()> {
    if role == ContactRole::Secondary {
        let holders = storage::contacts::holders(tx, site_id, role).await?;
        if holders.len() as i64 >= MAX_SECONDARY_CONTACTS {
            return Err(ContactsError::rule(role.single_holder_rule()));
        }
    }
    Ok(())
}

/// Inserts a contact under the site lock, checking C6.
async fn add_contact(
    tx: &mut PgConnection,
    site_id: Uuid,
    user_id: Uuid,
    role: ContactRole,
    details: &ContactDetails,
) -> Result<Contact> {
    check_capacity(tx, site_id, role).await?;
    storage::contacts::insert(tx, site_id, user_id, role, details)
        .await
        .map_err(|error| insert_error(error, role))
}

/// A change to record: its audit record and its event, written with the change.
struct Change<'a> {
    actor: Actor,
    site_id: Uuid,
    action: &'a str,
    resource_id: Uuid,
    before: Option<serde_json::Value>,
    after: Option<serde_json::Value>,
    event: PendingEvent,
}

impl Change<'_> {
    /// Appends the audit record and the event, then commits the transaction. Returns the
    /// event's cursor, the change's revision.
    async fn commit(self, mut tx: Transaction<'_, Postgres>) -> Result<Cursor> {
        let (site_id, resource_id, action) = (self.site_id, self.resource_id, self.action);
        let revision = self.record(&mut tx).await?;
        tx.commit().await?;
        tracing::info!(
            site_id = %site_id,
            resource_id = %resource_id,
            action = action,
            "registry changed"
        );
        Ok(revision)
    }

    /// Appends the audit record and the event in the caller's transaction; returns the
    /// event's cursor.
    async fn record(self, tx: &mut PgConnection) -> Result<Cursor> {
        storage::audit::append(
            &mut *tx,
            &NewRecord {
                site_id: self.site_id,
                actor_id: self.actor.actor_id,
                via_service: self.actor.via_service,
                action: self.action,
                resource_id: self.resource_id,
                before: self.before,
                after: self.after,
            },
        )
        .await?;
        Ok(events::append(tx, &self.event).await?)
    }
}

/// What a request does to a contact's notification e-mail (C11).
#[derive(Debug, Clone, PartialEq, Eq)]
enum EmailChange {
    /// The confirmed address stays (the request sent it back, or none was asked).
    Keep,
    /// Cleared: notices go to the login e-mail at once, any pending address is withdrawn.
    Clear,
    /// A new address waits for its owner's confirmation.
    Request(String),
}

impl EmailChange {
    /// The change `asked` makes to a contact whose confirmed address is `confirmed`.
    fn of(asked: Option<&str>, confirmed: Option<&str>) -> Self {
        match asked {
            None => Self::Clear,
            Some(email) if Some(email) == confirmed => Self::Keep,
            Some(email) => Self::Request(email.to_owned()),
        }
    }
}

/// `details` with the notification e-mail left at `confirmed`: a requested address is
/// stored pending, never in use (C11).
fn without_requested_email(details: &ContactDetails, confirmed: Option<String>) -> ContactDetails {
    ContactDetails {
        notification_email: confirmed,
        ..details.clone()
    }
}

impl Registry {
    /// The registry over `pool` (bound to the contacts schema), mailing the codes of new
    /// notification e-mails as `codes` says (C11).
    pub fn new(pool: PgPool, codes: NotificationCodes) -> Self {
        Self {
            pool,
            codes,
            recovery: RecoveryTimes::default(),
        }
    }

    /// The same registry, recovering primary contacts (C12) with `times`.
    pub fn with_recovery_times(self, times: RecoveryTimes) -> Self {
        Self {
            recovery: times,
            ..self
        }
    }

    /// The waiting period and lifetime of primary recoveries (C12).
    pub fn recovery_times(&self) -> RecoveryTimes {
        self.recovery
    }

    /// The pool the registry writes through (bound to the contacts schema).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Makes `email`, when one is asked, the pending notification e-mail of `contact`
    /// (C11): withdraws the code of any previous one, mails a new code (sealed to
    /// notification's key, in an event that also tells the contact's login e-mail) and
    /// records it in the audit trail. Returns the contact, with its pending address when
    /// one was asked.
    async fn request_notification_email(
        &self,
        tx: &mut PgConnection,
        actor: Actor,
        site: &Site,
        contact: Contact,
        email: Option<&str>,
    ) -> Result<Contact> {
        let Some(email) = email else {
            return Ok(contact);
        };
        let code = Code::generate()?;
        let sealed_code = self.codes.seal(&code)?;
        withdraw_pending(&mut *tx, contact.contact_id).await?;
        let ttl = chrono::Duration::from_std(self.codes.ttl())
            .map_err(|error| anyhow::anyhow!("code lifetime out of range: {error}"))?;
        let expire_time = chrono::Utc::now() + ttl;
        let mut shown = contact.clone();
        shown.pending_notification_email = Some(email.to_owned());
        shown.pending_expire_time = Some(expire_time);
        let event = events::notification_email_change_requested(
            actor,
            site,
            &shown,
            Some(email),
            contact.details.notification_email.as_deref(),
            sealed_code,
            Some(expire_time),
        );
        let event_id = event.append(&mut *tx).await?;
        let hash = code_hash(code.expose());
        let pending = storage::contacts::set_pending(
            &mut *tx,
            contact.contact_id,
            &storage::contacts::NewPending {
                email,
                code_hash: &hash,
                expire_time,
                event_id,
            },
        )
        .await?;
        storage::audit::append(
            &mut *tx,
            &NewRecord {
                site_id: site.site_id,
                actor_id: actor.actor_id,
                via_service: actor.via_service,
                action: "contact.notification_email_requested",
                resource_id: contact.contact_id,
                before: Some(json!({
                    "notification_email": contact.details.notification_email,
                    "pending_notification_email": contact.pending_notification_email,
                })),
                after: Some(json!({
                    "notification_email": pending.details.notification_email,
                    "pending_notification_email": pending.pending_notification_email,
                    "pending_expire_time": pending.pending_expire_time,
                })),
            },
        )
        .await?;
        Ok(pending)
    }

    /// Clears the notification e-mail of `before` (now `contact`), already written: any
    /// pending address is withdrawn, and the contact's login e-mail is told (C11). Nothing
    /// when there was neither a confirmed nor a pending address.
    async fn cleared_notification_email(
        &self,
        tx: &mut PgConnection,
        actor: Actor,
        site: &Site,
        before: &Contact,
        contact: Contact,
    ) -> Result<Contact> {
        let withdrawn = withdraw_pending(&mut *tx, contact.contact_id).await?;
        if !withdrawn && before.details.notification_email.is_none() {
            return Ok(contact);
        }
        let contact = storage::contacts::get(&mut *tx, contact.contact_id)
            .await?
            .ok_or(ContactsError::ContactNotFound)?;
        events::append(
            &mut *tx,
            &events::notification_email_change_requested(
                actor,
                site,
                &contact,
                None,
                before.details.notification_email.as_deref(),
                Vec::new(),
                None,
            ),
        )
        .await?;
        Ok(contact)
    }

    /// Confirms the pending notification e-mail whose code is `code` (C11), for `owner`,
    /// the user the caller acts for: only a contact of `owner` is confirmed, optionally
    /// only on `site_id` or only `contact_id`. A wrong code counts against every pending
    /// address of `owner` in scope, and the fifth withdraws it.
    pub async fn confirm_notification_email(
        &self,
        actor: Actor,
        owner: Uuid,
        confirmation: EmailConfirmation,
    ) -> Result<Contact> {
        let EmailConfirmation {
            code,
            site_id,
            contact_id,
        } = confirmation;
        let code = code.as_str();
        let hash = code_hash(code);
        let mut tx = self.pool.begin().await?;
        let found = if well_formed(code) {
            storage::contacts::find_pending(&mut tx, owner, &hash, site_id, contact_id).await?
        } else {
            None
        };
        let Some(found) = found else {
            let counted =
                storage::contacts::count_wrong_code(&mut tx, owner, site_id, contact_id).await?;
            for (contact_id, site_id, attempts) in counted {
                if attempts >= MAX_FAILED_ATTEMPTS && withdraw_pending(&mut tx, contact_id).await? {
                    storage::audit::append(
                        &mut tx,
                        &NewRecord {
                            site_id,
                            actor_id: actor.actor_id,
                            via_service: actor.via_service,
                            action: "contact.notification_email_withdrawn",
                            resource_id: contact_id,
                            before: None,
                            after: Some(json!({
                                "reason": format!("{MAX_FAILED_ATTEMPTS} wrong codes"),
                            })),
                        },
                    )
                    .await?;
                }
            }
            tx.commit().await?;
            return Err(ContactsError::rule(
                "rule C11: the code matches no notification e-mail waiting for your confirmation                  (wrong, used, replaced or expired); ask for the address again to get a new code",
            ));
        };
        if found.expired {
            withdraw_pending(&mut tx, found.contact_id).await?;
            tx.commit().await?;
            return Err(ContactsError::rule(
                "rule C11: this code expired; ask for the notification e-mail again to get a new code",
            ));
        }
        let (site, before) = lock_contact(&mut tx, found.contact_id, Some(found.site_id)).await?;
        let (contact, event_id) =
            storage::contacts::confirm_pending(&mut tx, found.contact_id, &hash)
                .await?
                .ok_or_else(|| {
                    ContactsError::rule(
                        "rule C11: the code was used, replaced or withdrawn meanwhile; ask for the                      notification e-mail again",
                    )
                })?;
        events::drop_sealed_code(&mut tx, event_id).await?;
        Change {
            actor,
            site_id: site.site_id,
            action: "contact.notification_email_confirmed",
            resource_id: contact.contact_id,
            before: Some(json!({
                "notification_email": before.details.notification_email,
                "pending_notification_email": before.pending_notification_email,
            })),
            after: Some(json!({ "notification_email": contact.details.notification_email })),
            event: events::notification_email_confirmed(actor, &site, &contact),
        }
        .commit(tx)
        .await?;
        Ok(contact)
    }

    /// Withdraws the pending notification e-mails whose code expired and empties the sealed
    /// codes of their events; returns how many. The registry runs it periodically.
    pub async fn expire_notification_codes(&self) -> Result<usize> {
        let mut total = 0;
        loop {
            let mut tx = self.pool.begin().await?;
            let event_ids = storage::contacts::expire_pending(&mut tx, 500).await?;
            for event_id in &event_ids {
                events::drop_sealed_code(&mut tx, *event_id).await?;
            }
            tx.commit().await?;
            let count = event_ids.len();
            total += count;
            if count < 500 {
                return Ok(total);
            }
        }
    }

    /// Creates a site with its primary contact (S1) and, when given, its STC (C5). The
    /// first site of a customer is its original site.
    pub async fn create_site(
        &self,
        actor: Actor,
        draft: SiteDraft,
    ) -> Result<Revised<(Site, Vec<Contact>)>> {
        let mut tx = self.pool.begin().await?;
        let is_original_site =
            storage::sites::insert_customer(&mut tx, draft.customer_number.as_str()).await?;
        let site_id = Uuid::now_v7();
        storage::sites::insert(
            &mut tx,
            &NewSite {
                site_id,
                site_number: draft.site_number.as_str(),
                customer_number: draft.customer_number.as_str(),
                name: &draft.name,
                country_code: draft.country_code.as_str(),
                language: draft.language.as_str(),
                program: draft.program,
                support_active: draft.support.is_active(),
                support_end_date: draft.support_end_date,
                business_partner_email: draft.business_partner_email.as_deref(),
                is_original_site,
            },
        )
        .await
        .map_err(|error| match classify(&error) {
            DbErrorKind::UniqueViolation => {
                ContactsError::SiteNumberTaken(draft.site_number.as_str().to_owned())
            }
            _ => error.into(),
        })?;
        // C11: the notification e-mails asked for wait for their owners' confirmation.
        let mut contacts = vec![
            storage::contacts::insert(
                &mut tx,
                site_id,
                draft.primary.user_id,
                ContactRole::Primary,
                &without_requested_email(&draft.primary.details, None),
            )
            .await?,
        ];
        let mut requested = vec![draft.primary.details.notification_email.clone()];
        if let Some(site_technical) = draft.support.site_technical() {
            contacts.push(
                storage::contacts::insert(
                    &mut tx,
                    site_id,
                    site_technical.user_id,
                    ContactRole::SiteTechnical,
                    &without_requested_email(&site_technical.details, None),
                )
                .await?,
            );
            requested.push(site_technical.details.notification_email.clone());
        }
        let site = storage::sites::get(&mut tx, site_id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("site vanished inside its own transaction"))?;
        let revision = Change {
            actor,
            site_id,
            action: "site.created",
            resource_id: site_id,
            before: None,
            after: Some(json!({ "site": site, "contacts": contacts })),
            event: events::site_created(actor, &site, &contacts),
        }
        .record(&mut tx)
        .await?;
        let mut with_pending = Vec::with_capacity(contacts.len());
        for (contact, email) in contacts.into_iter().zip(requested) {
            with_pending.push(
                self.request_notification_email(&mut tx, actor, &site, contact, email.as_deref())
                    .await?,
            );
        }
        tx.commit().await?;
        Ok(Revised {
            value: (site, with_pending),
            revision: Some(revision),
        })
    }

    /// The site with this id.
    pub async fn get_site(&self, site_id: Uuid) -> Result<Site> {
        let mut conn = self.pool.acquire().await?;
        storage::sites::get(&mut conn, site_id)
            .await?
            .ok_or(ContactsError::SiteNotFound)
    }

    /// The site with this site number.
    pub async fn lookup_site(&self, lookup: &SiteLookup) -> Result<Site> {
        let mut conn = self.pool.acquire().await?;
        let found = match lookup {
            SiteLookup::Number(number) => {
                storage::sites::get_by_number(&mut conn, number.as_str()).await?
            }
            SiteLookup::OriginalOf(customer) => {
                storage::sites::original_of_customer(&mut conn, customer.as_str()).await?
            }
        };
        found.ok_or(ContactsError::SiteNotFound)
    }

    /// A page of sites in site-number order.
    pub async fn list_sites(&self, listing: SiteListing) -> Result<Page<Site>> {
        let SiteListing {
            customer_number,
            after,
            size,
        } = listing;
        read_page(&self.pool, size, async |conn, limit| {
            let customer_number = customer_number.as_ref().map(|number| number.as_str());
            storage::sites::list(conn, customer_number, after.as_deref(), limit).await
        })
        .await
    }

    /// Changes a site. Turning S&S on needs an STC (C5).
    pub async fn update_site(&self, actor: Actor, update: SiteUpdate) -> Result<Revised<Site>> {
        let SiteUpdate {
            site_id,
            patch,
            etag,
        } = update;
        let etag = etag.version();
        let mut tx = self.pool.begin().await?;
        let before = lock_site(&mut tx, site_id).await?;
        authority::require(&mut tx, actor, &before, &[Need::SITE]).await?;
        check_etag(etag, before.version, "site")?;
        let mut site = before.clone();
        if let Some(name) = patch.name {
            site.name = name;
        }
        if let Some(language) = patch.language {
            site.language = language;
        }
        if let Some(active) = patch.support_active {
            site.support_active = active;
        }
        if let Some(end) = patch.support_end_date {
            site.support_end_date = end;
        }
        if let Some(email) = patch.business_partner_email {
            site.business_partner_email = email;
        }
        if let Some(switch) = patch.admin_may_manage_access {
            site.admin_may_manage_access = switch;
        }
        if site.support_active && !before.support_active {
            let stc =
                storage::contacts::holders(&mut tx, site_id, ContactRole::SiteTechnical).await?;
            if stc.is_empty() {
                return Err(ContactsError::rule(
                    "rule C5: S&S cannot be activated on a site without a SITE_TECHNICAL contact; name one first",
                ));
            }
        }
        storage::sites::update(&mut tx, &site).await?;
        let site = storage::sites::get(&mut tx, site_id)
            .await?
            .ok_or(ContactsError::SiteNotFound)?;
        let revision = Change {
            actor,
            site_id,
            action: "site.updated",
            resource_id: site_id,
            before: to_json(&before),
            after: to_json(&site),
            event: events::site_updated(actor, &site, &before),
        }
        .commit(tx)
        .await?;
        Ok(Revised {
            value: site,
            revision: Some(revision),
        })
    }

    /// Gives `user_id` the role `role` on a site (C6). PRIMARY changes only by transfer (C8).
    pub async fn assign_contact(
        &self,
        actor: Actor,
        assignment: Assignment,
    ) -> Result<Revised<Contact>> {
        let Assignment {
            site_id,
            user_id,
            role,
            details,
        } = assignment;
        if role == ContactRole::Primary {
            return Err(ContactsError::rule(
                "rule C8: the primary contact changes only by transfer; use TransferPrimaryContact",
            ));
        }
        refuse_anonymous_grant(actor, role)?;
        refuse_self_assignment(actor, user_id, role)?;
        let mut tx = self.pool.begin().await?;
        let site = lock_site(&mut tx, site_id).await?;
        authority::require(&mut tx, actor, &site, &authority::contact_change(role)).await?;
        let contact = add_contact(
            &mut tx,
            site_id,
            user_id,
            role,
            &without_requested_email(&details, None),
        )
        .await?;
        let revision = Change {
            actor,
            site_id,
            action: "contact.assigned",
            resource_id: contact.contact_id,
            before: None,
            after: to_json(&contact),
            event: events::contact_assigned(actor, &site, &contact),
        }
        .record(&mut tx)
        .await?;
        // C11: an asked notification e-mail waits for its owner's confirmation.
        let asked = details.notification_email.as_deref();
        let contact = self
            .request_notification_email(&mut tx, actor, &site, contact, asked)
            .await?;
        tx.commit().await?;
        Ok(Revised {
            value: contact,
            revision: Some(revision),
        })
    }

    /// Replaces the details of a contact; with `in_site`, only a contact of that site
    /// (another site's contact is not found).
    pub async fn update_contact(&self, actor: Actor, update: ContactUpdate) -> Result<Contact> {
        let ContactUpdate {
            contact_id,
            in_site,
            details,
            etag,
        } = update;
        let etag = etag.version();
        let mut tx = self.pool.begin().await?;
        let (site, before) = lock_contact(&mut tx, contact_id, in_site).await?;
        authority::require(&mut tx, actor, &site, &[Need::CONTACTS]).await?;
        check_etag(etag, before.version, "contact")?;
        // C11: a new notification e-mail is not used before its owner confirms it; a
        // cleared one falls back to the login e-mail at once.
        let change = EmailChange::of(
            details.notification_email.as_deref(),
            before.details.notification_email.as_deref(),
        );
        let stored = match change {
            EmailChange::Clear => without_requested_email(&details, None),
            EmailChange::Keep | EmailChange::Request(_) => {
                without_requested_email(&details, before.details.notification_email.clone())
            }
        };
        let contact = storage::contacts::update_details(&mut tx, contact_id, &stored).await?;
        Change {
            actor,
            site_id: site.site_id,
            action: "contact.updated",
            resource_id: contact_id,
            before: to_json(&before),
            after: to_json(&contact),
            event: events::contact_updated(actor, &site, &contact),
        }
        .record(&mut tx)
        .await?;
        let contact = match change {
            EmailChange::Keep => contact,
            EmailChange::Clear => {
                self.cleared_notification_email(&mut tx, actor, &site, &before, contact)
                    .await?
            }
            EmailChange::Request(email) => {
                self.request_notification_email(&mut tx, actor, &site, contact, Some(&email))
                    .await?
            }
        };
        tx.commit().await?;
        Ok(contact)
    }

    /// Takes a role away. Never the primary (C1), nor the STC of a site with S&S (C5). With
    /// `in_site`, only a contact of that site (another site's contact is not found).
    /// A role that implies rights is taken away only for a person, or by an operator (T6).
    pub async fn remove_contact(&self, actor: Actor, removal: Removal) -> Result<Revised<Contact>> {
        let Removal {
            contact_id,
            in_site,
            etag,
        } = removal;
        let etag = etag.version();
        let mut tx = self.pool.begin().await?;
        let (site, contact) = lock_contact(&mut tx, contact_id, in_site).await?;
        refuse_anonymous_grant(actor, contact.role)?;
        authority::require(
            &mut tx,
            actor,
            &site,
            &authority::contact_change(contact.role),
        )
        .await?;
        check_etag(etag, contact.version, "contact")?;
        match contact.role {
            ContactRole::Primary => {
                return Err(ContactsError::rule(
                    "rule C1: the primary contact cannot be removed; transfer the role with TransferPrimaryContact",
                ));
            }
            // C5 lifts at the end of S&S, to the day (support_life).
            ContactRole::SiteTechnical if support_in_force(&site, today()) => {
                return Err(ContactsError::rule(
                    "rule C5: a site with active S&S must keep its SITE_TECHNICAL contact; replace it with ReplaceContact",
                ));
            }
            _ => {}
        }
        delete_contact(&mut tx, contact_id).await?;
        let revision = Change {
            actor,
            site_id: site.site_id,
            action: "contact.removed",
            resource_id: contact_id,
            before: to_json(&contact),
            after: None,
            event: events::contact_removed(actor, &site, &contact),
        }
        .commit(tx)
        .await?;
        Ok(Revised {
            value: contact,
            revision: Some(revision),
        })
    }

    /// Gives a single-holder role to `new_user_id` in one step; the previous holder loses it.
    /// Returns the new contact and the replaced one.
    pub async fn replace_contact(
        &self,
        actor: Actor,
        replacement: Replacement,
    ) -> Result<Revised<(Contact, Option<Contact>)>> {
        let Replacement {
            site_id,
            role,
            new_user_id,
            details,
        } = replacement;
        if !role.is_replaceable() {
            return Err(ContactsError::rule(match role {
                ContactRole::Primary => {
                    "rule C8: the primary contact changes only by TransferPrimaryContact"
                }
                _ => {
                    "rule C6: only single-holder roles (ADMINISTRATIVE, SITE_TECHNICAL, RENEWAL, SHIPPING, BILLING) can be replaced"
                }
            }));
        }
        refuse_anonymous_grant(actor, role)?;
        refuse_self_assignment(actor, new_user_id, role)?;
        let mut tx = self.pool.begin().await?;
        let site = lock_site(&mut tx, site_id).await?;
        authority::require(&mut tx, actor, &site, &authority::contact_change(role)).await?;
        let replaced = storage::contacts::holders(&mut tx, site_id, role)
            .await?
            .into_iter()
            .next();
        if let Some(old) = &replaced {
            if old.user_id == new_user_id {
                return Err(ContactsError::RoleAlreadyHeld(role));
            }
            delete_contact(&mut tx, old.contact_id).await?;
        }
        let contact = storage::contacts::insert(
            &mut tx,
            site_id,
            new_user_id,
            role,
            &without_requested_email(&details, None),
        )
        .await
        .map_err(|error| insert_error(error, role))?;
        let revision = Change {
            actor,
            site_id,
            action: "contact.replaced",
            resource_id: contact.contact_id,
            before: replaced.as_ref().and_then(to_json),
            after: to_json(&contact),
            event: events::contact_replaced(actor, &site, &contact, replaced.as_ref()),
        }
        .record(&mut tx)
        .await?;
        // C11: an asked notification e-mail waits for its owner's confirmation.
        let asked = details.notification_email.as_deref();
        let contact = self
            .request_notification_email(&mut tx, actor, &site, contact, asked)
            .await?;
        tx.commit().await?;
        Ok(Revised {
            value: (contact, replaced),
            revision: Some(revision),
        })
    }

    /// Makes `new_user_id` the primary contact (C8). The old primary keeps
    /// `previous_primary_role` on the site (C6 applies to it).
    ///
    /// **Authority at commit (C8, T8).** The caller (the gateway) checked that the acting
    /// person may transfer: it is the current primary or holds account management. That
    /// check ran before this transaction, so a transfer names the state it was decided
    /// against, and this transaction, under the site's lock, commits only if that state
    /// still holds. When the request names the acting person (`x-kc-on-behalf-of`), one of
    /// the two must be true under the lock:
    /// - the person **is the current primary**: the registry's own fact, so ten concurrent
    ///   transfers by one primary commit exactly once (after the first, it is no longer the
    ///   primary and the others fail with `FailedPrecondition`); or
    /// - the request carries **the site's etag** that the caller read before its check, and
    ///   the site still has that version (else `Aborted`). This is how an account-management
    ///   holder, who is not the primary, transfers: any transfer, role change or site update
    ///   since the caller's read moves the version, so a check made against an older site
    ///   never commits. The gateway always sends it (the client's etag, or the one it read
    ///   itself before checking).
    ///
    /// An operator acting with its own token keeps the plain optional etag; a service
    /// naming nobody is refused (T6: PRIMARY implies rights). And nobody makes itself the
    /// primary (T7): an account-management holder, or an operator, transfers the role to
    /// someone else.
    pub async fn transfer_primary(
        &self,
        actor: Actor,
        transfer: Transfer,
    ) -> Result<Revised<(Site, Contact, Option<Contact>)>> {
        let mut tx = self.pool.begin().await?;
        let (site, primary, previous_primary, revision) =
            self.transfer_in(&mut tx, actor, transfer).await?;
        tx.commit().await?;
        tracing::info!(
            site_id = %site.site_id,
            resource_id = %primary.contact_id,
            action = "primary.transferred",
            "registry changed"
        );
        Ok(Revised {
            value: (site, primary, previous_primary),
            revision: Some(revision),
        })
    }

    /// The transfer of [`Self::transfer_primary`] in the caller's transaction `tx` (which
    /// also serves a recovery's attestation, C12): the same checks under the site's lock,
    /// the same writes, audit record and `primary.transferred` event. Returns the site, the
    /// new primary contact, the old primary's new contact and the event's cursor.
    pub(super) async fn transfer_in(
        &self,
        tx: &mut PgConnection,
        actor: Actor,
        transfer: Transfer,
    ) -> Result<(Site, Contact, Option<Contact>, Cursor)> {
        let Transfer {
            site_id,
            new_user_id,
            previous_primary_role,
            etag,
        } = transfer;
        let etag = etag.version();
        if previous_primary_role == ContactRole::Primary {
            return Err(ContactsError::rule(
                "rule C8: a site has exactly one primary contact; the previous primary needs another role",
            ));
        }
        // PRIMARY implies rights: a service acting for nobody may not move it (T6).
        refuse_anonymous_grant(actor, ContactRole::Primary)?;
        // A service acting for a person names it: the actor is then not the service itself.
        let names_person = actor.via_service.is_some() && !actor.is_service_alone();
        let before = lock_site(&mut *tx, site_id).await?;
        check_etag(etag, before.version, "site")?;
        let previous_user_id = before.primary_user_id;
        if previous_user_id == new_user_id {
            return Err(ContactsError::RoleAlreadyHeld(ContactRole::Primary));
        }
        if new_user_id == actor.actor_id {
            return Err(ContactsError::rule(
                "rule T7: nobody makes itself the primary contact; the current primary or another account-management holder transfers it (C8)",
            ));
        }
        if names_person && etag.is_none() && previous_user_id != actor.actor_id {
            return Err(ContactsError::rule(
                "rule C8: the acting person is no longer the primary contact of the site; an account-management holder transfers with the etag of the site it read",
            ));
        }
        // T8: someone other than the primary transfers only while it holds account
        // management, decided here under the site's lock.
        if previous_user_id != actor.actor_id {
            authority::require(&mut *tx, actor, &before, &[Need::TRANSFER]).await?;
        }
        let old_primary = storage::contacts::holders(&mut *tx, site_id, ContactRole::Primary)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| anyhow::anyhow!("site {site_id} has no primary contact"))?;
        // The primary row changes holder in place: there is never zero or two primaries.
        let primary = storage::contacts::set_holder(
            &mut *tx,
            old_primary.contact_id,
            new_user_id,
            &ContactDetails::default(),
        )
        .await?;
        let already_holds = storage::contacts::holders(&mut *tx, site_id, previous_primary_role)
            .await?
            .iter()
            .any(|c| c.user_id == previous_user_id);
        let previous_primary = if already_holds {
            None
        } else {
            Some(
                add_contact(
                    &mut *tx,
                    site_id,
                    previous_user_id,
                    previous_primary_role,
                    &old_primary.details,
                )
                .await?,
            )
        };
        storage::sites::touch(&mut *tx, site_id).await?;
        let site = storage::sites::get(&mut *tx, site_id)
            .await?
            .ok_or(ContactsError::SiteNotFound)?;
        let revision = Change {
            actor,
            site_id,
            action: "primary.transferred",
            resource_id: primary.contact_id,
            before: Some(json!({ "primary_user_id": previous_user_id })),
            after: Some(json!({
                "primary_user_id": new_user_id,
                "previous_primary_role": previous_primary_role,
            })),
            event: events::primary_transferred(
                actor,
                &site,
                previous_user_id,
                &primary,
                previous_primary.as_ref(),
            ),
        }
        .record(&mut *tx)
        .await?;
        Ok((site, primary, previous_primary, revision))
    }

    /// A page of a site's contacts with one of `roles` (all when empty): in display order,
    /// or, paging by person, every such contact of the next `size` people in user-id order
    /// (each person's by role), read in one statement from the site's index, never the
    /// whole site. With `with_people`, also what the projection of identity's users knows of
    /// the page's people (one more statement, on the page's user ids).
    pub async fn list_site_contacts(&self, listing: SiteContactsListing) -> Result<SiteContacts> {
        let SiteContactsListing {
            site_id,
            roles,
            after,
            size,
            with_people,
        } = listing;
        let mut conn = self.pool.acquire().await?;
        let numbers: Vec<i16> = roles.iter().map(|role| role.stored()).collect();
        let (page, people) = match after {
            SiteContactsAfter::Contact(after) => {
                let rows = storage::contacts::page_of_site(
                    &mut conn,
                    site_id,
                    &numbers,
                    after.map(|(role, id)| (role.stored(), id)),
                    i64::from(size) + 1,
                )
                .await?;
                let page = Page::from_rows(rows, size);
                let people = if with_people && !page.items.is_empty() {
                    let mut user_ids: Vec<Uuid> = page.items.iter().map(|c| c.user_id).collect();
                    user_ids.sort_unstable();
                    user_ids.dedup();
                    storage::compliance::known_people(&mut conn, &user_ids).await?
                } else {
                    Vec::new()
                };
                (page, people)
            }
            SiteContactsAfter::Person(after) => {
                let numbers = if numbers.is_empty() {
                    ContactRole::ALL.iter().map(|role| role.stored()).collect()
                } else {
                    numbers
                };
                // The people come with the page, in the same statement.
                let Page { items, more } =
                    storage::contacts::people_of_site(&mut conn, site_id, &numbers, after, size)
                        .await?;
                let mut people = Vec::new();
                let mut contacts = Vec::with_capacity(items.len());
                for (contact, person) in items {
                    // A person's contacts are consecutive: its person comes with the first.
                    if with_people
                        && let Some(person) = person
                        && people
                            .last()
                            .is_none_or(|last: &KnownPerson| last.user_id != person.user_id)
                    {
                        people.push(person);
                    }
                    contacts.push(contact);
                }
                let page = Page {
                    items: contacts,
                    more,
                };
                (page, people)
            }
        };
        // Every site has a primary contact, so an empty first page may mean no such site.
        if page.items.is_empty() && storage::sites::get(&mut conn, site_id).await?.is_none() {
            return Err(ContactsError::SiteNotFound);
        }
        Ok(SiteContacts {
            contacts: page,
            people,
        })
    }

    /// A page of one user's contacts, each with its site.
    pub async fn list_user_contacts(
        &self,
        listing: UserContactsListing,
    ) -> Result<Page<(Contact, Site)>> {
        let UserContactsListing {
            user_id,
            after,
            size,
        } = listing;
        read_page(&self.pool, size, async |conn, limit| {
            storage::contacts::page_of_user(conn, user_id, after, limit).await
        })
        .await
    }

    /// Who receives a notice of `purpose` on a site, and by which rule (R1, C4).
    pub async fn resolve_recipients(&self, query: RecipientsQuery) -> Result<(Site, Resolution)> {
        let RecipientsQuery { site_id, purpose } = query;
        let mut conn = self.pool.acquire().await?;
        let site = storage::sites::get(&mut conn, site_id)
            .await?
            .ok_or(ContactsError::SiteNotFound)?;
        let contacts = storage::contacts::of_site(&mut conn, site_id).await?;
        let resolution = recipients::resolve(purpose, &site, &contacts);
        Ok((site, resolution))
    }

    /// The compliance gaps of one site.
    pub async fn site_compliance(&self, site_id: Uuid) -> Result<SiteCompliance> {
        let mut conn = self.pool.acquire().await?;
        storage::compliance::of_site(&mut conn, site_id)
            .await?
            .ok_or(ContactsError::SiteNotFound)
    }

    /// A page of the sites with at least one compliance gap (of the listing's kind, of its
    /// customer, when given), in site-id order.
    pub async fn list_compliance_gaps(&self, listing: GapsListing) -> Result<Page<SiteCompliance>> {
        let GapsListing {
            kind,
            customer_number,
            after,
            size,
        } = listing;
        read_page(&self.pool, size, async |conn, limit| {
            let customer_number = customer_number.as_ref().map(|number| number.as_str());
            storage::compliance::list_with_gaps(conn, kind, customer_number, after, limit).await
        })
        .await
    }

    /// A page of a site's audit records, newest first.
    pub async fn list_audit_records(
        &self,
        site_id: Uuid,
        before: Option<i64>,
        size: u32,
    ) -> Result<Page<AuditRecord>> {
        read_page(&self.pool, size, async |conn, limit| {
            if storage::sites::get(conn, site_id).await?.is_none() {
                return Err(ContactsError::SiteNotFound);
            }
            Ok(storage::audit::page_of_site(conn, site_id, before, limit).await?)
        })
        .await
    }
}
