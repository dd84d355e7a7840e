//! A flow: one direction S→T of a link. A consumer on S, an idempotent producer on T.
//!
//! - [`Flow::run_once`] builds the clients, then runs the reader and the acker side by side.
//! - `assign`: discovery of selected topics, target topic checks, resume positions.
//! - [`reader`]: the per-record hot path (decode provenance, route, produce).
//! - [`book`]: each partition's records in read order ([`pending`]), resolved by the
//!   producer's delivery callback; pauses a partition the target holds back.
//! - [`acker`]: commits the acknowledged positions, resumes held partitions, waits for
//!   the last deliveries.
//! - `configs`: topic settings copied to the target, beside the rest.
//! - `watchdog`: restarts a flow whose consumer stopped fetching without an error.

mod acker;
mod acl_sync;
mod assign;
mod book;
mod configs;
mod marks;
mod pending;
mod reader;
mod watchdog;

use std::collections::HashMap;
use std::sync::atomic::AtomicU32;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::producer::{Producer, PurgeConfig};
use rdkafka::statistics::Statistics;
use tokio_util::sync::CancellationToken;

use crate::clients;
use crate::control::{Acknowledged, StatusCell};
use crate::discovery::TopicCreator;
use crate::error::SyncError;
use crate::metrics::FlowMetrics;
use crate::routing::FlowRoutes;
use crate::spec::{ClusterSpec, Limits, StartPosition};

/// Everything one flow needs, fixed for its lifetime.
#[derive(Debug, Clone)]
pub struct FlowSpec {
    /// Link name.
    pub link: String,
    /// Source cluster.
    pub source: ClusterSpec,
    /// Target cluster.
    pub target: ClusterSpec,
    /// Start position for partitions never replicated.
    pub start: StartPosition,
    /// Bytes of records sent and not yet acknowledged, at most.
    pub in_flight_bytes: usize,
    /// Engine-wide settings.
    pub limits: Limits,
    /// Routing: a decision per topic, computed once per topic.
    pub routes: FlowRoutes,
    /// How long a shutdown waits for outstanding deliveries.
    pub drain_timeout: Duration,
    /// Which topic settings (and ACLs) it copies to its target.
    pub configs: crate::topic_configs::Policy,
}

impl FlowSpec {
    /// `source->target`.
    pub fn name(&self) -> String {
        format!("{}->{}", self.source.id, self.target.id)
    }

    /// The source consumer group: derived from the link and the direction.
    pub fn group_id(&self) -> String {
        group_id(&self.link, &self.source.id, &self.target.id)
    }
}

/// The source consumer group of flow `source`→`target` of a link, where the flow
/// commits its checkpoints (docs/delivery.md).
pub fn group_id(link: &str, source: &str, target: &str) -> String {
    format!("duplex.{link}.{source}-to-{target}")
}

/// Consumer context that feeds the lag gauges from librdkafka's statistics.
pub(crate) struct LagContext {
    metrics: Arc<FlowMetrics>,
    /// Whether this run's statistics say what the lag is: set once the run's first
    /// listing is done (before it, no lag is known), cleared when the run ends. A
    /// statistics round writes the gauges while holding it, so a round served late (a
    /// consumer closing serves what is queued, after the run has marked its partitions
    /// unknown) cannot write a stale "caught up" over that.
    live: Mutex<bool>,
}

impl LagContext {
    /// From now on this run's statistics feed the gauges.
    pub(crate) fn go_live(&self) {
        *self.live.lock().expect("lag gate") = true;
    }

    /// The run has ended: its statistics feed the gauges no more, and its partitions
    /// (at least 1) read as unknown until the next run says otherwise. The counts are
    /// taken under the gate, so no statistics round sees them zeroed while still live.
    fn end(&self) {
        let mut live = self.live.lock().expect("lag gate");
        *live = false;
        let partitions = self.metrics.partitions.swap(0, Relaxed)
            + self.metrics.partitions_waiting.swap(0, Relaxed);
        self.metrics.lag_unknown.store(partitions.max(1), Relaxed);
    }
}

impl ClientContext for LagContext {
    fn stats(&self, stats: Statistics) {
        let live = self.live.lock().expect("lag gate");
        if !*live {
            return;
        }
        // A partition whose lag librdkafka does not know (no committed position yet, no
        // watermark) is counted as unknown, never summed as 0: a stuck flow must not
        // look caught up.
        let (mut lag, mut unknown, mut seen) = (0i64, 0i64, 0i64);
        for p in stats
            .topics
            .values()
            .flat_map(|t| t.partitions.values())
            .filter(|p| p.partition >= 0 && p.desired)
        {
            seen += 1;
            if p.consumer_lag >= 0 {
                lag += p.consumer_lag;
            } else {
                unknown += 1;
            }
        }
        // Assigned partitions the statistics do not list yet are unknown too, and so
        // are those still waiting to start.
        unknown += (self.metrics.partitions.load(Relaxed) - seen).max(0)
            + self.metrics.partitions_waiting.load(Relaxed);
        self.metrics.lag.store(lag, Relaxed);
        self.metrics.lag_unknown.store(unknown, Relaxed);
    }
}
impl ConsumerContext for LagContext {}

/// A flow's consumer. A `BaseConsumer`, not rdkafka's `StreamConsumer`: the reader
/// waits for batches itself (message_ffi::BatchStream), which needs the consumer queue's
/// event callback that a `StreamConsumer` takes for its own. Dropped on a thread of its
/// own (`clients::Closing`): its close may wait on a cluster that is gone.
pub(crate) type FlowConsumer = clients::Closing<BaseConsumer<LagContext>>;

/// The clients of one run of a flow.
pub(crate) struct Clients {
    pub consumer: Arc<FlowConsumer>,
    pub producer: book::FlowProducer,
    /// Where this run's records are entered as they are sent and resolved as the
    /// target acknowledges them.
    pub book: Arc<book::Book>,
    pub scanner: Arc<clients::Closing<BaseConsumer>>,
    pub creator: TopicCreator,
    /// The origin marks of the partitions this run reads again after a change.
    pub marks: marks::RunMarks,
}

/// A flow with its counters.
#[derive(Debug, Clone)]
pub struct Flow {
    /// What it runs.
    pub spec: Arc<FlowSpec>,
    /// Its counters.
    pub metrics: Arc<FlowMetrics>,
    /// Deliveries earlier runs left unresolved.
    leftovers: Leftovers,
    /// Where its supervisor announces its state (none for a flow run by hand).
    status: Option<StatusCell>,
    /// Runs in a row that ended in a stall without reading a record.
    stalls: Arc<AtomicU32>,
    /// Where the acker publishes how far the target acknowledged each partition.
    pub(crate) acknowledged: Acknowledged,
}

/// Deliveries that a stopped run of a flow left unresolved when its drain timed out,
/// counted per partition. Their producer is kept alive until they resolve (dropping it
/// would abandon requests the broker may still append), and those partitions start
/// again only then: a batch that lands after a new start scanned the target would be
/// written twice.
#[derive(Debug, Default, Clone)]
pub(crate) struct Leftovers(Arc<Mutex<HashMap<(String, i32), usize>>>);

impl Leftovers {
    fn add(&self, key: &(String, i32), n: usize) {
        *self.lock().entry(key.clone()).or_default() += n;
    }

    fn done(&self, key: &(String, i32)) {
        let mut m = self.lock();
        if let Some(n) = m.get_mut(key) {
            *n -= 1;
            if *n == 0 {
                m.remove(key);
            }
        }
    }

    /// Whether deliveries of an earlier run to this partition are still unresolved.
    pub(crate) fn outstanding(&self, topic: &str, partition: i32) -> bool {
        self.lock().contains_key(&(topic.to_string(), partition))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, i32), usize>> {
        self.0.lock().expect("leftovers lock")
    }
}

impl Flow {
    /// A flow that has not run yet.
    pub fn new(spec: Arc<FlowSpec>, metrics: Arc<FlowMetrics>) -> Self {
        Flow {
            spec,
            metrics,
            leftovers: Leftovers::default(),
            status: None,
            stalls: Arc::default(),
            acknowledged: Acknowledged::default(),
        }
    }

    /// This run's stall timeout: `limits.stall_timeout`, doubled for each run in a row
    /// that a stall ended before it read a record (at most 8 times). A source whose
    /// fetches take longer than the timeout (a broker under a backlog) gets the time they
    /// take, instead of a restart loop that starts the same slow fetch again and again.
    pub(crate) fn stall_timeout(&self) -> Duration {
        self.spec.limits.stall_timeout * 2u32.pow(self.stalls.load(Relaxed).min(3))
    }

    /// The run ended in a stall.
    pub(crate) fn note_stall(&self) {
        self.stalls.fetch_add(1, Relaxed);
    }

    /// The run read a record: the stall timeout is the configured one again.
    pub(crate) fn note_read(&self) {
        self.stalls.store(0, Relaxed);
    }

    /// The same flow, announcing its state in `cell` and its acknowledged positions in
    /// `acknowledged`.
    pub(crate) fn with_status(mut self, cell: StatusCell, acknowledged: Acknowledged) -> Self {
        self.status = Some(cell);
        self.acknowledged = acknowledged;
        self
    }

    /// This run's first listing of the source is done: the flow is running.
    pub(crate) fn note_running(&self) {
        if let Some(s) = &self.status {
            s.set_running();
        }
    }

    fn clients(
        &self,
        stop: &CancellationToken,
        holds: &acker::Holds,
    ) -> Result<Clients, SyncError> {
        let s = &self.spec;
        let name = format!("duplex-{}-{}", s.source.id, s.target.id);
        let create = |op: &'static str, cluster: &str, e| SyncError::Kafka {
            op,
            cluster: cluster.to_string(),
            source: e,
        };
        let consumer: BaseConsumer<LagContext> =
            clients::consumer(&s.source, &name, &s.group_id(), s.in_flight_bytes)
                .create_with_context(LagContext {
                    metrics: self.metrics.clone(),
                    live: Mutex::new(false),
                })
                .map_err(|e| create("create consumer", &s.source.id, e))?;
        let consumer = Arc::new(clients::Closing::new(consumer));
        let book = Arc::new(book::Book::new(
            s.clone(),
            self.metrics.clone(),
            stop.clone(),
            holds.clone(),
        ));
        let producer: book::FlowProducer = clients::producer(&s.target, &name, s.in_flight_bytes)
            .create_with_context(book::DeliveryContext(book.clone()))
            .map_err(|e| create("create producer", &s.target.id, e))?;
        let scanner: BaseConsumer = clients::scanner(&s.target, &format!("{name}-scan"))
            .create()
            .map_err(|e| create("create scanner", &s.target.id, e))?;
        let source_admin: AdminClient<DefaultClientContext> =
            clients::admin(&s.source, &format!("{name}-admin"))
                .create()
                .map_err(|e| create("create admin client", &s.source.id, e))?;
        let target_admin: AdminClient<DefaultClientContext> =
            clients::admin(&s.target, &format!("{name}-admin"))
                .create()
                .map_err(|e| create("create admin client", &s.target.id, e))?;
        let creator = TopicCreator {
            source_id: s.source.id.clone(),
            target_id: s.target.id.clone(),
            source: Arc::new(source_admin),
            target: Arc::new(target_admin),
            timeout: s.limits.request_timeout,
        };
        Ok(Clients {
            consumer,
            producer,
            book,
            scanner: Arc::new(clients::Closing::new(scanner)),
            creator,
            marks: Default::default(),
        })
    }

    /// Runs the flow until `cancel` fires (Ok) or an error stops it. Either way the
    /// reader stops, the producer's local queue is purged, every delivery in flight is
    /// awaited (up to the drain timeout) and acknowledged positions are committed before
    /// it returns and the clients are dropped.
    pub async fn run_once(&self, cancel: &CancellationToken) -> Result<(), SyncError> {
        // Until the consumer's first statistics, the lag is not known.
        self.metrics.lag_unknown.store(1, Relaxed);
        // Nor how far this run's target acknowledged: it resumes from what it holds.
        self.acknowledged.clear();
        let stop = cancel.child_token();
        let holds = acker::Holds::default();
        let clients = self.clients(&stop, &holds)?;
        // Cancelled once the reader has stopped: nothing more is sent.
        let reading = CancellationToken::new();
        let reader = reader::Reader::new(self, &clients, holds);
        let acker = acker::Acker::new(self, &clients, stop.clone());
        let configs = tokio::spawn(configs::run(
            self.clone(),
            clients.creator.clone(),
            stop.clone(),
        ));
        let (r, a) = tokio::join!(
            async {
                let r = reader.run(&stop).await;
                // Drain: the reader has stopped, so nothing more is produced. What is
                // still in the local queue never left and is dropped (its deliveries
                // fail with ERR__PURGE_QUEUE; the next start re-sends it); what is in
                // flight may still land, so the acker awaits it before the producer is
                // dropped, which would purge it unseen.
                stop.cancel();
                clients.producer.purge(PurgeConfig::default().queue());
                reading.cancel();
                r
            },
            async {
                let a = acker.run(reading.clone()).await;
                if a.is_err() {
                    stop.cancel();
                }
                a
            }
        );
        stop.cancel();
        configs.abort();
        // Stopped or about to restart: nothing reads, so the last lag seen is stale.
        self.metrics.partitions_held.store(0, Relaxed);
        clients.consumer.context().end();
        match (a, r) {
            (Err(a), Err(r)) if r.outranks(&a) => Err(r),
            (a, r) => a.and(r),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{ClusterSpec, EngineSpec, TopicSelection};

    #[test]
    fn each_stall_in_a_row_doubles_the_stall_timeout_until_a_record_is_read() {
        let spec = EngineSpec::linked(
            vec![
                ClusterSpec::new("a", "127.0.0.1:1"),
                ClusterSpec::new("b", "127.0.0.1:2"),
            ],
            &[[0, 1]],
            TopicSelection::matching(".*").unwrap(),
        );
        let fs = crate::engine::flow_specs(&spec).remove(0);
        let base = fs.limits.stall_timeout;
        let flow = Flow::new(Arc::new(fs), Arc::new(FlowMetrics::default()));
        assert_eq!(flow.stall_timeout(), base);
        for (stalls, factor) in [(1, 2), (2, 4), (3, 8), (4, 8), (5, 8)] {
            flow.note_stall();
            assert_eq!(flow.stall_timeout(), base * factor, "after {stalls} stalls");
        }
        // The supervisor's copy and the run's share the count.
        flow.clone().note_read();
        assert_eq!(flow.stall_timeout(), base);
    }
}
