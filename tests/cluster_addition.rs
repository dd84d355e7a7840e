//! A cluster added to a running engine while every cluster is written: a triangle a–b–c
//! gains d, joined by b–d and c–d (two paths, so d's records and the others' must each
//! take one), with b->c paused across the change. The change takes effect at its cut:
//! d receives every record of a, b and c at or past it, and nothing below it (copying
//! history is a backfill, not a side effect of the change); a, b and c receive every
//! record d writes from the change on, and none of those d held before it. Every cluster
//! holds what it should exactly once, and the verifier passes among a, b and c, order
//! included (docs/topology-changes.md, "Adding a cluster or a link").

mod harness;

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use harness::{Expected, Provider};

const TRIANGLE: &[[usize; 2]] = &[[0, 1], [1, 2], [0, 2]];
const WITH_D: &[[usize; 2]] = &[[0, 1], [1, 2], [0, 2], [1, 3], [2, 3]];
const PATTERN: &str = "grow\\..*";
const PARTITIONS: i32 = 4;

async fn add_a_cluster_while_writing(provider: Provider) {
    let ids = ["a", "b", "c", "d"];
    let Some(clusters) = harness::start(provider, &ids) else {
        return;
    };
    let refs: Vec<_> = clusters.iter().collect();
    let topic = harness::unique("grow");
    for c in &refs {
        c.create_topic(&topic, PARTITIONS).await;
    }
    let partitions = |i: usize| harness::write_partitions(provider, i, ids.len(), PARTITIONS);
    // d holds records of its own before it joins: they stay on d.
    let d_before = harness::records_on("d", 40, &partitions(3));
    let d_before_ids = harness::produce(refs[3], &topic, &d_before).await;

    let (running, engine) = harness::start_engine(harness::spec(&refs[..3], TRIANGLE, PATTERN));
    let stop = tokio_util::sync::CancellationToken::new();
    let writers = refs[..3].iter().enumerate().map(|(i, c)| {
        let (c, topic, p, stop) = (*c, topic.clone(), partitions(i), stop.clone());
        async move { harness::service::keep_writing(c, &topic, &p, stop).await }
    });
    let change = async {
        let moment = || Duration::from_millis(rand::random_range(200..1200));
        tokio::time::sleep(moment()).await;
        engine.pause("b->c").await.expect("pause b->c");
        tokio::time::sleep(moment()).await;
        let prepared = engine
            .prepare_change(harness::spec(&refs, WITH_D, PATTERN))
            .await
            .expect("add cluster d");
        let cut = prepared.cut().clone();
        prepared.apply();
        // d writes from the change on, while the others still do.
        let d_stop = tokio_util::sync::CancellationToken::new();
        let d_partitions = partitions(3);
        let d_writes =
            harness::service::keep_writing(refs[3], &topic, &d_partitions, d_stop.clone());
        let later = async {
            tokio::time::sleep(moment()).await;
            engine.resume("b->c").await.expect("resume b->c");
            harness::wait_until("the change settled", Duration::from_secs(90), || {
                !engine.changing()
            })
            .await;
            tokio::time::sleep(moment()).await;
            d_stop.cancel();
            stop.cancel();
        };
        let (d_written, ()) = tokio::join!(d_writes, later);
        (cut, d_written)
    };
    let (written, (cut, d_written)) = tokio::join!(futures::future::join_all(writers), change);
    let cut = cut.topic(&topic);

    // a, b and c: everything of a, b and c, and what d wrote once it had joined.
    let mut everywhere = Expected::new();
    for w in written {
        everywhere.extend(w);
    }
    let before_cut =
        |(origin, p, o): &(String, i32, i64)| cut.get(origin, *p).is_some_and(|end| *o < end);
    let mut on_d: Expected = everywhere
        .iter()
        .filter(|(id, _)| !before_cut(id))
        .map(|(id, r)| (id.clone(), r.clone()))
        .collect();
    assert!(
        on_d.len() < everywhere.len() && !on_d.is_empty(),
        "records were written on both sides of the cut"
    );
    everywhere.extend(d_written.clone());
    on_d.extend(d_written);
    harness::expect(&mut on_d, d_before_ids, &d_before);

    harness::wait_for_count(
        &refs[..3],
        &topic,
        everywhere.len() as i64,
        Duration::from_secs(90),
    )
    .await;
    harness::wait_for_count(
        &refs[3..],
        &topic,
        on_d.len() as i64,
        Duration::from_secs(90),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let loops = running.total(|m| m.loop_stopped.load(Relaxed));
    running.stop().await;
    for c in &refs[..3] {
        harness::assert_holds_exactly(c, &topic, &everywhere);
    }
    harness::assert_holds_exactly(refs[3], &topic, &on_d);
    assert_eq!(loops, 0, "the routing alone prevents loops");
    harness::verify::assert_pass(&refs[..3], &topic, everywhere.len() as u64).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_joins_a_triangle_on_mock() {
    add_a_cluster_while_writing(Provider::Mock).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_joins_a_triangle_on_tansu() {
    add_a_cluster_while_writing(Provider::Tansu).await;
}
