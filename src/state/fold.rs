//! The fold: the service's state is what the log's events add up to, applied in order.
//!
//! Rules (docs/api.md, "Fold rules"): `ConfigApplied` replaces the clusters and links
//! (remembering each cluster it drops, with its links, as a former cluster routing keeps
//! knowing),
//! forgets pauses of flows that no longer exist, forgets draining links and starts a
//! new routing history; `TopologyChanged` replaces the links, adds its cut to the
//! history and makes each link it removes draining; `LinkRemoved` ends a link's drain
//! and forgets its flows' pauses; `FlowPaused` and `FlowResumed` set
//! and clear a flow's pause; `FlowStateChanged` keeps the last observed state of a flow;
//! `VerificationStarted` adds a parity run under its sequence number,
//! `VerificationCancelRequested` and `VerificationFinished` (the first of each counts)
//! mark it; `ServiceStarted` changes nothing. Every event moves the revision.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::events::{ClusterRecord, CutRecord, Event, LinkRecord, Payload, VerificationOutcome};

/// The clusters and links: those of the last `ConfigApplied`, with every
/// `TopologyChanged` since.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Topology {
    /// Digest of the config file's topology, as last applied.
    pub digest: String,
    /// Clusters.
    pub clusters: Vec<ClusterRecord>,
    /// Links.
    pub links: Vec<LinkRecord>,
}

impl Topology {
    /// The link with this name.
    pub fn link(&self, name: &str) -> Option<&LinkRecord> {
        self.links.iter().find(|l| l.name == name)
    }

    /// The link a flow `a->b` belongs to.
    pub fn link_of_flow(&self, flow: &str) -> Option<&LinkRecord> {
        self.links
            .iter()
            .find(|l| flows_of(l).iter().any(|f| f == flow))
    }
}

/// A link's two flows: `c0->c1`, then `c1->c0`.
pub fn flows_of(l: &LinkRecord) -> [String; 2] {
    let [a, b] = &l.clusters;
    [format!("{a}->{b}"), format!("{b}->{a}")]
}

/// A flow's last observed state, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// The state's name.
    pub state: String,
    /// Its error.
    pub error: Option<String>,
    /// When it was recorded.
    pub time_ms: i64,
}

/// The fold of the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    /// The last sequence number folded in.
    pub revision: u64,
    /// The topology, once the config was applied.
    pub topology: Topology,
    /// Flows paused by operators.
    pub paused: BTreeSet<String>,
    /// Each flow's last recorded state.
    pub observed: BTreeMap<String, Observed>,
    /// Parity runs by id (the sequence number of their `VerificationStarted`).
    pub verifications: BTreeMap<u64, Verification>,
    /// The routing history since the last `ConfigApplied`: its links, then each
    /// runtime change's cut and the links after it.
    pub history: RoutingHistory,
    /// Links removed at runtime whose flows still drain (until `LinkRemoved`).
    pub draining: Vec<LinkRecord>,
    /// The sequence number of the last `TopologyChanged` while it has not settled
    /// (until `TopologySettled`): no other change is accepted meanwhile.
    pub settling: Option<u64>,
    /// Clusters the config file removed, each with the links it had then: routing keeps
    /// their ids known, so their records still on their way keep their tree
    /// (docs/topology-changes.md, "Removing a cluster"). One added again leaves the list.
    pub former: Vec<FormerCluster>,
    /// For each object a command changed, the sequence number of the last such event.
    touched: HashMap<String, u64>,
}

/// A cluster no longer in the mesh, with the links (and their topics) it last had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormerCluster {
    /// Its id.
    pub id: String,
    /// Its links when it was removed (running or draining).
    pub links: Vec<LinkRecord>,
}

/// The routing history as the log records it (the engine's `History`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoutingHistory {
    /// The links of the last `ConfigApplied`.
    pub first: Vec<LinkRecord>,
    /// Each change since, in order: its cut and the links after it.
    pub changes: Vec<(Vec<CutRecord>, Vec<LinkRecord>)>,
}

/// A parity run, as the log says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// Its id.
    pub id: u64,
    /// The clusters compared, the source first.
    pub between: Vec<String>,
    /// The topic selection.
    pub topics: String,
    /// Where its report is written.
    pub report_dir: String,
    /// Who started it.
    pub actor: String,
    /// When, Unix milliseconds.
    pub started_ms: i64,
    /// Who asked it to stop, if anyone did.
    pub cancel_requested: Option<String>,
    /// How it ended, once it has.
    pub finished: Option<Finished>,
}

/// How and when a parity run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// The outcome.
    pub outcome: VerificationOutcome,
    /// The counts of a verdict.
    pub totals: Option<duplex_verifier::report::Counts>,
    /// The error or the reason for a cancel.
    pub error: Option<String>,
    /// When, Unix milliseconds.
    pub time_ms: i64,
}

impl State {
    /// Notes the clusters of the topology now that `clusters` leaves out as former
    /// clusters, with their links; a former one in `clusters` is in the mesh again.
    fn remember_removed(&mut self, clusters: &[ClusterRecord]) {
        let kept = |id: &str| clusters.iter().any(|c| c.id == id);
        for c in &self.topology.clusters {
            if kept(&c.id) {
                continue;
            }
            let links = self
                .topology
                .links
                .iter()
                .chain(&self.draining)
                .filter(|l| l.clusters.contains(&c.id))
                .cloned()
                .collect();
            self.former.retain(|f| f.id != c.id);
            self.former.push(FormerCluster {
                id: c.id.clone(),
                links,
            });
        }
        self.former.retain(|f| !kept(&f.id));
    }

    /// Folds one event in.
    pub fn apply(&mut self, e: &Event) {
        self.revision = e.seq;
        for object in e.payload.touches() {
            self.touched.insert(object, e.seq);
        }
        match &e.payload {
            // What a sync committed lives on the target cluster; the log says who did it.
            Payload::ServiceStarted { .. } | Payload::GroupOffsetsSynced { .. } => {}
            Payload::ConfigApplied {
                digest,
                clusters,
                links,
                ..
            } => {
                self.remember_removed(clusters);
                self.topology = Topology {
                    digest: digest.clone(),
                    clusters: clusters.clone(),
                    links: links.clone(),
                };
                self.history = RoutingHistory {
                    first: links.clone(),
                    changes: Vec::new(),
                };
                self.draining.clear();
                self.settling = None;
                self.forget_flows_but_of(links);
            }
            Payload::TopologyChanged {
                links,
                cut,
                clusters_added,
                ..
            } => {
                self.topology
                    .clusters
                    .extend(clusters_added.iter().cloned());
                let removed = self
                    .topology
                    .links
                    .iter()
                    .filter(|l| !links.iter().any(|n| n.name == l.name));
                self.draining.extend(removed.cloned());
                self.settling = Some(e.seq);
                self.topology.links = links.clone();
                self.history.changes.push((cut.clone(), links.clone()));
            }
            Payload::LinkRemoved { link } => {
                self.draining.retain(|l| l.name != *link);
                let mut kept = self.topology.links.clone();
                kept.extend(self.draining.iter().cloned());
                self.forget_flows_but_of(&kept);
            }
            Payload::TopologySettled { change } => {
                if self.settling == Some(*change) {
                    self.settling = None;
                }
            }
            Payload::FlowPaused { flow, .. } => {
                self.paused.insert(flow.clone());
            }
            Payload::FlowResumed { flow, .. } => {
                self.paused.remove(flow);
            }
            Payload::VerificationStarted {
                between,
                topics,
                report_dir,
            } => {
                self.verifications.insert(
                    e.seq,
                    Verification {
                        id: e.seq,
                        between: between.clone(),
                        topics: topics.clone(),
                        report_dir: report_dir.clone(),
                        actor: e.actor.clone(),
                        started_ms: e.time_ms,
                        cancel_requested: None,
                        finished: None,
                    },
                );
            }
            Payload::VerificationCancelRequested { verification } => {
                if let Some(v) = self.verifications.get_mut(verification) {
                    v.cancel_requested.get_or_insert_with(|| e.actor.clone());
                }
            }
            Payload::VerificationFinished {
                verification,
                outcome,
                totals,
                error,
            } => {
                if let Some(v) = self.verifications.get_mut(verification) {
                    v.finished.get_or_insert(Finished {
                        outcome: *outcome,
                        totals: *totals,
                        error: error.clone(),
                        time_ms: e.time_ms,
                    });
                }
            }
            Payload::FlowStateChanged { flow, state, error } => {
                self.observed.insert(
                    flow.clone(),
                    Observed {
                        state: state.clone(),
                        error: error.clone(),
                        time_ms: e.time_ms,
                    },
                );
            }
        }
    }

    /// Forgets the pauses and observed states of flows that are not `links`' flows.
    fn forget_flows_but_of(&mut self, links: &[LinkRecord]) {
        let flows: BTreeSet<String> = links.iter().flat_map(flows_of).collect();
        self.paused.retain(|f| flows.contains(f));
        self.observed.retain(|f, _| flows.contains(f));
    }

    /// The link with this name, kept or draining.
    pub fn link(&self, name: &str) -> Option<&LinkRecord> {
        self.topology
            .link(name)
            .or_else(|| self.draining_link(name))
    }

    /// The link, kept or draining, a flow `a->b` belongs to.
    pub fn link_of_flow(&self, flow: &str) -> Option<&LinkRecord> {
        self.topology.link_of_flow(flow).or_else(|| {
            self.draining
                .iter()
                .find(|l| flows_of(l).iter().any(|f| f == flow))
        })
    }

    /// A link that is removed and still drains.
    pub fn draining_link(&self, name: &str) -> Option<&LinkRecord> {
        self.draining.iter().find(|l| l.name == name)
    }

    /// The first of `objects` that an event after `revision` changed, with that event's
    /// sequence number.
    pub fn changed_since(&self, objects: &[String], revision: u64) -> Option<(String, u64)> {
        if let Some(&seq) = self.touched.get("*").filter(|&&s| s > revision) {
            return Some(("the topology".into(), seq));
        }
        objects.iter().find_map(|o| {
            self.touched
                .get(o)
                .filter(|&&s| s > revision)
                .map(|&s| (o.clone(), s))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(a: &str, b: &str) -> LinkRecord {
        LinkRecord {
            name: format!("{a}-{b}"),
            clusters: [a.into(), b.into()],
            include: vec![".*".into()],
            exclude: Vec::new(),
        }
    }

    fn event(seq: u64, payload: Payload) -> Event {
        Event {
            seq,
            time_ms: 0,
            actor: "test".into(),
            request_id: None,
            v: 1,
            payload,
        }
    }

    #[test]
    fn a_removed_link_drains_until_link_removed_and_a_config_forgets_it() {
        let triangle = vec![link("a", "b"), link("b", "c"), link("a", "c")];
        let mut s = State::default();
        s.apply(&event(
            1,
            Payload::ConfigApplied {
                digest: "d".into(),
                clusters: Vec::new(),
                links: triangle.clone(),
                changes: Vec::new(),
            },
        ));
        s.apply(&event(
            2,
            Payload::FlowPaused {
                flow: "a->b".into(),
                link: "a-b".into(),
            },
        ));
        let chain = triangle[1..].to_vec();
        s.apply(&event(
            3,
            Payload::TopologyChanged {
                links: chain.clone(),
                changes: Vec::new(),
                cut: Vec::new(),
                clusters_added: Vec::new(),
            },
        ));
        assert_eq!(s.topology.links, chain);
        assert_eq!(s.draining, [triangle[0].clone()]);
        assert_eq!(s.link_of_flow("b->a").map(|l| l.name.as_str()), Some("a-b"));
        assert!(s.paused.contains("a->b"), "a draining flow stays paused");
        s.apply(&event(4, Payload::LinkRemoved { link: "a-b".into() }));
        assert!(s.draining.is_empty() && s.link("a-b").is_none());
        assert!(s.paused.is_empty(), "the retired flow's pause is forgotten");
        // A removal not drained when the file changes: the file's links are all there is.
        s.apply(&event(
            5,
            Payload::TopologyChanged {
                links: vec![triangle[2].clone()],
                changes: Vec::new(),
                cut: Vec::new(),
                clusters_added: Vec::new(),
            },
        ));
        assert_eq!(s.draining.len(), 1);
        s.apply(&event(
            6,
            Payload::ConfigApplied {
                digest: "e".into(),
                clusters: Vec::new(),
                links: triangle.clone(),
                changes: Vec::new(),
            },
        ));
        assert!(s.draining.is_empty());
    }
}
