//! `duplex.v1.OffsetService`: a consumer group's offsets translated between clusters of
//! the running mesh, and group sync recorded in the log (docs/offsets.md).

use duplex_sync::offsets::index::Index;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use duplex_proto::v1 as pb;
use duplex_sync::SyncError;
use duplex_sync::offsets::{
    self, Action, GroupSync, OffsetsError, Partition, Refusal, Request as Ask, SyncOptions,
    Translation,
};
use duplex_sync::spec::ClusterSpec;
use regex::Regex;
use tonic::{Request, Response, Status};

use super::auth::{actor, operator};
use super::keyed::command;
use super::{Api, Ready, error::invalid, required};
use crate::state::Command;
use crate::state::events::{
    BehindRecord, GroupSyncRecord, MemberRecord, PartitionSyncRecord, Payload, RefusalRecord,
    SyncActionRecord,
};

/// The service.
#[derive(Debug)]
pub struct Offsets(pub Ready);

/// The most translations (each reads partitions with two clients) that run at once.
pub const MAX_READS: usize = 4;

/// Bounds what OffsetService runs at once: translations (a sync is one), and syncs one
/// at a time, so that a retried key never syncs twice.
#[derive(Debug)]
pub struct Gate {
    reads: Arc<Semaphore>,
    sync: Arc<tokio::sync::Mutex<()>>,
    /// The translation index, when `[offsets] index` is on.
    index: Option<Arc<Index>>,
}

impl Default for Gate {
    fn default() -> Self {
        Gate {
            reads: Arc::new(Semaphore::new(MAX_READS)),
            sync: Arc::default(),
            index: None,
        }
    }
}

impl Gate {
    /// The gate of a service whose translations read through `index`.
    pub fn with_index(index: Option<Index>) -> Self {
        Gate {
            index: index.map(Arc::new),
            ..Gate::default()
        }
    }

    fn read(&self) -> Result<OwnedSemaphorePermit, Status> {
        self.reads.clone().try_acquire_owned().map_err(|_| {
            Status::resource_exhausted(format!(
                "{MAX_READS} offset translations or syncs are running; try again when one \
                 has ended"
            ))
        })
    }
}

/// How long a cluster may take to answer one request of a translation.
const TIMEOUT: Duration = Duration::from_secs(30);
/// The longest topic pattern taken.
const MAX_PATTERN: usize = 300;

struct Checked {
    group: String,
    from: ClusterSpec,
    to: ClusterSpec,
    topics: Option<Regex>,
    index: Option<Arc<Index>>,
}

/// The request's group, clusters (of the running mesh, runtime ones included) and
/// pattern, or the field that is wrong.
fn check(api: &Api, group: &str, from: &str, to: &str, topics: &str) -> Result<Checked, Status> {
    let group = required("group", group)?.to_string();
    let (from_id, to_id) = (required("from", from)?, required("to", to)?);
    if from_id == to_id {
        return Err(invalid(
            "to",
            format!("is {to_id}, the same cluster as from"),
        ));
    }
    let spec = api.engine.spec();
    let cluster = |field: &str, id: &str| {
        spec.cluster(id).cloned().map_err(|known| {
            Status::not_found(format!(
                "{field}: cluster {id:?} is not in the mesh (it has {known})"
            ))
        })
    };
    let topics = match topics {
        "" => None,
        t if t.len() > MAX_PATTERN => {
            return Err(invalid(
                "topics",
                format!("is {} bytes long; at most {MAX_PATTERN}", t.len()),
            ));
        }
        t => Some(
            Regex::new(&format!("^(?:{t})$"))
                .map_err(|e| invalid("topics", format!("is not a pattern: {e}")))?,
        ),
    };
    Ok(Checked {
        group,
        from: cluster("from", from_id)?,
        to: cluster("to", to_id)?,
        topics,
        index: api.offsets.index.clone(),
    })
}

fn status(e: OffsetsError) -> Status {
    match e {
        OffsetsError::UnknownGroup { .. } => Status::not_found(e.to_string()),
        OffsetsError::Sync(SyncError::Provenance { .. }) => {
            Status::failed_precondition(e.to_string())
        }
        // Retrying does not help on a broker that cannot describe groups.
        OffsetsError::MembersUnknown { .. } => Status::failed_precondition(format!(
            "{e} (for a broker that never describes groups, such as librdkafka's mock: \
             skip_member_check)"
        )),
        OffsetsError::Sync(_) | OffsetsError::Topic { .. } => Status::unavailable(e.to_string()),
    }
}

/// Runs `f` (which reads the clusters) off the async workers.
async fn blocking<T: Send + 'static>(
    c: Checked,
    f: impl FnOnce(&Ask<'_>) -> Result<T, OffsetsError> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(move || {
        let ask = Ask {
            group: &c.group,
            from: &c.from,
            to: &c.to,
            topics: c.topics.as_ref(),
            timeout: TIMEOUT,
            index: c.index.as_deref(),
        };
        f(&ask)
    })
    .await
    .map_err(|e| Status::internal(format!("offset translation task: {e}")))?
    .map_err(status)
}

fn refusal_record(r: &Refusal) -> RefusalRecord {
    let kind = match r {
        Refusal::Behind { .. } => "behind",
        Refusal::BelowLogStart { .. } => "below_log_start",
        Refusal::PastEnd { .. } => "past_end",
        Refusal::NoPartition { .. } => "no_partition",
    };
    let behind = match r {
        Refusal::Behind { origins } => origins
            .iter()
            .map(|b| BehindRecord {
                origin: b.origin.clone(),
                origin_partition: b.origin_partition,
                consumed: b.consumed,
                held: b.held,
            })
            .collect(),
        _ => Vec::new(),
    };
    RefusalRecord {
        kind: kind.to_string(),
        reason: r.to_string(),
        behind,
    }
}

fn partition_record(
    p: &Partition,
    before: Option<i64>,
    action: SyncActionRecord,
) -> PartitionSyncRecord {
    let (offset, redelivered, refusal) = match &p.outcome {
        Ok(t) => (Some(t.offset), t.redelivered, None),
        Err(r) => (None, 0, Some(refusal_record(r))),
    };
    PartitionSyncRecord {
        topic: p.topic.clone(),
        partition: p.partition,
        committed: p.committed,
        offset,
        redelivered,
        refusal,
        before,
        action,
    }
}

/// A sync as the log records it.
pub fn sync_record(s: &GroupSync) -> GroupSyncRecord {
    let t = &s.translation;
    let partitions = if s.members.is_empty() {
        s.applied
            .iter()
            .zip(&t.partitions)
            .map(|(a, p)| {
                let action = match a.action {
                    Action::Committed => SyncActionRecord::Committed,
                    Action::Unchanged => SyncActionRecord::Unchanged,
                    Action::KeptAhead => SyncActionRecord::KeptAhead,
                    Action::Refused => SyncActionRecord::Refused,
                    Action::Failed => SyncActionRecord::Failed,
                };
                partition_record(p, a.before, action)
            })
            .collect()
    } else {
        t.partitions
            .iter()
            .map(|p| partition_record(p, None, SyncActionRecord::Skipped))
            .collect()
    };
    GroupSyncRecord {
        group: t.group.clone(),
        from: t.from.clone(),
        to: t.to.clone(),
        members: s
            .members
            .iter()
            .map(|m| MemberRecord {
                id: m.id.clone(),
                client_id: m.client_id.clone(),
                host: m.host.clone(),
            })
            .collect(),
        partitions,
        error: s.error.clone(),
    }
}

fn partition_pb(p: &PartitionSyncRecord) -> pb::PartitionTranslation {
    let refusal = p.refusal.as_ref();
    pb::PartitionTranslation {
        topic: p.topic.clone(),
        partition: p.partition,
        committed: p.committed,
        translated: p.offset.is_some(),
        offset: p.offset.unwrap_or_default(),
        redelivered: p.redelivered,
        refusal: refusal.map(|r| r.kind.clone()).unwrap_or_default(),
        reason: refusal.map(|r| r.reason.clone()).unwrap_or_default(),
        behind: refusal
            .map(|r| {
                r.behind
                    .iter()
                    .map(|b| pb::BehindOrigin {
                        origin: b.origin.clone(),
                        origin_partition: b.origin_partition,
                        consumed: b.consumed,
                        held: b.held,
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

pub fn translation_pb(t: &Translation) -> pb::OffsetTranslation {
    pb::OffsetTranslation {
        group: t.group.clone(),
        from: t.from.clone(),
        to: t.to.clone(),
        partitions: t
            .partitions
            .iter()
            .map(|p| partition_pb(&partition_record(p, None, SyncActionRecord::Skipped)))
            .collect(),
        complete: t.complete(),
    }
}

/// A recorded sync as the API shows it; `sequence` is its event's.
pub fn sync_pb(r: &GroupSyncRecord, sequence: u64) -> pb::GroupOffsetsSync {
    pb::GroupOffsetsSync {
        group: r.group.clone(),
        from: r.from.clone(),
        to: r.to.clone(),
        members: r
            .members
            .iter()
            .map(|m| pb::GroupMember {
                id: m.id.clone(),
                client_id: m.client_id.clone(),
                host: m.host.clone(),
            })
            .collect(),
        partitions: r
            .partitions
            .iter()
            .map(|p| pb::PartitionSync {
                translation: Some(partition_pb(p)),
                before: p.before,
                action: match p.action {
                    SyncActionRecord::Committed => pb::SyncAction::Committed,
                    SyncActionRecord::Unchanged => pb::SyncAction::Unchanged,
                    SyncActionRecord::KeptAhead => pb::SyncAction::KeptAhead,
                    SyncActionRecord::Refused => pb::SyncAction::Refused,
                    SyncActionRecord::Skipped => pb::SyncAction::Skipped,
                    SyncActionRecord::Failed => pb::SyncAction::Failed,
                } as i32,
            })
            .collect(),
        synced: r.synced(),
        sequence,
        error: r.error.clone().unwrap_or_default(),
        replayed: false,
    }
}

impl GroupSyncRecord {
    /// Whether the sync did anything worth a record: committed or failed to commit a
    /// partition, or found the group's members.
    fn did_something(&self) -> bool {
        !self.members.is_empty()
            || self.error.is_some()
            || self.partitions.iter().any(|p| {
                matches!(
                    p.action,
                    SyncActionRecord::Committed | SyncActionRecord::Failed
                )
            })
    }
}

/// The sync an event recorded, by sequence number.
fn recorded(api: &Api, seq: u64) -> Result<pb::GroupOffsetsSync, Status> {
    let events = api.store.read(seq, 1)?;
    match events.first().map(|e| &e.payload) {
        Some(Payload::GroupOffsetsSynced { sync }) => Ok(pb::GroupOffsetsSync {
            replayed: true,
            ..sync_pb(sync, seq)
        }),
        _ => Err(Status::internal(format!(
            "event {seq} does not record a group sync"
        ))),
    }
}

/// Runs a sync and records it, as one task: a client that goes away (or a deadline)
/// does not stop it between the commit and its record.
async fn sync_and_record(
    api: Arc<Api>,
    cmd: Command,
    c: Checked,
    opts: SyncOptions,
    permit: OwnedSemaphorePermit,
) -> Result<pb::GroupOffsetsSync, Status> {
    let _one_at_a_time = api.offsets.sync.clone().lock_owned().await;
    let _permit = permit;
    // Asked again under the lock: a call with the same key may have just recorded.
    if let Some(out) = api.store.replayed(&cmd)? {
        let seq = out.events.first().copied();
        return match seq {
            Some(seq) => recorded(&api, seq),
            None => Err(Status::failed_precondition(
                "this request_id was used for a sync that committed nothing; use a new key",
            )),
        };
    }
    let done = blocking(c, move |ask| offsets::sync_group(ask, opts)).await?;
    let record = sync_record(&done);
    if !record.did_something() {
        return Ok(sync_pb(&record, 0));
    }
    let out = api
        .store
        .execute(&cmd, |_| {
            Ok(vec![Payload::GroupOffsetsSynced {
                sync: record.clone(),
            }])
        })
        .inspect_err(|e| {
            tracing::error!(
                error = %e,
                sync = ?record,
                "A group sync committed offsets on the target but could not be recorded in the event log."
            );
        })
        .map_err(|e| {
            Status::internal(format!(
                "the sync ran (its commits on {} stand: see the service's log) but the event \
                 log could not record it: {e}",
                record.to
            ))
        })?;
    let seq = out.events.first().copied().unwrap_or_default();
    Ok(sync_pb(&record, seq))
}

#[tonic::async_trait]
impl pb::offset_service_server::OffsetService for Offsets {
    async fn translate_offsets(
        &self,
        req: Request<pb::TranslateOffsetsRequest>,
    ) -> Result<Response<pb::OffsetTranslation>, Status> {
        actor(&req)?;
        let api = self.0.get()?;
        let r = req.get_ref();
        let c = check(api, &r.group, &r.from, &r.to, &r.topics)?;
        let _permit = api.offsets.read()?;
        let t = blocking(c, |ask| offsets::translate(ask)).await?;
        Ok(Response::new(translation_pb(&t)))
    }

    async fn sync_group_offsets(
        &self,
        req: Request<pb::SyncGroupOffsetsRequest>,
    ) -> Result<Response<pb::GroupOffsetsSync>, Status> {
        let actor = operator(&req, "SyncGroupOffsets")?;
        let api = self.0.get()?.clone();
        let r = req.get_ref();
        let (group, to) = (required("group", &r.group)?, required("to", &r.to)?);
        let cmd = command(
            "SyncGroupOffsets",
            actor,
            r,
            vec![format!("group:{to}/{group}")],
        );
        // A retry answers what was recorded, even if a cluster has left the mesh since.
        if let Some(out) = api.store.replayed(&cmd)?
            && let Some(&seq) = out.events.first()
        {
            return Ok(Response::new(recorded(&api, seq)?));
        }
        let c = check(&api, &r.group, &r.from, &r.to, &r.topics)?;
        let permit = api.offsets.read()?;
        let opts = SyncOptions {
            allow_rewind: r.allow_rewind,
            check_members: !r.skip_member_check,
        };
        let task = tokio::spawn(sync_and_record(api, cmd, c, opts, permit));
        let answer = task
            .await
            .map_err(|e| Status::internal(format!("group sync task: {e}")))??;
        Ok(Response::new(answer))
    }
}
