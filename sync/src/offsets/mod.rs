//! Consumer-group offsets, translated exactly between clusters (DESIGN.md rule 4,
//! docs/offsets.md), and group sync.
//!
//! - [`model`]: the translation of one partition from the records of both sides.
//! - [`read`]: reading partitions as a group sees them, with each record's origin.
//! - [`group`]: a group's committed offsets and members, and commits for it.
//! - [`apply`]: group sync, committing translated offsets on the target.
//!
//! Translation is derived from what the clusters hold, never from a side table: the
//! source's records below the group's committed offset say what it consumed, per
//! origin; the target's records say where each of those lies there. All functions here
//! block: call them from `spawn_blocking`.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use regex::Regex;
use serde::Serialize;

use crate::error::SyncError;
use crate::spec::ClusterSpec;

pub mod apply;
pub mod group;
pub mod index;
pub mod model;
pub mod read;
pub mod runs;
#[cfg(test)]
mod tests;

pub use apply::{Action, Applied, GroupSync, SyncOptions, sync_group};
pub use group::{Member, Offsets};
pub use model::{Behind, Consumed, Translated, Translator};

/// What to translate: a group's offsets from one cluster to another.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The consumer group.
    pub group: &'a str,
    /// The cluster where the group committed its offsets.
    pub from: &'a ClusterSpec,
    /// The cluster to translate them to (any cluster of the mesh, not only a neighbour).
    pub to: &'a ClusterSpec,
    /// Topics to translate (all the group committed when None; internal `__` topics
    /// never).
    pub topics: Option<&'a Regex>,
    /// How long a cluster may take to answer.
    pub timeout: Duration,
    /// The translation index to read through and extend; `None` reads both sides in
    /// full.
    pub index: Option<&'a index::Index>,
}

/// Why a partition was not translated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Refusal {
    /// Records the group consumed have not all reached the target.
    Behind {
        /// Each origin whose records are missing.
        origins: Vec<Behind>,
    },
    /// The committed offset lies below the source's log start: what the group consumed
    /// there is deleted, so it cannot be known.
    BelowLogStart {
        /// The source's log start.
        log_start: i64,
    },
    /// The committed offset lies past the source's end (a truncated or recreated topic).
    PastEnd {
        /// The source's end.
        end: i64,
    },
    /// The target has no such partition.
    NoPartition {
        /// The target's partition count of the topic (0 when it has no such topic).
        partitions: usize,
    },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Behind { origins } => {
                for (i, b) in origins.iter().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    write!(f, "{b}")?;
                }
                Ok(())
            }
            Refusal::BelowLogStart { log_start } => write!(
                f,
                "the committed offset is below the source's log start {log_start}: what the \
                 group consumed is deleted there"
            ),
            Refusal::PastEnd { end } => write!(
                f,
                "the committed offset is past the source's end {end} (truncated or recreated?)"
            ),
            Refusal::NoPartition { partitions: 0 } => f.write_str("the target has no such topic"),
            Refusal::NoPartition { partitions } => write!(
                f,
                "the target has no such partition (the topic has {partitions} there)"
            ),
        }
    }
}

/// One partition's translation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The group's committed offset on the source.
    pub committed: i64,
    /// The translation, or why there is none.
    pub outcome: Result<Translated, Refusal>,
}

/// A group's offsets translated from one cluster to another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translation {
    /// The group.
    pub group: String,
    /// Source cluster id.
    pub from: String,
    /// Target cluster id.
    pub to: String,
    /// Every partition the group committed on the source, in topic and partition order.
    pub partitions: Vec<Partition>,
    /// What the translation index did, both sides summed (zero without an index).
    pub index: index::IndexUse,
}

impl Translation {
    /// Whether every partition was translated.
    pub fn complete(&self) -> bool {
        self.partitions.iter().all(|p| p.outcome.is_ok())
    }

    /// The translated offsets, to commit.
    pub fn offsets(&self) -> Offsets {
        self.partitions
            .iter()
            .filter_map(|p| {
                let t = p.outcome.as_ref().ok()?;
                Some(((p.topic.clone(), p.partition), t.offset))
            })
            .collect()
    }
}

/// Errors that stop a translation or a sync as a whole.
#[derive(Debug, thiserror::Error)]
pub enum OffsetsError {
    /// A cluster could not be read or written.
    #[error(transparent)]
    Sync(#[from] SyncError),
    /// A topic the translation needs is listed with an error (a leader election, no
    /// Describe permission): its partitions are never left out silently.
    #[error("topic {topic} on cluster {cluster}: {error}; translate again once it answers")]
    Topic {
        /// The cluster.
        cluster: String,
        /// The topic.
        topic: String,
        /// The metadata error.
        error: String,
    },
    /// Whether the group has members on the target cannot be told: nothing is committed.
    #[error(
        "cannot tell whether group {group} has members on cluster {cluster}: {reason}; nothing committed"
    )]
    MembersUnknown {
        /// The target cluster.
        cluster: String,
        /// The group.
        group: String,
        /// Why.
        reason: String,
    },
    /// The group has no committed offset on the source among the selected topics.
    #[error("group {group} has no committed offsets on cluster {cluster}{}", topics_note(.topics))]
    UnknownGroup {
        /// The group.
        group: String,
        /// The source cluster.
        cluster: String,
        /// The `--topics` pattern, if any.
        topics: Option<String>,
    },
}

fn topics_note(topics: &Option<String>) -> String {
    topics
        .as_ref()
        .map(|t| format!(" in topics matching {t}"))
        .unwrap_or_default()
}

fn kafka(op: &'static str, cluster: &str) -> impl FnOnce(rdkafka::error::KafkaError) -> SyncError {
    let cluster = cluster.to_string();
    move |source| SyncError::Kafka {
        op,
        cluster,
        source,
    }
}

/// A topic's partition count, or the error its metadata came with.
type Listed = BTreeMap<String, Result<usize, String>>;

/// The topics a cluster holds, internal topics left out.
fn topics(client: &BaseConsumer, cluster: &str, timeout: Duration) -> Result<Listed, SyncError> {
    let md = client
        .fetch_metadata(None, timeout)
        .map_err(kafka("fetch metadata", cluster))?;
    Ok(md
        .topics()
        .iter()
        .filter(|t| !t.name().starts_with("__"))
        .map(|t| {
            let count = match t.error() {
                None => Ok(t.partitions().len()),
                Some(e) => Err(rdkafka::types::RDKafkaErrorCode::from(e).to_string()),
            };
            (t.name().to_string(), count)
        })
        .collect())
}

/// A listed topic's partition count (0 when not listed); its metadata error as an error.
fn count(listed: &Listed, cluster: &str, topic: &str) -> Result<usize, OffsetsError> {
    match listed.get(topic) {
        None => Ok(0),
        Some(Ok(n)) => Ok(*n),
        Some(Err(e)) => Err(OffsetsError::Topic {
            cluster: cluster.to_string(),
            topic: topic.to_string(),
            error: e.clone(),
        }),
    }
}

/// Translates the group's committed offsets from `req.from` to `req.to`, reading both.
pub fn translate(req: &Request<'_>) -> Result<Translation, OffsetsError> {
    let (from, to) = (&req.from.id, &req.to.id);
    let a = group::client(req.from, req.group)?;
    let b = group::client(req.to, req.group)?;
    let a_topics = topics(&a, from, req.timeout)?;
    let mut selected: Vec<(String, i32)> = Vec::new();
    for t in a_topics.keys() {
        if req.topics.is_none_or(|re| re.is_match(t)) {
            let n = count(&a_topics, from, t)?;
            selected.extend((0..n as i32).map(|p| (t.clone(), p)));
        }
    }
    let committed = group::committed(&a, from, &selected, req.timeout)?;
    if committed.is_empty() {
        return Err(OffsetsError::UnknownGroup {
            group: req.group.to_string(),
            cluster: from.clone(),
            topics: req.topics.map(|r| r.as_str().to_string()),
        });
    }
    let b_topics = topics(&b, to, req.timeout)?;
    let mut by_topic: BTreeMap<&str, Vec<(i32, i64)>> = BTreeMap::new();
    for ((t, p), o) in &committed {
        by_topic.entry(t).or_default().push((*p, *o));
    }
    let admins = match req.index {
        Some(_) => Some((admin(req.from)?, admin(req.to)?)),
        None => None,
    };
    let mut partitions = Vec::new();
    let mut used = index::IndexUse::default();
    for (topic, parts) in by_topic {
        let on_b = count(&b_topics, to, topic)?;
        // Per side, the index is used for a topic it may index (no compaction).
        let (ia, ib) = match &admins {
            Some((aa, ba)) => (
                indexed(req, aa, (from, topic, count(&a_topics, from, topic)?)),
                indexed(req, ba, (to, topic, on_b)),
            ),
            None => (None, None),
        };
        let (done, u) = translate_topic(req, (&a, ia), (&b, ib), topic, &parts, on_b)?;
        partitions.extend(done);
        used.add(u);
    }
    Ok(Translation {
        group: req.group.to_string(),
        from: from.clone(),
        to: to.clone(),
        partitions,
        index: used,
    })
}

/// The index, when it may hold `topic` on the cluster `admin` talks to.
/// A topic it may not hold has its entries there removed.
fn indexed<'x>(
    req: &Request<'x>,
    admin: &AdminClient<DefaultClientContext>,
    (cluster, topic, partitions): (&str, &str, usize),
) -> Option<&'x index::Index> {
    let ix = req.index?;
    if ix.indexes(admin, topic, req.timeout) {
        Some(ix)
    } else {
        ix.forget(cluster, topic, 0..partitions as i32);
        None
    }
}

fn admin(c: &ClusterSpec) -> Result<AdminClient<DefaultClientContext>, SyncError> {
    crate::clients::admin(c, "duplex-offsets")
        .create()
        .map_err(|source| SyncError::Kafka {
            op: "create admin client",
            cluster: c.id.clone(),
            source,
        })
}

/// Translates one topic's partitions: reads the source below each committed offset,
/// then the target's partitions to their end, each through its index when given one.
fn translate_topic(
    req: &Request<'_>,
    (a, a_index): (&BaseConsumer, Option<&index::Index>),
    (b, b_index): (&BaseConsumer, Option<&index::Index>),
    topic: &str,
    parts: &[(i32, i64)],
    on_b: usize,
) -> Result<(Vec<Partition>, index::IndexUse), SyncError> {
    let mut used = index::IndexUse::default();
    let (from, to) = (&req.from.id, &req.to.id);
    let mut outcomes: Vec<Option<Refusal>> = vec![None; parts.len()];
    let mut a_ranges = Vec::new();
    let mut b_ranges = Vec::new();
    let (mut a_parts, mut b_parts) = (Vec::new(), Vec::new());
    let mut index = Vec::new();
    for (i, &(p, o)) in parts.iter().enumerate() {
        let (low, high) = a
            .fetch_watermarks(topic, p, req.timeout)
            .map_err(kafka("fetch watermarks", from))?;
        let refusal = if o < low {
            Some(Refusal::BelowLogStart { log_start: low })
        } else if o > high {
            Some(Refusal::PastEnd { end: high })
        } else if p as usize >= on_b {
            Some(Refusal::NoPartition { partitions: on_b })
        } else {
            None
        };
        if refusal.is_some() {
            outcomes[i] = refusal;
            continue;
        }
        let (b_low, b_high) = b
            .fetch_watermarks(topic, p, req.timeout)
            .map_err(kafka("fetch watermarks", to))?;
        a_ranges.push(read::Range {
            partition: p,
            from: low,
            to: Some(o),
        });
        a_parts.push(index::Part {
            partition: p,
            log_start: low,
            high,
            to: Some(o),
        });
        b_ranges.push((
            read::Range {
                partition: p,
                from: b_low,
                to: None,
            },
            b_high > b_low,
        ));
        b_parts.push(index::Part {
            partition: p,
            log_start: b_low,
            high: b_high,
            to: None,
        });
        index.push(i);
    }
    let mut consumed: Vec<Consumed> = index
        .iter()
        .map(|&i| Consumed::new(from, parts[i].0, parts[i].1))
        .collect();
    match a_index {
        Some(ix) => {
            let (runs, u) = ix.runs(a, from, topic, &a_parts, req.timeout)?;
            used.add(u);
            for (c, r) in consumed.iter_mut().zip(&runs) {
                r.consumed_by(c);
            }
        }
        None => read::read(a, from, topic, &a_ranges, req.timeout, |k, r| {
            consumed[k].observe(r);
        })?,
    }
    let mut walks: Vec<Translator<'_>> = consumed.iter().map(Translator::new).collect();
    match b_index {
        Some(ix) => {
            let (runs, u) = ix.runs(b, to, topic, &b_parts, req.timeout)?;
            used.add(u);
            for (w, r) in walks.iter_mut().zip(&runs) {
                r.walk(w);
            }
        }
        None => {
            // An empty target partition sends no end-of-partition event to wait for.
            let (to_read, reading): (Vec<read::Range>, Vec<usize>) = b_ranges
                .iter()
                .enumerate()
                .filter(|(_, (_, nonempty))| *nonempty)
                .map(|(k, (r, _))| (*r, k))
                .unzip();
            read::read(b, to, topic, &to_read, req.timeout, |k, r| {
                walks[reading[k]].observe(r);
            })?;
        }
    }
    let mut results: Vec<Option<Result<Translated, Refusal>>> =
        outcomes.into_iter().map(|r| r.map(Err)).collect();
    for ((walk, &i), (range, _)) in walks.into_iter().zip(&index).zip(&b_ranges) {
        results[i] = Some(
            walk.finish(range.from)
                .map_err(|origins| Refusal::Behind { origins }),
        );
    }
    let done = parts
        .iter()
        .zip(results)
        .map(|(&(p, o), r)| Partition {
            topic: topic.to_string(),
            partition: p,
            committed: o,
            outcome: r.expect("every partition has an outcome"),
        })
        .collect();
    Ok((done, used))
}
