//! Topology changes applied to a running engine while every cluster is written: a chain
//! a–b–c becomes a full mesh (a–c added), with records written while the flows are held
//! and records below the cut still waiting on b for a paused b->c. Every cluster holds
//! every record exactly once, and the change took effect at its cut: a's records below
//! the cut reached c through b, those at or past it came directly
//! (docs/topology-changes.md).

mod harness;

use std::time::Duration;

use duplex_sync::spec::StartPosition;
use harness::{Expected, Provider};

const CHAIN: &[[usize; 2]] = &[[0, 1], [1, 2]];
const MESH: &[[usize; 2]] = &[[0, 1], [1, 2], [0, 2]];
const PER_CLUSTER: usize = 600;
const BATCHES: usize = 12;

async fn add_a_link_while_writing(provider: Provider) {
    let Some(clusters) = harness::start(provider, &["a", "b", "c"]) else {
        return;
    };
    let refs: Vec<_> = clusters.iter().collect();
    let topic = harness::unique("events");
    for c in &refs {
        c.create_topic(&topic, 3).await;
    }
    let (running, engine) = harness::start_engine(harness::spec(&refs, CHAIN, "events\\..*"));
    let writers = refs.iter().enumerate().map(|(i, c)| {
        let recs = harness::records_on(
            &c.id,
            PER_CLUSTER,
            &harness::write_partitions(provider, i, 3, 3),
        );
        let topic = topic.clone();
        async move {
            let mut ids = Vec::new();
            for batch in recs.chunks(PER_CLUSTER / BATCHES) {
                ids.extend(harness::produce(c, &topic, batch).await);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (ids, recs)
        }
    });
    let change = async {
        // A few batches in, with the chain replicating them; b->c paused for a while, so
        // that records below the cut wait on b for the flow the old routes gave them.
        tokio::time::sleep(Duration::from_millis(300)).await;
        engine.pause("b->c").await.expect("pause b->c");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut mesh = harness::spec(&refs, MESH, "events\\..*");
        // Where the new link's flows start is the cut's business, not the link's start
        // position: from the end at their first start they would miss what was written
        // between the cut and that start.
        mesh.links[2].start = StartPosition::Latest;
        let prepared = engine
            .prepare_change(mesh)
            .await
            .expect("prepare the change");
        let cut = prepared.cut().clone();
        // Clients write while the flows are held: past the cut, before any new flow runs.
        let mut meanwhile = Vec::new();
        for (i, c) in refs.iter().enumerate() {
            let recs =
                harness::records_on(&c.id, 30, &harness::write_partitions(provider, i, 3, 3));
            meanwhile.push((harness::produce(c, &topic, &recs).await, recs));
        }
        prepared.apply();
        engine.resume("b->c").await.expect("resume b->c");
        (cut, meanwhile)
    };
    let (written, (cut, meanwhile)) = tokio::join!(futures::future::join_all(writers), change);
    let mut expected = Expected::new();
    for (ids, recs) in written.into_iter().chain(meanwhile) {
        harness::expect(&mut expected, ids, &recs);
    }
    let total = expected.len() as i64;
    harness::wait_for_count(&refs, &topic, total, Duration::from_secs(90)).await;
    harness::wait_until(
        "every record forwarded once to each other cluster",
        Duration::from_secs(30),
        || running.sum(|m| &m.forwarded) >= 2 * total as u64,
    )
    .await;
    // Whatever would arrive twice has had the time to.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (forwarded, loops) = (
        running.sum(|m| &m.forwarded),
        running.sum(|m| &m.loop_stopped),
    );
    let direct = running
        .flow("a->c")
        .await
        .forwarded
        .load(std::sync::atomic::Ordering::Relaxed);
    running.stop().await;
    let mut held = Vec::new();
    for c in &refs {
        held.push(harness::assert_holds_exactly(c, &topic, &expected));
    }
    assert_eq!(
        forwarded,
        2 * total as u64,
        "each record written once to each of the two other clusters"
    );
    assert_eq!(
        loops, 0,
        "the routing alone prevents loops, across the change"
    );
    let after = harness::assert_hops_across(&held[2], &cut.topic(&topic), "a", &["a", "b"], &["a"]);
    assert_eq!(
        direct, after,
        "a->c carries a's records past the cut, nothing else"
    );
    // Order too: a->c deferred a's records past the cut until those below it, held on b
    // by the paused b->c, had reached c (docs/topology-changes.md, "Order across a
    // change").
    harness::verify::assert_pass(&refs, &topic, expected.len() as u64).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_a_link_to_a_chain_on_mock() {
    add_a_link_while_writing(Provider::Mock).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_a_link_to_a_chain_on_tansu() {
    add_a_link_while_writing(Provider::Tansu).await;
}
