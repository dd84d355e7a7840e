//! Extra librdkafka options for a bench's clients from an environment variable
//! (`DUPLEX_BENCH_CONSUMER`, `DUPLEX_BENCH_PRODUCER`), to try a setting without a rebuild.

use anyhow::Context;

/// Extra librdkafka options from `var` (`key=value,key=value`); none when it is unset.
pub fn from_env(var: &str) -> anyhow::Result<Vec<(String, String)>> {
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
