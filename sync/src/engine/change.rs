//! Changing the topology of a running engine (docs/topology-changes.md, steps 2-4).
//!
//! [`EngineHandle::prepare_change`] holds every flow (as a pause stops it: reader
//! stopped, deliveries awaited, positions committed) and reads the cut: the end offset
//! of every partition of every selected topic on every cluster. The caller records the
//! cut, then [`PreparedChange::apply`] starts the flows again with the new routing in
//! the history, and the new links' flows beside them. Dropping a prepared change
//! instead releases the flows with the routing they had: nothing was decided by the
//! new one.
//!
//! With every flow stopped while the cut is read, a copy on a cluster below its cut was
//! written before the hold, so its origin position lies below the origin's cut: every
//! record a new flow's source holds below its cut is routed by the old tree, in which
//! the new flow does not exist, and the new flow starts at the cut. A removed link's
//! flows run on after the cut, carrying what the old tree owes below it and nothing
//! after, until the drain (settle.rs) retires them. Changing a link's settings or topics
//! and removing a cluster are refused, naming what a running engine cannot apply.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use tokio::sync::OwnedMutexGuard;
use tracing::info;

use super::{Shared, link_flows, routes};
use crate::clients;
use crate::control::{EngineHandle, FlowControl, FlowState, every_flow};
use crate::routing::{History, Routes, Settling, TopologyCut};
use crate::spec::{ClusterSpec, EngineSpec, LinkSpec, TopicSelection};

/// Why a topology change was not applied. The flows run on with the routing they had.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChangeError {
    /// Another change is being applied; changes are applied one at a time.
    #[error("another topology change is being applied; try again once it took effect")]
    Busy,
    /// The last change has not settled: flows that carry an origin only since it wait
    /// for its older records to arrive by their old routes (docs/topology-changes.md,
    /// "Order across a change").
    #[error(
        "the last topology change has not settled yet (records written before it are still on their way by the routes before it, and order is being restored); try again once it settled"
    )]
    Settling,
    /// A removed link's flows still carry what the routes before its removal owe; no
    /// other change is applied until they are retired.
    #[error(
        "link {0} is still draining after its removal (its flows carry what was written before it); try again once it is removed"
    )]
    Draining(String),
    /// The change would leave clusters that hold a topic unreachable from each other.
    #[error(
        "the change would cut cluster {cluster:?} off from {from:?} for topic {topic:?}; no link that selects the topic would join them"
    )]
    Splits {
        /// The topic.
        topic: String,
        /// A cluster cut off.
        cluster: String,
        /// The clusters it would no longer reach.
        from: Vec<String>,
    },
    /// What the change asks is not something a running engine can do (yet).
    #[error("{0}")]
    Unsupported(String),
    /// The cut could not be read; nothing changed.
    #[error("cannot read the cut on cluster {cluster:?}: {error}")]
    Cut {
        /// The cluster.
        cluster: String,
        /// What went wrong.
        error: String,
    },
    /// The task reading the cut failed; nothing changed.
    #[error("reading the cut failed: {0}")]
    CutTask(String),
    /// The engine stopped before the change took effect.
    #[error("the engine stopped before the topology change took effect")]
    Stopped,
}

/// A change whose flows are held and whose cut is read, to be recorded and applied.
#[derive(Debug)]
pub struct PreparedChange {
    engine: Arc<Shared>,
    after: EngineSpec,
    cut: TopologyCut,
    _held: Held,
    new_links: Vec<LinkSpec>,
    /// Held until the change is applied, then by the drain of the removed links.
    one_at_a_time: Option<OwnedMutexGuard<()>>,
}

impl EngineHandle {
    /// The spec the engine runs now, with every change applied.
    pub fn spec(&self) -> EngineSpec {
        self.engine.spec.lock().expect("engine spec lock").clone()
    }

    /// The routing now: the first routes and every change applied since.
    pub fn history(&self) -> Arc<History> {
        self.engine.history.get()
    }

    /// Whether a topology change is being applied or has not settled yet (drained,
    /// removed links retired, order restored): another change is refused meanwhile.
    pub fn changing(&self) -> bool {
        self.engine.changing.try_lock().is_err()
    }

    /// The links removed whose flows still drain (docs/topology-changes.md).
    pub fn draining(&self) -> Vec<String> {
        let spec = self.engine.spec.lock().expect("engine spec lock");
        spec.draining.iter().map(|l| l.name.clone()).collect()
    }

    /// Where the drain of removed links is and what it waits for, while one runs:
    /// `round 1 of 2: waits for flow a->b (paused) on t[0]: acknowledged 10 of 25`.
    pub fn drain_status(&self) -> Option<String> {
        self.engine
            .drain_status
            .lock()
            .expect("drain status lock")
            .clone()
    }

    /// Holds every flow and reads the cut for a change to `after`, which must keep every
    /// cluster the engine runs and every link it keeps as they are, and may add clusters,
    /// add links and remove links (`after.draining` is filled in here: the removed
    /// links). Returns once every flow is stopped and the cut is read; the flows stay held
    /// until the change is applied or dropped.
    pub async fn prepare_change(
        &self,
        mut after: EngineSpec,
    ) -> Result<PreparedChange, ChangeError> {
        let engine = self.engine.clone();
        let guard = engine.changing.clone().try_lock_owned().map_err(|_| {
            let draining = engine
                .spec
                .lock()
                .expect("engine spec lock")
                .draining
                .first()
                .map(|l| l.name.clone());
            match draining {
                Some(l) => ChangeError::Draining(l),
                None if engine.history.get().settling() != Settling::Settled => {
                    ChangeError::Settling
                }
                None => ChangeError::Busy,
            }
        })?;
        let (before, new_links) = {
            let before = engine.spec.lock().expect("engine spec lock").clone();
            let (added, removed) = diff(&before, &after)?;
            after.draining = removed;
            (before, added)
        };
        // A change that fails releases the holds (Drop).
        let mut held = hold_every_flow(&engine).await;
        std::mem::replace(&mut held.result, Ok(()))?;
        let mut prepared = PreparedChange {
            engine: engine.clone(),
            after,
            cut: TopologyCut::new(),
            _held: held,
            new_links,
            one_at_a_time: Some(guard),
        };
        // Read on every link of before and after: a removed link's topics are cut too.
        let whole = prepared.after.clone();
        let now = engine.history.get();
        prepared.cut = tokio::task::spawn_blocking(move || read_cut(&whole, Some(now.current())))
            .await
            .map_err(|e| ChangeError::CutTask(e.to_string()))??;
        check_splits(&before, &prepared.after, &prepared.cut)?;
        info!(
            partitions = prepared.cut.len(),
            "Every flow is held and the cut is read; the change takes effect once it is recorded."
        );
        Ok(prepared)
    }
}

impl PreparedChange {
    /// Where the change takes effect.
    pub fn cut(&self) -> &TopologyCut {
        &self.cut
    }

    /// The links this change removes (their flows drain after it is applied).
    pub fn removed(&self) -> Vec<String> {
        self.after.draining.iter().map(|l| l.name.clone()).collect()
    }

    /// Starts the flows again routed by the history with this change, and the flows of
    /// the new links; the removed links' flows run on and drain (settle.rs), and no other
    /// change is applied until they are retired. Returns the history now in effect.
    pub fn apply(mut self) -> History {
        let engine = self.engine.clone();
        let mut history = (*engine.history.get()).clone();
        history.change(self.cut.clone(), routes(&self.after));
        engine.history.set(history.clone());
        *engine.spec.lock().expect("engine spec lock") = self.after.clone();
        for l in &self.new_links {
            for fs in link_flows(&self.after, l, &engine.history) {
                engine.add_flow(fs, false);
            }
        }
        info!(
            changes = history.changes(),
            new_links = self.new_links.len(),
            removed_links = self.after.draining.len(),
            "Topology change applied: every flow routes by the new links from the cut on."
        );
        let guard = self.one_at_a_time.take().expect("held until applied");
        super::settle::spawn(engine, Some(self.cut.clone()), guard);
        history
        // Dropping the holds starts the flows again.
    }
}

/// Every flow of the engine held (stopped as a pause stops it: reader stopped,
/// deliveries awaited, positions committed) until this is dropped.
pub(super) struct Held {
    flows: Vec<Arc<FlowControl>>,
    /// Whether every flow stopped (`Err`: the engine stopped first).
    pub result: Result<(), ChangeError>,
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Held")
            .field("flows", &self.flows.len())
            .finish()
    }
}

/// Holds every flow and waits until each is not running: paused (its positions
/// committed), faulted or waiting to be resumed.
pub(super) async fn hold_every_flow(engine: &Shared) -> Held {
    let flows = every_flow(&engine.controls.flows);
    for c in &flows {
        c.desired
            .send_if_modified(|d| !std::mem::replace(&mut d.held, true));
    }
    let mut result = Ok(());
    for c in &flows {
        if let Err(e) = wait_stopped(c, engine).await {
            result = Err(e);
            break;
        }
    }
    Held { flows, result }
}

impl Drop for Held {
    fn drop(&mut self) {
        for c in &self.flows {
            c.desired
                .send_if_modified(|d| std::mem::replace(&mut d.held, false));
        }
    }
}

/// Waits until a held flow is not running: paused (its positions committed), faulted or
/// waiting to be resumed.
async fn wait_stopped(c: &FlowControl, engine: &Shared) -> Result<(), ChangeError> {
    let mut rx = c.status.status.subscribe();
    loop {
        match rx.borrow_and_update().state {
            FlowState::Paused | FlowState::Faulted(_) => return Ok(()),
            FlowState::Stopped => return Err(ChangeError::Stopped),
            _ => {}
        }
        tokio::select! {
            r = rx.changed() => if r.is_err() { return Err(ChangeError::Stopped) },
            _ = engine.cancel.cancelled() => return Err(ChangeError::Stopped),
        }
    }
}

/// The links `after` adds to `before` and those it removes; it must keep every cluster
/// and every link it does not remove as they are.
fn diff(
    before: &EngineSpec,
    after: &EngineSpec,
) -> Result<(Vec<LinkSpec>, Vec<LinkSpec>), ChangeError> {
    let unsupported = |what: String| {
        Err(ChangeError::Unsupported(format!(
            "{what}: a running engine adds clusters, adds and removes links and changes a link's topics (changing a link's other settings or a cluster is not built yet); change the config file and restart"
        )))
    };
    if !same_limits(before, after) {
        return unsupported("the engine's limits change".into());
    }
    for c in &before.clusters {
        match after.clusters.iter().find(|a| a.id == c.id) {
            None => return unsupported(format!("cluster {:?} is removed", c.id)),
            Some(a) if !same_cluster(c, a) => {
                return unsupported(format!("cluster {:?} changes its settings", c.id));
            }
            Some(_) => {}
        }
    }
    let ends = |s: &EngineSpec, l: &LinkSpec| {
        let mut e = [
            s.clusters[l.clusters[0]].id.clone(),
            s.clusters[l.clusters[1]].id.clone(),
        ];
        e.sort();
        e
    };
    let after_links: BTreeMap<&str, &LinkSpec> =
        after.links.iter().map(|l| (l.name.as_str(), l)).collect();
    let mut removed = Vec::new();
    for l in &before.links {
        match after_links.get(l.name.as_str()) {
            None => removed.push(l.clone()),
            Some(a)
                if ends(before, l) != ends(after, a)
                    || l.start != a.start
                    || l.in_flight_bytes != a.in_flight_bytes =>
            {
                return unsupported(format!("link {:?} changes", l.name));
            }
            Some(_) => {}
        }
    }
    let added: Vec<LinkSpec> = after
        .links
        .iter()
        .filter(|a| !before.links.iter().any(|l| l.name == a.name))
        .cloned()
        .collect();
    for a in &added {
        if let Some(r) = removed.iter().find(|r| ends(before, r) == ends(after, a)) {
            return unsupported(format!(
                "link {:?} is added between the clusters of link {:?}, which is removed",
                a.name, r.name
            ));
        }
    }
    Ok((added, removed))
}

/// Refuses a change after which two clusters that a topic's links joined are no longer
/// joined, for any topic the cut names (the topics that exist on the clusters now).
fn check_splits(
    before: &EngineSpec,
    after: &EngineSpec,
    cut: &TopologyCut,
) -> Result<(), ChangeError> {
    let (old, new) = (routes(before), routes(after));
    let mut topics: Vec<String> = cut.entries().into_iter().map(|e| e.0).collect();
    topics.dedup();
    for topic in topics {
        let now = new.parts(&topic);
        let part_of = |i: usize| now.iter().position(|p| p.contains(&i));
        // Joined after the change: in one part (a cluster in none is alone).
        let joined = |i: usize, j: usize| part_of(i).is_some() && part_of(i) == part_of(j);
        for part in old.parts(&topic) {
            if let Some(&lost) = part[1..].iter().find(|&&i| !joined(part[0], i)) {
                let id = |i: usize| new.ids()[i].clone();
                return Err(ChangeError::Splits {
                    topic,
                    cluster: id(lost),
                    from: part
                        .iter()
                        .filter(|&&i| i != lost && !joined(lost, i))
                        .map(|&i| id(i))
                        .collect(),
                });
            }
        }
    }
    Ok(())
}

fn same_cluster(a: &ClusterSpec, b: &ClusterSpec) -> bool {
    a.id == b.id
        && a.bootstrap_servers == b.bootstrap_servers
        && a.options == b.options
        && a.producer == b.producer
        && a.consumer == b.consumer
}

fn same_limits(a: &EngineSpec, b: &EngineSpec) -> bool {
    a.limits == b.limits
}

/// The cut: on every cluster of `spec`, the end offset of every partition of every
/// topic a link of that cluster selects (kept or draining), or selected in `before` (the
/// routes before the change: a narrowed selection's topics are cut too). Every such
/// partition is named, or the cut is not taken: a partition missing from it would count
/// its old records as after the change. Blocking.
pub(super) fn read_cut(
    spec: &EngineSpec,
    before: Option<&Routes>,
) -> Result<TopologyCut, ChangeError> {
    let timeout: Duration = spec.limits.request_timeout;
    let mut cut = TopologyCut::new();
    for (i, c) in spec.clusters.iter().enumerate() {
        let fail = |error: String| ChangeError::Cut {
            cluster: c.id.clone(),
            error,
        };
        let selections: Vec<&TopicSelection> = spec
            .all_links()
            .filter(|l| l.clusters.contains(&i))
            .map(|l| &l.topics)
            .chain(before.into_iter().flat_map(|r| r.selections_of(&c.id)))
            .collect();
        if selections.is_empty() {
            continue;
        }
        let client: BaseConsumer = clients::scanner(c, &format!("duplex-cut-{}", c.id))
            .create()
            .map_err(|e| fail(format!("cannot create a client: {e}")))?;
        let client = clients::Closing::new(client);
        let md = client
            .fetch_metadata(None, timeout)
            .map_err(|e| fail(format!("listing topics: {e}")))?;
        for t in md
            .topics()
            .iter()
            .filter(|t| selections.iter().any(|s| s.selects(t.name())))
        {
            if let Some(e) = t.error() {
                return Err(fail(format!(
                    "topic {:?} is listed with an error ({e:?})",
                    t.name()
                )));
            }
            for p in t.partitions() {
                let (_, high) = client
                    .fetch_watermarks(t.name(), p.id(), timeout)
                    .map_err(|e| fail(format!("end offset of {}[{}]: {e}", t.name(), p.id())))?;
                cut.set(t.name(), &c.id, p.id(), high);
            }
        }
    }
    Ok(cut)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(links: &[[usize; 2]], topics: &str) -> EngineSpec {
        EngineSpec::linked(
            ["a", "b", "c"]
                .iter()
                .enumerate()
                .map(|(i, id)| ClusterSpec::new(*id, format!("127.0.0.1:{}", i + 1)))
                .collect(),
            links,
            TopicSelection::matching(topics).unwrap(),
        )
    }

    fn cut_of(topic: &str) -> TopologyCut {
        let mut cut = TopologyCut::new();
        for c in ["a", "b", "c"] {
            cut.set(topic, c, 0, 10);
        }
        cut
    }

    #[test]
    fn a_removal_is_found_and_an_addition_between_its_clusters_refused() {
        let triangle = spec(&[[0, 1], [1, 2], [0, 2]], ".*");
        let chain = spec(&[[1, 2], [0, 2]], ".*");
        let (added, removed) = diff(&triangle, &chain).unwrap();
        assert!(added.is_empty());
        assert_eq!(removed.iter().map(|l| &l.name).collect::<Vec<_>>(), ["a-b"]);
        let mut swapped = chain.clone();
        swapped.links.push(LinkSpec {
            name: "b-a".into(),
            ..triangle.links[0].clone()
        });
        let refused = diff(&triangle, &swapped).unwrap_err();
        assert!(refused.to_string().contains("\"b-a\""), "{refused}");
    }

    #[test]
    fn a_removal_that_splits_a_topic_names_the_topic_and_the_cluster() {
        let triangle = spec(&[[0, 1], [1, 2], [0, 2]], ".*");
        let chain = spec(&[[1, 2], [0, 2]], ".*");
        assert_eq!(check_splits(&triangle, &chain, &cut_of("t")), Ok(()));
        // Only a-b selects `orders`: without it no link joins a and b for that topic.
        let mut narrow = triangle.clone();
        narrow.links[1].topics = TopicSelection::matching("other").unwrap();
        narrow.links[2].topics = TopicSelection::matching("other").unwrap();
        let mut after = narrow.clone();
        after.links.remove(0);
        let e = check_splits(&narrow, &after, &cut_of("orders")).unwrap_err();
        assert_eq!(
            e,
            ChangeError::Splits {
                topic: "orders".into(),
                cluster: "b".into(),
                from: vec!["a".into()],
            }
        );
    }
}
