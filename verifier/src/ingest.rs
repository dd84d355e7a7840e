//! Turns records read from one side into store mutations: identity, fingerprint, digest
//! ranges, and the read position, one [`Batch`] at a time.

use std::sync::Arc;

use duplex_sync::provenance::{PATH_HEADER, Path};

use crate::error::VerifyError;
use crate::fasthash::FastMap as HashMap;
use crate::fingerprint::{Canon, Fingerprint, RecordView};
use crate::keys;
use crate::spec::Mode;
use crate::store::{Batch, RecordEntry, Run, SequenceRun, Store};

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
    /// Headers in order, names as the bytes the record holds.
    pub headers: &'a [(&'a [u8], Option<&'a [u8]>)],
    /// Timestamp in milliseconds.
    pub timestamp: Option<i64>,
}

/// The headers of a consumed message, in order, as [`Incoming::headers`] takes them.
pub fn headers_of<'a>(
    msg: &'a rdkafka::message::BorrowedMessage<'_>,
) -> Vec<(&'a [u8], Option<&'a [u8]>)> {
    duplex_sync::message_ffi::headers(msg).collect()
}

impl<'a> Incoming<'a> {
    /// A consumed message, with `headers` from [`headers_of`] of the same message.
    pub fn of(
        msg: &'a rdkafka::message::BorrowedMessage<'_>,
        headers: &'a [(&'a [u8], Option<&'a [u8]>)],
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
    let Some((_, Some(raw))) = rec
        .headers
        .iter()
        .find(|(n, _)| *n == PATH_HEADER.as_bytes())
    else {
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
    /// another partition only gets its group prefix here, no highest).
    highest: Option<u64>,
    dirty: bool,
    group: Vec<u8>,
    /// The group's records of this batch not yet written: consecutive records go into
    /// the store as one entry.
    run: Run,
}

impl Origin {
    fn new(highest: Option<u64>, group: Vec<u8>) -> Origin {
        Origin {
            highest,
            dirty: false,
            group,
            run: Run::default(),
        }
    }
}

/// What one side's reading did to one partition since the pass began.
#[derive(Debug)]
struct Part {
    topic: String,
    partition: i32,
    /// Key prefix of the partition (`keys::partition`).
    prefix: Vec<u8>,
    /// The next offset to read, when it changed since the last flush.
    next: Option<i64>,
    /// Its log start when this pass began, kept with the position (a later log start
    /// below it means the partition was recreated).
    log_start: Option<i64>,
    /// Offset and fingerprint of the last record read, kept with the position (a later
    /// pass reads it again to see the partition is the same).
    last: Option<(i64, Fingerprint)>,
    /// As the origin partition of identity records: the highest origin offset per origin,
    /// loaded from the store on first use.
    order: Option<OrderState>,
    /// Positional topics: the partition's records of this batch not yet written.
    sequence: SequenceRun,
}

/// Accumulates one side's records into batches. One per side; not shared.
///
/// Per-record work allocates nothing and hashes little: each partition's state is found
/// once, through an index by topic then partition (looked up by `&str`) behind a
/// one-entry cache, since records come in runs of one partition; the origin is looked up
/// in that partition's order state.
#[derive(Debug)]
pub struct SideIngest<'s> {
    store: &'s Store,
    side: u8,
    /// Shared, so that a record's identity can borrow it while the state is updated.
    cluster: Arc<str>,
    canon: Canon,
    compact_canon: Canon,
    batch: Batch,
    parts: Vec<Part>,
    index: HashMap<String, HashMap<i32, usize>>,
    /// The partition found last.
    recent: Option<usize>,
    /// Some partition's next offset changed since the last flush.
    moved: bool,
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
            parts: Vec::new(),
            index: HashMap::default(),
            recent: None,
            moved: false,
            records: 0,
            scratch: Vec::new(),
        }
    }

    /// Records added since the last flush.
    pub fn pending(&self) -> usize {
        self.records
    }

    /// The index of a partition's state, made on first use.
    fn part(&mut self, topic: &str, partition: i32) -> usize {
        if let Some(i) = self.recent {
            let p = &self.parts[i];
            if p.partition == partition && p.topic == topic {
                return i;
            }
        }
        let found = self
            .index
            .get(topic)
            .and_then(|parts| parts.get(&partition))
            .copied();
        let i = match found {
            Some(i) => i,
            None => {
                let i = self.parts.len();
                self.parts.push(Part {
                    topic: topic.to_string(),
                    partition,
                    prefix: keys::partition(self.side, topic, partition),
                    next: None,
                    log_start: None,
                    last: None,
                    order: None,
                    sequence: SequenceRun::default(),
                });
                self.index
                    .entry(topic.to_string())
                    .or_default()
                    .insert(partition, i);
                i
            }
        };
        self.recent = Some(i);
        i
    }

    /// Adds one record of a topic compared in `mode`.
    pub fn add(&mut self, rec: &Incoming<'_>, mode: Mode) -> Result<(), VerifyError> {
        let i = self.part(rec.topic, rec.partition);
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
                // nothing about order, so it neither raises nor is compared with the highest.
                let placed = rec.partition == id.partition;
                let o = if placed {
                    i
                } else {
                    self.part(rec.topic, id.partition)
                };
                let (side, store) = (self.side, self.store);
                let part = &mut self.parts[o];
                let state = match &mut part.order {
                    Some(state) => state,
                    None => {
                        part.order
                            .insert(load_order(store, side, &part.topic, part.partition)?)
                    }
                };
                if !state.contains_key(id.origin) {
                    let group = keys::group(side, rec.topic, id.partition, id.origin);
                    state.insert(id.origin.to_string(), Origin::new(None, group));
                }
                let origin = state.get_mut(id.origin).expect("inserted above");
                let late = placed && origin.highest.is_some_and(|h| origin_offset < h);
                if placed && origin.highest.is_none_or(|h| origin_offset > h) {
                    origin.highest = Some(origin_offset);
                    origin.dirty = true;
                }
                let entry = RecordEntry {
                    origin_offset,
                    own_offset: own,
                    own_partition: rec.partition,
                    fp,
                };
                self.batch.put_record(
                    store,
                    &origin.group,
                    id.partition,
                    entry,
                    late,
                    &mut origin.run,
                );
                self.parts[i].last = Some((rec.offset, fp));
            }
            Mode::Positional => {
                let fp = view(&self.canon);
                let part = &mut self.parts[i];
                self.batch
                    .put_sequence(self.store, &part.prefix, own, fp, &mut part.sequence);
                part.last = Some((rec.offset, fp));
            }
            Mode::Compacted => {
                // Kafka refuses null keys on compacted topics; a keyless record has no
                // latest value to compare and is left out.
                if let Some(key) = rec.key {
                    let latest = rec.value.map(|_| (own, view(&self.compact_canon)));
                    let prefix = &self.parts[i].prefix;
                    self.batch.put_latest(self.store, prefix, key, latest);
                }
            }
        }
        self.parts[i].next = Some(rec.offset + 1);
        self.moved = true;
        self.records += 1;
        Ok(())
    }

    /// Marks a partition read up to `next` (also without a record there, for example the
    /// end of a partition whose last offsets are transaction markers).
    pub fn advance(&mut self, topic: &str, partition: i32, next: i64) {
        let i = self.part(topic, partition);
        self.parts[i].next = Some(next);
        self.moved = true;
    }

    /// Records the log start a partition had when this pass began, to be stored with its
    /// position.
    pub fn set_log_start(&mut self, topic: &str, partition: i32, low: i64) {
        let i = self.part(topic, partition);
        self.parts[i].log_start = Some(low);
    }

    /// Writes the batch: records, digests, order state and positions together.
    pub fn flush(&mut self) -> Result<(), VerifyError> {
        if self.records == 0 && !self.moved {
            return Ok(());
        }
        self.moved = false;
        for part in &mut self.parts {
            self.batch
                .end_sequence(self.store, &part.prefix, &mut part.sequence);
            for o in part.order.iter_mut().flat_map(|s| s.values_mut()) {
                self.batch.end_run(self.store, &o.group, &mut o.run);
                if let (true, Some(highest)) = (o.dirty, o.highest) {
                    self.batch.put_order(self.store, &o.group, highest);
                }
                o.dirty = false;
            }
            let Some(next) = part.next.take() else {
                continue;
            };
            let last = match part.last {
                Some(last) => Some(last),
                // Nothing read in this pass (the end was a transaction marker): keep the
                // last record stored.
                None => self
                    .store
                    .position_state(self.side, &part.topic, part.partition)?
                    .and_then(|p| p.last),
            };
            self.batch
                .put_position(self.store, &part.prefix, next, part.log_start, last);
        }
        let batch = std::mem::take(&mut self.batch);
        self.records = 0;
        self.store.write(batch)
    }
}

/// A partition's order state as stored, with each origin's group prefix.
fn load_order(
    store: &Store,
    side: u8,
    topic: &str,
    partition: i32,
) -> Result<OrderState, VerifyError> {
    let stored = store.order_state(side, topic, partition)?;
    Ok(stored
        .into_iter()
        .map(|(o, h)| {
            let group = keys::group(side, topic, partition, &o);
            (o, Origin::new(Some(h), group))
        })
        .collect())
}
