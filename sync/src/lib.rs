//! Duplex replication engine: keeps N Kafka clusters in sync, active-active.
//! No gRPC here; the service package wires it.
//!
//! - [`spec`]: what the engine runs (clusters, links, limits), built by the service.
//! - [`provenance`]: the `duplex.path` header contract, encode and decode.
//! - [`routing`]: spanning trees per origin and the per-flow routing decision.
//! - [`engine`]: two flows per link, supervised, restarted after retriable errors.
//! - [`control`]: the handle that pauses and resumes flows and shows their state.
//! - [`flow`]: one direction of a link: read, route, produce, acknowledge, commit.
//! - [`resume`]: where a flow restarts, read off the target itself.
//! - [`discovery`]: selected topics, and their creation on the target.
//! - [`topic_configs`]: topic settings that follow their owner cluster.
//! - [`acls`]: READ and DESCRIBE topic ACLs that follow it too (off by default).
//! - [`admin_ffi`]: admin requests rdkafka does not wrap (`unsafe`, as are [`alloc`] and [`message_ffi`]).
//! - [`alloc`]: the process's memory settings (no transparent huge pages).
//! - [`message_ffi`]: header names as bytes, which rdkafka reads as `&str`, and
//!   consuming in batches (`unsafe`).
//! - [`clients`]: librdkafka settings the guarantees rest on.
//! - [`offsets`]: consumer-group offsets translated exactly between clusters; group sync.
//! - [`metrics`]: per-flow counters and latency histograms, OpenMetrics text.
//! - [`error`]: the engine's error type.

// SyncError carries the Kafka error and the record it concerns; it travels only on the
// cold path (a flow failing), so its size costs nothing per record.
#![allow(clippy::result_large_err)]

pub mod acls;
pub mod admin_ffi;
pub mod alloc;
pub mod clients;
pub mod control;
pub mod discovery;
pub mod engine;
pub mod error;
pub mod flow;
pub mod message_ffi;
pub mod metrics;
pub mod offsets;
pub mod provenance;
pub mod resume;
pub mod routing;
pub mod spec;
pub mod starts;
pub mod topic_configs;

pub use error::SyncError;
