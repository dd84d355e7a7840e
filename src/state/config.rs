//! How the config file seeds and changes the state (docs/api.md, "The config file and
//! the log").
//!
//! At every start the file's topology (clusters by id and bootstrap servers, links by
//! name, clusters and topic patterns; client options and secrets left out) is compared
//! with the last one applied. The first start records it; a file that changed since is
//! applied as one `ConfigApplied` event listing each difference; an unchanged file
//! records nothing. The file always wins at start, and the log says what it changed.
//!
//! Links added, removed or given other topics through the API (`TopologyChanged`) stay
//! so across restarts while the file stays as it was applied: the engine runs the file's
//! clusters with the state's links (a file link's client settings, the topics the log
//! names) and the routing history since the file was applied ([`engine_plan`]). A file
//! changed since replaces them all, as any file change does.

use duplex_sync::routing::{Former, History, Settling, TopologyCut};
use duplex_sync::spec::{ClusterSpec, EngineSpec, LinkSpec, StartPosition, TopicSelection};
use regex::Regex;
use xxhash_rust::xxh3::xxh3_64;

use super::Store;
use super::events::{ClusterRecord, CutRecord, LinkRecord, Payload};
use super::fold::{State, Topology};
use super::log::LogError;
use crate::config::{Config, TopicPattern};

/// The topology a config file describes.
pub fn topology_of(config: &Config) -> Topology {
    let clusters: Vec<ClusterRecord> = config
        .clusters
        .iter()
        .map(|c| ClusterRecord {
            id: c.id.clone(),
            bootstrap_servers: c.bootstrap_servers.trim().to_string(),
            client: Default::default(),
        })
        .collect();
    let links: Vec<LinkRecord> = config
        .links
        .iter()
        .map(|l| LinkRecord {
            name: l.name(),
            clusters: [l.clusters[0].clone(), l.clusters[1].clone()],
            include: l
                .topics
                .include
                .iter()
                .map(|p| p.as_str().to_string())
                .collect(),
            exclude: l
                .topics
                .exclude
                .iter()
                .map(|p| p.as_str().to_string())
                .collect(),
        })
        .collect();
    let digest = format!(
        "{:016x}",
        xxh3_64(
            serde_json::to_string(&(&clusters, &links))
                .expect("records serialize")
                .as_bytes()
        )
    );
    Topology {
        digest,
        clusters,
        links,
    }
}

/// What changed from `old` to `new`, one line each.
pub fn changes(old: &Topology, new: &Topology) -> Vec<String> {
    let mut out = Vec::new();
    for c in &new.clusters {
        match old.clusters.iter().find(|o| o.id == c.id) {
            None => out.push(format!("cluster {} added", c.id)),
            Some(o) if o.bootstrap_servers != c.bootstrap_servers => out.push(format!(
                "cluster {} bootstrap servers changed from {:?} to {:?}",
                c.id, o.bootstrap_servers, c.bootstrap_servers
            )),
            Some(_) => {}
        }
    }
    for o in &old.clusters {
        if !new.clusters.iter().any(|c| c.id == o.id) {
            out.push(format!("cluster {} removed", o.id));
        }
    }
    for l in &new.links {
        match old.link(&l.name) {
            None => out.push(format!(
                "link {} added ({} and {})",
                l.name, l.clusters[0], l.clusters[1]
            )),
            Some(o) => {
                if o.clusters != l.clusters {
                    out.push(format!(
                        "link {} clusters changed from {:?} to {:?}",
                        l.name, o.clusters, l.clusters
                    ));
                }
                if o.include != l.include || o.exclude != l.exclude {
                    out.push(format!(
                        "link {} topics changed from include {:?} exclude {:?} to include {:?} exclude {:?}",
                        l.name, o.include, o.exclude, l.include, l.exclude
                    ));
                }
            }
        }
    }
    for o in &old.links {
        if new.link(&o.name).is_none() {
            out.push(format!("link {} removed", o.name));
        }
    }
    out
}

/// Records the start and, when the file's topology differs from the last applied, the
/// file's changes.
pub fn seed(store: &Store, config: &Config, file: &str) -> Result<(), LogError> {
    let new = topology_of(config);
    let old = store.state().topology;
    let mut payloads = vec![Payload::ServiceStarted {
        version: env!("CARGO_PKG_VERSION").to_string(),
        config_file: file.to_string(),
    }];
    if old.digest != new.digest {
        let draining = store.state().draining;
        if !draining.is_empty() {
            let names: Vec<&str> = draining.iter().map(|l| l.name.as_str()).collect();
            tracing::warn!(links = ?names, "The config file changed while removed links still drained: the file's topology replaces them, and their drain is not finished (docs/api.md, \"The config file and the log\").");
        }
        let changes = if old.digest.is_empty() {
            Vec::new()
        } else {
            changes(&old, &new)
        };
        payloads.push(Payload::ConfigApplied {
            digest: new.digest,
            clusters: new.clusters,
            links: new.links,
            changes,
        });
    }
    store.record(payloads).map(|_| ())
}

/// What the engine runs: the file's clusters and limits with the clusters added at
/// runtime, the state's links (the file's, and those added at runtime since the file was
/// applied), and the routing history
/// since then. An error names a recorded link the file's clusters cannot carry.
pub fn engine_plan(config: &Config, state: &State) -> Result<(EngineSpec, History), String> {
    let mut file = config.engine_spec();
    // The clusters added through the API since the file was applied (AddCluster).
    for c in &state.topology.clusters {
        if !file.clusters.iter().any(|f| f.id == c.id) {
            file.clusters.push(cluster_spec(c));
        }
    }
    let with = |links: &[LinkRecord]| -> Result<EngineSpec, String> {
        let mut spec = file.clone();
        spec.links = links
            .iter()
            .map(|l| match file.links.iter().find(|f| f.name == l.name) {
                // The file's settings, with the topics the log names (SetLinkTopics).
                Some(f) => Ok(LinkSpec {
                    topics: selection(l).map_err(|e| format!("link {:?}: {e}", l.name))?,
                    ..f.clone()
                }),
                None => link_spec(&file, l).map_err(|e| format!("link {:?}: {e}", l.name)),
            })
            .collect::<Result<_, _>>()?;
        Ok(spec)
    };
    let h = &state.history;
    let former = former(state)?;
    if h.changes.is_empty() {
        return Ok((
            file.clone(),
            History::new(duplex_sync::engine::routes(&file)).with_former(former),
        ));
    }
    let mut spec = with(&state.topology.links)?;
    spec.draining = with(&state.draining)?.links;
    let mut history = History::new(duplex_sync::engine::routes(&with(&h.first)?));
    for (cut, links) in &h.changes {
        history.change(
            topology_cut(cut),
            duplex_sync::engine::routes(&with(links)?),
        );
    }
    // Not settled before the stop: settled again from its cut.
    let settling = match state.settling {
        Some(_) => Settling::Deferring,
        None => Settling::Settled,
    };
    Ok((spec, history.with_settling(settling).with_former(former)))
}

/// The clusters the file removed, as routing keeps knowing them: each with the clusters
/// it was linked to and the topics of those links.
fn former(state: &State) -> Result<Vec<Former>, String> {
    state
        .former
        .iter()
        .map(|f| {
            let links = f
                .links
                .iter()
                .map(|l| {
                    let peer = if l.clusters[0] == f.id {
                        &l.clusters[1]
                    } else {
                        &l.clusters[0]
                    };
                    Ok((
                        peer.clone(),
                        selection(l).map_err(|e| format!("link {:?}: {e}", l.name))?,
                    ))
                })
                .collect::<Result<_, String>>()?;
            Ok(Former {
                id: f.id.clone(),
                links,
            })
        })
        .collect()
}

/// The engine's link for `record` in `spec`, whose clusters it joins. A link added at
/// runtime replicates from its change's cut on (a partition created since, from its
/// start) with the engine's default in-flight budget (`[limits] in_flight_bytes`), its
/// topic patterns anchored as the config file's are.
pub fn link_spec(spec: &EngineSpec, record: &LinkRecord) -> Result<LinkSpec, String> {
    let index = |id: &str| {
        spec.clusters
            .iter()
            .position(|c| c.id == id)
            .ok_or_else(|| format!("the config file has no cluster {id:?}"))
    };
    Ok(LinkSpec {
        name: record.name.clone(),
        clusters: [index(&record.clusters[0])?, index(&record.clusters[1])?],
        topics: selection(record)?,
        start: StartPosition::Earliest,
        in_flight_bytes: spec.limits.in_flight_bytes,
        topic_configs: Default::default(),
    })
}

/// The engine's cluster for a cluster the log records as added through the API.
pub fn cluster_spec(c: &ClusterRecord) -> ClusterSpec {
    let mut spec = ClusterSpec::new(c.id.clone(), c.bootstrap_servers.clone());
    spec.options = c.client.options.clone();
    spec.producer = c.client.producer.clone();
    spec.consumer = c.client.consumer.clone();
    spec
}

/// The topic selection `record` names, its patterns anchored as the config file's are.
pub fn selection(record: &LinkRecord) -> Result<TopicSelection, String> {
    let compile = |v: &[String]| -> Result<Vec<Regex>, String> {
        v.iter()
            .map(|p| TopicPattern::new(p).map(|p| p.regex().clone()))
            .collect()
    };
    Ok(TopicSelection {
        include: compile(&record.include)?,
        exclude: compile(&record.exclude)?,
    })
}

/// A recorded cut as the engine's (an end of -1: a partition the cut does not name).
pub fn topology_cut(records: &[CutRecord]) -> TopologyCut {
    let mut cut = TopologyCut::new();
    for r in records {
        for (p, &end) in r.ends.iter().enumerate() {
            if end >= 0 {
                cut.set(&r.topic, &r.cluster, p as i32, end);
            }
        }
    }
    cut
}
