//! The event types: what the log records, each a typed, versioned payload.
//!
//! Stored as JSON (one object per event, `{"seq":..,"v":1,"type":"FlowPaused",...}`):
//! readable with `ldb` in an emergency, and a new field with a default keeps old logs
//! readable. A payload whose meaning changes gets a new `v`; the fold knows every
//! version it was ever written with. docs/api.md lists them all (the event catalogue).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One recorded event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Position in the log: 1, 2, 3, ... without gaps.
    pub seq: u64,
    /// When it was recorded, Unix milliseconds.
    pub time_ms: i64,
    /// The token name of the caller, `anonymous` without tokens, `service` for what the
    /// service observed or did by itself.
    pub actor: String,
    /// The idempotency key of the command that recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The payload's version.
    pub v: u32,
    /// What happened.
    #[serde(flatten)]
    pub payload: Payload,
}

/// What an event says happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Payload {
    /// The service started (and rebuilt its state from the log).
    ServiceStarted {
        /// Duplex's version.
        version: String,
        /// The config file it runs.
        config_file: String,
    },
    /// The config file's clusters and links were applied (docs/api.md, "The config file
    /// and the log").
    ConfigApplied {
        /// xxh3-64 of the topology, hex.
        digest: String,
        /// The clusters after the change.
        clusters: Vec<ClusterRecord>,
        /// The links after the change.
        links: Vec<LinkRecord>,
        /// What changed since the last one, one line each; empty on the first.
        changes: Vec<String>,
    },
    /// Clusters or links were added, links removed or their topics changed while the
    /// service ran (AddCluster, AddLink, RemoveLink, SetLinkTopics), taking effect at
    /// `cut` (docs/topology-changes.md): records below it are routed as before, records
    /// at or past it by the links after. A link in the links before and not after drains
    /// until `LinkRemoved`.
    TopologyChanged {
        /// The links after the change.
        links: Vec<LinkRecord>,
        /// What changed, one line each.
        changes: Vec<String>,
        /// Where it took effect.
        cut: Vec<CutRecord>,
        /// The clusters it added (AddCluster).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        clusters_added: Vec<ClusterRecord>,
    },
    /// A removed link's drain is over: its flows carried what the routes before its
    /// removal owed and are retired.
    LinkRemoved {
        /// The link's name.
        link: String,
    },
    /// The last topology change settled: drained, removed links retired, and each
    /// origin's order restored on every cluster (docs/topology-changes.md).
    TopologySettled {
        /// The sequence number of the `TopologyChanged` it settles.
        change: u64,
    },
    /// An operator paused a flow.
    FlowPaused {
        /// `source->target`.
        flow: String,
        /// Its link.
        link: String,
    },
    /// An operator resumed a flow.
    FlowResumed {
        /// `source->target`.
        flow: String,
        /// Its link.
        link: String,
    },
    /// A flow's observed state changed.
    FlowStateChanged {
        /// `source->target`.
        flow: String,
        /// `starting`, `running`, `pausing`, `paused`, `restarting`, `faulted`, `stopped`.
        state: String,
        /// The error behind `restarting` or `faulted`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A parity run was started; its id is this event's sequence number.
    VerificationStarted {
        /// The clusters compared, the source first.
        between: Vec<String>,
        /// The topic selection.
        topics: String,
        /// Where its report is written.
        report_dir: String,
    },
    /// An operator asked a parity run to stop.
    VerificationCancelRequested {
        /// The run's id.
        verification: u64,
    },
    /// A parity run ended.
    VerificationFinished {
        /// The run's id.
        verification: u64,
        /// How it ended.
        outcome: VerificationOutcome,
        /// What the comparison counted (`passed` and `failed` only), the report's
        /// `totals` (schema `duplex.parity/1`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        totals: Option<duplex_verifier::report::Counts>,
        /// Why it ended in `error`, or what cancelled it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A consumer group's offsets were synced from one cluster to another
    /// (SyncGroupOffsets, docs/offsets.md), whatever the sync did.
    GroupOffsetsSynced {
        /// What it did.
        sync: GroupSyncRecord,
    },
}

/// A group sync as the log records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSyncRecord {
    /// The consumer group.
    pub group: String,
    /// The cluster it committed its offsets on.
    pub from: String,
    /// The cluster its offsets were committed on.
    pub to: String,
    /// Its active members on `to`: when there are any, nothing was committed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<MemberRecord>,
    /// Per partition the group committed on `from`.
    pub partitions: Vec<PartitionSyncRecord>,
    /// Why the commit failed, for the partitions marked `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl GroupSyncRecord {
    /// Whether every partition is at its translated offset.
    pub fn synced(&self) -> bool {
        self.members.is_empty()
            && self.error.is_none()
            && self.partitions.iter().all(|p| {
                matches!(
                    p.action,
                    SyncActionRecord::Committed | SyncActionRecord::Unchanged
                )
            })
    }
}

/// A member of a consumer group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    /// Member id.
    pub id: String,
    /// Its consumer's client.id.
    pub client_id: String,
    /// The host it connected from.
    pub host: String,
}

/// One partition of a group sync: its translation and what was done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionSyncRecord {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The group's committed offset on `from`.
    pub committed: i64,
    /// The translated offset; none when refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
    /// Records at or after `offset` on `to` the group consumed on `from`.
    #[serde(default)]
    pub redelivered: u64,
    /// Why it was not translated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<RefusalRecord>,
    /// The group's offset on `to` before the sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<i64>,
    /// What was done.
    pub action: SyncActionRecord,
}

/// Why a partition was not translated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusalRecord {
    /// `behind`, `below_log_start`, `past_end`, `no_partition`.
    pub kind: String,
    /// In words.
    pub reason: String,
    /// With `behind`: each origin and how far (`[origin, partition, consumed, held]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub behind: Vec<BehindRecord>,
}

/// An origin whose records a group consumed have not all reached the target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BehindRecord {
    /// The origin cluster.
    pub origin: String,
    /// Its partition.
    pub origin_partition: i32,
    /// The highest origin offset of it the group consumed.
    pub consumed: i64,
    /// The highest origin offset of it the target holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<i64>,
}

/// What a group sync did with a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncActionRecord {
    /// The translated offset was committed.
    Committed,
    /// The group already was there.
    Unchanged,
    /// The translated offset is below the group's offset on the target: left there.
    KeptAhead,
    /// Not translated: nothing committed.
    Refused,
    /// Nothing committed: the group has members on the target.
    Skipped,
    /// The commit failed (`error`); the partition holds `before`.
    Failed,
}

/// How a parity run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerificationOutcome {
    /// Parity.
    Passed,
    /// The sides differ.
    Failed,
    /// No verdict: an error.
    Error,
    /// No verdict: cancelled, or the service stopped under it.
    Cancelled,
}

impl Payload {
    /// Every payload type's name, as [`Payload::type_name`] gives it: what a client may
    /// ask the log for (ListEvents and WatchEvents `types`).
    pub const TYPE_NAMES: [&'static str; 12] = [
        "ServiceStarted",
        "ConfigApplied",
        "TopologyChanged",
        "LinkRemoved",
        "TopologySettled",
        "FlowPaused",
        "FlowResumed",
        "FlowStateChanged",
        "VerificationStarted",
        "VerificationCancelRequested",
        "VerificationFinished",
        "GroupOffsetsSynced",
    ];

    /// The type name, as stored and as the API's `Event.type` says.
    pub fn type_name(&self) -> &'static str {
        match self {
            Payload::ServiceStarted { .. } => "ServiceStarted",
            Payload::ConfigApplied { .. } => "ConfigApplied",
            Payload::TopologyChanged { .. } => "TopologyChanged",
            Payload::LinkRemoved { .. } => "LinkRemoved",
            Payload::TopologySettled { .. } => "TopologySettled",
            Payload::FlowPaused { .. } => "FlowPaused",
            Payload::FlowResumed { .. } => "FlowResumed",
            Payload::FlowStateChanged { .. } => "FlowStateChanged",
            Payload::VerificationStarted { .. } => "VerificationStarted",
            Payload::VerificationCancelRequested { .. } => "VerificationCancelRequested",
            Payload::VerificationFinished { .. } => "VerificationFinished",
            Payload::GroupOffsetsSynced { .. } => "GroupOffsetsSynced",
        }
    }

    /// The current version of this type's payload.
    pub fn version(&self) -> u32 {
        1
    }

    /// The objects a command event changes (`flow:a->b`, `link:x`, `*` for everything),
    /// for optimistic concurrency. What the service observes (a flow's state) changes
    /// no object: a client's expected revision is not spoiled by a flow restarting.
    pub fn touches(&self) -> Vec<String> {
        match self {
            Payload::ConfigApplied { .. } | Payload::TopologyChanged { .. } => vec!["*".into()],
            Payload::FlowPaused { flow, link } | Payload::FlowResumed { flow, link } => {
                vec![format!("flow:{flow}"), format!("link:{link}")]
            }
            Payload::VerificationCancelRequested { verification } => {
                vec![format!("verification:{verification}")]
            }
            Payload::LinkRemoved { link } => vec![format!("link:{link}")],
            Payload::GroupOffsetsSynced { sync } => {
                vec![format!("group:{}/{}", sync.to, sync.group)]
            }
            // A run that starts is a new object; how one ends is observed.
            Payload::ServiceStarted { .. }
            | Payload::TopologySettled { .. }
            | Payload::FlowStateChanged { .. }
            | Payload::VerificationStarted { .. }
            | Payload::VerificationFinished { .. } => Vec::new(),
        }
    }
}

/// A cluster as the log records it: its id and bootstrap servers. A config file
/// cluster's client options stay in the file (they may hold secrets); a cluster added
/// through the API (AddCluster) has its options here, none of them secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterRecord {
    /// Stable id.
    pub id: String,
    /// `host:port,...`.
    pub bootstrap_servers: String,
    /// The client options of a cluster added through the API; empty for the file's.
    #[serde(default, skip_serializing_if = "ClientOptions::is_empty")]
    pub client: ClientOptions,
}

/// librdkafka options of a cluster added through the API, as a `[[clusters]]` table has
/// them; never a secret (the API refuses those).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientOptions {
    /// For every client.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
    /// For producers writing to it, over `options`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub producer: BTreeMap<String, String>,
    /// For consumers reading it, over `options`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub consumer: BTreeMap<String, String>,
}

impl ClientOptions {
    /// Whether it sets nothing.
    pub fn is_empty(&self) -> bool {
        self.options.is_empty() && self.producer.is_empty() && self.consumer.is_empty()
    }
}

/// A link as the log records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkRecord {
    /// Its name.
    pub name: String,
    /// Its two cluster ids.
    pub clusters: [String; 2],
    /// Topic patterns replicated.
    pub include: Vec<String>,
    /// Topic patterns never replicated.
    pub exclude: Vec<String>,
}

/// One topic's cut on one cluster: the end offset of each of its partitions there when
/// a topology change took effect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CutRecord {
    /// The topic.
    pub topic: String,
    /// The cluster, the origin of the records it measures.
    pub cluster: String,
    /// End offset of partition 0, 1, ...
    pub ends: Vec<i64>,
}
