//! `duplex run`: loads the config, serves metrics, runs the engine until SIGTERM or
//! Ctrl-C, then drains deliveries and commits before exiting 0.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use duplex_sync::metrics::Registry;
use duplex_sync::spec::EngineSpec;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::config::Config;

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
    rt.block_on(async {
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
        match run(&config.engine_spec(), &registry, cancel).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                error!(error = %e, "Every flow has stopped.");
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// Runs the engine until `cancel` fires; the seam tests and the demo use.
pub async fn run(
    spec: &EngineSpec,
    registry: &Registry,
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
