//! Where a partition starts: the target's word (resume.rs), the checkpoint, the source's
//! range and the link's start position.
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use tracing::{debug, warn};

use super::super::marks::OriginMarks;
use super::super::{FlowConsumer, FlowSpec};
use crate::error::SyncError;
use crate::resume;
use crate::spec::StartPosition;
use crate::starts::Markers;

/// A partition added to the consumer: where it starts and what its checkpoint says.
pub(crate) struct Assigned {
    pub topic: String,
    pub partition: i32,
    /// Source offset read first.
    pub offset: i64,
    /// A target offset at or before the flow's last record there (the scan's hint).
    pub target_offset: Option<i64>,
    /// Source offset of the record at `target_offset`, when the flow wrote it.
    pub written: Option<i64>,
    /// Source offset where replication of the partition began, when known.
    pub began: Option<i64>,
    /// Never replicated before, or the target lost what the checkpoint names: its
    /// checkpoint is committed at once.
    pub(super) commit_now: bool,
    /// Source offsets sent again because the target lost them, counted once the
    /// partition starts (a start that fails and is tried again counts nothing twice).
    pub(super) resent: u64,
    /// Records the source deleted before they were replicated, counted likewise.
    pub(super) gap: u64,
    /// Read again after a topology change that has not settled: what the target holds
    /// of each origin, passed over (marks.rs).
    pub(super) marks: Option<Arc<OriginMarks>>,
    /// Target records the resume scan read.
    pub(super) scanned: u64,
}

/// Where partition `p` of `topic` resumes: the target's word (resume.rs), the
/// checkpoint, the source's range and the link's start position. Blocking.
pub(super) fn start_of(
    consumer: &FlowConsumer,
    scanner: &BaseConsumer,
    s: &FlowSpec,
    topic: &str,
    p: i32,
    markers: Option<&Markers>,
    timeout: Duration,
) -> Result<Assigned, SyncError> {
    let topic = topic.to_string();
    let src = s.source.id.as_str();
    {
        let ck = resume::committed(&**consumer, src, &topic, p, timeout)?;
        // Without a checkpoint, the start marker says whether the flow started the
        // partition before (starts.rs): then it stands in for the lost checkpoint.
        let marker = markers.and_then(|m| m.get(&topic, p));
        let ck = match (ck, marker) {
            (None, Some(m)) => {
                warn!(flow = %s.name(), %topic, partition = p, resume = m.next, target_offset = ?m.target_offset, "The source group holds no checkpoint for a partition this flow started before (the group was deleted, its offsets expired, or the last run stopped before its first commit): resuming from the start marker, after what the target holds from there on.");
                Some(resume::Checkpoint {
                    source_next: m.next,
                    target_offset: m.target_offset,
                    written: None,
                    began: m.began,
                })
            }
            (ck, _) => ck,
        };
        // Neither: the flow never wrote to this target partition, and nothing needs
        // scanning. Without readable markers, a first start cannot know that: it scans
        // back in full.
        let never_started = ck.is_none() && markers.is_some();
        let hint = (ck.and_then(|c| c.target_offset), ck.and_then(|c| c.written));
        let scan = if never_started {
            resume::LastWritten {
                found: None,
                target_lost: false,
                scanned: 0,
            }
        } else {
            resume::last_written(
                scanner,
                &s.target.id,
                src.as_bytes(),
                &topic,
                p,
                hint,
                timeout,
            )?
        };
        let scanned = scan.scanned;
        let (low, high) =
            consumer
                .fetch_watermarks(&topic, p, timeout)
                .map_err(|e| SyncError::Kafka {
                    op: "fetch watermarks",
                    cluster: src.to_string(),
                    source: e,
                })?;
        let target_high = || {
            scanner
                .fetch_watermarks(&topic, p, timeout)
                .map(|(_, h)| h)
                .map_err(|e| SyncError::Kafka {
                    op: "fetch watermarks",
                    cluster: s.target.id.clone(),
                    source: e,
                })
        };
        let start = match (scan, ck) {
            (
                resume::LastWritten {
                    found,
                    target_lost: true,
                    ..
                },
                Some(ck),
            ) => {
                // Truncated or recreated below the checkpoint: the committed
                // floor would skip what the target lost. Resume after the last
                // record it still holds, or where replication began.
                let o = found.map(|f| f + 1).or(ck.began).unwrap_or(low);
                let resent = (ck.source_next - o).max(0);
                warn!(flow = %s.name(), %topic, partition = p, checkpoint = ck.source_next, checkpoint_target_offset = ?ck.target_offset, resume = o, "The target no longer holds the records this flow's checkpoint names (truncated or recreated): sending {resent} source offsets again, from what the target still holds.");
                Assigned {
                    topic: topic.clone(),
                    partition: p,
                    offset: o,
                    target_offset: Some(target_high()?),
                    written: None,
                    began: ck.began,
                    commit_now: true,
                    resent: resent as u64,
                    gap: 0,
                    marks: None,
                    scanned,
                }
            }
            (scan, ck) => {
                let resumed = match (scan.found.map(|o| o + 1), ck.map(|c| c.source_next)) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b),
                };
                match resumed {
                    Some(o) => Assigned {
                        topic: topic.clone(),
                        partition: p,
                        offset: o,
                        target_offset: ck.and_then(|c| c.target_offset),
                        written: ck.and_then(|c| c.written),
                        began: ck.and_then(|c| c.began),
                        commit_now: false,
                        resent: 0,
                        gap: 0,
                        marks: None,
                        scanned,
                    },
                    None => {
                        let o = match s.routes.start_cut(&topic) {
                            // Brought by a change: from the source's end at its cut,
                            // the first record the new routes may owe; a partition the
                            // cut does not name was created since, so from its start.
                            Some(cut) => cut.get(src, p).unwrap_or(low),
                            None if s.start == StartPosition::Earliest => low,
                            None => high,
                        };
                        Assigned {
                            topic: topic.clone(),
                            partition: p,
                            offset: o,
                            target_offset: Some(target_high()?),
                            written: None,
                            began: Some(o),
                            commit_now: true,
                            resent: 0,
                            gap: 0,
                            marks: None,
                            scanned,
                        }
                    }
                }
            }
        };
        // A change that has not settled and brought this flow an origin: read again from
        // the source's end at the cut, passing over what the target holds (marks.rs).
        let start = match s.routes.rewinds(&topic) {
            Some(cut) => {
                let marks = OriginMarks::read(
                    scanner,
                    &s.target.id,
                    &topic,
                    p,
                    cut.get(&s.target.id, p),
                    &s.routes.router(&topic),
                    timeout,
                )?;
                let from = cut.get(src, p).unwrap_or(low).min(start.offset);
                debug!(flow = %s.name(), %topic, partition = p, resume = start.offset, from, origins = marks.len(), "A topology change has not settled: reading again from the cut, passing over what the target holds.");
                Assigned {
                    offset: from,
                    marks: Some(Arc::new(marks)),
                    ..start
                }
            }
            None => start,
        };
        let offset = start.offset;
        if offset > high {
            // Truncated or recreated: its offsets no longer mean what the
            // target's provenance says they meant.
            return Err(SyncError::SourceBehind {
                flow: s.name(),
                cluster: src.to_string(),
                topic: topic.clone(),
                partition: p,
                resume: offset,
                high,
            });
        }
        let gap = (low - offset).max(0);
        if gap > 0 {
            warn!(flow = %s.name(), %topic, partition = p, from = offset, to = low, "The source deleted {gap} records (retention) before they were replicated; resuming at its log start.");
        }
        Ok(Assigned {
            offset: offset.max(low),
            gap: gap as u64,
            ..start
        })
    }
}
