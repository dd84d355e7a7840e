//! Errors of a verification run. Each names what went wrong and where; the binary maps
//! any of them to exit code 2.

use std::path::{Path, PathBuf};

use rdkafka::error::KafkaError;

/// Why a verification could not produce a verdict.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The Kafka client failed on a cluster.
    #[error("cluster {cluster}: {op}: {source}")]
    Kafka {
        /// Cluster id from the config.
        cluster: String,
        /// What the verifier was doing.
        op: String,
        /// The client's error.
        source: KafkaError,
    },
    /// RocksDB failed.
    #[error("store {dir}: {message}")]
    Store {
        /// Store directory.
        dir: PathBuf,
        /// RocksDB's message.
        message: String,
    },
    /// The store belongs to another run.
    #[error(
        "store {dir} was made for another verification; use another --store or delete it \
         (it can be derived again).\n  store holds: {found}\n  this run:    {wanted}"
    )]
    StoreMismatch {
        /// Store directory.
        dir: PathBuf,
        /// Signature found in the store.
        found: String,
        /// Signature of this run.
        wanted: String,
    },
    /// The store holds bytes the verifier cannot read.
    #[error("store is corrupt: {0}")]
    Corrupt(String),
    /// A record carries a `duplex.path` header that does not decode.
    #[error(
        "cluster {cluster}: record {topic}/{partition}@{offset} has an unreadable duplex.path header: {reason}"
    )]
    Provenance {
        /// Cluster holding the record.
        cluster: String,
        /// Its topic.
        topic: String,
        /// Its partition.
        partition: i32,
        /// Its offset.
        offset: i64,
        /// What is wrong with the header.
        reason: String,
    },
    /// Reading stopped making progress.
    #[error("cluster {cluster}: no progress for {secs} s while reading {what}")]
    Stalled {
        /// Cluster id.
        cluster: String,
        /// Seconds without a record.
        secs: u64,
        /// The partitions not yet read to their watermark.
        what: String,
    },
    /// The request itself is wrong (unknown cluster, bad option value).
    #[error("{0}")]
    Invalid(String),
    /// Writing the report failed.
    #[error("report {path}: {source}")]
    Report {
        /// File being written.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The run was stopped before it finished.
    #[error("stopped before the comparison finished")]
    Stopped,
}

impl VerifyError {
    pub(crate) fn store(dir: &Path, e: rocksdb::Error) -> VerifyError {
        VerifyError::Store {
            dir: dir.to_path_buf(),
            message: e.into_string(),
        }
    }

    pub(crate) fn kafka(cluster: &str, op: impl Into<String>, source: KafkaError) -> VerifyError {
        VerifyError::Kafka {
            cluster: cluster.to_string(),
            op: op.into(),
            source,
        }
    }
}
