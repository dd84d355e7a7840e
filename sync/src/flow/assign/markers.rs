//! A run's start markers (starts.rs): read from the target at the first refresh, written
//! before a partition's first record, and rewritten when a partition starts elsewhere
//! than its marker says.
//!
//! While the markers cannot be read, partitions start as before markers (a partition
//! without a checkpoint is scanned back in full) and are remembered: once the markers
//! can be read, each gets its marker from where the run stands on it, so that no
//! partition this run wrote to is left without one.
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use rdkafka::producer::FutureProducer;
use rdkafka::types::RDKafkaErrorCode;
use tokio::task::spawn_blocking;
use tracing::{debug, info, warn};

use super::super::{Clients, Flow};
use super::Assigned;
use crate::clients;
use crate::error::{SyncError, joined};
use crate::starts::{self, Marker, Markers};

/// What a run knows of its start markers.
#[derive(Default)]
pub(crate) struct RunMarkers {
    /// The markers, once read; `None` while they cannot be.
    pub(super) known: Option<Arc<Markers>>,
    /// Partitions started while they could not be read.
    unmarked: HashSet<(String, i32)>,
    /// Whether this run tried to create the topic already.
    tried_create: bool,
    /// Whether this run said already that they cannot be read.
    warned: bool,
    /// The producer that writes them, made at the run's first write.
    producer: Option<FutureProducer>,
}

impl Flow {
    /// Reads this flow's markers from its target unless read already this run; creates
    /// the topic (once a run) when it is missing. Then marks the partitions started while
    /// they could not be read.
    pub(super) async fn load_markers(&self, c: &Clients, m: &mut RunMarkers) {
        if m.known.is_none() {
            match self.read_markers(c, m).await {
                Ok(markers) => {
                    debug!(flow = %self.spec.name(), markers = markers.len(), "Start markers read.");
                    m.known = Some(Arc::new(markers));
                }
                Err(why) => {
                    self.cannot_use_markers(m, &why);
                    return;
                }
            }
        }
        if m.unmarked.is_empty() {
            return;
        }
        // Where the run stands now: the position is before anything not acknowledged,
        // and its target offset at or before what the run writes after it.
        let missing: Vec<(String, i32, Marker)> = {
            let book = c.book.lock();
            m.unmarked
                .iter()
                .filter_map(|(t, p)| {
                    let pos = book.position(t, *p)?;
                    let marker = Marker {
                        next: pos.next,
                        target_offset: pos.target_offset,
                        began: pos.began,
                    };
                    Some((t.clone(), *p, marker))
                })
                .collect()
        };
        match self.send_markers(m, &missing).await {
            Ok(()) => m.unmarked.clear(),
            Err(e) => {
                debug!(flow = %self.spec.name(), error = %e, "Marking the partitions started without markers failed; trying again at the next refresh.")
            }
        }
    }

    async fn read_markers(&self, c: &Clients, m: &mut RunMarkers) -> Result<Markers, String> {
        let s = self.spec.clone();
        let timeout = s.limits.request_timeout;
        let scanner = c.scanner.clone();
        let read = move || starts::read(&scanner, &s.source.id, &s.target.id, timeout);
        match joined("read start markers", spawn_blocking(read.clone()).await) {
            Ok(Some(markers)) => return Ok(markers),
            Ok(None) if !m.tried_create => {}
            Ok(None) => return Err(format!("{} does not exist", starts::TOPIC)),
            Err(e) => return Err(e.to_string()),
        }
        m.tried_create = true;
        let compact = BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]);
        c.creator
            .create_with(starts::TOPIC, 1, &compact)
            .await
            .map_err(|code| {
                format!(
                    "{} does not exist and cannot be created ({code})",
                    starts::TOPIC
                )
            })?;
        info!(flow = %self.spec.name(), topic = starts::TOPIC, cluster = %self.spec.target.id, "The topic of start markers is in place on the target: first starts need no scan of the target.");
        match joined("read start markers", spawn_blocking(read).await) {
            Ok(Some(markers)) => Ok(markers),
            Ok(None) => Err(format!(
                "{} is still missing after its creation",
                starts::TOPIC
            )),
            Err(e) => Err(e.to_string()),
        }
    }

    fn cannot_use_markers(&self, m: &mut RunMarkers, why: &str) {
        m.known = None;
        if !std::mem::replace(&mut m.warned, true) {
            warn!(flow = %self.spec.name(), cluster = %self.spec.target.id, error = %why, "Cannot use the start markers on the target: partitions without a checkpoint are scanned back in full, as before markers, and are marked once the markers can be used (docs/delivery.md, \"First start\"). Tried again at each refresh.");
        } else {
            debug!(flow = %self.spec.name(), error = %why, "The start markers still cannot be used.");
        }
    }

    /// Writes the markers of the partitions in `ready` whose marker is missing or says
    /// another start. Fails with the partitions that must wait. While the markers cannot
    /// be used, or when the target refuses them (no permission), the partitions start
    /// without one and are marked later.
    pub(super) async fn write_markers(
        &self,
        m: &mut RunMarkers,
        topic: &str,
        ready: &[Assigned],
    ) -> Result<(), (SyncError, Vec<i32>)> {
        let unmarked = |m: &mut RunMarkers| {
            m.unmarked
                .extend(ready.iter().map(|st| (topic.to_string(), st.partition)));
        };
        let Some(known) = m.known.clone() else {
            unmarked(m);
            return Ok(());
        };
        let missing: Vec<(String, i32, Marker)> = ready
            .iter()
            .filter_map(|st| {
                let marker = Marker {
                    next: st.offset,
                    target_offset: st.target_offset,
                    began: st.began,
                };
                (known.get(topic, st.partition) != Some(marker))
                    .then(|| (topic.to_string(), st.partition, marker))
            })
            .collect();
        match self.send_markers(m, &missing).await {
            Ok(()) => Ok(()),
            Err(e) if refused(&e) => {
                self.cannot_use_markers(m, &e.to_string());
                unmarked(m);
                Ok(())
            }
            Err(e) => Err((e, missing.iter().map(|(_, p, _)| *p).collect())),
        }
    }

    /// Writes `markers`, awaited, and notes them as known.
    async fn send_markers(
        &self,
        m: &mut RunMarkers,
        markers: &[(String, i32, Marker)],
    ) -> Result<(), SyncError> {
        if markers.is_empty() {
            return Ok(());
        }
        let s = &self.spec;
        let producer = match &m.producer {
            Some(p) => p.clone(),
            None => {
                let name = format!("duplex-{}-{}-starts", s.source.id, s.target.id);
                let p: FutureProducer = clients::marker_producer(&s.target, &name)
                    .create()
                    .map_err(|e| SyncError::Kafka {
                        op: "create start marker producer",
                        cluster: s.target.id.clone(),
                        source: e,
                    })?;
                m.producer.insert(p).clone()
            }
        };
        starts::write(
            &producer,
            &s.source.id,
            &s.target.id,
            markers,
            s.limits.request_timeout,
        )
        .await?;
        if let Some(known) = m.known.as_mut() {
            let known = Arc::make_mut(known);
            for (t, p, marker) in markers {
                known.insert(t, *p, *marker);
            }
        }
        Ok(())
    }
}

/// Whether the target refused a marker for a reason a retry cannot fix (permissions).
fn refused(e: &SyncError) -> bool {
    matches!(
        e,
        SyncError::Kafka { source, .. } if matches!(
            source.rdkafka_error_code(),
            Some(
                RDKafkaErrorCode::TopicAuthorizationFailed
                    | RDKafkaErrorCode::ClusterAuthorizationFailed
                    | RDKafkaErrorCode::PolicyViolation
            )
        )
    )
}
