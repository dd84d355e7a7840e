//! Reading whole topics back, and the identity of each record: what the demo and the
//! integration tests use to check what the clusters hold.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use duplex_sync::message_ffi;
use duplex_sync::provenance::{PATH_HEADER, Path, is_reserved};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// One record as read back, with its identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// Partition it is in.
    pub partition: i32,
    /// Offset on this cluster.
    pub offset: i64,
    /// Key (None: null).
    pub key: Option<Vec<u8>>,
    /// Value (None: null, a tombstone).
    pub value: Option<Vec<u8>>,
    /// User headers, in order (Duplex's own left out).
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// Timestamp in ms.
    pub timestamp: Option<i64>,
    /// Origin cluster id: from `duplex.path`, or `own` for a record produced here.
    pub origin: String,
    /// Origin (partition, offset).
    pub origin_position: (i32, i64),
    /// Hop path cluster ids, origin first (empty for a record produced here).
    pub hops: Vec<String>,
}

/// Reads every partition of `topic` on `bootstrap` from its start to its current end.
/// `own` is the id of that cluster, the origin of records without provenance.
pub fn read_topic(
    bootstrap: &str,
    own: &str,
    topic: &str,
    timeout: Duration,
) -> anyhow::Result<Vec<Held>> {
    let c = consumer(bootstrap)?;
    let md = c
        .fetch_metadata(Some(topic), timeout)
        .context("fetch metadata")?;
    let partitions = md.topics().first().map_or(0, |t| t.partitions().len()) as i32;
    let mut tpl = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    for p in 0..partitions {
        let (low, high) = c
            .fetch_watermarks(topic, p, timeout)
            .context("fetch watermarks")?;
        if high > low {
            tpl.add_partition_offset(topic, p, Offset::Offset(low))?;
            ends.insert(p, high);
        }
    }
    let mut out = Vec::new();
    if ends.is_empty() {
        return Ok(out);
    }
    c.assign(&tpl)?;
    let deadline = Instant::now() + timeout;
    while !ends.is_empty() {
        if Instant::now() > deadline {
            bail!(
                "reading {topic} timed out with partitions {:?} unfinished",
                ends.keys().collect::<Vec<_>>()
            );
        }
        let Some(m) = c.poll(Duration::from_millis(100)) else {
            continue;
        };
        let m = m.context("consume")?;
        let (p, o) = (m.partition(), m.offset());
        let Some(&end) = ends.get(&p) else { continue };
        let mut headers = Vec::new();
        let mut path = None;
        for (name, value) in message_ffi::headers(&m) {
            if name == PATH_HEADER.as_bytes() {
                path = value.map(<[u8]>::to_vec);
            } else if !is_reserved(name) {
                headers.push((
                    String::from_utf8_lossy(name).into_owned(),
                    value.map(<[u8]>::to_vec),
                ));
            }
        }
        let (origin, origin_position, hops) = match &path {
            Some(v) => {
                let p =
                    Path::decode(v).with_context(|| format!("{topic}/{p}@{o}: bad duplex.path"))?;
                let h = p.origin();
                (
                    String::from_utf8_lossy(h.cluster).into_owned(),
                    (h.partition, h.offset),
                    p.hops()
                        .map(|h| String::from_utf8_lossy(h.cluster).into_owned())
                        .collect(),
                )
            }
            None => (own.to_string(), (p, o), Vec::new()),
        };
        out.push(Held {
            partition: p,
            offset: o,
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().map(<[u8]>::to_vec),
            headers,
            timestamp: m.timestamp().to_millis(),
            origin,
            origin_position,
            hops,
        });
        if o + 1 >= end {
            ends.remove(&p);
        }
    }
    out.sort_by_key(|h| (h.partition, h.offset));
    Ok(out)
}

/// A consumer that reads everything up to the high watermark (what the cluster holds,
/// committed or not), never creates topics, and commits nothing.
fn consumer(bootstrap: &str) -> anyhow::Result<BaseConsumer> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "duplex-inspect")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("isolation.level", "read_uncommitted")
        .set("allow.auto.create.topics", "false")
        .create()
        .context("create inspect consumer")
}

/// Total records on `topic` (sum of high minus low watermarks).
pub fn count(bootstrap: &str, topic: &str, timeout: Duration) -> anyhow::Result<i64> {
    let c = consumer(bootstrap)?;
    let md = c.fetch_metadata(Some(topic), timeout)?;
    let n = md.topics().first().map_or(0, |t| t.partitions().len()) as i32;
    let mut total = 0;
    for p in 0..n {
        let (low, high) = c.fetch_watermarks(topic, p, timeout)?;
        total += high - low;
    }
    Ok(total)
}

/// Per origin: records held and how many identities appear more than once.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OriginTally {
    /// Records of that origin.
    pub records: usize,
    /// Extra copies of an identity already seen.
    pub duplicates: usize,
}

/// Tallies records by origin, counting duplicate identities.
pub fn tally(held: &[Held]) -> BTreeMap<String, OriginTally> {
    let mut seen = std::collections::HashSet::new();
    let mut out: BTreeMap<String, OriginTally> = BTreeMap::new();
    for h in held {
        let t = out.entry(h.origin.clone()).or_default();
        t.records += 1;
        if !seen.insert((h.origin.clone(), h.origin_position)) {
            t.duplicates += 1;
        }
    }
    out
}

/// Partition count of `topic`, 0 when it does not exist.
pub fn partitions(bootstrap: &str, topic: &str, timeout: Duration) -> anyhow::Result<usize> {
    let c = consumer(bootstrap)?;
    let md = c.fetch_metadata(Some(topic), timeout)?;
    Ok(md
        .topics()
        .first()
        .filter(|t| t.error().is_none())
        .map_or(0, |t| t.partitions().len()))
}
