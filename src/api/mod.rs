//! The gRPC API (docs/api.md): thin handlers that turn requests into commands on the
//! state ([`crate::state`]) and answers from the state and the engine's handle.
//!
//! - [`topology`]: `duplex.v1.TopologyService` (read the mesh, pause, resume).
//! - [`events`]: `duplex.v1.EventService` (list and watch the log).
//! - [`verification`]: `duplex.v1.VerificationService` (parity runs).
//! - [`offsets`]: `duplex.v1.OffsetService` (offset translation, group sync).
//! - [`auth`]: bearer tokens and their roles.
//! - [`error`]: the one mapping from domain errors to gRPC codes.
//! - [`rates`]: per-flow rates for the topology's counters.
//!
//! Also served, without a token: `grpc.health.v1` (each service NOT_SERVING until the
//! state is rebuilt; probes carry no credentials) and server reflection v1 and v1alpha
//! (the schema, which is public in proto/, and no data).

pub mod auth;
pub mod clusters;
pub mod error;
pub mod events;
pub mod keyed;
pub mod links;
pub mod offsets;
pub mod rates;
pub mod topology;
pub mod verification;

use std::net::SocketAddr;
use std::sync::Arc;

use duplex_proto::v1::event_service_server::EventServiceServer;
use duplex_proto::v1::offset_service_server::OffsetServiceServer;
use duplex_proto::v1::topology_service_server::TopologyServiceServer;
use duplex_proto::v1::verification_service_server::VerificationServiceServer;
use duplex_sync::control::EngineHandle;
use tokio::net::TcpListener;
use tokio::sync::OnceCell;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::Status;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use xxhash_rust::xxh3::xxh3_64;

use crate::state::Store;

use self::rates::Rates;

/// How long a shutdown waits for open calls (a pause draining, a watch) to end.
pub const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// The Duplex services, as health and reflection name them.
pub const SERVICES: [&str; 4] = [
    "duplex.v1.TopologyService",
    "duplex.v1.EventService",
    "duplex.v1.VerificationService",
    "duplex.v1.OffsetService",
];

/// What the handlers serve from, once the state is rebuilt.
#[derive(Debug)]
pub struct Api {
    /// The state and its log.
    pub store: Arc<Store>,
    /// The running engine.
    pub engine: EngineHandle,
    /// A topology change prepared (its flows held, its cut read) while its command is
    /// being recorded; the reconciler applies it when `TopologyChanged` is appended.
    pub pending_change: Arc<std::sync::Mutex<Option<duplex_sync::engine::PreparedChange>>>,
    /// Per-flow rates.
    pub rates: Rates,
    /// Parity runs.
    pub runs: Arc<crate::verify::runs::Runs>,
    /// Fires when the service shuts down: open watches end.
    pub stop: CancellationToken,
    /// The tasks behind open watches; the server's end waits for them.
    pub tasks: TaskTracker,
    /// Offset translations and syncs in progress (bounded; syncs one at a time).
    pub offsets: offsets::Gate,
}

/// Why the API could not be served.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// The TLS certificate or key was refused.
    #[error("api.tls: the certificate and key are not usable: {0}")]
    Tls(String),
    /// The address could not be bound.
    #[error("api.listen: cannot bind {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// Who may call, and over what.
#[derive(Debug, Default)]
pub struct Security {
    /// The bearer tokens (none: loopback only, every caller anonymous).
    pub auth: auth::Auth,
    /// The server's TLS identity; plain HTTP/2 without it.
    pub tls: Option<tonic::transport::ServerTlsConfig>,
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
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Server {
    /// Binds `addr` and serves health (every Duplex service NOT_SERVING), reflection and
    /// the Duplex services (UNAVAILABLE until [`Server::ready`], behind `security`'s
    /// tokens) until `cancel` or [`Server::stopped`].
    pub async fn bind(
        addr: SocketAddr,
        security: Security,
        cancel: CancellationToken,
    ) -> Result<Server, BindError> {
        let stop = cancel.child_token();
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = security.tls {
            builder = builder
                .tls_config(tls)
                .map_err(|e| BindError::Tls(e.to_string()))?;
        }
        let listen = |source| BindError::Listen { addr, source };
        let listener = TcpListener::bind(addr).await.map_err(listen)?;
        let addr = listener.local_addr().map_err(listen)?;
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
        let auth = security.auth;
        let router = builder
            .add_service(health_service)
            .add_service(v1)
            .add_service(v1alpha)
            .add_service(TopologyServiceServer::with_interceptor(
                topology::Topology(ready.clone()),
                auth.clone(),
            ))
            .add_service(EventServiceServer::with_interceptor(
                events::Events(ready.clone()),
                auth.clone(),
            ))
            .add_service(VerificationServiceServer::with_interceptor(
                verification::Verifications(ready.clone()),
                auth.clone(),
            ))
            .add_service(OffsetServiceServer::with_interceptor(
                offsets::Offsets(ready.clone()),
                auth,
            ));
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let shutdown = stop.clone().cancelled_owned();
        let task = tokio::spawn(async move {
            if let Err(e) = router
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
            {
                tracing::error!(error = %e, "The API server stopped.");
            }
        });
        Ok(Server {
            addr,
            ready,
            health,
            stop,
            task,
        })
    }

    /// Fires when the server stops: what serves it (watches, rates) ends with it.
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Stops serving (if `cancel` has not already) and completes once the server and
    /// every watch it started have ended: nothing of the API holds the state any more.
    /// Calls still open after [`STOP_GRACE`] are cut off.
    pub async fn stopped(self) {
        self.stop.cancel();
        let mut task = self.task;
        match tokio::time::timeout(STOP_GRACE, &mut task).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "The API server task failed."),
            Err(_) => {
                tracing::warn!(
                    grace = ?STOP_GRACE,
                    "API calls were still open at shutdown; they are cut off."
                );
                task.abort();
                let _ = task.await;
            }
        }
        if let Some(api) = self.ready.0.get() {
            // Watches end on the stop token; none can start any more.
            api.tasks.close();
            api.tasks.wait().await;
        }
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

/// The longest flow or link name the API takes (ids are at most 64 characters; a flow
/// name is two of them): longer is a mistake, and is never echoed back whole.
pub const MAX_NAME: usize = 200;
/// Kafka's own limit on a topic name.
pub const MAX_TOPIC: usize = 249;
/// The most topics one GetTopology may ask routes for.
pub const MAX_ROUTE_TOPICS: usize = 100;

/// A required name field (flow, link): INVALID_ARGUMENT when empty, longer than
/// [`MAX_NAME`], or holding a control character.
pub fn required<'a>(field: &str, value: &'a str) -> Result<&'a str, Status> {
    if value.trim().is_empty() {
        return Err(error::invalid(field, "is required"));
    }
    if value.len() > MAX_NAME {
        return Err(error::invalid(
            field,
            format!(
                "is {} bytes long; names are at most {MAX_NAME}",
                value.len()
            ),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(error::invalid(field, "holds a control character"));
    }
    Ok(value)
}

/// A topic name as Kafka allows it: 1 to 249 characters from `A-Z a-z 0-9 . _ -`.
pub fn topic_name(field: &str, value: &str) -> Result<(), Status> {
    if value.is_empty() {
        return Err(error::invalid(field, "is empty"));
    }
    if value.len() > MAX_TOPIC {
        return Err(error::invalid(
            field,
            format!(
                "is {} bytes long; Kafka topic names are at most {MAX_TOPIC}",
                value.len()
            ),
        ));
    }
    if !value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(error::invalid(
            field,
            "is not a Kafka topic name: use A-Z a-z 0-9 . _ -",
        ));
    }
    Ok(())
}
