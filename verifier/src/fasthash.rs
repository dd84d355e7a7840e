//! A fast hash for the reader's per-record maps: topic names, partitions, origin cluster
//! ids (from records' `duplex.path` headers) and the byte keys of digest ranges.
//!
//! The standard library's SipHash resists keys chosen to collide, which costs tens of
//! nanoseconds per lookup, and a record looks up several. These keys come from the
//! verified clusters, written by their own producers; a producer that forged
//! `duplex.path` origins to collide could slow a run down, not change its result. Each
//! 8-byte word is mixed in by one 64 × 64 → 128-bit multiplication whose halves are
//! folded together (the "folded multiply" of fast non-cryptographic hashes). Written
//! here rather than taken as a crate: a new dependency changes the build graph's hashes
//! and rebuilds RocksDB.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A `HashMap` with [`FastHasher`].
pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

/// An odd constant with well-spread bits.
const K: u64 = 0xf135_7aea_2e62_a9c5;

/// Word-at-a-time folded-multiply hasher. Not for keys an adversary picks.
#[derive(Debug, Default, Clone, Copy)]
pub struct FastHasher {
    hash: u64,
}

impl FastHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        // The full 128-bit product, its halves folded together: every input bit reaches
        // every output bit, in both directions (a plain multiplication only carries
        // upwards, so a difference in a word's high bytes never reached the low bits).
        let p = u128::from(self.hash ^ word) * u128::from(K);
        self.hash = (p as u64) ^ ((p >> 64) as u64);
    }
}

impl Hasher for FastHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut last = [0u8; 8];
            last[..rest.len()].copy_from_slice(rest);
            // The length keeps "ab" and "ab\0" apart.
            self.add(u64::from_le_bytes(last) ^ ((rest.len() as u64) << 59));
        }
    }

    #[inline]
    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    #[inline]
    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    #[inline]
    fn write_i32(&mut self, n: i32) {
        self.add(u64::from(n as u32));
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    fn hash<T: std::hash::Hash + ?Sized>(v: &T) -> u64 {
        BuildHasherDefault::<FastHasher>::default().hash_one(v)
    }

    /// How many of `n` buckets (a power of two) the keys fill, as a table of that size
    /// picks them from the low bits.
    fn buckets<K: std::hash::Hash>(keys: impl Iterator<Item = K>, n: u64) -> usize {
        keys.map(|k| hash(&k) & (n - 1))
            .collect::<std::collections::HashSet<_>>()
            .len()
    }

    #[test]
    fn realistic_keys_spread_over_the_buckets() {
        // 1,000 keys into 4,096 buckets: uniform hashing fills about 890.
        let n = 4096;
        let spread = [
            (
                "topic-N",
                buckets((0..1000).map(|i| format!("topic-{i}")), n),
            ),
            (
                "t.00000N",
                buckets((0..1000).map(|i| format!("t.{i:06}")), n),
            ),
            (
                "events.000000N",
                buckets((0..1000).map(|i| format!("events.{i:09}")), n),
            ),
            ("partitions", buckets(0..1000i32, n)),
            // Range keys: one group's prefix, then the range index (keys.rs).
            (
                "ranges",
                buckets(
                    (0..1000u64).map(|r| {
                        let mut k = crate::keys::group(1, "bench-verify", 7, "a");
                        crate::keys::push_u64(&mut k, r);
                        k
                    }),
                    n,
                ),
            ),
        ];
        for (what, filled) in spread {
            assert!(
                filled > 800,
                "{what}: 1,000 keys in {filled} of {n} buckets"
            );
        }
        assert_ne!(hash("orders-16"), hash("orders-99"));
    }

    #[test]
    fn distinct_keys_hash_apart_and_maps_work() {
        let names = [
            "",
            "a",
            "ab",
            "ab\0",
            "orders",
            "orders-eu",
            "bench-verify-0",
        ];
        let mut seen = std::collections::HashSet::new();
        for n in names {
            assert!(seen.insert(hash(n)), "{n:?} collides");
        }
        let mut m: FastMap<String, FastMap<i32, i64>> = FastMap::default();
        for p in 0..1000 {
            m.entry(format!("t{}", p % 7))
                .or_default()
                .insert(p, i64::from(p) * 2);
        }
        assert_eq!(m.values().map(|v| v.len()).sum::<usize>(), 1000);
        assert_eq!(m["t3"][&10], 20);
    }
}
