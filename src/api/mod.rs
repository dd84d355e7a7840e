//! The gRPC API (docs/api.md): thin handlers that turn requests into commands on the
//! state ([`crate::state`]) and answers from the state and the engine's handle.
//!
//! - [`topology`]: `duplex.v1.TopologyService` (read the mesh, pause, resume).
//! - [`events`]: `duplex.v1.EventService` (list and watch the log).
//! - [`error`]: the one mapping from domain errors to gRPC codes.
//! - [`rates`]: per-flow rates for the topology's counters.
//!
//! Also served: `grpc.health.v1` (each service NOT_SERVING until the state is rebuilt)
//! and server reflection v1 and v1alpha.

pub mod error;
pub mod events;
pub mod rates;
pub mod topology;

use std::net::SocketAddr;
use std::sync::Arc;

use duplex_proto::v1::event_service_server::EventServiceServer;
use duplex_proto::v1::topology_service_server::TopologyServiceServer;
use duplex_sync::control::EngineHandle;
use duplex_sync::spec::EngineSpec;
use tokio::net::TcpListener;
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;
use tonic::Status;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use xxhash_rust::xxh3::xxh3_64;

use crate::state::Store;

use self::rates::Rates;

/// The Duplex services, as health and reflection name them.
pub const SERVICES: [&str; 2] = ["duplex.v1.TopologyService", "duplex.v1.EventService"];

/// What the handlers serve from, once the state is rebuilt.
#[derive(Debug)]
pub struct Api {
    /// The state and its log.
    pub store: Arc<Store>,
    /// The running engine.
    pub engine: EngineHandle,
    /// What the engine runs (for routes).
    pub spec: Arc<EngineSpec>,
    /// Per-flow rates.
    pub rates: Rates,
    /// Fires when the service shuts down: open watches end.
    pub stop: CancellationToken,
}

/// The API once ready; empty while the state is being rebuilt.
#[derive(Debug, Clone, Default)]
pub struct Ready(Arc<OnceCell<Arc<Api>>>);

impl Ready {
    /// The API, or UNAVAILABLE while the state is being rebuilt.
    pub fn get(&self) -> Result<&Arc<Api>, Status> {
        self.0.get().ok_or_else(|| {
            Status::unavailable(
                "the service is rebuilding its state from the event log; retry shortly",
            )
        })
    }
}

/// A bound API server; [`Server::ready`] makes its services answer.
#[derive(Debug)]
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    ready: Ready,
    health: HealthReporter,
}

impl Server {
    /// Binds `addr` and serves health (every Duplex service NOT_SERVING), reflection and
    /// the Duplex services (UNAVAILABLE until [`Server::ready`]) until `cancel`.
    pub async fn bind(addr: SocketAddr, cancel: CancellationToken) -> std::io::Result<Server> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (health, health_service) = tonic_health::server::health_reporter();
        for s in SERVICES {
            health
                .set_service_status(s, ServingStatus::NotServing)
                .await;
        }
        health
            .set_service_status("", ServingStatus::NotServing)
            .await;
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(duplex_proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        let v1 = reflection().build_v1().expect("descriptor sets are valid");
        let v1alpha = reflection()
            .build_v1alpha()
            .expect("descriptor sets are valid");
        let ready = Ready::default();
        let router = tonic::transport::Server::builder()
            .add_service(health_service)
            .add_service(v1)
            .add_service(v1alpha)
            .add_service(TopologyServiceServer::new(topology::Topology(
                ready.clone(),
            )))
            .add_service(EventServiceServer::new(events::Events(ready.clone())));
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        tokio::spawn(async move {
            if let Err(e) = router
                .serve_with_incoming_shutdown(incoming, cancel.cancelled_owned())
                .await
            {
                tracing::error!(error = %e, "The API server stopped.");
            }
        });
        Ok(Server {
            addr,
            ready,
            health,
        })
    }

    /// The state is rebuilt and the engine runs: every service answers, SERVING.
    pub async fn ready(&self, api: Api) {
        let _ = self.ready.0.set(Arc::new(api));
        for s in SERVICES {
            self.health
                .set_service_status(s, ServingStatus::Serving)
                .await;
        }
        self.health
            .set_service_status("", ServingStatus::Serving)
            .await;
    }
}

/// Who is calling: the token's name once tokens exist, `anonymous` until then.
pub fn actor<T>(_req: &tonic::Request<T>) -> String {
    "anonymous".to_string()
}

/// An empty idempotency key means none.
pub fn request_id(id: &str) -> Option<String> {
    (!id.is_empty()).then(|| id.to_string())
}

/// xxh3-64 of a request's encoding with its idempotency key cleared: the same key must
/// come with the same request.
pub fn fingerprint<M: prost::Message + Clone>(req: &M, clear_key: impl FnOnce(&mut M)) -> u64 {
    let mut r = req.clone();
    clear_key(&mut r);
    xxh3_64(&r.encode_to_vec())
}

/// A required string field: INVALID_ARGUMENT when empty.
pub fn required<'a>(field: &str, value: &'a str) -> Result<&'a str, Status> {
    if value.trim().is_empty() {
        return Err(error::invalid(field, "is required"));
    }
    Ok(value)
}
