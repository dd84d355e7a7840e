//! Consuming in batches: `rd_kafka_consume_batch_queue` on a consumer's queue hands
//! over up to a batch of messages per call, where rdkafka's `BaseConsumer::poll` takes
//! one call, one event, one `Arc` and three clock reads (its own and librdkafka's) per
//! message. For the verifier's readers (threads, which wait inside librdkafka) and the
//! flow's (async, through [`super::BatchStream`]).

use std::ffi::{CStr, c_char, c_int};
use std::ptr::{self, NonNull};
use std::time::Duration;

use rdkafka::bindings as rd;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use super::consumed::{Consumed, ConsumedMut};
use crate::admin_ffi::{code as error_code, rd_kafka_event_error};

/// Reads a consumer's messages in batches; see the module. Holds the last batch until
/// the next [`Batches::next_batch`] or until dropped, and borrows the consumer, which
/// must outlive its messages.
///
/// librdkafka's batch call serves every other event on the queue itself, with the
/// callbacks rdkafka does not set: logs would be printed raw to stderr, errors only
/// logged, and a rebalance (`subscribe`) or an offset commit's reply mishandled (the
/// latter is an assertion in librdkafka). So while a `Batches` lives, the client's main
/// queue (errors, logs, statistics) goes to a queue of its own, whose events go to the
/// consumer's context as rdkafka's `poll` would pass them, before each batch; and
/// [`Batches::new`] refuses a consumer that subscribed or commits by itself. Events the
/// client queued before that (its warnings at creation, a first connection's errors)
/// sit on the consumer queue: make the `Batches` before anything is assigned and
/// [`Batches::new`] passes them on too; made after, the batch call serves them with
/// librdkafka's defaults (logs raw to stderr, errors not in [`Batch::errors`]). A client
/// that authenticates with OAUTHBEARER keeps them there either way: its first token
/// refresh is among them, and only the batch call runs librdkafka's handler of it.
pub struct Batches<'c, C: ConsumerContext> {
    consumer: &'c BaseConsumer<C>,
    queue: NonNull<rd::rd_kafka_queue_t>,
    events: NonNull<rd::rd_kafka_queue_t>,
    messages: Vec<*mut rd::rd_kafka_message_t>,
    /// The client's errors not yet handed out in a batch (see [`Batch::errors`]).
    errors: Vec<KafkaError>,
    /// `errors` went out in the last batch: the next fill starts a new list.
    errors_handed: bool,
}

// SAFETY: librdkafka's queue handles and the messages it handed over may be used from
// any thread (its API locks what it shares); this value owns them alone, and the
// consumer it borrows is `Sync`. An async reader moves between a runtime's threads.
unsafe impl<C: ConsumerContext> Send for Batches<'_, C> where BaseConsumer<C>: Sync {}

impl<C: ConsumerContext> std::fmt::Debug for Batches<'_, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batches")
            .field("queue", &self.queue)
            .field("held", &self.messages.len())
            .field("capacity", &self.messages.capacity())
            .finish_non_exhaustive()
    }
}

impl<'c, C: ConsumerContext> Batches<'c, C> {
    /// Batches of up to `capacity` messages from `consumer`'s queue. The consumer must
    /// have a `group.id` (its queue), read by `assign` (no `subscribe`: rebalances are not
    /// served here) with `enable.auto.commit=false`. Its commits must send no result to
    /// the main queue: rdkafka's `commit` sends none (async: no reply queue and no
    /// `offset_commit_cb`; sync: a queue of its own), which is how the flow's acker
    /// commits.
    pub fn new(consumer: &'c BaseConsumer<C>, capacity: usize) -> Result<Batches<'c, C>, String> {
        if consumer.subscription().is_ok_and(|s| s.count() > 0) {
            return Err(
                "a consumer that subscribed cannot be read in batches (assign instead)".into(),
            );
        }
        let rk = consumer.client().native_ptr();
        if conf_value(rk, c"enable.auto.commit").as_deref() != Some("false") {
            return Err("a consumer read in batches must have enable.auto.commit=false".into());
        }
        // SAFETY: the client handle is alive while `consumer` is, which outlives us
        // (`'c`). Both queue handles are ours, destroyed in `drop`.
        let queue = NonNull::new(unsafe { rd::rd_kafka_queue_get_consumer(rk) })
            .ok_or("librdkafka has no consumer queue for a consumer without a group.id")?;
        let events = NonNull::new(unsafe { rd::rd_kafka_queue_new(rk) })
            .ok_or("librdkafka could not make a queue")?;
        // SAFETY: as above. The main queue's forward is changed from the consumer queue
        // (rdkafka's `rd_kafka_poll_set_consumer`) to `events`, and set back in `drop`.
        unsafe {
            let main = rd::rd_kafka_queue_get_main(rk);
            rd::rd_kafka_queue_forward(main, events.as_ptr());
            rd::rd_kafka_queue_destroy(main);
        }
        let mut batches = Batches {
            consumer,
            queue,
            events,
            messages: Vec::with_capacity(capacity.max(1)),
            errors: Vec::new(),
            errors_handed: false,
        };
        // Until now the main queue's events went to the consumer queue. With nothing
        // assigned, that queue holds only such events: they go to the context (and their
        // errors to the first batch) like the ones to come.
        if consumer.assignment().is_ok_and(|a| a.count() == 0)
            && conf_value(rk, c"sasl.mechanisms")
                .is_none_or(|m| !m.eq_ignore_ascii_case("OAUTHBEARER"))
        {
            batches.serve(queue);
        }
        Ok(batches)
    }

    /// The next batch: the messages that were waiting, or that came, within `timeout`.
    /// librdkafka returns early only with a full batch (or when told to yield): a
    /// partial one takes the whole timeout, so keep it short where records trickle. The
    /// previous batch's messages are given back first, and the events that came meanwhile
    /// are passed on.
    pub fn next_batch(&mut self, timeout: Duration) -> Batch<'_> {
        self.fill(timeout);
        self.current()
    }

    /// Gives the last batch back, passes on the events that came, and takes the next
    /// batch (within `timeout`) into `messages`. Returns how many messages and errors
    /// it holds.
    pub(super) fn fill(&mut self, timeout: Duration) -> usize {
        self.release();
        if std::mem::take(&mut self.errors_handed) {
            self.errors.clear();
        }
        self.serve(self.events);
        let capacity = self.messages.capacity();
        let timeout_ms = c_int::try_from(timeout.as_millis()).unwrap_or(c_int::MAX);
        // SAFETY: the queue is alive (ours until `drop`); librdkafka writes at most
        // `capacity` message pointers into the buffer, which has room for them, and
        // returns how many (or -1 on an error, counted as none).
        let got = unsafe {
            rd::rd_kafka_consume_batch_queue(
                self.queue.as_ptr(),
                timeout_ms,
                self.messages.as_mut_ptr(),
                capacity,
            )
        };
        // SAFETY: the first `got` entries were written just now.
        unsafe {
            self.messages
                .set_len(usize::try_from(got).unwrap_or(0).min(capacity))
        };
        self.messages.len() + self.errors.len()
    }

    /// The batch [`Batches::fill`] took.
    pub(super) fn current(&mut self) -> Batch<'_> {
        self.errors_handed = true;
        Batch {
            messages: &self.messages,
            errors: &self.errors,
        }
    }

    /// The consumer queue (messages) and the queue the client's own events go to while
    /// this lives: a reader that waits for either to fill asks both to tell it.
    pub(super) fn queues(&self) -> [NonNull<rd::rd_kafka_queue_t>; 2] {
        [self.queue, self.events]
    }

    /// Passes the events waiting on `queue` (ours: the main queue's, or the consumer
    /// queue before anything is assigned) to the consumer's context, as rdkafka's
    /// `BaseConsumer::poll` does: logs, errors, statistics. Errors are also kept for the
    /// next batch, as rdkafka's `poll` returns them.
    fn serve(&mut self, queue: NonNull<rd::rd_kafka_queue_t>) {
        let context = self.consumer.context();
        loop {
            // SAFETY: our queue; a zero timeout only looks.
            let ev = unsafe { rd::rd_kafka_queue_poll(queue.as_ptr(), 0) };
            if ev.is_null() {
                return;
            }
            // SAFETY: `ev` is an event librdkafka handed over, destroyed below, after
            // the strings read from it were copied.
            unsafe {
                match rd::rd_kafka_event_type(ev) {
                    rd::RD_KAFKA_EVENT_LOG => {
                        let (mut fac, mut text, mut level) = (ptr::null(), ptr::null(), 0);
                        if rd::rd_kafka_event_log(ev, &mut fac, &mut text, &mut level) == 0 {
                            context.log(log_level(level), lossy(fac).trim(), lossy(text).trim());
                        }
                    }
                    rd::RD_KAFKA_EVENT_ERROR => {
                        let code = error_code(rd_kafka_event_error(ev));
                        let reason = lossy(rd::rd_kafka_event_error_string(ev));
                        context.error(KafkaError::Global(code), reason.trim());
                        self.errors.push(returned_error(ev, code));
                    }
                    rd::RD_KAFKA_EVENT_STATS => {
                        let json = rd::rd_kafka_event_stats(ev);
                        if !json.is_null() {
                            context.stats_raw(CStr::from_ptr(json).to_bytes());
                        }
                    }
                    // None other is expected: no rebalance (no `subscribe`), no
                    // offset commit's result (no auto-commit; `commit` without a reply
                    // queue, as rdkafka calls it, sends none), and no message on the
                    // consumer queue while nothing is assigned (one left from an
                    // assignment undone is outdated; librdkafka drops those too).
                    _ => {}
                }
                rd::rd_kafka_event_destroy(ev);
            }
        }
    }

    fn release(&mut self) {
        for m in self.messages.drain(..) {
            // SAFETY: each was handed over by librdkafka in the last batch, and no
            // `Consumed` borrowing it is alive (they borrow `self`).
            unsafe { rd::rd_kafka_message_destroy(m) };
        }
    }
}

impl<C: ConsumerContext> Drop for Batches<'_, C> {
    fn drop(&mut self) {
        self.release();
        let rk = self.consumer.client().native_ptr();
        // SAFETY: the client is alive (`'c`). The main queue goes back to the consumer
        // queue, as rdkafka set it up, before the events that came to `events` are
        // passed on (none can come after) and `events` is given back; each queue handle
        // is ours and given back once.
        unsafe { rd::rd_kafka_poll_set_consumer(rk) };
        self.serve(self.events);
        unsafe {
            rd::rd_kafka_queue_destroy(self.events.as_ptr());
            rd::rd_kafka_queue_destroy(self.queue.as_ptr());
        }
    }
}

/// The client's setting `name`, when it is known and fits in 64 bytes (the settings
/// asked for here are words).
fn conf_value(rk: *mut rd::rd_kafka_t, name: &CStr) -> Option<String> {
    let mut buf = [0 as c_char; 64];
    let mut size = buf.len();
    // SAFETY: the client is alive; librdkafka writes at most `size` bytes, NUL included,
    // and sets `size` to what the value needs.
    let ok = unsafe {
        rd::rd_kafka_conf_get(
            rd::rd_kafka_conf(rk),
            name.as_ptr(),
            buf.as_mut_ptr(),
            &mut size,
        )
    };
    (ok == rd::rd_kafka_conf_res_t::RD_KAFKA_CONF_OK && size <= buf.len()).then(|| {
        // SAFETY: written NUL-terminated within the buffer (`size` fits).
        unsafe { CStr::from_ptr(buf.as_ptr()) }
            .to_string_lossy()
            .into_owned()
    })
}

/// A C string librdkafka handed over, lossily as UTF-8; empty for a null pointer.
///
/// # Safety
/// `s` is null or a NUL-terminated string alive while the result is used.
unsafe fn lossy<'a>(s: *const c_char) -> std::borrow::Cow<'a, str> {
    if s.is_null() {
        return "".into();
    }
    unsafe { CStr::from_ptr(s) }.to_string_lossy()
}

/// rdkafka's log level for a syslog level librdkafka sends.
fn log_level(level: c_int) -> RDKafkaLogLevel {
    match level {
        0 => RDKafkaLogLevel::Emerg,
        1 => RDKafkaLogLevel::Alert,
        2 => RDKafkaLogLevel::Critical,
        3 => RDKafkaLogLevel::Error,
        4 => RDKafkaLogLevel::Warning,
        5 => RDKafkaLogLevel::Notice,
        6 => RDKafkaLogLevel::Info,
        _ => RDKafkaLogLevel::Debug,
    }
}

/// The error an `RD_KAFKA_EVENT_ERROR` event stands for, as rdkafka's consumer `poll`
/// returns it: the end of a partition, a fatal error, or another consume error.
///
/// # Safety
/// `ev` is an error event librdkafka handed over, not destroyed yet.
unsafe fn returned_error(ev: *mut rd::rd_kafka_event_t, code: RDKafkaErrorCode) -> KafkaError {
    if code == RDKafkaErrorCode::PartitionEOF {
        // SAFETY: the event's partition is a copy that is ours to destroy.
        let partition = unsafe {
            let tp = rd::rd_kafka_event_topic_partition(ev);
            if tp.is_null() {
                -1
            } else {
                let p = (*tp).partition;
                rd::rd_kafka_topic_partition_destroy(tp);
                p
            }
        };
        return KafkaError::PartitionEOF(partition);
    }
    // SAFETY: as above.
    if unsafe { rd::rd_kafka_event_error_is_fatal(ev) } != 0 {
        KafkaError::MessageConsumptionFatal(code)
    } else {
        KafkaError::MessageConsumption(code)
    }
}

/// One batch of messages, in the order librdkafka queued them, and the client's errors
/// that came since the last. Read once, as [`Consumed`] or [`ConsumedMut`]: either
/// iterator takes it, so that no message has a handle of each kind.
#[derive(Debug)]
pub struct Batch<'b> {
    messages: &'b [*mut rd::rd_kafka_message_t],
    errors: &'b [KafkaError],
}

// SAFETY: a view of messages (librdkafka's heap, readable from any thread) that only
// the holder of the `Batches`' exclusive borrow reads.
unsafe impl Send for Batch<'_> {}

impl<'b> Batch<'b> {
    /// How many messages, consumer errors handed over in their place included (not
    /// [`Batch::errors`]).
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    /// Whether the batch holds no message (nor consumer error in one's place); it may
    /// still hold [`Batch::errors`].
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// The client's errors (`RD_KAFKA_EVENT_ERROR`: all brokers down, a fatal error, ...)
    /// that came since the last batch, as rdkafka's consumer `poll` returns them. The
    /// consumer's context was told of each already (`ClientContext::error`).
    pub fn errors(&self) -> &'b [KafkaError] {
        self.errors
    }

    /// The messages, each yielded after the one `ahead` places later was
    /// [prefetched](Consumed::prefetch); `ahead == 0` prefetches nothing. A reader that
    /// reads every byte of each record asks for a few ahead.
    pub fn into_iter_prefetching(self, ahead: usize) -> impl Iterator<Item = Consumed<'b>> + 'b {
        let messages = self.messages;
        messages.iter().enumerate().map(move |(i, &m)| {
            prefetch_ahead(messages, i, ahead);
            Consumed::of(m)
        })
    }

    /// The messages, each the only handle on its message, whose headers may be taken
    /// ([`ConsumedMut::detach_headers`]): for a reader that forwards them. Each is
    /// yielded after the one `ahead` places later was [prefetched](Consumed::prefetch),
    /// as in [`Batch::into_iter_prefetching`]: a reader that copies the records (the
    /// producer copies key and value, librdkafka parses the headers) reads all of them.
    pub fn into_iter_mut(self, ahead: usize) -> IntoIterMut<'b> {
        IntoIterMut {
            messages: self.messages,
            next: 0,
            ahead,
        }
    }
}

/// Before message `i` of a batch is yielded: prefetches the one `ahead` places later,
/// and on the first, the ones before that too (`ahead == 0`: none).
fn prefetch_ahead(messages: &[*mut rd::rd_kafka_message_t], i: usize, ahead: usize) {
    if ahead == 0 {
        return;
    }
    let from = if i == 0 { 1 } else { ahead };
    for &later in messages
        .iter()
        .skip(i.saturating_add(from))
        .take((ahead - from).saturating_add(1))
    {
        // SAFETY: a message of the batch, not yet yielded: no handle of it exists or
        // changes it meanwhile.
        unsafe { Consumed::prefetch_message(later) };
    }
}

/// The messages of a batch as [`ConsumedMut`]s ([`Batch::into_iter_mut`]).
#[derive(Debug)]
pub struct IntoIterMut<'b> {
    messages: &'b [*mut rd::rd_kafka_message_t],
    next: usize,
    ahead: usize,
}

// SAFETY: as for `Batch`, whose messages it yields, each once.
unsafe impl Send for IntoIterMut<'_> {}

impl<'b> Iterator for IntoIterMut<'b> {
    type Item = ConsumedMut<'b>;

    fn next(&mut self) -> Option<ConsumedMut<'b>> {
        let &m = self.messages.get(self.next)?;
        prefetch_ahead(self.messages, self.next, self.ahead);
        self.next += 1;
        Some(ConsumedMut::of(m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::ClientConfig;
    use rdkafka::TopicPartitionList;
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

    fn consumer(bootstrap: &str, auto_commit: &str) -> BaseConsumer {
        ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", "batches-test")
            .set("enable.auto.commit", auto_commit)
            .create()
            .expect("consumer")
    }

    #[test]
    fn a_batch_holds_each_record_as_produced_and_misuse_is_refused() {
        let mock = MockCluster::new(1).expect("mock cluster");
        mock.create_topic("t", 1, 1).expect("topic");
        let boot = mock.bootstrap_servers();
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", &boot)
            .create()
            .expect("producer");
        for i in 0..5i64 {
            let key = format!("k{i}");
            let mut rec = BaseRecord::<str, [u8]>::to("t")
                .partition(0)
                .key(&key)
                .timestamp(1_000 + i)
                .headers(OwnedHeaders::new().insert(Header {
                    key: "h",
                    value: Some(&[i as u8][..]),
                }));
            // Record 3 has a null value.
            if i != 3 {
                rec = rec.payload(&b"value"[..]);
            }
            producer.send(rec).map_err(|(e, _)| e).expect("send");
        }
        producer.flush(Duration::from_secs(10)).expect("flush");

        let c = consumer(&boot, "false");
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("t", 0, rdkafka::Offset::Beginning)
            .expect("add");
        c.assign(&tpl).expect("assign");
        let mut batches = Batches::new(&c, 4).expect("batches");
        let mut seen = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while seen.len() < 5 && std::time::Instant::now() < deadline {
            let batch = batches.next_batch(Duration::from_millis(100));
            assert!(batch.len() <= 4, "a batch holds at most its capacity");
            for m in batch.into_iter_prefetching(2) {
                assert!(m.error().is_none(), "{:?}", m.error());
                let headers: Vec<_> = m.headers().collect();
                seen.push((
                    m.topic().map(str::to_string),
                    m.partition(),
                    m.offset(),
                    m.key().map(<[u8]>::to_vec),
                    m.payload().map(<[u8]>::to_vec),
                    m.timestamp(),
                    headers.len(),
                    headers
                        .first()
                        .map(|(n, v)| (n.to_vec(), v.map(<[u8]>::to_vec))),
                ));
            }
        }
        assert_eq!(seen.len(), 5, "every record read");
        for (i, s) in seen.iter().enumerate() {
            let i = i as i64;
            assert_eq!(
                s,
                &(
                    Some("t".to_string()),
                    0,
                    i,
                    Some(format!("k{i}").into_bytes()),
                    (i != 3).then(|| b"value".to_vec()),
                    Some(1_000 + i),
                    1,
                    Some((b"h".to_vec(), Some(vec![i as u8]))),
                )
            );
        }
        drop(batches);

        let committing = consumer(&boot, "true");
        let err = Batches::new(&committing, 8).expect_err("auto-commit refused");
        assert!(err.contains("enable.auto.commit"), "{err}");
        let subscribed = consumer(&boot, "false");
        subscribed.subscribe(&["t"]).expect("subscribe");
        let err = Batches::new(&subscribed, 8).expect_err("subscribe refused");
        assert!(err.contains("subscribed"), "{err}");
    }

    /// Keeps the logs it is given.
    #[derive(Default)]
    struct Logs(std::sync::Mutex<Vec<String>>);

    impl rdkafka::ClientContext for Logs {
        fn log(&self, _level: RDKafkaLogLevel, fac: &str, line: &str) {
            self.0.lock().unwrap().push(format!("{fac}: {line}"));
        }
    }

    impl ConsumerContext for Logs {}

    #[test]
    fn what_the_client_said_before_the_batches_reaches_its_context() {
        let mock = MockCluster::new(1).expect("mock cluster");
        // A producer's setting on a consumer: librdkafka warns (CONFWARN, naming it
        // `queue.buffering.max.ms`) as it creates the client, before any batch reader
        // exists.
        let c: BaseConsumer<Logs> = ClientConfig::new()
            .set("bootstrap.servers", mock.bootstrap_servers())
            .set("group.id", "batches-test")
            .set("enable.auto.commit", "false")
            .set("linger.ms", "7")
            .create_with_context(Logs::default())
            .expect("consumer");
        let mut batches = Batches::new(&c, 4).expect("batches");
        let batch = batches.next_batch(Duration::ZERO);
        assert!(batch.is_empty());
        drop(batches);
        let logs = c.context().0.lock().unwrap().clone();
        assert!(
            logs.iter()
                .any(|l| l.starts_with("CONFWARN") && l.contains("producer property")),
            "the creation warning went to the context: {logs:?}"
        );
    }
}
