-- ShowAllContacts pages a site's people by user id (ListSiteContacts `by_person`). Every role:
-- the unique index on (site_id, user_id, role) reads them in order. A few roles (e.g. only
-- the PRIMARY of a site of 50,000 SITE_USERs): this index reads their holders in user-id
-- order without walking the site's other people.
CREATE INDEX contacts_site_role_user_idx ON contacts (site_id, role, user_id);
