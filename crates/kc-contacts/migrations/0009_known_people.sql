-- The projection of identity's users also keeps each person's display name, so that a page
-- of a site's people (ListSiteContacts with `with_people`, the gateway's ShowAllContacts) is
-- read from the registry alone instead of asking identity for every person of the page.
-- NULL for a user projected before this migration until identity's next event of that user;
-- the registry leaves such a user out of `people`, and the gateway then reads it from
-- identity, as before.
ALTER TABLE user_states ADD COLUMN display_name text;
