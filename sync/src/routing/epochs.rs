//! Routing across topology changes (docs/topology-changes.md): a change takes effect at
//! a [`Cut`], the high-water mark of every origin partition when it was applied. A
//! record whose origin position lies below the cut is routed by the tree before the
//! change, one at or past it by the tree after. The origin position travels in the
//! record, and the cuts are recorded, so every flow decides every record by the same
//! tree, again after any restart: a change never delivers a record twice or not at all.
//!
//! [`History`] is an engine's routing across the changes applied so far; each flow
//! reads its [`EpochRouter`] per topic from it.

use std::collections::HashMap;
use std::sync::Arc;

use super::{Decision, FlowRouter, Routes};
use crate::provenance::Path;

/// Where one change took effect, for one topic: per origin cluster and partition, the
/// origin's end offset when the change was applied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cut {
    /// Origin cluster id → partition → end offset. Nested so that a decision looks a
    /// record's origin up by the bytes of its hop, without allocating.
    marks: HashMap<Vec<u8>, HashMap<i32, i64>>,
}

impl Cut {
    /// A cut naming no origin partition yet.
    pub fn new() -> Self {
        Cut::default()
    }

    /// Records that `origin`'s `partition` ended at `offset` at the cut.
    pub fn set(&mut self, origin: &str, partition: i32, offset: i64) {
        self.marks
            .entry(origin.as_bytes().to_vec())
            .or_default()
            .insert(partition, offset);
    }

    /// Where `origin`'s `partition` ended at the cut, when the cut names it.
    pub fn get(&self, origin: &str, partition: i32) -> Option<i64> {
        self.marks.get(origin.as_bytes())?.get(&partition).copied()
    }

    /// Whether the record at `offset` of `origin`'s `partition` was produced before the
    /// cut. A partition the cut does not name had nothing before it (a topic or a
    /// partition created since): its records are after.
    fn before(&self, origin: &[u8], partition: i32, offset: i64) -> bool {
        self.marks
            .get(origin)
            .and_then(|m| m.get(&partition))
            .is_some_and(|&end| offset < end)
    }

    /// Every (origin, partition, end offset) the cut names, sorted.
    pub fn entries(&self) -> Vec<(String, i32, i64)> {
        let mut v: Vec<(String, i32, i64)> = self
            .marks
            .iter()
            .flat_map(|(o, m)| {
                let o = String::from_utf8_lossy(o).into_owned();
                m.iter().map(move |(&p, &e)| (o.clone(), p, e))
            })
            .collect();
        v.sort();
        v
    }
}

/// Where one change took effect, for every topic it names: a [`Cut`] per topic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopologyCut {
    topics: HashMap<String, Cut>,
}

impl TopologyCut {
    /// A cut naming nothing yet.
    pub fn new() -> Self {
        TopologyCut::default()
    }

    /// Records that `origin`'s `partition` of `topic` ended at `offset` at the cut.
    pub fn set(&mut self, topic: &str, origin: &str, partition: i32, offset: i64) {
        self.topics
            .entry(topic.to_string())
            .or_default()
            .set(origin, partition, offset);
    }

    /// The cut of `topic` (empty when it names no partition of it: a topic created
    /// since, whose records are all after).
    pub fn topic(&self, topic: &str) -> Cut {
        self.topics.get(topic).cloned().unwrap_or_default()
    }

    /// Every (topic, origin, partition, end offset) the cut names, sorted.
    pub fn entries(&self) -> Vec<(String, String, i32, i64)> {
        let mut v: Vec<(String, String, i32, i64)> = self
            .topics
            .iter()
            .flat_map(|(t, c)| {
                c.entries()
                    .into_iter()
                    .map(move |(o, p, e)| (t.clone(), o, p, e))
            })
            .collect();
        v.sort();
        v
    }

    /// How many origin partitions it names.
    pub fn len(&self) -> usize {
        self.topics
            .values()
            .map(|c| c.marks.values().map(HashMap::len).sum::<usize>())
            .sum()
    }

    /// Whether it names no origin partition.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An engine's routing across the changes applied to it at runtime: the routes it
/// started with, then each change's cut and the routes from then on.
#[derive(Debug, Clone)]
pub struct History {
    first: Arc<Routes>,
    changes: Vec<(Arc<TopologyCut>, Arc<Routes>)>,
}

impl History {
    /// Routing that has not changed since `first`.
    pub fn new(first: Routes) -> Self {
        History {
            first: Arc::new(first),
            changes: Vec::new(),
        }
    }

    /// Adds a change applied at `cut`, routed by `after` from then on. Changes come in
    /// the order they were applied.
    pub fn change(&mut self, cut: TopologyCut, after: Routes) {
        self.changes.push((Arc::new(cut), Arc::new(after)));
    }

    /// The routes in effect now (for records past every cut).
    pub fn current(&self) -> &Routes {
        self.changes.last().map_or(&self.first, |(_, r)| r)
    }

    /// The cut of the last change applied.
    pub fn last_cut(&self) -> Option<&TopologyCut> {
        self.changes.last().map(|(c, _)| &**c)
    }

    /// The number of changes applied.
    pub fn changes(&self) -> usize {
        self.changes.len()
    }

    /// The router of flow `source → target` (cluster ids) for `topic`, across every
    /// epoch.
    pub fn flow_router(&self, topic: &str, source: &str, target: &str) -> EpochRouter {
        let of = |r: &Routes| r.flow_router(topic, source, target);
        let mut router = EpochRouter::new(of(&self.first));
        for (cut, after) in &self.changes {
            router.change(cut.topic(topic), of(after));
        }
        router
    }

    /// The cut of the last change that made flow `source → target` carry `topic` when
    /// the epoch before did not; `None` when it has carried it since the first routes
    /// (or does not carry it now).
    pub fn introduced(&self, topic: &str, source: &str, target: &str) -> Option<Cut> {
        let mut carried = self.first.carries(topic, source, target);
        let mut at = None;
        for (cut, after) in &self.changes {
            let now = after.carries(topic, source, target);
            if now && !carried {
                at = Some(cut.topic(topic));
            }
            carried = now;
        }
        at.filter(|_| carried)
    }
}

/// The routers of one flow for one topic across the changes applied so far: the one
/// before the first change, then after each change its cut and the router from then on.
/// `None`: the flow does not exist in that topology (added later, or removed), so it
/// forwards nothing routed by it.
#[derive(Debug, Clone)]
pub struct EpochRouter {
    first: Option<FlowRouter>,
    changes: Vec<(Cut, Option<FlowRouter>)>,
}

impl EpochRouter {
    /// A flow's router before any change.
    pub fn new(router: Option<FlowRouter>) -> Self {
        EpochRouter {
            first: router,
            changes: Vec::new(),
        }
    }

    /// Applies a change at `cut`: records at or past it are routed by `router`. Cuts
    /// come in the order the changes were applied, each at or past the one before on
    /// every origin partition.
    pub fn change(&mut self, cut: Cut, router: Option<FlowRouter>) {
        self.changes.push((cut, router));
    }

    /// Decides for a record read from the source at (`partition`, `offset`) with
    /// provenance `path` (`None`: produced on the source, which is then its origin).
    /// Without changes this is the one router's decision, nothing more.
    #[inline]
    pub fn decide(
        &self,
        source: &[u8],
        partition: i32,
        offset: i64,
        path: Option<&Path<'_>>,
    ) -> Decision {
        let router = if self.changes.is_empty() {
            self.first.as_ref()
        } else {
            let (origin, p, o) = match path.map(|p| self.origin(p)) {
                Some(Some(h)) => h,
                // Produced on the source, or only hops of another deployment: the first
                // hop inside this one is where it entered, as the router treats it.
                Some(None) => {
                    let h = path.expect("a path").origin();
                    (h.cluster, h.partition, h.offset)
                }
                None => (source, partition, offset),
            };
            self.epoch(origin, p, o)
        };
        match router {
            Some(r) => r.decide(path),
            None => Decision::NotInTree,
        }
    }

    /// The router of the epoch a record of origin position (`origin`, `p`, `o`) falls in.
    fn epoch(&self, origin: &[u8], p: i32, o: i64) -> Option<&FlowRouter> {
        let mut router = self.first.as_ref();
        for (cut, after) in &self.changes {
            if cut.before(origin, p, o) {
                return router;
            }
            router = after.as_ref();
        }
        router
    }

    /// The first hop of `path` from a cluster one of the epochs' topologies knows.
    fn origin<'a>(&self, path: &Path<'a>) -> Option<(&'a [u8], i32, i64)> {
        let knows = |c: &[u8]| {
            self.first.iter().any(|r| r.knows(c))
                || self
                    .changes
                    .iter()
                    .any(|(_, r)| r.as_ref().is_some_and(|r| r.knows(c)))
        };
        path.hops()
            .find(|h| knows(h.cluster))
            .map(|h| (h.cluster, h.partition, h.offset))
    }
}

#[cfg(test)]
mod tests {
    use super::super::Topology;
    use super::super::tests::graph;
    use super::*;
    use crate::provenance::{Hop, encode_origin};
    use proptest::prelude::*;

    fn has(links: &[[usize; 2]], a: usize, b: usize) -> bool {
        links.iter().any(|l| *l == [a, b] || *l == [b, a])
    }

    /// Carries every record of every origin (offsets 0..records, partition 0) through
    /// every flow of the links before or after the change, each deciding with its
    /// [`EpochRouter`]; returns the copies per (origin, offset) per cluster.
    #[allow(clippy::needless_range_loop)] // clusters are indexes on both sides
    fn simulate(
        ids: &[String],
        before: &[[usize; 2]],
        after: &[[usize; 2]],
        cut: &[i64],
        records: i64,
    ) -> Result<Vec<Vec<Vec<u32>>>, TestCaseError> {
        let n = ids.len();
        let (t0, t1) = (
            Topology::new(ids.to_vec(), before),
            Topology::new(ids.to_vec(), after),
        );
        let mut c = Cut::new();
        for (o, &h) in cut.iter().enumerate() {
            c.set(&ids[o], 0, h);
        }
        let router = |s: usize, t: usize| {
            let mut r = EpochRouter::new(has(before, s, t).then(|| FlowRouter::new(&t0, s, t)));
            r.change(
                c.clone(),
                has(after, s, t).then(|| FlowRouter::new(&t1, s, t)),
            );
            r
        };
        let routers: HashMap<(usize, usize), EpochRouter> = (0..n)
            .flat_map(|s| (0..n).map(move |t| (s, t)))
            .filter(|&(s, t)| s != t && (has(before, s, t) || has(after, s, t)))
            .map(|(s, t)| ((s, t), router(s, t)))
            .collect();
        let mut held = vec![vec![vec![0u32; n]; records as usize]; n];
        for origin in 0..n {
            for offset in 0..records {
                held[origin][offset as usize][origin] += 1;
                // The copy on the origin is read with no path; each flow's copy carries
                // the path extended by where it was read. Offsets on replicas do not
                // matter to routing: only the origin position does.
                let mut queue = vec![(origin, None::<Vec<u8>>)];
                let mut steps = 0;
                while let Some((at, path)) = queue.pop() {
                    steps += 1;
                    prop_assert!(steps < 10_000, "runaway");
                    let decoded = path.as_deref().map(|p| Path::decode(p).unwrap());
                    let read_at = if decoded.is_none() { offset } else { 1_000_000 };
                    for t in 0..n {
                        let Some(r) = routers.get(&(at, t)) else {
                            continue;
                        };
                        let d = r.decide(ids[at].as_bytes(), 0, read_at, decoded.as_ref());
                        prop_assert!(d != Decision::LoopStopped, "loop guard hit");
                        if d != Decision::Forward {
                            continue;
                        }
                        let hop = Hop {
                            cluster: ids[at].as_bytes(),
                            partition: 0,
                            offset: read_at,
                        };
                        let mut next = Vec::new();
                        match &decoded {
                            Some(p) => p.extend_into(hop, &mut next).unwrap(),
                            None => encode_origin(hop, &mut next).unwrap(),
                        }
                        held[origin][offset as usize][t] += 1;
                        queue.push((t, Some(next)));
                    }
                }
            }
        }
        Ok(held)
    }

    proptest! {
        /// Any change between two connected topologies, at any cut: every cluster holds
        /// every record of every origin exactly once.
        #[test]
        fn a_change_at_a_cut_delivers_every_record_once(
            (n, before, after, cut) in (3usize..=6).prop_flat_map(|n| {
                (Just(n), graph(n), graph(n), proptest::collection::vec(0i64..=4, n))
            })
        ) {
            let ids: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
            let held = simulate(&ids, &before, &after, &cut, 4)?;
            for (origin, offsets) in held.iter().enumerate() {
                for (offset, copies) in offsets.iter().enumerate() {
                    prop_assert!(
                        copies.iter().all(|&c| c == 1),
                        "origin c{origin} offset {offset}: copies per cluster {copies:?} (cut {cut:?})"
                    );
                }
            }
        }
    }

    #[test]
    fn a_removed_link_carries_what_is_below_the_cut_and_nothing_after() {
        // A chain a-b-c becomes a triangle without a-b: a's records below the cut still
        // go a->b; from the cut on they go a->c->b.
        let ids: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let (t0, t1) = (
            Topology::new(ids.clone(), &[[0, 1], [1, 2]]),
            Topology::new(ids.clone(), &[[0, 2], [1, 2]]),
        );
        let mut cut = Cut::new();
        cut.set("a", 0, 10);
        let mut ab = EpochRouter::new(Some(FlowRouter::new(&t0, 0, 1)));
        ab.change(cut.clone(), None);
        let mut ac = EpochRouter::new(None);
        ac.change(cut, Some(FlowRouter::new(&t1, 0, 2)));
        assert_eq!(ab.decide(b"a", 0, 9, None), Decision::Forward);
        assert_eq!(ab.decide(b"a", 0, 10, None), Decision::NotInTree);
        assert_eq!(ac.decide(b"a", 0, 9, None), Decision::NotInTree);
        assert_eq!(ac.decide(b"a", 0, 10, None), Decision::Forward);
    }
}
