//! Running the engine in the test process, and reading what it committed.

use std::sync::Arc;
use std::time::Duration;

use duplex_sync::metrics::Registry;
use duplex_sync::spec::{EngineSpec, TopicSelection};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, TopicPartitionList};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{TestCluster, wait_until};

/// The engine running in this process.
pub struct Running {
    pub registry: Arc<Registry>,
    pub cancel: CancellationToken,
    pub handle: JoinHandle<Result<(), duplex_sync::SyncError>>,
}

impl Running {
    /// Waits until `flows` flows are registered and each finished a discovery round, so
    /// that a topic created afterwards is found by discovery, not by the first assignment.
    pub async fn wait_discovered(&self, flows: usize) {
        wait_until(
            "every flow's first discovery round",
            Duration::from_secs(30),
            || {
                let e = self.registry.entries();
                e.len() == flows
                    && e.iter().all(|f| {
                        f.metrics
                            .refreshes
                            .load(std::sync::atomic::Ordering::Relaxed)
                            >= 1
                    })
            },
        )
        .await;
    }

    /// The counters of flow `name` (`source->target`), once it is registered.
    pub async fn flow(&self, name: &str) -> Arc<duplex_sync::metrics::FlowMetrics> {
        let find = || {
            self.registry
                .entries()
                .into_iter()
                .find(|e| e.flow == name)
                .map(|e| e.metrics)
        };
        wait_until(
            &format!("flow {name} registered"),
            Duration::from_secs(10),
            || find().is_some(),
        )
        .await;
        find().expect("registered")
    }

    pub async fn stop(self) {
        self.cancel.cancel();
        self.handle.await.expect("engine task").expect("engine");
    }

    pub fn total(&self, f: impl Fn(&duplex_sync::metrics::FlowMetrics) -> u64) -> u64 {
        self.registry.entries().iter().map(|e| f(&e.metrics)).sum()
    }
}

/// A spec over `clusters` with `links`, replicating topics matching `topics`, with
/// short refresh and commit intervals.
pub fn spec(clusters: &[&TestCluster], links: &[[usize; 2]], topics: &str) -> EngineSpec {
    let mut s = EngineSpec::linked(
        clusters.iter().map(|c| c.spec()).collect(),
        links,
        TopicSelection::matching(topics).expect("regex"),
    );
    s.limits.refresh_interval = Duration::from_millis(500);
    s.limits.commit_interval = Duration::from_millis(200);
    s.limits.stall_timeout = Duration::from_secs(5);
    s
}

/// With `DUPLEX_TEST_CONSUMER_DEBUG` set (librdkafka debug contexts for the engine's
/// consumers, e.g. `cgrp,fetch`), the engine's logs and librdkafka's go to stderr.
fn debug_logs() {
    if std::env::var_os("DUPLEX_TEST_CONSUMER_DEBUG").is_some() {
        duplex::telemetry::init_with("info,librdkafka=debug");
    }
}

pub fn run_engine(spec: EngineSpec) -> Running {
    debug_logs();
    let registry = Arc::new(Registry::default());
    let cancel = CancellationToken::new();
    let (r, c) = (registry.clone(), cancel.clone());
    let handle = tokio::spawn(async move { duplex::run::run(&spec, &r, c).await });
    Running {
        registry,
        cancel,
        handle,
    }
}

/// What `group` on `c` has committed for partitions `0..partitions` of `topic`: the
/// offset (`None` when nothing is committed) and the commit metadata.
pub async fn committed(
    c: &TestCluster,
    group: &str,
    topic: &str,
    partitions: i32,
) -> Vec<(Option<i64>, String)> {
    let (bootstrap, group, topic) = (c.bootstrap.clone(), group.to_string(), topic.to_string());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", &group)
            .create()
            .expect("consumer");
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition(&topic, p);
        }
        let got = consumer
            .committed_offsets(tpl, Duration::from_secs(10))
            .expect("committed offsets");
        (0..partitions)
            .map(|p| {
                let e = got.find_partition(&topic, p).expect("partition listed");
                let offset = match e.offset() {
                    rdkafka::Offset::Offset(o) => Some(o),
                    _ => None,
                };
                (offset, e.metadata().to_string())
            })
            .collect()
    })
    .await
    .expect("join")
}

impl Running {
    /// Sum of one counter over all flows.
    pub fn sum(
        &self,
        f: fn(&duplex_sync::metrics::FlowMetrics) -> &std::sync::atomic::AtomicU64,
    ) -> u64 {
        self.total(|m| f(m).load(std::sync::atomic::Ordering::Relaxed))
    }
}

/// Starts the engine in this process and returns it with its handle (pause, resume,
/// topology changes).
pub fn start_engine(spec: EngineSpec) -> (Running, duplex_sync::control::EngineHandle) {
    debug_logs();
    let registry = Arc::new(Registry::default());
    let cancel = CancellationToken::new();
    let started = duplex_sync::engine::start(
        &spec,
        None,
        &registry,
        &std::collections::BTreeSet::new(),
        cancel.clone(),
    );
    let engine = started.handle.clone();
    let handle = tokio::spawn(started.run);
    (
        Running {
            registry,
            cancel,
            handle,
        },
        engine,
    )
}
