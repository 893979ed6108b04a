//! Faults seen through the gateway: an internal service that is down makes the calls that
//! need it fail with UNAVAILABLE, well within the caller's deadline (never a hang), and the
//! gateway serves them again once the service is back; errors of the internal services keep
//! their code, message and field violations; the public session RPCs are rate limited per
//! caller address.

use std::time::Duration;

use crate::gateway::helpers::*;
use kc_proto::access::{self as apb};
use kc_proto::contacts::{self as cpb};
use kc_proto::gateway::{self as gw};
use tonic::{Code, Request, Status};

/// The deadline each probe sets (`grpc-timeout`): a probe that answers UNAVAILABLE did not
/// wait for it (it would be DEADLINE_EXCEEDED).
const CALL_DEADLINE: Duration = Duration::from_secs(10);

/// `message` as `token`'s holder, with the caller's deadline set.
fn with_deadline<T>(token: Option<&str>, message: T) -> Request<T> {
    let mut request = authed(token, message);
    request.set_timeout(CALL_DEADLINE);
    request
}

/// One RPC of the gateway that needs `service`: Login needs identity; GetSite as the site's
/// primary needs access management (its check) and then the registry; ListSiteNotifications
/// needs notification.
async fn probe(
    suite: &Suite,
    service: Internal,
    primary: &Person,
    site: &cpb::Site,
) -> Result<(), Status> {
    let mut gw = suite.gw();
    let token = Some(primary.token.as_str());
    let call = async {
        match service {
            Internal::Identity => gw
                .login(with_deadline(
                    None,
                    gw::LoginRequest {
                        email: primary.email.clone(),
                        password: PASSWORD.into(),
                    },
                ))
                .await
                .map(drop),
            Internal::Contacts | Internal::Access => gw
                .get_site(with_deadline(
                    token,
                    gw::GetSiteRequest {
                        site_id: site.site_id.clone(),
                    },
                ))
                .await
                .map(drop),
            Internal::Notification => gw
                .list_site_notifications(with_deadline(
                    token,
                    gw::ListSiteNotificationsRequest {
                        site_id: site.site_id.clone(),
                        ..Default::default()
                    },
                ))
                .await
                .map(drop),
        }
    };
    // A bound on a hang only (the call carries its own, shorter deadline).
    tokio::time::timeout(PATIENCE, call)
        .await
        .unwrap_or_else(|_| panic!("the gateway answers a call that needs {service:?}"))
}

// Each internal service stopped in turn: UNAVAILABLE at once (not DEADLINE_EXCEEDED: the
// gateway did not wait for the caller's deadline), then served again once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_service_down_is_unavailable_and_the_gateway_recovers() {
    // The read cache off: each probe must reach its service (with the cache, a read the
    // gateway answered less than `--read-cache-ttl` ago is served again while the service
    // is down; tests/cache.rs shows that).
    let mut suite =
        Suite::start_with(&["--session-rate-limit", "off", "--read-cache-ttl", "0s"]).await;
    let primary = suite.person("Paula Primary").await;
    let site = suite.create_site_applied("Acme Lyon", &primary, None).await;

    const SERVICES: [Internal; 4] = [
        Internal::Identity,
        Internal::Contacts,
        Internal::Access,
        Internal::Notification,
    ];
    // Every probe works with everything up (and the gateway holds its service token, as it
    // would after its first customer call).
    for service in SERVICES {
        probe(&suite, service, &primary, &site)
            .await
            .unwrap_or_else(|status| panic!("{service:?} up: the probe succeeds: {status:?}"));
    }

    for service in SERVICES {
        suite.stop_internal(service).await;
        let status = probe(&suite, service, &primary, &site)
            .await
            .expect_err("the service is down");
        assert_eq!(
            status.code(),
            Code::Unavailable,
            "{service:?} down: UNAVAILABLE before the call's deadline: {status:?}"
        );
        // Only the calls that need it fail: tokens are verified with cached keys, and the
        // other services answer as before.
        let other = match service {
            Internal::Identity | Internal::Notification => Internal::Access,
            Internal::Contacts | Internal::Access => Internal::Identity,
        };
        probe(&suite, other, &primary, &site)
            .await
            .unwrap_or_else(|status| {
                panic!("{service:?} down: a call that does not need it succeeds: {status:?}")
            });

        suite.start_internal(service).await;
        eventually(
            &format!("the gateway serves again once {service:?} is back"),
            || {
                let (suite, primary, site) = (&suite, &primary, &site);
                async move {
                    probe(suite, service, primary, site)
                        .await
                        .map_err(|status| format!("{status:?}"))
                }
            },
        )
        .await;
    }

    // Everything works together again: a change through the registry that access
    // management follows, read back through a check.
    let secondary = suite.person("Sam Secondary").await;
    let contact = suite
        .gw()
        .assign_contact(authed(
            Some(&primary.token),
            gw::AssignContactRequest {
                site_id: site.site_id.clone(),
                email: secondary.email.clone(),
                display_name: None,
                role: Role::Secondary as i32,
                details: None,
                locale: String::new(),
            },
        ))
        .await
        .expect("the primary assigns a secondary after the outages")
        .into_inner();
    assert_eq!(contact.user.expect("user").user_id, secondary.id);
}

// Errors of the internal services come back with their code, message and field violations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downstream_errors_keep_their_code_and_field_violations() {
    let suite = Suite::start().await;
    let mut gw = suite.gw();

    // Identity's validation: the field violations name the fields.
    let status = expect_field(
        gw.register(gw::RegisterRequest {
            email: "not-an-email".into(),
            display_name: "Nobody".into(),
            password: PASSWORD.into(),
            locale: "en".into(),
        })
        .await,
        "email",
    );
    assert!(!status.message().is_empty(), "{status:?}");
    expect_field(
        gw.register(gw::RegisterRequest {
            email: fresh_email("short"),
            display_name: "Short Password".into(),
            password: "short".into(),
            locale: "en".into(),
        })
        .await,
        "password",
    );
    // Identity's refusal of a wrong password: UNAUTHENTICATED.
    let primary = suite.person("Paula Primary").await;
    expect_code(
        gw.login(gw::LoginRequest {
            email: primary.email.clone(),
            password: "not the password at all".into(),
        })
        .await,
        Code::Unauthenticated,
    );

    // The registry's validation of a site.
    let operator = Some(suite.operator.token.as_str());
    expect_field(
        gw.create_site(authed(
            operator,
            gw::CreateSiteRequest {
                site_number: "12".into(),
                customer_number: "7654321".into(),
                name: "Too Short".into(),
                country_code: "FR".into(),
                language: "fr".into(),
                program: cpb::Program::PassportAdvantage as i32,
                primary_contact: Some(contact_person(&primary)),
                ..Default::default()
            },
        ))
        .await,
        "site_number",
    );
    // A bad detail of the site technical contact is refused with the site, in one
    // transaction: nothing is written, so the same site number is free afterwards.
    let technician = suite.person("Theo Technician").await;
    let (site_number, customer_number) = suite.numbers();
    let with_stc = |phone: &str| gw::CreateSiteRequest {
        site_number: site_number.clone(),
        customer_number: customer_number.clone(),
        name: "Acme Grenoble".into(),
        country_code: "FR".into(),
        language: "fr".into(),
        program: cpb::Program::PassportAdvantage as i32,
        support_active: true,
        primary_contact: Some(contact_person(&primary)),
        site_technical_contact: Some(gw::ContactPerson {
            details: Some(cpb::ContactDetails {
                phone: phone.into(),
                ..Default::default()
            }),
            ..contact_person(&technician)
        }),
        ..Default::default()
    };
    expect_field(
        gw.create_site(authed(operator, with_stc("12345"))).await,
        "site_technical_contact.details.phone",
    );
    let created = gw
        .create_site(authed(operator, with_stc("+33 4 76 00 00 01")))
        .await
        .expect("the same site number is still free")
        .into_inner();
    let technical = created
        .contacts
        .iter()
        .find(|view| view.user_id == technician.id)
        .expect("the site technical contact");
    assert_eq!(technical.phone, "+33476000001");

    let site = suite.create_site("Acme Lyon", &primary, None).await;
    let site_id = site.site_id.clone();
    suite.wait_role(&site_id, &primary.id, Role::Primary).await;
    let token = Some(primary.token.as_str());

    // rule C6: a fifth secondary is refused by the registry, and the gateway says so.
    for _ in 0..4 {
        suite.assign_invited(&site_id, Role::Secondary).await;
    }
    let status = expect_code(
        gw.assign_contact(authed(
            token,
            gw::AssignContactRequest {
                site_id: site_id.clone(),
                email: fresh_email("fifth"),
                display_name: Some("Fifth Secondary".into()),
                role: Role::Secondary as i32,
                details: None,
                locale: "fr".into(),
            },
        ))
        .await,
        Code::FailedPrecondition,
    );
    assert!(cites(status.message(), "C6"), "{status:?}");

    // rule C1: the primary contact cannot be removed.
    let contacts = gw
        .show_all_contacts(authed(
            token,
            gw::ShowAllContactsRequest {
                site_id: site_id.clone(),
                roles: vec![Role::Primary as i32],
                ..Default::default()
            },
        ))
        .await
        .expect("show the primary")
        .into_inner()
        .contacts;
    let primary_contact = contacts
        .iter()
        .find(|view| view.user_id == primary.id)
        .and_then(|view| {
            view.contacts
                .iter()
                .find(|c| c.role == Role::Primary as i32)
        })
        .unwrap_or_else(|| panic!("the primary's contact: {contacts:?}"))
        .contact_id
        .clone();
    let status = expect_code(
        gw.remove_contact(authed(
            token,
            gw::RemoveContactRequest {
                site_id: site_id.clone(),
                contact_id: primary_contact,
                etag: String::new(),
            },
        ))
        .await,
        Code::FailedPrecondition,
    );
    assert!(cites(status.message(), "C1"), "{status:?}");

    // rule T4, from access management: nobody edits the primary's implied rights, not even
    // an operator.
    let status = expect_code(
        gw.set_tool_access(authed(
            operator,
            gw::SetToolAccessRequest {
                site_id: site_id.clone(),
                user_id: primary.id.clone(),
                tools: Some(tools(|t| t.reporting = apb::ReportingAccess::None as i32)),
                reason: "test".into(),
                etag: String::new(),
                ..Default::default()
            },
        ))
        .await,
        Code::FailedPrecondition,
    );
    assert!(cites(status.message(), "T4"), "{status:?}");

    // Access management's validation: a reason is required (T5).
    expect_field(
        gw.set_tool_access(authed(
            token,
            gw::SetToolAccessRequest {
                site_id: site_id.clone(),
                user_id: suite.person("Someone").await.id,
                tools: Some(tools(|t| t.reporting = apb::ReportingAccess::View as i32)),
                reason: String::new(),
                etag: String::new(),
                ..Default::default()
            },
        ))
        .await,
        "reason",
    );

    // rule S3: a wrong customer number is NOT_FOUND, as access management answers it.
    let newcomer = suite.person("Nina Newcomer").await;
    expect_code(
        gw.self_nominate(authed(
            Some(&newcomer.token),
            gw::SelfNominateRequest {
                customer_number: "9999999".into(),
                ..reports_nomination(&site, "hello")
            },
        ))
        .await,
        Code::NotFound,
    );
}

// The public session RPCs are rate limited per caller address; the others are not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_rpcs_are_rate_limited_per_caller() {
    let suite = Suite::start().await;
    let person = suite.person("Rita Rate").await;
    // A gateway allowing a burst of 2 session calls, then 1 an hour.
    let (_limited, channel) = suite
        .another_gateway(&["--session-rate-limit", "1/h", "--session-rate-burst", "2"])
        .await;
    let mut gw = kc_proto::gateway::gateway_service_client::GatewayServiceClient::new(channel);
    let login = || gw::LoginRequest {
        email: person.email.clone(),
        password: PASSWORD.into(),
    };
    let first = gw.login(login()).await.expect("first login").into_inner();
    gw.refresh(gw::RefreshRequest {
        refresh_token: first.refresh_token.clone(),
    })
    .await
    .expect("second session call");
    let status = expect_code(gw.login(login()).await, Code::ResourceExhausted);
    assert!(!status.message().is_empty(), "{status:?}");
    expect_code(
        gw.register(gw::RegisterRequest {
            email: fresh_email("limited"),
            display_name: "Limited".into(),
            password: PASSWORD.into(),
            locale: "en".into(),
        })
        .await,
        Code::ResourceExhausted,
    );
    // So are the other public RPCs, and the signed-in ones that check a secret.
    expect_code(
        gw.verify_email(gw::VerifyEmailRequest {
            email: person.email.clone(),
            code: "000000".into(),
            password: PASSWORD.into(),
        })
        .await,
        Code::ResourceExhausted,
    );
    expect_code(
        gw.request_password_reset(gw::RequestPasswordResetRequest {
            email: person.email.clone(),
        })
        .await,
        Code::ResourceExhausted,
    );
    expect_code(
        gw.reset_password(gw::ResetPasswordRequest {
            email: person.email.clone(),
            code: "000000".into(),
            new_password: PASSWORD.into(),
        })
        .await,
        Code::ResourceExhausted,
    );
    expect_code(
        gw.change_password(authed(
            Some(&first.access_token),
            gw::ChangePasswordRequest {
                current_password: "a guess at the password".into(),
                new_password: PASSWORD.into(),
            },
        ))
        .await,
        Code::ResourceExhausted,
    );
    // Other signed-in RPCs are not limited.
    for _ in 0..5 {
        gw.get_me(authed(Some(&first.access_token), gw::GetMeRequest {}))
            .await
            .expect("GetMe is not rate limited");
    }
    // The limit of one gateway is its own: the suite's gateway (limit off) still serves.
    suite.session(&person.email).await;
}
