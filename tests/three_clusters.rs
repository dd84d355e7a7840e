//! Three clusters in a full mesh, and in a chain (A–B–C, no A–C): every cluster holds
//! every record exactly once (DESIGN.md rule 2).

mod harness;

use std::time::Duration;

use harness::{Expected, Provider};

const MESH: &[[usize; 2]] = &[[0, 1], [1, 2], [0, 2]];
const CHAIN: &[[usize; 2]] = &[[0, 1], [1, 2]];

async fn three_clusters(provider: Provider, links: &[[usize; 2]]) {
    let Some(clusters) = harness::start(provider, &["a", "b", "c"]) else {
        return;
    };
    let refs: Vec<_> = clusters.iter().collect();
    let topic = harness::unique("events");
    for c in &refs {
        c.create_topic(&topic, 3).await;
    }
    let running = harness::run_engine(harness::spec(&refs, links, "events\\..*"));
    let recs: Vec<_> = clusters
        .iter()
        .enumerate()
        .map(|(i, c)| {
            harness::records_on(&c.id, 300, &harness::write_partitions(provider, i, 3, 3))
        })
        .collect();
    let ids = futures::future::join_all(
        refs.iter()
            .zip(&recs)
            .map(|(c, r)| harness::produce(c, &topic, r)),
    )
    .await;
    let mut expected = Expected::new();
    for (i, r) in ids.into_iter().zip(&recs) {
        harness::expect(&mut expected, i, r);
    }
    harness::wait_for_count(&refs, &topic, 900, Duration::from_secs(60)).await;
    // In a mesh each cluster reads every replica back on both of its outgoing flows and
    // passes it over: 600 replicas per cluster × 2 flows. In the chain a→b and c→b pass
    // over the 600 replicas on their ends; b→a and b→c relay two origins, pass one over.
    let passed_over = if links.len() == 3 {
        3 * 600 * 2
    } else {
        600 + 600 + 300 + 300
    };
    harness::wait_until("replicas read back", Duration::from_secs(30), || {
        running.sum(|m| &m.not_forwarded) >= passed_over
    })
    .await;
    let (forwarded, loops) = (
        running.sum(|m| &m.forwarded),
        running.sum(|m| &m.loop_stopped),
    );
    running.stop().await;
    for c in &refs {
        harness::assert_holds_exactly(c, &topic, &expected);
    }
    assert_eq!(
        forwarded, 1800,
        "each record written once to each of the two other clusters"
    );
    assert_eq!(loops, 0, "the spanning trees alone prevent loops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_mesh_on_mock() {
    three_clusters(Provider::Mock, MESH).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_on_mock() {
    three_clusters(Provider::Mock, CHAIN).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_mesh_on_tansu() {
    three_clusters(Provider::Tansu, MESH).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_on_tansu() {
    three_clusters(Provider::Tansu, CHAIN).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_mesh_on_external() {
    three_clusters(Provider::External, MESH).await;
}
