//! The naive baseline of e2e_throughput: benches/naive/replicate.py, a consume -> produce
//! loop with confluent-kafka.

use super::*;

/// The python that runs the naive baseline: `DUPLEX_BENCH_PYTHON`, else the bench venv
/// `target/bench-python` when it exists (docs/benchmarks.md says how to make it).
pub(super) fn naive_python() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("DUPLEX_BENCH_PYTHON") {
        // Set and empty: no naive baseline.
        return (!p.is_empty()).then(|| PathBuf::from(p));
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-python/bin/python");
    venv.exists().then_some(venv)
}

/// The naive consume -> produce script (benches/naive/replicate.py), copying `topic`
/// from a to `out` on b; its CPU time is that of the child process.
pub(super) fn naive_replicate(
    python: &Path,
    a: &str,
    b: &str,
    topic: &str,
    out: &str,
    n: usize,
    partitions: i32,
) -> anyhow::Result<Timed> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/naive/replicate.py");
    let before = timing::children_cpu_time();
    let output = std::process::Command::new(python)
        .arg(&script)
        .args([a, b, topic, out, &partitions.to_string(), &n.to_string()])
        .output()
        .with_context(|| format!("run {} {}", python.display(), script.display()))?;
    ensure!(
        output.status.success(),
        "the naive script failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let cpu = timing::children_cpu_time()
        .zip(before)
        .map(|(e, s)| e.saturating_sub(s));
    let text = String::from_utf8_lossy(&output.stdout);
    let (records, seconds) = text
        .trim()
        .split_once(' ')
        .with_context(|| format!("the naive script printed {text:?}"))?;
    let records: usize = records.parse().context("naive records")?;
    let seconds: f64 = seconds.parse().context("naive seconds")?;
    let on_b = inspect::count(b, out, REQUEST)?;
    ensure!(
        records == n && on_b == n as i64,
        "the naive script copied {records} records and b holds {on_b} in {out}, expected {n}"
    );
    // Its CPU covers the whole process (interpreter start too): a bound, not exact.
    Ok(Timed {
        records,
        elapsed: Duration::from_secs_f64(seconds),
        cpu,
        faults: None,
    })
}
