//! Blocked requesters (issue 17): a site's approvers block an e-mail address, or a domain
//! with its subdomains, from asking for access to the site again. SelfNominate then answers
//! the blocked user exactly as it answers a wrong site number (S3, I2: the block does not
//! show); unblocking restores the way in; blocking and unblocking are in ListSiteAudit; a
//! person who is no approver of the site can neither block, unblock nor list (and changes
//! nothing); blocking may reject the blocked requesters' pending requests, of the kinds the
//! blocker may decide only (A3).

use crate::gateway::helpers::*;
use kc_proto::access::{self as apb};
use kc_proto::contacts::{self as cpb};
use kc_proto::gateway::{self as gw};
use tonic::{Code, Status};
use uuid::Uuid;

/// A fresh e-mail domain of its own, e.g. `b1946ac9.example`.
fn fresh_domain() -> String {
    format!("{}.example", &Uuid::new_v4().simple().to_string()[..12])
}

/// `SelfNominate` of `person` for `kind` on the site named by these numbers.
async fn nominate(
    suite: &Suite,
    person: &Person,
    (site_number, customer_number): (&str, &str),
    kind: apb::AccessRequestKind,
) -> Result<apb::AccessRequest, Status> {
    let site_access = kind == apb::AccessRequestKind::SiteAccess;
    suite
        .gw()
        .self_nominate(authed(
            Some(&person.token),
            gw::SelfNominateRequest {
                site_number: site_number.into(),
                customer_number: customer_number.into(),
                kind: kind as i32,
                requested_tools: site_access
                    .then(|| tools(|t| t.software = apb::SoftwareAccess::DownloadsOnly as i32)),
                requested_support_level: if site_access {
                    apb::SupportLevel::Unspecified as i32
                } else {
                    apb::SupportLevel::Basic as i32
                },
                justification: "new in the team".into(),
            },
        ))
        .await
        .map(|response| response.into_inner().request.expect("request"))
}

/// `person`'s nomination for site access on `site`.
async fn nominate_site(
    suite: &Suite,
    person: &Person,
    site: &cpb::Site,
) -> Result<apb::AccessRequest, Status> {
    nominate(
        suite,
        person,
        (&site.site_number, &site.customer_number),
        apb::AccessRequestKind::SiteAccess,
    )
    .await
}

/// `by` blocks `email` or `domain` on the site.
async fn block(
    suite: &Suite,
    by: &Person,
    site_id: &str,
    (email, domain): (&str, &str),
    reject_pending: bool,
) -> Result<gw::BlockRequesterResponse, Status> {
    suite
        .gw()
        .block_requester(authed(
            Some(&by.token),
            gw::BlockRequesterRequest {
                site_id: site_id.into(),
                email: email.into(),
                domain: domain.into(),
                reason: "repeated unfounded requests".into(),
                reject_pending,
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

/// `by` lifts the block of `email` or `domain` on the site.
async fn unblock(
    suite: &Suite,
    by: &Person,
    site_id: &str,
    (email, domain): (&str, &str),
) -> Result<gw::UnblockRequesterResponse, Status> {
    suite
        .gw()
        .unblock_requester(authed(
            Some(&by.token),
            gw::UnblockRequesterRequest {
                site_id: site_id.into(),
                email: email.into(),
                domain: domain.into(),
                reason: "they apologised".into(),
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

/// The site's blocks as `by` lists them, (email, domain) each.
async fn blocks(
    suite: &Suite,
    by: &Person,
    site_id: &str,
) -> Result<Vec<(String, String)>, Status> {
    suite
        .gw()
        .list_blocked_requesters(authed(
            Some(&by.token),
            gw::ListBlockedRequestersRequest {
                site_id: site_id.into(),
                page_size: 0,
                page_token: String::new(),
            },
        ))
        .await
        .map(|response| {
            response
                .into_inner()
                .blocks
                .into_iter()
                .map(|block| (block.email, block.domain))
                .collect()
        })
}

/// The site's access-management audit entries of `action`, as the operator lists them.
async fn audited(suite: &Suite, site_id: &str, action: &str) -> Vec<gw::AuditEntry> {
    suite
        .site_audit(site_id)
        .await
        .into_iter()
        .filter(|entry| entry.source == gw::AuditSource::Access as i32 && entry.action == action)
        .collect()
}

/// Asserts that `blocked` is, code, message and details, the refusal `unknown` of a wrong
/// site number (S3, I2).
fn assert_same_refusal(blocked: Result<apb::AccessRequest, Status>, unknown: &Status) {
    let blocked = blocked.expect_err("a blocked requester is refused");
    assert_eq!(blocked.code(), unknown.code(), "{blocked:?}");
    assert_eq!(blocked.message(), unknown.message(), "{blocked:?}");
    assert_eq!(blocked.details(), unknown.details(), "{blocked:?}");
}

#[tokio::test]
async fn a_blocked_address_or_domain_is_refused_like_an_unknown_site_until_unblocked() {
    let suite = Suite::start().await;
    let primary = suite.person("Paula Primary").await;
    let site = suite.create_site("Paris", &primary, None).await;
    let eve = suite.person("Eve Pester").await;
    let domain = fresh_domain();
    // In a subdomain of the blocked domain: blocked too.
    let mallory = suite
        .person_at("Mallory", &format!("mallory@mail.{domain}"), "en")
        .await;
    // Same domain as Eve, not blocked.
    let carl = suite.person("Carl Colleague").await;

    // rule S3: the answer to a wrong customer number, the reference.
    let unknown = nominate(
        &suite,
        &eve,
        (&site.site_number, "9999999"),
        apb::AccessRequestKind::SiteAccess,
    )
    .await
    .expect_err("a wrong customer number is refused");
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");

    // The address as typed in another case: normalised like login e-mails.
    let by_email = block(
        &suite,
        &primary,
        &site.site_id,
        (&eve.email.to_uppercase(), ""),
        false,
    )
    .await
    .expect("the primary contact blocks an address");
    let by_email = by_email.block.expect("block");
    assert_eq!(by_email.email, eve.email);
    assert_eq!(by_email.blocked_by, primary.id);
    let by_domain = block(
        &suite,
        &primary,
        &site.site_id,
        ("", &format!("@{}", domain.to_uppercase())),
        false,
    )
    .await
    .expect("the primary contact blocks a domain")
    .block
    .expect("block");
    assert_eq!(by_domain.domain, domain);

    assert_same_refusal(nominate_site(&suite, &eve, &site).await, &unknown);
    assert_same_refusal(nominate_site(&suite, &mallory, &site).await, &unknown);
    assert_same_refusal(
        nominate(
            &suite,
            &mallory,
            (&site.site_number, &site.customer_number),
            apb::AccessRequestKind::SupportAccess,
        )
        .await,
        &unknown,
    );
    nominate_site(&suite, &carl, &site)
        .await
        .expect("a colleague of another address still asks");

    let mut listed = blocks(&suite, &primary, &site.site_id).await.expect("list");
    listed.sort();
    let mut expected = vec![
        (eve.email.clone(), String::new()),
        (String::new(), domain.clone()),
    ];
    expected.sort();
    assert_eq!(listed, expected);
    // One block per address and site.
    expect_code(
        block(&suite, &primary, &site.site_id, (&eve.email, ""), false).await,
        Code::AlreadyExists,
    );

    unblock(&suite, &primary, &site.site_id, (&eve.email, ""))
        .await
        .expect("unblock the address");
    let request = nominate_site(&suite, &eve, &site)
        .await
        .expect("unblocked, Eve asks again");
    assert_eq!(request.state, apb::AccessRequestState::Pending as i32);
    assert_same_refusal(nominate_site(&suite, &mallory, &site).await, &unknown);
    unblock(&suite, &primary, &site.site_id, ("", &domain))
        .await
        .expect("unblock the domain");
    nominate_site(&suite, &mallory, &site)
        .await
        .expect("unblocked, Mallory asks");
    assert!(
        blocks(&suite, &primary, &site.site_id)
            .await
            .unwrap()
            .is_empty()
    );
    expect_code(
        unblock(&suite, &primary, &site.site_id, ("", &domain)).await,
        Code::NotFound,
    );

    // rule L1: who, what and why of each block and unblock.
    let blocked = audited(&suite, &site.site_id, "requester.blocked").await;
    let unblocked = audited(&suite, &site.site_id, "requester.unblocked").await;
    assert_eq!(blocked.len(), 2, "{blocked:?}");
    assert_eq!(unblocked.len(), 2, "{unblocked:?}");
    for entry in blocked.iter().chain(&unblocked) {
        assert_eq!(entry.actor_id, primary.id, "{entry:?}");
        assert!(!entry.reason.is_empty(), "{entry:?}");
    }
    assert!(
        blocked
            .iter()
            .any(|entry| entry.resource_id == by_domain.block_id
                && entry.after_json.contains(&domain)),
        "{blocked:?}"
    );
    assert!(
        unblocked
            .iter()
            .any(|entry| entry.resource_id == by_email.block_id
                && entry.before_json.contains(&eve.email)
                && entry.reason == "they apologised"),
        "{unblocked:?}"
    );
}

#[tokio::test]
async fn only_the_sites_approvers_block_unblock_or_list() {
    let suite = Suite::start().await;
    let primary = suite.person("Paula Primary").await;
    let stc = suite.person("Theo Technical").await;
    let site = suite.create_site("Lyon", &primary, Some(&stc)).await;
    // Some right on the site, but no approval permission.
    let user = suite.person("Sam Siteuser").await;
    suite.assign(&site.site_id, &user, Role::SiteUser).await;
    suite
        .grant(
            &site.site_id,
            &user.id,
            tools(|t| t.manage_access = apb::ManageAccess::View as i32),
        )
        .await;
    let stranger = suite.person("Stan Stranger").await;
    let target = suite.person("Tess Target").await;
    let domain = fresh_domain();

    // The STC, an approver of support requests only (U5, A3), may block and list.
    block(&suite, &stc, &site.site_id, ("", &domain), false)
        .await
        .expect("the STC blocks a domain");
    let before = blocks(&suite, &stc, &site.site_id)
        .await
        .expect("the STC lists");

    for outsider in [&user, &stranger] {
        for refused in [
            block(&suite, outsider, &site.site_id, (&target.email, ""), false)
                .await
                .map(drop),
            unblock(&suite, outsider, &site.site_id, ("", &domain))
                .await
                .map(drop),
            blocks(&suite, outsider, &site.site_id).await.map(drop),
        ] {
            let status = expect_code(refused, Code::PermissionDenied);
            assert!(
                status.message().contains("PERMISSION_APPROVE_SITE_ACCESS"),
                "{status:?}"
            );
        }
    }
    // Nothing changed: the block stands, the target still asks.
    assert_eq!(
        blocks(&suite, &primary, &site.site_id).await.unwrap(),
        before
    );
    nominate_site(&suite, &target, &site)
        .await
        .expect("not blocked by an outsider");
    assert!(
        audited(&suite, &site.site_id, "requester.unblocked")
            .await
            .is_empty()
    );
    assert_eq!(
        audited(&suite, &site.site_id, "requester.blocked")
            .await
            .len(),
        1
    );
    // Bad input names its field.
    expect_field(
        block(&suite, &primary, &site.site_id, ("", ""), false).await,
        "email",
    );
    expect_field(
        block(
            &suite,
            &primary,
            &site.site_id,
            ("not an address", ""),
            false,
        )
        .await,
        "email",
    );
}

#[tokio::test]
async fn blocking_rejects_the_pending_requests_the_blocker_may_decide() {
    let suite = Suite::start().await;
    let primary = suite.person("Paula Primary").await;
    let stc = suite.person("Theo Technical").await;
    let site = suite.create_site("Nantes", &primary, Some(&stc)).await;
    let eve = suite.person("Eve Pester").await;
    let numbers = (site.site_number.as_str(), site.customer_number.as_str());
    let site_request = nominate(&suite, &eve, numbers, apb::AccessRequestKind::SiteAccess)
        .await
        .expect("site access asked");
    let support_request = nominate(&suite, &eve, numbers, apb::AccessRequestKind::SupportAccess)
        .await
        .expect("support access asked");

    // The STC decides support requests only (A3): its block rejects that one alone.
    let blocked = block(&suite, &stc, &site.site_id, (&eve.email, ""), true)
        .await
        .expect("the STC blocks Eve");
    let rejected: Vec<&str> = blocked
        .rejected_requests
        .iter()
        .map(|request| request.request_id.as_str())
        .collect();
    assert_eq!(rejected, vec![support_request.request_id.as_str()]);
    let mine = suite
        .gw()
        .list_my_requests(authed(
            Some(&eve.token),
            gw::ListMyRequestsRequest::default(),
        ))
        .await
        .expect("Eve lists her requests")
        .into_inner()
        .requests;
    let state_of = |id: &str| {
        mine.iter()
            .find(|request| request.request_id == id)
            .map(|request| request.state)
    };
    assert_eq!(
        state_of(&support_request.request_id),
        Some(apb::AccessRequestState::Rejected as i32)
    );
    assert_eq!(
        state_of(&site_request.request_id),
        Some(apb::AccessRequestState::Pending as i32)
    );
    let rejection = audited(&suite, &site.site_id, "request.rejected").await;
    assert_eq!(rejection.len(), 1, "{rejection:?}");
    assert_eq!(rejection[0].actor_id, stc.id);
    assert_eq!(rejection[0].resource_id, support_request.request_id);
    // The requester's reason does not reveal the block.
    let reason = &blocked.rejected_requests[0].decision_reason;
    assert!(!reason.is_empty() && !reason.contains("block"), "{reason}");
}
