-- Access management: projections of the contact registry and identity, explicit grants,
-- access requests, e-mail domain policies and the audit trail.
-- Unqualified names resolve in the `access` schema (the pool's search_path).

-- Projection of the contact registry's sites (from its WatchEvents): what rights depend on.
CREATE TABLE sites (
    site_id                 uuid PRIMARY KEY,
    -- S2: unique; S3 looks a site up by site number and customer number together.
    site_number             text NOT NULL UNIQUE,
    customer_number         text NOT NULL,
    -- C3: the administrative contact may manage access when the primary allows it (T3).
    admin_may_manage_access boolean NOT NULL DEFAULT false,
    update_time             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sites_numbers_idx ON sites (site_number, customer_number);

-- Projection of the registry's contacts: one row per role a user holds on a site.
CREATE TABLE site_roles (
    site_id uuid NOT NULL REFERENCES sites (site_id),
    user_id uuid NOT NULL,
    -- The proto number of keycontacts.contacts.v1.ContactRole: 1 PRIMARY, 2 ADMINISTRATIVE,
    -- 3 SITE_TECHNICAL, 4 SECONDARY, 5 RENEWAL, 6 SHIPPING, 7 BILLING, 8 SITE_USER.
    role    smallint NOT NULL CHECK (role BETWEEN 1 AND 8),
    PRIMARY KEY (site_id, user_id, role)
);
CREATE INDEX site_roles_user_idx ON site_roles (user_id, site_id);
CREATE INDEX site_roles_role_idx ON site_roles (site_id, role);

-- Projection of identity's users: the login e-mail (A7) and whether the user is disabled.
CREATE TABLE users (
    user_id        uuid PRIMARY KEY,
    email          text NOT NULL,
    email_verified boolean NOT NULL,
    disabled       boolean NOT NULL,
    update_time    timestamptz NOT NULL DEFAULT now()
);

-- Explicit grants of one user on one site: one rank per tool (0 = NONE) and the support
-- rank (0 = NO_ACCESS). A revoked grant keeps its row (all zeros) so its version, the
-- profile's etag, keeps counting up.
CREATE TABLE grants (
    site_id            uuid NOT NULL REFERENCES sites (site_id),
    user_id            uuid NOT NULL,
    software           smallint NOT NULL DEFAULT 0 CHECK (software BETWEEN 0 AND 3),
    reporting          smallint NOT NULL DEFAULT 0 CHECK (reporting BETWEEN 0 AND 1),
    entitlements       smallint NOT NULL DEFAULT 0 CHECK (entitlements BETWEEN 0 AND 2),
    account_management smallint NOT NULL DEFAULT 0 CHECK (account_management BETWEEN 0 AND 1),
    manage_access      smallint NOT NULL DEFAULT 0 CHECK (manage_access BETWEEN 0 AND 2),
    contact_updates    smallint NOT NULL DEFAULT 0 CHECK (contact_updates BETWEEN 0 AND 2),
    account_documents  smallint NOT NULL DEFAULT 0 CHECK (account_documents BETWEEN 0 AND 1),
    support            smallint NOT NULL DEFAULT 0 CHECK (support BETWEEN 0 AND 3),
    any_grant          boolean GENERATED ALWAYS AS (
        software > 0 OR reporting > 0 OR entitlements > 0 OR account_management > 0
        OR manage_access > 0 OR contact_updates > 0 OR account_documents > 0 OR support > 0
    ) STORED,
    version            bigint NOT NULL DEFAULT 1,
    -- T5: who changed them last (NULL when a domain policy did, A7), and when.
    updated_by         uuid,
    update_time        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site_id, user_id)
);
CREATE INDEX grants_user_idx ON grants (user_id, site_id);

-- Access requests (A1, A5, A6). Levels are arrays of 8 ranks: the seven tools in the order
-- of DOMAIN.md, then support.
CREATE TABLE access_requests (
    request_id      uuid PRIMARY KEY,
    site_id         uuid NOT NULL REFERENCES sites (site_id),
    requester_id    uuid NOT NULL,
    -- 1 SITE_ACCESS, 2 SUPPORT_ACCESS (the proto numbers).
    kind            smallint NOT NULL CHECK (kind IN (1, 2)),
    requested       smallint[] NOT NULL CHECK (cardinality(requested) = 8),
    justification   text NOT NULL DEFAULT '' CHECK (length(justification) <= 1000),
    -- 1 PENDING, 2 APPROVED, 3 REJECTED, 4 CANCELLED, 5 EXPIRED (the proto numbers).
    state           smallint NOT NULL DEFAULT 1 CHECK (state BETWEEN 1 AND 5),
    decided_by      uuid,
    granted         smallint[] CHECK (cardinality(granted) = 8),
    decision_reason text CHECK (length(decision_reason) <= 500),
    matched_domain  text,
    auto_approved   boolean NOT NULL DEFAULT false,
    create_time     timestamptz NOT NULL DEFAULT now(),
    decide_time     timestamptz,
    expire_time     timestamptz NOT NULL,
    version         bigint NOT NULL DEFAULT 1,
    -- A6: a decided request has its decision time; an approved one its grant.
    CHECK ((state = 1) = (decide_time IS NULL)),
    CHECK ((state = 2) = (granted IS NOT NULL))
);
-- A6: one user has at most one PENDING request per site and kind, however many submit at once.
CREATE UNIQUE INDEX access_requests_one_pending
    ON access_requests (site_id, requester_id, kind) WHERE state = 1;
CREATE INDEX access_requests_site_idx ON access_requests (site_id, request_id DESC);
CREATE INDEX access_requests_requester_idx ON access_requests (requester_id, request_id DESC);
CREATE INDEX access_requests_expiry_idx ON access_requests (expire_time) WHERE state = 1;

-- E-mail domain policies of a site (A7).
CREATE TABLE domain_policies (
    site_id     uuid NOT NULL REFERENCES sites (site_id),
    domain      text NOT NULL CHECK (domain = lower(domain) AND length(domain) BETWEEN 3 AND 253),
    -- 1 MANUAL, 2 AUTO_PENDING, 3 AUTO_APPROVE (the proto numbers).
    policy      smallint NOT NULL CHECK (policy BETWEEN 1 AND 3),
    baseline    smallint[] NOT NULL CHECK (cardinality(baseline) = 8),
    version     bigint NOT NULL DEFAULT 1,
    updated_by  uuid NOT NULL,
    update_time timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site_id, domain)
);

-- L1, T5: every change, with its actor, before/after values and reason. Append-only.
CREATE TABLE audit_records (
    audit_id    bigserial PRIMARY KEY,
    site_id     uuid NOT NULL,
    -- NULL for changes the service makes itself (expiry, domain policy approvals).
    actor_id    uuid,
    via_service uuid,
    action      text NOT NULL,
    resource_id text NOT NULL,
    before      jsonb,
    after       jsonb,
    reason      text NOT NULL DEFAULT '',
    create_time timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_records_site_idx ON audit_records (site_id, audit_id DESC);

CREATE FUNCTION audit_records_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit records are append-only (rule L1)';
END;
$$;
CREATE TRIGGER audit_records_append_only
    BEFORE UPDATE OR DELETE ON audit_records
    FOR EACH ROW EXECUTE FUNCTION audit_records_append_only();
