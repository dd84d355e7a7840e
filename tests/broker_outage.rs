//! A broker going down and coming back during replication: nothing is lost and nothing
//! is duplicated, on the target side and on the source side.

mod harness;

use std::time::Duration;

use harness::{Expected, Feature, Provider};

/// `down`: index of the cluster whose broker goes down while records flow.
async fn outage(provider: Provider, down: usize) {
    if !harness::needs(provider, Feature::Restart, "broker_outage") {
        return;
    }
    let Some(mut clusters) = harness::start(provider, &["east", "west"]) else {
        return;
    };
    let topic = harness::unique("outage");
    for c in &clusters {
        c.create_topic(&topic, 2).await;
    }
    let mut expected = Expected::new();
    let running = {
        let refs: Vec<_> = clusters.iter().collect();
        harness::run_engine(harness::spec(&refs, &[[0, 1]], "outage\\..*"))
    };
    let recs = harness::records_on("east", 400, &harness::write_partitions(provider, 0, 2, 2));
    let ids = harness::produce(&clusters[0], &topic, &recs).await;
    harness::expect(&mut expected, ids, &recs);

    // Down while the flow is moving those records, for a few seconds.
    clusters[down].broker_down();
    tokio::time::sleep(Duration::from_secs(3)).await;
    clusters[down].broker_up();

    let recs = harness::records_on("west", 300, &harness::write_partitions(provider, 1, 2, 2));
    let ids = harness::produce(&clusters[1], &topic, &recs).await;
    harness::expect(&mut expected, ids, &recs);
    let refs: Vec<_> = clusters.iter().collect();
    harness::wait_for_count(&refs, &topic, 700, Duration::from_secs(90)).await;
    running.stop().await;
    for c in &refs {
        harness::assert_holds_exactly(c, &topic, &expected);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_broker_outage_on_mock() {
    outage(Provider::Mock, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_broker_outage_on_mock() {
    outage(Provider::Mock, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_broker_restart_on_tansu() {
    outage(Provider::Tansu, 1).await;
}
