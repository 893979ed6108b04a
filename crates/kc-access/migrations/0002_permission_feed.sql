-- The permission feed (issue 15, WatchPermissionChanges): the effective permissions of every
-- user on every site, as the rights model (kc-rights, T3) computes them from grants, the
-- projected roles and users. A row means "allowed"; its absence, denied. Every change of
-- grants, roles, site facts (C3) or users recomputes the rows concerned in its own
-- transaction and publishes one `permission.changed` event per row added or removed, so the
-- outbox gives the changes in commit order, each exactly once.
-- No foreign key to `sites`: its check would take a key-share lock on the site's row, and a
-- refresh of a user on every site (identity enabling it) must not wait for a site's row that
-- a write holds while it waits for that user's lock (see permission_feed.rs). Sites are never
-- deleted from the projection.
CREATE TABLE effective_permissions (
    site_id     uuid NOT NULL,
    user_id     uuid NOT NULL,
    -- The proto number of keycontacts.access.v1.Permission.
    permission  smallint NOT NULL CHECK (permission > 0),
    -- Which grant or role allows it now, and the rule (as Check answers them).
    reason      text NOT NULL,
    rule        text NOT NULL,
    update_time timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site_id, user_id, permission)
);
-- LookupSites (a user's sites with a permission) and a user's refresh (disabled, enabled).
CREATE INDEX effective_permissions_user_idx ON effective_permissions (user_id, permission, site_id);
-- LookupUsers (a site's users with a permission).
CREATE INDEX effective_permissions_site_idx ON effective_permissions (site_id, permission, user_id);

-- Progress of the backfill of sites that existed before the feed: the service fills their
-- rows at start, a batch of sites per transaction, in site-id order, publishing their
-- permissions as changes to allowed. One row.
CREATE TABLE permission_feed_backfill (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    -- The last site filled; NULL before the first.
    after_site uuid,
    done       boolean NOT NULL DEFAULT false
);
-- Nothing to fill when there is no site yet.
INSERT INTO permission_feed_backfill (done) SELECT NOT EXISTS (SELECT 1 FROM sites);
