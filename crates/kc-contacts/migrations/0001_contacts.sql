-- Customers, sites, contacts and the audit trail of the contact registry.
-- Unqualified names resolve in the `contacts` schema (the pool's search_path).

-- A customer exists once it has a site; its first site is its original site.
CREATE TABLE customers (
    customer_number text PRIMARY KEY CHECK (customer_number ~ '^[0-9]{7,10}$'),
    create_time     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE sites (
    site_id                 uuid PRIMARY KEY,
    -- S2: unique, and the site belongs to exactly one customer.
    site_number             text NOT NULL UNIQUE CHECK (site_number ~ '^[0-9]{7,10}$'),
    customer_number         text NOT NULL REFERENCES customers (customer_number),
    name                    text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    country_code            text NOT NULL CHECK (country_code ~ '^[A-Z]{2}$'),
    language                text NOT NULL CHECK (length(language) BETWEEN 2 AND 35),
    program                 text NOT NULL CHECK (program IN ('passport_advantage', 'passport_advantage_express')),
    support_active          boolean NOT NULL,
    support_end_date        date,
    business_partner_email  text CHECK (length(business_partner_email) <= 254),
    -- C3: the administrative contact may manage access when the primary allows it.
    admin_may_manage_access boolean NOT NULL DEFAULT false,
    is_original_site        boolean NOT NULL,
    version                 bigint NOT NULL DEFAULT 1,
    create_time             timestamptz NOT NULL DEFAULT now(),
    update_time             timestamptz NOT NULL DEFAULT now()
);
-- A customer has exactly one original site, even when its first sites are created at once.
CREATE UNIQUE INDEX sites_one_original_per_customer ON sites (customer_number) WHERE is_original_site;
CREATE INDEX sites_customer_idx ON sites (customer_number, site_number);

-- One role held by one user on one site.
CREATE TABLE contacts (
    contact_id         uuid PRIMARY KEY,
    site_id            uuid NOT NULL REFERENCES sites (site_id),
    user_id            uuid NOT NULL,
    -- The proto enum number of ContactRole: 1 PRIMARY, 2 ADMINISTRATIVE, 3 SITE_TECHNICAL,
    -- 4 SECONDARY, 5 RENEWAL, 6 SHIPPING, 7 BILLING, 8 SITE_USER (also the display order).
    role               smallint NOT NULL CHECK (role BETWEEN 1 AND 8),
    phone              text CHECK (phone ~ '^\+[0-9]{7,15}$'),
    job_title          text CHECK (length(job_title) <= 100),
    notification_email text CHECK (length(notification_email) <= 254),
    version            bigint NOT NULL DEFAULT 1,
    create_time        timestamptz NOT NULL DEFAULT now(),
    update_time        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT contacts_one_role_per_user UNIQUE (site_id, user_id, role)
);
-- C1, C3, C5, C6: PRIMARY, ADMINISTRATIVE, SITE_TECHNICAL, RENEWAL, SHIPPING and BILLING
-- have at most one holder per site. (SECONDARY's limit of 4 is checked under the site lock.)
CREATE UNIQUE INDEX contacts_single_holder ON contacts (site_id, role) WHERE role IN (1, 2, 3, 5, 6, 7);
CREATE INDEX contacts_site_order_idx ON contacts (site_id, role, contact_id);
CREATE INDEX contacts_user_idx ON contacts (user_id, contact_id);

-- L1: every change, with its actor and before/after values. Append-only.
CREATE TABLE audit_records (
    audit_id    bigserial PRIMARY KEY,
    site_id     uuid NOT NULL,
    actor_id    uuid NOT NULL,
    via_service uuid,
    action      text NOT NULL,
    resource_id text NOT NULL,
    before      jsonb,
    after       jsonb,
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
