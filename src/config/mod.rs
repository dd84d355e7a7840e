//! The TOML config file: its schema, its defaults, `validate()`, and the engine spec
//! it turns into. docs/configuration.md documents every key.
//!
//! Reading is in two steps. Serde reads the file into the structs below; values with a
//! format of their own (sizes, durations, regexes, addresses) parse while being read,
//! so their errors carry the key path. Then [`Config::validate`] checks the rules that
//! span keys (unique ids, known clusters, a connected link graph). After both, building
//! the engine spec cannot fail, and no cluster has been contacted.

mod api;
mod error;
#[cfg(test)]
mod tests;
mod validate;
mod values;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use duplex_sync::spec::{
    ClusterSpec, EngineSpec, Limits, LinkSpec, LinkTopicConfigs, StartPosition, TopicConfigSync,
    TopicSelection,
};
use serde::Deserialize;

pub use api::{ApiConfig, ApiToken, MIN_TOKEN_LEN, Role, Secret, TlsConfig, TokenConfig};
pub use error::ConfigError;
pub(crate) use error::join_key;
pub use validate::check_cluster;
pub use values::{ByteSize, HumanDuration, ListenAddr, TopicPattern};

/// Every default of the file, in one place; docs/configuration.md repeats them.
pub mod defaults {
    use super::{ByteSize, HumanDuration, Limits, TopicPattern};

    /// `limits.in_flight_bytes`: bytes sent and not yet acknowledged, per flow.
    pub const IN_FLIGHT_BYTES: ByteSize = ByteSize(64 << 20);
    /// `links.topics.include`: every topic (internal topics are never selected).
    pub const INCLUDE: &str = ".*";
    /// `[api] listen`: loopback only.
    pub const API_LISTEN: std::net::SocketAddr =
        std::net::SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9465);

    // The intervals come from the engine's own defaults so the two never disagree.
    pub(super) fn refresh_interval() -> HumanDuration {
        HumanDuration(Limits::default().refresh_interval)
    }
    pub(super) fn commit_interval() -> HumanDuration {
        HumanDuration(Limits::default().commit_interval)
    }
    pub(super) fn request_timeout() -> HumanDuration {
        HumanDuration(Limits::default().request_timeout)
    }
    pub(super) fn stall_timeout() -> HumanDuration {
        HumanDuration(Limits::default().stall_timeout)
    }
    pub(super) fn include() -> Vec<TopicPattern> {
        vec![TopicPattern::new(INCLUDE).expect("the default pattern compiles")]
    }
}

/// The whole config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct Config {
    /// Engine-wide limits and intervals; every key has a default.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// The Prometheus endpoint; without it no endpoint is served.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// The gRPC control API.
    #[serde(default)]
    pub api: ApiConfig,
    /// Where the event log is kept.
    #[serde(default)]
    pub state: StateConfig,
    /// The Kafka clusters kept in sync; ids are unique.
    #[serde(default)]
    pub clusters: Vec<ClusterConfig>,
    /// Pairs of clusters that sync with each other; together they connect every cluster.
    #[serde(default)]
    pub links: Vec<LinkConfig>,
    /// Which topic settings follow their owner cluster.
    #[serde(default)]
    pub topic_configs: TopicConfigsConfig,
    /// Offset translation.
    #[serde(default)]
    pub offsets: OffsetsConfig,
}

/// `[offsets]`: offset translation (docs/offsets.md).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "a table")]
pub struct OffsetsConfig {
    /// Keep the translation index under the state directory (`offsets-index`), so that
    /// a translation reads only what was appended since the last one.
    pub index: bool,
}

/// `[topic_configs]`: topic settings follow one owner cluster (docs/topic-configs.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "a table")]
pub struct TopicConfigsConfig {
    /// Copy topic settings to the other clusters (at creation and when they change).
    pub sync: bool,
    /// The cluster whose settings win; default the first `[[clusters]]` entry that
    /// holds the topic.
    pub owner: Option<String>,
    /// Keys never copied (whole-name regexes), besides the built-in list.
    pub exclude: Vec<TopicPattern>,
    /// Copy the READ and DESCRIBE literal topic ACLs too, along the same trees.
    pub acls: bool,
}

impl Default for TopicConfigsConfig {
    fn default() -> Self {
        TopicConfigsConfig {
            sync: true,
            owner: None,
            exclude: Vec::new(),
            acls: false,
        }
    }
}

/// `[links.topic_configs]`: a link's override of topic config sync.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "a table")]
pub struct LinkTopicConfigsConfig {
    /// false: this link's flows copy no settings (beyond cleanup.policy at creation).
    pub sync: bool,
    /// Keys this link's flows never copy, besides `[topic_configs] exclude`.
    pub exclude: Vec<TopicPattern>,
}

impl Default for LinkTopicConfigsConfig {
    fn default() -> Self {
        LinkTopicConfigsConfig {
            sync: true,
            exclude: Vec::new(),
        }
    }
}

/// `[limits]`: engine-wide limits and intervals.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "a table")]
pub struct LimitsConfig {
    /// Per-flow bound on record bytes sent to the target and not yet acknowledged;
    /// a link may override it. This is what bounds memory (DESIGN.md rule 5).
    pub in_flight_bytes: ByteSize,
    /// How often each flow looks for new topics and partitions.
    pub refresh_interval: HumanDuration,
    /// How often acknowledged positions are committed to the source consumer group.
    pub commit_interval: HumanDuration,
    /// Timeout for metadata, admin and watermark requests.
    pub request_timeout: HumanDuration,
    /// A flow that reads nothing for this long while its source has records past its
    /// position is restarted with new clients, resuming from the target.
    pub stall_timeout: HumanDuration,
    /// Add partitions to a target topic that has fewer than its source
    /// (CreatePartitions); when false, its partitions wait with an error that says so.
    pub grow_target_partitions: bool,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            in_flight_bytes: defaults::IN_FLIGHT_BYTES,
            refresh_interval: defaults::refresh_interval(),
            commit_interval: defaults::commit_interval(),
            request_timeout: defaults::request_timeout(),
            stall_timeout: defaults::stall_timeout(),
            grow_target_partitions: true,
        }
    }
}

/// `[metrics]`: the Prometheus endpoint.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct MetricsConfig {
    /// Address to serve Prometheus text on at `/metrics`, e.g. `127.0.0.1:9464`.
    pub listen: Option<ListenAddr>,
}

/// `[state]`: the event log.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct StateConfig {
    /// The RocksDB directory of the event log; default `duplex-state` beside the config
    /// file. A relative path is relative to the config file's directory.
    pub dir: Option<PathBuf>,
}

/// `[[clusters]]`: one Kafka cluster.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct ClusterConfig {
    /// Stable id, `[A-Za-z0-9._-]{1,64}`; written into provenance headers, so renaming
    /// a cluster changes the identity of everything it originated.
    pub id: String,
    /// Comma-separated `host:port` list.
    pub bootstrap_servers: String,
    /// librdkafka options for every client of this cluster (TLS, SASL, ...).
    #[serde(default, deserialize_with = "values::option_map")]
    pub options: BTreeMap<String, String>,
    /// librdkafka options for producers writing to this cluster, over `options`.
    #[serde(default, deserialize_with = "values::option_map")]
    pub producer: BTreeMap<String, String>,
    /// librdkafka options for consumers reading this cluster, over `options`.
    #[serde(default, deserialize_with = "values::option_map")]
    pub consumer: BTreeMap<String, String>,
}

/// Written by hand so that secrets in option values never reach a log.
impl fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Masked<'a>(&'a BTreeMap<String, String>);
        impl fmt::Debug for Masked<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_map()
                    .entries(self.0.iter().map(|(k, v)| (k, shown_value(k, v))))
                    .finish()
            }
        }
        f.debug_struct("ClusterConfig")
            .field("id", &self.id)
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("options", &Masked(&self.options))
            .field("producer", &Masked(&self.producer))
            .field("consumer", &Masked(&self.consumer))
            .finish()
    }
}

/// Whether an option's value must never be shown. The engine's list, plus key
/// fragments it misses (`sasl.oauthbearer.assertion.private.key.passphrase`, `.pem`).
pub fn is_secret_option(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    duplex_sync::spec::is_secret_key(key)
        || ["passphrase", "private.key", "credential"]
            .iter()
            .any(|s| k.contains(s))
}

/// An option value as it may be shown: `***` for secrets.
pub fn shown_value<'a>(key: &str, value: &'a str) -> &'a str {
    if is_secret_option(key) { "***" } else { value }
}

/// `[[links]]`: two clusters that sync with each other, both ways.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct LinkConfig {
    /// The two cluster ids, distinct and known.
    pub clusters: Vec<String>,
    /// Name in group ids, metrics and logs; default `<a>-<b>` in the order of `clusters`.
    pub name: Option<String>,
    /// Where a flow starts in a partition it has never replicated.
    #[serde(default)]
    pub start: Start,
    /// Overrides `limits.in_flight_bytes` for both flows of this link.
    pub in_flight_bytes: Option<ByteSize>,
    /// Topics replicated, in both directions.
    #[serde(default)]
    pub topics: TopicsConfig,
    /// This link's override of `[topic_configs]`.
    #[serde(default)]
    pub topic_configs: LinkTopicConfigsConfig,
}

impl LinkConfig {
    /// The name, given or derived from the cluster ids.
    pub fn name(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.clusters.join("-"))
    }
}

/// `[links.topics]`: which topics a link replicates.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct TopicsConfig {
    /// A topic is replicated when one of these regexes matches its whole name...
    #[serde(default = "defaults::include")]
    pub include: Vec<TopicPattern>,
    /// ...and none of these does.
    #[serde(default)]
    pub exclude: Vec<TopicPattern>,
}

impl Default for TopicsConfig {
    fn default() -> Self {
        TopicsConfig {
            include: defaults::include(),
            exclude: Vec::new(),
        }
    }
}

/// `start`: where a flow begins in a partition with no replication history.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Start {
    /// From the log start: everything the source still holds.
    #[default]
    Earliest,
    /// From the end at first start: only records produced from then on.
    Latest,
}

impl Config {
    /// Reads, parses and validates a config file. Touches no cluster.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config = Config::parse(&text)?;
        config
            .api
            .resolve_paths(path.parent().unwrap_or(Path::new(".")));
        Ok(config)
    }

    /// Parses and validates config text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::from_toml(text, &e))?;
        config.validate()?;
        Ok(config)
    }

    /// What the engine runs. Panics only if called on a config that failed `validate()`.
    pub fn engine_spec(&self) -> EngineSpec {
        let clusters = self
            .clusters
            .iter()
            .map(|c| ClusterSpec {
                id: c.id.clone(),
                bootstrap_servers: c.bootstrap_servers.trim().to_owned(),
                options: c.options.clone(),
                producer: c.producer.clone(),
                consumer: c.consumer.clone(),
            })
            .collect();
        let links = self
            .links
            .iter()
            .zip(self.link_indexes())
            .map(|(l, clusters)| LinkSpec {
                name: l.name(),
                clusters,
                topics: TopicSelection {
                    include: l.topics.include.iter().map(|p| p.regex().clone()).collect(),
                    exclude: l.topics.exclude.iter().map(|p| p.regex().clone()).collect(),
                },
                start: match l.start {
                    Start::Earliest => StartPosition::Earliest,
                    Start::Latest => StartPosition::Latest,
                },
                in_flight_bytes: l.in_flight_bytes.unwrap_or(self.limits.in_flight_bytes).0,
                topic_configs: LinkTopicConfigs {
                    enabled: l.topic_configs.sync,
                    exclude: regexes(&l.topic_configs.exclude),
                },
            })
            .collect();
        let limits = Limits {
            refresh_interval: self.limits.refresh_interval.0,
            commit_interval: self.limits.commit_interval.0,
            request_timeout: self.limits.request_timeout.0,
            stall_timeout: self.limits.stall_timeout.0,
            in_flight_bytes: self.limits.in_flight_bytes.0,
            grow_target_partitions: self.limits.grow_target_partitions,
        };
        EngineSpec {
            clusters,
            links,
            draining: Vec::new(),
            limits,
            topic_configs: TopicConfigSync {
                enabled: self.topic_configs.sync,
                owner: self.topic_configs.owner.clone(),
                exclude: regexes(&self.topic_configs.exclude),
                acls: self.topic_configs.acls,
            },
        }
    }

    /// `[api] listen`, or the loopback default.
    pub fn api_listen(&self) -> SocketAddr {
        self.api.listen()
    }

    /// `[state] dir` for a config read from `file`: relative paths are relative to the
    /// file's directory.
    pub fn state_dir(&self, file: &Path) -> PathBuf {
        let base = file.parent().unwrap_or(Path::new("."));
        match &self.state.dir {
            Some(d) if d.is_absolute() => d.clone(),
            Some(d) => base.join(d),
            None => base.join("duplex-state"),
        }
    }

    /// `[metrics] listen`, if set.
    pub fn metrics_listen(&self) -> Option<SocketAddr> {
        self.metrics.listen.map(|l| l.0)
    }

    /// Index of a cluster id in `clusters`.
    fn cluster_index(&self, id: &str) -> Option<usize> {
        self.clusters.iter().position(|c| c.id == id)
    }

    /// Each link's two clusters as indexes. Only meaningful once validated.
    fn link_indexes(&self) -> Vec<[usize; 2]> {
        let idx = |id: &String| {
            self.cluster_index(id)
                .expect("validate() checked that link clusters are known")
        };
        self.links
            .iter()
            .map(|l| [idx(&l.clusters[0]), idx(&l.clusters[1])])
            .collect()
    }
}

fn regexes(patterns: &[TopicPattern]) -> Vec<regex::Regex> {
    patterns.iter().map(|p| p.regex().clone()).collect()
}
