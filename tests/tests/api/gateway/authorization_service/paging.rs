//! Keyset paging of both lookups over more than 1,000 sites seeded into access management's
//! projection.

use super::*;

/// Sites seeded straight into access management's projection (as `kc-bench` does: the
/// registry does not know them, and they have no events).
const SEEDED_SITES: i64 = 1_050;

/// What `both_lookups_page_over_more_than_a_thousand_sites` reads, each checked.
struct Lookups {
    /// The member's sites with SOFTWARE_DOWNLOAD.
    sites: Vec<String>,
    /// The member's sites with REPORTS_VIEW.
    reports: Vec<String>,
    /// The users of the first site with REPORTS_VIEW.
    users: Vec<gw::UserGrant>,
    sites_elapsed: std::time::Duration,
    users_elapsed: std::time::Duration,
}

/// Both lookups over the seeded sites of `member` and the users of `first_site`, with the
/// paging and content the test expects.
async fn lookups(client: &Authz, token: &str, member: &str, first_site: Uuid) -> Lookups {
    let started = Instant::now();
    let (downloads, pages) = all_sites(client, token, member, P::SoftwareDownload, 100).await;
    let sites_elapsed = started.elapsed();
    assert_eq!(downloads.len(), SEEDED_SITES as usize);
    assert_eq!(pages, 11);
    assert!(strictly_increasing(&downloads), "keyset order");
    let (reports, _) = all_sites(client, token, member, P::ReportsView, 100).await;
    assert_eq!(
        reports.len(),
        SEEDED_SITES as usize / 2,
        "the even sites only"
    );
    assert!(strictly_increasing(&reports));
    let all: BTreeSet<&String> = downloads.iter().collect();
    assert!(reports.iter().all(|site| all.contains(site)));
    let (one_page, pages) = all_sites(client, token, member, P::SoftwareDownload, 1000).await;
    assert_eq!((one_page.len(), pages), (SEEDED_SITES as usize, 2));
    assert_eq!(one_page, downloads);

    let started = Instant::now();
    let (users, pages) =
        all_users(client, token, &first_site.to_string(), P::ReportsView, 250).await;
    let users_elapsed = started.elapsed();
    // The 1,050 seeded users, and the member when the first site's number is even (it is odd).
    assert_eq!(users.len(), SEEDED_SITES as usize);
    assert_eq!(pages, 5);
    let ids: Vec<String> = users.iter().map(|user| user.user_id.clone()).collect();
    assert!(strictly_increasing(&ids), "keyset order");
    assert!(
        users.iter().all(
            |user| user.rule == "T1" && user.reason == "explicit grant: reporting VIEW >= VIEW"
        )
    );

    Lookups {
        sites: downloads,
        reports,
        users,
        sites_elapsed,
        users_elapsed,
    }
}

// Keyset paging of both lookups over more than 1,000 sites (and 1,000 users of one site).
#[tokio::test]
async fn both_lookups_page_over_more_than_a_thousand_sites() {
    let suite = Suite::start().await;
    let member = suite.person("Many Sites Member").await;
    let (_, token) = suite
        .scoped_service_account("kc-reporting-tool", &["authz"])
        .await;
    let client = authz(&suite.gateway_channel);

    // 1,050 sites: the member downloads on every one and views reports on the even ones;
    // the first site also has 1,050 more users with reporting VIEW.
    let mut conn = sqlx::PgConnection::connect(&suite.db.url)
        .await
        .expect("connect");
    let started = Instant::now();
    sqlx::query(
        "INSERT INTO access.sites (site_id, site_number, customer_number) \
         SELECT gen_random_uuid(), (9100000 + i)::text, (9600000 + i / 4)::text \
         FROM generate_series(1, $1::bigint) AS i",
    )
    .bind(SEEDED_SITES)
    .execute(&mut conn)
    .await
    .expect("seed sites");
    sqlx::query(
        "INSERT INTO access.grants (site_id, user_id, software, reporting) \
         SELECT site_id, $1::uuid, 1, CASE WHEN site_number::bigint % 2 = 0 THEN 1 ELSE 0 END \
         FROM access.sites WHERE site_number LIKE '91%'",
    )
    .bind(member.id.parse::<Uuid>().expect("uuid"))
    .execute(&mut conn)
    .await
    .expect("seed the member's grants");
    let (first_site,): (Uuid,) =
        sqlx::query_as("SELECT site_id FROM access.sites WHERE site_number = '9100001'")
            .fetch_one(&mut conn)
            .await
            .expect("first seeded site");
    // Each a user as identity's projection knows it (proven, enabled: rule I1), as kc-bench
    // seeds them.
    sqlx::query(
        "WITH seeded AS ( \
           INSERT INTO access.users (user_id, email, email_verified, disabled) \
           SELECT id, 'seeded-' || id || '@example.com', true, false \
           FROM (SELECT gen_random_uuid() AS id FROM generate_series(1, $2::bigint)) AS fresh \
           RETURNING user_id) \
         INSERT INTO access.grants (site_id, user_id, reporting) \
         SELECT $1::uuid, user_id, 1 FROM seeded",
    )
    .bind(first_site)
    .bind(SEEDED_SITES)
    .execute(&mut conn)
    .await
    .expect("seed the users of the first site");
    let seeded = started.elapsed();
    // Access management learns that the member's address is proven from identity's stream
    // (rule I1: until then it holds nothing).
    eventually("access management knows the member as proven", || async {
        let answer = ask(
            &client,
            &token,
            check(&member.id, &first_site.to_string(), P::SoftwareDownload, ""),
        )
        .await
        .map_err(|status| format!("{status:?}"))?;
        if answer.allowed {
            Ok(())
        } else {
            Err(format!("{answer:?}"))
        }
    })
    .await;

    // Written straight into the table, the grants are not in the permission feed's table
    // yet: mark its backfill as not run, so the lookups read profiles (the path of a rolling
    // upgrade) until a replica of access management, started below, fills the table.
    sqlx::query("UPDATE access.permission_feed_backfill SET done = false, after_site = NULL")
        .execute(&mut conn)
        .await
        .expect("reset the backfill");
    let by_profiles = lookups(&client, &token, &member.id, first_site).await;
    let (_replica, _) = access_replica(&suite).await;
    eventually("the replica backfilled the permission feed", || async {
        let mut conn = sqlx::PgConnection::connect(&suite.db.url)
            .await
            .map_err(|e| e.to_string())?;
        let done: bool = sqlx::query_scalar("SELECT done FROM access.permission_feed_backfill")
            .fetch_one(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        if done { Ok(()) } else { Err("not yet".into()) }
    })
    .await;
    let by_table = lookups(&client, &token, &member.id, first_site).await;
    assert_eq!(
        by_table.sites, by_profiles.sites,
        "the same sites, in the same order"
    );
    let unnumbered: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM access.effective_permissions WHERE site_number = ''",
    )
    .fetch_one(&mut conn)
    .await
    .expect("count the feed's rows without a site number");
    assert_eq!(
        unnumbered, 0,
        "the feed's rows carry their sites' numbers (migration 0007)"
    );
    let numbers: Vec<(String, String)> = sqlx::query_as(
        "SELECT site_id::text, site_number FROM access.sites WHERE site_number LIKE '91%' \
         ORDER BY site_id",
    )
    .fetch_all(&mut conn)
    .await
    .expect("the seeded sites' numbers");
    let served = |grants: Vec<gw::SiteGrant>| -> Vec<(String, String)> {
        grants
            .into_iter()
            .map(|site| (site.site_id, site.site_number))
            .collect()
    };
    let (from_rows, _) =
        all_site_grants(&client, &token, &member.id, P::SoftwareDownload, 100).await;
    assert_eq!(served(from_rows), numbers, "each site with its own number");
    // A row written without its number (by a replica older than migration 0007, during a
    // rolling upgrade) still answers with the site's number.
    sqlx::query("UPDATE access.effective_permissions SET site_number = '' WHERE user_id = $1")
        .bind(member.id.parse::<Uuid>().expect("uuid"))
        .execute(&mut conn)
        .await
        .expect("forget the member's site numbers");
    let (without_numbers, _) =
        all_site_grants(&client, &token, &member.id, P::SoftwareDownload, 100).await;
    assert_eq!(served(without_numbers), numbers);
    assert_eq!(by_table.reports, by_profiles.reports);
    assert_eq!(
        by_table.users, by_profiles.users,
        "the same users and reasons"
    );
    let Lookups {
        reports,
        sites_elapsed,
        users_elapsed,
        ..
    } = by_table;

    // Check agrees with the lookups.
    let answer = ask(
        &client,
        &token,
        check(&member.id, &reports[0], P::ReportsView, ""),
    )
    .await
    .expect("check");
    assert!(answer.allowed, "{answer:?}");
    eprintln!(
        "seeded {SEEDED_SITES} sites and {SEEDED_SITES} users in {seeded:?}; \
         LookupSites over {SEEDED_SITES} sites in 11 pages: {sites_elapsed:?}; \
         LookupUsers over {SEEDED_SITES} users in 5 pages: {users_elapsed:?}"
    );
}

// The service is public: reflection describes it, and grpcurl (a real client) calls it
// with a service account's token.
