//! `TopologyService.AddLink`, `RemoveLink` and `SetLinkTopics`: topology changes applied
//! while the mesh runs (docs/topology-changes.md). The request is checked against the state, the engine
//! holds every flow and reads the cut, the command records `TopologyChanged` with the
//! cut, and the reconciler applies the prepared change in log order (service.rs). A
//! removed link drains; the service records `LinkRemoved` when the engine retires it.

use duplex_proto::v1 as pb;
use duplex_sync::engine::PreparedChange;
use tonic::{Request, Response, Status};

use super::auth::operator;
use super::keyed::command;
use super::{Api, required};
use crate::config::TopicPattern;
use crate::state::config::{link_spec, selection};
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
    let cmd = command("AddLink", actor, r, vec![format!("link:{}", link.name)]);
    if let Some(out) = api.store.replayed(&cmd)? {
        return Ok(response(out));
    }
    // Checked before the flows are held, and again when the command is decided.
    let change = api.store.with_state(|s| decide(s, &link))?;
    if change.is_empty() {
        return Ok(response(api.store.execute(&cmd, |s| decide(s, &link))?));
    }
    let mut after = api.engine.spec();
    after.links.push(
        link_spec(&after, &link)
            .map_err(|e| Status::failed_precondition(format!("link {:?}: {e}", link.name)))?,
    );
    changed(api, &cmd, after, |s| decide(s, &link)).await
}

/// Removes a link; see topology.proto.
pub async fn remove_link(
    api: &Api,
    req: Request<pb::RemoveLinkRequest>,
) -> Result<Response<pb::ChangeResponse>, Status> {
    let actor = operator(&req, "RemoveLink")?;
    let r = req.get_ref();
    let name = required("name", &r.name)?.to_string();
    let cmd = command("RemoveLink", actor, r, vec![format!("link:{name}")]);
    if let Some(out) = api.store.replayed(&cmd)? {
        return Ok(response(out));
    }
    let change = api.store.with_state(|s| decide_removal(s, &name))?;
    if change.is_empty() {
        return Ok(response(
            api.store.execute(&cmd, |s| decide_removal(s, &name))?,
        ));
    }
    let mut after = api.engine.spec();
    after.links.retain(|l| l.name != name);
    changed(api, &cmd, after, |s| decide_removal(s, &name)).await
}

/// Changes a link's topics; see topology.proto.
pub async fn set_link_topics(
    api: &Api,
    req: Request<pb::SetLinkTopicsRequest>,
) -> Result<Response<pb::ChangeResponse>, Status> {
    let actor = operator(&req, "SetLinkTopics")?;
    let r = req.get_ref();
    let name = required("name", &r.name)?.to_string();
    let (include, exclude) = selection_of("topics", r.topics.as_ref())?;
    let cmd = command("SetLinkTopics", actor, r, vec![format!("link:{name}")]);
    if let Some(out) = api.store.replayed(&cmd)? {
        return Ok(response(out));
    }
    let decide = |s: &State| decide_topics(s, &name, &include, &exclude);
    let change = api.store.with_state(decide)?;
    if change.is_empty() {
        return Ok(response(api.store.execute(&cmd, decide)?));
    }
    let record = api.store.with_state(|s| s.topology.link(&name).cloned());
    let Some(mut record) = record else {
        return Err(Status::not_found(format!("no link {name:?}")));
    };
    record.include = include.clone();
    record.exclude = exclude.clone();
    let topics = selection(&record)
        .map_err(|e| Status::failed_precondition(format!("link {name:?}: {e}")))?;
    let mut after = api.engine.spec();
    match after.links.iter_mut().find(|l| l.name == name) {
        Some(l) => l.topics = topics,
        None => {
            return Err(Status::failed_precondition(format!(
                "link {name:?} is not running in the engine (it drains, or a restart is applying the config file)"
            )));
        }
    }
    changed(api, &cmd, after, decide).await
}

/// Holds the flows and reads the cut for `after`, records the command (decided again
/// under the log's lock, its `TopologyChanged` given the cut) and leaves the prepared
/// change to the reconciler, which applies it in log order; a command refused when it
/// is decided releases the flows with the routing they had.
pub(super) async fn changed(
    api: &Api,
    cmd: &Command,
    after: duplex_sync::spec::EngineSpec,
    decide: impl Fn(&State) -> Result<Vec<Payload>, CommandError>,
) -> Result<Response<pb::ChangeResponse>, Status> {
    let prepared = api
        .engine
        .prepare_change(after)
        .await
        .map_err(super::error::topology_change)?;
    let cut = cut_records(&prepared);
    *api.pending_change.lock().expect("pending change lock") = Some(prepared);
    let out = api.store.execute(cmd, |state| {
        let mut payloads = decide(state)?;
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
    Ok(response(out?))
}

pub(super) fn response(out: crate::state::Outcome) -> Response<pb::ChangeResponse> {
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
    let (include, exclude) = selection_of("topics", r.topics.as_ref())?;
    Ok(LinkRecord {
        name,
        clusters: [a.clone(), b.clone()],
        include,
        exclude,
    })
}

/// A request's topic selection (field `field`), checked: (include, exclude).
pub(super) fn selection_of(
    field: &str,
    topics: Option<&pb::TopicSelection>,
) -> Result<(Vec<String>, Vec<String>), Status> {
    let topics = topics.cloned().unwrap_or_default();
    if topics.include.is_empty() {
        return Err(super::error::invalid(
            &format!("{field}.include"),
            "is empty; a link replicates the topics matching at least one pattern",
        ));
    }
    patterns(&format!("{field}.include"), &topics.include)?;
    patterns(&format!("{field}.exclude"), &topics.exclude)?;
    Ok((topics.include, topics.exclude))
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
        // The config file's own parsing: a pattern the file would refuse is refused here.
        if let Err(e) = TopicPattern::new(p) {
            return Err(super::error::invalid(&field, e));
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
                "no cluster {c:?} (the clusters are {known:?}; a link joins two of them)"
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
    still_changing(state)?;
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
        clusters_added: Vec::new(),
    }])
}

/// The events removing link `name` from `state`: none when it drains already, else one
/// `TopologyChanged` (its cut filled in by the caller) whose links leave it out.
fn decide_removal(state: &State, name: &str) -> Result<Vec<Payload>, CommandError> {
    if state.draining_link(name).is_some() {
        return Ok(Vec::new());
    }
    let t = &state.topology;
    let Some(link) = t.link(name) else {
        let known: Vec<&str> = t.links.iter().map(|l| l.name.as_str()).collect();
        return Err(CommandError::NotFound(format!(
            "no link {name:?} (the links are {known:?})"
        )));
    };
    still_changing(state)?;
    let links: Vec<LinkRecord> = t.links.iter().filter(|l| l.name != name).cloned().collect();
    if let Some((lost, from)) = cut_off(state, &links) {
        let lost: Vec<String> = lost.iter().map(|c| format!("{c:?}")).collect();
        return Err(CommandError::FailedPrecondition(format!(
            "removing link {name:?} would cut cluster {} off from {from:?}: the links left would not connect every cluster",
            lost.join(", ")
        )));
    }
    Ok(vec![Payload::TopologyChanged {
        links,
        changes: vec![format!(
            "link {name} removed ({} and {}; it drains)",
            link.clusters[0], link.clusters[1]
        )],
        cut: Vec::new(),
        clusters_added: Vec::new(),
    }])
}

/// The events changing link `name`'s topics to `include` less `exclude`: none when it
/// selects them already, else one `TopologyChanged` (its cut filled in by the caller).
fn decide_topics(
    state: &State,
    name: &str,
    include: &[String],
    exclude: &[String],
) -> Result<Vec<Payload>, CommandError> {
    let t = &state.topology;
    let Some(link) = t.link(name) else {
        if state.draining_link(name).is_some() {
            return Err(CommandError::FailedPrecondition(format!(
                "link {name:?} was removed and drains; its topics no longer change"
            )));
        }
        let known: Vec<&str> = t.links.iter().map(|l| l.name.as_str()).collect();
        return Err(CommandError::NotFound(format!(
            "no link {name:?} (the links are {known:?})"
        )));
    };
    if link.include == include && link.exclude == exclude {
        return Ok(Vec::new());
    }
    still_changing(state)?;
    let changed = LinkRecord {
        include: include.to_vec(),
        exclude: exclude.to_vec(),
        ..link.clone()
    };
    let links: Vec<LinkRecord> = t
        .links
        .iter()
        .map(|l| {
            if l.name == name {
                changed.clone()
            } else {
                l.clone()
            }
        })
        .collect();
    Ok(vec![Payload::TopologyChanged {
        links,
        changes: vec![format!(
            "link {name} topics changed from include {:?} exclude {:?} to include {include:?} exclude {exclude:?}",
            link.include, link.exclude
        )],
        cut: Vec::new(),
        clusters_added: Vec::new(),
    }])
}

/// Refuses a topology change while a removed link drains or the last change has not
/// settled: decided under the log's lock, so no change can come between the end of
/// either and its event (`LinkRemoved`, `TopologySettled`), also across a restart (the
/// engine refuses too, but it ends them before the events are recorded).
pub(super) fn still_changing(state: &State) -> Result<(), CommandError> {
    if let Some(l) = state.draining.first() {
        return Err(CommandError::FailedPrecondition(format!(
            "link {:?} ({} and {}) was removed and still drains: no other topology change until it is removed (LinkRemoved)",
            l.name, l.clusters[0], l.clusters[1]
        )));
    }
    if let Some(seq) = state.settling {
        return Err(CommandError::FailedPrecondition(format!(
            "the last topology change (event {seq}) has not settled yet: records written before it still travel the routes before it, and order is being restored; no other topology change until TopologySettled (GetTopology's `settling` says what it waits for)"
        )));
    }
    Ok(())
}

/// The clusters `links` leave unconnected to the first cluster, and those it reaches
/// (ids), as the config file's validation says it.
fn cut_off(state: &State, links: &[LinkRecord]) -> Option<(Vec<String>, Vec<String>)> {
    let ids: Vec<String> = state
        .topology
        .clusters
        .iter()
        .map(|c| c.id.clone())
        .collect();
    let index = |id: &String| ids.iter().position(|i| i == id);
    let pairs: Vec<[usize; 2]> = links
        .iter()
        .filter_map(|l| Some([index(&l.clusters[0])?, index(&l.clusters[1])?]))
        .collect();
    let (main, lost) = duplex_sync::routing::Topology::new(ids.clone(), &pairs).unreached()?;
    let named = |v: Vec<usize>| v.into_iter().map(|i| ids[i].clone()).collect();
    Some((named(lost), named(main)))
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
