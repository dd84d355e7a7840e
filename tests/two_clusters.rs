//! Two clusters, writes on both sides at once: each ends with the union, nothing is
//! sent back, every field identical (DESIGN.md rules 1 and 2).

mod harness;

use std::time::Duration;

use harness::{Expected, Provider};

async fn two_clusters_converge(provider: Provider) {
    let Some(clusters) = harness::start(provider, &["onprem", "msk"]) else {
        return;
    };
    let (a, b) = (&clusters[0], &clusters[1]);
    let topic = harness::unique("orders");
    a.create_topic(&topic, 4).await;
    b.create_topic(&topic, 4).await;
    let running = harness::run_engine(harness::spec(&[a, b], &[[0, 1]], "orders\\..*"));

    let (ra, rb) = (
        harness::records("onprem", 600, 3),
        harness::records("msk", 400, 3),
    );
    let (ia, ib) = tokio::join!(
        harness::produce(a, &topic, &ra),
        harness::produce(b, &topic, &rb)
    );
    let mut expected = Expected::new();
    harness::expect(&mut expected, ia, &ra);
    harness::expect(&mut expected, ib, &rb);

    harness::wait_for_count(&[a, b], &topic, 1000, Duration::from_secs(60)).await;
    // Every replica is read back by the opposite flow, which must not send it home.
    harness::wait_until("replicas read back", Duration::from_secs(30), || {
        running.sum(|m| &m.not_forwarded) >= 1000
    })
    .await;
    let forwarded = running.sum(|m| &m.forwarded);
    let not_forwarded = running.sum(|m| &m.not_forwarded);
    let loops = running.sum(|m| &m.loop_stopped);
    let metrics = running.registry.render();
    running.stop().await;
    // The latency histogram counts each flow's acknowledged records.
    for (flow, n) in [("onprem->msk", 600), ("msk->onprem", 400)] {
        let line = format!(
            "duplex_replication_latency_seconds_count{{flow=\"{flow}\",link=\"onprem-msk\"}} {n}"
        );
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }

    for c in [a, b] {
        harness::assert_holds_exactly(c, &topic, &expected);
    }
    assert_eq!(forwarded, 1000, "each record crossed the link once");
    assert_eq!(
        not_forwarded, 1000,
        "each replica was read back and not sent home"
    );
    assert_eq!(loops, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clusters_on_mock() {
    two_clusters_converge(Provider::Mock).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clusters_on_tansu() {
    two_clusters_converge(Provider::Tansu).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clusters_on_external() {
    two_clusters_converge(Provider::External).await;
}
