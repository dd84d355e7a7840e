//! Records as tests write them, and what each cluster must then hold: produce with
//! known identities, wait for counts, assert that a cluster holds each record exactly
//! once with its bytes and headers.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use duplex::inspect::{self, Held};
use rdkafka::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::{Backend, Provider, TestCluster};

/// A record as a test produces it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rec {
    pub partition: i32,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    pub timestamp: i64,
}

/// Asserts how `origin`'s records on one cluster (`held`) came there across a topology
/// change at `cut` (of their topic): those below the cut by the hops `below`, those at or
/// past it by `past`, with some on each side. Returns how many were past it.
pub fn assert_hops_across(
    held: &[Held],
    cut: &duplex_sync::routing::Cut,
    origin: &str,
    below: &[&str],
    past: &[&str],
) -> u64 {
    let (mut before, mut after) = (0u64, 0u64);
    for h in held.iter().filter(|h| h.origin == origin) {
        let (p, o) = h.origin_position;
        let end = cut
            .get(origin, p)
            .unwrap_or_else(|| panic!("the cut names every partition of {origin}"));
        let (want, n, side) = if o < end {
            (below, &mut before, "below")
        } else {
            (past, &mut after, "at or past")
        };
        *n += 1;
        assert_eq!(
            h.hops, want,
            "{origin}'s record {p}/{o} {side} the cut ({end}) comes by {want:?}"
        );
    }
    assert!(
        before > 0 && after > 0,
        "writes on both sides of the cut: {before} below, {after} past"
    );
    after
}

/// Partitions that cluster `index` of `count` writes to in a test with `partitions`.
///
/// On mock and external clusters: all of them, so local and replicated records
/// interleave in every partition. On Tansu 0.6.0, whose sqlite engine updates a
/// partition's watermark read-then-write and so can leave a stale high watermark when
/// two producers write one partition at once (docs/testing.md), each cluster's clients
/// write only partitions `p % count == index`: every partition then has one writer, the
/// client on its origin cluster or the one flow that carries that origin.
pub fn write_partitions(
    provider: Provider,
    index: usize,
    count: usize,
    partitions: i32,
) -> Vec<i32> {
    match provider {
        Provider::Tansu => (0..partitions)
            .filter(|p| *p as usize % count == index)
            .collect(),
        _ => (0..partitions).collect(),
    }
}

/// `n` varied records from `origin`: keys (some null), values (some null, some empty),
/// headers in order (some null-valued, some repeated), distinct CreateTime timestamps.
pub fn records(origin: &str, n: usize, partitions: i32) -> Vec<Rec> {
    records_on(origin, n, &(0..partitions).collect::<Vec<_>>())
}

/// Like [`records`], spread over the given partitions.
pub fn records_on(origin: &str, n: usize, partitions: &[i32]) -> Vec<Rec> {
    (0..n)
        .map(|i| Rec {
            partition: partitions[i % partitions.len()],
            key: (i % 7 != 3).then(|| format!("{origin}-key-{i}").into_bytes()),
            value: match i % 10 {
                4 => None,
                8 => Some(Vec::new()),
                _ => Some(format!("{origin} value {i} {}", "x".repeat(i % 50)).into_bytes()),
            },
            headers: vec![
                (
                    "trace".to_string(),
                    Some(format!("{origin}-{i}").into_bytes()),
                ),
                (
                    "empty".to_string(),
                    if i % 2 == 0 { None } else { Some(Vec::new()) },
                ),
                ("trace".to_string(), Some(b"repeated".to_vec())),
            ],
            timestamp: 1_700_000_000_000 + i as i64,
        })
        .collect()
}

/// Produces `recs` on `c` (idempotent producer) and returns each record's identity:
/// (origin cluster, partition, offset).
pub async fn produce(c: &TestCluster, topic: &str, recs: &[Rec]) -> Vec<(String, i32, i64)> {
    produce_with(&producer(c), c, topic, recs).await
}

/// The idempotent producer [`produce`] writes with, for a writer that sends many
/// batches (one client, one producer id, instead of one a batch).
pub fn producer(c: &TestCluster) -> FutureProducer {
    let in_flight = std::env::var("DUPLEX_TEST_PRODUCER_IN_FLIGHT").unwrap_or_else(|_| {
        if matches!(c.backend, Backend::Tansu(_)) {
            "1"
        } else {
            "5"
        }
        .to_string()
    });
    ClientConfig::new()
        .set("bootstrap.servers", &c.bootstrap)
        .set("enable.idempotence", "true")
        .set("max.in.flight.requests.per.connection", &in_flight)
        .set("linger.ms", "2")
        .create()
        .expect("producer")
}

/// Like [`produce`], with `p`, a producer of `c` ([`producer`]).
pub async fn produce_with(
    p: &FutureProducer,
    c: &TestCluster,
    topic: &str,
    recs: &[Rec],
) -> Vec<(String, i32, i64)> {
    let mut futures = Vec::with_capacity(recs.len());
    for r in recs {
        let mut h = OwnedHeaders::new();
        for (k, v) in &r.headers {
            h = h.insert(Header {
                key: k,
                value: v.as_deref(),
            });
        }
        let mut rec = FutureRecord::<[u8], [u8]>::to(topic)
            .partition(r.partition)
            .timestamp(r.timestamp)
            .headers(h);
        if let Some(k) = &r.key {
            rec = rec.key(k);
        }
        if let Some(v) = &r.value {
            rec = rec.payload(v);
        }
        let queued = duplex_sync::clients::enqueue(p, rec, Duration::from_secs(60));
        futures.push(queued.await.expect("enqueue a record"));
    }
    let mut ids = Vec::with_capacity(futures.len());
    for f in futures {
        let d = f
            .await
            .expect("delivery future")
            .map_err(|(e, _)| e)
            .expect("produce");
        ids.push((c.id.clone(), d.partition, d.offset));
    }
    ids
}

/// What every cluster must hold: identity → record.
pub type Expected = BTreeMap<(String, i32, i64), Rec>;

pub fn expect(into: &mut Expected, ids: Vec<(String, i32, i64)>, recs: &[Rec]) {
    assert_eq!(ids.len(), recs.len());
    into.extend(ids.into_iter().zip(recs.iter().cloned()));
}

/// Waits until `topic` holds at least `n` records on every cluster.
pub async fn wait_for_count(clusters: &[&TestCluster], topic: &str, n: i64, timeout: Duration) {
    if let Err(e) = counts_reach(clusters, topic, n, timeout).await {
        panic!("{e}");
    }
}

/// Like [`wait_for_count`], returning what it saw instead of panicking.
pub async fn counts_reach(
    clusters: &[&TestCluster],
    topic: &str,
    n: i64,
    timeout: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut counts = Vec::new();
        for c in clusters {
            counts.push(inspect::count(&c.bootstrap, topic, Duration::from_secs(5)).unwrap_or(-1));
        }
        if counts.iter().all(|&k| k >= n) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{topic}: waited {timeout:?} for {n} records on every cluster, have {counts:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Low and high watermarks of one partition of `topic` on `c`.
pub fn watermarks(c: &TestCluster, topic: &str, partition: i32) -> (i64, i64) {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &c.bootstrap)
        .set("group.id", "duplex-test-watermarks")
        .create()
        .expect("consumer");
    consumer
        .fetch_watermarks(topic, partition, Duration::from_secs(10))
        .expect("fetch watermarks")
}

/// Asserts that `c` holds every expected record exactly once, field for field, in
/// the partition it was produced to, and nothing else.
pub fn assert_holds_exactly(c: &TestCluster, topic: &str, expected: &Expected) -> Vec<Held> {
    let held = inspect::read_topic(&c.bootstrap, &c.id, topic, Duration::from_secs(60))
        .expect("read topic");
    let mut seen = BTreeMap::new();
    for h in &held {
        let id = (h.origin.clone(), h.origin_position.0, h.origin_position.1);
        let n = seen.entry(id.clone()).or_insert(0);
        *n += 1;
        assert_eq!(
            *n, 1,
            "{}: {id:?} held twice (second at offset {})",
            c.id, h.offset
        );
        let want = expected.get(&id).unwrap_or_else(|| {
            panic!(
                "{}: unexpected record {id:?} at {}/{}",
                c.id, h.partition, h.offset
            )
        });
        assert_eq!(h.partition, want.partition, "{}: {id:?} partition", c.id);
        assert_eq!(h.key, want.key, "{}: {id:?} key", c.id);
        assert_eq!(h.value, want.value, "{}: {id:?} value", c.id);
        assert_eq!(h.headers, want.headers, "{}: {id:?} headers", c.id);
        assert_eq!(
            h.timestamp,
            Some(want.timestamp),
            "{}: {id:?} timestamp",
            c.id
        );
        if h.origin != c.id {
            assert!(
                !h.hops.contains(&c.id),
                "{}: {id:?} came back through {:?}",
                c.id,
                h.hops
            );
        }
    }
    let missing: Vec<_> = expected
        .keys()
        .filter(|k| !seen.contains_key(*k))
        .take(5)
        .collect();
    assert!(
        missing.is_empty(),
        "{}: {} records missing, e.g. {missing:?}",
        c.id,
        expected.len() - seen.len()
    );
    assert_eq!(held.len(), expected.len(), "{}: record count", c.id);
    held
}
