//! The e2e bench's settings from the environment: which phases run, extra librdkafka
//! options for the engine's clients, the wait for a profiler.

use super::*;

/// The phases `DUPLEX_BENCH_PHASES` asks for (all of them by default).
pub(super) fn phases() -> anyhow::Result<Vec<&'static str>> {
    const ALL: [&str; 4] = ["throughput", "latency", "mesh", "memory"];
    let Ok(v) = std::env::var("DUPLEX_BENCH_PHASES") else {
        return Ok(ALL.to_vec());
    };
    v.split(',')
        .map(|name| {
            ALL.into_iter()
                .find(|p| *p == name.trim())
                .with_context(|| format!("DUPLEX_BENCH_PHASES: {name:?} is none of {ALL:?}"))
        })
        .collect()
}

/// Adds `DUPLEX_BENCH_CONSUMER` and `DUPLEX_BENCH_PRODUCER` to every cluster's client
/// options in `spec`.
pub(super) fn with_bench_options(spec: &mut EngineSpec) -> anyhow::Result<()> {
    let (consumer, producer) = (
        client_options::from_env("DUPLEX_BENCH_CONSUMER")?,
        client_options::from_env("DUPLEX_BENCH_PRODUCER")?,
    );
    for cluster in &mut spec.clusters {
        cluster.consumer.extend(consumer.iter().cloned());
        cluster.producer.extend(producer.iter().cloned());
    }
    Ok(())
}

/// `DUPLEX_BENCH_PROFILE_WAIT=<seconds>`: wait that long before each replication phase,
/// so that a profiler attached to this process sees the engine and nothing else.
pub(super) fn profile_wait() -> Option<Duration> {
    let s = std::env::var("DUPLEX_BENCH_PROFILE_WAIT").ok()?;
    s.parse().ok().map(Duration::from_secs_f64)
}
