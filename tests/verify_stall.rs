//! A side that stops making progress mid-read (its broker went down) fails the pass with
//! a stall that names the partitions it could not finish, once the stall timeout has
//! passed since its last record, and not before.

mod harness;

use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use duplex_verifier::{VerifyError, VerifySpec};
use harness::{Provider, Rec};

const PARTITIONS: i32 = 2;
const PER_PARTITION: usize = 400;
const STALL: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_down_mid_read_is_a_stall_naming_the_partitions() {
    let mut clusters = harness::start(Provider::Mock, &["a", "b"]).unwrap();
    let topic = harness::unique("stall");
    for c in &clusters {
        c.create_topic(&topic, PARTITIONS).await;
    }
    // Records on b only (copies whose origin a no longer holds): a's reader has nothing
    // to read, so the pass ends when b's does, and its duration is b's.
    let recs = harness::records("a", PER_PARTITION * PARTITIONS as usize, PARTITIONS);
    let copies: Vec<Rec> = recs
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let p = i as i32 % PARTITIONS;
            harness::verify::replica(r, "a", p, (i / PARTITIONS as usize) as i64)
        })
        .collect();
    harness::produce(&clusters[1], &topic, &copies).await;

    let dir = tempfile::tempdir().unwrap();
    let sides = clusters
        .iter()
        .map(|c| {
            let mut side = c.spec();
            // A prefetch of a few records, so that what b's reader holds when its broker
            // goes down lasts well under a second at the rate below.
            for (k, v) in [
                ("queued.max.messages.kbytes", "1"),
                ("message.max.bytes", "1000"),
                ("fetch.max.bytes", "1000"),
                ("max.partition.fetch.bytes", "1000"),
            ] {
                side.consumer.insert(k.into(), v.into());
            }
            side
        })
        .collect();
    let mut spec = VerifySpec::new(
        sides,
        regex::Regex::new(&format!("^{topic}$")).unwrap(),
        dir.path().join("store"),
    );
    // 800 records at 200/s: 4 s of reading; the broker goes down after 1.5.
    spec.max_rate = Some(200);
    spec.stall_timeout = STALL;
    let (store_dir, signature) = (spec.store_dir.clone(), spec.signature());
    let started = Instant::now();
    let pass = tokio::task::spawn_blocking(move || {
        duplex_verifier::run::verify(&spec, &AtomicBool::new(false), &|_| {})
    });
    // A moment into the 4 s of reading; that b was then mid-read is checked below.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let down_at = started.elapsed();
    clusters[1].broker_down();
    let outcome = tokio::time::timeout(Duration::from_secs(120), pass)
        .await
        .expect("the pass ends (a stall is an error, not a hang)")
        .unwrap();
    let took = started.elapsed();
    match outcome {
        Err(VerifyError::Stalled {
            cluster,
            secs,
            what,
        }) => {
            assert_eq!(cluster, "b");
            assert_eq!(secs, STALL.as_secs());
            // The partitions b had not finished, each with the offset it had to reach
            // (which ones depends on how the reads interleaved: at least one).
            let named: Vec<&str> = what.split(", ").collect();
            assert!(
                !named.is_empty() && named.len() <= PARTITIONS as usize,
                "{what}"
            );
            for item in named {
                assert!(
                    (0..PARTITIONS)
                        .any(|p| item == format!("{topic}/{p} (to offset {PER_PARTITION})")),
                    "the stall names {item:?}, not one of b's partitions of {topic}"
                );
            }
        }
        other => panic!("expected a stall on b, got {other:?}"),
    }
    // The stall counts from b's last record, which came at or after the moment its
    // broker went down (the prefetch): never sooner than the timeout after that. The
    // pass ends when b's reader does.
    assert!(
        took >= down_at + STALL,
        "stalled {took:?} after the start, the broker went down at {down_at:?}"
    );
    assert!(took < Duration::from_secs(60), "took {took:?}");
    // The broker went down mid-read: b's reader had stored some of its records, not
    // all (the stalled pass flushes what it read).
    let store = duplex_verifier::store::Store::open(&store_dir, &signature).unwrap();
    let read: i64 = store
        .positions(1)
        .unwrap()
        .iter()
        .map(|(_, _, pos)| pos.next)
        .sum();
    assert!(
        read > 0 && read < (PER_PARTITION * PARTITIONS as usize) as i64,
        "b's reader had read {read} records when its broker went down"
    );
}
