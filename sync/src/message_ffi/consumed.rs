//! One consumed message of a [`super::Batch`], read through librdkafka's C API:
//! [`Consumed`] (copyable, reads headers in place) and [`ConsumedMut`] (the only handle on
//! its message, which may take its header list).

use std::ffi::{CStr, c_char, c_int};
use std::marker::PhantomData;
use std::ptr;

use rdkafka::bindings as rd;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use super::{HeaderIter, HeaderList, RawHeaders};
use crate::admin_ffi::code as error_code;

// Declared with `c_int` where the bindings have a Rust enum: a value the enum does not
// list must not be undefined behaviour (as in admin_ffi). Same symbols, same ABI.
unsafe extern "C" {
    fn rd_kafka_message_timestamp(
        rkmessage: *const rd::rd_kafka_message_t,
        tstype: *mut c_int,
    ) -> i64;
}

/// A consumed message or a consumer error, borrowed from its batch.
#[derive(Debug, Clone, Copy)]
pub struct Consumed<'b> {
    msg: *mut rd::rd_kafka_message_t,
    _batch: PhantomData<&'b ()>,
}

/// The public fields of a message but its error code.
struct Fields {
    rkt: *mut rd::rd_kafka_topic_t,
    partition: i32,
    offset: i64,
    key: *const u8,
    key_len: usize,
    payload: *const u8,
    len: usize,
}

/// A consumer error librdkafka handed over in a batch instead of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumeError {
    /// librdkafka's error code.
    pub code: RDKafkaErrorCode,
    /// Its description (librdkafka's message for this error).
    pub message: String,
}

impl std::fmt::Display for ConsumeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl<'b> Consumed<'b> {
    pub(super) fn of(msg: *mut rd::rd_kafka_message_t) -> Consumed<'b> {
        // librdkafka hands over valid, non-null message pointers, alive until released,
        // which needs `&mut Batches` and so comes after `'b`.
        Consumed {
            msg,
            _batch: PhantomData,
        }
    }

    /// Equal for two messages of the same topic in one batch (its topic handle's
    /// address): a reader compares it with the last message's to skip looking the topic
    /// up again. Compare only within one batch: once a batch is given back, an address
    /// may be reused. Zero for an entry without a topic.
    pub fn topic_id(&self) -> usize {
        self.fields().rkt as usize
    }

    pub(super) fn ptr(&self) -> *const rd::rd_kafka_message_t {
        self.msg
    }

    /// The message's public fields, read one at a time through the pointer (no
    /// reference to the whole struct, whose `err` is a Rust enum the C side may hold
    /// any value in).
    fn fields(&self) -> Fields {
        // SAFETY: alive for `'b` (see `Consumed::of`).
        unsafe { fields_of(self.msg) }
    }

    /// The error this entry stands for, if it is one rather than a record.
    pub fn error(&self) -> Option<ConsumeError> {
        // SAFETY: read as the `c_int` it is in C, so that a code the bindings' enum does
        // not list is not undefined behaviour.
        let code = unsafe { ptr::addr_of!((*self.msg).err).cast::<c_int>().read() };
        if code == 0 {
            return None;
        }
        let code = error_code(code);
        // SAFETY: librdkafka returns a NUL-terminated string that lives with the message
        // (its payload, or a static description).
        let text = unsafe { rd::rd_kafka_message_errstr(self.ptr()) };
        let message = if text.is_null() {
            String::new()
        } else {
            unsafe { CStr::from_ptr(text.cast::<c_char>()) }
                .to_string_lossy()
                .into_owned()
        };
        Some(ConsumeError { code, message })
    }

    /// The topic's name, or `None` when it is not UTF-8 (Kafka allows only ASCII
    /// letters, digits, `.`, `_` and `-`) or the entry has no topic.
    pub fn topic(&self) -> Option<&'b str> {
        let rkt = self.fields().rkt;
        if rkt.is_null() {
            return None;
        }
        // SAFETY: the topic handle lives at least as long as the message, and its
        // name is NUL-terminated.
        unsafe { CStr::from_ptr(rd::rd_kafka_topic_name(rkt)) }
            .to_str()
            .ok()
    }

    /// Partition.
    pub fn partition(&self) -> i32 {
        self.fields().partition
    }

    /// Offset.
    pub fn offset(&self) -> i64 {
        self.fields().offset
    }

    /// Key, `None` for a null key.
    pub fn key(&self) -> Option<&'b [u8]> {
        let m = self.fields();
        // SAFETY: `key_len` bytes at `key`, alive with the message.
        (!m.key.is_null()).then(|| unsafe { std::slice::from_raw_parts(m.key, m.key_len) })
    }

    /// Value, `None` for a null value.
    pub fn payload(&self) -> Option<&'b [u8]> {
        let m = self.fields();
        // SAFETY: `len` bytes at `payload`, alive with the message.
        (!m.payload.is_null()).then(|| unsafe { std::slice::from_raw_parts(m.payload, m.len) })
    }

    /// CreateTime or LogAppendTime in milliseconds, `None` when the record has none.
    pub fn timestamp(&self) -> Option<i64> {
        let mut kind: c_int = 0;
        // SAFETY: a message librdkafka handed over; `kind` is written as a C enum.
        let ts = unsafe { rd_kafka_message_timestamp(self.ptr(), &mut kind) };
        (ts != -1 && kind != 0).then_some(ts)
    }

    /// Asks the CPU to bring the record's key, value and the bytes after them (its
    /// headers, in the fetched buffer) into the cache, without waiting: a reader that
    /// hashes every byte calls it for a record a little ahead (the verifier's: two)
    /// before it handles this one, so that that one's cache misses overlap this one's
    /// work. Does nothing where no prefetch instruction is known (only x86_64 has one
    /// here).
    pub fn prefetch(&self) {
        // SAFETY: alive for `'b` (see `Consumed::of`).
        unsafe { Self::prefetch_message(self.msg) }
    }

    /// [`Consumed::prefetch`] of a message no handle was made for yet.
    ///
    /// # Safety
    /// As [`Consumed::of`]: a message of a batch that was not given back.
    pub(super) unsafe fn prefetch_message(msg: *const rd::rd_kafka_message_t) {
        /// A cache line.
        const LINE: usize = 64;
        /// Bytes prefetched at most, from the start of the key and of the value: beyond
        /// this the CPU's own prefetcher has seen the stream.
        const MOST: usize = 4096;
        // SAFETY: see above.
        let m = unsafe { fields_of(msg) };
        for (at, len) in [(m.key, m.key_len), (m.payload, m.len + 2 * LINE)] {
            if at.is_null() {
                continue;
            }
            for off in (0..len.min(MOST)).step_by(LINE) {
                prefetch_line(at.wrapping_add(off));
            }
        }
    }

    /// Headers in record order, names as bytes (see [`super::headers`]).
    pub fn headers(&self) -> HeaderIter<'b> {
        // SAFETY: the message lives for `'b`, and only this thread reads it. Its header
        // list is not detached meanwhile: only a `ConsumedMut` does that, and a batch
        // yields either kind, once per message.
        unsafe { HeaderIter::of(self.ptr()) }
    }
}

/// A consumed message or a consumer error, borrowed from its batch, whose header list
/// may be taken ([`ConsumedMut::detach_headers`]): the only handle on its message, and
/// without [`Consumed::headers`], whose iterator could read a list taken and freed.
#[derive(Debug)]
pub struct ConsumedMut<'b>(Consumed<'b>);

// SAFETY: the only handle on its message (not `Copy`, unlike `Consumed`, which stays on
// its thread: reading headers parses them into the message the first time), and
// librdkafka lets any thread read and change a message it handed over.
unsafe impl Send for ConsumedMut<'_> {}
// SAFETY: through `&self` it only reads fields librdkafka no longer changes (no header
// parse: that is `Consumed::headers`, which it does not offer).
unsafe impl Sync for ConsumedMut<'_> {}

impl<'b> ConsumedMut<'b> {
    pub(super) fn of(msg: *mut rd::rd_kafka_message_t) -> ConsumedMut<'b> {
        ConsumedMut(Consumed::of(msg))
    }

    /// The error this entry stands for, as rdkafka's consumer `poll` returned it: the end
    /// of a partition, or another consume error.
    pub fn kafka_error(&self) -> Option<KafkaError> {
        self.error().map(|e| match e.code {
            RDKafkaErrorCode::PartitionEOF => KafkaError::PartitionEOF(self.partition()),
            code => KafkaError::MessageConsumption(code),
        })
    }

    /// The record's headers read in place from its bytes, without librdkafka's parse
    /// (see [`Consumed::headers`]), or `None` where that read does not apply: then
    /// [`ConsumedMut::detach_headers`] gives them. A reader that may pass the record over
    /// reads what decides that here, and takes the list only for a record it sends. The
    /// iterator reads the message's bytes, never a list, and borrows them, not this
    /// handle: detaching the list later (and freeing it) leaves those bytes where they
    /// are.
    pub fn headers_in_place(&mut self) -> Option<RawHeaders<'b>> {
        // SAFETY: alive for `'b`. `&mut self`: no other thread reads this message's
        // headers meanwhile (a due cross-check has librdkafka parse them into the
        // message). The iterator reads bytes librdkafka never changes or frees before the
        // message (detaching the parsed list leaves them), never the list.
        unsafe { HeaderIter::in_place(self.0.msg) }
    }

    /// The record's headers, taken from it (see [`HeaderList::detach`]).
    pub fn detach_headers(&mut self) -> Option<HeaderList> {
        // SAFETY: alive for `'b`; no header list read from it is borrowed (no
        // `Consumed::headers` exists for this message), and `&mut self` makes a second
        // call wait for the first's list to be taken.
        unsafe { HeaderList::detach(self.0.msg) }
    }

    /// See [`Consumed::error`].
    pub fn error(&self) -> Option<ConsumeError> {
        self.0.error()
    }

    /// See [`Consumed::topic`].
    pub fn topic(&self) -> Option<&'b str> {
        self.0.topic()
    }

    /// Partition.
    pub fn partition(&self) -> i32 {
        self.0.partition()
    }

    /// Offset.
    pub fn offset(&self) -> i64 {
        self.0.offset()
    }

    /// See [`Consumed::key`].
    pub fn key(&self) -> Option<&'b [u8]> {
        self.0.key()
    }

    /// See [`Consumed::payload`].
    pub fn payload(&self) -> Option<&'b [u8]> {
        self.0.payload()
    }

    /// See [`Consumed::timestamp`].
    pub fn timestamp(&self) -> Option<i64> {
        self.0.timestamp()
    }
}

/// A message's public fields (see `Consumed::fields`).
///
/// # Safety
/// `m` is a message librdkafka handed over and has not been given back; librdkafka does
/// not change a message's public fields once it handed the message over.
unsafe fn fields_of(m: *const rd::rd_kafka_message_t) -> Fields {
    unsafe {
        Fields {
            rkt: (*m).rkt,
            partition: (*m).partition,
            offset: (*m).offset,
            key: (*m).key.cast::<u8>(),
            key_len: (*m).key_len,
            payload: (*m).payload.cast::<u8>(),
            len: (*m).len,
        }
    }
}

/// Prefetches the cache line holding `p` (x86_64's `prefetcht0`), which never faults and
/// has no effect a program can see: `p` need not point at memory that is mapped. (Rust
/// 1.87 and later call `_mm_prefetch` safe; the workspace builds with older ones too.)
#[inline(always)]
fn prefetch_line(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint with no effect a program can see, and never faults,
    // whatever `p`.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
