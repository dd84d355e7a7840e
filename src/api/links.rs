//! `TopologyService.AddLink`: a topology change applied while the mesh runs
//! (docs/topology-changes.md). The request is checked against the state, the engine
//! holds every flow and reads the cut, the command records `TopologyChanged` with the
//! cut, and the reconciler applies the prepared change in log order (service.rs).

use duplex_proto::v1 as pb;
use duplex_sync::engine::PreparedChange;
use regex::Regex;
use tonic::{Request, Response, Status};

use super::auth::operator;
use super::{Api, fingerprint, request_id, required};
use crate::state::config::link_spec;
use crate::state::events::{CutRecord, LinkRecord};
use crate::state::{Command, CommandError, Payload, State};

/// The longest topic pattern accepted (as the verifier's selection).
pub const MAX_PATTERN: usize = 4096;
/// The most patterns in one selection.
pub const MAX_PATTERNS: usize = 64;

/// Adds a link; see topology.proto.
pub async fn add_link(
    api: &Api,
    req: Request<pb::AddLinkRequest>,
) -> Result<Response<pb::ChangeResponse>, Status> {
    let actor = operator(&req, "AddLink")?;
    let r = req.get_ref();
    let link = link_record(r)?;
    let cmd = Command {
        method: "AddLink",
        actor,
        request_id: request_id(&r.request_id),
        fingerprint: fingerprint(r, |r| r.request_id.clear()),
        expected_revision: r.expected_revision,
        touches: vec![format!("link:{}", link.name)],
    };
    if let Some(out) = api.store.replayed(&cmd)? {
        return Ok(response(out));
    }
    // Checked before the flows are held, and again when the command is decided.
    let change = api.store.with_state(|s| decide(s, &link))?;
    if !change.is_empty() {
        let mut after = api.engine.spec();
        after.links.push(
            link_spec(&after, &link)
                .map_err(|e| Status::failed_precondition(format!("link {:?}: {e}", link.name)))?,
        );
        let prepared = api
            .engine
            .prepare_change(after)
            .await
            .map_err(super::error::topology_change)?;
        let cut = cut_records(&prepared);
        *api.pending_change.lock().expect("pending change lock") = Some(prepared);
        let out = api.store.execute(&cmd, |state| {
            let mut payloads = decide(state, &link)?;
            if let Some(Payload::TopologyChanged { cut: c, .. }) = payloads.first_mut() {
                *c = cut;
            }
            Ok(payloads)
        });
        // Applied by the reconciler when recorded; otherwise released here, with the
        // flows routing as before.
        drop(
            api.pending_change
                .lock()
                .expect("pending change lock")
                .take(),
        );
        return Ok(response(out?));
    }
    Ok(response(api.store.execute(&cmd, |s| decide(s, &link))?))
}

fn response(out: crate::state::Outcome) -> Response<pb::ChangeResponse> {
    Response::new(pb::ChangeResponse {
        events: out.events,
        revision: out.revision,
        replayed: out.replayed,
    })
}

/// The request as the log records a link, each field checked.
fn link_record(r: &pb::AddLinkRequest) -> Result<LinkRecord, Status> {
    let name = required("name", &r.name)?.to_string();
    let [a, b] = r.clusters.as_slice() else {
        return Err(super::error::invalid(
            "clusters",
            format!(
                "names {} clusters; a link has exactly two",
                r.clusters.len()
            ),
        ));
    };
    required("clusters[0]", a)?;
    required("clusters[1]", b)?;
    if a == b {
        return Err(super::error::invalid(
            "clusters",
            format!("names {a:?} twice; a link joins two distinct clusters"),
        ));
    }
    let topics = r.topics.clone().unwrap_or_default();
    if topics.include.is_empty() {
        return Err(super::error::invalid(
            "topics.include",
            "is empty; a link replicates the topics matching at least one pattern",
        ));
    }
    patterns("topics.include", &topics.include)?;
    patterns("topics.exclude", &topics.exclude)?;
    Ok(LinkRecord {
        name,
        clusters: [a.clone(), b.clone()],
        include: topics.include,
        exclude: topics.exclude,
    })
}

fn patterns(field: &str, patterns: &[String]) -> Result<(), Status> {
    if patterns.len() > MAX_PATTERNS {
        return Err(super::error::invalid(
            field,
            format!("{} patterns; at most {MAX_PATTERNS}", patterns.len()),
        ));
    }
    for (i, p) in patterns.iter().enumerate() {
        let field = format!("{field}[{i}]");
        if p.len() > MAX_PATTERN {
            return Err(super::error::invalid(
                &field,
                format!("{} bytes; at most {MAX_PATTERN}", p.len()),
            ));
        }
        if let Err(e) = Regex::new(p) {
            return Err(super::error::invalid(
                &field,
                format!("is not a regular expression: {e}"),
            ));
        }
    }
    Ok(())
}

/// The events adding `link` to `state`: none when it exists as asked, else one
/// `TopologyChanged` (its cut filled in by the caller).
fn decide(state: &State, link: &LinkRecord) -> Result<Vec<Payload>, CommandError> {
    let t = &state.topology;
    for c in &link.clusters {
        if !t.clusters.iter().any(|k| k.id == *c) {
            let known: Vec<&str> = t.clusters.iter().map(|k| k.id.as_str()).collect();
            return Err(CommandError::NotFound(format!(
                "no cluster {c:?} (the config file names {known:?}; a link joins two of them)"
            )));
        }
    }
    if let Some(l) = t.link(&link.name) {
        if l == link {
            return Ok(Vec::new());
        }
        return Err(CommandError::FailedPrecondition(format!(
            "link {:?} exists already, between {} and {}: choose another name",
            l.name, l.clusters[0], l.clusters[1]
        )));
    }
    let mut pair = link.clusters.clone();
    pair.sort();
    if let Some(l) = t.links.iter().find(|l| {
        let mut p = l.clusters.clone();
        p.sort();
        p == pair
    }) {
        return Err(CommandError::FailedPrecondition(format!(
            "clusters {} and {} are linked already, by link {:?}: a pair of clusters is linked once",
            pair[0], pair[1], l.name
        )));
    }
    let mut links = t.links.clone();
    links.push(link.clone());
    Ok(vec![Payload::TopologyChanged {
        links,
        changes: vec![format!(
            "link {} added ({} and {})",
            link.name, link.clusters[0], link.clusters[1]
        )],
        cut: Vec::new(),
    }])
}

/// The prepared change's cut as the log records it: per topic and cluster, the end of
/// each partition (every partition of a topic is named: the cut is read whole or not at
/// all).
fn cut_records(prepared: &PreparedChange) -> Vec<CutRecord> {
    let mut out: Vec<CutRecord> = Vec::new();
    for (topic, cluster, partition, end) in prepared.cut().entries() {
        let same = out
            .last()
            .is_some_and(|c| c.topic == topic && c.cluster == cluster);
        if !same {
            out.push(CutRecord {
                topic,
                cluster,
                ends: Vec::new(),
            });
        }
        let c = out.last_mut().expect("pushed above");
        // Entries come sorted by partition; a gap (never seen) would be a partition the
        // metadata did not list, recorded as -1 and read back as not named.
        while (c.ends.len() as i32) < partition {
            c.ends.push(-1);
        }
        c.ends.push(end);
    }
    out
}
