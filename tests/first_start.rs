//! A first start reads nothing back from the target (start markers, docs/delivery.md,
//! "First start"), and a flow whose checkpoints are gone (a new group, as when the old
//! one was deleted) resumes from its markers with nothing written twice.

mod harness;

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use duplex_sync::starts;
use harness::{Expected, Provider, TestCluster};
use rdkafka::ClientConfig;
use rdkafka::consumer::BaseConsumer;

const PARTITIONS: i32 = 4;

/// Flow `source`→`target`'s markers on `target`'s cluster.
async fn markers(on: &TestCluster, source: &str, target: &str) -> Option<starts::Markers> {
    let (bootstrap, source, target) =
        (on.bootstrap.clone(), source.to_string(), target.to_string());
    tokio::task::spawn_blocking(move || {
        let scanner: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", "first-start-test")
            .set("enable.partition.eof", "true")
            .set("enable.auto.commit", "false")
            .create()
            .expect("scanner");
        starts::read(&scanner, &source, &target, Duration::from_secs(10)).expect("read markers")
    })
    .await
    .expect("join")
}

async fn first_start_reads_nothing_back(provider: Provider) {
    let Some(clusters) = harness::start(provider, &["a", "b"]) else {
        return;
    };
    let (a, b) = (&clusters[0], &clusters[1]);
    let topic = harness::unique("fs");
    a.create_topic(&topic, PARTITIONS).await;
    b.create_topic(&topic, PARTITIONS).await;
    // Both targets hold records their flow never wrote: a scan would read them all.
    let (ra, rb) = (
        harness::records("a", 2000, PARTITIONS),
        harness::records("b", 1000, PARTITIONS),
    );
    let (ia, ib) = tokio::join!(
        harness::produce(a, &topic, &ra),
        harness::produce(b, &topic, &rb)
    );
    let mut expected = Expected::new();
    harness::expect(&mut expected, ia, &ra);
    harness::expect(&mut expected, ib, &rb);

    let spec = harness::spec(&[a, b], &[[0, 1]], "fs\\..*");
    let running = harness::run_engine(spec.clone());
    harness::wait_for_count(&[a, b], &topic, 3000, Duration::from_secs(60)).await;
    let (ab, ba) = (running.flow("a->b").await, running.flow("b->a").await);
    let scanned = (
        ab.resume_scanned_records.load(Relaxed),
        ba.resume_scanned_records.load(Relaxed),
    );
    running.stop().await;
    assert_eq!(
        scanned,
        (0, 0),
        "a first start reads nothing back from the target"
    );
    for c in [a, b] {
        harness::assert_holds_exactly(c, &topic, &expected);
    }
    // Each flow noted every partition it started, on its target.
    for (on, source, target) in [(b, "a", "b"), (a, "b", "a")] {
        let m = markers(on, source, target)
            .await
            .expect("the marker topic exists");
        assert_eq!(
            m.len(),
            PARTITIONS as usize,
            "markers of {source}->{target}"
        );
        for p in 0..PARTITIONS {
            let m = m.get(&topic, p).expect("a marker per partition");
            assert_eq!(m.next, 0, "{source}->{target} started {p} at the log start");
        }
    }

    // The same flows under another link name read from new groups, with no checkpoint:
    // as if the groups had been deleted. The markers stand in: nothing is sent twice.
    let mut renamed = spec;
    renamed.links[0].name = "a-b-renamed".to_string();
    let running = harness::run_engine(renamed);
    let more = harness::records("a", 100, PARTITIONS);
    let ids = harness::produce(a, &topic, &more).await;
    harness::expect(&mut expected, ids, &more);
    harness::wait_for_count(&[a, b], &topic, 3100, Duration::from_secs(60)).await;
    // Once both flows have read their sources to the end (a known lag of 0), a second
    // copy, were one due, has been sent; stopping drains what is still in flight.
    let (ab, ba) = (running.flow("a->b").await, running.flow("b->a").await);
    harness::wait_until(
        "both flows read to their sources' end",
        Duration::from_secs(60),
        || {
            [&ab, &ba]
                .iter()
                .all(|m| m.lag.load(Relaxed) == 0 && m.lag_unknown.load(Relaxed) == 0)
        },
    )
    .await;
    running.stop().await;
    let forwarded = ab.forwarded.load(Relaxed) + ba.forwarded.load(Relaxed);
    let scanned = (
        ab.resume_scanned_records.load(Relaxed),
        ba.resume_scanned_records.load(Relaxed),
    );
    for c in [a, b] {
        harness::assert_holds_exactly(c, &topic, &expected);
    }
    assert_eq!(forwarded, 100, "only the new records crossed the link");
    // The scans start at the markers' target offsets: a->b reads b's 500 copies of a's
    // records per partition, not b's own 250 before them (a full walk back: 3,000);
    // b->a reads at least b's 250 copies per partition on a, but not a's own 500.
    assert_eq!(scanned.0, 2000, "a->b's scan starts at its markers");
    assert!(
        (1000..3000).contains(&scanned.1),
        "b->a's scan starts at its markers: {}",
        scanned.1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_start_on_mock() {
    first_start_reads_nothing_back(Provider::Mock).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_start_on_tansu() {
    first_start_reads_nothing_back(Provider::Tansu).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_start_on_external() {
    first_start_reads_nothing_back(Provider::External).await;
}
