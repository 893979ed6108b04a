-- S&S life: renewal reminders 90, 60 and 30 days before a site's last day of S&S, and the
-- lapse after it (kc_contacts::support_life).

-- One row per reminder published: the registry's sweeper inserts it in the transaction that
-- appends the reminder's event to the outbox, so a reminder of a site, last day and
-- milestone is published once across restarts and replicas (the key refuses a second).
-- A site whose end date moves gets the reminders of its new date (another key).
CREATE TABLE support_reminders (
    site_id          uuid        NOT NULL REFERENCES sites (site_id),
    support_end_date date        NOT NULL,
    -- Days before the last day: 90, 60 or 30.
    milestone_days   smallint    NOT NULL CHECK (milestone_days IN (90, 60, 30)),
    create_time      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site_id, support_end_date, milestone_days)
);

-- The sweeper's scans: sites with active S&S by their last day.
CREATE INDEX sites_support_end_idx ON sites (support_end_date, site_id)
    WHERE support_active AND support_end_date IS NOT NULL;

-- The lapse is a change the registry makes itself: its audit record names no actor
-- (kc_runtime::audit: `actor_id` is nullable where the service makes changes itself).
ALTER TABLE audit_records ALTER COLUMN actor_id DROP NOT NULL;
