//! Discovery: which source topics a link selects, and making sure each exists on the
//! target with the source's partition count and cleanup.policy before a flow writes.
//!
//! The engine never lets a producer auto-create a target topic: an auto-created topic
//! gets the broker's default shape (4 partitions on librdkafka's mock cluster), and the
//! partition numbers of rule 1 would no longer hold.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication};
use rdkafka::client::{Client, DefaultClientContext};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;

use rdkafka::types::RDKafkaErrorCode;

use crate::error::SyncError;
use crate::topic_configs::{Policy, Settings, describe};

/// Topic name → partition count.
pub type TopicMap = BTreeMap<String, usize>;

/// The selected topics of a cluster, as one metadata answer lists them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// Topics listed without an error, with their partition counts.
    pub topics: TopicMap,
    /// Selected topics listed with an error or without partitions (a leader election,
    /// a topic being created): they exist, but how many partitions they have is not
    /// known from this answer. Never taken for deleted.
    pub unknown: Vec<String>,
}

/// Lists the topics of a cluster, as seen by `client`, that `selection` selects.
/// Blocking: call from `spawn_blocking`.
pub fn selected_topics<C: ClientContext>(
    client: &Client<C>,
    cluster: &str,
    selects: impl Fn(&str) -> bool,
    timeout: Duration,
) -> Result<Listing, SyncError> {
    let md = client
        .fetch_metadata(None, timeout)
        .map_err(|source| SyncError::Kafka {
            op: "fetch metadata",
            cluster: cluster.to_string(),
            source,
        })?;
    let mut listing = Listing::default();
    for t in md.topics().iter().filter(|t| selects(t.name())) {
        if t.error().is_none() && !t.partitions().is_empty() {
            listing
                .topics
                .insert(t.name().to_string(), t.partitions().len());
        } else {
            listing.unknown.push(t.name().to_string());
        }
    }
    Ok(listing)
}

/// Partition count of `topic` on a cluster, or `None` when it does not exist.
/// Blocking. Uses a consumer-type client, which never triggers auto-creation.
pub fn partition_count(
    client: &BaseConsumer,
    cluster: &str,
    topic: &str,
    timeout: Duration,
) -> Result<Option<usize>, SyncError> {
    let md = client
        .fetch_metadata(Some(topic), timeout)
        .map_err(|source| SyncError::Kafka {
            op: "fetch topic metadata",
            cluster: cluster.to_string(),
            source,
        })?;
    Ok(md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .and_then(|t| {
            if t.error().is_some() || t.partitions().is_empty() {
                None
            } else {
                Some(t.partitions().len())
            }
        }))
}

/// Admin clients of one flow: the source (to read topic configs) and the target.
#[derive(Clone)]
pub struct TopicCreator {
    /// Source cluster id.
    pub source_id: String,
    /// Target cluster id.
    pub target_id: String,
    /// Admin client on the source.
    pub source: Arc<AdminClient<DefaultClientContext>>,
    /// Admin client on the target.
    pub target: Arc<AdminClient<DefaultClientContext>>,
    /// Request timeout for both.
    pub timeout: Duration,
}

impl std::fmt::Debug for TopicCreator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopicCreator")
            .field("source", &self.source_id)
            .field("target", &self.target_id)
            .finish()
    }
}

impl TopicCreator {
    fn err(&self, topic: &str, reason: String) -> SyncError {
        SyncError::TargetTopic {
            cluster: self.target_id.clone(),
            topic: topic.to_string(),
            reason,
        }
    }

    /// Creates `topic` on the target with `partitions` partitions and the source's
    /// settings: its cleanup.policy always, and the other keys the source sets on the
    /// topic that `policy` copies (docs/topic-configs.md). A target that refuses one of
    /// those gets the topic with its cleanup.policy alone, and config sync reports the
    /// key at each refresh. Says clearly what to do when the target cannot do it.
    pub async fn create(
        &self,
        topic: &str,
        partitions: usize,
        policy: &Policy,
    ) -> Result<(), SyncError> {
        let described = describe(&self.source, &[topic.to_string()], self.timeout)
            .await
            .map_err(|e| self.err(topic, format!("cannot read its settings on source cluster {}: {}; create it on the target with {partitions} partitions", self.source_id, explain(&e))))?;
        // A source that answers no settings for the topic at all (librdkafka's mock
        // cluster) gets the broker's default cleanup.policy, "delete". An error for the
        // topic (a broker that does not know it yet, an ACL) is not taken for "no
        // settings": the topic would be created without them, and if this target owns
        // the topic's settings it would then spread that loss back.
        let settings = match described.get(topic) {
            Some(Ok(s)) => s.clone(),
            Some(Err(code)) => {
                return Err(self.err(topic, format!("cannot read its settings on source cluster {} ({code}); create it on the target with {partitions} partitions and the source's settings", self.source_id)));
            }
            None => Settings::default(),
        };
        let policy_value = settings
            .values
            .get("cleanup.policy")
            .cloned()
            .flatten()
            .unwrap_or_else(|| "delete".to_string());
        let mut copied = if policy.enabled {
            settings.copied(policy)
        } else {
            BTreeMap::new()
        };
        copied.insert("cleanup.policy".to_string(), policy_value.clone());
        // A setting the target refuses fails the creation, naming them all, rather than
        // creating the topic without them (the same loss as above); excluding the key
        // ([topic_configs] exclude) lets it be created.
        let listed: Vec<String> = copied.iter().map(|(k, v)| format!("{k}={v}")).collect();
        self.create_with(topic, partitions, &copied)
            .await
            .map_err(|code| self.err(topic, format!("cannot create it ({code}) with {partitions} partitions and the source's settings {}; create it so, or exclude a setting the target refuses ([topic_configs] exclude)", listed.join(", "))))
    }

    /// Creates `topic` with `partitions` and `settings` on the target, the brokers'
    /// default replication; one that exists already is fine.
    pub(crate) async fn create_with(
        &self,
        topic: &str,
        partitions: usize,
        settings: &BTreeMap<String, String>,
    ) -> Result<(), RDKafkaErrorCode> {
        let opts = AdminOptions::new()
            .request_timeout(Some(self.timeout))
            .operation_timeout(Some(self.timeout));
        let mut new = NewTopic::new(topic, partitions as i32, TopicReplication::Fixed(-1));
        for (k, v) in settings {
            new = new.set(k, v);
        }
        let results = self
            .target
            .create_topics([&new], &opts)
            .await
            .map_err(|e| e.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Fail))?;
        match results.into_iter().next() {
            Some(Ok(_)) | Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) => Ok(()),
            Some(Err((_, code))) => Err(code),
            None => Err(RDKafkaErrorCode::Fail),
        }
    }
}

impl TopicCreator {
    /// Adds partitions to `topic` on the target, which has `has`, up to the source's
    /// `partitions` (CreatePartitions): Duplex keeps partition numbers, so every source
    /// partition needs its namesake. Says clearly what to do when the target cannot.
    pub async fn grow(&self, topic: &str, has: usize, partitions: usize) -> Result<(), SyncError> {
        let opts = AdminOptions::new()
            .request_timeout(Some(self.timeout))
            .operation_timeout(Some(self.timeout));
        let advice = format!(
            "it has {has} partitions and the source has {partitions}; Duplex keeps partition \
             numbers, so add partitions on the target"
        );
        let results = self
            .target
            .create_partitions([&NewPartitions::new(topic, partitions)], &opts)
            .await
            .map_err(|e| {
                self.err(
                    topic,
                    format!("{advice} (adding them failed: {})", explain(&e)),
                )
            })?;
        match results.into_iter().next() {
            Some(Ok(_)) => Ok(()),
            // Another flow to this target grew it first (the count is absolute): the
            // caller checks the metadata again.
            Some(Err((_, rdkafka::types::RDKafkaErrorCode::InvalidPartitions))) => Ok(()),
            Some(Err((_, code))) => {
                Err(self.err(topic, format!("{advice} (adding them failed: {code})")))
            }
            None => Err(self.err(
                topic,
                format!("{advice} (the broker returned no result for CreatePartitions)"),
            )),
        }
    }
}

fn explain(e: &KafkaError) -> String {
    match e.rdkafka_error_code() {
        Some(rdkafka::types::RDKafkaErrorCode::OperationTimedOut) => {
            format!("{e}: the cluster did not answer the admin request")
        }
        _ => e.to_string(),
    }
}
