//! A consumer group on one cluster: its committed offsets, its members, and commits on
//! its behalf. The client acts for the group without subscribing, so it never joins it.
//! Blocking: call from `spawn_blocking`.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;

use super::OffsetsError;
use crate::clients;
use crate::error::SyncError;
use crate::spec::ClusterSpec;

/// (topic, partition) → offset.
pub type Offsets = BTreeMap<(String, i32), i64>;

/// A client of `cluster` that reads and commits for `group`, dropped on a thread of
/// its own (`clients::Closing`).
pub fn client(
    cluster: &ClusterSpec,
    group: &str,
) -> Result<clients::Closing<BaseConsumer>, SyncError> {
    clients::group_reader(cluster, "duplex-offsets", group)
        .create()
        .map(clients::Closing::new)
        .map_err(|source| SyncError::Kafka {
            op: "create consumer",
            cluster: cluster.id.clone(),
            source,
        })
}

/// The group's committed offsets among `partitions`; partitions it never committed are
/// left out. A partition the broker answers with an error is an error: an offset that
/// could not be read is never taken for none.
pub fn committed(
    client: &BaseConsumer,
    cluster: &str,
    partitions: &[(String, i32)],
    timeout: Duration,
) -> Result<Offsets, SyncError> {
    let kafka = |source| SyncError::Kafka {
        op: "fetch committed offsets",
        cluster: cluster.to_string(),
        source,
    };
    let mut tpl = TopicPartitionList::new();
    for (t, p) in partitions {
        tpl.add_partition(t, *p);
    }
    let got = client.committed_offsets(tpl, timeout).map_err(kafka)?;
    let mut out = Offsets::new();
    for e in got.elements() {
        e.error().map_err(kafka)?;
        if let Offset::Offset(o) = e.offset() {
            out.insert((e.topic().to_string(), e.partition()), o);
        }
    }
    Ok(out)
}

/// A member of a group, as the group coordinator describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Member {
    /// Member id.
    pub id: String,
    /// The client.id of its consumer.
    pub client_id: String,
    /// The host it connected from.
    pub host: String,
}

impl std::fmt::Display for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({} on {})", self.id, self.client_id, self.host)
    }
}

/// The states of a classic group that DescribeGroups may answer.
const STATES: [&str; 5] = [
    "Empty",
    "Dead",
    "Stable",
    "PreparingRebalance",
    "CompletingRebalance",
];

/// The group's active members (DescribeGroups). An error unless the broker described
/// the group with a known state: a group whose members are unknown (no answer, an
/// error for the group, which librdkafka reports as a group without a state, or a
/// group of the new consumer protocol that the classic call does not describe) is
/// never taken for empty.
pub fn members(
    client: &BaseConsumer,
    cluster: &str,
    group: &str,
    timeout: Duration,
) -> Result<Vec<Member>, OffsetsError> {
    let unknown = |reason: String| OffsetsError::MembersUnknown {
        cluster: cluster.to_string(),
        group: group.to_string(),
        reason,
    };
    let list = client
        .fetch_group_list(Some(group), timeout)
        .map_err(|e| unknown(format!("DescribeGroups failed: {e}")))?;
    let Some(g) = list.groups().iter().find(|g| g.name() == group) else {
        return Err(unknown("the broker did not describe it".into()));
    };
    if !STATES.contains(&g.state()) {
        return Err(unknown(format!(
            "the broker described it without a known state ({:?})",
            g.state()
        )));
    }
    Ok(g.members()
        .iter()
        .map(|m| Member {
            id: m.id().to_string(),
            client_id: m.client_id().to_string(),
            host: m.client_host().to_string(),
        })
        .collect())
}

/// Commits `offsets` for the group, each with `metadata`. A broker refuses a commit
/// from outside the group while it has members: that comes back as the error.
pub fn commit(
    client: &BaseConsumer,
    cluster: &str,
    offsets: &Offsets,
    metadata: &str,
) -> Result<(), SyncError> {
    let kafka = |source| SyncError::Kafka {
        op: "commit group offsets",
        cluster: cluster.to_string(),
        source,
    };
    let mut tpl = TopicPartitionList::new();
    for ((t, p), o) in offsets {
        let mut e = tpl.add_partition(t, *p);
        e.set_offset(Offset::Offset(*o)).map_err(kafka)?;
        e.set_metadata(metadata);
    }
    client.commit(&tpl, CommitMode::Sync).map_err(kafka)?;
    Ok(())
}

/// The names of every consumer group on a cluster (ListGroups).
pub fn list(cluster: &ClusterSpec, timeout: Duration) -> Result<Vec<String>, SyncError> {
    let c = client(cluster, "duplex-offsets.list")?;
    let list = c
        .fetch_group_list(None, timeout)
        .map_err(|source| SyncError::Kafka {
            op: "list consumer groups",
            cluster: cluster.id.clone(),
            source,
        })?;
    Ok(list.groups().iter().map(|g| g.name().to_string()).collect())
}
