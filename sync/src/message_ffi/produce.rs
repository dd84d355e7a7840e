//! Producing through a topic handle, with a [`HeaderList`]. rdkafka's `send` passes the
//! topic by name, and librdkafka then looks the name up among the producer's topics per
//! record under the producer's write lock (`rd_kafka_topic_new0`), after rdkafka made a
//! `CString` of it; and it takes headers only as rdkafka's `OwnedHeaders`, which a flow
//! could only fill by copying each header of the consumed record. Here a flow passes a
//! handle it looked up once, and the list it took from the consumed record.

use std::ffi::{CString, c_int, c_void};
use std::ptr::{self, NonNull};

use rdkafka::bindings as rd;
use rdkafka::producer::{Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;

use super::HeaderList;
use crate::admin_ffi::code as error_code;

// Declared returning `c_int` rather than the bindings' Rust enum: a value the enum does
// not list must not be undefined behaviour (as in admin_ffi). Same symbol, same ABI.
unsafe extern "C" {
    fn rd_kafka_producev(rk: *mut rd::rd_kafka_t, ...) -> c_int;
}

/// A producer's handle on one topic. Keeps a clone of the producer: librdkafka wants a
/// client's topic handles destroyed before the client (2.12.1 frees a client without
/// looking at its handles, so a handle destroyed later would touch freed memory), and
/// this handle is destroyed first because it holds the client.
pub struct TopicHandle<C: ProducerContext + 'static> {
    rkt: NonNull<rd::rd_kafka_topic_t>,
    producer: ThreadedProducer<C>,
}

// SAFETY: librdkafka's topic handles are thread-safe (refcounted, their state behind
// their own locks); the producer clone is Send and Sync itself.
unsafe impl<C: ProducerContext + 'static> Send for TopicHandle<C> {}
// SAFETY: as above; `send` only passes the handle to librdkafka.
unsafe impl<C: ProducerContext + 'static> Sync for TopicHandle<C> {}

impl<C: ProducerContext + 'static> std::fmt::Debug for TopicHandle<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopicHandle")
            .field("rkt", &self.rkt)
            .finish_non_exhaustive()
    }
}

impl<C: ProducerContext + 'static> TopicHandle<C> {
    /// `producer`'s handle on topic `name`, with the producer's own topic settings.
    pub fn new(producer: &ThreadedProducer<C>, name: &str) -> Result<Self, String> {
        let c_name = CString::new(name).map_err(|_| format!("topic {name:?} holds a NUL byte"))?;
        // SAFETY: the producer's client is alive (borrowed); a null configuration means
        // the client's defaults. librdkafka returns null on an invalid name.
        let rkt = unsafe {
            rd::rd_kafka_topic_new(
                producer.client().native_ptr(),
                c_name.as_ptr(),
                ptr::null_mut(),
            )
        };
        let rkt = NonNull::new(rkt).ok_or_else(|| format!("no topic handle for {name:?}"))?;
        Ok(TopicHandle {
            rkt,
            producer: producer.clone(),
        })
    }
}

impl<C: ProducerContext + 'static> Drop for TopicHandle<C> {
    fn drop(&mut self) {
        // SAFETY: the handle is ours, and its client (`self.producer`) is dropped after.
        unsafe { rd::rd_kafka_topic_destroy(self.rkt.as_ptr()) }
    }
}

/// One record for [`send`].
#[derive(Debug)]
pub struct Outgoing<'r> {
    /// Partition on the target.
    pub partition: i32,
    /// Key (copied by the producer).
    pub key: Option<&'r [u8]>,
    /// Value (copied by the producer).
    pub payload: Option<&'r [u8]>,
    /// Timestamp in milliseconds, or `None` for the time of sending.
    pub timestamp: Option<i64>,
    /// Headers; the producer takes them with the record.
    pub headers: HeaderList,
}

/// Enqueues `record` on `topic`'s producer, as rdkafka's `send` would (key and value
/// copied, `opaque` handed to the delivery callback), or returns why not with the
/// record's headers.
pub fn send<C>(
    topic: &TopicHandle<C>,
    record: Outgoing<'_>,
    opaque: usize,
) -> Result<(), (RDKafkaErrorCode, HeaderList)>
where
    C: ProducerContext<DeliveryOpaque = usize> + 'static,
{
    use rd::rd_kafka_vtype_t as V;
    fn bytes(b: Option<&[u8]>) -> (*mut c_void, usize) {
        b.map_or((ptr::null_mut(), 0), |b| {
            (b.as_ptr().cast_mut().cast(), b.len())
        })
    }
    let (payload, payload_len) = bytes(record.payload);
    let (key, key_len) = bytes(record.key);
    let headers = record.headers.into_raw();
    // SAFETY: the client is alive (the handle holds it) and the handle is its own. Each
    // argument has the C type its tag reads (int32_t, void * and size_t, int, int64_t,
    // rd_kafka_headers_t *; tags promoted to int). With RD_KAFKA_MSG_F_COPY librdkafka
    // copies the value and the key before it returns; it takes the header list only when
    // it takes the record, and leaves it to the caller otherwise (rdkafka relies on the
    // same). `opaque` is a plain number: rdkafka's delivery callback turns it back into
    // the `usize` it was (`IntoOpaque for usize`).
    let err = unsafe {
        rd_kafka_producev(
            topic.producer.client().native_ptr(),
            V::RD_KAFKA_VTYPE_RKT as c_int,
            topic.rkt.as_ptr(),
            V::RD_KAFKA_VTYPE_PARTITION as c_int,
            record.partition,
            V::RD_KAFKA_VTYPE_MSGFLAGS as c_int,
            rd::RD_KAFKA_MSG_F_COPY as c_int,
            V::RD_KAFKA_VTYPE_VALUE as c_int,
            payload,
            payload_len,
            V::RD_KAFKA_VTYPE_KEY as c_int,
            key,
            key_len,
            V::RD_KAFKA_VTYPE_OPAQUE as c_int,
            ptr::without_provenance_mut::<c_void>(opaque),
            V::RD_KAFKA_VTYPE_TIMESTAMP as c_int,
            record.timestamp.unwrap_or(0),
            V::RD_KAFKA_VTYPE_HEADERS as c_int,
            headers,
            V::RD_KAFKA_VTYPE_END as c_int,
        )
    };
    if err == 0 {
        Ok(())
    } else {
        // SAFETY: the producer did not take the list: it is still the one we gave out.
        Err((error_code(err), unsafe { HeaderList::from_raw(headers) }))
    }
}
