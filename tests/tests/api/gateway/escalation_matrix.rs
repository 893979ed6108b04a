//! The escalation matrix of issue 14, through the gateway (DOMAIN.md T3, T4, T6, T7, C3,
//! C8, U4–U6): for each role that implies rights (PRIMARY by transfer, ADMINISTRATIVE with
//! the C3 switch off and on, SITE_TECHNICAL, SECONDARY), each kind of actor and each change
//! of the role (assign, replace, remove; transfer for PRIMARY), the change is allowed
//! exactly when the rules allow it ([`expected`]), and a refused change changes nothing:
//! the site, its contacts and every user's rights on it are as they were.
//!
//! Every cell is asked twice: through the gateway, as people ask; and of the contact
//! registry itself, by a service acting for the actor (`x-kc-on-behalf-of`), without the
//! gateway's check in front: the registry decides in the write's own transaction (T6, T8),
//! and the gateway's check is only a first filter (ARCHITECTURE.md, Security).
//!
//! One suite runs the whole matrix; every cell gets a fresh site (sites are cheap), set up
//! by the operator with only what the cell needs, and a few cells run at once. Every
//! disagreement is collected and the test fails listing all of them, after printing the
//! whole matrix as observed.

use std::fmt;

use crate::gateway::helpers::*;
use futures::StreamExt;
use kc_proto::access::{self as apb};
use kc_proto::contacts::contact_registry_service_client::ContactRegistryServiceClient;
use kc_proto::contacts::{self as cpb};
use kc_proto::gateway::{self as gw};
use kc_runtime::auth::ON_BEHALF_OF_HEADER;
use tonic::{Code, Request, Status};

/// Cells run at once: enough to keep the services busy, few enough to stay gentle.
const CONCURRENT_CELLS: usize = 4;

/// Where a cell's change is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    /// Through the gateway, with the actor's own token.
    Gateway,
    /// Of the contact registry, by a service naming the actor (`x-kc-on-behalf-of`); the
    /// operator with its own token.
    Registry,
}

/// A role that implies rights (T3, U5): a row group of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Row {
    /// Implies the top level of every tool (T3); changes only by transfer (C8).
    Primary,
    /// Implies account documents VIEW, and manage access UPDATE with the C3 switch on (T3).
    Administrative { switch: bool },
    /// Implies support ADMINISTRATOR (U5).
    SiteTechnical,
    /// Implies manage access UPDATE and contact updates UPDATE (T3).
    Secondary,
}

impl Row {
    const ALL: [Row; 5] = [
        Row::Primary,
        Row::Administrative { switch: false },
        Row::Administrative { switch: true },
        Row::SiteTechnical,
        Row::Secondary,
    ];

    fn role(self) -> Role {
        match self {
            Row::Primary => Role::Primary,
            Row::Administrative { .. } => Role::Administrative,
            Row::SiteTechnical => Role::SiteTechnical,
            Row::Secondary => Role::Secondary,
        }
    }

    /// The changes of the role. PRIMARY changes only by transfer (C8); SECONDARY is not a
    /// single-holder role, so ReplaceContact does not take it (C6).
    fn ops(self) -> &'static [Op] {
        match self {
            Row::Primary => &[Op::Transfer],
            Row::Administrative { .. } | Row::SiteTechnical => {
                &[Op::Assign, Op::Replace, Op::Remove]
            }
            Row::Secondary => &[Op::Assign, Op::Remove],
        }
    }
}

impl fmt::Display for Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Row::Primary => f.write_str("PRIMARY"),
            Row::Administrative { switch: false } => f.write_str("ADMINISTRATIVE (C3 off)"),
            Row::Administrative { switch: true } => f.write_str("ADMINISTRATIVE (C3 on)"),
            Row::SiteTechnical => f.write_str("SITE_TECHNICAL"),
            Row::Secondary => f.write_str("SECONDARY"),
        }
    }
}

/// A change of a role; the target is always [`Cast::target`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// AssignContact: the target gets the role.
    Assign,
    /// ReplaceContact: the target takes the role from its current holder.
    Replace,
    /// RemoveContact: the target, holding the role, loses it.
    Remove,
    /// TransferPrimaryContact: the target becomes the primary.
    Transfer,
}

/// Who asks for the change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Actor {
    /// The site's primary contact.
    Primary,
    /// Holds account management (explicit grant).
    AccountManager,
    /// Holds manage access UPDATE (explicit grant).
    AccessManager,
    /// Holds contact updates UPDATE (explicit grant).
    ContactEditor,
    /// Holds support ADMINISTRATOR (explicit grant).
    SupportAdmin,
    /// The site technical contact (support ADMINISTRATOR by U5).
    Stc,
    /// The person the change is about, acting on itself.
    Target,
    /// The operator, acting with its own token.
    Operator,
}

impl Actor {
    const ALL: [Actor; 8] = [
        Actor::Primary,
        Actor::AccountManager,
        Actor::AccessManager,
        Actor::ContactEditor,
        Actor::SupportAdmin,
        Actor::Stc,
        Actor::Target,
        Actor::Operator,
    ];
}

/// A right the rules ask of an actor that changes a rights-implying role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Right {
    /// Contact updates UPDATE: changing a site's contacts at all (tool 6, C2).
    ContactUpdates,
    /// Manage access UPDATE: granting anything (T4).
    ManageAccess,
    /// Account documents VIEW.
    DocumentsView,
    /// Account management (T2, T4).
    AccountManagement,
}

impl Right {
    /// `tools` with this right granted explicitly.
    fn grant(self, tools: &mut apb::ToolAccess) {
        match self {
            Right::ContactUpdates => {
                tools.contact_updates = apb::ContactUpdatesAccess::Update as i32;
            }
            Right::ManageAccess => tools.manage_access = apb::ManageAccess::Update as i32,
            Right::DocumentsView => {
                tools.account_documents = apb::AccountDocumentsAccess::View as i32;
            }
            Right::AccountManagement => {
                tools.account_management = apb::AccountManagementAccess::Granted as i32;
            }
        }
    }
}

/// What each actor holds on its cell's site. Every actor defined by another right also
/// holds contact updates UPDATE, the right to change a site's contacts at all, so that its
/// cells ask only what T4, T6 and T7 add to it. The target holds everything a naming could
/// ask, so that only T7 may refuse it. These are the explicit grants [`setup`] makes, but
/// for the primary (T3: PRIMARY implies the top level of every tool) and the operator.
fn holds(actor: Actor) -> &'static [Right] {
    use Right::*;
    match actor {
        Actor::Primary | Actor::Target => &[
            ContactUpdates,
            ManageAccess,
            DocumentsView,
            AccountManagement,
        ],
        Actor::AccountManager => &[ContactUpdates, AccountManagement],
        Actor::AccessManager => &[ContactUpdates, ManageAccess],
        // Besides support ADMINISTRATOR: explicit for the one, implied (U5) for the other.
        Actor::ContactEditor | Actor::SupportAdmin | Actor::Stc => &[ContactUpdates],
        Actor::Operator => &[],
    }
}

/// What assigning, replacing or removing the role asks of the actor (T6: the same for the
/// three, taking away needs the authority to give), each with the rule that asks it.
fn needs(row: Row) -> &'static [(Right, &'static str)] {
    use Right::*;
    match row {
        // C8: the current primary or an account-management holder names the new primary;
        // T4: PRIMARY implies account management, which only its holders grant.
        Row::Primary => &[(AccountManagement, "C8")],
        // T6 + T4: ADMINISTRATIVE implies account documents VIEW, and manage access UPDATE
        // with the C3 switch on; any grant needs manage access UPDATE, and no tool above
        // the grantor's own level. So the switch does not change who may name it.
        Row::Administrative { .. } => &[
            (ContactUpdates, "C2"),
            (ManageAccess, "T4"),
            (DocumentsView, "T4"),
        ],
        // T6 + T4: SECONDARY implies manage access and contact updates UPDATE.
        Row::Secondary => &[(ContactUpdates, "C2"), (ManageAccess, "T4")],
        // T6 + U4: SITE_TECHNICAL implies support ADMINISTRATOR (U5), and a support
        // administrator cannot change the STC's level (U6): support authority does not
        // name the STC; account management does (C2: the primary assigns roles and grants
        // privileges; the reading recorded on `kc_rights::rights::ContactRole::naming_authority`).
        Row::SiteTechnical => &[(ContactUpdates, "C2"), (AccountManagement, "U6")],
    }
}

/// What the rules say of one cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Allowed,
    /// Refused by the rule named.
    Refused(&'static str),
}

/// The matrix as the rules write it.
fn expected(row: Row, op: Op, actor: Actor) -> Outcome {
    // Operators act on every site (they create sites and name their contacts); here the
    // operator names someone else, so T7 does not bind it either.
    if actor == Actor::Operator {
        return Outcome::Allowed;
    }
    // T7: nobody assigns itself a rights-implying role nor makes itself the primary.
    // Giving up one's own role grants nothing: T6 alone decides it.
    if actor == Actor::Target && op != Op::Remove {
        return Outcome::Refused("T7");
    }
    let held = holds(actor);
    match needs(row).iter().find(|(right, _)| !held.contains(right)) {
        Some((_, rule)) => Outcome::Refused(rule),
        None => Outcome::Allowed,
    }
}

/// Whether the cell exists: the STC acts as itself only where the site has one that is not
/// the target (on STC assignment the site has none, on STC removal the target is the STC,
/// and the target's cell is that one).
fn applies(row: Row, op: Op, actor: Actor) -> bool {
    !(actor == Actor::Stc && row == Row::SiteTechnical && op != Op::Replace)
}

/// The people of the matrix, the same on every site (roles and rights are per site).
struct Cast {
    primary: Person,
    account_manager: Person,
    access_manager: Person,
    contact_editor: Person,
    support_admin: Person,
    stc: Person,
    target: Person,
    /// The ADMINISTRATIVE contact the target replaces.
    holder: Person,
}

impl Cast {
    async fn new(suite: &Suite) -> Self {
        Self {
            primary: suite.person("Matrix Primary").await,
            account_manager: suite.person("Matrix Account Manager").await,
            access_manager: suite.person("Matrix Access Manager").await,
            contact_editor: suite.person("Matrix Contact Editor").await,
            support_admin: suite.person("Matrix Support Admin").await,
            stc: suite.person("Matrix Stc").await,
            target: suite.person("Matrix Target").await,
            holder: suite.person("Matrix Holder").await,
        }
    }

    fn person<'a>(&'a self, suite: &'a Suite, actor: Actor) -> &'a Person {
        match actor {
            Actor::Primary => &self.primary,
            Actor::AccountManager => &self.account_manager,
            Actor::AccessManager => &self.access_manager,
            Actor::ContactEditor => &self.contact_editor,
            Actor::SupportAdmin => &self.support_admin,
            Actor::Stc => &self.stc,
            Actor::Target => &self.target,
            Actor::Operator => &suite.operator,
        }
    }

    /// Who holds the role before the change, and who after (each `None` when nobody).
    fn holders(&self, row: Row, op: Op) -> (Option<&Person>, Option<&Person>) {
        let target = Some(&self.target);
        match (row, op) {
            (_, Op::Assign) => (None, target),
            (_, Op::Remove) => (target, None),
            (Row::SiteTechnical, Op::Replace) => (Some(&self.stc), target),
            (_, Op::Replace) => (Some(&self.holder), target),
            (_, Op::Transfer) => (Some(&self.primary), target),
        }
    }
}

/// The site as the operator sees it: the site itself, every contact, and every user's
/// rights there (the users with a grant or a rights-implying role, ListSiteAccess), each
/// list by user id.
#[derive(Debug, Clone, PartialEq)]
struct Snapshot {
    site: cpb::Site,
    contacts: Vec<gw::ContactView>,
    access: Vec<gw::SiteAccessEntry>,
}

impl Snapshot {
    async fn of(suite: &Suite, site_id: &str) -> Self {
        let token = Some(suite.operator.token.as_str());
        let site = suite.site_now(site_id).await;
        let mut contacts = suite.operator_contacts(site_id, &[]).await;
        contacts.sort_by(|a, b| a.user_id.cmp(&b.user_id));
        let mut access = suite
            .gw()
            .list_site_access(authed(
                token,
                gw::ListSiteAccessRequest {
                    site_id: site_id.into(),
                    page_size: 1000,
                    page_token: String::new(),
                },
            ))
            .await
            .expect("the operator lists the site's access")
            .into_inner()
            .entries;
        access.sort_by(|a, b| user_of(a).cmp(user_of(b)));
        Self {
            site,
            contacts,
            access,
        }
    }

    /// The site as the operator sees it once access management applied every role the
    /// registry holds (it follows the registry's events): for each user, the rights-implying
    /// roles of the one are the roles the other says imply its rights.
    async fn settled(suite: &Suite, site_id: &str) -> Self {
        eventually(
            "access management knows every role the registry holds",
            || async {
                let now = Self::of(suite, site_id).await;
                let implying = [
                    Role::Primary,
                    Role::Administrative,
                    Role::SiteTechnical,
                    Role::Secondary,
                ]
                .map(|role| role as i32);
                let users = now
                    .contacts
                    .iter()
                    .map(|view| view.user_id.as_str())
                    .chain(now.access.iter().map(user_of));
                for user in users {
                    let mut registry: Vec<i32> = now
                        .contacts
                        .iter()
                        .filter(|view| view.user_id == user)
                        .flat_map(|view| view.roles.iter().copied())
                        .filter(|role| implying.contains(role))
                        .collect();
                    let mut access: Vec<i32> = now
                        .access
                        .iter()
                        .filter(|entry| user_of(entry) == user)
                        .filter_map(|entry| entry.profile.as_ref())
                        .flat_map(|profile| profile.implied_by.iter().copied())
                        .collect();
                    registry.sort_unstable();
                    access.sort_unstable();
                    if registry != access {
                        return Err(format!(
                            "{user}: the registry {registry:?}, access management {access:?}"
                        ));
                    }
                }
                Ok(now)
            },
        )
        .await
    }

    /// The roles `user` holds in the registry.
    fn roles(&self, user: &Person) -> Vec<i32> {
        self.contacts
            .iter()
            .find(|view| view.user_id == user.id)
            .map(|view| view.roles.clone())
            .unwrap_or_default()
    }

    /// The roles access management knows `user` holds.
    fn implied_by(&self, user: &Person) -> Vec<i32> {
        self.access
            .iter()
            .filter_map(|entry| entry.profile.as_ref())
            .find(|profile| profile.user_id == user.id)
            .map(|profile| profile.implied_by.clone())
            .unwrap_or_default()
    }

    /// The contact id of `user`'s `role`.
    fn contact_id(&self, user: &Person, role: Role) -> Option<String> {
        self.contacts
            .iter()
            .filter(|view| view.user_id == user.id)
            .flat_map(|view| &view.contacts)
            .find(|entry| entry.role == role as i32)
            .map(|entry| entry.contact_id.clone())
    }
}

fn user_of(entry: &gw::SiteAccessEntry) -> &str {
    entry
        .profile
        .as_ref()
        .map_or("", |profile| profile.user_id.as_str())
}

/// A fresh site for one cell, as the operator sets it up: the cast's primary, no S&S (so
/// that the STC may be removed, C5), the C3 switch as the row says, the role's holder before
/// the change, and the actor's own rights ([`holds`]).
async fn setup(suite: &Suite, cast: &Cast, row: Row, op: Op, actor: Actor) -> String {
    let site = suite
        .create_site(&format!("{row} {op:?} by {actor:?}"), &cast.primary, None)
        .await;
    let site_id = site.site_id;
    // Access management knows the site before anyone is granted rights on it.
    suite
        .wait_role(&site_id, &cast.primary.id, Role::Primary)
        .await;
    if row == (Row::Administrative { switch: true }) {
        suite.switch_admin_on(&site_id).await;
    }
    if let (Some(holder), Op::Replace | Op::Remove) = (cast.holders(row, op).0, op) {
        suite.assign(&site_id, holder, row.role()).await;
    }
    let person = cast.person(suite, actor);
    if actor == Actor::Stc && row != Row::SiteTechnical {
        suite.assign(&site_id, person, Role::SiteTechnical).await;
    }
    if !matches!(actor, Actor::Primary | Actor::Operator) {
        let granted = tools(|t| holds(actor).iter().for_each(|right| right.grant(t)));
        suite.grant(&site_id, &person.id, granted).await;
    }
    if actor == Actor::SupportAdmin {
        suite
            .gw()
            .set_support_access(authed(
                Some(&suite.operator.token),
                gw::SetSupportAccessRequest {
                    site_id: site_id.clone(),
                    user_id: person.id.clone(),
                    support_level: apb::SupportLevel::Administrator as i32,
                    reason: "test fixture".into(),
                    etag: String::new(),
                    ..Default::default()
                },
            ))
            .await
            .expect("the operator makes a support administrator");
    }
    site_id
}

/// `by` makes the change of the cell through the gateway.
async fn act_at_gateway(
    suite: &Suite,
    cast: &Cast,
    row: Row,
    op: Op,
    by: &Person,
    site_id: &str,
    before: &Snapshot,
) -> Result<(), Status> {
    let token = Some(by.token.as_str());
    let target = &cast.target;
    let mut gateway = suite.gw();
    match op {
        Op::Assign => suite
            .assign_as(by, site_id, target, row.role())
            .await
            .map(drop),
        Op::Replace => gateway
            .replace_contact(authed(
                token,
                gw::ReplaceContactRequest {
                    site_id: site_id.into(),
                    role: row.role() as i32,
                    email: target.email.clone(),
                    display_name: None,
                    details: None,
                    locale: String::new(),
                },
            ))
            .await
            .map(drop),
        Op::Remove => {
            let contact_id = before
                .contact_id(target, row.role())
                .expect("the target holds the role it loses");
            gateway
                .remove_contact(authed(
                    token,
                    gw::RemoveContactRequest {
                        site_id: site_id.into(),
                        contact_id,
                        etag: String::new(),
                    },
                ))
                .await
                .map(drop)
        }
        Op::Transfer => gateway
            .transfer_primary_contact(authed(
                token,
                gw::TransferPrimaryContactRequest {
                    site_id: site_id.into(),
                    email: target.email.clone(),
                    display_name: None,
                    etag: String::new(),
                    previous_primary_role: 0,
                    locale: String::new(),
                },
            ))
            .await
            .map(drop),
    }
}

/// The change of the cell asked of the contact registry: by a service with `probe`, its
/// token, naming `actor` as the person it acts for; the operator with its own token. The
/// registry takes user ids; a transfer names the site's version read before (C8: an
/// account-management holder transfers against the site it read).
async fn act_at_registry(
    suite: &Suite,
    cast: &Cast,
    probe: &str,
    (row, op, actor): (Row, Op, Actor),
    site_id: &str,
    before: &Snapshot,
) -> Result<(), Status> {
    let by = cast.person(suite, actor);
    let target = &cast.target;
    let mut registry = ContactRegistryServiceClient::new(
        kc_testkit::ready_channel(&suite.url(Service::Contacts)).await,
    );
    match op {
        Op::Assign => registry
            .assign_contact(acting_for(
                suite,
                probe,
                actor,
                by,
                cpb::AssignContactRequest {
                    site_id: site_id.into(),
                    user_id: target.id.clone(),
                    role: row.role() as i32,
                    details: None,
                },
            ))
            .await
            .map(drop),
        Op::Replace => registry
            .replace_contact(acting_for(
                suite,
                probe,
                actor,
                by,
                cpb::ReplaceContactRequest {
                    site_id: site_id.into(),
                    role: row.role() as i32,
                    new_user_id: target.id.clone(),
                    details: None,
                },
            ))
            .await
            .map(drop),
        Op::Remove => registry
            .remove_contact(acting_for(
                suite,
                probe,
                actor,
                by,
                cpb::RemoveContactRequest {
                    contact_id: before
                        .contact_id(target, row.role())
                        .expect("the target holds the role it loses"),
                    etag: String::new(),
                    site_id: site_id.into(),
                },
            ))
            .await
            .map(drop),
        Op::Transfer => registry
            .transfer_primary_contact(acting_for(
                suite,
                probe,
                actor,
                by,
                cpb::TransferPrimaryContactRequest {
                    site_id: site_id.into(),
                    new_user_id: target.id.clone(),
                    etag: before.site.etag.clone(),
                    previous_primary_role: Role::SiteUser as i32,
                },
            ))
            .await
            .map(drop),
    }
}

/// A request to the registry for `actor`: by a service with `probe`, its token, naming
/// `by`; the operator with its own token.
fn acting_for<T>(suite: &Suite, probe: &str, actor: Actor, by: &Person, message: T) -> Request<T> {
    if actor == Actor::Operator {
        return authed(Some(&suite.operator.token), message);
    }
    let mut request = authed(Some(probe), message);
    request
        .metadata_mut()
        .insert(ON_BEHALF_OF_HEADER, by.id.parse().expect("a user id"));
    request
}

/// An allowed change did what it says, in the registry and in access management alike.
fn check_effect(cast: &Cast, row: Row, op: Op, after: &Snapshot) -> Result<(), String> {
    let role = row.role() as i32;
    let (old, new) = cast.holders(row, op);
    let mut wrong = Vec::new();
    if let Some(new) = new {
        if !after.roles(new).contains(&role) {
            wrong.push(format!(
                "the registry does not show {} with the role",
                new.name
            ));
        }
        if !after.implied_by(new).contains(&role) {
            wrong.push(format!(
                "access management does not know {} holds the role",
                new.name
            ));
        }
    }
    if let Some(old) = old {
        if after.roles(old).contains(&role) {
            wrong.push(format!(
                "the registry still shows {} with the role",
                old.name
            ));
        }
        if after.implied_by(old).contains(&role) {
            wrong.push(format!(
                "access management still knows {} with the role",
                old.name
            ));
        }
    }
    if op == Op::Transfer && after.site.primary_user_id != cast.target.id {
        wrong.push("the site's primary_user_id is not the target".into());
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(wrong.join("; "))
    }
}

/// A refusal is the one the rule gives: PERMISSION_DENIED for lacking authority; T7 may be
/// FAILED_PRECONDITION or PERMISSION_DENIED but cites T7.
fn check_refusal(rule: &str, status: &Status) -> Result<(), String> {
    let fine = if rule == "T7" {
        matches!(
            status.code(),
            Code::FailedPrecondition | Code::PermissionDenied
        ) && cites(status.message(), "T7")
    } else {
        status.code() == Code::PermissionDenied
    };
    if fine {
        Ok(())
    } else {
        Err(format!(
            "refused, but not as rule {rule} asks: {:?} {:?}",
            status.code(),
            status.message()
        ))
    }
}

/// What one cell showed.
struct Seen {
    path: Path,
    row: Row,
    op: Op,
    actor: Actor,
    expected: Outcome,
    /// `ok`, or the refusal's code.
    observed: String,
    /// Where it disagrees with the rules.
    problem: Option<String>,
}

async fn run_cell(
    suite: &Suite,
    cast: &Cast,
    probe: &str,
    (path, row, op, actor): (Path, Row, Op, Actor),
) -> Seen {
    let expected = expected(row, op, actor);
    let site_id = setup(suite, cast, row, op, actor).await;
    let before = Snapshot::settled(suite, &site_id).await;
    let result = match path {
        Path::Gateway => {
            let by = cast.person(suite, actor);
            act_at_gateway(suite, cast, row, op, by, &site_id, &before).await
        }
        Path::Registry => {
            act_at_registry(suite, cast, probe, (row, op, actor), &site_id, &before).await
        }
    };
    // A refused change is compared at once; an allowed one once access management applied
    // it (that the gateway answers only then is revisions.rs's matter).
    let after = match result {
        Ok(()) => Snapshot::settled(suite, &site_id).await,
        Err(_) => Snapshot::of(suite, &site_id).await,
    };
    let observed = match &result {
        Ok(()) => "ok".to_owned(),
        Err(status) => format!("{:?}", status.code()),
    };
    let problem = match (expected, &result) {
        (Outcome::Allowed, Ok(())) => check_effect(cast, row, op, &after).err(),
        (Outcome::Allowed, Err(status)) => Some(format!(
            "the rules allow it, refused: {:?} {:?}",
            status.code(),
            status.message()
        )),
        (Outcome::Refused(rule), Ok(())) => Some(format!(
            "ESCALATION: rule {rule} refuses it, the change was made"
        )),
        (Outcome::Refused(rule), Err(status)) => {
            let mut wrong: Vec<String> = check_refusal(rule, status).err().into_iter().collect();
            if after != before {
                wrong.push(format!(
                    "a refused change changed the site: before {before:#?}\nafter {after:#?}"
                ));
            }
            (!wrong.is_empty()).then(|| wrong.join("; "))
        }
    };
    Seen {
        path,
        row,
        op,
        actor,
        expected,
        observed,
        problem,
    }
}

/// The matrix as observed, one line per (role, change), one column per actor: `ok` or the
/// refusal's code, `!` where it disagrees with [`expected`], `-` where the cell does not
/// exist ([`applies`]).
fn table(path: Path, seen: &[Seen]) -> String {
    let mut out = format!("{:<36}", format!("{path:?}: role / change"));
    for actor in Actor::ALL {
        out.push_str(&format!("{:<20}", format!("{actor:?}")));
    }
    out.push('\n');
    for row in Row::ALL {
        for op in row.ops() {
            out.push_str(&format!("{:<36}", format!("{row} {op:?}")));
            for actor in Actor::ALL {
                let cell = seen
                    .iter()
                    .find(|s| s.path == path && s.row == row && s.op == *op && s.actor == actor);
                let text = match cell {
                    None => "-".to_owned(),
                    Some(s) => format!(
                        "{}{}",
                        s.observed,
                        if s.problem.is_some() { " !" } else { "" }
                    ),
                };
                out.push_str(&format!("{text:<20}"));
            }
            out.push('\n');
        }
    }
    out
}

// rules T3, T4, T6, T7, C3, C8, U4–U6: every rights-implying role × every actor × every
// change, through the gateway and at the registry itself: allowed exactly when the rules
// allow it (the effect then visible in the registry and in access management), and a
// refused change leaves the site, its contacts and everyone's rights as they were.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rights_implying_roles_change_only_as_the_rules_allow() {
    let suite = Suite::start().await;
    let cast = Cast::new(&suite).await;
    let probe = suite.service_token("kc-matrix-probe").await;
    let cells: Vec<(Path, Row, Op, Actor)> = [Path::Gateway, Path::Registry]
        .into_iter()
        .flat_map(|path| Row::ALL.into_iter().map(move |row| (path, row)))
        .flat_map(|(path, row)| row.ops().iter().map(move |op| (path, row, *op)))
        .flat_map(|(path, row, op)| {
            Actor::ALL
                .into_iter()
                .map(move |actor| (path, row, op, actor))
        })
        .filter(|(_, row, op, actor)| applies(*row, *op, *actor))
        .collect();
    let seen: Vec<Seen> = futures::stream::iter(cells)
        .map(|cell| run_cell(&suite, &cast, &probe, cell))
        .buffer_unordered(CONCURRENT_CELLS)
        .collect()
        .await;
    eprintln!(
        "{}\n{}",
        table(Path::Gateway, &seen),
        table(Path::Registry, &seen)
    );
    let problems: Vec<String> = seen
        .iter()
        .filter_map(|s| {
            s.problem.as_ref().map(|problem| {
                format!(
                    "{:?}: {} {:?} by {:?} (expected {:?}): {problem}",
                    s.path, s.row, s.op, s.actor, s.expected
                )
            })
        })
        .collect();
    assert!(
        problems.is_empty(),
        "{} of {} cells disagree with the rules:\n{}",
        problems.len(),
        seen.len(),
        problems.join("\n")
    );
}
