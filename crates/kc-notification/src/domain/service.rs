//! The operations of the notification service. Every notice is rendered when it is created
//! (subject, text, HTML in its recipient's language) and stored with its idempotency key
//! (N3) in one transaction; the workers of [`crate::delivery`] send what is stored.
//!
//! Decisions taken here:
//! - **Addresses (C9).** A contact's notification e-mail on the site when set (for a user
//!   holding several roles, that of its highest role), else the login e-mail from identity.
//! - **Languages (N1).** The recipient's locale when it is `fr` or `en` (by primary subtag),
//!   else the site's language, else `en`. The business partner's copy (C4) is in the site's
//!   language.
//! - **Disabled users** get no notices from events (they have no access to act on them).
//!   Notices from SendNotice still reach a disabled contact's address: contractual notices
//!   cannot be switched off (N2), and the registry still names the contact.
//! - **Unknown users** (identity does not know the id) get nothing, with a warning; a
//!   SendNotice recipient without a login e-mail but with a notification e-mail still gets
//!   the notice.
//! - **SendNotice idempotency (N3).** The key is recorded in the transaction that creates the
//!   notifications; of two concurrent calls with one key, the second waits for the first to
//!   commit and returns its notifications with `replayed`. A key seen before returns the
//!   first result whatever the new request says.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use kc_runtime::paging::Page;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::commands::{ListQuery, NoticeRequest, NotificationRef, PreviewRequest};
use super::language::{self, Lang};
use super::params::{self, COMMON, Params, Use};
use super::recipients::{
    self, Person, Planned, RULE_EMAIL_CHANGE_VERIFICATION, RULE_EMAIL_VERIFICATION,
    RULE_INVITATION, RULE_NOTIFICATION_EMAIL_CHANGE_REQUESTED,
    RULE_NOTIFICATION_EMAIL_VERIFICATION, RULE_PASSWORD_RESET,
};
use super::templates::Templates;
use super::{
    CallerRole, Kind, NewNotification, Notification, NotificationError, Rendered, Result, Role,
    SentNotice, Site, catalog,
};
use crate::clients::{Directory, LookupError, UserInfo};
use crate::storage::{self, notifications::Revival};

/// The service an event came from, the prefix of its source key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// Identity.
    Identity,
    /// The contact registry.
    Contacts,
    /// Access management.
    Access,
}

impl Origin {
    fn prefix(self) -> &'static str {
        match self {
            Origin::Identity => "identity",
            Origin::Contacts => "contacts",
            Origin::Access => "access",
        }
    }
}

/// The event notices are made from: `<service>:<event id>`, the source key of N3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Source(String);

impl Source {
    /// The source of the event `event_id` of `origin`.
    pub(crate) fn event(origin: Origin, event_id: &str) -> Self {
        Self(format!("{}:{event_id}", origin.prefix()))
    }

    /// The key, e.g. `access:0191…`.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

/// Why identity mailed a code; each purpose has its own mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CodePurpose {
    /// A registration: the code proves the address (I1).
    Registration,
    /// An invitation: the owner registers with the address, then claims the account with
    /// the code (I1).
    Invitation,
    /// A password reset.
    PasswordReset,
    /// A new login e-mail, to that new address.
    EmailChange,
}

impl CodePurpose {
    /// The kind of the mail that carries the code.
    pub(crate) fn kind(self) -> Kind {
        match self {
            CodePurpose::Registration => Kind::EmailVerification,
            CodePurpose::Invitation => Kind::Invitation,
            CodePurpose::PasswordReset => Kind::PasswordReset,
            CodePurpose::EmailChange => Kind::EmailChangeVerification,
        }
    }

    /// Why the address receives it.
    pub(crate) fn rule(self) -> &'static str {
        match self {
            CodePurpose::Registration => RULE_EMAIL_VERIFICATION,
            CodePurpose::Invitation => RULE_INVITATION,
            CodePurpose::PasswordReset => RULE_PASSWORD_RESET,
            CodePurpose::EmailChange => RULE_EMAIL_CHANGE_VERIFICATION,
        }
    }
}

/// A code identity asked to mail. Its `Debug` never shows the code.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Verification {
    /// The user.
    pub user_id: Uuid,
    /// Where to send the code.
    pub email: String,
    /// The user's language.
    pub locale: String,
    /// Name to greet.
    pub display_name: String,
    /// The code, opened from its sealed box.
    pub code: String,
    /// When it expires.
    pub expire_time: Option<DateTime<Utc>>,
    /// Why it was mailed.
    pub purpose: CodePurpose,
}

impl std::fmt::Debug for Verification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verification")
            .field("user_id", &self.user_id)
            .field("purpose", &self.purpose)
            .field("expire_time", &self.expire_time)
            .finish_non_exhaustive()
    }
}

/// A notice identity asked to send to an address without a code: a registration that was
/// not taken (I2, I3), a login e-mail change told to the current address.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct AddressNotice {
    /// The account the address belongs to; `None` for an address without an account (a
    /// confusable one, I3).
    pub user_id: Option<Uuid>,
    /// The address told.
    pub email: String,
    /// Its language.
    pub locale: String,
    /// Name to greet; empty when unknown.
    pub display_name: String,
    /// Which notice.
    pub kind: Kind,
    /// The kind's parameters.
    pub params: Params,
    /// Why the address receives it.
    pub rule: &'static str,
}

impl std::fmt::Debug for AddressNotice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AddressNotice")
            .field("user_id", &self.user_id)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// A change of a contact's notification e-mail the registry asked to mail (C9, C11). Its
/// `Debug` never shows the code or the addresses.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct NotificationEmailChange {
    /// The contact's user.
    pub user_id: Uuid,
    /// The contact's role.
    pub role: Role,
    /// The address waiting for confirmation; `None` when the notification e-mail was
    /// cleared.
    pub requested_email: Option<String>,
    /// The code that proves it, opened from its sealed box; `None` when the registry
    /// already withdrew it (or there is none).
    pub code: Option<String>,
    /// When the code expires.
    pub expire_time: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for NotificationEmailChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotificationEmailChange")
            .field("user_id", &self.user_id)
            .field("role", &self.role)
            .field("expire_time", &self.expire_time)
            .finish_non_exhaustive()
    }
}

/// The notification service over its schema, its templates and the services it asks.
#[derive(Clone, Debug)]
pub(crate) struct Notifier {
    pool: PgPool,
    directory: Directory,
    templates: Templates,
}

fn lookup_error(error: LookupError) -> NotificationError {
    match error {
        LookupError::SiteNotFound => NotificationError::SiteNotFound,
        LookupError::Unavailable(message) => NotificationError::Unavailable(message),
        LookupError::Failed(message) => NotificationError::Internal(anyhow::anyhow!(message)),
    }
}

/// The common parameters of a notice to `recipient_name` about `site`.
fn with_common(mut params: Params, site: Option<&Site>, recipient_name: &str) -> Params {
    if let Some(site) = site {
        params.insert("site_name".into(), site.name.clone());
        params.insert("site_number".into(), site.site_number.clone());
    }
    params.insert("recipient_name".into(), recipient_name.to_owned());
    params
}

impl Notifier {
    /// The service over `pool`, asking `directory`, rendering with `templates`.
    pub(crate) fn new(pool: PgPool, directory: Directory, templates: Templates) -> Self {
        Self {
            pool,
            directory,
            templates,
        }
    }

    /// Sends a notice from a caller to the recipients the registry resolves (R1), plus the
    /// business partner for proofs of entitlement (C4), once per idempotency key (N3).
    pub(crate) async fn send_notice(&self, request: NoticeRequest) -> Result<SentNotice> {
        if !request.kind.is_notice() {
            return Err(NotificationError::Invalid(vec![
                kc_runtime::Violation::new(
                    "kind",
                    "must be one of NOTICE_KIND_CONTRACT_CHANGE to NOTICE_KIND_TECHNICAL",
                ),
            ]));
        }
        params::validate(request.kind, &request.params, Use::Send)
            .map_err(NotificationError::Invalid)?;
        let key = request.idempotency_key.as_str();
        {
            let mut conn = self.pool.acquire().await?;
            if storage::notices::exists(&mut conn, key).await? {
                let notifications =
                    storage::notifications::of_idempotency_key(&mut conn, key).await?;
                return Ok(SentNotice {
                    notifications,
                    replayed: true,
                });
            }
        }
        let purpose = request.kind.purpose().ok_or_else(|| {
            NotificationError::Internal(anyhow::anyhow!("notice kind without a purpose"))
        })?;
        let resolution = self
            .directory
            .resolve_recipients(request.site_id, purpose)
            .await
            .map_err(lookup_error)?;
        let mut site = match storage::sites::get(&self.pool, request.site_id).await? {
            Some(site) => site,
            None => self
                .directory
                .site(request.site_id)
                .await
                .map_err(lookup_error)?
                .ok_or(NotificationError::SiteNotFound)?,
        };
        if !resolution.site_language.trim().is_empty() {
            site.language = resolution.site_language.clone();
        }
        let mut seen = HashSet::new();
        let recipients: Vec<_> = resolution
            .recipients
            .iter()
            .filter(|recipient| seen.insert(recipient.user_id))
            .collect();
        let user_ids: Vec<Uuid> = recipients.iter().map(|r| r.user_id).collect();
        let users = self
            .directory
            .users(&user_ids)
            .await
            .map_err(lookup_error)?;
        let source_key = format!("notice:{key}");
        let mut new = Vec::with_capacity(recipients.len() + 1);
        for recipient in recipients {
            let user = users.get(&recipient.user_id);
            let email = recipient
                .notification_email
                .clone()
                .or_else(|| user.map(|u| u.email.clone()).filter(|e| !e.is_empty()));
            let Some(email) = email else {
                tracing::warn!(
                    user_id = %recipient.user_id,
                    site_id = %request.site_id,
                    "recipient without any e-mail address; skipped"
                );
                continue;
            };
            let lang = language::choose(user.map(|u| u.locale.as_str()), Some(&site.language));
            let name = user.map(|u| u.display_name.as_str()).unwrap_or_default();
            let params = with_common(request.params.clone(), Some(&site), name);
            new.push(NewNotification {
                notification_id: Uuid::now_v7(),
                source_key: source_key.clone(),
                recipient_key: recipient.user_id.to_string(),
                kind: request.kind,
                site_id: Some(request.site_id),
                recipient_user_id: Some(recipient.user_id),
                email,
                locale: lang,
                rendered: self.templates.render(request.kind, lang, &params)?,
                rule: recipient.rule.clone(),
                source_event_id: String::new(),
                idempotency_key: Some(key.to_owned()),
                code_expire_time: None,
            });
        }
        if let Some((email, rule)) = &resolution.business_partner {
            // C4: the partner's copy, in the site's language (N1: it has no locale).
            let lang = language::choose(None, Some(&site.language));
            let params = with_common(request.params.clone(), Some(&site), "");
            new.push(NewNotification {
                notification_id: Uuid::now_v7(),
                source_key: source_key.clone(),
                recipient_key: format!("partner:{}", email.to_lowercase()),
                kind: request.kind,
                site_id: Some(request.site_id),
                recipient_user_id: None,
                email: email.clone(),
                locale: lang,
                rendered: self.templates.render(request.kind, lang, &params)?,
                rule: rule.clone(),
                source_event_id: String::new(),
                idempotency_key: Some(key.to_owned()),
                code_expire_time: None,
            });
        }
        let mut tx = self.pool.begin().await?;
        if !storage::notices::record(&mut tx, key, request.site_id, request.kind).await? {
            // Another call with this key committed first: its result is the answer.
            let notifications = storage::notifications::of_idempotency_key(&mut tx, key).await?;
            tx.rollback().await?;
            return Ok(SentNotice {
                notifications,
                replayed: true,
            });
        }
        let notifications = storage::notifications::insert(&mut tx, &new).await?;
        tx.commit().await?;
        tracing::debug!(
            site_id = %request.site_id,
            kind = request.kind.number(),
            notifications = notifications.len(),
            "notice created"
        );
        Ok(SentNotice {
            notifications,
            replayed: false,
        })
    }

    /// One notification with its attempts.
    pub(crate) async fn get(&self, target: NotificationRef) -> Result<Notification> {
        storage::notifications::get(&self.pool, target.notification_id)
            .await?
            .ok_or(NotificationError::NotificationNotFound)
    }

    /// A page of notifications, newest first, after the query's `before` (the creation time
    /// and id of the last one of the previous page).
    pub(crate) async fn list(&self, query: ListQuery) -> Result<Page<Notification>> {
        let ListQuery {
            filter,
            before,
            page_size: size,
        } = query;
        let rows = storage::notifications::list(&self.pool, &filter, before, size + 1).await?;
        Ok(Page::from_rows(rows, size))
    }

    /// Puts a DEAD notification back to PENDING for a new round of attempts. Operators only.
    ///
    /// A mail carrying a one-time code (rules I1, I2) is redacted in the transaction that
    /// makes it DEAD (issue: secrets at rest): this service no longer holds its code, and
    /// sending it again would mail a message without one. Such a retry is refused with
    /// FAILED_PRECONDITION ([`NotificationError::CodeWithdrawn`]) rather than re-rendered
    /// with another code: only identity issues codes, and the user gets a fresh one from it
    /// (registering again, RequestPasswordReset, a new invitation or e-mail change).
    pub(crate) async fn retry(
        &self,
        caller: CallerRole,
        target: NotificationRef,
    ) -> Result<Notification> {
        caller.require_operator()?;
        let notification_id = target.notification_id;
        let mut tx = self.pool.begin().await?;
        let revived = storage::notifications::revive(&mut tx, notification_id).await?;
        match revived {
            Revival::Revived(notification) => {
                tx.commit().await?;
                tracing::info!(notification_id = %notification_id, "notification revived");
                Ok(*notification)
            }
            Revival::NotDead(state) => Err(NotificationError::NotRetryable(state)),
            Revival::CodeWithdrawn => Err(NotificationError::CodeWithdrawn),
            Revival::NotFound => Err(NotificationError::NotificationNotFound),
        }
    }

    /// Renders `kind` as a recipient speaking `locale` would read it (N1: anything but
    /// `fr` and `en` falls back to `en`), with sample values for the common parameters
    /// not given.
    pub(crate) fn preview(&self, request: PreviewRequest) -> Result<(Lang, Rendered)> {
        let PreviewRequest {
            kind,
            locale,
            params,
        } = &request;
        let kind = *kind;
        params::validate(kind, params, Use::Preview).map_err(NotificationError::Invalid)?;
        let lang = Lang::of_tag(locale).unwrap_or(Lang::En);
        let mut params = params.clone();
        for key in COMMON {
            params
                .entry(key.to_owned())
                .or_insert_with(|| catalog::sample(key, lang).to_owned());
        }
        Ok((lang, self.templates.render(kind, lang, &params)?))
    }

    /// Adds to `out` the notices of an event about `site` for the `plans`, to be inserted in
    /// the caller's transaction (the consumer's, with its cursor), reading the contacts'
    /// notification e-mails through `conn`. `users` holds
    /// what identity said of the users the event names (looked up before the transaction,
    /// so that no remote call runs inside it); a recipient missing from it is unknown to
    /// identity and gets nothing.
    pub(crate) async fn notify_users(
        &self,
        conn: &mut PgConnection,
        out: &mut Vec<NewNotification>,
        source: &Source,
        site: &Site,
        plans: Vec<Planned>,
        users: &HashMap<Uuid, UserInfo>,
    ) -> anyhow::Result<()> {
        let plans = recipients::dedupe(plans);
        if plans.is_empty() {
            return Ok(());
        }
        let recipient_ids: Vec<Uuid> = plans.iter().map(|plan| plan.user_id).collect();
        let addresses =
            storage::sites::notification_emails(&mut *conn, site.site_id, &recipient_ids).await?;
        let person = |user: Uuid| -> Option<Person> {
            users.get(&user).map(|u: &UserInfo| Person {
                name: u.display_name.clone(),
                email: u.email.clone(),
            })
        };
        for plan in plans {
            let Some(user) = users.get(&plan.user_id) else {
                tracing::warn!(
                    user_id = %plan.user_id,
                    source = source.as_str(),
                    "recipient unknown to identity; no notice"
                );
                continue;
            };
            if user.disabled {
                tracing::debug!(user_id = %plan.user_id, "recipient disabled; no notice");
                continue;
            }
            let email = addresses
                .get(&plan.user_id)
                .cloned()
                .unwrap_or_else(|| user.email.clone());
            if email.is_empty() {
                tracing::warn!(user_id = %plan.user_id, "recipient without an e-mail; no notice");
                continue;
            }
            let lang = language::choose(Some(&user.locale), Some(&site.language));
            let params = with_common(
                plan.facts.params(lang, &person),
                Some(site),
                &user.display_name,
            );
            out.push(NewNotification {
                notification_id: Uuid::now_v7(),
                source_key: source.as_str().to_owned(),
                recipient_key: plan.user_id.to_string(),
                kind: plan.kind,
                site_id: Some(site.site_id),
                recipient_user_id: Some(plan.user_id),
                email,
                locale: lang,
                rendered: self.templates.render(plan.kind, lang, &params)?,
                rule: plan.rule.to_owned(),
                source_event_id: source.as_str().to_owned(),
                idempotency_key: None,
                code_expire_time: None,
            });
        }
        Ok(())
    }

    /// Adds to `out` the mail that carries a code identity asked for (its kind by purpose).
    /// The address and language come with the event; a code that already expired sends
    /// nothing.
    pub(crate) fn notify_verification(
        &self,
        out: &mut Vec<NewNotification>,
        source: &Source,
        verification: &Verification,
    ) -> anyhow::Result<()> {
        if verification
            .expire_time
            .is_some_and(|expire_time| expire_time <= Utc::now())
        {
            // A code that expired is useless: replaying an old stream sends nothing.
            tracing::debug!(
                user_id = %verification.user_id,
                "code already expired; no mail"
            );
            return Ok(());
        }
        let lang = language::choose(Some(&verification.locale), None);
        let mut params = Params::new();
        params.insert("code".into(), verification.code.clone());
        params.insert(
            "expire_time".into(),
            verification
                .expire_time
                .map(|time| catalog::time_text(time, lang))
                .unwrap_or_default(),
        );
        // issue: secrets at rest: the mail keeps the code's expiry, past which the sweep
        // empties what it stored of the mail.
        self.address_notice(
            out,
            source,
            &AddressNotice {
                user_id: Some(verification.user_id),
                email: verification.email.clone(),
                locale: verification.locale.clone(),
                display_name: verification.display_name.clone(),
                kind: verification.purpose.kind(),
                params,
                rule: verification.purpose.rule(),
            },
            verification.expire_time,
        )
    }

    /// Adds to `out` the mails of a change of a contact's notification e-mail (C11): the code to the address asked for, its only mail before it is
    /// confirmed (none when the code is withdrawn or expired), and a notice to the contact's
    /// LOGIN e-mail naming the new address (or saying it was cleared). `user` is what
    /// identity said of the contact's user; without it nobody is told (logged).
    pub(crate) fn notify_notification_email_change(
        &self,
        out: &mut Vec<NewNotification>,
        source: &Source,
        site: &Site,
        change: &NotificationEmailChange,
        user: Option<&UserInfo>,
    ) -> anyhow::Result<()> {
        let Some(user) = user else {
            tracing::warn!(
                user_id = %change.user_id,
                source = source.as_str(),
                "notification e-mail change of a user unknown to identity; no mail"
            );
            return Ok(());
        };
        let lang = language::choose(Some(&user.locale), Some(&site.language));
        let role = catalog::role_name(change.role, lang).to_owned();
        // One mail of the change to the contact's user, at `email`, in its language.
        let mail = |kind: Kind,
                    email: &str,
                    params: Params,
                    rule: &str,
                    code_expire_time: Option<DateTime<Utc>>|
         -> anyhow::Result<NewNotification> {
            let params = with_common(params, Some(site), &user.display_name);
            Ok(NewNotification {
                notification_id: Uuid::now_v7(),
                source_key: source.as_str().to_owned(),
                recipient_key: change.user_id.to_string(),
                kind,
                site_id: Some(site.site_id),
                recipient_user_id: Some(change.user_id),
                email: email.trim().to_owned(),
                locale: lang,
                rendered: self.templates.render(kind, lang, &params)?,
                rule: rule.to_owned(),
                source_event_id: source.as_str().to_owned(),
                idempotency_key: None,
                code_expire_time,
            })
        };
        let live_code = change.code.as_ref().filter(|_| {
            change
                .expire_time
                .is_none_or(|expire_time| expire_time > Utc::now())
        });
        if let (Some(email), Some(code)) = (&change.requested_email, live_code) {
            let mut params = Params::new();
            params.insert("code".into(), code.clone());
            params.insert(
                "expire_time".into(),
                change
                    .expire_time
                    .map(|time| catalog::time_text(time, lang))
                    .unwrap_or_default(),
            );
            params.insert("role".into(), role.clone());
            out.push(mail(
                Kind::NotificationEmailVerification,
                email,
                params,
                RULE_NOTIFICATION_EMAIL_VERIFICATION,
                // issue: secrets at rest: emptied once delivered, given up or expired.
                change.expire_time,
            )?);
        }
        if user.email.trim().is_empty() {
            tracing::warn!(
                user_id = %change.user_id,
                "contact without a login e-mail; its notification e-mail change is not told"
            );
        } else {
            let mut params = Params::new();
            params.insert(
                "new_email".into(),
                change.requested_email.clone().unwrap_or_default(),
            );
            params.insert("role".into(), role);
            out.push(mail(
                Kind::NotificationEmailChangeRequested,
                // C11: the LOGIN e-mail, never the notification e-mail in question.
                &user.email,
                params,
                RULE_NOTIFICATION_EMAIL_CHANGE_REQUESTED,
                None,
            )?);
        }
        Ok(())
    }

    /// Adds to `out` a notice to one address identity named: one per event, address and kind
    /// (N3: a replayed event creates nothing new). The recipient is the account when there
    /// is one, else the address itself.
    pub(crate) fn notify_address(
        &self,
        out: &mut Vec<NewNotification>,
        source: &Source,
        notice: &AddressNotice,
    ) -> anyhow::Result<()> {
        self.address_notice(out, source, notice, None)
    }

    /// [`Notifier::notify_address`], with the expiry of the code the notice carries.
    fn address_notice(
        &self,
        out: &mut Vec<NewNotification>,
        source: &Source,
        notice: &AddressNotice,
        code_expire_time: Option<DateTime<Utc>>,
    ) -> anyhow::Result<()> {
        let email = notice.email.trim();
        if email.is_empty() {
            tracing::warn!(
                user_id = ?notice.user_id,
                kind = notice.kind.number(),
                source = source.as_str(),
                "identity notice without an address; no mail"
            );
            return Ok(());
        }
        let lang = language::choose(Some(&notice.locale), None);
        let params = with_common(notice.params.clone(), None, &notice.display_name);
        let recipient_key = match notice.user_id {
            Some(user_id) => user_id.to_string(),
            None => format!("address:{}", email.to_lowercase()),
        };
        out.push(NewNotification {
            notification_id: Uuid::now_v7(),
            source_key: source.as_str().to_owned(),
            recipient_key,
            kind: notice.kind,
            site_id: None,
            recipient_user_id: notice.user_id,
            email: email.to_owned(),
            locale: lang,
            rendered: self.templates.render(notice.kind, lang, &params)?,
            rule: notice.rule.to_owned(),
            source_event_id: source.as_str().to_owned(),
            idempotency_key: None,
            code_expire_time,
        });
        Ok(())
    }
}
