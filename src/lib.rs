//! The `duplex` service: CLI commands, config, and the wiring of the engine.
//!
//! - [`config`]: the TOML file, its defaults and `validate()`, into an engine spec.
//! - [`check`]: `duplex check-config`, which prints what a config will run.
//! - [`run`]: `duplex run`, the engine with metrics and signal handling.
//! - [`demo`]: `duplex demo`, three mock clusters in a full mesh.
//! - [`inspect`]: reading topics back with each record's identity (demo, tests).
//! - [`offsets`]: `duplex offsets translate|sync`, consumer groups moved exactly.
//! - [`metrics_http`]: OpenMetrics text at `/metrics`.
//! - [`verify`]: `duplex verify`, the parity proof and its reports.
//! - [`telemetry`]: tracing setup.

pub mod api;
pub mod check;
pub mod client;
pub mod config;
pub mod demo;
pub mod inspect;
pub mod metrics_http;
pub mod offsets;
pub mod run;
pub mod service;
pub mod state;
pub mod telemetry;
pub mod verify;
