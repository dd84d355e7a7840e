//! The memory phase of e2e_throughput: the engine alone in a fresh process over a backlog
//! above ten in-flight budgets, its peak resident memory printed.

use super::*;

/// The in-flight budget of the memory phase: the backlog is more than ten times it.
/// `DUPLEX_BENCH_MEMORY_BUDGET` (MiB) sets another.
fn memory_budget() -> anyhow::Result<usize> {
    match std::env::var("DUPLEX_BENCH_MEMORY_BUDGET") {
        Ok(v) => v
            .parse::<usize>()
            .ok()
            .filter(|m| *m > 0)
            .map(|m| m << 20)
            .with_context(|| format!("DUPLEX_BENCH_MEMORY_BUDGET={v:?} is not a count of MiB")),
        Err(_) => Ok(16 << 20),
    }
}

/// Memory: the engine replicates a backlog of `n` records of 1 KiB (over ten times a
/// 16 MiB in-flight budget) in a process of its own (this binary again, with
/// `DUPLEX_BENCH_MEMORY`), which reports its resident memory before the engine starts
/// and its peak (`VmRSS`, `VmHWM` in `/proc/self/status`): the growth is the engine's
/// (clients, buffers, records in flight), with no memory of earlier phases to reuse.
pub(super) fn memory(rt: &Runtime, n: usize) -> anyhow::Result<()> {
    let value_bytes = 1024;
    let budget = memory_budget()?;
    let partitions = n.div_ceil(3_300_000 / (value_bytes + 100)).max(8) as i32;
    let mut brokers = Brokers::spawn(2)?;
    let (a_boot, b_boot) = (brokers.bootstrap[0].clone(), brokers.bootstrap[1].clone());
    let topic = "memory";
    brokers.create_topic(topic, partitions)?;
    rt.block_on(load::produce(
        &a_boot,
        topic,
        n,
        partitions,
        value_bytes,
        false,
    ))?;
    let exe = std::env::current_exe().context("the bench's own executable")?;
    let out = std::process::Command::new(exe)
        .env(
            MEMORY_ENV,
            format!("{a_boot} {b_boot} {topic} {n} {partitions}"),
        )
        .output()
        .context("run the memory phase")?;
    ensure!(
        out.status.success(),
        "the memory phase failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let fields: Vec<u64> = text
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .with_context(|| format!("the memory phase printed {text:?}"))?;
    let [before, peak, cpu_ms, faults] = fields[..] else {
        bail!("the memory phase printed {text:?}");
    };
    let on_b = inspect::count(&b_boot, topic, REQUEST)?;
    ensure!(
        on_b == n as i64,
        "after the memory phase b holds {on_b} of {n} records"
    );
    let mib = |kib: u64| kib as f64 / 1024.0;
    let backlog = n * (value_bytes + 40);
    println!();
    println!(
        "memory: backlog {:.0} MiB ({n} records of {value_bytes} B), in-flight budget {} MiB: \
         resident {:.0} MiB before the engine started, peak {:.0} MiB while it replicated: \
         growth {:.0} MiB = budget + {:.0} MiB; the engine's CPU {:.2} s, {:.0} MiB per \
         CPU-second, {:.0} page faults per MiB",
        backlog as f64 / (1024.0 * 1024.0),
        budget >> 20,
        mib(before),
        mib(peak),
        mib(peak.saturating_sub(before)),
        mib(peak.saturating_sub(before)) - (budget >> 20) as f64,
        cpu_ms as f64 / 1e3,
        (n * value_bytes) as f64 / (1024.0 * 1024.0) / (cpu_ms.max(1) as f64 / 1e3),
        faults as f64 / ((n * value_bytes) as f64 / (1024.0 * 1024.0)),
    );
    Ok(())
}

const MEMORY_ENV: &str = "DUPLEX_BENCH_MEMORY";

/// The memory phase's own process: replicates, then prints `VmRSS` before the engine
/// started and `VmHWM` after, in KiB, the CPU time the replication took, in ms, and the
/// minor page faults it took.
/// Exits the process.
pub(super) fn memory_child_if_asked() {
    let Ok(args) = std::env::var(MEMORY_ENV) else {
        return;
    };
    let run = || -> anyhow::Result<(u64, u64, u64, u64)> {
        let v: Vec<&str> = args.split_whitespace().collect();
        let [a, b, topic, n, partitions] = v[..] else {
            bail!("{MEMORY_ENV}={args:?}");
        };
        let (n, partitions): (usize, i32) = (n.parse()?, partitions.parse()?);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        let before = status_kib("VmRSS")?;
        let cpu = timing::cpu_time();
        let faults = timing::minor_faults();
        engine_run(
            &rt,
            a,
            b,
            topic,
            n,
            partitions,
            "a->b",
            |m| m.forwarded.load(Relaxed),
            Some(memory_budget()?),
        )?;
        let cpu = timing::cpu_time().zip(cpu).map_or(0, |(end, start)| {
            end.saturating_sub(start).as_millis() as u64
        });
        let faults = timing::minor_faults()
            .zip(faults)
            .map_or(0, |(end, start)| end.saturating_sub(start));
        Ok((before, status_kib("VmHWM")?, cpu, faults))
    };
    match run() {
        Ok((before, peak, cpu, faults)) => {
            println!("{before} {peak} {cpu} {faults}");
            std::process::exit(0);
        }
        Err(e) => {
            eprintln!("memory phase: {e:#}");
            std::process::exit(1);
        }
    }
}

/// A `kB` field of `/proc/self/status`.
pub(super) fn status_kib(field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("{field} in /proc/self/status"))
}
