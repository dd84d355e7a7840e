//! Event-sourced state: every change is a command that appends events to the log, and
//! the state is the fold of the log, rebuilt at every start.
//!
//! - [`events`]: the event types (typed, versioned payloads).
//! - [`log`]: the append-only log in RocksDB.
//! - [`fold`]: how events add up to the state.
//! - [`commands`]: idempotency keys, expected revisions, and the one writer.
//! - [`config`]: how the config file seeds and changes the state.
//! - [`watch`]: reading from a sequence number, then live, without a gap or a repeat.

pub mod commands;
pub mod config;
pub mod events;
pub mod fold;
pub mod log;
pub mod watch;

pub use commands::{Command, CommandError, Outcome, Store};
pub use events::{Event, Payload};
pub use fold::State;
