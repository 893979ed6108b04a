//! The gRPC face of the registry: checks the caller is a service or an operator, turns the
//! request into a command ([`crate::convert`]), calls the registry, and turns the result
//! back. No SQL, no rules.

use chrono::Utc;
use kc_proto::contacts::{self as pb, contact_registry_service_server::ContactRegistryService};
use kc_runtime::Shutdown;
use kc_runtime::audit;
use kc_runtime::auth::caller;
use kc_runtime::grpc::{await_revision, event_stream};
use kc_runtime::outbox::{AppliedCursor, EventStream, OutboxWatcher, Revised, revision_text};
use tonic::{Request, Response, Status};

use crate::convert;
use crate::domain::Registry;
use crate::domain::commands::{
    Actor, SiteDraft, SiteListing, SiteLookup, SiteRef, actor, confirming_owner,
};
use crate::domain::recovery::RecoveryRequest;
use crate::followers;

/// The `ContactRegistryService` implementation.
#[derive(Clone, Debug)]
pub(crate) struct ContactsApi {
    registry: Registry,
    watcher: OutboxWatcher,
    shutdown: Shutdown,
    /// What this process's projection of access management's grants applied, when the
    /// registry follows them (`--access-url`, T8).
    access_applied: Option<AppliedCursor>,
}

impl ContactsApi {
    /// The API over `registry`, streaming events from `watcher` until `shutdown`;
    /// `access_applied` is the projection of access grants, when it is kept (T8).
    pub(crate) fn new(
        registry: Registry,
        watcher: OutboxWatcher,
        shutdown: Shutdown,
        access_applied: Option<AppliedCursor>,
    ) -> Self {
        Self {
            registry,
            watcher,
            shutdown,
            access_applied,
        }
    }
}

/// The actor of a request: services and operators only.
fn request_actor<T>(request: &Request<T>) -> Result<Actor, Status> {
    Ok(actor(&caller(request)?)?)
}

#[tonic::async_trait]
impl ContactRegistryService for ContactsApi {
    async fn create_site(
        &self,
        request: Request<pb::CreateSiteRequest>,
    ) -> Result<Response<pb::CreateSiteResponse>, Status> {
        let actor = request_actor(&request)?;
        let draft: SiteDraft = request.into_inner().try_into()?;
        let Revised { value, revision } = self.registry.create_site(actor, draft).await?;
        let (site, contacts) = value;
        Ok(Response::new(pb::CreateSiteResponse {
            site: Some((&site).into()),
            contacts: contacts.iter().map(pb::Contact::from).collect(),
            revision: revision_text(revision),
        }))
    }

    async fn get_site(
        &self,
        request: Request<pb::GetSiteRequest>,
    ) -> Result<Response<pb::GetSiteResponse>, Status> {
        request_actor(&request)?;
        let SiteRef { site_id } = request.into_inner().try_into()?;
        let site = self.registry.get_site(site_id).await?;
        Ok(Response::new(pb::GetSiteResponse {
            site: Some((&site).into()),
        }))
    }

    async fn lookup_site(
        &self,
        request: Request<pb::LookupSiteRequest>,
    ) -> Result<Response<pb::LookupSiteResponse>, Status> {
        request_actor(&request)?;
        let lookup: SiteLookup = request.into_inner().try_into()?;
        let site = self.registry.lookup_site(&lookup).await?;
        Ok(Response::new(pb::LookupSiteResponse {
            site: Some((&site).into()),
        }))
    }

    async fn list_sites(
        &self,
        request: Request<pb::ListSitesRequest>,
    ) -> Result<Response<pb::ListSitesResponse>, Status> {
        request_actor(&request)?;
        let listing: SiteListing = request.into_inner().try_into()?;
        let page = self.registry.list_sites(listing).await?;
        Ok(Response::new(convert::sites_response(&page)))
    }

    async fn update_site(
        &self,
        request: Request<pb::UpdateSiteRequest>,
    ) -> Result<Response<pb::UpdateSiteResponse>, Status> {
        let actor = request_actor(&request)?;
        let update = request.into_inner().try_into()?;
        let Revised { value, revision } = self.registry.update_site(actor, update).await?;
        Ok(Response::new(pb::UpdateSiteResponse {
            site: Some((&value).into()),
            revision: revision_text(revision),
        }))
    }

    async fn assign_contact(
        &self,
        request: Request<pb::AssignContactRequest>,
    ) -> Result<Response<pb::AssignContactResponse>, Status> {
        let actor = request_actor(&request)?;
        let assignment = request.into_inner().try_into()?;
        let Revised { value, revision } = self.registry.assign_contact(actor, assignment).await?;
        Ok(Response::new(pb::AssignContactResponse {
            contact: Some((&value).into()),
            revision: revision_text(revision),
        }))
    }

    async fn update_contact(
        &self,
        request: Request<pb::UpdateContactRequest>,
    ) -> Result<Response<pb::UpdateContactResponse>, Status> {
        let actor = request_actor(&request)?;
        let update = request.into_inner().try_into()?;
        let contact = self.registry.update_contact(actor, update).await?;
        Ok(Response::new(pb::UpdateContactResponse {
            contact: Some((&contact).into()),
        }))
    }

    async fn remove_contact(
        &self,
        request: Request<pb::RemoveContactRequest>,
    ) -> Result<Response<pb::RemoveContactResponse>, Status> {
        let actor = request_actor(&request)?;
        let removal = request.into_inner().try_into()?;
        let Revised { value, revision } = self.registry.remove_contact(actor, removal).await?;
        Ok(Response::new(pb::RemoveContactResponse {
            contact: Some((&value).into()),
            revision: revision_text(revision),
        }))
    }

    async fn replace_contact(
        &self,
        request: Request<pb::ReplaceContactRequest>,
    ) -> Result<Response<pb::ReplaceContactResponse>, Status> {
        let actor = request_actor(&request)?;
        let replacement = request.into_inner().try_into()?;
        let Revised { value, revision } = self.registry.replace_contact(actor, replacement).await?;
        let (contact, replaced) = value;
        Ok(Response::new(pb::ReplaceContactResponse {
            contact: Some((&contact).into()),
            replaced: replaced.as_ref().map(pb::Contact::from),
            revision: revision_text(revision),
        }))
    }

    async fn transfer_primary_contact(
        &self,
        request: Request<pb::TransferPrimaryContactRequest>,
    ) -> Result<Response<pb::TransferPrimaryContactResponse>, Status> {
        let actor = request_actor(&request)?;
        let transfer = request.into_inner().try_into()?;
        let Revised { value, revision } = self.registry.transfer_primary(actor, transfer).await?;
        let (site, primary, previous) = value;
        Ok(Response::new(pb::TransferPrimaryContactResponse {
            site: Some((&site).into()),
            primary: Some((&primary).into()),
            previous_primary: previous.as_ref().map(pb::Contact::from),
            revision: revision_text(revision),
        }))
    }

    async fn list_site_contacts(
        &self,
        request: Request<pb::ListSiteContactsRequest>,
    ) -> Result<Response<pb::ListSiteContactsResponse>, Status> {
        request_actor(&request)?;
        let request = request.into_inner();
        let by_person = request.by_person;
        let page = self
            .registry
            .list_site_contacts(request.try_into()?)
            .await?;
        Ok(Response::new(convert::site_contacts_response(
            &page, by_person,
        )))
    }

    async fn list_user_contacts(
        &self,
        request: Request<pb::ListUserContactsRequest>,
    ) -> Result<Response<pb::ListUserContactsResponse>, Status> {
        request_actor(&request)?;
        let listing = request.into_inner().try_into()?;
        let page = self.registry.list_user_contacts(listing).await?;
        Ok(Response::new(convert::user_contacts_response(&page)))
    }

    async fn resolve_recipients(
        &self,
        request: Request<pb::ResolveRecipientsRequest>,
    ) -> Result<Response<pb::ResolveRecipientsResponse>, Status> {
        request_actor(&request)?;
        let query = request.into_inner().try_into()?;
        let (site, resolution) = self.registry.resolve_recipients(query).await?;
        Ok(Response::new(convert::recipients_response(
            &site, resolution,
        )))
    }

    async fn get_site_compliance(
        &self,
        request: Request<pb::GetSiteComplianceRequest>,
    ) -> Result<Response<pb::GetSiteComplianceResponse>, Status> {
        request_actor(&request)?;
        let SiteRef { site_id } = request.into_inner().try_into()?;
        let compliance = self.registry.site_compliance(site_id).await?;
        Ok(Response::new(pb::GetSiteComplianceResponse {
            compliance: Some((&compliance).into()),
        }))
    }

    async fn list_compliance_gaps(
        &self,
        request: Request<pb::ListComplianceGapsRequest>,
    ) -> Result<Response<pb::ListComplianceGapsResponse>, Status> {
        request_actor(&request)?;
        let listing = request.into_inner().try_into()?;
        let page = self.registry.list_compliance_gaps(listing).await?;
        Ok(Response::new(convert::compliance_gaps_response(&page)))
    }

    async fn list_audit_records(
        &self,
        request: Request<pb::ListAuditRecordsRequest>,
    ) -> Result<Response<pb::ListAuditRecordsResponse>, Status> {
        request_actor(&request)?;
        let r = request.into_inner();
        let list = |site_id, before, size| self.registry.list_audit_records(site_id, before, size);
        let (records, next_page_token) =
            audit::list_records(&r.site_id, r.page_size, &r.page_token, list).await?;
        Ok(Response::new(pb::ListAuditRecordsResponse {
            records,
            next_page_token,
        }))
    }

    async fn confirm_notification_email(
        &self,
        request: Request<pb::ConfirmNotificationEmailRequest>,
    ) -> Result<Response<pb::ConfirmNotificationEmailResponse>, Status> {
        let caller = caller(&request)?;
        let actor = actor(&caller)?;
        let owner = confirming_owner(&caller)?;
        let confirmation = request.into_inner().try_into()?;
        let contact = self
            .registry
            .confirm_notification_email(actor, owner, confirmation)
            .await?;
        Ok(Response::new(pb::ConfirmNotificationEmailResponse {
            contact: Some((&contact).into()),
        }))
    }

    type WatchEventsStream = EventStream<pb::WatchEventsResponse>;

    async fn watch_events(
        &self,
        request: Request<pb::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        request_actor(&request)?;
        event_stream::<pb::Event>(
            &self.watcher,
            &request.get_ref().after_cursor,
            &self.shutdown,
        )
    }

    async fn await_access_revision(
        &self,
        request: Request<pb::AwaitAccessRevisionRequest>,
    ) -> Result<Response<pb::AwaitAccessRevisionResponse>, Status> {
        if !caller(&request)?.is_service() {
            return Err(Status::permission_denied(
                "AwaitAccessRevision is for the suite's services",
            ));
        }
        let Some(access_applied) = &self.access_applied else {
            return Err(Status::failed_precondition(
                "rule T8: this registry does not follow access management's grants (it runs without --access-url)",
            ));
        };
        let applied_revision = await_revision(
            self.registry.pool(),
            access_applied,
            &request,
            &request.get_ref().revision,
            followers::MAX_AWAIT,
            "the registry's projection of access grants",
        )
        .await?;
        Ok(Response::new(pb::AwaitAccessRevisionResponse {
            applied_revision,
        }))
    }

    async fn request_primary_recovery(
        &self,
        request: Request<pb::RequestPrimaryRecoveryRequest>,
    ) -> Result<Response<pb::RequestPrimaryRecoveryResponse>, Status> {
        let actor = request_actor(&request)?;
        let r = request.into_inner();
        let asked = RecoveryRequest::parse(
            &r.site_number,
            &r.customer_number,
            &r.reason,
            &r.vouching_user_id,
        )?;
        let recovery = self.registry.request_primary_recovery(actor, asked).await?;
        Ok(Response::new(pb::RequestPrimaryRecoveryResponse {
            recovery: Some(convert::recovery_at(&recovery, Utc::now())),
        }))
    }

    async fn refuse_primary_recovery(
        &self,
        request: Request<pb::RefusePrimaryRecoveryRequest>,
    ) -> Result<Response<pb::RefusePrimaryRecoveryResponse>, Status> {
        let actor = request_actor(&request)?;
        let refusal = request.into_inner().try_into()?;
        let recovery = self
            .registry
            .refuse_primary_recovery(actor, refusal)
            .await?;
        Ok(Response::new(pb::RefusePrimaryRecoveryResponse {
            recovery: Some(convert::recovery_at(&recovery, Utc::now())),
        }))
    }

    async fn attest_primary_recovery(
        &self,
        request: Request<pb::AttestPrimaryRecoveryRequest>,
    ) -> Result<Response<pb::AttestPrimaryRecoveryResponse>, Status> {
        let actor = request_actor(&request)?;
        let attestation = request.into_inner().try_into()?;
        let Revised { value, revision } = self
            .registry
            .attest_primary_recovery(actor, attestation)
            .await?;
        let (recovery, site, primary) = value;
        Ok(Response::new(pb::AttestPrimaryRecoveryResponse {
            recovery: Some(convert::recovery_at(&recovery, Utc::now())),
            site: Some((&site).into()),
            primary: Some((&primary).into()),
            revision: revision_text(revision),
        }))
    }

    async fn get_primary_recovery(
        &self,
        request: Request<pb::GetPrimaryRecoveryRequest>,
    ) -> Result<Response<pb::GetPrimaryRecoveryResponse>, Status> {
        let actor = request_actor(&request)?;
        let recovery_id =
            kc_runtime::values::parse_id("recovery_id", &request.get_ref().recovery_id)
                .map_err(kc_runtime::ApiError::from)?;
        let recovery = self
            .registry
            .get_primary_recovery(actor, recovery_id)
            .await?;
        Ok(Response::new(pb::GetPrimaryRecoveryResponse {
            recovery: Some(convert::recovery_at(&recovery, Utc::now())),
        }))
    }
}
