//! Authority at commit across the two services (rule T8): the contact registry and access
//! management each decide on a projection of the other's data, fed by its event stream. Every
//! write of one that can change the other's decisions returns a *revision* (the cursor of its
//! event), and the gateway awaits that revision in the other service before it answers, so
//! that the client's next call is decided on a state that includes its change:
//!
//! - after a write of access management (a grant, a revocation, an approved request), the
//!   registry's `AwaitAccessRevision` ([`Gateway::access_write_in_effect`]);
//! - after a write of the registry (a site, a role), access management's
//!   `AwaitContactsRevision` ([`Gateway::registry_write_in_effect`]).
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

use kc_proto::{access, contacts};

use super::Gateway;
use crate::clients::{Ctx, Svc};
use crate::error::GatewayError;

impl Gateway {
    /// After a write of access management that returned `revision`: waits until the contact
    /// registry applied it (rule T8); nothing for an empty revision.
    pub(super) async fn access_write_in_effect(
        &self,
        ctx: &Ctx,
        revision: &str,
    ) -> Result<(), GatewayError> {
        self.await_revision(ctx, Svc::Contacts, revision).await
    }

    /// After a write of the contact registry that returned `revision`: waits until access
    /// management applied it (rule T8); nothing for an empty revision.
    pub(super) async fn registry_write_in_effect(
        &self,
        ctx: &Ctx,
        revision: &str,
    ) -> Result<(), GatewayError> {
        self.await_revision(ctx, Svc::Access, revision).await
    }

    /// Waits until `awaited` (the registry or access management) applied the other's
    /// `revision`; nothing for an empty revision.
    async fn await_revision(
        &self,
        ctx: &Ctx,
        awaited: Svc,
        revision: &str,
    ) -> Result<(), GatewayError> {
        if revision.is_empty() {
            return Ok(());
        }
        let ctx = ctx.as_gateway();
        let revision = revision.to_owned();
        let result = match awaited {
            Svc::Contacts => self
                .clients
                .await_access_revision(
                    &ctx,
                    contacts::AwaitAccessRevisionRequest {
                        revision: revision.clone(),
                    },
                )
                .await
                .map(drop),
            Svc::Access => self
                .clients
                .await_contacts_revision(
                    &ctx,
                    access::AwaitContactsRevisionRequest {
                        revision: revision.clone(),
                    },
                )
                .await
                .map(drop),
            // Only the registry and access management follow each other's writes.
            Svc::Identity | Svc::Notification => {
                return Err(GatewayError::Internal(anyhow::anyhow!(
                    "{} follows no revision",
                    awaited.name()
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
