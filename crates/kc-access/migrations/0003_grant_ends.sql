-- T9: a grant may have a start and an end. Both belong to the explicit grants of one user on
-- one site as a whole (the row): they count in [valid_from, valid_until); at the start the
-- sweeper clears valid_from (publishing the change), at the end it removes the grants as a
-- revocation would.
ALTER TABLE grants
    -- When the explicit grants start counting; NULL: they count (started, or no start).
    ADD COLUMN valid_from         timestamptz,
    -- When the explicit grants end; NULL: they do not. Only a row holding a grant has one.
    ADD COLUMN valid_until        timestamptz,
    -- When the "ending soon" notice (7 days ahead) was published for this end; NULL: not yet.
    -- A new end clears it, so each end is announced exactly once.
    ADD COLUMN ending_notice_time timestamptz;

-- The sweeper finds due ends and ends coming within the notice window by time.
CREATE INDEX grants_valid_until_idx ON grants (valid_until) WHERE valid_until IS NOT NULL;
CREATE INDEX grants_valid_from_idx ON grants (valid_from) WHERE valid_from IS NOT NULL;
