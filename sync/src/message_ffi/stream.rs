//! Batches for an async reader: [`BatchStream::next`] waits for a batch without holding
//! a thread, as rdkafka's `StreamConsumer` waits for one message.
//!
//! librdkafka calls a queue's event callback (`rd_kafka_queue_cb_event_enable`) from its
//! own threads, under the queue's lock, whenever the queue goes from empty to holding
//! something. The callback here only wakes the task that last found both queues (the
//! consumer's messages and the client's events, see [`Batches`]) empty. A batch is taken
//! without waiting; when it is empty the task's waker is stored, and the queues are
//! looked at once more, so that a message that came between the two looks is not left
//! waiting for a callback that already ran.

use std::ffi::c_void;
use std::future::poll_fn;
use std::ptr::{self, NonNull};
use std::task::Poll;
use std::time::Duration;

use futures::task::AtomicWaker;
use rdkafka::bindings as rd;
use rdkafka::consumer::{BaseConsumer, ConsumerContext};

use super::{Batch, Batches};

/// A consumer's messages in batches, for an async task; see the module. The consumer's
/// queue must have no other event callback while this lives (a `BaseConsumer` sets none;
/// rdkafka's `StreamConsumer` sets its own, which this would replace).
pub struct BatchStream<'c, C: ConsumerContext> {
    batches: Batches<'c, C>,
    /// Where the callback finds the task to wake: a leaked box, so that the address
    /// librdkafka holds stays put and no reference to it is moved or made unique
    /// while librdkafka's threads may read it; freed in `drop`, after the callbacks.
    waker: NonNull<AtomicWaker>,
}

// SAFETY: `waker` is an `AtomicWaker` (Send + Sync) that this value owns; the rest is
// `Batches`, which is Send on the same terms.
unsafe impl<C: ConsumerContext> Send for BatchStream<'_, C> where BaseConsumer<C>: Sync {}

impl<C: ConsumerContext> std::fmt::Debug for BatchStream<'_, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchStream")
            .field("batches", &self.batches)
            .finish_non_exhaustive()
    }
}

/// librdkafka's call when a queue becomes non-empty: wakes the waiting task, if any.
///
/// # Safety
/// `opaque` is the `AtomicWaker` of a live [`BatchStream`] (the callback is disabled
/// before it is freed).
unsafe extern "C" fn wake(_rk: *mut rd::rd_kafka_t, opaque: *mut c_void) {
    // SAFETY: see above; `AtomicWaker` may be woken from any thread.
    unsafe { &*opaque.cast::<AtomicWaker>() }.wake();
}

impl<'c, C: ConsumerContext> BatchStream<'c, C> {
    /// Batches of up to `capacity` messages; [`Batches::new`] says what `consumer` must be.
    pub fn new(
        consumer: &'c BaseConsumer<C>,
        capacity: usize,
    ) -> Result<BatchStream<'c, C>, String> {
        let batches = Batches::new(consumer, capacity)?;
        let waker = NonNull::from(Box::leak(Box::new(AtomicWaker::new())));
        let opaque = waker.as_ptr().cast::<c_void>();
        for q in batches.queues() {
            // SAFETY: both queues are alive while `batches` is; `opaque` outlives the
            // registration, which `drop` removes before the box is freed.
            unsafe { rd::rd_kafka_queue_cb_event_enable(q.as_ptr(), Some(wake), opaque) };
        }
        Ok(BatchStream { batches, waker })
    }

    /// The next batch that holds a message or an error, waiting as long as it takes.
    /// Cancel-safe: a batch is taken only by the poll that returns it. The previous
    /// batch is given back first.
    pub async fn next(&mut self) -> Batch<'_> {
        // SAFETY: the box is freed only in `drop`; shared references are all anyone makes.
        let (batches, waker) = (&mut self.batches, unsafe { self.waker.as_ref() });
        poll_fn(|cx| {
            if batches.fill(Duration::ZERO) > 0 {
                return Poll::Ready(());
            }
            waker.register(cx.waker());
            if batches.fill(Duration::ZERO) > 0 {
                return Poll::Ready(());
            }
            Poll::Pending
        })
        .await;
        self.batches.current()
    }
}

impl<C: ConsumerContext> Drop for BatchStream<'_, C> {
    fn drop(&mut self) {
        for q in self.batches.queues() {
            // SAFETY: the queues are alive (`batches` is dropped after this). librdkafka
            // calls the callback under the queue's lock, which disabling takes: once
            // this returns, no call is running or to come.
            unsafe { rd::rd_kafka_queue_cb_event_enable(q.as_ptr(), None, ptr::null_mut()) };
        }
        // SAFETY: leaked in `new`, freed once; no callback can read it any more (above).
        drop(unsafe { Box::from_raw(self.waker.as_ptr()) });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::consumer::Consumer;
    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};

    fn consumer(bootstrap: &str) -> BaseConsumer {
        ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", "batch-stream-test")
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer")
    }

    /// Counts the wakes of the one task it stands for.
    struct Wakes(std::sync::atomic::AtomicUsize);

    impl futures::task::ArcWake for Wakes {
        fn wake_by_ref(w: &std::sync::Arc<Self>) {
            w.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// `fut`'s output, polled by hand: once, then, after `first` ran (what makes the
    /// output come; `None` when it may be there already), again each time its waker was
    /// woken. Panics when the first poll is ready although `first` was given, or when no
    /// wake comes in 20 s: a reader that librdkafka does not wake fails here, where an
    /// executor that polls again for other reasons (a timeout at its deadline, a join
    /// after its other branch) could let it pass.
    fn woken<F: std::future::Future>(fut: F, first: Option<&mut dyn FnMut()>) -> F::Output {
        use std::sync::atomic::Ordering::SeqCst;
        use std::task::{Context, Poll};
        let mut fut = std::pin::pin!(fut);
        let wakes = std::sync::Arc::new(Wakes(0.into()));
        let waker = futures::task::waker(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        match (fut.as_mut().poll(&mut cx), first) {
            (Poll::Ready(out), None) => return out,
            (Poll::Ready(_), Some(_)) => panic!("ready before what makes it so"),
            (Poll::Pending, Some(first)) => first(),
            (Poll::Pending, None) => {}
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            while wakes.0.swap(0, SeqCst) == 0 {
                assert!(std::time::Instant::now() < deadline, "not woken in 20 s");
                std::thread::sleep(Duration::from_millis(5));
            }
            // A wake for an event that is not a record or an error (statistics, a log
            // line) finds nothing: wait for the next.
            if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
                return out;
            }
        }
    }

    /// Each record of `batch` as (partition, offset, key), checked to be a record of at
    /// most a batch's capacity (16) without headers or errors.
    fn collect(batch: Batch<'_>, seen: &mut Vec<(i32, i64, Option<Vec<u8>>)>) {
        assert!(batch.len() <= 16, "a batch holds at most its capacity");
        assert!(batch.errors().is_empty(), "{:?}", batch.errors());
        // Two ahead prefetched, as the flow reads: each record still comes once, in order.
        for mut m in batch.into_iter_mut(2) {
            assert!(m.error().is_none(), "{:?}", m.error());
            assert!(m.detach_headers().is_none(), "no headers were sent");
            seen.push((m.partition(), m.offset(), m.key().map(<[u8]>::to_vec)));
        }
    }

    /// A task that found the queue empty is woken by librdkafka when records come: with
    /// no callback registered, `next` would wait forever, and the timeout fails the test.
    #[test]
    fn a_waiting_reader_is_woken_when_records_come() {
        let mock = MockCluster::new(1).expect("mock cluster");
        mock.create_topic("t", 2, 1).expect("topic");
        let boot = mock.bootstrap_servers();
        let c = consumer(&boot);
        let mut tpl = TopicPartitionList::new();
        for p in 0..2 {
            tpl.add_partition_offset("t", p, Offset::Beginning)
                .expect("add");
        }
        c.assign(&tpl).expect("assign");
        let mut stream = BatchStream::new(&c, 16).expect("batch stream");
        let mut produce = Some(move || {
            let producer: BaseProducer = ClientConfig::new()
                .set("bootstrap.servers", &boot)
                .create()
                .expect("producer");
            for i in 0..40u8 {
                producer
                    .send(
                        BaseRecord::<[u8], [u8]>::to("t")
                            .partition(i32::from(i % 2))
                            .key(&[i][..])
                            .payload(&[i; 3][..]),
                    )
                    .map_err(|(e, _)| e)
                    .expect("send");
            }
            producer.flush(Duration::from_secs(10)).expect("flush");
        });
        let mut seen = Vec::new();
        // The records are produced only after a first look found nothing.
        let mut producing = None;
        let batch = woken(
            stream.next(),
            Some(&mut || producing = Some(std::thread::spawn(produce.take().expect("once")))),
        );
        collect(batch, &mut seen);
        while seen.len() < 40 {
            collect(woken(stream.next(), None), &mut seen);
        }
        let producing = producing.expect("produced");
        producing.join().expect("producer thread");
        assert_eq!(seen.len(), 40, "every record once");
        for p in 0..2 {
            let offsets: Vec<i64> = seen.iter().filter(|s| s.0 == p).map(|s| s.1).collect();
            assert_eq!(
                offsets,
                (0..20).collect::<Vec<_>>(),
                "partition {p} in order"
            );
        }
        // Nothing more: pending again, and dropping a stream that waits is clean.
        assert!(
            futures::FutureExt::now_or_never(stream.next()).is_none(),
            "nothing more"
        );
    }

    /// The client's errors (here: its only broker goes down while the reader waits)
    /// come to the reader in a batch of their own, woken through the events queue.
    #[test]
    fn the_clients_errors_wake_the_reader_and_are_returned() {
        let mock = MockCluster::new(1).expect("mock cluster");
        mock.create_topic("t", 1, 1).expect("topic");
        let c = consumer(&mock.bootstrap_servers());
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("t", 0, Offset::Beginning)
            .expect("add");
        c.assign(&tpl).expect("assign");
        let mut stream = BatchStream::new(&c, 16).expect("batch stream");
        // The broker goes down only after a first look found nothing.
        let batch = woken(
            stream.next(),
            Some(&mut || mock.broker_down(1).expect("broker down")),
        );
        assert_eq!(batch.len(), 0, "no record from a broker that is down");
        let errors = batch.errors().to_vec();
        assert!(!errors.is_empty(), "the error is returned");
        assert!(
            errors.iter().all(|e| e.rdkafka_error_code().is_some()),
            "{errors:?}"
        );
    }
}
