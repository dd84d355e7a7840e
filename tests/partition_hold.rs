//! One target partition that does not answer holds back only itself (issue 10): its
//! records wait in flight up to half of the flow's budget, its reading is paused,
//! its checkpoint stays before them, and the flow's other partitions are read, written
//! and checkpointed meanwhile. When the target answers again, everything arrives once.

mod harness;

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use duplex_sync::flow::group_id;
use harness::Expected;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_target_partition_down_holds_back_only_itself() {
    let clusters = harness::start_mock(&["src", "dst"], 2);
    let (a, b) = (&clusters[0], &clusters[1]);
    let topic = harness::unique("hold");
    a.create_topic(&topic, 2).await;
    // On the target, partition 0 is led by broker 1 and partition 1 by broker 2.
    b.create_topic_led(&topic, &[1, 2]).await;
    let mut spec = harness::spec(&[a, b], &[[0, 1]], "hold\\..*");
    // 16 KiB in flight: partition 0's backlog below (500 records of about 80 bytes) is
    // more than twice that.
    spec.links[0].in_flight_bytes = 16 * 1024;
    let running = harness::run_engine(spec);
    running.wait_discovered(2).await;
    let flow = running.flow("src->dst").await;

    b.mock().broker_down(1).unwrap();
    let held = harness::records_on("src", 500, &[0]);
    let mut ids = harness::produce(a, &topic, &held).await;
    let free = harness::records_on("src", 200, &[1]);
    let free_ids = harness::produce(a, &topic, &free).await;

    // Partition 1 is replicated and checkpointed while partition 0 waits.
    harness::wait_until("partition 1 on the target", Duration::from_secs(30), || {
        harness::watermarks(b, &topic, 1).1 == 200
    })
    .await;
    harness::wait_until("partition 0 held", Duration::from_secs(10), || {
        flow.partitions_held.load(Relaxed) == 1
    })
    .await;
    let group = group_id(&running.registry.entries()[0].link, "src", "dst");
    harness::wait_until_async("partition 1's checkpoint", Duration::from_secs(10), || {
        let (a, group, topic) = (a, group.clone(), topic.clone());
        async move { harness::committed(a, &group, &topic, 2).await[1].0 == Some(200) }
    })
    .await;
    let checkpoints = harness::committed(a, &group, &topic, 2).await;
    assert!(
        checkpoints[0].0.unwrap_or(0) == 0,
        "partition 0's checkpoint stays before its unacknowledged records: {checkpoints:?}"
    );
    // Longer than the stall timeout (5 s): a held partition waits on the target, which
    // is not a stall of the source.
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(flow.restarts.load(Relaxed), 0, "{:?}", flow.last_error());

    b.mock().broker_up(1).unwrap();
    harness::wait_for_count(&[b], &topic, 700, Duration::from_secs(60)).await;
    harness::wait_until("partition 0 read again", Duration::from_secs(10), || {
        flow.partitions_held.load(Relaxed) == 0
    })
    .await;
    running.stop().await;
    let mut expected = Expected::new();
    ids.extend(free_ids);
    let recs: Vec<_> = held.into_iter().chain(free).collect();
    harness::expect(&mut expected, ids, &recs);
    harness::assert_holds_exactly(b, &topic, &expected);
    assert_eq!(flow.restarts.load(Relaxed), 0, "{:?}", flow.last_error());
}
