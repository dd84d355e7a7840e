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

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::provenance::Path;
use crate::spec::TopicSelection;

/// The link graph with each link's topic selection: the routing of every topic.
#[derive(Debug, Clone)]
pub struct Routes {
    ids: Vec<String>,
    links: Vec<([usize; 2], TopicSelection)>,
}

impl Routes {
    /// `links`: pairs of indexes into `ids`, each with the topics that link replicates.
    pub fn new(ids: Vec<String>, links: Vec<([usize; 2], TopicSelection)>) -> Self {
        Routes { ids, links }
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
        FlowRouter::new(&self.topology(topic), source, target)
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

/// The routing table seen from one flow, `source → target`: a router per topic.
#[derive(Debug, Clone)]
pub struct FlowRoutes {
    routes: Arc<Routes>,
    source: usize,
    target: usize,
}

impl FlowRoutes {
    /// The routes of flow `source → target` (indexes into the cluster ids).
    pub fn new(routes: Arc<Routes>, source: usize, target: usize) -> Self {
        FlowRoutes {
            routes,
            source,
            target,
        }
    }

    /// The routing decision of this flow for the records of `topic`. Computed once per
    /// topic by the reader, not per record.
    pub fn router(&self, topic: &str) -> FlowRouter {
        self.routes.router(topic, self.source, self.target)
    }

    /// When the links that select `topic` fall into separate parts, the cluster ids of
    /// each part (the topic is replicated within each part only); `None` otherwise.
    pub fn split(&self, topic: &str) -> Option<Vec<Vec<String>>> {
        let parts = self.routes.parts(topic);
        (parts.len() > 1).then(|| {
            parts
                .iter()
                .map(|p| p.iter().map(|&i| self.routes.ids[i].clone()).collect())
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
mod tests {
    use super::*;
    use crate::provenance::{Hop, Path, encode_origin};
    use proptest::prelude::*;

    fn topo(ids: &[&str], links: &[[usize; 2]]) -> Topology {
        Topology::new(ids.iter().map(|s| s.to_string()).collect(), links)
    }

    #[test]
    fn two_clusters_never_send_back() {
        let t = topo(&["a", "b"], &[[0, 1]]);
        assert_eq!(t.origins_forwarded(0, 1), vec![0]);
        assert_eq!(t.origins_forwarded(1, 0), vec![1]);
        let ab = FlowRouter::new(&t, 0, 1);
        let mut v = Vec::new();
        encode_origin(
            Hop {
                cluster: b"b",
                partition: 0,
                offset: 5,
            },
            &mut v,
        )
        .unwrap();
        assert_eq!(
            ab.decide(Some(&Path::decode(&v).unwrap())),
            Decision::NotInTree
        );
        assert_eq!(ab.decide(None), Decision::Forward);
    }

    #[test]
    fn triangle_ties_break_by_id() {
        // a-b, b-c, a-c: origin a reaches b and c directly; nothing via b→c or c→b.
        let t = topo(&["a", "b", "c"], &[[0, 1], [1, 2], [0, 2]]);
        assert_eq!(t.origins_forwarded(1, 2), vec![1]);
        // square a-b-d-c-a: d is two steps from a, via b or c; b has the smaller id.
        let sq = topo(&["a", "b", "c", "d"], &[[0, 1], [1, 3], [3, 2], [2, 0]]);
        assert_eq!(sq.tree(0)[3], Some(1));
        assert_eq!(sq.origins_forwarded(1, 3), vec![0, 1]);
        assert_eq!(sq.origins_forwarded(2, 3), vec![2]);
    }

    #[test]
    fn chain_relays_through_the_middle() {
        let t = topo(&["a", "b", "c"], &[[0, 1], [1, 2]]);
        assert_eq!(t.origins_forwarded(1, 2), vec![0, 1]);
        assert_eq!(t.origins_forwarded(1, 0), vec![1, 2]);
        assert_eq!(t.components().len(), 1);
        assert_eq!(topo(&["a", "b", "c"], &[[0, 1]]).components().len(), 2);
    }

    #[test]
    fn unknown_origin_routes_by_first_known_hop() {
        let t = topo(&["a", "b", "c"], &[[0, 1], [1, 2]]);
        let mut v = Vec::new();
        encode_origin(
            Hop {
                cluster: b"elsewhere",
                partition: 0,
                offset: 1,
            },
            &mut v,
        )
        .unwrap();
        let p = Path::decode(&v).unwrap();
        // Read on a with a foreign origin: a is treated as its origin.
        assert_eq!(
            FlowRouter::new(&t, 0, 1).decide(Some(&p)),
            Decision::Forward
        );
        let mut w = Vec::new();
        p.extend_into(
            Hop {
                cluster: b"a",
                partition: 0,
                offset: 9,
            },
            &mut w,
        )
        .unwrap();
        let p2 = Path::decode(&w).unwrap();
        assert_eq!(
            FlowRouter::new(&t, 1, 2).decide(Some(&p2)),
            Decision::Forward
        );
        assert_eq!(
            FlowRouter::new(&t, 1, 0).decide(Some(&p2)),
            Decision::NotInTree
        );
    }

    #[test]
    fn hop_guard_stops_a_record_already_on_the_target() {
        // Two nodes whose configs disagree: the guard still stops the loop.
        let t = topo(&["a", "b", "c"], &[[0, 1], [1, 2]]);
        let mut v = Vec::new();
        encode_origin(
            Hop {
                cluster: b"zz",
                partition: 0,
                offset: 1,
            },
            &mut v,
        )
        .unwrap();
        let mut w = Vec::new();
        Path::decode(&v)
            .unwrap()
            .extend_into(
                Hop {
                    cluster: b"c",
                    partition: 0,
                    offset: 2,
                },
                &mut w,
            )
            .unwrap();
        // Origin c (first known hop); flow b→c is not in c's tree: not forwarded.
        assert_eq!(
            FlowRouter::new(&t, 1, 2).decide(Some(&Path::decode(&w).unwrap())),
            Decision::NotInTree
        );
        let mut x = Vec::new();
        encode_origin(
            Hop {
                cluster: b"a",
                partition: 0,
                offset: 1,
            },
            &mut x,
        )
        .unwrap();
        let mut y = Vec::new();
        Path::decode(&x)
            .unwrap()
            .extend_into(
                Hop {
                    cluster: b"c",
                    partition: 0,
                    offset: 2,
                },
                &mut y,
            )
            .unwrap();
        // Origin a, b→c is in a's tree, but c is on the path already.
        assert_eq!(
            FlowRouter::new(&t, 1, 2).decide(Some(&Path::decode(&y).unwrap())),
            Decision::LoopStopped
        );
    }

    /// Random connected graph: a random spanning tree plus random extra edges.
    fn connected_graph() -> impl Strategy<Value = (usize, Vec<[usize; 2]>, usize)> {
        (2usize..=8)
            .prop_flat_map(|n| {
                let parents = proptest::collection::vec(any::<prop::sample::Index>(), n - 1);
                let extra = proptest::collection::vec((0..n, 0..n), 0..(n * 2));
                (Just(n), parents, extra, 0..n)
            })
            .prop_map(|(n, parents, extra, origin)| {
                let mut links: Vec<[usize; 2]> = parents
                    .iter()
                    .enumerate()
                    .map(|(i, ix)| [i + 1, ix.index(i + 1)])
                    .collect();
                links.extend(
                    extra
                        .into_iter()
                        .filter(|(a, b)| a != b)
                        .map(|(a, b)| [a, b]),
                );
                (n, links, origin)
            })
    }

    /// Carries one record of `topic` produced on `origin` through every flow whose link
    /// selects the topic, each deciding with the engine's router, and returns how many
    /// copies each cluster ends with. Fails on a loop-guard stop or a runaway.
    fn simulate(routes: &Routes, topic: &str, origin: usize) -> Result<Vec<u32>, TestCaseError> {
        let t = routes.topology(topic);
        let ids = routes.ids();
        let mut received = vec![0u32; ids.len()];
        received[origin] = 1;
        // (cluster holding a copy, its provenance or None when it is the origin copy)
        let mut queue: VecDeque<(usize, Option<Vec<u8>>)> = VecDeque::from([(origin, None)]);
        let mut steps = 0;
        while let Some((at, path)) = queue.pop_front() {
            for &next in &t.adj[at] {
                steps += 1;
                prop_assert!(steps < 10_000, "propagation does not end");
                let decoded = path.as_deref().map(|p| Path::decode(p).unwrap());
                match routes.router(topic, at, next).decide(decoded.as_ref()) {
                    Decision::Forward => {
                        let hop = Hop {
                            cluster: ids[at].as_bytes(),
                            partition: 0,
                            offset: steps as i64,
                        };
                        let mut out = Vec::new();
                        match &decoded {
                            Some(p) => p.extend_into(hop, &mut out).unwrap(),
                            None => encode_origin(hop, &mut out).unwrap(),
                        }
                        received[next] += 1;
                        queue.push_back((next, Some(out)));
                    }
                    Decision::NotInTree => {}
                    Decision::LoopStopped => {
                        prop_assert!(false, "guard needed on {} -> {}", ids[at], ids[next])
                    }
                }
            }
        }
        Ok(received)
    }

    fn all_topics() -> TopicSelection {
        TopicSelection::matching(".*").unwrap()
    }

    #[test]
    fn a_link_that_skips_a_topic_is_routed_around() {
        // Triangle a-b, b-c, a-c where a-c selects only payments (issue 10): orders of a
        // reach c through b, payments of a go straight to c.
        let ids = ["a", "b", "c"].map(String::from).to_vec();
        let payments = TopicSelection::matching("payments").unwrap();
        let routes = Routes::new(
            ids,
            vec![
                ([0, 1], all_topics()),
                ([1, 2], all_topics()),
                ([0, 2], payments),
            ],
        );
        assert_eq!(routes.topology("orders").tree(0)[2], Some(1));
        assert_eq!(routes.topology("payments").tree(0)[2], Some(0));
        assert_eq!(
            routes.topology("orders").origins_forwarded(1, 2),
            vec![0, 1]
        );
        assert_eq!(routes.topology("payments").origins_forwarded(1, 2), vec![1]);
        assert_eq!(simulate(&routes, "orders", 0).unwrap(), vec![1, 1, 1]);
        assert_eq!(simulate(&routes, "payments", 0).unwrap(), vec![1, 1, 1]);
        assert_eq!(routes.parts("orders"), vec![vec![0, 1, 2]]);
    }

    #[test]
    fn a_topic_whose_links_do_not_meet_is_replicated_within_each_part() {
        // a-b and c-d select events, the bridge b-c does not.
        let ids = ["a", "b", "c", "d"].map(String::from).to_vec();
        let events = TopicSelection::matching("events|other").unwrap();
        let bridge = TopicSelection::matching("other").unwrap();
        let routes = Routes::new(
            ids,
            vec![([0, 1], events.clone()), ([1, 2], bridge), ([2, 3], events)],
        );
        assert_eq!(routes.parts("events"), vec![vec![0, 1], vec![2, 3]]);
        assert_eq!(routes.parts("other"), vec![vec![0, 1, 2, 3]]);
        assert!(routes.parts("unselected").is_empty());
        assert_eq!(simulate(&routes, "events", 0).unwrap(), vec![1, 1, 0, 0]);
        assert_eq!(simulate(&routes, "events", 3).unwrap(), vec![0, 0, 1, 1]);
        // A record of a that reached c over a link since changed: c counts as its origin
        // within its part, so d receives it once and nothing goes back.
        let mut v = Vec::new();
        encode_origin(
            Hop {
                cluster: b"a",
                partition: 0,
                offset: 1,
            },
            &mut v,
        )
        .unwrap();
        let p = Path::decode(&v).unwrap();
        assert_eq!(
            routes.router("events", 2, 3).decide(Some(&p)),
            Decision::Forward
        );
    }

    proptest! {
        /// Simulates every flow of the topology on one record: every cluster receives it
        /// exactly once, no flow ever needs the loop guard, and propagation ends.
        #[test]
        fn every_cluster_receives_each_record_exactly_once((n, links, origin) in connected_graph(),
                                                           names in proptest::collection::hash_set("[a-z]{1,6}", 8)) {
            let ids: Vec<String> = names.into_iter().take(n).collect();
            let t = Topology::new(ids.clone(), &links);
            prop_assert_eq!(t.components().len(), 1);
            let routes = Routes::new(ids, links.iter().map(|&l| (l, all_topics())).collect());
            let received = simulate(&routes, "t", origin)?;
            prop_assert!(received.iter().all(|&c| c == 1), "received {:?}", received);
        }

        /// Random connected topologies where every link selects a random subset of three
        /// topics: for each topic and origin, every cluster the topic's links connect to
        /// the origin receives the record exactly once, and no other cluster receives it.
        #[test]
        fn per_topic_selections_reach_each_connected_cluster_once((n, links, origin) in connected_graph(),
                                                                   masks in proptest::collection::vec(0u8..8, 24)) {
            let ids: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
            let topics = ["t0", "t1", "t2"];
            let selection = |mask: u8| {
                let chosen: Vec<&str> = (0..3).filter(|b| mask & (1 << b) != 0).map(|b| topics[b]).collect();
                // An empty selection still has to be a valid regex that matches nothing here.
                TopicSelection::matching(&if chosen.is_empty() { "none".to_string() } else { chosen.join("|") }).unwrap()
            };
            let routes = Routes::new(
                ids.clone(),
                links.iter().enumerate().map(|(i, &l)| (l, selection(masks[i % masks.len()]))).collect(),
            );
            for topic in topics {
                let reach = routes.topology(topic).distances(origin);
                let received = simulate(&routes, topic, origin)?;
                for c in 0..n {
                    let want = u32::from(reach[c].is_some());
                    prop_assert_eq!(received[c], want, "topic {} from {}: cluster {} got {:?}", topic, ids[origin], ids[c], received);
                }
                // The parts partition exactly the clusters that some selecting link touches.
                let in_parts: usize = routes.parts(topic).iter().map(Vec::len).sum();
                let touched = (0..n).filter(|&c| !routes.topology(topic).adj[c].is_empty()).count();
                prop_assert_eq!(in_parts, touched);
            }
        }
    }
}
