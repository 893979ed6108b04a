//! Recovery of a site whose primary contact is gone (rule C12), through the gateway only,
//! with the real services and a real SMTP server.
//!
//! One run: another contact asks; every contact and the old primary are mailed in their
//! language; a stranger of another domain, a wrong customer number and an unknown site get
//! the same answer (S3, I2); a second request, an early attestation, a refusal by someone
//! else and a customer's attestation are refused and change nothing; the old primary refuses
//! and everybody is told; the trail is in ListSiteAudit. Another run (a short waiting
//! period): a colleague of the gone primary's e-mail domain asks, an operator attests after
//! the waiting period and the primary moves by the registry's transfer (C8: one primary at
//! every moment), with the mails and the audit trail.

use crate::gateway::helpers::*;
use kc_proto::contacts::{self as cpb, PrimaryRecoveryState as State};
use kc_proto::gateway::{self as gw};
use kc_proto::identity::{self as ipb};
use kc_suite_tests::sandbox::login;
use tonic::{Code, Status};

const REQUESTED: &str = "NOTICE_KIND_PRIMARY_RECOVERY_REQUESTED";
const REFUSED: &str = "NOTICE_KIND_PRIMARY_RECOVERY_REFUSED";
const ATTESTED: &str = "NOTICE_KIND_PRIMARY_RECOVERY_ATTESTED";

/// The S3 answer, the same for every refused request (I2).
const NO_MATCH: &str = "no site matches this site number and customer number";

/// `RequestPrimaryRecovery` as `by`.
async fn ask(
    suite: &Suite,
    by: &Person,
    site: &cpb::Site,
    customer_number: &str,
    reason: &str,
) -> Result<cpb::PrimaryRecovery, Status> {
    let request = gw::RequestPrimaryRecoveryRequest {
        site_number: site.site_number.clone(),
        customer_number: customer_number.into(),
        reason: reason.into(),
    };
    let answer = suite
        .gw()
        .request_primary_recovery(authed(Some(&by.token), request))
        .await?;
    Ok(answer.into_inner().recovery.expect("recovery"))
}

/// `AttestPrimaryRecovery` as `by`, naming `new_primary`.
async fn attest(
    suite: &Suite,
    by: &Person,
    recovery_id: &str,
    new_primary: &Person,
) -> Result<gw::AttestPrimaryRecoveryResponse, Status> {
    suite
        .gw()
        .attest_primary_recovery(authed(
            Some(&by.token),
            gw::AttestPrimaryRecoveryRequest {
                recovery_id: recovery_id.into(),
                new_primary_email: new_primary.email.clone(),
                reason: "the customer's purchasing manager confirmed by phone".into(),
                display_name: None,
                locale: String::new(),
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

/// `RefusePrimaryRecovery` as `by`.
async fn refuse(
    suite: &Suite,
    by: &Person,
    recovery_id: &str,
) -> Result<cpb::PrimaryRecovery, Status> {
    let request = gw::RefusePrimaryRecoveryRequest {
        recovery_id: recovery_id.into(),
        reason: "je suis toujours là".into(),
    };
    let answer = suite
        .gw()
        .refuse_primary_recovery(authed(Some(&by.token), request))
        .await?;
    Ok(answer.into_inner().recovery.expect("recovery"))
}

/// `GetPrimaryRecovery` as `by`.
async fn read(
    suite: &Suite,
    by: &Person,
    recovery_id: &str,
) -> Result<cpb::PrimaryRecovery, Status> {
    let request = gw::GetPrimaryRecoveryRequest {
        recovery_id: recovery_id.into(),
    };
    let answer = suite
        .gw()
        .get_primary_recovery(authed(Some(&by.token), request))
        .await?;
    Ok(answer.into_inner().recovery.expect("recovery"))
}

/// C8: the site has exactly one primary contact, `expected`.
async fn assert_one_primary(suite: &Suite, site_id: &str, expected: &Person) {
    let primaries = suite.operator_contacts(site_id, &[Role::Primary]).await;
    let ids: Vec<&str> = primaries.iter().map(|c| c.user_id.as_str()).collect();
    assert_eq!(ids, [expected.id.as_str()], "rule C8: one primary");
    assert_eq!(suite.site_now(site_id).await.primary_user_id, expected.id);
}

/// The actions of the site's audit trail, oldest first, with their actor and reason.
async fn audit(suite: &Suite, site_id: &str) -> Vec<(String, String, String)> {
    let mut entries = suite.site_audit(site_id).await;
    entries.reverse();
    entries
        .into_iter()
        .map(|e| (e.action, e.actor_id, e.reason))
        .collect()
}

/// Waits for the mail of `kind` to `person` and returns its text.
async fn mail_text(suite: &Suite, person: &Person, kind: &str) -> String {
    let message = suite.mail(&person.email, kind, 1).await;
    message.text.expect("a text part")
}

// rule C12: request, every mail, refusal by the old primary; S3 and I2 for strangers.
#[tokio::test]
async fn a_contact_asks_everyone_is_mailed_and_the_old_primary_refuses() {
    let suite = Suite::start().await;
    let paule = suite.person_in("Paule Primaire", "fr").await;
    let bruno = suite.person_in("Bruno Second", "en").await;
    let sam = suite.person_in("Sam Utilisateur", "fr").await;
    let stranger = suite
        .person_at(
            "Stan Stranger",
            &format!("stan-{}@elsewhere.example", uuid::Uuid::new_v4().simple()),
            "en",
        )
        .await;
    let site = suite.create_site("Lyon", &paule, None).await;
    suite.assign(&site.site_id, &bruno, Role::Secondary).await;
    suite.assign(&site.site_id, &sam, Role::SiteUser).await;
    let reason = "Paule left the company in March; her mailbox bounces";

    // S3, I2: a stranger, a wrong customer number and an unknown site get one answer.
    let (unknown_site, _) = suite.numbers();
    let unknown = cpb::Site {
        site_number: unknown_site,
        ..site.clone()
    };
    let refusals = [
        ask(&suite, &stranger, &site, &site.customer_number, reason).await,
        ask(&suite, &bruno, &site, "9999999", reason).await,
        ask(&suite, &bruno, &unknown, &site.customer_number, reason).await,
    ];
    for refusal in refusals {
        let status = expect_code(refusal, Code::NotFound);
        assert_eq!(status.message(), NO_MATCH);
    }
    // a reason is required
    expect_field(
        ask(&suite, &bruno, &site, &site.customer_number, "  ").await,
        "reason",
    );

    // another contact of the site asks
    let recovery = ask(&suite, &bruno, &site, &site.customer_number, reason)
        .await
        .expect("a contact asks");
    assert_eq!(recovery.state, State::Waiting as i32);
    assert_eq!(recovery.requester_user_id, bruno.id);
    assert_eq!(recovery.previous_primary_user_id, paule.id);
    assert!(recovery.requester_is_contact);
    let id = recovery.recovery_id.clone();

    // one open recovery per site
    let again = expect_code(
        ask(&suite, &sam, &site, &site.customer_number, reason).await,
        Code::AlreadyExists,
    );
    assert!(cites(again.message(), "C12"), "{again:?}");

    // every contact and the old primary are mailed, each in its language (N1)
    let to_paule = mail_text(&suite, &paule, REQUESTED).await;
    assert!(to_paule.starts_with("Bonjour"), "{to_paule}");
    assert!(
        to_paule.contains(reason) && to_paule.contains(&id),
        "{to_paule}"
    );
    assert!(to_paule.contains("Bruno Second"), "{to_paule}");
    let to_bruno = mail_text(&suite, &bruno, REQUESTED).await;
    assert!(to_bruno.starts_with("Hello"), "{to_bruno}");
    assert!(to_bruno.contains("Paule Primaire"), "{to_bruno}");
    let to_sam = mail_text(&suite, &sam, REQUESTED).await;
    assert!(to_sam.starts_with("Bonjour"), "{to_sam}");
    assert!(
        suite
            .all_mails(&stranger.email)
            .iter()
            .all(|m| { !is_mail(m, &stranger.email, REQUESTED) })
    );

    // too early: the waiting period (72 h by default) is not over; nothing changes
    let early = expect_code(
        attest(&suite, &suite.operator, &id, &bruno).await,
        Code::FailedPrecondition,
    );
    assert!(cites(early.message(), "C12"), "{early:?}");
    assert_one_primary(&suite, &site.site_id, &paule).await;
    // a customer never attests, even the requester naming itself
    expect_code(
        attest(&suite, &bruno, &id, &bruno).await,
        Code::PermissionDenied,
    );
    assert_one_primary(&suite, &site.site_id, &paule).await;

    // only the old primary (or an operator) refuses; the others do not even see it
    for other in [&bruno, &sam, &stranger] {
        let status = expect_code(refuse(&suite, other, &id).await, Code::NotFound);
        assert_eq!(status.message(), "primary recovery not found");
    }
    for outsider in [&sam, &stranger] {
        expect_code(read(&suite, outsider, &id).await, Code::NotFound);
    }
    assert_eq!(
        read(&suite, &bruno, &id)
            .await
            .expect("the requester reads it")
            .state,
        State::Waiting as i32
    );

    // the old primary refuses
    let refused = refuse(&suite, &paule, &id)
        .await
        .expect("the old primary refuses");
    assert_eq!(refused.state, State::Refused as i32);
    assert_eq!(refused.decided_by_user_id, paule.id);
    assert_eq!(refused.decision_reason, "je suis toujours là");
    for person in [&paule, &bruno, &sam] {
        let text = mail_text(&suite, person, REFUSED).await;
        assert!(text.contains("je suis toujours là"), "{text}");
    }
    // a refused recovery is never attested nor refused again
    let late = expect_code(
        attest(&suite, &suite.operator, &id, &bruno).await,
        Code::FailedPrecondition,
    );
    assert!(cites(late.message(), "C12"), "{late:?}");
    expect_code(refuse(&suite, &paule, &id).await, Code::FailedPrecondition);
    assert_one_primary(&suite, &site.site_id, &paule).await;

    // L1: every step is in the site's trail, with its actor and reason
    let trail = audit(&suite, &site.site_id).await;
    let steps: Vec<_> = trail
        .iter()
        .filter(|(action, _, _)| action.starts_with("primary_recovery."))
        .cloned()
        .collect();
    assert_eq!(
        steps,
        [
            (
                "primary_recovery.requested".into(),
                bruno.id.clone(),
                reason.into()
            ),
            (
                "primary_recovery.refused".into(),
                paule.id.clone(),
                "je suis toujours là".into()
            ),
        ]
    );

    // the refusal closed it: the site may be recovered again
    let next = ask(&suite, &sam, &site, &site.customer_number, "second try")
        .await
        .expect("a new request once the first is closed");
    assert_ne!(next.recovery_id, id);
}

// rule C12: a colleague of the gone primary's domain asks; after the waiting period an
// operator attests and the primary moves by the registry's transfer (C8).
#[tokio::test]
async fn after_the_waiting_period_an_operator_attests_and_the_primary_moves() {
    let suite = Suite::start_with_contacts(&["--primary-recovery-waiting-period", "3s"]).await;
    let domain = format!("corp-{}.example", uuid::Uuid::new_v4().simple());
    let paule = suite
        .person_at("Paule Partie", &format!("paule@{domain}"), "fr")
        .await;
    let rita = suite
        .person_at("Rita Reprise", &format!("rita@{domain}"), "en")
        .await;
    let theo = suite.person_in("Théo Technique", "fr").await;
    let site = suite.create_site("Grenoble", &paule, Some(&theo)).await;

    // Paule is gone: an operator disabled her account (I4)
    suite
        .identity()
        .disable_user(suite.op(ipb::DisableUserRequest {
            user_id: paule.id.clone(),
        }))
        .await
        .expect("the operator disables the primary");

    // a site user's domain vouches for nobody: only key contacts' domains count
    let other = format!("other-{}.example", uuid::Uuid::new_v4().simple());
    let sue = suite
        .person_at("Sue Siteuser", &format!("sue@{other}"), "en")
        .await;
    suite.assign(&site.site_id, &sue, Role::SiteUser).await;
    let olga = suite
        .person_at("Olga Other", &format!("olga@{other}"), "en")
        .await;
    let refused = expect_code(
        ask(&suite, &olga, &site, &site.customer_number, "Paule left").await,
        Code::NotFound,
    );
    assert_eq!(refused.message(), NO_MATCH);

    // Rita holds no role on the site: her proven address in Paule's domain lets her ask
    let recovery = ask(&suite, &rita, &site, &site.customer_number, "Paule left")
        .await
        .expect("a colleague of the primary's domain asks");
    assert!(!recovery.requester_is_contact);
    assert_eq!(recovery.state, State::Waiting as i32);
    let id = recovery.recovery_id.clone();
    for person in [&theo, &rita] {
        let _ = mail_text(&suite, person, REQUESTED).await;
    }
    // the disabled primary gets nothing (I4); everyone else was told
    assert!(suite.mails(&paule.email, REQUESTED).is_empty());

    // too early
    let early = expect_code(
        attest(&suite, &suite.operator, &id, &rita).await,
        Code::FailedPrecondition,
    );
    assert!(cites(early.message(), "C12"), "{early:?}");
    assert_one_primary(&suite, &site.site_id, &paule).await;

    // after the waiting period, the operator attests
    eventually("the waiting period ends", || async {
        let state = read(&suite, &rita, &id)
            .await
            .map_err(|s| s.to_string())?
            .state;
        (state == State::Attestable as i32)
            .then_some(())
            .ok_or(format!("state {state}"))
    })
    .await;
    let attested = attest(&suite, &suite.operator, &id, &rita)
        .await
        .expect("the operator attests");
    let done = attested.recovery.expect("recovery");
    assert_eq!(done.state, State::Attested as i32);
    assert_eq!(done.new_primary_user_id, rita.id);
    assert_eq!(done.decided_by_user_id, suite.operator.id);
    assert_eq!(attested.site.expect("site").primary_user_id, rita.id);
    assert_one_primary(&suite, &site.site_id, &rita).await;
    // the old primary stays as a site user, as after any transfer
    let users = suite
        .operator_contacts(&site.site_id, &[Role::SiteUser])
        .await;
    assert!(users.iter().any(|c| c.user_id == paule.id), "{users:?}");

    // the new primary holds the primary's rights (roles and grants follow the transfer)
    let rita_now = login(&suite.gateway_channel, &rita.email).await;
    eventually("the new primary manages the site", || async {
        suite
            .gw()
            .list_site_audit(authed(
                Some(&rita_now.token),
                gw::ListSiteAuditRequest {
                    site_id: site.site_id.clone(),
                    ..Default::default()
                },
            ))
            .await
            .map(|_| ())
            .map_err(|status| status.to_string())
    })
    .await;

    // everybody is told: the attestation and the transfer (C8)
    for person in [&theo, &rita] {
        let text = mail_text(&suite, person, ATTESTED).await;
        assert!(text.contains("Rita Reprise"), "{text}");
    }
    let _ = suite
        .mail(&rita.email, "NOTICE_KIND_PRIMARY_TRANSFERRED", 1)
        .await;

    // attested once: never again
    let again = expect_code(
        attest(&suite, &suite.operator, &id, &theo).await,
        Code::FailedPrecondition,
    );
    assert!(cites(again.message(), "C12"), "{again:?}");
    assert_one_primary(&suite, &site.site_id, &rita).await;

    // L1: the trail holds the request, the transfer and the attestation, in that order
    let trail = audit(&suite, &site.site_id).await;
    let actions: Vec<&str> = trail
        .iter()
        .map(|(action, _, _)| action.as_str())
        .filter(|action| action.starts_with("primary"))
        .collect();
    assert_eq!(
        actions,
        [
            "primary_recovery.requested",
            "primary.transferred",
            "primary_recovery.attested"
        ]
    );
    let attestation = trail
        .iter()
        .find(|(action, _, _)| action == "primary_recovery.attested")
        .expect("attested");
    assert_eq!(attestation.1, suite.operator.id);
    assert_eq!(
        attestation.2,
        "the customer's purchasing manager confirmed by phone"
    );
}

// rule C12: a site has one open recovery, however many ask at the same moment; an operator
// may refuse one too; a customer cannot ask as the primary itself.
#[tokio::test]
async fn concurrent_requests_open_one_recovery_and_an_operator_may_refuse_it() {
    let suite = Suite::start().await;
    let paule = suite.person_in("Paule Primaire", "fr").await;
    let site = suite.create_site("Nantes", &paule, None).await;
    let mut askers = Vec::new();
    for n in 0..4 {
        let person = suite.person(&format!("Asker {n}")).await;
        suite.assign(&site.site_id, &person, Role::SiteUser).await;
        askers.push(person);
    }
    let results = futures::future::join_all(
        askers
            .iter()
            .map(|asker| ask(&suite, asker, &site, &site.customer_number, "she left")),
    )
    .await;
    let mut opened = Vec::new();
    for result in results {
        match result {
            Ok(recovery) => opened.push(recovery),
            Err(status) => {
                assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");
                assert!(cites(status.message(), "C12"), "{status:?}");
            }
        }
    }
    assert_eq!(opened.len(), 1, "exactly one open recovery per site");
    let id = opened[0].recovery_id.clone();

    // the primary itself does not ask: it transfers its role (C8)
    let own = expect_code(
        ask(&suite, &paule, &site, &site.customer_number, "me").await,
        Code::FailedPrecondition,
    );
    assert!(cites(own.message(), "C12"), "{own:?}");

    // an operator refuses it, with a reason, and everybody is told
    let refused = suite
        .gw()
        .refuse_primary_recovery(authed(
            Some(&suite.operator.token),
            gw::RefusePrimaryRecoveryRequest {
                recovery_id: id.clone(),
                reason: "the customer called: Paule is on leave".into(),
            },
        ))
        .await
        .expect("an operator refuses")
        .into_inner()
        .recovery
        .expect("recovery");
    assert_eq!(refused.state, State::Refused as i32);
    assert_eq!(refused.decided_by_user_id, suite.operator.id);
    for person in askers.iter().chain([&paule]) {
        let _ = mail_text(&suite, person, REFUSED).await;
    }
    assert_one_primary(&suite, &site.site_id, &paule).await;
}
