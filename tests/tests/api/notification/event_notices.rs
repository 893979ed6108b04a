//! Who is told of each event: the rows of DOMAIN.md's notification table made from the
//! registry's events (roles assigned, removed or replaced, the primary transferred, C8) and
//! from access management's (requests submitted and decided, rights and domain policies
//! changed), one notice per event, recipient and kind (N3), at the contact's notification
//! e-mail (C9). Every assertion is on what the real SMTP server received, beside the
//! notification's rule and state.

use std::collections::{HashMap, HashSet};

use crate::notification::helpers::{
    self, Kind, Role, State, Suite, TestUser, check_mail, cites, eventually,
};
use kc_proto::contacts::{self as cpb};
use kc_proto::notification as pb;

/// The notices of one site already checked, so that each wait finds a new one.
struct Notices<'a> {
    s: &'a Suite,
    site_id: &'a str,
    seen: HashSet<String>,
}

impl<'a> Notices<'a> {
    fn new(s: &'a Suite, site_id: &'a str) -> Self {
        Self {
            s,
            site_id,
            seen: HashSet::new(),
        }
    }

    /// Waits for the DELIVERED notice of `kind` to `user` on the site that is not seen yet,
    /// checks its message (at the user's login e-mail, in `locale`), marks it seen and
    /// returns it.
    async fn next(&mut self, user: &TestUser, kind: Kind, locale: &str) -> pb::Notification {
        let (s, site_id) = (self.s, self.site_id);
        let notification = eventually(
            &format!("a new {kind:?} to {} is delivered", user.name),
            || {
                let seen = &self.seen;
                async move {
                    let all = s.list(site_id, Some(user.id), State::Unspecified).await;
                    all.iter()
                        .find(|n| {
                            n.kind == kind as i32
                                && n.state == State::Delivered as i32
                                && !seen.contains(&n.notification_id)
                        })
                        .cloned()
                        .ok_or_else(|| format!("{:#?}", helpers::brief(&all)))
                }
            },
        )
        .await;
        self.seen.insert(notification.notification_id.clone());
        let message = s.mail_of(&notification).await;
        check_mail(&notification, &message, &user.email, locale);
        s.assert_language(kind, locale, &message).await;
        notification
    }

    /// Waits for the notices `expected` (recipient, kind, locale) in turn, as [`Self::next`],
    /// and asserts they are exactly the notices made from the first one's event (N3).
    async fn of_one_event<const N: usize>(
        &mut self,
        expected: [(&TestUser, Kind, &str); N],
    ) -> [pb::Notification; N] {
        let mut got = Vec::with_capacity(N);
        for (user, kind, locale) in expected {
            got.push(self.next(user, kind, locale).await);
        }
        let recipients: Vec<(&TestUser, Kind)> = expected
            .iter()
            .map(|(user, kind, _)| (*user, *kind))
            .collect();
        assert_event_notices(self.s, &got[0], &recipients).await;
        got.try_into().expect("one notice per expected recipient")
    }
}

/// Asserts the notices made from `notification`'s source event are exactly `expected`
/// (recipient, kind): one per recipient and kind (N3).
async fn assert_event_notices(
    s: &Suite,
    notification: &pb::Notification,
    expected: &[(&TestUser, Kind)],
) {
    let source = &notification.source_event_id;
    assert!(source.contains(':'), "`<service>:<event id>`: {source:?}");
    let of_event: Vec<pb::Notification> = s
        .list(&notification.site_id, None, State::Unspecified)
        .await
        .into_iter()
        .filter(|n| &n.source_event_id == source)
        .collect();
    let mut got: Vec<(String, i32)> = of_event
        .iter()
        .map(|n| (n.recipient_user_id.clone(), n.kind))
        .collect();
    got.sort();
    let mut want: Vec<(String, i32)> = expected
        .iter()
        .map(|(user, kind)| (user.id.to_string(), *kind as i32))
        .collect();
    want.sort();
    assert_eq!(
        got,
        want,
        "the notices of event {source}: {:#?}",
        helpers::brief(&of_event)
    );
}

// The registry's rows of the notification table: a role assigned or removed → that contact
// and the primary; a holder replaced → both holders and the primary; the primary
// transferred → the old and the new primary (C8). One notice per event, recipient and kind,
// even when the primary is also the contact (N3); the contact's notification e-mail (C9).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn role_changes_tell_the_contact_and_the_primary() {
    let s = Suite::start().await;
    let primary = s.user("fr").await;
    let stc = s.user("en").await;
    let site = s.supported_site(&primary, &stc, "en").await;
    let site_id = site.site_id.as_str();
    let mut notices = Notices::new(&s, site_id);

    // Site created: each initial holder is told of its own role, once.
    notices
        .of_one_event([
            (&primary, Kind::ContactRoleAssigned, "fr"),
            (&stc, Kind::ContactRoleAssigned, "en"),
        ])
        .await;

    // A role assigned: the contact and the primary. The contact is told at its login
    // e-mail: the notification e-mail given with the role (C9) receives nothing before its
    // owner confirms it (C11), and the assignment came first.
    let shipping = s.user("en").await;
    let shipping_mail = "dock@acme.example";
    s.assign(site_id, &shipping, Role::Shipping, shipping_mail)
        .await;
    let [assigned, to_primary] = notices
        .of_one_event([
            (&shipping, Kind::ContactRoleAssigned, "en"),
            (&primary, Kind::ContactRoleAssigned, "fr"),
        ])
        .await;
    assert_eq!(assigned.source_event_id, to_primary.source_event_id);
    assert!(!assigned.rule.is_empty() && !to_primary.rule.is_empty());

    // The primary takes a role itself: one notice, not one as contact and one as primary.
    let own = s.assign(site_id, &primary, Role::Secondary, "").await;
    notices
        .of_one_event([(&primary, Kind::ContactRoleAssigned, "fr")])
        .await;

    // A role removed: the contact and the primary.
    s.remove(&own.contact_id).await;
    notices
        .of_one_event([(&primary, Kind::ContactRoleRemoved, "fr")])
        .await;

    let admin = s.user("en").await;
    s.assign(site_id, &admin, Role::Administrative, "").await;
    notices.next(&admin, Kind::ContactRoleAssigned, "en").await;
    notices
        .next(&primary, Kind::ContactRoleAssigned, "fr")
        .await;

    // A holder replaced: the new holder is told it was assigned, the old one that it was
    // removed, and the primary both.
    let successor = s.user("fr").await;
    s.replace(site_id, Role::Administrative, &successor).await;
    let [new_holder, old_holder, _, _] = notices
        .of_one_event([
            (&successor, Kind::ContactRoleAssigned, "fr"),
            (&admin, Kind::ContactRoleRemoved, "en"),
            (&primary, Kind::ContactRoleAssigned, "fr"),
            (&primary, Kind::ContactRoleRemoved, "fr"),
        ])
        .await;
    assert_eq!(new_holder.source_event_id, old_holder.source_event_id);

    // A role removed from another contact: that contact and the primary.
    let successor_contact = s
        .registry()
        .list_site_contacts(s.svc(cpb::ListSiteContactsRequest {
            site_id: site_id.into(),
            ..Default::default()
        }))
        .await
        .expect("list site contacts")
        .into_inner()
        .contacts
        .into_iter()
        .find(|c| c.user_id == successor.id.to_string())
        .expect("the successor's contact");
    s.remove(&successor_contact.contact_id).await;
    notices
        .of_one_event([
            (&successor, Kind::ContactRoleRemoved, "fr"),
            (&primary, Kind::ContactRoleRemoved, "fr"),
        ])
        .await;

    // rule C8: the primary transferred: the old and the new primary, each once.
    let heir = s.user("en").await;
    s.transfer_primary(site_id, &heir).await;
    let to_old = notices.next(&primary, Kind::PrimaryTransferred, "fr").await;
    let to_new = notices.next(&heir, Kind::PrimaryTransferred, "en").await;
    assert_eq!(to_old.source_event_id, to_new.source_event_id);
    assert!(cites(&to_old.rule, "C8"), "{:?}", to_old.rule);
    assert!(cites(&to_new.rule, "C8"), "{:?}", to_new.rule);
    let of_transfer: Vec<pb::Notification> = s
        .list(site_id, None, State::Unspecified)
        .await
        .into_iter()
        .filter(|n| {
            n.source_event_id == to_old.source_event_id && n.kind == Kind::PrimaryTransferred as i32
        })
        .collect();
    assert_eq!(of_transfer.len(), 2, "{:#?}", helpers::brief(&of_transfer));
}

// Access management's rows of the notification table: a request submitted → its approvers
// (A3); decided → the requester (A2); rights changed → that user (T5); a domain policy
// changed → the approvers (A7). Cancelled requests tell nobody.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn access_events_tell_approvers_requesters_and_the_user_concerned() {
    let s = Suite::start().await;
    let primary = s.user("fr").await;
    let site = s.site(&primary, "fr").await;
    let site_id = site.site_id.as_str();
    let mut notices = Notices::new(&s, site_id);
    s.wait_approver(&primary, site_id).await;

    // Rights changed (T5): the user whose rights changed.
    let manager = s.user("en").await;
    s.grant_manage_access(&primary, site_id, &manager, "runs the helpdesk")
        .await;
    let rights = notices.next(&manager, Kind::RightsChanged, "en").await;
    assert!(cites(&rights.rule, "T5"), "{:?}", rights.rule);
    s.wait_approver(&manager, site_id).await;

    // Submitted (A3): each approver the event names, in its language.
    let requester = s.user("en").await;
    let request = s.submit(&requester, &site, "I download our software").await;
    let approvers: HashSet<_> = s.approvers(site_id).await.into_iter().collect();
    assert_eq!(approvers, HashSet::from([primary.id, manager.id]));
    let to_primary = notices
        .next(&primary, Kind::AccessRequestSubmitted, "fr")
        .await;
    let to_manager = notices
        .next(&manager, Kind::AccessRequestSubmitted, "en")
        .await;
    assert_eq!(to_primary.source_event_id, to_manager.source_event_id);
    for notification in [&to_primary, &to_manager] {
        assert!(cites(&notification.rule, "A3"), "{:?}", notification.rule);
    }
    let of_submission: Vec<_> = s
        .list(site_id, None, State::Unspecified)
        .await
        .into_iter()
        .filter(|n| n.source_event_id == to_primary.source_event_id)
        .collect();
    assert_eq!(
        of_submission.len(),
        2,
        "only the approvers: {:#?}",
        helpers::brief(&of_submission)
    );

    // Decided (A2): the requester, rejected with a reason.
    s.reject(&primary, &request.request_id, "ask your manager first")
        .await;
    let decided = notices
        .next(&requester, Kind::AccessRequestDecided, "en")
        .await;
    assert!(cites(&decided.rule, "A2"), "{:?}", decided.rule);
    let message = s.mail_of(&decided).await;
    assert!(
        message
            .text
            .as_deref()
            .unwrap_or_default()
            .contains("ask your manager first"),
        "the reason is in the notice"
    );

    // Approved: a French-speaking requester is told of the decision and of its new rights,
    // in French.
    let newcomer = s.user("fr").await;
    let again = s.submit(&newcomer, &site, "my manager agrees").await;
    notices
        .next(&primary, Kind::AccessRequestSubmitted, "fr")
        .await;
    notices
        .next(&manager, Kind::AccessRequestSubmitted, "en")
        .await;
    s.approve(&primary, &again.request_id, "welcome").await;
    notices
        .next(&newcomer, Kind::AccessRequestDecided, "fr")
        .await;
    notices.next(&newcomer, Kind::RightsChanged, "fr").await;

    // Cancelled: nobody is told of a decision. A later event of the same stream is the
    // sync point: once its notices exist, the cancellation was applied.
    let quitter = s.user("de").await;
    let cancelled = s.submit(&quitter, &site, "never mind").await;
    notices
        .next(&primary, Kind::AccessRequestSubmitted, "fr")
        .await;
    notices
        .next(&manager, Kind::AccessRequestSubmitted, "en")
        .await;
    s.cancel(&quitter, &cancelled.request_id).await;

    // Domain policy changed (A7): the approvers.
    s.set_policy(&primary, site_id, "acme.example").await;
    let [policy_primary, policy_manager] = notices
        .of_one_event([
            (&primary, Kind::DomainPolicyChanged, "fr"),
            (&manager, Kind::DomainPolicyChanged, "en"),
        ])
        .await;
    assert_eq!(
        policy_primary.source_event_id,
        policy_manager.source_event_id
    );
    assert!(
        cites(&policy_primary.rule, "A7"),
        "{:?}",
        policy_primary.rule
    );

    let quitter_notices = s.list(site_id, Some(quitter.id), State::Unspecified).await;
    assert!(
        quitter_notices.is_empty(),
        "a cancelled request tells nobody: {:#?}",
        helpers::brief(&quitter_notices)
    );
    let kinds_of = async |user: &TestUser| -> HashMap<i32, usize> {
        s.list(site_id, Some(user.id), State::Unspecified)
            .await
            .iter()
            .fold(HashMap::new(), |mut counts, n| {
                *counts.entry(n.kind).or_default() += 1;
                counts
            })
    };
    assert_eq!(
        kinds_of(&requester).await,
        HashMap::from([(Kind::AccessRequestDecided as i32, 1)]),
        "the rejected requester is told of the decision, nothing else"
    );
    assert_eq!(
        kinds_of(&newcomer).await,
        HashMap::from([
            (Kind::AccessRequestDecided as i32, 1),
            (Kind::RightsChanged as i32, 1),
        ]),
        "the approved requester is told of the decision and of its rights, nothing else"
    );
}
