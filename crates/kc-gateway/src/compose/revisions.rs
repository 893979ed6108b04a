//! Authority at commit across the two services (rule T8): the contact registry and access
//! management each decide on a projection of the other's data, fed by its event stream. Every
//! write of one that can change the other's decisions returns a *revision* (the cursor of its
//! event), and the gateway awaits that revision in the other service before it answers, so
//! that the client's next call is decided on a state that includes its change:
//!
//! - after a write of access management (a grant, a revocation, an approved request), the
//!   registry's `AwaitAccessRevision` ([`Gateway::access_write_in_effect`]);
//! - after a write of the registry (a site, a role), access management's
//!   `AwaitContactsRevision` ([`Gateway::registry_write_in_effect`]);
//! - after a write of identity that changes what a person may hold (the proof of its
//!   address, a new login e-mail), access management's `AwaitIdentityRevision`
//!   ([`Gateway::identity_write_in_effect`]): access counts a person it has not heard of
//!   from identity as unproven (I1), so the person's first call after the proof must not
//!   outrun it.
//!
//! An empty revision means that nothing changed: nothing is awaited. The wait is asked with the
//! gateway's own token (the services answer it to services only) within what is left of the
//! call's deadline.
//!
//! **When the wait fails.** The write is committed by then: it must not be reported as failed
//! (the client would repeat it), nor as done (the next call could be decided on the state
//! before it). Whatever made the wait fail (the other service did not apply the revision
//! within the deadline, could not be reached, or refused the wait), the client gets
//! `UNAVAILABLE` saying that the change is committed but not yet in effect everywhere
//! ([`GatewayError::NotYetInEffect`]); the cause is logged.
//!
//! **Revision tokens.** The public writes that change rights or roles return their revision
//! to the client as a *token* for `AuthorizationService`'s `at_least_as_fresh`:
//! `access:<cursor>` for a write of access management, `contacts:<cursor>` for one of the
//! registry ([`revision_token`], read back by [`Freshness::parse`]). Clients treat it as
//! opaque.

use std::str::FromStr;

use kc_proto::{access, contacts};
use kc_runtime::outbox::Cursor;

use super::Gateway;
use crate::clients::{Ctx, Svc};
use crate::error::GatewayError;

/// Prefix of the token of an access management write's revision.
const ACCESS_PREFIX: &str = "access:";
/// Prefix of the token of a contact registry write's revision.
const CONTACTS_PREFIX: &str = "contacts:";

/// The revision token a public write returns for the `revision` of a write of `service`
/// (access management or the registry); empty when nothing changed.
pub(super) fn revision_token(service: Svc, revision: &str) -> String {
    if revision.is_empty() {
        return String::new();
    }
    let prefix = match service {
        Svc::Access => ACCESS_PREFIX,
        Svc::Contacts => CONTACTS_PREFIX,
        // Only access management and the registry write what rights depend on.
        Svc::Identity | Svc::Notification => return String::new(),
    };
    format!("{prefix}{revision}")
}

/// How fresh an answer of `AuthorizationService` must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Freshness {
    /// No token: the answer may come from access management's rights cache.
    Any,
    /// At least as fresh as a committed write of access management: read its database.
    Access,
    /// At least as fresh as a write of the registry with this revision: access
    /// management's projection of roles must have applied it, then its database is read.
    Contacts(String),
}

impl Freshness {
    /// The freshness of an `at_least_as_fresh` token; `field` names it in the violation of
    /// a token the gateway never issued.
    pub(super) fn parse(field: &str, token: &str) -> Result<Self, GatewayError> {
        if token.is_empty() {
            return Ok(Self::Any);
        }
        let invalid = || {
            GatewayError::invalid(
                field,
                "not a revision token: pass the `revision` of a gateway write as it was returned",
            )
        };
        let (fresh, cursor) = if let Some(cursor) = token.strip_prefix(ACCESS_PREFIX) {
            (Self::Access, cursor)
        } else if let Some(cursor) = token.strip_prefix(CONTACTS_PREFIX) {
            (Self::Contacts(cursor.to_owned()), cursor)
        } else {
            return Err(invalid());
        };
        match Cursor::from_str(cursor) {
            Ok(_) if !cursor.is_empty() => Ok(fresh),
            _ => Err(invalid()),
        }
    }

    /// The registry revision the projection must have applied; empty for none.
    pub(super) fn contacts_revision(&self) -> &str {
        match self {
            Self::Contacts(revision) => revision,
            Self::Any | Self::Access => "",
        }
    }
}

impl Gateway {
    /// After a write of access management that returned `revision`: waits until the contact
    /// registry applied it (rule T8); nothing for an empty revision.
    pub(super) async fn access_write_in_effect(
        &self,
        ctx: &Ctx,
        revision: &str,
    ) -> Result<(), GatewayError> {
        self.await_revision(ctx, Svc::Access, revision).await
    }

    /// After a write of the contact registry that returned `revision`: waits until access
    /// management applied it (rule T8); nothing for an empty revision.
    pub(super) async fn registry_write_in_effect(
        &self,
        ctx: &Ctx,
        revision: &str,
    ) -> Result<(), GatewayError> {
        self.await_revision(ctx, Svc::Contacts, revision).await
    }

    /// After a write of identity that returned `revision` (a proof, a new login e-mail):
    /// waits until access management applied it, so that the person's rights follow it
    /// (rules I1 and T8); nothing for an empty revision.
    pub(super) async fn identity_write_in_effect(
        &self,
        ctx: &Ctx,
        revision: &str,
    ) -> Result<(), GatewayError> {
        self.await_revision(ctx, Svc::Identity, revision).await
    }

    /// Waits until the service that follows `written`'s events (access management for the
    /// registry and identity, the registry for access management) applied `revision`;
    /// nothing for an empty revision.
    async fn await_revision(
        &self,
        ctx: &Ctx,
        written: Svc,
        revision: &str,
    ) -> Result<(), GatewayError> {
        if revision.is_empty() {
            return Ok(());
        }
        let ctx = ctx.as_gateway();
        let revision = revision.to_owned();
        let (awaited, result) = match written {
            Svc::Access => (
                Svc::Contacts,
                self.clients
                    .await_access_revision(
                        &ctx,
                        contacts::AwaitAccessRevisionRequest {
                            revision: revision.clone(),
                        },
                    )
                    .await
                    .map(drop),
            ),
            Svc::Contacts => (
                Svc::Access,
                self.clients
                    .await_contacts_revision(
                        &ctx,
                        access::AwaitContactsRevisionRequest {
                            revision: revision.clone(),
                        },
                    )
                    .await
                    .map(drop),
            ),
            Svc::Identity => (
                Svc::Access,
                self.clients
                    .await_identity_revision(
                        &ctx,
                        access::AwaitIdentityRevisionRequest {
                            revision: revision.clone(),
                        },
                    )
                    .await
                    .map(drop),
            ),
            // Nobody decides on notification's writes.
            Svc::Notification => {
                return Err(GatewayError::Internal(anyhow::anyhow!(
                    "nobody follows {}'s revisions",
                    written.name()
                )));
            }
        };
        in_effect(awaited, &revision, result)
    }
}

/// The outcome of awaiting `revision` in `awaited`: any failure becomes
/// [`GatewayError::NotYetInEffect`] (see the module's documentation), its cause logged.
fn in_effect(
    awaited: Svc,
    revision: &str,
    result: Result<(), GatewayError>,
) -> Result<(), GatewayError> {
    result.map_err(|error| {
        tracing::warn!(
            service = awaited.name(),
            revision,
            error = %error,
            "rule T8: a committed write is not yet in effect in the other service"
        );
        GatewayError::NotYetInEffect { awaited }
    })
}

#[cfg(test)]
mod tests {
    use tonic::{Code, Status};

    use super::*;

    #[test]
    fn revision_tokens_round_trip() {
        let cursor = "0000000000000abc0000000000000001";
        let access = revision_token(Svc::Access, cursor);
        assert_eq!(access, format!("access:{cursor}"));
        assert_eq!(Freshness::parse("t", &access).unwrap(), Freshness::Access);
        let registry = revision_token(Svc::Contacts, cursor);
        assert_eq!(
            Freshness::parse("t", &registry).unwrap(),
            Freshness::Contacts(cursor.into())
        );
        assert_eq!(revision_token(Svc::Access, ""), "");
        assert_eq!(Freshness::parse("t", "").unwrap(), Freshness::Any);
        for bad in ["access:", "access:xyz", cursor, "other:0", "contacts:ABC"] {
            assert!(Freshness::parse("t", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_failed_wait_is_unavailable_and_says_the_change_is_committed() {
        assert!(in_effect(Svc::Access, "42", Ok(())).is_ok());
        for cause in [
            GatewayError::Downstream {
                service: Svc::Contacts,
                status: Status::unavailable("revision not reached"),
                gateway_credentials: true,
            },
            GatewayError::Timeout {
                service: Svc::Contacts,
                caller_deadline: true,
            },
            GatewayError::DeadlineExceeded,
        ] {
            let seen: Status = in_effect(Svc::Contacts, "42", Err(cause))
                .expect_err("the wait failed")
                .into();
            assert_eq!(seen.code(), Code::Unavailable, "{seen:?}");
            assert!(
                seen.message().starts_with(
                    "rule T8: the change is committed but not yet in effect everywhere"
                ),
                "{seen:?}"
            );
            assert!(seen.message().contains("contact registry"), "{seen:?}");
        }
    }
}
