//! Origins outside the compared sides (a third cluster of a mesh, in the config but not
//! in `--between`): the records of an origin's tail that reached neither side.
//!
//! Without asking the origin, the highest origin offset either side holds is all that
//! is known, and a tail both sides lack is invisible. The snapshot asks the origin where
//! its partitions end (ListOffsets); after the sides are read, the origin is read from
//! just after the last record either side holds to that end. Only that stretch is read,
//! and only records whose origin is that cluster count (it holds other origins' copies
//! too, and transaction markers take offsets no record has).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use duplex_sync::spec::ClusterSpec;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::compare::{Lost, Snapshot};
use crate::error::VerifyError;
use crate::ingest::{Incoming, headers_of, identity};
use crate::reader::consumer_config;
use crate::spec::{Mode, VerifySpec};
use crate::store::Store;

/// One partition of an origin to read: where each comparison's lost tail starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tail {
    /// The origin's end offset when the run began (or a lower `--watermark`).
    pub end: i64,
    /// Per target cluster: the first origin offset neither side of that pair holds.
    pub pairs: Vec<(String, i64)>,
}

/// An origin's partitions to read: (topic, partition) -> tail.
pub type Tails = HashMap<(String, i32), Tail>;

/// Reads, for every origin of [`VerifySpec::origins`] the snapshot asked, the records
/// neither side of a comparison holds, into `snap.lost`.
pub fn read_lost(
    store: &Store,
    spec: &VerifySpec,
    snap: &mut Snapshot,
    stop: &AtomicBool,
) -> Result<(), VerifyError> {
    for origin in &spec.origins {
        let tails = tails(store, spec, snap, &origin.id)?;
        if !tails.is_empty() {
            read_origin(spec, origin, &tails, snap, stop)?;
        }
    }
    Ok(())
}

/// Where an origin's records stop being on either side of each comparison, per
/// partition the snapshot asked it about (from the store: the sides were read).
pub fn tails(
    store: &Store,
    spec: &VerifySpec,
    snap: &Snapshot,
    origin: &str,
) -> Result<Tails, VerifyError> {
    let mut tails = Tails::new();
    let Some(topics) = snap.origins.get(origin) else {
        return Ok(tails);
    };
    for (topic, parts) in topics {
        if spec.mode(topic) != Mode::Identity {
            continue;
        }
        for (&p, b) in parts {
            let end = spec
                .watermarks
                .lookup(origin, topic, p)
                .map_or(b.high, |w| w.min(b.high));
            let low = b.low.max(spec.from.lookup(origin, topic, p).unwrap_or(0));
            let mut pairs = Vec::new();
            for k in 1..spec.sides.len() {
                // A partition neither side has is not compared at all.
                if snap.bounds(0, topic, p).is_none() && snap.bounds(k, topic, p).is_none() {
                    continue;
                }
                let mut held = None;
                for side in [0, k] {
                    let h = store.order_state(side as u8, topic, p)?;
                    held = held.max(h.get(origin).map(|h| *h as i64));
                }
                let from = held.map_or(low, |h| (h + 1).max(low));
                if from < end {
                    pairs.push((spec.sides[k].id.clone(), from));
                }
            }
            if !pairs.is_empty() {
                tails.insert((topic.clone(), p), Tail { end, pairs });
            }
        }
    }
    Ok(tails)
}

fn read_origin(
    spec: &VerifySpec,
    origin: &ClusterSpec,
    tails: &Tails,
    snap: &mut Snapshot,
    stop: &AtomicBool,
) -> Result<(), VerifyError> {
    let consumer: BaseConsumer = consumer_config(origin)
        .create()
        .map_err(|e| VerifyError::kafka(&origin.id, "create consumer", e))?;
    let consumer = duplex_sync::clients::Closing::new(consumer);
    let mut tpl = TopicPartitionList::new();
    for ((topic, p), tail) in tails {
        let from = tail.pairs.iter().map(|(_, f)| *f).min().expect("a pair");
        tpl.add_partition_offset(topic, *p, Offset::Offset(from))
            .map_err(|e| VerifyError::kafka(&origin.id, "assign", e))?;
    }
    consumer
        .assign(&tpl)
        .map_err(|e| VerifyError::kafka(&origin.id, "assign", e))?;
    let mut remaining: HashMap<(String, i32), i64> =
        tails.iter().map(|(k, t)| (k.clone(), t.end)).collect();
    let mut last_progress = Instant::now();
    let mut last_position_check = Instant::now();
    while !remaining.is_empty() {
        if stop.load(Ordering::Relaxed) {
            return Err(VerifyError::Stopped);
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(msg)) => {
                let key = (msg.topic().to_string(), msg.partition());
                // A record past a tail's end (the topic goes on) is skipped, and the
                // checks below still run, as in the side readers (reader.rs).
                if let Some(&end) = remaining.get(&key) {
                    if msg.offset() < end {
                        let headers = headers_of(&msg);
                        let rec = Incoming::of(&msg, &headers);
                        // Copies of other origins' records are not this origin's to lose.
                        if identity(&origin.id, &rec)?.origin == origin.id {
                            lost_record(spec, snap, &origin.id, &key, &tails[&key], msg.offset());
                        }
                    }
                    if msg.offset() + 1 >= end {
                        remaining.remove(&key);
                    }
                    last_progress = Instant::now();
                }
            }
            Some(Err(e)) => {
                tracing::warn!(cluster = %origin.id, error = %e, "verifier read error; retrying");
            }
            None => {}
        }
        if last_position_check.elapsed() >= Duration::from_millis(500) {
            // Transaction markers take offsets no record is read at (as in the reader).
            last_position_check = Instant::now();
            if let Ok(pos) = consumer.position() {
                for el in pos.elements() {
                    let key = (el.topic().to_string(), el.partition());
                    if let (Some(&end), Offset::Offset(at)) = (remaining.get(&key), el.offset())
                        && at >= end
                    {
                        remaining.remove(&key);
                        last_progress = Instant::now();
                    }
                }
            }
        }
        if last_progress.elapsed() > spec.stall_timeout {
            let mut left: Vec<String> = remaining
                .iter()
                .map(|((t, p), e)| format!("{t}/{p} (to offset {e})"))
                .collect();
            left.sort();
            return Err(VerifyError::Stalled {
                cluster: origin.id.clone(),
                secs: spec.stall_timeout.as_secs(),
                what: left.join(", "),
            });
        }
    }
    Ok(())
}

/// Counts a record of `origin` at `offset` of a partition read per its `tail`, for each
/// comparison whose lost tail has begun there.
pub fn lost_record(
    spec: &VerifySpec,
    snap: &mut Snapshot,
    origin: &str,
    (topic, p): &(String, i32),
    tail: &Tail,
    offset: i64,
) {
    for (target, from) in tail.pairs.iter().filter(|(_, f)| *f <= offset) {
        let key = (target.clone(), origin.to_string(), topic.clone(), *p);
        let lost = snap.lost.entry(key).or_insert_with(|| Lost {
            from: *from,
            ..Lost::default()
        });
        lost.count += 1;
        if lost.offsets.len() < spec.max_samples {
            lost.offsets.push(offset);
        }
    }
}
