//! Property tests: random record sets and random mutations, compared by the verifier
//! (store, range digests, drill-down) and by a simple in-memory model of the comparison.

use std::collections::BTreeMap;

use duplex_sync::provenance::{Hop, PATH_HEADER, encode_origin};
use duplex_sync::spec::ClusterSpec;
use duplex_verifier::compare::{self, Bounds, Snapshot};
use duplex_verifier::ingest::{Incoming, SideIngest};
use duplex_verifier::origins;
use duplex_verifier::report::{Counts, Kind};
use duplex_verifier::store::Store;
use duplex_verifier::{Mode, VerifySpec};
use proptest::prelude::*;

const TOPIC: &str = "t";

#[derive(Debug, Clone, Copy)]
enum Mutation {
    Drop,
    Add,
    Alter,
    Duplicate,
    Swap,
    /// The copy written to partition 1; its origin partition is 0.
    WrongPartition,
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        Just(Mutation::Drop),
        Just(Mutation::Add),
        Just(Mutation::Alter),
        Just(Mutation::Duplicate),
        Just(Mutation::Swap),
        Just(Mutation::WrongPartition)
    ]
}

/// A target record: the origin offset it copies (None: written on the target), its value
/// and the partition it was written to (origin partition 0).
type Copy = (Option<u64>, Vec<u8>, i32);

/// A record as one side holds it: its partition, its own offset there, its `duplex.path`
/// (if any), its value.
type Stored = (i32, i64, Option<Vec<u8>>, Vec<u8>);

fn value(i: u64) -> Vec<u8> {
    format!("value-{}", i % 37).into_bytes() // repeated values: equal fingerprints happen
}

fn apply(n: u64, muts: &[(usize, Mutation)]) -> Vec<Copy> {
    let mut out: Vec<Copy> = (0..n).map(|i| (Some(i), value(i), 0)).collect();
    // Apply from the highest position down so positions stay meaningful.
    let mut muts = muts.to_vec();
    muts.sort_by_key(|m| std::cmp::Reverse(m.0));
    for (pos, m) in muts {
        if pos + 1 >= out.len() {
            continue;
        }
        match m {
            Mutation::Drop => {
                out.remove(pos);
            }
            Mutation::Add => out.insert(pos, (None, b"local".to_vec(), 0)),
            Mutation::Alter => out[pos].1 = b"altered".to_vec(),
            Mutation::Duplicate => {
                let c = out[pos].clone();
                out.insert(pos + 1, c);
            }
            Mutation::Swap => out.swap(pos, pos + 1),
            Mutation::WrongPartition => out[pos].2 = 1,
        }
    }
    out
}

/// A copy of an origin offset: (own offset, value, partition).
type CopyAt<'a> = (usize, &'a Vec<u8>, i32);

/// The comparison, written the simple way.
fn model(n: u64, target: &[Copy]) -> Counts {
    let mut c = Counts::default();
    // Per origin offset, its copies as (own offset, value, partition).
    let mut copies: BTreeMap<u64, Vec<CopyAt<'_>>> = BTreeMap::new();
    for ((origin, v, p), own) in target.iter().zip(own_offsets(target)) {
        match origin {
            Some(x) => copies.entry(*x).or_default().push((own as usize, v, *p)),
            None => c.extra += 1,
        }
    }
    for x in 0..n {
        match copies.get(&x) {
            None => c.missing += 1,
            Some(list) => {
                // A copy in the wrong partition is that and nothing else: not missing,
                // not matched, not out of order.
                let placed: Vec<_> = list.iter().filter(|e| e.2 == 0).collect();
                c.wrong_partition += (list.len() - placed.len()) as u64;
                let first = placed.first().copied().unwrap_or(&list[0]);
                if *first.1 != value(x) {
                    c.altered += 1
                } else if !placed.is_empty() {
                    c.matched += 1
                }
                c.duplicated += list.len() as u64 - 1;
            }
        }
    }
    let firsts: Vec<(u64, usize)> = copies
        .iter()
        .filter_map(|(x, l)| Some((*x, l.iter().find(|e| e.2 == 0)?.0)))
        .collect();
    for &(x, own) in &firsts {
        if firsts.iter().any(|&(x2, own2)| own2 < own && x2 > x) {
            c.reordered += 1;
        }
    }
    c
}

fn side_spec(store: &std::path::Path) -> VerifySpec {
    let sides = vec![
        ClusterSpec::new("a", "unused:1"),
        ClusterSpec::new("b", "unused:2"),
    ];
    VerifySpec::new(sides, regex::Regex::new(".*").unwrap(), store.to_path_buf())
}

fn ingest(store: &Store, side: u8, cluster: &str, recs: &[Stored], mode: Mode, batch: usize) {
    let mut w = SideIngest::new(store, side, cluster, Default::default());
    for (partition, offset, path, value) in recs {
        let headers: Vec<(&[u8], Option<&[u8]>)> = path
            .iter()
            .map(|p| (PATH_HEADER.as_bytes(), Some(p.as_slice())))
            .collect();
        let rec = Incoming {
            topic: TOPIC,
            partition: *partition,
            offset: *offset,
            key: Some(b"k"),
            value: Some(value),
            headers: &headers,
            timestamp: Some(1),
        };
        w.add(&rec, mode).unwrap();
        if w.pending() >= batch {
            w.flush().unwrap();
        }
    }
    w.flush().unwrap();
}

fn snapshot(n: u64, m: usize) -> Snapshot {
    let side = |high: i64| {
        BTreeMap::from([(
            TOPIC.to_string(),
            BTreeMap::from([(0, Bounds { low: 0, high })]),
        )])
    };
    Snapshot {
        sides: vec![side(n as i64), side(m as i64)],
        ..Snapshot::default()
    }
}

/// Each target record's offset in the partition it was written to.
fn own_offsets(target: &[Copy]) -> Vec<i64> {
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    target
        .iter()
        .map(|(_, _, p)| {
            let o = next.entry(*p).or_default();
            *o += 1;
            *o - 1
        })
        .collect()
}

fn path(x: u64) -> Vec<u8> {
    let mut p = Vec::new();
    encode_origin(
        Hop {
            cluster: b"a",
            partition: 0,
            offset: x as i64,
        },
        &mut p,
    )
    .unwrap();
    p
}

fn verify(n: u64, target: &[Copy], mode: Mode, batch: usize) -> Counts {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = side_spec(dir.path());
    spec.max_samples = 5;
    if mode == Mode::Positional {
        spec.positional = Some(regex::Regex::new(".*").unwrap());
    }
    let store = Store::open(dir.path(), &spec.signature()).unwrap();
    let src: Vec<_> = (0..n).map(|i| (0, i as i64, None, value(i))).collect();
    let tgt: Vec<_> = target
        .iter()
        .zip(own_offsets(target))
        .map(|((origin, v, p), own)| {
            let path = if mode == Mode::Identity {
                origin.map(path)
            } else {
                None
            };
            (*p, own, path, v.clone())
        })
        .collect();
    ingest(&store, 0, "a", &src, mode, batch);
    ingest(&store, 1, "b", &tgt, mode, batch);
    let cmp = compare::compare(&store, &spec, &snapshot(n, target.len())).unwrap();
    let samples: usize = cmp[0]
        .topics
        .iter()
        .flat_map(|t| &t.partitions)
        .map(|p| p.samples.len())
        .sum();
    assert_eq!(
        samples as u64,
        cmp[0].totals.discrepancies().min(5),
        "samples are capped, counts are not"
    );
    cmp[0].totals
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Identity mode against the model: any mutations, anywhere, across digest ranges.
    #[test]
    fn identity_mode_agrees_with_the_model(
        n in 1u64..3000,
        muts in prop::collection::vec((0usize..3000, mutation()), 0..12),
        batch in 1usize..700,
    ) {
        let target = apply(n, &muts);
        prop_assert_eq!(verify(n, &target, Mode::Identity, batch), model(n, &target));
    }

    /// Positional mode: mutations far enough apart each have one reading, so the counts
    /// are exact.
    #[test]
    fn positional_mode_counts_isolated_mutations(
        n in 50u64..2000,
        muts in prop::collection::btree_map(0usize..200, mutation(), 0..8),
    ) {
        let spaced: Vec<(usize, Mutation)> = muts.iter().map(|(slot, m)| (slot * 9 + 4, *m)).filter(|(p, _)| (*p as u64) + 5 < n).collect();
        let target = apply(n, &spaced);
        let mut want = Counts::default();
        for (_, m) in &spaced {
            match m {
                Mutation::Drop => want.missing += 1,
                Mutation::Add => want.extra += 1,
                Mutation::Alter => want.altered += 1,
                Mutation::Duplicate => want.duplicated += 1,
                Mutation::Swap => want.reordered += 1,
                // Positional mode compares partitions as they are: the record is missing
                // from partition 0.
                Mutation::WrongPartition => want.missing += 1,
            }
        }
        let got = verify(n, &target, Mode::Positional, 500);
        prop_assert_eq!(
            (got.missing, got.extra, got.altered, got.duplicated, got.reordered),
            (want.missing, want.extra, want.altered, want.duplicated, want.reordered)
        );
    }
}

#[test]
fn no_mutation_passes_with_every_record_matched() {
    let target = apply(2500, &[]);
    let c = verify(2500, &target, Mode::Identity, 333);
    assert_eq!((c.matched, c.discrepancies()), (2500, 0));
}

/// A side's copies of `c`'s records `0..n`, those `keep` keeps: origin offsets `2i`
/// (c's odd offsets hold other origins' copies), own offsets in order.
fn third_origin_copies(n: u64, keep: impl Fn(u64) -> bool) -> Vec<Stored> {
    (0..n)
        .filter(|i| keep(*i))
        .enumerate()
        .map(|(own, i)| {
            let mut p = Vec::new();
            let hop = Hop {
                cluster: b"c",
                partition: 0,
                offset: 2 * i as i64,
            };
            encode_origin(hop, &mut p).unwrap();
            (0, own as i64, Some(p), value(i))
        })
        .collect()
}

/// Verifies `a` against `b` with origin `c` in the config but not compared: `c`'s
/// records `0..n` at offsets `2i`, of which each side holds those `on_a` / `on_b` keep.
fn verify_third_origin(
    n: u64,
    on_a: impl Fn(u64) -> bool,
    on_b: impl Fn(u64) -> bool,
) -> (Counts, Vec<i64>) {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = side_spec(dir.path());
    spec.max_samples = 5;
    spec.origins = vec![ClusterSpec::new("c", "unused:3")];
    let store = Store::open(dir.path(), &spec.signature()).unwrap();
    let (src, tgt) = (third_origin_copies(n, on_a), third_origin_copies(n, on_b));
    ingest(&store, 0, "a", &src, Mode::Identity, 100);
    ingest(&store, 1, "b", &tgt, Mode::Identity, 100);
    let mut snap = snapshot(src.len() as u64, tgt.len());
    let c = BTreeMap::from([(
        0,
        Bounds {
            low: 0,
            high: 2 * n as i64,
        },
    )]);
    snap.origins = BTreeMap::from([("c".to_string(), BTreeMap::from([(TOPIC.to_string(), c)]))]);
    // What reading c from each tail's start finds: its records at even offsets.
    let tails = origins::tails(&store, &spec, &snap, "c").unwrap();
    for (key, tail) in &tails {
        let from = tail.pairs.iter().map(|(_, f)| *f).min().unwrap();
        for offset in (from..tail.end).filter(|o| o % 2 == 0) {
            origins::lost_record(&spec, &mut snap, "c", key, tail, offset);
        }
    }
    let cmp = compare::compare(&store, &spec, &snap).unwrap();
    let samples = cmp[0].topics[0].partitions[0]
        .samples
        .iter()
        .filter(|s| s.kind == Kind::MissingOnBoth)
        .map(|s| s.origin_offset.unwrap())
        .collect();
    (cmp[0].totals, samples)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// An origin outside the sides, in the config: records one side lacks are missing or
    /// extra; a tail neither side holds is missing on both, each record named.
    #[test]
    fn a_third_origins_lost_tail_agrees_with_the_model(
        n in 1u64..2500,
        tail in 0u64..40,
        drops in prop::collection::btree_map(0u64..2500, any::<bool>(), 0..10),
    ) {
        let tail = tail.min(n);
        let lost = |i: u64| i >= n - tail;
        // Each dropped record is dropped on one side only: on neither side in the middle
        // is not a tail (see docs/verifier.md).
        let on_a = |i: u64| !lost(i) && drops.get(&i) != Some(&true);
        let on_b = |i: u64| !lost(i) && drops.get(&i) != Some(&false);
        let (got, named) = verify_third_origin(n, on_a, on_b);
        let mut want = Counts::default();
        for i in 0..n {
            match (on_a(i), on_b(i)) {
                (true, true) => want.matched += 1,
                (true, false) => want.missing += 1,
                (false, true) => want.extra += 1,
                (false, false) => want.missing_on_both += 1,
            }
        }
        prop_assert_eq!(got, want);
        // Named with their offsets at the origin (up to the cap, after the others).
        let first: Vec<i64> = (n - tail..n).map(|i| 2 * i as i64).take(named.len()).collect();
        prop_assert_eq!(named, first);
    }
}

#[test]
fn a_third_origins_tail_lost_on_both_sides_fails() {
    let (got, named) = verify_third_origin(100, |i| i < 90, |i| i < 90);
    assert_eq!(
        (got.matched, got.missing_on_both, got.discrepancies()),
        (90, 10, 10)
    );
    assert_eq!(
        named,
        vec![180, 182, 184, 186, 188],
        "capped at five samples"
    );
}
