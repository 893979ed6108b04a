//! The gateway's admission of people's site-scoped calls (the permissions of each RPC, asked
//! of access management before the call goes on) is coalesced: the checks of concurrent
//! calls go to access management together, in one `BatchCheck` (`kc_gateway::checks`).
//! Each call must still be admitted or refused on its own caller's rights (T3, U5), never on
//! another's that shared the batch.

use crate::gateway::helpers::*;
use kc_proto::gateway::{self as gw};
use tonic::Code;

/// Read cache off: every admission is asked of access management, none answered from the
/// cache.
const UNCACHED: [&str; 4] = ["--session-rate-limit", "off", "--read-cache-ttl", "0s"];

/// What `ShowAllContacts` of `site_id` as `person` answered: the people listed, or the
/// refusal's code.
async fn show_all(
    channel: &tonic::transport::Channel,
    person: &Person,
    site_id: &str,
) -> Result<Vec<String>, Code> {
    gw::gateway_service_client::GatewayServiceClient::new(channel.clone())
        .show_all_contacts(authed(
            Some(&person.token),
            gw::ShowAllContactsRequest {
                site_id: site_id.to_owned(),
                ..Default::default()
            },
        ))
        .await
        .map(|response| {
            let mut people: Vec<String> = response
                .into_inner()
                .contacts
                .into_iter()
                .map(|view| view.user_id)
                .collect();
            people.sort();
            people
        })
        .map_err(|status| status.code())
}

// Three people on three sites, each the primary of one (rule T3: CONTACTS_VIEW there) and
// nothing on the others: hundreds of calls at once, shuffled, each answered as it was alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_are_each_admitted_on_their_own_callers_rights() {
    let suite = Suite::start_with(&UNCACHED).await;
    let channel = suite.gateway_channel.clone();
    let mut people = Vec::new();
    let mut site_ids = Vec::new();
    for name in ["Ada Admitted", "Bruno Batched", "Chloe Coalesced"] {
        let person = suite.person(name).await;
        let site = suite
            .create_site_applied(&format!("{name}'s site"), &person, None)
            .await;
        people.push(person);
        site_ids.push(site.site_id);
    }
    let calls: Vec<(usize, usize)> = (0..people.len())
        .flat_map(|person| (0..site_ids.len()).map(move |site| (person, site)))
        .collect();

    // One at a time first: what each call answers alone.
    let mut alone = Vec::new();
    for (person, site) in &calls {
        alone.push(show_all(&channel, &people[*person], &site_ids[*site]).await);
    }
    for ((person, site), answer) in calls.iter().zip(&alone) {
        if person == site {
            assert_eq!(answer.as_deref(), Ok(&[people[*person].id.clone()][..]));
        } else {
            assert_eq!(answer, &Err(Code::PermissionDenied), "{person} on {site}");
        }
    }

    // Then all at once, twenty times over, in a shuffled order.
    let mut order: Vec<usize> = (0..calls.len()).cycle().take(20 * calls.len()).collect();
    order.sort_by_key(|i| (i * 7919) % 61);
    let together = futures::future::join_all(order.iter().map(|i| {
        let (person, site) = calls[*i];
        let (channel, person, site_id) = (&channel, &people[person], &site_ids[site]);
        async move { show_all(channel, person, site_id).await }
    }))
    .await;
    for (i, answer) in order.iter().zip(together) {
        assert_eq!(answer, alone[*i], "call {:?}", calls[*i]);
    }
}
