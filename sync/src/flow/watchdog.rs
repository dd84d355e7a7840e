//! The stall watchdog, and out-of-range positions.
//!
//! A consumer can stop fetching without an error (seen after a
//! broker restart); a flow that has read nothing for `limits.stall_timeout` asks the
//! source with ListOffsets, apart from the fetcher, whether it holds records past the
//! consumer's position. If so the flow fails with a retriable error, and the engine
//! restarts it with new clients; resuming from the target makes that safe. Each run in
//! a row that a stall ends before reading a record doubles the next run's timeout (up
//! to 8 times, `Flow::stall_timeout`): a fetch slower than the timeout is waited for.
//!
//! librdkafka sends that ListOffsets with the consumer's own `isolation.level`
//! (`rd_kafka_ListOffsetsRequest` in librdkafka 2.12), so for the flows' read_committed
//! consumers the end it reports is the last stable offset: a transaction left open on
//! the source does not look like a stall.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::Offset;
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use tokio_util::sync::CancellationToken;

use tracing::warn;

use super::acker::Holds;
use super::{FlowConsumer, FlowSpec};
use crate::error::{SyncError, joined};

/// Where each partition of a run started, and when.
pub(crate) type Starts = HashMap<(String, i32), (i64, Instant)>;

/// Fails with [`SyncError::Stalled`] when a partition's source holds records past the
/// consumer's position. `starts`: where and when each partition was started, for
/// partitions that
/// have not read anything yet. `idle`: time since the last record.
pub(crate) async fn check(
    spec: &Arc<FlowSpec>,
    consumer: &Arc<FlowConsumer>,
    starts: &Starts,
    holds: &Holds,
    idle: Duration,
    stall_timeout: Duration,
    stop: &CancellationToken,
) -> Result<(), SyncError> {
    let (spec, consumer, starts) = (spec.clone(), consumer.clone(), starts.clone());
    let holds = holds.clone();
    let stop = stop.clone();
    let r = tokio::task::spawn_blocking(move || {
        let kafka = |op, source| SyncError::Kafka {
            op,
            cluster: spec.source.id.clone(),
            source,
        };
        let positions = consumer
            .position()
            .map_err(|e| kafka("read consumer positions", e))?;
        for e in positions.elements() {
            // Each request may wait out its timeout; a stopped flow asks no more.
            if stop.is_cancelled() {
                return Ok(());
            }
            let Some(position) = position_of(&e, &starts) else {
                continue;
            };
            // Started less than a stall timeout ago: the flow-wide idle time may predate
            // it (a first assignment that waited on slow scans), and a partition that just
            // started has not had the time to read.
            if starts
                .get(&(e.topic().to_string(), e.partition()))
                .is_some_and(|(_, at)| at.elapsed() < stall_timeout)
            {
                continue;
            }
            // Paused while the target catches up (or just resumed): waiting for the
            // target is not a stall.
            if holds.holds(e.topic(), e.partition(), stall_timeout) {
                continue;
            }
            // A partition whose source is too slow to say where it ends tells nothing
            // about a stall: look again at the next check rather than restart a flow
            // that may be reading; the other partitions are still checked.
            let high = match consumer.fetch_watermarks(
                e.topic(),
                e.partition(),
                spec.limits.request_timeout,
            ) {
                Ok((_, high)) => high,
                Err(err) => {
                    let err = kafka("fetch watermarks", err);
                    warn!(flow = %spec.name(), error = %err, "Cannot tell whether this partition is stalled; looking again at the next check.");
                    continue;
                }
            };
            if high > position {
                return Err(SyncError::Stalled {
                    flow: spec.name(),
                    cluster: spec.source.id.clone(),
                    topic: e.topic().to_string(),
                    partition: e.partition(),
                    position,
                    high,
                    idle_secs: idle.as_secs(),
                });
            }
        }
        Ok(())
    })
    .await;
    joined("check for a stall", r)
}

/// After `ERR__AUTO_OFFSET_RESET` (a fetch position outside a partition): returns
/// [`SyncError::OutOfRange`] naming the partition, or the consumer's error when its
/// position is in range after all. Both restart the flow, whose assignment then counts
/// a retention gap or stops at a source behind it.
///
/// `at`: the topic, partition and offset the error came with (librdkafka hands it over
/// in the partition's place, at the offset that failed). Without them the partition is
/// searched for among the consumer's positions; a partition sought back
/// (`Reader::rewind`) has none until it reads again, and counts as where it started.
pub(crate) async fn out_of_range(
    spec: &Arc<FlowSpec>,
    consumer: &Arc<FlowConsumer>,
    starts: &Starts,
    at: Option<(&str, i32, i64)>,
    error: KafkaError,
) -> SyncError {
    let (spec, consumer, starts) = (spec.clone(), consumer.clone(), starts.clone());
    let at = at.map(|(t, p, o)| (t.to_string(), p, o));
    let r = tokio::task::spawn_blocking(move || {
        let kafka = |op, source| SyncError::Kafka {
            op,
            cluster: spec.source.id.clone(),
            source,
        };
        // The partition the error names, or every partition the flow started.
        let candidates: Vec<(String, i32, i64)> = match at.filter(|(_, _, o)| *o >= 0) {
            Some(at) => vec![at],
            None => consumer
                .position()
                .map_err(|e| kafka("read consumer positions", e))?
                .elements()
                .iter()
                .filter_map(|e| {
                    position_of(e, &starts).map(|o| (e.topic().to_string(), e.partition(), o))
                })
                .collect(),
        };
        for (topic, partition, position) in candidates {
            let (low, high) = consumer
                .fetch_watermarks(&topic, partition, spec.limits.request_timeout)
                .map_err(|err| kafka("fetch watermarks", err))?;
            if position < low || position > high {
                return Ok(SyncError::OutOfRange {
                    flow: spec.name(),
                    cluster: spec.source.id.clone(),
                    topic,
                    partition,
                    position,
                    low,
                    high,
                });
            }
        }
        Ok(kafka("consume", error))
    })
    .await;
    // Failing to locate it is as good a reason to restart.
    match joined("locate an out-of-range position", r) {
        Ok(e) | Err(e) => e,
    }
}

/// A partition's consumer position, or where it was started when it has read nothing
/// yet; `None` for a partition the flow did not start.
fn position_of(
    e: &rdkafka::topic_partition_list::TopicPartitionListElem<'_>,
    starts: &Starts,
) -> Option<i64> {
    match e.offset() {
        Offset::Offset(o) => Some(o),
        _ => starts
            .get(&(e.topic().to_string(), e.partition()))
            .map(|(o, _)| *o),
    }
}
