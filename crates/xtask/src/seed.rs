//! `cargo xtask up --seed demo`: a demo customer loaded into the running suite through the
//! gateway's public API only (the typed clients of `keycontacts.gateway.v1`), as people would
//! load it: the customer's people register (`Register`) and prove their addresses with the
//! code mailed to them (`VerifyEmail`, rule I1), the operator signs in (`Login`), creates the
//! customer's sites (`CreateSite`) and gives the people their roles by login e-mail
//! (`AssignContact`), and a newcomer signs in and nominates itself (`SelfNominate`).
//!
//! The codes are read where a person would read them: in the mail notification wrote, one
//! RFC 5322 file per e-mail in `target/kc-up/mail/` (or `KC_MAIL_DIR`); the seed needs that
//! directory, not an SMTP server.
//!
//! The customer, Dupont Industries (customer number 7350001, in `seed/demo.json`), has an original
//! site in Paris and two additional ones, Lyon and London (PASSPORT_ADVANTAGE_EXPRESS, in
//! English); French- and English-speaking contacts hold every kind of role (primary,
//! administrative, STC, secondaries, renewal with a notification e-mail of its own (C9),
//! shipping, billing, site user); Lucas Moreau's request for access to the Paris site waits
//! for the primary's decision. Everyone signs in with one password, generated once and kept
//! in `target/kc-up/demo-password`.
//!
//! Idempotent: a person who signs in with that password, a site that exists, a role that is
//! held, a request that was made (whatever became of it) is left as it is, so a second run
//! changes nothing (`Register` answers alike whatever the address, rule I2, so whether a
//! person exists is told by signing it in; a first run, which made the password, skips that).
//! The public session RPCs are rate limited per address (20 a minute, bursts of 10, by
//! default): a first run makes about twenty, a later one about ten, and the seed waits when
//! the gateway says so.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsString;
use std::fmt::Write as _;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

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
    SelfNominateRequest, ShowAllContactsRequest, VerifyEmailRequest,
};
use tonic::transport::Channel;
use tonic::{Code, Status};

use kc_bench::suite::{self, Mail};

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
/// File in `up`'s directory that keeps the demo people's password.
const PASSWORD_FILE: &str = "demo-password";
/// Longest the seed waits in all for the session rate limit.
const RATE_LIMIT_PATIENCE: Duration = Duration::from_secs(120);
/// Wait after a rate-limited call whose answer does not say how long.
const RATE_LIMIT_DEFAULT_WAIT: Duration = Duration::from_secs(3);
/// Longest the seed waits for the services to learn what it created from each other's event
/// streams (access management learns sites and roles from the registry's).
const PROPAGATION_PATIENCE: Duration = Duration::from_secs(60);
/// Longest the seed waits for the mail that answers a registration (identity's event, then
/// notification writing the e-mail).
const MAIL_PATIENCE: Duration = Duration::from_secs(60);
/// The `X-Keycontacts-Kind` of the e-mails that carry a code for VerifyEmail.
const CODE_KINDS: [&str; 3] = [
    "NOTICE_KIND_EMAIL_VERIFICATION",
    "NOTICE_KIND_INVITATION",
    "NOTICE_KIND_PASSWORD_RESET",
];
/// The `X-Keycontacts-Kind` of the e-mail that tells a proven account someone tried to
/// register its address (I2).
const TAKEN_KIND: &str = "NOTICE_KIND_REGISTRATION_ADDRESS_TAKEN";

/// The demo customer's data: its people, sites and roles, and the request its newcomer makes
/// (`seed/demo.json`, read by [`Plan::demo`]).
const DEMO: &str = include_str!("../seed/demo.json");

/// What a seed loads: a customer, its people, the sites the operator creates with the roles
/// given on them, and one request for access.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Plan {
    customer: Customer,
    /// Everyone who registers, in order.
    people: Vec<Person>,
    /// The sites, in creation order: the first is the customer's original site.
    sites: Vec<SitePlan>,
    /// Who signs in to see that it worked, and whose session the summary prints: holds a role
    /// on every site, so that its GetMe finds them all again.
    viewer: Viewer,
    /// The request for access the newcomer makes.
    request: RequestPlan,
    /// Number of the site whose contacts the printed session shows as the operator.
    operator_site: String,
}

/// The customer the sites belong to.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Customer {
    number: String,
    name: String,
}

/// One person of the customer.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Person {
    email: String,
    name: String,
    locale: String,
    job_title: String,
    #[serde(default)]
    phone: String,
    /// Where its notices go when not to its login e-mail (C9); empty otherwise.
    #[serde(default)]
    notification_email: String,
}

impl Person {
    /// The details of each of its contacts.
    fn details(&self) -> ContactDetails {
        ContactDetails {
            phone: self.phone.clone(),
            job_title: self.job_title.clone(),
            notification_email: self.notification_email.clone(),
        }
    }

    /// It, named by e-mail for CreateSite.
    fn contact_person(&self) -> ContactPerson {
        ContactPerson {
            email: self.email.clone(),
            display_name: self.name.clone(),
            locale: self.locale.clone(),
            details: Some(self.details()),
        }
    }
}

/// One site of the customer; people are named by login e-mail.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SitePlan {
    number: String,
    name: String,
    country: String,
    language: String,
    /// `PASSPORT_ADVANTAGE` or `PASSPORT_ADVANTAGE_EXPRESS`.
    #[serde(deserialize_with = "program")]
    program: Program,
    /// Last day of S&S when it is active (then `stc` is required, C5).
    support_until: Option<String>,
    #[serde(default)]
    partner_email: String,
    primary: String,
    stc: Option<String>,
    /// The roles given after creation.
    #[serde(default)]
    contacts: Vec<ContactPlan>,
}

/// A role given on a site after its creation.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ContactPlan {
    /// Login e-mail of the person given the role.
    person: String,
    /// `SECONDARY`, `RENEWAL`, ...
    #[serde(deserialize_with = "role")]
    role: ContactRole,
}

/// The person who checks the result.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Viewer {
    /// Its login e-mail.
    person: String,
    /// What it is, for the printed session: `primary contact of Paris and Lyon`.
    about: String,
}

/// A newcomer's request for access to a site (a self-nomination).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestPlan {
    /// The newcomer's login e-mail: it holds no role yet.
    person: String,
    /// Number of the site it asks for.
    site: String,
    /// Why it asks.
    justification: String,
}

/// A [`Program`] named without its prefix: `PASSPORT_ADVANTAGE`.
fn program<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Program, D::Error> {
    let name = <String as serde::Deserialize>::deserialize(deserializer)?;
    Program::from_str_name(&format!("PROGRAM_{name}"))
        .ok_or_else(|| serde::de::Error::custom(format!("unknown program {name:?}")))
}

/// A [`ContactRole`] named without its prefix: `SECONDARY`.
fn role<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<ContactRole, D::Error> {
    let name = <String as serde::Deserialize>::deserialize(deserializer)?;
    ContactRole::from_str_name(&format!("CONTACT_ROLE_{name}"))
        .ok_or_else(|| serde::de::Error::custom(format!("unknown contact role {name:?}")))
}

impl Plan {
    /// The demo customer of `seed/demo.json`.
    fn demo() -> anyhow::Result<Plan> {
        Plan::parse(DEMO).context("seed/demo.json is not a valid seed plan")
    }

    /// A plan from its JSON; fails when it names a person or a site it does not define.
    fn parse(json: &str) -> anyhow::Result<Plan> {
        let plan: Plan = serde_json::from_str(json)?;
        let mut named = vec![&plan.viewer.person, &plan.request.person];
        for site in &plan.sites {
            named.push(&site.primary);
            named.extend(&site.stc);
            named.extend(site.contacts.iter().map(|contact| &contact.person));
        }
        for email in named {
            if !plan.people.iter().any(|person| &person.email == email) {
                bail!("{email} is named but not among the people");
            }
        }
        for number in [&plan.request.site, &plan.operator_site] {
            if !plan.sites.iter().any(|site| &site.number == number) {
                bail!("site {number} is named but not among the sites");
            }
        }
        Ok(plan)
    }

    /// The person whose login e-mail is `email` ([`Plan::parse`] checked that every e-mail
    /// the plan names is one of its people's).
    fn person(&self, email: &str) -> &Person {
        self.people
            .iter()
            .find(|person| person.email == email)
            .expect("Plan::parse checks the people named")
    }

    /// The person who checks the result ([`Plan::viewer`]).
    fn viewer(&self) -> &Person {
        self.person(&self.viewer.person)
    }

    /// The newcomer who asks for access.
    fn requester(&self) -> &Person {
        self.person(&self.request.person)
    }
}

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
    let plan = Plan::demo()?;
    let (password, first_run) = demo_password(&dir.join(PASSWORD_FILE))?;
    let mailbox = Mailbox::of(Mail::from_env_or(dir.join("mail")))?;
    let api = Api::connect(addr).await?;
    let mut tally = Tally::default();
    eprintln!(
        "xtask: seeding the demo customer {} through the gateway on {addr}",
        plan.customer.number
    );

    let op = api.login(&operator.email, &operator.password).await?;
    let mut tokens: HashMap<String, String> = HashMap::new();
    for person in &plan.people {
        // A first run made the password: nobody signs in with it yet.
        let signed_in = if first_run {
            None
        } else {
            api.try_login(&person.email, &password).await?
        };
        if let Some(token) = signed_in {
            tokens.insert(person.email.clone(), token);
            tally.kept.push(format!("user {}", person.email));
            continue;
        }
        let before = mailbox.files()?;
        api.register(person, &password).await?;
        let code = mailbox.code_for(&person.email, &before).await?;
        api.verify_email(&person.email, &code, &password).await?;
        tally.created.push(format!("user {}", person.email));
    }

    let mut sites: BTreeMap<&str, Site> = BTreeMap::new();
    for site_plan in &plan.sites {
        let site = match api.create_site(&op, &plan, site_plan).await? {
            Some(site) => {
                tally.created.push(format!("site {}", site_plan.number));
                site
            }
            None => {
                tally.kept.push(format!("site {}", site_plan.number));
                find_site(&api, &password, &mut tokens, &plan, site_plan).await?
            }
        };
        sites.insert(&site_plan.number, site);
    }

    for site_plan in &plan.sites {
        let site_id = &sites[site_plan.number.as_str()].site_id;
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
        for contact in &site_plan.contacts {
            let (person, role) = (plan.person(&contact.person), contact.role);
            let what = format!(
                "{} {} of site {}",
                person.email,
                role_name(role),
                site_plan.number
            );
            if held.contains(&(person.email.clone(), role as i32)) {
                tally.kept.push(what);
                continue;
            }
            match api.assign_contact(&op, site_id, person, role).await? {
                None => tally.created.push(what),
                Some(refusal) => tally.kept.push(format!("{what} (not given: {refusal})")),
            }
        }
    }

    let requested = &sites[plan.request.site.as_str()];
    let requester = plan.requester();
    let lucas = token(&api, &password, &mut tokens, requester).await?;
    let request = match api.request_on(&lucas, &requested.site_id).await? {
        Some(existing) => {
            tally.kept.push(format!(
                "the request of {} ({})",
                requester.email,
                state_name(existing.state)
            ));
            existing
        }
        None => {
            let request = api.self_nominate(&lucas, &plan).await?;
            tally
                .created
                .push(format!("the request of {}", requester.email));
            request
        }
    };

    // What the printed session does works: the primary sees her sites, the contacts of those
    // she is the primary of (once access management learned her role from the registry's
    // stream: a secondary contact implies no rights, T3), and the request.
    let viewer = plan.viewer();
    let camille = token(&api, &password, &mut tokens, viewer).await?;
    let mine = api.get_me(&camille).await?;
    let mut views = BTreeMap::new();
    for site_plan in &plan.sites {
        let site_id = &sites[site_plan.number.as_str()].site_id;
        if !mine.iter().any(|site| &site.site_id == site_id) {
            bail!(
                "{} holds no role on site {} any more: start over with `cargo xtask up --fresh \
                 --seed demo`",
                viewer.email,
                site_plan.number
            );
        }
        if site_plan.primary == viewer.email {
            api.visible_contacts(&camille, site_id).await?;
        }
        views.insert(
            site_plan.number.as_str(),
            api.show_all_contacts(&op, site_id).await?,
        );
    }
    if request.state == AccessRequestState::Pending as i32 {
        api.wait_until_listed(&camille, &requested.site_id, &request.request_id)
            .await?;
    }

    Ok(summary(
        &plan, addr, operator, &password, dir, &sites, &views, &request, &tally,
    ))
}

/// The demo people's password from `path`, generated (and kept there) on first use; whether
/// it was generated now.
fn demo_password(path: &Path) -> anyhow::Result<(String, bool)> {
    match std::fs::read_to_string(path) {
        Ok(password) => Ok((password.trim_end().to_owned(), false)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let password = suite::random_password()?;
            suite::write_private(path, &password)?;
            Ok((password, true))
        }
        Err(err) => Err(err).with_context(|| format!("could not read {}", path.display())),
    }
}

/// An access token of `person`, signing it in on first need.
async fn token(
    api: &Api,
    password: &str,
    tokens: &mut HashMap<String, String>,
    person: &Person,
) -> anyhow::Result<String> {
    if let Some(token) = tokens.get(&person.email) {
        return Ok(token.clone());
    }
    let token = api.login(&person.email, password).await?;
    tokens.insert(person.email.clone(), token.clone());
    Ok(token)
}

/// A site of the plan that exists already: found among the sites of the people who hold a
/// role there in the plan (the viewer holds one on every site, then the site's primary).
async fn find_site(
    api: &Api,
    password: &str,
    tokens: &mut HashMap<String, String>,
    plan: &Plan,
    site_plan: &SitePlan,
) -> anyhow::Result<Site> {
    let mut seen = BTreeSet::new();
    for person in [plan.viewer(), plan.person(&site_plan.primary)] {
        if !seen.insert(&person.email) {
            continue;
        }
        let token = token(api, password, tokens, person).await?;
        if let Some(site) = api
            .get_me(&token)
            .await?
            .into_iter()
            .find(|site| site.site_number == site_plan.number)
        {
            return Ok(site);
        }
    }
    bail!(
        "site {} exists, but none of the demo people holds a role there: it was not made by \
         this seed, or was changed since; start over with `cargo xtask up --fresh --seed demo`",
        site_plan.number
    )
}

/// The mail directory notification writes to, where the seed reads the codes people are
/// mailed, as they would.
#[derive(Debug)]
struct Mailbox {
    dir: PathBuf,
}

/// What one e-mail of the mail directory says to the seed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MailRead {
    /// The addresses of its `To` header, lower case.
    to: Vec<String>,
    /// Its `X-Keycontacts-Kind` header, e.g. `NOTICE_KIND_EMAIL_VERIFICATION`.
    kind: String,
    /// The code its text part carries, if it is a mail that carries one.
    code: Option<String>,
}

impl Mailbox {
    /// The mail directory of `mail`; an SMTP destination is refused (the seed cannot read
    /// the codes there).
    fn of(mail: Mail) -> anyhow::Result<Self> {
        match mail {
            Mail::Dir(dir) => Ok(Self { dir }),
            Mail::Smtp { .. } => bail!(
                "the demo seed reads the codes its people are mailed from the mail directory, \
                 but mail goes to {}: unset KC_SMTP_URL to seed",
                mail.describe()
            ),
        }
    }

    /// The names of the e-mails in the directory now.
    fn files(&self) -> anyhow::Result<BTreeSet<OsString>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeSet::new()),
            Err(err) => {
                return Err(err).with_context(|| format!("could not read {}", self.dir.display()));
            }
        };
        let mut names = BTreeSet::new();
        for entry in entries {
            let name = entry
                .with_context(|| format!("could not read {}", self.dir.display()))?
                .file_name();
            // Files being written are hidden (`.<name>.tmp`) until renamed.
            let text = name.to_string_lossy();
            if text.ends_with(".eml") && !text.starts_with('.') {
                names.insert(name);
            }
        }
        Ok(names)
    }

    /// The code of the newest e-mail to `email` that is not among `before` (the e-mails there
    /// before the registration), waiting for it up to [`MAIL_PATIENCE`]. Fails when that
    /// e-mail says the address has an account already (it was made with another password).
    async fn code_for(&self, email: &str, before: &BTreeSet<OsString>) -> anyhow::Result<String> {
        let wanted = email.to_lowercase();
        let started = Instant::now();
        let mut seen = before.clone();
        let mut newest: Option<(SystemTime, MailRead)> = None;
        loop {
            for name in self.files()? {
                if !seen.insert(name.clone()) {
                    continue;
                }
                let path = self.dir.join(&name);
                let bytes = std::fs::read(&path)
                    .with_context(|| format!("could not read {}", path.display()))?;
                let read = read_mail(&bytes);
                if !read.to.contains(&wanted) {
                    continue;
                }
                let written = std::fs::metadata(&path)
                    .and_then(|meta| meta.modified())
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                if newest.as_ref().is_none_or(|(at, _)| written >= *at) {
                    newest = Some((written, read));
                }
            }
            if let Some((_, read)) = &newest {
                if let Some(code) = &read.code {
                    return Ok(code.clone());
                }
                if read.kind == TAKEN_KIND {
                    bail!(
                        "{email} has an account made with another password than the one in \
                         target/kc-up/{PASSWORD_FILE}: start over with `cargo xtask up --fresh \
                         --seed demo`"
                    );
                }
            }
            if started.elapsed() > MAIL_PATIENCE {
                bail!(
                    "no e-mail with a code reached {email} in {} within {} s: is \
                     kc-notification running?",
                    self.dir.display(),
                    MAIL_PATIENCE.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Reads an e-mail as notification writes it (RFC 5322, multipart/alternative with a
/// `text/plain` part, quoted-printable or base64): its recipients, its kind, and the code of
/// a mail that carries one (the indented line of its text).
fn read_mail(bytes: &[u8]) -> MailRead {
    let text = String::from_utf8_lossy(bytes).replace("\r\n", "\n");
    let (headers, body) = split_headers(&text);
    let to = header(&headers, "to")
        .map(|value| addresses(&value))
        .unwrap_or_default();
    let kind = header(&headers, "x-keycontacts-kind").unwrap_or_default();
    let plain = plain_text(&headers, body);
    let code = if kind.is_empty() || CODE_KINDS.contains(&kind.as_str()) {
        plain.as_deref().and_then(code_in)
    } else {
        None
    };
    MailRead { to, kind, code }
}

/// The header lines (unfolded) and the body of a message or a MIME part.
fn split_headers(text: &str) -> (Vec<String>, &str) {
    let (head, body) = text.split_once("\n\n").unwrap_or((text, ""));
    let mut headers: Vec<String> = Vec::new();
    for line in head.lines() {
        match headers.last_mut() {
            Some(last) if line.starts_with([' ', '\t']) => {
                last.push(' ');
                last.push_str(line.trim());
            }
            _ => headers.push(line.to_owned()),
        }
    }
    (headers, body)
}

/// The value of the header `name` (case-insensitive), trimmed.
fn header(headers: &[String], name: &str) -> Option<String> {
    headers.iter().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then(|| value.trim().to_owned())
    })
}

/// The addresses of an address-list header: `<a@b>` forms, else the bare words with an `@`.
fn addresses(value: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = value;
    while let Some(start) = rest.find('<') {
        let Some(end) = rest[start..].find('>') else {
            break;
        };
        found.push(rest[start + 1..start + end].trim().to_lowercase());
        rest = &rest[start + end + 1..];
    }
    if found.is_empty() {
        found = value
            .split([',', ' '])
            .map(str::trim)
            .filter(|word| word.contains('@'))
            .map(str::to_lowercase)
            .collect();
    }
    found
}

/// The decoded `text/plain` content of a message: the message itself when it is not
/// multipart, else its first `text/plain` part.
fn plain_text(headers: &[String], body: &str) -> Option<String> {
    let content_type = header(headers, "content-type").unwrap_or_default();
    let lower = content_type.to_lowercase();
    if !lower.starts_with("multipart/") {
        return (lower.is_empty() || lower.starts_with("text/plain"))
            .then(|| decode(headers, body));
    }
    let boundary = parameter(&content_type, "boundary")?;
    let delimiter = format!("--{boundary}");
    body.split(delimiter.as_str())
        .skip(1)
        .take_while(|part| !part.starts_with("--"))
        .find_map(|part| {
            let (part_headers, part_body) = split_headers(part.trim_start_matches('\n'));
            plain_text(&part_headers, part_body)
        })
}

/// A parameter of a header value (`boundary="abc"`), unquoted.
fn parameter(value: &str, name: &str) -> Option<String> {
    value.split(';').skip(1).find_map(|item| {
        let (key, value) = item.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then(|| value.trim().trim_matches('"').to_owned())
    })
}

/// A body decoded by its `Content-Transfer-Encoding`.
fn decode(headers: &[String], body: &str) -> String {
    use base64::Engine as _;
    let encoding = header(headers, "content-transfer-encoding")
        .unwrap_or_default()
        .to_lowercase();
    match encoding.as_str() {
        "quoted-printable" => String::from_utf8_lossy(&quoted_printable(body)).into_owned(),
        "base64" => {
            let compact: String = body.split_whitespace().collect();
            base64::engine::general_purpose::STANDARD
                .decode(compact)
                .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
                .unwrap_or_default()
        }
        _ => body.to_owned(),
    }
}

/// Decodes quoted-printable (RFC 2045): `=XX` bytes and `=` soft line breaks.
fn quoted_printable(body: &str) -> Vec<u8> {
    let bytes = body.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'=' {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        if bytes.get(i + 1) == Some(&b'\n') {
            i += 2;
            continue;
        }
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|pair| std::str::from_utf8(pair).ok())
            .and_then(|pair| u8::from_str_radix(pair, 16).ok());
        match hex {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(b'=');
                i += 1;
            }
        }
    }
    out
}

/// The code of a mail's text: the line indented by four spaces that holds nothing but
/// letters and digits (6 digits, or a long code of 20 once the address's claims are locked).
fn code_in(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let code = line.strip_prefix("    ")?.trim();
        (6..=40)
            .contains(&code.len())
            .then_some(code)
            .filter(|code| code.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
            .map(str::to_owned)
    })
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

    /// Signs in: the access token, or identity's refusal of the password (Unauthenticated:
    /// a wrong password, no such account or an unproven address, answered alike).
    async fn sign_in(
        &self,
        email: &str,
        password: &str,
    ) -> anyhow::Result<Result<String, tonic::Status>> {
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
            Ok(response) => Ok(Ok(response.access_token)),
            Err(status) if status.code() == Code::Unauthenticated => Ok(Err(status)),
            Err(status) => Err(failed(&format!("Login of {email}"), &status)),
        }
    }

    /// Signs in: the access token.
    async fn login(&self, email: &str, password: &str) -> anyhow::Result<String> {
        self.sign_in(email, password).await?.map_err(|status| {
            anyhow!(
                "{email} cannot sign in with its password ({}): its account was made with \
                 another one; start over with `cargo xtask up --fresh --seed demo`",
                status.message()
            )
        })
    }

    /// Signs in, if the password is right: `None` when it is not (or the account does not
    /// exist, or its address is not proven: identity answers these alike).
    async fn try_login(&self, email: &str, password: &str) -> anyhow::Result<Option<String>> {
        Ok(self.sign_in(email, password).await?.ok())
    }

    /// Registers `person` with `password`. The answer is the same whatever the address (rule
    /// I2): what happened is in the mail sent to it.
    async fn register(&self, person: &Person, password: &str) -> anyhow::Result<()> {
        let request = RegisterRequest {
            email: person.email.clone(),
            display_name: person.name.clone(),
            password: password.to_owned(),
            locale: person.locale.clone(),
        };
        match self
            .session(|mut client| {
                let request = request.clone();
                async move { client.register(request).await }
            })
            .await
        {
            Ok(_) => Ok(()),
            Err(status) => Err(failed(&format!("Register of {}", person.email), &status)),
        }
    }

    /// Proves `email` with the mailed `code` and the password given to Register (rule I1).
    async fn verify_email(&self, email: &str, code: &str, password: &str) -> anyhow::Result<()> {
        let request = VerifyEmailRequest {
            email: email.to_owned(),
            code: code.to_owned(),
            password: password.to_owned(),
        };
        self.session(|mut client| {
            let request = request.clone();
            async move { client.verify_email(request).await }
        })
        .await
        .map(drop)
        .map_err(|status| failed(&format!("VerifyEmail of {email}"), &status))
    }

    /// Creates the site `site` of `plan` as the operator: `None` when its number is taken.
    async fn create_site(
        &self,
        op: &str,
        plan: &Plan,
        site: &SitePlan,
    ) -> anyhow::Result<Option<Site>> {
        let request = CreateSiteRequest {
            site_number: site.number.clone(),
            customer_number: plan.customer.number.clone(),
            name: site.name.clone(),
            country_code: site.country.clone(),
            language: site.language.clone(),
            program: site.program.into(),
            support_active: site.support_until.is_some(),
            support_end_date: site.support_until.clone().unwrap_or_default(),
            business_partner_email: site.partner_email.clone(),
            primary_contact: Some(plan.person(&site.primary).contact_person()),
            site_technical_contact: site
                .stc
                .as_deref()
                .map(|stc| plan.person(stc).contact_person()),
        };
        match self.client.clone().create_site(bearer(request, op)?).await {
            Ok(response) => Ok(Some(response.into_inner().site.ok_or_else(|| {
                anyhow!("CreateSite of site {} returned no site", site.number)
            })?)),
            Err(status) if status.code() == Code::AlreadyExists => Ok(None),
            Err(status) => Err(failed(
                &format!("CreateSite of site {}", site.number),
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
            email: person.email.clone(),
            display_name: None,
            role: role.into(),
            details: Some(person.details()),
            locale: person.locale.clone(),
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

    /// The newcomer of `plan` asks for access to its requested site, once access management
    /// learned the site from the registry's stream (NOT_FOUND until then).
    async fn self_nominate(&self, token: &str, plan: &Plan) -> anyhow::Result<AccessRequest> {
        let nominate = || async {
            let request = SelfNominateRequest {
                site_number: plan.request.site.clone(),
                customer_number: plan.customer.number.clone(),
                kind: AccessRequestKind::SiteAccess.into(),
                requested_tools: Some(ToolAccess {
                    software: SoftwareAccess::Full.into(),
                    reporting: ReportingAccess::View.into(),
                    contact_updates: ContactUpdatesAccess::Update.into(),
                    ..ToolAccess::default()
                }),
                requested_support_level: 0,
                justification: plan.request.justification.clone(),
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
    plan: &Plan,
    addr: &str,
    operator: &Credentials,
    password: &str,
    dir: &Path,
    sites: &BTreeMap<&str, Site>,
    views: &BTreeMap<&str, Vec<ContactView>>,
    request: &AccessRequest,
    tally: &Tally,
) -> String {
    let mut text = format!(
        "demo customer {} ({}), through the gateway on {addr}: {} created, {} already there\n",
        plan.customer.number,
        plan.customer.name,
        tally.created.len(),
        tally.kept.len()
    );
    for note in tally.kept.iter().filter(|note| note.contains("not given")) {
        let _ = writeln!(text, "  note: {note}");
    }
    for site_plan in &plan.sites {
        let site = &sites[site_plan.number.as_str()];
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
        for person in views.get(site_plan.number.as_str()).into_iter().flatten() {
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
        plan.requester().name,
        plan.requester().email,
        plan.request.site,
        request.request_id,
        state_name(request.state)
    );
    let _ = writeln!(
        text,
        "every demo person signs in with the password {password} (kept in {})",
        dir.join(PASSWORD_FILE).display()
    );

    // The viewer's session looks at the requested site, the operator's at its own.
    let paris = &sites[plan.request.site.as_str()].site_id;
    let london = &sites[plan.operator_site.as_str()].site_id;
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
        format!("# {}, {}:", plan.viewer().name, plan.viewer.about),
        login("TOKEN", &plan.viewer().email, password),
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
                plan.requester().name
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
            plan.requester().name,
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
        let demo = Plan::demo().unwrap();
        let numbers: BTreeSet<&str> = demo.sites.iter().map(|plan| plan.number.as_str()).collect();
        assert_eq!(
            numbers.len(),
            demo.sites.len(),
            "site numbers are unique (S2)"
        );
        for plan in &demo.sites {
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
                    .all(|contact| contact.role != ContactRole::Primary),
                "{}",
                plan.number
            );
            // C6: at most four secondaries, one holder of each single-holder role.
            let mut single = BTreeSet::new();
            let mut secondaries = 0;
            for contact in &plan.contacts {
                assert!(
                    demo.people
                        .iter()
                        .any(|known| known.email == contact.person)
                );
                match contact.role {
                    ContactRole::Secondary => secondaries += 1,
                    ContactRole::SiteUser => {}
                    other => assert!(single.insert(other), "{} twice", role_name(other)),
                }
            }
            assert!(secondaries <= 4);
        }
        assert!(
            demo.sites
                .iter()
                .any(|plan| plan.program == Program::PassportAdvantageExpress),
            "one site is PASSPORT_ADVANTAGE_EXPRESS"
        );
        let locales: BTreeSet<&str> = demo
            .people
            .iter()
            .map(|person| person.locale.as_str())
            .collect();
        assert_eq!(locales, BTreeSet::from(["en", "fr"]));
        // The viewer holds a role on every site, so that its GetMe finds them all again.
        let viewer = &demo.viewer().email;
        for plan in &demo.sites {
            assert!(
                &plan.primary == viewer
                    || plan
                        .contacts
                        .iter()
                        .any(|contact| &contact.person == viewer)
            );
        }
        // The newcomer holds nothing yet.
        let newcomer = &demo.requester().email;
        for plan in &demo.sites {
            assert!(&plan.primary != newcomer);
            assert!(plan.stc.as_ref() != Some(newcomer));
            assert!(
                plan.contacts
                    .iter()
                    .all(|contact| &contact.person != newcomer)
            );
        }
    }

    #[test]
    fn a_plan_names_only_people_and_sites_it_defines() {
        let demo: serde_json::Value = serde_json::from_str(DEMO).unwrap();
        let mut stranger = demo.clone();
        stranger["sites"][1]["contacts"][0]["person"] = "nobody@dupont.example".into();
        let err = Plan::parse(&stranger.to_string()).unwrap_err();
        assert!(err.to_string().contains("nobody@dupont.example"), "{err}");
        let mut elsewhere = demo.clone();
        elsewhere["operator_site"] = "7350199".into();
        let err = Plan::parse(&elsewhere.to_string()).unwrap_err();
        assert!(err.to_string().contains("7350199"), "{err}");
        let mut unknown_role = demo;
        unknown_role["sites"][0]["contacts"][0]["role"] = "JANITOR".into();
        assert!(Plan::parse(&unknown_role.to_string()).is_err());
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

    /// An e-mail as notification writes it (lettre: CRLF, multipart/alternative,
    /// quoted-printable text).
    fn eml(to: &str, kind: &str, text: &str) -> Vec<u8> {
        format!(
            "From: keycontacts <no-reply@keycontacts.invalid>\r\n\
             To: {to}\r\n\
             Subject: =?utf-8?b?Vm90cmUgY29kZQ==?=\r\n\
             X-Keycontacts-Kind: {kind}\r\n\
             MIME-Version: 1.0\r\n\
             Content-Type: multipart/alternative;\r\n boundary=\"abc123\"\r\n\
             \r\n\
             --abc123\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\
             Content-Transfer-Encoding: quoted-printable\r\n\
             \r\n\
             {text}\r\n\
             --abc123\r\n\
             Content-Type: text/html; charset=utf-8\r\n\
             Content-Transfer-Encoding: quoted-printable\r\n\
             \r\n\
             <p>    999999</p>\r\n\
             --abc123--\r\n"
        )
        .into_bytes()
    }

    #[test]
    fn the_code_is_read_from_the_text_part_of_the_mail() {
        let text = "Bonjour Camille Martin,\r\n\r\nUn compte keycontacts a =C3=A9t=C3=A9 cr=\r\n\
                    =C3=A9=C3=A9 avec cette adresse e-mail.\r\n\r\n    042917\r\n\r\nIl expire.";
        let read = read_mail(&eml(
            "camille.martin@dupont.example",
            "NOTICE_KIND_EMAIL_VERIFICATION",
            text,
        ));
        assert_eq!(read.to, ["camille.martin@dupont.example"]);
        assert_eq!(read.kind, "NOTICE_KIND_EMAIL_VERIFICATION");
        assert_eq!(read.code.as_deref(), Some("042917"));

        // A long code (claims locked), and a named recipient.
        let long = read_mail(&eml(
            "\"Olivia\" <Olivia.Smith@dupont.example>",
            "NOTICE_KIND_INVITATION",
            "Hello,\r\n\r\n    7K3M9Q2W8E4R6T1Y5U0P\r\n",
        ));
        assert_eq!(long.to, ["olivia.smith@dupont.example"]);
        assert_eq!(long.code.as_deref(), Some("7K3M9Q2W8E4R6T1Y5U0P"));

        // The mail of a taken address carries no code; nor does any other notice.
        let taken = read_mail(&eml(
            "camille.martin@dupont.example",
            TAKEN_KIND,
            "Someone tried to register.\r\n\r\n    RequestPasswordReset\r\n",
        ));
        assert_eq!(taken.code, None);
        assert_eq!(taken.kind, TAKEN_KIND);
        let notice = read_mail(&eml(
            "camille.martin@dupont.example",
            "NOTICE_KIND_RIGHTS_CHANGED",
            "Your rights:\r\n\r\n    123456\r\n",
        ));
        assert_eq!(notice.code, None);
    }

    #[test]
    fn a_mail_as_notification_writes_it_reads_back() {
        use lettre::message::header::{HeaderName, HeaderValue};
        use lettre::message::{Mailbox as Address, MultiPart};
        let french = "Bonjour Camille Martin,\n\nUn compte keycontacts a été créé avec cette \
                      adresse e-mail. Pour prouver que l'adresse est la vôtre et terminer \
                      l'inscription, saisissez ce code avec le mot de passe que vous avez \
                      choisi :\n\n    042917\n\nIl expire le 2026-01-02 10:00 UTC.\n";
        let english = "Hello,\n\nenter this code:\n\n    7K3M9Q2W8E4R6T1Y5U0P\n\nBye.\n";
        for (text, code) in [(french, "042917"), (english, "7K3M9Q2W8E4R6T1Y5U0P")] {
            let message = lettre::Message::builder()
                .from(
                    "keycontacts <no-reply@keycontacts.invalid>"
                        .parse()
                        .unwrap(),
                )
                .to(Address::new(
                    None,
                    "camille.martin@dupont.example".parse().unwrap(),
                ))
                .subject("Votre code d'inscription keycontacts")
                .raw_header(HeaderValue::new(
                    HeaderName::new_from_ascii_str("X-Keycontacts-Kind"),
                    CODE_KINDS[0].to_owned(),
                ))
                .multipart(MultiPart::alternative_plain_html(
                    text.to_owned(),
                    format!("<p>{text}</p>"),
                ))
                .unwrap();
            let read = read_mail(&message.formatted());
            assert_eq!(read.to, ["camille.martin@dupont.example"]);
            assert_eq!(read.kind, CODE_KINDS[0]);
            assert_eq!(read.code.as_deref(), Some(code), "{read:?}");
        }
    }

    #[test]
    fn quoted_printable_and_base64_parts_decode() {
        assert_eq!(quoted_printable("a=3Db=\nc=C3=A9"), "a=bc\u{e9}".as_bytes());
        assert_eq!(quoted_printable("100 =%"), b"100 =%");
        let headers = vec!["Content-Transfer-Encoding: base64".to_owned()];
        assert_eq!(decode(&headers, "ICAgIDEyMzQ1Ng==\n"), "    123456");
        assert_eq!(code_in("Hello,\n\n    123456\n"), Some("123456".to_owned()));
        assert_eq!(code_in("    12345\n"), None, "too short");
        assert_eq!(code_in("123456\n"), None, "not indented");
    }

    #[tokio::test]
    async fn the_newest_new_mail_to_the_address_gives_the_code() {
        let dir = kc_bench::workspace::target_dir()
            .join("kc-xtask-test")
            .join(format!("mail-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let mailbox = Mailbox { dir: dir.clone() };
        let write = |name: &str, to: &str, kind: &str, code: &str| {
            std::fs::write(
                dir.join(name),
                eml(to, kind, &format!("Hello,\r\n\r\n    {code}\r\n")),
            )
            .unwrap();
        };
        // An old code of an earlier run, then the e-mails of this one.
        write(
            "old.eml",
            "emma.durand@dupont.example",
            CODE_KINDS[0],
            "111111",
        );
        let before = mailbox.files().unwrap();
        write(
            ".new.eml.x.tmp",
            "emma.durand@dupont.example",
            CODE_KINDS[0],
            "333333",
        );
        write(
            "other.eml",
            "thomas.petit@dupont.example",
            CODE_KINDS[0],
            "444444",
        );
        write(
            "new.eml",
            "emma.durand@dupont.example",
            CODE_KINDS[0],
            "222222",
        );
        let code = mailbox
            .code_for("Emma.Durand@dupont.example", &before)
            .await
            .unwrap();
        assert_eq!(code, "222222");

        // A taken address: the mail says so, and the seed says what to do.
        let before = mailbox.files().unwrap();
        write("taken.eml", "emma.durand@dupont.example", TAKEN_KIND, "");
        let refused = mailbox
            .code_for("emma.durand@dupont.example", &before)
            .await
            .unwrap_err();
        assert!(format!("{refused:#}").contains("--fresh"), "{refused:#}");
        std::fs::remove_dir_all(&dir).unwrap();

        // No mail directory without a directory.
        let smtp = Mail::Smtp {
            url: "smtp://relay:587".to_owned(),
            username: None,
            password: None,
        };
        assert!(Mailbox::of(smtp).is_err());
    }

    #[test]
    fn names_drop_their_enum_prefix() {
        assert_eq!(role_name(ContactRole::SiteTechnical), "SITE_TECHNICAL");
        assert_eq!(state_name(AccessRequestState::Pending as i32), "PENDING");
        assert_eq!(state_name(99), "UNSPECIFIED");
    }
}
