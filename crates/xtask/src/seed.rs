//! `cargo xtask up --seed demo`: a demo customer loaded into the running suite through the
//! gateway's public API only (the typed clients of `keycontacts.gateway.v1`), as people would
//! load it: the customer's people register (`Register`), the operator signs in (`Login`),
//! creates the customer's sites (`CreateSite`) and gives the people their roles by login
//! e-mail (`AssignContact`), and a newcomer signs in and nominates itself (`SelfNominate`).
//!
//! The customer, Dupont Industries (customer number [`CUSTOMER_NUMBER`]), has an original
//! site in Paris and two additional ones, Lyon and London (PASSPORT_ADVANTAGE_EXPRESS, in
//! English); French- and English-speaking contacts hold every kind of role (primary,
//! administrative, STC, secondaries, renewal with a notification e-mail of its own (C9),
//! shipping, billing, site user); Lucas Moreau's request for access to the Paris site waits
//! for the primary's decision. Everyone signs in with one password, generated once and kept
//! in `target/kc-up/demo-password`.
//!
//! Idempotent: a person who is registered, a site that exists, a role that is held, a request
//! that was made (whatever became of it) is left as it is, so a second run changes nothing.
//! The public session RPCs are rate limited per address (20 a minute, bursts of 10, by
//! default): the seed makes about a dozen, and waits when the gateway says so.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use kc_proto::access::{
    AccessRequest, AccessRequestKind, AccessRequestState, ContactUpdatesAccess, ReportingAccess,
    SoftwareAccess, ToolAccess,
};
use kc_proto::contacts::{ContactDetails, ContactRole, Program, Site};
use kc_proto::gateway::gateway_service_client::GatewayServiceClient;
use kc_proto::gateway::{
    AssignContactRequest, ContactPerson, ContactView, CreateSiteRequest, GetMeRequest,
    ListMyRequestsRequest, ListPendingRequestsRequest, LoginRequest, RegisterRequest,
    SelfNominateRequest, ShowAllContactsRequest,
};
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::suite;

/// Which data `cargo xtask up --seed` loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Seed {
    /// A customer with three sites (one PASSPORT_ADVANTAGE_EXPRESS), French- and
    /// English-speaking contacts in every kind of role, and a pending self-nomination.
    Demo,
}

/// Who signs in: a login e-mail and its password.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// Login e-mail.
    pub email: String,
    /// Password.
    pub password: String,
}

/// The gRPC service every call goes to.
const GATEWAY_SERVICE: &str = "keycontacts.gateway.v1.GatewayService";
/// Customer number of the demo customer.
const CUSTOMER_NUMBER: &str = "7350001";
/// File in `up`'s directory that keeps the demo people's password.
const PASSWORD_FILE: &str = "demo-password";
/// Longest the seed waits in all for the session rate limit.
const RATE_LIMIT_PATIENCE: Duration = Duration::from_secs(120);
/// Wait after a rate-limited call whose answer does not say how long.
const RATE_LIMIT_DEFAULT_WAIT: Duration = Duration::from_secs(3);
/// Longest the seed waits for the services to learn what it created from each other's event
/// streams (access management learns sites and roles from the registry's).
const PROPAGATION_PATIENCE: Duration = Duration::from_secs(60);

/// One person of the demo customer.
#[derive(Debug)]
struct Person {
    email: &'static str,
    name: &'static str,
    locale: &'static str,
    job_title: &'static str,
    phone: &'static str,
    /// Where its notices go when not to its login e-mail (C9); empty otherwise.
    notification_email: &'static str,
}

impl Person {
    /// The details of each of its contacts.
    fn details(&self) -> ContactDetails {
        ContactDetails {
            phone: self.phone.to_owned(),
            job_title: self.job_title.to_owned(),
            notification_email: self.notification_email.to_owned(),
        }
    }

    /// It, named by e-mail for CreateSite.
    fn contact_person(&self) -> ContactPerson {
        ContactPerson {
            email: self.email.to_owned(),
            display_name: self.name.to_owned(),
            locale: self.locale.to_owned(),
            details: Some(self.details()),
        }
    }
}

const CAMILLE: Person = Person {
    email: "camille.martin@dupont.example",
    name: "Camille Martin",
    locale: "fr",
    job_title: "Directrice des achats",
    phone: "+33142685300",
    notification_email: "",
};
const JULIEN: Person = Person {
    email: "julien.bernard@dupont.example",
    name: "Julien Bernard",
    locale: "fr",
    job_title: "Responsable administratif",
    phone: "+33142685301",
    notification_email: "",
};
const SOPHIE: Person = Person {
    email: "sophie.leroy@dupont.example",
    name: "Sophie Leroy",
    locale: "fr",
    job_title: "Ingénieure systèmes",
    phone: "+33142685302",
    notification_email: "",
};
const THOMAS: Person = Person {
    email: "thomas.petit@dupont.example",
    name: "Thomas Petit",
    locale: "fr",
    job_title: "Chef de projet",
    phone: "+33472000010",
    notification_email: "",
};
const EMMA: Person = Person {
    email: "emma.durand@dupont.example",
    name: "Emma Durand",
    locale: "fr",
    job_title: "Comptable",
    phone: "+33472000011",
    notification_email: "",
};
const OLIVIA: Person = Person {
    email: "olivia.smith@dupont.example",
    name: "Olivia Smith",
    locale: "en",
    job_title: "Licensing manager",
    phone: "+442079460000",
    notification_email: "renewals@dupont.example",
};
const JAMES: Person = Person {
    email: "james.brown@dupont.example",
    name: "James Brown",
    locale: "en",
    job_title: "IT operations lead",
    phone: "+442079460001",
    notification_email: "",
};
/// The newcomer, who asks for access to the Paris site.
const LUCAS: Person = Person {
    email: "lucas.moreau@dupont.example",
    name: "Lucas Moreau",
    locale: "fr",
    job_title: "Développeur",
    phone: "",
    notification_email: "",
};

/// Everyone who registers, in order.
const PEOPLE: [&Person; 8] = [
    &CAMILLE, &JULIEN, &SOPHIE, &THOMAS, &EMMA, &OLIVIA, &JAMES, &LUCAS,
];

/// One site of the demo customer.
#[derive(Debug)]
struct SitePlan {
    number: &'static str,
    name: &'static str,
    country: &'static str,
    language: &'static str,
    program: Program,
    /// Last day of S&S when it is active (then `stc` is required, C5).
    support_until: Option<&'static str>,
    partner_email: &'static str,
    primary: &'static Person,
    stc: Option<&'static Person>,
    /// The roles given after creation.
    contacts: &'static [(&'static Person, ContactRole)],
}

/// The sites, in creation order: the first is the customer's original site.
const SITES: [SitePlan; 3] = [
    SitePlan {
        number: "7350101",
        name: "Dupont Industries Paris",
        country: "FR",
        language: "fr",
        program: Program::PassportAdvantage,
        support_until: Some("2026-12-31"),
        partner_email: "licences@revendeur.example",
        primary: &CAMILLE,
        stc: Some(&SOPHIE),
        contacts: &[
            (&JULIEN, ContactRole::Administrative),
            (&THOMAS, ContactRole::Secondary),
            (&EMMA, ContactRole::Secondary),
            (&OLIVIA, ContactRole::Renewal),
            (&JAMES, ContactRole::SiteUser),
        ],
    },
    SitePlan {
        number: "7350102",
        name: "Dupont Industries Lyon",
        country: "FR",
        language: "fr",
        program: Program::PassportAdvantage,
        support_until: None,
        partner_email: "",
        primary: &CAMILLE,
        stc: None,
        contacts: &[
            (&JULIEN, ContactRole::Administrative),
            (&THOMAS, ContactRole::Shipping),
            (&EMMA, ContactRole::Billing),
        ],
    },
    SitePlan {
        number: "7350103",
        name: "Dupont Industries London",
        country: "GB",
        language: "en",
        program: Program::PassportAdvantageExpress,
        support_until: Some("2027-03-31"),
        partner_email: "",
        primary: &OLIVIA,
        stc: Some(&JAMES),
        contacts: &[(&CAMILLE, ContactRole::Secondary)],
    },
];

/// The site Lucas asks for (the original site).
const REQUESTED_SITE: &SitePlan = &SITES[0];
/// Why Lucas asks.
const JUSTIFICATION: &str = "Je prépare les déploiements du site de Paris : j'ai besoin des \
     téléchargements, des rapports et de tenir l'annuaire à jour.";

/// Loads `seed` through the gateway at `addr` (`127.0.0.1:50050`), signing in as `operator`;
/// `dir` is `up`'s directory, which keeps the demo password. Returns what to print: what was
/// loaded and a grpcurl session to try it with.
pub async fn run(
    seed: Seed,
    addr: &str,
    operator: &Credentials,
    dir: &Path,
) -> anyhow::Result<String> {
    match seed {
        Seed::Demo => demo(addr, operator, dir).await,
    }
}

/// What one run did, for the summary.
#[derive(Debug, Default)]
struct Tally {
    created: Vec<String>,
    kept: Vec<String>,
}

async fn demo(addr: &str, operator: &Credentials, dir: &Path) -> anyhow::Result<String> {
    let password = demo_password(&dir.join(PASSWORD_FILE))?;
    let api = Api::connect(addr).await?;
    let mut tally = Tally::default();
    eprintln!("xtask: seeding the demo customer {CUSTOMER_NUMBER} through the gateway on {addr}");

    let op = api.login(&operator.email, &operator.password).await?;
    for person in PEOPLE {
        if api.register(person, &password).await? {
            tally.created.push(format!("user {}", person.email));
        } else {
            tally.kept.push(format!("user {}", person.email));
        }
    }

    let mut tokens: HashMap<&'static str, String> = HashMap::new();
    let mut sites: BTreeMap<&'static str, Site> = BTreeMap::new();
    for plan in &SITES {
        let site = match api.create_site(&op, plan).await? {
            Some(site) => {
                tally.created.push(format!("site {}", plan.number));
                site
            }
            None => {
                tally.kept.push(format!("site {}", plan.number));
                find_site(&api, &password, &mut tokens, plan).await?
            }
        };
        sites.insert(plan.number, site);
    }

    for plan in &SITES {
        let site_id = &sites[plan.number].site_id;
        let held: BTreeSet<(String, i32)> = api
            .show_all_contacts(&op, site_id)
            .await?
            .iter()
            .flat_map(|person| {
                person
                    .roles
                    .iter()
                    .map(|role| (person.email.to_lowercase(), *role))
            })
            .collect();
        for (person, role) in plan.contacts {
            let what = format!(
                "{} {} of site {}",
                person.email,
                role_name(*role),
                plan.number
            );
            if held.contains(&(person.email.to_owned(), *role as i32)) {
                tally.kept.push(what);
                continue;
            }
            match api.assign_contact(&op, site_id, person, *role).await? {
                None => tally.created.push(what),
                Some(refusal) => tally.kept.push(format!("{what} (not given: {refusal})")),
            }
        }
    }

    let requested = &sites[REQUESTED_SITE.number];
    let lucas = token(&api, &password, &mut tokens, &LUCAS).await?;
    let request = match api.request_on(&lucas, &requested.site_id).await? {
        Some(existing) => {
            tally.kept.push(format!(
                "the request of {} ({})",
                LUCAS.email,
                state_name(existing.state)
            ));
            existing
        }
        None => {
            let request = api.self_nominate(&lucas).await?;
            tally
                .created
                .push(format!("the request of {}", LUCAS.email));
            request
        }
    };

    // What the printed session does works: the primary sees her sites, the contacts of those
    // she is the primary of (once access management learned her role from the registry's
    // stream: a secondary contact implies no rights, T3), and the request.
    let camille = token(&api, &password, &mut tokens, &CAMILLE).await?;
    let mine = api.get_me(&camille).await?;
    let mut views = BTreeMap::new();
    for plan in &SITES {
        let site_id = &sites[plan.number].site_id;
        if !mine.iter().any(|site| &site.site_id == site_id) {
            bail!(
                "{} holds no role on site {} any more: start over with `cargo xtask up --fresh \
                 --seed demo`",
                CAMILLE.email,
                plan.number
            );
        }
        if plan.primary.email == CAMILLE.email {
            api.visible_contacts(&camille, site_id).await?;
        }
        views.insert(plan.number, api.show_all_contacts(&op, site_id).await?);
    }
    if request.state == AccessRequestState::Pending as i32 {
        api.wait_until_listed(&camille, &requested.site_id, &request.request_id)
            .await?;
    }

    Ok(summary(
        addr, operator, &password, dir, &sites, &views, &request, &tally,
    ))
}

/// The demo people's password from `path`, generated (and kept there) on first use.
fn demo_password(path: &Path) -> anyhow::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(password) => Ok(password.trim_end().to_owned()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let password = suite::random_password()?;
            suite::write_private(path, &password)?;
            Ok(password)
        }
        Err(err) => Err(err).with_context(|| format!("could not read {}", path.display())),
    }
}

/// An access token of `person`, signing it in on first need.
async fn token(
    api: &Api,
    password: &str,
    tokens: &mut HashMap<&'static str, String>,
    person: &'static Person,
) -> anyhow::Result<String> {
    if let Some(token) = tokens.get(person.email) {
        return Ok(token.clone());
    }
    let token = api.login(person.email, password).await?;
    tokens.insert(person.email, token.clone());
    Ok(token)
}

/// A site of the plan that exists already: found among the sites of the people who hold a
/// role there in the plan (Camille holds one on every site, then the site's primary).
async fn find_site(
    api: &Api,
    password: &str,
    tokens: &mut HashMap<&'static str, String>,
    plan: &SitePlan,
) -> anyhow::Result<Site> {
    let mut seen = BTreeSet::new();
    for person in [&CAMILLE, plan.primary] {
        if !seen.insert(person.email) {
            continue;
        }
        let token = token(api, password, tokens, person).await?;
        if let Some(site) = api
            .get_me(&token)
            .await?
            .into_iter()
            .find(|site| site.site_number == plan.number)
        {
            return Ok(site);
        }
    }
    bail!(
        "site {} exists, but none of the demo people holds a role there: it was not made by \
         this seed, or was changed since; start over with `cargo xtask up --fresh --seed demo`",
        plan.number
    )
}

/// The gateway, through its typed client.
struct Api {
    client: GatewayServiceClient<Channel>,
}

impl Api {
    async fn connect(addr: &str) -> anyhow::Result<Api> {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .connect()
            .await
            .with_context(|| format!("could not connect to the gateway on {addr}"))?;
        Ok(Api {
            client: GatewayServiceClient::new(channel),
        })
    }

    /// A public session call, made again when the gateway's rate limit refuses it, after the
    /// wait the refusal names, for at most [`RATE_LIMIT_PATIENCE`] in all.
    async fn session<T, F, Fut>(&self, mut call: F) -> Result<T, Status>
    where
        F: FnMut(GatewayServiceClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let started = Instant::now();
        loop {
            match call(self.client.clone()).await {
                Err(status) if started.elapsed() < RATE_LIMIT_PATIENCE => {
                    let Some(wait) = rate_limited(&status) else {
                        return Err(status);
                    };
                    eprintln!(
                        "xtask: the gateway limits session calls per address: waiting {} s",
                        wait.as_secs_f64()
                    );
                    tokio::time::sleep(wait).await;
                }
                result => return result.map(tonic::Response::into_inner),
            }
        }
    }

    /// Signs in: the access token.
    async fn login(&self, email: &str, password: &str) -> anyhow::Result<String> {
        let request = LoginRequest {
            email: email.to_owned(),
            password: password.to_owned(),
        };
        match self
            .session(|mut client| {
                let request = request.clone();
                async move { client.login(request).await }
            })
            .await
        {
            Ok(response) => Ok(response.access_token),
            Err(status) if status.code() == Code::Unauthenticated => bail!(
                "{email} cannot sign in with its password ({}): its account was made with \
                 another one; start over with `cargo xtask up --fresh --seed demo`",
                status.message()
            ),
            Err(status) => Err(failed(&format!("Login of {email}"), &status)),
        }
    }

    /// Registers `person` with `password`: whether it was new.
    async fn register(&self, person: &Person, password: &str) -> anyhow::Result<bool> {
        let request = RegisterRequest {
            email: person.email.to_owned(),
            display_name: person.name.to_owned(),
            password: password.to_owned(),
            locale: person.locale.to_owned(),
        };
        match self
            .session(|mut client| {
                let request = request.clone();
                async move { client.register(request).await }
            })
            .await
        {
            Ok(_) => Ok(true),
            Err(status) if status.code() == Code::AlreadyExists => Ok(false),
            Err(status) => Err(failed(&format!("Register of {}", person.email), &status)),
        }
    }

    /// Creates the site of `plan` as the operator: `None` when its number is taken.
    async fn create_site(&self, op: &str, plan: &SitePlan) -> anyhow::Result<Option<Site>> {
        let request = CreateSiteRequest {
            site_number: plan.number.to_owned(),
            customer_number: CUSTOMER_NUMBER.to_owned(),
            name: plan.name.to_owned(),
            country_code: plan.country.to_owned(),
            language: plan.language.to_owned(),
            program: plan.program.into(),
            support_active: plan.support_until.is_some(),
            support_end_date: plan.support_until.unwrap_or_default().to_owned(),
            business_partner_email: plan.partner_email.to_owned(),
            primary_contact: Some(plan.primary.contact_person()),
            site_technical_contact: plan.stc.map(Person::contact_person),
        };
        match self.client.clone().create_site(bearer(request, op)?).await {
            Ok(response) => Ok(Some(response.into_inner().site.ok_or_else(|| {
                anyhow!("CreateSite of site {} returned no site", plan.number)
            })?)),
            Err(status) if status.code() == Code::AlreadyExists => Ok(None),
            Err(status) => Err(failed(
                &format!("CreateSite of site {}", plan.number),
                &status,
            )),
        }
    }

    /// Gives `person` `role` on the site as the operator: `None` when done, the refusal when
    /// a rule keeps it from being given (the role is held by someone else since).
    async fn assign_contact(
        &self,
        op: &str,
        site_id: &str,
        person: &Person,
        role: ContactRole,
    ) -> anyhow::Result<Option<String>> {
        let request = AssignContactRequest {
            site_id: site_id.to_owned(),
            email: person.email.to_owned(),
            display_name: None,
            role: role.into(),
            details: Some(person.details()),
            locale: person.locale.to_owned(),
        };
        match self
            .client
            .clone()
            .assign_contact(bearer(request, op)?)
            .await
        {
            Ok(_) => Ok(None),
            Err(status)
                if matches!(
                    status.code(),
                    Code::AlreadyExists | Code::FailedPrecondition
                ) =>
            {
                Ok(Some(status.message().to_owned()))
            }
            Err(status) => Err(failed(
                &format!("AssignContact of {} as {}", person.email, role_name(role)),
                &status,
            )),
        }
    }

    /// Every contact of a site, as `token`'s holder.
    async fn show_all_contacts(
        &self,
        token: &str,
        site_id: &str,
    ) -> Result<Vec<ContactView>, anyhow::Error> {
        self.show(token, site_id)
            .await
            .map_err(|status| failed(&format!("ShowAllContacts of site {site_id}"), &status))
    }

    async fn show(&self, token: &str, site_id: &str) -> Result<Vec<ContactView>, Status> {
        let request = ShowAllContactsRequest {
            site_id: site_id.to_owned(),
            roles: Vec::new(),
            page_size: 1000,
            page_token: String::new(),
        };
        let request = bearer(request, token).map_err(|err| Status::internal(err.to_string()))?;
        Ok(self
            .client
            .clone()
            .show_all_contacts(request)
            .await?
            .into_inner()
            .contacts)
    }

    /// Every contact of a site as a customer sees it: once access management learned the
    /// caller's role there from the registry's stream (PERMISSION_DENIED until then).
    async fn visible_contacts(
        &self,
        token: &str,
        site_id: &str,
    ) -> anyhow::Result<Vec<ContactView>> {
        eventually(&format!("ShowAllContacts of site {site_id}"), || {
            self.show(token, site_id)
        })
        .await
    }

    /// The sites of `token`'s holder (GetMe).
    async fn get_me(&self, token: &str) -> anyhow::Result<Vec<Site>> {
        let me = self
            .client
            .clone()
            .get_me(bearer(GetMeRequest {}, token)?)
            .await
            .map_err(|status| failed("GetMe", &status))?
            .into_inner();
        Ok(me.sites.into_iter().filter_map(|mine| mine.site).collect())
    }

    /// The newest request of `token`'s holder on `site_id`, if it made one.
    async fn request_on(
        &self,
        token: &str,
        site_id: &str,
    ) -> anyhow::Result<Option<AccessRequest>> {
        let request = ListMyRequestsRequest {
            page_size: 1000,
            page_token: String::new(),
        };
        let mine = self
            .client
            .clone()
            .list_my_requests(bearer(request, token)?)
            .await
            .map_err(|status| failed("ListMyRequests", &status))?
            .into_inner();
        Ok(mine
            .requests
            .into_iter()
            .find(|request| request.site_id == site_id))
    }

    /// Lucas asks for site access to [`REQUESTED_SITE`], once access management learned the
    /// site from the registry's stream (NOT_FOUND until then).
    async fn self_nominate(&self, token: &str) -> anyhow::Result<AccessRequest> {
        let nominate = || async {
            let request = SelfNominateRequest {
                site_number: REQUESTED_SITE.number.to_owned(),
                customer_number: CUSTOMER_NUMBER.to_owned(),
                kind: AccessRequestKind::SiteAccess.into(),
                requested_tools: Some(ToolAccess {
                    software: SoftwareAccess::Full.into(),
                    reporting: ReportingAccess::View.into(),
                    contact_updates: ContactUpdatesAccess::Update.into(),
                    ..ToolAccess::default()
                }),
                requested_support_level: 0,
                justification: JUSTIFICATION.to_owned(),
            };
            let request =
                bearer(request, token).map_err(|err| Status::internal(err.to_string()))?;
            self.client
                .clone()
                .self_nominate(request)
                .await
                .map(tonic::Response::into_inner)
        };
        let response = eventually("SelfNominate", nominate).await?;
        response
            .request
            .ok_or_else(|| anyhow!("SelfNominate returned no request"))
    }

    /// Waits until the primary's queue of `site_id` shows `request_id`.
    async fn wait_until_listed(
        &self,
        token: &str,
        site_id: &str,
        request_id: &str,
    ) -> anyhow::Result<()> {
        let listed = || async {
            let request = ListPendingRequestsRequest {
                site_id: site_id.to_owned(),
                page_size: 1000,
                page_token: String::new(),
            };
            let request =
                bearer(request, token).map_err(|err| Status::internal(err.to_string()))?;
            let pending = self
                .client
                .clone()
                .list_pending_requests(request)
                .await?
                .into_inner();
            let found = pending.requests.iter().any(|view| {
                view.request
                    .as_ref()
                    .is_some_and(|request| request.request_id == request_id)
            });
            if found {
                Ok(())
            } else {
                Err(Status::not_found("the request is not listed yet"))
            }
        };
        eventually("ListPendingRequests", listed).await
    }
}

/// Calls `call` until it succeeds, while it fails as a call does before the services learned
/// of a change from each other's streams (NOT_FOUND, PERMISSION_DENIED, UNAVAILABLE), for at
/// most [`PROPAGATION_PATIENCE`].
async fn eventually<T, F, Fut>(what: &str, mut call: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Status>>,
{
    let started = Instant::now();
    loop {
        match call().await {
            Ok(value) => return Ok(value),
            Err(status)
                if matches!(
                    status.code(),
                    Code::NotFound | Code::PermissionDenied | Code::Unavailable
                ) && started.elapsed() < PROPAGATION_PATIENCE =>
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(status) => {
                return Err(failed(what, &status)).with_context(|| {
                    format!("gave up after {:.1} s", started.elapsed().as_secs_f64())
                });
            }
        }
    }
}

/// How long to wait when `status` is the gateway's session rate limit.
fn rate_limited(status: &Status) -> Option<Duration> {
    if status.code() != Code::ResourceExhausted
        || !status.message().starts_with("too many session requests")
    {
        return None;
    }
    // "too many session requests from this address; retry in 3 s"
    let wait = status
        .message()
        .rsplit_once("retry in ")
        .and_then(|(_, rest)| rest.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(RATE_LIMIT_DEFAULT_WAIT, Duration::from_secs);
    Some(wait.clamp(Duration::from_secs(1), Duration::from_secs(60)))
}

/// `message` as a request of `token`'s holder.
fn bearer<T>(message: T, token: &str) -> anyhow::Result<tonic::Request<T>> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}")
            .parse()
            .context("the access token is not a valid header value")?,
    );
    Ok(request)
}

/// An error naming the call and the status it got.
fn failed(what: &str, status: &Status) -> anyhow::Error {
    anyhow!("{what} failed: {:?}: {}", status.code(), status.message())
}

/// `SECONDARY`.
fn role_name(role: ContactRole) -> &'static str {
    role.as_str_name()
        .strip_prefix("CONTACT_ROLE_")
        .unwrap_or(role.as_str_name())
}

/// `PENDING`.
fn state_name(state: i32) -> &'static str {
    let name = AccessRequestState::try_from(state)
        .unwrap_or(AccessRequestState::Unspecified)
        .as_str_name();
    name.strip_prefix("ACCESS_REQUEST_STATE_").unwrap_or(name)
}

/// What was loaded, the people's logins and a grpcurl session with the real ids.
#[allow(clippy::too_many_arguments)]
fn summary(
    addr: &str,
    operator: &Credentials,
    password: &str,
    dir: &Path,
    sites: &BTreeMap<&'static str, Site>,
    views: &BTreeMap<&'static str, Vec<ContactView>>,
    request: &AccessRequest,
    tally: &Tally,
) -> String {
    let mut text = format!(
        "demo customer {CUSTOMER_NUMBER} (Dupont Industries), through the gateway on {addr}: \
         {} created, {} already there\n",
        tally.created.len(),
        tally.kept.len()
    );
    for note in tally.kept.iter().filter(|note| note.contains("not given")) {
        let _ = writeln!(text, "  note: {note}");
    }
    for plan in &SITES {
        let site = &sites[plan.number];
        let program = Program::try_from(site.program).map_or("?", |program| {
            program.as_str_name().trim_start_matches("PROGRAM_")
        });
        let support = if site.support_active {
            format!(", S&S until {}", site.support_end_date)
        } else {
            String::new()
        };
        let _ = writeln!(
            text,
            "  site {} {} ({}, {program}, {}{support}): site_id {}",
            site.site_number,
            site.name,
            if site.is_original_site {
                "original"
            } else {
                "additional"
            },
            site.language,
            site.site_id
        );
        for person in views.get(plan.number).into_iter().flatten() {
            let roles: Vec<&str> = person
                .roles
                .iter()
                .map(|role| ContactRole::try_from(*role).map_or("?", role_name))
                .collect();
            let _ = writeln!(
                text,
                "    {:<32} {:<16} {}",
                person.email,
                person.display_name,
                roles.join(", ")
            );
        }
    }
    let _ = writeln!(
        text,
        "  {} ({}) asked for access to site {}: request {} is {}",
        LUCAS.name,
        LUCAS.email,
        REQUESTED_SITE.number,
        request.request_id,
        state_name(request.state)
    );
    let _ = writeln!(
        text,
        "every demo person signs in with the password {password} (kept in {})",
        dir.join(PASSWORD_FILE).display()
    );

    let paris = &sites[SITES[0].number].site_id;
    let london = &sites[SITES[2].number].site_id;
    let login = |var: &str, email: &str, secret: &str| {
        format!(
            "{var}=$(grpcurl -plaintext -d '{{\"email\":\"{email}\",\"password\":\"{secret}\"}}' \
             {addr} {GATEWAY_SERVICE}/Login | python3 -c 'import json,sys; \
             print(json.load(sys.stdin)[\"accessToken\"])')"
        )
    };
    let call = |var: &str, body: &str, rpc: &str| {
        format!(
            "grpcurl -plaintext -H \"authorization: Bearer ${var}\" -d '{body}' {addr} \
             {GATEWAY_SERVICE}/{rpc}"
        )
    };
    let _ = writeln!(
        text,
        "try it (the session RPCs allow 10 calls at once, then 20 a minute per address: on \
         RESOURCE_EXHAUSTED wait the seconds it names):"
    );
    let lines = [
        format!("# {}, primary contact of Paris and Lyon:", CAMILLE.name),
        login("TOKEN", CAMILLE.email, password),
        call("TOKEN", "{}", "GetMe"),
        call(
            "TOKEN",
            &format!("{{\"site_id\":\"{paris}\"}}"),
            "ShowAllContacts",
        ),
        call(
            "TOKEN",
            &format!("{{\"site_id\":\"{paris}\"}}"),
            "GetSiteCompliance",
        ),
        call(
            "TOKEN",
            &format!("{{\"site_id\":\"{paris}\"}}"),
            "ListPendingRequests",
        ),
    ];
    let decision = if request.state == AccessRequestState::Pending as i32 {
        vec![
            format!(
                "# she approves {}'s request with less than was asked (A4):",
                LUCAS.name
            ),
            call(
                "TOKEN",
                &format!(
                    "{{\"request_id\":\"{}\",\"decision\":\"ACCESS_DECISION_APPROVE\",\
                     \"granted_tools\":{{\"software\":\"SOFTWARE_ACCESS_DOWNLOADS_ONLY\",\
                     \"reporting\":\"REPORTING_ACCESS_NONE\",\
                     \"contact_updates\":\"CONTACT_UPDATES_ACCESS_VIEW\"}},\
                     \"reason\":\"Téléchargements et annuaire en lecture seule\"}}",
                    request.request_id
                ),
                "DecideAccessRequest",
            ),
        ]
    } else {
        vec![format!(
            "# {}'s request is {} already (`cargo xtask up --fresh --seed demo` starts over)",
            LUCAS.name,
            state_name(request.state)
        )]
    };
    let rest = [
        call(
            "TOKEN",
            &format!("{{\"site_id\":\"{paris}\",\"page_size\":20}}"),
            "ListSiteAudit",
        ),
        format!("# the operator, {}:", operator.email),
        login("OPS", &operator.email, &operator.password),
        call(
            "OPS",
            &format!("{{\"site_id\":\"{london}\"}}"),
            "ShowAllContacts",
        ),
    ];
    for line in lines.into_iter().chain(decision).chain(rest) {
        let _ = writeln!(text, "  {line}");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_obeys_the_rules_it_is_loaded_under() {
        let numbers: BTreeSet<&str> = SITES.iter().map(|plan| plan.number).collect();
        assert_eq!(numbers.len(), SITES.len(), "site numbers are unique (S2)");
        for plan in &SITES {
            // C5: a site with active S&S is created with its STC.
            assert_eq!(
                plan.support_until.is_some(),
                plan.stc.is_some(),
                "{}",
                plan.number
            );
            // C8: the primary changes only by transfer, never by AssignContact.
            assert!(
                plan.contacts
                    .iter()
                    .all(|(_, role)| *role != ContactRole::Primary),
                "{}",
                plan.number
            );
            // C6: at most four secondaries, one holder of each single-holder role.
            let mut single = BTreeSet::new();
            let mut secondaries = 0;
            for (person, role) in plan.contacts {
                assert!(PEOPLE.iter().any(|known| known.email == person.email));
                match role {
                    ContactRole::Secondary => secondaries += 1,
                    ContactRole::SiteUser => {}
                    other => assert!(single.insert(*other), "{} twice", role_name(*other)),
                }
            }
            assert!(secondaries <= 4);
        }
        assert!(
            SITES
                .iter()
                .any(|plan| plan.program == Program::PassportAdvantageExpress),
            "one site is PASSPORT_ADVANTAGE_EXPRESS"
        );
        let locales: BTreeSet<&str> = PEOPLE.iter().map(|person| person.locale).collect();
        assert_eq!(locales, BTreeSet::from(["en", "fr"]));
        // Camille holds a role on every site, so that her GetMe finds them all again.
        for plan in &SITES {
            assert!(
                plan.primary.email == CAMILLE.email
                    || plan
                        .contacts
                        .iter()
                        .any(|(person, _)| person.email == CAMILLE.email)
            );
        }
        // The newcomer holds nothing yet.
        for plan in &SITES {
            assert!(plan.primary.email != LUCAS.email);
            assert!(
                plan.contacts
                    .iter()
                    .all(|(person, _)| person.email != LUCAS.email)
            );
        }
    }

    #[test]
    fn the_rate_limit_says_how_long_to_wait() {
        let limited =
            Status::resource_exhausted("too many session requests from this address; retry in 4 s");
        assert_eq!(rate_limited(&limited), Some(Duration::from_secs(4)));
        let unnamed = Status::resource_exhausted("too many session requests from this address");
        assert_eq!(rate_limited(&unnamed), Some(RATE_LIMIT_DEFAULT_WAIT));
        // Identity's lockout is not a reason to wait and try again.
        let locked = Status::resource_exhausted("too many failed sign-ins, try again later");
        assert_eq!(rate_limited(&locked), None);
        assert_eq!(rate_limited(&Status::unavailable("down")), None);
    }

    #[test]
    fn names_drop_their_enum_prefix() {
        assert_eq!(role_name(ContactRole::SiteTechnical), "SITE_TECHNICAL");
        assert_eq!(state_name(AccessRequestState::Pending as i32), "PENDING");
        assert_eq!(state_name(99), "UNSPECIFIED");
    }
}
