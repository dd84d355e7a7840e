//! The test-broker harness (DESIGN.md "Test brokers"): one API over librdkafka's mock
//! cluster in-process, Tansu processes over TCP, and external clusters named by
//! environment variables. Helpers to produce records and check what each cluster holds;
//! running the engine in `engine.rs`.
#![allow(dead_code)]

pub mod browser;
mod engine;
pub mod groups;
pub mod process;
pub mod service;
pub mod tansu;
pub mod verify;

// Each test binary uses some of these.
#[allow(unused_imports)]
pub use engine::{Running, committed, run_engine, spec, start_engine};

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use duplex::inspect::{self, Held};
use duplex_sync::spec::ClusterSpec;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{DefaultProducerContext, FutureProducer, FutureRecord};

/// Which kind of broker a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// librdkafka's mock cluster, in this process.
    Mock,
    /// Tansu broker processes on loopback ports.
    Tansu,
    /// Clusters named by `DUPLEX_TEST_EXTERNAL="a=host:9092;b=host:9093;c=..."`.
    External,
}

/// A feature some providers lack; a test skips (saying so) only for these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feature {
    /// CreateTopics / DescribeConfigs (the mock answers no admin request).
    Admin,
    /// Stop and restart a broker, keeping its data.
    Restart,
    /// Offset commit metadata kept and returned by OffsetFetch (Tansu 0.6.0 returns it
    /// empty).
    CommitMetadata,
    /// DescribeGroups of a group the broker knows: the mock does not answer it, and
    /// Tansu 0.6.0 fails it for every group it has stored (a serde error in its sqlite
    /// storage; it answers only for groups it has never seen).
    DescribeGroups,
    /// DeleteTopics of a topic clients are reading: the mock has no DeleteTopics, and
    /// with Tansu 0.6.0 the next metadata update of librdkafka 2.12.1 clients that had
    /// the topic crashes the process (SIGSEGV in rd_kafka_metadata_cache_find).
    DeleteTopics,
    /// ACLs kept and listed: Tansu 0.6.0 answers DescribeAcls with none and CreateAcls
    /// with an answer that makes librdkafka 2.12.1 abort the process (assertion
    /// `rko_result` in rd_kafka_admin_response_parse), and the mock answers no admin
    /// request.
    Acls,
}

enum Backend {
    Mock(MockCluster<'static, DefaultProducerContext>),
    Tansu(tansu::Broker),
    External,
}

/// One test cluster.
pub struct TestCluster {
    pub id: String,
    pub bootstrap: String,
    backend: Backend,
}

impl Provider {
    pub fn supports(self, f: Feature) -> bool {
        !matches!(
            (self, f),
            (Provider::Mock, Feature::Admin)
                | (Provider::External, Feature::Restart)
                | (Provider::Tansu, Feature::CommitMetadata)
                | (
                    Provider::Mock | Provider::Tansu,
                    Feature::DescribeGroups | Feature::DeleteTopics | Feature::Acls
                )
        )
    }
}

/// Starts (or names) one cluster per id. `None` when the provider is not available
/// here (External without its variable); the reason is printed.
pub fn start(provider: Provider, ids: &[&str]) -> Option<Vec<TestCluster>> {
    match provider {
        Provider::Mock => Some(
            ids.iter()
                .map(|id| {
                    let m = MockCluster::new(1).expect("mock cluster");
                    // The mock answers no CreateTopics: the start markers' topic is made
                    // here, as an operator would on a cluster where Duplex may not create
                    // topics (docs/delivery.md, "First start").
                    m.create_topic(duplex_sync::starts::TOPIC, 1, 1)
                        .expect("mock create_topic");
                    TestCluster {
                        id: id.to_string(),
                        bootstrap: m.bootstrap_servers(),
                        backend: Backend::Mock(m),
                    }
                })
                .collect(),
        ),
        Provider::Tansu => Some(
            ids.iter()
                .map(|id| {
                    let b = tansu::Broker::start(id);
                    TestCluster {
                        id: id.to_string(),
                        bootstrap: b.bootstrap(),
                        backend: Backend::Tansu(b),
                    }
                })
                .collect(),
        ),
        Provider::External => {
            let Ok(var) = std::env::var("DUPLEX_TEST_EXTERNAL") else {
                eprintln!("skipped on external clusters: DUPLEX_TEST_EXTERNAL is not set");
                return None;
            };
            let named: BTreeMap<&str, &str> =
                var.split(';').filter_map(|kv| kv.split_once('=')).collect();
            if named.len() < ids.len() {
                eprintln!(
                    "skipped on external clusters: the test needs {} clusters, DUPLEX_TEST_EXTERNAL names {}",
                    ids.len(),
                    named.len()
                );
                return None;
            }
            Some(
                ids.iter()
                    .zip(named.values())
                    .map(|(id, b)| TestCluster {
                        id: id.to_string(),
                        bootstrap: b.to_string(),
                        backend: Backend::External,
                    })
                    .collect(),
            )
        }
    }
}

/// Mock clusters with `brokers` brokers each (ids 1..=brokers), for tests that take
/// one broker down while another answers.
pub fn start_mock(ids: &[&str], brokers: i32) -> Vec<TestCluster> {
    ids.iter()
        .map(|id| {
            let m = MockCluster::new(brokers).expect("mock cluster");
            TestCluster {
                id: id.to_string(),
                bootstrap: m.bootstrap_servers(),
                backend: Backend::Mock(m),
            }
        })
        .collect()
}

/// Says why a test does not run on a provider, and returns whether it should.
pub fn needs(provider: Provider, f: Feature, test: &str) -> bool {
    let ok = provider.supports(f);
    if !ok {
        eprintln!("{test}: skipped on {provider:?}: it lacks {f:?}");
    }
    ok
}

impl TestCluster {
    /// The broker's log, for a failure message (Tansu only; empty elsewhere).
    pub fn broker_log(&self) -> String {
        match &self.backend {
            Backend::Tansu(b) => b.log(),
            _ => String::new(),
        }
    }

    pub fn spec(&self) -> ClusterSpec {
        let mut spec = ClusterSpec::new(self.id.clone(), self.bootstrap.clone());
        // librdkafka debug contexts for the engine's consumers, e.g. "fetch".
        if let Ok(d) = std::env::var("DUPLEX_TEST_CONSUMER_DEBUG") {
            spec.consumer.insert("debug".into(), d);
        }
        if let Backend::Tansu(_) = self.backend {
            // Tansu 0.6.0's last stable offset can lag its high watermark after
            // concurrent producers until the next write, stalling read_committed
            // fetches. It has no transactions, so reading uncommitted is equivalent.
            spec.consumer
                .insert("isolation.level".into(), "read_uncommitted".into());
            // The same race between pipelined requests of one producer.
            spec.producer
                .insert("max.in.flight.requests.per.connection".into(), "1".into());
        }
        spec
    }

    /// An admin client of this cluster.
    pub fn admin(&self) -> AdminClient<DefaultClientContext> {
        ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .create()
            .expect("admin client")
    }

    /// Creates a topic: `MockCluster::create_topic` on mock, CreateTopics elsewhere.
    pub async fn create_topic(&self, topic: &str, partitions: i32) {
        self.create_topic_with(topic, partitions, &[]).await
    }

    /// Creates a topic with topic settings (`settings`: key, value), which the mock
    /// cannot take.
    pub async fn create_topic_with(&self, topic: &str, partitions: i32, settings: &[(&str, &str)]) {
        match &self.backend {
            Backend::Mock(m) => {
                assert!(
                    settings.is_empty(),
                    "the mock cluster takes no topic settings"
                );
                m.create_topic(topic, partitions, 1)
                    .expect("mock create_topic")
            }
            _ => {
                let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
                let mut new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
                for (k, v) in settings {
                    new = new.set(k, v);
                }
                let r = self
                    .admin()
                    .create_topics([&new], &opts)
                    .await
                    .expect("create topics");
                r.into_iter()
                    .next()
                    .expect("one result")
                    .expect("topic created");
            }
        }
        // Wait until metadata shows every partition.
        let deadline = Instant::now() + Duration::from_secs(10);
        while inspect::partitions(&self.bootstrap, topic, Duration::from_secs(5)).unwrap_or(0)
            < partitions as usize
        {
            assert!(
                Instant::now() < deadline,
                "{topic} did not appear on {}",
                self.id
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The mock cluster behind this test cluster, for fault injection (request errors,
    /// one broker of several down). Panics on other providers.
    pub fn mock(&self) -> &MockCluster<'static, DefaultProducerContext> {
        match &self.backend {
            Backend::Mock(m) => m,
            _ => panic!("{} is not a mock cluster", self.id),
        }
    }

    /// On a mock cluster: creates `topic` with partition `p` led by broker `leaders[p]`.
    pub async fn create_topic_led(&self, topic: &str, leaders: &[i32]) {
        self.create_topic(topic, leaders.len() as i32).await;
        for (p, l) in leaders.iter().enumerate() {
            self.mock()
                .partition_leader(topic, p as i32, Some(*l))
                .expect("mock partition_leader");
        }
    }

    /// Takes the broker down: `broker_down` on mock, SIGKILL of the process on Tansu.
    pub fn broker_down(&mut self) {
        match &mut self.backend {
            Backend::Mock(m) => m.broker_down(1).expect("mock broker_down"),
            Backend::Tansu(b) => b.down(),
            Backend::External => panic!("external clusters cannot be restarted by tests"),
        }
    }

    /// Brings it back with its data.
    pub fn broker_up(&mut self) {
        match &mut self.backend {
            Backend::Mock(m) => m.broker_up(1).expect("mock broker_up"),
            Backend::Tansu(b) => b.up(),
            Backend::External => panic!("external clusters cannot be restarted by tests"),
        }
    }
}

/// `[[clusters]]` tables of a `duplex` config for these clusters, with the harness's
/// per-provider client options (see [`TestCluster::spec`]), after `tweak`.
pub fn clusters_toml(clusters: &[&TestCluster], tweak: impl Fn(&mut ClusterSpec)) -> String {
    let mut s = String::new();
    for c in clusters {
        let mut spec = c.spec();
        tweak(&mut spec);
        s += &format!(
            "[[clusters]]\nid = \"{}\"\nbootstrap_servers = \"{}\"\n",
            spec.id, spec.bootstrap_servers
        );
        for (table, map) in [("consumer", &spec.consumer), ("producer", &spec.producer)] {
            s += &format!("[clusters.{table}]\n");
            for (k, v) in map {
                s += &format!("\"{k}\" = \"{v}\"\n");
            }
        }
        s += "\n";
    }
    s
}

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
    let in_flight = std::env::var("DUPLEX_TEST_PRODUCER_IN_FLIGHT").unwrap_or_else(|_| {
        if matches!(c.backend, Backend::Tansu(_)) {
            "1"
        } else {
            "5"
        }
        .to_string()
    });
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &c.bootstrap)
        .set("enable.idempotence", "true")
        .set("max.in.flight.requests.per.connection", &in_flight)
        .set("linger.ms", "2")
        .create()
        .expect("producer");
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
        loop {
            match p.send_result(rec) {
                Ok(d) => break futures.push(d),
                Err((_, back)) => {
                    rec = back;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
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

/// A topic name no other test uses.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}.{:08x}", rand::random::<u32>())
}

/// Waits until `cond` holds, failing with `what` after `timeout`.
pub async fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "waited {timeout:?} for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Like [`wait_until`], for a condition that asks a cluster.
pub async fn wait_until_async<F, Fut>(what: &str, timeout: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !cond().await {
        assert!(Instant::now() < deadline, "waited {timeout:?} for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
