//! Translation against a simple model: the set of identities the group consumed.

use std::collections::HashSet;

use super::model::{Consumed, Translated, Translator};
use super::read::Seen;
use super::runs::Runs;
use proptest::prelude::*;

/// A record of a log: its offset and its identity (origin, origin offset).
type Rec = (i64, &'static str, i64);

/// A record of partition 0, as the reader sees it.
fn seen(&(offset, origin, origin_offset): &Rec) -> Seen<'static> {
    Seen {
        offset,
        origin,
        origin_partition: 0,
        origin_offset,
        timestamp: 0,
        bytes: 0,
    }
}

fn translate(
    a: &[Rec],
    committed: i64,
    b: &[Rec],
    b_start: i64,
) -> Result<Translated, Vec<String>> {
    let mut consumed = Consumed::new("a", 0, committed);
    for r in a {
        consumed.observe(seen(r));
    }
    let mut t = Translator::new(&consumed);
    for r in b {
        t.observe(seen(r));
    }
    t.finish(b_start)
        .map_err(|bs| bs.into_iter().map(|b| b.origin).collect())
}

/// The same, with each side fed as runs (offsets and origin offsets consecutive).
fn translate_by_runs(
    a: &[Rec],
    committed: i64,
    b: &[Rec],
    b_start: i64,
) -> Result<Translated, Vec<String>> {
    let runs = |log: &[Rec]| {
        let mut r = Runs::default();
        for x in log {
            r.push(seen(x));
        }
        r
    };
    let mut consumed = Consumed::new("a", 0, committed);
    runs(a).consumed_by(&mut consumed);
    let mut t = Translator::new(&consumed);
    runs(b).walk(&mut t);
    t.finish(b_start)
        .map_err(|bs| bs.into_iter().map(|b| b.origin).collect())
}

/// The definition of docs/offsets.md, record by record.
fn model(a: &[Rec], committed: i64, b: &[Rec], b_start: i64) -> Result<Translated, Vec<String>> {
    let consumed: HashSet<(&str, i64)> = a
        .iter()
        .filter(|r| r.0 < committed)
        .map(|r| (r.1, r.2))
        .collect();
    // Behind: a consumed record the target will still receive, i.e. one past every
    // record of its origin the target holds (one before them never reaches it).
    let mut behind: Vec<String> = consumed
        .iter()
        .filter(|(o, u)| !b.iter().any(|r| r.1 == *o && r.2 >= *u))
        .map(|(o, _)| o.to_string())
        .collect();
    if !behind.is_empty() {
        behind.sort();
        behind.dedup();
        return Err(behind);
    }
    let first = b.iter().position(|r| !consumed.contains(&(r.1, r.2)));
    let offset = match first {
        Some(i) => b[i].0,
        None => b.last().map_or(b_start, |r| r.0 + 1),
    };
    let redelivered = b
        .iter()
        .filter(|r| r.0 >= offset && consumed.contains(&(r.1, r.2)))
        .count() as u64;
    Ok(Translated {
        offset,
        redelivered,
    })
}

#[test]
fn runs_join_consecutive_records_and_trim_at_the_log_start() {
    let mut r = Runs::default();
    for (offset, origin, origin_offset) in [
        (0, "a", 10),
        (1, "a", 11),
        (2, "a", 12),
        (3, "b", 5),
        (5, "b", 6), // a gap in offsets: a new run
        (6, "a", 13),
    ] {
        r.push(seen(&(offset, origin, origin_offset)));
    }
    let spans: Vec<(i64, i64, i64)> = r
        .runs
        .iter()
        .map(|x| (x.offset, x.len, x.origin_offset))
        .collect();
    assert_eq!(spans, [(0, 3, 10), (3, 1, 5), (5, 1, 6), (6, 1, 13)]);
    assert_eq!(r.end(), Some(7));
    r.trim_below(2);
    let spans: Vec<(i64, i64, i64)> = r
        .runs
        .iter()
        .map(|x| (x.offset, x.len, x.origin_offset))
        .collect();
    assert_eq!(spans, [(2, 1, 12), (3, 1, 5), (5, 1, 6), (6, 1, 13)]);
    r.trim_below(6);
    assert_eq!(r.runs.len(), 1);
    r.trim_below(7);
    assert!(r.runs.is_empty());
}

#[test]
fn one_way_is_exact() {
    // b holds a's records 0..5 at its offsets 10..15.
    let a: Vec<Rec> = (0..5).map(|i| (i, "a", i)).collect();
    let b: Vec<Rec> = (0..5).map(|i| (10 + i, "a", i)).collect();
    for o in 0..=5 {
        let got = translate(&a, o, &b, 10).unwrap();
        assert_eq!(
            got,
            Translated {
                offset: 10 + o,
                redelivered: 0
            }
        );
    }
}

#[test]
fn interleaved_differently_counts_what_is_read_again() {
    // a: a0 b0 a1 ; b: b0 a0 a1 (b's own record first). The group read a0 and b0.
    let a = [(0, "a", 0), (1, "b", 0), (2, "a", 2)];
    let b = [(0, "b", 0), (1, "a", 0), (2, "a", 2)];
    assert_eq!(
        translate(&a, 2, &b, 0).unwrap(),
        Translated {
            offset: 2,
            redelivered: 0
        }
    );
    // The group read only a0: b0 on b is new to it, a0 after it is read again.
    assert_eq!(
        translate(&a, 1, &b, 0).unwrap(),
        Translated {
            offset: 0,
            redelivered: 1
        }
    );
}

#[test]
fn behind_is_refused_naming_the_origin() {
    let a: Vec<Rec> = (0..5).map(|i| (i, "a", i)).collect();
    let b: Vec<Rec> = (0..3).map(|i| (i, "a", i)).collect();
    assert_eq!(translate(&a, 4, &b, 0), Err(vec!["a".to_string()]));
    assert!(translate(&a, 3, &b, 0).is_ok());
}

#[test]
fn records_the_source_never_held_are_not_consumed() {
    // c's record reached b but not yet a: the group on a never saw it.
    let a = [(0, "a", 0)];
    let b = [(0, "a", 0), (1, "c", 7)];
    assert_eq!(
        translate(&a, 1, &b, 0).unwrap(),
        Translated {
            offset: 1,
            redelivered: 0
        }
    );
}

#[test]
fn an_empty_target_translates_to_its_log_start() {
    assert_eq!(
        translate(&[], 0, &[], 42).unwrap(),
        Translated {
            offset: 42,
            redelivered: 0
        }
    );
}

/// Labels of a cluster's log: which origin each slot takes its next record from, in an
/// order given by random keys.
fn log_labels(counts: [(&'static str, usize); 3], keys: &[u32]) -> Vec<&'static str> {
    let mut labels: Vec<(u32, &'static str)> = counts
        .iter()
        .flat_map(|&(o, n)| std::iter::repeat_n(o, n))
        .zip(keys.iter().copied())
        .map(|(l, k)| (k, l))
        .collect();
    labels.sort_by_key(|p| p.0);
    labels.into_iter().map(|p| p.1).collect()
}

/// Lays out a log: offsets with random gaps (transaction markers, aborted records).
fn lay_out(labels: &[&'static str], gaps: &[u8], start: i64) -> Vec<(i64, &'static str)> {
    let mut off = start;
    labels
        .iter()
        .zip(gaps.iter().chain(std::iter::repeat(&0)))
        .map(|(l, g)| {
            off += i64::from(g % 3 == 0) * i64::from(*g % 4);
            let r = (off, *l);
            off += 1;
            r
        })
        .collect()
}

/// The records of a log laid out: the i-th record of origin X has X's (skip(X) + i)-th
/// identity: replication of X to this cluster began `skip(X)` records into X.
fn identify(
    log: &[(i64, &'static str)],
    ids: &dyn Fn(&str, usize) -> i64,
    skip: &dyn Fn(&str) -> usize,
) -> Vec<Rec> {
    let mut seen = std::collections::HashMap::new();
    log.iter()
        .map(|&(off, l)| {
            let i = seen.entry(l).or_insert(0usize);
            let r = (off, l, ids(l, skip(l) + *i));
            *i += 1;
            r
        })
        .collect()
}

proptest! {
    /// Random interleavings of local and replicated records on both sides, with a third
    /// origin, replication behind in either direction or begun after an origin's first
    /// records (a window of each origin, not a prefix), gaps in offsets and a random
    /// committed offset: the translation is the model's (never skip, exact count).
    #[test]
    fn translation_matches_the_model(
        own_a in 0usize..12, own_b in 0usize..12, n_c in 0usize..8,
        frac in proptest::collection::vec(0.0f64..=1.0, 4),
        starts in proptest::collection::vec(0.0f64..=1.0, 4),
        gaps in proptest::collection::vec(any::<u8>(), 40),
        keys_a in proptest::collection::vec(any::<u32>(), 40),
        keys_b in proptest::collection::vec(any::<u32>(), 40),
        pick in 0.0f64..=1.0,
        b_start in 0i64..3,
        c_step in 1i64..3,
    ) {
        let take = |n: usize, f: f64| ((n as f64) * f).round() as usize;
        let (ab, ac) = (take(own_b, frac[0]), take(n_c, frac[1]));
        let (ba, bc) = (take(own_a, frac[2]), take(n_c, frac[3]));
        let la = log_labels([("a", own_a), ("b", ab), ("c", ac)], &keys_a);
        let lb = log_labels([("b", own_b), ("a", ba), ("c", bc)], &keys_b);
        let a_log = lay_out(&la, &gaps, 0);
        let b_log = lay_out(&lb, &gaps[7..], b_start);
        // A cluster's own records are identified by their own offsets.
        let own_offsets = |log: &[(i64, &'static str)], own: &str| -> Vec<i64> {
            log.iter().filter(|r| r.1 == own).map(|r| r.0).collect()
        };
        let (oa, ob) = (own_offsets(&a_log, "a"), own_offsets(&b_log, "b"));
        let ids = |o: &str, i: usize| match o {
            "a" => oa[i],
            "b" => ob[i],
            _ => 100 + c_step * i as i64,
        };
        // Where each foreign origin's window begins on each side.
        let (skip_ab, skip_ac) = (take(own_b - ab, starts[0]), take(n_c - ac, starts[1]));
        let (skip_ba, skip_bc) = (take(own_a - ba, starts[2]), take(n_c - bc, starts[3]));
        let a = identify(&a_log, &ids, &|o| match o {
            "b" => skip_ab,
            "c" => skip_ac,
            _ => 0,
        });
        let b = identify(&b_log, &ids, &|o| match o {
            "a" => skip_ba,
            "c" => skip_bc,
            _ => 0,
        });
        let end = a.last().map_or(0, |r| r.0 + 1);
        let committed = ((end as f64) * pick).round() as i64;
        let want = model(&a, committed, &b, b_start);
        prop_assert_eq!(&translate(&a, committed, &b, b_start), &want);
        // Taken as runs (c's origin offsets consecutive when c_step is 1), the same.
        prop_assert_eq!(&translate_by_runs(&a, committed, &b, b_start), &want);
    }
}
