//! Offset translation time on librdkafka mock clusters, in one process and one run: one
//! group over 64 partitions holding 1,000,000 records in total on a, their copies (with
//! the `duplex.path` a flow writes) on b. The group committed half of each partition on
//! a. Timed: `duplex_sync::offsets::translate` a→b, three times without an index (every
//! run reads the source below the committed offsets and the whole target partitions),
//! against a consume-only baseline that reads the same ranges with a plain consumer in
//! the same run; then through the translation index: its first run (which builds it), a
//! warm run with nothing new, and one after 1% more records on b. Prints records
//! examined per second, the ratio translate / consume-only, and warm / first run.
//!
//! Run with `cargo bench --bench offsets_translate`; `DUPLEX_BENCH_RECORDS` sets the
//! record count. This measures and prints; it fails only when a cluster does not hold
//! what it should or the translation is not the exact one (every partition at the
//! committed offset, nothing re-delivered), because then the figures would mean nothing.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use duplex_sync::offsets::{self, Request};
use duplex_sync::spec::ClusterSpec;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

#[path = "common/load.rs"]
mod load;
#[path = "common/timing.rs"]
mod timing;
use timing::{Timed, Window};

const VALUE_BYTES: usize = 100;
const DEFAULT_RECORDS: usize = 1_000_000;
const PARTITIONS: i32 = 64;
const RUNS: usize = 3;
const TOPIC: &str = "bench-offsets";
const GROUP: &str = "bench-app";
const TIMEOUT: Duration = Duration::from_secs(300);

fn main() -> anyhow::Result<()> {
    if !std::env::args().skip(1).any(|a| a == "--bench") {
        println!("offsets_translate: run with cargo bench");
        return Ok(());
    }
    let n: usize = match std::env::var("DUPLEX_BENCH_RECORDS") {
        Ok(v) => v
            .parse()
            .with_context(|| format!("DUPLEX_BENCH_RECORDS={v:?} is not a count"))?,
        Err(_) => DEFAULT_RECORDS,
    };
    ensure!(
        n >= PARTITIONS as usize,
        "DUPLEX_BENCH_RECORDS must be at least {PARTITIONS}"
    );
    println!(
        "offsets_translate: {n} records of {VALUE_BYTES} B on a, their copies with duplex.path \
         on b, {PARTITIONS} partitions, the group at half of each, librdkafka mock clusters \
         in this process"
    );
    let a = MockCluster::new(1).context("start mock cluster a")?;
    let b = MockCluster::new(1).context("start mock cluster b")?;
    let (a_boot, b_boot) = (a.bootstrap_servers(), b.bootstrap_servers());
    a.create_topic(TOPIC, PARTITIONS, 1)?;
    b.create_topic(TOPIC, PARTITIONS, 1)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let loading = Instant::now();
    rt.block_on(async {
        tokio::try_join!(
            load::produce(&a_boot, TOPIC, n, PARTITIONS, VALUE_BYTES, false),
            load::produce(&b_boot, TOPIC, n, PARTITIONS, VALUE_BYTES, true)
        )
    })?;
    for (id, boot) in [("a", &a_boot), ("b", &b_boot)] {
        let held = load::held(boot, TOPIC, PARTITIONS)?;
        ensure!(held == n as i64, "{id} holds {held} records, expected {n}");
    }
    println!(
        "loaded both clusters in {:.1} s (not timed below)",
        loading.elapsed().as_secs_f64()
    );
    let (a_spec, b_spec) = (
        ClusterSpec::new("a", &a_boot),
        ClusterSpec::new("b", &b_boot),
    );
    let committed = commit_half(&a_spec)?;
    // Examined: the source below the committed offsets, and the whole target.
    let examined = committed.values().sum::<i64>() as usize + n;
    let req = Request {
        group: GROUP,
        from: &a_spec,
        to: &b_spec,
        topics: None,
        timeout: Duration::from_secs(30),
        index: None,
    };
    let (mut base, mut runs) = (Vec::new(), Vec::new());
    for run in 1..=RUNS {
        let c = consume_ranges(&a_spec, &b_spec, &committed, examined)?;
        let window = Window::start();
        let t = offsets::translate(&req).context("translate")?;
        let timed = window.end(examined);
        exact(&t)?;
        println!(
            "run {run}: consume-only {:>9.0}/s  translate {:>9.0}/s  ({:.3} s)",
            c.rate(),
            timed.rate(),
            timed.elapsed.as_secs_f64()
        );
        base.push(c);
        runs.push(timed);
    }
    let best = |v: &[Timed]| {
        *v.iter()
            .max_by(|x, y| x.rate().total_cmp(&y.rate()))
            .expect("RUNS >= 1")
    };
    let (c, first, warm) = (best(&base), runs[0], best(&runs[1..]));
    println!();
    println!(
        "{:<24} {:>9} {:>8} {:>12} {:>7} {:>6}",
        "", "examined", "seconds", "records/s", "MiB/s", "cores"
    );
    for (name, t) in [
        ("consume-only (best)", c),
        ("translate, first run", first),
        ("translate, later (best)", warm),
    ] {
        println!(
            "{name:<24} {:>9} {:>8.3} {:>12.0} {:>7.1} {:>6}",
            t.records,
            t.elapsed.as_secs_f64(),
            t.rate(),
            t.mib(VALUE_BYTES),
            t.cores()
        );
    }
    println!(
        "(examined: a below the committed offsets plus all of b; MiB/s counts the values only; \
         without the index, later runs read what the first did)"
    );
    println!();
    println!(
        "ratio translate / consume-only = {:.2}",
        warm.rate() / c.rate()
    );

    // Through the index (in memory; the mock answers no DescribeConfigs, so its topics
    // are taken for uncompacted without asking): the first run reads what the others
    // did and builds it; a warm run reads only each partition's last indexed record
    // (to check it) and what was appended since.
    let index = offsets::index::Index::new(Box::new(offsets::index::MemoryStore::default()))
        .trusting_unknown_policy();
    let indexed = Request {
        index: Some(&index),
        ..req
    };
    let timed_translate = |label: &str| -> anyhow::Result<Timed> {
        let window = Window::start();
        let t = offsets::translate(&indexed).context("translate")?;
        let timed = window.end(examined);
        exact(&t)?;
        println!(
            "{label:<34} {:>8.3} s  ({:.0} records examined/s)",
            timed.elapsed.as_secs_f64(),
            timed.rate()
        );
        Ok(timed)
    };
    println!();
    let built = timed_translate("indexed, first run (builds it)")?;
    let warm_ix = timed_translate("indexed, warm, nothing new")?;
    let appended = n / 100;
    rt.block_on(load::produce(
        &b_boot,
        TOPIC,
        appended,
        PARTITIONS,
        VALUE_BYTES,
        false,
    ))?;
    let grown = timed_translate(&format!("indexed, warm, {appended} new on b"))?;
    println!();
    println!(
        "time, warm / first run: {:.3} (nothing new), {:.3} ({appended} new); first run through \
         the index / without it: {:.2}",
        warm_ix.elapsed.as_secs_f64() / built.elapsed.as_secs_f64(),
        grown.elapsed.as_secs_f64() / built.elapsed.as_secs_f64(),
        built.elapsed.as_secs_f64() / first.elapsed.as_secs_f64()
    );
    Ok(())
}

/// Fails unless every partition translated to its committed offset with nothing
/// re-delivered: otherwise the figures would mean nothing.
fn exact(t: &offsets::Translation) -> anyhow::Result<()> {
    ensure!(t.complete(), "a partition was refused: {t:?}");
    for p in &t.partitions {
        let got = p.outcome.as_ref().expect("complete");
        ensure!(
            got.offset == p.committed && got.redelivered == 0,
            "partition {}: translated {got:?}, expected {} with none re-delivered",
            p.partition,
            p.committed
        );
    }
    Ok(())
}

/// Commits, for the group on a, half of each partition; returns the offsets.
fn commit_half(a: &ClusterSpec) -> anyhow::Result<HashMap<i32, i64>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &a.bootstrap_servers)
        .set("group.id", GROUP)
        .create()?;
    let mut tpl = TopicPartitionList::new();
    let mut out = HashMap::new();
    for p in 0..PARTITIONS {
        let (_, high) = consumer.fetch_watermarks(TOPIC, p, Duration::from_secs(10))?;
        tpl.add_partition_offset(TOPIC, p, Offset::Offset(high / 2))?;
        out.insert(p, high / 2);
    }
    consumer.commit(&tpl, CommitMode::Sync).context("commit")?;
    Ok(out)
}

/// Consume-only: a below the committed offsets, then all of b, with the group reader's
/// settings, as the translation reads them.
fn consume_ranges(
    a: &ClusterSpec,
    b: &ClusterSpec,
    committed: &HashMap<i32, i64>,
    examined: usize,
) -> anyhow::Result<Timed> {
    let window = Window::start();
    let mut got = read(a, |p| committed.get(&p).copied())?;
    got += read(b, |_| None)?;
    let timed = window.end(examined);
    ensure!(
        got == examined,
        "consume-only read {got}, expected {examined}"
    );
    Ok(timed)
}

fn read(cluster: &ClusterSpec, end: impl Fn(i32) -> Option<i64>) -> anyhow::Result<usize> {
    let consumer: BaseConsumer =
        duplex_sync::clients::group_reader(cluster, "bench-baseline", "bench-baseline").create()?;
    let mut tpl = TopicPartitionList::new();
    let mut remaining = HashMap::new();
    for p in 0..PARTITIONS {
        let (low, high) = consumer.fetch_watermarks(TOPIC, p, Duration::from_secs(10))?;
        let stop = end(p).unwrap_or(high);
        if low < stop {
            tpl.add_partition_offset(TOPIC, p, Offset::Offset(low))?;
            remaining.insert(p, stop);
        }
    }
    consumer.assign(&tpl)?;
    let started = Instant::now();
    let mut got = 0usize;
    while !remaining.is_empty() {
        ensure!(started.elapsed() < TIMEOUT, "consume {}: stuck", cluster.id);
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                use rdkafka::message::Message;
                let Some(stop) = remaining.get(&m.partition()).copied() else {
                    continue;
                };
                if m.offset() < stop {
                    got += 1;
                    std::hint::black_box(m.payload_len());
                }
                if m.offset() + 1 >= stop {
                    remaining.remove(&m.partition());
                }
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) | None => {}
            Some(Err(e)) => return Err(e).context("consume"),
        }
    }
    Ok(got)
}
