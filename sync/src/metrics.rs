//! Per-flow counters and gauges, rendered as Prometheus text. No HTTP here: the
//! service serves [`Registry::render`] at `/metrics`.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

/// Counters of one flow. All updates are relaxed atomics: cheap on the hot path.
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
    /// Sum of replication latencies (ack time minus record timestamp), ms.
    pub latency_ms_sum: AtomicU64,
    /// Number of latencies summed.
    pub latency_count: AtomicU64,
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
    /// Registers a flow and returns its counters.
    pub fn flow(&self, link: &str, source: &str, target: &str) -> Arc<FlowMetrics> {
        let m = Arc::new(FlowMetrics::default());
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

    /// Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        type Get = fn(&FlowMetrics) -> i64;
        let series: [(&str, &str, &str, Get); 26] = [
            (
                "duplex_records_forwarded_total",
                "counter",
                "Records written to the target and acknowledged.",
                |m| m.forwarded.load(Relaxed) as i64,
            ),
            (
                "duplex_bytes_forwarded_total",
                "counter",
                "Bytes (key, value, headers) written and acknowledged.",
                |m| m.forwarded_bytes.load(Relaxed) as i64,
            ),
            (
                "duplex_records_not_forwarded_total",
                "counter",
                "Records left to another flow by routing.",
                |m| m.not_forwarded.load(Relaxed) as i64,
            ),
            (
                "duplex_records_loop_stopped_total",
                "counter",
                "Records stopped because the target is on their hop path.",
                |m| m.loop_stopped.load(Relaxed) as i64,
            ),
            (
                "duplex_records_deferred_total",
                "counter",
                "Records passed over while a topology change settles, read again once the target holds what comes before them.",
                |m| m.deferred.load(Relaxed) as i64,
            ),
            (
                "duplex_records_already_held_total",
                "counter",
                "Records read again after a topology change that the target already held.",
                |m| m.already_held.load(Relaxed) as i64,
            ),
            (
                "duplex_source_gap_records_total",
                "counter",
                "Records deleted on the source before the flow read them.",
                |m| m.source_gap_records.load(Relaxed) as i64,
            ),
            (
                "duplex_target_lost_records_total",
                "counter",
                "Source offsets sent again because the target lost them (truncated or recreated).",
                |m| m.target_lost_records.load(Relaxed) as i64,
            ),
            (
                "duplex_flow_restarts_total",
                "counter",
                "Restarts of the flow after a retriable error.",
                |m| m.restarts.load(Relaxed) as i64,
            ),
            (
                "duplex_flow_lag_records",
                "gauge",
                "Records on the source not yet read by the flow.",
                |m| m.lag.load(Relaxed),
            ),
            (
                "duplex_flow_lag_unknown_partitions",
                "gauge",
                "Partitions whose lag is not known (no statistics, no committed position, or the flow not running); while above 0 the lag is a lower bound.",
                |m| m.lag_unknown.load(Relaxed),
            ),
            (
                "duplex_flow_discovery_rounds_total",
                "counter",
                "Topic-discovery rounds the flow completed.",
                |m| m.refreshes.load(Relaxed) as i64,
            ),
            (
                "duplex_flow_partitions_waiting",
                "gauge",
                "Selected partitions not started yet: being started, waiting for a retry (the last error says why), or for an earlier run's deliveries.",
                |m| m.partitions_waiting.load(Relaxed),
            ),
            (
                "duplex_flow_target_topics_wider",
                "gauge",
                "Topics whose target has more partitions than the source: the extra partitions receive nothing from this flow (the log names the topics).",
                |m| m.wider_targets.lock().expect("metrics lock").len() as i64,
            ),
            (
                "duplex_flow_resume_scanned_records_total",
                "counter",
                "Target records read to find where partitions resume (resume scans): from the checkpoint's target offset on, and none at a first start while the start markers can be used (docs/delivery.md, First start).",
                |m| m.resume_scanned_records.load(Relaxed) as i64,
            ),
            (
                "duplex_flow_source_topics_deleted",
                "gauge",
                "Topics the flow replicated that the source deleted: their replication stopped, and the target keeps them (Duplex never deletes a topic; the log names them).",
                |m| m.deleted_sources.lock().expect("metrics lock").len() as i64,
            ),
            (
                "duplex_flow_topic_config_changes_total",
                "counter",
                "Topic settings (keys) the flow set or removed on the target to match the topic's owner cluster.",
                |m| m.topic_config_changes.load(Relaxed) as i64,
            ),
            (
                "duplex_flow_topic_config_errors_total",
                "counter",
                "Failed attempts to read or change topic settings, each tried again at the next refresh (the log says why).",
                |m| m.topic_config_errors.load(Relaxed) as i64,
            ),
            (
                "duplex_flow_acls_created_total",
                "counter",
                "READ and DESCRIBE topic ACLs the flow created on the target (ACL sync, off by default).",
                |m| m.acls_created.load(Relaxed) as i64,
            ),
            (
                "duplex_flow_acl_errors_total",
                "counter",
                "Failed ACL sync rounds, each tried again at the next refresh (the log says why).",
                |m| m.acl_errors.load(Relaxed) as i64,
            ),
            (
                "duplex_flow_partitions_held",
                "gauge",
                "Partitions whose reading waits because the target has not acknowledged half of the in-flight budget of their records; the other partitions carry on.",
                |m| m.partitions_held.load(Relaxed),
            ),
            (
                "duplex_flow_assignment_errors_total",
                "counter",
                "Failed attempts to list source topics or start partitions, each retried without a flow restart.",
                |m| m.assignment_errors.load(Relaxed) as i64,
            ),
            (
                "duplex_flow_partitions",
                "gauge",
                "Partitions the flow replicates.",
                |m| m.partitions.load(Relaxed),
            ),
            (
                "duplex_flow_up",
                "gauge",
                "1 while the flow runs, 0 after it stopped on an error.",
                |m| m.up.load(Relaxed),
            ),
            (
                "duplex_replication_latency_ms_sum",
                "counter",
                "Sum of ack time minus record timestamp, ms.",
                |m| m.latency_ms_sum.load(Relaxed) as i64,
            ),
            (
                "duplex_replication_latency_ms_count",
                "counter",
                "Records in the latency sum.",
                |m| m.latency_count.load(Relaxed) as i64,
            ),
        ];
        let entries = self.entries();
        let mut out = String::new();
        for (name, kind, help, get) in series {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for e in &entries {
                let _ = writeln!(
                    out,
                    "{name}{{flow=\"{}\",link=\"{}\"}} {}",
                    e.flow,
                    e.link,
                    get(&e.metrics)
                );
            }
        }
        out
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
        assert_eq!(text.matches("# TYPE").count(), 26);
    }
}
