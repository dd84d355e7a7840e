//! Turns records read from one side into store mutations: identity, fingerprint, digest
//! ranges, and the read position, one [`Batch`] at a time.

use std::collections::{HashMap, HashSet};

use duplex_sync::provenance::{PATH_HEADER, Path};

use crate::error::VerifyError;
use crate::fingerprint::{Canon, RecordView};
use crate::keys;
use crate::spec::Mode;
use crate::store::{Batch, RecordEntry, Store};

/// A record as read from a cluster.
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    /// Topic.
    pub topic: &'a str,
    /// Partition on this side.
    pub partition: i32,
    /// Offset on this side.
    pub offset: i64,
    /// Key.
    pub key: Option<&'a [u8]>,
    /// Value.
    pub value: Option<&'a [u8]>,
    /// Headers in order.
    pub headers: &'a [(&'a str, Option<&'a [u8]>)],
    /// Timestamp in milliseconds.
    pub timestamp: Option<i64>,
}

/// Origin position of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Cluster that produced it.
    pub origin: String,
    /// Partition there.
    pub partition: i32,
    /// Offset there.
    pub offset: i64,
}

/// The identity of a record read on `cluster`: its provenance origin, or its own position.
pub fn identity(cluster: &str, rec: &Incoming<'_>) -> Result<Identity, VerifyError> {
    let Some((_, Some(raw))) = rec.headers.iter().find(|(n, _)| *n == PATH_HEADER) else {
        return Ok(Identity {
            origin: cluster.to_string(),
            partition: rec.partition,
            offset: rec.offset,
        });
    };
    let bad = |reason: String| VerifyError::Provenance {
        cluster: cluster.to_string(),
        topic: rec.topic.to_string(),
        partition: rec.partition,
        offset: rec.offset,
        reason,
    };
    let path = Path::decode(raw).map_err(|e| bad(e.to_string()))?;
    let o = path.origin();
    let origin =
        std::str::from_utf8(o.cluster).map_err(|_| bad("origin cluster id is not UTF-8".into()))?;
    if o.offset < 0 || o.partition < 0 {
        return Err(bad(format!(
            "negative origin position {}/{}",
            o.partition, o.offset
        )));
    }
    Ok(Identity {
        origin: origin.to_string(),
        partition: o.partition,
        offset: o.offset,
    })
}

/// Accumulates one side's records into batches. One per side; not shared.
#[derive(Debug)]
pub struct SideIngest<'s> {
    store: &'s Store,
    side: u8,
    cluster: String,
    canon: Canon,
    compact_canon: Canon,
    batch: Batch,
    /// Highest origin offset per (topic, origin partition) and origin, as stored.
    order: HashMap<(String, i32), HashMap<String, u64>>,
    dirty_order: HashSet<(String, i32, String)>,
    positions: HashMap<(String, i32), i64>,
    records: usize,
}

impl<'s> SideIngest<'s> {
    /// Ingests records of side `side` (cluster id `cluster`).
    pub fn new(store: &'s Store, side: u8, cluster: &str, canon: Canon) -> SideIngest<'s> {
        let compact_canon = Canon {
            without_timestamp: true,
            ..canon.clone()
        };
        SideIngest {
            store,
            side,
            cluster: cluster.to_string(),
            canon,
            compact_canon,
            batch: Batch::new(),
            order: HashMap::new(),
            dirty_order: HashSet::new(),
            positions: HashMap::new(),
            records: 0,
        }
    }

    /// Records added since the last flush.
    pub fn pending(&self) -> usize {
        self.records
    }

    /// Adds one record of a topic compared in `mode`.
    pub fn add(&mut self, rec: &Incoming<'_>, mode: Mode) -> Result<(), VerifyError> {
        let prefix = keys::partition(self.side, rec.topic, rec.partition);
        let view = |canon: &Canon| {
            canon.fingerprint(RecordView {
                key: rec.key,
                value: rec.value,
                headers: rec.headers.iter().copied(),
                timestamp: rec.timestamp,
            })
        };
        let own = rec.offset as u64;
        match mode {
            Mode::Identity => {
                let id = identity(&self.cluster, rec)?;
                let fp = view(&self.canon);
                let group = keys::group(self.side, rec.topic, id.partition, &id.origin);
                let highest = self.highest(rec.topic, id.partition, &id.origin)?;
                let origin_offset = id.offset as u64;
                let late = highest.is_some_and(|h| origin_offset < h);
                if highest.is_none_or(|h| origin_offset > h) {
                    self.order
                        .get_mut(&(rec.topic.to_string(), id.partition))
                        .expect("loaded by highest()")
                        .insert(id.origin.clone(), origin_offset);
                    self.dirty_order
                        .insert((rec.topic.to_string(), id.partition, id.origin));
                }
                let entry = RecordEntry {
                    origin_offset,
                    own_offset: own,
                    own_partition: rec.partition,
                    fp,
                };
                self.batch.put_record(self.store, &group, entry, late);
            }
            Mode::Positional => {
                self.batch
                    .put_sequence(self.store, &prefix, own, view(&self.canon));
            }
            Mode::Compacted => {
                // Kafka refuses null keys on compacted topics; a keyless record has no
                // latest value to compare and is left out.
                if let Some(key) = rec.key {
                    let latest = rec.value.map(|_| (own, view(&self.compact_canon)));
                    self.batch.put_latest(self.store, &prefix, key, latest);
                }
            }
        }
        self.positions
            .insert((rec.topic.to_string(), rec.partition), rec.offset + 1);
        self.records += 1;
        Ok(())
    }

    /// Marks a partition read up to `next` without a record there (for example the end
    /// of a partition whose last offsets are transaction markers).
    pub fn advance(&mut self, topic: &str, partition: i32, next: i64) {
        self.positions.insert((topic.to_string(), partition), next);
    }

    fn highest(
        &mut self,
        topic: &str,
        partition: i32,
        origin: &str,
    ) -> Result<Option<u64>, VerifyError> {
        let k = (topic.to_string(), partition);
        if !self.order.contains_key(&k) {
            let state = self.store.order_state(self.side, topic, partition)?;
            self.order.insert(k.clone(), state);
        }
        Ok(self.order[&k].get(origin).copied())
    }

    /// Writes the batch: records, digests, order state and positions together.
    pub fn flush(&mut self) -> Result<(), VerifyError> {
        if self.records == 0 && self.positions.is_empty() {
            return Ok(());
        }
        for (topic, partition, origin) in self.dirty_order.drain() {
            let highest = self.order[&(topic.clone(), partition)][&origin];
            let group = keys::group(self.side, &topic, partition, &origin);
            self.batch.put_order(self.store, &group, highest);
        }
        for ((topic, partition), next) in self.positions.drain() {
            let prefix = keys::partition(self.side, &topic, partition);
            self.batch.put_position(self.store, &prefix, next);
        }
        let batch = std::mem::take(&mut self.batch);
        self.records = 0;
        self.store.write(batch)
    }
}
