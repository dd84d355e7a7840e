//! The translation index (docs/offsets.md, "Index"): a translation through it gives
//! exactly what a full read gives — cold, warm, after more records on both sides, and
//! after the clusters no longer hold what it says (a topic recreated with other records,
//! or with fewer) — while a warm one reuses every entry. Compacted topics are never
//! indexed (Tansu, which answers DescribeConfigs), and `[offsets] index = true` keeps it
//! under the state directory for `duplex offsets`.

mod harness;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use duplex_sync::offsets::index::{Index, IndexUse, MemoryStore, Store};
use duplex_sync::offsets::{self, Request, Translation};
use harness::groups::{self, named};
use harness::{Feature, Provider, TestCluster};

const PARTITIONS: i32 = 4;

/// A store that remembers which keys were written.
#[derive(Default, Clone)]
struct Watched {
    inner: Arc<MemoryStore>,
    written: Arc<Mutex<BTreeSet<String>>>,
}

impl Store for Watched {
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.inner.get(key)
    }

    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), String> {
        self.written
            .lock()
            .unwrap()
            .insert(String::from_utf8_lossy(key).replace('\0', "/"));
        self.inner.put(key, value)
    }

    fn delete(&self, key: &[u8]) -> Result<(), String> {
        self.inner.delete(key)
    }
}

fn translate(a: &TestCluster, b: &TestCluster, group: &str, index: Option<&Index>) -> Translation {
    let (a, b) = (a.spec(), b.spec());
    offsets::translate(&Request {
        group,
        from: &a,
        to: &b,
        topics: None,
        timeout: Duration::from_secs(20),
        index,
    })
    .expect("translate")
}

/// Both clusters written (each `own` records of its own per partition, values named
/// with `label`), replicated, and the group at `at` on a.
async fn mesh(
    clusters: &[TestCluster],
    topic: &str,
    (own, label): ([usize; 2], &str),
    group: &str,
    at: &[i64],
) {
    let refs: Vec<&TestCluster> = clusters.iter().collect();
    let parts: Vec<i32> = (0..PARTITIONS).collect();
    // a holds everything replicated so far.
    let before: i64 = (0..PARTITIONS)
        .map(|p| harness::watermarks(refs[0], topic, p).1)
        .sum();
    for (c, n) in refs.iter().zip(own) {
        harness::produce(c, topic, &named(&format!("{}{label}", c.id), n, &parts)).await;
    }
    let total = before + ((own[0] + own[1]) * PARTITIONS as usize) as i64;
    let running = harness::run_engine(harness::spec(&refs, &[[0, 1]], "idx\\..*"));
    harness::wait_for_count(&refs, topic, total, Duration::from_secs(60)).await;
    running.stop().await;
    groups::commit(refs[0], group, topic, at);
}

fn used(reused: usize, rebuilt: usize, dropped: usize) -> IndexUse {
    IndexUse {
        reused,
        rebuilt,
        dropped,
    }
}

fn same_outcomes(got: &Translation, want: &Translation, what: &str) {
    assert_eq!(got.partitions, want.partitions, "{what}: through the index");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_index_translates_as_a_full_read_cold_warm_and_after_more_records_mock() {
    let clusters = harness::start(Provider::Mock, &["a", "b"]).unwrap();
    let (a, b) = (&clusters[0], &clusters[1]);
    let topic = harness::unique("idx");
    a.create_topic(&topic, PARTITIONS).await;
    b.create_topic(&topic, PARTITIONS).await;
    let group = harness::unique("app");
    // a's partitions: a's 40, then b's 30; the group in a's, at their end, in b's, none.
    mesh(&clusters, &topic, ([40, 30], ""), &group, &[20, 40, 55, 0]).await;
    let index = Index::new(Box::new(Watched::default())).trusting_unknown_policy();
    let full = translate(a, b, &group, None);
    assert!(full.complete(), "{full:?}");
    let cold = translate(a, b, &group, Some(&index));
    same_outcomes(&cold, &full, "cold");
    assert_eq!(cold.index, used(0, 8, 0));
    let warm = translate(a, b, &group, Some(&index));
    same_outcomes(&warm, &full, "warm");
    // a's partition 3 read nothing (the group is at 0): an entry with no record has
    // nothing to be checked by, and is read again (from the log start, up to 0).
    assert_eq!(warm.index, used(7, 1, 0));

    // More on both sides, the group further on: the warm index reads only what is new.
    mesh(&clusters, &topic, ([25, 15], ""), &group, &[60, 70, 90, 3]).await;
    let full = translate(a, b, &group, None);
    assert!(full.complete(), "{full:?}");
    assert!(
        full.partitions
            .iter()
            .any(|p| p.outcome.as_ref().unwrap().redelivered > 0),
        "the sides interleave differently: {full:?}"
    );
    let grown = translate(a, b, &group, Some(&index));
    same_outcomes(&grown, &full, "after more records");
    assert_eq!(grown.index, used(7, 1, 0));
    let again = translate(a, b, &group, Some(&index));
    same_outcomes(&again, &full, "warm again");
    assert_eq!(again.index, used(8, 0, 0));
}

/// The same cluster ids and topic name, but clusters that no longer hold what the index
/// says: the topic recreated with other records (the last indexed record reads back
/// different), or with fewer (its end below the index's). Every entry is dropped and
/// read again; the translation is the full read's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_the_clusters_no_longer_match_are_read_again_mock() {
    let index = Index::new(Box::new(Watched::default())).trusting_unknown_policy();
    let topic = harness::unique("idx");
    let group = harness::unique("app");
    // Dropped: every entry that holds a record. After the first round a's partition 3
    // holds none (the group was at 0 there: nothing of it was read), so 7 of 8.
    for (round, own, at, dropped) in [
        ("first", ([40, 30], ""), [20, 40, 55, 0], 0),
        (
            "recreated, as many records",
            ([40, 30], "-again"),
            [25, 45, 50, 5],
            7,
        ),
        (
            "recreated, fewer records",
            ([10, 5], ""),
            [3, 10, 12, 15],
            8,
        ),
    ] {
        let clusters = harness::start(Provider::Mock, &["a", "b"]).unwrap();
        let (a, b) = (&clusters[0], &clusters[1]);
        a.create_topic(&topic, PARTITIONS).await;
        b.create_topic(&topic, PARTITIONS).await;
        mesh(&clusters, &topic, own, &group, &at).await;
        let full = translate(a, b, &group, None);
        let through = translate(a, b, &group, Some(&index));
        same_outcomes(&through, &full, round);
        assert_eq!(
            through.index.dropped, dropped,
            "{round}: {:?}",
            through.index
        );
    }
}

/// Tansu answers DescribeConfigs: a topic with `cleanup.policy = compact` is never
/// indexed (compaction removes records no check at the ends can see), one with
/// `delete` is, and both translate as a full read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compacted_topics_are_never_indexed_tansu() {
    let provider = Provider::Tansu;
    if !harness::needs(
        provider,
        Feature::Admin,
        "compacted_topics_are_never_indexed",
    ) {
        return;
    }
    let Some(clusters) = harness::start(provider, &["a", "b"]) else {
        return;
    };
    let (a, b) = (&clusters[0], &clusters[1]);
    let store = Watched::default();
    let index = Index::new(Box::new(store.clone()));
    for policy in ["compact", "delete"] {
        let topic = harness::unique("idx");
        a.create_topic_with(&topic, PARTITIONS, &[("cleanup.policy", policy)])
            .await;
        let group = harness::unique("app");
        // One writer per partition on Tansu: a writes all partitions, b none.
        mesh(&clusters, &topic, ([30, 0], ""), &group, &[10, 30, 0, 15]).await;
        let full = translate(a, b, &group, None);
        assert!(full.complete(), "{policy}: {full:?}");
        let through = translate(a, b, &group, Some(&index));
        same_outcomes(&through, &full, policy);
        let written = store.written.lock().unwrap().clone();
        let indexed = written.iter().filter(|k| k.contains(&topic)).count();
        match policy {
            "compact" => assert_eq!(indexed, 0, "a compacted topic was indexed: {written:?}"),
            _ => assert_eq!(indexed, 8, "{written:?}"),
        }
        if policy == "delete" {
            // Made compacted: its entries are removed, and it is read in full.
            for c in [a, b] {
                let (client, t) = (c.admin(), topic.clone());
                tokio::task::spawn_blocking(move || {
                    duplex_sync::admin_ffi::alter_topic(
                        client.inner(),
                        &t,
                        &[duplex_sync::topic_configs::Change::Set(
                            "cleanup.policy".into(),
                            "compact".into(),
                        )],
                        Duration::from_secs(10),
                    )
                })
                .await
                .unwrap()
                .unwrap();
            }
            let after = translate(a, b, &group, Some(&index));
            same_outcomes(&after, &full, "made compacted");
            assert_eq!(after.index, used(0, 0, 0));
            for p in 0..PARTITIONS {
                for c in ["a", "b"] {
                    let key = format!("{c}\0{topic}\0{p}");
                    assert_eq!(store.inner.get(key.as_bytes()), None, "{key} kept");
                }
            }
        }
    }
}

/// `[offsets] index = true`: `duplex offsets translate` keeps the index under the state
/// directory, and a second translation through it prints what the first did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_keeps_the_index_under_the_state_directory_tansu() {
    let provider = Provider::Tansu;
    if !harness::needs(provider, Feature::Admin, "the_cli_keeps_the_index") {
        return;
    }
    let Some(clusters) = harness::start(provider, &["a", "b"]) else {
        return;
    };
    let refs: Vec<&TestCluster> = clusters.iter().collect();
    let topic = harness::unique("idx");
    refs[0].create_topic(&topic, PARTITIONS).await;
    let group = harness::unique("app");
    mesh(&clusters, &topic, ([20, 0], ""), &group, &[5, 20, 0, 10]).await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let file = dir.path().join("duplex.toml");
    let toml = harness::service::links_toml(&refs, "idx\\..*", &[["a", "b"]])
        + &format!(
            "[state]\ndir = {:?}\n\n[offsets]\nindex = true\n",
            state.display().to_string()
        );
    std::fs::write(&file, toml).unwrap();
    let file = file.display().to_string();
    let args = [
        "offsets",
        "translate",
        "--config",
        &file,
        "--group",
        &group,
        "--from",
        "a",
        "--to",
        "b",
        "--json",
    ];
    let first = harness::service::cli(&args).await;
    assert!(first.status.success(), "{first:?}");
    assert!(
        state.join("offsets-index").join("CURRENT").exists(),
        "no RocksDB index under {}",
        state.display()
    );
    // The translation went through it: an entry per partition and side.
    {
        let db = rocksdb::DB::open_default(state.join("offsets-index")).unwrap();
        let keys = db
            .iterator(rocksdb::IteratorMode::Start)
            .filter_map(Result::ok)
            .filter(|(k, _)| String::from_utf8_lossy(k).contains(&topic))
            .count();
        assert_eq!(keys, 8, "entries of {topic} in the index");
    }
    let second = harness::service::cli(&args).await;
    assert!(second.status.success(), "{second:?}");
    assert_eq!(
        String::from_utf8_lossy(&second.stdout),
        String::from_utf8_lossy(&first.stdout)
    );
}
