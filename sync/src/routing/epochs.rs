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

use super::{Decision, FlowRouter, Former, Routes};
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

/// Where the last change stands on keeping each origin partition's order on every
/// cluster (docs/topology-changes.md, "Order across a change").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Settling {
    /// Nothing waits: every change is settled (or none was applied).
    #[default]
    Settled,
    /// A flow that carries an origin to its target only since the last change defers
    /// that origin's records past the cut ([`Decision::Deferred`]) until the records
    /// from before the cut have reached every cluster (the drain's rounds).
    Deferring,
    /// The drain is over: such flows read their source again from the cut and forward
    /// what they deferred, passing over what the target already holds (its origin
    /// marks), until they are past where they had read.
    Rewinding,
}

/// An engine's routing across the changes applied to it at runtime: the routes it
/// started with, then each change's cut and the routes from then on, and where the last
/// change stands on order.
#[derive(Debug, Clone)]
pub struct History {
    first: Arc<Routes>,
    changes: Vec<(Arc<TopologyCut>, Arc<Routes>)>,
    settling: Settling,
    former: Vec<Former>,
}

impl History {
    /// Routing that has not changed since `first`.
    pub fn new(first: Routes) -> Self {
        History {
            first: Arc::new(first),
            changes: Vec::new(),
            settling: Settling::Settled,
            former: Vec::new(),
        }
    }

    /// The same history knowing clusters removed from the mesh (`Routes::with_former`),
    /// in every epoch and in those of the changes added later.
    pub fn with_former(mut self, former: Vec<Former>) -> Self {
        let known = |r: &Routes| Arc::new(r.clone().with_former(former.clone()));
        self.first = known(&self.first);
        for (_, r) in &mut self.changes {
            *r = known(r);
        }
        self.former = former;
        self
    }

    /// Adds a change applied at `cut`, routed by `after` from then on. Changes come in
    /// the order they were applied; the one added defers (it has not settled).
    pub fn change(&mut self, cut: TopologyCut, after: Routes) {
        let after = after.with_former(self.former.clone());
        self.changes.push((Arc::new(cut), Arc::new(after)));
        self.settling = Settling::Deferring;
    }

    /// Where the last change stands on order.
    pub fn settling(&self) -> Settling {
        if self.changes.is_empty() {
            Settling::Settled
        } else {
            self.settling
        }
    }

    /// The same history with the last change at `settling`.
    pub fn with_settling(mut self, settling: Settling) -> Self {
        self.settling = settling;
        self
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
    /// epoch; it defers what the last change newly brings while that change defers.
    pub fn flow_router(&self, topic: &str, source: &str, target: &str) -> EpochRouter {
        let of = |r: &Routes| r.flow_router(topic, source, target);
        let mut router = EpochRouter::new(of(&self.first));
        for (cut, after) in &self.changes {
            router.change(cut.topic(topic), of(after));
        }
        router.defer_last = self.settling() == Settling::Deferring;
        router
    }

    /// While the last change has not settled, when flow `source → target` carries some
    /// origin's records of `topic` to the target only since that change: the change's
    /// cut of the topic. Such a flow starts each partition no later than the source's
    /// end at the cut and passes over what the target holds already (its origin marks,
    /// read from the target's end at the cut), so reading again is harmless.
    pub fn rewinds(&self, topic: &str, source: &str, target: &str) -> Option<Cut> {
        if self.settling() == Settling::Settled {
            return None;
        }
        let n = self.changes.len();
        let routes = |i: usize| {
            if i == 0 {
                &self.first
            } else {
                &self.changes[i - 1].1
            }
        };
        let now = routes(n).flow_router(topic, source, target)?;
        let before = routes(n - 1).flow_router(topic, source, target);
        let newly = now.forwards.iter().any(|(origin, &f)| {
            f && !before
                .as_ref()
                .is_some_and(|b| b.forwards.get(origin).copied().unwrap_or(false))
        });
        newly.then(|| self.changes[n - 1].0.topic(topic))
    }

    /// The routes before the last change, while it has not settled: what the flows still
    /// owe below its cut is routed by them.
    pub fn settling_routes(&self) -> Option<&Routes> {
        if self.settling() == Settling::Settled {
            return None;
        }
        let n = self.changes.len();
        Some(if n == 1 {
            &self.first
        } else {
            &self.changes[n - 2].1
        })
    }

    /// Whether flow `source → target` reads `topic`: the routes now have a link between
    /// the two select it, or the routes before a change that has not settled did (the
    /// flow still carries what they owe below the cut: a link's selection narrowed, or
    /// the link removed and draining).
    pub fn reads(&self, topic: &str, source: &str, target: &str) -> bool {
        self.current().carries(topic, source, target)
            || self
                .settling_routes()
                .is_some_and(|r| r.carries(topic, source, target))
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
    /// The last change has not settled: a record past its cut that this flow forwards
    /// by the last routes and did not by the routes before is deferred.
    defer_last: bool,
}

impl EpochRouter {
    /// A flow's router before any change.
    pub fn new(router: Option<FlowRouter>) -> Self {
        EpochRouter {
            first: router,
            changes: Vec::new(),
            defer_last: false,
        }
    }

    /// Applies a change at `cut`: records at or past it are routed by `router`. Cuts
    /// come in the order the changes were applied, each at or past the one before on
    /// every origin partition.
    pub fn change(&mut self, cut: Cut, router: Option<FlowRouter>) {
        self.changes.push((cut, router));
    }

    /// The same router, deferring what the last change newly brings ([`Settling`]).
    pub fn deferring(mut self) -> Self {
        self.defer_last = true;
        self
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
        if self.changes.is_empty() {
            return Self::decide_by(self.first.as_ref(), path);
        }
        let (origin, p, o) = self.origin_of(source, partition, offset, path);
        let epoch = self.epoch(origin, p, o);
        let decision = Self::decide_by(self.router(epoch), path);
        if self.defer_last
            && epoch == self.changes.len()
            && decision == Decision::Forward
            && Self::decide_by(self.router(epoch - 1), path) != Decision::Forward
        {
            return Decision::Deferred;
        }
        decision
    }

    fn decide_by(router: Option<&FlowRouter>, path: Option<&Path<'_>>) -> Decision {
        match router {
            Some(r) => r.decide(path),
            None => Decision::NotInTree,
        }
    }

    /// The router of epoch `i` (0: before the first change).
    fn router(&self, i: usize) -> Option<&FlowRouter> {
        if i == 0 {
            self.first.as_ref()
        } else {
            self.changes[i - 1].1.as_ref()
        }
    }

    /// The origin position (cluster, partition, offset) by which a record read from the
    /// source at (`partition`, `offset`) with provenance `path` is routed: the first hop
    /// from a cluster an epoch's topology knows, else its first hop (another
    /// deployment's hops only: where it entered), else its own position on the source.
    #[inline]
    pub fn origin_of<'a>(
        &self,
        source: &'a [u8],
        partition: i32,
        offset: i64,
        path: Option<&Path<'a>>,
    ) -> (&'a [u8], i32, i64) {
        match path {
            Some(p) => self.origin(p).unwrap_or_else(|| {
                let h = p.origin();
                (h.cluster, h.partition, h.offset)
            }),
            None => (source, partition, offset),
        }
    }

    /// Whether an epoch's topology knows cluster `c` (records of origin `c` route).
    pub fn knows(&self, c: &[u8]) -> bool {
        self.first.iter().any(|r| r.knows(c))
            || self
                .changes
                .iter()
                .any(|(_, r)| r.as_ref().is_some_and(|r| r.knows(c)))
    }

    /// The epoch a record of origin position (`origin`, `p`, `o`) falls in (0: before
    /// the first change; i: after change i).
    fn epoch(&self, origin: &[u8], p: i32, o: i64) -> usize {
        self.changes
            .iter()
            .position(|(cut, _)| cut.before(origin, p, o))
            .unwrap_or(self.changes.len())
    }

    /// The first hop of `path` from a cluster one of the epochs' topologies knows.
    fn origin<'a>(&self, path: &Path<'a>) -> Option<(&'a [u8], i32, i64)> {
        path.hops()
            .find(|h| self.knows(h.cluster))
            .map(|h| (h.cluster, h.partition, h.offset))
    }
}

#[cfg(test)]
mod tests {
    use super::super::Topology;
    use super::super::tests::graph;
    use super::*;
    use crate::provenance::{Hop, encode_origin};
    use crate::spec::TopicSelection;
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

    #[test]
    fn a_new_carrier_defers_past_the_cut_until_the_change_settles() {
        // A chain a-b-c gains a-c: a's records past the cut go a->c directly, and wait
        // while those below it may still be on their way a->b->c.
        let ids: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let all = TopicSelection::matching(".*").unwrap();
        let routes = |links: &[[usize; 2]]| {
            Routes::new(
                ids.clone(),
                links.iter().map(|l| (*l, all.clone())).collect(),
            )
        };
        let mut cut = TopologyCut::new();
        for c in ["a", "b", "c"] {
            cut.set("t", c, 0, 10);
        }
        let mut history = History::new(routes(&[[0, 1], [1, 2]]));
        history.change(cut, routes(&[[0, 1], [1, 2], [0, 2]]));
        assert_eq!(history.settling(), Settling::Deferring);
        let ac = history.flow_router("t", "a", "c");
        assert_eq!(ac.decide(b"a", 0, 9, None), Decision::NotInTree);
        assert_eq!(ac.decide(b"a", 0, 10, None), Decision::Deferred);
        // a->b carried a's records before and after: nothing waits.
        let ab = history.flow_router("t", "a", "b");
        assert_eq!(ab.decide(b"a", 0, 10, None), Decision::Forward);
        // Who reads again once drained: the flows that carry an origin only since the
        // change (a->c for a, c->a for c), not b->c, which only lost a.
        assert!(history.rewinds("t", "a", "c").is_some());
        assert!(history.rewinds("t", "c", "a").is_some());
        assert!(history.rewinds("t", "b", "c").is_none());
        assert!(history.rewinds("t", "a", "b").is_none());
        let rewinding = history.clone().with_settling(Settling::Rewinding);
        let ac = rewinding.flow_router("t", "a", "c");
        assert_eq!(ac.decide(b"a", 0, 10, None), Decision::Forward);
        assert!(rewinding.rewinds("t", "a", "c").is_some());
        let settled = history.with_settling(Settling::Settled);
        assert!(settled.rewinds("t", "a", "c").is_none());
        assert_eq!(
            settled.flow_router("t", "a", "c").decide(b"a", 0, 10, None),
            Decision::Forward
        );
    }
}
