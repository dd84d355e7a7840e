//! A target outage longer than `limits.stall_timeout` is not a stall: the flow waits for
//! the target with its in-flight budget spent, then carries on, without a watchdog
//! restart, and every record lands exactly once (issue 10: the reader stamped "last
//! read" before waiting for budget, so the wait counted as idle time).

mod harness;

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use harness::{Expected, Feature, Provider};

async fn outage_longer_than_the_stall_timeout(provider: Provider) {
    if !harness::needs(provider, Feature::Restart, "long_outage") {
        return;
    }
    let Some(mut clusters) = harness::start(provider, &["east", "west"]) else {
        return;
    };
    let topic = harness::unique("long");
    for c in &clusters {
        c.create_topic(&topic, 2).await;
    }
    let mut spec = {
        let refs: Vec<_> = clusters.iter().collect();
        harness::spec(&refs, &[[0, 1]], "long\\..*")
    };
    // A budget of a few dozen records, so that it is spent early in the outage.
    spec.links[0].in_flight_bytes = 4096;
    let stall_timeout = spec.limits.stall_timeout;
    let running = harness::run_engine(spec);
    running.wait_discovered(2).await;

    clusters[1].broker_down();
    let recs = harness::records_on("east", 400, &[0, 1]);
    let ids = harness::produce(&clusters[0], &topic, &recs).await;
    let mut expected = Expected::new();
    harness::expect(&mut expected, ids, &recs);
    tokio::time::sleep(stall_timeout + Duration::from_secs(3)).await;
    clusters[1].broker_up();

    let refs: Vec<_> = clusters.iter().collect();
    harness::wait_for_count(&refs[1..], &topic, 400, Duration::from_secs(60)).await;
    // Past the watchdog's next look, had the wait counted as idle.
    tokio::time::sleep(stall_timeout / 2).await;
    let m = running.flow("east->west").await;
    let (restarts, error) = (m.restarts.load(Relaxed), m.last_error());
    running.stop().await;
    assert_eq!(
        restarts, 0,
        "waiting for the target counted as a stall: last error {error:?}"
    );
    for c in &refs {
        harness::assert_holds_exactly(c, &topic, &expected);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_outage_longer_than_the_stall_timeout_on_mock() {
    outage_longer_than_the_stall_timeout(Provider::Mock).await;
}

/// A first assignment slower than `limits.stall_timeout` (every request to a slow broker
/// waits) is not a stall either: a partition that just started gets a whole stall
/// timeout to read before the watchdog asks about it. Each run's assignment was as
/// slow as the last, so a flow restarted this way never got to read (seen on three
/// Tansu brokers in `tests/kill9.rs`'s mesh).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_assignment_is_not_a_stall_on_mock() {
    let Some(clusters) = harness::start(Provider::Mock, &["east", "west"]) else {
        return;
    };
    let topic = harness::unique("slow");
    for c in &clusters {
        c.create_topic(&topic, 2).await;
    }
    let recs = harness::records_on("east", 100, &[0, 1]);
    let ids = harness::produce(&clusters[0], &topic, &recs).await;
    for c in &clusters {
        c.mock()
            .broker_round_trip_time(1, Duration::from_millis(1500))
            .unwrap();
    }
    let spec = {
        let refs: Vec<_> = clusters.iter().collect();
        harness::spec(&refs, &[[0, 1]], "slow\\..*")
    };
    let running = harness::run_engine(spec);
    let m = running.flow("east->west").await;
    let refs: Vec<_> = clusters.iter().collect();
    harness::wait_for_count(&refs[1..], &topic, 100, Duration::from_secs(90)).await;
    assert_eq!(m.restarts.load(Relaxed), 0, "{:?}", m.last_error());
    running.stop().await;
    let mut expected = Expected::new();
    harness::expect(&mut expected, ids, &recs);
    harness::assert_holds_exactly(&clusters[1], &topic, &expected);
}
