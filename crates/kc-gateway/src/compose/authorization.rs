//! `AuthorizationService`: the public answers to "may this user do this on this site", for
//! the systems that enforce keycontacts' rights. Only service accounts whose token carries
//! the scope `authz` may ask ([`crate::policy::AUTHZ_TABLE`]).
//!
//! Access management decides (the rights model of `kc-rights`, effective rights T3) and
//! gives the reason; the gateway admits the caller, reads the consistency token
//! ([`Freshness`]) and asks with its own token:
//! - no token: `BatchCheck` (access management's rights cache: a committed change reaches
//!   every replica's cache within the invalidation latency, ≤ 1 s);
//! - a token: `ConsistentBatchCheck`, which awaits the projection of the registry's roles
//!   up to a registry write's revision and reads the database;
//! - the lookups always read access management's database; a registry token is awaited
//!   first (`AwaitContactsRevision`);
//! - `WatchPermissions` follows access management's `WatchPermissionChanges` (the changes of
//!   effective permissions it writes in the transaction of each cause, one per flip, in
//!   commit order; filtered by site there) and maps each change to the public message; the
//!   cursor is access management's, passed through as is.

use std::borrow::Cow;

use chrono::Utc;
use futures::StreamExt;
use kc_proto::access;
use kc_proto::gateway as pb;
use kc_runtime::outbox::EventStream;
use kc_runtime::values::{parse_id, timestamp};
use kc_runtime::{ApiError, Caller, Violations};
use tonic::Status;

use super::Gateway;
use super::revisions::Freshness;
use crate::clients::{Ctx, Svc};
use crate::error::GatewayError;
use crate::policy::{authz_method, authz_scope};

/// Most items of one `BatchCheck`.
const MAX_BATCH_ITEMS: usize = 100;

/// Most sites one `WatchPermissions` may be narrowed to.
const MAX_WATCH_SITES: usize = 1000;

/// The field of the consistency token, in violations.
const TOKEN_FIELD: &str = "consistency.at_least_as_fresh";

/// The token of an optional consistency.
fn token(consistency: Option<&pb::Consistency>) -> &str {
    consistency.map_or("", |c| c.at_least_as_fresh.as_str())
}

/// A valid permission number (the suite's `Permission`, not UNSPECIFIED).
fn permission_ok(number: i32) -> bool {
    access::Permission::try_from(number).is_ok_and(|p| p != access::Permission::Unspecified)
}

/// The name of the field `name` of an item named by `prefix` (`items[3].`, or nothing for
/// `Check`'s own request, which then costs no copy).
fn field<'a>(prefix: &str, name: &'a str) -> Cow<'a, str> {
    if prefix.is_empty() {
        Cow::Borrowed(name)
    } else {
        Cow::Owned(format!("{prefix}{name}"))
    }
}

/// The check of one item, validated, with its freshness; `prefix` names the item in
/// violations (e.g. `items[3].`).
fn item(
    v: &mut Violations,
    prefix: &str,
    item: pb::CheckRequest,
) -> Option<(access::CheckRequest, Freshness)> {
    let user_id = v.check(parse_id(&field(prefix, "user_id"), &item.user_id));
    let site_id = v.check(parse_id(&field(prefix, "site_id"), &item.site_id));
    if !permission_ok(item.permission) {
        v.add(
            field(prefix, "permission"),
            "give a permission, e.g. PERMISSION_SOFTWARE_DOWNLOAD",
        );
    }
    let fresh = match Freshness::parse(
        &field(prefix, TOKEN_FIELD),
        token(item.consistency.as_ref()),
    ) {
        Ok(fresh) => Some(fresh),
        Err(GatewayError::InvalidArgument(violations)) => {
            for violation in violations {
                v.add(violation.field, violation.description);
            }
            None
        }
        Err(_) => None,
    };
    Some((
        access::CheckRequest {
            user_id: user_id?.to_string(),
            site_id: site_id?.to_string(),
            permission: permission_ok(item.permission).then_some(item.permission)?,
        },
        fresh?,
    ))
}

/// The outcome of [`Violations::build`] as the gateway's error: its violations as
/// `InvalidArgument`.
fn invalid<T>(built: Result<T, ApiError>) -> Result<T, GatewayError> {
    built.map_err(|error| match error {
        ApiError::InvalidArgument(violations) => GatewayError::InvalidArgument(violations),
        other => GatewayError::Internal(anyhow::anyhow!("{other}")),
    })
}

/// The public form of access management's answer, computed at `checked_at`.
fn answer(result: access::CheckResponse, checked_at: prost_types::Timestamp) -> pb::CheckResponse {
    pb::CheckResponse {
        allowed: result.allowed,
        reason: result.reason,
        rule: result.rule,
        checked_at: Some(checked_at),
    }
}

/// The public form of a change of access management's permission feed; `None` for an event
/// that is not one.
fn permission_change(event: access::Event) -> Option<pb::WatchPermissionsResponse> {
    let Some(access::event::Payload::PermissionChanged(change)) = event.payload else {
        return None;
    };
    Some(pb::WatchPermissionsResponse {
        user_id: change.user_id,
        site_id: event.site_id,
        site_number: event.site_number,
        permission: change.permission,
        allowed: change.allowed,
        reason: change.reason,
        rule: change.rule,
        cursor: event.cursor,
        changed_at: event.create_time,
    })
}

impl Gateway {
    /// Admits the caller of the `AuthorizationService` `method`: a service account holding
    /// the method's scope; everyone else is refused.
    fn admit_authz<'a>(&self, ctx: &'a Ctx, method: &str) -> Result<&'a Caller, GatewayError> {
        let caller = ctx.caller()?;
        let scope = authz_scope(method);
        if caller.has_scope(scope) {
            Ok(caller)
        } else {
            Err(GatewayError::PermissionDenied(format!(
                "permission denied: AuthorizationService is for service accounts with the scope {scope}"
            )))
        }
    }

    /// `Check`: one check, like a `BatchCheck` of one item.
    pub(crate) async fn authz_check(
        &self,
        ctx: &Ctx,
        request: pb::CheckRequest,
    ) -> Result<pb::CheckResponse, GatewayError> {
        self.admit_authz(ctx, authz_method::CHECK)?;
        let mut v = Violations::new();
        let checked = item(&mut v, "", request);
        let checks = invalid(v.build(|| Some(vec![checked?])))?;
        let mut results = self.run_checks(ctx, checks).await?;
        results
            .pop()
            .ok_or_else(|| GatewayError::Internal(anyhow::anyhow!("access answered no check")))
    }

    /// `BatchCheck`: 1 to 100 checks, answered in order.
    pub(crate) async fn authz_batch_check(
        &self,
        ctx: &Ctx,
        request: pb::BatchCheckRequest,
    ) -> Result<pb::BatchCheckResponse, GatewayError> {
        self.admit_authz(ctx, authz_method::BATCH_CHECK)?;
        let mut v = Violations::new();
        let count = request.items.len();
        if count == 0 || count > MAX_BATCH_ITEMS {
            v.add(
                "items",
                format!("give 1 to {MAX_BATCH_ITEMS} items (got {count})"),
            );
        }
        let checked: Vec<_> = request
            .items
            .into_iter()
            .take(MAX_BATCH_ITEMS)
            .enumerate()
            .map(|(index, check)| item(&mut v, &format!("items[{index}]."), check))
            .collect();
        let checks = invalid(v.build(|| checked.into_iter().collect::<Option<Vec<_>>>()))?;
        let results = self.run_checks(ctx, checks).await?;
        Ok(pb::BatchCheckResponse { results })
    }

    /// Runs `checks` in access management, in order: those without a token in one
    /// `BatchCheck` (cache), those with one in one `ConsistentBatchCheck` awaiting the newest
    /// registry revision among them.
    async fn run_checks(
        &self,
        ctx: &Ctx,
        checks: Vec<(access::CheckRequest, Freshness)>,
    ) -> Result<Vec<pb::CheckResponse>, GatewayError> {
        let ctx = ctx.as_gateway();
        let mut cached = Vec::new();
        let mut consistent = Vec::new();
        // Registry cursors are fixed-width lower-case hex: text order is stream order.
        let mut contacts_revision = String::new();
        let mut consistent_at = Vec::with_capacity(checks.len());
        for (check, fresh) in checks {
            if fresh == Freshness::Any {
                consistent_at.push(false);
                cached.push(check);
            } else {
                contacts_revision = contacts_revision.max(fresh.contacts_revision().to_owned());
                consistent_at.push(true);
                consistent.push(check);
            }
        }
        let cached_results = self.batchers().relying.ask_all(&ctx, cached).await?;
        let consistent_results = if consistent.is_empty() {
            Vec::new()
        } else {
            self.clients
                .consistent_batch_check(
                    &ctx,
                    access::ConsistentBatchCheckRequest {
                        checks: consistent,
                        contacts_revision,
                    },
                )
                .await?
                .results
        };
        let checked_at = timestamp(Utc::now());
        let (mut cached_results, mut consistent_results) =
            (cached_results.into_iter(), consistent_results.into_iter());
        consistent_at
            .into_iter()
            .map(|consistent| {
                let result = if consistent {
                    consistent_results.next()
                } else {
                    cached_results.next()
                };
                result
                    .map(|result| answer(result, checked_at))
                    .ok_or_else(|| {
                        GatewayError::Internal(anyhow::anyhow!("access answered too few checks"))
                    })
            })
            .collect()
    }

    /// Awaits the registry revision of a token in access management's projection (a
    /// lookup reads the database, so an access token needs nothing more).
    async fn await_fresh(&self, ctx: &Ctx, fresh: &Freshness) -> Result<(), GatewayError> {
        let revision = fresh.contacts_revision();
        if revision.is_empty() {
            return Ok(());
        }
        self.clients
            .await_contacts_revision(
                &ctx.as_gateway(),
                access::AwaitContactsRevisionRequest {
                    revision: revision.to_owned(),
                },
            )
            .await?;
        Ok(())
    }

    /// `LookupSites`: the sites where a user holds a permission, from access management.
    pub(crate) async fn authz_lookup_sites(
        &self,
        ctx: &Ctx,
        request: pb::LookupSitesRequest,
    ) -> Result<pb::LookupSitesResponse, GatewayError> {
        self.admit_authz(ctx, authz_method::LOOKUP_SITES)?;
        let fresh = Freshness::parse(TOKEN_FIELD, token(request.consistency.as_ref()))?;
        self.await_fresh(ctx, &fresh).await?;
        let response = self
            .clients
            .lookup_sites(
                &ctx.as_gateway(),
                access::LookupSitesRequest {
                    user_id: request.user_id,
                    permission: request.permission,
                    page_size: request.page_size,
                    page_token: request.page_token,
                },
            )
            .await?;
        Ok(pb::LookupSitesResponse {
            sites: response
                .sites
                .into_iter()
                .map(|site| pb::SiteGrant {
                    site_id: site.site_id,
                    site_number: site.site_number,
                    reason: site.reason,
                    rule: site.rule,
                })
                .collect(),
            next_page_token: response.next_page_token,
            checked_at: Some(timestamp(Utc::now())),
        })
    }

    /// `LookupUsers`: the users who hold a permission on a site, from access management.
    pub(crate) async fn authz_lookup_users(
        &self,
        ctx: &Ctx,
        request: pb::LookupUsersRequest,
    ) -> Result<pb::LookupUsersResponse, GatewayError> {
        self.admit_authz(ctx, authz_method::LOOKUP_USERS)?;
        let fresh = Freshness::parse(TOKEN_FIELD, token(request.consistency.as_ref()))?;
        self.await_fresh(ctx, &fresh).await?;
        let response = self
            .clients
            .lookup_users(
                &ctx.as_gateway(),
                access::LookupUsersRequest {
                    site_id: request.site_id,
                    permission: request.permission,
                    page_size: request.page_size,
                    page_token: request.page_token,
                },
            )
            .await?;
        Ok(pb::LookupUsersResponse {
            users: response
                .users
                .into_iter()
                .map(|user| pb::UserGrant {
                    user_id: user.user_id,
                    reason: user.reason,
                    rule: user.rule,
                })
                .collect(),
            next_page_token: response.next_page_token,
            checked_at: Some(timestamp(Utc::now())),
        })
    }

    /// `WatchPermissions`: the changes of effective permissions from access management's
    /// feed, after the caller's cursor, on the sites it names (all when none). The cursor is
    /// checked by access management (`after_cursor`); a stream that fails there ends with
    /// the error mapped like any answer of access management, and the caller resumes from
    /// its last cursor.
    pub(crate) async fn authz_watch_permissions(
        &self,
        ctx: &Ctx,
        request: pb::WatchPermissionsRequest,
    ) -> Result<EventStream<pb::WatchPermissionsResponse>, GatewayError> {
        self.admit_authz(ctx, authz_method::WATCH_PERMISSIONS)?;
        let mut v = Violations::new();
        let count = request.site_ids.len();
        if count > MAX_WATCH_SITES {
            v.add(
                "site_ids",
                format!("give at most {MAX_WATCH_SITES} site ids (got {count})"),
            );
        }
        let site_ids: Vec<Option<String>> = request
            .site_ids
            .iter()
            .enumerate()
            .map(|(index, id)| {
                v.check(parse_id(&format!("site_ids[{index}]"), id))
                    .map(|id| id.to_string())
            })
            .collect();
        let site_ids = invalid(v.build(|| site_ids.into_iter().collect::<Option<Vec<_>>>()))?;
        let ctx = ctx.as_gateway();
        let changes = self
            .clients
            .watch_permission_changes(
                &ctx,
                access::WatchPermissionChangesRequest {
                    after_cursor: request.after_cursor,
                    site_ids,
                },
            )
            .await?;
        Ok(Box::pin(changes.filter_map(move |item| {
            let answer = match item {
                Ok(response) => response.event.and_then(permission_change).map(Ok),
                Err(status) => Some(Err(Status::from(GatewayError::Downstream {
                    service: Svc::Access,
                    status,
                    gateway_credentials: true,
                }))),
            };
            futures::future::ready(answer)
        })))
    }
}

#[cfg(test)]
mod tests {
    use kc_proto::gateway as pb;
    use kc_runtime::{ApiError, Violations};

    use super::item;

    /// The fields a bad item's violations name, with `prefix`.
    fn fields_of_bad_item(prefix: &str) -> Vec<String> {
        let mut v = Violations::new();
        let checked = item(
            &mut v,
            prefix,
            pb::CheckRequest {
                user_id: "not an id".to_owned(),
                site_id: "also not".to_owned(),
                permission: 0,
                consistency: Some(pb::Consistency {
                    at_least_as_fresh: "garbage".to_owned(),
                }),
            },
        );
        assert!(checked.is_none());
        match v.finish() {
            Err(ApiError::InvalidArgument(violations)) => {
                violations.into_iter().map(|v| v.field).collect()
            }
            other => panic!("expected violations, got {other:?}"),
        }
    }

    #[test]
    fn a_bad_check_names_its_own_fields_and_a_batch_item_its_index() {
        assert_eq!(
            fields_of_bad_item(""),
            [
                "user_id",
                "site_id",
                "permission",
                "consistency.at_least_as_fresh"
            ]
        );
        assert_eq!(
            fields_of_bad_item("items[3]."),
            [
                "items[3].user_id",
                "items[3].site_id",
                "items[3].permission",
                "items[3].consistency.at_least_as_fresh"
            ]
        );
    }
}
