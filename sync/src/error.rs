//! The engine's error type: which operation failed, on which cluster, and whether a
//! restart of the flow can help.

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use thiserror::Error;

use crate::provenance::ProvenanceError;

/// Everything that stops a flow.
#[derive(Debug, Error)]
pub enum SyncError {
    /// A client call failed (create, metadata, watermarks, commit, consume).
    #[error("{op} on cluster {cluster} failed: {source}")]
    Kafka {
        /// What was being done, as a phrase ("fetch metadata").
        op: &'static str,
        /// The cluster id.
        cluster: String,
        /// The client's error, with its code.
        #[source]
        source: KafkaError,
    },
    /// The target refused a record for a reason a retry cannot fix. The record is not
    /// skipped: the flow stops at it.
    #[error(
        "cluster {target} refused {topic}/{partition} offset {offset} from {source_cluster}: {source}"
    )]
    Refused {
        /// Target cluster id.
        target: String,
        /// Source cluster id.
        source_cluster: String,
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// Source offset of the refused record.
        offset: i64,
        /// The delivery error.
        #[source]
        source: KafkaError,
    },
    /// Delivery failed for a reason a fresh producer may overcome (a fatal idempotence
    /// error, for example).
    #[error(
        "delivery to cluster {target} failed for {topic}/{partition} offset {offset}: {source}"
    )]
    Delivery {
        /// Target cluster id.
        target: String,
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// Source offset.
        offset: i64,
        /// The delivery error.
        #[source]
        source: KafkaError,
    },
    /// A record's provenance header cannot be read.
    #[error("record {topic}/{partition} offset {offset} on cluster {cluster}: {source}")]
    Provenance {
        /// Cluster the record was read from.
        cluster: String,
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// Offset.
        offset: i64,
        /// What is wrong with the header.
        #[source]
        source: ProvenanceError,
    },
    /// The flow read nothing for `limits.stall_timeout` while its source has records past
    /// its position: the client stopped fetching. Restarting the flow recovers.
    #[error(
        "flow {flow} stalled: {topic}/{partition} is at offset {position} on cluster {cluster}, which holds records up to {high}, and nothing was read for {idle_secs} s"
    )]
    Stalled {
        /// `source->target`.
        flow: String,
        /// Source cluster id.
        cluster: String,
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// The consumer's position.
        position: i64,
        /// The source's high watermark.
        high: i64,
        /// Seconds without a record.
        idle_secs: u64,
    },
    /// The consumer's position is outside what a source partition holds (the consumer
    /// runs with `auto.offset.reset=error`): retention deleted records before the flow
    /// read them, or the partition was truncated or recreated. Retriable: the restart's
    /// assignment counts a retention gap, or stops at a source behind the flow
    /// ([`SyncError::SourceBehind`]).
    #[error(
        "flow {flow}: {topic}/{partition} on cluster {cluster} does not hold offset {position} (it holds {low} to {high}); resuming from the target"
    )]
    OutOfRange {
        /// `source->target`.
        flow: String,
        /// Source cluster id.
        cluster: String,
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// The consumer's position.
        position: i64,
        /// The source's log start.
        low: i64,
        /// The source's high watermark.
        high: i64,
    },
    /// A source partition ends before the offset the flow has replicated it to: it was
    /// truncated, or deleted and recreated. Reading it again would write new records
    /// under the origin positions of records already on the target. Needs an operator.
    #[error(
        "cluster {cluster} holds {topic}/{partition} only up to offset {high}, but flow {flow} has replicated it up to offset {resume}: the source partition was truncated or recreated. The flow stops rather than write its new records under positions the target already holds; see docs/delivery.md, \"A source behind the flow\""
    )]
    SourceBehind {
        /// `source->target`.
        flow: String,
        /// Source cluster id.
        cluster: String,
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// Where the flow would resume (from the target and the checkpoint).
        resume: i64,
        /// The source's high watermark.
        high: i64,
    },
    /// A blocking client call was cancelled because the runtime is shutting down.
    #[error("{0} was cancelled: the runtime is shutting down")]
    Cancelled(&'static str),
    /// A target topic is missing and cannot be created, or has the wrong shape.
    #[error("target topic {topic} on cluster {cluster}: {reason}")]
    TargetTopic {
        /// Target cluster id.
        cluster: String,
        /// Topic.
        topic: String,
        /// What is wrong, and what the operator can do.
        reason: String,
    },
}

impl SyncError {
    /// The error for a record the target did not take: [`SyncError::Refused`] when no
    /// retry can help (the flow stops at it), [`SyncError::Delivery`] otherwise.
    pub fn delivery(
        source_cluster: &str,
        target: &str,
        topic: &str,
        partition: i32,
        offset: i64,
        e: KafkaError,
    ) -> Self {
        match e.rdkafka_error_code() {
            Some(code) if is_refusal(code) => SyncError::Refused {
                target: target.to_string(),
                source_cluster: source_cluster.to_string(),
                topic: topic.to_string(),
                partition,
                offset,
                source: e,
            },
            _ => SyncError::Delivery {
                target: target.to_string(),
                topic: topic.to_string(),
                partition,
                offset,
                source: e,
            },
        }
    }

    /// Whether restarting the flow (new clients, resume from the target) may succeed.
    pub fn is_retriable(&self) -> bool {
        !matches!(
            self,
            SyncError::Refused { .. }
                | SyncError::Provenance { .. }
                | SyncError::SourceBehind { .. }
        )
    }

    /// Whether this error explains more than `other` when both stopped one run of a
    /// flow: an error that needs an operator outranks a retriable one, and any error
    /// outranks a record purged from the local queue, which only follows from another
    /// failure or from stopping.
    pub fn outranks(&self, other: &SyncError) -> bool {
        let rank = |e: &SyncError| match e.kafka_code() {
            _ if !e.is_retriable() => 2,
            Some(RDKafkaErrorCode::PurgeQueue | RDKafkaErrorCode::PurgeInflight) => 0,
            _ => 1,
        };
        rank(self) > rank(other)
    }

    /// The Kafka error code behind this error, if any.
    pub fn kafka_code(&self) -> Option<RDKafkaErrorCode> {
        match self {
            SyncError::Kafka { source, .. }
            | SyncError::Refused { source, .. }
            | SyncError::Delivery { source, .. } => source.rdkafka_error_code(),
            _ => None,
        }
    }
}

/// Delivery errors that mean "this record will never be accepted as it is".
pub fn is_refusal(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode::*;
    matches!(
        code,
        MessageSizeTooLarge
            | InvalidRecord
            | InvalidMessage
            | InvalidMessageSize
            | InvalidTimestamp
            | MessageBatchTooLarge
            | ClusterAuthorizationFailed
            | TopicAuthorizationFailed
            | PolicyViolation
            | InvalidTopic
            | UnknownPartition
    )
}

/// The result of a `spawn_blocking` task: a panic is propagated, a cancellation (the
/// runtime shutting down) becomes [`SyncError::Cancelled`].
pub(crate) fn joined<T>(
    op: &'static str,
    r: Result<Result<T, SyncError>, tokio::task::JoinError>,
) -> Result<T, SyncError> {
    match r {
        Ok(r) => r,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(SyncError::Cancelled(op)),
    }
}
