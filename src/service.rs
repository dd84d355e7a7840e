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
use tokio_util::task::TaskTracker;
use tonic::transport::{Identity, ServerTlsConfig};
use tracing::{info, warn};

use crate::api::{self, Api, rates::Rates};
use crate::config::{Config, ConfigError};
use crate::state::log::{Log, LogError};
use crate::state::{Payload, Store};
use crate::verify::runs::Runs;

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The API could not be served (address, TLS identity).
    #[error(transparent)]
    Bind(#[from] api::BindError),
    /// A token or TLS file could not be read, or holds nothing usable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The event log could not be opened, read or written.
    #[error("state.dir: {0}")]
    Log(#[from] LogError),
    /// The log's links cannot run on the config file's clusters.
    #[error("the event log's topology cannot run: {0}")]
    Plan(String),
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
    let server = api::Server::bind(config.api_listen(), security(config)?, cancel.clone()).await?;
    let api_addr = server.addr;
    info!(addr = %api_addr, "Serving the gRPC API (health NOT_SERVING until the state is rebuilt).");
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
    let (spec, history) =
        crate::state::config::engine_plan(config, &state).map_err(StartError::Plan)?;
    if history.changes() > 0 {
        info!(
            links = spec.links.len(),
            changes = history.changes(),
            "Running the links of the event log: the config file is as last applied, and topology changes were recorded since."
        );
    }
    let spec = Arc::new(spec);
    let started = duplex_sync::engine::start(
        &spec,
        Some(history),
        &registry,
        &state.paused,
        cancel.clone(),
    );
    let engine = started.handle.clone();
    // The translation index is a cache: one that cannot be opened costs full reads.
    let index = config
        .offsets
        .index
        .then(|| crate::offsets::store::open(state_dir));
    let index = match index {
        Some(Err(e)) => {
            warn!(error = %e, "Offset translations read the partitions in full.");
            None
        }
        Some(Ok(ix)) => Some(ix),
        None => None,
    };
    let runs = match Runs::open(store.clone(), engine.clone(), state_dir) {
        Ok(runs) => runs,
        Err(e) => {
            // Nothing serves this engine: stop it with the start that failed.
            cancel.cancel();
            return Err(e.into());
        }
    };
    let handle = engine.clone();
    let pending_change: Arc<std::sync::Mutex<Option<duplex_sync::engine::PreparedChange>>> =
        Arc::new(std::sync::Mutex::new(None));
    let pending = Arc::clone(&pending_change);
    store.set_reconciler(Box::new(move |events| {
        for e in events {
            // A flow the engine does not run was refused before it was recorded; an
            // error here could only come from a config changed under a running engine.
            let asked = match &e.payload {
                Payload::FlowPaused { flow, .. } => handle.ask_pause(flow),
                Payload::FlowResumed { flow, .. } => handle.ask_resume(flow),
                Payload::TopologyChanged { .. } => {
                    // Prepared by the handler that recorded it, under this lock's order.
                    match pending.lock().expect("pending change lock").take() {
                        Some(prepared) => {
                            prepared.apply();
                        }
                        None => warn!(seq = e.seq, "A topology change was recorded without being prepared; it applies at the next start."),
                    }
                    Ok(())
                }
                _ => Ok(()),
            };
            if let Err(err) = asked {
                warn!(seq = e.seq, error = %err, "An event could not be applied to the engine.");
            }
        }
    }));
    let engine_done = CancellationToken::new();
    let recorder = tokio::spawn(record_each(
        store.clone(),
        started.transitions,
        engine_done.clone(),
        "a flow's state change",
        |t, _| Some(transition_event(t)),
    ));
    // A link not recorded removed before a stop drains again at the next start.
    let removals = tokio::spawn(record_each(
        store.clone(),
        started.removed,
        engine_done.clone(),
        "a drained link's removal",
        |link, _| Some(Payload::LinkRemoved { link }),
    ));
    // A change not recorded settled before a stop settles again at the next start. No
    // other change is accepted while one settles, so the one unsettled is the one the
    // engine announces.
    let settlements = tokio::spawn(record_each(
        store.clone(),
        started.settled,
        engine_done.clone(),
        "a settled topology change",
        |(), store| {
            store
                .with_state(|s| s.settling)
                .map(|change| Payload::TopologySettled { change })
        },
    ));
    let api_stop = server.stop_token();
    server
        .ready(Api {
            store: store.clone(),
            engine: engine.clone(),
            pending_change,
            rates: Rates::start(engine.clone(), api_stop.clone()),
            runs: runs.clone(),
            stop: api_stop,
            tasks: TaskTracker::new(),
            offsets: crate::api::offsets::Gate::with_index(index),
        })
        .await;
    info!(
        revision = store.revision(),
        "State rebuilt from the event log; the API is serving."
    );
    // Once the engine has stopped, no flow changes state any more: the reconciler lets
    // go, the API stops (an engine that stopped on its own ends the service), the
    // recorder writes what is queued and ends. `run` completes once nothing but the
    // caller's `Service` holds the store: the log closes when the caller drops it.
    {
        // A parity run stops as soon as the service is asked to (not after the drain).
        // Weak: a service whose engine stopped on its own lets go of its runs at once.
        let (runs, cancel) = (Arc::downgrade(&runs), cancel.clone());
        tokio::spawn(async move {
            cancel.cancelled().await;
            if let Some(runs) = runs.upgrade() {
                runs.stop_all();
            }
        });
    }
    let run = {
        let store = store.clone();
        Box::pin(async move {
            let r = started.run.await;
            store.clear_reconciler();
            runs.stopped().await;
            server.stopped().await;
            engine_done.cancel();
            if let Err(e) = recorder.await {
                warn!(error = %e, "Recording flow state changes failed.");
            }
            if let Err(e) = removals.await {
                warn!(error = %e, "Recording drained links failed.");
            }
            if let Err(e) = settlements.await {
                warn!(error = %e, "Recording settled topology changes failed.");
            }
            r
        })
    };
    Ok(Service {
        api_addr,
        store,
        engine,
        run,
    })
}

/// The API's tokens and TLS identity, files read.
fn security(config: &Config) -> Result<api::Security, StartError> {
    let tokens = config.api.tokens()?;
    if tokens.is_empty() {
        info!("No [[api.tokens]]: the API is loopback only and every caller may change the mesh.");
    } else if config.api.tls.is_none() && !config.api_listen().ip().is_loopback() {
        warn!(
            "The API takes bearer tokens over plain HTTP/2 on a non-loopback address: configure [api.tls] so they do not cross the network in clear text."
        );
    }
    let tls = config
        .api
        .tls_pem()?
        .map(|(cert, key)| ServerTlsConfig::new().identity(Identity::from_pem(cert, key)));
    Ok(api::Security {
        auth: api::auth::Auth::new(tokens),
        tls,
    })
}

/// Records each of the engine's announcements as the event `payload` makes of it, in
/// order, until the engine is `done` and what it queued is written (`what` names them in
/// warnings). What is not recorded before a stop is what the next start finds again: a
/// flow's state is observed anew, a removed link drains again.
async fn record_each<T: Send + 'static>(
    store: Arc<Store>,
    mut rx: mpsc::UnboundedReceiver<T>,
    done: CancellationToken,
    what: &'static str,
    payload: impl Fn(T, &Store) -> Option<Payload>,
) {
    loop {
        let t = tokio::select! {
            biased;
            t = rx.recv() => t,
            _ = done.cancelled() => rx.try_recv().ok(),
        };
        let Some(t) = t else { return };
        let Some(payload) = payload(t, &store) else {
            continue;
        };
        let log = Arc::clone(&store);
        let recorded = tokio::task::spawn_blocking(move || log.record(vec![payload])).await;
        match recorded {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => warn!(error = %e, "{what} could not be recorded."),
            Err(e) => warn!(error = %e, "Recording {what} failed."),
        }
    }
}

/// A flow's state change as `FlowStateChanged`.
fn transition_event(t: Transition) -> Payload {
    let state = &t.status.state;
    Payload::FlowStateChanged {
        flow: t.flow,
        state: state.name().to_string(),
        error: state.error().map(str::to_string),
    }
}
