//! Loading a mock cluster for the end-to-end benchmarks: records with a key and two
//! headers, and optionally the `duplex.path` a flow from cluster a would have written.

use std::time::Duration;

use anyhow::Context;
use duplex_sync::provenance::{Hop, PATH_HEADER, encode_origin};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::ToBytes;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};

pub const BASE_TIMESTAMP: i64 = 1_764_000_000_000;
#[allow(dead_code)]
const REQUEST: Duration = Duration::from_secs(10);

/// Loads `n` records of `value_bytes` on one cluster: record `i` goes to partition
/// `i % partitions` with timestamp `BASE_TIMESTAMP + i`. With `copy`, each carries the
/// `duplex.path` of the same record on a (origin a, that partition, offset
/// `i / partitions`), as a flow would have written it. An idempotent producer keeps each
/// partition in send order, so those offsets are exact.
pub async fn produce(
    bootstrap: &str,
    topic: &str,
    n: usize,
    partitions: i32,
    value_bytes: usize,
    copy: bool,
) -> anyhow::Result<()> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()
        .context("create producer")?;
    let value = vec![0x5a_u8; value_bytes];
    let mut path = Vec::with_capacity(32);
    let mut deliveries = Vec::with_capacity(n);
    for i in 0..n {
        let partition = i as i32 % partitions;
        let key = format!("key-{i:010}");
        let trace = format!("{i:016x}");
        let mut headers = OwnedHeaders::new_with_capacity(3)
            .insert(Header {
                key: "trace-id",
                value: Some(trace.as_bytes()),
            })
            .insert(Header {
                key: "source",
                value: Some(b"bench".as_slice()),
            });
        if copy {
            let origin = Hop {
                cluster: b"a",
                partition,
                offset: (i / partitions as usize) as i64,
            };
            encode_origin(origin, &mut path).context("encode duplex.path")?;
            headers = headers.insert(Header {
                key: PATH_HEADER,
                value: Some(path.as_slice()),
            });
        }
        let record = FutureRecord::to(topic)
            .partition(partition)
            .key(key.as_bytes())
            .payload(value.as_slice())
            .headers(headers)
            .timestamp(BASE_TIMESTAMP + i as i64);
        deliveries.push(enqueue(&producer, record).await?);
    }
    delivered(deliveries).await?;
    Ok(())
}

/// Enqueues `record`, waiting out a full local queue while deliveries drain it.
pub async fn enqueue<K: ToBytes + ?Sized, P: ToBytes + ?Sized>(
    producer: &FutureProducer,
    record: FutureRecord<'_, K, P>,
) -> anyhow::Result<DeliveryFuture> {
    duplex_sync::clients::enqueue(producer, record, Duration::from_secs(600))
        .await
        .context("enqueue record")
}

/// Waits until every delivery is acknowledged.
pub async fn delivered(deliveries: Vec<DeliveryFuture>) -> anyhow::Result<()> {
    for d in deliveries {
        d.await
            .context("delivery future dropped")?
            .map_err(|(e, _)| e)
            .context("produce")?;
    }
    Ok(())
}

/// Records of `topic` on a cluster: sum of high minus low watermarks.
#[allow(dead_code)] // Not every bench that loads counts.
pub fn held(bootstrap: &str, topic: &str, partitions: i32) -> anyhow::Result<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .context("create consumer")?;
    let mut total = 0;
    for p in 0..partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, REQUEST)
            .context("watermarks")?;
        total += high - low;
    }
    Ok(total)
}
