//! A flow catching up on a backlog keeps checkpointing as the target acknowledges. The
//! acker runs in the reader's task (sync/src/flow/mod.rs, `run_once`), so it only gets
//! a turn when the reader yields; a reader handling records already fetched must still
//! yield while its source's queue never runs dry, or nothing is committed (and no held
//! partition resumed) until the whole backlog is read.

mod harness;

use std::time::{Duration, Instant};

use duplex_sync::flow::group_id;
use harness::Provider;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, TopicPartitionList};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_advance_while_a_backlog_is_read_on_mock() {
    // 15,000 records a partition: within what a mock partition retains, so that the
    // source keeps the whole backlog and the flow starts every partition at 0.
    const N: i64 = 120_000;
    const PARTITIONS: i32 = 8;
    let clusters = harness::start(Provider::Mock, &["a", "b"]).unwrap();
    let (a, b) = (&clusters[0], &clusters[1]);
    let topic = harness::unique("backlog");
    for c in [a, b] {
        c.create_topic(&topic, PARTITIONS).await;
    }
    harness::produce(a, &topic, &harness::records("a", N as usize, PARTITIONS)).await;
    for p in 0..PARTITIONS {
        assert_eq!(
            harness::watermarks(a, &topic, p).0,
            0,
            "the mock kept partition {p} whole"
        );
    }

    let mut spec = harness::spec(&[a, b], &[[0, 1]], "backlog\\..*");
    spec.limits.commit_interval = Duration::from_millis(200);
    let running = harness::run_engine(spec);
    running.flow("a->b").await;
    let link = running
        .registry
        .entries()
        .into_iter()
        .find(|e| e.flow == "a->b")
        .expect("registered")
        .link;

    // A watcher with clients of its own, connected once: the flow replicates the
    // backlog in about a second, and a client made per look would take most of that.
    let (a_boot, b_boot, t) = (a.bootstrap.clone(), b.bootstrap.clone(), topic.clone());
    let group = group_id(&link, "a", "b");
    let watched = tokio::task::spawn_blocking(move || {
        let client = |boot: &str, group: &str| -> BaseConsumer {
            ClientConfig::new()
                .set("bootstrap.servers", boot)
                .set("group.id", group)
                .create()
                .expect("consumer")
        };
        let (checkpoints, target) = (client(&a_boot, &group), client(&b_boot, "watcher"));
        let mut tpl = TopicPartitionList::new();
        for p in 0..PARTITIONS {
            tpl.add_partition(&t, p);
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let checkpointed: i64 = checkpoints
                .committed_offsets(tpl.clone(), Duration::from_secs(10))
                .expect("committed offsets")
                .elements()
                .iter()
                .map(|e| e.offset().to_raw().unwrap_or(0).max(0))
                .sum();
            // Read after the checkpoint: a checkpoint seen while the target holds less
            // than three quarters of the backlog was committed while it was being read
            // (a reader that never yields lets the acker commit only near the end, once
            // the source's queue runs dry).
            let held: i64 = (0..PARTITIONS)
                .map(|p| {
                    target
                        .fetch_watermarks(&t, p, Duration::from_secs(10))
                        .expect("watermarks")
                        .1
                })
                .sum();
            if checkpointed > 0 && held < N * 3 / 4 {
                return Ok((checkpointed, held));
            }
            if held >= N * 3 / 4 {
                return Err(format!(
                    "{held} of the {N} records of the backlog reached the target before a checkpoint was committed ({checkpointed})"
                ));
            }
            if Instant::now() > deadline {
                return Err(format!("{held} of {N} records on the target after 120 s"));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    })
    .await
    .expect("watcher");
    let (checkpointed, held) = watched.unwrap_or_else(|e| panic!("{e}"));
    eprintln!("checkpoint at {checkpointed} with {held} of {N} records on the target");
    harness::wait_until(
        "the backlog on the target",
        Duration::from_secs(120),
        || {
            (0..PARTITIONS)
                .map(|p| harness::watermarks(b, &topic, p).1)
                .sum::<i64>()
                == N
        },
    )
    .await;
    running.stop().await;
}
