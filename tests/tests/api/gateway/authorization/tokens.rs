//! Forged and garbage tokens.

use crate::gateway::helpers::*;
use kc_proto::gateway::{self as gw};
use tonic::Code;
use uuid::Uuid;

// Tokens that identity did not sign, or that are not tokens at all, are UNAUTHENTICATED on
// every RPC that needs one, even when they claim to be an operator's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_garbage_tokens_are_unauthenticated() {
    let suite = Suite::start().await;
    let primary = suite.person("Paula Primary").await;
    let site = suite.create_site("Acme Lyon", &primary, None).await;
    let forger = kc_testkit::tokens::TestIssuer::new();
    let forged_operator = forger.mint(
        Uuid::parse_str(&suite.operator.id).expect("operator id"),
        kc_runtime::token::CallerKind::Operator,
        OPERATOR_EMAIL,
    );
    for (what, token) in [
        ("a forged operator token", forged_operator.as_str()),
        ("a garbage token", "not-a-token"),
    ] {
        let mut gw = suite.gw();
        let status = gw
            .get_me(authed(Some(token), gw::GetMeRequest {}))
            .await
            .expect_err(what);
        assert_eq!(status.code(), Code::Unauthenticated, "{what}: {status:?}");
        let status = gw
            .get_site(authed(
                Some(token),
                gw::GetSiteRequest {
                    site_id: site.site_id.clone(),
                },
            ))
            .await
            .expect_err(what);
        assert_eq!(status.code(), Code::Unauthenticated, "{what}: {status:?}");
        let status = gw
            .create_site(authed(Some(token), gw::CreateSiteRequest::default()))
            .await
            .expect_err(what);
        assert_eq!(status.code(), Code::Unauthenticated, "{what}: {status:?}");
    }
}
