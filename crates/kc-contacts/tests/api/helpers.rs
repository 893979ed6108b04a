//! Harness of the contact registry tests: a real Postgres database, the registry served on
//! `127.0.0.1:0` with a test token issuer, typed clients and fixtures.

use kc_runtime::cli::ParseArgs;
use std::str::FromStr;

use kc_contacts::config::ContactsArgs;
use kc_proto::contacts::contact_registry_service_client::ContactRegistryServiceClient;
use kc_proto::contacts::{self as pb};
use kc_runtime::Shutdown;
use kc_runtime::token::CallerKind;
use kc_testkit::tokens::TestIssuer;
use kc_testkit::{SpawnedService, TestDatabase, spawn_service, test_database};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use uuid::Uuid;

pub use kc_testkit::checks::PATIENCE;
pub use kc_testkit::fixtures::site_request;
pub use kc_testkit::grpc::{
    all_at_once, all_pages, authed, expect_code, expect_field_exact as expect_field, next_messages,
    on_behalf_of, read_pages, wait_until,
};

pub type Client = ContactRegistryServiceClient<Channel>;

pub struct Harness {
    pub db: TestDatabase,
    pub service: SpawnedService,
    pub channel: Channel,
    pub issuer: TestIssuer,
    /// Client id of the calling service account.
    pub service_id: Uuid,
    pub service_token: String,
    /// User id of the operator.
    pub operator_id: Uuid,
    pub operator_token: String,
}

impl Harness {
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    pub async fn start_with(extra: &[&str]) -> Self {
        let db = test_database().await;
        let issuer = TestIssuer::new();
        let key_args = kc_testkit::secrets::contacts_key_args();
        let mut argv = vec![
            "kc-contacts",
            "--database-url",
            &db.url,
            "--identity-url",
            "http://127.0.0.1:1",
        ];
        argv.extend(key_args.iter().map(String::as_str));
        argv.extend(extra);
        let args = ContactsArgs::parse_from(argv).expect("test arguments parse");
        let service = {
            let verifier = issuer.verifier();
            let shutdown = Shutdown::new();
            spawn_service(move |listener| {
                kc_contacts::run_with_verifier(args, verifier, listener, shutdown)
            })
            .await
        };
        let channel = service.channel().await;
        let service_id = Uuid::new_v4();
        let service_token = issuer.mint(service_id, CallerKind::Service, "");
        let operator_id = Uuid::new_v4();
        let operator_token = issuer.mint(
            operator_id,
            CallerKind::Operator,
            "operator@keycontacts.test",
        );
        Self {
            db,
            service,
            channel,
            issuer,
            service_id,
            service_token,
            operator_id,
            operator_token,
        }
    }

    pub fn client(&self) -> Client {
        ContactRegistryServiceClient::new(self.channel.clone())
    }

    /// Sends each of `requests` with `rpc`, each on its own client and task, all at once (see
    /// [`all_at_once`]): the answers, in the order of `requests`.
    pub async fn at_once<Req, Resp, Fut>(
        &self,
        requests: impl IntoIterator<Item = Request<Req>>,
        rpc: impl Fn(Client, Request<Req>) -> Fut,
    ) -> Vec<Result<Resp, Status>>
    where
        Resp: Send + 'static,
        Fut: std::future::Future<Output = Result<tonic::Response<Resp>, Status>> + Send + 'static,
    {
        let calls = requests
            .into_iter()
            .map(|request| {
                let call = rpc(self.client(), request);
                async move { call.await.map(tonic::Response::into_inner) }
            })
            .collect();
        all_at_once(calls).await
    }

    /// A request from the service account, acting for nobody.
    pub fn svc<T>(&self, message: T) -> Request<T> {
        authed(&self.service_token, message)
    }

    /// A request from the service account acting for `user`.
    pub fn for_user<T>(&self, user: Uuid, message: T) -> Request<T> {
        on_behalf_of(authed(&self.service_token, message), user)
    }

    /// A request from the operator.
    pub fn op<T>(&self, message: T) -> Request<T> {
        authed(&self.operator_token, message)
    }

    /// A customer's token (refused by the registry).
    pub fn customer_token(&self) -> String {
        self.issuer
            .mint(Uuid::new_v4(), CallerKind::Customer, "ada@example.com")
    }

    /// A pool on the test database bound to the `contacts` schema, for checks and for
    /// fixtures no RPC can make (imported data).
    pub async fn pool(&self) -> PgPool {
        pool_on(&self.db.url, "contacts").await
    }

    /// Gives `user` explicit grants on a site as access management publishes them (a
    /// `RightsChanged` event through the registry's own projection apply, T8): the authority
    /// a person holds by grant rather than by role.
    pub async fn grant(&self, site_id: &str, user: Uuid, explicit: kc_proto::access::ToolAccess) {
        // In a transaction, as the consumer applies events: its share lock on the site is
        // held until the grant commits.
        let pool = self.pool().await;
        let mut tx = pool.begin().await.expect("transaction");
        kc_contacts::followers::apply_access_event(
            &mut tx,
            &rights_changed(site_id, user, explicit),
        )
        .await
        .expect("grant applied");
        tx.commit().await.expect("grant committed");
    }

    /// The top level of every tool, explicitly granted (T8): a person with every authority
    /// on the site but no role (an account-management holder, as the gateway vouches).
    pub async fn grant_all(&self, site_id: &str, user: Uuid) {
        self.grant(site_id, user, kc_testkit::fixtures::top_tools())
            .await;
    }

    /// Contact updates UPDATE, explicitly granted (T8): what the gateway asks of a person
    /// who changes a site's contacts.
    pub async fn grant_contact_updates(&self, site_id: &str, user: Uuid) {
        self.grant(
            site_id,
            user,
            kc_proto::access::ToolAccess {
                contact_updates: kc_proto::access::ContactUpdatesAccess::Update as i32,
                ..Default::default()
            },
        )
        .await;
    }

    /// Number of events in the outbox (committed or not yet visible to streams).
    pub async fn outbox_count(&self) -> i64 {
        let pool = self.pool().await;
        let count = sqlx::query_scalar("SELECT count(*) FROM outbox_events")
            .fetch_one(&pool)
            .await
            .expect("count outbox events");
        pool.close().await;
        count
    }

    /// The code mailed for the pending notification e-mail of `contact_id` (rule C11), read
    /// from the outbox as notification reads it (opened with the test opening key); `None`
    /// when no event of the contact still holds one.
    pub async fn pending_code(&self, contact_id: &str) -> Option<String> {
        use prost::Message;
        let pool = self.pool().await;
        let payloads: Vec<Vec<u8>> = sqlx::query_scalar(
            "SELECT payload FROM outbox_events \
             WHERE event_type = 'contact.notification_email_change_requested' \
             ORDER BY txid, seq",
        )
        .fetch_all(&pool)
        .await
        .expect("read the outbox");
        pool.close().await;
        payloads.iter().rev().find_map(|payload| {
            let event = pb::Event::decode(payload.as_slice()).expect("an event");
            match event.payload {
                Some(pb::event::Payload::NotificationEmailChangeRequested(requested))
                    if requested.contact.as_ref().map(|c| c.contact_id.as_str())
                        == Some(contact_id)
                        && !requested.sealed_code.is_empty() =>
                {
                    Some(kc_testkit::secrets::open_code(&requested.sealed_code))
                }
                _ => None,
            }
        })
    }

    /// Confirms the pending notification e-mail of `contact` as its own user with the
    /// mailed code (rule C11); returns the contact after.
    pub async fn confirm_email(&self, contact: &pb::Contact) -> pb::Contact {
        let code = self
            .pending_code(&contact.contact_id)
            .await
            .expect("a mailed code");
        let user = Uuid::parse_str(&contact.user_id).expect("user id");
        self.client()
            .confirm_notification_email(self.for_user(
                user,
                pb::ConfirmNotificationEmailRequest {
                    code,
                    contact_id: contact.contact_id.clone(),
                    ..Default::default()
                },
            ))
            .await
            .expect("confirm the notification e-mail")
            .into_inner()
            .contact
            .expect("contact")
    }

    /// Creates a site from `request` as the service.
    pub async fn create(&self, request: pb::CreateSiteRequest) -> pb::CreateSiteResponse {
        self.client()
            .create_site(self.svc(request))
            .await
            .expect("create site")
            .into_inner()
    }

    /// Creates a valid site numbered `site_number` of customer `customer_number`, without
    /// S&S, whose primary contact is `primary`.
    pub async fn site(&self, site_number: &str, customer_number: &str, primary: Uuid) -> pb::Site {
        self.create(site_request(site_number, customer_number, primary))
            .await
            .site
            .expect("site")
    }

    /// Creates a site with active S&S, primary `primary` and STC `stc`.
    pub async fn supported_site(
        &self,
        site_number: &str,
        customer_number: &str,
        primary: Uuid,
        stc: Uuid,
    ) -> pb::CreateSiteResponse {
        self.create(pb::CreateSiteRequest {
            support_active: true,
            support_end_date: "2027-03-31".into(),
            site_technical_user_id: stc.to_string(),
            ..site_request(site_number, customer_number, primary)
        })
        .await
    }

    /// UpdateSite with `request` (its caller and message); the test fails when refused.
    pub async fn update_site(&self, request: Request<pb::UpdateSiteRequest>) -> pb::Site {
        self.client()
            .update_site(request)
            .await
            .expect("update site")
            .into_inner()
            .site
            .expect("site")
    }

    /// An UpdateSite of the service that turns S&S of `site_id` on or off (`active`), with
    /// `etag` (empty: none).
    pub fn set_support(
        &self,
        site_id: &str,
        active: bool,
        etag: &str,
    ) -> Request<pb::UpdateSiteRequest> {
        self.svc(pb::UpdateSiteRequest {
            site: Some(pb::Site {
                site_id: site_id.into(),
                support_active: active,
                ..Default::default()
            }),
            update_mask: mask(&["support_active"]),
            etag: etag.into(),
        })
    }

    /// UpdateContact with `request` (its caller and message); the test fails when refused.
    pub async fn update_contact(&self, request: Request<pb::UpdateContactRequest>) -> pb::Contact {
        self.client()
            .update_contact(request)
            .await
            .expect("update contact")
            .into_inner()
            .contact
            .expect("contact")
    }

    /// RemoveContact with `request` (its caller and message); the test fails when refused:
    /// the removed contact.
    pub async fn remove_contact(&self, request: Request<pb::RemoveContactRequest>) -> pb::Contact {
        self.client()
            .remove_contact(request)
            .await
            .expect("remove contact")
            .into_inner()
            .contact
            .expect("contact")
    }

    /// AssignContact with `request` (its caller and message); the test fails when refused.
    pub async fn assign_contact(&self, request: Request<pb::AssignContactRequest>) -> pb::Contact {
        self.client()
            .assign_contact(request)
            .await
            .expect("assign contact")
            .into_inner()
            .contact
            .expect("contact")
    }

    pub async fn get_site(&self, site_id: &str) -> pb::Site {
        self.client()
            .get_site(self.svc(pb::GetSiteRequest {
                site_id: site_id.into(),
            }))
            .await
            .expect("get site")
            .into_inner()
            .site
            .expect("site")
    }

    /// Assigns a role as the operator (its own token): a role that implies rights changes
    /// only for a person, never by a service acting for nobody (rule T6).
    pub async fn assign(
        &self,
        site_id: &str,
        user: Uuid,
        role: pb::ContactRole,
    ) -> Result<pb::Contact, Status> {
        self.client()
            .assign_contact(self.op(pb::AssignContactRequest {
                site_id: site_id.into(),
                user_id: user.to_string(),
                role: role as i32,
                details: None,
            }))
            .await
            .map(|r| r.into_inner().contact.expect("contact"))
    }

    /// Every contact of a site (one page), optionally of some roles only.
    pub async fn contacts(&self, site_id: &str, roles: &[pb::ContactRole]) -> Vec<pb::Contact> {
        let (contacts, next_page_token) =
            self.contacts_page(site_id, roles, 0, String::new()).await;
        assert!(next_page_token.is_empty(), "one page");
        contacts
    }

    /// One page of ListSiteContacts: its contacts and the next page's token.
    pub async fn contacts_page(
        &self,
        site_id: &str,
        roles: &[pb::ContactRole],
        page_size: i32,
        page_token: String,
    ) -> (Vec<pb::Contact>, String) {
        let page = self
            .client()
            .list_site_contacts(self.svc(pb::ListSiteContactsRequest {
                site_id: site_id.into(),
                roles: roles.iter().map(|r| *r as i32).collect(),
                page_size,
                page_token,
                by_person: false,
                with_people: false,
            }))
            .await
            .expect("list site contacts")
            .into_inner();
        (page.contacts, page.next_page_token)
    }

    /// One page of ListComplianceGaps: its sites and the next page's token.
    pub async fn gaps_page(
        &self,
        page_size: i32,
        page_token: String,
    ) -> (Vec<pb::SiteCompliance>, String) {
        let page = self
            .client()
            .list_compliance_gaps(self.svc(pb::ListComplianceGapsRequest {
                page_size,
                page_token,
                ..Default::default()
            }))
            .await
            .expect("list gaps")
            .into_inner();
        (page.sites, page.next_page_token)
    }

    /// Every audit record of a site, newest first.
    pub async fn audit(&self, site_id: &str) -> Vec<kc_proto::audit::AuditRecord> {
        all_pages(|page_token| async move {
            let page = self
                .client()
                .list_audit_records(self.svc(pb::ListAuditRecordsRequest {
                    site_id: site_id.into(),
                    page_size: 1000,
                    page_token,
                }))
                .await
                .expect("list audit records")
                .into_inner();
            (page.records, page.next_page_token)
        })
        .await
    }

    /// Every site (all pages).
    pub async fn all_sites(&self) -> Vec<pb::Site> {
        all_pages(|page_token| async move {
            let page = self
                .client()
                .list_sites(self.svc(pb::ListSitesRequest {
                    customer_number: String::new(),
                    page_size: 1000,
                    page_token,
                }))
                .await
                .expect("list sites")
                .into_inner();
            (page.sites, page.next_page_token)
        })
        .await
    }

    /// Reads the event stream from the start until `count` events came (bounded wait).
    pub async fn events(&self, after: &str, count: usize) -> Vec<pb::Event> {
        let mut stream = self
            .client()
            .watch_events(self.svc(pb::WatchEventsRequest {
                after_cursor: after.into(),
            }))
            .await
            .expect("watch events")
            .into_inner();
        next_messages(&mut stream, count)
            .await
            .into_iter()
            .map(|item| item.event.expect("event body"))
            .collect()
    }
}

/// Access management's event for `user`'s explicit grants on a site after a change.
pub fn rights_changed(
    site_id: &str,
    user: Uuid,
    explicit: kc_proto::access::ToolAccess,
) -> kc_proto::access::Event {
    kc_proto::access::Event {
        site_id: site_id.to_owned(),
        payload: Some(kc_proto::access::event::Payload::RightsChanged(
            kc_proto::access::RightsChanged {
                user_id: user.to_string(),
                after: Some(kc_proto::access::AccessProfile {
                    site_id: site_id.to_owned(),
                    user_id: user.to_string(),
                    explicit: Some(explicit),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )),
        ..Default::default()
    }
}

/// A pool on `url` bound to `schema`.
pub async fn pool_on(url: &str, schema: &str) -> PgPool {
    let options = PgConnectOptions::from_str(url)
        .expect("test database url")
        .options([("search_path", schema)]);
    PgPoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await
        .expect("connect to the test database")
}

/// A fresh user id (users live in identity; the registry only references them).
pub fn user() -> Uuid {
    Uuid::new_v4()
}

/// An update mask of these paths.
pub fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask {
        paths: paths.iter().map(|p| (*p).to_owned()).collect(),
    })
}

/// Asserts `code` with a message citing `rule` (e.g. `C6`).
#[track_caller]
pub fn expect_rule<T: std::fmt::Debug>(
    result: Result<T, Status>,
    code: Code,
    rule: &str,
) -> Status {
    let status = expect_code(result, code);
    assert!(
        cites(status.message(), rule),
        "expected the message to cite rule {rule}: {:?}",
        status.message()
    );
    status
}

/// Whether `text` cites `rule` as `rule C6` or `C6:`.
pub fn cites(text: &str, rule: &str) -> bool {
    text.contains(&format!("rule {rule}")) || text.starts_with(&format!("{rule}:"))
}

/// The role of a contact.
pub fn role(contact: &pb::Contact) -> pb::ContactRole {
    pb::ContactRole::try_from(contact.role).expect("known role")
}
