//! A record the target refuses stops its flow with an error naming it; the records
//! after it are not written (nothing is skipped), and the other flows carry on
//! (DESIGN.md rule 6).

mod harness;

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use harness::{Expected, Provider};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_record_stops_its_flow_and_is_never_skipped() {
    let Some(clusters) = harness::start(Provider::Mock, &["src", "dst"]) else {
        return;
    };
    let (a, b) = (&clusters[0], &clusters[1]);
    let topic = harness::unique("strict");
    a.create_topic(&topic, 1).await;
    b.create_topic(&topic, 1).await;
    let mut recs = harness::records("src", 3, 1);
    recs[1].value = Some(vec![b'x'; 5000]);
    // The first record is on the target before the refused one is read: a stopping
    // flow purges what is still in its producer's queue (the next start sends it).
    let mut ids = harness::produce(a, &topic, &recs[..1]).await;
    let mut spec = harness::spec(&[a, b], &[[0, 1]], "strict\\..*");
    // The target accepts records of at most 2,000 bytes (here the producer enforces it;
    // a broker's max.message.bytes is refused the same way).
    spec.clusters[1]
        .producer
        .insert("message.max.bytes".into(), "2000".into());
    let running = harness::run_engine(spec);
    let (ab, ba) = (
        running.flow("src->dst").await,
        running.flow("dst->src").await,
    );
    harness::wait_for_count(&[b], &topic, 1, Duration::from_secs(10)).await;
    ids.extend(harness::produce(a, &topic, &recs[1..]).await);
    harness::wait_until("src->dst to stop", Duration::from_secs(30), || {
        ab.up.load(Relaxed) == 0 && ab.last_error().is_some()
    })
    .await;
    let error = ab.last_error().unwrap();
    assert!(error.contains("cluster dst refused"), "{error}");
    assert!(
        error.contains(&format!("{topic}/0 offset {}", ids[1].2)),
        "{error}"
    );
    assert_eq!(ab.restarts.load(Relaxed), 0, "a refusal is not retried");
    assert_eq!(ba.up.load(Relaxed), 1, "the other flow carries on");
    // The first record crossed; the refused one and the one after it did not.
    let mut expected = Expected::new();
    harness::expect(&mut expected, ids[..1].to_vec(), &recs[..1]);
    harness::wait_for_count(&[b], &topic, 1, Duration::from_secs(10)).await;
    running.stop().await;
    harness::assert_holds_exactly(b, &topic, &expected);
}
