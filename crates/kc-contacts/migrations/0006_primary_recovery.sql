-- Rule C12: a site whose primary contact is gone (disabled, or unreachable) is recovered.
-- Another contact of the site, or a proven user of one of its contact domains, asks; the
-- old primary may refuse during a waiting period; after it, an operator attests the
-- transfer with a reason. A request that nobody attests expires.
--
-- `state` is the stored state: 'open' until exactly one of 'refused', 'attested' or
-- 'expired'. Whether an open request is still in its waiting period, or lapsed, follows
-- from `waiting_end_time` and `expire_time` (the registry reads them at the same moment
-- it decides; a lapsed open request is stored 'expired' the next time the site is written).
CREATE TABLE primary_recoveries (
    recovery_id             uuid PRIMARY KEY,
    site_id                 uuid NOT NULL REFERENCES sites (site_id),
    requester_id            uuid NOT NULL,
    -- Why the requester may ask: it is a contact of the site ('contact'), or a proven user
    -- whose login e-mail is in the domain of the contact `vouching_user_id` ('domain').
    basis                   text NOT NULL CHECK (basis IN ('contact', 'domain')),
    vouching_user_id        uuid,
    previous_primary_id     uuid NOT NULL,
    reason                  text NOT NULL CHECK (length(reason) BETWEEN 1 AND 1000),
    state                   text NOT NULL DEFAULT 'open'
        CHECK (state IN ('open', 'refused', 'attested', 'expired')),
    request_time            timestamptz NOT NULL,
    waiting_end_time        timestamptz NOT NULL,
    expire_time             timestamptz NOT NULL,
    decided_by              uuid,
    decision_reason         text CHECK (length(decision_reason) <= 1000),
    decide_time             timestamptz,
    new_primary_id          uuid,
    version                 bigint NOT NULL DEFAULT 1,
    CHECK (request_time < waiting_end_time AND waiting_end_time < expire_time),
    CHECK ((basis = 'domain') = (vouching_user_id IS NOT NULL)),
    -- A decided request names who decided, why and when; an attested one its new primary.
    CHECK ((state = 'open') = (decide_time IS NULL)),
    CHECK ((state IN ('refused', 'attested')) = (decided_by IS NOT NULL AND decision_reason IS NOT NULL)),
    CHECK ((state = 'attested') = (new_primary_id IS NOT NULL))
);
-- Rule C12: one open recovery per site, whoever asks and however many ask at once.
CREATE UNIQUE INDEX primary_recoveries_one_open_per_site
    ON primary_recoveries (site_id) WHERE state = 'open';
CREATE INDEX primary_recoveries_site_idx ON primary_recoveries (site_id, request_time DESC);
