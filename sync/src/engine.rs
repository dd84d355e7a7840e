//! The engine: two flows per link, each supervised in its own task.
//!
//! A flow that fails with a retriable error is restarted with backoff: new clients,
//! resume from what the target holds. A flow that fails for good (a refused record, an
//! unreadable header) stops loudly, and the others carry on.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

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
    let mut tasks = JoinSet::new();
    for fs in flow_specs(spec) {
        let metrics = registry.flow(&fs.link, &fs.source.id, &fs.target.id);
        let flow = Flow::new(Arc::new(fs), metrics);
        // Up from the moment it is registered: a reader of the registry never sees a
        // flow that has not started yet as one that stopped, nor as one caught up.
        flow.metrics.up.store(1, Relaxed);
        flow.metrics.lag_unknown.store(1, Relaxed);
        tasks.spawn(supervise(flow, cancel.clone()));
    }
    let total = tasks.len();
    let mut failed = Vec::new();
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failed.push(e),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => {}
        }
    }
    if !failed.is_empty() && failed.len() == total {
        return Err(failed.remove(0));
    }
    Ok(())
}

/// Runs one flow, restarting it after retriable errors, until cancelled or failed for good.
pub async fn supervise(flow: Flow, cancel: CancellationToken) -> Result<(), SyncError> {
    let name = flow.spec.name();
    let mut backoff = Duration::from_millis(500);
    flow.metrics.up.store(1, Relaxed);
    info!(flow = %name, group = %flow.spec.group_id(), "Flow starting.");
    loop {
        match flow.run_once(&cancel).await {
            Ok(()) => {
                info!(flow = %name, "Flow stopped.");
                return Ok(());
            }
            Err(e) if e.is_retriable() && !cancel.is_cancelled() => {
                *flow.metrics.last_error.lock().expect("metrics lock") = Some(e.to_string());
                flow.metrics.restarts.fetch_add(1, Relaxed);
                warn!(flow = %name, error = %e, retry_in = ?backoff, "Flow failed; restarting it from what the target holds.");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = cancel.cancelled() => return Ok(()),
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
            Err(e) if cancel.is_cancelled() => {
                warn!(flow = %name, error = %e, "Flow stopped with an error during shutdown.");
                return Ok(());
            }
            Err(e) => {
                *flow.metrics.last_error.lock().expect("metrics lock") = Some(e.to_string());
                flow.metrics.up.store(0, Relaxed);
                error!(flow = %name, error = %e, "Flow stopped for good: this needs an operator. No record was skipped.");
                return Err(e);
            }
        }
    }
}
