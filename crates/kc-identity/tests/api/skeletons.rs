//! The confusable skeletons of accounts older than the column (rule I3): computed in
//! batches when identity starts and in its sweep.

use kc_identity::domain::values::email_skeleton;
use kc_proto::identity as pb;
use uuid::Uuid;

use crate::helpers::Harness;

/// Accounts older than the column, more than one batch (500) of them.
const OLD_INVITED: i64 = 600;

/// Every account's id, e-mail and skeleton, by id.
async fn skeletons(pool: &sqlx::PgPool) -> Vec<(Uuid, String, Option<String>)> {
    sqlx::query_as("SELECT user_id, email, email_skeleton FROM users ORDER BY user_id")
        .fetch_all(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn backfill_gives_every_account_its_skeleton_but_a_proven_lookalike() {
    // rule I3: two proven accounts whose addresses look the same (both proven before the
    // skeleton column existed) cannot both hold the skeleton; the backfill leaves the
    // second one (by id) without, and every other account, in any batch, gets its own.
    let h = Harness::start().await;
    // Built first: building the domain backfills too.
    let domain = h.domain().await;
    let operator = h.operator().await;
    h.invite_user(
        &operator,
        pb::InviteUserRequest {
            email: "invited@example.com".into(),
            display_name: "Invited".into(),
            locale: "en".into(),
        },
    )
    .await
    .expect("invite");
    let options = kc_runtime::db::connect_options(&h.db.url, "identity").unwrap();
    let pool = sqlx::PgPool::connect_with(options).await.unwrap();
    let owner = "taken@example.com";
    // Cyrillic 'а' (U+0430) for the Latin 'a' of "taken".
    let lookalike = "t\u{0430}ken@example.com";
    assert_eq!(email_skeleton(owner), email_skeleton(lookalike));
    h.proven(owner, "Owner", "en").await;
    // The owner's row as it was before the column: the look-alike's registration and proof
    // do not see it.
    sqlx::query("UPDATE users SET email_skeleton = NULL WHERE email = $1")
        .bind(owner)
        .execute(&pool)
        .await
        .unwrap();
    h.proven(lookalike, "Look-alike", "en").await;
    // Invited accounts older than the column, one an unproven look-alike (which may share
    // the skeleton of a proven account).
    sqlx::query(
        "INSERT INTO users (user_id, email, email_verified, display_name, locale, kind, state) \
         SELECT gen_random_uuid(), 'old-' || u || '@example.com', false, 'Old ' || u, 'en', \
                'customer', 'invited' \
         FROM generate_series(1::bigint, $1::bigint) AS u \
         UNION ALL SELECT gen_random_uuid(), $2, false, 'Unproven look-alike', 'en', \
                'customer', 'invited'",
    )
    .bind(OLD_INVITED)
    .bind("t\u{0430}k\u{0435}n@example.com")
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("UPDATE users SET email_skeleton = NULL")
        .execute(&pool)
        .await
        .unwrap();
    let missing = skeletons(&pool).await;
    assert!(missing.len() > 500 + 3, "two batches: {}", missing.len());
    assert!(missing.iter().all(|(_, _, skeleton)| skeleton.is_none()));

    domain.backfill_skeletons().await.expect("backfill");

    let after = skeletons(&pool).await;
    assert_eq!(after.len(), missing.len());
    let pair: Vec<&(Uuid, String, Option<String>)> = after
        .iter()
        .filter(|(_, email, _)| email == owner || email == lookalike)
        .collect();
    assert_eq!(pair.len(), 2);
    // The first of the pair by id takes the skeleton, as row by row.
    assert_eq!(pair[0].2.as_deref(), Some(email_skeleton(owner).as_str()));
    assert_eq!(pair[1].2, None, "the second proven look-alike keeps none");
    for (user_id, email, skeleton) in &after {
        if email != &pair[1].1 {
            assert_eq!(
                skeleton.as_deref(),
                Some(email_skeleton(email).as_str()),
                "{user_id} {email}"
            );
        }
    }

    domain.backfill_skeletons().await.expect("second backfill");
    assert_eq!(skeletons(&pool).await, after, "nothing left to do");
}
