-- The scopes of a service account (issue 15): what its tokens carry in the `scope` claim and
-- the gateway admits it to (`authz`: AuthorizationService, `notices`: SendNotice). Accounts
-- made before scopes existed hold none.
ALTER TABLE service_accounts
    ADD COLUMN scopes text[] NOT NULL DEFAULT '{}'
        CHECK (scopes <@ ARRAY['authz', 'notices']::text[]);
