//! librdkafka client configurations for flows: the settings Duplex's guarantees rest on,
//! with the operator's options layered in between.
//!
//! Order of precedence, lowest first: Duplex defaults, `options` of the cluster, the
//! `producer`/`consumer` overrides, then the settings rule 3 depends on, which cannot be
//! overridden (idempotence, gapless guarantee, acks=all, manual offset storage).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::ToBytes;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};

use crate::spec::ClusterSpec;

mod closing;
pub use closing::Closing;

fn base(
    cluster: &ClusterSpec,
    defaults: &[(&str, String)],
    role: &BTreeMap<String, String>,
) -> ClientConfig {
    let mut c = ClientConfig::new();
    for (k, v) in defaults {
        c.set(*k, v);
    }
    for (k, v) in cluster.options.iter().chain(role) {
        c.set(k, v);
    }
    c.set("bootstrap.servers", &cluster.bootstrap_servers);
    c
}

/// Producer that writes a flow's records to its target.
pub fn producer(cluster: &ClusterSpec, client_id: &str, in_flight_bytes: usize) -> ClientConfig {
    // The local queue holds at least what the flow may have in flight.
    let queue_kb = (in_flight_bytes / 1024 + 1024).min(2_097_151);
    let defaults = [
        ("client.id", client_id.to_string()),
        ("linger.ms", "5".to_string()),
        ("queue.buffering.max.kbytes", queue_kb.to_string()),
        ("queue.buffering.max.messages", "1000000".to_string()),
        ("message.max.bytes", "16777216".to_string()),
        ("statistics.interval.ms", "0".to_string()),
        // Idempotence keeps order with up to 5 requests in flight per connection.
        ("max.in.flight.requests.per.connection", "5".to_string()),
    ];
    let mut c = base(cluster, &defaults, &cluster.producer);
    // Rule 3: each target partition holds a gap-free prefix of what the flow sent, and
    // nothing is dropped for taking long: a record is retried until it lands or is refused.
    c.set("enable.idempotence", "true")
        .set("enable.gapless.guarantee", "true")
        .set("acks", "all")
        .set("message.timeout.ms", "0");
    c
}

/// What a flow's consumer may hold before the reader takes it, derived from the flow's
/// in-flight budget (rule 5; docs/delivery.md, "Memory").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefetch {
    /// `queued.max.messages.kbytes`: a quarter of the budget, at least 1 MiB. librdkafka
    /// fetches no more once its queue holds this much.
    pub queued_kb: usize,
    /// `fetch.max.bytes`: an eighth of the budget, from 1 MiB to librdkafka's default of
    /// 50 MiB. A fetch sent while the queue was below its bound lands whole, so this is
    /// how far the queue can pass it, per source broker.
    pub fetch_max_bytes: usize,
}

impl Prefetch {
    pub fn for_budget(in_flight_bytes: usize) -> Prefetch {
        const MIB: usize = 1 << 20;
        Prefetch {
            queued_kb: (in_flight_bytes / 4 / 1024).clamp(1024, 2_097_151),
            fetch_max_bytes: (in_flight_bytes / 8).clamp(MIB, 50 * MIB),
        }
    }
}

/// `fetch.max.bytes` of `want`, raised to the consumer's `message.max.bytes` where the
/// operator set that higher: librdkafka refuses to create a consumer whose explicit
/// `fetch.max.bytes` is below it.
fn fetch_max_bytes(cluster: &ClusterSpec, want: usize) -> usize {
    let message_max = cluster
        .consumer
        .get("message.max.bytes")
        .or_else(|| cluster.options.get("message.max.bytes"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    want.max(message_max)
}

/// Consumer that reads a flow's source and commits its checkpoints to `group_id`.
pub fn consumer(
    cluster: &ClusterSpec,
    client_id: &str,
    group_id: &str,
    in_flight_bytes: usize,
) -> ClientConfig {
    let prefetch = Prefetch::for_budget(in_flight_bytes);
    let defaults = [
        ("client.id", client_id.to_string()),
        ("queued.max.messages.kbytes", prefetch.queued_kb.to_string()),
        (
            "fetch.max.bytes",
            fetch_max_bytes(cluster, prefetch.fetch_max_bytes).to_string(),
        ),
        // librdkafka waits 1 s by default before fetching again once the prefetch queue
        // is full; with a backlog larger than the budget that halves throughput
        // (docs/benchmarks.md).
        ("fetch.queue.backoff.ms", "10".to_string()),
        ("statistics.interval.ms", "5000".to_string()),
        // Records of aborted or open transactions on the source are not replicated.
        // Overridable for brokers whose last stable offset misbehaves (docs/testing.md).
        ("isolation.level", "read_committed".to_string()),
    ];
    let mut c = base(cluster, &defaults, &cluster.consumer);
    c.set("group.id", group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // A position outside the partition is an error the flow handles, never a silent
        // jump: to the log start it would hide records lost to retention, and on a
        // truncated or recreated partition it would replicate new records under old
        // origin positions (docs/delivery.md).
        .set("auto.offset.reset", "error")
        .set("allow.auto.create.topics", "false")
        .set("enable.partition.eof", "false");
    c
}

/// Consumer that scans a target partition to find where a flow got to. No group.
///
/// It reads uncommitted: the flow's own records are never transactional, and an open
/// transaction of another producer on the target must not hide them (a scan that
/// stopped at the last stable offset would resume too early and write duplicates).
pub fn scanner(cluster: &ClusterSpec, client_id: &str) -> ClientConfig {
    // Small fetches: a scan reads a window of a partition, and a broker that reads one
    // record at a time (Tansu) answers a default 50 MiB fetch too slowly for the scan's
    // no-progress timeout.
    let defaults = [
        ("client.id", client_id.to_string()),
        (
            "fetch.max.bytes",
            fetch_max_bytes(cluster, 1 << 20).to_string(),
        ),
        ("max.partition.fetch.bytes", "262144".to_string()),
    ];
    let mut c = base(cluster, &defaults, &cluster.consumer);
    c.remove("group.id");
    // A scan reads a bounded range and stops at its end: do not long-poll there.
    c.set("fetch.wait.max.ms", "10");
    c.set("group.id", format!("{client_id}.unused"))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("isolation.level", "read_uncommitted")
        .set("allow.auto.create.topics", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest");
    c
}

/// Consumer that acts for an application's consumer group in offset translation and
/// group sync: reads partitions read_committed as the group sees them, reads and commits
/// the group's offsets, never subscribes (so it never joins the group).
pub fn group_reader(cluster: &ClusterSpec, client_id: &str, group_id: &str) -> ClientConfig {
    let defaults = [
        ("client.id", client_id.to_string()),
        ("fetch.max.bytes", "4194304".to_string()),
        ("max.partition.fetch.bytes", "1048576".to_string()),
        // Once the prefetch queue is full librdkafka waits 1 s by default before it
        // fetches again; a reader slower than the fetcher would idle that long.
        ("fetch.queue.backoff.ms", "10".to_string()),
    ];
    let mut c = base(cluster, &defaults, &cluster.consumer);
    c.set("group.id", group_id)
        .set("fetch.wait.max.ms", "10")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("isolation.level", "read_committed")
        .set("allow.auto.create.topics", "false")
        .set("enable.partition.eof", "true")
        // A range that starts below the log start is an error, never a jump.
        .set("auto.offset.reset", "error");
    c
}

/// Producer of a flow's start markers (starts.rs) on its target: a few records when
/// partitions start, acknowledged by every in-sync replica. Not idempotent: a marker
/// written twice is the same marker.
pub fn marker_producer(cluster: &ClusterSpec, client_id: &str) -> ClientConfig {
    let defaults = [
        ("client.id", client_id.to_string()),
        ("linger.ms", "0".to_string()),
    ];
    let mut c = base(cluster, &defaults, &cluster.producer);
    // A marker written to a topic deleted meanwhile must fail, not create it with the
    // broker's defaults (which would delete markers by time).
    c.set("acks", "all")
        .set("enable.idempotence", "false")
        .set("allow.auto.create.topics", "false");
    c
}

/// Admin client (topic creation on the target, configs of the source).
pub fn admin(cluster: &ClusterSpec, client_id: &str) -> ClientConfig {
    let defaults = [("client.id", client_id.to_string())];
    base(cluster, &defaults, &BTreeMap::new())
}

/// What Duplex says instead of librdkafka's CONFWARN about the gapless guarantee.
pub const GAPLESS_WHY: &str = "Flow producers set enable.gapless.guarantee (librdkafka calls \
it experimental): a failed batch that could leave a gap in a target partition stops the \
flow's producer with an error instead of letting later records land after the gap; the \
flow restarts and resumes from what the target holds (docs/delivery.md).";

/// Whether a librdkafka log line is its warning about the gapless guarantee.
pub fn is_gapless_warning(fac: &str, message: &str) -> bool {
    fac == "CONFWARN" && message.contains("enable.gapless.guarantee")
}

/// Logs a line of a flow producer's librdkafka as rdkafka would (target `librdkafka`),
/// except its warning that `enable.gapless.guarantee` is experimental, which every
/// producer logs as it is created: Duplex says once per process, in its own words, why
/// it sets it ([`GAPLESS_WHY`]).
pub fn log_flow_producer(level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
    use rdkafka::config::RDKafkaLogLevel as L;
    if is_gapless_warning(fac, message) {
        static SAID: std::sync::Once = std::sync::Once::new();
        SAID.call_once(|| tracing::info!("{GAPLESS_WHY}"));
        return;
    }
    match level {
        L::Emerg | L::Alert | L::Critical | L::Error => {
            tracing::error!(target: "librdkafka", "librdkafka: {fac} {message}")
        }
        L::Warning => tracing::warn!(target: "librdkafka", "librdkafka: {fac} {message}"),
        L::Notice | L::Info => tracing::info!(target: "librdkafka", "librdkafka: {fac} {message}"),
        L::Debug => tracing::debug!(target: "librdkafka", "librdkafka: {fac} {message}"),
    }
}

/// Enqueues `record` on `producer`. A full local queue is waited out (its deliveries
/// drain it) for up to `patience`; then, or on any other error, the error is returned.
/// The start markers, the demo's writer and the tests' and benches' writers share it.
pub async fn enqueue<K: ToBytes + ?Sized, P: ToBytes + ?Sized>(
    producer: &FutureProducer,
    mut record: FutureRecord<'_, K, P>,
    patience: Duration,
) -> KafkaResult<DeliveryFuture> {
    let began = Instant::now();
    loop {
        match producer.send_result(record) {
            Ok(d) => return Ok(d),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                if began.elapsed() < patience =>
            {
                record = back;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            Err((e, _)) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_gapless_confwarn_is_replaced() {
        assert!(is_gapless_warning(
            "CONFWARN",
            "[thrd:app]: Configuration property enable.gapless.guarantee is experimental: ..."
        ));
        assert!(!is_gapless_warning(
            "CONFWARN",
            "[thrd:app]: Configuration property foo is deprecated"
        ));
        assert!(!is_gapless_warning("FAIL", "enable.gapless.guarantee"));
    }

    #[test]
    fn prefetch_is_a_share_of_the_budget_within_librdkafka_bounds() {
        const MIB: usize = 1 << 20;
        let p = Prefetch::for_budget(64 * MIB);
        assert_eq!((p.queued_kb, p.fetch_max_bytes), (16 * 1024, 8 * MIB));
        // Small budgets keep 1 MiB of each; large ones librdkafka's default fetch.
        let p = Prefetch::for_budget(MIB);
        assert_eq!((p.queued_kb, p.fetch_max_bytes), (1024, MIB));
        let p = Prefetch::for_budget(4096 * MIB);
        assert_eq!((p.queued_kb, p.fetch_max_bytes), (1024 * 1024, 50 * MIB));
        // The operator's consumer options still win.
        let mut cluster = ClusterSpec::new("a", "localhost:9092");
        cluster
            .consumer
            .insert("fetch.max.bytes".into(), "1000000".into());
        let c = consumer(&cluster, "c", "g", 64 * MIB);
        assert_eq!(c.get("fetch.max.bytes"), Some("1000000"));
        assert_eq!(c.get("queued.max.messages.kbytes"), Some("16384"));
    }

    #[test]
    fn consumers_are_created_for_any_budget_and_a_large_message_max() {
        use rdkafka::consumer::BaseConsumer;
        const MIB: usize = 1 << 20;
        let mut big = ClusterSpec::new("a", "localhost:9092");
        big.options
            .insert("message.max.bytes".into(), "16777216".into());
        for cluster in [ClusterSpec::new("a", "localhost:9092"), big] {
            for budget in [0, MIB, 64 * MIB, 4096 * MIB] {
                let made: Result<BaseConsumer, _> = consumer(&cluster, "c", "g", budget).create();
                assert!(made.is_ok(), "budget {budget}: {:?}", made.err());
            }
            let made: Result<BaseConsumer, _> = scanner(&cluster, "s").create();
            assert!(made.is_ok(), "scanner: {:?}", made.err());
        }
    }
}
