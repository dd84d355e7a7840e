//! Duplex verifier: proves, record by record, that clusters hold the same data.
//!
//! Each side's records are read (read_committed), fingerprinted ([`fingerprint`]) and
//! kept in a RocksDB store ([`store`]) by identity, with digests per range of origin
//! offsets and the read positions, one write batch at a time. [`compare`] then matches
//! the sides range by range and names every missing, extra, altered, duplicated and
//! reordered record in a [`report`]. No gRPC here: the service wires it.
#![allow(clippy::result_large_err)] // VerifyError carries the client's error; runs are rare.

pub mod compare;
pub mod error;
pub mod fasthash;
pub mod fingerprint;
pub mod ingest;
pub mod keys;
pub mod origins;
pub mod reader;
pub mod report;
pub mod run;
pub mod spec;
pub mod stale;
pub mod store;

pub use error::VerifyError;
pub use report::{Report, Verdict};
pub use spec::{Mode, OffsetRule, OffsetRules, ReplicationFlow, VerifySpec};
