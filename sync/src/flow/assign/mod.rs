//! Assignment: finds the selected source topics, checks or creates them on the target,
//! computes each new partition's resume position and adds it to the consumer.
//!
//! Assignment is incremental and per partition, so that the flow converges on a slow
//! or flaky broker: a partition whose start fails for a reason a retry may fix (a
//! metadata or offsets request timing out, a resume scan that got no answer, a target
//! topic that cannot be created yet) waits and is tried again at a later refresh, with
//! its own backoff, while the partitions already started keep replicating. A refresh
//! that cannot read the source's topics is tried again at the next one. Neither
//! restarts the flow: a restart would throw away what the other partitions achieved.
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::{Offset, TopicPartitionList};
use tokio::task::spawn_blocking;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::book::Book;
use super::pending::Position;
use super::{Clients, Flow};
use crate::discovery::{Listing, partition_count, selected_topics};
use crate::error::{SyncError, joined};
use crate::resume::checkpoint_metadata;
use crate::starts::Markers;

mod markers;
mod retry;
mod start;

pub(crate) use retry::Assignment;
use retry::{FIRST_RETRY, patient};
pub(crate) use start::Assigned;
use start::start_of;

impl Flow {
    /// Adds topics and partitions that appeared on the source since the last call, and
    /// partitions whose retry is due, and returns those it started. An error returned
    /// here stops the flow: a local client failure, or one no retry can fix.
    pub(crate) async fn refresh_assignment(
        &self,
        c: &Clients,
        assignment: &mut Assignment,
        stop: &CancellationToken,
        book: &Book,
    ) -> Result<Vec<Assigned>, SyncError> {
        let mut added = Vec::new();
        let s = self.spec.clone();
        // On the source's admin client, not the consumer: a broker that serves one
        // request per connection would queue it behind the consumer's fetches.
        let admin = c.creator.source.clone();
        let timeout = patient(s.limits.request_timeout, assignment.listing_failures);
        let topics = joined(
            "fetch source metadata",
            spawn_blocking(move || {
                selected_topics(admin.inner(), &s.source.id, |t| s.routes.reads(t), timeout)
            })
            .await,
        );
        let Listing {
            topics,
            unknown: unlisted,
        } = match topics {
            Ok(t) => {
                assignment.listing_failures = 0;
                t
            }
            Err(e) if e.is_retriable() && !stop.is_cancelled() => {
                assignment.listing_failures += 1;
                self.note_retry(&e);
                warn!(flow = %self.spec.name(), error = %e, "Cannot list the source's topics; trying again at the next refresh. The partitions already started carry on.");
                return Ok(added);
            }
            Err(e) => return Err(e),
        };
        // A topic deleted (or shrunk) while its partitions waited is not waited for; one
        // listed with an error (a leader election) is not taken for deleted.
        let selects = |t: &String, p: i32| topics.get(t).is_some_and(|c| (p as usize) < *c);
        assignment
            .waiting
            .retain(|(t, p), _| selects(t, *p) || unlisted.contains(t));
        if !unlisted.is_empty() {
            debug!(flow = %self.spec.name(), topics = ?unlisted, "The source lists these selected topics with an error; they start at a later refresh.");
        }
        self.let_go_of_deleted(c, assignment, &topics, &unlisted)?;
        // Every selected partition not started yet is waiting, from now on: the reader
        // runs beside this refresh, and the lag must not read as known meanwhile. A
        // topic listed with an error counts its waiting partitions, or at least one: its
        // lag is not known, and must not read as 0 (issue 10).
        let selected: usize = topics.values().sum();
        let not_started = |a: &Assignment| {
            let running = a.running.iter().filter(|(t, p)| selects(t, *p)).count();
            let unlisted: usize = unlisted
                .iter()
                .map(|t| a.waiting.keys().filter(|(w, _)| w == t).count().max(1))
                .sum();
            (selected.saturating_sub(running) + unlisted) as i64
        };
        self.metrics
            .partitions_waiting
            .store(not_started(assignment), Relaxed);
        // From now on the consumer's statistics say what the lag is (the partitions not
        // started count as unknown); before the first listing nothing is known, and
        // nothing must read as caught up.
        c.consumer.context().go_live();
        self.note_running();
        if !topics.is_empty() {
            self.load_markers(c, &mut assignment.markers).await;
        }
        for (topic, count) in topics.iter().map(|(t, c)| (t.clone(), *c)) {
            let now = Instant::now();
            // A partition with deliveries of an earlier run still unresolved starts once
            // they are (docs/delivery.md, "Every stop drains").
            let (due, unresolved): (Vec<i32>, Vec<i32>) = (0..count as i32)
                .filter(|&p| assignment.due(&topic, p, now))
                .partition(|&p| !self.leftovers.outstanding(&topic, p));
            let first: Vec<i32> = unresolved
                .iter()
                .copied()
                .filter(|&p| assignment.unresolved_reported.insert((topic.clone(), p)))
                .collect();
            if !first.is_empty() {
                warn!(flow = %self.spec.name(), %topic, partitions = ?first, "Deliveries of an earlier run to these partitions are still unanswered by the target: they start once it has answered.");
            }
            if due.is_empty() {
                continue;
            }
            if assignment.seen.insert(topic.clone())
                && let Some(parts) = self.spec.routes.split(&topic)
            {
                // A valid choice (regional copies of one topic name), but never a silent one.
                warn!(flow = %self.spec.name(), %topic, parts = ?parts, "The links that select this topic do not connect all the clusters that hold it: it is replicated within each part only.");
            }
            let timeout = patient(
                self.spec.limits.request_timeout,
                assignment.failures(&topic, &due),
            );
            if let Err(e) = self.ensure_target(c, &topic, count, timeout).await {
                self.retry_later(assignment, &topic, &due, e, stop)?;
                continue;
            }
            let mut ready = Vec::new();
            let markers = assignment.markers.known.clone();
            for (p, start) in self.starts(c, &topic, &due, markers, timeout, stop).await? {
                match start {
                    Ok(st) => ready.push(st),
                    Err(e) => self.retry_later(assignment, &topic, &[p], e, stop)?,
                }
            }
            for st in &ready {
                self.metrics
                    .resume_scanned_records
                    .fetch_add(st.scanned, Relaxed);
            }
            // Before the first record of a partition is written, its start marker is on
            // the target (starts.rs); a partition whose marker could not be written
            // does not start yet.
            if let Err((e, failed)) = self
                .write_markers(&mut assignment.markers, &topic, &ready)
                .await
            {
                self.retry_later(assignment, &topic, &failed, e, stop)?;
                ready.retain(|st| !failed.contains(&st.partition));
            }
            let mut checkpoint = TopicPartitionList::new();
            for st in ready.iter().filter(|st| st.commit_now) {
                if let Some(t) = st.target_offset {
                    let mut e = checkpoint.add_partition(&topic, st.partition);
                    e.set_offset(Offset::Offset(st.offset))
                        .map_err(|e| self.local("assign", e))?;
                    e.set_metadata(checkpoint_metadata(t, st.written, st.began));
                }
            }
            if checkpoint.count() > 0 {
                // A first start at "latest" is remembered, so a restart does not skip
                // what was produced in between; a checkpoint naming what the target lost
                // is replaced, so a restart does not count the loss again. Without that
                // commit those partitions do not start yet.
                // Off the tokio workers and bounded: a coordinator that does not answer
                // must neither block other flows nor a shutdown.
                let consumer = c.consumer.clone();
                let committed = tokio::time::timeout(
                    timeout,
                    spawn_blocking(move || {
                        consumer.commit(&checkpoint, rdkafka::consumer::CommitMode::Sync)
                    }),
                )
                .await;
                let failure = match committed {
                    Ok(Ok(Ok(()))) => None,
                    Ok(Ok(Err(e))) => Some(e),
                    Ok(Err(_)) | Err(_) => Some(rdkafka::error::KafkaError::ConsumerCommit(
                        rdkafka::types::RDKafkaErrorCode::OperationTimedOut,
                    )),
                };
                if let Some(e) = failure {
                    let e = SyncError::Kafka {
                        op: "commit initial checkpoint",
                        cluster: self.spec.source.id.clone(),
                        source: e,
                    };
                    let failed: Vec<i32> = ready
                        .iter()
                        .filter(|st| st.commit_now)
                        .map(|st| st.partition)
                        .collect();
                    self.retry_later(assignment, &topic, &failed, e, stop)?;
                    ready.retain(|st| !st.commit_now);
                }
            }
            if ready.is_empty() {
                continue;
            }
            // The acker learns what each checkpoint says before the partition is added,
            // so before any of its records.
            let name: Arc<str> = Arc::from(topic.as_str());
            let mut tpl = TopicPartitionList::new();
            for st in &ready {
                tpl.add_partition_offset(&topic, st.partition, Offset::Offset(st.offset))
                    .map_err(|e| self.local("assign", e))?;
                // Before the partition is added: the reader takes them at its first record.
                {
                    let mut marks = c.marks.lock().expect("run marks lock");
                    match &st.marks {
                        Some(m) => marks.insert((topic.clone(), st.partition), m.clone()),
                        None => marks.remove(&(topic.clone(), st.partition)),
                    };
                }
                // Committed once at the next tick even when no record arrives:
                // librdkafka computes a partition's lag from a commit made after its
                // assignment, so a quiet partition would otherwise read as unknown for
                // the whole run. It commits what the checkpoint said.
                let pos = Position {
                    next: st.offset,
                    target_offset: st.target_offset,
                    written: st.written,
                    began: st.began,
                    committed: false,
                };
                // Counted here, where the acker takes over the new start: it commits it.
                self.metrics
                    .target_lost_records
                    .fetch_add(st.resent, Relaxed);
                self.metrics.source_gap_records.fetch_add(st.gap, Relaxed);
                book.lock().part(&name, st.partition, Some(pos));
            }
            c.consumer
                .incremental_assign(&tpl)
                .map_err(|e| self.local("assign partitions", e))?;
            info!(flow = %self.spec.name(), %topic, partitions = ?ready.iter().map(|s| (s.partition, s.offset)).collect::<Vec<_>>(), "Replicating partitions from these source offsets.");
            for st in &ready {
                assignment.started(&topic, st.partition);
            }
            self.metrics
                .deleted_sources
                .lock()
                .expect("metrics lock")
                .remove(&topic);
            self.metrics
                .partitions
                .fetch_add(ready.len() as i64, Relaxed);
            added.extend(ready);
        }
        self.metrics
            .partitions_waiting
            .store(not_started(assignment), Relaxed);
        self.metrics.refreshes.fetch_add(1, Relaxed);
        Ok(added)
    }

    /// Stops reading the partitions of topics the source no longer lists at all: a
    /// deleted topic. The target keeps the topic and what it holds (Duplex never deletes
    /// a topic, docs/topic-configs.md); the gauge and the log name it. What was read of
    /// it is still acknowledged and checkpointed. A topic of that name created again is
    /// a new topic to this flow: it starts like any other, resuming from the target.
    fn let_go_of_deleted(
        &self,
        c: &Clients,
        assignment: &mut Assignment,
        topics: &crate::discovery::TopicMap,
        unlisted: &[String],
    ) -> Result<(), SyncError> {
        let gone: Vec<(String, i32)> = assignment
            .running
            .iter()
            .filter(|(t, _)| !topics.contains_key(t) && !unlisted.contains(t))
            .cloned()
            .collect();
        if gone.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for (t, p) in &gone {
            tpl.add_partition(t, *p);
            assignment.running.remove(&(t.clone(), *p));
        }
        c.consumer
            .incremental_unassign(&tpl)
            .map_err(|e| self.local("unassign partitions", e))?;
        self.metrics
            .partitions
            .fetch_sub(gone.len() as i64, Relaxed);
        let names: std::collections::BTreeSet<String> = gone.into_iter().map(|(t, _)| t).collect();
        warn!(flow = %self.spec.name(), topics = ?names, "These topics were deleted on the source: their replication stops. The target keeps them and what they hold; Duplex never deletes a topic.");
        self.metrics
            .deleted_sources
            .lock()
            .expect("metrics lock")
            .extend(names);
        Ok(())
    }

    /// Partitions of `topic` that could not start wait for a later refresh, when a
    /// retry may help; otherwise the error stops the flow.
    fn retry_later(
        &self,
        assignment: &mut Assignment,
        topic: &str,
        partitions: &[i32],
        e: SyncError,
        stop: &CancellationToken,
    ) -> Result<(), SyncError> {
        if !e.is_retriable() || stop.is_cancelled() {
            return Err(e);
        }
        let now = Instant::now();
        let mut wait = FIRST_RETRY;
        for &p in partitions {
            wait = assignment.wait(topic, p, now);
        }
        self.note_retry(&e);
        warn!(flow = %self.spec.name(), %topic, partitions = ?partitions, error = %e, retry_in = ?wait, "Cannot start these partitions yet; trying them again later. The others carry on.");
        Ok(())
    }

    fn note_retry(&self, e: &SyncError) {
        self.metrics.assignment_errors.fetch_add(1, Relaxed);
        *self.metrics.last_error.lock().expect("metrics lock") = Some(e.to_string());
    }

    fn local(&self, op: &'static str, e: rdkafka::error::KafkaError) -> SyncError {
        SyncError::Kafka {
            op,
            cluster: self.spec.source.id.clone(),
            source: e,
        }
    }

    /// Makes sure the target has `topic` with at least `count` partitions.
    async fn ensure_target(
        &self,
        c: &Clients,
        topic: &str,
        count: usize,
        timeout: Duration,
    ) -> Result<(), SyncError> {
        match self.target_partitions(c, topic, timeout).await? {
            Some(n) if n >= count => {
                if n > count {
                    warn!(flow = %self.spec.name(), %topic, target = n, source = count, "The target has more partitions than the source: its extra partitions receive nothing from this flow.");
                    self.metrics
                        .wider_targets
                        .lock()
                        .expect("metrics lock")
                        .insert(topic.to_string());
                }
                return Ok(());
            }
            Some(n) if !self.spec.limits.grow_target_partitions => {
                return Err(SyncError::TargetTopic {
                    cluster: self.spec.target.id.clone(),
                    topic: topic.to_string(),
                    reason: format!(
                        "it has {n} partitions and the source has {count}; Duplex keeps partition numbers, so add partitions on the target (limits.grow_target_partitions is false)"
                    ),
                });
            }
            Some(n) => {
                info!(flow = %self.spec.name(), %topic, from = n, to = count, "Adding partitions to the topic on the target.");
                c.creator.grow(topic, n, count).await?;
            }
            None => {
                info!(flow = %self.spec.name(), %topic, partitions = count, "Creating the topic on the target.");
                c.creator.create(topic, count, &self.spec.configs).await?;
            }
        }
        // Metadata can lag creation by a moment; wait until the target shows it.
        for _ in 0..50 {
            if self
                .target_partitions(c, topic, timeout)
                .await?
                .is_some_and(|n| n >= count)
            {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        Err(SyncError::TargetTopic {
            cluster: self.spec.target.id.clone(),
            topic: topic.to_string(),
            reason: format!(
                "created or grown, but it does not show {count} partitions in metadata after 5 s"
            ),
        })
    }

    async fn target_partitions(
        &self,
        c: &Clients,
        topic: &str,
        timeout: Duration,
    ) -> Result<Option<usize>, SyncError> {
        let (scanner, s, t) = (c.scanner.clone(), self.spec.clone(), topic.to_string());
        joined(
            "fetch target metadata",
            spawn_blocking(move || partition_count(&scanner, &s.target.id, &t, timeout)).await,
        )
    }

    async fn starts(
        &self,
        c: &Clients,
        topic: &str,
        partitions: &[i32],
        markers: Option<Arc<Markers>>,
        timeout: Duration,
        stop: &CancellationToken,
    ) -> Result<Vec<(i32, Result<Assigned, SyncError>)>, SyncError> {
        let partitions = partitions.to_vec();
        let stop = stop.clone();
        let (consumer, scanner, s) = (c.consumer.clone(), c.scanner.clone(), self.spec.clone());
        let topic = topic.to_string();
        joined(
            "compute resume positions",
            spawn_blocking(move || {
                let mut out = Vec::new();
                for p in partitions {
                    // Each partition costs requests that may wait out their timeouts; a
                    // stopped flow asks no more (its reader no longer waits for this).
                    if stop.is_cancelled() {
                        return Err(SyncError::Cancelled("compute resume positions"));
                    }
                    let start = start_of(
                        &consumer,
                        &scanner,
                        &s,
                        &topic,
                        p,
                        markers.as_deref(),
                        timeout,
                    );
                    out.push((p, start));
                }
                Ok(out)
            })
            .await,
        )
    }
}
