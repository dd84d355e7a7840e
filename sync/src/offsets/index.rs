//! The translation index (docs/offsets.md, "Index"): per cluster, topic and partition,
//! the runs a translation read, kept in a [`Store`] (the service's is a RocksDB
//! directory) so that the next translation reads only what was appended since. It is a cache of what the cluster holds, never a
//! source of truth: before an entry is used, the cluster must still hold what it says.
//!
//! - The last record it read must read back the same (offset, timestamp, size and
//!   origin), and the partition's end must not be below the entry's: otherwise the
//!   partition was truncated or the topic recreated, and the entry is dropped and read
//!   again from the log start.
//! - Records below the log start (retention) are trimmed from it.
//! - Only topics whose `cleanup.policy` the cluster says is `delete` (no `compact`) are
//!   indexed: compaction removes records from the middle of a partition, which no check
//!   at the ends can see. Others, and topics whose policy cannot be read, are read in
//!   full each time, as without an index.
//!
//! Every entry is rebuilt from the clusters when dropped; deleting the directory loses
//! nothing but the time to read again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use rdkafka::consumer::BaseConsumer;
use serde::{Deserialize, Serialize};

use super::read::{self, Range, Seen};
use super::runs::Runs;
use crate::error::SyncError;

/// The last record an entry read: it must read back the same for the entry to be used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Check {
    offset: i64,
    timestamp: i64,
    bytes: usize,
    origin: String,
    origin_partition: i32,
    origin_offset: i64,
}

impl Check {
    fn of(r: &Seen<'_>) -> Self {
        Check {
            offset: r.offset,
            timestamp: r.timestamp,
            bytes: r.bytes,
            origin: r.origin.to_string(),
            origin_partition: r.origin_partition,
            origin_offset: r.origin_offset,
        }
    }
}

/// What the index holds of one partition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    /// The records read, as runs.
    runs: Runs,
    /// Where the next read starts: everything below was read (or lay below the log
    /// start, or was not visible: transaction markers, aborted records).
    end: i64,
    /// The last record read.
    check: Option<Check>,
    /// The first record read (checked too while the log start has not passed it).
    first: Option<Check>,
}

/// Where the index keeps its entries: bytes by key. Duplex's is a RocksDB directory
/// (`src/offsets/store.rs`); [`MemoryStore`] keeps them for one process.
pub trait Store: Send + Sync {
    /// The value of `key`, if any. A store that cannot read answers `None`: the
    /// partition is then read in full.
    fn get(&self, key: &[u8]) -> Option<Vec<u8>>;
    /// Sets `key`.
    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), String>;
    /// Removes `key`.
    fn delete(&self, key: &[u8]) -> Result<(), String>;
}

/// A store in memory, for one process (tests, benches).
#[derive(Debug, Default)]
pub struct MemoryStore(Mutex<HashMap<Vec<u8>, Vec<u8>>>);

impl Store for MemoryStore {
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.0.lock().expect("store lock").get(key).cloned()
    }

    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), String> {
        self.0
            .lock()
            .expect("store lock")
            .insert(key.to_vec(), value.to_vec());
        Ok(())
    }

    fn delete(&self, key: &[u8]) -> Result<(), String> {
        self.0.lock().expect("store lock").remove(key);
        Ok(())
    }
}

/// The translation index over a [`Store`].
pub struct Index {
    store: Box<dyn Store>,
    /// Index topics whose cleanup.policy cannot be read (a broker that does not answer
    /// DescribeConfigs: librdkafka's mock cluster) as if it were `delete`.
    trust_unknown_policy: bool,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index").finish_non_exhaustive()
    }
}

/// One partition to read through the index: its log start and end (high watermark),
/// and where to stop (`None`: its end).
#[derive(Debug, Clone, Copy)]
pub(super) struct Part {
    pub partition: i32,
    pub log_start: i64,
    pub high: i64,
    pub to: Option<i64>,
}

/// What a read through the index did, for the bench and the tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndexUse {
    /// Partitions whose entry was used (extended).
    pub reused: usize,
    /// Partitions read from the log start (no entry, or one dropped).
    pub rebuilt: usize,
    /// Entries dropped because the cluster no longer holds what they say.
    pub dropped: usize,
}

impl IndexUse {
    /// Adds `other`'s counts.
    pub fn add(&mut self, other: IndexUse) {
        self.reused += other.reused;
        self.rebuilt += other.rebuilt;
        self.dropped += other.dropped;
    }
}

impl Index {
    /// An index keeping its entries in `store`.
    pub fn new(store: Box<dyn Store>) -> Self {
        Index {
            store,
            trust_unknown_policy: false,
        }
    }

    /// The same index, taking every topic for one without compaction, without asking.
    /// Only for clusters known not to compact, such as librdkafka's mock cluster (which
    /// answers no DescribeConfigs: asking would wait out the timeout) in the benches
    /// and tests.
    pub fn trusting_unknown_policy(mut self) -> Self {
        self.trust_unknown_policy = true;
        self
    }

    /// Whether `topic` on the cluster `admin` talks to may be indexed: its
    /// cleanup.policy is `delete`, without `compact`.
    pub(super) fn indexes<C: rdkafka::ClientContext + 'static>(
        &self,
        admin: &rdkafka::admin::AdminClient<C>,
        topic: &str,
        timeout: Duration,
    ) -> bool {
        if self.trust_unknown_policy {
            return true;
        }
        let described = futures::executor::block_on(crate::topic_configs::describe(
            admin,
            &[topic.to_string()],
            timeout,
        ));
        let Ok(Some(Ok(s))) = described.map(|mut m| m.remove(topic)) else {
            return false;
        };
        let policy = match s.values.get("cleanup.policy") {
            Some(Some(p)) => p.clone(),
            // Listed without a value: not known.
            Some(None) => return false,
            // Not listed by a broker that lists only a topic's own keys (Tansu): its
            // default, "delete". Not listed by another: not known.
            None if !s.labelled => "delete".to_string(),
            None => return false,
        };
        !policy.split(',').any(|x| x.trim() == "compact")
    }

    fn key(cluster: &str, topic: &str, partition: i32) -> Vec<u8> {
        format!("{cluster}\u{0}{topic}\u{0}{partition}").into_bytes()
    }

    fn load(&self, cluster: &str, topic: &str, partition: i32) -> Option<Entry> {
        let raw = self.store.get(&Self::key(cluster, topic, partition))?;
        // An entry that does not decode (written by another version) is read again.
        serde_json::from_slice(&raw).ok()
    }

    fn store(&self, cluster: &str, topic: &str, partition: i32, e: &Entry) {
        let raw = serde_json::to_vec(e).expect("an entry serializes");
        // A failed write costs the next translation a full read, nothing more.
        if let Err(err) = self.store.put(&Self::key(cluster, topic, partition), &raw) {
            tracing::warn!(%cluster, %topic, partition, error = %err, "Cannot write the offsets index; the next translation reads this partition in full.");
        }
    }

    /// Forgets `topic`'s `partitions` on `cluster`: a topic that may not be indexed (now
    /// compacted) must not find entries of an earlier time when it may again.
    pub(super) fn forget(&self, cluster: &str, topic: &str, partitions: impl Iterator<Item = i32>) {
        for p in partitions {
            if let Err(err) = self.store.delete(&Self::key(cluster, topic, p)) {
                tracing::warn!(%cluster, %topic, partition = p, error = %err, "Cannot remove an entry of the offsets index.");
            }
        }
    }

    /// The runs of `parts` of `topic` on `cluster`, each from its log start to its `to`
    /// (or end): from the index where it still matches the cluster, read for the rest;
    /// the index is extended with what was read.
    pub(super) fn runs(
        &self,
        consumer: &BaseConsumer,
        cluster: &str,
        topic: &str,
        parts: &[Part],
        timeout: Duration,
    ) -> Result<(Vec<Runs>, IndexUse), SyncError> {
        let mut used = IndexUse::default();
        // An entry that read no record has nothing to check it by: what it says of the
        // partition (its end) cannot be trusted, so it is read again from the log start
        // (a topic recreated with records below that end would be missed otherwise). One
        // past the partition's end was truncated away; one whose last record lies below
        // the log start holds nothing still there.
        let mut entries: Vec<Option<Entry>> = Vec::with_capacity(parts.len());
        for p in parts {
            let e = self
                .load(cluster, topic, p.partition)
                .filter(|e| e.check.is_some());
            let truncated = e.as_ref().is_some_and(|e| e.end > p.high);
            let expired = e
                .as_ref()
                .and_then(|e| e.check.as_ref())
                .is_some_and(|c| c.offset < p.log_start);
            used.dropped += usize::from(truncated);
            entries.push(e.filter(|_| !truncated && !expired));
        }
        // Its first record, while still there, must read back the same: a topic
        // recreated with copies of the same last record is caught at its start.
        let firsts: Vec<(usize, Check)> = entries
            .iter()
            .enumerate()
            .filter_map(|(i, e)| {
                let e = e.as_ref()?;
                let f = e.first.as_ref()?;
                let last = e.check.as_ref()?;
                (f.offset >= parts[i].log_start && f.offset != last.offset).then(|| (i, f.clone()))
            })
            .collect();
        let ranges: Vec<Range> = firsts
            .iter()
            .map(|(i, f)| Range {
                partition: parts[*i].partition,
                from: f.offset,
                to: Some(f.offset + 1),
            })
            .collect();
        let mut seen: HashMap<usize, Check> = HashMap::new();
        read::read(consumer, cluster, topic, &ranges, timeout, |k, r| {
            seen.entry(firsts[k].0).or_insert_with(|| Check::of(&r));
        })?;
        for (i, f) in &firsts {
            if seen.get(i) != Some(f) {
                entries[*i] = None;
                used.dropped += 1;
            }
        }
        // Then one read per partition: an entry's from its last record (which must be
        // the first record read back, the same), a new one's from the log start. The
        // check and the extension are one read, so nothing can change between them.
        let fresh = |p: &Part| Entry {
            end: p.log_start,
            ..Entry::default()
        };
        let mut out: Vec<Entry> = Vec::with_capacity(parts.len());
        let mut modes: Vec<Mode> = Vec::with_capacity(parts.len());
        for (e, p) in entries.into_iter().zip(parts) {
            match e {
                Some(mut e) => {
                    e.runs.trim_below(p.log_start);
                    out.push(e);
                    modes.push(Mode::Kept);
                }
                None => {
                    out.push(fresh(p));
                    modes.push(Mode::Fresh);
                }
            }
        }
        let bad = extend(consumer, cluster, topic, parts, &mut out, &modes, timeout)?;
        // An entry whose last record did not read back the same is read again, whole.
        if bad.iter().any(|b| *b) {
            let mut again = vec![Mode::Skip; parts.len()];
            for (i, _) in bad.iter().enumerate().filter(|(_, b)| **b) {
                used.dropped += 1;
                out[i] = fresh(&parts[i]);
                again[i] = Mode::Fresh;
            }
            extend(consumer, cluster, topic, parts, &mut out, &again, timeout)?;
        }
        for (m, b) in modes.iter().zip(&bad) {
            if *m == Mode::Kept && !b {
                used.reused += 1;
            } else {
                used.rebuilt += 1;
            }
        }
        // The end stays just past the last record read, never at the stop: what lies
        // between may be a transaction still open (invisible now, committed later).
        for (e, p) in out.iter().zip(parts) {
            self.store(cluster, topic, p.partition, e);
        }
        Ok((out.into_iter().map(|e| e.runs).collect(), used))
    }
}

/// How [`extend`] reads an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Not at all.
    Skip,
    /// From its end (the log start).
    Fresh,
    /// From its last record, which must read back the same.
    Kept,
}

/// Reads each entry on from its end to its part's stop; for a `kept` entry from its
/// last record, which must be the first record read and the same. Returns, per
/// entry, whether that check failed (its entry is then left as it was).
fn extend(
    consumer: &BaseConsumer,
    cluster: &str,
    topic: &str,
    parts: &[Part],
    entries: &mut [Entry],
    modes: &[Mode],
    timeout: Duration,
) -> Result<Vec<bool>, SyncError> {
    let mut ranges = Vec::new();
    let mut reading = Vec::new();
    for (i, (e, p)) in entries.iter().zip(parts).enumerate() {
        if modes[i] == Mode::Skip {
            continue;
        }
        let check = e
            .check
            .as_ref()
            .filter(|_| modes[i] == Mode::Kept)
            .map(|c| c.offset);
        let from = check.unwrap_or(e.end);
        let to = p.to.unwrap_or(p.high);
        // A kept entry is always read from its last record: that is its check.
        if check.is_some() || from < to {
            ranges.push(Range {
                partition: p.partition,
                from,
                to: p.to.map(|t| t.max(from + 1)),
            });
            reading.push(i);
        }
    }
    // Per entry: whether its check is still to come (Some(checked)).
    let mut pending: Vec<Option<bool>> = reading
        .iter()
        .map(|&i| (modes[i] == Mode::Kept).then_some(false))
        .collect();
    let mut bad = vec![false; entries.len()];
    read::read(consumer, cluster, topic, &ranges, timeout, |k, r| {
        let i = reading[k];
        if bad[i] {
            return;
        }
        if pending[k] == Some(false) {
            pending[k] = Some(true);
            if entries[i].check.as_ref() != Some(&Check::of(&r)) {
                bad[i] = true;
            }
            // The check record is in the runs already.
            return;
        }
        let e = &mut entries[i];
        if e.first.is_none() {
            e.first = Some(Check::of(&r));
        }
        e.runs.push(r);
        e.end = r.offset + 1;
        e.check = Some(Check::of(&r));
    })?;
    // A check record that never came back (deleted, or a marker now) fails too.
    for (k, &i) in reading.iter().enumerate() {
        if pending[k] == Some(false) {
            bad[i] = true;
        }
    }
    Ok(bad)
}
