-- A request for a code while one is outstanding for the same (user, address) no longer
-- replaces it (a third party asking again and again would keep the owner from ever using
-- the code it holds): the same code is mailed again, as a new outbox event carrying a copy
-- of the sealed code. Every such event must lose its sealed code when the code ends, so the
-- row lists them all (outbox_event_id is the first, resent_event_ids the copies).
-- mail_time is when the address was last mailed for this row: mails for one address are
-- limited to one a minute.
ALTER TABLE email_verifications
    ADD COLUMN resent_event_ids uuid[] NOT NULL DEFAULT '{}',
    ADD COLUMN mail_time        timestamptz NOT NULL DEFAULT now();
CREATE INDEX email_verifications_mail_time_idx ON email_verifications (email, mail_time);

-- The periodic sweep forgets the wrong-code counters whose window and lock are over.
CREATE INDEX code_attempts_window_idx ON code_attempts (window_start);
