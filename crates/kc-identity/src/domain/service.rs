//! The identity use cases, each one transaction, each deciding who may do what.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use kc_runtime::Caller;
use kc_runtime::db::{DbErrorKind, classify};
use kc_runtime::token::{self, CallerKind, Claims};
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::keys::{KeyRing, PublicKey};
use super::password::PasswordHasher;
use super::values::{DisplayName, Email, Locale, Password};
use super::{IdentityError, Result, User, UserKind, UserState, parse_etag};
use crate::events;
use crate::storage::{self, users::NewUser, verifications::PendingClaim};

/// Most ids one `BatchGetUsers` may ask for.
pub const MAX_BATCH_GET: usize = 500;
/// Longest e-mail address (RFC 5321).
const MAX_EMAIL_BYTES: usize = 254;
/// Wrong verification codes tolerated before the code is withdrawn.
const MAX_VERIFICATION_ATTEMPTS: i32 = 5;

/// Token and lockout settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `iss` of issued tokens.
    pub issuer: String,
    /// `aud` of issued tokens.
    pub audience: String,
    /// Lifetime of access tokens.
    pub access_token_ttl: Duration,
    /// Lifetime of a session (refresh-token family).
    pub session_ttl: Duration,
    /// Lifetime of an e-mail verification code.
    pub verification_code_ttl: Duration,
    /// Consecutive failed sign-ins that lock an e-mail.
    pub lockout_threshold: u32,
    /// How long such a lock lasts.
    pub lockout_duration: Duration,
}

/// A signed access token and when it expires.
#[derive(Debug, Clone)]
pub struct AccessToken {
    /// The compact JWT.
    pub token: String,
    /// Its `exp`.
    pub expire_time: DateTime<Utc>,
}

/// What a successful sign-in or refresh returns.
#[derive(Debug, Clone)]
pub struct SessionTokens {
    /// Access token.
    pub access: AccessToken,
    /// New refresh token (single use).
    pub refresh_token: String,
    /// The user.
    pub user: User,
}

/// A new user as requested by a caller.
#[derive(Debug)]
pub struct UserDraft {
    /// E-mail.
    pub email: Email,
    /// Display name.
    pub display_name: DisplayName,
    /// Locale.
    pub locale: Locale,
    /// Kind.
    pub kind: UserKind,
    /// Password, if any.
    pub password: Option<Password>,
}

/// The identity service's domain: users, credentials, sessions and keys.
#[derive(Clone, Debug)]
pub struct Identity {
    pool: PgPool,
    hasher: PasswordHasher,
    keys: KeyRing,
    settings: Settings,
}

impl Identity {
    /// The domain on `pool`.
    pub fn new(pool: PgPool, hasher: PasswordHasher, keys: KeyRing, settings: Settings) -> Self {
        Self {
            pool,
            hasher,
            keys,
            settings,
        }
    }

    /// The key ring (also the verifier's key source).
    pub fn keys(&self) -> &KeyRing {
        &self.keys
    }

    /// Registers a customer with a password; it must verify its e-mail. Returns the user as
    /// the caller may see it and the verification code that was sent.
    ///
    /// When the e-mail belongs to an invited user (created without a password), nothing
    /// about that user changes here: the password's hash, display name and locale wait
    /// beside a new verification code mailed to the address, and only `verify_email` with
    /// that code applies them and activates the user (the last claim wins). The answer has
    /// the shape of a fresh registration; it shows the invited user's id (needed to verify)
    /// and state, but echoes the requested display name and locale rather than the stored
    /// ones, so an anonymous caller learns nothing the inviter wrote. Any other existing
    /// user is never touched and the call fails with `EmailTaken`, as before.
    pub async fn register(&self, draft: UserDraft) -> Result<(User, String)> {
        let Some(password) = &draft.password else {
            return Err(kc_runtime::Violation::new("password", "password is required").into());
        };
        // Hash first in every case, so that every outcome costs the same.
        let password_hash = self.hasher.hash(password).await?;
        let mut tx = self.pool.begin().await?;
        let inserted = storage::users::insert_if_absent(
            &mut tx,
            &NewUser {
                user_id: Uuid::now_v7(),
                email: draft.email.as_str(),
                email_verified: false,
                display_name: draft.display_name.as_str(),
                locale: draft.locale.as_str(),
                kind: draft.kind,
                state: UserState::Active,
                password_hash: Some(&password_hash),
            },
        )
        .await?;
        if let Some(user) = inserted {
            events::append(&mut tx, &events::registered(&user)).await?;
            let code = self.request_verification(&mut tx, &user, None).await?;
            tx.commit().await?;
            tracing::info!(user_id = %user.user_id, kind = user.kind.as_str(), "user created");
            return Ok((user, code));
        }
        // The e-mail is taken (a concurrent insert has committed by now). Lock its user:
        // claims, verifications, state changes of one user run one at a time.
        let existing = storage::users::find_by_email_for_update(&mut tx, draft.email.as_str())
            .await?
            .ok_or(IdentityError::EmailTaken)?;
        if existing.state != UserState::Invited {
            return Err(IdentityError::EmailTaken);
        }
        let claim = PendingClaim {
            password_hash,
            display_name: draft.display_name.as_str().to_owned(),
            locale: draft.locale.as_str().to_owned(),
        };
        let code = self
            .request_verification(&mut tx, &existing, Some(&claim))
            .await?;
        tx.commit().await?;
        tracing::info!(user_id = %existing.user_id, "invited user claim awaits e-mail verification");
        Ok((
            User {
                email_verified: false,
                display_name: claim.display_name,
                locale: claim.locale,
                ..existing
            },
            code,
        ))
    }

    /// Creates a user for an operator or a service; without a password it is invited.
    pub async fn create_user(&self, caller: &Caller, draft: UserDraft) -> Result<User> {
        require_privileged(caller)?;
        if draft.kind == UserKind::Operator && !caller.is_operator() {
            return Err(IdentityError::Forbidden(
                "only operators may create operators",
            ));
        }
        Ok(self.insert_user(draft).await?.0)
    }

    /// Inserts a user with its events; returns it and the verification code it was sent.
    async fn insert_user(&self, draft: UserDraft) -> Result<(User, String)> {
        let password_hash = match &draft.password {
            Some(password) => Some(self.hasher.hash(password).await?),
            None => None,
        };
        let state = if password_hash.is_some() {
            UserState::Active
        } else {
            UserState::Invited
        };
        let mut tx = self.pool.begin().await?;
        let user = storage::users::insert(
            &mut tx,
            &NewUser {
                user_id: Uuid::now_v7(),
                email: draft.email.as_str(),
                email_verified: false,
                display_name: draft.display_name.as_str(),
                locale: draft.locale.as_str(),
                kind: draft.kind,
                state,
                password_hash: password_hash.as_deref(),
            },
        )
        .await
        .map_err(|error| match classify(&error) {
            DbErrorKind::UniqueViolation => IdentityError::EmailTaken,
            _ => error.into(),
        })?;
        events::append(&mut tx, &events::registered(&user)).await?;
        let code = self.request_verification(&mut tx, &user, None).await?;
        tx.commit().await?;
        tracing::info!(user_id = %user.user_id, kind = user.kind.as_str(), "user created");
        Ok((user, code))
    }

    /// Stores a new code for `user`, with the account claim it confirms if any (replacing
    /// any earlier code and claim), and emits the event that mails it. The mail greets the
    /// user by its stored name and language, never by what a claimant typed.
    async fn request_verification(
        &self,
        conn: &mut PgConnection,
        user: &User,
        claim: Option<&PendingClaim>,
    ) -> Result<String> {
        let code = verification_code()?;
        let expire_time = Utc::now() + self.settings.verification_code_ttl;
        storage::verifications::upsert(
            conn,
            user.user_id,
            &code_hash(user.user_id, &code),
            expire_time,
            claim,
        )
        .await?;
        events::append(
            conn,
            &events::verification_requested(user, &code, expire_time),
        )
        .await?;
        Ok(code)
    }

    /// Verifies a user's e-mail with its one-time code (single use, 24 h by default, at
    /// most five wrong tries). Unknown users get the same error as wrong codes. When the
    /// code confirms the account claim of a user that is still invited, the claimed
    /// password, display name and locale take effect and the user becomes active; a claim
    /// outlived by a state change (disabled, or activated otherwise) is dropped.
    pub async fn verify_email(
        &self,
        user_id: Uuid,
        code: &str,
        password: Option<&Password>,
    ) -> Result<User> {
        let mut tx = self.pool.begin().await?;
        // The user first, then its code: the order `register` takes them in, so a claim
        // and a verification of one user serialise instead of deadlocking.
        let Some(current) = storage::users::get_for_update(&mut tx, user_id).await? else {
            return Err(IdentityError::BadVerificationCode);
        };
        let Some(outstanding) = storage::verifications::get_for_update(&mut tx, user_id).await?
        else {
            return Err(IdentityError::BadVerificationCode);
        };
        if outstanding.expire_time <= Utc::now() {
            storage::verifications::delete(&mut tx, user_id).await?;
            tx.commit().await?;
            return Err(IdentityError::BadVerificationCode);
        }
        let presented = code_hash(user_id, code.trim());
        let code_matches = bool::from(presented.as_slice().ct_eq(&outstanding.code_hash));
        // A claim is confirmed only by whoever knows its password as well as the code: the
        // owner's mailbox may hold a code that answers someone else's later claim.
        let claim_matches = match (&outstanding.claim, current.state) {
            (Some(claim), UserState::Invited) if code_matches => match password {
                Some(password) => {
                    self.hasher
                        .verify(password, Some(&claim.password_hash))
                        .await?
                }
                None => false,
            },
            _ => true,
        };
        if !code_matches || !claim_matches {
            if outstanding.failed_attempts + 1 >= MAX_VERIFICATION_ATTEMPTS {
                storage::verifications::delete(&mut tx, user_id).await?;
            } else {
                storage::verifications::record_failure(&mut tx, user_id).await?;
            }
            tx.commit().await?;
            return Err(IdentityError::BadVerificationCode);
        }
        storage::verifications::delete(&mut tx, user_id).await?;
        let claimed = match &outstanding.claim {
            Some(claim) if current.state == UserState::Invited => {
                storage::users::complete_claim(
                    &mut tx,
                    user_id,
                    &claim.password_hash,
                    &claim.display_name,
                    &claim.locale,
                )
                .await?
            }
            _ => None,
        };
        let user = match claimed {
            Some(user) => {
                tracing::info!(user_id = %user_id, "invited user claimed its account");
                user
            }
            None => storage::users::mark_verified(&mut tx, user_id).await?,
        };
        events::append(&mut tx, &events::updated(&user)).await?;
        tx.commit().await?;
        Ok(user)
    }

    /// One user: customers only themselves.
    pub async fn get_user(&self, caller: &Caller, user_id: Uuid) -> Result<User> {
        require_self_or_privileged(caller, user_id)?;
        let mut conn = self.pool.acquire().await?;
        storage::users::get(&mut conn, user_id)
            .await?
            .ok_or(IdentityError::UserNotFound)
    }

    /// Up to 500 users; services and operators only.
    pub async fn batch_get_users(&self, caller: &Caller, user_ids: &[Uuid]) -> Result<Vec<User>> {
        require_privileged(caller)?;
        let mut conn = self.pool.acquire().await?;
        Ok(storage::users::get_many(&mut conn, user_ids).await?)
    }

    /// A user by e-mail: customers only themselves (anything else is "not found", so a
    /// customer learns nothing about other addresses).
    pub async fn lookup_user(&self, caller: &Caller, email: &Email) -> Result<User> {
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

    /// Changes display name and/or locale, guarded by the etag when one is given.
    pub async fn update_user(
        &self,
        caller: &Caller,
        user_id: Uuid,
        display_name: Option<DisplayName>,
        locale: Option<Locale>,
        etag: &str,
    ) -> Result<User> {
        require_self_or_privileged(caller, user_id)?;
        let expected = parse_etag("etag", etag)?;
        let mut tx = self.pool.begin().await?;
        let current = storage::users::get_for_update(&mut tx, user_id)
            .await?
            .ok_or(IdentityError::UserNotFound)?;
        if expected.is_some_and(|version| version != current.version) {
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

    /// Changes a password; the caller must be the user and know the current one. Every
    /// session of the user is revoked (sign in again everywhere).
    pub async fn change_password(
        &self,
        caller: &Caller,
        user_id: Uuid,
        current: &Password,
        new: &Password,
    ) -> Result<()> {
        if !caller.is_user(user_id) {
            return Err(IdentityError::Forbidden(
                "only the user may change its own password",
            ));
        }
        let mut conn = self.pool.acquire().await?;
        let hash = storage::users::password_hash(&mut conn, user_id).await?;
        drop(conn);
        if !self.hasher.verify(current, hash.as_deref()).await? {
            return Err(IdentityError::Invalid(vec![kc_runtime::Violation::new(
                "current_password",
                "current password is wrong",
            )]));
        }
        let new_hash = self.hasher.hash(new).await?;
        let mut tx = self.pool.begin().await?;
        storage::users::set_password(&mut tx, user_id, &new_hash).await?;
        storage::sessions::revoke_all_of_user(&mut tx, user_id, "password changed").await?;
        tx.commit().await?;
        tracing::info!(user_id = %user_id, "password changed");
        Ok(())
    }

    /// Disables or enables a user (operators and services). Disabling revokes its sessions.
    pub async fn set_enabled(&self, caller: &Caller, user_id: Uuid, enabled: bool) -> Result<User> {
        require_privileged(caller)?;
        let mut tx = self.pool.begin().await?;
        let current = storage::users::get_for_update(&mut tx, user_id)
            .await?
            .ok_or(IdentityError::UserNotFound)?;
        let target = match (enabled, current.state) {
            (false, _) => UserState::Disabled,
            (true, UserState::Disabled) => {
                if storage::users::password_hash(&mut tx, user_id)
                    .await?
                    .is_some()
                {
                    UserState::Active
                } else {
                    UserState::Invited
                }
            }
            (true, state) => state,
        };
        if target == current.state {
            tx.commit().await?;
            return Ok(current);
        }
        let user = storage::users::set_state(&mut tx, user_id, target).await?;
        if enabled {
            events::append(&mut tx, &events::enabled(&user)).await?;
        } else {
            storage::sessions::revoke_all_of_user(&mut tx, user_id, "user disabled").await?;
            events::append(&mut tx, &events::disabled(&user)).await?;
        }
        tx.commit().await?;
        tracing::info!(user_id = %user_id, state = user.state.as_str(), "user state changed");
        Ok(user)
    }

    /// Signs in with e-mail and password. Unknown e-mails and wrong passwords cost the
    /// same and fail the same way; five consecutive failures lock the e-mail for 15
    /// minutes whether or not an account has it.
    pub async fn authenticate(&self, email: &str, password: &Password) -> Result<SessionTokens> {
        // A malformed e-mail is just a failed sign-in: no field error that would differ.
        let email = email.trim().to_lowercase();
        if email.len() > MAX_EMAIL_BYTES {
            // Not an address anyone can have: same cost and answer, nothing stored.
            self.hasher.verify(password, None).await?;
            return Err(IdentityError::BadCredentials);
        }
        let threshold = self.settings.lockout_threshold as i32;
        let mut conn = self.pool.acquire().await?;
        // Count the attempt before hashing, atomically: concurrent guesses cannot all slip
        // past the lock while their hashes are being computed.
        match storage::throttle::reserve_attempt(&mut conn, &email).await? {
            storage::throttle::Attempt::Locked => return Err(IdentityError::Locked),
            storage::throttle::Attempt::Counted(attempts) if attempts > threshold => {
                storage::throttle::lock_if_exhausted(
                    &mut conn,
                    &email,
                    threshold,
                    self.settings.lockout_duration.as_secs_f64(),
                )
                .await?;
                return Err(IdentityError::Locked);
            }
            storage::throttle::Attempt::Counted(_) => {}
        }
        let found = storage::users::find_credentials(&mut conn, &email).await?;
        drop(conn);
        let hash = found.as_ref().and_then(|(_, hash)| hash.clone());
        let matches = self.hasher.verify(password, hash.as_deref()).await?;
        let mut tx = self.pool.begin().await?;
        let user = match found {
            Some((user, _)) if matches => user,
            _ => {
                storage::throttle::lock_if_exhausted(
                    &mut tx,
                    &email,
                    threshold,
                    self.settings.lockout_duration.as_secs_f64(),
                )
                .await?;
                tx.commit().await?;
                return Err(IdentityError::BadCredentials);
            }
        };
        storage::throttle::reset(&mut tx, &email).await?;
        if user.state == UserState::Disabled {
            tx.commit().await?;
            return Err(IdentityError::Disabled);
        }
        let refresh_token = refresh_token()?;
        storage::sessions::create(
            &mut tx,
            Uuid::now_v7(),
            user.user_id,
            Utc::now() + self.settings.session_ttl,
            &sha256(refresh_token.as_bytes()),
        )
        .await?;
        tx.commit().await?;
        self.session_tokens(user, refresh_token).await
    }

    /// Rotates a refresh token. A token that was already rotated revokes its whole family.
    pub async fn refresh(&self, presented: &str) -> Result<SessionTokens> {
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
            tx.commit().await?;
            tracing::warn!(session_id = %token.session_id, user_id = %token.user_id, "refresh token reuse detected; session revoked");
            return Err(IdentityError::RefreshTokenReused);
        }
        let user = storage::users::get(&mut tx, token.user_id)
            .await?
            .ok_or(IdentityError::BadRefreshToken)?;
        if user.state == UserState::Disabled {
            return Err(IdentityError::Disabled);
        }
        let refresh_token = refresh_token()?;
        storage::sessions::mark_used(&mut tx, &presented_hash).await?;
        storage::sessions::add_token(&mut tx, token.session_id, &sha256(refresh_token.as_bytes()))
            .await?;
        tx.commit().await?;
        self.session_tokens(user, refresh_token).await
    }

    /// Logs out: revokes the session of a refresh token. Unknown tokens are ignored (the
    /// outcome the caller wants holds either way).
    pub async fn revoke(&self, presented: &str) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        if let Some(token) =
            storage::sessions::find_for_update(&mut tx, &sha256(presented.trim().as_bytes()))
                .await?
        {
            storage::sessions::revoke(&mut tx, token.session_id, "logout").await?;
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
    pub async fn issue_service_token(&self, client_id: &str, secret: &str) -> Result<AccessToken> {
        let client_id =
            Uuid::parse_str(client_id.trim()).map_err(|_| IdentityError::BadClientCredentials)?;
        let mut conn = self.pool.acquire().await?;
        let (_name, stored) = storage::service_accounts::find(&mut conn, client_id)
            .await?
            .ok_or(IdentityError::BadClientCredentials)?;
        drop(conn);
        let presented = URL_SAFE_NO_PAD.encode(sha256(secret.trim().as_bytes()));
        if !bool::from(presented.as_bytes().ct_eq(stored.as_bytes())) {
            return Err(IdentityError::BadClientCredentials);
        }
        self.sign(client_id, CallerKind::Service, "").await
    }

    /// Creates a service account; returns its client id and secret (shown once).
    pub async fn create_service_account(&self, name: &str) -> Result<(Uuid, String)> {
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
        )
        .await
        .map_err(|error| match classify(&error) {
            DbErrorKind::UniqueViolation => IdentityError::ServiceAccountExists,
            _ => error.into(),
        })?;
        Ok((client_id, secret))
    }

    /// Creates the operator, or resets its password and re-enables it, ending every session
    /// the account had; idempotent.
    pub async fn bootstrap_operator(&self, email: &Email, password: &Password) -> Result<User> {
        let hash = self.hasher.hash(password).await?;
        let mut tx = self.pool.begin().await?;
        let display_name = email
            .as_str()
            .split('@')
            .next()
            .unwrap_or("operator")
            .to_owned();
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
            },
        )
        .await?;
        // Whoever held sessions of this account before (e.g. someone who registered the
        // address as a customer) must sign in again with the operator's password.
        storage::sessions::revoke_all_of_user(&mut tx, user.user_id, "operator bootstrapped")
            .await?;
        events::append(&mut tx, &events::updated(&user)).await?;
        tx.commit().await?;
        Ok(user)
    }

    /// What a sign-in or refresh returns: a new access token beside the refresh token.
    async fn session_tokens(&self, user: User, refresh_token: String) -> Result<SessionTokens> {
        let access = self.access_token_for(&user).await?;
        Ok(SessionTokens {
            access,
            refresh_token,
            user,
        })
    }

    async fn access_token_for(&self, user: &User) -> Result<AccessToken> {
        let kind = match user.kind {
            UserKind::Customer => CallerKind::Customer,
            UserKind::Operator => CallerKind::Operator,
        };
        self.sign(user.user_id, kind, &user.email).await
    }

    async fn sign(&self, subject: Uuid, kind: CallerKind, email: &str) -> Result<AccessToken> {
        let key = self.keys.signing_key().await?;
        let now = Utc::now();
        let expire_time = now + self.settings.access_token_ttl;
        let claims = Claims {
            sub: subject.to_string(),
            kind,
            email: email.to_owned(),
            iss: self.settings.issuer.clone(),
            aud: self.settings.audience.clone(),
            iat: now.timestamp(),
            exp: expire_time.timestamp(),
            jti: Uuid::new_v4().to_string(),
        };
        Ok(AccessToken {
            token: token::sign(&claims, &key.kid, &key.key),
            expire_time,
        })
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

/// Hash of a verification code, salted with the user id.
fn code_hash(user_id: Uuid, code: &str) -> Vec<u8> {
    let mut hasher = Sha256::new();
    hasher.update(user_id.as_bytes());
    hasher.update(code.as_bytes());
    hasher.finalize().to_vec()
}

/// A uniformly random 6-digit code.
fn verification_code() -> anyhow::Result<String> {
    loop {
        let mut bytes = [0u8; 4];
        getrandom::fill(&mut bytes)?;
        let value = u32::from_le_bytes(bytes);
        // Reject the top of the range so every code is equally likely.
        if value < u32::MAX - (u32::MAX % 1_000_000) {
            return Ok(format!("{:06}", value % 1_000_000));
        }
    }
}

fn random_token(bytes: usize) -> anyhow::Result<String> {
    let mut buffer = vec![0u8; bytes];
    getrandom::fill(&mut buffer)?;
    Ok(URL_SAFE_NO_PAD.encode(buffer))
}

fn refresh_token() -> anyhow::Result<String> {
    random_token(32)
}
