//! Assignment: finds the selected source topics, checks or creates them on the target,
//! computes each new partition's resume position and adds it to the consumer.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;

use rdkafka::consumer::Consumer;
use rdkafka::{Offset, TopicPartitionList};
use tokio::task::spawn_blocking;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{Clients, Flow};
use crate::discovery::{partition_count, selected_topics};
use crate::error::{SyncError, joined};
use crate::resume::{self, checkpoint_metadata};
use crate::spec::StartPosition;

/// A partition added to the consumer: where it starts and what its checkpoint says.
pub(crate) struct Assigned {
    pub topic: String,
    pub partition: i32,
    /// Source offset read first.
    pub offset: i64,
    /// A target offset at or before the flow's last record there (the scan's hint).
    pub target_offset: Option<i64>,
    /// Source offset of the record at `target_offset`, when the flow wrote it.
    pub written: Option<i64>,
    /// Source offset where replication of the partition began, when known.
    pub began: Option<i64>,
    /// Never replicated before, or the target lost what the checkpoint names: its
    /// checkpoint is committed at once.
    commit_now: bool,
}

impl Flow {
    /// Adds topics and partitions that appeared on the source since the last call and
    /// returns them. `assigned`: topic → partitions already read.
    pub(crate) async fn refresh_assignment(
        &self,
        c: &Clients,
        assigned: &mut HashMap<String, usize>,
        stop: &CancellationToken,
    ) -> Result<Vec<Assigned>, SyncError> {
        let mut added = Vec::new();
        let s = self.spec.clone();
        let consumer = c.consumer.clone();
        let topics = joined(
            "fetch source metadata",
            spawn_blocking(move || {
                selected_topics(
                    &*consumer,
                    &s.source.id,
                    &s.topics,
                    s.limits.request_timeout,
                )
            })
            .await,
        )?;
        for (topic, count) in topics {
            let have = assigned.get(&topic).copied().unwrap_or(0);
            if count <= have {
                continue;
            }
            if have == 0
                && let Some(parts) = self.spec.routes.split(&topic)
            {
                // A valid choice (regional copies of one topic name), but never a silent one.
                warn!(flow = %self.spec.name(), %topic, parts = ?parts, "The links that select this topic do not connect all the clusters that hold it: it is replicated within each part only.");
            }
            self.ensure_target(c, &topic, count).await?;
            let starts = self.starts(c, &topic, have, count, stop).await?;
            let mut tpl = TopicPartitionList::new();
            let mut checkpoint = TopicPartitionList::new();
            for st in &starts {
                let err = |e| SyncError::Kafka {
                    op: "assign",
                    cluster: self.spec.source.id.clone(),
                    source: e,
                };
                tpl.add_partition_offset(&topic, st.partition, Offset::Offset(st.offset))
                    .map_err(err)?;
                if let (true, Some(t)) = (st.commit_now, st.target_offset) {
                    let mut e = checkpoint.add_partition(&topic, st.partition);
                    e.set_offset(Offset::Offset(st.offset)).map_err(err)?;
                    e.set_metadata(checkpoint_metadata(t, st.written, st.began));
                }
            }
            if checkpoint.count() > 0 {
                // A first start at "latest" is remembered, so a restart does not skip
                // what was produced in between; a checkpoint naming what the target lost
                // is replaced, so a restart does not count the loss again.
                c.consumer
                    .commit(&checkpoint, rdkafka::consumer::CommitMode::Sync)
                    .map_err(|e| SyncError::Kafka {
                        op: "commit initial checkpoint",
                        cluster: self.spec.source.id.clone(),
                        source: e,
                    })?;
            }
            c.consumer
                .incremental_assign(&tpl)
                .map_err(|e| SyncError::Kafka {
                    op: "assign partitions",
                    cluster: self.spec.source.id.clone(),
                    source: e,
                })?;
            info!(flow = %self.spec.name(), %topic, partitions = ?starts.iter().map(|s| (s.partition, s.offset)).collect::<Vec<_>>(), "Replicating partitions from these source offsets.");
            self.metrics
                .partitions
                .fetch_add((count - have) as i64, Relaxed);
            assigned.insert(topic, count);
            added.extend(starts);
        }
        self.metrics.refreshes.fetch_add(1, Relaxed);
        Ok(added)
    }

    /// Makes sure the target has `topic` with at least `count` partitions.
    async fn ensure_target(&self, c: &Clients, topic: &str, count: usize) -> Result<(), SyncError> {
        let target_count = self.target_partitions(c, topic).await?;
        match target_count {
            Some(n) if n >= count => return Ok(()),
            Some(n) => {
                return Err(SyncError::TargetTopic {
                    cluster: self.spec.target.id.clone(),
                    topic: topic.to_string(),
                    reason: format!(
                        "it has {n} partitions and the source has {count}; Duplex keeps partition numbers, so add partitions on the target"
                    ),
                });
            }
            None => {}
        }
        info!(flow = %self.spec.name(), %topic, partitions = count, "Creating the topic on the target.");
        c.creator.create(topic, count).await?;
        // Metadata can lag creation by a moment; wait until the target shows it.
        for _ in 0..50 {
            if self
                .target_partitions(c, topic)
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
            reason: "created, but it does not show in metadata with all partitions after 5 s"
                .to_string(),
        })
    }

    async fn target_partitions(
        &self,
        c: &Clients,
        topic: &str,
    ) -> Result<Option<usize>, SyncError> {
        let (scanner, s, t) = (c.scanner.clone(), self.spec.clone(), topic.to_string());
        joined(
            "fetch target metadata",
            spawn_blocking(move || {
                partition_count(&scanner, &s.target.id, &t, s.limits.request_timeout)
            })
            .await,
        )
    }

    /// Resume positions for partitions `from..to` of `topic`.
    async fn starts(
        &self,
        c: &Clients,
        topic: &str,
        from: usize,
        to: usize,
        stop: &CancellationToken,
    ) -> Result<Vec<Assigned>, SyncError> {
        let stop = stop.clone();
        let (consumer, scanner, s, metrics) = (
            c.consumer.clone(),
            c.scanner.clone(),
            self.spec.clone(),
            self.metrics.clone(),
        );
        let topic = topic.to_string();
        joined(
            "compute resume positions",
            spawn_blocking(move || {
                let timeout = s.limits.request_timeout;
                let src = s.source.id.as_str();
                let mut out = Vec::new();
                for p in from as i32..to as i32 {
                    // Each partition costs requests that may wait out their timeouts; a
                    // stopped flow asks no more (its reader no longer waits for this).
                    if stop.is_cancelled() {
                        return Err(SyncError::Cancelled("compute resume positions"));
                    }
                    let ck = resume::committed(&*consumer, src, &topic, p, timeout)?;
                    let hint = (ck.and_then(|c| c.target_offset), ck.and_then(|c| c.written));
                    let scan = resume::last_written(&scanner, &s.target.id, src.as_bytes(), &topic, p, hint, timeout)?;
                    let (low, high) = consumer
                        .fetch_watermarks(&topic, p, timeout)
                        .map_err(|e| SyncError::Kafka { op: "fetch watermarks", cluster: src.to_string(), source: e })?;
                    let target_high = || {
                        scanner
                            .fetch_watermarks(&topic, p, timeout)
                            .map(|(_, h)| h)
                            .map_err(|e| SyncError::Kafka { op: "fetch watermarks", cluster: s.target.id.clone(), source: e })
                    };
                    let start = match (scan, ck) {
                        (resume::LastWritten { found, target_lost: true }, Some(ck)) => {
                            // Truncated or recreated below the checkpoint: the committed
                            // floor would skip what the target lost. Resume after the last
                            // record it still holds, or where replication began.
                            let o = found.map(|f| f + 1).or(ck.began).unwrap_or(low);
                            let resent = (ck.source_next - o).max(0);
                            metrics.target_lost_records.fetch_add(resent as u64, Relaxed);
                            warn!(flow = %s.name(), %topic, partition = p, checkpoint = ck.source_next, checkpoint_target_offset = ?ck.target_offset, resume = o, "The target no longer holds the records this flow's checkpoint names (truncated or recreated): sending {resent} source offsets again, from what the target still holds.");
                            Assigned {
                                topic: topic.clone(),
                                partition: p,
                                offset: o,
                                target_offset: Some(target_high()?),
                                written: None,
                                began: ck.began,
                                commit_now: true,
                            }
                        }
                        (scan, ck) => {
                            let resumed = match (scan.found.map(|o| o + 1), ck.map(|c| c.source_next)) {
                                (Some(a), Some(b)) => Some(a.max(b)),
                                (a, b) => a.or(b),
                            };
                            match resumed {
                                Some(o) => Assigned {
                                    topic: topic.clone(),
                                    partition: p,
                                    offset: o,
                                    target_offset: ck.and_then(|c| c.target_offset),
                                    written: ck.and_then(|c| c.written),
                                    began: ck.and_then(|c| c.began),
                                    commit_now: false,
                                },
                                None => {
                                    let o = if s.start == StartPosition::Earliest { low } else { high };
                                    Assigned {
                                        topic: topic.clone(),
                                        partition: p,
                                        offset: o,
                                        target_offset: Some(target_high()?),
                                        written: None,
                                        began: Some(o),
                                        commit_now: true,
                                    }
                                }
                            }
                        }
                    };
                    let offset = start.offset;
                    if offset > high {
                        // Truncated or recreated: its offsets no longer mean what the
                        // target's provenance says they meant.
                        return Err(SyncError::SourceBehind {
                            flow: s.name(),
                            cluster: src.to_string(),
                            topic: topic.clone(),
                            partition: p,
                            resume: offset,
                            high,
                        });
                    }
                    if offset < low {
                        let lost = low - offset;
                        metrics.source_gap_records.fetch_add(lost as u64, Relaxed);
                        warn!(flow = %s.name(), %topic, partition = p, from = offset, to = low, "The source deleted {lost} records (retention) before they were replicated; resuming at its log start.");
                    }
                    out.push(Assigned { offset: offset.max(low), ..start });
                }
                Ok(out)
            })
            .await,
        )
    }
}
