//! `AddSiteUser` (issue 17, the vendor's "Add New User"): the person (found or invited, I1),
//! the SITE_USER role (C6), tool levels and a support level in one call, all or nothing,
//! with a welcome e-mail in the person's language (N1) listing the site and the rights
//! granted, delivered to a real SMTP server. A bad level, a caller without the authority
//! for one of the rights (T4, T6, U4), or a person who is already a site user leaves no
//! role, no grant, no account and no invitation behind.

use crate::gateway::helpers::*;
use kc_proto::access::{self as apb, SupportLevel};
use kc_proto::contacts as cpb;
use kc_proto::gateway::{self as gw};
use kc_proto::identity as ipb;
use tonic::Code;

const WELCOME: &str = "NOTICE_KIND_SITE_USER_WELCOME";

/// A refused `AddSiteUser`: the caller, the tool levels and support level it tries to grant,
/// the code of the refusal and the rule it cites, if any.
type Refusal<'a> = (
    &'a Person,
    Option<apb::ToolAccess>,
    i32,
    Code,
    Option<&'static str>,
);

/// An `AddSiteUser` of `email` with `levels` and `support`.
fn request(
    site_id: &str,
    email: &str,
    levels: Option<apb::ToolAccess>,
    support: i32,
) -> gw::AddSiteUserRequest {
    gw::AddSiteUserRequest {
        site_id: site_id.into(),
        email: email.into(),
        display_name: Some("Nouvel Utilisateur".into()),
        locale: String::new(),
        details: Some(cpb::ContactDetails {
            phone: "+33472000002".into(),
            job_title: "Acheteuse".into(),
            ..Default::default()
        }),
        tools: levels,
        support_level: support,
        reason: "rejoint l'équipe achats".into(),
    }
}

/// `by` calls `AddSiteUser`.
async fn add_site_user(
    suite: &Suite,
    by: &Person,
    request: gw::AddSiteUserRequest,
) -> Result<gw::AddSiteUserResponse, tonic::Status> {
    suite
        .gw()
        .add_site_user(authed(Some(&by.token), request))
        .await
        .map(tonic::Response::into_inner)
}

/// Software DOWNLOADS_ONLY and reporting VIEW.
fn downloads_and_reports() -> apb::ToolAccess {
    tools(|t| {
        t.software = apb::SoftwareAccess::DownloadsOnly as i32;
        t.reporting = apb::ReportingAccess::View as i32;
    })
}

/// Whether identity has an account for `email` (proven or invited).
async fn has_account(suite: &Suite, email: &str) -> bool {
    let found = suite
        .identity()
        .lookup_user(suite.op(ipb::LookupUserRequest {
            email: email.into(),
        }))
        .await;
    match found {
        Ok(_) => true,
        Err(status) if status.code() == Code::NotFound => false,
        Err(status) => panic!("look {email} up: {status:?}"),
    }
}

// rules C6, I1, N1: a proven French person becomes a SITE_USER with its tool and support
// levels in one call, and gets one welcome in French listing the site and its rights; an
// unknown address is invited and welcomed in its language, its rights counting once proven.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_user_is_added_with_its_rights_and_welcomed_in_its_language() {
    let suite = Suite::start().await;
    let primary = suite.person("Add Primary").await;
    // Without S&S the site has no STC: the primary stands in for it (R1, U5) and holds
    // every right AddSiteUser grants.
    let site = suite.create_site("Site Lyon", &primary, None).await;
    let id = site.site_id.clone();
    suite.wait_role(&id, &primary.id, Role::Primary).await;
    let jeanne = suite.person_in("Jeanne Martin", "fr").await;

    let added = add_site_user(
        &suite,
        &primary,
        request(
            &id,
            &jeanne.email,
            Some(downloads_and_reports()),
            SupportLevel::Full as i32,
        ),
    )
    .await
    .expect("the primary adds a site user");
    assert!(!added.user_invited, "{added:?}");
    assert!(!added.revision.is_empty());
    let contact = added.contact.expect("contact");
    assert_eq!(contact.role, Role::SiteUser as i32);
    assert_eq!(contact.user_id, jeanne.id);
    let profile = added.profile.expect("profile");
    let explicit = profile.explicit.expect("explicit");
    assert_eq!(explicit.software, apb::SoftwareAccess::DownloadsOnly as i32);
    assert_eq!(explicit.reporting, apb::ReportingAccess::View as i32);
    assert_eq!(profile.support_level, SupportLevel::Full as i32);
    let roles = suite.contact_roles(&id).await;
    assert!(
        roles.contains(&(jeanne.id.clone(), vec![Role::SiteUser as i32])),
        "{roles:?}"
    );

    let welcome = suite.mail(&jeanne.email, WELCOME, 1).await;
    assert_eq!(welcome.content_language, "fr", "rule N1: {welcome:?}");
    assert!(welcome.subject.contains("Bienvenue"), "{}", welcome.subject);
    let text = welcome.text.clone().expect("a text part");
    for expected in [
        "Site Lyon",
        site.site_number.as_str(),
        "Vos droits sur le site",
        "Logiciels et services\u{a0}: téléchargements seulement",
        "Rapports\u{a0}: consultation",
        "Support\u{a0}: complet",
        "rejoint l'équipe achats",
    ] {
        assert!(text.contains(expected), "{expected:?} in {text}");
    }

    // An address nobody has: invited (I1), welcomed in the language given, rights waiting.
    let newcomer = fresh_email("newbuyer");
    let mut english = request(&id, &newcomer, None, SupportLevel::Basic as i32);
    english.display_name = Some("New Buyer".into());
    english.locale = "en".into();
    let added = add_site_user(&suite, &primary, english)
        .await
        .expect("the primary adds an unknown address");
    assert!(added.user_invited, "{added:?}");
    let profile = added.profile.expect("profile");
    assert_eq!(profile.explicit_support_level, SupportLevel::Basic as i32);
    assert_eq!(
        profile.support_level,
        SupportLevel::NoAccess as i32,
        "rule I1: nothing counts before the proof"
    );
    suite.mail(&newcomer, "NOTICE_KIND_INVITATION", 1).await;
    assert!(
        has_account(&suite, &newcomer).await,
        "the invitee's account"
    );
    let welcome = suite.mail(&newcomer, WELCOME, 1).await;
    assert_eq!(welcome.content_language, "en", "rule N1: {welcome:?}");
    let text = welcome.text.clone().expect("a text part");
    assert!(text.contains("Support: basic"), "{text}");
    assert!(text.contains("register with this e-mail address"), "{text}");
    assert_eq!(suite.mails(&jeanne.email, WELCOME).len(), 1, "one welcome");
}

// All or nothing: a bad support level, a bad tool level or a person who already is a site
// user is refused before any write: no role, no grant, no account, no invitation, no welcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_add_leaves_nothing_behind() {
    let suite = Suite::start().await;
    let primary = suite.person("Atomic Primary").await;
    let site = suite.create_site("Atomic Site", &primary, None).await;
    let id = site.site_id.clone();
    suite.wait_role(&id, &primary.id, Role::Primary).await;
    let existing = suite.person("Existing Person").await;
    let before = suite.contact_roles(&id).await;

    let unknown = fresh_email("badlevel");
    for (email, levels, support, field) in [
        (unknown.as_str(), None, 99, "support_level"),
        (existing.email.as_str(), None, 99, "support_level"),
        (
            unknown.as_str(),
            Some(tools(|t| t.software = 42)),
            SupportLevel::Basic as i32,
            "tools.software",
        ),
    ] {
        let refused = add_site_user(&suite, &primary, request(&id, email, levels, support)).await;
        expect_field(refused, field);
    }
    assert!(
        !has_account(&suite, &unknown).await,
        "nobody was invited: identity has no account for the address"
    );
    assert_eq!(suite.contact_roles(&id).await, before, "no role");
    let profile = suite.profile(&id, &existing.id).await.expect("profile");
    assert!(profile.update_time.is_none(), "no grant: {profile:?}");

    // A person who already is a site user is refused by the registry before any grant.
    add_site_user(&suite, &primary, request(&id, &existing.email, None, 0))
        .await
        .expect("added once");
    suite.mail(&existing.email, WELCOME, 1).await;
    let again = add_site_user(
        &suite,
        &primary,
        request(
            &id,
            &existing.email,
            Some(downloads_and_reports()),
            SupportLevel::Full as i32,
        ),
    )
    .await;
    expect_code(again, Code::AlreadyExists);
    let profile = suite.profile(&id, &existing.id).await.expect("profile");
    assert!(profile.update_time.is_none(), "no grant: {profile:?}");
    assert_eq!(
        suite.mails(&existing.email, WELCOME).len(),
        1,
        "one welcome"
    );
}

// rules T4, T6, U4: a caller without the authority to grant one of the rights is refused and
// nothing is written, whatever else it may grant: a secondary contact (manage access and
// contact updates UPDATE, no support administration, no account management, no software),
// a user with only contact updates UPDATE, and a user with nothing on the site.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_without_authority_for_one_right_is_refused_and_nothing_is_written() {
    let suite = Suite::start().await;
    let primary = suite.person("Authority Primary").await;
    let stc = suite.person("Authority Stc").await;
    let site = suite
        .create_site("Authority Site", &primary, Some(&stc))
        .await;
    let id = site.site_id.clone();
    suite.wait_role(&id, &stc.id, Role::SiteTechnical).await;
    let secondary = suite.person("Authority Secondary").await;
    suite.assign(&id, &secondary, Role::Secondary).await;
    suite.wait_role(&id, &secondary.id, Role::Secondary).await;
    let editor = suite.person("Authority Editor").await;
    suite.assign(&id, &editor, Role::SiteUser).await;
    let granted = tools(|t| t.contact_updates = apb::ContactUpdatesAccess::Update as i32);
    suite.grant(&id, &editor.id, granted).await;
    let stranger = suite.person("Authority Stranger").await;
    let target = suite.person("Authority Target").await;
    let before = suite.contact_roles(&id).await;

    let reporting = Some(tools(|t| t.reporting = apb::ReportingAccess::View as i32));
    let cases: [Refusal<'_>; 6] = [
        // rule U4: support levels are the STC's and support ADMINISTRATORs' to give.
        (
            &secondary,
            None,
            SupportLevel::Basic as i32,
            Code::PermissionDenied,
            None,
        ),
        // rule T4: only holders of account management grant it.
        (
            &secondary,
            Some(tools(|t| {
                t.account_management = apb::AccountManagementAccess::Granted as i32
            })),
            0,
            Code::FailedPrecondition,
            Some("T4"),
        ),
        // rule T4: nobody grants a tool above its own level.
        (
            &secondary,
            Some(tools(|t| t.software = apb::SoftwareAccess::Full as i32)),
            0,
            Code::FailedPrecondition,
            Some("T4"),
        ),
        // rule T4: granting tools needs manage access UPDATE.
        (&editor, reporting, 0, Code::PermissionDenied, None),
        (&stranger, None, 0, Code::PermissionDenied, None),
        // The STC administers support but names no contact (C6 needs contact updates).
        (
            &stc,
            None,
            SupportLevel::Basic as i32,
            Code::PermissionDenied,
            None,
        ),
    ];
    for (by, levels, support, code, rule) in cases {
        for email in [fresh_email("notadded"), target.email.clone()] {
            let refused = expect_code(
                add_site_user(&suite, by, request(&id, &email, levels, support)).await,
                code,
            );
            if let Some(rule) = rule {
                assert!(cites(refused.message(), rule), "{refused:?}");
            }
            if email != target.email {
                assert!(!has_account(&suite, &email).await, "nobody was invited");
            }
        }
    }
    assert_eq!(suite.contact_roles(&id).await, before, "no role was given");
    let profile = suite.profile(&id, &target.id).await.expect("profile");
    assert!(profile.update_time.is_none(), "no grant: {profile:?}");
    assert!(suite.mails(&target.email, WELCOME).is_empty());

    // What the secondary may grant, it grants: manage access UPDATE is its own level.
    let own = Some(tools(|t| {
        t.manage_access = apb::ManageAccess::Update as i32
    }));
    add_site_user(&suite, &secondary, request(&id, &target.email, own, 0))
        .await
        .expect("the secondary adds a site user with what it may grant");
    suite.mail(&target.email, WELCOME, 1).await;
}
