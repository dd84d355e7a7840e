//! The service's wiring: the API server, the state rebuilt from its log, the engine
//! started from the state, and the two kept in step.
//!
//! Start order: the API binds first (health says NOT_SERVING, the Duplex services answer
//! UNAVAILABLE), the log is folded and the config file applied to it, the engine starts
//! with the flows the state says are paused kept paused, then the API is ready. From
//! then on every appended event reaches the engine in log order (the reconciler), and
//! every change of a flow's state is recorded as an event.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use duplex_sync::SyncError;
use duplex_sync::control::{EngineHandle, Transition};
use duplex_sync::metrics::Registry;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::api::{self, Api, rates::Rates};
use crate::config::Config;
use crate::state::log::{Log, LogError};
use crate::state::{Payload, Store};

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// `api.listen` could not be bound.
    #[error("api.listen: cannot bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The event log could not be opened, read or written.
    #[error("state.dir: {0}")]
    Log(#[from] LogError),
}

/// A started service.
pub struct Service {
    /// Where the API listens.
    pub api_addr: SocketAddr,
    /// The state.
    pub store: Arc<Store>,
    /// The engine's handle.
    pub engine: EngineHandle,
    /// Completes when the engine has stopped (see `duplex_sync::engine::Started::run`).
    pub run: Pin<Box<dyn Future<Output = Result<(), SyncError>> + Send>>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("api_addr", &self.api_addr)
            .finish_non_exhaustive()
    }
}

/// Starts the service for `config` with its log in `state_dir`; `file` names the config
/// in the log (`ServiceStarted`).
pub async fn start(
    config: &Config,
    state_dir: &Path,
    file: &str,
    registry: Arc<Registry>,
    cancel: CancellationToken,
) -> Result<Service, StartError> {
    let addr = config.api_listen();
    let server = api::Server::bind(addr, cancel.clone())
        .await
        .map_err(|source| StartError::Bind { addr, source })?;
    info!(addr = %server.addr, "Serving the gRPC API (health NOT_SERVING until the state is rebuilt).");
    let dir = state_dir.to_owned();
    let log = tokio::task::spawn_blocking(move || Log::open(&dir))
        .await
        .expect("log open does not panic")?;
    let store = Store::open(log)?;
    crate::state::config::seed(&store, config, file)?;
    let state = store.state();
    if !state.paused.is_empty() {
        info!(flows = ?state.paused, "Flows paused by an operator stay paused until resumed.");
    }
    let spec = config.engine_spec();
    let started = duplex_sync::engine::start(&spec, &registry, &state.paused, cancel.clone());
    let engine = started.handle.clone();
    let handle = engine.clone();
    store.set_reconciler(Box::new(move |events| {
        for e in events {
            // A flow the engine does not run was refused before it was recorded; an
            // error here could only come from a config changed under a running engine.
            let asked = match &e.payload {
                Payload::FlowPaused { flow, .. } => handle.ask_pause(flow),
                Payload::FlowResumed { flow, .. } => handle.ask_resume(flow),
                _ => Ok(()),
            };
            if let Err(err) = asked {
                warn!(seq = e.seq, error = %err, "An event could not be applied to the engine.");
            }
        }
    }));
    tokio::spawn(record_transitions(store.clone(), started.transitions));
    server
        .ready(Api {
            store: store.clone(),
            engine: engine.clone(),
            spec: Arc::new(spec),
            rates: Rates::start(engine.clone(), cancel.clone()),
            stop: cancel,
        })
        .await;
    info!(
        revision = store.revision(),
        "State rebuilt from the event log; the API is serving."
    );
    // Once the engine has stopped, the reconciler lets go of its handle, and with it
    // the flows' transition senders: the recorder ends and the log closes.
    let run = {
        let store = store.clone();
        Box::pin(async move {
            let r = started.run.await;
            store.clear_reconciler();
            r
        })
    };
    Ok(Service {
        api_addr: server.addr,
        store,
        engine,
        run,
    })
}

/// Records every change of a flow's state, in order, as `FlowStateChanged`.
async fn record_transitions(store: Arc<Store>, mut rx: mpsc::UnboundedReceiver<Transition>) {
    while let Some(t) = rx.recv().await {
        let state = &t.status.state;
        let payload = Payload::FlowStateChanged {
            flow: t.flow,
            state: state.name().to_string(),
            error: state.error().map(str::to_string),
        };
        let log = Arc::clone(&store);
        let recorded = tokio::task::spawn_blocking(move || log.record(vec![payload])).await;
        match recorded {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => warn!(error = %e, "A flow's state change could not be recorded."),
            Err(e) => warn!(error = %e, "Recording a flow's state change failed."),
        }
    }
}
