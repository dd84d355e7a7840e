//! A fast hash for the reader's per-record maps (topic, partition, origin cluster id).
//!
//! The standard library's SipHash resists keys chosen to collide, which costs tens of
//! nanoseconds per lookup; these keys come from the verified clusters' own metadata, not
//! from the network at large, and a record looks up several of them. This is the
//! multiply-rotate word hash the Rust compiler uses for its own tables ("Fx"), written
//! here rather than taken as a crate: a new dependency changes the build graph's hashes
//! and rebuilds RocksDB.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A `HashMap` with [`FastHasher`].
pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

/// Word-at-a-time multiply-rotate hasher. Not for keys an adversary picks.
#[derive(Debug, Default, Clone, Copy)]
pub struct FastHasher {
    hash: u64,
}

impl FastHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
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
