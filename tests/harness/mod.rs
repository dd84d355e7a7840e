//! The test-broker harness (DESIGN.md "Test brokers"): one API over librdkafka's mock
//! cluster in-process, Tansu processes over TCP, and external clusters named by
//! environment variables. Producing records and checking what each cluster holds in
//! `records.rs`; running the engine in `engine.rs`.
#![allow(dead_code)]

pub mod browser;
mod engine;
pub mod groups;
pub mod process;
mod records;
pub mod service;
pub mod tansu;
pub mod verify;
mod watchdog;

// Each test binary uses some of these.
#[allow(unused_imports)]
pub use engine::{Running, committed, run_engine, spec, start_engine};
#[allow(unused_imports)]
pub use records::*;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use duplex::inspect;
use duplex_sync::spec::ClusterSpec;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

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
    watchdog::install();
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
    watchdog::install();
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
