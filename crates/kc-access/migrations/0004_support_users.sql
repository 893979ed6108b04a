-- Support users (U4): ListSupportUsers pages through the users of a site with an explicit
-- support level above NO_ACCESS in user-id order, without reading the site's other grants
-- (a site may have any number of users with tool grants only).
CREATE INDEX grants_support_idx ON grants (site_id, user_id) WHERE support > 0;
