-- Rule C11: a new notification e-mail (C9) is not used until its owner confirms it with a
-- code mailed to it. `notification_email` stays the confirmed address (the one notices go
-- to); the address asked for waits in `pending_notification_email` with what stands for its
-- code (SHA-256 of the 100-bit code: only a hash, never the code), its expiry, the outbox
-- event that carries the code sealed to notification's key (rewritten with the code emptied
-- once the code is over) and the wrong codes tried against it.

ALTER TABLE contacts
    ADD COLUMN pending_notification_email text CHECK (length(pending_notification_email) <= 254),
    ADD COLUMN pending_code_hash          bytea,
    ADD COLUMN pending_expire_time        timestamptz,
    ADD COLUMN pending_event_id           uuid,
    ADD COLUMN pending_failed_attempts    integer NOT NULL DEFAULT 0
        CHECK (pending_failed_attempts >= 0),
    -- A pending address always has its code, expiry and event; without one, none of them.
    ADD CONSTRAINT contacts_pending_complete CHECK (
        (pending_notification_email IS NULL
            AND pending_code_hash IS NULL
            AND pending_expire_time IS NULL
            AND pending_event_id IS NULL)
        OR (pending_notification_email IS NOT NULL
            AND length(pending_code_hash) = 32
            AND pending_expire_time IS NOT NULL
            AND pending_event_id IS NOT NULL)
    );

-- Confirmation looks a code up by its hash; the sweep finds expired ones by expiry.
CREATE INDEX contacts_pending_code_idx ON contacts (pending_code_hash)
    WHERE pending_code_hash IS NOT NULL;
CREATE INDEX contacts_pending_expiry_idx ON contacts (pending_expire_time)
    WHERE pending_expire_time IS NOT NULL;

-- Notification e-mails set before this migration were never confirmed: they stay in use
-- (their owners chose them before the rule existed); every new one goes through C11.
