//! What the notification service asks other services, with its own service token: users
//! from identity (`BatchGetUsers`: login e-mail, locale, name, state) and, from the contact
//! registry, recipient resolution (`ResolveRecipients`, R1, C4) and sites (`GetSite`).

use std::collections::HashMap;
use std::time::Duration;

use kc_proto::contacts::{self as contacts_pb};
use kc_proto::identity::{self as identity_pb};
use kc_runtime::client::ServiceToken;
use tonic::transport::Channel;
use tonic::{Code, Status};
use uuid::Uuid;

use crate::domain::{Purpose, Role, Site};

/// Most user ids identity takes in one `BatchGetUsers`.
const BATCH_GET_MAX: usize = 500;
/// Longest wait for one call to another service.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A user as notices need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UserInfo {
    /// Login e-mail.
    pub email: String,
    /// Preferred language (BCP-47).
    pub locale: String,
    /// Name shown to people.
    pub display_name: String,
    /// Whether identity reports the user as disabled.
    pub disabled: bool,
}

/// One recipient the registry resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Resolved {
    /// The user.
    pub user_id: Uuid,
    /// The role that made it a recipient, when known.
    pub role: Option<Role>,
    /// Its contact's notification e-mail (C9), if set.
    pub notification_email: Option<String>,
    /// Why it was chosen (R1).
    pub rule: String,
}

/// The registry's answer to `ResolveRecipients`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Resolution {
    /// The contacts to tell, in the registry's order.
    pub recipients: Vec<Resolved>,
    /// The business partner's address and rule, for proofs of entitlement (C4).
    pub business_partner: Option<(String, String)>,
    /// The site's language.
    pub site_language: String,
}

/// Why a lookup failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LookupError {
    /// The other service does not know the site.
    #[error("site not found")]
    SiteNotFound,
    /// The other service is down or refused this service: retry later.
    #[error("{0}")]
    Unavailable(String),
    /// The other service answered with something unexpected.
    #[error("{0}")]
    Failed(String),
}

impl LookupError {
    fn of(service: &str, status: &Status) -> Self {
        match status.code() {
            Code::Unavailable
            | Code::DeadlineExceeded
            | Code::ResourceExhausted
            | Code::Aborted
            | Code::Cancelled
            | Code::Unknown => {
                LookupError::Unavailable(format!("{service} unavailable, retry later"))
            }
            code => {
                LookupError::Failed(format!("{service} answered {code:?}: {}", status.message()))
            }
        }
    }
}

/// Clients of identity and the contact registry.
#[derive(Clone, Debug)]
pub(crate) struct Directory {
    token: ServiceToken,
    identity: identity_pb::identity_service_client::IdentityServiceClient<Channel>,
    registry: contacts_pb::contact_registry_service_client::ContactRegistryServiceClient<Channel>,
}

impl Directory {
    /// Clients over the given channels, authenticated by `token`.
    pub(crate) fn new(token: ServiceToken, identity: Channel, registry: Channel) -> Self {
        Self {
            token,
            identity: identity_pb::identity_service_client::IdentityServiceClient::new(identity),
            registry:
                contacts_pb::contact_registry_service_client::ContactRegistryServiceClient::new(
                    registry,
                ),
        }
    }

    async fn request<T>(
        &self,
        service: &str,
        message: T,
    ) -> Result<tonic::Request<T>, LookupError> {
        let mut request = self
            .token
            .request(message, None)
            .await
            .map_err(|status| LookupError::of(service, &status))?;
        request.set_timeout(CALL_TIMEOUT);
        Ok(request)
    }

    /// The users of `ids` that identity knows (unknown ids are absent).
    pub(crate) async fn users(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, UserInfo>, LookupError> {
        let mut unique: Vec<Uuid> = ids.to_vec();
        unique.sort();
        unique.dedup();
        let mut users = HashMap::with_capacity(unique.len());
        for chunk in unique.chunks(BATCH_GET_MAX) {
            let request = self
                .request(
                    "identity",
                    identity_pb::BatchGetUsersRequest {
                        user_ids: chunk.iter().map(Uuid::to_string).collect(),
                    },
                )
                .await?;
            let response =
                tokio::time::timeout(CALL_TIMEOUT, self.identity.clone().batch_get_users(request))
                    .await
                    .map_err(|_| {
                        LookupError::Unavailable("identity unavailable, retry later".into())
                    })?
                    .map_err(|status| LookupError::of("identity", &status))?
                    .into_inner();
            for user in response.users {
                let Ok(user_id) = Uuid::parse_str(&user.user_id) else {
                    continue;
                };
                users.insert(
                    user_id,
                    UserInfo {
                        email: user.email,
                        locale: user.locale,
                        display_name: user.display_name,
                        disabled: user.state == identity_pb::UserState::Disabled as i32,
                    },
                );
            }
        }
        Ok(users)
    }

    /// Who must receive a notice of `purpose` on the site, and why (R1, C4).
    pub(crate) async fn resolve_recipients(
        &self,
        site_id: Uuid,
        purpose: Purpose,
    ) -> Result<Resolution, LookupError> {
        let request = self
            .request(
                "the contact registry",
                contacts_pb::ResolveRecipientsRequest {
                    site_id: site_id.to_string(),
                    purpose: purpose.number(),
                },
            )
            .await?;
        let response = tokio::time::timeout(
            CALL_TIMEOUT,
            self.registry.clone().resolve_recipients(request),
        )
        .await
        .map_err(|_| {
            LookupError::Unavailable("the contact registry unavailable, retry later".into())
        })?
        .map_err(|status| match status.code() {
            Code::NotFound => LookupError::SiteNotFound,
            _ => LookupError::of("the contact registry", &status),
        })?
        .into_inner();
        let mut recipients = Vec::with_capacity(response.recipients.len());
        for recipient in response.recipients {
            let user_id = Uuid::parse_str(&recipient.user_id).map_err(|_| {
                LookupError::Failed(
                    "the contact registry sent a recipient without a user id".into(),
                )
            })?;
            recipients.push(Resolved {
                user_id,
                role: Role::from_number(recipient.role),
                notification_email: non_empty(recipient.notification_email),
                rule: recipient.rule,
            });
        }
        let business_partner = non_empty(response.business_partner_email)
            .map(|email| (email, response.business_partner_rule));
        Ok(Resolution {
            recipients,
            business_partner,
            site_language: response.site_language,
        })
    }

    /// The site of `site_id`; `None` when the registry does not know it.
    pub(crate) async fn site(&self, site_id: Uuid) -> Result<Option<Site>, LookupError> {
        let request = self
            .request(
                "the contact registry",
                contacts_pb::GetSiteRequest {
                    site_id: site_id.to_string(),
                },
            )
            .await?;
        let response = tokio::time::timeout(CALL_TIMEOUT, self.registry.clone().get_site(request))
            .await
            .map_err(|_| {
                LookupError::Unavailable("the contact registry unavailable, retry later".into())
            })?;
        match response {
            Ok(response) => Ok(response.into_inner().site.map(|site| Site {
                site_id,
                site_number: site.site_number,
                name: site.name,
                language: site.language,
            })),
            Err(status) if status.code() == Code::NotFound => Ok(None),
            Err(status) => Err(LookupError::of("the contact registry", &status)),
        }
    }
}

/// `None` for an empty (or blank) text.
pub(crate) fn non_empty(text: String) -> Option<String> {
    if text.trim().is_empty() {
        None
    } else {
        Some(text.trim().to_owned())
    }
}
