//! The operators' RPCs (issue 17): FindSite, ListCustomerSites, RetryNotification, and
//! ListDomainPolicies (operators and the site's approvers, A3, A7). Each works for an
//! operator and is refused to customers without the right, changing nothing; bad input is
//! INVALID_ARGUMENT naming the field.

use kc_proto::access::{self as apb};
use kc_proto::contacts::{self as cpb};
use kc_proto::gateway::{self as gw, find_site_request::Key};
use kc_proto::notification::{self as npb, NotificationState as State};
use tonic::Code;

use super::helpers::*;

/// The notification `notification_id` of the site, as the operator lists it.
pub async fn site_notification(
    suite: &Suite,
    site_id: &str,
    notification_id: &str,
) -> npb::Notification {
    let mut token = String::new();
    loop {
        let page = suite
            .gw()
            .list_site_notifications(authed(
                Some(&suite.operator.token),
                gw::ListSiteNotificationsRequest {
                    site_id: site_id.into(),
                    page_size: 1000,
                    page_token: token,
                },
            ))
            .await
            .expect("the operator lists the site's notifications")
            .into_inner();
        if let Some(found) = page
            .notifications
            .into_iter()
            .find(|n| n.notification_id == notification_id)
        {
            return found;
        }
        assert!(
            !page.next_page_token.is_empty(),
            "notification {notification_id} is not listed"
        );
        token = page.next_page_token;
    }
}

/// Waits until the notification reaches `state`.
pub async fn wait_state(suite: &Suite, site_id: &str, notification_id: &str, state: State) {
    eventually(
        &format!("notification {notification_id} is {state:?}"),
        || async move {
            let notification = site_notification(suite, site_id, notification_id).await;
            if notification.state == state as i32 {
                Ok(())
            } else {
                Err(format!("{notification:?}"))
            }
        },
    )
    .await;
}

/// A technical notice (to the STC, R1) that the mail server refuses for good (550): the
/// notification to `recipient`, once DEAD. The mail server accepts mail to the recipient
/// again afterwards.
pub async fn dead_notice(
    suite: &Suite,
    site_id: &str,
    recipient: &Person,
    key: &str,
) -> npb::Notification {
    // Every mail to the recipient is refused until the notice is given up: no other notice
    // in flight to it takes the failure in its place.
    suite
        .smtp()
        .fail_next_to(&recipient.email, 1000, 550, "5.1.1 mailbox unavailable");
    let sent = suite
        .gw()
        .send_notice(authed(
            Some(&suite.operator.token),
            gw::SendNoticeRequest {
                site_id: site_id.into(),
                kind: npb::NoticeKind::Technical as i32,
                params: [
                    ("topic".to_owned(), "maintenance".to_owned()),
                    ("summary".to_owned(), "planned outage".to_owned()),
                ]
                .into(),
                idempotency_key: key.into(),
            },
        ))
        .await
        .expect("the operator sends a technical notice")
        .into_inner();
    let notice = sent
        .notifications
        .into_iter()
        .find(|n| n.recipient_user_id == recipient.id)
        .expect("a notification to the recipient");
    wait_state(suite, site_id, &notice.notification_id, State::Dead).await;
    suite
        .smtp()
        .fail_next_to(&recipient.email, 0, 550, "5.1.1 mailbox unavailable");
    site_notification(suite, site_id, &notice.notification_id).await
}

async fn find_site(
    suite: &Suite,
    token: &str,
    key: Option<Key>,
) -> Result<cpb::Site, tonic::Status> {
    suite
        .gw()
        .find_site(authed(Some(token), gw::FindSiteRequest { key }))
        .await
        .map(|response| response.into_inner().site.expect("site"))
}

async fn customer_sites(
    suite: &Suite,
    token: &str,
    customer_number: &str,
    page_size: i32,
    page_token: String,
) -> Result<gw::ListCustomerSitesResponse, tonic::Status> {
    suite
        .gw()
        .list_customer_sites(authed(
            Some(token),
            gw::ListCustomerSitesRequest {
                customer_number: customer_number.into(),
                page_size,
                page_token,
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn operators_find_sites_and_list_a_customers_sites() {
    let suite = Suite::start().await;
    let alice = suite.person("Alice Primary").await;
    let first = suite.create_site("Lyon", &alice, None).await;
    // An additional site of the same customer, with a higher site number.
    let second_number = (first.site_number.parse::<u64>().expect("number") + 500_000).to_string();
    let second = suite
        .gw()
        .create_site(authed(
            Some(&suite.operator.token),
            gw::CreateSiteRequest {
                site_number: second_number.clone(),
                customer_number: first.customer_number.clone(),
                name: "Lyon annexe".into(),
                country_code: "FR".into(),
                language: "fr".into(),
                program: cpb::Program::PassportAdvantage as i32,
                primary_contact: Some(contact_person(&alice)),
                ..Default::default()
            },
        ))
        .await
        .expect("an additional site")
        .into_inner()
        .site
        .expect("site");
    assert!(!second.is_original_site);
    let op = suite.operator.token.clone();

    // By site number, and by customer number (its original site).
    let found = find_site(&suite, &op, Some(Key::SiteNumber(second_number.clone())))
        .await
        .expect("by site number");
    assert_eq!(found.site_id, second.site_id);
    let found = find_site(
        &suite,
        &op,
        Some(Key::CustomerNumber(first.customer_number.clone())),
    )
    .await
    .expect("by customer number");
    assert_eq!(found.site_id, first.site_id);
    expect_code(
        find_site(&suite, &op, Some(Key::SiteNumber("9999999999".into()))).await,
        Code::NotFound,
    );
    expect_code(
        find_site(&suite, &op, Some(Key::CustomerNumber("9999999999".into()))).await,
        Code::NotFound,
    );
    expect_field(find_site(&suite, &op, None).await, "key");
    expect_field(
        find_site(&suite, &op, Some(Key::SiteNumber("12".into()))).await,
        "site_number",
    );
    expect_field(
        find_site(&suite, &op, Some(Key::CustomerNumber("abc".into()))).await,
        "customer_number",
    );

    // The customer's sites, one page at a time, in site-number order.
    let page = customer_sites(&suite, &op, &first.customer_number, 1, String::new())
        .await
        .expect("first page");
    assert_eq!(page.sites.len(), 1);
    assert_eq!(page.sites[0].site_id, first.site_id);
    assert!(!page.next_page_token.is_empty());
    let page = customer_sites(&suite, &op, &first.customer_number, 1, page.next_page_token)
        .await
        .expect("second page");
    let ids: Vec<&str> = page.sites.iter().map(|s| s.site_id.as_str()).collect();
    assert_eq!(ids, [second.site_id.as_str()]);
    assert!(page.next_page_token.is_empty());
    expect_field(
        customer_sites(&suite, &op, "", 0, String::new()).await,
        "customer_number",
    );
    expect_field(
        customer_sites(&suite, &op, &first.customer_number, -1, String::new()).await,
        "page_size",
    );
    expect_field(
        customer_sites(&suite, &op, &first.customer_number, 0, "?".into()).await,
        "page_token",
    );

    // The site's own primary contact is no operator: refused, whatever it asks.
    let status = expect_code(
        find_site(
            &suite,
            &alice.token,
            Some(Key::SiteNumber(first.site_number.clone())),
        )
        .await,
        Code::PermissionDenied,
    );
    assert!(status.message().contains("operators"), "{status:?}");
    expect_code(
        customer_sites(
            &suite,
            &alice.token,
            &first.customer_number,
            0,
            String::new(),
        )
        .await,
        Code::PermissionDenied,
    );
}

// rule N3: an operator revives a DEAD notification; the real mail server then receives it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn operators_retry_a_dead_notification_and_it_is_delivered() {
    let suite = Suite::start().await;
    let alice = suite.person("Alice Primary").await;
    let theo = suite.person("Theo Technique").await;
    let site = suite.create_site("Nantes", &alice, Some(&theo)).await;
    let dead = dead_notice(&suite, &site.site_id, &theo, "retry-1").await;
    assert_eq!(dead.state, State::Dead as i32);
    let retry = async |token: &str, notification_id: &str| {
        suite
            .gw()
            .retry_notification(authed(
                Some(token),
                gw::RetryNotificationRequest {
                    notification_id: notification_id.into(),
                },
            ))
            .await
            .map(tonic::Response::into_inner)
    };

    // Customers may not, not even the site's primary contact or the recipient: nothing
    // changes.
    for person in [&alice, &theo] {
        expect_code(
            retry(&person.token, &dead.notification_id).await,
            Code::PermissionDenied,
        );
    }
    // Nor a service account, even one that may send notices.
    let (_, service) = suite
        .scoped_service_account("notice-sender", &["notices"])
        .await;
    expect_code(
        retry(&service, &dead.notification_id).await,
        Code::PermissionDenied,
    );
    let still = site_notification(&suite, &site.site_id, &dead.notification_id).await;
    assert_eq!(still.state, State::Dead as i32);
    assert_eq!(still.attempts.len(), dead.attempts.len());
    expect_field(
        retry(&suite.operator.token, "not-an-id").await,
        "notification_id",
    );
    expect_code(
        retry(&suite.operator.token, &uuid::Uuid::now_v7().to_string()).await,
        Code::NotFound,
    );

    let revived = retry(&suite.operator.token, &dead.notification_id)
        .await
        .expect("the operator revives it")
        .notification
        .expect("notification");
    assert_eq!(revived.notification_id, dead.notification_id);
    wait_state(
        &suite,
        &site.site_id,
        &dead.notification_id,
        State::Delivered,
    )
    .await;
    let mail = suite.mail(&theo.email, "NOTICE_KIND_TECHNICAL", 1).await;
    assert!(
        mail.text
            .as_deref()
            .unwrap_or_default()
            .contains("planned outage"),
        "{:?}",
        mail.text
    );
    // Delivered, it is no longer DEAD: a second retry is refused by the rule, not repeated.
    expect_code(
        retry(&suite.operator.token, &dead.notification_id).await,
        Code::FailedPrecondition,
    );
}

// rules A3, A7: the site's approvers (the primary for site access, the STC for support
// access) and operators read its domain policies; others are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn approvers_and_operators_list_domain_policies() {
    let suite = Suite::start().await;
    let alice = suite.person("Alice Primary").await;
    let theo = suite.person("Theo Technique").await;
    let sam = suite.person("Sam User").await;
    let site = suite.create_site("Lille", &alice, Some(&theo)).await;
    suite.assign(&site.site_id, &sam, Role::SiteUser).await;
    for domain in ["b.example", "a.example"] {
        suite
            .gw()
            .set_domain_policy(authed(
                Some(&alice.token),
                gw::SetDomainPolicyRequest {
                    site_id: site.site_id.clone(),
                    domain: domain.into(),
                    policy: apb::DomainPolicyMode::AutoPending as i32,
                    baseline_tools: None,
                    baseline_support_level: apb::SupportLevel::Unspecified as i32,
                    etag: String::new(),
                },
            ))
            .await
            .expect("the primary sets a domain policy");
    }
    let list = async |token: &str, site_id: &str, page_size: i32, page_token: String| {
        suite
            .gw()
            .list_domain_policies(authed(
                Some(token),
                gw::ListDomainPoliciesRequest {
                    site_id: site_id.into(),
                    page_size,
                    page_token,
                },
            ))
            .await
            .map(tonic::Response::into_inner)
    };
    for reader in [&suite.operator, &alice, &theo] {
        let page = list(&reader.token, &site.site_id, 0, String::new())
            .await
            .unwrap_or_else(|status| panic!("{} lists the policies: {status:?}", reader.name));
        let domains: Vec<&str> = page
            .domain_policies
            .iter()
            .map(|p| p.domain.as_str())
            .collect();
        assert_eq!(domains, ["a.example", "b.example"], "{}", reader.name);
        assert!(
            page.domain_policies
                .iter()
                .all(|p| p.policy == apb::DomainPolicyMode::AutoPending as i32)
        );
    }
    // Paged, in domain order.
    let first = list(&alice.token, &site.site_id, 1, String::new())
        .await
        .expect("first page");
    assert_eq!(first.domain_policies.len(), 1);
    let second = list(&alice.token, &site.site_id, 1, first.next_page_token)
        .await
        .expect("second page");
    assert_eq!(second.domain_policies[0].domain, "b.example");

    // A site user approves nothing; a stranger holds nothing there.
    let stranger = suite.person("Stranger").await;
    for person in [&sam, &stranger] {
        let status = expect_code(
            list(&person.token, &site.site_id, 0, String::new()).await,
            Code::PermissionDenied,
        );
        assert!(
            status.message().contains("PERMISSION_APPROVE_SITE_ACCESS"),
            "{status:?}"
        );
    }
    expect_field(
        list(&alice.token, "lille", 0, String::new()).await,
        "site_id",
    );
    expect_field(
        list(&alice.token, &site.site_id, -1, String::new()).await,
        "page_size",
    );
}
