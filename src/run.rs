//! `duplex run`: loads the config, serves metrics and the API, runs the engine from the
//! state until SIGTERM or Ctrl-C, then drains deliveries and commits before exiting 0.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use duplex_sync::engine::DRAIN_TIMEOUT;
use duplex_sync::metrics::Registry;
use duplex_sync::spec::EngineSpec;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::Config;

/// How long shutdown may take beyond the flows' drain (commits, closing clients).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How long the runtime waits for blocking client calls once the flows have stopped.
const BLOCKING_GRACE: Duration = Duration::from_secs(1);

/// Runs a config file; exit 2 on a bad config, 1 when every flow failed, 0 otherwise.
pub fn run_file(path: &Path) -> ExitCode {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let code = rt.block_on(async {
        let cancel = CancellationToken::new();
        tokio::spawn(shutdown_on_signal(cancel.clone()));
        let registry = Arc::new(Registry::default());
        if let Some(addr) = config.metrics_listen() {
            match crate::metrics_http::serve(addr, registry.clone(), cancel.clone()).await {
                Ok(bound) => info!(%bound, "Serving Prometheus metrics at /metrics."),
                Err(e) => {
                    eprintln!("error: metrics.listen: cannot bind {addr}: {e}");
                    return ExitCode::from(2);
                }
            }
        }
        let state_dir = config.state_dir(path);
        let service = match crate::service::start(
            &config,
            &state_dir,
            &path.display().to_string(),
            registry.clone(),
            cancel.clone(),
        )
        .await
        {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        };
        let engine = service.run;
        // The flows drain for at most DRAIN_TIMEOUT after a signal; this bounds the rest
        // (a client whose broker stopped answering can block in a request or on close).
        let deadline = async {
            cancel.cancelled().await;
            tokio::time::sleep(DRAIN_TIMEOUT + SHUTDOWN_GRACE).await;
        };
        tokio::select! {
            r = engine => match r {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    error!(error = %e, "Every flow has stopped.");
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            },
            _ = deadline => {
                warn!(after = ?(DRAIN_TIMEOUT + SHUTDOWN_GRACE), "The flows did not all stop in time after the signal (a broker that stopped answering?); exiting anyway. The next start resumes from what the targets hold.");
                // Not through the runtime's drop: it would wait for the clients' blocking
                // calls, and their destructors may block too.
                std::process::exit(0);
            }
        }
    });
    // A blocking client call abandoned by a stopped flow may still be waiting for a
    // broker; the runtime's drop would wait for it without bound.
    rt.shutdown_timeout(BLOCKING_GRACE);
    code
}

/// Runs the engine until `cancel` fires; the seam tests and the demo use.
pub async fn run(
    spec: &EngineSpec,
    registry: &Arc<Registry>,
    cancel: CancellationToken,
) -> Result<(), duplex_sync::SyncError> {
    info!(
        clusters = spec.clusters.len(),
        links = spec.links.len(),
        "Duplex starting."
    );
    duplex_sync::engine::run(spec, registry, cancel).await
}

async fn shutdown_on_signal(cancel: CancellationToken) {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => info!("SIGTERM: draining deliveries and committing, then exiting."),
        _ = tokio::signal::ctrl_c() => info!("Ctrl-C: draining deliveries and committing, then exiting."),
    }
    cancel.cancel();
}
