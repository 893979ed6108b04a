//! Rule T8 under races, through the gateway (issue 14): a write commits only on authority
//! that still holds when it commits. People write through the gateway as fast as they can
//! while the primary takes away the right their writes need; once the gateway answered the
//! revocation, none of their writes commits any more, and every write that was answered as
//! done is there.
//!
//! What is observed, without timings: the site's contacts and the registry's audit records
//! of the writer (L1: never updated nor deleted), read once the revocation is answered and
//! again when every writer has stopped; and for each write whether it was sent after the
//! revocation was answered.
//!
//! Ten concurrent transfers of the primary by one primary (C8) are in transfer_race.rs.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::gateway::helpers::*;
use kc_proto::access::{self as apb};
use kc_proto::gateway::{self as gw};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tonic::{Code, Status};

/// Where the writers and the revocation stand.
struct Race {
    /// Writes answered as done, by every writer.
    successes: AtomicUsize,
    /// Successes after which the primary revokes.
    threshold: usize,
    /// Set just before the revocation is sent.
    revoking: AtomicBool,
    /// Set once the revocation is answered.
    revoked: AtomicBool,
    /// Told when `threshold` writes succeeded, or when a writer stopped.
    go: Notify,
}

/// What one writer saw.
#[derive(Debug, Default)]
struct Log {
    /// Writes answered as done.
    successes: usize,
    /// Of those, writes sent after the revocation was answered (T8 forbids them).
    late: usize,
    /// A refusal answered before the revocation was even sent.
    premature: Option<Status>,
    /// The refusal that stopped the writer; `None` when it stopped on a late success.
    end: Option<Status>,
}

impl Race {
    fn new(threshold: usize) -> Arc<Self> {
        Arc::new(Self {
            successes: AtomicUsize::new(0),
            threshold,
            revoking: AtomicBool::new(false),
            revoked: AtomicBool::new(false),
            go: Notify::new(),
        })
    }

    /// Makes one write of a writer and records it in `log`: its answer, or `None` when the
    /// writer stops (refused, or a write sent after the revocation was answered succeeded).
    async fn write<T>(
        &self,
        log: &mut Log,
        write: impl Future<Output = Result<T, Status>>,
    ) -> Option<T> {
        let after_revocation = self.revoked.load(Ordering::SeqCst);
        match write.await {
            Ok(value) => {
                log.successes += 1;
                if self.successes.fetch_add(1, Ordering::SeqCst) + 1 == self.threshold {
                    self.go.notify_one();
                }
                if after_revocation {
                    log.late += 1;
                    return None;
                }
                Some(value)
            }
            Err(status) => {
                if !self.revoking.load(Ordering::SeqCst) {
                    log.premature = Some(status.clone());
                }
                log.end = Some(status);
                self.go.notify_one();
                None
            }
        }
    }

    /// Waits for the writers to have made `threshold` writes (or for one to stop), then
    /// runs `revoke`, marking when it is sent and when it is answered.
    async fn revoke_when_ready<T>(&self, revoke: impl Future<Output = Result<T, Status>>) {
        self.go.notified().await;
        self.revoking.store(true, Ordering::SeqCst);
        revoke.await.expect("the primary revokes");
        self.revoked.store(true, Ordering::SeqCst);
    }
}

/// Asserts what T8 asks of the writers' logs: each stopped on PERMISSION_DENIED, none was
/// refused before the revocation was sent, none succeeded after it was answered; returns
/// the writes answered as done, at least one.
#[track_caller]
fn checked(logs: &[Log]) -> usize {
    for (n, log) in logs.iter().enumerate() {
        assert!(
            log.premature.is_none(),
            "writer {n} was refused before the revocation: {log:?}"
        );
        assert_eq!(
            log.late, 0,
            "rule T8: writer {n} wrote after the revocation was answered: {log:?}"
        );
        let end = log.end.as_ref().expect("every writer stops on a refusal");
        assert_eq!(
            end.code(),
            Code::PermissionDenied,
            "writer {n} stops for lack of authority: {end:?}"
        );
    }
    let successes = logs.iter().map(|log| log.successes).sum();
    assert!(successes > 0, "some writes succeeded before the revocation");
    let at_commit = logs
        .iter()
        .filter_map(|log| log.end.as_ref())
        .filter(|end| end.message().contains("when the change commits"))
        .count();
    eprintln!(
        "{} writers stopped: {at_commit} by the registry at commit, the others by the gateway's check",
        logs.len()
    );
    successes
}

/// Every contact of the site (one per person and role), as the operator reads them (C7).
async fn contacts(suite: &Suite, site_id: &str, roles: &[Role]) -> Vec<gw::ContactView> {
    let mut all = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = suite
            .gw()
            .show_all_contacts(authed(
                Some(&suite.operator.token),
                gw::ShowAllContactsRequest {
                    site_id: site_id.into(),
                    roles: roles.iter().map(|role| *role as i32).collect(),
                    page_size: 1000,
                    page_token,
                },
            ))
            .await
            .expect("the operator reads the contacts")
            .into_inner();
        all.extend(page.contacts);
        if page.next_page_token.is_empty() {
            return all;
        }
        page_token = page.next_page_token;
    }
}

/// How many contacts the site has.
async fn contact_count(suite: &Suite, site_id: &str) -> usize {
    contacts(suite, site_id, &[])
        .await
        .iter()
        .map(|view| view.contacts.len())
        .sum()
}

/// How many changes the contact registry recorded on the site with `actor` responsible (L1).
async fn registry_changes_by(suite: &Suite, site_id: &str, actor: &Person) -> usize {
    let mut count = 0;
    let mut page_token = String::new();
    loop {
        let page = suite
            .gw()
            .list_site_audit(authed(
                Some(&suite.operator.token),
                gw::ListSiteAuditRequest {
                    site_id: site_id.into(),
                    page_size: 1000,
                    page_token,
                },
            ))
            .await
            .expect("the operator reads the audit")
            .into_inner();
        count += page
            .entries
            .iter()
            .filter(|entry| {
                entry.source == gw::AuditSource::Contacts as i32 && entry.actor_id == actor.id
            })
            .count();
        if page.next_page_token.is_empty() {
            return count;
        }
        page_token = page.next_page_token;
    }
}

/// `by` gives a new, invited person `role` on the site through the gateway (rule I1).
async fn assign_invited(
    suite: &Suite,
    by: &Person,
    site_id: &str,
    role: Role,
) -> Result<gw::AssignContactResponse, Status> {
    suite
        .assign_email_as(by, site_id, &fresh_email("raced"), "Raced Person", role)
        .await
}

/// `by` sets explicit tool levels of `user` on the site through the gateway.
async fn set_tools(
    suite: &Suite,
    by: &Person,
    site_id: &str,
    user: &Person,
    tools: apb::ToolAccess,
) -> Result<gw::SetToolAccessResponse, Status> {
    suite
        .set_tools_as(
            by,
            site_id,
            &user.id,
            tools,
            "no longer helps with the contacts",
        )
        .await
}

/// Writers racing the revocation of contact updates: each assigns fresh people as SITE_USER.
const ASSIGNERS: usize = 20;
/// Assignments before the primary revokes.
const ASSIGNMENTS_BEFORE_REVOCATION: usize = 20;

// rule T8: 20 concurrent role assignments by a user whose contact updates UPDATE is being
// revoked by the primary: none commits after the revocation was answered (the site's
// contacts then and at the end are the same), every assigner ends refused, and every
// assignment answered as done is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_assignment_commits_after_the_revocation_of_contact_updates() {
    let suite = Suite::start().await;
    let primary = suite.person("Race Primary").await;
    let editor = suite.person("Race Editor").await;
    let site = suite.create_site("Race Site", &primary, None).await;
    let site_id = site.site_id;
    suite.wait_role(&site_id, &primary.id, Role::Primary).await;
    let granted = tools(|t| t.contact_updates = apb::ContactUpdatesAccess::Update as i32);
    suite.grant(&site_id, &editor.id, granted).await;
    let n0 = contact_count(&suite, &site_id).await;
    let audited0 = registry_changes_by(&suite, &site_id, &editor).await;

    let race = Race::new(ASSIGNMENTS_BEFORE_REVOCATION);
    let mut writers = JoinSet::new();
    let suite = Arc::new(suite);
    for _ in 0..ASSIGNERS {
        let (suite, race, editor, site_id) = (
            Arc::clone(&suite),
            Arc::clone(&race),
            editor.clone(),
            site_id.clone(),
        );
        writers.spawn(async move {
            let mut log = Log::default();
            while race
                .write(
                    &mut log,
                    assign_invited(&suite, &editor, &site_id, Role::SiteUser),
                )
                .await
                .is_some()
            {}
            log
        });
    }
    race.revoke_when_ready(suite.gw().revoke_access(authed(
        Some(&primary.token),
        gw::RevokeAccessRequest {
            site_id: site_id.clone(),
            user_id: editor.id.clone(),
            reason: "no longer helps with the contacts".into(),
            etag: String::new(),
        },
    )))
    .await;
    let n1 = contact_count(&suite, &site_id).await;
    let audited1 = registry_changes_by(&suite, &site_id, &editor).await;

    let logs: Vec<Log> = writers.join_all().await;
    let n2 = contact_count(&suite, &site_id).await;
    let audited2 = registry_changes_by(&suite, &site_id, &editor).await;
    let successes = checked(&logs);
    eprintln!(
        "assignments answered as done: {successes}; contacts before {n0}, when the revocation was answered {n1}, at the end {n2}"
    );
    assert_eq!(
        n1, n2,
        "rule T8: no assignment commits after the revocation was answered"
    );
    assert_eq!(
        audited1, audited2,
        "rule T8: the registry recorded no change by the editor after the revocation"
    );
    assert_eq!(
        n2 - n0,
        successes,
        "every assignment answered as done is there, and no other"
    );
    assert_eq!(audited2 - audited0, successes);
}

/// Writers racing the revocation of manage access: at most 4 SECONDARY contacts (C6), so
/// each writer holds at most one at a time.
const NAMERS: usize = 4;
/// Rights-implying writes before the primary revokes.
const NAMINGS_BEFORE_REVOCATION: usize = 8;

// rule T8 (with T6): a write that implies rights, racing the revocation of the right it
// needs, commits before the revocation or fails. A user holding manage access and contact
// updates UPDATE names SECONDARY contacts (T3: they imply manage access UPDATE) and takes
// each away again, while the primary lowers its manage access to NONE: every naming and
// removal answered as done is in the site's contacts and the registry's audit when the
// revocation is answered, and nothing after.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rights_implying_write_commits_before_the_revocation_of_its_right_or_fails() {
    let suite = Suite::start().await;
    let primary = suite.person("Naming Primary").await;
    let manager = suite.person("Naming Manager").await;
    let site = suite.create_site("Naming Site", &primary, None).await;
    let site_id = site.site_id;
    suite.wait_role(&site_id, &primary.id, Role::Primary).await;
    suite
        .grant(
            &site_id,
            &manager.id,
            tools(|t| {
                t.manage_access = apb::ManageAccess::Update as i32;
                t.contact_updates = apb::ContactUpdatesAccess::Update as i32;
            }),
        )
        .await;
    let audited0 = registry_changes_by(&suite, &site_id, &manager).await;

    let race = Race::new(NAMINGS_BEFORE_REVOCATION);
    let mut writers = JoinSet::new();
    let suite = Arc::new(suite);
    for _ in 0..NAMERS {
        let (suite, race, manager, site_id) = (
            Arc::clone(&suite),
            Arc::clone(&race),
            manager.clone(),
            site_id.clone(),
        );
        writers.spawn(async move {
            let mut log = Log::default();
            // The e-mail of the secondary this writer named and did not take away again.
            let mut holds: Option<String> = None;
            loop {
                let Some(named) = race
                    .write(
                        &mut log,
                        assign_invited(&suite, &manager, &site_id, Role::Secondary),
                    )
                    .await
                else {
                    break;
                };
                let user = named.user.expect("the named user");
                let contact = named.contact.expect("the new contact");
                holds = Some(user.email);
                let removal = suite.remove_as(&manager, &site_id, &contact.contact_id);
                if race.write(&mut log, removal).await.is_none() {
                    break;
                }
                holds = None;
            }
            (log, holds)
        });
    }
    race.revoke_when_ready(set_tools(
        &suite,
        &primary,
        &site_id,
        &manager,
        tools(|t| t.manage_access = apb::ManageAccess::None as i32),
    ))
    .await;
    let secondaries = |views: Vec<gw::ContactView>| {
        let mut emails: Vec<String> = views.into_iter().map(|view| view.email).collect();
        emails.sort();
        emails
    };
    let s1 = secondaries(contacts(&suite, &site_id, &[Role::Secondary]).await);
    let audited1 = registry_changes_by(&suite, &site_id, &manager).await;

    let ended: Vec<(Log, Option<String>)> = writers.join_all().await;
    let s2 = secondaries(contacts(&suite, &site_id, &[Role::Secondary]).await);
    let audited2 = registry_changes_by(&suite, &site_id, &manager).await;
    let mut still_held: Vec<String> = ended.iter().filter_map(|(_, held)| held.clone()).collect();
    still_held.sort();
    let logs: Vec<Log> = ended.into_iter().map(|(log, _)| log).collect();
    let successes = checked(&logs);
    eprintln!(
        "namings and removals answered as done: {successes}; secondaries when the revocation was answered {s1:?}, at the end {s2:?}"
    );
    assert_eq!(
        s1, s2,
        "rule T8: no naming or removal commits after the revocation was answered"
    );
    assert_eq!(
        audited1, audited2,
        "rule T8: the registry recorded no change by the manager after the revocation"
    );
    assert_eq!(
        s2, still_held,
        "the secondaries are exactly those named and not taken away, as answered"
    );
    assert_eq!(
        audited2 - audited0,
        successes,
        "every write answered as done is recorded, and no other"
    );
    // The manager keeps contact updates UPDATE: what refuses it is the manage access a
    // SECONDARY implies (T6).
    let profile = suite
        .profile(&site_id, &manager.id)
        .await
        .expect("the manager's profile");
    assert_eq!(
        profile.explicit.map(|t| t.contact_updates),
        Some(apb::ContactUpdatesAccess::Update as i32)
    );
}
