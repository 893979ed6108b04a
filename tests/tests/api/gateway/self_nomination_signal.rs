//! The self-nomination signal (issue 17): a signed-in person who holds nothing on a site it
//! asks about is refused with `google.rpc.ErrorInfo{reason: NO_SITE_ACCESS, domain:
//! keycontacts, metadata: {self_nominate: …/SelfNominate}}`, so that a client shows the
//! seed's request-access screen; the refusal is the same, to the byte, for a site that does
//! not exist (I2). A person with some right on the site, refused another, gets the plain
//! refusal.

use crate::gateway::helpers::*;
use kc_proto::access::{self as apb};
use tonic::{Code, Status};
use tonic_types::StatusExt as _;

/// `ShowAllContacts` of `site_id` as `person`: its refusal.
async fn refused(suite: &Suite, person: &Person, site_id: &str) -> Status {
    suite
        .contacts_page(person, site_id, 0, "")
        .await
        .expect_err("refused")
}

#[tokio::test]
async fn a_person_without_any_right_on_a_site_is_told_to_nominate_itself() {
    let suite = Suite::start().await;
    let primary = suite.person("Paula Primary").await;
    let stranger = suite.person("Stan Stranger").await;
    let downloader = suite.person("Dora Downloads").await;
    let site = suite.create_site("Paris", &primary, None).await;
    suite
        .grant(
            &site.site_id,
            &downloader.id,
            apb::ToolAccess {
                software: apb::SoftwareAccess::DownloadsOnly as i32,
                ..Default::default()
            },
        )
        .await;

    let foreign = refused(&suite, &stranger, &site.site_id).await;
    let unknown = refused(&suite, &stranger, &uuid::Uuid::now_v7().to_string()).await;
    for status in [&foreign, &unknown] {
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        let info = status.get_details_error_info().expect("an ErrorInfo");
        assert_eq!(info.reason, "NO_SITE_ACCESS");
        assert_eq!(info.domain, "keycontacts");
        assert_eq!(
            info.metadata.get("self_nominate").map(String::as_str),
            Some("keycontacts.gateway.v1.GatewayService/SelfNominate")
        );
    }
    // rule I2: nothing tells a foreign site from one that does not exist.
    assert_eq!(foreign.message(), unknown.message());
    assert_eq!(foreign.details(), unknown.details());

    // Some right on the site, not the one asked: the plain refusal, naming the permission.
    let partial = refused(&suite, &downloader, &site.site_id).await;
    assert_eq!(partial.code(), Code::PermissionDenied, "{partial:?}");
    assert!(
        partial.message().contains("PERMISSION_CONTACTS_VIEW"),
        "{partial:?}"
    );
    assert!(partial.get_details_error_info().is_none(), "{partial:?}");
}
