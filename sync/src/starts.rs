//! Start markers: a durable note, on the target cluster, that a flow has started a
//! partition, so that a first start needs no scan of the target (docs/delivery.md,
//! "First start").
//!
//! A flow that finds no checkpoint in its source group either never wrote to the target
//! partition or lost its checkpoint (the group was deleted, or its offsets expired after
//! `offsets.retention.minutes`). Only the target could tell, by a scan of the whole
//! partition for records the flow wrote: on a large cluster a full read at every first
//! start, for records that do not exist. So before a flow writes anything to a
//! partition it writes a marker to the compacted topic [`TOPIC`] on the target, keyed by
//! flow and partition, and waits for it to be acknowledged. From then on:
//!
//! - no checkpoint and no marker: the flow never wrote there; it starts without a scan;
//! - no checkpoint but a marker: the checkpoint was lost; the marker stands in for it
//!   (where the flow then stood on source and target), and the usual scan from its
//!   target offset finds anything written since;
//! - the markers cannot be read: every partition without a checkpoint is scanned back
//!   in full, as before markers existed.
//!
//! Markers are written once per partition and never changed. A flow that started a
//! partition under a Duplex version without markers gets its marker at its next start,
//! from its checkpoint; one whose group was deleted before that start, and the deletion
//! of both the group and [`TOPIC`], are what markers cannot see (docs/delivery.md).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

use crate::error::SyncError;

/// The topic of start markers on each target cluster: compacted, one partition. Its name
/// starts with `__`, so no topic selection ever replicates it.
pub const TOPIC: &str = "__duplex_starts";

/// Where a flow stood on a partition when it started it first (or, for a partition
/// started before markers, when it next started).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marker {
    /// The source offset the flow read first.
    pub next: i64,
    /// A target offset at or before the first record the flow wrote after `next`
    /// (the target's end then, or its checkpoint's target offset).
    pub target_offset: Option<i64>,
    /// Where replication of the partition began, when known.
    pub began: Option<i64>,
}

impl Marker {
    /// The record value: `duplex/1 n=<next>[ t=<target offset>][ b=<began>]`.
    pub fn value(&self) -> String {
        let mut v = format!("duplex/1 n={}", self.next);
        if let Some(t) = self.target_offset {
            v += &format!(" t={t}");
        }
        if let Some(b) = self.began {
            v += &format!(" b={b}");
        }
        v
    }

    /// Reads a value written by [`Marker::value`]; `None` for anything else.
    pub fn parse(value: &[u8]) -> Option<Marker> {
        let text = std::str::from_utf8(value).ok()?;
        let fields = text.strip_prefix("duplex/1 ")?;
        let (mut next, mut target_offset, mut began) = (None, None, None);
        for field in fields.split_ascii_whitespace() {
            let (k, v) = field.split_once('=')?;
            let v = v.parse::<i64>().ok().filter(|o| *o >= 0);
            match k {
                "n" => next = v,
                "t" => target_offset = v,
                "b" => began = v,
                // Later versions may add fields.
                _ => {}
            }
        }
        Some(Marker {
            next: next?,
            target_offset,
            began,
        })
    }
}

/// The key of flow `source`→`target`'s marker for a partition. Topic names hold no
/// spaces, so the key is unambiguous.
pub fn key(source: &str, target: &str, topic: &str, partition: i32) -> String {
    format!("{source}->{target} {topic} {partition}")
}

/// One flow's markers on its target, by topic and partition.
#[derive(Debug, Clone, Default)]
pub struct Markers(HashMap<(String, i32), Marker>);

impl Markers {
    /// The marker of a partition.
    pub fn get(&self, topic: &str, partition: i32) -> Option<Marker> {
        self.0.get(&(topic.to_string(), partition)).copied()
    }

    /// Notes a marker written.
    pub fn insert(&mut self, topic: &str, partition: i32, m: Marker) {
        self.0.insert((topic.to_string(), partition), m);
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Reads flow `source`→`target`'s markers from [`TOPIC`] on the target with `scanner`
/// (a consumer without a group). `Ok(None)` when the topic does not exist. Blocking.
pub fn read(
    scanner: &BaseConsumer,
    source: &str,
    target: &str,
    timeout: Duration,
) -> Result<Option<Markers>, SyncError> {
    let kafka = |op, e| SyncError::Kafka {
        op,
        cluster: target.to_string(),
        source: e,
    };
    let meta = scanner
        .fetch_metadata(Some(TOPIC), timeout)
        .map_err(|e| kafka("fetch start marker metadata", e))?;
    let Some(t) = meta.topics().iter().find(|t| t.name() == TOPIC) else {
        return Ok(None);
    };
    // Only "unknown topic" means there is none: any other error (a leader election, no
    // permission) leaves the markers unknown, never empty.
    match t.error().map(RDKafkaErrorCode::from) {
        None => {}
        Some(RDKafkaErrorCode::UnknownTopicOrPartition) => return Ok(None),
        Some(code) => {
            return Err(kafka(
                "read start marker metadata",
                KafkaError::MetadataFetch(code),
            ));
        }
    }
    if t.partitions().is_empty() {
        return Ok(None);
    }
    let prefix = format!("{source}->{target} ");
    let mut markers = Markers::default();
    for p in t.partitions() {
        let (low, high) = scanner
            .fetch_watermarks(TOPIC, p.id(), timeout)
            .map_err(|e| kafka("fetch start marker watermarks", e))?;
        if high <= low {
            continue;
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(TOPIC, p.id(), Offset::Offset(low))
            .map_err(|e| kafka("read start markers", e))?;
        scanner
            .assign(&tpl)
            .map_err(|e| kafka("read start markers", e))?;
        let mut last_progress = Instant::now();
        let mut next = low;
        while next < high {
            match scanner.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    next = m.offset() + 1;
                    last_progress = Instant::now();
                    let Some(k) = m.key().and_then(|k| std::str::from_utf8(k).ok()) else {
                        continue;
                    };
                    let Some(rest) = k.strip_prefix(&prefix) else {
                        continue;
                    };
                    let Some((topic, partition)) = rest.rsplit_once(' ') else {
                        continue;
                    };
                    let Ok(partition) = partition.parse::<i32>() else {
                        continue;
                    };
                    // The last value per key counts, as compaction keeps it; a value
                    // this version cannot read leaves the partition without a marker,
                    // which only costs a scan.
                    match m.payload().and_then(Marker::parse) {
                        Some(marker) => markers.insert(topic, partition, marker),
                        None => {
                            markers.0.remove(&(topic.to_string(), partition));
                        }
                    }
                }
                Some(Err(KafkaError::PartitionEOF(_))) => break,
                // Stale transport events of an earlier outage are no answer (as in
                // resume.rs); the no-progress timeout bounds the wait.
                Some(Err(KafkaError::MessageConsumption(
                    RDKafkaErrorCode::BrokerTransportFailure | RDKafkaErrorCode::AllBrokersDown,
                ))) if last_progress.elapsed() <= timeout => {}
                Some(Err(e)) => {
                    let _ = scanner.unassign();
                    return Err(kafka("read start markers", e));
                }
                None if last_progress.elapsed() > timeout => {
                    let _ = scanner.unassign();
                    return Err(kafka(
                        "read start markers",
                        KafkaError::MessageConsumption(RDKafkaErrorCode::OperationTimedOut),
                    ));
                }
                None => {}
            }
        }
    }
    let _ = scanner.unassign();
    Ok(Some(markers))
}

/// Writes `markers` (topic, partition, marker) of flow `source`→`target` to [`TOPIC`]
/// and waits until the target acknowledged every one. `producer` is a producer on the
/// target with `acks=all` ([`crate::clients::marker_producer`]).
pub async fn write(
    producer: &FutureProducer,
    source: &str,
    target: &str,
    markers: &[(String, i32, Marker)],
    timeout: Duration,
) -> Result<(), SyncError> {
    let kafka = |e| SyncError::Kafka {
        op: "write start marker",
        cluster: target.to_string(),
        source: e,
    };
    let mut waiting = Vec::with_capacity(markers.len());
    for (topic, partition, m) in markers {
        let key = key(source, target, topic, *partition);
        let value = m.value();
        let record = FutureRecord::to(TOPIC)
            .key(key.as_bytes())
            .payload(value.as_bytes());
        // Enqueued (and copied) at once; a full local queue is waited out.
        waiting.push(
            crate::clients::enqueue(producer, record, timeout)
                .await
                .map_err(kafka)?,
        );
    }
    for delivery in waiting {
        match tokio::time::timeout(timeout, delivery).await {
            Ok(Ok(Ok(_))) => {}
            Ok(Ok(Err((e, _)))) => return Err(kafka(e)),
            Ok(Err(_)) => return Err(kafka(KafkaError::Canceled)),
            Err(_) => {
                return Err(kafka(KafkaError::MessageProduction(
                    RDKafkaErrorCode::MessageTimedOut,
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_reads_back() {
        for m in [
            Marker {
                next: 0,
                target_offset: None,
                began: None,
            },
            Marker {
                next: 12,
                target_offset: Some(40),
                began: Some(3),
            },
        ] {
            assert_eq!(Marker::parse(m.value().as_bytes()), Some(m));
        }
        assert_eq!(
            Marker::parse(b"duplex/1 n=5 t=7 z=9"),
            Some(Marker {
                next: 5,
                target_offset: Some(7),
                began: None
            })
        );
        assert_eq!(Marker::parse(b"duplex/1 t=7"), None, "n is required");
        assert_eq!(Marker::parse(b"other"), None);
        assert_eq!(key("a", "b", "orders", 3), "a->b orders 3");
    }
}
