//! TransferPrimaryContact (rule C8).

use crate::helpers::{Harness, expect_code, expect_field, expect_rule, role, user};
use kc_proto::contacts::{self as pb};
use tonic::Code;
use uuid::Uuid;

use pb::ContactRole as R;

// rule C8: the primary changes by transfer; the old primary stays as a SITE_USER by default
// or in the role the request names; the site's etag guards the transfer.
#[tokio::test]
async fn transfer_primary_keeps_the_old_primary_as_site_user_or_named_role() {
    let h = Harness::start().await;
    let (first, second, third) = (user(), user(), user());
    let site = h.site("1000001", "2000001", first).await;
    // TransferPrimaryContact of the site as the operator.
    let transfer = async |new_user: Uuid, previous_role: R, etag: &str| {
        let request = h.op(pb::TransferPrimaryContactRequest {
            site_id: site.site_id.clone(),
            new_user_id: new_user.to_string(),
            etag: etag.into(),
            previous_primary_role: previous_role as i32,
        });
        h.client().transfer_primary_contact(request).await
    };
    let response = transfer(second, R::Unspecified, &site.etag)
        .await
        .expect("transfer")
        .into_inner();
    let after = response.site.expect("site");
    assert_eq!(after.primary_user_id, second.to_string());
    assert_ne!(after.etag, site.etag);
    let primary = response.primary.expect("primary");
    assert_eq!(role(&primary), R::Primary);
    assert_eq!(primary.user_id, second.to_string());
    let previous = response.previous_primary.expect("previous primary");
    assert_eq!(role(&previous), R::SiteUser);
    assert_eq!(previous.user_id, first.to_string());
    assert_eq!(h.get_site(&site.site_id).await, after);

    // The old etag is stale now.
    expect_code(
        transfer(third, R::Unspecified, &site.etag).await,
        Code::Aborted,
    );
    // Transferring to the current primary: it already holds the role.
    expect_code(
        transfer(second, R::Unspecified, &after.etag).await,
        Code::AlreadyExists,
    );
    // The old primary may keep another role; PRIMARY itself is refused (C8).
    expect_rule(
        transfer(third, R::Primary, &after.etag).await,
        Code::FailedPrecondition,
        "C8",
    );
    // rule C6 applies to the role the old primary keeps: BILLING is taken.
    let billing = user();
    h.assign(&site.site_id, billing, R::Billing)
        .await
        .expect("billing");
    expect_rule(
        transfer(third, R::Billing, &after.etag).await,
        Code::FailedPrecondition,
        "C6",
    );
    // Nothing changed by the refusals.
    assert_eq!(h.get_site(&site.site_id).await, after);
    assert_eq!(
        h.contacts(&site.site_id, &[R::Primary]).await[0].user_id,
        second.to_string()
    );

    let response = transfer(third, R::Administrative, &after.etag)
        .await
        .expect("transfer with a named role")
        .into_inner();
    let previous = response.previous_primary.expect("previous primary");
    assert_eq!(role(&previous), R::Administrative);
    assert_eq!(previous.user_id, second.to_string());
    let roles: Vec<(R, String)> = h
        .contacts(&site.site_id, &[])
        .await
        .iter()
        .map(|c| (role(c), c.user_id.clone()))
        .collect();
    assert!(roles.contains(&(R::Primary, third.to_string())));
    assert!(roles.contains(&(R::Administrative, second.to_string())));
    assert!(roles.contains(&(R::SiteUser, first.to_string())));
    assert_eq!(roles.iter().filter(|(r, _)| *r == R::Primary).count(), 1);

    // An old primary that already holds the role keeps it: previous_primary is absent.
    h.assign(&site.site_id, third, R::SiteUser)
        .await
        .expect("the primary also a site user");
    let site_now = h.get_site(&site.site_id).await;
    let response = transfer(first, R::Unspecified, &site_now.etag)
        .await
        .expect("transfer back")
        .into_inner();
    assert_eq!(response.previous_primary, None);
    let mut roles: Vec<(R, String)> = h
        .contacts(&site.site_id, &[])
        .await
        .iter()
        .map(|c| (role(c), c.user_id.clone()))
        .collect();
    roles.sort();
    let mut expected = vec![
        (R::Primary, first.to_string()),
        (R::Administrative, second.to_string()),
        (R::Billing, billing.to_string()),
        (R::SiteUser, first.to_string()),
        (R::SiteUser, third.to_string()),
    ];
    expected.sort();
    assert_eq!(roles, expected);
}

// rule C8: a malformed transfer request names its field (a foreign etag is Aborted) and
// changes nothing.
#[tokio::test]
async fn transfer_primary_rejects_bad_fields() {
    let h = Harness::start().await;
    let site = h.site("1000001", "2000001", user()).await;
    let valid = pb::TransferPrimaryContactRequest {
        site_id: site.site_id.clone(),
        new_user_id: user().to_string(),
        etag: site.etag.clone(),
        previous_primary_role: 0,
    };
    for (field, request) in [
        (
            "site_id",
            pb::TransferPrimaryContactRequest {
                site_id: "s".into(),
                ..valid.clone()
            },
        ),
        (
            "new_user_id",
            pb::TransferPrimaryContactRequest {
                new_user_id: String::new(),
                ..valid.clone()
            },
        ),
        (
            "previous_primary_role",
            pb::TransferPrimaryContactRequest {
                previous_primary_role: 99,
                ..valid.clone()
            },
        ),
    ] {
        expect_field(
            h.client().transfer_primary_contact(h.op(request)).await,
            field,
        );
    }
    expect_code(
        h.client()
            .transfer_primary_contact(h.op(pb::TransferPrimaryContactRequest {
                etag: "one".into(),
                ..valid.clone()
            }))
            .await,
        Code::Aborted,
    );
    assert_eq!(h.get_site(&site.site_id).await, site);
    expect_code(
        h.client()
            .transfer_primary_contact(h.op(pb::TransferPrimaryContactRequest {
                site_id: Uuid::new_v4().to_string(),
                etag: String::new(),
                ..valid.clone()
            }))
            .await,
        Code::NotFound,
    );
}
