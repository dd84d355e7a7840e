//! Runs: the `records` family keeps records that follow each other on both logs as one
//! entry, so that a read batch writes one RocksDB entry per partition and origin instead
//! of one per record.
//!
//! A run is records of one group (side, topic, origin partition, origin) whose origin
//! offsets and own offsets both go up by one from record to record, held in one own
//! partition, within one digest range ([`keys::RANGE`]): its key is the first record's
//! (group, origin offset, own offset, own partition), its value the own partition and
//! then the records' fingerprints in order. The own partition is in the key so that a
//! copy held in another partition at the same offsets never overwrites a run. Stores
//! from before runs (version 1) hold single-record entries keyed without the partition,
//! with the same value: they read as runs of one.
//!
//! Runs never cross a range boundary, so reading from a range's first origin offset
//! finds every record of the range, and runs of one group may overlap only where a side
//! holds copies of the same origin offsets twice (duplicates): [`Sorted`] merges them
//! back into (origin offset, own offset) order.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::{RangeDigest, RecordEntry};
use crate::error::VerifyError;
use crate::fingerprint::Fingerprint;
use crate::keys;

/// A run being built by one side's reader, in one group: written when the next record
/// does not continue it, and at the end of each read batch.
#[derive(Debug, Default)]
pub struct Run {
    /// Origin offset, own offset and own partition of the first record; `None` while
    /// the run is empty.
    first: Option<(u64, u64, i32)>,
    len: u64,
    /// The value as stored: own partition, then fingerprints.
    value: Vec<u8>,
    /// The run's contribution to its range's digest.
    digest: RangeDigest,
}

impl Run {
    /// Whether `e` is the record right after this run's last, in its range.
    fn continued_by(&self, e: &RecordEntry) -> bool {
        self.first.is_some_and(|(x, own, p)| {
            p == e.own_partition
                && e.origin_offset == x + self.len
                && e.own_offset == own + self.len
                && e.origin_offset % keys::RANGE != 0
        })
    }

    /// Adds `e` (whose digest contribution is `hash`) if it continues the run, else
    /// hands the run back to be written first: `Some(e)` means nothing was added.
    pub(super) fn push(&mut self, e: RecordEntry, hash: u128, late: bool) -> Option<RecordEntry> {
        if self.first.is_none() {
            self.first = Some((e.origin_offset, e.own_offset, e.own_partition));
            self.value.extend(e.own_partition.to_be_bytes());
        } else if !self.continued_by(&e) {
            return Some(e);
        }
        self.len += 1;
        self.value.extend(e.fp.to_be_bytes());
        self.digest.add_record(hash);
        self.digest.inversions += u64::from(late);
        None
    }

    /// Origin offset, own offset and own partition of the run's first record; `None`
    /// while it is empty.
    pub(super) fn start(&self) -> Option<(u64, u64, i32)> {
        self.first
    }

    /// The value as stored: own partition, then the fingerprints.
    pub(super) fn value(&self) -> &[u8] {
        &self.value
    }

    /// Empties the run and hands back its digest.
    pub(super) fn reset(&mut self) -> RangeDigest {
        self.first = None;
        self.len = 0;
        clear(&mut self.value);
        std::mem::take(&mut self.digest)
    }
}

/// A run of a positional sequence being built: records at consecutive own offsets of
/// one partition, within one range of [`keys::RANGE`] own offsets. Stored under the
/// partition prefix and its first own offset, the value the fingerprints in order (a
/// run of one is the single-record entry of stores from before runs).
#[derive(Debug, Default)]
pub struct SequenceRun {
    first: Option<u64>,
    len: u64,
    value: Vec<u8>,
}

impl SequenceRun {
    /// Adds the record at own offset `own` if it continues the run (or the run is
    /// empty); `false` means nothing was added and the run must be written first.
    pub(super) fn push(&mut self, own: u64, fp: Fingerprint) -> bool {
        match self.first {
            None => self.first = Some(own),
            Some(first) if own == first + self.len && own % keys::RANGE != 0 => {}
            Some(_) => return false,
        }
        self.len += 1;
        self.value.extend(fp.to_be_bytes());
        true
    }

    /// Own offset of the run's first record; `None` while it is empty.
    pub(super) fn start(&self) -> Option<u64> {
        self.first
    }

    /// The value as stored: the fingerprints.
    pub(super) fn value(&self) -> &[u8] {
        &self.value
    }

    /// Empties the run.
    pub(super) fn reset(&mut self) {
        self.first = None;
        self.len = 0;
        clear(&mut self.value);
    }
}

/// Empties a run's buffer, keeping it for the next run only if it is small: a side keeps
/// a run per partition and origin for the whole pass, and runs of up to 1024 records
/// (16 KiB) in each of thousands of partitions would hold on to memory for nothing.
fn clear(value: &mut Vec<u8>) {
    if value.capacity() > KEPT {
        *value = Vec::new();
    } else {
        value.clear();
    }
}

/// Bytes of a run's buffer kept between runs.
const KEPT: usize = 1024;

/// The records of a stored sequence run (key after a partition prefix of `n` bytes):
/// `(own offset, fingerprint)` in order.
pub(super) fn sequence_records(
    k: &[u8],
    v: &[u8],
    n: usize,
) -> Result<impl Iterator<Item = (u64, Fingerprint)> + use<>, VerifyError> {
    if k.len() != n + 8 || v.is_empty() || v.len() % 16 != 0 {
        return Err(VerifyError::Corrupt(format!(
            "sequence run with a key of {} bytes and a value of {} bytes",
            k.len(),
            v.len()
        )));
    }
    let first = keys::u64_at(k, n);
    let fps: Vec<Fingerprint> = v
        .chunks_exact(16)
        .map(|c| u128::from_be_bytes(c.try_into().expect("16 bytes")))
        .collect();
    Ok((first..).zip(fps))
}

/// A stored run, decoded: its records one at a time.
#[derive(Debug, PartialEq, Eq)]
struct Cursor {
    origin_offset: u64,
    own_offset: u64,
    own_partition: i32,
    /// Fingerprints, 16 bytes each; `at` is the next one's index.
    fps: Box<[u8]>,
    at: usize,
}

impl Cursor {
    /// Decodes a run's key (after a group prefix of `n` bytes: origin offset, own offset
    /// and, but in version-1 stores, own partition) and value.
    fn decode(k: &[u8], v: Box<[u8]>, n: usize) -> Result<Cursor, VerifyError> {
        let key_ok = k.len() == n + 16 || k.len() == n + 20;
        if !key_ok || v.len() < 20 || (v.len() - 4) % 16 != 0 {
            return Err(VerifyError::Corrupt(format!(
                "record run with a key of {} bytes and a value of {} bytes",
                k.len(),
                v.len()
            )));
        }
        Ok(Cursor {
            origin_offset: keys::u64_at(k, n),
            own_offset: keys::u64_at(k, n + 8),
            own_partition: i32::from_be_bytes(v[..4].try_into().expect("4 bytes")),
            fps: v,
            at: 0,
        })
    }

    fn key(&self) -> (u64, u64, i32) {
        (self.origin_offset, self.own_offset, self.own_partition)
    }

    fn fp(&self) -> Fingerprint {
        let i = 4 + 16 * self.at;
        u128::from_be_bytes(self.fps[i..i + 16].try_into().expect("16 bytes"))
    }

    /// The current record; moves to the next, `false` when the run is done.
    fn take(&mut self) -> (RecordEntry, bool) {
        let e = RecordEntry {
            origin_offset: self.origin_offset,
            own_offset: self.own_offset,
            own_partition: self.own_partition,
            fp: self.fp(),
        };
        self.at += 1;
        self.origin_offset += 1;
        self.own_offset += 1;
        (e, 4 + 16 * self.at < self.fps.len())
    }
}

impl Ord for Cursor {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}

impl PartialOrd for Cursor {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// The records of stored runs (raw `(key, value)` in key order, keys after a group
/// prefix of `n` bytes), one at a time in (origin offset, own offset, own partition)
/// order.
pub(super) struct Sorted<I> {
    raw: I,
    n: usize,
    /// The next stored run, read but not yet open.
    next: Option<Cursor>,
    open: BinaryHeap<Reverse<Cursor>>,
    done: bool,
}

impl<I> Sorted<I>
where
    I: Iterator<Item = Result<super::KeyValue, VerifyError>>,
{
    pub(super) fn new(raw: I, n: usize) -> Sorted<I> {
        Sorted {
            raw,
            n,
            next: None,
            open: BinaryHeap::new(),
            done: false,
        }
    }

    /// Reads the next stored run into `next`, if there is one and none is waiting.
    fn fill(&mut self) -> Result<(), VerifyError> {
        if self.next.is_none() && !self.done {
            match self.raw.next() {
                Some(item) => {
                    let (k, v) = item?;
                    self.next = Some(Cursor::decode(&k, v, self.n)?);
                }
                None => self.done = true,
            }
        }
        Ok(())
    }

    fn step(&mut self) -> Result<Option<RecordEntry>, VerifyError> {
        // Runs are stored by their first record's key: every run that starts at or
        // before the lowest open record must be open before that record is the lowest.
        loop {
            self.fill()?;
            let Some(next) = &self.next else { break };
            if self
                .open
                .peek()
                .is_some_and(|Reverse(c)| c.key() < next.key())
            {
                break;
            }
            let run = self.next.take().expect("checked above");
            self.open.push(Reverse(run));
        }
        let Some(Reverse(mut c)) = self.open.pop() else {
            return Ok(None);
        };
        let (e, more) = c.take();
        if more {
            self.open.push(Reverse(c));
        }
        Ok(Some(e))
    }
}

impl<I> Iterator for Sorted<I>
where
    I: Iterator<Item = Result<super::KeyValue, VerifyError>>,
{
    type Item = Result<RecordEntry, VerifyError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done && self.next.is_none() && self.open.is_empty() {
            return None;
        }
        match self.step() {
            Ok(e) => e.map(Ok),
            Err(e) => {
                // An error ends the iteration after it is reported.
                self.done = true;
                self.next = None;
                self.open.clear();
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(x: u64, own: u64, p: i32, fp: u128) -> RecordEntry {
        RecordEntry {
            origin_offset: x,
            own_offset: own,
            own_partition: p,
            fp,
        }
    }

    /// Builds stored runs from records in arrival order, as a side's batch would.
    fn store(records: &[RecordEntry]) -> Vec<super::super::KeyValue> {
        // A map, as RocksDB is: an entry put again under the same key replaces the first.
        let mut run = Run::default();
        let mut out = std::collections::BTreeMap::new();
        let emit = |run: &mut Run, out: &mut std::collections::BTreeMap<_, _>| {
            if let Some((x, own, p)) = run.start() {
                let mut k = Vec::new();
                keys::push_u64(&mut k, x);
                keys::push_u64(&mut k, own);
                k.extend((p as u32).to_be_bytes());
                out.insert(k.into_boxed_slice(), Box::<[u8]>::from(run.value()));
            }
            run.reset();
        };
        for e in records {
            if let Some(e) = run.push(*e, 0, false) {
                emit(&mut run, &mut out);
                assert!(run.push(e, 0, false).is_none());
            }
        }
        emit(&mut run, &mut out);
        out.into_iter().collect()
    }

    fn read(stored: Vec<super::super::KeyValue>) -> Vec<RecordEntry> {
        Sorted::new(stored.into_iter().map(Ok), 0)
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn consecutive_records_make_one_run_and_read_back_in_order() {
        let records: Vec<_> = (0..10)
            .map(|i| entry(100 + i, 7 + i, 3, i as u128))
            .collect();
        let stored = store(&records);
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].1.len(), 4 + 16 * 10);
        assert_eq!(read(stored), records);
    }

    #[test]
    fn a_run_ends_at_a_gap_a_partition_change_and_a_range_boundary() {
        let r = keys::RANGE;
        let records = vec![
            entry(r - 2, 0, 0, 1),
            entry(r - 1, 1, 0, 2),
            entry(r, 2, 0, 3),     // a new range
            entry(r + 1, 3, 1, 4), // another own partition
            entry(r + 3, 4, 1, 5), // a gap in origin offsets
            entry(r + 4, 6, 1, 6), // a gap in own offsets
        ];
        let stored = store(&records);
        assert_eq!(stored.len(), 5);
        assert_eq!(read(stored), records);
    }

    #[test]
    fn duplicates_and_late_records_merge_back_into_key_order() {
        // Copies of 0..6 at own 0..6, then copies of 2..4 again at own 6..8, then a late
        // record 9 before 8.
        let mut records: Vec<_> = (0..6).map(|i| entry(i, i, 0, i as u128)).collect();
        records.extend((2..4).map(|i| entry(i, i + 4, 0, 100 + i as u128)));
        records.push(entry(9, 8, 0, 9));
        records.push(entry(8, 9, 0, 8));
        let stored = store(&records);
        let mut want = records.clone();
        want.sort_by_key(|e| (e.origin_offset, e.own_offset));
        assert_eq!(read(stored), want);
    }

    #[test]
    fn a_copy_in_another_partition_at_the_same_offsets_keeps_its_own_run() {
        // Two partitions of the target both start empty: a misplaced copy of origin 0 at
        // offset 0 of partition 1 has the same offsets as the placed run's first record.
        let mut records: Vec<_> = (0..5).map(|i| entry(i, i, 0, i as u128)).collect();
        records.insert(1, entry(0, 0, 1, 99));
        let stored = store(&records);
        assert_eq!(stored.len(), 3, "{stored:?}");
        let mut want = records.clone();
        want.sort_by_key(|e| (e.origin_offset, e.own_offset, e.own_partition));
        assert_eq!(read(stored), want);
    }

    #[test]
    fn single_record_entries_of_a_version_1_store_read_as_runs_of_one() {
        let mut stored = Vec::new();
        for (x, own) in [(0u64, 3u64), (1, 4), (1, 9)] {
            let mut k = Vec::new();
            keys::push_u64(&mut k, x);
            keys::push_u64(&mut k, own);
            let mut v = 2i32.to_be_bytes().to_vec();
            v.extend((x as u128 + 7).to_be_bytes());
            stored.push((k.into_boxed_slice(), v.into_boxed_slice()));
        }
        let got: Vec<_> = read(stored)
            .iter()
            .map(|e| (e.origin_offset, e.own_offset, e.own_partition, e.fp))
            .collect();
        assert_eq!(got, vec![(0, 3, 2, 7), (1, 4, 2, 8), (1, 9, 2, 8)]);
    }

    #[test]
    fn a_sequence_run_holds_consecutive_offsets_within_a_range() {
        let mut run = SequenceRun::default();
        let r = keys::RANGE;
        assert!(run.push(r - 2, 1));
        assert!(run.push(r - 1, 2));
        assert!(!run.push(r, 3), "a new range starts a new run");
        let mut k = Vec::new();
        keys::push_u64(&mut k, run.start().unwrap());
        let got: Vec<_> = sequence_records(&k, run.value(), 0).unwrap().collect();
        assert_eq!(got, vec![(r - 2, 1), (r - 1, 2)]);
        run.reset();
        assert!(run.push(r + 5, 4));
        assert!(!run.push(r + 7, 5), "a gap starts a new run");
        let err = sequence_records(&k, &[0u8; 17], 0)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("value of 17 bytes"), "{err}");
    }

    #[test]
    fn a_value_of_the_wrong_size_is_named_as_corrupt() {
        let mut k = Vec::new();
        keys::push_u64(&mut k, 1);
        keys::push_u64(&mut k, 1);
        let stored = vec![(k.into_boxed_slice(), vec![0u8; 21].into_boxed_slice())];
        let mut it = Sorted::new(stored.into_iter().map(Ok), 0);
        let err = it.next().unwrap().unwrap_err().to_string();
        assert!(err.contains("value of 21 bytes"), "{err}");
        assert!(it.next().is_none());
    }
}
