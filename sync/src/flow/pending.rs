//! Acknowledgement order per partition: a partition's position moves past a record only
//! once that record and every record read before it *in that partition* are resolved.
//! Partitions do not wait for one another, so one target partition that does not answer
//! holds back its own checkpoint and nothing else.
//!
//! Each partition keeps a queue of what the reader did with its records, in read order.
//! Deliveries resolve in any order (across partitions they do); the front of the queue
//! advances the position while it is resolved. Consecutive passed-over records share
//! one entry, so a queue holds at most two entries per record still in flight plus one:
//! a backlog of records another flow carries costs no memory while a delivery waits.

use std::collections::VecDeque;

/// Where a partition stands, as committed to the source group (docs/delivery.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Position {
    /// The next source offset to read: everything before it is on the target or was
    /// passed over.
    pub next: i64,
    /// Target offset of the last record this flow wrote there, when known.
    pub target_offset: Option<i64>,
    /// Source offset of the record at `target_offset`, when the flow wrote it there:
    /// lets the next start check that the target still holds it (resume.rs).
    pub written: Option<i64>,
    /// Where replication of the partition began (commit metadata `b`), when known.
    pub began: Option<i64>,
    /// Whether `next` was committed since it last moved.
    pub committed: bool,
}

impl Position {
    /// A partition the flow saw no assignment for: nothing known but what it reads.
    pub(crate) fn unknown() -> Self {
        Position {
            next: 0,
            target_offset: None,
            written: None,
            began: None,
            committed: true,
        }
    }

    fn advance(&mut self, offset: i64, target_offset: Option<i64>) {
        self.next = offset + 1;
        if target_offset.is_some() {
            self.target_offset = target_offset;
            self.written = Some(offset);
        }
        self.committed = false;
    }
}

#[derive(Clone, Copy, Debug)]
enum Entry {
    /// Handed to the producer, not acknowledged yet: `bytes` long, with the source
    /// timestamp (or [`NO_TIMESTAMP`]) for the latency figures.
    Pending {
        offset: i64,
        bytes: u32,
        timestamp: i64,
    },
    /// Acknowledged at this target offset.
    Delivered { offset: i64, target: i64 },
    /// Passed over (routing, the hop guard), up to and including this offset.
    Passed { offset: i64 },
    /// Refused or lost: the position never moves past it.
    Failed,
}

const NO_TIMESTAMP: i64 = i64::MIN;

/// A record whose delivery resolved, as it was sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Resolved {
    pub offset: i64,
    pub bytes: usize,
    pub timestamp: Option<i64>,
}

/// One partition's outstanding records and position.
#[derive(Debug)]
pub(crate) struct Partition {
    pub pos: Position,
    queue: VecDeque<Entry>,
    /// Sequence number of the queue's front entry.
    front: u64,
    /// Entries in the queue still pending.
    pending: usize,
    /// Bytes handed to the producer and not resolved yet.
    pub in_flight: usize,
    /// A record of this partition failed: its position never moves past it.
    pub halted: bool,
    /// Reading is paused until enough of its in-flight bytes are acknowledged.
    pub paused: bool,
    /// Since when, while paused.
    pub held_since: Option<std::time::Instant>,
}

impl Partition {
    pub(crate) fn new(pos: Position) -> Self {
        Partition {
            pos,
            queue: VecDeque::new(),
            front: 0,
            pending: 0,
            in_flight: 0,
            halted: false,
            paused: false,
            held_since: None,
        }
    }

    /// The sequence number the next record sent gets.
    pub(crate) fn next_seq(&self) -> u64 {
        self.front + self.queue.len() as u64
    }

    /// The full sequence number of a pending entry from its low bits (`mask`): the
    /// entries in the queue are fewer than `mask`.
    pub(crate) fn seq_from_low_bits(&self, low: u64, mask: u64) -> u64 {
        self.front + (low.wrapping_sub(self.front) & mask)
    }

    /// Records handed to the producer and not resolved yet.
    pub(crate) fn pending(&self) -> usize {
        self.pending
    }

    /// A record handed to the producer; returns the sequence number its resolution
    /// must name.
    pub(crate) fn sent(&mut self, offset: i64, bytes: usize, timestamp: Option<i64>) -> u64 {
        self.in_flight += bytes;
        self.pending += 1;
        self.queue.push_back(Entry::Pending {
            offset,
            bytes: bytes.min(u32::MAX as usize) as u32,
            timestamp: timestamp.unwrap_or(NO_TIMESTAMP),
        });
        self.front + self.queue.len() as u64 - 1
    }

    /// Takes back the record just sent as `seq`, which the producer did not take: it
    /// must be the last entry, still pending.
    pub(crate) fn unsent(&mut self, seq: u64) {
        if self.next_seq() != seq + 1 {
            return;
        }
        if let Some(Entry::Pending { bytes, .. }) = self.queue.back().copied() {
            self.queue.pop_back();
            self.pending -= 1;
            self.in_flight = self.in_flight.saturating_sub(bytes as usize);
        }
    }

    /// A record passed over: the position moves past it once everything read before
    /// it in this partition is resolved.
    pub(crate) fn passed(&mut self, offset: i64) {
        match self.queue.back_mut() {
            None if !self.halted => self.pos.advance(offset, None),
            None => {}
            Some(Entry::Passed { offset: o }) => *o = offset,
            Some(_) => self.queue.push_back(Entry::Passed { offset }),
        }
    }

    /// The delivery of record `seq` resolved: acknowledged at a target offset, or failed
    /// (`None`), which halts the partition before that record. Returns the record, or
    /// nothing when `seq` names no pending record (resolved already).
    pub(crate) fn resolved(&mut self, seq: u64, target: Option<i64>) -> Option<Resolved> {
        let i = seq.checked_sub(self.front)? as usize;
        let Some(Entry::Pending {
            offset,
            bytes,
            timestamp,
        }) = self.queue.get(i).copied()
        else {
            return None;
        };
        self.pending -= 1;
        self.in_flight = self.in_flight.saturating_sub(bytes as usize);
        match target {
            Some(target) => self.queue[i] = Entry::Delivered { offset, target },
            None => {
                self.queue[i] = Entry::Failed;
                self.halted = true;
            }
        }
        self.advance();
        Some(Resolved {
            offset,
            bytes: bytes as usize,
            timestamp: (timestamp != NO_TIMESTAMP).then_some(timestamp),
        })
    }

    /// Moves the position past the resolved entries at the front of the queue. A failed
    /// entry stops it for good; the records before it still count once acknowledged.
    fn advance(&mut self) {
        while let Some(e) = self.queue.front() {
            match *e {
                Entry::Pending { .. } | Entry::Failed => break,
                Entry::Delivered { offset, target } => self.pos.advance(offset, Some(target)),
                Entry::Passed { offset } => self.pos.advance(offset, None),
            }
            self.queue.pop_front();
            self.front += 1;
        }
    }

    /// Entries waiting for a delivery before them (for tests and the bound above).
    #[cfg(test)]
    fn queued(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(next: i64) -> Partition {
        Partition::new(Position {
            next,
            ..Position::unknown()
        })
    }

    #[test]
    fn the_position_waits_for_the_first_unresolved_record_only() {
        let mut p = at(10);
        let a = p.sent(10, 100, Some(1));
        let b = p.sent(11, 100, None);
        p.passed(12);
        let c = p.sent(13, 100, None);
        assert_eq!(p.in_flight, 300);
        assert_eq!(p.pending(), 3);
        // Resolved out of order: nothing moves until the first is resolved.
        p.resolved(c, Some(7));
        assert_eq!(p.resolved(c, Some(7)), None, "resolved once only");
        p.resolved(b, Some(6));
        assert_eq!(p.pos.next, 10);
        let r = p.resolved(a, Some(5));
        assert_eq!(
            r,
            Some(Resolved {
                offset: 10,
                bytes: 100,
                timestamp: Some(1)
            })
        );
        assert_eq!(p.pending(), 0);
        assert_eq!(p.pos.next, 14);
        assert_eq!((p.pos.target_offset, p.pos.written), (Some(7), Some(13)));
        assert_eq!(p.in_flight, 0);
        assert!(!p.pos.committed);
    }

    #[test]
    fn a_failed_record_halts_its_partition_before_it() {
        let mut p = at(0);
        let a = p.sent(0, 1, None);
        let b = p.sent(1, 1, None);
        let c = p.sent(2, 1, None);
        let d = p.sent(3, 1, None);
        p.resolved(b, None);
        p.resolved(c, Some(1));
        p.passed(4);
        assert_eq!(p.pos.next, 0, "waits for the record before it");
        p.resolved(a, Some(0));
        assert_eq!(
            p.pos.next, 1,
            "acknowledged after the failure: still counts"
        );
        p.resolved(d, Some(2));
        assert_eq!(p.pos.next, 1, "never past the failed record");
        assert!(p.halted);
        assert_eq!(p.in_flight, 0);
        assert_eq!(p.pending(), 0);
    }

    #[test]
    fn passed_records_cost_no_memory_while_a_delivery_waits() {
        let mut p = at(0);
        let a = p.sent(0, 1, None);
        for o in 1..10_000 {
            p.passed(o);
        }
        assert_eq!(p.queued(), 2);
        assert_eq!(p.pos.next, 0);
        p.resolved(a, Some(0));
        assert_eq!(p.pos.next, 10_000);
        assert_eq!(p.queued(), 0);
        // With nothing outstanding, a passed record advances at once.
        p.passed(10_000);
        assert_eq!(p.pos.next, 10_001);
        assert_eq!(p.pos.written, Some(0));
    }

    #[test]
    fn a_record_the_producer_did_not_take_is_taken_back() {
        let mut p = at(5);
        let a = p.sent(5, 10, None);
        p.unsent(a);
        assert_eq!((p.pending(), p.in_flight, p.queued()), (0, 0, 0));
        let b = p.sent(5, 10, None);
        assert_eq!(b, a, "the sequence number is reused");
        p.resolved(b, Some(0));
        assert_eq!(p.pos.next, 6);
    }

    #[test]
    fn a_sequence_number_is_found_from_its_low_bits() {
        let mut p = at(0);
        let mask = (1 << 4) - 1;
        for o in 0..40 {
            let s = p.sent(o, 1, None);
            let low = s & mask;
            assert_eq!(p.seq_from_low_bits(low, mask), s);
            p.resolved(s, Some(o));
        }
        let a = p.sent(40, 1, None);
        let b = p.sent(41, 1, None);
        assert_eq!(p.seq_from_low_bits(b & mask, mask), b);
        assert_eq!(p.seq_from_low_bits(a & mask, mask), a);
    }
}
