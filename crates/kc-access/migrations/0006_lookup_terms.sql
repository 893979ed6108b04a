-- LookupSites and LookupUsers (issue 15) read a page as one range of the permission feed's
-- table. Covering indexes make that range, and each site's number, index-only reads (no heap
-- fetch per row once autovacuum has marked the pages visible): the reason and rule ride in
-- the feed's two indexes, the number in one more index of the sites.
DROP INDEX effective_permissions_user_idx;
CREATE INDEX effective_permissions_user_idx ON effective_permissions (user_id, permission, site_id)
    INCLUDE (reason, rule);
DROP INDEX effective_permissions_site_idx;
CREATE INDEX effective_permissions_site_idx ON effective_permissions (site_id, permission, user_id)
    INCLUDE (reason, rule);
CREATE UNIQUE INDEX sites_number_of_id_idx ON sites (site_id) INCLUDE (site_number);

-- The table learns a grant's start or end (T9) only when the sweeper records it, so the
-- lookups decide afresh the grants whose start or end has passed. These partial indexes hold
-- only the grants with a term, so finding those of a user, or of a site, never reads its
-- other grants.
CREATE INDEX grants_timed_user_idx ON grants (user_id, site_id)
    WHERE valid_from IS NOT NULL OR valid_until IS NOT NULL;
CREATE INDEX grants_timed_site_idx ON grants (site_id, user_id)
    WHERE valid_from IS NOT NULL OR valid_until IS NOT NULL;
