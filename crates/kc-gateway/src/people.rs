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

/// What identity said of one item of a batch: its answer, its refusal, or nothing.
enum Item<A> {
    Answered(A),
    Refused(Refusal),
    Unanswered,
}

/// Each item's result: a refusal becomes the single call's error; an item left unanswered
/// gets `unanswered`.
fn settle<A>(
    clients: &Clients,
    ctx: &Ctx,
    items: impl Iterator<Item = Item<A>>,
    unanswered: fn() -> Result<A, GatewayError>,
) -> Vec<Result<A, GatewayError>> {
    items
        .map(|item| match item {
            Item::Answered(answer) => Ok(answer),
            Item::Refused(refusal) => Err(clients.refused(
                ctx,
                Svc::Identity,
                Status::with_details(
                    tonic::Code::from(refusal.code),
                    refusal.message,
                    refusal.details.into(),
                ),
            )),
            Item::Unanswered => unanswered(),
        })
        .collect()
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
        let items = response
            .results
            .into_iter()
            .map(|result| match result.result {
                Some(Answer::Invited(invited)) => Item::Answered(invited),
                Some(Answer::Refused(refusal)) => Item::Refused(refusal),
                None => Item::Unanswered,
            });
        Ok(settle(&self.0, ctx, items, || {
            Err(GatewayError::Internal(anyhow::anyhow!(
                "identity answered an invitation with nothing"
            )))
        }))
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
        // Nothing set: nobody has the address.
        let items = response
            .results
            .into_iter()
            .map(|result| match result.result {
                Some(Answer::User(user)) => Item::Answered(Some(user)),
                Some(Answer::Refused(refusal)) => Item::Refused(refusal),
                None => Item::Unanswered,
            });
        Ok(settle(&self.0, ctx, items, || Ok(None)))
    }
}
