//! Turns records read from one side into store mutations: identity, fingerprint, digest
//! ranges, and the read position, one [`Batch`] at a time.

use std::collections::hash_map::Entry;
use std::sync::Arc;

use duplex_sync::provenance::{PATH_HEADER, Path};

use crate::error::VerifyError;
use crate::fasthash::FastMap as HashMap;
use crate::fingerprint::{Canon, Fingerprint, RecordView};
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

/// The headers of a consumed message, in order, as [`Incoming::headers`] takes them.
pub fn headers_of<'a>(
    msg: &'a rdkafka::message::BorrowedMessage<'_>,
) -> Vec<(&'a str, Option<&'a [u8]>)> {
    use rdkafka::message::{Headers, Message};
    msg.headers()
        .map(|h| h.iter().map(|h| (h.key, h.value)).collect())
        .unwrap_or_default()
}

impl<'a> Incoming<'a> {
    /// A consumed message, with `headers` from [`headers_of`] of the same message.
    pub fn of(
        msg: &'a rdkafka::message::BorrowedMessage<'_>,
        headers: &'a [(&'a str, Option<&'a [u8]>)],
    ) -> Incoming<'a> {
        use rdkafka::message::Message;
        Incoming {
            topic: msg.topic(),
            partition: msg.partition(),
            offset: msg.offset(),
            key: msg.key(),
            value: msg.payload(),
            headers,
            timestamp: msg.timestamp().to_millis(),
        }
    }
}

/// Origin position of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity<'a> {
    /// Cluster that produced it.
    pub origin: &'a str,
    /// Partition there.
    pub partition: i32,
    /// Offset there.
    pub offset: i64,
}

/// The identity of a record read on `cluster`: its provenance origin, or its own position.
pub fn identity<'a>(cluster: &'a str, rec: &Incoming<'a>) -> Result<Identity<'a>, VerifyError> {
    let Some((_, Some(raw))) = rec.headers.iter().find(|(n, _)| *n == PATH_HEADER) else {
        return Ok(Identity {
            origin: cluster,
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
        origin,
        partition: o.partition,
        offset: o.offset,
    })
}

/// Per origin cluster in one partition: the highest origin offset seen, whether it changed
/// since the last flush, and the key prefix of the origin's group (kept, so that a record
/// builds no key prefix of its own).
type OrderState = HashMap<String, Origin>;

#[derive(Debug)]
struct Origin {
    /// `None` until a record of this origin sits in its origin's partition (a copy in
    /// another partition is left out of the order state).
    highest: Option<u64>,
    dirty: bool,
    group: Vec<u8>,
}

impl Origin {
    fn new(highest: Option<u64>, group: Vec<u8>) -> Origin {
        Origin {
            highest,
            dirty: false,
            group,
        }
    }
}

/// Accumulates one side's records into batches. One per side; not shared.
///
/// Per-record work avoids allocating: state is kept in maps nested by topic, then
/// partition, looked up by `&str`.
#[derive(Debug)]
pub struct SideIngest<'s> {
    store: &'s Store,
    side: u8,
    /// Shared, so that a record's identity can borrow it while the state is updated.
    cluster: Arc<str>,
    canon: Canon,
    compact_canon: Canon,
    batch: Batch,
    /// Per topic and origin partition: highest origin offset per origin, as stored.
    order: HashMap<String, HashMap<i32, OrderState>>,
    /// Per topic and partition: the next offset to read, when it changed.
    positions: HashMap<String, HashMap<i32, i64>>,
    /// Per topic and partition: its log start when this pass began, kept with the position
    /// (a later log start below it means the partition was recreated).
    log_starts: HashMap<String, HashMap<i32, i64>>,
    /// Per topic and partition: offset and fingerprint of the last record read, kept
    /// with the position (a later pass reads it again to see the partition is the same).
    lasts: HashMap<String, HashMap<i32, (i64, Fingerprint)>>,
    records: usize,
    /// Where each record's canonical encoding is built to be hashed.
    scratch: Vec<u8>,
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
            cluster: Arc::from(cluster),
            canon,
            compact_canon,
            batch: Batch::new(),
            order: HashMap::default(),
            positions: HashMap::default(),
            log_starts: HashMap::default(),
            lasts: HashMap::default(),
            records: 0,
            scratch: Vec::new(),
        }
    }

    /// Records added since the last flush.
    pub fn pending(&self) -> usize {
        self.records
    }

    /// Adds one record of a topic compared in `mode`.
    pub fn add(&mut self, rec: &Incoming<'_>, mode: Mode) -> Result<(), VerifyError> {
        let scratch = &mut self.scratch;
        let mut view = |canon: &Canon| {
            canon.fingerprint_in(
                scratch,
                RecordView {
                    key: rec.key,
                    value: rec.value,
                    headers: rec.headers.iter().copied(),
                    timestamp: rec.timestamp,
                },
            )
        };
        let own = rec.offset as u64;
        match mode {
            Mode::Identity => {
                let cluster = Arc::clone(&self.cluster);
                let id = identity(&cluster, rec)?;
                let fp = view(&self.canon);
                let origin_offset = id.offset as u64;
                // A copy in another partition than its origin's is a discrepancy of its
                // own (wrong partition): its place among the partition's records says
                // nothing about order, so it is left out of the order state.
                let placed = rec.partition == id.partition;
                let side = self.side;
                let state =
                    order_state(&mut self.order, self.store, side, rec.topic, id.partition)?;
                if !state.contains_key(id.origin) {
                    let group = keys::group(side, rec.topic, id.partition, id.origin);
                    state.insert(id.origin.to_string(), Origin::new(None, group));
                }
                let o = state.get_mut(id.origin).expect("inserted above");
                let late = placed && o.highest.is_some_and(|h| origin_offset < h);
                if placed && o.highest.is_none_or(|h| origin_offset > h) {
                    o.highest = Some(origin_offset);
                    o.dirty = true;
                }
                let entry = RecordEntry {
                    origin_offset,
                    own_offset: own,
                    own_partition: rec.partition,
                    fp,
                };
                self.batch
                    .put_record(self.store, &o.group, id.partition, entry, late);
                self.set_last(rec, fp);
            }
            Mode::Positional => {
                let prefix = keys::partition(self.side, rec.topic, rec.partition);
                let fp = view(&self.canon);
                self.batch.put_sequence(self.store, &prefix, own, fp);
                self.set_last(rec, fp);
            }
            Mode::Compacted => {
                // Kafka refuses null keys on compacted topics; a keyless record has no
                // latest value to compare and is left out.
                if let Some(key) = rec.key {
                    let prefix = keys::partition(self.side, rec.topic, rec.partition);
                    let latest = rec.value.map(|_| (own, view(&self.compact_canon)));
                    self.batch.put_latest(self.store, &prefix, key, latest);
                }
            }
        }
        self.advance(rec.topic, rec.partition, rec.offset + 1);
        self.records += 1;
        Ok(())
    }

    /// Marks a partition read up to `next` (also without a record there, for example the
    /// end of a partition whose last offsets are transaction markers).
    pub fn advance(&mut self, topic: &str, partition: i32, next: i64) {
        match self.positions.get_mut(topic) {
            Some(parts) => {
                parts.insert(partition, next);
            }
            None => {
                self.positions
                    .insert(topic.to_string(), HashMap::from_iter([(partition, next)]));
            }
        }
    }

    fn set_last(&mut self, rec: &Incoming<'_>, fp: Fingerprint) {
        match self.lasts.get_mut(rec.topic) {
            Some(parts) => {
                parts.insert(rec.partition, (rec.offset, fp));
            }
            None => {
                let parts = HashMap::from_iter([(rec.partition, (rec.offset, fp))]);
                self.lasts.insert(rec.topic.to_string(), parts);
            }
        }
    }

    /// Records the log start a partition had when this pass began, to be stored with its
    /// position.
    pub fn set_log_start(&mut self, topic: &str, partition: i32, low: i64) {
        self.log_starts
            .entry(topic.to_string())
            .or_default()
            .insert(partition, low);
    }

    /// Writes the batch: records, digests, order state and positions together.
    pub fn flush(&mut self) -> Result<(), VerifyError> {
        if self.records == 0 && self.positions.is_empty() {
            return Ok(());
        }
        for parts in self.order.values_mut() {
            for state in parts.values_mut() {
                for o in state.values_mut().filter(|o| o.dirty) {
                    if let Some(highest) = o.highest {
                        self.batch.put_order(self.store, &o.group, highest);
                    }
                    o.dirty = false;
                }
            }
        }
        for (topic, parts) in self.positions.drain() {
            for (partition, next) in parts {
                let prefix = keys::partition(self.side, &topic, partition);
                let low = self
                    .log_starts
                    .get(&topic)
                    .and_then(|parts| parts.get(&partition))
                    .copied();
                let last = match self
                    .lasts
                    .get(&topic)
                    .and_then(|parts| parts.get(&partition))
                {
                    Some(last) => Some(*last),
                    // Nothing read in this pass (the end was a transaction marker): keep
                    // the last record stored.
                    None => self
                        .store
                        .position_state(self.side, &topic, partition)?
                        .and_then(|p| p.last),
                };
                self.batch
                    .put_position(self.store, &prefix, next, low, last);
            }
        }
        let batch = std::mem::take(&mut self.batch);
        self.records = 0;
        self.store.write(batch)
    }
}

/// The order state of a partition, loaded from the store on first use. A function of the
/// map, not a method, so that the caller can write its batch while holding the state.
fn order_state<'m>(
    order: &'m mut HashMap<String, HashMap<i32, OrderState>>,
    store: &Store,
    side: u8,
    topic: &str,
    partition: i32,
) -> Result<&'m mut OrderState, VerifyError> {
    if !order.contains_key(topic) {
        order.insert(topic.to_string(), HashMap::default());
    }
    let parts = order.get_mut(topic).expect("inserted above");
    Ok(match parts.entry(partition) {
        Entry::Occupied(e) => e.into_mut(),
        Entry::Vacant(v) => {
            let stored = store.order_state(side, topic, partition)?;
            v.insert(
                stored
                    .into_iter()
                    .map(|(o, h)| {
                        let group = keys::group(side, topic, partition, &o);
                        (o, Origin::new(Some(h), group))
                    })
                    .collect(),
            )
        }
    })
}
