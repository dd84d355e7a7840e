//! Byte layout of the store's keys (docs/verifier.md). Big-endian numbers, so that
//! RocksDB's byte order is numeric order within one prefix.
//!
//! ```text
//! topic prefix      side u8 | topic len u16 | topic
//! partition prefix  topic prefix | partition u32
//! group prefix      partition prefix | origin len u8 | origin cluster id
//! record run        group prefix | origin offset u64 | own offset u64 | own partition u32
//!                   (of its first record; version-1 stores: no partition, one record)
//! range             group prefix | range index u64
//! sequence run      partition prefix | own offset u64 (of its first record)
//! latest            partition prefix | record key bytes
//! ```

/// Origin offsets per digest range: two sides compare range by range.
pub const RANGE: u64 = 1024;

/// Key prefix of one topic of one side: every family's keys of that topic start so.
pub fn topic(side: u8, topic: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(7 + topic.len() + 16);
    k.push(side);
    k.extend((topic.len() as u16).to_be_bytes());
    k.extend(topic.as_bytes());
    k
}

/// Key prefix of one partition of one side.
pub fn partition(side: u8, topic_name: &str, partition: i32) -> Vec<u8> {
    let mut k = topic(side, topic_name);
    k.extend((partition as u32).to_be_bytes());
    k
}

/// Splits a partition prefix (the whole key of the `positions` family) into topic and
/// partition; `None` for a key of another shape.
pub fn split_partition(k: &[u8]) -> Option<(&str, i32)> {
    let n = u16::from_be_bytes(k.get(1..3)?.try_into().ok()?) as usize;
    let topic = std::str::from_utf8(k.get(3..3 + n)?).ok()?;
    let p = u32::from_be_bytes(k.get(3 + n..7 + n)?.try_into().ok()?);
    (k.len() == 7 + n).then_some((topic, p as i32))
}

/// Key prefix of the records of one origin in one partition of one side.
pub fn group(side: u8, topic: &str, partition_no: i32, origin: &str) -> Vec<u8> {
    let mut k = partition(side, topic, partition_no);
    push_origin(&mut k, origin);
    k
}

/// Appends the origin part of a group prefix.
pub fn push_origin(k: &mut Vec<u8>, origin: &str) {
    k.push(origin.len() as u8);
    k.extend(origin.as_bytes());
}

/// Appends a non-negative offset or index.
pub fn push_u64(k: &mut Vec<u8>, n: u64) {
    k.extend(n.to_be_bytes());
}

/// Reads the big-endian u64 at `at` of a key.
pub fn u64_at(k: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&k[at..at + 8]);
    u64::from_be_bytes(b)
}

/// Length of the group prefix a key of the `records` or `ranges` family starts with.
pub fn group_len(k: &[u8]) -> Option<usize> {
    let t = u16::from_be_bytes(k.get(1..3)?.try_into().ok()?) as usize;
    let o = *k.get(3 + t + 4)? as usize;
    let n = 3 + t + 4 + 1 + o;
    (k.len() >= n).then_some(n)
}

/// Splits a group key suffix: the origin id after a partition prefix of length `len`.
pub fn origin_after(k: &[u8], len: usize) -> Option<&str> {
    let n = *k.get(len)? as usize;
    std::str::from_utf8(k.get(len + 1..len + 1 + n)?).ok()
}

/// The smallest key greater than every key with this prefix, if there is one.
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_sort_numerically_within_a_group() {
        let g = group(1, "orders", 3, "east");
        let key = |o: u64| {
            let mut k = g.clone();
            push_u64(&mut k, o);
            k
        };
        assert!(key(9) < key(10) && key(255) < key(256) && key(0) < key(u64::MAX));
        assert_eq!(u64_at(&key(1234), g.len()), 1234);
    }

    #[test]
    fn a_group_is_not_a_prefix_of_another_origins_group() {
        let a = group(0, "t", 0, "ab");
        let b = group(0, "t", 0, "abc");
        assert!(!b.starts_with(&a));
        assert_eq!(origin_after(&a, partition(0, "t", 0).len()), Some("ab"));
    }

    #[test]
    fn a_group_prefix_is_measured_from_its_key() {
        let g = group(1, "orders", 3, "east");
        let mut k = g.clone();
        push_u64(&mut k, 5);
        assert_eq!(group_len(&k), Some(g.len()));
        assert_eq!(group_len(&g[..g.len() - 1]), None);
    }

    #[test]
    fn a_partition_prefix_splits_back() {
        let k = partition(2, "orders", 7);
        assert!(k.starts_with(&topic(2, "orders")));
        assert_eq!(split_partition(&k), Some(("orders", 7)));
        assert_eq!(split_partition(&k[..k.len() - 1]), None);
    }

    #[test]
    fn prefix_end_bounds_the_prefix() {
        assert_eq!(prefix_end(&[1, 2]), Some(vec![1, 3]));
        assert_eq!(prefix_end(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff]), None);
    }
}
