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
//! the new flow does not exist, and the new flow starts at the cut. This step applies
//! additions (clusters and links); removing a link, or changing one, is refused until
//! the drain of docs/topology-changes.md ("Removing a link") is built.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use tokio::sync::OwnedMutexGuard;
use tracing::info;

use super::{Shared, link_flows, routes};
use crate::clients;
use crate::control::{EngineHandle, FlowControl, FlowState};
use crate::routing::{History, TopologyCut};
use crate::spec::{ClusterSpec, EngineSpec, LinkSpec, TopicSelection};

/// Why a topology change was not applied. The flows run on with the routing they had.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChangeError {
    /// Another change is being applied; changes are applied one at a time.
    #[error("another topology change is being applied; try again once it took effect")]
    Busy,
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
    held: Vec<Arc<FlowControl>>,
    new_links: Vec<LinkSpec>,
    _one_at_a_time: OwnedMutexGuard<()>,
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

    /// Holds every flow and reads the cut for a change to `after`, which must keep every
    /// cluster and link the engine runs as they are and may add clusters and links.
    /// Returns once every flow is stopped and the cut is read; the flows stay held until
    /// the change is applied or dropped.
    pub async fn prepare_change(&self, after: EngineSpec) -> Result<PreparedChange, ChangeError> {
        let engine = self.engine.clone();
        let guard = engine
            .changing
            .clone()
            .try_lock_owned()
            .map_err(|_| ChangeError::Busy)?;
        let new_links = {
            let before = engine.spec.lock().expect("engine spec lock");
            additions(&before, &after)?
        };
        let held: Vec<Arc<FlowControl>> = self
            .flows
            .read()
            .expect("flows lock")
            .values()
            .cloned()
            .collect();
        // Built before the holds: a change that fails releases them (Drop).
        let mut prepared = PreparedChange {
            engine: engine.clone(),
            after,
            cut: TopologyCut::new(),
            held,
            new_links,
            _one_at_a_time: guard,
        };
        for c in &prepared.held {
            c.desired
                .send_if_modified(|d| !std::mem::replace(&mut d.held, true));
        }
        for c in &prepared.held {
            wait_stopped(c, &engine).await?;
        }
        let spec = prepared.after.clone();
        prepared.cut = tokio::task::spawn_blocking(move || read_cut(&spec))
            .await
            .map_err(|e| ChangeError::Cut {
                cluster: "(all)".into(),
                error: e.to_string(),
            })??;
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

    /// Starts the flows again routed by the history with this change, and the flows of
    /// the new links. Returns the history now in effect.
    pub fn apply(self) -> History {
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
            "Topology change applied: every flow routes by the new links from the cut on."
        );
        history
        // Drop releases the held flows.
    }
}

impl Drop for PreparedChange {
    fn drop(&mut self) {
        for c in &self.held {
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

/// The links `after` adds to `before`, which it must otherwise keep as they are.
fn additions(before: &EngineSpec, after: &EngineSpec) -> Result<Vec<LinkSpec>, ChangeError> {
    let unsupported = |what: String| {
        Err(ChangeError::Unsupported(format!(
            "{what}: a running engine applies added clusters and links only (removing or changing one is not built yet); change the config file and restart"
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
    for l in &before.links {
        match after_links.get(l.name.as_str()) {
            None => return unsupported(format!("link {:?} is removed", l.name)),
            Some(a)
                if ends(before, l) != ends(after, a)
                    || !same_selection(&l.topics, &a.topics)
                    || l.start != a.start
                    || l.in_flight_bytes != a.in_flight_bytes =>
            {
                return unsupported(format!("link {:?} changes", l.name));
            }
            Some(_) => {}
        }
    }
    Ok(after
        .links
        .iter()
        .filter(|a| !before.links.iter().any(|l| l.name == a.name))
        .cloned()
        .collect())
}

fn same_cluster(a: &ClusterSpec, b: &ClusterSpec) -> bool {
    a.id == b.id
        && a.bootstrap_servers == b.bootstrap_servers
        && a.options == b.options
        && a.producer == b.producer
        && a.consumer == b.consumer
}

fn same_selection(a: &TopicSelection, b: &TopicSelection) -> bool {
    let s = |v: &[regex::Regex]| v.iter().map(|r| r.as_str().to_string()).collect::<Vec<_>>();
    s(&a.include) == s(&b.include) && s(&a.exclude) == s(&b.exclude)
}

fn same_limits(a: &EngineSpec, b: &EngineSpec) -> bool {
    let (x, y) = (&a.limits, &b.limits);
    x.refresh_interval == y.refresh_interval
        && x.commit_interval == y.commit_interval
        && x.request_timeout == y.request_timeout
        && x.stall_timeout == y.stall_timeout
}

/// The cut: on every cluster of `spec`, the end offset of every partition of every
/// topic a link of that cluster selects. Every such partition is named, or the cut is
/// not taken: a partition missing from it would count its old records as after the
/// change. Blocking.
fn read_cut(spec: &EngineSpec) -> Result<TopologyCut, ChangeError> {
    let timeout: Duration = spec.limits.request_timeout;
    let mut cut = TopologyCut::new();
    for (i, c) in spec.clusters.iter().enumerate() {
        let fail = |error: String| ChangeError::Cut {
            cluster: c.id.clone(),
            error,
        };
        let selections: Vec<&TopicSelection> = spec
            .links
            .iter()
            .filter(|l| l.clusters.contains(&i))
            .map(|l| &l.topics)
            .collect();
        if selections.is_empty() {
            continue;
        }
        let client: BaseConsumer = clients::scanner(c, &format!("duplex-cut-{}", c.id))
            .create()
            .map_err(|e| fail(format!("cannot create a client: {e}")))?;
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
