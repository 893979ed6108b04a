-- Compliance (issue 17): what the registry keeps of other services to report, per site and
-- over the portfolio in one keyset query, the gaps it cannot see in its own tables.

-- Projection of identity's users (consumer `contacts.identity`, cursor in `event_cursors`):
-- each account's lifecycle state (I1, I4) and its login e-mail (where a contact's notices go
-- when it has no notification e-mail, C9). Upserted from every event that carries the user
-- (registered, updated, disabled, enabled); a user never seen is unknown, not a gap.
CREATE TABLE user_states (
    user_id uuid PRIMARY KEY,
    -- Trimmed and lower case, as identity keeps it.
    email   text NOT NULL,
    -- The proto number of identity's UserState: 1 ACTIVE, 2 INVITED, 3 DISABLED.
    state   smallint NOT NULL CHECK (state BETWEEN 1 AND 3)
);
CREATE INDEX user_states_email_idx ON user_states (email);

-- Projection of notification's delivery outcomes (consumer `contacts.notification`): the
-- addresses whose last notice was given up (DEAD) after a permanent (5xx) reply of the mail
-- server. A later delivery to the address removes it; the last outcome in commit order wins.
CREATE TABLE failing_addresses (
    -- Lower case.
    email           text PRIMARY KEY,
    -- The notification given up, and the mail server's reply code.
    notification_id uuid NOT NULL,
    smtp_code       integer NOT NULL CHECK (smtp_code BETWEEN 500 AND 599),
    fail_time       timestamptz NOT NULL
);

-- The notification e-mails of contacts, to find the contacts of a failing address.
CREATE INDEX contacts_notification_email_idx ON contacts (lower(notification_email))
    WHERE notification_email IS NOT NULL AND notification_email <> '';
