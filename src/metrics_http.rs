//! OpenMetrics text (prometheus-client's encoding) at `GET /metrics`, served until the
//! shutdown token fires.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::header;
use axum::routing::get;
use duplex_sync::metrics::Registry;
use tokio_util::sync::CancellationToken;

/// Binds `addr` and serves the registry. Returns the bound address (port 0 picks one).
pub async fn serve(
    addr: SocketAddr,
    registry: Arc<Registry>,
    shutdown: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let r = registry.clone();
            async move {
                (
                    [(header::CONTENT_TYPE, duplex_sync::metrics::CONTENT_TYPE)],
                    r.render(),
                )
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
    });
    Ok(bound)
}
