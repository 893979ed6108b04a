-- Rule T8: the registry decides, in each write's own transaction, whether the acting person
-- still holds the authority the write needs. Roles are the registry's own; explicit grants
-- are access management's, kept here as a projection of its event stream (consumer
-- `contacts.access`, cursor in `event_cursors`). One row per user and site that was ever
-- granted something explicitly: the proto numbers of each tool's level and of the support
-- level (0 never appears: a revoked grant is stored as the lowest levels).
CREATE TABLE access_grants (
    site_id            uuid        NOT NULL,
    user_id            uuid        NOT NULL,
    software           smallint    NOT NULL CHECK (software > 0),
    reporting          smallint    NOT NULL CHECK (reporting > 0),
    entitlements       smallint    NOT NULL CHECK (entitlements > 0),
    account_management smallint    NOT NULL CHECK (account_management > 0),
    manage_access      smallint    NOT NULL CHECK (manage_access > 0),
    contact_updates    smallint    NOT NULL CHECK (contact_updates > 0),
    account_documents  smallint    NOT NULL CHECK (account_documents > 0),
    support            smallint    NOT NULL CHECK (support > 0),
    PRIMARY KEY (site_id, user_id)
);
