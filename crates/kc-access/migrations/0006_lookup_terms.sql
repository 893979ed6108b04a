-- LookupSites and LookupUsers (issue 15) read the permission feed's table, which learns a
-- grant's start or end (T9) only when the sweeper records it; they decide afresh the grants
-- whose start or end has passed. These partial indexes hold only the grants with a term, so
-- finding those of a user, or of a site, never reads its other grants.
CREATE INDEX grants_timed_user_idx ON grants (user_id, site_id)
    WHERE valid_from IS NOT NULL OR valid_until IS NOT NULL;
CREATE INDEX grants_timed_site_idx ON grants (site_id, user_id)
    WHERE valid_from IS NOT NULL OR valid_until IS NOT NULL;
