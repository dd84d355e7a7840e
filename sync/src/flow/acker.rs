//! The acker: awaits the deliveries, advances each partition's position in that
//! partition's read order (`pending`), and commits the positions to the source group as
//! checkpoints.
//!
//! Positions only move past a record once the target acknowledged it (or routing passed
//! it over), so a committed checkpoint never runs ahead of the target. Deliveries are
//! awaited as they resolve, in any order across partitions: the in-flight budget comes
//! back as soon as the target acknowledges, and one partition that waits on the target
//! holds back only itself. A partition whose unacknowledged bytes pass its share of the
//! budget ([`partition_cap`]) is paused until the target catches up.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::DeliveryFuture;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::pending::{Partition, Position};
use super::{Clients, Flow, LagContext};
use crate::error::SyncError;
use crate::resume::checkpoint_metadata;

/// The share of a flow's in-flight budget one partition may hold: a half. One target
/// partition that stopped answering leaves the others at least the other half; two hold
/// the whole budget, and the flow waits for the target. A smaller share would pause a
/// busy partition of a healthy target more often while the flow catches up (a pause
/// drops what librdkafka prefetched for the partition, which is fetched again on resume).
pub(crate) fn partition_cap(in_flight_bytes: usize) -> usize {
    (in_flight_bytes / 2).max(1)
}

/// A hold at least this long is logged when it ends.
const LONG_HOLD: Duration = Duration::from_secs(5);

/// What the reader did with one record, in read order.
pub(crate) enum Ack {
    /// Handed to the producer; `delivery` resolves when the target acknowledged it.
    Sent {
        topic: Arc<str>,
        partition: i32,
        offset: i64,
        bytes: usize,
        timestamp: Option<i64>,
        delivery: DeliveryFuture,
        /// Returns the record's bytes to the in-flight budget when dropped.
        _permit: OwnedSemaphorePermit,
    },
    /// A partition was added: where it starts and what its checkpoint says, carried
    /// into every later commit.
    Assigned {
        topic: Arc<str>,
        partition: i32,
        offset: i64,
        target_offset: Option<i64>,
        written: Option<i64>,
        began: Option<i64>,
    },
    /// Not for this flow (routing or the hop guard): its position simply advances.
    Passed {
        topic: Arc<str>,
        partition: i32,
        offset: i64,
    },
}

/// Partitions whose reading the acker paused because the target has not acknowledged
/// enough of their records, and when each was resumed: the stall watchdog leaves them
/// alone, for they wait on the target, not on the source (docs/delivery.md).
#[derive(Clone, Default)]
pub(crate) struct Holds(Arc<Mutex<HoldMap>>);

/// Held partitions, each with when it was resumed (`None` while paused).
type HoldMap = HashMap<(String, i32), Option<Instant>>;

impl Holds {
    fn hold(&self, topic: &str, partition: i32) {
        self.lock().insert((topic.to_string(), partition), None);
    }

    fn release(&self, topic: &str, partition: i32) {
        self.lock()
            .insert((topic.to_string(), partition), Some(Instant::now()));
    }

    /// Whether a partition is held, or was resumed less than `settle` ago (its fetches
    /// have not had the time to show).
    pub(crate) fn holds(&self, topic: &str, partition: i32, settle: Duration) -> bool {
        let mut held = self.lock();
        held.retain(|_, r| r.is_none_or(|at| at.elapsed() < settle));
        held.contains_key(&(topic.to_string(), partition))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HoldMap> {
        self.0.lock().expect("holds lock")
    }
}

/// What a delivery's resolution must update.
#[derive(Clone, Copy)]
struct Record {
    part: u32,
    seq: u64,
    offset: i64,
    bytes: usize,
    timestamp: Option<i64>,
}

/// One delivery in flight; resolves to its record and the target offset (or the error).
struct InFlight {
    record: Record,
    delivery: DeliveryFuture,
    /// Returns the record's bytes to the in-flight budget when the delivery resolves.
    _permit: OwnedSemaphorePermit,
}

impl Future for InFlight {
    type Output = (Record, Result<i64, KafkaError>);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let r = ready!(Pin::new(&mut self.delivery).poll(cx));
        let outcome = match r {
            Ok(Ok(d)) => Ok(d.offset),
            Ok(Err((e, _))) => Err(e),
            Err(_) => Err(KafkaError::Canceled),
        };
        Poll::Ready((self.record, outcome))
    }
}

pub(crate) struct Acker<'a> {
    flow: &'a Flow,
    consumer: Arc<StreamConsumer<LagContext>>,
    /// Kept alive past the drain timeout while deliveries are unresolved.
    producer: crate::clients::FlowProducer,
    stop: CancellationToken,
    /// Partition index by name: one lookup per ack.
    index: HashMap<(Arc<str>, i32), u32>,
    parts: Vec<(Arc<str>, i32, Partition)>,
    in_flight: FuturesUnordered<InFlight>,
    /// In-flight bytes one partition may hold before its reading is paused.
    cap: usize,
    holds: Holds,
    /// The error that stops the flow, once a delivery failed.
    failure: Option<SyncError>,
}

impl<'a> Acker<'a> {
    pub(crate) fn new(
        flow: &'a Flow,
        clients: &Clients,
        stop: CancellationToken,
        holds: Holds,
    ) -> Self {
        Acker {
            flow,
            consumer: clients.consumer.clone(),
            producer: clients.producer.clone(),
            stop,
            index: HashMap::new(),
            parts: Vec::new(),
            in_flight: FuturesUnordered::new(),
            cap: partition_cap(flow.spec.in_flight_bytes),
            holds,
            failure: None,
        }
    }

    /// Runs until the reader hangs up and every delivery is resolved, or until the
    /// drain deadline after a stop. Commits what was acknowledged either way.
    ///
    /// The first failed delivery stops the flow, but not the acker: it keeps awaiting
    /// every delivery still outstanding (the reader stops and the local queue is purged,
    /// see [`super::Flow::run_once`]), so that nothing the producer sent can land after
    /// the next start scanned the target. Deliveries that succeed meanwhile still
    /// advance their partitions; a partition with a failed record never advances past it.
    pub(crate) async fn run(mut self, mut rx: mpsc::Receiver<Ack>) -> Result<(), SyncError> {
        let spec = self.flow.spec.clone();
        let mut tick = tokio::time::interval(spec.limits.commit_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let stop = self.stop.clone();
        let deadline = async move {
            stop.cancelled().await;
            tokio::time::sleep(spec.drain_timeout).await;
        };
        tokio::pin!(deadline);
        let (mut reading, mut expired) = (true, false);
        while reading || (!expired && !self.in_flight.is_empty()) {
            tokio::select! {
                biased;
                // Past the deadline, only what the stopping reader still sent is taken.
                _ = &mut deadline, if !expired => expired = true,
                _ = tick.tick(), if !expired => {
                    self.commit();
                    self.resume_due();
                }
                Some(r) = self.in_flight.next(), if !expired && !self.in_flight.is_empty() => self.resolved(r),
                a = rx.recv(), if reading => match a {
                    Some(ack) => self.take(ack),
                    None => reading = false,
                },
            }
        }
        if expired {
            self.linger();
        }
        self.commit_last().await;
        match self.failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn part(&mut self, topic: Arc<str>, partition: i32, pos: Option<Position>) -> u32 {
        let key = (topic, partition);
        if let Some(&i) = self.index.get(&key) {
            if let Some(pos) = pos {
                self.parts[i as usize].2.pos = pos;
            }
            return i;
        }
        let i = self.parts.len() as u32;
        self.parts.push((
            key.0.clone(),
            partition,
            Partition::new(pos.unwrap_or_else(Position::unknown)),
        ));
        self.index.insert(key, i);
        i
    }

    fn take(&mut self, ack: Ack) {
        match ack {
            Ack::Assigned {
                topic,
                partition,
                offset,
                target_offset,
                written,
                began,
            } => {
                // Committed once at the next tick even when no record arrives:
                // librdkafka computes a partition's lag from a commit made after
                // its assignment, so a quiet partition would otherwise read as
                // unknown for the whole run. It commits what the checkpoint said.
                let pos = Position {
                    next: offset,
                    target_offset,
                    written,
                    began,
                    committed: false,
                };
                self.part(topic, partition, Some(pos));
            }
            Ack::Passed {
                topic,
                partition,
                offset,
            } => {
                let i = self.part(topic, partition, None);
                self.parts[i as usize].2.passed(offset);
            }
            Ack::Sent {
                topic,
                partition,
                offset,
                bytes,
                timestamp,
                delivery,
                _permit,
            } => {
                let i = self.part(topic, partition, None);
                let p = &mut self.parts[i as usize].2;
                let seq = p.sent(offset, bytes);
                let pause = !p.paused && p.in_flight > self.cap;
                self.in_flight.push(InFlight {
                    record: Record {
                        part: i,
                        seq,
                        offset,
                        bytes,
                        timestamp,
                    },
                    delivery,
                    _permit,
                });
                if pause {
                    self.pause(i, true);
                }
            }
        }
    }

    fn resolved(&mut self, (r, outcome): (Record, Result<i64, KafkaError>)) {
        let target = match outcome {
            Ok(target) => {
                let m = &self.flow.metrics;
                m.forwarded.fetch_add(1, Relaxed);
                m.forwarded_bytes.fetch_add(r.bytes as u64, Relaxed);
                if let Some(ts) = r.timestamp {
                    let now = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as i64);
                    m.latency_ms_sum
                        .fetch_add((now - ts).max(0) as u64, Relaxed);
                    m.latency_count.fetch_add(1, Relaxed);
                }
                Some(target)
            }
            Err(e) => {
                self.failed(r.part, r.offset, e);
                None
            }
        };
        let p = &mut self.parts[r.part as usize].2;
        p.resolved(r.seq, r.bytes, target);
        if p.paused && p.in_flight <= self.cap / 2 {
            self.pause(r.part, false);
        }
    }

    /// Resumes held partitions whose resume failed at their last acknowledgement.
    fn resume_due(&mut self) {
        let due: Vec<u32> = (0..self.parts.len() as u32)
            .filter(|&i| {
                let p = &self.parts[i as usize].2;
                p.paused && p.in_flight <= self.cap / 2
            })
            .collect();
        for i in due {
            self.pause(i, false);
        }
    }

    /// Pauses (or resumes) reading a partition whose target holds back too many of its
    /// records: one target partition that does not answer holds about its share of the
    /// in-flight budget, and the other partitions carry on with the rest. The share can
    /// be passed by what the reader took before the acker saw it (the acks in the
    /// channel). librdkafka drops what it prefetched for a paused partition and fetches
    /// again from the record after the last one the reader received; a pause that lands
    /// while the reader is taking a record can resume at that record, which the reader
    /// then recognises and skips (`TopicRoute::seen` in reader.rs): nothing is written
    /// twice.
    fn pause(&mut self, i: u32, pause: bool) {
        let (topic, partition, p) = &mut self.parts[i as usize];
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(topic, *partition);
        let done = if pause {
            self.consumer.pause(&tpl)
        } else {
            self.consumer.resume(&tpl)
        };
        let name = self.flow.spec.name();
        match done {
            Ok(()) => {
                p.paused = pause;
                let held = &self.flow.metrics.partitions_held;
                if pause {
                    self.holds.hold(topic, *partition);
                    held.fetch_add(1, Relaxed);
                    p.held_since = Some(Instant::now());
                    debug!(flow = %name, %topic, partition, in_flight = p.in_flight, "The target holds back this partition's records: reading it waits until they are acknowledged; the other partitions carry on.");
                } else {
                    self.holds.release(topic, *partition);
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
            }
            // Not fatal either way: a partition not paused only uses more of the
            // budget; one not resumed is tried again at its next acknowledgement.
            Err(e) => {
                warn!(flow = %name, %topic, partition, pause, error = %e, "Pausing or resuming a partition failed.")
            }
        }
    }

    /// A record the target did not take: its partition stops there, and the flow stops.
    /// The error reported is the one that explains the others: a record purged from the
    /// local queue (`ERR__PURGE_QUEUE`, after our own purge or librdkafka's on a fatal
    /// error) is only a consequence, and a refusal must stop the flow for good even when
    /// purged records of other partitions came first.
    fn failed(&mut self, part: u32, offset: i64, e: KafkaError) {
        let purged = matches!(
            e.rdkafka_error_code(),
            Some(RDKafkaErrorCode::PurgeQueue | RDKafkaErrorCode::PurgeInflight)
        );
        if purged && self.stop.is_cancelled() && self.failure.is_none() {
            return;
        }
        let spec = &self.flow.spec;
        let (topic, partition, _) = &self.parts[part as usize];
        let error = SyncError::delivery(
            &spec.source.id,
            &spec.target.id,
            topic,
            *partition,
            offset,
            e,
        );
        if self.failure.as_ref().is_none_or(|f| error.outranks(f)) {
            if self.failure.is_none() {
                warn!(flow = %spec.name(), error = %error, "Delivery failed: stopping the flow once the deliveries still outstanding are resolved.");
            }
            self.failure = Some(error);
        }
        self.stop.cancel();
    }

    /// The drain timed out: what is still in flight is awaited by a task of its own that
    /// keeps the producer alive, and until it resolves the partitions concerned do not
    /// start again ([`super::Leftovers`]).
    fn linger(&mut self) {
        let name = self.flow.spec.name();
        if self.in_flight.is_empty() {
            return;
        }
        let keys: Vec<(String, i32)> = self
            .parts
            .iter()
            .map(|(t, p, _)| (t.to_string(), *p))
            .collect();
        let leftovers = self.flow.leftovers.clone();
        for d in self.in_flight.iter() {
            leftovers.add(&keys[d.record.part as usize]);
        }
        let mut waiting = std::mem::take(&mut self.in_flight);
        warn!(flow = %name, unacknowledged = waiting.len(), drain_timeout = ?self.flow.spec.drain_timeout, "Stopping with deliveries still unacknowledged: they are awaited apart, and their partitions start again once the target has answered for them.");
        let producer = self.producer.clone();
        tokio::spawn(async move {
            while let Some((r, _)) = waiting.next().await {
                leftovers.done(&keys[r.part as usize]);
            }
            drop(producer);
            info!(flow = %name, "The deliveries a stopped run left in flight are resolved.");
        });
    }

    /// Publishes how far each partition is acknowledged (engine/settle.rs reads it).
    fn publish(&self) {
        self.flow.acknowledged.publish(
            self.parts
                .iter()
                .map(|(t, p, part)| (&**t, *p, part.pos.next)),
        );
    }

    /// Commits what was acknowledged since the last commit, without waiting.
    fn commit(&mut self) {
        self.publish();
        let Some(tpl) = self.uncommitted() else {
            return;
        };
        // A failed commit only makes the next resume scan longer; it is not an error.
        match self.consumer.commit(&tpl, CommitMode::Async) {
            Ok(()) => self
                .parts
                .iter_mut()
                .for_each(|(_, _, p)| p.pos.committed = true),
            Err(e) => {
                warn!(flow = %self.flow.spec.name(), error = %e, "Committing the source checkpoint failed; will retry.")
            }
        }
    }

    /// The last commit of a run, awaited, but for one request timeout at most: a
    /// coordinator that stopped answering must not hold the stop (or a tokio worker)
    /// for the client's socket timeout. Abandoned, it only makes the next scan longer.
    async fn commit_last(&mut self) {
        self.publish();
        let Some(tpl) = self.uncommitted() else {
            return;
        };
        let consumer = self.consumer.clone();
        let timeout = self.flow.spec.limits.request_timeout;
        let done = tokio::time::timeout(
            timeout,
            tokio::task::spawn_blocking(move || consumer.commit(&tpl, CommitMode::Sync)),
        )
        .await;
        let name = self.flow.spec.name();
        match done {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => {
                warn!(flow = %name, error = %e, "Committing the source checkpoint failed; the next start scans further back.")
            }
            Ok(Err(_)) | Err(_) => {
                warn!(flow = %name, ?timeout, "The source did not confirm the last checkpoint in time; the next start scans further back.")
            }
        }
    }

    fn uncommitted(&self) -> Option<TopicPartitionList> {
        let mut tpl = TopicPartitionList::new();
        for (topic, partition, p) in &self.parts {
            let p = &p.pos;
            if p.committed {
                continue;
            }
            let mut e = tpl.add_partition(topic, *partition);
            if e.set_offset(Offset::Offset(p.next)).is_err() {
                continue;
            }
            if let Some(t) = p.target_offset {
                e.set_metadata(checkpoint_metadata(t, p.written, p.began));
            }
        }
        (tpl.count() > 0).then_some(tpl)
    }
}
