//! Recovery of a site whose primary contact is gone (C12): RequestPrimaryRecovery,
//! RefusePrimaryRecovery, AttestPrimaryRecovery, GetPrimaryRecovery.
//!
//! The registry holds the state machine and decides, in its own transaction, who may ask,
//! refuse, attest and read. The gateway adds what only it can see: the e-mail addresses. A
//! caller who is no contact of the site may ask when its proven login e-mail is in the
//! domain of one of the site's key contacts; the gateway finds that contact (as itself: the
//! caller may hold nothing on the site) and names it to the registry, which checks at commit
//! that it still is a contact. Every refusal of a request that could tell whether a site
//! exists is the registry's one NOT_FOUND answer (S3, I2).

use kc_proto::contacts::{self, ContactRole, PrimaryRecoveryState};
use kc_proto::gateway as pb;
use kc_proto::identity::{self, UserState};
use kc_runtime::Caller;
use tonic::Code;

use super::revisions::revision_token;
use super::{Gateway, id, required};
use crate::clients::{Ctx, Svc};
use crate::error::GatewayError;
use crate::policy::method;

/// The answer to a recovery asked for a site that does not exist, whose customer number
/// differs, or by someone who may not ask: the registry's own words (S3, I2).
const NO_MATCHING_SITE: &str = "no site matches this site number and customer number";

/// The roles whose holders' e-mail domains let a colleague ask (C12): the key contacts, at
/// most ten people (C1, C3, C5, C6); site users are not counted.
const KEY_ROLES: [ContactRole; 7] = [
    ContactRole::Primary,
    ContactRole::Administrative,
    ContactRole::SiteTechnical,
    ContactRole::Secondary,
    ContactRole::Renewal,
    ContactRole::Shipping,
    ContactRole::Billing,
];

/// The domain of a login e-mail, lowercased; `None` without one.
fn domain_of(email: &str) -> Option<String> {
    let (_, domain) = email.trim().rsplit_once('@')?;
    (!domain.is_empty()).then(|| domain.to_ascii_lowercase())
}

/// A text field that must not be blank.
fn required_text<'a>(field: &str, value: &'a str) -> Result<&'a str, GatewayError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(GatewayError::invalid(field, "required"));
    }
    Ok(value)
}

impl Gateway {
    /// `RequestPrimaryRecovery` (C12, S3): finds the site as the gateway, the contact whose
    /// e-mail domain vouches for a caller who is no contact, then asks the registry for the
    /// caller.
    pub(crate) async fn request_primary_recovery(
        &self,
        ctx: &Ctx,
        request: pb::RequestPrimaryRecoveryRequest,
    ) -> Result<pb::RequestPrimaryRecoveryResponse, GatewayError> {
        let caller = self.admit(ctx, method::REQUEST_PRIMARY_RECOVERY)?;
        let site_number = required_text("site_number", &request.site_number)?;
        let customer_number = required_text("customer_number", &request.customer_number)?;
        required_text("reason", &request.reason)?;
        let gateway = ctx.as_gateway();
        let found = self
            .clients
            .lookup_site(
                &gateway,
                contacts::LookupSiteRequest {
                    site_number: site_number.to_owned(),
                    ..Default::default()
                },
            )
            .await;
        let site = match found {
            Ok(response) => response.site,
            Err(GatewayError::Downstream { ref status, .. })
                if matches!(status.code(), Code::NotFound | Code::InvalidArgument) =>
            {
                None
            }
            Err(error) => return Err(error),
        };
        let Some(site) = site.filter(|site| site.customer_number == customer_number) else {
            return Err(GatewayError::NotFound(NO_MATCHING_SITE.into()));
        };
        let vouching_user_id = self
            .vouching_contact(&gateway, caller, &site.site_id)
            .await?
            .unwrap_or_default();
        let response = self
            .clients
            .request_primary_recovery(
                ctx,
                contacts::RequestPrimaryRecoveryRequest {
                    site_number: site_number.to_owned(),
                    customer_number: customer_number.to_owned(),
                    reason: request.reason,
                    vouching_user_id,
                },
            )
            .await?;
        Ok(pb::RequestPrimaryRecoveryResponse {
            recovery: Some(required(Svc::Contacts, "recovery", response.recovery)?),
        })
    }

    /// A key contact of `site_id` (not the caller) whose login e-mail is in the domain of the
    /// caller's proven, active login e-mail (C12, I1); `None` when there is none, or the
    /// caller's address is not proven. Asked as the gateway.
    async fn vouching_contact(
        &self,
        gateway: &Ctx,
        caller: &Caller,
        site_id: &str,
    ) -> Result<Option<String>, GatewayError> {
        let me = self
            .clients
            .get_user(
                gateway,
                identity::GetUserRequest {
                    user_id: caller.subject.to_string(),
                },
            )
            .await?
            .user;
        let Some(me) = me else { return Ok(None) };
        let proven = me.email_verified && me.state == UserState::Active as i32;
        let Some(domain) = domain_of(&me.email).filter(|_| proven) else {
            return Ok(None);
        };
        let key_contacts = self
            .clients
            .list_site_contacts(
                gateway,
                contacts::ListSiteContactsRequest {
                    site_id: site_id.to_owned(),
                    roles: KEY_ROLES.iter().map(|role| *role as i32).collect(),
                    page_size: 100,
                    ..Default::default()
                },
            )
            .await?
            .contacts;
        let me_id = caller.subject.to_string();
        let users = self
            .users_by_id(
                gateway,
                key_contacts
                    .iter()
                    .map(|contact| contact.user_id.clone())
                    .filter(|user_id| *user_id != me_id),
            )
            .await?;
        let mut colleagues: Vec<&String> = users
            .values()
            .filter(|user| domain_of(&user.email).as_deref() == Some(domain.as_str()))
            .map(|user| &user.user_id)
            .collect();
        colleagues.sort();
        Ok(colleagues.first().map(|user_id| (*user_id).clone()))
    }

    /// `RefusePrimaryRecovery` (C12): the registry lets the old primary (or an operator)
    /// refuse, and answers NOT_FOUND to anyone else.
    pub(crate) async fn refuse_primary_recovery(
        &self,
        ctx: &Ctx,
        request: pb::RefusePrimaryRecoveryRequest,
    ) -> Result<pb::RefusePrimaryRecoveryResponse, GatewayError> {
        self.admit(ctx, method::REFUSE_PRIMARY_RECOVERY)?;
        let recovery_id = id("recovery_id", &request.recovery_id)?;
        required_text("reason", &request.reason)?;
        let response = self
            .clients
            .refuse_primary_recovery(
                ctx,
                contacts::RefusePrimaryRecoveryRequest {
                    recovery_id: recovery_id.to_string(),
                    reason: request.reason,
                },
            )
            .await?;
        Ok(pb::RefusePrimaryRecoveryResponse {
            recovery: Some(required(Svc::Contacts, "recovery", response.recovery)?),
        })
    }

    /// `GetPrimaryRecovery` (C12): operators, the requester and the old primary.
    pub(crate) async fn get_primary_recovery(
        &self,
        ctx: &Ctx,
        request: pb::GetPrimaryRecoveryRequest,
    ) -> Result<pb::GetPrimaryRecoveryResponse, GatewayError> {
        self.admit(ctx, method::GET_PRIMARY_RECOVERY)?;
        let recovery_id = id("recovery_id", &request.recovery_id)?;
        let response = self
            .clients
            .get_primary_recovery(
                ctx,
                contacts::GetPrimaryRecoveryRequest {
                    recovery_id: recovery_id.to_string(),
                },
            )
            .await?;
        Ok(pb::GetPrimaryRecoveryResponse {
            recovery: Some(required(Svc::Contacts, "recovery", response.recovery)?),
        })
    }

    /// `AttestPrimaryRecovery` (C12, C8): an operator attests an attestable recovery; the
    /// new primary is bound by e-mail (invited when unknown, I1) only once the recovery is
    /// attestable, then the registry transfers the primary in the attestation's own
    /// transaction, and the answer waits until access management applied it (T8).
    pub(crate) async fn attest_primary_recovery(
        &self,
        ctx: &Ctx,
        request: pb::AttestPrimaryRecoveryRequest,
    ) -> Result<pb::AttestPrimaryRecoveryResponse, GatewayError> {
        self.admit(ctx, method::ATTEST_PRIMARY_RECOVERY)?;
        let recovery_id = id("recovery_id", &request.recovery_id)?;
        required_text("new_primary_email", &request.new_primary_email)?;
        required_text("reason", &request.reason)?;
        let recovery = self
            .clients
            .get_primary_recovery(
                ctx,
                contacts::GetPrimaryRecoveryRequest {
                    recovery_id: recovery_id.to_string(),
                },
            )
            .await?
            .recovery;
        let recovery = required(Svc::Contacts, "recovery", recovery)?;
        // Nobody is invited for an attestation the registry would refuse (it decides again
        // at commit).
        if recovery.state != PrimaryRecoveryState::Attestable as i32 {
            let state = PrimaryRecoveryState::try_from(recovery.state)
                .unwrap_or(PrimaryRecoveryState::Unspecified);
            return Err(GatewayError::FailedPrecondition(format!(
                "rule C12: only a recovery whose waiting period is over, neither refused nor expired, can be attested; this one is {}",
                state.as_str_name()
            )));
        }
        let site_id = id("site_id", &recovery.site_id)?;
        let (user, _) = self
            .person(
                ctx,
                &request.new_primary_email,
                request.display_name.as_deref(),
                &request.locale,
                self.site_language(ctx, site_id),
            )
            .await
            .map_err(|error| error.rename_fields(&[("email", "new_primary_email")]))?;
        let response = self
            .clients
            .attest_primary_recovery(
                ctx,
                contacts::AttestPrimaryRecoveryRequest {
                    recovery_id: recovery_id.to_string(),
                    new_user_id: user.user_id,
                    reason: request.reason,
                    previous_primary_role: ContactRole::SiteUser as i32,
                },
            )
            .await?;
        self.registry_write_in_effect(ctx, &response.revision)
            .await?;
        Ok(pb::AttestPrimaryRecoveryResponse {
            recovery: Some(required(Svc::Contacts, "recovery", response.recovery)?),
            site: response.site,
            primary: response.primary,
            revision: revision_token(Svc::Contacts, &response.revision),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_are_lowercased_and_need_an_at_sign() {
        assert_eq!(
            domain_of(" Ann@Example.COM ").as_deref(),
            Some("example.com")
        );
        assert_eq!(domain_of("a@b@corp.fr").as_deref(), Some("corp.fr"));
        assert_eq!(domain_of("nobody"), None);
        assert_eq!(domain_of("trailing@"), None);
    }
}
