//! Provenance: the `duplex.path` header Duplex adds to every record it writes.
//!
//! The header contract (docs/headers.md) in short: one header named `duplex.path`,
//! binary, big-endian:
//!
//! ```text
//! u8  major version (1)
//! u8  hop count n (1..=255)
//! n × { u8 id_len, id_len bytes cluster id (UTF-8), i32 partition, i64 offset }
//! ... trailing bytes: reserved for compatible additions, ignored by v1 readers and
//!     carried on unchanged, after the new hop, by every relay
//! ```
//!
//! Hop 0 is the origin position: the cluster, partition and offset where a client first
//! produced the record. The last hop is the position the record was read from by the
//! flow that wrote this copy. The topic is the record's own topic (Duplex keeps names).
//! Every name under the reserved prefix `duplex.` belongs to Duplex: it is stripped from
//! user headers when copying and excluded from fingerprints.

use thiserror::Error;

/// Reserved header-name prefix: every header Duplex owns starts with it.
pub const RESERVED_PREFIX: &str = "duplex.";
/// The provenance header.
pub const PATH_HEADER: &str = "duplex.path";
/// [`PATH_HEADER`] as a C string, for librdkafka's calls by name.
pub const PATH_HEADER_C: &std::ffi::CStr = c"duplex.path";
/// The major version this build writes and reads.
pub const VERSION: u8 = 1;

const HOP_FIXED: usize = 1 + 4 + 8;

/// Whether a header name belongs to Duplex rather than to the user.
#[inline]
pub fn is_reserved(name: &[u8]) -> bool {
    name.starts_with(RESERVED_PREFIX.as_bytes())
}

/// A `duplex.path` value that cannot be read. Named with the byte where reading failed.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ProvenanceError {
    /// Written by a newer, incompatible Duplex.
    #[error("unsupported duplex.path major version {0} (this build reads version {VERSION})")]
    Version(u8),
    /// Empty, truncated or otherwise malformed.
    #[error("malformed duplex.path header: {0}")]
    Malformed(&'static str),
    /// The path is already 255 hops long.
    #[error("duplex.path already has 255 hops")]
    TooLong,
    /// A cluster id longer than 255 bytes cannot be encoded.
    #[error("cluster id is longer than 255 bytes")]
    IdTooLong,
}

/// One position on the way of a record: cluster, partition, offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hop<'a> {
    /// Cluster id, as bytes (UTF-8 when written by Duplex).
    pub cluster: &'a [u8],
    /// Partition on that cluster.
    pub partition: i32,
    /// Offset on that cluster.
    pub offset: i64,
}

/// A validated, borrowed `duplex.path` value. Decoding checks the whole value once;
/// iterating the hops afterwards cannot fail.
#[derive(Debug, Clone, Copy)]
pub struct Path<'a> {
    count: u8,
    hops: &'a [u8],
    /// Bytes after the hops: reserved for compatible additions. This version does not
    /// read them, and a relay carries them on unchanged.
    trailing: &'a [u8],
}

impl<'a> Path<'a> {
    /// Reads and validates a header value.
    pub fn decode(value: &'a [u8]) -> Result<Self, ProvenanceError> {
        let (&version, rest) = value
            .split_first()
            .ok_or(ProvenanceError::Malformed("empty value"))?;
        if version != VERSION {
            return Err(ProvenanceError::Version(version));
        }
        let (&count, body) = rest
            .split_first()
            .ok_or(ProvenanceError::Malformed("no hop count"))?;
        if count == 0 {
            return Err(ProvenanceError::Malformed("zero hops"));
        }
        let mut at = 0usize;
        for _ in 0..count {
            let len = *body
                .get(at)
                .ok_or(ProvenanceError::Malformed("truncated hop"))? as usize;
            if body.len() < at + HOP_FIXED + len {
                return Err(ProvenanceError::Malformed("truncated hop"));
            }
            at += HOP_FIXED + len;
        }
        Ok(Path {
            count,
            hops: &body[..at],
            trailing: &body[at..],
        })
    }

    /// Number of hops (at least 1).
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Always false: a decoded path has at least one hop.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The hops, origin first.
    pub fn hops(&self) -> Hops<'a> {
        Hops { rest: self.hops }
    }

    /// The origin position (hop 0).
    pub fn origin(&self) -> Hop<'a> {
        self.hops().next().expect("validated path has a hop")
    }

    /// The position the last flow read this record from.
    pub fn last(&self) -> Hop<'a> {
        self.hops().last().expect("validated path has a hop")
    }

    /// Whether `cluster` is already on the path.
    pub fn contains(&self, cluster: &[u8]) -> bool {
        self.hops().any(|h| h.cluster == cluster)
    }

    /// The bytes after the hops, which a later minor addition may use.
    pub fn trailing(&self) -> &'a [u8] {
        self.trailing
    }

    /// Encodes this path with one more hop appended, into `out` (cleared first). The
    /// trailing bytes follow the new hop unchanged: they belong to the record, and a
    /// relay that does not know them must not drop them (docs/headers.md).
    pub fn extend_into(&self, hop: Hop<'_>, out: &mut Vec<u8>) -> Result<(), ProvenanceError> {
        if self.count == u8::MAX {
            return Err(ProvenanceError::TooLong);
        }
        out.clear();
        out.reserve(2 + self.hops.len() + HOP_FIXED + hop.cluster.len() + self.trailing.len());
        out.push(VERSION);
        out.push(self.count + 1);
        out.extend_from_slice(self.hops);
        push_hop(out, hop)?;
        out.extend_from_slice(self.trailing);
        Ok(())
    }
}

/// Encodes a one-hop path: a record read from where a client produced it.
pub fn encode_origin(hop: Hop<'_>, out: &mut Vec<u8>) -> Result<(), ProvenanceError> {
    out.clear();
    out.reserve(2 + HOP_FIXED + hop.cluster.len());
    out.push(VERSION);
    out.push(1);
    push_hop(out, hop)
}

fn push_hop(out: &mut Vec<u8>, hop: Hop<'_>) -> Result<(), ProvenanceError> {
    let len = u8::try_from(hop.cluster.len()).map_err(|_| ProvenanceError::IdTooLong)?;
    out.push(len);
    out.extend_from_slice(hop.cluster);
    out.extend_from_slice(&hop.partition.to_be_bytes());
    out.extend_from_slice(&hop.offset.to_be_bytes());
    Ok(())
}

/// Iterator over the hops of a validated path.
#[derive(Debug, Clone)]
pub struct Hops<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Hops<'a> {
    type Item = Hop<'a>;

    fn next(&mut self) -> Option<Hop<'a>> {
        let (&len, body) = self.rest.split_first()?;
        let len = len as usize;
        let (cluster, body) = body.split_at(len);
        let (p, body) = body.split_at(4);
        let (o, body) = body.split_at(8);
        self.rest = body;
        Some(Hop {
            cluster,
            partition: i32::from_be_bytes(p.try_into().expect("4 bytes")),
            offset: i64::from_be_bytes(o.try_into().expect("8 bytes")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hop(c: &str, p: i32, o: i64) -> Hop<'_> {
        Hop {
            cluster: c.as_bytes(),
            partition: p,
            offset: o,
        }
    }

    #[test]
    fn origin_then_extend_round_trips() {
        let mut one = Vec::new();
        encode_origin(hop("onprem", 3, 42), &mut one).unwrap();
        assert_eq!(
            one,
            [
                &[1u8, 1, 6][..],
                b"onprem",
                &3i32.to_be_bytes(),
                &42i64.to_be_bytes()
            ]
            .concat()
        );
        let p = Path::decode(&one).unwrap();
        let mut two = Vec::new();
        p.extend_into(hop("msk", 3, 7), &mut two).unwrap();
        let p2 = Path::decode(&two).unwrap();
        assert_eq!(p2.len(), 2);
        assert_eq!(p2.origin(), hop("onprem", 3, 42));
        assert_eq!(p2.last(), hop("msk", 3, 7));
        assert!(p2.contains(b"msk") && p2.contains(b"onprem") && !p2.contains(b"dr"));
    }

    #[test]
    fn trailing_bytes_are_ignored_for_compatible_additions() {
        let mut v = Vec::new();
        encode_origin(hop("a", 0, 1), &mut v).unwrap();
        v.extend_from_slice(b"future");
        let p = Path::decode(&v).unwrap();
        assert_eq!(p.origin(), hop("a", 0, 1));
        assert_eq!(p.trailing(), b"future");
        let mut w = Vec::new();
        p.extend_into(hop("b", 0, 2), &mut w).unwrap();
        // A relay inserts its hop after the last one and carries the bytes it does not
        // know after it, unchanged: [v, 2, hop a, hop b, "future"].
        let mut want = vec![VERSION, 2];
        push_hop(&mut want, hop("a", 0, 1)).unwrap();
        push_hop(&mut want, hop("b", 0, 2)).unwrap();
        want.extend_from_slice(b"future");
        assert_eq!(w, want);
        let p2 = Path::decode(&w).unwrap();
        assert_eq!(
            (p2.len(), p2.last(), p2.trailing()),
            (2, hop("b", 0, 2), &b"future"[..])
        );
        // And on the next relay too.
        let mut x = Vec::new();
        p2.extend_into(hop("c", 1, 3), &mut x).unwrap();
        let p3 = Path::decode(&x).unwrap();
        assert_eq!(
            (p3.len(), p3.origin(), p3.trailing()),
            (3, hop("a", 0, 1), &b"future"[..])
        );
    }

    #[test]
    fn bad_values_are_named() {
        assert_eq!(
            Path::decode(&[]).unwrap_err(),
            ProvenanceError::Malformed("empty value")
        );
        assert_eq!(
            Path::decode(&[2, 1]).unwrap_err(),
            ProvenanceError::Version(2)
        );
        assert_eq!(
            Path::decode(&[1]).unwrap_err(),
            ProvenanceError::Malformed("no hop count")
        );
        assert_eq!(
            Path::decode(&[1, 0]).unwrap_err(),
            ProvenanceError::Malformed("zero hops")
        );
        assert_eq!(
            Path::decode(&[1, 1, 3, b'a']).unwrap_err(),
            ProvenanceError::Malformed("truncated hop")
        );
    }

    #[test]
    fn path_header_c_is_the_path_header() {
        assert_eq!(PATH_HEADER_C.to_bytes(), PATH_HEADER.as_bytes());
    }

    #[test]
    fn reserved_prefix() {
        assert!(is_reserved(b"duplex.path"));
        assert!(!is_reserved(b"duplexer"));
        assert!(!is_reserved(b"traceparent"));
    }
}
