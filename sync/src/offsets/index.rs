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
}

/// Where the index keeps its entries: bytes by key. Duplex's is a RocksDB directory
/// (`src/offsets/store.rs`); [`MemoryStore`] keeps them for one process.
pub trait Store: Send + Sync {
    /// The value of `key`, if any. A store that cannot read answers `None`: the
    /// partition is then read in full.
    fn get(&self, key: &[u8]) -> Option<Vec<u8>>;
    /// Sets `key`.
    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), String>;
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
        let policy = match described {
            Ok(mut m) => match m.remove(topic) {
                Some(Ok(s)) => s.values.get("cleanup.policy").cloned().flatten(),
                _ => return false,
            },
            Err(_) => return false,
        };
        // A broker that lists only a topic's own settings (Tansu) and none for this
        // key: its default, "delete".
        policy.is_none_or(|p| !p.split(',').any(|x| x.trim() == "compact"))
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
        let mut entries: Vec<Option<Entry>> = parts
            .iter()
            .map(|p| self.load(cluster, topic, p.partition))
            .collect();
        // An entry past the partition's end was truncated away; one whose last record
        // lies below the log start holds nothing still there.
        for (e, p) in entries.iter_mut().zip(parts) {
            if e.as_ref().is_some_and(|e| {
                e.end > p.high || e.check.as_ref().is_some_and(|c| c.offset < p.log_start)
            }) {
                used.dropped += usize::from(e.as_ref().is_some_and(|e| e.end > p.high));
                *e = None;
            }
        }
        // The last record read must read back the same.
        let checks: Vec<(usize, Range)> = entries
            .iter()
            .enumerate()
            .filter_map(|(i, e)| {
                let c = e.as_ref()?.check.as_ref()?;
                Some((
                    i,
                    Range {
                        partition: parts[i].partition,
                        from: c.offset,
                        to: Some(c.offset + 1),
                    },
                ))
            })
            .collect();
        let mut reread: HashMap<usize, Check> = HashMap::new();
        let ranges: Vec<Range> = checks.iter().map(|(_, r)| *r).collect();
        read::read(consumer, cluster, topic, &ranges, timeout, |k, r| {
            reread.insert(checks[k].0, Check::of(&r));
        })?;
        for (i, _) in &checks {
            let same = entries[*i]
                .as_ref()
                .and_then(|e| e.check.as_ref())
                .is_some_and(|c| reread.get(i) == Some(c));
            if !same {
                entries[*i] = None;
                used.dropped += 1;
            }
        }
        // Read from each entry's end (or the log start) to where each part stops.
        let mut runs: Vec<Entry> = Vec::with_capacity(parts.len());
        let mut ranges = Vec::new();
        let mut reading = Vec::new();
        for (i, (e, p)) in entries.into_iter().zip(parts).enumerate() {
            let e = match e {
                Some(mut e) => {
                    used.reused += 1;
                    e.runs.trim_below(p.log_start);
                    e.end = e.end.max(p.log_start);
                    e
                }
                None => {
                    used.rebuilt += 1;
                    Entry {
                        end: p.log_start,
                        ..Entry::default()
                    }
                }
            };
            let to = p.to.unwrap_or(p.high);
            if e.end < to {
                ranges.push(Range {
                    partition: p.partition,
                    from: e.end,
                    to: p.to,
                });
                reading.push(i);
            }
            runs.push(e);
        }
        read::read(consumer, cluster, topic, &ranges, timeout, |k, r| {
            let e = &mut runs[reading[k]];
            e.runs.push(r);
            e.end = r.offset + 1;
            e.check = Some(Check::of(&r));
        })?;
        // The end stays just past the last record read, never at the stop: what lies
        // between may be a transaction still open (invisible now, committed later).
        for (e, p) in runs.iter_mut().zip(parts) {
            self.store(cluster, topic, p.partition, e);
        }
        Ok((runs.into_iter().map(|e| e.runs).collect(), used))
    }
}
