//! A flow that fails drains before it stops: reading stops, the producer's local queue
//! is purged, and every delivery still in flight is awaited (docs/delivery.md). Records
//! purged from the queue (`ERR__PURGE_QUEUE`) are a consequence, never the cause: a
//! record the target broker refuses stops its flow for good even when purged records of
//! another partition come first in read order (DESIGN.md rule 6).

mod harness;

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use duplex_sync::flow::Flow;
use duplex_sync::metrics::FlowMetrics;
use harness::Expected;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_refusal_stops_the_flow_even_behind_purged_records() {
    let clusters = harness::start_mock(&["src", "dst"], 2);
    let (a, b) = (&clusters[0], &clusters[1]);
    let topic = harness::unique("drain");
    a.create_topic(&topic, 2).await;
    // On the target partition 0 is led by broker 1 and partition 1 by broker 2, so that
    // one can be down while the other answers.
    b.create_topic_led(&topic, &[1, 2]).await;
    let running = harness::run_engine(harness::spec(&[a, b], &[[0, 1]], "drain\\..*"));
    running.wait_discovered(2).await;
    let flow = running.flow("src->dst").await;

    // Partition 0's records are read and wait in the producer's queue for broker 1.
    b.mock().broker_down(1).unwrap();
    let queued = harness::records_on("src", 20, &[0]);
    harness::produce(a, &topic, &queued).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Broker 2 refuses the next produce request, partition 1's record: a permanent
    // error, which the gapless producer makes fatal, purging partition 0's queue.
    b.mock().request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_INVALID_RECORD],
    );
    let refused = harness::records_on("src", 1, &[1]);
    harness::produce(a, &topic, &refused).await;

    harness::wait_until("src->dst to stop", Duration::from_secs(30), || {
        flow.up.load(Relaxed) == 0
    })
    .await;
    let error = flow.last_error().unwrap();
    assert!(
        error.contains(&format!("cluster dst refused {topic}/1 offset 0")),
        "{error}"
    );
    assert_eq!(flow.restarts.load(Relaxed), 0, "a refusal is not retried");
    assert_eq!(flow.forwarded.load(Relaxed), 0);
    b.mock().broker_up(1).unwrap();
    running.stop().await;
    // Nothing was written: the purged records never left, the refused one was refused.
    harness::assert_holds_exactly(b, &topic, &Expected::new());
}

/// A drain that times out does not abandon what is in flight: the old producer is kept
/// alive until the target answered for each delivery, and the partition does not start
/// again before (a batch landing after the new start's scan would be a duplicate).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_drain_keeps_its_deliveries_and_their_partition_waits_for_them() {
    let clusters = harness::start_mock(&["src", "dst"], 1);
    let (a, b) = (&clusters[0], &clusters[1]);
    let topic = harness::unique("linger");
    a.create_topic(&topic, 1).await;
    b.create_topic(&topic, 1).await;
    let spec = harness::spec(&[a, b], &[[0, 1]], "linger\\..*");
    let mut fs = duplex_sync::engine::flow_specs(&spec).remove(0);
    assert_eq!(fs.name(), "src->dst");
    fs.drain_timeout = Duration::from_secs(1);
    let metrics = Arc::new(FlowMetrics::default());
    let flow = Flow::new(Arc::new(fs), metrics.clone());
    let run = |flow: &Flow| {
        let (flow, cancel) = (flow.clone(), CancellationToken::new());
        let c = cancel.clone();
        (cancel, tokio::spawn(async move { flow.run_once(&c).await }))
    };

    let (cancel, first) = run(&flow);
    harness::wait_until("the partition to start", Duration::from_secs(20), || {
        metrics.partitions.load(Relaxed) == 1
    })
    .await;
    // A first record crosses, so that the producer knows the partition's leader.
    let recs = harness::records("src", 11, 1);
    let mut ids = harness::produce(a, &topic, &recs[..1]).await;
    harness::wait_for_count(&[b], &topic, 1, Duration::from_secs(10)).await;
    harness::wait_until("the first acknowledgement", Duration::from_secs(10), || {
        metrics.forwarded.load(Relaxed) == 1
    })
    .await;
    // The target takes the next records at once and answers 6 s later.
    b.mock()
        .broker_round_trip_time(1, Duration::from_secs(6))
        .unwrap();
    ids.extend(harness::produce(a, &topic, &recs[1..]).await);
    tokio::time::sleep(Duration::from_secs(1)).await;
    cancel.cancel();
    first.await.unwrap().unwrap();
    assert_eq!(metrics.forwarded.load(Relaxed), 1, "no answer yet");

    // A new run (as after a restart) waits for those answers before it starts the
    // partition.
    let (cancel, second) = run(&flow);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(metrics.partitions.load(Relaxed), 0);
    assert_eq!(metrics.partitions_waiting.load(Relaxed), 1);
    b.mock().broker_round_trip_time(1, Duration::ZERO).unwrap();
    harness::wait_until("the partition to start", Duration::from_secs(30), || {
        metrics.partitions.load(Relaxed) == 1
    })
    .await;
    cancel.cancel();
    second.await.unwrap().unwrap();
    let mut expected = Expected::new();
    harness::expect(&mut expected, ids, &recs);
    harness::assert_holds_exactly(b, &topic, &expected);
}
