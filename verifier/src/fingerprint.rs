//! Record fingerprints: xxh3-128 over a canonical encoding (docs/verifier.md).
//!
//! The encoding is fixed so that another implementation can reproduce a fingerprint:
//!
//! ```text
//! "DXF1"                                   4 bytes, encoding version
//! key        field                         (see below)
//! value      field
//! u32 BE     number of headers that count  (Duplex's own and ignored ones excluded)
//! per header: u32 BE name length, name bytes, field
//! u8         timestamp present (1) or not (0), then i64 BE milliseconds if present
//! field:     u8 0 for null; or u8 1, u32 BE length, the bytes
//! ```
//!
//! Compacted topics compare the latest value per key without the timestamp (a copy
//! written later holds the same value at another time): that variant encodes the
//! timestamp as absent.

use duplex_sync::provenance::is_reserved;
use xxhash_rust::xxh3::{Xxh3, xxh3_128};

/// Version tag at the start of every canonical encoding.
pub const ENCODING: &[u8; 4] = b"DXF1";

/// A record's fingerprint.
pub type Fingerprint = u128;

/// What the fingerprint covers, beyond key, value and headers.
#[derive(Debug, Clone, Default)]
pub struct Canon {
    /// Header names left out (for example MSK Replicator's `__mskmr`), besides `duplex.*`.
    pub ignored_headers: Vec<String>,
    /// Leave the timestamp out (compacted topics).
    pub without_timestamp: bool,
}

/// The parts of a record a fingerprint covers.
#[derive(Debug, Clone, Copy)]
pub struct RecordView<'a, H> {
    /// Record key, `None` for a null key.
    pub key: Option<&'a [u8]>,
    /// Record value, `None` for a null value (tombstone).
    pub value: Option<&'a [u8]>,
    /// Headers in record order.
    pub headers: H,
    /// CreateTime (or LogAppendTime) in milliseconds, if the record has one.
    pub timestamp: Option<i64>,
}

impl Canon {
    /// Whether a header takes part in fingerprints.
    pub fn counts(&self, name: &[u8]) -> bool {
        !is_reserved(name) && !self.ignored_headers.iter().any(|h| h.as_bytes() == name)
    }

    /// The fingerprint of one record.
    pub fn fingerprint<'a, H>(&self, record: RecordView<'a, H>) -> Fingerprint
    where
        H: Iterator<Item = (&'a [u8], Option<&'a [u8]>)>,
    {
        let size = record.key.map_or(0, <[u8]>::len) + record.value.map_or(0, <[u8]>::len);
        self.fingerprint_in(
            &mut Vec::with_capacity(size.min(ONE_CALL_MAX) + 128),
            record,
        )
    }

    /// The fingerprint of one record, its canonical encoding built in `scratch` (cleared
    /// first) and hashed in one call: a reader that fingerprints many records keeps one
    /// buffer and allocates once. The same value as [`Canon::fingerprint`]; hashing the
    /// bytes at once instead of field by field (xxh3's streaming state) halves the cost of
    /// a small record. Key and value above [`ONE_CALL_MAX`] together are streamed into
    /// the hash instead of copied, so that a large record is not held twice.
    pub fn fingerprint_in<'a, H>(
        &self,
        scratch: &mut Vec<u8>,
        record: RecordView<'a, H>,
    ) -> Fingerprint
    where
        H: Iterator<Item = (&'a [u8], Option<&'a [u8]>)>,
    {
        let size = record.key.map_or(0, <[u8]>::len) + record.value.map_or(0, <[u8]>::len);
        let streamed = size > ONE_CALL_MAX;
        scratch.clear();
        if !streamed {
            scratch.extend_from_slice(ENCODING);
            field(scratch, record.key);
            field(scratch, record.value);
        }
        // The count of headers that count, written once they are.
        let count_at = scratch.len();
        scratch.extend_from_slice(&[0; 4]);
        let mut counted: u32 = 0;
        for (name, value) in record.headers.filter(|(n, _)| self.counts(n)) {
            counted += 1;
            scratch.extend_from_slice(&(name.len() as u32).to_be_bytes());
            scratch.extend_from_slice(name);
            field(scratch, value);
        }
        scratch[count_at..count_at + 4].copy_from_slice(&counted.to_be_bytes());
        match record.timestamp.filter(|_| !self.without_timestamp) {
            Some(ts) => {
                scratch.push(1);
                scratch.extend_from_slice(&ts.to_be_bytes());
            }
            None => scratch.push(0),
        }
        if !streamed {
            return xxh3_128(scratch);
        }
        // The same bytes, in the same order: the streaming state's value equals the
        // one-call hash of their concatenation.
        let mut h = Xxh3::new();
        h.update(ENCODING);
        for part in [record.key, record.value] {
            match part {
                None => h.update(&[0]),
                Some(b) => {
                    h.update(&[1]);
                    h.update(&(b.len() as u32).to_be_bytes());
                    h.update(b);
                }
            }
        }
        h.update(scratch);
        h.digest128()
    }
}

/// Key and value bytes above which a record is hashed without copying them
/// ([`Canon::fingerprint_in`]). At 1 KiB, streaming costs 20 ns more on a record in the
/// cache (`verify_hot`, 110 against 130 ns). Session 19 set this to 256 B, when the
/// readers met each record cold and the copy cost more than streaming; since they
/// prefetch the records ahead (reader.rs), up to 4 KiB of a key and of a value, such a
/// record is in the cache when it is hashed, and one call over a copy verified 5–10 %
/// faster at 1 KiB (`verify_e2e`, docs/benchmarks.md, "Batches"). Larger records, whose
/// tail the prefetch does not cover, are streamed as before (not measured between 4 and
/// 64 KiB, the limit until session 19).
pub const ONE_CALL_MAX: usize = 4 * 1024;

fn field(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => out.push(0),
        Some(b) => {
            out.push(1);
            out.extend_from_slice(&(b.len() as u32).to_be_bytes());
            out.extend_from_slice(b);
        }
    }
}

/// Hex form used in reports: 32 lowercase digits.
pub fn hex(fp: u128) -> String {
    format!("{fp:032x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(
        canon: &Canon,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&str, Option<&[u8]>)],
        ts: Option<i64>,
    ) -> u128 {
        canon.fingerprint(RecordView {
            key,
            value,
            headers: headers.iter().map(|(n, v)| (n.as_bytes(), *v)),
            timestamp: ts,
        })
    }

    #[test]
    fn matches_the_documented_encoding() {
        // Rebuild the bytes by hand, as another implementation would.
        let mut bytes = b"DXF1".to_vec();
        bytes.extend([1, 0, 0, 0, 1, b'k']);
        bytes.extend([0]);
        bytes.extend(1u32.to_be_bytes());
        bytes.extend(1u32.to_be_bytes());
        bytes.extend(b"h");
        bytes.extend([1, 0, 0, 0, 2, b'v', b'1']);
        bytes.extend([1]);
        bytes.extend(1_700_000_000_000i64.to_be_bytes());
        let expected = xxhash_rust::xxh3::xxh3_128(&bytes);
        let headers: &[(&str, Option<&[u8]>)] = &[
            ("h", Some(b"v1")),
            ("duplex.path", Some(b"\x01\x00")),
            ("__mskmr", None),
        ];
        let canon = Canon {
            ignored_headers: vec!["__mskmr".into()],
            without_timestamp: false,
        };
        assert_eq!(
            fp(&canon, Some(b"k"), None, headers, Some(1_700_000_000_000)),
            expected
        );
    }

    /// The documented bytes, hashed in one call: the reference for both ways of hashing
    /// (one call over a buffer, streamed for large records).
    fn by_hand(key: &[u8], value: &[u8], header: (&str, &[u8]), ts: i64) -> u128 {
        let mut bytes = b"DXF1".to_vec();
        for f in [key, value] {
            bytes.push(1);
            bytes.extend((f.len() as u32).to_be_bytes());
            bytes.extend(f);
        }
        bytes.extend(1u32.to_be_bytes());
        bytes.extend((header.0.len() as u32).to_be_bytes());
        bytes.extend(header.0.as_bytes());
        bytes.push(1);
        bytes.extend((header.1.len() as u32).to_be_bytes());
        bytes.extend(header.1);
        bytes.push(1);
        bytes.extend(ts.to_be_bytes());
        xxhash_rust::xxh3::xxh3_128(&bytes)
    }

    #[test]
    fn every_size_hashes_the_documented_bytes_with_a_reused_buffer() {
        let c = Canon::default();
        // Left over from a longer record.
        let mut scratch = vec![0xee; 4096];
        for size in [
            0,
            1,
            100,
            1024,
            ONE_CALL_MAX - 16,
            ONE_CALL_MAX - 3,
            ONE_CALL_MAX - 2,
            ONE_CALL_MAX + 1,
            300_000,
        ] {
            let value: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let headers: &[(&str, Option<&[u8]>)] =
                &[("h", Some(b"v")), ("duplex.path", Some(b"x"))];
            let view = RecordView {
                key: Some(b"key".as_slice()),
                value: Some(value.as_slice()),
                headers: headers.iter().map(|(n, v)| (n.as_bytes(), *v)),
                timestamp: Some(7),
            };
            let expected = by_hand(b"key", &value, ("h", b"v"), 7);
            assert_eq!(c.fingerprint_in(&mut scratch, view), expected, "{size} B");
            if 3 + size > ONE_CALL_MAX {
                // Streamed: only the headers and the timestamp went into the buffer.
                assert!(scratch.len() < 64, "{size} B copied: {}", scratch.len());
            }
        }
    }

    /// A missing key or value is hashed as absent on both paths (one call, streamed):
    /// the same value whether the record is small or large.
    #[test]
    fn a_missing_key_or_value_hashes_the_same_on_both_paths() {
        let c = Canon::default();
        let mut scratch = Vec::new();
        for size in [10, ONE_CALL_MAX + 100] {
            let big = vec![7u8; size];
            for (key, value) in [(None, Some(big.as_slice())), (Some(big.as_slice()), None)] {
                let headers: &[(&str, Option<&[u8]>)] = &[];
                let view = || RecordView {
                    key,
                    value,
                    headers: headers.iter().map(|(n, v)| (n.as_bytes(), *v)),
                    timestamp: None,
                };
                let mut bytes = ENCODING.to_vec();
                field(&mut bytes, key);
                field(&mut bytes, value);
                bytes.extend(0u32.to_be_bytes());
                bytes.push(0);
                let want = xxhash_rust::xxh3::xxh3_128(&bytes);
                assert_eq!(c.fingerprint_in(&mut scratch, view()), want, "{size} B");
                assert_eq!(c.fingerprint(view()), want, "{size} B");
            }
        }
    }

    #[test]
    fn every_covered_part_changes_the_fingerprint() {
        let c = Canon::default();
        let base = fp(&c, Some(b"k"), Some(b"v"), &[("a", Some(b"1"))], Some(5));
        let variants = [
            fp(&c, None, Some(b"v"), &[("a", Some(b"1"))], Some(5)),
            fp(&c, Some(b""), Some(b"v"), &[("a", Some(b"1"))], Some(5)),
            fp(&c, Some(b"k"), None, &[("a", Some(b"1"))], Some(5)),
            fp(&c, Some(b"k"), Some(b"w"), &[("a", Some(b"1"))], Some(5)),
            fp(&c, Some(b"k"), Some(b"v"), &[("a", Some(b"2"))], Some(5)),
            fp(&c, Some(b"k"), Some(b"v"), &[("a", None)], Some(5)),
            fp(&c, Some(b"k"), Some(b"v"), &[("b", Some(b"1"))], Some(5)),
            fp(&c, Some(b"k"), Some(b"v"), &[], Some(5)),
            fp(&c, Some(b"k"), Some(b"v"), &[("a", Some(b"1"))], Some(6)),
            fp(&c, Some(b"k"), Some(b"v"), &[("a", Some(b"1"))], None),
            // Field boundaries are unambiguous: moving a byte from key to value differs.
            fp(&c, Some(b"kv"), Some(b""), &[("a", Some(b"1"))], Some(5)),
        ];
        for (i, v) in variants.iter().enumerate() {
            assert_ne!(*v, base, "variant {i} collides with the base record");
        }
    }

    /// A header name is hashed as the bytes the record holds, UTF-8 or not: two names
    /// that differ only in bytes that are not UTF-8 differ.
    #[test]
    fn a_name_that_is_not_utf8_is_hashed_as_its_bytes() {
        let c = Canon::default();
        let with = |name: &'static [u8]| {
            let headers = [(name, Some(&b"1"[..]))];
            c.fingerprint(RecordView {
                key: None,
                value: None,
                headers: headers.iter().copied(),
                timestamp: None,
            })
        };
        let mut bytes = ENCODING.to_vec();
        bytes.extend([0, 0]);
        bytes.extend(1u32.to_be_bytes());
        bytes.extend(2u32.to_be_bytes());
        bytes.extend(b"\xff\xfe");
        bytes.extend([1, 0, 0, 0, 1, b'1', 0]);
        assert_eq!(with(b"\xff\xfe"), xxhash_rust::xxh3::xxh3_128(&bytes));
        assert_ne!(with(b"\xff\xfe"), with(b"\xff\xfd"));
        assert_ne!(with(b"\xff"), with("\u{fffd}".as_bytes()));
    }

    #[test]
    fn header_order_counts_and_duplex_headers_do_not() {
        let c = Canon::default();
        let ab = fp(
            &c,
            None,
            None,
            &[("a", Some(b"1")), ("b", Some(b"2"))],
            None,
        );
        let ba = fp(
            &c,
            None,
            None,
            &[("b", Some(b"2")), ("a", Some(b"1"))],
            None,
        );
        assert_ne!(ab, ba);
        let with_path = fp(
            &c,
            None,
            None,
            &[
                ("a", Some(b"1")),
                ("duplex.path", Some(b"x")),
                ("b", Some(b"2")),
            ],
            None,
        );
        assert_eq!(ab, with_path);
    }

    #[test]
    fn compacted_variant_ignores_the_timestamp_only() {
        let c = Canon {
            without_timestamp: true,
            ..Canon::default()
        };
        assert_eq!(
            fp(&c, Some(b"k"), Some(b"v"), &[], Some(1)),
            fp(&c, Some(b"k"), Some(b"v"), &[], Some(2))
        );
        assert_ne!(
            fp(&c, Some(b"k"), Some(b"v"), &[], Some(1)),
            fp(&c, Some(b"k"), Some(b"w"), &[], Some(1))
        );
    }
}
