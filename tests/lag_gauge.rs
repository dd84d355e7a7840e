//! The lag gauges never make a stuck flow look caught up: while the target is down and
//! the source holds records the flow has not replicated, `duplex_flow_lag_records` is
//! above 0 or `duplex_flow_lag_unknown_partitions` is; once everything is replicated,
//! both read 0 (issue 10: an unknown lag was summed as 0).

mod harness;

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use harness::{Feature, Provider};

/// East and west with a two-partition topic named after `prefix`, `n` records written
/// on east, and west's broker down: nothing can be replicated yet.
async fn unreplicated(
    provider: Provider,
    prefix: &str,
    n: usize,
) -> Option<(Vec<harness::TestCluster>, String)> {
    let mut clusters = harness::start(provider, &["east", "west"])?;
    let topic = harness::unique(prefix);
    for c in &clusters {
        c.create_topic(&topic, 2).await;
    }
    let recs = harness::records_on("east", n, &[0, 1]);
    harness::produce(&clusters[0], &topic, &recs).await;
    clusters[1].broker_down();
    Some((clusters, topic))
}

async fn lag_while_the_target_is_down(provider: Provider) {
    if !harness::needs(provider, Feature::Restart, "lag_gauge") {
        return;
    }
    let Some((mut clusters, topic)) = unreplicated(provider, "lagged", 200).await else {
        return;
    };
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

/// A source topic the metadata lists with an error (a leader election) while its
/// partitions wait (the target is down) is neither taken for deleted nor read as caught
/// up: its partitions count as of unknown lag. Once it lists again and the target is
/// back, its records are replicated and the lag reads 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_listed_with_an_error_is_not_caught_up_on_mock() {
    use rdkafka::types::RDKafkaRespErr;
    let Some((mut clusters, topic)) = unreplicated(Provider::Mock, "unlisted", 100).await else {
        return;
    };
    let running = {
        let refs: Vec<_> = clusters.iter().collect();
        let mut spec = harness::spec(&refs, &[[0, 1]], "unlisted\\..*");
        // The target's checks give up soon, so the partitions wait and listings go on.
        spec.limits.request_timeout = Duration::from_secs(1);
        harness::run_engine(spec)
    };
    let m = running.flow("east->west").await;
    harness::wait_until("a first listing", Duration::from_secs(30), || {
        m.refreshes.load(Relaxed) >= 1
    })
    .await;
    let set = |e| {
        clusters[0]
            .mock()
            .topic_error(&topic, e)
            .expect("mock topic error")
    };
    set(RDKafkaRespErr::RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE);
    let listed = m.refreshes.load(Relaxed);
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        let (lag, unknown) = (m.lag.load(Relaxed), m.lag_unknown.load(Relaxed));
        assert!(
            lag > 0 || unknown > 0,
            "east->west reads as caught up (lag {lag}, unknown {unknown}) with its only topic listed with an error and 100 records unreplicated"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        m.refreshes.load(Relaxed) > listed,
        "the flow listed the source while the topic had its error"
    );
    set(RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR);
    clusters[1].broker_up();
    let refs: Vec<_> = clusters.iter().collect();
    harness::wait_for_count(&refs[1..], &topic, 100, Duration::from_secs(90)).await;
    harness::wait_until(
        "east->west lag known and 0",
        Duration::from_secs(30),
        || m.lag.load(Relaxed) == 0 && m.lag_unknown.load(Relaxed) == 0,
    )
    .await;
    running.stop().await;
}
