-- LookupSites names each site's number beside its id. Read from `sites` with one probe a
-- row, the numbers cost a page of 100 as much as its range of the feed's table did. A site's
-- number never changes (the registry has no statement that changes one, and the projection
-- keeps the number a site was first projected with), so each row of the feed now carries it,
-- and the user index holds it: a page of a user's sites is one index-only range. Rows written
-- before this migration get theirs here; a row of a site the projection does not know holds
-- '' (the lookups then probe `sites`, as before).
--
-- The ALTER locks the table against reads and writes until the migration's transaction
-- ends: the UPDATE rewrites every row (the index is dropped first so that it is built once,
-- after), and the table holds the old versions until autovacuum passes.
ALTER TABLE effective_permissions ADD COLUMN site_number text NOT NULL DEFAULT '';
DROP INDEX effective_permissions_user_idx;
UPDATE effective_permissions e SET site_number = s.site_number FROM sites s
    WHERE s.site_id = e.site_id;
CREATE INDEX effective_permissions_user_idx ON effective_permissions (user_id, permission, site_id)
    INCLUDE (reason, rule, site_number);
