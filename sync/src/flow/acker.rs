//! The acker: commits each partition's acknowledged position (kept in the book,
//! `book.rs`) to the source group as checkpoints, resumes the partitions the book says
//! are due, and at the end of a run waits for the deliveries still outstanding.
//!
//! Positions only move past a record once the target acknowledged it (or routing passed
//! it over), so a committed checkpoint never runs ahead of the target. Deliveries
//! resolve as they come, in any order across partitions: the in-flight budget comes back
//! as soon as the target acknowledges, and one partition that waits on the target holds
//! back only itself.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::book::{Book, FlowProducer};
use super::{Clients, Flow, FlowConsumer};
use crate::error::SyncError;
use crate::resume::checkpoint_metadata;

/// A hold at least this long is logged when it ends.
pub(crate) const LONG_HOLD: Duration = Duration::from_secs(5);

/// Partitions whose reading the acker paused because the target has not acknowledged
/// enough of their records, and when each was resumed: the stall watchdog leaves them
/// alone, for they wait on the target, not on the source (docs/delivery.md).
#[derive(Clone, Default)]
pub(crate) struct Holds(Arc<Mutex<HoldMap>>);

/// Held partitions, each with when it was resumed (`None` while paused).
type HoldMap = HashMap<(String, i32), Option<Instant>>;

impl Holds {
    pub(crate) fn hold(&self, topic: &str, partition: i32) {
        self.lock().insert((topic.to_string(), partition), None);
    }

    pub(crate) fn release(&self, topic: &str, partition: i32) {
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

pub(crate) struct Acker<'a> {
    flow: &'a Flow,
    consumer: Arc<FlowConsumer>,
    /// Kept alive past the drain timeout while deliveries are unresolved.
    producer: FlowProducer,
    book: Arc<Book>,
    stop: CancellationToken,
}

impl<'a> Acker<'a> {
    pub(crate) fn new(flow: &'a Flow, clients: &Clients, stop: CancellationToken) -> Self {
        Acker {
            flow,
            consumer: clients.consumer.clone(),
            producer: clients.producer.clone(),
            book: clients.book.clone(),
            stop,
        }
    }

    /// Runs until `reading` is done and every delivery is resolved, or until the drain
    /// deadline after a stop. Commits what was acknowledged either way.
    ///
    /// The first failed delivery stops the flow, but not the acker: it keeps waiting for
    /// every delivery still outstanding (the reader stops and the local queue is purged,
    /// see [`super::Flow::run_once`]), so that nothing the producer sent can land after
    /// the next start scanned the target. Deliveries that succeed meanwhile still
    /// advance their partitions; a partition with a failed record never advances past it.
    pub(crate) async fn run(self, reading: CancellationToken) -> Result<(), SyncError> {
        let spec = self.flow.spec.clone();
        let mut tick = tokio::time::interval(spec.limits.commit_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let stop = self.stop.clone();
        let deadline = async move {
            stop.cancelled().await;
            tokio::time::sleep(spec.drain_timeout).await;
        };
        tokio::pin!(deadline);
        let mut expired = false;
        loop {
            // Registered before the check, so that no wake between the two is lost.
            let woken = self.book.wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if reading.is_cancelled() && self.book.outstanding() == 0 {
                break;
            }
            tokio::select! {
                biased;
                _ = &mut deadline => {
                    expired = true;
                    break;
                }
                _ = tick.tick() => {
                    self.commit();
                    self.book.resume_due(&self.consumer);
                }
                _ = &mut woken => {
                    if self.book.lock().resume_due {
                        self.book.resume_due(&self.consumer);
                    }
                }
                _ = reading.cancelled(), if !reading.is_cancelled() => {}
            }
        }
        if expired {
            self.linger();
        }
        self.commit_last().await;
        match self.book.lock().failure.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// The drain timed out: what is still in flight is waited for by a task of its own
    /// that keeps the producer alive, and until it resolves the partitions concerned do
    /// not start again ([`super::Leftovers`]).
    fn linger(&self) {
        let unacknowledged = self.book.linger(self.flow.leftovers.clone());
        if unacknowledged == 0 {
            return;
        }
        let name = self.flow.spec.name();
        warn!(flow = %name, unacknowledged, drain_timeout = ?self.flow.spec.drain_timeout, "Stopping with deliveries still unacknowledged: they are awaited apart, and their partitions start again once the target has answered for them.");
        let (producer, book) = (self.producer.clone(), self.book.clone());
        tokio::spawn(async move {
            while book.outstanding() > 0 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            drop(producer);
            info!(flow = %name, "The deliveries a stopped run left in flight are resolved.");
        });
    }

    /// Publishes how far each partition is acknowledged (engine/settle.rs reads it).
    fn publish(&self) {
        let s = self.book.lock();
        self.flow.acknowledged.publish(
            s.parts
                .iter()
                .map(|part| (&*part.topic, part.partition, part.p.pos.next)),
        );
    }

    /// Commits what was acknowledged since the last commit, without waiting.
    fn commit(&self) {
        self.publish();
        let Some(tpl) = self.uncommitted() else {
            return;
        };
        // A failed commit only makes the next resume scan longer; it is not an error.
        match self.consumer.commit(&tpl, CommitMode::Async) {
            Ok(()) => self.mark_committed(&tpl),
            Err(e) => {
                warn!(flow = %self.flow.spec.name(), error = %e, "Committing the source checkpoint failed; will retry.")
            }
        }
    }

    /// Marks committed the partitions whose position is still the one in `tpl`.
    fn mark_committed(&self, tpl: &TopicPartitionList) {
        let elements = tpl.elements();
        let committed: HashMap<(&str, i32), i64> = elements
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some(((e.topic(), e.partition()), o)),
                _ => None,
            })
            .collect();
        let mut s = self.book.lock();
        for part in &mut s.parts {
            if committed.get(&(&*part.topic, part.partition)) == Some(&part.p.pos.next) {
                part.p.pos.committed = true;
            }
        }
    }

    /// The last commit of a run, awaited, but for one request timeout at most: a
    /// coordinator that stopped answering must not hold the stop (or a tokio worker)
    /// for the client's socket timeout. Abandoned, it only makes the next scan longer.
    async fn commit_last(&self) {
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
        let s = self.book.lock();
        for part in &s.parts {
            let p = &part.p.pos;
            if p.committed {
                continue;
            }
            let mut e = tpl.add_partition(&part.topic, part.partition);
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
