//! Coalescing of the people that concurrent calls name by e-mail (AssignContact,
//! ReplaceContact, the rows of an import, ...): their lookups and their invitations (rule I1)
//! go to identity together ([`crate::batcher`]), in one `BatchLookupUsers` or one
//! `BatchInviteUsers`. Identity answers each item as the single call (`LookupUser`,
//! `InviteUser`) would alone, and invites the new addresses of a batch in one transaction. An
//! item refused is refused with the single call's own error (its code, message and details),
//! as if it had been sent alone.

use kc_proto::identity::{self, Refusal};
use tonic::Status;

use crate::batcher::{BatchCall, Batcher};
use crate::clients::{Clients, Ctx, Svc};
use crate::error::GatewayError;

/// Identity's limit of items per batch call.
const MAX_ITEMS: usize = 100;

/// Identity's `BatchInviteUsers`, as a [`BatchCall`].
#[derive(Debug)]
pub(crate) struct Invitations(pub(crate) Clients);

/// The queue of invitations to coalesce.
pub(crate) type InvitationBatcher = Batcher<Invitations>;

/// Identity's `BatchLookupUsers`, as a [`BatchCall`]: the account of a login e-mail, `None`
/// when nobody has it.
#[derive(Debug)]
pub(crate) struct Lookups(pub(crate) Clients);

/// The queue of lookups to coalesce.
pub(crate) type LookupBatcher = Batcher<Lookups>;

/// The error of an item identity refused, as the single call's.
fn refused(clients: &Clients, ctx: &Ctx, refusal: Refusal) -> GatewayError {
    clients.refused(
        ctx,
        Svc::Identity,
        Status::with_details(
            tonic::Code::from(refusal.code),
            refusal.message,
            refusal.details.into(),
        ),
    )
}

impl BatchCall for Invitations {
    type Item = identity::InviteUserRequest;
    type Answer = identity::InviteUserResponse;
    const SERVICE: Svc = Svc::Identity;
    const MAX_ITEMS: usize = MAX_ITEMS;
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
                Some(Answer::Refused(refusal)) => Err(refused(&self.0, ctx, refusal)),
                None => Err(GatewayError::Internal(anyhow::anyhow!(
                    "identity answered an invitation with nothing"
                ))),
            })
            .collect())
    }
}

impl BatchCall for Lookups {
    type Item = String;
    type Answer = Option<identity::User>;
    const SERVICE: Svc = Svc::Identity;
    const MAX_ITEMS: usize = MAX_ITEMS;
    const IN_FLIGHT: usize = 2;

    async fn send(
        &self,
        ctx: &Ctx,
        emails: Vec<String>,
    ) -> Result<Vec<Result<Option<identity::User>, GatewayError>>, GatewayError> {
        use identity::user_lookup_result::Result as Answer;
        let response = self
            .0
            .batch_lookup_users(ctx, identity::BatchLookupUsersRequest { emails })
            .await?;
        Ok(response
            .results
            .into_iter()
            .map(|result| match result.result {
                Some(Answer::User(user)) => Ok(Some(user)),
                Some(Answer::Refused(refusal)) => Err(refused(&self.0, ctx, refusal)),
                None => Ok(None),
            })
            .collect())
    }
}
