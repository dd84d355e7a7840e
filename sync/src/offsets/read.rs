//! Reading the records of a topic's partitions, read_committed as a consumer group sees
//! them, with the origin identity of each. Blocking: call from `spawn_blocking`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use crate::error::SyncError;
use crate::message_ffi;
use crate::provenance::{PATH_HEADER, Path, ProvenanceError};

/// One partition to read: from `from` up to `to` (exclusive; to its end when None).
#[derive(Debug, Clone, Copy)]
pub struct Range {
    /// The partition.
    pub partition: i32,
    /// First offset to read.
    pub from: i64,
    /// Offset to stop before; None reads to the end (the last stable offset).
    pub to: Option<i64>,
}

/// A record's offset and origin position (cluster, partition, offset).
#[derive(Debug, Clone, Copy)]
pub struct Seen<'a> {
    /// Offset on the cluster read.
    pub offset: i64,
    /// Origin cluster id.
    pub origin: &'a str,
    /// Origin partition.
    pub origin_partition: i32,
    /// Origin offset.
    pub origin_offset: i64,
    /// Its timestamp (ms; -1 when it has none).
    pub timestamp: i64,
    /// Key and value bytes.
    pub bytes: usize,
}

/// Reads `ranges` of `topic` on `cluster` with `consumer` (read_committed, partition EOF
/// enabled, no group commits), calling `visit(index into ranges, record)` in offset
/// order per partition. A `duplex.path` that cannot be read is an error naming the
/// record: its origin is never guessed. No answer for `timeout` is an error.
pub fn read(
    consumer: &BaseConsumer,
    cluster: &str,
    topic: &str,
    ranges: &[Range],
    timeout: Duration,
    mut visit: impl FnMut(usize, Seen<'_>),
) -> Result<(), SyncError> {
    let kafka = |op, source| SyncError::Kafka {
        op,
        cluster: cluster.to_string(),
        source,
    };
    let mut tpl = TopicPartitionList::new();
    let mut index: HashMap<i32, usize> = HashMap::new();
    let mut open = 0usize;
    let mut done = vec![false; ranges.len()];
    for (i, r) in ranges.iter().enumerate() {
        if r.to.is_some_and(|to| to <= r.from) {
            done[i] = true;
            continue;
        }
        tpl.add_partition_offset(topic, r.partition, Offset::Offset(r.from))
            .map_err(|e| kafka("assign", e))?;
        index.insert(r.partition, i);
        open += 1;
    }
    if open == 0 {
        return Ok(());
    }
    consumer.assign(&tpl).map_err(|e| kafka("assign", e))?;
    let mut last_progress = Instant::now();
    let result = loop {
        if open == 0 {
            break Ok(());
        }
        let m = match consumer.poll(Duration::from_millis(200)) {
            None if last_progress.elapsed() > timeout => {
                break Err(kafka(
                    "read partitions",
                    KafkaError::MessageConsumption(RDKafkaErrorCode::OperationTimedOut),
                ));
            }
            None => continue,
            Some(Err(KafkaError::PartitionEOF(p))) => {
                last_progress = Instant::now();
                if let Some(&i) = index.get(&p)
                    && !std::mem::replace(&mut done[i], true)
                {
                    open -= 1;
                }
                continue;
            }
            // Retried inside librdkafka; the no-progress timeout bounds the wait.
            Some(Err(KafkaError::MessageConsumption(
                RDKafkaErrorCode::BrokerTransportFailure | RDKafkaErrorCode::AllBrokersDown,
            ))) => continue,
            Some(Err(e)) => break Err(kafka("read partitions", e)),
            Some(Ok(m)) => m,
        };
        last_progress = Instant::now();
        let Some(&i) = index.get(&m.partition()) else {
            continue;
        };
        if done[i] {
            continue;
        }
        let offset = m.offset();
        let to = ranges[i].to;
        if to.is_some_and(|to| offset >= to) {
            done[i] = true;
            open -= 1;
            continue;
        }
        let raw = message_ffi::headers(&m)
            .find(|(name, _)| *name == PATH_HEADER.as_bytes())
            .and_then(|(_, value)| value);
        let timestamp = m.timestamp().to_millis().unwrap_or(-1);
        let bytes = m.key_len() + m.payload_len();
        let seen = match raw {
            None => Seen {
                offset,
                origin: cluster,
                origin_partition: m.partition(),
                origin_offset: offset,
                timestamp,
                bytes,
            },
            Some(raw) => {
                let bad = |source| SyncError::Provenance {
                    cluster: cluster.to_string(),
                    topic: topic.to_string(),
                    partition: m.partition(),
                    offset,
                    source,
                };
                let path = match Path::decode(raw) {
                    Ok(p) => p,
                    Err(e) => break Err(bad(e)),
                };
                let o = path.origin();
                let Ok(origin) = std::str::from_utf8(o.cluster) else {
                    break Err(bad(ProvenanceError::Malformed(
                        "origin cluster id is not UTF-8",
                    )));
                };
                Seen {
                    offset,
                    origin,
                    origin_partition: o.partition,
                    origin_offset: o.offset,
                    timestamp,
                    bytes,
                }
            }
        };
        visit(i, seen);
        if to.is_some_and(|to| offset + 1 >= to) {
            done[i] = true;
            open -= 1;
        }
    };
    let _ = consumer.unassign();
    result
}
