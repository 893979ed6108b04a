//! Rule I3: names with format characters and look-alike addresses.

use super::*;
use crate::gateway::helpers::*;
use kc_proto::gateway::{self as gw};
use kc_testkit::smtp::ReceivedMessage;
use tonic::Code;

// rule I3: display names with a right-to-left override (U+202E) or a zero-width space
// (U+200B) are refused, at Register and at UpdateMe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_with_format_characters_are_refused() {
    let suite = Suite::start().await;
    let person = suite.person("Honest Name").await;
    for name in ["Alice\u{202E}nimda", "Bob\u{200B}Admin"] {
        let status = expect_field(
            suite
                .register(&fresh_email("spoof"), name, PASSWORD, "en")
                .await,
            "display_name",
        );
        let violations = kc_runtime::error::field_violations(&status);
        assert!(
            cites(&format!("{} {violations:?}", status.message()), "I3"),
            "Register {name:?}: {status:?}"
        );
        let status = expect_field(
            suite
                .gw()
                .update_me(authed(
                    Some(&person.token),
                    gw::UpdateMeRequest {
                        display_name: Some(name.into()),
                        locale: None,
                        etag: String::new(),
                    },
                ))
                .await,
            "display_name",
        );
        let violations = kc_runtime::error::field_violations(&status);
        assert!(
            cites(&format!("{} {violations:?}", status.message()), "I3"),
            "UpdateMe {name:?}: {status:?}"
        );
    }
    // The name did not change; a clean name still does.
    let me = suite
        .gw()
        .update_me(authed(
            Some(&person.token),
            gw::UpdateMeRequest {
                display_name: Some("Honest Name Again".into()),
                locale: None,
                etag: String::new(),
            },
        ))
        .await
        .expect("a clean name is accepted")
        .into_inner()
        .user
        .expect("user");
    assert_eq!(me.display_name, "Honest Name Again");
}

// rule I3 (and I2): a Cyrillic look-alike of an existing address registers nothing, with
// the same answer as any registration; the look-alike is told it cannot be used, never
// gets a code, and cannot sign in; binding a role to it is refused citing I3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_look_alike_of_an_existing_address_creates_nothing() {
    let suite = Suite::start().await;
    let existing = suite.person("paula").await;
    // `paula-…@acme.example` with a Cyrillic а (U+0430) for the first Latin a.
    let look_alike = existing.email.replacen('a', "\u{0430}", 1);
    assert_ne!(look_alike, existing.email);

    let free = suite
        .register(
            &fresh_email("free"),
            "Paula",
            "a look-alike's password",
            "en",
        )
        .await;
    let answer = suite
        .register(&look_alike, "Paula", "a look-alike's password", "en")
        .await;
    assert_eq!(seen(&answer), seen(&free), "rule I2: answered alike");
    let told = suite.mail(&look_alike, ADDRESS_CONFUSABLE, 1).await;
    assert_eq!(find_code(&told), None, "{:?}", told.text);

    // No account: a reset mails nothing, no code opens it, it cannot sign in.
    suite
        .gw()
        .request_password_reset(gw::RequestPasswordResetRequest {
            email: look_alike.clone(),
        })
        .await
        .expect("RequestPasswordReset answers OK");
    expect_field(
        suite
            .gw()
            .verify_email(gw::VerifyEmailRequest {
                email: look_alike.clone(),
                code: "000000".into(),
                password: "a look-alike's password".into(),
            })
            .await,
        "code",
    );
    refused_sign_in(
        sign_in(&suite, &look_alike, "a look-alike's password").await,
        "the look-alike",
    );
    // Mail is delivered in order: once a later mail reached the existing account, every
    // mail to the look-alike was sent; only the refusal is among them.
    suite
        .gw()
        .request_password_reset(gw::RequestPasswordResetRequest {
            email: existing.email.clone(),
        })
        .await
        .expect("RequestPasswordReset");
    suite.mail(&existing.email, PASSWORD_RESET, 1).await;
    let to_look_alike: Vec<ReceivedMessage> = suite.all_mails(&look_alike);
    assert_eq!(
        to_look_alike.len(),
        1,
        "only the refusal reaches the look-alike: {to_look_alike:#?}"
    );

    // Binding a role to the look-alike is refused, citing I3.
    let (site, _) = site_with_primary(&suite, "Acme Nice").await;
    let status = expect_code(
        suite
            .gw()
            .assign_contact(authed(
                Some(&suite.operator.token),
                gw::AssignContactRequest {
                    site_id: site.site_id.clone(),
                    email: look_alike.clone(),
                    display_name: Some("Paula Look-Alike".into()),
                    role: Role::SiteUser as i32,
                    details: None,
                    locale: String::new(),
                },
            ))
            .await,
        Code::FailedPrecondition,
    );
    assert!(cites(status.message(), "I3"), "{status:?}");
}
