//! AssignContact, UpdateContact, RemoveContact and ReplaceContact (rules C1, C3, C5, C6, C8,
//! C9, L1).

use crate::helpers::{Harness, expect_code, expect_field, expect_rule, role, site_request, user};
use kc_proto::contacts::{self as pb};
use tonic::Code;
use uuid::Uuid;

use pb::ContactRole as R;

// ---------------------------------------------------------------------------------------
// AssignContact
// ---------------------------------------------------------------------------------------

// rules C3, C5, C6: the single-holder roles refuse a second holder, citing the rule that
// limits them; the first holder keeps the role.
#[tokio::test]
async fn single_holder_roles_refuse_a_second_holder() {
    let h = Harness::start().await;
    let site = h.site("1000001", "2000001", user()).await;
    for (single, rule) in [
        (R::Administrative, "C3"),
        (R::SiteTechnical, "C5"),
        (R::Renewal, "C6"),
        (R::Shipping, "C6"),
        (R::Billing, "C6"),
    ] {
        let holder = user();
        let first = h
            .assign(&site.site_id, holder, single)
            .await
            .expect("first");
        assert_eq!(role(&first), single);
        expect_rule(
            h.assign(&site.site_id, user(), single).await,
            Code::FailedPrecondition,
            rule,
        );
        let holders = h.contacts(&site.site_id, &[single]).await;
        assert_eq!(holders.len(), 1, "{single:?}");
        assert_eq!(holders[0].user_id, holder.to_string());
    }
}

// rule C6: at most four SECONDARY contacts; any number of site users.
#[tokio::test]
async fn four_secondary_contacts_and_any_number_of_site_users() {
    let h = Harness::start().await;
    let site = h.site("1000001", "2000001", user()).await;
    for _ in 0..4 {
        h.assign(&site.site_id, user(), R::Secondary)
            .await
            .expect("secondary");
    }
    expect_rule(
        h.assign(&site.site_id, user(), R::Secondary).await,
        Code::FailedPrecondition,
        "C6",
    );
    assert_eq!(h.contacts(&site.site_id, &[R::Secondary]).await.len(), 4);
    for _ in 0..12 {
        h.assign(&site.site_id, user(), R::SiteUser)
            .await
            .expect("site user");
    }
    assert_eq!(h.contacts(&site.site_id, &[R::SiteUser]).await.len(), 12);
}

// rule C8: PRIMARY is never assigned; it changes only by transfer.
#[tokio::test]
async fn assigning_primary_is_refused_citing_c8() {
    let h = Harness::start().await;
    let primary = user();
    let site = h.site("1000001", "2000001", primary).await;
    expect_rule(
        h.assign(&site.site_id, user(), R::Primary).await,
        Code::FailedPrecondition,
        "C8",
    );
    expect_rule(
        h.assign(&site.site_id, primary, R::Primary).await,
        Code::FailedPrecondition,
        "C8",
    );
    let primaries = h.contacts(&site.site_id, &[R::Primary]).await;
    assert_eq!(primaries.len(), 1);
    assert_eq!(primaries[0].user_id, primary.to_string());
}

// C6 and the vocabulary: one user may hold several roles on one site (and roles on many
// sites), but not the same role twice.
#[tokio::test]
async fn one_user_holds_several_roles_but_each_role_once() {
    let h = Harness::start().await;
    let primary = user();
    let site = h.site("1000001", "2000001", primary).await;
    let person = user();
    for r in [R::Administrative, R::Renewal, R::Secondary, R::SiteUser] {
        h.assign(&site.site_id, person, r).await.expect("role");
    }
    // The primary may also hold other roles.
    h.assign(&site.site_id, primary, R::Billing)
        .await
        .expect("primary as billing");
    let status = expect_code(
        h.assign(&site.site_id, person, R::Secondary).await,
        Code::AlreadyExists,
    );
    assert!(status.message().contains("SECONDARY"), "{status:?}");
    expect_code(
        h.assign(&site.site_id, person, R::SiteUser).await,
        Code::AlreadyExists,
    );
    // A user already holding a single-holder role is told it already holds it.
    expect_code(
        h.assign(&site.site_id, person, R::Administrative).await,
        Code::AlreadyExists,
    );
    let roles: Vec<R> = h
        .contacts(&site.site_id, &[])
        .await
        .iter()
        .filter(|c| c.user_id == person.to_string())
        .map(role)
        .collect();
    assert_eq!(
        roles,
        [R::Administrative, R::Secondary, R::Renewal, R::SiteUser]
    );
    // Unknown site.
    expect_code(
        h.assign(&Uuid::new_v4().to_string(), person, R::SiteUser)
            .await,
        Code::NotFound,
    );
}

// rules C6, C9, L1: AssignContact validates role, ids and details (E.164 phone, job title
// length, notification e-mail); a refused request writes no contact and no audit record.
#[tokio::test]
async fn assign_contact_rejects_each_bad_field_and_writes_nothing() {
    let h = Harness::start().await;
    let site = h.site("1000001", "2000001", user()).await;
    let contacts_before = h.contacts(&site.site_id, &[]).await;
    let audit_before = h.audit(&site.site_id).await;
    let valid = pb::AssignContactRequest {
        site_id: site.site_id.clone(),
        user_id: user().to_string(),
        role: R::SiteUser as i32,
        details: Some(pb::ContactDetails {
            phone: "+33 1 23 45 67 89".into(),
            job_title: "Buyer".into(),
            notification_email: "buyer@example.com".into(),
        }),
    };
    let details = |phone: &str, job_title: &str, email: &str| {
        Some(pb::ContactDetails {
            phone: phone.into(),
            job_title: job_title.into(),
            notification_email: email.into(),
        })
    };
    let cases: Vec<(&str, pb::AssignContactRequest)> = vec![
        (
            "site_id",
            pb::AssignContactRequest {
                site_id: "site".into(),
                ..valid.clone()
            },
        ),
        (
            "user_id",
            pb::AssignContactRequest {
                user_id: String::new(),
                ..valid.clone()
            },
        ),
        (
            "user_id",
            pb::AssignContactRequest {
                user_id: "123".into(),
                ..valid.clone()
            },
        ),
        (
            "role",
            pb::AssignContactRequest {
                role: R::Unspecified as i32,
                ..valid.clone()
            },
        ),
        (
            "role",
            pb::AssignContactRequest {
                role: 42,
                ..valid.clone()
            },
        ),
        (
            "details.phone",
            pb::AssignContactRequest {
                details: details("01 23 45 67 89", "", ""),
                ..valid.clone()
            },
        ),
        (
            "details.phone",
            pb::AssignContactRequest {
                details: details("+33 1 2x 45 67 89", "", ""),
                ..valid.clone()
            },
        ),
        (
            "details.phone",
            pb::AssignContactRequest {
                details: details("+1234567890123456", "", ""),
                ..valid.clone()
            },
        ),
        (
            "details.job_title",
            pb::AssignContactRequest {
                details: details("", &"j".repeat(101), ""),
                ..valid.clone()
            },
        ),
        (
            "details.job_title",
            pb::AssignContactRequest {
                details: details("", "line\nbreak", ""),
                ..valid.clone()
            },
        ),
        (
            "details.notification_email",
            pb::AssignContactRequest {
                details: details("", "", "no-at-sign"),
                ..valid.clone()
            },
        ),
        (
            "details.notification_email",
            pb::AssignContactRequest {
                details: details("", "", &format!("{}@example.com", "a".repeat(250))),
                ..valid.clone()
            },
        ),
    ];
    for (field, request) in cases {
        expect_field(h.client().assign_contact(h.svc(request)).await, field);
    }
    // Every bad field of one request is reported.
    let fields = kc_testkit::grpc::invalid_fields(
        h.client()
            .assign_contact(h.svc(pb::AssignContactRequest {
                user_id: "x".into(),
                details: details("123", "", "y"),
                ..valid.clone()
            }))
            .await,
    );
    assert_eq!(
        fields,
        ["user_id", "details.phone", "details.notification_email"]
    );
    assert_eq!(h.contacts(&site.site_id, &[]).await, contacts_before);
    assert_eq!(h.audit(&site.site_id).await, audit_before);
    // Limits are inclusive: 100 characters of job title is fine.
    let contact = h
        .assign_contact(h.svc(pb::AssignContactRequest {
            details: details("", &"é".repeat(100), ""),
            ..valid.clone()
        }))
        .await;
    assert_eq!(contact.details.expect("details").job_title, "é".repeat(100));
}

// ---------------------------------------------------------------------------------------
// UpdateContact, RemoveContact
// ---------------------------------------------------------------------------------------

// rule C9: a contact's notification e-mail may differ from its login e-mail; phones are
// stored in E.164 form.
#[tokio::test]
async fn update_contact_replaces_details_normalising_the_phone() {
    let h = Harness::start().await;
    let site = h.site("1000001", "2000001", user()).await;
    let contact = h
        .assign(&site.site_id, user(), R::Administrative)
        .await
        .expect("assign");
    let update = |details: Option<pb::ContactDetails>, etag: &str| {
        h.svc(pb::UpdateContactRequest {
            contact_id: contact.contact_id.clone(),
            details,
            etag: etag.into(),
            site_id: String::new(),
        })
    };
    let updated = h
        .update_contact(update(
            Some(pb::ContactDetails {
                phone: "+33 1 23 45 67 89".into(),
                job_title: " Head of purchasing ".into(),
                notification_email: "Purchasing@Example.FR".into(),
            }),
            &contact.etag,
        ))
        .await;
    let details = updated.details.clone().expect("details");
    assert_eq!(details.phone, "+33123456789");
    assert_eq!(details.job_title, "Head of purchasing");
    // rule C11: the new notification e-mail waits for its owner's confirmation.
    assert_eq!(details.notification_email, "");
    assert_eq!(updated.pending_notification_email, "purchasing@example.fr");
    assert_ne!(updated.etag, contact.etag);
    assert_eq!(updated.role, contact.role);
    assert_eq!(updated.user_id, contact.user_id);
    let updated = h.confirm_email(&updated).await;
    // rule C9: once confirmed, notices go to the notification e-mail.
    let recipients = h
        .client()
        .resolve_recipients(h.svc(pb::ResolveRecipientsRequest {
            site_id: site.site_id.clone(),
            purpose: pb::NoticePurpose::UpdateAvailable as i32,
        }))
        .await
        .expect("resolve")
        .into_inner()
        .recipients;
    assert_eq!(recipients.len(), 1);
    assert_eq!(recipients[0].notification_email, "purchasing@example.fr");
    // A stale etag is refused and changes nothing.
    expect_code(
        h.client().update_contact(update(None, &contact.etag)).await,
        Code::Aborted,
    );
    expect_code(
        h.client().update_contact(update(None, "v2")).await,
        Code::Aborted,
    );
    // Bad details name their field and write nothing.
    for (field, details) in [
        (
            "details.phone",
            pb::ContactDetails {
                phone: "0033".into(),
                ..Default::default()
            },
        ),
        (
            "details.job_title",
            pb::ContactDetails {
                job_title: "t".repeat(101),
                ..Default::default()
            },
        ),
        (
            "details.notification_email",
            pb::ContactDetails {
                notification_email: "a@b".into(),
                ..Default::default()
            },
        ),
    ] {
        expect_field(
            h.client()
                .update_contact(update(Some(details), &updated.etag))
                .await,
            field,
        );
    }
    let stored = h.contacts(&site.site_id, &[R::Administrative]).await;
    assert_eq!(stored, std::slice::from_ref(&updated));
    // All three fields are replaced: no details clears them (notices then go to the login
    // e-mail).
    let cleared = h.update_contact(update(None, &updated.etag)).await;
    assert_eq!(
        cleared.details.expect("details"),
        pb::ContactDetails::default()
    );
    expect_code(
        h.client()
            .update_contact(h.svc(pb::UpdateContactRequest {
                contact_id: Uuid::new_v4().to_string(),
                details: None,
                etag: String::new(),
                site_id: String::new(),
            }))
            .await,
        Code::NotFound,
    );
    expect_field(
        h.client()
            .update_contact(h.svc(pb::UpdateContactRequest {
                contact_id: "c-1".into(),
                details: None,
                etag: String::new(),
                site_id: String::new(),
            }))
            .await,
        "contact_id",
    );
}

// rule C1: the primary contact cannot be removed.
#[tokio::test]
async fn the_primary_contact_cannot_be_removed() {
    let h = Harness::start().await;
    let created = h.create(site_request("1000001", "2000001", user())).await;
    let site = created.site.expect("site");
    let primary = &created.contacts[0];
    expect_rule(
        h.client()
            .remove_contact(h.op(pb::RemoveContactRequest {
                contact_id: primary.contact_id.clone(),
                etag: primary.etag.clone(),
                site_id: String::new(),
            }))
            .await,
        Code::FailedPrecondition,
        "C1",
    );
    assert_eq!(
        h.contacts(&site.site_id, &[R::Primary]).await,
        std::slice::from_ref(primary)
    );
    assert_eq!(h.audit(&site.site_id).await.len(), 1);
}

// rule C5: the STC of a site with active S&S cannot be removed (only replaced); without
// S&S it can.
#[tokio::test]
async fn the_stc_of_a_site_with_active_support_cannot_be_removed() {
    let h = Harness::start().await;
    let created = h.supported_site("1000001", "2000001", user(), user()).await;
    let site = created.site.expect("site");
    let stc = created.contacts[1].clone();
    assert_eq!(role(&stc), R::SiteTechnical);
    let remove = |etag: &str| {
        h.op(pb::RemoveContactRequest {
            contact_id: stc.contact_id.clone(),
            etag: etag.into(),
            site_id: String::new(),
        })
    };
    expect_rule(
        h.client().remove_contact(remove(&stc.etag)).await,
        Code::FailedPrecondition,
        "C5",
    );
    assert_eq!(
        h.contacts(&site.site_id, &[R::SiteTechnical]).await,
        std::slice::from_ref(&stc)
    );
    // Once S&S is off, the STC may go.
    h.update_site(h.set_support(&site.site_id, false, "")).await;
    let removed = h.remove_contact(remove(&stc.etag)).await;
    assert_eq!(removed, stc);
    assert!(
        h.contacts(&site.site_id, &[R::SiteTechnical])
            .await
            .is_empty()
    );
}

// rule C6 (roles are held one by one): removing one role leaves the user's others; the
// contact's etag guards the removal.
#[tokio::test]
async fn remove_contact_takes_one_role_away_honouring_the_etag() {
    let h = Harness::start().await;
    let site = h.site("1000001", "2000001", user()).await;
    let person = user();
    let secondary = h
        .assign(&site.site_id, person, R::Secondary)
        .await
        .expect("secondary");
    let billing = h
        .assign(&site.site_id, person, R::Billing)
        .await
        .expect("billing");
    // Make the etag move.
    let secondary_v2 = h
        .update_contact(h.svc(pb::UpdateContactRequest {
            contact_id: secondary.contact_id.clone(),
            details: Some(pb::ContactDetails {
                job_title: "Buyer".into(),
                ..Default::default()
            }),
            etag: secondary.etag.clone(),
            site_id: String::new(),
        }))
        .await;
    let remove = |contact_id: &str, etag: &str| {
        h.op(pb::RemoveContactRequest {
            contact_id: contact_id.into(),
            etag: etag.into(),
            site_id: String::new(),
        })
    };
    expect_code(
        h.client()
            .remove_contact(remove(&secondary.contact_id, &secondary.etag))
            .await,
        Code::Aborted,
    );
    expect_code(
        h.client()
            .remove_contact(remove(&secondary.contact_id, "x"))
            .await,
        Code::Aborted,
    );
    expect_field(
        h.client().remove_contact(remove("nope", "")).await,
        "contact_id",
    );
    assert_eq!(h.contacts(&site.site_id, &[]).await.len(), 3);
    let removed = h
        .remove_contact(remove(&secondary.contact_id, &secondary_v2.etag))
        .await;
    assert_eq!(removed, secondary_v2);
    // The user keeps its other role.
    let left: Vec<R> = h
        .contacts(&site.site_id, &[])
        .await
        .iter()
        .map(role)
        .collect();
    assert_eq!(left, [R::Primary, R::Billing]);
    assert_eq!(
        h.contacts(&site.site_id, &[R::Billing]).await,
        std::slice::from_ref(&billing)
    );
    // Gone: a second removal is NotFound.
    expect_code(
        h.client()
            .remove_contact(remove(&secondary.contact_id, ""))
            .await,
        Code::NotFound,
    );
}

// Object-level safety for the gateway: a change scoped by `site_id` reaches only a contact
// of that site; another site's contact is NOT_FOUND and stays unchanged.
#[tokio::test]
async fn a_contact_change_scoped_to_a_site_never_reaches_another_sites_contact() {
    let h = Harness::start().await;
    let mine = h.site("1000001", "2000001", user()).await;
    let theirs = h.site("1000002", "2000002", user()).await;
    let target = h
        .assign(&theirs.site_id, user(), R::Secondary)
        .await
        .expect("secondary of the other site");
    let new_details = Some(pb::ContactDetails {
        job_title: "Intruder".into(),
        ..Default::default()
    });
    expect_code(
        h.client()
            .update_contact(h.svc(pb::UpdateContactRequest {
                contact_id: target.contact_id.clone(),
                details: new_details.clone(),
                etag: String::new(),
                site_id: mine.site_id.clone(),
            }))
            .await,
        Code::NotFound,
    );
    expect_code(
        h.client()
            .remove_contact(h.op(pb::RemoveContactRequest {
                contact_id: target.contact_id.clone(),
                etag: String::new(),
                site_id: mine.site_id.clone(),
            }))
            .await,
        Code::NotFound,
    );
    expect_field(
        h.client()
            .remove_contact(h.op(pb::RemoveContactRequest {
                contact_id: target.contact_id.clone(),
                etag: String::new(),
                site_id: "not-an-id".into(),
            }))
            .await,
        "site_id",
    );
    // Nothing changed on the other site.
    assert_eq!(
        h.contacts(&theirs.site_id, &[R::Secondary]).await,
        std::slice::from_ref(&target)
    );
    assert_eq!(h.contacts(&mine.site_id, &[]).await.len(), 1);

    // Scoped to its own site, the same changes go through.
    let updated = h
        .update_contact(h.svc(pb::UpdateContactRequest {
            contact_id: target.contact_id.clone(),
            details: new_details,
            etag: target.etag.clone(),
            site_id: theirs.site_id.clone(),
        }))
        .await;
    assert_eq!(updated.details.expect("details").job_title, "Intruder");
    h.client()
        .remove_contact(h.op(pb::RemoveContactRequest {
            contact_id: target.contact_id.clone(),
            etag: updated.etag.clone(),
            site_id: theirs.site_id.clone(),
        }))
        .await
        .expect("remove in its own site");
    assert!(
        h.contacts(&theirs.site_id, &[R::Secondary])
            .await
            .is_empty()
    );
}

// ---------------------------------------------------------------------------------------
// ReplaceContact
// ---------------------------------------------------------------------------------------

// rule C5: ReplaceContact is the way to change the STC of a site with active S&S; the site
// is never without one.
#[tokio::test]
async fn replace_contact_swaps_the_stc_of_a_site_with_active_support() {
    let h = Harness::start().await;
    let (primary, old_stc, new_stc) = (user(), user(), user());
    let created = h
        .supported_site("1000001", "2000001", primary, old_stc)
        .await;
    let site = created.site.expect("site");
    // The other ways are closed: a second STC cannot be assigned, the STC cannot be removed.
    expect_rule(
        h.assign(&site.site_id, new_stc, R::SiteTechnical).await,
        Code::FailedPrecondition,
        "C5",
    );
    expect_rule(
        h.client()
            .remove_contact(h.op(pb::RemoveContactRequest {
                contact_id: created.contacts[1].contact_id.clone(),
                etag: String::new(),
                site_id: String::new(),
            }))
            .await,
        Code::FailedPrecondition,
        "C5",
    );
    let response = h
        .client()
        .replace_contact(h.for_user(
            primary,
            pb::ReplaceContactRequest {
                site_id: site.site_id.clone(),
                role: R::SiteTechnical as i32,
                new_user_id: new_stc.to_string(),
                details: Some(pb::ContactDetails {
                    phone: "0044 (20) 7946-0958".into(),
                    ..Default::default()
                }),
            },
        ))
        .await
        .expect("replace")
        .into_inner();
    let contact = response.contact.expect("contact");
    assert_eq!(role(&contact), R::SiteTechnical);
    assert_eq!(contact.user_id, new_stc.to_string());
    assert_eq!(
        contact.details.as_ref().expect("details").phone,
        "+442079460958"
    );
    assert_eq!(response.replaced.expect("replaced"), created.contacts[1]);
    assert_eq!(
        h.contacts(&site.site_id, &[R::SiteTechnical]).await,
        std::slice::from_ref(&contact)
    );
    assert!(h.get_site(&site.site_id).await.support_active);
    // Replacing the holder by itself is AlreadyExists.
    expect_code(
        h.client()
            .replace_contact(h.op(pb::ReplaceContactRequest {
                site_id: site.site_id.clone(),
                role: R::SiteTechnical as i32,
                new_user_id: new_stc.to_string(),
                details: None,
            }))
            .await,
        Code::AlreadyExists,
    );
}

// rules C3, C6, C8: ReplaceContact swaps any single-holder role, assigns it when nobody holds it, and refuses
// PRIMARY (C8) and the multi-holder roles (C6).
#[tokio::test]
async fn replace_contact_swaps_single_holder_roles_only() {
    let h = Harness::start().await;
    let site = h.site("1000001", "2000001", user()).await;
    let replace = |r: R, new_user: Uuid| {
        h.op(pb::ReplaceContactRequest {
            site_id: site.site_id.clone(),
            role: r as i32,
            new_user_id: new_user.to_string(),
            details: None,
        })
    };
    for r in [R::Administrative, R::Renewal, R::Shipping, R::Billing] {
        let (first, second) = (user(), user());
        // Nobody holds it yet: assigned.
        let assigned = h
            .client()
            .replace_contact(replace(r, first))
            .await
            .expect("assign by replace")
            .into_inner();
        assert!(assigned.replaced.is_none());
        let swapped = h
            .client()
            .replace_contact(replace(r, second))
            .await
            .expect("swap")
            .into_inner();
        assert_eq!(
            swapped.replaced.expect("replaced").user_id,
            first.to_string()
        );
        let holders = h.contacts(&site.site_id, &[r]).await;
        assert_eq!(holders.len(), 1);
        assert_eq!(holders[0].user_id, second.to_string());
    }
    // rule C8: the primary changes only by transfer.
    expect_rule(
        h.client()
            .replace_contact(replace(R::Primary, user()))
            .await,
        Code::FailedPrecondition,
        "C8",
    );
    // rule C6: SECONDARY and SITE_USER have several holders: nothing to replace.
    for r in [R::Secondary, R::SiteUser] {
        expect_rule(
            h.client().replace_contact(replace(r, user())).await,
            Code::FailedPrecondition,
            "C6",
        );
    }
    expect_field(
        h.client()
            .replace_contact(h.svc(pb::ReplaceContactRequest {
                site_id: site.site_id.clone(),
                role: 0,
                new_user_id: user().to_string(),
                details: None,
            }))
            .await,
        "role",
    );
    expect_field(
        h.client()
            .replace_contact(h.svc(pb::ReplaceContactRequest {
                site_id: site.site_id.clone(),
                role: R::Billing as i32,
                new_user_id: "someone".into(),
                details: None,
            }))
            .await,
        "new_user_id",
    );
    expect_code(
        h.client()
            .replace_contact(h.svc(pb::ReplaceContactRequest {
                site_id: Uuid::new_v4().to_string(),
                role: R::Billing as i32,
                new_user_id: user().to_string(),
                details: None,
            }))
            .await,
        Code::NotFound,
    );
}
