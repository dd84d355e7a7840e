//! One flow's supervisor: runs it, restarts it after retriable errors, stops it when it
//! is paused or held for a change, and waits for an operator after it faulted.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::control::{Desired, FlowControl, FlowState};
use crate::error::SyncError;
use crate::flow::Flow;

/// Runs one flow, restarting it after retriable errors, pausing and resuming it when
/// asked, until cancelled. A flow that fails for good waits for an operator's resume
/// (or pause); its error is returned only if the engine is stopped meanwhile.
pub(super) async fn supervise(
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
        let d = *desired.borrow_and_update();
        if d.retired {
            info!(flow = %name, "Flow retired: its link is removed and nothing it owed is left to carry.");
            flow.metrics.up.store(0, Relaxed);
            status.set(FlowState::Stopped);
            return Ok(());
        }
        if d.stopped() {
            status.set(FlowState::Paused);
            flow.metrics.up.store(1, Relaxed);
            if d.paused {
                info!(flow = %name, "Flow paused: its positions are committed; it starts again when resumed.");
            } else {
                info!(flow = %name, "Flow held for a topology change: its positions are committed; it starts again with the new routes.");
            }
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
                        Ok(()) if desired.borrow().stopped() => {
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
                if desired.borrow().stopped() {
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
                    if d.paused || d.retired || d.resumes != resumes {
                        break;
                    }
                }
                let d = *desired.borrow();
                if !d.paused && !d.retired {
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
