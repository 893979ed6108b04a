//! Who is told what about each event: the notification table of DOMAIN.md for the events of
//! the registry (contact roles, C1, C8) and of access management (A2, A3, A7, T5).
//!
//! Planning is pure: it names recipients by user id with the kind, the rule that chose them
//! and the facts the notice reports. The service then looks the users up (address, language,
//! name), writes each notice in its recipient's language and stores it. A user is never
//! planned the same kind twice for one event (the store enforces it too, N3).

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

use super::catalog::{
    self, Decision, Level, PolicyMode, RequestKind, Right, decision_name, policy_mode_name,
    request_kind_name,
};
use super::params::Params;
use super::{Kind, Lang, Role};

/// Rule of a contact told about its own role.
pub(crate) const RULE_CONTACT: &str =
    "notification table: the contact whose role was assigned or removed";
/// Rule of the primary contact told about a role of another contact.
pub(crate) const RULE_PRIMARY: &str =
    "C1: the primary contact is told when a contact role of the site is assigned or removed";
/// Rule of the previous primary contact in a transfer.
pub(crate) const RULE_PREVIOUS_PRIMARY: &str =
    "C8: the previous primary contact is told of the transfer";
/// Rule of the new primary contact in a transfer.
pub(crate) const RULE_NEW_PRIMARY: &str = "C8: the new primary contact is told of the transfer";
/// Rule of an approver told of a submitted request.
pub(crate) const RULE_APPROVER: &str = "A3: approver of the access request";
/// Rule of the requester told of the decision.
pub(crate) const RULE_REQUESTER: &str = "A2: the requester is told of the decision";
/// Rule of the user whose rights changed.
pub(crate) const RULE_RIGHTS: &str = "T5: the user whose rights changed";
/// Rule of the user whose rights end soon or ended.
pub(crate) const RULE_RIGHTS_END: &str =
    "T9: the user whose rights end is told 7 days before and at the end";
/// Rule of an approver told of a domain policy change.
pub(crate) const RULE_POLICY_APPROVER: &str =
    "A7: approver of the site, told of domain policy changes";
/// Rule of the code that proves a registered address.
pub(crate) const RULE_EMAIL_VERIFICATION: &str =
    "I1: identity mails the registered address the code that proves it";
/// Rule of an invitation code.
pub(crate) const RULE_INVITATION: &str =
    "I1: identity invites the address; its owner claims the account with the mailed code";
/// Rule of a password reset code.
pub(crate) const RULE_PASSWORD_RESET: &str =
    "I2: identity mails the password reset code to the account's address";
/// Rule of the code that proves a new login e-mail.
pub(crate) const RULE_EMAIL_CHANGE_VERIFICATION: &str =
    "I1: the new login e-mail receives the code that proves it";
/// Rule of the notice to a taken address someone tried to register.
pub(crate) const RULE_REGISTRATION_TAKEN: &str =
    "I2: a registration of a taken address is told to that address, not to the caller";
/// Rule of the notice to a confusable address someone tried to register.
pub(crate) const RULE_REGISTRATION_CONFUSABLE: &str =
    "I3: an address that looks the same as an existing account's cannot be used";
/// Rule of the code that proves a contact's new notification e-mail.
pub(crate) const RULE_NOTIFICATION_EMAIL_VERIFICATION: &str =
    "C11: a new notification e-mail receives only the code that proves it until it is confirmed";
/// Rule of the notice of a notification e-mail change to the contact's login e-mail.
pub(crate) const RULE_NOTIFICATION_EMAIL_CHANGE_REQUESTED: &str =
    "C11: the contact's login e-mail is told of every change of its notification e-mail";
/// Rule of the notice of a login e-mail change to the current address.
pub(crate) const RULE_EMAIL_CHANGE_REQUESTED: &str =
    "identity: the current login e-mail is told of a change asked for the account";

/// Rule of a contact of the site told of a step of a primary recovery.
pub(crate) const RULE_RECOVERY_CONTACT: &str =
    "C12: every contact of the site is told of each step of a primary recovery";
/// Rule of the old primary contact told of a step of a primary recovery.
pub(crate) const RULE_RECOVERY_PREVIOUS_PRIMARY: &str = "C12: the old primary contact is told of each step of a recovery of its role, and may refuse it";

/// Rule of the RENEWAL contact told of its site's S&S end (C6, and the notification table).
pub(crate) const RULE_SUPPORT_RENEWAL: &str = "C6: S&S renewal notices go to the RENEWAL contact";
/// Rule of the ADMINISTRATIVE contact told of its site's S&S end when no RENEWAL is named.
pub(crate) const RULE_SUPPORT_ADMINISTRATIVE: &str =
    "C3: no RENEWAL contact, S&S renewal notices fell back to ADMINISTRATIVE";
/// Rule of the PRIMARY contact told of its site's S&S end when neither is named.
pub(crate) const RULE_SUPPORT_PRIMARY: &str =
    "R1: no RENEWAL or ADMINISTRATIVE contact, S&S renewal notices fell back to PRIMARY";

/// Rule of the requester of a primary recovery told of its steps.
pub(crate) const RULE_RECOVERY_REQUESTER: &str =
    "C12: the requester of a primary recovery is told of each step (it may be no contact)";

/// What a notice reports, in structured form; [`Facts::params`] writes it in a language.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Facts {
    /// Roles of a contact were assigned or removed.
    Roles {
        /// The user whose roles changed.
        contact: Uuid,
        /// The roles.
        roles: Vec<Role>,
    },
    /// The primary contact changed (C8).
    Transfer {
        /// The previous primary.
        previous: Uuid,
        /// The new primary.
        new: Uuid,
    },
    /// An access request was submitted (A1, A3).
    RequestSubmitted {
        /// Its requester.
        requester: Uuid,
        /// What it asks for, when known.
        request_kind: Option<RequestKind>,
        /// The requester's justification.
        justification: String,
        /// Its id.
        request_id: String,
        /// When it expires.
        expire_time: Option<DateTime<Utc>>,
    },
    /// An access request was decided (A2).
    RequestDecided {
        /// Approved or rejected, when known.
        decision: Option<Decision>,
        /// Reason of a rejection or note of an approval.
        reason: String,
        /// Levels granted by an approval.
        granted: Vec<(Right, Level)>,
        /// Its id.
        request_id: String,
    },
    /// A user's explicit rights changed (T5).
    RightsChanged {
        /// `(right, before, after)` for each right that changed.
        changes: Vec<(Right, Level, Level)>,
        /// Why.
        reason: String,
    },
    /// A person was added to the site as a site user, with these rights (C6).
    Welcome {
        /// The explicit levels granted (none: the person holds no right yet).
        levels: Vec<(Right, Level)>,
        /// Why, as the one who added it wrote it.
        reason: String,
    },
    /// A user's explicit rights end soon, or ended (T9).
    RightsEnding {
        /// The explicit levels that end.
        levels: Vec<(Right, Level)>,
        /// When they end.
        end_time: Option<DateTime<Utc>>,
    },
    /// A step of a primary recovery (C12).
    Recovery {
        /// Who asked.
        requester: Uuid,
        /// The primary contact when it was asked.
        previous: Uuid,
        /// Who refused or attested, for those steps.
        decided_by: Option<Uuid>,
        /// The new primary, once attested.
        new: Option<Uuid>,
        /// The reason of the step (the request's, the refusal's or the attestation's).
        reason: String,
        /// Its id.
        recovery_id: String,
        /// End of the waiting period.
        waiting_end_time: Option<DateTime<Utc>>,
    },
    /// The site's S&S ends soon (a renewal reminder) or lapsed.
    Support {
        /// Its last day, when known.
        end_date: Option<NaiveDate>,
        /// The reminder's milestone in days (90, 60, 30); `None` for a lapse.
        milestone_days: Option<i32>,
    },
    /// A domain policy changed (A7).
    DomainPolicy {
        /// The e-mail domain.
        domain: String,
        /// What it does now, when known.
        mode: Option<PolicyMode>,
    },
}

/// A person's name and login e-mail, as notices show them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Person {
    /// Display name.
    pub name: String,
    /// Login e-mail.
    pub email: String,
}

impl Facts {
    /// The template parameters in `lang`; `person` gives the name and e-mail of a user
    /// (`None` when identity does not know it: the name is then left empty).
    pub(crate) fn params(&self, lang: Lang, person: &dyn Fn(Uuid) -> Option<Person>) -> Params {
        let name = |user: Uuid| person(user).map(|p| p.name).unwrap_or_default();
        let mut params = BTreeMap::new();
        let mut put = |key: &str, value: String| {
            params.insert(key.to_owned(), value);
        };
        match self {
            Facts::Roles { contact, roles } => {
                put("contact_name", name(*contact));
                put("role", catalog::role_names(roles, lang));
            }
            Facts::Transfer { previous, new } => {
                put("previous_name", name(*previous));
                put("new_name", name(*new));
            }
            Facts::RequestSubmitted {
                requester,
                request_kind,
                justification,
                request_id,
                expire_time,
            } => {
                let requester = person(*requester).unwrap_or_default();
                put("requester_name", requester.name);
                put("requester_email", requester.email);
                put(
                    "request_kind",
                    request_kind
                        .map(|kind| request_kind_name(kind, lang).to_owned())
                        .unwrap_or_default(),
                );
                put("justification", justification.clone());
                put("request_id", request_id.clone());
                put(
                    "expire_time",
                    expire_time
                        .map(|time| catalog::time_text(time, lang))
                        .unwrap_or_default(),
                );
            }
            Facts::RequestDecided {
                decision,
                reason,
                granted,
                request_id,
            } => {
                put(
                    "decision",
                    decision
                        .map(|decision| decision_name(decision, lang).to_owned())
                        .unwrap_or_default(),
                );
                put("reason", reason.clone());
                put("granted", catalog::levels_text(granted, lang));
                put("request_id", request_id.clone());
            }
            Facts::RightsChanged { changes, reason } => {
                put("changes", catalog::changes_text(changes, lang));
                put("reason", reason.clone());
            }
            Facts::Welcome { levels, reason } => {
                put("levels", catalog::levels_text(levels, lang));
                put("reason", reason.clone());
            }
            Facts::RightsEnding { levels, end_time } => {
                put("levels", catalog::levels_text(levels, lang));
                put(
                    "end_time",
                    end_time
                        .map(|time| catalog::time_text(time, lang))
                        .unwrap_or_default(),
                );
            }
            Facts::Recovery {
                requester,
                previous,
                decided_by,
                new,
                reason,
                recovery_id,
                waiting_end_time,
            } => {
                let requester = person(*requester).unwrap_or_default();
                put("requester_name", requester.name);
                put("requester_email", requester.email);
                put("previous_name", name(*previous));
                put("decided_by_name", decided_by.map(name).unwrap_or_default());
                put("new_name", new.map(name).unwrap_or_default());
                put("reason", reason.clone());
                put("recovery_id", recovery_id.clone());
                put(
                    "waiting_end_time",
                    waiting_end_time
                        .map(|time| catalog::time_text(time, lang))
                        .unwrap_or_default(),
                );
            }
            Facts::Support {
                end_date,
                milestone_days,
            } => {
                put(
                    "end_date",
                    end_date
                        .map(|day| catalog::date_text(day, lang))
                        .unwrap_or_default(),
                );
                if let Some(days) = milestone_days {
                    put("milestone_days", days.to_string());
                }
            }
            Facts::DomainPolicy { domain, mode } => {
                put("domain", domain.clone());
                put(
                    "mode",
                    mode.map(|mode| policy_mode_name(mode, lang).to_owned())
                        .unwrap_or_default(),
                );
            }
        }
        params
    }
}

/// One recipient of an event's notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Planned {
    /// The recipient.
    pub user_id: Uuid,
    /// What the notice is about.
    pub kind: Kind,
    /// Why the recipient was chosen, citing the rule.
    pub rule: &'static str,
    /// What it reports.
    pub facts: Facts,
}

/// Keeps the first plan of each `(recipient, kind)`: nobody is told the same kind twice
/// about one event.
pub(crate) fn dedupe(plans: Vec<Planned>) -> Vec<Planned> {
    let mut seen = HashSet::new();
    plans
        .into_iter()
        .filter(|plan| seen.insert((plan.user_id, plan.kind)))
        .collect()
}

/// A site was created: each user holding an initial role is told of its roles.
pub(crate) fn site_created(contacts: &[(Uuid, Role)]) -> Vec<Planned> {
    let mut by_user: Vec<(Uuid, Vec<Role>)> = Vec::new();
    for (user, role) in contacts {
        match by_user.iter_mut().find(|(u, _)| u == user) {
            Some((_, roles)) => roles.push(*role),
            None => by_user.push((*user, vec![*role])),
        }
    }
    by_user
        .into_iter()
        .map(|(user, roles)| Planned {
            user_id: user,
            kind: Kind::ContactRoleAssigned,
            rule: RULE_CONTACT,
            facts: Facts::Roles {
                contact: user,
                roles,
            },
        })
        .collect()
}

/// A role was given or taken (`kind`): the contact and the primary are told.
fn role_change(kind: Kind, primary: Option<Uuid>, contact: Uuid, role: Role) -> Vec<Planned> {
    let facts = Facts::Roles {
        contact,
        roles: vec![role],
    };
    let mut plans = vec![Planned {
        user_id: contact,
        kind,
        rule: RULE_CONTACT,
        facts: facts.clone(),
    }];
    if let Some(primary) = primary {
        plans.push(Planned {
            user_id: primary,
            kind,
            rule: RULE_PRIMARY,
            facts,
        });
    }
    dedupe(plans)
}

/// A role was given: that contact and the primary are told.
pub(crate) fn contact_assigned(primary: Option<Uuid>, contact: Uuid, role: Role) -> Vec<Planned> {
    role_change(Kind::ContactRoleAssigned, primary, contact, role)
}

/// A role was taken away: that contact and the primary are told.
pub(crate) fn contact_removed(primary: Option<Uuid>, contact: Uuid, role: Role) -> Vec<Planned> {
    role_change(Kind::ContactRoleRemoved, primary, contact, role)
}

/// A single-holder role changed holder: the new holder and the primary are told of the
/// assignment, the old holder and the primary of the removal.
pub(crate) fn contact_replaced(
    primary: Option<Uuid>,
    new: (Uuid, Role),
    old: Option<(Uuid, Role)>,
) -> Vec<Planned> {
    let mut plans = contact_assigned(primary, new.0, new.1);
    if let Some((user, role)) = old {
        plans.extend(contact_removed(primary, user, role));
    }
    dedupe(plans)
}

/// The primary contact changed: the previous and the new primary are told (C8).
pub(crate) fn primary_transferred(previous: Uuid, new: Uuid) -> Vec<Planned> {
    let facts = Facts::Transfer { previous, new };
    dedupe(vec![
        Planned {
            user_id: previous,
            kind: Kind::PrimaryTransferred,
            rule: RULE_PREVIOUS_PRIMARY,
            facts: facts.clone(),
        },
        Planned {
            user_id: new,
            kind: Kind::PrimaryTransferred,
            rule: RULE_NEW_PRIMARY,
            facts,
        },
    ])
}

/// A step (`kind`) of a primary recovery (C12): the old primary and every contact of the
/// site are told, and the requester (who may be no contact: a colleague of a contact's
/// e-mail domain), each once.
pub(crate) fn primary_recovery(
    kind: Kind,
    previous: Uuid,
    requester: Uuid,
    contacts: &[Uuid],
    facts: &Facts,
) -> Vec<Planned> {
    let mut plans = each(&[previous], kind, RULE_RECOVERY_PREVIOUS_PRIMARY, facts);
    plans.extend(each(contacts, kind, RULE_RECOVERY_CONTACT, facts));
    plans.extend(each(&[requester], kind, RULE_RECOVERY_REQUESTER, facts));
    dedupe(plans)
}

/// Each of `users` is told `kind` with `facts` by `rule` (approvers, A3 and A7).
pub(crate) fn each(users: &[Uuid], kind: Kind, rule: &'static str, facts: &Facts) -> Vec<Planned> {
    dedupe(
        users
            .iter()
            .map(|user| Planned {
                user_id: *user,
                kind,
                rule,
                facts: facts.clone(),
            })
            .collect(),
    )
}

/// A site's S&S ends soon or lapsed: the recipients the registry chose by the renewal chain
/// (RENEWAL, else ADMINISTRATIVE, else PRIMARY, R1), `(user, role that chose it)`, each
/// told with the rule of its role.
pub(crate) fn renewal_chain(
    recipients: &[(Uuid, Role)],
    kind: Kind,
    facts: &Facts,
) -> Vec<Planned> {
    dedupe(
        recipients
            .iter()
            .map(|(user, role)| Planned {
                user_id: *user,
                kind,
                rule: match role {
                    Role::Renewal => RULE_SUPPORT_RENEWAL,
                    Role::Administrative => RULE_SUPPORT_ADMINISTRATIVE,
                    _ => RULE_SUPPORT_PRIMARY,
                },
                facts: facts.clone(),
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s_and_s_notices_cite_the_role_of_the_renewal_chain() {
        // rule R1: RENEWAL, else ADMINISTRATIVE, else PRIMARY; each told once.
        let facts = Facts::Support {
            end_date: None,
            milestone_days: Some(90),
        };
        let plans = renewal_chain(
            &[
                (id(1), Role::Renewal),
                (id(2), Role::Administrative),
                (id(3), Role::Primary),
                (id(1), Role::Renewal),
            ],
            Kind::SupportEnding,
            &facts,
        );
        assert_eq!(
            summary(&plans),
            [
                (id(1), Kind::SupportEnding, RULE_SUPPORT_RENEWAL),
                (id(2), Kind::SupportEnding, RULE_SUPPORT_ADMINISTRATIVE),
                (id(3), Kind::SupportEnding, RULE_SUPPORT_PRIMARY),
            ]
        );
        let params = facts.params(Lang::Fr, &|_| None);
        assert_eq!(params.get("milestone_days").map(String::as_str), Some("90"));
        let lapsed = Facts::Support {
            end_date: NaiveDate::from_ymd_opt(2027, 3, 31),
            milestone_days: None,
        };
        let params = lapsed.params(Lang::Fr, &|_| None);
        assert_eq!(
            params.get("end_date").map(String::as_str),
            Some("31/03/2027")
        );
        assert!(!params.contains_key("milestone_days"));
    }

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn summary(plans: &[Planned]) -> Vec<(Uuid, Kind, &'static str)> {
        plans.iter().map(|p| (p.user_id, p.kind, p.rule)).collect()
    }

    #[test]
    fn a_new_site_tells_each_contact_its_roles_once() {
        let plans = site_created(&[
            (id(1), Role::Primary),
            (id(2), Role::SiteTechnical),
            (id(1), Role::Administrative),
        ]);
        assert_eq!(plans.len(), 2);
        assert_eq!(plans[0].user_id, id(1));
        assert_eq!(
            plans[0].facts,
            Facts::Roles {
                contact: id(1),
                roles: vec![Role::Primary, Role::Administrative]
            }
        );
        let params = plans[0].facts.params(Lang::Fr, &|_| {
            Some(Person {
                name: "Éloïse".into(),
                email: String::new(),
            })
        });
        assert_eq!(params["role"], "Contact principal, Contact administratif");
        assert_eq!(params["contact_name"], "Éloïse");
    }

    #[test]
    fn a_recovery_tells_the_old_primary_and_every_contact_once() {
        // notification table: "primary recovery requested, refused, done (C12) | every
        // contact of the site and the old primary"
        let facts = Facts::Recovery {
            requester: id(2),
            previous: id(1),
            decided_by: Some(id(1)),
            new: None,
            reason: "je suis toujours là".into(),
            recovery_id: "r".into(),
            waiting_end_time: None,
        };
        let plans = primary_recovery(
            Kind::PrimaryRecoveryRefused,
            id(1),
            id(2),
            &[id(1), id(2), id(3)],
            &facts,
        );
        assert_eq!(
            summary(&plans),
            [
                (
                    id(1),
                    Kind::PrimaryRecoveryRefused,
                    RULE_RECOVERY_PREVIOUS_PRIMARY
                ),
                (id(2), Kind::PrimaryRecoveryRefused, RULE_RECOVERY_CONTACT),
                (id(3), Kind::PrimaryRecoveryRefused, RULE_RECOVERY_CONTACT),
            ]
        );
        // the old primary is told even when it holds no role any more, and the requester
        // even when it is no contact
        assert_eq!(
            summary(&primary_recovery(
                Kind::PrimaryRecoveryAttested,
                id(1),
                id(5),
                &[id(4)],
                &facts
            )),
            [
                (
                    id(1),
                    Kind::PrimaryRecoveryAttested,
                    RULE_RECOVERY_PREVIOUS_PRIMARY
                ),
                (id(4), Kind::PrimaryRecoveryAttested, RULE_RECOVERY_CONTACT),
                (
                    id(5),
                    Kind::PrimaryRecoveryAttested,
                    RULE_RECOVERY_REQUESTER
                ),
            ]
        );
        let params = facts.params(Lang::Fr, &|user| {
            Some(Person {
                name: format!("n{}", user.as_u128()),
                email: format!("u{}@example.com", user.as_u128()),
            })
        });
        assert_eq!(params["previous_name"], "n1");
        assert_eq!(params["decided_by_name"], "n1");
        assert_eq!(params["requester_email"], "u2@example.com");
        assert_eq!(params["new_name"], "");
    }

    #[test]
    fn a_role_change_tells_the_contact_and_the_primary() {
        // notification table: "contact role assigned or removed | that contact and the primary"
        assert_eq!(
            summary(&contact_assigned(Some(id(9)), id(2), Role::Billing)),
            [
                (id(2), Kind::ContactRoleAssigned, RULE_CONTACT),
                (id(9), Kind::ContactRoleAssigned, RULE_PRIMARY)
            ]
        );
        assert_eq!(
            summary(&contact_removed(Some(id(9)), id(2), Role::Billing)),
            [
                (id(2), Kind::ContactRoleRemoved, RULE_CONTACT),
                (id(9), Kind::ContactRoleRemoved, RULE_PRIMARY)
            ]
        );
        // the primary changing its own roles is told once
        assert_eq!(contact_assigned(Some(id(9)), id(9), Role::Billing).len(), 1);
    }

    #[test]
    fn a_replacement_tells_both_holders_and_the_primary_once_per_kind() {
        let plans = contact_replaced(
            Some(id(9)),
            (id(3), Role::SiteTechnical),
            Some((id(4), Role::SiteTechnical)),
        );
        assert_eq!(
            summary(&plans),
            [
                (id(3), Kind::ContactRoleAssigned, RULE_CONTACT),
                (id(9), Kind::ContactRoleAssigned, RULE_PRIMARY),
                (id(4), Kind::ContactRoleRemoved, RULE_CONTACT),
                (id(9), Kind::ContactRoleRemoved, RULE_PRIMARY),
            ]
        );
        assert_eq!(
            contact_replaced(Some(id(9)), (id(3), Role::Billing), None).len(),
            2
        );
    }

    #[test]
    fn a_transfer_tells_the_previous_and_the_new_primary() {
        // rule C8: both are notified
        let plans = primary_transferred(id(1), id(2));
        assert_eq!(
            summary(&plans),
            [
                (id(1), Kind::PrimaryTransferred, RULE_PREVIOUS_PRIMARY),
                (id(2), Kind::PrimaryTransferred, RULE_NEW_PRIMARY)
            ]
        );
        let params = plans[0].facts.params(Lang::En, &|user| {
            Some(Person {
                name: format!("user {}", user.as_u128()),
                email: String::new(),
            })
        });
        assert_eq!(params["previous_name"], "user 1");
        assert_eq!(params["new_name"], "user 2");
    }

    #[test]
    fn approvers_are_told_once_each() {
        // rule A3
        let facts = Facts::RequestSubmitted {
            requester: id(7),
            request_kind: Some(RequestKind::SupportAccess),
            justification: "new job".into(),
            request_id: "r1".into(),
            expire_time: None,
        };
        let plans = each(
            &[id(1), id(2), id(1)],
            Kind::AccessRequestSubmitted,
            RULE_APPROVER,
            &facts,
        );
        assert_eq!(plans.len(), 2);
        let params = facts.params(Lang::Fr, &|_| {
            Some(Person {
                name: "Ada".into(),
                email: "ada@example.com".into(),
            })
        });
        assert_eq!(params["request_kind"], "accès au support");
        assert_eq!(params["requester_email"], "ada@example.com");
        assert_eq!(params["expire_time"], "");
        // unknown users leave names empty
        let params = facts.params(Lang::En, &|_| None);
        assert_eq!(params["requester_name"], "");
    }

    #[test]
    fn decisions_and_changes_are_written_in_the_language() {
        let decided = Facts::RequestDecided {
            decision: Some(Decision::Rejected),
            reason: "not our customer".into(),
            granted: Vec::new(),
            request_id: "r1".into(),
        };
        assert_eq!(decided.params(Lang::Fr, &|_| None)["decision"], "refusée");
        assert_eq!(decided.params(Lang::En, &|_| None)["decision"], "rejected");
        let changed = Facts::RightsChanged {
            changes: vec![(Right::Reporting, Level::None, Level::View)],
            reason: "audit".into(),
        };
        assert_eq!(
            changed.params(Lang::Fr, &|_| None)["changes"],
            "Rapports\u{a0}: aucun → consultation"
        );
        let ending = Facts::RightsEnding {
            levels: vec![(Right::Reporting, Level::View)],
            end_time: DateTime::from_timestamp(1_800_000_000, 0),
        };
        let params = ending.params(Lang::Fr, &|_| None);
        assert_eq!(params["levels"], "Rapports\u{a0}: consultation");
        assert_eq!(params["end_time"], "15/01/2027 08:00 UTC");
        assert_eq!(
            ending.params(Lang::En, &|_| None)["end_time"],
            "2027-01-15 08:00 UTC"
        );
        let policy = Facts::DomainPolicy {
            domain: "example.com".into(),
            mode: Some(PolicyMode::AutoApprove),
        };
        assert!(policy.params(Lang::En, &|_| None)["mode"].starts_with("automatic approval"));
    }
}
