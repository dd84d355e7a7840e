//! End-to-end verification rate on two clusters (librdkafka mock clusters, or Tansu with
//! `DUPLEX_BENCH_ON=tansu`), in one run:
//! a consume-only baseline (both clusters read to their end offsets, with the verifier's
//! own consumer settings) against `duplex_verifier::run::verify` over the same records,
//! then verify / consume-only, the baseline ratio; a second, resumed verification over
//! the filled store (snapshot and comparison only); and the same records verified by
//! position (`positional`) in a fresh store. The clusters run in other
//! processes (common/brokers.rs), so that the CPU time read here is the reader's own.
//!
//! Run with `cargo bench --bench verify_e2e`; `DUPLEX_BENCH_RECORDS` sets the record
//! count, `DUPLEX_BENCH_CONSUMER` (`key=value,…`) adds librdkafka options to both
//! readers. What each phase times, and figures, are in docs/benchmarks.md. This measures
//! and prints; it asserts nothing about time. It fails when a cluster does not hold what
//! it should or the verification does not say PASS with every record matched, because
//! then the figures would mean nothing.

/// The allocator of the `duplex` binary (src/main.rs), so that the verifier here runs as
/// it does there.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use duplex_sync::message_ffi::Batches;
use duplex_sync::spec::ClusterSpec;
use duplex_verifier::reader;
use duplex_verifier::run::verify;
use duplex_verifier::{Report, Verdict, VerifySpec};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use regex::Regex;

#[path = "common/brokers.rs"]
mod brokers;
#[path = "common/client_options.rs"]
mod client_options;
#[path = "common/load.rs"]
mod load;
#[path = "common/timing.rs"]
mod timing;
use timing::{Timed, Window};

const VALUE_BYTES: usize = 1024;
const DEFAULT_RECORDS: usize = 400_000;
/// The mock keeps only the last 5 MiB of each partition: stay well below with ~1.1 KB
/// per record (value, key, headers, batch overhead, and `duplex.path` on b).
const RECORDS_PER_PARTITION: usize = 3_000;
const RUNS: usize = 2;
const TOPIC: &str = "bench-verify";
const TIMEOUT: Duration = Duration::from_secs(300);
const REQUEST: Duration = Duration::from_secs(10);

fn main() -> anyhow::Result<()> {
    duplex_sync::alloc::tune();
    // The same executable, started again by `Brokers::spawn`, hosts the mock clusters.
    brokers::serve_if_child();
    // `cargo bench` passes --bench; `cargo test --benches/--all-targets` does not.
    if !std::env::args().skip(1).any(|a| a == "--bench") {
        println!("verify_e2e: run with cargo bench");
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
        "verify_e2e: {n} records of {VALUE_BYTES} B (key, 2 headers) on a, their copies with \
         duplex.path on b, {partitions} partitions, {}, best of {RUNS} runs",
        brokers::Brokers::describe()
    );

    let mut brokers = brokers::Brokers::spawn(2)?;
    let (a_boot, b_boot) = (brokers.bootstrap[0].clone(), brokers.bootstrap[1].clone());
    brokers.create_topic(TOPIC, partitions)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let loading = Instant::now();
    rt.block_on(async {
        tokio::try_join!(
            load::produce(&a_boot, TOPIC, n, partitions, VALUE_BYTES, false),
            load::produce(&b_boot, TOPIC, n, partitions, VALUE_BYTES, true)
        )
    })?;
    for (id, boot) in [("a", &a_boot), ("b", &b_boot)] {
        let held = load::held(boot, TOPIC, partitions)?;
        ensure!(
            held == n as i64,
            "{id} holds {held} records of {TOPIC}, expected {n}"
        );
    }
    println!(
        "loaded both clusters in {:.1} s (not timed below)",
        loading.elapsed().as_secs_f64()
    );

    // `DUPLEX_BENCH_CONSUMER`: extra options for both readers, consume-only's and the
    // verifier's alike.
    let extra = client_options::from_env("DUPLEX_BENCH_CONSUMER")?;
    let sides: Vec<ClusterSpec> = [("a", &a_boot), ("b", &b_boot)]
        .into_iter()
        .map(|(id, boot)| {
            let mut c = ClusterSpec::new(id, boot);
            c.consumer.extend(extra.iter().cloned());
            c
        })
        .collect();
    let topics = Regex::new(&format!("^{TOPIC}$"))?;
    let (mut consumed, mut fresh, mut resumed) = (Vec::new(), Vec::new(), Vec::new());
    let (mut by_position, mut polled, mut hashed) = (Vec::new(), Vec::new(), Vec::new());
    for run in 1..=RUNS {
        let c = consume_both(&sides, partitions, n, Read::Batches)?;
        let c1 = consume_both(&sides, partitions, n, Read::Poll)?;
        let ch = consume_both(&sides, partitions, n, Read::Hashed)?;
        let dir = tempfile::tempdir().context("store directory")?;
        let spec = VerifySpec::new(sides.clone(), topics.clone(), dir.path().join("store"));
        let (f, first) = timed_verify(&spec, 2 * n)?;
        check(&first, n, 2 * n as u64, "fresh")?;
        let (r, again) = timed_verify(&spec, 2 * n)?;
        check(&again, n, 0, "resumed")?;
        // The same records compared by position (`--positional`): the copies sit at the
        // same offsets, and `duplex.path` is left out of the fingerprint.
        let mut positional = spec.clone();
        positional.store_dir = dir.path().join("positional");
        positional.positional = Some(topics.clone());
        let (p, by_offset) = timed_verify(&positional, 2 * n)?;
        check(&by_offset, n, 2 * n as u64, "positional")?;
        println!(
            "run {run}: consume-only {:>7.0}/s (one poll a message {:>7.0}/s, every byte hashed \
             {:>7.0}/s)  verify {:>7.0}/s  \
             (report run time {:.3} s, store {:.0} MiB)  resumed verify {:.3} s (report {:.3} \
             s)  positional verify {:>7.0}/s (store {:.0} MiB)",
            c.rate(),
            c1.rate(),
            ch.rate(),
            f.rate(),
            first.run.seconds,
            dir_mib(&spec.store_dir),
            r.elapsed.as_secs_f64(),
            again.run.seconds,
            p.rate(),
            dir_mib(&positional.store_dir),
        );
        consumed.push(c);
        polled.push(c1);
        hashed.push(ch);
        fresh.push(f);
        resumed.push(r);
        by_position.push(p);
    }

    let best = |v: &[Timed]| {
        *v.iter()
            .max_by(|x, y| x.rate().total_cmp(&y.rate()))
            .expect("RUNS >= 1")
    };
    let (c, f, r) = (best(&consumed), best(&fresh), best(&resumed));
    let (p, c1, ch) = (best(&by_position), best(&polled), best(&hashed));
    println!();
    println!(
        "{:<17} {:>8} {:>8} {:>10} {:>7} {:>6}",
        "best run", "records", "seconds", "records/s", "MiB/s", "cores"
    );
    for (name, t) in [
        ("consume-only", c),
        ("  one poll a msg", c1),
        ("  bytes hashed", ch),
        ("verify", f),
        ("verify positional", p),
    ] {
        println!(
            "{name:<17} {:>8} {:>8.3} {:>10.0} {:>7.1} {:>6}",
            t.records,
            t.elapsed.as_secs_f64(),
            t.rate(),
            t.mib(VALUE_BYTES),
            t.cores(),
        );
    }
    println!(
        "{:<17} {:>8} {:>8.3} {:>10} {:>7} {:>6}",
        "resumed verify",
        0,
        r.elapsed.as_secs_f64(),
        "-",
        "-",
        r.cores()
    );
    println!(
        "(records: both clusters, 2 x {n}; MiB/s counts the 1 KiB values only; cores: process \
         CPU time / wall time, of {}; the brokers' CPU is not counted)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    // What a resumed run spends before it compares: the snapshot of both sides alone.
    let spec = VerifySpec::new(sides.clone(), topics.clone(), std::env::temp_dir());
    let snapping = Instant::now();
    duplex_verifier::run::snapshot(&spec).context("snapshot")?;
    println!(
        "snapshot of both sides alone (metadata, log start and end of each partition): {:.3} s",
        snapping.elapsed().as_secs_f64()
    );
    println!();
    println!("ratio verify / consume-only = {:.2}", f.rate() / c.rate());
    println!(
        "ratio verify / consume-only, one poll a message = {:.2}",
        f.rate() / c1.rate()
    );
    println!(
        "ratio verify / consume-only, every byte hashed = {:.2}",
        f.rate() / ch.rate()
    );
    println!(
        "ratio positional verify / consume-only = {:.2}",
        p.rate() / c.rate()
    );
    Ok(())
}

/// How consume-only takes its messages from librdkafka.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Read {
    /// In batches, as the verifier's readers do (`message_ffi::Batches`, same batch size
    /// and wait): the baseline.
    Batches,
    /// One `BaseConsumer::poll` a message, as they did until session 20.
    Poll,
    /// In batches, and every key and value byte hashed once (xxh3-128 of each, one call
    /// for the key and one for the value, the record two ahead prefetched as the readers
    /// do; headers are not read): what reading those bytes costs, which any
    /// verification must, where consume-only reads only the lengths.
    Hashed,
}

/// Consume-only: what the verifier's readers do without the verifier's work. One
/// thread per cluster creates a consumer with the verifier's settings
/// (`reader::consumer_config`), looks up each partition's log start and end, assigns
/// every partition at its log start and reads until each reached its end. Timed from
/// before the threads start to when both finished, as `verify` is timed as a whole.
fn consume_both(
    sides: &[ClusterSpec],
    partitions: i32,
    n: usize,
    read: Read,
) -> anyhow::Result<Timed> {
    let window = Window::start();
    let counts = std::thread::scope(|scope| {
        let handles: Vec<_> = sides
            .iter()
            .map(|c| scope.spawn(move || consume(c, partitions, read)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("consumer thread panicked"))
            .collect::<anyhow::Result<Vec<_>>>()
    })?;
    let timed = window.end(2 * n);
    for (c, got) in sides.iter().zip(counts) {
        ensure!(
            got == n,
            "consume-only read {got} records on {}, expected {n}",
            c.id
        );
    }
    Ok(timed)
}

fn consume(cluster: &ClusterSpec, partitions: i32, read: Read) -> anyhow::Result<usize> {
    let consumer: BaseConsumer = reader::consumer_config(cluster)
        .create()
        .context("create consumer")?;
    let mut tpl = TopicPartitionList::new();
    let mut remaining = HashMap::new();
    for p in 0..partitions {
        let (low, high) = consumer
            .fetch_watermarks(TOPIC, p, REQUEST)
            .context("watermarks")?;
        if low < high {
            tpl.add_partition_offset(TOPIC, p, Offset::Offset(low))?;
            remaining.insert(p, high);
        }
    }
    consumer.assign(&tpl).context("assign")?;
    let started = Instant::now();
    let (mut got, mut bytes) = (0usize, 0usize);
    let mut batches = None;
    let mut hashes = 0u128;
    while !remaining.is_empty() {
        ensure!(
            started.elapsed() < TIMEOUT,
            "consume {}: {got} records after {TIMEOUT:?}",
            cluster.id
        );
        if read == Read::Poll {
            if let Some(m) = consumer.poll(Duration::from_millis(100)) {
                let m = m.context("consume")?;
                bytes += m.payload_len() + m.key().map_or(0, <[u8]>::len);
                got += 1;
                reached(&mut remaining, m.partition(), m.offset());
            }
            continue;
        }
        let batches = batches.get_or_insert_with(|| {
            Batches::new(&consumer, reader::READ_BATCH).expect("a consumer read in batches")
        });
        let batch = batches.next_batch(reader::BATCH_WAIT);
        let ahead = if read == Read::Hashed {
            reader::PREFETCH_AHEAD
        } else {
            0
        };
        for m in batch.into_iter_prefetching(ahead) {
            if let Some(e) = m.error() {
                anyhow::bail!("consume: {e}");
            }
            bytes += m.payload().map_or(0, <[u8]>::len) + m.key().map_or(0, <[u8]>::len);
            if read == Read::Hashed {
                for part in [m.key(), m.payload()].into_iter().flatten() {
                    hashes ^= xxhash_rust::xxh3::xxh3_128(part);
                }
            }
            got += 1;
            reached(&mut remaining, m.partition(), m.offset());
        }
    }
    std::hint::black_box((bytes, hashes));
    Ok(got)
}

/// A record at `offset` of `partition` was read: the partition is done once that is
/// the last offset before its end.
fn reached(remaining: &mut HashMap<i32, i64>, partition: i32, offset: i64) {
    if remaining
        .get(&partition)
        .is_some_and(|end| offset + 1 >= *end)
    {
        remaining.remove(&partition);
    }
}

/// One `verify` call (store open, snapshot, read, compare), timed as a whole.
fn timed_verify(spec: &VerifySpec, records: usize) -> anyhow::Result<(Timed, Report)> {
    let stop = AtomicBool::new(false);
    let window = Window::start();
    let report = verify(spec, &stop, &|_| {}).context("verify")?;
    Ok((window.end(records), report))
}

/// The verification must say PASS with all `n` records matched, having read `read`.
fn check(report: &Report, n: usize, read: u64, what: &str) -> anyhow::Result<()> {
    let t = &report.totals;
    ensure!(
        report.verdict == Verdict::Pass && t.matched == n as u64 && t.discrepancies() == 0,
        "{what} verify: {:?} with {} matched of {n}, {} discrepancies ({t:?})",
        report.verdict,
        t.matched,
        t.discrepancies()
    );
    let got: u64 = report.run.sides.iter().map(|s| s.records_read).sum();
    ensure!(
        got == read,
        "{what} verify read {got} records, expected {read}"
    );
    Ok(())
}

/// Size of the store directory in MiB.
fn dir_mib(dir: &Path) -> f64 {
    fn walk(p: &Path) -> u64 {
        std::fs::read_dir(p).map_or(0, |entries| {
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => walk(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
    }
    walk(dir) as f64 / (1024.0 * 1024.0)
}
