//! A consumed record's headers read from the bytes the record came with, as librdkafka
//! would parse them, without the list librdkafka builds on the first read (one
//! allocation per header and one for the list, freed with the message). In the
//! verifier's readers that parse and its frees were about a third of the readers' CPU
//! (docs/benchmarks.md, "Headers read in place").
//!
//! librdkafka keeps the unparsed bytes in a field of its private message struct
//! (`rd_kafka_msg_t.rkm_u.consumer.binhdrs`, rdkafka_msg.h). Its layout is librdkafka's
//! own, so this reads it only where it is known: librdkafka 2.12.1 (checked at run time
//! against `rd_kafka_version`), on a 64-bit target, and only for a consumer's message.
//! Anything else, and any header bytes this parser does not accept whole, goes through
//! librdkafka's own parse, which then decides, as before; so does a message whose
//! headers librdkafka already holds as a list (set by the application or an
//! interceptor), which librdkafka would hand over instead of the bytes. And the first
//! [`CROSS_CHECK_FIRST`] messages a thread reads here (with headers or without), then every
//! [`CROSS_CHECK_EVERY`]th, are also read through librdkafka and compared: a difference
//! turns the reading in place off for the process, with an error in the log, and is
//! counted ([`misreads`]) so that a verification that read records before it fails instead
//! of comparing what may be wrong headers. This detects a misread in samples; the
//! mirrored layout itself was read off librdkafka 2.12.1's rdkafka_msg.h.

use std::cell::Cell;
use std::ffi::c_void;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use rdkafka::bindings as rd;

/// The librdkafka version whose message layout [`MsgPrefix`] mirrors (2.12.1).
const KNOWN_VERSION: i32 = 0x020c_01ff;

/// librdkafka's `RD_KAFKA_MSG_F_PRODUCER` (rdkafka_msg.h): a message of a producer,
/// whose union holds the producer's fields, not the unparsed headers.
const F_PRODUCER: i32 = 0x40000;

/// librdkafka refuses more headers than this in one record (rdkafka_msg.c).
const MAX_HEADERS: i64 = 100_000;

/// The first this many messages that a thread reads in place are each read through
/// librdkafka too and the two compared (those without headers too: a misread that
/// yields no headers is a misread).
pub const CROSS_CHECK_FIRST: u64 = 64;

/// After those, one in this many.
pub const CROSS_CHECK_EVERY: u64 = 1024;

/// The first fields of librdkafka 2.12.1's `rd_kafka_msg_t`, up to the consumer's
/// unparsed headers (`rkm_u.consumer.binhdrs`, an `rd_kafkap_bytes_t`).
#[allow(dead_code)] // Fields before the ones read are there for their place only.
#[repr(C)]
struct MsgPrefix {
    rkmessage: rd::rd_kafka_message_t,
    /// `TAILQ_ENTRY`: next and previous.
    link: [*mut c_void; 2],
    flags: i32,
    tstype: i32,
    timestamp: i64,
    headers: *mut c_void,
    status: i32,
    broker_id: i32,
    binhdrs_len: i32,
    binhdrs_data: *const u8,
}

// The Rust mirror against the offsets read off rdkafka_msg.h (this checks the mirror,
// not librdkafka: the version check at run time and the cross-checks do that).
#[cfg(target_pointer_width = "64")]
const _: () = {
    // rd_kafka_message_t is 72 bytes on LP64; the union after broker_id starts at 120.
    assert!(std::mem::size_of::<rd::rd_kafka_message_t>() == 72);
    assert!(std::mem::offset_of!(MsgPrefix, binhdrs_len) == 120);
    assert!(std::mem::offset_of!(MsgPrefix, binhdrs_data) == 128);
};

/// 0: not decided yet, 1: on, 2: off.
static STATE: AtomicU8 = AtomicU8::new(0);
/// Differences cross-checks found.
static MISREADS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Messages this thread read in place.
    static READ: Cell<u64> = const { Cell::new(0) };
}

/// Whether headers are read in place in this process.
pub fn enabled() -> bool {
    match STATE.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => {
            // SAFETY: returns a constant.
            let version = unsafe { rd::rd_kafka_version() };
            let on = cfg!(target_pointer_width = "64") && version == KNOWN_VERSION;
            // Every thread decides the same, except after a `disable`, which must stay.
            let _ = STATE.compare_exchange(
                0,
                if on { 1 } else { 2 },
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
            STATE.load(Ordering::Relaxed) == 1
        }
    }
}

/// How many cross-checks in this process found headers read in place that differ from
/// librdkafka's parse (what was read in place before such a difference may hold wrong
/// headers; after the first, nothing is read in place). A reader compares the count
/// before and after its work: a rise means some of its records may have been misread.
pub fn misreads() -> u64 {
    MISREADS.load(Ordering::Relaxed)
}

/// Turns reading in place off for the rest of the process, after a difference.
pub(super) fn disable(why: &str) {
    MISREADS.fetch_add(1, Ordering::Relaxed);
    if STATE.swap(2, Ordering::Relaxed) != 2 {
        tracing::error!(
            why,
            "headers read in place differ from librdkafka's parse: reading them through librdkafka from now on"
        );
    }
}

/// Whether the in-place read of this message is to be compared with librdkafka's.
pub(super) fn cross_check_due() -> bool {
    READ.with(|n| {
        let read = n.get();
        n.set(read.wrapping_add(1));
        read < CROSS_CHECK_FIRST || read % CROSS_CHECK_EVERY == 0
    })
}

/// The unparsed headers of the consumer's message at `msg`: `Some` of the record's
/// header bytes (empty when it has none), `None` where they are to be read through
/// librdkafka (not enabled, or a producer's message).
///
/// # Safety
/// `msg` must be a message librdkafka handed over, alive for `'m`.
pub(super) unsafe fn bytes_of<'m>(msg: *const rd::rd_kafka_message_t) -> Option<&'m [u8]> {
    if !enabled() {
        return None;
    }
    let m = msg.cast::<MsgPrefix>();
    // SAFETY: a message librdkafka hands over is the first field of its rd_kafka_msg_t
    // (librdkafka's own `rd_kafka_message2msg` casts the same way), whose layout up to
    // these fields is `MsgPrefix` in the version `enabled` checked. The header bytes
    // point into the fetch buffer the message holds a reference to, alive as long as it.
    unsafe {
        // A producer's message, or one whose headers librdkafka holds as a list (which
        // it hands over first, whatever the bytes say).
        if (*m).flags & F_PRODUCER != 0 || !(*m).headers.is_null() {
            return None;
        }
        let (len, data) = ((*m).binhdrs_len, (*m).binhdrs_data);
        if len <= 0 {
            return Some(&[]);
        }
        if data.is_null() {
            return None;
        }
        Some(std::slice::from_raw_parts(data, len as usize))
    }
}

/// Headers parsed from a record's header bytes; see [`RawHeaders::parse`].
#[derive(Debug, Clone)]
pub struct RawHeaders<'m> {
    rest: &'m [u8],
    left: usize,
}

impl<'m> RawHeaders<'m> {
    /// The headers in `bytes` (Kafka's record format: a count, then per header a name and
    /// a value, each a zigzag varint length and the bytes; a value of length -1 is
    /// null), when all of them read cleanly; `None` where librdkafka's parse would
    /// refuse them or this one is not sure, so that it decides. No headers at all (a count
    /// of zero or less, or no bytes) is an empty list, as librdkafka reads it.
    pub fn parse(bytes: &'m [u8]) -> Option<RawHeaders<'m>> {
        if bytes.is_empty() {
            return Some(RawHeaders::empty());
        }
        let mut at = bytes;
        let count = varint(&mut at)?;
        if count <= 0 {
            return Some(RawHeaders::empty());
        }
        if count > MAX_HEADERS {
            return None;
        }
        let rest = at;
        // Check every header before handing out any: a list is read whole or not at all.
        for _ in 0..count {
            let name_len = usize::try_from(varint(&mut at)?).ok()?;
            at = at.get(name_len..)?;
            match varint(&mut at)? {
                -1 => {}
                n => at = at.get(usize::try_from(n).ok()?..)?,
            }
        }
        Some(RawHeaders {
            rest,
            left: count as usize,
        })
    }

    fn empty() -> RawHeaders<'m> {
        RawHeaders { rest: &[], left: 0 }
    }
}

impl<'m> Iterator for RawHeaders<'m> {
    type Item = (&'m [u8], Option<&'m [u8]>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        // `parse` checked every length and bound: these cannot fail.
        let name_len = varint(&mut self.rest)? as usize;
        let (name, rest) = self.rest.split_at(name_len);
        self.rest = rest;
        let value = match varint(&mut self.rest)? {
            -1 => None,
            n => {
                let (v, rest) = self.rest.split_at(n as usize);
                self.rest = rest;
                Some(v)
            }
        };
        // librdkafka hands a name over NUL-terminated, and it has always been read up to
        // its first NUL byte (message_ffi's module doc): the same here.
        let name = name
            .iter()
            .position(|b| *b == 0)
            .map_or(name, |nul| &name[..nul]);
        Some((name, value))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

/// A zigzag-encoded varint of at most 10 bytes, decoded as librdkafka's header parse
/// decodes it (`rd_slice_read_varint`); a longer one is left to librdkafka.
fn varint(at: &mut &[u8]) -> Option<i64> {
    let mut n: u64 = 0;
    for (i, b) in at.iter().enumerate().take(10) {
        n |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            *at = &at[i + 1..];
            return Some((n >> 1) as i64 ^ -((n & 1) as i64));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zigzag(out: &mut Vec<u8>, v: i64) {
        let mut n = ((v << 1) ^ (v >> 63)) as u64;
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    fn encode(headers: &[(&[u8], Option<&[u8]>)]) -> Vec<u8> {
        let mut out = Vec::new();
        zigzag(&mut out, headers.len() as i64);
        for (name, value) in headers {
            zigzag(&mut out, name.len() as i64);
            out.extend_from_slice(name);
            match value {
                None => zigzag(&mut out, -1),
                Some(v) => {
                    zigzag(&mut out, v.len() as i64);
                    out.extend_from_slice(v);
                }
            }
        }
        out
    }

    #[test]
    fn reads_what_was_encoded() {
        let long = vec![7u8; 300];
        let h: &[(&[u8], Option<&[u8]>)] = &[
            (b"trace", Some(b"1")),
            (b"\xff\xfe", Some(b"")),
            (b"null", None),
            (b"", Some(&long)),
        ];
        let bytes = encode(h);
        let got: Vec<_> = RawHeaders::parse(&bytes).unwrap().collect();
        assert_eq!(got, h.to_vec());
    }

    #[test]
    fn a_name_is_read_up_to_a_nul_byte() {
        let bytes = encode(&[(b"ab\0cd", Some(b"v"))]);
        let got: Vec<_> = RawHeaders::parse(&bytes).unwrap().collect();
        assert_eq!(got, vec![(&b"ab"[..], Some(&b"v"[..]))]);
    }

    #[test]
    fn no_count_or_a_count_below_one_is_no_headers() {
        assert_eq!(RawHeaders::parse(&[]).unwrap().count(), 0);
        let mut zero = Vec::new();
        zigzag(&mut zero, 0);
        assert_eq!(RawHeaders::parse(&zero).unwrap().count(), 0);
        let mut negative = Vec::new();
        zigzag(&mut negative, -3);
        assert_eq!(RawHeaders::parse(&negative).unwrap().count(), 0);
    }

    #[test]
    fn anything_malformed_is_left_to_librdkafka() {
        let good = encode(&[(b"a", Some(b"bc")), (b"d", None)]);
        // Every truncation of a list with headers.
        for cut in 1..good.len() {
            assert!(RawHeaders::parse(&good[..cut]).is_none(), "cut at {cut}");
        }
        // A value length below -1, a negative name length, a count past the limit, a
        // varint of more than 10 bytes.
        let mut bad = Vec::new();
        zigzag(&mut bad, 1);
        zigzag(&mut bad, 1);
        bad.push(b'a');
        zigzag(&mut bad, -2);
        assert!(RawHeaders::parse(&bad).is_none());
        let mut bad = Vec::new();
        zigzag(&mut bad, 1);
        zigzag(&mut bad, -1);
        assert!(RawHeaders::parse(&bad).is_none());
        let mut bad = Vec::new();
        zigzag(&mut bad, MAX_HEADERS + 1);
        assert!(RawHeaders::parse(&bad).is_none());
        let mut eleven = vec![0x80; 10];
        eleven.push(0);
        assert!(RawHeaders::parse(&eleven).is_none());
        // Bytes after the last header are left alone, as librdkafka leaves them.
        let mut trailing = good.clone();
        trailing.extend_from_slice(b"xyz");
        assert_eq!(RawHeaders::parse(&trailing).unwrap().count(), 2);
    }

    /// Headers (name, value) of a record as produced, by its offset: none, a
    /// non-UTF-8 name, null and empty values, a NUL in a name, twenty headers.
    fn produced_headers(i: usize) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        match i % 5 {
            0 => vec![],
            1 => vec![(b"trace".to_vec(), Some(i.to_string().into_bytes()))],
            2 => vec![
                (b"\xff\xfe".to_vec(), Some(vec![])),
                (b"null".to_vec(), None),
                (b"".to_vec(), Some(vec![0u8; 200 + i % 7])),
            ],
            3 => vec![(b"nul\0after".to_vec(), Some(b"v".to_vec()))],
            _ => (0..20)
                .map(|h| (format!("h{h}").into_bytes(), Some(vec![h as u8; h])))
                .collect(),
        }
    }

    /// As [`produced_headers`], each name up to its first NUL byte, as librdkafka hands
    /// names over.
    fn read_headers(i: usize) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        produced_headers(i)
            .into_iter()
            .map(|(mut n, v)| {
                if let Some(nul) = n.iter().position(|b| *b == 0) {
                    n.truncate(nul);
                }
                (n, v)
            })
            .collect()
    }

    fn owned<'a>(
        it: impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)>,
    ) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        it.map(|(n, v)| (n.to_vec(), v.map(<[u8]>::to_vec)))
            .collect()
    }

    /// A mock cluster whose topic `raw` holds `n` records headed by [`produced_headers`],
    /// and a consumer assigned to it from the start.
    fn consumer_of_produced(
        n: usize,
        group: &str,
    ) -> (
        rdkafka::mocking::MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
        rdkafka::consumer::BaseConsumer,
    ) {
        use super::super::add_header;
        use rdkafka::ClientConfig;
        use rdkafka::consumer::Consumer;
        use rdkafka::message::OwnedHeaders;
        use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
        use std::time::Duration;

        let mock = rdkafka::mocking::MockCluster::new(1).expect("mock cluster");
        mock.create_topic("raw", 1, 1).expect("topic");
        let boot = mock.bootstrap_servers();
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", &boot)
            .create()
            .expect("producer");
        for i in 0..n {
            let mut headers = OwnedHeaders::new();
            for (name, value) in produced_headers(i) {
                headers = add_header(headers, &name, value.as_deref());
            }
            let mut rec = BaseRecord::<(), [u8]>::to("raw")
                .partition(0)
                .payload(&b"v"[..]);
            if i % 5 != 0 {
                rec = rec.headers(headers);
            }
            producer.send(rec).map_err(|(e, _)| e).expect("send");
            producer.poll(Duration::ZERO);
        }
        producer.flush(Duration::from_secs(20)).expect("flush");
        let c: rdkafka::consumer::BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &boot)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        let mut tpl = rdkafka::TopicPartitionList::new();
        tpl.add_partition_offset("raw", 0, rdkafka::Offset::Beginning)
            .expect("add");
        c.assign(&tpl).expect("assign");
        (mock, c)
    }

    /// Records through a mock cluster, read in batches: each one's headers read in place
    /// equal librdkafka's parse and what was produced, and the in-place read was used.
    #[test]
    fn headers_read_in_place_are_librdkafkas_and_what_was_produced() {
        use super::super::{Batches, HeaderIter};
        use std::time::{Duration, Instant};

        // More than CROSS_CHECK_EVERY, so that cross-checks ran along the way.
        const N: usize = 2_500;
        let (_mock, c) = consumer_of_produced(N, "raw-headers-test");
        let mut batches = Batches::new(&c, 256).expect("batches");
        let (mut read, mut in_place) = (0usize, 0usize);
        let deadline = Instant::now() + Duration::from_secs(30);
        while read < N && Instant::now() < deadline {
            for m in batches
                .next_batch(Duration::from_millis(100))
                .into_iter_prefetching(2)
            {
                assert!(m.error().is_none(), "{:?}", m.error());
                let i = usize::try_from(m.offset()).expect("offset");
                let it = m.headers();
                in_place += usize::from(it.raw.is_some());
                let got = owned(it);
                // SAFETY: the message lives while `m` does, on this thread.
                let parsed = owned(unsafe { HeaderIter::parsed(m.ptr()) });
                assert_eq!(got, parsed, "record {i}: in place against librdkafka");
                assert_eq!(got, read_headers(i), "record {i}: as produced");
                read += 1;
            }
        }
        assert_eq!(read, N, "every record read");
        assert_eq!(in_place, N, "every record's headers read in place");
        assert!(enabled(), "no cross-check found a difference");
    }

    #[test]
    fn headers_read_in_place_outlive_the_list_detached_after() {
        // The flow's reader reads a record's headers in place to decide, then takes
        // librdkafka's list for a record it sends: both must be the record's headers, and
        // the bytes read in place must stay after the list is taken.
        use super::super::Batches;
        use std::time::{Duration, Instant};

        const N: usize = 1_200;
        let (_mock, c) = consumer_of_produced(N, "raw-headers-detach-test");
        let mut batches = Batches::new(&c, 256).expect("batches");
        let mut read = 0usize;
        let deadline = Instant::now() + Duration::from_secs(30);
        while read < N && Instant::now() < deadline {
            for mut m in batches
                .next_batch(Duration::from_millis(100))
                .into_iter_mut(2)
            {
                assert!(m.error().is_none(), "{:?}", m.error());
                let i = usize::try_from(m.offset()).expect("offset");
                let it = m
                    .headers_in_place()
                    .unwrap_or_else(|| panic!("record {i}: not read in place"));
                // Every other record's list is taken and freed before the in-place read
                // is used (taking it again parses the bytes again).
                if i % 2 == 0 {
                    drop(m.detach_headers());
                }
                assert_eq!(owned(it), read_headers(i), "record {i}: in place");
                let list = m.detach_headers();
                let listed = list.as_ref().map(|l| owned(l.iter())).unwrap_or_default();
                assert_eq!(listed, read_headers(i), "record {i}: detached");
                read += 1;
            }
        }
        assert_eq!(read, N, "every record read");
        assert!(enabled(), "no cross-check found a difference");
    }

    #[test]
    fn the_version_whose_layout_is_mirrored_is_the_one_linked() {
        // When rdkafka-sys moves to another librdkafka, reading in place turns itself off;
        // this test says so, so that the layout is checked and KNOWN_VERSION moved with it.
        // SAFETY: returns a constant.
        assert_eq!(unsafe { rd::rd_kafka_version() }, KNOWN_VERSION);
        assert!(enabled());
    }
}
