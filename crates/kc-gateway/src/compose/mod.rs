//! What each gateway RPC does: who may call it (through [`crate::policy`]) and how it
//! composes the internal services. One module per area; the gRPC layer ([`crate::grpc`])
//! only builds the call's [`Ctx`] and maps the result.
//!
//! Reads that are allowed or not by a site check run concurrently with that check (the
//! data is returned only when the check passes, so nothing leaks); writes start only once
//! the check passed.

mod audit;
mod contacts;
mod notices;
mod requests;
mod rights;
mod sessions;
mod sites;

use std::collections::HashMap;
use std::net::IpAddr;

use futures::future::try_join_all;
use kc_proto::access::{BatchCheckRequest, CheckRequest, Permission};
use kc_proto::identity::{self, User};
use kc_runtime::Caller;
use kc_runtime::values::parse_id;
use tonic::Code;
use uuid::Uuid;

use crate::clients::{Clients, Ctx, Svc};
use crate::error::GatewayError;
use crate::policy::{Need, Rule, rule};
use crate::ratelimit::RateLimiter;

/// Most users identity returns in one `BatchGetUsers`.
const BATCH_GET_USERS_MAX: usize = 500;

/// Largest page the internal services serve.
const DOWNSTREAM_PAGE_MAX: i32 = 1000;

/// Most pages of one internal list read to compose one answer (up to 10 000 items).
const MAX_DOWNSTREAM_PAGES: usize = 10;

/// The message of a refused service account.
const SERVICES_ONLY_SEND_NOTICES: &str =
    "permission denied: service accounts may only call SendNotice through the gateway";

/// The gateway's operations over the internal services.
#[derive(Debug)]
pub struct Gateway {
    clients: Clients,
    sessions: RateLimiter,
}

impl Gateway {
    /// The operations over `clients`, limiting the session RPCs with `sessions`.
    pub fn new(clients: Clients, sessions: RateLimiter) -> Self {
        Self { clients, sessions }
    }

    /// Admits the caller of `method` when its rule is about the caller alone (signed-in
    /// persons, operators, operators and services).
    fn admit<'a>(&self, ctx: &'a Ctx, method: &str) -> Result<&'a Caller, GatewayError> {
        let caller = ctx.caller()?;
        let (allowed, refusal) = match rule(method) {
            Rule::SignedIn => (!caller.is_service(), SERVICES_ONLY_SEND_NOTICES),
            Rule::Operators => (
                caller.is_operator(),
                "permission denied: only operators may do this",
            ),
            Rule::OperatorsAndServices => (
                caller.is_privileged(),
                "permission denied: only operators and service accounts may do this",
            ),
            other => {
                return Err(GatewayError::Internal(anyhow::anyhow!(
                    "{method} has rule {other:?}, not a caller rule"
                )));
            }
        };
        if allowed {
            Ok(caller)
        } else {
            Err(GatewayError::PermissionDenied(refusal.into()))
        }
    }

    /// Admits the caller of the site-scoped `method` on `site_id`: operators pass, service
    /// accounts are refused, customers need the rule's permissions (one `BatchCheck`).
    async fn admit_site(&self, ctx: &Ctx, method: &str, site_id: Uuid) -> Result<(), GatewayError> {
        match rule(method) {
            Rule::Site(need) | Rule::SiteOrSelf(need) => self.require(ctx, site_id, need).await,
            other => Err(GatewayError::Internal(anyhow::anyhow!(
                "{method} has rule {other:?}, not a site rule"
            ))),
        }
    }

    /// Requires `need` of the caller on `site_id` (operators pass).
    async fn require(&self, ctx: &Ctx, site_id: Uuid, need: Need) -> Result<(), GatewayError> {
        let caller = ctx.caller()?;
        if caller.is_operator() {
            return Ok(());
        }
        if caller.is_service() {
            return Err(GatewayError::PermissionDenied(
                SERVICES_ONLY_SEND_NOTICES.into(),
            ));
        }
        let allowed = self.check(ctx, site_id, need.permissions()).await?;
        if need.satisfied_by(&allowed) {
            Ok(())
        } else {
            Err(denied(need))
        }
    }

    /// The one `BatchCheck` of a call: whether the (customer) caller holds each permission
    /// on `site_id`, in order. An unknown site is a denial, never an error.
    async fn check(
        &self,
        ctx: &Ctx,
        site_id: Uuid,
        permissions: &[Permission],
    ) -> Result<Vec<bool>, GatewayError> {
        let caller = ctx.caller()?;
        let checks = permissions
            .iter()
            .map(|permission| CheckRequest {
                user_id: caller.subject.to_string(),
                site_id: site_id.to_string(),
                permission: *permission as i32,
            })
            .collect();
        let response = self
            .clients
            .batch_check(&ctx.as_gateway(), BatchCheckRequest { checks })
            .await?;
        if response.results.len() != permissions.len() {
            return Err(GatewayError::Internal(anyhow::anyhow!(
                "access management answered {} checks for {}",
                response.results.len(),
                permissions.len()
            )));
        }
        for (permission, result) in permissions.iter().zip(&response.results) {
            if !result.allowed {
                tracing::debug!(
                    user_id = %caller.subject,
                    %site_id,
                    permission = permission.as_str_name(),
                    "check denied"
                );
            }
        }
        Ok(response
            .results
            .iter()
            .map(|result| result.allowed)
            .collect())
    }

    /// Takes a session token for `peer` (calls without a known address share one bucket).
    fn limit_sessions(&self, peer: Option<IpAddr>) -> Result<(), GatewayError> {
        let address = peer.unwrap_or(IpAddr::from([0, 0, 0, 0]));
        self.sessions.acquire(address).map_err(|retry_after| {
            tracing::info!(peer = %address, "session rate limit reached");
            GatewayError::RateLimited { retry_after }
        })
    }

    /// The users with these ids, by id; unknown ids are absent. Read in batches of
    /// [`BATCH_GET_USERS_MAX`], concurrently, as the gateway.
    async fn users_by_id(
        &self,
        ctx: &Ctx,
        ids: impl IntoIterator<Item = String>,
    ) -> Result<HashMap<String, User>, GatewayError> {
        let mut ids: Vec<String> = ids.into_iter().filter(|id| !id.is_empty()).collect();
        ids.sort();
        ids.dedup();
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let reads = ids.chunks(BATCH_GET_USERS_MAX).map(|chunk| {
            self.clients.batch_get_users(
                ctx,
                identity::BatchGetUsersRequest {
                    user_ids: chunk.to_vec(),
                },
            )
        });
        let batches = try_join_all(reads).await?;
        Ok(batches
            .into_iter()
            .flat_map(|batch| batch.users)
            .map(|user| (user.user_id.clone(), user))
            .collect())
    }

    /// The person with login e-mail `email`, invited (created without a password, as a
    /// customer) when identity does not know it: then `display_name` is required. Returns
    /// the user and whether it was invited. `locale` falls back to `default_locale`, which is
    /// awaited only when someone is invited.
    async fn person(
        &self,
        ctx: &Ctx,
        email: &str,
        display_name: Option<&str>,
        locale: &str,
        default_locale: impl Future<Output = Result<String, GatewayError>>,
    ) -> Result<(User, bool), GatewayError> {
        if email.trim().is_empty() {
            return Err(GatewayError::invalid("email", "required"));
        }
        if let Some(user) = self.lookup(ctx, email).await? {
            return Ok((user, false));
        }
        let Some(display_name) = display_name.filter(|name| !name.trim().is_empty()) else {
            return Err(GatewayError::invalid(
                "display_name",
                "required: nobody has this e-mail yet, so the person is invited with this name",
            ));
        };
        let locale = if locale.trim().is_empty() {
            default_locale.await?
        } else {
            locale.to_owned()
        };
        let created = self
            .clients
            .create_user(
                ctx,
                identity::CreateUserRequest {
                    email: email.to_owned(),
                    display_name: display_name.to_owned(),
                    locale,
                    kind: identity::UserKind::Customer as i32,
                    password: None,
                },
            )
            .await;
        match created {
            Ok(response) => {
                let user = response
                    .user
                    .ok_or_else(|| GatewayError::missing(Svc::Identity, "user"))?;
                tracing::info!(user_id = %user.user_id, "invited a new user");
                Ok((user, true))
            }
            // Someone registered the e-mail meanwhile: take that user.
            Err(GatewayError::Downstream { status, .. })
                if status.code() == Code::AlreadyExists =>
            {
                let user = self.lookup(ctx, email).await?.ok_or_else(|| {
                    GatewayError::Internal(anyhow::anyhow!(
                        "identity refused a new user as existing but does not find it"
                    ))
                })?;
                Ok((user, false))
            }
            Err(error) => Err(error),
        }
    }

    /// The user with login e-mail `email`, if any.
    async fn lookup(&self, ctx: &Ctx, email: &str) -> Result<Option<User>, GatewayError> {
        match self
            .clients
            .lookup_user(
                ctx,
                identity::LookupUserRequest {
                    email: email.to_owned(),
                },
            )
            .await
        {
            Ok(response) => Ok(response.user),
            Err(GatewayError::Downstream { status, .. }) if status.code() == Code::NotFound => {
                Ok(None)
            }
            Err(error) => Err(error),
        }
    }
}

/// The refusal of a site check: names what was needed, not why it failed (which could say
/// whether the site exists).
fn denied(need: Need) -> GatewayError {
    let names: Vec<&str> = need
        .permissions()
        .iter()
        .map(|permission| permission.as_str_name())
        .collect();
    let what = match need {
        Need::All(_) => names.join(" and "),
        Need::Any(_) => format!("one of {}", names.join(", ")),
    };
    GatewayError::PermissionDenied(format!("permission denied: this needs {what} on the site"))
}

/// Parses the id in `field`.
fn id(field: &str, text: &str) -> Result<Uuid, GatewayError> {
    parse_id(field, text).map_err(GatewayError::from)
}

/// A page size from a request: 0 means `default`, else 1 to the downstream maximum.
fn page_size(value: i32, default: i32) -> Result<i32, GatewayError> {
    match value {
        0 => Ok(default),
        v if v < 0 => Err(GatewayError::invalid("page_size", "must not be negative")),
        v if v > DOWNSTREAM_PAGE_MAX => Err(GatewayError::invalid(
            "page_size",
            format!("must be at most {DOWNSTREAM_PAGE_MAX}"),
        )),
        v => Ok(v),
    }
}

/// The first item of a response that must hold one.
fn required<T>(service: Svc, field: &str, value: Option<T>) -> Result<T, GatewayError> {
    value.ok_or_else(|| GatewayError::missing(service, field))
}
