//! One read batch of store mutations (records, digests, sequences, latest values, order
//! state, positions), written atomically by [`Store::write`].

use rocksdb::WriteBatch;

use super::{
    LATEST, ORDER, POSITIONS, RECORDS, RangeDigest, RecordEntry, Run, SEQUENCE, SequenceRun, Store,
};
use crate::fasthash::FastMap;
use crate::fingerprint::Fingerprint;
use crate::keys;

/// Mutations of one read batch, written together by [`Store::write`].
pub struct Batch {
    pub(super) wb: WriteBatch,
    pub(super) ranges: FastMap<Vec<u8>, RangeDigest>,
    /// Where a record's keys are built (the write batch copies them).
    key: Vec<u8>,
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("writes", &self.wb.len())
            .field("ranges", &self.ranges.len())
            .finish()
    }
}

impl Batch {
    /// An empty batch for `store`.
    pub fn new() -> Batch {
        Batch {
            wb: WriteBatch::default(),
            ranges: FastMap::default(),
            key: Vec::new(),
        }
    }

    /// A record of a provenance (identity) topic, in the group of origin partition
    /// `origin_partition` (key prefix `group`), added to that group's open `run`; a run
    /// it does not continue is written first ([`Batch::end_run`]).
    pub fn put_record(
        &mut self,
        store: &Store,
        group: &[u8],
        origin_partition: i32,
        e: RecordEntry,
        late: bool,
        run: &mut Run,
    ) {
        let hash = e.hash(origin_partition);
        if let Some(e) = run.push(e, hash, late) {
            self.end_run(store, group, run);
            run.push(e, hash, late);
        }
    }

    /// Writes a group's open run, if it holds records, and adds its digest to its range.
    pub fn end_run(&mut self, store: &Store, group: &[u8], run: &mut Run) {
        let Some((x, own, p)) = run.start() else {
            return;
        };
        let k = &mut self.key;
        k.clear();
        k.extend_from_slice(group);
        keys::push_u64(k, x);
        keys::push_u64(k, own);
        k.extend((p as u32).to_be_bytes());
        self.wb.put_cf(store.cf(RECORDS), &k[..], run.value());
        // The range key: the group, then the range index (a run never crosses ranges).
        // Allocated only for a range this batch has not touched yet.
        k.truncate(group.len());
        keys::push_u64(k, x / keys::RANGE);
        let digest = run.reset();
        match self.ranges.get_mut(&k[..]) {
            Some(d) => d.merge(&digest),
            None => {
                self.ranges.insert(k.clone(), digest);
            }
        }
    }

    /// The highest origin offset seen in a group.
    pub fn put_order(&mut self, store: &Store, group: &[u8], highest: u64) {
        self.wb
            .put_cf(store.cf(ORDER), group, highest.to_be_bytes());
    }

    /// A record of a positional topic (partition key prefix `prefix`), added to the
    /// partition's open `run`; a run it does not continue is written first.
    pub fn put_sequence(
        &mut self,
        store: &Store,
        prefix: &[u8],
        own_offset: u64,
        fp: Fingerprint,
        run: &mut SequenceRun,
    ) {
        if !run.push(own_offset, fp) {
            self.end_sequence(store, prefix, run);
            run.push(own_offset, fp);
        }
    }

    /// Writes a partition's open sequence run, if it holds records.
    pub fn end_sequence(&mut self, store: &Store, prefix: &[u8], run: &mut SequenceRun) {
        let Some(first) = run.start() else {
            return;
        };
        let k = &mut self.key;
        k.clear();
        k.extend_from_slice(prefix);
        keys::push_u64(k, first);
        self.wb.put_cf(store.cf(SEQUENCE), &k[..], run.value());
        run.reset();
    }

    /// The latest record of a key in a compacted topic; `None` (a tombstone) removes it.
    pub fn put_latest(
        &mut self,
        store: &Store,
        prefix: &[u8],
        key: &[u8],
        latest: Option<(u64, Fingerprint)>,
    ) {
        let k = &mut self.key;
        k.clear();
        k.extend_from_slice(prefix);
        k.extend_from_slice(key);
        match latest {
            Some((own, fp)) => {
                let mut v = [0u8; 24];
                v[..8].copy_from_slice(&own.to_be_bytes());
                v[8..].copy_from_slice(&fp.to_be_bytes());
                self.wb.put_cf(store.cf(LATEST), &k[..], v);
            }
            None => self.wb.delete_cf(store.cf(LATEST), &k[..]),
        }
    }

    /// The next offset to read on a side's partition, its log start when read, and the
    /// last record read there ([`Position`]).
    pub fn put_position(
        &mut self,
        store: &Store,
        prefix: &[u8],
        next: i64,
        log_start: Option<i64>,
        last: Option<(i64, Fingerprint)>,
    ) {
        let mut v = next.to_be_bytes().to_vec();
        if log_start.is_some() || last.is_some() {
            // A log start of 0 never looks like a recreated partition.
            v.extend(log_start.unwrap_or(0).to_be_bytes());
        }
        if let Some((offset, fp)) = last {
            v.extend(offset.to_be_bytes());
            v.extend(fp.to_be_bytes());
        }
        self.wb.put_cf(store.cf(POSITIONS), prefix, v);
    }
}

impl Default for Batch {
    fn default() -> Self {
        Batch::new()
    }
}
