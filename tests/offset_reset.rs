//! A source position outside the partition is handled by the flow, never reset
//! silently (docs/delivery.md): records retention deleted before the flow read them
//! are counted exactly, and a source partition behind the flow (truncated or recreated)
//! stops the flow for an operator instead of replicating new records under origin
//! positions the target already holds.

mod harness;

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use harness::{Expected, Provider};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_overtaking_a_lagging_flow_is_counted_exactly_on_mock() {
    let Some(mut clusters) = harness::start(Provider::Mock, &["src", "dst"]) else {
        return;
    };
    let topic = harness::unique("retain");
    for c in &clusters {
        c.create_topic(&topic, 1).await;
    }
    let running = {
        let refs: Vec<_> = clusters.iter().collect();
        let mut spec = harness::spec(&refs, &[[0, 1]], "retain\\..*");
        // While the target is down the flow reads its budget and the consumer's
        // prefetch (1 MiB), and no further.
        spec.links[0].in_flight_bytes = 256 * 1024;
        // The target (mock) keeps 5 MiB per partition too; compressed, what it is sent
        // (the source's last 5 MiB and what the flow read before) fits.
        spec.clusters[1]
            .producer
            .insert("compression.type".into(), "zstd".into());
        harness::run_engine(spec)
    };
    running.wait_discovered(2).await;
    clusters[1].broker_down();
    // 12 MiB on the source, which (mock) keeps the last 5 MiB: its log start overtakes
    // the lagging flow.
    let mut recs = harness::records_on("src", 1500, &[0]);
    for (i, r) in recs.iter_mut().enumerate() {
        r.value = Some(format!("{i:08}{}", "v".repeat(8 * 1024)).into_bytes());
    }
    let ids = harness::produce(&clusters[0], &topic, &recs).await;
    let (low, _) = harness::watermarks(&clusters[0], &topic, 0);
    assert!(low > 600, "the source's log start moved: {low}");
    clusters[1].broker_up();

    let flow = running.flow("src->dst").await;
    harness::wait_until("the gap to be counted", Duration::from_secs(60), || {
        flow.source_gap_records.load(Relaxed) > 0
    })
    .await;
    let gap = flow.source_gap_records.load(Relaxed) as i64;
    let kept = recs.len() as i64 - gap;
    eprintln!("source log start {low}, gap counted {gap}, kept {kept}");
    harness::wait_for_count(&[&clusters[1]], &topic, kept, Duration::from_secs(60)).await;
    running.stop().await;
    assert_eq!(flow.up.load(Relaxed), 1);
    // The flow restarted for the position retention overtook, and said where it was.
    let error = flow.last_error().unwrap_or_default();
    assert!(
        error.contains(&format!("{topic}/0 on cluster src does not hold offset")),
        "{error}"
    );
    // The target holds what the flow delivered before the gap (records it had read but
    // not delivered when it stopped are purged, gone from the source, and counted too),
    // then everything from the source's log start on: the gap counted is exactly what
    // is missing in between.
    let mut expected = Expected::new();
    for (id, rec) in ids.into_iter().zip(recs) {
        if id.2 < low - gap || id.2 >= low {
            expected.insert(id, rec);
        }
    }
    assert_eq!(expected.len() as i64, kept);
    harness::assert_holds_exactly(&clusters[1], &topic, &expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_behind_the_flow_stops_it_on_mock() {
    let Some(clusters) = harness::start(Provider::Mock, &["src", "dst"]) else {
        return;
    };
    let (a, b) = (&clusters[0], &clusters[1]);
    let topic = harness::unique("behind");
    a.create_topic(&topic, 1).await;
    b.create_topic(&topic, 1).await;
    let recs = harness::records_on("src", 30, &[0]);
    let ids = harness::produce(a, &topic, &recs).await;
    let mut expected = Expected::new();
    harness::expect(&mut expected, ids, &recs);
    let running = harness::run_engine(harness::spec(&[a, b], &[[0, 1]], "behind\\..*"));
    harness::wait_for_count(&[b], &topic, 30, Duration::from_secs(30)).await;
    running.stop().await;

    // The source partition is recreated (a new cluster under the same id), and holds
    // 10 new records: offsets 0 to 9 again.
    let fresh = harness::start(Provider::Mock, &["src"]).unwrap().remove(0);
    fresh.create_topic(&topic, 1).await;
    harness::produce(&fresh, &topic, &harness::records_on("src", 10, &[0])).await;
    let running = harness::run_engine(harness::spec(&[&fresh, b], &[[0, 1]], "behind\\..*"));
    harness::wait_until("flows to register", Duration::from_secs(10), || {
        running.registry.entries().len() == 2
    })
    .await;
    let flow = running.flow("src->dst").await;
    harness::wait_until("src->dst to stop", Duration::from_secs(30), || {
        flow.up.load(Relaxed) == 0
    })
    .await;
    let error = flow.last_error().unwrap();
    assert!(
        error.contains(&format!(
            "cluster src holds {topic}/0 only up to offset 10, but flow src->dst has replicated it up to offset 30"
        )),
        "{error}"
    );
    assert_eq!(flow.restarts.load(Relaxed), 0, "it needs an operator");
    running.stop().await;
    // Nothing new was written under the positions the target already holds.
    harness::assert_holds_exactly(b, &topic, &expected);
}
