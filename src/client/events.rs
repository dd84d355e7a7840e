//! `duplex events [--from N] [--follow] [--type T,...]`: the event log, one line per event.

use std::process::ExitCode;

use duplex_proto::v1 as pb;
use duplex_proto::v1::event::Payload as P;
use futures::StreamExt;

use super::{ApiArgs, status_error};

/// Prints events from `from` (only those of `types`, if any); with `follow`, keeps
/// printing new ones until interrupted.
pub async fn events(
    api: &ApiArgs,
    from: u64,
    follow: bool,
    types: &[String],
) -> anyhow::Result<ExitCode> {
    let mut c = api.connect().await?;
    if follow {
        let mut stream = watch_types(&mut c, from, types).await?;
        while let Some(e) = stream.next().await {
            println!("{}", line(&e.map_err(|s| status_error("WatchEvents", s))?));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut next = from;
    loop {
        let page = c
            .events
            .list_events(pb::ListEventsRequest {
                from_sequence: next,
                page_size: 1000,
                types: types.to_vec(),
            })
            .await
            .map_err(|s| status_error("ListEvents", s))?
            .into_inner();
        for e in &page.events {
            println!("{}", line(e));
        }
        // With types a page can be short, even empty, while later events match: the log
        // is read to the revision the page saw.
        if page.next_sequence > page.revision {
            return Ok(ExitCode::SUCCESS);
        }
        if page.next_sequence == next {
            eprintln!(
                "ListEvents answered from {next} without moving on (revision {}); stopping",
                page.revision
            );
            return Ok(ExitCode::SUCCESS);
        }
        next = page.next_sequence;
    }
}

/// The events from `from` on, as they are recorded (WatchEvents).
pub async fn watch(
    c: &mut super::Clients,
    from: u64,
) -> anyhow::Result<tonic::Streaming<pb::Event>> {
    watch_types(c, from, &[]).await
}

/// The events of `types` (every event, if empty) from `from` on, as they are recorded.
pub async fn watch_types(
    c: &mut super::Clients,
    from: u64,
    types: &[String],
) -> anyhow::Result<tonic::Streaming<pb::Event>> {
    Ok(c.events
        .watch_events(pb::WatchEventsRequest {
            from_sequence: from,
            types: types.to_vec(),
        })
        .await
        .map_err(|s| status_error("WatchEvents", s))?
        .into_inner())
}

/// One event as a line: `#seq time actor Type details`.
pub fn line(e: &pb::Event) -> String {
    let time = e
        .time
        .map(|t| {
            humantime::format_rfc3339_millis(
                std::time::SystemTime::try_from(t).unwrap_or(std::time::UNIX_EPOCH),
            )
            .to_string()
        })
        .unwrap_or_default();
    let details = match &e.payload {
        Some(P::ServiceStarted(s)) => format!("version {} config {}", s.version, s.config_file),
        Some(P::ConfigApplied(c)) => {
            if c.changes.is_empty() {
                format!(
                    "{} clusters, {} links (first start)",
                    c.clusters.len(),
                    c.links.len()
                )
            } else {
                c.changes.join("; ")
            }
        }
        Some(P::TopologyChanged(t)) => format!(
            "{} (cut over {} topic partitions)",
            t.changes.join("; "),
            t.cut.iter().map(|c| c.ends.len()).sum::<usize>()
        ),
        Some(P::LinkRemoved(l)) => format!("link {} drained and retired", l.link),
        Some(P::TopologySettled(s)) => format!(
            "topology change #{} settled: drained, and every origin's order restored",
            s.change
        ),
        Some(P::FlowPaused(f)) => format!("flow {} (link {})", f.flow, f.link),
        Some(P::FlowResumed(f)) => format!("flow {} (link {})", f.flow, f.link),
        Some(P::FlowStateChanged(f)) => {
            let state = super::state_name(f.state);
            if f.error.is_empty() {
                format!("flow {} {state}", f.flow)
            } else {
                format!("flow {} {state}: {}", f.flow, f.error)
            }
        }
        Some(P::VerificationStarted(v)) => format!(
            "verifications/{} between {} topics {} report {}",
            e.sequence,
            v.between.join(","),
            v.topics,
            v.report_dir
        ),
        Some(P::VerificationCancelRequested(v)) => {
            format!("verifications/{}", v.verification)
        }
        Some(P::VerificationFinished(v)) => {
            let state = pb::VerificationState::try_from(v.state)
                .map(|s| {
                    s.as_str_name()
                        .trim_start_matches("VERIFICATION_STATE_")
                        .to_lowercase()
                })
                .unwrap_or_else(|_| format!("state {}", v.state));
            let mut s = format!("verifications/{} {state}", v.verification);
            if let Some(t) = &v.totals {
                s += &format!(
                    ": {} matched, {} missing, {} extra, {} altered, {} duplicated, {} reordered",
                    t.matched, t.missing, t.extra, t.altered, t.duplicated, t.reordered
                );
            }
            if !v.error.is_empty() {
                s += &format!(": {}", v.error);
            }
            s
        }
        Some(P::GroupOffsetsSynced(g)) => g.sync.as_ref().map(sync_line).unwrap_or_default(),
        None => String::new(),
    };
    let key = if e.request_id.is_empty() {
        String::new()
    } else {
        format!(" [request {}]", e.request_id)
    };
    format!(
        "#{} {time} {} {} {details}{key}",
        e.sequence, e.actor, e.r#type
    )
}

/// A group sync in one line: `group G a -> b: 3 committed, 1 refused` or its members.
fn sync_line(s: &pb::GroupOffsetsSync) -> String {
    let head = format!("group {} {} -> {}", s.group, s.from, s.to);
    if !s.members.is_empty() {
        let names: Vec<&str> = s.members.iter().map(|m| m.client_id.as_str()).collect();
        return format!(
            "{head}: refused, {} active member(s) there ({}); nothing committed",
            names.len(),
            names.join(", ")
        );
    }
    let count = |a: pb::SyncAction| s.partitions.iter().filter(|p| p.action == a as i32).count();
    let mut line = format!(
        "{head}: {} committed, {} already there, {} left ahead, {} refused",
        count(pb::SyncAction::Committed),
        count(pb::SyncAction::Unchanged),
        count(pb::SyncAction::KeptAhead),
        count(pb::SyncAction::Refused)
    );
    if !s.error.is_empty() {
        line += &format!(", {} failed: {}", count(pb::SyncAction::Failed), s.error);
    }
    line
}
