-- Issue: secrets at rest. The mails that carry one of identity's one-time codes
-- (NOTICE_KIND_EMAIL_VERIFICATION 20, INVITATION 28, PASSWORD_RESET 29,
-- EMAIL_CHANGE_VERIFICATION 30; rules I1, I2) keep their rendered parts only while the code
-- may still be mailed: once DELIVERED or DEAD (in the transaction that records it), or once
-- the code expired (the periodic sweep, which gives an unsent one up as DEAD), the text and
-- HTML parts are emptied and `redact_time` set. The subject never holds the code.

ALTER TABLE notifications
    -- Whether the rendered parts hold a one-time code (set from the kind at creation).
    ADD COLUMN carries_code     boolean NOT NULL DEFAULT false,
    -- When that code expires (identity's `expire_time`); NULL when identity gave none, or
    -- for notices without a code.
    ADD COLUMN code_expire_time timestamptz,
    -- When the rendered parts were emptied; NULL while they are kept.
    ADD COLUMN redact_time      timestamptz;

-- Notifications created before this migration: the kind tells which carry a code, and those
-- already DELIVERED or DEAD no longer need their parts.
UPDATE notifications SET carries_code = true WHERE kind IN (20, 28, 29, 30);
UPDATE notifications SET text_body = '', html_body = '', redact_time = now()
WHERE carries_code AND state IN (3, 5);

-- A redacted notification is final (DELIVERED or DEAD: nothing sends it again) and empty;
-- only a code mail is redacted.
ALTER TABLE notifications
    ADD CONSTRAINT notifications_redacted_check CHECK (
        redact_time IS NULL
        OR (carries_code AND state IN (3, 5) AND text_body = '' AND html_body = '')
    );

-- The sweep's queue: code mails still holding their code, by expiry.
CREATE INDEX notifications_code_expiry_idx ON notifications (code_expire_time)
    WHERE carries_code AND redact_time IS NULL AND code_expire_time IS NOT NULL;
