//! Coalescing of invitations: the addresses that concurrent calls bind by e-mail (rule I1:
//! AssignContact, ReplaceContact, the rows of an import, ...) go to identity together, in one
//! `BatchInviteUsers` ([`crate::batcher`]), which answers each as `InviteUser` would alone
//! and invites the new addresses among them in one transaction. An invitation refused is
//! refused with InviteUser's own error (its code, message and details), as if it had been
//! sent alone.

use kc_proto::identity;
use tonic::Status;

use crate::batcher::{BatchCall, Batcher};
use crate::clients::{Clients, Ctx, Svc};
use crate::error::GatewayError;

/// Identity's `BatchInviteUsers`, as a [`BatchCall`].
#[derive(Debug)]
pub(crate) struct Invitations(pub(crate) Clients);

/// The queue of invitations to coalesce.
pub(crate) type InvitationBatcher = Batcher<Invitations>;

impl BatchCall for Invitations {
    type Item = identity::InviteUserRequest;
    type Answer = identity::InviteUserResponse;
    const SERVICE: Svc = Svc::Identity;
    /// Identity's limit per call.
    const MAX_ITEMS: usize = 100;
    const IN_FLIGHT: usize = 2;

    async fn send(
        &self,
        ctx: &Ctx,
        invitations: Vec<identity::InviteUserRequest>,
    ) -> Result<Vec<Result<identity::InviteUserResponse, GatewayError>>, GatewayError> {
        use identity::invitation_result::Result as Answer;
        let response = self
            .0
            .batch_invite_users(ctx, identity::BatchInviteUsersRequest { invitations })
            .await?;
        Ok(response
            .results
            .into_iter()
            .map(|result| match result.result {
                Some(Answer::Invited(invited)) => Ok(invited),
                Some(Answer::Refused(refused)) => Err(self.0.refused(
                    ctx,
                    Svc::Identity,
                    Status::with_details(
                        tonic::Code::from(refused.code),
                        refused.message,
                        refused.details.into(),
                    ),
                )),
                None => Err(GatewayError::Internal(anyhow::anyhow!(
                    "identity answered an invitation with nothing"
                ))),
            })
            .collect())
    }
}
