//! The engine: two flows per link, each supervised in its own task.
//!
//! A flow that fails with a retriable error is restarted with backoff: new clients,
//! resume from what the target holds. A flow that fails for good (a refused record, an
//! unreadable header) stops loudly, and the others carry on; an operator's resume
//! ([`EngineHandle`]) starts it again. A paused flow is stopped like at shutdown and
//! started again like after a restart.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::control::{Controls, Desired, EngineHandle, FlowControl, FlowState, Transition};
use crate::error::SyncError;
use crate::flow::{Flow, FlowSpec};
use crate::metrics::Registry;
use crate::routing::{FlowRoutes, Routes};
use crate::spec::EngineSpec;

/// How long a stopping flow waits for outstanding deliveries.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The routing table of a spec: its link graph with each link's topic selection.
pub fn routes(spec: &EngineSpec) -> Routes {
    let links = spec
        .links
        .iter()
        .map(|l| (l.clusters, l.topics.clone()))
        .collect();
    Routes::new(spec.clusters.iter().map(|c| c.id.clone()).collect(), links)
}

/// The flows of a spec, two per link, in link order.
pub fn flow_specs(spec: &EngineSpec) -> Vec<FlowSpec> {
    let routes = Arc::new(routes(spec));
    spec.links
        .iter()
        .flat_map(|l| {
            [
                (l, l.clusters[0], l.clusters[1]),
                (l, l.clusters[1], l.clusters[0]),
            ]
        })
        .map(|(l, s, t)| FlowSpec {
            link: l.name.clone(),
            source: spec.clusters[s].clone(),
            target: spec.clusters[t].clone(),
            topics: l.topics.clone(),
            start: l.start,
            in_flight_bytes: l.in_flight_bytes,
            limits: spec.limits.clone(),
            routes: FlowRoutes::new(routes.clone(), s, t),
            drain_timeout: DRAIN_TIMEOUT,
        })
        .collect()
}

/// Runs every flow until `cancel` fires. Returns an error only when every flow has
/// stopped for good; the first such error is returned.
pub async fn run(
    spec: &EngineSpec,
    registry: &Registry,
    cancel: CancellationToken,
) -> Result<(), SyncError> {
    start(spec, registry, &BTreeSet::new(), cancel).run.await
}

/// A started engine.
pub struct Started {
    /// Pauses and resumes its flows, shows their state.
    pub handle: EngineHandle,
    /// Every change of a flow's state, in order (the service records them).
    pub transitions: mpsc::UnboundedReceiver<Transition>,
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

/// Starts every flow of `spec` (those named in `paused` stay paused until resumed) and
/// returns their handle. Must be called inside a Tokio runtime.
pub fn start(
    spec: &EngineSpec,
    registry: &Registry,
    paused: &BTreeSet<String>,
    cancel: CancellationToken,
) -> Started {
    let (mut controls, transitions) = Controls::new();
    let mut tasks = JoinSet::new();
    for fs in flow_specs(spec) {
        let name = fs.name();
        let metrics = registry.flow(&fs.link, &fs.source.id, &fs.target.id);
        let ctl = controls.add(
            &name,
            &fs.link,
            (&fs.source.id, &fs.target.id),
            paused.contains(&name),
            metrics.clone(),
        );
        let flow = Flow::new(Arc::new(fs), metrics).with_status(ctl.status.clone());
        // Up from the moment it is registered: a reader of the registry never sees a
        // flow that has not started yet as one that stopped, nor as one caught up.
        flow.metrics.up.store(1, Relaxed);
        flow.metrics.lag_unknown.store(1, Relaxed);
        tasks.spawn(supervise(flow, ctl, cancel.clone()));
    }
    let any_change = controls.any_change.clone();
    let flows = controls.flows.clone();
    let handle = EngineHandle::new(controls.flows);
    let run = async move {
        let mut first_fault: Option<SyncError> = None;
        loop {
            tokio::select! {
                done = tasks.join_next() => match done {
                    None => return Ok(()),
                    Some(Ok(Err(e))) => { first_fault.get_or_insert(e); }
                    Some(Ok(Ok(()))) => {}
                    Some(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                    Some(Err(_)) => {}
                },
                _ = any_change.notified() => {
                    // Every flow faulted at once: nothing replicates and nothing will
                    // until an operator acts, so the process says so by stopping.
                    let all = !flows.is_empty() && flows.values().all(|c| matches!(c.status.get(), FlowState::Faulted(_)));
                    if all {
                        cancel.cancel();
                        while let Some(done) = tasks.join_next().await {
                            if let Ok(Err(e)) = done {
                                first_fault.get_or_insert(e);
                            }
                        }
                        return first_fault.map_or(Ok(()), Err);
                    }
                }
            }
        }
    };
    Started {
        handle,
        transitions,
        run: Box::pin(run),
    }
}

/// Runs one flow, restarting it after retriable errors, pausing and resuming it when
/// asked, until cancelled. A flow that fails for good waits for an operator's resume
/// (or pause); its error is returned only if the engine is stopped meanwhile.
async fn supervise(
    flow: Flow,
    ctl: Arc<FlowControl>,
    cancel: CancellationToken,
) -> Result<(), SyncError> {
    let name = flow.spec.name();
    let status = &ctl.status;
    let mut desired = ctl.desired.subscribe();
    let mut backoff = Duration::from_millis(500);
    info!(flow = %name, group = %flow.spec.group_id(), "Flow starting.");
    loop {
        if desired.borrow_and_update().paused {
            status.set(FlowState::Paused);
            flow.metrics.up.store(1, Relaxed);
            info!(flow = %name, "Flow paused: its positions are committed; it starts again when resumed.");
            if !wait_change(&mut desired, &cancel).await {
                status.set(FlowState::Stopped);
                return Ok(());
            }
            continue;
        }
        status.set(FlowState::Starting);
        flow.metrics.up.store(1, Relaxed);
        let run_cancel = cancel.child_token();
        let result = {
            let run = flow.run_once(&run_cancel);
            tokio::pin!(run);
            let mut watching = true;
            loop {
                tokio::select! {
                    r = &mut run => break r,
                    changed = desired.changed(), if watching => match changed {
                        Ok(()) if desired.borrow().paused => {
                            status.set(FlowState::Pausing);
                            info!(flow = %name, "Pausing the flow: draining deliveries and committing.");
                            run_cancel.cancel();
                        }
                        Ok(()) => {}
                        Err(_) => watching = false,
                    },
                }
            }
        };
        match result {
            Ok(()) if cancel.is_cancelled() => {
                info!(flow = %name, "Flow stopped.");
                status.set(FlowState::Stopped);
                return Ok(());
            }
            // Stopped to pause: the loop's top waits for the resume.
            Ok(()) => backoff = Duration::from_millis(500),
            Err(e) if cancel.is_cancelled() => {
                warn!(flow = %name, error = %e, "Flow stopped with an error during shutdown.");
                status.set(FlowState::Stopped);
                return Ok(());
            }
            Err(e) if e.is_retriable() => {
                if matches!(e, SyncError::Stalled { .. }) {
                    flow.note_stall();
                }
                *flow.metrics.last_error.lock().expect("metrics lock") = Some(e.to_string());
                flow.metrics.restarts.fetch_add(1, Relaxed);
                if desired.borrow().paused {
                    continue;
                }
                status.set(FlowState::Restarting(e.to_string()));
                warn!(flow = %name, error = %e, retry_in = ?backoff, "Flow failed; restarting it from what the target holds.");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = cancel.cancelled() => {
                        status.set(FlowState::Stopped);
                        return Ok(());
                    }
                    // A pause asked for meanwhile is honoured at the loop's top.
                    _ = desired.changed() => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
            Err(e) => {
                *flow.metrics.last_error.lock().expect("metrics lock") = Some(e.to_string());
                flow.metrics.up.store(0, Relaxed);
                error!(flow = %name, error = %e, "Flow stopped for good: this needs an operator. No record was skipped.");
                status.set(FlowState::Faulted(e.to_string()));
                // Until an operator resumes or pauses it, or the engine stops.
                let resumes = desired.borrow_and_update().resumes;
                loop {
                    if !wait_change(&mut desired, &cancel).await {
                        // Whoever waits on this flow learns that it will not change.
                        status.set(FlowState::Stopped);
                        return Err(e);
                    }
                    let d = *desired.borrow_and_update();
                    if d.paused || d.resumes != resumes {
                        break;
                    }
                }
                if !desired.borrow().paused {
                    info!(flow = %name, "Flow resumed by an operator after it failed for good.");
                }
                backoff = Duration::from_millis(500);
            }
        }
    }
}

/// Waits for the next change of what is asked of a flow; false once the engine stops.
async fn wait_change(desired: &mut watch::Receiver<Desired>, cancel: &CancellationToken) -> bool {
    tokio::select! {
        changed = desired.changed() => changed.is_ok() || {
            // The handle is gone: nothing will change any more; wait for the stop.
            cancel.cancelled().await;
            false
        },
        _ = cancel.cancelled() => false,
    }
}
