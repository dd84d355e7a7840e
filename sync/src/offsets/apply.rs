//! Group sync: commit a group's translated offsets on the target.

use serde::Serialize;

use super::group::{self, Member, Offsets};
use super::{OffsetsError, Request, Translation, translate};

/// How a sync may move a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncOptions {
    /// Commit a translated offset below the group's offset on the target.
    pub allow_rewind: bool,
    /// Ask the target whether the group has members (DescribeGroups) and refuse if it
    /// has. Off only for brokers that do not answer it (librdkafka's mock cluster).
    pub check_members: bool,
}

/// What a sync did with one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// The translated offset was committed.
    Committed,
    /// The group was already there.
    Unchanged,
    /// The translated offset is below the group's offset on the target; left as it is
    /// (`allow_rewind` commits it).
    KeptAhead,
    /// Not translated; nothing committed.
    Refused,
    /// The commit of this partition failed ([`GroupSync::error`]); it holds `before`.
    Failed,
}

/// One partition of a sync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Applied {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The group's offset on the target before the sync, if it had one.
    pub before: Option<i64>,
    /// What was done.
    pub action: Action,
}

/// A group synced from one cluster to another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSync {
    /// The translation it committed.
    pub translation: Translation,
    /// Members the group has on the target. When there are any, nothing was committed.
    pub members: Vec<Member>,
    /// Per translated partition, what was done (empty when the group has members).
    pub applied: Vec<Applied>,
    /// Why the commit failed, for the partitions marked [`Action::Failed`].
    pub error: Option<String>,
}

impl GroupSync {
    /// Whether the whole group was synced: no members, every partition translated and
    /// at its translated offset now.
    pub fn complete(&self) -> bool {
        self.members.is_empty()
            && self.error.is_none()
            && self
                .applied
                .iter()
                .all(|a| matches!(a.action, Action::Committed | Action::Unchanged))
    }
}

/// Translates the group's offsets and commits them on the target: only when the group
/// has no members there, never backwards unless allowed, every commit at once with
/// metadata naming the source and its committed offset's cluster.
pub fn sync_group(req: &Request<'_>, opts: SyncOptions) -> Result<GroupSync, OffsetsError> {
    let translation = translate(req)?;
    let to = &req.to.id;
    let b = group::client(req.to, req.group)?;
    if opts.check_members {
        let members = group::members(&b, to, req.group, req.timeout)?;
        if !members.is_empty() {
            return Ok(GroupSync {
                translation,
                members,
                applied: Vec::new(),
                error: None,
            });
        }
    }
    let keys: Vec<(String, i32)> = translation
        .partitions
        .iter()
        .map(|p| (p.topic.clone(), p.partition))
        .collect();
    let before = group::committed(&b, to, &keys, req.timeout)?;
    let mut commits = Offsets::new();
    let mut applied = Vec::new();
    for p in &translation.partitions {
        let key = (p.topic.clone(), p.partition);
        let now = before.get(&key).copied();
        let action = match &p.outcome {
            Err(_) => Action::Refused,
            Ok(t) if now == Some(t.offset) => Action::Unchanged,
            Ok(t) if now > Some(t.offset) && !opts.allow_rewind => Action::KeptAhead,
            Ok(t) => {
                commits.insert(key, t.offset);
                Action::Committed
            }
        };
        applied.push(Applied {
            topic: p.topic.clone(),
            partition: p.partition,
            before: now,
            action,
        });
    }
    let mut error = None;
    if !commits.is_empty() {
        let meta = format!("duplex/offsets from={}", req.from.id);
        if let Err(e) = group::commit(&b, to, &commits, &meta) {
            // A failed request may have committed some of its partitions: say, per
            // partition, what the group holds now.
            let now = group::committed(&b, to, &keys, req.timeout).ok();
            for a in &mut applied {
                let key = (a.topic.clone(), a.partition);
                if let (Action::Committed, Some(&want)) = (&a.action, commits.get(&key)) {
                    let held = now.as_ref().and_then(|n| n.get(&key).copied());
                    if held != Some(want) {
                        a.action = Action::Failed;
                    }
                }
            }
            error = Some(e.to_string());
        }
    }
    Ok(GroupSync {
        translation,
        members: Vec::new(),
        applied,
        error,
    })
}
