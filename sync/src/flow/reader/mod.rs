//! The reader: the per-record hot path of a flow. Reads the source, decides by
//! provenance whether this flow carries the record, and hands it to the producer with
//! the user's headers in order and `duplex.path` extended by one hop.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use rdkafka::Offset;
use rdkafka::consumer::Consumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use tokio_util::sync::CancellationToken;
use tracing::debug;

mod headers;
mod topics;

use headers::{HeaderScan, for_target};
use topics::{TopicRoute, Topics};

use super::acker::Holds;
use super::assign::Assignment;
use super::book::{Book, DeliveryContext};
use super::{Clients, Flow, watchdog};
use crate::error::SyncError;
use crate::message_ffi::{BatchStream, ConsumedMut, HeaderList, Outgoing, TopicHandle};
use crate::provenance::{Hop, Path, encode_origin};
use crate::routing::Decision;

/// Records taken from librdkafka in one batch, at most: handled in a row, before the
/// reader's select (stop, watchdog, refresh) has its turn again.
const READ_BATCH: usize = 256;
/// How many records ahead of the one being handled the reader prefetches. A record's
/// bytes were fetched by another thread and sit in memory, not the cache: the header
/// parse and the producer's copy of key and value waited on them (docs/benchmarks.md,
/// "Prefetching in the flow").
const PREFETCH_AHEAD: usize = 2;

pub(crate) struct Reader<'a> {
    flow: &'a Flow,
    clients: &'a Clients,
    book: Arc<Book>,
    holds: Holds,
    topics: Topics,
    path_buf: Vec<u8>,
    /// The partitions paused during the current batch (see [`Reader::rewind`]).
    rewinds: Vec<Rewind>,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(flow: &'a Flow, clients: &'a Clients, holds: Holds) -> Self {
        Reader {
            flow,
            clients,
            book: clients.book.clone(),
            holds,
            topics: Topics::default(),
            path_buf: Vec::with_capacity(128),
            rewinds: Vec::new(),
        }
    }

    /// Reads until `stop` fires or an error occurs.
    ///
    /// Assignment (finding topics, scanning the target, retrying partitions that could
    /// not start) runs beside the reading, not in its way: a partition whose start waits
    /// on a slow broker does not hold back the partitions already started.
    pub(crate) async fn run(mut self, stop: &CancellationToken) -> Result<(), SyncError> {
        let limits = self.flow.spec.limits.clone();
        // Where each partition started: the watchdog's position for partitions that have
        // read nothing yet.
        let mut starts = HashMap::new();
        let (flow, clients) = (self.flow, self.clients);
        let assign = |mut assignment: Assignment| {
            let stop = stop.clone();
            Box::pin(async move {
                let r = flow
                    .refresh_assignment(clients, &mut assignment, &stop, &clients.book)
                    .await;
                (assignment, r)
            })
        };
        // The assignment between two refreshes; taken by the refresh that runs.
        let mut idle = None;
        let mut refreshing = Some(assign(Assignment::default()));
        let mut refresh = tokio::time::interval(limits.refresh_interval);
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        refresh.reset();
        let stall_timeout = self.flow.stall_timeout();
        let mut read_any = false;
        let mut watch = tokio::time::interval(stall_timeout / 3);
        watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        watch.reset();
        let mut last_read = Instant::now();
        // Whether a record was handled since the last watch tick: the clock is read per
        // tick, not per record.
        let mut read_since_tick = false;
        let consumer = self.clients.consumer.clone();
        // One stream for the run. Batches: one call to librdkafka per batch, not per
        // record (docs/benchmarks.md).
        let mut batches =
            BatchStream::new(&consumer, READ_BATCH).map_err(|why| SyncError::Kafka {
                op: "read in batches",
                cluster: self.flow.spec.source.id.clone(),
                source: KafkaError::ClientCreation(why),
            })?;
        loop {
            tokio::select! {
                biased;
                _ = stop.cancelled() => return Ok(()),
                // Before refresh: a slow refresh is due again whenever it ends and would
                // otherwise starve the watchdog. A tick that follows reading only stamps
                // the time: time spent waiting for the target (in-flight budget,
                // producer queue) inside `handle` is not a stall either, and a target
                // outage must not restart the flow once it ends.
                _ = watch.tick() => {
                    if read_since_tick {
                        read_since_tick = false;
                        last_read = Instant::now();
                        continue;
                    }
                    if last_read.elapsed() < stall_timeout {
                        continue;
                    }
                    debug!(flow = %self.flow.spec.name(), "Nothing read for a while: checking whether the source holds more.");
                    let began = Instant::now();
                    // Stopping does not wait for a check (or a refresh) that waits on a
                    // broker which stopped answering: it bails out between requests.
                    tokio::select! {
                        r = watchdog::check(&self.flow.spec, &consumer, &starts, &self.holds, last_read.elapsed(), stall_timeout, stop) => r?,
                        _ = stop.cancelled() => return Ok(()),
                    }
                    not_idle(&mut last_read, began);
                }
                (assignment, added) = async { refreshing.as_mut().expect("guarded").await }, if refreshing.is_some() => {
                    refreshing = None;
                    for a in added? {
                        starts.insert((a.topic, a.partition), (a.offset, Instant::now()));
                    }
                    idle = Some(assignment);
                    debug!(flow = %self.flow.spec.name(), "Topics and partitions are up to date.");
                    // The next refresh is an interval after this one ended, not after it
                    // began: a slow one is not due again at once.
                    refresh.reset();
                }
                _ = refresh.tick(), if refreshing.is_none() => {
                    debug!(flow = %self.flow.spec.name(), idle_ms = last_read.elapsed().as_millis() as u64, "Looking for new topics and partitions.");
                    refreshing = idle.take().map(assign);
                }
                batch = batches.next() => {
                    // The client's errors first (all brokers down, ...), as rdkafka's
                    // poll returns them.
                    for e in batch.errors() {
                        self.consume_error(e.clone(), None, &starts, stop).await?;
                    }
                    // A batch is handled whole, without this select's work per record (a
                    // waiter on the stop token, two timers polled). librdkafka's position
                    // is past it already: a partition paused during it keeps its later
                    // records for the resume, by a seek back to them (`rewind`).
                    for mut m in batch.into_iter_mut(PREFETCH_AHEAD) {
                        match m.kafka_error() {
                            None => {
                                self.handle(&mut m, stop).await?;
                                if !read_any {
                                    read_any = true;
                                    self.flow.note_read();
                                }
                                read_since_tick = true;
                            }
                            // An entry of one partition says which, and at what offset.
                            Some(e) => {
                                let at = m.topic().map(|t| (t, m.partition(), m.offset()));
                                self.consume_error(e, at, &starts, stop).await?
                            }
                        }
                        // The acker runs in this task (run_once joins them): it gets its
                        // turn when this one yields, which tokio's budget enforces here,
                        // every 128 records, as long as records keep coming.
                        tokio::task::coop::consume_budget().await;
                        if stop.is_cancelled() {
                            return Ok(());
                        }
                    }
                    self.rewind()?;
                }
            }
        }
    }

    /// `at`: the topic, partition and offset of an error that came in a record's place.
    async fn consume_error(
        &self,
        e: KafkaError,
        at: Option<(&str, i32, i64)>,
        starts: &watchdog::Starts,
        stop: &CancellationToken,
    ) -> Result<(), SyncError> {
        match e.rdkafka_error_code() {
            // auto.offset.reset=error (clients.rs): name the partition and restart.
            // Stopping does not wait for the search on a source that stopped answering.
            Some(RDKafkaErrorCode::AutoOffsetReset) => tokio::select! {
                e = watchdog::out_of_range(&self.flow.spec, &self.clients.consumer, starts, at, e) => Err(e),
                _ = stop.cancelled() => Ok(()),
            },
            // Transport hiccups are retried inside librdkafka; they surface as events.
            Some(
                RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::PartitionEOF,
            ) => {
                debug!(flow = %self.flow.spec.name(), error = %e, "The source connection had a problem; librdkafka retries.");
                Ok(())
            }
            _ => Err(SyncError::Kafka {
                op: "consume",
                cluster: self.flow.spec.source.id.clone(),
                source: e,
            }),
        }
    }

    /// The route of topic `name`, computed once per topic. No hash lookup while records
    /// keep coming from the same topic.
    fn topic<'t>(topics: &'t mut Topics, flow: &Flow, name: &str) -> &'t mut TopicRoute {
        let i = match topics.last {
            Some(i) if &*topics.routes[i].name == name => i,
            _ => match topics.index.get(name) {
                Some(&i) => i,
                None => {
                    topics.routes.push(TopicRoute {
                        name: Arc::from(name),
                        router: flow.spec.routes.router(name),
                        handle: None,
                        next: Vec::new(),
                        marks: Vec::new(),
                        parts: Vec::new(),
                    });
                    let i = topics.routes.len() - 1;
                    topics.index.insert(name.to_string(), i);
                    i
                }
            },
        };
        topics.last = Some(i);
        &mut topics.routes[i]
    }

    async fn handle(
        &mut self,
        m: &mut ConsumedMut<'_>,
        stop: &CancellationToken,
    ) -> Result<(), SyncError> {
        // The record's own header list goes to the target with it: reserved headers
        // removed and `duplex.path` added, the user's headers as they are, in order, each
        // name with the length the record gives it (message_ffi).
        let spec = &self.flow.spec;
        let (partition, offset) = (m.partition(), m.offset());
        // Read once: each call measures and checks the name librdkafka holds. Kafka's
        // topic names are ASCII; a record without a topic name is not one to copy.
        let Some(topic) = m.topic() else {
            return Err(SyncError::Kafka {
                op: "consume",
                cluster: spec.source.id.clone(),
                source: KafkaError::MessageConsumption(RDKafkaErrorCode::InvalidTopic),
            });
        };
        // A partition paused earlier in this batch: its later records wait for the
        // resume, which starts at the first of them (`rewind`).
        if let Some(r) = self
            .rewinds
            .iter_mut()
            .find(|r| r.partition == partition && &*r.topic == topic)
        {
            r.to.get_or_insert(offset);
            return Ok(());
        }
        // What decides the record's fate is read in place, without librdkafka's parse
        // (message_ffi), where that read applies: a record passed over then costs no
        // header list. Its list is taken below only if it is sent. Else the list is taken
        // now and read.
        let in_place_read;
        let mut headers;
        let HeaderScan {
            path_value,
            header_bytes,
        } = match m.headers_in_place() {
            Some(raw) => {
                in_place_read = true;
                headers = None;
                HeaderScan::of(raw)
            }
            None => {
                in_place_read = false;
                headers = m.detach_headers();
                HeaderScan::of(headers.iter().flat_map(HeaderList::iter))
            }
        };
        let path = match path_value {
            None => None,
            Some(v) => Some(Path::decode(v.unwrap_or_default()).map_err(|source| {
                SyncError::Provenance {
                    cluster: spec.source.id.clone(),
                    topic: topic.to_string(),
                    partition,
                    offset,
                    source,
                }
            })?),
        };
        let clients = self.clients;
        let route = Self::topic(&mut self.topics, self.flow, topic);
        if route.seen(partition, offset, &clients.marks) {
            debug!(flow = %spec.name(), topic, partition, offset, "Read again after a pause: already handled.");
            return Ok(());
        }
        let decision =
            route
                .router
                .decide(spec.source.id.as_bytes(), partition, offset, path.as_ref());
        // Read again after a change: what the target holds already is passed over.
        let decision = match route.marks(partition) {
            Some(marks) if decision == Decision::Forward => {
                let (origin, _, o) = route.router.origin_of(
                    spec.source.id.as_bytes(),
                    partition,
                    offset,
                    path.as_ref(),
                );
                if marks.holds(origin, o) {
                    Decision::AlreadyHeld
                } else {
                    decision
                }
            }
            _ => decision,
        };
        match decision {
            Decision::Forward => {}
            decision => {
                let counter = match decision {
                    Decision::NotInTree => &self.flow.metrics.not_forwarded,
                    Decision::Deferred => &self.flow.metrics.deferred,
                    Decision::AlreadyHeld => &self.flow.metrics.already_held,
                    _ => &self.flow.metrics.loop_stopped,
                };
                counter.fetch_add(1, Relaxed);
                let i = route.part(partition, &self.book);
                self.book.lock().parts[i as usize].p.passed(offset);
                return Ok(());
            }
        }
        let part = route.part(partition, &self.book);
        // Why this record could not be handed to the producer.
        let not_sent = |e| {
            SyncError::delivery(
                &spec.source.id,
                &spec.target.id,
                topic,
                partition,
                offset,
                e,
            )
        };
        let handle = match &mut route.handle {
            Some(h) => &*h,
            slot @ None => match TopicHandle::new(&clients.producer, topic) {
                Ok(h) => &*slot.insert(h),
                Err(why) => return Err(not_sent(KafkaError::ClientCreation(why))),
            },
        };
        let hop = Hop {
            cluster: spec.source.id.as_bytes(),
            partition,
            offset,
        };
        let encoded = match &path {
            Some(p) => p.extend_into(hop, &mut self.path_buf),
            None => encode_origin(hop, &mut self.path_buf),
        };
        encoded.map_err(|source| SyncError::Provenance {
            cluster: spec.source.id.clone(),
            topic: topic.to_string(),
            partition,
            offset,
            source,
        })?;
        if in_place_read {
            headers = m.detach_headers();
        }
        let mut headers = for_target(headers, &self.path_buf);
        let bytes =
            m.key().map_or(0, <[u8]>::len) + m.payload().map_or(0, <[u8]>::len) + header_bytes;
        // Rule 5: wait for acknowledgements while the in-flight budget is spent. The
        // delivery callback gives the bytes back (book.rs).
        let permits = bytes.clamp(1, spec.in_flight_bytes);
        // Without waiting when the budget has room: no future, no waiter registered
        // with the stop token, for most records.
        match self.book.budget.try_acquire_many(permits as u32) {
            Ok(p) => p.forget(),
            Err(_) => tokio::select! {
                p = self.book.budget.acquire_many(permits as u32) => p.expect("budget semaphore is never closed").forget(),
                _ = stop.cancelled() => return Ok(()),
            },
        }
        let timestamp = m.timestamp();
        let pause = loop {
            let record = Outgoing {
                partition,
                key: m.key(),
                payload: m.payload(),
                timestamp,
                headers,
            };
            match Self::try_send(&self.book, handle, part, offset, bytes, record) {
                Ok(pause) => break pause,
                // A full local queue is "not ready": wait and try again.
                Err((RDKafkaErrorCode::QueueFull, h)) => {
                    headers = h;
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(2)) => {}
                        _ = stop.cancelled() => {
                            self.book.budget.add_permits(permits);
                            return Ok(());
                        }
                    }
                }
                Err((code, _)) => {
                    self.book.budget.add_permits(permits);
                    return Err(not_sent(KafkaError::MessageProduction(code)));
                }
            }
        };
        if pause && self.book.pause(&self.clients.consumer, part, true) {
            self.rewinds.push(Rewind {
                topic: route.name.clone(),
                partition,
                to: None,
            });
        }
        Ok(())
    }

    /// After a batch: each partition paused during it, whose later records in it were
    /// not sent, is set to read again from the first of them once resumed. librdkafka
    /// took the whole batch as read (its position is past it), and a resume fetches from
    /// that position: without the seek those records would be skipped; sending them
    /// instead would let a partition whose target does not answer take more than its
    /// share of the budget, up to a batch of its records (rule 5's per-partition hold,
    /// docs/delivery.md). Waits for librdkafka's reply, as a pause does; a seek that
    /// fails restarts the flow, which resumes from its checkpoint.
    fn rewind(&mut self) -> Result<(), SyncError> {
        for r in self.rewinds.drain(..) {
            let Some(to) = r.to else { continue };
            debug!(flow = %self.flow.spec.name(), topic = %r.topic, partition = r.partition, offset = to, "Paused during a batch: its later records are read again on resume.");
            self.clients
                .consumer
                .seek(
                    &r.topic,
                    r.partition,
                    Offset::Offset(to),
                    self.flow.spec.limits.request_timeout,
                )
                .map_err(|source| SyncError::Kafka {
                    op: "seek back to the records a pause left",
                    cluster: self.flow.spec.source.id.clone(),
                    source,
                })?;
        }
        Ok(())
    }
}

/// A partition paused during the current batch, and the first of its records in the
/// batch that was left for the resume.
struct Rewind {
    topic: Arc<str>,
    partition: i32,
    to: Option<i64>,
}

impl Reader<'_> {
    /// Enters a record in the book, then hands it to the producer: it is there before
    /// its delivery can resolve, and the producer's copy of it is made without the lock
    /// the delivery callback takes. Returns whether its partition now holds more than
    /// its share of the budget, or why the producer did not take it, with its headers
    /// (and the book no longer holds it).
    fn try_send(
        book: &Book,
        topic: &TopicHandle<DeliveryContext>,
        part: u32,
        offset: i64,
        bytes: usize,
        record: Outgoing<'_>,
    ) -> Result<bool, (RDKafkaErrorCode, HeaderList)> {
        let (token, seq, pause) = {
            let mut state = book.lock();
            let token = state.next_token(part);
            state.outstanding += 1;
            let p = &mut state.parts[part as usize].p;
            let seq = p.sent(offset, bytes, record.timestamp);
            (token, seq, !p.paused && p.in_flight > book.cap)
        };
        match crate::message_ffi::send(topic, record, token) {
            Ok(()) => Ok(pause),
            Err(not_taken) => {
                // No delivery report exists for it, and only this reader adds entries.
                let mut state = book.lock();
                state.outstanding -= 1;
                state.parts[part as usize].p.unsent(seq);
                Err(not_taken)
            }
        }
    }
}

/// Time spent refreshing or checking is not time spent waiting for records: the stall
/// watchdog counts only the time the message stream had its turn.
fn not_idle(last_read: &mut Instant, began: Instant) {
    *last_read = (*last_read + began.elapsed()).min(Instant::now());
}
