//! No escalation (T4), through the gRPC API with the real registry and identity: grantors
//! holding each level of manage access and each level of a tool, and what they may and may
//! not grant; account management; the primary's implied rights; the STC's level (U6); and
//! disabled users, who hold nothing.

use crate::access::helpers::*;
use tonic::Code;
use uuid::Uuid;

/// What a row expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// The change is made.
    Granted,
    /// Refused citing T4, with this fragment in the message.
    Refused(&'static str),
}

use Expect::{Granted, Refused};

/// Without manage access UPDATE.
const NEEDS_UPDATE: Expect = Refused("manage access UPDATE");
/// Above the grantor's own level (giving or taking away).
const ABOVE_OWN: Expect = Refused("own");
/// Account management by a non-holder.
const ONLY_AM: Expect = Refused("account management");

/// One row: the grantor's manage access and own level, the target's level before and the
/// level the grantor sets, and what is expected.
type Row = (Ma, Level, Level, Level, Expect);

/// Sets up a grantor with `manage` and `own`, a target with `from`, and has the grantor set
/// the target's tool to `to`; checks the outcome and what the target holds afterwards.
async fn attempt(
    s: &Suite,
    site_id: &str,
    primary: Uuid,
    (grantor, target): (Uuid, Uuid),
    (manage, own, from, to, expect): Row,
) {
    let what = format!("grantor with manage {manage:?} and {own:?}: {from:?} -> {to:?}");
    // The primary (top of every tool, T3) sets both up; `own` wins over `manage` when it is
    // a level of manage access itself.
    let grantor_tools = own.on(Level::ManageAccess(manage).on(no_tools()));
    s.set_tools(
        primary,
        site_id,
        grantor,
        grantor_tools,
        "row setup: grantor",
    )
    .await
    .unwrap_or_else(|e| panic!("{what}: set up the grantor: {e:?}"));
    s.set_tools(
        primary,
        site_id,
        target,
        from.on(no_tools()),
        "row setup: target",
    )
    .await
    .unwrap_or_else(|e| panic!("{what}: set up the target: {e:?}"));

    let result = s
        .set_tools(grantor, site_id, target, to.alone(), "the grantor tries")
        .await;
    let profile = s.profile(site_id, target).await;
    let held = to.read(profile.explicit.as_ref().expect("explicit"));
    match expect {
        Granted => {
            let after = result.unwrap_or_else(|e| panic!("{what}: expected granted, got {e:?}"));
            assert_eq!(
                to.read(after.explicit.as_ref().unwrap()),
                to.number(),
                "{what}"
            );
            assert_eq!(held, to.number(), "{what}: the target holds the new level");
        }
        Refused(fragment) => {
            let status = match result {
                Ok(p) => panic!("{what}: expected refused ({fragment}), got Ok({p:?})"),
                Err(status) => status,
            };
            assert!(
                matches!(
                    status.code(),
                    Code::FailedPrecondition | Code::PermissionDenied
                ),
                "{what}: {status:?}"
            );
            assert!(cites(status.message(), "T4"), "{what}: cite T4: {status:?}");
            assert!(
                status.message().contains(fragment),
                "{what}: expected `{fragment}` in {:?}",
                status.message()
            );
            assert_eq!(held, from.number(), "{what}: nothing changed");
        }
    }
}

// rule T4, table-driven: a grantor needs manage access UPDATE, grants no tool above its own
// effective level (and takes none away above it), and only account-management holders grant
// account management.
#[tokio::test]
async fn escalation_table() {
    use Level as L;
    let s = Suite::start().await;
    let primary = s.user().await;
    let site = s.site(primary).await;

    // (grantor's manage access, grantor's own level of one tool, target's level, the level
    // the grantor sets, expected). A row whose tool is manage access overrides column one.
    #[rustfmt::skip]
    let table: &[(Ma, Level, Level, Level, Expect)] = &[
        // Without manage access UPDATE nothing changes, whatever the tool level.
        (Ma::None, L::Software(Sw::Full), L::Software(Sw::None), L::Software(Sw::DownloadsOnly), NEEDS_UPDATE),
        (Ma::None, L::Reporting(Re::View), L::Reporting(Re::None), L::Reporting(Re::View), NEEDS_UPDATE),
        (Ma::None, L::AccountManagement(Am::Granted), L::AccountManagement(Am::None), L::AccountManagement(Am::Granted), NEEDS_UPDATE),
        (Ma::View, L::Software(Sw::Full), L::Software(Sw::None), L::Software(Sw::DownloadsOnly), NEEDS_UPDATE),
        (Ma::View, L::Entitlements(En::Update), L::Entitlements(En::None), L::Entitlements(En::View), NEEDS_UPDATE),
        (Ma::View, L::ManageAccess(Ma::View), L::ManageAccess(Ma::None), L::ManageAccess(Ma::View), NEEDS_UPDATE),
        (Ma::View, L::Software(Sw::Full), L::Software(Sw::Full), L::Software(Sw::None), NEEDS_UPDATE),
        (Ma::View, L::ContactUpdates(Cu::Update), L::ContactUpdates(Cu::None), L::ContactUpdates(Cu::View), NEEDS_UPDATE),
        // With manage access UPDATE: up to the grantor's own level of each tool.
        (Ma::Update, L::Software(Sw::None), L::Software(Sw::None), L::Software(Sw::DownloadsOnly), ABOVE_OWN),
        (Ma::Update, L::Software(Sw::DownloadsOnly), L::Software(Sw::None), L::Software(Sw::DownloadsOnly), Granted),
        (Ma::Update, L::Software(Sw::DownloadsOnly), L::Software(Sw::None), L::Software(Sw::DownloadsAndMedia), ABOVE_OWN),
        (Ma::Update, L::Software(Sw::DownloadsAndMedia), L::Software(Sw::None), L::Software(Sw::DownloadsAndMedia), Granted),
        (Ma::Update, L::Software(Sw::DownloadsAndMedia), L::Software(Sw::DownloadsOnly), L::Software(Sw::Full), ABOVE_OWN),
        (Ma::Update, L::Software(Sw::Full), L::Software(Sw::None), L::Software(Sw::Full), Granted),
        (Ma::Update, L::Software(Sw::Full), L::Software(Sw::None), L::Software(Sw::DownloadsOnly), Granted),
        (Ma::Update, L::Reporting(Re::None), L::Reporting(Re::None), L::Reporting(Re::View), ABOVE_OWN),
        (Ma::Update, L::Reporting(Re::View), L::Reporting(Re::None), L::Reporting(Re::View), Granted),
        (Ma::Update, L::Entitlements(En::View), L::Entitlements(En::None), L::Entitlements(En::View), Granted),
        (Ma::Update, L::Entitlements(En::View), L::Entitlements(En::None), L::Entitlements(En::Update), ABOVE_OWN),
        (Ma::Update, L::Entitlements(En::Update), L::Entitlements(En::View), L::Entitlements(En::Update), Granted),
        (Ma::Update, L::ContactUpdates(Cu::View), L::ContactUpdates(Cu::None), L::ContactUpdates(Cu::Update), ABOVE_OWN),
        (Ma::Update, L::ContactUpdates(Cu::Update), L::ContactUpdates(Cu::None), L::ContactUpdates(Cu::Update), Granted),
        (Ma::Update, L::AccountDocuments(Docs::None), L::AccountDocuments(Docs::None), L::AccountDocuments(Docs::View), ABOVE_OWN),
        (Ma::Update, L::AccountDocuments(Docs::View), L::AccountDocuments(Docs::None), L::AccountDocuments(Docs::View), Granted),
        // Manage access itself: an UPDATE holder passes on VIEW or UPDATE.
        (Ma::Update, L::ManageAccess(Ma::Update), L::ManageAccess(Ma::None), L::ManageAccess(Ma::View), Granted),
        (Ma::Update, L::ManageAccess(Ma::Update), L::ManageAccess(Ma::View), L::ManageAccess(Ma::Update), Granted),
        // Nor can it take away a level above its own (it could not give it).
        (Ma::Update, L::Software(Sw::DownloadsOnly), L::Software(Sw::Full), L::Software(Sw::None), ABOVE_OWN),
        (Ma::Update, L::Software(Sw::DownloadsOnly), L::Software(Sw::Full), L::Software(Sw::DownloadsOnly), ABOVE_OWN),
        (Ma::Update, L::Software(Sw::Full), L::Software(Sw::Full), L::Software(Sw::None), Granted),
        (Ma::Update, L::Entitlements(En::View), L::Entitlements(En::Update), L::Entitlements(En::View), ABOVE_OWN),
        // Only holders of account management grant (or take away) account management.
        (Ma::Update, L::AccountManagement(Am::None), L::AccountManagement(Am::None), L::AccountManagement(Am::Granted), ONLY_AM),
        (Ma::Update, L::AccountManagement(Am::None), L::AccountManagement(Am::Granted), L::AccountManagement(Am::None), ONLY_AM),
        (Ma::Update, L::AccountManagement(Am::Granted), L::AccountManagement(Am::None), L::AccountManagement(Am::Granted), Granted),
        (Ma::Update, L::AccountManagement(Am::Granted), L::AccountManagement(Am::Granted), L::AccountManagement(Am::None), Granted),
    ];
    for &row in table {
        let people = (s.user().await, s.user().await);
        attempt(&s, &site.site_id, primary, people, row).await;
    }
}

// rule T4, exhaustively: for every tool, every level of manage access and every own level
// of the grantor, granting each level from NONE and taking the top level away is allowed
// exactly when the grantor holds manage access UPDATE and both levels are within its own.
#[tokio::test]
async fn escalation_sweep_every_tool_and_level() {
    let s = Suite::start().await;
    let primary = s.user().await;
    let site = s.site(primary).await;
    let mut rows = 0;
    for tool in TOOLS {
        for manage in [Ma::None, Ma::View, Ma::Update] {
            for own in tool.levels_of_tool() {
                // For manage access itself, its own level is the manage level.
                if matches!(tool, Level::ManageAccess(_)) && own != Level::ManageAccess(manage) {
                    continue;
                }
                let (grantor, target) = (s.user().await, s.user().await);
                let mut changes: Vec<(Level, Level)> = tool
                    .levels_of_tool()
                    .into_iter()
                    .skip(1)
                    .map(|to| (tool.none(), to))
                    .collect();
                changes.push((tool.top(), tool.none()));
                for (from, to) in changes {
                    let allowed = manage == Ma::Update
                        && own.rank() >= to.rank()
                        && own.rank() >= from.rank();
                    let expect = if allowed {
                        Granted
                    } else if manage != Ma::Update {
                        NEEDS_UPDATE
                    } else if matches!(tool, Level::AccountManagement(_)) {
                        ONLY_AM
                    } else {
                        ABOVE_OWN
                    };
                    let row = (manage, own, from, to, expect);
                    attempt(&s, &site.site_id, primary, (grantor, target), row).await;
                    rows += 1;
                }
            }
        }
    }
    assert_eq!(rows, 147, "every combination was tried");
}

// rule T4: only holders of account management grant account management, even when they hold
// manage access UPDATE by a role (the administrative contact with the C3 switch on).
#[tokio::test]
async fn only_account_management_holders_grant_account_management() {
    let s = Suite::start().await;
    let [primary, admin, holder, target] = s.users(4).await.try_into().unwrap();
    let site = s.site(primary).await;
    s.assign(&site.site_id, admin, Role::Administrative).await;
    s.set_admin_switch(&site.site_id, true).await;
    s.wait_check(admin, &site.site_id, P::AccessUpdate, true)
        .await;

    // The administrative contact may pass on what it holds (account documents VIEW) ...
    let given = Level::AccountDocuments(Docs::View).alone();
    s.grant(admin, &site, target, given, "reads our documents")
        .await;
    // ... but not account management, which it does not hold.
    let status = expect_refused(
        s.set_tools(
            admin,
            &site.site_id,
            target,
            Level::AccountManagement(Am::Granted).alone(),
            "help me manage",
        )
        .await,
        "T4",
    );
    assert!(
        status.message().contains("account management"),
        "{status:?}"
    );
    assert!(!s.allows(target, &site, P::AccountManagement).await);

    // The primary (implied holder, T2) makes `holder` one, who may then pass it on.
    let given = only(&[
        Level::ManageAccess(Ma::Update),
        Level::AccountManagement(Am::Granted),
    ]);
    s.grant(primary, &site, holder, given, "deputy").await;
    let given = Level::AccountManagement(Am::Granted).alone();
    s.grant(holder, &site, target, given, "second deputy").await;
    let decision = s.check(target, &site.site_id, P::AccountManagement).await;
    assert!(decision.allowed);
    assert_eq!(
        decision.reason,
        "explicit grant: account management GRANTED >= GRANTED"
    );
    // The admin cannot take it away either.
    expect_refused(
        s.set_tools(
            admin,
            &site.site_id,
            target,
            Level::AccountManagement(Am::None).alone(),
            "no",
        )
        .await,
        "T4",
    );
    expect_refused(s.revoke(admin, &site.site_id, target, "no").await, "T4");
    assert!(s.allows(target, &site, P::AccountManagement).await);
    // The holder can.
    let given = Level::AccountManagement(Am::None).alone();
    s.grant(holder, &site, target, given, "one deputy is enough")
        .await;
    assert!(!s.allows(target, &site, P::AccountManagement).await);
}

// rule T4: nobody edits the primary contact's implied rights, not even the primary itself
// nor a grantor holding every tool at the top.
#[tokio::test]
async fn nobody_edits_the_primarys_implied_rights() {
    let s = Suite::start().await;
    let [primary, deputy] = s.users(2).await.try_into().unwrap();
    let site = s.site(primary).await;
    s.set_tools(primary, &site.site_id, deputy, top_tools(), "full deputy")
        .await
        .expect("deputy with every tool at the top");
    s.grant_support(primary, &site, deputy, Su::Administrator, "full deputy")
        .await;
    let before = s.profile(&site.site_id, primary).await;

    for grantor in [deputy, primary] {
        expect_refused(
            s.set_tools(grantor, &site.site_id, primary, no_tools(), "demote")
                .await,
            "T4",
        );
        expect_refused(
            s.set_tools(
                grantor,
                &site.site_id,
                primary,
                Level::Software(Sw::DownloadsOnly).alone(),
                "demote",
            )
            .await,
            "T4",
        );
        // rule R1: on a site without STC the primary's support level is implied too.
        expect_refused(
            s.set_support(grantor, &site.site_id, primary, Su::Basic, "demote")
                .await,
            "T4",
        );
        // Revoking removes explicit grants only: the primary has none, its implied rights stay.
        let _ = s.revoke(grantor, &site.site_id, primary, "demote").await;
    }
    let after = s.profile(&site.site_id, primary).await;
    assert_eq!(after.effective, Some(top_tools()));
    assert_eq!(after.effective, before.effective);
    assert_eq!(after.support_level, Su::Administrator as i32);
    assert_eq!(roles(&after), [Role::Primary]);
    let all = s.check_all(primary, &site.site_id).await;
    assert!(all.iter().all(|c| c.allowed), "{all:?}");
}

// rule U6: a support administrator cannot change the STC's level; nor can the primary
// (not a support administrator while the site has an STC, U4), nor the STC itself.
#[tokio::test]
async fn a_support_administrator_cannot_change_the_stc() {
    let s = Suite::start().await;
    let [primary, stc, support_admin, user] = s.users(4).await.try_into().unwrap();
    let site = s.supported_site(primary, stc).await;
    s.grant_support(stc, &site, support_admin, Su::Administrator, "backup")
        .await;
    s.set_support(support_admin, &site.site_id, user, Su::Full, "cases")
        .await
        .expect("a support administrator sets levels (U4)");

    for level in [Su::NoAccess, Su::Basic, Su::Full, Su::Administrator] {
        let status = expect_refused(
            s.set_support(support_admin, &site.site_id, stc, level, "demote the STC")
                .await,
            "U6",
        );
        assert!(!status.message().is_empty());
    }
    expect_refused(
        s.set_support(stc, &site.site_id, stc, Su::Basic, "myself")
            .await,
        "U6",
    );
    expect_refused(
        s.set_support(primary, &site.site_id, stc, Su::Basic, "as primary")
            .await,
        "U4",
    );
    let _ = s
        .revoke(support_admin, &site.site_id, stc, "demote the STC")
        .await;
    let profile = s.profile(&site.site_id, stc).await;
    assert_eq!(profile.support_level, Su::Administrator as i32);
    assert_eq!(roles(&profile), [Role::SiteTechnical]);
    assert!(s.allows(stc, &site, P::ApproveSupportAccess).await);
}

// rules T3, T4, A3: a user disabled in identity (by the operator) is denied every permission on
// every site, roles and grants notwithstanding, grants nothing and approves nothing; enabled
// again, its rights return. Access management learns it from identity's event stream.
#[tokio::test]
async fn a_disabled_user_is_denied_every_permission() {
    let s = Suite::start().await;
    let [primary, disabled, other] = s.users(3).await.try_into().unwrap();
    let site = s.site(primary).await;
    let own_site = s.site(disabled).await;
    s.assign(&site.site_id, disabled, Role::Administrative)
        .await;
    s.sync_registry().await;
    s.set_tools(primary, &site.site_id, disabled, top_tools(), "trusted")
        .await
        .expect("grant");
    s.grant_support(primary, &site, disabled, Su::Administrator, "trusted")
        .await;
    assert!(
        s.check_all(disabled, &site.site_id)
            .await
            .iter()
            .all(|c| c.allowed)
    );
    assert!(
        s.check_all(disabled, &own_site.site_id)
            .await
            .iter()
            .all(|c| c.allowed)
    );
    let request = s
        .submit_tools(other, &own_site, Level::Reporting(Re::View).alone())
        .await
        .expect("a request for the disabled user to decide");

    s.disable(disabled).await;
    for site_id in [&site.site_id, &own_site.site_id] {
        let all = eventually("every permission is denied", || async {
            let all = s.check_all(disabled, site_id).await;
            if all.iter().all(|c| !c.allowed) {
                Ok(all)
            } else {
                Err(format!("{all:?}"))
            }
        })
        .await;
        for (permission, decision) in ALL_PERMISSIONS.iter().zip(&all) {
            assert!(
                decision.reason.contains("disabled"),
                "{permission:?}: {decision:?}"
            );
        }
        let profile = s.profile(site_id, disabled).await;
        assert!(profile.user_disabled);
        assert_eq!(profile.effective, Some(no_tools()));
        assert_eq!(profile.support_level, Su::NoAccess as i32);
        assert!(profile.implied_by.is_empty());
    }
    // The explicit grants are kept (for when it is enabled again).
    let profile = s.profile(&site.site_id, disabled).await;
    assert_eq!(profile.explicit, Some(top_tools()));
    // rule A3: a disabled user is no approver, and decides nothing.
    assert!(
        !s.approver_ids(&own_site.site_id, Kind::SiteAccess)
            .await
            .contains(&disabled)
    );
    assert!(
        !s.approver_ids(&site.site_id, Kind::SiteAccess)
            .await
            .contains(&disabled)
    );
    expect_refused(s.approve_as_asked(disabled, &request).await, "A3");
    // rule T4: and grants nothing.
    expect_refused(
        s.set_tools(
            disabled,
            &own_site.site_id,
            other,
            Level::Reporting(Re::View).alone(),
            "still here",
        )
        .await,
        "T4",
    );
    assert_eq!(
        state(&s.get_request(&request.request_id).await),
        State::Pending
    );

    // Enabled again: rights return.
    s.enable(disabled).await;
    for site_id in [&site.site_id, &own_site.site_id] {
        eventually("every permission is back", || async {
            let all = s.check_all(disabled, site_id).await;
            if all.iter().all(|c| c.allowed) {
                Ok(())
            } else {
                Err(format!("{all:?}"))
            }
        })
        .await;
    }
    assert!(!s.profile(&own_site.site_id, disabled).await.user_disabled);
    // Other users are unaffected throughout.
    assert!(s.allows(primary, &site, P::AccessUpdate).await);
}
