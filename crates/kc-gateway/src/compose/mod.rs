//! What each gateway RPC does: who may call it (through [`crate::policy`]) and how it
//! composes the internal services. One module per area; the gRPC layer ([`crate::grpc`])
//! only builds the call's [`Ctx`] and maps the result.
//!
//! Reads that are allowed or not by a site check run concurrently with that check (the
//! data is returned only when the check passes, so nothing leaks); writes start only once
//! the check passed. A write of the registry or of access management is answered only once
//! the other service applied it (module `revisions`, rule T8).

mod audit;
mod authorization;
mod blocking;
mod compliance;
mod contacts;
mod export;
mod import;
mod me;
mod notices;
mod notification_email;
mod operator;
mod recovery;
mod requests;
mod revisions;
mod rights;
mod sessions;
mod site_users;
mod sites;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::OnceLock;

use futures::future::try_join_all;
use kc_proto::access::{
    AccessProfile, BatchCheckRequest, BatchCheckResponse, CheckRequest, Permission,
};
use kc_proto::identity::{self, User};
use kc_runtime::Caller;
use kc_runtime::values::parse_id;
use tonic::Code;
use uuid::Uuid;

pub(crate) use self::import::{AnswerStream, PartContexts};
use crate::checks::{CheckBatcher, Checks};
use crate::clients::{Clients, Ctx, Svc};
use crate::error::GatewayError;
use crate::people::{InvitationBatcher, Invitations, LookupBatcher, Lookups};
use crate::policy::{Need, Rule, rule};
use crate::ratelimit::{RATE_LIMITED, RateLimiter, WriteClass, WriteLimits, address_key};

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
pub(crate) struct Gateway {
    clients: Clients,
    sessions: RateLimiter,
    writes: WriteLimits,
    /// The items of concurrent calls, coalesced; started on first use.
    batchers: OnceLock<Batchers>,
}

/// The gateway's queues of items of concurrent calls ([`crate::batcher`]).
#[derive(Debug)]
struct Batchers {
    /// The AuthorizationService's checks without a consistency token ([`crate::checks`]).
    relying: CheckBatcher,
    /// The admission of customers' site-scoped calls ([`Gateway::check`]).
    admissions: CheckBatcher,
    /// The addresses bound by e-mail ([`Gateway::person`], [`crate::people`]).
    invitations: InvitationBatcher,
    /// The accounts looked up by e-mail ([`Gateway::lookup_account`], [`crate::people`]).
    lookups: LookupBatcher,
}

impl Gateway {
    /// The operations over `clients`, limiting the session RPCs per client address with
    /// `sessions` and the signed-in writes per caller with `writes`.
    pub(crate) fn new(clients: Clients, sessions: RateLimiter, writes: WriteLimits) -> Self {
        Self {
            clients,
            sessions,
            writes,
            batchers: OnceLock::new(),
        }
    }

    /// The batchers, started the first time (they need the runtime, which `new` does not).
    fn batchers(&self) -> &Batchers {
        self.batchers.get_or_init(|| Batchers {
            relying: CheckBatcher::start(Checks(self.clients.clone())),
            admissions: CheckBatcher::start(Checks(self.clients.clone())),
            invitations: InvitationBatcher::start(Invitations(self.clients.clone())),
            lookups: LookupBatcher::start(Lookups(self.clients.clone())),
        })
    }

    /// Takes a token of `class` for the signed-in caller of `ctx` (its subject: the person,
    /// or the service account), before anything else of the write runs.
    pub(crate) fn limit_writes(&self, ctx: &Ctx, class: WriteClass) -> Result<(), GatewayError> {
        let caller = ctx.caller()?;
        self.writes
            .acquire(class, caller.subject)
            .map_err(|retry_after| {
                let limit = match class {
                    WriteClass::AccessRequest => "access_request",
                    WriteClass::Mail => "write",
                };
                metrics::counter!(RATE_LIMITED, "limit" => limit).increment(1);
                tracing::info!(
                    caller = %caller.subject,
                    class = ?class,
                    "write rate limit reached"
                );
                GatewayError::TooManyWrites { class, retry_after }
            })
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
        self.admit_site_and(ctx, method, site_id, None).await
    }

    /// [`Self::admit_site`], also requiring `also` of a customer caller when given: both in
    /// the same one `BatchCheck`, the rule's refusal reported first.
    async fn admit_site_and(
        &self,
        ctx: &Ctx,
        method: &str,
        site_id: Uuid,
        also: Option<Need>,
    ) -> Result<(), GatewayError> {
        match rule(method) {
            Rule::Site(need) | Rule::SiteOrSelf(need) => match also {
                Some(also) => self.require_each(ctx, site_id, &[need, also]).await,
                None => self.require_each(ctx, site_id, &[need]).await,
            },
            other => Err(GatewayError::Internal(anyhow::anyhow!(
                "{method} has rule {other:?}, not a site rule"
            ))),
        }
    }

    /// Requires `need` of the caller on `site_id` (operators pass).
    async fn require(&self, ctx: &Ctx, site_id: Uuid, need: Need) -> Result<(), GatewayError> {
        self.require_each(ctx, site_id, &[need]).await
    }

    /// Requires every one of `needs` of the caller on `site_id` in one `BatchCheck` of all
    /// their permissions (operators pass); the first need not met is the one refused.
    async fn require_each(
        &self,
        ctx: &Ctx,
        site_id: Uuid,
        needs: &[Need],
    ) -> Result<(), GatewayError> {
        let caller = ctx.caller()?;
        if caller.is_operator() {
            return Ok(());
        }
        if caller.is_service() {
            return Err(GatewayError::PermissionDenied(
                SERVICES_ONLY_SEND_NOTICES.into(),
            ));
        }
        let permissions: Vec<Permission> = needs
            .iter()
            .flat_map(|need| need.permissions().iter().copied())
            .collect();
        let allowed = self.check(ctx, site_id, &permissions).await?;
        let mut rest = allowed.as_slice();
        for need in needs {
            let (own, others) = rest.split_at(need.permissions().len());
            if !need.satisfied_by(own) {
                return Err(self.refusal(ctx, site_id, *need).await);
            }
            rest = others;
        }
        Ok(())
    }

    /// The refusal of a person without `need` on `site_id`. When it holds no permission
    /// there at all, or the site does not exist (the same answer, I2), the refusal carries
    /// the self-nomination signal (`NO_SITE_ACCESS`), so that a client offers the seed's
    /// request-access screen; one more `BatchCheck`, on refusals only.
    async fn refusal(&self, ctx: &Ctx, site_id: Uuid, need: Need) -> GatewayError {
        let every: Vec<Permission> = (1..)
            .map_while(|number| Permission::try_from(number).ok())
            .collect();
        match self.check(ctx, site_id, &every).await {
            Ok(allowed) if !allowed.contains(&true) => {
                GatewayError::NoSiteAccess(denial_message(need))
            }
            _ => denied(need),
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
        let ctx = ctx.as_gateway();
        let admissions = &self.batchers().admissions;
        let response = self
            .clients
            .batch_check_sent_by(
                &ctx,
                BatchCheckRequest { checks },
                |request| admitted(admissions.clone(), ctx.clone(), request),
                |request| {
                    let ctx = self.clients.refresh_context(&ctx);
                    Box::pin(admitted(admissions.clone(), ctx, request))
                },
            )
            .await?;
        // One answer per check: `ask_all` answers each check it queued (a batch that
        // answers too few fails them all), and the cache keeps only such answers.
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

    /// Takes a session token for the client address `client` (an IPv6 client's /64; calls
    /// without a known address share one bucket).
    fn limit_sessions(&self, client: Option<IpAddr>) -> Result<(), GatewayError> {
        let address = address_key(client.unwrap_or(IpAddr::from([0, 0, 0, 0])));
        self.sessions.acquire(address).map_err(|retry_after| {
            metrics::counter!(RATE_LIMITED, "limit" => "session").increment(1);
            tracing::info!(client = %address, "session rate limit reached");
            GatewayError::RateLimited { retry_after }
        })
    }

    /// A page of a site's access profiles: `read` (the profiles and the next page's token)
    /// runs while the caller's `method` on `site_id` is checked; each profile comes with its
    /// user from identity (`None` for one identity does not know).
    async fn profiles_with_users(
        &self,
        ctx: &Ctx,
        method: &str,
        site_id: Uuid,
        read: impl Future<Output = Result<(Vec<AccessProfile>, String), GatewayError>>,
    ) -> Result<(Vec<(AccessProfile, Option<User>)>, String), GatewayError> {
        let (allowed, read) = futures::join!(self.admit_site(ctx, method, site_id), read);
        allowed?;
        let (profiles, next_page_token) = read?;
        let users = self
            .users_by_id(ctx, profiles.iter().map(|profile| profile.user_id.clone()))
            .await?;
        let profiles = profiles
            .into_iter()
            .map(|profile| {
                let user = users.get(&profile.user_id).cloned();
                (profile, user)
            })
            .collect();
        Ok((profiles, next_page_token))
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

    /// The account of `email` when identity has one (proven, invited or disabled), asked
    /// as the gateway; `None` when identity knows no such account. Nobody is invited.
    async fn lookup_account(&self, ctx: &Ctx, email: &str) -> Result<Option<User>, GatewayError> {
        self.batchers().lookups.ask(ctx, email.to_owned()).await
    }

    /// The account that owns the login e-mail `email`, bound through identity's
    /// `InviteUser` (rule I1), asked as the gateway in a `BatchInviteUsers` with the
    /// invitations of concurrent calls ([`crate::people`]). A proven account is returned as it is;
    /// an address without an account, or whose account is unproven, is invited: identity
    /// discards any pending claim on it (credentials a stranger set never survive) and mails
    /// the address a fresh invitation code, and whoever proves the mailbox owns the account.
    /// Returns the user and whether it was invited. `display_name` is required when nobody
    /// has the address yet; `locale` falls back to `default_locale`. A refusal of identity
    /// (e.g. an address confusable with another account's, rule I3) comes back as sent.
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
        let display_name = display_name
            .filter(|name| !name.trim().is_empty())
            .unwrap_or_default();
        let locale = if locale.trim().is_empty() {
            default_locale.await?
        } else {
            locale.to_owned()
        };
        let invited = self
            .batchers()
            .invitations
            .ask(
                ctx,
                identity::InviteUserRequest {
                    email: email.to_owned(),
                    display_name: display_name.to_owned(),
                    locale,
                },
            )
            .await;
        match invited {
            Ok(response) => {
                let user = required(Svc::Identity, "user", response.user)?;
                // rule I4: a disabled user holds nothing, so it is given no role either.
                if user.state == identity::UserState::Disabled as i32 {
                    return Err(GatewayError::FailedPrecondition(
                        "rule I4: the account of this e-mail is disabled; roles go only to active users"
                            .into(),
                    ));
                }
                if response.invited {
                    tracing::info!(user_id = %user.user_id, "invited an address (rule I1)");
                }
                Ok((user, response.invited))
            }
            Err(GatewayError::Downstream { ref status, .. })
                if display_name.is_empty()
                    && status.code() == Code::InvalidArgument
                    && kc_runtime::error::field_violations(status)
                        .iter()
                        .any(|violation| violation.field == "display_name") =>
            {
                Err(GatewayError::invalid(
                    "display_name",
                    "required: nobody has this e-mail yet, so the person is invited with this \
                     name",
                ))
            }
            Err(error) => Err(error),
        }
    }
}

/// Reads every page of a downstream list, at most [`MAX_DOWNSTREAM_PAGES`].
async fn all_pages<T, F, Fut>(what: &str, mut fetch: F) -> Result<Vec<T>, GatewayError>
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = Result<(Vec<T>, String), GatewayError>>,
{
    let mut items = Vec::new();
    let mut token = String::new();
    for _ in 0..MAX_DOWNSTREAM_PAGES {
        let (page, next) = fetch(token).await?;
        items.extend(page);
        if next.is_empty() {
            return Ok(items);
        }
        token = next;
    }
    Err(GatewayError::ResourceExhausted(format!(
        "too many {what} to compose in one answer"
    )))
}

/// One call's admission checks (`request`), asked through the `admissions` queue with the
/// other calls' and answered as one `BatchCheck`.
async fn admitted(
    admissions: CheckBatcher,
    ctx: Ctx,
    request: BatchCheckRequest,
) -> Result<BatchCheckResponse, GatewayError> {
    Ok(BatchCheckResponse {
        results: admissions.ask_all(&ctx, request.checks).await?,
    })
}

/// The refusal of a site check: names what was needed, not why it failed (which could say
/// whether the site exists).
fn denied(need: Need) -> GatewayError {
    GatewayError::PermissionDenied(denial_message(need))
}

/// What a refusal of `need` says: the permissions it needs on the site.
fn denial_message(need: Need) -> String {
    let names: Vec<&str> = need
        .permissions()
        .iter()
        .map(|permission| permission.as_str_name())
        .collect();
    let what = match need {
        Need::All(_) => names.join(" and "),
        Need::Any(_) => format!("one of {}", names.join(", ")),
    };
    format!("permission denied: this needs {what} on the site")
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
