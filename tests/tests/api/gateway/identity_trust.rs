//! Identity you can trust (issue 13), tried as an attacker would, through the gateway only
//! with the real services and the real SMTP server (DOMAIN.md I1, I2, I3, A1):
//!
//! - the pre-registration attack on every path that binds a role by e-mail (CreateSite,
//!   AssignContact, ReplaceContact, TransferPrimaryContact): the squatter's account never
//!   holds a usable role, the mailbox's owner claims it with the mailed code (rule I1);
//! - Register and RequestPasswordReset answer alike for free, taken and invited addresses,
//!   and the difference goes by mail to the address (rule I2);
//! - a password reset end to end ends the old sessions;
//! - an unproven account cannot sign in, nominate itself, or be granted rights (I1, A1);
//! - names with format characters and look-alike addresses are refused (rule I3);
//! - unknown and foreign ids answer alike (rule I2).
//!
//! [`claims`] holds the tests of rule I1 (the pre-registration attack, unproven accounts,
//! wrong codes), [`answers`] those of rule I2 (the same answer whatever the address or id)
//! and [`names`] those of rule I3; what they share is here.

mod answers;
mod claims;
mod names;

use crate::gateway::helpers::*;
use kc_proto::contacts::{self as cpb};
use kc_proto::gateway::{self as gw};
use prost::Message;
use tonic::{Code, Status};

/// The squatter's password.
const SQUATTER_PASSWORD: &str = "squatter knows no mailbox";
/// The real owner's password.
const OWNER_PASSWORD: &str = "the owner's own passphrase";

const INVITATION: &str = "NOTICE_KIND_INVITATION";
const PASSWORD_RESET: &str = "NOTICE_KIND_PASSWORD_RESET";
const ADDRESS_TAKEN: &str = "NOTICE_KIND_REGISTRATION_ADDRESS_TAKEN";
const ADDRESS_CONFUSABLE: &str = "NOTICE_KIND_REGISTRATION_ADDRESS_CONFUSABLE";

/// What a caller sees of an answer: the whole message (encoded) or the whole status (code,
/// message and field violations), for comparing answers exactly.
fn seen<T: Message>(result: &Result<T, Status>) -> String {
    match result {
        Ok(message) => format!("OK {:?}", message.encode_to_vec()),
        Err(status) => format!(
            "{:?}: {} {:?}",
            status.code(),
            status.message(),
            kc_runtime::error::field_violations(status)
        ),
    }
}

/// Signs in `email` with `password` through the gateway.
async fn sign_in(suite: &Suite, email: &str, password: &str) -> Result<gw::LoginResponse, Status> {
    suite
        .gw()
        .login(gw::LoginRequest {
            email: email.into(),
            password: password.into(),
        })
        .await
        .map(tonic::Response::into_inner)
}

/// Asserts that `email` cannot sign in with `password`, and returns what it saw.
#[track_caller]
fn refused_sign_in(result: Result<gw::LoginResponse, Status>, who: &str) -> String {
    let what = seen(&result);
    let status = result.expect_err(who);
    assert_eq!(status.code(), Code::Unauthenticated, "{who}: {status:?}");
    what
}

/// The roles `token`'s holder sees it holds on `site_id` (GetMe).
async fn my_roles(suite: &Suite, token: &str, site_id: &str) -> Vec<i32> {
    let me = suite
        .gw()
        .get_me(authed(Some(token), gw::GetMeRequest {}))
        .await
        .expect("GetMe")
        .into_inner();
    me.sites
        .into_iter()
        .filter(|mine| mine.site.as_ref().is_some_and(|s| s.site_id == site_id))
        .flat_map(|mine| mine.roles)
        .collect()
}

/// The person holding `role` on the site, as the operator sees the contacts.
async fn holder(suite: &Suite, site_id: &str, role: Role) -> Option<gw::ContactView> {
    suite
        .operator_contacts(site_id, &[role])
        .await
        .into_iter()
        .next()
}

/// A site whose (proven, signed-in) primary access management knows.
async fn site_with_primary(suite: &Suite, name: &str) -> (cpb::Site, Person) {
    let primary = suite.person(&format!("{name} Primary")).await;
    let site = suite.create_site_applied(name, &primary, None).await;
    (site, primary)
}
