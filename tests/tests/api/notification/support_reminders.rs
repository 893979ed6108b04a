//! S&S life across the services: the registry's sweeper (`--support-sweep-interval`, short
//! here) publishes renewal reminders 90, 60 and 30 days before a site's last day of S&S and
//! the lapse after it; notification mails them to the RENEWAL contact, else ADMINISTRATIVE,
//! else PRIMARY (R1), in each recipient's language, through the real SMTP server.
//!
//! - Exactly once: a site whose S&S ends in 89 days gets one 90-day reminder (the milestone
//!   reached most recently, not 90 then 60), with two registry replicas sweeping and two
//!   notification replicas, one of them restarted twice; a later end date gets the
//!   reminders of its own.
//! - The recipient fallback of the renewal chain, each notice citing its rule.
//! - The lapse: the event, the audit record, the notice, and C5 no longer requiring an STC.

use std::collections::HashMap;
use std::time::Duration;

use crate::notification::helpers::{
    FAST_DELIVERY, Kind, MAIL_FROM, Role, State, Suite, TestUser, brief, cites, eventually,
    site_request,
};
use kc_contacts::domain::support_life::today;
use kc_proto::contacts::{self as cpb};
use kc_suite_tests::{NO_DRAIN, Sandbox, Service};
use kc_testkit::Restartable;
use kc_testkit::secrets::{contacts_key_args, notification_key_args};

/// The registry's S&S sweeper runs this often in these tests.
const SWEEP: [&str; 2] = ["--support-sweep-interval", "200ms"];

/// The day `offset` days from today (UTC), as the registry reads and writes it.
fn day(offset: i64) -> String {
    let today = today();
    let mut days = std::iter::successors(Some(today), |d| {
        if offset >= 0 {
            d.succ_opt()
        } else {
            d.pred_opt()
        }
    });
    days.nth(offset.unsigned_abs() as usize)
        .expect("a date")
        .to_string()
}

/// `2027-03-31` as a French reader reads it: `31/03/2027`.
fn french(day: &str) -> String {
    let parts: Vec<&str> = day.split('-').collect();
    format!("{}/{}/{}", parts[2], parts[1], parts[0])
}

/// The command line of a second registry on the same database, sweeping as often as the
/// first (it follows nobody's events: the sweeper needs none).
fn registry_replica_argv(s: &Suite) -> Vec<String> {
    let mut argv: Vec<String> = vec![
        "kc-contacts".into(),
        "--database-url".into(),
        s.db.url.clone(),
        "--identity-url".into(),
        s.url(Service::Identity),
    ];
    argv.extend(NO_DRAIN.iter().map(|flag| (*flag).to_owned()));
    argv.extend(contacts_key_args());
    argv.extend(SWEEP.iter().map(|flag| (*flag).to_owned()));
    // A small pool: the shared test server's connections are few.
    argv.extend(["--db-max-connections".to_owned(), "4".to_owned()]);
    argv
}

/// A second notification on the same database and SMTP server, with its own account.
async fn notification_replica(s: &Suite) -> Restartable {
    let (client_id, secret) = s
        .service_account_credentials("kc-notification-replica", &[])
        .await;
    let mut argv: Vec<String> = vec![
        "kc-notification".into(),
        "--database-url".into(),
        s.db.url.clone(),
        "--identity-url".into(),
        s.url(Service::Identity),
        "--contacts-url".into(),
        s.url(Service::Contacts),
        "--access-url".into(),
        s.url(Service::Access),
        "--client-id".into(),
        client_id.to_string(),
        "--client-secret".into(),
        secret,
        "--smtp-url".into(),
        s.smtp().url(),
        "--mail-from".into(),
        MAIL_FROM.into(),
    ];
    argv.extend(NO_DRAIN.iter().map(|flag| (*flag).to_owned()));
    argv.extend(notification_key_args());
    argv.extend(FAST_DELIVERY.iter().map(|flag| (*flag).to_owned()));
    Sandbox::another(Service::Notification, argv).await.0
}

/// A site with active S&S and no end date yet (no reminder is due), `primary` its primary
/// and `stc` its site technical contact (C5).
async fn supported_site(s: &Suite, primary: &TestUser, stc: &TestUser, lang: &str) -> cpb::Site {
    let (site_number, customer_number) = s.numbers();
    s.create_site(cpb::CreateSiteRequest {
        support_active: true,
        site_technical_user_id: stc.id.to_string(),
        ..site_request(&site_number, &customer_number, primary.id, lang)
    })
    .await
}

/// The site's technical contact (C5).
async fn stc_of(s: &Suite, site_id: &str) -> cpb::Contact {
    s.registry()
        .list_site_contacts(s.op(cpb::ListSiteContactsRequest {
            site_id: site_id.into(),
            ..Default::default()
        }))
        .await
        .expect("list contacts")
        .into_inner()
        .contacts
        .into_iter()
        .find(|c| c.role == Role::SiteTechnical as i32)
        .expect("the STC")
}

/// Sets the site's last day of S&S, as an operator.
async fn set_end_date(s: &Suite, site_id: &str, end: &str) -> cpb::Site {
    s.registry()
        .update_site(s.op(cpb::UpdateSiteRequest {
            site: Some(cpb::Site {
                site_id: site_id.into(),
                support_end_date: end.into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["support_end_date".into()],
            }),
            etag: String::new(),
        }))
        .await
        .expect("update the end date")
        .into_inner()
        .site
        .expect("site")
}

/// The registry's S&S reminders of the site: `(last day, milestone, days left, recipients)`.
async fn reminders(s: &Suite, site_id: &str) -> Vec<(String, i32, i32, Vec<cpb::Recipient>)> {
    s.registry_events("support.ending")
        .await
        .into_iter()
        .filter(|event| {
            event
                .site
                .as_ref()
                .is_some_and(|site| site.site_id == site_id)
        })
        .filter_map(|event| match event.payload? {
            cpb::event::Payload::SupportEnding(ending) => Some((
                ending.support_end_date,
                ending.milestone_days,
                ending.days_left,
                ending.recipients,
            )),
            _ => None,
        })
        .collect()
}

/// The notifications of `kind` on the site (any recipient, any state).
async fn of_kind(
    s: &Suite,
    site_id: &str,
    kind: Kind,
) -> Vec<kc_proto::notification::Notification> {
    s.list(site_id, None, State::Unspecified)
        .await
        .into_iter()
        .filter(|n| n.kind == kind as i32)
        .collect()
}

/// Lets every sweeper run many times.
async fn let_sweepers_run() {
    tokio::time::sleep(Duration::from_secs(3)).await;
}

/// Sites that end on the same day as the test's main one, so that the two registries'
/// sweeps overlap on many sites at once.
const CROWD: usize = 40;

// rules R1, S&S life: a site whose S&S ends in 89 days gets exactly one reminder, the 90-day
// one (the milestone reached most recently), with two registries sweeping at once and two
// notifications following, one restarted twice; so do the sites of a crowd ending that
// day. Moving the end date later brings the reminder of the new date.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_site_ending_in_89_days_gets_one_90_day_reminder_across_restarts_and_replicas() {
    let mut s = Suite::start_with_registry(&SWEEP).await;
    let _notification_b = notification_replica(&s).await;
    let primary = s.user("fr").await;
    let stc = s.user("en").await;
    let site = supported_site(&s, &primary, &stc, "en").await;
    let site_id = site.site_id.clone();
    let mut crowd = Vec::with_capacity(CROWD);
    for _ in 0..CROWD {
        crowd.push(supported_site(&s, &primary, &stc, "en").await.site_id);
    }
    let mut every_site = crowd.clone();
    every_site.push(site_id.clone());

    // While the registry and notification A are down, every site gets its end date, 89 days
    // ahead (as a batch import would set it); then two registries start at once, and both
    // sweep at start over the same due sites.
    s.stop_registry().await;
    s.stop_notification().await;
    let end = day(89);
    let pool = s.registry_pool().await;
    let ids: Vec<uuid::Uuid> = every_site
        .iter()
        .map(|id| uuid::Uuid::parse_str(id).expect("site id"))
        .collect();
    let updated = sqlx::query(
        "UPDATE sites SET support_end_date = $1::date, version = version + 1 \
         WHERE site_id = ANY($2)",
    )
    .bind(&end)
    .bind(&ids)
    .execute(&pool)
    .await
    .expect("set the end dates");
    assert_eq!(updated.rows_affected() as usize, CROWD + 1);
    pool.close().await;
    let argv = registry_replica_argv(&s);
    let ((), (_registry_b, _)) = tokio::join!(
        s.start_registry(),
        Sandbox::another(Service::Contacts, argv)
    );
    eventually("the registries publish the reminders", || async {
        let published = reminders(&s, &site_id).await;
        if published.is_empty() {
            Err("no reminder yet".to_owned())
        } else {
            Ok(())
        }
    })
    .await;
    s.start_notification().await;
    s.stop_notification().await;
    s.start_notification().await;

    // The notice: to the PRIMARY (no RENEWAL nor ADMINISTRATIVE contact, R1), in French.
    let (notice, mail) = s
        .notice(
            &site_id,
            &primary,
            Kind::SupportEnding,
            &primary.email,
            "fr",
        )
        .await;
    assert!(cites(&notice.rule, "R1"), "{:?}", notice.rule);
    let text = mail.text.as_deref().unwrap_or_default();
    assert!(
        text.contains(&french(&end)),
        "the last day, in French: {text}"
    );
    assert!(text.contains("90"), "the milestone: {text}");

    // Many sweeps later, by both registries: one reminder, one notice, one mail per site.
    eventually("every site's reminder is delivered", || async {
        let delivered = of_kind(&s, "", Kind::SupportEnding)
            .await
            .into_iter()
            .filter(|n| n.state == State::Delivered as i32)
            .count();
        if delivered > CROWD {
            Ok(())
        } else {
            Err(format!("{delivered} delivered"))
        }
    })
    .await;
    let_sweepers_run().await;
    let found = reminders(&s, &site_id).await;
    assert_eq!(found.len(), 1, "one reminder: {found:#?}");
    let (found_end, milestone, days_left, recipients) = &found[0];
    assert_eq!((found_end, *milestone, *days_left), (&end, 90, 89));
    assert_eq!(recipients.len(), 1, "{recipients:#?}");
    assert_eq!(recipients[0].user_id, primary.id.to_string());
    assert_eq!(recipients[0].role, Role::Primary as i32);
    assert!(cites(&recipients[0].rule, "R1"), "{:?}", recipients[0].rule);
    let mut per_site: HashMap<String, usize> = HashMap::new();
    for event in s.registry_events("support.ending").await {
        *per_site
            .entry(event.site.expect("site").site_id)
            .or_default() += 1;
    }
    let twice: Vec<_> = per_site.iter().filter(|(_, count)| **count != 1).collect();
    assert!(twice.is_empty(), "one reminder per site: {twice:?}");
    assert_eq!(per_site.len(), CROWD + 1);
    let notices = of_kind(&s, "", Kind::SupportEnding).await;
    assert_eq!(notices.len(), CROWD + 1, "{:#?}", brief(&notices));
    let mails = s
        .smtp()
        .messages()
        .into_iter()
        .filter(|m| m.header("X-Keycontacts-Kind") == Some("NOTICE_KIND_SUPPORT_ENDING"))
        .count();
    assert_eq!(mails, CROWD + 1, "one reminder mail per site");

    // The end date moves one day later: the new date gets its 90-day reminder.
    let later = day(90);
    set_end_date(&s, &site_id, &later).await;
    eventually("the reminder of the new date is delivered", || async {
        let notices = of_kind(&s, &site_id, Kind::SupportEnding).await;
        let delivered = notices
            .iter()
            .filter(|n| n.state == State::Delivered as i32)
            .count();
        if delivered == 2 {
            Ok(())
        } else {
            Err(format!("{:#?}", brief(&notices)))
        }
    })
    .await;
    let_sweepers_run().await;
    let found: Vec<(String, i32)> = reminders(&s, &site_id)
        .await
        .into_iter()
        .map(|(end, milestone, _, _)| (end, milestone))
        .collect();
    assert_eq!(found, [(end, 90), (later, 90)]);
    assert_eq!(of_kind(&s, &site_id, Kind::SupportEnding).await.len(), 2);
}

// rule R1 and C6: renewal reminders go to the RENEWAL contact, else the ADMINISTRATIVE, else
// the PRIMARY, and to nobody else; each notice cites the rule that chose its recipient.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reminders_go_to_renewal_else_administrative_else_primary() {
    let s = Suite::start_with_registry(&SWEEP).await;
    let primary = s.user("fr").await;
    let stc = s.user("fr").await;
    let renewal = s.user("en").await;
    let administrative = s.user("fr").await;

    // Each site gets its contacts before its end date is set (the sweeper runs meanwhile).
    let with_renewal = supported_site(&s, &primary, &stc, "fr").await;
    s.assign(&with_renewal.site_id, &renewal, Role::Renewal, "")
        .await;
    s.assign(
        &with_renewal.site_id,
        &administrative,
        Role::Administrative,
        "",
    )
    .await;
    let with_administrative = supported_site(&s, &primary, &stc, "fr").await;
    s.assign(
        &with_administrative.site_id,
        &administrative,
        Role::Administrative,
        "",
    )
    .await;
    let primary_only = supported_site(&s, &primary, &stc, "fr").await;

    let end = day(30);
    let cases = [
        (&with_renewal, &renewal, "en", "C6"),
        (&with_administrative, &administrative, "fr", "C3"),
        (&primary_only, &primary, "fr", "R1"),
    ];
    for (site, _, _, _) in &cases {
        set_end_date(&s, &site.site_id, &end).await;
    }
    for (site, recipient, locale, rule) in cases {
        let (notice, mail) = s
            .notice(
                &site.site_id,
                recipient,
                Kind::SupportEnding,
                &recipient.email,
                locale,
            )
            .await;
        assert!(cites(&notice.rule, rule), "{rule}: {:?}", notice.rule);
        let text = mail.text.as_deref().unwrap_or_default();
        let shown = if locale == "fr" {
            french(&end)
        } else {
            end.clone()
        };
        assert!(text.contains(&shown), "{text}");
        // Nobody else of the site is reminded: the chain stops at the first role held.
        let notices = of_kind(&s, &site.site_id, Kind::SupportEnding).await;
        assert_eq!(notices.len(), 1, "{rule}: {:#?}", brief(&notices));
        let published = reminders(&s, &site.site_id).await;
        assert_eq!(published.len(), 1, "{published:#?}");
        assert_eq!(published[0].1, 30, "the 30-day milestone");
        let chosen: Vec<&str> = published[0].3.iter().map(|r| r.user_id.as_str()).collect();
        assert_eq!(chosen, [recipient.id.to_string()]);
    }
}

// The lapse: a site whose last day of S&S passed becomes inactive, with the event, the audit
// record (no actor: the registry made the change) and the notice to the renewal chain; C5
// no longer requires its STC, which could not be removed before.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s_and_s_lapses_after_its_last_day_and_c5_lifts() {
    let s = Suite::start_with_registry(&SWEEP).await;
    let primary = s.user("fr").await;
    let stc = s.user("fr").await;
    let renewal = s.user("en").await;
    let site = supported_site(&s, &primary, &stc, "fr").await;
    let site_id = site.site_id.clone();
    s.assign(&site_id, &renewal, Role::Renewal, "").await;
    let stc_contact = stc_of(&s, &site_id).await;
    let remove_stc = || async {
        s.registry()
            .remove_contact(s.op(cpb::RemoveContactRequest {
                contact_id: stc_contact.contact_id.clone(),
                ..Default::default()
            }))
            .await
    };
    // rule C5: while S&S is active the STC stays.
    let refused = remove_stc().await.expect_err("C5 keeps the STC");
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert!(refused.message().contains("C5"), "{}", refused.message());

    let end = day(-1);
    set_end_date(&s, &site_id, &end).await;
    // The event, once, with the site inactive.
    let lapsed = eventually("the registry records the lapse", || async {
        let events = s.registry_events("support.lapsed").await;
        events
            .into_iter()
            .find(|e| e.site.as_ref().is_some_and(|site| site.site_id == site_id))
            .ok_or_else(|| "no lapse yet".to_owned())
    })
    .await;
    assert_eq!(lapsed.actor_id, "", "the registry made the change itself");
    let cpb::event::Payload::SupportLapsed(payload) = lapsed.payload.clone().expect("payload")
    else {
        panic!("a SupportLapsed payload: {lapsed:#?}");
    };
    assert_eq!(payload.support_end_date, end);
    let told: Vec<&str> = payload
        .recipients
        .iter()
        .map(|r| r.user_id.as_str())
        .collect();
    assert_eq!(told, [renewal.id.to_string()]);
    assert!(!lapsed.site.as_ref().expect("site").support_active);
    let site_now = s
        .registry()
        .get_site(s.op(cpb::GetSiteRequest {
            site_id: site_id.clone(),
        }))
        .await
        .expect("get site")
        .into_inner()
        .site
        .expect("site");
    assert!(!site_now.support_active, "S&S is inactive");
    assert_eq!(site_now.support_end_date, end);

    // The audit record.
    let records = s
        .registry()
        .list_audit_records(s.op(cpb::ListAuditRecordsRequest {
            site_id: site_id.clone(),
            ..Default::default()
        }))
        .await
        .expect("audit")
        .into_inner()
        .records;
    let lapse: Vec<_> = records
        .iter()
        .filter(|r| r.action == "support.lapsed")
        .collect();
    assert_eq!(lapse.len(), 1, "{records:#?}");
    assert_eq!(lapse[0].actor_id, "");
    assert_eq!(lapse[0].resource_id, site_id);
    assert!(cites(&lapse[0].reason, "C5"), "{:?}", lapse[0].reason);
    assert!(
        lapse[0].after_json.contains("false"),
        "{:?}",
        lapse[0].after_json
    );

    // The notice, to the RENEWAL contact in English; no reminder for a day already past.
    let (notice, mail) = s
        .notice(
            &site_id,
            &renewal,
            Kind::SupportLapsed,
            &renewal.email,
            "en",
        )
        .await;
    assert!(cites(&notice.rule, "C6"), "{:?}", notice.rule);
    let text = mail.text.as_deref().unwrap_or_default();
    assert!(text.contains(&end), "{text}");
    let_sweepers_run().await;
    assert_eq!(of_kind(&s, &site_id, Kind::SupportLapsed).await.len(), 1);
    assert!(of_kind(&s, &site_id, Kind::SupportEnding).await.is_empty());
    assert!(reminders(&s, &site_id).await.is_empty());
    let lapses = s
        .registry_events("support.lapsed")
        .await
        .into_iter()
        .filter(|e| e.site.as_ref().is_some_and(|site| site.site_id == site_id))
        .count();
    assert_eq!(lapses, 1, "one lapse");

    // rule C5 lifted: the STC may go now.
    remove_stc()
        .await
        .expect("without S&S the STC is no longer required");
}

// rule C5 lifts on the day after the last day of S&S, to the day: the registry's checks count
// the date, so the STC may go before the sweeper (default interval, one minute) records the
// lapse.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn c5_lifts_on_the_day_before_the_sweeper_records_the_lapse() {
    let s = Suite::start().await;
    let primary = s.user("fr").await;
    let stc = s.user("fr").await;
    let site = supported_site(&s, &primary, &stc, "fr").await;
    let stc_contact = stc_of(&s, &site.site_id).await;
    set_end_date(&s, &site.site_id, &day(-1)).await;
    s.registry()
        .remove_contact(s.op(cpb::RemoveContactRequest {
            contact_id: stc_contact.contact_id.clone(),
            ..Default::default()
        }))
        .await
        .expect("the last day passed: C5 no longer requires the STC");
    let site_now = s
        .registry()
        .get_site(s.op(cpb::GetSiteRequest {
            site_id: site.site_id.clone(),
        }))
        .await
        .expect("get site")
        .into_inner()
        .site
        .expect("site");
    assert!(
        site_now.support_active,
        "the sweeper has not recorded the lapse yet"
    );
}
