//! Changing a link's topics on a running engine while every cluster is written: a
//! triangle a–b–c whose links select the `events` and the `audit` topics. a–c stops
//! selecting `audit` with a->c paused across the change (a's audit records written
//! before it are still owed by a->c; those after it now go a->b->c, and b->c defers them
//! until a->c has carried the older ones), then selects it again with b->c paused across
//! that change (a->c defers a's audit records until b->c has carried the older ones).
//! Every cluster holds every record of both topics exactly once, the verifier passes on
//! both (order included), and a–c's flows stop reading `audit` once the narrowing
//! settled and read it again after the widening (docs/topology-changes.md, "Changing a
//! link's topics").

mod harness;

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use duplex_sync::spec::TopicSelection;
use harness::{Expected, Provider};

const TRIANGLE: &[[usize; 2]] = &[[0, 1], [1, 2], [0, 2]];
const BOTH: &str = "(events|audit)\\..*";
const PARTITIONS: i32 = 3;

async fn narrow_and_widen(provider: Provider) {
    let ids = ["a", "b", "c"];
    let Some(clusters) = harness::start(provider, &ids) else {
        return;
    };
    let refs: Vec<_> = clusters.iter().collect();
    let events = harness::unique("events");
    let audit = harness::unique("audit");
    for c in &refs {
        c.create_topic(&events, PARTITIONS).await;
        c.create_topic(&audit, PARTITIONS).await;
    }
    let both = harness::spec(&refs, TRIANGLE, BOTH);
    let (running, engine) = harness::start_engine(both.clone());
    let stop = tokio_util::sync::CancellationToken::new();
    let writers = refs.iter().enumerate().flat_map(|(i, c)| {
        let partitions = harness::write_partitions(provider, i, ids.len(), PARTITIONS);
        [&events, &audit].map(|t| {
            let (c, t, p, stop) = (*c, t.clone(), partitions.clone(), stop.clone());
            async move {
                (
                    t.clone(),
                    harness::service::keep_writing(c, &t, &p, stop).await,
                )
            }
        })
    });
    let settled = || {
        harness::wait_until("the change settled", Duration::from_secs(90), || {
            !engine.changing()
        })
    };
    let reading = |flow: &'static str, n: i64| {
        let running = &running;
        harness::wait_until_async(
            "a-c's flows reading the partitions of their topics",
            Duration::from_secs(60),
            move || async move { running.flow(flow).await.partitions.load(Relaxed) == n },
        )
    };
    let changes = async {
        let moment = || Duration::from_millis(rand::random_range(200..1200));
        tokio::time::sleep(moment()).await;
        reading("a->c", 2 * PARTITIONS as i64).await;
        // Narrowed: a-c carries `events` only.
        engine.pause("a->c").await.expect("pause a->c");
        tokio::time::sleep(moment()).await;
        let mut narrowed = both.clone();
        narrowed.links[2].topics = TopicSelection::matching("events\\..*").unwrap();
        engine
            .prepare_change(narrowed)
            .await
            .expect("narrow a-c")
            .apply();
        tokio::time::sleep(moment()).await;
        assert!(engine.changing(), "a paused flow holds the settling");
        let refused = engine
            .prepare_change(both.clone())
            .await
            .expect_err("no change until the last settled");
        assert!(refused.to_string().contains("not settled"), "{refused}");
        engine.resume("a->c").await.expect("resume a->c");
        settled().await;
        reading("a->c", PARTITIONS as i64).await;
        reading("c->a", PARTITIONS as i64).await;
        // Widened again: a-c carries both.
        tokio::time::sleep(moment()).await;
        engine.pause("b->c").await.expect("pause b->c");
        tokio::time::sleep(moment()).await;
        engine
            .prepare_change(both.clone())
            .await
            .expect("widen a-c")
            .apply();
        tokio::time::sleep(moment()).await;
        engine.resume("b->c").await.expect("resume b->c");
        settled().await;
        reading("a->c", 2 * PARTITIONS as i64).await;
        tokio::time::sleep(moment()).await;
        stop.cancel();
    };
    let (written, ()) = tokio::join!(futures::future::join_all(writers), changes);
    let mut expected: Vec<(String, Expected)> = Vec::new();
    for (topic, w) in written {
        match expected.iter_mut().find(|(t, _)| *t == topic) {
            Some((_, e)) => e.extend(w),
            None => expected.push((topic, w)),
        }
    }
    for (topic, e) in &expected {
        harness::wait_for_count(&refs, topic, e.len() as i64, Duration::from_secs(90)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let loops = running.total(|m| m.loop_stopped.load(Relaxed));
    let deferred = running.total(|m| m.deferred.load(Relaxed));
    running.stop().await;
    for (topic, e) in &expected {
        for c in &refs {
            harness::assert_holds_exactly(c, topic, e);
        }
    }
    assert_eq!(loops, 0, "the routing alone prevents loops");
    assert!(deferred > 0, "records that changed path were deferred");
    for (topic, e) in &expected {
        harness::verify::assert_pass(&refs, topic, e.len() as u64).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_drops_a_topic_and_takes_it_again_on_mock() {
    narrow_and_widen(Provider::Mock).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_drops_a_topic_and_takes_it_again_on_tansu() {
    narrow_and_widen(Provider::Tansu).await;
}
