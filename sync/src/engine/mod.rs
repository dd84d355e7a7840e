//! The engine: two flows per link, each supervised in its own task.
//!
//! A flow that fails with a retriable error is restarted with backoff: new clients,
//! resume from what the target holds. A flow that fails for good (a refused record, an
//! unreadable header) stops loudly, and the others carry on; an operator's resume
//! ([`EngineHandle`]) starts it again. A paused flow is stopped like at shutdown and
//! started again like after a restart. A topology change (change.rs) holds every flow,
//! reads the cut, and starts them again with the new routes, new flows beside them.

mod change;
mod settle;
mod supervise;

pub use change::{ChangeError, PreparedChange};

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::control::{Controls, EngineHandle, FlowControl, FlowState, Transition};
use crate::error::SyncError;
use crate::flow::{Flow, FlowSpec};
use crate::metrics::Registry;
use crate::routing::{FlowRoutes, History, LiveHistory, Routes, Settling};
use crate::spec::{EngineSpec, LinkSpec};
use crate::topic_configs::Policy;

/// How long a stopping flow waits for outstanding deliveries.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The routing table of a spec: its link graph with each link's topic selection.
pub fn routes(spec: &EngineSpec) -> Routes {
    let links = spec
        .links
        .iter()
        .map(|l| (l.clusters, l.topics.clone()))
        .collect();
    let quiet = spec
        .links
        .iter()
        .filter(|l| !l.topic_configs.enabled)
        .map(|l| l.clusters)
        .collect();
    Routes::new(spec.clusters.iter().map(|c| c.id.clone()).collect(), links).with_quiet_links(quiet)
}

/// The flows of a spec, two per link, in link order, routed by a history that has not
/// changed since the spec.
pub fn flow_specs(spec: &EngineSpec) -> Vec<FlowSpec> {
    let history = Arc::new(LiveHistory::new(History::new(routes(spec))));
    spec.links
        .iter()
        .flat_map(|l| link_flows(spec, l, &history))
        .collect()
}

/// The two flows of link `l` of `spec`, routed by `history`.
fn link_flows(spec: &EngineSpec, l: &LinkSpec, history: &Arc<LiveHistory>) -> [FlowSpec; 2] {
    let flow = |s: usize, t: usize| FlowSpec {
        link: l.name.clone(),
        source: spec.clusters[s].clone(),
        target: spec.clusters[t].clone(),
        start: l.start,
        in_flight_bytes: l.in_flight_bytes,
        limits: spec.limits.clone(),
        routes: FlowRoutes::new(history.clone(), &spec.clusters[s].id, &spec.clusters[t].id),
        drain_timeout: DRAIN_TIMEOUT,
        configs: Policy::new(&spec.topic_configs, &l.topic_configs),
    };
    [
        flow(l.clusters[0], l.clusters[1]),
        flow(l.clusters[1], l.clusters[0]),
    ]
}

/// Runs every flow until `cancel` fires. Returns an error only when every flow has
/// stopped for good; the first such error is returned.
pub async fn run(
    spec: &EngineSpec,
    registry: &Arc<Registry>,
    cancel: CancellationToken,
) -> Result<(), SyncError> {
    start(spec, None, registry, &BTreeSet::new(), cancel)
        .run
        .await
}

/// A started engine.
pub struct Started {
    /// Pauses and resumes its flows, shows their state, changes the topology.
    pub handle: EngineHandle,
    /// Every change of a flow's state, in order (the service records them).
    pub transitions: mpsc::UnboundedReceiver<Transition>,
    /// The name of each removed link once its drain is over and its flows are retired
    /// (the service records `LinkRemoved`).
    pub removed: mpsc::UnboundedReceiver<String>,
    /// Once for each change when it settled: drained, removed links retired, order
    /// restored (the service records `TopologySettled`).
    pub settled: mpsc::UnboundedReceiver<()>,
    /// Completes once every flow has stopped: `cancel` fired (Ok), or every flow
    /// faulted at once (the first error).
    pub run: std::pin::Pin<Box<dyn Future<Output = Result<(), SyncError>> + Send>>,
}

impl std::fmt::Debug for Started {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Started")
            .field("handle", &self.handle)
            .finish()
    }
}

/// What the engine's handles share to change the topology while it runs.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The spec the flows run now.
    pub spec: Mutex<EngineSpec>,
    /// The routing every flow reads.
    pub history: Arc<LiveHistory>,
    pub registry: Arc<Registry>,
    pub controls: Controls,
    pub cancel: CancellationToken,
    /// New flows, for the engine's task set.
    pub spawn: mpsc::UnboundedSender<(Flow, Arc<FlowControl>)>,
    /// One change at a time; settling the last change holds it too.
    pub changing: Arc<tokio::sync::Mutex<()>>,
    /// Announces removed links once drained.
    pub removed: mpsc::UnboundedSender<String>,
    /// Announces each change once settled.
    pub settled: mpsc::UnboundedSender<()>,
    /// Where settling the last change is, and what it waits for (settle.rs).
    pub drain_status: Mutex<Option<String>>,
}

impl Shared {
    /// Registers a flow, paused or not, and hands it to the engine to run.
    pub(crate) fn add_flow(&self, fs: FlowSpec, paused: bool) {
        let name = fs.name();
        let metrics = self.registry.flow(&fs.link, &fs.source.id, &fs.target.id);
        let ctl = self.controls.add(
            &name,
            &fs.link,
            (&fs.source.id, &fs.target.id),
            paused,
            metrics.clone(),
        );
        let flow = Flow::new(Arc::new(fs), metrics)
            .with_status(ctl.status.clone(), ctl.acknowledged.clone());
        // The receiver lives as long as the engine runs; a flow added after it stopped
        // has nothing to run on, and nothing to replicate.
        let _ = self.spawn.send((flow, ctl));
    }
}

/// Starts every flow of `spec` (those named in `paused` stay paused until resumed) and
/// returns their handle. `history`: the routing across the topology changes recorded
/// so far, whose current routes are the spec's (`None`: none recorded). Must be called
/// inside a Tokio runtime.
pub fn start(
    spec: &EngineSpec,
    history: Option<History>,
    registry: &Arc<Registry>,
    paused: &BTreeSet<String>,
    cancel: CancellationToken,
) -> Started {
    let (controls, transitions) = Controls::new();
    let (spawn, mut spawned) = mpsc::unbounded_channel();
    let (removed, removed_rx) = mpsc::unbounded_channel();
    let (settled, settled_rx) = mpsc::unbounded_channel();
    let history = history.unwrap_or_else(|| History::new(routes(spec)));
    let last_cut = history.last_cut().cloned();
    let shared = Arc::new(Shared {
        spec: Mutex::new(spec.clone()),
        history: Arc::new(LiveHistory::new(history)),
        registry: registry.clone(),
        controls: controls.clone(),
        cancel: cancel.clone(),
        spawn,
        changing: Arc::default(),
        removed,
        settled,
        drain_status: Mutex::new(None),
    });
    for l in spec.all_links() {
        for fs in link_flows(spec, l, &shared.history) {
            let held = paused.contains(&fs.name());
            shared.add_flow(fs, held);
        }
    }
    if !spec.draining.is_empty() || shared.history.get().settling() != Settling::Settled {
        // Applied before a restart and not settled yet: settled again from the cut,
        // deferring what it newly brings until the drain is over.
        let history = (*shared.history.get()).clone();
        if history.settling() != Settling::Settled {
            shared
                .history
                .set(history.with_settling(Settling::Deferring));
        }
        let guard = shared
            .changing
            .clone()
            .try_lock_owned()
            .expect("nothing else holds it yet");
        settle::spawn(shared.clone(), last_cut, guard);
    }
    let any_change = controls.any_change.clone();
    let flows = controls.flows.clone();
    let handle = EngineHandle {
        flows: controls.flows.clone(),
        engine: shared,
    };
    let run = async move {
        let mut tasks = JoinSet::new();
        let mut first_fault: Option<SyncError> = None;
        let mut all_faulted = false;
        loop {
            tokio::select! {
                biased;
                Some((flow, ctl)) = spawned.recv() => {
                    tasks.spawn(supervise::supervise(flow, ctl, cancel.clone()));
                }
                done = tasks.join_next(), if !tasks.is_empty() => match done {
                    None => {}
                    Some(Ok(Err(e))) => { first_fault.get_or_insert(e); }
                    Some(Ok(Ok(()))) => {}
                    Some(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                    Some(Err(_)) => {}
                },
                _ = any_change.notified() => {
                    // Every flow faulted at once: nothing replicates and nothing will
                    // until an operator acts, so the process says so by stopping.
                    let all = {
                        let flows = flows.read().expect("flows lock");
                        !flows.is_empty() && flows.values().all(|c| matches!(c.status.get(), FlowState::Faulted(_)))
                    };
                    if all {
                        all_faulted = true;
                        cancel.cancel();
                    }
                }
                _ = cancel.cancelled() => {
                    while let Ok((flow, ctl)) = spawned.try_recv() {
                        tasks.spawn(supervise::supervise(flow, ctl, cancel.clone()));
                    }
                    while let Some(done) = tasks.join_next().await {
                        match done {
                            Ok(Err(e)) => { first_fault.get_or_insert(e); }
                            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                            _ => {}
                        }
                    }
                    // A faulted flow's error ends the engine only when every flow
                    // faulted; a stop asked for is a clean stop.
                    return match first_fault {
                        Some(e) if all_faulted => Err(e),
                        _ => Ok(()),
                    };
                }
            }
        }
    };
    // The engine runs whether or not its caller awaits `run` yet: flows added by a
    // change are spawned by this task.
    let task = tokio::spawn(run);
    let run = async move {
        match task.await {
            Ok(r) => r,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("the engine task was cancelled: {e}"),
        }
    };
    Started {
        handle,
        transitions,
        removed: removed_rx,
        settled: settled_rx,
        run: Box::pin(run),
    }
}
