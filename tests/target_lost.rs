//! A target partition truncated or recreated below a flow's checkpoint: the flow sees
//! that the target no longer holds the record its checkpoint names, counts it, and
//! resumes from what the target holds, so the records the target lost are sent again
//! (docs/delivery.md). Needs commit metadata (the checkpoint names that record).

mod harness;

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use harness::{Expected, Feature, Provider};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreated_target_gets_the_records_it_lost_on_mock() {
    let provider = Provider::Mock;
    if !harness::needs(provider, Feature::CommitMetadata, "target_lost") {
        return;
    }
    let Some(clusters) = harness::start(provider, &["src", "dst"]) else {
        return;
    };
    let (a, b) = (&clusters[0], &clusters[1]);
    let topic = harness::unique("lost");
    a.create_topic(&topic, 1).await;
    b.create_topic(&topic, 1).await;
    let recs = harness::records_on("src", 30, &[0]);
    let ids = harness::produce(a, &topic, &recs).await;
    let mut expected = Expected::new();
    harness::expect(&mut expected, ids, &recs);
    let running = harness::run_engine(harness::spec(&[a, b], &[[0, 1]], "lost\\..*"));
    harness::wait_for_count(&[b], &topic, 30, Duration::from_secs(30)).await;
    running.stop().await;

    // The target partition is recreated (a new cluster under the same id), and other
    // writers have filled it past the offset the checkpoint names (29) before the flow
    // starts again: only the record there says that it is not the flow's.
    let fresh = harness::start(provider, &["dst"]).unwrap().remove(0);
    fresh.create_topic(&topic, 1).await;
    let local = harness::records_on("dst", 40, &[0]);
    let ids = harness::produce(&fresh, &topic, &local).await;
    harness::expect(&mut expected, ids, &local);
    let running = harness::run_engine(harness::spec(&[a, &fresh], &[[0, 1]], "lost\\..*"));
    harness::wait_for_count(&[a, &fresh], &topic, 70, Duration::from_secs(30)).await;
    let flow = running.flow("src->dst").await;
    running.stop().await;
    assert_eq!(flow.target_lost_records.load(Relaxed), 30);
    assert_eq!(flow.restarts.load(Relaxed), 0);
    for c in [a, &fresh] {
        harness::assert_holds_exactly(c, &topic, &expected);
    }
}
