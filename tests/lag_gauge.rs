//! The lag gauges never make a stuck flow look caught up: while the target is down and
//! the source holds records the flow has not replicated, `duplex_flow_lag_records` is
//! above 0 or `duplex_flow_lag_unknown_partitions` is; once everything is replicated,
//! both read 0 (issue 10: an unknown lag was summed as 0).

mod harness;

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use harness::{Feature, Provider};

async fn lag_while_the_target_is_down(provider: Provider) {
    if !harness::needs(provider, Feature::Restart, "lag_gauge") {
        return;
    }
    let Some(mut clusters) = harness::start(provider, &["east", "west"]) else {
        return;
    };
    let topic = harness::unique("lagged");
    for c in &clusters {
        c.create_topic(&topic, 2).await;
    }
    let recs = harness::records_on("east", 200, &[0, 1]);
    harness::produce(&clusters[0], &topic, &recs).await;
    clusters[1].broker_down();
    let running = {
        let refs: Vec<_> = clusters.iter().collect();
        harness::run_engine(harness::spec(&refs, &[[0, 1]], "lagged\\..*"))
    };
    let m = running.flow("east->west").await;
    // Longer than the consumer's statistics interval (5 s), so a statistics round that
    // summed unknown lags as 0 would show.
    let until = Instant::now() + Duration::from_secs(8);
    let mut samples = 0;
    while Instant::now() < until {
        let (lag, unknown) = (m.lag.load(Relaxed), m.lag_unknown.load(Relaxed));
        assert!(
            lag > 0 || unknown > 0,
            "east->west reads as caught up (lag {lag}, unknown {unknown}) with 200 records unreplicated and its target down"
        );
        samples += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(samples > 50);
    assert_eq!(
        m.forwarded.load(Relaxed),
        0,
        "the target was down throughout"
    );

    clusters[1].broker_up();
    let refs: Vec<_> = clusters.iter().collect();
    harness::wait_for_count(&refs[1..], &topic, 200, Duration::from_secs(90)).await;
    // Caught up reads as caught up: lag 0 and known, after the next statistics round.
    harness::wait_until(
        "east->west lag known and 0",
        Duration::from_secs(30),
        || m.lag.load(Relaxed) == 0 && m.lag_unknown.load(Relaxed) == 0,
    )
    .await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_while_the_target_is_down_on_mock() {
    lag_while_the_target_is_down(Provider::Mock).await;
}
