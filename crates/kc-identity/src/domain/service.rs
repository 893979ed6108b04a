//! The identity use cases, each one transaction, each deciding who may do what.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use kc_runtime::Caller;
use kc_runtime::db::{DbErrorKind, classify};
use kc_runtime::outbox::Revised;
use kc_runtime::token::{self, CallerKind, Claims};
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::codes::{Code, CodeKeys, Purpose};
use super::commands::{
    ClientCredentials, Credentials, EmailChange, EmailChangeProof, EmailProof, Invitation,
    PasswordChange, PasswordReset, PresentedRefreshToken, Registration, ResetRequest, UserBatch,
    UserDraft, UserLookup, UserRef, UserUpdate,
};
use super::keys::KeyRing;
use super::password::PasswordHasher;
use super::settings::Secrets;
use super::settings::Settings;
use super::values::{DisplayName, Email, Locale, Password, Scopes, email_skeleton};
use super::{
    AccessToken, IdentityError, PublicKey, Result, Revocation, SessionTokens, User, UserKind,
    UserState,
};
use crate::events;
use crate::storage::verifications::{NewCode, Outstanding, PendingClaim};
use crate::storage::{self, users::NewUser};

/// Longest e-mail address (RFC 5321).
const MAX_EMAIL_BYTES: usize = 254;
/// Wrong tries that withdraw one short code.
const MAX_CODE_ATTEMPTS: i32 = 5;
/// Wrong codes per address, across codes, that lock the address's claims.
pub const MAX_ADDRESS_CODE_FAILURES: i32 = 20;
/// The window in which those failures count.
const ADDRESS_FAILURE_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// How long such a lock lasts (codes mailed meanwhile are long).
const ADDRESS_LOCK: Duration = Duration::from_secs(24 * 3600);
/// How long a sign-in waits for a slot held by attempts in flight before giving up.
const SIGN_IN_SLOT_WAIT: Duration = Duration::from_secs(10);
/// Pause between two looks for a free sign-in slot.
const SIGN_IN_SLOT_POLL: Duration = Duration::from_millis(15);
/// Margin added to the access-token lifetime before a revocation is forgotten (clock skew
/// and the verifiers' leeway).
const REVOCATION_LEEWAY: Duration = Duration::from_secs(60);
/// Expired codes removed per sweep transaction.
const SWEEP_BATCH: i64 = 500;

/// Whether a new request for a code may replace the outstanding one (see
/// [`Identity::mail_code`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mailing {
    /// Keep an outstanding code and mail it again (requests anyone can make).
    KeepOutstanding,
    /// Always a fresh code (invitations by operators and services).
    Replace,
    /// The first code of an account created in the same transaction: it has no code to
    /// replace, so none is looked for (one statement less an invitation).
    NewAccount,
}

/// The identity service's domain: users, credentials, sessions and keys.
#[derive(Clone, Debug)]
pub struct Identity {
    pool: PgPool,
    hasher: PasswordHasher,
    keys: KeyRing,
    settings: Settings,
    codes: CodeKeys,
}

/// Whether an outstanding code still works: unexpired, and long when its address is
/// `locked` (short codes of a locked address are refused).
fn still_works(outstanding: &Outstanding, locked: bool) -> bool {
    outstanding.expire_time > Utc::now() && (!locked || outstanding.long_code)
}

impl Identity {
    /// The domain on `pool`, protecting codes with the keys of `secrets`.
    pub fn new(
        pool: PgPool,
        hasher: PasswordHasher,
        keys: KeyRing,
        settings: Settings,
        secrets: &Secrets,
    ) -> Self {
        Self {
            pool,
            hasher,
            keys,
            settings,
            codes: CodeKeys::new(secrets),
        }
    }

    /// The key ring (also the verifier's key source).
    pub fn keys(&self) -> &KeyRing {
        &self.keys
    }

    /// Registers a customer (rule I2: the outcome is never told to the caller, and every
    /// branch costs the same: the password is hashed first, then one transaction).
    ///
    /// - free address: an unproven (invited) account is created and the claim (password,
    ///   display name, locale) waits beside a REGISTRATION code mailed to the address;
    /// - unproven account: the new claim replaces any earlier one, with a new code; the
    ///   account itself does not change (rule I1);
    /// - proven account (active or disabled): nothing changes; the address is told
    ///   (RegistrationAttempted, ADDRESS_TAKEN);
    /// - an address that looks like a proven account's (rule I3): nothing is created; the
    ///   address is told (RegistrationAttempted, ADDRESS_CONFUSABLE).
    pub async fn register(&self, registration: Registration) -> Result<()> {
        let password_hash = self.hasher.hash(&registration.password).await?;
        let email = registration.email.as_str();
        let skeleton = email_skeleton(email);
        let mut tx = self.pool.begin().await?;
        if storage::users::find_confusable(&mut tx, &skeleton, email)
            .await?
            .is_some()
        {
            events::append(
                &mut tx,
                &events::registration_confusable(email, registration.locale.as_str()),
            )
            .await?;
            tx.commit().await?;
            tracing::info!("registration of a confusable address refused (rule I3)");
            return Ok(());
        }
        let inserted = storage::users::insert_if_absent(
            &mut tx,
            &NewUser {
                user_id: Uuid::now_v7(),
                email,
                email_verified: false,
                // Nothing a claimant typed is stored on the account before the proof.
                display_name: local_part(email),
                locale: registration.locale.as_str(),
                kind: UserKind::Customer,
                state: UserState::Invited,
                password_hash: None,
                email_skeleton: &skeleton,
            },
        )
        .await?;
        let account = match inserted {
            Some(user) => {
                events::append(&mut tx, &events::registered(&user)).await?;
                user
            }
            // Taken (a concurrent insert has committed by now): lock its user, so that
            // claims, proofs and state changes of one user run one at a time.
            None => storage::users::find_by_email_for_update(&mut tx, email)
                .await?
                .ok_or(IdentityError::EmailTaken)?,
        };
        if account.state == UserState::Invited {
            let claim = PendingClaim {
                password_hash,
                display_name: registration.display_name.as_str().to_owned(),
                locale: registration.locale.as_str().to_owned(),
            };
            self.mail_code(
                &mut tx,
                &account,
                email,
                Purpose::Registration,
                Some(&claim),
                Mailing::KeepOutstanding,
            )
            .await?;
            tracing::info!(user_id = %account.user_id, "registration claim awaits the proof of the address");
        } else {
            events::append(&mut tx, &events::registration_taken(&account)).await?;
            tracing::info!(user_id = %account.user_id, "registration of a proven address refused; the address is told");
        }
        tx.commit().await?;
        Ok(())
    }

    /// Creates a user for an operator or a service. It is invited (unproven, rule I1) and
    /// mailed an invitation code; an address with an account is `EmailTaken`, one that looks
    /// like a proven account's is refused (rule I3).
    pub async fn create_user(&self, caller: &Caller, draft: UserDraft) -> Result<User> {
        require_privileged(caller)?;
        if draft.kind == UserKind::Operator && !caller.is_operator() {
            return Err(IdentityError::Forbidden(
                "only operators may create operators",
            ));
        }
        let email = draft.email.as_str();
        let skeleton = email_skeleton(email);
        let mut tx = self.pool.begin().await?;
        refuse_confusable(&mut tx, &skeleton, email).await?;
        let user = storage::users::insert(
            &mut tx,
            &NewUser {
                user_id: Uuid::now_v7(),
                email,
                email_verified: false,
                display_name: draft.display_name.as_str(),
                locale: draft.locale.as_str(),
                kind: draft.kind,
                state: UserState::Invited,
                password_hash: None,
                email_skeleton: &skeleton,
            },
        )
        .await
        .map_err(|error| match classify(&error) {
            DbErrorKind::UniqueViolation => IdentityError::EmailTaken,
            _ => error.into(),
        })?;
        self.announce_invited(&mut tx, &user, email).await?;
        tx.commit().await?;
        tracing::info!(user_id = %user.user_id, kind = user.kind.as_str(), "user invited");
        Ok(user)
    }

    /// Finds the account that owns an address, or invites the address (rule I1); returns
    /// the account and whether it was invited. A proven (or disabled) account is returned
    /// as is. An unproven account has its pending claim discarded, takes the inviter's name
    /// and language when given, and is mailed a fresh invitation code, unless an invitation
    /// that nobody claimed went out within the mail interval: then it is kept as it is and
    /// this call invites nobody. An address without an account gets an unproven account and
    /// an invitation code. An address that looks like another proven account's is refused
    /// (rule I3).
    pub async fn invite_user(
        &self,
        caller: &Caller,
        invitation: Invitation,
    ) -> Result<(User, bool)> {
        let Invitation {
            email,
            display_name,
            locale,
        } = invitation;
        require_privileged(caller)?;
        let address = email.as_str();
        let skeleton = email_skeleton(address);
        let mut tx = self.pool.begin().await?;
        let mut existing = storage::users::find_by_email_for_update(&mut tx, address).await?;
        if existing.is_none() {
            refuse_confusable(&mut tx, &skeleton, address).await?;
            let Some(name) = &display_name else {
                return Err(kc_runtime::Violation::new(
                    "display_name",
                    "display name is required to invite an address that has no account",
                )
                .into());
            };
            let inserted = storage::users::insert_if_absent(
                &mut tx,
                &NewUser {
                    user_id: Uuid::now_v7(),
                    email: address,
                    email_verified: false,
                    display_name: name.as_str(),
                    locale: locale.as_ref().map_or("en", Locale::as_str),
                    kind: UserKind::Customer,
                    state: UserState::Invited,
                    password_hash: None,
                    email_skeleton: &skeleton,
                },
            )
            .await?;
            if let Some(user) = inserted {
                self.announce_invited(&mut tx, &user, address).await?;
                tx.commit().await?;
                tracing::info!(user_id = %user.user_id, "address invited");
                return Ok((user, true));
            }
            // A concurrent invitation or registration created it: treat it as existing.
            existing = storage::users::find_by_email_for_update(&mut tx, address).await?;
        }
        let user = existing.ok_or(IdentityError::EmailTaken)?;
        if user.state != UserState::Invited {
            tx.commit().await?;
            return Ok((user, false));
        }
        refuse_confusable(&mut tx, &skeleton, address).await?;
        if self.invitation_outstanding(&mut tx, &user, address).await? {
            tx.commit().await?;
            tracing::info!(user_id = %user.user_id, "invitation outstanding and mailed within the mail interval; kept, not mailed again");
            return Ok((user, false));
        }
        // Whatever a stranger set before the proof goes: the claim (replaced by a code
        // without claim) and the name it may have given.
        let user = storage::users::reinvite(
            &mut tx,
            user.user_id,
            display_name.as_ref().map(DisplayName::as_str),
            locale.as_ref().map(Locale::as_str),
        )
        .await?;
        events::append(&mut tx, &events::updated(&user)).await?;
        self.mail_code(
            &mut tx,
            &user,
            address,
            Purpose::Invitation,
            None,
            Mailing::Replace,
        )
        .await?;
        tx.commit().await?;
        tracing::info!(user_id = %user.user_id, "unproven account invited again; pending claim discarded");
        Ok((user, true))
    }

    /// BatchInviteUsers: each invitation answered as [`Identity::invite_user`] would answer
    /// it alone, in order. The invitations of addresses that have no account and look like
    /// no proven account's (rule I3), given with a display name, are applied together in one
    /// transaction, as `invite_user` applies such an invitation: the unproven account, its
    /// `user.registered` event and its invitation code (rule I1). Every other invitation
    /// (an existing or look-alike address, an address already in the batch, a missing
    /// name) and any whose account another call created meanwhile then goes through
    /// `invite_user` alone: those of one address one after the other in the batch's order,
    /// different addresses at once. A batch that runs past its caller's deadline still
    /// commits what it did, like a single call whose answer was lost: invitations are
    /// idempotent (the next one finds the account and its outstanding code).
    pub async fn invite_users(
        &self,
        caller: &Caller,
        invitations: Vec<Invitation>,
    ) -> Result<Vec<Result<(User, bool)>>> {
        require_privileged(caller)?;
        // Only the first invitation of an address may go together with the others (a later
        // one must see it done, as in order), and only when it names the person.
        let mut addresses = HashSet::new();
        let mut fresh: Vec<(usize, &Invitation)> = invitations
            .iter()
            .enumerate()
            .filter(|(_, invitation)| addresses.insert(invitation.email.as_str()))
            .filter(|(_, invitation)| invitation.display_name.is_some())
            .collect();
        // In address order, so that batches racing on the same addresses insert them in one
        // order and never wait on each other in a cycle.
        fresh.sort_by(|(_, a), (_, b)| a.email.as_str().cmp(b.email.as_str()));
        let mut invited = self.invite_new_addresses(&fresh).await?;
        // The others one by one, as InviteUser; those of one address in the batch's order,
        // different addresses at once.
        let mut slots: Vec<Option<Result<(User, bool)>>> = Vec::with_capacity(invitations.len());
        let mut by_address: HashMap<String, Vec<(usize, Invitation)>> = HashMap::new();
        for (index, invitation) in invitations.into_iter().enumerate() {
            match invited.remove(&index) {
                Some(user) => slots.push(Some(Ok((user, true)))),
                None => {
                    slots.push(None);
                    by_address
                        .entry(invitation.email.as_str().to_owned())
                        .or_default()
                        .push((index, invitation));
                }
            }
        }
        let alone = by_address.into_values().map(|group| async move {
            let mut answers = Vec::with_capacity(group.len());
            for (index, invitation) in group {
                answers.push((index, self.invite_user(caller, invitation).await));
            }
            answers
        });
        for (index, answer) in futures::future::join_all(alone).await.into_iter().flatten() {
            slots[index] = Some(answer);
        }
        slots
            .into_iter()
            .map(|slot| slot.ok_or_else(|| anyhow::anyhow!("an invitation went unanswered")))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(IdentityError::from)
    }

    /// Invites, in one transaction, those of `invitations` (by their index in the batch,
    /// each with a display name, no address twice) whose address is free: no account has
    /// it and it looks like no proven account's. Returns the new accounts by index.
    async fn invite_new_addresses(
        &self,
        invitations: &[(usize, &Invitation)],
    ) -> Result<HashMap<usize, User>> {
        if invitations.is_empty() {
            return Ok(HashMap::new());
        }
        let emails: Vec<&str> = invitations
            .iter()
            .map(|(_, invitation)| invitation.email.as_str())
            .collect();
        let skeletons: Vec<String> = emails.iter().map(|email| email_skeleton(email)).collect();
        let skeleton_refs: Vec<&str> = skeletons.iter().map(String::as_str).collect();
        let mut tx = self.pool.begin().await?;
        let taken = storage::users::not_free(&mut tx, &emails, &skeleton_refs).await?;
        let new_users: Vec<NewUser<'_>> = invitations
            .iter()
            .zip(&skeletons)
            .filter(|((_, invitation), _)| !taken.contains(invitation.email.as_str()))
            .filter_map(|((_, invitation), skeleton)| {
                Some(NewUser {
                    user_id: Uuid::now_v7(),
                    email: invitation.email.as_str(),
                    email_verified: false,
                    display_name: invitation.display_name.as_ref()?.as_str(),
                    locale: invitation.locale.as_ref().map_or("en", Locale::as_str),
                    kind: UserKind::Customer,
                    state: UserState::Invited,
                    password_hash: None,
                    email_skeleton: skeleton,
                })
            })
            .collect();
        if new_users.is_empty() {
            return Ok(HashMap::new());
        }
        let users = storage::users::insert_all_if_absent(&mut tx, &new_users).await?;
        let addresses: Vec<&str> = users.iter().map(|user| user.email.as_str()).collect();
        let locked = storage::code_attempts::locked_among(&mut tx, &addresses).await?;
        let expire_time = Utc::now() + self.settings.verification_code_ttl;
        let mut announced = Vec::with_capacity(2 * users.len());
        let mut macs = Vec::with_capacity(users.len());
        for user in &users {
            let code = Code::generate(locked.contains(&user.email))?;
            announced.push(events::registered(user));
            announced.push(events::verification_requested(
                user,
                &user.email,
                self.codes.seal(&code)?,
                expire_time,
                Purpose::Invitation,
            ));
            macs.push(self.codes.mac(user.user_id, &user.email, code.expose()));
        }
        let event_ids = events::append_all(&mut tx, &announced).await?;
        let codes: Vec<NewCode<'_>> = users
            .iter()
            .zip(&macs)
            .zip(event_ids.chunks(2))
            .map(|((user, mac), ids)| NewCode {
                user_id: user.user_id,
                email: &user.email,
                purpose: Purpose::Invitation,
                code_mac: mac,
                long_code: locked.contains(&user.email),
                expire_time,
                claim: None,
                outbox_event_id: ids[1],
            })
            .collect();
        storage::verifications::insert_all(&mut tx, &codes).await?;
        tx.commit().await?;
        tracing::info!(invited = users.len(), "addresses invited together");
        let index_of: HashMap<&str, usize> = invitations
            .iter()
            .map(|(index, invitation)| (invitation.email.as_str(), *index))
            .collect();
        Ok(users
            .into_iter()
            .filter_map(|user| Some((*index_of.get(user.email.as_str())?, user)))
            .collect())
    }

    /// Whether unproven `user` holds a code for `email` that still works, confirms nobody's
    /// claim and was mailed within the mail interval: an invitation repeated or racing
    /// another (several sites adding the same new person at once) keeps it, so the person
    /// gets one code and one mail, and this call invites nobody.
    async fn invitation_outstanding(
        &self,
        conn: &mut PgConnection,
        user: &User,
        email: &str,
    ) -> Result<bool> {
        let Some(outstanding) =
            storage::verifications::get_for_update(conn, user.user_id, email).await?
        else {
            return Ok(false);
        };
        let locked = storage::code_attempts::is_locked(conn, email).await?;
        if outstanding.claim.is_some() || !still_works(&outstanding, locked) {
            return Ok(false);
        }
        Ok(storage::verifications::mailed_within(
            conn,
            email,
            self.settings.code_mail_interval.as_secs_f64(),
        )
        .await?)
    }

    /// Records `user`, invited and created in the caller's transaction (a registered event),
    /// and mails it its first invitation code for `email`.
    async fn announce_invited(
        &self,
        conn: &mut PgConnection,
        user: &User,
        email: &str,
    ) -> Result<()> {
        events::append(conn, &events::registered(user)).await?;
        self.mail_code(
            conn,
            user,
            email,
            Purpose::Invitation,
            None,
            Mailing::NewAccount,
        )
        .await
    }

    /// Mails a code to `email` for `user`: the code is kept only as its MAC and leaves
    /// sealed to notification's key. Long while the address is locked.
    ///
    /// With [`Mailing::KeepOutstanding`] (requests anyone can make: RegisterUser,
    /// RequestPasswordReset, ChangeEmail), an outstanding code of the user for the address
    /// is NOT replaced, so that nobody can keep the owner from using the code it holds by
    /// asking again and again: the same code is mailed again (a new outbox event carrying a
    /// copy of its sealed form, with the new purpose), at most once per `--code-mail-interval` (a
    /// minute) per address (otherwise nothing is mailed; the caller's answer is the same). A registration
    /// `claim` replaces the code's pending claim (the last claim wins; the owner can always
    /// use the code with ResetPassword instead). The code is replaced only when it expired,
    /// was withdrawn, or is short while the address is locked (a long one then).
    /// [`Mailing::Replace`] (invitations by operators and services) always mails a fresh
    /// code; [`Mailing::NewAccount`] mails the first code of an account created in the same
    /// transaction. An e-mail change to `email` ends the user's changes to other addresses.
    async fn mail_code(
        &self,
        conn: &mut PgConnection,
        user: &User,
        email: &str,
        purpose: Purpose,
        claim: Option<&PendingClaim>,
        mailing: Mailing,
    ) -> Result<()> {
        if purpose == Purpose::EmailChange {
            let replaced =
                storage::verifications::delete_other_email_changes(conn, user.user_id, email)
                    .await?;
            events::drop_sealed_codes(conn, &replaced).await?;
        }
        let long = storage::code_attempts::is_locked(conn, email).await?;
        if mailing == Mailing::KeepOutstanding
            && self
                .mail_again(conn, user, email, purpose, claim, long)
                .await?
        {
            return Ok(());
        }
        if mailing != Mailing::NewAccount {
            let replaced = storage::verifications::delete(conn, user.user_id, email).await?;
            events::drop_sealed_codes(conn, &replaced).await?;
        }
        let code = Code::generate(long)?;
        let expire_time = Utc::now() + self.settings.verification_code_ttl;
        let sealed = self.codes.seal(&code)?;
        let outbox_event_id = events::append(
            conn,
            &events::verification_requested(user, email, sealed, expire_time, purpose),
        )
        .await?;
        storage::verifications::insert(
            conn,
            &NewCode {
                user_id: user.user_id,
                email,
                purpose,
                code_mac: &self.codes.mac(user.user_id, email, code.expose()),
                long_code: long,
                expire_time,
                claim,
                outbox_event_id,
            },
        )
        .await?;
        Ok(())
    }

    /// Keeps the outstanding code of `user` for `email` when it still works (unexpired, and
    /// long if the address is `locked`): puts `claim` beside it, and mails it again unless
    /// the address was mailed within the mail interval. Whether the code was kept (`false`:
    /// the caller mails a fresh one).
    async fn mail_again(
        &self,
        conn: &mut PgConnection,
        user: &User,
        email: &str,
        purpose: Purpose,
        claim: Option<&PendingClaim>,
        locked: bool,
    ) -> Result<bool> {
        let Some(outstanding) =
            storage::verifications::get_for_update(conn, user.user_id, email).await?
        else {
            return Ok(false);
        };
        if !still_works(&outstanding, locked) {
            return Ok(false);
        }
        let Some(sealed) = events::sealed_code(conn, outstanding.outbox_event_id).await? else {
            // Its sealed form is gone (the outbox event was pruned): a fresh code it is.
            return Ok(false);
        };
        if let Some(claim) = claim {
            storage::verifications::set_claim(conn, user.user_id, email, claim).await?;
        }
        if storage::verifications::mailed_within(
            conn,
            email,
            self.settings.code_mail_interval.as_secs_f64(),
        )
        .await?
        {
            tracing::info!(user_id = %user.user_id, "code still outstanding; address mailed within the mail interval, not mailed again");
            return Ok(true);
        }
        let event_id = events::append(
            conn,
            &events::verification_requested(user, email, sealed, outstanding.expire_time, purpose),
        )
        .await?;
        storage::verifications::record_resend(conn, user.user_id, email, event_id).await?;
        tracing::info!(user_id = %user.user_id, "outstanding code mailed again");
        Ok(true)
    }

    /// Judges a presented code against the outstanding one of `user_id` for `email`
    /// (`extra_ok` adds the caller's own condition, e.g. the claim's password). A failure
    /// counts against the code (5 withdraw a short code; long codes are never withdrawn by
    /// guesses) and against the address across codes (20 in 24 h lock the address: its
    /// short codes are withdrawn and refused). An expired code is removed. The caller
    /// commits either way; on success it consumes the code with [`Self::consume_code`].
    async fn judge_code(
        &self,
        conn: &mut PgConnection,
        user_id: Uuid,
        email: &str,
        presented: &str,
        outstanding: Option<&Outstanding>,
        extra_ok: bool,
    ) -> Result<bool> {
        let locked = storage::code_attempts::is_locked(conn, email).await?;
        let now = Utc::now();
        let valid = outstanding.is_some_and(|row| {
            row.expire_time > now
                && self
                    .codes
                    .matches(user_id, email, presented, &row.code_hash)
                && (row.long_code || !locked)
        });
        if valid && extra_ok {
            return Ok(true);
        }
        if let Some(row) = outstanding {
            if row.expire_time <= now
                || (!row.long_code && row.failed_attempts + 1 >= MAX_CODE_ATTEMPTS)
            {
                let gone = storage::verifications::delete(conn, user_id, email).await?;
                events::drop_sealed_codes(conn, &gone).await?;
            } else {
                storage::verifications::record_failure(conn, user_id, email).await?;
            }
        }
        let locked_now = storage::code_attempts::record_failure(
            conn,
            email,
            MAX_ADDRESS_CODE_FAILURES,
            ADDRESS_FAILURE_WINDOW.as_secs_f64(),
            ADDRESS_LOCK.as_secs_f64(),
        )
        .await?;
        if locked_now {
            let withdrawn = storage::verifications::withdraw_short_codes(conn, email).await?;
            events::drop_sealed_codes(conn, &withdrawn).await?;
            tracing::warn!("too many wrong codes for one address: its claims are locked");
        }
        Ok(false)
    }

    /// Uses up the code of `user_id` for `email` and forgets the address's failures.
    async fn consume_code(
        &self,
        conn: &mut PgConnection,
        user_id: Uuid,
        email: &str,
    ) -> Result<()> {
        let used = storage::verifications::delete(conn, user_id, email).await?;
        events::drop_sealed_codes(conn, &used).await?;
        storage::code_attempts::clear(conn, email).await?;
        Ok(())
    }

    /// Proves an address with the code mailed to it. For an unproven account the code must
    /// answer a registration claim and `password` must be the claim's: then the claimed
    /// password, display name and locale take effect and the account becomes active. Every
    /// failure is [`IdentityError::BadVerificationCode`], whether or not the address has an
    /// account, after the same work (one password check). The revision is the proof's event,
    /// which access management awaits before rights follow the proof (I1, T8).
    pub async fn verify_email(&self, proof: EmailProof) -> Result<Revised<User>> {
        let EmailProof {
            email,
            code,
            password,
        } = &proof;
        let address = email.as_str();
        let mut tx = self.pool.begin().await?;
        // The user first, then its code: the order `register` takes them in, so a claim
        // and a proof of one user serialise instead of deadlocking.
        let (user, outstanding) = lock_user_and_code(&mut tx, address).await?;
        let claim = outstanding.as_ref().and_then(|row| row.claim.as_ref());
        let password_matches = self
            .hasher
            .verify(password, claim.map(|claim| claim.password_hash.as_str()))
            .await?;
        let user_id = user.as_ref().map_or(Uuid::nil(), |user| user.user_id);
        // A claim is confirmed only by whoever knows its password as well as the code: the
        // owner's mailbox may hold a code that answers someone else's claim.
        let claim_ok = match &user {
            Some(user) if user.state == UserState::Invited => claim.is_some() && password_matches,
            Some(_) => true,
            None => false,
        };
        if !self
            .judge_code(
                &mut tx,
                user_id,
                address,
                code,
                outstanding.as_ref(),
                claim_ok,
            )
            .await?
        {
            tx.commit().await?;
            return Err(IdentityError::BadVerificationCode);
        }
        self.consume_code(&mut tx, user_id, address).await?;
        let claimed = match (claim, user.as_ref().map(|user| user.state)) {
            (Some(claim), Some(UserState::Invited)) => storage::users::complete_claim(
                &mut tx,
                user_id,
                &claim.password_hash,
                &claim.display_name,
                &claim.locale,
            )
            .await
            .map_err(confusable_on_conflict)?,
            _ => None,
        };
        let user = match claimed {
            Some(user) => {
                tracing::info!(user_id = %user_id, "address proven; the claim took effect");
                user
            }
            None => storage::users::mark_verified(&mut tx, user_id).await?,
        };
        let revision = events::append_revision(&mut tx, &events::updated(&user)).await?;
        tx.commit().await?;
        Ok(Revised {
            value: user,
            revision: Some(revision),
        })
    }

    /// Mails a password-reset code to the address when an account has it (rule I2: the
    /// caller is never told). An outstanding code of the address is mailed again rather than
    /// replaced (see `mail_code`).
    ///
    /// Comparable time (rule I2): the answer is given at once, before any database work,
    /// and the work (a look-up, and for an existing account the mail) runs on a task of its
    /// own. Whether the address has an account changes only what the task does, never when
    /// the caller is answered. A failure of the task is logged (without the address).
    pub async fn request_password_reset(&self, request: ResetRequest) -> Result<()> {
        let identity = self.clone();
        let email = request.email;
        tokio::spawn(async move {
            if let Err(error) = identity.mail_password_reset(&email).await {
                tracing::warn!(error = %error, "password reset request failed");
            }
        });
        Ok(())
    }

    /// The work of [`Self::request_password_reset`].
    async fn mail_password_reset(&self, email: &Email) -> Result<()> {
        let address = email.as_str();
        let mut tx = self.pool.begin().await?;
        if let Some(user) = storage::users::find_by_email_for_update(&mut tx, address).await? {
            self.mail_code(
                &mut tx,
                &user,
                address,
                Purpose::PasswordReset,
                None,
                Mailing::KeepOutstanding,
            )
            .await?;
            tracing::info!(user_id = %user.user_id, "password reset code requested");
        }
        tx.commit().await?;
        Ok(())
    }

    /// Sets a new password with any outstanding code of the address. Proves the address (an
    /// unproven account becomes active, its pending claim discarded), ends every session,
    /// revokes every access token (rule I4) and lifts the sign-in lock. Failures answer
    /// alike whether or not the address has an account. The revision is the change's event,
    /// which access management awaits before rights follow the proof (I1, T8).
    pub async fn reset_password(&self, reset: PasswordReset) -> Result<Revised<()>> {
        let PasswordReset {
            email,
            code,
            new_password: new,
        } = &reset;
        let address = email.as_str();
        let new_hash = self.hasher.hash(new).await?;
        let mut tx = self.pool.begin().await?;
        let (user, outstanding) = lock_user_and_code(&mut tx, address).await?;
        let user_id = user.as_ref().map_or(Uuid::nil(), |user| user.user_id);
        if !self
            .judge_code(
                &mut tx,
                user_id,
                address,
                code,
                outstanding.as_ref(),
                user.is_some(),
            )
            .await?
        {
            tx.commit().await?;
            return Err(IdentityError::BadVerificationCode);
        }
        self.consume_code(&mut tx, user_id, address).await?;
        let user = storage::users::reset_password(&mut tx, user_id, &new_hash)
            .await
            .map_err(confusable_on_conflict)?;
        storage::sessions::revoke_all_of_user(&mut tx, user_id, "password reset").await?;
        self.revoke_tokens(&mut tx, user_id, None).await?;
        storage::throttle::reset(&mut tx, address).await?;
        let revision = events::append_revision(&mut tx, &events::updated(&user)).await?;
        tx.commit().await?;
        tracing::info!(user_id = %user_id, "password reset; every session ended");
        Ok(Revised {
            value: (),
            revision: Some(revision),
        })
    }

    /// Asks to change a user's login e-mail (the user itself, with its current password).
    /// The current address is told; the new one is mailed a code unless it is taken or
    /// looks like another account's (rule I3), which the caller is not told (rule I2).
    pub async fn change_email(&self, caller: &Caller, change: EmailChange) -> Result<()> {
        let EmailChange {
            user_id,
            new_email,
            current_password: current,
        } = &change;
        let user_id = *user_id;
        require_self(
            caller,
            user_id,
            "only the user may change its own login e-mail",
        )?;
        self.check_current_password(user_id, current).await?;
        let address = new_email.as_str();
        let mut tx = self.pool.begin().await?;
        let user = storage::users::get_for_update(&mut tx, user_id)
            .await?
            .ok_or(IdentityError::UserNotFound)?;
        if user.email == address {
            tx.commit().await?;
            return Ok(());
        }
        let taken = storage::users::find_by_email(&mut tx, address)
            .await?
            .is_some();
        let confusable =
            storage::users::find_confusable(&mut tx, &email_skeleton(address), address)
                .await?
                .is_some_and(|other| other.user_id != user_id);
        events::append(&mut tx, &events::email_change_requested(&user, address)).await?;
        if !taken && !confusable {
            self.mail_code(
                &mut tx,
                &user,
                address,
                Purpose::EmailChange,
                None,
                Mailing::KeepOutstanding,
            )
            .await?;
        }
        tx.commit().await?;
        tracing::info!(user_id = %user_id, "login e-mail change asked");
        Ok(())
    }

    /// Proves the new address of [`Self::change_email`] with its code: it becomes the
    /// login e-mail (the user itself only). The revision is the change's event (access
    /// management matches domain policies on the login e-mail, A7).
    pub async fn confirm_email_change(
        &self,
        caller: &Caller,
        proof: EmailChangeProof,
    ) -> Result<Revised<User>> {
        let EmailChangeProof { user_id, code } = &proof;
        let user_id = *user_id;
        require_self(
            caller,
            user_id,
            "only the user may change its own login e-mail",
        )?;
        let mut tx = self.pool.begin().await?;
        storage::users::get_for_update(&mut tx, user_id)
            .await?
            .ok_or(IdentityError::UserNotFound)?;
        let Some(outstanding) =
            storage::verifications::email_change_for_update(&mut tx, user_id).await?
        else {
            return Err(IdentityError::BadVerificationCode);
        };
        let address = outstanding.email.clone();
        if !self
            .judge_code(&mut tx, user_id, &address, code, Some(&outstanding), true)
            .await?
        {
            tx.commit().await?;
            return Err(IdentityError::BadVerificationCode);
        }
        self.consume_code(&mut tx, user_id, &address).await?;
        // Codes mailed to the old address are over with it.
        let old_codes = storage::verifications::delete_all_of_user(&mut tx, user_id).await?;
        events::drop_sealed_codes(&mut tx, &old_codes).await?;
        let user =
            storage::users::change_email(&mut tx, user_id, &address, &email_skeleton(&address))
                .await
                .map_err(|error| match classify(&error) {
                    DbErrorKind::UniqueViolation => IdentityError::AddressUnavailable,
                    _ => error.into(),
                })?;
        let revision = events::append_revision(&mut tx, &events::updated(&user)).await?;
        tx.commit().await?;
        tracing::info!(user_id = %user_id, "login e-mail changed");
        Ok(Revised {
            value: user,
            revision: Some(revision),
        })
    }

    /// One user: customers only themselves.
    pub async fn get_user(&self, caller: &Caller, user: UserRef) -> Result<User> {
        let user_id = user.user_id;
        require_self_or_privileged(caller, user_id)?;
        let mut conn = self.pool.acquire().await?;
        storage::users::get(&mut conn, user_id)
            .await?
            .ok_or(IdentityError::UserNotFound)
    }

    /// Up to 500 users; services and operators only.
    pub async fn batch_get_users(&self, caller: &Caller, batch: UserBatch) -> Result<Vec<User>> {
        require_privileged(caller)?;
        let mut conn = self.pool.acquire().await?;
        Ok(storage::users::get_many(&mut conn, &batch.user_ids).await?)
    }

    /// A user by e-mail: customers only themselves (anything else is "not found", so a
    /// customer learns nothing about other addresses).
    pub async fn lookup_user(&self, caller: &Caller, lookup: UserLookup) -> Result<User> {
        let email = &lookup.email;
        if !caller.is_privileged() && caller.email != email.as_str() {
            return Err(IdentityError::UserNotFound);
        }
        let mut conn = self.pool.acquire().await?;
        let user = storage::users::find_by_email(&mut conn, email.as_str())
            .await?
            .ok_or(IdentityError::UserNotFound)?;
        require_self_or_privileged(caller, user.user_id)
            .map_err(|_| IdentityError::UserNotFound)?;
        Ok(user)
    }

    /// BatchLookupUsers: the account of each address, in order (`None` where nobody has
    /// it), in one statement. Operators and services only.
    pub async fn lookup_users(
        &self,
        caller: &Caller,
        lookups: Vec<UserLookup>,
    ) -> Result<Vec<Option<User>>> {
        require_privileged(caller)?;
        let emails: Vec<&str> = lookups.iter().map(|lookup| lookup.email.as_str()).collect();
        let mut conn = self.pool.acquire().await?;
        let found: HashMap<String, User> = storage::users::find_by_emails(&mut conn, &emails)
            .await?
            .into_iter()
            .map(|user| (user.email.clone(), user))
            .collect();
        Ok(emails
            .iter()
            .map(|email| found.get(*email).cloned())
            .collect())
    }

    /// Changes display name and/or locale, guarded by the etag when one is given.
    pub async fn update_user(&self, caller: &Caller, update: UserUpdate) -> Result<User> {
        let UserUpdate {
            user_id,
            display_name,
            locale,
            etag,
        } = update;
        require_self_or_privileged(caller, user_id)?;
        let mut tx = self.pool.begin().await?;
        let current = storage::users::get_for_update(&mut tx, user_id)
            .await?
            .ok_or(IdentityError::UserNotFound)?;
        if !etag.matches(current.version) {
            return Err(IdentityError::EtagMismatch);
        }
        let user = storage::users::update_profile(
            &mut tx,
            user_id,
            display_name.as_ref().map(DisplayName::as_str),
            locale.as_ref().map(Locale::as_str),
        )
        .await?;
        events::append(&mut tx, &events::updated(&user)).await?;
        tx.commit().await?;
        Ok(user)
    }

    /// Checks the current password of ChangePassword and ChangeEmail through the sign-in
    /// throttle of the user's address: a wrong one counts as a failed sign-in, and a locked
    /// address refuses the check (`Locked`), so a stolen access token cannot be used to
    /// guess the password without limit.
    async fn check_current_password(&self, user_id: Uuid, current: &Password) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        let user = storage::users::get(&mut conn, user_id)
            .await?
            .ok_or(IdentityError::UserNotFound)?;
        drop(conn);
        let attempt_id = self.reserve_sign_in(&user.email).await?;
        let outcome = self
            .check_reserved_password(&user.email, user_id, current, attempt_id)
            .await;
        if outcome.is_err()
            && let Ok(mut conn) = self.pool.acquire().await
        {
            // Whatever failed, the slot must not stay taken.
            let _ = storage::throttle::release(&mut conn, attempt_id).await;
        }
        outcome
    }

    async fn check_reserved_password(
        &self,
        email: &str,
        user_id: Uuid,
        current: &Password,
        attempt_id: Uuid,
    ) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        let hash = storage::users::password_hash(&mut conn, user_id).await?;
        drop(conn);
        let matches = self.hasher.verify(current, hash.as_deref()).await?;
        let mut tx = self.pool.begin().await?;
        if matches {
            storage::throttle::succeed(&mut tx, email, attempt_id).await?;
            tx.commit().await?;
            return Ok(());
        }
        storage::throttle::fail(
            &mut tx,
            email,
            attempt_id,
            self.settings.lockout_threshold as i32,
            self.settings.lockout_duration.as_secs_f64(),
        )
        .await?;
        tx.commit().await?;
        Err(IdentityError::Invalid(vec![kc_runtime::Violation::new(
            "current_password",
            "current password is wrong",
        )]))
    }

    /// Changes a password; the caller must be the user and know the current one. Every
    /// other session of the user ends and its access tokens are revoked (rule I4); the
    /// caller's own session (`session_id`, from its token) goes on.
    pub async fn change_password(
        &self,
        caller: &Caller,
        session_id: Option<Uuid>,
        change: PasswordChange,
    ) -> Result<()> {
        let PasswordChange {
            user_id,
            current_password: current,
            new_password: new,
        } = &change;
        let user_id = *user_id;
        require_self(caller, user_id, "only the user may change its own password")?;
        self.check_current_password(user_id, current).await?;
        let new_hash = self.hasher.hash(new).await?;
        let mut tx = self.pool.begin().await?;
        storage::users::set_password(&mut tx, user_id, &new_hash).await?;
        match session_id {
            Some(keep) => {
                let ended = storage::sessions::revoke_all_of_user_except(
                    &mut tx,
                    user_id,
                    Some(keep),
                    "password changed",
                )
                .await?;
                for session in ended {
                    self.revoke_tokens(&mut tx, user_id, Some(session)).await?;
                }
            }
            None => {
                storage::sessions::revoke_all_of_user(&mut tx, user_id, "password changed").await?;
                self.revoke_tokens(&mut tx, user_id, None).await?;
            }
        }
        tx.commit().await?;
        tracing::info!(user_id = %user_id, "password changed");
        Ok(())
    }

    /// Records that the access tokens of `user_id` (of one session when `session_id` is
    /// set) issued until now no longer count, and publishes it (rule I4).
    async fn revoke_tokens(
        &self,
        conn: &mut PgConnection,
        user_id: Uuid,
        session_id: Option<Uuid>,
    ) -> Result<()> {
        let now = Utc::now();
        let revocation = Revocation {
            revocation_id: Uuid::now_v7(),
            user_id,
            session_id,
            issued_before: now,
            expire_time: now + self.settings.access_token_ttl + REVOCATION_LEEWAY,
        };
        storage::revocations::insert(conn, &revocation).await?;
        events::append(conn, &events::tokens_revoked(&revocation)).await?;
        Ok(())
    }

    /// Whether the access token of `claims` was revoked (rule I4); identity's own check.
    pub async fn is_revoked(&self, claims: &Claims) -> Result<bool> {
        if claims.kind == CallerKind::Service {
            return Ok(false);
        }
        let Ok(user_id) = Uuid::parse_str(&claims.sub) else {
            return Ok(true);
        };
        let session_id = Uuid::parse_str(&claims.sid).ok();
        let mut conn = self.pool.acquire().await?;
        Ok(storage::revocations::is_revoked(&mut conn, user_id, session_id, claims.iat).await?)
    }

    /// The cursor of identity's event stream as it is now, then every revocation that may
    /// still matter: following the stream after that cursor misses no later revocation.
    pub async fn revocations_snapshot(&self) -> Result<(String, Vec<Revocation>)> {
        let mut conn = self.pool.acquire().await?;
        let cursor = events::current_cursor(&mut conn).await?;
        let revocations = storage::revocations::unexpired(&mut conn).await?;
        Ok((cursor, revocations))
    }

    /// Disables or enables a user (operators and services). Disabling ends its sessions,
    /// revokes its access tokens (rule I4) and withdraws its codes. The revision is the
    /// change's event (none when the user already was so), which access management awaits
    /// before its rights follow (I4, T8).
    pub async fn set_enabled(
        &self,
        caller: &Caller,
        user: UserRef,
        enabled: bool,
    ) -> Result<Revised<User>> {
        let user_id = user.user_id;
        require_privileged(caller)?;
        let mut tx = self.pool.begin().await?;
        let current = storage::users::get_for_update(&mut tx, user_id)
            .await?
            .ok_or(IdentityError::UserNotFound)?;
        let target = match (enabled, current.state) {
            (false, _) => UserState::Disabled,
            (true, UserState::Disabled) => {
                let has_password = storage::users::password_hash(&mut tx, user_id)
                    .await?
                    .is_some();
                if has_password && current.email_verified {
                    UserState::Active
                } else {
                    UserState::Invited
                }
            }
            (true, state) => state,
        };
        if target == current.state {
            tx.commit().await?;
            return Ok(Revised::unchanged(current));
        }
        let user = storage::users::set_state(&mut tx, user_id, target)
            .await
            .map_err(confusable_on_conflict)?;
        let revision = if enabled {
            events::append_revision(&mut tx, &events::enabled(&user)).await?
        } else {
            storage::sessions::revoke_all_of_user(&mut tx, user_id, "user disabled").await?;
            self.revoke_tokens(&mut tx, user_id, None).await?;
            let withdrawn = storage::verifications::delete_all_of_user(&mut tx, user_id).await?;
            events::drop_sealed_codes(&mut tx, &withdrawn).await?;
            events::append_revision(&mut tx, &events::disabled(&user)).await?
        };
        tx.commit().await?;
        tracing::info!(user_id = %user_id, state = user.state.as_str(), "user state changed");
        Ok(Revised {
            value: user,
            revision: Some(revision),
        })
    }

    /// Signs in with e-mail and password. Unknown e-mails, unproven accounts (rule I1) and
    /// wrong passwords cost the same and fail the same way. Only failures count towards the
    /// lock (five in a row lock the e-mail for 15 minutes, whether or not an account has
    /// it), but an attempt checks its password only while failures plus attempts in flight
    /// stay below the threshold: concurrent guesses cannot outrun the lock, and correct
    /// sign-ins, however many at once, never cause it (they wait for a slot instead).
    pub async fn authenticate(&self, credentials: Credentials) -> Result<SessionTokens> {
        let Credentials { email, password } = &credentials;
        // A malformed e-mail is just a failed sign-in: no field error that would differ.
        let email = email.trim().to_lowercase();
        if email.len() > MAX_EMAIL_BYTES {
            // Not an address anyone can have: same cost and answer, nothing stored.
            self.hasher.verify(password, None).await?;
            return Err(IdentityError::BadCredentials);
        }
        let attempt_id = self.reserve_sign_in(&email).await?;
        let outcome = self.check_sign_in(&email, password, attempt_id).await;
        if outcome.is_err() {
            // Whatever failed, the slot must not stay taken (the check ran or not).
            if let Ok(mut conn) = self.pool.acquire().await {
                let _ = storage::throttle::release(&mut conn, attempt_id).await;
            }
        }
        outcome
    }

    /// Waits for a sign-in slot of `email`; `Locked` when the e-mail is locked or no slot
    /// frees up in time.
    async fn reserve_sign_in(&self, email: &str) -> Result<Uuid> {
        let threshold = self.settings.lockout_threshold as i32;
        let deadline = tokio::time::Instant::now() + SIGN_IN_SLOT_WAIT;
        loop {
            let mut tx = self.pool.begin().await?;
            let reservation = storage::throttle::reserve(&mut tx, email, threshold).await?;
            tx.commit().await?;
            match reservation {
                storage::throttle::Reservation::Reserved(attempt_id) => return Ok(attempt_id),
                storage::throttle::Reservation::Locked => return Err(IdentityError::Locked),
                storage::throttle::Reservation::Full => {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(IdentityError::Locked);
                    }
                    tokio::time::sleep(SIGN_IN_SLOT_POLL).await;
                }
            }
        }
    }

    /// Checks a reserved sign-in attempt and creates its session.
    ///
    /// Rule I4 against races: the password hash is checked outside any transaction (it
    /// takes time), so the transaction that creates the session reads the user again FOR
    /// SHARE and requires the same hash and a proven state: a password reset or change that
    /// committed meanwhile fails the attempt like a wrong password, a disable like today. One
    /// that commits after (it waited for the share lock) revokes the new session with the
    /// others, and [`Self::sign`] refuses the access token of a session whose validation
    /// started before a revocation covering it.
    async fn check_sign_in(
        &self,
        email: &str,
        password: &Password,
        attempt_id: Uuid,
    ) -> Result<SessionTokens> {
        let validated_since = Utc::now();
        let mut conn = self.pool.acquire().await?;
        let found = storage::users::find_credentials(&mut conn, email).await?;
        drop(conn);
        // An unproven account has no password (rule I1): it fails like a wrong one.
        let hash = found
            .as_ref()
            .filter(|(user, _)| user.state != UserState::Invited)
            .and_then(|(_, hash)| hash.clone());
        let matches = self.hasher.verify(password, hash.as_deref()).await?;
        let mut tx = self.pool.begin().await?;
        let current = match &found {
            Some((user, _)) if matches => {
                storage::users::credentials_for_share(&mut tx, user.user_id).await?
            }
            _ => None,
        };
        let user = match current {
            Some((user, current_hash))
                if hash.is_some() && current_hash == hash && user.state != UserState::Invited =>
            {
                user
            }
            _ => {
                storage::throttle::fail(
                    &mut tx,
                    email,
                    attempt_id,
                    self.settings.lockout_threshold as i32,
                    self.settings.lockout_duration.as_secs_f64(),
                )
                .await?;
                tx.commit().await?;
                return Err(IdentityError::BadCredentials);
            }
        };
        storage::throttle::succeed(&mut tx, email, attempt_id).await?;
        if user.state == UserState::Disabled {
            tx.commit().await?;
            return Err(IdentityError::Disabled);
        }
        let refresh_token = refresh_token()?;
        let session_id = Uuid::now_v7();
        storage::sessions::create(
            &mut tx,
            session_id,
            user.user_id,
            Utc::now() + self.settings.session_ttl,
            &sha256(refresh_token.as_bytes()),
        )
        .await?;
        tx.commit().await?;
        self.session_tokens(
            user,
            refresh_token,
            SessionCheck {
                session_id,
                validated_since,
                refusal: || IdentityError::BadCredentials,
            },
        )
        .await
    }

    /// Rotates a refresh token. A token that was already rotated revokes its whole family.
    /// The user is read FOR SHARE (a disable or password reset waits for the rotation and
    /// then revokes the session), and the access token is refused when a revocation covering
    /// it was made after the rotation started (rule I4).
    pub async fn refresh(&self, presented: PresentedRefreshToken) -> Result<SessionTokens> {
        let presented = &presented.token;
        let validated_since = Utc::now();
        let presented_hash = sha256(presented.trim().as_bytes());
        let mut tx = self.pool.begin().await?;
        let Some(token) = storage::sessions::find_for_update(&mut tx, &presented_hash).await?
        else {
            return Err(IdentityError::BadRefreshToken);
        };
        if token.revoke_time.is_some() || token.expire_time <= Utc::now() {
            return Err(IdentityError::BadRefreshToken);
        }
        if token.used_time.is_some() {
            storage::sessions::revoke(&mut tx, token.session_id, "refresh token reused").await?;
            self.revoke_tokens(&mut tx, token.user_id, Some(token.session_id))
                .await?;
            tx.commit().await?;
            tracing::warn!(session_id = %token.session_id, user_id = %token.user_id, "refresh token reuse detected; session revoked");
            return Err(IdentityError::RefreshTokenReused);
        }
        let (user, _) = storage::users::credentials_for_share(&mut tx, token.user_id)
            .await?
            .ok_or(IdentityError::BadRefreshToken)?;
        match user.state {
            UserState::Disabled => return Err(IdentityError::Disabled),
            UserState::Invited => return Err(IdentityError::BadRefreshToken),
            UserState::Active => {}
        }
        let refresh_token = refresh_token()?;
        storage::sessions::mark_used(&mut tx, &presented_hash).await?;
        storage::sessions::add_token(&mut tx, token.session_id, &sha256(refresh_token.as_bytes()))
            .await?;
        tx.commit().await?;
        self.session_tokens(
            user,
            refresh_token,
            SessionCheck {
                session_id: token.session_id,
                validated_since,
                refusal: || IdentityError::BadRefreshToken,
            },
        )
        .await
    }

    /// Logs out: revokes the session of a refresh token and every access token issued in
    /// it (rule I4). Unknown tokens are ignored (the outcome the caller wants holds either
    /// way).
    pub async fn revoke(&self, presented: PresentedRefreshToken) -> Result<()> {
        let presented = &presented.token;
        let mut tx = self.pool.begin().await?;
        if let Some(token) =
            storage::sessions::find_for_update(&mut tx, &sha256(presented.trim().as_bytes()))
                .await?
            && token.revoke_time.is_none()
        {
            storage::sessions::revoke(&mut tx, token.session_id, "logout").await?;
            self.revoke_tokens(&mut tx, token.user_id, Some(token.session_id))
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Public keys that verify tokens.
    pub async fn signing_keys(&self) -> Result<Vec<PublicKey>> {
        Ok(self.keys.verifying_keys().await?)
    }

    /// Rotates the signing key (operators only).
    pub async fn rotate_signing_key(&self, caller: &Caller) -> Result<PublicKey> {
        if !caller.is_operator() {
            return Err(IdentityError::Forbidden(
                "only operators may rotate the signing key",
            ));
        }
        Ok(self.keys.rotate().await?)
    }

    /// Exchanges service-account credentials for a service token.
    pub async fn issue_service_token(&self, credentials: ClientCredentials) -> Result<AccessToken> {
        let ClientCredentials {
            client_id,
            client_secret: secret,
        } = &credentials;
        let client_id =
            Uuid::parse_str(client_id.trim()).map_err(|_| IdentityError::BadClientCredentials)?;
        let mut conn = self.pool.acquire().await?;
        let stored = storage::service_accounts::find(&mut conn, client_id)
            .await?
            .ok_or(IdentityError::BadClientCredentials)?;
        drop(conn);
        let presented = URL_SAFE_NO_PAD.encode(sha256(secret.trim().as_bytes()));
        if !bool::from(presented.as_bytes().ct_eq(stored.secret_hash.as_bytes())) {
            return Err(IdentityError::BadClientCredentials);
        }
        // The account's scopes, space-separated as OAuth 2.0 and RFC 9068 carry them.
        let scope = stored.scopes.join(" ");
        self.sign(client_id, CallerKind::Service, "", &scope, None)
            .await
    }

    /// Creates a service account without scopes; returns its client id and secret (shown
    /// once). See [`Self::create_scoped_service_account`].
    pub async fn create_service_account(&self, name: &str) -> Result<(Uuid, String)> {
        self.create_scoped_service_account(name, &Scopes::default())
            .await
    }

    /// Creates a service account holding `scopes`, which its service tokens carry; returns
    /// its client id and secret (shown once).
    pub async fn create_scoped_service_account(
        &self,
        name: &str,
        scopes: &Scopes,
    ) -> Result<(Uuid, String)> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            return Err(kc_runtime::Violation::new(
                "name",
                "service account name must be 1 to 100 characters",
            )
            .into());
        }
        let client_id = Uuid::new_v4();
        let secret = random_token(32)?;
        let mut conn = self.pool.acquire().await?;
        storage::service_accounts::insert(
            &mut conn,
            client_id,
            name,
            &URL_SAFE_NO_PAD.encode(sha256(secret.as_bytes())),
            scopes.as_slice(),
        )
        .await
        .map_err(|error| match classify(&error) {
            DbErrorKind::UniqueViolation => IdentityError::ServiceAccountExists,
            _ => error.into(),
        })?;
        Ok((client_id, secret))
    }

    /// Creates the operator, or resets its password and re-enables it, ending every session
    /// the account had and revoking its access tokens; idempotent.
    pub async fn bootstrap_operator(&self, email: &Email, password: &Password) -> Result<User> {
        let hash = self.hasher.hash(password).await?;
        let mut tx = self.pool.begin().await?;
        let display_name = local_part(email.as_str()).to_owned();
        let skeleton = email_skeleton(email.as_str());
        let user = storage::users::upsert_operator(
            &mut tx,
            &NewUser {
                user_id: Uuid::now_v7(),
                email: email.as_str(),
                email_verified: true,
                display_name: &display_name,
                locale: "en",
                kind: UserKind::Operator,
                state: UserState::Active,
                password_hash: Some(&hash),
                email_skeleton: &skeleton,
            },
        )
        .await
        .map_err(confusable_on_conflict)?;
        // Whoever held sessions of this account before (e.g. someone who registered the
        // address as a customer) must sign in again with the operator's password.
        storage::sessions::revoke_all_of_user(&mut tx, user.user_id, "operator bootstrapped")
            .await?;
        self.revoke_tokens(&mut tx, user.user_id, None).await?;
        let withdrawn = storage::verifications::delete_all_of_user(&mut tx, user.user_id).await?;
        events::drop_sealed_codes(&mut tx, &withdrawn).await?;
        events::append(&mut tx, &events::updated(&user)).await?;
        tx.commit().await?;
        Ok(user)
    }

    /// Housekeeping: removes expired codes (dropping every sealed copy from the outbox),
    /// revocations whose tokens have all expired, sign-in slots of dead processes, wrong-code
    /// counters whose window and lock are over, and computes missing confusable skeletons.
    pub async fn sweep(&self) -> Result<()> {
        loop {
            let mut tx = self.pool.begin().await?;
            let expired = storage::verifications::delete_expired(&mut tx, SWEEP_BATCH).await?;
            events::drop_sealed_codes(&mut tx, &expired).await?;
            tx.commit().await?;
            if (expired.len() as i64) < SWEEP_BATCH {
                break;
            }
        }
        let mut conn = self.pool.acquire().await?;
        storage::revocations::delete_expired(&mut conn).await?;
        storage::throttle::forget_stale(&mut conn).await?;
        storage::code_attempts::forget_stale(&mut conn, ADDRESS_FAILURE_WINDOW.as_secs_f64())
            .await?;
        drop(conn);
        // Accounts written by replicas older than the skeleton column (during a rolling
        // upgrade) get theirs here rather than only at the next start (rule I3).
        self.backfill_skeletons().await?;
        Ok(())
    }

    /// Computes the confusable skeleton of the accounts older than it (rule I3), 500 in one
    /// statement. A batch that meets a proven look-alike is redone row by row: an account
    /// whose look-alike is already proven keeps none and is reported by id.
    pub async fn backfill_skeletons(&self) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        let mut after = Uuid::nil();
        loop {
            let batch = storage::users::missing_skeletons(&mut conn, after, 500).await?;
            let Some((last, _)) = batch.last() else {
                return Ok(());
            };
            after = *last;
            let (user_ids, skeletons): (Vec<Uuid>, Vec<String>) = batch
                .iter()
                .map(|(user_id, email)| (*user_id, email_skeleton(email)))
                .unzip();
            match storage::users::set_skeletons(&mut conn, &user_ids, &skeletons).await {
                Ok(()) => continue,
                Err(error) if classify(&error) == DbErrorKind::UniqueViolation => {}
                Err(error) => return Err(error.into()),
            }
            for (user_id, skeleton) in user_ids.iter().zip(&skeletons) {
                match storage::users::set_skeleton(&mut conn, *user_id, skeleton).await {
                    Ok(()) => {}
                    Err(error) if classify(&error) == DbErrorKind::UniqueViolation => {
                        tracing::warn!(user_id = %user_id, "login e-mail looks the same as another proven account's (rule I3); left without skeleton");
                    }
                    Err(error) => return Err(error.into()),
                }
            }
        }
    }

    /// What a sign-in or refresh returns: a new access token of the session beside the
    /// refresh token.
    async fn session_tokens(
        &self,
        user: User,
        refresh_token: String,
        check: SessionCheck,
    ) -> Result<SessionTokens> {
        let kind = match user.kind {
            UserKind::Customer => CallerKind::Customer,
            UserKind::Operator => CallerKind::Operator,
        };
        let access = self
            .sign(user.user_id, kind, &user.email, "", Some(check))
            .await?;
        Ok(SessionTokens {
            access,
            refresh_token,
            user,
        })
    }

    async fn sign(
        &self,
        subject: Uuid,
        kind: CallerKind,
        email: &str,
        scope: &str,
        session: Option<SessionCheck>,
    ) -> Result<AccessToken> {
        let key = self.keys.signing_key().await?;
        let mut now = Utc::now();
        let session_id = session.as_ref().map(|check| check.session_id);
        if let Some(check) = session {
            let mut conn = self.pool.acquire().await?;
            let revoked =
                storage::revocations::latest_issued_before(&mut conn, subject, check.session_id)
                    .await?;
            drop(conn);
            if let Some(revoked) = revoked {
                // A revocation made since the credentials were checked (a password reset, a
                // disable, a logout that raced this sign-in or refresh) covers this session
                // too: no token escapes it by a later `iat` (rule I4).
                if revoked >= check.validated_since {
                    tracing::info!(user_id = %subject, "session revoked while it was being opened; no access token issued");
                    return Err((check.refusal)());
                }
                // An older one (e.g. the password change this sign-in follows): `iat` has
                // whole seconds, so a token issued in the second of the revocation would
                // fall under it. Such a token waits for the next second, so that its `iat`
                // is both true and after the revocation.
                if revoked.timestamp() >= now.timestamp() {
                    let next_second =
                        DateTime::<Utc>::from_timestamp(revoked.timestamp() + 1, 0).unwrap_or(now);
                    if let Ok(wait) = (next_second - now).to_std() {
                        tokio::time::sleep(wait).await;
                    }
                    now = Utc::now();
                }
            }
        }
        let iat = now.timestamp();
        let expire_time = now + self.settings.access_token_ttl;
        let claims = Claims {
            sub: subject.to_string(),
            kind,
            email: email.to_owned(),
            iss: self.settings.issuer.clone(),
            aud: self.settings.audience.clone(),
            iat,
            exp: expire_time.timestamp(),
            jti: Uuid::new_v4().to_string(),
            sid: session_id.map(|id| id.to_string()).unwrap_or_default(),
            scope: scope.to_owned(),
        };
        Ok(AccessToken {
            token: token::sign(&claims, &key.kid, &key.key),
            expire_time,
        })
    }
}

/// What [`Identity::sign`] checks before it issues an access token of a session.
struct SessionCheck {
    /// The session.
    session_id: Uuid,
    /// When the credentials (password or refresh token) began to be checked: a revocation
    /// covering the session made since then refuses the token.
    validated_since: DateTime<Utc>,
    /// The error that refusal answers.
    refusal: fn() -> IdentityError,
}

/// The part of an address before `@`: the name an account has before its owner gives one.
fn local_part(email: &str) -> &str {
    email
        .split('@')
        .next()
        .filter(|part| !part.is_empty())
        .unwrap_or("user")
}

/// The user of `address` and its outstanding code for that address, both locked until the
/// transaction ends (the user first: the order `register` takes them in).
async fn lock_user_and_code(
    conn: &mut PgConnection,
    address: &str,
) -> Result<(Option<User>, Option<storage::verifications::Outstanding>)> {
    let user = storage::users::find_by_email_for_update(&mut *conn, address).await?;
    let outstanding = match &user {
        Some(user) => storage::verifications::get_for_update(conn, user.user_id, address).await?,
        None => None,
    };
    Ok((user, outstanding))
}

/// A unique violation when an address becomes proven means a proven look-alike exists.
/// Refuses `address` when it looks like another proven account's (rule I3).
async fn refuse_confusable(conn: &mut PgConnection, skeleton: &str, address: &str) -> Result<()> {
    match storage::users::find_confusable(conn, skeleton, address).await? {
        Some(_) => Err(IdentityError::Confusable),
        None => Ok(()),
    }
}

fn confusable_on_conflict(error: sqlx::Error) -> IdentityError {
    match classify(&error) {
        DbErrorKind::UniqueViolation => IdentityError::Confusable,
        _ => error.into(),
    }
}

fn require_privileged(caller: &Caller) -> Result<()> {
    if caller.is_privileged() {
        Ok(())
    } else {
        Err(IdentityError::Forbidden(
            "only operators and services may do this",
        ))
    }
}

/// Only the user itself (a person signed in as `user_id`) may do this; `refusal` says what.
fn require_self(caller: &Caller, user_id: Uuid, refusal: &'static str) -> Result<()> {
    if caller.is_user(user_id) {
        Ok(())
    } else {
        Err(IdentityError::Forbidden(refusal))
    }
}

fn require_self_or_privileged(caller: &Caller, user_id: Uuid) -> Result<()> {
    if caller.is_privileged() || caller.is_user(user_id) {
        Ok(())
    } else {
        Err(IdentityError::Forbidden(
            "a customer may only access its own user",
        ))
    }
}

fn sha256(bytes: &[u8]) -> Vec<u8> {
    Sha256::digest(bytes).to_vec()
}

fn random_token(bytes: usize) -> anyhow::Result<String> {
    let mut buffer = vec![0u8; bytes];
    getrandom::fill(&mut buffer)?;
    Ok(URL_SAFE_NO_PAD.encode(buffer))
}

fn refresh_token() -> anyhow::Result<String> {
    random_token(32)
}
