//! Per-flow counters, gauges and the replication-latency histogram, rendered in the
//! OpenMetrics text format by the Prometheus project's Rust client (`prometheus-client`),
//! which does the escaping and the histogram's buckets. No HTTP here: the service serves
//! [`Registry::render`] at `/metrics` with [`CONTENT_TYPE`].

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;

/// The content type of [`Registry::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds of the latency histogram's buckets, in seconds: 1 ms to 1 min, finer
/// from 10 to 100 ms, where a healthy flow's tail lies (a p99 goal of 20 ms needs the
/// buckets around it to tell 25 from 45 ms).
pub const LATENCY_BUCKETS: [f64; 19] = [
    0.001, 0.002, 0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
    20.0, 30.0, 60.0,
];

/// Replication latency of one flow: from a record's timestamp on the source to the
/// target's acknowledgement, in seconds (`duplex_replication_latency_seconds`).
#[derive(Debug, Clone)]
pub struct Latency(pub Histogram);

impl Default for Latency {
    fn default() -> Self {
        Latency(Histogram::new(LATENCY_BUCKETS))
    }
}

/// Counters of one flow. All updates are relaxed atomics, cheap on the hot path, but
/// the latency histogram's (one uncontended lock, on the producer's delivery thread).
#[derive(Debug, Default)]
pub struct FlowMetrics {
    /// Records written to the target and acknowledged.
    pub forwarded: AtomicU64,
    /// Bytes (key + value + headers) of those records.
    pub forwarded_bytes: AtomicU64,
    /// Records another flow carries (routing).
    pub not_forwarded: AtomicU64,
    /// Records stopped by the hop-path guard.
    pub loop_stopped: AtomicU64,
    /// Records passed over while a topology change settles, to be read again once the
    /// target holds what comes before them (docs/topology-changes.md).
    pub deferred: AtomicU64,
    /// Records read again after such a change that the target already held (its origin
    /// marks), passed over.
    pub already_held: AtomicU64,
    /// Records behind the source's end, from the consumer's statistics, summed over
    /// the partitions whose lag is known.
    pub lag: AtomicI64,
    /// Partitions whose lag is not known (no statistics yet, no committed position, or
    /// the flow not running): while above 0, `lag` is a lower bound.
    pub lag_unknown: AtomicI64,
    /// Replication latencies (ack time minus record timestamp).
    pub latency: Latency,
    /// Times the flow was restarted after a retriable error.
    pub restarts: AtomicU64,
    /// Target records read by resume scans (where to start each partition).
    pub resume_scanned_records: AtomicU64,
    /// 1 while the flow runs, 0 once it stopped on an error.
    pub up: AtomicI64,
    /// Partitions currently replicated.
    pub partitions: AtomicI64,
    /// Selected partitions not started yet: being started, waiting for a retry, or for
    /// an earlier run's deliveries (assign.rs).
    pub partitions_waiting: AtomicI64,
    /// Partitions whose reading is paused because the target has not acknowledged their
    /// share of the in-flight budget (acker.rs).
    pub partitions_held: AtomicI64,
    /// Failed attempts to list the source's topics or to start partitions; each is
    /// retried without restarting the flow.
    pub assignment_errors: AtomicU64,
    /// Topic-discovery rounds completed (the first assignment included).
    pub refreshes: AtomicU64,
    /// Records the source deleted (retention) before the flow read them.
    pub source_gap_records: AtomicU64,
    /// Source offsets read again because the target lost what the flow had written
    /// there (truncated or recreated below the checkpoint).
    pub target_lost_records: AtomicU64,
    /// The last error that stopped or restarted the flow, for operators and tests.
    pub last_error: Mutex<Option<String>>,
    /// Topic settings (keys) the flow set or removed on the target to match the owner's.
    pub topic_config_changes: AtomicU64,
    /// Failed attempts to read or change topic settings, each tried again at the next
    /// refresh.
    pub topic_config_errors: AtomicU64,
    /// ACL bindings the flow created on the target (ACL sync).
    pub acls_created: AtomicU64,
    /// Failed ACL sync rounds, each tried again at the next refresh.
    pub acl_errors: AtomicU64,
    /// Topics whose target has more partitions than the source (their extra partitions
    /// receive nothing from this flow).
    pub wider_targets: Mutex<std::collections::BTreeSet<String>>,
    /// Topics this flow replicated that the source deleted since the process started
    /// (replication of them stopped; the target keeps them). One that comes back and
    /// is replicated again leaves the set.
    pub deleted_sources: Mutex<std::collections::BTreeSet<String>>,
}

impl FlowMetrics {
    /// The last error that stopped or restarted the flow.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().expect("metrics lock").clone()
    }
}

/// One flow's name and counters.
#[derive(Debug, Clone)]
pub struct FlowEntry {
    /// `source->target`.
    pub flow: String,
    /// Link name.
    pub link: String,
    /// The counters.
    pub metrics: Arc<FlowMetrics>,
}

/// All flows' counters.
#[derive(Debug, Default)]
pub struct Registry {
    flows: Mutex<Vec<FlowEntry>>,
}

impl Registry {
    /// Registers a flow and returns its counters. A flow reads as up and of unknown
    /// lag from the moment it is visible here: a reader of the registry (a scrape, a
    /// test) never sees a flow that has not started yet as stopped, nor as caught up.
    pub fn flow(&self, link: &str, source: &str, target: &str) -> Arc<FlowMetrics> {
        let m = Arc::new(FlowMetrics::default());
        m.up.store(1, Relaxed);
        m.lag_unknown.store(1, Relaxed);
        let entry = FlowEntry {
            flow: format!("{source}->{target}"),
            link: link.to_string(),
            metrics: m.clone(),
        };
        self.flows.lock().expect("metrics lock").push(entry);
        m
    }

    /// Forgets a flow that no longer runs (a removed link's, once retired).
    pub fn forget(&self, metrics: &Arc<FlowMetrics>) {
        self.flows
            .lock()
            .expect("metrics lock")
            .retain(|e| !Arc::ptr_eq(&e.metrics, metrics));
    }

    /// A snapshot of the registered flows.
    pub fn entries(&self) -> Vec<FlowEntry> {
        self.flows.lock().expect("metrics lock").clone()
    }

    /// Every flow's series in the OpenMetrics text format ([`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(Snapshot(self.entries())));
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}

type Get = fn(&FlowMetrics) -> i64;

/// Every series but the histogram: name (a counter's without `_total`, which the
/// encoder appends), type, help, value.
const SERIES: [(&str, MetricType, &str, Get); 24] = [
    (
        "duplex_records_forwarded",
        MetricType::Counter,
        "Records written to the target and acknowledged.",
        |m| m.forwarded.load(Relaxed) as i64,
    ),
    (
        "duplex_bytes_forwarded",
        MetricType::Counter,
        "Bytes (key, value, headers) written and acknowledged.",
        |m| m.forwarded_bytes.load(Relaxed) as i64,
    ),
    (
        "duplex_records_not_forwarded",
        MetricType::Counter,
        "Records left to another flow by routing.",
        |m| m.not_forwarded.load(Relaxed) as i64,
    ),
    (
        "duplex_records_loop_stopped",
        MetricType::Counter,
        "Records stopped because the target is on their hop path.",
        |m| m.loop_stopped.load(Relaxed) as i64,
    ),
    (
        "duplex_records_deferred",
        MetricType::Counter,
        "Records passed over while a topology change settles, read again once the target holds what comes before them.",
        |m| m.deferred.load(Relaxed) as i64,
    ),
    (
        "duplex_records_already_held",
        MetricType::Counter,
        "Records read again after a topology change that the target already held.",
        |m| m.already_held.load(Relaxed) as i64,
    ),
    (
        "duplex_source_gap_records",
        MetricType::Counter,
        "Records deleted on the source before the flow read them.",
        |m| m.source_gap_records.load(Relaxed) as i64,
    ),
    (
        "duplex_target_lost_records",
        MetricType::Counter,
        "Source offsets sent again because the target lost them (truncated or recreated).",
        |m| m.target_lost_records.load(Relaxed) as i64,
    ),
    (
        "duplex_flow_restarts",
        MetricType::Counter,
        "Restarts of the flow after a retriable error.",
        |m| m.restarts.load(Relaxed) as i64,
    ),
    (
        "duplex_flow_lag_records",
        MetricType::Gauge,
        "Records on the source not yet read by the flow.",
        |m| m.lag.load(Relaxed),
    ),
    (
        "duplex_flow_lag_unknown_partitions",
        MetricType::Gauge,
        "Partitions whose lag is not known (no statistics, no committed position, or the flow not running); while above 0 the lag is a lower bound.",
        |m| m.lag_unknown.load(Relaxed),
    ),
    (
        "duplex_flow_discovery_rounds",
        MetricType::Counter,
        "Topic-discovery rounds the flow completed.",
        |m| m.refreshes.load(Relaxed) as i64,
    ),
    (
        "duplex_flow_partitions_waiting",
        MetricType::Gauge,
        "Selected partitions not started yet: being started, waiting for a retry (the last error says why), or for an earlier run's deliveries.",
        |m| m.partitions_waiting.load(Relaxed),
    ),
    (
        "duplex_flow_target_topics_wider",
        MetricType::Gauge,
        "Topics whose target has more partitions than the source: the extra partitions receive nothing from this flow (the log names the topics).",
        |m| m.wider_targets.lock().expect("metrics lock").len() as i64,
    ),
    (
        "duplex_flow_resume_scanned_records",
        MetricType::Counter,
        "Target records read to find where partitions resume (resume scans): from the checkpoint's target offset on, and none at a first start while the start markers can be used (docs/delivery.md, First start).",
        |m| m.resume_scanned_records.load(Relaxed) as i64,
    ),
    (
        "duplex_flow_source_topics_deleted",
        MetricType::Gauge,
        "Topics the flow replicated that the source deleted: their replication stopped, and the target keeps them (Duplex never deletes a topic; the log names them).",
        |m| m.deleted_sources.lock().expect("metrics lock").len() as i64,
    ),
    (
        "duplex_flow_topic_config_changes",
        MetricType::Counter,
        "Topic settings (keys) the flow set or removed on the target to match the topic's owner cluster.",
        |m| m.topic_config_changes.load(Relaxed) as i64,
    ),
    (
        "duplex_flow_topic_config_errors",
        MetricType::Counter,
        "Failed attempts to read or change topic settings, each tried again at the next refresh (the log says why).",
        |m| m.topic_config_errors.load(Relaxed) as i64,
    ),
    (
        "duplex_flow_acls_created",
        MetricType::Counter,
        "READ and DESCRIBE topic ACLs the flow created on the target (ACL sync, off by default).",
        |m| m.acls_created.load(Relaxed) as i64,
    ),
    (
        "duplex_flow_acl_errors",
        MetricType::Counter,
        "Failed ACL sync rounds, each tried again at the next refresh (the log says why).",
        |m| m.acl_errors.load(Relaxed) as i64,
    ),
    (
        "duplex_flow_partitions_held",
        MetricType::Gauge,
        "Partitions whose reading waits because the target has not acknowledged half of the in-flight budget of their records; the other partitions carry on.",
        |m| m.partitions_held.load(Relaxed),
    ),
    (
        "duplex_flow_assignment_errors",
        MetricType::Counter,
        "Failed attempts to list source topics or start partitions, each retried without a flow restart.",
        |m| m.assignment_errors.load(Relaxed) as i64,
    ),
    (
        "duplex_flow_partitions",
        MetricType::Gauge,
        "Partitions the flow replicates.",
        |m| m.partitions.load(Relaxed),
    ),
    (
        "duplex_flow_up",
        MetricType::Gauge,
        "1 while the flow runs, 0 after it stopped on an error.",
        |m| m.up.load(Relaxed),
    ),
];

/// The flows at one scrape.
#[derive(Debug)]
struct Snapshot(Vec<FlowEntry>);

impl prometheus_client::collector::Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let labels = |e: &FlowEntry| [("flow", e.flow.clone()), ("link", e.link.clone())];
        for (name, kind, help, get) in SERIES {
            let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
            for e in &self.0 {
                let labels = labels(e);
                let family = metric.encode_family(&labels)?;
                let v = get(&e.metrics);
                match kind {
                    MetricType::Counter => ConstCounter::new(v.max(0) as u64).encode(family)?,
                    _ => ConstGauge::new(v).encode(family)?,
                }
            }
        }
        let mut metric = encoder.encode_descriptor(
            "duplex_replication_latency_seconds",
            "From a record's timestamp on the source to the target's acknowledgement.",
            None,
            MetricType::Histogram,
        )?;
        for e in &self.0 {
            let labels = labels(e);
            e.metrics.latency.0.encode(metric.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_series_per_flow() {
        let r = Registry::default();
        let m = r.flow("a-b", "a", "b");
        m.forwarded.fetch_add(3, Relaxed);
        r.flow("a-b", "b", "a");
        let text = r.render();
        assert!(text.contains("duplex_records_forwarded_total{flow=\"a->b\",link=\"a-b\"} 3"));
        assert!(text.contains("duplex_records_forwarded_total{flow=\"b->a\",link=\"a-b\"} 0"));
        assert_eq!(text.matches("# TYPE").count(), 25);
        // Counters carry _total, the histogram its buckets, escaping is the encoder's.
        assert!(text.contains("# TYPE duplex_records_forwarded counter"));
        m.latency.0.observe(0.004);
        let text = r.render();
        assert!(text.contains(
            "duplex_replication_latency_seconds_bucket{le=\"0.005\",flow=\"a->b\",link=\"a-b\"} 1"
        ) || text.contains(
            "duplex_replication_latency_seconds_bucket{flow=\"a->b\",link=\"a-b\",le=\"0.005\"} 1"
        ), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }

    /// A flow is visible to scrapes from the moment it is registered, before the
    /// engine has started it: it must read as up and of unknown lag then, never as a
    /// stopped flow or one caught up (a CI run caught a test seeing lag 0, unknown 0).
    #[test]
    fn a_flow_just_registered_reads_as_up_and_of_unknown_lag() {
        let r = Registry::default();
        r.flow("a-b", "a", "b");
        let seen = &r.entries()[0].metrics;
        assert_eq!(seen.up.load(Relaxed), 1);
        assert_eq!(seen.lag.load(Relaxed), 0);
        assert_eq!(seen.lag_unknown.load(Relaxed), 1);
        let text = r.render();
        assert!(
            text.contains("duplex_flow_lag_unknown_partitions{flow=\"a->b\",link=\"a-b\"} 1"),
            "{text}"
        );
    }
}
