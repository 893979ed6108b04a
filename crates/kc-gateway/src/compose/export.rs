//! Bulk export of contacts (`ExportContacts`): the contacts of a customer's sites, or of named
//! sites, one row per contact role, in the columns `ImportContacts` reads (importing an
//! export changes nothing).
//!
//! The sites and the caller's permissions on each are settled before the first row is sent
//! (so a refusal is the call's status, never a half export); then each site is read (its
//! contacts, their people, and their explicit levels when the caller may view access) with a
//! deadline of its own, and its rows are sent before the next site is read: the gateway holds
//! one site's rows at a time.

use std::collections::HashMap;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use kc_proto::access::{self, Permission};
use kc_proto::contacts::{self, Site};
use kc_proto::gateway as pb;
use kc_runtime::Violation;
use kc_runtime::values::{CustomerNumber, SiteNumber};
use tokio::sync::mpsc;
use tonic::Status;

use super::import::{AnswerStream, PartContexts, admit_each_site, answers, put_levels, role_text};
use super::{DOWNSTREAM_PAGE_MAX, Gateway, all_pages, denied, id};
use crate::clients::{CallKind, Ctx};
use crate::error::GatewayError;
use crate::policy::{Need, method};

/// Most sites named in one export.
const MAX_NAMED_SITES: usize = 1000;

/// Sites read or checked at once while the export is settled.
const SITES_IN_FLIGHT: usize = 8;

/// Rows sent ahead of the client.
const ROWS_AHEAD: usize = 256;

/// What the caller may read of a site: the contacts always, the levels when it holds
/// ACCESS_VIEW.
const READ_PERMISSIONS: [Permission; 2] = [Permission::ContactsView, Permission::AccessView];

impl Gateway {
    /// `ExportContacts`: settles the sites and the caller's permissions on each, then streams
    /// their rows (see the module).
    pub(crate) async fn export_contacts(
        self: Arc<Self>,
        ctx: &Ctx,
        contexts: PartContexts,
        request: pb::ExportContactsRequest,
    ) -> Result<AnswerStream<pb::ExportContactsResponse>, GatewayError> {
        let need = admit_each_site(contexts.caller(), method::EXPORT_CONTACTS)?;
        let operator = contexts.caller().is_operator();
        let customer = request.customer_number.trim();
        let named = !request.site_numbers.is_empty();
        let sites = match (customer.is_empty(), named) {
            (false, false) => self.customer_sites(ctx, customer, operator, need).await?,
            (true, true) => {
                self.named_sites(ctx, &request.site_numbers, operator, need)
                    .await?
            }
            _ => {
                return Err(GatewayError::invalid(
                    "customer_number",
                    "exactly one of customer_number and site_numbers is required",
                ));
            }
        };
        let readable = self.readable(ctx, sites, operator, named, need).await?;
        let (rows_tx, rows_rx) = mpsc::channel(ROWS_AHEAD);
        tokio::spawn(async move {
            for (site, levels) in readable {
                let ctx = contexts.part(CallKind::Read);
                let rows = match self.site_rows(&ctx, &site, levels).await {
                    Ok(rows) => rows,
                    Err(error) => {
                        let _ = rows_tx.send(Err(Status::from(error))).await;
                        return;
                    }
                };
                for row in rows {
                    let answer = pb::ExportContactsResponse { row: Some(row) };
                    if rows_tx.send(Ok(answer)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(answers(rows_rx))
    }

    /// Every site of the customer numbered `customer`, in site-number order.
    async fn customer_sites(
        &self,
        ctx: &Ctx,
        customer: &str,
        operator: bool,
        need: Need,
    ) -> Result<Vec<Site>, GatewayError> {
        let customer = CustomerNumber::parse("customer_number", customer)?;
        let gateway = ctx.as_gateway();
        let sites = all_pages("sites", |page_token| {
            let list = contacts::ListSitesRequest {
                customer_number: customer.as_str().to_owned(),
                page_size: DOWNSTREAM_PAGE_MAX,
                page_token,
            };
            let gateway = &gateway;
            async move {
                let response = self.clients.list_sites(gateway, list).await?;
                Ok((response.sites, response.next_page_token))
            }
        })
        .await?;
        if sites.is_empty() {
            return Err(if operator {
                GatewayError::NotFound(format!(
                    "no site has the customer number {}",
                    customer.as_str()
                ))
            } else {
                denied(need)
            });
        }
        Ok(sites)
    }

    /// The sites named by number, in site-number order; one unknown is refused.
    async fn named_sites(
        &self,
        ctx: &Ctx,
        numbers: &[String],
        operator: bool,
        need: Need,
    ) -> Result<Vec<Site>, GatewayError> {
        if numbers.len() > MAX_NAMED_SITES {
            return Err(GatewayError::invalid(
                "site_numbers",
                format!("at most {MAX_NAMED_SITES} sites"),
            ));
        }
        let mut parsed = Vec::new();
        let mut violations: Vec<Violation> = Vec::new();
        for (at, number) in numbers.iter().enumerate() {
            match SiteNumber::parse(&format!("site_numbers[{at}]"), number.trim()) {
                Ok(number) => parsed.push(number.as_str().to_owned()),
                Err(violation) => violations.push(violation),
            }
        }
        if !violations.is_empty() {
            return Err(GatewayError::InvalidArgument(violations));
        }
        parsed.sort();
        parsed.dedup();
        futures::stream::iter(parsed)
            .map(|number| async move {
                self.site_by_number(ctx, &number).await?.ok_or_else(|| {
                    if operator {
                        GatewayError::NotFound(format!("no site has the number {number}"))
                    } else {
                        denied(need)
                    }
                })
            })
            .buffered(SITES_IN_FLIGHT)
            .try_collect()
            .await
    }

    /// The sites the caller may read, each with whether it may read the levels there. Named
    /// sites must all be readable; a customer's are left out when not.
    async fn readable(
        &self,
        ctx: &Ctx,
        sites: Vec<Site>,
        operator: bool,
        named: bool,
        need: Need,
    ) -> Result<Vec<(Site, bool)>, GatewayError> {
        if operator {
            return Ok(sites.into_iter().map(|site| (site, true)).collect());
        }
        let checked: Vec<(Site, Vec<bool>)> = futures::stream::iter(sites)
            .map(|site| async move {
                let site_id = id("site_id", &site.site_id)?;
                let allowed = self.check(ctx, site_id, &READ_PERMISSIONS).await?;
                Ok::<_, GatewayError>((site, allowed))
            })
            .buffered(SITES_IN_FLIGHT)
            .try_collect()
            .await?;
        let mut readable = Vec::new();
        for (site, allowed) in checked {
            let contacts = allowed.first().copied().unwrap_or(false);
            let levels = allowed.get(1).copied().unwrap_or(false);
            if contacts {
                readable.push((site, levels));
            } else if named {
                return Err(denied(need));
            }
        }
        if readable.is_empty() {
            return Err(denied(need));
        }
        Ok(readable)
    }

    /// The rows of one site: one per contact role, by role (PRIMARY first) then creation,
    /// with the explicit levels of each person when `levels` and it has a grant.
    async fn site_rows(
        &self,
        ctx: &Ctx,
        site: &Site,
        levels: bool,
    ) -> Result<Vec<pb::ContactRow>, GatewayError> {
        let contacts = self.site_contacts(ctx, &site.site_id, &[]).await?;
        let users = self.users_by_id(ctx, contacts.iter().map(|c| c.user_id.clone()));
        let grants = async {
            if !levels {
                return Ok(HashMap::new());
            }
            let profiles = all_pages("access profiles", |page_token| {
                let list = access::ListSiteAccessRequest {
                    site_id: site.site_id.clone(),
                    page_size: DOWNSTREAM_PAGE_MAX,
                    page_token,
                };
                async move {
                    let response = self.clients.list_site_access(ctx, list).await?;
                    Ok((response.profiles, response.next_page_token))
                }
            })
            .await?;
            Ok::<_, GatewayError>(
                profiles
                    .into_iter()
                    // Only explicit grants are the person's own levels; implied ones come
                    // with the roles.
                    .filter(|profile| profile.update_time.is_some())
                    .map(|profile| (profile.user_id.clone(), profile))
                    .collect::<HashMap<_, _>>(),
            )
        };
        let (users, grants) = futures::try_join!(users, grants)?;
        let mut rows = Vec::with_capacity(contacts.len());
        for contact in contacts {
            let Some(user) = users.get(&contact.user_id) else {
                tracing::warn!(
                    contact_id = %contact.contact_id,
                    "export: identity does not know the user of a contact; left out"
                );
                continue;
            };
            let details = contact.details.unwrap_or_default();
            let mut row = pb::ContactRow {
                site_number: site.site_number.clone(),
                email: user.email.clone(),
                display_name: user.display_name.clone(),
                locale: user.locale.clone(),
                role: role_text(contact.role),
                phone: details.phone,
                job_title: details.job_title,
                notification_email: details.notification_email,
                ..Default::default()
            };
            if let Some(profile) = grants.get(&contact.user_id) {
                put_levels(
                    &mut row,
                    &profile.explicit.unwrap_or_default(),
                    profile.explicit_support_level,
                );
            }
            rows.push(row);
        }
        Ok(rows)
    }
}
