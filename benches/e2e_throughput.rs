//! End-to-end throughput, in one run: the raw client rates (produce-only, consume-only),
//! Duplex's replication rate for the same records, and optionally a naive consume ->
//! produce script's (benches/naive/replicate.py), for 1 KiB and 100 B values. Prints
//! replication / min(produce, consume), the CPU each used per MiB, and replication /
//! naive.
//!
//! The two librdkafka mock clusters run in a child process (common/brokers.rs), so that
//! this process's CPU time in a window is the timed client's own: during replication,
//! the engine's. Run with `cargo bench --bench e2e_throughput`; `DUPLEX_BENCH_RECORDS`
//! sets the record count, `DUPLEX_BENCH_VALUE_BYTES` the sizes (`1024,100`),
//! `DUPLEX_BENCH_PYTHON` a python with confluent-kafka for the naive script,
//! `DUPLEX_BENCH_PHASES` which phases run (`throughput,latency,mesh,memory`),
//! `DUPLEX_BENCH_LATENCY_RATE` the latency phase's rate (default: half the replication
//! rate), `DUPLEX_BENCH_LATENCY_SECONDS` how long it writes (default 4), and
//! `DUPLEX_BENCH_CONSUMER` / `DUPLEX_BENCH_PRODUCER` extra librdkafka options for the
//! engine's clients (`key=value,key=value`), to try a setting without a rebuild;
//! `RUST_LOG` prints the engine's logs on stderr. What
//! each phase times, and figures, are in docs/benchmarks.md. This measures and prints; it
//! asserts nothing about time. It fails only when a cluster does not hold what it
//! should, because then the figures would mean nothing.
//!
//! Every timed window starts with the clients connected: librdkafka's start-up stalls
//! (about 0.5 s for an idempotent producer's id, 0.5 s for a consumer assigned at
//! `Offset::Beginning`) would otherwise dominate. The engine's own start-up (clients,
//! metadata, resume scans, assignment) is printed apart.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use duplex::inspect;
use duplex_sync::metrics::{FlowMetrics, Registry};
use duplex_sync::spec::{ClusterSpec, EngineSpec, TopicSelection};
use rdkafka::consumer::{BaseConsumer, Consumer};

use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;

/// The allocator of the `duplex` binary (src/main.rs), so that the engine here runs as
/// it does there.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "common/brokers.rs"]
mod brokers;
#[path = "common/client_options.rs"]
mod client_options;
#[path = "e2e/engine.rs"]
mod engine;
use engine::{engine_run, watch, while_engine_runs};
#[path = "e2e/latency.rs"]
mod latency;
#[path = "common/load.rs"]
mod load;
#[path = "e2e/memory.rs"]
mod memory;
#[path = "e2e/mesh.rs"]
mod mesh;
#[path = "e2e/naive.rs"]
mod naive;
#[path = "e2e/options.rs"]
mod options;
use options::{phases, profile_wait, with_bench_options};
#[path = "common/timing.rs"]
mod timing;
use brokers::Brokers;
use timing::{Timed, Window};

/// Runs per size; each phase reports its median run (this machine's rates vary by up
/// to 2x between runs, so a best run flatters whichever phase had the luckiest one).
const RUNS: usize = 3;
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
    duplex_sync::alloc::tune();
    // The same executable, started again by `Brokers::spawn`, hosts the mock clusters.
    brokers::serve_if_child();
    memory::memory_child_if_asked();
    // The engine's logs (start-up steps, with times) when `RUST_LOG` asks for them.
    if std::env::var_os("RUST_LOG").is_some() {
        duplex::telemetry::init();
    }
    // `cargo bench` passes --bench; `cargo test --benches/--all-targets` does not.
    if !std::env::args().skip(1).any(|a| a == "--bench") {
        println!("e2e_throughput: run with cargo bench");
        return Ok(());
    }
    let records: Option<usize> = match std::env::var("DUPLEX_BENCH_RECORDS") {
        Ok(v) => Some(
            v.parse()
                .with_context(|| format!("DUPLEX_BENCH_RECORDS={v:?} is not a count"))?,
        ),
        Err(_) => None,
    };
    ensure!(
        records != Some(0),
        "DUPLEX_BENCH_RECORDS must be at least 1"
    );
    let sizes: Vec<usize> = match std::env::var("DUPLEX_BENCH_VALUE_BYTES") {
        Ok(v) => v
            .split(',')
            .map(|s| s.trim().parse())
            .collect::<Result<_, _>>()
            .with_context(|| format!("DUPLEX_BENCH_VALUE_BYTES={v:?} is not a list of sizes"))?,
        Err(_) => vec![1024, 100],
    };
    let python = naive::naive_python();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    println!(
        "e2e_throughput: {} a and b, a new pair per run; this process runs only the \
         clients being timed, so its CPU time is theirs. Median of {RUNS} runs per size.",
        Brokers::describe()
    );
    match &python {
        Some(p) => println!(
            "naive baseline: benches/naive/replicate.py with {}",
            p.display()
        ),
        None => println!(
            "naive baseline: skipped (set DUPLEX_BENCH_PYTHON to a python with confluent-kafka)"
        ),
    }
    let phases = phases()?;
    let latency_rate = latency::fixed_rate()?;
    for value_bytes in sizes {
        let n = records.unwrap_or(if value_bytes >= 512 { 200_000 } else { 600_000 });
        let (mut rate, mut limit) = (latency_rate, None);
        if phases.contains(&"throughput") {
            let (replication, raw) = bench_size(&rt, python.as_deref(), value_bytes, n)?;
            rate = rate.or(Some(replication / 2.0));
            limit = Some(raw);
        }
        if phases.contains(&"latency") {
            let rate = rate.context(
                "DUPLEX_BENCH_PHASES has latency without throughput: set \
                 DUPLEX_BENCH_LATENCY_RATE (records/s)",
            )?;
            latency::latency(&rt, value_bytes, rate)?;
        }
        if phases.contains(&"mesh") {
            mesh::mesh(&rt, value_bytes, n, limit)?;
        }
    }
    if phases.contains(&"memory") {
        memory::memory(&rt, records.unwrap_or(200_000))?;
    }
    Ok(())
}

/// Every throughput phase for one record size, `RUNS` times, then the table of the
/// median runs. Returns the median replication rate and min(produce, consume).
fn bench_size(
    rt: &Runtime,
    python: Option<&Path>,
    value_bytes: usize,
    n: usize,
) -> anyhow::Result<(f64, f64)> {
    // The mock keeps only the last 5 MiB of each partition: stay well below, counting
    // key, headers, batch overhead and `duplex.path` on the target.
    let per_partition = 3_300_000 / (value_bytes + 100);
    let partitions = n.div_ceil(per_partition).max(8) as i32;
    println!();
    println!("{n} records of {value_bytes} B (key, 2 headers), {partitions} partitions");
    let (mut produced, mut consumed, mut replicated, mut naive, mut passed) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for run in 1..=RUNS {
        // Each run has its own topic. The produce phase's records are the ones the
        // consume phase reads and the engine and the naive script replicate.
        let topic = format!("bench-{value_bytes}-run{run}");
        let naive_topic = format!("naive-{value_bytes}-run{run}");
        // Fresh brokers per run: the mock keeps every record in memory, and a run on
        // brokers that hold the last run's records was up to twice as slow.
        let mut brokers = Brokers::spawn(2)?;
        let (a_boot, b_boot) = (brokers.bootstrap[0].clone(), brokers.bootstrap[1].clone());
        brokers.create_topic(WARMUP_TOPIC, 1)?;
        brokers.create_topic(&topic, partitions)?;
        brokers.create_topic(&naive_topic, partitions)?;
        let p = rt.block_on(produce(&a_boot, &topic, n, partitions, value_bytes))?;
        let c = consume(&a_boot, &topic, n, partitions, run)?;
        if let Some(wait) = profile_wait() {
            // Time to attach a profiler to this process (docs/benchmarks.md, Profiling).
            println!(
                "replicating in {wait:?}: attach with perf record -g -p {}",
                std::process::id()
            );
            std::thread::sleep(wait);
        }
        let r = replicate(rt, &a_boot, &b_boot, &topic, n, partitions)?;
        let s = match python {
            Some(py) => Some(naive::naive_replicate(
                py,
                &a_boot,
                &b_boot,
                &topic,
                &naive_topic,
                n,
                partitions,
            )?),
            None => None,
        };
        println!(
            "run {run}: produce {:>7.0}/s  consume {:>7.0}/s  replication {:>7.0}/s \
             (engine start-up {:.0} ms, {:.0}/s counting it; stop {:.1} s){}",
            p.rate(),
            c.rate(),
            r.assigned.rate(),
            r.startup.as_secs_f64() * 1e3,
            r.cold_rate(),
            r.stop.as_secs_f64(),
            s.map_or(String::new(), |s| format!("  naive {:>7.0}/s", s.rate())),
        );
        // Passed over, on fresh brokers: b holds copies of a's records.
        let passed_topic = format!("passed-{value_bytes}-run{run}");
        let mut brokers = Brokers::spawn(2)?;
        let (a_boot, b_boot) = (brokers.bootstrap[0].clone(), brokers.bootstrap[1].clone());
        brokers.create_topic(&passed_topic, partitions)?;
        rt.block_on(load::produce(
            &b_boot,
            &passed_topic,
            n,
            partitions,
            value_bytes,
            true,
        ))?;
        let o = pass_over(rt, &a_boot, &b_boot, &passed_topic, n, partitions)?;
        println!("       passed over {:>7.0}/s", o.assigned.rate());
        produced.push(p);
        consumed.push(c);
        replicated.push(r);
        naive.extend(s);
        passed.push(o.assigned);
    }

    let median = |mut v: Vec<Timed>| {
        v.sort_by(|x, y| x.rate().total_cmp(&y.rate()));
        v.get(v.len() / 2).copied()
    };
    replicated.sort_by(|x, y| x.assigned.rate().total_cmp(&y.assigned.rate()));
    let rep = replicated[replicated.len() / 2];
    let (p, c, r) = (
        median(produced).expect("RUNS >= 1"),
        median(consumed).expect("RUNS >= 1"),
        rep.assigned,
    );
    let s = median(naive);
    let o = median(passed);
    println!(
        "{:<12} {:>8} {:>8} {:>10} {:>7} {:>6} {:>14} {:>10}",
        "median run",
        "records",
        "seconds",
        "records/s",
        "MiB/s",
        "cores",
        "MiB/s per core",
        "faults/MiB"
    );
    let rows = [
        ("produce", Some(p)),
        ("consume", Some(c)),
        ("replication", Some(r)),
        ("naive script", s),
        ("passed over", o),
    ];
    for (name, t) in rows {
        let Some(t) = t else { continue };
        let per_core = t
            .cpu
            .filter(|c| !c.is_zero())
            .map_or("-".to_string(), |cpu| {
                format!(
                    "{:.0}",
                    t.mib(value_bytes) * t.elapsed.as_secs_f64() / cpu.as_secs_f64()
                )
            });
        println!(
            "{name:<12} {:>8} {:>8.3} {:>10.0} {:>7.1} {:>6} {per_core:>14} {:>10}",
            t.records,
            t.elapsed.as_secs_f64(),
            t.rate(),
            t.mib(value_bytes),
            t.cores(),
            t.faults_per_mib(value_bytes),
        );
    }
    println!(
        "(MiB/s counts the values only; cores: CPU time of the timed process / wall time, \
         of {}; the brokers' CPU is not counted; faults/MiB: the process's minor page \
         faults, mostly pages the kernel zeroed for it, per MiB of values)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "engine start-up to assignment: {:.0} ms; with it replication runs at {:.0}/s",
        rep.startup.as_secs_f64() * 1e3,
        rep.cold_rate()
    );
    println!(
        "ratio replication / min(produce, consume) = {:.2}",
        r.rate() / p.rate().min(c.rate())
    );
    if let Some(s) = s {
        println!(
            "ratio replication / naive script = {:.2} steady, {:.2} from start",
            r.rate() / s.rate(),
            rep.cold_rate() / s.rate()
        );
    }
    Ok((r.rate(), p.rate().min(c.rate())))
}

/// Produce-only: `n` records with an idempotent producer (acks=all, the engine's
/// linger), timed from the first send to the last acknowledgement. One record to the
/// warm-up topic first connects the producer and obtains its producer id.
async fn produce(
    bootstrap: &str,
    topic: &str,
    n: usize,
    partitions: i32,
    value_bytes: usize,
) -> anyhow::Result<Timed> {
    let producer = warm_producer(bootstrap, topic, "5").await?;

    let value = vec![0x5a_u8; value_bytes];
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
        let record = FutureRecord::to(topic)
            .partition(i as i32 % partitions)
            .key(key.as_bytes())
            .payload(value.as_slice())
            .headers(headers);
        deliveries.push(load::enqueue(&producer, record).await?);
    }
    load::delivered(deliveries).await?;
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
    let replicated = engine_run(
        rt,
        a,
        b,
        topic,
        n,
        partitions,
        "a->b",
        |m| m.forwarded.load(Relaxed),
        None,
    )?;
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

/// Passed over: `topic` holds on b `n` copies of records from a (each with the
/// `duplex.path` flow a->b would have written) and nothing on a. Times flow b->a, which
/// must pass every one over (their origin is its target), from its assignment to the
/// `n`-th record passed. Then a must still hold nothing.
fn pass_over(
    rt: &Runtime,
    a: &str,
    b: &str,
    topic: &str,
    n: usize,
    partitions: i32,
) -> anyhow::Result<Replicated> {
    let passed = engine_run(
        rt,
        a,
        b,
        topic,
        n,
        partitions,
        "b->a",
        |m| {
            m.not_forwarded.load(Relaxed)
                + m.loop_stopped.load(Relaxed)
                + m.deferred.load(Relaxed)
                + m.already_held.load(Relaxed)
        },
        None,
    )?;
    let on_a = inspect::count(a, topic, REQUEST)?;
    ensure!(
        on_a == 0,
        "b->a passed everything over, yet a holds {on_a} records of {topic}"
    );
    Ok(passed)
}

/// An idempotent producer (acks=all, `linger_ms`) with `topic`'s metadata fetched and
/// one record acknowledged on the warm-up topic: connected, with its producer id, so
/// that a timed window does not include librdkafka's start-up.
async fn warm_producer(
    bootstrap: &str,
    topic: &str,
    linger_ms: &str,
) -> anyhow::Result<FutureProducer> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", linger_ms)
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
    Ok(producer)
}
