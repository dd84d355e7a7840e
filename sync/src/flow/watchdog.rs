//! The stall watchdog. A consumer can stop fetching without an error (seen after a
//! broker restart); a flow that has read nothing for `limits.stall_timeout` asks the
//! source with ListOffsets, apart from the fetcher, whether it holds records past the
//! consumer's position. If so the flow fails with a retriable error, and the engine
//! restarts it with new clients; resuming from the target makes that safe.
//!
//! librdkafka sends that ListOffsets with the consumer's own `isolation.level`
//! (`rd_kafka_ListOffsetsRequest` in librdkafka 2.12), so for the flows' read_committed
//! consumers the end it reports is the last stable offset: a transaction left open on
//! the source does not look like a stall.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::Offset;
use rdkafka::consumer::{Consumer, StreamConsumer};

use super::{FlowSpec, LagContext};
use crate::error::{SyncError, joined};

/// Fails with [`SyncError::Stalled`] when a partition's source holds records past the
/// consumer's position. `starts`: where each partition was started, for partitions that
/// have not read anything yet. `idle`: time since the last record.
pub(crate) async fn check(
    spec: &Arc<FlowSpec>,
    consumer: &Arc<StreamConsumer<LagContext>>,
    starts: &HashMap<(String, i32), i64>,
    idle: Duration,
) -> Result<(), SyncError> {
    let (spec, consumer, starts) = (spec.clone(), consumer.clone(), starts.clone());
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
            let position = match e.offset() {
                Offset::Offset(o) => o,
                _ => match starts.get(&(e.topic().to_string(), e.partition())) {
                    Some(&o) => o,
                    None => continue,
                },
            };
            let (_, high) = consumer
                .fetch_watermarks(e.topic(), e.partition(), spec.limits.request_timeout)
                .map_err(|err| kafka("fetch watermarks", err))?;
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
