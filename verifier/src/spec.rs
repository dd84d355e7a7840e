//! What a verification compares: the sides, the topics and how each is compared.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use duplex_sync::spec::ClusterSpec;
use regex::Regex;

use crate::fingerprint::Canon;

/// How records of a topic are matched across sides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// By origin position: from Duplex's provenance header, or the record's own position
    /// on the cluster that produced it.
    Identity,
    /// By position in each side's partition, aligned as a diff (copies made by other tools).
    Positional,
    /// Latest value per key (compacted topics).
    Compacted,
}

impl Mode {
    /// Name used in reports and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Identity => "identity",
            Mode::Positional => "positional",
            Mode::Compacted => "compacted",
        }
    }
}

/// An offset given per cluster, optionally narrowed to a topic and a partition:
/// `CLUSTER=OFFSET`, `CLUSTER:TOPIC=OFFSET` or `CLUSTER:TOPIC:PARTITION=OFFSET`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetRule {
    /// Cluster whose offsets these are (the origin in identity mode, the side otherwise).
    pub cluster: String,
    /// Topic, or every topic.
    pub topic: Option<String>,
    /// Partition, or every partition.
    pub partition: Option<i32>,
    /// The offset.
    pub offset: i64,
}

/// The form [`OffsetRule`]'s `FromStr` reads: `CLUSTER[:TOPIC[:PARTITION]]=OFFSET`.
impl std::fmt::Display for OffsetRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.cluster)?;
        if let Some(t) = &self.topic {
            write!(f, ":{t}")?;
            if let Some(p) = self.partition {
                write!(f, ":{p}")?;
            }
        }
        write!(f, "={}", self.offset)
    }
}

impl std::str::FromStr for OffsetRule {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| format!("{s:?}: {why}; expected CLUSTER[:TOPIC[:PARTITION]]=OFFSET");
        let (lhs, offset) = s.rsplit_once('=').ok_or_else(|| bad("no '='"))?;
        let offset: i64 = offset
            .trim()
            .parse()
            .map_err(|_| bad("the offset is not a number"))?;
        if offset < 0 {
            return Err(bad("the offset is negative"));
        }
        let mut parts = lhs.split(':');
        let cluster = parts
            .next()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| bad("no cluster"))?;
        let topic = parts.next().map(str::to_string);
        let partition = match parts.next() {
            Some(p) => Some(
                p.parse::<i32>()
                    .ok()
                    .filter(|p| *p >= 0)
                    .ok_or_else(|| bad("the partition is not a number"))?,
            ),
            None => None,
        };
        if parts.next().is_some() {
            return Err(bad("too many ':'"));
        }
        Ok(OffsetRule {
            cluster: cluster.to_string(),
            topic,
            partition,
            offset,
        })
    }
}

/// Offset rules; the most specific rule matching a partition wins.
#[derive(Debug, Clone, Default)]
pub struct OffsetRules(pub Vec<OffsetRule>);

impl OffsetRules {
    /// The offset given for a cluster's partition, if any.
    pub fn lookup(&self, cluster: &str, topic: &str, partition: i32) -> Option<i64> {
        self.0
            .iter()
            .filter(|r| r.cluster == cluster)
            .filter(|r| r.topic.as_deref().is_none_or(|t| t == topic))
            .filter(|r| r.partition.is_none_or(|p| p == partition))
            .max_by_key(|r| (r.topic.is_some(), r.partition.is_some()))
            .map(|r| r.offset)
    }
}

/// A Duplex flow between two sides. Its checkpoints say where replication of each
/// source partition began (commit metadata `b`, docs/delivery.md): records of the
/// source below that offset are out of scope on the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationFlow {
    /// Cluster the flow reads (the origin of the records it carries first).
    pub source: String,
    /// Cluster the flow writes.
    pub target: String,
    /// Its source consumer group.
    pub group: String,
}

/// A verification: which clusters, which topics, how, and where the store lives.
#[derive(Debug, Clone)]
pub struct VerifySpec {
    /// The sides; the first is the source every other side is compared with.
    pub sides: Vec<ClusterSpec>,
    /// Clusters of the config outside the sides. When one of them is the origin of
    /// records the sides hold, it is asked where its partitions end, so that a tail of
    /// its records that reached neither side is reported, not hidden below a watermark.
    pub origins: Vec<ClusterSpec>,
    /// Topics to verify (on the source; a selected topic absent on a target is reported).
    pub topics: Regex,
    /// Topics left out even when `topics` selects them.
    pub exclude: Option<Regex>,
    /// Topics compared positionally.
    pub positional: Option<Regex>,
    /// Topics compared by latest value per key.
    pub compacted: Option<Regex>,
    /// Header names left out of fingerprints (Duplex's own always are).
    pub ignored_headers: Vec<String>,
    /// Where comparison starts: in identity mode origin offsets below are out of scope
    /// (replication began there); in positional mode each side's sequence starts there.
    pub from: OffsetRules,
    /// Watermarks given instead of the end offsets at the start of the run.
    pub watermarks: OffsetRules,
    /// Duplex flows between the sides, whose checkpoints say where replication began.
    pub flows: Vec<ReplicationFlow>,
    /// Discrepancy samples kept per partition.
    pub max_samples: usize,
    /// Records per second read per side at most (to spare production clusters).
    pub max_rate: Option<u64>,
    /// RocksDB store directory.
    pub store_dir: PathBuf,
    /// Records looked ahead on each side to realign positional sequences.
    pub align_window: usize,
    /// A side that makes no progress this long fails the run.
    pub stall_timeout: Duration,
}

impl VerifySpec {
    /// A spec with the defaults of the command line.
    pub fn new(sides: Vec<ClusterSpec>, topics: Regex, store_dir: PathBuf) -> VerifySpec {
        VerifySpec {
            sides,
            origins: Vec::new(),
            topics,
            exclude: None,
            positional: None,
            compacted: None,
            ignored_headers: Vec::new(),
            from: OffsetRules::default(),
            watermarks: OffsetRules::default(),
            flows: Vec::new(),
            max_samples: 20,
            max_rate: None,
            store_dir,
            align_window: 1000,
            stall_timeout: Duration::from_secs(60),
        }
    }

    /// Whether a topic is verified.
    pub fn selects(&self, topic: &str) -> bool {
        !topic.starts_with("__")
            && self.topics.is_match(topic)
            && !self.exclude.as_ref().is_some_and(|r| r.is_match(topic))
    }

    /// How a topic is compared.
    pub fn mode(&self, topic: &str) -> Mode {
        if self.compacted.as_ref().is_some_and(|r| r.is_match(topic)) {
            Mode::Compacted
        } else if self.positional.as_ref().is_some_and(|r| r.is_match(topic)) {
            Mode::Positional
        } else {
            Mode::Identity
        }
    }

    /// Fingerprint settings for a topic.
    pub fn canon(&self, mode: Mode) -> Canon {
        Canon {
            ignored_headers: self.ignored_headers.clone(),
            without_timestamp: mode == Mode::Compacted,
        }
    }

    /// Everything that decides what the store holds. A store written under another
    /// signature is refused.
    pub fn signature(&self) -> String {
        let mut s = String::new();
        let ids: Vec<_> = self
            .sides
            .iter()
            .map(|c| format!("{}@{}", c.id, c.bootstrap_servers))
            .collect();
        let re = |r: &Option<Regex>| {
            r.as_ref()
                .map(|r| r.as_str().to_string())
                .unwrap_or_default()
        };
        let _ = write!(
            s,
            "sides={} topics={} exclude={} positional={} compacted={} ignored_headers={} from={:?}",
            ids.join(","),
            self.topics.as_str(),
            re(&self.exclude),
            re(&self.positional),
            re(&self.compacted),
            self.ignored_headers.join(","),
            self.from.0,
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_rules_parse_and_the_most_specific_wins() {
        let rules = OffsetRules(vec![
            "a=5".parse().unwrap(),
            "a:orders=7".parse().unwrap(),
            "a:orders:2=9".parse().unwrap(),
        ]);
        assert_eq!(rules.lookup("a", "orders", 2), Some(9));
        assert_eq!(rules.lookup("a", "orders", 1), Some(7));
        assert_eq!(rules.lookup("a", "other", 1), Some(5));
        assert_eq!(rules.lookup("b", "orders", 2), None);
    }

    #[test]
    fn an_offset_rule_prints_as_it_is_read() {
        for text in ["a=5", "a:orders=7", "a:orders:2=9"] {
            let rule: OffsetRule = text.parse().unwrap();
            assert_eq!(rule.to_string(), text);
            assert_eq!(rule.to_string().parse::<OffsetRule>().unwrap(), rule);
        }
    }

    #[test]
    fn bad_offset_rules_say_what_is_wrong() {
        for (input, why) in [
            ("a", "no '='"),
            ("a=x", "not a number"),
            ("a=-1", "negative"),
            ("=4", "no cluster"),
            ("a:t:x=1", "partition is not a number"),
            ("a:t:1:2=1", "too many"),
        ] {
            let err = input.parse::<OffsetRule>().unwrap_err();
            assert!(err.contains(why), "{input}: {err}");
        }
    }
}
