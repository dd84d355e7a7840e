//! What a parity run compares, as the CLI's flags and the API's StartVerification both
//! say it, and the one place it becomes a [`VerifySpec`] against the mesh's clusters.
//!
//! A bad value is an [`Invalid`] naming its field; the field names are the flag names
//! without `--` (`between`, `topics`, `from`, ...), so the CLI says `--between: …` and
//! the API `between: …` about the same mistake.

use std::path::PathBuf;
use std::time::Duration;

use duplex_sync::flow::group_id;
use duplex_sync::spec::{ClusterSpec, EngineSpec};
use duplex_verifier::{OffsetRule, OffsetRules, ReplicationFlow, VerifySpec};
use regex::Regex;

/// Which clusters and topics to compare, and how.
#[derive(Debug, Clone, clap::Args)]
pub struct Selection {
    /// Cluster ids to compare, the source first: `--between onprem,msk`.
    #[arg(long, value_delimiter = ',', required = true)]
    pub between: Vec<String>,
    /// Regular expression selecting topics (whole name); internal `__*` topics never are.
    #[arg(long, default_value = ".*")]
    pub topics: String,
    /// Regular expression of topics to leave out.
    #[arg(long)]
    pub exclude: Option<String>,
    /// Topics copied by other tools (no Duplex provenance): compared by position.
    #[arg(long, value_name = "REGEX")]
    pub positional: Option<String>,
    /// Compacted topics: the latest value per key is compared, not the history.
    #[arg(long, value_name = "REGEX")]
    pub compacted: Option<String>,
    /// Header left out of fingerprints (repeatable), e.g. `--ignore-header __mskmr`.
    #[arg(long = "ignore-header", value_name = "NAME")]
    pub ignore_headers: Vec<String>,
    /// Where comparison starts, `CLUSTER[:TOPIC[:PARTITION]]=OFFSET` (repeatable).
    /// Identity mode: origin offsets below it are out of scope (replication began
    /// there). Positional mode: that side's sequence starts there.
    #[arg(long, value_name = "RULE")]
    pub from: Vec<OffsetRule>,
    /// Watermark instead of the end offsets at the start of the run,
    /// `CLUSTER[:TOPIC[:PARTITION]]=OFFSET` (repeatable).
    #[arg(long, value_name = "RULE")]
    pub watermark: Vec<OffsetRule>,
    /// Discrepancy samples kept per partition.
    #[arg(long, default_value_t = 20)]
    pub max_samples: usize,
    /// Read at most this many records per second per side.
    #[arg(long)]
    pub max_rate: Option<u64>,
    /// Records looked ahead on each side to realign positional sequences.
    #[arg(long, default_value_t = 1000)]
    pub align_window: usize,
    /// Fail when a side makes no progress this long.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub stall_timeout: Duration,
}

impl Default for Selection {
    fn default() -> Self {
        Selection {
            between: Vec::new(),
            topics: ".*".into(),
            exclude: None,
            positional: None,
            compacted: None,
            ignore_headers: Vec::new(),
            from: Vec::new(),
            watermark: Vec::new(),
            max_samples: 20,
            max_rate: None,
            align_window: 1000,
            stall_timeout: Duration::from_secs(60),
        }
    }
}

/// A value of the selection that cannot be used: its field and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct Invalid {
    /// The field (the flag without `--`).
    pub field: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

fn invalid(field: &'static str, problem: impl Into<String>) -> Invalid {
    Invalid {
        field,
        problem: problem.into(),
    }
}

/// The longest pattern taken: a longer one is a mistake (or an attack on the API).
pub const MAX_PATTERN: usize = 4096;

fn regex(field: &'static str, text: &str) -> Result<Regex, Invalid> {
    if text.len() > MAX_PATTERN {
        return Err(invalid(
            field,
            format!(
                "the pattern is {} bytes long; at most {MAX_PATTERN}",
                text.len()
            ),
        ));
    }
    Regex::new(&format!("^(?:{text})$")).map_err(|e| {
        // The regex crate's message quotes the pattern with a caret under the mistake:
        // helpful for a short one, never echoed whole for a long one.
        let full = e.to_string();
        let said = if text.len() <= 200 {
            full
        } else {
            full.lines()
                .rev()
                .find(|l| l.trim_start().starts_with("error:"))
                .map_or_else(
                    || full.chars().take(200).collect(),
                    |l| l.trim().to_string(),
                )
        };
        invalid(field, format!("invalid regular expression: {said}"))
    })
}

fn optional(field: &'static str, text: &Option<String>) -> Result<Option<Regex>, Invalid> {
    text.as_deref().map(|t| regex(field, t)).transpose()
}

/// The verification of `sel` over the clusters and links of `engine`, its store in
/// `store_dir`.
pub fn spec(
    sel: &Selection,
    engine: &EngineSpec,
    store_dir: PathBuf,
) -> Result<VerifySpec, Invalid> {
    if sel.between.len() < 2 {
        return Err(invalid(
            "between",
            "name at least two cluster ids, the source first",
        ));
    }
    let known = || {
        engine
            .clusters
            .iter()
            .map(|c| c.id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut sides: Vec<ClusterSpec> = Vec::new();
    for id in &sel.between {
        if sides.iter().any(|c| &c.id == id) {
            return Err(invalid("between", format!("cluster {id:?} is named twice")));
        }
        let c = engine
            .clusters
            .iter()
            .find(|c| &c.id == id)
            .ok_or_else(|| {
                invalid(
                    "between",
                    format!("unknown cluster {id:?} (the config has {})", known()),
                )
            })?;
        sides.push(c.clone());
    }
    for (field, rules) in [("from", &sel.from), ("watermark", &sel.watermark)] {
        if let Some((i, r)) = rules
            .iter()
            .enumerate()
            .find(|(_, r)| !engine.clusters.iter().any(|c| c.id == r.cluster))
        {
            return Err(invalid(
                field,
                format!(
                    "value {} ({r}): unknown cluster {:?} (the config has {})",
                    i + 1,
                    r.cluster,
                    known()
                ),
            ));
        }
    }
    let mut spec = VerifySpec::new(sides, regex("topics", &sel.topics)?, store_dir);
    spec.exclude = optional("exclude", &sel.exclude)?;
    spec.positional = optional("positional", &sel.positional)?;
    spec.compacted = optional("compacted", &sel.compacted)?;
    // The config's other clusters: an origin among them is asked where it ends, so a
    // tail of its records that reached neither side is reported.
    spec.origins = engine
        .clusters
        .iter()
        .filter(|c| !sel.between.contains(&c.id))
        .cloned()
        .collect();
    spec.ignored_headers = sel.ignore_headers.clone();
    spec.from = OffsetRules(sel.from.clone());
    spec.watermarks = OffsetRules(sel.watermark.clone());
    // Duplex's flows between the sides: their checkpoints say where replication began.
    for link in &engine.links {
        let [a, b] = link.clusters.map(|i| engine.clusters[i].id.as_str());
        if sel.between.iter().any(|x| x == a) && sel.between.iter().any(|x| x == b) {
            for (source, target) in [(a, b), (b, a)] {
                spec.flows.push(ReplicationFlow {
                    source: source.to_string(),
                    target: target.to_string(),
                    group: group_id(&link.name, source, target),
                });
            }
        }
    }
    spec.max_samples = sel.max_samples;
    spec.max_rate = sel.max_rate;
    spec.align_window = sel.align_window.max(2);
    spec.stall_timeout = sel.stall_timeout;
    Ok(spec)
}
