//! What the engine is asked to run: clusters, links and limits, already validated.
//!
//! The service's config layer (TOML, defaults, validation) builds these; the engine
//! trusts them and never re-parses user input.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use regex::Regex;

/// One Kafka cluster as the engine sees it.
#[derive(Clone)]
pub struct ClusterSpec {
    /// Stable id chosen in config (`onprem`, `msk`); written into provenance headers.
    pub id: String,
    /// Comma-separated `host:port` list.
    pub bootstrap_servers: String,
    /// librdkafka options for every client of this cluster (TLS, SASL, ...).
    pub options: BTreeMap<String, String>,
    /// librdkafka options for producers writing to this cluster, over `options`.
    pub producer: BTreeMap<String, String>,
    /// librdkafka options for consumers reading this cluster, over `options`.
    pub consumer: BTreeMap<String, String>,
}

/// Keys whose values are secrets: never printed or logged.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "password",
        "secret",
        "token",
        "sasl.jaas",
        "passphrase",
        "private.key",
        "credential",
        "ssl.key.pem",
        "sasl.oauthbearer.config",
    ]
    .iter()
    .any(|s| k.contains(s))
}

/// Writes a librdkafka option map with secret values masked as `***`.
pub fn fmt_options(map: &BTreeMap<String, String>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let mut m = f.debug_map();
    for (k, v) in map {
        if is_secret_key(k) {
            m.entry(k, &"***");
        } else {
            m.entry(k, v);
        }
    }
    m.finish()
}

struct Masked<'a>(&'a BTreeMap<String, String>);
impl fmt::Debug for Masked<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_options(self.0, f)
    }
}

impl fmt::Debug for ClusterSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterSpec")
            .field("id", &self.id)
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("options", &Masked(&self.options))
            .field("producer", &Masked(&self.producer))
            .field("consumer", &Masked(&self.consumer))
            .finish()
    }
}

/// Where a flow starts reading a source partition it has never replicated before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartPosition {
    /// From the log start: everything the source still holds.
    Earliest,
    /// From the end at first start: only records produced from then on.
    Latest,
}

/// Which topics a link replicates.
#[derive(Debug, Clone)]
pub struct TopicSelection {
    /// A topic is selected when it matches any of these...
    pub include: Vec<Regex>,
    /// ...and none of these. Internal topics (`__*`) are never selected.
    pub exclude: Vec<Regex>,
}

impl TopicSelection {
    /// Whether `topic` is replicated by the link. Regexes match the whole name.
    pub fn selects(&self, topic: &str) -> bool {
        if topic.starts_with("__")
            || topic.starts_with("_confluent")
            || topic.starts_with("_schemas")
        {
            return false;
        }
        let full = |r: &Regex| {
            r.find(topic)
                .is_some_and(|m| m.start() == 0 && m.end() == topic.len())
        };
        self.include.iter().any(full) && !self.exclude.iter().any(full)
    }
}

/// A link: an unordered pair of clusters (by index into `EngineSpec::clusters`).
#[derive(Debug, Clone)]
pub struct LinkSpec {
    /// Name used in group ids, metrics and logs, e.g. `onprem-msk`.
    pub name: String,
    /// The two clusters, as indexes into `EngineSpec::clusters`.
    pub clusters: [usize; 2],
    /// Topics replicated in both directions.
    pub topics: TopicSelection,
    /// Start position for partitions with no replication history.
    pub start: StartPosition,
    /// Per-flow in-flight limit (bytes of records sent and not yet acknowledged).
    pub in_flight_bytes: usize,
    /// This link's share of topic config sync.
    pub topic_configs: LinkTopicConfigs,
}

/// `[topic_configs]`: which settings of a replicated topic follow their owner cluster
/// (docs/topic-configs.md).
#[derive(Debug, Clone)]
pub struct TopicConfigSync {
    /// Whether flows copy topic settings at all (beyond cleanup.policy at creation).
    pub enabled: bool,
    /// The cluster whose settings win (by id); `None`: the first cluster of the file
    /// that holds the topic.
    pub owner: Option<String>,
    /// Keys never copied, besides the built-in list (whole-name regexes).
    pub exclude: Vec<Regex>,
    /// Copy the READ and DESCRIBE literal topic ACLs too (off by default).
    pub acls: bool,
}

impl Default for TopicConfigSync {
    fn default() -> Self {
        TopicConfigSync {
            enabled: true,
            owner: None,
            exclude: Vec::new(),
            acls: false,
        }
    }
}

/// A link's override of topic config sync.
#[derive(Debug, Clone)]
pub struct LinkTopicConfigs {
    /// Whether this link's flows copy topic settings (beyond cleanup.policy at creation).
    pub enabled: bool,
    /// Keys this link's flows never copy, besides the engine-wide ones.
    pub exclude: Vec<Regex>,
}

impl Default for LinkTopicConfigs {
    fn default() -> Self {
        LinkTopicConfigs {
            enabled: true,
            exclude: Vec::new(),
        }
    }
}

/// Engine-wide settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// How often each flow looks for new topics and partitions.
    pub refresh_interval: Duration,
    /// How often acknowledged positions are committed to the source group.
    pub commit_interval: Duration,
    /// Timeout for metadata, admin and watermark requests.
    pub request_timeout: Duration,
    /// A flow that has read nothing for this long while its source has records past its
    /// position is restarted (new clients, resume from the target).
    pub stall_timeout: Duration,
    /// The in-flight budget of a link that sets none (`[limits] in_flight_bytes`): what
    /// a link added at runtime gets.
    pub in_flight_bytes: usize,
    /// Add partitions to a target topic that has fewer than its source.
    pub grow_target_partitions: bool,
}

impl EngineSpec {
    /// The cluster with `id`, or the ids it has, comma-separated, for the error.
    pub fn cluster(&self, id: &str) -> Result<&ClusterSpec, String> {
        self.clusters.iter().find(|c| c.id == id).ok_or_else(|| {
            let known: Vec<&str> = self.clusters.iter().map(|c| c.id.as_str()).collect();
            known.join(", ")
        })
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            refresh_interval: Duration::from_secs(5),
            commit_interval: Duration::from_secs(1),
            request_timeout: Duration::from_secs(10),
            stall_timeout: Duration::from_secs(30),
            in_flight_bytes: DEFAULT_IN_FLIGHT_BYTES,
            grow_target_partitions: true,
        }
    }
}

/// Everything the engine runs.
#[derive(Debug, Clone)]
pub struct EngineSpec {
    /// Clusters; ids are unique.
    pub clusters: Vec<ClusterSpec>,
    /// Links; each names two distinct clusters, and together they connect every cluster.
    pub links: Vec<LinkSpec>,
    /// Links removed at runtime whose flows still run, carrying only what the routes
    /// before the removal owe (docs/topology-changes.md, "Removing a link"); they route
    /// nothing after the removal's cut and stop once the drain is over.
    pub draining: Vec<LinkSpec>,
    /// Engine-wide settings.
    pub limits: Limits,
    /// Which topic settings follow their owner.
    pub topic_configs: TopicConfigSync,
}

impl EngineSpec {
    /// The links whose flows run: those kept, then those draining.
    pub fn all_links(&self) -> impl Iterator<Item = &LinkSpec> {
        self.links.iter().chain(&self.draining)
    }
}

/// Default per-flow in-flight budget.
pub const DEFAULT_IN_FLIGHT_BYTES: usize = 64 * 1024 * 1024;

impl ClusterSpec {
    /// A cluster with no extra client options.
    pub fn new(id: impl Into<String>, bootstrap_servers: impl Into<String>) -> Self {
        ClusterSpec {
            id: id.into(),
            bootstrap_servers: bootstrap_servers.into(),
            options: BTreeMap::new(),
            producer: BTreeMap::new(),
            consumer: BTreeMap::new(),
        }
    }
}

impl TopicSelection {
    /// Topics whose whole name matches `include`, none excluded.
    pub fn matching(include: &str) -> Result<Self, regex::Error> {
        Ok(TopicSelection {
            include: vec![Regex::new(include)?],
            exclude: Vec::new(),
        })
    }
}

impl EngineSpec {
    /// Clusters linked by `links` (pairs of indexes), every link replicating `topics`
    /// from the earliest offset with the default budget. For embedded uses and tests.
    pub fn linked(
        clusters: Vec<ClusterSpec>,
        links: &[[usize; 2]],
        topics: TopicSelection,
    ) -> Self {
        let links = links
            .iter()
            .map(|&[a, b]| LinkSpec {
                name: format!("{}-{}", clusters[a].id, clusters[b].id),
                clusters: [a, b],
                topics: topics.clone(),
                start: StartPosition::Earliest,
                in_flight_bytes: DEFAULT_IN_FLIGHT_BYTES,
                topic_configs: LinkTopicConfigs::default(),
            })
            .collect();
        EngineSpec {
            clusters,
            links,
            draining: Vec::new(),
            limits: Limits::default(),
            topic_configs: TopicConfigSync::default(),
        }
    }
}
