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
        client_options("DUPLEX_BENCH_CONSUMER")?,
        client_options("DUPLEX_BENCH_PRODUCER")?,
    );
    for cluster in &mut spec.clusters {
        cluster.consumer.extend(consumer.iter().cloned());
        cluster.producer.extend(producer.iter().cloned());
    }
    Ok(())
}

/// Extra librdkafka options from `var` (`key=value,key=value`), for the engine's clients.
fn client_options(var: &str) -> anyhow::Result<Vec<(String, String)>> {
    let Ok(v) = std::env::var(var) else {
        return Ok(Vec::new());
    };
    v.split(',')
        .filter(|kv| !kv.trim().is_empty())
        .map(|kv| {
            let (k, v) = kv
                .split_once('=')
                .with_context(|| format!("{var}: {kv:?} is not key=value"))?;
            Ok((k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

/// `DUPLEX_BENCH_PROFILE_WAIT=<seconds>`: wait that long before each replication phase,
/// so that a profiler attached to this process sees the engine and nothing else.
pub(super) fn profile_wait() -> Option<Duration> {
    let s = std::env::var("DUPLEX_BENCH_PROFILE_WAIT").ok()?;
    s.parse().ok().map(Duration::from_secs_f64)
}
