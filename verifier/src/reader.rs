//! Reads one side: its partitions from the store's positions to the run's end offsets,
//! into the store one batch at a time.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use duplex_sync::message_ffi::Batches;
use duplex_sync::spec::ClusterSpec;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use crate::error::VerifyError;
use crate::fasthash::FastMap;
use crate::ingest::{Incoming, SideIngest};
use crate::spec::{Mode, VerifySpec};
use crate::store::Store;

/// Records per write batch at most.
const BATCH_RECORDS: usize = 4096;
/// A batch is written at least this often, so positions follow the reads closely.
const BATCH_AGE: Duration = Duration::from_millis(200);
/// Messages taken from librdkafka per call at most.
pub const READ_BATCH: usize = 1024;
/// How long a call waits for a batch to fill. librdkafka returns early only with a full
/// batch, so this is also how long records that trickle in wait to be read.
pub const BATCH_WAIT: Duration = Duration::from_millis(10);

/// How many records ahead of the one being handled the reader prefetches: a record's
/// bytes were fetched by another thread long before and are read from memory, not the
/// cache, so the hash of every byte waited on them (docs/benchmarks.md, "Batches").
pub const PREFETCH_AHEAD: usize = 2;

/// Messages per call: [`READ_BATCH`], or at a rate limit a tenth of a second's worth,
/// so that the limit holds batch by batch.
fn read_batch(max_rate: Option<u64>) -> usize {
    match max_rate.filter(|r| *r > 0) {
        Some(rate) => usize::try_from(rate / 10)
            .unwrap_or(READ_BATCH)
            .clamp(1, READ_BATCH),
        None => READ_BATCH,
    }
}

/// One partition to read.
#[derive(Debug, Clone)]
pub struct PartPlan {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// First offset to read.
    pub start: i64,
    /// Offset to stop before.
    pub end: i64,
    /// The partition's log start when the pass began (kept with the position).
    pub log_start: i64,
    /// How the topic is compared.
    pub mode: Mode,
}

/// Progress of one side, shared with whoever reports it.
#[derive(Debug, Default)]
pub struct Progress {
    /// Records read so far in this run.
    pub records: AtomicU64,
    /// Key and value bytes read so far in this run.
    pub bytes: AtomicU64,
    /// Records planned (end minus start, summed; transaction markers make it an upper bound).
    pub planned: AtomicU64,
}

/// librdkafka settings of a verifier consumer: the cluster's options, then its consumer
/// overrides, then what the verifier needs (no group offsets, no auto-create).
pub fn consumer_config(cluster: &ClusterSpec) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("client.id", format!("duplex-verify-{}", cluster.id))
        .set("isolation.level", "read_committed")
        .set("fetch.wait.max.ms", "100")
        .set("queued.max.messages.kbytes", "65536")
        // Once the prefetch queue is full librdkafka waits 1 s by default before it
        // fetches again: a reader slower than the fetcher, which the store's writes make
        // it, idled most of that second (docs/benchmarks.md, verify_e2e).
        .set("fetch.queue.backoff.ms", "10");
    for (k, v) in cluster.options.iter().chain(&cluster.consumer) {
        c.set(k, v);
    }
    c.set("bootstrap.servers", &cluster.bootstrap_servers)
        .set("group.id", format!("duplex-verify-{}", cluster.id))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "earliest")
        .set("allow.auto.create.topics", "false");
    c
}

/// Reads a side's planned partitions into the store. Returns when every partition
/// reached its end, or fails when reading makes no progress for the stall timeout.
pub fn read_side(
    store: &Store,
    spec: &VerifySpec,
    side: u8,
    plan: &[PartPlan],
    progress: &Progress,
    stop: &AtomicBool,
) -> Result<(), VerifyError> {
    let cluster = &spec.sides[side as usize];
    // A difference found while this side is read (by any thread) fails it; one found
    // before it began turned reading in place off for all of it.
    let misreads_before = duplex_sync::message_ffi::headers_misreads();
    let mut remaining = Remaining::default();
    for p in plan.iter().filter(|p| p.start < p.end) {
        remaining.insert(&p.topic, p.partition, (p.end, p.mode));
    }
    progress.planned.store(
        plan.iter().map(|p| (p.end - p.start).max(0) as u64).sum(),
        Ordering::Relaxed,
    );
    if remaining.is_empty() {
        return Ok(());
    }
    let consumer: BaseConsumer = consumer_config(cluster)
        .create()
        .map_err(|e| VerifyError::kafka(&cluster.id, "create consumer", e))?;
    let consumer = duplex_sync::clients::Closing::new(consumer);
    // Before the assignment: the client's events so far (its warnings at creation) are
    // passed on with the ones to come (`Batches::new`).
    let mut batches = Batches::new(&consumer, read_batch(spec.max_rate)).map_err(|e| {
        VerifyError::kafka(
            &cluster.id,
            "read in batches",
            rdkafka::error::KafkaError::ClientCreation(e),
        )
    })?;
    let mut tpl = TopicPartitionList::new();
    for p in plan.iter().filter(|p| p.start < p.end) {
        tpl.add_partition_offset(&p.topic, p.partition, Offset::Offset(p.start))
            .map_err(|e| VerifyError::kafka(&cluster.id, "assign", e))?;
    }
    consumer
        .assign(&tpl)
        .map_err(|e| VerifyError::kafka(&cluster.id, "assign", e))?;

    let mut ingest = SideIngest::new(store, side, &cluster.id, spec.canon(Mode::Identity));
    for p in plan {
        ingest.set_log_start(&p.topic, p.partition, p.log_start);
    }
    let started = Instant::now();
    let mut last_flush = Instant::now();
    let mut last_progress = Instant::now();
    let mut last_position_check = Instant::now();
    let mut read: u64 = 0;
    while !remaining.is_empty() {
        if stop.load(Ordering::Relaxed) {
            ingest.flush()?;
            return Err(VerifyError::Stopped);
        }
        // `--max-rate`: nothing more is read while the side is ahead of the rate, so that
        // it holds whatever the batch size; the positions are written meanwhile.
        if let Some(rate) = spec.max_rate.filter(|r| *r > 0) {
            let due = Duration::from_secs_f64(read as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                ingest.flush()?;
                last_flush = Instant::now();
                std::thread::sleep(wait.min(Duration::from_millis(200)));
                continue;
            }
        }
        let batch = batches.next_batch(BATCH_WAIT);
        let mut progressed = false;
        let (mut records, mut bytes) = (0u64, 0u64);
        // One headers buffer a batch, cleared for each record.
        let mut headers: Vec<(&[u8], Option<&[u8]>)> = Vec::new();
        // The last record's (topic handle, partition) and what `remaining` said of it:
        // records come in runs of one partition, looked up once a run.
        let mut last: Option<((usize, i32), &str, Option<(i64, Mode)>)> = None;
        // A later record's bytes come into the cache while this one is hashed.
        for msg in batch.into_iter_prefetching(PREFETCH_AHEAD) {
            if let Some(e) = msg.error() {
                tracing::warn!(cluster = %cluster.id, error = %e, "verifier read error; retrying");
                continue;
            }
            let (partition, offset) = (msg.partition(), msg.offset());
            let at = (msg.topic_id(), partition);
            let (topic, found) = match last {
                Some((key, topic, found)) if key == at => (topic, found),
                _ => {
                    let Some(topic) = msg.topic() else { continue };
                    let found = remaining.get(topic, partition);
                    last = Some((at, topic, found));
                    (topic, found)
                }
            };
            // A record of a partition read to its end (a live topic goes on past it) is
            // skipped, and the checks below still run: a stream of such records must not
            // keep the position check or the stall timeout from running.
            let Some((end, mode)) = found else {
                continue;
            };
            if offset < end {
                headers.clear();
                headers.extend(msg.headers());
                let rec = Incoming {
                    topic,
                    partition,
                    offset,
                    key: msg.key(),
                    value: msg.payload(),
                    headers: &headers,
                    timestamp: msg.timestamp(),
                };
                ingest.add(&rec, mode)?;
                records += 1;
                bytes += (rec.key.map_or(0, <[u8]>::len) + rec.value.map_or(0, <[u8]>::len)) as u64;
                if ingest.pending() >= BATCH_RECORDS {
                    ingest.flush()?;
                    last_flush = Instant::now();
                }
            }
            if offset + 1 >= end {
                ingest.advance(topic, partition, end);
                remaining.remove(topic, partition);
                last = None;
                stop_fetching(&consumer, &cluster.id, topic, partition);
            }
            progressed = true;
        }
        // Headers read in place that a cross-check found different from librdkafka's
        // parse (message_ffi): records of this pass may hold wrong fingerprints.
        if duplex_sync::message_ffi::headers_misreads() != misreads_before {
            return Err(VerifyError::Invalid(format!(
                "cluster {}: a record's headers read in place differed from librdkafka's \
                 parse (logged); the records read so far may hold wrong fingerprints: \
                 verify again into a new store directory (headers are read through \
                 librdkafka from now on)",
                cluster.id
            )));
        }
        // One clock read a batch, once it is in: the checks below run between batches, and
        // progress is never stamped before it was made.
        let now = Instant::now();
        read += records;
        progress.records.fetch_add(records, Ordering::Relaxed);
        progress.bytes.fetch_add(bytes, Ordering::Relaxed);
        if now.saturating_duration_since(last_position_check) >= Duration::from_millis(500) {
            // Transaction markers and aborted records take offsets no record is read at:
            // a partition whose fetch position passed its end is read.
            last_position_check = now;
            if let Ok(pos) = consumer.position() {
                for el in pos.elements() {
                    if let (Some((end, _)), Offset::Offset(at)) =
                        (remaining.get(el.topic(), el.partition()), el.offset())
                        && at >= end
                    {
                        ingest.advance(el.topic(), el.partition(), end);
                        remaining.remove(el.topic(), el.partition());
                        stop_fetching(&consumer, &cluster.id, el.topic(), el.partition());
                        progressed = true;
                    }
                }
            }
        }
        if progressed {
            last_progress = now;
        }
        if now.saturating_duration_since(last_flush) >= BATCH_AGE {
            ingest.flush()?;
            last_flush = now;
        }
        if now.saturating_duration_since(last_progress) > spec.stall_timeout {
            ingest.flush()?;
            return Err(VerifyError::Stalled {
                cluster: cluster.id.clone(),
                secs: spec.stall_timeout.as_secs(),
                what: remaining.describe(),
            });
        }
    }
    ingest.flush()?;
    Ok(())
}

/// Takes a partition read to its end out of the consumer's assignment: on a live topic
/// its new records would otherwise be fetched, queued and dropped until the whole side
/// is read. A failure only costs those reads.
fn stop_fetching(consumer: &BaseConsumer, cluster: &str, topic: &str, partition: i32) {
    let mut done = TopicPartitionList::new();
    done.add_partition(topic, partition);
    if let Err(e) = consumer.incremental_unassign(&done) {
        tracing::warn!(cluster, topic, partition, error = %e, "could not stop fetching a partition read to its end");
    }
}

/// Partitions still to read, with the offset each ends at and its mode: by topic, so
/// that a record's topic is looked up as the `&str` librdkafka hands over, with no
/// `String` made per record.
#[derive(Debug, Default)]
struct Remaining(FastMap<String, FastMap<i32, (i64, Mode)>>);

impl Remaining {
    fn insert(&mut self, topic: &str, partition: i32, end: (i64, Mode)) {
        self.0
            .entry(topic.to_string())
            .or_default()
            .insert(partition, end);
    }

    fn get(&self, topic: &str, partition: i32) -> Option<(i64, Mode)> {
        self.0.get(topic)?.get(&partition).copied()
    }

    fn remove(&mut self, topic: &str, partition: i32) {
        if let Some(parts) = self.0.get_mut(topic) {
            parts.remove(&partition);
            if parts.is_empty() {
                self.0.remove(topic);
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `topic/partition (to offset end)` of each, sorted, comma-separated.
    fn describe(&self) -> String {
        let mut left: Vec<String> = self
            .0
            .iter()
            .flat_map(|(t, parts)| {
                parts
                    .iter()
                    .map(move |(p, (e, _))| format!("{t}/{p} (to offset {e})"))
            })
            .collect();
        left.sort();
        left.join(", ")
    }
}
