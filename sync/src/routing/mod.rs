//! Routing: which flow forwards the records of which origin, per topic (DESIGN.md rule 2).
//!
//! Links may select different topics, so every topic has its own link graph: the links
//! that select it ([`Routes::topology`]). For every origin O the records of O in topic T
//! travel along one spanning tree of T's graph rooted at O: breadth-first from O, and the
//! parent of a cluster is its neighbour one step closer to O with the smallest cluster
//! id. Every node computes the same trees from the same config, so each cluster that T's
//! links connect to O receives each record exactly once. A topic whose links fall into
//! separate parts is replicated within each part ([`Routes::parts`] names them; the flow
//! and `check-config` report it). As a second guard a flow never writes to a cluster
//! already on the record's hop path.
//!
//! [`epochs`]: routing across topology changes, each taking effect at a cut of origin
//! positions; [`History`] holds them, and every flow of an engine reads one.

pub mod epochs;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, RwLock};

pub use epochs::{Cut, EpochRouter, History, Settling, TopologyCut};

use crate::provenance::Path;
use crate::spec::TopicSelection;

/// The link graph with each link's topic selection: the routing of every topic.
#[derive(Debug, Clone)]
pub struct Routes {
    ids: Vec<String>,
    links: Vec<([usize; 2], TopicSelection)>,
    former: Vec<Former>,
    /// Links whose flows copy no topic settings (`topic_configs.sync = false`).
    quiet: Vec<[usize; 2]>,
}

/// A cluster no longer in the mesh, with the links it last had: its records that are
/// still on their way keep its tree (docs/topology-changes.md, "Removing a cluster").
#[derive(Debug, Clone)]
pub struct Former {
    /// Its id, as its records' provenance names it.
    pub id: String,
    /// The clusters it was linked to (ids), each with the topics that link replicated.
    pub links: Vec<(String, TopicSelection)>,
}

impl Routes {
    /// `links`: pairs of indexes into `ids`, each with the topics that link replicates.
    pub fn new(ids: Vec<String>, links: Vec<([usize; 2], TopicSelection)>) -> Self {
        Routes {
            ids,
            links,
            former: Vec::new(),
            quiet: Vec::new(),
        }
    }

    /// The same routes, knowing clusters removed from the mesh: a record whose origin is
    /// one of them is routed by its tree over the links of now plus the links it had,
    /// rooted at it (no other origin's tree passes through it: it has no flows), so the
    /// copies it sent before its removal reach every cluster once. One in `ids` again is
    /// routed as any cluster.
    pub fn with_former(mut self, former: Vec<Former>) -> Self {
        self.former = former
            .into_iter()
            .filter(|f| !self.ids.contains(&f.id))
            .collect();
        self
    }

    /// The same routes, knowing the links (pairs of indexes) whose flows copy no topic
    /// settings: the settings' trees are built over the other links only.
    pub fn with_quiet_links(mut self, quiet: Vec<[usize; 2]>) -> Self {
        self.quiet = quiet;
        self
    }

    /// Cluster ids, by index.
    pub fn ids(&self) -> &[String] {
        &self.ids
    }

    /// The link graph of `topic`: every cluster, and the links that select the topic.
    pub fn topology(&self, topic: &str) -> Topology {
        let pairs: Vec<[usize; 2]> = self
            .links
            .iter()
            .filter(|(_, selection)| selection.selects(topic))
            .map(|(pair, _)| *pair)
            .collect();
        Topology::new(self.ids.clone(), &pairs)
    }

    /// The routing decision of flow `source → target` for the records of `topic`.
    pub fn router(&self, topic: &str, source: usize, target: usize) -> FlowRouter {
        let topology = self.topology(topic);
        let mut router = FlowRouter::new(&topology, source, target);
        for f in &self.former {
            // The topic's graph with the former cluster as one more node, joined by
            // its links that replicated the topic.
            let mut ids = self.ids.clone();
            ids.push(f.id.clone());
            let x = ids.len() - 1;
            let mut pairs = topology.pairs();
            pairs.extend(
                f.links
                    .iter()
                    .filter(|(_, sel)| sel.selects(topic))
                    .filter_map(|(peer, _)| Some([self.index(peer)?, x])),
            );
            let graph = Topology::new(ids, &pairs);
            if graph.distances(source)[x].is_some() {
                router.forwards.insert(
                    f.id.as_bytes().to_vec(),
                    graph.tree(x)[target] == Some(source),
                );
            }
        }
        router
    }

    /// The index of cluster `id`.
    pub fn index(&self, id: &str) -> Option<usize> {
        self.ids.iter().position(|i| i == id)
    }

    /// The topic selections of the links of cluster `id`.
    pub fn selections_of(&self, id: &str) -> Vec<&TopicSelection> {
        let Some(i) = self.index(id) else {
            return Vec::new();
        };
        self.links
            .iter()
            .filter(|(pair, _)| pair.contains(&i))
            .map(|(_, sel)| sel)
            .collect()
    }

    /// Whether a link between clusters `a` and `b` selects `topic`.
    pub fn carries(&self, topic: &str, a: &str, b: &str) -> bool {
        let (Some(a), Some(b)) = (self.index(a), self.index(b)) else {
            return false;
        };
        self.links
            .iter()
            .any(|(pair, sel)| (*pair == [a, b] || *pair == [b, a]) && sel.selects(topic))
    }

    /// The routing decision of flow `source → target` (cluster ids) for `topic`, or
    /// `None` when no link between the two selects it: the flow carries nothing of it.
    pub fn flow_router(&self, topic: &str, source: &str, target: &str) -> Option<FlowRouter> {
        if !self.carries(topic, source, target) {
            return None;
        }
        let (s, t) = (self.index(source)?, self.index(target)?);
        Some(self.router(topic, s, t))
    }

    /// The owner of `topic`'s settings when flow `source → target` copies them, `None`
    /// when it does not (docs/topic-configs.md). The owner is `preferred` when the
    /// topic's links connect it to `source`, else the first cluster (in config order)
    /// they connect to it. The flow copies when it is an edge of the owner's tree over
    /// the topic's links that copy settings (not quiet), so every cluster those links
    /// reach from the owner takes the settings from one neighbour, and no other does.
    pub fn config_owner(
        &self,
        topic: &str,
        source: &str,
        target: &str,
        preferred: Option<&str>,
    ) -> Option<String> {
        if !self.carries(topic, source, target) {
            return None;
        }
        let (s, t) = (self.index(source)?, self.index(target)?);
        let topology = self.topology(topic);
        let reach = topology.distances(s);
        let owner = preferred
            .and_then(|p| self.index(p))
            .filter(|&o| reach[o].is_some())
            .or_else(|| (0..self.ids.len()).find(|&o| reach[o].is_some()))?;
        let copying: Vec<[usize; 2]> = topology
            .pairs()
            .into_iter()
            .filter(|&[a, b]| !self.quiet.contains(&[a, b]) && !self.quiet.contains(&[b, a]))
            .collect();
        let tree = Topology::new(self.ids.clone(), &copying).tree(owner);
        (tree[t] == Some(s)).then(|| self.ids[owner].clone())
    }

    /// The clusters that hold `topic` by configuration (an end of a link that selects
    /// it), grouped by the parts its links connect, each part and the list sorted by id.
    /// Empty when no link selects the topic; more than one part means the topic is
    /// replicated within each part only: no link that selects it joins them.
    pub fn parts(&self, topic: &str) -> Vec<Vec<usize>> {
        let topology = self.topology(topic);
        let mut parts: Vec<Vec<usize>> = topology
            .components()
            .into_iter()
            .filter(|c| c.len() > 1)
            .map(|mut c| {
                c.sort_by(|&x, &y| self.ids[x].cmp(&self.ids[y]));
                c
            })
            .collect();
        parts.sort_by(|x, y| self.ids[x[0]].cmp(&self.ids[y[0]]));
        parts
    }
}

/// The routing history every flow of an engine reads: replaced as a whole when a change
/// is applied, which happens only while every flow is stopped (engine/change.rs), so
/// each run of a flow sees one history from its start to its end.
#[derive(Debug)]
pub struct LiveHistory(RwLock<Arc<History>>);

impl LiveHistory {
    /// Starts with `history`.
    pub fn new(history: History) -> Self {
        LiveHistory(RwLock::new(Arc::new(history)))
    }

    /// The history now.
    pub fn get(&self) -> Arc<History> {
        self.0.read().expect("routing history lock").clone()
    }

    /// Replaces it.
    pub fn set(&self, history: History) {
        *self.0.write().expect("routing history lock") = Arc::new(history);
    }
}

/// The routing seen from one flow, `source → target`: a router per topic, over every
/// change applied so far.
#[derive(Debug, Clone)]
pub struct FlowRoutes {
    history: Arc<LiveHistory>,
    source: String,
    target: String,
}

impl FlowRoutes {
    /// The routes of flow `source → target` (cluster ids).
    pub fn new(history: Arc<LiveHistory>, source: &str, target: &str) -> Self {
        FlowRoutes {
            history,
            source: source.to_string(),
            target: target.to_string(),
        }
    }

    /// The routing decision of this flow for the records of `topic`, across every change
    /// applied so far. Computed once per topic and run by the reader, not per record.
    pub fn router(&self, topic: &str) -> EpochRouter {
        self.history
            .get()
            .flow_router(topic, &self.source, &self.target)
    }

    /// Where this flow starts reading `topic` on its first start, when a change brought
    /// it (its link, or its link's selection of the topic) after the engine's first
    /// topology: the cut of that change, which names the source's own end offsets
    /// (docs/topology-changes.md, "Adding a cluster or a link"). `None`: the flow carried
    /// the topic from the first topology, and starts at the link's start position.
    pub fn start_cut(&self, topic: &str) -> Option<Cut> {
        self.history
            .get()
            .introduced(topic, &self.source, &self.target)
    }

    /// While the last change has not settled and this flow carries some origin's
    /// records of `topic` only since it: the change's cut of the topic (see
    /// [`History::rewinds`]). The flow then starts no later than its source's end at
    /// the cut and passes over what the target holds already.
    pub fn rewinds(&self, topic: &str) -> Option<Cut> {
        self.history
            .get()
            .rewinds(topic, &self.source, &self.target)
    }

    /// Whether this flow reads `topic` now: its link selects it, or selected it before a
    /// change that has not settled (the flow still carries what the routes before owe).
    pub fn reads(&self, topic: &str) -> bool {
        self.history.get().reads(topic, &self.source, &self.target)
    }

    /// The owner of `topic`'s settings when this flow copies them to its target (see
    /// [`Routes::config_owner`]), over the routes now.
    pub fn config_owner(&self, topic: &str, preferred: Option<&str>) -> Option<String> {
        self.history
            .get()
            .current()
            .config_owner(topic, &self.source, &self.target, preferred)
    }

    /// When the links that select `topic` fall into separate parts, the cluster ids of
    /// each part (the topic is replicated within each part only); `None` otherwise.
    pub fn split(&self, topic: &str) -> Option<Vec<Vec<String>>> {
        let history = self.history.get();
        let routes = history.current();
        let parts = routes.parts(topic);
        (parts.len() > 1).then(|| {
            parts
                .iter()
                .map(|p| p.iter().map(|&i| routes.ids[i].clone()).collect())
                .collect()
        })
    }
}

/// The link graph over cluster ids.
#[derive(Debug, Clone)]
pub struct Topology {
    ids: Vec<String>,
    adj: Vec<Vec<usize>>,
}

impl Topology {
    /// Builds the graph. `links` are pairs of indexes into `ids`; duplicates are merged.
    pub fn new(ids: Vec<String>, links: &[[usize; 2]]) -> Self {
        let mut adj = vec![Vec::new(); ids.len()];
        for &[a, b] in links {
            if a != b && !adj[a].contains(&b) {
                adj[a].push(b);
                adj[b].push(a);
            }
        }
        for n in &mut adj {
            n.sort_by(|&x, &y| ids[x].cmp(&ids[y]));
        }
        Topology { ids, adj }
    }

    /// Cluster ids, by index.
    pub fn ids(&self) -> &[String] {
        &self.ids
    }

    /// Its links, each once.
    fn pairs(&self) -> Vec<[usize; 2]> {
        let mut out = Vec::new();
        for (a, ns) in self.adj.iter().enumerate() {
            out.extend(ns.iter().filter(|&&b| a < b).map(|&b| [a, b]));
        }
        out
    }

    /// Groups of clusters that reach each other; one group means connected.
    pub fn components(&self) -> Vec<Vec<usize>> {
        let mut seen = vec![false; self.ids.len()];
        let mut out = Vec::new();
        for start in 0..self.ids.len() {
            if seen[start] {
                continue;
            }
            let dist = self.distances(start);
            let comp: Vec<usize> = (0..self.ids.len()).filter(|&i| dist[i].is_some()).collect();
            for &i in &comp {
                seen[i] = true;
            }
            out.push(comp);
        }
        out
    }

    /// When the links do not connect every cluster: the clusters the first one reaches,
    /// and those it does not (indexes, by group). `None` when connected.
    pub fn unreached(&self) -> Option<(Vec<usize>, Vec<usize>)> {
        let mut groups = self.components();
        if groups.len() <= 1 {
            return None;
        }
        let main = groups.remove(0);
        Some((main, groups.into_iter().flatten().collect()))
    }

    fn distances(&self, root: usize) -> Vec<Option<usize>> {
        let mut dist = vec![None; self.ids.len()];
        dist[root] = Some(0);
        let mut queue = VecDeque::from([root]);
        while let Some(u) = queue.pop_front() {
            let d = dist[u].expect("queued nodes have a distance");
            for &v in &self.adj[u] {
                if dist[v].is_none() {
                    dist[v] = Some(d + 1);
                    queue.push_back(v);
                }
            }
        }
        dist
    }

    /// Parent of every cluster in the spanning tree of `origin` (`None` for the origin
    /// and for clusters it cannot reach).
    pub fn tree(&self, origin: usize) -> Vec<Option<usize>> {
        let dist = self.distances(origin);
        (0..self.ids.len())
            .map(|v| {
                let d = dist[v]?;
                if d == 0 {
                    return None;
                }
                // adj is sorted by id, so the first closer neighbour has the smallest id.
                self.adj[v]
                    .iter()
                    .copied()
                    .find(|&u| dist[u] == Some(d - 1))
            })
            .collect()
    }

    /// Origins whose records flow `source → target` forwards, sorted by id.
    pub fn origins_forwarded(&self, source: usize, target: usize) -> Vec<usize> {
        let mut v: Vec<usize> = (0..self.ids.len())
            .filter(|&o| self.tree(o)[target] == Some(source))
            .collect();
        v.sort_by(|&x, &y| self.ids[x].cmp(&self.ids[y]));
        v
    }
}

/// What a flow does with one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Write it to the target.
    Forward,
    /// Another flow carries records of this origin to the target.
    NotInTree,
    /// The target is already on the record's hop path (the second guard).
    LoopStopped,
    /// Past the cut of a change that has not settled, and this flow carries the record's
    /// origin to the target only since that change: it waits until the target holds
    /// every record of the origin from before the cut (docs/topology-changes.md,
    /// "Order across a change"), and is read again then.
    Deferred,
    /// Read again after a change, and the target holds it already (its origin marks).
    AlreadyHeld,
}

/// The per-record routing decision of one flow, precomputed from the topology.
#[derive(Debug, Clone)]
pub struct FlowRouter {
    target: Vec<u8>,
    /// For every known cluster id: does this flow forward records of that origin?
    forwards: HashMap<Vec<u8>, bool>,
}

impl FlowRouter {
    /// The router of flow `source → target` over `topology` (the link graph of the
    /// topic it reads).
    ///
    /// Only origins the source reaches in this graph route. A record whose origin lies
    /// outside the source's part (a topic whose links fall into parts, reached by a copy
    /// made outside this deployment's routing) is treated like one from another
    /// deployment: its first hop inside the part counts as its origin, so it reaches the
    /// part exactly once and never strands there.
    pub fn new(topology: &Topology, source: usize, target: usize) -> Self {
        let reach = topology.distances(source);
        let forwards = (0..topology.ids.len())
            .filter(|&o| reach[o].is_some())
            .map(|o| {
                (
                    topology.ids[o].as_bytes().to_vec(),
                    topology.tree(o)[target] == Some(source),
                )
            })
            .collect();
        FlowRouter {
            target: topology.ids[target].as_bytes().to_vec(),
            forwards,
        }
    }

    /// Whether records of origin `cluster` route here (this topology reaches it).
    pub fn knows(&self, cluster: &[u8]) -> bool {
        self.forwards.contains_key(cluster)
    }

    /// Decides for a record read from the source with provenance `path` (`None`: the
    /// record was produced on the source, so the source is its origin).
    ///
    /// The origin is the first hop whose cluster this topology knows; hops from clusters
    /// outside it (another deployment) are carried along but do not route.
    #[inline]
    pub fn decide(&self, path: Option<&Path<'_>>) -> Decision {
        let Some(path) = path else {
            return Decision::Forward; // source → target is always an edge of the source's tree
        };
        let forward = path
            .hops()
            .find_map(|h| self.forwards.get(h.cluster).copied())
            .unwrap_or(true);
        if !forward {
            Decision::NotInTree
        } else if path.contains(&self.target) {
            Decision::LoopStopped
        } else {
            Decision::Forward
        }
    }
}

#[cfg(test)]
mod tests;
