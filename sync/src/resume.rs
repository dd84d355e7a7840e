//! Resume: where a flow starts reading a source partition (DESIGN.md rule 3).
//!
//! The target says how far a flow got. Every record flow S→T writes carries its source
//! position as the last hop of `duplex.path`, and the idempotent, gapless producer
//! leaves on each target partition a gap-free prefix of what it sent. So the flow
//! resumes right after the last record on the target whose last hop is S.
//!
//! To keep that scan short, the flow commits to its source group, after the target
//! acknowledged, the next source offset with the target offset of the last record it
//! wrote as commit metadata (`duplex/1 t=<offset>`). The scan then starts there. With no
//! checkpoint it walks back from the end of the target partition in growing windows.
//! All functions here block: call them from `spawn_blocking`.

use std::cell::Cell;
use std::time::{Duration, Instant};

use rdkafka::Offset;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::types::RDKafkaErrorCode;

use crate::error::SyncError;
use crate::message_ffi;
use crate::provenance::{PATH_HEADER, Path};

/// Commit metadata: the target offset of the last record written, the source offset of
/// that record when the flow wrote it (not when `t` is only where the target ended at a
/// first start), and, when known, the source offset where replication of the partition
/// began: `duplex/1 t=<offset>[ s=<offset>][ b=<offset>]`. Readers ignore fields they
/// do not know, so later versions of `duplex/1` may add fields.
pub fn checkpoint_metadata(target_offset: i64, written: Option<i64>, began: Option<i64>) -> String {
    let mut m = format!("duplex/1 t={target_offset}");
    if let Some(s) = written {
        m += &format!(" s={s}");
    }
    if let Some(b) = began {
        m += &format!(" b={b}");
    }
    m
}

/// What commit metadata written by [`checkpoint_metadata`] says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CheckpointMeta {
    /// Target offset of the last record written (`t`).
    pub target_offset: Option<i64>,
    /// Source offset of the record at `t`, when the flow wrote it (`s`).
    pub written: Option<i64>,
    /// Source offset where replication of the partition began (`b`).
    pub began: Option<i64>,
}

/// Reads commit metadata written by [`checkpoint_metadata`]; `None` for metadata of
/// another tool or version.
pub fn parse_checkpoint_metadata(meta: &str) -> Option<CheckpointMeta> {
    let fields = meta.strip_prefix("duplex/1 ")?;
    let mut out = CheckpointMeta::default();
    for field in fields.split_ascii_whitespace() {
        let value = |v: &str| v.parse::<i64>().ok().filter(|o| *o >= 0);
        match field.split_once('=') {
            Some(("t", v)) => out.target_offset = value(v),
            Some(("s", v)) => out.written = value(v),
            Some(("b", v)) => out.began = value(v),
            _ => {}
        }
    }
    out.target_offset.map(|_| out)
}

/// A committed source position, with what its metadata says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    /// Next source offset to read.
    pub source_next: i64,
    /// Target offset of the last record written before it.
    pub target_offset: Option<i64>,
    /// Source offset of the record at `target_offset`, when the flow wrote it.
    pub written: Option<i64>,
    /// Source offset where replication of the partition began, if recorded.
    pub began: Option<i64>,
}

/// The checkpoint committed for one partition, if any. Blocking.
pub fn committed<C: ConsumerContext>(
    consumer: &impl Consumer<C>,
    cluster: &str,
    topic: &str,
    partition: i32,
    timeout: Duration,
) -> Result<Option<Checkpoint>, SyncError> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    let got = consumer
        .committed_offsets(tpl, timeout)
        .map_err(|source| SyncError::Kafka {
            op: "fetch committed offsets",
            cluster: cluster.to_string(),
            source,
        })?;
    let Some(elem) = got.find_partition(topic, partition) else {
        return Ok(None);
    };
    Ok(match elem.offset() {
        Offset::Offset(o) if o >= 0 => {
            let meta = parse_checkpoint_metadata(elem.metadata()).unwrap_or_default();
            Some(Checkpoint {
                source_next: o,
                target_offset: meta.target_offset,
                written: meta.written,
                began: meta.began,
            })
        }
        _ => None,
    })
}

/// What the target holds of a flow's partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastWritten {
    /// Source offset of the last record the flow wrote there, if any.
    pub found: Option<i64>,
    /// The checkpoint names a record the flow wrote that the target no longer holds
    /// below its end: the target partition was truncated or recreated (deleted by
    /// retention is not this: that is below its log start). Resume from `found`, not
    /// from the checkpoint.
    pub target_lost: bool,
    /// Records the scan read (`duplex_flow_resume_scanned_records_total`).
    pub scanned: u64,
}

/// Scans a target partition for the last record written by the flow from `source_id`
/// and returns its source offset. `checkpoint`: the target offset the checkpoint names
/// (at or before that record) and, when the flow wrote the record there, its source
/// offset.
#[allow(clippy::too_many_arguments)]
pub fn last_written(
    scanner: &BaseConsumer,
    target: &str,
    source_id: &[u8],
    topic: &str,
    partition: i32,
    checkpoint: (Option<i64>, Option<i64>),
    timeout: Duration,
) -> Result<LastWritten, SyncError> {
    let kafka = |op, source| SyncError::Kafka {
        op,
        cluster: target.to_string(),
        source,
    };
    let (low, high) = scanner
        .fetch_watermarks(topic, partition, timeout)
        .map_err(|e| kafka("fetch watermarks", e))?;
    let read = Cell::new(0u64);
    let scan = |from, to| {
        let (found, first, n) = scan(
            scanner, target, source_id, topic, partition, from, to, timeout,
        )?;
        read.set(read.get() + n);
        Ok::<_, SyncError>((found, first))
    };
    let scan_back = |mut hi: i64| {
        // Back from `hi` in windows of 1,024, 2,048, ... offsets down to `low`, until a
        // window holds a record of the flow.
        let mut window = 1024i64;
        while hi > low {
            let lo = (hi - window).max(low);
            if let (Some(found), _) = scan(lo, Some(hi))? {
                return Ok(Some(found));
            }
            hi = lo;
            window = window.saturating_mul(2);
        }
        Ok::<_, SyncError>(None)
    };
    let (hint, written) = checkpoint;
    // The record at t must be the flow's record from source offset s. Below the log
    // start retention deleted it, which says nothing about what follows.
    if let (Some(t), Some(s)) = (hint, written.filter(|_| hint >= Some(low))) {
        // Offset t missing inside the log is compaction (see docs/delivery.md), not a
        // loss this can see; another record at t, or an end before t, is.
        let lost = t >= high || {
            let (ours, first) = scan(t, Some(t + 1))?;
            first == Some(t) && ours != Some(s)
        };
        if lost {
            let found = scan_back(high)?;
            return Ok(LastWritten {
                found,
                target_lost: true,
                scanned: read.get(),
            });
        }
    }
    let held = |found| {
        Ok(LastWritten {
            found,
            target_lost: false,
            scanned: read.get(),
        })
    };
    if high <= low {
        return held(None);
    }
    if let Some(from) = hint.filter(|&t| t < high) {
        // A checkpointed target offset bounds the scan from below.
        if let (Some(found), _) = scan(from.max(low), None)? {
            return held(Some(found));
        }
        if from >= low {
            return held(None);
        }
    }
    let found = scan_back(high)?;
    held(found)
}

/// Reads `[from, to)` (to the end when `to` is None) and returns the largest source
/// offset among records whose last hop is `source_id`, the offset of the first record
/// read, and how many records it read.
#[allow(clippy::too_many_arguments)]
fn scan(
    scanner: &BaseConsumer,
    target: &str,
    source_id: &[u8],
    topic: &str,
    partition: i32,
    from: i64,
    to: Option<i64>,
    timeout: Duration,
) -> Result<(Option<i64>, Option<i64>, u64), SyncError> {
    let mut found: Option<i64> = None;
    let (first, read) = read_range(scanner, target, topic, partition, from, to, timeout, |p| {
        let hop = p.last();
        if hop.cluster == source_id && hop.partition == partition {
            found = Some(found.map_or(hop.offset, |f: i64| f.max(hop.offset)));
        }
    })?;
    Ok((found, first, read))
}

/// Reads `[from, to)` of a partition (to its end when `to` is None), handing the
/// provenance of every record that has one to `visit`; returns the offset of the first
/// record read and how many it read.
#[allow(clippy::too_many_arguments)]
pub(crate) fn read_range(
    scanner: &BaseConsumer,
    cluster: &str,
    topic: &str,
    partition: i32,
    from: i64,
    to: Option<i64>,
    timeout: Duration,
    mut visit: impl FnMut(&Path<'_>),
) -> Result<(Option<i64>, u64), SyncError> {
    let kafka = |op, source| SyncError::Kafka {
        op,
        cluster: cluster.to_string(),
        source,
    };
    let mut read = 0u64;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(from))
        .map_err(|e| kafka("assign scan", e))?;
    scanner.assign(&tpl).map_err(|e| kafka("assign scan", e))?;
    let mut first: Option<i64> = None;
    let mut last_progress = Instant::now();
    let result = loop {
        match scanner.poll(Duration::from_millis(200)) {
            None if last_progress.elapsed() > timeout => {
                break Err(kafka(
                    "scan target partition",
                    KafkaError::MessageConsumption(RDKafkaErrorCode::OperationTimedOut),
                ));
            }
            None => continue,
            Some(Err(KafkaError::PartitionEOF(_))) => break Ok(()),
            // A broker that went away and came back surfaces as error events, retried
            // inside librdkafka and some queued long before this scan (one per failed
            // connect of an outage): they are no answer, not the scan's failure, and the
            // no-progress timeout bounds the wait. Failing on each made every retry of a
            // partition's start pop one stale event and fail again, for minutes.
            Some(Err(KafkaError::MessageConsumption(
                RDKafkaErrorCode::BrokerTransportFailure | RDKafkaErrorCode::AllBrokersDown,
            ))) if last_progress.elapsed() <= timeout => continue,
            Some(Err(e)) => break Err(kafka("scan target partition", e)),
            Some(Ok(m)) => {
                last_progress = Instant::now();
                read += 1;
                first.get_or_insert(m.offset());
                if to.is_some_and(|to| m.offset() >= to) {
                    break Ok(());
                }
                let path = message_ffi::headers(&m)
                    .find(|(name, _)| *name == PATH_HEADER.as_bytes())
                    .and_then(|(_, value)| value);
                if let Some(Ok(p)) = path.map(Path::decode) {
                    visit(&p);
                }
                if to.is_some_and(|to| m.offset() + 1 >= to) {
                    break Ok(());
                }
            }
        }
    };
    scanner.unassign().map_err(|e| kafka("unassign scan", e))?;
    result.map(|()| (first, read))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_round_trips() {
        let meta = |t, b| {
            Some(CheckpointMeta {
                target_offset: Some(t),
                written: None,
                began: b,
            })
        };
        assert_eq!(
            parse_checkpoint_metadata(&checkpoint_metadata(42, None, Some(7))),
            meta(42, Some(7))
        );
        assert_eq!(
            parse_checkpoint_metadata(&checkpoint_metadata(42, None, None)),
            meta(42, None)
        );
        assert_eq!(
            parse_checkpoint_metadata(&checkpoint_metadata(42, Some(9), Some(7))),
            Some(CheckpointMeta {
                target_offset: Some(42),
                written: Some(9),
                began: Some(7)
            })
        );
        // Written before `b` existed, or by a later duplex/1 with more fields.
        assert_eq!(parse_checkpoint_metadata("duplex/1 t=5"), meta(5, None));
        assert_eq!(
            parse_checkpoint_metadata("duplex/1 t=5 x=1 b=3"),
            meta(5, Some(3))
        );
        for other in [
            "",
            "other tool",
            "duplex/2 t=5",
            "duplex/1 b=3",
            "duplex/1 t=-1",
        ] {
            assert_eq!(parse_checkpoint_metadata(other), None, "{other:?}");
        }
    }
}
