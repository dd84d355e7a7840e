//! What the reader keeps per topic it has read: its route (this flow's routing decision),
//! the producer's handle on it, and per partition the next offset expected, the marks of
//! a read again after a change, and its index in the acknowledgement book.

use std::collections::HashMap;
use std::sync::Arc;

use crate::flow::book::{Book, DeliveryContext};
use crate::flow::marks::{OriginMarks, RunMarks};
use crate::message_ffi::TopicHandle;
use crate::routing::EpochRouter;

/// The routes of the topics this run has read, found by name. Records come in runs of
/// one partition (a fetch's batch), so the last route used is tried first, by comparing
/// names, before the map is hashed.
#[derive(Default)]
pub(super) struct Topics {
    pub(super) routes: Vec<TopicRoute>,
    pub(super) index: HashMap<String, usize>,
    pub(super) last: Option<usize>,
}

/// What the reader keeps per topic: its shared name (for acks), this flow's routing
/// decision for it, computed when the topic is first seen, the producer's handle on it
/// once a record of it is forwarded, and the next offset expected of each partition.
pub(super) struct TopicRoute {
    pub(super) name: Arc<str>,
    pub(super) router: EpochRouter,
    /// The producer's handle on the topic (message_ffi::produce): no lookup by name per
    /// record.
    pub(super) handle: Option<TopicHandle<DeliveryContext>>,
    /// Per partition: the offset after the last record handled, or -1.
    pub(super) next: Vec<i64>,
    /// Per partition: what the target holds of each origin, when this run reads the
    /// partition again after a topology change (marks.rs); taken at its first record.
    pub(super) marks: Vec<Option<Arc<OriginMarks>>>,
    /// Per partition: its index in the acknowledgement book, once known.
    pub(super) parts: Vec<Option<u32>>,
}

impl TopicRoute {
    /// Whether `offset` of `partition` was handled already in this run. librdkafka never
    /// hands a record out twice; a resume starts after the last batch it handed over, or
    /// where the reader sought back to (`Reader::rewind`), both past what was handled.
    /// This is the safeguard should a resume ever start earlier: a record handled twice
    /// would be written twice. The check costs one comparison per record.
    pub(super) fn seen(&mut self, partition: i32, offset: i64, run: &RunMarks) -> bool {
        let Ok(p) = usize::try_from(partition) else {
            return false;
        };
        if p >= self.next.len() {
            self.next.resize(p + 1, -1);
            self.marks.resize(p + 1, None);
            self.parts.resize(p + 1, None);
        }
        if self.next[p] < 0 {
            // The partition's first record in this run: its start set its marks, if any.
            self.marks[p] = run
                .lock()
                .expect("run marks lock")
                .get(&(self.name.to_string(), partition))
                .cloned();
        }
        if offset < self.next[p] {
            return true;
        }
        self.next[p] = offset + 1;
        false
    }

    /// The index of `partition` (seen already) in the book.
    pub(super) fn part(&mut self, partition: i32, book: &Book) -> u32 {
        let p = partition as usize;
        *self.parts[p].get_or_insert_with(|| book.lock().part(&self.name, partition, None))
    }

    /// The marks of `partition`, when this run reads it again after a change.
    #[inline]
    pub(super) fn marks(&self, partition: i32) -> Option<&OriginMarks> {
        self.marks
            .get(usize::try_from(partition).ok()?)
            .and_then(|m| m.as_deref())
    }
}
