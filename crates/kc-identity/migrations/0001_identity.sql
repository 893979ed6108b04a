-- Users, credentials, sessions, signing keys and service accounts of the identity service.
-- Unqualified names resolve in the `identity` schema (the pool's search_path).

CREATE TABLE users (
    user_id        uuid PRIMARY KEY,
    -- Trimmed and lowercased by the application; unique case-insensitively.
    email          text NOT NULL CHECK (email = lower(btrim(email)) AND length(email) BETWEEN 3 AND 254),
    email_verified boolean NOT NULL DEFAULT false,
    display_name   text NOT NULL CHECK (length(display_name) BETWEEN 1 AND 200),
    locale         text NOT NULL,
    kind           text NOT NULL CHECK (kind IN ('customer', 'operator')),
    state          text NOT NULL CHECK (state IN ('active', 'invited', 'disabled')),
    -- argon2id PHC string; NULL while invited.
    password_hash  text,
    version        bigint NOT NULL DEFAULT 1,
    create_time    timestamptz NOT NULL DEFAULT now(),
    update_time    timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_key ON users (email);

-- One outstanding e-mail verification per user; only the code's SHA-256 is kept.
CREATE TABLE email_verifications (
    user_id         uuid PRIMARY KEY REFERENCES users (user_id) ON DELETE CASCADE,
    code_hash       bytea NOT NULL,
    expire_time     timestamptz NOT NULL,
    failed_attempts integer NOT NULL DEFAULT 0,
    create_time     timestamptz NOT NULL DEFAULT now()
);

-- Failed sign-in attempts per normalised e-mail, whether or not a user has it, so that a
-- lock never tells whether an account exists.
CREATE TABLE sign_in_throttle (
    email        text PRIMARY KEY,
    failures     integer NOT NULL DEFAULT 0,
    locked_until timestamptz,
    update_time  timestamptz NOT NULL DEFAULT now()
);

-- A session family: every refresh token rotated from one sign-in.
CREATE TABLE sessions (
    session_id    uuid PRIMARY KEY,
    user_id       uuid NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    create_time   timestamptz NOT NULL DEFAULT now(),
    expire_time   timestamptz NOT NULL,
    revoke_time   timestamptz,
    revoke_reason text
);
CREATE INDEX sessions_user_idx ON sessions (user_id);

-- Refresh tokens by SHA-256; a token with used_time set was rotated and must not come back.
CREATE TABLE refresh_tokens (
    token_hash  bytea PRIMARY KEY,
    session_id  uuid NOT NULL REFERENCES sessions (session_id) ON DELETE CASCADE,
    create_time timestamptz NOT NULL DEFAULT now(),
    used_time   timestamptz
);
CREATE INDEX refresh_tokens_session_idx ON refresh_tokens (session_id);

-- Ed25519 keys. The newest unretired key signs; retired keys verify until tokens expire.
CREATE TABLE signing_keys (
    kid         text PRIMARY KEY,
    private_key bytea NOT NULL CHECK (length(private_key) = 32),
    public_key  bytea NOT NULL CHECK (length(public_key) = 32),
    create_time timestamptz NOT NULL DEFAULT clock_timestamp(),
    retire_time timestamptz
);
-- At most one key signs at a time.
CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys ((true)) WHERE retire_time IS NULL;

-- Machine accounts of other services. The secret is 256 random bits, so its SHA-256 is
-- enough to keep (no slow hash needed) and is all that is kept.
CREATE TABLE service_accounts (
    client_id   uuid PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 100),
    secret_hash text NOT NULL,
    create_time timestamptz NOT NULL DEFAULT now()
);
