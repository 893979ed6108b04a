//! Blocked requesters under races (issue 17): the check at submission holds the site's row
//! lock, which a block takes before it writes, so a block committed before a request commits
//! refuses the request, with the very refusal of a wrong site number (S3).

use crate::access::helpers::*;
use kc_access::domain::blocks::BlockTarget;
use kc_access::storage::{blocks, sites};
use kc_proto::access::{self as pb};
use tonic::Code;
use uuid::Uuid;

// rule S3: a block that is being written (the site locked, the block inserted, not yet
// committed) when a request arrives: the request waits for the site's lock, sees the
// committed block, and is refused exactly as a wrong site number is.
#[tokio::test]
async fn a_block_committed_while_a_request_waits_refuses_it() {
    let s = Suite::start().await;
    let [primary, requester] = s.users(2).await.try_into().unwrap();
    let site = s.site(primary).await;
    let site_id = uuid(&site.site_id);
    let pool = s.access_pool().await;
    let email: String = eventually("the projection knows the requester", || {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, String>("SELECT email FROM users WHERE user_id = $1")
                .bind(requester)
                .fetch_optional(&pool)
                .await
                .map_err(|error| error.to_string())?
                .ok_or_else(|| "not projected yet".to_owned())
        }
    })
    .await;
    let unknown = expect_code(
        s.submit(
            requester,
            pb::SubmitAccessRequestRequest {
                customer_number: "9999999".into(),
                ..site_access(&site, Level::Reporting(Re::View).alone())
            },
        )
        .await,
        Code::NotFound,
    );

    // A block in progress, as BlockRequester writes it: the site locked, then the block.
    let target = BlockTarget::parse(&email, "").expect("an address");
    let mut blocking = pool.begin().await.expect("block transaction");
    sites::lock(&mut blocking, site_id)
        .await
        .expect("lock the site")
        .expect("the site exists");
    blocks::insert(
        &mut blocking,
        &blocks::NewBlock {
            block_id: Uuid::now_v7(),
            site_id,
            target: &target,
            reason: "spam",
            blocked_by: primary,
        },
    )
    .await
    .expect("insert the block");

    let mut client = s.access();
    let call = s.as_user(
        requester,
        site_access(&site, Level::Reporting(Re::View).alone()),
    );
    let submitting = tokio::spawn(async move { client.submit_access_request(call).await });
    wait_for_lock_wait(&pool, "the submission waits for the site's lock", None).await;
    blocking.commit().await.expect("commit the block");

    let refused = expect_code(
        submitting.await.expect("the submission task"),
        Code::NotFound,
    );
    assert_eq!(refused.message(), unknown.message());
    assert_eq!(refused.details(), unknown.details());
    let requests = s
        .access()
        .list_access_requests(s.op(pb::ListAccessRequestsRequest {
            site_id: site.site_id.clone(),
            ..Default::default()
        }))
        .await
        .expect("list the site's requests")
        .into_inner()
        .requests;
    assert!(requests.is_empty(), "{requests:?}");
}
