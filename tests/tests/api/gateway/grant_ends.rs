//! Rule T9, grants with an end (issue 15, "What must be shown"), through the gateway with the
//! real services and a real SMTP server: a grant whose `valid_until` is 3 s ahead is allowed
//! before and denied after (the AuthorizationService's `Check` for an `authz` service account,
//! and GetAccessProfile), its user is mailed before the end ("ending soon") and at the end,
//! the end is in the site's audit trail; GetAccessProfile, ListSiteAccess and GetMe show the
//! end; `DecideAccessRequest` approves "for a duration"; bad ends are refused as invalid
//! naming the field and the rule, and write nothing. Access management sweeps every 200 ms
//! here (`--sweep-interval`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::gateway::helpers::*;
use kc_proto::access::{self as apb, Permission as P};
use kc_proto::gateway::authorization_service_client::AuthorizationServiceClient;
use kc_proto::gateway::{self as gw};
use kc_suite_tests::Sandbox;
use tonic::Code;

const ENDING_SOON: &str = "NOTICE_KIND_RIGHTS_ENDING_SOON";
const ENDED: &str = "NOTICE_KIND_RIGHTS_ENDED";

/// The suite with access management sweeping every 200 ms.
async fn suite() -> Suite {
    suite_sweeping_every("200ms").await
}

/// The suite with access management sweeping every `interval` (and once at its start).
async fn suite_sweeping_every(interval: &str) -> Suite {
    let mut gateway_flags = vec!["--session-rate-limit", "off"];
    for flag in WRITE_LIMITS {
        gateway_flags.extend([flag, "off"]);
    }
    let sandbox = Sandbox::builder()
        .with(Service::Contacts)
        .with(Service::Access)
        .with(Service::Notification)
        .with(Service::Gateway)
        .flags(Service::Identity, &["--code-mail-interval", "0s"])
        .flags(Service::Access, &["--sweep-interval", interval])
        .flags(Service::Gateway, &gateway_flags)
        .start()
        .await;
    Suite {
        gateway_channel: sandbox.channel(Service::Gateway),
        sandbox,
    }
}

/// Seconds since the epoch now.
fn now_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after the epoch")
        .as_secs() as i64
}

/// A whole second `seconds` from now (3 s means between 3 and 4 s ahead).
fn seconds_ahead(seconds: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: now_seconds() + 1 + seconds,
        nanos: 0,
    }
}

/// `HH:MM UTC` of a time, as notices write it.
fn clock(time: &prost_types::Timestamp) -> String {
    let of_day = time.seconds.rem_euclid(86_400);
    format!("{:02}:{:02} UTC", of_day / 3600, of_day % 3600 / 60)
}

/// Sleeps until `time` has passed by `margin`.
async fn sleep_past(time: &prost_types::Timestamp, margin: Duration) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after the epoch");
    let end = Duration::from_secs(time.seconds as u64);
    tokio::time::sleep(end.saturating_sub(now) + margin).await;
}

/// `by` sets `tools` for `user` on the site with `valid_until` (and `without_end`).
async fn set_tools_until(
    suite: &Suite,
    by: &str,
    site_id: &str,
    user: &str,
    tools: apb::ToolAccess,
    valid_until: Option<prost_types::Timestamp>,
    without_end: bool,
) -> Result<gw::SetToolAccessResponse, tonic::Status> {
    set_tools_within(
        suite,
        by,
        site_id,
        user,
        tools,
        (None, valid_until),
        without_end,
    )
    .await
}

/// `by` sets `tools` for `user` on the site with a start and an end.
async fn set_tools_within(
    suite: &Suite,
    by: &str,
    site_id: &str,
    user: &str,
    tools: apb::ToolAccess,
    (valid_from, valid_until): (
        Option<prost_types::Timestamp>,
        Option<prost_types::Timestamp>,
    ),
    without_end: bool,
) -> Result<gw::SetToolAccessResponse, tonic::Status> {
    suite
        .gw()
        .set_tool_access(authed(
            Some(by),
            gw::SetToolAccessRequest {
                site_id: site_id.into(),
                user_id: user.into(),
                tools: Some(tools),
                reason: "contractor for the migration".into(),
                etag: String::new(),
                valid_until,
                without_end,
                valid_from,
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

/// Whether the `authz` service account's `Check` allows `permission` to `user` on the site.
async fn allowed(
    client: &AuthorizationServiceClient<tonic::transport::Channel>,
    token: &str,
    site_id: &str,
    user: &str,
    permission: P,
) -> gw::CheckResponse {
    client
        .clone()
        .check(authed(
            Some(token),
            gw::CheckRequest {
                user_id: user.into(),
                site_id: site_id.into(),
                permission: permission as i32,
                consistency: None,
            },
        ))
        .await
        .expect("check")
        .into_inner()
}

/// The site `site_id` as GetMe lists it to `token`'s holder, with its grant's start and end;
/// `expected` says why it must be there.
async fn my_site(suite: &Suite, token: &str, site_id: &str, expected: &str) -> gw::MySite {
    suite
        .gw()
        .get_me(authed(Some(token), gw::GetMeRequest {}))
        .await
        .expect("get me")
        .into_inner()
        .sites
        .into_iter()
        .find(|mine| mine.site.as_ref().is_some_and(|s| s.site_id == site_id))
        .expect(expected)
}

/// Asserts that `user`'s profile on the site was never written (its etag is still "0").
async fn assert_nothing_written(suite: &Suite, site_id: &str, user: &str) {
    let untouched = suite.profile(site_id, user).await.expect("profile");
    assert_eq!(untouched.etag, "0", "nothing was written: {untouched:?}");
}

/// Every audit entry of the site, newest first, as `by` lists them.
async fn audit(suite: &Suite, by: &str, site_id: &str) -> Vec<gw::AuditEntry> {
    suite
        .gw()
        .list_site_audit(authed(
            Some(by),
            gw::ListSiteAuditRequest {
                site_id: site_id.into(),
                page_size: 1000,
                page_token: String::new(),
            },
        ))
        .await
        .expect("list the site's audit")
        .into_inner()
        .entries
}

/// The position of the first mail of `kind` to `email` among every mail received.
fn position(suite: &Suite, email: &str, kind: &str) -> usize {
    suite
        .smtp()
        .messages()
        .iter()
        .position(|message| is_mail(message, email, kind))
        .unwrap_or_else(|| panic!("no {kind} mail to {email}"))
}

// rule T9: a grant with an end counts until it, to the second, then it is gone; its user is
// told beforehand and at the end, and the end is audited.
#[tokio::test]
async fn a_grant_counts_until_its_end_then_is_removed_told_and_audited() {
    let suite = suite().await;
    let primary = suite.person("Primary Owner").await;
    let contractor = suite.person_in("Camille Prestataire", "fr").await;
    let site = suite.create_site("T9 site", &primary, None).await;
    let site_id = site.site_id.clone();
    suite.wait_role(&site_id, &primary.id, Role::Primary).await;
    // The contractor is a site user: its roles imply nothing (T3), so only the grant counts.
    suite.assign(&site_id, &contractor, Role::SiteUser).await;
    let (_, authz) = suite
        .scoped_service_account("kc-portal-grant-ends", &["authz"])
        .await;
    let client = AuthorizationServiceClient::new(suite.gateway_channel.clone());

    // The primary grants software FULL until 3 to 4 s from now.
    let end = seconds_ahead(3);
    let full = tools(|t| t.software = apb::SoftwareAccess::Full as i32);
    let granted = set_tools_until(
        &suite,
        &primary.token,
        &site_id,
        &contractor.id,
        full,
        Some(end),
        false,
    )
    .await
    .expect("grant with an end")
    .profile
    .expect("profile");
    assert_eq!(granted.valid_until, Some(end), "{granted:?}");

    // Before the end: allowed, and every view shows the end.
    let before = allowed(
        &client,
        &authz,
        &site_id,
        &contractor.id,
        P::SoftwareDownload,
    )
    .await;
    assert!(before.allowed, "{before:?}");
    assert_eq!(
        before.reason,
        "explicit grant: software FULL >= DOWNLOADS_ONLY"
    );
    let profile = suite
        .profile(&site_id, &contractor.id)
        .await
        .expect("profile");
    assert_eq!(profile.valid_until, Some(end));
    let listed = suite
        .gw()
        .list_site_access(authed(
            Some(&primary.token),
            gw::ListSiteAccessRequest {
                site_id: site_id.clone(),
                page_size: 100,
                page_token: String::new(),
            },
        ))
        .await
        .expect("list site access")
        .into_inner();
    let entry = listed
        .entries
        .iter()
        .filter_map(|entry| entry.profile.as_ref())
        .find(|profile| profile.user_id == contractor.id)
        .expect("the contractor is listed");
    assert_eq!(entry.valid_until, Some(end));
    let mine = my_site(
        &suite,
        &contractor.token,
        &site_id,
        "the site is the contractor's",
    )
    .await;
    assert_eq!(mine.grant_valid_until, Some(end));

    // Told before the end, in its language (N1): the end is less than 7 days away.
    let soon = suite.mail(&contractor.email, ENDING_SOON, 1).await;
    let text = soon.text.clone().unwrap_or_default();
    assert!(text.contains("Logiciels et services"), "{text}");
    assert!(text.contains(&clock(&end)), "{text}");
    assert!(
        soon.header("Subject")
            .is_some_and(|s| s.contains("prennent fin")),
        "{soon:?}"
    );

    // After the end: denied at once, whether or not the sweeper has run yet.
    sleep_past(&end, Duration::from_millis(20)).await;
    let after = allowed(
        &client,
        &authz,
        &site_id,
        &contractor.id,
        P::SoftwareDownload,
    )
    .await;
    assert!(!after.allowed, "{after:?}");
    let profile = suite
        .profile(&site_id, &contractor.id)
        .await
        .expect("profile");
    assert_eq!(profile.valid_until, None, "{profile:?}");
    assert_eq!(
        profile.explicit.expect("explicit").software,
        apb::SoftwareAccess::None as i32
    );

    // Told at the end, after the notice before it.
    let ended = suite.mail(&contractor.email, ENDED, 1).await;
    let text = ended.text.clone().unwrap_or_default();
    assert!(text.contains("ont pris fin"), "{text}");
    assert!(text.contains("Logiciels et services"), "{text}");
    assert!(
        position(&suite, &contractor.email, ENDING_SOON)
            < position(&suite, &contractor.email, ENDED)
    );

    // Audited: the service itself ended it, with the grant and its end before.
    let entries = audit(&suite, &primary.token, &site_id).await;
    let end_entry = entries
        .iter()
        .find(|entry| entry.action == "access.ended")
        .expect("the end is audited");
    assert_eq!(end_entry.resource_id, contractor.id);
    assert!(end_entry.actor_id.is_empty(), "{end_entry:?}");
    assert!(cites(&end_entry.reason, "T9"), "{end_entry:?}");
    assert!(
        end_entry.before_json.contains("valid_until"),
        "{end_entry:?}"
    );
    assert!(
        !end_entry.after_json.contains("valid_until"),
        "{end_entry:?}"
    );

    // Once each, across many sweeps.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(suite.mails(&contractor.email, ENDING_SOON).len(), 1);
    assert_eq!(suite.mails(&contractor.email, ENDED).len(), 1);
    let ends = audit(&suite, &primary.token, &site_id)
        .await
        .into_iter()
        .filter(|entry| entry.action == "access.ended")
        .count();
    assert_eq!(ends, 1);
}

// rule T9: an approval may grant for a duration; bad ends are refused, naming the field and
// the rule, and write nothing; an approval never shortens a grant the requester holds.
#[tokio::test]
async fn an_approval_grants_for_a_duration_and_bad_ends_are_refused() {
    let suite = suite().await;
    let primary = suite.person("Primary Owner").await;
    let requester = suite.person("Robin Requester").await;
    let holder = suite.person("Harper Holder").await;
    let site = suite.create_site("T9 approvals", &primary, None).await;
    let site_id = site.site_id.clone();
    suite.wait_role(&site_id, &primary.id, Role::Primary).await;
    let numbers = suite.site_now(&site_id).await;

    // Bad ends on a grant: in the past, or both an end and none.
    let full = tools(|t| t.software = apb::SoftwareAccess::Full as i32);
    let past = prost_types::Timestamp {
        seconds: now_seconds() - 60,
        nanos: 0,
    };
    let refused = expect_field(
        set_tools_until(
            &suite,
            &primary.token,
            &site_id,
            &requester.id,
            full,
            Some(past),
            false,
        )
        .await,
        "valid_until",
    );
    assert!(cites(refused.message(), "T9"), "{refused:?}");
    expect_field(
        set_tools_until(
            &suite,
            &primary.token,
            &site_id,
            &requester.id,
            full,
            Some(seconds_ahead(60)),
            true,
        )
        .await,
        "without_end",
    );
    assert_nothing_written(&suite, &site_id, &requester.id).await;

    // The requester asks for reporting; the holder, who holds downloads for good, too.
    suite
        .grant(
            &site_id,
            &holder.id,
            tools(|t| t.software = apb::SoftwareAccess::DownloadsOnly as i32),
        )
        .await;
    let nominate = |token: String| {
        let numbers = numbers.clone();
        let gw = suite.gw();
        async move {
            gw.clone()
                .self_nominate(authed(
                    Some(&token),
                    reports_nomination(&numbers, "quarterly reports"),
                ))
                .await
                .expect("self-nominate")
                .into_inner()
                .request
                .expect("request")
        }
    };
    let asked = nominate(requester.token.clone()).await;
    let held = nominate(holder.token.clone()).await;
    let decide = |request_id: &str,
                  decision: gw::AccessDecision,
                  valid_until: Option<prost_types::Timestamp>,
                  valid_for: Option<prost_types::Duration>| {
        let gw = suite.gw();
        let request = gw::DecideAccessRequestRequest {
            request_id: request_id.into(),
            decision: decision as i32,
            reason: "for the audit season".into(),
            valid_until,
            valid_for,
            ..Default::default()
        };
        let token = primary.token.clone();
        async move {
            gw.clone()
                .decide_access_request(authed(Some(&token), request))
                .await
                .map(tonic::Response::into_inner)
        }
    };
    let days_90 = prost_types::Duration {
        seconds: 90 * 86_400,
        nanos: 0,
    };

    // Bad: no time at all, both forms, an end on a rejection. The request stays PENDING.
    let zero = prost_types::Duration::default();
    let refused = expect_field(
        decide(
            &asked.request_id,
            gw::AccessDecision::Approve,
            None,
            Some(zero),
        )
        .await,
        "valid_for",
    );
    assert!(cites(refused.message(), "T9"), "{refused:?}");
    expect_field(
        decide(
            &asked.request_id,
            gw::AccessDecision::Approve,
            Some(seconds_ahead(60)),
            Some(days_90),
        )
        .await,
        "valid_for",
    );
    expect_field(
        decide(
            &asked.request_id,
            gw::AccessDecision::Reject,
            Some(seconds_ahead(60)),
            None,
        )
        .await,
        "valid_until",
    );
    assert_nothing_written(&suite, &site_id, &requester.id).await;

    // Approved for 90 days: the grant ends 90 days after the approval.
    let before = now_seconds();
    let approved = decide(
        &asked.request_id,
        gw::AccessDecision::Approve,
        None,
        Some(days_90),
    )
    .await
    .expect("approve for 90 days");
    let after = now_seconds();
    let request = approved.request.expect("request");
    assert_eq!(request.state, apb::AccessRequestState::Approved as i32);
    let profile = approved.profile.expect("profile");
    let end = profile.valid_until.expect("the grant ends");
    assert!(
        (before + 90 * 86_400..=after + 1 + 90 * 86_400).contains(&end.seconds),
        "{end:?}"
    );
    assert_eq!(
        profile.explicit.expect("explicit").reporting,
        apb::ReportingAccess::View as i32
    );
    // 90 days is more than the 7 days of the notice: nothing is mailed about the end yet.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(suite.mails(&requester.email, ENDING_SOON).is_empty());

    // The holder's downloads never end: an approval with an end would shorten them (T9).
    let refused = decide(
        &held.request_id,
        gw::AccessDecision::Approve,
        None,
        Some(days_90),
    )
    .await;
    let status = expect_code(refused, Code::FailedPrecondition);
    assert!(cites(status.message(), "T9"), "{status:?}");
    let holder_profile = suite.profile(&site_id, &holder.id).await.expect("profile");
    assert_eq!(holder_profile.valid_until, None);
    assert_eq!(
        holder_profile.explicit.expect("explicit").reporting,
        apb::ReportingAccess::None as i32
    );
}

// rule T9: a grant with a start counts from it, to the second, and until its end; it shows
// what it will give meanwhile, changes only by revocation before it starts, and its start is
// audited; a start is only for a new grant.
#[tokio::test]
async fn a_grant_with_a_start_counts_from_it_until_its_end() {
    let suite = suite().await;
    let primary = suite.person("Primary Owner").await;
    let analyst = suite.person("Alex Analyst").await;
    let holder = suite.person("Harper Holder").await;
    let site = suite.create_site("T9 starts", &primary, None).await;
    let site_id = site.site_id.clone();
    suite.wait_role(&site_id, &primary.id, Role::Primary).await;
    let (_, authz) = suite
        .scoped_service_account("kc-reporting-tool", &["authz"])
        .await;
    let client = AuthorizationServiceClient::new(suite.gateway_channel.clone());
    let reports = tools(|t| t.reporting = apb::ReportingAccess::View as i32);

    // Bad: a start after the end, a start in the past; nothing is written.
    let (start, end) = (seconds_ahead(2), seconds_ahead(4));
    let refused = expect_field(
        set_tools_within(
            &suite,
            &primary.token,
            &site_id,
            &analyst.id,
            reports,
            (Some(end), Some(start)),
            false,
        )
        .await,
        "valid_until",
    );
    assert!(cites(refused.message(), "T9"), "{refused:?}");
    let past = prost_types::Timestamp {
        seconds: now_seconds() - 1,
        nanos: 0,
    };
    expect_field(
        set_tools_within(
            &suite,
            &primary.token,
            &site_id,
            &analyst.id,
            reports,
            (Some(past), None),
            false,
        )
        .await,
        "valid_from",
    );
    assert_nothing_written(&suite, &site_id, &analyst.id).await;

    // Reporting from 2 to 3 s from now until 4 to 5 s from now.
    let scheduled = set_tools_within(
        &suite,
        &primary.token,
        &site_id,
        &analyst.id,
        reports,
        (Some(start), Some(end)),
        false,
    )
    .await
    .expect("a grant with a start and an end")
    .profile
    .expect("profile");
    assert_eq!(scheduled.valid_from, Some(start));
    assert_eq!(scheduled.valid_until, Some(end));
    assert_eq!(
        scheduled.explicit.expect("explicit").reporting,
        apb::ReportingAccess::None as i32
    );
    assert_eq!(
        scheduled.pending_explicit.expect("pending").reporting,
        apb::ReportingAccess::View as i32
    );
    let before = allowed(&client, &authz, &site_id, &analyst.id, P::ReportsView).await;
    assert!(!before.allowed, "{before:?}");
    let mine = my_site(
        &suite,
        &analyst.token,
        &site_id,
        "the site is listed with its scheduled grant",
    )
    .await;
    assert_eq!(
        (mine.grant_valid_from, mine.grant_valid_until),
        (Some(start), Some(end))
    );
    // Before its start it changes only by revocation.
    let refused = set_tools_until(
        &suite,
        &primary.token,
        &site_id,
        &analyst.id,
        tools(|t| t.software = apb::SoftwareAccess::DownloadsOnly as i32),
        None,
        false,
    )
    .await;
    let status = expect_code(refused, Code::FailedPrecondition);
    assert!(cites(status.message(), "T9"), "{status:?}");

    // From the start: allowed at once.
    sleep_past(&start, Duration::from_millis(20)).await;
    let during = allowed(&client, &authz, &site_id, &analyst.id, P::ReportsView).await;
    assert!(during.allowed, "{during:?}");
    let profile = suite.profile(&site_id, &analyst.id).await.expect("profile");
    assert_eq!(profile.valid_from, None);
    assert_eq!(profile.pending_explicit, None);
    // Until the end.
    sleep_past(&end, Duration::from_millis(20)).await;
    let after = allowed(&client, &authz, &site_id, &analyst.id, P::ReportsView).await;
    assert!(!after.allowed, "{after:?}");

    // The start and the end are audited, each once.
    eventually("the start and the end are audited", || async {
        let entries = audit(&suite, &primary.token, &site_id).await;
        let count = |action: &str| {
            entries
                .iter()
                .filter(|e| e.action == action && e.resource_id == analyst.id)
                .count()
        };
        match (count("access.started"), count("access.ended")) {
            (1, 1) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    // A start is only for a new grant.
    suite
        .grant(
            &site_id,
            &holder.id,
            tools(|t| t.software = apb::SoftwareAccess::DownloadsOnly as i32),
        )
        .await;
    let refused = set_tools_within(
        &suite,
        &primary.token,
        &site_id,
        &holder.id,
        reports,
        (Some(seconds_ahead(60)), None),
        false,
    )
    .await;
    let status = expect_code(refused, Code::FailedPrecondition);
    assert!(cites(status.message(), "T9"), "{status:?}");

    // A grant that has not started is revoked like any other.
    let sam = suite.person("Sam Scheduled").await;
    set_tools_within(
        &suite,
        &primary.token,
        &site_id,
        &sam.id,
        reports,
        (Some(seconds_ahead(60)), None),
        false,
    )
    .await
    .expect("a grant that starts in a minute");
    suite.revoke(&site_id, &sam.id).await;
    let revoked = suite.profile(&site_id, &sam.id).await.expect("profile");
    assert_eq!(revoked.valid_from, None, "{revoked:?}");
    assert_eq!(revoked.pending_explicit, None, "{revoked:?}");
    assert_eq!(revoked.etag, "2", "{revoked:?}");
}

// rule T9 in the lookups: LookupSites and LookupUsers answer from the permission feed's table,
// which learns a grant's start or end only when the sweeper records it; with the sweeper
// asleep for an hour, they must still honour both to the second, as Check does, at every
// page size.
#[tokio::test]
async fn lookups_honour_a_grants_start_and_end_before_the_sweeper_records_them() {
    use crate::gateway::authorization_service::{all_sites, all_users};
    let suite = suite_sweeping_every("1h").await;
    let primary = suite.person("Primary Owner").await;
    let analyst = suite.person("Alex Analyst").await;
    let mut site_ids = Vec::new();
    for name in [
        "T9 lookups ending",
        "T9 lookups starting",
        "T9 lookups lasting",
    ] {
        let site = suite.create_site_applied(name, &primary, None).await;
        site_ids.push(site.site_id);
    }
    let (ending, starting, lasting) = (&site_ids[0], &site_ids[1], &site_ids[2]);
    let (_, authz) = suite
        .scoped_service_account("kc-reporting-tool", &["authz"])
        .await;
    let client = AuthorizationServiceClient::new(suite.gateway_channel.clone());
    let reports = tools(|t| t.reporting = apb::ReportingAccess::View as i32);
    let bound = seconds_ahead(3);
    for (site_id, term) in [
        (ending, (None, Some(bound))),
        (starting, (Some(bound), None)),
        (lasting, (None, None)),
    ] {
        set_tools_within(
            &suite,
            &primary.token,
            site_id,
            &analyst.id,
            reports,
            term,
            false,
        )
        .await
        .expect("a grant");
    }
    let sorted = |mut ids: Vec<&String>| {
        ids.sort();
        ids.into_iter().cloned().collect::<Vec<String>>()
    };
    // What the lookups and Check say of the analyst's reports: its sites, and for each site
    // whether it is among the site's users.
    let lookups = || async {
        let mut answers = Vec::new();
        for page_size in [1, 2, 0] {
            let (sites, _) =
                all_sites(&client, &authz, &analyst.id, P::ReportsView, page_size).await;
            let mut among_users = Vec::new();
            for site_id in &site_ids {
                let (users, _) =
                    all_users(&client, &authz, site_id, P::ReportsView, page_size).await;
                among_users.push(users.iter().any(|user| user.user_id == analyst.id));
            }
            answers.push((sites, among_users));
        }
        answers
    };
    let before = lookups().await;
    assert!(
        before
            .iter()
            .all(|answer| *answer == (sorted(vec![ending, lasting]), vec![true, false, true])),
        "before the bound: {before:?}"
    );
    sleep_past(&bound, Duration::from_millis(20)).await;
    let after = lookups().await;
    assert!(
        after
            .iter()
            .all(|answer| *answer == (sorted(vec![starting, lasting]), vec![false, true, true])),
        "after the bound, the sweeper asleep: {after:?}"
    );
    for (site_id, held) in [(ending, false), (starting, true), (lasting, true)] {
        let check = allowed(&client, &authz, site_id, &analyst.id, P::ReportsView).await;
        assert_eq!(
            check.allowed, held,
            "Check agrees with the lookups: {check:?}"
        );
    }
    // The lookups did not learn it from the sweeper: it has recorded neither bound.
    for site_id in [ending, starting] {
        let entries = audit(&suite, &primary.token, site_id).await;
        assert!(
            !entries
                .iter()
                .any(|e| e.action == "access.started" || e.action == "access.ended"),
            "the sweeper slept: {entries:?}"
        );
    }
}

// rule T7 through the gateway: a secondary contact (its role implies manage access UPDATE,
// T3) whose own grant has an end can neither remove that end nor push it later; the end
// stays where the primary put it. Ending it sooner is allowed.
#[tokio::test]
async fn nobody_extends_the_end_of_its_own_grant() {
    let suite = suite().await;
    let primary = suite.person("Primary Owner").await;
    let secondary = suite.person("Sam Secondary").await;
    let site = suite.create_site("T7 site", &primary, None).await;
    let site_id = site.site_id.clone();
    suite.wait_role(&site_id, &primary.id, Role::Primary).await;
    suite.assign(&site_id, &secondary, Role::Secondary).await;
    suite
        .wait_role(&site_id, &secondary.id, Role::Secondary)
        .await;
    let downloads = tools(|t| t.software = apb::SoftwareAccess::DownloadsOnly as i32);
    let end = seconds_ahead(3_600);
    set_tools_until(
        &suite,
        &primary.token,
        &site_id,
        &secondary.id,
        downloads,
        Some(end),
        false,
    )
    .await
    .expect("the primary grants until an hour from now");

    let attempts = [(None, true), (Some(seconds_ahead(7_200)), false)];
    for (valid_until, without_end) in attempts {
        let refused = set_tools_until(
            &suite,
            &secondary.token,
            &site_id,
            &secondary.id,
            downloads,
            valid_until,
            without_end,
        )
        .await
        .expect_err("its own end pushed later");
        assert!(
            matches!(
                refused.code(),
                tonic::Code::PermissionDenied | tonic::Code::FailedPrecondition
            ),
            "{refused:?}"
        );
        assert!(refused.message().contains("T7"), "{refused:?}");
    }
    let profile = suite
        .profile(&site_id, &secondary.id)
        .await
        .expect("profile");
    assert_eq!(profile.valid_until, Some(end), "the end did not move");

    // Sooner is allowed: giving up part of one's own time raises nothing.
    let sooner = seconds_ahead(1_800);
    let shortened = set_tools_until(
        &suite,
        &secondary.token,
        &site_id,
        &secondary.id,
        downloads,
        Some(sooner),
        false,
    )
    .await
    .expect("its own end brought sooner")
    .profile
    .expect("profile");
    assert_eq!(shortened.valid_until, Some(sooner));
}
