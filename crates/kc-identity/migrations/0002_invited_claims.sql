-- An invited user (created without a password) claims its account through RegisterUser: the
-- password it chose waits here, beside the code mailed to the address, until VerifyEmail
-- proves the address. Code and pending password live and die together: a later claim
-- replaces both (the last one wins), and a used, expired or worn-out code takes its pending
-- password with it. Only the argon2id PHC string of the password is kept.
ALTER TABLE email_verifications
    ADD COLUMN pending_password_hash text,
    -- Display name and locale given with the claim, applied only once the code is verified
    -- (never on RegisterUser alone, so that nobody without the code can change them).
    ADD COLUMN pending_display_name  text CHECK (length(pending_display_name) BETWEEN 1 AND 200),
    ADD COLUMN pending_locale        text,
    ADD CONSTRAINT email_verifications_claim_complete CHECK (
        (pending_password_hash IS NULL) = (pending_display_name IS NULL)
        AND (pending_password_hash IS NULL) = (pending_locale IS NULL)
    );
