//! S&S life: when a site's renewal reminders are due and when its S&S lapses. Pure; the
//! registry's sweeper ([`crate::support_life`]) applies it.
//!
//! A site's `support_end_date` is the last day of its S&S, a UTC calendar day.
//! - **Reminders** go 90, 60 and 30 days before that day ([`MILESTONES`]), each once per site,
//!   last day and milestone: a site whose end date moves gets the reminders of its new
//!   date. Only sites with active S&S are reminded. When several milestones are passed at
//!   once (a site created, or its date set, 50 days ahead) only the one reached most
//!   recently is due (60 there): a reminder says how far the end is, and two reminders of
//!   one end at once would say it twice. The last day itself still counts (0 days left).
//! - **The lapse**: from the day after the last day, S&S is no longer in force; rules that
//!   depend on active S&S (C5: the site technical contact is required) stop applying then,
//!   to the day, whether or not the sweeper has recorded the lapse yet. The sweeper makes it
//!   a recorded change: `support_active` becomes false, with its audit record, event and
//!   notice.

use chrono::{NaiveDate, Utc};

use super::Site;

/// Today, the UTC calendar day the rules of S&S life count in.
pub fn today() -> NaiveDate {
    Utc::now().date_naive()
}

/// The reminders' milestones: days before the last day of S&S, earliest first.
pub const MILESTONES: [u16; 3] = [90, 60, 30];

/// Days from `today` to the last day of S&S `end` (negative once it passed).
pub fn days_left(end: NaiveDate, today: NaiveDate) -> i64 {
    (end - today).num_days()
}

/// The milestone whose reminder is due on `today` for S&S ending on `end`: the one reached
/// most recently, i.e. the smallest of [`MILESTONES`] at least the days left; `None` before
/// the first (more than 90 days left) and after the last day.
pub fn milestone_due(end: NaiveDate, today: NaiveDate) -> Option<u16> {
    let left = days_left(end, today);
    if left < 0 {
        return None;
    }
    MILESTONES
        .iter()
        .rev()
        .copied()
        .find(|milestone| left <= i64::from(*milestone))
}

/// Whether S&S ending on `end` has lapsed on `today`: its last day passed.
pub fn lapsed(end: NaiveDate, today: NaiveDate) -> bool {
    today > end
}

/// Whether `site`'s S&S is in force on `today`: active, and its last day (if any) not passed.
/// Rule C5 requires a site technical contact exactly while this holds.
pub fn support_in_force(site: &Site, today: NaiveDate) -> bool {
    site.support_active && !site.support_end_date.is_some_and(|end| lapsed(end, today))
}

/// The reminder due for `site` on `today`, if any: `(last day, milestone)`. Only sites
/// whose S&S is in force are reminded.
pub fn reminder_due(site: &Site, today: NaiveDate) -> Option<(NaiveDate, u16)> {
    let end = site.support_end_date.filter(|_| site.support_active)?;
    milestone_due(end, today).map(|milestone| (end, milestone))
}

/// Whether `site`'s S&S lapsed on `today` and the lapse is not recorded yet (it is still
/// marked active).
pub fn lapse_due(site: &Site, today: NaiveDate) -> bool {
    site.support_active && site.support_end_date.is_some_and(|end| lapsed(end, today))
}

#[cfg(test)]
mod tests {
    use chrono::{Days, Utc};
    use uuid::Uuid;

    use super::*;
    use crate::domain::Program;
    use crate::domain::values::{CountryCode, CustomerNumber, Locale, SiteNumber};

    fn day(text: &str) -> NaiveDate {
        text.parse().expect("a date")
    }

    fn ahead(today: NaiveDate, days: u64) -> NaiveDate {
        today.checked_add_days(Days::new(days)).expect("a date")
    }

    fn site(active: bool, end: Option<NaiveDate>) -> Site {
        Site {
            site_id: Uuid::from_u128(1),
            site_number: SiteNumber::parse("site_number", "1234567").expect("site number"),
            customer_number: CustomerNumber::parse("customer_number", "7654321")
                .expect("customer number"),
            name: "Acme".into(),
            country_code: CountryCode::parse("country_code", "FR").expect("country"),
            language: Locale::parse("language", "fr").expect("language"),
            program: Program::PassportAdvantage,
            support_active: active,
            support_end_date: end,
            business_partner_email: None,
            admin_may_manage_access: false,
            is_original_site: true,
            primary_user_id: Uuid::from_u128(2),
            version: 1,
            create_time: Utc::now(),
            update_time: Utc::now(),
        }
    }

    #[test]
    fn the_milestone_due_is_the_one_reached_most_recently() {
        let today = day("2027-01-10");
        let due = |days| milestone_due(ahead(today, days), today);
        assert_eq!(due(91), None, "more than 90 days ahead: nothing yet");
        assert_eq!(due(90), Some(90));
        // A site created 89 days ahead gets the 90-day reminder only, not 90 then 60.
        assert_eq!(due(89), Some(90));
        assert_eq!(due(61), Some(90));
        assert_eq!(due(60), Some(60));
        // Created 50 days ahead: 60, the milestone reached most recently.
        assert_eq!(due(50), Some(60));
        assert_eq!(due(31), Some(60));
        assert_eq!(due(30), Some(30));
        assert_eq!(due(1), Some(30));
        assert_eq!(due(0), Some(30), "the last day still counts");
        let yesterday = today.pred_opt().expect("a date");
        assert_eq!(milestone_due(yesterday, today), None, "passed: the lapse");
        assert_eq!(days_left(yesterday, today), -1);
    }

    #[test]
    fn milestones_across_month_and_leap_days() {
        // 2028 is a leap year: 90 days before 2028-03-31 is 2028-01-01.
        let end = day("2028-03-31");
        assert_eq!(milestone_due(end, day("2027-12-31")), None);
        assert_eq!(milestone_due(end, day("2028-01-01")), Some(90));
        assert_eq!(milestone_due(end, day("2028-01-31")), Some(60));
        assert_eq!(milestone_due(end, day("2028-03-01")), Some(30));
    }

    #[test]
    fn s_and_s_lapses_the_day_after_its_last_day() {
        // rule C5: the STC requirement lasts while S&S is in force, to the day.
        let end = day("2027-06-30");
        assert!(!lapsed(end, end));
        assert!(lapsed(end, day("2027-07-01")));
        let active = site(true, Some(end));
        assert!(support_in_force(&active, end));
        assert!(!support_in_force(&active, day("2027-07-01")));
        assert!(lapse_due(&active, day("2027-07-01")));
        assert!(!lapse_due(&active, end));
        // Recorded already (inactive), or no end date: nothing lapses.
        assert!(!lapse_due(&site(false, Some(end)), day("2027-07-01")));
        let open_ended = site(true, None);
        assert!(support_in_force(&open_ended, day("2099-01-01")));
        assert!(!lapse_due(&open_ended, day("2099-01-01")));
        assert!(!support_in_force(&site(false, None), end));
    }

    #[test]
    fn only_sites_with_s_and_s_in_force_are_reminded() {
        let today = day("2027-01-10");
        let end = ahead(today, 89);
        assert_eq!(reminder_due(&site(true, Some(end)), today), Some((end, 90)));
        assert_eq!(reminder_due(&site(false, Some(end)), today), None);
        assert_eq!(reminder_due(&site(true, None), today), None);
        // The date moved later: the reminders of the new date are due again.
        let later = ahead(today, 200);
        assert_eq!(reminder_due(&site(true, Some(later)), today), None);
        assert_eq!(
            reminder_due(&site(true, Some(later)), ahead(today, 115)),
            Some((later, 90))
        );
    }
}
