//! Routing is per topic: in a triangle a–b–c whose link a–c selects only the payments
//! topic, orders written on a reach c through b, payments go straight over a–c, and
//! every cluster holds every record of both topics exactly once (DESIGN.md rule 2,
//! issue 10: one tree per origin for all topics lost the orders of a and c).

mod harness;

use std::time::Duration;

use duplex_sync::spec::TopicSelection;
use harness::{Expected, Provider};

const TRIANGLE: &[[usize; 2]] = &[[0, 1], [1, 2], [0, 2]];

async fn triangle_with_a_narrow_link(provider: Provider) {
    let Some(clusters) = harness::start(provider, &["a", "b", "c"]) else {
        return;
    };
    let refs: Vec<_> = clusters.iter().collect();
    let orders = harness::unique("routed.orders");
    let payments = harness::unique("routed.payments");
    for c in &refs {
        c.create_topic(&orders, 3).await;
        c.create_topic(&payments, 3).await;
    }
    let mut spec = harness::spec(&refs, TRIANGLE, "routed\\..*");
    // Link a–c (the third link) replicates payments only.
    spec.links[2].topics = TopicSelection::matching(&regex::escape(&payments)).expect("regex");
    let running = harness::run_engine(spec);
    let mut expected = [Expected::new(), Expected::new()];
    for (t, topic) in [&orders, &payments].into_iter().enumerate() {
        let recs: Vec<_> = clusters
            .iter()
            .enumerate()
            .map(|(i, c)| {
                harness::records_on(&c.id, 200, &harness::write_partitions(provider, i, 3, 3))
            })
            .collect();
        let ids = futures::future::join_all(
            refs.iter()
                .zip(&recs)
                .map(|(c, r)| harness::produce(c, topic, r)),
        )
        .await;
        for (i, r) in ids.into_iter().zip(&recs) {
            harness::expect(&mut expected[t], i, r);
        }
    }
    for topic in [&orders, &payments] {
        if let Err(e) = harness::counts_reach(&refs, topic, 600, Duration::from_secs(60)).await {
            panic!(
                "{e}: with one spanning tree for all topics the orders of a and c never reach each other"
            );
        }
    }
    // Every replica is read back by the flows that do not carry it, and passed over:
    // payments as in a full mesh (600 replicas per cluster, 2 flows each); orders as in
    // the chain a–b–c (a→b and c→b pass over 400 each, b→a and b→c 200 each).
    let passed_over = 3 * 400 * 2 + (400 + 400 + 200 + 200);
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
        harness::assert_holds_exactly(c, &orders, &expected[0]);
        harness::assert_holds_exactly(c, &payments, &expected[1]);
    }
    assert_eq!(
        forwarded,
        2 * 600 * 2,
        "each record of both topics written once to each of the two other clusters"
    );
    assert_eq!(loops, 0, "the per-topic trees alone prevent loops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn narrow_link_on_mock() {
    triangle_with_a_narrow_link(Provider::Mock).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn narrow_link_on_tansu() {
    triangle_with_a_narrow_link(Provider::Tansu).await;
}
