//! Origin marks: what a target partition holds of each origin, read once when a flow
//! reads its source again after a topology change (docs/topology-changes.md, "Order
//! across a change").
//!
//! Each origin partition's records reach a cluster in origin order (the change's
//! deferral keeps that across a change), so the highest origin offset of origin O that
//! target partition p holds says which of O's records it holds: every one up to it. A
//! flow that reads its source again from the change's cut forwards a record only when
//! its origin offset is above its origin's mark: reading again sends nothing twice.
//! Every record such a flow forwarded after the change lies at or past the target's
//! end at the cut, so the marks are read from there, not from the partition's start.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::error::SyncError;
use crate::resume::read_range;
use crate::routing::EpochRouter;

/// Per origin cluster, the highest origin offset one target partition holds past a
/// point.
#[derive(Debug, Default)]
pub(crate) struct OriginMarks(HashMap<Vec<u8>, i64>);

/// The marks of the partitions that read again in one run of a flow, by (topic,
/// partition): set before the partition is added to the consumer, taken by the reader at
/// the partition's first record.
pub(crate) type RunMarks = Mutex<HashMap<(String, i32), Arc<OriginMarks>>>;

impl OriginMarks {
    /// Reads partition `partition` of `topic` on the target from `from` (its end at the
    /// change's cut; `None`: the cut does not name it, so from its start) to its end,
    /// and keeps each origin's highest offset. The origin of a record is the one
    /// `router` routes it by.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn read(
        scanner: &BaseConsumer,
        target: &str,
        topic: &str,
        partition: i32,
        from: Option<i64>,
        router: &EpochRouter,
        timeout: Duration,
    ) -> Result<Self, SyncError> {
        let (low, high) = scanner
            .fetch_watermarks(topic, partition, timeout)
            .map_err(|e| SyncError::Kafka {
                op: "fetch watermarks",
                cluster: target.to_string(),
                source: e,
            })?;
        let from = from.unwrap_or(low).max(low);
        let mut marks = OriginMarks::default();
        if from >= high {
            return Ok(marks);
        }
        read_range(
            scanner,
            target,
            topic,
            partition,
            from,
            Some(high),
            timeout,
            |path| {
                let h = path
                    .hops()
                    .find(|h| router.knows(h.cluster))
                    .unwrap_or_else(|| path.origin());
                if h.partition == partition {
                    marks.note(h.cluster, h.offset);
                }
            },
        )?;
        Ok(marks)
    }

    fn note(&mut self, origin: &[u8], offset: i64) {
        match self.0.get_mut(origin) {
            Some(m) => *m = (*m).max(offset),
            None => {
                self.0.insert(origin.to_vec(), offset);
            }
        }
    }

    /// Whether the target holds the record at origin offset `offset` of `origin`.
    #[inline]
    pub(crate) fn holds(&self, origin: &[u8], offset: i64) -> bool {
        self.0.get(origin).is_some_and(|&m| offset <= m)
    }

    /// How many origins it names.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_up_to_each_origins_highest_offset() {
        let mut m = OriginMarks::default();
        m.note(b"a", 4);
        m.note(b"a", 9);
        m.note(b"a", 7);
        m.note(b"b", 0);
        assert!(m.holds(b"a", 9) && m.holds(b"a", 0) && !m.holds(b"a", 10));
        assert!(m.holds(b"b", 0) && !m.holds(b"b", 1));
        assert!(!m.holds(b"c", 0), "an origin it never saw holds nothing");
        assert_eq!(m.len(), 2);
    }
}
