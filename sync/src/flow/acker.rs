//! The acker: awaits each delivery in the order records were read, advances the
//! per-partition positions, and commits them to the source group as checkpoints.
//!
//! Positions only move past a record once the target acknowledged it (or routing passed
//! it over), so a committed checkpoint never runs ahead of the target.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{SystemTime, UNIX_EPOCH};

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::DeliveryFuture;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::{Clients, Flow, LagContext};
use crate::error::SyncError;
use crate::resume::checkpoint_metadata;

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

#[derive(Clone, Copy)]
struct Position {
    next: i64,
    target_offset: Option<i64>,
    /// Source offset of the record at `target_offset`, when the flow wrote it there:
    /// lets the next start check that the target still holds it (resume.rs).
    written: Option<i64>,
    /// Where replication of the partition began (commit metadata `b`), when known.
    began: Option<i64>,
    committed: bool,
}

pub(crate) struct Acker<'a> {
    flow: &'a Flow,
    consumer: Arc<StreamConsumer<LagContext>>,
    stop: CancellationToken,
    positions: HashMap<(Arc<str>, i32), Position>,
    /// The error that stops the flow, once a delivery failed.
    failure: Option<SyncError>,
    /// Partitions with a failed record: their positions stay before it.
    halted: HashSet<(Arc<str>, i32)>,
}

impl<'a> Acker<'a> {
    pub(crate) fn new(flow: &'a Flow, clients: &Clients, stop: CancellationToken) -> Self {
        Acker {
            flow,
            consumer: clients.consumer.clone(),
            stop,
            positions: HashMap::new(),
            failure: None,
            halted: HashSet::new(),
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
        loop {
            let ack = tokio::select! {
                biased;
                _ = &mut deadline => { self.timed_out(rx.len()); break; }
                _ = tick.tick() => { self.commit(); continue; }
                a = rx.recv() => a,
            };
            let Some(ack) = ack else { break };
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
                    let p = Position {
                        next: offset,
                        target_offset,
                        written,
                        began,
                        committed: false,
                    };
                    self.positions.insert((topic, partition), p);
                }
                Ack::Passed {
                    topic,
                    partition,
                    offset,
                } => self.advance(topic, partition, offset, None),
                Ack::Sent {
                    topic,
                    partition,
                    offset,
                    bytes,
                    timestamp,
                    delivery,
                    _permit,
                } => {
                    let outcome = tokio::select! {
                        biased;
                        d = delivery => d,
                        _ = &mut deadline => { self.timed_out(rx.len() + 1); break; }
                    };
                    match outcome {
                        Ok(Ok(d)) => {
                            let m = &self.flow.metrics;
                            m.forwarded.fetch_add(1, Relaxed);
                            m.forwarded_bytes.fetch_add(bytes as u64, Relaxed);
                            if let Some(ts) = timestamp {
                                let now = SystemTime::now()
                                    .duration_since(UNIX_EPOCH)
                                    .map_or(0, |d| d.as_millis() as i64);
                                m.latency_ms_sum
                                    .fetch_add((now - ts).max(0) as u64, Relaxed);
                                m.latency_count.fetch_add(1, Relaxed);
                            }
                            self.advance(topic, partition, offset, Some(d.offset));
                        }
                        Ok(Err((e, _))) => self.failed(topic, partition, offset, e),
                        Err(_) => self.failed(topic, partition, offset, KafkaError::Canceled),
                    }
                }
            }
        }
        self.commit_last().await;
        match self.failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// A record the target did not take: its partition stops there, and the flow stops.
    /// The error reported is the one that explains the others: a record purged from the
    /// local queue (`ERR__PURGE_QUEUE`, after our own purge or librdkafka's on a fatal
    /// error) is only a consequence, and a refusal must stop the flow for good even when
    /// purged records of other partitions came first in read order.
    fn failed(&mut self, topic: Arc<str>, partition: i32, offset: i64, e: KafkaError) {
        let purged = matches!(
            e.rdkafka_error_code(),
            Some(RDKafkaErrorCode::PurgeQueue | RDKafkaErrorCode::PurgeInflight)
        );
        if !(purged && self.stop.is_cancelled() && self.failure.is_none()) {
            let spec = &self.flow.spec;
            let error = SyncError::delivery(
                &spec.source.id,
                &spec.target.id,
                &topic,
                partition,
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
        self.halted.insert((topic, partition));
    }

    fn timed_out(&self, unacknowledged: usize) {
        warn!(flow = %self.flow.spec.name(), unacknowledged, drain_timeout = ?self.flow.spec.drain_timeout, "Stopping with deliveries still unacknowledged; the next start resumes from what the target holds.");
    }

    fn advance(
        &mut self,
        topic: Arc<str>,
        partition: i32,
        offset: i64,
        target_offset: Option<i64>,
    ) {
        // Only after a failure: the one lookup the hot path skips.
        if !self.halted.is_empty() && self.halted.contains(&(topic.clone(), partition)) {
            return;
        }
        let p = self
            .positions
            .entry((topic, partition))
            .or_insert(Position {
                next: 0,
                target_offset: None,
                written: None,
                began: None,
                committed: true,
            });
        p.next = offset + 1;
        if target_offset.is_some() {
            p.target_offset = target_offset;
            p.written = Some(offset);
        }
        p.committed = false;
    }

    /// Commits what was acknowledged since the last commit, without waiting.
    fn commit(&mut self) {
        let Some(tpl) = self.uncommitted() else {
            return;
        };
        // A failed commit only makes the next resume scan longer; it is not an error.
        match self.consumer.commit(&tpl, CommitMode::Async) {
            Ok(()) => self.positions.values_mut().for_each(|p| p.committed = true),
            Err(e) => {
                warn!(flow = %self.flow.spec.name(), error = %e, "Committing the source checkpoint failed; will retry.")
            }
        }
    }

    /// The last commit of a run, awaited, but for one request timeout at most: a
    /// coordinator that stopped answering must not hold the stop (or a tokio worker)
    /// for the client's socket timeout. Abandoned, it only makes the next scan longer.
    async fn commit_last(&mut self) {
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
        for ((topic, partition), p) in &self.positions {
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
