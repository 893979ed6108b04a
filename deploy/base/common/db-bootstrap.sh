#!/bin/sh
# Creates, idempotently, one service's database role and the schema it owns, as
# `cargo xtask up` does (crates/kc-bench/src/suite.rs, `provision`):
#   - a login role kc_<schema>, with the password of the service's own DATABASE_URL;
#   - schema <schema>, owned by that role, and the role's search_path set to it;
#   - CREATE on the database (sqlx's CREATE SCHEMA IF NOT EXISTS checks it even when the
#     schema exists), and no CREATE on schema public for anyone.
# The role owns only its schema: it gets no other grant.
#
# Environment:
#   SCHEMA                 the service's schema, e.g. identity
#   ADMIN_DATABASE_URL     a role that may create roles and schemas in the suite's database
#                          (a superuser, or a managed service's admin role with CREATEROLE)
#   SERVICE_DATABASE_URL   the service's own URL: postgres://kc_<schema>:<password>@host/db
#                          (the password must be URL-safe, e.g. `openssl rand -hex 24`)
set -eu

: "${SCHEMA:?SCHEMA is not set}"
: "${ADMIN_DATABASE_URL:?ADMIN_DATABASE_URL is not set}"
: "${SERVICE_DATABASE_URL:?SERVICE_DATABASE_URL is not set}"

role="kc_${SCHEMA}"
rest="${SERVICE_DATABASE_URL#*://}"
case "$rest" in
  *@*) userinfo="${rest%%@*}" ;;
  *) echo "db-bootstrap: SERVICE_DATABASE_URL has no user and password" >&2; exit 1 ;;
esac
case "$userinfo" in
  *:*) ;;
  *) echo "db-bootstrap: SERVICE_DATABASE_URL has no password" >&2; exit 1 ;;
esac
user="${userinfo%%:*}"
password="${userinfo#*:}"
if [ "$user" != "$role" ]; then
  echo "db-bootstrap: SERVICE_DATABASE_URL names role $user, expected $role" >&2
  exit 1
fi
case "$password" in
  ''|*%*) echo "db-bootstrap: the password in SERVICE_DATABASE_URL must be non-empty and URL-safe (no %-escapes)" >&2; exit 1 ;;
esac

psql --no-psqlrc --quiet --set=ON_ERROR_STOP=1 \
  --set=role="$role" --set=schema="$SCHEMA" --set=password="$password" \
  --dbname="$ADMIN_DATABASE_URL" <<'SQL'
SET client_min_messages = warning;
SELECT format('CREATE ROLE %I', :'role')
  WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role') \gexec
ALTER ROLE :"role" WITH LOGIN PASSWORD :'password';
-- An admin role that is not a superuser must be a member of the role to give it a schema.
SELECT format('GRANT %I TO CURRENT_USER', :'role')
  WHERE NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
    AND NOT pg_has_role(current_user, :'role', 'MEMBER') \gexec
CREATE SCHEMA IF NOT EXISTS :"schema" AUTHORIZATION :"role";
ALTER SCHEMA :"schema" OWNER TO :"role";
SELECT format('ALTER ROLE %I IN DATABASE %I SET search_path = %I',
              :'role', current_database(), :'schema') \gexec
SELECT format('GRANT CREATE ON DATABASE %I TO %I', current_database(), :'role') \gexec
-- Postgres 15 and later already deny this; older servers granted it to everyone.
SELECT 'REVOKE CREATE ON SCHEMA public FROM PUBLIC'
  FROM pg_namespace, aclexplode(nspacl) AS acl
 WHERE nspname = 'public' AND acl.grantee = 0 AND acl.privilege_type = 'CREATE' \gexec
SQL
echo "db-bootstrap: role $role owns schema $SCHEMA"
