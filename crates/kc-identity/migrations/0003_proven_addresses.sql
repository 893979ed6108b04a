-- Issue 13: proven addresses (I1), no enumeration (I2), confusable addresses (I3), token
-- revocation (I4), and codes that are never kept or published in plaintext.

-- I1: an account in state 'invited' is UNPROVEN: it holds nothing and cannot sign in. A
-- customer that was active without ever proving its address becomes unproven: it proves
-- its address again (RegisterUser then VerifyEmail, or RequestPasswordReset then
-- ResetPassword), and its sessions end.
UPDATE sessions SET revoke_time = now(), revoke_reason = 'address not proven'
WHERE revoke_time IS NULL AND user_id IN (
    SELECT user_id FROM users WHERE kind = 'customer' AND state = 'active' AND NOT email_verified
);
UPDATE users SET state = 'invited', password_hash = NULL, version = version + 1, update_time = now()
WHERE kind = 'customer' AND state = 'active' AND NOT email_verified;
-- An unproven account never has a password: it waits beside the code as a pending claim.
UPDATE users SET password_hash = NULL WHERE state = 'invited' AND password_hash IS NOT NULL;

-- I3: the confusable skeleton (UTS #39) of the login e-mail, computed by the service (rows
-- older than this column get theirs when identity starts). No two accounts with a PROVEN
-- address share a skeleton; unproven accounts may (whoever proves first owns the look of
-- the address, and a stranger's unproven look-alike can never keep the owner of an address
-- out).
ALTER TABLE users ADD COLUMN email_skeleton text;
CREATE UNIQUE INDEX users_email_skeleton_proven_key ON users (email_skeleton)
    WHERE email_verified;
CREATE INDEX users_email_skeleton_idx ON users (email_skeleton);

-- Codes: only an HMAC under a subkey of the key-encryption key stands for a code. Codes of
-- the old scheme (SHA-256, and published in plaintext in the outbox) are void: their rows
-- go, and so do the outbox events that carried them, so that no code stays readable.
DELETE FROM email_verifications;
DELETE FROM outbox_events WHERE event_type = 'user.email_verification_requested';
ALTER TABLE email_verifications DROP CONSTRAINT email_verifications_pkey;
ALTER TABLE email_verifications
    -- The address the code was mailed to: the login e-mail, or the new one of ChangeEmail.
    ADD COLUMN email           text NOT NULL,
    ADD COLUMN purpose         text NOT NULL
        CHECK (purpose IN ('registration', 'invitation', 'password_reset', 'email_change')),
    -- Long codes (20 Crockford base32 characters) are mailed while the address is locked;
    -- they are never withdrawn by wrong guesses, so a third party cannot keep the owner out.
    ADD COLUMN long_code       boolean NOT NULL DEFAULT false,
    -- The outbox event that carries the sealed code: its sealed code is dropped as soon as
    -- the code is used, replaced, withdrawn or expired.
    ADD COLUMN outbox_event_id uuid NOT NULL,
    ADD PRIMARY KEY (user_id, email),
    ADD CONSTRAINT email_verifications_claim_purpose CHECK (
        pending_password_hash IS NULL OR purpose = 'registration'
    );
CREATE INDEX email_verifications_email_idx ON email_verifications (email);
CREATE INDEX email_verifications_expire_idx ON email_verifications (expire_time);
COMMENT ON COLUMN email_verifications.code_hash IS
    'HMAC-SHA256 of the code under the verification-code subkey of the key-encryption key';

-- Wrong codes per address (normalised e-mail, whether or not an account has it), across
-- codes: at 20 within 24 h the address locks for 24 h (short codes withdrawn and refused).
CREATE TABLE code_attempts (
    email        text PRIMARY KEY,
    failures     integer NOT NULL DEFAULT 0,
    window_start timestamptz NOT NULL DEFAULT now(),
    locked_until timestamptz
);

-- Sign-in attempts whose password is being checked. Only failures count against the lock
-- (sign_in_throttle.failures), but failures + attempts in flight never pass the threshold,
-- so concurrent guesses cannot outrun it. A reservation older than a minute is forgotten
-- (its process died).
CREATE TABLE sign_in_attempts (
    attempt_id uuid PRIMARY KEY,
    email      text NOT NULL,
    start_time timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sign_in_attempts_email_idx ON sign_in_attempts (email, start_time);

-- I4: access tokens that no longer count: those of user_id issued at or before
-- issued_before, of one session only when session_id is set. Kept until every token it
-- covers has expired (expire_time), streamed by WatchRevocations.
CREATE TABLE token_revocations (
    revocation_id uuid PRIMARY KEY,
    user_id       uuid NOT NULL,
    session_id    uuid,
    issued_before timestamptz NOT NULL,
    expire_time   timestamptz NOT NULL,
    create_time   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX token_revocations_user_idx ON token_revocations (user_id, expire_time);
CREATE INDEX token_revocations_expire_idx ON token_revocations (expire_time);
