//! End-to-end throughput on librdkafka mock clusters, in one process and one run: the
//! raw client rates (produce-only, consume-only) and Duplex's replication rate for the
//! same 1 KiB records, then replication / min(produce, consume), the baseline ratio.
//!
//! Run with `cargo bench --bench e2e_throughput`; `DUPLEX_BENCH_RECORDS` sets the record
//! count. What each phase times, and figures, are in docs/benchmarks.md. This measures
//! and prints; it asserts nothing about time. It fails only when a cluster does not
//! hold what it should, because then the figures would mean nothing.
//!
//! Every timed window starts with the clients connected: librdkafka's start-up stalls
//! (about 0.5 s for an idempotent producer's id, 0.5 s for a consumer assigned at
//! `Offset::Beginning`) would otherwise dominate. The engine's own start-up (clients,
//! metadata, resume scans, assignment) is printed apart.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use duplex::inspect;
use duplex_sync::metrics::Registry;
use duplex_sync::spec::{ClusterSpec, EngineSpec, TopicSelection};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;

#[path = "common/timing.rs"]
mod timing;
use timing::{Timed, Window};

const VALUE_BYTES: usize = 1024;
const DEFAULT_RECORDS: usize = 48_000;
/// The mock keeps only the last 5 MiB of each partition: stay well below with ~1.1 KB
/// per record (value, key, headers, batch overhead, and `duplex.path` on the target).
const RECORDS_PER_PARTITION: usize = 3_000;
const RUNS: usize = 2;
const WARMUP_TOPIC: &str = "bench-warmup";
const TIMEOUT: Duration = Duration::from_secs(300);
const REQUEST: Duration = Duration::from_secs(10);

/// A replication run: from the engine's start, and from the flow's assignment.
#[derive(Debug, Clone, Copy)]
struct Replicated {
    /// Engine start to assignment of every source partition of flow a->b.
    startup: Duration,
    /// Assignment to the last record acknowledged by b.
    assigned: Timed,
    /// Cancel to the engine's return.
    stop: Duration,
}

impl Replicated {
    /// The rate counting the engine's start-up too.
    fn cold_rate(&self) -> f64 {
        self.assigned.records as f64 / (self.startup + self.assigned.elapsed).as_secs_f64()
    }
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes --bench; `cargo test --benches/--all-targets` does not.
    if !std::env::args().skip(1).any(|a| a == "--bench") {
        println!("e2e_throughput: run with cargo bench");
        return Ok(());
    }
    let n: usize = match std::env::var("DUPLEX_BENCH_RECORDS") {
        Ok(v) => v
            .parse()
            .with_context(|| format!("DUPLEX_BENCH_RECORDS={v:?} is not a count"))?,
        Err(_) => DEFAULT_RECORDS,
    };
    ensure!(n >= 1, "DUPLEX_BENCH_RECORDS must be at least 1");
    let partitions = n.div_ceil(RECORDS_PER_PARTITION).max(8) as i32;
    println!(
        "e2e_throughput: {n} records of {VALUE_BYTES} B (key, 2 headers), {partitions} partitions, \
         librdkafka mock clusters in this process, best of {RUNS} runs"
    );

    // Mock clusters are not Send: they stay on this thread, async code runs in block_on.
    let a = MockCluster::new(1).context("start mock cluster a")?;
    let b = MockCluster::new(1).context("start mock cluster b")?;
    let (a_boot, b_boot) = (a.bootstrap_servers(), b.bootstrap_servers());
    a.create_topic(WARMUP_TOPIC, 1, 1)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (mut produced, mut consumed, mut replicated) = (Vec::new(), Vec::new(), Vec::new());
    for run in 1..=RUNS {
        // Each run has its own topic. The produce phase's records are the ones the
        // consume phase reads and the engine replicates (the pre-load on a).
        let topic = format!("bench-run{run}");
        a.create_topic(&topic, partitions, 1)?;
        b.create_topic(&topic, partitions, 1)?;
        let p = rt.block_on(produce(&a_boot, &topic, n, partitions))?;
        let c = consume(&a_boot, &topic, n, partitions, run)?;
        let r = replicate(&rt, &a_boot, &b_boot, &topic, n, partitions)?;
        println!(
            "run {run}: produce {:>7.0}/s  consume {:>7.0}/s  replication {:>7.0}/s  \
             (engine start-up {:.0} ms, {:.0}/s counting it; engine stop {:.1} s)",
            p.rate(),
            c.rate(),
            r.assigned.rate(),
            r.startup.as_secs_f64() * 1e3,
            r.cold_rate(),
            r.stop.as_secs_f64(),
        );
        produced.push(p);
        consumed.push(c);
        replicated.push(r);
    }

    let best = |v: &[Timed]| {
        *v.iter()
            .max_by(|x, y| x.rate().total_cmp(&y.rate()))
            .expect("RUNS >= 1")
    };
    let rep = *replicated
        .iter()
        .max_by(|x, y| x.assigned.rate().total_cmp(&y.assigned.rate()))
        .expect("RUNS >= 1");
    let (p, c, r) = (best(&produced), best(&consumed), rep.assigned);
    println!();
    println!(
        "{:<12} {:>8} {:>8} {:>10} {:>7} {:>6}",
        "best run", "records", "seconds", "records/s", "MiB/s", "cores"
    );
    for (name, t) in [("produce", p), ("consume", c), ("replication", r)] {
        println!(
            "{name:<12} {:>8} {:>8.3} {:>10.0} {:>7.1} {:>6}",
            t.records,
            t.elapsed.as_secs_f64(),
            t.rate(),
            t.mib(VALUE_BYTES),
            t.cores(),
        );
    }
    println!(
        "(MiB/s counts the 1 KiB values only; cores: process CPU time / wall time, of {})",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "engine start-up to assignment: {:.0} ms; with it replication runs at {:.0}/s",
        rep.startup.as_secs_f64() * 1e3,
        rep.cold_rate()
    );
    println!();
    println!(
        "ratio replication / min(produce, consume) = {:.2}",
        r.rate() / p.rate().min(c.rate())
    );
    Ok(())
}

/// Produce-only: `n` records with an idempotent producer (acks=all, the engine's
/// linger), timed from the first send to the last acknowledgement. One record to the
/// warm-up topic first connects the producer and obtains its producer id.
async fn produce(bootstrap: &str, topic: &str, n: usize, partitions: i32) -> anyhow::Result<Timed> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()
        .context("create producer")?;
    producer
        .client()
        .fetch_metadata(Some(topic), REQUEST)
        .context("producer metadata")?;
    producer
        .send(
            FutureRecord::<(), [u8]>::to(WARMUP_TOPIC).payload(b"warm-up".as_slice()),
            REQUEST,
        )
        .await
        .map_err(|(e, _)| e)
        .context("warm-up record")?;

    let value = vec![0x5a_u8; VALUE_BYTES];
    let window = Window::start();
    let mut deliveries = Vec::with_capacity(n);
    for i in 0..n {
        let key = format!("key-{i:010}");
        let trace = format!("{i:016x}");
        let headers = OwnedHeaders::new_with_capacity(2)
            .insert(Header {
                key: "trace-id",
                value: Some(trace.as_bytes()),
            })
            .insert(Header {
                key: "source",
                value: Some(b"bench".as_slice()),
            });
        let mut record = FutureRecord::to(topic)
            .partition(i as i32 % partitions)
            .key(key.as_bytes())
            .payload(value.as_slice())
            .headers(headers);
        loop {
            match producer.send_result(record) {
                Ok(d) => break deliveries.push(d),
                // A full local queue is "not ready": let deliveries drain, try again.
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err((e, _)) => return Err(e).context("enqueue record"),
            }
        }
    }
    for d in deliveries {
        d.await
            .context("delivery future dropped")?
            .map_err(|(e, _)| e)
            .context("produce")?;
    }
    Ok(window.end(n))
}

/// Consume-only: reads the `n` records from every partition's log start, timed from
/// the assignment to the last record. Like a flow, it assigns explicit offsets (with
/// `Offset::Beginning` librdkafka's offset lookup adds about 0.5 s).
fn consume(
    bootstrap: &str,
    topic: &str,
    n: usize,
    partitions: i32,
    run: usize,
) -> anyhow::Result<Timed> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("bench-consume-{run}"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .context("create consumer")?;
    consumer
        .fetch_metadata(Some(topic), REQUEST)
        .context("consumer metadata")?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        let (low, _) = consumer
            .fetch_watermarks(topic, p, REQUEST)
            .context("watermarks")?;
        tpl.add_partition_offset(topic, p, Offset::Offset(low))?;
    }

    let window = Window::start();
    consumer.assign(&tpl).context("assign")?;
    let (mut got, mut bytes) = (0usize, 0usize);
    while got < n {
        ensure!(
            window.wall.elapsed() < TIMEOUT,
            "consume: {got} of {n} records after {TIMEOUT:?}"
        );
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.context("consume")?;
            bytes += m.payload_len() + m.key().map_or(0, <[u8]>::len);
            got += 1;
        }
    }
    let timed = window.end(n);
    std::hint::black_box(bytes);
    Ok(timed)
}

/// Replication: `topic` holds `n` records on `a` and none on `b`. Starts the engine with
/// one link a–b and times flow a->b from the assignment of all its source partitions
/// to the `n`-th record acknowledged by `b`. Then stops the engine and checks that `b`
/// holds exactly `n` and nothing went back to `a`.
fn replicate(
    rt: &Runtime,
    a: &str,
    b: &str,
    topic: &str,
    n: usize,
    partitions: i32,
) -> anyhow::Result<Replicated> {
    let spec = EngineSpec::linked(
        vec![ClusterSpec::new("a", a), ClusterSpec::new("b", b)],
        &[[0, 1]],
        TopicSelection::matching(topic)?,
    );
    let replicated = rt.block_on(async {
        let registry = Arc::new(Registry::default());
        let cancel = CancellationToken::new();
        let start = Instant::now();
        let engine = {
            let (registry, cancel) = (registry.clone(), cancel.clone());
            tokio::spawn(async move { duplex::run::run(&spec, &registry, cancel).await })
        };
        let watched = watch(&registry, start, n, partitions).await;
        let stopping = Instant::now();
        cancel.cancel();
        engine.await?.context("engine")?;
        let (startup, assigned) = watched?;
        anyhow::Ok(Replicated {
            startup,
            assigned,
            stop: stopping.elapsed(),
        })
    })?;
    let (on_a, on_b) = (
        inspect::count(a, topic, REQUEST)?,
        inspect::count(b, topic, REQUEST)?,
    );
    ensure!(
        on_a == n as i64 && on_b == n as i64,
        "after replication {topic} holds {on_a} records on a and {on_b} on b, expected {n} on each"
    );
    Ok(replicated)
}

/// Polls flow a->b's counters every millisecond until `n` records are acknowledged.
/// Returns the engine's start-up (to the assignment of all `partitions`) and the
/// window from the assignment to the `n`-th acknowledgement.
async fn watch(
    registry: &Registry,
    start: Instant,
    n: usize,
    partitions: i32,
) -> anyhow::Result<(Duration, Timed)> {
    let mut assigned: Option<Window> = None;
    loop {
        let entries = registry.entries();
        if let Some(e) = entries.iter().find(|e| e.metrics.last_error().is_some()) {
            let error = e.metrics.last_error().unwrap_or_default();
            bail!("flow {} failed: {error}", e.flow);
        }
        let ab = entries
            .iter()
            .find(|e| e.flow == "a->b")
            .map(|e| &e.metrics);
        let forwarded = ab.map_or(0, |m| m.forwarded.load(Relaxed));
        if assigned.is_none()
            && ab.is_some_and(|m| m.partitions.load(Relaxed) >= i64::from(partitions))
        {
            assigned = Some(Window::start());
        }
        if let Some(w) = assigned.as_ref().filter(|_| forwarded >= n as u64) {
            return Ok((w.wall - start, w.end(n)));
        }
        ensure!(
            start.elapsed() < TIMEOUT,
            "replication: {forwarded} of {n} records after {TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
