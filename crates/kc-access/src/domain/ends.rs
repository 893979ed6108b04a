//! T9, grants with an end: the rules that decide the end of a user's explicit grants on a
//! site after a change or an approval, and who may change it. Pure.
//!
//! The end belongs to the user's explicit grants on the site as a whole (tools and support,
//! the grant RevokeAccess removes): at the end every explicit level goes, as by a
//! revocation, and what the user's roles imply stays.
//! - A change that names no end keeps the grant's current end: an end is never lifted by
//!   accident. `without_end` lifts it; `valid_until` sets it.
//! - Changing the end of a grant that holds levels already changes every one of them:
//!   the actor needs the authority to revoke them (T4, U4), and nobody extends its own
//!   grant (T7; ending one's own earlier is allowed).
//! - An approval with an end never shortens what the requester already holds: when the
//!   requester's grant ends later or never, the approval is refused (T9).

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::commands::{ApprovalEnd, EndChange};
use super::{Effective, Grants, RuleViolation, Subject, check_revoke};

/// How far ahead of its end a grant's user is told (T9 and the notification table).
pub const ENDING_NOTICE_AHEAD: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// Checks a change or an approval that names `start` on a grant holding `current` (in
/// force) and starting at `pending_start` (when it has not started yet): a start is only
/// for a new grant (nothing explicit held), and a grant that has not started changes only
/// by revocation (its levels are not in force, so nothing could be kept of them).
pub fn check_start(
    current: &Grants,
    pending_start: Option<DateTime<Utc>>,
    start: Option<DateTime<Utc>>,
) -> Result<(), RuleViolation> {
    if let Some(pending_start) = pending_start {
        return Err(RuleViolation {
            rule: "T9",
            message: format!(
                "the user's grant on the site starts at {}; until then it changes only by \
                 RevokeAccess: revoke it and grant again",
                pending_start.to_rfc3339()
            ),
        });
    }
    if start.is_some() && !current.is_none() {
        return Err(RuleViolation {
            rule: "T9",
            message: "a start is only for a new grant: the user holds explicit grants on the \
                      site already; change them without valid_from"
                .into(),
        });
    }
    Ok(())
}

/// The end of a grant holding `current` (in force) and ending at `current_end`, after
/// `change`; `None` when it does not end.
pub fn end_after_change(
    current: &Grants,
    current_end: Option<DateTime<Utc>>,
    change: EndChange,
) -> Option<DateTime<Utc>> {
    match change {
        EndChange::Keep if current.is_none() => None,
        EndChange::Keep => current_end,
        EndChange::Until(end) => Some(end),
        EndChange::Remove => None,
    }
}

/// Whether `after` ends later than `before` (`None`: never).
pub fn later(before: Option<DateTime<Utc>>, after: Option<DateTime<Utc>>) -> bool {
    match (before, after) {
        (Some(_), None) => true,
        (Some(before), Some(after)) => after > before,
        (None, _) => false,
    }
}

/// Checks a change of the end of a grant holding `target.explicit` (in force) from
/// `current_end` to `new_end` by `actor_id` with `authority` over the site: nothing to check
/// when the end does not change or the grant holds nothing yet; else the actor must be
/// allowed to revoke every level the grant holds (T4, U4), and may not extend its own (T7).
pub fn check_end_change(
    authority: &Effective,
    actor_id: Uuid,
    target_id: Uuid,
    target: &Subject,
    current_end: Option<DateTime<Utc>>,
    new_end: Option<DateTime<Utc>>,
) -> Result<(), RuleViolation> {
    if current_end == new_end || target.explicit.is_none() {
        return Ok(());
    }
    check_revoke(authority, target)?;
    if actor_id == target_id && later(current_end, new_end) {
        return Err(RuleViolation {
            rule: "T7",
            message: "nobody extends its own grant (T9: the end of one's grant may only come \
                      sooner); another holder of the authority must"
                .into(),
        });
    }
    Ok(())
}

/// The end of the requester's grant after an approval asking `asked`, the grant starting at
/// `now` (the approval, or its start), when the
/// requester holds `current` (in force) ending at `current_end`. An approval without an end
/// keeps the grant's; one with an end gives it to a requester holding nothing, or to one
/// whose grant ends no later; anything else would shorten what the requester holds and is
/// refused (T9).
pub fn end_after_approval(
    current: &Grants,
    current_end: Option<DateTime<Utc>>,
    asked: ApprovalEnd,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, RuleViolation> {
    let end = match asked {
        ApprovalEnd::None => return Ok(current_end.filter(|_| !current.is_none())),
        ApprovalEnd::Until(end) => end,
        ApprovalEnd::For(length) => now + length,
    };
    if current.is_none() {
        return Ok(Some(end));
    }
    match current_end {
        Some(current_end) if current_end <= end => Ok(Some(end)),
        Some(_) => Err(RuleViolation {
            rule: "T9",
            message: "the requester's grant on the site ends after this approval's end; an \
                      approval never shortens it: approve without an end, or with a later one"
                .into(),
        }),
        None => Err(RuleViolation {
            rule: "T9",
            message: "the requester's grant on the site does not end; an approval with an end \
                      would end what it holds already: approve without an end, or set the end \
                      of the whole grant with SetToolAccess"
                .into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{
        ContactRole, ManageAccess, RoleSet, SiteFacts, SoftwareAccess, SupportLevel, ToolAccess,
    };

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).expect("a time")
    }

    fn software() -> Grants {
        Grants {
            tools: ToolAccess {
                software: SoftwareAccess::Full,
                ..ToolAccess::NONE
            },
            support: SupportLevel::NoAccess,
        }
    }

    #[test]
    fn a_change_keeps_sets_or_lifts_the_end() {
        // rule T9
        let held = software();
        assert_eq!(
            end_after_change(&held, Some(at(5)), EndChange::Keep),
            Some(at(5))
        );
        assert_eq!(
            end_after_change(&Grants::NONE, Some(at(5)), EndChange::Keep),
            None
        );
        assert_eq!(
            end_after_change(&held, None, EndChange::Until(at(9))),
            Some(at(9))
        );
        assert_eq!(
            end_after_change(&held, Some(at(5)), EndChange::Remove),
            None
        );
    }

    #[test]
    fn a_start_is_only_for_a_new_grant() {
        // rule T9
        assert!(check_start(&Grants::NONE, None, Some(at(5))).is_ok());
        assert!(check_start(&software(), None, None).is_ok());
        assert_eq!(
            check_start(&software(), None, Some(at(5)))
                .unwrap_err()
                .rule,
            "T9"
        );
        assert_eq!(
            check_start(&Grants::NONE, Some(at(5)), None)
                .unwrap_err()
                .rule,
            "T9"
        );
    }

    #[test]
    fn an_approval_never_shortens_a_grant() {
        // rule T9
        let now = at(0);
        let days = chrono::Duration::days(90);
        assert_eq!(
            end_after_approval(&Grants::NONE, None, ApprovalEnd::For(days), now),
            Ok(Some(now + days))
        );
        assert_eq!(
            end_after_approval(&software(), Some(at(5)), ApprovalEnd::None, now),
            Ok(Some(at(5)))
        );
        assert_eq!(
            end_after_approval(&software(), Some(at(5)), ApprovalEnd::Until(at(9)), now),
            Ok(Some(at(9)))
        );
        for current_end in [None, Some(at(10))] {
            let refused =
                end_after_approval(&software(), current_end, ApprovalEnd::Until(at(9)), now)
                    .unwrap_err();
            assert_eq!(refused.rule, "T9");
        }
    }

    #[test]
    fn changing_an_end_needs_authority_over_the_grant_and_never_extends_ones_own() {
        let facts = SiteFacts::default();
        let grantor = Effective::of(
            &Subject {
                explicit: Grants {
                    tools: ToolAccess {
                        manage_access: ManageAccess::Update,
                        software: SoftwareAccess::Full,
                        ..ToolAccess::NONE
                    },
                    support: SupportLevel::NoAccess,
                },
                ..Subject::default()
            },
            facts,
        );
        let (actor, other) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let target = Subject {
            explicit: software(),
            ..Subject::default()
        };
        assert!(check_end_change(&grantor, actor, other, &target, None, Some(at(9))).is_ok());
        // rule T4: the grant holds support FULL, which this grantor may not take away (U4).
        let with_support = Subject {
            explicit: Grants {
                support: SupportLevel::Full,
                ..software()
            },
            ..Subject::default()
        };
        let refused = check_end_change(&grantor, actor, other, &with_support, None, Some(at(9)));
        assert_eq!(refused.unwrap_err().rule, "U4");
        // rule T7: one's own end may come sooner, never later.
        assert!(
            check_end_change(&grantor, actor, actor, &target, Some(at(9)), Some(at(5))).is_ok()
        );
        let refused = check_end_change(&grantor, actor, actor, &target, Some(at(5)), None);
        assert_eq!(refused.unwrap_err().rule, "T7");
        // Nothing held yet, or no change: nothing to check.
        let primary = Subject {
            roles: RoleSet::of(&[ContactRole::Primary]),
            ..Subject::default()
        };
        assert!(check_end_change(&grantor, actor, other, &primary, None, Some(at(9))).is_ok());
        assert!(
            check_end_change(&grantor, actor, other, &target, Some(at(9)), Some(at(9))).is_ok()
        );
    }
}
