//! Topic config sync: the settings of a replicated topic follow one owner cluster
//! (docs/topic-configs.md).
//!
//! - [`Policy`]: which keys are copied (everything the owner sets on the topic, minus
//!   the built-in exclude list, the engine's and the link's).
//! - [`Settings`]: what a DescribeConfigs answer says a topic has.
//! - [`plan`]: the changes that make a target's settings the owner's.
//! - [`crate::admin_ffi::alter_topic`]: IncrementalAlterConfigs, which rdkafka does not wrap.
//!
//! Only the flows on the owner's spanning tree of a topic copy its settings (as with
//! the owner's records, rule 2), so every cluster takes them from one neighbour and two
//! clusters never copy a value back and forth.

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use rdkafka::admin::{ConfigEntry, ConfigSource};
use regex::Regex;

use crate::spec::{LinkTopicConfigs, TopicConfigSync};

/// Keys never copied, whatever the config says: they describe the brokers of one
/// cluster, not the data (MirrorMaker 2's defaults, less `message.timestamp.type`, which
/// the data depends on, plus tiered storage and a key Kafka 4 removed).
pub const BUILT_IN_EXCLUDES: &[&str] = &[
    r"min\.insync\.replicas",
    r"follower\.replication\.throttled\.replicas",
    r"leader\.replication\.throttled\.replicas",
    r"unclean\.leader\.election\.enable",
    r"message\.timestamp\.difference\.max\.ms",
    r"remote\.storage\.enable",
    r"local\.retention\.(ms|bytes)",
    r"message\.format\.version",
];

/// What one flow copies.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Whether it copies settings at all (beyond cleanup.policy at creation).
    pub enabled: bool,
    /// Whether it copies READ and DESCRIBE topic ACLs too.
    pub acls: bool,
    /// The cluster whose settings win, when the config names one.
    pub owner: Option<String>,
    exclude: Vec<Regex>,
}

impl Policy {
    /// The policy of a flow of a link with `link`'s override, under `engine`'s.
    pub fn new(engine: &TopicConfigSync, link: &LinkTopicConfigs) -> Self {
        let built_in = BUILT_IN_EXCLUDES
            .iter()
            .map(|r| Regex::new(r).expect("built-in excludes compile"));
        Policy {
            enabled: engine.enabled && link.enabled,
            acls: engine.acls && link.enabled,
            owner: engine.owner.clone(),
            exclude: built_in
                .chain(engine.exclude.iter().cloned())
                .chain(link.exclude.iter().cloned())
                .collect(),
        }
    }

    /// Whether `key` is copied.
    pub fn copies(&self, key: &str) -> bool {
        !self.exclude.iter().any(|r| {
            r.find(key)
                .is_some_and(|m| m.start() == 0 && m.end() == key.len())
        })
    }
}

impl Default for Policy {
    fn default() -> Self {
        Policy::new(&TopicConfigSync::default(), &LinkTopicConfigs::default())
    }
}

/// A topic's settings, as one DescribeConfigs answer lists them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// Every key listed, with its value (`None`: no value, or a sensitive one).
    pub values: BTreeMap<String, Option<String>>,
    /// The keys set on the topic itself (not the broker's or the built-in default).
    pub own: BTreeSet<String>,
    /// Whether some entry is labelled with another source than a default: false for a
    /// broker that lists only the topic's own keys, all labelled defaults (Tansu 0.6).
    pub labelled: bool,
}

impl Settings {
    /// From the entries of one DescribeConfigs answer. A key is the topic's own when its
    /// source is the topic (DYNAMIC_TOPIC_CONFIG); a broker that labels every entry a
    /// default (Tansu 0.6 labels the topic's own settings DEFAULT_CONFIG and lists
    /// nothing else) has every listed key taken for the topic's own.
    pub fn from_entries(entries: &[ConfigEntry]) -> Self {
        let labelled = entries
            .iter()
            .any(|e| !matches!(e.source, ConfigSource::Default | ConfigSource::Unknown));
        Settings {
            values: entries
                .iter()
                .map(|e| (e.name.clone(), e.value.clone()))
                .collect(),
            own: entries
                .iter()
                .filter(|e| !e.is_read_only)
                .filter(|e| matches!(e.source, ConfigSource::DynamicTopic) || !labelled)
                .map(|e| e.name.clone())
                .collect(),
            labelled,
        }
    }

    /// The owner's settings a new topic is created with: its own keys that `policy`
    /// copies and whose value can be read.
    pub fn copied(&self, policy: &Policy) -> BTreeMap<String, String> {
        self.own
            .iter()
            .filter(|k| policy.copies(k))
            .filter_map(|k| Some((k.clone(), self.values.get(k)?.clone()?)))
            .collect()
    }
}

/// One change to a target topic's settings.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    /// Set `key` on the topic to `value`.
    Set(String, String),
    /// Remove the topic's own `key`: the target's default applies.
    Delete(String),
}

impl Change {
    /// The key it changes.
    pub fn key(&self) -> &str {
        match self {
            Change::Set(k, _) | Change::Delete(k) => k,
        }
    }
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::Set(k, v) => write!(f, "{k}={v}"),
            Change::Delete(k) => write!(f, "{k} (removed)"),
        }
    }
}

/// The changes that give `target` the owner's settings of the keys `policy` copies:
/// every key the owner sets on the topic with the owner's value, and every key the
/// target sets on the topic that the owner does not, removed. Excluded keys, keys whose
/// owner value cannot be read (sensitive) and keys already equal are left alone.
pub fn plan(owner: &Settings, target: &Settings, policy: &Policy) -> Vec<Change> {
    let mut changes = Vec::new();
    for (k, v) in owner.copied(policy) {
        if target.values.get(&k).and_then(|t| t.as_deref()) != Some(v.as_str()) {
            changes.push(Change::Set(k, v));
        }
    }
    for k in target.own.iter().filter(|k| policy.copies(k)) {
        if owner.own.contains(k) {
            continue;
        }
        // The owner lists the key with a default value equal to the target's: the
        // topic behaves the same on both, and removing it would change nothing visible.
        let same = matches!(
            (owner.values.get(k), target.values.get(k)),
            (Some(Some(o)), Some(Some(t))) if o == t
        );
        if !same {
            changes.push(Change::Delete(k.clone()));
        }
    }
    changes
}

/// The settings of `topics` on the cluster `admin` talks to, one DescribeConfigs
/// request for all: per topic, its settings or the broker's error for it. The outer
/// error is the request's (a broker that does not serve DescribeConfigs says so here).
pub async fn describe<C: rdkafka::ClientContext + 'static>(
    admin: &rdkafka::admin::AdminClient<C>,
    topics: &[String],
    timeout: std::time::Duration,
) -> rdkafka::error::KafkaResult<BTreeMap<String, Result<Settings, rdkafka::types::RDKafkaErrorCode>>>
{
    use rdkafka::admin::{AdminOptions, OwnedResourceSpecifier, ResourceSpecifier};
    let opts = AdminOptions::new()
        .request_timeout(Some(timeout))
        .operation_timeout(Some(timeout));
    let specs: Vec<ResourceSpecifier<'_>> =
        topics.iter().map(|t| ResourceSpecifier::Topic(t)).collect();
    let answers = admin.describe_configs(specs.iter(), &opts).await?;
    // librdkafka answers in the order asked; an error names no topic, so it is
    // matched by position, and an answer by the topic it names.
    Ok(topics
        .iter()
        .zip(answers)
        .map(|(t, a)| match a {
            Ok(r) => {
                let name = match r.specifier {
                    OwnedResourceSpecifier::Topic(n) => n,
                    _ => t.clone(),
                };
                (name, Ok(Settings::from_entries(&r.entries)))
            }
            Err(code) => (t.clone(), Err(code)),
        })
        .collect())
}
