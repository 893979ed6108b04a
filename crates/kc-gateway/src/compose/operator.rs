//! The operators' RPCs over the portfolio (FindSite, ListCustomerSites, RetryNotification)
//! and the site's domain policies (ListDomainPolicies, also for the site's approvers).

use kc_proto::gateway::{self as pb, find_site_request::Key};
use kc_proto::{access, contacts, notification};
use kc_runtime::values::{CustomerNumber, SiteNumber};

use super::{Gateway, id, page_size, required};
use crate::clients::{Ctx, Svc};
use crate::error::GatewayError;
use crate::policy::method;

impl Gateway {
    /// `FindSite` (operators): the registry's `LookupSite`, by site number or by customer
    /// number (the customer's original site).
    pub(crate) async fn find_site(
        &self,
        ctx: &Ctx,
        request: pb::FindSiteRequest,
    ) -> Result<pb::FindSiteResponse, GatewayError> {
        self.admit(ctx, method::FIND_SITE)?;
        let lookup = match request.key {
            Some(Key::SiteNumber(number)) => contacts::LookupSiteRequest {
                site_number: SiteNumber::parse("site_number", &number)?
                    .as_str()
                    .to_owned(),
                customer_number: String::new(),
            },
            Some(Key::CustomerNumber(number)) => contacts::LookupSiteRequest {
                site_number: String::new(),
                customer_number: CustomerNumber::parse("customer_number", &number)?
                    .as_str()
                    .to_owned(),
            },
            None => {
                return Err(GatewayError::invalid(
                    "key",
                    "required: a site_number or a customer_number",
                ));
            }
        };
        let found = self.clients.lookup_site(ctx, lookup).await?;
        Ok(pb::FindSiteResponse {
            site: Some(required(Svc::Contacts, "site", found.site)?),
        })
    }

    /// `ListCustomerSites` (operators): the registry's `ListSites` of one customer.
    pub(crate) async fn list_customer_sites(
        &self,
        ctx: &Ctx,
        request: pb::ListCustomerSitesRequest,
    ) -> Result<pb::ListCustomerSitesResponse, GatewayError> {
        self.admit(ctx, method::LIST_CUSTOMER_SITES)?;
        let customer_number = CustomerNumber::parse("customer_number", &request.customer_number)?;
        let page = self
            .clients
            .list_sites(
                ctx,
                contacts::ListSitesRequest {
                    customer_number: customer_number.as_str().to_owned(),
                    page_size: page_size(request.page_size, 100)?,
                    page_token: request.page_token,
                },
            )
            .await?;
        Ok(pb::ListCustomerSitesResponse {
            sites: page.sites,
            next_page_token: page.next_page_token,
        })
    }

    /// `RetryNotification` (operators): notification's own `RetryNotification`, asked with
    /// the operator's token (notification checks it is an operator's too).
    pub(crate) async fn retry_notification(
        &self,
        ctx: &Ctx,
        request: pb::RetryNotificationRequest,
    ) -> Result<pb::RetryNotificationResponse, GatewayError> {
        self.admit(ctx, method::RETRY_NOTIFICATION)?;
        let notification_id = id("notification_id", &request.notification_id)?;
        let retried = self
            .clients
            .retry_notification(
                ctx,
                notification::RetryNotificationRequest {
                    notification_id: notification_id.to_string(),
                },
            )
            .await?;
        Ok(pb::RetryNotificationResponse {
            notification: Some(required(
                Svc::Notification,
                "notification",
                retried.notification,
            )?),
        })
    }

    /// `ListDomainPolicies`: the site's approvers (A3) and operators; the policies are read
    /// while the check runs and returned only when it passed.
    pub(crate) async fn list_domain_policies(
        &self,
        ctx: &Ctx,
        request: pb::ListDomainPoliciesRequest,
    ) -> Result<pb::ListDomainPoliciesResponse, GatewayError> {
        let site_id = id("site_id", &request.site_id)?;
        let size = page_size(request.page_size, 100)?;
        let (allowed, read) = futures::join!(
            self.admit_site(ctx, method::LIST_DOMAIN_POLICIES, site_id),
            self.clients.list_domain_policies(
                ctx,
                access::ListDomainPoliciesRequest {
                    site_id: site_id.to_string(),
                    page_size: size,
                    page_token: request.page_token,
                },
            )
        );
        allowed?;
        let page = read?;
        Ok(pb::ListDomainPoliciesResponse {
            domain_policies: page.domain_policies,
            next_page_token: page.next_page_token,
        })
    }
}
