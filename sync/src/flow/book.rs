//! The acknowledgement book of one run of a flow: every partition's records in read
//! order ([`Partition`]), written by the reader as it sends or passes records over, and
//! resolved by the producer's delivery callback ([`DeliveryContext`]) on librdkafka's
//! polling thread as the target acknowledges them. The acker reads positions from it to
//! commit them.
//!
//! Nothing is allocated or sent across a channel per record: a record's delivery carries
//! a `usize` token naming its partition and its sequence number in that partition's
//! queue ([`token`]), the callback updates the partition under one lock, returns the
//! record's bytes to the in-flight budget and counts it. A partition whose
//! unacknowledged bytes pass its share of the budget ([`partition_cap`]) is paused by
//! the reader and resumed by the acker, which the callback wakes.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use rdkafka::consumer::Consumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{DeliveryResult, ProducerContext};
use rdkafka::{ClientContext, TopicPartitionList};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::acker::{Holds, LONG_HOLD};
use super::pending::{Partition, Position, Resolved};
use super::{FlowConsumer, FlowSpec, Leftovers};
use crate::error::SyncError;
use crate::metrics::FlowMetrics;

/// The share of a flow's in-flight budget one partition may hold: a half. One target
/// partition that stopped answering leaves the others at least the other half; two hold
/// the whole budget, and the flow waits for the target. A smaller share would pause a
/// busy partition of a healthy target more often while the flow catches up (a pause
/// drops what librdkafka prefetched for the partition, which is fetched again on resume).
pub(crate) fn partition_cap(in_flight_bytes: usize) -> usize {
    (in_flight_bytes / 2).max(1)
}

/// Bits of a delivery token that hold the record's sequence number; the bits above hold
/// its partition's index in the book.
const SEQ_BITS: u32 = 40;
const SEQ_MASK: u64 = (1 << SEQ_BITS) - 1;
/// Partitions one run of a flow can hold: 2^24.
pub(crate) const MAX_PARTITIONS: usize = 1 << (usize::BITS - SEQ_BITS);
const _: () = assert!(usize::BITS == 64, "delivery tokens need a 64-bit usize");

/// The token a record's delivery carries: its partition's index and the low bits of its
/// sequence number, which identify it among the fewer than 2^40 entries in flight.
fn token(part: u32, seq: u64) -> usize {
    ((part as usize) << SEQ_BITS) | (seq & SEQ_MASK) as usize
}

fn untoken(token: usize) -> (u32, u64) {
    ((token >> SEQ_BITS) as u32, token as u64 & SEQ_MASK)
}

/// One partition of the book.
pub(crate) struct Part {
    pub topic: Arc<str>,
    pub partition: i32,
    pub p: Partition,
}

/// What the lock guards.
#[derive(Default)]
pub(crate) struct State {
    index: HashMap<(Arc<str>, i32), u32>,
    pub parts: Vec<Part>,
    /// Deliveries not resolved yet.
    pub outstanding: usize,
    /// The error that stops the flow, once a delivery failed.
    pub failure: Option<SyncError>,
    /// A paused partition's in-flight bytes fell below half its share: the acker
    /// resumes it.
    pub resume_due: bool,
    /// Once a stop's drain timed out: resolutions count down these leftovers.
    lingering: Option<Leftovers>,
}

impl State {
    /// The index of a partition, added with `pos` (or as unknown) when new; `pos`
    /// replaces the position of a known one.
    pub(crate) fn part(&mut self, topic: &Arc<str>, partition: i32, pos: Option<Position>) -> u32 {
        if let Some(&i) = self.index.get(&(topic.clone(), partition)) {
            if let Some(pos) = pos {
                self.parts[i as usize].p.pos = pos;
            }
            return i;
        }
        // Kafka clusters hold a few hundred thousand partitions at most.
        assert!(
            self.parts.len() < MAX_PARTITIONS,
            "a flow reads more than {MAX_PARTITIONS} partitions"
        );
        let i = self.parts.len() as u32;
        self.parts.push(Part {
            topic: topic.clone(),
            partition,
            p: Partition::new(pos.unwrap_or_else(Position::unknown)),
        });
        self.index.insert((topic.clone(), partition), i);
        i
    }

    /// Where the run stands on a partition, when it reads it.
    pub(crate) fn position(&self, topic: &str, partition: i32) -> Option<Position> {
        self.parts
            .iter()
            .find(|p| &*p.topic == topic && p.partition == partition)
            .map(|p| p.p.pos)
    }

    /// The token the next record sent to partition `i` must carry.
    pub(crate) fn next_token(&self, i: u32) -> usize {
        token(i, self.parts[i as usize].p.next_seq())
    }
}

/// See the module documentation.
pub(crate) struct Book {
    state: Mutex<State>,
    /// Wakes the acker: a paused partition may resume, or a delivery resolved.
    pub wake: Notify,
    /// The in-flight budget in bytes (rule 5): the reader takes a record's bytes before
    /// it sends it, the delivery callback gives them back.
    pub budget: Semaphore,
    /// In-flight bytes one partition may hold before its reading is paused.
    pub cap: usize,
    spec: Arc<FlowSpec>,
    metrics: Arc<FlowMetrics>,
    stop: CancellationToken,
    holds: Holds,
}

impl Book {
    pub(crate) fn new(
        spec: Arc<FlowSpec>,
        metrics: Arc<FlowMetrics>,
        stop: CancellationToken,
        holds: Holds,
    ) -> Self {
        Book {
            state: Mutex::default(),
            wake: Notify::new(),
            budget: Semaphore::new(spec.in_flight_bytes),
            cap: partition_cap(spec.in_flight_bytes),
            spec,
            metrics,
            stop,
            holds,
        }
    }

    /// The book. A panic while it was held does not make it unusable: the delivery
    /// callback runs on librdkafka's polling thread, where a panic would stop every
    /// later delivery from resolving, and again from the producer's drop.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Deliveries not resolved yet.
    pub(crate) fn outstanding(&self) -> usize {
        self.lock().outstanding
    }

    /// The delivery of the record with `token` resolved.
    fn resolved(&self, token: usize, outcome: Result<i64, &KafkaError>) {
        let (i, seq) = untoken(token);
        // The clock is read before the lock: the reader waits on that lock to enter
        // records. The counters stay under it, so that whoever sees a delivery resolved
        // (the drain at a stop) also sees it counted.
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let mut s = self.lock();
        let State {
            parts,
            outstanding,
            failure,
            resume_due,
            lingering,
            ..
        } = &mut *s;
        let Some(part) = parts.get_mut(i as usize) else {
            return;
        };
        let target = outcome.as_ref().ok().copied();
        let seq = part.p.seq_from_low_bits(seq, SEQ_MASK);
        let Some(Resolved {
            offset,
            bytes,
            timestamp,
        }) = part.p.resolved(seq, target)
        else {
            return;
        };
        *outstanding -= 1;
        self.budget
            .add_permits(bytes.clamp(1, self.spec.in_flight_bytes));
        match outcome {
            Ok(_) => {
                let m = &self.metrics;
                m.forwarded.fetch_add(1, Relaxed);
                m.forwarded_bytes.fetch_add(bytes as u64, Relaxed);
                if let Some(ts) = timestamp {
                    m.latency.0.observe((now_ms - ts).max(0) as f64 / 1000.0);
                }
            }
            Err(e) => self.failed(failure, part, offset, e.clone()),
        }
        if let Some(l) = lingering {
            l.done(&(part.topic.to_string(), part.partition));
        }
        if part.p.paused && part.p.in_flight <= self.cap / 2 {
            *resume_due = true;
        }
        if *resume_due || *outstanding == 0 || failure.is_some() {
            self.wake.notify_one();
        }
    }

    /// A record the target did not take: its partition stops there (`Partition`), and
    /// the flow stops. The error kept is the one that explains the others: a record
    /// purged from the local queue (`ERR__PURGE_QUEUE`, after our own purge or
    /// librdkafka's on a fatal error) is only a consequence, and a refusal must stop the
    /// flow for good even when purged records of other partitions came first.
    fn failed(&self, failure: &mut Option<SyncError>, part: &Part, offset: i64, e: KafkaError) {
        let purged = matches!(
            e.rdkafka_error_code(),
            Some(RDKafkaErrorCode::PurgeQueue | RDKafkaErrorCode::PurgeInflight)
        );
        if purged && self.stop.is_cancelled() && failure.is_none() {
            return;
        }
        let spec = &self.spec;
        let error = SyncError::delivery(
            &spec.source.id,
            &spec.target.id,
            &part.topic,
            part.partition,
            offset,
            e,
        );
        if failure.as_ref().is_none_or(|f| error.outranks(f)) {
            if failure.is_none() {
                warn!(flow = %spec.name(), error = %error, "Delivery failed: stopping the flow once the deliveries still outstanding are resolved.");
            }
            *failure = Some(error);
        }
        self.stop.cancel();
    }

    /// A stop's drain timed out: the deliveries still outstanding are counted in
    /// `leftovers` per partition, and each resolution from now on counts one down.
    /// Returns how many there are.
    pub(crate) fn linger(&self, leftovers: Leftovers) -> usize {
        let mut s = self.lock();
        for part in s.parts.iter().filter(|p| p.p.pending() > 0) {
            leftovers.add(&(part.topic.to_string(), part.partition), part.p.pending());
        }
        s.lingering = Some(leftovers);
        s.outstanding
    }

    /// Pauses (or resumes) reading partition `i`, whose target holds back too many of
    /// its records: one target partition that does not answer holds about its share of
    /// the in-flight budget, and the other partitions carry on with the rest.
    /// librdkafka drops what it prefetched for a paused partition and fetches again from
    /// the record after the last one the reader received. The reader takes records in
    /// batches, and librdkafka counts a whole batch as received: the reader leaves the
    /// paused partition's later records in the batch unsent and seeks the partition back
    /// to the first of them (`Reader::rewind`). A resume that starts at a record already
    /// handled is recognised and skipped (`TopicRoute::seen` in reader.rs): nothing is
    /// written twice, nothing is left out.
    ///
    /// Called without the lock held: librdkafka's pause waits on its own threads. The
    /// consumer is passed in, not kept: the book outlives the run while deliveries
    /// linger (it is the producer's context), and must not keep the run's consumer and
    /// its prefetched records alive.
    ///
    /// Returns whether the partition is now paused (or resumed) as asked.
    pub(crate) fn pause(&self, consumer: &FlowConsumer, i: u32, pause: bool) -> bool {
        let (topic, partition) = {
            let s = self.lock();
            let part = &s.parts[i as usize];
            if part.p.paused == pause {
                return true;
            }
            (part.topic.clone(), part.partition)
        };
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&topic, partition);
        let done = if pause {
            consumer.pause(&tpl)
        } else {
            consumer.resume(&tpl)
        };
        let name = self.spec.name();
        match done {
            Ok(()) => {
                let mut s = self.lock();
                let State {
                    parts, resume_due, ..
                } = &mut *s;
                let p = &mut parts[i as usize].p;
                p.paused = pause;
                let held = &self.metrics.partitions_held;
                if pause {
                    self.holds.hold(&topic, partition);
                    held.fetch_add(1, Relaxed);
                    p.held_since = Some(Instant::now());
                    // Deliveries that resolved between the reader's check and now did
                    // not see the pause: their resume is due.
                    if p.in_flight <= self.cap / 2 {
                        *resume_due = true;
                        self.wake.notify_one();
                    }
                    debug!(flow = %name, %topic, partition, in_flight = p.in_flight, "The target holds back this partition's records: reading it waits until they are acknowledged; the other partitions carry on.");
                } else {
                    self.holds.release(&topic, partition);
                    held.fetch_sub(1, Relaxed);
                    // A busy partition is paused briefly now and then while the flow
                    // catches up; a hold worth a line in the log is a long one.
                    let held_for = p.held_since.take().map(|t| t.elapsed());
                    if held_for.is_some_and(|d| d >= LONG_HOLD) {
                        info!(flow = %name, %topic, partition, ?held_for, "The target held back this partition's records for a while; reading it again.");
                    } else {
                        debug!(flow = %name, %topic, partition, "Reading the partition again.");
                    }
                }
                true
            }
            // Not fatal either way: a partition not paused only uses more of the
            // budget; one not resumed is tried again at the acker's next tick.
            Err(e) => {
                warn!(flow = %name, %topic, partition, pause, error = %e, "Pausing or resuming a partition failed.");
                false
            }
        }
    }

    /// Resumes held partitions whose in-flight bytes fell to half their share.
    pub(crate) fn resume_due(&self, consumer: &FlowConsumer) {
        let due: Vec<u32> = {
            let mut s = self.lock();
            s.resume_due = false;
            (0..s.parts.len() as u32)
                .filter(|&i| {
                    let p = &s.parts[i as usize].p;
                    p.paused && p.in_flight <= self.cap / 2
                })
                .collect()
        };
        for i in due {
            // A failure was logged; the next tick tries again.
            let _ = self.pause(consumer, i, false);
        }
    }
}

/// The context of a flow's producer: resolves deliveries in the book, and logs
/// librdkafka's lines through [`crate::clients::log_flow_producer`].
pub(crate) struct DeliveryContext(pub Arc<Book>);

impl ClientContext for DeliveryContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        crate::clients::log_flow_producer(level, fac, message);
    }
}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, token: usize) {
        match result {
            Ok(m) => self.0.resolved(token, Ok(m.offset())),
            Err((e, _)) => self.0.resolved(token, Err(e)),
        }
    }
}

/// A flow's producer: deliveries resolve through [`DeliveryContext`] on librdkafka's
/// polling thread, with no future per record.
pub(crate) type FlowProducer = rdkafka::producer::ThreadedProducer<DeliveryContext>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_name_the_partition_and_the_sequence_number() {
        for (part, seq) in [(0, 0), (1, 7), (MAX_PARTITIONS as u32 - 1, SEQ_MASK)] {
            assert_eq!(untoken(token(part, seq)), (part, seq));
        }
        // Past 2^40 records the low bits wrap; Partition::resolved recovers the rest.
        assert_eq!(untoken(token(3, SEQ_MASK + 5)), (3, 4));
    }
}
