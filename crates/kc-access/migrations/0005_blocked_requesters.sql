-- Blocked requesters: e-mail addresses, and e-mail domains with their subdomains, whose users
-- may not ask for access to a site (their requests are refused like a wrong site number,
-- S3). Written by the site's approvers under the site's row lock; lifting a block deletes its
-- row (the audit trail keeps both changes, L1).
CREATE TABLE requester_blocks (
    block_id    uuid PRIMARY KEY,
    site_id     uuid NOT NULL REFERENCES sites (site_id),
    -- 1 an e-mail address, 2 an e-mail domain (and its subdomains).
    kind        smallint NOT NULL CHECK (kind IN (1, 2)),
    -- The lower-case address or domain; only an address holds an `@`.
    target      text NOT NULL CHECK (
        target = lower(target) AND length(target) BETWEEN 3 AND 254
        AND (kind = 1) = (strpos(target, '@') > 0)
    ),
    reason      text NOT NULL CHECK (length(reason) BETWEEN 1 AND 500),
    blocked_by  uuid NOT NULL,
    create_time timestamptz NOT NULL DEFAULT now(),
    -- One block per target and site; serves the check of a submission (target = ANY of the
    -- requester's address and domains) and the keyset pages in target order.
    UNIQUE (site_id, target)
);
