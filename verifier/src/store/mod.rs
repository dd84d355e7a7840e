//! The verifier's RocksDB store: a projection of what the clusters hold, which can be
//! deleted and derived again by reading them (DESIGN.md, Verifier).
//!
//! Column families (key layouts in [`crate::keys`]):
//! - `records`: provenance identity of a run's first record -> own partition and the
//!   fingerprints of the run's records, per side ([`runs`]);
//! - `ranges`: per group and range of [`keys::RANGE`] origin offsets, count, digest sum
//!   and order inversions, kept by an additive merge operator;
//! - `sequence`: own offset of a run's first record -> the run's fingerprints
//!   (positional topics);
//! - `latest`: record key -> own offset and fingerprint (compacted topics);
//! - `positions`: next offset to read, and the log start the partition had then, per
//!   side and partition (to notice a partition recreated or truncated since);
//! - `order`: highest origin offset seen per group (to count records that arrive late);
//! - `meta`: the signature of the run the store belongs to.
//!
//! Records, digests and positions of one batch go in one [`WriteBatch`], so a crash
//! never leaves the store ahead of or behind its positions.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rocksdb::{
    ColumnFamily, ColumnFamilyDescriptor, DB, Direction, IteratorMode, MergeOperands, Options,
    ReadOptions, WriteBatch,
};
use xxhash_rust::xxh3::{Xxh3, xxh3_128};

use crate::error::VerifyError;
use crate::fingerprint::Fingerprint;
use crate::keys;

mod batch;
mod runs;

pub use batch::Batch;
pub use runs::{Run, SequenceRun};

pub(crate) const RECORDS: &str = "records";
pub(crate) const RANGES: &str = "ranges";
pub(crate) const SEQUENCE: &str = "sequence";
pub(crate) const LATEST: &str = "latest";
pub(crate) const POSITIONS: &str = "positions";
pub(crate) const ORDER: &str = "order";
const META: &str = "meta";
const FAMILIES: [&str; 7] = [RECORDS, RANGES, SEQUENCE, LATEST, POSITIONS, ORDER, META];

/// Layout version of the store; a store of another version is refused, not misread.
/// Version 2 keeps records in runs ([`runs`]), which a version-1 reader would misread
/// (it takes the first fingerprint of an entry); a version-1 store is read as it is
/// (its entries are runs of one) and marked version 2 when opened.
pub const STORE_VERSION: &str = "duplex-verify-store/2";

/// The layout before runs, upgraded in place by [`Store::open`].
const STORE_VERSION_1: &str = "duplex-verify-store/1";

/// Count, digest sum and order inversions of a set of records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RangeDigest {
    /// Records (copies included).
    pub count: u64,
    /// Wrapping sum of [`record_hash`] over the records: order-independent.
    pub sum: u128,
    /// Records that arrived after a record with a higher origin offset.
    pub inversions: u64,
}

impl RangeDigest {
    /// Adds one record (its [`record_hash`]).
    pub fn add_record(&mut self, hash: u128) {
        self.count += 1;
        self.sum = self.sum.wrapping_add(hash);
    }

    /// Adds another digest.
    pub fn merge(&mut self, other: &RangeDigest) {
        self.count += other.count;
        self.sum = self.sum.wrapping_add(other.sum);
        self.inversions += other.inversions;
    }

    fn encode(&self) -> [u8; 32] {
        let mut b = [0u8; 32];
        b[..8].copy_from_slice(&self.count.to_be_bytes());
        b[8..24].copy_from_slice(&self.sum.to_be_bytes());
        b[24..].copy_from_slice(&self.inversions.to_be_bytes());
        b
    }

    fn decode(b: &[u8]) -> Option<RangeDigest> {
        if b.len() != 32 {
            return None;
        }
        Some(RangeDigest {
            count: u64::from_be_bytes(b[..8].try_into().ok()?),
            sum: u128::from_be_bytes(b[8..24].try_into().ok()?),
            inversions: u64::from_be_bytes(b[24..].try_into().ok()?),
        })
    }
}

/// A record's contribution to a digest: xxh3-128 of its origin offset and fingerprint,
/// and of the partition holding it when that is not its origin partition (`wrong`), so
/// that a copy in the wrong partition changes the digest of its range and the range is
/// read record by record. A copy where it belongs hashes as before partitions counted.
pub fn record_hash(origin_offset: u64, fp: Fingerprint, wrong: Option<i32>) -> u128 {
    let mut b = [0u8; 28];
    b[..8].copy_from_slice(&origin_offset.to_be_bytes());
    b[8..24].copy_from_slice(&fp.to_be_bytes());
    match wrong {
        None => xxh3_128(&b[..24]),
        Some(p) => {
            b[24..].copy_from_slice(&(p as u32).to_be_bytes());
            xxh3_128(&b)
        }
    }
}

fn merge_digests(_key: &[u8], existing: Option<&[u8]>, ops: &MergeOperands) -> Option<Vec<u8>> {
    let mut d = existing.and_then(RangeDigest::decode).unwrap_or_default();
    for op in ops {
        d.merge(&RangeDigest::decode(op)?);
    }
    Some(d.encode().to_vec())
}

/// One entry of the `records` family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordEntry {
    /// Offset in the origin's partition.
    pub origin_offset: u64,
    /// Offset on the side that holds this copy.
    pub own_offset: u64,
    /// Partition on the side that holds this copy.
    pub own_partition: i32,
    /// Fingerprint.
    pub fp: Fingerprint,
}

impl RecordEntry {
    /// Whether this copy sits in another partition than its origin partition `p`.
    pub fn misplaced(&self, p: i32) -> bool {
        self.own_partition != p
    }

    /// Its contribution to the digest of its group, whose origin partition is `p`.
    pub fn hash(&self, p: i32) -> u128 {
        let wrong = self.misplaced(p).then_some(self.own_partition);
        record_hash(self.origin_offset, self.fp, wrong)
    }
}

/// How far a side's partition has been read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Next offset to read.
    pub next: i64,
    /// The partition's log start when the position was written (absent in positions
    /// written before it was kept).
    pub log_start: Option<i64>,
    /// Offset and fingerprint of the last record read there (identity and positional
    /// topics): a later pass reads it again to see that the partition is the same one.
    pub last: Option<(i64, Fingerprint)>,
}

impl Position {
    fn decode(v: &[u8]) -> Option<Position> {
        let next = i64::from_be_bytes(v.get(..8)?.try_into().ok()?);
        let log_start = v
            .get(8..16)
            .and_then(|b| Some(i64::from_be_bytes(b.try_into().ok()?)));
        let last = v.get(16..40).and_then(|b| {
            let offset = i64::from_be_bytes(b[..8].try_into().ok()?);
            Some((offset, u128::from_be_bytes(b[8..].try_into().ok()?)))
        });
        Some(Position {
            next,
            log_start,
            last,
        })
    }
}

/// A raw key and value read from a column family.
pub(crate) type KeyValue = (Box<[u8]>, Box<[u8]>);

/// The verifier's store. Shared by the side readers (one writer per side).
pub struct Store {
    db: DB,
    dir: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("dir", &self.dir).finish()
    }
}

fn cf_options(name: &str) -> Options {
    let mut o = Options::default();
    if name == RANGES {
        o.set_merge_operator_associative("duplex-range-digest", merge_digests);
    }
    o
}

impl Store {
    /// Opens (or creates) the store at `dir` for a run described by `signature`. A store
    /// made for another run (other clusters, topics or modes) is refused with an error
    /// that says so, rather than mixed with this one.
    pub fn open(dir: &Path, signature: &str) -> Result<Store, VerifyError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.increase_parallelism(2);
        let cfs = FAMILIES
            .iter()
            .map(|n| ColumnFamilyDescriptor::new(*n, cf_options(n)));
        let db =
            DB::open_cf_descriptors(&opts, dir, cfs).map_err(|e| VerifyError::store(dir, e))?;
        let store = Store {
            db,
            dir: dir.to_path_buf(),
        };
        let wanted = format!("{STORE_VERSION}\n{signature}");
        let meta = store.cf(META);
        match store
            .db
            .get_cf(meta, b"signature")
            .map_err(|e| store.err(e))?
        {
            Some(found) if found == wanted.as_bytes() => {}
            Some(found) if found == format!("{STORE_VERSION_1}\n{signature}").as_bytes() => store
                .db
                .put_cf(meta, b"signature", wanted.as_bytes())
                .map_err(|e| store.err(e))?,
            Some(found) => {
                return Err(VerifyError::StoreMismatch {
                    dir: dir.to_path_buf(),
                    found: String::from_utf8_lossy(&found).into_owned(),
                    wanted,
                });
            }
            None => store
                .db
                .put_cf(meta, b"signature", wanted.as_bytes())
                .map_err(|e| store.err(e))?,
        }
        Ok(store)
    }

    /// Where the store lives.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn cf(&self, name: &str) -> &ColumnFamily {
        self.db
            .cf_handle(name)
            .expect("column family created at open")
    }

    pub(crate) fn err(&self, e: rocksdb::Error) -> VerifyError {
        VerifyError::store(&self.dir, e)
    }

    /// Writes one batch atomically.
    pub fn write(&self, batch: Batch) -> Result<(), VerifyError> {
        let mut wb = batch.wb;
        for (key, d) in &batch.ranges {
            wb.merge_cf(self.cf(RANGES), key, d.encode());
        }
        self.db.write(wb).map_err(|e| self.err(e))
    }

    /// Next offset to read on a side's partition, if the store has read any of it.
    pub fn position(
        &self,
        side: u8,
        topic: &str,
        partition: i32,
    ) -> Result<Option<i64>, VerifyError> {
        Ok(self.position_state(side, topic, partition)?.map(|p| p.next))
    }

    /// How far a side's partition has been read, if the store has read any of it.
    pub fn position_state(
        &self,
        side: u8,
        topic: &str,
        partition: i32,
    ) -> Result<Option<Position>, VerifyError> {
        let k = keys::partition(side, topic, partition);
        let v = self
            .db
            .get_cf(self.cf(POSITIONS), k)
            .map_err(|e| self.err(e))?;
        Ok(v.and_then(|v| Position::decode(&v)))
    }

    /// Every partition of a side the store has read some of: `(topic, partition, position)`.
    pub fn positions(&self, side: u8) -> Result<Vec<(String, i32, Position)>, VerifyError> {
        let mut out = Vec::new();
        for item in self.scan(POSITIONS, &[side], None) {
            let (k, v) = item?;
            let (topic, p) = keys::split_partition(&k)
                .ok_or_else(|| VerifyError::Corrupt(format!("position key {k:02x?}")))?;
            let pos = Position::decode(&v)
                .ok_or_else(|| VerifyError::Corrupt(format!("position of {} bytes", v.len())))?;
            out.push((topic.to_string(), p, pos));
        }
        Ok(out)
    }

    /// Forgets everything the store derived from one topic of one side (records, digests,
    /// sequences, latest values, order state and positions), in one write, so that the
    /// next read derives it again from the topic's log start.
    pub fn forget_topic(&self, side: u8, topic: &str) -> Result<(), VerifyError> {
        let from = keys::topic(side, topic);
        let to = keys::prefix_end(&from).expect("a topic prefix has a byte below 0xff");
        let mut wb = WriteBatch::default();
        for family in FAMILIES.iter().filter(|f| **f != META) {
            wb.delete_range_cf(self.cf(family), &from, &to);
        }
        self.db.write(wb).map_err(|e| self.err(e))
    }

    /// Forgets a side's latest values of one partition and its position (compacted
    /// topics are derived again on every pass: see [`crate::run::plan`]).
    pub fn forget_partition(
        &self,
        side: u8,
        topic: &str,
        partition: i32,
    ) -> Result<(), VerifyError> {
        let from = keys::partition(side, topic, partition);
        let to = keys::prefix_end(&from).expect("a partition prefix has a byte below 0xff");
        let mut wb = WriteBatch::default();
        for family in [LATEST, POSITIONS] {
            wb.delete_range_cf(self.cf(family), &from, &to);
        }
        self.db.write(wb).map_err(|e| self.err(e))
    }

    /// Highest origin offset seen per origin in a side's partition.
    pub fn order_state(
        &self,
        side: u8,
        topic: &str,
        partition: i32,
    ) -> Result<HashMap<String, u64>, VerifyError> {
        let prefix = keys::partition(side, topic, partition);
        let mut out = HashMap::new();
        for item in self.scan(ORDER, &prefix, None) {
            let (k, v) = item?;
            let origin = keys::origin_after(&k, prefix.len())
                .unwrap_or_default()
                .to_string();
            out.insert(origin, keys::u64_at(&v, 0));
        }
        Ok(out)
    }

    /// Origins a side holds records of in a partition (as origin partition), whether or
    /// not the records are where they belong.
    pub fn origins(
        &self,
        side: u8,
        topic: &str,
        partition: i32,
    ) -> Result<Vec<String>, VerifyError> {
        let prefix = keys::partition(side, topic, partition);
        let mut out: Vec<String> = Vec::new();
        for item in self.scan(RANGES, &prefix, None) {
            let (k, _) = item?;
            let origin = keys::origin_after(&k, prefix.len()).unwrap_or_default();
            if out.last().is_none_or(|o| o != origin) {
                out.push(origin.to_string());
            }
        }
        Ok(out)
    }

    /// Iterates `(key, value)` of a family under `prefix`, from `from` (a full key) on.
    pub(crate) fn scan<'a>(
        &'a self,
        family: &str,
        prefix: &[u8],
        from: Option<&[u8]>,
    ) -> impl Iterator<Item = Result<KeyValue, VerifyError>> + use<'a> {
        let mut ro = ReadOptions::default();
        if let Some(end) = keys::prefix_end(prefix) {
            ro.set_iterate_upper_bound(end);
        }
        let start = from.unwrap_or(prefix).to_vec();
        self.db
            .iterator_cf_opt(
                self.cf(family),
                ro,
                IteratorMode::From(&start, Direction::Forward),
            )
            .map(move |r| r.map_err(|e| self.err(e)))
    }

    /// Iterates a side's records of one origin in (origin offset, own offset) order,
    /// from origin offset `from` on. Records are stored in runs that never cross a
    /// digest range, so the scan starts at the first offset of `from`'s range.
    pub fn records<'a>(
        &'a self,
        side: u8,
        topic: &str,
        partition: i32,
        origin: &str,
        from: u64,
    ) -> impl Iterator<Item = Result<RecordEntry, VerifyError>> + use<'a> {
        let prefix = keys::group(side, topic, partition, origin);
        let mut start = prefix.clone();
        keys::push_u64(&mut start, from - from % keys::RANGE);
        let raw = self.scan(RECORDS, &prefix, Some(&start));
        runs::Sorted::new(raw, prefix.len())
            .filter(move |e| e.as_ref().map_or(true, |e| e.origin_offset >= from))
    }

    /// Range digests of a side's group, as `(range index, digest)` in order.
    pub fn ranges<'a>(
        &'a self,
        side: u8,
        topic: &str,
        partition: i32,
        origin: &str,
    ) -> impl Iterator<Item = Result<(u64, RangeDigest), VerifyError>> + use<'a> {
        let prefix = keys::group(side, topic, partition, origin);
        let n = prefix.len();
        self.scan(RANGES, &prefix, None).map(move |item| {
            let (k, v) = item?;
            let d = RangeDigest::decode(&v).ok_or_else(|| {
                VerifyError::Corrupt(format!("range digest of {} bytes", v.len()))
            })?;
            Ok((keys::u64_at(&k, n), d))
        })
    }

    /// A side's positional sequence of a partition: `(own offset, fingerprint)` from
    /// `from`. Stored in runs that never cross a range of [`keys::RANGE`] offsets, so the
    /// scan starts at the first offset of `from`'s range.
    pub fn sequence<'a>(
        &'a self,
        side: u8,
        topic: &str,
        partition: i32,
        from: u64,
    ) -> impl Iterator<Item = Result<(u64, Fingerprint), VerifyError>> + use<'a> {
        let prefix = keys::partition(side, topic, partition);
        let mut start = prefix.clone();
        keys::push_u64(&mut start, from - from % keys::RANGE);
        let n = prefix.len();
        self.scan(SEQUENCE, &prefix, Some(&start))
            .flat_map(move |item| {
                let run = item.and_then(|(k, v)| runs::sequence_records(&k, &v, n));
                let (ok, err) = match run {
                    Ok(run) => (Some(run.map(Ok)), None),
                    Err(e) => (None, Some(Err(e))),
                };
                ok.into_iter().flatten().chain(err)
            })
            .filter(move |r| r.as_ref().map_or(true, |(own, _)| *own >= from))
    }

    /// A side's latest record per key of a compacted partition: `(key, own offset, fingerprint)`.
    pub fn latest<'a>(
        &'a self,
        side: u8,
        topic: &str,
        partition: i32,
    ) -> impl Iterator<Item = Result<(Vec<u8>, u64, Fingerprint), VerifyError>> + use<'a> {
        let prefix = keys::partition(side, topic, partition);
        let n = prefix.len();
        self.scan(LATEST, &prefix, None).map(move |item| {
            let (k, v) = item?;
            Ok((
                k[n..].to_vec(),
                keys::u64_at(&v, 0),
                u128::from_be_bytes(v[8..24].try_into().expect("16-byte fingerprint")),
            ))
        })
    }

    /// Digest of everything the store derived from the clusters (all families but
    /// `meta`): two stores built from the same records have the same content digest.
    /// The `records` and `sequence` families count record by record (a wrapping sum over
    /// the records), not run by run: where runs end depends on when read batches were
    /// written.
    pub fn content_digest(&self) -> Result<u128, VerifyError> {
        let mut h = Xxh3::new();
        for family in FAMILIES.iter().filter(|f| **f != META) {
            h.update(family.as_bytes());
            if *family == RECORDS || *family == SEQUENCE {
                h.update(&self.runs_digest(family)?.to_be_bytes());
                continue;
            }
            for item in self.db.iterator_cf(self.cf(family), IteratorMode::Start) {
                let (k, v) = item.map_err(|e| self.err(e))?;
                h.update(&(k.len() as u32).to_be_bytes());
                h.update(&k);
                h.update(&(v.len() as u32).to_be_bytes());
                h.update(&v);
            }
        }
        Ok(h.digest128())
    }

    /// Wrapping sum, over every record of a family of runs, of the hash of its prefix
    /// (group, or partition for `sequence`), offsets, own partition and fingerprint.
    fn runs_digest(&self, family: &str) -> Result<u128, VerifyError> {
        let mut sum = 0u128;
        let mut b = Vec::new();
        let mut add = |prefix: &[u8], offsets: &[u64], p: Option<i32>, fp: Fingerprint| {
            b.clear();
            b.extend_from_slice(prefix);
            offsets.iter().for_each(|o| b.extend(o.to_be_bytes()));
            b.extend(p.unwrap_or(-1).to_be_bytes());
            b.extend(fp.to_be_bytes());
            sum = sum.wrapping_add(xxh3_128(&b));
        };
        for item in self.db.iterator_cf(self.cf(family), IteratorMode::Start) {
            let (k, v) = item.map_err(|e| self.err(e))?;
            let corrupt = || VerifyError::Corrupt(format!("{family} key of {} bytes", k.len()));
            if family == SEQUENCE {
                let n = k.len().checked_sub(8).ok_or_else(corrupt)?;
                for (own, fp) in runs::sequence_records(&k, &v, n)? {
                    add(&k[..n], &[own], None, fp);
                }
                continue;
            }
            let n = keys::group_len(&k).ok_or_else(corrupt)?;
            for e in runs::Sorted::new(std::iter::once(Ok((k.clone(), v))), n) {
                let e = e?;
                add(
                    &k[..n],
                    &[e.origin_offset, e.own_offset],
                    Some(e.own_partition),
                    e.fp,
                );
            }
        }
        Ok(sum)
    }
}

#[cfg(test)]
mod tests;
