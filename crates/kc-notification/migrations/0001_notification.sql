-- Notification: projections of the contact registry's sites and contacts, the idempotency
-- keys of SendNotice, the notifications with their rendered content and delivery state, and
-- every delivery attempt.
-- Unqualified names resolve in the `notification` schema (the pool's search_path).

-- Projection of the registry's sites (from its WatchEvents): what notices show and the
-- fallback language of N1.
CREATE TABLE sites (
    site_id     uuid PRIMARY KEY,
    site_number text NOT NULL,
    name        text NOT NULL,
    -- BCP-47 language of the site, e.g. `fr`.
    language    text NOT NULL,
    update_time timestamptz NOT NULL DEFAULT now()
);

-- Projection of the registry's contacts: one row per role a user holds on a site, with the
-- contact's notification e-mail (C9).
CREATE TABLE site_contacts (
    contact_id         uuid PRIMARY KEY,
    site_id            uuid NOT NULL REFERENCES sites (site_id),
    user_id            uuid NOT NULL,
    -- The proto number of keycontacts.contacts.v1.ContactRole: 1 PRIMARY … 8 SITE_USER.
    role               smallint NOT NULL CHECK (role BETWEEN 1 AND 8),
    -- Empty when notices go to the login e-mail.
    notification_email text NOT NULL DEFAULT ''
);
CREATE INDEX site_contacts_site_user_idx ON site_contacts (site_id, user_id);
CREATE INDEX site_contacts_site_role_idx ON site_contacts (site_id, role);

-- N3: the idempotency keys of SendNotice. Inserted in the transaction that creates the
-- notice's notifications: of two calls with one key, one inserts, the other finds it.
CREATE TABLE notices (
    idempotency_key text PRIMARY KEY CHECK (char_length(idempotency_key) BETWEEN 1 AND 200),
    site_id         uuid NOT NULL,
    -- The proto number of NoticeKind.
    kind            smallint NOT NULL,
    create_time     timestamptz NOT NULL DEFAULT now()
);

-- One e-mail to one recipient about one event or notice, rendered when it was created.
CREATE TABLE notifications (
    -- UUIDv7.
    notification_id   uuid PRIMARY KEY,
    -- N3: what it comes from (`identity:<event id>`, `contacts:<event id>`,
    -- `access:<event id>`, `notice:<idempotency key>`) and who it goes to (the user id,
    -- or `partner:<email>`): one notification per source, recipient and kind.
    source_key        text NOT NULL,
    recipient_key     text NOT NULL,
    -- The proto number of NoticeKind.
    kind              smallint NOT NULL,
    site_id           uuid,
    recipient_user_id uuid,
    email             text NOT NULL,
    -- `fr` or `en` (N1).
    locale            text NOT NULL CHECK (locale IN ('fr', 'en')),
    subject           text NOT NULL,
    text_body         text NOT NULL,
    html_body         text NOT NULL,
    -- Why this recipient, citing the rule.
    rule              text NOT NULL,
    -- `<service>:<event id>`; empty for SendNotice.
    source_event_id   text NOT NULL DEFAULT '',
    idempotency_key   text REFERENCES notices (idempotency_key),
    -- The proto number of NotificationState: 1 PENDING, 2 SENDING, 3 DELIVERED, 4 FAILED,
    -- 5 DEAD.
    state             smallint NOT NULL DEFAULT 1 CHECK (state BETWEEN 1 AND 5),
    -- When a worker may take it: the next attempt (PENDING, FAILED) or the end of the
    -- current lease (SENDING); NULL once DELIVERED or DEAD.
    due_time          timestamptz DEFAULT now(),
    -- The worker holding the lease while SENDING.
    lease_owner       uuid,
    -- Attempts so far (the current one while SENDING), and the count when the current round
    -- began (RetryNotification starts a new round of --max-attempts).
    attempt_count     integer NOT NULL DEFAULT 0,
    round_start       integer NOT NULL DEFAULT 0,
    -- Start of the current attempt.
    attempt_time      timestamptz,
    create_time       timestamptz NOT NULL DEFAULT now(),
    deliver_time      timestamptz,
    update_time       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (source_key, recipient_key, kind),
    CHECK ((state IN (3, 5)) = (due_time IS NULL)),
    CHECK ((state = 2) = (lease_owner IS NOT NULL))
);
-- The workers' queue: what is due, oldest first.
CREATE INDEX notifications_due_idx ON notifications (due_time) WHERE due_time IS NOT NULL;
-- ListNotifications: newest first, keyset (create_time, notification_id), by filter.
CREATE INDEX notifications_newest_idx ON notifications (create_time DESC, notification_id DESC);
CREATE INDEX notifications_site_idx
    ON notifications (site_id, create_time DESC, notification_id DESC);
CREATE INDEX notifications_recipient_idx
    ON notifications (recipient_user_id, create_time DESC, notification_id DESC);
CREATE INDEX notifications_state_idx
    ON notifications (state, create_time DESC, notification_id DESC);
CREATE INDEX notifications_key_idx ON notifications (idempotency_key) WHERE idempotency_key IS NOT NULL;

-- N3: every delivery attempt.
CREATE TABLE attempts (
    notification_id uuid NOT NULL REFERENCES notifications (notification_id),
    attempt         integer NOT NULL CHECK (attempt >= 1),
    -- When it started.
    attempt_time    timestamptz NOT NULL,
    -- The proto number of AttemptOutcome: 1 DELIVERED, 2 TRANSIENT_FAILURE,
    -- 3 PERMANENT_FAILURE, 4 ABANDONED.
    outcome         smallint NOT NULL CHECK (outcome BETWEEN 1 AND 4),
    -- The SMTP reply code; 0 when there was none.
    smtp_code       integer NOT NULL DEFAULT 0,
    detail          text NOT NULL DEFAULT '',
    record_time     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (notification_id, attempt)
);
